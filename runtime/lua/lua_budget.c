/* lua_budget.c: the budget runner (see lua_budget.h). */
#include "runtime/lua/lua_budget.h"

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/counters.h"
#include "runtime/base/errors.h"

/* One budgeted call in progress.  Calls nest only across states (an attach
 * chunk that reloads builds a generation in another state), so the frames
 * form a short stack; the hook finds its own frame by the registry of the
 * state it fires in, which every coroutine of a state shares. */
typedef struct sl__frame_s {
  const sl_budget_call_t *call;
  const void *registry;
  uint32_t budget;
  int exceeded;
  char where[200];
  struct sl__frame_s *prev;
} sl__frame_t;

static _Thread_local sl__frame_t *sl__top;

/* What a watchdog thread reads: each loop thread has its own note.  The
 * loop sets it around each call; the strings it points at live at least
 * until the call returns, and the watchdog copies them under the same lock
 * the loop takes to clear it. */
struct sl_budget_note_s {
  pthread_mutex_t lock;
  const sl_budget_call_t *call;
};

static _Thread_local sl_budget_note_t sl__note = {PTHREAD_MUTEX_INITIALIZER, NULL};

sl_budget_note_t *sl_budget_note_here(void) { return &sl__note; }

static void sl__set_note(const sl_budget_call_t *call) {
  pthread_mutex_lock(&sl__note.lock);
  sl__note.call = call;
  pthread_mutex_unlock(&sl__note.lock);
}

void sl_budget_describe_running(sl_budget_note_t *note, char *out, size_t cap) {
  pthread_mutex_lock(&note->lock);
  const sl_budget_call_t *c = note->call;
  if (c == NULL) {
    if (cap) out[0] = '\0';
  } else {
    snprintf(out, cap, "%s%s%s%s%s", c->phase, c->file ? " " : "", c->file ? c->file : "",
             c->request_id ? " for request " : "", c->request_id ? c->request_id : "");
  }
  pthread_mutex_unlock(&note->lock);
}

/* Fires once the call has run its budget.  From then on it fires on every
 * instruction and raises each time, so an error caught by the script's own
 * pcall is raised again at its next instruction until it leaves the call. */
static void sl__hook(lua_State *L, lua_Debug *ar) {
  const void *reg = lua_topointer(L, LUA_REGISTRYINDEX);
  sl__frame_t *f = sl__top;
  while (f != NULL && f->registry != reg) f = f->prev;
  if (f == NULL) return; /* not ours (cannot happen: the hook is cleared after each call) */
  if (!f->exceeded) {
    f->exceeded = 1;
    if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
      snprintf(f->where, sizeof(f->where), " at %s:%d", ar->short_src, ar->currentline);
    lua_sethook(L, sl__hook, LUA_MASKCOUNT, 1);
  }
  luaL_error(L, "instruction budget exceeded");
}

sl_budget_status_t sl_budget_pcall(lua_State *L, int nargs, int nresults, const sl_budget_call_t *call, char *err,
                                   size_t errlen) {
  sl__frame_t f;
  memset(&f, 0, sizeof(f));
  f.call = call;
  f.registry = lua_topointer(L, LUA_REGISTRYINDEX);
  uint64_t b = call->instructions ? call->instructions : SL_BUDGET_DEFAULT;
  f.budget = b > 0x7fffffff ? 0x7fffffff : (uint32_t)b; /* lua_sethook takes an int */
  f.prev = sl__top;
  /* A nested call on the same state (not done today) gets its own budget
   * and gives the outer call its hook back afterwards. */
  lua_Hook old_hook = lua_gethook(L);
  int old_mask = lua_gethookmask(L), old_count = lua_gethookcount(L);
  const sl_budget_call_t *old_note = sl__note.call;
  sl__top = &f;
  sl__set_note(call);
  int top = lua_gettop(L) - nargs - 1;
  lua_sethook(L, sl__hook, LUA_MASKCOUNT, (int)f.budget);
  int rc = lua_pcall(L, nargs, nresults, 0);
  lua_sethook(L, old_hook, old_mask, old_count);
  sl__top = f.prev;
  sl__set_note(old_note);
  if (f.exceeded) {
    sl_counter_inc(call->counters, SL_C_LUA_BUDGET_EXCEEDED);
    snprintf(err, errlen, "instruction budget exceeded: %s%s%s stopped after %u VM instructions%s", call->phase,
             call->file ? " " : "", call->file ? call->file : "", f.budget, f.where);
    lua_settop(L, top);
    return SL_BUDGET_EXCEEDED;
  }
  if (rc != 0) {
    const char *msg = lua_tostring(L, -1);
    snprintf(err, errlen, "%s", msg ? msg : "(error object is not a string)");
    lua_settop(L, top);
    return SL_BUDGET_ERROR;
  }
  return SL_BUDGET_OK;
}

int sl_budget_spent(lua_State *L) {
  const void *reg = lua_topointer(L, LUA_REGISTRYINDEX);
  for (sl__frame_t *f = sl__top; f != NULL; f = f->prev)
    if (f->registry == reg) return f->exceeded;
  return 0;
}

/* jit.on, jit.flush and debug.sethook raise from now on; the jit table is
 * changed in place, so require 'jit' returns the fenced one too. */
static const char sl__fence[] =
    "local function fenced(why)\n"
    "  return function() error(why, 2) end\n"
    "end\n"
    "local j = require 'jit'\n"
    "j.on = fenced('the JIT stays off here: the instruction budget that keeps a script from stopping the daemon "
    "needs it off')\n"
    "j.flush = fenced('jit.flush is not available here: the JIT is off under the instruction budget')\n"
    "debug.sethook = fenced('debug.sethook is taken by the instruction budget')\n";

int sl_budget_fence_state(lua_State *L, char *err, size_t errlen) {
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  if (luaL_loadbuffer(L, sl__fence, sizeof(sl__fence) - 1, "=sluice.fence") != 0 || lua_pcall(L, 0, 0, 0) != 0) {
    const char *msg = lua_tostring(L, -1);
    snprintf(err, errlen, "cannot fence the Lua state: %s", msg ? msg : "unknown error");
    lua_pop(L, 1);
    return SL_EINVAL;
  }
  return 0;
}
