"""The trading sessions by the clock: the KRX day and the US day, as KIS's feeds mark them.

KRX runs NXT's pre-market (08:00–08:50 KST), the regular session with its closing auction
(09:00–15:20, then 15:20–15:30) and, since 2026-09-14, an after-market (16:00–20:00); US stocks
trade pre-market, regular and after-hours on New York time. The feeds say the session of each
record (``MARKET_CLS_CODE``, HDFSCNT0's ``MTYP``); these timetables tell it where no record does:
the bars' empty intervals, the simulator's clock. Weekends are closed; exchange holidays and
shortened days are not known to them.
"""

from __future__ import annotations

from datetime import datetime, time

from ._fields import MarketSession

__all__ = ["krx_session", "us_session"]

# The KRX day since 2026-09-14, in KST (NXT's pre-market, KRX's regular session with its closing
# auction 15:20-15:30, the after-market): (start, end, session), end exclusive.
_KRX_DAY: tuple[tuple[time, time, MarketSession], ...] = (
    (time(8, 0), time(8, 50), MarketSession.PRE_MARKET),
    (time(9, 0), time(15, 20), MarketSession.REGULAR),
    (time(15, 20), time(15, 30), MarketSession.CLOSING),
    (time(16, 0), time(20, 0), MarketSession.AFTER_MARKET),
)


def krx_session(at: datetime) -> MarketSession | None:
    """The KRX session at `at` (a KST wall-clock time), or None when the market is closed.

    Weekends are closed; exchange holidays are not known to this table.
    """
    if at.weekday() >= 5:
        return None
    clock = at.time().replace(tzinfo=None)
    for start, end, session in _KRX_DAY:
        if start <= clock < end:
            return session
    return None


def us_session(at: datetime) -> str | None:
    """HDFSCNT0's ``MTYP`` at `at` (New York wall-clock time): "2" pre, "1" regular, "3" after.

    Pre-market 04:00-09:30, regular 09:30-16:00, after-hours 16:00-20:00 ET on weekdays; None
    otherwise (holidays are not known to this table).
    """
    if at.weekday() >= 5:
        return None
    clock = at.time().replace(tzinfo=None)
    if time(4, 0) <= clock < time(9, 30):
        return "2"
    if time(9, 30) <= clock < time(16, 0):
        return "1"
    if time(16, 0) <= clock < time(20, 0):
        return "3"
    return None
