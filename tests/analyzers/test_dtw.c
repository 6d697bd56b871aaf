/* Tests for analyzers/dtw: the anti-diagonal banded DTW against a plain
 * full-matrix DP written here (bit-for-bit equal: both add the same cell
 * cost to the same minimum), over thousands of random pairs, bands and both
 * costs; edge cases (empty, length 1, all equal, very long); early
 * abandoning; LB_Kim and LB_Keogh never above the distance; the envelope
 * against brute force; the search against scanning every window; and the
 * incremental stream against the batch form after every sample. */
#include <math.h>
#include <stdlib.h>

#include "analyzers/dtw.h"
#include "analyzers/status.h"
#include "test.h"

static uint64_t rng_state = 0x6A09E667F3BCC908ull;

static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double unif(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }
static size_t rnd_below(size_t n) { return (size_t)(rnd() % n); }

static double cost_of(double x, double y, int cost) {
  double d = x - y;
  return cost == SL_DTW_SQUARED ? d * d : fabs(d);
}

/* Reference: the whole (na x nb) matrix, cells outside the band +inf. */
static double ref_dtw(const double *a, size_t na, const double *b, size_t nb, size_t band,
                      int cost) {
  if (na == 0 || nb == 0) return na == nb ? 0.0 : INFINITY;
  size_t diff = na > nb ? na - nb : nb - na;
  if (band < diff) band = diff;
  double *D = malloc(na * nb * sizeof *D);
  for (size_t i = 0; i < na; i++) {
    for (size_t j = 0; j < nb; j++) {
      size_t gap = i > j ? i - j : j - i;
      if (gap > band) {
        D[i * nb + j] = INFINITY;
        continue;
      }
      double best;
      if (i == 0 && j == 0) {
        best = 0.0;
      } else {
        best = INFINITY;
        if (i > 0 && j > 0 && D[(i - 1) * nb + j - 1] < best) best = D[(i - 1) * nb + j - 1];
        if (i > 0 && D[(i - 1) * nb + j] < best) best = D[(i - 1) * nb + j];
        if (j > 0 && D[i * nb + j - 1] < best) best = D[i * nb + j - 1];
      }
      D[i * nb + j] = cost_of(a[i], b[j], cost) + best;
    }
  }
  double r = D[na * nb - 1];
  free(D);
  return r;
}

/* Reference for long inputs: the banded row-by-row DP with two rows. */
static double ref_dtw_rows(const double *a, size_t n, const double *b, size_t band, int cost) {
  double *prev = malloc((n + 2) * sizeof *prev), *cur = malloc((n + 2) * sizeof *cur);
  for (size_t j = 0; j < n + 2; j++) prev[j] = cur[j] = INFINITY;
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < n + 2; j++) cur[j] = INFINITY;
    size_t lo = i > band ? i - band : 0, hi = i + band < n - 1 ? i + band : n - 1;
    for (size_t j = lo; j <= hi; j++) {
      double best = i == 0 && j == 0 ? 0.0 : INFINITY;
      if (prev[j] < best) best = prev[j];         /* (i-1, j-1) */
      if (prev[j + 1] < best) best = prev[j + 1]; /* (i-1, j) */
      if (cur[j] < best) best = cur[j];           /* (i, j-1) */
      cur[j + 1] = cost_of(a[i], b[j], cost) + best;
    }
    double *t = prev;
    prev = cur;
    cur = t;
  }
  double r = prev[n];
  free(prev);
  free(cur);
  return r;
}

static double *work;
static size_t work_size;

static double kernel(const double *a, size_t na, const double *b, size_t nb, size_t band,
                     int cost, double abandon) {
  double out = -1;
  if (sl_dtw_distance(a, na, b, nb, band, cost, abandon, work, work_size, &out) != 0) return NAN;
  return out;
}

static void fill(double *x, size_t n, int kind) {
  double v = 0;
  for (size_t i = 0; i < n; i++) {
    switch (kind) {
      case 0: x[i] = unif() * 10 - 5; break;                /* noise */
      case 1: v += unif() - 0.5; x[i] = v; break;          /* random walk */
      case 2: x[i] = sin((double)i * 0.3) + unif() * 0.1; break;
      default: x[i] = (double)rnd_below(3); break;          /* many ties */
    }
  }
}

static void test_edge_cases(void) {
  double a[5] = {1, 2, 3, 4, 5}, b[5] = {1, 2, 3, 4, 5}, out;
  ASSERT_EQ(kernel(NULL, 0, NULL, 0, 3, SL_DTW_ABS, INFINITY), 0.0);
  ASSERT(isinf(kernel(a, 5, NULL, 0, 3, SL_DTW_ABS, INFINITY)));
  ASSERT(isinf(kernel(NULL, 0, a, 5, 3, SL_DTW_ABS, INFINITY)));
  ASSERT_EQ(kernel(a, 5, b, 5, 0, SL_DTW_ABS, INFINITY), 0.0);
  ASSERT_EQ(kernel(a, 1, b + 2, 1, 0, SL_DTW_ABS, INFINITY), 2.0);
  ASSERT_EQ(kernel(a, 1, b + 2, 1, 0, SL_DTW_SQUARED, INFINITY), 4.0);
  /* length 1 against 5: every cell of the row is on the path */
  ASSERT_EQ(kernel(a, 1, b, 5, 0, SL_DTW_ABS, INFINITY), 0 + 1 + 2 + 3 + 4);
  /* constant against constant: the shortest path has max(na, nb) cells */
  double c1[40], c2[70];
  for (int i = 0; i < 40; i++) c1[i] = 2.5;
  for (int i = 0; i < 70; i++) c2[i] = 4.0;
  ASSERT_DBL_NEAR(kernel(c1, 40, c2, 70, 5, SL_DTW_ABS, INFINITY), 70 * 1.5, 1e-9);
  ASSERT_EQ(kernel(c1, 40, c1, 40, 0, SL_DTW_SQUARED, INFINITY), 0.0);
  /* a warped copy is at distance 0 without a band and not with band 0 */
  double s[8] = {0, 1, 2, 3, 4, 5, 6, 7}, w[8] = {0, 0, 1, 2, 3, 4, 5, 7};
  ASSERT_EQ(kernel(s, 8, w, 8, SL_DTW_NO_BAND, SL_DTW_ABS, INFINITY), 1.0);
  ASSERT_EQ(kernel(s, 8, w, 8, 0, SL_DTW_ABS, INFINITY), ref_dtw(s, 8, w, 8, 0, SL_DTW_ABS));
  /* errors */
  ASSERT_EQ(sl_dtw_distance(a, 5, b, 5, 1, 9, INFINITY, work, work_size, &out), SL_AN_EINVAL);
  ASSERT_EQ(sl_dtw_distance(a, 5, b, 5, 1, SL_DTW_ABS, INFINITY, work, 8, &out), SL_AN_ETOOBIG);
  ASSERT_EQ(sl_dtw_distance(a, 5, b, 5, 1, SL_DTW_ABS, INFINITY, (char *)work + 1, work_size,
                            &out),
            SL_AN_EINVAL);
  ASSERT_EQ(sl_dtw_distance(NULL, 5, b, 5, 1, SL_DTW_ABS, INFINITY, work, work_size, &out),
            SL_AN_EINVAL);
}

static void test_random_agreement(void) {
  double a[90], b[90];
  int checked = 0;
  for (int it = 0; it < 6000; it++) {
    size_t na = 1 + rnd_below(it % 4 == 0 ? 90 : 30), nb = 1 + rnd_below(it % 4 == 0 ? 90 : 30);
    if (it % 3 == 0) nb = na;
    fill(a, na, it % 4);
    fill(b, nb, (it / 4) % 4);
    size_t bands[5] = {0, 1, 3, na / 10, SL_DTW_NO_BAND};
    size_t band = bands[it % 5];
    int cost = (it / 5) % 2 ? SL_DTW_SQUARED : SL_DTW_ABS;
    double ref = ref_dtw(a, na, b, nb, band, cost);
    double got = kernel(a, na, b, nb, band, cost, INFINITY);
    if (got != ref) {
      fprintf(stderr, "  it %d na=%zu nb=%zu band=%zu cost=%d: %.17g vs %.17g\n", it, na, nb,
              band, cost, got, ref);
      ASSERT(got == ref);
    }
    checked++;
  }
  ASSERT_EQ(checked, 6000);
}

static void test_very_long(void) {
  size_t n = 3000, band = 300;
  double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
  fill(a, n, 1);
  fill(b, n, 1);
  ASSERT(kernel(a, n, b, n, band, SL_DTW_ABS, INFINITY) == ref_dtw_rows(a, n, b, band, SL_DTW_ABS));
  ASSERT(kernel(a, n, b, n, band, SL_DTW_SQUARED, INFINITY) ==
         ref_dtw_rows(a, n, b, band, SL_DTW_SQUARED));
  ASSERT(kernel(a, n, b, n, 0, SL_DTW_ABS, INFINITY) == ref_dtw_rows(a, n, b, 0, SL_DTW_ABS));
  free(a);
  free(b);
}

static void test_abandoning(void) {
  double a[60], b[60];
  int abandoned = 0, kept = 0;
  for (int it = 0; it < 3000; it++) {
    size_t na = 1 + rnd_below(60), nb = 1 + rnd_below(60);
    fill(a, na, 1);
    fill(b, nb, 1);
    size_t band = it % 2 ? 5 : SL_DTW_NO_BAND;
    double ref = ref_dtw(a, na, b, nb, band, SL_DTW_ABS);
    double limit = ref * (0.5 + unif());
    double got = kernel(a, na, b, nb, band, SL_DTW_ABS, limit);
    if (ref < limit) {
      ASSERT(got == ref);
      kept++;
    } else {
      ASSERT(isinf(got));
      abandoned++;
    }
    /* A limit exactly at the distance abandons: "below" is strict. */
    ASSERT(isinf(kernel(a, na, b, nb, band, SL_DTW_ABS, ref)));
  }
  ASSERT_GT(abandoned, 500);
  ASSERT_GT(kept, 500);
}

static void test_lower_bounds(void) {
  double a[70], b[70], lo[70], up[70], lb;
  size_t dqs = sl_dtw_envelope_work_size(70, 70);
  uint64_t *dq = malloc(dqs);
  int tight = 0;
  for (int it = 0; it < 4000; it++) {
    size_t n = 1 + rnd_below(70), nb = 1 + rnd_below(70);
    fill(a, n, it % 4);
    fill(b, n > nb ? n : nb, (it + 1) % 4);
    int cost = it % 2 ? SL_DTW_SQUARED : SL_DTW_ABS;
    size_t band = rnd_below(n + 2);
    double d = ref_dtw(a, n, b, n, band, cost);
    ASSERT_EQ(sl_dtw_lb_kim(a, n, b, n, cost, &lb), 0);
    /* Bounds are sums in another order than the DP's: equal in exact
     * arithmetic at best, so allow rounding. */
    ASSERT(lb <= d * (1 + 1e-12));
    double dk = ref_dtw(a, n, b, nb, band, cost);
    ASSERT_EQ(sl_dtw_lb_kim(a, n, b, nb, cost, &lb), 0);
    ASSERT(lb <= dk * (1 + 1e-12));
    /* LB_Keogh: b against a's envelope, same band, both directions. */
    ASSERT_EQ(sl_dtw_envelope(a, n, band, lo, up, dq, dqs), 0);
    ASSERT_EQ(sl_dtw_lb_keogh(b, n, lo, up, cost, INFINITY, &lb), 0);
    ASSERT(lb <= d * (1 + 1e-12));
    if (lb > 0.5 * d) tight++;
    ASSERT_EQ(sl_dtw_envelope(b, n, band, lo, up, dq, dqs), 0);
    ASSERT_EQ(sl_dtw_lb_keogh(a, n, lo, up, cost, INFINITY, &lb), 0);
    ASSERT(lb <= d * (1 + 1e-12));
    /* Abandoning: the partial sum reaches the limit. */
    double full = lb, part;
    ASSERT_EQ(sl_dtw_lb_keogh(a, n, lo, up, cost, full / 2, &part), 0);
    if (full > 0) ASSERT(part >= full / 2);
    ASSERT(part <= full);
  }
  ASSERT_GT(tight, 100);
  double e;
  ASSERT_EQ(sl_dtw_lb_kim(NULL, 0, NULL, 0, SL_DTW_ABS, &e), 0);
  ASSERT_EQ(e, 0.0);
  ASSERT_EQ(sl_dtw_lb_kim(a, 3, NULL, 0, SL_DTW_ABS, &e), 0);
  ASSERT(isinf(e));
  ASSERT_EQ(sl_dtw_lb_kim(a, 3, b, 3, 5, &e), SL_AN_EINVAL);
  free(dq);
}

static void test_envelope_brute_force(void) {
  double x[200], lo[200], up[200];
  size_t dqs = sl_dtw_envelope_work_size(200, 400);
  uint64_t *dq = malloc(dqs);
  for (int it = 0; it < 2000; it++) {
    size_t n = 1 + rnd_below(200), band = rnd_below(it % 10 == 0 ? 400 : 12);
    fill(x, n, it % 4);
    ASSERT_EQ(sl_dtw_envelope(x, n, band, lo, up, dq, sl_dtw_envelope_work_size(n, band)), 0);
    for (size_t i = 0; i < n; i++) {
      double mn = INFINITY, mx = -INFINITY;
      size_t a = i > band ? i - band : 0, b = i + band < n - 1 ? i + band : n - 1;
      for (size_t k = a; k <= b; k++) {
        if (x[k] < mn) mn = x[k];
        if (x[k] > mx) mx = x[k];
      }
      ASSERT(lo[i] == mn);
      ASSERT(up[i] == mx);
    }
  }
  ASSERT_EQ(sl_dtw_envelope(x, 10, 3, lo, up, dq, 8), SL_AN_ETOOBIG);
  free(dq);
}

static void test_search_matches_scan(void) {
  size_t maxn = 1500, maxm = 60;
  double *s = malloc(maxn * sizeof *s), q[60];
  size_t ws = sl_dtw_search_work_size(maxm, maxn, maxm);
  double *w = malloc(ws);
  uint64_t pruned = 0, total = 0;
  for (int it = 0; it < 300; it++) {
    size_t m = 1 + rnd_below(maxm), n = m + rnd_below(it % 10 == 0 ? maxn - m : 200);
    size_t band = it % 3 == 0 ? 0 : it % 3 == 1 ? m / 10 : rnd_below(m + 1);
    int cost = it % 2 ? SL_DTW_SQUARED : SL_DTW_ABS;
    fill(s, n, 1 + it % 3);
    fill(q, m, 1 + it % 3);
    if (it % 2 && n > m) { /* plant a noisy copy of the query */
      size_t at = rnd_below(n - m + 1);
      for (size_t i = 0; i < m; i++) s[at + i] = q[i] + (unif() - 0.5) * 0.2;
    }
    sl_dtw_match_t best;
    ASSERT_EQ(sl_dtw_search(q, m, s, n, band, cost, w, ws, &best), 0);
    double bd = INFINITY;
    size_t bp = 0;
    for (size_t k = 0; k + m <= n; k++) {
      double d = ref_dtw(q, m, s + k, m, band, cost);
      if (d < bd) {
        bd = d;
        bp = k;
      }
    }
    ASSERT_EQ(best.pos, bp);
    ASSERT(best.dist == bd);
    ASSERT_UINT_EQ(best.windows, n - m + 1);
    ASSERT_UINT_EQ(best.pruned_kim + best.pruned_keogh + best.pruned_keogh2 + best.abandoned +
                       best.computed,
                   best.windows);
    pruned += best.windows - best.computed;
    total += best.windows;
  }
  /* The bounds do most of the work on these inputs. */
  ASSERT_GT(pruned * 2, total);
  sl_dtw_match_t best;
  ASSERT_EQ(sl_dtw_search(q, 10, s, 5, 2, SL_DTW_ABS, w, ws, &best), 0);
  ASSERT(isinf(best.dist));
  ASSERT_EQ(sl_dtw_search(q, 0, s, 5, 2, SL_DTW_ABS, w, ws, &best), SL_AN_EINVAL);
  ASSERT_EQ(sl_dtw_search(q, 5, s, 50, 2, SL_DTW_ABS, w, 16, &best), SL_AN_ETOOBIG);
  free(s);
  free(w);
}

static void test_stream_matches_batch(void) {
  double q[50], x[600];
  int reported = 0, hidden = 0;
  for (int it = 0; it < 120; it++) {
    size_t m = 1 + rnd_below(50), band = rnd_below(m + 1), n = m + rnd_below(400);
    int cost = it % 2 ? SL_DTW_SQUARED : SL_DTW_ABS;
    fill(q, m, 2);
    fill(x, n, 2);
    double thr = it % 3 == 0 ? INFINITY : 0.3 * (double)m * (cost == SL_DTW_ABS ? 1 : 0.1);
    sl_dtw_stream_t *st;
    ASSERT_EQ(sl_dtw_stream_new(q, m, band, cost, thr, &st), 0);
    for (size_t i = 0; i < n; i++) {
      double d;
      ASSERT_EQ(sl_dtw_stream_push(st, x[i], &d), 0);
      if (i + 1 < m) {
        ASSERT(isinf(d));
        continue;
      }
      double ref = ref_dtw(x + i + 1 - m, m, q, m, band, cost);
      if (ref < thr) {
        ASSERT(d == ref);
        reported++;
      } else {
        ASSERT(isinf(d));
        hidden++;
      }
    }
    sl_dtw_stream_reset(st);
    double d;
    ASSERT_EQ(sl_dtw_stream_push(st, 1.0, &d), 0);
    if (m > 1) ASSERT(isinf(d));
    sl_dtw_stream_free(st);
  }
  ASSERT_GT(reported, 1000);
  ASSERT_GT(hidden, 1000);
  sl_dtw_stream_t *st;
  ASSERT_EQ(sl_dtw_stream_new(q, 0, 1, SL_DTW_ABS, 1.0, &st), SL_AN_EINVAL);
  ASSERT_EQ(sl_dtw_stream_new(q, 3, 1, 7, 1.0, &st), SL_AN_EINVAL);
  size_t need = sl_dtw_stream_size(10, 2);
  double *mem = malloc(need);
  ASSERT_EQ(sl_dtw_stream_init(mem, need - 8, q, 10, 2, SL_DTW_ABS, 1.0, &st), SL_AN_ETOOBIG);
  ASSERT_EQ(sl_dtw_stream_init(mem, need, q, 10, 2, SL_DTW_ABS, INFINITY, &st), 0);
  double d;
  for (int i = 0; i < 10; i++) ASSERT_EQ(sl_dtw_stream_push(st, q[i], &d), 0);
  ASSERT_EQ(d, 0.0);
  ASSERT_EQ(sl_dtw_stream_push(st, 1.0, NULL), SL_AN_EINVAL);
  free(mem);
}

int main(void) {
  work_size = sl_dtw_work_size(4000, 4000);
  work = malloc(work_size);
  SL_RUN(test_edge_cases);
  SL_RUN(test_random_agreement);
  SL_RUN(test_very_long);
  SL_RUN(test_abandoning);
  SL_RUN(test_lower_bounds);
  SL_RUN(test_envelope_brute_force);
  SL_RUN(test_search_matches_scan);
  SL_RUN(test_stream_matches_batch);
  free(work);
  return SL_TEST_EXIT();
}
