/* attach.c: Lua sessions inside the running daemon (see attach.h). */
#include "runtime/ops/attach.h"

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/base/errors.h"
#include "runtime/gateway/engines.h"
#include "runtime/lua/lua_budget.h"

/* Memory the REPL machinery may use beyond the cap (compiling a chunk,
 * formatting its answer): a chunk that filled its state to the cap leaves
 * room to compile the next one, `big = nil`. */
#define SL__MEM_RESERVE (1u << 20)

struct sl_attach_s {
  lua_State *L;
  sl_lua_mem_t mem;          /* the state's accounting; mem.limit is cap (chunk running) or cap + reserve */
  size_t cap;                /* what a chunk may hold */
  sl_gateway_t *gw;
  unsigned id;               /* 1, 2, ... per admin socket, for the banner and logs */
  uint64_t budget;           /* instructions per chunk */
  int eval_ref;              /* registry ref of sluice.repl's eval */
  char *pending;             /* the chunk gathered so far (lines joined by '\n') */
  size_t plen, pcap;
  char *out;                 /* the last reply's text */
  size_t olen, ocap;
  sl_attach_status_t status; /* of the last chunk, set inside the protected call */
};

/* ---- growing buffers ---- */

static int sl__append(char **buf, size_t *len, size_t *cap, const char *p, size_t n, size_t max) {
  if (*len + n + 1 > max) return SL_ETOOBIG;
  if (*len + n + 1 > *cap) {
    size_t c = *cap ? *cap : 256;
    while (c < *len + n + 1) c *= 2;
    if (c > max) c = max;
    char *nb = sl_try_realloc(*buf, c);
    if (nb == NULL) return SL_ENOMEM;
    *buf = nb;
    *cap = c;
  }
  memcpy(*buf + *len, p, n);
  *len += n;
  (*buf)[*len] = '\0';
  return 0;
}

/* Sets the reply text (cut at SL_ATTACH_OUTPUT_MAX with a note). */
static void sl__set_out(sl_attach_t *s, const char *p, size_t n) {
  s->olen = 0;
  char note[96] = "";
  if (n > SL_ATTACH_OUTPUT_MAX) {
    snprintf(note, sizeof(note), "\n... (output cut at %u of %zu bytes)", SL_ATTACH_OUTPUT_MAX, n);
    n = SL_ATTACH_OUTPUT_MAX;
  }
  if (sl__append(&s->out, &s->olen, &s->ocap, p, n, SL_ATTACH_OUTPUT_MAX + 128) < 0 ||
      sl__append(&s->out, &s->olen, &s->ocap, note, strlen(note), SL_ATTACH_OUTPUT_MAX + 128) < 0) {
    s->olen = 0; /* out of memory for the reply itself: answer with nothing */
  }
}

static void sl__set_outf(sl_attach_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sl__set_outf(sl_attach_t *s, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  sl__set_out(s, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* ---- helpers: sluice.admin_core ---- */

static sl_attach_t *sl__session(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

static void sl__setstr(lua_State *L, const char *k, const char *v) {
  if (v == NULL) return; /* absent fields stay nil */
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static void sl__setnum(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void sl__setbool(lua_State *L, const char *k, int v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, k);
}

/* streams(): the streams in flight, as the list holds them (newest first). */
static int sl__l_streams(lua_State *L) {
  sl_gateway_t *gw = sl__session(L)->gw;
  uint64_t now = uv_hrtime();
  lua_createtable(L, gw->streams.n, 0);
  int i = 0;
  for (const sl_stream_t *st = sl_relay_stream_next(&gw->streams, NULL); st != NULL; st = sl_relay_stream_next(&gw->streams, st)) {
    sl_stream_info_t in;
    sl_relay_stream_info(st, now, &in);
    lua_createtable(L, 0, 15);
    sl__setstr(L, "id", in.id);
    sl__setstr(L, "model", in.model);
    sl__setstr(L, "endpoint", in.endpoint);
    sl__setstr(L, "pool", in.pool);
    sl__setstr(L, "state", in.state);
    if (in.placement && in.placement[0]) sl__setstr(L, "placement", in.placement);
    if (in.gen) sl__setnum(L, "generation", (double)in.gen->id);
    sl__setnum(L, "tokens", (double)in.tokens);
    sl__setnum(L, "tokens_written", (double)in.tokens_written);
    sl__setnum(L, "age_ms", in.age_ms);
    if (in.ttft_ms >= 0) sl__setnum(L, "ttft_ms", in.ttft_ms);
    sl__setnum(L, "attempts", in.attempts);
    sl__setbool(L, "stream", in.stream);
    if (in.guard && in.guard[0]) sl__setstr(L, "guard", in.guard);
    sl__setnum(L, "held", in.held);
    if (in.tenant) sl__setstr(L, "tenant", in.tenant);
    sl__setnum(L, "queued_ms", in.queued_ms);
    sl__setnum(L, "priority", in.priority);
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

/* tenants(): each tenant's usage (tenant.h), in config order; empty
 * without tenants. */
static int sl__l_tenants(lua_State *L) {
  sl_gateway_t *gw = sl__session(L)->gw;
  const sl_tenants_t *ts = gw->tenants;
  int n = ts ? ts->n : 0;
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    const sl_tenant_t *t = &ts->t[i];
    const sl_tenant_usage_t *u = &t->usage;
    lua_createtable(L, 0, 12);
    sl__setstr(L, "name", t->name);
    sl__setstr(L, "priority", sl_priority_name(t->priority));
    const sl_pipeline_t *p = gw->gen && i < gw->gen->npipes ? gw->gen->pipes[i] : NULL;
    if (p) {
      size_t bytes, peak;
      sl_pipeline_memory(p, &bytes, &peak);
      sl__setstr(L, "pipeline", sl_pipeline_file(p));
      sl__setnum(L, "pipeline_memory_bytes", (double)bytes);
    }
    sl__setnum(L, "requests", (double)u->requests);
    sl__setnum(L, "prompt_tokens", (double)u->prompt_tokens);
    sl__setnum(L, "completion_tokens", (double)u->completion_tokens);
    sl__setnum(L, "cut_streams", (double)u->cut_streams);
    sl__setnum(L, "reserved_tokens", (double)u->reserved_tokens);
    sl__setnum(L, "refused_403", (double)u->refused_403);
    sl__setnum(L, "refused_429", (double)u->refused_429);
    sl__setnum(L, "denied", (double)u->denied);
    sl__setnum(L, "pipeline_errors", (double)u->pipeline_errors);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* pools(): every pool with its models, endpoint names and load. */
static int sl__l_pools(lua_State *L) {
  sl_gateway_t *gw = sl__session(L)->gw;
  lua_createtable(L, gw->reg.npools, 0);
  for (int i = 0; i < gw->reg.npools; i++) {
    const sl_pool_t *p = &gw->reg.pools[i];
    lua_createtable(L, 0, 8);
    sl__setstr(L, "name", p->cfg->name);
    sl__setstr(L, "adapter", p->cfg->adapter);
    sl__setnum(L, "slots", p->cfg->slots);
    sl__setnum(L, "context_tokens", p->cfg->context_tokens);
    lua_createtable(L, p->cfg->nmodels, 0);
    for (int m = 0; m < p->cfg->nmodels; m++) {
      lua_pushstring(L, p->cfg->models[m]);
      lua_rawseti(L, -2, m + 1);
    }
    lua_setfield(L, -2, "models");
    int ready = 0, streams = 0;
    lua_createtable(L, p->neps, 0);
    for (int e = 0; e < p->neps; e++) {
      lua_pushstring(L, p->eps[e].name);
      lua_rawseti(L, -2, e + 1);
      ready += p->eps[e].ready && !p->eps[e].draining;
      streams += p->eps[e].inflight;
    }
    lua_setfield(L, -2, "endpoints");
    sl__setnum(L, "ready", ready);
    sl__setnum(L, "streams", streams);
    sl__setnum(L, "queued", p->queued);
    sl__setnum(L, "drain_per_s", p->drain_per_s);
    sl__setnum(L, "queue_wait_ms", p->wait_ms);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* endpoints(): every endpoint's state, live estimates and timing verdict. */
static int sl__l_endpoints(lua_State *L) {
  sl_gateway_t *gw = sl__session(L)->gw;
  uint64_t now = uv_hrtime();
  lua_createtable(L, gw->reg.neps, 0);
  for (int i = 0; i < gw->reg.neps; i++) {
    const sl_endpoint_t *ep = &gw->reg.eps[i];
    lua_createtable(L, 0, 20);
    sl__setstr(L, "name", ep->name);
    sl__setnum(L, "id", ep->id);
    sl__setstr(L, "pool", ep->pool->cfg->name);
    sl__setbool(L, "ready", ep->ready);
    sl__setbool(L, "draining", ep->draining);
    sl__setnum(L, "streams", ep->inflight);
    sl__setnum(L, "slots", ep->slots);
    sl__setnum(L, "limit", ep->limit);
    sl__setbool(L, "adaptive", ep->adaptive);
    sl__setnum(L, "ttft_p90_ms", ep->ttft_p90_ms);
    sl__setnum(L, "itl_p90_ms", ep->itl_p90_ms);
    sl__setnum(L, "cooldown_ms", ep->cooldown_until > now ? (double)(ep->cooldown_until - now) / 1e6 : 0);
    sl__setnum(L, "failures", ep->failures);
    sl__setnum(L, "requests", (double)ep->requests);
    sl__setnum(L, "errors", (double)ep->errors);
    sl__setnum(L, "ewma_ttft_ms", ep->ewma_ttft_ms);
    sl__setnum(L, "ewma_itl_ms", ep->ewma_itl_ms);
    sl__setnum(L, "tokens_per_s", ep->tokens_per_s);
    sl__setnum(L, "error_rate", ep->error_rate);
    sl__setnum(L, "idle_connections", ep->nidle);
    sl__setbool(L, "sim", sl_gateway_sim(gw, ep) != NULL);
    const char *mstate, *mexit;
    int mpid;
    double mup;
    uint64_t mrestarts;
    if (sl_engines_info(gw->engines, ep, &mstate, &mpid, &mup, &mrestarts, &mexit) == 0) {
      /* A managed engine (gateway/engines.h): what /health says of it. */
      lua_createtable(L, 0, 5);
      sl__setstr(L, "state", mstate);
      sl__setnum(L, "pid", mpid);
      sl__setnum(L, "uptime_s", mup);
      sl__setnum(L, "restarts", (double)mrestarts);
      sl__setstr(L, "last_exit", mexit);
      lua_setfield(L, -2, "managed");
    }
    sl__setnum(L, "gaps_seen", (double)ep->gaps.total);
    if (ep->dyn.cls >= 0) { /* the latest timing verdict (gateway/timing.h); nil before the first */
      const sl_dyn_verdict_t *v = &ep->dyn;
      lua_createtable(L, 0, 10);
      sl__setstr(L, "class", v->name);
      sl__setnum(L, "lambda", v->lambda);
      sl__setnum(L, "fit_r2", v->fit_r2);
      sl__setnum(L, "growth", v->growth);
      sl__setnum(L, "fnn", v->fnn);
      sl__setnum(L, "recurrence", v->recurrence);
      sl__setnum(L, "trend_r2", v->trend_r2);
      sl__setnum(L, "mean_gap_ms", v->mean_ms);
      sl__setnum(L, "samples", v->samples);
      sl__setnum(L, "age_ms", now > v->at ? (double)(now - v->at) / 1e6 : 0);
      lua_setfield(L, -2, "dynamics");
    }
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

#define SL__MAX_GENS 64

/* generations(): the current one and every generation streams still hold. */
static int sl__l_generations(lua_State *L) {
  sl_gateway_t *gw = sl__session(L)->gw;
  const sl_generation_t *gens[SL__MAX_GENS];
  int counts[SL__MAX_GENS];
  int n = 0;
  if (gw->gen) {
    gens[n] = gw->gen;
    counts[n++] = 0;
  }
  uint64_t now = uv_hrtime();
  for (const sl_stream_t *st = sl_relay_stream_next(&gw->streams, NULL); st != NULL; st = sl_relay_stream_next(&gw->streams, st)) {
    sl_stream_info_t in;
    sl_relay_stream_info(st, now, &in);
    if (in.gen == NULL) continue;
    int k = 0;
    while (k < n && gens[k] != in.gen) k++;
    if (k == n) {
      if (n == SL__MAX_GENS) continue; /* more live generations than shown */
      gens[n] = in.gen;
      counts[n++] = 0;
    }
    counts[k]++;
  }
  lua_createtable(L, 0, 5);
  sl__setnum(L, "current", gw->gen ? (double)gw->gen->id : 0);
  sl__setnum(L, "live", (int)sl_counter_get(&gw->counters, SL_C_GENERATIONS_LIVE));
  sl__setnum(L, "built", (double)gw->gen_built);
  sl__setnum(L, "freed", (double)sl_counter_get(&gw->counters, SL_C_GENERATIONS_FREED));
  lua_createtable(L, n, 0);
  for (int k = 0; k < n; k++) {
    const sl_generation_t *g = gens[k];
    lua_createtable(L, 0, 9);
    sl__setnum(L, "id", (double)g->id);
    sl__setstr(L, "policy", g->phase[SL_PHASE_PLACEMENT].name);
    sl__setstr(L, "version", g->phase[SL_PHASE_PLACEMENT].version);
    sl__setstr(L, "path", g->phase[SL_PHASE_PLACEMENT].file);
    sl__setbool(L, "current", g == gw->gen);
    sl__setnum(L, "streams", counts[k]);
    sl__setnum(L, "lua_bytes", (double)g->mem.bytes);
    sl__setnum(L, "lua_peak", (double)g->mem.peak);
    sl__setnum(L, "lua_limit", (double)g->mem.limit);
    lua_rawseti(L, -2, k + 1);
  }
  lua_setfield(L, -2, "list");
  return 1;
}

/* counters(): the counter registry, name -> value. */
static int sl__l_counters(lua_State *L) {
  sl_gateway_t *gw = sl__session(L)->gw;
  lua_createtable(L, 0, SL_C__COUNT);
  for (int i = 0; i < SL_C__COUNT; i++) sl__setnum(L, sl_counter_name((sl_counter_id_t)i), (double)gw->counters.v[i]);
  return 1;
}

/* reload(): as the admin `reload` command; returns ok, message. */
static int sl__l_reload(lua_State *L) {
  sl_attach_t *s = sl__session(L);
  char msg[1536];
  int rc = sl_gateway_reload(s->gw, msg, sizeof(msg));
  fprintf(s->gw->log, "sluice: attach session %u: reload: %s\n", s->id, msg);
  fflush(s->gw->log);
  lua_pushboolean(L, rc == 0);
  lua_pushstring(L, msg);
  return 2;
}

/* drain(name) / undrain(name) (upvalue 2: 1 to drain).  name is "host:port"
 * or the endpoint's id.  Returns true, message, or nil, message. */
static int sl__l_drain(lua_State *L) {
  sl_attach_t *s = sl__session(L);
  sl_registry_t *reg = &s->gw->reg;
  int on = (int)lua_tointeger(L, lua_upvalueindex(2));
  sl_endpoint_t *ep = NULL;
  if (lua_type(L, 1) == LUA_TNUMBER) {
    lua_Number id = lua_tonumber(L, 1);
    if (id >= 0 && id < reg->neps && id == (lua_Number)(int)id) ep = &reg->eps[(int)id];
  } else {
    const char *name = luaL_checkstring(L, 1);
    for (int i = 0; i < reg->neps && ep == NULL; i++)
      if (strcmp(reg->eps[i].name, name) == 0) ep = &reg->eps[i];
  }
  if (ep == NULL) {
    char msg[1024];
    const char *arg = lua_tostring(L, 1); /* a number argument becomes its text */
    size_t n = (size_t)snprintf(msg, sizeof(msg), "no endpoint \"%.200s\" (endpoints:", arg ? arg : "?");
    for (int i = 0; i < reg->neps && n < sizeof(msg); i++)
      n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%s %s", i ? "," : "", reg->eps[i].name);
    if (n < sizeof(msg)) snprintf(msg + n, sizeof(msg) - n, ")");
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
  }
  int changed = sl_endpoint_set_draining(ep, on);
  if (changed) {
    fprintf(s->gw->log, "sluice: attach session %u: endpoint %s %s\n", s->id, ep->name,
            on ? "draining: new streams avoid it" : "takes new streams again");
    fflush(s->gw->log);
  }
  lua_pushboolean(L, 1);
  if (!changed)
    lua_pushfstring(L, "%s was already %s", ep->name, on ? "draining" : "taking new streams");
  else if (on)
    lua_pushfstring(L, "%s is draining: new streams avoid it; its %d stream(s) in flight go on", ep->name,
                    ep->inflight);
  else
    lua_pushfstring(L, "%s takes new streams again", ep->name);
  return 2;
}

/* guard(running): the cap while the chunk itself runs, cap + reserve
 * around it.  Garbage a failed chunk left above the cap is collected
 * before the next chunk runs, so it starts with the whole cap. */
static int sl__l_guard(lua_State *L) {
  sl_attach_t *s = sl__session(L);
  if (lua_toboolean(L, 1)) {
    if (s->mem.bytes + SL__MEM_RESERVE > s->cap) lua_gc(L, LUA_GCCOLLECT, 0);
    s->mem.limit = s->cap;
  } else {
    s->mem.limit = s->cap + SL__MEM_RESERVE;
  }
  return 0;
}

/* ---- opening a session ---- */

/* Runs in the new state with the helper table as its argument; returns
 * sluice.repl's eval.  The JIT is off already; jit.on and debug.sethook are
 * fenced because either would defeat the budget, and os.exit and reading
 * stdin because they would stop or block the daemon. */
static const char sl__bootstrap[] =
    "local core = ...\n"
    "package.loaded['sluice.admin_core'] = core\n"
    "local repl = require 'sluice.repl'\n"
    "repl.install_globals(_G)\n"
    "require('sluice.admin').install(_G)\n"
    "repl.capture_print()\n"
    "local eval, guard = repl.eval, core.guard\n"
    "core.guard = nil\n"
    "local function fenced(what)\n"
    "  return function() error(what, 2) end\n"
    "end\n"
    "local j = {}\n"
    "for k, v in pairs(require 'jit') do j[k] = v end\n"
    "j.on = fenced('the JIT stays off in attach sessions: the instruction budget needs it off')\n"
    "package.loaded.jit, jit = j, j\n"
    "debug.sethook = fenced('debug.sethook is taken by the instruction budget in attach sessions')\n"
    "os.exit = fenced('os.exit would stop the daemon; close the connection to leave the session')\n"
    "io.read = fenced('io.read would block the daemon\\'s loop')\n"
    "local lines = io.lines\n"
    "io.lines = function(name, ...)\n"
    "  if name == nil then error('io.lines() on stdin would block the daemon\\'s loop', 2) end\n"
    "  return lines(name, ...)\n"
    "end\n"
    "return function(src, chunkname) return eval(src, chunkname, guard) end\n";

static int sl__open_protected(lua_State *L) {
  sl_attach_t *s = lua_touserdata(L, 1);
  if (luaL_loadbuffer(L, sl__bootstrap, sizeof(sl__bootstrap) - 1, "=sluice.attach") != 0) lua_error(L);
  static const struct {
    const char *name;
    lua_CFunction fn;
  } fns[] = {
      {"streams", sl__l_streams},         {"pools", sl__l_pools},       {"endpoints", sl__l_endpoints},
      {"generations", sl__l_generations}, {"counters", sl__l_counters}, {"reload", sl__l_reload},
      {"guard", sl__l_guard},             {"tenants", sl__l_tenants},
  };
  lua_createtable(L, 0, 8);
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    lua_pushlightuserdata(L, s);
    lua_pushcclosure(L, fns[i].fn, 1);
    lua_setfield(L, -2, fns[i].name);
  }
  for (int on = 0; on <= 1; on++) {
    lua_pushlightuserdata(L, s);
    lua_pushinteger(L, on);
    lua_pushcclosure(L, sl__l_drain, 2);
    lua_setfield(L, -2, on ? "drain" : "undrain");
  }
  lua_call(L, 1, 1);
  s->eval_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

int sl_attach_open(sl_attach_t **out, sl_gateway_t *gw, unsigned id, size_t mem_limit, uint64_t budget, char *err,
                   size_t errlen) {
  sl_attach_t *s = sl_calloc(1, sizeof(*s));
  s->gw = gw;
  s->id = id;
  s->cap = mem_limit ? mem_limit : SL_ATTACH_MEM_DEFAULT;
  s->mem.limit = s->cap + SL__MEM_RESERVE;
  /* lua_sethook takes an int count. */
  s->budget = budget == 0 ? SL_ATTACH_BUDGET : budget > 0x7fffffff ? 0x7fffffff : budget;
  s->eval_ref = LUA_NOREF;
  s->L = sl_lua_new_state(&s->mem, err, errlen);
  if (s->L == NULL) {
    sl_free(s);
    return SL_ENOMEM;
  }
  /* Count hooks do not fire inside compiled traces: with the JIT on, a hot
   * loop would run past any budget (lua_budget.h). */
  int rc = sl_budget_fence_state(s->L, err, errlen);
  if (rc == 0) sl_lua_set_host(s->L, &gw->dict); /* sluice.dict is the gateway's dictionary */
  if (rc < 0) {
    lua_close(s->L);
    sl_free(s);
    return rc;
  }
  rc = lua_cpcall(s->L, sl__open_protected, s);
  if (rc != 0) {
    const char *msg = lua_tostring(s->L, -1);
    snprintf(err, errlen, "cannot start a Lua session: %s", msg ? msg : "error object is not a string");
    lua_close(s->L);
    sl_free(s);
    return rc == LUA_ERRMEM ? SL_ENOMEM : SL_EINVAL;
  }
  lua_settop(s->L, 0);
  *out = s;
  return 0;
}

const char *sl_attach_banner(const sl_attach_t *s, char *buf, size_t cap) {
  snprintf(buf, cap,
           "sluice %s: Lua session %u in the daemon (JIT off; %llu instructions per chunk; memory capped at %zu "
           "bytes). help() lists the helpers.",
           SL_VERSION, s->id, (unsigned long long)s->budget, s->cap);
  return buf;
}

unsigned sl_attach_id(const sl_attach_t *s) { return s->id; }

void sl_attach_close(sl_attach_t *s) {
  if (s == NULL) return;
  lua_close(s->L);
  sl_free(s->pending);
  sl_free(s->out);
  sl_free(s);
}

/* ---- running chunks ---- */

/* Reads eval's two results (status, text) and copies the answer out
 * before the state's stack goes away. */
static void sl__take_answer(sl_attach_t *s, lua_State *L) {
  const char *st = lua_tostring(L, -2);
  size_t n = 0;
  const char *t = lua_tolstring(L, -1, &n);
  if (st != NULL && strcmp(st, "more") == 0)
    s->status = SL_ATTACH_MORE;
  else if (st != NULL && strcmp(st, "ok") == 0)
    s->status = SL_ATTACH_OK;
  else
    s->status = SL_ATTACH_ERROR;
  sl__set_out(s, t ? t : "", t ? n : 0);
  lua_pop(L, 2);
}

static int sl__collect(lua_State *L) {
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}

static int sl__blank(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') return 0;
  return 1;
}

sl_attach_status_t sl_attach_feed(sl_attach_t *s, const char *line, size_t n, const char **text, size_t *len) {
  lua_State *L = s->L;
  if (n > 0 && line[n - 1] == '\r') n--; /* a client that ends lines with CRLF */
  if (s->plen == 0 && sl__blank(line, n)) {
    s->status = SL_ATTACH_OK;
    s->olen = 0;
  } else if ((s->plen > 0 && sl__append(&s->pending, &s->plen, &s->pcap, "\n", 1, SL_ATTACH_CHUNK_MAX) < 0) ||
             sl__append(&s->pending, &s->plen, &s->pcap, line, n, SL_ATTACH_CHUNK_MAX) < 0) {
    s->status = SL_ATTACH_ERROR;
    sl__set_outf(s, "chunk too long (at most %u bytes); it was dropped", SL_ATTACH_CHUNK_MAX);
    s->plen = 0;
  } else {
    /* eval(pending, "=attach") through the budget runner, like every Lua
     * call on the loop. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->eval_ref);
    lua_pushlstring(L, s->pending, s->plen);
    lua_pushliteral(L, "=attach");
    sl_budget_call_t call = {"attach", NULL, NULL, s->budget, &s->gw->counters};
    char err[1024];
    sl_budget_status_t st = sl_budget_pcall(L, 2, 2, &call, err, sizeof(err));
    if (st == SL_BUDGET_OK) {
      sl__take_answer(s, L);
    } else {
      s->status = SL_ATTACH_ERROR;
      sl__set_outf(s, "%s", err);
    }
    s->mem.limit = s->cap + SL__MEM_RESERVE; /* whatever point the chunk stopped at */
    if (s->status == SL_ATTACH_ERROR && s->olen >= 17 && memcmp(s->out, "not enough memory", 17) == 0) {
      char note[128];
      snprintf(note, sizeof(note), " (this session is capped at %zu bytes)", s->cap);
      sl__append(&s->out, &s->olen, &s->ocap, note, strlen(note), SL_ATTACH_OUTPUT_MAX + 256);
      lua_cpcall(L, sl__collect, NULL); /* what the failed chunk left (finalizers may raise) */
    }
    lua_settop(L, 0);
    if (s->status != SL_ATTACH_MORE) s->plen = 0;
  }
  *text = s->out ? s->out : "";
  *len = s->olen;
  return s->status;
}
