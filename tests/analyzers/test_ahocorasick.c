/* Tests for analyzers/ahocorasick: every match against a brute-force scan
 * written here (each pattern compared at each end position), over thousands
 * of random pattern sets and texts cut into random chunks, with and without
 * case folding; holdback against the brute-force longest suffix that is an
 * extendable pattern prefix, after every chunk, and the property that makes
 * it safe (no match ever starts in bytes already released); a bounded
 * match array; edge cases (one-byte patterns, duplicates, patterns inside
 * patterns, every byte value, very long input) and errors. */
#include <stdlib.h>

#include "analyzers/ahocorasick.h"
#include "analyzers/status.h"
#include "test.h"

static uint64_t rng_state = 0xBB67AE8584CAA73Bull;

static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static size_t rnd_below(size_t n) { return (size_t)(rnd() % n); }

static unsigned char fold(unsigned char c, int nocase) {
  return nocase && c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static int same(const unsigned char *a, const unsigned char *b, size_t n, int nocase) {
  for (size_t i = 0; i < n; i++)
    if (fold(a[i], nocase) != fold(b[i], nocase)) return 0;
  return 1;
}

/* Reference matches, in the kernel's order: end ascending, then length
 * descending, then pattern index ascending. */
static size_t ref_matches(const unsigned char *text, size_t n, char **pats, const size_t *lens,
                          size_t np, int nocase, sl_ac_match_t *out) {
  size_t cnt = 0;
  size_t *order = malloc(np * sizeof *order);
  for (size_t i = 0; i < np; i++) order[i] = i;
  for (size_t i = 1; i < np; i++) /* insertion sort by (len desc, index asc) */
    for (size_t j = i; j > 0 && lens[order[j - 1]] < lens[order[j]]; j--) {
      size_t t = order[j];
      order[j] = order[j - 1];
      order[j - 1] = t;
    }
  for (size_t e = 1; e <= n; e++) {
    for (size_t oi = 0; oi < np; oi++) {
      size_t p = order[oi];
      if (lens[p] <= e && same(text + e - lens[p], (const unsigned char *)pats[p], lens[p], nocase)) {
        out[cnt].end = e;
        out[cnt].pattern = (uint32_t)p;
        out[cnt].len = (uint32_t)lens[p];
        cnt++;
      }
    }
  }
  free(order);
  return cnt;
}

/* Reference holdback after n bytes: the longest suffix of the text that is
 * a proper prefix of some pattern. */
static size_t ref_hold(const unsigned char *text, size_t n, char **pats, const size_t *lens,
                       size_t np, int nocase) {
  size_t best = 0;
  for (size_t p = 0; p < np; p++)
    for (size_t l = lens[p] - 1; l > best; l--)
      if (l <= n && same(text + n - l, (const unsigned char *)pats[p], l, nocase)) {
        best = l;
        break;
      }
  return best;
}

/* Feeds text in random chunks (sizes 1..maxchunk), collecting matches with
 * a match array of `cap` entries; after every chunk checks the holdback and
 * that no later match starts before (offset - holdback).  Returns the
 * number of matches, or (size_t)-1 on a failed check. */
static size_t feed_all(const sl_ac_t *ac, const unsigned char *text, size_t n, size_t maxchunk,
                       size_t cap, sl_ac_match_t *got, char **pats, const size_t *lens,
                       size_t np, int nocase, size_t *released) {
  sl_ac_stream_t st;
  sl_ac_stream_init(&st, ac);
  sl_ac_match_t *buf = malloc((cap ? cap : 1) * sizeof *buf);
  size_t total = 0, pos = 0;
  while (pos < n) {
    size_t len = 1 + rnd_below(maxchunk);
    if (len > n - pos) len = n - pos;
    size_t done = 0;
    while (done < len) {
      size_t k = 0, used = 0;
      int rc = sl_ac_feed(&st, text + pos + done, len - done, buf, cap, &k, &used);
      if (rc != 0) {
        free(buf);
        return (size_t)-1;
      }
      for (size_t i = 0; i < k; i++) got[total++] = buf[i];
      done += used;
      if (used == 0 && k == 0) {
        free(buf);
        return (size_t)-1;
      }
    }
    pos += len;
    if (st.offset != pos) {
      free(buf);
      return (size_t)-1;
    }
    size_t h = sl_ac_holdback(&st);
    if (h != ref_hold(text, pos, pats, lens, np, nocase)) {
      fprintf(stderr, "  holdback %zu vs %zu at %zu\n", h, ref_hold(text, pos, pats, lens, np, nocase), pos);
      free(buf);
      return (size_t)-1;
    }
    released[pos] = pos - h;
  }
  free(buf);
  return total;
}

static int check_set(char **pats, size_t *lens, size_t np, const unsigned char *text, size_t n,
                     int nocase, size_t maxchunk, size_t capmode) {
  sl_ac_t *ac;
  if (sl_ac_new((const char *const *)pats, lens, np, nocase ? SL_AC_NOCASE : 0, &ac) != 0) return 0;
  sl_ac_match_t *want = malloc((n * np + 1) * sizeof *want);
  sl_ac_match_t *got = malloc((n * np + 1) * sizeof *got);
  size_t *released = calloc(n + 1, sizeof *released);
  size_t nw = ref_matches(text, n, pats, lens, np, nocase, want);
  size_t cap = capmode == 0 ? n * np + 1 : sl_ac_max_matches(ac) + capmode - 1;
  size_t ng = feed_all(ac, text, n, maxchunk, cap, got, pats, lens, np, nocase, released);
  int ok = ng == nw;
  for (size_t i = 0; ok && i < nw; i++)
    ok = got[i].end == want[i].end && got[i].pattern == want[i].pattern && got[i].len == want[i].len;
  /* Safety of holdback: a match never starts in bytes released before it
   * ended.  released[] is only set at chunk ends; walk back to the last. */
  for (size_t i = 0; ok && i < nw; i++) {
    uint64_t start = want[i].end - want[i].len;
    for (size_t at = start + 1; at < want[i].end; at++)
      if (released[at] > start) ok = 0;
  }
  if (!ok) fprintf(stderr, "  matches: got %zu, want %zu (np %zu, n %zu, nocase %d)\n", ng, nw, np, n, nocase);
  free(want);
  free(got);
  free(released);
  sl_ac_free(ac);
  return ok;
}

static void random_pattern(char *p, size_t len, const char *alpha, size_t na) {
  for (size_t i = 0; i < len; i++) p[i] = alpha[rnd_below(na)];
}

static void test_random_agreement(void) {
  static const char *const alphas[] = {"ab", "abc", "aAbB", "abcdefghij", "xyzXYZ \n."};
  char store[40][16];
  char *pats[40];
  size_t lens[40];
  unsigned char text[600];
  int checked = 0;
  for (int it = 0; it < 3000; it++) {
    const char *alpha = alphas[it % 5];
    size_t na = strlen(alpha), np = 1 + rnd_below(it % 7 == 0 ? 40 : 8);
    int nocase = (it / 5) % 2;
    for (size_t i = 0; i < np; i++) {
      lens[i] = 1 + rnd_below(it % 3 == 0 ? 16 : 5);
      random_pattern(store[i], lens[i], alpha, na);
      pats[i] = store[i];
    }
    size_t n = rnd_below(it % 10 == 0 ? 600 : 120);
    for (size_t i = 0; i < n; i++) text[i] = (unsigned char)alpha[rnd_below(na)];
    if (rnd_below(4) == 0 && n > 0) text[rnd_below(n)] = (unsigned char)rnd_below(256);
    size_t maxchunk = it % 4 == 0 ? 1 : it % 4 == 1 ? 3 : 64;
    size_t capmode = it % 3 == 0 ? 1 : 0; /* 1: the smallest array that works */
    if (!check_set(pats, lens, np, text, n, nocase, maxchunk, capmode)) {
      fprintf(stderr, "  at iteration %d\n", it);
      ASSERT(0);
    }
    checked++;
  }
  ASSERT_EQ(checked, 3000);
}

static void test_edge_cases(void) {
  /* Duplicates, a pattern inside another, one-byte patterns. */
  char *pats[] = {"he", "she", "his", "hers", "he", "e", "s"};
  size_t lens[] = {2, 3, 3, 4, 2, 1, 1};
  const char *text = "ushershishe";
  ASSERT(check_set(pats, lens, 7, (const unsigned char *)text, strlen(text), 0, 1, 0));
  ASSERT(check_set(pats, lens, 7, (const unsigned char *)text, strlen(text), 0, 100, 1));
  sl_ac_t *ac;
  ASSERT_EQ(sl_ac_new((const char *const *)pats, lens, 7, 0, &ac), 0);
  ASSERT_EQ(sl_ac_max_matches(ac), 4); /* "she": she, he, he, e */
  ASSERT_EQ(sl_ac_states(ac), 11); /* root, h he her hers hi his s sh she e */
  sl_ac_stream_t st;
  sl_ac_stream_init(&st, ac);
  sl_ac_match_t m[8];
  size_t k, used;
  ASSERT_EQ(sl_ac_feed(&st, "sh", 2, m, 8, &k, &used), 0);
  ASSERT_EQ(k, 1); /* "s" */
  ASSERT_EQ(sl_ac_holdback(&st), 2); /* "sh" may become "she" */
  ASSERT_EQ(sl_ac_feed(&st, "e", 1, m, 8, &k, &used), 0);
  ASSERT_EQ(k, 4);
  ASSERT_UINT_EQ(m[0].end, 3);
  ASSERT_EQ(m[0].pattern, 1); /* she */
  ASSERT_EQ(m[1].pattern, 0); /* he */
  ASSERT_EQ(m[2].pattern, 4); /* he (duplicate) */
  ASSERT_EQ(m[3].pattern, 5); /* e */
  ASSERT_EQ(sl_ac_holdback(&st), 2); /* "he" may become "hers" */
  /* A match array too small for the first byte: nothing consumed. */
  ASSERT_EQ(sl_ac_feed(&st, "rs", 2, m, 0, &k, &used), 0);
  ASSERT_EQ(used, 1); /* 'r' matches nothing, 's' would */
  ASSERT_EQ(sl_ac_feed(&st, "s", 1, NULL, 0, &k, &used), SL_AN_ETOOBIG);
  ASSERT_EQ(used, 0);
  ASSERT_EQ(sl_ac_feed(&st, "s", 1, m, 8, &k, &used), 0);
  ASSERT_EQ(k, 2); /* hers, s */
  ASSERT_EQ(sl_ac_holdback(&st), 1); /* "hers" ends here; its suffix "s" may become "she" */
  sl_ac_free(ac);

  /* Every byte value, binary patterns with NUL and 0xFF. */
  char b0[3] = {0, (char)0xFF, 0}, b1[2] = {(char)0xFF, (char)0xFF};
  char all[256];
  for (int i = 0; i < 256; i++) all[i] = (char)i;
  char *bp[] = {b0, b1, all};
  size_t bl[] = {3, 2, 256};
  unsigned char t[3000];
  for (int i = 0; i < 3000; i++) t[i] = (unsigned char)(rnd_below(3) == 0 ? 0 : rnd_below(2) ? 0xFF : rnd_below(256));
  memcpy(t + 1000, all, 256);
  ASSERT(check_set(bp, bl, 3, t, 3000, 0, 50, 0));
  ASSERT(check_set(bp, bl, 3, t, 3000, 1, 7, 1));

  /* A single pattern of one byte, text of one byte, empty feed. */
  char *one[] = {"x"};
  size_t ol[] = {1};
  ASSERT(check_set(one, ol, 1, (const unsigned char *)"x", 1, 0, 1, 0));
  ASSERT(check_set(one, ol, 1, (const unsigned char *)"X", 1, 1, 1, 0));
  ASSERT_EQ(sl_ac_new((const char *const *)one, ol, 1, 0, &ac), 0);
  sl_ac_stream_init(&st, ac);
  ASSERT_EQ(sl_ac_feed(&st, NULL, 0, NULL, 0, &k, &used), 0);
  ASSERT_EQ(used, 0);
  ASSERT_EQ(sl_ac_holdback(&st), 0); /* a complete one-byte pattern never waits */
  sl_ac_free(ac);
}

/* Case folding covers ASCII letters only. */
static void test_nocase(void) {
  char *pats[] = {"Stop", "\xC3\xA9t\xC3\xA9"}; /* "été" in UTF-8: not folded */
  size_t lens[] = {4, 5};
  sl_ac_t *ac;
  ASSERT_EQ(sl_ac_new((const char *const *)pats, lens, 2, SL_AC_NOCASE, &ac), 0);
  sl_ac_stream_t st;
  sl_ac_stream_init(&st, ac);
  sl_ac_match_t m[4];
  size_t k, used;
  const char *text = "stop STOP sToP \xC3\x89t\xC3\xA9 \xC3\xA9T\xC3\xA9";
  ASSERT_EQ(sl_ac_feed(&st, text, strlen(text), m, 4, &k, &used), 0);
  ASSERT_EQ(k, 4); /* three stops, and "éTé" (T folds); "Été" differs in a non-ASCII byte */
  ASSERT_EQ(m[3].pattern, 1);
  sl_ac_free(ac);
}

static void test_errors(void) {
  char *pats[] = {"ab", ""};
  size_t lens[] = {2, 0};
  sl_ac_t *ac;
  ASSERT_EQ(sl_ac_size((const char *const *)pats, lens, 2, 0), 0); /* empty pattern */
  ASSERT_EQ(sl_ac_new((const char *const *)pats, lens, 2, 0, &ac), SL_AN_EINVAL);
  ASSERT_EQ(sl_ac_new((const char *const *)pats, lens, 0, 0, &ac), SL_AN_EINVAL);
  ASSERT_EQ(sl_ac_new((const char *const *)pats, lens, 1, 8, &ac), SL_AN_EINVAL);
  size_t need = sl_ac_size((const char *const *)pats, lens, 1, 0);
  ASSERT_GT(need, 0);
  uint64_t *mem = malloc(need);
  ASSERT_EQ(sl_ac_build(mem, need - 1, (const char *const *)pats, lens, 1, 0, &ac), SL_AN_ETOOBIG);
  ASSERT_EQ(sl_ac_build((char *)mem + 4, need, (const char *const *)pats, lens, 1, 0, &ac), SL_AN_EINVAL);
  ASSERT_EQ(sl_ac_build(mem, need, (const char *const *)pats, lens, 1, 0, &ac), 0);
  sl_ac_stream_t st;
  size_t k, used;
  sl_ac_stream_init(&st, ac);
  ASSERT_EQ(sl_ac_feed(&st, NULL, 3, NULL, 0, &k, &used), SL_AN_EINVAL);
  ASSERT_EQ(sl_ac_feed(&st, "ab", 2, NULL, 3, &k, &used), SL_AN_EINVAL);
  ASSERT_EQ(sl_ac_feed(NULL, "ab", 2, NULL, 0, &k, &used), SL_AN_EINVAL);
  free(mem);
}

/* Chunks large enough for the two-lane loop, with pattern sets that match
 * rarely, densely (so lanes overflow their hit lists) and with patterns too
 * long for lanes, and match arrays small enough to stop a block. */
static void test_large_chunks(void) {
  static const char letters[] = "abcdefgh";
  char store[60][80];
  char *pats[60];
  size_t lens[60];
  size_t n = 60000;
  unsigned char *text = malloc(n);
  int checked = 0;
  for (int it = 0; it < 24; it++) {
    size_t np = 1 + rnd_below(60), maxl = it % 3 == 0 ? 3 : it % 3 == 1 ? 12 : 80;
    for (size_t i = 0; i < np; i++) {
      lens[i] = 1 + rnd_below(maxl);
      random_pattern(store[i], lens[i], letters, it % 2 ? 8 : 3);
      pats[i] = store[i];
    }
    for (size_t i = 0; i < n; i++) text[i] = (unsigned char)letters[rnd_below(8)];
    size_t maxchunk = it % 4 == 0 ? 20000 : 3000;
    if (!check_set(pats, lens, np, text, n, it % 5 == 0, maxchunk, it % 2 ? 1 : 0)) {
      fprintf(stderr, "  at iteration %d\n", it);
      ASSERT(0);
    }
    checked++;
  }
  ASSERT_EQ(checked, 24);
  free(text);
}

static void test_very_long(void) {
  /* 100 word-like patterns over 300 KB of text, fed in token-sized chunks. */
  static const char letters[] = "etaoinshrdlucmfw";
  char store[100][12];
  char *pats[100];
  size_t lens[100];
  for (int i = 0; i < 100; i++) {
    lens[i] = 3 + rnd_below(8);
    random_pattern(store[i], lens[i], letters, 16);
    pats[i] = store[i];
  }
  size_t n = 300000;
  unsigned char *text = malloc(n);
  for (size_t i = 0; i < n; i++) text[i] = rnd_below(6) == 0 ? ' ' : (unsigned char)letters[rnd_below(16)];
  ASSERT(check_set(pats, lens, 100, text, n, 0, 6, 0));
  free(text);
}

int main(void) {
  SL_RUN(test_edge_cases);
  SL_RUN(test_nocase);
  SL_RUN(test_errors);
  SL_RUN(test_random_agreement);
  SL_RUN(test_large_chunks);
  SL_RUN(test_very_long);
  return SL_TEST_EXIT();
}
