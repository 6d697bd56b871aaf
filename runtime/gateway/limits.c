/* limits.c: the limits job (see limits.h). */
#include "runtime/gateway/limits.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/counters.h"
#include "runtime/base/errors.h"
#include "runtime/base/narrate.h"

/* The latest gaps of ep's ring that arrived since the job's last look (at
 * most a ring's worth), into itl. */
static void sl__itl_of(const sl_endpoint_t *ep, sl_qsketch_t *itl) {
  sl_qs_reset(itl);
  uint64_t total = ep->gaps.total, fresh = total - ep->gaps_seen;
  if (fresh > SL_DYN_RING) fresh = SL_DYN_RING;
  for (uint64_t i = total - fresh; i < total; i++) sl_qs_add(itl, ep->gaps.ms[i % SL_DYN_RING]);
}

void sl_limits_snapshot(const sl_gateway_t *gw, const sl_endpoint_t *ep, double interval_ms, sl_qsketch_t *itl,
                        sl_ffi_limit_stats_t *s) {
  memset(s, 0, sizeof(*s));
  sl__itl_of(ep, itl);
  s->endpoint = ep->name;
  s->pool = ep->pool->cfg->name;
  s->endpoint_id = ep->id;
  s->pool_id = (int32_t)(ep->pool - gw->reg.pools);
  s->limit = ep->limit;
  s->min = ep->limit_min;
  s->max = ep->limit_max;
  s->slots = ep->slots;
  s->inflight = ep->inflight;
  s->max_inflight = ep->w_max_inflight > ep->inflight ? ep->w_max_inflight : ep->inflight;
  s->queued = ep->pool->queued;
  s->ready = ep->ready && !ep->draining;
  s->interval_ms = interval_ms;
  s->now_ms = (double)uv_hrtime() / 1e6;
  s->started = (int64_t)ep->w_started;
  s->completed = (int64_t)ep->w_completed;
  s->rate_limited = (int64_t)ep->w_429;
  s->unavailable = (int64_t)ep->w_503;
  s->timeouts = (int64_t)ep->w_timeouts;
  s->errors = (int64_t)ep->w_errors;
  s->drops = s->rate_limited + s->unavailable + s->timeouts;
  const sl_qsketch_t *t = &ep->ttft_w;
  s->ttft_n = (int64_t)t->n;
  if (t->n > 0) {
    s->ttft_mean = sl_qs_mean(t);
    s->ttft_p50 = sl_qs_quantile(t, 0.5);
    s->ttft_p90 = sl_qs_quantile(t, 0.9);
    s->ttft_p99 = sl_qs_quantile(t, 0.99);
    s->ttft_min = t->min;
  }
  s->itl_n = (int64_t)itl->n;
  if (itl->n > 0) {
    s->itl_mean = sl_qs_mean(itl);
    s->itl_p50 = sl_qs_quantile(itl, 0.5);
    s->itl_p90 = sl_qs_quantile(itl, 0.9);
    s->itl_p99 = sl_qs_quantile(itl, 0.99);
  }
  s->sketch_error = SL_QS_ALPHA;
}

/* Asks the rule about ep; returns 1 when the limit moved. */
static int sl__adapt(sl_gateway_t *gw, sl_endpoint_t *ep, const sl_ffi_limit_stats_t *s) {
  if (!ep->adaptive || gw->gen == NULL || !sl_generation_phase_ready(gw->gen, SL_PHASE_LIMIT)) return 0;
  int64_t v = 0;
  char reason[256];
  int rc = sl_generation_limit(gw->gen, s, &v, reason, sizeof(reason));
  if (rc < 0) {
    sl_counter_inc(&gw->counters, SL_C_LIMIT_RULE_ERRORS);
    char safe[320];
    fprintf(gw->log, "sluice: limit rule %s for %s (limit stays %d): %s\n",
            rc == SL_ETIMEDOUT ? "stopped" : "failed", ep->name, ep->limit,
            sl_log_redact(gw->nar, reason, safe, sizeof(safe)));
    return 0;
  }
  if (v > INT32_MAX) v = INT32_MAX;
  if (v < 0) v = 0;
  int old = sl_endpoint_set_limit(ep, (int)v);
  if (ep->limit == old) return 0;
  sl_counter_inc(&gw->counters, SL_C_LIMIT_CHANGES);
  sl_narrate_push(gw->nar, SL_NAR_LIMIT, NULL, ep->name, NULL, reason, old, gw->gen->id, 0, ep->limit);
  return ep->limit > old ? 2 : 1;
}

int sl_limits_round(sl_gateway_t *gw, double interval_ms) {
  int moved = 0, rose = 0;
  sl_qsketch_t *itl = &gw->limits_itl; /* scratch: one sketch is 4.6 KiB, too big for the stack per call */
  for (int i = 0; i < gw->reg.neps; i++) {
    sl_endpoint_t *ep = &gw->reg.eps[i];
    sl_ffi_limit_stats_t s;
    sl_limits_snapshot(gw, ep, interval_ms, itl, &s);
    if (s.ttft_n > 0) ep->ttft_p90_ms = s.ttft_p90;
    if (s.itl_n > 0) ep->itl_p90_ms = s.itl_p90;
    int r = sl__adapt(gw, ep, &s);
    moved += r > 0;
    rose |= r == 2;
    /* A new interval. */
    ep->gaps_seen = ep->gaps.total;
    sl_qs_reset(&ep->ttft_w);
    ep->w_max_inflight = ep->inflight;
    ep->w_started = ep->w_completed = ep->w_429 = ep->w_503 = ep->w_timeouts = ep->w_errors = 0;
    ep->w_cut = 0;
  }
  for (int p = 0; p < gw->reg.npools; p++) {
    /* Streams ended per second, smoothed over about five intervals: the
     * rate the queue drains at, which Retry-After is computed from. */
    sl_pool_t *pool = &gw->reg.pools[p];
    double rate = interval_ms > 0 ? (double)pool->w_ended * 1000.0 / interval_ms : 0;
    pool->drain_per_s = pool->drain_per_s == 0 ? rate : pool->drain_per_s + 0.2 * (rate - pool->drain_per_s);
    pool->w_ended = 0;
  }
  sl_relay_slow_clients(&gw->streams, gw->gen, gw->cfg->slow_client_ms);
  if (rose) sl_relay_kick(&gw->streams);
  return moved;
}

static void sl__on_limits(uv_timer_t *t) {
  sl_gateway_t *gw = t->data;
  uint64_t now = uv_hrtime();
  double interval = gw->limits_last ? (double)(now - gw->limits_last) / 1e6 : (double)gw->cfg->limit_interval_ms;
  gw->limits_last = now;
  sl_limits_round(gw, interval);
}

void sl_limits_start(sl_gateway_t *gw) {
  gw->limits_last = uv_hrtime();
  uv_timer_start(&gw->limits_timer, sl__on_limits, gw->cfg->limit_interval_ms, gw->cfg->limit_interval_ms);
}
