/* fuzz_sse.c: libFuzzer harness for the SSE and NDJSON framing decoder
 * alone (runtime/upstream/sse.h).
 *
 * Input: byte 0 picks the mode (bit 0: NDJSON) and the join buffer's
 * capacity (bits 1..7: 0 a large one, else that many bytes), byte 1 the
 * way the rest is cut into reads; the rest is the body of an event stream.
 * The body is decoded three times: in one read, one byte a read, and in
 * reads cut where byte 1 says.  Besides what ASan and UBSan catch, the
 * harness aborts when
 *   - an event's data is longer than the join buffer, its name longer than
 *     SL_SSE_EVENT_MAX, or a span lies outside the read or the buffer;
 *   - a feed's consumed count exceeds the read;
 *   - the three decodings disagree: the events' data and names in order,
 *     the final result (SL_ETOOBIG or not), pending at the end, the
 *     comment count.
 * Every read is a copy overwritten after its feed, so a span the decoder
 * kept into an earlier read shows as different data.
 *
 * Built by scripts/fuzz (clang, -DSL_FUZZ=ON); seeds in
 * tests/fuzz/corpus/sse/ (tests/fuzz/make_seeds.py). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/errors.h"
#include "runtime/upstream/sse.h"
#include "tests/fuzz/fuzz_common.h"

#define BIG_CAP (1u << 15)

static void fail(const char *what) {
  fprintf(stderr, "fuzz_sse: %s\n", what);
  abort();
}

static char joinbuf[BIG_CAP], copy[1u << 16];

static int inside(const char *p, size_t n, const char *base, size_t cap) {
  return n == 0 || (p >= base && p + n <= base + cap);
}

static digest_t decode(const uint8_t *in, size_t len, int ndjson, size_t cap, int how, uint8_t seed) {
  digest_t d = digest_init();
  sl_sse_t st;
  sl_sse_init(&st, joinbuf, cap);
  sl_sse_set_ndjson(&st, ndjson);
  size_t off = 0;
  int rc = 0;
  cutter_t cut = cutter_init(how, seed, 61);
  while (off < len && rc >= 0) {
    size_t n = cutter_next(&cut, len - off);
    memcpy(copy, in + off, n);
    size_t pos = 0;
    while (pos < n) {
      size_t used = 0;
      sl_sse_event_t ev;
      rc = sl_sse_feed(&st, copy + pos, n - pos, &used, &ev);
      if (rc < 0) break;
      if (used > n - pos) fail("consumed more than the read");
      pos += used;
      if (rc == 0) {
        if (pos != n) fail("0 returned before the read was consumed");
        break;
      }
      d.events++;
      if (ev.data_len > cap) fail("an event's data is longer than the join buffer");
      if (ev.event_len > SL_SSE_EVENT_MAX) fail("an event name is longer than SL_SSE_EVENT_MAX");
      if (ev.in_input ? !inside(ev.data, ev.data_len, copy, n) : !inside(ev.data, ev.data_len, joinbuf, cap))
        fail("data span outside its buffer");
      if (ev.event == NULL && ev.event_len != 0) fail("no name but a name length");
      mix_int(&d, (int64_t)ev.data_len);
      mix(&d, ev.data, ev.data_len);
      mix_int(&d, ev.event != NULL);
      mix_int(&d, (int64_t)ev.event_len);
      if (ev.event != NULL) mix(&d, ev.event, ev.event_len);
      if (used == 0 && rc == 1 && pos < n) {
        /* An event with no byte consumed is allowed once (a dispatch of
         * state left from the last read); the next call must move on. */
      }
    }
    memset(copy, 0xA5, n);
    off += n;
  }
  mix_int(&d, rc < 0 ? rc : 0);
  if (rc >= 0) {
    mix_int(&d, sl_sse_pending(&st));
    mix_int(&d, (int64_t)st.comments);
  }
  return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2 || size - 2 > sizeof(copy)) return 0;
  int ndjson = data[0] & 1;
  size_t cap = data[0] >> 1 ? (size_t)(data[0] >> 1) : BIG_CAP;
  uint8_t seed = data[1];
  data += 2;
  size -= 2;
  digest_t whole = decode(data, size, ndjson, cap, FUZZ_WHOLE, seed);
  digest_t bytes = decode(data, size, ndjson, cap, FUZZ_BYTES, seed);
  digest_t cuts = decode(data, size, ndjson, cap, FUZZ_CUTS, seed);
  if (whole.h != bytes.h || whole.h != cuts.h || whole.events != bytes.events || whole.events != cuts.events) {
    fprintf(stderr, "fuzz_sse: %s, cap %zu: the decodings differ (events %llu whole, %llu byte a read, %llu cut)\n",
            ndjson ? "ndjson" : "sse", cap, (unsigned long long)whole.events, (unsigned long long)bytes.events,
            (unsigned long long)cuts.events);
    abort();
  }
  return 0;
}
