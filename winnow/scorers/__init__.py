"""Pure document scorers: heuristics, language id, fastText classifiers."""
