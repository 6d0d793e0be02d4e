"""The layering: import-linter checks the arrows; these check that its contracts cover every package."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_package_of_the_distribution_is_in_the_contracts_and_in_one_layer() -> None:
    shipped = {Path(p).name for p in CONFIG["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]}
    linter = CONFIG["tool"]["importlinter"]
    assert set(linter["root_packages"]) == shipped
    [layers] = [c for c in linter["contracts"] if c["type"] == "layers"]
    layered = [name for layer in layers["layers"] for name in re.split(r"\s*[|:]\s*", layer)]
    assert sorted(layered) == sorted(shipped)
    assert any(c["type"] == "private_modules" for c in linter["contracts"])


def test_each_folder_holds_what_its_name_says() -> None:
    """transports/ holds transports; the other packages sit where their kind is named (docs/architecture.md)."""
    folders = {
        Path(p).name: Path(p).parent.name or "."
        for p in CONFIG["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    }
    assert folders == {
        "kis_proto": ".",
        "kis_anyio": "transports",
        "kis_asyncio": "transports",
        "kis_nats": "transports",
        "kis_sim": "simulator",
        "kis_gateway": "services",
        "kis_metrics": "services",
        "kis_dash": "services",
        "kis_data": "data",
        "kis_ws": "cli",
    }


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
        "kis_sim": ["anyio"],
        "kis_ws": ["kis_ws"],
        "kis_nats": ["nats"],
        "kis_gateway": ["nats"],
        "kis_data": [],
        "kis_data.parquet": ["pyarrow"],
        "kis_dash": ["anyio"],
    }
    for module, loaded in expected.items():
        done = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", probe.format(module=module)], capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == repr(loaded), (module, done.stdout, done.stderr)


def test_only_the_dashboard_loads_its_web_server() -> None:
    """`kis-ws watch` and the core never load aiohttp (the dash extra); `kis_dash` does.

    (nats-py loads aiohttp by itself when it is installed, for its WebSocket transport: not probed.)
    """
    import subprocess
    import sys

    probe = "import sys, {module}; print('aiohttp' in sys.modules)"
    for module, loaded in {
        "kis_proto": False,
        "kis_anyio": False,
        "kis_sim": False,
        "kis_ws.__main__": False,
        "kis_dash": True,
    }.items():
        done = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", probe.format(module=module)], capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == str(loaded), (module, done.stdout, done.stderr)
