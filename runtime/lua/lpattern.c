/* lpattern.c: the step-counted Lua pattern matcher (see lpattern.h).
 *
 * The matcher is a backtracking recursive descent over the pattern text,
 * the way Lua 5.1 defines the language: a single-character class may be
 * followed by a quantifier, and everything after it is matched by a
 * recursive call so that the quantifier can give characters back.  Errors
 * do not jump: every function answers an offset, NOMATCH or STOP, and STOP
 * travels back up with the reason in the session.  Offsets are used instead
 * of pointers so that "one past the end" is plain arithmetic.
 */
#include "runtime/lua/lpattern.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <string.h>

#define NOMATCH ((ssize_t)-1)
#define STOP ((ssize_t)-2)

/* Records the first error of the session; later ones would only hide it. */
static ssize_t sl__stop(sl_lpat_t *m, int status, const char *msg) {
  if (m->status == SL_LPAT_OK) {
    m->status = status;
    snprintf(m->msg, sizeof(m->msg), "%s", msg);
  }
  return STOP;
}

/* One step of work.  Returns 0 once the budget is spent. */
static int sl__step(sl_lpat_t *m) {
  m->steps++;
  if (m->max_steps && m->steps > m->max_steps) {
    if (m->status == SL_LPAT_OK) {
      m->status = SL_LPAT_ESTEPS;
      snprintf(m->msg, sizeof(m->msg), "pattern too complex: stopped after %llu steps",
               (unsigned long long)m->max_steps);
    }
    return 0;
  }
  return 1;
}

void sl_lpat_init(sl_lpat_t *m, const char *s, size_t slen, const char *p, size_t plen, uint64_t max_steps) {
  memset(m, 0, sizeof(*m));
  m->s = s;
  m->slen = slen;
  /* Lua 5.1 reads patterns as C strings: the first NUL ends one. */
  const char *nul = memchr(p, '\0', plen);
  m->p = p;
  m->plen = nul ? (size_t)(nul - p) : plen;
  m->max_steps = max_steps;
}

/* The ASCII character classes, as the C locale (and LuaJIT) define them. */
static int sl__is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int sl__is_digit(int c) { return c >= '0' && c <= '9'; }

/* Does character c belong to class letter cl (%a, %D, ...)?  A letter that
 * names no class stands for itself, as does any other character. */
static int sl__in_class(int c, int cl) {
  int lower = (cl >= 'A' && cl <= 'Z') ? cl + ('a' - 'A') : cl;
  int r;
  switch (lower) {
    case 'a': r = sl__is_alpha(c); break;
    case 'c': r = c < 32 || c == 127; break;
    case 'd': r = sl__is_digit(c); break;
    case 'g': r = c > 32 && c < 127; break;
    case 'l': r = c >= 'a' && c <= 'z'; break;
    case 'p': r = c > 32 && c < 127 && !sl__is_alpha(c) && !sl__is_digit(c); break;
    case 's': r = c == ' ' || (c >= 9 && c <= 13); break;
    case 'u': r = c >= 'A' && c <= 'Z'; break;
    case 'w': r = sl__is_alpha(c) || sl__is_digit(c); break;
    case 'x': r = sl__is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); break;
    case 'z': r = c == 0; break;
    default: return cl == c;
  }
  return lower != cl ? !r : r;
}

/* The offset just past the single-character class at pattern offset i
 * ("x", "%x", "." or a set "[...]"), or STOP when the pattern is cut off. */
static ssize_t sl__class_end(sl_lpat_t *m, size_t i) {
  const char *p = m->p;
  size_t n = m->plen;
  char c = p[i++];
  if (c == '%') {
    if (i >= n) return sl__stop(m, SL_LPAT_EPATTERN, "malformed pattern (ends with '%')");
    return (ssize_t)i + 1;
  }
  if (c == '[') {
    if (i < n && p[i] == '^') i++;
    /* The first character of a set is taken as a member even when it is
     * ']' ("[]]" is the set of one ']'), so the test comes after it. */
    do {
      if (i >= n) return sl__stop(m, SL_LPAT_EPATTERN, "malformed pattern (missing ']')");
      c = p[i++];
      if (c == '%' && i < n) i++;
    } while (i >= n || p[i] != ']');
    return (ssize_t)i + 1;
  }
  return (ssize_t)i;
}

/* Is c in the set whose '[' is at open and whose ']' is at close? */
static int sl__in_set(const sl_lpat_t *m, int c, size_t open, size_t close) {
  const unsigned char *p = (const unsigned char *)m->p;
  int yes = 1;
  size_t i = open + 1;
  if (p[i] == '^') {
    yes = 0;
    i++;
  }
  for (; i < close; i++) {
    if (p[i] == '%') {
      i++;
      if (sl__in_class(c, p[i])) return yes;
    } else if (i + 2 < close && p[i + 1] == '-') {
      if (p[i] <= c && c <= p[i + 2]) return yes;
      i += 2;
    } else if (p[i] == c) {
      return yes;
    }
  }
  return !yes;
}

/* Does subject character c match the class spanning pattern [i, end)? */
static int sl__single(const sl_lpat_t *m, int c, size_t i, size_t end) {
  switch (m->p[i]) {
    case '.': return 1;
    case '%': return sl__in_class(c, (unsigned char)m->p[i + 1]);
    case '[': return sl__in_set(m, c, i, end - 1);
    default: return (unsigned char)m->p[i] == c;
  }
}

static ssize_t sl__match(sl_lpat_t *m, size_t si, size_t pi);

/* "x*": take as many as match, then give them back one at a time. */
static ssize_t sl__greedy(sl_lpat_t *m, size_t si, size_t pi, size_t ep) {
  size_t k = 0;
  while (si + k < m->slen && sl__single(m, (unsigned char)m->s[si + k], pi, ep)) {
    if (!sl__step(m)) return STOP;
    k++;
  }
  for (;;) {
    ssize_t r = sl__match(m, si + k, ep + 1);
    if (r != NOMATCH) return r;
    if (k == 0) return NOMATCH;
    k--;
  }
}

/* "x-": try the rest first, take one more only when the rest fails. */
static ssize_t sl__lazy(sl_lpat_t *m, size_t si, size_t pi, size_t ep) {
  for (;;) {
    ssize_t r = sl__match(m, si, ep + 1);
    if (r != NOMATCH) return r;
    if (si < m->slen && sl__single(m, (unsigned char)m->s[si], pi, ep))
      si++;
    else
      return NOMATCH;
  }
}

static ssize_t sl__open_capture(sl_lpat_t *m, size_t si, size_t pi, ssize_t what) {
  if (m->ncap >= SL_LPAT_MAXCAPTURES) return sl__stop(m, SL_LPAT_EPATTERN, "too many captures");
  m->cap[m->ncap].at = si;
  m->cap[m->ncap].len = what;
  m->ncap++;
  ssize_t r = sl__match(m, si, pi);
  if (r == NOMATCH) m->ncap--;
  return r;
}

/* ')' closes the innermost capture still open. */
static ssize_t sl__close_capture(sl_lpat_t *m, size_t si, size_t pi) {
  int k = m->ncap - 1;
  while (k >= 0 && m->cap[k].len != SL_LPAT_CAP_OPEN) k--;
  if (k < 0) return sl__stop(m, SL_LPAT_EPATTERN, "invalid pattern capture");
  m->cap[k].len = (ssize_t)(si - m->cap[k].at);
  ssize_t r = sl__match(m, si, pi);
  if (r == NOMATCH) m->cap[k].len = SL_LPAT_CAP_OPEN;
  return r;
}

/* "%1".."%9": the text of a closed capture again.  A position capture has
 * no text, so a reference to one never matches (as in Lua). */
static ssize_t sl__backref(sl_lpat_t *m, size_t si, int digit) {
  int k = digit - '1';
  if (k < 0 || k >= m->ncap || m->cap[k].len == SL_LPAT_CAP_OPEN)
    return sl__stop(m, SL_LPAT_EPATTERN, "invalid capture index");
  ssize_t len = m->cap[k].len;
  if (len < 0) return NOMATCH;
  if (m->slen - si >= (size_t)len && memcmp(m->s + m->cap[k].at, m->s + si, (size_t)len) == 0)
    return (ssize_t)(si + (size_t)len);
  return NOMATCH;
}

/* "%bxy" with bi at x: a balanced run from x to its matching y. */
static ssize_t sl__balance(sl_lpat_t *m, size_t si, size_t bi) {
  if (bi + 1 >= m->plen) return sl__stop(m, SL_LPAT_EPATTERN, "unbalanced pattern");
  char open = m->p[bi], close = m->p[bi + 1];
  if (si >= m->slen || m->s[si] != open) return NOMATCH;
  int level = 1;
  for (size_t k = si + 1; k < m->slen; k++) {
    if (!sl__step(m)) return STOP;
    /* The closing character is tested first, so "%baa" stops at the second 'a'. */
    if (m->s[k] == close) {
      if (--level == 0) return (ssize_t)k + 1;
    } else if (m->s[k] == open) {
      level++;
    }
  }
  return NOMATCH;
}

/* Matches pattern from pi against subject from si; the answer is the end
 * of the match.  Plain characters loop here instead of recursing, so the
 * depth grows only with quantifiers and captures (as LuaJIT counts it). */
static ssize_t sl__match_body(sl_lpat_t *m, size_t si, size_t pi) {
  const char *p = m->p;
  size_t n = m->plen;
  for (;;) {
    if (!sl__step(m)) return STOP;
    if (pi == n) return (ssize_t)si;
    char pc = p[pi];
    if (pc == '(') {
      if (pi + 1 < n && p[pi + 1] == ')') return sl__open_capture(m, si, pi + 2, SL_LPAT_CAP_POSITION);
      return sl__open_capture(m, si, pi + 1, SL_LPAT_CAP_OPEN);
    }
    if (pc == ')') return sl__close_capture(m, si, pi + 1);
    if (pc == '$' && pi + 1 == n) return si == m->slen ? (ssize_t)si : NOMATCH;
    if (pc == '%' && pi + 1 < n) {
      char nc = p[pi + 1];
      if (nc == 'b') {
        ssize_t r = sl__balance(m, si, pi + 2);
        if (r < 0) return r;
        si = (size_t)r;
        pi += 4;
        continue;
      }
      if (nc == 'f') {
        pi += 2;
        if (pi >= n || p[pi] != '[') return sl__stop(m, SL_LPAT_EPATTERN, "missing '[' after '%f' in pattern");
        ssize_t ep = sl__class_end(m, pi);
        if (ep < 0) return STOP;
        /* The subject is bounded by NULs on both sides, as in Lua. */
        int prev = si == 0 ? 0 : (unsigned char)m->s[si - 1];
        int cur = si < m->slen ? (unsigned char)m->s[si] : 0;
        if (sl__in_set(m, prev, pi, (size_t)ep - 1) || !sl__in_set(m, cur, pi, (size_t)ep - 1)) return NOMATCH;
        pi = (size_t)ep;
        continue;
      }
      if (sl__is_digit((unsigned char)nc)) {
        ssize_t r = sl__backref(m, si, (unsigned char)nc);
        if (r < 0) return r;
        si = (size_t)r;
        pi += 2;
        continue;
      }
    }
    ssize_t ep = sl__class_end(m, pi);
    if (ep < 0) return STOP;
    size_t e = (size_t)ep;
    int hit = si < m->slen && sl__single(m, (unsigned char)m->s[si], pi, e);
    if (e < n) {
      switch (p[e]) {
        case '?':
          if (hit) {
            ssize_t r = sl__match(m, si + 1, e + 1);
            if (r != NOMATCH) return r;
          }
          pi = e + 1;
          continue;
        case '*': return sl__greedy(m, si, pi, e);
        case '+': return hit ? sl__greedy(m, si + 1, pi, e) : NOMATCH;
        case '-': return sl__lazy(m, si, pi, e);
        default: break;
      }
    }
    if (!hit) return NOMATCH;
    si++;
    pi = e;
  }
}

static ssize_t sl__match(sl_lpat_t *m, size_t si, size_t pi) {
  if (++m->depth > SL_LPAT_MAXDEPTH) {
    m->depth--;
    return sl__stop(m, SL_LPAT_EPATTERN, "pattern too complex");
  }
  ssize_t r = sl__match_body(m, si, pi);
  m->depth--;
  return r;
}

ssize_t sl_lpat_match_at(sl_lpat_t *m, size_t pat_at, size_t at) {
  if (m->status != SL_LPAT_OK) return STOP;
  m->ncap = 0;
  m->depth = 0;
  return sl__match(m, at, pat_at);
}

int sl_lpat_find(sl_lpat_t *m, size_t init, size_t *start, size_t *end) {
  int anchored = m->plen > 0 && m->p[0] == '^';
  size_t si = init;
  /* Every start from init to the end inclusive: an empty pattern matches
   * after the last character too. */
  do {
    ssize_t r = sl_lpat_match_at(m, anchored ? 1 : 0, si);
    if (r == STOP) return -1;
    if (r >= 0) {
      *start = si;
      *end = (size_t)r;
      return 1;
    }
  } while (si++ < m->slen && !anchored);
  return 0;
}

int sl_lpat_is_plain(const char *p, size_t plen) {
  for (size_t i = 0; i < plen; i++)
    if (strchr("^$*+?.([%-", p[i]) != NULL && p[i] != '\0') return 0;
  return 1;
}

/* ---- The Lua functions ---- */

static const sl_lpat_limits_t *sl__limits(lua_State *L) {
  return (const sl_lpat_limits_t *)lua_touserdata(L, lua_upvalueindex(1));
}

/* Raises the session's error; a spent budget is reported to the owner
 * first, so that a pcall in the script cannot hide it. */
static int sl__raise(lua_State *L, const sl_lpat_t *m, const sl_lpat_limits_t *lim) {
  if (m->status == SL_LPAT_ESTEPS && lim->tripped) *lim->tripped = 1;
  return luaL_error(L, "%s", m->msg);
}

static const char *sl__subject(lua_State *L, int idx, const char *fname, const sl_lpat_limits_t *lim, size_t *len) {
  const char *s = luaL_checklstring(L, idx, len);
  if (lim->subject_max && *len > lim->subject_max) {
    char msg[160];
    snprintf(msg, sizeof(msg), "string.%s: subject of %zu bytes is longer than the limit (%zu bytes)", fname, *len,
             lim->subject_max);
    luaL_error(L, "%s", msg);
  }
  return s;
}

/* Pushes capture k of the match [st, en): a string, a position (1-based),
 * or the whole match when the pattern has no captures and k is 0. */
static void sl__push_capture(lua_State *L, const sl_lpat_t *m, int k, size_t st, size_t en) {
  if (k >= m->ncap) {
    if (k != 0) luaL_error(L, "invalid capture index");
    lua_pushlstring(L, m->s + st, en - st);
    return;
  }
  ssize_t len = m->cap[k].len;
  if (len == SL_LPAT_CAP_OPEN) luaL_error(L, "unfinished capture");
  if (len == SL_LPAT_CAP_POSITION)
    lua_pushinteger(L, (lua_Integer)m->cap[k].at + 1);
  else
    lua_pushlstring(L, m->s + m->cap[k].at, (size_t)len);
}

static int sl__push_captures(lua_State *L, const sl_lpat_t *m, size_t st, size_t en, int whole) {
  int n = (m->ncap == 0 && whole) ? 1 : m->ncap;
  luaL_checkstack(L, n, "too many captures");
  for (int k = 0; k < n; k++) sl__push_capture(L, m, k, st, en);
  return n;
}

/* Lua's relative string position: negative counts from the end. */
static ptrdiff_t sl__posrelat(lua_Integer pos, size_t len) {
  if (pos < 0) pos += (lua_Integer)len + 1;
  return pos < 0 ? 0 : (ptrdiff_t)pos;
}

static int sl__find_or_match(lua_State *L, int find) {
  const sl_lpat_limits_t *lim = sl__limits(L);
  size_t ls, lp;
  const char *s = sl__subject(L, 1, find ? "find" : "match", lim, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  ptrdiff_t init = sl__posrelat(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init < 0) init = 0;
  if ((size_t)init > ls) init = (ptrdiff_t)ls;
  if (find && (lua_toboolean(L, 4) || sl_lpat_is_plain(p, lp))) {
    const char *hit = memmem(s + init, ls - (size_t)init, p, lp);
    if (hit == NULL) {
      lua_pushnil(L);
      return 1;
    }
    lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
    lua_pushinteger(L, (lua_Integer)(hit - s + (ptrdiff_t)lp));
    return 2;
  }
  sl_lpat_t m;
  sl_lpat_init(&m, s, ls, p, lp, lim->max_steps);
  size_t st, en;
  int rc = sl_lpat_find(&m, (size_t)init, &st, &en);
  if (rc < 0) return sl__raise(L, &m, lim);
  if (rc == 0) {
    lua_pushnil(L);
    return 1;
  }
  if (!find) return sl__push_captures(L, &m, st, en, 1);
  lua_pushinteger(L, (lua_Integer)st + 1);
  lua_pushinteger(L, (lua_Integer)en);
  return 2 + sl__push_captures(L, &m, st, en, 0);
}

static int sl__find(lua_State *L) { return sl__find_or_match(L, 1); }
static int sl__match_fn(lua_State *L) { return sl__find_or_match(L, 0); }

/* The iterator gmatch returns: upvalues limits, subject, pattern, and the
 * offset the next search starts at.  As in Lua 5.1, '^' is an ordinary
 * character here. */
static int sl__gmatch_next(lua_State *L) {
  const sl_lpat_limits_t *lim = sl__limits(L);
  size_t ls, lp;
  const char *s = lua_tolstring(L, lua_upvalueindex(2), &ls);
  const char *p = lua_tolstring(L, lua_upvalueindex(3), &lp);
  size_t pos = (size_t)lua_tointeger(L, lua_upvalueindex(4));
  sl_lpat_t m;
  sl_lpat_init(&m, s, ls, p, lp, lim->max_steps);
  for (size_t si = pos; si <= ls; si++) {
    ssize_t r = sl_lpat_match_at(&m, 0, si);
    if (r == STOP) return sl__raise(L, &m, lim);
    if (r >= 0) {
      /* An empty match moves on by one, or the iterator would stand still. */
      size_t next = (size_t)r == si ? (size_t)r + 1 : (size_t)r;
      lua_pushinteger(L, (lua_Integer)next);
      lua_replace(L, lua_upvalueindex(4));
      return sl__push_captures(L, &m, si, (size_t)r, 1);
    }
  }
  return 0;
}

static int sl__gmatch(lua_State *L) {
  const sl_lpat_limits_t *lim = sl__limits(L);
  size_t ls;
  sl__subject(L, 1, "gmatch", lim, &ls);
  luaL_checkstring(L, 2);
  lua_settop(L, 2);
  lua_pushlightuserdata(L, (void *)lim);
  lua_insert(L, 1);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, sl__gmatch_next, 4);
  return 1;
}

/* gsub's output, with the length it has so far against the cap. */
typedef struct {
  luaL_Buffer b;
  size_t len;
  const sl_lpat_limits_t *lim;
} sl__out_t;

static void sl__out_grow(lua_State *L, sl__out_t *o, size_t n) {
  o->len += n;
  if (o->lim->result_max && o->len > o->lim->result_max) {
    char msg[120];
    snprintf(msg, sizeof(msg), "string.gsub: result is longer than the limit (%zu bytes)", o->lim->result_max);
    luaL_error(L, "%s", msg);
  }
}

static void sl__out_add(lua_State *L, sl__out_t *o, const char *s, size_t n) {
  sl__out_grow(L, o, n);
  luaL_addlstring(&o->b, s, n);
}

/* Adds the value on top of the stack (a string or number) and pops it. */
static void sl__out_add_top(lua_State *L, sl__out_t *o) {
  size_t n;
  lua_tolstring(L, -1, &n);
  sl__out_grow(L, o, n);
  luaL_addvalue(&o->b);
}

/* Adds the replacement of the match [st, en): the replacement string with
 * %0-%9 expanded (any other character after '%' stands for itself, as in
 * Lua 5.1), or what the table or function gives (false or nil keeps the
 * match). */
static void sl__add_replacement(lua_State *L, sl__out_t *o, const sl_lpat_t *m, size_t st, size_t en) {
  int tr = lua_type(L, 3);
  if (tr == LUA_TSTRING || tr == LUA_TNUMBER) {
    size_t lr;
    const char *r = lua_tolstring(L, 3, &lr);
    for (size_t i = 0; i < lr; i++) {
      if (r[i] != '%') {
        sl__out_add(L, o, r + i, 1);
        continue;
      }
      i++;
      /* Lua reads the replacement as a C string: a '%' at the very end
       * takes the terminating NUL as its character. */
      char c = i < lr ? r[i] : '\0';
      if (!sl__is_digit((unsigned char)c)) {
        sl__out_add(L, o, &c, 1);
      } else if (c == '0') {
        sl__out_add(L, o, m->s + st, en - st);
      } else {
        sl__push_capture(L, m, c - '1', st, en);
        sl__out_add_top(L, o);
      }
    }
    return;
  }
  if (tr == LUA_TFUNCTION) {
    lua_pushvalue(L, 3);
    int n = sl__push_captures(L, m, st, en, 1);
    lua_call(L, n, 1);
  } else {
    sl__push_capture(L, m, 0, st, en);
    lua_gettable(L, 3);
  }
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    lua_pushlstring(L, m->s + st, en - st);
  } else if (!lua_isstring(L, -1)) {
    return (void)luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  }
  sl__out_add_top(L, o);
}

static int sl__gsub(lua_State *L) {
  const sl_lpat_limits_t *lim = sl__limits(L);
  size_t ls, lp;
  const char *s = sl__subject(L, 1, "gsub", lim, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  int tr = lua_type(L, 3);
  lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
  luaL_argcheck(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
                "string/function/table expected");
  sl_lpat_t m;
  sl_lpat_init(&m, s, ls, p, lp, lim->max_steps);
  int anchored = m.plen > 0 && p[0] == '^';
  sl__out_t o;
  o.len = 0;
  o.lim = lim;
  luaL_buffinit(L, &o.b);
  size_t si = 0;
  lua_Integer n = 0;
  while (n < max_n) {
    ssize_t r = sl_lpat_match_at(&m, anchored ? 1 : 0, si);
    if (r == STOP) return sl__raise(L, &m, lim);
    if (r >= 0) {
      n++;
      sl__add_replacement(L, &o, &m, si, (size_t)r);
    }
    if (r >= 0 && (size_t)r > si)
      si = (size_t)r;
    else if (si < ls)
      sl__out_add(L, &o, s + si++, 1);
    else
      break;
    if (anchored) break;
  }
  sl__out_add(L, &o, s + si, ls - si);
  luaL_pushresult(&o.b);
  lua_pushinteger(L, n);
  return 2;
}

void sl_lpat_push_lib(lua_State *L, const sl_lpat_limits_t *lim) {
  static const struct {
    const char *name;
    lua_CFunction fn;
  } fns[] = {{"find", sl__find}, {"match", sl__match_fn}, {"gmatch", sl__gmatch}, {"gsub", sl__gsub}};
  lua_createtable(L, 0, 4);
  for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
    lua_pushlightuserdata(L, (void *)lim);
    lua_pushcclosure(L, fns[i].fn, 1);
    lua_setfield(L, -2, fns[i].name);
  }
}
