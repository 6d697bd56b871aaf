/* Tests for the limit phases of runtime/lua/generation through a real
 * generation: sl_limits_resolve finds the shipped rules; loading the
 * shipped gradient rule binds limit and slow_client (and nothing else);
 * sl_generation_limit answers the rule's limit and reason, with one state
 * per endpoint kept across calls, and the operator's config reaches the
 * rule; a bad config fails the load and binds nothing; an answer that is
 * not a finite number is an error, a huge one is cut to the int32 range; a
 * rule that loops is stopped by the budget (SL_ETIMEDOUT) and suspended
 * after SL_BUDGET_SUSPEND_AFTER stops; slow_client answers cancel or keep,
 * and a rule without it says so.  The snapshot's layout is pinned here and
 * in tests/lua/limits_spec.lua, so C and the cdef cannot drift apart. */
#include <stdlib.h>
#include <unistd.h>

#include "runtime/base/counters.h"
#include "runtime/base/errors.h"
#include "runtime/lua/generation.h"
#include "test.h"

static char dir[] = "/tmp/sl-test-limits-XXXXXX";
static char rpath[256];

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

static sl_counters_t counters;
static sl_lua_host_t lim = {16u << 20, 20000, 0, &counters, NULL};

/* Loops past 100; answers NaN at 7 and a huge number at 6; one more
 * otherwise.  No slow_client. */
static const char LOOPS[] =
    "return { name = 'loops', version = '2', schema = {},\n"
    "  limit = function(s)\n"
    "    if s.limit > 100 then while true do end end\n"
    "    if s.limit == 7 then return 0 / 0 end\n"
    "    if s.limit == 6 then return 1e300, 'huge' end\n"
    "    return s.limit + 1, 'up'\n"
    "  end }\n";

static sl_ffi_limit_stats_t stats(int32_t endpoint_id, int32_t limit, double ttft) {
  sl_ffi_limit_stats_t s;
  memset(&s, 0, sizeof(s));
  s.endpoint = endpoint_id == 0 ? "10.0.0.1:8000" : "10.0.0.2:8000";
  s.pool = "gpu";
  s.endpoint_id = endpoint_id;
  s.limit = limit;
  s.min = 1;
  s.max = 64;
  s.slots = 8;
  s.inflight = limit;
  s.max_inflight = limit;
  s.ready = 1;
  s.interval_ms = 1000;
  s.started = 20;
  s.completed = 20;
  s.ttft_n = 20;
  s.ttft_mean = s.ttft_p50 = s.ttft_p90 = s.ttft_p99 = ttft;
  s.sketch_error = 0.01;
  return s;
}

static void test_layout_and_resolve(void) {
  /* LP64 (x86-64, aarch64): the numbers limits_spec.lua checks too. */
  ASSERT_EQ(sizeof(sl_ffi_limit_stats_t), 232);
  ASSERT_EQ(offsetof(sl_ffi_limit_stats_t, interval_ms), 64);
  ASSERT_EQ(offsetof(sl_ffi_limit_stats_t, ttft_n), 136);
  ASSERT_EQ(offsetof(sl_ffi_limit_stats_t, sketch_error), 216);
  ASSERT_EQ(sizeof(sl_ffi_slow_client_t), 80);
  ASSERT_EQ(offsetof(sl_ffi_slow_client_t, paused_ms), 40);

  char out[600], want[600];
  ASSERT_EQ(sl_limits_resolve("gradient", out, sizeof(out)), 0);
  snprintf(want, sizeof(want), "%s/limits/gradient.lua", sl_policy_dir());
  ASSERT_STR_EQ(out, want);
  ASSERT_EQ(access(out, R_OK), 0);
  ASSERT_EQ(sl_limits_resolve("/etc/sluice/mine.lua", out, sizeof(out)), 0);
  ASSERT_STR_EQ(out, "/etc/sluice/mine.lua");
  ASSERT_EQ(sl_limits_resolve("mine.lua", out, sizeof(out)), 0);
  ASSERT_STR_EQ(out, "mine.lua");
  char tiny[8];
  ASSERT_EQ(sl_limits_resolve("gradient", tiny, sizeof(tiny)), SL_ETOOBIG);
}

static void test_gradient_through_the_generation(void) {
  char path[600], err[1024], want[1024];
  ASSERT_EQ(sl_limits_resolve("gradient", path, sizeof(path)), 0);
  sl_generation_t *g;
  ASSERT_EQ(sl_generation_new(1, &lim, &g, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_load(g, "limits", path, NULL, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_LIMIT), 1);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_SLOW_CLIENT), 1);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_PLACEMENT), 0);
  ASSERT_STR_EQ(g->phase[SL_PHASE_LIMIT].name, "gradient");
  ASSERT_STR_EQ(g->phase[SL_PHASE_LIMIT].version, "1.0.0");
  ASSERT_STR_EQ(g->phase[SL_PHASE_SLOW_CLIENT].file, path);

  /* First interval: long starts at short, the gradient is 1 and the limit
   * grows by smoothing * sqrt(limit): 8 * 0.8 + (8 + sqrt 8) * 0.2 = 8.57. */
  int64_t k = -1;
  sl_ffi_limit_stats_t s = stats(0, 8, 100);
  ASSERT_EQ(sl_generation_limit(g, &s, &k, err, sizeof(err)), 0);
  ASSERT_EQ(k, 9);
  ASSERT_STR_EQ(err, "ttft p90 100 ms vs 100 ms long: 1.00 -> 9");

  /* The same endpoint, TTFT up fourfold: its state kept long (100; a
   * sample over 1.5 * long is queueing and left out of it), so the
   * gradient is at its floor and the limit falls from the fraction it kept
   * (8.57 -> 8.29). */
  s = stats(0, 9, 400);
  ASSERT_EQ(sl_generation_limit(g, &s, &k, err, sizeof(err)), 0);
  ASSERT_EQ(k, 8);
  ASSERT_STR_EQ(err, "ttft p90 400 ms vs 100 ms long: 0.50 -> 8");

  /* Another endpoint with the same snapshot starts its own state. */
  s = stats(1, 9, 400);
  ASSERT_EQ(sl_generation_limit(g, &s, &k, err, sizeof(err)), 0);
  ASSERT_EQ(k, 10);
  ASSERT_STR_EQ(err, "ttft p90 400 ms vs 400 ms long: 1.00 -> 10");

  /* slow_client: cancel while requests wait, keep when none does. */
  sl_ffi_slow_client_t c;
  memset(&c, 0, sizeof(c));
  c.id = "req-3";
  c.endpoint = "10.0.0.1:8000";
  c.pool = "gpu";
  c.queued = 2;
  c.paused_ms = 12500;
  int cancel = -1;
  ASSERT_EQ(sl_generation_slow_client(g, &c, &cancel, err, sizeof(err)), 0);
  ASSERT_EQ(cancel, 1);
  ASSERT_STR_EQ(err, "client paused 12.5 s while 2 wait");
  c.queued = 0;
  ASSERT_EQ(sl_generation_slow_client(g, &c, &cancel, err, sizeof(err)), 0);
  ASSERT_EQ(cancel, 0);
  ASSERT_STR_EQ(err, "client paused 12.5 s, nothing waits");
  sl_generation_release(g);

  /* The operator's config reaches the rule. */
  ASSERT_EQ(sl_generation_new(2, &lim, &g, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_load(g, "limits", path, "{\"signal\": \"p50\", \"slow_client_ms\": 20000}", err,
                               sizeof(err)),
            0);
  s = stats(0, 8, 100);
  s.ttft_p90 = 900; /* not what the rule reads now */
  ASSERT_EQ(sl_generation_limit(g, &s, &k, err, sizeof(err)), 0);
  ASSERT_EQ(k, 9);
  ASSERT_STR_EQ(err, "ttft p50 100 ms vs 100 ms long: 1.00 -> 9");
  c.queued = 2;
  ASSERT_EQ(sl_generation_slow_client(g, &c, &cancel, err, sizeof(err)), 0);
  ASSERT_EQ(cancel, 0);
  ASSERT_STR_EQ(err, "client paused 12.5 s (<= 20.0 s)");
  sl_generation_release(g);

  /* A config value the schema refuses fails the load and binds nothing. */
  ASSERT_EQ(sl_generation_new(3, &lim, &g, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_load(g, "limits", path, "{\"signal\": \"p95\"}", err, sizeof(err)), SL_EINVAL);
  snprintf(want, sizeof(want),
           "%s: config: limit rule \"gradient\": config key \"signal\" = \"p95\" is not one of mean, p50, p90, p99",
           path);
  ASSERT_STR_EQ(err, want);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_LIMIT), 0);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_SLOW_CLIENT), 0);
  ASSERT_EQ(sl_generation_limit(g, &s, &k, err, sizeof(err)), SL_EINVAL);
  ASSERT_STR_EQ(err, "no limit policy");
  sl_generation_release(g);
}

static void test_answers_budget_and_no_slow_client(void) {
  write_file(rpath, LOOPS);
  char err[1024], want[1024];
  sl_generation_t *g;
  ASSERT_EQ(sl_generation_new(1, &lim, &g, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_load(g, "limits", rpath, NULL, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_LIMIT), 1);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_SLOW_CLIENT), 0);

  int64_t k = -1;
  sl_ffi_limit_stats_t s = stats(0, 4, 100);
  ASSERT_EQ(sl_generation_limit(g, &s, &k, err, sizeof(err)), 0);
  ASSERT_EQ(k, 5);
  ASSERT_STR_EQ(err, "up");

  /* NaN is no limit; a huge answer is cut to what C can hold (C then
   * keeps it in [min, max]). */
  s = stats(0, 7, 100);
  ASSERT_EQ(sl_generation_limit(g, &s, &k, err, sizeof(err)), SL_EINVAL);
  snprintf(want, sizeof(want), "%s: limit() returned NaN, not a finite number", rpath);
  ASSERT_STR_EQ(err, want);
  s = stats(0, 6, 100);
  ASSERT_EQ(sl_generation_limit(g, &s, &k, err, sizeof(err)), 0);
  ASSERT_EQ(k, 2147483647);
  ASSERT_STR_EQ(err, "huge");

  /* No slow_client in this rule: the caller keeps the stream. */
  sl_ffi_slow_client_t c;
  memset(&c, 0, sizeof(c));
  c.id = "req-4";
  c.queued = 3;
  c.paused_ms = 60000;
  int cancel = -1;
  ASSERT_EQ(sl_generation_slow_client(g, &c, &cancel, err, sizeof(err)), SL_EINVAL);
  ASSERT_STR_EQ(err, "no slow_client policy");
  ASSERT_EQ(cancel, -1);

  /* A rule that loops is stopped by the budget, every time, and the
   * eighth stop in a row suspends it; calls then fail at once. */
  s = stats(0, 500, 100);
  for (int i = 1; i < SL_BUDGET_SUSPEND_AFTER; i++) {
    ASSERT_EQ(sl_generation_limit(g, &s, &k, err, sizeof(err)), SL_ETIMEDOUT);
    snprintf(want, sizeof(want), "instruction budget exceeded: limit %s stopped after 20000 VM instructions at %s:3",
             rpath, rpath);
    ASSERT_STR_EQ(err, want);
  }
  ASSERT_EQ(sl_generation_limit(g, &s, &k, err, sizeof(err)), SL_ETIMEDOUT);
  snprintf(want, sizeof(want),
           "instruction budget exceeded: limit %s stopped after 20000 VM instructions at %s:3; 8 stops in a row: "
           "the policy is suspended for generation 1 (each limit stays where it is until a reload)",
           rpath, rpath);
  ASSERT_STR_EQ(err, want);
  uint64_t stops = sl_counter_get(&counters, SL_C_LUA_BUDGET_EXCEEDED);
  s = stats(0, 4, 100);
  ASSERT_EQ(sl_generation_limit(g, &s, &k, err, sizeof(err)), SL_ECANCELED);
  snprintf(want, sizeof(want), "limit policy %s suspended in generation 1 after 8 budget stops in a row", rpath);
  ASSERT_STR_EQ(err, want);
  ASSERT_EQ(sl_counter_get(&counters, SL_C_LUA_BUDGET_EXCEEDED), stops); /* no call was made */

  /* Loading the rule again clears the suspension. */
  ASSERT_EQ(sl_generation_load(g, "limits", rpath, NULL, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_limit(g, &s, &k, err, sizeof(err)), 0);
  ASSERT_EQ(k, 5);
  sl_generation_release(g);

  /* A rule without limit() is refused, with the wrapper's message. */
  write_file(rpath, "return { name = 'half', version = '1', schema = {}, slow_client = function() return 'keep' end }");
  ASSERT_EQ(sl_generation_new(1, &lim, &g, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_load(g, "limits", rpath, NULL, err, sizeof(err)), SL_EINVAL);
  snprintf(want, sizeof(want),
           "%s: limit rule \"half\": missing \"limit\" (function(s, state, config) returning limit, reason)", rpath);
  ASSERT_STR_EQ(err, want);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_SLOW_CLIENT), 0);
  sl_generation_release(g);
  ASSERT_EQ(sl_counter_get(&counters, SL_C_GENERATIONS_LIVE), 0);
}

int main(void) {
  if (mkdtemp(dir) == NULL) return 1;
  snprintf(rpath, sizeof(rpath), "%s/rule.lua", dir);
  SL_RUN(test_layout_and_resolve);
  SL_RUN(test_gradient_through_the_generation);
  SL_RUN(test_answers_budget_and_no_slow_client);
  unlink(rpath);
  rmdir(dir);
  return SL_TEST_EXIT();
}
