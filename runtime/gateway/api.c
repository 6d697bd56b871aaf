/* api.c: the client API: routes, the request phase, and the small
 * operational endpoints.
 *
 * Routes: POST /v1/chat/completions and POST /v1/completions (to the relay),
 * GET /v1/models, GET /health (counters and endpoint states, with each
 * endpoint's timing dynamics verdict, as JSON),
 * GET /ready (200 when some endpoint is ready, else 503), GET /metrics,
 * and the native task API (stream/tasks.h): POST /tasks (a chat request
 * through the same steps, relayed to the task's sink request),
 * GET /tasks/{id}/stream, GET /tasks/{id} and DELETE /tasks/{id}; a task
 * of another worker is relayed to it (gateway/task_proxy.h).  A
 * worker of a supervisor answers /metrics and /health for the whole
 * instance (gateway/view.h).  A known path with
 * the wrong method is 405 with Allow; anything else is 404.  A completion
 * request goes through the request phase (sl__completion), whose steps are
 * the functions of gateway/request.h: parse, validate (400 naming the field
 * and the value, 404 for an unknown model), the marked places for tenants
 * and admission, keeping the body the engine adapters build from, then
 * the relay.  Authorization is accepted and ignored while no tenants are
 * configured, and never forwarded.
 *
 * The request id is decided here, at the door, for every completion
 * request: the client's X-Request-Id when it is safe to print, else a
 * generated one; every response and log line for the request carries that
 * id.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/counters.h"
#include "runtime/gateway/api.h"
#include "runtime/gateway/catalog.h"
#include "runtime/gateway/engines.h"
#include "runtime/gateway/gateway.h"
#include "runtime/gateway/shared_state.h"
#include "runtime/gateway/metrics.h"
#include "runtime/gateway/request.h"
#include "runtime/gateway/view.h"
#include "runtime/gateway/task_proxy.h"
#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/guard/guard.h"
#include "runtime/tenant/tenant.h"
#include "runtime/stream/reply.h"
#include "runtime/base/narrate.h"

static void sl__json_reply(sl_http_req_t *req, int status, cJSON *o) {
  char *s = cJSON_PrintUnformatted(o);
  sl_http_respond(req, status, "application/json", s, strlen(s), NULL);
  cJSON_free(s);
  cJSON_Delete(o);
}

/* ---- operational endpoints ---- */

/* The gaps the endpoint recorded ("gaps_seen") and its latest timing
 * verdict (timing.h) as "dynamics": an object, or null before the first. */
static void sl__dynamics_json(cJSON *e, const sl_endpoint_t *ep, uint64_t now) {
  const sl_dyn_verdict_t *v = &ep->dyn;
  cJSON_AddNumberToObject(e, "gaps_seen", (double)ep->gaps.total);
  if (v->cls < 0) {
    cJSON_AddNullToObject(e, "dynamics");
    return;
  }
  cJSON *d = cJSON_AddObjectToObject(e, "dynamics");
  cJSON_AddStringToObject(d, "class", v->name);
  cJSON_AddNumberToObject(d, "lambda", v->lambda);
  cJSON_AddNumberToObject(d, "fit_r2", v->fit_r2);
  cJSON_AddNumberToObject(d, "growth", v->growth);
  cJSON_AddNumberToObject(d, "fnn", v->fnn);
  cJSON_AddNumberToObject(d, "recurrence", v->recurrence);
  cJSON_AddNumberToObject(d, "trend_r2", v->trend_r2);
  cJSON_AddNumberToObject(d, "mean_gap_ms", v->mean_ms);
  cJSON_AddNumberToObject(d, "samples", v->samples);
  cJSON_AddNumberToObject(d, "runs", (double)v->runs);
  cJSON_AddNumberToObject(d, "age_ms", now > v->at ? (double)(now - v->at) / 1e6 : 0);
}

/* Each tenant's usage (tenant.h), and the 401s, as "tenants" and
 * "tenants_unauthorized" (absent without tenants). */
static void sl__tenants_json(const sl_gateway_t *gw, cJSON *o) {
  const sl_tenants_t *ts = gw->tenants;
  if (ts == NULL || ts->n == 0) return;
  cJSON_AddNumberToObject(o, "tenants_unauthorized", (double)ts->unauthorized);
  cJSON *arr = cJSON_AddArrayToObject(o, "tenants");
  for (int i = 0; i < ts->n; i++) {
    const sl_tenant_t *t = &ts->t[i];
    const sl_tenant_usage_t *u = &t->usage;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", t->name);
    cJSON_AddStringToObject(e, "priority", sl_priority_name(t->priority));
    const sl_pipeline_t *p = gw->gen && i < gw->gen->npipes ? gw->gen->pipes[i] : NULL;
    if (p) {
      size_t bytes, peak;
      sl_pipeline_memory(p, &bytes, &peak);
      cJSON_AddStringToObject(e, "pipeline", sl_pipeline_file(p));
      cJSON_AddNumberToObject(e, "pipeline_memory_bytes", (double)bytes);
    } else {
      cJSON_AddNullToObject(e, "pipeline");
    }
    cJSON_AddNumberToObject(e, "requests", (double)u->requests);
    cJSON_AddNumberToObject(e, "prompt_tokens", (double)u->prompt_tokens);
    cJSON_AddNumberToObject(e, "completion_tokens", (double)u->completion_tokens);
    cJSON_AddNumberToObject(e, "cut_streams", (double)u->cut_streams);
    cJSON_AddNumberToObject(e, "reserved_tokens", (double)u->reserved_tokens);
    cJSON_AddNumberToObject(e, "refused_403", (double)u->refused_403);
    cJSON_AddNumberToObject(e, "refused_429", (double)u->refused_429);
    cJSON_AddNumberToObject(e, "denied", (double)u->denied);
    cJSON_AddNumberToObject(e, "pipeline_errors", (double)u->pipeline_errors);
    cJSON_AddNumberToObject(e, "shared_fail_open", (double)u->shared_fail_open);
    cJSON_AddNumberToObject(e, "shared_fail_closed", (double)u->shared_fail_closed);
    cJSON_AddItemToArray(arr, e);
  }
}

/* A worker's /health additions: the instance's counters into c (instead of
 * its own), who answered, and every worker as the view sees it. */
static void sl__health_instance(sl_gateway_t *gw, cJSON *o, cJSON *c) {
  sl_view_publish_gateway(gw, NULL, NULL);
  int n = sl_view_nworkers(gw->view);
  sl_view_worker_t *w = sl_calloc((size_t)n, sizeof(*w));
  sl_counters_t sum;
  int k = sl_view_instance(gw->view, &sum, w, n);
  if (k < 0) {
    /* A retirement kept moving totals under every read: the worker's own
     * counters, and the answer says so. */
    cJSON_AddStringToObject(o, "counters_scope", "worker");
    for (int i = 0; i < SL_C__COUNT; i++) cJSON_AddNumberToObject(c, sl_counter_name(i), (double)gw->counters.v[i]);
    k = 0;
  } else {
    cJSON_AddStringToObject(o, "counters_scope", "instance");
    for (int i = 0; i < SL_C__COUNT; i++) cJSON_AddNumberToObject(c, sl_counter_name(i), (double)sum.v[i]);
  }
  cJSON_AddNumberToObject(o, "worker", gw->worker);
  cJSON_AddNumberToObject(o, "nworkers", n);
  uint64_t restarts, lost;
  sl_view_losses(gw->view, &restarts, &lost);
  cJSON_AddNumberToObject(o, "worker_restarts", (double)restarts);
  cJSON_AddNumberToObject(o, "worker_streams_lost", (double)lost);
  /* The top-level figures (streams_in_flight, connections, ...) and the
   * verdict are the answering worker's; the counters and workers are the
   * instance's. */
  cJSON_AddStringToObject(o, "scope", "worker");
  cJSON *arr = cJSON_AddArrayToObject(o, "workers");
  for (int i = 0; i < k; i++) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "index", w[i].worker);
    cJSON_AddBoolToObject(e, "published", w[i].published);
    cJSON_AddBoolToObject(e, "up", w[i].up);
    cJSON_AddNumberToObject(e, "pid", w[i].pid);
    cJSON_AddNumberToObject(e, "published_age_ms", w[i].age_ms);
    cJSON_AddNumberToObject(e, "streams_in_flight", w[i].streams_in_flight);
    cJSON_AddItemToArray(arr, e);
  }
  sl_free(w);
}

static void sl__health(sl_gateway_t *gw, sl_http_req_t *req) {
  cJSON *o = cJSON_CreateObject();
  const char *status;
  char reasons[12][160];
  int nr = sl_health_verdict(gw, &status, reasons, 12);
  cJSON_AddStringToObject(o, "status", status);
  cJSON *rj = cJSON_AddArrayToObject(o, "reasons");
  for (int i = 0; i < nr; i++) cJSON_AddItemToArray(rj, cJSON_CreateString(reasons[i]));
  cJSON_AddBoolToObject(o, "draining", gw->streams.draining);
  cJSON_AddNumberToObject(o, "uptime_s", (double)(uv_hrtime() - gw->started_ns) / 1e9);
  cJSON_AddNumberToObject(o, "streams_in_flight", gw->streams.n);
  cJSON_AddNumberToObject(o, "connections", sl_http_server_connections(gw->http));
  cJSON_AddNumberToObject(o, "upstream_connections", sl_upstream_open_connections(&gw->up));
  cJSON_AddNumberToObject(o, "chunk_size", (double)gw->chunks.chunk_size);
  cJSON_AddNumberToObject(o, "stream_pin_bound_bytes", (double)sl_relay_pin_bound(gw->cfg));
  cJSON_AddNumberToObject(o, "snapshot_version", (double)gw->reg.snapshot_version);
  /* Admission (docs/admission.md): what waits, and the stream buffers'
   * budget (past it new streams queue). */
  cJSON *adm = cJSON_AddObjectToObject(o, "admission");
  cJSON_AddNumberToObject(adm, "queued", gw->streams.nqueued);
  cJSON_AddNumberToObject(adm, "stream_memory_bytes", (double)sl_relay_stream_memory(&gw->streams));
  cJSON_AddNumberToObject(adm, "stream_memory_budget_bytes", (double)gw->cfg->stream_memory_budget);
  cJSON_AddStringToObject(adm, "limit_rule", gw->gen && gw->gen->phase[SL_PHASE_LIMIT].name[0]
                                                 ? gw->gen->phase[SL_PHASE_LIMIT].name
                                                 : "none");
  if (gw->view != NULL) cJSON_AddStringToObject(adm, "scope", "worker");
  /* The native task API: this process's tasks. */
  sl_tasks_stats_t tst;
  sl_tasks_stats(&gw->tasks, &tst);
  cJSON *tj = cJSON_AddObjectToObject(o, "tasks");
  cJSON_AddNumberToObject(tj, "live", tst.live);
  cJSON_AddNumberToObject(tj, "running", tst.running);
  cJSON_AddNumberToObject(tj, "detached", tst.detached);
  cJSON_AddNumberToObject(tj, "paused", tst.paused);
  cJSON_AddNumberToObject(tj, "ring_bytes", (double)tst.ring_bytes);
  cJSON_AddNumberToObject(tj, "ring_memory_bytes", (double)tst.ring_memory);
  cJSON_AddNumberToObject(tj, "ring_bytes_limit", (double)gw->cfg->task_ring_bytes);
  cJSON_AddNumberToObject(tj, "grace_ms", (double)gw->cfg->task_grace_ms);
  if (gw->view != NULL) cJSON_AddStringToObject(tj, "scope", "worker");
  cJSON *c = cJSON_AddObjectToObject(o, "counters");
  if (gw->view != NULL) sl__health_instance(gw, o, c);
  else
    for (int i = 0; i < SL_C__COUNT; i++) cJSON_AddNumberToObject(c, sl_counter_name(i), (double)gw->counters.v[i]);
  cJSON *pools = cJSON_AddArrayToObject(o, "pools");
  uint64_t now = uv_hrtime();
  for (int i = 0; i < gw->reg.npools; i++) {
    sl_pool_t *p = &gw->reg.pools[i];
    cJSON *po = cJSON_CreateObject();
    cJSON_AddStringToObject(po, "name", p->cfg->name);
    if (gw->view != NULL) cJSON_AddStringToObject(po, "scope", "worker"); /* this worker's, not the instance's */
    /* Streams cut after their first token, and the counts they kept. */
    cJSON_AddNumberToObject(po, "cut_streams", (double)p->cut_streams);
    cJSON_AddNumberToObject(po, "cut_tokens_received", (double)p->cut_tokens_received);
    cJSON_AddNumberToObject(po, "cut_tokens_written", (double)p->cut_tokens_written);
    const sl_admq_t *q = &gw->streams.queues[i];
    cJSON *qj = cJSON_AddObjectToObject(po, "queue");
    cJSON_AddNumberToObject(qj, "waiting", (double)q->n);
    cJSON_AddNumberToObject(qj, "high", (double)q->nband[SL_PRIO_HIGH]);
    cJSON_AddNumberToObject(qj, "normal", (double)q->nband[SL_PRIO_NORMAL]);
    cJSON_AddNumberToObject(qj, "low", (double)q->nband[SL_PRIO_LOW]);
    cJSON_AddNumberToObject(qj, "capacity", p->cfg->queue_size);
    cJSON_AddNumberToObject(qj, "timeout_ms", (double)p->cfg->queue_timeout_ms);
    cJSON_AddNumberToObject(qj, "drain_per_s", p->drain_per_s);
    cJSON_AddNumberToObject(qj, "wait_ms", p->wait_ms);
    cJSON_AddNumberToObject(qj, "retry_after_ms", (double)sl_relay_retry_after_ms(&gw->streams, i));
    const sl_guardset_t *gs = gw->streams.guards[i];
    cJSON *gj = cJSON_AddArrayToObject(po, "guards");
    if (gs) {
      if (gs->stop_ac || gs->client_stop) cJSON_AddItemToArray(gj, cJSON_CreateString("stop"));
      if (gs->redact_ac || gs->rx) cJSON_AddItemToArray(gj, cJSON_CreateString("redaction"));
      if (gs->budget) cJSON_AddItemToArray(gj, cJSON_CreateString("budget"));
      if (gs->loop_on) cJSON_AddItemToArray(gj, cJSON_CreateString("loop"));
      for (int k = 0; k < gs->nltl; k++) {
        char nm[80];
        snprintf(nm, sizeof(nm), "ltl:%s", gs->ltl[k].name);
        cJSON_AddItemToArray(gj, cJSON_CreateString(nm));
      }
    }
    cJSON *eps = cJSON_AddArrayToObject(po, "endpoints");
    for (int j = 0; j < p->neps; j++) {
      sl_endpoint_t *ep = &p->eps[j];
      cJSON *e = cJSON_CreateObject();
      cJSON_AddStringToObject(e, "address", ep->name);
      cJSON_AddBoolToObject(e, "simulated", sl_gateway_sim(gw, ep) != NULL);
      cJSON_AddBoolToObject(e, "ready", ep->ready);
      cJSON_AddBoolToObject(e, "draining", ep->draining);
      cJSON_AddNumberToObject(e, "streams", ep->inflight);
      cJSON_AddNumberToObject(e, "slots", ep->slots);
      if (gw->worker > 0) cJSON_AddNumberToObject(e, "slots_configured", ep->slots_configured); /* slots: the worker's share */
      cJSON_AddNumberToObject(e, "limit", ep->limit);
      cJSON_AddNumberToObject(e, "limit_min", ep->limit_min);
      cJSON_AddNumberToObject(e, "limit_max", ep->limit_max);
      cJSON_AddBoolToObject(e, "adaptive", ep->adaptive);
      cJSON_AddNumberToObject(e, "ttft_p90_ms", ep->ttft_p90_ms);
      cJSON_AddNumberToObject(e, "itl_p90_ms", ep->itl_p90_ms);
      cJSON_AddNumberToObject(e, "cooldown_ms",
                              ep->cooldown_until > now ? (double)(ep->cooldown_until - now) / 1e6 : 0);
      cJSON_AddNumberToObject(e, "consecutive_failures", ep->failures);
      cJSON_AddNumberToObject(e, "requests", (double)ep->requests);
      cJSON_AddNumberToObject(e, "errors", (double)ep->errors);
      cJSON_AddNumberToObject(e, "idle_connections", ep->nidle);
      sl__dynamics_json(e, ep, now);
      if (ep->ecfg && ep->ecfg->nmodels > 0) {
        cJSON *ms = cJSON_AddArrayToObject(e, "models");
        for (int m = 0; m < ep->ecfg->nmodels; m++) cJSON_AddItemToArray(ms, cJSON_CreateString(ep->ecfg->models[m]));
      }
      sl_engines_json(gw->engines, ep, e); /* "managed": its process, when sluice runs it */
      cJSON_AddItemToArray(eps, e);
    }
    cJSON_AddItemToArray(pools, po);
  }
  sl__tenants_json(gw, o);
  if (gw->shared != NULL) sl_shared_json(gw->shared, o);
  /* 503 when unhealthy, so a plain HTTP check can tell; the body says why. */
  sl__json_reply(req, strcmp(status, "unhealthy") == 0 ? 503 : 200, o);
}

static void sl__metrics(sl_gateway_t *gw, sl_http_req_t *req) {
  size_t n;
  char *text;
  /* A worker publishes its fresh render first, so no later answer (from
   * any worker) shows it older than this one does. */
  sl_view_publish_gateway(gw, &text, &n);
  if (gw->view != NULL) {
    size_t mn;
    char *merged = sl_view_metrics(gw->view, text, n, &mn);
    sl_free(text);
    text = merged;
    n = mn;
  }
  sl_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, n, NULL);
  sl_free(text);
}

static void sl__ready(sl_gateway_t *gw, sl_http_req_t *req) {
  int standby = 0; /* a swap pool's stopped engine starts when a request asks: the instance can serve */
  for (int i = 0; i < gw->reg.neps && !standby; i++) standby = sl_engines_standby(gw->engines, &gw->reg.eps[i]);
  int ready = !gw->streams.draining && (sl_registry_any_ready(&gw->reg) || standby);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddBoolToObject(o, "ready", ready);
  if (!ready) cJSON_AddStringToObject(o, "reason", gw->streams.draining ? "draining" : "no endpoint has passed its health check");
  sl__json_reply(req, ready ? 200 : 503, o);
}

/* 1 when an endpoint ready to take streams serves model name (its pool
 * lists it, and so does the endpoint's own "models" when it has one). */
static int sl__model_loaded(const sl_gateway_t *gw, const char *name) {
  for (int i = 0; i < gw->reg.npools; i++) {
    const sl_pool_t *p = &gw->reg.pools[i];
    int serves = 0;
    for (int m = 0; m < p->cfg->nmodels && !serves; m++)
      serves = strcmp(p->cfg->models[m], name) == 0 || strcmp(p->cfg->models[m], "*") == 0;
    for (int j = 0; serves && j < p->neps; j++)
      if (p->eps[j].ready && !p->eps[j].draining && sl_endpoint_serves(&p->eps[j], name)) return 1;
  }
  return 0;
}

static void sl__models(sl_gateway_t *gw, sl_http_req_t *req) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "object", "list");
  cJSON *data = cJSON_AddArrayToObject(o, "data");
  for (int i = 0; i < gw->reg.npools; i++) {
    const sl_pool_config_t *p = gw->reg.pools[i].cfg;
    for (int m = 0; m < p->nmodels; m++) {
      int dup = 0;
      for (int a = 0; a <= i && !dup; a++) {
        const sl_pool_config_t *q = gw->reg.pools[a].cfg;
        for (int b = 0; b < (a == i ? m : q->nmodels); b++)
          if (strcmp(q->models[b], p->models[m]) == 0) dup = 1;
      }
      if (dup) continue;
      cJSON *e = cJSON_CreateObject();
      cJSON_AddStringToObject(e, "id", p->models[m]);
      cJSON_AddStringToObject(e, "object", "model");
      cJSON_AddNumberToObject(e, "created", 0);
      char owner[160];
      snprintf(owner, sizeof(owner), "sluice:%s", p->name);
      cJSON_AddStringToObject(e, "owned_by", owner);
      cJSON_AddBoolToObject(e, "loaded", sl__model_loaded(gw, p->models[m]));
      if (sl_catalog_find(gw->cfg, p->models[m]) != NULL) cJSON_AddStringToObject(e, "catalog", "verified");
      cJSON_AddItemToArray(data, e);
    }
  }
  /* Catalog models no pool names yet (a file on disk, no engine for it). */
  for (int c = 0; c < gw->cfg->ncatalog; c++) {
    const char *name = gw->cfg->catalog[c].name;
    int named = 0;
    for (int i = 0; i < gw->reg.npools && !named; i++)
      for (int m = 0; m < gw->reg.pools[i].cfg->nmodels && !named; m++)
        named = strcmp(gw->reg.pools[i].cfg->models[m], name) == 0;
    if (named) continue;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "id", name);
    cJSON_AddStringToObject(e, "object", "model");
    cJSON_AddNumberToObject(e, "created", 0);
    cJSON_AddStringToObject(e, "owned_by", "sluice:catalog");
    cJSON_AddBoolToObject(e, "loaded", 0);
    cJSON_AddStringToObject(e, "catalog", "verified");
    cJSON_AddItemToArray(data, e);
  }
  sl__json_reply(req, 200, o);
}

/* ---- request id ---- */

/* A client id is kept only if it is short, made of [A-Za-z0-9._-], and the
 * log redactor would print it unchanged: an id that looks like a secret
 * would otherwise be printed verbatim in some lines and "[redacted]" in
 * others, and log lines could no longer be matched by id. */
static int sl__client_id_ok(const sl_gateway_t *gw, const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > SL_REQUEST_ID_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
          c == '.'))
      return 0;
  }
  char shown[2 * SL_REQUEST_ID_MAX + 16];
  return strcmp(sl_log_redact(gw->nar, s, shown, sizeof(shown)), s) == 0;
}

/* Decides the request's id (into r->id) and has every response to it say
 * so: X-Request-Id, and X-Sluice-Request-Id-Replaced: 1 when the client's
 * own id was refused. */
static void sl__request_id(sl_gateway_t *gw, sl_http_req_t *req, sl_request_t *r) {
  const char *cid = sl_http_req_header(req, "x-request-id");
  int replaced = 0;
  if (cid != NULL && sl__client_id_ok(gw, cid)) {
    snprintf(r->id, sizeof(r->id), "%s", cid);
  } else {
    snprintf(r->id, sizeof(r->id), "req-%08" PRIx64, ++gw->next_id);
    replaced = cid != NULL && cid[0] != '\0';
  }
  /* Under a supervisor the answer also names the worker that gave it. */
  char lines[SL_HTTP_RESPONSE_HEADERS_MAX + 1], worker[40] = "";
  if (gw->worker > 0) snprintf(worker, sizeof(worker), "X-Sluice-Worker: %d\r\n", gw->worker);
  snprintf(lines, sizeof(lines), "X-Request-Id: %s\r\n%s%s", r->id,
           replaced ? "X-Sluice-Request-Id-Replaced: 1\r\n" : "", worker);
  (void)sl_http_req_set_response_headers(req, lines); /* at most ~100 bytes: fits */
}

/* ---- the request phase ---- */

/* Answers a request a step refused, counting it. */
static void sl__refused(sl_gateway_t *gw, sl_http_req_t *req, const sl_request_error_t *e) {
  if (e->counter >= 0) sl_counter_inc(&gw->counters, e->counter);
  sl_reply_error(req, e->status, e->type, e->code, NULL, "%s", e->message);
}

/* ---- tenants ---- */

/* Narrates a pipeline's request-phase action or failure. */
static void sl__pipe_note(sl_gateway_t *gw, const sl_request_t *r, const char *what, const char *text, size_t n) {
  char line[320];
  snprintf(line, sizeof(line), "pipeline on_request %s: %.*s", what, (int)(n < 240 ? n : 240), text);
  sl_narrate_push(gw->nar, SL_NAR_GUARD, r->id, NULL, r->model, line, 0, gw->gen ? gw->gen->id : 0, 0, 0);
}

/* The tenant's on_request: runs the phase over the tree, applies its
 * actions.  Returns 0, or -1 with the client answered (*answered) or *e
 * filled. */
static int sl__on_request(sl_gateway_t *gw, sl_http_req_t *req, int chat, sl_request_t *r, cJSON **root,
                          sl_request_error_t *e, int *answered) {
  sl_tenant_t *t = r->tenant;
  sl_pipe_actions_t *acts = gw->streams.acts;
  char err[512];
  int changed = 0;
  sl_counter_inc(&gw->counters, SL_C_PIPELINE_CALLS);
  int rc = sl_pipeline_on_request(r->pipe, r->pipe_h, r->id, root, &changed, acts, err, sizeof(err));
  if (rc < 0) {
    sl_counter_inc(&gw->counters, SL_C_PIPELINE_ERRORS);
    t->usage.pipeline_errors++;
    sl__pipe_note(gw, r, "failed", err, strlen(err));
    sl_reply_error(req, 500, "server_error", "pipeline_error", NULL, "tenant %s's pipeline failed in on_request: %s",
                   t->name, err);
    *answered = 1;
    return -1;
  }
  cJSON *stops = NULL, *lits = NULL;
  for (int i = 0; i < acts->n; i++) {
    const sl_pact_t *a = &acts->a[i];
    switch (a->kind) {
      case SL_PACT_DENY:
        sl_counter_inc(&gw->counters, SL_C_PIPELINE_DENIED);
        t->usage.denied++;
        sl__pipe_note(gw, r, "denied", a->text, a->len);
        sl_reply_error(req, a->status, "invalid_request_error", "pipeline_denied", NULL, "%.*s", (int)a->len,
                       a->text);
        cJSON_Delete(stops);
        cJSON_Delete(lits);
        *answered = 1;
        return -1;
      case SL_PACT_ADD_STOP:
        if (stops == NULL) stops = cJSON_CreateArray();
        cJSON_AddItemToArray(stops, cJSON_CreateString(a->text));
        break;
      case SL_PACT_ADD_REDACT:
        if (lits == NULL) lits = cJSON_CreateArray();
        cJSON_AddItemToArray(lits, cJSON_CreateString(a->text));
        break;
      case SL_PACT_NARRATE:
      case SL_PACT_ANNOTATE: sl__pipe_note(gw, r, sl_pact_name(a->kind), a->text, a->len); break;
      default: break;
    }
  }
  if (stops != NULL || lits != NULL) {
    /* The additions, as a guards object merged into the pool's and the
     * tenant's when the stream is placed (guard.h: sl_guards_merge). */
    cJSON *g = cJSON_CreateObject();
    if (stops != NULL) cJSON_AddItemToObject(cJSON_AddObjectToObject(g, "stop"), "strings", stops);
    if (lits != NULL) cJSON_AddItemToObject(cJSON_AddObjectToObject(g, "redact"), "literals", lits);
    char *txt = cJSON_PrintUnformatted(g);
    r->extra_guards = sl_strndup(txt, strlen(txt));
    cJSON_free(txt);
    cJSON_Delete(g);
  }
  if (changed) {
    /* The rewritten request is checked like the client's own, and the
     * tenant must still be allowed its model. */
    sl_request_t keep = *r;
    memset(r, 0, sizeof(*r));
    memcpy(r->id, keep.id, sizeof(r->id));
    r->tenant = keep.tenant;
    r->pipe = keep.pipe;
    r->pipe_h = keep.pipe_h;
    r->extra_guards = keep.extra_guards;
    if (sl_request_validate(*root, chat, sl_http_req_header(req, "x-session-id"), r, e) < 0) {
      size_t n = strlen(e->message);
      snprintf(e->message + n, sizeof(e->message) - n, " (after tenant %s's pipeline rewrote the request)", t->name);
      return -1;
    }
    if (!sl_tenant_model_ok(t, r->model)) {
      t->usage.refused_403++;
      sl_counter_inc(&gw->counters, SL_C_TENANT_FORBIDDEN);
      sl_reply_error(req, 403, "invalid_request_error", "model_not_allowed", NULL,
                     "tenant %s's pipeline rewrote the model to %s, which the tenant may not use", t->name, r->model);
      *answered = 1;
      return -1;
    }
  }
  return 0;
}

/* Step 3: who asks, whether it may use the model, and its on_request. */
static int sl__tenant_step(sl_gateway_t *gw, sl_http_req_t *req, int chat, sl_request_t *r, cJSON **root,
                           sl_request_error_t *e, int *answered) {
  sl_tenant_t *t = sl_tenants_auth(gw->tenants, sl_http_req_header(req, "authorization"));
  *answered = 1;
  if (t == NULL) {
    gw->tenants->unauthorized++;
    sl_counter_inc(&gw->counters, SL_C_TENANT_UNAUTHORIZED);
    sl_reply_error(req, 401, "invalid_request_error", "invalid_api_key", "WWW-Authenticate: Bearer realm=\"sluice\"\r\n",
                   sl_http_req_header(req, "authorization") == NULL
                       ? "No API key provided: send it as 'Authorization: Bearer <key>'"
                       : "Incorrect API key provided");
    return -1;
  }
  if (!sl_tenant_model_ok(t, r->model)) {
    t->usage.refused_403++;
    sl_counter_inc(&gw->counters, SL_C_TENANT_FORBIDDEN);
    sl_reply_error(req, 403, "invalid_request_error", "model_not_allowed", NULL,
                   "tenant %s may not use model %s", t->name, r->model);
    return -1;
  }
  *answered = 0;
  r->tenant = t;
  sl_generation_t *g = gw->gen;
  sl_pipeline_t *p = g != NULL && t->index < g->npipes ? g->pipes[t->index] : NULL;
  if (p == NULL) return 0;
  int h = sl_pipeline_begin(p, r->id, r->model);
  if (h <= 0) {
    e->status = 500;
    e->type = "server_error";
    e->code = "pipeline_error";
    e->counter = -1;
    snprintf(e->message, sizeof(e->message), "tenant %s's pipeline is out of memory", t->name);
    return -1;
  }
  r->pipe = p;
  r->pipe_h = h;
  if (!(sl_pipeline_phases(p) & SL_PIPE_ON_REQUEST)) return 0;
  return sl__on_request(gw, req, chat, r, root, e, answered);
}

/* The largest context of the pools serving r's model (0: none known). */
static int64_t sl__context_of(const sl_gateway_t *gw, const sl_request_t *r) {
  int64_t best = 0;
  for (int i = 0; i < gw->cfg->npools; i++) {
    const sl_pool_config_t *p = &gw->cfg->pools[i];
    for (int m = 0; m < p->nmodels; m++)
      if ((strcmp(p->models[m], r->model) == 0 || strcmp(p->models[m], "*") == 0) && p->context_tokens > best)
        best = p->context_tokens;
  }
  return best;
}

/* Step 4b: the tenant's windows.  The prompt's tokens are estimated from
 * its characters (4 to a token) until the engine's usage settles them. */
static int sl__tenant_admit(sl_gateway_t *gw, sl_http_req_t *req, sl_request_t *r, int *answered) {
  sl_tenant_t *t = r->tenant;
  int64_t prompt = (int64_t)(r->prompt_chars + 3) / 4;
  int64_t ctx = sl__context_of(gw, r);
  int64_t left = ctx > prompt ? ctx - prompt : 0;
  sl_tenant_refusal_t why;
  uint64_t fo = t->usage.shared_fail_open, fc = t->usage.shared_fail_closed;
  int rc = sl_tenant_admit(t, gw->dict, prompt, r->max_tokens, left, &r->resv, &why);
  gw->counters.v[SL_C_SHARED_FAIL_OPEN] += t->usage.shared_fail_open - fo;
  gw->counters.v[SL_C_SHARED_FAIL_CLOSED] += t->usage.shared_fail_closed - fc;
  if (rc == 0) return 0;
  *answered = 1;
  if (rc == SL_ETOOBIG) {
    sl_counter_inc(&gw->counters, SL_C_TENANT_RATE_LIMITED);
    /* A request larger than the whole window gets no Retry-After: waiting
     * would not help (OpenAI answers "Request too large" the same way). */
    char extra[96] = "";
    uint64_t secs = (why.retry_after_ms + 999) / 1000;
    if (why.retry_after_ms > 0)
      snprintf(extra, sizeof(extra), "Retry-After: %llu\r\nretry-after-ms: %llu\r\n", (unsigned long long)secs,
               (unsigned long long)why.retry_after_ms);
    /* OpenAI's shape: type "requests" or "tokens", code rate_limit_exceeded. */
    sl_reply_error(req, 429, strcmp(why.limit, "requests_per_minute") == 0 ? "requests" : "tokens",
                   "rate_limit_exceeded", extra[0] ? extra : NULL, "%s", why.message);
    return -1;
  }
  sl_reply_error(req, 503, "service_unavailable", "tenant_state", "Retry-After: 1\r\n", "%s", why.message);
  return -1;
}

/* A completion request from its body to a stream: the steps of
 * gateway/request.h, in order, each answering the client itself when it
 * refuses.  r has its id (decided at the door). */
static void sl__task_start(sl_gateway_t *gw, sl_http_req_t *req, sl_request_t *r);

static void sl__completion(sl_gateway_t *gw, sl_http_req_t *req, int chat, sl_request_t *r, int task) {
  sl_request_error_t e;
  cJSON *root = NULL;
  /* 1. Parse. */
  if (sl_request_parse(req->body, req->body_len, &root, &e) < 0) {
    sl__refused(gw, req, &e);
    return;
  }
  /* 2. Validate: the fields, then the model against the registry. */
  int rc = sl_request_validate(root, chat, sl_http_req_header(req, "x-session-id"), r, &e);
  if (rc == 0) rc = sl_request_check_model(&gw->reg, r, &e);
  /* 3. The tenant: who asks (401) for what (403), then its pipeline's
   *    on_request, which may rewrite the tree (checked again), deny it or
   *    add guards.  Without tenants the API is open. */
  int answered = 0;
  if (rc == 0 && gw->tenants != NULL && gw->tenants->n > 0) {
    rc = sl__tenant_step(gw, req, chat, r, &root, &e, &answered);
    if (rc == 0) rc = sl_request_check_model(&gw->reg, r, &e);
  }
  /* 4. Keep what the engine adapters build from, and free the tree: a
   *    request that waits (admission) holds only its compact body. */
  if (rc == 0) rc = sl_request_keep_body(root, r, &e);
  cJSON_Delete(root);
  /* 4b. The tenant's limits: the request is counted and its tokens are
   *    reserved before any byte of a stream (429 with Retry-After). */
  if (rc == 0 && r->tenant != NULL) rc = sl__tenant_admit(gw, req, r, &answered);
  if (rc < 0) {
    if (r->pipe != NULL) sl_pipeline_finish(r->pipe, r->pipe_h);
    sl_free(r->body);
    sl_free(r->extra_guards);
    if (!answered) sl__refused(gw, req, &e);
    return;
  }
  /* 5. Admission: the request's band (its tenant's priority, or the header
   *    the operator allows when there are no tenants).  The relay queues
   *    it when no endpoint has room (docs/admission.md). */
  r->priority = r->tenant != NULL ? (int)r->tenant->priority : SL_PRIO_NORMAL;
  const char *ph = r->tenant == NULL && gw->cfg->priority_header[0] ? sl_http_req_header(req, gw->cfg->priority_header)
                                                                     : NULL;
  if (ph != NULL) {
    int band = strcmp(ph, "high") == 0 ? SL_PRIO_HIGH
               : strcmp(ph, "normal") == 0 ? SL_PRIO_NORMAL
               : strcmp(ph, "low") == 0 ? SL_PRIO_LOW
               : -1;
    if (band < 0) {
      sl_request_error_t pe = {.status = 400, .type = "invalid_request_error", .code = "priority",
                               .counter = SL_C_ERR_BAD_REQUEST};
      snprintf(pe.message, sizeof(pe.message), "%s: expected \"high\", \"normal\" or \"low\", got \"%.64s\"",
               gw->cfg->priority_header, ph);
      if (r->pipe != NULL) sl_pipeline_finish(r->pipe, r->pipe_h);
      sl_free(r->body);
      sl_free(r->extra_guards);
      sl__refused(gw, req, &pe);
      return;
    }
    r->priority = band;
  }
  /* 6. Place and relay: the relay places every attempt, and the adapter
   *    of the pool placed on builds that attempt's engine request.  A task
   *    is relayed to its sink instead of the client. */
  if (task) {
    sl__task_start(gw, req, r);
    return;
  }
  sl_relay_start(&gw->streams, req, r, gw->gen);
}

/* ---- the native task API (stream/tasks.h) ---- */

/* POST /tasks, validated: the task is made and its stream started at once
 * (admission and placement as for a chat request), then 201. */
static void sl__task_start(sl_gateway_t *gw, sl_http_req_t *req, sl_request_t *r) {
  sl_task_t *t;
  r->stream = 1;        /* implied */
  r->include_usage = 1; /* the end event carries usage */
  if (sl_task_create(&gw->tasks, req, r->model, r->id, &t) < 0) {
    /* Only while closing (tasks.max was checked at the door). */
    if (r->pipe != NULL) sl_pipeline_finish(r->pipe, r->pipe_h);
    sl_free(r->body);
    sl_free(r->extra_guards);
    sl_reply_error(req, 503, "service_unavailable", "shutting_down", "Retry-After: 1\r\n",
                   "sluice is shutting down and takes no new tasks");
    return;
  }
  sl_relay_start(&gw->streams, sl_task_req(t), r, gw->gen);
  sl_task_started(t);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", sl_task_id(t));
  cJSON_AddStringToObject(o, "object", "task");
  char url[96];
  snprintf(url, sizeof(url), "/tasks/%s/stream", sl_task_id(t));
  cJSON_AddStringToObject(o, "stream_url", url);
  cJSON_AddStringToObject(o, "model", r->model);
  cJSON_AddStringToObject(o, "request_id", r->id);
  sl__json_reply(req, 201, o);
}

/* GET and DELETE on /tasks/<id>[/stream]: the task named, when this
 * process owns it; else the answer (404, 410, or the owner's) is given
 * here and NULL returned. */
static sl_task_t *sl__task_lookup(sl_gateway_t *gw, sl_http_req_t *req, const char *id) {
  int gone = 0, w;
  uint64_t n;
  sl_task_t *t = sl_tasks_find(&gw->tasks, id, &gone);
  if (t != NULL) return t;
  if (!gone && sl_task_parse_id(id, &w, &n) == 0 && w != gw->tasks.worker && w >= 1 && w <= gw->nworkers) {
    /* Another worker's task: relayed to its owner, unless it was relayed
     * here already (then the view was stale: say who owns it). */
    if (gw->view != NULL && sl_http_req_header(req, "x-sluice-relayed-from") == NULL) {
      sl_task_proxy(gw, req, w);
      return NULL;
    }
    char extra[64];
    snprintf(extra, sizeof(extra), "X-Sluice-Task-Worker: %d\r\n", w);
    sl_reply_error(req, 421, "invalid_request_error", "misdirected_task", extra,
                   "task %s belongs to worker %d, and this is worker %d", id, w, gw->worker);
    return NULL;
  }
  if (gone) {
    sl_reply_error(req, 410, "invalid_request_error", "task_gone",
                   NULL, "task %s is gone: it ended, or expired, and its grace period has passed", id);
    return NULL;
  }
  sl_counter_inc(&gw->counters, SL_C_ERR_NOT_FOUND);
  sl_reply_error(req, 404, "invalid_request_error", "task_not_found", NULL, "no task %.80s", id);
  return NULL;
}

/* Every route under /tasks. */
static void sl__tasks_route(sl_gateway_t *gw, sl_http_req_t *req) {
  const char *m = req->method_name;
  sl_request_t r;
  memset(&r, 0, sizeof(r));
  sl__request_id(gw, req, &r); /* X-Request-Id and X-Sluice-Worker on every answer */
  const char *allow = NULL;
  char id[64] = "";
  int stream = 0;
  if (strcmp(req->path, "/tasks") == 0) {
    allow = "POST";
  } else {
    const char *p = req->path + 7, *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (n == 0 || n >= sizeof(id) || (slash != NULL && strcmp(slash, "/stream") != 0)) {
      sl_counter_inc(&gw->counters, SL_C_ERR_NOT_FOUND);
      sl_reply_error(req, 404, "invalid_request_error", "unknown_url", NULL, "Unknown request URL: %s %s", m,
                     req->path);
      return;
    }
    memcpy(id, p, n);
    stream = slash != NULL;
    allow = stream ? "GET" : "GET, DELETE";
  }
  int ok = strstr(allow, m) != NULL && (strcmp(m, "GET") == 0 || strcmp(m, "POST") == 0 || strcmp(m, "DELETE") == 0);
  if (!ok) {
    char extra[64];
    snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
    sl_counter_inc(&gw->counters, SL_C_ERR_METHOD);
    sl_reply_error(req, 405, "invalid_request_error", "method_not_allowed", extra,
                   "Method %s is not allowed on %s (allowed: %s)", m, req->path, allow);
    return;
  }
  if (id[0] == '\0') {
    if (gw->streams.draining) {
      sl_reply_error(req, 503, "service_unavailable", "shutting_down", "Retry-After: 1\r\n",
                     "sluice is shutting down and takes no new tasks");
      return;
    }
    if (gw->tasks.n >= gw->tasks.max) {
      sl_reply_error(req, 503, "service_unavailable", "too_many_tasks", "Retry-After: 1\r\n",
                     "this process keeps %d tasks already (tasks.max)", gw->tasks.max);
      return;
    }
    sl__completion(gw, req, 1, &r, 1);
    return;
  }
  sl_task_t *t = sl__task_lookup(gw, req, id);
  if (t == NULL) return;
  if (stream) {
    sl_task_attach(t, req, sl_http_req_header(req, "last-event-id"), NULL);
    return;
  }
  if (strcmp(m, "DELETE") == 0) {
    if (sl_task_cancel(t) < 0) {
      sl_reply_error(req, 410, "invalid_request_error", "task_finished", NULL,
                     "task %s has finished already: there is nothing to cancel", id);
      return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object", "task");
    cJSON_AddStringToObject(o, "status", "cancelled");
    sl__json_reply(req, 200, o);
    return;
  }
  char body[1024];
  int n = snprintf(body, sizeof(body), "{\"id\":\"%s\",\"object\":\"task\",", id);
  n += (int)sl_task_describe(t, body + n, sizeof(body) - (size_t)n - 2);
  body[n++] = '}';
  sl_http_respond(req, 200, "application/json", body, (size_t)n, NULL);
}

/* ---- routing ---- */

typedef enum { SL_R_NONE, SL_R_CHAT, SL_R_COMPLETIONS, SL_R_MODELS, SL_R_HEALTH, SL_R_READY, SL_R_METRICS } sl__route_t;

static sl__route_t sl__route(const char *path, const char **allow) {
  static const struct {
    const char *path;
    sl__route_t route;
    const char *allow;
  } routes[] = {
      {"/v1/chat/completions", SL_R_CHAT, "POST"}, {"/v1/completions", SL_R_COMPLETIONS, "POST"},
      {"/v1/models", SL_R_MODELS, "GET"},          {"/health", SL_R_HEALTH, "GET"},
      {"/ready", SL_R_READY, "GET"},
      {"/metrics", SL_R_METRICS, "GET"},
  };
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    if (strcmp(path, routes[i].path) == 0) {
      *allow = routes[i].allow;
      return routes[i].route;
    }
  }
  return SL_R_NONE;
}

void sl_api_handle(sl_http_req_t *req, void *ud) {
  sl_gateway_t *gw = ud;
  const char *allow = NULL;
  sl__route_t route = sl__route(req->path, &allow);
  if (route == SL_R_NONE && strncmp(req->path, "/tasks", 6) == 0 && (req->path[6] == '\0' || req->path[6] == '/')) {
    sl__tasks_route(gw, req);
    return;
  }
  if (route == SL_R_NONE) {
    sl_counter_inc(&gw->counters, SL_C_ERR_NOT_FOUND);
    sl_reply_error(req, 404, "invalid_request_error", "unknown_url", NULL, "Unknown request URL: %s %s",
                 req->method_name, req->path);
    return;
  }
  int is_get = strcmp(req->method_name, "GET") == 0;
  if ((strcmp(allow, "GET") == 0 && !is_get) ||
      (strcmp(allow, "POST") == 0 && strcmp(req->method_name, "POST") != 0)) {
    char extra[64];
    snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
    sl_counter_inc(&gw->counters, SL_C_ERR_METHOD);
    sl_reply_error(req, 405, "invalid_request_error", "method_not_allowed", extra,
                 "Method %s is not allowed on %s (allowed: %s)", req->method_name, req->path, allow);
    return;
  }
  switch (route) {
    case SL_R_HEALTH: sl__health(gw, req); return;
    case SL_R_READY: sl__ready(gw, req); return;
    case SL_R_METRICS: sl__metrics(gw, req); return;
    case SL_R_MODELS: sl__models(gw, req); return;
    default: break;
  }
  sl_request_t r;
  memset(&r, 0, sizeof(r));
  sl__request_id(gw, req, &r);
  if (gw->streams.draining) {
    sl_reply_error(req, 503, "service_unavailable", "shutting_down", "Retry-After: 1\r\n",
                 "sluice is shutting down and takes no new requests");
    return;
  }
  sl__completion(gw, req, route == SL_R_CHAT, &r, 0);
}
