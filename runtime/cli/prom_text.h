/* prom_text.h: histograms over a parsed Prometheus exposition for `sluice
 * top`, and histogram_quantile over them.
 *
 * The reader itself (sl_prom_parse, the lookups) is runtime/base/prom_parse.h,
 * included here.  Histograms are gathered from their _bucket, _sum and _count
 * series, and sl_prom_quantile interpolates within a bucket as
 * Prometheus's histogram_quantile does.  Not for the daemon: a scrape
 * allocates freely.
 */
#ifndef SL_CLI_PROM_TEXT_H
#define SL_CLI_PROM_TEXT_H

#include <stddef.h>

#include "runtime/base/prom_parse.h"

/* The most buckets (+Inf included) one histogram may have here. */
#define SL_PROM_HIST_MAX 64

/* A histogram's buckets as the exposition gives them: cumulative counts,
 * ascending upper bounds, the last one +Inf. */
typedef struct {
  int n;                         /* buckets, +Inf included */
  double le[SL_PROM_HIST_MAX];   /* upper bounds, ascending */
  double cum[SL_PROM_HIST_MAX];  /* observations <= le[i] */
  double count;                  /* _count (NaN when absent) */
  double sum;                    /* _sum (NaN when absent) */
} sl_prom_hist_t;

/* Gathers histogram name's series whose labels, "le" aside, are exactly
 * labels into *h.  Returns 0; SL_ENOTFOUND when it has no bucket;
 * SL_EPARSE when an "le" is not a number, two buckets share one, or the
 * last is not +Inf; SL_ETOOBIG past SL_PROM_HIST_MAX buckets. */
int sl_prom_hist(const sl_prom_t *p, const char *name, const char *const *labels, sl_prom_hist_t *h);

/* out = now - prev: what was observed between two scrapes.  Returns 0, or
 * SL_EINVAL when the buckets differ or a count went down (the process
 * restarted in between), out then undefined. */
int sl_prom_hist_sub(const sl_prom_hist_t *now, const sl_prom_hist_t *prev, sl_prom_hist_t *out);

/* The q-quantile (0 <= q <= 1) of h, as Prometheus's histogram_quantile
 * computes it: the bucket holding rank q*total is found and the value
 * interpolated linearly between its bounds (the first bucket's lower
 * bound is 0, unless its upper bound is <= 0, which is then the answer).
 * Returns NaN when h holds no observation, has fewer than two buckets or
 * does not end at +Inf; -Inf/+Inf for q below 0/above 1.  When the rank
 * falls in the +Inf bucket the answer is the largest finite bound, a
 * lower bound of the truth: *above (may be NULL) is then set to 1, else 0. */
double sl_prom_quantile(double q, const sl_prom_hist_t *h, int *above);

#endif
