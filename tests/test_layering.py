"""The import contract names every private module of kis_proto (import-linter checks the arrows)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_private_core_module_is_forbidden_to_the_transports() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    [public_api] = [c for c in contracts if "public API" in c["name"]]
    private = {f"kis_proto.{p.stem}" for p in (ROOT / "kis_proto").glob("_*.py") if p.stem != "__init__"}
    assert private == set(public_api["forbidden_modules"])
