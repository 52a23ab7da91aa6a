"""Rephrasing pieces used by the ``rephrase`` stage: templates, answer parsers and
validators, the ProX executor and token-budget segmentation."""
