"""Errors carried in events compare by value, and say what they are."""

from __future__ import annotations

from kis_proto import KISError, LocalProtocolError, RemoteProtocolError


def test_remote_errors_compare_by_message_and_code() -> None:
    a = RemoteProtocolError("bad frame", close_code=1002)
    assert a == RemoteProtocolError("bad frame", close_code=1002)
    assert a != RemoteProtocolError("bad frame", close_code=1007)
    assert a != RemoteProtocolError("other", close_code=1002)
    assert a != "bad frame"
    assert hash(a) == hash(RemoteProtocolError("bad frame", close_code=1002))
    assert repr(a) == "RemoteProtocolError('bad frame', close_code=1002)"
    assert isinstance(a, KISError)
    assert issubclass(LocalProtocolError, KISError)
