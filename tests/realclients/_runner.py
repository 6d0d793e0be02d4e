"""What every runner shares: its command line, the tally it prints as one JSON line, log counting.

Standard library only: it runs in the peers' virtualenv, next to the client under test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import threading
import traceback
from dataclasses import dataclass, field, fields
from importlib import metadata
from typing import TYPE_CHECKING, TextIO
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable

#: What a record of each TR is, for the tally.
RECORD_KINDS = {
    "H0STCNT0": "trades",
    "H0UNCNT0": "trades",
    "H0STASP0": "books",
    "H0STCNI0": "notices",
    "H0STCNI9": "notices",
}
TR_ID = re.compile("|".join(RECORD_KINDS))

#: How many distinct problem messages a tally keeps (the counts are complete; these are for people).
MAX_PROBLEMS = 12


@dataclass
class Options:
    """A runner's command line."""

    url: str
    duration: float
    symbol: str
    hts_id: str
    env: str

    @property
    def rest_url(self) -> str:
        """The simulator answers ``POST /oauth2/Approval`` (plain HTTP) on its WebSocket port."""
        parts = urlsplit(self.url)
        return f"http://{parts.hostname}:{parts.port}"


def parse_options(client: str) -> Options:
    parser = argparse.ArgumentParser(description=f"run {client} against a KIS simulator")
    parser.add_argument("--url", required=True, help="the simulator, ws://127.0.0.1:PORT")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of streaming")
    parser.add_argument("--symbol", default="005930")
    parser.add_argument("--hts-id", default="simuser01", help="the notices' tr_key")
    parser.add_argument("--env", choices=["real", "paper"], default="real")
    args = parser.parse_args()
    return Options(url=args.url, duration=args.duration, symbol=args.symbol, hts_id=args.hts_id, env=args.env)


@dataclass
class Tally:
    """What a client did with the simulator's feed; `emit` prints it as the runner's one JSON line."""

    client: str
    version: str
    trades: int = 0
    books: int = 0
    notices: int = 0
    acceptances: int = 0
    fills: int = 0
    rejected: int = 0
    errors: int = 0
    misparsed: int = 0
    #: Records the server sent that never reached the application (where the runner can see them).
    lost: int = 0
    disconnects: int = 0
    #: Problems once the runner began stopping the client (its shutdown, not its streaming).
    at_stop: int = 0
    #: The problem counts by what they concern: ``{"misparsed.trades": 3, "rejected.notices": 8}``.
    detail: dict[str, int] = field(default_factory=dict)
    problems: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopping: bool = False

    @classmethod
    def of(cls, client: str, distribution: str | None) -> Tally:
        return cls(client=client, version=metadata.version(distribution) if distribution else "")

    def count(self, kind: str, n: int = 1) -> None:
        """Add `n` to the counter `kind` (``trades``, ``books``, …) from any thread."""
        with self._lock:
            setattr(self, kind, getattr(self, kind) + n)

    def problem(self, kind: str, text: str, of: str | None = None) -> None:
        """Count one problem of `kind` (``rejected``, ``errors``, ``misparsed``, ``disconnects``).

        `of` is the kind of record it concerns (``trades``, ``books``, ``notices``); by default the
        first TR id named in `text` says.
        """
        if of is None:
            found = TR_ID.search(text)
            of = RECORD_KINDS.get(found.group(0), "other") if found else "other"
        with self._lock:
            if self._stopping:
                kind = "at_stop"
            setattr(self, kind, getattr(self, kind) + 1)
            if kind in ("rejected", "misparsed"):
                self.detail[f"{kind}.{of}"] = self.detail.get(f"{kind}.{of}", 0) + 1
            key = f"{kind}: {text[:300]}"
            if key in self.problems or len(self.problems) < MAX_PROBLEMS:
                self.problems[key] = self.problems.get(key, 0) + 1

    def notice(self, cntg_yn: str) -> None:
        """Count an execution notice: CNTG_YN "1" an order's acceptance, "2" its fill."""
        self.count("notices")
        if cntg_yn == "1":
            self.count("acceptances")
        elif cntg_yn == "2":
            self.count("fills")

    def stopping(self) -> None:
        """From now on, problems count as `at_stop`: the runner is shutting the client down."""
        with self._lock:
            self._stopping = True

    def note(self, text: str) -> None:
        self.notes.append(text)

    def emit(self, out: TextIO) -> None:
        with self._lock:  # the client's threads may still be counting
            summary = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
            line = json.dumps(summary, ensure_ascii=False)
        out.write(line + "\n")
        out.flush()


def run(client: str, distribution: str | None, body: Callable[[Options, Tally], None]) -> None:
    """A runner's main: `body` drives the client; the tally is printed whatever happens.

    The JSON line goes to the real standard output; whatever else is written to file descriptor 1
    (the client's prints and logs) goes to standard error.
    An exception out of `body` is a failure of the client's run, not of the runner: it is counted
    as an error (its traceback on standard error) and the tally still printed.
    """
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # also for handlers that hold sys.stdout already (python-kis logs to it)
    options = parse_options(client)
    tally = Tally.of(client, distribution)
    try:
        body(options, tally)
    except Exception as exc:  # noqa: BLE001 - whatever the client raised is the finding
        traceback.print_exc()
        tally.problem("errors", f"the run failed: {type(exc).__name__}: {exc}")
    tally.emit(out)


class LogTally(logging.Handler):
    """Counts a client's log records: `classify(record)` names the counter (or None to ignore)."""

    def __init__(self, tally: Tally, classify: Callable[[logging.LogRecord], str | None]) -> None:
        super().__init__(logging.DEBUG)
        self.tally = tally
        self.classify = classify

    def emit(self, record: logging.LogRecord) -> None:
        kind = self.classify(record)
        if kind is None:
            return
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        self.tally.problem(kind, text)


def watch_logger(name: str, tally: Tally, classify: Callable[[logging.LogRecord], str | None]) -> None:
    """Count the records of logger `name` (and its children) with `classify`."""
    logger = logging.getLogger(name)
    logger.addHandler(LogTally(tally, classify))
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
