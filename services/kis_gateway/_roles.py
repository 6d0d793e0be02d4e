"""The gateway's side of the roles: making their credentials, and a nats-server configuration enforcing them.

The roles, their permissions and why are in docs/gateway.md ("Roles and permissions"); the
client side (reading a credential, logging in) is `kis_nats`'s.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Final

from kis_nats import ENVS, NatsCredential, Role, credential_path, escape_token, notice_stream, read_credential

__all__ = ["ensure_credentials", "permissions", "server_config", "write_credential"]

_DIR_MODE, _FILE_MODE = 0o700, 0o600


def _user(role: Role, hts_id: str | None) -> str:
    return f"kis-notices-{escape_token(hts_id)}" if role == "notices" and hts_id else f"kis-{role}"


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
