"""The chaos soak: the whole gateway setup under random faults for N minutes, and what it lost.

    python bench/soak.py --minutes 30 [--every 20] [--sample 60] [--json out.json]

Real processes on loopback: a simulator process holding several simulated app keys (one
simulator each, one session per key as KIS allows: the in-use fault), a nats-server with the
gateway's roles, two ``kis-ws gateway`` processes on the same keys (an active one and a standby,
``--metrics`` on), ten consumer processes (`kis_nats`; the first also reads the execution notices
through a durable consumer) and ``kis-ws record --gateway``. Faults are drawn at random, about one
every ``--every`` seconds (each kind once first, in a random order): a KIS session dropped, a
garbage frame, nats-server SIGKILLed and started again 1-5 s later, the active gateway SIGKILLed
(the standby takes over after the lease's TTL; the killed one comes back as standby), a consumer
SIGKILLed and started again.

At the end it prints:

* per consumer (all its incarnations): market records received, published (by ``seq``: the span
  of the gateway's numbers while it listened, seen by a plain NATS subscription of its own in
  the same process), the gaps the feed told (`EventsDropped`) and the gaps in ``seq``;
* notices: every one the simulator sent to a session, exactly once to the durable consumer, but
  for the documented window (those sent in the last 0.5 s before the active gateway was killed:
  read by a dead process, never stored), each exception listed;
* RSS and open file descriptors of every long-lived process, sampled every ``--sample`` seconds,
  as growth per hour after the first sample (warm-up);
* the KIS sessions' reconnects by reason, and the gateways' step-downs (from their metrics).

``--child sim|consumer`` are the script's own child processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
HTS_ID = "soakhts"
SYMBOLS = ["005930", "000660", "035420", "051910", "005380", "035720", "068270", "105560", "055550"]
FAULTS = ("kis_drop", "kis_garbage", "nats_kill", "gateway_kill", "consumer_kill")
WINDOW = 0.5  # seconds before an active gateway's SIGKILL whose notices may be lost (docs/gateway.md)


# -- the children --------------------------------------------------------------------------------------
async def sim_child(args: argparse.Namespace) -> None:
    """Simulators, one per app key; commands on stdin (``drop I``, ``garbage I``, ``quiet``)."""
    import anyio
    import kis_sim
    from kis_sim import Faults

    log = open(args.notices, "a", encoding="utf-8")  # noqa: SIM115, ASYNC230 - for the process's life
    quiet = False
    async with contextlib.AsyncExitStack() as stack:
        sims = []
        for number in range(args.sims):
            sim = await stack.enter_async_context(
                kis_sim.simulate(
                    seed=args.seed + number,
                    tick=args.tick,
                    notice_rate=args.notice_rate,
                    faults=Faults(in_use=True),
                )
            )
            sims.append(sim)
            original = sim.market.order_notices

            def numbered(
                *call: Any, _number: int = number, _original: Any = original
            ) -> list[dict[str, str]]:
                if quiet:
                    return []
                notices: list[dict[str, str]] = _original(*call)
                now = time.time()
                for notice in notices:  # one order numbering over all the simulated app keys
                    notice["ODER_NO"] = f"{_number * 1_000_000 + int(notice['ODER_NO']):010d}"
                    log.write(f"{notice['ODER_NO']} {notice['CNTG_YN']} {now:.3f}\n")
                log.flush()
                return notices

            sim.market.order_notices = numbered  # type: ignore[method-assign,assignment]
        print(json.dumps({"urls": [sim.url for sim in sims]}), flush=True)
        while line := await anyio.to_thread.run_sync(sys.stdin.readline):
            command, _, which = line.strip().partition(" ")
            if command == "quiet":
                quiet = True
                continue
            for session in list(sims[int(which)].server.sessions):
                with contextlib.suppress(Exception):
                    if command == "drop":
                        await session.drop()
                    elif command == "garbage":
                        await session.send_text("garbage: not a KIS message")


async def consumer_child(args: argparse.Namespace) -> None:
    """A `kis_nats` consumer of `args.keys`, and a plain NATS subscription counting ``seq``s."""
    import kis_nats
    import nats
    from kis_nats import read_credential
    from kis_nats.subjects import H_META, data_subject, meta_sequence

    from kis_proto import EventsDropped, Reconnecting, Record

    keys = args.keys.split(",")
    status: dict[str, Any] = {"pid": os.getpid(), "records": 0, "told": 0, "reconnects": 0, "notices": 0}
    started: set[str] = set()  # keys the feed has delivered a record of: the plain side counts from then
    streams: dict[str, list[int]] = {}  # "gateway subject" -> [first, last, count, gaps]
    finished: list[list[int]] = []  # streams of a gateway run that ended

    async def on_plain(msg: Any) -> None:
        key = msg.subject.rsplit(".", 1)[1]
        if key not in started or not msg.headers:
            return
        gateway, seq = meta_sequence(msg.headers[H_META])
        name = f"{gateway} {msg.subject}"
        stream = streams.get(name)
        if stream is not None and seq <= stream[1]:  # that gateway started again: numbers from 1
            finished.append(stream)
            stream = None
        if stream is None:
            streams[name] = [seq, seq, 1, 0]
        else:
            stream[3] += seq - stream[1] - 1
            stream[1] = seq
            stream[2] += 1

    def write() -> None:
        every = [*finished, *streams.values()]
        status["published"] = sum(s[1] - s[0] + 1 for s in every)
        status["plain"] = sum(s[2] for s in every)
        status["seq_gaps"] = sum(s[3] for s in every)
        tmp = Path(args.status + ".tmp")
        tmp.write_text(json.dumps(status), encoding="utf-8")
        tmp.replace(args.status)

    creds = read_credential(args.creds)

    async def quiet(exc: Exception) -> None:
        """NATS restarts are the point here: no traceback per reconnect attempt."""

    plain = await nats.connect(
        args.nats,
        **creds.connect_options(),
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.1,
        error_cb=quiet,
    )
    for key in keys:
        await plain.subscribe(data_subject("sim", "H0STCNT0", key), cb=on_plain)
    notices = open(args.notices, "a", encoding="utf-8") if args.notices else None  # noqa: SIM115, ASYNC230

    async def writer() -> None:
        while True:
            write()
            await asyncio.sleep(0.5)

    task = asyncio.create_task(writer())
    try:
        async with kis_nats.connect(
            args.nats,
            env="sim",
            client=args.name,
            lease=3.0,
            retry_delay=0.1,
            notices_durable="soak" if notices else None,
            nats_creds=args.creds,
        ) as feed:
            while True:  # the gateway may be taking over right now: ask until one answers
                try:
                    await feed.subscribe("H0STCNT0", keys)
                    if notices is not None:
                        await feed.subscribe_notices(HTS_ID, tr_id="H0STCNI0")
                        status["notices_from"] = time.time()
                    break
                except kis_nats.GatewayUnavailableError:
                    await asyncio.sleep(0.5)
            async for event in feed:
                if isinstance(event, Record):
                    if event.tr_id == "H0STCNI0" and notices is not None:
                        notices.write(f"{event.raw[2]} {event.raw[13]}\n")
                        notices.flush()
                        status["notices"] += 1
                    else:
                        status["records"] += 1
                        started.add(event.tr_key)
                elif isinstance(event, EventsDropped):
                    status["told"] += event.count
                elif isinstance(event, Reconnecting):
                    status["reconnects"] += 1
                status["rejected"] = feed.rejected
    finally:
        task.cancel()
        write()
        await plain.close()


# -- the conductor ---------------------------------------------------------------------------------------
@dataclass
class Proc:
    """A long-lived process of the soak: its role, how to start it, its incarnations."""

    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[str] | None = None
    incarnations: int = 0
    samples: dict[int, list[tuple[float, int, int]]] = field(default_factory=dict)  # pid -> (t, rss kB, fds)
    scraped: dict[int, str] = field(default_factory=dict)  # pid -> its last /metrics

    def start(self, **popen: Any) -> subprocess.Popen[str]:
        self.incarnations += 1
        out = self.log.open("a", encoding="utf-8")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and scripts
            self.argv, stdout=popen.pop("stdout", out), stderr=out, text=True, **popen
        )
        out.close()
        return self.process

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def sample(self, now: float) -> None:
        if not self.alive:
            return
        assert self.process is not None
        pid = self.process.pid
        try:
            rss = next(
                int(line.split()[1])
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")
            )
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration):
            return
        self.samples.setdefault(pid, []).append((now, rss, fds))


def _python(*argv: str) -> list[str]:
    return [sys.executable, *argv]


def _kis_ws(*argv: str) -> list[str]:
    return _python("-m", "kis_ws", *argv)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def _values(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[tuple[str, str], ...], float] = {}
    with contextlib.suppress(ValueError):
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name:
                    out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _growth(samples: list[tuple[float, int, int]], column: int) -> float | None:
    """Least-squares slope of a column per hour, after the first sample (warm-up); None if too few."""
    points = samples[1:]
    if len(points) < 2:
        return None
    xs = [t for t, *_ in points]
    ys = [float(p[column]) for p in points]
    return float(statistics.linear_regression(xs, ys).slope) * 3600


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.rng = random.Random(args.seed)  # a reproducible schedule of faults
        self.faults: list[tuple[float, str, str]] = []
        self.kills: list[float] = []  # when an active gateway was SIGKILLed
        self.tasks: set[asyncio.Task[None]] = set()
        self._later: list[tuple[float, Any]] = []
        self.procs: dict[str, Proc] = {}
        self.consumer_runs: dict[str, list[Path]] = {}
        self.gw_ports: dict[str, int] = {}
        self.nats: Any = None
        self.nats_port = 0
        self.nats_binary = ""
        self.sim_urls: list[str] = []
        self.kinds = tuple(args.faults.split(",")) if args.faults else FAULTS

    # -- starting ------------------------------------------------------------------------------------
    def start_nats(self) -> None:
        from kis_gateway import ensure_credentials, find_nats_server, server_config, start_server

        self.nats_binary = self.nats_binary or find_nats_server()
        creds = ensure_credentials(self.work / "state", [HTS_ID])
        config = server_config(creds, port=self.nats_port, jetstream=False)
        self.nats = start_server(
            "127.0.0.1", self.nats_port, store_dir=self.work / "nats", binary=self.nats_binary, config=config
        )
        self.nats_port = self.nats.port
        proc = self.procs.setdefault("nats-server", Proc("nats-server", [], self.work / "nats.log"))
        proc.process = self.nats.process
        proc.incarnations += 1

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    def creds(self, role: str) -> str:
        from kis_nats import credential_path

        return str(credential_path(self.work / "state", role, HTS_ID if role == "notices" else None))  # type: ignore[arg-type]

    def start_sim(self) -> None:
        argv = _python(
            str(HERE), "--child", "sim", "--sims", str(self.args.sims), "--tick", str(self.args.tick)
        )
        argv += ["--notice-rate", str(self.args.notice_rate), "--seed", str(self.args.seed)]
        argv += ["--notices", str(self.work / "sent.txt")]
        proc = self.procs["sim"] = Proc("sim", argv, self.work / "sim.log")
        process = proc.start(stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert process.stdout is not None
        self.sim_urls = json.loads(process.stdout.readline())["urls"]

    def sim_command(self, line: str) -> None:
        process = self.procs["sim"].process
        assert process is not None
        assert process.stdin is not None
        process.stdin.write(line + "\n")
        process.stdin.flush()

    def gateway(self, name: str) -> Proc:
        port = self.gw_ports.setdefault(name, _free_port())
        argv = _kis_ws("gateway", "--nats", self.nats_url, "--nats-creds", self.creds("gateway"))
        for url in self.sim_urls:
            argv += ["--url", url]
        argv += ["--state-dir", str(self.work / "state"), "--hts-id", HTS_ID, "--id", name, "--lease", "3"]
        argv += ["--metrics", f"127.0.0.1:{port}"]
        return self.procs.setdefault(name, Proc(name, argv, self.work / f"{name}.log"))

    def consumer(self, number: int) -> Proc:
        name = f"c{number}"
        keys = [SYMBOLS[(number + k) % len(SYMBOLS)] for k in range(3)]
        proc = self.procs.setdefault(name, Proc(name, [], self.work / f"{name}.log"))
        run = self.work / f"{name}-{proc.incarnations + 1}.json"
        self.consumer_runs.setdefault(name, []).append(run)
        # A client id per run, as a program given none gets: the killed run's lease (3 s) still
        # holds its id, and the gateway refuses another process that claims it.
        client = f"{name}.{proc.incarnations + 1}"
        argv = _python(str(HERE), "--child", "consumer", "--name", client, "--nats", self.nats_url)
        argv += ["--keys", ",".join(keys), "--status", str(run)]
        if number == 0:
            argv += ["--creds", self.creds("notices"), "--notices", str(self.work / "received.txt")]
        else:
            argv += ["--creds", self.creds("consumer")]
        proc.argv = argv
        return proc

    def recorder(self) -> Proc:
        argv = _kis_ws("record", str(self.work / "soak.kisrec"), *SYMBOLS[:3], "--gateway", self.nats_url)
        argv += ["--nats-creds", self.creds("consumer")]
        return self.procs.setdefault("recorder", Proc("recorder", argv, self.work / "recorder.log"))

    def active(self) -> str | None:
        for name, port in self.gw_ports.items():
            if self.procs[name].alive:
                status, text = _scrape(port)
                if status == 200 and _values(text, "kis_gateway_role").get((("role", "active"),)) == 1:
                    return name
        return None

    async def until(self, check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(check):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"soak: {what} did not happen within {timeout:.0f} s (logs in {self.work})"
                )
            await asyncio.sleep(0.2)

    def later(self, delay: float, action: Any) -> None:
        """Do `action` (blocking) `delay` seconds from now; `schedule` starts it from the loop."""
        self._later.append((delay, action))

    def schedule(self) -> None:
        async def run(delay: float, action: Any) -> None:
            await asyncio.sleep(delay)
            await asyncio.to_thread(action)

        while self._later:
            task = asyncio.create_task(run(*self._later.pop(0)))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    # -- faults ----------------------------------------------------------------------------------------
    def fault(self, kind: str) -> str:
        """Do one fault; what it did, or "" when it could not be done now."""
        if kind == "kis_drop":
            which = self.rng.randrange(len(self.sim_urls))
            self.sim_command(f"drop {which}")
            return f"KIS sessions of app key {which + 1} dropped"
        if kind == "kis_garbage":
            which = self.rng.randrange(len(self.sim_urls))
            self.sim_command(f"garbage {which}")
            return f"a garbage frame to app key {which + 1}"
        if kind == "nats_kill":
            if not self.procs["nats-server"].alive:
                return ""
            down = self.rng.uniform(1.0, 5.0)
            self.procs["nats-server"].kill()
            self.nats.stop()
            self.later(down, self.start_nats)
            return f"nats-server SIGKILLed, back {down:.1f} s later"
        if kind == "gateway_kill":
            active = self.active()
            others = [n for n in self.gw_ports if n != active and self.procs[n].alive]
            if active is None or not others:
                return ""  # no standby to take over: not this one now
            self.kills.append(time.time())
            self.procs[active].kill()
            self.later(3.0, self.procs[active].start)
            return f"active gateway {active} SIGKILLed (back as standby 3 s later)"
        number = self.rng.randrange(1, 10)  # consumer 0 reads the notices: it stays
        proc = self.procs[f"c{number}"]
        if not proc.alive:
            return ""
        proc.kill()
        self.later(1.0, lambda: self.consumer(number).start())
        return f"consumer c{number} SIGKILLed (back 1 s later)"

    def sample_all(self) -> None:
        now = time.time()
        for proc in self.procs.values():
            proc.sample(now)
        self.scrape_gateways()

    async def sampler(self) -> None:
        last_sample = 0.0
        while True:
            now = time.monotonic()
            if now - last_sample >= self.args.sample:
                last_sample = now
                await asyncio.to_thread(self.sample_all)
            await asyncio.to_thread(self.scrape_gateways)
            await asyncio.sleep(2.0)

    def scrape_gateways(self) -> None:
        for name, port in self.gw_ports.items():
            proc = self.procs[name]
            if proc.alive:
                assert proc.process is not None
                status, text = _scrape(port)
                if status == 200:
                    proc.scraped[proc.process.pid] = text

    # -- the run ------------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        started = time.time()
        self.start_nats()
        self.start_sim()
        self.gateway("gw-a").start()
        await self.until(lambda: self.active() == "gw-a", 30, "gw-a becoming active")
        self.gateway("gw-b").start()
        for number in range(10):
            self.consumer(number).start()
        self.recorder().start()

        def all_streaming() -> bool:
            runs = [self._status(runs[-1]) for runs in self.consumer_runs.values()]
            return all(r.get("records", 0) > 0 for r in runs) and "notices_from" in runs[0]

        await self.until(all_streaming, 60, "every consumer streaming")
        sampler = asyncio.create_task(self.sampler())
        kinds = list(self.kinds)
        self.rng.shuffle(kinds)
        end = time.monotonic() + self.args.minutes * 60
        while True:
            wait = self.rng.uniform(0.5, 1.5) * self.args.every
            if time.monotonic() + wait > end:
                break
            await asyncio.sleep(wait)
            kind = kinds.pop(0) if kinds else self.rng.choice(self.kinds)
            done = await asyncio.to_thread(self.fault, kind)
            self.schedule()
            if not done:  # not possible now (no standby yet): the next time
                kinds.insert(0, kind)
            elif done:
                self.faults.append((time.time() - started, kind, done))
                print(f"[{time.time() - started:7.1f} s] {done}", file=sys.stderr, flush=True)
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        # Settle: restarts done, NATS and an active gateway up, every notice sent so far delivered.
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.until(lambda: self.active() is not None, 40, "an active gateway after the faults")
        self.sim_command("quiet")
        quiet_at = time.time()
        await asyncio.sleep(1.0)
        with contextlib.suppress(RuntimeError):
            await self.until(lambda: not self._notices()[1], self.args.settle, "every notice delivered")
        sampler.cancel()
        await asyncio.to_thread(self.sample_all)
        alive = {name: proc.alive for name, proc in self.procs.items()}
        report = self.report(started, quiet_at, alive)
        await asyncio.to_thread(self.stop)
        return report

    def stop(self) -> None:
        for name, proc in self.procs.items():
            if proc.alive and name not in ("sim", "nats-server"):
                assert proc.process is not None
                proc.process.send_signal(signal.SIGINT if name.startswith("c") else signal.SIGTERM)
        for name, proc in self.procs.items():
            if proc.process is not None and name not in ("sim", "nats-server"):
                try:
                    proc.process.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        sim = self.procs["sim"].process
        if sim is not None and sim.stdin is not None:
            sim.stdin.close()
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
        if self.nats is not None:
            self.nats.stop()

    @staticmethod
    def _status(path: Path) -> dict[str, Any]:
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {}

    def _notices(
        self,
    ) -> tuple[list[tuple[str, str, float]], list[tuple[str, str, float]], dict[tuple[str, str], int]]:
        """(counted, missing, received counts): notices sent after the durable consumer was made."""
        since = self._status(self.consumer_runs["c0"][0]).get("notices_from", 0.0) + 1.0
        sent = []
        for line in (self.work / "sent.txt").read_text(encoding="utf-8").splitlines():
            number, kind, at = line.split()
            if float(at) >= since:
                sent.append((number, kind, float(at)))
        got: dict[tuple[str, str], int] = {}
        received = self.work / "received.txt"
        if received.exists():
            for line in received.read_text(encoding="utf-8").splitlines():
                number, kind = line.split()
                got[number, kind] = got.get((number, kind), 0) + 1
        return sent, [s for s in sent if (s[0], s[1]) not in got], got

    def report(self, started: float, quiet_at: float, alive: dict[str, bool]) -> dict[str, Any]:
        consumers = {}
        for name, runs in sorted(self.consumer_runs.items()):
            total: dict[str, int] = {}
            for run in runs:
                for key, value in self._status(run).items():
                    if isinstance(value, int) and key not in ("pid",):
                        total[key] = total.get(key, 0) + value
            total["runs"] = len(runs)
            consumers[name] = total
        sent, missing, got = self._notices()
        lost = []
        for number, kind, at in missing:
            window = any(kill - WINDOW <= at <= kill + 0.1 for kill in self.kills)
            lost.append({"order": number, "kind": kind, "at": round(at - started, 2), "in_window": window})
        twice = [{"order": n, "kind": k, "times": c} for (n, k), c in sorted(got.items()) if c > 1]
        processes = {}
        for name, proc in self.procs.items():
            if not proc.samples:
                continue
            _, samples = max(proc.samples.items(), key=lambda item: item[1][-1][0] - item[1][0][0])
            processes[name] = {
                "incarnations": proc.incarnations,
                "minutes": round((samples[-1][0] - samples[0][0]) / 60, 1),
                "rss_mb": round(samples[-1][1] / 1024, 1),
                "rss_mb_per_hour": _round(_growth(samples, 1), 1024),
                "fds": samples[-1][2],
                "fds_per_hour": _round(_growth(samples, 2), 1),
                "samples": len(samples),
            }
        reconnects: dict[str, float] = {}
        step_downs: dict[str, float] = {}
        published = dropped = 0.0
        for name in self.gw_ports:
            for text in self.procs[name].scraped.values():
                for labels, count in _values(text, "kis_reconnects_total").items():
                    reason = dict(labels)["reason"]
                    reconnects[reason] = reconnects.get(reason, 0) + count
                for labels, count in _values(text, "kis_gateway_step_downs_total").items():
                    reason = dict(labels)["reason"]
                    step_downs[reason] = step_downs.get(reason, 0) + count
                published += sum(_values(text, "kis_gateway_records_published_total").values())
                dropped += sum(_values(text, "kis_gateway_records_dropped_total").values())
        tracebacks = [
            p.name for p in self.procs.values() if p.log.exists() and "Traceback" in p.log.read_text()
        ]
        return {
            "minutes": self.args.minutes,
            "faults": [{"at": round(t, 1), "kind": k, "what": w} for t, k, w in self.faults],
            "consumers": consumers,
            "notices": {
                "sent": len(sent),
                "received": sum(got.get((number, kind), 0) for number, kind, _ in sent),
                "lost_in_window": [x for x in lost if x["in_window"]],
                "lost_outside_window": [x for x in lost if not x["in_window"]],
                "twice": twice,
            },
            "processes": processes,
            "kis_reconnects": reconnects,
            "step_downs": step_downs,
            "gateway_published": published,
            "gateway_dropped": dropped,
            "alive": alive,
            "tracebacks": tracebacks,
            "work": str(self.work),
        }


def _round(value: float | None, unit: float) -> float | None:
    return None if value is None else round(value / unit, 2)


def table(report: dict[str, Any]) -> str:
    lines = [f"chaos soak: {report['minutes']:g} min, {len(report['faults'])} faults"]
    counts: dict[str, int] = {}
    for fault in report["faults"]:
        counts[fault["kind"]] = counts.get(fault["kind"], 0) + 1
    lines.append("  faults: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    lines.append("")
    lines.append(
        f"{'consumer':10}{'runs':>5}{'received':>10}{'published':>11}{'told':>7}{'seq gaps':>10}{'NATS lost':>11}"
    )
    for name, c in report["consumers"].items():
        lines.append(
            f"{name:10}{c.get('runs', 0):>5}{c.get('records', 0):>10,}{c.get('published', 0):>11,}"
            f"{c.get('told', 0):>7}{c.get('seq_gaps', 0):>10}{c.get('reconnects', 0):>11}"
        )
    n = report["notices"]
    lines.append("")
    lines.append(
        f"notices: {n['sent']} sent, {n['received']} received; lost in the documented window "
        f"{len(n['lost_in_window'])}, lost outside it {len(n['lost_outside_window'])}, twice {len(n['twice'])}"
    )
    lines.extend(
        f"  exception: order {x['order']} ({'fill' if x['kind'] == '2' else 'acceptance'}) sent at {x['at']} s"
        f"{' (window)' if x['in_window'] else ''}"
        for x in [*n["lost_in_window"], *n["lost_outside_window"]]
    )
    lines.extend(f"  twice: order {x['order']} kind {x['kind']} ({x['times']}x)" for x in n["twice"])
    lines.append("")
    lines.append(
        f"{'process':12}{'runs':>5}{'minutes':>8}{'RSS MB':>8}{'MB/hour':>9}{'fds':>5}{'fds/hour':>10}"
    )
    for name, p in report["processes"].items():
        rate = "-" if p["rss_mb_per_hour"] is None else f"{p['rss_mb_per_hour']:+.2f}"
        fds = "-" if p["fds_per_hour"] is None else f"{p['fds_per_hour']:+.1f}"
        lines.append(
            f"{name:12}{p['incarnations']:>5}{p['minutes']:>8}{p['rss_mb']:>8}{rate:>9}{p['fds']:>5}{fds:>10}"
        )
    lines.append("")
    lines.append(
        "KIS reconnects by reason: "
        + (", ".join(f"{k} {v:g}" for k, v in sorted(report["kis_reconnects"].items())) or "none")
    )
    lines.append(
        "gateway step-downs: "
        + (", ".join(f"{k} {v:g}" for k, v in sorted(report["step_downs"].items())) or "none")
    )
    lines.append(
        f"records published by the gateways {report['gateway_published']:,.0f}, not published (NATS away) "
        f"{report['gateway_dropped']:,.0f}"
    )
    dead = [name for name, up in report["alive"].items() if not up]
    lines.append(f"alive at the end: {'all' if not dead else 'not ' + ', '.join(dead)}")
    if report["tracebacks"]:
        lines.append(f"tracebacks in the logs of: {', '.join(report['tracebacks'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long faults are drawn (default 30)")
    parser.add_argument("--every", type=float, default=20.0, help="mean seconds between faults (default 20)")
    parser.add_argument(
        "--sample", type=float, default=60.0, help="seconds between RSS/fd samples (default 60)"
    )
    parser.add_argument("--settle", type=float, default=15.0, help="seconds to wait for the last notices")
    parser.add_argument("--sims", type=int, default=3, help="simulated app keys (default 3)")
    parser.add_argument("--tick", type=float, default=0.1, help="the simulator's tick (default 0.1 s)")
    parser.add_argument("--notice-rate", type=float, default=0.1, help="orders per tick (default 0.1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--faults",
        default="",
        metavar="KINDS",
        help=f"only these faults, comma-separated: {', '.join(FAULTS)}",
    )
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON")
    parser.add_argument("--keep", default=None, metavar="DIR", help="work in DIR and keep it (logs)")
    parser.add_argument("--child", choices=["sim", "consumer"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--name", default="", help=argparse.SUPPRESS)
    parser.add_argument("--nats", default="", help=argparse.SUPPRESS)
    parser.add_argument("--creds", default="", help=argparse.SUPPRESS)
    parser.add_argument("--keys", default="", help=argparse.SUPPRESS)
    parser.add_argument("--status", default="", help=argparse.SUPPRESS)
    parser.add_argument("--notices", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "sim":
        import anyio

        anyio.run(sim_child, args)
        return
    if args.child == "consumer":
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(consumer_child(args))
        return
    with contextlib.ExitStack() as stack:
        if args.keep:
            work = Path(args.keep)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kis-soak-")))
        soak = Soak(args, work)
        try:
            report = asyncio.run(soak.run())
        finally:
            soak.stop()
        print(table(report))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
