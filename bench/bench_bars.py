"""What `kis_proto.bars` costs per trade, against decoding the same trades and reading their price and volume.

    python bench/bench_bars.py [--quick]

The trades are the simulator's market model's (20 symbols, H0STCNT0 in today's layout, frames of
one to four records as the simulator sends them, one second of the KST clock per round of
frames). The baseline decodes every frame and reads each record's typed price and volume, as any
consumer does; each aggregator row decodes the same frames and hands every record to a
`BarAggregator` with its receive time. Rows are interleaved over several rounds and the best round
of each is kept, so a noisy neighbour shifts all rows alike; compare the ratios, not the rates.
The target of issue 20: the aggregator adds at most 25 % to the baseline.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, cast

from kis_sim import MarketModel, layout_row

from kis_proto import KST, Record, Subscribed, bars, decode_message, records
from kis_proto.layouts import TRS

if TYPE_CHECKING:
    from collections.abc import Callable

SYMBOLS = [f"{i:06d}" for i in range(5930, 5950)]


def frames(seconds: int) -> list[tuple[float, str]]:
    """(receive time, frame) of `seconds` of trading: each second, a frame per symbol."""
    rng = random.Random(20)
    market = MarketModel(rng)
    layout = TRS["H0STCNT0"].layout()
    start = datetime(2026, 9, 14, 10, 0, tzinfo=KST).timestamp()
    out = []
    for second in range(seconds):
        now = start + second
        at = datetime.fromtimestamp(now, KST)
        for symbol in SYMBOLS:
            rows = [layout_row(layout, market.trade(symbol, at)) for _ in range(rng.randint(1, 4))]
            out.append((now + 0.05, f"0|H0STCNT0|{len(rows):03d}|" + "^".join("^".join(r) for r in rows)))
    return out


def baseline(stream: list[tuple[float, str]]) -> int:
    """Decode, and read each trade's typed price and volume."""
    total = 0
    for _, text in stream:
        for rec in cast("list[records.H0STCNT0]", decode_message(text)):
            total += rec.price + rec.volume
    return total


def aggregate(**options: object) -> Callable[[list[tuple[float, str]]], int]:
    def run(stream: list[tuple[float, str]]) -> int:
        agg = bars.BarAggregator(**options)  # type: ignore[arg-type]
        start = stream[0][0] - 1
        for symbol in SYMBOLS:
            agg.add(Subscribed(tr_id="H0STCNT0", tr_key=symbol, encrypted=False), start)
        made = 0
        add = agg.add
        for now, text in stream:
            for rec in decode_message(text):
                made += len(add(cast("Record", rec), now))
        return made + len(agg.flush())

    return run


ROWS: list[tuple[str, Callable[[list[tuple[float, str]]], int]]] = [
    ("decode + .price, .volume (baseline)", baseline),
    ("decode + BarAggregator(every=60)", aggregate(every=60)),
    ("decode + BarAggregator(every=1)", aggregate(every=1)),
    ("decode + BarAggregator(ticks=100)", aggregate(ticks=100)),
    ("decode + BarAggregator(volume=50_000)", aggregate(volume=50_000)),
]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds and trades (a smoke run)")
    args = parser.parse_args()
    seconds, rounds = (30, 2) if args.quick else (300, 7)
    stream = frames(seconds)
    trades = sum(len(decode_message(text)) for _, text in stream)
    best = dict.fromkeys((name for name, _ in ROWS), float("inf"))
    for _ in range(rounds):
        for name, fn in ROWS:
            began = time.perf_counter()
            fn(stream)
            best[name] = min(best[name], time.perf_counter() - began)
    base = best[ROWS[0][0]]
    print(
        f"python {sys.version.split()[0]}, {trades:,} H0STCNT0 trades of {len(SYMBOLS)} symbols over "
        f"{seconds} s, {len(stream):,} frames; best of {rounds} rounds"
    )
    print(f"\n  {'row':<40} {'trades/s':>10} {'µs/trade':>9} {'x baseline':>11} {'added':>7}")
    for name, _ in ROWS:
        rate = trades / best[name]
        added = best[name] / base - 1
        print(
            f"  {name:<40} {rate:>10,.0f} {best[name] / trades * 1e6:>9.2f} {best[name] / base:>11.2f} "
            f"{added:>+7.0%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
