"""A small, seeded market model for the simulator: KRX trades and books, overseas trades.

Pure: the random source is injected (a `random.Random` fits) and the time of day is passed in,
so a seed gives the same market every run. Prices walk on the KRX tick-size bands within the
±30 % daily limits; each trade updates the day's open/high/low, accumulated volume and amount,
and the order book straddles the last price. Field layouts are today's (46 for H0STCNT0, 59 for
H0STASP0, 26 for HDFSCNT0), filled with values of the declared types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time
from decimal import Decimal
from typing import Protocol

__all__ = ["MarketModel", "RandomSource", "krx_tick"]

# KRX tick sizes by price band (unified for KOSPI and KOSDAQ since 2023-01-25).
_TICKS: tuple[tuple[int, int], ...] = (
    (2_000, 1),
    (5_000, 5),
    (20_000, 10),
    (50_000, 50),
    (200_000, 100),
    (500_000, 500),
)


def krx_tick(price: int) -> int:
    """The KRX tick size at `price` (won)."""
    for below, tick in _TICKS:
        if price < below:
            return tick
    return 1_000


class RandomSource(Protocol):
    """What the model needs of a random source (`random.Random` has it)."""

    def random(self) -> float: ...

    def randint(self, a: int, b: int) -> int: ...


@dataclass
class _Stock:
    previous_close: int
    price: int
    open: int = 0
    high: int = 0
    low: int = 0
    volume: int = 0
    amount: int = 0
    sells: int = 0
    buys: int = 0
    sell_qty: int = 0
    buy_qty: int = 0
    book: list[int] = field(default_factory=list)


def _sign(change: float) -> str:
    return "2" if change > 0 else "5" if change < 0 else "3"


class MarketModel:
    """Trades and books for a set of symbols, reproducible from the random source's seed."""

    def __init__(self, rng: RandomSource, *, business_day: date = date(2026, 1, 2)) -> None:
        self._rng = rng
        self._day = business_day.strftime("%Y%m%d")
        self._stocks: dict[str, _Stock] = {}
        self._overseas: dict[str, _Stock] = {}
        self._orders = 0

    def _stock(self, symbol: str) -> _Stock:
        stock = self._stocks.get(symbol)
        if stock is None:
            # A plausible previous close from the symbol itself: same symbol, same price.
            base = 1_000 + (sum(ord(c) * 7919 for c in symbol) % 300) * 1_000
            base -= base % krx_tick(base)
            stock = self._stocks[symbol] = _Stock(previous_close=base, price=base)
        return stock

    def trade(self, symbol: str, hms: time) -> list[str]:
        """One H0STCNT0 record (46 fields) for a new trade of `symbol` at `hms`."""
        rng, stock = self._rng, self._stock(symbol)
        steps = rng.randint(-2, 2)
        tick = krx_tick(stock.price)
        limit_up = stock.previous_close * 13 // 10
        limit_down = stock.previous_close * 7 // 10
        stock.price = max(limit_down, min(limit_up, stock.price + steps * tick))
        stock.price -= stock.price % krx_tick(stock.price)
        qty = rng.randint(1, 500)
        buy = rng.random() < 0.5
        if not stock.open:
            stock.open = stock.high = stock.low = stock.price
        stock.high, stock.low = max(stock.high, stock.price), min(stock.low, stock.price)
        stock.volume += qty
        stock.amount += qty * stock.price
        if buy:
            stock.buys, stock.buy_qty = stock.buys + 1, stock.buy_qty + qty
        else:
            stock.sells, stock.sell_qty = stock.sells + 1, stock.sell_qty + qty
        change = stock.price - stock.previous_close
        rate = Decimal(change * 100) / stock.previous_close
        weighted = Decimal(stock.amount) / stock.volume
        strength = Decimal(stock.buy_qty * 100) / max(stock.sell_qty, 1)
        clock = hms.strftime("%H%M%S")
        tick = krx_tick(stock.price)
        return [
            symbol,
            clock,
            str(stock.price),
            _sign(change),
            str(change),
            f"{rate:.2f}",
            f"{weighted:.2f}",
            str(stock.open),
            str(stock.high),
            str(stock.low),
            str(stock.price + tick),
            str(stock.price),
            str(qty),
            str(stock.volume),
            str(stock.amount),
            str(stock.sells),
            str(stock.buys),
            str(stock.buys - stock.sells),
            f"{strength:.2f}",
            str(stock.sell_qty),
            str(stock.buy_qty),
            "1" if buy else "5",
            f"{Decimal(stock.buy_qty) / stock.volume:.2f}",
            "0.00",
            "090000",
            _sign(stock.price - stock.open),
            str(stock.price - stock.open),
            clock,
            _sign(stock.price - stock.high),
            str(stock.price - stock.high),
            clock,
            _sign(stock.price - stock.low),
            str(stock.price - stock.low),
            self._day,
            "20",
            "N",
            str(rng.randint(100, 50_000)),
            str(rng.randint(100, 50_000)),
            str(rng.randint(10_000, 900_000)),
            str(rng.randint(10_000, 900_000)),
            "0.00",
            "0",
            "0.00",
            "0",
            "",
            str(stock.previous_close),
        ]

    def book(self, symbol: str, hms: time) -> list[str]:
        """One H0STASP0 record (59 fields): ten asks above the last price, ten bids at and below."""
        rng, stock = self._rng, self._stock(symbol)
        tick = krx_tick(stock.price)
        asks = [stock.price + tick * (i + 1) for i in range(10)]
        bids = [stock.price - tick * i for i in range(10)]
        ask_qty = [rng.randint(100, 200_000) for _ in range(10)]
        bid_qty = [rng.randint(100, 200_000) for _ in range(10)]
        fields = [symbol, hms.strftime("%H%M%S"), "0"]
        fields += [str(p) for p in asks] + [str(p) for p in bids]
        fields += [str(q) for q in ask_qty] + [str(q) for q in bid_qty]
        fields += [str(sum(ask_qty)), str(sum(bid_qty)), "0", "0", "0", "0", "0", "0", "3", "0.00"]
        fields += [str(stock.volume), "0", "0", "0", "0", "0"]
        return fields

    def order_notices(self, hts_id: str, symbol: str, hms: time) -> list[list[str]]:
        """A simulated order's H0STCNI0 notices (26 fields each): its acceptance, then its fill.

        The acceptance (CNTG_YN "1") carries the order quantity and price; the fill (CNTG_YN "2")
        the filled quantity at the current price (PROTOCOL.md §8).
        """
        rng, stock = self._rng, self._stock(symbol)
        self._orders += 1
        order_no = f"{self._orders:010d}"
        qty = rng.randint(1, 100)
        side = "02" if rng.random() < 0.5 else "01"  # 02 buy, 01 sell
        clock = hms.strftime("%H%M%S")

        def notice(filled: bool) -> list[str]:
            return [
                hts_id,
                "5012345601",
                order_no,
                "0000000000",
                side,
                "0",
                "00",
                "0",
                symbol,
                str(qty),
                str(stock.price),
                clock,
                "0",
                "2" if filled else "1",
                "2",
                "06010",
                str(qty),
                "모의계좌",
                "",
                "1",
                "N",
                "",
                "",
                "",
                "삼성전자" if symbol == "005930" else symbol,
                str(stock.price),
            ]

        return [notice(filled=False), notice(filled=True)]

    def overseas_trade(self, key: str, local: time, korea: time) -> list[str]:
        """One HDFSCNT0 record (26 fields) for `key` (e.g. ``DNASAAPL``): 4-decimal prices."""
        rng = self._rng
        stock = self._overseas.get(key)
        if stock is None:
            base = 50_0000 + (sum(ord(c) * 31 for c in key) % 4000) * 1000  # in 1/10000 dollars
            stock = self._overseas[key] = _Stock(previous_close=base, price=base)
        stock.price = max(1, stock.price + rng.randint(-30, 30) * 100)
        qty = rng.randint(1, 300)
        if not stock.open:
            stock.open = stock.high = stock.low = stock.price
        stock.high, stock.low = max(stock.high, stock.price), min(stock.low, stock.price)
        stock.volume += qty
        stock.amount += qty * stock.price // 10_000

        def dollars(value: int) -> str:
            return f"{Decimal(value) / 10_000:.4f}"

        diff = stock.price - stock.previous_close
        rate = Decimal(diff * 100) / stock.previous_close
        return [
            key,
            key[4:],
            "4",
            self._day,
            self._day,
            local.strftime("%H%M%S"),
            self._day,
            korea.strftime("%H%M%S"),
            dollars(stock.open),
            dollars(stock.high),
            dollars(stock.low),
            dollars(stock.price),
            _sign(diff),
            dollars(abs(diff)),
            f"{rate:+.2f}",
            dollars(stock.price - 100),
            dollars(stock.price + 100),
            str(rng.randint(1, 900)),
            str(rng.randint(1, 900)),
            str(qty),
            str(stock.volume),
            str(stock.amount),
            str(stock.volume // 2),
            str(stock.volume - stock.volume // 2),
            "100.00",
            "1",
        ]
