"""Generate the state diagram in docs/connection.md from the connection's transition table.

Run ``python tests/gen_docs.py`` after changing `_TRANSITIONS`; `tests/test_docs.py` fails while
the page and the table disagree, so the picture cannot drift from the code.
"""

from __future__ import annotations

import re
from pathlib import Path

from kis_proto._connection import _TRANSITIONS

PAGE = Path(__file__).resolve().parent.parent / "docs" / "connection.md"
BEGIN, END = "<!-- state-diagram:begin -->", "<!-- state-diagram:end -->"

LABELS = {
    "ACCEPTED": "101 Switching Protocols",
    "REJECTED": "upgrade refused",
    "SEND_CLOSE": "close()",
    "CLOSED": "close handshake done / EOF / timeout / fault",
}


def diagram() -> str:
    lines = ["```mermaid", "stateDiagram-v2", "    [*] --> CONNECTING: KISConnection(...)"]
    for (source, event), target in _TRANSITIONS.items():
        lines.append(f"    {source.name} --> {target.name}: {LABELS[event.name]}")
    lines += ["    CLOSED --> [*]", "```"]
    return "\n".join(lines)


def render(page: str) -> str:
    block = f"{BEGIN}\n{diagram()}\n{END}"
    return re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, page, flags=re.DOTALL)


if __name__ == "__main__":
    PAGE.write_text(render(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
