// The dashboard page: one WebSocket to the server (reconnected with backoff), one handler per
// widget. Every message is a widget's whole latest state (a chart's last bars), so a message
// missed while away is simply replaced by the next one.
(() => {
  "use strict";
  const token = new URLSearchParams(location.search).get("token") || "";
  const TAIL_BARS = 5;
  const counts = {};
  const started = performance.now();
  const state = {
    symbols: [], books: [], names: {}, selected: null, socket: null, delay: 500, opened: 0,
    chartSymbol: null, chartClosed: 0, lastTime: 0, candles: 0, lastPrices: {},
  };
  // For the tests and the benchmark: what arrived, per widget, and since when.
  window.dash = {
    counts, started, state,
    rates() {
      const seconds = (performance.now() - started) / 1000;
      const out = {};
      for (const [kind, n] of Object.entries(counts)) out[kind] = n / seconds;
      return out;
    },
    candles: () => state.candles,
    series: null,
    health: null,
  };

  const $ = (id) => document.getElementById(id);
  const fmt = (value, digits) => {
    if (value === null || value === undefined) return "-";
    return Number(value).toLocaleString("ko-KR", digits === undefined ? {} : { minimumFractionDigits: digits, maximumFractionDigits: digits });
  };
  const signed = (value, digits) => (value > 0 ? "+" : "") + fmt(value, digits);
  const cell = (row, text, cls) => {
    const td = row.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  };

  // -- the chart (TradingView lightweight-charts, shipped with the package) ------------------
  const LC = window.LightweightCharts;
  const chart = LC.createChart($("chart"), {
    autoSize: true,
    layout: { background: { color: "#ffffff" }, textColor: "#333" },
    grid: { vertLines: { color: "#f0f0f0" }, horzLines: { color: "#f0f0f0" } },
    timeScale: { timeVisible: true, secondsVisible: true, barSpacing: 10, rightOffset: 3 },
  });
  // Korean convention: rising red, falling blue.
  const candles = chart.addSeries(LC.CandlestickSeries, {
    upColor: "#d32f2f", downColor: "#1565c0", borderVisible: false, wickUpColor: "#d32f2f", wickDownColor: "#1565c0",
  });
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.28 } });
  const volume = chart.addSeries(LC.HistogramSeries, { priceFormat: { type: "volume" }, priceScaleId: "" });
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.78, bottom: 0 } });
  window.dash.series = candles;
  const candleOf = (b) => ({ time: b.time, open: b.open, high: b.high, low: b.low, close: b.close });
  const volumeOf = (b) => ({ time: b.time, value: b.volume, color: b.close >= b.open ? "rgba(211,47,47,0.45)" : "rgba(21,101,192,0.45)" });

  function onChart(msg) {
    if (msg.symbol !== state.selected) return;
    const bars = msg.open ? [...msg.bars, msg.open] : msg.bars;
    if (msg.full) {
      const whole = bars.every((b) => Number.isInteger(b.open) && Number.isInteger(b.high) && Number.isInteger(b.low) && Number.isInteger(b.close));
      candles.applyOptions({ priceFormat: whole ? { type: "price", precision: 0, minMove: 1 } : { type: "price", precision: 2, minMove: 0.01 } });
      candles.setData(bars.map(candleOf));
      volume.setData(bars.map(volumeOf));
      state.chartSymbol = msg.symbol;
      state.lastTime = bars.length ? bars[bars.length - 1].time : 0;
      state.candles = bars.length;
      state.chartClosed = msg.closed;
      $("chart-title").textContent = `${msg.symbol} ${state.names[msg.symbol] || ""}`;
      return;
    }
    if (state.chartSymbol !== msg.symbol) return; // its whole chart is on its way
    if (msg.closed - state.chartClosed > TAIL_BARS) {
      send({ chart: "whole" }); // bars were missed while away: start again from the whole chart
      return;
    }
    state.chartClosed = msg.closed;
    for (const bar of bars) {
      if (bar.time < state.lastTime) continue;
      if (bar.time > state.lastTime) state.candles += 1;
      candles.update(candleOf(bar));
      volume.update(volumeOf(bar));
      state.lastTime = bar.time;
    }
  }

  // -- the watchlist --------------------------------------------------------------------------
  function onWatchlist(msg) {
    const body = $("watchlist").tBodies[0];
    if (body.rows.length !== msg.rows.length) {
      body.replaceChildren();
      for (const quote of msg.rows) {
        const row = body.insertRow();
        row.dataset.symbol = quote.symbol;
        for (let i = 0; i < 8; i++) row.insertCell();
        row.addEventListener("click", () => select(quote.symbol));
      }
    }
    msg.rows.forEach((quote, i) => {
      const row = body.rows[i];
      const tone = quote.change > 0 ? "up" : quote.change < 0 ? "down" : "";
      const values = [
        [quote.symbol, ""], [quote.name, ""], [fmt(quote.last), `num last ${tone}`],
        [quote.change === null ? "-" : signed(quote.change), `num ${tone}`],
        [quote.rate === null ? "-" : signed(quote.rate, 2), `num ${tone}`], [fmt(quote.volume), "num"],
        [quote.session || "-", ""], [quote.time || "-", ""],
      ];
      values.forEach(([text, cls], j) => {
        const td = row.cells[j];
        if (td.textContent !== text) td.textContent = text;
        td.className = cls;
      });
      if (state.lastPrices[quote.symbol] !== undefined && state.lastPrices[quote.symbol] !== quote.last) {
        row.cells[2].classList.add("flash");
      }
      state.lastPrices[quote.symbol] = quote.last;
      row.classList.toggle("selected", quote.symbol === state.selected);
    });
  }

  // -- the book -------------------------------------------------------------------------------
  function onBook(msg) {
    if (msg.symbol !== state.book) return;
    $("book-title").textContent = `${msg.symbol} ${msg.name || ""}`;
    const body = $("book").tBodies[0];
    body.replaceChildren();
    const largest = Math.max(1, ...msg.asks.map((l) => l[1] || 0), ...msg.bids.map((l) => l[1] || 0));
    const level = (side, [price, qty], best) => {
      const row = body.insertRow();
      row.className = side + (best ? " best" : "");
      const bar = () => {
        const td = row.insertCell();
        td.className = "qty";
        const fill = document.createElement("span");
        fill.className = "bar";
        fill.style.width = `${Math.round((100 * (qty || 0)) / largest)}%`;
        const text = document.createElement("span");
        text.className = "text";
        text.textContent = fmt(qty);
        td.append(fill, text);
      };
      if (side === "ask") { bar(); cell(row, fmt(price), "price"); cell(row, "", "qty"); }
      else { cell(row, "", "qty"); cell(row, fmt(price), "price"); bar(); }
    };
    [...msg.asks].reverse().forEach((l, i, all) => level("ask", l, i === all.length - 1));
    msg.bids.forEach((l, i) => level("bid", l, i === 0));
    $("book-note").textContent = msg.asks.length ? [msg.session, msg.time].filter(Boolean).join(" · ") : "waiting for the first book";
  }

  // -- health and notices ---------------------------------------------------------------------
  function onHealth(msg) {
    window.dash.health = msg;
    $("source").textContent = msg.source;
    const feed = $("feed-state");
    feed.textContent = `feed: ${msg.connection}`;
    feed.className = "badge " + (msg.connection === "connected" ? "ok" : "bad");
    const reasons = Object.entries(msg.reasons).map(([k, n]) => `${k} ${n}`).join(", ");
    const rows = [
      ["connection", msg.connection + (msg.detail ? ` (${msg.detail})` : "")],
      ["reconnects", String(msg.reconnects) + (reasons ? ` (${reasons})` : "")],
      ["subscriptions", `${msg.subscriptions} / ${msg.limit}`],
      ["records", `${fmt(msg.records)} (${fmt(msg.rate, 1)}/s)`],
      ["layout drift", String(msg.drift)],
      ["dropped", String(msg.dropped)],
      ["undecodable", String(msg.undecodable)],
    ];
    if (msg.refused.length) rows.push(["refused", msg.refused.join("; ")]);
    const dl = $("health");
    dl.replaceChildren();
    for (const [name, value] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      dd.dataset.name = name;
      dl.append(dt, dd);
    }
    const gw = $("gateway");
    gw.replaceChildren();
    if (msg.gateway) {
      const g = msg.gateway;
      const title = document.createElement("p");
      title.textContent = `gateway ${g.gateway} (${g.env}, ${g.role}): ${g.capacity.used}/${g.capacity.total} subscriptions, ${fmt(g.published)} published, ${g.dropped} dropped`;
      const table = document.createElement("table");
      for (const s of g.sessions) {
        const row = table.insertRow();
        for (const text of [`session ${s.name}`, s.state, `${s.subscriptions}/${s.capacity}`, `${fmt(s.records)} records`, `${s.reconnects} reconnects`]) cell(row, text);
      }
      for (const c of g.clients) {
        const row = table.insertRow();
        for (const text of [`consumer ${c.client}`, `${c.subscriptions} subscriptions`, `lease ${c.lease_left} s`]) cell(row, text);
      }
      gw.append(title, table);
    }
  }

  function onNotices(msg) {
    $("notices-note").hidden = msg.subscribed;
    const body = $("notices").tBodies[0];
    body.replaceChildren();
    for (const n of msg.items.slice(0, 12)) {
      const row = body.insertRow();
      row.className = n.kind;
      for (const [text, cls] of [
        [n.time || "-"], [n.kind], [n.side], [`${n.symbol || "-"} ${n.name || ""}`],
        [fmt(n.quantity), "num"], [fmt(n.price), "num"], [n.order || "-"], [n.hts_id],
      ]) cell(row, text, cls);
    }
  }

  function onHello(msg) {
    state.symbols = msg.symbols.map((s) => s.symbol);
    state.books = msg.books;
    for (const s of msg.symbols) state.names[s.symbol] = s.name;
    if (state.selected && state.symbols.includes(state.selected)) {
      select(state.selected); // after a reconnect: the same key again
    } else {
      state.selected = state.symbols[0] || null;
      state.book = state.books.includes(state.selected) ? state.selected : state.books[0] || null;
    }
  }

  // -- the socket -----------------------------------------------------------------------------
  const handlers = { hello: onHello, watchlist: onWatchlist, book: onBook, chart: onChart, health: onHealth, notices: onNotices };

  function send(request) {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(request));
  }

  function select(symbol) {
    state.selected = symbol;
    state.book = state.books.includes(symbol) ? symbol : state.books[0] || null;
    state.chartSymbol = null;
    send({ show: symbol });
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/ws?token=${encodeURIComponent(token)}`);
    state.socket = socket;
    const pageState = $("page-state");
    socket.onopen = () => {
      state.delay = 500;
      state.opened += 1;
      state.chartSymbol = null; // the server sends the whole chart again
      pageState.textContent = "page: live";
      pageState.className = "badge ok";
    };
    socket.onmessage = (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      const handler = handlers[msg.type];
      if (!handler) return;
      counts[msg.type] = (counts[msg.type] || 0) + 1;
      handler(msg);
    };
    socket.onclose = () => {
      if (state.socket !== socket) return;
      const wait = state.delay * (0.75 + Math.random() / 2);
      state.delay = Math.min(state.delay * 2, 10000);
      pageState.textContent = `page: reconnecting in ${(wait / 1000).toFixed(1)} s`;
      pageState.className = "badge bad";
      setTimeout(connect, wait);
    };
  }
  window.dash.reconnect = () => state.socket && state.socket.close();
  connect();
})();
