"""The options of every command that talks to NATS: credentials and TLS, one set, one rule.

``--nats-creds FILE`` (a credential of the gateway's roles, or a NATS ``.creds`` file),
``--nats-user NAME`` with the password from ``KIS_NATS_PASSWORD`` or ``--nats-password-file``
(never on the command line, where every user of the machine can read it), ``--nats-tls-ca``,
``--nats-tls-cert`` / ``--nats-tls-key``, and ``tls://`` URLs. Without any of them a command
finds the local credential of its role in the gateway's state dir (``kis_nats.discover``). Loaded
only by the commands that use NATS: it imports kis_nats (the ``nats`` extra) inside its functions.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import CLIError
from ._inputs import nats_urls

if TYPE_CHECKING:
    import argparse

    from kis_nats import Role

__all__ = ["add_nats_options", "nats_login"]

_PASSWORD_ENV = "KIS_NATS_PASSWORD"  # noqa: S105 - the name of the variable, not a password
_USERINFO = re.compile(r"//[^/@:]*:[^/@]*@")


def add_nats_options(parser: argparse.ArgumentParser) -> None:
    """Add the NATS login and TLS options to `parser`."""
    group = parser.add_argument_group("NATS login and TLS (default: the local credential of kis-ws gateway)")
    group.add_argument(
        "--nats-creds",
        default=None,
        metavar="FILE",
        help="a credential file of the gateway's roles (<state dir>/credentials/*.json), or a NATS .creds file",
    )
    group.add_argument(
        "--nats-user",
        default=None,
        metavar="NAME",
        help=f"log in as NAME, the password from ${_PASSWORD_ENV} or --nats-password-file",
    )
    group.add_argument(
        "--nats-password-file",
        default=None,
        metavar="FILE",
        help="with --nats-user: a file holding the password",
    )
    group.add_argument(
        "--nats-tls-ca", default=None, metavar="FILE", help="verify the NATS server with this CA"
    )
    group.add_argument("--nats-tls-cert", default=None, metavar="FILE", help="a client certificate for TLS")
    group.add_argument("--nats-tls-key", default=None, metavar="FILE", help="the client certificate's key")


def _password(args: argparse.Namespace) -> str:
    if args.nats_password_file is not None:
        path = Path(args.nats_password_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CLIError(f"cannot read {path}: {exc.strerror or exc}") from None
        if not text:
            raise CLIError(f"{path} is empty: it should hold the NATS password")
        return text
    password = os.environ.get(_PASSWORD_ENV)
    if not password:
        raise CLIError(
            f"--nats-user needs a password: set {_PASSWORD_ENV} or give --nats-password-file FILE",
            hint="never on the command line: other users of the machine can read it there",
        )
    return password


def nats_login(
    args: argparse.Namespace,
    url: str | None,
    role: Role,
    *,
    hts_id: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    option: str = "--nats",
) -> tuple[list[str], dict[str, Any]]:
    """The URLs and ``nats.connect`` options for `args`' NATS options; `CLIError` saying what is wrong.

    Without login options, the local credential of `role` (in `state_dir`, default the gateway's
    default) when `url` is on this machine.
    """
    import kis_nats

    if url is not None and _USERINFO.search(url):
        raise CLIError(
            f"{_shown(url)}: a password in the URL is readable by every user of this machine (ps)",
            hint=f"give --nats-user and {_PASSWORD_ENV}, or --nats-creds FILE",
        )
    if url is not None:
        nats_urls(url, option)
    options: dict[str, Any] = {}
    if args.nats_user is not None:
        if args.nats_creds is not None:
            raise CLIError("give --nats-creds or --nats-user, not both")
        options = {"user": args.nats_user, "password": _password(args)}
    elif args.nats_password_file is not None:
        raise CLIError("--nats-password-file goes with --nats-user")
    try:
        tls = None
        if args.nats_tls_ca or args.nats_tls_cert or args.nats_tls_key:
            tls = kis_nats.tls_context(args.nats_tls_ca, args.nats_tls_cert, args.nats_tls_key)
        return kis_nats.login(
            url, args.nats_creds, tls=tls, nats_options=options, role=role, hts_id=hts_id, state_dir=state_dir
        )
    except kis_nats.CredentialError as exc:
        raise CLIError(
            str(exc), hint="the gateway writes its credentials into <state dir>/credentials/"
        ) from None


def _shown(url: str) -> str:
    return _USERINFO.sub("//***@", url)
