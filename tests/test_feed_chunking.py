"""FeedCore above the connection: however the server's bytes are cut into reads, the feed is the same.

KISConnection's own chunk invariance is tested in test_connection_fuzz.py; this holds the layer
above it (registry, reconnect policy, buffer) to the same rule. The first case is the regression:
the handshake's 101 and the first data frame in one read used to end the feed with
``delivered() without connected()``.
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from kis_proto import ConnectionClosed, FeedEvent, KISConfig, Record, Subscribed
from kis_proto.feed import FeedCore, ReconnectDecision, ReconnectPolicy

from .peers import HOST, PORT, WsprotoServer, ack

ROW = "^".join(["005930", "093015", "71500", "2", "500", "0.70", *["0"] * 41])


def feed_core() -> FeedCore:
    policy = ReconnectPolicy(rand=random.Random(7).random, retry_delay=1.0, max_retries=2)
    core = FeedCore(host=HOST, port=PORT, config=KISConfig(), policy=policy, approval_key="approval-0123")
    core.subscribe("H0STCNT0", ["005930", "000660"], now=0.0)
    return core


def server_bytes(core: FeedCore, frames: int) -> tuple[bytes, WsprotoServer]:
    """What a server that pushes right after the handshake sends: the 101, acks, then data frames."""
    conn = core.open(now=0.0)
    server = WsprotoServer()
    server.receive(conn.data_to_send())
    data = server.accept()
    data += server.text(ack("H0STCNT0", "005930")) + server.text(ack("H0STCNT0", "000660"))
    for n in range(frames):
        count = n % 3 + 1
        data += server.text(f"0|H0STCNT0|{count:03d}|" + "^".join([ROW] * count))
    return data + server.close_with(1000, "bye"), server


def run(cuts: list[int], frames: int) -> tuple[list[FeedEvent], ReconnectDecision | None]:
    core = feed_core()
    data, server = server_bytes(core, frames)
    conn = core.conn
    assert conn is not None
    bounds = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True)]
    now = 1.0
    for piece in pieces:
        if conn.closed:
            break
        conn.receive_data(piece, now=now)
        core.collect(now)
        out = conn.data_to_send()
        if out:
            server.receive(out)
        now += 0.01
    if not conn.closed:
        conn.receive_eof(now=now)
        core.collect(now)
    decision = core.lost(now)
    return core.drain(), decision


def summary(events: list[FeedEvent]) -> list[object]:
    return [e.raw if isinstance(e, Record) else type(e).__name__ for e in events]


def test_the_handshake_and_the_first_frame_in_one_read_keep_the_feed() -> None:
    events, decision = run([], frames=3)  # every byte in one read
    assert [e for e in events if isinstance(e, Subscribed)]
    assert sum(isinstance(e, Record) for e in events) == 1 + 2 + 3
    assert isinstance(events[-2], ConnectionClosed)  # then the reconnect the policy decided
    assert decision is not None
    assert decision.delay is not None
    assert decision.attempt == 1  # a session that delivered: the streak starts again


@given(st.lists(st.integers(0, 4000), max_size=12), st.integers(1, 6))
def test_any_split_of_the_servers_bytes_gives_the_same_feed(cuts: list[int], frames: int) -> None:
    whole_events, whole_decision = run([], frames)
    events, decision = run(cuts, frames)
    assert summary(events) == summary(whole_events)
    assert decision is not None
    assert whole_decision is not None
    assert (decision.attempt, decision.delay is None) == (
        whole_decision.attempt,
        whole_decision.delay is None,
    )
