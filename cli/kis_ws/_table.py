"""The live table `kis-ws watch` shows in a terminal: the latest record per (TR, key), and the state.

Plain lines are printed instead when the output is not a terminal (pipes, CI) or `--jsonl`.
"""

from __future__ import annotations

from datetime import time as day_time
from decimal import Decimal
from typing import TYPE_CHECKING

from rich.table import Table

from kis_proto import MarketSession
from kis_proto.symbols import listing

from ._output import mask, notice_text

if TYPE_CHECKING:
    from rich.console import RenderableType

    from kis_proto import Record

__all__ = ["LiveBoard"]


def _number(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | Decimal):
        return f"{value:,}"
    return str(value)


def _signed(value: object) -> str:
    if isinstance(value, int | Decimal):
        colour = "red" if value > 0 else "blue" if value < 0 else "white"  # KRX colours: up red
        return f"[{colour}]{value:+,}[/]"
    return "-"


class LiveBoard:
    """The latest record of each subscription, plus a status line and counters."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.status = "connecting"
        self.latest: dict[tuple[str, str], Record] = {}
        self.records = 0
        self.notes: list[str] = []

    def update(self, record: Record) -> None:
        self.latest[(record.tr_id, record.tr_key)] = record
        self.records += 1

    def note(self, line: str) -> None:
        self.notes = [*self.notes[-4:], line]

    def render(self) -> RenderableType:
        table = Table(title=f"{self.source} — {self.status} — {self.records:,} records", expand=False)
        columns = (
            "TR",
            "key",
            "name",
            "time",
            "session",
            "price",
            "change",
            "rate %",
            "volume",
            "bid",
            "ask",
        )
        for column in columns:
            table.add_column(
                column, justify="left" if column in ("TR", "key", "name", "time", "session") else "right"
            )
        for (tr_id, key), rec in sorted(self.latest.items()):
            time = rec.get("time")
            rate = rec.get("PRDY_CTRT", rec.get("RATE"))
            notice = notice_text(rec)
            listed = listing(key)
            session = rec.get("session")
            table.add_row(
                tr_id,
                mask(key) if notice is not None else key,  # your HTS ID stays off the screen
                notice.split(" qty=")[0] if notice is not None else listed.name if listed is not None else "",
                time.strftime("%H:%M:%S") if isinstance(time, day_time) else "-",
                session.label if isinstance(session, MarketSession) else "-",
                _number(rec.get("price")),
                _signed(rec.get("change")),
                _number(rate),
                _number(rec.get("volume")),
                _number(rec.get("BIDP1", rec.get("PBID", rec.get("PBID1")))),
                _number(rec.get("ASKP1", rec.get("PASK", rec.get("PASK1")))),
            )
        if self.notes:
            table.caption = " | ".join(self.notes)
        return table
