/* Tests for runtime/lua/lpattern: sluice's matcher gives the same answers
 * as LuaJIT's own string.find, match, gmatch and gsub (results, and the
 * error for a bad pattern) over a fixed battery and over thousands of
 * random patterns and subjects; the step budget stops a backtracking bomb
 * with its message and reports the stop; the subject and result caps
 * raise naming the function and the length. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdlib.h>

#include "runtime/lua/lpattern.h"
#include "test.h"

/* Both matchers, side by side: `string` is LuaJIT's, `P` is ours.  check()
 * calls one function of each with the same arguments under pcall and
 * records any difference (values, or the error without its position). */
static const char battery_prelude[] =
    "local P = ...\n"
    "local fails, count = {}, 0\n"
    "local function pack(...) return {n = select('#', ...), ...} end\n"
    "local function show(t)\n"
    "  local o = {}\n"
    "  for i = 1, t.n do o[#o + 1] = type(t[i]) == 'string' and string.format('%q', t[i]) or tostring(t[i]) end\n"
    "  return table.concat(o, ', ')\n"
    "end\n"
    "local function norm(r)\n"
    "  if not r[1] then r[2] = tostring(r[2]):gsub('^[^:]*:%d+: ', '') end\n"
    "  return r\n"
    "end\n"
    "local function same(a, b)\n"
    "  if a.n ~= b.n then return false end\n"
    "  for i = 1, a.n do if a[i] ~= b[i] then return false end end\n"
    "  return true\n"
    "end\n"
    "local function gm(f, s, p)\n"
    "  local out = {}\n"
    "  for a, b, c in f(s, p) do out[#out + 1] = tostring(a) .. ',' .. tostring(b) .. ',' .. tostring(c) end\n"
    "  return table.concat(out, '|')\n"
    "end\n"
    "local fns = {\n"
    "  find = {string.find, P.find}, match = {string.match, P.match}, gsub = {string.gsub, P.gsub},\n"
    "  gmatch = {function(s, p) return gm(string.gmatch, s, p) end, function(s, p) return gm(P.gmatch, s, p) end},\n"
    "}\n"
    "local function check(name, ...)\n"
    "  count = count + 1\n"
    "  local a = norm(pack(pcall(fns[name][1], ...)))\n"
    "  local b = norm(pack(pcall(fns[name][2], ...)))\n"
    "  if not same(a, b) then\n"
    "    fails[#fails + 1] = name .. '(' .. show(pack(...)) .. '): luajit ' .. show(a) .. ' / sluice ' .. show(b)\n"
    "  end\n"
    "end\n";

static const char battery_fixed[] =
    "local subjects = {'', 'a', 'abc', 'hello world', '  padded  ', 'aaa', 'aaab', 'x = 10, y = 20',\n"
    "  'THE (quick) fox', 'f(a(b)c)d', 'a\\0b\\0c', '\\n\\t x', 'caf\\195\\169', '[]]^$%', 'a.b-c+d*e?f',\n"
    "  'one two  three', '12ab34CD', '-- comment', 'key=val; k2=v2'}\n"
    "local patterns = {'', 'a', '.', '%a+', '%d+', '%s*', '%w+', '%p', '%c', '%g+', '%l+', '%u+', '%x+', '%z',\n"
    "  '%A+', '%D', '%S+', '%W', '%P+', '%C+', '%L', '%U', '%X', '%G', '%Z',\n"
    "  '^a', '^', '$', 'c$', '^$', 'a$b', '^hello', 'world$', 'a*', 'a+', 'a-', 'a?', 'a-b', 'a*b', '.-', '.*',\n"
    "  '.-b', '[abc]', '[^abc]+', '[a-c]+', '[%a_]+', '[%]]', '[]]', '[^]]', '[a%-]', '[-a]', '[a-]', '[%d%s]+',\n"
    "  '[^%s]+', '(a)', '(a*)', '()a()', '(h)(e)(l)', '((a)(b))', '(%w+)=(%w+)', '%b()', '%b[]', '%baa',\n"
    "  '%f[%w]%w+', '%f[%W]', '%f[%a]', '%f[^%z]', '%f[%z]', '(a)%1', '(%a)%1', '(.)%1', '()%1', '(x)?%1',\n"
    "  '[%w_]*', '^(%s*)(.-)(%s*)$', '%s+$', '^%s+', '%.', '%%', 'a.b', '\\0', '%z+', '[\\0]', 'b\\0c',\n"
    "  '%', '[a', '%b', '%ba', '(a', 'a)', '%1', '(a)%2', '%f', '%fa', '(()', '[%', 'x**', '*', '+a', '?',\n"
    "  '(()())', '%0', '(%1)', '^*', '[%a-z]', '[a-%z]', '[!-/]+', '%-', '%^', '^^', '$$', 'a$$', '%$'}\n"
    "for _, s in ipairs(subjects) do\n"
    "  for _, p in ipairs(patterns) do\n"
    "    check('find', s, p); check('match', s, p); check('gmatch', s, p)\n"
    "    check('gsub', s, p, '<%0>'); check('gsub', s, p, '%1'); check('gsub', s, p, 'x', 1)\n"
    "    for _, i in ipairs({-100, -3, -1, 0, 1, 2, 5, 100}) do\n"
    "      check('find', s, p, i); check('match', s, p, i); check('find', s, p, i, true)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "-- replacements: strings with escapes, tables, functions, numbers, bad values\n"
    "local reps = {'', '%%', '%', 'x%', '%a', '%0%0', '%1-%2', '%2', '%9', 7, 1.5,\n"
    "  {hello = 'HI', a = false, o = 0, l = true}, {},\n"
    "  function(...) return table.concat({...}, '+') end, function() return nil end,\n"
    "  function() return false end, function() return {} end, function(a) return #a end}\n"
    "for _, s in ipairs({'hello world', 'abc', '', 'a,b,,c'}) do\n"
    "  for _, p in ipairs({'o', 'l+', '(l)(l)', '%w+', '', '()', '(o)()', ',', '^h', 'x*'}) do\n"
    "    for _, r in ipairs(reps) do\n"
    "      check('gsub', s, p, r)\n"
    "      for _, n in ipairs({-1, 0, 1, 2, 2.5}) do check('gsub', s, p, r, n) end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "check('gsub', 'abc', 'b', nil); check('gsub', 'abc', 'b', true); check('gsub', 'abc'); check('find', 'abc')\n"
    "check('find', nil, 'a'); check('match', {}, 'a'); check('gmatch', 'abc', nil); check('find', 12345, 3)\n"
    "check('find', 'abc', 'b', 'x'); check('gsub', 12345, '%d', 9)\n"
    "-- the nesting limit, on both sides of it\n"
    "for k = 190, 210 do\n"
    "  check('find', string.rep('a', 300), string.rep('a?', k))\n"
    "  check('find', string.rep('a', 300), string.rep('(a)', math.min(k, 31)) .. string.rep('a?', k - 31))\n"
    "  check('match', '', string.rep('a-', k)); check('match', 'b', string.rep('%%a-', k) .. 'b')\n"
    "end\n"
    "check('find', string.rep('a', 40), string.rep('(a)', 32)); check('find', string.rep('a', 40), string.rep('(a)', 33))\n"
    "return count, fails\n";

/* Random patterns built from tokens (some of them malformed on purpose)
 * over random subjects; a fixed seed keeps every run the same. */
static const char battery_random[] =
    "math.randomseed(20240613)\n"
    "local toks = {'a', 'b', 'c', '.', '%a', '%d', '%s', '%w', '%p', '%A', '%S', '[ab]', '[^a]', '[a-c]',\n"
    "  '[%d_]', '[]]', '*', '+', '-', '?', '(', ')', '()', '%1', '%2', '^', '$', '%bab', '%b()', '%f[%w]',\n"
    "  '%f[%W]', '%', '[', ']', 'x', ' ', '%%', '%.', '(a)', '(.-)', '(%w+)'}\n"
    "local alpha = 'aabbc (d)1_2.x ab'\n"
    "for i = 1, 6000 do\n"
    "  local n, pt = math.random(1, 7), {}\n"
    "  for j = 1, n do pt[j] = toks[math.random(#toks)] end\n"
    "  local p = table.concat(pt)\n"
    "  local sl, st = math.random(0, 14), {}\n"
    "  for j = 1, sl do local k = math.random(#alpha); st[j] = alpha:sub(k, k) end\n"
    "  local s = table.concat(st)\n"
    "  check('find', s, p); check('match', s, p, math.random(-3, 4)); check('gmatch', s, p)\n"
    "  check('gsub', s, p, '[%0%1]'); check('gsub', s, p, function(a, b) return b or a end)\n"
    "end\n"
    "return count, fails\n";

static lua_State *both_state(sl_lpat_limits_t *lim) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  sl_lpat_push_lib(L, lim);
  lua_setglobal(L, "P");
  return L;
}

static int run_battery(const char *body, int *count) {
  static sl_lpat_limits_t lim = {0, 0, 0, NULL};
  lua_State *L = both_state(&lim);
  size_t n = strlen(battery_prelude) + strlen(body);
  char *src = malloc(n + 1);
  snprintf(src, n + 1, "%s%s", battery_prelude, body);
  int fails = -1;
  lua_getglobal(L, "P");
  if (luaL_loadbuffer(L, src, n, "=battery") != 0) {
    fprintf(stderr, "battery: %s\n", lua_tostring(L, -1));
  } else {
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 2, 0) != 0) {
      fprintf(stderr, "battery: %s\n", lua_tostring(L, -1));
    } else {
      *count = (int)lua_tointeger(L, -2);
      fails = (int)lua_objlen(L, -1);
      for (int i = 1; i <= fails && i <= 40; i++) {
        lua_rawgeti(L, -1, i);
        fprintf(stderr, "  differs: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    }
  }
  free(src);
  lua_close(L);
  return fails;
}

static void test_same_as_luajit_fixed(void) {
  int count = 0;
  int fails = run_battery(battery_fixed, &count);
  fprintf(stderr, "  %d comparisons\n", count);
  ASSERT_GT(count, 20000);
  ASSERT_EQ(fails, 0);
}

static void test_same_as_luajit_random(void) {
  int count = 0;
  int fails = run_battery(battery_random, &count);
  fprintf(stderr, "  %d comparisons\n", count);
  ASSERT_EQ(count, 30000);
  ASSERT_EQ(fails, 0);
}

/* The C level: offsets, captures, the step budget and its message. */
static void test_c_api_and_step_budget(void) {
  sl_lpat_t m;
  const char *s = "key = value";
  size_t st, en;
  sl_lpat_init(&m, s, strlen(s), "(%w+)%s*=%s*()", 14, 0);
  ASSERT_EQ(sl_lpat_find(&m, 0, &st, &en), 1);
  ASSERT_UINT_EQ(st, 0);
  ASSERT_UINT_EQ(en, 6);
  ASSERT_EQ(m.ncap, 2);
  ASSERT_EQ(m.cap[0].len, 3);
  ASSERT_EQ(m.cap[1].len, SL_LPAT_CAP_POSITION);
  ASSERT_UINT_EQ(m.cap[1].at, 6);
  ASSERT_GT(m.steps, 0);

  sl_lpat_init(&m, s, strlen(s), "[a", 2, 0);
  ASSERT_EQ(sl_lpat_find(&m, 0, &st, &en), -1);
  ASSERT_EQ(m.status, SL_LPAT_EPATTERN);
  ASSERT_STR_EQ(m.msg, "malformed pattern (missing ']')");

  /* Exponential backtracking: stopped at the budget, not after hours. */
  char subject[5000], pat[64];
  memset(subject, 'a', sizeof(subject));
  for (int i = 0; i < 30; i++) memcpy(pat + 2 * i, "a*", 2);
  pat[60] = 'b';
  sl_lpat_init(&m, subject, sizeof(subject), pat, 61, 1000000);
  ASSERT_EQ(sl_lpat_find(&m, 0, &st, &en), -1);
  ASSERT_EQ(m.status, SL_LPAT_ESTEPS);
  ASSERT_STR_EQ(m.msg, "pattern too complex: stopped after 1000000 steps");
  ASSERT_UINT_EQ(m.steps, 1000001);
  /* The session stays stopped. */
  ASSERT_EQ(sl_lpat_match_at(&m, 0, 0), -2);
}

/* The Lua level under limits: the bomb raises and trips the flag; the
 * subject cap and the gsub result cap raise naming function and length. */
static void test_lua_limits(void) {
  int tripped = 0;
  sl_lpat_limits_t lim = {100, 50000, 1000, &tripped};
  lua_State *L = both_state(&lim);
  static const char src[] =
      "local r = {}\n"
      "r[1] = select(2, pcall(P.find, ('a'):rep(90), ('a*'):rep(20) .. 'b'))\n"
      "r[2] = select(2, pcall(P.find, ('a'):rep(101), 'a'))\n"
      "r[3] = select(2, pcall(P.gsub, ('a'):rep(100), 'a', ('x'):rep(11)))\n"
      "r[4] = select(2, pcall(P.gmatch, ('a'):rep(101), 'a'))\n"
      "r[5] = P.gsub(('a'):rep(100), 'a', ('x'):rep(10))\n"
      "r[6] = select(2, pcall(P.match, ('a'):rep(100), 'a'))\n"
      "return unpack(r, 1, 6)\n";
  ASSERT_EQ(luaL_loadbuffer(L, src, sizeof(src) - 1, "=lim"), 0);
  ASSERT_EQ(lua_pcall(L, 0, 6, 0), 0);
  ASSERT_STR_EQ(lua_tostring(L, 1), "pattern too complex: stopped after 50000 steps");
  ASSERT_EQ(tripped, 1);
  ASSERT_STR_EQ(lua_tostring(L, 2), "string.find: subject of 101 bytes is longer than the limit (100 bytes)");
  ASSERT_STR_EQ(lua_tostring(L, 3), "string.gsub: result is longer than the limit (1000 bytes)");
  ASSERT_STR_EQ(lua_tostring(L, 4), "string.gmatch: subject of 101 bytes is longer than the limit (100 bytes)");
  ASSERT_EQ((int)lua_objlen(L, 5), 1000);
  ASSERT_STR_EQ(lua_tostring(L, 6), "a");
  lua_close(L);
}

int main(void) {
  SL_RUN(test_same_as_luajit_fixed);
  SL_RUN(test_same_as_luajit_random);
  SL_RUN(test_c_api_and_step_budget);
  SL_RUN(test_lua_limits);
  return SL_TEST_EXIT();
}
