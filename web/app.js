// app.js: the admin web view of a sluice gateway (runtime/ops/web.h).
//
// Reads GET api/state once, then follows GET api/events (server-sent
// events): a "state" snapshot every second, "narration" and "guard" events
// as the gateway's narrator flushes them, "admin" for a drain.  Draws the
// pools and endpoints (with drain and undrain buttons), the streams in
// flight, a rolling chart of the recent percentiles on a <canvas>, and the
// event feed.  No library, no build step, nothing fetched from elsewhere.
//
// The token: a page opened as /?token=T gets a cookie from the gateway, and
// every URL below also carries ?token=T when the page's own URL did.
// window.sluiceView is for the browser test (tests/web/browser_test.mjs):
// how many snapshots arrived, the last one, and the errors the page met.
'use strict';

(function () {
  const view = (window.sluiceView = {
    snapshots: 0,
    events: 0,
    last: null,
    errors: [],
    drainReplies: 0,
  });

  // ---- errors: collected and shown in the page ----
  function pageError(text) {
    view.errors.push(String(text));
    const sec = document.getElementById('errors-section');
    const list = document.getElementById('errors');
    if (sec && list) {
      sec.hidden = false;
      const li = document.createElement('li');
      li.textContent = String(text);
      list.appendChild(li);
    }
  }
  window.addEventListener('error', (e) => pageError(e.message + ' (' + (e.filename || '?') + ':' + (e.lineno || 0) + ')'));
  window.addEventListener('unhandledrejection', (e) => pageError('unhandled rejection: ' + (e.reason && e.reason.message ? e.reason.message : e.reason)));

  const params = new URLSearchParams(window.location.search);
  const token = params.get('token');
  function url(path) {
    return token ? path + (path.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token) : path;
  }

  // ---- small DOM helpers (textContent only: names come from configs and clients) ----
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function td(text, cls) {
    return el('td', cls, text);
  }
  function fmt(n, digits) {
    if (n === null || n === undefined || Number.isNaN(n)) return '–';
    return Number(n).toFixed(digits === undefined ? 0 : digits);
  }
  function fmtAge(ms) {
    if (ms < 1000) return fmt(ms) + ' ms';
    if (ms < 60000) return fmt(ms / 1000, 1) + ' s';
    return fmt(ms / 60000, 1) + ' min';
  }

  // ---- pools and endpoints ----
  function renderPools(state) {
    const box = document.getElementById('pools');
    const frag = document.createDocumentFragment();
    for (const pool of state.pools) {
      const div = el('div', 'pool');
      div.dataset.pool = pool.name;
      const head = el('div', 'pool-head');
      head.appendChild(el('b', null, pool.name));
      head.appendChild(el('span', null, pool.models.join(', ')));
      head.appendChild(el('span', null, pool.ready + '/' + pool.endpoints.length + ' ready'));
      head.appendChild(el('span', null, pool.streams + ' streams'));
      const q = el('span', 'queue', 'queue ' + pool.queue.waiting + '/' + pool.queue.capacity);
      head.appendChild(q);
      div.appendChild(head);
      const table = el('table', 'endpoints');
      const thead = el('thead');
      const hr = el('tr');
      for (const h of ['endpoint', 'state', 'streams', 'limit', 'slots', 'queue', 'TTFT ms', 'ITL ms', 'tokens/s', 'errors', '']) {
        hr.appendChild(el('th', /^(streams|limit|slots|queue|TTFT|ITL|tokens|errors)/.test(h) ? 'num' : null, h));
      }
      thead.appendChild(hr);
      table.appendChild(thead);
      const tbody = el('tbody');
      for (const ep of pool.endpoints) {
        const tr = el('tr');
        tr.dataset.endpoint = ep.name;
        tr.appendChild(td(ep.name + (ep.simulated ? ' (sim)' : '')));
        const st = el('td');
        st.appendChild(el('span', 'badge ' + (ep.ready ? 'badge-ready' : 'badge-notready'), ep.ready ? 'ready' : 'not ready'));
        if (ep.starting || ep.down) {
          st.appendChild(document.createTextNode(' '));
          st.appendChild(el('span', 'badge badge-draining', ep.starting ? 'engine starting' : 'no engine process'));
        }
        if (ep.draining) {
          st.appendChild(document.createTextNode(' '));
          st.appendChild(el('span', 'badge badge-draining', 'draining'));
        }
        if (ep.cooldown_ms > 0) st.appendChild(document.createTextNode(' cooling ' + fmt(ep.cooldown_ms) + ' ms'));
        tr.appendChild(st);
        tr.appendChild(td(ep.streams, 'num streams'));
        tr.appendChild(td(ep.limit, 'num'));
        tr.appendChild(td(ep.slots, 'num'));
        tr.appendChild(td(pool.queue.waiting, 'num'));
        tr.appendChild(td(ep.ttft_ms ? fmt(ep.ttft_ms, 1) : '–', 'num'));
        tr.appendChild(td(ep.itl_ms ? fmt(ep.itl_ms, 1) : '–', 'num'));
        tr.appendChild(td(ep.tokens_per_s ? fmt(ep.tokens_per_s, 1) : '–', 'num'));
        tr.appendChild(td(ep.errors + '/' + ep.requests, 'num'));
        const bt = el('td');
        const button = el('button', ep.draining ? 'undrain' : 'drain', ep.draining ? 'Undrain' : 'Drain');
        button.dataset.endpoint = ep.name;
        button.dataset.action = ep.draining ? 'undrain' : 'drain';
        button.title = ep.draining ? 'let placement choose it again' : 'placement stops choosing it; its streams go on';
        button.addEventListener('click', () => drain(ep.name, button.dataset.action));
        bt.appendChild(button);
        tr.appendChild(bt);
        tbody.appendChild(tr);
      }
      table.appendChild(tbody);
      div.appendChild(table);
      frag.appendChild(div);
    }
    box.replaceChildren(frag);
  }

  function drain(name, action) {
    return fetch(url('api/endpoints/' + encodeURIComponent(name) + '/' + action), { method: 'POST' })
      .then((r) => r.json().then((body) => ({ ok: r.ok, body })))
      .then(({ ok, body }) => {
        view.drainReplies++;
        if (!ok) addEvent('admin', (body.error && body.error.message) || 'refused', Date.now());
        return refresh();
      })
      .catch((e) => pageError('drain: ' + e.message));
  }
  view.drain = drain;

  // ---- streams ----
  function renderStreams(state) {
    const tbody = document.querySelector('#streams tbody');
    const frag = document.createDocumentFragment();
    if (state.streams.length === 0) {
      const tr = el('tr');
      const cell = td('no stream in flight', 'empty');
      cell.colSpan = 9;
      tr.appendChild(cell);
      frag.appendChild(tr);
    }
    for (const s of state.streams) {
      const tr = el('tr', 'stream');
      tr.dataset.id = s.id;
      tr.appendChild(td(s.id));
      tr.appendChild(td(s.tenant === null ? '–' : s.tenant));
      tr.appendChild(td(s.endpoint === null ? '–' : s.endpoint));
      tr.appendChild(td(s.model));
      tr.appendChild(td(s.state));
      tr.appendChild(td(s.tokens, 'num tokens'));
      tr.appendChild(td(fmt(s.tokens_per_s, 1), 'num'));
      tr.appendChild(td(fmtAge(s.age_ms), 'num'));
      const g = el('td');
      for (const name of s.guards) g.appendChild(el('span', 'badge badge-guard', name));
      tr.appendChild(g);
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
    const shown = state.streams.length;
    document.getElementById('streams-count').textContent =
      shown === state.streams_in_flight ? '(' + shown + ')' : '(' + shown + ' of ' + state.streams_in_flight + ')';
  }

  // ---- the rolling chart ----
  const HISTORY = 120; // snapshots kept (about two minutes)
  const history = [];
  const panels = [
    {
      title: 'tokens/s',
      series: [
        { key: (r) => r.throughput_tokens_per_s, label: 'total', color: '#1f8a4c' },
        { key: (r) => r.tokens_per_s.p50, label: 'stream p50', color: '#2c6fbb' },
        { key: (r) => r.tokens_per_s.p99, label: 'stream p99', color: '#e67e22' },
      ],
    },
    {
      title: 'TTFT ms',
      series: [
        { key: (r) => r.ttft_ms.p50, label: 'p50', color: '#2c6fbb' },
        { key: (r) => r.ttft_ms.p99, label: 'p99', color: '#e67e22' },
      ],
    },
    {
      title: 'inter-token ms',
      series: [
        { key: (r) => r.itl_ms.p50, label: 'p50', color: '#2c6fbb' },
        { key: (r) => r.itl_ms.p99, label: 'p99', color: '#e67e22' },
      ],
    },
  ];

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function drawChart() {
    const canvas = document.getElementById('chart');
    const dpr = window.devicePixelRatio || 1;
    const cssW = canvas.clientWidth || 900;
    const cssH = Math.round(cssW * 0.37);
    if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssH * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    ctx.font = '11px system-ui, sans-serif';
    const left = 48, right = 8, gap = 22;
    const ph = (cssH - gap * panels.length) / panels.length;
    panels.forEach((panel, i) => {
      const top = i * (ph + gap) + 16;
      const h = ph - 6;
      const w = cssW - left - right;
      let max = 0;
      for (const r of history)
        for (const s of panel.series) {
          const v = s.key(r);
          if (v !== null && v !== undefined && v > max) max = v;
        }
      max = niceMax(max);
      // frame, grid and labels
      ctx.strokeStyle = '#d9dbdd';
      ctx.fillStyle = '#6b7075';
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let k = 0; k <= 2; k++) {
        const y = top + h - (h * k) / 2 + 0.5;
        ctx.moveTo(left, y);
        ctx.lineTo(left + w, y);
        ctx.fillText(fmt((max * k) / 2, max < 10 ? 1 : 0), 4, y + 4);
      }
      ctx.stroke();
      ctx.fillStyle = '#1d1f21';
      ctx.fillText(panel.title, left, top - 4);
      let lx = left + 110;
      for (const s of panel.series) {
        ctx.fillStyle = s.color;
        ctx.fillRect(lx, top - 11, 10, 3);
        ctx.fillStyle = '#1d1f21';
        ctx.fillText(s.label, lx + 14, top - 4);
        lx += 24 + ctx.measureText(s.label).width;
      }
      // the lines (a gap where a figure is missing)
      for (const s of panel.series) {
        ctx.strokeStyle = s.color;
        ctx.lineWidth = 1.6;
        ctx.beginPath();
        let pen = false;
        history.forEach((r, j) => {
          const v = s.key(r);
          const x = left + (w * (j + HISTORY - history.length)) / (HISTORY - 1);
          if (v === null || v === undefined) {
            pen = false;
            return;
          }
          const y = top + h - (h * Math.min(v, max)) / max;
          if (pen) ctx.lineTo(x, y);
          else ctx.moveTo(x, y);
          pen = true;
        });
        ctx.stroke();
      }
    });
  }

  // ---- the event feed ----
  const MAX_EVENTS = 300;
  function addEvent(kind, sentence, ts, cls) {
    const list = document.getElementById('events');
    const li = el('li', 'event event-' + kind);
    li.appendChild(el('time', null, new Date(ts || Date.now()).toLocaleTimeString()));
    li.appendChild(el('span', 'badge ' + (cls || 'badge-narration'), kind));
    li.appendChild(document.createTextNode(sentence || ''));
    list.insertBefore(li, list.firstChild);
    while (list.childNodes.length > MAX_EVENTS) list.removeChild(list.lastChild);
    view.events++;
  }

  // ---- snapshots ----
  function apply(state) {
    view.last = state;
    view.snapshots++;
    const who = state.workers > 1 ? 'worker ' + state.worker + '/' + state.workers + ', ' : '';
    document.getElementById('summary').textContent =
      who + 'pid ' + state.pid + ', generation ' + state.generation + ' (' + state.policy + '), up ' + fmtAge(state.uptime_s * 1000) +
      ', ' + state.streams_in_flight + ' streams, ' + state.queued + ' queued' + (state.draining ? ', shutting down' : '');
    renderPools(state);
    renderStreams(state);
    history.push(state.recent);
    while (history.length > HISTORY) history.shift();
    document.getElementById('window').textContent =
      '(p50 and p99 over the last ' + fmt(state.recent.window_s) + ' s; one point a second)';
    drawChart();
  }

  function refresh() {
    return fetch(url('api/state'))
      .then((r) => {
        if (!r.ok) throw new Error('api/state: HTTP ' + r.status);
        return r.json();
      })
      .then(apply);
  }

  function connect() {
    const conn = document.getElementById('conn');
    const es = new EventSource(url('api/events'));
    es.onopen = () => {
      conn.textContent = 'live';
      conn.className = 'conn conn-live';
    };
    // EventSource reconnects by itself (the server says retry: 2000).
    es.onerror = () => {
      conn.textContent = 'reconnecting';
      conn.className = 'conn conn-wait';
    };
    es.addEventListener('state', (e) => apply(JSON.parse(e.data)));
    es.addEventListener('narration', (e) => {
      const d = JSON.parse(e.data);
      addEvent(d.kind, d.sentence, d.ts);
    });
    es.addEventListener('guard', (e) => {
      const d = JSON.parse(e.data);
      addEvent('guard ' + (d.guard || ''), d.sentence, d.ts, 'badge-guard');
    });
    es.addEventListener('admin', (e) => {
      const d = JSON.parse(e.data);
      addEvent(d.kind, d.sentence, Date.now(), 'badge-admin');
    });
  }

  function start() {
    window.addEventListener('resize', drawChart);
    refresh()
      .catch((e) => pageError(e.message))
      .then(connect);
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
