/* admin.c: the admin command socket (see admin.h). */
#include "runtime/admin.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/alloc.h"
#include "runtime/counters.h"

#define SL_ADMIN_LINE_MAX 4096

typedef struct sl_admin_client_s sl_admin_client_t;

struct sl_admin_client_s {
  uv_pipe_t pipe;
  sl_admin_t *admin;
  sl_admin_client_t *prev, *next;
  char line[SL_ADMIN_LINE_MAX];
  size_t len;
  int overflow;              /* the current line is too long: drop it */
};

struct sl_admin_s {
  uv_pipe_t listener;
  sl_gateway_t *gw;
  char path[256];
  sl_admin_client_t *clients;
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
             gw->gen ? (unsigned long long)gw->gen->id : 0ull, gw->gen ? gw->gen->policy_name : "",
             gw->gen ? gw->gen->policy_version : "", sl_generation_live(),
             (unsigned long long)sl_counter_get(SL_C_GENERATIONS_FREED), gw->nstreams,
             gw->gen ? gw->gen->mem.bytes : 0);
  } else if (strcmp(line, "help") == 0) {
    snprintf(out, sizeof(out), "commands: reload | status | help");
  } else {
    snprintf(out, sizeof(out), "error: unknown command \"%.200s\" (commands: reload | status | help)", line);
  }
  sl__reply(c, out);
}

static void sl__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static char rb[4096];
  (void)h;
  (void)suggested;
  buf->base = rb;
  buf->len = sizeof(rb);
}

static void sl__read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sl_admin_client_t *c = s->data;
  if (nread < 0) {
    uv_close((uv_handle_t *)&c->pipe, sl__client_closed);
    return;
  }
  for (ssize_t i = 0; i < nread; i++) {
    char ch = buf->base[i];
    if (ch == '\n') {
      if (c->overflow)
        sl__reply(c, "error: line too long");
      else {
        c->line[c->len] = '\0';
        sl__command(c, c->line);
      }
      c->len = 0;
      c->overflow = 0;
    } else if (c->len + 1 < sizeof(c->line)) {
      c->line[c->len++] = ch;
    } else {
      c->overflow = 1;
    }
  }
}

static void sl__on_client(uv_stream_t *server, int status) {
  sl_admin_t *a = server->data;
  if (status < 0) return;
  sl_admin_client_t *c = sl_calloc(1, sizeof(*c));
  c->admin = a;
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
