/* Tests for runtime/generation and runtime/policy_check: policies run with
 * the JIT off under the budget; a place() that runs out of budget fails
 * with SL_ETIMEDOUT and the line; 8 stops in a row suspend the policy for
 * its generation (a success in between resets the count), a new generation
 * starts fresh; the sample check refuses a policy that loops, raises or
 * returns nonsense on any sample and leaves the live TTL dictionary alone;
 * narration trials do not touch the live ring. */
#include <stdlib.h>
#include <unistd.h>

#include "runtime/base/counters.h"
#include "runtime/base/errors.h"
#include "runtime/lua/generation.h"
#include "runtime/base/narrate.h"
#include "runtime/lua/policy_check.h"
#include "runtime/lua/ttldict.h"
#include "test.h"

static char dir[] = "/tmp/sl-test-generation-XXXXXX";
static char path[256];

static void write_policy(const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

static sl_counters_t counters;
static sl_ttldict_t *dict; /* the "gateway's" dictionary */
static sl_lua_host_t lim = {16u << 20, 20000, 0, &counters, NULL};

/* Loops when the request asks for more than 100 tokens. */
static const char SOMETIMES_LOOPS[] =
    "return { name = 't', version = '1', schema = {},\n"
    "  place = function(ctx)\n"
    "    if ctx.max_tokens > 100 then while true do end end\n"
    "    return 1, 'ok'\n"
    "  end }\n";

static sl_ffi_place_ctx_t ctx;

static int place(sl_generation_t *g, int64_t max_tokens, char *reason, size_t cap) {
  memset(&ctx, 0, sizeof(ctx));
  ctx.model = "m";
  ctx.n = 2;
  ctx.attempt = 1;
  ctx.max_tokens = max_tokens;
  ctx.cands[0].name = "a:1";
  ctx.cands[1].name = "b:1";
  int k = -1;
  return sl_generation_place(g, &ctx, "req-1", &k, reason, cap);
}

static void test_budget_and_suspension(void) {
  write_policy(SOMETIMES_LOOPS);
  sl_generation_t *g;
  char err[1024];
  ASSERT_EQ(sl_generation_build(path, NULL, 1, &lim, &g, err, sizeof(err)), 0);
  ASSERT_EQ(g->host.budget, 20000);
  ASSERT_EQ(place(g, 10, err, sizeof(err)), 0);
  ASSERT_STR_EQ(err, "ok");
  int rc = place(g, 500, err, sizeof(err));
  ASSERT_EQ(rc, SL_ETIMEDOUT);
  ASSERT(strstr(err, "stopped after 20000 VM instructions at ") != NULL);
  ASSERT(strstr(err, ".lua:3") != NULL);
  /* Stops with successes between them never suspend. */
  for (int i = 0; i < 3 * SL_BUDGET_SUSPEND_AFTER; i++) {
    ASSERT_EQ(place(g, i % 2 ? 10 : 500, err, sizeof(err)), i % 2 ? 0 : SL_ETIMEDOUT);
  }
  ASSERT_EQ(g->phase[SL_PHASE_PLACEMENT].suspended, 0);
  /* Eight in a row do; the eighth says so, the next ones fail at once. */
  for (int i = 1; i <= SL_BUDGET_SUSPEND_AFTER; i++) {
    ASSERT_EQ(place(g, 500, err, sizeof(err)), SL_ETIMEDOUT);
    ASSERT_EQ(strstr(err, "suspended") != NULL, i == SL_BUDGET_SUSPEND_AFTER);
  }
  uint64_t stops = sl_counter_get(&counters, SL_C_LUA_BUDGET_EXCEEDED);
  ASSERT_EQ(place(g, 10, err, sizeof(err)), SL_ECANCELED);
  ASSERT(strstr(err, "suspended in generation 1") != NULL);
  ASSERT_EQ(sl_counter_get(&counters, SL_C_LUA_BUDGET_EXCEEDED), stops); /* no call was made */
  sl_generation_release(g);
  /* A new generation of the same file starts fresh. */
  ASSERT_EQ(sl_generation_build(path, NULL, 2, &lim, &g, err, sizeof(err)), 0);
  ASSERT_EQ(place(g, 10, err, sizeof(err)), 0);
  sl_generation_release(g);
}

static void test_samples(void) {
  sl_generation_t *g = NULL;
  char err[1024];
  static const struct {
    const char *src, *want;
  } bad[] = {
      {"return { name = 't', version = '1', schema = {}, place = function(ctx) while true do end end }",
       "placement sample 1 (1 fresh candidate): instruction budget exceeded"},
      {"return { name = 't', version = '1', schema = {},\n"
       "  place = function(ctx) if ctx.n == 64 then error('too many') end return 1, 'x' end }",
       "placement sample 6 (64 candidates): "},
      {"return { name = 't', version = '1', schema = {},\n"
       "  place = function(ctx) return ctx.n + 1, 'x' end }",
       "not a candidate index"},
      {"return { name = 't', version = '1', schema = {},\n"
       "  place = function(ctx) if ctx.attempt > 1 then return nil end return 1, 'x' end }",
       "placement sample 3 (3 candidates, all tried (third attempt)): "},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    write_policy(bad[i].src);
    ASSERT(sl_policy_build_checked(path, NULL, NULL, 1, &lim, NULL, NULL, &g, err, sizeof(err)) < 0);
    if (strstr(err, bad[i].want) == NULL) fprintf(stderr, "case %zu: %s\n", i, err);
    ASSERT(strstr(err, bad[i].want) != NULL);
  }
  ASSERT_EQ(sl_counter_get(&counters, SL_C_GENERATIONS_LIVE), 0);
  /* A policy that writes to the dictionary: the trial's writes stay in a
   * scratch dictionary. */
  write_policy("local dict = require 'sluice.dict'\n"
               "return { name = 't', version = '1', schema = {},\n"
               "  place = function(ctx) dict.incr('trial-count', 1, 0) return 1, 'x' end }");
  ASSERT_EQ(sl_policy_build_checked(path, NULL, NULL, 1, &lim, NULL, NULL, &g, err, sizeof(err)), 0);
  char val[64];
  size_t vlen = 0;
  ASSERT_EQ(sl_ttldict_get(dict, "trial-count", 11, val, sizeof(val), &vlen), SL_ENOTFOUND);
  ASSERT_EQ(place(g, 10, err, sizeof(err)), 0);
  ASSERT_EQ(sl_ttldict_get(dict, "trial-count", 11, val, sizeof(val), &vlen), 0);
  sl_generation_release(g);
}

static void test_narration_trial_keeps_the_ring(void) {
  char npath[300];
  snprintf(npath, sizeof(npath), "%s/narration.lua", dir);
  FILE *f = fopen(npath, "w");
  fputs("return { name = 'n', version = '1', schema = {}, narrate = function(ev) return 'said' end }", f);
  fclose(f);
  write_policy("return require 'placement.least_loaded'");
  /* A narrator standing for a live gateway's: the trial has its own. */
  sl_narrator_t *live = sl_narrator_new(stderr, 0, NULL, &counters);
  sl_narrate_push(live, SL_NAR_READY, NULL, "x:1", NULL, NULL, 0, 0, 0, 0);
  ASSERT_EQ(sl_narrate_pending(live), 1);
  char *out = NULL;
  size_t outlen = 0;
  FILE *say = open_memstream(&out, &outlen);
  sl_generation_t *g;
  char err[1024];
  ASSERT_EQ(sl_policy_build_checked(path, NULL, npath, 1, &lim, NULL, say, &g, err, sizeof(err)), 0);
  fclose(say);
  ASSERT(strstr(out, "  stream_end: said\n") != NULL);
  ASSERT(strstr(out, "placement sample 6 (64 candidates)") != NULL);
  free(out);
  ASSERT_EQ(sl_narrate_pending(live), 1); /* the live event waits for the real flush */
  sl_generation_release(g);
  sl_narrator_free(live);
}

int main(void) {
  if (mkdtemp(dir) == NULL) return 1;
  if (sl_ttldict_new(NULL, &dict) != 0) return 1;
  lim.dict = dict;
  snprintf(path, sizeof(path), "%s/policy.lua", dir);
  SL_RUN(test_budget_and_suspension);
  SL_RUN(test_samples);
  SL_RUN(test_narration_trial_keeps_the_ring);
  unlink(path);
  char npath[300];
  snprintf(npath, sizeof(npath), "%s/narration.lua", dir);
  unlink(npath);
  rmdir(dir);
  sl_ttldict_free(dict);
  return SL_TEST_EXIT();
}
