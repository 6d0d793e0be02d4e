"""Generate the pictures of the docs from the code: the connection's states, the live table.

Run ``python tests/gen_docs.py`` after changing `_TRANSITIONS` (or the live table); the state
diagram is an SVG drawn here from the transition table (no JavaScript, no CDN: it renders offline),
and `tests/test_docs.py` fails while it and the table disagree, so the picture cannot drift from the
code. The picture of ``kis-ws watch`` is rich's own SVG export of the live table, filled from the
seeded simulator's market model.
"""

from __future__ import annotations

import io
import random
import re
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path

from kis_sim import MarketModel, layout_row

from kis_proto import MarketSession, decode_message
from kis_proto._connection import _TRANSITIONS
from kis_proto.layouts import TRS

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGE = DOCS / "connection.md"
STATES_SVG = DOCS / "img" / "connection-states.svg"
WATCH_SVG = DOCS / "img" / "watch.svg"
BEGIN, END = "<!-- state-diagram:begin -->", "<!-- state-diagram:end -->"

LABELS = {
    "ACCEPTED": "101 Switching Protocols",
    "REJECTED": "upgrade refused",
    "SEND_CLOSE": "close()",
    "CLOSED": "closed / EOF / timeout / fault",
}

_BOX_W, _BOX_H, _GAP, _TOP = 120, 40, 230, 30


def states_svg() -> str:
    """The transition table as an SVG: the states in lifecycle order, one arrow per (from, to).

    Neighbours get a straight arrow with its label above; farther targets an arc below, deeper the
    farther it reaches, so no two arrows cross.
    """
    order = [state.name for state in type(next(iter(_TRANSITIONS))[0])]
    arrows: dict[tuple[str, str], list[str]] = {}
    for (state, event), next_state in _TRANSITIONS.items():
        arrows.setdefault((state.name, next_state.name), []).append(LABELS[event.name])
    x = {name: 20 + i * (_BOX_W + _GAP) for i, name in enumerate(order)}
    width = 40 + len(order) * _BOX_W + (len(order) - 1) * _GAP
    reach = max(abs(order.index(b) - order.index(a)) for a, b in arrows)
    height = _TOP + _BOX_H + 53 * (reach - 1) + 30
    mid = _TOP + _BOX_H // 2
    out = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
        ),
        "<title>KISConnection states (generated from the transition table)</title>",
        (
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
            'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>'
        ),
    ]
    out.extend(
        f'<rect x="{x[name]}" y="{_TOP}" width="{_BOX_W}" height="{_BOX_H}" rx="8" fill="#eef" stroke="#335"/>'
        f'<text x="{x[name] + _BOX_W // 2}" y="{mid + 4}" text-anchor="middle" font-weight="bold">{name}</text>'
        for name in order
    )
    for (source, target), labels in arrows.items():
        label = escape(" · ".join(labels))
        distance = order.index(target) - order.index(source)
        if distance == 1:
            a, b = x[source] + _BOX_W, x[target]
            out.append(
                f'<line x1="{a}" y1="{mid}" x2="{b}" y2="{mid}" stroke="#335" marker-end="url(#arrow)"/>'
                f'<text x="{(a + b) // 2}" y="{mid - 8}" text-anchor="middle">{label}</text>'
            )
            continue
        a, b = x[source] + _BOX_W // 2, x[target] + _BOX_W // 2
        bottom = _TOP + _BOX_H
        control = bottom + 70 * (abs(distance) - 1)
        apex = bottom + 3 * (control - bottom) // 4  # the lowest point of this cubic curve
        out.append(
            f'<path d="M {a} {bottom} C {a} {control} {b} {control} {b} {bottom}" fill="none" '
            'stroke="#335" marker-end="url(#arrow)"/>'
            f'<text x="{(a + b) // 2}" y="{apex + 15}" text-anchor="middle">{label}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def states_table() -> str:
    """The same transitions as a table, under the picture (and for screen readers)."""
    rows = ["| from | on | to |", "|---|---|---|"]
    rows += [
        f"| {source.name} | {LABELS[event.name]} | {target.name} |"
        for (source, event), target in _TRANSITIONS.items()
    ]
    return "\n".join(rows)


def render(page: str) -> str:
    """`page` with the block between the markers replaced by the picture and the table."""
    block = f"{BEGIN}\n![KISConnection states](img/connection-states.svg)\n\n{states_table()}\n{END}"
    return re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, page, flags=re.DOTALL)


def watch_svg() -> str:
    """``kis-ws watch`` in a terminal: the live table, as rich exports it."""
    from kis_ws._table import LiveBoard
    from rich.console import Console

    market = MarketModel(random.Random(3))
    at = datetime(2026, 12, 3, 10, 30, 5, tzinfo=timezone(timedelta(hours=9)))
    board = LiveBoard("the built-in simulator")
    board.status = "connected"
    frames: list[tuple[str, dict[str, str]]] = []
    for step in range(8):
        now = at + timedelta(seconds=step)
        symbols = ("005930", "000660", "035420")
        frames.extend(("H0STCNT0", market.trade(symbol, now, MarketSession.REGULAR)) for symbol in symbols)
        frames.append(("H0STASP0", market.book("005930", now, MarketSession.REGULAR)))
        frames.append(("HDFSCNT0", market.overseas_trade("DNASAAPL", now - timedelta(hours=14), now)))
    for tr_id, values in frames:
        text = f"0|{tr_id}|001|" + "^".join(layout_row(TRS[tr_id].layout(), values))
        for event in decode_message(text):
            board.update(event)  # type: ignore[arg-type]
    board.note("subscribed  H0STCNT0 005930 (plain)")
    console = Console(record=True, width=118, color_system="truecolor", file=io.StringIO())
    console.print(board.render())
    return console.export_svg(title="kis-ws watch 005930 000660 035420 H0STASP0:005930 DNASAAPL")


if __name__ == "__main__":
    PAGE.write_text(render(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    STATES_SVG.parent.mkdir(exist_ok=True)
    STATES_SVG.write_text(states_svg(), encoding="utf-8")
    WATCH_SVG.write_text(watch_svg(), encoding="utf-8")
