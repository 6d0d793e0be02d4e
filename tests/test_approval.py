"""The approval-key exchange, checked with an independent HTTP peer (h11's server role)."""

from __future__ import annotations

import json

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kis_proto import (
    ENDPOINTS,
    ApprovalError,
    ApprovalExchange,
    ApprovalFailure,
    ApprovalKey,
    Credentials,
    LocalProtocolError,
)

APP_KEY = "PSabcdefghijklmnopqrstuvwxyz012345"
SECRET = "s3cr3t-" + "x" * 170
KEY = "3daa450a-0685-4c31-b015-99c5e5f4b11d"
CREDS = Credentials(app_key=APP_KEY, app_secret=SECRET, env="paper", hts_id="myhtsid")


def parse_request(data: bytes) -> tuple[h11.Request, dict[str, str]]:
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    body = b""
    while True:
        event = server.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        else:
            assert isinstance(event, h11.EndOfMessage)
            break
    parsed: dict[str, str] = json.loads(body)
    return request, parsed


def response(status: int, body: bytes, *, chunked: bool = False, reason: bytes = b"") -> bytes:
    server = h11.Connection(h11.SERVER)
    server.receive_data(ApprovalExchange(CREDS).data_to_send())
    server.next_event()
    server.next_event()
    server.next_event()
    headers = [("Content-Type", "application/json")]
    headers += [("Transfer-Encoding", "chunked")] if chunked else [("Content-Length", str(len(body)))]
    out = server.send(h11.Response(status_code=status, headers=headers, reason=reason)) or b""
    if chunked:
        out += (server.send(h11.Data(data=body[:5])) or b"") + (server.send(h11.Data(data=body[5:])) or b"")
    else:
        out += server.send(h11.Data(data=body)) or b""
    return out + (server.send(h11.EndOfMessage()) or b"")


def exchange(
    data: bytes, *, eof: bool = False, chunk: int | None = None
) -> ApprovalKey | ApprovalFailure | None:
    ex = ApprovalExchange(CREDS)
    ex.data_to_send()
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        ex.receive_data(piece)
    if eof:
        ex.receive_eof()
    return ex.result


def test_the_request() -> None:
    ex = ApprovalExchange(CREDS)
    request, body = parse_request(ex.data_to_send())
    assert ex.data_to_send() == b""
    assert (request.method, request.target) == (b"POST", b"/oauth2/Approval")
    headers = dict(request.headers)
    assert headers[b"host"] == b"openapivts.koreainvestment.com:29443"
    assert headers[b"content-type"].startswith(b"application/json")
    assert body == {"grant_type": "client_credentials", "appkey": APP_KEY, "secretkey": SECRET}


def test_host_override_and_default_port() -> None:
    request, _ = parse_request(ApprovalExchange(CREDS, host="127.0.0.1", port=8443).data_to_send())
    assert dict(request.headers)[b"host"] == b"127.0.0.1:8443"
    request, _ = parse_request(ApprovalExchange(CREDS, host="kis.example", port=443).data_to_send())
    assert dict(request.headers)[b"host"] == b"kis.example"


@pytest.mark.parametrize("chunk", [None, 1, 7])
@pytest.mark.parametrize("chunked", [False, True])
def test_a_key_comes_back(chunk: int | None, chunked: bool) -> None:
    result = exchange(response(200, json.dumps({"approval_key": KEY}).encode(), chunked=chunked), chunk=chunk)
    assert result == ApprovalKey(KEY)
    assert isinstance(result, ApprovalKey)
    assert result.value == KEY
    assert KEY not in repr(result)
    assert KEY not in str(result)


def test_gateway_refusal() -> None:
    body = json.dumps(
        {"error_description": f"유효하지 않은 AppKey입니다. {APP_KEY}", "error_code": "EGW00103"}
    )
    result = exchange(response(403, body.encode()))
    assert isinstance(result, ApprovalFailure)
    assert (result.status, result.code, result.retryable) == (403, "EGW00103", False)
    assert APP_KEY not in result.message
    assert "유효하지 않은" in result.message
    failed = ApprovalError(result)
    assert "EGW00103" in str(failed)
    assert APP_KEY not in str(failed)


def test_server_error_is_retryable() -> None:
    result = exchange(response(500, b"oops", reason=b"Internal Server Error"))
    assert isinstance(result, ApprovalFailure)
    assert (result.status, result.retryable, result.message) == (500, True, "Internal Server Error")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{}", "without an approval_key"),
        (b"not json", "without an approval_key"),
        (b'{"approval_key": 5}', "without"),
    ],
)
def test_200_without_a_key(body: bytes, reason: str) -> None:
    result = exchange(response(200, body))
    assert isinstance(result, ApprovalFailure)
    assert reason in result.message
    assert not result.retryable


def test_secret_echoed_by_the_server_is_redacted() -> None:
    result = exchange(response(401, json.dumps({"msg1": f"bad secret {SECRET} for key {KEY}"}).encode()))
    assert isinstance(result, ApprovalFailure)
    assert SECRET not in result.message
    assert KEY not in result.message
    assert SECRET not in repr(result)


def test_truncated_response_and_eof() -> None:
    whole = response(200, json.dumps({"approval_key": KEY}).encode())
    assert exchange(whole[:-5]) is None
    result = exchange(whole[:-5], eof=True)
    assert isinstance(result, ApprovalFailure)
    assert result.retryable
    assert result.status == 200


def test_oversize_body() -> None:
    result = exchange(response(200, b" " * 70_000))
    assert isinstance(result, ApprovalFailure)
    assert "exceeds" in result.message


def test_garbage() -> None:
    result = exchange(b"\x00\x01 not http at all\r\n\r\n")
    assert isinstance(result, ApprovalFailure)
    assert result.status is None


def test_credentials_hide_the_secret_and_validate() -> None:
    text = repr(CREDS)
    assert SECRET not in text
    assert APP_KEY not in text
    assert "myhtsid" not in text
    assert text.startswith("Credentials(app_key='PSab'")
    assert CREDS.endpoint is ENDPOINTS["paper"]
    assert ENDPOINTS["real"].ws_url == "ws://ops.koreainvestment.com:21000"
    assert ENDPOINTS["paper"].ws_url == "ws://ops.koreainvestment.com:31000"
    for bad in ({"app_key": ""}, {"app_secret": "a\nb"}, {"env": "prod"}, {"custtype": "X"}, {"hts_id": ""}):
        with pytest.raises(LocalProtocolError) as info:
            Credentials(**({"app_key": APP_KEY, "app_secret": SECRET} | bad))  # type: ignore[arg-type]
        assert SECRET not in str(info.value)


@given(st.lists(st.binary(max_size=200), max_size=5))
def test_never_raises_on_response_bytes(chunks: list[bytes]) -> None:
    ex = ApprovalExchange(CREDS)
    ex.data_to_send()
    for chunk in chunks:
        ex.receive_data(chunk)
    ex.receive_eof()
    assert ex.done
    assert isinstance(ex.result, ApprovalKey | ApprovalFailure)
