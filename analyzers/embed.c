/* embed.c: delay embedding, normalization and the choice of lag and dimension.
 *
 * All routines are O(n) or O(n log n) per candidate parameter and work in the
 * caller's workspace.  Sums run in a fixed order so that results are
 * reproducible bit for bit.
 */
#include "analyzers/embed.h"

#include <math.h>

#include "analyzers/kdtree.h"

#define SL__ALIGN8(n) (((n) + 7u) & ~(size_t)7u)

int sl_embed_normalize(const double *x, size_t n, double *out, double *mean, double *sd) {
  if (x == NULL || out == NULL || n == 0) return SL_AN_EINVAL;
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(x[i])) return SL_AN_EINVAL;
    s += x[i];
  }
  double mu = s / (double)n, ss = 0;
  for (size_t i = 0; i < n; i++) ss += (x[i] - mu) * (x[i] - mu);
  double sigma = sqrt(ss / (double)n);
  /* A series whose spread is lost in rounding of its mean is constant. */
  if (!(sigma > 1e-13 * fabs(mu)) || sigma == 0) sigma = 0;
  for (size_t i = 0; i < n; i++) out[i] = sigma > 0 ? (x[i] - mu) / sigma : 0.0;
  if (mean) *mean = mu;
  if (sd) *sd = sigma;
  return 0;
}

size_t sl_embed_count(size_t n, unsigned m, unsigned tau) {
  size_t span = (size_t)(m ? m - 1 : 0) * tau;
  return n > span ? n - span : 0;
}

int sl_embed_build(const double *x, size_t n, unsigned m, unsigned tau, double *out) {
  if (x == NULL || out == NULL || m == 0 || tau == 0 || m > SL_EMBED_MAX_DIM) return SL_AN_EINVAL;
  size_t count = sl_embed_count(n, m, tau);
  if (count == 0) return SL_AN_EINVAL;
  for (size_t i = 0; i < count; i++)
    for (unsigned k = 0; k < m; k++) out[i * m + k] = x[i + (size_t)k * tau];
  return 0;
}

int sl_embed_tau_acf(const double *x, size_t n, unsigned max_tau, unsigned *tau) {
  if (x == NULL || tau == NULL || n < 2 || max_tau == 0 || max_tau >= n) return SL_AN_EINVAL;
  double mu = 0;
  for (size_t i = 0; i < n; i++) mu += x[i];
  mu /= (double)n;
  double c0 = 0;
  for (size_t i = 0; i < n; i++) c0 += (x[i] - mu) * (x[i] - mu);
  *tau = 1;
  if (c0 == 0) return 0;
  for (unsigned k = 1; k <= max_tau; k++) {
    double c = 0;
    for (size_t i = 0; i + k < n; i++) c += (x[i] - mu) * (x[i + k] - mu);
    /* The biased estimator (divide by n, not n - k) keeps |r| <= 1. */
    if (c / c0 < exp(-1.0)) {
      *tau = k;
      return 0;
    }
  }
  *tau = max_tau;
  return 0;
}

static unsigned ami_bins(size_t n) {
  unsigned b = (unsigned)sqrt((double)n / 10.0);
  return b < 4 ? 4 : b > 64 ? 64 : b;
}

size_t sl_embed_tau_workspace_size(size_t n) {
  unsigned b = ami_bins(n);
  return SL__ALIGN8(n) + (size_t)b * b * sizeof(uint32_t) + 2 * (size_t)b * sizeof(uint32_t);
}

/* Mutual information in nats between bin[t] and bin[t+k], t = 0..n-k. */
static double ami_at(const uint8_t *bin, size_t n, unsigned b, unsigned k, uint32_t *joint,
                     uint32_t *pa, uint32_t *pb) {
  size_t len = n - k;
  for (size_t i = 0; i < (size_t)b * b; i++) joint[i] = 0;
  for (unsigned i = 0; i < b; i++) pa[i] = pb[i] = 0;
  for (size_t t = 0; t < len; t++) {
    joint[bin[t] * b + bin[t + k]]++;
    pa[bin[t]]++;
    pb[bin[t + k]]++;
  }
  double mi = 0, inv = 1.0 / (double)len;
  for (unsigned i = 0; i < b; i++)
    for (unsigned j = 0; j < b; j++) {
      uint32_t c = joint[i * b + j];
      if (c == 0) continue;
      mi += c * inv * log((double)c * (double)len / ((double)pa[i] * (double)pb[j]));
    }
  return mi;
}

int sl_embed_tau_ami(const double *x, size_t n, unsigned max_tau, void *ws, size_t ws_size,
                     unsigned *tau, double *ami) {
  if (x == NULL || ws == NULL || tau == NULL || max_tau == 0 || (size_t)max_tau + 2 > n ||
      ws_size < sl_embed_tau_workspace_size(n))
    return SL_AN_EINVAL;
  unsigned b = ami_bins(n);
  uint8_t *bin = (uint8_t *)ws;
  uint32_t *joint = (uint32_t *)((char *)ws + SL__ALIGN8(n));
  uint32_t *pa = joint + (size_t)b * b, *pb = pa + b;
  double mn = x[0], mx = x[0];
  for (size_t i = 1; i < n; i++) {
    if (x[i] < mn) mn = x[i];
    if (x[i] > mx) mx = x[i];
  }
  double w = (mx - mn) / b;
  for (size_t i = 0; i < n; i++) {
    unsigned k = w > 0 ? (unsigned)((x[i] - mn) / w) : 0;
    bin[i] = (uint8_t)(k >= b ? b - 1 : k);
  }
  double prev = ami_at(bin, n, b, 1, joint, pa, pb);
  if (ami) {
    ami[0] = ami_at(bin, n, b, 0, joint, pa, pb);
    ami[1] = prev;
  }
  *tau = max_tau;
  int found = 0;
  for (unsigned k = 2; k <= max_tau + 1 && k < n; k++) {
    double cur = ami_at(bin, n, b, k, joint, pa, pb);
    if (ami && k <= max_tau) ami[k] = cur;
    if (!found && cur >= prev) {
      *tau = k - 1;
      found = 1;
      if (!ami) break;
    }
    prev = cur;
  }
  return 0;
}

int sl_embed_tau(const double *x, size_t n, unsigned max_tau, void *ws, size_t ws_size,
                 unsigned *tau) {
  unsigned ta, tb;
  int rc = sl_embed_tau_ami(x, n, max_tau, ws, ws_size, &ta, NULL);
  if (rc) return rc;
  rc = sl_embed_tau_acf(x, n, max_tau, &tb);
  if (rc) return rc;
  *tau = ta < tb ? ta : tb;
  return 0;
}

size_t sl_embed_fnn_workspace_size(size_t n, unsigned max_m) {
  return SL__ALIGN8(n * (size_t)max_m * sizeof(double)) + sl_kdtree_workspace_size(n);
}

int sl_embed_dim_fnn(const double *x, size_t n, unsigned tau, unsigned theiler, unsigned max_m,
                     double threshold, void *ws, size_t ws_size, unsigned *m, double *frac) {
  if (x == NULL || ws == NULL || m == NULL || tau == 0 || max_m == 0 ||
      max_m >= SL_EMBED_MAX_DIM || ws_size < sl_embed_fnn_workspace_size(n, max_m))
    return SL_AN_EINVAL;
  size_t span = (size_t)max_m * tau;
  if (n <= span + 2 * (size_t)theiler + 2) return SL_AN_EINVAL;
  double *pts = (double *)ws;
  void *kws = (char *)ws + SL__ALIGN8(n * (size_t)max_m * sizeof(double));
  double mu = 0, var = 0;
  for (size_t i = 0; i < n; i++) mu += x[i];
  mu /= (double)n;
  for (size_t i = 0; i < n; i++) var += (x[i] - mu) * (x[i] - mu);
  double ra = sqrt(var / (double)n); /* attractor size for Kennel's second test */
  const double rtol = 15.0, atol = 2.0;
  if (frac)
    for (unsigned d = 0; d < max_m; d++) frac[d] = -1;
  *m = max_m;
  double prev = 2, prev2 = 2, best = 2;
  unsigned best_m = max_m;
  for (unsigned d = 1; d <= max_m; d++) {
    /* Vectors of dimension d whose (d+1)-th coordinate still exists. */
    size_t count = n - (size_t)d * tau;
    for (size_t i = 0; i < count; i++)
      for (unsigned k = 0; k < d; k++) pts[i * d + k] = x[i + (size_t)k * tau];
    sl_kdtree_t tree;
    int rc = sl_kdtree_build(&tree, pts, count, d, kws, sl_kdtree_workspace_size(count));
    if (rc) return rc;
    size_t nfalse = 0, total = 0;
    for (size_t i = 0; i < count; i++) {
      size_t j;
      double d2;
      if (sl_kdtree_nearest(&tree, pts + i * d, i, theiler, SL_KDTREE_NONE, &j, &d2) != 0) continue;
      double extra = fabs(x[i + (size_t)d * tau] - x[j + (size_t)d * tau]);
      double dist = sqrt(d2);
      total++;
      if (extra > rtol * dist || sqrt(d2 + extra * extra) > atol * ra) nfalse++;
    }
    double f = total ? (double)nfalse / (double)total : 0.0;
    if (frac) frac[d - 1] = f;
    if (f <= threshold) {
      *m = d;
      return 0;
    }
    /* A share that rises twice in a row while still above the threshold is
     * the mark of noise (Kennel's second test fails more often as dimensions
     * add up): no larger dimension will unfold it, so stop at the minimum.
     * One rise is not enough: degenerate series (a square wave, whose
     * vectors coincide exactly) wobble on the way down. */
    if (f < best) {
      best = f;
      best_m = d;
    }
    if (d > 2 && f > prev && prev > prev2) {
      *m = best_m;
      return 0;
    }
    prev2 = prev;
    prev = f;
  }
  return 0;
}
