"""Exceptions for errors a user or a programmer can cause.

On the hot path failures are data (see ``transport.outcome``); these exceptions are for
configuration: each one ends a command with one clear line and exit code 2, before any load.
"""

from seldon_load.safe_text import MAX_MESSAGE_CHARS, clip


class SeldonLoadError(Exception):
    """Base class for errors that end a command with one clear line.

    The message is made one printable line of bounded length here, whatever it was built from:
    the net under messages that quote user input (each of which should already use ``shown``).
    """

    exit_code = 2

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (clip(args[0], MAX_MESSAGE_CHARS),)
        super().__init__(*args)


class ConfigError(SeldonLoadError):
    """Bad option, stage string, payload file, spec or URL given by the user."""


class TargetError(SeldonLoadError):
    """The target cannot be used: unreachable host, unknown model, bad metadata."""


class OIPError(SeldonLoadError):
    """A server answer that does not follow the Open Inference Protocol."""
