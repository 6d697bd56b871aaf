/* generation.c: Lua states, the phase table, the one loader and the one
 * call path, and generation lifetimes (see generation.h).  The Lua side of
 * loading is lua/sluice/phases.lua and each phase's wrapper module. */
#include "runtime/lua/generation.h"

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/base/errors.h"
#include "runtime/lua/lua_budget.h"

/* The environment wins; then the source tree this binary was built from
 * (a developer's build); then <prefix>/share/sluice/<sub> beside the
 * installed binary (<prefix>/bin/sluice). */
static const char *sl__data_dir(const char *env, const char *built, const char *sub, char *buf, size_t cap) {
  const char *d = getenv(env);
  if (d && *d) return d;
  if (access(built, R_OK) == 0) return built;
  char exe[512];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';           /* <prefix>/bin */
    slash = strrchr(exe, '/');
    if (slash) *slash = '\0';           /* <prefix> */
    snprintf(buf, cap, "%s/share/sluice/%s", exe, sub);
    if (access(buf, R_OK) == 0) return buf;
  }
  return built;
}

/* Found once per process (the environment and the install do not move);
 * gateways on other threads read the same answer. */
static pthread_once_t sl__dirs_once = PTHREAD_ONCE_INIT;
static char sl__lua_buf[600], sl__policy_buf[600];
static const char *sl__lua_dir, *sl__policy_dir;

static void sl__find_dirs(void) {
  sl__lua_dir = sl__data_dir("SLUICE_LUA_DIR", SL_LUA_DIR, "lua", sl__lua_buf, sizeof(sl__lua_buf));
  sl__policy_dir = sl__data_dir("SLUICE_POLICY_DIR", SL_POLICY_DIR, "policies", sl__policy_buf, sizeof(sl__policy_buf));
}

const char *sl_lua_dir(void) {
  pthread_once(&sl__dirs_once, sl__find_dirs);
  return sl__lua_dir;
}

const char *sl_policy_dir(void) {
  pthread_once(&sl__dirs_once, sl__find_dirs);
  return sl__policy_dir;
}

/* A bare name is <policy dir>/<sub><name>.lua; anything with a '/' or
 * ending in ".lua" is a path, kept as it is. */
static int sl__resolve(const char *sub, const char *name_or_path, char *out, size_t cap) {
  size_t n = strlen(name_or_path);
  int is_path = strchr(name_or_path, '/') != NULL || (n > 4 && strcmp(name_or_path + n - 4, ".lua") == 0);
  int w = is_path ? snprintf(out, cap, "%s", name_or_path)
                  : snprintf(out, cap, "%s/%s%s.lua", sl_policy_dir(), sub, name_or_path);
  return w < 0 || (size_t)w >= cap ? SL_ETOOBIG : 0;
}

int sl_policy_resolve(const char *name_or_path, char *out, size_t cap) {
  return sl__resolve("placement/", name_or_path, out, cap);
}

int sl_narration_resolve(const char *name_or_path, char *out, size_t cap) {
  return sl__resolve("", name_or_path, out, cap);
}

int sl_limits_resolve(const char *name_or_path, char *out, size_t cap) {
  return sl__resolve("limits/", name_or_path, out, cap);
}

/* The accounted allocator: every byte a state holds is counted, and a cap
 * makes allocations fail (Lua then raises "not enough memory") instead of
 * growing the process. */
lua_State *sl_lua_new_state(sl_lua_mem_t *mem, char *err, size_t errlen) {
  lua_State *L = lua_newstate(sl_lua_alloc, mem);
  if (L == NULL) {
    snprintf(err, errlen, "cannot create a Lua state (out of memory)");
    return NULL;
  }
  luaL_openlibs(L);
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_ON);
  /* package.path: the sluice modules and shipped policies first. */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  const char *old = lua_tostring(L, -1);
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/?.lua;%s", sl_lua_dir(), sl_lua_dir(), sl_policy_dir(),
                  old ? old : "");
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
  return L;
}

void sl_lua_set_host(lua_State *L, sl_ttldict_t **dict_slot) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaded");
  lua_createtable(L, 0, 1);
  lua_pushlightuserdata(L, dict_slot);
  lua_setfield(L, -2, "dict_slot");
  lua_setfield(L, -2, "sluice.host");
  lua_pop(L, 2);
}

/* Pushes a JSON value as the equivalent Lua value (objects and arrays as
 * tables, arrays 1-based, null as nil). */
static void sl__push_json(lua_State *L, const cJSON *v) {
  if (cJSON_IsObject(v)) {
    lua_newtable(L);
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
      sl__push_json(L, it);
      lua_setfield(L, -2, it->string);
    }
  } else if (cJSON_IsArray(v)) {
    lua_newtable(L);
    int i = 1;
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
      sl__push_json(L, it);
      lua_rawseti(L, -2, i++);
    }
  } else if (cJSON_IsString(v)) {
    lua_pushstring(L, v->valuestring);
  } else if (cJSON_IsNumber(v)) {
    lua_pushnumber(L, v->valuedouble);
  } else if (cJSON_IsBool(v)) {
    lua_pushboolean(L, cJSON_IsTrue(v));
  } else {
    lua_pushnil(L);
  }
}

/* The built-in phases.  Placement and narration each come from their own
 * policy file; their wrappers keep the messages policy authors know. */
const sl_phase_desc_t sl_phase_table[SL_PHASE__COUNT] = {
    [SL_PHASE_PLACEMENT] = {"placement", "placement", "place", "sluice.placement", 0, SL_BUDGET_SUSPEND_AFTER,
                            "the C rule places every request"},
    [SL_PHASE_NARRATION] = {"narration", "narration", "narrate", "sluice.narration", 0, SL_BUDGET_SUSPEND_AFTER,
                            "plain narration"},
    [SL_PHASE_LIMIT] = {"limit", "limits", "limit", "sluice.limits", 0, SL_BUDGET_SUSPEND_AFTER,
                        "each limit stays where it is"},
    [SL_PHASE_SLOW_CLIENT] = {"slow_client", "limits", "slow_client", "sluice.limits", 1, SL_BUDGET_SUSPEND_AFTER,
                              "slow clients are kept"},
};

int sl__generation_new(const sl_phase_desc_t *table, int n, uint64_t id, const sl_lua_host_t *lim,
                       sl_generation_t **out, char *err, size_t errlen) {
  if (n < 0 || n > SL_PHASE_MAX) {
    snprintf(err, errlen, "a phase table has at most %d entries, got %d", SL_PHASE_MAX, n);
    return SL_EINVAL;
  }
  sl_generation_t *g = sl_calloc(1, sizeof(*g));
  if (lim) g->host = *lim;
  if (g->host.budget == 0) g->host.budget = SL_BUDGET_DEFAULT;
  if (g->host.load_budget == 0) g->host.load_budget = SL_BUDGET_LOAD_DEFAULT;
  g->mem.limit = g->host.mem_limit;
  g->id = id;
  g->refs = 1;
  g->phases = table;
  g->nphases = n;
  g->loader_ref = LUA_NOREF;
  for (int i = 0; i < SL_PHASE_MAX; i++) g->phase[i].ref = LUA_NOREF;
  g->L = sl_lua_new_state(&g->mem, err, errlen);
  if (g->L == NULL) {
    sl_free(g);
    return SL_ENOMEM;
  }
  lua_State *L = g->L;
  int rc = sl_budget_fence_state(L, err, errlen);
  g->dict_slot = g->host.dict;
  if (rc == 0 && g->host.dict) sl_lua_set_host(L, &g->dict_slot);
  if (rc == 0) {
    /* The loader is the first Lua this state runs after the fence, and it
     * runs under the load budget like everything after it. */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "sluice.phases");
    sl_budget_call_t call = {"load", "sluice.phases", NULL, g->host.load_budget, g->host.counters};
    if (sl_budget_pcall(L, 1, 1, &call, err, errlen) != SL_BUDGET_OK) {
      rc = SL_EINVAL;
    } else {
      lua_getfield(L, -1, "load");
      if (lua_isfunction(L, -1)) {
        g->loader_ref = luaL_ref(L, LUA_REGISTRYINDEX);
      } else {
        snprintf(err, errlen, "sluice.phases has no load() (is %s the sluice Lua directory?)", sl_lua_dir());
        rc = SL_EINVAL;
      }
      lua_settop(L, 0);
    }
  }
  if (rc != 0) {
    lua_close(L);
    sl_free(g);
    return SL_EINVAL;
  }
  sl_counter_inc(g->host.counters, SL_C_GENERATIONS_LIVE);
  *out = g;
  return 0;
}

int sl_generation_new(uint64_t id, const sl_lua_host_t *lim, sl_generation_t **out, char *err, size_t errlen) {
  return sl__generation_new(sl_phase_table, SL_PHASE__COUNT, id, lim, out, err, errlen);
}

int sl_generation_build(const char *policy_path, const char *config_json, uint64_t id, const sl_lua_host_t *lim,
                        sl_generation_t **out, char *err, size_t errlen) {
  sl_generation_t *g;
  int rc = sl_generation_new(id, lim, &g, err, errlen);
  if (rc < 0) return rc;
  rc = sl_generation_load(g, "placement", policy_path, config_json, err, errlen);
  if (rc < 0) {
    sl_generation_release(g);
    return rc;
  }
  *out = g;
  return 0;
}

int sl_generation_load(sl_generation_t *g, const char *source, const char *path, const char *config_json,
                       char *err, size_t errlen) {
  lua_State *L = g->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->loader_ref);
  lua_pushstring(L, path);
  cJSON *conf = config_json ? cJSON_Parse(config_json) : NULL;
  if (conf) sl__push_json(L, conf); else lua_pushnil(L);
  cJSON_Delete(conf);
  /* The specs of the phases this file defines, and where each one's slot is. */
  int slot[SL_PHASE_MAX], n = 0;
  lua_createtable(L, g->nphases, 0);
  for (int i = 0; i < g->nphases; i++) {
    const sl_phase_desc_t *d = &g->phases[i];
    if (strcmp(d->source, source) != 0) continue;
    lua_createtable(L, 0, 4);
    lua_pushstring(L, d->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, d->entry);
    lua_setfield(L, -2, "entry");
    if (d->wrapper) {
      lua_pushstring(L, d->wrapper);
      lua_setfield(L, -2, "wrapper");
    }
    lua_pushboolean(L, d->optional);
    lua_setfield(L, -2, "optional");
    lua_rawseti(L, -2, n + 1);
    slot[n++] = i;
  }
  if (n == 0) {
    snprintf(err, errlen, "%s: no phase is loaded from a %s policy file", path, source);
    lua_settop(L, top);
    return SL_EINVAL;
  }
  sl_budget_call_t call = {"load", path, NULL, g->host.load_budget, g->host.counters};
  if (sl_budget_pcall(L, 3, 3, &call, err, errlen) != SL_BUDGET_OK) {
    lua_settop(L, top);
    return SL_EINVAL;
  }
  /* bound, name, version: nothing below fails, so g changes only now. */
  const char *name = lua_tostring(L, -2), *version = lua_tostring(L, -1);
  for (int k = 0; k < n; k++) {
    sl_phase_slot_t *s = &g->phase[slot[k]];
    lua_rawgeti(L, -3, k + 1);
    if (!lua_isfunction(L, -1)) { /* an optional phase the module leaves out */
      lua_pop(L, 1);
      continue;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, s->ref);
    s->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->stops = 0;
    s->suspended = 0;
    snprintf(s->file, sizeof(s->file), "%s", path);
    snprintf(s->name, sizeof(s->name), "%s", name ? name : "");
    snprintf(s->version, sizeof(s->version), "%s", version ? version : "");
  }
  lua_settop(L, top);
  return 0;
}

int sl_generation_load_narration(sl_generation_t *g, const char *path, char *err, size_t errlen) {
  return sl_generation_load(g, "narration", path, NULL, err, errlen);
}

sl_generation_t *sl_generation_acquire(sl_generation_t *g) {
  if (g) g->refs++;
  return g;
}

void sl_generation_release(sl_generation_t *g) {
  if (g == NULL || --g->refs > 0) return;
  sl_counters_t *counters = g->host.counters;
  for (int i = 0; i < g->npipes; i++)
    if (g->pipes[i] != NULL) sl_pipeline_free(g->pipes[i]);
  sl_free(g->pipes);
  lua_close(g->L);
  sl_free(g);
  sl_counter_dec(counters, SL_C_GENERATIONS_LIVE);
  sl_counter_inc(counters, SL_C_GENERATIONS_FREED);
}

int sl_generation_phase_ready(const sl_generation_t *g, int phase) {
  return g != NULL && phase >= 0 && phase < g->nphases && g->phase[phase].ref != LUA_NOREF &&
         !g->phase[phase].suspended;
}

int sl_generation_call(sl_generation_t *g, int phase, void *arg, const char *request_id, int64_t *answer,
                       char *text, size_t textlen) {
  if (answer) *answer = 0;
  int n = g ? g->nphases : SL_PHASE__COUNT;
  const sl_phase_desc_t *d = phase >= 0 && phase < n ? (g ? &g->phases[phase] : &sl_phase_table[phase]) : NULL;
  if (d == NULL) {
    snprintf(text, textlen, "no phase %d", phase);
    return SL_EINVAL;
  }
  if (g == NULL || g->phase[phase].ref == LUA_NOREF) {
    snprintf(text, textlen, "no %s policy", d->name);
    return SL_EINVAL;
  }
  sl_phase_slot_t *s = &g->phase[phase];
  if (s->suspended) {
    snprintf(text, textlen, "%s policy %s suspended in generation %llu after %d budget stops in a row", d->name,
             s->file, (unsigned long long)g->id, d->suspend_after);
    return SL_ECANCELED;
  }
  lua_State *L = g->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref);
  lua_pushlightuserdata(L, arg);
  sl_budget_call_t call = {d->name, s->file, request_id, g->host.budget, g->host.counters};
  sl_budget_status_t st = sl_budget_pcall(L, 1, 2, &call, text, textlen);
  s->stops = st == SL_BUDGET_EXCEEDED ? s->stops + 1 : 0;
  if (s->stops >= d->suspend_after && !s->suspended) {
    s->suspended = 1;
    size_t len = strlen(text);
    snprintf(text + len, textlen - len,
             "; %d stops in a row: the policy is suspended for generation %llu (%s until a reload)",
             d->suspend_after, (unsigned long long)g->id, d->fallback);
  }
  if (st != SL_BUDGET_OK) return st == SL_BUDGET_EXCEEDED ? SL_ETIMEDOUT : SL_EINVAL;
  if (answer && lua_type(L, -2) == LUA_TNUMBER) *answer = (int64_t)lua_tonumber(L, -2);
  const char *t = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  snprintf(text, textlen, "%s", t ? t : "");
  lua_settop(L, top);
  return 0;
}

int sl_generation_place(sl_generation_t *g, const sl_ffi_place_ctx_t *ctx, const char *request_id, int *index,
                        char *reason, size_t reasonlen) {
  /* The wrapper (placement.bind) checks the answer is an index in 1..n. */
  int64_t k = 0;
  int rc = sl_generation_call(g, SL_PHASE_PLACEMENT, (void *)ctx, request_id, &k, reason, reasonlen);
  if (rc < 0) return rc;
  *index = (int)k - 1;
  return 0;
}

int sl_generation_narrate(sl_generation_t *g, sl_narrator_t *nar, char *err, size_t errlen) {
  int rc = sl_generation_call(g, SL_PHASE_NARRATION, nar, NULL, NULL, err, errlen);
  /* Narration has one failure besides suspension: the plain rendering. */
  return rc == SL_ETIMEDOUT ? SL_EINVAL : rc;
}

int sl_generation_limit(sl_generation_t *g, const sl_ffi_limit_stats_t *s, int64_t *limit, char *reason,
                        size_t reasonlen) {
  /* The wrapper (limits.bind) answers an integer or raises, so a successful
   * call always carries the rule's limit. */
  return sl_generation_call(g, SL_PHASE_LIMIT, (void *)s, NULL, limit, reason, reasonlen);
}

int sl_generation_slow_client(sl_generation_t *g, const sl_ffi_slow_client_t *c, int *cancel, char *reason,
                              size_t reasonlen) {
  int64_t a = 0;
  int rc = sl_generation_call(g, SL_PHASE_SLOW_CLIENT, (void *)c, c->id, &a, reason, reasonlen);
  if (rc < 0) return rc;
  *cancel = a == 1;
  return 0;
}
