"""The simulator's market model: valid records of today's layouts, KRX ticks, limits, reproducible."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from kis_sim import MarketModel, demo_session, krx_tick, layout_row

from kis_proto import MarketSession, decode_message, records
from kis_proto.layouts import TRS
from kis_proto.sessions import krx_session, us_session
from kis_proto.symbols import LISTINGS

from .helpers import encode_frame

KST = timezone(timedelta(hours=9))
CLOCK = datetime(2026, 12, 3, 10, 30, 0, tzinfo=KST)  # a Thursday


def frame(tr_id: str, values: dict[str, str], era: str | None = None) -> str:
    """One record of the model's values, laid out in `era`'s columns (today's by default)."""
    return encode_frame(tr_id, [layout_row(TRS[tr_id].layout(era), values)])


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        (1_999, 1),
        (2_000, 5),
        (4_995, 5),
        (5_000, 10),
        (19_990, 10),
        (20_000, 50),
        (49_950, 50),
        (50_000, 100),
        (199_900, 100),
        (200_000, 500),
        (499_500, 500),
        (500_000, 1_000),
        (1_500_000, 1_000),
    ],
)
def test_krx_tick_bands(price: int, tick: int) -> None:
    assert krx_tick(price) == tick


def test_trades_are_valid_consistent_and_on_the_tick_grid() -> None:
    market = MarketModel(random.Random(1))
    previous_volume = 0
    for _ in range(500):
        [rec] = decode_message(frame("H0STCNT0", market.trade("005930", CLOCK)))
        assert isinstance(rec, records.H0STCNT0)
        assert rec.invalid_fields() == {}
        assert rec.extra == ()
        price, prev = rec.price, rec.vi_stnd_prc
        assert price is not None
        assert prev is not None
        assert price % krx_tick(price) == 0
        assert prev * 7 // 10 <= price <= prev * 13 // 10
        assert rec.change == price - prev
        assert rec.stck_lwpr is not None
        assert rec.stck_hgpr is not None
        assert rec.stck_lwpr <= price <= rec.stck_hgpr
        assert rec.acml_vol == previous_volume + (rec.volume or 0)
        previous_volume = rec.acml_vol


def test_book_straddles_the_last_trade() -> None:
    market = MarketModel(random.Random(2))
    [trade] = decode_message(frame("H0STCNT0", market.trade("000660", CLOCK)))
    [book] = decode_message(frame("H0STASP0", market.book("000660", CLOCK)))
    assert isinstance(trade, records.H0STCNT0)
    assert isinstance(book, records.H0STASP0)
    assert book.invalid_fields() == {}
    assert book.askp1 is not None
    assert book.bidp1 is not None
    assert trade.price is not None
    assert book.bidp1 <= trade.price < book.askp1
    assert book.total_askp_rsqn == sum(book[f"ASKP_RSQN{i}"] for i in range(1, 11))  # type: ignore[misc]


def test_overseas_trade() -> None:
    market = MarketModel(random.Random(3))
    new_york = CLOCK.astimezone(timezone(timedelta(hours=-5)))
    [rec] = decode_message(frame("HDFSCNT0", market.overseas_trade("DNASAAPL", new_york, CLOCK)))
    assert isinstance(rec, records.HDFSCNT0)
    assert rec.invalid_fields() == {}
    assert rec.symbol == "AAPL"
    assert rec.price is not None
    assert abs(rec.price - Decimal(270)) < 1  # near Apple's reference level, in dollars
    assert rec.price == rec.price.quantize(Decimal("0.0001"))
    assert rec.time == new_york.time().replace(tzinfo=None)


def test_overseas_book_has_ten_levels_around_the_last_trade() -> None:
    market = MarketModel(random.Random(4))
    new_york = CLOCK.astimezone(timezone(timedelta(hours=-5)))
    [trade] = decode_message(frame("HDFSCNT0", market.overseas_trade("DNASNVDA", new_york, CLOCK)))
    [book] = decode_message(frame("HDFSASP0", market.overseas_book("DNASNVDA", new_york, CLOCK)))
    assert isinstance(trade, records.HDFSCNT0)
    assert isinstance(book, records.HDFSASP0)
    assert book.width == 71
    assert book.invalid_fields() == {}
    bids = [book[f"PBID{n}"] for n in range(1, 11)]
    asks = [book[f"PASK{n}"] for n in range(1, 11)]
    assert trade.price is not None
    assert all(isinstance(p, Decimal) for p in bids + asks)
    assert bids == sorted(bids, reverse=True)  # type: ignore[type-var]
    assert asks == sorted(asks)  # type: ignore[type-var]
    assert bids[0] < trade.price < asks[0]  # type: ignore[operator]
    assert book.bvol == sum(book[f"VBID{n}"] for n in range(1, 11))  # type: ignore[misc]


def test_same_seed_same_market() -> None:
    a, b = MarketModel(random.Random(9)), MarketModel(random.Random(9))
    assert [a.trade("005930", CLOCK) for _ in range(20)] == [b.trade("005930", CLOCK) for _ in range(20)]


def test_start_prices_are_the_listings_or_given() -> None:
    market = MarketModel(random.Random(5), prices={"005930": 75000, "DNASAAPL": "190.5"})
    [samsung] = decode_message(frame("H0STCNT0", market.trade("005930", CLOCK)))
    [hynix] = decode_message(frame("H0STCNT0", market.trade("000660", CLOCK)))
    [apple] = decode_message(frame("HDFSCNT0", market.overseas_trade("DNASAAPL", CLOCK, CLOCK)))
    assert isinstance(samsung, records.H0STCNT0)
    assert isinstance(hynix, records.H0STCNT0)
    assert isinstance(apple, records.HDFSCNT0)
    assert samsung.vi_stnd_prc == 75000  # the simulator's previous close
    assert hynix.vi_stnd_prc == int(LISTINGS["000660"].price)  # SK하이닉스 near its real level, not 999
    assert apple.price is not None
    assert abs(apple.price - Decimal("190.5")) < 1
    assert market.reference_price("999999") is None


def test_every_listing_starts_on_the_tick_grid_at_its_level() -> None:
    market = MarketModel(random.Random(6))
    for key, known in LISTINGS.items():
        if known.overseas:
            continue
        [rec] = decode_message(frame("H0STCNT0", market.trade(key, CLOCK)))
        assert isinstance(rec, records.H0STCNT0)
        assert rec.vi_stnd_prc == int(known.price), key
        assert int(known.price) % krx_tick(int(known.price)) == 0, key


def test_trades_carry_the_session_and_kst_date() -> None:
    market = MarketModel(random.Random(7))
    after = CLOCK.replace(hour=17)
    [rec] = decode_message(frame("H0STCNT0", market.trade("005930", after, MarketSession.AFTER_MARKET)))
    assert isinstance(rec, records.H0STCNT0)
    assert rec.session is MarketSession.AFTER_MARKET
    assert rec.bsop_date == after.date()
    assert rec.time == after.timetz()  # KST, aware
    [book] = decode_message(frame("H0STASP0", market.book("005930", after, MarketSession.AFTER_MARKET)))
    assert isinstance(book, records.H0STASP0)
    assert book.session is MarketSession.AFTER_MARKET
    assert book.mid_prc is not None
    assert book.askp1 is not None
    assert book.bidp1 is not None
    assert book.mid_prc == Decimal(book.askp1 + book.bidp1) / 2


@pytest.mark.parametrize("era", ["2026-08", "2026-08+mid", "2026-09"])
@pytest.mark.parametrize("tr_id", ["H0STCNT0", "H0NXCNT0", "H0UNCNT0", "H0STASP0", "H0NXASP0", "H0UNASP0"])
def test_the_model_fills_every_era_of_the_domestic_trs(tr_id: str, era: str) -> None:
    market = MarketModel(random.Random(8))
    values = market.trade("005930", CLOCK) if tr_id.endswith("CNT0") else market.book("005930", CLOCK)
    layout = TRS[tr_id].layout(era)
    missing = [f.name for f in layout.fields if f.name not in values]
    assert missing == []
    [rec] = decode_message(frame(tr_id, values, era))
    assert type(rec) is layout.record_class
    assert rec.invalid_fields() == {}


@pytest.mark.parametrize(
    ("hour", "minute", "session"),
    [
        (7, 59, None),
        (8, 0, MarketSession.PRE_MARKET),
        (8, 50, None),  # between NXT's pre-market and the open
        (9, 0, MarketSession.REGULAR),
        (15, 19, MarketSession.REGULAR),
        (15, 20, MarketSession.CLOSING),
        (15, 30, None),
        (16, 0, MarketSession.AFTER_MARKET),
        (19, 59, MarketSession.AFTER_MARKET),
        (20, 0, None),
    ],
)
def test_krx_timetable(hour: int, minute: int, session: MarketSession | None) -> None:
    assert krx_session(CLOCK.replace(hour=hour, minute=minute)) is session


def test_krx_is_closed_on_weekends() -> None:
    saturday = CLOCK + timedelta(days=2)
    assert saturday.weekday() == 5
    assert krx_session(saturday) is None
    assert krx_session(saturday + timedelta(days=1)) is None


def test_the_demo_clock_cycles_through_every_session() -> None:
    seen = [demo_session(t) for t in range(80)]
    assert set(seen) == set(MarketSession)
    assert seen[0] is MarketSession.REGULAR
    assert seen[:40] == seen[40:]


def test_us_sessions() -> None:
    eastern = timezone(timedelta(hours=-5))
    day = datetime(2026, 12, 3, tzinfo=eastern)
    assert us_session(day.replace(hour=3, minute=59)) is None
    assert us_session(day.replace(hour=4)) == "2"
    assert us_session(day.replace(hour=9, minute=30)) == "1"
    assert us_session(day.replace(hour=16)) == "3"
    assert us_session(day.replace(hour=20)) is None
    assert us_session(day.replace(hour=12) + timedelta(days=2)) is None  # Saturday
