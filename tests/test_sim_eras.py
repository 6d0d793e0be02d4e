"""The simulator speaks today's KIS by default, an earlier era on request, and keeps a session clock."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import anyio
import kis_anyio
import kis_sim
import pytest

from kis_proto import LayoutDrift, LocalProtocolError, MarketSession, Record, records
from kis_proto.feed import ReconnectPolicy
from kis_proto.layouts import TRS
from kis_proto.symbols import LISTINGS

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


KST = timezone(timedelta(hours=9))
SUBSCRIPTIONS = [
    ("H0STCNT0", "005930"),
    ("H0NXCNT0", "005930"),
    ("H0UNCNT0", "000660"),
    ("H0STASP0", "005930"),
    ("H0NXASP0", "005930"),
    ("H0UNASP0", "005930"),
    ("HDFSCNT0", "DNASAAPL"),
    ("HDFSASP0", "DNASAAPL"),
]


async def first_records(sim: Any, subscriptions: list[tuple[str, str]], timeout: float = 10.0) -> list[Any]:
    """Subscribe, then collect events until every subscription has delivered a record."""
    policy = ReconnectPolicy(rand=random.Random(1).random, retry_delay=0.05)
    events: list[Any] = []
    async with kis_anyio.connect(sim.url, approval_key="k", policy=policy) as feed:
        for tr_id, key in subscriptions:
            await feed.subscribe(tr_id, key)
        with anyio.fail_after(timeout):
            async for event in feed:
                events.append(event)
                seen = {(e.tr_id, e.tr_key) for e in events if isinstance(e, Record)}
                if seen >= set(subscriptions):
                    break
    return events


@pytest.mark.parametrize("era", [None, "2026-08"])
async def test_each_tr_in_the_era_s_layout_without_drift(era: str | None) -> None:
    async with kis_sim.simulate(seed=1, tick=0.05, layouts=era) as sim:
        assert sim.era == (era or "2026-09")
        events = await first_records(sim, SUBSCRIPTIONS)
    assert not [e for e in events if isinstance(e, LayoutDrift)]
    recs = [e for e in events if isinstance(e, Record)]
    for tr_id, _ in SUBSCRIPTIONS:
        layout = TRS[tr_id].layout(era)
        got = {type(r) for r in recs if r.tr_id == tr_id}
        assert got == {layout.record_class}, tr_id
        assert all(r.invalid_fields() == {} for r in recs if r.tr_id == tr_id), tr_id
    widths = {r.tr_id: len(r.raw) for r in recs}
    if era is None:
        assert widths == {
            "H0STCNT0": 47,
            "H0NXCNT0": 47,
            "H0UNCNT0": 47,
            "H0STASP0": 63,
            "H0NXASP0": 62,
            "H0UNASP0": 66,
            "HDFSCNT0": 26,
            "HDFSASP0": 71,
        }
    else:
        assert widths["H0STCNT0"] == 46
        assert widths["H0STASP0"] == 59
        assert widths["H0NXASP0"] == 65
        assert widths["HDFSASP0"] == 17


async def test_times_and_business_dates_are_kst_and_prices_near_the_listings() -> None:
    fixed = datetime(2026, 12, 3, 17, 5, 0, tzinfo=KST)  # Thursday, in the after-market
    async with kis_sim.simulate(seed=2, tick=0.05, clock="kst", wall_clock=lambda: fixed) as sim:
        assert sim.session_now() is MarketSession.AFTER_MARKET
        events = await first_records(sim, [("H0STCNT0", "000660"), ("H0STASP0", "000660")])
    trade = next(e for e in events if isinstance(e, records.H0STCNT0))
    book = next(e for e in events if isinstance(e, records.H0STASP0))
    assert trade.bsop_date == fixed.date()
    assert trade.time == fixed.timetz()
    assert trade.session is book.session is MarketSession.AFTER_MARKET
    assert trade.price is not None
    reference = LISTINGS["000660"].price
    assert abs(trade.price - reference) <= reference * Decimal("0.05")  # not 999 won


async def test_the_kst_clock_sends_nothing_while_the_market_is_closed() -> None:
    sunday = datetime(2026, 12, 6, 11, 0, 0, tzinfo=KST)
    async with kis_sim.simulate(seed=3, tick=0.02, clock="kst", wall_clock=lambda: sunday) as sim:
        assert sim.session_now() is None
        policy = ReconnectPolicy(rand=random.Random(1).random, retry_delay=0.05)
        async with kis_anyio.connect(sim.url, approval_key="k", policy=policy) as feed:
            await feed.subscribe("H0STCNT0", "005930")
            await feed.subscribe("H0STCNI9", "myhtsid")
            events: list[Any] = []
            with anyio.move_on_after(0.6):
                # A loop, not a comprehension: what arrived before the timeout must be kept.
                async for event in feed:
                    events.append(event)  # noqa: PERF401
            assert any(type(e).__name__ == "Subscribed" for e in events)
        assert sim.frames_sent == 0
    assert not [e for e in events if isinstance(e, Record)]


async def test_the_default_clock_is_open_and_cycles_the_sessions() -> None:
    async with kis_sim.simulate(seed=4, tick=0.05) as sim:
        assert sim.clock == "open"
        assert sim.session_now() is MarketSession.REGULAR  # the cycle starts regular
        events = await first_records(sim, [("H0STCNT0", "005930")])
    trade = next(e for e in events if isinstance(e, records.H0STCNT0))
    assert trade.session is MarketSession.REGULAR
    assert trade.bsop_date is not None
    assert abs((trade.bsop_date - datetime.now(KST).date()).days) <= 1  # KST's today


async def test_start_prices_can_be_given() -> None:
    async with kis_sim.simulate(seed=5, tick=0.05, prices={"005930": 75000}) as sim:
        events = await first_records(sim, [("H0STCNT0", "005930")])
    trade = next(e for e in events if isinstance(e, records.H0STCNT0))
    assert trade.vi_stnd_prc == 75000


async def test_unknown_era_or_clock_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="known: 2026-08"):
        async with kis_sim.simulate(layouts="2025-01"):
            pass
    with pytest.raises(LocalProtocolError, match="clock"):
        async with kis_sim.simulate(clock="utc"):  # type: ignore[arg-type]
            pass
