"""The approval-key exchange (PROTOCOL.md §2), sans-IO over h11, and the credentials it needs.

A WebSocket session needs an approval key, fetched once (not per message: a leading library's
bug) with ``POST /oauth2/Approval`` and the JSON ``{"grant_type": "client_credentials",
"appkey": …, "secretkey": …}`` (note: ``secretkey``, not ``appsecret``). `ApprovalExchange`
builds that request and reads the answer; the transport moves the bytes over TLS. h11 does the
HTTP/1.1 framing (Content-Length, chunked, read-until-close), since it comes with wsproto anyway.

Secrets: the app secret and the approval key never appear in a repr, a str or an error text;
what the server echoes back is redacted. Nothing here logs.
"""

from __future__ import annotations

import json
import re
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

import h11

from ._codec import check_approval_key
from ._errors import KISError, LocalProtocolError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "APPROVAL_PATH",
    "ENDPOINTS",
    "MAX_RESPONSE_BODY",
    "PAPER_ENDPOINT",
    "REAL_ENDPOINT",
    "ApprovalError",
    "ApprovalExchange",
    "ApprovalFailure",
    "ApprovalKey",
    "Credentials",
    "Endpoint",
]

APPROVAL_PATH = "/oauth2/Approval"
#: The answer is under a hundred bytes (one UUID in JSON); a body this large is not KIS's.
MAX_RESPONSE_BODY = 64 * 1024
# Messages are for people and logs; a gateway's HTML error page is not worth carrying whole.
_MAX_MESSAGE = 300

_CUT = "the connection closed before the response was complete"
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
# The HTS ID is the tr_key of the notice TRs: the same rule subscribe_message applies to a tr_key.
_HTS_ID = re.compile(r"[0-9A-Za-z._\-]{1,32}\Z")
# h11 puts the offending line in its error text as a bytes repr; these are its escapes.
_BYTES_ESCAPES = str.maketrans({"\\": "\\\\", "'": "\\'"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """Where one KIS environment lives: the REST host for the approval key, the WebSocket URL."""

    rest_host: str
    rest_port: int
    ws_host: str
    ws_port: int

    @property
    def ws_url(self) -> str:
        """The plain ``ws://`` URL of the real-time service (KIS uses no TLS there)."""
        return f"ws://{self.ws_host}:{self.ws_port}"


#: The real-money (실전) environment (PROTOCOL.md §1–§2).
REAL_ENDPOINT = Endpoint(
    rest_host="openapi.koreainvestment.com", rest_port=9443, ws_host="ops.koreainvestment.com", ws_port=21000
)
#: The paper-trading (모의) environment: same WebSocket host, its own port and REST host.
PAPER_ENDPOINT = Endpoint(
    rest_host="openapivts.koreainvestment.com",
    rest_port=29443,
    ws_host="ops.koreainvestment.com",
    ws_port=31000,
)
#: The environments by the name `Credentials.env` takes. Read-only: it is shared by every caller.
ENDPOINTS: Mapping[str, Endpoint] = MappingProxyType({"real": REAL_ENDPOINT, "paper": PAPER_ENDPOINT})


def _check_secret_text(name: str, value: object) -> None:
    # KIS issues ASCII keys and secrets (base64-like); anything else is a copy-and-paste accident,
    # most often a newline or a space read from a file. The message never repeats the value.
    if not isinstance(value, str) or not value:
        raise LocalProtocolError(f"{name} must be the non-empty text KIS issued for your app")
    if not value.isascii() or not value.isprintable() or value != value.strip():
        raise LocalProtocolError(
            f"{name} must be printable ASCII without leading or trailing whitespace, as KIS issued it "
            "(a newline or space read from a file? strip it)"
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """A KIS app key and secret, the environment they belong to, and the account's HTS ID.

    ``Credentials(app_key, app_secret, env="paper")``; the rest is keyword-only. The repr shows
    at most the first four characters of the app key and nothing of the secret or the HTS ID.
    `hts_id` is the tr_key of the execution-notice TRs; `custtype` is ``P`` (individual) or ``B``
    (corporate).
    """

    app_key: str = field(repr=False)
    app_secret: str = field(repr=False)
    _: KW_ONLY
    env: Literal["real", "paper"] = "real"
    hts_id: str | None = field(default=None, repr=False)
    custtype: Literal["P", "B"] = "P"

    def __post_init__(self) -> None:
        _check_secret_text("app_key", self.app_key)
        _check_secret_text("app_secret", self.app_secret)
        if not isinstance(self.env, str) or self.env not in ENDPOINTS:
            raise LocalProtocolError(f"env must be 'real' or 'paper', not {self.env!r}")
        if not isinstance(self.custtype, str) or self.custtype not in ("P", "B"):
            raise LocalProtocolError(
                f"custtype must be 'P' (individual) or 'B' (corporate), not {self.custtype!r}"
            )
        if self.hts_id is not None and (not isinstance(self.hts_id, str) or not _HTS_ID.match(self.hts_id)):
            raise LocalProtocolError(
                "hts_id must be your HTS login ID (1-32 letters, digits, '.', '_' or '-'), or None"
            )

    def __repr__(self) -> str:
        # A real app key is 36 characters, so four of them identify it without giving it away;
        # a short (test) key shows nothing.
        shown = self.app_key[:4] if len(self.app_key) >= 16 else ""
        return f"Credentials(app_key='{shown}…', env={self.env!r}, custtype={self.custtype!r})"

    @property
    def endpoint(self) -> Endpoint:
        """The hosts of this environment."""
        return ENDPOINTS[self.env]

    @property
    def rest_host(self) -> str:
        """The REST host that issues approval keys (HTTPS)."""
        return self.endpoint.rest_host

    @property
    def rest_port(self) -> int:
        """The REST port: 9443 (real) or 29443 (paper)."""
        return self.endpoint.rest_port

    @property
    def ws_url(self) -> str:
        """The real-time WebSocket URL: ``ws://ops.koreainvestment.com:21000`` (real) or ``:31000``."""
        return self.endpoint.ws_url

    def notice_subscription(self, market: Literal["domestic", "overseas"] = "domestic") -> tuple[str, str]:
        """(tr_id, tr_key) of your own execution notices: the paper or real TR id, your HTS ID.

        Domestic stock notices are H0STCNI0 (real) / H0STCNI9 (paper); overseas stock notices
        H0GSCNI0 / H0GSCNI9 (PROTOCOL.md §3). The key is the HTS ID, not a symbol.
        """
        if self.hts_id is None:
            raise LocalProtocolError(
                "execution notices are keyed by your HTS ID: give Credentials(..., hts_id=...)"
            )
        ids = {"domestic": ("H0STCNI0", "H0STCNI9"), "overseas": ("H0GSCNI0", "H0GSCNI9")}
        if market not in ids:
            raise LocalProtocolError(f"market must be 'domestic' or 'overseas', not {market!r}")
        real, paper = ids[market]
        return (paper if self.env == "paper" else real), self.hts_id


@dataclass(frozen=True, slots=True)
class ApprovalKey:
    """An approval key. `value` is the key (give it to `KISConnection`); the repr and str hide it."""

    value: str

    def __post_init__(self) -> None:
        check_approval_key(self.value)

    def __repr__(self) -> str:
        return f"ApprovalKey(<redacted, {len(self.value)} chars>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalFailure:
    """Why no approval key came back: a result value, not an exception.

    `status` is the HTTP status (None when no complete response head arrived), `code` the
    gateway's error code when it sent one (e.g. ``EGW00103``), `message` its words with any echoed
    secret redacted. `retryable` is True for server-side and transport failures (5xx, 408, 429, a
    cut connection, a garbled answer) and False for refusals that repeating will not fix (other
    4xx: wrong credentials; a 200 without a key).
    """

    status: int | None
    code: str
    message: str
    retryable: bool


class ApprovalError(KISError):
    """Raised by transports when the approval key cannot be had; carries the `ApprovalFailure`."""

    def __init__(self, failure: ApprovalFailure) -> None:
        status = f"HTTP {failure.status}" if failure.status is not None else "no response"
        code = f" {failure.code}" if failure.code else ""
        super().__init__(f"approval key request failed ({status}{code}): {failure.message}")
        self.failure = failure


def _host_header(host: str, port: int) -> str:
    # An IPv6 literal is bracketed in the Host header (RFC 9110 §7.2); 443 is HTTPS's default.
    name = f"[{host}]" if ":" in host else host
    return name if port == 443 else f"{name}:{port}"


class ApprovalExchange:
    """One ``POST /oauth2/Approval`` request and its response, sans-IO.

    The request is queued at construction: connect (TLS) to `host`:`port`, write `data_to_send()`,
    feed what comes back to `receive_data` (and `receive_eof` at EOF) until `done`; `result` is
    then an `ApprovalKey` or an `ApprovalFailure`. Peer input never raises; the caller's mistakes
    (a bad host or port, feeding text, bytes after EOF) raise `LocalProtocolError`.
    """

    __slots__ = (
        "_body",
        "_conn",
        "_eof",
        "_host",
        "_out",
        "_port",
        "_reason",
        "_result",
        "_secrets",
        "_status",
    )

    def __init__(self, credentials: Credentials, *, host: str | None = None, port: int | None = None) -> None:
        if not isinstance(credentials, Credentials):
            raise LocalProtocolError("ApprovalExchange needs a Credentials(app_key, app_secret, env=...)")
        endpoint = credentials.endpoint
        host = endpoint.rest_host if host is None else host
        port = endpoint.rest_port if port is None else port
        if (
            not isinstance(host, str)
            or not host
            or not host.isascii()
            or not host.isprintable()
            or any(c in host for c in " /@?#")
        ):
            raise LocalProtocolError(
                f"host must be a host name or IP address such as '127.0.0.1', not {host!r}"
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise LocalProtocolError(f"port must be an int from 1 to 65535, not {port!r}")
        self._host = host
        self._port = port
        self._secrets = (credentials.app_key, credentials.app_secret)
        self._conn = h11.Connection(h11.CLIENT)
        self._status: int | None = None
        self._reason = ""
        self._body = bytearray()
        self._eof = False
        self._result: ApprovalKey | ApprovalFailure | None = None
        body = json.dumps(
            {
                "grant_type": "client_credentials",
                "appkey": credentials.app_key,
                "secretkey": credentials.app_secret,
            }
        ).encode()
        headers = [
            ("Host", _host_header(host, port)),
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("Content-Length", str(len(body))),
            # One exchange per connection: the server may then also end the body by closing.
            ("Connection", "close"),
        ]
        self._out = self._conn.send(h11.Request(method="POST", target=APPROVAL_PATH, headers=headers)) or b""
        self._out += self._conn.send(h11.Data(data=body)) or b""
        self._out += self._conn.send(h11.EndOfMessage()) or b""

    def __repr__(self) -> str:
        return f"<ApprovalExchange {self.host}:{self.port} {'done' if self.done else 'pending'}>"

    @property
    def host(self) -> str:
        """Where the transport connects (TLS): the override, else the environment's REST host."""
        return self._host

    @property
    def port(self) -> int:
        """The port to connect to: the override, else the environment's REST port."""
        return self._port

    @property
    def done(self) -> bool:
        """True once `result` is set; the transport then closes the connection."""
        return self._result is not None

    @property
    def result(self) -> ApprovalKey | ApprovalFailure | None:
        """The key, or why there is none; None while the response is incomplete."""
        return self._result

    def data_to_send(self) -> bytes:
        """The request bytes (once); b"" afterwards."""
        data, self._out = self._out, b""
        return data

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed response bytes. Never raises on what the server sends; bytes after `done` are dropped."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise LocalProtocolError(
                f"receive_data takes the bytes read from the socket, not {type(data).__name__}"
            )
        if self._eof and data:
            raise LocalProtocolError("bytes after receive_eof(): the stream had already ended")
        if self._result is not None or not data:
            return
        self._feed(bytes(data))

    def receive_eof(self) -> None:
        """The server closed the stream. Never raises; a cut response becomes a retryable failure."""
        if self._eof:
            return
        self._eof = True
        if self._result is None:
            # h11 takes b"" as EOF: it ends a read-until-close body, or says the response is cut.
            self._feed(b"")
        if self._result is None:  # pragma: no cover - defensive: h11 raises on a cut message
            self._fail(self._status, "", _CUT, retryable=True)

    def _feed(self, data: bytes) -> None:
        try:
            self._conn.receive_data(data)
            while self._result is None:
                event = self._conn.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.Response):
                    self._status, self._reason = event.status_code, event.reason.decode("latin-1")
                elif isinstance(event, h11.Data):
                    self._body += event.data
                    if len(self._body) > MAX_RESPONSE_BODY:
                        message = f"the response body exceeds {MAX_RESPONSE_BODY} bytes"
                        self._fail(self._status, "", message, retryable=True)
                elif isinstance(event, h11.EndOfMessage):
                    self._finish()
                elif isinstance(event, h11.ConnectionClosed):  # pragma: no cover - defensive
                    return  # h11 repeats it forever: stop; receive_eof reports the cut response
                # InformationalResponse (1xx, e.g. 100 Continue): the real answer follows.
        except h11.RemoteProtocolError as exc:
            if self._eof:  # h11's words for a cut head or body
                self._fail(self._status, "", _CUT, retryable=True)
                return
            # h11's text names the bad line (redacted below): worth having when a proxy interferes.
            self._fail(self._status, "", f"the server's answer is not valid HTTP/1.1: {exc}", retryable=True)

    def _finish(self) -> None:
        status = self._status or 0
        try:
            answer = json.loads(self._body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            answer = None
        fields = answer if isinstance(answer, dict) else {}
        if status == 200:
            key = fields.get("approval_key")
            if isinstance(key, str) and key and key.isprintable():
                self._result = ApprovalKey(key)
                return
            self._fail(status, "", "HTTP 200 without an approval_key in a JSON body", retryable=False)
            return
        # KIS's gateway answers {"error_description", "error_code"}; its REST layer
        # {"rt_cd", "msg_cd", "msg1"}; examples also read {"code", "message"}.
        code = _first_text(fields, ("error_code", "msg_cd", "code"))
        message = (
            _first_text(fields, ("error_description", "msg1", "message")) or self._reason or f"HTTP {status}"
        )
        self._fail(status, code, message, retryable=status >= 500 or status in (408, 429))

    def _fail(self, status: int | None, code: str, message: str, retryable: bool) -> None:
        self._result = ApprovalFailure(
            status=status, code=self._redact(code)[:40], message=self._redact(message), retryable=retryable
        )

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
            text = text.replace(secret.translate(_BYTES_ESCAPES), "<redacted>")
        # An approval key (KIS's are UUIDs) echoed back, ours or another.
        return _UUID.sub("<redacted>", text)[:_MAX_MESSAGE]


def _first_text(fields: Mapping[str, object], names: tuple[str, ...]) -> str:
    """The first of `names` that holds non-empty text (or a number, as text)."""
    for name in names:
        value = fields.get(name)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            return str(value)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""
