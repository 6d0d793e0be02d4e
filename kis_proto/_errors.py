"""The exceptions kis_proto raises or reports.

Two kinds, as in h11: `LocalProtocolError` is raised at once when the caller misuses the API;
`RemoteProtocolError` describes something the peer did wrong and is never raised out of the
receiving side, only carried in an event.
"""

from __future__ import annotations


class KISError(Exception):
    """Base class of every kis_proto exception."""


class LocalProtocolError(KISError):
    """The caller asked for something the protocol or the API does not allow.

    The message says what to do instead. It never contains the approval key or the app secret.
    """


class RemoteProtocolError(KISError):
    """The peer broke the protocol; carried in a closing event, never raised by `receive_*`."""

    def __init__(self, message: str, *, close_code: int = 1002) -> None:
        super().__init__(message)
        self.close_code = close_code

    # Carried in frozen events, which compare by value: so does the error.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RemoteProtocolError):
            return NotImplemented
        return self.args == other.args and self.close_code == other.close_code

    def __hash__(self) -> int:
        return hash((self.args, self.close_code))

    def __repr__(self) -> str:
        return f"RemoteProtocolError({str(self)!r}, close_code={self.close_code})"
