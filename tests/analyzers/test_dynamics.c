/* Tests for analyzers/kdtree, analyzers/embed and analyzers/dynamics: the k-d
 * tree against a brute scan, Rosenstein's curve against a reference written
 * here from the paper (brute-force neighbours, one log per pair, the fit
 * rule as documented in dynamics.h), the known exponents and dimensions of
 * the logistic, Henon and Lorenz systems at n = 5000, the classification of
 * sine, line, noise and constant series, invariance to scale and shift, and
 * the edge cases (too short, non-finite, short workspace, long series). */
#include <math.h>
#include <stdlib.h>

#include "analyzers/dynamics.h"
#include "analyzers/embed.h"
#include "analyzers/kdtree.h"
#include "analyzers/status.h"
#include "dyn_series.h"
#include "test.h"

/* ---- k-d tree ---------------------------------------------------------- */

static void brute_nearest(const double *pts, size_t n, unsigned dim, const double *q,
                          size_t centre, size_t exclude, size_t *nn, double *d2) {
  *nn = SL_KDTREE_NONE;
  *d2 = INFINITY;
  for (size_t j = 0; j < n; j++) {
    size_t gap = j > centre ? j - centre : centre - j;
    if (centre != SL_KDTREE_NONE && gap <= exclude) continue;
    double s = 0;
    for (unsigned k = 0; k < dim; k++) s += (q[k] - pts[j * dim + k]) * (q[k] - pts[j * dim + k]);
    if (s < *d2) {
      *d2 = s;
      *nn = j;
    }
  }
}

/* A random hint: none, any point (even an excluded or far one), or past the
 * end; none of them may change the answer. */
static size_t rndhint(dyn_rng_t *r, size_t n) {
  uint64_t c = dyn_rng_next(r) % 4;
  return c == 0 ? SL_KDTREE_NONE : c == 3 ? n + 3 : dyn_rng_next(r) % n;
}

static void test_kdtree_matches_brute_scan(void) {
  dyn_rng_t r = {0x9e3779b97f4a7c15ull};
  size_t queries = 0;
  for (int round = 0; round < 400; round++) {
    size_t n = 1 + dyn_rng_next(&r) % 300;
    unsigned dim = 1 + (unsigned)(dyn_rng_next(&r) % 6);
    int coarse = round % 3 == 0; /* quantized coordinates: many exact ties */
    double *pts = malloc(n * dim * sizeof(double));
    void *ws = malloc(sl_kdtree_workspace_size(n));
    for (size_t i = 0; i < n * dim; i++)
      pts[i] = coarse ? (double)(dyn_rng_next(&r) % 4) : dyn_rng_unit(&r) * 10 - 5;
    sl_kdtree_t t;
    ASSERT_EQ(sl_kdtree_build(&t, pts, n, dim, ws, sl_kdtree_workspace_size(n)), 0);
    for (size_t i = 0; i < n + 10; i++) {
      double q[6];
      size_t centre;
      if (i < n) {
        for (unsigned k = 0; k < dim; k++) q[k] = pts[i * dim + k];
        centre = i;
      } else {
        for (unsigned k = 0; k < dim; k++) q[k] = dyn_rng_unit(&r) * 12 - 6;
        centre = i % 2 ? SL_KDTREE_NONE : dyn_rng_next(&r) % n;
      }
      size_t exclude = dyn_rng_next(&r) % 12, a, b;
      double da, db;
      brute_nearest(pts, n, dim, q, centre, exclude, &b, &db);
      size_t hint = rndhint(&r, n);
      int rc = sl_kdtree_nearest(&t, q, centre, exclude, hint, &a, &da);
      if (b == SL_KDTREE_NONE) {
        ASSERT_EQ(rc, SL_AN_ENOTFOUND);
      } else {
        ASSERT_EQ(rc, 0);
        ASSERT_UINT_EQ(a, b);
        ASSERT(da == db);
      }
      queries++;
    }
    free(pts);
    free(ws);
  }
  ASSERT_GT(queries, 50000);
}

static void test_kdtree_rejects_bad_arguments(void) {
  double pts[4] = {0, 1, 2, 3};
  uint8_t ws[64];
  sl_kdtree_t t;
  ASSERT_EQ(sl_kdtree_build(&t, pts, 0, 1, ws, sizeof ws), SL_AN_EINVAL);
  ASSERT_EQ(sl_kdtree_build(&t, pts, 4, 0, ws, sizeof ws), SL_AN_EINVAL);
  ASSERT_EQ(sl_kdtree_build(&t, pts, 4, SL_KDTREE_MAX_DIM + 1, ws, sizeof ws), SL_AN_EINVAL);
  ASSERT_EQ(sl_kdtree_build(&t, pts, 4, 1, ws, 3), SL_AN_EINVAL);
  ASSERT_EQ(sl_kdtree_build(&t, pts, 4, 1, ws, sizeof ws), 0);
  size_t nn;
  double d2;
  double q = 1.2;
  ASSERT_EQ(sl_kdtree_nearest(&t, &q, 1, 5, SL_KDTREE_NONE, &nn, &d2), SL_AN_ENOTFOUND);
  ASSERT_EQ(sl_kdtree_nearest(&t, &q, SL_KDTREE_NONE, 5, 0, &nn, &d2), 0);
  ASSERT_UINT_EQ(nn, 1);
}

/* ---- embedding --------------------------------------------------------- */

static void test_embed_basics(void) {
  double x[10], out[30], z[10], mean, sd;
  for (int i = 0; i < 10; i++) x[i] = i;
  ASSERT_UINT_EQ(sl_embed_count(10, 3, 2), 6);
  ASSERT_UINT_EQ(sl_embed_count(10, 6, 2), 0);
  ASSERT_UINT_EQ(sl_embed_count(10, 1, 7), 10);
  ASSERT_EQ(sl_embed_build(x, 10, 3, 2, out), 0);
  ASSERT(out[0] == 0 && out[1] == 2 && out[2] == 4 && out[15] == 5 && out[17] == 9);
  ASSERT_EQ(sl_embed_build(x, 10, 6, 2, out), SL_AN_EINVAL);
  ASSERT_EQ(sl_embed_build(x, 10, 0, 2, out), SL_AN_EINVAL);
  ASSERT_EQ(sl_embed_build(x, 10, 2, 0, out), SL_AN_EINVAL);
  ASSERT_EQ(sl_embed_normalize(x, 10, z, &mean, &sd), 0);
  ASSERT_DBL_NEAR(mean, 4.5, 1e-12);
  ASSERT_DBL_NEAR(sd, sqrt(8.25), 1e-12);
  double s = 0, ss = 0;
  for (int i = 0; i < 10; i++) {
    s += z[i];
    ss += z[i] * z[i];
  }
  ASSERT_DBL_NEAR(s, 0, 1e-12);
  ASSERT_DBL_NEAR(ss, 10, 1e-12);
  for (int i = 0; i < 10; i++) x[i] = 1e9 + 0.5;
  ASSERT_EQ(sl_embed_normalize(x, 10, z, &mean, &sd), 0);
  ASSERT(sd == 0 && z[3] == 0);
  x[4] = NAN;
  ASSERT_EQ(sl_embed_normalize(x, 10, z, NULL, NULL), SL_AN_EINVAL);
  ASSERT_EQ(sl_embed_normalize(x, 0, z, NULL, NULL), SL_AN_EINVAL);
}

static void test_embed_lag_and_dimension(void) {
  enum { N = 5000 };
  static double x[N];
  size_t wsz = sl_embed_tau_workspace_size(N);
  size_t fsz = sl_embed_fnn_workspace_size(N, 6);
  void *ws = malloc(wsz > fsz ? wsz : fsz);
  unsigned tau, acf, m;
  double ami[41];
  /* A sine of period P: the autocorrelation cos(2 pi k / P) first drops
   * below 1/e at k = ceil(P acos(1/e) / 2 pi). */
  for (int i = 0; i < N; i++) x[i] = sin(2 * M_PI * i / 40.3);
  ASSERT_EQ(sl_embed_tau_acf(x, N, 100, &acf), 0);
  ASSERT_EQ(acf, (unsigned)ceil(40.3 * acos(exp(-1.0)) / (2 * M_PI)));
  /* Lorenz x every 0.05: the information has its first minimum at 0.15
   * time units, before the autocorrelation time; the default takes it. */
  dyn_gen_lorenz(x, N, 0.05, 1.0);
  ASSERT_EQ(sl_embed_tau_ami(x, N, 40, ws, wsz, &tau, ami), 0);
  ASSERT_EQ(tau, 3);
  ASSERT(ami[0] > ami[1] && ami[1] > ami[2] && ami[2] > ami[3] && ami[3] < ami[4]);
  ASSERT_EQ(sl_embed_tau_acf(x, N, 100, &acf), 0);
  ASSERT_GT(acf, 4);
  ASSERT_EQ(sl_embed_tau(x, N, 40, ws, wsz, &tau), 0);
  ASSERT_EQ(tau, 3);
  /* Henon needs two coordinates; a map's lag is 1. */
  dyn_gen_henon(x, N, 0.1);
  ASSERT_EQ(sl_embed_tau(x, N, 40, ws, wsz, &tau), 0);
  ASSERT_EQ(tau, 1);
  double frac[6];
  ASSERT_EQ(sl_embed_dim_fnn(x, N, 1, 1, 6, 0.02, ws, fsz, &m, frac), 0);
  ASSERT_EQ(m, 2);
  ASSERT(frac[0] > 0.2);
  ASSERT(frac[1] <= 0.02);
  ASSERT(frac[2] == -1);
  ASSERT_EQ(sl_embed_tau_ami(x, N, N, ws, wsz, &tau, NULL), SL_AN_EINVAL);
  ASSERT_EQ(sl_embed_dim_fnn(x, N, 1, 1, 6, 0.02, ws, fsz - 1, &m, NULL), SL_AN_EINVAL);
  ASSERT_EQ(sl_embed_dim_fnn(x, N, 0, 1, 6, 0.02, ws, fsz, &m, NULL), SL_AN_EINVAL);
  free(ws);
}

/* ---- Rosenstein reference ---------------------------------------------- */

/* Rosenstein's divergence curve written from the paper, independently of
 * dynamics.c: explicit delay vectors, a brute-force neighbour per vector
 * outside the Theiler window (ties to the smaller index), and y(k) as the
 * plain mean of log distances over pairs still inside the series and apart. */
static void ref_curve(const double *z, size_t n, unsigned m, unsigned tau, unsigned w,
                      unsigned steps, double *y) {
  size_t count = n - (size_t)(m - 1) * tau;
  size_t *nn = malloc(count * sizeof(size_t));
  for (size_t i = 0; i < count; i++) {
    double best = INFINITY;
    nn[i] = SIZE_MAX;
    for (size_t j = 0; j < count; j++) {
      if ((j > i ? j - i : i - j) <= w) continue;
      double d2 = 0;
      for (unsigned k = 0; k < m; k++) {
        double diff = z[i + k * tau] - z[j + k * tau];
        d2 += diff * diff;
      }
      if (d2 < best) {
        best = d2;
        nn[i] = j;
      }
    }
  }
  for (unsigned k = 0; k <= steps; k++) {
    double s = 0;
    size_t c = 0;
    for (size_t i = 0; i + k < count; i++) {
      if (nn[i] == SIZE_MAX || nn[i] + k >= count) continue;
      double d2 = 0;
      for (unsigned q = 0; q < m; q++) {
        double diff = z[i + k + q * tau] - z[nn[i] + k + q * tau];
        d2 += diff * diff;
      }
      if (d2 > 0) {
        s += 0.5 * log(d2);
        c++;
      }
    }
    y[k] = c ? s / c : (k ? y[k - 1] : -372.5);
  }
  free(nn);
}

/* The fit rule exactly as dynamics.h states it. */
static double ref_fit(const double *y, unsigned steps, unsigned *lo_out, unsigned *hi_out) {
  unsigned last = steps, half = (steps + 1) / 2;
  double p = 0;
  for (unsigned k = half; k <= last; k++) p += y[k];
  p /= (last - half + 1);
  double g = p - y[0];
  unsigned lo = 0, hi = last;
  if (g > 0) {
    while (lo < last && y[lo] - y[0] < 0.2 * g) lo++;
    hi = lo;
    while (hi < last && y[hi + 1] - y[0] < 0.65 * g) hi++;
  }
  if (hi < lo + 2) hi = lo + 2 <= last ? lo + 2 : last;
  if (hi < lo + 2) lo = hi >= 2 ? hi - 2 : 0;
  double np = hi - lo + 1, mx = 0, my = 0, sxx = 0, sxy = 0;
  for (unsigned k = lo; k <= hi; k++) {
    mx += k;
    my += y[k];
  }
  mx /= np;
  my /= np;
  for (unsigned k = lo; k <= hi; k++) {
    sxx += (k - mx) * (k - mx);
    sxy += (k - mx) * (y[k] - my);
  }
  *lo_out = lo;
  *hi_out = hi;
  return sxy / sxx;
}

static double *zscore(const double *x, size_t n) {
  double *z = malloc(n * sizeof(double));
  double mu = 0, ss = 0;
  for (size_t i = 0; i < n; i++) mu += x[i];
  mu /= n;
  for (size_t i = 0; i < n; i++) ss += (x[i] - mu) * (x[i] - mu);
  double sd = sqrt(ss / n);
  for (size_t i = 0; i < n; i++) z[i] = (x[i] - mu) / sd;
  return z;
}

static void check_against_reference(const double *x, size_t n, const sl_dyn_params_t *p,
                                    void *ws, size_t wsz, int *ok) {
  double *curve = malloc((p->max_steps + 1) * sizeof(double));
  double *ycurve = malloc((p->max_steps + 1) * sizeof(double));
  double *bcurve = malloc((p->max_steps + 1) * sizeof(double));
  sl_lyap_t a, b;
  sl_dyn_params_t brute = *p;
  brute.search = SL_DYN_SEARCH_BRUTE;
  *ok = 0;
  if (sl_lyap_estimate(x, n, p, ws, wsz, curve, p->max_steps + 1, &a) != 0) goto out;
  if (sl_lyap_estimate(x, n, &brute, ws, wsz, bcurve, p->max_steps + 1, &b) != 0) goto out;
  /* Same neighbours, same arithmetic: identical to the bit. */
  if (memcmp(curve, bcurve, (p->max_steps + 1) * sizeof(double)) != 0) goto out;
  if (a.lambda != b.lambda || a.pairs != b.pairs) goto out;
  double *z = zscore(x, n);
  ref_curve(z, n, p->m, p->tau, p->theiler, p->max_steps, ycurve);
  free(z);
  for (unsigned k = 0; k <= p->max_steps; k++)
    if (fabs(curve[k] - ycurve[k]) > 1e-9 * (1 + fabs(ycurve[k]))) goto out;
  unsigned lo, hi;
  double slope = ref_fit(ycurve, p->max_steps, &lo, &hi);
  if (lo != a.fit_lo || hi != a.fit_hi) goto out;
  if (fabs(slope - a.lambda_step) > 1e-7 * (1 + fabs(slope))) goto out;
  if (fabs(a.lambda - a.lambda_step / (p->dt > 0 ? p->dt : 1)) > 1e-12) goto out;
  *ok = 1;
out:
  free(curve);
  free(ycurve);
  free(bcurve);
}

static void test_rosenstein_matches_reference_randomized(void) {
  dyn_rng_t r = {12345};
  size_t maxn = 400;
  size_t wsz = sl_dyn_workspace_size(maxn);
  void *ws = malloc(wsz);
  double *x = malloc(maxn * sizeof(double));
  int inputs = 0;
  for (int round = 0; round < 1000; round++) {
    size_t n = 64 + dyn_rng_next(&r) % (maxn - 63);
    int kind = round % 4;
    if (kind == 0) {
      dyn_gen_logistic(x, n, 3.6 + 0.4 * dyn_rng_unit(&r), 0.05 + 0.9 * dyn_rng_unit(&r));
    } else if (kind == 1) {
      dyn_gen_henon(x, n, 0.2 * dyn_rng_unit(&r));
    } else if (kind == 2) {
      for (size_t i = 0; i < n; i++) x[i] = dyn_rng_unit(&r);
    } else {
      /* Coarse values: many exact ties among neighbours. */
      for (size_t i = 0; i < n; i++) x[i] = (double)(dyn_rng_next(&r) % 5);
    }
    sl_dyn_params_t p = {0};
    p.dt = 0.5 + dyn_rng_unit(&r);
    p.m = 1 + (unsigned)(dyn_rng_next(&r) % 4);
    p.tau = 1 + (unsigned)(dyn_rng_next(&r) % 3);
    p.theiler = 1 + (unsigned)(dyn_rng_next(&r) % 5);
    p.max_steps = 3 + (unsigned)(dyn_rng_next(&r) % 20);
    int ok;
    check_against_reference(x, n, &p, ws, wsz, &ok);
    if (!ok) fprintf(stderr, "round %d kind %d n %zu m %u tau %u w %u steps %u\n", round, kind, n,
                     p.m, p.tau, p.theiler, p.max_steps);
    ASSERT(ok);
    inputs++;
  }
  ASSERT_EQ(inputs, 1000);
  free(ws);
  free(x);
}

/* ---- known systems ----------------------------------------------------- */

enum { N = 5000 };

static sl_dyn_report_t classify(const double *x, size_t n, double dt) {
  size_t wsz = sl_dyn_workspace_size(n);
  void *ws = malloc(wsz);
  sl_dyn_params_t p = {dt, 0, 0, 0, 0, SL_DYN_SEARCH_KDTREE};
  sl_dyn_report_t rep;
  int rc = sl_dyn_classify(x, n, &p, ws, wsz, &rep);
  free(ws);
  if (rc != 0) rep.cls = (sl_dyn_class_t)-1;
  return rep;
}

static void print_report(const char *name, const sl_dyn_report_t *r) {
  fprintf(stderr,
          "  %-9s %-11s lambda=%.4f (fit r2 %.4f, steps %u..%u, growth %.2f) D2=%.4f "
          "(r2 %.4f) m=%u tau=%u w=%u fnn=%.3f trend_r2=%.3f\n",
          name, sl_dyn_class_name(r->cls), r->lyap.lambda, r->lyap.fit_r2, r->lyap.fit_lo,
          r->lyap.fit_hi, r->lyap.growth, r->corr.dim, r->corr.fit_r2, r->lyap.m, r->lyap.tau,
          r->lyap.theiler, r->fnn, r->trend_r2);
}

static void test_logistic_map(void) {
  static double x[N];
  dyn_gen_logistic(x, N, 4.0, 0.123456);
  sl_dyn_report_t r = classify(x, N, 1.0);
  print_report("logistic", &r);
  ASSERT_EQ(r.cls, SL_DYN_CHAOTIC);
  ASSERT_DBL_NEAR(r.lyap.lambda, log(2.0), 0.07);
}

static void test_henon_map(void) {
  static double x[N];
  dyn_gen_henon(x, N, 0.1);
  sl_dyn_report_t r = classify(x, N, 1.0);
  print_report("henon", &r);
  ASSERT_EQ(r.cls, SL_DYN_CHAOTIC);
  ASSERT(r.lyap.lambda >= 0.36 && r.lyap.lambda <= 0.48);
  ASSERT(r.corr.dim >= 1.1 && r.corr.dim <= 1.35);
}

static void test_lorenz_system(void) {
  static double x[N];
  dyn_gen_lorenz(x, N, 0.05, 1.0);
  sl_dyn_report_t r = classify(x, N, 0.05);
  print_report("lorenz", &r);
  ASSERT_EQ(r.cls, SL_DYN_CHAOTIC);
  ASSERT(r.lyap.lambda >= 0.75 && r.lyap.lambda <= 1.1);
  /* Other initial conditions land in the same range. */
  for (int i = 1; i <= 3; i++) {
    dyn_gen_lorenz(x, N, 0.05, 1.0 + 0.37 * i);
    sl_dyn_report_t s = classify(x, N, 0.05);
    ASSERT_EQ(s.cls, SL_DYN_CHAOTIC);
    ASSERT(s.lyap.lambda >= 0.75 && s.lyap.lambda <= 1.1);
  }
}

static void test_sine_is_periodic(void) {
  static double x[N];
  for (int i = 0; i < N; i++) x[i] = sin(0.17 * i);
  sl_dyn_report_t r = classify(x, N, 1.0);
  print_report("sine", &r);
  ASSERT_EQ(r.cls, SL_DYN_PERIODIC);
  ASSERT_DBL_NEAR(r.lyap.lambda, 0, 0.02);
  /* A slower one, with a little noise on top, and a square wave. */
  dyn_rng_t g = {7};
  for (int i = 0; i < N; i++) x[i] = 3 * sin(2 * M_PI * i / 151.3) + 0.05 * dyn_rng_unit(&g);
  ASSERT_EQ(classify(x, N, 1.0).cls, SL_DYN_PERIODIC);
  for (int i = 0; i < N; i++) x[i] = i % 10 < 5 ? 1 : -1;
  ASSERT_EQ(classify(x, N, 1.0).cls, SL_DYN_PERIODIC);
}

static void test_line_is_trend(void) {
  static double x[N];
  for (int i = 0; i < N; i++) x[i] = 0.5 * i + 3;
  sl_dyn_report_t r = classify(x, N, 1.0);
  print_report("line", &r);
  ASSERT_EQ(r.cls, SL_DYN_TREND);
  ASSERT_DBL_NEAR(r.trend_r2, 1, 1e-9);
  for (int i = 0; i < N; i++) x[i] = -2e-3 * i;
  ASSERT_EQ(classify(x, N, 1.0).cls, SL_DYN_TREND);
  /* Its exponent, asked for directly, is not positive. */
  for (int i = 0; i < N; i++) x[i] = 0.5 * i + 3;
  size_t wsz = sl_dyn_workspace_size(N);
  void *ws = malloc(wsz);
  sl_lyap_t l;
  ASSERT_EQ(sl_lyap_estimate(x, N, NULL, ws, wsz, NULL, 0, &l), 0);
  ASSERT(l.lambda <= 1e-9);
  free(ws);
}

static void test_white_noise_is_noise(void) {
  static double x[N];
  for (uint64_t seed = 1; seed <= 2; seed++) {
    dyn_rng_t g = {seed * 0x2545F4914F6CDD1Dull};
    for (int i = 0; i < N; i++) x[i] = dyn_rng_unit(&g);
    sl_dyn_report_t r = classify(x, N, 1.0);
    if (seed == 1) print_report("noise", &r);
    ASSERT_EQ(r.cls, SL_DYN_NOISE);
    ASSERT(r.fnn > 0.02); /* no dimension unfolds it */
  }
  /* Gaussian-like noise too. */
  dyn_rng_t g = {99};
  for (int i = 0; i < N; i++) x[i] = dyn_rng_unit(&g) + dyn_rng_unit(&g) + dyn_rng_unit(&g);
  ASSERT_EQ(classify(x, N, 1.0).cls, SL_DYN_NOISE);
}

static void test_fixed_points(void) {
  static double x[N];
  for (int i = 0; i < N; i++) x[i] = 42.0;
  sl_dyn_report_t r = classify(x, N, 1.0);
  ASSERT_EQ(r.cls, SL_DYN_FIXED_POINT);
  for (int i = 0; i < N; i++) x[i] = 2 + exp(-0.01 * i) * cos(0.3 * i);
  ASSERT_EQ(classify(x, N, 1.0).cls, SL_DYN_FIXED_POINT);
  /* A logistic map below the first bifurcation settles. */
  dyn_gen_logistic(x, N, 2.8, 0.3);
  ASSERT_EQ(classify(x, N, 1.0).cls, SL_DYN_FIXED_POINT);
  /* All-equal input through the other entry points. */
  for (int i = 0; i < N; i++) x[i] = -1.5;
  size_t wsz = sl_dyn_workspace_size(N);
  void *ws = malloc(wsz);
  sl_lyap_t l;
  sl_corrdim_t c;
  ASSERT_EQ(sl_lyap_estimate(x, N, NULL, ws, wsz, NULL, 0, &l), 0);
  ASSERT(l.lambda == 0 && l.growth == 0);
  ASSERT_EQ(sl_corrdim_estimate(x, N, NULL, ws, wsz, &c), 0);
  ASSERT(c.dim == 0);
  free(ws);
}

/* ---- invariance -------------------------------------------------------- */

/* Scaled and shifted copies give the same answers up to rounding (shifts
 * stay small enough next to the scale that the input keeps its digits). */
static void test_scale_and_shift_invariance(void) {
  static double x[N], y[N];
  const double scales[][2] = {{1000, 0}, {-3, 0}, {7.25, -4e4}, {-0.01, 5}};
  for (int sys = 0; sys < 3; sys++) {
    double dt = 1;
    if (sys == 0) dyn_gen_logistic(x, N, 4.0, 0.3);
    if (sys == 1) {
      dyn_gen_lorenz(x, N, 0.05, 1.0);
      dt = 0.05;
    }
    if (sys == 2) {
      dyn_rng_t g = {5};
      for (int i = 0; i < N; i++) x[i] = dyn_rng_unit(&g);
    }
    sl_dyn_report_t a = classify(x, N, dt);
    for (size_t s = 0; s < sizeof scales / sizeof scales[0]; s++) {
      for (int i = 0; i < N; i++) y[i] = x[i] * scales[s][0] + scales[s][1];
      sl_dyn_report_t b = classify(y, N, dt);
      ASSERT_EQ(b.cls, a.cls);
      ASSERT_EQ(b.lyap.m, a.lyap.m);
      ASSERT_EQ(b.lyap.tau, a.lyap.tau);
      ASSERT_DBL_NEAR(b.lyap.lambda, a.lyap.lambda, 1e-6);
      ASSERT_DBL_NEAR(b.corr.dim, a.corr.dim, 1e-6);
    }
  }
}

/* ---- edges ------------------------------------------------------------- */

static void test_edge_cases(void) {
  static double x[N];
  size_t wsz = sl_dyn_workspace_size(N);
  void *ws = malloc(wsz);
  sl_lyap_t l;
  sl_dyn_report_t rep;
  sl_dyn_params_t p = {1, 0, 0, 0, 0, SL_DYN_SEARCH_KDTREE};
  dyn_gen_logistic(x, N, 4.0, 0.3);
  ASSERT_EQ(sl_lyap_estimate(x, SL_DYN_MIN_SAMPLES - 1, &p, ws, wsz, NULL, 0, &l), SL_AN_EINVAL);
  ASSERT_EQ(sl_lyap_estimate(x, 0, &p, ws, wsz, NULL, 0, &l), SL_AN_EINVAL);
  ASSERT_EQ(sl_lyap_estimate(x, N, &p, ws, wsz - 1, NULL, 0, &l), SL_AN_EINVAL);
  ASSERT_EQ(sl_lyap_estimate(NULL, N, &p, ws, wsz, NULL, 0, &l), SL_AN_EINVAL);
  ASSERT_EQ(sl_dyn_classify(x, N, &p, ws, wsz, NULL), SL_AN_EINVAL);
  p.m = SL_DYN_MAX_DIM + 1;
  ASSERT_EQ(sl_lyap_estimate(x, N, &p, ws, wsz, NULL, 0, &l), SL_AN_EINVAL);
  p.m = 0;
  p.search = 7;
  ASSERT_EQ(sl_lyap_estimate(x, N, &p, ws, wsz, NULL, 0, &l), SL_AN_EINVAL);
  p.search = SL_DYN_SEARCH_KDTREE;
  p.max_steps = N;
  ASSERT_EQ(sl_lyap_estimate(x, N, &p, ws, wsz, NULL, 0, &l), SL_AN_EINVAL);
  p.max_steps = 0;
  x[100] = INFINITY;
  ASSERT_EQ(sl_dyn_classify(x, N, &p, ws, wsz, &rep), SL_AN_EINVAL);
  /* The shortest series accepted still gives an answer. */
  dyn_gen_logistic(x, N, 4.0, 0.3);
  ASSERT_EQ(sl_dyn_classify(x, SL_DYN_MIN_SAMPLES, &p, ws, wsz, &rep), 0);
  ASSERT_STR_EQ(sl_dyn_class_name(SL_DYN_TREND), "trend");
  free(ws);
}

static void test_long_series(void) {
  enum { L = 40000 };
  double *x = malloc(L * sizeof(double));
  dyn_gen_logistic(x, L, 4.0, 0.2);
  sl_dyn_report_t r = classify(x, L, 1.0);
  ASSERT_EQ(r.cls, SL_DYN_CHAOTIC);
  ASSERT_DBL_NEAR(r.lyap.lambda, log(2.0), 0.07);
  ASSERT_LE(r.corr.pairs, 25000000 + L);
  free(x);
}

int main(void) {
  SL_RUN(test_kdtree_matches_brute_scan);
  SL_RUN(test_kdtree_rejects_bad_arguments);
  SL_RUN(test_embed_basics);
  SL_RUN(test_embed_lag_and_dimension);
  SL_RUN(test_rosenstein_matches_reference_randomized);
  SL_RUN(test_logistic_map);
  SL_RUN(test_henon_map);
  SL_RUN(test_lorenz_system);
  SL_RUN(test_sine_is_periodic);
  SL_RUN(test_line_is_trend);
  SL_RUN(test_white_noise_is_noise);
  SL_RUN(test_fixed_points);
  SL_RUN(test_scale_and_shift_invariance);
  SL_RUN(test_edge_cases);
  SL_RUN(test_long_series);
  return SL_TEST_EXIT();
}
