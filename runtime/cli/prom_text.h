/* prom_text.h: a reader of Prometheus's text exposition format (0.0.4)
 * for `sluice top`, and histogram_quantile over what it read.
 *
 * sl_prom_parse copies a /metrics body once and splits it in place: every
 * name, label name and (unescaped) label value is a NUL-terminated string
 * inside that copy, so a scrape is three allocations however many samples
 * it holds.  Comments (# HELP, # TYPE, any other #) and blank lines are
 * skipped; families it does not know are kept like any other, since the
 * reader never needs to know them.  Lookups match a sample's label set
 * exactly.  Histograms are gathered from their _bucket, _sum and _count
 * series, and sl_prom_quantile interpolates within a bucket as
 * Prometheus's histogram_quantile does.  Not for the daemon: a scrape
 * allocates freely.
 */
#ifndef SL_CLI_PROM_TEXT_H
#define SL_CLI_PROM_TEXT_H

#include <stddef.h>

/* The most buckets (+Inf included) one histogram may have here. */
#define SL_PROM_HIST_MAX 64

typedef struct {
  const char *name;  /* label name, inside the scrape's text */
  const char *value; /* label value, unescaped, inside the scrape's text */
} sl_prom_label_t;

typedef struct {
  const char *name; /* metric name ("sluice_endpoint_streams", "..._bucket") */
  int label0;       /* index of its first label in sl_prom_t.labels */
  int nlabels;      /* how many labels it has */
  double value;     /* its value (NaN, +Inf and -Inf included) */
} sl_prom_sample_t;

typedef struct {
  char *text;               /* the parsed copy of the body (owned) */
  sl_prom_sample_t *s;      /* samples in the order of the body (owned) */
  int n, cap;               /* samples held, room */
  sl_prom_label_t *labels;  /* every sample's labels, one array (owned) */
  int nlabels, labels_cap;  /* labels held, room */
} sl_prom_t;

/* A histogram's buckets as the exposition gives them: cumulative counts,
 * ascending upper bounds, the last one +Inf. */
typedef struct {
  int n;                         /* buckets, +Inf included */
  double le[SL_PROM_HIST_MAX];   /* upper bounds, ascending */
  double cum[SL_PROM_HIST_MAX];  /* observations <= le[i] */
  double count;                  /* _count (NaN when absent) */
  double sum;                    /* _sum (NaN when absent) */
} sl_prom_hist_t;

/* Parses text[0..len) into *p (which it initialises).  Returns 0, or
 * SL_EPARSE with "line N: what is wrong" in err[errcap] and *p left empty
 * (sl_prom_free is still fine to call).  The caller owns *p and frees it
 * with sl_prom_free. */
int sl_prom_parse(const char *text, size_t len, sl_prom_t *p, char *err, size_t errcap);

/* Frees what sl_prom_parse allocated and empties *p. */
void sl_prom_free(sl_prom_t *p);

/* The value of label key on sample s, or NULL when it has none. */
const char *sl_prom_label(const sl_prom_t *p, const sl_prom_sample_t *s, const char *key);

/* The first sample called name whose label set is exactly labels ("k",
 * "v", ..., NULL; NULL or {NULL} for none), or NULL. */
const sl_prom_sample_t *sl_prom_find(const sl_prom_t *p, const char *name, const char *const *labels);

/* That sample's value, or NaN when there is none. */
double sl_prom_value(const sl_prom_t *p, const char *name, const char *const *labels);

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
