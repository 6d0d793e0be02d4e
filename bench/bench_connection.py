"""Raw server bytes to typed records: KISConnection against framing baselines, in the same process.

    python bench/bench_connection.py [--quick]

A stream of H0STCNT0 text frames (1 or 4 records each) is cut into 64 KiB socket reads and fed
to each engine after its handshake. Rows:

(a) the `websockets` library's sans-IO client + `str.split` of every field: the framing floor;
(b) wsproto + `str.split`;
(c) the original design: websockets framing, `split`, a dict of five fields of the first record
    only (the other records of a frame are lost);
KISConnection: every record delivered as an event, price and volume read typed.

Rows are interleaved over several rounds and the best round of each is kept; compare the ratios.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from websockets.client import ClientProtocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from kis_proto import KISConnection, records

if TYPE_CHECKING:
    from collections.abc import Callable

    from websockets.frames import Frame

FRAMES = Path(__file__).resolve().parent.parent / "tests" / "data" / "frames.txt"
CHUNK = 64 * 1024


def message(count: int) -> str:
    for line in FRAMES.read_text(encoding="utf-8").splitlines():
        if line.startswith("0|H0STCNT0|"):
            payload = line.split("|", 3)[3]
            return f"0|H0STCNT0|{count:03d}|" + "^".join([payload] * count)
    raise SystemExit("no H0STCNT0 sample")


def frame_bytes(text: str) -> bytes:
    """One unmasked server TEXT frame (RFC 6455 §5.2)."""
    data = text.encode()
    n = len(data)
    if n < 126:
        head = bytes([0x81, n])
    elif n < 65536:
        head = bytes([0x81, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 127]) + n.to_bytes(8, "big")
    return head + data


def chunks(stream: bytes) -> list[bytes]:
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]


# -- engines: each returns a function that consumes the chunks and returns what it delivered -----------


def websockets_client() -> ClientProtocol:
    client = ClientProtocol(parse_uri("ws://127.0.0.1:21000/tryitout"))
    client.send_request(client.connect())
    server = ServerProtocol()
    server.receive_data(b"".join(client.data_to_send()))
    [request] = server.events_received()
    server.send_response(server.accept(request))  # type: ignore[arg-type]
    client.receive_data(b"".join(server.data_to_send()))
    client.events_received()
    return client


def run_websockets_split(reads: list[bytes]) -> int:
    client = websockets_client()
    delivered = 0
    for read in reads:
        client.receive_data(read)
        for frame in client.events_received():
            fields = bytes(cast("Frame", frame).data).decode().split("|", 3)[3].split("^")
            delivered += len(fields) // 46
    return delivered


def run_wsproto_split(reads: list[bytes]) -> int:
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="127.0.0.1:21000", target="/tryitout")))
    list(server.events())
    client.receive_data(server.send(AcceptConnection()))
    list(client.events())
    delivered = 0
    parts: list[str] = []  # wsproto hands out partial frames at read boundaries
    for read in reads:
        client.receive_data(read)
        for event in client.events():
            if isinstance(event, TextMessage):
                if not event.message_finished:
                    parts.append(event.data)
                    continue
                text = "".join([*parts, event.data]) if parts else event.data
                parts.clear()
                fields = text.split("|", 3)[3].split("^")
                delivered += len(fields) // 46
    return delivered


def run_original_design(reads: list[bytes]) -> int:
    client = websockets_client()
    delivered = 0
    for read in reads:
        client.receive_data(read)
        for frame in client.events_received():
            raw = bytes(cast("Frame", frame).data).decode()
            parts = raw.split("|")
            fields = parts[-1].split("^")
            data = {
                "symbol": fields[0],
                "time": fields[1],
                "price": int(fields[2]),
                "change": int(fields[3]),  # the design's bug: [3] is the sign (PROTOCOL.md §11c)
                "volume": int(fields[12]),
            }
            delivered += 1 if data else 0
    return delivered


def run_kis_proto(reads: list[bytes]) -> int:
    client = KISConnection(approval_key="bench", host="127.0.0.1", port=21000, now=0.0)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.data_to_send())
    list(server.events())
    client.receive_data(server.send(AcceptConnection()), now=0.0)
    client.events()
    delivered = 0
    for read in reads:
        client.receive_data(read, now=1.0)
        for rec in cast("list[records.H0STCNT0]", client.events()):
            delivered += 1 if rec.price is not None and rec.volume is not None else 0
    return delivered


ROWS: list[tuple[str, Callable[[list[bytes]], int]]] = [
    ("(a) websockets + split (framing floor)", run_websockets_split),
    ("(b) wsproto + split", run_wsproto_split),
    ("(c) original design (first record only)", run_original_design),
    ("KISConnection + .price, .volume", run_kis_proto),
]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer messages and rounds")
    args = parser.parse_args()
    messages, rounds = (2000, 2) if args.quick else (20000, 5)
    print(f"python {sys.version.split()[0]}, {messages} H0STCNT0 messages per run, best of {rounds} rounds")
    for count in (1, 4):
        reads = chunks(frame_bytes(message(count)) * messages)
        best: dict[str, float] = dict.fromkeys((name for name, _ in ROWS), 0.0)
        delivered: dict[str, int] = {}
        for _ in range(rounds):
            for name, run in ROWS:
                start = time.perf_counter()
                delivered[name] = run(reads)
                best[name] = max(best[name], messages / (time.perf_counter() - start))
        floor, original = best[ROWS[0][0]], best[ROWS[2][0]]
        print(f"\n{count}-record frames                      messages/s  records/msg  x (a)   x (c)")
        for name, _ in ROWS:
            per = delivered[name] / messages
            print(
                f"  {name:<40} {best[name]:>10,.0f}  {per:>10.0f}  {best[name] / floor:5.2f}  {best[name] / original:5.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
