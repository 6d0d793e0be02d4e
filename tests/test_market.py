"""The simulator's market model: valid records of today's layouts, KRX ticks, limits, reproducible."""

from __future__ import annotations

import random
from datetime import time

import pytest

from kis_proto import MarketModel, decode_message, krx_tick, records

from .helpers import encode_frame

CLOCK = time(10, 30, 0)


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
        [rec] = decode_message(encode_frame("H0STCNT0", [market.trade("005930", CLOCK)]))
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
    [trade] = decode_message(encode_frame("H0STCNT0", [market.trade("000660", CLOCK)]))
    [book] = decode_message(encode_frame("H0STASP0", [market.book("000660", CLOCK)]))
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
    [rec] = decode_message(encode_frame("HDFSCNT0", [market.overseas_trade("DNASAAPL", time(9, 0), CLOCK)]))
    assert isinstance(rec, records.HDFSCNT0)
    assert rec.invalid_fields() == {}
    assert rec.symbol == "AAPL"
    assert str(rec.price).count(".") == 1


def test_same_seed_same_market() -> None:
    a, b = MarketModel(random.Random(9)), MarketModel(random.Random(9))
    assert [a.trade("005930", CLOCK) for _ in range(20)] == [b.trade("005930", CLOCK) for _ in range(20)]
