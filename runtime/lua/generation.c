/* generation.c: Lua states, policy loading and generation lifetimes. */
#include "runtime/lua/generation.h"

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <cjson/cJSON.h>
#include <pthread.h>
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

/* The accounted allocator: every byte a state holds is counted, and a cap
 * makes allocations fail (Lua then raises "not enough memory") instead of
 * growing the process. */
static void *sl__lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  sl_lua_mem_t *m = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    if (ptr) {
      m->bytes -= old;
      sl_free(ptr);
    }
    return NULL;
  }
  if (m->limit && nsize > old && m->bytes + (nsize - old) > m->limit) return NULL;
  void *p = sl_try_realloc(ptr, nsize);
  if (p == NULL) return NULL;
  m->bytes = m->bytes - old + nsize;
  if (m->bytes > m->peak) m->peak = m->bytes;
  return p;
}

lua_State *sl_lua_new_state(sl_lua_mem_t *mem, char *err, size_t errlen) {
  lua_State *L = lua_newstate(sl__lua_alloc, mem);
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

/* Loads the policy, validates it, and leaves a wrapper that calls
 * policy.place(ctx) with the FFI context: C cannot make cdata, so it passes
 * the context as a light userdata and the wrapper casts it. */
static const char sl__bootstrap[] =
    "local path, config = ...\n"
    "local placement = require 'sluice.placement'\n"
    "local chunk, err = loadfile(path)\n"
    "if not chunk then error(err, 0) end\n"
    "local ok, policy = pcall(chunk)\n"
    "if not ok then error(policy, 0) end\n"
    "local valid, why = placement.validate_policy(policy)\n"
    "if not valid then error(path .. ': ' .. why, 0) end\n"
    "local cfg, cerr = placement.configure(policy, config)\n"
    "if not cfg then error(path .. ': placement.config: ' .. cerr, 0) end\n"
    "local place, context_of = policy.place, placement.context_of\n"
    "return function(p) return place(context_of(p)) end, policy.name, policy.version\n";

int sl_generation_build(const char *policy_path, const char *config_json, uint64_t id, const sl_lua_host_t *lim,
                        sl_generation_t **out, char *err, size_t errlen) {
  sl_generation_t *g = sl_calloc(1, sizeof(*g));
  if (lim) g->host = *lim;
  if (g->host.budget == 0) g->host.budget = SL_BUDGET_DEFAULT;
  if (g->host.load_budget == 0) g->host.load_budget = SL_BUDGET_LOAD_DEFAULT;
  g->mem.limit = g->host.mem_limit;
  g->id = id;
  g->refs = 1;
  g->place_ref = LUA_NOREF;
  g->narrate_ref = LUA_NOREF;
  snprintf(g->policy_path, sizeof(g->policy_path), "%s", policy_path);
  g->L = sl_lua_new_state(&g->mem, err, errlen);
  if (g->L == NULL) {
    sl_free(g);
    return SL_ENOMEM;
  }
  lua_State *L = g->L;
  int rc = sl_budget_fence_state(L, err, errlen);
  g->dict_slot = g->host.dict;
  if (rc == 0 && g->host.dict) sl_lua_set_host(L, &g->dict_slot);
  cJSON *conf = config_json ? cJSON_Parse(config_json) : NULL;
  if (rc == 0 && luaL_loadbuffer(L, sl__bootstrap, sizeof(sl__bootstrap) - 1, "=sluice.bootstrap") != 0) {
    const char *msg = lua_tostring(L, -1);
    snprintf(err, errlen, "%s", msg ? msg : "cannot load the bootstrap");
    rc = SL_EINVAL;
  }
  if (rc == 0) {
    lua_pushstring(L, policy_path);
    if (conf) sl__push_json(L, conf); else lua_pushnil(L);
    sl_budget_call_t call = {"load", policy_path, NULL, g->host.load_budget, g->host.counters};
    if (sl_budget_pcall(L, 2, 3, &call, err, errlen) != SL_BUDGET_OK) rc = SL_EINVAL;
  }
  cJSON_Delete(conf);
  if (rc != 0) {
    lua_close(L);
    sl_free(g);
    return SL_EINVAL;
  }
  snprintf(g->policy_version, sizeof(g->policy_version), "%s", lua_tostring(L, -1));
  snprintf(g->policy_name, sizeof(g->policy_name), "%s", lua_tostring(L, -2));
  lua_pop(L, 2);
  g->place_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  sl_counter_inc(g->host.counters, SL_C_GENERATIONS_LIVE);
  *out = g;
  return 0;
}

sl_generation_t *sl_generation_acquire(sl_generation_t *g) {
  if (g) g->refs++;
  return g;
}

void sl_generation_release(sl_generation_t *g) {
  if (g == NULL || --g->refs > 0) return;
  sl_counters_t *counters = g->host.counters;
  lua_close(g->L);
  sl_free(g);
  sl_counter_dec(counters, SL_C_GENERATIONS_LIVE);
  sl_counter_inc(counters, SL_C_GENERATIONS_FREED);
}

int sl_generation_place(sl_generation_t *g, const sl_ffi_place_ctx_t *ctx, const char *request_id, int *index,
                        char *reason, size_t reasonlen) {
  if (g->place_suspended) {
    snprintf(reason, reasonlen, "placement policy %s suspended in generation %llu after %d budget stops in a row",
             g->policy_path, (unsigned long long)g->id, SL_BUDGET_SUSPEND_AFTER);
    return SL_ECANCELED;
  }
  lua_State *L = g->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->place_ref);
  lua_pushlightuserdata(L, (void *)ctx);
  sl_budget_call_t call = {"placement", g->policy_path, request_id, g->host.budget, g->host.counters};
  sl_budget_status_t st = sl_budget_pcall(L, 1, 2, &call, reason, reasonlen);
  g->place_stops = st == SL_BUDGET_EXCEEDED ? g->place_stops + 1 : 0;
  if (g->place_stops >= SL_BUDGET_SUSPEND_AFTER && !g->place_suspended) {
    g->place_suspended = 1;
    size_t n = strlen(reason);
    snprintf(reason + n, reasonlen - n,
             "; %d stops in a row: the policy is suspended for generation %llu (the C rule places every request "
             "until a reload)",
             SL_BUDGET_SUSPEND_AFTER, (unsigned long long)g->id);
  }
  if (st != SL_BUDGET_OK) return st == SL_BUDGET_EXCEEDED ? SL_ETIMEDOUT : SL_EINVAL;
  int ok = lua_type(L, -2) == LUA_TNUMBER;
  lua_Number k = ok ? lua_tonumber(L, -2) : 0;
  if (!ok || k != (lua_Number)(int)k || k < 1 || k > ctx->n) {
    snprintf(reason, reasonlen, "%s: place() returned %s%s, not a candidate index in 1..%d", g->policy_path,
             ok ? "" : "a ", ok ? lua_tostring(L, -2) : luaL_typename(L, -2), ctx->n);
    lua_settop(L, top);
    return SL_EINVAL;
  }
  const char *why = lua_tostring(L, -1);
  snprintf(reason, reasonlen, "%s", why ? why : g->policy_name);
  *index = (int)k - 1;
  lua_settop(L, top);
  return 0;
}

static const char sl__narration_bootstrap[] =
    "local path = ...\n"
    "local narration = require 'sluice.narration'\n"
    "local chunk, err = loadfile(path)\n"
    "if not chunk then error(err, 0) end\n"
    "local ok, mod = pcall(chunk)\n"
    "if not ok then error(mod, 0) end\n"
    "local valid, why = narration.validate(mod)\n"
    "if not valid then error(path .. ': ' .. why, 0) end\n"
    "local run = narration.run_batch\n"
    "return function(nar) return run(mod, nar) end\n";

int sl_generation_load_narration(sl_generation_t *g, const char *path, char *err, size_t errlen) {
  lua_State *L = g->L;
  int top = lua_gettop(L);
  if (luaL_loadbuffer(L, sl__narration_bootstrap, sizeof(sl__narration_bootstrap) - 1, "=sluice.narration") != 0) {
    const char *msg = lua_tostring(L, -1);
    snprintf(err, errlen, "%s", msg ? msg : "cannot load the narration bootstrap");
    lua_settop(L, top);
    return SL_EINVAL;
  }
  lua_pushstring(L, path);
  sl_budget_call_t call = {"load", path, NULL, g->host.load_budget, g->host.counters};
  if (sl_budget_pcall(L, 1, 1, &call, err, errlen) != SL_BUDGET_OK) {
    lua_settop(L, top);
    return SL_EINVAL;
  }
  g->narrate_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  snprintf(g->narration_path, sizeof(g->narration_path), "%s", path);
  lua_settop(L, top);
  return 0;
}

int sl_generation_narrate(sl_generation_t *g, sl_narrator_t *nar, char *err, size_t errlen) {
  if (g == NULL || g->narrate_ref == LUA_NOREF) {
    snprintf(err, errlen, "no narration policy");
    return SL_EINVAL;
  }
  if (g->narrate_suspended) {
    snprintf(err, errlen, "narration policy %s suspended in generation %llu", g->narration_path,
             (unsigned long long)g->id);
    return SL_ECANCELED;
  }
  lua_State *L = g->L;
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g->narrate_ref);
  lua_pushlightuserdata(L, nar);
  sl_budget_call_t call = {"narration", g->narration_path, NULL, g->host.budget, g->host.counters};
  sl_budget_status_t st = sl_budget_pcall(L, 1, 0, &call, err, errlen);
  g->narrate_stops = st == SL_BUDGET_EXCEEDED ? g->narrate_stops + 1 : 0;
  if (g->narrate_stops >= SL_BUDGET_SUSPEND_AFTER && !g->narrate_suspended) {
    g->narrate_suspended = 1;
    size_t n = strlen(err);
    snprintf(err + n, errlen - n,
             "; %d stops in a row: the policy is suspended for generation %llu (plain narration until a reload)",
             SL_BUDGET_SUSPEND_AFTER, (unsigned long long)g->id);
  }
  if (st != SL_BUDGET_OK) {
    lua_settop(L, top);
    return SL_EINVAL;
  }
  lua_settop(L, top);
  return 0;
}
