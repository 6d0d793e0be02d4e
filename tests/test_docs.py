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


def public_modules() -> list[str]:
    """Every public module of the distribution: each package, and its modules not named ``_x``."""
    import tomllib

    config = tomllib.loads((gen_docs.DOCS.parent / "pyproject.toml").read_text(encoding="utf-8"))
    found: list[str] = []
    for folder in config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        package = gen_docs.DOCS.parent / folder
        found.append(package.name)
        found += [
            f"{package.name}.{p.stem}" for p in sorted(package.glob("*.py")) if not p.stem.startswith("_")
        ]
    return found


def test_every_public_module_has_its_names_on_the_api_page() -> None:
    import importlib
    import re

    page = (gen_docs.PAGE.parent / "api.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"### ([\w.]+)\n(.*?)(?=\n##|\Z)", page, flags=re.DOTALL))
    for name in public_modules():
        assert name in sections, f"docs/api.md has no section for {name}"
        module = importlib.import_module(name)
        if name == "kis_proto.records":
            continue  # one class per TR and era: the Fields page lists them
        named = set(re.findall(r"`(\w+)`", sections[name]))
        missing = set(module.__all__) - named
        assert not missing, f"docs/api.md does not mention {sorted(missing)} of {name}"


def test_every_public_module_has_a_reference_page_in_the_site() -> None:
    """Each public module has one page that mkdocstrings fills from its docstrings, in the nav."""
    reference = gen_docs.DOCS / "reference"
    nav = (gen_docs.DOCS.parent / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.name: p.read_text(encoding="utf-8") for p in reference.glob("*.md")}
    for module in public_modules():
        found = [name for name, text in pages.items() if f"::: {module}\n" in text]
        assert found == [f"{module}.md"], module
        assert f"reference/{module}.md" in nav, module
    assert len(pages) == len(public_modules())  # no page of a module that is gone


def test_the_core_s_front_door_is_h11_sized() -> None:
    import kis_proto

    assert len(kis_proto.__all__) <= 35
