"""Records per second of `decode_message` on H0STCNT0 frames (today's 47 fields), against baselines run in the same process.

    python bench/bench_codec.py [--quick]

Baselines: the bare `str.split` floor (split the frame, split the payload: no records at all) and
a naive parser that builds a dict per record, as most KIS clients do. Rows are interleaved over
several rounds and the best round of each is kept, so a noisy neighbour shifts all rows alike;
compare the ratios, not the absolute rates.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path
from typing import TYPE_CHECKING, cast

from kis_proto import Record, decode_message, records

if TYPE_CHECKING:
    from collections.abc import Callable

FRAME = Path(__file__).resolve().parent.parent / "tests" / "data" / "frames.txt"
NAMES = [f.name for f in records.H0STCNT0.columns]


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
# would do: the rows measure the codec, not the consumer's dispatch.
def decode_read(text: str) -> int:
    total = 0
    for rec in cast("list[records.H0STCNT0]", decode_message(text)):
        total += rec.price + rec.volume
    return total


def decode_read_mapping(text: str) -> int:
    total = 0
    for rec in cast("list[records.H0STCNT0]", decode_message(text)):
        total += rec["price"] + rec["volume"]  # type: ignore[operator, assignment]
    return total


def decode_all_fields(text: str) -> int:
    """What eager conversion would cost: every column converted (the alternative to lazy reads)."""
    total = 0
    for rec in decode_message(text):
        if isinstance(rec, Record):
            total += len(rec.to_dict())
    return total


ROWS: list[tuple[str, Callable[[str], object]]] = [
    ("str.split floor (baseline)", split_floor),
    ("naive dict per record (baseline)", naive_dicts),
    ("naive dict + int(price), int(volume)", naive_dicts_read),
    ("decode_message", decode_only),
    ("decode_message + .price, .volume", decode_read),
    ('decode_message + ["price"], ["volume"]', decode_read_mapping),
    ("decode_message + every field (eager cost)", decode_all_fields),
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args()
    rounds, number = (2, 2000) if args.quick else (7, 20000)
    width = len(split_floor(h0stcnt0_frame(1)))  # type: ignore[arg-type]
    print(
        f"python {sys.version.split()[0]}, H0STCNT0 frames ({width} fields per record), best of {rounds} rounds"
    )
    for count in (1, 4):
        best = measure(count, rounds, number)
        floor = best["str.split floor (baseline)"]
        print(f"\n{count}-record frames        records/s   x split floor")
        for name, _ in ROWS:
            print(f"  {name:<42} {best[name]:>10,.0f}   {best[name] / floor:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
