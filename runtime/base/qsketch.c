/* qsketch.c: the relative-error quantile sketch (see qsketch.h).
 *
 * A value v in (SL_QS_MIN, SL_QS_MAX] goes to bucket
 * i = ceil(log(v / SL_QS_MIN) / log(gamma)), which holds
 * (SL_QS_MIN * gamma^(i-1), SL_QS_MIN * gamma^i]; the bucket reads back as
 * 2 * SL_QS_MIN * gamma^i / (1 + gamma), the point whose relative distance
 * to both ends is SL_QS_ALPHA.  Bucket 0 is [0, SL_QS_MIN] and the last one
 * is everything above SL_QS_MAX; both read back as the bound they stand for.
 */
#include "runtime/base/qsketch.h"

#include <math.h>
#include <string.h>

#define SL__QS_GAMMA ((1.0 + SL_QS_ALPHA) / (1.0 - SL_QS_ALPHA))
#define SL__QS_TOP (SL_QS_BUCKETS - 1) /* above SL_QS_MAX */

/* The highest in-range bucket is the one SL_QS_MAX falls in; it must stay
 * below SL__QS_TOP.  GCC folds the logs into a constant; elsewhere the unit
 * test (tests/runtime/base/test_qsketch.c) checks the same.  The index is
 * clamped in sl_qs_add anyway, so a wrong count would cost accuracy at the
 * top of the range, never memory safety. */
#if defined(__GNUC__) && !defined(__clang__)
_Static_assert((int)(__builtin_log(SL_QS_MAX / SL_QS_MIN) / __builtin_log(SL__QS_GAMMA)) + 1 < SL__QS_TOP,
               "SL_QS_BUCKETS is too small for [SL_QS_MIN, SL_QS_MAX] at SL_QS_ALPHA");
#endif

void sl_qs_reset(sl_qsketch_t *s) { memset(s, 0, sizeof(*s)); }

static void sl__qs_count(uint32_t *c, uint64_t k) {
  /* Saturate: a bucket that stopped counting skews its quantiles a little,
   * one that wrapped to zero would lose the whole mass. */
  uint64_t sum = (uint64_t)*c + k;
  *c = sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
}

void sl_qs_add(sl_qsketch_t *s, double v) {
  /* !(v >= 0) is also true for NaN; an infinity would make sum and max
   * infinite for the rest of the sketch's life. */
  if (!(v >= 0) || isinf(v)) return;
  int i;
  if (v <= SL_QS_MIN) {
    i = 0;
  } else if (v > SL_QS_MAX) {
    i = SL__QS_TOP;
  } else {
    double x = ceil(log(v / SL_QS_MIN) / log(SL__QS_GAMMA));
    /* Rounding can land a value on a bucket boundary one off; the clamp
     * keeps in-range values out of the two end buckets whatever it does. */
    i = x < 1 ? 1 : x > SL__QS_TOP - 1 ? SL__QS_TOP - 1 : (int)x;
  }
  sl__qs_count(&s->counts[i], 1);
  if (s->n == 0) {
    s->min = s->max = v;
  } else {
    if (v < s->min) s->min = v;
    if (v > s->max) s->max = v;
  }
  s->n++;
  s->sum += v;
}

static double sl__qs_value(int i) {
  if (i == 0) return SL_QS_MIN;
  if (i == SL__QS_TOP) return SL_QS_MAX;
  return 2.0 * SL_QS_MIN * exp((double)i * log(SL__QS_GAMMA)) / (1.0 + SL__QS_GAMMA);
}

double sl_qs_quantile(const sl_qsketch_t *s, double q) {
  if (s->n == 0) return 0;
  if (!(q > 0)) return s->min; /* NaN too */
  if (q >= 1) return s->max;
  /* The lower rank, 0-based: q (n - 1) rounded down. */
  uint64_t rank = (uint64_t)(q * (double)(s->n - 1));
  uint64_t seen = 0;
  for (int i = 0; i < SL_QS_BUCKETS; i++) {
    seen += s->counts[i];
    if (seen > rank) {
      /* The true value at this rank lies in [min, max]: clamping the
       * bucket's value there only brings it closer. */
      double r = sl__qs_value(i);
      return r < s->min ? s->min : r > s->max ? s->max : r;
    }
  }
  return s->max; /* buckets saturated: the rank is past what they kept */
}

double sl_qs_mean(const sl_qsketch_t *s) { return s->n ? s->sum / (double)s->n : 0; }

void sl_qs_merge(sl_qsketch_t *dst, const sl_qsketch_t *src) {
  if (src->n == 0) return;
  for (int i = 0; i < SL_QS_BUCKETS; i++)
    if (src->counts[i]) sl__qs_count(&dst->counts[i], src->counts[i]);
  if (dst->n == 0) {
    dst->min = src->min;
    dst->max = src->max;
  } else {
    if (src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
  }
  dst->n += src->n;
  dst->sum += src->sum;
}
