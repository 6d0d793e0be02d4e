"""Records per second of `decode_message` on H0STCNT0 frames (today's 47 fields), against baselines run in the same process; and the memory of a kept record.

    python bench/bench_codec.py [--quick]

Baselines: the bare `str.split` floor (split the frame, split the payload: no records at all);
the same split with `int()` of the price and the volume of every record (the floor for typed
reads, and the ratio the typed rows are judged by); and a naive parser that builds an untyped
dict per record, as most KIS clients do. Rows are interleaved over several rounds and the best
round of each is kept, so a noisy neighbour shifts all rows alike; compare the ratios, not the
absolute rates.

Memory: the bytes one kept record costs (tracemalloc, 100k records kept, each from its own frame
text as off the wire), unread, after reading its price and volume, after `to_dict()`, and for
4-record frames when only one record of each frame is kept (the records of a frame share one
split, so one kept record keeps the frame's strings).
"""

from __future__ import annotations

import argparse
import gc
import sys
import timeit
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING

from kis_proto import Record, decode_message, records

if TYPE_CHECKING:
    from collections.abc import Callable

FRAME = Path(__file__).resolve().parent.parent / "tests" / "data" / "frames.txt"
NAMES = [f.name for f in records.H0STCNT0.columns]
WIDTH = len(NAMES)


def h0stcnt0_frame(count: int) -> str:
    """An H0STCNT0 frame of `count` copies of the 2023 capture's record in today's layout.

    The capture has 46 fields; today's records carry a 47th, the session (regular: "2").
    """
    for line in FRAME.read_text(encoding="utf-8").splitlines():
        if line.startswith("0|H0STCNT0|"):
            payload = line.split("|", 3)[3] + "^2"
            return f"0|H0STCNT0|{count:03d}|" + "^".join([payload] * count)
    raise SystemExit("no H0STCNT0 sample in tests/data/frames.txt")


def split_floor(text: str) -> object:
    return text.split("|", 3)[3].split("^")


def split_floor_read(text: str) -> int:
    """The floor for typed reads: the split, then int() of the two fields read, record by record."""
    fields = text.split("|", 3)[3].split("^")
    total = 0
    for start in range(0, len(fields), WIDTH):
        total += int(fields[start + 2]) + int(fields[start + 12])
    return total


def naive_dicts(text: str) -> list[dict[str, str]]:
    _, _, count, payload = text.split("|", 3)
    fields = payload.split("^")
    width = len(fields) // int(count)
    return [dict(zip(NAMES, fields[i : i + width], strict=False)) for i in range(0, len(fields), width)]


def naive_dicts_read(text: str) -> int:
    total = 0
    for rec in naive_dicts(text):
        total += int(rec["STCK_PRPR"]) + int(rec["CNTG_VOL"])
    return total


def decode_only(text: str) -> object:
    return decode_message(text)


# The frames hold H0STCNT0 records only, so the readers skip the isinstance a general consumer
# would do (and the typing.cast a checked one would call): the rows measure the codec, not the
# consumer's dispatch.
def decode_read(text: str) -> int:
    total = 0
    events: list[records.H0STCNT0] = decode_message(text)  # type: ignore[assignment]
    for rec in events:
        total += rec.price + rec.volume
    return total


def decode_read_mapping(text: str) -> int:
    total = 0
    events: list[records.H0STCNT0] = decode_message(text)  # type: ignore[assignment]
    for rec in events:
        total += rec["price"] + rec["volume"]  # type: ignore[operator, assignment]
    return total


def decode_to_dict(text: str) -> int:
    """Every field typed, through the layout's converter."""
    total = 0
    events: list[Record] = decode_message(text)  # type: ignore[assignment]
    for rec in events:
        total += len(rec.to_dict())
    return total


def decode_each_field(text: str) -> int:
    """Every field typed, one read per column and friendly name (what to_dict() did before)."""
    total = 0
    events: list[Record] = decode_message(text)  # type: ignore[assignment]
    for rec in events:
        total += len({key: rec[key] for key in rec})
    return total


SPLIT_FLOOR = "str.split floor (baseline)"
INT_FLOOR = "str.split + int(price), int(volume)"
ROWS: list[tuple[str, Callable[[str], object]]] = [
    (SPLIT_FLOOR, split_floor),
    (INT_FLOOR, split_floor_read),
    ("naive dict per record (baseline)", naive_dicts),
    ("naive dict + int(price), int(volume)", naive_dicts_read),
    ("decode_message", decode_only),
    ("decode_message + .price, .volume", decode_read),
    ('decode_message + ["price"], ["volume"]', decode_read_mapping),
    ("decode_message + to_dict() (every field typed)", decode_to_dict),
    ("decode_message + rec[k] for every key", decode_each_field),
]


def measure(count: int, rounds: int, number: int) -> dict[str, float]:
    """Best records/s of each row over `rounds` interleaved rounds."""
    text = h0stcnt0_frame(count)
    best = dict.fromkeys((name for name, _ in ROWS), 0.0)
    for _ in range(rounds):
        for name, fn in ROWS:
            seconds = timeit.timeit(lambda fn=fn: fn(text), number=number)  # type: ignore[misc]
            best[name] = max(best[name], count * number / seconds)
    return best


def kept_bytes(count: int, n: int, read: Callable[[Record], object] | None, keep_every: int = 1) -> float:
    """Bytes per kept record: `n` records decoded from their own frame texts, every `keep_every`-th
    kept (after `read`), the list that keeps them not counted."""
    base = h0stcnt0_frame(count)
    # Distinct texts, as each message off the wire is its own string (the last digit varies).
    texts = [base[:-1] + str(i % 10) for i in range(n // count)]
    gc.collect()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    kept: list[Record] = []
    for text in texts:
        for i, rec in enumerate(decode_message(text)):
            if isinstance(rec, Record) and i % keep_every == 0:
                if read is not None:
                    read(rec)
                kept.append(rec)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - start - sys.getsizeof(kept)
    tracemalloc.stop()
    return used / len(kept)


def price_volume(rec: Record) -> object:
    return rec["price"], rec["volume"]


def memory(n: int) -> list[tuple[str, float]]:
    return [
        ("1-record frames, unread", kept_bytes(1, n, None)),
        ("1-record frames, .price and .volume read", kept_bytes(1, n, price_volume)),
        ("1-record frames, to_dict()", kept_bytes(1, n, Record.to_dict)),
        ("4-record frames, every record kept", kept_bytes(4, n, price_volume)),
        ("4-record frames, one record of each kept", kept_bytes(4, 4 * n, price_volume, keep_every=4)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args()
    rounds, number, kept = (2, 2000, 10_000) if args.quick else (7, 20000, 100_000)
    print(
        f"python {sys.version.split()[0]}, H0STCNT0 frames ({WIDTH} fields per record), best of {rounds} rounds"
    )
    for count in (1, 4):
        best = measure(count, rounds, number)
        split, typed = best[SPLIT_FLOOR], best[INT_FLOOR]
        print(f"\n{count}-record frames{'':<33} records/s  x split  x int() floor")
        for name, _ in ROWS:
            print(
                f"  {name:<48} {best[name]:>10,.0f}   {best[name] / split:5.2f}   {best[name] / typed:5.2f}"
            )
    print(f"\nmemory per kept record ({kept:,} kept, tracemalloc)")
    for name, size in memory(kept):
        print(f"  {name:<48} {size:>8,.0f} B")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
