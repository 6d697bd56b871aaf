/* dynamics.c: Rosenstein exponent, Grassberger-Procaccia dimension and the
 * classification of a series, over a caller-owned workspace.
 *
 * Every entry point z-scores the series into the workspace first and works on
 * that copy only, which is what makes the results independent of the scale
 * and offset of the input.  Parameters the caller leaves at 0 are chosen the
 * same way by all three entry points (dyn_resolve), so an exponent and a
 * dimension computed separately describe the same embedding.
 */
#include "analyzers/dynamics.h"

#include <math.h>
#include <string.h>

#include "analyzers/embed.h"
#include "analyzers/kdtree.h"

#define SL__ALIGN8(n) (((n) + 7u) & ~(size_t)7u)
#define SL__NONE UINT32_MAX

/* Fit region of the divergence curve, as shares of its total growth. */
#define SL__FIT_LO 0.2
#define SL__FIT_HI 0.65
/* False nearest neighbour share at which a dimension counts as unfolded. */
#define SL__FNN_THRESHOLD 0.02
/* Scaling region of the correlation sum. */
#define SL__CORR_C_HI 0.02
#define SL__CORR_C_LO 1e-4
#define SL__CORR_MIN_PAIRS_LO 200.0
#define SL__CORR_MAX_PAIRS 25000000.0
/* Correlation-sum histogram: 8 linear sub-bins per binary exponent of d^2. */
#define SL__CORR_SUB 8
#define SL__CORR_BINS (2048 * SL__CORR_SUB)

typedef struct {
  double *z;       /* n: z-scored series */
  double *pts;     /* n * SL_DYN_MAX_DIM: delay vectors; scratch for helpers */
  size_t pts_size; /* bytes of pts and kd together, for the embed helpers */
  void *kd;        /* k-d tree workspace for n points */
  uint32_t *nn;    /* n: nearest neighbour of every vector */
  double *acc;     /* n + 1: per-step mantissa products, then the curve */
  int64_t *ex;     /* n + 1: per-step exponent sums */
  uint64_t *cnt;   /* n + 1: per-step pair counts; also correlation bins */
} dyn_ws_t;

static size_t dyn_layout(size_t n, void *ws, dyn_ws_t *w) {
  char *base = (char *)ws, *p = base;
  size_t cnt_len = n + 1 > SL__CORR_BINS ? n + 1 : SL__CORR_BINS;
  if (w) w->z = (double *)p;
  p += SL__ALIGN8(n * sizeof(double));
  if (w) w->pts = (double *)p;
  char *pts = p;
  p += SL__ALIGN8(n * SL_DYN_MAX_DIM * sizeof(double));
  if (w) w->kd = p;
  p += SL__ALIGN8(sl_kdtree_workspace_size(n));
  if (w) w->pts_size = (size_t)(p - pts);
  if (w) w->nn = (uint32_t *)p;
  p += SL__ALIGN8(n * sizeof(uint32_t));
  if (w) w->acc = (double *)p;
  p += SL__ALIGN8((n + 1) * sizeof(double));
  if (w) w->ex = (int64_t *)p;
  p += (n + 1) * sizeof(int64_t);
  if (w) w->cnt = (uint64_t *)p;
  p += cnt_len * sizeof(uint64_t);
  return (size_t)(p - base);
}

size_t sl_dyn_workspace_size(size_t n) {
  size_t need = dyn_layout(n, NULL, NULL);
  /* The lag helpers borrow the delay-vector area; make sure it is enough. */
  size_t tau_need = sl_embed_tau_workspace_size(n);
  size_t fnn_need = sl_embed_fnn_workspace_size(n, SL_DYN_MAX_DIM);
  size_t pts_area = SL__ALIGN8(n * SL_DYN_MAX_DIM * sizeof(double)) +
                    SL__ALIGN8(sl_kdtree_workspace_size(n));
  size_t extra = 0;
  if (tau_need > pts_area) extra = tau_need - pts_area;
  if (fnn_need > pts_area && fnn_need - pts_area > extra) extra = fnn_need - pts_area;
  return need + extra;
}

typedef struct {
  unsigned m, tau, theiler;
  double fnn; /* false-neighbour share at m, or -1 when m was given */
  double sd;  /* standard deviation of the input; 0 means constant */
} dyn_embed_t;

/* Z-scores x into w->z and fills in the parameters the caller left at 0.
 * The Theiler window defaults to the autocorrelation time (first lag below
 * 1/e), but at least the span of one delay vector and at most n / 10. */
static int dyn_resolve(const double *x, size_t n, const sl_dyn_params_t *p, void *ws,
                       size_t ws_size, dyn_ws_t *w, dyn_embed_t *e) {
  static const sl_dyn_params_t defaults = {1.0, 0, 0, 0, 0, SL_DYN_SEARCH_KDTREE};
  if (p == NULL) p = &defaults;
  if (x == NULL || ws == NULL || n < SL_DYN_MIN_SAMPLES || n >= UINT32_MAX ||
      ws_size < sl_dyn_workspace_size(n) || !(p->dt >= 0) || p->m > SL_DYN_MAX_DIM ||
      (p->search != SL_DYN_SEARCH_KDTREE && p->search != SL_DYN_SEARCH_BRUTE))
    return SL_AN_EINVAL;
  dyn_layout(n, ws, w);
  int rc = sl_embed_normalize(x, n, w->z, NULL, &e->sd);
  if (rc) return rc;
  /* The helpers may use the delay-vector area plus the slack that
   * sl_dyn_workspace_size added after the layout. */
  size_t helper_size = w->pts_size + (sl_dyn_workspace_size(n) - dyn_layout(n, NULL, NULL));
  unsigned max_lag = (unsigned)(n / 10 < 100 ? n / 10 : 100);
  unsigned acf = 1;
  if (e->sd > 0) {
    rc = sl_embed_tau_acf(w->z, n, max_lag, &acf);
    if (rc) return rc;
  }
  e->tau = p->tau;
  if (e->tau == 0) {
    e->tau = 1;
    if (e->sd > 0) {
      /* The helpers' scratch must not overlap z: it is the tail area. */
      rc = sl_embed_tau(w->z, n, max_lag, w->pts, helper_size, &e->tau);
      if (rc) return rc;
    }
  }
  e->theiler = p->theiler;
  if (e->theiler == 0) e->theiler = acf;
  e->m = p->m;
  e->fnn = -1;
  if (e->m == 0) {
    e->m = 1;
    if (e->sd > 0) {
      unsigned max_m = SL_DYN_MAX_DIM;
      while (max_m > 1 && (size_t)max_m * e->tau + 2 * (size_t)e->theiler + 2 >= n) max_m--;
      double frac[SL_DYN_MAX_DIM];
      rc = sl_embed_dim_fnn(w->z, n, e->tau, e->theiler, max_m, SL__FNN_THRESHOLD, w->pts,
                            helper_size, &e->m, frac);
      if (rc) return rc;
      e->fnn = frac[e->m - 1];
    }
  }
  if (p->theiler == 0) {
    size_t span = (size_t)(e->m - 1) * e->tau;
    if (e->theiler < span) e->theiler = (unsigned)span;
    if (e->theiler > n / 10) e->theiler = (unsigned)(n / 10);
    if (e->theiler == 0) e->theiler = 1;
  }
  if (sl_embed_count(n, e->m, e->tau) < n / 2) return SL_AN_EINVAL;
  return 0;
}

/* d2 > 0 as m * 2^e with m in [0.5, 1), by bit manipulation (frexp only for
 * subnormals): the divergence curve multiplies mantissas and adds exponents
 * instead of taking a log per pair, which keeps it cheap next to the
 * neighbour search. */
static inline double split_d2(double d2, int64_t *e) {
  uint64_t u;
  memcpy(&u, &d2, sizeof(u));
  unsigned biased = (unsigned)(u >> 52); /* the sign bit is clear */
  if (biased == 0) {
    int fe;
    double m = frexp(d2, &fe);
    *e += fe;
    return m;
  }
  *e += (int64_t)biased - 1022;
  u = (u & 0x000FFFFFFFFFFFFFull) | (1022ull << 52);
  double m;
  memcpy(&m, &u, sizeof(m));
  return m;
}

static inline double dist2(const double *a, const double *b, unsigned m) {
  double d2 = 0;
  for (unsigned k = 0; k < m; k++) {
    double diff = a[k] - b[k];
    d2 += diff * diff;
  }
  return d2;
}

/* The default curve length: 40 Theiler windows (autocorrelation times),
 * which is where the slowest of the systems in the tests (Lorenz, ~15
 * autocorrelation times to saturate) is well into its plateau, but at least
 * 50 steps and at most a tenth of the vectors, so the pairs at the end of
 * the curve are still many. */
static unsigned dyn_default_steps(size_t count, unsigned theiler) {
  size_t k = (size_t)theiler * 40;
  if (k < 50) k = 50;
  if (k > count / 10) k = count / 10;
  if (k < 10) k = 10;
  return (unsigned)k;
}

/* Least squares line through (k, y[k]) for k = lo..hi; slope and R^2. */
static void fit_line(const double *y, unsigned lo, unsigned hi, double *slope, double *r2) {
  double n = hi - lo + 1, sx = 0, sy = 0;
  for (unsigned k = lo; k <= hi; k++) {
    sx += k;
    sy += y[k];
  }
  double mx = sx / n, my = sy / n, sxx = 0, sxy = 0, syy = 0;
  for (unsigned k = lo; k <= hi; k++) {
    sxx += (k - mx) * (k - mx);
    sxy += (k - mx) * (y[k] - my);
    syy += (y[k] - my) * (y[k] - my);
  }
  *slope = sxx > 0 ? sxy / sxx : 0;
  *r2 = sxx > 0 && syy > 0 ? sxy * sxy / (sxx * syy) : 1.0;
}

/* The documented fit region rule (see dynamics.h). */
static void lyap_fit(const double *y, unsigned steps, sl_lyap_t *out) {
  unsigned last = steps - 1;
  double y0 = y[0], plateau = 0;
  unsigned half = steps / 2;
  for (unsigned k = half; k <= last; k++) plateau += y[k];
  plateau /= (double)(last - half + 1);
  double g = plateau - y0;
  out->growth = g;
  out->first_step = g > 0 ? (y[1] - y0) / g : 0;
  unsigned lo = 0, hi = last;
  if (g > 0) {
    while (lo < last && y[lo] - y0 < SL__FIT_LO * g) lo++;
    hi = lo;
    while (hi < last && y[hi + 1] - y0 < SL__FIT_HI * g) hi++;
  }
  if (hi < lo + 2) hi = lo + 2 <= last ? lo + 2 : last;
  if (hi < lo + 2) lo = hi >= 2 ? hi - 2 : 0;
  out->fit_lo = lo;
  out->fit_hi = hi;
  fit_line(y, lo, hi, &out->lambda_step, &out->fit_r2);
}

static int lyap_run(const dyn_ws_t *w, size_t n, const sl_dyn_params_t *p, const dyn_embed_t *e,
                    double *curve, size_t curve_cap, sl_lyap_t *out) {
  double dt = p && p->dt > 0 ? p->dt : 1.0;
  int search = p ? p->search : SL_DYN_SEARCH_KDTREE;
  memset(out, 0, sizeof(*out));
  out->m = e->m;
  out->tau = e->tau;
  out->theiler = e->theiler;
  size_t count = sl_embed_count(n, e->m, e->tau);
  unsigned steps = p && p->max_steps ? p->max_steps : dyn_default_steps(count, e->theiler);
  if ((size_t)steps + 2 * (size_t)e->theiler + 8 > count) return SL_AN_EINVAL;
  out->steps = steps + 1;
  if (e->sd == 0) {
    /* A constant series: every neighbour sits at distance 0 for ever. */
    if (curve)
      for (size_t k = 0; k < curve_cap && k <= steps; k++) curve[k] = 0;
    out->fit_r2 = 1;
    out->fit_hi = steps;
    return 0;
  }
  int rc = sl_embed_build(w->z, n, e->m, e->tau, w->pts);
  if (rc) return rc;
  const unsigned m = e->m;
  sl_kdtree_t tree;
  if (search == SL_DYN_SEARCH_KDTREE) {
    rc = sl_kdtree_build(&tree, w->pts, count, m, w->kd, sl_kdtree_workspace_size(count));
    if (rc) return rc;
  }
  unsigned found = 0;
  for (size_t i = 0; i < count; i++) {
    size_t j = SL_KDTREE_NONE;
    double d2;
    if (search == SL_DYN_SEARCH_KDTREE) {
      /* The previous vector's neighbour, one step on, is usually close. */
      size_t hint = i > 0 && w->nn[i - 1] != SL__NONE ? (size_t)w->nn[i - 1] + 1 : SL_KDTREE_NONE;
      if (sl_kdtree_nearest(&tree, w->pts + i * m, i, e->theiler, hint, &j, &d2) != 0)
        j = SL_KDTREE_NONE;
    } else {
      /* The baseline: every other vector, ties to the smaller index. */
      double best = __builtin_inf();
      for (size_t c = 0; c < count; c++) {
        size_t gap = c > i ? c - i : i - c;
        if (gap <= e->theiler) continue;
        double dd = dist2(w->pts + i * m, w->pts + c * m, m);
        if (dd < best) {
          best = dd;
          j = c;
        }
      }
    }
    w->nn[i] = j == SL_KDTREE_NONE ? SL__NONE : (uint32_t)j;
    if (j != SL_KDTREE_NONE) found++;
  }
  out->pairs = found;
  /* y(k): mean log distance of the pairs that still exist k steps on and are
   * apart (a pair at distance 0 carries no log and is skipped).  Pairs are
   * walked one at a time along both trajectories, which reads memory in
   * order and gives every k its own accumulator, so the products do not wait
   * on each other. */
  double *mant = w->acc;
  int64_t *ex = w->ex;
  uint64_t *cnt = w->cnt;
  for (unsigned k = 0; k <= steps; k++) {
    mant[k] = 1.0;
    ex[k] = 0;
    cnt[k] = 0;
  }
  unsigned since = 0;
  for (size_t i = 0; i < count; i++) {
    uint32_t j = w->nn[i];
    if (j == SL__NONE) continue;
    size_t far = i > j ? i : j, kmax = count - 1 - far;
    if (kmax > steps) kmax = steps;
    const double *a = w->pts + i * m, *b = w->pts + (size_t)j * m;
    /* Small dimensions get a loop with the dimension fixed, which the
     * compiler unrolls. */
#define SL__CURVE_ROW(DIM)                                    \
  for (size_t k = 0; k <= kmax; k++) {                        \
    double d2 = dist2(a + k * (DIM), b + k * (DIM), (DIM));   \
    if (d2 > 0) {                                             \
      mant[k] *= split_d2(d2, &ex[k]);                        \
      cnt[k]++;                                               \
    }                                                         \
  }
    switch (m) {
      case 1: SL__CURVE_ROW(1) break;
      case 2: SL__CURVE_ROW(2) break;
      case 3: SL__CURVE_ROW(3) break;
      case 4: SL__CURVE_ROW(4) break;
      default: SL__CURVE_ROW(m) break;
    }
#undef SL__CURVE_ROW
    /* 256 mantissas of at least 1/2 stay far above the subnormals. */
    if (++since == 256) {
      since = 0;
      for (unsigned k = 0; k <= steps; k++) {
        int fe;
        mant[k] = frexp(mant[k], &fe);
        ex[k] += fe;
      }
    }
  }
  double *y = w->acc;
  for (unsigned k = 0; k <= steps; k++) {
    double lnsum = 0.5 * (log(mant[k]) + (double)ex[k] * 0.69314718055994530942);
    y[k] = cnt[k] ? lnsum / (double)cnt[k] : (k ? y[k - 1] : -745.0 / 2);
  }
  if (curve)
    for (size_t k = 0; k < curve_cap && k <= steps; k++) curve[k] = y[k];
  lyap_fit(y, steps + 1, out);
  out->lambda = out->lambda_step / dt;
  return 0;
}

int sl_lyap_estimate(const double *x, size_t n, const sl_dyn_params_t *p, void *ws,
                     size_t ws_size, double *curve, size_t curve_cap, sl_lyap_t *out) {
  dyn_ws_t w;
  dyn_embed_t e;
  if (out == NULL) return SL_AN_EINVAL;
  int rc = dyn_resolve(x, n, p, ws, ws_size, &w, &e);
  if (rc) return rc;
  return lyap_run(&w, n, p, &e, curve, curve_cap, out);
}

static int corr_run(const dyn_ws_t *w, size_t n, const dyn_embed_t *e, sl_corrdim_t *out) {
  memset(out, 0, sizeof(*out));
  out->m = e->m;
  out->tau = e->tau;
  out->theiler = e->theiler;
  if (e->sd == 0) return 0;
  size_t count = sl_embed_count(n, e->m, e->tau);
  int rc = sl_embed_build(w->z, n, e->m, e->tau, w->pts);
  if (rc) return rc;
  const unsigned m = e->m;
  uint64_t *bins = w->cnt;
  memset(bins, 0, SL__CORR_BINS * sizeof(uint64_t));
  /* Enough reference points to stay under the pair budget. */
  double all = (double)count * (double)count / 2;
  size_t stride = all > SL__CORR_MAX_PAIRS ? (size_t)ceil(all / SL__CORR_MAX_PAIRS) : 1;
  uint64_t pairs = 0, zero = 0;
  for (size_t i = 0; i < count; i += stride) {
    const double *a = w->pts + i * m;
    for (size_t j = i + (size_t)e->theiler + 1; j < count; j++) {
      double d2 = dist2(a, w->pts + j * m, m);
      pairs++;
      if (d2 == 0) {
        zero++;
        continue;
      }
      /* The bin is the binary exponent and the top three mantissa bits of
       * d^2: its edges are exact doubles, no log per pair. */
      uint64_t u;
      memcpy(&u, &d2, sizeof(u));
      bins[u >> (52 - 3)]++;
    }
  }
  out->pairs = pairs;
  if (pairs == 0) return 0;
  /* Walk the bin edges upward: C(edge) = share of pairs below the edge. */
  double c_lo = SL__CORR_MIN_PAIRS_LO / (double)pairs;
  if (c_lo < SL__CORR_C_LO) c_lo = SL__CORR_C_LO;
  double sx = 0, sy = 0, sxx = 0, sxy = 0, syy = 0, np = 0;
  uint64_t below = zero;
  double r_lo = 0, r_hi = 0;
  for (size_t b = 0; b + 1 < SL__CORR_BINS; b++) {
    below += bins[b];
    double c = (double)below / (double)pairs;
    if (c < c_lo) continue;
    if (c > SL__CORR_C_HI) break;
    uint64_t edge_bits = (uint64_t)(b + 1) << (52 - 3);
    double edge2;
    memcpy(&edge2, &edge_bits, sizeof(edge2));
    double lx = 0.5 * log(edge2), ly = log(c);
    if (np == 0) r_lo = sqrt(edge2);
    r_hi = sqrt(edge2);
    sx += lx;
    sy += ly;
    sxx += lx * lx;
    sxy += lx * ly;
    syy += ly * ly;
    np++;
  }
  out->r_lo = r_lo;
  out->r_hi = r_hi;
  if (np >= 2) {
    double vx = sxx - sx * sx / np, vy = syy - sy * sy / np, cxy = sxy - sx * sy / np;
    out->dim = vx > 0 ? cxy / vx : 0;
    out->fit_r2 = vx > 0 && vy > 0 ? cxy * cxy / (vx * vy) : 1;
  }
  return 0;
}

int sl_corrdim_estimate(const double *x, size_t n, const sl_dyn_params_t *p, void *ws,
                        size_t ws_size, sl_corrdim_t *out) {
  dyn_ws_t w;
  dyn_embed_t e;
  if (out == NULL) return SL_AN_EINVAL;
  int rc = dyn_resolve(x, n, p, ws, ws_size, &w, &e);
  if (rc) return rc;
  return corr_run(&w, n, &e, out);
}

const char *sl_dyn_class_name(sl_dyn_class_t c) {
  switch (c) {
    case SL_DYN_FIXED_POINT: return "fixed_point";
    case SL_DYN_PERIODIC: return "periodic";
    case SL_DYN_CHAOTIC: return "chaotic";
    case SL_DYN_NOISE: return "noise";
    case SL_DYN_TREND: return "trend";
  }
  return "unknown";
}

/* Classification thresholds (see sl_dyn_classify). */
#define SL__SETTLE_MAX 1e-6   /* last quarter's range / whole range: settled */
#define SL__TREND_R2 0.9      /* a straight line explains the series */
#define SL__NOISE_FIRST 0.5   /* share of the divergence done in one step */
#define SL__PERIODIC_GROWTH 2.5 /* e-folds neighbours part at most */
#define SL__CHAOS_R2 0.8      /* the exponential law holds */
#define SL__RECUR_MIN 0.5     /* autocorrelation comes back this high */
#define SL__RECUR_SAMPLES 20000 /* samples the recurrence check reads */
#define SL__RECUR_LAGS 2000   /* lags it tries */

/* The highest autocorrelation at a lag past its first negative value: near
 * 1 for a periodic series, low for noise and chaos, 0 for a series whose
 * autocorrelation never turns negative (a random walk).  z is z-scored. */
static double acf_recurrence(const double *z, size_t n) {
  if (n > SL__RECUR_SAMPLES) n = SL__RECUR_SAMPLES;
  size_t lags = n / 3 < SL__RECUR_LAGS ? n / 3 : SL__RECUR_LAGS;
  double c0 = 0, best = 0;
  for (size_t i = 0; i < n; i++) c0 += z[i] * z[i];
  if (c0 == 0) return 0;
  int crossed = 0;
  for (size_t k = 1; k <= lags; k++) {
    double c = 0;
    for (size_t i = 0; i + k < n; i++) c += z[i] * z[i + k];
    double r = c / c0;
    if (!crossed) crossed = r < 0;
    else if (r > best) best = r;
  }
  return best;
}

/* The verdict, in order:
 *  1. constant, or the last quarter's range at most 1e-6 of the whole:
 *     fixed point;
 *  2. a straight line explains R^2 >= 0.9 of the variance: trend (checked
 *     before any embedding, so a drift is never mistaken for divergence);
 *  3. no dimension up to SL_DYN_MAX_DIM unfolds it (false neighbours stay
 *     above 2%): noise;
 *  4. neighbours never part by more than e^2.5: periodic (or quasi-periodic)
 *     when the autocorrelation comes back to 0.5 or more after turning
 *     negative, else noise (a random walk parts slowly but never recurs);
 *  5. half of the divergence happens in the first step: noise;
 *  6. a positive exponent whose line fits with R^2 >= 0.8: chaotic;
 *  7. anything else diverges without an exponential law: noise. */
int sl_dyn_classify(const double *x, size_t n, const sl_dyn_params_t *p, void *ws,
                    size_t ws_size, sl_dyn_report_t *out) {
  if (out == NULL) return SL_AN_EINVAL;
  memset(out, 0, sizeof(*out));
  dyn_ws_t w;
  dyn_embed_t e;
  int rc = dyn_resolve(x, n, p, ws, ws_size, &w, &e);
  if (rc) return rc;
  const double *z = w.z;
  double mn = z[0], mx = z[0], tmn = z[n - n / 4], tmx = tmn;
  for (size_t i = 0; i < n; i++) {
    if (z[i] < mn) mn = z[i];
    if (z[i] > mx) mx = z[i];
    if (i >= n - n / 4) {
      if (z[i] < tmn) tmn = z[i];
      if (z[i] > tmx) tmx = z[i];
    }
  }
  out->settle = mx > mn ? (tmx - tmn) / (mx - mn) : 0;
  out->fnn = e.fnn;
  if (e.sd == 0 || out->settle <= SL__SETTLE_MAX) {
    out->cls = SL_DYN_FIXED_POINT;
    return 0;
  }
  /* z has mean 0 and variance 1, so R^2 of a line is corr(t, z)^2. */
  double tm = (double)(n - 1) / 2, stt = 0, stz = 0;
  for (size_t i = 0; i < n; i++) {
    stt += ((double)i - tm) * ((double)i - tm);
    stz += ((double)i - tm) * z[i];
  }
  out->trend_r2 = stz * stz / (stt * (double)n);
  if (out->trend_r2 >= SL__TREND_R2) {
    out->cls = SL_DYN_TREND;
    return 0;
  }
  rc = lyap_run(&w, n, p, &e, NULL, 0, &out->lyap);
  if (rc) return rc;
  rc = corr_run(&w, n, &e, &out->corr);
  if (rc) return rc;
  const sl_lyap_t *l = &out->lyap;
  if (e.fnn > SL__FNN_THRESHOLD)
    out->cls = SL_DYN_NOISE;
  else if (l->growth < SL__PERIODIC_GROWTH)
    out->cls = (out->recurrence = acf_recurrence(z, n)) >= SL__RECUR_MIN ? SL_DYN_PERIODIC
                                                                         : SL_DYN_NOISE;
  else if (l->first_step >= SL__NOISE_FIRST)
    out->cls = SL_DYN_NOISE;
  else if (l->lambda_step > 0 && l->fit_r2 >= SL__CHAOS_R2)
    out->cls = SL_DYN_CHAOTIC;
  else
    out->cls = SL_DYN_NOISE;
  return 0;
}
