/* gateway.h: the gateway object, as the units above it see it.
 *
 * A gateway owns everything one loop serves with: the configuration, the
 * endpoint registry and upstream context, the chunk pool, the HTTP server,
 * the streams in flight (stream/relay.h), the current generation of
 * policies, and what used to be process-wide: its counters, its narrator
 * (ring, redaction secrets), its TTL dictionary, the simulated engines its
 * configuration asks for, the loop watchdog, and the job that classifies
 * each endpoint's timing dynamics on the thread pool (timing.h).  Its life
 * cycle is the public API of include/sluice.h (open, reload, drain, close);
 * this header adds the struct, for the operator tools (runtime/ops) that
 * read it, and nothing else.  api.c is the gateway's HTTP handler.
 */
#ifndef SL_GATEWAY_H
#define SL_GATEWAY_H

#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "runtime/base/chunk_pool.h"
#include "runtime/base/config.h"
#include "runtime/base/counters.h"
#include "runtime/base/narrate.h"
#include "runtime/http/http_server.h"
#include "runtime/lua/generation.h"
#include "runtime/lua/ttldict.h"
#include "runtime/sim/sim_engine.h"
#include "sluice.h"
#include "runtime/stream/relay.h"
#include "runtime/stream/tasks.h"
#include "runtime/upstream/registry.h"
#include "runtime/upstream/upstream.h"

struct sl_watchdog_s;
struct sl_timing_s;
struct sl_tracer_s;
struct sl_view_s;

struct sl_gateway_s {
  uv_loop_t *loop;
  sl_config_t *cfg;          /* owned */
  sl_registry_t reg;
  sl_upstream_ctx_t up;
  sl_chunk_pool_t chunks;
  sl_http_server_t *http;
  sl_http_server_t *task_http; /* a worker's private loopback listener for relayed task requests (task_proxy.h) */
  sl_streams_t streams;      /* streams in flight and what they share */
  sl_tasks_t tasks;          /* the native task API's tasks (stream/tasks.h) */
  sl_counters_t counters;
  sl_narrator_t *nar;
  sl_ttldict_t *dict;        /* what the policies' sluice.dict reaches, and the tenants' windows */
  struct sl_tenants_s *tenants; /* the configured tenants (n = 0: none, the API is open) */
  sl_sim_engine_t **sims;    /* per registry endpoint: its in-process engine, or NULL */
  const char **secrets;      /* pool api_keys and log.secrets, NULL-ended (borrowed from cfg) */
  struct sl_watchdog_s *watchdog; /* NULL when watchdog.warn_ms is 0 */
  struct sl_timing_s *timing;  /* endpoints' timing dynamics (timing.h); NULL when dynamics.enabled is false */
  uint64_t next_id;          /* request ids */
  uint64_t started_ns;       /* uv_hrtime at open */
  int worker;                /* 1..nworkers under a supervisor (its listener shares the port), 0 = standalone */
  FILE *log;                 /* log lines (stderr unless the embedder says) */
  sl_generation_t *gen;      /* current generation (the gateway holds one reference) */
  uint64_t gen_built;        /* generations built so far (ids) */
  /* Loop handles of the gateway's own. */
  uv_timer_t sweep_timer;    /* reclaims expired dictionary entries */
  uv_check_t narrate_check;  /* narrates queued events once per loop iteration */
  uv_timer_t drain_timer;    /* drain deadline */
  uv_timer_t reload_timer;   /* debounces policy file events */
  uv_timer_t limits_timer;   /* the limits job (limits.h) */
  uv_timer_t lag_timer;      /* samples the loop's lag (metrics.h) */
  uint64_t lag_due;          /* uv_hrtime it should fire next */
  double lag_last_s;         /* how late it fired last */
  sl_hist_t h_lag;           /* /metrics: sluice_event_loop_lag_seconds */
  uint64_t limits_last;      /* uv_hrtime of its last round */
  sl_qsketch_t limits_itl;   /* its scratch sketch */
  uv_fs_event_t watch;       /* the placement policy's directory */
  int watching;
  char watch_name[512];      /* the policy file's name in that directory */
  /* Draining and closing. */
  int draining;
  void (*on_drained)(sl_gateway_t *gw, void *ud);
  void *drained_ud;
  int closing;
  int pending;               /* closes not yet done */
  void (*on_closed)(void *ud);
  void *closed_ud;
  struct sl_tracer_s *tracer; /* the OTLP trace exporter (trace.h); NULL when tracing.endpoint is "" */
  /* A worker of a supervisor (view.h). */
  int nworkers;              /* workers in the instance (0 or 1: standalone) */
  struct sl_view_s *view;    /* the instance view, mapped; NULL when standalone */
  uv_timer_t view_timer;     /* publishes into the view every SL_VIEW_PERIOD_MS (unref'd) */
  int opened;                /* sl_gateway_open succeeded: the gateway can render its metrics */
  struct sl_shared_s *shared; /* state shared through Redis (shared_state.h); NULL when redis.url is "" */
  struct sl_engines_s *engines; /* the managed engines (engines.h); NULL when the configuration has none */
};

/* The simulated engine serving endpoint ep, or NULL. */
static inline sl_sim_engine_t *sl_gateway_sim(const sl_gateway_t *gw, const sl_endpoint_t *ep) {
  return gw->sims && ep->id >= 0 && ep->id < gw->reg.neps ? gw->sims[ep->id] : NULL;
}

#endif
