/* bench_dtw: banded DTW against the plain row-by-row DP over the same band,
 * the sliding-window search against scanning every window, and the
 * per-sample cost of the incremental stream, all in this one run.
 *
 * Series are random walks (the shape of inter-token times or running
 * log-probabilities).  Every timing is the best of 3 repetitions; the
 * results of baseline and kernel are compared before anything is printed.
 * Usage: bench_dtw [scale], scale multiplying the repetition counts.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "analyzers/dtw.h"

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t rng = 0x853C49E6748FEA9Bull;
static double unif(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static void walk(double *x, size_t n) {
  double v = 0;
  for (size_t i = 0; i < n; i++) {
    v += unif() - 0.5;
    x[i] = v;
  }
}

/* Baseline: the plain row-by-row DP over the band, two rows indexed j + 1
 * with +inf just outside each row's band; index 0 of the first previous row
 * is the virtual origin (0), so no cell needs a special case. */
static double dp_rows(const double *a, const double *b, size_t n, size_t r, int sq, double *prev,
                      double *cur) {
  for (size_t j = 0; j < n + 2; j++) prev[j] = cur[j] = INFINITY;
  prev[0] = 0.0;
  for (size_t i = 0; i < n; i++) {
    size_t lo = i > r ? i - r : 0, hi = i + r < n - 1 ? i + r : n - 1;
    cur[lo] = INFINITY;
    for (size_t j = lo; j <= hi; j++) {
      double m = prev[j];
      if (prev[j + 1] < m) m = prev[j + 1];
      if (cur[j] < m) m = cur[j];
      double d = a[i] - b[j];
      cur[j + 1] = (sq ? d * d : fabs(d)) + m;
    }
    cur[hi + 2] = INFINITY;
    double *t = prev;
    prev = cur;
    cur = t;
  }
  return prev[n];
}

static volatile double sink;

int main(int argc, char **argv) {
  double scale = argc > 1 ? atof(argv[1]) : 1.0;
  if (scale <= 0) scale = 1.0;
  printf("DTW over random walks, best of 3\n");

  /* 1. one distance, n = 100 and 1000, band 10% */
  printf("%-6s %-5s %-8s %-28s %12s %9s %7s\n", "n", "band", "cost", "measure", "ns/call",
         "ns/cell", "ratio");
  static const size_t ns[] = {100, 1000};
  for (int ni = 0; ni < 2; ni++) {
    size_t n = ns[ni], r = n / 10;
    double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    double *p0 = malloc((n + 2) * sizeof *p0), *p1 = malloc((n + 2) * sizeof *p1);
    size_t ws = sl_dtw_work_size(n, n);
    void *w = malloc(ws);
    walk(a, n);
    walk(b, n);
    double cells = 0;
    for (size_t i = 0; i < n; i++) {
      size_t lo = i > r ? i - r : 0, hi = i + r < n - 1 ? i + r : n - 1;
      cells += (double)(hi - lo + 1);
    }
    int reps = (int)((n == 100 ? 20000 : 300) * scale);
    if (reps < 1) reps = 1;
    for (int sq = 0; sq < 2; sq++) {
      int cost = sq ? SL_DTW_SQUARED : SL_DTW_ABS;
      double d;
      sl_dtw_distance(a, n, b, n, r, cost, INFINITY, w, ws, &d);
      if (d != dp_rows(a, b, n, r, sq, p0, p1)) {
        fprintf(stderr, "bench_dtw: kernel and baseline disagree\n");
        return 1;
      }
      double best[2] = {1e300, 1e300};
      for (int round = 0; round < 3; round++) {
        double t0 = now_ns();
        for (int k = 0; k < reps; k++) sink += dp_rows(a, b, n, r, sq, p0, p1);
        double t1 = now_ns();
        for (int k = 0; k < reps; k++) {
          sl_dtw_distance(a, n, b, n, r, cost, INFINITY, w, ws, &d);
          sink += d;
        }
        double t2 = now_ns();
        if ((t1 - t0) / reps < best[0]) best[0] = (t1 - t0) / reps;
        if ((t2 - t1) / reps < best[1]) best[1] = (t2 - t1) / reps;
      }
      const char *cn = sq ? "squared" : "abs";
      printf("%-6zu %-5zu %-8s %-28s %12.0f %9.3f %7s\n", n, r, cn, "row-by-row DP (baseline)",
             best[0], best[0] / cells, "1.0x");
      printf("%-6zu %-5zu %-8s %-28s %12.0f %9.3f %6.1fx\n", n, r, cn, "sl_dtw_distance", best[1],
             best[1] / cells, best[0] / best[1]);
    }
    free(a);
    free(b);
    free(p0);
    free(p1);
    free(w);
  }

  /* 2. search: query of 128 in a series of 100,000, band 10% */
  {
    size_t m = 128, n = (size_t)(100000 * (scale < 1 ? scale : 1)), r = m / 10;
    if (n < 1000) n = 1000;
    double *s = malloc(n * sizeof *s), *q = malloc(m * sizeof *q);
    double *p0 = malloc((m + 2) * sizeof *p0), *p1 = malloc((m + 2) * sizeof *p1);
    walk(s, n);
    size_t at = n / 3;
    for (size_t i = 0; i < m; i++) q[i] = s[at + i] + (unif() - 0.5) * 0.3;
    size_t ws = sl_dtw_search_work_size(m, n, r);
    void *w = malloc(ws);
    sl_dtw_match_t best;
    double t0 = now_ns();
    sl_dtw_search(q, m, s, n, r, SL_DTW_SQUARED, w, ws, &best);
    double t_search = now_ns() - t0;
    t0 = now_ns();
    double bd = INFINITY;
    size_t bp = 0;
    for (size_t k = 0; k + m <= n; k++) {
      double d = dp_rows(q, s + k, m, r, 1, p0, p1);
      if (d < bd) {
        bd = d;
        bp = k;
      }
    }
    double t_scan = now_ns() - t0;
    if (bp != best.pos || bd != best.dist) {
      fprintf(stderr, "bench_dtw: search and scan disagree\n");
      return 1;
    }
    printf("\nsearch: query %zu in series %zu, band %zu, squared cost; best window at %zu "
           "(planted at %zu)\n",
           m, n, r, best.pos, at);
    printf("  scan, baseline DP per window  %10.2f ms  %8.0f ns/window  1.0x\n", t_scan / 1e6,
           t_scan / (double)best.windows);
    printf("  sl_dtw_search                 %10.2f ms  %8.0f ns/window  %.0fx\n", t_search / 1e6,
           t_search / (double)best.windows, t_scan / t_search);
    printf("  windows %llu: LB_Kim dropped %llu, LB_Keogh %llu, LB_Keogh(reversed) %llu, DTW "
           "abandoned %llu, completed %llu\n",
           (unsigned long long)best.windows, (unsigned long long)best.pruned_kim,
           (unsigned long long)best.pruned_keogh, (unsigned long long)best.pruned_keogh2,
           (unsigned long long)best.abandoned, (unsigned long long)best.computed);

    /* 3. the stream over the same series, threshold 2x the best distance */
    sl_dtw_stream_t *st;
    sl_dtw_stream_new(q, m, r, SL_DTW_SQUARED, 2 * best.dist, &st);
    size_t hits = 0;
    double d;
    t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
      sl_dtw_stream_push(st, s[i], &d);
      hits += d < INFINITY;
    }
    double t_stream = now_ns() - t0;
    printf("  sl_dtw_stream_push            %10.2f ms  %8.0f ns/sample (%zu windows under the "
           "threshold)\n",
           t_stream / 1e6, t_stream / (double)n, hits);
    sl_dtw_stream_free(st);
    free(s);
    free(q);
    free(p0);
    free(p1);
    free(w);
  }
  return 0;
}
