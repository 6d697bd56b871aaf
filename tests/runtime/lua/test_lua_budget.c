/* Tests for runtime/lua_budget: a budgeted call returns its results; a
 * runaway loop is stopped (also inside pcall, inside a coroutine, inside an
 * error handler) with the line it was at and counted; the state stays
 * usable afterwards; the JIT is off and jit.on, jit.flush and debug.sethook
 * raise; calls nest across states; the watchdog's description names the
 * phase, file and request only while a call runs. */
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <stdlib.h>

#include "runtime/base/counters.h"
#include "runtime/lua/generation.h"
#include "runtime/lua/lua_budget.h"
#include "test.h"

static sl_lua_mem_t mem;

static lua_State *new_state(void) {
  char err[256];
  memset(&mem, 0, sizeof(mem));
  lua_State *L = sl_lua_new_state(&mem, err, sizeof(err));
  if (L == NULL || sl_budget_fence_state(L, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s\n", err);
    exit(1);
  }
  return L;
}

static sl_counters_t counters;

/* Loads src as chunk "=t" and runs it under a budget of n instructions. */
static sl_budget_status_t run(lua_State *L, const char *src, uint64_t n, int nresults, char *err, size_t cap) {
  if (luaL_loadbuffer(L, src, strlen(src), "=t") != 0) {
    fprintf(stderr, "syntax: %s\n", lua_tostring(L, -1));
    exit(1);
  }
  sl_budget_call_t call = {"test", "t.lua", "req-1", n, &counters};
  return sl_budget_pcall(L, 0, nresults, &call, err, cap);
}

static void test_results_and_errors(void) {
  lua_State *L = new_state();
  char err[512];
  ASSERT_EQ(run(L, "local s = 0\nfor i = 1, 1000 do s = s + i end\nreturn s, 'ok'", 100000, 2, err, sizeof(err)),
            SL_BUDGET_OK);
  ASSERT_EQ((int)lua_tonumber(L, -2), 500500);
  ASSERT_STR_EQ(lua_tostring(L, -1), "ok");
  lua_settop(L, 0);
  ASSERT_EQ(run(L, "\nerror('boom')", 100000, 0, err, sizeof(err)), SL_BUDGET_ERROR);
  ASSERT_STR_EQ(err, "t:2: boom");
  ASSERT_EQ(lua_gettop(L), 0);
  lua_close(L);
}

static void test_runaway_loops_are_stopped(void) {
  lua_State *L = new_state();
  char err[512];
  int64_t before = sl_counter_get(&counters, SL_C_LUA_BUDGET_EXCEEDED);
  static const char *const loops[] = {
      "local x = 0\nwhile true do x = x + 1 end",
      /* catching the budget's error does not help: it is raised again */
      "while true do\n  pcall(function() while true do end end)\nend",
      "for i = 1, 10 do pcall(error, 'x') end\nwhile true do pcall(function() while true do end end) end",
      /* coroutines share the state's hook */
      "local co = coroutine.wrap(function()\n  while true do end\nend)\nco()",
      /* an error handler that loops */
      "xpcall(function() error('x') end, function() while true do end end)",
      /* string building stays bounded by instructions too */
      "local t = {}\nwhile true do t[#t % 100 + 1] = tostring(#t) end",
  };
  for (size_t i = 0; i < sizeof(loops) / sizeof(loops[0]); i++) {
    sl_budget_status_t st = run(L, loops[i], 50000, 0, err, sizeof(err));
    if (st != SL_BUDGET_EXCEEDED) fprintf(stderr, "loop %zu: status %d: %s\n", i, st, err);
    ASSERT_EQ(st, SL_BUDGET_EXCEEDED);
    ASSERT(strstr(err, "instruction budget exceeded: test t.lua stopped after 50000 VM instructions at t:") != NULL);
    ASSERT_EQ(lua_gettop(L), 0);
    /* The state serves the next call normally, with its full budget. */
    ASSERT_EQ(run(L, "local s = 0\nfor i = 1, 10000 do s = s + i end\nreturn s", 100000, 1, err, sizeof(err)),
              SL_BUDGET_OK);
    ASSERT_EQ((int)lua_tonumber(L, -1), 50005000);
    lua_settop(L, 0);
  }
  ASSERT_EQ(sl_counter_get(&counters, SL_C_LUA_BUDGET_EXCEEDED) - before, (int64_t)(sizeof(loops) / sizeof(loops[0])));
  /* The line is the one the loop was on. */
  ASSERT_EQ(run(L, "local a = 1\nlocal b = 2\nwhile true do a = a + b end", 50000, 0, err, sizeof(err)),
            SL_BUDGET_EXCEEDED);
  ASSERT(strstr(err, " at t:3") != NULL);
  /* No hook is left behind after a call. */
  ASSERT_NULL(lua_gethook(L));
  lua_close(L);
}

static void test_jit_off_and_fenced(void) {
  lua_State *L = new_state();
  char err[512];
  ASSERT_EQ(run(L, "return (jit.status())", 100000, 1, err, sizeof(err)), SL_BUDGET_OK);
  ASSERT_EQ(lua_toboolean(L, -1), 0);
  lua_settop(L, 0);
  ASSERT_EQ(run(L, "jit.on()", 100000, 0, err, sizeof(err)), SL_BUDGET_ERROR);
  ASSERT(strstr(err, "the JIT stays off here") != NULL);
  ASSERT_EQ(run(L, "require('jit').on()", 100000, 0, err, sizeof(err)), SL_BUDGET_ERROR);
  ASSERT(strstr(err, "the JIT stays off here") != NULL);
  ASSERT_EQ(run(L, "jit.flush()", 100000, 0, err, sizeof(err)), SL_BUDGET_ERROR);
  ASSERT(strstr(err, "jit.flush is not available") != NULL);
  ASSERT_EQ(run(L, "debug.sethook()", 100000, 0, err, sizeof(err)), SL_BUDGET_ERROR);
  ASSERT(strstr(err, "debug.sethook is taken by the instruction budget") != NULL);
  /* jit.off stays allowed (harmless). */
  ASSERT_EQ(run(L, "jit.off()", 100000, 0, err, sizeof(err)), SL_BUDGET_OK);
  lua_close(L);
}

/* A C function of state A that runs a budgeted runaway in state B (as an
 * attach session that reloads builds a generation). */
static lua_State *inner;
static char inner_err[512];
static int inner_status;
static int l_run_inner(lua_State *L) {
  inner_status = run(inner, "while true do end", 20000, 0, inner_err, sizeof(inner_err));
  lua_pushinteger(L, inner_status);
  return 1;
}

static char seen[256];
static int l_describe(lua_State *L) {
  sl_budget_describe_running(sl_budget_note_here(), seen, sizeof(seen));
  return 0;
}

static void test_nesting_and_description(void) {
  lua_State *L = new_state();
  inner = new_state();
  char err[512];
  lua_register(L, "run_inner", l_run_inner);
  lua_register(L, "describe", l_describe);
  ASSERT_EQ(run(L, "local s = run_inner()\nfor i = 1, 100 do end\nreturn s", 100000, 1, err, sizeof(err)),
            SL_BUDGET_OK);
  ASSERT_EQ((int)lua_tointeger(L, -1), SL_BUDGET_EXCEEDED);
  ASSERT(strstr(inner_err, "stopped after 20000 VM instructions") != NULL);
  lua_settop(L, 0);
  /* The outer call still has its own budget after the inner one. */
  ASSERT_EQ(run(L, "run_inner()\nwhile true do end", 100000, 0, err, sizeof(err)), SL_BUDGET_EXCEEDED);
  ASSERT(strstr(err, "stopped after 100000 VM instructions at t:2") != NULL);
  /* What the watchdog reads. */
  ASSERT_EQ(run(L, "describe()", 100000, 0, err, sizeof(err)), SL_BUDGET_OK);
  ASSERT_STR_EQ(seen, "test t.lua for request req-1");
  sl_budget_describe_running(sl_budget_note_here(), seen, sizeof(seen));
  ASSERT_STR_EQ(seen, "");
  lua_close(inner);
  lua_close(L);
}

int main(void) {
  SL_RUN(test_results_and_errors);
  SL_RUN(test_runaway_loops_are_stopped);
  SL_RUN(test_jit_off_and_fenced);
  SL_RUN(test_nesting_and_description);
  return SL_TEST_EXIT();
}
