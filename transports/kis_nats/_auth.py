"""Logging in to the gateway's NATS: the roles, their credential files, and finding the local one.

The gateway's feed is only as honest as the NATS it runs on: whoever may publish on a data
subject can show consumers prices KIS never sent, and whoever may read a notice stream reads
someone's fills. So the embedded nats-server starts with one NATS user per role, each with
permissions that NATS itself enforces (docs/gateway.md, "Roles and permissions"):

* ``gateway``: publishes market data, notices and control replies; subscribes to the control
  subjects; administers JetStream (the notice streams and their consumers, the leader lease).
* ``consumer`` (strategies, recorders): subscribes to market data; publishes control requests only.
* ``notices`` (one user per HTS ID): a consumer that may also read that HTS ID's notice stream,
  through consumers the gateway made for it, and no other stream.
* ``readonly`` (dashboards): market data only; no control request.

Credentials are a user name and a random password per role, in JSON files readable by their
owner alone (0600, in a 0700 folder): ``<state dir>/credentials/<role>.json``. A process on the
same machine that can read ``consumer.json`` can connect, as with a Jupyter token file; one that
cannot, cannot. Each user has its own inbox prefix (``_INBOX_<user>``): replies to one role's
requests (fetched notices among them) cannot be read by another. The gateway makes the files and
the server's configuration (`kis_gateway.ensure_credentials`, `kis_gateway.server_config`); why
user and password rather than NKEYs is in docs/decisions.md.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from .subjects import escape_token

if TYPE_CHECKING:
    import os

__all__ = [
    "ROLES",
    "CredentialError",
    "NatsCredential",
    "Role",
    "credential_path",
    "default_state_dir",
    "discover",
    "read_credential",
    "tls_context",
]

Role = Literal["gateway", "consumer", "notices", "readonly"]
#: The roles of the gateway's NATS, each a NATS user with its own permissions.
ROLES: Final[tuple[Role, ...]] = ("gateway", "consumer", "notices", "readonly")

#: Where ``kis-ws gateway`` keeps its state unless told otherwise (``--state-dir``).
_DEFAULT_STATE_DIR = "~/.kis-proto/gateway"


class CredentialError(ValueError):
    """A credential file that cannot be used: missing, unreadable, malformed or readable by others."""


@dataclass(frozen=True)
class NatsCredential:
    """One NATS user of the gateway's roles: its name, password, role, and (notices) HTS ID.

    `url` is where the gateway's embedded server listened when the file was written: local
    consumers given no URL connect there. The password never shows in the repr.
    """

    user: str
    password: str = field(repr=False)
    role: Role
    hts_id: str | None = None
    url: str | None = None

    @property
    def inbox_prefix(self) -> str:
        """``_INBOX_<user>``: the only inboxes this user may subscribe to (its replies)."""
        return f"_INBOX_{self.user}"

    def connect_options(self) -> dict[str, Any]:
        """The ``nats.connect`` options that log in as this user."""
        return {"user": self.user, "password": self.password, "inbox_prefix": self.inbox_prefix}

    def to_json(self) -> str:
        """The file format: a JSON object (any NATS client can read it)."""
        body: dict[str, Any] = {"user": self.user, "password": self.password, "role": self.role}
        if self.hts_id is not None:
            body["hts_id"] = self.hts_id
        if self.url is not None:
            body["url"] = self.url
        body["inbox_prefix"] = self.inbox_prefix
        return json.dumps(body, indent=1) + "\n"


def default_state_dir() -> Path:
    """``~/.kis-proto/gateway``: the gateway's state, and where local consumers find their credential."""
    return Path(_DEFAULT_STATE_DIR).expanduser()


def credential_path(state_dir: str | os.PathLike[str], role: Role, hts_id: str | None = None) -> Path:
    """``<state_dir>/credentials/<role>.json`` (``notices-<HTS ID token>.json`` for a notice reader)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if (role == "notices") != (hts_id is not None):
        raise ValueError("a notice reader's credential names its HTS ID, and only a notice reader's does")
    name = f"notices-{escape_token(hts_id)}" if hts_id is not None else role
    return Path(state_dir).expanduser() / "credentials" / f"{name}.json"


def _exposed(path: Path) -> bool:
    """True when group or others may read or write `path` (never on Windows, whose modes differ)."""
    return sys.platform != "win32" and bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def read_credential(path: str | os.PathLike[str]) -> NatsCredential:
    """The credential in `path`; `CredentialError` saying what is wrong and what to do.

    Refused like ssh refuses a private key: a file that group or others can read (``chmod 600``).
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CredentialError(f"{path}: no such file") from None
    except OSError as exc:
        raise CredentialError(f"cannot read {path}: {exc.strerror or exc}") from None
    if _exposed(path):
        raise CredentialError(f"{path} is readable by others, and it holds a NATS password: chmod 600 {path}")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k), str) for k in ("user", "password", "role")
    ):
        raise CredentialError(
            f"{path} is not a kis-ws NATS credential (a JSON object with user, password, role)"
        )
    role = body["role"]
    if role not in ROLES:
        raise CredentialError(f"{path}: role {role!r} is not one of {', '.join(ROLES)}")
    hts_id = body.get("hts_id") if isinstance(body.get("hts_id"), str) else None
    url = body.get("url") if isinstance(body.get("url"), str) else None
    return NatsCredential(body["user"], body["password"], role, hts_id, url)


def tls_context(
    ca: str | os.PathLike[str] | None = None,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """A client TLS context: the server verified against `ca` (default: the system's), `cert`/`key` shown.

    Raises `CredentialError` naming the file that cannot be used.
    """
    if (cert is None) != (key is None):
        raise CredentialError("a client certificate needs its key, and a key its certificate (give both)")
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise CredentialError(f"cannot use the CA file {ca}: {exc}") from None
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise CredentialError(f"cannot use the client certificate {cert} with key {key}: {exc}") from None
    return context


def _loopback(url: str) -> bool:
    try:
        host = urlsplit(url if "//" in url else f"nats://{url}").hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def discover(
    url: str | None,
    role: Role = "consumer",
    hts_id: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
) -> NatsCredential | None:
    """The local credential of `role` for a NATS on this machine, or None when there is none.

    Looked up in `state_dir` (default `default_state_dir`) only when `url` is a loopback URL (or
    None): a password made for this machine's gateway is never sent to another host. A notice
    reader's file (`hts_id`) is preferred when it exists. An unusable file raises
    `CredentialError` (its text says why): silently connecting without it would hide the cause.
    """
    if url is not None and not _loopback(url):
        return None
    base = Path(state_dir).expanduser() if state_dir is not None else default_state_dir()
    candidates: list[Path] = []
    if hts_id is not None:
        candidates.append(credential_path(base, "notices", hts_id))
    candidates.append(credential_path(base, role))
    for path in candidates:
        if path.exists():
            return read_credential(path)
    return None
