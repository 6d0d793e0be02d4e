"""The approval-key exchange (PROTOCOL.md §2), sans-IO over h11.

A WebSocket session needs an approval key, fetched once (not per message: a leading library's
bug) with ``POST /oauth2/Approval`` and the JSON ``{"grant_type": "client_credentials",
"appkey": …, "secretkey": …}`` (note: ``secretkey``, not ``appsecret``). `ApprovalExchange`
builds that request and reads the answer; the transport moves the bytes over TLS.

Secrets: the app secret and the approval key never appear in a repr, a str or an error text;
what the server echoes back is redacted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

import h11

from ._errors import KISError, LocalProtocolError

__all__ = [
    "APPROVAL_PATH",
    "ENDPOINTS",
    "ApprovalError",
    "ApprovalExchange",
    "ApprovalFailure",
    "ApprovalKey",
    "Credentials",
    "Endpoint",
]

APPROVAL_PATH = "/oauth2/Approval"
MAX_RESPONSE_BODY = 64 * 1024  # the answer is a few hundred bytes; anything this large is wrong

_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


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


#: The real (실전) and paper (모의) environments (PROTOCOL.md §1–§2).
ENDPOINTS: dict[str, Endpoint] = {
    "real": Endpoint(
        rest_host="openapi.koreainvestment.com",
        rest_port=9443,
        ws_host="ops.koreainvestment.com",
        ws_port=21000,
    ),
    "paper": Endpoint(
        rest_host="openapivts.koreainvestment.com",
        rest_port=29443,
        ws_host="ops.koreainvestment.com",
        ws_port=31000,
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """A KIS app key and secret, the environment they belong to, and the account's HTS ID.

    The repr shows the first four characters of the app key and nothing of the secret.
    `hts_id` is the tr_key of the execution-notice TRs; `custtype` is ``P`` (individual) or ``B``.
    """

    app_key: str = field(repr=False)
    app_secret: str = field(repr=False)
    env: Literal["real", "paper"] = "real"
    hts_id: str | None = field(default=None, repr=False)
    custtype: Literal["P", "B"] = "P"

    def __post_init__(self) -> None:
        for name in ("app_key", "app_secret"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or not value.isprintable():
                raise LocalProtocolError(f"{name} must be the non-empty text KIS issued for your app")
        if self.env not in ENDPOINTS:
            raise LocalProtocolError(f"env must be 'real' or 'paper', not {self.env!r}")
        if self.custtype not in ("P", "B"):
            raise LocalProtocolError(
                f"custtype must be 'P' (individual) or 'B' (corporate), not {self.custtype!r}"
            )
        if self.hts_id is not None and (not isinstance(self.hts_id, str) or not self.hts_id):
            raise LocalProtocolError("hts_id must be your HTS login ID, or None")

    def __repr__(self) -> str:
        return f"Credentials(app_key={self.app_key[:4]!r}…, env={self.env!r}, custtype={self.custtype!r})"

    @property
    def endpoint(self) -> Endpoint:
        """The hosts of this environment."""
        return ENDPOINTS[self.env]

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
    """An approval key. `value` is the key; the repr and str hide it."""

    value: str

    def __repr__(self) -> str:
        return f"ApprovalKey(<redacted, {len(self.value)} chars>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalFailure:
    """Why no approval key came back.

    `status` is the HTTP status (None when no complete response arrived), `code` the gateway's
    error code when it sent one (e.g. ``EGW00103``), `message` its words with any echoed secret
    redacted. `retryable` is True for server-side and transport failures (5xx, a cut connection)
    and False for refusals that repeating will not fix (4xx: wrong credentials).
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


class ApprovalExchange:
    """One ``POST /oauth2/Approval`` request and its response, sans-IO.

    The request is queued at construction: write `data_to_send()` to the TLS stream, feed what
    comes back to `receive_data` (and `receive_eof` at the end) until `done`; `result` is then an
    `ApprovalKey` or an `ApprovalFailure`. Peer input never raises.
    """

    def __init__(self, credentials: Credentials, *, host: str | None = None, port: int | None = None) -> None:
        endpoint = credentials.endpoint
        host = host or endpoint.rest_host
        port = port or endpoint.rest_port
        self._secrets = (credentials.app_key, credentials.app_secret)
        self._conn = h11.Connection(h11.CLIENT)
        self._status: int | None = None
        self._reason = ""
        self._body = bytearray()
        self._result: ApprovalKey | ApprovalFailure | None = None
        body = json.dumps(
            {
                "grant_type": "client_credentials",
                "appkey": credentials.app_key,
                "secretkey": credentials.app_secret,
            }
        ).encode()
        headers = [
            ("Host", host if port == 443 else f"{host}:{port}"),
            ("Content-Type", "application/json; charset=UTF-8"),
            ("Accept", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
        self._out = self._conn.send(h11.Request(method="POST", target=APPROVAL_PATH, headers=headers)) or b""
        self._out += self._conn.send(h11.Data(data=body)) or b""
        self._out += self._conn.send(h11.EndOfMessage()) or b""

    def __repr__(self) -> str:
        return f"<ApprovalExchange {'done' if self.done else 'pending'}>"

    @property
    def done(self) -> bool:
        """True once `result` is set."""
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
        """Feed response bytes. Never raises on what the server sends."""
        if self._result is not None or not data:
            return
        self._feed(bytes(data))

    def receive_eof(self) -> None:
        """The server closed the stream. Never raises; a cut response becomes an error."""
        if self._result is None:
            self._feed(b"")
        if self._result is None:
            self._fail(
                self._status, "", "the connection closed before the response was complete", retryable=True
            )

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
                        self._fail(
                            self._status, "", f"the response body exceeds {MAX_RESPONSE_BODY} bytes", True
                        )
                elif isinstance(event, h11.EndOfMessage):
                    self._finish()
                elif isinstance(event, h11.ConnectionClosed):
                    return
                # InformationalResponse (1xx): keep reading.
        except h11.RemoteProtocolError as exc:
            self._fail(self._status, "", f"the server's answer is not valid HTTP/1.1: {exc}", retryable=True)

    def _finish(self) -> None:
        status = self._status or 0
        try:
            answer = json.loads(self._body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            answer = None
        if status == 200:
            key = answer.get("approval_key") if isinstance(answer, dict) else None
            if isinstance(key, str) and key and key.isprintable():
                self._result = ApprovalKey(key)
                return
            self._fail(status, "", "HTTP 200 without an approval_key in a JSON body", retryable=False)
            return
        code, message = "", ""
        if isinstance(answer, dict):
            for name in ("error_code", "msg_cd", "code"):
                if isinstance(answer.get(name), str | int):
                    code = str(answer[name])
                    break
            for name in ("error_description", "msg1", "message"):
                if isinstance(answer.get(name), str):
                    message = answer[name]
                    break
        if not message:
            message = self._reason or f"HTTP {status}"
        self._fail(status, code, message, retryable=status >= 500 or status == 429)

    def _fail(self, status: int | None, code: str, message: str, retryable: bool) -> None:
        self._result = ApprovalFailure(
            status=status, code=code, message=self._redact(message), retryable=retryable
        )

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return _UUID.sub("<redacted>", text)[:300]
