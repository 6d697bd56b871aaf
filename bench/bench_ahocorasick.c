/* bench_ahocorasick: multi-pattern matching throughput with 100 patterns
 * and the per-token streaming cost, beside a baseline in this one run: one
 * glibc memmem() pass per pattern (a fast single-pattern search, run 100
 * times; it has no notion of chunks or holdback).
 *
 * Text is English-like: words of 1-12 lowercase letters with a skewed
 * length and letter distribution, spaces, some punctuation and newlines.
 * Two pattern sets: "rare" (stop sequences and secret-like strings that
 * occur a few times) and "dense" (100 common words of the text, matching
 * every few bytes).  Throughput is the best of 3 runs over 16 MB fed in
 * 64 KB chunks; the streaming cost feeds the same text 1-8 bytes at a time
 * (the size of a model token) and asks for the holdback after each.
 * Counts of matches are compared with the baseline before printing.
 * Usage: bench_ahocorasick [megabytes] (default 16).  memmem() needs
 * _GNU_SOURCE, which the build defines for every target.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyzers/ahocorasick.h"

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd32(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 17);
}

static const char letters[] = "eeeeettttaaaooiinnsshhrrdlucmfwypvbgk";

static size_t make_word(char *w) {
  static const int lens[] = {1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 6, 6, 7, 8, 9, 10, 12};
  size_t n = (size_t)lens[rnd32() % 18];
  for (size_t i = 0; i < n; i++) w[i] = letters[rnd32() % (sizeof letters - 1)];
  return n;
}

static size_t count_memmem(const char *text, size_t n, char **pats, const size_t *lens, size_t np) {
  size_t total = 0;
  for (size_t p = 0; p < np; p++) {
    const char *at = text, *end = text + n;
    while (at < end) {
      const char *hit = memmem(at, (size_t)(end - at), pats[p], lens[p]);
      if (hit == NULL) break;
      total++;
      at = hit + 1;
    }
  }
  return total;
}

static size_t count_ac(const sl_ac_t *ac, const char *text, size_t n, size_t chunk,
                       sl_ac_match_t *buf, size_t cap) {
  sl_ac_stream_t st;
  sl_ac_stream_init(&st, ac);
  size_t total = 0;
  for (size_t pos = 0; pos < n;) {
    size_t len = chunk < n - pos ? chunk : n - pos, k, used;
    sl_ac_feed(&st, text + pos, len, buf, cap, &k, &used);
    total += k;
    pos += used;
  }
  return total;
}

int main(int argc, char **argv) {
  size_t mb = argc > 1 ? (size_t)atoi(argv[1]) : 16;
  if (mb < 1) mb = 1;
  size_t n = mb << 20;
  char *text = malloc(n + 16);
  size_t pos = 0;
  char w[16];
  while (pos < n) {
    size_t l = make_word(w);
    if (pos + l + 2 > n) break;
    memcpy(text + pos, w, l);
    pos += l;
    uint32_t r = rnd32() % 40;
    text[pos++] = r == 0 ? '\n' : r == 1 ? ',' : r == 2 ? '.' : ' ';
  }
  while (pos < n) text[pos++] = ' ';

  /* rare: stop sequences, secret-like strings, a few long phrases */
  char rare_store[100][32], dense_store[100][16];
  char *rare[100], *dense[100];
  size_t rare_len[100], dense_len[100];
  for (int i = 0; i < 100; i++) {
    if (i < 10) {
      snprintf(rare_store[i], 32, "\n\nUser%d:", i);
    } else if (i < 60) {
      snprintf(rare_store[i], 32, "sk-%08x%04x", rnd32(), rnd32() & 0xffff);
    } else {
      size_t l = 0;
      while (l < 12) {
        l += make_word(rare_store[i] + l);
        rare_store[i][l++] = ' ';
      }
      rare_store[i][l] = 0;
    }
    rare[i] = rare_store[i];
    rare_len[i] = strlen(rare_store[i]);
  }
  /* Plant a few of the rare ones so there is something to find. */
  for (int i = 0; i < 64; i++) {
    int p = (int)(rnd32() % 100);
    size_t at = rnd32() % (n - 40);
    memcpy(text + at, rare[p], rare_len[p]);
  }
  for (int i = 0; i < 100; i++) {
    size_t l;
    do l = make_word(dense_store[i]);
    while (l < 3 || l > 7);
    dense_store[i][l] = 0;
    dense[i] = dense_store[i];
    dense_len[i] = l;
  }

  printf("Aho-Corasick, 100 patterns, %zu MB of English-like text, best of 3\n", mb);
  printf("libhyperscan-dev: %s\n",
#ifdef SL_HAVE_HYPERSCAN
         "compared below"
#else
         "not installed on this machine, not compared"
#endif
  );
  size_t cap = 1 << 16;
  sl_ac_match_t *buf = malloc(cap * sizeof *buf);
  for (int set = 0; set < 2; set++) {
    char **pats = set ? dense : rare;
    size_t *lens = set ? dense_len : rare_len;
    sl_ac_t *ac, *aci;
    if (sl_ac_new((const char *const *)pats, lens, 100, 0, &ac) != 0 ||
        sl_ac_new((const char *const *)pats, lens, 100, SL_AC_NOCASE, &aci) != 0)
      return 1;
    double best[3] = {1e300, 1e300, 1e300};
    size_t cm = 0, ca = 0, ci = 0;
    for (int round = 0; round < 3; round++) {
      double t0 = now_ns();
      cm = count_memmem(text, n, pats, lens, 100);
      double t1 = now_ns();
      ca = count_ac(ac, text, n, 65536, buf, cap);
      double t2 = now_ns();
      ci = count_ac(aci, text, n, 65536, buf, cap);
      double t3 = now_ns();
      double t[3] = {t1 - t0, t2 - t1, t3 - t2};
      for (int k = 0; k < 3; k++)
        if (t[k] < best[k]) best[k] = t[k];
    }
    if (cm != ca) {
      fprintf(stderr, "bench_ahocorasick: %zu matches vs memmem's %zu\n", ca, cm);
      return 1;
    }
    const char *name = set ? "dense" : "rare";
    printf("\n%s patterns: %u states, %zu matches (%.1f per KB)\n", name, sl_ac_states(ac), ca,
           (double)ca / (double)(n >> 10));
    printf("  %-34s %8.3f GB/s  %7.3f ns/byte  1.0x\n", "100 x memmem (baseline)",
           (double)n / best[0], best[0] / (double)n);
    printf("  %-34s %8.3f GB/s  %7.3f ns/byte  %.1fx\n", "sl_ac_feed, 64 KB chunks",
           (double)n / best[1], best[1] / (double)n, best[0] / best[1]);
    printf("  %-34s %8.3f GB/s  %7.3f ns/byte  %.1fx  (%zu matches)\n",
           "sl_ac_feed, 64 KB, case-insensitive", (double)n / best[2], best[2] / (double)n,
           best[0] / best[2], ci);

    /* Streaming: tokens of 1-8 bytes, holdback after each. */
    size_t ntok = 0, held = 0;
    double tbest = 1e300;
    size_t stream_n = n < (4u << 20) ? n : (4u << 20);
    unsigned char *toklen = malloc(stream_n);
    for (size_t i = 0; i < stream_n; i++) toklen[i] = (unsigned char)(1 + (rnd32() & 7));
    for (int round = 0; round < 3; round++) {
      sl_ac_stream_t st;
      sl_ac_stream_init(&st, ac);
      ntok = 0;
      held = 0;
      double t0 = now_ns();
      for (size_t p = 0; p < stream_n;) {
        size_t len = toklen[ntok], k, used;
        if (len > stream_n - p) len = stream_n - p;
        sl_ac_feed(&st, text + p, len, buf, cap, &k, &used);
        p += used;
        held += sl_ac_holdback(&st);
        ntok++;
      }
      double t = now_ns() - t0;
      if (t < tbest) tbest = t;
    }
    printf("  %-34s %8.1f ns/token (%.2f bytes/token, mean holdback %.2f bytes)\n",
           "per-token feed + holdback", tbest / (double)ntok, (double)stream_n / (double)ntok,
           (double)held / (double)ntok);
    free(toklen);
    sl_ac_free(ac);
    sl_ac_free(aci);
  }
  free(buf);
  free(text);
  return 0;
}
