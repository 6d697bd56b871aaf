/* fuzz_upstream.c: libFuzzer harness for the upstream response decoder
 * (runtime/upstream/upstream_decoder.h) under every adapter: llhttp, the
 * framing (SSE, or NDJSON for Ollama) and each adapter's schema scan.
 *
 * Input: byte 0 picks the adapter, byte 1 the way the rest is cut into
 * reads; the rest is the engine's whole HTTP response.  The response is
 * decoded three times: in one read, one byte a read, and in reads cut
 * where byte 1 says.  Besides what ASan and UBSan catch, the harness
 * aborts when
 *   - an event's spans leave its payload, or its counts their arrays;
 *   - the three decodings disagree: events, their text, reasoning, ids,
 *     finish, usage and error, or the result of the feeds and of eof.
 * A decoder must not care where the network cut the bytes.
 *
 * Built by scripts/fuzz (clang, -DSL_FUZZ=ON); seeds in
 * tests/fuzz/corpus/upstream/, made from tests/fixtures/ by
 * tests/fuzz/make_seeds.py. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/upstream/adapter.h"
#include "runtime/upstream/event.h"
#include "runtime/upstream/upstream_decoder.h"
#include "tests/fuzz/fuzz_common.h"

/* Larger than any input libFuzzer is given here (scripts/fuzz sets
 * -max_len below it), so no event is too big whichever way it is cut. */
#define JOIN_CAP (1u << 17)

static const sl_adapter_t *const adapters[] = {
    &sl_adapter_openai, &sl_adapter_vllm, &sl_adapter_llamacpp, &sl_adapter_tgi, &sl_adapter_ollama,
};
#define NADAPTERS (sizeof(adapters) / sizeof(adapters[0]))

/* A span must lie inside the payload it was scanned from. */
static void check_span(const sl_event_t *ev, sl_span_t s, const char *what) {
  if (s.n == 0) return;
  if (s.p < ev->raw.p || s.p + s.n > ev->raw.p + ev->raw.n) {
    fprintf(stderr, "fuzz_upstream: %s span outside the payload\n", what);
    abort();
  }
}

static void mix_span(digest_t *d, sl_span_t s) {
  mix_int(d, (int64_t)s.n);
  mix(d, s.p, s.n);
}

static int on_event(void *ud, const sl_event_t *ev) {
  digest_t *d = ud;
  d->events++;
  if (ev->n_token_ids < 0 || ev->n_token_ids > SL_EV_MAX_TOKEN_IDS || ev->n_tool_calls < 0 ||
      ev->n_tool_calls > SL_EV_MAX_TOOL_CALLS) {
    fprintf(stderr, "fuzz_upstream: a count past its array\n");
    abort();
  }
  mix_int(d, ev->kind);
  mix_int(d, ev->ends_stream);
  if (ev->kind == SL_EV_DONE) return 0;
  const sl_span_t spans[] = {ev->id, ev->object, ev->model, ev->role, ev->text, ev->reasoning,
                             ev->finish_raw, ev->usage_member, ev->err_message, ev->err_type, ev->err_code};
  const char *names[] = {"id", "object", "model", "role", "text", "reasoning",
                         "finish_raw", "usage_member", "err_message", "err_type", "err_code"};
  for (size_t i = 0; i < sizeof(spans) / sizeof(spans[0]); i++) {
    check_span(ev, spans[i], names[i]);
    mix_span(d, spans[i]);
  }
  for (int i = 0; i < ev->n_tool_calls; i++) {
    const sl_tool_delta_t *t = &ev->tool_calls[i];
    check_span(ev, t->id, "tool id");
    check_span(ev, t->name, "tool name");
    check_span(ev, t->arguments, "tool arguments");
    mix_int(d, t->index);
    mix_span(d, t->arguments);
  }
  mix_span(d, ev->raw);
  int64_t ints[] = {ev->has_text, ev->has_reasoning, ev->finish, ev->has_usage, ev->prompt_tokens,
                    ev->completion_tokens, ev->total_tokens, ev->usage_refused, ev->has_token_ids,
                    ev->n_token_ids, ev->token_ids_dropped, ev->n_choices, ev->has_logprobs};
  mix(d, ints, sizeof(ints));
  mix(d, ev->token_ids, sizeof(ev->token_ids[0]) * (size_t)ev->n_token_ids);
  return 0;
}

/* Decodes in[0..len) with adapter a, cut into reads: cut(i) says how long
 * read i is.  Returns the digest with the feed's and eof's results. */
static char join_a[JOIN_CAP], copy[JOIN_CAP];
static sl_updec_t dec;

static digest_t decode(const sl_adapter_t *a, const uint8_t *in, size_t len, int how, uint8_t seed) {
  digest_t d = digest_init();
  sl_updec_init(&dec, join_a, sizeof(join_a));
  sl_updec_set_adapter(&dec, a);
  size_t off = 0;
  int rc = 0;
  cutter_t cut = cutter_init(how, seed, 97);
  while (off < len && rc == 0) {
    size_t n = cutter_next(&cut, len - off);
    /* Each read is a copy that is overwritten after the feed: the decoder
     * must keep nothing pointing into it. */
    memcpy(copy, in + off, n);
    rc = sl_updec_feed(&dec, copy, n, on_event, &d);
    memset(copy, 0xA5, n);
    off += n;
  }
  mix_int(&d, rc);
  mix_int(&d, sl_updec_eof(&dec));
  mix_int(&d, dec.status);
  mix_int(&d, dec.saw_done);
  mix_int(&d, dec.message_done);
  return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2 || size - 2 > JOIN_CAP / 2) return 0;
  const sl_adapter_t *a = adapters[data[0] % NADAPTERS];
  uint8_t seed = data[1];
  data += 2;
  size -= 2;
  digest_t whole = decode(a, data, size, FUZZ_WHOLE, seed);
  digest_t bytes = decode(a, data, size, FUZZ_BYTES, seed);
  digest_t cuts = decode(a, data, size, FUZZ_CUTS, seed);
  if (whole.h != bytes.h || whole.h != cuts.h || whole.events != bytes.events || whole.events != cuts.events) {
    fprintf(stderr, "fuzz_upstream: adapter %s: the decodings differ (events %llu whole, %llu byte a read, %llu cut)\n",
            a->name, (unsigned long long)whole.events, (unsigned long long)bytes.events,
            (unsigned long long)cuts.events);
    abort();
  }
  return 0;
}
