// parse_sse.mjs: the OpenAI Node SDK's own stream parser as a test oracle.
//
//   node tests/sdk/parse_sse.mjs [--piece-bytes N] [FILE | -]
//
// Reads an SSE response body (the bytes after the HTTP head, de-chunked)
// from FILE, or from stdin when FILE is "-" or absent, wraps it in a fetch
// Response (content-type text/event-stream) and iterates it with
// Stream.fromSSEResponse from 'openai/streaming', the code the SDK's client
// runs for `stream: true`.  Prints every chunk the SDK yields as one JSON
// line on stdout, in order.  [DONE] and comments yield nothing, as in the
// SDK; so does a last event without its blank line.
//
// --piece-bytes N hands the body to the SDK in pieces of N bytes (as a
// network would, cutting events, lines and UTF-8 sequences anywhere);
// without it the body comes in one piece.
//
// Exit status: 0 when the SDK read the whole body without raising; 1 when
// it raised (an `error` event, a payload that is not JSON, ...), with
// "parse_sse: <error class>: <message>" as the last stderr line (the lines
// before it are whatever the SDK logged) and the chunks yielded before the
// error on stdout; 2 for a bad command line or an unreadable file; 77 when
// the SDK is not installed (1 under CI=true; see sdk.mjs).
import { readFileSync } from 'node:fs';
import { loadSdk } from './sdk.mjs';

const ME = 'parse_sse';

function usage(msg) {
  process.stderr.write(`${ME}: ${msg}\nusage: node parse_sse.mjs [--piece-bytes N] [FILE | -]\n`);
  process.exit(2);
}

let file = '-';
let piece = 0;
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--piece-bytes') {
    const v = args[++i];
    if (v === undefined || !/^[1-9][0-9]*$/.test(v)) usage(`--piece-bytes needs a whole number > 0, got ${v}`);
    piece = Number(v);
  } else if (a === '-h' || a === '--help') {
    usage('help');
  } else if (a.startsWith('-') && a !== '-') {
    usage(`unknown option ${a}`);
  } else if (file !== '-') {
    usage('one input at most');
  } else {
    file = a;
  }
}

let bytes;
try {
  bytes = readFileSync(file === '-' ? 0 : file);
} catch (e) {
  process.stderr.write(`${ME}: cannot read ${file === '-' ? 'stdin' : file}: ${e.message}\n`);
  process.exit(2);
}

const { OpenAI, Stream } = await loadSdk(ME);

// The body as a byte stream, whole or in pieces.
function body() {
  const view = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  const step = piece > 0 ? piece : Math.max(view.length, 1);
  let at = 0;
  return new ReadableStream({
    pull(ctrl) {
      if (at >= view.length) {
        ctrl.close();
        return;
      }
      ctrl.enqueue(view.slice(at, at + step));
      at += step;
    },
  });
}

const response = new Response(body(), {
  status: 200,
  headers: { 'content-type': 'text/event-stream' },
});
// A client is passed as the SDK's own client passes itself (its logger
// reports unparsable events); it never sends a request here.
const client = new OpenAI({ apiKey: 'x', baseURL: 'http://127.0.0.1:9/v1' });
const stream = Stream.fromSSEResponse(response, new AbortController(), client);

const out = [];
try {
  for await (const chunk of stream) out.push(JSON.stringify(chunk) + '\n');
} catch (e) {
  process.stdout.write(out.join(''));
  const kind = e?.constructor?.name || 'Error';
  process.stderr.write(`${ME}: ${kind}: ${e?.message ?? String(e)}\n`);
  process.exitCode = 1;
}
if (process.exitCode !== 1) process.stdout.write(out.join(''));
