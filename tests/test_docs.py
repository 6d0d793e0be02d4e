"""The docs say what the code does: the state diagram is the transition table's."""

from __future__ import annotations

from . import gen_docs


def test_state_diagram_matches_the_table() -> None:
    page = gen_docs.PAGE.read_text(encoding="utf-8")
    assert gen_docs.BEGIN in page
    assert page == gen_docs.render(page), "docs/connection.md is stale: run `python tests/gen_docs.py`"
