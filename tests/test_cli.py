"""The ``kis-ws`` command line: decode, watch, sim, record and replay (as subprocesses where it matters)."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from kis_sim import krx_tick
from kis_ws.__main__ import main

from kis_proto import KST, Record

from .helpers import FRAMES_TXT, VECTOR_IV, VECTOR_KEY, sample

if TYPE_CHECKING:
    from pathlib import Path


def run(*args: str) -> list[str]:
    out = io.StringIO()
    assert main(["decode", *args], out=out) == 0
    return out.getvalue().splitlines()


def test_decode_prints_one_line_per_event() -> None:
    lines = run(str(FRAMES_TXT), "--key", f"H0STCNI0={VECTOR_KEY}:{VECTOR_IV}")
    assert lines[0].split() == [
        "H0STCNT0",
        "005930",
        "삼성전자",  # the name, from the listings table
        "time=11:26:16",
        "price=62700",
        "change=400",
        "volume=125",
    ]
    assert "change=-19500" in lines[1]
    assert any(line.startswith("PINGPONG") for line in lines)
    assert any("OPSP8996" in line for line in lines)
    assert lines[-1].split()[:2] == ["H0STCNI0", "my*****"]  # the HTS ID masked on screen
    assert not any(VECTOR_KEY in line for line in lines)
    assert not any("062f61cb" in line for line in lines)  # the approval key echoed by KIS


def test_decode_without_the_key_says_so() -> None:
    lines = run(str(FRAMES_TXT))
    assert lines[-1].startswith("undecodable NO_KEY")


def test_jsonl_has_every_column_typed(tmp_path: Path) -> None:
    frames = tmp_path / "frames.txt"
    frames.write_text(sample("0|H0STCNT0") + "\n", encoding="utf-8")
    [line] = run(str(frames), "--jsonl")
    obj = json.loads(line)
    assert obj["event"] == "record"
    assert obj["STCK_PRPR"] == 62700
    assert obj["PRDY_CTRT"] == "0.64"
    assert obj["STCK_CNTG_HOUR"] == "11:26:16+09:00"  # KST, ISO 8601
    assert obj["MRKT_TRTM_CLS_CODE"] is None
    assert obj["price"] == 62700


def test_entry_point_runs_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kis_ws", "decode", "-"],
        input="0|H0STCNT0|001|005930^093015^71500^2^500^0.70" + "^" * 40 + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert "price=71500" in result.stdout


def _env_without_credentials() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_watch_streams_from_the_simulator_without_credentials() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kis_ws", "watch", "005930", "H0STASP0:000660", "--count", "6", "--jsonl"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=_env_without_credentials(),
    )
    assert "built-in simulator" in result.stderr
    assert "subscribed  H0STCNT0 005930" in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 6
    assert {line["tr_id"] for line in lines} <= {"H0STCNT0", "H0STASP0"}
    trade = next(line for line in lines if line["tr_id"] == "H0STCNT0")
    assert isinstance(trade["STCK_PRPR"], int)
    assert trade["price"] == trade["STCK_PRPR"]


def test_watch_shows_names_sessions_and_book_quotes_and_speaks_older_layouts() -> None:
    args = ["005930", "H0STASP0:000660", "--count", "12", "--plain", "--seed", "3"]
    today = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "kis_ws", "watch", *args, "--price", "000660=1001"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=_env_without_credentials(),
    )
    lines = today.stdout.splitlines()
    trade = next(line for line in lines if line.startswith("H0STCNT0"))
    book = next(line for line in lines if line.startswith("H0STASP0"))
    assert trade.split()[:3] == ["H0STCNT0", "005930", "삼성전자"]
    assert "session=" in trade
    assert book.split()[:3] == ["H0STASP0", "000660", "SK하이닉스"]
    fields = dict(part.split("=", 1) for part in book.split()[3:])
    bid, ask, mid = int(fields["bid"]), int(fields["ask"]), fields["mid"]
    assert ask - bid == krx_tick(bid)  # a tick apart, near the given 1001 won
    assert mid == (str((bid + ask) // 2) if (bid + ask) % 2 == 0 else f"{(bid + ask) / 2:.1f}")
    assert "layout " not in today.stderr  # today's layouts: no drift
    old = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "kis_ws", "watch", *args, "--layouts", "2026-08", "--jsonl"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=_env_without_credentials(),
    )
    records_ = [json.loads(line) for line in old.stdout.splitlines()]
    assert records_
    assert all(len(r["extra"]) == 0 and "MARKET_CLS_CODE" not in r for r in records_)
    assert "layout " not in old.stderr


def test_sim_serves_other_clients() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "kis_ws", "sim", "--port", "0", "--seed", "1", "--tick", "0.05"],
        stderr=subprocess.PIPE,
        text=True,
        env=_env_without_credentials(),
    ) as process:
        try:
            assert process.stderr is not None
            banner = process.stderr.readline()
            url = banner.split(" on ", 1)[1].split(" ", 1)[0]
            assert url.startswith("ws://127.0.0.1:")
            watch = subprocess.run(  # noqa: S603
                [sys.executable, "-m", "kis_ws", "watch", "DNASAAPL", "--count", "2", "--url", url],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
                env=_env_without_credentials(),
            )
            assert watch.stdout.count("HDFSCNT0  DNASAAPL") == 2
            assert "layouts of 2026-09, clock open" in banner
            assert "built-in simulator" not in watch.stderr
        finally:
            process.terminate()
            process.wait(10)


def test_record_then_replay_reproduces_every_record(tmp_path: Path) -> None:
    recording = tmp_path / "session.kisrec"
    env = _env_without_credentials()
    subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "kis_ws",
            "record",
            str(recording),
            "005930",
            "--count",
            "8",
            "--seed",
            "4",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    lines = recording.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# kis-ws recording v1")
    # What the file holds, read independently of kis_proto: every H0STCNT0 record's symbol and price.
    expected = []
    for line in lines[1:]:
        message = json.loads(line)["m"]
        if message.startswith("0|H0STCNT0|"):
            _, _, count, payload = message.split("|", 3)
            fields = payload.split("^")
            width = len(fields) // int(count)
            expected += [(fields[i], int(fields[i + 2])) for i in range(0, len(fields), width)]
    assert expected
    replays = [
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "kis_ws", "replay", str(recording), "--jsonl", "--fast"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            env=env,
        ).stdout
        for _ in range(2)
    ]
    assert replays[0] == replays[1]  # deterministic
    replayed = [json.loads(line) for line in replays[0].splitlines()]
    assert [(r["MKSC_SHRN_ISCD"], r["STCK_PRPR"]) for r in replayed] == expected


def test_read_recording_api_for_backtests(tmp_path: Path) -> None:
    from kis_data import read_recording

    from kis_proto import Subscribed, records
    from kis_proto.recording import RECORDING_HEADER, recording_line

    path = tmp_path / "notices.kisrec"
    ack = (
        '{"header":{"tr_id":"H0STCNI0","tr_key":"myhtsid","encrypt":"Y"},"body":{"rt_cd":"0","msg_cd":"OPSP0000",'
        f'"msg1":"SUBSCRIBE SUCCESS","output":{{"iv":"{VECTOR_IV}","key":"{VECTOR_KEY}"}}}}}}'
    )
    path.write_text(
        "\n".join(
            [
                RECORDING_HEADER,
                recording_line(1.5, ack),
                "not json",
                recording_line(2.25, sample("1|H0STCNI0")),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    events = list(read_recording(path))
    assert [t for t, _ in events] == [1.5, 2.25]
    assert isinstance(events[0][1], Subscribed)
    notice = events[1][1]
    assert isinstance(notice, records.H0STCNI0)
    assert notice.acnt_name == "홍길동"


def test_live_board_renders_the_latest_record_per_subscription() -> None:
    from kis_ws._table import LiveBoard
    from rich.console import Console

    from kis_proto import decode_message

    board = LiveBoard("ws://sim")
    board.status = "connected"
    for event in decode_message(sample("0|H0STCNT0", 0)) + decode_message(sample("0|H0STCNT0", 1)):
        assert isinstance(event, Record)
        board.update(event)
    board.note("subscribed  H0STCNT0 005930 (plain)")
    console = Console(width=200, record=True, color_system=None)
    console.print(board.render())
    text = console.export_text()
    assert "connected — 2 records" in text
    assert "250,500" in text  # the later trade replaced the earlier one
    assert "62,700" not in text
    assert "-19,500" in text
    assert "삼성전자" in text
    assert "subscribed" in text


def test_ctrl_c_ends_watch_cleanly() -> None:
    # Under load the first record can take a while: wait on it (the readiness signal) with a
    # deadline, and never leave the process behind, whatever fails.
    process = subprocess.Popen(
        [sys.executable, "-m", "kis_ws", "watch", "005930", "--plain"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env_without_credentials(),
    )
    try:
        stdout = process.stdout
        assert stdout is not None
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(25)
        assert ready, "watch showed no record within 25 s"
        assert ready[0].startswith("H0STCNT0")  # streaming
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=25)
        assert process.returncode in (0, 130)
        assert "Traceback" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_notices_say_what_happened_with_the_hts_id_masked() -> None:
    lines = run(str(FRAMES_TXT), "--key", f"H0STCNI0={VECTOR_KEY}:{VECTOR_IV}")
    notice = lines[-1]
    assert notice.split() == [
        "H0STCNI0",
        "my*****",
        "fill",
        "buy",
        "005930",
        "삼성전자",
        "qty=10",
        "price=71500",
        "order=0000012345",
    ]
    assert "myhtsid" not in notice
    assert "5012345601" not in notice  # nor the account


def test_book_prints_ten_levels_each_side_around_the_mid() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kis_ws", "book", "005930", "--count", "2", "--plain", "--seed", "5"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=_env_without_credentials(),
    )
    first = result.stdout.split("005930 삼성전자")[1]
    prices = [int(p.replace(",", "")) for p in re.findall(r"│\s+([\d,]{5,})\s+│", first)]
    assert len(prices) == 20
    assert prices == sorted(prices, reverse=True)  # asks above the bids, best in the middle
    assert all(a - b == krx_tick(b) for a, b in itertools.pairwise(prices))
    mid = re.search(r"mid ([\d,.]+)", first)
    assert mid is not None
    assert Decimal(mid.group(1).replace(",", "")) == Decimal(prices[9] + prices[10]) / 2
    assert "session " in first


def test_bars_streams_json_bars_from_the_simulator_without_credentials() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kis_ws", "bars", "005930", "--every", "10s", "--duration", "3", "--jsonl"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=_env_without_credentials(),
    )
    assert "built-in simulator" in result.stderr
    assert "subscribed  H0STCNT0 005930" in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines, "no bar"
    from kis_proto.bars import Bar

    for line in lines:
        bar = Bar.from_dict(line)  # the documented dict format
        assert (bar.tr_id, bar.symbol, bar.kind, bar.size) == ("H0STCNT0", "005930", "time", 10)
        assert bar.end - bar.start == timedelta(seconds=10)
        assert bar.trades > 0
    assert not lines[-1]["complete"]  # the bar open when the run ended, cut short: a gap
    assert lines[-1]["gap"]


def test_bars_prints_each_bar_when_it_completes() -> None:
    """Tick bars, --count of them, as lines (not a terminal): each of 5 trades, but one that a
    session change ended early (the simulator's always-open clock cycles through the sessions)."""
    out = io.StringIO()
    assert main(["bars", "005930", "--ticks", "5", "--count", "3", "--seed", "4"], out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert line.split()[:3] == ["H0STCNT0", "005930", "삼성전자"]
        trades = int(re.search(r" n=(\d+) ", line)[1])  # type: ignore[index]
        assert 0 < trades <= 5, line
    assert sum(" n=5 " in line for line in lines) >= 2


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--every", "1x"], "'1x' is not a bar interval: give e.g. 10s, 1m, 5m or 1h"),
        (["--every", "2d"], "is not a bar interval"),
        (["--ticks", "0"], "'0' is not a bar size: give a whole number above 0"),
        (["--value", "lots"], "is not a bar size"),
        (["--every", "1m", "--ticks", "5"], "not allowed with argument"),
        ([], "one of the arguments --every --ticks --volume --value is required"),
    ],
)
def test_bars_refuses_a_bad_size_with_exit_2_and_an_example(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bars", "005930", *args])
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def test_bars_of_a_book_tr_say_bars_are_made_of_trades(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bars", "H0STASP0:005930", "--every", "1m"]) == 2
    err = capsys.readouterr().err
    assert "bars are made of trades" in err
    assert "H0STCNT0" in err


def test_bar_board_shows_done_and_open_bars() -> None:
    from kis_ws._bars import BarBoard
    from rich.console import Console

    from kis_proto import decode_message
    from kis_proto.bars import BarAggregator

    agg = BarAggregator(every="1m")
    [rec] = decode_message(sample("0|H0STCNT0"))
    agg.add(rec, now=datetime(2026, 9, 14, 11, 26, 30, tzinfo=KST).timestamp())
    board = BarBoard("sim", agg)
    console = Console(width=150, record=True, color_system=None)
    console.print(board.render())
    text = console.export_text()
    assert "1m bars" in text
    assert "11:26:00–11:27:00" in text
    assert "open…" in text
    [done] = agg.flush()
    board.add(done)
    console.print(board.render())
    assert "gap" in console.export_text()
