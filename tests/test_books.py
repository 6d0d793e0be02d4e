"""kis_proto.books: book snapshots at an interval or on change, from the book TRs."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import kis_sim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kis_sim import MarketModel, layout_row

from kis_proto import KST, LocalProtocolError, MarketSession, Record, books, decode_message
from kis_proto.layouts import TRS

DAY = datetime(2026, 9, 14, tzinfo=KST)


def at(hhmmss: str) -> datetime:
    return DAY + timedelta(hours=int(hhmmss[:2]), minutes=int(hhmmss[2:4]), seconds=int(hhmmss[4:]))


def book(tr_id: str, values: dict[str, str]) -> Record:
    [rec] = decode_message(f"0|{tr_id}|001|" + "^".join(layout_row(TRS[tr_id].layout(), values)))
    assert isinstance(rec, Record)
    return rec


def krx_book(hhmmss: str, asks: list[tuple[int, int]], bids: list[tuple[int, int]], **extra: str) -> Record:
    values = {"MKSC_SHRN_ISCD": "005930", "BSOP_HOUR": hhmmss, "MARKET_CLS_CODE": "2"}
    for n, (p, q) in enumerate(asks, 1):
        values[f"ASKP{n}"], values[f"ASKP_RSQN{n}"] = str(p), str(q)
    for n, (p, q) in enumerate(bids, 1):
        values[f"BIDP{n}"], values[f"BIDP_RSQN{n}"] = str(p), str(q)
    values["TOTAL_ASKP_RSQN"] = str(sum(q for _, q in asks))
    values["TOTAL_BIDP_RSQN"] = str(sum(q for _, q in bids))
    return book("H0STASP0", values | extra)


def test_construction_refuses_what_it_cannot_do() -> None:
    with pytest.raises(LocalProtocolError, match="not both or neither"):
        books.BookSnapshots()
    with pytest.raises(LocalProtocolError, match="not both or neither"):
        books.BookSnapshots(every=1, on_change=True)
    with pytest.raises(LocalProtocolError, match=r"kis_proto\.bars"):
        books.BookSnapshots(every=1, tr_ids=["H0STCNT0"])
    with pytest.raises(LocalProtocolError, match="levels"):
        books.BookSnapshots(every=1, levels=11)
    snaps = books.BookSnapshots(on_change=True)
    not_seconds: Any = DAY
    with pytest.raises(LocalProtocolError, match="unix seconds"):
        snaps.handle_timer(not_seconds)
    for tr_id in books.BOOK_TRS:  # every era of every book TR has its levels found
        for layout in TRS[tr_id].layouts:
            assert snaps._layouts[layout.record_class].ask_prices


def test_a_snapshot_field_by_field() -> None:
    snaps = books.BookSnapshots(on_change=True, levels=2)
    rec = krx_book("100001", asks=[(71600, 300), (71700, 500), (71800, 9)], bids=[(71500, 100), (71400, 50)])
    [snap] = snaps.add(rec, at("100001").timestamp() + 0.2)
    assert (snap.bid, snap.ask, snap.bid_size, snap.ask_size, snap.spread) == (71500, 71600, 100, 300, 100)
    assert snap.mid == Decimal(71550)
    assert snap.micro_price == Decimal(71500 * 300 + 71600 * 100) / 400  # nearer the bid: asks rest more
    assert (snap.bid_depth, snap.ask_depth, snap.levels) == (150, 800, 2)
    assert snap.imbalance == Decimal("-0.684211")  # (150 - 800) / 950
    assert (snap.total_bid, snap.total_ask) == (150, 809)
    assert (snap.expected_price, snap.expected_volume) == (None, None)  # no auction
    assert snap.session is MarketSession.REGULAR
    assert snap.time == at("100001")
    assert snap.bids == ((71500, 100), (71400, 50))
    assert snap.asks == ((71600, 300), (71700, 500))
    data = json.loads(json.dumps(snap.to_dict()))
    assert data["mid"] == "71550.000000"
    assert data["bids"] == [[71500, 100], [71400, 50]]
    # The same top two levels again: no snapshot; a third level's change does not count either.
    same = krx_book("100002", asks=[(71600, 300), (71700, 500), (71800, 1)], bids=[(71500, 100), (71400, 50)])
    assert snaps.add(same, at("100002").timestamp()) == ()
    moved = krx_book("100003", asks=[(71600, 200), (71700, 500)], bids=[(71500, 100), (71400, 50)])
    assert [s.ask_size for s in snaps.add(moved, at("100003").timestamp())] == [200]


def test_an_auction_shows_its_expected_price_and_an_empty_side_reads_none() -> None:
    snaps = books.BookSnapshots(on_change=True)
    rec = krx_book(
        "152500", asks=[(0, 0)], bids=[(70000, 10)], ANTC_CNPR="70100", ANTC_CNQN="1234", MARKET_CLS_CODE="5"
    )
    [snap] = snaps.add(rec, at("152500").timestamp())
    assert (snap.session, snap.expected_price, snap.expected_volume) == (MarketSession.CLOSING, 70100, 1234)
    assert (snap.ask, snap.spread, snap.mid, snap.micro_price) == (None, None, None, None)
    assert snap.imbalance == Decimal(1)


def test_futures_and_us_books() -> None:
    values = {"FUTS_SHRN_ISCD": "101W09", "BSOP_HOUR": "090000"}
    for n in range(1, 6):
        values |= {f"FUTS_ASKP{n}": f"{350 + n * 0.05:.2f}", f"FUTS_BIDP{n}": f"{350 - (n - 1) * 0.05:.2f}"}
        values |= {f"ASKP_RSQN{n}": "10", f"BIDP_RSQN{n}": "30"}
    [snap] = books.BookSnapshots(on_change=True, levels=10).add(
        book("H0IFASP0", values), at("090000").timestamp()
    )
    assert (snap.bid, snap.ask, snap.levels, snap.bid_depth) == (Decimal("350.00"), Decimal("350.05"), 5, 150)
    assert snap.micro_price == Decimal("350.0375")  # (350*10 + 350.05*30) / 40
    assert snap.session is None
    model = MarketModel(random.Random(1))
    us = model.overseas_book("DNASAAPL", at("093000") - timedelta(hours=13), at("223000"))
    [snap] = books.BookSnapshots(on_change=True, levels=10).add(
        book("HDFSASP0", us), at("223000").timestamp()
    )
    assert snap.levels == 10
    assert len(snap.bids) == 10
    assert snap.time == at("223000")  # the Korean time (KHMS)
    assert snap.bid is not None
    assert snap.ask is not None
    assert snap.bid < snap.ask


def test_interval_snapshots_are_the_book_as_it_was_at_each_boundary() -> None:
    snaps = books.BookSnapshots(every=1)
    one = krx_book("100000", asks=[(101, 1)], bids=[(100, 1)])
    two = krx_book("100000", asks=[(102, 1)], bids=[(100, 1)])
    three = krx_book("100001", asks=[(103, 1)], bids=[(100, 1)])
    t = at("100000").timestamp()
    assert snaps.add(one, t + 0.1) == ()
    assert snaps.add(two, t + 0.5) == ()
    assert snaps.timer() == t + 1
    [first] = snaps.add(three, t + 1.2)  # the boundary passed before this book came
    assert (first.ask, first.at) == (102, at("100001"))
    assert snaps.handle_timer(t + 1.9) == ()
    [second] = snaps.handle_timer(t + 2)
    assert (second.ask, second.at) == (103, at("100002"))
    assert snaps.timer() is None
    assert snaps.handle_timer(t + 10) == ()  # no change, no snapshot


@settings(max_examples=50, deadline=None)
@given(
    times=st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=40).map(sorted),
    every=st.sampled_from([1, 2, 5]),
    timers=st.lists(st.floats(0, 40, allow_nan=False), max_size=20).map(sorted),
)
def test_the_timer_changes_when_snapshots_come_never_which(
    times: list[float], every: int, timers: list[float]
) -> None:
    """Live (the timer run at any moments) and replay (the clock only at events) agree."""
    t0 = at("100000").timestamp()
    recs = [krx_book("100000", asks=[(101 + i, 1)], bids=[(100, 1)]) for i in range(len(times))]
    replay = books.BookSnapshots(every=every)
    live = books.BookSnapshots(every=every)
    a: list[books.BookSnapshot] = []
    b: list[books.BookSnapshot] = []
    pending = list(timers)
    for t, rec in zip(times, recs, strict=True):
        a += replay.add(rec, t0 + t)
        while pending and pending[0] <= t:
            b += live.handle_timer(t0 + pending.pop(0))
        b += live.add(rec, t0 + t)
    a += replay.handle_timer(t0 + 100)
    b += live.handle_timer(t0 + 100)
    assert a == b
    assert len({s.at for s in a}) == len(a)  # one snapshot of the key per boundary at most
    for snap in a:  # each is the last book received before its boundary
        before = [i for i, t in enumerate(times) if t0 + t < snap.at.timestamp()]
        assert snap.ask == 101 + before[-1]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_simulated_books_through_the_closing_auction(anyio_backend: str) -> None:
    import kis_anyio

    from kis_proto import Record as Rec

    now = [at("151950")]

    def clock() -> datetime:
        now[0] += timedelta(seconds=2)
        return now[0]

    got: list[books.BookSnapshot] = []
    snaps = books.BookSnapshots(every=10)
    async with (
        kis_sim.simulate(seed=5, tick=0.005, clock="kst", wall_clock=clock) as sim,
        kis_anyio.connect(sim.url, approval_key="k") as feed,
    ):
        await feed.subscribe("H0STASP0", ["005930", "000660"])
        async for event in feed:
            got += snaps.add(event, now[0].timestamp())
            if isinstance(event, Rec) and now[0] > at("152100"):
                break
    sessions = {s.session for s in got}
    assert sessions == {MarketSession.REGULAR, MarketSession.CLOSING}
    for snap in got:
        assert snap.bid is not None
        assert snap.ask is not None
        assert snap.bid < snap.ask
        assert (snap.expected_price is not None) == (snap.session is MarketSession.CLOSING)
    assert all(s.at.second % 10 == 0 for s in got)
