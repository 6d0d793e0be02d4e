"""Every failure ``kis-ws`` expects: one or two lines saying what to do, a documented exit code, no traceback."""

from __future__ import annotations

import io
import json
import os
import re
import socket
from typing import TYPE_CHECKING

import pytest
from anyio.from_thread import start_blocking_portal
from kis_sim import serve
from kis_ws.__main__ import main

from kis_proto.recording import recording_line
from kis_proto.server import KISServerConfig

from .helpers import sample

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

USAGE, FEED = 2, 1


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KIS_APP_KEY", "KIS_APP_SECRET", "KIS_HTS_ID", "KIS_ENV"):
        monkeypatch.delenv(name, raising=False)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    try:
        code = main(args, out=out)
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, out.getvalue(), err


def kis_ws_lines(err: str) -> list[str]:
    """The lines kis-ws says itself (log records of the libraries come as "warning: ...")."""
    return [line for line in err.splitlines() if line.startswith("kis-ws")]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["watch", "H0STCNT0:"], "H0STCNT0 needs a key"),
        (["watch", "5930"], "did you mean 005930 (삼성전자)?"),
        (["watch", "AAPL"], "did you mean HDFSCNT0:DNASAAPL?"),
        (["watch", "FOOBAR00:005930"], "unknown TR id 'FOOBAR00'"),
        (["watch", "HDFSCNT0:AAPL"], "did you mean DNASAAPL?"),
        (["watch", *[f"{n:06d}" for n in range(1, 43)]], "42 subscriptions: KIS allows 41"),
        (["watch", "005930", "--url", "http://127.0.0.1:21000"], "is not a KIS real-time URL"),
        (["watch", "005930", "--url", "notaurl"], "--url 'notaurl' is not a KIS real-time URL"),
        (["watch", "005930", "--approval-url", "http://127.0.0.1:1"], "--approval-url needs credentials"),
        (["replay", "missing.kisrec"], "missing.kisrec: no such file"),
        (["decode", "missing.txt"], "missing.txt: no such file"),
    ],
)
def test_bad_input_is_said_in_two_lines_with_exit_2(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    os.chdir(tmp_path)
    code, out, err = run(args, capsys)
    assert code == USAGE
    assert out == ""
    lines = kis_ws_lines(err)
    assert 1 <= len(lines) <= 2, err
    assert said in lines[0]


def test_a_port_that_is_no_port_is_argparse_s_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["sim", "--port", "99999"], capsys)
    assert code == USAGE
    assert "'99999' is not a port" in err


def test_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(["sim", "--port", str(port)], capsys)
    assert code == USAGE
    assert kis_ws_lines(err) == [
        f"kis-ws: cannot listen on 127.0.0.1:{port}: the port is in use (another kis-ws sim?)",
        "kis-ws: choose another with --port, or --port 0 for any free one",
    ]


def test_the_gateway_s_nats_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("nats", reason="nats-py is not installed: pip install 'kis-proto[nats]'")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(["gateway", "--nats-port", str(port), "--state-dir", str(tmp_path)], capsys)
    assert code == USAGE
    assert kis_ws_lines(err) == [
        (
            f"kis-ws: cannot start NATS on 127.0.0.1:{port}: the port is in use (a NATS already there,"
            " perhaps left by a gateway that was killed?)"
        ),
        f"kis-ws: use it with --nats nats://127.0.0.1:{port}, or pick another --nats-port",
    ]


@pytest.mark.parametrize(
    ("environment", "said"),
    [
        ({"KIS_APP_KEY": "k"}, "KIS_APP_SECRET is not set, but KIS_APP_KEY is"),
        ({"KIS_APP_SECRET": "s"}, "KIS_APP_KEY is not set, but KIS_APP_SECRET is"),
        ({"KIS_APP_KEY": "k", "KIS_APP_SECRET": "s", "KIS_ENV": "papr"}, "KIS_ENV='papr' is neither"),
    ],
)
def test_half_or_wrong_credentials_are_named(
    environment: dict[str, str],
    said: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    code, _, err = run(["watch", "005930", "--duration", "1"], capsys)
    assert code == USAGE
    assert said in kis_ws_lines(err)[0]
    assert "s" not in environment or environment.get("KIS_APP_SECRET", "") not in err.replace("KIS_", "")


def test_files_that_are_not_recordings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    code, _, err = run(["replay", str(binary)], capsys)
    assert code == USAGE
    assert "is not text" in kis_ws_lines(err)[0]

    text = tmp_path / "notes.txt"
    text.write_text("# a comment\nhello\nworld\n", encoding="utf-8")
    code, out, err = run(["replay", str(text)], capsys)
    assert code == USAGE
    assert out == ""
    assert re.search(r"is not a kis-ws recording: line 2 is 'hello'", kis_ws_lines(err)[0])

    code, _, err = run(["replay", str(tmp_path)], capsys)
    assert code == USAGE
    assert "is a directory" in kis_ws_lines(err)[0]


def test_bad_lines_of_a_recording_are_counted_not_hidden(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "day.kisrec"
    good = recording_line(1.0, sample("0|H0STCNT0"))
    path.write_text(f"# kis-ws recording v1\n{good}\ntruncated {{\n{good}\nnot json\n", encoding="utf-8")
    code, out, err = run(["replay", str(path), "--fast"], capsys)
    assert code == 0
    assert len(out.splitlines()) == 2
    assert "2 lines skipped: not recording lines (the first is line 3)" in err


def test_decode_reads_recordings_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "day.kisrec"
    path.write_text(
        "# kis-ws recording v1\n" + recording_line(1.0, sample("0|H0STCNT0")) + "\n", encoding="utf-8"
    )
    code, out, _ = run(["decode", str(path), "--jsonl"], capsys)
    assert code == 0
    [record] = [json.loads(line) for line in out.splitlines()]
    assert (record["tr_id"], record["STCK_PRPR"]) == ("H0STCNT0", 62700)


@pytest.fixture
def refusing_server() -> Iterator[str]:
    """A KIS server that refuses every subscription (MAX SUBSCRIBE OVER at once), in a thread."""
    with start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(serve(config=KISServerConfig(max_subscriptions=0))) as server:
            yield server.url


def test_every_subscription_refused_ends_watch_with_exit_1(
    refusing_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["watch", "005930", "H0STASP0:005930", "--url", refusing_server, "--plain"], capsys)
    assert code == FEED  # without --duration: it ends, not waits forever
    lines = kis_ws_lines(err)
    assert lines[0].startswith("kis-ws: the server refused every subscription (H0STCNT0 005930: OPSP0008")
    assert len(lines) == 2


def test_a_server_that_is_never_reached(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, _, err = run(["watch", "005930", "--url", f"ws://127.0.0.1:{port}", "--duration", "1.5"], capsys)
    assert code == FEED
    assert "reconnecting in" in err
    assert f"connection refused by 127.0.0.1:{port}" in err
    assert kis_ws_lines(err)[0].startswith(
        f"kis-ws: never connected to ws://127.0.0.1:{port}: connection refused"
    )


def test_a_server_that_never_answers_is_said_so_when_the_run_ends(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KIS_APP_KEY", "PS" + "a" * 34)
    monkeypatch.setenv("KIS_APP_SECRET", "s" * 180)
    with socket.socket() as silent:  # accepts, never answers: the approval request waits
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"127.0.0.1:{silent.getsockname()[1]}"
        argv = [
            "watch",
            "005930",
            "--url",
            f"ws://{url}",
            "--approval-url",
            f"http://{url}",
            "--duration",
            "1",
        ]
        code, _, err = run(argv, capsys)
    assert code == FEED
    assert kis_ws_lines(err)[0] == (
        f"kis-ws: never connected to ws://{url} (no answer before the run ended: the approval key"
        " request or the connection was still waiting)"
    )


def test_a_flapping_server_never_ends_the_watch(capsys: pytest.CaptureFixture[str]) -> None:
    # The simulator drops every session 0.6 s in (as a flaky line would); each one delivers data.
    code, out, err = run(
        ["watch", "005930", "--faults", "drop=0.6", "--duration", "9", "--plain", "--seed", "2"], capsys
    )
    assert code == 0
    reconnects = [line for line in err.splitlines() if line.startswith("reconnecting")]
    assert len(reconnects) >= 5
    # Each session delivered data, so the streak ends every time: attempt 1 (2 at most when the
    # machine is so loaded that a session drops before its first record).
    attempts = [int(re.search(r"\(attempt (\d+)\)", line).group(1)) for line in reconnects]  # type: ignore[union-attr]
    assert max(attempts) <= 2, reconnects
    assert attempts.count(1) > len(attempts) // 2, reconnects
    assert all(
        line.endswith("the server closed the socket without a close frame (1006)") for line in reconnects
    )
    assert out.count("H0STCNT0") > len(reconnects)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from kis_proto import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"kis-ws (kis-proto {__version__})"


def test_log_format_json_gives_one_object_per_log_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """For journald or Loki: every log record a JSON object; a drifted record's warning is one."""
    path = tmp_path / "drift.txt"
    fields = sample("0|H0STCNT0").split("|", 3)[3]
    path.write_text(f"0|H0STCNT0|001|{fields}^extra1^extra2^extra3\n", encoding="utf-8")
    code, _, err = run(["decode", str(path), "--log-format", "json"], capsys)
    assert code == 0
    lines = [json.loads(line) for line in err.splitlines()]
    assert lines, "the drift was not logged"
    assert all(set(line) >= {"time", "level", "logger", "message"} for line in lines)
    assert any(line["level"] == "warning" for line in lines)
