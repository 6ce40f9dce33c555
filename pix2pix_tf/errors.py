"""Errors that reach the user as a clear message instead of a traceback."""


class Pix2pixError(Exception):
    """Base of every error whose message alone tells the user what went wrong."""


class ConfigError(Pix2pixError, ValueError):
    """A configuration a run cannot use; the message says what to change."""


class DatasetError(Pix2pixError):
    """A dataset that cannot be found, prepared or read."""


class NonFiniteLossError(Pix2pixError):
    """Training produced NaN or Inf; the last good checkpoint is kept."""
