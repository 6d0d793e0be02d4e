"""The bounded event buffer: oldest market data dropped and reported; notices and control kept."""

from __future__ import annotations

import pytest

from kis_proto import EventsDropped, FeedEvent, LocalProtocolError, PingPong, Reconnecting, Record, records
from kis_proto.feed import EventBuffer

from .helpers import VECTOR_PLAINTEXT, fields_of, sample

TRADE = fields_of(sample("0|H0STCNT0"))


def trade(n: int) -> Record:
    row = list(TRADE)
    row[2] = str(n)
    return records.H0STCNT0("H0STCNT0", row)


NOTICE = records.H0STCNI0("H0STCNI0", VECTOR_PLAINTEXT.split("^"))


def drain(buffer: EventBuffer) -> list[object]:
    out: list[object] = []
    while (event := buffer.get()) is not None:
        out.append(event)
    return out


def test_fifo_under_the_limit() -> None:
    buffer = EventBuffer(3)
    events: list[FeedEvent] = [trade(1), PingPong(text="p"), trade(2)]
    for event in events:
        buffer.put(event)
    assert len(buffer) == 3
    assert drain(buffer) == events
    assert buffer.get() is None


def test_oldest_market_data_is_dropped_and_reported_in_place() -> None:
    buffer = EventBuffer(2)
    ping = PingPong(text="p")
    for event in (trade(1), ping, trade(2), trade(3), trade(4)):
        buffer.put(event)
    assert drain(buffer) == [ping, EventsDropped(count=2), trade(3), trade(4)]


def test_notices_and_control_events_are_never_dropped() -> None:
    buffer = EventBuffer(1)
    reconnecting = Reconnecting(attempt=1, delay=0.5, reason="x")
    for event in (NOTICE, trade(1), NOTICE, reconnecting, trade(2), NOTICE):
        buffer.put(event)
    assert drain(buffer) == [NOTICE, NOTICE, reconnecting, EventsDropped(count=1), trade(2), NOTICE]


def test_loss_reported_even_when_no_market_data_follows() -> None:
    buffer = EventBuffer(1)
    buffer.put(trade(1))
    buffer.put(trade(2))
    assert buffer.get() == EventsDropped(count=1)
    assert buffer.get() == trade(2)
    buffer.put(trade(3))
    buffer.put(trade(4))
    buffer.get()  # the report
    buffer.get()  # trade 4
    assert buffer.get() is None


def test_size_must_be_positive() -> None:
    with pytest.raises(LocalProtocolError):
        EventBuffer(0)


def test_feed_core_logs_the_loss_when_handing_it_out(caplog: pytest.LogCaptureFixture) -> None:
    import random

    from kis_proto import KISConfig
    from kis_proto.feed import FeedCore, ReconnectPolicy

    core = FeedCore(
        host="h",
        port=1,
        config=KISConfig(),
        policy=ReconnectPolicy(rand=random.random),
        buffer_size=1,
        approval_key="k",
    )
    for n in range(3):
        core.buffer.put(trade(n))
    assert core.buffer.dropped == 2
    with caplog.at_level("WARNING", logger="kis_proto.feed"):
        assert core.drain() == [EventsDropped(count=2), trade(2)]
    assert "2 market-data records dropped" in caplog.text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://ops.koreainvestment.com:21000", ("ops.koreainvestment.com", 21000, "/tryitout")),
        ("ws://127.0.0.1:9/tryitout/H0STCNT0", ("127.0.0.1", 9, "/tryitout/H0STCNT0")),
        ("ws://[::1]:21000/", ("::1", 21000, "/")),
        ("ws://kis.example", ("kis.example", 80, "/tryitout")),
    ],
)
def test_split_ws_url(url: str, expected: tuple[str, int, str]) -> None:
    from kis_proto.feed import split_ws_url

    assert split_ws_url(url) == expected


@pytest.mark.parametrize(
    "url", ["wss://ops.koreainvestment.com:21000", "ws://:21000", "ws://host:port", "http://x"]
)
def test_split_ws_url_refuses_what_kis_does_not_serve(url: str) -> None:
    from kis_proto.feed import split_ws_url

    with pytest.raises(LocalProtocolError, match="ws://host:port"):
        split_ws_url(url)


def test_callback_table_calls_plain_and_collects_async_and_survives_a_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from kis_proto.feed import CallbackTable

    seen: list[str] = []
    table = CallbackTable()

    def plain(rec: Record) -> None:
        seen.append("plain")

    def broken(rec: Record) -> None:
        raise RuntimeError("bug")

    async def later(rec: Record) -> None:
        seen.append("async")

    assert table.add("H0STCNT0", "005930", plain) == ["005930"]
    table.add("H0STCNT0", ["005930", "000660"], broken)
    table.add("H0STCNT0", "005930", later)
    assert table.subscriptions() == [("H0STCNT0", "005930"), ("H0STCNT0", "000660")]
    with caplog.at_level("ERROR", logger="kis_proto.callbacks"):
        [pending] = table.call(trade(1))
    assert seen == ["plain"]
    assert "the feed goes on" in caplog.text
    pending.close()  # type: ignore[attr-defined]  # a coroutine the test does not run
    table.remove("H0STCNT0", "005930")
    assert table.call(trade(2)) == []
