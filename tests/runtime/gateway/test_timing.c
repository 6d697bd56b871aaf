/* Tests for runtime/gateway/timing: the gap ring and the job that
 * classifies it on the thread pool, on a real loop and registry.  Verdicts
 * for a sine, noise, a constant and a line; nothing below min_samples; the
 * ring copied oldest first after it wrapped; a new run only after a quarter
 * of min_samples new gaps; the outlier clipping, which keeps a sine with a
 * few stalls periodic and leaves the reference series' verdicts as the
 * classifier gives them unclipped; the timer starting runs on its own; and
 * a close with runs in flight that drops their results, frees everything
 * and leaves no handle (the sanitizer build checks the memory). */
#include "runtime/gateway/timing.h"

#include <math.h>
#include <stdlib.h>

#include "analyzers/dynamics.h"
#include "analyzers/dyn_series.h"
#include "runtime/base/alloc.h"
#include "test.h"

#define NEPS 5

static uv_loop_t loop;
static sl_config_t cfg;
static sl_registry_t reg;

/* A pool of NEPS endpoints (nothing listens there; nothing connects). */
static void setup(uint64_t interval_ms) {
  char json[1024], err[256];
  int n = snprintf(json, sizeof(json), "{\"dynamics\":{\"interval_ms\":%llu,\"min_samples\":128},"
                   "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[",
                   (unsigned long long)interval_ms);
  for (int i = 0; i < NEPS; i++)
    n += snprintf(json + n, sizeof(json) - (size_t)n, "%s{\"url\":\"http://127.0.0.1:%d\"}", i ? "," : "", 9 + i);
  snprintf(json + n, sizeof(json) - (size_t)n, "]}]}");
  ASSERT_EQ(uv_loop_init(&loop), 0);
  ASSERT_EQ(sl_config_parse(&cfg, json, strlen(json), err, sizeof(err)), 0);
  ASSERT_EQ(sl_registry_init(&reg, &loop, &cfg, err, sizeof(err)), 0);
}

static void teardown(void) {
  sl_registry_free(&reg);
  sl_config_free(&cfg);
  ASSERT_EQ(uv_loop_close(&loop), 0); /* no handle or request left */
}

static int closed_calls;
static void on_closed(void *ud) {
  (void)ud;
  closed_calls++;
}

static void close_job(sl_timing_t *t) {
  closed_calls = 0;
  sl_timing_close(t, on_closed, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(closed_calls, 1);
}

/* Turns the loop until no run is in flight (each completion is an event). */
static void settle(sl_timing_t *t) {
  while (sl_timing_inflight(t) > 0) uv_run(&loop, UV_RUN_ONCE);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double unit(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) * 0x1p-53;
}

/* Gaps k0 .. k0 + n - 1 of a sine with a period of 16 gaps around 12 ms. */
static void feed_sine_from(sl_endpoint_t *ep, int k0, int n) {
  for (int k = k0; k < k0 + n; k++) sl_endpoint_gap(ep, 12.0 * (1 + 0.5 * sin(2 * M_PI * (double)k / 16)));
}

static void feed_sine(sl_endpoint_t *ep, int n) { feed_sine_from(ep, 0, n); }

static void feed_noise(sl_endpoint_t *ep, int n) {
  for (int k = 0; k < n; k++) sl_endpoint_gap(ep, 12.0 * (1 + 0.5 * (2 * unit() - 1)));
}

static void test_verdicts(void) {
  setup(3600000); /* the timer stays out of the way: runs start by hand */
  sl_timing_t *t = NULL;
  ASSERT_EQ(sl_timing_start(&t, &loop, &reg, &cfg, NULL), 0);
  sl_endpoint_t *eps = reg.eps;
  for (int i = 0; i < NEPS; i++) ASSERT_EQ(eps[i].dyn.cls, -1); /* none yet, not fixed_point */
  feed_sine(&eps[0], 512);
  feed_noise(&eps[1], 512);
  for (int k = 0; k < 200; k++) sl_endpoint_gap(&eps[2], 10.0);
  /* 600 gaps rising by 1 ms: the ring keeps the last 512 (88..599), which
   * only read oldest first are a straight line. */
  for (int k = 0; k < 600; k++) sl_endpoint_gap(&eps[3], (double)k);
  feed_sine(&eps[4], 127); /* one short of min_samples */
  ASSERT_EQ(sl_timing_run(t), 4);
  ASSERT_EQ(sl_timing_run(t), 0); /* one run per endpoint at a time */
  settle(t);
  ASSERT_STR_EQ(eps[0].dyn.name, "periodic");
  ASSERT_EQ(eps[0].dyn.cls, 1);
  ASSERT_EQ(eps[0].dyn.samples, 512);
  ASSERT_DBL_NEAR(eps[0].dyn.mean_ms, 12.0, 1e-9);
  ASSERT(eps[0].dyn.recurrence >= 0.5);
  ASSERT_STR_EQ(eps[1].dyn.name, "noise");
  ASSERT(eps[1].dyn.fnn > 0.02);
  ASSERT_STR_EQ(eps[2].dyn.name, "fixed_point");
  ASSERT_EQ(eps[2].dyn.samples, 200);
  ASSERT_STR_EQ(eps[3].dyn.name, "trend");
  ASSERT_EQ(eps[3].dyn.samples, 512);
  ASSERT_DBL_NEAR(eps[3].dyn.mean_ms, (88 + 599) / 2.0, 1e-9);
  ASSERT_DBL_NEAR(eps[3].dyn.trend_r2, 1.0, 1e-3); /* its ends clipped by 1% */
  ASSERT_EQ(eps[4].dyn.cls, -1);
  ASSERT_NULL(eps[4].dyn.name);
  for (int i = 0; i < 4; i++) {
    ASSERT_UINT_EQ(eps[i].dyn.runs, 1);
    ASSERT_GT(eps[i].dyn.at, 0);
  }

  /* A new run needs min_samples / 4 = 32 new gaps: 31 are not enough. */
  feed_sine_from(&eps[0], 512, 31);
  feed_sine_from(&eps[4], 127, 1); /* reaches min_samples: its first run */
  ASSERT_EQ(sl_timing_run(t), 1);
  settle(t);
  ASSERT_STR_EQ(eps[4].dyn.name, "periodic");
  ASSERT_EQ(eps[4].dyn.samples, 128);
  ASSERT_UINT_EQ(eps[0].dyn.runs, 1);
  feed_sine_from(&eps[0], 543, 1);
  ASSERT_EQ(sl_timing_run(t), 1);
  settle(t);
  ASSERT_UINT_EQ(eps[0].dyn.runs, 2);
  ASSERT_STR_EQ(eps[0].dyn.name, "periodic");
  ASSERT_EQ(eps[0].dyn.samples, 512);
  close_job(t);
  teardown();
}

/* Feeds series[i] to endpoint i, runs the job and returns nothing; the
 * verdicts are in reg.eps[i].dyn. */
static void classify_through_job(double series[][512], int nseries, int n) {
  sl_timing_t *t = NULL;
  ASSERT_EQ(sl_timing_start(&t, &loop, &reg, &cfg, NULL), 0);
  for (int i = 0; i < nseries; i++)
    for (int k = 0; k < n; k++) sl_endpoint_gap(&reg.eps[i], series[i][k]);
  ASSERT_EQ(sl_timing_run(t), nseries);
  settle(t);
  close_job(t);
}

/* A sine with a few scheduling stalls: three gaps 50 to 100 ms longer
 * than the engine made them (the loop or the machine held sluice up), and
 * the timers' millisecond grain on every gap.
 * Unclipped, the classifier calls it noise; through the job it is periodic. */
static void test_stalls_are_clipped(void) {
  static double x[1][512];
  /* Measured gaps carry a little noise: the timers' millisecond grain. */
  rng = 0x2545f4914f6cdd1dull;
  for (int k = 0; k < 512; k++) x[0][k] = 20.0 * (1 + 0.75 * sin(2 * M_PI * (double)k / 16)) + unit();
  x[0][100] += 100;
  x[0][250] += 70;
  x[0][400] += 50;
  size_t wsz = sl_dyn_workspace_size(512);
  void *ws = malloc(wsz);
  sl_dyn_report_t raw;
  ASSERT_EQ(sl_dyn_classify(x[0], 512, NULL, ws, wsz, &raw), 0);
  free(ws);
  ASSERT_STR_EQ(sl_dyn_class_name(raw.cls), "noise");
  setup(3600000);
  classify_through_job(x, 1, 512);
  ASSERT_STR_EQ(reg.eps[0].dyn.name, "periodic");
  teardown();
}

/* The clipping changes no verdict of the analyzers' reference series. */
static void test_clipping_keeps_reference_verdicts(void) {
  static double x[NEPS][512];
  const int n = 512;
  dyn_gen_logistic(x[0], n, 4.0, 0.3);
  dyn_gen_henon(x[1], n, 0.1);
  for (int k = 0; k < n; k++) x[2][k] = sin(0.17 * k);
  dyn_rng_t g = {99};
  for (int k = 0; k < n; k++) x[3][k] = dyn_rng_unit(&g) + dyn_rng_unit(&g) + dyn_rng_unit(&g);
  for (int k = 0; k < n; k++) x[4][k] = 0.5 * k + 3;
  static const char *const want[NEPS] = {"chaotic", "chaotic", "periodic", "noise", "trend"};
  size_t wsz = sl_dyn_workspace_size(n);
  void *ws = malloc(wsz);
  for (int i = 0; i < NEPS; i++) {
    sl_dyn_report_t raw;
    ASSERT_EQ(sl_dyn_classify(x[i], (size_t)n, NULL, ws, wsz, &raw), 0);
    ASSERT_STR_EQ(sl_dyn_class_name(raw.cls), want[i]);
  }
  free(ws);
  setup(3600000);
  classify_through_job(x, NEPS, n);
  for (int i = 0; i < NEPS; i++) ASSERT_STR_EQ(reg.eps[i].dyn.name, want[i]);
  teardown();
}

/* The timer starts runs by itself. */
static void test_timer_runs(void) {
  setup(10);
  sl_timing_t *t = NULL;
  ASSERT_EQ(sl_timing_start(&t, &loop, &reg, &cfg, NULL), 0);
  feed_noise(&reg.eps[2], 300);
  /* Each loop turn waits for the timer or a completion: the verdict is an
   * event, however slow the machine. */
  while (reg.eps[2].dyn.cls < 0) uv_run(&loop, UV_RUN_ONCE);
  ASSERT_STR_EQ(reg.eps[2].dyn.name, "noise");
  ASSERT_EQ(reg.eps[2].dyn.samples, 300);
  close_job(t);
  teardown();
}

/* Closing with runs queued or running: their results are dropped, the job
 * is freed after the last completion, and the loop ends clean. */
static void test_close_in_flight(void) {
  setup(3600000);
  sl_timing_t *t = NULL;
  ASSERT_EQ(sl_timing_start(&t, &loop, &reg, &cfg, NULL), 0);
  for (int i = 0; i < NEPS; i++) feed_sine(&reg.eps[i], 512);
  ASSERT_EQ(sl_timing_run(t), NEPS);
  ASSERT_EQ(sl_timing_inflight(t), NEPS);
  close_job(t); /* before the loop ran any completion */
  for (int i = 0; i < NEPS; i++) {
    ASSERT_EQ(reg.eps[i].dyn.cls, -1);
    ASSERT_UINT_EQ(reg.eps[i].dyn.runs, 0);
  }
  teardown();

  /* And a job that never ran anything closes as cleanly. */
  setup(3600000);
  ASSERT_EQ(sl_timing_start(&t, &loop, &reg, &cfg, NULL), 0);
  close_job(t);
  teardown();
}

int main(void) {
  sl_alloc_init();
  SL_RUN(test_verdicts);
  SL_RUN(test_stalls_are_clipped);
  SL_RUN(test_clipping_keeps_reference_verdicts);
  SL_RUN(test_timer_runs);
  SL_RUN(test_close_in_flight);
  return SL_TEST_EXIT();
}
