/* Tests for runtime/base/qsketch: quantiles of known samples (constants,
 * uniform, exponential and log-uniform over the whole range, fixed seeds)
 * against the exact sorted sample at the same lower rank, within
 * SL_QS_ALPHA; exact min and max; the buckets covering the stated range;
 * clamping below and above it; ignored NaN, infinities and negatives;
 * merge equal to adding both samples; reset; the empty sketch. */
#include "runtime/base/qsketch.h"

#include <math.h>
#include <stdlib.h>

#include "test.h"

static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}
/* Uniform in (0, 1): never 0, so log() of it is finite. */
static double rnd01(void) { return ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0; }

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The bound, with room for the last bits of the log and exp. */
#define TOL (SL_QS_ALPHA * (1 + 1e-9))

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

static sl_qsketch_t sk, sk2, sk3;
static double xs[40000], sorted[40000];

/* Counts xs[0..n) in a fresh sketch and checks q = k/1000 for every k
 * against the sorted sample (out-of-range values read back as the bound
 * they were clamped to), then min, max and the mean.  Returns nonzero on a
 * failure so the caller's ASSERT names the sample. */
static int check_sample(size_t n, double *worst) {
  sl_qs_reset(&sk);
  double sum = 0;
  for (size_t i = 0; i < n; i++) {
    sl_qs_add(&sk, xs[i]);
    sum += xs[i];
    sorted[i] = xs[i];
  }
  qsort(sorted, n, sizeof(double), cmp_double);
  if (sk.n != n || sk.min != sorted[0] || sk.max != sorted[n - 1]) return 1;
  if (sl_qs_quantile(&sk, 0) != sorted[0] || sl_qs_quantile(&sk, 1) != sorted[n - 1]) return 2;
  if (fabs(sl_qs_mean(&sk) - sum / (double)n) > 1e-9 * fabs(sum / (double)n)) return 3;
  *worst = 0;
  for (int k = 1; k < 1000; k++) {
    double q = k / 1000.0;
    size_t rank = (size_t)(q * (double)(n - 1));
    double want = clampd(sorted[rank], SL_QS_MIN, SL_QS_MAX);
    double got = sl_qs_quantile(&sk, q);
    double err = fabs(got - want) / want;
    if (err > *worst) *worst = err;
    if (err > TOL) {
      fprintf(stderr, "q %g rank %zu: want %.17g got %.17g (rel %g)\n", q, rank, want, got, err);
      return 4;
    }
  }
  return 0;
}

static void test_empty(void) {
  sl_qs_reset(&sk);
  ASSERT_UINT_EQ(sk.n, 0);
  ASSERT(sl_qs_quantile(&sk, 0) == 0);
  ASSERT(sl_qs_quantile(&sk, 0.5) == 0);
  ASSERT(sl_qs_quantile(&sk, 1) == 0);
  ASSERT(sl_qs_mean(&sk) == 0);
  ASSERT(sk.min == 0 && sk.max == 0);
}

static void test_constants(void) {
  const double vals[] = {42.0, 1.0, SL_QS_MIN, SL_QS_MAX, 0.0137, 123456.789};
  for (size_t c = 0; c < sizeof(vals) / sizeof(vals[0]); c++) {
    sl_qs_reset(&sk);
    for (int i = 0; i < 1000; i++) sl_qs_add(&sk, vals[c]);
    ASSERT(sk.min == vals[c] && sk.max == vals[c]);
    ASSERT_DBL_NEAR(sl_qs_mean(&sk), vals[c], vals[c] * 1e-12);
    /* Every quantile is clamped into [min, max], so a constant reads back exactly. */
    for (int k = 0; k <= 100; k++) ASSERT(sl_qs_quantile(&sk, k / 100.0) == vals[c]);
  }
}

/* The lower rank: q = 0.5 of 10, 20, 30, 40 reads the 2nd smallest. */
static void test_lower_rank(void) {
  sl_qs_reset(&sk);
  sl_qs_add(&sk, 40);
  sl_qs_add(&sk, 10);
  sl_qs_add(&sk, 30);
  sl_qs_add(&sk, 20);
  ASSERT_DBL_NEAR(sl_qs_quantile(&sk, 0.5), 20, 20 * TOL);
  ASSERT_DBL_NEAR(sl_qs_quantile(&sk, 0.34), 20, 20 * TOL);
  ASSERT_DBL_NEAR(sl_qs_quantile(&sk, 0.33), 10, 10 * TOL);
  ASSERT_DBL_NEAR(sl_qs_quantile(&sk, 0.999), 30, 30 * TOL);
  ASSERT(sl_qs_quantile(&sk, 1) == 40);
  ASSERT(sl_qs_quantile(&sk, 0) == 10);
  /* q outside [0, 1] is clamped; a NaN q reads as q = 0. */
  ASSERT(sl_qs_quantile(&sk, -3) == 10);
  ASSERT(sl_qs_quantile(&sk, 7) == 40);
  ASSERT(sl_qs_quantile(&sk, NAN) == 10);
  ASSERT(sl_qs_mean(&sk) == 25);
}

static void test_uniform(void) {
  double worst;
  rng_state = 0x5eed0001ULL;
  size_t n = 20000;
  for (size_t i = 0; i < n; i++) xs[i] = 1.0 + 999.0 * rnd01();
  ASSERT_EQ(check_sample(n, &worst), 0);
  fprintf(stderr, "  uniform: worst relative error %.5f\n", worst);
  /* The bound is not slack: some quantile of a dense sample is off by
   * close to alpha, so a sketch reading back exact values is not what
   * passed here either (that would be a test that cannot fail). */
  ASSERT(worst > SL_QS_ALPHA / 4);
}

static void test_exponential(void) {
  double worst;
  rng_state = 0x5eed0002ULL;
  size_t n = 40000;
  for (size_t i = 0; i < n; i++) xs[i] = -log(rnd01()) * 250.0; /* mean 250 ms */
  ASSERT_EQ(check_sample(n, &worst), 0);
  fprintf(stderr, "  exponential: worst relative error %.5f\n", worst);
}

/* Log-uniform over a little more than the whole range: every bucket, the
 * two end ones included. */
static void test_log_uniform_whole_range(void) {
  double worst;
  rng_state = 0x5eed0003ULL;
  size_t n = 40000;
  double lo = log(SL_QS_MIN / 4), hi = log(SL_QS_MAX * 4);
  for (size_t i = 0; i < n; i++) xs[i] = exp(lo + (hi - lo) * rnd01());
  ASSERT_EQ(check_sample(n, &worst), 0);
  ASSERT(sk.counts[0] > 0);
  ASSERT(sk.counts[SL_QS_BUCKETS - 1] > 0);
}

/* The buckets reach SL_QS_MAX: it lands in the bucket the formula says,
 * below the one kept for values above the range. */
static void test_buckets_cover_range(void) {
  double gamma = (1 + SL_QS_ALPHA) / (1 - SL_QS_ALPHA);
  int top_in_range = (int)ceil(log(SL_QS_MAX / SL_QS_MIN) / log(gamma));
  ASSERT_LE(top_in_range + 2, SL_QS_BUCKETS);
  sl_qs_reset(&sk);
  sl_qs_add(&sk, SL_QS_MAX);
  int at = -1;
  for (int i = 0; i < SL_QS_BUCKETS; i++)
    if (sk.counts[i]) at = i;
  ASSERT_EQ(at, top_in_range);
  sl_qs_add(&sk, nextafter(SL_QS_MAX, INFINITY));
  ASSERT_EQ(sk.counts[SL_QS_BUCKETS - 1], 1);
  sl_qs_reset(&sk);
  sl_qs_add(&sk, SL_QS_MIN);
  ASSERT_EQ(sk.counts[0], 1);
  sl_qs_add(&sk, nextafter(SL_QS_MIN, INFINITY));
  ASSERT_EQ(sk.counts[1], 1);
  /* Just below and at SL_QS_MAX read back within alpha, not as the bound. */
  sl_qs_reset(&sk);
  sl_qs_add(&sk, SL_QS_MAX * 0.995);
  sl_qs_add(&sk, SL_QS_MAX * 0.995);
  sl_qs_add(&sk, 1e12);
  double got = sl_qs_quantile(&sk, 0.5);
  ASSERT_DBL_NEAR(got, SL_QS_MAX * 0.995, SL_QS_MAX * 0.995 * TOL);
}

static void test_clamping(void) {
  sl_qs_reset(&sk);
  const double below[] = {0.0, 1e-9, 4e-4, -0.0};
  for (size_t i = 0; i < 4; i++) sl_qs_add(&sk, below[i]);
  for (int i = 0; i < 8; i++) sl_qs_add(&sk, 5.0);
  sl_qs_add(&sk, 3e7);
  sl_qs_add(&sk, 1e12);
  ASSERT_UINT_EQ(sk.n, 14);
  ASSERT_EQ(sk.counts[0], 4);
  ASSERT_EQ(sk.counts[SL_QS_BUCKETS - 1], 2);
  /* min and max are the values themselves... */
  ASSERT(sk.min == 0.0);
  ASSERT(sk.max == 1e12);
  ASSERT(sl_qs_quantile(&sk, 0) == 0.0);
  ASSERT(sl_qs_quantile(&sk, 1) == 1e12);
  /* ...the ranks between read back as the bounds.  Sorted: 0, -0, 1e-9,
   * 4e-4, eight 5s, 3e7, 1e12; rank r is read at q = (r + 0.5) / 13. */
  for (int r = 1; r <= 3; r++) ASSERT(sl_qs_quantile(&sk, (r + 0.5) / 13) == SL_QS_MIN);
  for (int r = 4; r <= 11; r++) ASSERT_DBL_NEAR(sl_qs_quantile(&sk, (r + 0.5) / 13), 5.0, 5.0 * TOL);
  ASSERT(sl_qs_quantile(&sk, 12.5 / 13) == SL_QS_MAX);
  /* The mean is of the values counted, not of what they read back as. */
  ASSERT_DBL_NEAR(sl_qs_mean(&sk), (1e-9 + 4e-4 + 40.0 + 3e7 + 1e12) / 14, 1e-3);
}

static void test_ignored_values(void) {
  sl_qs_reset(&sk);
  sl_qs_reset(&sk2);
  const double bad[] = {NAN, -NAN, -1.0, -1e-300, -INFINITY, INFINITY};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) sl_qs_add(&sk, bad[i]);
  ASSERT_UINT_EQ(sk.n, 0);
  ASSERT(memcmp(&sk, &sk2, sizeof(sk)) == 0);
  for (int i = 0; i < 50; i++) {
    sl_qs_add(&sk, i * 1.5);
    sl_qs_add(&sk2, i * 1.5);
    sl_qs_add(&sk, bad[i % 6]);
  }
  ASSERT(memcmp(&sk, &sk2, sizeof(sk)) == 0);
}

static void test_merge(void) {
  rng_state = 0x5eed0004ULL;
  sl_qs_reset(&sk);
  sl_qs_reset(&sk2);
  sl_qs_reset(&sk3);
  for (int i = 0; i < 5000; i++) {
    double a = -log(rnd01()) * 40.0, b = 100.0 + 900.0 * rnd01();
    sl_qs_add(&sk, a);
    sl_qs_add(&sk3, a);
    if (i % 3 == 0) sl_qs_add(&sk3, 1e9); /* above the range, only in the second sample */
    sl_qs_add(&sk2, b);
    sl_qs_add(&sk3, b);
    if (i % 3 == 0) sl_qs_add(&sk2, 1e9);
  }
  sl_qs_merge(&sk, &sk2);
  ASSERT(memcmp(sk.counts, sk3.counts, sizeof(sk.counts)) == 0);
  ASSERT_UINT_EQ(sk.n, sk3.n);
  ASSERT(sk.min == sk3.min && sk.max == sk3.max);
  ASSERT_DBL_NEAR(sk.sum, sk3.sum, 1e-9 * sk3.sum);
  for (int k = 0; k <= 1000; k++) ASSERT(sl_qs_quantile(&sk, k / 1000.0) == sl_qs_quantile(&sk3, k / 1000.0));
  /* Into an empty sketch: a copy.  From an empty one: nothing changes. */
  sl_qs_reset(&sk);
  sl_qs_merge(&sk, &sk2);
  ASSERT(memcmp(&sk, &sk2, sizeof(sk)) == 0);
  sl_qs_reset(&sk3);
  sl_qs_merge(&sk, &sk3);
  ASSERT(memcmp(&sk, &sk2, sizeof(sk)) == 0);
  /* min of the merge is the smaller one, from either side. */
  sl_qs_reset(&sk);
  sl_qs_add(&sk, 7);
  sl_qs_reset(&sk3);
  sl_qs_add(&sk3, 3);
  sl_qs_add(&sk3, 9);
  sl_qs_merge(&sk, &sk3);
  ASSERT(sk.min == 3 && sk.max == 9 && sk.n == 3);
}

/* A bucket stops at 2^32 - 1 instead of wrapping to a small count. */
static void test_saturation(void) {
  sl_qs_reset(&sk);
  sl_qs_reset(&sk2);
  sl_qs_add(&sk, 10);
  sl_qs_add(&sk2, 10);
  sk.counts[SL_QS_BUCKETS / 2] = UINT32_MAX - 1; /* as if counted long ago */
  sl_qs_merge(&sk, &sk2);
  sk2.counts[SL_QS_BUCKETS / 2] = 5;
  sl_qs_merge(&sk, &sk2);
  ASSERT_UINT_EQ(sk.counts[SL_QS_BUCKETS / 2], UINT32_MAX);
  /* The counts now exceed n: quantiles still read inside [min, max]. */
  double got = sl_qs_quantile(&sk, 0.5);
  ASSERT(got >= sk.min && got <= sk.max);
}

static void test_reset(void) {
  sl_qs_reset(&sk);
  for (int i = 1; i <= 100; i++) sl_qs_add(&sk, i);
  ASSERT_UINT_EQ(sk.n, 100);
  sl_qs_reset(&sk);
  memset(&sk2, 0, sizeof(sk2));
  ASSERT(memcmp(&sk, &sk2, sizeof(sk)) == 0);
  ASSERT(sl_qs_quantile(&sk, 0.5) == 0);
  ASSERT(sl_qs_mean(&sk) == 0);
  /* And it counts afresh: min and max come from the new values only. */
  sl_qs_add(&sk, 500);
  ASSERT(sk.min == 500 && sk.max == 500);
}

int main(void) {
  SL_RUN(test_empty);
  SL_RUN(test_constants);
  SL_RUN(test_lower_rank);
  SL_RUN(test_uniform);
  SL_RUN(test_exponential);
  SL_RUN(test_log_uniform_whole_range);
  SL_RUN(test_buckets_cover_range);
  SL_RUN(test_clamping);
  SL_RUN(test_ignored_values);
  SL_RUN(test_merge);
  SL_RUN(test_saturation);
  SL_RUN(test_reset);
  return SL_TEST_EXIT();
}
