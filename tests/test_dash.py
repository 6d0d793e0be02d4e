"""The dashboard in a real headless browser (issue 22): Chromium from the distribution, driven by Playwright.

One ``kis-ws dash`` (the built-in simulator, 2-second bars, every feed session dropped 6 s after
it opened: the fault that forces reconnects) and one browser serve every test of the module. Skipped
with the reason when Playwright or a Chromium is missing (``.ci/run`` installs the distribution's).
With ``KIS_DASH_SCREENSHOTS=1`` the run writes the docs' pictures (docs/img/dash-*.png).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

pytest.importorskip("aiohttp", reason="the dashboard needs the dash extra: pip install 'kis-proto[dash]'")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed: pip install playwright"
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "img"
SCREENSHOTS = os.environ.get("KIS_DASH_SCREENSHOTS") == "1"
KEYS = ["005930", "000660", "035420", "005380", "H0STCNI0:demo01"]


def browser_path() -> str | None:
    """The distribution's Chromium (``KIS_DASH_BROWSER`` names another)."""
    named = os.environ.get("KIS_DASH_BROWSER")
    if named:
        return named
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def until(check: Callable[[], Any], timeout: float = 6.0, what: str = "") -> Any:
    """Poll `check` until it gives something true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or check}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def dash_url() -> Iterator[str]:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and command
        [sys.executable, "-m", "kis_ws", "dash", *KEYS, "--listen", "127.0.0.1:0", "--every", "2s",
         "--grace", "0.5", "--faults", "drop=6", "--seed", "7"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, "KIS_APP_KEY": "", "KIS_APP_SECRET": ""},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"dashboard on (http://\S+)", line)
        assert found, line
        yield found.group(1)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    assert code == 130  # Ctrl-C: the dashboard stops cleanly


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = browser_path()
    if path is None:
        pytest.skip("no Chromium found (apt-get install chromium; or set KIS_DASH_BROWSER)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def page(browser: Any, dash_url: str) -> Iterator[Any]:
    opened = browser.new_page(viewport={"width": 1500, "height": 960})
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(dash_url)
    yield opened
    opened.close()
    assert not errors  # no script error the whole time


def prices(page: Any) -> list[str]:
    return list(page.locator("#watchlist tbody tr td.last").all_inner_texts())


def shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=str(IMAGES / f"dash-{name}.png"))


def test_the_watchlist_shows_simulator_prices_that_change(page: Any) -> None:
    rows = page.locator("#watchlist tbody tr")
    until(lambda: rows.count() == 4 and "-" not in prices(page), what="four quoted rows")
    assert page.locator("#watchlist tbody tr td:nth-child(2)").first.inner_text() == "삼성전자"
    first = prices(page)
    assert all(re.fullmatch(r"[\d,]+", price) for price in first)
    until(lambda: prices(page) != first, what="a price to change")
    shot(page, "watchlist")


def test_the_book_has_ten_levels_a_side_with_bars(page: Any) -> None:
    until(lambda: page.locator("#book tr.ask").count() == 10, what="ten asks")
    assert page.locator("#book tr.bid").count() == 10
    asks = [int(t.replace(",", "")) for t in page.locator("#book tr.ask td.price").all_inner_texts()]
    bids = [int(t.replace(",", "")) for t in page.locator("#book tr.bid td.price").all_inner_texts()]
    assert asks == sorted(asks, reverse=True)  # the worst ask on top, the best in the middle
    assert bids == sorted(bids, reverse=True)
    assert asks[-1] > bids[0]
    widths = page.locator("#book span.bar").evaluate_all(
        "spans => spans.map(s => s.getBoundingClientRect().width)"
    )
    assert len(widths) == 20
    assert max(widths) > 20
    assert min(widths) >= 0


def test_the_chart_draws_candles_and_gains_one_when_a_bar_closes(page: Any) -> None:
    count = "dash.series.data().length"  # what lightweight-charts itself holds
    until(lambda: page.evaluate(count) >= 1, what="a candle")
    before = page.evaluate(count)
    until(lambda: page.evaluate(count) > before, timeout=6.0, what="one more candle")
    last = page.evaluate("dash.series.data().at(-1)")
    assert last["high"] >= max(last["open"], last["close"]) >= min(last["open"], last["close"]) >= last["low"]
    assert page.locator("#chart canvas").count() >= 1
    # Another key: the book and the chart follow it.
    page.locator("#watchlist tbody tr", has_text="000660").click()
    until(lambda: "000660" in page.locator("#chart-title").inner_text(), what="the chart of 000660")
    until(lambda: "000660" in page.locator("#book-title").inner_text(), what="the book of 000660")
    until(lambda: page.evaluate(count) >= 1, what="000660's candles")
    shot(page, "chart")


def test_a_forced_feed_drop_shows_as_a_reconnect_and_the_page_recovers(page: Any) -> None:
    reconnects = page.locator('#health dd[data-name="reconnects"]')
    until(lambda: int(reconnects.inner_text().split()[0]) >= 1, timeout=10.0, what="a reconnect")
    assert "dropped" in reconnects.inner_text()
    until(lambda: page.locator("#feed-state").inner_text() == "feed: connected", what="the feed back")
    before = prices(page)
    until(lambda: prices(page) != before, what="prices after the reconnect")
    # The page's own socket closes: it connects again by itself and is live again.
    opened = page.evaluate("dash.state.opened")
    page.evaluate("dash.reconnect()")
    until(lambda: page.evaluate("dash.state.opened") == opened + 1, what="the page's socket again")
    assert page.locator("#page-state").inner_text() == "page: live"
    before = prices(page)
    until(lambda: prices(page) != before, what="prices on the new socket")
    assert page.locator("#notices tbody tr").count() >= 1
    assert all(
        text.endswith("***") for text in page.locator("#notices tbody tr td:last-child").all_inner_texts()
    )
    assert "demo01" not in page.content()  # the HTS ID never reaches the page
    shot(page, "health")


def test_a_wrong_token_is_refused(browser: Any, dash_url: str) -> None:
    other = browser.new_page()
    try:
        right = dash_url.partition("token=")[2]
        for url in (dash_url.partition("?")[0], dash_url.replace(right, right[::-1])):
            response = other.goto(url)
            assert response is not None
            assert response.status == 403
            assert right not in other.content()
    finally:
        other.close()
