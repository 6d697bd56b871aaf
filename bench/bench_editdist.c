/* bench_editdist: bit-parallel edit distance and LCS against a two-row
 * uint32 dynamic programme, and the incremental per-token update against
 * recomputing a window, all measured in this one run.
 *
 * Inputs are token ids drawn from a 50,000-id vocabulary; the second
 * sequence is the first with about 10% of tokens substituted, inserted or
 * deleted (the shape of a model repeating itself).  Every timing is the best
 * of 3 repetitions; results of baseline and kernel are compared before
 * anything is printed.  The last section times the loop detector
 * (analyzers/loops.h, which runs on this kernel) per token against running
 * its batch form over the window at every token.  Usage: bench_editdist
 * [scale], scale multiplying the repetition counts (default 1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "analyzers/editdist.h"
#include "analyzers/loops.h"

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd32(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

/* Baseline: the two-row uint32 Levenshtein DP. */
static uint32_t dp_lev(const uint32_t *a, size_t na, const uint32_t *b, size_t nb,
                       uint32_t *prev, uint32_t *cur) {
  for (size_t j = 0; j <= nb; j++) prev[j] = (uint32_t)j;
  for (size_t i = 1; i <= na; i++) {
    uint32_t ai = a[i - 1];
    cur[0] = (uint32_t)i;
    for (size_t j = 1; j <= nb; j++) {
      uint32_t d = prev[j - 1] + (ai != b[j - 1]);
      uint32_t up = prev[j] + 1, left = cur[j - 1] + 1;
      if (up < d) d = up;
      if (left < d) d = left;
      cur[j] = d;
    }
    uint32_t *t = prev;
    prev = cur;
    cur = t;
  }
  return prev[nb];
}

/* Baseline: the two-row uint32 LCS DP. */
static uint32_t dp_lcs(const uint32_t *a, size_t na, const uint32_t *b, size_t nb,
                       uint32_t *prev, uint32_t *cur) {
  for (size_t j = 0; j <= nb; j++) prev[j] = 0;
  for (size_t i = 1; i <= na; i++) {
    uint32_t ai = a[i - 1];
    cur[0] = 0;
    for (size_t j = 1; j <= nb; j++) {
      uint32_t x = prev[j], y = cur[j - 1];
      uint32_t d = x > y ? x : y;
      if (ai == b[j - 1]) d = prev[j - 1] + 1;
      cur[j] = d;
    }
    uint32_t *t = prev;
    prev = cur;
    cur = t;
  }
  return prev[nb];
}

static volatile uint64_t sink;

static void mutate(const uint32_t *a, size_t n, uint32_t *b, size_t *nb) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t r = rnd32() % 30;
    if (r == 0) continue;                            /* delete */
    if (r == 1) b[k++] = rnd32() % 50000;            /* insert */
    b[k++] = r == 2 ? rnd32() % 50000 : a[i];        /* substitute or keep */
  }
  *nb = k;
}

int main(int argc, char **argv) {
  double scale = argc > 1 ? atof(argv[1]) : 1.0;
  if (scale <= 0) scale = 1.0;
  static const size_t sizes[] = {100, 1000};
  sl_editdist_t *ed;
  if (sl_editdist_new(2000, &ed) != 0) return 1;
  printf("edit distance / LCS over uint32 token ids (vocabulary 50000), best of 3\n");
  printf("libedlib-dev: %s\n",
#ifdef SL_HAVE_EDLIB
         "compared below"
#else
         "not installed on this machine, not compared"
#endif
  );
  printf("%-6s %-26s %12s %10s %8s\n", "n", "measure", "ns/call", "ns/cell", "ratio");
  for (size_t si = 0; si < 2; si++) {
    size_t n = sizes[si];
    uint32_t *a = malloc(n * sizeof *a), *b = malloc(2 * n * sizeof *b);
    uint32_t *r0 = malloc((2 * n + 1) * sizeof *r0), *r1 = malloc((2 * n + 1) * sizeof *r1);
    size_t nb;
    for (size_t i = 0; i < n; i++) a[i] = rnd32() % 50000;
    mutate(a, n, b, &nb);
    double cells = (double)n * (double)nb;
    int reps = (int)((n == 100 ? 20000 : 200) * scale);
    if (reps < 1) reps = 1;

    /* Agreement first. */
    size_t d = 0, l = 0;
    sl_editdist_levenshtein(ed, a, n, b, nb, &d);
    sl_editdist_lcs(ed, a, n, b, nb, &l);
    if (d != dp_lev(a, n, b, nb, r0, r1) || l != dp_lcs(a, n, b, nb, r0, r1)) {
      fprintf(stderr, "bench_editdist: kernel and baseline disagree at n=%zu\n", n);
      return 1;
    }

    double best[4] = {1e300, 1e300, 1e300, 1e300};
    for (int round = 0; round < 3; round++) {
      double t0 = now_ns();
      for (int r = 0; r < reps; r++) sink += dp_lev(a, n, b, nb, r0, r1);
      double t1 = now_ns();
      for (int r = 0; r < reps; r++) {
        sl_editdist_levenshtein(ed, a, n, b, nb, &d);
        sink += d;
      }
      double t2 = now_ns();
      for (int r = 0; r < reps; r++) sink += dp_lcs(a, n, b, nb, r0, r1);
      double t3 = now_ns();
      for (int r = 0; r < reps; r++) {
        sl_editdist_lcs(ed, a, n, b, nb, &l);
        sink += l;
      }
      double t4 = now_ns();
      double t[4] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3};
      for (int k = 0; k < 4; k++)
        if (t[k] / reps < best[k]) best[k] = t[k] / reps;
    }
    printf("%-6zu %-26s %12.1f %10.3f %8s\n", n, "levenshtein two-row DP", best[0],
           best[0] / cells, "1.0x");
    printf("%-6zu %-26s %12.1f %10.4f %7.1fx\n", n, "levenshtein bit-parallel", best[1],
           best[1] / cells, best[0] / best[1]);
    printf("%-6zu %-26s %12.1f %10.3f %8s\n", n, "lcs two-row DP", best[2], best[2] / cells,
           "1.0x");
    printf("%-6zu %-26s %12.1f %10.4f %7.1fx\n", n, "lcs bit-parallel", best[3],
           best[3] / cells, best[2] / best[3]);

    /* Incremental: a pattern of n tokens, one push per new token, against
     * recomputing the distance of the pattern to the newest n-token window
     * with the batch kernel (and with the DP). */
    size_t tn = 20000;
    uint32_t *text = malloc(tn * sizeof *text);
    for (size_t i = 0; i < tn; i++) text[i] = rnd32() % 50000;
    sl_editdist_stream_t *gs, *ss, *ls;
    sl_editdist_stream_new(a, n, SL_EDITDIST_GLOBAL, &gs);
    sl_editdist_stream_new(a, n, SL_EDITDIST_SEARCH, &ss);
    sl_editdist_stream_new(a, n, SL_EDITDIST_LCS, &ls);
    double push_best[3] = {1e300, 1e300, 1e300}, win_best = 1e300, windp_best = 1e300;
    size_t wreps = n == 100 ? 4000 : 100;
    for (int round = 0; round < 3; round++) {
      sl_editdist_stream_t *st[3] = {gs, ss, ls};
      for (int k = 0; k < 3; k++) {
        sl_editdist_stream_reset(st[k]);
        size_t v = 0;
        double t0 = now_ns();
        for (size_t i = 0; i < tn; i++) {
          sl_editdist_stream_push(st[k], text[i], &v);
          sink += v;
        }
        double per = (now_ns() - t0) / (double)tn;
        if (per < push_best[k]) push_best[k] = per;
      }
      double t0 = now_ns();
      for (size_t i = 0; i < wreps; i++) {
        sl_editdist_levenshtein(ed, a, n, text + n + i, n, &d);
        sink += d;
      }
      double per = (now_ns() - t0) / (double)wreps;
      if (per < win_best) win_best = per;
      t0 = now_ns();
      for (size_t i = 0; i < wreps / 4 + 1; i++) sink += dp_lev(a, n, text + n + i, n, r0, r1);
      per = (now_ns() - t0) / (double)(wreps / 4 + 1);
      if (per < windp_best) windp_best = per;
    }
    printf("%-6zu %-26s %12.1f %10s %8s\n", n, "window recompute, DP", windp_best, "", "");
    printf("%-6zu %-26s %12.1f %10s %8s\n", n, "window recompute, batch", win_best, "", "1.0x");
    printf("%-6zu %-26s %12.2f %10s %7.0fx\n", n, "push GLOBAL (per token)", push_best[0], "",
           win_best / push_best[0]);
    printf("%-6zu %-26s %12.2f %10s %7.0fx\n", n, "push SEARCH (per token)", push_best[1], "",
           win_best / push_best[1]);
    printf("%-6zu %-26s %12.2f %10s %7.0fx\n", n, "push LCS (per token)", push_best[2], "",
           win_best / push_best[2]);
    printf("%-6zu %-26s %12s %10s %7.0fx\n", n, "push SEARCH vs DP window", "", "",
           windp_best / push_best[1]);
    sl_editdist_stream_free(gs);
    sl_editdist_stream_free(ss);
    sl_editdist_stream_free(ls);
    free(text);
    free(a);
    free(b);
    free(r0);
    free(r1);
  }
  sl_editdist_free(ed);

  /* Loop detection, default settings (window 256, periods 1-64). */
  {
    size_t n = (size_t)(200000 * (scale < 1 ? scale : 1)), nb = 4000;
    if (n < 20000) n = 20000;
    uint32_t *toks = malloc(n * sizeof *toks);
    for (size_t i = 0; i < n; i++) toks[i] = rnd32() % 50000;
    /* A planted loop every 10,000 tokens: 5 periods of 7 to 40 tokens,
     * one token changed each time round. */
    for (size_t at = 5000; at + 300 < n; at += 10000) {
      size_t p = 7 + rnd32() % 34;
      for (size_t r = 1; r < 5; r++)
        for (size_t i = 0; i < p; i++) toks[at + r * p + i] = i == 3 ? rnd32() % 50000 : toks[at + i];
    }
    sl_loops_config_t cfg;
    sl_loops_config_default(&cfg);
    sl_loops_t *lp;
    if (sl_loops_new(&cfg, &lp) != 0) return 1;
    double best = 1e300, best_b = 1e300;
    size_t found = 0;
    for (int round = 0; round < 3; round++) {
      sl_loops_reset(lp);
      found = 0;
      double t0 = now_ns();
      for (size_t i = 0; i < n; i++) {
        sl_loop_t r;
        sl_loops_push(lp, toks[i], &r);
        found += r.state == SL_LOOPS_NEW;
      }
      double per = (now_ns() - t0) / (double)n;
      if (per < best) best = per;
      t0 = now_ns();
      for (size_t i = 1; i <= nb; i++) {
        sl_loop_t r;
        sl_loops_check(lp, toks + 3000, i, &r);
        sink += r.state;
      }
      per = (now_ns() - t0) / (double)nb;
      if (per < best_b) best_b = per;
    }
    /* Following a loop: an exact loop of period 20 for 100,000 tokens. */
    for (size_t i = 0; i < n; i++) toks[i] = (uint32_t)(i % 20);
    sl_loops_reset(lp);
    double t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
      sl_loop_t r;
      sl_loops_push(lp, toks[i], &r);
      sink += r.state;
    }
    double follow = (now_ns() - t0) / (double)n;
    printf("\nloop detection, window 256, periods 1-64, %zu tokens (vocabulary 50000, %zu "
           "planted near loops, %zu found)\n",
           n, n / 10000, found);
    printf("  %-44s %8.1f ns/token  1.0x\n", "batch check of the window at every token", best_b);
    printf("  %-44s %8.1f ns/token  %.0fx\n", "sl_loops_push (screen, verify on demand)", best,
           best_b / best);
    printf("  %-44s %8.1f ns/token\n", "sl_loops_push while following a loop", follow);
    sl_loops_free(lp);
    free(toks);
  }
  return 0;
}
