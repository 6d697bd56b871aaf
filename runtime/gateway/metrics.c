/* metrics.c: GET /metrics and /health's verdict (see metrics.h). */
#include "runtime/gateway/metrics.h"
#include "runtime/gateway/engines.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/base/version.h"
#include "runtime/guard/guard.h"
#include "runtime/tenant/tenant.h"

/* ---- a growing text buffer ---- */

typedef struct {
  char *p;
  size_t n, cap;
} sl__out_t;

static void sl__printf(sl__out_t *o, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
    va_end(ap);
    if (k >= 0 && (size_t)k < o->cap - o->n) {
      o->n += (size_t)k;
      return;
    }
    o->cap = o->cap * 2 + (k > 0 ? (size_t)k : 0);
    o->p = sl_realloc(o->p, o->cap);
  }
}

/* A label value, escaped as the format asks (backslash, quote, newline). */
static void sl__label(sl__out_t *o, const char *v) {
  for (; *v; v++) {
    if (*v == '\\' || *v == '"') sl__printf(o, "\\%c", *v);
    else if (*v == '\n') sl__printf(o, "\\n");
    else sl__printf(o, "%c", *v);
  }
}

static void sl__family(sl__out_t *o, const char *name, const char *type, const char *help) {
  sl__printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A number as the format writes it (integers exactly, +Inf, NaN). */
static void sl__num(sl__out_t *o, double v) {
  if (isnan(v)) sl__printf(o, "NaN");
  else if (isinf(v)) sl__printf(o, v > 0 ? "+Inf" : "-Inf");
  else if (v == floor(v) && fabs(v) < 9.007199254740992e15) sl__printf(o, "%.0f", v);
  else sl__printf(o, "%.17g", v);
}

/* One sample: name{labels} value, labels given as "k", "v", ..., NULL. */
static void sl__sample(sl__out_t *o, const char *name, const char *suffix, double v, const char *const *labels) {
  sl__printf(o, "%s%s", name, suffix);
  if (labels && labels[0]) {
    sl__printf(o, "{");
    for (int i = 0; labels[i]; i += 2) {
      sl__printf(o, "%s%s=\"", i ? "," : "", labels[i]);
      sl__label(o, labels[i + 1]);
      sl__printf(o, "\"");
    }
    sl__printf(o, "}");
  }
  sl__printf(o, " ");
  sl__num(o, v);
  sl__printf(o, "\n");
}

/* A histogram's series: cumulative buckets, +Inf, _sum, _count. */
static void sl__hist(sl__out_t *o, const char *name, const sl_hist_t *h, const char *const *labels) {
  const char *l[16];
  int n = 0;
  while (labels && labels[n]) {
    l[n] = labels[n];
    n++;
  }
  char le[32];
  l[n] = "le";
  l[n + 1] = le;
  l[n + 2] = NULL;
  uint64_t cum = 0;
  for (int i = 0; i < h->b->n; i++) {
    cum += h->counts[i];
    snprintf(le, sizeof(le), "%g", h->b->le[i]);
    sl__sample(o, name, "_bucket", (double)cum, l);
  }
  snprintf(le, sizeof(le), "+Inf");
  sl__sample(o, name, "_bucket", (double)h->count, l);
  l[n] = NULL;
  sl__sample(o, name, "_sum", h->sum, l);
  sl__sample(o, name, "_count", (double)h->count, l);
}

/* ---- the families ---- */

/* Every counters.h counter, under its /health name. */
static void sl__flat(sl__out_t *o, const sl_gateway_t *gw) {
  for (int i = 0; i < SL_C__COUNT; i++) {
    char name[96], help[160];
    int gauge = strcmp(sl_counter_kind(i), "gauge") == 0;
    snprintf(name, sizeof(name), "sluice_%s%s", sl_counter_name(i), gauge ? "" : "_total");
    snprintf(help, sizeof(help), "The /health counter %s (docs/operations.md)", sl_counter_name(i));
    sl__family(o, name, gauge ? "gauge" : "counter", help);
    sl__sample(o, name, "", (double)gw->counters.v[i], NULL);
  }
}

/* The endpoint label of endpoint i: its name, or "other" past the cap. */
static const char *sl__ep_label(const sl_gateway_t *gw, const sl_endpoint_t *ep) {
  return ep->id < gw->cfg->metrics_max_endpoints ? ep->name : "other";
}

/* Per endpoint gauges and totals; endpoints past the cap are summed into
 * one "other" series per pool. */
static void sl__endpoints(sl__out_t *o, const sl_gateway_t *gw) {
  static const struct {
    const char *name, *type, *help;
  } fam[] = {
      {"sluice_endpoint_ready", "gauge", "1 when the endpoint passed its last health check and is not draining"},
      {"sluice_endpoint_streams", "gauge", "Streams placed on the endpoint now"},
      {"sluice_endpoint_limit", "gauge", "The endpoint's concurrency limit now (admission)"},
      {"sluice_endpoint_requests_total", "counter", "Attempts sent to the endpoint"},
      {"sluice_endpoint_errors_total", "counter", "Attempts that failed on the endpoint"},
  };
  for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
    sl__family(o, fam[f].name, fam[f].type, fam[f].help);
    for (int p = 0; p < gw->reg.npools; p++) {
      const sl_pool_t *pool = &gw->reg.pools[p];
      double other = 0;
      int others = 0;
      for (int j = 0; j < pool->neps; j++) {
        const sl_endpoint_t *ep = &pool->eps[j];
        double v = f == 0   ? (ep->ready && !ep->draining)
                   : f == 1 ? ep->inflight
                   : f == 2 ? ep->limit
                   : f == 3 ? (double)ep->requests
                            : (double)ep->errors;
        if (ep->id >= gw->cfg->metrics_max_endpoints) {
          other += v;
          others = 1;
          continue;
        }
        const char *l[] = {"pool", pool->cfg->name, "endpoint", ep->name, NULL};
        sl__sample(o, fam[f].name, "", v, l);
      }
      if (others) {
        const char *l[] = {"pool", pool->cfg->name, "endpoint", "other", NULL};
        sl__sample(o, fam[f].name, "", other, l);
      }
    }
  }
  /* Histograms per endpoint. */
  static const struct {
    const char *name, *help;
    size_t off;
  } hist[] = {
      {"sluice_time_to_first_token_seconds", "Time from a request's arrival to its first token (what the client waited)",
       offsetof(sl_endpoint_t, h_ttft)},
      {"sluice_time_per_output_token_seconds", "Time per output token after the first, per stream",
       offsetof(sl_endpoint_t, h_tpot)},
  };
  for (size_t f = 0; f < sizeof(hist) / sizeof(hist[0]); f++) {
    sl__family(o, hist[f].name, "histogram", hist[f].help);
    for (int p = 0; p < gw->reg.npools; p++) {
      const sl_pool_t *pool = &gw->reg.pools[p];
      sl_hist_t other;
      int others = 0;
      for (int j = 0; j < pool->neps; j++) {
        const sl_endpoint_t *ep = &pool->eps[j];
        const sl_hist_t *h = (const sl_hist_t *)((const char *)ep + hist[f].off);
        if (ep->id >= gw->cfg->metrics_max_endpoints) {
          if (!others) sl_hist_init(&other, h->b);
          sl_hist_add(&other, h);
          others = 1;
          continue;
        }
        const char *l[] = {"pool", pool->cfg->name, "endpoint", sl__ep_label(gw, ep), NULL};
        sl__hist(o, hist[f].name, h, l);
      }
      if (others) {
        const char *l[] = {"pool", pool->cfg->name, "endpoint", "other", NULL};
        sl__hist(o, hist[f].name, &other, l);
      }
    }
  }
}

static void sl__pools(sl__out_t *o, const sl_gateway_t *gw) {
  sl__family(o, "sluice_pool_queue_waiting", "gauge", "Requests waiting in the pool's admission queue now");
  for (int p = 0; p < gw->reg.npools; p++) {
    const char *l[] = {"pool", gw->reg.pools[p].cfg->name, NULL};
    sl__sample(o, "sluice_pool_queue_waiting", "", gw->reg.pools[p].queued, l);
  }
  sl__family(o, "sluice_requests_ended_total", "counter", "Streams ended, by home pool and outcome");
  for (int p = 0; p < gw->reg.npools; p++)
    for (int k = 0; k < SL_OUT__COUNT; k++) {
      const char *l[] = {"pool", gw->reg.pools[p].cfg->name, "outcome", sl_outcome_names[k], NULL};
      sl__sample(o, "sluice_requests_ended_total", "", (double)gw->reg.pools[p].outcomes[k], l);
    }
  static const struct {
    const char *name, *help;
    size_t off;
  } hist[] = {
      {"sluice_request_duration_seconds", "Time from a request's arrival to its stream's end",
       offsetof(sl_pool_t, h_duration)},
      {"sluice_queue_wait_seconds", "Time a request spent in the admission queue (0 when it did not wait)",
       offsetof(sl_pool_t, h_queue)},
      {"sluice_request_output_tokens", "Completion tokens per request that produced any",
       offsetof(sl_pool_t, h_tokens)},
  };
  for (size_t f = 0; f < sizeof(hist) / sizeof(hist[0]); f++) {
    sl__family(o, hist[f].name, "histogram", hist[f].help);
    for (int p = 0; p < gw->reg.npools; p++) {
      const char *l[] = {"pool", gw->reg.pools[p].cfg->name, NULL};
      sl__hist(o, hist[f].name, (const sl_hist_t *)((const char *)&gw->reg.pools[p] + hist[f].off), l);
    }
  }
}

/* Requests refused before a stream, by reason (from the counters). */
static void sl__rejections(sl__out_t *o, const sl_gateway_t *gw) {
  static const struct {
    const char *reason;
    int c;
  } r[] = {
      {"bad_request", SL_C_ERR_BAD_REQUEST},       {"not_found", SL_C_ERR_NOT_FOUND},
      {"header_too_large", SL_C_ERR_HEADER_TOO_LARGE}, {"body_too_large", SL_C_ERR_BODY_TOO_LARGE},
      {"unauthorized", SL_C_TENANT_UNAUTHORIZED},  {"forbidden", SL_C_TENANT_FORBIDDEN},
      {"tenant_rate_limited", SL_C_TENANT_RATE_LIMITED}, {"pipeline_denied", SL_C_PIPELINE_DENIED},
      {"queue_full", SL_C_QUEUE_FULL},             {"queue_timeout", SL_C_QUEUE_TIMEOUTS},
      {"no_ready_endpoint", SL_C_ERR_NO_ENDPOINT},
  };
  sl__family(o, "sluice_rejections_total", "counter", "Requests refused before any byte of a stream, by reason");
  for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
    const char *l[] = {"reason", r[i].reason, NULL};
    sl__sample(o, "sluice_rejections_total", "", (double)gw->counters.v[r[i].c], l);
  }
  static const struct {
    const char *guard;
    int c;
  } g[] = {{"stop", SL_C_GUARD_STOP},     {"redaction", SL_C_GUARD_REDACTION}, {"budget", SL_C_GUARD_BUDGET},
           {"loop", SL_C_GUARD_LOOP},     {"ltl", SL_C_GUARD_LTL},             {"pipeline", SL_C_GUARD_PIPELINE}};
  sl__family(o, "sluice_guard_firings_total", "counter", "Guard verdicts (ends, cancels, annotations, masks), by kind");
  for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
    const char *l[] = {"guard", g[i].guard, NULL};
    sl__sample(o, "sluice_guard_firings_total", "", (double)gw->counters.v[g[i].c], l);
  }
}

static void sl__tenants(sl__out_t *o, const sl_gateway_t *gw) {
  static const struct {
    const char *name, *help;
  } fam[] = {
      {"sluice_tenant_requests_total", "Requests a tenant got admitted"},
      {"sluice_tenant_tokens_total", "Tokens a tenant used, settled at each stream's end (type input or output)"},
      {"sluice_tenant_cut_streams_total", "A tenant's streams that ended before the engine's own finish"},
      {"sluice_tenant_refusals_total", "A tenant's requests refused (status 403 or 429) or denied by its pipeline"},
  };
  const sl_tenants_t *ts = gw->tenants;
  int n = ts ? ts->n : 0, cap = gw->cfg->metrics_max_tenants;
  for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
    sl__family(o, fam[f].name, "counter", fam[f].help);
    sl_tenant_usage_t other;
    memset(&other, 0, sizeof(other));
    for (int i = 0; i <= n; i++) {
      const sl_tenant_usage_t *u;
      const char *name;
      if (i < n && i < cap) {
        u = &ts->t[i].usage;
        name = ts->t[i].name;
      } else if (i < n) {
        other.requests += ts->t[i].usage.requests;
        other.prompt_tokens += ts->t[i].usage.prompt_tokens;
        other.completion_tokens += ts->t[i].usage.completion_tokens;
        other.cut_streams += ts->t[i].usage.cut_streams;
        other.refused_403 += ts->t[i].usage.refused_403;
        other.refused_429 += ts->t[i].usage.refused_429;
        other.denied += ts->t[i].usage.denied;
        continue;
      } else {
        if (n <= cap) break;
        u = &other;
        name = "other";
      }
      if (f == 1) {
        const char *li[] = {"tenant", name, "type", "input", NULL};
        const char *lo[] = {"tenant", name, "type", "output", NULL};
        sl__sample(o, fam[f].name, "", (double)u->prompt_tokens, li);
        sl__sample(o, fam[f].name, "", (double)u->completion_tokens, lo);
        continue;
      }
      const char *l[] = {"tenant", name, NULL};
      double v = f == 0 ? (double)u->requests
                 : f == 2 ? (double)u->cut_streams
                          : (double)(u->refused_403 + u->refused_429 + u->denied);
      sl__sample(o, fam[f].name, "", v, l);
    }
  }
}

char *sl_metrics_render(const sl_gateway_t *gw, size_t *len) {
  sl__out_t o = {sl_malloc(65536), 0, 65536};
  sl__family(&o, "sluice_build_info", "gauge", "1, labelled with the version of sluice");
  const char *vl[] = {"version", SL_VERSION, NULL};
  sl__sample(&o, "sluice_build_info", "", 1, vl);
  sl__family(&o, "sluice_uptime_seconds", "gauge", "Seconds since the gateway opened");
  sl__sample(&o, "sluice_uptime_seconds", "", (double)(uv_hrtime() - gw->started_ns) / 1e9, NULL);
  sl__family(&o, "sluice_stream_memory_bytes", "gauge", "Bytes of stream buffers in use (the chunks handed out)");
  sl__sample(&o, "sluice_stream_memory_bytes", "", (double)sl_relay_stream_memory(&gw->streams), NULL);
  sl__family(&o, "sluice_stream_memory_budget_bytes", "gauge",
             "admission.memory_budget_bytes: past it new streams queue (0: none)");
  sl__sample(&o, "sluice_stream_memory_budget_bytes", "", (double)gw->cfg->stream_memory_budget, NULL);
  sl__family(&o, "sluice_generation", "gauge", "The id of the policy generation serving new requests");
  sl__sample(&o, "sluice_generation", "", gw->gen ? (double)gw->gen->id : 0, NULL);
  sl__flat(&o, gw);
  sl__endpoints(&o, gw);
  sl__pools(&o, gw);
  sl__rejections(&o, gw);
  sl__tenants(&o, gw);
  sl__family(&o, "sluice_event_loop_lag_seconds", "histogram",
             "How late the loop ran a periodic timer (metrics.lag_interval_ms): time the loop was busy elsewhere");
  sl__hist(&o, "sluice_event_loop_lag_seconds", &gw->h_lag, NULL);
  *len = o.n;
  return o.p;
}

/* ---- /health's verdict ---- */

int sl_health_verdict(const sl_gateway_t *gw, const char **status, char reasons[][160], int cap) {
  int n = 0, bad = 0;
#define SL__REASON(...)                                        \
  do {                                                         \
    if (n < cap) snprintf(reasons[n++], 160, __VA_ARGS__);     \
  } while (0)
  int ready = 0, total = gw->reg.neps, cooling = 0, standby = 0;
  uint64_t now = uv_hrtime();
  for (int i = 0; i < gw->reg.neps; i++) {
    const sl_endpoint_t *ep = &gw->reg.eps[i];
    ready += ep->ready && !ep->draining;
    cooling += ep->cooldown_until > now;
    /* A swap pool's stopped engine is not down: it starts when asked. */
    standby += sl_engines_standby(gw->engines, ep);
  }
  total -= standby;
  if (standby > 0) SL__REASON("%d managed engine(s) on standby: their swap pool starts them on demand", standby);
  if (gw->streams.draining) {
    SL__REASON("draining: no new requests are taken");
    bad = 2;
  }
  if (ready == 0 && standby == 0) {
    SL__REASON("no endpoint is ready");
    bad = 2;
  } else if (ready < total) {
    SL__REASON("%d of %d endpoints are not ready", total - ready, total);
    if (bad < 1) bad = 1;
  }
  for (int p = 0; p < gw->reg.npools && ready + standby > 0; p++) {
    const sl_pool_t *pool = &gw->reg.pools[p];
    int r = 0;
    for (int j = 0; j < pool->neps; j++)
      r += (pool->eps[j].ready && !pool->eps[j].draining) || sl_engines_standby(gw->engines, &pool->eps[j]);
    if (r == 0) {
      SL__REASON("pool %s has no ready endpoint", pool->cfg->name);
      if (bad < 1) bad = 1;
    }
    if (pool->queued > 0) {
      SL__REASON("%d requests wait in pool %s's queue", pool->queued, pool->cfg->name);
      if (bad < 1) bad = 1;
    }
  }
  if (cooling > 0) {
    SL__REASON("%d endpoints are cooling down after failures", cooling);
    if (bad < 1) bad = 1;
  }
  if (gw->cfg->stream_memory_budget > 0 && sl_relay_stream_memory(&gw->streams) >= gw->cfg->stream_memory_budget) {
    SL__REASON("stream buffers are over their budget: new streams wait");
    if (bad < 1) bad = 1;
  }
  if (gw->lag_last_s >= 0.5) {
    SL__REASON("the event loop ran its last check %.0f ms late", gw->lag_last_s * 1000);
    if (bad < 1) bad = 1;
  }
  for (int ph = 0; gw->gen && ph < gw->gen->nphases; ph++)
    if (gw->gen->phase[ph].suspended) {
      SL__REASON("the %s policy is suspended (over its budget): %s", gw->gen->phases[ph].name,
                 gw->gen->phases[ph].fallback);
      if (bad < 1) bad = 1;
    }
#undef SL__REASON
  *status = bad == 2 ? "unhealthy" : bad == 1 ? "degraded" : "healthy";
  return n;
}

/* ---- the loop's lag ---- */

static void sl__on_lag(uv_timer_t *t) {
  sl_gateway_t *gw = t->data;
  uint64_t now = uv_hrtime();
  double late = now > gw->lag_due ? (double)(now - gw->lag_due) / 1e9 : 0;
  gw->lag_last_s = late;
  sl_hist_observe(&gw->h_lag, late);
  gw->lag_due = now + gw->cfg->lag_interval_ms * 1000000ull;
}

void sl_metrics_start_lag(sl_gateway_t *gw) {
  sl_hist_init(&gw->h_lag, &sl_buckets_lag);
  gw->lag_due = uv_hrtime() + gw->cfg->lag_interval_ms * 1000000ull;
  uv_timer_start(&gw->lag_timer, sl__on_lag, gw->cfg->lag_interval_ms, gw->cfg->lag_interval_ms);
}
