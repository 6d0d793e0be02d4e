"""A small, seeded market model for the simulator.

Pure: the random source is injected (a `random.Random` fits) and the time is passed in, so a seed
gives the same market every run. Prices start at the reference levels of well-known listings
(`kis_proto.symbols.LISTINGS`, or prices given by the caller) and walk on the KRX tick-size bands within
the ±30 % daily limits; each trade updates the day's open/high/low, accumulated volume and amount,
and the order books straddle the last price. The model gives each record as a mapping from
official column names to field strings; `layout_row` lays it out in the columns of any era, so the
simulator can speak today's layouts or earlier ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from kis_proto import MarketSession
from kis_proto.layouts import FieldType
from kis_proto.symbols import listing

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from kis_proto.layouts import Layout

__all__ = [
    "MarketModel",
    "RandomSource",
    "demo_session",
    "krx_tick",
    "layout_row",
]

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


# -- sessions ---------------------------------------------------------------------------------------

# The always-open demo cycle: (seconds, session), so MARKET_CLS_CODE varies at any hour.
_DEMO_CYCLE: tuple[tuple[float, MarketSession], ...] = (
    (20.0, MarketSession.REGULAR),
    (5.0, MarketSession.CLOSING),
    (10.0, MarketSession.AFTER_MARKET),
    (5.0, MarketSession.PRE_MARKET),
)


def demo_session(elapsed: float) -> MarketSession:
    """The session `elapsed` seconds into the demo clock's 40-second cycle (regular first)."""
    t = elapsed % sum(seconds for seconds, _ in _DEMO_CYCLE)
    for seconds, session in _DEMO_CYCLE:
        if t < seconds:
            return session
        t -= seconds
    return _DEMO_CYCLE[0][1]


# -- laying records out ----------------------------------------------------------------------------

_BLANK = {FieldType.INT: "0", FieldType.DECIMAL: "0"}


def layout_row(layout: Layout, values: Mapping[str, str]) -> list[str]:
    """`values` (official column name → field string) in `layout`'s column order.

    A column the model does not fill reads "0" when numeric and empty otherwise, as KIS sends it.
    """
    return [values.get(f.name, _BLANK.get(f.type, "")) for f in layout.fields]


# -- the model ---------------------------------------------------------------------------------------


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


# NEW_MKOP_CLS_CODE's first digit by session (1 pre, 2 regular, 3 after; PROTOCOL.md §8).
_MKOP = {
    MarketSession.PRE_MARKET: "10",
    MarketSession.REGULAR: "20",
    MarketSession.CLOSING: "20",
    MarketSession.AFTER_MARKET: "30",
}
_CENTS = 10_000  # overseas prices are kept in 1/10000 dollars (ZDIV 4)


def _dollars(value: int) -> str:
    return f"{Decimal(value) / _CENTS:.4f}"


class MarketModel:
    """Trades, books and notices for any symbols, reproducible from the random source's seed.

    `prices` sets start prices (won, or dollars for overseas keys) and wins over the listings'
    reference prices; a symbol in neither starts at a price derived from the symbol itself.
    """

    def __init__(self, rng: RandomSource, *, prices: Mapping[str, Decimal | int | str] | None = None) -> None:
        self._rng = rng
        self._prices = {key: Decimal(value) for key, value in (prices or {}).items()}
        self._stocks: dict[str, _Stock] = {}
        self._overseas: dict[str, _Stock] = {}
        self._orders = 0

    @property
    def orders(self) -> int:
        """Simulated orders so far; each gave an acceptance and a fill notice (`order_notices`)."""
        return self._orders

    def reference_price(self, key: str) -> Decimal | None:
        """The start price given for `key`, or its listing's reference price, or None."""
        given = self._prices.get(key)
        if given is not None:
            return given
        known = listing(key)
        return known.price if known is not None else None

    def _stock(self, symbol: str) -> _Stock:
        stock = self._stocks.get(symbol)
        if stock is None:
            reference = self.reference_price(symbol)
            if reference is not None:
                base = max(1, int(reference))
            else:  # a plausible previous close from the symbol itself: same symbol, same price
                base = 1_000 + (sum(ord(c) * 7919 for c in symbol) % 300) * 1_000
            base -= base % krx_tick(base)
            stock = self._stocks[symbol] = _Stock(previous_close=base, price=base)
        return stock

    def _overseas_stock(self, key: str) -> _Stock:
        stock = self._overseas.get(key)
        if stock is None:
            reference = self.reference_price(key)
            if reference is not None:
                base = max(_CENTS // 100, int(reference * _CENTS))
            else:
                base = 50 * _CENTS + (sum(ord(c) * 31 for c in key) % 4000) * 1000
            stock = self._overseas[key] = _Stock(previous_close=base, price=base)
        return stock

    def last_price(self, key: str) -> Decimal | None:
        """The last simulated price of `key` (won, or dollars overseas), or None before any trade."""
        if key in self._stocks:
            return Decimal(self._stocks[key].price)
        if key in self._overseas:
            return Decimal(self._overseas[key].price) / _CENTS
        return None

    def trade(
        self, symbol: str, at: datetime, session: MarketSession = MarketSession.REGULAR
    ) -> dict[str, str]:
        """One KRX trade of `symbol` at `at` (KST): the columns of H0STCNT0 (and its NXT/UN twins)."""
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
        clock = at.strftime("%H%M%S")
        tick = krx_tick(stock.price)
        side = "1" if buy else "5"
        return {
            "MKSC_SHRN_ISCD": symbol,
            "STCK_CNTG_HOUR": clock,
            "STCK_PRPR": str(stock.price),
            "PRDY_VRSS_SIGN": _sign(change),
            "PRDY_VRSS": str(change),
            "PRDY_CTRT": f"{rate:.2f}",
            "WGHN_AVRG_STCK_PRC": f"{weighted:.2f}",
            "STCK_OPRC": str(stock.open),
            "STCK_HGPR": str(stock.high),
            "STCK_LWPR": str(stock.low),
            "ASKP1": str(stock.price + tick),
            "BIDP1": str(stock.price),
            "CNTG_VOL": str(qty),
            "ACML_VOL": str(stock.volume),
            "ACML_TR_PBMN": str(stock.amount),
            "SELN_CNTG_CSNU": str(stock.sells),
            "SHNU_CNTG_CSNU": str(stock.buys),
            "NTBY_CNTG_CSNU": str(stock.buys - stock.sells),
            "CTTR": f"{strength:.2f}",
            "SELN_CNTG_SMTN": str(stock.sell_qty),
            "SHNU_CNTG_SMTN": str(stock.buy_qty),
            "CCLD_DVSN": side,
            "CNTG_CLS_CODE": side,  # the NXT/UN sheets' name of the same column
            "SHNU_RATE": f"{Decimal(stock.buy_qty) / stock.volume:.2f}",
            "PRDY_VOL_VRSS_ACML_VOL_RATE": "0.00",
            "OPRC_HOUR": "090000",
            "OPRC_VRSS_PRPR_SIGN": _sign(stock.price - stock.open),
            "OPRC_VRSS_PRPR": str(stock.price - stock.open),
            "HGPR_HOUR": clock,
            "HGPR_VRSS_PRPR_SIGN": _sign(stock.price - stock.high),
            "HGPR_VRSS_PRPR": str(stock.price - stock.high),
            "LWPR_HOUR": clock,
            "LWPR_VRSS_PRPR_SIGN": _sign(stock.price - stock.low),
            "LWPR_VRSS_PRPR": str(stock.price - stock.low),
            "BSOP_DATE": at.strftime("%Y%m%d"),
            "NEW_MKOP_CLS_CODE": _MKOP[session],
            "TRHT_YN": "N",
            "ASKP_RSQN1": str(rng.randint(100, 50_000)),
            "BIDP_RSQN1": str(rng.randint(100, 50_000)),
            "TOTAL_ASKP_RSQN": str(rng.randint(10_000, 900_000)),
            "TOTAL_BIDP_RSQN": str(rng.randint(10_000, 900_000)),
            "VOL_TNRT": "0.00",
            "PRDY_SMNS_HOUR_ACML_VOL": "0",
            "PRDY_SMNS_HOUR_ACML_VOL_RATE": "0.00",
            "HOUR_CLS_CODE": "0",
            "MRKT_TRTM_CLS_CODE": "",
            "VI_STND_PRC": str(stock.previous_close),
            "MARKET_CLS_CODE": session.value,
        }

    def book(
        self, symbol: str, at: datetime, session: MarketSession = MarketSession.REGULAR
    ) -> dict[str, str]:
        """The KRX book of `symbol` at `at`: ten asks above the last price, ten bids at and below.

        The columns of H0STASP0 and its NXT/UN twins, mid prices (KRX and NXT) included.
        """
        rng, stock = self._rng, self._stock(symbol)
        tick = krx_tick(stock.price)
        asks = [stock.price + tick * (i + 1) for i in range(10)]
        bids = [stock.price - tick * i for i in range(10)]
        ask_qty = [rng.randint(100, 200_000) for _ in range(10)]
        bid_qty = [rng.randint(100, 200_000) for _ in range(10)]
        mid = Decimal(asks[0] + bids[0]) / 2
        mid_text = f"{mid:f}".removesuffix(".0")
        # In an auction (pre-market, closing) the book shows the expected price: here the last one.
        auction = session is MarketSession.PRE_MARKET or session is MarketSession.CLOSING
        expected = stock.price if auction else 0
        expected_change = expected - stock.previous_close if auction else 0
        values = {
            "MKSC_SHRN_ISCD": symbol,
            "BSOP_HOUR": at.strftime("%H%M%S"),
            "HOUR_CLS_CODE": "0",
            "TOTAL_ASKP_RSQN": str(sum(ask_qty)),
            "TOTAL_BIDP_RSQN": str(sum(bid_qty)),
            "OVTM_TOTAL_ASKP_RSQN": "0",
            "OVTM_TOTAL_BIDP_RSQN": "0",
            "ANTC_CNPR": str(expected),
            "ANTC_CNQN": str(rng.randint(100, 5_000) if auction else 0),
            "ANTC_VOL": str(stock.volume if auction else 0),
            "ANTC_CNTG_VRSS": str(expected_change),
            "ANTC_CNTG_VRSS_SIGN": _sign(expected_change),
            "ANTC_CNTG_PRDY_CTRT": f"{Decimal(expected_change * 100) / stock.previous_close:.2f}",
            "ACML_VOL": str(stock.volume),
            "TOTAL_ASKP_RSQN_ICDC": str(rng.randint(-5_000, 5_000)),
            "TOTAL_BIDP_RSQN_ICDC": str(rng.randint(-5_000, 5_000)),
            "OVTM_TOTAL_ASKP_ICDC": "0",
            "OVTM_TOTAL_BIDP_ICDC": "0",
            "STCK_DEAL_CLS_CODE": "0",
            "MARKET_CLS_CODE": session.value,
            "ANTC_EXCH_CLS_CODE": "1",
        }
        for level in range(10):
            values[f"ASKP{level + 1}"] = str(asks[level])
            values[f"BIDP{level + 1}"] = str(bids[level])
            values[f"ASKP_RSQN{level + 1}"] = str(ask_qty[level])
            values[f"BIDP_RSQN{level + 1}"] = str(bid_qty[level])
        for prefix in ("MID", "KMID", "NMID"):
            price_name = "MID_PRC" if prefix == "MID" else f"{prefix}_PRC"
            total_name = "MIDP_TOTAL_RSQN" if prefix == "MID" else f"{prefix}_TOTAL_RSQN"
            code_name = "MIDP_CLS_CODE" if prefix == "MID" else f"{prefix}_CLS_CODE"
            values[price_name] = mid_text
            values[total_name] = str(rng.randint(0, 50))
            values[code_name] = "1" if rng.random() < 0.5 else "2"
        return values

    def order_notices(self, hts_id: str, symbol: str, at: datetime) -> list[dict[str, str]]:
        """A simulated order's H0STCNI0 notices: its acceptance, then its fill.

        The acceptance (CNTG_YN "1") carries the order quantity and price; the fill (CNTG_YN "2")
        the filled quantity at the current price (PROTOCOL.md §8).
        """
        rng, stock = self._rng, self._stock(symbol)
        self._orders += 1
        order_no = f"{self._orders:010d}"
        qty = rng.randint(1, 100)
        side = "02" if rng.random() < 0.5 else "01"  # 02 buy, 01 sell
        known = listing(symbol)

        def notice(filled: bool) -> dict[str, str]:
            return {
                "CUST_ID": hts_id,
                "ACNT_NO": "5012345601",
                "ODER_NO": order_no,
                "OODER_NO": "0000000000",
                "SELN_BYOV_CLS": side,
                "RCTF_CLS": "0",
                "ODER_KIND": "00",
                "ODER_COND": "0",
                "STCK_SHRN_ISCD": symbol,
                "CNTG_QTY": str(qty),
                "CNTG_UNPR": str(stock.price),
                "STCK_CNTG_HOUR": at.strftime("%H%M%S"),
                "RFUS_YN": "0",
                "CNTG_YN": "2" if filled else "1",
                "ACPT_YN": "2",
                "BRNC_NO": "06010",
                "ODER_QTY": str(qty),
                "ACNT_NAME": "모의계좌",
                "ORD_COND_PRC": "",
                "ORD_EXG_GB": "1",
                "POPUP_YN": "N",
                "FILLER": "",
                "CRDT_CLS": "",
                "CRDT_LOAN_DATE": "",
                "CNTG_ISNM40": known.name if known is not None else symbol,
                "ODER_PRC": str(stock.price),
            }

        return [notice(filled=False), notice(filled=True)]

    def overseas_trade(self, key: str, local: datetime, korea: datetime, mtyp: str = "1") -> dict[str, str]:
        """One HDFSCNT0 trade for `key` (e.g. ``DNASAAPL``) at `local` (exchange) / `korea` time."""
        rng = self._rng
        stock = self._overseas_stock(key)
        stock.price = max(100, stock.price + rng.randint(-30, 30) * 100)
        qty = rng.randint(1, 300)
        if not stock.open:
            stock.open = stock.high = stock.low = stock.price
        stock.high, stock.low = max(stock.high, stock.price), min(stock.low, stock.price)
        stock.volume += qty
        stock.amount += qty * stock.price // _CENTS
        diff = stock.price - stock.previous_close
        rate = Decimal(diff * 100) / stock.previous_close
        return {
            "RSYM": key,
            "SYMB": key[4:],
            "ZDIV": "4",
            "TYMD": local.strftime("%Y%m%d"),
            "XYMD": local.strftime("%Y%m%d"),
            "XHMS": local.strftime("%H%M%S"),
            "KYMD": korea.strftime("%Y%m%d"),
            "KHMS": korea.strftime("%H%M%S"),
            "OPEN": _dollars(stock.open),
            "HIGH": _dollars(stock.high),
            "LOW": _dollars(stock.low),
            "LAST": _dollars(stock.price),
            "SIGN": _sign(diff),
            "DIFF": _dollars(abs(diff)),
            "RATE": f"{rate:+.2f}",
            "PBID": _dollars(stock.price - 100),
            "PASK": _dollars(stock.price + 100),
            "VBID": str(rng.randint(1, 900)),
            "VASK": str(rng.randint(1, 900)),
            "EVOL": str(qty),
            "TVOL": str(stock.volume),
            "TAMT": str(stock.amount),
            "BIVL": str(stock.volume // 2),
            "ASVL": str(stock.volume - stock.volume // 2),
            "STRN": "100.00",
            "MTYP": mtyp,
        }

    def overseas_book(self, key: str, local: datetime, korea: datetime) -> dict[str, str]:
        """The book of `key` (HDFSASP0, 10 levels; HDFSASP1 reads level 1): one cent per level."""
        rng = self._rng
        stock = self._overseas_stock(key)
        cent = _CENTS // 100
        bids = [stock.price - cent * (i + 1) for i in range(10)]
        asks = [stock.price + cent * (i + 1) for i in range(10)]
        bid_qty = [rng.randint(1, 2_000) for _ in range(10)]
        ask_qty = [rng.randint(1, 2_000) for _ in range(10)]
        values = {
            "RSYM": key,
            "SYMB": key[4:],
            "ZDIV": "4",
            "XYMD": local.strftime("%Y%m%d"),
            "XHMS": local.strftime("%H%M%S"),
            "KYMD": korea.strftime("%Y%m%d"),
            "KHMS": korea.strftime("%H%M%S"),
            "BVOL": str(sum(bid_qty)),
            "AVOL": str(sum(ask_qty)),
            "BDVL": str(rng.randint(-500, 500)),
            "ADVL": str(rng.randint(-500, 500)),
        }
        for level in range(10):
            n = level + 1
            values[f"PBID{n}"] = _dollars(bids[level])
            values[f"PASK{n}"] = _dollars(asks[level])
            values[f"VBID{n}"] = str(bid_qty[level])
            values[f"VASK{n}"] = str(ask_qty[level])
            values[f"DBID{n}"] = str(rng.randint(-100, 100))
            values[f"DASK{n}"] = str(rng.randint(-100, 100))
        return values
