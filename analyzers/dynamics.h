/* dynamics.h: largest Lyapunov exponent, correlation dimension and a
 * classification of a scalar series.
 *
 * Given samples x[0..n) taken every dt time units, this file estimates
 *  - the largest Lyapunov exponent by Rosenstein's method (1993): every
 *    delay vector is paired with its nearest neighbour outside a Theiler
 *    window (found with the k-d tree of analyzers/kdtree.h), and the mean
 *    log distance of the pairs after k steps, y(k), is fitted with a line
 *    over one fixed fit region rule (see sl_lyap_estimate);
 *  - the correlation dimension by Grassberger-Procaccia (1983): the slope of
 *    log C(r) against log r, C(r) being the share of pairs of delay vectors
 *    closer than r;
 *  - a classification as fixed point, periodic, chaotic, noise or trend,
 *    with the evidence behind it.
 * The series is z-scored first, so every result is unchanged when it is
 * scaled (by any non-zero factor) or shifted.  Exponents are per time unit
 * (per sample when dt = 1).  Nothing allocates: the caller supplies a
 * workspace of sl_dyn_workspace_size(n) bytes.
 */
#ifndef SL_DYNAMICS_H
#define SL_DYNAMICS_H

#include <stddef.h>
#include <stdint.h>

#include "analyzers/status.h"

#define SL_DYN_MAX_DIM 10    /* largest embedding dimension tried or accepted */
#define SL_DYN_MIN_SAMPLES 64 /* shortest series accepted */

/* Neighbour search for Rosenstein's method. */
#define SL_DYN_SEARCH_KDTREE 0 /* k-d tree, O(n log n) expected (default) */
#define SL_DYN_SEARCH_BRUTE 1  /* every pair, O(n^2): the baseline, same result */

typedef enum {
  SL_DYN_FIXED_POINT = 0, /* constant, or settles to a constant */
  SL_DYN_PERIODIC = 1,    /* nearby trajectories stay near: exponent ~ 0 */
  SL_DYN_CHAOTIC = 2,     /* deterministic, exponential divergence */
  SL_DYN_NOISE = 3,       /* no determinism: neighbours part at once */
  SL_DYN_TREND = 4        /* dominated by a monotone drift */
} sl_dyn_class_t;

typedef struct {
  double dt;          /* sample interval in time units, > 0 (0 means 1) */
  unsigned m;         /* embedding dimension; 0 = false nearest neighbours */
  unsigned tau;       /* lag in samples; 0 = sl_embed_tau */
  unsigned theiler;   /* Theiler window in samples; 0 = automatic (see .c) */
  unsigned max_steps; /* divergence curve runs k = 0..max_steps; 0 = 40 Theiler
                         windows, clamped to [50, vectors / 10] */
  int search;         /* SL_DYN_SEARCH_KDTREE or SL_DYN_SEARCH_BRUTE */
} sl_dyn_params_t;

typedef struct {
  double lambda;       /* largest Lyapunov exponent per time unit */
  double lambda_step;  /* the same per sample */
  double fit_r2;       /* R^2 of the line fitted over the fit region */
  double growth;       /* plateau of y minus y(0), in e-folds */
  double first_step;   /* (y(1) - y(0)) / growth; near 1 for noise */
  unsigned fit_lo;     /* first step of the fit region */
  unsigned fit_hi;     /* last step of the fit region */
  unsigned steps;      /* points on the divergence curve (max_steps + 1) */
  unsigned pairs;      /* reference points that found a neighbour */
  unsigned m, tau, theiler; /* embedding and window actually used */
} sl_lyap_t;

typedef struct {
  double dim;        /* correlation dimension D2 */
  double fit_r2;     /* R^2 of log C(r) against log r over the region */
  double r_lo, r_hi; /* scaling region, in standard deviations of x */
  uint64_t pairs;    /* pairs of delay vectors counted */
  unsigned m, tau, theiler; /* embedding and window actually used */
} sl_corrdim_t;

typedef struct {
  sl_dyn_class_t cls;  /* the verdict */
  double trend_r2;     /* R^2 of a straight line through the series */
  double settle;       /* range of the last quarter / range of the whole */
  double fnn;          /* false-neighbour fraction at the dimension used */
  double recurrence;   /* autocorrelation peak past its first zero (when
                          growth is small; else 0) */
  sl_lyap_t lyap;      /* exponent evidence (zeros for fixed point, trend) */
  sl_corrdim_t corr;   /* dimension evidence (zeros for fixed point, trend) */
} sl_dyn_report_t;

/* Bytes of workspace every function below needs for a series of n samples
 * (enough for any dimension up to SL_DYN_MAX_DIM). */
size_t sl_dyn_workspace_size(size_t n);

/* Estimates the largest Lyapunov exponent of x[0..n) by Rosenstein's method.
 * p may be NULL for all defaults.  curve, when non-NULL, receives up to
 * curve_cap points of the divergence curve y(k), the mean of ln(distance)
 * of the neighbour pairs k steps on, in z-scored units.
 *
 * The fit region rule, the same for every series: let y0 = y(0) and let the
 * plateau P be the mean of y over the last half of the curve, G = P - y0.
 * The line is fitted by least squares over the steps from the first k with
 * y(k) >= y0 + 0.2 G to the last k before y first reaches y0 + 0.65 G
 * (at least three points).  The lower cut skips the transient in which the
 * neighbour's offset turns into the unstable direction; the upper cut stays
 * clear of the bend into saturation.
 *
 * Returns 0; SL_AN_EINVAL for a NULL argument, n < SL_DYN_MIN_SAMPLES, a
 * non-finite sample, dt < 0, a dimension above SL_DYN_MAX_DIM, a short
 * workspace, or a series too short for the embedding, window and curve. */
int sl_lyap_estimate(const double *x, size_t n, const sl_dyn_params_t *p, void *ws,
                     size_t ws_size, double *curve, size_t curve_cap, sl_lyap_t *out);

/* Estimates the correlation dimension of x[0..n) by Grassberger-Procaccia
 * (m, tau, theiler from p as for sl_lyap_estimate; max_steps and search are
 * ignored).  The scaling region rule: fit log C against log r over the radii
 * where C(r) lies between max(1e-4, 200 / pairs) and 0.02.  Up to 2.5e7
 * pairs are counted; longer series use every k-th reference point.  Returns
 * 0 or SL_AN_EINVAL as sl_lyap_estimate; a constant series gives dim = 0. */
int sl_corrdim_estimate(const double *x, size_t n, const sl_dyn_params_t *p, void *ws,
                        size_t ws_size, sl_corrdim_t *out);

/* Classifies x[0..n) and fills *out with the verdict and its evidence (see
 * the rules in dynamics.c and docs).  Returns 0 or SL_AN_EINVAL as
 * sl_lyap_estimate. */
int sl_dyn_classify(const double *x, size_t n, const sl_dyn_params_t *p, void *ws,
                    size_t ws_size, sl_dyn_report_t *out);

/* A static lower-case name for a class ("fixed_point", "periodic", ...). */
const char *sl_dyn_class_name(sl_dyn_class_t c);

#endif
