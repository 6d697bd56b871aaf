/* qsketch.h: a quantile sketch with a relative error bound.
 *
 * Values (milliseconds, or any positive unit) go into logarithmic buckets
 * of ratio gamma = (1 + SL_QS_ALPHA) / (1 - SL_QS_ALPHA), as in DDSketch
 * (Masson, Rim, Lee, VLDB 2019): any quantile read back is within a
 * relative error of SL_QS_ALPHA of a value of the sample at that rank, for
 * values in [SL_QS_MIN, SL_QS_MAX].  Values below SL_QS_MIN (zero included)
 * count in the lowest bucket and read back as SL_QS_MIN; values above
 * SL_QS_MAX count in the highest and read back as SL_QS_MAX; NaN, infinite
 * and negative values are ignored.  Fixed size, no allocation: adding is an
 * index computation (one log) and an increment.
 *
 * Bucket 0 holds [0, SL_QS_MIN], bucket i (1 <= i <= SL_QS_BUCKETS - 2)
 * holds (SL_QS_MIN * gamma^(i-1), SL_QS_MIN * gamma^i], and the last one
 * holds what is above SL_QS_MAX.  With these constants SL_QS_MAX falls in
 * bucket 1152 (log(1e10) / log(1.0202...) = 1151.3): 1154 buckets are
 * needed, 1160 leave a margin (qsketch.c checks it at compile time under
 * GCC, and its unit test checks it everywhere).
 * A bucket counts up to 2^32 - 1 values and then stops counting (n does
 * not), so a sketch that is never reset stays usable.
 */
#ifndef SL_QSKETCH_H
#define SL_QSKETCH_H

#include <stdint.h>

#define SL_QS_ALPHA 0.01
#define SL_QS_MIN 1e-3
#define SL_QS_MAX 1e7
#define SL_QS_BUCKETS 1160 /* ceil(log(SL_QS_MAX / SL_QS_MIN) / log(gamma)) + 2, with a margin */

typedef struct {
  uint32_t counts[SL_QS_BUCKETS]; /* values per bucket (saturating) */
  uint64_t n;       /* values counted */
  double sum;       /* their sum (for the mean) */
  double min, max;  /* the smallest and largest counted (0 when n is 0) */
} sl_qsketch_t;

/* Empties s (also its initialization: a zeroed sketch is an empty one). */
void sl_qs_reset(sl_qsketch_t *s);
/* Counts v (see above for the values out of range and the ignored ones). */
void sl_qs_add(sl_qsketch_t *s, double v);
/* The q-quantile (q in [0, 1]; clamped, and a NaN q is taken as 0), 0 when
 * the sketch is empty.  The rank is the lower one (q = 0.5 of 4 values
 * reads the 2nd smallest); q = 0 and q = 1 read back min and max exactly,
 * and no answer lies outside [min, max]. */
double sl_qs_quantile(const sl_qsketch_t *s, double q);
/* sum / n, 0 when the sketch is empty. */
double sl_qs_mean(const sl_qsketch_t *s);
/* dst += src: afterwards dst reads as if it had counted both samples. */
void sl_qs_merge(sl_qsketch_t *dst, const sl_qsketch_t *src);

#endif
