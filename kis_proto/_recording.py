"""The `kis-ws record` file format, and reading it back (pure: lines in, events out).

A recording is UTF-8 text, one line per received message, appendable at any time::

    # kis-ws recording v1: one JSON object per line: {"t": <unix seconds>, "m": <message text>}
    {"t": 1764035000.123456, "m": "0|H0STCNT0|001|005930^..."}

`t` is when the message arrived (wall clock, microseconds); `m` is the WebSocket text message
exactly as KIS sent it: data frames (encrypted ones as ciphertext), acks (with their AES key and
IV, so encrypted notices decrypt on replay), PINGPONGs. Lines starting with ``#`` are comments;
a file may hold several sessions appended one after another.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ._codec import MessageDecoder

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from ._events import Event

__all__ = ["RECORDING_HEADER", "parse_recording_line", "recording_line", "replay_lines"]

RECORDING_HEADER = (
    '# kis-ws recording v1: one JSON object per line: {"t": <unix seconds>, "m": <message text>}'
)


def recording_line(t: float, text: str) -> str:
    """One line of a recording (without the newline)."""
    return json.dumps({"t": round(t, 6), "m": text}, ensure_ascii=False)


def parse_recording_line(line: str) -> tuple[float, str] | None:
    """(time, message) of a recording line; None for comments, blank and malformed lines."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    try:
        item = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(item, dict):
        return None
    t, text = item.get("t"), item.get("m")
    if not isinstance(t, int | float) or isinstance(t, bool) or not isinstance(text, str):
        return None
    return float(t), text


def replay_lines(
    lines: Iterable[str], *, on_skip: Callable[[int, str], None] | None = None
) -> Iterator[tuple[float, Event]]:
    """Every event of a recording, with the time its message arrived, in order.

    Decodes as the connection did: AES keys are learned from the recorded acks, drift is reported
    once per (TR, width). Malformed lines are skipped; `on_skip(line_number, line)` (counting
    from 1) hears of each, so a reader can say which lines were not a recording's.
    """
    decoder = MessageDecoder()
    for number, line in enumerate(lines, 1):
        parsed = parse_recording_line(line)
        if parsed is None:
            stripped = line.strip()
            if on_skip is not None and stripped and not stripped.startswith("#"):
                on_skip(number, line)
            continue
        t, text = parsed
        for event in decoder.decode(text):
            yield t, event
