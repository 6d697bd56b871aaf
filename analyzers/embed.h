/* embed.h: delay embedding of a scalar series and the choice of its parameters.
 *
 * A series x[0..n) is unfolded into vectors Y_i = (x[i], x[i+tau], ...,
 * x[i+(m-1)tau]) (Takens).  This file provides the embedding itself, a
 * z-score normalization (so that every result downstream is unchanged when
 * the series is scaled or shifted), and the usual helpers to choose the lag
 * tau (first minimum of the average mutual information; first drop of the
 * autocorrelation below 1/e) and the dimension m (false nearest neighbours,
 * Kennel et al. 1992).  Lags and dimensions are in samples; everything works
 * on caller-owned buffers and never allocates.
 */
#ifndef SL_EMBED_H
#define SL_EMBED_H

#include <stddef.h>
#include <stdint.h>

#include "analyzers/status.h"

#define SL_EMBED_MAX_DIM 16 /* largest embedding dimension accepted */

/* Writes (x - mean) / sd to out[0..n) (out may equal x) and, when non-NULL,
 * the mean and standard deviation.  A constant series gives sd = 0 and all
 * zeros.  Returns 0, or SL_AN_EINVAL for n == 0 or a non-finite sample. */
int sl_embed_normalize(const double *x, size_t n, double *out, double *mean, double *sd);

/* Number of delay vectors of dimension m and lag tau in a series of n
 * samples: n - (m - 1) * tau, or 0 when that is not positive. */
size_t sl_embed_count(size_t n, unsigned m, unsigned tau);

/* Writes the sl_embed_count(n, m, tau) delay vectors, m doubles each,
 * row-major, to out.  Returns 0, or SL_AN_EINVAL when m or tau is 0, m exceeds
 * SL_EMBED_MAX_DIM or there is no vector. */
int sl_embed_build(const double *x, size_t n, unsigned m, unsigned tau, double *out);

/* The first lag k in 1..max_tau at which the autocorrelation of x drops
 * below 1/e, in *tau; max_tau when it never does (a constant series gives
 * 1).  Returns 0, or SL_AN_EINVAL when n < 2 or max_tau is 0 or >= n. */
int sl_embed_tau_acf(const double *x, size_t n, unsigned max_tau, unsigned *tau);

/* Bytes of workspace sl_embed_tau_ami and sl_embed_tau need. */
size_t sl_embed_tau_workspace_size(size_t n);

/* The first local minimum over k = 1..max_tau of the average mutual
 * information between x[t] and x[t+k], in *tau (max_tau when there is none
 * before it).  Samples fall into equal-width bins, about sqrt(n / 10) of them
 * (4..64), so the estimate is the plug-in histogram one; ami, when non-NULL,
 * receives max_tau + 1 values in nats (ami[0] is lag 0, the entropy).
 * Returns 0, or SL_AN_EINVAL when max_tau + 2 > n or the workspace is short. */
int sl_embed_tau_ami(const double *x, size_t n, unsigned max_tau, void *ws, size_t ws_size,
                     unsigned *tau, double *ami);

/* sluice's default lag: the smaller of the AMI minimum and the
 * autocorrelation 1/e lag.  Each rule alone overshoots on one kind of
 * series (AMI on maps, whose information decays without a clear minimum;
 * the autocorrelation on flows that switch lobes, like Lorenz), and the
 * smaller of the two is right on both.  Same arguments and failures as
 * sl_embed_tau_ami. */
int sl_embed_tau(const double *x, size_t n, unsigned max_tau, void *ws, size_t ws_size,
                 unsigned *tau);

/* Bytes of workspace sl_embed_dim_fnn needs for n samples up to max_m. */
size_t sl_embed_fnn_workspace_size(size_t n, unsigned max_m);

/* The smallest dimension m in 1..max_m whose fraction of false nearest
 * neighbours is at most threshold (Kennel's tests with Rtol = 15 and
 * Atol = 2 standard deviations; neighbours closer in time than theiler
 * samples are excluded), in *m.  When the fraction rises twice in a row
 * while still above threshold (the signature of noise), the search stops
 * and *m is the dimension of the smallest fraction; when it never gets
 * there, *m is max_m.  The caller tells success by frac[*m - 1] <=
 * threshold.  frac, when non-NULL,
 * receives the fraction for each m = 1..max_m that was evaluated (frac[m-1];
 * the rest are set to -1).  Returns 0, or SL_AN_EINVAL for max_m outside
 * 1..SL_EMBED_MAX_DIM - 1, tau 0, a series too short for max_m + 1
 * coordinates plus the window, or a short workspace. */
int sl_embed_dim_fnn(const double *x, size_t n, unsigned tau, unsigned theiler, unsigned max_m,
                     double threshold, void *ws, size_t ws_size, unsigned *m, double *frac);

#endif
