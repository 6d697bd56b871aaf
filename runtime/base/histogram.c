/* histogram.c: fixed-bucket histograms (see histogram.h). */
#include "runtime/base/histogram.h"

#include <math.h>
#include <string.h>

const sl_buckets_t sl_buckets_ttft = {
    "ttft", 16, {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0}};
const sl_buckets_t sl_buckets_tpot = {
    "tpot", 13, {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5}};
const sl_buckets_t sl_buckets_duration = {
    "duration", 14, {0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}};
const sl_buckets_t sl_buckets_tokens = {
    "tokens", 14, {1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}};
const sl_buckets_t sl_buckets_lag = {
    "lag", 12, {0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0}};

void sl_hist_init(sl_hist_t *h, const sl_buckets_t *b) {
  memset(h, 0, sizeof(*h));
  h->b = b;
}

void sl_hist_observe(sl_hist_t *h, double v) {
  if (isnan(v) || h->b == NULL) return;
  int lo = 0, hi = h->b->n; /* the first bound >= v, by bisection; n when none */
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (h->b->le[mid] >= v) hi = mid;
    else lo = mid + 1;
  }
  h->counts[lo]++;
  h->count++;
  h->sum += v;
}

void sl_hist_add(sl_hist_t *dst, const sl_hist_t *src) {
  if (dst->b == NULL) dst->b = src->b;
  for (int i = 0; i <= SL_HIST_MAX; i++) dst->counts[i] += src->counts[i];
  dst->count += src->count;
  dst->sum += src->sum;
}
