// browser_test.mjs: drives the admin web view in a headless Chromium over
// the DevTools protocol, for tests/e2e/e2e_browser.c.
//
//   node browser_test.mjs --cdp-port P --url URL --streams N --drain ENDPOINT --shot FILE
//
// e2e_browser.c starts Chromium (--remote-debugging-port=0) and sluice, and
// holds N streams open whose tokens keep flowing; this script then:
//   1. opens URL in the browser's page, collecting every console error,
//      uncaught exception and error log entry (Runtime.consoleAPICalled,
//      Runtime.exceptionThrown, Log.entryAdded) and the page's own error list
//      (window.sluiceView.errors);
//   2. waits until the page lists exactly N streams and the endpoints'
//      stream counts add up to N;
//   3. reads the tokens of every listed stream twice and waits until the
//      second reading differs (the page updates while tokens flow);
//   4. saves a screenshot (Page.captureScreenshot) to FILE;
//   5. clicks ENDPOINT's Drain button (Runtime.evaluate of its click()) and
//      waits until the page shows it draining;
//   6. passes only if no error was collected.
// It prints one "PASS: ..." line per check, or "FAIL: ..." and exits 1.
// The WebSocket is this file's own (RFC 6455 client framing over node:net):
// no npm package is needed.  Every wait is bounded.
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
for (const k of ['cdp-port', 'url', 'streams', 'drain', 'shot']) {
  if (!args[k]) {
    console.log(`FAIL: missing --${k}`);
    process.exit(2);
  }
}
const WAIT_MS = Number(process.env.SL_BROWSER_WAIT_MS || 60000);
const wantStreams = Number(args.streams);

function fail(why) {
  console.log('FAIL: ' + why);
  process.exit(1);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function getJson(port, path) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          try {
            resolve(JSON.parse(body));
          } catch (e) {
            reject(e);
          }
        });
      })
      .on('error', reject);
  });
}

// ---- a minimal WebSocket client (text frames; what CDP needs) ----
class WebSocket {
  constructor(wsUrl) {
    this.url = new URL(wsUrl);
    this.onmessage = () => {};
    this.onclose = () => {};
    this.buf = Buffer.alloc(0);
    this.parts = [];
  }
  open() {
    return new Promise((resolve, reject) => {
      const key = randomBytes(16).toString('base64');
      const expect = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
      const sock = net.connect(Number(this.url.port), this.url.hostname);
      this.sock = sock;
      let head = Buffer.alloc(0);
      let upgraded = false;
      sock.on('connect', () => {
        sock.write(
          `GET ${this.url.pathname} HTTP/1.1\r\nHost: ${this.url.host}\r\nUpgrade: websocket\r\n` +
            `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      sock.on('data', (d) => {
        if (upgraded) return this.feed(d);
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const text = head.subarray(0, end).toString();
        if (!/^HTTP\/1\.1 101/.test(text) || !text.includes(expect)) {
          reject(new Error('WebSocket upgrade refused: ' + text.split('\r\n')[0]));
          sock.destroy();
          return;
        }
        upgraded = true;
        resolve();
        if (head.length > end + 4) this.feed(head.subarray(end + 4));
      });
      sock.on('error', (e) => (upgraded ? this.onclose(e) : reject(e)));
      sock.on('close', () => this.onclose());
    });
  }
  send(text) {
    const payload = Buffer.from(text);
    const mask = randomBytes(4);
    let header;
    if (payload.length < 126) {
      header = Buffer.from([0x81, 0x80 | payload.length]);
    } else if (payload.length < 65536) {
      header = Buffer.alloc(4);
      header[0] = 0x81;
      header[1] = 0x80 | 126;
      header.writeUInt16BE(payload.length, 2);
    } else {
      header = Buffer.alloc(10);
      header[0] = 0x81;
      header[1] = 0x80 | 127;
      header.writeBigUInt64BE(BigInt(payload.length), 2);
    }
    for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
    this.sock.write(Buffer.concat([header, mask, payload]));
  }
  feed(d) {
    this.buf = Buffer.concat([this.buf, d]);
    for (;;) {
      if (this.buf.length < 2) return;
      const fin = (this.buf[0] & 0x80) !== 0;
      const op = this.buf[0] & 0x0f;
      let len = this.buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        len = Number(this.buf.readBigUInt64BE(2));
        off = 10;
      }
      if (this.buf.length < off + len) return;
      const payload = this.buf.subarray(off, off + len);
      this.buf = this.buf.subarray(off + len);
      if (op === 0x8) {
        this.sock.end();
        return;
      }
      if (op === 0x9) continue; // ping: the browser's side never sends one here
      if (op === 0x1 || op === 0x0) {
        this.parts.push(Buffer.from(payload));
        if (fin) {
          const text = Buffer.concat(this.parts).toString();
          this.parts = [];
          this.onmessage(text);
        }
      }
    }
  }
  close() {
    if (this.sock) this.sock.destroy();
  }
}

// ---- the DevTools protocol over it ----
let nextId = 1;
const pending = new Map();
const errors = [];
let loaded = false;
let ws;

function cdp(method, params = {}) {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, params }));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(method + ': no answer')), WAIT_MS);
    pending.set(id, (msg) => {
      clearTimeout(t);
      if (msg.error) reject(new Error(method + ': ' + msg.error.message));
      else resolve(msg.result);
    });
  });
}

function onEvent(msg) {
  const p = msg.params || {};
  if (msg.method === 'Runtime.consoleAPICalled' && (p.type === 'error' || p.type === 'assert')) {
    errors.push('console.' + p.type + ': ' + (p.args || []).map((a) => a.value ?? a.description ?? '').join(' '));
  } else if (msg.method === 'Runtime.exceptionThrown') {
    const d = p.exceptionDetails || {};
    errors.push('exception: ' + ((d.exception && d.exception.description) || d.text));
  } else if (msg.method === 'Log.entryAdded' && p.entry && p.entry.level === 'error') {
    errors.push('log: ' + p.entry.text + (p.entry.url ? ' (' + p.entry.url + ')' : ''));
  } else if (msg.method === 'Page.loadEventFired') {
    loaded = true;
  }
}

async function evaluate(expr) {
  const r = await cdp('Runtime.evaluate', { expression: expr, returnByValue: true, awaitPromise: true });
  if (r.exceptionDetails) throw new Error('evaluate: ' + (r.exceptionDetails.exception?.description || r.exceptionDetails.text));
  return r.result.value;
}

async function waitFor(what, fn) {
  const end = Date.now() + WAIT_MS;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last && last.ok) return last;
    await sleep(100);
  }
  fail(what + ' (last seen: ' + JSON.stringify(last) + ')');
}

// What the page shows now: its stream rows and the endpoints' rows.
const READ_PAGE = `(() => {
  const streams = [...document.querySelectorAll('#streams tbody tr.stream')].map((tr) => ({
    id: tr.dataset.id, tokens: Number(tr.querySelector('td.tokens').textContent) }));
  const endpoints = [...document.querySelectorAll('#pools tr[data-endpoint]')].map((tr) => ({
    name: tr.dataset.endpoint, streams: Number(tr.querySelector('td.streams').textContent),
    draining: !!tr.querySelector('.badge-draining'),
    button: (tr.querySelector('button') || {}).dataset?.action }));
  const v = window.sluiceView || {};
  return { streams, endpoints, snapshots: v.snapshots || 0, pageErrors: v.errors || [], conn: document.getElementById('conn').textContent };
})()`;

async function main() {
  const port = Number(args['cdp-port']);
  const targets = await getJson(port, '/json/list');
  const page = targets.find((t) => t.type === 'page');
  if (!page) fail('the browser has no page target');
  ws = new WebSocket(page.webSocketDebuggerUrl);
  ws.onmessage = (text) => {
    const msg = JSON.parse(text);
    if (msg.id && pending.has(msg.id)) {
      pending.get(msg.id)(msg);
      pending.delete(msg.id);
    } else if (msg.method) {
      onEvent(msg);
    }
  };
  ws.onclose = () => {};
  await ws.open();
  console.log('browser_test: connected to ' + page.webSocketDebuggerUrl);
  await cdp('Runtime.enable');
  await cdp('Log.enable');
  await cdp('Page.enable');
  await cdp('Emulation.setDeviceMetricsOverride', { width: 1400, height: 1000, deviceScaleFactor: 1, mobile: false });
  await cdp('Page.navigate', { url: args.url });
  await waitFor('the page loads', async () => ({ ok: loaded }));
  console.log('PASS: the page loaded from ' + args.url.replace(/token=[^&]*/, 'token=[redacted]'));

  // 2. the streams the test holds, with the right counts
  const first = await waitFor(`the page lists ${wantStreams} streams and its endpoints add up to them`, async () => {
    const s = await evaluate(READ_PAGE);
    const sum = s.endpoints.reduce((a, e) => a + e.streams, 0);
    return { ...s, ok: s.snapshots >= 2 && s.conn === 'live' && s.streams.length === wantStreams && sum === wantStreams };
  });
  console.log(`PASS: the page shows ${first.streams.length} streams; endpoints ` +
    first.endpoints.map((e) => e.name + '=' + e.streams).join(', '));

  // 3. it updates while tokens flow
  const before = new Map(first.streams.map((s) => [s.id, s.tokens]));
  const later = await waitFor('the stream rows change as tokens flow', async () => {
    const s = await evaluate(READ_PAGE);
    const grew = s.streams.filter((x) => before.has(x.id) && x.tokens > before.get(x.id));
    return { ...s, ok: grew.length === wantStreams, grew: grew.length };
  });
  console.log('PASS: two readings differ: tokens ' + first.streams.map((s) => s.tokens).join(',') + ' then ' +
    later.streams.map((s) => s.tokens).join(','));

  // The chart has a few points by now; wait for one more so it has a line.
  const n0 = later.snapshots;
  await waitFor('another snapshot', async () => ({ ok: (await evaluate('window.sluiceView.snapshots')) > n0 + 1 }));

  // 4. the screenshot
  const shot = await cdp('Page.captureScreenshot', { format: 'png', captureBeyondViewport: false });
  writeFileSync(args.shot, Buffer.from(shot.data, 'base64'));
  console.log('PASS: screenshot saved: ' + args.shot);

  // 5. drain from the page: its button, clicked
  const target = args.drain;
  const clicked = await evaluate(`(() => {
    const b = [...document.querySelectorAll('#pools button')].find((b) => b.dataset.endpoint === ${JSON.stringify(target)});
    if (!b || b.dataset.action !== 'drain') return false;
    b.click();
    return true;
  })()`);
  if (!clicked) fail('no Drain button for ' + target);
  await waitFor(`the page shows ${target} draining`, async () => {
    const s = await evaluate(READ_PAGE);
    const e = s.endpoints.find((x) => x.name === target);
    return { ...s, ok: !!e && e.draining && e.button === 'undrain' };
  });
  console.log('PASS: clicked Drain on ' + target + '; the page shows it draining with an Undrain button');

  // 6. no error anywhere
  const pageErrors = await evaluate('window.sluiceView.errors');
  const all = errors.concat(pageErrors.map((e) => 'page: ' + e));
  if (all.length) fail('errors in the page:\n  ' + all.join('\n  '));
  console.log('PASS: no console error, exception or page error');
  await cdp('Browser.close').catch(() => {});
  ws.close();
  process.exit(0);
}

setTimeout(() => fail('the whole run took longer than ' + 4 * WAIT_MS + ' ms'), 4 * WAIT_MS).unref();
main().catch((e) => fail(e.stack || String(e)));
