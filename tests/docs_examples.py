"""The code blocks of README.md and docs/, and how the suite runs them (tests/test_docs_examples.py).

Every ``python`` block runs as a program of its own, every ``sh`` block's commands run one after
the other in bash, in a workspace of the page's own: no KIS credentials in the environment (so
the commands use the simulator, as a newcomer's do), ``HOME`` inside the workspace (the gateway's
credentials go there), and the files a page reads ready: ``day.kisrec`` (a recording of the
simulator), ``tests/data/frames.txt``, and TLS files for ``localhost`` (``ca.pem``, ``server.pem``,
``server-key.pem``).

The rules a block is held to:

- A block whose first line is ``# needs a KIS account`` is skipped, with the rest of that line as
  the reason; the test's id names the block. A block whose first line is ``# (continued)`` is run
  after the page's previous Python block, in one program.
- A command ends by itself with exit status 0, or, if it runs until stopped (``kis-ws watch``
  without ``--count``), is stopped with Ctrl-C (SIGINT) after a few seconds and must exit 130 having
  printed something. The servers a block starts (``kis-ws gateway``, ``kis-ws sim``,
  ``nats-server``) run in the background, as in a second terminal, until the page is done: the
  page's later blocks use them. Stopped with Ctrl-C, they must exit cleanly.
- What the suite cannot do as written it changes, in the open (`SUBSTITUTIONS`): it listens on
  loopback only, and a host named as "another machine" is this one. Installation commands are not
  run (CI runs them), nor the README's test command (it is this suite).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BASH = shutil.which("bash") or "/bin/bash"

#: What the suite changes in a command or program before it runs it, and why (module docstring).
SUBSTITUTIONS: tuple[tuple[str, str], ...] = (
    ("0.0.0.0", "127.0.0.1"),  # noqa: S104 - the suite listens on loopback only
    ("nats-host", "localhost"),  # "another machine" is this one
    ("gateway-host", "127.0.0.1"),
    (".venv/bin/", f"{BIN}/"),  # the README's venv is the one running the suite
)
#: Long-running servers: how a command is recognised, and the line it prints once it serves.
SERVICES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^kis-ws gateway(?! (status|nats-config))\b"), "is active for"),
    (re.compile(r"^kis-ws sim\b"), "KIS simulator on"),
    (re.compile(r"^nats-server\b"), "Server is ready"),
    (re.compile(r"^kis-ws record\b.*--metrics\b(?!.*--duration)"), "metrics on"),
    (re.compile(r"^kis-ws dash\b(?!.*--duration)"), "dashboard on"),
)
_SETUP = re.compile(r"^(python3 -m venv \S+|\S*pip install .*|\S*python -m tests\.realclients\.peers)$")
_TEST_COMMAND = re.compile(r"-m pytest\b")
ACCOUNT = "# needs a KIS account"
CONTINUED = "# (continued)"
#: How long a command that runs until stopped is given before Ctrl-C.
SETTLE = 5.0
TIMEOUT = 90.0


@dataclass
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int
    lang: str
    text: str
    #: The Python blocks run before it in the same program (``# (continued)``).
    before: str = ""

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def skip_reason(self) -> str | None:
        first = self.text.lstrip().splitlines()[0] if self.text.strip() else ""
        if first.startswith(ACCOUNT):
            return "needs a KIS account" + first[len(ACCOUNT) :]
        return None


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks() -> list[Block]:
    """Every Python and shell block, in page order (continued blocks folded into the next)."""
    found: list[Block] = []
    fence = re.compile(r"^```(\w*)\s*$")
    for page in pages():
        lines = page.read_text(encoding="utf-8").splitlines()
        previous_python = ""
        i = 0
        while i < len(lines):
            opened = fence.match(lines[i])
            if not opened:
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            lang, text = opened.group(1), "\n".join(lines[i + 1 : end]) + "\n"
            if lang == "python":
                continued = text.lstrip().startswith(CONTINUED)
                block = Block(page, i + 1, lang, text, before=previous_python if continued else "")
                previous_python = block.before + text
                found.append(block)
            elif lang in ("sh", "bash", "shell", "console"):
                found.append(Block(page, i + 1, "sh", text))
            i = end + 1
    return found


def substitute(text: str) -> str:
    for old, new in SUBSTITUTIONS:
        text = text.replace(old, new)
    return text


def environment(workspace: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIS_")}
    env["HOME"] = str(workspace / "home")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def commands(text: str) -> list[str]:
    """A shell block's commands: continuation lines joined, comment and empty lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def runnable(command: str) -> str | None:
    """The part of `command` the suite runs (installation steps dropped), or None for none."""
    parts = [part.strip() for part in command.split("&&")]
    kept = [part for part in parts if not _SETUP.match(part.split("  #")[0].strip())]
    if not kept or any(_TEST_COMMAND.search(part) for part in kept):
        return None
    return substitute(" && ".join(kept))


class Service:
    """A server a block started, in the background until the block is done."""

    def __init__(self, command: str, ready: str, workspace: Path, env: dict[str, str]) -> None:
        self.command = command
        self.log = workspace / f"service-{time.monotonic_ns()}.log"
        self._out = self.log.open("w")
        self.process = subprocess.Popen(  # noqa: S603 - the page's own command, in bash
            [BASH, "-c", f"exec {command}"],
            cwd=workspace,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while ready not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"{command!r} did not start:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._out.close()
        return self.process.returncode


def run_command(command: str, workspace: Path, env: dict[str, str]) -> str:
    """Run one command; its output. Fails unless it exits 0, or exits 130 when stopped after a while."""
    out = workspace / f"command-{time.monotonic_ns()}.log"
    with out.open("w") as sink:
        process = subprocess.Popen(  # noqa: S603 - the page's own command, in bash
            [BASH, "-c", command], cwd=workspace, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            process.wait(SETTLE)
            stopped = False
        except subprocess.TimeoutExpired:
            # Still going: either it runs until stopped, or it is still at work. The first prints.
            stopped = bool(out.read_text(errors="replace").strip())
            if stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGINT)
                # It may have ended by itself just before the signal: then it must have said 0.
                stopped = process.wait(TIMEOUT) != 0
            try:
                process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
                raise AssertionError(f"{command!r} did not end:\n{out.read_text(errors='replace')}") from None
    said = out.read_text(errors="replace")
    # Stopped: 130, or killed by the SIGINT itself when it came as the program was exiting anyway.
    expected = (130, -signal.SIGINT) if stopped else (0,)
    assert process.returncode in expected, f"{command!r} exited {process.returncode}, not {expected}:\n{said}"
    return said


def run_shell(block: Block, workspace: Path, services: list[Service]) -> None:
    """Run the block's commands; the servers it starts join `services` (the page's)."""
    env = environment(workspace)
    for line in commands(block.text):
        command = runnable(line)
        if command is None:
            continue
        service = next((ready for pattern, ready in SERVICES if pattern.search(command)), None)
        if service is not None:
            services.append(Service(command, service, workspace, env))
        else:
            run_command(command, workspace, env)


def stop_services(services: list[Service]) -> None:
    """Ctrl-C to the page's servers, the last started first; each must exit cleanly."""
    codes = [(s.command, s.stop()) for s in reversed(services)]
    services.clear()
    bad = [(command, code) for command, code in codes if code not in (0, 130, -signal.SIGINT)]
    assert not bad, f"servers that did not stop cleanly: {bad}"


def run_python(block: Block, workspace: Path) -> None:
    program = workspace / f"example_{block.line}.py"
    program.write_text(substitute(block.before + block.text), encoding="utf-8")
    done = subprocess.run(  # noqa: S603 - our own interpreter, the page's program
        [sys.executable, program.name],
        cwd=workspace,
        env=environment(workspace),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout}\n{done.stderr}"
