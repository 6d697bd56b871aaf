/* lpattern.h: sluice's own Lua pattern matcher, with a step budget.
 *
 * Tenant pipelines call string.find, match, gmatch and gsub on text they
 * do not control.  Lua's own matcher backtracks without bound, so a pattern
 * such as ("a*"):rep(30) .. "b" over a long subject runs for hours inside
 * one C call, where the instruction budget (lua_budget.h) never fires.
 * This matcher implements the same language (Lua 5.1 as LuaJIT runs it:
 * classes %a %c %d %g %l %p %s %u %w %x %z and their complements, sets,
 * quantifiers * + - ?, anchors, captures and position captures, %b, %f,
 * back-references %1-%9) and counts every step; past its budget it stops
 * with "pattern too complex: stopped after N steps".  Nesting is capped at
 * the depth LuaJIT allows (200), with LuaJIT's message.
 *
 * Two levels: sl_lpat_* is plain C over buffers the caller owns (no
 * allocation, no Lua); sl_lpat_push_lib builds the Lua functions find,
 * match, gmatch and gsub over it, with the pipeline's limits (the longest
 * subject, the step budget, the longest gsub result).
 *
 * Used by: pipeline.c (the sandbox's string table), tests/runtime/lua/
 * test_lpattern.c (which runs both matchers over one battery).
 */
#ifndef SL_LPATTERN_H
#define SL_LPATTERN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct lua_State lua_State;

#define SL_LPAT_MAXCAPTURES 32 /* captures one pattern may open (Lua's LUA_MAXCAPTURES) */
#define SL_LPAT_MAXDEPTH 200   /* nested matcher calls (LuaJIT's limit, same message) */

/* What a capture holds: its length, or one of these. */
#define SL_LPAT_CAP_OPEN (-1)     /* opened, not closed yet */
#define SL_LPAT_CAP_POSITION (-2) /* a position capture "()" */

/* How a match ended (sl_lpat_t.status). */
enum {
  SL_LPAT_OK = 0,
  SL_LPAT_EPATTERN = 1, /* the pattern is malformed (or nests too deep); msg says how */
  SL_LPAT_ESTEPS = 2,   /* the step budget ran out; msg says after how many */
};

/* One matching session over subject s and pattern p.  Fill it with
 * sl_lpat_init; steps add up over every call on it (gsub runs one session
 * for all its matches). */
typedef struct {
  const char *s;     /* the subject (not NUL-terminated) */
  size_t slen;
  const char *p;     /* the pattern; like Lua 5.1, it ends at its first NUL */
  size_t plen;
  uint64_t steps;     /* steps taken so far */
  uint64_t max_steps; /* the budget (0 = none) */
  int depth;          /* nested calls now */
  int ncap;           /* captures of the last match */
  struct {
    size_t at;        /* offset in s */
    ssize_t len;      /* length, SL_LPAT_CAP_OPEN or SL_LPAT_CAP_POSITION */
  } cap[SL_LPAT_MAXCAPTURES];
  int status;         /* SL_LPAT_OK until an error stops the session */
  char msg[80];       /* the error, Lua's words ("malformed pattern (missing ']')") */
} sl_lpat_t;

/* Starts a session.  The buffers must outlive it. */
void sl_lpat_init(sl_lpat_t *m, const char *s, size_t slen, const char *p, size_t plen, uint64_t max_steps);

/* Matches the pattern from pattern offset pat_at (1 past a leading '^' the
 * caller handled, or 0) at subject offset at.  Returns the end offset of the
 * match (ncap and cap describe its captures), -1 when it does not match
 * there, or -2 when the session stopped (status and msg say why). */
ssize_t sl_lpat_match_at(sl_lpat_t *m, size_t pat_at, size_t at);

/* Finds the first match starting at or after init (only at init when the
 * pattern starts with '^').  Returns 1 with *start and *end, 0 when there
 * is none, -1 when the session stopped. */
int sl_lpat_find(sl_lpat_t *m, size_t init, size_t *start, size_t *end);

/* 1 when p has none of Lua's special characters (find may search it plainly). */
int sl_lpat_is_plain(const char *p, size_t plen);

/* What the Lua functions may use. */
typedef struct {
  size_t subject_max; /* longest subject; longer ones raise, naming the function and the length */
  uint64_t max_steps; /* steps per pattern call (0 = no budget) */
  size_t result_max;  /* longest string gsub builds (0 = no cap) */
  int *tripped;       /* set to 1 when the step budget stops a call (may be NULL) */
} sl_lpat_limits_t;

/* Pushes a table {find, match, gmatch, gsub} whose functions behave as
 * Lua 5.1's (as LuaJIT runs them) under lim, which must outlive the state.
 * Errors raise with Lua's words; the budget raises "pattern too complex:
 * stopped after N steps" and sets *lim->tripped first.  Raises on memory
 * errors like any Lua API call. */
void sl_lpat_push_lib(lua_State *L, const sl_lpat_limits_t *lim);

#endif
