"""The gateway's NATS names (docs/gateway.md, "The wire contract"): subjects, headers, streams.

The single source of these names for both halves, the gateway and the consumer: a subject or a
header spelled anywhere else is a bug. Pure functions, no I/O.

A NATS subject token may not contain ``.``, ``*``, ``>`` or white space. TR ids never do; keys
may (``BRK.B``), so a key is *escaped*: every byte of its UTF-8 outside ``A–Z a–z 0–9 - _``
(``~`` included) becomes ``~`` and two upper-case hex digits. ``005930`` stays ``005930``,
``BRK.B`` becomes ``BRK~2EB``. An escaped token matches ``[A-Za-z0-9_~-]+``.
"""

from __future__ import annotations

import re
from typing import Final, Literal, NamedTuple

__all__ = [
    "BAR_INTERVAL_MAX",
    "CTL_VERBS",
    "ENVS",
    "H_META",
    "H_MSG_ID",
    "LEADER_KEY",
    "Meta",
    "ParsedSubject",
    "bar_subject",
    "ctl_subject",
    "data_subject",
    "escape_token",
    "format_bar_meta",
    "format_meta",
    "format_received",
    "interval_token",
    "leader_bucket",
    "meta_sequence",
    "notice_stream",
    "notice_stream_subjects",
    "notice_subject",
    "parse_interval_token",
    "parse_meta",
    "parse_subject",
    "unescape_token",
]

#: The environments of the contract: KIS real trading, KIS paper trading, the built-in simulator.
ENVS: Final = ("real", "paper", "sim")
#: The control verbs: ``kis.<env>.ctl.<verb>``.
CTL_VERBS: Final = ("subscribe", "unsubscribe", "heartbeat", "status")

#: The longest bar interval the gateway computes, in seconds: a day.
BAR_INTERVAL_MAX: Final = 24 * 3600

#: The one metadata header of data and notice messages (`format_meta`, `parse_meta`). One header,
#: not one per item: nats-py validates and encodes every header of every message in Python, and
#: seven headers cost the gateway more CPU than the rest of a record's path (docs/decisions.md).
H_META: Final = "Kis-Meta"
#: JetStream's de-duplication header, set on every notice.
H_MSG_ID: Final = "Nats-Msg-Id"

#: The key of the leader lease in the `leader_bucket` KV bucket: the active gateway's id.
LEADER_KEY: Final = "leader"

_SAFE: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
# One entry per byte value: the byte itself when safe, else its escape. Escaping is a join.
_ESCAPE: Final = tuple(chr(b) if b in _SAFE else f"~{b:02X}" for b in range(256))
_TOKEN: Final = re.compile(r"[A-Za-z0-9_~-]+\Z")
_ESCAPED_BYTE: Final = re.compile(r"~([0-9A-Fa-f]{2})")
# Plain tokens of the contract: env (lower case) and TR ids (upper case). TR ids being upper case
# is what keeps `kis.<env>.<TR_ID>.<KEY>` apart from `kis.<env>.ctl.<verb>` and `.notice.`.
_ENV: Final = re.compile(r"[a-z0-9_-]+\Z")
_TR_ID: Final = re.compile(r"[A-Z0-9]{1,16}\Z")
_INTERVAL: Final = re.compile(r"([1-9][0-9]{0,4})([smh])\Z")
_UNIT: Final = {"s": 1, "m": 60, "h": 3600}


def escape_token(key: str) -> str:
    """`key` as a NATS subject token: bytes of its UTF-8 outside ``A-Za-z0-9-_`` become ``~XX``.

    The result matches ``[A-Za-z0-9_~-]+``. Raises ValueError for an empty key (a subject token
    cannot be empty) and for a str that is not valid Unicode (a lone surrogate).
    """
    if not key:
        raise ValueError("a key cannot be empty: a NATS subject token needs at least one character")
    if key.isascii() and key.replace("-", "").replace("_", "").isalnum():
        return key  # the common case (symbols, HTS IDs): nothing to escape
    return "".join([_ESCAPE[b] for b in key.encode("utf-8")])


def unescape_token(token: str) -> str:
    """The key that `escape_token` turned into `token`; raises ValueError for an invalid token.

    Invalid: empty, a character outside ``A-Za-z0-9_~-``, a ``~`` not followed by two hex
    digits, or escaped bytes that are not UTF-8. Lower-case hex digits are accepted.
    """
    if not _TOKEN.match(token):
        raise ValueError(f"{token!r} is not an escaped subject token (expected [A-Za-z0-9_~-]+)")
    if "~" not in token:
        return token
    out = bytearray()
    pos = 0
    while (tilde := token.find("~", pos)) >= 0:
        out += token[pos:tilde].encode("ascii")
        escaped = _ESCAPED_BYTE.match(token, tilde)
        if escaped is None:
            raise ValueError(f"{token!r}: '~' at {tilde} is not followed by two hex digits")
        out.append(int(escaped.group(1), 16))
        pos = escaped.end()
    out += token[pos:].encode("ascii")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{token!r}: the escaped bytes are not UTF-8 ({exc.reason})") from None


def _env(env: str) -> str:
    if not isinstance(env, str) or not _ENV.match(env):
        raise ValueError(f"env {env!r} is not a subject token: give 'real', 'paper' or 'sim'")
    return env


def _tr_id(tr_id: str) -> str:
    if not isinstance(tr_id, str) or not _TR_ID.match(tr_id):
        raise ValueError(f"tr_id {tr_id!r} is malformed: TR ids are upper-case letters and digits")
    return tr_id


def data_subject(env: str, tr_id: str, key: str) -> str:
    """``kis.<env>.<TR_ID>.<KEY>``: where the records of (tr_id, key) are published, one per message."""
    return f"kis.{_env(env)}.{_tr_id(tr_id)}.{escape_token(key)}"


def interval_token(seconds: int) -> str:
    """The subject token of a bar interval: ``30s``, ``1m``, ``90s``, ``2h`` — one spelling per interval.

    Hours when the interval is whole hours, else minutes when whole minutes, else seconds; so
    every interval has exactly one subject. Raises ValueError outside 1 s to `BAR_INTERVAL_MAX`.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 < seconds <= BAR_INTERVAL_MAX:
        raise ValueError(f"a bar interval is whole seconds from 1 to {BAR_INTERVAL_MAX}, not {seconds!r}")
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def parse_interval_token(token: str) -> int:
    """The seconds of an `interval_token`; ValueError for any other spelling (``60s`` is ``1m``)."""
    match = _INTERVAL.match(token) if isinstance(token, str) else None
    if match is None:
        raise ValueError(f"{token!r} is not a bar interval token (like 30s, 1m, 1h)")
    seconds = int(match.group(1)) * _UNIT[match.group(2)]
    if seconds > BAR_INTERVAL_MAX or interval_token(seconds) != token:
        raise ValueError(
            f"{token!r} is not a bar interval token: write {interval_token(min(seconds, BAR_INTERVAL_MAX))!r}"
        )
    return seconds


def bar_subject(env: str, every: int, tr_id: str, key: str) -> str:
    """``kis.<env>.bar.<interval>.<TR_ID>.<KEY>``: the time bars the gateway computes of (tr_id, key).

    `every` is the interval in seconds, spelled by `interval_token` (``kis.real.bar.1m.H0STCNT0.005930``).
    """
    return f"kis.{_env(env)}.bar.{interval_token(every)}.{_tr_id(tr_id)}.{escape_token(key)}"


def notice_subject(env: str, tr_id: str, hts_id: str) -> str:
    """``kis.<env>.notice.<TR_ID>.<HTS_ID>``: the execution notices of one HTS ID, in JetStream."""
    return f"kis.{_env(env)}.notice.{_tr_id(tr_id)}.{escape_token(hts_id)}"


def notice_stream(env: str, hts_id: str) -> str:
    """``KIS_NOTICES_<ENV>_<HTS_ID>``: the JetStream stream of one HTS ID's notices in `env`.

    One stream per HTS ID, not one for all: NATS grants JetStream access by stream name, so a
    notice reader's permissions can name its own stream and no other account's (docs/gateway.md,
    "Roles"). The HTS ID is escaped as a subject token (`escape_token`), which stream names allow.
    """
    return f"KIS_NOTICES_{_env(env).upper()}_{escape_token(hts_id)}"


def notice_stream_subjects(env: str, hts_id: str) -> str:
    """``kis.<env>.notice.*.<HTS_ID>``: the subjects of `notice_stream` (every notice TR of the ID)."""
    return f"kis.{_env(env)}.notice.*.{escape_token(hts_id)}"


def ctl_subject(env: str, verb: str) -> str:
    """``kis.<env>.ctl.<verb>``: the gateway's request/reply control subjects (`CTL_VERBS`)."""
    if verb not in CTL_VERBS:
        raise ValueError(f"verb {verb!r} is not one of {', '.join(CTL_VERBS)}")
    return f"kis.{_env(env)}.ctl.{verb}"


def leader_bucket(env: str) -> str:
    """``KIS_GATEWAY_<ENV>``: the KV bucket holding the leader lease of the gateways of `env`."""
    return f"KIS_GATEWAY_{_env(env).upper()}"


def format_received(unix_time: float) -> str:
    """The ``received`` item of `H_META`: Unix time in seconds with 6 decimals."""
    return f"{unix_time:.6f}"


class Meta(NamedTuple):
    """The items of the `H_META` header of a data or notice message."""

    #: The number of fields of the record.
    width: int
    #: The era of the layout of that width (``2026-09``); empty for a width no era has.
    era: str
    #: When the gateway received the frame: Unix time in seconds.
    received: float
    #: A per-subject sequence number from 1 per gateway run: a gap means lost messages.
    seq: int
    #: The id of the gateway that published the message.
    gateway: str


def format_meta(width: int, era: str, received: str, seq: int, gateway: str) -> str:
    """The `H_META` value: ``width=47 era=2026-09 received=1764035000.123456 seq=1 gateway=gw-1``.

    Space-separated ``name=value`` items, values never empty but `era` (``era=``). `received` is
    already formatted (`format_received`): the gateway formats it once per frame, not per record.
    """
    return f"width={width} era={era} received={received} seq={seq} gateway={gateway}"


def format_bar_meta(received: str, seq: int, gateway: str) -> str:
    """The `H_META` value of a bar message: ``received=… seq=3 gateway=gw-1`` (`meta_sequence` reads it).

    `received` is when the gateway made the bar (`format_received`); `seq` counts the subject's
    bars from 1 per gateway run, as on data subjects. A bar's payload is JSON, so it has no width.
    """
    return f"received={received} seq={seq} gateway={gateway}"


def parse_meta(value: str) -> Meta:
    """The items of an `H_META` value; raises ValueError when one is missing or malformed.

    Items may come in any order and unknown items are ignored, so a later gateway can add one
    without breaking this consumer.
    """
    items: dict[str, str] = {}
    for item in value.split():
        name, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"{H_META} item {item!r} is not name=value")
        items[name] = text
    try:
        return Meta(
            int(items["width"]),
            items["era"],
            float(items["received"]),
            int(items["seq"]),
            items["gateway"],
        )
    except KeyError as exc:
        raise ValueError(f"{H_META} {value!r} has no {exc.args[0]!r} item") from None
    except ValueError as exc:
        raise ValueError(f"{H_META} {value!r}: {exc}") from None


def meta_sequence(value: str) -> tuple[str, int]:
    """(gateway, seq) of an `H_META` value: all a consumer checks per message, read cheaply.

    The gateway writes them last; a value in another order goes through `parse_meta`, which
    also raises ValueError for a malformed one.
    """
    parts = value.rsplit(" ", 2)
    if len(parts) == 3:
        seq, gateway = parts[1], parts[2]
        if seq[:4] == "seq=" and gateway[:8] == "gateway=" and len(gateway) > 8:
            try:
                return gateway[8:], int(seq[4:])
            except ValueError:
                pass  # parse_meta says what is wrong
    meta = parse_meta(value)
    return meta.gateway, meta.seq


class ParsedSubject(NamedTuple):
    """A subject of the contract taken apart; `key` unescaped, `verb` only for control subjects,
    `every` (seconds) only for bar subjects."""

    env: str
    kind: Literal["data", "notice", "ctl", "bar"]
    tr_id: str = ""
    key: str = ""
    verb: str = ""
    every: int = 0


def parse_subject(subject: str) -> ParsedSubject:
    """Take apart a data, notice, bar or control subject; raises ValueError for anything else."""
    parts = subject.split(".")
    if len(parts) >= 4 and parts[0] == "kis" and _ENV.match(parts[1]):
        env = parts[1]
        if len(parts) == 4 and parts[2] == "ctl" and parts[3] in CTL_VERBS:
            return ParsedSubject(env, "ctl", verb=parts[3])
        if len(parts) == 4 and _TR_ID.match(parts[2]):
            return ParsedSubject(env, "data", parts[2], unescape_token(parts[3]))
        if len(parts) == 5 and parts[2] == "notice" and _TR_ID.match(parts[3]):
            return ParsedSubject(env, "notice", parts[3], unescape_token(parts[4]))
        if len(parts) == 6 and parts[2] == "bar" and _TR_ID.match(parts[4]):
            every = parse_interval_token(parts[3])
            return ParsedSubject(env, "bar", parts[4], unescape_token(parts[5]), every=every)
    raise ValueError(f"{subject!r} is not a subject of the gateway's contract")
