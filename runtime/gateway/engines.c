/* engines.c: the gateway's own engines, in-process simulated ones and
 * managed processes (see engines.h). */
#include "runtime/gateway/engines.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/base/restart.h"
#include "runtime/gateway/gateway.h"
#include "runtime/upstream/upstream.h"

extern char **environ;

const char *const sl_engine_state_names[] = {"stopped", "starting", "running", "stopping", "backoff"};

#define SL__TICK_MS 100 /* how often a swap pool's idle and drained engines are looked at */

typedef struct {
  sl_engines_t *set;
  sl_endpoint_t *ep;               /* NULL: the endpoint is not managed */
  const sl_endpoint_config_t *ec;
  const sl_pool_config_t *pc;
  sl_engine_state_t state;
  uv_process_t proc;               /* the running process (proc_open while its handle is open) */
  uv_pipe_t pipes[2];              /* its stdout and stderr (pipe_open[i] likewise) */
  uv_timer_t timer;                /* start timeout, stop grace, or restart: by state */
  int proc_open, pipe_open[2], timer_open;
  int alive;                       /* the process has not exited yet */
  int pid;                         /* of the current (or last) process */
  int want;                        /* it should run: restarted when it dies */
  int swap_drained;                /* a swap set ep->draining: cleared when it stops */
  uint64_t started_ms, ready_ms;   /* uv_now at spawn and at its first passed probe */
  uint64_t ready_ns;               /* uv_hrtime at that probe (what idle time counts from at first) */
  uint64_t backoff_ms;             /* the last restart's delay (0: none yet) */
  uint64_t restarts;
  char last_exit[64];              /* "exit status 1", "killed by signal 9", or "" */
  char line[2][SL_ENGINE_LINE];    /* the line being read from each pipe */
  size_t len[2];
  int cut[2];                      /* that line was longer than SL_ENGINE_LINE - 1 bytes */
} sl__engine_t;

struct sl_engines_s {
  sl_gateway_t *gw;
  uv_loop_t *loop;
  sl__engine_t *e;                 /* one per registry endpoint */
  int n;
  char wrapper[1024];              /* the exec wrapper ("" = none) */
  int swaps;                       /* some pool swaps: the tick runs */
  uv_timer_t tick;
  int tick_open;
  int closing;
  int pending;                     /* handles open (closing ends when 0) */
  void (*on_closed)(void *ud);
  void *closed_ud;
  char rbuf[16384];                /* every pipe read lands here (its callback consumes it at once) */
};

/* ---- in-process simulated engines ---- */

int sl_engines_start_sims(sl_gateway_t *gw, char *err, size_t errlen) {
  int k = 0;
  for (int i = 0; i < gw->cfg->npools; i++) {
    sl_pool_config_t *pc = &gw->cfg->pools[i];
    for (int j = 0; j < pc->nendpoints; j++, k++) {
      sl_endpoint_config_t *ec = &pc->endpoints[j];
      if (!ec->is_sim) continue;
      sl_endpoint_t *ep = &gw->reg.eps[k];
      snprintf(ec->sim.host, sizeof(ec->sim.host), "127.0.0.1");
      ec->sim.port = 0;
      int rc = sl_sim_engine_start(&gw->sims[k], gw->loop, &ec->sim);
      if (rc < 0) {
        snprintf(err, errlen, "pools[%d].endpoints[%d]: the simulated engine did not start: %s", i, j,
                 uv_strerror(rc));
        gw->sims[k] = NULL;
        return rc;
      }
      ep->port = sl_sim_engine_port(gw->sims[k]);
      snprintf(ep->name, sizeof(ep->name), "%s:%d", ep->host, ep->port);
      uv_ip4_addr("127.0.0.1", ep->port, (struct sockaddr_in *)&ep->addr);
      fprintf(gw->log, "sluice: pool %s: simulated engine on http://127.0.0.1:%d\n", pc->name, ep->port);
    }
  }
  return 0;
}

/* ---- handles ---- */

static void sl__maybe_closed(sl_engines_t *es) {
  if (!es->closing || es->pending > 0) return;
  void (*cb)(void *) = es->on_closed;
  void *ud = es->closed_ud;
  sl_free(es->e);
  sl_free(es);
  if (cb) cb(ud);
}

static void sl__handle_closed(uv_handle_t *h) {
  sl__engine_t *e = h->data;
  sl_engines_t *es = e->set;
  if (h == (uv_handle_t *)&e->proc) e->proc_open = 0;
  else if (h == (uv_handle_t *)&e->pipes[0]) e->pipe_open[0] = 0;
  else if (h == (uv_handle_t *)&e->pipes[1]) e->pipe_open[1] = 0;
  else if (h == (uv_handle_t *)&e->timer) e->timer_open = 0;
  es->pending--;
  sl__maybe_closed(es);
}

static void sl__tick_closed(uv_handle_t *h) {
  sl_engines_t *es = h->data;
  es->tick_open = 0;
  es->pending--;
  sl__maybe_closed(es);
}

static void sl__close(uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, sl__handle_closed);
}

static void sl__narrate(sl__engine_t *e, double ms, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void sl__narrate(sl__engine_t *e, double ms, const char *fmt, ...) {
  char text[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  sl_narrate_push(e->set->gw->nar, SL_NAR_ENGINE, NULL, e->ep->name, e->ec->mg.model, text, (int)e->restarts, 0, ms,
                  0);
}

/* ---- its output ---- */

/* Writes s as the body of a JSON string (without quotes) into f. */
static void sl__json_chars(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') {
      fputc('\\', f);
      fputc(*p, f);
    } else if (*p < 0x20) {
      fprintf(f, "\\u%04x", *p);
    } else {
      fputc(*p, f);
    }
  }
}

static void sl__emit_line(sl__engine_t *e, int k) {
  char *l = e->line[k];
  size_t n = e->len[k];
  while (n > 0 && (l[n - 1] == '\r' || l[n - 1] == '\n')) n--;
  l[n] = '\0';
  char safe[SL_ENGINE_LINE + 64];
  sl_gateway_t *gw = e->set->gw;
  sl_log_redact(gw->nar, l, safe, sizeof(safe));
  if (gw->cfg->log_json) {
    /* One object a line, as every line in JSON mode; written straight out,
     * escaped on the way (no document built per line). */
    fprintf(gw->log, "{\"event\":\"engine_output\",\"endpoint\":\"%s\",\"stream\":\"%s\",\"line\":\"", e->ep->name,
            k == 0 ? "stdout" : "stderr");
    sl__json_chars(gw->log, safe);
    fprintf(gw->log, "\"%s}\n", e->cut[k] ? ",\"cut\":true" : "");
  } else {
    fprintf(gw->log, "engine %s: %s%s\n", e->ep->name, safe, e->cut[k] ? " [line cut]" : "");
  }
  fflush(gw->log);
  e->len[k] = 0;
  e->cut[k] = 0;
}

static void sl__pipe_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  sl__engine_t *e = h->data;
  (void)suggested;
  buf->base = e->set->rbuf;
  buf->len = sizeof(e->set->rbuf);
}

static void sl__pipe_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  sl__engine_t *e = st->data;
  int k = st == (uv_stream_t *)&e->pipes[0] ? 0 : 1;
  if (nread < 0) { /* EOF or an error: what is left is a last line */
    if (e->len[k] > 0) sl__emit_line(e, k);
    sl__close((uv_handle_t *)st);
    return;
  }
  for (ssize_t i = 0; i < nread; i++) {
    char c = buf->base[i];
    if (c == '\n') {
      sl__emit_line(e, k);
    } else if (e->len[k] < SL_ENGINE_LINE - 1) {
      e->line[k][e->len[k]++] = c;
    } else {
      e->cut[k] = 1;
    }
  }
}

/* ---- one engine's life ---- */

static void sl__on_timer(uv_timer_t *t);
static int sl__spawn(sl__engine_t *e);

static void sl__kill(sl__engine_t *e, int sig) {
  /* Its whole process group (it leads its own session): a launcher script
   * and the server it runs go together. */
  if (kill(-e->pid, sig) < 0 && e->alive) uv_process_kill(&e->proc, sig);
}

/* Asks the process to exit: SIGTERM now, SIGKILL after stop_grace_ms. */
static void sl__terminate(sl__engine_t *e) {
  if (!e->alive || e->state == SL_ENGINE_STOPPING) return;
  e->state = SL_ENGINE_STOPPING;
  sl__kill(e, SIGTERM);
  uv_timer_start(&e->timer, sl__on_timer, e->ec->mg.stop_grace_ms, 0);
}

/* The engine should not run any more (swap, idle, close): stopped now, or
 * once its process exits. */
static void sl__stop(sl__engine_t *e, const char *why) {
  e->want = 0;
  if (e->alive) {
    if (e->state != SL_ENGINE_STOPPING) sl__narrate(e, 0, "stop: %s", why);
    sl__terminate(e);
  } else if (e->state == SL_ENGINE_BACKOFF) {
    uv_timer_stop(&e->timer);
    e->state = SL_ENGINE_STOPPED;
    if (e->swap_drained) {
      e->swap_drained = 0;
      sl_endpoint_set_draining(e->ep, 0);
    }
    sl__narrate(e, 0, "stop: %s (it was waiting to restart)", why);
  }
}

static void sl__on_exit(uv_process_t *p, int64_t status, int sig) {
  sl__engine_t *e = p->data;
  sl_engines_t *es = e->set;
  sl_gateway_t *gw = es->gw;
  e->alive = 0;
  sl__close((uv_handle_t *)&e->proc);
  uv_timer_stop(&e->timer);
  /* What it left in its process group (a server its launcher forked)
   * goes with it: nothing of an engine outlives it, and the next start
   * finds its port free.  (The group's id cannot be reused while any
   * member lives; with none left this is ESRCH.) */
  kill(-e->pid, SIGKILL);
  sl_counter_dec(&gw->counters, SL_C_ENGINES_RUNNING);
  sl_restart_describe_exit(e->last_exit, sizeof(e->last_exit), status, sig);
  e->ep->starting = 0;
  e->ep->down = 1;
  sl_endpoint_set_ready(e->ep, 0);
  uint64_t up = uv_now(es->loop) - e->started_ms;
  if (es->closing) {
    e->state = SL_ENGINE_STOPPED;
    sl_counter_inc(&gw->counters, SL_C_ENGINES_STOPPED);
    fprintf(gw->log, "sluice: engine %s (pid %d) stopped: %s\n", e->ep->name, e->pid, e->last_exit);
    /* Whatever still holds its pipes (a child it left) does not hold the close. */
    for (int k = 0; k < 2; k++)
      if (e->pipe_open[k]) sl__close((uv_handle_t *)&e->pipes[k]);
    if (e->timer_open) sl__close((uv_handle_t *)&e->timer);
    return;
  }
  if (!e->want) {
    e->state = SL_ENGINE_STOPPED;
    sl_counter_inc(&gw->counters, SL_C_ENGINES_STOPPED);
    sl__narrate(e, (double)up, "stopped: %s after %.1f s", e->last_exit, (double)up / 1000.0);
    if (e->swap_drained) {
      e->swap_drained = 0;
      sl_endpoint_set_draining(e->ep, 0);
    }
    /* Its place in a swap pool is free: a waiting request may start its
     * engine now (the queues call sl_engines_need again). */
    sl_relay_kick(&gw->streams);
    return;
  }
  sl_counter_inc(&gw->counters, SL_C_ENGINES_CRASHED);
  e->backoff_ms = sl_restart_delay(e->backoff_ms, up, SL_ENGINE_BACKOFF_BASE_MS, SL_ENGINE_BACKOFF_MAX_MS,
                                   SL_ENGINE_BACKOFF_RESET_MS);
  e->state = SL_ENGINE_BACKOFF;
  sl__narrate(e, (double)e->backoff_ms, "crash: pid %d %s after %.1f s; restarting in %llu ms", e->pid, e->last_exit,
              (double)up / 1000.0, (unsigned long long)e->backoff_ms);
  uv_timer_start(&e->timer, sl__on_timer, e->backoff_ms, 0);
}

static void sl__on_timer(uv_timer_t *t) {
  sl__engine_t *e = t->data;
  sl_engines_t *es = e->set;
  switch (e->state) {
    case SL_ENGINE_STARTING:
      /* Not ready within start_timeout_ms: a failed start.  It is stopped
       * and, still wanted, restarted with backoff when it has exited. */
      sl__narrate(e, (double)e->ec->mg.start_timeout_ms, "crash: not ready after %llu ms (start_timeout_ms); stopping it",
                  (unsigned long long)e->ec->mg.start_timeout_ms);
      sl__terminate(e);
      return;
    case SL_ENGINE_STOPPING:
      if (e->alive) {
        fprintf(es->gw->log, "sluice: engine %s (pid %d) still runs %llu ms after SIGTERM: SIGKILL\n", e->ep->name,
                e->pid, (unsigned long long)e->ec->mg.stop_grace_ms);
        sl__kill(e, SIGKILL);
      }
      return;
    case SL_ENGINE_BACKOFF:
      if (es->closing || !e->want) return;
      if (e->proc_open || e->pipe_open[0] || e->pipe_open[1]) {
        /* The last process's handles are still closing: a moment later
         * (pipes a child of it may hold are given up on). */
        for (int k = 0; k < 2; k++)
          if (e->pipe_open[k]) sl__close((uv_handle_t *)&e->pipes[k]);
        uv_timer_start(&e->timer, sl__on_timer, 10, 0);
        return;
      }
      e->restarts++;
      sl_counter_inc(&es->gw->counters, SL_C_ENGINES_RESTARTED);
      sl__narrate(e, 0, "restart: number %llu", (unsigned long long)e->restarts);
      if (sl__spawn(e) < 0) {
        e->backoff_ms = sl_restart_delay_again(e->backoff_ms, SL_ENGINE_BACKOFF_BASE_MS, SL_ENGINE_BACKOFF_MAX_MS);
        e->state = SL_ENGINE_BACKOFF;
        uv_timer_start(&e->timer, sl__on_timer, e->backoff_ms, 0);
      }
      return;
    default: return;
  }
}

/* Writes word with "{port}" and "{model_path}" replaced into a new string. */
static char *sl__expand(const sl__engine_t *e, const char *word) {
  char port[16];
  snprintf(port, sizeof(port), "%d", e->ep->port);
  const char *mp = e->ec->mg.model_path ? e->ec->mg.model_path : "";
  size_t cap = strlen(word) + 1;
  for (const char *p = word; (p = strchr(p, '{')) != NULL; p++) cap += strlen(mp) + sizeof(port);
  char *out = sl_malloc(cap);
  size_t n = 0;
  for (const char *p = word; *p;) {
    if (strncmp(p, "{port}", 6) == 0) {
      n += (size_t)snprintf(out + n, cap - n, "%s", port);
      p += 6;
    } else if (strncmp(p, "{model_path}", 12) == 0) {
      n += (size_t)snprintf(out + n, cap - n, "%s", mp);
      p += 12;
    } else {
      out[n++] = *p++;
    }
  }
  out[n] = '\0';
  return out;
}

/* sluice's environment with the engine's "env" added (pointers only; the
 * strings stay where they are).  NULL when it adds nothing. */
static char **sl__env(const sl__engine_t *e) {
  const sl_managed_config_t *mg = &e->ec->mg;
  if (mg->nenv == 0) return NULL;
  size_t n = 0;
  while (environ && environ[n]) n++;
  char **env = sl_calloc(n + (size_t)mg->nenv + 1, sizeof(*env));
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    int replaced = 0;
    for (int j = 0; j < mg->nenv && !replaced; j++) {
      size_t kl = (size_t)(strchr(mg->env[j], '=') - mg->env[j]);
      replaced = strncmp(environ[i], mg->env[j], kl + 1) == 0;
    }
    if (!replaced) env[k++] = environ[i];
  }
  for (int j = 0; j < mg->nenv; j++) env[k++] = mg->env[j];
  env[k] = NULL;
  return env;
}

/* Spawns e's command.  Returns 0, or a libuv code (said in the log and
 * narrated as a crash; the caller times the retry). */
static int sl__spawn(sl__engine_t *e) {
  sl_engines_t *es = e->set;
  sl_gateway_t *gw = es->gw;
  const sl_managed_config_t *mg = &e->ec->mg;
  char *args[SL_MANAGED_MAX_ARGS + 8];
  char *owned[SL_MANAGED_MAX_ARGS];
  char ppid[24];
  int k = 0;
  if (es->wrapper[0]) {
    /* `sluice engine-exec PID -- command...`: it sets PR_SET_PDEATHSIG,
     * checks its parent is still PID, then execs the command (same pid). */
    snprintf(ppid, sizeof(ppid), "%d", (int)getpid());
    args[k++] = es->wrapper;
    args[k++] = "engine-exec";
    args[k++] = ppid;
    args[k++] = "--";
  }
  for (int i = 0; i < mg->argc; i++) args[k++] = owned[i] = sl__expand(e, mg->argv[i]);
  args[k] = NULL;
  char **env = sl__env(e);
  for (int i = 0; i < 2; i++) {
    uv_pipe_init(es->loop, &e->pipes[i], 0);
    e->pipes[i].data = e;
    e->pipe_open[i] = 1;
    es->pending++;
    e->len[i] = 0;
    e->cut[i] = 0;
  }
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  for (int i = 0; i < 2; i++) {
    stdio[i + 1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[i + 1].data.stream = (uv_stream_t *)&e->pipes[i];
  }
  uv_process_options_t po;
  memset(&po, 0, sizeof(po));
  po.file = args[0];
  po.args = args;
  po.env = env;
  po.cwd = mg->cwd;
  po.exit_cb = sl__on_exit;
  po.stdio = stdio;
  po.stdio_count = 3;
  /* Its own session and process group: stopped as a group, and a
   * terminal's SIGINT reaches sluice alone, which stops it in order. */
  po.flags = UV_PROCESS_DETACHED;
  e->proc.data = e;
  fflush(gw->log);
  int rc = uv_spawn(es->loop, &e->proc, &po);
  e->proc_open = 1; /* libuv leaves the handle to be closed even when the spawn fails */
  es->pending++;
  for (int i = 0; i < mg->argc; i++) sl_free(owned[i]);
  sl_free(env);
  e->started_ms = uv_now(es->loop);
  if (rc < 0) {
    sl__close((uv_handle_t *)&e->proc);
    for (int i = 0; i < 2; i++) sl__close((uv_handle_t *)&e->pipes[i]);
    snprintf(e->last_exit, sizeof(e->last_exit), "spawn: %s", uv_strerror(rc));
    sl_counter_inc(&gw->counters, SL_C_ENGINES_CRASHED);
    sl__narrate(e, 0, "crash: cannot start %s: %s", mg->argv[0], uv_strerror(rc));
    return rc;
  }
  e->alive = 1;
  e->pid = e->proc.pid;
  e->state = SL_ENGINE_STARTING;
  e->ready_ms = 0;
  e->ready_ns = 0;
  sl_counter_inc(&gw->counters, SL_C_ENGINES_STARTED);
  sl_counter_inc(&gw->counters, SL_C_ENGINES_RUNNING);
  for (int i = 0; i < 2; i++) uv_read_start((uv_stream_t *)&e->pipes[i], sl__pipe_alloc, sl__pipe_read);
  fprintf(gw->log, "sluice: engine %s: started pid %d: %s\n", e->ep->name, e->pid, mg->argv[0]);
  sl__narrate(e, 0, "start: pid %d", e->pid);
  /* Probed soon and often while it starts; not ready by its start timeout
   * is a failed start. */
  e->ep->down = 0;
  e->ep->starting = 1;
  sl_upstream_probe_soon(e->ep, SL_PROBE_STARTING_MS / 2);
  uv_timer_start(&e->timer, sl__on_timer, mg->start_timeout_ms, 0);
  return 0;
}

/* Starts e (it is wanted from now on). */
static void sl__start(sl__engine_t *e) {
  e->want = 1;
  if (e->state != SL_ENGINE_STOPPED || e->alive) return; /* running, or its restart is timed */
  if (e->proc_open || e->pipe_open[0] || e->pipe_open[1]) {
    /* The last process's handles are still closing: the restart timer
     * waits for them. */
    e->state = SL_ENGINE_BACKOFF;
    uv_timer_start(&e->timer, sl__on_timer, 10, 0);
    return;
  }
  if (sl__spawn(e) < 0) {
    e->backoff_ms = sl_restart_delay_again(e->backoff_ms, SL_ENGINE_BACKOFF_BASE_MS, SL_ENGINE_BACKOFF_MAX_MS);
    e->state = SL_ENGINE_BACKOFF;
    uv_timer_start(&e->timer, sl__on_timer, e->backoff_ms, 0);
  }
}

/* ---- swapping ---- */

/* Engines of pool pc that hold its room: wanted, or still exiting. */
static int sl__occupying(const sl_engines_t *es, const sl_pool_config_t *pc) {
  int n = 0;
  for (int i = 0; i < es->n; i++)
    if (es->e[i].ep && es->e[i].pc == pc && (es->e[i].want || es->e[i].alive)) n++;
  return n;
}

/* When e's engine last had a stream, or got ready: what "idle" counts from. */
static uint64_t sl__idle_from(const sl__engine_t *e) {
  return e->ep->idle_since > e->ready_ns ? e->ep->idle_since : e->ready_ns;
}

void sl_engines_need(void *ud, int pool, const char *model) {
  sl_engines_t *es = ud;
  (void)pool; /* the home pool; any swap pool serving model may start its engine */
  if (es == NULL || es->closing || es->gw->draining) return;
  sl__engine_t *want = NULL;
  for (int i = 0; i < es->n; i++) {
    sl__engine_t *e = &es->e[i];
    if (e->ep == NULL || !e->pc->swap || !sl_pool_serves(e->ep->pool, model) || !sl_endpoint_serves(e->ep, model))
      continue;
    if (e->want) return; /* it is starting, running or about to restart */
    if (want == NULL && e->state == SL_ENGINE_STOPPED) want = e;
  }
  if (want == NULL) return; /* stopping still: its exit runs the queues again */
  const sl_pool_config_t *pc = want->pc;
  if (sl__occupying(es, pc) < pc->swap_max_running) {
    sl__narrate(want, 0, "start: a request waits for model \"%.64s\"", model);
    sl__start(want);
    return;
  }
  /* The room is full: the engine idle longest gives its place.  Only a
   * running one is taken (one still starting has requests waiting for
   * it); if none is running, the next exit or ready runs this again. */
  sl__engine_t *victim = NULL;
  uint64_t now = uv_hrtime();
  for (int i = 0; i < es->n; i++) {
    sl__engine_t *e = &es->e[i];
    if (e->ep == NULL || e->pc != pc || !e->want || e->state != SL_ENGINE_RUNNING) continue;
    if (victim == NULL) {
      victim = e;
      continue;
    }
    int idle = e->ep->inflight == 0, vidle = victim->ep->inflight == 0;
    if ((idle && !vidle) || (idle == vidle && sl__idle_from(e) < sl__idle_from(victim))) victim = e;
  }
  if (victim == NULL) return;
  sl_counter_inc(&es->gw->counters, SL_C_ENGINES_SWAPPED);
  sl__narrate(victim, (double)(now - sl__idle_from(victim)) / 1e6,
              "swap: gives its place to %s for model \"%.64s\" (%d stream(s) to finish first)", want->ep->name, model,
              victim->ep->inflight);
  victim->want = 0;
  victim->swap_drained = 1;
  sl_endpoint_set_draining(victim->ep, 1);
  if (victim->ep->inflight == 0) sl__stop(victim, "swapped out");
  /* Else the tick stops it once its streams have ended. */
}

/* Every SL__TICK_MS while a pool swaps: drained engines whose streams
 * ended stop, and so do engines idle past idle_timeout_ms. */
static void sl__on_tick(uv_timer_t *t) {
  sl_engines_t *es = t->data;
  uint64_t now = uv_hrtime();
  for (int i = 0; i < es->n; i++) {
    sl__engine_t *e = &es->e[i];
    if (e->ep == NULL || !e->pc->swap || !e->alive || e->state == SL_ENGINE_STOPPING) continue;
    if (e->swap_drained && e->ep->inflight == 0) {
      sl__stop(e, "swapped out, its streams ended");
    } else if (e->want && e->state == SL_ENGINE_RUNNING && e->pc->swap_idle_ms > 0 && e->ep->inflight == 0 &&
               now - sl__idle_from(e) >= e->pc->swap_idle_ms * 1000000ull) {
      char why[96];
      snprintf(why, sizeof(why), "no stream for %llu ms (swap.idle_timeout_ms)", (unsigned long long)e->pc->swap_idle_ms);
      sl__stop(e, why);
    }
  }
}

/* ---- the set ---- */

/* A free loopback port, or a negative libuv code.  It is free now; the
 * engine binds it a moment later (another process could take it first:
 * then the engine fails to start and is restarted on the same port). */
static int sl__free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return uv_translate_sys_error(errno);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int rc = 0;
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || getsockname(fd, (struct sockaddr *)&a, &len) < 0)
    rc = uv_translate_sys_error(errno);
  close(fd);
  return rc < 0 ? rc : ntohs(a.sin_port);
}

int sl_engines_open(sl_engines_t **out, sl_gateway_t *gw, const char *exec_wrapper, char *err, size_t errlen) {
  *out = NULL;
  int any = 0;
  for (int i = 0; i < gw->reg.neps; i++) any |= gw->reg.eps[i].managed;
  if (!any) return 0;
  sl_engines_t *es = sl_calloc(1, sizeof(*es));
  es->gw = gw;
  es->loop = gw->loop;
  es->n = gw->reg.neps;
  es->e = sl_calloc((size_t)es->n, sizeof(*es->e));
  if (exec_wrapper) snprintf(es->wrapper, sizeof(es->wrapper), "%s", exec_wrapper);
  *out = es;
  for (int i = 0; i < es->n; i++) {
    sl_endpoint_t *ep = &gw->reg.eps[i];
    sl__engine_t *e = &es->e[i];
    e->set = es;
    if (!ep->managed) continue;
    e->ep = ep;
    e->ec = ep->ecfg;
    e->pc = ep->pool->cfg;
    uv_timer_init(es->loop, &e->timer);
    e->timer.data = e;
    e->timer_open = 1;
    es->pending++;
    if (e->pc->swap) es->swaps = 1;
    if (ep->port == 0) {
      int port = sl__free_port();
      if (port < 0) {
        snprintf(err, errlen, "pools[%d].endpoints[%d].managed: no free loopback port: %s",
                 (int)(ep->pool - gw->reg.pools), (int)(ep - ep->pool->eps), uv_strerror(port));
        return port;
      }
      ep->port = port;
      snprintf(ep->name, sizeof(ep->name), "%s:%d", ep->host, ep->port);
      uv_ip4_addr("127.0.0.1", ep->port, (struct sockaddr_in *)&ep->addr);
    }
  }
  if (es->swaps) {
    uv_timer_init(es->loop, &es->tick);
    es->tick.data = es;
    es->tick_open = 1;
    es->pending++;
    uv_timer_start(&es->tick, sl__on_tick, SL__TICK_MS, SL__TICK_MS);
    uv_unref((uv_handle_t *)&es->tick);
  }
  for (int i = 0; i < es->n; i++) {
    sl__engine_t *e = &es->e[i];
    if (e->ep == NULL) continue;
    fprintf(gw->log, "sluice: pool %s: managed engine on http://%s%s\n", e->pc->name, e->ep->name,
            e->pc->swap ? " (started on demand: the pool swaps)" : "");
    if (!e->pc->swap) sl__start(e);
  }
  return 0;
}

void sl_engines_on_ready(sl_engines_t *es, sl_endpoint_t *ep) {
  if (es == NULL || ep->id < 0 || ep->id >= es->n) return;
  sl__engine_t *e = &es->e[ep->id];
  if (e->ep == NULL || e->state != SL_ENGINE_STARTING) return;
  e->state = SL_ENGINE_RUNNING;
  e->ready_ms = uv_now(es->loop);
  e->ready_ns = uv_hrtime();
  uv_timer_stop(&e->timer);
  sl_counter_inc(&es->gw->counters, SL_C_ENGINES_READY);
  double ms = (double)(e->ready_ms - e->started_ms);
  sl__narrate(e, ms, "ready: pid %d after %.0f ms", e->pid, ms);
}

int sl_engines_info(const sl_engines_t *es, const sl_endpoint_t *ep, const char **state, int *pid, double *uptime_s,
                    uint64_t *restarts, const char **last_exit) {
  if (es == NULL || ep->id < 0 || ep->id >= es->n || es->e[ep->id].ep == NULL) return SL_ENOTFOUND;
  const sl__engine_t *e = &es->e[ep->id];
  if (state) *state = sl_engine_state_names[e->state];
  if (pid) *pid = e->alive ? e->pid : 0;
  if (uptime_s) *uptime_s = e->alive ? (double)(uv_now(es->loop) - e->started_ms) / 1000.0 : 0;
  if (restarts) *restarts = e->restarts;
  if (last_exit) *last_exit = e->last_exit;
  return 0;
}

int sl_engines_standby(const sl_engines_t *es, const sl_endpoint_t *ep) {
  if (es == NULL || ep->id < 0 || ep->id >= es->n || es->e[ep->id].ep == NULL) return 0;
  const sl__engine_t *e = &es->e[ep->id];
  return e->pc->swap && e->state == SL_ENGINE_STOPPED && !e->want && !es->gw->draining;
}

void sl_engines_json(const sl_engines_t *es, const sl_endpoint_t *ep, cJSON *o) {
  const char *state, *last_exit;
  int pid;
  double up;
  uint64_t restarts;
  if (sl_engines_info(es, ep, &state, &pid, &up, &restarts, &last_exit) < 0) return;
  cJSON *m = cJSON_AddObjectToObject(o, "managed");
  cJSON_AddStringToObject(m, "state", state);
  cJSON_AddNumberToObject(m, "pid", pid);
  cJSON_AddNumberToObject(m, "uptime_s", up);
  cJSON_AddNumberToObject(m, "restarts", (double)restarts);
  cJSON_AddStringToObject(m, "last_exit", last_exit);
  const char *model = es->e[ep->id].ec->mg.model;
  if (model) cJSON_AddStringToObject(m, "model", model);
}

void sl_engines_close(sl_engines_t *es, void (*cb)(void *ud), void *ud) {
  if (es == NULL) {
    if (cb) cb(ud);
    return;
  }
  es->closing = 1;
  es->on_closed = cb;
  es->closed_ud = ud;
  es->pending++; /* this function's own count, so nothing completes while it runs */
  if (es->tick_open) uv_close((uv_handle_t *)&es->tick, sl__tick_closed);
  for (int i = 0; i < es->n; i++) {
    sl__engine_t *e = &es->e[i];
    if (e->ep == NULL) continue;
    e->want = 0;
    if (e->alive) {
      /* Its exit closes its handles (sl__on_exit); the grace timer runs
       * until then. */
      if (e->state != SL_ENGINE_STOPPING) sl__narrate(e, 0, "stop: sluice is shutting down");
      sl__terminate(e);
      continue;
    }
    e->state = SL_ENGINE_STOPPED;
    for (int k = 0; k < 2; k++)
      if (e->pipe_open[k]) sl__close((uv_handle_t *)&e->pipes[k]);
    if (e->timer_open) sl__close((uv_handle_t *)&e->timer);
  }
  es->pending--;
  sl__maybe_closed(es);
}
