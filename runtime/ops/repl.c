/* repl.c: `sluice repl` (see repl.h). */
#include "runtime/ops/repl.h"

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/base/alloc.h"
#include "runtime/lua/generation.h"
#include "runtime/lua/ttldict.h"

typedef struct {
  lua_State *L;
  int eval_ref;
  const char *src;        /* the chunk so far */
  size_t len;
  int status;             /* 0 ok, 1 more, 2 error */
  char *text;             /* eval's text (malloc'd copy) */
  size_t text_len;
} sl__repl_t;

static lua_State *sl__interrupt_L; /* the state a Ctrl-C interrupts */

static const char sl__repl_bootstrap[] =
    "local repl = require 'sluice.repl'\n"
    "repl.install_globals(_G)\n"
    "return repl.eval\n";

static int sl__repl_open(lua_State *L) {
  sl__repl_t *r = lua_touserdata(L, 1);
  if (luaL_loadbuffer(L, sl__repl_bootstrap, sizeof(sl__repl_bootstrap) - 1, "=sluice.repl") != 0) lua_error(L);
  lua_call(L, 0, 1);
  r->eval_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

/* The interrupt hook: set by the SIGINT handler, it removes itself and
 * raises in the chunk (the way lua.c does it). */
static void sl__interrupted(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

static void sl__on_sigint(int sig) {
  signal(sig, SIG_DFL); /* a second Ctrl-C ends the process */
  if (sl__interrupt_L)
    lua_sethook(sl__interrupt_L, sl__interrupted, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static int sl__repl_eval(lua_State *L) {
  sl__repl_t *r = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->eval_ref);
  lua_pushlstring(L, r->src, r->len);
  lua_pushliteral(L, "=stdin");
  lua_call(L, 2, 2);
  const char *st = lua_tostring(L, -2);
  size_t n = 0;
  const char *t = lua_tolstring(L, -1, &n);
  r->status = st && strcmp(st, "ok") == 0 ? 0 : st && strcmp(st, "more") == 0 ? 1 : 2;
  r->text = sl_malloc(n + 1);
  memcpy(r->text, t ? t : "", n);
  r->text[n] = '\0';
  r->text_len = n;
  return 0;
}

static void sl__repl_usage(FILE *f) {
  fprintf(f,
          "usage: sluice repl\n"
          "  A LuaJIT prompt with the sluice library loaded: inspect(v), placement,\n"
          "  sluice.<module> (sluice.editdist, sluice.dict, ...); shipped policies load\n"
          "  with require 'placement.least_loaded'.  Reads stdin (a script may be piped\n"
          "  in); `=expr` or an expression prints its values; a chunk may span lines.\n");
}

int sl_repl_main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      sl__repl_usage(stdout);
      return 0;
    }
    fprintf(stderr, "sluice repl: unknown option '%s'\n", argv[i]);
    sl__repl_usage(stderr);
    return 2;
  }
  sl_alloc_init();
  sl__repl_t r;
  memset(&r, 0, sizeof(r));
  sl_lua_mem_t mem = {0, 0, 0, 0};
  char err[512];
  r.L = sl_lua_new_state(&mem, err, sizeof(err));
  if (r.L == NULL) {
    fprintf(stderr, "sluice repl: %s\n", err);
    return 2;
  }
  if (lua_cpcall(r.L, sl__repl_open, &r) != 0) {
    fprintf(stderr, "sluice repl: %s\n", lua_tostring(r.L, -1));
    lua_close(r.L);
    return 2;
  }
  int interactive = isatty(0);
  if (interactive) {
    printf("sluice %s repl (%s): inspect(v), placement, sluice.<module>; =expr prints; Ctrl-D leaves\n",
           SL_VERSION, LUAJIT_VERSION);
  }
  char *line = NULL, *chunk = NULL;
  size_t line_cap = 0, chunk_len = 0, chunk_cap = 0;
  int failures = 0;
  for (;;) {
    if (interactive) {
      fputs(chunk_len ? ">> " : "> ", stdout);
      fflush(stdout);
    }
    ssize_t n = getline(&line, &line_cap, stdin);
    if (n < 0) break;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
    /* The chunk so far, lines joined by '\n'. */
    size_t need = chunk_len + (chunk_len ? 1 : 0) + (size_t)n + 1;
    if (need > chunk_cap) {
      chunk_cap = need * 2;
      chunk = sl_realloc(chunk, chunk_cap);
    }
    if (chunk_len) chunk[chunk_len++] = '\n';
    memcpy(chunk + chunk_len, line, (size_t)n);
    chunk_len += (size_t)n;
    chunk[chunk_len] = '\0';
    r.src = chunk;
    r.len = chunk_len;
    r.text = NULL;
    if (interactive) {
      sl__interrupt_L = r.L;
      signal(SIGINT, sl__on_sigint);
    }
    int rc = lua_cpcall(r.L, sl__repl_eval, &r);
    if (interactive) {
      signal(SIGINT, SIG_DFL);
      sl__interrupt_L = NULL;
      lua_sethook(r.L, NULL, 0, 0);
    }
    if (rc != 0) {
      /* Only memory exhaustion or an interrupt outside the chunk's own
       * protected call gets here. */
      const char *msg = lua_tostring(r.L, -1);
      fflush(stdout);
      fprintf(stderr, "%s\n", msg ? msg : "error object is not a string");
      failures++;
      chunk_len = 0;
    } else if (r.status == 1) {
      /* incomplete: keep the chunk and read on */
    } else {
      if (r.status == 0) {
        if (r.text_len) printf("%s\n", r.text);
      } else {
        fflush(stdout);
        fprintf(stderr, "%s\n", r.text);
        failures++;
      }
      chunk_len = 0;
    }
    lua_settop(r.L, 0);
    sl_free(r.text);
    r.text = NULL;
    fflush(stdout);
    fflush(stderr);
  }
  if (chunk_len) {
    fprintf(stderr, "stdin: incomplete chunk at the end of input\n");
    failures++;
  }
  if (interactive) putchar('\n');
  free(line); /* getline's buffer comes from libc */
  sl_free(chunk);
  lua_close(r.L);
  fflush(stdout);
  return failures && !interactive ? 1 : 0;
}
