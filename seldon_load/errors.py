"""Exceptions for errors a user or a programmer can cause.

On the hot path failures are data (see ``transport.outcome``); these exceptions are for
configuration: each one ends a command with one clear line and exit code 2, before any load.
"""


class SeldonLoadError(Exception):
    """Base class for errors that end a command with one clear line."""

    exit_code = 2


class ConfigError(SeldonLoadError):
    """Bad option, stage string, payload file, spec or URL given by the user."""


class TargetError(SeldonLoadError):
    """The target cannot be used: unreachable host, unknown model, bad metadata."""


class OIPError(SeldonLoadError):
    """A server answer that does not follow the Open Inference Protocol."""
