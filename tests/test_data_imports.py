"""pyarrow stays optional: nothing loads it (or kis_data.parquet) unless a data command or it is used.

These run with or without pyarrow installed, each in a fresh interpreter so that what this test
process has imported does not count.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIS_")}
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
        cwd=cwd,
    )


LOADED = (
    "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyarrow' or m.startswith('kis_data.')"
    " and m != 'kis_data._recording'))"
)


def test_importing_the_core_the_transports_and_the_cli_loads_no_pyarrow(tmp_path: Path) -> None:
    result = _run(
        "import sys, kis_proto, kis_anyio, kis_asyncio, kis_ws\n"
        "from kis_ws.__main__ import build_parser\n"
        "build_parser().parse_args(['record', 'x.kisrec', '005930', '--parquet', 'out'])\n" + LOADED,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_kis_ws_watch_loads_no_pyarrow(tmp_path: Path) -> None:
    result = _run(
        "import sys, io\n"
        "from kis_ws.__main__ import main\n"
        "assert main(['watch', '005930', '--count', '2', '--plain'], out=io.StringIO()) == 0\n" + LOADED,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "day.kisrec", "--to", "out"],
        ["record", "day.kisrec", "005930", "--parquet", "out", "--count", "1"],
    ],
)
def test_without_pyarrow_the_data_commands_say_what_to_install(argv: list[str], tmp_path: Path) -> None:
    result = _run(
        "import sys\n"
        "sys.modules['pyarrow'] = None  # as if it were not installed\n"
        "from kis_ws.__main__ import main\n"
        f"sys.exit(main({argv!r}))\n",
        tmp_path,
    )
    assert not list(tmp_path.iterdir())  # nothing created before the check
    assert result.returncode == 2, result.stderr
    assert "needs pyarrow" in result.stderr
    assert "pip install 'kis-proto[data]'" in result.stderr
    assert "Traceback" not in result.stderr
