"""The approval-key exchange, checked against an independent HTTP peer (h11's server role).

No sockets: the request bytes are parsed by an ``h11.Connection(h11.SERVER)`` of the test's own,
and canned responses (built by hand or by that server) are fed back whole, in pieces and cut.
"""

from __future__ import annotations

import json
import logging

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kis_proto import ApprovalError, Credentials, LocalProtocolError
from kis_proto._approval import MAX_RESPONSE_BODY, PAPER_ENDPOINT, REAL_ENDPOINT
from kis_proto.approval import ENDPOINTS, ApprovalExchange, ApprovalFailure, ApprovalKey

APP_KEY = "PSabcdefghijklmnopqrstuvwxyz012345"
SECRET = "s3cr3t+/=" + "x" * 171
KEY = "3daa450a-0685-4c31-b015-99c5e5f4b11d"
HTS_ID = "myhtsid"
CREDS = Credentials(app_key=APP_KEY, app_secret=SECRET, env="paper", hts_id=HTS_ID)
SECRETS = (SECRET, KEY, APP_KEY)

Result = ApprovalKey | ApprovalFailure | None


# -- helpers -------------------------------------------------------------------------------------


def parse_request(data: bytes) -> tuple[h11.Request, dict[bytes, bytes], bytes]:
    """The request as an independent HTTP/1.1 server reads it: head, headers, whole body."""
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
    assert server.trailing_data == (b"", False)  # nothing after the one request
    return request, dict(request.headers), body


def response(
    status: int,
    body: bytes,
    *,
    chunked: bool = False,
    reason: bytes = b"",
    content_type: str = "application/json",
) -> bytes:
    """A response written by an h11 server that has read our request."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(ApprovalExchange(CREDS).data_to_send())
    while not isinstance(server.next_event(), h11.EndOfMessage):
        pass
    headers = [("Content-Type", content_type)]
    headers += [("Transfer-Encoding", "chunked")] if chunked else [("Content-Length", str(len(body)))]
    out = server.send(h11.Response(status_code=status, headers=headers, reason=reason)) or b""
    if chunked:
        for i in range(0, len(body), 5):
            out += server.send(h11.Data(data=body[i : i + 5])) or b""
    else:
        out += server.send(h11.Data(data=body)) or b""
    return out + (server.send(h11.EndOfMessage()) or b"")


def exchange(data: bytes, *, eof: bool = False, chunk: int | None = None) -> Result:
    """Feed `data` (whole or in `chunk`-byte pieces), then EOF if asked; the result."""
    ex = ApprovalExchange(CREDS)
    ex.data_to_send()
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        ex.receive_data(piece)
    if eof:
        ex.receive_eof()
    return ex.result


def failure(data: bytes, *, eof: bool = False) -> ApprovalFailure:
    result = exchange(data, eof=eof)
    assert isinstance(result, ApprovalFailure), result
    return result


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


OK = response(200, json.dumps({"approval_key": KEY}).encode())
OK_CHUNKED = response(200, json.dumps({"approval_key": KEY}).encode(), chunked=True)
EGW = json.dumps({"error_description": "유효하지 않은 AppKey입니다.", "error_code": "EGW00103"}).encode()

# Responses with a known outcome, for the chunking properties below.
CANNED = [
    OK,
    OK_CHUNKED,
    response(403, EGW),
    response(500, b"oops", reason=b"Internal Server Error", content_type="text/plain"),
    response(200, b"{}"),
    response(200, b"<html>not json</html>", content_type="text/html"),
    b"HTTP/1.1 100 Continue\r\n\r\n" + OK,
]


# -- the request -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "host"),
    [("paper", b"openapivts.koreainvestment.com:29443"), ("real", b"openapi.koreainvestment.com:9443")],
)
def test_the_request(env: str, host: bytes) -> None:
    creds = Credentials(APP_KEY, SECRET, env=env)  # type: ignore[arg-type]
    ex = ApprovalExchange(creds)
    request, headers, body = parse_request(ex.data_to_send())
    assert ex.data_to_send() == b""  # queued once
    assert (request.method, request.target, request.http_version) == (b"POST", b"/oauth2/Approval", b"1.1")
    assert headers == {
        b"host": host,
        b"content-type": b"application/json",
        b"accept": b"application/json",
        b"content-length": str(len(body)).encode(),
        b"connection": b"close",
    }
    # secretkey, not appsecret (the /oauth2/tokenP spelling).
    assert json.loads(body) == {"grant_type": "client_credentials", "appkey": APP_KEY, "secretkey": SECRET}
    assert (ex.host, ex.port) == (creds.rest_host, creds.rest_port)
    assert not ex.done
    assert ex.result is None


@pytest.mark.parametrize(
    ("host", "port", "header"),
    [
        ("127.0.0.1", 8443, b"127.0.0.1:8443"),
        ("kis.example", 443, b"kis.example"),
        ("::1", 8443, b"[::1]:8443"),
        ("localhost", None, b"localhost:29443"),
        (None, 1443, b"openapivts.koreainvestment.com:1443"),
    ],
)
def test_host_and_port_override(host: str | None, port: int | None, header: bytes) -> None:
    ex = ApprovalExchange(CREDS, host=host, port=port)
    _, headers, _ = parse_request(ex.data_to_send())
    assert headers[b"host"] == header
    assert ex.host == (host or "openapivts.koreainvestment.com")
    assert ex.port == (port or 29443)


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("", 443),
        ("a b", 443),
        ("evil\r\nX-Injected: 1", 443),
        ("h/x", 443),
        ("h", 0),
        ("h", 65536),
        ("h", True),
    ],
)
def test_bad_host_or_port_is_refused(host: str, port: int) -> None:
    with pytest.raises(LocalProtocolError, match=r"host|port") as info:
        ApprovalExchange(CREDS, host=host, port=port)
    assert_no_secret(str(info.value))


def test_caller_misuse() -> None:
    with pytest.raises(LocalProtocolError, match="Credentials"):
        ApprovalExchange("PSkey")  # type: ignore[arg-type]
    ex = ApprovalExchange(CREDS)
    with pytest.raises(LocalProtocolError, match="bytes"):
        ex.receive_data(OK.decode())  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="bytes"):
        ex.receive_data(5)  # type: ignore[arg-type]  # bytes(5) would be five NULs
    ex.receive_eof()
    ex.receive_eof()  # idempotent
    ex.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after receive_eof"):
        ex.receive_data(b"late")


# -- responses -------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [None, 1, 7])
@pytest.mark.parametrize("data", [OK, OK_CHUNKED], ids=["content-length", "chunked"])
def test_a_key_comes_back(data: bytes, chunk: int | None) -> None:
    result = exchange(data, chunk=chunk)
    assert result == ApprovalKey(KEY)
    assert isinstance(result, ApprovalKey)
    assert result.value == KEY


def test_key_with_a_body_read_until_close() -> None:
    # No Content-Length, no chunking: HTTP/1.1 ends the body at EOF (we asked for Connection: close).
    data = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"
        + json.dumps({"approval_key": KEY}).encode()
    )
    assert exchange(data) is None
    assert exchange(data, eof=True) == ApprovalKey(KEY)


def test_informational_response_then_the_answer() -> None:
    assert exchange(b"HTTP/1.1 100 Continue\r\n\r\n" + OK, chunk=3) == ApprovalKey(KEY)


def test_bytes_after_the_answer_are_dropped() -> None:
    ex = ApprovalExchange(CREDS)
    ex.receive_data(OK + b"HTTP/1.1 500 late\r\n\r\n")
    ex.receive_data(b"more garbage")
    ex.receive_eof()
    assert ex.result == ApprovalKey(KEY)
    assert ex.done


def test_gateway_refusal() -> None:
    result = failure(response(403, EGW))
    assert result == ApprovalFailure(
        status=403, code="EGW00103", message="유효하지 않은 AppKey입니다.", retryable=False
    )
    failed = ApprovalError(result)
    assert failed.failure is result
    assert "HTTP 403 EGW00103" in str(failed)
    assert "유효하지 않은" in str(failed)


@pytest.mark.parametrize(
    ("status", "body", "code", "message", "retryable"),
    [
        # The REST layer's shape.
        (400, {"rt_cd": "1", "msg_cd": "EGW00002", "msg1": "잘못된 요청"}, "EGW00002", "잘못된 요청", False),
        # chk_auth_ws_token.py reads code/message; a numeric code is kept as text.
        (401, {"code": 401, "message": "unauthorized"}, "401", "unauthorized", False),
        # Empty fields fall through to the next name, then to the reason phrase.
        (
            403,
            {"error_code": "", "msg_cd": "EGW00103", "error_description": " "},
            "EGW00103",
            "Forbidden",
            False,
        ),
        (
            500,
            {"error_description": "초당 거래건수를 초과하였습니다.", "error_code": "EGW00201"},
            "EGW00201",
            "초당 거래건수를 초과하였습니다.",
            True,
        ),
        (503, [1, 2], "", "Service Unavailable", True),
        (429, {}, "", "Too Many Requests", True),
        (408, {"code": True}, "", "Request Timeout", True),
        (302, {}, "", "Found", False),
    ],
)
def test_error_shapes(status: int, body: object, code: str, message: str, retryable: bool) -> None:
    reason = {403: b"Forbidden", 503: b"Service Unavailable", 429: b"Too Many Requests"}.get(status, b"")
    reason = reason or {408: b"Request Timeout", 302: b"Found"}.get(status, b"")
    result = failure(response(status, json.dumps(body, ensure_ascii=False).encode(), reason=reason))
    assert result == ApprovalFailure(status=status, code=code, message=message, retryable=retryable)


def test_server_error_as_text_is_retryable() -> None:
    result = failure(response(500, b"oops", reason=b"Internal Server Error", content_type="text/plain"))
    assert result == ApprovalFailure(status=500, code="", message="Internal Server Error", retryable=True)
    assert failure(response(502, b"")).message == "HTTP 502"  # no reason phrase at all


@pytest.mark.parametrize(
    "body",
    [b"{}", b"not json", b'{"approval_key": 5}', b'{"approval_key": ""}', b"[]", b"\xff\xfe", b"[" * 5000],
)
def test_200_without_a_key(body: bytes) -> None:
    result = failure(response(200, body))
    assert (result.status, result.retryable) == (200, False)
    assert "without an approval_key" in result.message


def test_truncated_response_and_eof() -> None:
    cut = OK[:-5]
    assert exchange(cut) is None  # still waiting
    result = failure(cut, eof=True)
    assert (result.status, result.retryable) == (200, True)
    assert "closed before the response was complete" in result.message


def test_eof_before_any_answer() -> None:
    assert failure(b"", eof=True) == ApprovalFailure(
        status=None, code="", message="the connection closed before the response was complete", retryable=True
    )
    assert failure(b"HTTP/1.1 200 OK\r\nContent-", eof=True).status is None  # head incomplete


def test_chunked_body_cut_mid_chunk() -> None:
    result = failure(OK_CHUNKED[: OK_CHUNKED.index(b"\r\n\r\n") + 8], eof=True)
    assert (result.status, result.retryable) == (200, True)


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x01 not http at all\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_garbage(data: bytes) -> None:
    result = failure(data)
    assert result.retryable
    assert "not valid HTTP/1.1" in result.message


@pytest.mark.parametrize("chunked", [False, True])
def test_oversize_body(chunked: bool) -> None:
    result = failure(response(200, b" " * (MAX_RESPONSE_BODY + 1), chunked=chunked))
    assert "exceeds" in result.message
    assert result.status == 200
    # Exactly at the cap is fine (and is then judged as a body).
    assert "without an approval_key" in failure(response(200, b" " * MAX_RESPONSE_BODY)).message


def test_oversize_head() -> None:
    # h11 caps an incomplete head at 16 KiB; an endless header never completes.
    ex = ApprovalExchange(CREDS)
    ex.receive_data(b"HTTP/1.1 200 OK\r\nX-Long: ")
    for _ in range(20):
        ex.receive_data(b"a" * 1024)
    assert isinstance(ex.result, ApprovalFailure)
    assert ex.result.retryable


# -- chunking invariance ---------------------------------------------------------------------------


@pytest.mark.parametrize("data", CANNED)
def test_one_byte_at_a_time_equals_whole(data: bytes) -> None:
    whole = exchange(data, eof=True)
    assert whole is not None
    assert exchange(data, eof=True, chunk=1) == whole


@given(st.sampled_from(CANNED), st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_any_split_equals_whole(data: bytes, cuts: list[int]) -> None:
    ex = ApprovalExchange(CREDS)
    start = 0
    for cut in sorted(cuts):
        ex.receive_data(data[start:cut])
        start = max(start, cut)
    ex.receive_data(data[start:])
    ex.receive_eof()
    assert ex.result == exchange(data, eof=True)


@given(st.sampled_from(CANNED), st.integers(min_value=0))
def test_any_truncation_is_a_retryable_failure(data: bytes, at: int) -> None:
    at %= len(data)  # strictly shorter than the whole response
    result = exchange(data[:at], eof=True)
    assert isinstance(result, ApprovalFailure)
    assert result.retryable


# -- secrets ---------------------------------------------------------------------------------------


def test_secrets_echoed_by_the_server_are_redacted() -> None:
    body = json.dumps({"msg1": f"bad secret {SECRET} for {APP_KEY}, key {KEY}", "msg_cd": f"X{KEY}"}).encode()
    result = failure(response(401, body))
    assert result.message == "bad secret <redacted> for <redacted>, key <redacted>"
    assert_no_secret(repr(result), str(result), str(ApprovalError(result)), result.code)


def test_secret_in_the_reason_phrase_and_in_garbage_is_redacted() -> None:
    result = failure(response(403, b"", reason=f"no {SECRET}".encode()))
    assert result.message == "no <redacted>"
    # h11 quotes a bad status line in its error text.
    result = failure(f"HTTP/1.1 2OO {APP_KEY} {SECRET} {KEY}\r\n\r\n".encode())
    assert "<redacted>" in result.message
    assert_no_secret(result.message, repr(result))


def test_redaction_of_a_secret_that_bytes_repr_escapes() -> None:
    secret = "it's\\secret"
    creds = Credentials(APP_KEY, secret)
    ex = ApprovalExchange(creds)
    ex.receive_data(f"garbage {secret}\r\n\r\n".encode())
    assert isinstance(ex.result, ApprovalFailure)
    assert "s\\\\secret" not in ex.result.message
    assert "secret" not in ex.result.message.replace("<redacted>", "")


def test_no_secret_in_any_repr_str_or_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ok = ApprovalExchange(CREDS)
    texts = [repr(CREDS), str(CREDS), repr(ok), str(ok)]
    ok.receive_data(OK)
    key = ok.result
    assert isinstance(key, ApprovalKey)
    texts += [repr(key), str(key), f"{key}", f"{key!r}", repr(ok), repr([key, CREDS])]
    assert repr(key) == "ApprovalKey(<redacted, 36 chars>)"
    refused = exchange(response(403, EGW))
    assert isinstance(refused, ApprovalFailure)
    texts += [repr(refused), str(ApprovalError(refused)), repr(ApprovalError(refused))]
    texts.append(caplog.text)
    assert_no_secret(*texts)
    assert HTS_ID not in repr(CREDS)


# -- Credentials and the key -----------------------------------------------------------------------


def test_credentials_endpoints() -> None:
    real = Credentials(APP_KEY, SECRET)
    assert (real.env, real.custtype, real.hts_id) == ("real", "P", None)
    assert (real.rest_host, real.rest_port) == ("openapi.koreainvestment.com", 9443)
    assert real.ws_url == "ws://ops.koreainvestment.com:21000"
    assert real.endpoint is REAL_ENDPOINT is ENDPOINTS["real"]
    assert (CREDS.rest_host, CREDS.rest_port) == ("openapivts.koreainvestment.com", 29443)
    assert CREDS.ws_url == "ws://ops.koreainvestment.com:31000"
    assert CREDS.endpoint is PAPER_ENDPOINT is ENDPOINTS["paper"]
    with pytest.raises(TypeError):
        ENDPOINTS["real"] = PAPER_ENDPOINT  # type: ignore[index]
    with pytest.raises(TypeError):
        Credentials(APP_KEY, SECRET, "paper")  # type: ignore[call-arg]  # env is keyword-only


def test_credentials_repr() -> None:
    assert repr(CREDS) == "Credentials(app_key='PSab…', env='paper', custtype='P')"
    # A key too short to be real shows nothing at all.
    assert (
        repr(Credentials("PSapp", "s", custtype="B")) == "Credentials(app_key='…', env='real', custtype='B')"
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"app_key": ""},
        {"app_key": 5},
        {"app_secret": "a\nb"},
        {"app_secret": SECRET + "\n"},
        {"app_secret": " " + SECRET},
        {"app_secret": "비밀"},
        {"env": "prod"},
        {"env": ["real"]},
        {"custtype": "X"},
        {"custtype": None},
        {"hts_id": ""},
        {"hts_id": "my id"},
        {"hts_id": 7},
    ],
)
def test_credentials_validate(bad: dict[str, object]) -> None:
    with pytest.raises(LocalProtocolError) as info:
        Credentials(**({"app_key": APP_KEY, "app_secret": SECRET} | bad))  # type: ignore[arg-type]
    assert_no_secret(str(info.value))


def test_notice_subscription() -> None:
    assert CREDS.notice_subscription() == ("H0STCNI9", HTS_ID)
    assert CREDS.notice_subscription("overseas") == ("H0GSCNI9", HTS_ID)
    real = Credentials(APP_KEY, SECRET, hts_id="me")
    assert real.notice_subscription() == ("H0STCNI0", "me")
    assert real.notice_subscription("overseas") == ("H0GSCNI0", "me")
    with pytest.raises(LocalProtocolError, match="hts_id"):
        Credentials(APP_KEY, SECRET).notice_subscription()
    with pytest.raises(LocalProtocolError, match="market"):
        real.notice_subscription("futures")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["", "a\nb", 5])
def test_approval_key_validates(value: object) -> None:
    with pytest.raises(LocalProtocolError, match="approval_key"):
        ApprovalKey(value)  # type: ignore[arg-type]


# -- fuzz ------------------------------------------------------------------------------------------


@given(st.lists(st.binary(max_size=200), max_size=5))
def test_never_raises_on_response_bytes(chunks: list[bytes]) -> None:
    ex = ApprovalExchange(CREDS)
    ex.data_to_send()
    for chunk in chunks:
        ex.receive_data(chunk)
    ex.receive_eof()
    assert ex.done
    assert isinstance(ex.result, ApprovalFailure)
    assert_no_secret(repr(ex.result))


@given(
    st.integers(min_value=100, max_value=999),
    st.lists(st.tuples(st.binary(min_size=1, max_size=12), st.binary(max_size=20)), max_size=4),
    st.binary(max_size=300),
    st.booleans(),
)
def test_never_raises_on_near_http(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, eof: bool
) -> None:
    # Well-formed enough to get past the status line, so the header and body paths are explored.
    head = b"HTTP/1.1 %d X\r\n" % status + b"".join(b"%s: %s\r\n" % h for h in headers) + b"\r\n"
    ex = ApprovalExchange(CREDS)
    ex.receive_data(head + body)
    if eof:
        ex.receive_eof()
        assert ex.done
    assert ex.result is None or isinstance(ex.result, ApprovalKey | ApprovalFailure)
