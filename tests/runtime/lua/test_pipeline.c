/* Tests for runtime/lua/pipeline: loading refuses what is not a pipeline
 * (naming the key or the problem, bytecode included); the sandbox battery,
 * where every escape, runaway loop, memory bomb and pattern bomb fails its
 * own call with a clear error while the state and a second pipeline keep
 * serving; kills cannot be caught by pcall, xpcall or coroutines; actions
 * outside their phase raise naming function and phase; the dictionary
 * namespaces keep tenants apart and away from sluice's own keys; the
 * phases' semantics (request rewrite in place and by return, deny,
 * add_stop, replace and hold with offsets, verdict and end fields); JSON
 * helpers; memory accounting. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdlib.h>
#include <unistd.h>

#include "runtime/base/errors.h"
#include "runtime/lua/pipeline.h"
#include "test.h"

static char dir[] = "/tmp/sl_pipeline_XXXXXX";
static sl_counters_t counters;
static sl_pipe_actions_t acts;
static char err[1024];

/* Writes src (n bytes) to dir/name and returns the path (static buffer). */
static const char *write_file(const char *name, const char *src, size_t n) {
  static char path[512];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  fwrite(src, 1, n, f);
  fclose(f);
  return path;
}

static int load(const char *tenant, const char *name, const char *src, const sl_pipeline_limits_t *lim,
                sl_pipeline_t **out) {
  return sl_pipeline_new(tenant, write_file(name, src, strlen(src)), lim, out, err, sizeof(err));
}

static sl_pipeline_t *must_load(const char *tenant, const char *name, const char *src,
                                const sl_pipeline_limits_t *lim) {
  sl_pipeline_t *p = NULL;
  if (load(tenant, name, src, lim, &p) != 0) {
    fprintf(stderr, "load %s: %s\n", name, err);
    exit(1);
  }
  return p;
}

static int chunk(sl_pipeline_t *p, int h, const char *text) {
  return sl_pipeline_on_chunk(p, h, "req-1", 0, 0, text, strlen(text), &acts, err, sizeof(err));
}

static int has(const char *hay, const char *needle) {
  if (strstr(hay, needle)) return 1;
  fprintf(stderr, "  \"%s\" does not contain \"%s\"\n", hay, needle);
  return 0;
}

static void test_load_refusals(void) {
  sl_pipeline_t *p = NULL;
  ASSERT_EQ(load("a", "num.lua", "return 42", NULL, &p), SL_EINVAL);
  ASSERT(has(err, "num.lua: the pipeline must return a table of phases (it returned number)"));
  ASSERT_EQ(load("a", "typo.lua", "return {on_chunks = function() end}", NULL, &p), SL_EINVAL);
  ASSERT(has(err, "unknown key 'on_chunks' in the returned table"));
  ASSERT_EQ(load("a", "notfn.lua", "return {on_chunk = 'x'}", NULL, &p), SL_EINVAL);
  ASSERT(has(err, "on_chunk must be a function (it is a string)"));
  ASSERT_EQ(load("a", "name.lua", "return {name = 3}", NULL, &p), SL_EINVAL);
  ASSERT(has(err, "name must be a string"));
  ASSERT_EQ(load("a", "key.lua", "return {[1] = function() end}", NULL, &p), SL_EINVAL);
  ASSERT(has(err, "a key of type number"));
  ASSERT_EQ(load("a", "syntax.lua", "return {\n  on_chunk = function( end\n}", NULL, &p), SL_EINVAL);
  ASSERT(has(err, "syntax.lua:2:"));
  ASSERT_EQ(load("a", "raise.lua", "local x = 1\nerror('no')", NULL, &p), SL_EINVAL);
  ASSERT(has(err, "raise.lua:2: no"));
  ASSERT_EQ(load("a", "loop.lua", "while true do end", NULL, &p), SL_ETIMEDOUT);
  ASSERT(has(err, "instruction budget exceeded: load"));
  ASSERT_EQ(load("a:b", "ok.lua", "return {}", NULL, &p), SL_EINVAL);
  ASSERT(has(err, "tenant name 'a:b'"));
  ASSERT_EQ(sl_pipeline_new("a", "/nonexistent/x.lua", NULL, &p, err, sizeof(err)), SL_EINVAL);
  ASSERT(has(err, "cannot open the pipeline file"));
  ASSERT_NULL(p);

  /* Real LuaJIT bytecode, and anything else that starts like it. */
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  ASSERT_EQ(luaL_dostring(L, "return string.dump(function() return {} end)"), 0);
  size_t n;
  const char *bc = lua_tolstring(L, -1, &n);
  ASSERT_EQ(bc[0], 27);
  ASSERT_EQ(sl_pipeline_new("a", write_file("bc.lua", bc, n), NULL, &p, err, sizeof(err)), SL_EINVAL);
  ASSERT(has(err, "bc.lua: a precompiled (bytecode) chunk; pipelines are loaded from Lua source text only"));
  lua_close(L);
  ASSERT_EQ(load("a", "lj.lua", "\033LJ\002garbage", NULL, &p), SL_EINVAL);
  ASSERT(has(err, "precompiled (bytecode) chunk"));

  p = must_load("a", "meta.lua",
                "return {name = 'm', version = '1', on_chunk = function() end, on_end = function() end}", NULL);
  ASSERT_EQ(sl_pipeline_phases(p), SL_PIPE_ON_CHUNK | SL_PIPE_ON_END);
  ASSERT(has(sl_pipeline_file(p), "meta.lua"));
  /* A phase it does not define answers 0 with no actions. */
  int h = sl_pipeline_begin(p, "r", "m");
  ASSERT_GT(h, 0);
  ASSERT_EQ(sl_pipeline_on_verdict(p, h, "r", "k", "n", "a", "d", &acts, err, sizeof(err)), 0);
  ASSERT_EQ(acts.n, 0);
  sl_pipeline_finish(p, h);
  sl_pipeline_free(p);
}

/* One pipeline whose on_chunk runs the case its text names; "ping" is the
 * harmless call that shows the state still serves. */
static const char battery_src[] =
    "local cases = {}\n"
    "cases.dump_method = function() return (''):dump() end\n"
    "cases.dump_index = function() local f = ('').dump; sluice.annotate(type(f)); return f('x') end\n"
    "cases.string_dump = function() return string.dump(function() end) end\n"
    "cases.ffi = function() return ffi.cast('int', 1) end\n"
    "cases.os = function() return os.execute('true') end\n"
    "cases.io = function() return io.open('/etc/passwd') end\n"
    "cases.debug = function() return debug.getinfo(1) end\n"
    "cases.jit = function() return jit.on() end\n"
    "cases.require = function() return require('ffi') end\n"
    "cases.package = function() return package.loaded end\n"
    "cases.getfenv = function() return getfenv(0) end\n"
    "cases.setfenv = function() return setfenv(1, {}) end\n"
    "cases.collectgarbage = function() return collectgarbage('count') end\n"
    "cases.newproxy = function() return newproxy(true) end\n"
    "cases.load = function() return load('return 1') end\n"
    "cases.loadstring = function() return loadstring('return 1') end\n"
    "cases.loadfile = function() return loadfile('/etc/passwd') end\n"
    "cases.dofile = function() return dofile('/etc/passwd') end\n"
    "cases.module = function() return module('x') end\n"
    "cases.base = function() return sluice.base.C end\n"
    "cases.G = function() return _G.os.exit() end\n"
    "cases.loop = function() while true do end end\n"
    "cases.loop_pcall = function() while true do pcall(function() while true do end end) end end\n"
    "cases.loop_xpcall = function()\n"
    "  xpcall(function() while true do end end, function(e) return e end)\n"
    "  sluice.annotate('caught')\n"
    "end\n"
    "cases.loop_handler = function() xpcall(function() error('x') end, function() while true do end end) end\n"
    "cases.loop_coroutine = function()\n"
    "  local ok = coroutine.resume(coroutine.create(function() while true do end end))\n"
    "  sluice.annotate('caught')\n"
    "end\n"
    "cases.loop_wrap = function()\n"
    "  local ok = pcall(coroutine.wrap(function() while true do end end))\n"
    "  sluice.annotate('caught')\n"
    "end\n"
    "cases.mem_table = function()\n"
    "  local ok = pcall(function() local t = {} for i = 1, 1e8 do t[i] = {} end end)\n"
    "  sluice.annotate('caught')\n"
    "end\n"
    "cases.mem_rep = function()\n"
    "  local t = {}\n"
    "  for i = 1, 100 do t[i] = ('x'):rep(1048576 - i) end\n"
    "end\n"
    "cases.mem_concat = function() local s = 'x' for i = 1, 40 do s = s .. s end end\n"
    "cases.mem_coroutine = function()\n"
    "  local co = coroutine.create(function() local s = 'x' for i = 1, 40 do s = s .. s end end)\n"
    "  coroutine.resume(co)\n"
    "  sluice.annotate('caught')\n"
    "end\n"
    "cases.rep_cap = function() return ('x'):rep(1e9) end\n"
    "cases.format_cap = function() local s = ('x'):rep(1048576) return string.format('%s%s', s, s) end\n"
    "cases.pattern_bomb = function() local r = string.rep('a', 5000):find(string.rep('a*', 30) .. 'b') return r end\n"
    "cases.pattern_bomb_pcall = function()\n"
    "  for i = 1, 100 do pcall(string.find, ('a'):rep(5000), ('a*'):rep(30) .. 'b') end\n"
    "  sluice.annotate('caught')\n"
    "end\n"
    "cases.pattern_bomb_gsub = function() return (('a'):rep(3000)):gsub('(a-)(a-)(a-)(a-)b', '') end\n"
    "cases.pattern_bomb_gmatch = function() for x in (('a'):rep(3000)):gmatch('.-.-.-.-b') do end end\n"
    "cases.subject_max = function() return (('a'):rep(70000)):find('a+b') end\n"
    "cases.meta_index = function() getmetatable('').__index = {dump = 1} end\n"
    "cases.meta_read = function() return getmetatable('').__index.dump end\n"
    "cases.meta_rawget = function() local x = rawget(getmetatable(''), '__index') return x end\n"
    "cases.meta_set = function() local x = setmetatable('', {}) return x end\n"
    "cases.raise = function() error('plain failure') end\n"
    "local n = 0\n"
    "return {\n"
    "  on_chunk = function(ctx, text)\n"
    "    local f = cases[text]\n"
    "    if f then return f(ctx) end\n"
    "    n = n + 1\n"
    "    sluice.annotate(text .. ' ' .. n .. ' ' .. (('abc'):upper()) .. ' ' .. tostring(('key=val'):match('(%w+)=')))\n"
    "  end,\n"
    "}\n";

typedef struct {
  const char *name;
  int rc;
  const char *msg;
} battery_case_t;

static void test_sandbox_battery(void) {
  sl_pipeline_limits_t lim = {8u * 1024 * 1024, 2000000, 0, &counters, NULL};
  sl_pipeline_t *p = must_load("a", "battery.lua", battery_src, &lim);
  sl_pipeline_t *other = must_load("b", "other.lua", battery_src, NULL);
  int h = sl_pipeline_begin(p, "req-1", "m");
  int ho = sl_pipeline_begin(other, "req-2", "m");
  static const battery_case_t cases[] = {
      {"dump_method", SL_EINVAL, "battery.lua:2: attempt to call method 'dump' (a nil value)"},
      {"dump_index", SL_EINVAL, "battery.lua:3: attempt to call local 'f' (a nil value)"},
      {"string_dump", SL_EINVAL, "attempt to call field 'dump' (a nil value)"},
      {"ffi", SL_EINVAL, "attempt to index global 'ffi' (a nil value)"},
      {"os", SL_EINVAL, "attempt to index global 'os' (a nil value)"},
      {"io", SL_EINVAL, "attempt to index global 'io' (a nil value)"},
      {"debug", SL_EINVAL, "attempt to index global 'debug' (a nil value)"},
      {"jit", SL_EINVAL, "attempt to index global 'jit' (a nil value)"},
      {"require", SL_EINVAL, "attempt to call global 'require' (a nil value)"},
      {"package", SL_EINVAL, "attempt to index global 'package' (a nil value)"},
      {"getfenv", SL_EINVAL, "attempt to call global 'getfenv' (a nil value)"},
      {"setfenv", SL_EINVAL, "attempt to call global 'setfenv' (a nil value)"},
      {"collectgarbage", SL_EINVAL, "attempt to call global 'collectgarbage' (a nil value)"},
      {"newproxy", SL_EINVAL, "attempt to call global 'newproxy' (a nil value)"},
      {"load", SL_EINVAL, "attempt to call global 'load' (a nil value)"},
      {"loadstring", SL_EINVAL, "attempt to call global 'loadstring' (a nil value)"},
      {"loadfile", SL_EINVAL, "attempt to call global 'loadfile' (a nil value)"},
      {"dofile", SL_EINVAL, "attempt to call global 'dofile' (a nil value)"},
      {"module", SL_EINVAL, "attempt to call global 'module' (a nil value)"},
      {"base", SL_EINVAL, "attempt to index field 'base' (a nil value)"},
      {"G", SL_EINVAL, "attempt to index field 'os' (a nil value)"},
      {"loop", SL_ETIMEDOUT, "instruction budget exceeded: on_chunk "},
      {"loop_pcall", SL_ETIMEDOUT, "instruction budget exceeded: on_chunk "},
      {"loop_xpcall", SL_ETIMEDOUT, "instruction budget exceeded: on_chunk "},
      {"loop_handler", SL_ETIMEDOUT, "instruction budget exceeded: on_chunk "},
      {"loop_coroutine", SL_ETIMEDOUT, "instruction budget exceeded: on_chunk "},
      {"loop_wrap", SL_ETIMEDOUT, "instruction budget exceeded: on_chunk "},
      {"mem_table", SL_ENOMEM, "not enough memory (the pipeline's memory cap is 8388608 bytes)"},
      {"mem_rep", SL_ENOMEM, "not enough memory (the pipeline's memory cap is 8388608 bytes)"},
      {"mem_concat", SL_ENOMEM, "not enough memory"},
      {"mem_coroutine", SL_ENOMEM, "not enough memory"},
      {"rep_cap", SL_EINVAL, "string.rep: a result of 1000000000 bytes is longer than the limit (1048576 bytes)"},
      {"format_cap", SL_EINVAL, "string.format: a result of 2097152 bytes is longer than the limit (1048576 bytes)"},
      {"pattern_bomb", SL_ETIMEDOUT, "battery.lua:54: pattern too complex: stopped after 1000000 steps"},
      {"pattern_bomb_pcall", SL_ETIMEDOUT, "pattern too complex: stopped after 1000000 steps"},
      {"pattern_bomb_gsub", SL_ETIMEDOUT, "pattern too complex: stopped after 1000000 steps"},
      {"pattern_bomb_gmatch", SL_ETIMEDOUT, "pattern too complex: stopped after 1000000 steps"},
      {"subject_max", SL_EINVAL, "string.find: subject of 70000 bytes is longer than the limit (65536 bytes)"},
      {"meta_index", SL_EINVAL, "attempt to index a string value"},
      {"meta_read", SL_EINVAL, "attempt to index field '__index' (a nil value)"},
      {"meta_rawget", SL_EINVAL, "bad argument #1 to 'rawget' (table expected, got string)"},
      {"meta_set", SL_EINVAL, "bad argument #1 to 'setmetatable' (table expected, got string)"},
      {"raise", SL_EINVAL, "plain failure"},
  };
  uint64_t kills0 = sl_counter_get(&counters, SL_C_LUA_BUDGET_EXCEEDED);
  int budget_cases = 0;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const battery_case_t *c = &cases[i];
    int rc = chunk(p, h, c->name);
    if (getenv("SL_TEST_SHOW_ERRORS")) fprintf(stderr, "  %-20s %-22s %s\n", c->name, sl_strerror(rc), err);
    if (rc != c->rc || !strstr(err, c->msg))
      fprintf(stderr, "  case %s: rc %d (want %d): %s\n", c->name, rc, c->rc, err);
    ASSERT_EQ(rc, c->rc);
    ASSERT(has(err, c->msg));
    ASSERT_EQ(acts.n, 0); /* a failed call takes no action, "caught" included */
    if (c->rc == SL_ETIMEDOUT && strstr(c->msg, "instruction")) budget_cases++;
    /* The same state serves the next call, and so does the other pipeline. */
    char ping[64];
    snprintf(ping, sizeof(ping), "ping-%zu", i);
    ASSERT_EQ(chunk(p, h, ping), 0);
    ASSERT_EQ(acts.n, 1);
    ASSERT(has(acts.a[0].text, " ABC key"));
    ASSERT_EQ(chunk(other, ho, ping), 0);
    ASSERT_EQ(acts.n, 1);
  }
  ASSERT_UINT_EQ(sl_counter_get(&counters, SL_C_LUA_BUDGET_EXCEEDED) - kills0, budget_cases);
  size_t bytes, peak;
  sl_pipeline_memory(p, &bytes, &peak);
  ASSERT_LE(peak, 8u * 1024 * 1024);
  ASSERT_GT(peak, 4u * 1024 * 1024); /* the bombs got near the cap */
  ASSERT_LT(bytes, 2u * 1024 * 1024); /* and their garbage is gone */
  sl_pipeline_finish(p, h);
  sl_pipeline_finish(other, ho);
  sl_pipeline_free(p);
  sl_pipeline_free(other);
}

/* Actions outside their phases raise, naming the function and the phase. */
static const char wrong_src[] =
    "local function try(what)\n"
    "  local ok, e = pcall(sluice[what], 1, 2, 'x')\n"
    "  if not ok then sluice.annotate(e) end\n"
    "end\n"
    "return {\n"
    "  on_request = function(ctx, req) for _, a in ipairs{'cancel', 'replace', 'hold'} do try(a) end end,\n"
    "  on_chunk = function(ctx, text) for _, a in ipairs{'deny', 'add_stop', 'add_redact'} do try(a) end end,\n"
    "  on_verdict = function(ctx, v) for _, a in ipairs{'deny', 'hold'} do try(a) end end,\n"
    "  on_end = function(ctx, s) for _, a in ipairs{'cancel', 'replace'} do try(a) end end,\n"
    "}\n";

static void test_actions_in_wrong_phase(void) {
  sl_pipeline_t *p = must_load("a", "wrong.lua", wrong_src, NULL);
  int h = sl_pipeline_begin(p, "r", "m");
  cJSON *req = cJSON_Parse("{\"model\":\"m\"}");
  int changed = -1;
  ASSERT_EQ(sl_pipeline_on_request(p, h, "r", &req, &changed, &acts, err, sizeof(err)), 0);
  ASSERT_EQ(changed, 0);
  ASSERT_EQ(acts.n, 3);
  ASSERT(has(acts.a[0].text, "sluice.cancel: not allowed in on_request (only in on_chunk and on_verdict; in "
                             "on_request use sluice.deny)"));
  ASSERT(has(acts.a[1].text, "sluice.replace: not allowed in on_request (only in on_chunk)"));
  ASSERT(has(acts.a[2].text, "sluice.hold: not allowed in on_request (only in on_chunk)"));
  ASSERT_EQ(chunk(p, h, "x"), 0);
  ASSERT_EQ(acts.n, 3);
  ASSERT(has(acts.a[0].text, "sluice.deny: not allowed in on_chunk (only in on_request)"));
  ASSERT(has(acts.a[1].text, "sluice.add_stop: not allowed in on_chunk (only in on_request)"));
  ASSERT(has(acts.a[2].text, "sluice.add_redact: not allowed in on_chunk (only in on_request)"));
  ASSERT_EQ(sl_pipeline_on_verdict(p, h, "r", "k", "n", "a", "d", &acts, err, sizeof(err)), 0);
  ASSERT_EQ(acts.n, 2);
  ASSERT(has(acts.a[0].text, "sluice.deny: not allowed in on_verdict"));
  ASSERT(has(acts.a[1].text, "sluice.hold: not allowed in on_verdict"));
  sl_pipe_summary_t s = {"complete", 1, 2, 3.5, 0};
  ASSERT_EQ(sl_pipeline_on_end(p, h, "r", &s, &acts, err, sizeof(err)), 0);
  ASSERT_EQ(acts.n, 2);
  ASSERT(has(acts.a[0].text, "sluice.cancel: not allowed in on_end"));
  ASSERT(has(acts.a[1].text, "sluice.replace: not allowed in on_end"));
  cJSON_Delete(req);
  sl_pipeline_finish(p, h);
  sl_pipeline_free(p);
}

static const char dict_src[] =
    "return {\n"
    "  on_chunk = function(ctx, text)\n"
    "    local d = sluice.dict\n"
    "    if text == 'write' then\n"
    "      assert(d.set('k', 'secret-of-' .. ctx.tenant))\n"
    "      assert(d.incr('n', 5, 0) == 5)\n"
    "    end\n"
    "    for _, k in ipairs{'k', 't:a:rpm', 'p:a:k', '../a:k'} do\n"
    "      sluice.annotate(k .. '=' .. tostring((d.get(k))))\n"
    "    end\n"
    "    sluice.annotate('del=' .. tostring(d.delete('t:a:rpm')) .. ' incr=' .. tostring(d.incr('n', 1)))\n"
    "  end,\n"
    "}\n";

static void test_dict_namespaces(void) {
  sl_ttldict_t *d = NULL;
  ASSERT_EQ(sl_ttldict_new(NULL, &d), 0);
  ASSERT_EQ(sl_ttldict_set(d, "t:a:rpm", 7, "17", 2, 0), 0);
  sl_pipeline_limits_t lim = {0, 0, 0, NULL, d};
  sl_pipeline_t *a = must_load("a", "da.lua", dict_src, &lim);
  sl_pipeline_t *b = must_load("b", "db.lua", dict_src, &lim);
  int ha = sl_pipeline_begin(a, "r1", "m"), hb = sl_pipeline_begin(b, "r2", "m");
  ASSERT_EQ(chunk(a, ha, "write"), 0);
  ASSERT_EQ(acts.n, 5);
  ASSERT_STR_EQ(acts.a[0].text, "k=secret-of-a");
  ASSERT_STR_EQ(acts.a[1].text, "t:a:rpm=nil");
  ASSERT_STR_EQ(acts.a[2].text, "p:a:k=nil");
  ASSERT_STR_EQ(acts.a[3].text, "../a:k=nil");
  ASSERT_STR_EQ(acts.a[4].text, "del=nil incr=6");
  ASSERT_EQ(chunk(b, hb, "read"), 0);
  ASSERT_STR_EQ(acts.a[0].text, "k=nil");
  ASSERT_STR_EQ(acts.a[1].text, "t:a:rpm=nil");
  ASSERT_STR_EQ(acts.a[2].text, "p:a:k=nil");
  ASSERT_STR_EQ(acts.a[4].text, "del=nil incr=nil");
  /* From C: each tenant's keys under its prefix, sluice's own untouched. */
  char buf[64];
  size_t n;
  ASSERT_EQ(sl_ttldict_get(d, "p:a:k", 5, buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "secret-of-a", 11);
  ASSERT_EQ(sl_ttldict_get(d, "p:a:n", 5, buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "6", 1);
  ASSERT_EQ(sl_ttldict_get(d, "t:a:rpm", 7, buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "17", 2);
  ASSERT_EQ(sl_ttldict_get(d, "p:b:k", 5, buf, sizeof(buf), &n), SL_ENOTFOUND);
  size_t entries;
  sl_ttldict_count(d, &entries, NULL);
  ASSERT_UINT_EQ(entries, 3);
  sl_pipeline_finish(a, ha);
  sl_pipeline_finish(b, hb);
  sl_pipeline_free(a);
  sl_pipeline_free(b);
  /* Without a dictionary there is no sluice.dict. */
  sl_pipeline_t *c = must_load("c", "dc.lua", dict_src, NULL);
  int hc = sl_pipeline_begin(c, "r3", "m");
  ASSERT_EQ(chunk(c, hc, "read"), SL_EINVAL);
  ASSERT(has(err, "attempt to index local 'd' (a nil value)"));
  sl_pipeline_finish(c, hc);
  sl_pipeline_free(c);
  sl_ttldict_free(d);
}

static const char request_src[] =
    "return {\n"
    "  on_request = function(ctx, req)\n"
    "    local mode = req.metadata and req.metadata.mode\n"
    "    if mode == 'inplace' then req.max_tokens = 10; req.messages[1].content = 'rewritten' end\n"
    "    if mode == 'return' then return {model = req.model, messages = {{role = 'user', content = 'new'}}} end\n"
    "    if mode == 'deny' then sluice.deny(403, 'not for ' .. ctx.tenant) end\n"
    "    if mode == 'stop' then sluice.add_stop('END'); sluice.add_redact('secret') end\n"
    "    if mode == 'bad' then req.messages[2] = {content = function() end} end\n"
    "    if mode == 'mixed' then req.metadata[1] = 'x' end\n"
    "    if mode == 'ret' then return 42 end\n"
    "    if mode == 'badstatus' then sluice.deny(200, 'x') end\n"
    "    if mode == 'nulls' then sluice.annotate(tostring(req.stop) .. ' ' .. tostring(req.stop == sluice.null)\n"
    "      .. ' ' .. #req.tools) end\n"
    "  end,\n"
    "}\n";

static int request(sl_pipeline_t *p, int h, const char *json, cJSON **out, int *changed) {
  *out = cJSON_Parse(json);
  return sl_pipeline_on_request(p, h, "r", out, changed, &acts, err, sizeof(err));
}

static void test_on_request(void) {
  sl_pipeline_t *p = must_load("acme", "req.lua", request_src, NULL);
  int h = sl_pipeline_begin(p, "r", "m");
  cJSON *req;
  int changed;
  /* No change: the same tree stays, empty arrays and nulls included. */
  const char *plain = "{\"model\":\"m\",\"metadata\":{\"mode\":\"nulls\"},\"stop\":null,\"tools\":[],"
                      "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":1.5,\"stream\":true}";
  ASSERT_EQ(request(p, h, plain, &req, &changed), 0);
  cJSON *before = req;
  ASSERT_EQ(changed, 0);
  ASSERT(req == before);
  ASSERT_EQ(acts.n, 1);
  ASSERT_STR_EQ(acts.a[0].text, "null true 0");
  cJSON_Delete(req);

  ASSERT_EQ(request(p, h, "{\"model\":\"m\",\"metadata\":{\"mode\":\"inplace\"},\"tools\":[],"
                          "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &req, &changed), 0);
  ASSERT_EQ(changed, 1);
  ASSERT_EQ(cJSON_GetObjectItem(req, "max_tokens")->valueint, 10);
  ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(req, "messages"), 0), "content")->valuestring,
                "rewritten");
  ASSERT(cJSON_IsArray(cJSON_GetObjectItem(req, "tools")));
  cJSON_Delete(req);

  ASSERT_EQ(request(p, h, "{\"model\":\"m\",\"metadata\":{\"mode\":\"return\"}}", &req, &changed), 0);
  ASSERT_EQ(changed, 1);
  char *txt = cJSON_PrintUnformatted(req);
  ASSERT(has(txt, "\"messages\":[{"));
  ASSERT(has(txt, "\"content\":\"new\""));
  ASSERT(!strstr(txt, "metadata"));
  cJSON_free(txt);
  cJSON_Delete(req);

  ASSERT_EQ(request(p, h, "{\"metadata\":{\"mode\":\"deny\"}}", &req, &changed), 0);
  ASSERT_EQ(acts.n, 1);
  ASSERT_EQ(acts.a[0].kind, SL_PACT_DENY);
  ASSERT_EQ(acts.a[0].status, 403);
  ASSERT_STR_EQ(acts.a[0].text, "not for acme");
  ASSERT_STR_EQ(sl_pact_name(acts.a[0].kind), "deny");
  cJSON_Delete(req);

  ASSERT_EQ(request(p, h, "{\"metadata\":{\"mode\":\"stop\"}}", &req, &changed), 0);
  ASSERT_EQ(acts.n, 2);
  ASSERT_EQ(acts.a[0].kind, SL_PACT_ADD_STOP);
  ASSERT_MEM_EQ(acts.a[0].text, acts.a[0].len, "END", 3);
  ASSERT_EQ(acts.a[1].kind, SL_PACT_ADD_REDACT);
  ASSERT_STR_EQ(acts.a[1].text, "secret");
  cJSON_Delete(req);

  /* Unusable answers fail the call, name the place, and leave req alone. */
  ASSERT_EQ(request(p, h, "{\"metadata\":{\"mode\":\"bad\"},\"messages\":[{}]}", &req, &changed), SL_EINVAL);
  ASSERT(has(err, "on_request: the request: req.messages[2].content: a function value cannot be JSON"));
  ASSERT_EQ(changed, 0);
  ASSERT_EQ(acts.n, 0);
  ASSERT_NOT_NULL(cJSON_GetObjectItem(req, "metadata"));
  cJSON_Delete(req);
  ASSERT_EQ(request(p, h, "{\"metadata\":{\"mode\":\"mixed\"}}", &req, &changed), SL_EINVAL);
  ASSERT(has(err, "req.metadata: key 1 in a table that is not an array"));
  cJSON_Delete(req);
  ASSERT_EQ(request(p, h, "{\"metadata\":{\"mode\":\"ret\"}}", &req, &changed), SL_EINVAL);
  ASSERT(has(err, "on_request returned a number (return the request table, or nothing)"));
  cJSON_Delete(req);
  ASSERT_EQ(request(p, h, "{\"metadata\":{\"mode\":\"badstatus\"}}", &req, &changed), SL_EINVAL);
  ASSERT(has(err, "req.lua:11: sluice.deny: status must be from 400 to 499 (got 200)"));
  cJSON_Delete(req);
  sl_pipeline_finish(p, h);
  sl_pipeline_free(p);
}

static const char chunk_src[] =
    "return {\n"
    "  on_chunk = function(ctx, text)\n"
    "    ctx.calls = (ctx.calls or 0) + 1\n"
    "    sluice.annotate(string.format('%s %s %s %s %d %d', ctx.id, ctx.tenant, ctx.model, ctx.channel, ctx.offset,\n"
    "      ctx.calls))\n"
    "    local s, e = text:find('bad')\n"
    "    if s then sluice.replace(ctx.offset + s - 1, ctx.offset + e, '***') end\n"
    "    if text:sub(-1) == 'b' then sluice.hold(1) end\n"
    "    if text == 'early' then sluice.replace(ctx.offset - 1, ctx.offset, '') end\n"
    "    if text == 'toomuch' then sluice.hold(100) end\n"
    "    if text == 'cancel' then sluice.cancel('enough') end\n"
    "  end,\n"
    "  on_verdict = function(ctx, v)\n"
    "    sluice.narrate(table.concat({v.kind, v.name, v.action, v.detail}, '|'))\n"
    "  end,\n"
    "  on_end = function(ctx, s)\n"
    "    sluice.annotate(string.format('%s %d %d %.1f %s %d', s.reason, s.prompt_tokens, s.completion_tokens,\n"
    "      s.duration_ms, tostring(s.cut), ctx.calls))\n"
    "  end,\n"
    "}\n";

static void test_chunk_verdict_end(void) {
  sl_pipeline_t *p = must_load("acme", "chunk.lua", chunk_src, NULL);
  int h = sl_pipeline_begin(p, "req-9", "llama");
  ASSERT_EQ(sl_pipeline_on_chunk(p, h, "req-9", 0, 100, "a bad day", 9, &acts, err, sizeof(err)), 0);
  ASSERT_EQ(acts.n, 2);
  ASSERT_STR_EQ(acts.a[0].text, "req-9 acme llama content 100 1");
  ASSERT_EQ(acts.a[1].kind, SL_PACT_REPLACE);
  ASSERT_UINT_EQ(acts.a[1].start, 102);
  ASSERT_UINT_EQ(acts.a[1].stop, 105);
  ASSERT_STR_EQ(acts.a[1].text, "***");
  /* Held byte: "b" at 111 stays unreleased; the next batch may replace it. */
  ASSERT_EQ(sl_pipeline_on_chunk(p, h, "req-9", 0, 109, "ab", 2, &acts, err, sizeof(err)), 0);
  ASSERT_EQ(acts.n, 2);
  ASSERT_EQ(acts.a[1].kind, SL_PACT_HOLD);
  ASSERT_UINT_EQ(acts.a[1].start, 1);
  ASSERT_EQ(sl_pipeline_on_chunk(p, h, "req-9", 0, 111, "ad", 2, &acts, err, sizeof(err)), 0);
  ASSERT_EQ(sl_pipeline_on_chunk(p, h, "req-9", 0, 113, "early", 5, &acts, err, sizeof(err)), SL_EINVAL);
  ASSERT(has(err, "chunk.lua:9: sluice.replace: range [112, 113) is not within the bytes not yet released "
                  "[113, 118)"));
  ASSERT_EQ(acts.n, 0);
  ASSERT_EQ(sl_pipeline_on_chunk(p, h, "req-9", 0, 118, "xb", 2, &acts, err, sizeof(err)), 0);
  ASSERT_EQ(sl_pipeline_on_chunk(p, h, "req-9", 0, 120, "early", 5, &acts, err, sizeof(err)), 0);
  ASSERT_EQ(acts.a[1].kind, SL_PACT_REPLACE);
  ASSERT_UINT_EQ(acts.a[1].start, 119);
  ASSERT_EQ(sl_pipeline_on_chunk(p, h, "req-9", 1, 0, "toomuch", 7, &acts, err, sizeof(err)), SL_EINVAL);
  ASSERT(has(err, "sluice.hold: n (100) is more than the 7 bytes not yet released"));
  ASSERT_EQ(sl_pipeline_on_chunk(p, h, "req-9", 1, 7, "cancel", 6, &acts, err, sizeof(err)), 0);
  ASSERT_STR_EQ(acts.a[0].text, "req-9 acme llama reasoning 7 8");
  ASSERT_EQ(acts.a[1].kind, SL_PACT_CANCEL);
  ASSERT_STR_EQ(acts.a[1].text, "enough");
  ASSERT_EQ(sl_pipeline_on_verdict(p, h, "req-9", "pattern", "no-ssn", "stop", "matched", &acts, err, sizeof(err)),
            0);
  ASSERT_EQ(acts.n, 1);
  ASSERT_EQ(acts.a[0].kind, SL_PACT_NARRATE);
  ASSERT_STR_EQ(acts.a[0].text, "pattern|no-ssn|stop|matched");
  sl_pipe_summary_t s = {"guard_stop", 12, 34, 56.5, 1};
  ASSERT_EQ(sl_pipeline_on_end(p, h, "req-9", &s, &acts, err, sizeof(err)), 0);
  ASSERT_STR_EQ(acts.a[0].text, "guard_stop 12 34 56.5 true 8");
  /* A second stream has its own ctx. */
  int h2 = sl_pipeline_begin(p, "req-10", "llama");
  ASSERT_NE(h2, h);
  ASSERT_EQ(sl_pipeline_on_chunk(p, h2, "req-10", 0, 0, "x", 1, &acts, err, sizeof(err)), 0);
  ASSERT_STR_EQ(acts.a[0].text, "req-10 acme llama content 0 1");
  sl_pipeline_finish(p, h);
  sl_pipeline_finish(p, h2);
  sl_pipeline_finish(p, 0);
  ASSERT_EQ(sl_pipeline_on_chunk(p, h, "req-9", 0, 0, "x", 1, &acts, err, sizeof(err)), SL_EINVAL);
  ASSERT(has(err, "no stream with handle"));
  sl_pipeline_free(p);
}

static const char json_src[] =
    "return {\n"
    "  on_chunk = function(ctx, text)\n"
    "    if text == 'deep' then local t = {} t.t = t local s = sluice.json_encode(t) return s end\n"
    "    if text == 'fn' then local s = sluice.json_encode({a = {tostring}}) return s end\n"
    "    local v = sluice.json_decode('{\"a\":[1,2,{\"b\":null}],\"c\":\"x\",\"e\":[]}')\n"
    "    sluice.annotate(tostring(v.a[3].b == sluice.null) .. ' ' .. #v.a .. ' ' .. v.c)\n"
    "    sluice.annotate(sluice.json_encode(v.e) .. sluice.json_encode({1, 2, 'x'}) .. sluice.json_encode({}))\n"
    "    sluice.annotate(sluice.json_encode(setmetatable({}, sluice.array_mt)) .. sluice.json_encode(sluice.null))\n"
    "    local x, e = sluice.json_decode('{bad')\n"
    "    sluice.annotate(tostring(x) .. ' ' .. e)\n"
    "    sluice.annotate(tostring(pcall(function() sluice.null.x = 1 end)))\n"
    "    sluice.annotate(type(sluice.now_ms()))\n"
    "  end,\n"
    "}\n";

static void test_json_helpers(void) {
  sl_pipeline_t *p = must_load("a", "json.lua", json_src, NULL);
  int h = sl_pipeline_begin(p, "r", "m");
  ASSERT_EQ(chunk(p, h, "x"), 0);
  ASSERT_EQ(acts.n, 6);
  ASSERT_STR_EQ(acts.a[0].text, "true 3 x");
  ASSERT_STR_EQ(acts.a[1].text, "[][1,2,\"x\"]{}");
  ASSERT_STR_EQ(acts.a[2].text, "[]null");
  ASSERT(has(acts.a[3].text, "nil invalid JSON at byte "));
  ASSERT_STR_EQ(acts.a[4].text, "false");
  ASSERT_STR_EQ(acts.a[5].text, "number");
  ASSERT_EQ(chunk(p, h, "deep"), SL_EINVAL);
  ASSERT(has(err, "json.lua:3: sluice.json_encode: value.t.t.t"));
  ASSERT(has(err, "nested deeper than 100 levels"));
  ASSERT_EQ(chunk(p, h, "fn"), SL_EINVAL);
  ASSERT(has(err, "sluice.json_encode: value.a[1]: a function value cannot be JSON"));
  sl_pipeline_finish(p, h);
  sl_pipeline_free(p);
}

/* Memory: accounted, capped at load too, and given back. */
static void test_memory(void) {
  sl_pipeline_t *p = must_load("a", "mem.lua",
                               "local keep = {}\n"
                               "return { on_chunk = function(ctx, text)\n"
                               "  if text == 'grow' then for i = 1, 1000 do keep[i] = ('x'):rep(1000) .. i end end\n"
                               "  if text == 'drop' then keep = {} end\n"
                               "end }\n",
                               NULL);
  size_t b0, p0, b1, p1;
  sl_pipeline_memory(p, &b0, &p0);
  ASSERT_GT(b0, 10000);
  ASSERT_GE(p0, b0);
  int h = sl_pipeline_begin(p, "r", "m");
  ASSERT_EQ(chunk(p, h, "grow"), 0);
  sl_pipeline_memory(p, &b1, &p1);
  ASSERT_GT(b1, b0 + 1000000);
  ASSERT_GE(p1, b1);
  sl_pipeline_finish(p, h);
  sl_pipeline_free(p);
  /* A cap too small for the sandbox itself refuses the load cleanly. */
  sl_pipeline_limits_t tiny = {20000, 0, 0, NULL, NULL};
  sl_pipeline_t *q = NULL;
  int rc = load("a", "tiny.lua", "return {}", &tiny, &q);
  ASSERT_EQ(rc, SL_ENOMEM);
  ASSERT_NULL(q);
  /* A load that builds too much fails with ENOMEM too. */
  sl_pipeline_limits_t small = {2u * 1024 * 1024, 0, 0, NULL, NULL};
  rc = load("a", "big.lua", "local t = {} for i = 1, 100 do t[i] = ('x'):rep(100000) .. i end return {}", &small,
            &q);
  ASSERT_EQ(rc, SL_ENOMEM);
  ASSERT(has(err, "not enough memory (the pipeline's memory cap is 2097152 bytes)"));
}

/* ctx.final: false on ordinary batches, true on the channel's last one
 * (which may be empty); what the previous batch held is still replaceable
 * there. */
static void test_last_chunk(void) {
  sl_pipeline_t *p = must_load("acme", "final.lua",
                               "return { on_chunk = function(ctx, text)\n"
                               "  sluice.annotate(tostring(ctx.final) .. ' ' .. #text)\n"
                               "  if not ctx.final then sluice.hold(#text) else sluice.replace(0, 3, 'X') end\n"
                               "end }\n",
                               NULL);
  int h = sl_pipeline_begin(p, "req-f", "m");
  ASSERT_EQ(sl_pipeline_on_chunk(p, h, "req-f", 0, 0, "abc", 3, &acts, err, sizeof(err)), 0);
  ASSERT_STR_EQ(acts.a[0].text, "false 3");
  ASSERT_EQ(sl_pipeline_on_last_chunk(p, h, "req-f", 0, 3, "", 0, &acts, err, sizeof(err)), 0);
  ASSERT_STR_EQ(acts.a[0].text, "true 0");
  ASSERT_EQ(acts.a[1].kind, SL_PACT_REPLACE);
  ASSERT_UINT_EQ(acts.a[1].start, 0);
  sl_pipeline_finish(p, h);
  sl_pipeline_free(p);
}

int main(void) {
  if (mkdtemp(dir) == NULL) return 1;
  SL_RUN(test_load_refusals);
  SL_RUN(test_sandbox_battery);
  SL_RUN(test_actions_in_wrong_phase);
  SL_RUN(test_dict_namespaces);
  SL_RUN(test_on_request);
  SL_RUN(test_chunk_verdict_end);
  SL_RUN(test_last_chunk);
  SL_RUN(test_json_helpers);
  SL_RUN(test_memory);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return SL_TEST_EXIT();
}
