"""Reading `kis-ws record` files back, for replays and backtests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kis_proto import replay_lines

if TYPE_CHECKING:
    from collections.abc import Iterator

    from kis_proto import Event

__all__ = ["read_recording"]


def read_recording(path: str | Path) -> Iterator[tuple[float, Event]]:
    """Every event of a `kis-ws record` file with its arrival time (unix seconds), in order.

    For backtests: ``for t, event in read_recording("day.kisrec"): ...``. Encrypted notices
    decrypt with the keys of their recorded acks; the format is in `kis_proto.RECORDING_HEADER`.
    """
    with Path(path).open(encoding="utf-8") as lines:
        yield from replay_lines(lines)
