"""Reading `kis-ws record` files back, for replays and backtests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kis_proto.recording import replay_lines

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from kis_proto import Event

__all__ = ["read_recording"]


def read_recording(
    path: str | Path, *, on_skip: Callable[[int, str], None] | None = None
) -> Iterator[tuple[float, Event]]:
    """Every event of a `kis-ws record` file with its arrival time (unix seconds), in order.

    For backtests: ``for t, event in read_recording("day.kisrec"): ...``. Encrypted notices
    decrypt with the keys of their recorded acks; the format is in `kis_proto.recording.RECORDING_HEADER`
    (`kis_proto.recording.replay_lines` does the same over any lines).
    Lines that are not a recording's are skipped; `on_skip(line_number, line)` hears of each.
    Raises `OSError` when the file cannot be read and `UnicodeDecodeError` when it is not text.
    """
    with Path(path).open(encoding="utf-8") as lines:
        yield from replay_lines(lines, on_skip=on_skip)
