"""Who may do what on the gateway's NATS: the roles, their credential files, the server's configuration.

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
requests (fetched notices among them) cannot be read by another. Why user and password rather
than NKEYs is in docs/decisions.md.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import ssl
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from ._subjects import ENVS, escape_token, notice_stream

__all__ = [
    "ROLES",
    "CredentialError",
    "NatsCredential",
    "Role",
    "credential_path",
    "default_state_dir",
    "discover",
    "ensure_credentials",
    "permissions",
    "read_credential",
    "server_config",
    "tls_context",
    "write_credential",
]

Role = Literal["gateway", "consumer", "notices", "readonly"]
#: The roles of the gateway's NATS, each a NATS user with its own permissions.
ROLES: Final[tuple[Role, ...]] = ("gateway", "consumer", "notices", "readonly")

_DIR_MODE, _FILE_MODE = 0o700, 0o600
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


def _user(role: Role, hts_id: str | None) -> str:
    return f"kis-notices-{escape_token(hts_id)}" if role == "notices" and hts_id else f"kis-{role}"


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


def write_credential(path: str | os.PathLike[str], credential: NatsCredential) -> Path:
    """Write `credential` to `path`, readable by its owner alone (folder 0700, file 0600), atomically."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)
    with contextlib.suppress(OSError):
        path.parent.chmod(_DIR_MODE)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(credential.to_json())
    tmp.replace(path)
    return path


def ensure_credentials(
    state_dir: str | os.PathLike[str], hts_ids: list[str] | tuple[str, ...] = (), *, url: str | None = None
) -> list[NatsCredential]:
    """Every role's credential in `state_dir`, made on first use (random passwords) and kept after.

    One notice reader per HTS ID of `hts_ids`. `url` (the embedded server's) is written into
    each file so local consumers find it; an existing file keeps its password. Returns them in
    the order of `ROLES`, the notice readers in the order given.
    """
    wanted: list[tuple[Role, str | None]] = [("gateway", None), ("consumer", None), ("readonly", None)]
    wanted += [("notices", hts_id) for hts_id in dict.fromkeys(hts_ids)]
    out: list[NatsCredential] = []
    for role, hts_id in wanted:
        path = credential_path(state_dir, role, hts_id)
        if path.exists():
            found = read_credential(path)
            if found.url != url and url is not None:
                found = NatsCredential(found.user, found.password, found.role, found.hts_id, url)
                write_credential(path, found)
        else:
            found = NatsCredential(_user(role, hts_id), secrets.token_urlsafe(32), role, hts_id, url)
            write_credential(path, found)
        out.append(found)
    return out


# -- permissions --------------------------------------------------------------------------------------
#: Control requests a consumer may send (every env): the verbs of `_subjects.CTL_VERBS`.
_CONSUMER_PUBLISH: Final = [
    f"kis.*.ctl.{verb}" for verb in ("subscribe", "unsubscribe", "heartbeat", "status")
]
#: Market data (``kis.<env>.<TR>.<KEY>``) and whatever the gateway computes from it: everything
#: under ``kis.`` but the control subjects (others' requests carry their secrets) and the notices
#: (others' fills). NATS filters a wildcard subscription such as ``kis.>`` by the deny list.
_MARKET_DATA: Final = ["kis.>"]
_NOT_CONTROL: Final = ["kis.*.ctl.>", "kis.*.notice.>"]


def _notice_reading(hts_id: str) -> list[str]:
    """What a notice reader publishes to read its HTS ID's streams (one per env), and nothing else.

    Only reading: fetching from the consumers the gateway made, their info, and acks. Making a
    consumer is the gateway's: a push consumer could deliver the notices onto any subject,
    market data subjects included (measured: nats-server does not check its deliver subject).
    """
    allow: list[str] = []
    for env in ENVS:
        stream = notice_stream(env, hts_id)
        allow += [
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
            f"$JS.API.CONSUMER.INFO.{stream}.*",
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.ACK.{stream}.>",
        ]
    return allow


def permissions(credential: NatsCredential) -> dict[str, Any]:
    """The nats-server ``permissions`` block of a role's user (docs/gateway.md, "Roles")."""
    inbox = f"{credential.inbox_prefix}.>"
    if credential.role == "gateway":
        return {
            "publish": {"allow": ["kis.>", "$JS.API.>", "$KV.>"]},
            "subscribe": {"allow": ["kis.*.ctl.*", inbox]},
            # Replies to control requests go to the requester's inbox, which only it may read.
            "allow_responses": True,
        }
    if credential.role == "readonly":
        return {
            "publish": {"deny": [">"]},
            "subscribe": {"allow": [*_MARKET_DATA, inbox], "deny": _NOT_CONTROL},
        }
    publish = list(_CONSUMER_PUBLISH)
    if credential.role == "notices":
        assert credential.hts_id is not None
        publish += _notice_reading(credential.hts_id)
    return {
        "publish": {"allow": publish},
        "subscribe": {"allow": [*_MARKET_DATA, inbox], "deny": _NOT_CONTROL},
    }


def _tls_block(cert: str | None, key: str | None, ca: str | None) -> dict[str, Any] | None:
    if cert is None and key is None and ca is None:
        return None
    if cert is None or key is None:
        raise ValueError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
    block: dict[str, Any] = {"cert_file": str(Path(cert).resolve()), "key_file": str(Path(key).resolve())}
    if ca is not None:  # clients must show a certificate this CA signed, besides their password
        block |= {"ca_file": str(Path(ca).resolve()), "verify": True}
    return block


def server_config(
    credentials: list[NatsCredential],
    *,
    host: str = "127.0.0.1",
    port: int = 4222,
    jetstream: bool = True,
    store_dir: str | os.PathLike[str] | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_ca: str | None = None,
) -> str:
    """A nats-server configuration with one user per credential and its role's permissions.

    The embedded server runs it (with `jetstream` False: its command line turns JetStream on);
    ``kis-ws gateway nats-config`` prints it for your own server or cluster, JetStream on (the
    notice streams need it) in `store_dir` or the server's default. The text holds the passwords:
    keep the file readable by the server's user alone. NATS's configuration format reads JSON, so
    the body is JSON (quoting done by the json module).
    """
    body: dict[str, Any] = {"listen": f"[{host}]:{port}" if ":" in host else f"{host}:{port}"}
    if jetstream:
        body["jetstream"] = {"store_dir": str(Path(store_dir).expanduser().resolve())} if store_dir else {}
    tls = _tls_block(tls_cert, tls_key, tls_ca)
    if tls is not None:
        body["tls"] = tls
    body["authorization"] = {
        "users": [
            {"user": c.user, "password": c.password, "permissions": permissions(c)} for c in credentials
        ]
    }
    head = (
        "# kis-ws gateway: NATS users and permissions per role (docs/gateway.md, Roles and permissions).\n"
        "# It holds passwords: keep it readable by the server's user alone (chmod 600).\n"
    )
    return head + json.dumps(body, indent=1) + "\n"


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
