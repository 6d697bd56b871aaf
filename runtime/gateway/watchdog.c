/* watchdog.c: the loop watchdog thread (see watchdog.h). */
#include "runtime/gateway/watchdog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/lua/lua_budget.h"

struct sl_watchdog_s {
  uv_timer_t timer;
  pthread_t thread;
  pthread_mutex_t lock;   /* guards stop, with cond */
  pthread_cond_t cond;
  int stop;
  int thread_started;
  uint64_t warn_ns, abort_ns, period_ms;
  FILE *log;
  sl_counters_t *counters;     /* watchdog_stalls (NULL = none) */
  sl_budget_note_t *note;      /* what the loop's thread runs in Lua (lua_budget.h) */
  void (*close_cb)(void *);
  void *close_ud;
  _Atomic uint64_t stamp_ns;   /* last time the loop ran the timer */
  _Atomic uint64_t warned_ns;  /* stall start the thread warned about (0 = none) */
};

static void sl__on_beat(uv_timer_t *t) {
  sl_watchdog_t *w = t->data;
  uint64_t now = uv_hrtime();
  uint64_t warned = atomic_exchange(&w->warned_ns, 0);
  atomic_store(&w->stamp_ns, now);
  if (warned) {
    sl_counter_inc(w->counters, SL_C_WATCHDOG_STALLS);
    fprintf(w->log, "sluice: watchdog: the event loop turns again after %.0f ms stuck\n",
            (double)(now - warned) / 1e6);
    fflush(w->log);
  }
}

static void *sl__watch(void *arg) {
  sl_watchdog_t *w = arg;
  pthread_mutex_lock(&w->lock);
  while (!w->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)(w->period_ms % 1000) * 1000000L;
    ts.tv_sec += (time_t)(w->period_ms / 1000) + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&w->cond, &w->lock, &ts);
    if (w->stop) break;
    uint64_t now = uv_hrtime(), stamp = atomic_load(&w->stamp_ns);
    uint64_t stuck = now > stamp ? now - stamp : 0;
    if (stuck < w->warn_ns) continue;
    char what[700];
    sl_budget_describe_running(w->note, what, sizeof(what));
    if (atomic_load(&w->warned_ns) == 0) {
      atomic_store(&w->warned_ns, stamp);
      fprintf(w->log, "sluice: watchdog: the event loop has not turned for %.0f ms; running: %s\n",
              (double)stuck / 1e6, what[0] ? what : "no Lua call (C code)");
      fflush(w->log);
    }
    if (w->abort_ns && stuck >= w->abort_ns) {
      fprintf(w->log,
              "sluice: watchdog: the event loop has been stuck for %.0f ms (watchdog.abort_ms %.0f); running: %s; "
              "ending the process (exit status %d) so a supervisor can restart it\n",
              (double)stuck / 1e6, (double)w->abort_ns / 1e6, what[0] ? what : "no Lua call (C code)",
              SL_WATCHDOG_EXIT);
      fflush(w->log);
      _exit(SL_WATCHDOG_EXIT);
    }
  }
  pthread_mutex_unlock(&w->lock);
  return NULL;
}

int sl_watchdog_start(sl_watchdog_t **out, uv_loop_t *loop, uint64_t warn_ms, uint64_t abort_ms, FILE *log,
                      sl_counters_t *counters) {
  if (warn_ms == 0 || (abort_ms && abort_ms < warn_ms)) return UV_EINVAL;
  sl_watchdog_t *w = sl_calloc(1, sizeof(*w));
  w->warn_ns = warn_ms * 1000000ull;
  w->abort_ns = abort_ms * 1000000ull;
  w->period_ms = warn_ms / 4 ? warn_ms / 4 : 1;
  w->log = log ? log : stderr;
  w->counters = counters;
  w->note = sl_budget_note_here();
  atomic_store(&w->stamp_ns, uv_hrtime());
  pthread_mutex_init(&w->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cond, &ca);
  pthread_condattr_destroy(&ca);
  /* The thread only sleeps, reads two atomics and writes a line: a small
   * stack is plenty.  It starts first, so a failure leaves no handle. */
  pthread_attr_t ta;
  pthread_attr_init(&ta);
  pthread_attr_setstacksize(&ta, 256 * 1024);
  int rc = pthread_create(&w->thread, &ta, sl__watch, w) == 0 ? 0 : UV_EAGAIN;
  pthread_attr_destroy(&ta);
  if (rc < 0) {
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    sl_free(w);
    return rc;
  }
  uv_timer_init(loop, &w->timer);
  w->timer.data = w;
  uv_timer_start(&w->timer, sl__on_beat, w->period_ms, w->period_ms);
  uv_unref((uv_handle_t *)&w->timer);
  w->thread_started = 1;
  *out = w;
  return 0;
}

static void sl__timer_closed(uv_handle_t *h) {
  sl_watchdog_t *w = h->data;
  if (w->close_cb) w->close_cb(w->close_ud);
}

void sl_watchdog_close(sl_watchdog_t *w, void (*cb)(void *ud), void *ud) {
  if (w == NULL || uv_is_closing((uv_handle_t *)&w->timer)) return;
  w->close_cb = cb;
  w->close_ud = ud;
  uv_close((uv_handle_t *)&w->timer, sl__timer_closed);
}

void sl_watchdog_free(sl_watchdog_t *w) {
  if (w == NULL) return;
  pthread_mutex_lock(&w->lock);
  w->stop = 1;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
  if (w->thread_started) pthread_join(w->thread, NULL);
  pthread_cond_destroy(&w->cond);
  pthread_mutex_destroy(&w->lock);
  sl_free(w);
}
