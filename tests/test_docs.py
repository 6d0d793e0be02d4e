"""The docs say what the code does: the state diagram is the transition table's."""

from __future__ import annotations

from . import gen_docs


def test_state_diagram_matches_the_table() -> None:
    page = gen_docs.PAGE.read_text(encoding="utf-8")
    assert gen_docs.BEGIN in page
    assert page == gen_docs.render(page), "docs/connection.md is stale: run `python tests/gen_docs.py`"


def test_api_page_names_every_public_name() -> None:
    import re

    import kis_anyio
    import kis_asyncio

    import kis_proto

    page = (gen_docs.PAGE.parent / "api.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"## (\w+) .*?\n(.*?)(?=\n## |\Z)", page, flags=re.DOTALL))
    for module in (kis_proto, kis_anyio, kis_asyncio):
        named = set(re.findall(r"`(\w+)`", sections[module.__name__]))
        missing = set(module.__all__) - named
        assert not missing, f"docs/api.md does not mention {sorted(missing)} of {module.__name__}"
