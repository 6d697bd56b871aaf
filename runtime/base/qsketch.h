/* qsketch.h: a quantile sketch with a relative error bound.
 *
 * Values (milliseconds, or any positive unit) go into logarithmic buckets
 * of ratio gamma = (1 + SL_QS_ALPHA) / (1 - SL_QS_ALPHA), as in DDSketch
 * (Masson, Rim, Lee, VLDB 2019): any quantile read back is within a
 * relative error of SL_QS_ALPHA of a value of the sample at that rank, for
 * values in [SL_QS_MIN, SL_QS_MAX].  Values below SL_QS_MIN (zero included)
 * count in the lowest bucket and read back as SL_QS_MIN; values above
 * SL_QS_MAX count in the highest and read back as SL_QS_MAX; NaN and
 * negative values are ignored.  Fixed size, no allocation: adding is an
 * index computation (one log) and an increment.
 */
#ifndef SL_QSKETCH_H
#define SL_QSKETCH_H

#include <stdint.h>

#define SL_QS_ALPHA 0.01
#define SL_QS_MIN 1e-3
#define SL_QS_MAX 1e7
#define SL_QS_BUCKETS 1160 /* ceil(log(SL_QS_MAX / SL_QS_MIN) / log(gamma)) + 1, with a margin */

typedef struct {
  uint32_t counts[SL_QS_BUCKETS];
  uint64_t n;       /* values counted */
  double sum;       /* their sum (for the mean) */
  double min, max;  /* the smallest and largest counted (0 when n is 0) */
} sl_qsketch_t;

void sl_qs_reset(sl_qsketch_t *s);
void sl_qs_add(sl_qsketch_t *s, double v);
/* The q-quantile (q in [0, 1]; clamped), 0 when the sketch is empty.  The
 * rank is the lower one (q = 0.5 of 4 values reads the 2nd smallest); q = 0
 * and q = 1 read back min and max exactly. */
double sl_qs_quantile(const sl_qsketch_t *s, double q);
double sl_qs_mean(const sl_qsketch_t *s);
/* dst += src. */
void sl_qs_merge(sl_qsketch_t *dst, const sl_qsketch_t *src);

#endif
