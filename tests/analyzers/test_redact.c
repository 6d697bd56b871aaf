/* test_redact.c: the redaction classes of analyzers/redact.h.
 *
 * Each case is a text and the exact matches the grammar gives; every case is
 * fed whole, byte by byte and split at every offset, and must give the same
 * matches, with the hold-back promise checked after every piece: no match
 * reported later starts before fed - holdback.
 */
#include <stdlib.h>
#include <string.h>

#include "analyzers/redact.h"
#include "test.h"

#define MAXM 64

typedef struct {
  sl_rx_match_t m[MAXM];
  size_t n;
  uint64_t low[4096]; /* after each piece: fed - holdback */
  uint64_t low_at[4096];
  int nlow;
  int broken;         /* a match started before a promised bound */
} run_t;

/* Feeds text in pieces cut at cuts[0..ncuts) and collects the matches. */
static void run(const sl_rx_t *rx, const char *text, size_t len, const size_t *cuts, int ncuts, run_t *r) {
  memset(r, 0, sizeof(*r));
  sl_rx_stream_t st;
  sl_rx_stream_init(&st, rx);
  uint64_t bound = 0;
  size_t at = 0;
  for (int k = 0; k <= ncuts; k++) {
    size_t end = k < ncuts ? cuts[k] : len;
    while (at < end) {
      sl_rx_match_t m[SL_RX_MAX_MATCHES];
      size_t nm, used;
      ASSERT_EQ(sl_rx_feed(&st, text + at, end - at, m, SL_RX_MAX_MATCHES, &nm, &used), 0);
      for (size_t i = 0; i < nm && r->n < MAXM; i++) {
        if (m[i].start < bound) r->broken = 1;
        r->m[r->n++] = m[i];
      }
      at += used;
    }
    size_t hb = sl_rx_holdback(&st);
    ASSERT(hb <= st.fed);
    uint64_t low = st.fed - hb;
    ASSERT(low >= bound); /* the bound never moves back */
    bound = low;
  }
  sl_rx_match_t m[SL_RX_MAX_MATCHES];
  size_t nm;
  ASSERT_EQ(sl_rx_finish(&st, m, SL_RX_MAX_MATCHES, &nm), 0);
  for (size_t i = 0; i < nm && r->n < MAXM; i++) {
    if (m[i].start < bound) r->broken = 1;
    r->m[r->n++] = m[i];
  }
}

static int same(const run_t *a, const run_t *b) {
  if (a->n != b->n) return 0;
  for (size_t i = 0; i < a->n; i++)
    if (a->m[i].start != b->m[i].start || a->m[i].end != b->m[i].end || a->m[i].cls != b->m[i].cls) return 0;
  return 1;
}

typedef struct {
  const char *text;
  const char *want[4]; /* the matched substrings, in order of their end */
} case_t;

static const case_t cases[] = {
    {"key sk-abcdefghijklmnopqrst1 end", {"sk-abcdefghijklmnopqrst1"}},
    {"sk-proj-AbC_dEf-0123456789xyz", {"sk-proj-AbC_dEf-0123456789xyz"}},
    {"(sk-abcdefghijklmnopqrstu)", {"sk-abcdefghijklmnopqrstu"}},
    {"sk-short and task-force-abcdefghijklmnopqrstuvw ask-abcdefghijklmnopqrstuvw", {NULL}},
    {"Authorization: Bearer abcdefghijklmnop.QRST-uv==, next", {"abcdefghijklmnop.QRST-uv=="}},
    {"bearer   ABCDEFGHIJKLMNOPQRSTUVWXYZ", {"ABCDEFGHIJKLMNOPQRSTUVWXYZ"}},
    {"Bearer abc and unbearer abcdefghijklmnopqrs", {NULL}},
    {"id AKIAIOSFODNN7EXAMPLE.", {"AKIAIOSFODNN7EXAMPLE"}},
    {"ASIAABCDEFGHIJKLMNOP", {"ASIAABCDEFGHIJKLMNOP"}},
    {"AKIAIOSFODNN7EXAMPL AKIAIOSFODNN7EXAMPLEX xAKIAIOSFODNN7EXAMPLE AKIAiOSFODNN7EXAMPLE ZZZZIOSFODNN7EXAMPLE",
     {NULL}},
    {"mail bob.smith+tag@example.co.uk.", {"bob.smith+tag@example.co.uk"}},
    {"<alice@mail.example.org>", {"alice@mail.example.org"}},
    {"user@localhost a@b.c @example.com x@-bad.com .a@b.com a..b@c.com a.@b.com", {NULL}},
    {"caf\xc3\xa9 carol@ex-ample.net \xe2\x80\x94 ok", {"carol@ex-ample.net"}},
    {"two: a@bc.de and sk-aaaaaaaaaaaaaaaaaaaaaaaa", {"a@bc.de", "sk-aaaaaaaaaaaaaaaaaaaaaaaa"}},
};

static void check_case(const sl_rx_t *rx, const case_t *c) {
  size_t len = strlen(c->text);
  run_t whole, part;
  run(rx, c->text, len, NULL, 0, &whole);
  ASSERT_EQ(whole.broken, 0);
  size_t nwant = 0;
  while (nwant < 4 && c->want[nwant]) nwant++;
  if (whole.n != nwant) fprintf(stderr, "  text \"%s\": %zu matches, want %zu\n", c->text, whole.n, nwant);
  ASSERT_EQ(whole.n, nwant);
  for (size_t i = 0; i < nwant; i++) {
    size_t wl = strlen(c->want[i]);
    ASSERT_EQ(whole.m[i].end - whole.m[i].start, wl);
    ASSERT(memcmp(c->text + whole.m[i].start, c->want[i], wl) == 0);
  }
  /* Byte by byte. */
  size_t cuts[4096];
  for (size_t i = 0; i + 1 < len && i < 4096; i++) cuts[i] = i + 1;
  run(rx, c->text, len, cuts, (int)(len - 1), &part);
  ASSERT(same(&whole, &part));
  ASSERT_EQ(part.broken, 0);
  /* Every single split and every pair of splits 5 apart. */
  for (size_t a = 1; a < len; a++) {
    size_t cc[2] = {a, a + 5};
    run(rx, c->text, len, cc, a + 5 < len ? 2 : 1, &part);
    ASSERT(same(&whole, &part));
    ASSERT_EQ(part.broken, 0);
  }
}

static void test_classes_at_every_split(void) {
  sl_rx_t *rx;
  ASSERT_EQ(sl_rx_new(SL_RX_ALL, &rx), 0);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) check_case(rx, &cases[i]);
  sl_rx_free(rx);
}

static void test_over_long_and_holdback(void) {
  sl_rx_t *rx;
  ASSERT_EQ(sl_rx_new(SL_RX_OPENAI_KEY, &rx), 0);
  /* A 600-byte key: covered whole, in pieces of at most 256. */
  char text[700];
  memcpy(text, "x sk-", 5);
  for (int i = 5; i < 602; i++) text[i] = (char)('a' + i % 26);
  memcpy(text + 602, " y", 3);
  run_t r;
  run(rx, text, strlen(text), NULL, 0, &r);
  ASSERT_GE(r.n, 3);
  ASSERT_EQ(r.m[0].start, 2);
  for (size_t i = 0; i < r.n; i++) {
    ASSERT_LE(r.m[i].end - r.m[i].start, 256);
    if (i > 0) ASSERT_EQ(r.m[i].start, r.m[i - 1].end);
  }
  ASSERT_EQ(r.m[r.n - 1].end, 602);
  /* Hold-back: the candidate from its "s"; nothing once it broke. */
  sl_rx_stream_t st;
  sl_rx_stream_init(&st, rx);
  sl_rx_match_t m[SL_RX_MAX_MATCHES];
  size_t nm, used;
  ASSERT_EQ(sl_rx_feed(&st, "hello sk-abc", 12, m, SL_RX_MAX_MATCHES, &nm, &used), 0);
  ASSERT_EQ(sl_rx_holdback(&st), 6);
  ASSERT_EQ(sl_rx_feed(&st, " done", 5, m, SL_RX_MAX_MATCHES, &nm, &used), 0);
  ASSERT_EQ(nm, 0);
  ASSERT_EQ(sl_rx_holdback(&st), 0);
  /* At the end a key valid as it stands is reported by finish. */
  ASSERT_EQ(sl_rx_feed(&st, " sk-0123456789abcdefghij", 24, m, SL_RX_MAX_MATCHES, &nm, &used), 0);
  ASSERT_EQ(nm, 0);
  ASSERT_EQ(sl_rx_finish(&st, m, SL_RX_MAX_MATCHES, &nm), 0);
  ASSERT_EQ(nm, 1);
  ASSERT_EQ(m[0].end - m[0].start, 23);
  sl_rx_free(rx);
}

static void test_errors_and_names(void) {
  sl_rx_t *rx;
  ASSERT_EQ(sl_rx_new(0, &rx), SL_AN_EINVAL);
  ASSERT_EQ(sl_rx_new(64, &rx), SL_AN_EINVAL);
  ASSERT_EQ(sl_rx_class_bit("email"), SL_RX_EMAIL);
  ASSERT_EQ(sl_rx_class_bit("passwords"), 0);
  ASSERT_STR_EQ(sl_rx_class_name(SL_RX_BEARER), "bearer");
  ASSERT_EQ(sl_rx_new(SL_RX_EMAIL, &rx), 0);
  sl_rx_stream_t st;
  sl_rx_stream_init(&st, rx);
  sl_rx_match_t m[2];
  size_t nm, used;
  ASSERT_EQ(sl_rx_feed(&st, "abc", 3, m, 2, &nm, &used), SL_AN_ETOOBIG);
  sl_rx_free(rx);
}

int main(void) {
  SL_RUN(test_classes_at_every_split);
  SL_RUN(test_over_long_and_holdback);
  SL_RUN(test_errors_and_names);
  return SL_TEST_EXIT();
}
