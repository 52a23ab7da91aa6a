"""User-facing errors: the CLI prints them as one line, never as a traceback."""


class WinnowError(Exception):
    """An error the user can fix (bad YAML, missing file, malformed input)."""


class ConfigError(WinnowError):
    """The pipeline YAML is invalid; the message names the YAML path."""


class InputError(WinnowError):
    """Input data is missing or malformed; the message names the file (and line)."""


class LedgerError(WinnowError):
    """Row accounting does not reconcile: some rows were lost or invented."""
