/* admin.c: the admin command socket (see admin.h). */
#include "runtime/ops/admin.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/base/alloc.h"
#include "runtime/ops/attach.h"
#include "runtime/base/counters.h"

#define SL_ADMIN_LINE_MAX 4096                  /* a command line */
#define SL_ADMIN_LUA_LINE_MAX SL_ATTACH_CHUNK_MAX /* a line in Lua mode */

typedef struct sl_admin_client_s sl_admin_client_t;

struct sl_admin_client_s {
  uv_pipe_t pipe;
  sl_admin_t *admin;
  sl_admin_client_t *prev, *next;
  char *line;                /* the line being read (grows up to the mode's limit) */
  size_t len, cap;
  int overflow;              /* the current line is too long: drop it */
  sl_attach_t *lua;          /* the Lua session once `lua` was sent (then every line is Lua), or NULL */
  uv_shutdown_t shutdown;    /* on EOF: flush the replies, then close */
  int shutting;
  char rb[4096];             /* reads land here */
};

struct sl_admin_s {
  uv_pipe_t listener;
  sl_gateway_t *gw;
  char path[256];
  sl_admin_client_t *clients;
  unsigned sessions;         /* Lua sessions opened so far (their ids) */
  int open;                  /* handles open */
  void (*close_cb)(void *);
  void *close_ud;
};

typedef struct {
  uv_write_t w;
  char buf[];
} sl__admin_write_t;

static void sl__admin_maybe_done(sl_admin_t *a) {
  if (a->open > 0) return;
  void (*cb)(void *) = a->close_cb;
  void *ud = a->close_ud;
  sl_free(a);
  if (cb) cb(ud);
}

static void sl__client_closed(uv_handle_t *h) {
  sl_admin_client_t *c = h->data;
  sl_admin_t *a = c->admin;
  if (c->prev) c->prev->next = c->next; else a->clients = c->next;
  if (c->next) c->next->prev = c->prev;
  if (c->lua) {
    sl_gateway_t *gw = a->gw;
    fprintf(gw->log, "sluice: attach session %u: closed\n", sl_attach_id(c->lua));
    fflush(gw->log);
    sl_attach_close(c->lua);
  }
  sl_free(c->line);
  sl_free(c);
  a->open--;
  sl__admin_maybe_done(a); /* only once the listener is closed too */
}

static void sl__written(uv_write_t *w, int status) {
  (void)status;
  sl_free(w);
}

static void sl__reply(sl_admin_client_t *c, const char *text) {
  size_t n = strlen(text);
  sl__admin_write_t *w = sl_malloc(sizeof(*w) + n + 1);
  memcpy(w->buf, text, n);
  w->buf[n] = '\n';
  uv_buf_t b = uv_buf_init(w->buf, (unsigned)n + 1);
  if (uv_write(&w->w, (uv_stream_t *)&c->pipe, &b, 1, sl__written) < 0) sl_free(w);
}

/* A Lua-mode reply: "<status> <length>\n" and then exactly length bytes
 * of text, so the text may hold any bytes and any number of lines. */
static void sl__reply_frame(sl_admin_client_t *c, const char *status, const char *text, size_t n) {
  char head[48];
  int h = snprintf(head, sizeof(head), "%s %zu\n", status, n);
  sl__admin_write_t *w = sl_malloc(sizeof(*w) + (size_t)h + n);
  memcpy(w->buf, head, (size_t)h);
  memcpy(w->buf + h, text, n);
  uv_buf_t b = uv_buf_init(w->buf, (unsigned)((size_t)h + n));
  if (uv_write(&w->w, (uv_stream_t *)&c->pipe, &b, 1, sl__written) < 0) sl_free(w);
}

/* `lua`: gives the connection its own Lua session; every later line is
 * Lua, answered with one frame each (see admin.h). */
static void sl__start_lua(sl_admin_client_t *c) {
  sl_gateway_t *gw = c->admin->gw;
  char err[512], banner[512];
  if (sl_attach_open(&c->lua, gw, ++c->admin->sessions, gw->cfg->lua_memory_limit, 0, err, sizeof(err)) < 0) {
    c->lua = NULL;
    char out[600];
    snprintf(out, sizeof(out), "error: %s", err);
    sl__reply(c, out);
    return;
  }
  sl_attach_banner(c->lua, banner, sizeof(banner));
  fprintf(gw->log, "sluice: attach session %u: opened\n", sl_attach_id(c->lua));
  fflush(gw->log);
  sl__reply_frame(c, "ok", banner, strlen(banner));
}

static void sl__lua_line(sl_admin_client_t *c, const char *line, size_t n) {
  const char *text;
  size_t len;
  sl_attach_status_t st = sl_attach_feed(c->lua, line, n, &text, &len);
  sl__reply_frame(c, st == SL_ATTACH_OK ? "ok" : st == SL_ATTACH_MORE ? "more" : "error", text, len);
}

static void sl__command(sl_admin_client_t *c, char *line) {
  sl_gateway_t *gw = c->admin->gw;
  char out[2048];
  while (*line == ' ' || *line == '\t') line++;
  size_t n = strlen(line);
  while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r')) line[--n] = '\0';
  if (n == 0) return;
  if (strcmp(line, "reload") == 0) {
    char msg[1536];
    int rc = sl_gateway_reload(gw, msg, sizeof(msg));
    snprintf(out, sizeof(out), "%s: %s", rc == 0 ? "ok" : "error", msg);
    fprintf(gw->log, "sluice: admin reload: %s\n", msg);
    fflush(gw->log);
  } else if (strcmp(line, "status") == 0) {
    snprintf(out, sizeof(out),
             "{\"generation\":%llu,\"policy\":\"%s\",\"policy_version\":\"%s\",\"generations_live\":%d,"
             "\"generations_freed\":%llu,\"streams_in_flight\":%d,\"lua_bytes\":%zu}",
             gw->gen ? (unsigned long long)gw->gen->id : 0ull, gw->gen ? gw->gen->phase[SL_PHASE_PLACEMENT].name : "",
             gw->gen ? gw->gen->phase[SL_PHASE_PLACEMENT].version : "", (int)sl_counter_get(&gw->counters, SL_C_GENERATIONS_LIVE),
             (unsigned long long)sl_counter_get(&gw->counters, SL_C_GENERATIONS_FREED), gw->streams.n,
             gw->gen ? gw->gen->mem.bytes : 0);
  } else if (strcmp(line, "lua") == 0) {
    sl__start_lua(c);
    return;
  } else if (strcmp(line, "help") == 0) {
    snprintf(out, sizeof(out), "commands: reload | status | lua | help");
  } else {
    snprintf(out, sizeof(out), "error: unknown command \"%.200s\" (commands: reload | status | lua | help)", line);
  }
  sl__reply(c, out);
}

static void sl__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  sl_admin_client_t *c = h->data;
  (void)suggested;
  buf->base = c->rb;
  buf->len = sizeof(c->rb);
}

static void sl__shutdown_done(uv_shutdown_t *req, int status) {
  sl_admin_client_t *c = req->data;
  (void)status;
  if (!uv_is_closing((uv_handle_t *)&c->pipe)) uv_close((uv_handle_t *)&c->pipe, sl__client_closed);
}

/* One complete line (without its newline) in the connection's mode. */
static void sl__line(sl_admin_client_t *c) {
  if (c->overflow) {
    if (c->lua) {
      char msg[96];
      int n = snprintf(msg, sizeof(msg), "line too long (at most %u bytes); it was dropped", SL_ADMIN_LUA_LINE_MAX - 1);
      sl__reply_frame(c, "error", msg, (size_t)n);
    } else {
      sl__reply(c, "error: line too long");
    }
  } else if (c->lua) {
    sl__lua_line(c, c->line, c->len);
  } else {
    c->line[c->len] = '\0';
    sl__command(c, c->line);
  }
  c->len = 0;
  c->overflow = 0;
}

static void sl__read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sl_admin_client_t *c = s->data;
  if (nread < 0) {
    uv_read_stop(s);
    /* The replies already queued still go out (a client that sends its
     * commands and then half-closes gets every answer); then close. */
    if (nread == UV_EOF && !c->shutting) {
      c->shutting = 1;
      c->shutdown.data = c;
      if (uv_shutdown(&c->shutdown, s, sl__shutdown_done) == 0) return;
    }
    if (!uv_is_closing((uv_handle_t *)&c->pipe)) uv_close((uv_handle_t *)&c->pipe, sl__client_closed);
    return;
  }
  for (ssize_t i = 0; i < nread; i++) {
    char ch = buf->base[i];
    if (ch == '\n') {
      sl__line(c);
      continue;
    }
    if (c->overflow) continue;
    size_t max = c->lua ? SL_ADMIN_LUA_LINE_MAX : SL_ADMIN_LINE_MAX;
    if (c->len + 1 >= max) {
      c->overflow = 1;
      continue;
    }
    if (c->len + 1 >= c->cap) {
      size_t cap = c->cap ? c->cap * 2 : 256;
      if (cap > max) cap = max;
      c->line = sl_realloc(c->line, cap);
      c->cap = cap;
    }
    c->line[c->len++] = ch;
  }
}

static void sl__on_client(uv_stream_t *server, int status) {
  sl_admin_t *a = server->data;
  if (status < 0) return;
  sl_admin_client_t *c = sl_calloc(1, sizeof(*c));
  c->admin = a;
  c->cap = 256;
  c->line = sl_malloc(c->cap);
  uv_pipe_init(server->loop, &c->pipe, 0);
  c->pipe.data = c;
  a->open++;
  c->next = a->clients;
  if (a->clients) a->clients->prev = c;
  a->clients = c;
  if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0 ||
      uv_read_start((uv_stream_t *)&c->pipe, sl__alloc, sl__read) != 0)
    uv_close((uv_handle_t *)&c->pipe, sl__client_closed);
}

static void sl__listener_closed(uv_handle_t *h) {
  sl_admin_t *a = h->data;
  a->open--;
  sl__admin_maybe_done(a);
}

int sl_admin_start(sl_admin_t **out, sl_gateway_t *gw, const char *path) {
  sl_admin_t *a = sl_calloc(1, sizeof(*a));
  a->gw = gw;
  snprintf(a->path, sizeof(a->path), "%s", path);
  uv_pipe_init(gw->loop, &a->listener, 0);
  a->listener.data = a;
  a->open = 1;
  unlink(path); /* a socket left by a previous run */
  /* Create the socket file with mode 0600 from the start: no window in
   * which another user could connect. */
  mode_t old = umask(0177);
  int rc = uv_pipe_bind(&a->listener, path);
  umask(old);
  if (rc == 0) rc = chmod(path, 0600) == 0 ? 0 : UV_EACCES;
  if (rc == 0) rc = uv_listen((uv_stream_t *)&a->listener, 16, sl__on_client);
  if (rc < 0) {
    a->close_cb = NULL;
    uv_close((uv_handle_t *)&a->listener, sl__listener_closed);
    return rc;
  }
  *out = a;
  return 0;
}

void sl_admin_close(sl_admin_t *a, void (*cb)(void *), void *ud) {
  a->close_cb = cb;
  a->close_ud = ud;
  unlink(a->path);
  for (sl_admin_client_t *c = a->clients; c != NULL; c = c->next)
    if (!uv_is_closing((uv_handle_t *)&c->pipe)) uv_close((uv_handle_t *)&c->pipe, sl__client_closed);
  uv_close((uv_handle_t *)&a->listener, sl__listener_closed);
}
