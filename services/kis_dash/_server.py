"""The dashboard's web server (aiohttp): the page, its assets, and one WebSocket per page.

Every request carries the token (``?token=``), compared in constant time; without it: 403. The
page's WebSocket gets JSON messages, one per widget (`kis_dash.DashState.render`). A timer sends,
ten times a second, each widget whose state changed since its last send to the pages showing it;
each page has an `Outbox` that holds at most one message per widget (a newer one replaces it), so
a slow page gets the latest state late, never a backlog, and never slows the feed or the other
pages. A closed page's outbox goes with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import secrets
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from ._state import book_key, chart_key

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ._state import DashState

__all__ = ["SEND_INTERVAL", "DashServer", "Outbox", "new_token", "serve"]

logger = logging.getLogger("kis_dash")

#: Seconds between two sends of one widget to one page (at most 10 updates a second).
SEND_INTERVAL = 0.1
_SHARED = ("watchlist", "health", "notices")
#: The largest request a page may send (its requests are a few bytes of JSON).
_MAX_PAGE_MESSAGE = 4096
_ASSETS = {
    "dash.js": "text/javascript",
    "dash.css": "text/css",
    "vendor/lightweight-charts.standalone.production.js": "text/javascript",
}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def new_token() -> str:
    """A fresh random token for a dashboard's URL (``secrets.token_urlsafe``, 32 bytes)."""
    return secrets.token_urlsafe(32)


class Outbox:
    """A page's pending messages: at most one per widget, the newest replacing the older.

    Bounded by the number of widgets whatever the feed's rate, so a page that reads slowly (a
    background tab, a slow link) costs the server a few messages, not a growing queue.
    """

    def __init__(self) -> None:
        self._items: dict[str, tuple[str, bool]] = {}
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, widget: str, text: str, *, whole: bool = False) -> None:
        """Queue `text` as `widget`'s next message, replacing one not yet sent.

        A `whole` message (a chart from its first bar) is not replaced by a partial one: the
        partial is dropped instead, and the next one brings the page up to date.
        """
        pending = self._items.get(widget)
        if pending is not None and pending[1] and not whole:
            return
        self._items[widget] = (text, whole)
        self._ready.set()

    def take(self) -> list[str]:
        """Every pending message, oldest widget first; the outbox is empty after."""
        out = [text for text, _ in self._items.values()]
        self._items.clear()
        self._ready.clear()
        return out

    async def wait(self) -> None:
        """Until something is pending."""
        await self._ready.wait()

    def clear(self) -> None:
        self._items.clear()


class _Page:
    """One open page: its socket, what it shows, what it still has to get."""

    def __init__(self, ws: web.WebSocketResponse, symbol: str | None, book: str | None) -> None:
        self.ws = ws
        self.outbox = Outbox()
        self.symbol = symbol
        self.book = book
        self.fresh: set[str] = set()  # widgets to send on the next tick whatever their version
        self.whole_chart = True
        self.sent = 0

    @property
    def wants(self) -> list[str]:
        out = list(_SHARED)
        if self.book is not None:
            out.append(book_key(self.book))
        if self.symbol is not None:
            out.append(chart_key(self.symbol))
        return out

    def show(self, symbol: str, book: str | None) -> None:
        self.symbol, self.book = symbol, book
        self.fresh.update(self.wants)
        self.whole_chart = True

    async def write(self) -> None:
        """Send what the outbox holds, as the socket takes it."""
        while not self.ws.closed:
            await self.outbox.wait()
            for text in self.outbox.take():
                await self.ws.send_str(text)
                self.sent += 1


class DashServer:
    """A running dashboard server: its URL (with the token), its pages, what it sent.

    Made by `serve`. `url` is what to open; `pages` the pages connected now; `sent` the messages
    sent so far, by widget kind.
    """

    def __init__(self, state: DashState, token: str, interval: float = SEND_INTERVAL) -> None:
        self.state = state
        self._token = token
        self._interval = interval
        self._pages: set[_Page] = set()
        self._sent_versions: dict[str, int] = {}
        self.host = ""
        self.port = 0
        #: Messages handed to pages' outboxes, by widget kind (watchlist, health, notices, book, chart).
        self.sent: dict[str, int] = {}
        self.refused = 0

    def __repr__(self) -> str:
        return f"<kis_dash.DashServer http://{self.host}:{self.port}/ {len(self._pages)} pages>"

    @property
    def url(self) -> str:
        """The page's address, token included: give it only to whom may see the feed."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self._token}"

    @property
    def pages(self) -> int:
        """How many pages are connected now."""
        return len(self._pages)

    @property
    def pending(self) -> int:
        """Messages waiting in the pages' outboxes (at most one per widget and page)."""
        return sum(len(page.outbox) for page in self._pages)

    # -- HTTP ------------------------------------------------------------------------------------------
    def _allowed(self, request: web.Request) -> bool:
        given = request.query.get("token", "")
        ok = hmac.compare_digest(given.encode(), self._token.encode())
        if not ok:
            self.refused += 1
            logger.warning(
                "refused %s %s from %s: no or a wrong token", request.method, request.path, request.remote
            )
        return ok

    def app(self) -> web.Application:
        """The aiohttp application: ``/`` (the page), ``/static/…`` (its assets), ``/ws``."""
        app = web.Application(middlewares=[self._guard], client_max_size=_MAX_PAGE_MESSAGE)
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._socket)
        app.router.add_get("/static/{name:.+}", self._asset)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self._allowed(request):
            response: web.StreamResponse = web.Response(
                status=403, text="403: forbidden (no or a wrong token)\n"
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = web.Response(status=exc.status, text=f"{exc.status}: {exc.reason}\n")
        if not response.prepared:
            response.headers.update(_SECURITY_HEADERS)
        return response

    async def _index(self, request: web.Request) -> web.Response:
        html = _read("index.html").replace("{{token}}", self._token)
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def _asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kind = _ASSETS.get(name)
        if kind is None:
            raise web.HTTPNotFound
        return web.Response(text=_read(name), content_type=kind, charset="utf-8")

    # -- the page's socket -------------------------------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=15.0, max_msg_size=_MAX_PAGE_MESSAGE)
        await ws.prepare(request)
        state = self.state
        first = state.symbols[0] if state.symbols else None
        page = _Page(ws, first, self._book_for(first))
        page.fresh.update(page.wants)
        hello = {
            "type": "hello",
            "symbols": [{"symbol": key, "name": state.names[key]} for key in state.symbols],
            "books": [key for _, key in state.books],
            "interval": self._interval,
            "source": state.source,
        }
        page.outbox.put("hello", json.dumps(hello, ensure_ascii=False))
        self._pages.add(page)
        writer = asyncio.create_task(self._write(page))
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._heard(page, message.data)
        finally:
            self._pages.discard(page)  # a closed page costs nothing from here on
            page.outbox.clear()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _write(self, page: _Page) -> None:
        try:
            await page.write()
        except (ConnectionError, RuntimeError) as exc:  # the page went away while we wrote
            logger.debug("a page's socket failed: %s", exc)
            await page.ws.close()

    def _book_for(self, symbol: str | None) -> str | None:
        books = [key for _, key in self.state.books]
        if symbol in books:
            return symbol
        return books[0] if books else None

    def _heard(self, page: _Page, text: str) -> None:
        """A page's request: ``{"show": KEY}`` (the book and chart of a key), ``{"chart": "whole"}``."""
        try:
            request = json.loads(text)
        except ValueError:
            return
        if not isinstance(request, dict):
            return
        symbol = request.get("show")
        if isinstance(symbol, str) and symbol in self.state.symbols:
            page.show(symbol, self._book_for(symbol))
        elif request.get("chart") == "whole":
            page.whole_chart = True

    # -- the timer -------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Send what changed, every `SEND_INTERVAL` seconds, until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            self.flush(time.monotonic())

    def flush(self, now: float) -> None:
        """One tick: each changed widget rendered once, into the outboxes of the pages showing it."""
        state = self.state
        state.tick(now)
        if not self._pages:
            return
        rendered: dict[str, str] = {}
        for page in self._pages:
            for widget in page.wants:
                version = state.version(widget)
                changed = self._sent_versions.get(widget, -1) != version
                if widget.startswith("chart:") and page.whole_chart:
                    page.whole_chart = False
                    page.fresh.discard(widget)
                    whole = state.render_chart(widget.partition(":")[2], full=True)
                    page.outbox.put("chart", _dumps(whole), whole=True)
                    self._count("chart")
                    continue
                if not changed and widget not in page.fresh:
                    continue
                page.fresh.discard(widget)
                text = rendered.get(widget)
                if text is None:
                    text = rendered[widget] = _dumps(state.render(widget))
                page.outbox.put(widget.partition(":")[0], text)
                self._count(widget.partition(":")[0])
        for widget in rendered:
            self._sent_versions[widget] = state.version(widget)
        # Widgets no page showed this tick are sent fresh when one does: forget their versions.
        for widget in list(self._sent_versions):
            if widget not in rendered and not any(widget in page.wants for page in self._pages):
                del self._sent_versions[widget]

    def _count(self, kind: str) -> None:
        self.sent[kind] = self.sent.get(kind, 0) + 1

    async def close(self) -> None:
        """Close every page's socket (the pages try again until a server answers)."""
        for page in list(self._pages):
            await page.ws.close()


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_finite)


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON: {type(value).__name__}")


def _read(name: str) -> str:
    return resources.files("kis_dash").joinpath("static", *name.split("/")).read_text(encoding="utf-8")


@contextlib.asynccontextmanager
async def serve(
    state: DashState,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str | None = None,
    interval: float = SEND_INTERVAL,
) -> AsyncIterator[DashServer]:
    """Serve `state`'s dashboard on `host:port` (0: any free port) until the block exits.

    Loopback by default: anyone who can reach the port and knows the token sees the feed, so
    listen beyond it only when that is wanted (the token is then the only guard; there is no TLS).
    `token` defaults to `new_token`. Must run on asyncio (aiohttp).
    """
    server = DashServer(state, token or new_token(), interval)
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        address = runner.addresses[0] if runner.addresses else (host, port)
        server.host, server.port = host, int(address[1])
        ticker = asyncio.create_task(server.run())
        try:
            yield server
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await server.close()
    finally:
        await runner.cleanup()
