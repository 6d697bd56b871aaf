/* Tests for analyzers/editdist: the bit-parallel Levenshtein distance and
 * LCS against plain dynamic programmes written here, over thousands of
 * random pairs (small and huge alphabets, lengths around the 64-bit block
 * edges), edge cases (empty, length 1, all equal, very long), and the
 * incremental stream against the batch form after every token. */
#include <stdlib.h>

#include "analyzers/editdist.h"
#include "analyzers/status.h"
#include "runtime/base/errors.h"
#include "test.h"

/* analyzers/ has its own codes, by design the same numbers as the
 * runtime's, so one sl_strerror and one Lua table name both. */
_Static_assert(SL_AN_OK == SL_OK && SL_AN_EINVAL == SL_EINVAL && SL_AN_ENOMEM == SL_ENOMEM &&
                   SL_AN_ETOOBIG == SL_ETOOBIG && SL_AN_EPARSE == SL_EPARSE && SL_AN_ENOTFOUND == SL_ENOTFOUND,
               "analyzers/status.h and runtime/base/errors.h disagree");

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void) {
  /* splitmix64: deterministic, so a failure reproduces. */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static size_t rnd_below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

/* Token ids from an alphabet of `sigma` symbols spread over the whole 32-bit
 * range, so the remap table sees large, sparse ids (and 0 and UINT32_MAX). */
static uint32_t sym(size_t k) {
  if (k == 0) return 0;
  if (k == 1) return UINT32_MAX;
  return (uint32_t)(k * 2654435761u + 12345u);
}

static void fill(uint32_t *x, size_t n, size_t sigma) {
  for (size_t i = 0; i < n; i++) x[i] = sym(rnd_below(sigma));
}

/* Reference: the textbook two-row Levenshtein DP. */
static size_t ref_lev(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
  size_t *prev = malloc((nb + 1) * sizeof *prev), *cur = malloc((nb + 1) * sizeof *cur);
  for (size_t j = 0; j <= nb; j++) prev[j] = j;
  for (size_t i = 1; i <= na; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= nb; j++) {
      size_t d = prev[j - 1] + (a[i - 1] != b[j - 1]);
      if (prev[j] + 1 < d) d = prev[j] + 1;
      if (cur[j - 1] + 1 < d) d = cur[j - 1] + 1;
      cur[j] = d;
    }
    size_t *t = prev;
    prev = cur;
    cur = t;
  }
  size_t r = prev[nb];
  free(prev);
  free(cur);
  return r;
}

/* Reference: the textbook LCS DP. */
static size_t ref_lcs(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
  size_t *prev = calloc(nb + 1, sizeof *prev), *cur = calloc(nb + 1, sizeof *cur);
  for (size_t i = 1; i <= na; i++) {
    cur[0] = 0;
    for (size_t j = 1; j <= nb; j++) {
      if (a[i - 1] == b[j - 1]) cur[j] = prev[j - 1] + 1;
      else cur[j] = prev[j] > cur[j - 1] ? prev[j] : cur[j - 1];
    }
    size_t *t = prev;
    prev = cur;
    cur = t;
  }
  size_t r = prev[nb];
  free(prev);
  free(cur);
  return r;
}

/* Reference for SEARCH: the semi-global DP (free start in the text), column
 * by column; out[j] is the best distance of p to a substring ending at
 * text[j]. */
static void ref_search(const uint32_t *p, size_t m, const uint32_t *t, size_t n, size_t *out) {
  size_t *col = malloc((m + 1) * sizeof *col);
  for (size_t i = 0; i <= m; i++) col[i] = i;
  for (size_t j = 0; j < n; j++) {
    size_t diag = col[0];
    col[0] = 0;
    for (size_t i = 1; i <= m; i++) {
      size_t up = col[i];
      size_t d = diag + (p[i - 1] != t[j]);
      if (up + 1 < d) d = up + 1;
      if (col[i - 1] + 1 < d) d = col[i - 1] + 1;
      col[i] = d;
      diag = up;
    }
    out[j] = col[m];
  }
  free(col);
}

static sl_editdist_t *ed_big; /* max_len 6000, shared by the tests */

static void check_pair(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
  size_t d = 0, l = 0;
  ASSERT_EQ(sl_editdist_levenshtein(ed_big, a, na, b, nb, &d), 0);
  ASSERT_EQ(d, ref_lev(a, na, b, nb));
  ASSERT_EQ(sl_editdist_lcs(ed_big, a, na, b, nb, &l), 0);
  ASSERT_EQ(l, ref_lcs(a, na, b, nb));
}

static int pair_ok(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
  int before = sl__test_failed_asserts;
  check_pair(a, na, b, nb);
  return sl__test_failed_asserts == before;
}

static void test_edge_cases(void) {
  uint32_t x[300], y[300];
  size_t d, l;
  ASSERT_EQ(sl_editdist_levenshtein(ed_big, NULL, 0, NULL, 0, &d), 0);
  ASSERT_EQ(d, 0);
  ASSERT_EQ(sl_editdist_lcs(ed_big, NULL, 0, NULL, 0, &l), 0);
  ASSERT_EQ(l, 0);
  fill(x, 300, 50);
  ASSERT_EQ(sl_editdist_levenshtein(ed_big, x, 300, NULL, 0, &d), 0);
  ASSERT_EQ(d, 300);
  ASSERT_EQ(sl_editdist_levenshtein(ed_big, NULL, 0, x, 7, &d), 0);
  ASSERT_EQ(d, 7);
  ASSERT_EQ(sl_editdist_lcs(ed_big, x, 300, NULL, 0, &l), 0);
  ASSERT_EQ(l, 0);
  /* length 1 against length 1 and longer */
  y[0] = x[0];
  ASSERT(pair_ok(x, 1, y, 1));
  y[0] = x[0] + 1;
  ASSERT(pair_ok(x, 1, y, 1));
  ASSERT(pair_ok(x, 1, x, 300));
  ASSERT(pair_ok(x + 5, 1, x, 300));
  /* identical sequences, all-equal sequences, disjoint alphabets */
  for (size_t n = 1; n <= 300; n += 37) {
    ASSERT_EQ(sl_editdist_levenshtein(ed_big, x, n, x, n, &d), 0);
    ASSERT_EQ(d, 0);
    ASSERT_EQ(sl_editdist_lcs(ed_big, x, n, x, n, &l), 0);
    ASSERT_EQ(l, n);
  }
  for (size_t i = 0; i < 300; i++) {
    x[i] = 7;
    y[i] = 7;
  }
  ASSERT(pair_ok(x, 300, y, 129));
  ASSERT(pair_ok(x, 64, y, 64));
  for (size_t i = 0; i < 300; i++) y[i] = 8 + (uint32_t)i;
  ASSERT(pair_ok(x, 300, y, 300));
  ASSERT(pair_ok(x, 65, y, 200));
  /* ids 0 and UINT32_MAX are ordinary ids */
  uint32_t e[3] = {0, UINT32_MAX, 0}, f[3] = {UINT32_MAX, 0, UINT32_MAX};
  ASSERT(pair_ok(e, 3, f, 3));
}

static void test_block_boundaries(void) {
  static const size_t lens[] = {1, 2, 31, 63, 64, 65, 127, 128, 129, 191, 192, 193, 255, 256, 257};
  size_t nl = sizeof lens / sizeof lens[0];
  uint32_t a[300], b[300];
  int checked = 0;
  for (size_t i = 0; i < nl; i++) {
    for (size_t j = 0; j < nl; j++) {
      for (int rep = 0; rep < 6; rep++) {
        size_t sigma = rep < 2 ? 2 : rep < 4 ? 8 : 100000;
        fill(a, lens[i], sigma);
        fill(b, lens[j], sigma);
        if (!pair_ok(a, lens[i], b, lens[j])) return;
        checked++;
      }
    }
  }
  ASSERT_EQ(checked, (int)(nl * nl * 6));
}

static void test_random_agreement(void) {
  uint32_t a[400], b[400];
  static const size_t sigmas[] = {2, 4, 26, 1000, 1u << 30};
  int checked = 0;
  for (int it = 0; it < 4000; it++) {
    size_t sigma = sigmas[it % 5];
    size_t na = rnd_below(it % 3 == 0 ? 400 : 90), nb = rnd_below(it % 4 == 0 ? 400 : 90);
    fill(a, na, sigma);
    if (it % 2) {
      /* b as a mutated copy of a, so distances are small and LCS long. */
      nb = 0;
      for (size_t i = 0; i < na && nb < 399; i++) {
        size_t r = rnd_below(10);
        if (r == 0) continue;
        if (r == 1) b[nb++] = sym(rnd_below(sigma));
        if (r == 2 && nb < 399) b[nb++] = sym(rnd_below(sigma));
        b[nb++] = a[i];
      }
    } else {
      fill(b, nb, sigma);
    }
    if (!pair_ok(a, na, b, nb)) {
      fprintf(stderr, "  at iteration %d: na=%zu nb=%zu sigma=%zu\n", it, na, nb, sigma);
      return;
    }
    checked++;
  }
  ASSERT_EQ(checked, 4000);
}

static void test_very_long(void) {
  size_t n = 5000;
  uint32_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
  fill(a, n, 500);
  for (size_t i = 0; i < n; i++) b[i] = rnd_below(8) ? a[i] : sym(rnd_below(500));
  ASSERT(pair_ok(a, n, b, n - 3));
  fill(b, n, 500);
  ASSERT(pair_ok(a, n, b, n));
  free(a);
  free(b);
}

static void test_errors_and_limits(void) {
  sl_editdist_t *ed;
  uint32_t a[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, b[20] = {0};
  size_t d;
  ASSERT_EQ(sl_editdist_new(4, &ed), 0);
  /* min(na, nb) decides: a pattern of 4 against any text length is fine. */
  ASSERT_EQ(sl_editdist_levenshtein(ed, a, 4, b, 20, &d), 0);
  ASSERT_EQ(d, ref_lev(a, 4, b, 20));
  ASSERT_EQ(sl_editdist_levenshtein(ed, b, 20, a, 4, &d), 0);
  ASSERT_EQ(d, ref_lev(a, 4, b, 20));
  ASSERT_EQ(sl_editdist_levenshtein(ed, a, 5, b, 20, &d), SL_AN_ETOOBIG);
  ASSERT_EQ(sl_editdist_lcs(ed, a, 5, b, 5, &d), SL_AN_ETOOBIG);
  ASSERT_EQ(sl_editdist_levenshtein(ed, NULL, 3, b, 3, &d), SL_AN_EINVAL);
  ASSERT_EQ(sl_editdist_levenshtein(ed, a, 3, b, 3, NULL), SL_AN_EINVAL);
  ASSERT_EQ(sl_editdist_levenshtein(NULL, a, 3, b, 3, &d), SL_AN_EINVAL);
  sl_editdist_free(ed);
  sl_editdist_free(NULL);

  /* Caller memory: too small, misaligned, exact. */
  size_t need = sl_editdist_size(100);
  ASSERT_GT(need, 0);
  uint64_t *mem = malloc(need + 16);
  ASSERT_EQ(sl_editdist_init(mem, need - 1, 100, &ed), SL_AN_ETOOBIG);
  ASSERT_EQ(sl_editdist_init((char *)mem + 1, need, 100, &ed), SL_AN_EINVAL);
  ASSERT_EQ(sl_editdist_init(mem, need, 100, &ed), 0);
  ASSERT_EQ(sl_editdist_levenshtein(ed, a, 10, b, 20, &d), 0);
  ASSERT_EQ(d, ref_lev(a, 10, b, 20));
  free(mem);
  ASSERT_EQ(sl_editdist_size((size_t)1 << 29), 0);
  ASSERT_EQ(sl_editdist_new((size_t)1 << 29, &ed), SL_AN_EINVAL);
}

/* Many calls on one scratch with changing lengths and alphabets: the table
 * is never cleared between calls, so a stale slot must never look live. */
static void test_scratch_reuse(void) {
  sl_editdist_t *ed;
  uint32_t a[70], b[70];
  ASSERT_EQ(sl_editdist_new(70, &ed), 0);
  for (int it = 0; it < 20000; it++) {
    size_t na = rnd_below(71), nb = rnd_below(71);
    size_t sigma = 1 + rnd_below(it % 2 ? 5 : 200);
    fill(a, na, sigma);
    fill(b, nb, sigma);
    size_t d, l;
    ASSERT_EQ(sl_editdist_levenshtein(ed, a, na, b, nb, &d), 0);
    ASSERT_EQ(sl_editdist_lcs(ed, a, na, b, nb, &l), 0);
    if (it % 10 == 0) {
      ASSERT_EQ(d, ref_lev(a, na, b, nb));
      ASSERT_EQ(l, ref_lcs(a, na, b, nb));
    }
  }
  sl_editdist_free(ed);
}

static void stream_case(const uint32_t *p, size_t m, const uint32_t *t, size_t n) {
  sl_editdist_stream_t *g, *s, *l;
  size_t *srch = malloc((n + 1) * sizeof *srch);
  ASSERT_EQ(sl_editdist_stream_new(p, m, SL_EDITDIST_GLOBAL, &g), 0);
  ASSERT_EQ(sl_editdist_stream_new(p, m, SL_EDITDIST_SEARCH, &s), 0);
  ASSERT_EQ(sl_editdist_stream_new(p, m, SL_EDITDIST_LCS, &l), 0);
  ASSERT_EQ(sl_editdist_stream_value(g), m);
  ASSERT_EQ(sl_editdist_stream_value(s), m);
  ASSERT_EQ(sl_editdist_stream_value(l), 0);
  ref_search(p, m, t, n, srch);
  for (size_t j = 0; j < n; j++) {
    size_t vg, vs, vl, ref;
    ASSERT_EQ(sl_editdist_stream_push(g, t[j], &vg), 0);
    ASSERT_EQ(sl_editdist_stream_push(s, t[j], &vs), 0);
    ASSERT_EQ(sl_editdist_stream_push(l, t[j], &vl), 0);
    ASSERT_EQ(sl_editdist_levenshtein(ed_big, p, m, t, j + 1, &ref), 0);
    ASSERT_EQ(vg, ref);
    ASSERT_EQ(sl_editdist_lcs(ed_big, p, m, t, j + 1, &ref), 0);
    ASSERT_EQ(vl, ref);
    ASSERT_EQ(vs, srch[j]);
  }
  ASSERT_UINT_EQ(sl_editdist_stream_count(g), n);
  sl_editdist_stream_free(g);
  sl_editdist_stream_free(s);
  sl_editdist_stream_free(l);
  free(srch);
}

static int stream_ok(const uint32_t *p, size_t m, const uint32_t *t, size_t n) {
  int before = sl__test_failed_asserts;
  stream_case(p, m, t, n);
  return sl__test_failed_asserts == before;
}

static void test_stream_agrees_after_every_token(void) {
  uint32_t p[200], t[400];
  int checked = 0;
  for (int it = 0; it < 600; it++) {
    size_t sigma = it % 3 == 0 ? 3 : it % 3 == 1 ? 30 : 100000;
    size_t m = rnd_below(it % 5 == 0 ? 200 : 70), n = rnd_below(it % 7 == 0 ? 400 : 120);
    fill(p, m, sigma);
    fill(t, n, sigma);
    /* Plant copies of the pattern (with an edit) so SEARCH sees near hits. */
    if (m > 0 && n > m + 2 && it % 2) {
      size_t at = rnd_below(n - m - 1);
      memcpy(t + at, p, m * sizeof *p);
      t[at + rnd_below(m)] = sym(rnd_below(sigma));
    }
    if (!stream_ok(p, m, t, n)) {
      fprintf(stderr, "  at iteration %d: m=%zu n=%zu sigma=%zu\n", it, m, n, sigma);
      return;
    }
    checked++;
  }
  ASSERT_EQ(checked, 600);
}

/* Brute force for SEARCH on a few small cases: min over every start i of
 * the batch distance to t[i..j], including the empty substring. */
static void test_search_brute_force(void) {
  uint32_t p[12], t[40];
  for (int it = 0; it < 300; it++) {
    size_t m = 1 + rnd_below(12), n = 1 + rnd_below(40);
    fill(p, m, 4);
    fill(t, n, 4);
    sl_editdist_stream_t *s;
    ASSERT_EQ(sl_editdist_stream_new(p, m, SL_EDITDIST_SEARCH, &s), 0);
    for (size_t j = 0; j < n; j++) {
      size_t v, best = m, d;
      ASSERT_EQ(sl_editdist_stream_push(s, t[j], &v), 0);
      for (size_t i = 0; i <= j; i++) {
        ASSERT_EQ(sl_editdist_levenshtein(ed_big, p, m, t + i, j + 1 - i, &d), 0);
        if (d < best) best = d;
      }
      ASSERT_EQ(v, best);
    }
    sl_editdist_stream_free(s);
  }
}

static void test_stream_reset_and_errors(void) {
  uint32_t p[3] = {1, 2, 3};
  sl_editdist_stream_t *s;
  size_t v;
  ASSERT_EQ(sl_editdist_stream_new(p, 3, 7, &s), SL_AN_EINVAL);
  ASSERT_EQ(sl_editdist_stream_new(NULL, 3, SL_EDITDIST_GLOBAL, &s), SL_AN_EINVAL);
  ASSERT_EQ(sl_editdist_stream_new(p, 3, SL_EDITDIST_GLOBAL, &s), 0);
  ASSERT_EQ(sl_editdist_stream_push(s, 1, &v), 0);
  ASSERT_EQ(v, 2);
  ASSERT_EQ(sl_editdist_stream_push(s, 2, &v), 0);
  ASSERT_EQ(v, 1);
  ASSERT_EQ(sl_editdist_stream_push(s, 3, &v), 0);
  ASSERT_EQ(v, 0);
  ASSERT_EQ(sl_editdist_stream_push(s, 3, &v), 0);
  ASSERT_EQ(v, 1);
  sl_editdist_stream_reset(s);
  ASSERT_EQ(sl_editdist_stream_value(s), 3);
  ASSERT_UINT_EQ(sl_editdist_stream_count(s), 0);
  ASSERT_EQ(sl_editdist_stream_push(s, 1, &v), 0);
  ASSERT_EQ(v, 2);
  ASSERT_EQ(sl_editdist_stream_push(s, 1, NULL), SL_AN_EINVAL);
  sl_editdist_stream_free(s);

  /* Empty pattern. */
  ASSERT_EQ(sl_editdist_stream_new(NULL, 0, SL_EDITDIST_GLOBAL, &s), 0);
  ASSERT_EQ(sl_editdist_stream_push(s, 1, &v), 0);
  ASSERT_EQ(sl_editdist_stream_push(s, 1, &v), 0);
  ASSERT_EQ(v, 2);
  sl_editdist_stream_free(s);
  ASSERT_EQ(sl_editdist_stream_new(NULL, 0, SL_EDITDIST_SEARCH, &s), 0);
  ASSERT_EQ(sl_editdist_stream_push(s, 1, &v), 0);
  ASSERT_EQ(v, 0);
  sl_editdist_stream_free(s);

  /* Caller memory. */
  size_t need = sl_editdist_stream_size(3);
  uint64_t mem[64];
  ASSERT_LE(need, sizeof mem);
  ASSERT_EQ(sl_editdist_stream_init(mem, need - 1, p, 3, SL_EDITDIST_LCS, &s), SL_AN_ETOOBIG);
  ASSERT_EQ(sl_editdist_stream_init(mem, need, p, 3, SL_EDITDIST_LCS, &s), 0);
  ASSERT_EQ(sl_editdist_stream_push(s, 2, &v), 0);
  ASSERT_EQ(sl_editdist_stream_push(s, 3, &v), 0);
  ASSERT_EQ(v, 2);
}

static void test_stream_very_long_text(void) {
  /* A pattern of 1000 against a text of 20000: GLOBAL and LCS checked
   * against the batch form every 997 tokens and at the end. */
  size_t m = 1000, n = 20000;
  uint32_t *p = malloc(m * sizeof *p), *t = malloc(n * sizeof *t);
  fill(p, m, 300);
  fill(t, n, 300);
  for (size_t i = 0; i < m; i++) t[5000 + i] = p[i];
  sl_editdist_stream_t *g, *l;
  ASSERT_EQ(sl_editdist_stream_new(p, m, SL_EDITDIST_GLOBAL, &g), 0);
  ASSERT_EQ(sl_editdist_stream_new(p, m, SL_EDITDIST_LCS, &l), 0);
  for (size_t j = 0; j < n; j++) {
    size_t vg, vl, ref;
    ASSERT_EQ(sl_editdist_stream_push(g, t[j], &vg), 0);
    ASSERT_EQ(sl_editdist_stream_push(l, t[j], &vl), 0);
    if (j % 997 == 0 || j + 1 == n) {
      ASSERT_EQ(sl_editdist_levenshtein(ed_big, p, m, t, j + 1, &ref), 0);
      ASSERT_EQ(vg, ref);
      ASSERT_EQ(sl_editdist_lcs(ed_big, p, m, t, j + 1, &ref), 0);
      ASSERT_EQ(vl, ref);
    }
  }
  size_t ref;
  ASSERT_EQ(sl_editdist_levenshtein(ed_big, p, m, t, n, &ref), 0);
  ASSERT_EQ(ref, ref_lev(p, m, t, n));
  sl_editdist_stream_free(g);
  sl_editdist_stream_free(l);
  free(p);
  free(t);
}

int main(void) {
  if (sl_editdist_new(6000, &ed_big) != 0) return 1;
  SL_RUN(test_edge_cases);
  SL_RUN(test_block_boundaries);
  SL_RUN(test_random_agreement);
  SL_RUN(test_very_long);
  SL_RUN(test_errors_and_limits);
  SL_RUN(test_scratch_reuse);
  SL_RUN(test_stream_agrees_after_every_token);
  SL_RUN(test_search_brute_force);
  SL_RUN(test_stream_reset_and_errors);
  SL_RUN(test_stream_very_long_text);
  sl_editdist_free(ed_big);
  return SL_TEST_EXIT();
}
