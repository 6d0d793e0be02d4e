"""Real third-party KIS clients against ``kis-ws sim``: what each parses, rejects and misparses.

The simulator is only as good as real clients find it. Each client below runs, as a subprocess in
the peers' virtualenv (`tests.realclients.peers`: pinned, installed from the package index once
and cached), against its own ``kis-ws sim`` on loopback for a few seconds, and prints a tally
(`tests.realclients`). The tests assert the tallies: kis-trader, written for today's KIS layouts,
must parse trades, books and notices and reject nothing; python-kis, written for the layouts before
2026-09-14, must parse trades and books against ``--layouts 2026-08``; mojito2, kis-agent and
cluefin-openapi must keep doing what they do, their known bugs included (asserted too, so that a
change in the simulator that hides or worsens them shows). The official sample client
(koreainvestment/open-trading-api ``examples_user/kis_auth.py``) runs only when
``$KIS_OFFICIAL_SAMPLE_DIR`` names a checkout of that repository.

The virtualenv is the only network access (once); without it the tests skip, naming the command
that builds it. All clients run at the same time, so the module takes about one client's time.
``KIS_REAL_CLIENTS_REPORT=path.json`` also writes the tallies to a file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest

from .realclients import peers

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.timeout(900)  # the first test waits for the virtualenv and every client

ROOT = Path(__file__).resolve().parents[1]
#: Seconds each client streams.
DURATION = 10.0
#: How long a runner may take beyond that (imports, approval, subscription, shutdown).
RUNNER_SLACK = 45.0
#: Every simulator: reproducible, a fast tick (more records and notices in the window), PINGPONG
#: every 2 s, and a client that has not echoed the last one dropped, as KIS does after ~100 s.
COMMON_SIM_ARGS = ["--seed", "7", "--tick", "0.1", "--pingpong", "2", "--strict-pingpong"]


@dataclass(frozen=True)
class Peer:
    """A client and how it is run: its runner module and environment (real or paper)."""

    name: str
    runner: str
    env: str = "real"


PEERS = {
    peer.name: peer
    for peer in (
        Peer("kis-trader", "run_kis_trader"),
        Peer("kis-trader-paper", "run_kis_trader", env="paper"),
        Peer("python-kis", "run_python_kis"),
        Peer("mojito2", "run_mojito"),
        Peer("kis-agent", "run_kis_agent"),
        Peer("cluefin-openapi", "run_cluefin"),
    )
}
OFFICIAL = Peer("official", "run_official")

#: The simulator's arguments per client, now that ``kis-ws sim`` speaks today's layouts by default
#: (47 trade fields, 63 book fields) and ``--layouts 2026-08`` the ones before (46, 59).
SIM_ARGS: dict[str, list[str]] = {
    "kis-trader": [],
    "kis-trader-paper": [],
    "python-kis": ["--layouts", "2026-08"],
    "mojito2": [],
    "kis-agent": [],
    "cluefin-openapi": [],
    "official": [],
}
# -- the simulator -------------------------------------------------------------------------------


class Simulator:
    """``kis-ws sim`` in a subprocess on a free port; `url` once its readiness line is out."""

    READY = "KIS simulator on "

    def __init__(self, args: list[str]) -> None:
        self.args = args
        command = [sys.executable, "-m", "kis_ws", "sim", "--port", "0", *args]
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI, no shell
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.url = ""
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(self.process.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:  # drained to the end, so the simulator never blocks on a full pipe
            self.lines.append(line.rstrip("\n"))
            if not self.url and line.startswith(self.READY):
                self.url = line[len(self.READY) :].split()[0]
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 20.0) -> str:
        if not self._ready.wait(timeout) or not self.url:
            self.stop()
            raise RuntimeError(f"kis-ws sim {self.args} did not start: {self.lines[-5:]}")
        return self.url

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture(scope="module")
def start_sim() -> Iterator[Callable[[list[str]], Simulator]]:
    """Start simulators with the given arguments; every one is stopped when the module ends."""
    started: list[Simulator] = []

    def start(args: list[str]) -> Simulator:
        simulator = Simulator(args)
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


def sim_args(name: str) -> list[str]:
    return COMMON_SIM_ARGS + SIM_ARGS[name]


# -- the runners ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One client's run: its tally (None if it printed none), exit status and standard error."""

    peer: Peer
    sim_args: list[str]
    summary: dict[str, Any] | None = None
    returncode: int | None = None
    stderr: str = ""

    def count(self, name: str) -> int:
        """A count of the tally: ``trades``, ``rejected`` …, or a detail like ``misparsed.notices``."""
        assert self.summary is not None, self.describe()
        value = self.summary["detail"].get(name, 0) if "." in name else self.summary[name]
        assert isinstance(value, int)
        return value

    def describe(self) -> str:
        head = f"{self.peer.name} against kis-ws sim {' '.join(self.sim_args)}"
        if self.summary is None:
            tail = "\n".join(self.stderr.splitlines()[-25:])
            return f"{head}: no tally (exit status {self.returncode}); standard error ends:\n{tail}"
        return f"{head}:\n{json.dumps(self.summary, ensure_ascii=False, indent=1)}"


def run_peers(
    python: Path, selected: list[Peer], start_sim: Callable[[list[str]], Simulator], logs: Path
) -> dict[str, Outcome]:
    """Run `selected` at the same time, each against its own simulator; their outcomes by name."""
    outcomes = {peer.name: Outcome(peer=peer, sim_args=sim_args(peer.name)) for peer in selected}
    simulators = {name: start_sim(outcome.sim_args) for name, outcome in outcomes.items()}
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    running: dict[str, tuple[subprocess.Popen[bytes], IO[bytes], IO[bytes]]] = {}
    try:
        for name, outcome in outcomes.items():
            url = simulators[name].wait_ready()
            module = f"tests.realclients.{outcome.peer.runner}"
            command = [str(python), "-m", module, "--url", url, "--duration", str(DURATION)]
            out: IO[bytes] = (logs / f"{name}.out").open("w+b")
            err: IO[bytes] = (logs / f"{name}.err").open("w+b")
            running[name] = (
                subprocess.Popen(  # noqa: S603 - the peers' interpreter and our runner, no shell
                    [*command, "--env", outcome.peer.env], cwd=ROOT, env=env, stdout=out, stderr=err
                ),
                out,
                err,
            )
        deadline = time.monotonic() + DURATION + RUNNER_SLACK
        for name, (process, out, err) in running.items():
            outcome = outcomes[name]
            try:
                outcome.returncode = process.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                outcome.returncode = None
            out.seek(0)
            err.seek(0)
            lines = [
                line for line in out.read().decode(errors="replace").splitlines() if line.startswith("{")
            ]
            outcome.stderr = err.read().decode(errors="replace")
            if lines:
                outcome.summary = json.loads(lines[-1])
    finally:
        for process, out, err in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            out.close()
            err.close()
        for simulator in simulators.values():
            simulator.stop()
    report = os.environ.get("KIS_REAL_CLIENTS_REPORT")
    if report:
        tallies = {name: {"sim": o.sim_args, **(o.summary or {})} for name, o in outcomes.items()}
        with Path(report).open("a", encoding="utf-8") as file:
            file.write(json.dumps(tallies, ensure_ascii=False) + "\n")
    return outcomes


@pytest.fixture(scope="module")
def peers_python() -> Path:
    try:
        return peers.ensure_venv()
    except peers.PeersUnavailableError as exc:
        pytest.skip(f"the peers' virtualenv could not be built ({exc}); build it with `{peers.COMMAND}`")


@pytest.fixture(scope="module")
def outcomes(
    peers_python: Path,
    start_sim: Callable[[list[str]], Simulator],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Outcome]:
    logs = tmp_path_factory.mktemp("realclients")
    return run_peers(peers_python, list(PEERS.values()), start_sim, logs)


def check(outcome: Outcome, expected: dict[str, int | str]) -> None:
    """Each expected count is an int (exactly), ">0" (some), or the name of another count (equal)."""
    failures = []
    for name, want in expected.items():
        got = outcome.count(name)
        if want == ">0":
            ok = got > 0
        elif isinstance(want, str):
            ok = got == outcome.count(want)
        else:
            ok = got == want
        if not ok:
            failures.append(f"{name} is {got}, expected {want}")
    assert not failures, f"{'; '.join(failures)}\n{outcome.describe()}"


# -- the clients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["kis-trader", "kis-trader-paper"])
def test_kis_trader_parses_everything_and_rejects_no_frame(outcomes: dict[str, Outcome], name: str) -> None:
    """Today's layouts, typed records, AES notices (H0STCNI0 real / H0STCNI9 paper): all parsed.

    kis-trader drops any record whose width is not today's, so zero rejections means the simulator
    speaks today's layouts (it rejected every trade frame when the simulator sent 46 fields).
    """
    check(
        outcomes[name],
        {
            "trades": ">0",
            "books": ">0",
            "notices": ">0",
            "acceptances": ">0",
            "fills": ">0",
            "rejected": 0,
            "misparsed": 0,
            "errors": 0,
            "disconnects": 0,
        },
    )


def test_python_kis_parses_trades_and_books_of_the_older_layouts(outcomes: dict[str, Outcome]) -> None:
    """python-kis: trades and books parsed; every notice rejected by its own 23-field notice class."""
    check(
        outcomes["python-kis"],
        {
            "trades": ">0",
            "books": ">0",
            "misparsed": 0,
            "errors": 0,
            "disconnects": 0,
            "notices": 0,
            "rejected": "rejected.notices",
            "rejected.notices": ">0",
        },
    )


def test_mojito2_streams_within_its_known_bugs(outcomes: dict[str, Outcome]) -> None:
    """mojito2: everything arrives; notices misnamed (23 names over 26 fields), and multi-record
    trade frames of 47-field records cut at fixed 46-field offsets."""
    check(
        outcomes["mojito2"],
        {
            "trades": ">0",
            "books": ">0",
            "notices": ">0",
            "rejected": 0,
            "errors": 0,
            "disconnects": 0,
            "misparsed.books": 0,
            "misparsed.notices": "notices",
            "misparsed.trades": ">0",
        },
    )


def test_kis_agent_streams_within_its_known_bugs(outcomes: dict[str, Outcome]) -> None:
    """kis-agent: one list per frame (multi-record frames merged), notices still encrypted, and no
    answer to PINGPONG, so the simulator (as KIS) drops it and it reconnects."""
    check(
        outcomes["kis-agent"],
        {
            "trades": ">0",
            "books": ">0",
            "notices": ">0",
            "rejected": 0,
            "errors": 0,
            "misparsed.books": 0,
            "misparsed.notices": "notices",
            "misparsed.trades": ">0",
            "disconnects": ">0",
        },
    )


def test_cluefin_streams_within_its_known_bugs(outcomes: dict[str, Outcome]) -> None:
    """cluefin-openapi: unified trades (H0UNCNT0) cut at 46-field offsets, books of at least 62
    fields only, notices never decrypted, and no answer to PINGPONG (dropped, no reconnect)."""
    check(
        outcomes["cluefin-openapi"],
        {
            "trades": ">0",
            "books": ">0",
            "notices": 0,
            "rejected": "rejected.notices",
            "rejected.notices": ">0",
            "misparsed.trades": ">0",
            "misparsed.books": 0,
            "errors": 0,
            "disconnects": ">0",
        },
    )


def test_official_sample(
    start_sim: Callable[[list[str]], Simulator], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The official sample: it keeps its session (PONG frames), reads notices, and misnames every
    trade and book field of today's wider records (pandas makes the extra leading columns the index)
    and keeps only the last record of a multi-record frame."""
    if not os.environ.get("KIS_OFFICIAL_SAMPLE_DIR"):
        pytest.skip("set KIS_OFFICIAL_SAMPLE_DIR to a checkout of koreainvestment/open-trading-api")
    python = peers.official_python()
    if python is None:
        pytest.skip("the official sample needs Python 3.12+: set KIS_OFFICIAL_SAMPLE_PYTHON")
    try:
        venv = peers.ensure_venv("official", peers.OFFICIAL, python)
    except peers.PeersUnavailableError as exc:
        pytest.skip(f"its virtualenv could not be built ({exc}); `{peers.COMMAND} --official`")
    logs = tmp_path_factory.mktemp("official")
    outcome = run_peers(venv, [OFFICIAL], start_sim, logs)["official"]
    check(
        outcome,
        {
            "trades": ">0",
            "books": ">0",
            "notices": ">0",
            "fills": ">0",
            "errors": 0,
            "disconnects": 0,
            "misparsed.notices": 0,
            "misparsed.trades": "trades",
            "misparsed.books": "books",
            "lost": ">0",
        },
    )
