/* supervise.c: the supervisor of `sluice serve` with "workers" > 1 (see
 * supervise.h): the reserved port, the worker processes and their
 * restarts, signals, and the supervisor's admin socket. */
#include "runtime/cli/supervise.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "runtime/base/alloc.h"
#include "runtime/base/restart.h"
#include "runtime/cli/view_shim.h"
#include "sluice.h"

#define SL__BACKOFF_BASE_MS 100    /* the first restart's delay */
#define SL__BACKOFF_MAX_MS 10000   /* the delay doubles up to this */
#define SL__BACKOFF_RESET_MS 30000 /* a worker up this long restarts after the base delay again */
#define SL__READY_FD 3             /* a worker's "I am listening" pipe */
#define SL__VIEW_FD 4              /* the instance view's memfd in a worker */
#define SL__LINE_MAX 4096          /* an admin command line */

typedef enum {
  SL__W_STARTING, /* spawned, not yet listening */
  SL__W_RUNNING,  /* listening */
  SL__W_BACKOFF,  /* died; its restart is timed */
  SL__W_STOPPING, /* asked to exit (SIGTERM) */
  SL__W_EXITED    /* gone, and not to be restarted */
} sl__wstate_t;

static const char *const sl__wstate_name[] = {"starting", "running", "backoff", "stopping", "exited"};

typedef struct sl__sup_s sl__sup_t;

typedef struct {
  sl__sup_t *sup;
  int index;              /* 1..n */
  sl__wstate_t state;
  uv_process_t proc;      /* the running process (proc_open while its handle is open) */
  uv_pipe_t ready;        /* the read end of its ready pipe (ready_open likewise) */
  uv_timer_t timer;       /* its restart, in backoff */
  int proc_open, ready_open;
  int alive;              /* the process has not exited yet */
  int pid;                /* of the current (or last) process */
  int ever_ready;         /* some process of this worker got to listen */
  uint64_t started_ms;    /* uv_now when the current process was spawned */
  uint64_t backoff_ms;    /* the last restart's delay (0: none yet) */
  uint64_t restarts;
  char last_exit[64];     /* "exit status 1", "killed by signal 9", or "" */
  char rb[64];            /* ready-pipe reads land here */
} sl__worker_t;

typedef struct sl__client_s {
  uv_pipe_t pipe;
  sl__sup_t *sup;
  struct sl__client_s *prev, *next;
  char line[SL__LINE_MAX];
  size_t len;
  int overflow;
  uv_shutdown_t shutdown;
  int shutting;
  char rb[1024];
} sl__client_t;

struct sl__sup_s {
  uv_loop_t *loop;
  const sl_config_t *cfg;
  int argc;
  char **argv;
  int port;                /* the real port */
  int reserve_fd;          /* the reserved, never listened-on socket */
  int view_fd;
  int n;
  sl__worker_t *w;
  uv_signal_t sigint, sigterm, sighup;
  uv_pipe_t admin;         /* the supervisor's admin socket (admin_open) */
  int admin_open;
  char admin_path[256];
  sl__client_t *clients;
  int stopping;            /* 1: SIGTERM sent; 2: SIGKILL sent */
  int said_listening;
  int exit_code;
  uint64_t started_ms;
  uint64_t restarts;       /* over all workers */
  uint64_t streams_lost;   /* in flight on workers that died */
};

/* One line on stderr, written whole: the workers write to the same file,
 * and a line must not be split by theirs. */
static void sl__say(const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (n < 0) return;
  fprintf(stderr, "sluice: %s\n", line);
  fflush(stderr);
}

/* ---- the reserved port ---- */

/* Binds a TCP socket with SO_REUSEPORT to host:port and never listens on
 * it: the port is the instance's for as long as the supervisor lives,
 * port 0 becomes a real port once, and the workers' listeners (also
 * SO_REUSEPORT, same user) may bind it beside this one.  A socket that is
 * not listening gets no connections.  Returns 0 with *fd and *real_port,
 * or a negative libuv code. */
static int sl__reserve_port(const char *host, int port, int *fd, int *real_port) {
  struct sockaddr_storage addr;
  int rc = strchr(host, ':') != NULL ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr)
                                     : uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
  if (rc < 0) return rc;
  int s = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return uv_translate_sys_error(errno);
  int one = 1;
  socklen_t len = addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 || bind(s, (struct sockaddr *)&addr, len) < 0) {
    rc = uv_translate_sys_error(errno);
    close(s);
    return rc;
  }
  struct sockaddr_storage bound;
  socklen_t blen = sizeof(bound);
  if (getsockname(s, (struct sockaddr *)&bound, &blen) < 0) {
    rc = uv_translate_sys_error(errno);
    close(s);
    return rc;
  }
  *real_port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&bound)->sin_port);
  *fd = s;
  return 0;
}

/* ---- workers ---- */

static void sl__maybe_finish(sl__sup_t *s);
static void sl__start_stop(sl__sup_t *s, int sig);

static void sl__proc_closed(uv_handle_t *h) {
  sl__worker_t *w = h->data;
  w->proc_open = 0;
  sl__maybe_finish(w->sup);
}

static void sl__ready_closed(uv_handle_t *h) {
  sl__worker_t *w = h->data;
  w->ready_open = 0;
  sl__maybe_finish(w->sup);
}

static void sl__ready_close(sl__worker_t *w) {
  if (w->ready_open && !uv_is_closing((uv_handle_t *)&w->ready)) uv_close((uv_handle_t *)&w->ready, sl__ready_closed);
}

static int sl__live_workers(const sl__sup_t *s) {
  int n = 0;
  for (int i = 0; i < s->n; i++) n += s->w[i].alive;
  return n;
}

static void sl__ready_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  sl__worker_t *w = h->data;
  (void)suggested;
  buf->base = w->rb;
  buf->len = sizeof(w->rb);
}

/* The worker wrote its ready line (it listens now), or closed the pipe. */
static void sl__ready_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  sl__worker_t *w = st->data;
  sl__sup_t *s = w->sup;
  (void)buf;
  if (nread < 0) {
    sl__ready_close(w);
    return;
  }
  if (nread == 0 || w->state != SL__W_STARTING) return;
  w->state = SL__W_RUNNING;
  if (w->ever_ready) sl__say("worker %d restarted (pid %d)", w->index, w->pid);
  w->ever_ready = 1;
  if (!s->said_listening) {
    for (int i = 0; i < s->n; i++)
      if (!s->w[i].ever_ready) return;
    s->said_listening = 1;
    /* Said once every worker listens: whoever waits for it may send. */
    fprintf(stderr, "sluice %s supervisor pid %d: %d workers listening on http://%s%s%s:%d\n", sl_version(),
            (int)getpid(), s->n, strchr(s->cfg->listen_host, ':') ? "[" : "", s->cfg->listen_host,
            strchr(s->cfg->listen_host, ':') ? "]" : "", s->port);
    fflush(stderr);
  }
}

static void sl__on_restart_timer(uv_timer_t *t);

static void sl__on_exit(uv_process_t *p, int64_t status, int sig) {
  sl__worker_t *w = p->data;
  sl__sup_t *s = w->sup;
  w->alive = 0;
  /* A worker may say it listens and die at once: its exit can come before
   * its ready line was read, so what is in the pipe is read now. */
  uv_os_fd_t fd;
  char sink[16];
  if (w->state == SL__W_STARTING && w->ready_open && !uv_is_closing((uv_handle_t *)&w->ready) &&
      uv_fileno((uv_handle_t *)&w->ready, &fd) == 0 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
    w->ever_ready = 1;
  uv_close((uv_handle_t *)&w->proc, sl__proc_closed);
  sl__ready_close(w);
  sl_restart_describe_exit(w->last_exit, sizeof(w->last_exit), status, sig);
  uint64_t up = uv_now(s->loop) - w->started_ms;
  if (s->stopping) {
    w->state = SL__W_EXITED;
    sl__say("worker %d (pid %d) exited: %s", w->index, w->pid, w->last_exit);
    sl__maybe_finish(s);
    return;
  }
  if (!w->ever_ready) {
    /* A worker that never got to listen on its first start will not do
     * better the next time (its configuration or policy is refused, or
     * the address will not bind): the instance stops with its status. */
    w->state = SL__W_EXITED;
    sl__say("worker %d (pid %d) failed to start: %s; stopping", w->index, w->pid, w->last_exit);
    s->exit_code = sig ? 1 : (int)status ? (int)status : 1;
    sl__start_stop(s, SIGTERM);
    return;
  }
  uint64_t lost = 0;
  if (s->view_fd >= 0 && sl_view_retire(s->view_fd, w->index, &lost) < 0) lost = 0;
  s->streams_lost += lost;
  w->backoff_ms = sl_restart_delay(w->backoff_ms, up, SL__BACKOFF_BASE_MS, SL__BACKOFF_MAX_MS, SL__BACKOFF_RESET_MS);
  w->state = SL__W_BACKOFF;
  sl__say("worker %d (pid %d) died: %s; %llu stream(s) lost; restarting in %llu ms", w->index, w->pid, w->last_exit,
          (unsigned long long)lost, (unsigned long long)w->backoff_ms);
  uv_timer_start(&w->timer, sl__on_restart_timer, w->backoff_ms, 0);
}

/* Spawns worker w: `sluice serve <args> --worker I/N --listen H:P
 * --view-fd 4 --ready-fd 3`.  Returns 0 or a negative libuv code. */
static int sl__spawn(sl__worker_t *w) {
  sl__sup_t *s = w->sup;
  char wn[32], listen[300], viewfd[16], readyfd[16];
  snprintf(wn, sizeof(wn), "%d/%d", w->index, s->n);
  int v6 = strchr(s->cfg->listen_host, ':') != NULL;
  snprintf(listen, sizeof(listen), "%s%s%s:%d", v6 ? "[" : "", s->cfg->listen_host, v6 ? "]" : "", s->port);
  snprintf(viewfd, sizeof(viewfd), "%d", s->view_fd >= 0 ? SL__VIEW_FD : -1);
  snprintf(readyfd, sizeof(readyfd), "%d", SL__READY_FD);
  char **args = sl_calloc((size_t)s->argc + 12, sizeof(*args));
  int k = 0;
  args[k++] = "sluice";
  for (int i = 0; i < s->argc; i++) args[k++] = s->argv[i]; /* argv[0] is "serve" */
  /* The last --listen wins in serve's parsing: this one names the real port. */
  args[k++] = "--worker";
  args[k++] = wn;
  args[k++] = "--listen";
  args[k++] = listen;
  args[k++] = "--view-fd";
  args[k++] = viewfd;
  args[k++] = "--ready-fd";
  args[k++] = readyfd;
  args[k] = NULL;

  uv_pipe_init(s->loop, &w->ready, 0);
  w->ready.data = w;
  w->ready_open = 1;
  uv_stdio_container_t stdio[SL__VIEW_FD + 1];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 1;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  stdio[SL__READY_FD].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[SL__READY_FD].data.stream = (uv_stream_t *)&w->ready;
  stdio[SL__VIEW_FD].flags = s->view_fd >= 0 ? UV_INHERIT_FD : UV_IGNORE;
  stdio[SL__VIEW_FD].data.fd = s->view_fd;
  uv_process_options_t po;
  memset(&po, 0, sizeof(po));
  po.file = "/proc/self/exe";
  po.args = args;
  po.exit_cb = sl__on_exit;
  po.stdio = stdio;
  po.stdio_count = SL__VIEW_FD + 1;
  /* Its own session: a terminal's SIGINT reaches the supervisor alone,
   * which then stops the workers once, in order. */
  po.flags = UV_PROCESS_DETACHED;
  w->proc.data = w;
  fflush(stdout);
  fflush(stderr);
  int rc = uv_spawn(s->loop, &w->proc, &po);
  sl_free(args);
  if (rc < 0) {
    /* libuv leaves the process handle to be closed even when the spawn fails. */
    w->proc_open = 1;
    uv_close((uv_handle_t *)&w->proc, sl__proc_closed);
    sl__ready_close(w);
    return rc;
  }
  w->proc_open = 1;
  w->alive = 1;
  w->pid = w->proc.pid;
  w->state = SL__W_STARTING;
  w->started_ms = uv_now(s->loop);
  uv_read_start((uv_stream_t *)&w->ready, sl__ready_alloc, sl__ready_read);
  return 0;
}

static void sl__on_restart_timer(uv_timer_t *t) {
  sl__worker_t *w = t->data;
  sl__sup_t *s = w->sup;
  if (s->stopping) return;
  if (w->proc_open || w->ready_open) {
    /* The last process's handles are still closing: a moment later. */
    uv_timer_start(&w->timer, sl__on_restart_timer, 10, 0);
    return;
  }
  w->restarts++;
  s->restarts++;
  int rc = sl__spawn(w);
  if (rc < 0) {
    snprintf(w->last_exit, sizeof(w->last_exit), "spawn: %s", uv_strerror(rc));
    w->backoff_ms = sl_restart_delay_again(w->backoff_ms, SL__BACKOFF_BASE_MS, SL__BACKOFF_MAX_MS);
    w->state = SL__W_BACKOFF;
    sl__say("worker %d: cannot start: %s; retrying in %llu ms", w->index, uv_strerror(rc),
            (unsigned long long)w->backoff_ms);
    uv_timer_start(&w->timer, sl__on_restart_timer, w->backoff_ms, 0);
  }
}

/* ---- stopping ---- */

static void sl__handle_closed(uv_handle_t *h) { (void)h; }

static void sl__admin_closed(uv_handle_t *h) {
  sl__sup_t *s = h->data;
  s->admin_open = 0;
}

static void sl__client_closed(uv_handle_t *h);

/* Once no worker is left, closes everything so that uv_run returns. */
static void sl__maybe_finish(sl__sup_t *s) {
  if (!s->stopping || sl__live_workers(s) > 0 || s->stopping == 3) return;
  s->stopping = 3; /* finishing */
  for (int i = 0; i < s->n; i++) uv_close((uv_handle_t *)&s->w[i].timer, sl__handle_closed);
  uv_close((uv_handle_t *)&s->sigint, sl__handle_closed);
  uv_close((uv_handle_t *)&s->sigterm, sl__handle_closed);
  uv_close((uv_handle_t *)&s->sighup, sl__handle_closed);
  if (s->admin_open) {
    unlink(s->admin_path);
    for (sl__client_t *c = s->clients; c != NULL; c = c->next)
      if (!uv_is_closing((uv_handle_t *)&c->pipe)) uv_close((uv_handle_t *)&c->pipe, sl__client_closed);
    uv_close((uv_handle_t *)&s->admin, sl__admin_closed);
  }
}

/* Sends sig to every live worker, cancels pending restarts, and marks the
 * supervisor stopping (no restarts from now on). */
static void sl__start_stop(sl__sup_t *s, int sig) {
  if (s->stopping < 2) s->stopping = sig == SIGKILL ? 2 : 1;
  for (int i = 0; i < s->n; i++) {
    sl__worker_t *w = &s->w[i];
    uv_timer_stop(&w->timer);
    if (w->alive) {
      uv_process_kill(&w->proc, sig);
      w->state = SL__W_STOPPING;
    } else {
      w->state = SL__W_EXITED;
    }
  }
  sl__maybe_finish(s);
}

static void sl__on_stop_signal(uv_signal_t *h, int signum) {
  sl__sup_t *s = h->data;
  if (s->stopping) {
    if (s->stopping == 1) {
      sl__say("second signal: killing %d worker(s)", sl__live_workers(s));
      sl__start_stop(s, SIGKILL);
    }
    return;
  }
  sl__say("%s: stopping %d worker(s) (each drains)", signum == SIGINT ? "SIGINT" : "SIGTERM", sl__live_workers(s));
  sl__start_stop(s, SIGTERM);
}

/* Forwards SIGHUP to every worker that listens; returns how many.  One
 * still starting has no handler for it yet (SIGHUP would end it), and it
 * loads the policies as they are now anyway. */
static int sl__reload_all(sl__sup_t *s) {
  int n = 0;
  for (int i = 0; i < s->n; i++)
    if (s->w[i].alive && s->w[i].state == SL__W_RUNNING && uv_process_kill(&s->w[i].proc, SIGHUP) == 0) n++;
  return n;
}

static void sl__on_sighup(uv_signal_t *h, int signum) {
  sl__sup_t *s = h->data;
  (void)signum;
  if (s->stopping) return;
  sl__say("SIGHUP: forwarded to %d worker(s)", sl__reload_all(s));
}

/* ---- the admin socket ---- */

typedef struct {
  char *p;
  size_t len, cap;
} sl__buf_t;

static void sl__bprintf(sl__buf_t *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    b->cap = (b->cap + (size_t)n) * 2;
    b->p = sl_realloc(b->p, b->cap);
  }
}

/* The status JSON (one line) into b. */
static void sl__status_json(sl__sup_t *s, sl__buf_t *b) {
  uint64_t now = uv_now(s->loop);
  sl__bprintf(b,
              "{\"role\":\"supervisor\",\"pid\":%d,\"port\":%d,\"uptime_s\":%llu,\"stopping\":%s,\"nworkers\":%d,"
              "\"restarts_total\":%llu,\"streams_lost_total\":%llu,\"workers\":[",
              (int)getpid(), s->port, (unsigned long long)((now - s->started_ms) / 1000),
              s->stopping ? "true" : "false", s->n, (unsigned long long)s->restarts,
              (unsigned long long)s->streams_lost);
  for (int i = 0; i < s->n; i++) {
    sl__worker_t *w = &s->w[i];
    sl__bprintf(b,
                "%s{\"index\":%d,\"pid\":%d,\"state\":\"%s\",\"uptime_s\":%llu,\"restarts\":%llu,"
                "\"last_exit\":\"%s\"}",
                i ? "," : "", w->index, w->alive ? w->pid : 0, sl__wstate_name[w->state],
                w->alive ? (unsigned long long)((now - w->started_ms) / 1000) : 0ull,
                (unsigned long long)w->restarts, w->last_exit);
  }
  sl__bprintf(b, "]}");
}

static void sl__written(uv_write_t *w, int status) {
  (void)status;
  sl_free(w);
}

/* Queues text and a newline (one reply line). */
static void sl__reply(sl__client_t *c, const char *text, size_t n) {
  uv_write_t *w = sl_malloc(sizeof(*w) + n + 1);
  char *buf = (char *)(w + 1);
  memcpy(buf, text, n);
  buf[n] = '\n';
  uv_buf_t b = uv_buf_init(buf, (unsigned)n + 1);
  if (uv_write(w, (uv_stream_t *)&c->pipe, &b, 1, sl__written) < 0) sl_free(w);
}

static void sl__command(sl__client_t *c, char *line) {
  sl__sup_t *s = c->sup;
  while (*line == ' ' || *line == '\t') line++;
  size_t n = strlen(line);
  while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r')) line[--n] = '\0';
  if (n == 0) return;
  sl__buf_t b = {sl_malloc(512), 0, 512};
  if (strcmp(line, "status") == 0 || strcmp(line, "workers") == 0) {
    sl__status_json(s, &b);
  } else if (strcmp(line, "reload") == 0) {
    int k = s->stopping ? 0 : sl__reload_all(s);
    sl__bprintf(&b, "ok: signalled %d worker(s) to reload (each logs its own result)", k);
    sl__say("admin reload: forwarded SIGHUP to %d worker(s)", k);
  } else if (strcmp(line, "lua") == 0) {
    /* `sluice attach` recognises "error: supervisor" and shows the status. */
    sl__bprintf(&b,
                "error: supervisor of %d workers: it runs no Lua; attach to worker I's socket %s.I "
                "(sluice attach --worker I %s)",
                s->n, s->admin_path, s->admin_path);
  } else if (strcmp(line, "help") == 0) {
    sl__bprintf(&b, "commands: status | workers | reload | help (supervisor; worker I's socket is %s.I)",
                s->admin_path);
  } else {
    sl__bprintf(&b, "error: unknown command \"%.200s\" (commands: status | workers | reload | help)", line);
  }
  sl__reply(c, b.p, b.len);
  sl_free(b.p);
}

static void sl__client_closed(uv_handle_t *h) {
  sl__client_t *c = h->data;
  sl__sup_t *s = c->sup;
  if (c->prev) c->prev->next = c->next; else s->clients = c->next;
  if (c->next) c->next->prev = c->prev;
  sl_free(c);
}

static void sl__client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  sl__client_t *c = h->data;
  (void)suggested;
  buf->base = c->rb;
  buf->len = sizeof(c->rb);
}

static void sl__shutdown_done(uv_shutdown_t *req, int status) {
  sl__client_t *c = req->data;
  (void)status;
  if (!uv_is_closing((uv_handle_t *)&c->pipe)) uv_close((uv_handle_t *)&c->pipe, sl__client_closed);
}

static void sl__client_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  sl__client_t *c = st->data;
  if (nread < 0) {
    uv_read_stop(st);
    /* As admin.c: the replies already queued go out before the close. */
    if (nread == UV_EOF && !c->shutting) {
      c->shutting = 1;
      c->shutdown.data = c;
      if (uv_shutdown(&c->shutdown, st, sl__shutdown_done) == 0) return;
    }
    if (!uv_is_closing((uv_handle_t *)&c->pipe)) uv_close((uv_handle_t *)&c->pipe, sl__client_closed);
    return;
  }
  for (ssize_t i = 0; i < nread; i++) {
    char ch = buf->base[i];
    if (ch == '\n') {
      if (c->overflow) {
        sl__reply(c, "error: line too long", 20);
      } else {
        c->line[c->len] = '\0';
        sl__command(c, c->line);
      }
      c->len = 0;
      c->overflow = 0;
    } else if (c->len + 1 >= sizeof(c->line)) {
      c->overflow = 1;
    } else if (!c->overflow) {
      c->line[c->len++] = ch;
    }
  }
}

static void sl__on_client(uv_stream_t *server, int status) {
  sl__sup_t *s = server->data;
  if (status < 0) return;
  sl__client_t *c = sl_calloc(1, sizeof(*c));
  c->sup = s;
  uv_pipe_init(s->loop, &c->pipe, 0);
  c->pipe.data = c;
  c->next = s->clients;
  if (s->clients) s->clients->prev = c;
  s->clients = c;
  if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0 ||
      uv_read_start((uv_stream_t *)&c->pipe, sl__client_alloc, sl__client_read) != 0)
    uv_close((uv_handle_t *)&c->pipe, sl__client_closed);
}

/* Listens on the admin socket path (mode 0600, as admin.c).  Returns 0 or
 * a negative libuv code (the handle is then closing). */
static int sl__admin_start(sl__sup_t *s, const char *path) {
  snprintf(s->admin_path, sizeof(s->admin_path), "%s", path);
  uv_pipe_init(s->loop, &s->admin, 0);
  s->admin.data = s;
  s->admin_open = 1;
  unlink(path);
  mode_t old = umask(0177);
  int rc = uv_pipe_bind(&s->admin, path);
  umask(old);
  if (rc == 0) rc = chmod(path, 0600) == 0 ? 0 : UV_EACCES;
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->admin, 16, sl__on_client);
  if (rc < 0) uv_close((uv_handle_t *)&s->admin, sl__admin_closed);
  return rc;
}

/* ---- main ---- */

int sl_supervise_main(int argc, char **argv, const sl_config_t *cfg, const char *admin_path) {
  static sl__sup_t sup; /* one per process; its handles live until uv_run returns */
  sl__sup_t *s = &sup;
  memset(s, 0, sizeof(*s));
  s->loop = uv_default_loop();
  s->cfg = cfg;
  s->argc = argc;
  s->argv = argv;
  s->n = cfg->workers;
  s->view_fd = -1;
  s->reserve_fd = -1;
  s->started_ms = uv_now(s->loop);

  int rc = sl__reserve_port(cfg->listen_host, cfg->listen_port, &s->reserve_fd, &s->port);
  if (rc < 0) {
    fprintf(stderr, "sluice: cannot listen on %s:%d: %s\n", cfg->listen_host, cfg->listen_port, uv_strerror(rc));
    return 1;
  }
  char err[512];
  if (sl_view_create(s->n, &s->view_fd, err, sizeof(err)) < 0) {
    fprintf(stderr, "sluice: %s\n", err);
    close(s->reserve_fd);
    return 1;
  }
  sl__say("supervisor pid %d: port %d reserved on %s; starting %d workers", (int)getpid(), s->port, cfg->listen_host,
          s->n);
  if (admin_path[0]) {
    rc = sl__admin_start(s, admin_path);
    if (rc < 0)
      sl__say("admin socket %s: %s (continuing without it)", admin_path, uv_strerror(rc));
    else
      sl__say("supervisor admin socket on %s (mode 0600); worker I's is %s.I", admin_path, admin_path);
  }
  uv_signal_init(s->loop, &s->sigint);
  uv_signal_init(s->loop, &s->sigterm);
  uv_signal_init(s->loop, &s->sighup);
  s->sigint.data = s->sigterm.data = s->sighup.data = s;
  uv_signal_start(&s->sigint, sl__on_stop_signal, SIGINT);
  uv_signal_start(&s->sigterm, sl__on_stop_signal, SIGTERM);
  uv_signal_start(&s->sighup, sl__on_sighup, SIGHUP);

  s->w = sl_calloc((size_t)s->n, sizeof(*s->w));
  for (int i = 0; i < s->n; i++) {
    sl__worker_t *w = &s->w[i];
    w->sup = s;
    w->index = i + 1;
    w->state = SL__W_EXITED;
    uv_timer_init(s->loop, &w->timer);
    w->timer.data = w;
  }
  for (int i = 0; i < s->n && !s->stopping; i++) {
    rc = sl__spawn(&s->w[i]);
    if (rc < 0) {
      sl__say("cannot start worker %d: %s; stopping", i + 1, uv_strerror(rc));
      s->exit_code = 1;
      sl__start_stop(s, SIGTERM);
    }
  }
  uv_run(s->loop, UV_RUN_DEFAULT);
  close(s->reserve_fd);
  if (s->view_fd >= 0) close(s->view_fd);
  sl_free(s->w);
  if (uv_loop_close(s->loop) != 0) {
    fprintf(stderr, "sluice: warning: handles still open at exit\n");
    uv_print_all_handles(s->loop, stderr);
    return 1;
  }
  if (s->exit_code == 0) sl__say("supervisor: every worker has exited; exiting");
  return s->exit_code;
}
