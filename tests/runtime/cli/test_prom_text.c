/* Tests for runtime/cli/prom_text: the Prometheus text format reader that
 * `sluice top` uses, and histogram_quantile over what it read.  Samples
 * with and without labels, every value form, escapes, timestamps, CRLF,
 * comments and unknown families; exact label-set lookups; each malformed
 * line refused with its line number and what is wrong; histograms
 * gathered (buckets in any order), subtracted, and refused when a reset
 * happened in between; quantiles checked against figures worked out by
 * hand from Prometheus's rule (linear within the bucket, 0 as the first
 * bucket's lower bound, the largest finite bound when the rank falls in
 * +Inf, NaN when nothing was observed). */
#include "runtime/cli/prom_text.h"

#include <math.h>

#include "runtime/base/errors.h"
#include "test.h"

static const char TEXT[] =
    "# HELP sluice_endpoint_streams Streams placed on the endpoint now\n"
    "# TYPE sluice_endpoint_streams gauge\n"
    "sluice_endpoint_streams{pool=\"p\",endpoint=\"127.0.0.1:9\"} 3\n"
    "sluice_endpoint_streams{pool=\"p\",endpoint=\"other\"} 7\n"
    "\n"
    "sluice_uptime_seconds 12.5\n"
    "   sluice_spaced   {  a = \"1\" , b=\"2\", }   4   1700000000000  \n"
    "weird_family:sub{x=\"a\\\\b\\\"c\\nd\"} -Inf\n"
    "nan_value NaN\r\n"
    "inf_value +Inf\n"
    "empty_labels{} 1e-3\n"
    "# a comment that is neither HELP nor TYPE\n"
    "last_line_without_newline 42";

static void test_parse_samples(void) {
  sl_prom_t p;
  char err[200];
  ASSERT_EQ(sl_prom_parse(TEXT, sizeof(TEXT) - 1, &p, err, sizeof(err)), 0);
  ASSERT_EQ(p.n, 9);
  ASSERT_STR_EQ(p.s[0].name, "sluice_endpoint_streams");
  ASSERT_EQ(p.s[0].nlabels, 2);
  ASSERT_STR_EQ(sl_prom_label(&p, &p.s[0], "endpoint"), "127.0.0.1:9");
  ASSERT_DBL_NEAR(p.s[0].value, 3, 0);
  const char *other[] = {"endpoint", "other", "pool", "p", NULL}; /* order does not matter */
  ASSERT_DBL_NEAR(sl_prom_value(&p, "sluice_endpoint_streams", other), 7, 0);
  ASSERT_DBL_NEAR(sl_prom_value(&p, "sluice_uptime_seconds", NULL), 12.5, 0);
  const char *ab[] = {"a", "1", "b", "2", NULL};
  ASSERT_DBL_NEAR(sl_prom_value(&p, "sluice_spaced", ab), 4, 0);
  const sl_prom_sample_t *w = sl_prom_find(&p, "weird_family:sub", (const char *[]){"x", "a\\b\"c\nd", NULL});
  ASSERT_NOT_NULL(w);
  ASSERT(isinf(w->value) && w->value < 0);
  ASSERT(isnan(sl_prom_value(&p, "nan_value", NULL)));
  ASSERT(isinf(sl_prom_value(&p, "inf_value", NULL)));
  ASSERT_DBL_NEAR(sl_prom_value(&p, "empty_labels", NULL), 1e-3, 0);
  ASSERT_DBL_NEAR(sl_prom_value(&p, "last_line_without_newline", NULL), 42, 0);
  sl_prom_free(&p);
  ASSERT_NULL(p.text);
}

/* A lookup matches the label set exactly: no subset, no superset. */
static void test_exact_labels(void) {
  static const char t[] = "m{pool=\"p\",endpoint=\"e\"} 1\nm{pool=\"p\"} 2\nm 3\n";
  sl_prom_t p;
  char err[200];
  ASSERT_EQ(sl_prom_parse(t, sizeof(t) - 1, &p, err, sizeof(err)), 0);
  ASSERT_DBL_NEAR(sl_prom_value(&p, "m", (const char *[]){"pool", "p", "endpoint", "e", NULL}), 1, 0);
  ASSERT_DBL_NEAR(sl_prom_value(&p, "m", (const char *[]){"pool", "p", NULL}), 2, 0);
  ASSERT_DBL_NEAR(sl_prom_value(&p, "m", NULL), 3, 0);
  ASSERT(isnan(sl_prom_value(&p, "m", (const char *[]){"pool", "q", NULL})));
  ASSERT(isnan(sl_prom_value(&p, "m", (const char *[]){"endpoint", "e", NULL})));
  ASSERT(isnan(sl_prom_value(&p, "absent", NULL)));
  ASSERT_NULL(sl_prom_label(&p, &p.s[1], "endpoint"));
  sl_prom_free(&p);
}

/* Each malformed input is refused naming its line and what is wrong. */
static void test_parse_errors(void) {
  static const struct {
    const char *text, *want;
  } cases[] = {
      {"ok 1\nno_value\n", "line 2: expected '{', or a space and the value, after the metric name"},
      {"ok 1\n# c\nno_value \n", "line 3: expected a value"},
      {"m abc\n", "line 1: the value \"abc\" of m is not a number"},
      {"m 1 2 3\n", "line 1: expected the end of the line after the timestamp"},
      {"m 1 1.5\n", "line 1: the timestamp \"1.5\" of m is not an integer"},
      {"m{a=\"x} 1\n", "line 1: the value of label \"a\" has no closing quote"},
      {"m{a=\"\\t\"} 1\n", "line 1: unknown escape in the value of label \"a\""},
      {"m{a \"x\"} 1\n", "line 1: expected '=' after a label name, found '\"'"},
      {"m{1a=\"x\"} 1\n", "line 1: expected a label name or '}', found '1'"},
      {"m{a=x} 1\n", "line 1: expected '\"' to open a label value, found 'x'"},
      {"m{a=\"x\" b=\"y\"} 1\n", "line 1: expected ',' or '}' after a label value, found 'b'"},
      {"m{a=\"x\"", "line 1: expected ',' or '}' after a label value, found the end of the line"},
      {"9m 1\n", "line 1: expected a metric name, found '9'"},
      {"m-x 1\n", "line 1: expected '{', or a space and the value, after the metric name, found '-'"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sl_prom_t p;
    char err[200] = "";
    ASSERT_EQ(sl_prom_parse(cases[i].text, strlen(cases[i].text), &p, err, sizeof(err)), SL_EPARSE);
    if (strncmp(err, cases[i].want, strlen(cases[i].want)) != 0) {
      fprintf(stderr, "case %zu: got \"%s\", want it to start \"%s\"\n", i, err, cases[i].want);
      ASSERT(0);
    }
    ASSERT_EQ(p.n, 0);
    sl_prom_free(&p);
  }
}

static const char HIST[] =
    "# TYPE h histogram\n"
    "h_bucket{pool=\"p\",le=\"2\"} 30\n"
    "h_bucket{pool=\"p\",le=\"+Inf\"} 40\n"
    "h_bucket{pool=\"p\",le=\"1\"} 10\n"
    "h_bucket{pool=\"p\",le=\"4\"} 40\n"
    "h_sum{pool=\"p\"} 70\n"
    "h_count{pool=\"p\"} 40\n"
    "h_bucket{pool=\"q\",le=\"1\"} 5\n"
    "h_bucket{pool=\"q\",le=\"+Inf\"} 5\n"
    "bad_bucket{le=\"x\"} 1\n"
    "dup_bucket{le=\"1\"} 1\n"
    "dup_bucket{le=\"1.0\"} 1\n"
    "noinf_bucket{le=\"1\"} 1\n";

static void test_hist_gather(void) {
  sl_prom_t p;
  char err[200];
  ASSERT_EQ(sl_prom_parse(HIST, sizeof(HIST) - 1, &p, err, sizeof(err)), 0);
  sl_prom_hist_t h;
  ASSERT_EQ(sl_prom_hist(&p, "h", (const char *[]){"pool", "p", NULL}, &h), 0);
  ASSERT_EQ(h.n, 4);
  ASSERT_DBL_NEAR(h.le[0], 1, 0);
  ASSERT_DBL_NEAR(h.le[1], 2, 0);
  ASSERT_DBL_NEAR(h.le[2], 4, 0);
  ASSERT(isinf(h.le[3]));
  ASSERT_DBL_NEAR(h.cum[0], 10, 0);
  ASSERT_DBL_NEAR(h.cum[1], 30, 0);
  ASSERT_DBL_NEAR(h.count, 40, 0);
  ASSERT_DBL_NEAR(h.sum, 70, 0);
  ASSERT_EQ(sl_prom_hist(&p, "h", (const char *[]){"pool", "q", NULL}, &h), 0);
  ASSERT_EQ(h.n, 2);
  ASSERT(isnan(h.count)); /* no _count series: unknown, not 0 */
  ASSERT_EQ(sl_prom_hist(&p, "h", NULL, &h), SL_ENOTFOUND);
  ASSERT_EQ(sl_prom_hist(&p, "h", (const char *[]){"pool", "r", NULL}, &h), SL_ENOTFOUND);
  ASSERT_EQ(sl_prom_hist(&p, "bad", NULL, &h), SL_EPARSE);
  ASSERT_EQ(sl_prom_hist(&p, "dup", NULL, &h), SL_EPARSE);
  ASSERT_EQ(sl_prom_hist(&p, "noinf", NULL, &h), SL_EPARSE);
  sl_prom_free(&p);
}

static sl_prom_hist_t mk(int n, const double *le, const double *cum) {
  sl_prom_hist_t h;
  memset(&h, 0, sizeof(h));
  h.n = n;
  for (int i = 0; i < n; i++) {
    h.le[i] = le[i];
    h.cum[i] = cum[i];
  }
  h.count = cum[n - 1];
  return h;
}

static void test_quantile(void) {
  const double le[] = {1, 2, 4, INFINITY};
  sl_prom_hist_t h = mk(4, le, (const double[]){10, 30, 40, 40});
  int above = -1;
  ASSERT_DBL_NEAR(sl_prom_quantile(0.5, &h, &above), 1.5, 1e-12); /* rank 20: 10 into bucket (1,2] of 20 */
  ASSERT_EQ(above, 0);
  ASSERT_DBL_NEAR(sl_prom_quantile(0.25, &h, NULL), 1.0, 1e-12); /* rank 10: the top of the first bucket */
  ASSERT_DBL_NEAR(sl_prom_quantile(0.1, &h, NULL), 0.4, 1e-12);  /* the first bucket starts at 0 */
  ASSERT_DBL_NEAR(sl_prom_quantile(0.9, &h, NULL), 3.2, 1e-12);  /* rank 36: 6 of 10 into (2,4] */
  ASSERT_DBL_NEAR(sl_prom_quantile(1.0, &h, NULL), 4.0, 1e-12);
  /* Past the last finite bound: that bound, flagged as a lower bound. */
  sl_prom_hist_t tail = mk(4, le, (const double[]){10, 30, 40, 50});
  ASSERT_DBL_NEAR(sl_prom_quantile(0.99, &tail, &above), 4.0, 0);
  ASSERT_EQ(above, 1);
  ASSERT_DBL_NEAR(sl_prom_quantile(0.8, &tail, &above), 4.0, 1e-12); /* rank 40 is still in (2,4] */
  ASSERT_EQ(above, 0);
  /* Counts that fall are lifted to the one before. */
  sl_prom_hist_t dip = mk(4, le, (const double[]){10, 8, 20, 20});
  ASSERT_DBL_NEAR(sl_prom_quantile(0.75, &dip, NULL), 3.0, 1e-12);
  /* A first bucket at or below 0 answers its bound. */
  sl_prom_hist_t neg = mk(3, (const double[]){-1, 1, INFINITY}, (const double[]){5, 10, 10});
  ASSERT_DBL_NEAR(sl_prom_quantile(0.2, &neg, NULL), -1, 0);
  ASSERT_DBL_NEAR(sl_prom_quantile(0.75, &neg, NULL), 0, 1e-12);
  /* Nothing to compute from: NaN, never 0. */
  sl_prom_hist_t empty = mk(4, le, (const double[]){0, 0, 0, 0});
  ASSERT(isnan(sl_prom_quantile(0.5, &empty, NULL)));
  sl_prom_hist_t inf_only = mk(1, (const double[]){INFINITY}, (const double[]){3});
  ASSERT(isnan(sl_prom_quantile(0.5, &inf_only, NULL)));
  sl_prom_hist_t no_inf = mk(2, (const double[]){1, 2}, (const double[]){3, 4});
  ASSERT(isnan(sl_prom_quantile(0.5, &no_inf, NULL)));
  ASSERT(isnan(sl_prom_quantile(NAN, &h, NULL)));
  ASSERT(isinf(sl_prom_quantile(-0.1, &h, NULL)) && sl_prom_quantile(-0.1, &h, NULL) < 0);
  ASSERT(isinf(sl_prom_quantile(1.1, &h, NULL)) && sl_prom_quantile(1.1, &h, NULL) > 0);
}

/* The window between two scrapes, and a restart in between refused. */
static void test_hist_sub(void) {
  const double le[] = {1, 2, 4, INFINITY};
  sl_prom_hist_t before = mk(4, le, (const double[]){10, 30, 40, 40});
  sl_prom_hist_t after = mk(4, le, (const double[]){10, 30, 44, 48});
  before.sum = 70;
  after.sum = 100;
  sl_prom_hist_t w;
  ASSERT_EQ(sl_prom_hist_sub(&after, &before, &w), 0);
  ASSERT_DBL_NEAR(w.cum[1], 0, 0);
  ASSERT_DBL_NEAR(w.cum[2], 4, 0);
  ASSERT_DBL_NEAR(w.cum[3], 8, 0);
  ASSERT_DBL_NEAR(w.count, 8, 0);
  ASSERT_DBL_NEAR(w.sum, 30, 0);
  /* Half the window's 8 lie in (2,4], half above: p50 is 4, p90 past it. */
  ASSERT_DBL_NEAR(sl_prom_quantile(0.5, &w, NULL), 4, 1e-12);
  int above;
  ASSERT_DBL_NEAR(sl_prom_quantile(0.9, &w, &above), 4, 0);
  ASSERT_EQ(above, 1);
  ASSERT_EQ(sl_prom_hist_sub(&before, &after, &w), SL_EINVAL); /* counts went down: a restart */
  sl_prom_hist_t other = mk(3, (const double[]){1, 3, INFINITY}, (const double[]){1, 2, 3});
  ASSERT_EQ(sl_prom_hist_sub(&after, &other, &w), SL_EINVAL);
}

int main(void) {
  SL_RUN(test_parse_samples);
  SL_RUN(test_exact_labels);
  SL_RUN(test_parse_errors);
  SL_RUN(test_hist_gather);
  SL_RUN(test_quantile);
  SL_RUN(test_hist_sub);
  return SL_TEST_EXIT();
}
