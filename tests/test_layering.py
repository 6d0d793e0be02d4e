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


def test_each_face_loads_only_what_it_needs() -> None:
    """What `import X` loads at run time (import-linter sees only the imports written down)."""
    import subprocess
    import sys

    probe = (
        "import sys, {module}; "
        "print(sorted(m for m in ('anyio', 'trio', 'rich', 'pyarrow', 'nats', 'kis_ws') if m in sys.modules))"
    )
    expected = {
        "kis_proto": [],
        "kis_asyncio": [],
        "kis_anyio": ["anyio"],
        "kis_ws": ["kis_ws"],
        "kis_nats": ["nats"],
        "kis_data": ["pyarrow"],
    }
    for module, loaded in expected.items():
        done = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", probe.format(module=module)], capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == repr(loaded), (module, done.stdout, done.stderr)
