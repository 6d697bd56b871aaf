/* histogram.h: fixed-bucket histograms for /metrics.
 *
 * The bucket bounds are constant tables (the OpenTelemetry GenAI semantic
 * conventions' advice where one exists), at most SL_HIST_MAX of them; an
 * observation is a search over them and two adds, no allocation.  Counts
 * are kept per bucket (not cumulative): the exposition sums them.
 */
#ifndef SL_HISTOGRAM_H
#define SL_HISTOGRAM_H

#include <stdint.h>

#define SL_HIST_MAX 16

typedef struct {
  const char *name;     /* for messages and tests ("ttft") */
  int n;                /* bounds */
  double le[SL_HIST_MAX]; /* upper bounds, ascending; +Inf is implied */
} sl_buckets_t;

/* gen_ai.server.time_to_first_token (seconds). */
extern const sl_buckets_t sl_buckets_ttft;
/* gen_ai.server.time_per_output_token (seconds). */
extern const sl_buckets_t sl_buckets_tpot;
/* gen_ai.server.request.duration (seconds): request duration and queue wait. */
extern const sl_buckets_t sl_buckets_duration;
/* gen_ai.client.token.usage (tokens), the first 14 powers of four. */
extern const sl_buckets_t sl_buckets_tokens;
/* The event loop's lag (seconds): 1 ms to 10 s. */
extern const sl_buckets_t sl_buckets_lag;

typedef struct {
  const sl_buckets_t *b;
  uint64_t counts[SL_HIST_MAX + 1]; /* counts[i]: observations <= le[i] and > le[i-1]; counts[n]: above all */
  uint64_t count;
  double sum;
} sl_hist_t;

void sl_hist_init(sl_hist_t *h, const sl_buckets_t *b);
/* Counts v (NaN is ignored). */
void sl_hist_observe(sl_hist_t *h, double v);
/* dst += src (the same buckets). */
void sl_hist_add(sl_hist_t *dst, const sl_hist_t *src);

#endif
