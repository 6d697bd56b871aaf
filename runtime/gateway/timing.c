/* timing.c: the timing dynamics job (see timing.h).
 *
 * One slot per registry endpoint holds what a classification needs: the
 * uv_work_t, the series copied out of the endpoint's ring, the analyzer's
 * workspace and the report the worker fills.  The loop owns a slot while it
 * is idle; from uv_queue_work until the after-work callback the worker owns
 * its series, workspace and report, and the loop reads nothing of them.
 */
#include "runtime/gateway/timing.h"

#include <stdlib.h>
#include <string.h>

#include "analyzers/dynamics.h"
#include "runtime/base/alloc.h"

/* config.h spells the classifier's shortest series out for the config
 * parser (base may not include analyzers/); keep the two equal. */
_Static_assert(SL_DYN_MIN_FLOOR == SL_DYN_MIN_SAMPLES, "SL_DYN_MIN_FLOOR must equal SL_DYN_MIN_SAMPLES");

typedef struct {
  uv_work_t work;
  sl_timing_t *t;
  sl_endpoint_t *ep;
  double *x;             /* SL_DYN_RING gaps, oldest first (NULL until the first run) */
  double *sorted;        /* SL_DYN_RING: a sorted copy of x, for its percentiles */
  size_t n;              /* gaps in x for the run in flight */
  void *ws;              /* the classifier's workspace for SL_DYN_RING gaps */
  size_t ws_size;
  uint64_t total_at_run; /* the ring's total when the last run copied it */
  int busy;              /* a run is queued or running */
  int rc;                /* sl_dyn_classify's result (worker) */
  double mean_ms;        /* mean of x[0..n) (worker) */
  sl_dyn_report_t rep;   /* the verdict and its evidence (worker) */
} sl__slot_t;

struct sl_timing_s {
  uv_loop_t *loop;
  sl_registry_t *reg;
  const sl_config_t *cfg;
  FILE *log;
  uv_timer_t timer;
  sl__slot_t *slots;     /* one per registry endpoint, same index */
  int nslots;
  int inflight;          /* runs queued or running */
  int closing;
  int timer_closed;
  void (*on_closed)(void *ud);
  void *closed_ud;
};

/* ---- the worker's side ---- */

static int sl__cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Clips x[0..n) to its 1st and 99th percentiles.  A gap the relay measured
 * while the loop or the machine held sluice up for a moment lies far
 * outside the others; a handful of those among hundreds of gaps would decide
 * the verdict (one such outlier skews the lag and the neighbour search of
 * the whole series), though they say nothing about the engine.  Clipping
 * them to the range of the rest leaves the verdict of every reference
 * series of tests/analyzers unchanged. */
static void sl__clip_outliers(double *x, double *sorted, size_t n) {
  memcpy(sorted, x, n * sizeof(double));
  qsort(sorted, n, sizeof(double), sl__cmp_double);
  size_t k = (n - 1) / 100;
  double lo = sorted[k], hi = sorted[n - 1 - k];
  for (size_t i = 0; i < n; i++) x[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
}

static void sl__work(uv_work_t *w) {
  sl__slot_t *s = w->data;
  double sum = 0;
  for (size_t i = 0; i < s->n; i++) sum += s->x[i];
  s->mean_ms = s->n ? sum / (double)s->n : 0;
  sl__clip_outliers(s->x, s->sorted, s->n);
  /* dt = 1: the series is indexed by token, so the exponent is per token. */
  s->rc = sl_dyn_classify(s->x, s->n, NULL, s->ws, s->ws_size, &s->rep);
}

/* ---- the loop's side ---- */

static void sl__free(sl_timing_t *t) {
  void (*cb)(void *) = t->on_closed;
  void *ud = t->closed_ud;
  for (int i = 0; i < t->nslots; i++) {
    sl_free(t->slots[i].x);
    sl_free(t->slots[i].sorted);
    sl_free(t->slots[i].ws);
  }
  sl_free(t->slots);
  sl_free(t);
  if (cb) cb(ud);
}

/* Frees the job once its timer is closed and no run is in flight. */
static void sl__maybe_done(sl_timing_t *t) {
  if (t->closing && t->timer_closed && t->inflight == 0) sl__free(t);
}

/* Stores a finished run's verdict and evidence on its endpoint (loop). */
static void sl__store(sl__slot_t *s) {
  sl_endpoint_t *ep = s->ep;
  sl_dyn_verdict_t *v = &ep->dyn;
  const sl_dyn_report_t *r = &s->rep;
  int before = v->cls;
  v->cls = (int)r->cls;
  v->name = sl_dyn_class_name(r->cls);
  v->lambda = r->lyap.lambda;
  v->fit_r2 = r->lyap.fit_r2;
  v->growth = r->lyap.growth;
  v->fnn = r->fnn;
  v->recurrence = r->recurrence;
  v->trend_r2 = r->trend_r2;
  v->mean_ms = s->mean_ms;
  v->samples = (uint32_t)s->n;
  v->at = uv_hrtime();
  v->runs++;
  /* A change of class is what an operator wants to see; the same verdict
   * again every interval is not worth a line. */
  if (before != v->cls && s->t->log != NULL) {
    fprintf(s->t->log, "sluice: endpoint %s timing: %s%s%s (lambda %.3f per token, %u gaps, mean %.2f ms)\n",
            ep->name, before < 0 ? "" : sl_dyn_class_name((sl_dyn_class_t)before), before < 0 ? "" : " -> ",
            v->name, v->lambda, v->samples, v->mean_ms);
    fflush(s->t->log);
  }
}

static void sl__after_work(uv_work_t *w, int status) {
  sl__slot_t *s = w->data;
  sl_timing_t *t = s->t;
  s->busy = 0;
  t->inflight--;
  if (t->closing) {
    /* Cancelled, or finished while the gateway closed: nothing to keep. */
    sl__maybe_done(t);
    return;
  }
  if (status < 0) return;
  if (s->rc != 0) {
    /* The classifier refuses a series it cannot embed (too short for the
     * dimension and window it chose); the last verdict stays. */
    if (t->log) {
      fprintf(t->log, "sluice: endpoint %s timing: %zu gaps could not be classified (error %d); the last verdict stays\n",
              s->ep->name, s->n, s->rc);
      fflush(t->log);
    }
    return;
  }
  sl__store(s);
}

/* Starts a run for slot i if its endpoint is due.  Returns 1 if it did. */
static int sl__start_one(sl_timing_t *t, int i) {
  sl__slot_t *s = &t->slots[i];
  const sl_gap_ring_t *g = &s->ep->gaps;
  uint64_t min = (uint64_t)t->cfg->dynamics_min_samples;
  if (s->busy) return 0;
  uint64_t avail = g->total < SL_DYN_RING ? g->total : SL_DYN_RING;
  if (avail < min || g->total - s->total_at_run < min / 4) return 0;
  if (s->x == NULL) {
    /* Once per endpoint, for any series up to a full ring. */
    s->ws_size = sl_dyn_workspace_size(SL_DYN_RING);
    s->x = sl_try_malloc(SL_DYN_RING * sizeof(double));
    s->sorted = sl_try_malloc(SL_DYN_RING * sizeof(double));
    s->ws = sl_try_malloc(s->ws_size);
    if (s->x == NULL || s->sorted == NULL || s->ws == NULL) {
      sl_free(s->x);
      sl_free(s->sorted);
      sl_free(s->ws);
      s->x = s->sorted = NULL;
      s->ws = NULL;
      return 0;
    }
  }
  /* Oldest first: gap number `first` is the oldest the ring still holds. */
  uint64_t first = g->total - avail;
  for (uint64_t k = 0; k < avail; k++) s->x[k] = g->ms[(first + k) % SL_DYN_RING];
  s->n = (size_t)avail;
  s->total_at_run = g->total;
  s->work.data = s;
  if (uv_queue_work(t->loop, &s->work, sl__work, sl__after_work) < 0) return 0;
  s->busy = 1;
  t->inflight++;
  return 1;
}

int sl_timing_run(sl_timing_t *t) {
  int started = 0;
  if (t->closing) return 0;
  for (int i = 0; i < t->nslots; i++) started += sl__start_one(t, i);
  return started;
}

int sl_timing_inflight(const sl_timing_t *t) { return t->inflight; }

static void sl__on_timer(uv_timer_t *h) { sl_timing_run(h->data); }

int sl_timing_start(sl_timing_t **out, uv_loop_t *loop, sl_registry_t *reg, const sl_config_t *cfg, FILE *log) {
  sl_timing_t *t = sl_calloc(1, sizeof(*t));
  t->loop = loop;
  t->reg = reg;
  t->cfg = cfg;
  t->log = log;
  t->nslots = reg->neps;
  t->slots = sl_calloc((size_t)(reg->neps > 0 ? reg->neps : 1), sizeof(*t->slots));
  for (int i = 0; i < reg->neps; i++) {
    t->slots[i].t = t;
    t->slots[i].ep = &reg->eps[i];
  }
  int rc = uv_timer_init(loop, &t->timer);
  if (rc < 0) {
    sl_free(t->slots);
    sl_free(t);
    return rc;
  }
  t->timer.data = t;
  uv_timer_start(&t->timer, sl__on_timer, cfg->dynamics_interval_ms, cfg->dynamics_interval_ms);
  *out = t;
  return 0;
}

static void sl__timer_closed(uv_handle_t *h) {
  sl_timing_t *t = h->data;
  t->timer_closed = 1;
  sl__maybe_done(t);
}

void sl_timing_close(sl_timing_t *t, void (*cb)(void *ud), void *ud) {
  if (t->closing) return;
  t->closing = 1;
  t->on_closed = cb;
  t->closed_ud = ud;
  /* A run still queued is cancelled (its after-work callback then reports
   * UV_ECANCELED); one already running cannot be, and is waited for: its
   * callback comes on the loop when it ends, and the job is freed after
   * the last of them. */
  for (int i = 0; i < t->nslots; i++)
    if (t->slots[i].busy) uv_cancel((uv_req_t *)&t->slots[i].work);
  uv_timer_stop(&t->timer);
  uv_close((uv_handle_t *)&t->timer, sl__timer_closed);
}
