/* prom_parse.h: a reader of Prometheus's text exposition format (0.0.4).
 *
 * sl_prom_parse copies a /metrics body once and splits it in place: every
 * name, label name and (unescaped) label value is a NUL-terminated string
 * inside that copy, so a scrape is four allocations however many samples
 * it holds.  "# HELP" and "# TYPE" comments name the families, and each
 * sample records the family it is listed under; other comments and blank
 * lines are skipped; families it does not know are kept like any other,
 * since the reader never needs to know them.  Lookups match a sample's label set
 * exactly.  Users: `sluice top` (runtime/cli/prom_text.h adds histograms
 * and quantiles) and the instance view's merge of its workers' expositions
 * (runtime/gateway/view.h).  Not for a hot path: a parse allocates freely.
 */
#ifndef SL_BASE_PROM_PARSE_H
#define SL_BASE_PROM_PARSE_H

#include <stddef.h>

typedef struct {
  const char *name;  /* label name, inside the scrape's text */
  const char *value; /* label value, unescaped, inside the scrape's text */
} sl_prom_label_t;

typedef struct {
  const char *name; /* metric name ("sluice_endpoint_streams", "..._bucket") */
  int label0;       /* index of its first label in sl_prom_t.labels */
  int nlabels;      /* how many labels it has */
  double value;     /* its value (NaN, +Inf and -Inf included) */
  int family;       /* index in sl_prom_t.fam of the family it is listed under, or -1 before any */
} sl_prom_sample_t;

/* A family as its "# HELP" and "# TYPE" comments name it: the samples
 * after them, up to the next family's comments, are listed under it. */
typedef struct {
  const char *name; /* the family's name, inside the scrape's text */
  const char *help; /* its HELP text as written (still escaped), or NULL */
  const char *type; /* its TYPE ("counter", "gauge", "histogram", ...), or NULL */
} sl_prom_family_t;

typedef struct {
  char *text;               /* the parsed copy of the body (owned) */
  sl_prom_sample_t *s;      /* samples in the order of the body (owned) */
  int n, cap;               /* samples held, room */
  sl_prom_label_t *labels;  /* every sample's labels, one array (owned) */
  int nlabels, labels_cap;  /* labels held, room */
  sl_prom_family_t *fam;    /* families in the order of the body (owned) */
  int nfam, fam_cap;        /* families held, room */
} sl_prom_t;

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

/* 1 when s's labels, except one called skip (may be NULL), are exactly
 * labels ("k", "v", ..., NULL). */
int sl_prom_labels_are(const sl_prom_t *p, const sl_prom_sample_t *s, const char *const *labels, const char *skip);

/* That sample's value, or NaN when there is none. */
double sl_prom_value(const sl_prom_t *p, const char *name, const char *const *labels);

#endif
