"""The error every module raises for bad input: one line for the user, never a traceback."""


class ConfigError(ValueError):
    """A config problem, reported to the user as one line."""
