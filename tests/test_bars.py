"""kis_proto.bars: bars by time, ticks, volume and value from trade records; what `complete` means.

Pure tests build trade records from the TR layouts (as the simulator does); the simulator tests
record a live feed and compare the live bars, the replayed bars and a polars group-by.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import kis_sim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kis_sim import layout_row

from kis_proto import (
    KST,
    EventsDropped,
    LocalProtocolError,
    MarketSession,
    Reconnecting,
    Record,
    Subscribed,
    UndecodableMessage,
    bars,
    decode_message,
    records,
)
from kis_proto._events import DecodeFailure
from kis_proto.layouts import TRS
from kis_proto.recording import recording_line, replay_lines

DAY = datetime(2026, 9, 14, tzinfo=KST)  # a Monday


def ts(hhmmss: str) -> float:
    """Unix time of a KST time of day on DAY."""
    return (
        DAY + timedelta(hours=int(hhmmss[:2]), minutes=int(hhmmss[2:4]), seconds=int(hhmmss[4:]))
    ).timestamp()


def trade(
    hhmmss: str,
    price: int | str,
    volume: int,
    cumulative: int | None,
    *,
    symbol: str = "005930",
    side: str = "1",
    session: MarketSession = MarketSession.REGULAR,
    tr_id: str = "H0STCNT0",
) -> Record:
    """One trade record in today's layout of `tr_id`, as KIS sends it."""
    values = {
        "MKSC_SHRN_ISCD": symbol,
        "STCK_CNTG_HOUR": hhmmss,
        "STCK_PRPR": str(price),
        "CNTG_VOL": str(volume),
        "ACML_VOL": "" if cumulative is None else str(cumulative),
        "CCLD_DVSN": side,
        "CNTG_CLS_CODE": side,
        "MARKET_CLS_CODE": session.value,
        "BSOP_DATE": "20260914",
    }
    row = layout_row(TRS[tr_id].layout(), values)
    [rec] = decode_message(f"0|{tr_id}|001|" + "^".join(row))
    assert isinstance(rec, Record)
    return rec


def subscribed(symbol: str = "005930", tr_id: str = "H0STCNT0") -> Subscribed:
    return Subscribed(tr_id=tr_id, tr_key=symbol, encrypted=False)


def run(
    agg: bars.BarAggregator, events: list[tuple[float, Any]], until: float | None = None
) -> list[bars.Bar]:
    out: list[bars.Bar] = []
    for now, event in events:
        out += agg.add(event, now)
    out += agg.flush(until)
    return out


# -- construction ---------------------------------------------------------------------------------


def test_construction_refuses_what_it_cannot_do() -> None:
    with pytest.raises(LocalProtocolError, match="exactly one of"):
        bars.BarAggregator()
    with pytest.raises(LocalProtocolError, match="exactly one of"):
        bars.BarAggregator(every=60, ticks=10)
    with pytest.raises(LocalProtocolError, match=r"kis_proto\.books"):
        bars.BarAggregator(every=60, tr_ids=["H0STASP0"])
    with pytest.raises(LocalProtocolError, match="not a TR kis_proto knows"):
        bars.BarAggregator(every=60, tr_ids=["FOO00000"])
    with pytest.raises(LocalProtocolError, match="H0UPCNT0 is a trade TR"):
        bars.BarAggregator(every=60, tr_ids=["H0UPCNT0"])  # an index: no volume per trade
    with pytest.raises(LocalProtocolError, match="timetable"):
        bars.BarAggregator(every=60, tr_ids=["H0IFCNT0"], empty="flat")
    with pytest.raises(LocalProtocolError, match="time bars"):
        bars.BarAggregator(ticks=10, empty="flat")
    with pytest.raises(LocalProtocolError, match="positive"):
        bars.BarAggregator(volume=0)
    with pytest.raises(LocalProtocolError, match="whole number"):
        bars.BarAggregator(ticks=Decimal("1.5"))  # type: ignore[arg-type]
    agg = bars.BarAggregator(every=60)
    not_seconds: Any = DAY  # a datetime where unix seconds go: said, not a TypeError
    with pytest.raises(LocalProtocolError, match="unix seconds"):
        agg.add(trade("100000", 1, 1, 1), not_seconds)
    with pytest.raises(LocalProtocolError, match="unix seconds"):
        agg.add(subscribed(), not_seconds)
    with pytest.raises(LocalProtocolError, match="unix seconds"):
        agg.handle_timer(not_seconds)
    with pytest.raises(LocalProtocolError, match="unix seconds"):
        agg.flush(not_seconds)
    assert bars.parse_interval("1m") == 60
    assert bars.parse_interval("30s") == 30
    assert bars.parse_interval("1h") == 3600
    assert bars.parse_interval(15) == 15
    for bad in ("", "1d", "-1m", "1.5m", "0s", 86_401, True):
        with pytest.raises(LocalProtocolError):
            bars.parse_interval(bad)


def test_every_trade_tr_of_the_table_is_readable_in_every_era() -> None:
    """The column table names real columns of every layout of every supported TR."""
    agg = bars.BarAggregator(every=60)
    assert set(agg.tr_ids) == set(bars.TRADE_TRS)
    eras = {layout.record_class for tr_id in bars.TRADE_TRS for layout in TRS[tr_id].layouts}
    assert eras <= set(agg._layouts)


# -- one bar by hand -------------------------------------------------------------------------------


def test_a_minute_bar_field_by_field() -> None:
    agg = bars.BarAggregator(every="1m")
    events: list[tuple[float, Any]] = [
        (ts("095930"), subscribed()),
        (ts("100001") + 0.1, trade("100001", 71500, 10, 1000, side="1")),
        (ts("100015") + 0.1, trade("100015", 71600, 5, 1005, side="5")),
        (ts("100015") + 0.1, trade("100015", 71400, 20, 1025, side="3")),  # neither side
        (ts("100059") + 0.1, trade("100059", 71500, 1, 1026, side="1")),
        (ts("100100") + 0.2, trade("100100", 71700, 2, 1028)),  # the next minute closes it
    ]
    out: list[bars.Bar] = []
    for now, event in events:
        out += agg.add(event, now)
    [bar] = out
    assert bar == bars.Bar(
        tr_id="H0STCNT0",
        symbol="005930",
        session=MarketSession.REGULAR,
        kind="time",
        size=60,
        start=DAY.replace(hour=10),
        end=DAY.replace(hour=10, minute=1),
        open=71500,
        high=71600,
        low=71400,
        close=71500,
        volume=36,
        value=71500 * 10 + 71600 * 5 + 71400 * 20 + 71500,
        vwap=Decimal("71458.333333"),  # value / volume to 6 places, half-even
        trades=4,
        buy_volume=11,
        sell_volume=5,
        first_trade=DAY.replace(hour=10, second=1),
        last_trade=DAY.replace(hour=10, second=59),
        complete=True,
        gap=False,
        missing_volume=0,
    )
    assert bar.start.utcoffset() == timedelta(hours=9)
    assert type(bar.open) is int
    text = json.dumps(bar.to_dict())
    assert bars.Bar.from_dict(json.loads(text)) == bar
    assert json.loads(text)["vwap"] == "71458.333333"
    assert json.loads(text)["start"] == "2026-09-14T10:00:00+09:00"
    assert repr(bar) == (
        "<Bar H0STCNT0 005930 regular 2026-09-14 10:00:00–10:01:00 O=71500 H=71600 L=71400 C=71500 "
        "V=36 n=4 complete>"
    )
    with pytest.raises(LocalProtocolError):
        bars.Bar.from_dict({"v": 2})
    with pytest.raises(LocalProtocolError):
        bars.Bar.from_dict({**bar.to_dict(), "open": 1.5})


def test_the_closing_auction_is_a_bar_of_its_own_and_sessions_never_share_a_bar() -> None:
    """The regular session ends at 15:20, the closing auction prints once at 15:30, the
    after-market runs from 16:00: hourly bars of the 15 o'clock hour are two, one per session."""
    agg = bars.BarAggregator(every="1h")
    events: list[tuple[float, Any]] = [
        (ts("085000"), subscribed()),
        (ts("151959"), trade("151959", 70000, 10, 10)),
        (ts("153000"), trade("153000", 70100, 500, 510, side="3", session=MarketSession.CLOSING)),
        (ts("160001"), trade("160001", 70200, 7, 517, session=MarketSession.AFTER_MARKET)),
        (ts("170000"), trade("170000", 70300, 1, 518, session=MarketSession.AFTER_MARKET)),
    ]
    out = run(agg, events, until=ts("200000"))
    assert [(b.session, b.start.hour, b.end.hour, b.volume, b.close) for b in out] == [
        (MarketSession.REGULAR, 15, 16, 10, 70000),
        (MarketSession.CLOSING, 15, 16, 500, 70100),
        (MarketSession.AFTER_MARKET, 16, 17, 7, 70200),
        (MarketSession.AFTER_MARKET, 17, 18, 1, 70300),
    ]
    assert all(b.complete for b in out)
    closing = out[1]
    assert (closing.buy_volume, closing.sell_volume) == (0, 0)  # the auction's print has no side
    # The regular bar closed the moment the auction's print came, not at 16:00.
    agg = bars.BarAggregator(every="1h")
    agg.add(subscribed(), ts("085000"))
    assert agg.add(events[1][1], ts("151959")) == ()
    assert [b.session for b in agg.add(events[2][1], ts("153000"))] == [MarketSession.REGULAR]


def test_a_quiet_symbols_bar_closes_on_the_clock_and_a_late_trade_revises_it() -> None:
    agg = bars.BarAggregator(every=60, grace=2.0)
    agg.add(subscribed(), ts("095900"))
    assert agg.timer() is None
    assert agg.add(trade("100010", 100, 3, 3), ts("100010")) == ()
    assert agg.timer() == ts("100102")
    assert agg.handle_timer(ts("100101") + 0.9) == ()
    [bar] = agg.handle_timer(ts("100102"))
    assert (bar.volume, bar.complete, bar.revision, bar.late_trades) == (3, True, 0, 0)
    assert agg.timer() is None
    # A trade of 10:00:59 that arrives after the bar closed: the bar again, revised.
    [again] = agg.add(trade("100059", 101, 2, 5), ts("100103"))
    assert (again.start, again.volume, again.close, again.revision, again.late_trades) == (
        bar.start,
        5,
        101,
        1,
        1,
    )
    assert again.complete
    # A late trade for an interval that had no bar makes one, marked late.
    [other] = agg.add(trade("100130", 102, 1, 6), ts("100300"))
    assert (other.start.minute, other.volume, other.revision, other.late_trades) == (1, 1, 0, 1)


def test_missing_volume_is_what_acml_vol_says_was_not_received() -> None:
    agg = bars.BarAggregator(every=60)
    events = [
        (ts("095900"), subscribed()),
        (ts("100001"), trade("100001", 100, 10, 110)),  # watched from before the bar: counts from 100
        (ts("100002"), trade("100002", 100, 5, 115)),
        # a trade of 7 was lost here
        (ts("100003"), trade("100003", 100, 4, 126)),
        (ts("100103"), trade("100103", 100, 1, 127)),
    ]
    out = run(agg, events)
    assert [(b.volume, b.missing_volume, b.complete, b.gap) for b in out] == [
        (19, 7, False, False),
        (1, 0, False, True),  # flushed: the data ended before the bar did
    ]


def test_what_the_feed_did_not_watch_is_a_gap() -> None:
    # Subscribed after the bar began: its first trades may be gone (no ACML_VOL to count from).
    agg = bars.BarAggregator(every=60)
    out = run(agg, [(ts("100030"), subscribed()), (ts("100031"), trade("100031", 100, 5, 500))], ts("100200"))
    assert [(b.gap, b.missing_volume, b.complete) for b in out] == [(True, None, False)]
    # ... unless its first trade is the day's first (ACML_VOL is its own volume): nothing before it.
    agg = bars.BarAggregator(every=60)
    out = run(agg, [(ts("090030"), subscribed()), (ts("090031"), trade("090031", 100, 5, 5))], ts("090200"))
    assert [(b.gap, b.missing_volume, b.complete) for b in out] == [(False, 0, True)]
    # Records with no Subscribed at all: watched from the first trade.
    agg = bars.BarAggregator(every=60)
    out = run(
        agg,
        [(ts("100031"), trade("100031", 100, 5, 500)), (ts("100101"), trade("100101", 100, 5, 505))],
        ts("100300"),
    )
    assert [(b.gap, b.complete) for b in out] == [(True, False), (False, True)]

    def with_event(event: Any) -> bars.Bar:
        agg = bars.BarAggregator(every=60)
        [first, *_] = run(
            agg,
            [
                (ts("095900"), subscribed()),
                (ts("100001"), trade("100001", 100, 5, 100)),
                (ts("100020"), event),
                (ts("100030"), trade("100030", 100, 5, 105)),
                (ts("100101"), trade("100101", 100, 5, 110)),
            ],
        )
        return first

    reconnect = Reconnecting(attempt=1, delay=0.1, reason="dropped")
    # A reconnect mid-bar: the bar has a gap even when ACML_VOL shows nothing was lost.
    assert (with_event(reconnect).gap, with_event(reconnect).missing_volume) == (True, 0)
    assert not with_event(reconnect).complete
    # A recording holds no reconnect, but the restored subscription's ack says there was one.
    assert with_event(subscribed()).gap
    assert with_event(EventsDropped(count=3)).gap
    garbage = UndecodableMessage(failure=DecodeFailure.UNKNOWN_MESSAGE, reason="", raw="x")
    assert with_event(garbage).gap
    assert not with_event(subscribed("000660")).gap  # another key's first ack says nothing
    assert not with_event(subscribed("005930", tr_id="H0STASP0")).gap  # nor a book's


def test_flat_bars_fill_the_session_and_stop_with_it() -> None:
    agg = bars.BarAggregator(every=60, empty="flat")
    out = run(
        agg,
        [
            (ts("151600"), subscribed()),
            (ts("151700"), trade("151700", 100, 5, 5)),
            (ts("151900"), trade("151900", 101, 1, 6)),
        ],
        until=ts("153500"),
    )
    # 15:17 traded, 15:18 flat, 15:19 traded; from 15:20 the timetable says the closing auction:
    # no flat regular bars after the regular session.
    assert [(b.start.strftime("%H%M"), b.trades, b.close, b.flat) for b in out] == [
        ("1517", 1, 100, False),
        ("1518", 0, 100, True),
        ("1519", 1, 101, False),
    ]
    flat = out[1]
    assert (flat.volume, flat.vwap, flat.first_trade, flat.complete) == (0, None, None, True)
    assert bars.Bar.from_dict(json.loads(json.dumps(flat.to_dict()))) == flat
    # A flat bar comes on the clock, before any later trade.
    agg = bars.BarAggregator(every=60, empty="flat")
    agg.add(subscribed(), ts("100000"))
    agg.add(trade("100010", 100, 5, 5), ts("100010"))
    assert agg.timer() == ts("100102")
    assert [b.flat for b in agg.handle_timer(ts("100102"))] == [False]
    assert agg.timer() == ts("100202")
    assert [b.flat for b in agg.handle_timer(ts("100202"))] == [True]
    # A trade after empty minutes: their flat bars first, then its own bar opens.
    assert [b.start.minute for b in agg.add(trade("100401", 100, 5, 10), ts("100401"))] == [2, 3]


@pytest.mark.parametrize(
    ("options", "volumes"),
    [
        ({"ticks": 3}, [5, 9, 1, 4]),
        ({"volume": 5}, [5, 7, 3, 4]),  # a bar ends with the trade that reaches the size: never split
        ({"value": 500}, [5, 7, 3, 4]),
    ],
)
def test_tick_volume_and_value_bars(options: dict[str, Any], volumes: list[int]) -> None:
    agg = bars.BarAggregator(**options)
    sizes = [1, 1, 3, 2, 5, 2, 1]
    events: list[tuple[float, Any]] = [(ts("095900"), subscribed())]
    total = 0
    for i, size in enumerate(sizes):
        total += size
        events.append((ts(f"1000{i:02d}"), trade(f"1000{i:02d}", 100, size, total)))
    # The session changes: the open bar ends with it, short.
    events.append((ts("153000"), trade("153000", 100, 4, total + 4, session=MarketSession.CLOSING)))
    out = run(agg, events, until=ts("153001"))
    assert [b.volume for b in out] == volumes
    assert [b.session for b in out][-1] is MarketSession.CLOSING
    first = out[0]
    assert first.size == next(iter(options.values()))
    assert first.start == first.first_trade == DAY.replace(hour=10)
    assert first.end == first.last_trade


def test_futures_and_us_trades() -> None:
    """Futures: Decimal prices, the side from the day's buy and sell totals; HDFSCNT0: the Korean
    time and the session from MTYP."""
    layout = TRS["H0IFCNT0"].layout()

    def future(hhmmss: str, price: str, volume: int, cumulative: int, buys: int, sells: int) -> Record:
        values = {
            "FUTS_SHRN_ISCD": "101W09",
            "BSOP_HOUR": hhmmss,
            "FUTS_PRPR": price,
            "LAST_CNQN": str(volume),
            "ACML_VOL": str(cumulative),
            "SHNU_CNTG_SMTN": str(buys),
            "SELN_CNTG_SMTN": str(sells),
        }
        [rec] = decode_message("0|H0IFCNT0|001|" + "^".join(layout_row(layout, values)))
        assert isinstance(rec, Record)
        return rec

    events = [
        (ts("090000"), subscribed("101W09", "H0IFCNT0")),
        (ts("090001"), future("090001", "350.05", 2, 2, 2, 0)),  # first: no totals before it
        (ts("090002"), future("090002", "350.10", 3, 5, 5, 0)),  # buy
        (ts("090003"), future("090003", "349.95", 1, 6, 5, 1)),  # sell
    ]
    [bar] = run(bars.BarAggregator(every=60), events, until=ts("090200"))
    assert (bar.session, bar.open, bar.high, bar.low, bar.close) == (
        None,
        Decimal("350.05"),
        Decimal("350.10"),
        Decimal("349.95"),
        Decimal("349.95"),
    )
    assert (bar.volume, bar.buy_volume, bar.sell_volume, bar.complete) == (6, 3, 1, True)
    assert bar.value == Decimal("350.05") * 2 + Decimal("350.10") * 3 + Decimal("349.95")
    assert bars.Bar.from_dict(json.loads(json.dumps(bar.to_dict()))) == bar

    us = TRS["HDFSCNT0"].layout()

    def us_trade(khms: str, last: str, volume: int, total: int, mtyp: str) -> Record:
        values = {"RSYM": "DNASAAPL", "SYMB": "AAPL", "XHMS": "093000", "KHMS": khms, "LAST": last}
        values |= {"EVOL": str(volume), "TVOL": str(total), "MTYP": mtyp, "ASVL": "0", "BIVL": "0"}
        [rec] = decode_message("0|HDFSCNT0|001|" + "^".join(layout_row(us, values)))
        assert isinstance(rec, Record)
        return rec

    events = [
        (ts("223000"), subscribed("DNASAAPL", "HDFSCNT0")),
        (ts("222959"), us_trade("222959", "190.5000", 3, 3, "2")),
        (ts("223001"), us_trade("223001", "190.6000", 4, 7, "1")),
    ]
    out = run(bars.BarAggregator(every=60), events, until=ts("223200"))
    assert [(b.session, b.start.strftime("%H%M"), b.volume) for b in out] == [
        (MarketSession.PRE_MARKET, "2229", 3),
        (MarketSession.REGULAR, "2230", 4),
    ]


def test_a_trade_without_a_price_is_counted_never_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    agg = bars.BarAggregator(every=60)
    agg.add(subscribed(), ts("095900"))
    assert agg.add(trade("100000", 100, 1, 1), ts("100000")) == ()
    assert agg.add(trade("100001", "", 5, 6), ts("100001")) == ()
    assert agg.add(trade("1000xx", 100, 5, 11), ts("100002")) == ()
    assert agg.invalid_trades == 2
    assert "left out of the bars" in caplog.text
    [bar] = run(agg, [(ts("100003"), trade("100003", 100, 1, 12))], until=ts("100500"))
    assert (bar.volume, bar.missing_volume, bar.gap, bar.complete) == (2, 10, True, False)


# -- properties ----------------------------------------------------------------------------------

SYMBOLS = ("005930", "000660", "035420")
SESSIONS = (
    MarketSession.PRE_MARKET,
    MarketSession.REGULAR,
    MarketSession.CLOSING,
    MarketSession.AFTER_MARKET,
)


@st.composite
def days(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A day of trades: increasing times, sessions in the day's order, some trades lost."""
    count = draw(st.integers(1, 60))
    second = ts("080000")
    session = 0
    out = []
    volumes = dict.fromkeys(SYMBOLS, 0)
    for _ in range(count):
        second += draw(st.integers(0, 40))
        session = min(len(SESSIONS) - 1, session + draw(st.sampled_from([0, 0, 0, 0, 1])))
        symbol = draw(st.sampled_from(SYMBOLS))
        volume = draw(st.integers(1, 1000))
        volumes[symbol] += volume
        out.append(
            {
                "t": second,
                "symbol": symbol,
                "price": draw(st.integers(1000, 1100)),
                "volume": volume,
                "cumulative": volumes[symbol],
                "side": draw(st.sampled_from("153")),
                "session": SESSIONS[session],
                "lost": draw(st.booleans()) and draw(st.booleans()),
            }
        )
    return out


def records_of(day: list[dict[str, Any]]) -> list[Record]:
    return [
        trade(
            datetime.fromtimestamp(t["t"], KST).strftime("%H%M%S"),
            t["price"],
            t["volume"],
            t["cumulative"],
            symbol=t["symbol"],
            side=t["side"],
            session=t["session"],
        )
        for t in day
    ]


def frames_of(day: list[dict[str, Any]], cuts: list[int]) -> list[tuple[float, str]]:
    """The received trades as frames: consecutive trades of a second cut into frames at `cuts`."""
    received = [t for t in day if not t["lost"]]
    recs = records_of(received)
    out: list[tuple[float, str]] = []
    i = 0
    for n, cut in enumerate([*cuts, len(recs)]):
        group = recs[i : max(i, cut)] if n < len(cuts) else recs[i:]
        while group:  # a frame is one TR and one receive time
            t = received[i]["t"]
            same = [r for r, item in zip(group, received[i : i + len(group)], strict=True) if item["t"] == t]
            out.append((t + 0.25, f"0|H0STCNT0|{len(same):03d}|" + "^".join("^".join(r.raw) for r in same)))
            i += len(same)
            group = group[len(same) :]
    return out


def replayed(frames: list[tuple[float, str]], **options: Any) -> list[bars.Bar]:
    lines = [recording_line(ts("075900"), json.dumps(_ack(s))) for s in SYMBOLS]
    lines += [recording_line(t, text) for t, text in frames]
    return list(bars.bars_from(replay_lines(lines), until=ts("235959"), **options))


def _ack(symbol: str) -> dict[str, Any]:
    return {
        "header": {"tr_id": "H0STCNT0", "tr_key": symbol, "encrypt": "N"},
        "body": {"rt_cd": "0", "msg_cd": "OPSP0000", "msg1": "SUBSCRIBE SUCCESS", "output": {}},
    }


def final(out: list[bars.Bar]) -> dict[tuple[str, MarketSession | None, datetime], bars.Bar]:
    """The newest emission of each bar (a revision replaces what it revises)."""
    return {(b.symbol, b.session, b.start): b for b in out}


def model(
    day: list[dict[str, Any]], size: int
) -> dict[tuple[str, MarketSession | None, datetime], dict[str, Any]]:
    """What the bars must be, computed the plain way: a group-by of the received trades, and
    the lost volume charged to the bar of the next received trade of the key."""
    groups: dict[tuple[str, MarketSession | None, datetime], dict[str, Any]] = {}
    lost = dict.fromkeys(SYMBOLS, 0)
    seen: set[str] = set()
    for t in day:
        if t["lost"]:
            lost[t["symbol"]] += t["volume"]
            continue
        midnight = DAY.timestamp()
        start = datetime.fromtimestamp(midnight + (t["t"] - midnight) // size * size, KST)
        g = groups.setdefault((t["symbol"], t["session"], start), {"trades": []})
        g["trades"].append(t)
        # Volume lost before the key's first received trade is indistinguishable from volume
        # traded before the subscription: not missing (docs/bars.md says so).
        g["missing"] = g.get("missing", 0) + (lost[t["symbol"]] if t["symbol"] in seen else 0)
        lost[t["symbol"]] = 0
        seen.add(t["symbol"])
    return groups


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(day=days(), size=st.sampled_from([1, 7, 60, 3600]), data=st.data())
def test_bars_are_a_group_by_of_the_trades_whatever_the_framing(
    day: list[dict[str, Any]], size: int, data: st.DataObject
) -> None:
    received = [t for t in day if not t["lost"]]
    cuts_a = sorted(data.draw(st.lists(st.integers(0, len(received)), max_size=5)))
    cuts_b = sorted(data.draw(st.lists(st.integers(0, len(received)), max_size=5)))
    a = replayed(frames_of(day, cuts_a), every=size)
    b = replayed(frames_of(day, cuts_b), every=size)
    assert a == b  # the bars do not depend on how the trades were framed
    # Live: the same events handed over one by one, with the timer run between them.
    agg = bars.BarAggregator(every=size)
    live: list[bars.Bar] = []
    for s in SYMBOLS:
        live += agg.add(subscribed(s), ts("075900"))
    for t, text in frames_of(day, cuts_a):
        live += agg.handle_timer(t - 0.1)
        for rec in decode_message(text):
            live += agg.add(rec, t)
    live += agg.flush(ts("235959"))
    assert live == a
    bars_now = final(a)
    expected = model(day, size)
    assert set(bars_now) == set(expected)
    assert sum(b.volume for b in bars_now.values()) == sum(t["volume"] for t in received)
    for where, g in expected.items():
        bar, trades = bars_now[where], g["trades"]
        prices = [t["price"] for t in trades]
        assert (bar.open, bar.high, bar.low, bar.close) == (prices[0], max(prices), min(prices), prices[-1])
        assert bar.volume == sum(t["volume"] for t in trades)
        assert bar.value == sum(t["price"] * t["volume"] for t in trades)
        assert bar.trades == len(trades)
        assert bar.buy_volume == sum(t["volume"] for t in trades if t["side"] == "1")
        assert bar.sell_volume == sum(t["volume"] for t in trades if t["side"] == "5")
        assert bar.first_trade == datetime.fromtimestamp(trades[0]["t"], KST)
        assert bar.last_trade == datetime.fromtimestamp(trades[-1]["t"], KST)
        # No bar spans a session: every trade in it has its session.
        assert {t["session"] for t in trades} == {bar.session}
        assert bar.missing_volume == g["missing"]
        assert bar.complete == (g["missing"] == 0 and not bar.gap)
        assert bar.end - bar.start <= timedelta(seconds=size)


@settings(max_examples=40, deadline=None)
@given(day=days(), size=st.integers(1, 3000), kind=st.sampled_from(["ticks", "volume", "value"]))
def test_count_bars_hold_every_trade_once_and_never_span_a_session(
    day: list[dict[str, Any]], size: int, kind: str
) -> None:
    received = [t for t in day if not t["lost"]]
    out = replayed(frames_of(day, []), **{kind: size})

    def measure(run: list[dict[str, Any]]) -> int:
        if kind == "ticks":
            return len(run)
        if kind == "volume":
            return sum(t["volume"] for t in run)
        return sum(t["volume"] * t["price"] for t in run)

    for symbol in SYMBOLS:
        trades = [t for t in received if t["symbol"] == symbol]
        mine = [b for b in out if b.symbol == symbol]
        assert sum(b.trades for b in mine) == len(trades)  # every trade once, in order
        i = 0
        for bar in mine:
            run_, i = trades[i : i + bar.trades], i + bar.trades
            assert {t["session"] for t in run_} == {bar.session}  # never across sessions
            assert (bar.open, bar.close, bar.volume) == (
                run_[0]["price"],
                run_[-1]["price"],
                measure(run_) if kind == "volume" else bar.volume,
            )
            # A bar ends with the trade that reaches its size, or with its session (or the data).
            full = measure(run_) >= size and measure(run_[:-1]) < size
            assert full or i == len(trades) or trades[i]["session"] is not bar.session


# -- against the simulator -------------------------------------------------------------------------


class SteppedClock:
    """The simulator's wall clock, `step` seconds further at each of its ticks (it asks once a
    tick), jumping over `skip` (a closed stretch of the day) at once: a trading day in seconds."""

    def __init__(self, start: datetime, step: float, skip: tuple[datetime, datetime] | None = None) -> None:
        self.now, self.step, self.skip = start, timedelta(seconds=step), skip

    def __call__(self) -> datetime:
        self.now += self.step
        if self.skip is not None and self.skip[0] <= self.now < self.skip[1]:
            self.now = self.skip[1]
        return self.now

    def peek(self) -> float:
        """Now, without moving: what the recorder and the aggregator read."""
        return self.now.timestamp()


async def live(
    url: str,
    clock: SteppedClock,
    symbols: list[str],
    agg: bars.BarAggregator,
    stop: datetime,
    policy: Any = None,
) -> tuple[list[str], list[bars.Bar], float]:
    """A live feed driving `agg` (its timer too) while recording: (recording lines, bars, end).

    As a recorder does, each message gets the clock's time when it is handled; its records are
    handed to the aggregator with that time. When no event comes for a moment, the timer runs.
    """
    import anyio
    import kis_anyio

    from kis_proto import ConnectionClosed, KISConfig, TextReceived
    from kis_proto.recording import RECORDING_HEADER

    lines: list[str] = [RECORDING_HEADER]
    out: list[bars.Bar] = []
    options = {"policy": policy} if policy is not None else {}
    async with kis_anyio.connect(url, approval_key="k", config=KISConfig(emit_text=True), **options) as feed:
        await feed.subscribe("H0STCNT0", symbols)
        now = clock.peek()
        with anyio.fail_after(60):
            while True:
                event = None
                with anyio.move_on_after(0.003):
                    event = await feed.__anext__()
                if event is None:
                    if clock.now >= stop:
                        break
                    now = clock.peek()  # the clock moves on while no message comes
                    out += agg.handle_timer(now)
                elif isinstance(event, TextReceived):
                    if clock.now >= stop:
                        break  # a message is recorded and aggregated whole, or not at all
                    now = clock.peek()
                    lines.append(recording_line(now, event.text))
                elif isinstance(event, ConnectionClosed | Reconnecting):
                    now = clock.peek()
                    out += agg.add(event, now)
                else:
                    out += agg.add(event, now)
        end = now  # the last time the aggregator was given
    out += agg.flush(end)
    return lines, out, end


SIM_SYMBOLS = [f"{n:06d}" for n in range(100, 2100, 100)]  # 20 symbols


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_simulated_day_bars_equal_a_polars_group_by_and_live_equals_replay(anyio_backend: str) -> None:
    """20 symbols from 15:15 to 16:05 KST on the real timetable (the regular session's end at
    15:20, the closing auction to 15:30, the after-market from 16:00; the closed half hour is
    skipped): the bars from the recording equal a polars group-by of its trades, field for field,
    and the live aggregator (timer included) gave exactly the same bars in the same order."""
    import polars as pl

    start = DAY.replace(hour=15, minute=15)
    clock = SteppedClock(start, 2.0, skip=(DAY.replace(hour=15, minute=31), DAY.replace(hour=15, minute=59)))
    stop = DAY.replace(hour=16, minute=5)
    async with kis_sim.simulate(seed=20, tick=0.004, clock="kst", wall_clock=clock) as sim:
        lines, live_bars, end = await live(
            sim.url, clock, SIM_SYMBOLS, bars.BarAggregator(every=60, grace=30), stop
        )
    replay = list(bars.bars_from(replay_lines(lines), every=60, grace=30, until=end))
    assert replay == live_bars

    rows = [
        {
            "symbol": rec.tr_key,
            "session": rec.session.label if rec.session else None,
            "at": datetime.combine(rec.bsop_date, rec.time.replace(tzinfo=None)),
            "price": rec.price,
            "volume": rec.volume,
            "side": rec.ccld_dvsn,
        }
        for _, rec in replay_lines(lines)
        if isinstance(rec, records.H0STCNT0) and rec.bsop_date is not None
    ]
    assert len(rows) > 10_000
    trades = pl.DataFrame(rows).with_columns(pl.col("at").dt.replace_time_zone("Asia/Seoul"))
    grouped = (
        trades.group_by("symbol", "session", pl.col("at").dt.truncate("1m").alias("start"))
        .agg(
            open=pl.col("price").first(),
            high=pl.col("price").max(),
            low=pl.col("price").min(),
            close=pl.col("price").last(),
            volume=pl.col("volume").sum(),
            value=(pl.col("price") * pl.col("volume")).sum(),
            trades=pl.len(),
            buy_volume=pl.col("volume").filter(pl.col("side") == "1").sum(),
            sell_volume=pl.col("volume").filter(pl.col("side") == "5").sum(),
            first_trade=pl.col("at").min(),
            last_trade=pl.col("at").max(),
        )
        .sort("symbol", "start", "session")
    )
    newest = final(replay)
    assert len(newest) == grouped.height
    fields = ["open", "high", "low", "close", "volume", "value", "trades", "buy_volume", "sell_volume"]
    for row in grouped.iter_rows(named=True):
        bar = newest[(row["symbol"], _SESSION_BY_LABEL[row["session"]], row["start"])]
        assert [getattr(bar, f) for f in fields] == [row[f] for f in fields], row
        assert (bar.first_trade, bar.last_trade) == (row["first_trade"], row["last_trade"])
        assert bar.vwap == (Decimal(row["value"]) / row["volume"]).quantize(Decimal("0.000001"))
        assert bar.end - bar.start == timedelta(minutes=1)
    # The day crossed the sessions, each in bars of its own; every bar is complete but those the
    # end of the data cut short.
    assert {b.session for b in replay} == {
        MarketSession.REGULAR,
        MarketSession.CLOSING,
        MarketSession.AFTER_MARKET,
    }
    assert all(b.complete for b in replay if b.end.timestamp() + 30 <= end)
    assert all(b.revision == 0 for b in replay)  # nothing arrived late


_SESSION_BY_LABEL = {s.label: s for s in MarketSession}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_dropped_connection_leaves_its_bar_incomplete_by_what_the_simulator_sent_meanwhile(
    anyio_backend: str,
) -> None:
    """The simulator drops the socket mid-bar and goes on trading while the client reconnects:
    the bar says complete: false, and its missing volume is exactly the volume the simulator's
    market traded for the key during the outage (Simulator.unsent)."""
    import random

    from kis_proto.feed import ReconnectPolicy

    clock = SteppedClock(DAY.replace(hour=10), 1.0)
    policy = ReconnectPolicy(rand=random.Random(3).random, retry_delay=0.05, max_delay=0.1, max_retries=None)
    faults = kis_sim.Faults(drop=0.25)
    symbols = ["005930", "000660"]
    async with kis_sim.simulate(
        seed=21, tick=0.01, clock="kst", wall_clock=clock, faults=faults, trade_while_away=True
    ) as sim:
        lines, out, end = await live(
            sim.url, clock, symbols, bars.BarAggregator(every=60), DAY.replace(hour=10, minute=4), policy
        )
    away = [u for u in sim.unsent if u.why == "away"]
    assert away, "the simulator traded nothing while the client was away"
    received = [rec for _, rec in replay_lines(lines) if isinstance(rec, records.H0STCNT0)]
    newest = final(out)

    def bar_of(symbol: str, at: datetime) -> bars.Bar:
        start = at.replace(second=0)
        [bar] = [b for (s, _, st_), b in newest.items() if s == symbol and st_ == start]
        return bar

    # Each unsent trade is charged to the bar of the key's next received trade (KIS says how
    # much was lost, with that trade's ACML_VOL, not when): one step of the clock is one second,
    # so the order of trades is their time.
    charged: dict[tuple[str, datetime], int] = {}
    for u in away:
        after = [r for r in received if r.tr_key == u.tr_key and _at(r) > u.at]
        if after:
            bar = bar_of(u.tr_key, _at(after[0]))
            charged[(bar.symbol, bar.start)] = charged.get((bar.symbol, bar.start), 0) + u.volume
    assert charged
    for (symbol, start), bar in [((b.symbol, b.start), b) for b in newest.values()]:
        expected = charged.get((symbol, start), 0)
        assert bar.missing_volume == expected or (bar.missing_volume is None and expected == 0), bar
        if expected:
            assert not bar.complete
            assert bar.gap  # the reconnect itself was seen too
    # An outage that began and ended inside one bar: that bar's missing volume is all of it.
    inside = [
        b
        for b in newest.values()
        if b.missing_volume
        and all(bar_of(u.tr_key, u.at) == b for u in away if u.tr_key == b.symbol and b.start <= u.at < b.end)
    ]
    assert inside
    # The recording gives the same missing volumes (the restored subscriptions' acks say that
    # the connection was new).
    replay = final(list(bars.bars_from(replay_lines(lines), every=60, until=end)))
    assert {k: b.missing_volume for k, b in replay.items()} == {
        k: b.missing_volume for k, b in newest.items()
    }
    assert all(not replay[k].complete for k, b in newest.items() if b.missing_volume)


def _at(rec: records.H0STCNT0) -> datetime:
    assert rec.bsop_date is not None
    return datetime.combine(rec.bsop_date, rec.time.replace(tzinfo=None), KST)


def test_the_bars_page_runs(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every Python block of docs/bars.md runs, in order, in a fresh folder (the live example
    against the simulator writes the recording the next block reads); its JSON is a bar's dict."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "bars.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "docs_bars"}
    for block in blocks:
        exec(compile(block, "docs/bars.md", "exec"), namespace)  # noqa: S102 - the page's own code
    shown = capsys.readouterr().out
    assert "<Bar H0STCNT0 005930 regular 2026-09-14 10:00:00–10:01:00" in shown
    assert "complete" in shown
    [example] = re.findall(r"```json\n(.*?)```", page, flags=re.DOTALL)
    bar = bars.Bar.from_dict(json.loads(example))
    assert bar.to_dict() == json.loads(example)
    assert bar.vwap == (Decimal(bar.value) / bar.volume).quantize(Decimal("0.000001"))


# -- the faces: kis_anyio.bars, kis-ws export --bars, kis-ws bars ------------------------------------


class _Recorded(bars.BarAggregator):
    """An aggregator that records what it is given: each message's text at the time it was handed
    over, as `kis-ws record` would have written it; and the time it was flushed."""

    def __init__(self, lines: list[str], **options: Any) -> None:
        super().__init__(**options)
        self.lines = lines
        self.flushed_at: float | None = None

    def add(self, event: Any, now: float) -> Any:
        from kis_proto import TextReceived

        if isinstance(event, TextReceived):
            self.lines.append(recording_line(now, event.text))
        return super().add(event, now)

    def flush(self, now: float | None = None) -> Any:
        self.flushed_at = now
        return super().flush(now)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_live_bars_equal_the_replay_and_the_parquet_export_of_their_recording(
    anyio_backend: str, tmp_path: Any
) -> None:
    """kis_anyio.bars over a simulator feed, recorded as it goes: `bars_from` of the recording gives
    the same bars (with `until` the moment the live run stopped), and `kis-ws export --bars`
    writes exactly `bars_from(read_recording(...))`, typed."""
    import io
    import time

    import anyio
    import kis_anyio
    import kis_data
    from kis_ws.__main__ import main

    from kis_proto import KISConfig
    from kis_proto.recording import RECORDING_HEADER

    lines = [RECORDING_HEADER]
    agg = _Recorded(lines, every="1s", grace=0.3)
    live_bars: list[bars.Bar] = []
    async with (
        kis_sim.simulate(seed=5, tick=0.02) as sim,
        kis_anyio.connect(sim.url, approval_key="k", config=KISConfig(emit_text=True)) as feed,
    ):
        await feed.subscribe("H0STCNT0", ["005930", "000660"])
        stream = kis_anyio.bars(feed, agg, clock=lambda: round(time.time(), 6))  # as a recording holds it
        with anyio.move_on_after(3.5):
            async for bar in stream:
                live_bars.append(bar)  # noqa: PERF401 - one by one: the timeout cuts the loop
        live_bars += stream.flush()
    assert agg.flushed_at is not None
    assert sum(b.complete for b in live_bars) >= 4
    recording = tmp_path / "day.kisrec"
    recording.write_text("\n".join(lines) + "\n", encoding="utf-8")
    replayed = list(
        bars.bars_from(kis_data.read_recording(recording), every="1s", grace=0.3, until=agg.flushed_at)
    )
    assert replayed == live_bars

    out = io.StringIO()
    assert main(["export", str(recording), "--to", str(tmp_path / "out"), "--bars", "1s"], out=out) == 0
    assert "H0STCNT0.bars-1s.parquet" in out.getvalue()
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(tmp_path / "out" / "H0STCNT0.bars-1s.parquet")
    expected = list(bars.bars_from(kis_data.read_recording(recording), every="1s"))
    assert table.num_rows == len(expected)
    assert table.schema.field("start").type == pa.timestamp("us", tz="Asia/Seoul")
    assert table.schema.field("open").type == pa.int64()
    assert table.schema.field("vwap").type == pa.decimal128(38, 6)
    assert table.schema.field("complete").type == pa.bool_()
    by_label = {s.label: s for s in MarketSession}
    exported = [
        bars.Bar(**(row | {"session": by_label[row["session"]] if row["session"] else None}))
        for row in table.to_pylist()
    ]
    assert exported == expected


def test_export_bars_types_decimal_prices_and_refuses_to_overwrite(tmp_path: Any) -> None:
    """Futures bars keep their Decimal prices (a decimal column of their scale), and a second
    export into the same folder is refused unless told to overwrite."""
    pa = pytest.importorskip("pyarrow")
    from kis_data import parquet

    from kis_proto.recording import RECORDING_HEADER

    layout = TRS["H0IFCNT0"].layout()
    rows = []
    for i, (hhmmss, price) in enumerate([("100001", "352.45"), ("100005", "352.50"), ("100107", "352.40")]):
        values = {
            "FUTS_SHRN_ISCD": "101W09",
            "BSOP_HOUR": hhmmss,
            "FUTS_PRPR": price,
            "LAST_CNQN": "2",
            "ACML_VOL": str(2 * (i + 1)),
        }
        message = "0|H0IFCNT0|001|" + "^".join(layout_row(layout, values))
        rows.append(recording_line(ts(hhmmss) + 0.5, message))
    recording = tmp_path / "futures.kisrec"
    recording.write_text("\n".join([RECORDING_HEADER, *rows]) + "\n", encoding="utf-8")
    written = parquet.export_bars(recording, tmp_path, every="1m")
    [(path, count)] = written.items()
    assert path.name == "H0IFCNT0.bars-1m.parquet"
    assert count == 2
    table = parquet.read_export(tmp_path)["H0IFCNT0.bars-1m"]
    assert table.schema.field("open").type == pa.decimal128(38, 2)
    assert table.column("open").to_pylist() == [Decimal("352.45"), Decimal("352.40")]
    assert table.column("session").to_pylist() == [None, None]  # futures carry no session
    with pytest.raises(FileExistsError):
        parquet.export_bars(recording, tmp_path, every="1m")
    assert parquet.export_bars(recording, tmp_path, every="1m", overwrite=True) == written
    assert parquet.interval_label(3600) == "1h"
    assert parquet.interval_label("90s") == "90s"


def test_open_bars_are_the_bars_being_built() -> None:
    agg = bars.BarAggregator(every="1m")
    assert agg.open_bars() == []
    agg.add(subscribed(), ts("095959"))
    agg.add(trade("100001", 70000, 10, 10), ts("100001"))
    agg.add(trade("100002", 70100, 5, 15), ts("100002"))
    [bar] = agg.open_bars()
    assert (bar.open, bar.close, bar.volume, bar.trades, bar.revision) == (70000, 70100, 15, 2, 0)
    [closed] = agg.handle_timer(ts("100102"))
    assert (closed.volume, closed.revision) == (15, 0)
    assert agg.open_bars() == []
