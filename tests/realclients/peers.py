"""The peers' virtualenv: the third-party clients, pinned, installed once from the package index.

``python -m tests.realclients.peers`` (from the repository root, with the project's Python) builds
it and prints its path; the tests call `ensure_venv` and skip, naming that command, when it cannot be
built (no network, a pip error). It lives in ``$XDG_CACHE_HOME/kis-proto/`` (``~/.cache/kis-proto/``)
under a name hashed from the pinned list and the Python version, so a changed pin builds a new one
and an unchanged one is reused. ``--official`` builds the second virtualenv, for the official KIS
sample (``examples_user/kis_auth.py``), which needs Python 3.12 or newer (its f-strings nest quotes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: The peers, pinned, and the libraries under them whose behaviour is on the wire (their
#: WebSocket, HTTP and AES implementations, the parsers' pandas/pydantic).
PEERS = (
    "kis-trader==0.12.2",
    "python-kis==2.1.6",
    "mojito2==0.1.6",
    "kis-agent==1.6.1",
    "cluefin-openapi==1.0.0",
    "websockets==16.1.1",
    "websocket-client==1.9.2",
    "requests==2.34.2",
    "urllib3==2.8.0",
    "cryptography==50.0.2",
    "pycryptodome==3.24.1",
    "numpy==2.4.6",
    "pandas==2.3.3",
    "pydantic==2.14.4",
)

#: What the official sample imports (kis_auth.py and the domestic-stock WebSocket functions).
OFFICIAL = (
    "pandas==2.3.3",
    "numpy==2.4.6",
    "requests==2.34.2",
    "websockets==16.1.1",
    "PyYAML==6.0.3",
    "pycryptodome==3.24.1",
)

COMMAND = ".venv/bin/python -m tests.realclients.peers"
_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"


class PeersUnavailableError(RuntimeError):
    """The virtualenv could not be built; the message says why and how to retry."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kis-proto"


def python_version(python: str) -> tuple[int, int] | None:
    """The (major, minor) of interpreter `python`, or None if it does not run."""
    try:
        done = subprocess.run(  # noqa: S603 - an interpreter path we chose, no shell
            [python, "-c", _PROBE], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    major, _, minor = done.stdout.strip().partition(".")
    if done.returncode != 0 or not major.isdigit() or not minor.isdigit():
        return None
    return int(major), int(minor)


def venv_dir(name: str, requirements: tuple[str, ...], python: str) -> Path:
    version = python_version(python)
    key = "\n".join([*requirements, f"python {version}"]).encode()
    return cache_root() / f"{name}-{hashlib.sha256(key).hexdigest()[:16]}"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(
    name: str = "peers", requirements: tuple[str, ...] = PEERS, python: str = sys.executable
) -> Path:
    """The virtualenv with `requirements` for `python`, built on first use; its interpreter's path.

    Built in a temporary directory and renamed into place when complete, so an interrupted or
    concurrent build never leaves a half-built one behind.
    """
    target = venv_dir(name, requirements, python)
    if (target / ".complete").exists():
        return venv_python(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        steps = [
            [python, "-m", "venv", str(building)],
            [
                str(venv_python(building)),
                *("-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"),
                *("--retries", "1", "--timeout", "20"),
                *requirements,
            ],
        ]
        for step in steps:
            try:
                done = subprocess.run(  # noqa: S603 - our own interpreter and pip, no shell
                    step, capture_output=True, text=True, timeout=600, check=False
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise PeersUnavailableError(f"{step[2:4]} failed: {exc}") from exc
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                raise PeersUnavailableError(f"{' '.join(step[1:4])} failed: {' | '.join(tail)}")
        # Moving a venv breaks only its console scripts' shebangs: everything here runs `python -m`.
        (building / ".complete").write_text("\n".join(requirements) + "\n", encoding="utf-8")
        try:
            building.rename(target)
        except OSError:
            if not (target / ".complete").exists():  # not a concurrent build that won the race
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return venv_python(target)


def official_python() -> str | None:
    """An interpreter for the official sample (3.12+): $KIS_OFFICIAL_SAMPLE_PYTHON, ours, or on PATH."""
    candidates = [os.environ.get("KIS_OFFICIAL_SAMPLE_PYTHON"), sys.executable]
    candidates += [shutil.which(f"python3.{minor}") for minor in (14, 13, 12)]
    for candidate in filter(None, candidates):
        version = python_version(candidate)
        if version is not None and version >= (3, 12):
            return candidate
    return None


def main(argv: list[str]) -> int:
    try:
        if "--official" in argv:
            python = official_python()
            if python is None:
                sys.stderr.write("no Python 3.12+ found: set KIS_OFFICIAL_SAMPLE_PYTHON\n")
                return 1
            path = ensure_venv("official", OFFICIAL, python)
        else:
            path = ensure_venv()
    except PeersUnavailableError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
