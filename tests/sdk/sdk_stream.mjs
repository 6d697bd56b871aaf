// sdk_stream.mjs: the official OpenAI Node SDK's client against a running
// sluice, doing what a user does and checking what a user checks.
//
//   node tests/sdk/sdk_stream.mjs --base-url http://127.0.0.1:PORT/v1
//        [--model sim-small] [--seed 7] [--tokens 24]
//
// It starts nothing: the base URL names a sluice (or anything that serves
// the OpenAI API with sluice's simulated engine behind it, since the cases
// steer the engine with x-sim-* headers, which sluice forwards).  The client
// is `new OpenAI({ baseURL, apiKey: 'x', maxRetries: 0 })`: no retry may hide
// a failure.  Cases:
//
//   chat_script       streamed chat whose tokens are fixed by x-sim-script
//                     (quotes, backslashes, a newline, a tab, multi-byte
//                     UTF-8, an emoji, SSE and JSON look-alikes): the
//                     content must be exactly their concatenation, finish
//                     "stop".  Fails whenever the stream's text is changed.
//   chat_stream       streamed chat, seed --seed, max_tokens --tokens:
//                     finish "length", no usage.
//   chat_usage        the same with stream_options.include_usage: the same
//                     content, usage null on every chunk but the last, which
//                     has no choices and completion_tokens == --tokens.
//   completion_stream streamed legacy completion, same seed and tokens.
//   chat_whole        non-streamed chat, same seed and tokens: a
//                     chat.completion whose message.content equals
//                     chat_stream's, with usage.
//   chat_cut          streamed chat whose engine resets the connection after
//                     3 tokens (x-sim-fault: reset): the SDK must raise an
//                     APIError (sluice's error event) after the first 3
//                     tokens of chat_stream's text, with no finish_reason,
//                     never end as if the answer were whole.
//
// For every streamed case: no exception; every chunk is of the right object
// type, with one id; the first chat chunk carries role "assistant"; only
// the last chunk with choices has a finish_reason; usage only when asked.
// Each case prints one JSON line on stdout:
//   {"case":..., "ok":true|false, "errors":[...], "content":..., "chunks":N,
//    "finish_reason":..., "usage":{...}|null, "sdk":"<version>"}
// (chat_cut adds "raised":{"class","message","type","code"})
// so the caller can compare the content with what the engine sends.  Exit
// status 0 when every case passed, 1 otherwise, 2 for a bad command line,
// 77 when the SDK is not installed (1 under CI=true; see sdk.mjs).
import { loadSdk } from './sdk.mjs';

const ME = 'sdk_stream';

function usage(msg) {
  process.stderr.write(`${ME}: ${msg}\nusage: node sdk_stream.mjs --base-url URL [--model NAME] [--seed N] [--tokens N]\n`);
  process.exit(2);
}

const opt = { baseUrl: null, model: 'sim-small', seed: 7, tokens: 24 };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const v = args[i + 1];
  if (a === '--base-url' && v !== undefined) opt.baseUrl = v;
  else if (a === '--model' && v !== undefined) opt.model = v;
  else if ((a === '--seed' || a === '--tokens') && v !== undefined) {
    if (!/^[0-9]+$/.test(v) || (a === '--tokens' && Number(v) < 1)) usage(`${a} needs a whole number, got ${v}`);
    opt[a.slice(2)] = Number(v);
  } else usage(a.startsWith('--') && v === undefined ? `${a} needs a value` : `unknown argument ${a}`);
  i++;
}
if (!opt.baseUrl) usage('--base-url is required');

const { OpenAI, version } = await loadSdk(ME);
const client = new OpenAI({ baseURL: opt.baseUrl, apiKey: 'x', maxRetries: 0, timeout: 60_000 });

// The x-sim-script tokens (sim-engine.md: split at '|', percent-decoded).
const SCRIPT_TOKENS = [
  'Hello', ' "quoted"', ' back\\slash', '\nnew line', '\ttab', ' café', ' naïve —', ' 5 €', ' 😀',
  ' {"k": 1}', ' </p>', '\n\ndata: [DONE]\n\n', ' 100% | pipe', ' \u2028sep',
];
const SCRIPT_HEADER = SCRIPT_TOKENS.map((t) => encodeURIComponent(t)).join('|');

const PROMPT = [{ role: 'user', content: 'Say something.' }];
const seedHeaders = () => ({ 'x-sim-seed': String(opt.seed) });

// Reads a streamed answer the way a user does and checks its shape.
// kind: 'chat' or 'completion'.  Returns the case's result object.
async function readStream(name, kind, stream, wantUsage) {
  const r = { case: name, ok: true, errors: [], content: '', chunks: 0, finish_reason: null, usage: null, sdk: version };
  const bad = (m) => r.errors.push(m);
  const wantObject = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  let id = null;
  let lastChoiceChunk = -1;
  let finishes = 0;
  let sawRole = false;
  for await (const chunk of stream) {
    const k = r.chunks++;
    if (chunk.object !== wantObject) bad(`chunk ${k}: object ${JSON.stringify(chunk.object)}, want ${wantObject}`);
    if (id === null) id = chunk.id;
    else if (chunk.id !== id) bad(`chunk ${k}: id ${JSON.stringify(chunk.id)} differs from the first chunk's ${JSON.stringify(id)}`);
    if (!Array.isArray(chunk.choices)) {
      bad(`chunk ${k}: choices is not an array`);
      continue;
    }
    if (chunk.usage != null) {
      if (!wantUsage) bad(`chunk ${k}: usage ${JSON.stringify(chunk.usage)} though include_usage was not asked`);
      else if (chunk.choices.length !== 0) bad(`chunk ${k}: usage on a chunk with choices`);
      if (r.usage !== null) bad(`chunk ${k}: a second usage object`);
      r.usage = chunk.usage;
    }
    if (chunk.choices.length === 0) continue;
    if (r.usage !== null) bad(`chunk ${k}: a choice chunk after the usage chunk`);
    if (chunk.choices.length !== 1 || chunk.choices[0].index !== 0) bad(`chunk ${k}: want one choice with index 0`);
    const c = chunk.choices[0];
    if (kind === 'chat') {
      if (c.delta == null) bad(`chunk ${k}: no delta`);
      if (c.delta?.role !== undefined) {
        if (c.delta.role !== 'assistant') bad(`chunk ${k}: role ${JSON.stringify(c.delta.role)}`);
        if (r.content !== '' || sawRole) bad(`chunk ${k}: role after the stream started`);
        sawRole = true;
      }
      if (typeof c.delta?.content === 'string') r.content += c.delta.content;
    } else if (typeof c.text === 'string') {
      r.content += c.text;
    } else {
      bad(`chunk ${k}: text is not a string`);
    }
    if (finishes > 0) bad(`chunk ${k}: a choice chunk after the finish_reason`);
    if (c.finish_reason != null) {
      finishes++;
      r.finish_reason = c.finish_reason;
    }
    lastChoiceChunk = k;
  }
  if (kind === 'chat' && !sawRole) bad('no chunk carried role "assistant"');
  if (finishes !== 1) bad(`${finishes} chunks had a finish_reason, want exactly 1 (on the last choice chunk)`);
  if (lastChoiceChunk < 0) bad('no chunk with choices');
  if (wantUsage) {
    if (r.usage === null) bad('include_usage was asked and no usage chunk came');
    else if (r.usage.completion_tokens !== opt.tokens)
      bad(`usage.completion_tokens ${r.usage.completion_tokens}, want ${opt.tokens}`);
  }
  return r;
}

function expect(r, what, got, want) {
  if (got !== want) r.errors.push(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

const cases = {
  async chat_script() {
    const stream = await client.chat.completions.create(
      { model: opt.model, messages: PROMPT, stream: true },
      { headers: { 'x-sim-script': SCRIPT_HEADER } });
    const r = await readStream('chat_script', 'chat', stream, false);
    expect(r, 'content', r.content, SCRIPT_TOKENS.join(''));
    expect(r, 'finish_reason', r.finish_reason, 'stop');
    return r;
  },
  async chat_stream() {
    const stream = await client.chat.completions.create(
      { model: opt.model, messages: PROMPT, stream: true, max_tokens: opt.tokens }, { headers: seedHeaders() });
    const r = await readStream('chat_stream', 'chat', stream, false);
    expect(r, 'finish_reason', r.finish_reason, 'length');
    return r;
  },
  async chat_usage() {
    const stream = await client.chat.completions.create(
      { model: opt.model, messages: PROMPT, stream: true, max_tokens: opt.tokens, stream_options: { include_usage: true } },
      { headers: seedHeaders() });
    const r = await readStream('chat_usage', 'chat', stream, true);
    expect(r, 'finish_reason', r.finish_reason, 'length');
    return r;
  },
  async completion_stream() {
    const stream = await client.completions.create(
      { model: opt.model, prompt: 'Say something.', stream: true, max_tokens: opt.tokens }, { headers: seedHeaders() });
    const r = await readStream('completion_stream', 'completion', stream, false);
    expect(r, 'finish_reason', r.finish_reason, 'length');
    return r;
  },
  async chat_whole() {
    const c = await client.chat.completions.create(
      { model: opt.model, messages: PROMPT, max_tokens: opt.tokens }, { headers: seedHeaders() });
    const r = { case: 'chat_whole', ok: true, errors: [], content: null, chunks: 0, finish_reason: null, usage: c.usage ?? null, sdk: version };
    expect(r, 'object', c.object, 'chat.completion');
    if (!Array.isArray(c.choices) || c.choices.length !== 1) {
      r.errors.push(`choices: ${JSON.stringify(c.choices)}`);
      return r;
    }
    r.content = c.choices[0].message?.content ?? null;
    r.finish_reason = c.choices[0].finish_reason ?? null;
    expect(r, 'message.role', c.choices[0].message?.role, 'assistant');
    expect(r, 'finish_reason', r.finish_reason, 'length');
    expect(r, 'usage.completion_tokens', r.usage?.completion_tokens, opt.tokens);
    if (r.usage && r.usage.total_tokens !== r.usage.prompt_tokens + r.usage.completion_tokens)
      r.errors.push(`usage does not add up: ${JSON.stringify(r.usage)}`);
    return r;
  },
  // The stream must end in an APIError.
  async chat_cut() {
    const stream = await client.chat.completions.create(
      { model: opt.model, messages: PROMPT, stream: true, max_tokens: opt.tokens },
      { headers: { ...seedHeaders(), 'x-sim-fault': 'reset', 'x-sim-fault-at': '3' } });
    const r = { case: 'chat_cut', ok: true, errors: [], content: '', chunks: 0, finish_reason: null, usage: null, sdk: version, raised: null };
    try {
      for await (const chunk of stream) {
        r.chunks++;
        const c = chunk.choices?.[0];
        if (typeof c?.delta?.content === 'string') r.content += c.delta.content;
        if (c?.finish_reason != null) r.finish_reason = c.finish_reason;
      }
      r.errors.push('the stream ended without an error: a cut stream looked whole to the SDK');
    } catch (e) {
      r.raised = { class: e?.constructor?.name, message: e?.message, type: e?.type ?? null, code: e?.code ?? null };
      if (!(e instanceof OpenAI.APIError)) r.errors.push(`the SDK raised ${e?.constructor?.name}, want an APIError: ${e?.message}`);
    }
    if (r.finish_reason !== null) r.errors.push(`finish_reason ${JSON.stringify(r.finish_reason)} on a cut stream`);
    return r;
  },
};

const results = {};
let failed = 0;
for (const [name, run] of Object.entries(cases)) {
  let r;
  try {
    r = await run();
  } catch (e) {
    r = { case: name, ok: false, errors: [`the SDK raised ${e?.constructor?.name}: ${e?.message}`], content: null, chunks: 0,
          finish_reason: null, usage: null, sdk: version };
  }
  results[name] = r;
}
// The same seed and token count give the same text, streamed or not, with
// or without usage.
const ref = results.chat_stream.content;
for (const name of ['chat_usage', 'chat_whole']) {
  if (ref !== null && results[name].content !== null && results[name].content !== ref)
    results[name].errors.push(`content differs from chat_stream's: ${JSON.stringify(results[name].content)} vs ${JSON.stringify(ref)}`);
}
// The cut stream carried chat_stream's first 3 tokens before the error.
if (ref !== null && !(results.chat_cut.content.length > 0 && ref.startsWith(results.chat_cut.content)))
  results.chat_cut.errors.push(`content before the error ${JSON.stringify(results.chat_cut.content)} is not a prefix of chat_stream's`);
for (const r of Object.values(results)) {
  r.ok = r.errors.length === 0;
  if (!r.ok) {
    failed++;
    process.stderr.write(`${ME}: ${r.case} failed:\n  ${r.errors.join('\n  ')}\n`);
  }
  process.stdout.write(JSON.stringify(r) + '\n');
}
process.exitCode = failed === 0 ? 0 : 1;
