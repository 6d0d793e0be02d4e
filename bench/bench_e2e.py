"""End to end over loopback: records/s into a callback, and latency from the server's send.

    python bench/bench_e2e.py [--quick]

A server in a separate process speaks WebSocket (wsproto) and sends H0STCNT0 frames: at full
speed (4-record frames), and at a fixed 20,000 records/s (1-record frames, each carrying its send
time from the system-wide monotonic clock). Clients, each run against a fresh connection in
turn: kis_anyio on asyncio, kis_anyio on trio, kis_asyncio, and a baseline built on the
`websockets` library (receive, split, hand each record to the callback). Compare the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import kis_anyio
import kis_asyncio
import websockets
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Request

from kis_proto.feed import ReconnectPolicy

if TYPE_CHECKING:
    from collections.abc import Callable

    from kis_proto import records

FRAMES = Path(__file__).resolve().parent.parent / "tests" / "data" / "frames.txt"
RATE = 20_000


def trade_fields() -> list[str]:
    for line in FRAMES.read_text(encoding="utf-8").splitlines():
        if line.startswith("0|H0STCNT0|"):
            return line.split("|", 3)[3].split("^")
    raise SystemExit("no H0STCNT0 sample")


# -- the server process --------------------------------------------------------------------------------


async def _server_session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, plan: dict[str, Any]
) -> None:
    ws = WSConnection(ConnectionType.SERVER)
    while True:
        ws.receive_data(await reader.read(65536))
        if any(isinstance(e, Request) for e in ws.events()):
            break
    writer.write(ws.send(AcceptConnection()))
    fields = trade_fields()
    if plan["mode"] == "full":
        payload = "^".join(["^".join(fields)] * 4)
        frame = ws.send(Message(data=f"0|H0STCNT0|004|{payload}"))
        batch = frame * 64
        for _ in range(plan["records"] // (4 * 64)):
            writer.write(batch)
            await writer.drain()
    else:
        per_ms = RATE // 1000
        start = time.monotonic()
        for tick in range(plan["records"] // per_ms):
            while time.monotonic() < start + tick / 1000:
                await asyncio.sleep(0.0002)
            for _ in range(per_ms):
                fields[45] = str(time.monotonic_ns())
                writer.write(ws.send(Message(data="0|H0STCNT0|001|" + "^".join(fields))))
            await writer.drain()
    await asyncio.sleep(2)  # let the client drain before the socket goes away
    writer.close()


def _server_main(port_queue: Any, plan: dict[str, Any]) -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _server_session(r, w, plan), "127.0.0.1", 0)
        port_queue.put(server.sockets[0].getsockname()[1])
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class ServerProcess:
    def __init__(self, plan: dict[str, Any]) -> None:
        queue: Any = multiprocessing.Queue()
        self.process = multiprocessing.Process(target=_server_main, args=(queue, plan), daemon=True)
        self.process.start()
        self.port: int = queue.get(timeout=20)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)


# -- the clients ---------------------------------------------------------------------------------------


class Sink:
    """The application's callback: counts records, measures latency from the embedded send time."""

    def __init__(self, expected: int, latency: bool) -> None:
        self.expected, self.latency = expected, latency
        self.count = 0
        self.delays: list[float] = []
        self.started = 0.0
        self.finished = 0.0

    def __call__(self, sent_ns: int) -> bool:
        if not self.count:
            self.started = time.perf_counter()
        self.count += 1
        if self.latency:
            self.delays.append((time.monotonic_ns() - sent_ns) / 1e6)
        if self.count >= self.expected:
            self.finished = time.perf_counter()
            return True
        return False


def policy() -> ReconnectPolicy:
    return ReconnectPolicy(rand=random.random, max_retries=0)


async def run_kis(transport: Any, port: int, sink: Sink) -> None:
    """The original design's face: WSClient with a plain callback per record."""
    ws = transport.WSClient(None, url=f"ws://127.0.0.1:{port}", approval_key="bench", policy=policy())
    done = anyio.Event()

    def on_trade(record: records.H0STCNT0) -> None:
        if sink(record.vi_stnd_prc or 0):
            done.set()

    await ws.subscribe("H0STCNT0", "005930", on_trade)

    async def stop_when_done() -> None:
        await done.wait()
        await ws.close()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_when_done)
        await ws.run()


async def run_websockets(port: int, sink: Sink) -> None:
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/tryitout", max_size=2**20, ping_interval=None
    ) as ws:
        async for message in ws:
            fields = str(message).split("|", 3)[3].split("^")
            for start in range(0, len(fields), 46):
                if sink(int(fields[start + 45])):
                    return


CLIENTS: list[tuple[str, Callable[[int, Sink], None]]] = [
    ("websockets client (baseline)", lambda port, sink: asyncio.run(run_websockets(port, sink))),
    ("kis_asyncio", lambda port, sink: anyio.run(run_kis, kis_asyncio, port, sink, backend="asyncio")),
    ("kis_anyio on asyncio", lambda port, sink: anyio.run(run_kis, kis_anyio, port, sink, backend="asyncio")),
    ("kis_anyio on trio", lambda port, sink: anyio.run(run_kis, kis_anyio, port, sink, backend="trio")),
]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    full = 256 * (160 if args.quick else 1600)  # whole batches of 64 four-record frames
    paced = 10_000 if args.quick else 60_000
    print(
        f"python {sys.version.split()[0]}; server in another process; {json.dumps({'full': full, 'paced': paced})}"
    )
    print(f"\nfull speed, 4-record frames ({full} records)          records/s   x baseline")
    server = ServerProcess({"mode": "full", "records": full})
    try:
        rates: dict[str, float] = {}
        for name, run in CLIENTS:
            sink = Sink(full, latency=False)
            run(server.port, sink)
            rates[name] = sink.count / (sink.finished - sink.started)
        base = rates[CLIENTS[0][0]]
        for name, _ in CLIENTS:
            print(f"  {name:<40} {rates[name]:>12,.0f}   {rates[name] / base:5.2f}")
    finally:
        server.stop()
    print(f"\n{RATE:,} records/s, 1-record frames ({paced} records)    p50 ms    p99 ms")
    server = ServerProcess({"mode": "paced", "records": paced})
    try:
        for name, run in CLIENTS:
            sink = Sink(paced, latency=True)
            run(server.port, sink)
            cut = sink.delays[len(sink.delays) // 10 :]  # skip the warm-up
            p50 = statistics.median(cut)
            p99 = statistics.quantiles(cut, n=100)[98]
            print(f"  {name:<40} {p50:8.3f}  {p99:8.3f}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
