/* prom_text.c: histograms over what the exposition reader read (see prom_text.h). */
#include "runtime/cli/prom_text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/errors.h"

/* ---- histograms ---- */

int sl_prom_hist(const sl_prom_t *p, const char *name, const char *const *labels, sl_prom_hist_t *h) {
  char series[256];
  memset(h, 0, sizeof(*h));
  snprintf(series, sizeof(series), "%s_bucket", name);
  for (int i = 0; i < p->n; i++) {
    const sl_prom_sample_t *s = &p->s[i];
    if (strcmp(s->name, series) != 0) continue;
    const char *le_text = sl_prom_label(p, s, "le");
    if (le_text == NULL || !sl_prom_labels_are(p, s, labels, "le")) continue;
    char *e;
    double le = strtod(le_text, &e);
    if (*le_text == '\0' || *e != '\0' || isnan(le)) return SL_EPARSE;
    if (h->n == SL_PROM_HIST_MAX) return SL_ETOOBIG;
    /* Insert in order: the format lists buckets ascending, but a reader
     * should not depend on it. */
    int at = h->n;
    while (at > 0 && h->le[at - 1] > le) at--;
    if (at > 0 && h->le[at - 1] == le) return SL_EPARSE;
    memmove(&h->le[at + 1], &h->le[at], (size_t)(h->n - at) * sizeof(double));
    memmove(&h->cum[at + 1], &h->cum[at], (size_t)(h->n - at) * sizeof(double));
    h->le[at] = le;
    h->cum[at] = s->value;
    h->n++;
  }
  if (h->n == 0) return SL_ENOTFOUND;
  if (!isinf(h->le[h->n - 1])) return SL_EPARSE;
  snprintf(series, sizeof(series), "%s_count", name);
  h->count = sl_prom_value(p, series, labels);
  snprintf(series, sizeof(series), "%s_sum", name);
  h->sum = sl_prom_value(p, series, labels);
  return 0;
}

int sl_prom_hist_sub(const sl_prom_hist_t *now, const sl_prom_hist_t *prev, sl_prom_hist_t *out) {
  if (now->n != prev->n) return SL_EINVAL;
  out->n = now->n;
  for (int i = 0; i < now->n; i++) {
    if (now->le[i] != prev->le[i] || now->cum[i] < prev->cum[i]) return SL_EINVAL;
    out->le[i] = now->le[i];
    out->cum[i] = now->cum[i] - prev->cum[i];
  }
  if (now->count < prev->count) return SL_EINVAL;
  out->count = now->count - prev->count;
  out->sum = now->sum - prev->sum;
  return 0;
}

double sl_prom_quantile(double q, const sl_prom_hist_t *h, int *above) {
  if (above) *above = 0;
  if (isnan(q)) return NAN;
  if (q < 0) return -INFINITY;
  if (q > 1) return INFINITY;
  int n = h->n;
  if (n < 2 || !isinf(h->le[n - 1]) || h->le[n - 1] < 0) return NAN;
  /* Cumulative counts must not fall; where they do (a scrape taken while
   * the buckets were being written, in other exporters), the larger count
   * before stands, as Prometheus does it. */
  double cum[SL_PROM_HIST_MAX];
  for (int i = 0; i < n; i++) cum[i] = i > 0 && h->cum[i] < cum[i - 1] ? cum[i - 1] : h->cum[i];
  double total = cum[n - 1];
  if (!(total > 0)) return NAN;
  double rank = q * total;
  int b = 0;
  while (b < n - 1 && cum[b] < rank) b++;
  if (b == n - 1) {
    if (above) *above = 1;
    return h->le[n - 2];
  }
  if (b == 0 && h->le[0] <= 0) return h->le[0];
  double start = 0, end = h->le[b], count = cum[b];
  if (b > 0) {
    start = h->le[b - 1];
    count -= cum[b - 1];
    rank -= cum[b - 1];
  }
  if (!(count > 0)) return NAN; /* q = 0 over an empty first bucket: no rank to place */
  return start + (end - start) * (rank / count);
}
