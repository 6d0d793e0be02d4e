"""The failures ``kis-ws`` expects, and its exit codes (documented in docs/howto/cli.md)."""

from __future__ import annotations

__all__ = ["EXIT_FEED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "CLIError"]

#: Done: the duration or count was reached, the file was read, Ctrl-C stopped a simulator.
EXIT_OK = 0
#: The feed failed: reconnecting gave up, the approval key was refused, every subscription was refused.
EXIT_FEED = 1
#: Bad usage or input: an unknown TR or malformed key, a bad URL or port, an unreadable file.
EXIT_USAGE = 2
#: Stopped with Ctrl-C while streaming.
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """An expected failure: said in one or two lines (what happened, what to do), no traceback."""

    def __init__(self, message: str, *, hint: str = "", code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def lines(self) -> list[str]:
        """The message, and the hint when there is one."""
        return [self.message, *([self.hint] if self.hint else [])]
