/* gateway.c: the gateway object (see include/sluice.h and gateway.h). */
#include "runtime/gateway/gateway.h"
#include "runtime/gateway/task_proxy.h"
#include "runtime/gateway/limits.h"
#include "runtime/gateway/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/base/version.h"
#include "runtime/gateway/api.h"
#include "runtime/gateway/catalog.h"
#include "runtime/gateway/engines.h"
#include "runtime/gateway/shared_state.h"
#include "runtime/gateway/timing.h"
#include "runtime/gateway/trace.h"
#include "runtime/gateway/view.h"
#include "runtime/gateway/watchdog.h"
#include "runtime/guard/guard.h"
#include "runtime/lua/policy_check.h"

int sl_init(void) { return sl_alloc_init(); }

const char *sl_version(void) { return sl_ffi_version(); }

/* ---- generations ---- */

/* Loads each tenant's pipeline into generation g, each in its own
 * sandboxed state (runtime/lua/pipeline.h).  Returns 0, or SL_EINVAL with
 * "tenants[i].pipeline: file:line: message" in err. */
static int sl__load_pipelines(sl_gateway_t *gw, sl_generation_t *g, char *err, size_t errlen) {
  const sl_tenants_t *ts = gw->tenants;
  if (ts == NULL || ts->n == 0) return 0;
  g->pipes = sl_calloc((size_t)ts->n, sizeof(*g->pipes));
  g->npipes = ts->n;
  const sl_config_t *cfg = gw->cfg;
  sl_pipeline_limits_t lim = {cfg->pipe_memory_limit, cfg->pipe_budget, cfg->pipe_load_budget, &gw->counters,
                              gw->dict};
  for (int i = 0; i < ts->n; i++) {
    const sl_tenant_t *t = &ts->t[i];
    if (t->pipeline == NULL) continue;
    char perr[768];
    if (sl_pipeline_new(t->name, t->pipeline, &lim, &g->pipes[i], perr, sizeof(perr)) < 0) {
      snprintf(err, errlen, "tenants[%d].pipeline: %s", i, perr);
      return SL_EINVAL;
    }
  }
  return 0;
}

/* Loads the limit rule into g (a pool that does not adapt its limits still
 * has its slow clients put to the rule's slow_client). */
static int sl__load_limits(const sl_config_t *cfg, sl_generation_t *g, char *err, size_t errlen) {
  char path[512], msg[900];
  if (sl_limits_resolve(cfg->limit_rule, path, sizeof(path)) < 0) {
    snprintf(err, errlen, "limits.rule: path too long");
    return SL_ETOOBIG;
  }
  if (sl_generation_load(g, "limits", path, cfg->limit_config, msg, sizeof(msg)) < 0) {
    snprintf(err, errlen, "limits.rule: %s", msg);
    return SL_EINVAL;
  }
  return 0;
}

int sl_gateway_reload(sl_gateway_t *gw, char *msg, size_t msglen) {
  char path[512];
  char err[1024];
  if (sl_policy_resolve(gw->cfg->placement_policy, path, sizeof(path)) < 0) {
    snprintf(msg, msglen, "placement.policy: path too long");
    return SL_ETOOBIG;
  }
  char npath[512];
  if (gw->cfg->narration_policy[0] && sl_narration_resolve(gw->cfg->narration_policy, npath, sizeof(npath)) < 0) {
    snprintf(msg, msglen, "narration.policy: path too long");
    return SL_ETOOBIG;
  }
  sl_lua_host_t host = {gw->cfg->lua_memory_limit, gw->cfg->lua_budget, gw->cfg->lua_load_budget, &gw->counters,
                        gw->dict};
  sl_generation_t *g;
  int rc = sl_policy_build_checked(path, gw->cfg->placement_config, gw->cfg->narration_policy[0] ? npath : NULL,
                                   gw->gen_built + 1, &host, gw->secrets, NULL, &g, err, sizeof(err));
  if (rc == 0 && sl__load_pipelines(gw, g, err, sizeof(err)) < 0) {
    sl_generation_release(g);
    rc = SL_EINVAL;
  }
  if (rc == 0 && sl__load_limits(gw->cfg, g, err, sizeof(err)) < 0) {
    sl_generation_release(g);
    rc = SL_EINVAL;
  }
  if (rc < 0) {
    if (gw->gen != NULL) {
      sl_narrate_push(gw->nar, SL_NAR_RELOAD_FAILED, NULL, NULL, NULL, err, 0, gw->gen->id, 0, 0);
      sl_counter_inc(&gw->counters, SL_C_RELOADS_FAILED);
      snprintf(msg, msglen, "reload failed; generation %llu stays current: %s", (unsigned long long)gw->gen->id, err);
    } else {
      snprintf(msg, msglen, "%s", err);
    }
    return rc;
  }
  gw->gen_built++;
  sl_generation_t *old = gw->gen;
  gw->gen = g;
  if (old != NULL) {
    sl_counter_inc(&gw->counters, SL_C_RELOADS_OK);
    /* The gateway's reference goes; streams admitted under it keep theirs. */
    int streams = old->refs - 1;
    snprintf(msg, msglen,
             "generation %llu is current (policy %s %s from %s); generation %llu ends with its %d stream(s)",
             (unsigned long long)g->id, g->phase[SL_PHASE_PLACEMENT].name, g->phase[SL_PHASE_PLACEMENT].version, g->phase[SL_PHASE_PLACEMENT].file,
             (unsigned long long)old->id, streams);
    sl_narrate_push(gw->nar, SL_NAR_RELOAD_OK, NULL, NULL, NULL, msg, 0, g->id, 0, 0);
    sl_generation_release(old);
  } else {
    snprintf(msg, msglen, "generation %llu (policy %s %s from %s)", (unsigned long long)g->id, g->phase[SL_PHASE_PLACEMENT].name,
             g->phase[SL_PHASE_PLACEMENT].version, g->phase[SL_PHASE_PLACEMENT].file);
  }
  return 0;
}

/* An endpoint became ready: a managed engine that was starting runs now,
 * and requests waiting for one may go. */
static void sl__on_endpoint_ready(void *ud, sl_endpoint_t *ep) {
  sl_gateway_t *gw = ud;
  sl_engines_on_ready(gw->engines, ep);
  sl_relay_kick(&gw->streams);
}

static void sl__reload_now(sl_gateway_t *gw, const char *why) {
  char msg[1536];
  int rc = sl_gateway_reload(gw, msg, sizeof(msg));
  fprintf(gw->log, "sluice: %s: %s%s\n", why, rc == 0 ? "reloaded: " : "", msg);
  fflush(gw->log);
}

/* ---- loop work: narration, dictionary sweep, policy file watch ---- */

static int sl__narrate_run(void *ud, char *err, size_t errlen) {
  sl_gateway_t *gw = ud;
  return sl_generation_narrate(gw->gen, gw->nar, err, errlen);
}

static void sl__narrate_now(sl_gateway_t *gw) {
  if (sl_narrate_pending(gw->nar) == 0) return;
  /* A suspended narration policy (generation.h) gets no call: its batches
   * go straight to the plain rendering, without an error line each. */
  int has_policy = sl_generation_phase_ready(gw->gen, SL_PHASE_NARRATION);
  sl_narrate_flush(gw->nar, has_policy ? sl__narrate_run : NULL, gw);
}

static void sl__on_narrate_check(uv_check_t *c) { sl__narrate_now(c->data); }

/* Expired dictionary entries are invisible at once; this reclaims their
 * memory a bounded batch at a time. */
static void sl__on_sweep(uv_timer_t *t) {
  sl_gateway_t *gw = t->data;
  sl_ttldict_sweep(gw->dict, sl_ttldict_now(gw->dict), 1000);
}

static void sl__on_reload_timer(uv_timer_t *t) {
  sl_gateway_t *gw = t->data;
  if (!gw->closing) sl__reload_now(gw, "policy file changed");
}

static void sl__on_watch(uv_fs_event_t *h, const char *filename, int events, int status) {
  sl_gateway_t *gw = h->data;
  (void)events;
  if (status < 0 || filename == NULL || strcmp(filename, gw->watch_name) != 0) return;
  /* Editors write in several steps (truncate, write, rename): wait until
   * the file has been quiet for a moment, then reload once. */
  uv_timer_start(&gw->reload_timer, sl__on_reload_timer, 100, 0);
}

static void sl__start_watch(sl_gateway_t *gw) {
  char path[512];
  if (sl_policy_resolve(gw->cfg->placement_policy, path, sizeof(path)) < 0) return;
  char dir[512];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL) {
    snprintf(gw->watch_name, sizeof(gw->watch_name), "%s", dir);
    snprintf(dir, sizeof(dir), ".");
  } else {
    snprintf(gw->watch_name, sizeof(gw->watch_name), "%s", slash + 1);
    *slash = '\0';
  }
  uv_fs_event_init(gw->loop, &gw->watch);
  gw->watch.data = gw;
  if (uv_fs_event_start(&gw->watch, sl__on_watch, dir, 0) == 0) {
    gw->watching = 1;
  } else {
    fprintf(gw->log, "sluice: cannot watch %s for policy changes; SIGHUP and the admin socket still reload\n", dir);
    uv_close((uv_handle_t *)&gw->watch, NULL);
  }
}

/* ---- closing ---- */

static void sl__free_watchdog(void *w) { sl_watchdog_free(w); }

/* The tenants, and each pool's guards with each tenant's added, compiled
 * once: a bad one refuses the start, naming it. */
static int sl__open_tenants(sl_gateway_t *gw, char *err, size_t errlen) {
  const sl_config_t *cfg = gw->cfg;
  if (sl_tenants_build(cfg->tenants_json, &gw->tenants, err, errlen) < 0) return SL_EINVAL;
  if (gw->tenants->n == 0) return 0;
  gw->streams.tenants = gw->tenants;
  gw->streams.tenant_guards = sl_calloc((size_t)gw->tenants->n * SL_MAX_POOLS, sizeof(*gw->streams.tenant_guards));
  for (int i = 0; i < gw->tenants->n; i++) {
    const char *tj = gw->tenants->t[i].guards_json;
    if (tj == NULL) continue;
    char path[64];
    snprintf(path, sizeof(path), "tenants[%d].guards", i);
    sl_guardset_t *alone = NULL; /* checked on its own first, so errors name its own keys */
    if (sl_guardset_build_json(tj, path, gw->secrets, &alone, err, errlen) < 0) return SL_EINVAL;
    sl_guardset_free(alone);
    cJSON *add = cJSON_Parse(tj);
    for (int j = 0; j < cfg->npools; j++) {
      cJSON *base = cfg->pools[j].guards_json ? cJSON_Parse(cfg->pools[j].guards_json) : NULL;
      cJSON *m = sl_guards_merge(base, add);
      snprintf(path, sizeof(path), "tenants[%d].guards with pools[%d].guards", i, j);
      int rc = sl_guardset_build(m, path, gw->secrets, &gw->streams.tenant_guards[i * SL_MAX_POOLS + j], err,
                                 errlen);
      cJSON_Delete(m);
      cJSON_Delete(base);
      if (rc < 0) {
        cJSON_Delete(add);
        return SL_EINVAL;
      }
    }
    cJSON_Delete(add);
  }
  return 0;
}

static void sl__free(sl_gateway_t *gw) {
  void (*cb)(void *) = gw->on_closed;
  void *ud = gw->closed_ud;
  if (gw->view != NULL) {
    /* The last publication, with every stream ended: what the supervisor
     * retires once this process is gone. */
    if (gw->opened) sl_view_publish_gateway(gw, NULL, NULL);
    sl_view_detach(gw->view);
    gw->view = NULL;
  }
  sl_watchdog_free(gw->watchdog);
  sl_relay_admission_free(&gw->streams);
  sl_registry_free(&gw->reg);
  sl_chunk_pool_destroy(&gw->chunks);
  sl_ttldict_free(gw->dict);
  sl_narrator_free(gw->nar);
  sl_free(gw->sims);
  for (int i = 0; i < SL_MAX_POOLS; i++) sl_guardset_free(gw->streams.guards[i]);
  sl_guardset_free(gw->streams.default_guards);
  if (gw->streams.tenant_guards != NULL && gw->tenants != NULL)
    for (int i = 0; i < gw->tenants->n * SL_MAX_POOLS; i++) sl_guardset_free(gw->streams.tenant_guards[i]);
  sl_free(gw->streams.tenant_guards);
  if (gw->tenants != NULL) sl_tenants_free(gw->tenants);
  sl_free(gw->streams.acts);
  sl_free(gw->secrets);
  sl_config_free(gw->cfg);
  sl_free(gw->cfg);
  sl_free(gw);
  if (cb) cb(ud);
}

static void sl__closed_watchdog(void *ud) { sl__free(ud); }

static void sl__closed_one(void *ud) {
  sl_gateway_t *gw = ud;
  if (--gw->pending > 0) return;
  if (gw->watchdog) {
    /* Everything else is closed: the watchdog, which watched the whole
     * shutdown, goes last. */
    sl_watchdog_close(gw->watchdog, sl__closed_watchdog, gw);
    return;
  }
  sl__free(gw);
}

static void sl__handle_closed(uv_handle_t *h) { sl__closed_one(h->data); }

static void sl__close_handle(sl_gateway_t *gw, uv_handle_t *h) {
  h->data = gw;
  gw->pending++;
  uv_close(h, sl__handle_closed);
}

void sl_gateway_close(sl_gateway_t *gw, void (*on_closed)(void *ud), void *ud) {
  if (gw->closing) return;
  gw->closing = 1;
  gw->on_closed = on_closed;
  gw->closed_ud = ud;
  sl_relay_cancel_all(&gw->streams, "sluice is shutting down");
  /* One count for this function, so nothing completes while it runs. */
  gw->pending = 1;
  /* Tasks: their streams were cut above; their rings go back to the pool
   * and their clients' responses end. */
  gw->pending++;
  sl_tasks_close(&gw->tasks, sl__closed_one, gw);
  if (gw->streams.writes > 0) { /* transcripts being written use the counters and the log */
    gw->pending++;
    gw->streams.on_writes_done = sl__closed_one;
    gw->streams.writes_ud = gw;
  }
  if (gw->http) {
    gw->pending++;
    sl_http_server_close(gw->http, sl__closed_one, gw);
    gw->http = NULL;
  }
  if (gw->task_http) {
    gw->pending++;
    sl_http_server_close(gw->task_http, sl__closed_one, gw);
    gw->task_http = NULL;
  }
  gw->pending++;
  sl_upstream_close(&gw->up, sl__closed_one, gw);
  for (int i = 0; gw->sims && i < gw->reg.neps; i++) {
    if (gw->sims[i]) {
      gw->pending++;
      sl_sim_engine_close(gw->sims[i], sl__closed_one, gw);
      gw->sims[i] = NULL;
    }
  }
  if (gw->engines) {
    /* Every managed engine is asked to exit, killed after its grace, and
     * waited for: the close ends with no engine left behind. */
    gw->streams.on_need = NULL;
    gw->pending++;
    sl_engines_close(gw->engines, sl__closed_one, gw);
    gw->engines = NULL;
  }
  if (gw->tracer) {
    /* What is queued is sent first (under one tracing.timeout_ms), then the
     * tracer closes. */
    gw->streams.on_trace = NULL;
    gw->pending++;
    sl_tracer_close(gw->tracer, sl__closed_one, gw);
    gw->tracer = NULL;
  }
  if (gw->shared) {
    gw->pending++;
    sl_shared_close(gw->shared, sl__closed_one, gw);
    gw->shared = NULL;
  }
  if (gw->timing) {
    /* Waits for a classification still running on the thread pool: its
     * completion must come before the registry it writes to is freed. */
    gw->pending++;
    sl_timing_close(gw->timing, sl__closed_one, gw);
    gw->timing = NULL;
  }
  sl__close_handle(gw, (uv_handle_t *)&gw->sweep_timer);
  sl__close_handle(gw, (uv_handle_t *)&gw->streams.pipe_timer);
  sl__close_handle(gw, (uv_handle_t *)&gw->streams.kick_timer);
  sl__close_handle(gw, (uv_handle_t *)&gw->limits_timer);
  sl__close_handle(gw, (uv_handle_t *)&gw->lag_timer);
  sl__close_handle(gw, (uv_handle_t *)&gw->narrate_check);
  sl__close_handle(gw, (uv_handle_t *)&gw->drain_timer);
  sl__close_handle(gw, (uv_handle_t *)&gw->reload_timer);
  sl__close_handle(gw, (uv_handle_t *)&gw->view_timer);
  if (gw->watching) {
    gw->watching = 0;
    sl__close_handle(gw, (uv_handle_t *)&gw->watch);
  }
  /* Tell what the cut streams did, then drop the gateway's reference;
   * streams were cut above and hold none now. */
  sl__narrate_now(gw);
  sl_generation_release(gw->gen);
  gw->gen = NULL;
  sl__closed_one(gw);
}

/* ---- draining ---- */

static void sl__drained(sl_gateway_t *gw) {
  uv_timer_stop(&gw->drain_timer);
  sl_view_publish_gateway(gw, NULL, NULL); /* the instance sees the drained state at once */
  gw->streams.on_idle = NULL;
  void (*cb)(sl_gateway_t *, void *) = gw->on_drained;
  gw->on_drained = NULL;
  if (cb) cb(gw, gw->drained_ud);
}

static void sl__on_idle(void *ud) { sl__drained(ud); }

static void sl__on_drain_deadline(uv_timer_t *t) {
  sl_gateway_t *gw = t->data;
  fprintf(gw->log, "sluice: drain deadline reached with %d stream(s) in flight; cutting them\n", gw->streams.n);
  fflush(gw->log);
  /* Cutting ends every stream; the last one's end calls on_idle. */
  sl_relay_cancel_all(&gw->streams, "sluice is shutting down");
  if (gw->streams.n == 0 && gw->on_drained) sl__drained(gw);
}

void sl_gateway_drain(sl_gateway_t *gw, void (*on_drained)(sl_gateway_t *gw, void *ud), void *ud) {
  if (gw->draining || gw->closing) return;
  gw->draining = 1;
  gw->streams.draining = 1;
  gw->on_drained = on_drained;
  gw->drained_ud = ud;
  if (gw->http) sl_http_server_stop_accepting(gw->http);
  if (gw->streams.n == 0) {
    sl__drained(gw);
    return;
  }
  gw->streams.on_idle = sl__on_idle;
  gw->streams.idle_ud = gw;
  uv_timer_start(&gw->drain_timer, sl__on_drain_deadline, gw->cfg->drain_timeout_ms, 0);
}

int sl_gateway_port(const sl_gateway_t *gw) { return gw->http ? sl_http_server_port(gw->http) : 0; }

int sl_gateway_streams(const sl_gateway_t *gw) { return gw->streams.n; }

size_t sl_gateway_counters_json(const sl_gateway_t *gw, char *buf, size_t cap) {
  return sl_counters_json(&gw->counters, buf, cap);
}

/* ---- opening ---- */

static void sl__on_view_timer(uv_timer_t *t) { sl_view_publish_gateway(t->data, NULL, NULL); }

/* The configuration, from the options: text, a file, or the default. */
static int sl__load_config(sl_config_t *cfg, const sl_gateway_options_t *opt, char *err, size_t errlen) {
  int rc;
  if (opt->config_json) {
    size_t n = opt->config_len ? opt->config_len : strlen(opt->config_json);
    rc = sl_config_parse(cfg, opt->config_json, n, err, errlen);
  } else if (opt->config_path) {
    rc = sl_config_load(cfg, opt->config_path, err, errlen);
  } else {
    const char *d = sl_config_default_json();
    rc = sl_config_parse(cfg, d, strlen(d), err, errlen);
  }
  if (rc < 0) return SL_EINVAL;
  if (opt->listen && sl_parse_hostport(opt->listen, cfg->listen_host, sizeof(cfg->listen_host), &cfg->listen_port) < 0) {
    snprintf(err, errlen, "listen: \"%s\" is not HOST:PORT", opt->listen);
    sl_config_free(cfg);
    return SL_EINVAL;
  }
  if (opt->log_json) cfg->log_json = 1;
  return 0;
}

int sl_gateway_open(sl_gateway_t **out, uv_loop_t *loop, const sl_gateway_options_t *opt, char *err,
                    size_t errlen) {
  static const sl_gateway_options_t none;
  if (opt == NULL) opt = &none;
  sl_config_t *cfg = sl_calloc(1, sizeof(*cfg));
  if (sl__load_config(cfg, opt, err, errlen) < 0) {
    sl_free(cfg);
    return SL_EINVAL;
  }
  sl_gateway_t *gw = sl_calloc(1, sizeof(*gw));
  gw->loop = loop;
  gw->cfg = cfg;
  gw->log = opt->log ? opt->log : stderr;
  gw->started_ns = uv_hrtime();
  if (opt->worker > 0) {
    gw->worker = opt->worker;
    gw->nworkers = opt->nworkers > 1 ? opt->nworkers : 1;
    if (opt->view_fd >= 0) {
      char verr[256];
      int vrc = sl_view_attach(opt->view_fd, opt->worker, &gw->view, verr, sizeof(verr));
      if (vrc < 0) {
        snprintf(err, errlen, "worker %d: the instance view: %s", opt->worker, verr);
        gw->view = NULL;
        sl_config_free(cfg);
        sl_free(cfg);
        sl_free(gw);
        return vrc;
      }
    }
  }
  /* Every log line is redacted: pool api_keys and log.secrets. */
  gw->secrets = sl_calloc((size_t)cfg->npools + (size_t)cfg->nlog_secrets + 1, sizeof(*gw->secrets));
  int ns = 0;
  for (int i = 0; i < cfg->npools; i++)
    if (cfg->pools[i].api_key) gw->secrets[ns++] = cfg->pools[i].api_key;
  for (int i = 0; i < cfg->nlog_secrets; i++) gw->secrets[ns++] = cfg->log_secrets[i];
  gw->nar = sl_narrator_new(gw->log, cfg->log_json, gw->secrets, &gw->counters);
  sl_chunk_pool_init(&gw->chunks, cfg->chunk_size, cfg->chunk_keep);
  gw->chunks.counters = &gw->counters;
  int rc = sl_registry_init(&gw->reg, loop, cfg, err, errlen);
  if (rc < 0) {
    rc = SL_EINVAL;
    goto fail_early;
  }
  gw->reg.counters = &gw->counters;
  gw->reg.nar = gw->nar;
  /* A worker enforces its share of each endpoint's slots (view.h). */
  if (gw->worker > 0) sl_registry_share(&gw->reg, gw->nworkers);
  for (int i = 0; i < gw->reg.neps; i++) {
    const sl_endpoint_t *ep = &gw->reg.eps[i];
    if (ep->tls != NULL && !ep->tls_verify)
      fprintf(gw->log,
              "sluice: WARNING: pool %s: endpoint https://%s: TLS certificate verification is OFF (tls.verify: "
              "false); anyone on the path can read and change its traffic\n",
              ep->pool->cfg->name, ep->name);
  }
  /* Each pool's guards, compiled once: a bad one refuses the start.  A
   * pool without enforces the client's stop strings all the same. */
  {
    cJSON *none = cJSON_CreateObject();
    sl_guardset_build(none, "guards", NULL, &gw->streams.default_guards, err, errlen);
    cJSON_Delete(none);
  }
  for (int i = 0; i < cfg->npools; i++) {
    char path[48];
    snprintf(path, sizeof(path), "pools[%d].guards", i);
    if (sl_guardset_build_json(cfg->pools[i].guards_json, path, gw->secrets, &gw->streams.guards[i], err,
                               errlen) < 0) {
      rc = SL_EINVAL;
      goto fail_early;
    }
  }
  gw->sims = sl_calloc((size_t)gw->reg.neps + 1, sizeof(*gw->sims));
  if (sl_ttldict_new(NULL, &gw->dict) != 0) {
    snprintf(err, errlen, "out of memory for the TTL dictionary");
    rc = SL_ENOMEM;
    goto fail_early;
  }
  gw->streams.dict = gw->dict;
  gw->streams.secrets = gw->secrets;
  gw->streams.acts = sl_malloc(sizeof(*gw->streams.acts));
  /* The model catalog: a file that does not match its digest refuses the
   * start, named. */
  if (sl_catalog_verify(cfg, err, errlen) < 0) {
    rc = SL_EINVAL;
    goto fail_early;
  }
  if (cfg->ncatalog > 0)
    fprintf(gw->log, "sluice: catalog: %d model file(s) in %s match their SHA-256\n", cfg->ncatalog,
            cfg->catalog_dir);
  if (sl__open_tenants(gw, err, errlen) < 0) {
    rc = SL_EINVAL;
    goto fail_early;
  }
  /* The watchdog starts before the first generation loads: a policy stuck
   * in C while loading is caught too. */
  if (cfg->watchdog_warn_ms) {
    int wrc = sl_watchdog_start(&gw->watchdog, loop, cfg->watchdog_warn_ms, cfg->watchdog_abort_ms, gw->log,
                                &gw->counters);
    if (wrc < 0) {
      fprintf(gw->log, "sluice: the loop watchdog did not start: %s (continuing without it)\n", uv_strerror(wrc));
      gw->watchdog = NULL;
    }
  }
  /* The first generation: a policy that does not load refuses the start. */
  {
    char msg[1536];
    if (sl_gateway_reload(gw, msg, sizeof(msg)) < 0) {
      snprintf(err, errlen, "placement policy: %s", msg);
      rc = SL_EINVAL;
      goto fail_early;
    }
    fprintf(gw->log, "sluice: %s\n", msg);
  }
  /* From here on handles exist: failures close through sl_gateway_close. */
  sl_upstream_init(&gw->up, loop, &gw->reg, &gw->chunks);
  gw->streams.loop = loop;
  gw->streams.cfg = cfg;
  gw->streams.reg = &gw->reg;
  gw->streams.up = &gw->up;
  gw->streams.chunks = &gw->chunks;
  gw->streams.log = gw->log;
  gw->streams.counters = &gw->counters;
  gw->streams.nar = gw->nar;
  gw->streams.rng = gw->started_ns | 1;
  {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    gw->streams.unix_offset_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec - (int64_t)uv_hrtime();
  }
  sl_tasks_init(&gw->tasks, loop, &gw->chunks, &gw->counters, cfg, gw->worker);
  uv_timer_init(loop, &gw->sweep_timer);
  uv_timer_init(loop, &gw->streams.pipe_timer);
  sl_relay_admission_init(&gw->streams);
  uv_timer_init(loop, &gw->limits_timer);
  gw->limits_timer.data = gw;
  uv_timer_init(loop, &gw->lag_timer);
  gw->lag_timer.data = gw;
  gw->reg.on_ready = sl__on_endpoint_ready;
  gw->reg.ready_ud = gw;
  uv_timer_init(loop, &gw->drain_timer);
  uv_timer_init(loop, &gw->reload_timer);
  uv_timer_init(loop, &gw->view_timer);
  gw->view_timer.data = gw;
  uv_check_init(loop, &gw->narrate_check);
  gw->sweep_timer.data = gw->drain_timer.data = gw->reload_timer.data = gw;
  gw->narrate_check.data = gw;
  uv_check_start(&gw->narrate_check, sl__on_narrate_check);
  rc = sl_engines_start_sims(gw, err, errlen);
  if (rc == 0) {
    rc = sl_engines_open(&gw->engines, gw, opt->engine_exec, err, errlen);
    /* A request waiting for a model whose engine a swap pool has not
     * started reaches the engines through this (stream/ may not call up). */
    gw->streams.on_need = sl_engines_need;
    gw->streams.need_ud = gw->engines;
  }
  if (rc == 0 && cfg->trace_endpoint[0]) {
    rc = sl_tracer_open(&gw->tracer, loop, cfg, &gw->counters, gw->nar, gw->log, err, errlen);
    if (rc == 0) {
      gw->streams.on_trace = sl_tracer_record;
      gw->streams.trace_ud = gw->tracer;
      fprintf(gw->log, "sluice: tracing: spans go to %s every %llu ms\n", cfg->trace_endpoint,
              (unsigned long long)cfg->trace_batch_ms);
    } else {
      gw->tracer = NULL;
    }
  }
  if (rc == 0) rc = sl_shared_open(gw, err, errlen);
  if (rc == 0) {
    /* A worker shares the port the supervisor reserved with its siblings. */
    rc = sl_http_server_init_flags(&gw->http, loop, cfg->listen_host, cfg->listen_port, &cfg->http,
                                   gw->worker > 0 ? SL_HTTP_REUSEPORT : 0, sl_api_handle, gw);
    if (rc < 0) {
      gw->http = NULL;
      snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->listen_host, cfg->listen_port, uv_strerror(rc));
    }
  }
  if (rc < 0) {
    sl_gateway_close(gw, NULL, NULL);
    return rc;
  }
  sl_http_server_set_counters(gw->http, &gw->counters);
  if (gw->worker > 0 && gw->view != NULL) {
    /* Task requests a sibling relays come here (task_proxy.h). */
    int trc = sl_task_listener_open(gw, sl_api_handle);
    if (trc < 0)
      fprintf(gw->log, "sluice: the task listener did not open: %s (tasks answer 421 through other workers)\n",
              uv_strerror(trc));
  }
  sl_upstream_start_health(&gw->up);
  uv_timer_start(&gw->sweep_timer, sl__on_sweep, 1000, 1000);
  sl_limits_start(gw);
  sl_metrics_start_lag(gw);
  if (cfg->dynamics_enabled) {
    int trc = sl_timing_start(&gw->timing, loop, &gw->reg, cfg, gw->log);
    if (trc < 0) {
      fprintf(gw->log, "sluice: the timing dynamics job did not start: %s (continuing without it)\n", uv_strerror(trc));
      gw->timing = NULL;
    }
  }
  if (cfg->placement_watch) sl__start_watch(gw);
  gw->opened = 1;
  if (gw->view != NULL) {
    /* Published at once, then every period; the timer keeps no loop alive. */
    sl_view_publish_gateway(gw, NULL, NULL);
    uv_timer_start(&gw->view_timer, sl__on_view_timer, SL_VIEW_PERIOD_MS, SL_VIEW_PERIOD_MS);
    uv_unref((uv_handle_t *)&gw->view_timer);
  }
  *out = gw;
  return 0;

fail_early: /* nothing on the loop yet but the watchdog's timer, which frees itself once closed */
  if (gw->watchdog) {
    sl_watchdog_close(gw->watchdog, sl__free_watchdog, gw->watchdog);
    gw->watchdog = NULL;
  }
  sl__free(gw);
  return rc;
}
