"""Recordings as data: Parquet export speed and memory, and a backtest's read, against replaying JSON lines.

    python bench/bench_data.py [--quick]

Generates its own recordings (in a temporary folder): `kis_sim.MarketModel` rows laid out with
`layout_row`, cycled to size, as a busy session would record them: KRX trades (a third of their
frames carry 2 to 5 records, as KIS sends under load), books, US trades, and encrypted execution
notices with their acks. Two sizes, to show that the export's memory does not grow with the file.

* Export: records/s and peak RSS of `kis_data.parquet.export`, each size in a fresh interpreter that
  reports its own `resource.getrusage(RUSAGE_SELF).ru_maxrss` (so one run's peak cannot hide
  another's), next to the RSS of an interpreter that only imported kis_data and pyarrow. The
  baseline is replaying the same recording with `kis_proto.recording.replay_lines` (every record decoded),
  in this process. pyarrow imports pandas, when it is installed, the first time it converts a
  Python value (about 0.5 s, once per process): that happens before the clock starts.
* Backtest read, in this process: the price and volume of every H0STCNT0 record, (a) replayed
  from the JSON lines with `kis_proto.recording.replay_lines` and `rec.price, rec.volume` (the baseline),
  (b) read from the Parquet export into Python lists, (c) read from it as Arrow columns and
  summed there (price × volume). Ratios are against (a), run in the same process.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from kis_sim import MarketModel, layout_row

from kis_proto import KST, Record, records
from kis_proto.crypto import encrypt_payload
from kis_proto.layouts import TRS
from kis_proto.recording import RECORDING_HEADER, recording_line

KEY, IV = "abcdefghijklmnopqrstuvwxyzabcdef", "0123456789abcdef"
SYMBOLS = ["005930", "000660", "035420", "051910", "006400", "005380", "000270", "068270", "105560", "055550"]
US = ["DNASAAPL", "DNASMSFT", "DNASNVDA"]


def _frame(tr_id: str, rows: list[list[str]], *, encrypted: bool = False) -> str:
    payload = "^".join("^".join(row) for row in rows)
    if encrypted:
        return f"1|{tr_id}|{len(rows):03d}|{encrypt_payload(payload, KEY, IV)}"
    return f"0|{tr_id}|{len(rows):03d}|{payload}"


def generate(path: Path, records_wanted: int, seed: int = 1) -> int:
    """Write a recording of at least `records_wanted` records; returns how many it holds."""
    rng = random.Random(seed)
    model = MarketModel(rng)
    at = datetime(2026, 9, 15, 9, 0, tzinfo=KST)
    trade, book = TRS["H0STCNT0"].layout(), TRS["H0STASP0"].layout()
    us_trade, notice = TRS["HDFSCNT0"].layout(), TRS["H0STCNI0"].layout()
    trades, books, us = [], [], []
    for i in range(3000):
        at += timedelta(milliseconds=250)
        symbol = SYMBOLS[i % len(SYMBOLS)]
        trades.append(layout_row(trade, model.trade(symbol, at)))
        if i % 2 == 0:
            books.append(layout_row(book, model.book(symbol, at)))
        if i % 10 == 0:
            us.append(
                layout_row(us_trade, model.overseas_trade(US[i % len(US)], at - timedelta(hours=13), at))
            )
    notices = [layout_row(notice, n) for n in model.order_notices("myhtsid", "005930", at)]
    ack = json.dumps(
        {
            "header": {"tr_id": "H0STCNI0", "tr_key": "myhtsid", "encrypt": "Y"},
            "body": {
                "rt_cd": "0",
                "msg_cd": "OPSP0000",
                "msg1": "SUBSCRIBE SUCCESS",
                "output": {"iv": IV, "key": KEY},
            },
        }
    )
    written, t, i = 0, 1_789_000_000.0, 0
    with path.open("w", encoding="utf-8") as out:
        out.write(RECORDING_HEADER + "\n")
        out.write(recording_line(t, ack) + "\n")
        while written < records_wanted:
            i += 1
            t += 0.0004
            kind = rng.random()
            if kind < 0.62:
                count = rng.choice((2, 3, 5)) if rng.random() < 0.33 else 1
                rows = [trades[(i + k) % len(trades)] for k in range(count)]
                message = _frame("H0STCNT0", rows)
            elif kind < 0.93:
                count = 1
                message = _frame("H0STASP0", [books[i % len(books)]])
            elif kind < 0.9995:
                count = 1
                message = _frame("HDFSCNT0", [us[i % len(us)]])
            else:
                count = 1
                message = _frame("H0STCNI0", [notices[i % 2]], encrypted=True)
            out.write(recording_line(t, message) + "\n")
            written += count
            if i % 50_000 == 0:
                out.write(
                    recording_line(t, '{"header":{"tr_id":"PINGPONG","datetime":"20260915093000"}}') + "\n"
                )
    return written


CHILD = """
import json, resource, sys, time
import kis_data.parquet, pyarrow
pyarrow.array([0.5])  # pyarrow's own lazy imports (pandas, when installed) before the clock starts
if sys.argv[1] == "export":
    started = time.perf_counter()
    summary = kis_data.parquet.export(sys.argv[2], sys.argv[3])
    seconds = time.perf_counter() - started
    records = summary.records
else:
    seconds, records = 0.0, 0
print(json.dumps({"seconds": seconds, "records": records, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def in_child(*args: str) -> dict[str, float]:
    """Run `CHILD` in a fresh interpreter; its own timing and peak RSS."""
    result = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)  # noqa: S603
    report: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def replay_read(path: Path) -> tuple[int, float]:
    """The baseline: price and volume of every H0STCNT0 record, replayed from the JSON lines."""
    from kis_proto.recording import replay_lines

    started = time.perf_counter()
    total = count = 0
    with path.open(encoding="utf-8") as lines:
        for _, event in replay_lines(lines):
            if isinstance(event, records.H0STCNT0):
                total += event.price * event.volume
                count += 1
    seconds = time.perf_counter() - started
    assert count
    assert total
    return count, seconds


def parquet_lists(path: Path) -> tuple[int, float, int]:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    started = time.perf_counter()
    table = pq.read_table(path, columns=["STCK_PRPR", "CNTG_VOL"])
    prices, volumes = table.column("STCK_PRPR").to_pylist(), table.column("CNTG_VOL").to_pylist()
    total = sum(p * v for p, v in zip(prices, volumes, strict=True))
    return len(prices), time.perf_counter() - started, total


def parquet_arrow(path: Path) -> tuple[int, float, int]:
    import pyarrow.compute as pc  # type: ignore[import-untyped]
    import pyarrow.parquet as pq

    started = time.perf_counter()
    table = pq.read_table(path, columns=["STCK_PRPR", "CNTG_VOL"])
    total = pc.sum(pc.multiply(table.column("STCK_PRPR"), table.column("CNTG_VOL"))).as_py()
    return table.num_rows, time.perf_counter() - started, total


def replay_all(path: Path) -> tuple[int, float]:
    """The export's baseline: every record of the recording decoded by replaying it."""
    from kis_proto.recording import replay_lines

    started = time.perf_counter()
    with path.open(encoding="utf-8") as lines:
        count = sum(isinstance(event, Record) for _, event in replay_lines(lines))
    return count, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller recordings (a smoke run)")
    args = parser.parse_args()
    sizes = (20_000, 80_000) if args.quick else (250_000, 1_000_000)
    import pyarrow

    with tempfile.TemporaryDirectory(prefix="bench_data-") as folder:
        base = Path(folder)
        idle = in_child("idle")
        print(
            f"python {sys.version.split()[0]}, pyarrow {pyarrow.__version__}; an interpreter that "
            f"imported kis_data and pyarrow: peak RSS {idle['maxrss_kb'] / 1024:.0f} MB"
        )
        recordings = []
        for size in sizes:
            recording = base / f"r{size}.kisrec"
            generate(recording, size)
            recordings.append(recording)
        small = recordings[0]
        count, seconds = min((replay_all(small) for _ in range(2)), key=lambda r: r[1])
        replay_rate = count / seconds
        print()
        print(f"{'export':48s} {'records':>10s} {'MB':>5s} {'rec/s':>9s} {'vs replay':>9s} {'peak RSS':>9s}")
        print(
            f"{'replay_lines, every record (baseline, here)':48s} {count:>10,d} {small.stat().st_size / 1e6:5.0f} "
            f"{replay_rate:9,.0f} {1.0:8.1f}x {'-':>9s}"
        )
        for recording in recordings:
            report = in_child("export", str(recording), str(base / recording.stem))
            rate = report["records"] / report["seconds"]
            name = f"kis_data.parquet.export({recording.name}) (own process)"
            print(
                f"{name:48s} {int(report['records']):>10,d} {recording.stat().st_size / 1e6:5.0f} {rate:9,.0f} "
                f"{rate / replay_rate:8.1f}x {report['maxrss_kb'] / 1024:6.0f} MB"
            )
        trades = base / small.stem / "H0STCNT0.parquet"
        print()
        print(f"backtest read: price × volume of every H0STCNT0 record of {small.name}, best of 3")
        replay = min((replay_read(small) for _ in range(3)), key=lambda r: r[1])
        lists = min((parquet_lists(trades) for _ in range(3)), key=lambda r: r[1])
        arrow = min((parquet_arrow(trades) for _ in range(3)), key=lambda r: r[1])
        assert replay[0] == lists[0] == arrow[0]
        assert lists[2] == arrow[2]
        baseline = replay[0] / replay[1]
        rows = [
            ("replay_lines + rec.price, rec.volume (baseline)", replay[0], replay[1]),
            ("Parquet → Python lists, sum in Python", lists[0], lists[1]),
            ("Parquet → Arrow columns, sum in Arrow", arrow[0], arrow[1]),
        ]
        for name, rows_read, took in rows:
            rate = rows_read / took
            print(f"  {name:50s} {rate:14,.0f} rec/s {rate / baseline:7.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
