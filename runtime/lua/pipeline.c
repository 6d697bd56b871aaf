/* pipeline.c: a tenant's sandboxed Lua pipeline (see pipeline.h).
 *
 * One lua_State per pipeline, made with the accounted allocator of
 * lua_mem.h (sl_lua_alloc; the cap is lim->mem_limit), fenced by
 * lua_budget (JIT off).
 * The libraries are opened in the state, but the pipeline's file runs in a
 * fresh environment table built from an allow-list, so the global table,
 * package, require and the unsafe functions are never reachable from it.
 *
 * Every piece of work that allocates Lua memory runs in protected mode: a
 * memory error outside it would end the process.  So C never calls the Lua
 * API directly for a pipeline's work; it fills an operation (sl__op_t) and
 * calls the one runner function (kept in the registry since the state was
 * made) through sl_budget_pcall or lua_pcall.  JSON trees made while the
 * runner runs hang from the pipeline (json_out, scratch) as soon as they
 * exist, so an error half way through frees them afterwards, not never.
 *
 * Kills: once the instruction budget is spent, the allocator refused an
 * allocation under the cap, or the matcher ran out of steps, the call is
 * over.  pcall, xpcall, coroutine.resume and coroutine.wrap of the sandbox
 * ask killed() after every failure and raise again, so the pipeline cannot
 * catch the kill and go on.  The flags are cleared when each call starts.
 */
#include "runtime/lua/pipeline.h"

#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/lua/lua_mem.h"
#include "runtime/lua/lpattern.h"
#include "runtime/lua/lua_budget.h"

#define SL__JSON_DEPTH 100               /* deepest JSON a pipeline gets or gives */
#define SL__JSON_MAX (8u * 1024 * 1024)  /* largest JSON (estimated text) a table may encode to */
#define SL__FILE_MAX (4u * 1024 * 1024)  /* largest pipeline file */
#define SL__TENANT_MAX 64                /* longest tenant name */

/* The phases, in bit order of SL_PIPE_ON_*. */
enum { SL__REQUEST = 0, SL__CHUNK, SL__VERDICT, SL__END, SL__NPHASES };
static const char *const sl__phase_names[SL__NPHASES] = {"on_request", "on_chunk", "on_verdict", "on_end"};

struct sl_pipeline_s {
  lua_State *L;
  sl_lua_mem_t mem;                      /* the accounted allocator's (lua_mem.h); mem.refused: a
                                            refusal under the cap, which the sandbox's pcall re-raises */
  sl_pipeline_limits_t lim;              /* with the defaults filled in */
  sl_lpat_limits_t pat;                  /* what the sandbox's pattern functions may use */
  char tenant[SL__TENANT_MAX + 1];
  char ns[SL__TENANT_MAX + 4];           /* "p:<tenant>:", every dictionary key's prefix */
  size_t nslen;
  char *file;
  unsigned phases;                       /* SL_PIPE_ON_* bits */
  int fn_ref[SL__NPHASES];               /* registry refs of the phase functions */
  int runner_ref, env_ref, null_ref, array_mt_ref, held_ref;
  /* Kill flags of the current call (cleared when it starts). */
  int pattern_tripped;                   /* the matcher ran out of steps */
  /* The current call: which phase (an SL__* index, or -1 outside phases),
   * where its actions go, and what replace/hold may touch. */
  int phase;
  sl_pipe_actions_t *acts;
  uint64_t chunk_lo, chunk_hi;           /* on_chunk: bytes not yet released, [lo, hi) */
  size_t chunk_len;                      /* on_chunk: the batch's length */
  int64_t hold;                          /* on_chunk: the last hold(n), or -1 */
  cJSON *json_out;                       /* on_request: the table encoded back */
  cJSON *scratch;                        /* json_encode / json_decode's tree */
  char *scratch_text;                    /* json_encode's text */
};

static sl_pipeline_t *sl__self(lua_State *L) { return (sl_pipeline_t *)lua_touserdata(L, lua_upvalueindex(1)); }

/* ---- Sandbox functions written in C ---- */

/* killed(): has the current call been stopped? */
static int sl__killed(lua_State *L) {
  sl_pipeline_t *p = sl__self(L);
  lua_pushboolean(L, p->mem.refused || p->pattern_tripped || sl_budget_spent(L));
  return 1;
}

/* string.rep with the result capped; upvalue 1 is LuaJIT's rep. */
static int sl__rep(lua_State *L) {
  size_t l, lsep = 0;
  luaL_checklstring(L, 1, &l);
  lua_Number n = luaL_checknumber(L, 2);
  luaL_optlstring(L, 3, "", &lsep);
  double total = n >= 1 ? (double)l * floor(n) + (double)lsep * (floor(n) - 1) : 0;
  if (total > (double)SL_PIPE_STRING_MAX) {
    char msg[160];
    snprintf(msg, sizeof(msg), "string.rep: a result of %.0f bytes is longer than the limit (%u bytes)", total,
             SL_PIPE_STRING_MAX);
    luaL_error(L, "%s", msg);
  }
  int nargs = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, nargs, 1);
  return 1;
}

/* string.format with the result capped (checked on what LuaJIT built,
 * which the memory cap bounds meanwhile); upvalue 1 is LuaJIT's format. */
static int sl__format(lua_State *L) {
  int nargs = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, nargs, 1);
  size_t n;
  lua_tolstring(L, -1, &n);
  if (n > SL_PIPE_STRING_MAX) {
    char msg[160];
    snprintf(msg, sizeof(msg), "string.format: a result of %zu bytes is longer than the limit (%u bytes)", n,
             SL_PIPE_STRING_MAX);
    luaL_error(L, "%s", msg);
  }
  return 1;
}

static int sl__readonly(lua_State *L) { return luaL_error(L, "sluice.null is read-only"); }
static int sl__null_tostring(lua_State *L) {
  lua_pushliteral(L, "null");
  return 1;
}

/* ---- Actions ---- */

typedef struct {
  const char *name;
  unsigned phases; /* SL_PIPE_ON_* where it may be called */
  const char *where; /* said when it is called elsewhere */
} sl__act_desc_t;

static const sl__act_desc_t sl__acts[SL_PACT__COUNT] = {
    [SL_PACT_DENY] = {"deny", SL_PIPE_ON_REQUEST, "only in on_request"},
    [SL_PACT_CANCEL] = {"cancel", SL_PIPE_ON_CHUNK | SL_PIPE_ON_VERDICT,
                        "only in on_chunk and on_verdict; in on_request use sluice.deny"},
    [SL_PACT_REPLACE] = {"replace", SL_PIPE_ON_CHUNK, "only in on_chunk"},
    [SL_PACT_HOLD] = {"hold", SL_PIPE_ON_CHUNK, "only in on_chunk"},
    [SL_PACT_ADD_STOP] = {"add_stop", SL_PIPE_ON_REQUEST, "only in on_request"},
    [SL_PACT_ADD_REDACT] = {"add_redact", SL_PIPE_ON_REQUEST, "only in on_request"},
    [SL_PACT_ANNOTATE] = {"annotate", SL_PIPE_ON_REQUEST | SL_PIPE_ON_CHUNK | SL_PIPE_ON_VERDICT | SL_PIPE_ON_END,
                          "only in a phase"},
    [SL_PACT_NARRATE] = {"narrate", SL_PIPE_ON_REQUEST | SL_PIPE_ON_CHUNK | SL_PIPE_ON_VERDICT | SL_PIPE_ON_END,
                         "only in a phase"},
};

const char *sl_pact_name(sl_pact_kind_t k) {
  return (unsigned)k < SL_PACT__COUNT ? sl__acts[k].name : "unknown";
}

/* Raises unless action k may be taken now. */
static void sl__act_allowed(lua_State *L, sl_pipeline_t *p, sl_pact_kind_t k) {
  if (p->phase >= 0 && (sl__acts[k].phases & (1u << p->phase))) return;
  luaL_error(L, "sluice.%s: not allowed in %s (%s)", sl__acts[k].name,
             p->phase >= 0 ? sl__phase_names[p->phase] : "the pipeline's loading", sl__acts[k].where);
}

/* Takes a slot for an action with text s (copied into the arena). */
static sl_pact_t *sl__act_add(lua_State *L, sl_pipeline_t *p, sl_pact_kind_t k, const char *s, size_t len) {
  sl_pipe_actions_t *a = p->acts;
  if (a->n >= SL_PIPE_MAX_ACTIONS)
    luaL_error(L, "sluice.%s: more than %d actions in one call", sl__acts[k].name, SL_PIPE_MAX_ACTIONS);
  if (len + 1 > sizeof(a->arena) - a->used)
    luaL_error(L, "sluice.%s: the call's actions hold more than %d bytes of text", sl__acts[k].name,
               SL_PIPE_ACTION_BYTES);
  sl_pact_t *act = &a->a[a->n++];
  memset(act, 0, sizeof(*act));
  act->kind = k;
  act->text = a->arena + a->used;
  act->len = len;
  if (len) memcpy(a->arena + a->used, s, len);
  a->arena[a->used + len] = '\0';
  a->used += len + 1;
  return act;
}

/* A non-negative integer argument, exactly representable. */
static uint64_t sl__check_count(lua_State *L, int idx, const char *fname, const char *what) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "sluice.%s: %s must be an integer (got %s)", fname, what, luaL_typename(L, idx));
  lua_Number x = lua_tonumber(L, idx);
  if (!(x >= 0) || x != floor(x) || x > 9007199254740992.0)
    luaL_error(L, "sluice.%s: %s must be a non-negative integer (got %f)", fname, what, x);
  return (uint64_t)x;
}

static const char *sl__check_text(lua_State *L, int idx, const char *fname, const char *what, size_t *len,
                                  int nonempty) {
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "sluice.%s: %s must be a string (got %s)", fname, what, luaL_typename(L, idx));
  const char *s = lua_tolstring(L, idx, len);
  if (nonempty && *len == 0) luaL_error(L, "sluice.%s: %s is empty", fname, what);
  return s;
}

static int sl__deny(lua_State *L) {
  sl_pipeline_t *p = sl__self(L);
  sl__act_allowed(L, p, SL_PACT_DENY);
  uint64_t status = sl__check_count(L, 1, "deny", "status");
  if (status < 400 || status > 499)
    luaL_error(L, "sluice.deny: status must be from 400 to 499 (got %d)", (int)(status > 99999 ? 99999 : status));
  size_t len;
  const char *s = sl__check_text(L, 2, "deny", "the reason", &len, 0);
  sl__act_add(L, p, SL_PACT_DENY, s, len)->status = (int)status;
  return 0;
}

static int sl__cancel(lua_State *L) {
  sl_pipeline_t *p = sl__self(L);
  sl__act_allowed(L, p, SL_PACT_CANCEL);
  size_t len;
  const char *s = sl__check_text(L, 1, "cancel", "the reason", &len, 0);
  sl__act_add(L, p, SL_PACT_CANCEL, s, len);
  return 0;
}

static int sl__replace(lua_State *L) {
  sl_pipeline_t *p = sl__self(L);
  sl__act_allowed(L, p, SL_PACT_REPLACE);
  uint64_t start = sl__check_count(L, 1, "replace", "start");
  uint64_t stop = sl__check_count(L, 2, "replace", "stop");
  size_t len;
  const char *s = sl__check_text(L, 3, "replace", "the text", &len, 0);
  if (start > stop || start < p->chunk_lo || stop > p->chunk_hi) {
    char msg[200];
    snprintf(msg, sizeof(msg),
             "sluice.replace: range [%llu, %llu) is not within the bytes not yet released [%llu, %llu)",
             (unsigned long long)start, (unsigned long long)stop, (unsigned long long)p->chunk_lo,
             (unsigned long long)p->chunk_hi);
    luaL_error(L, "%s", msg);
  }
  sl_pact_t *a = sl__act_add(L, p, SL_PACT_REPLACE, s, len);
  a->start = start;
  a->stop = stop;
  return 0;
}

static int sl__hold(lua_State *L) {
  sl_pipeline_t *p = sl__self(L);
  sl__act_allowed(L, p, SL_PACT_HOLD);
  uint64_t n = sl__check_count(L, 1, "hold", "n");
  /* The batch's bytes and what the last call held: none were released. */
  if (n > p->chunk_hi - p->chunk_lo)
    luaL_error(L, "sluice.hold: n (%d) is more than the %d bytes not yet released",
               (int)(n > 0x7fffffff ? 0x7fffffff : n), (int)(p->chunk_hi - p->chunk_lo));
  sl__act_add(L, p, SL_PACT_HOLD, "", 0)->start = n;
  p->hold = (int64_t)n;
  return 0;
}

static int sl__text_action(lua_State *L, sl_pact_kind_t k, int nonempty) {
  sl_pipeline_t *p = sl__self(L);
  sl__act_allowed(L, p, k);
  size_t len;
  const char *s = sl__check_text(L, 1, sl__acts[k].name, "the text", &len, nonempty);
  sl__act_add(L, p, k, s, len);
  return 0;
}

static int sl__add_stop(lua_State *L) { return sl__text_action(L, SL_PACT_ADD_STOP, 1); }
static int sl__add_redact(lua_State *L) { return sl__text_action(L, SL_PACT_ADD_REDACT, 1); }
static int sl__annotate(lua_State *L) { return sl__text_action(L, SL_PACT_ANNOTATE, 0); }
static int sl__narrate(lua_State *L) { return sl__text_action(L, SL_PACT_NARRATE, 0); }

static int sl__now_ms(lua_State *L) {
  sl_pipeline_t *p = sl__self(L);
  lua_pushnumber(L, p->lim.dict ? (lua_Number)sl_ttldict_now(p->lim.dict) : (lua_Number)(uv_hrtime() / 1000000));
  return 1;
}

/* ---- sluice.dict, under "p:<tenant>:" ---- */

/* Pushes the namespaced key of argument 1 and returns it. */
static const char *sl__dict_key(lua_State *L, sl_pipeline_t *p, const char *fname, size_t *klen) {
  int t = lua_type(L, 1);
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    luaL_error(L, "sluice.dict.%s: the key must be a string (got %s)", fname, luaL_typename(L, 1));
  size_t l;
  lua_tolstring(L, 1, &l);
  if (l == 0) luaL_error(L, "sluice.dict.%s: the key is empty", fname);
  lua_pushlstring(L, p->ns, p->nslen);
  lua_pushvalue(L, 1);
  lua_concat(L, 2);
  return lua_tolstring(L, -1, klen);
}

static int64_t sl__dict_ttl(lua_State *L, int idx, const char *fname) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_type(L, idx) != LUA_TNUMBER || !(lua_tonumber(L, idx) >= 0))
    luaL_error(L, "sluice.dict.%s: ttl_ms must be a non-negative number (got %s)", fname, luaL_typename(L, idx));
  return (int64_t)lua_tonumber(L, idx);
}

static int sl__dict_fail(lua_State *L, int rc) {
  lua_pushnil(L);
  switch (rc) {
    case SL_ENOTFOUND: lua_pushliteral(L, "not found"); break;
    case SL_EPARSE: lua_pushliteral(L, "not a number"); break;
    case SL_EINVAL: lua_pushliteral(L, "integer overflow"); break;
    case SL_ETOOBIG: lua_pushliteral(L, "dictionary full"); break;
    default: lua_pushstring(L, sl_strerror(rc)); break;
  }
  return 2;
}

static int sl__dict_get(lua_State *L) {
  sl_pipeline_t *p = sl__self(L);
  size_t klen, vlen;
  const char *k = sl__dict_key(L, p, "get", &klen);
  char buf[1024];
  int rc = sl_ttldict_get(p->lim.dict, k, klen, buf, sizeof(buf), &vlen);
  if (rc == 0) {
    lua_pushlstring(L, buf, vlen);
    return 1;
  }
  if (rc == SL_ETOOBIG) {
    /* A scratch block the collector frees; it never leaves this function. */
    char *big = lua_newuserdata(L, vlen);
    rc = sl_ttldict_get(p->lim.dict, k, klen, big, vlen, &vlen);
    if (rc == 0) {
      lua_pushlstring(L, big, vlen);
      return 1;
    }
  }
  return sl__dict_fail(L, rc);
}

static int sl__dict_set(lua_State *L) {
  sl_pipeline_t *p = sl__self(L);
  int t = lua_type(L, 2);
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    luaL_error(L, "sluice.dict.set: the value must be a string or a number (got %s)", luaL_typename(L, 2));
  int64_t ttl = sl__dict_ttl(L, 3, "set");
  size_t klen, vlen;
  const char *k = sl__dict_key(L, p, "set", &klen);
  const char *v = lua_tolstring(L, 2, &vlen);
  int rc = sl_ttldict_set(p->lim.dict, k, klen, v, vlen, ttl);
  if (rc != 0) return sl__dict_fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int64_t sl__check_int(lua_State *L, int idx, const char *what) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "sluice.dict.incr: %s must be an integer (got %s)", what, luaL_typename(L, idx));
  lua_Number x = lua_tonumber(L, idx);
  if (x != floor(x) || fabs(x) > 9007199254740992.0)
    luaL_error(L, "sluice.dict.incr: %s must be an integer (got %f)", what, x);
  return (int64_t)x;
}

static int sl__dict_incr(lua_State *L) {
  sl_pipeline_t *p = sl__self(L);
  int64_t by = sl__check_int(L, 2, "by");
  int64_t init = 0;
  int has_init = !lua_isnoneornil(L, 3);
  if (has_init) init = sl__check_int(L, 3, "init");
  int64_t ttl = sl__dict_ttl(L, 4, "incr");
  size_t klen;
  const char *k = sl__dict_key(L, p, "incr", &klen);
  int64_t out;
  int rc = sl_ttldict_incr(p->lim.dict, k, klen, by, has_init ? &init : NULL, ttl, &out);
  if (rc != 0) return sl__dict_fail(L, rc);
  lua_pushnumber(L, (lua_Number)out);
  return 1;
}

static int sl__dict_delete(lua_State *L) {
  sl_pipeline_t *p = sl__self(L);
  size_t klen;
  const char *k = sl__dict_key(L, p, "delete", &klen);
  int rc = sl_ttldict_delete(p->lim.dict, k, klen);
  if (rc != 0) return sl__dict_fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- JSON <-> Lua ---- */

/* Pushes v as a Lua value: objects and arrays as tables (arrays 1-based,
 * with the array metatable so an empty one stays an array), null as
 * sluice.null. */
static void sl__push_json(lua_State *L, sl_pipeline_t *p, const cJSON *v, int depth, const char *who) {
  if (depth > SL__JSON_DEPTH) luaL_error(L, "%s: JSON nested deeper than %d levels", who, SL__JSON_DEPTH);
  luaL_checkstack(L, 4, "JSON nested too deep");
  if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
    int arr = cJSON_IsArray(v);
    int n = cJSON_GetArraySize(v);
    lua_createtable(L, arr ? n : 0, arr ? 0 : n);
    int i = 1;
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
      sl__push_json(L, p, it, depth + 1, who);
      if (arr)
        lua_rawseti(L, -2, i++);
      else
        lua_setfield(L, -2, it->string);
    }
    if (arr) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, p->array_mt_ref);
      lua_setmetatable(L, -2);
    }
  } else if (cJSON_IsString(v)) {
    lua_pushstring(L, v->valuestring);
  } else if (cJSON_IsNumber(v)) {
    lua_pushnumber(L, v->valuedouble);
  } else if (cJSON_IsBool(v)) {
    lua_pushboolean(L, cJSON_IsTrue(v));
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->null_ref);
  }
}

/* The encoder's walk: where it is (for messages) and what it has made. */
typedef struct {
  char path[256];
  size_t bytes;
  const char *who;
} sl__enc_t;

static void sl__enc_fail(lua_State *L, sl__enc_t *e, const char *what) {
  luaL_error(L, "%s: %s: %s", e->who, e->path, what);
}

/* Appends ".key" or "[i]" to the path; returns the old length to restore. */
static size_t sl__path_push(sl__enc_t *e, const char *key, size_t klen, lua_Number idx) {
  size_t old = strlen(e->path);
  if (key)
    snprintf(e->path + old, sizeof(e->path) - old, ".%.*s", (int)(klen > 60 ? 60 : klen), key);
  else
    snprintf(e->path + old, sizeof(e->path) - old, "[%.0f]", idx);
  return old;
}

/* Hands node to its place at once (so a later error frees it with the
 * tree), or frees it and raises when cJSON cannot take it. */
static void sl__enc_attach(lua_State *L, sl__enc_t *e, cJSON *node, cJSON *parent, const char *key, cJSON **root) {
  if (node == NULL) sl__enc_fail(L, e, "out of memory building JSON");
  int ok = 1;
  if (root)
    *root = node;
  else if (key)
    ok = cJSON_AddItemToObject(parent, key, node);
  else
    ok = cJSON_AddItemToArray(parent, node);
  if (!ok) {
    cJSON_Delete(node);
    sl__enc_fail(L, e, "out of memory building JSON");
  }
}

static void sl__enc_grow(lua_State *L, sl__enc_t *e, size_t n) {
  e->bytes += n;
  if (e->bytes > SL__JSON_MAX) {
    char msg[80];
    snprintf(msg, sizeof(msg), "the JSON would be larger than %u bytes", SL__JSON_MAX);
    sl__enc_fail(L, e, msg);
  }
}

/* Encodes the value at idx (absolute) into a node placed under parent
 * (as key, or appended when key is NULL) or into *root.
 * A table is an array when its keys are exactly 1..n (n > 0), or when it
 * is empty and has the array metatable; any other table is an object and
 * must have string keys only. */
static void sl__encode(lua_State *L, sl_pipeline_t *p, int idx, sl__enc_t *e, int depth, cJSON *parent,
                       const char *key, cJSON **root) {
  if (depth > SL__JSON_DEPTH) {
    char msg[80];
    snprintf(msg, sizeof(msg), "nested deeper than %d levels (a table that holds itself?)", SL__JSON_DEPTH);
    sl__enc_fail(L, e, msg);
  }
  luaL_checkstack(L, 4, "JSON nested too deep");
  sl__enc_grow(L, e, 8);
  int t = lua_type(L, idx);
  if (t == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (memchr(s, '\0', n)) sl__enc_fail(L, e, "a string with a NUL byte cannot be JSON here");
    sl__enc_grow(L, e, n);
    sl__enc_attach(L, e, cJSON_CreateString(s), parent, key, root);
    return;
  }
  if (t == LUA_TNUMBER) {
    lua_Number x = lua_tonumber(L, idx);
    if (!isfinite(x)) sl__enc_fail(L, e, "a number that is not finite cannot be JSON");
    sl__enc_attach(L, e, cJSON_CreateNumber(x), parent, key, root);
    return;
  }
  if (t == LUA_TBOOLEAN) {
    sl__enc_attach(L, e, cJSON_CreateBool(lua_toboolean(L, idx)), parent, key, root);
    return;
  }
  if (t != LUA_TTABLE) {
    char msg[80];
    snprintf(msg, sizeof(msg), "a %s value cannot be JSON", lua_typename(L, t));
    sl__enc_fail(L, e, msg);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->null_ref);
  int is_null = lua_rawequal(L, -1, idx);
  lua_pop(L, 1);
  if (is_null) {
    sl__enc_attach(L, e, cJSON_CreateNull(), parent, key, root);
    return;
  }
  /* Which kind of table: count the keys, note whether all are 1..n. */
  size_t count = 0;
  int all_index = 1;
  lua_Number max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    count++;
    if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_Number k = lua_tonumber(L, -1);
      if (k >= 1 && k == floor(k)) {
        if (k > max) max = k;
      } else {
        all_index = 0;
      }
    } else {
      all_index = 0;
    }
  }
  int array = count > 0 && all_index && max == (lua_Number)count;
  if (count == 0 && lua_getmetatable(L, idx)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->array_mt_ref);
    array = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  cJSON *node = array ? cJSON_CreateArray() : cJSON_CreateObject();
  sl__enc_attach(L, e, node, parent, key, root);
  if (array) {
    for (size_t i = 1; i <= count; i++) {
      lua_rawgeti(L, idx, (int)i);
      size_t old = sl__path_push(e, NULL, 0, (lua_Number)i);
      sl__encode(L, p, lua_gettop(L), e, depth + 1, node, NULL, NULL);
      e->path[old] = '\0';
      lua_pop(L, 1);
    }
    return;
  }
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      char msg[160];
      if (lua_type(L, -2) == LUA_TNUMBER)
        snprintf(msg, sizeof(msg), "key %g in a table that is not an array (keys 1..n); JSON objects have string keys",
                 (double)lua_tonumber(L, -2));
      else
        snprintf(msg, sizeof(msg), "a key of type %s; JSON objects have string keys", luaL_typename(L, -2));
      sl__enc_fail(L, e, msg);
    }
    size_t klen;
    const char *k = lua_tolstring(L, -2, &klen);
    if (memchr(k, '\0', klen)) sl__enc_fail(L, e, "a key with a NUL byte cannot be JSON here");
    sl__enc_grow(L, e, klen);
    size_t old = sl__path_push(e, k, klen, 0);
    sl__encode(L, p, lua_gettop(L), e, depth + 1, node, k, NULL);
    e->path[old] = '\0';
    lua_pop(L, 1);
  }
}

static int sl__json_encode(lua_State *L) {
  sl_pipeline_t *p = sl__self(L);
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  cJSON_Delete(p->scratch);
  p->scratch = NULL;
  cJSON_free(p->scratch_text);
  p->scratch_text = NULL;
  sl__enc_t e = {"value", 0, "sluice.json_encode"};
  sl__encode(L, p, 1, &e, 0, NULL, NULL, &p->scratch);
  p->scratch_text = cJSON_PrintUnformatted(p->scratch);
  if (p->scratch_text == NULL) luaL_error(L, "sluice.json_encode: out of memory");
  size_t n = strlen(p->scratch_text);
  if (n > SL_PIPE_STRING_MAX)
    luaL_error(L, "sluice.json_encode: the text is longer than the limit (%d bytes)", (int)SL_PIPE_STRING_MAX);
  lua_pushlstring(L, p->scratch_text, n);
  cJSON_Delete(p->scratch);
  p->scratch = NULL;
  cJSON_free(p->scratch_text);
  p->scratch_text = NULL;
  return 1;
}

static int sl__json_decode(lua_State *L) {
  sl_pipeline_t *p = sl__self(L);
  size_t n;
  if (lua_type(L, 1) != LUA_TSTRING)
    luaL_error(L, "sluice.json_decode: the text must be a string (got %s)", luaL_typename(L, 1));
  const char *s = lua_tolstring(L, 1, &n);
  cJSON_Delete(p->scratch);
  p->scratch = cJSON_ParseWithLength(s, n);
  if (p->scratch == NULL) {
    const char *at = cJSON_GetErrorPtr();
    lua_pushnil(L);
    if (at && at >= s && at <= s + n)
      lua_pushfstring(L, "invalid JSON at byte %d", (int)(at - s) + 1);
    else
      lua_pushliteral(L, "invalid JSON");
    return 2;
  }
  sl__push_json(L, p, p->scratch, 0, "sluice.json_decode");
  cJSON_Delete(p->scratch);
  p->scratch = NULL;
  return 1;
}

/* ---- Building the sandbox ---- */

/* pcall, xpcall, coroutine.resume and coroutine.wrap, in Lua so that a
 * coroutine may still yield through them.  After a failure each asks
 * killed() and raises the error again when the call was stopped. */
static const char sl__wrappers[] =
    "local pcall_, xpcall_, create_, resume_, killed, error_ = ...\n"
    "local function pass(ok, ...)\n"
    "  if not ok and killed() then error_((...), 0) end\n"
    "  return ok, ...\n"
    "end\n"
    "local function unwrap(ok, ...)\n"
    "  if ok then return ... end\n"
    "  error_((...), 0)\n"
    "end\n"
    "local function pcall(f, ...) return pass(pcall_(f, ...)) end\n"
    "local function xpcall(f, h, ...) return pass(xpcall_(f, h, ...)) end\n"
    "local function resume(co, ...) return pass(resume_(co, ...)) end\n"
    "local function wrap(f)\n"
    "  local co = create_(f)\n"
    "  return function(...) return unwrap(resume_(co, ...)) end\n"
    "end\n"
    "return pcall, xpcall, resume, wrap\n";

/* Copies the named fields of the table at src into the table on top. */
static void sl__copy(lua_State *L, int src, const char *const *names) {
  for (; *names; names++) {
    lua_getfield(L, src, *names);
    lua_setfield(L, -2, *names);
  }
}

static void sl__closure(lua_State *L, sl_pipeline_t *p, lua_CFunction fn, const char *name) {
  lua_pushlightuserdata(L, p);
  lua_pushcclosure(L, fn, 1);
  lua_setfield(L, -2, name);
}

/* Builds the environment (left in the registry as env_ref).  Runs in
 * protected mode with the standard libraries open. */
static int sl__build_env(lua_State *L) {
  sl_pipeline_t *p = lua_touserdata(L, 1);
  lua_settop(L, 0);
  lua_newtable(L); /* 1: env */
  int env = 1;
  static const char *const base[] = {"assert", "error", "ipairs", "next", "pairs", "rawequal", "rawget", "rawset",
                                     "select", "setmetatable", "getmetatable", "tonumber", "tostring", "type",
                                     "unpack", NULL};
  lua_pushvalue(L, LUA_GLOBALSINDEX);
  lua_pushvalue(L, env);
  sl__copy(L, 2, base);
  lua_pop(L, 2);

  /* string: LuaJIT's safe functions, our matcher, capped rep and format. */
  lua_getglobal(L, "string"); /* 2 */
  lua_newtable(L);            /* 3: the sandbox's string table */
  static const char *const str[] = {"byte", "char", "len", "lower", "reverse", "sub", "upper", NULL};
  sl__copy(L, 2, str);
  sl_lpat_push_lib(L, &p->pat);
  static const char *const pat[] = {"find", "match", "gmatch", "gsub", NULL};
  lua_pushvalue(L, 3);
  sl__copy(L, 4, pat);
  lua_pop(L, 2);
  lua_getfield(L, 2, "rep");
  lua_pushcclosure(L, sl__rep, 1);
  lua_setfield(L, 3, "rep");
  lua_getfield(L, 2, "format");
  lua_pushcclosure(L, sl__format, 1);
  lua_setfield(L, 3, "format");
  lua_pushvalue(L, 3);
  lua_setfield(L, env, "string");
  /* Methods on strings reach this table, not LuaJIT's (so ("").dump is
   * nil); the metatable itself is hidden from getmetatable(""). */
  lua_pushliteral(L, "");
  lua_getmetatable(L, -1);
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "the string metatable is not available to pipelines");
  lua_setfield(L, -2, "__metatable");
  lua_settop(L, 1);

  lua_getglobal(L, "table");
  lua_newtable(L);
  static const char *const tab[] = {"concat", "insert", "remove", "sort", "maxn", NULL};
  sl__copy(L, 2, tab);
  lua_setfield(L, env, "table");
  lua_settop(L, 1);

  /* math: all of it but randomseed; bit: all of it. */
  static const char *const libs[] = {"math", "bit", NULL};
  for (int i = 0; libs[i]; i++) {
    lua_getglobal(L, libs[i]);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, 2) != 0) {
      if (lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "randomseed") == 0) {
        lua_pop(L, 1);
        continue;
      }
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, 3);
    }
    lua_setfield(L, env, libs[i]);
    lua_settop(L, 1);
  }

  /* The wrappers, with an empty environment of their own. */
  if (luaL_loadbuffer(L, sl__wrappers, sizeof(sl__wrappers) - 1, "=sluice.sandbox") != 0) lua_error(L);
  lua_newtable(L);
  lua_setfenv(L, -2);
  lua_getglobal(L, "pcall");
  lua_getglobal(L, "xpcall");
  lua_getglobal(L, "coroutine");
  lua_getfield(L, -1, "create");
  lua_getfield(L, -2, "resume");
  lua_remove(L, -3);
  lua_pushlightuserdata(L, p);
  lua_pushcclosure(L, sl__killed, 1);
  lua_getglobal(L, "error");
  lua_call(L, 6, 4); /* 2 pcall, 3 xpcall, 4 resume, 5 wrap */
  lua_pushvalue(L, 2);
  lua_setfield(L, env, "pcall");
  lua_pushvalue(L, 3);
  lua_setfield(L, env, "xpcall");
  lua_getglobal(L, "coroutine"); /* 6 */
  lua_newtable(L);               /* 7 */
  static const char *const co[] = {"create", "running", "status", "yield", NULL};
  sl__copy(L, 6, co);
  lua_pushvalue(L, 4);
  lua_setfield(L, 7, "resume");
  lua_pushvalue(L, 5);
  lua_setfield(L, 7, "wrap");
  lua_setfield(L, env, "coroutine");
  lua_settop(L, 1);

  /* sluice: the actions and helpers; null and the array metatable. */
  lua_newtable(L); /* 2 */
  sl__closure(L, p, sl__deny, "deny");
  sl__closure(L, p, sl__cancel, "cancel");
  sl__closure(L, p, sl__replace, "replace");
  sl__closure(L, p, sl__hold, "hold");
  sl__closure(L, p, sl__add_stop, "add_stop");
  sl__closure(L, p, sl__add_redact, "add_redact");
  sl__closure(L, p, sl__annotate, "annotate");
  sl__closure(L, p, sl__narrate, "narrate");
  sl__closure(L, p, sl__now_ms, "now_ms");
  sl__closure(L, p, sl__json_encode, "json_encode");
  sl__closure(L, p, sl__json_decode, "json_decode");
  if (p->lim.dict) {
    lua_newtable(L);
    sl__closure(L, p, sl__dict_get, "get");
    sl__closure(L, p, sl__dict_set, "set");
    sl__closure(L, p, sl__dict_incr, "incr");
    sl__closure(L, p, sl__dict_delete, "delete");
    lua_setfield(L, 2, "dict");
  }
  lua_newtable(L); /* sluice.null: one table, read-only, that prints as "null" */
  lua_createtable(L, 0, 3);
  lua_pushcfunction(L, sl__readonly);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, sl__null_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "sluice.null");
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  p->null_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setfield(L, 2, "null");
  lua_newtable(L); /* sluice.array_mt: marks a table as a JSON array (for an empty one) */
  lua_pushvalue(L, -1);
  p->array_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setfield(L, 2, "array_mt");
  lua_setfield(L, env, "sluice");

  lua_pushvalue(L, env);
  lua_setfield(L, env, "_G");
  lua_newtable(L);
  p->held_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  p->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* ---- The runner: every operation on the state, in protected mode ---- */

enum { SL__OP_LOAD, SL__OP_BEGIN, SL__OP_FINISH, SL__OP_PHASE };

typedef struct {
  int op;
  sl_pipeline_t *p;
  /* load */
  const char *buf;
  size_t len;
  /* begin / finish / phases */
  int handle;
  const char *request_id, *model;
  int phase;
  cJSON *req;
  int ch;
  int final;                 /* on_chunk: the channel's text ended with this batch */
  uint64_t offset;
  const char *text;
  size_t n;
  const char *kind, *name, *action, *detail;
  const sl_pipe_summary_t *sum;
} sl__op_t;

static void sl__setfield_str(lua_State *L, const char *k, const char *v) {
  if (v == NULL) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

/* Checks the table the file returned (at idx) and keeps its phases. */
static void sl__bind(lua_State *L, sl_pipeline_t *p, int idx) {
  if (!lua_istable(L, idx))
    luaL_error(L, "%s: the pipeline must return a table of phases (it returned %s)", p->file,
               luaL_typename(L, idx));
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "%s: the returned table has a key of type %s (only phase names, name and version)", p->file,
                 luaL_typename(L, -2));
    const char *k = lua_tostring(L, -2);
    int ph = -1;
    for (int i = 0; i < SL__NPHASES; i++)
      if (strcmp(k, sl__phase_names[i]) == 0) ph = i;
    if (ph >= 0) {
      if (!lua_isfunction(L, -1))
        luaL_error(L, "%s: %s must be a function (it is a %s)", p->file, k, luaL_typename(L, -1));
      lua_pushvalue(L, -1);
      p->fn_ref[ph] = luaL_ref(L, LUA_REGISTRYINDEX);
      p->phases |= 1u << ph;
    } else if (strcmp(k, "name") == 0 || strcmp(k, "version") == 0) {
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: %s must be a string (it is a %s)", p->file, k, luaL_typename(L, -1));
    } else {
      luaL_error(L,
                 "%s: unknown key '%s' in the returned table (a pipeline may define on_request, on_chunk, "
                 "on_verdict, on_end, name and version)",
                 p->file, k);
    }
    lua_pop(L, 1);
  }
}

/* Runs the phase on top of the stack's arguments and handles its answer. */
static int sl__run_phase(lua_State *L, sl__op_t *op) {
  sl_pipeline_t *p = op->p;
  lua_rawgeti(L, LUA_REGISTRYINDEX, op->handle); /* 1: ctx */
  if (!lua_istable(L, 1)) luaL_error(L, "%s: no stream with handle %d", p->file, op->handle);
  /* 2: the phase's second argument */
  switch (op->phase) {
    case SL__REQUEST:
      sl__push_json(L, p, op->req, 0, "on_request: the request");
      break;
    case SL__CHUNK: {
      lua_pushstring(L, op->ch ? "reasoning" : "content");
      lua_setfield(L, 1, "channel");
      lua_pushnumber(L, (lua_Number)op->offset);
      lua_setfield(L, 1, "offset");
      lua_pushboolean(L, op->final);
      lua_setfield(L, 1, "final");
      /* What the last call on this channel held is still unreleased. */
      lua_rawgeti(L, LUA_REGISTRYINDEX, p->held_ref);
      lua_rawgeti(L, -1, op->handle * 2 + op->ch);
      uint64_t held = (uint64_t)lua_tonumber(L, -1);
      lua_pop(L, 1);
      lua_pushnil(L);
      lua_rawseti(L, -2, op->handle * 2 + op->ch);
      lua_pop(L, 1);
      p->chunk_lo = op->offset >= held ? op->offset - held : 0;
      p->chunk_hi = op->offset + op->n;
      p->chunk_len = op->n;
      p->hold = -1;
      lua_pushlstring(L, op->text, op->n);
      break;
    }
    case SL__VERDICT:
      lua_createtable(L, 0, 4);
      sl__setfield_str(L, "kind", op->kind);
      sl__setfield_str(L, "name", op->name);
      sl__setfield_str(L, "action", op->action);
      sl__setfield_str(L, "detail", op->detail);
      break;
    default:
      lua_createtable(L, 0, 5);
      sl__setfield_str(L, "reason", op->sum->reason);
      lua_pushnumber(L, (lua_Number)op->sum->prompt_tokens);
      lua_setfield(L, -2, "prompt_tokens");
      lua_pushnumber(L, (lua_Number)op->sum->completion_tokens);
      lua_setfield(L, -2, "completion_tokens");
      lua_pushnumber(L, op->sum->duration_ms);
      lua_setfield(L, -2, "duration_ms");
      lua_pushboolean(L, op->sum->cut);
      lua_setfield(L, -2, "cut");
      break;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->fn_ref[op->phase]);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 1); /* 3: what it returned */
  if (op->phase == SL__REQUEST) {
    int t = lua_type(L, -1);
    if (t != LUA_TNIL && t != LUA_TTABLE)
      luaL_error(L, "%s: on_request returned a %s (return the request table, or nothing)", p->file,
                 lua_typename(L, t));
    int top = t == LUA_TTABLE ? 3 : 2;
    sl__enc_t e = {"req", 0, "on_request: the request"};
    sl__encode(L, p, top, &e, 0, NULL, NULL, &p->json_out);
  } else if (op->phase == SL__CHUNK && p->hold > 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->held_ref);
    lua_pushnumber(L, (lua_Number)p->hold);
    lua_rawseti(L, -2, op->handle * 2 + op->ch);
  }
  return 0;
}

static int sl__runner(lua_State *L) {
  sl__op_t *op = lua_touserdata(L, 1);
  sl_pipeline_t *p = op->p;
  lua_settop(L, 0);
  switch (op->op) {
    case SL__OP_LOAD: {
      char name[600];
      snprintf(name, sizeof(name), "@%s", p->file);
      if (luaL_loadbufferx(L, op->buf, op->len, name, "t") != 0) lua_error(L);
      lua_rawgeti(L, LUA_REGISTRYINDEX, p->env_ref);
      lua_setfenv(L, -2);
      lua_call(L, 0, 1);
      sl__bind(L, p, 1);
      return 0;
    }
    case SL__OP_BEGIN:
      lua_createtable(L, 0, 5);
      sl__setfield_str(L, "id", op->request_id);
      sl__setfield_str(L, "tenant", p->tenant);
      sl__setfield_str(L, "model", op->model);
      op->handle = luaL_ref(L, LUA_REGISTRYINDEX);
      return 0;
    case SL__OP_FINISH:
      lua_rawgeti(L, LUA_REGISTRYINDEX, p->held_ref);
      lua_pushnil(L);
      lua_rawseti(L, -2, op->handle * 2);
      lua_pushnil(L);
      lua_rawseti(L, -2, op->handle * 2 + 1);
      luaL_unref(L, LUA_REGISTRYINDEX, op->handle);
      return 0;
    default:
      return sl__run_phase(L, op);
  }
}

/* Runs op through the runner: budgeted (call != NULL) or plain.  Returns
 * 0 or SL_EINVAL / SL_ENOMEM / SL_ETIMEDOUT with the reason in err. */
static int sl__run(sl_pipeline_t *p, sl__op_t *op, const sl_budget_call_t *call, char *err, size_t errlen) {
  lua_State *L = p->L;
  p->mem.refused = 0;
  p->pattern_tripped = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->runner_ref);
  lua_pushlightuserdata(L, op);
  int rc = 0;
  if (call) {
    sl_budget_status_t st = sl_budget_pcall(L, 1, 0, call, err, errlen);
    if (st == SL_BUDGET_EXCEEDED)
      rc = SL_ETIMEDOUT;
    else if (st != SL_BUDGET_OK)
      rc = p->pattern_tripped ? SL_ETIMEDOUT : p->mem.refused ? SL_ENOMEM : SL_EINVAL;
  } else if (lua_pcall(L, 1, 0, 0) != 0) {
    const char *msg = lua_tostring(L, -1);
    snprintf(err, errlen, "%s", msg ? msg : "(error object is not a string)");
    lua_pop(L, 1);
    rc = p->mem.refused ? SL_ENOMEM : SL_EINVAL;
  }
  if (rc == SL_ENOMEM) {
    size_t used = strlen(err);
    snprintf(err + used, errlen > used ? errlen - used : 0, " (the pipeline's memory cap is %zu bytes)",
             p->mem.limit);
  }
  if (rc != 0) lua_gc(L, LUA_GCCOLLECT, 0); /* what the failed call built is garbage now */
  lua_settop(L, 0);
  return rc;
}

/* ---- The API ---- */

static int sl__tenant_ok(const char *t) {
  size_t n = strlen(t);
  if (n == 0 || n > SL__TENANT_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = t[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
          c == '.'))
      return 0;
  }
  return 1;
}

/* Reads the file whole; refuses a precompiled chunk by its first byte. */
static int sl__read_file(const char *path, char **out, size_t *len, char *err, size_t errlen) {
  int rc = sl_read_file(path, SL__FILE_MAX, out, len);
  if (rc == SL_ETOOBIG) {
    snprintf(err, errlen, "%s: the pipeline file is larger than %u bytes", path, SL__FILE_MAX);
    return SL_EINVAL;
  }
  if (rc < 0) {
    snprintf(err, errlen, "%s: cannot open the pipeline file: %s", path, strerror(errno));
    return SL_EINVAL;
  }
  if (*len > 0 && (*out)[0] == '\033') {
    snprintf(err, errlen, "%s: a precompiled (bytecode) chunk; pipelines are loaded from Lua source text only", path);
    sl_free(*out);
    *out = NULL;
    return SL_EINVAL;
  }
  return 0;
}

static int sl__setup_cfn(lua_State *L) {
  sl_pipeline_t *p = lua_touserdata(L, 1);
  luaL_openlibs(L);
  lua_pushcfunction(L, sl__runner);
  p->runner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

int sl_pipeline_new(const char *tenant, const char *path, const sl_pipeline_limits_t *lim, sl_pipeline_t **out,
                    char *err, size_t errlen) {
  *out = NULL;
  if (tenant == NULL || !sl__tenant_ok(tenant)) {
    snprintf(err, errlen, "tenant name '%s' is not 1 to %d of A-Z a-z 0-9 _ - .", tenant ? tenant : "(null)",
             SL__TENANT_MAX);
    return SL_EINVAL;
  }
  char *buf;
  size_t len;
  int rc = sl__read_file(path, &buf, &len, err, errlen);
  if (rc != 0) return rc;
  sl_pipeline_t *p = sl_calloc(1, sizeof(*p));
  if (lim) p->lim = *lim;
  if (!p->lim.mem_limit) p->lim.mem_limit = SL_PIPE_MEM_DEFAULT;
  if (!p->lim.budget) p->lim.budget = SL_PIPE_BUDGET_DEFAULT;
  if (!p->lim.load_budget) p->lim.load_budget = SL_PIPE_LOAD_BUDGET_DEFAULT;
  p->mem.limit = p->lim.mem_limit;
  p->pat.subject_max = SL_PIPE_SUBJECT_MAX;
  p->pat.max_steps = SL_PIPE_MATCH_STEPS;
  p->pat.result_max = SL_PIPE_STRING_MAX;
  p->pat.tripped = &p->pattern_tripped;
  snprintf(p->tenant, sizeof(p->tenant), "%s", tenant);
  p->nslen = (size_t)snprintf(p->ns, sizeof(p->ns), "p:%s:", tenant);
  p->file = sl_strndup(path, strlen(path));
  p->phase = -1;
  for (int i = 0; i < SL__NPHASES; i++) p->fn_ref[i] = LUA_NOREF;
  p->L = lua_newstate(sl_lua_alloc, &p->mem);
  if (p->L == NULL) {
    snprintf(err, errlen, "%s: cannot create a Lua state (out of memory)", path);
    rc = SL_ENOMEM;
  }
  if (rc == 0) {
    int r = lua_cpcall(p->L, sl__setup_cfn, p);
    if (r != 0) {
      snprintf(err, errlen, "%s: cannot set up the Lua state: %s", path, lua_tostring(p->L, -1));
      rc = r == LUA_ERRMEM ? SL_ENOMEM : SL_EINVAL;
    }
  }
  if (rc == 0) rc = sl_budget_fence_state(p->L, err, errlen);
  if (rc == 0) {
    int r = lua_cpcall(p->L, sl__build_env, p);
    if (r != 0) {
      snprintf(err, errlen, "%s: cannot build the sandbox: %s", path, lua_tostring(p->L, -1));
      rc = r == LUA_ERRMEM ? SL_ENOMEM : SL_EINVAL;
    }
    lua_settop(p->L, 0);
  }
  if (rc == 0) {
    sl__op_t op = {.op = SL__OP_LOAD, .p = p, .buf = buf, .len = len};
    sl_budget_call_t call = {"load", p->file, NULL, p->lim.load_budget, p->lim.counters};
    rc = sl__run(p, &op, &call, err, errlen);
  }
  sl_free(buf);
  if (rc != 0) {
    sl_pipeline_free(p);
    return rc;
  }
  *out = p;
  return 0;
}

void sl_pipeline_free(sl_pipeline_t *p) {
  if (p == NULL) return;
  if (p->L) lua_close(p->L);
  cJSON_Delete(p->json_out);
  cJSON_Delete(p->scratch);
  cJSON_free(p->scratch_text);
  sl_free(p->file);
  sl_free(p);
}

unsigned sl_pipeline_phases(const sl_pipeline_t *p) { return p->phases; }

const char *sl_pipeline_file(const sl_pipeline_t *p) { return p->file; }

void sl_pipeline_memory(const sl_pipeline_t *p, size_t *bytes, size_t *peak) {
  if (bytes) *bytes = p->mem.bytes;
  if (peak) *peak = p->mem.peak;
}

int sl_pipeline_begin(sl_pipeline_t *p, const char *request_id, const char *model) {
  sl__op_t op = {.op = SL__OP_BEGIN, .p = p, .request_id = request_id, .model = model};
  char err[256];
  int rc = sl__run(p, &op, NULL, err, sizeof(err));
  if (rc != 0) return SL_ENOMEM;
  return op.handle;
}

void sl_pipeline_finish(sl_pipeline_t *p, int handle) {
  if (p == NULL || handle <= 0) return;
  sl__op_t op = {.op = SL__OP_FINISH, .p = p, .handle = handle};
  char err[256];
  sl__run(p, &op, NULL, err, sizeof(err));
}

/* The common part of the phase calls: actions emptied, the call run under
 * the budget, the scratch freed; on failure acts is left empty. */
static int sl__phase(sl_pipeline_t *p, sl__op_t *op, const char *request_id, sl_pipe_actions_t *acts, char *err,
                     size_t errlen) {
  acts->n = 0;
  acts->used = 0;
  if (err && errlen) err[0] = '\0';
  if (!(p->phases & (1u << op->phase))) return 0;
  if (op->handle <= 0) {
    snprintf(err, errlen, "%s: %s called without a stream (handle %d)", p->file, sl__phase_names[op->phase],
             op->handle);
    return SL_EINVAL;
  }
  p->phase = op->phase;
  p->acts = acts;
  sl_budget_call_t call = {sl__phase_names[op->phase], p->file, request_id, p->lim.budget, p->lim.counters};
  int rc = sl__run(p, op, &call, err, errlen);
  p->phase = -1;
  p->acts = NULL;
  cJSON_Delete(p->scratch);
  p->scratch = NULL;
  cJSON_free(p->scratch_text);
  p->scratch_text = NULL;
  if (rc != 0) {
    acts->n = 0;
    acts->used = 0;
  }
  return rc;
}

int sl_pipeline_on_request(sl_pipeline_t *p, int handle, const char *request_id, cJSON **req, int *changed,
                           sl_pipe_actions_t *acts, char *err, size_t errlen) {
  if (changed) *changed = 0;
  if (req == NULL || *req == NULL) {
    acts->n = 0;
    acts->used = 0;
    snprintf(err, errlen, "%s: on_request needs a request", p->file);
    return SL_EINVAL;
  }
  sl__op_t op = {.op = SL__OP_PHASE, .p = p, .handle = handle, .phase = SL__REQUEST, .req = *req};
  int rc = sl__phase(p, &op, request_id, acts, err, errlen);
  cJSON *out = p->json_out;
  p->json_out = NULL;
  if (rc != 0 || out == NULL) {
    cJSON_Delete(out);
    return rc;
  }
  if (cJSON_Compare(*req, out, 1)) {
    cJSON_Delete(out);
  } else {
    cJSON_Delete(*req);
    *req = out;
    if (changed) *changed = 1;
  }
  return 0;
}

static int sl__on_chunk(sl_pipeline_t *p, int handle, const char *request_id, int ch, int final, uint64_t offset,
                        const char *text, size_t n, sl_pipe_actions_t *acts, char *err, size_t errlen) {
  sl__op_t op = {.op = SL__OP_PHASE, .p = p, .handle = handle, .phase = SL__CHUNK, .ch = ch ? 1 : 0,
                 .final = final, .offset = offset, .text = text, .n = n};
  return sl__phase(p, &op, request_id, acts, err, errlen);
}

int sl_pipeline_on_chunk(sl_pipeline_t *p, int handle, const char *request_id, int ch, uint64_t offset,
                         const char *text, size_t n, sl_pipe_actions_t *acts, char *err, size_t errlen) {
  return sl__on_chunk(p, handle, request_id, ch, 0, offset, text, n, acts, err, errlen);
}

int sl_pipeline_on_last_chunk(sl_pipeline_t *p, int handle, const char *request_id, int ch, uint64_t offset,
                              const char *text, size_t n, sl_pipe_actions_t *acts, char *err, size_t errlen) {
  return sl__on_chunk(p, handle, request_id, ch, 1, offset, text, n, acts, err, errlen);
}

int sl_pipeline_on_verdict(sl_pipeline_t *p, int handle, const char *request_id, const char *kind,
                           const char *name, const char *action, const char *detail, sl_pipe_actions_t *acts,
                           char *err, size_t errlen) {
  sl__op_t op = {.op = SL__OP_PHASE, .p = p, .handle = handle, .phase = SL__VERDICT, .kind = kind, .name = name,
                 .action = action, .detail = detail};
  return sl__phase(p, &op, request_id, acts, err, errlen);
}

int sl_pipeline_on_end(sl_pipeline_t *p, int handle, const char *request_id, const sl_pipe_summary_t *s,
                       sl_pipe_actions_t *acts, char *err, size_t errlen) {
  sl_pipe_summary_t none = {"", 0, 0, 0, 0};
  sl__op_t op = {.op = SL__OP_PHASE, .p = p, .handle = handle, .phase = SL__END, .sum = s ? s : &none};
  return sl__phase(p, &op, request_id, acts, err, errlen);
}
