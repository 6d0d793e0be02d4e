"""The dashboard's cost: server CPU at 41 subscriptions at the simulator's full rate, with 3 pages open.

    python bench/bench_dash.py [--quick] [--tick 0.01] [--seconds 15]

A ``kis-ws sim`` (its tick: how often every subscription gets a frame; 0.01 is as fast as it keeps
pace on a small machine) feeds a ``kis-ws dash`` of 20 keys' trades and books and one notice
subscription (41). The dashboard process's CPU (user + system time over wall time, from
/proc) is measured with no page open (the feed alone), then with 3 pages open in headless
Chromium (Playwright, the distribution's browser); each page counts the messages it got per
widget, which gives the browser's update rate per widget (at most ~10/s by design).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from kis_proto.symbols import LISTINGS

KEYS = [key for key, listed in LISTINGS.items() if not listed.overseas][:20]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(command: list[str], pattern: str, stream: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-m", "kis_ws", *command],
        stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
        stderr=subprocess.PIPE if stream == "stderr" else subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, "KIS_APP_KEY": "", "KIS_APP_SECRET": ""},
    )
    pipe = process.stdout if stream == "stdout" else process.stderr
    assert pipe is not None
    for _ in range(20):
        line = pipe.readline()
        if found := re.search(pattern, line):
            return process, found.group(1)
    raise SystemExit(f"{command[0]} did not start")


def stop(process: subprocess.Popen[str]) -> None:
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=10)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def records(url: str) -> int:
    """The records the dashboard has taken so far: its health message, read by a page of a moment."""
    import asyncio
    import concurrent.futures
    import json

    import aiohttp

    async def read() -> int:
        async with aiohttp.ClientSession() as http, http.ws_connect(url.replace("/?", "/ws?")) as ws:
            async for message in ws:
                data = json.loads(message.data)
                if data["type"] == "health":
                    return int(data["records"])
        raise SystemExit("the dashboard sent no health")

    # In a thread of its own: Playwright's sync face holds an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


def measure(pid: int, url: str, seconds: float) -> tuple[float, float]:
    """The process's CPU share over `seconds` of wall time (1.0 = one core), and its records/s."""
    taken = records(url)
    cpu, wall = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    share = (cpu_seconds(pid) - cpu) / (time.monotonic() - wall)
    return share, (records(url) - taken) / (time.monotonic() - wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per phase")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per phase (default 15)")
    parser.add_argument("--tick", type=float, default=0.01, help="the simulator's tick (default 0.01)")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else args.seconds
    from playwright.sync_api import sync_playwright

    browser_path = (
        os.environ.get("KIS_DASH_BROWSER") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if browser_path is None:
        raise SystemExit("no Chromium: apt-get install chromium (or set KIS_DASH_BROWSER)")
    sim, sim_url = start(
        ["sim", "--port", "0", "--tick", str(args.tick)], r"KIS simulator on (ws://\S+)", "stderr"
    )
    keys = [*KEYS, "H0STCNI0:bench01"]
    dash, url = start(
        ["dash", *keys, "--url", sim_url, "--listen", "127.0.0.1:0", "--every", "10s"],
        r"dashboard on (http://\S+)",
        "stdout",
    )
    try:
        time.sleep(2.0)  # subscribed and streaming
        alone, alone_rate = measure(dash.pid, url, seconds)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=browser_path, headless=True)
            pages = [browser.new_page(viewport={"width": 1500, "height": 960}) for _ in range(3)]
            for page in pages:
                page.goto(url)
            for page in pages:
                page.wait_for_function("dash.health && dash.health.subscriptions >= 41", timeout=15000)
            before: list[dict[str, Any]] = [page.evaluate("({...dash.counts})") for page in pages]
            started = time.monotonic()
            shared, shared_rate = measure(dash.pid, url, seconds)
            elapsed = time.monotonic() - started
            after: list[dict[str, Any]] = [page.evaluate("({...dash.counts})") for page in pages]
            health = pages[0].evaluate("dash.health")
            browser.close()
    finally:
        stop(dash)
        stop(sim)
    print(
        f"kis-ws dash: {len(keys)} keys, {health['subscriptions']}/{health['limit']} subscriptions, simulator tick {args.tick}"
    )
    for what, share, rate in (("no page open", alone, alone_rate), ("3 pages open", shared, shared_rate)):
        print(
            f"{what}: server CPU {share:.2f} of a core at {rate:,.0f} records/s "
            f"({1000 * share / rate:.3f} of a core per 1,000 records/s)"
        )
    for number, (start_counts, end_counts) in enumerate(zip(before, after, strict=True), 1):
        rates = {
            kind: (end_counts.get(kind, 0) - start_counts.get(kind, 0)) / elapsed
            for kind in ("watchlist", "book", "chart", "health", "notices")
        }
        shown = ", ".join(f"{kind} {rate:.1f}/s" for kind, rate in rates.items())
        print(f"page {number} updates: {shown}")


if __name__ == "__main__":
    main()
