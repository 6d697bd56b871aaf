/* Tests for the phase table in runtime/lua/generation: placement and
 * narration load through one loader and run through one call path
 * (sl_generation_call): a budget stop in either phase counts toward that
 * phase only, eight in a row suspend that phase only, with the same note
 * shape; the watchdog's note names the phase, the file and the request.  A
 * table with a phase of its own (no new C code): an optional entry the
 * policy does not define is skipped and stays off, a defined one is bound
 * and called through the same path with its own suspension count, and a
 * load that fails binds nothing. */
#include <stdlib.h>
#include <unistd.h>

#include "runtime/base/counters.h"
#include "runtime/base/errors.h"
#include "runtime/base/narrate.h"
#include "runtime/lua/generation.h"
#include "runtime/lua/lua_budget.h"
#include "test.h"

static char dir[] = "/tmp/sl-test-phases-XXXXXX";
static char ppath[256], npath[256];

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

static sl_counters_t counters;
static sl_lua_host_t lim = {16u << 20, 20000, 0, &counters, NULL};

/* What the budget runner says runs now, as a policy sees it from inside a
 * call: policies reach this through ffi.C (the test exports its symbols). */
static char note[700];
void sl_test_capture_note(void);
void sl_test_capture_note(void) { sl_budget_describe_running(sl_budget_note_here(), note, sizeof(note)); }

/* Loops when the request asks for more than 100 tokens; names its call. */
static const char PLACE[] =
    "local ffi = require 'ffi'\n"
    "ffi.cdef 'void sl_test_capture_note(void);'\n"
    "local C = ffi.C\n"
    "return { name = 'p', version = '2', schema = {},\n"
    "  place = function(ctx)\n"
    "    C.sl_test_capture_note()\n"
    "    if ctx.max_tokens > 100 then while true do end end\n"
    "    return 2, 'second'\n"
    "  end,\n"
    "  extra = function(p)\n"
    "    local v = ffi.cast('int32_t *', p)[0]\n"
    "    C.sl_test_capture_note()\n"
    "    if v < 0 then while true do end end\n"
    "    return v * 2, 'doubled'\n"
    "  end }\n";

/* Loops on an event with more than 100 tokens. */
static const char NARRATE[] =
    "local ffi = require 'ffi'\n"
    "ffi.cdef 'void sl_test_capture_note(void);'\n"
    "return { name = 'n', version = '1', schema = {},\n"
    "  narrate = function(ev)\n"
    "    ffi.C.sl_test_capture_note()\n"
    "    if ev.tokens > 100 then while true do end end\n"
    "    return 'said'\n"
    "  end }\n";

static sl_ffi_place_ctx_t ctx;

static int place(sl_generation_t *g, int64_t max_tokens, int *k, char *reason, size_t cap) {
  memset(&ctx, 0, sizeof(ctx));
  ctx.model = "m";
  ctx.n = 2;
  ctx.attempt = 1;
  ctx.max_tokens = max_tokens;
  ctx.cands[0].name = "a:1";
  ctx.cands[1].name = "b:1";
  return sl_generation_place(g, &ctx, "req-7", k, reason, cap);
}

static int narrate_run(void *ud, char *err, size_t errlen) {
  void **p = ud;
  return sl_generation_narrate(p[0], p[1], err, errlen);
}

/* Narrates one event of `tokens` tokens as a trial (the batch C hands Lua). */
static int narrate(sl_generation_t *g, sl_narrator_t *nar, int64_t tokens, char *err, size_t cap) {
  sl_ffi_narration_event_t ev;
  memset(&ev, 0, sizeof(ev));
  ev.kind = SL_NAR_STREAM_END;
  ev.tokens = tokens;
  void *ud[2] = {g, nar};
  err[0] = '\0';
  return sl_narrate_trial(nar, &ev, 1, narrate_run, ud, NULL, err, cap);
}

/* The text of the stop that suspends a phase, whole. */
static void suspended_note(char *out, size_t cap, const char *phase, const char *file, int line,
                           const char *fallback) {
  snprintf(out, cap,
           "instruction budget exceeded: %s %s stopped after 20000 VM instructions at %s:%d; 8 stops in a row: "
           "the policy is suspended for generation 1 (%s until a reload)",
           phase, file, file, line, fallback);
}

static void test_both_phases_one_path(void) {
  write_file(ppath, PLACE);
  write_file(npath, NARRATE);
  sl_generation_t *g;
  char err[1024], want[1024], buf[700];
  ASSERT_EQ(sl_generation_build(ppath, NULL, 1, &lim, &g, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_NARRATION), 0);
  ASSERT_EQ(sl_generation_narrate(g, NULL, err, sizeof(err)), SL_EINVAL);
  ASSERT_STR_EQ(err, "no narration policy");
  ASSERT_EQ(sl_generation_load_narration(g, npath, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_PLACEMENT), 1);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_NARRATION), 1);
  ASSERT_STR_EQ(g->phase[SL_PHASE_PLACEMENT].name, "p");
  ASSERT_STR_EQ(g->phase[SL_PHASE_PLACEMENT].version, "2");
  ASSERT_STR_EQ(g->phase[SL_PHASE_NARRATION].file, npath);
  sl_narrator_t *nar = sl_narrator_new(NULL, 0, NULL, NULL);
  int k = -1;

  /* Both answer, and the watchdog's note names phase, file and request. */
  ASSERT_EQ(place(g, 10, &k, err, sizeof(err)), 0);
  ASSERT_EQ(k, 1);
  ASSERT_STR_EQ(err, "second");
  snprintf(buf, sizeof(buf), "placement %s for request req-7", ppath);
  ASSERT_STR_EQ(note, buf);
  ASSERT_EQ(narrate(g, nar, 5, err, sizeof(err)), 0);
  snprintf(buf, sizeof(buf), "narration %s", npath);
  ASSERT_STR_EQ(note, buf);
  sl_budget_describe_running(sl_budget_note_here(), buf, sizeof(buf));
  ASSERT_STR_EQ(buf, ""); /* nothing runs between calls */

  /* Narration's stops count for narration only: placement stops between
   * them neither reset nor add to its count. */
  for (int i = 1; i < SL_BUDGET_SUSPEND_AFTER; i++) {
    ASSERT_EQ(narrate(g, nar, 500, err, sizeof(err)), SL_EINVAL);
    ASSERT(strstr(err, "suspended") == NULL);
    ASSERT_EQ(place(g, 500, &k, err, sizeof(err)), SL_ETIMEDOUT);
  }
  ASSERT_EQ(g->phase[SL_PHASE_NARRATION].stops, SL_BUDGET_SUSPEND_AFTER - 1);
  ASSERT_EQ(g->phase[SL_PHASE_PLACEMENT].stops, SL_BUDGET_SUSPEND_AFTER - 1);
  ASSERT_EQ(place(g, 10, &k, err, sizeof(err)), 0); /* a success resets placement's count only */
  ASSERT_EQ(g->phase[SL_PHASE_PLACEMENT].stops, 0);
  ASSERT_EQ(narrate(g, nar, 500, err, sizeof(err)), SL_EINVAL);
  suspended_note(want, sizeof(want), "narration", npath, 6, "plain narration");
  ASSERT_STR_EQ(err, want);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_NARRATION), 0);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_PLACEMENT), 1);
  uint64_t stops = sl_counter_get(&counters, SL_C_LUA_BUDGET_EXCEEDED);
  ASSERT_EQ(narrate(g, nar, 5, err, sizeof(err)), SL_ECANCELED);
  snprintf(want, sizeof(want), "narration policy %s suspended in generation 1 after 8 budget stops in a row", npath);
  ASSERT_STR_EQ(err, want);
  ASSERT_EQ(sl_counter_get(&counters, SL_C_LUA_BUDGET_EXCEEDED), stops); /* no call was made */

  /* Placement still serves, then gets suspended the same way. */
  ASSERT_EQ(place(g, 10, &k, err, sizeof(err)), 0);
  for (int i = 1; i <= SL_BUDGET_SUSPEND_AFTER; i++) ASSERT_EQ(place(g, 500, &k, err, sizeof(err)), SL_ETIMEDOUT);
  suspended_note(want, sizeof(want), "placement", ppath, 7, "the C rule places every request");
  ASSERT_STR_EQ(err, want);
  ASSERT_EQ(place(g, 10, &k, err, sizeof(err)), SL_ECANCELED);
  snprintf(want, sizeof(want), "placement policy %s suspended in generation 1 after 8 budget stops in a row", ppath);
  ASSERT_STR_EQ(err, want);
  /* Both slots say so, and neither phase is ready. */
  ASSERT_EQ(g->phase[SL_PHASE_PLACEMENT].suspended, 1);
  ASSERT_EQ(g->phase[SL_PHASE_NARRATION].suspended, 1);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_PLACEMENT), 0);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_NARRATION), 0);
  ASSERT_STR_EQ(g->phase[SL_PHASE_NARRATION].file, npath);
  ASSERT_STR_EQ(g->phase[SL_PHASE_PLACEMENT].name, "p");
  sl_narrator_free(nar);
  sl_generation_release(g);
}

/* The built-in phases and one of the test's own: an optional `extra`
 * defined in the placement file, with no wrapper module (the entry gets the
 * argument as it is) and a suspension after 3 stops. */
enum { PHASE_EXTRA = SL_PHASE__COUNT };
static sl_phase_desc_t table[SL_PHASE__COUNT + 1];

static int extra(sl_generation_t *g, int32_t v, int64_t *answer, char *text, size_t cap) {
  return sl_generation_call(g, PHASE_EXTRA, &v, "req-9", answer, text, cap);
}

static void test_a_phase_of_its_own(void) {
  memcpy(table, sl_phase_table, sizeof(sl_phase_table));
  table[PHASE_EXTRA] = (sl_phase_desc_t){"extra", "placement", "extra", NULL, 1, 3, "no extra phase"};
  sl_generation_t *g;
  char err[1024], want[1024];
  int64_t answer = -1;
  int k = -1;

  /* A policy without `extra`: the entry is skipped, the rest loads. */
  write_file(ppath, "return { name = 'p', version = '1', schema = {}, place = function(ctx) return 1, 'x' end }");
  ASSERT_EQ(sl__generation_new(table, SL_PHASE__COUNT + 1, 1, &lim, &g, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_load(g, "placement", ppath, NULL, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_PLACEMENT), 1);
  ASSERT_EQ(sl_generation_phase_ready(g, PHASE_EXTRA), 0);
  ASSERT_EQ(extra(g, 21, &answer, err, sizeof(err)), SL_EINVAL);
  ASSERT_STR_EQ(err, "no extra policy");
  ASSERT_EQ(answer, 0);
  ASSERT_STR_EQ(g->phase[PHASE_EXTRA].file, "");
  ASSERT_EQ(place(g, 10, &k, err, sizeof(err)), 0);
  ASSERT_STR_EQ(err, "x");
  sl_generation_release(g);

  /* A policy with it: bound and called through the same path, with its own
   * note, answer, text and suspension count. */
  write_file(ppath, PLACE);
  ASSERT_EQ(sl__generation_new(table, SL_PHASE__COUNT + 1, 1, &lim, &g, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_load(g, "placement", ppath, NULL, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_phase_ready(g, PHASE_EXTRA), 1);
  ASSERT_EQ(extra(g, 21, &answer, err, sizeof(err)), 0);
  ASSERT_EQ(answer, 42);
  ASSERT_STR_EQ(err, "doubled");
  snprintf(want, sizeof(want), "extra %s for request req-9", ppath);
  ASSERT_STR_EQ(note, want);
  ASSERT_EQ(extra(g, -1, &answer, err, sizeof(err)), SL_ETIMEDOUT);
  ASSERT_EQ(extra(g, -1, &answer, err, sizeof(err)), SL_ETIMEDOUT);
  ASSERT(strstr(err, "suspended") == NULL);
  ASSERT_EQ(extra(g, -1, &answer, err, sizeof(err)), SL_ETIMEDOUT);
  snprintf(want, sizeof(want),
           "instruction budget exceeded: extra %s stopped after 20000 VM instructions at %s:13; 3 stops in a row: "
           "the policy is suspended for generation 1 (no extra phase until a reload)",
           ppath, ppath);
  ASSERT_STR_EQ(err, want);
  ASSERT_EQ(extra(g, 21, &answer, err, sizeof(err)), SL_ECANCELED);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_PLACEMENT), 1);
  ASSERT_EQ(place(g, 10, &k, err, sizeof(err)), 0);
  ASSERT_EQ(g->phase[SL_PHASE_PLACEMENT].stops, 0);

  /* Loading the file again replaces the bindings and clears the
   * suspension. */
  ASSERT_EQ(sl_generation_load(g, "placement", ppath, NULL, err, sizeof(err)), 0);
  ASSERT_EQ(extra(g, 4, &answer, err, sizeof(err)), 0);
  ASSERT_EQ(answer, 8);
  sl_generation_release(g);

  /* An entry that is there but is no function fails the load, and the load
   * binds nothing, not even the phases that were fine. */
  write_file(ppath,
             "return { name = 'p', version = '1', schema = {}, place = function(ctx) return 1 end, extra = 3 }");
  ASSERT_EQ(sl__generation_new(table, SL_PHASE__COUNT + 1, 1, &lim, &g, err, sizeof(err)), 0);
  ASSERT_EQ(sl_generation_load(g, "placement", ppath, NULL, err, sizeof(err)), SL_EINVAL);
  snprintf(want, sizeof(want), "%s: \"extra\" must be a function, got number", ppath);
  ASSERT_STR_EQ(err, want);
  ASSERT_EQ(sl_generation_phase_ready(g, SL_PHASE_PLACEMENT), 0);
  /* No phase of the table comes from such a file. */
  ASSERT_EQ(sl_generation_load(g, "tenant", ppath, NULL, err, sizeof(err)), SL_EINVAL);
  snprintf(want, sizeof(want), "%s: no phase is loaded from a tenant policy file", ppath);
  ASSERT_STR_EQ(err, want);
  sl_generation_release(g);

  /* A table larger than a generation's slots is refused. */
  ASSERT_EQ(sl__generation_new(table, SL_PHASE_MAX + 1, 1, &lim, &g, err, sizeof(err)), SL_EINVAL);
  ASSERT_EQ(sl_counter_get(&counters, SL_C_GENERATIONS_LIVE), 0);
}

int main(void) {
  if (mkdtemp(dir) == NULL) return 1;
  snprintf(ppath, sizeof(ppath), "%s/place.lua", dir);
  snprintf(npath, sizeof(npath), "%s/narrate.lua", dir);
  SL_RUN(test_both_phases_one_path);
  SL_RUN(test_a_phase_of_its_own);
  unlink(ppath);
  unlink(npath);
  rmdir(dir);
  return SL_TEST_EXIT();
}
