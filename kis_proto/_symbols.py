"""Well-known listings: names and reference prices, for the simulator and for readable output.

A small table, not a master file: the most traded KOSPI and KOSDAQ names, two ETFs, and large US
stocks under KIS's overseas keys (``D`` + exchange + symbol, e.g. ``DNASAAPL``). Reference prices
are levels of 2026 where a public source had them (a real 2026-07-24 H0STCNT0 frame has 005930 at
250,500 won; news of early 2026 has 000660 at about 949,000 won) and of late 2025 otherwise; they
seed the simulator's market so that a demo looks like the real one, not quotes to trade on.
`kis-ws sim --price 005930=75000` overrides any of them. KIS's own master files
(koreainvestment/open-trading-api ``stocks_info``) list every symbol.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from ._fields import Market, TRKind
from .records import RECORD_CLASSES, TRS

__all__ = ["LISTINGS", "Listing", "key_problem", "listing"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """One listed instrument: its KIS key, names, market and a reference price."""

    #: The key KIS subscribes it by: a 6-digit code, or ``D`` + exchange + symbol overseas.
    key: str
    #: The Korean name (the English one for US stocks).
    name: str
    #: ``KOSPI``, ``KOSDAQ``, ``NASDAQ``, ``NYSE`` or ``AMEX``.
    market: str
    #: A recent level: whole won at home, dollars overseas.
    price: Decimal

    @property
    def overseas(self) -> bool:
        """True for the overseas (``D``/``R``-prefixed) keys."""
        return self.market in ("NASDAQ", "NYSE", "AMEX")


def _rows(market: str, rows: str) -> dict[str, Listing]:
    out: dict[str, Listing] = {}
    for line in rows.strip().splitlines():
        key, price, name = line.split(None, 2)
        out[key] = Listing(key=key, name=name.strip(), market=market, price=Decimal(price))
    return out


#: The table, by KIS key.
LISTINGS: Final[dict[str, Listing]] = {
    **_rows(
        "KOSPI",
        """
        005930 250500 삼성전자
        000660 949000 SK하이닉스
        373220 400000 LG에너지솔루션
        207940 1100000 삼성바이오로직스
        005380 250000 현대차
        000270 110000 기아
        068270 180000 셀트리온
        035420 250000 NAVER
        035720 60000 카카오
        005490 330000 POSCO홀딩스
        105560 115000 KB금융
        055550 70000 신한지주
        086790 90000 하나금융지주
        012450 900000 한화에어로스페이스
        329180 550000 HD현대중공업
        034020 75000 두산에너빌리티
        051910 330000 LG화학
        006400 300000 삼성SDI
        028260 200000 삼성물산
        032830 150000 삼성생명
        000810 450000 삼성화재
        009150 200000 삼성전기
        066570 90000 LG전자
        003550 80000 LG
        015760 40000 한국전력
        017670 52000 SK텔레콤
        030200 55000 KT
        402340 300000 SK스퀘어
        010130 1000000 고려아연
        011200 20000 HMM
        069500 60000 KODEX 200
        122630 40000 KODEX 레버리지
        """,
    ),
    **_rows(
        "KOSDAQ",
        """
        247540 130000 에코프로비엠
        086520 80000 에코프로
        196170 450000 알테오젠
        028300 50000 HLB
        263750 35000 펄어비스
        293490 17000 카카오게임즈
        214150 50000 클래시스
        145020 300000 휴젤
        041510 100000 에스엠
        035900 70000 JYP Ent.
        357780 250000 솔브레인
        277810 350000 레인보우로보틱스
        """,
    ),
    **_rows(
        "NASDAQ",
        """
        DNASAAPL 270.00 Apple
        DNASMSFT 500.00 Microsoft
        DNASNVDA 190.00 NVIDIA
        DNASAMZN 230.00 Amazon
        DNASGOOGL 300.00 Alphabet
        DNASMETA 650.00 Meta Platforms
        DNASTSLA 430.00 Tesla
        DNASAVGO 350.00 Broadcom
        DNASNFLX 110.00 Netflix
        DNASQQQ 600.00 Invesco QQQ
        """,
    ),
    **_rows(
        "NYSE",
        """
        DNYSJPM 300.00 JPMorgan Chase
        DNYSKO 70.00 Coca-Cola
        DNYSBRK.B 500.00 Berkshire Hathaway B
        """,
    ),
    **_rows(
        "AMEX",
        """
        DAMSSPY 670.00 SPDR S&P 500
        """,
    ),
}


def listing(key: str) -> Listing | None:
    """The listing of a KIS key (``005930``, ``DNASAAPL``; ``R``-prefixed keys find their ``D`` twin)."""
    found = LISTINGS.get(key)
    if found is None and key[:1] == "R" and len(key) > 4:
        # Real-time US keys: RBAQ (Nasdaq), RBAY (NYSE), RBAA (Amex) + symbol.
        exchange = {"BAQ": "NAS", "BAY": "NYS", "BAA": "AMS"}.get(key[1:4])
        if exchange is not None:
            found = LISTINGS.get(f"D{exchange}{key[4:]}")
    return found


# Overseas exchange codes in KIS keys: D (delayed) + NAS/NYS/AMS/TSE/HKS/SHS/SZS/HSX/HNX + symbol, or
# R (US real-time, day trading) + BAQ/BAY/BAA + symbol (PROTOCOL.md §3).
_DELAYED_EXCHANGES = frozenset({"NAS", "NYS", "AMS", "TSE", "HKS", "SHS", "SZS", "HSX", "HNX"})
_REALTIME_EXCHANGES = frozenset({"BAQ", "BAY", "BAA"})
_SIX_CHAR_MARKETS = frozenset({Market.DOMESTIC_STOCK, Market.DOMESTIC_ELW, Market.DOMESTIC_ETF})


def key_problem(tr_id: str, key: str) -> str | None:
    """What is wrong with subscribing `tr_id` for `key`, with a hint; None when it looks right.

    Checks what can be known before asking KIS: the TR exists, and the key has the shape its
    market uses (6-character codes for stocks, ETFs and ELWs; 4-digit index codes; ``D``/``R`` +
    exchange + symbol overseas). Futures, options and bond keys, and the HTS ID of notices, are
    only checked for being non-empty. A key of the right shape may still be unknown to KIS.
    """
    cls = RECORD_CLASSES.get(tr_id)
    if cls is None:
        return f"unknown TR id {tr_id!r}: see `kis_proto.layouts.TRS` or the Fields reference for the 60 real-time TRs"
    spec = TRS[cls.__name__]
    if not key:
        return f"{tr_id} needs a key: a symbol, or your HTS ID for execution notices"
    if spec.kind is TRKind.NOTICE:
        return None
    if tr_id.startswith("H0UP"):
        if not (len(key) == 4 and key.isdigit()):
            return f"{tr_id} takes a 4-digit index code such as 0001 (KOSPI), not {key!r}"
        return None
    if spec.market in _SIX_CHAR_MARKETS:
        if len(key) == 6 and key.isascii() and key.isalnum() and key == key.upper():
            return None
        hint = ""
        if key.isdigit() and len(key) < 6:
            padded = key.zfill(6)
            known = LISTINGS.get(padded)
            hint = f"; did you mean {padded}" + (f" ({known.name})?" if known else "?")
        elif (found := _by_name(key)) is not None:
            hint = f"; did you mean {found.key} ({found.name})?"
        elif overseas := [k for k, v in LISTINGS.items() if v.overseas and k[4:] == key.upper()]:
            hint = f"; for the US stock, did you mean HDFSCNT0:{overseas[0]}?"
        return f"{tr_id} takes a 6-character KRX code such as 005930, not {key!r}{hint}"
    if spec.market is Market.OVERSEAS_STOCK:
        prefix, exchange, symbol = key[:1], key[1:4], key[4:]
        if symbol and (
            (prefix == "D" and exchange in _DELAYED_EXCHANGES)
            or (prefix == "R" and exchange in _REALTIME_EXCHANGES)
        ):
            return None
        hint = ""
        matches = [k for k, v in LISTINGS.items() if v.overseas and k[4:] == key.upper()]
        if matches:
            hint = f"; did you mean {matches[0]}?"
        return (
            f"{tr_id} takes D + exchange + symbol (DNASAAPL, DNYSKO; R + BAQ/BAY/BAA for US real-time), "
            f"not {key!r}{hint}"
        )
    return None


def _by_name(name: str) -> Listing | None:
    """The listing whose Korean or English name is `name` (case-insensitive), if any."""
    folded = name.casefold()
    return next((v for v in LISTINGS.values() if v.name.casefold() == folded), None)
