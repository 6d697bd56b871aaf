/* lua_budget.h: every Lua call on the loop runs here, under a budget.
 *
 * No Lua code may stop the daemon.  A call made through sl_budget_pcall
 * may run at most a given number of VM instructions; past that a count hook
 * raises "instruction budget exceeded" and keeps raising on every further
 * instruction, so a script that catches the error with pcall cannot go on.
 * The call then fails like any other Lua error, and the caller handles it
 * as that phase's failure (placement falls back to the C least-loaded rule,
 * narration to the plain rendering).  Memory is bounded separately, by the
 * state's accounted allocator (generation.h).
 *
 * LuaJIT's count hooks do not fire inside compiled traces, so a state whose
 * calls are budgeted runs with the JIT off: sl_budget_fence_state turns it
 * off and replaces jit.on, jit.flush and debug.sethook with functions that
 * raise, since each would defeat the budget.  LuaJIT keeps one hook per
 * global state, so coroutines a script starts are counted too.
 *
 * Time spent inside one C function (a pattern match over a huge string, a
 * blocking FFI call) is not counted in instructions: the loop watchdog
 * (watchdog.h) covers that, and it reads what is running from here.
 *
 * Used by: generation.c (the phase loader and sl_generation_call, the one
 * call path of every Lua phase), attach.c.
 */
#ifndef SL_LUA_BUDGET_H
#define SL_LUA_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/config.h"
#include "runtime/base/counters.h"

typedef struct lua_State lua_State;

/* SL_BUDGET_DEFAULT and SL_BUDGET_LOAD_DEFAULT come with the configuration
 * (runtime/base/config.h). */

/* How a budgeted call ended. */
typedef enum {
  SL_BUDGET_OK = 0,       /* returned normally */
  SL_BUDGET_ERROR = 1,    /* raised (or ran out of memory) */
  SL_BUDGET_EXCEEDED = 2, /* stopped by the instruction budget */
} sl_budget_status_t;

/* One call: what runs, for the error text and the watchdog. */
typedef struct {
  const char *phase;      /* "placement", "narration", "load", ... (static) */
  const char *file;       /* the script's file, or NULL */
  const char *request_id; /* the request it runs for, or NULL */
  uint64_t instructions;  /* the budget (0 = SL_BUDGET_DEFAULT; capped at INT32_MAX) */
  sl_counters_t *counters;/* where lua_budget_exceeded is counted (NULL = nowhere) */
} sl_budget_call_t;

/* Turns the JIT off in L and fences jit.on, jit.flush and debug.sethook
 * (each raises a message saying why).  Call once, right after the state is
 * made and before any script runs.  Returns 0, or SL_EINVAL with the reason
 * in err. */
int sl_budget_fence_state(lua_State *L, char *err, size_t errlen);

/* Like lua_pcall(L, nargs, nresults, 0) under the call's budget: the
 * function and its nargs arguments are on the stack.  On SL_BUDGET_OK the
 * results are on the stack as lua_pcall leaves them; otherwise the stack is
 * back to what it was below the function and err holds the message
 * ("instruction budget exceeded: stopped after N VM instructions at
 * file:line" for SL_BUDGET_EXCEEDED, Lua's "file:line: message" otherwise).
 * Calls may nest across states (an attach session that reloads).  Counts
 * every budget kill in call->counters (lua_budget_exceeded). */
sl_budget_status_t sl_budget_pcall(lua_State *L, int nargs, int nresults, const sl_budget_call_t *call, char *err,
                                   size_t errlen);

/* 1 while a budgeted call on L's global state has run past its budget
 * (from then on its hook raises on every instruction), else 0.  For
 * wrappers of pcall and coroutine.resume that must not let a script catch
 * the stop and go on (pipeline.c). */
int sl_budget_spent(lua_State *L);

/* The calling thread's note of the budgeted call it runs now.  A watchdog
 * takes the note of the loop thread it watches (it lives as long as that
 * thread). */
typedef struct sl_budget_note_s sl_budget_note_t;
sl_budget_note_t *sl_budget_note_here(void);

/* What the thread of note is running in Lua now, for a watchdog on another
 * thread: copies "phase file for request ID" into out, or "" when no
 * budgeted call is running.  Thread-safe. */
void sl_budget_describe_running(sl_budget_note_t *note, char *out, size_t cap);

#endif
