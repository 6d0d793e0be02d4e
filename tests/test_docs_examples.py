"""Every Python block and shell command of README.md and docs/ runs against the simulator.

The rules are in tests/docs_examples.py: a block that does not run fails here, one that truly
needs a KIS account says so on its first line and is skipped by name.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from . import docs_examples
from .docs_examples import ROOT, Block

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

BLOCKS = docs_examples.blocks()


@pytest.fixture(scope="session")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the pages read: a recording of the simulator, the sample frames, TLS files."""
    trustme = pytest.importorskip("trustme")
    base = tmp_path_factory.mktemp("docs-base")
    (base / "home").mkdir()
    (base / "tests" / "data").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "data" / "frames.txt", base / "tests" / "data" / "frames.txt")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(str(base / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(base / "server.pem"))
    cert.private_key_pem.write_to_path(str(base / "server-key.pem"))
    record = ["record", "day.kisrec", "005930", "000660", "H0STASP0:005930", "--duration", "4", "--seed", "1"]
    done = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "kis_ws", *record],
        cwd=base,
        env=docs_examples.environment(base),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return base


class Page:
    """The page whose blocks are running: its workspace and the servers its blocks started."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.workspace: Path | None = None
        self.services: list[docs_examples.Service] = []


@pytest.fixture(scope="session")
def page_state() -> Iterator[Page]:
    state = Page()
    yield state
    docs_examples.stop_services(state.services)


@pytest.fixture
def page(
    base: Path, page_state: Page, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Page:
    """The block's page: a workspace of the base files and servers, shared by its blocks in order."""
    block: Block = request.node.callspec.params["block"]
    if page_state.path != block.page:
        docs_examples.stop_services(page_state.services)  # the previous page's servers
        where = tmp_path_factory.mktemp("docs-page")
        shutil.copytree(base, where, dirs_exist_ok=True)
        page_state.path, page_state.workspace = block.page, where
    return page_state


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_the_block_runs(block: Block, page: Page) -> None:
    reason = block.skip_reason
    if reason is not None:
        pytest.skip(f"{block.id} {reason}")
    assert page.workspace is not None
    if block.lang == "python":
        docs_examples.run_python(block, page.workspace)
    else:
        docs_examples.run_shell(block, page.workspace, page.services)


def test_the_blocks_are_found_and_marks_are_honest() -> None:
    """The collector sees the pages' blocks; a skip mark is only for what needs an account."""
    assert len(BLOCKS) > 30
    assert {b.page.name for b in BLOCKS} >= {"README.md", "index.md", "tutorial-trio.md", "gateway.md"}
    for block in BLOCKS:
        if block.skip_reason is not None:
            assert any(word in block.text for word in ("Credentials(", "KIS_APP_KEY", "credentials=")), (
                block.id
            )
