"""The docs say what the code does: the state diagram is the transition table's."""

from __future__ import annotations

from . import gen_docs


def test_state_diagram_matches_the_table() -> None:
    page = gen_docs.PAGE.read_text(encoding="utf-8")
    assert gen_docs.BEGIN in page
    assert page == gen_docs.render(page), "docs/connection.md is stale: run `python tests/gen_docs.py`"
    picture = gen_docs.STATES_SVG.read_text(encoding="utf-8")
    assert picture == gen_docs.states_svg(), (
        "docs/img/connection-states.svg is stale: run `python tests/gen_docs.py`"
    )
    assert "http" not in picture.replace("http://www.w3.org/2000/svg", "")  # nothing fetched: renders offline
    for name in ("CONNECTING", "OPEN", "CLOSING", "CLOSED", "101 Switching Protocols"):
        assert name in picture


def test_the_docs_need_no_network() -> None:
    """No page loads a script or a picture from elsewhere (the site must work offline)."""
    import re

    for page in gen_docs.DOCS.rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        assert "```mermaid" not in text, page
        assert not re.search(r"!\[[^\]]*\]\(https?://", text), page
        assert "<script" not in text, page


def test_the_picture_of_watch_is_the_live_table() -> None:
    picture = gen_docs.WATCH_SVG.read_text(encoding="utf-8").replace("&#160;", " ")
    assert picture.startswith("<svg")
    for shown in ("kis-ws watch", "session", "regular", "Apple"):
        assert shown in picture


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


def test_the_api_reference_is_generated_from_the_docstrings() -> None:
    """Each package has a reference page that mkdocstrings fills from its docstrings."""
    reference = gen_docs.DOCS / "reference"
    for module in ("kis_proto", "kis_anyio", "kis_anyio.blocking", "kis_asyncio", "kis_proto.records"):
        pages = [p for p in reference.glob("*.md") if f"::: {module}\n" in p.read_text(encoding="utf-8")]
        assert len(pages) == 1, module
        assert f"reference/{pages[0].name}" in (gen_docs.DOCS.parent / "mkdocs.yml").read_text(
            encoding="utf-8"
        )
