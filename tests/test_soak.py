"""The chaos soak of bench/soak.py, one minute of it: every fault at least once, nothing unexplained.

Real processes on loopback (the simulator with three app keys, nats-server, two gateways, ten
consumers, a recorder), the faults drawn at random (each kind once first): KIS drops and garbage,
nats-server SIGKILLed, the active gateway SIGKILLed, consumers SIGKILLed. It checks what the
soak's table says: no notice lost outside the documented window nor delivered twice, every gap
in the gateway's ``seq`` told to the consumer that had it, every process alive at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nats", reason="nats-py is not installed: pip install 'kis-proto[nats]'")
pytest.importorskip("prometheus_client", reason="the gateways' metrics need the metrics extra")

from kis_gateway import NatsServerUnavailable, find_nats_server

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"


def test_a_minute_of_chaos_loses_nothing_unexplained(tmp_path: Path) -> None:
    try:
        find_nats_server()
    except NatsServerUnavailable as exc:
        pytest.skip(str(exc))
    out = tmp_path / "soak.json"
    argv = [sys.executable, str(SOAK), "--minutes", "0.75", "--every", "5", "--sample", "5", "--settle", "8"]
    argv += ["--json", str(out), "--keep", str(tmp_path / "work"), "--seed", "21"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=150, check=False)  # noqa: S603
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    kinds = {fault["kind"] for fault in report["faults"]}
    assert kinds == {"kis_drop", "kis_garbage", "nats_kill", "gateway_kill", "consumer_kill"}, report[
        "faults"
    ]
    notices = report["notices"]
    assert notices["sent"] >= 20
    assert notices["lost_outside_window"] == [], done.stdout
    assert notices["twice"] == [], done.stdout
    for name, consumer in report["consumers"].items():
        assert consumer["records"] > 0, name
        assert consumer["told"] == consumer["seq_gaps"], (name, done.stdout)
    assert all(report["alive"].values()), report["alive"]
    assert report["tracebacks"] == [], done.stdout
    assert "chaos soak: 0.75 min" in done.stdout
