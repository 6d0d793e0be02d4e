"""``kis-ws record --rotate`` (issue 21): a file per KST day or interval, each one replayable alone."""

from __future__ import annotations

import argparse
import json
import stat
from datetime import datetime
from typing import TYPE_CHECKING

import pytest
from kis_data import read_recording
from kis_ws._rotate import Recording, rotation

from kis_proto import KST, Record, records

from .helpers import VECTOR_IV, VECTOR_KEY, sample

if TYPE_CHECKING:
    from pathlib import Path

ACK = json.dumps(
    {
        "header": {"tr_id": "H0STCNI0", "tr_key": "myhtsid", "encrypt": "N"},
        "body": {
            "rt_cd": "0",
            "msg_cd": "OPSP0000",
            "msg1": "SUBSCRIBE SUCCESS",
            "output": {"iv": VECTOR_IV, "key": VECTOR_KEY},
        },
    }
)


def kst(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=KST).timestamp()


def test_a_day_is_cut_at_kst_midnight_and_each_file_decrypts_its_notices(tmp_path: Path) -> None:
    recording = Recording(tmp_path / "day.kisrec", every=rotation("day"))
    recording.open(kst("2026-12-07 23:59:58"))
    recording.write(kst("2026-12-07 23:59:58"), ACK)
    recording.write(kst("2026-12-07 23:59:59"), sample("0|H0STCNT0"))
    recording.write(kst("2026-12-08 00:00:01"), sample("1|H0STCNI0"))  # the next KST day
    recording.close()
    first, second = tmp_path / "day-20261207.kisrec", tmp_path / "day-20261208.kisrec"
    assert recording.paths == [first, second]
    assert recording.describe() == f"2 files, {first} to {second}"
    for path in (first, second):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # they hold keys and the user's fills
    [notice] = [event for _, event in read_recording(second) if isinstance(event, Record)]
    assert isinstance(notice, records.H0STCNI0)  # decrypted alone: the key came along
    [trade] = [event for _, event in read_recording(first) if isinstance(event, Record)]
    assert isinstance(trade, records.H0STCNT0)


def test_intervals_and_templates_name_the_files(tmp_path: Path) -> None:
    hourly = Recording(tmp_path / "feed.kisrec", every=rotation("1h"))
    assert hourly.path_for(kst("2026-12-07 09:30:00")).name == "feed-20261207-0900.kisrec"
    templated = Recording(tmp_path / "t-{date}-{time}.kisrec", every=rotation("30m"))
    assert templated.path_for(kst("2026-12-07 15:45:10")).name == "t-20261207-1530.kisrec"
    named = Recording(tmp_path / "kis-{date}.kisrec", every=rotation("day"))
    assert named.path_for(kst("2026-12-07 20:00:00")).name == "kis-20261207.kisrec"
    plain = Recording(tmp_path / "day.kisrec", every=None)
    assert plain.path_for(kst("2026-12-07 20:00:00")).name == "day.kisrec"  # no rotation asked


@pytest.mark.parametrize("text", ["7m", "25h", "10s", "soon"])
def test_an_interval_must_cut_a_day_evenly(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        rotation(text)


def test_appending_to_an_existing_file_keeps_one_header(tmp_path: Path) -> None:
    path = tmp_path / "day.kisrec"
    for _ in range(2):
        recording = Recording(path, every=None)
        recording.open(kst("2026-12-07 10:00:00"))
        recording.write(kst("2026-12-07 10:00:00"), sample("0|H0STCNT0"))
        recording.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert sum(line.startswith("#") for line in lines) == 1
    assert len([e for _, e in read_recording(path) if isinstance(e, Record)]) == 2
