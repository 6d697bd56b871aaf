/* registry.h: the registry of engine pools and endpoints.
 *
 * Built once from the configuration: each pool has endpoints with their
 * address, slots, streams in flight, readiness (set by health checks),
 * cooldown after failures, and an idle keep-alive connection list (owned by
 * upstream.c).  snapshot_version changes whenever topology, readiness,
 * draining or cooldown changes, so later caches of the eligible set can key
 * on it.
 *
 * Each endpoint also keeps a ring of the last SL_DYN_RING gaps between
 * consecutive tokens of one stream (the relay records them, a store per
 * token) and the latest verdict on their dynamics, which the gateway's
 * timing job (runtime/gateway/timing.h) computes on the thread pool and
 * stores here on the loop.
 *
 * Placement over it is runtime/stream/placement.h.  Times are uv_hrtime
 * nanoseconds.
 */
#ifndef SL_REGISTRY_H
#define SL_REGISTRY_H

#include <stdint.h>
#include <uv.h>

#include "runtime/base/config.h"
#include "runtime/base/counters.h"
#include "runtime/base/narrate.h"
#include "runtime/base/histogram.h"
#include "runtime/base/qsketch.h"
#include "runtime/upstream/adapter.h"

/* How a stream ended, for /metrics (runtime/stream/relay.c classifies its
 * end reason). */
typedef enum {
  SL_OUT_OK = 0,          /* complete */
  SL_OUT_CANCELLED,       /* the client went away */
  SL_OUT_GUARD,           /* a guard ended it */
  SL_OUT_TIMEOUT,         /* first-token, idle or total timeout */
  SL_OUT_UPSTREAM_ERROR,  /* the engines failed (or refused the request) */
  SL_OUT_RATE_LIMITED,    /* every engine said 429 */
  SL_OUT_REJECTED,        /* refused before an engine saw it: queue full or timed out, no ready endpoint,
                             context too long, shutting down */
  SL_OUT_SLOW_CLIENT,     /* cancelled for holding its engine back */
  SL_OUT_ERROR,           /* anything else */
  SL_OUT__COUNT
} sl_outcome_t;

extern const char *const sl_outcome_names[SL_OUT__COUNT];

typedef struct sl_pool_s sl_pool_t;
typedef struct sl_endpoint_s sl_endpoint_t;
typedef struct sl_registry_s sl_registry_t;
typedef struct sl_upconn_s sl_upconn_t;
typedef struct sl_sim_engine_s sl_sim_engine_t;

/* The last inter-token gaps of an endpoint, oldest overwritten first. */
typedef struct {
  double ms[SL_DYN_RING];        /* gaps in milliseconds; the next goes to ms[total % SL_DYN_RING] */
  uint64_t total;                /* gaps recorded since start (the ring holds the last of them) */
} sl_gap_ring_t;

/* The latest verdict on an endpoint's timing dynamics (cls < 0: none yet).
 * Written on the loop by the timing job; everyone else only reads it. */
typedef struct {
  int cls;                       /* an sl_dyn_class_t of analyzers/dynamics.h, or -1 before the first verdict */
  const char *name;              /* its name ("periodic", "noise", ...; static), or NULL */
  double lambda;                 /* largest Lyapunov exponent, per token (0 for fixed_point, trend) */
  double fit_r2;                 /* R^2 of the exponent's line fit */
  double growth;                 /* e-folds the neighbour distance grew to its plateau */
  double fnn;                    /* false-neighbour share at the embedding used (-1 when none was searched) */
  double recurrence;             /* autocorrelation peak past its first zero (periodic check; else 0) */
  double trend_r2;               /* R^2 of a straight line through the gaps */
  double mean_ms;                /* mean gap of the series classified (before its outliers were clipped) */
  uint32_t samples;              /* gaps the verdict was computed over */
  uint64_t at;                   /* uv_hrtime when it was stored */
  uint64_t runs;                 /* verdicts stored so far */
} sl_dyn_verdict_t;

struct sl_endpoint_s {
  int id;                        /* index in the registry's flat endpoint list */
  sl_pool_t *pool;               /* owning pool */
  sl_registry_t *reg;            /* owning registry */
  char name[300];                /* "host:port" for logs */
  char host[256];                /* address to connect to */
  int port;
  char base[256];                /* path prefix ("" or "/openai") */
  struct sockaddr_storage addr;  /* resolved at start */
  int slots;                     /* streams it takes at once (this worker's share: sl_registry_share) */
  int slots_configured;          /* slots as configured, for the whole instance */
  int inflight;                  /* streams placed on it now */
  int ready;                     /* passed its last health check */
  int draining;                  /* takes no new streams */
  uint64_t cooldown_until;       /* not eligible before this time (0 = none) */
  int failures;                  /* consecutive failed requests (probes do not count) */
  uint64_t requests, errors;     /* totals */
  double ewma_ttft_ms;           /* smoothed time to first token (0 = no sample) */
  double ewma_itl_ms;            /* smoothed inter-token time (0 = no sample) */
  double tokens_per_s;           /* smoothed decode speed (0 = no sample) */
  double error_rate;             /* smoothed share of failed attempts */
  sl_gap_ring_t gaps;            /* inter-token gaps of its streams (sl_endpoint_gap) */
  sl_dyn_verdict_t dyn;          /* the latest verdict on them */
  sl_sim_engine_t *sim;          /* in-process simulated engine, or NULL */
  struct ssl_ctx_st *tls;        /* https://: the registry's SSL_CTX for its CA settings, else NULL */
  char tls_name[256];            /* SNI and the name its certificate must carry */
  int tls_verify;                /* the certificate is checked */
  sl_upconn_t *idle;             /* idle keep-alive connections (upstream.c) */
  int nidle;
  /* Admission (docs/admission.md): the relay enforces the limit, the
   * gateway's limits job (runtime/gateway/limits.c) moves it with the limit
   * rule over what happened in its interval (the w_ figures, reset by it). */
  int limit;                     /* streams it may take at once now */
  int limit_min, limit_max;      /* the bounds the rule's answers are kept in */
  int adaptive;                  /* the rule moves the limit (else it stays) */
  int w_max_inflight;            /* most streams on it at once in the interval */
  uint64_t w_started, w_completed, w_429, w_503, w_timeouts, w_errors;
  int w_cut;                     /* the limit was cut for a drop in the interval already */
  uint64_t gaps_seen;            /* gaps.total at the job's last look */
  sl_qsketch_t ttft_w;           /* TTFT from dispatch, normalized by prompt length, in the interval */
  double ttft_p90_ms, itl_p90_ms;/* the last interval's figures (0 = none), for /health */
  sl_hist_t h_ttft;              /* /metrics: time to first token from the request's arrival, seconds */
  sl_hist_t h_tpot;              /* /metrics: time per output token after the first, per stream, seconds */
  uv_timer_t health_timer;       /* next health check */
  sl_upconn_t *health_conn;      /* health check in flight, or NULL */
  char health_why[256];          /* why the last failed check failed ("" after a pass), as logged */
  int health_timer_open;
  /* A managed engine (runtime/gateway/engines.h sets these; the probes
   * and placement read them). */
  const sl_endpoint_config_t *ecfg; /* its configuration (models, managed) */
  int managed;                   /* sluice runs its engine */
  int starting;                  /* its process runs but has not passed a probe yet: probed every
                                    SL_PROBE_STARTING_MS, a failed probe is "starting", not news */
  int down;                      /* no process runs (stopped, backoff): not probed, not ready */
  uint64_t idle_since;           /* uv_hrtime its last stream ended (0: none yet) */
};

/* How often a starting managed engine is probed. */
#define SL_PROBE_STARTING_MS 200

struct sl_pool_s {
  const sl_pool_config_t *cfg;   /* name, models, api_key */
  const sl_adapter_t *adapter;   /* how to talk to its engines (cfg->adapter, looked up; static) */
  sl_endpoint_t *eps;            /* endpoints of this pool (into the registry's array) */
  int neps;
  /* Streams that ended early after their first token (a guard, the client
   * gone, the engine failed) and the two token counts they kept. */
  uint64_t cut_streams, cut_tokens_received, cut_tokens_written;
  int queued;                    /* requests waiting in its admission queue now (the relay's) */
  double drain_per_s;            /* streams it ended per second, smoothed (the limits job's; for Retry-After) */
  uint64_t w_ended;              /* streams it ended in the limits job's interval */
  double wait_ms;                /* how long requests placed from its queue had waited, smoothed (0 = none yet) */
  /* /metrics, counted when a stream whose home this pool is ends. */
  sl_hist_t h_duration;          /* request duration, seconds */
  sl_hist_t h_queue;             /* time spent in the admission queue (0 for most), seconds */
  sl_hist_t h_tokens;            /* completion tokens per request */
  uint64_t outcomes[SL_OUT__COUNT];
};

struct sl_registry_s {
  uv_loop_t *loop;
  const sl_config_t *cfg;
  sl_pool_t pools[SL_MAX_POOLS];
  int npools;
  sl_endpoint_t *eps;            /* all endpoints */
  int neps;
  /* One SSL_CTX per distinct (ca_file, verify) of the https:// endpoints,
   * made here at open so a bad CA bundle refuses the start. */
  struct ssl_ctx_st **tls_ctxs;
  const sl_tls_config_t **tls_keys; /* the settings each was made for */
  int ntls;
  uint64_t snapshot_version;     /* bumped on any readiness/cooldown/draining change */
  struct sl_upstream_ctx_s *upstream; /* set by sl_upstream_init */
  sl_counters_t *counters;       /* the owner's counters (NULL = none); upstream.c counts here too */
  sl_narrator_t *nar;            /* the owner's narrator (NULL = none); upstream.c narrates here too */
  void (*on_ready)(void *ud, sl_endpoint_t *ep); /* ep became ready (queued requests may go now), or NULL */
  void *ready_ud;
};

/* A candidate handed to the choice step. */
/* Builds the registry from cfg (which must outlive it): finds each pool's
 * adapter by name (adapter.h), resolves every endpoint address (in-process
 * sims get theirs when started), all endpoints not ready.  Returns 0 or
 * SL_EINVAL with a message naming the key: an adapter that does not exist
 * (pools[i].adapter), an endpoint that does not resolve, or a TLS CA
 * bundle that holds no usable certificate. */
int sl_registry_init(sl_registry_t *reg, uv_loop_t *loop, const sl_config_t *cfg, char *err, size_t errlen);

/* A worker's share of each endpoint when nworkers > 1 processes serve one
 * instance (runtime/gateway/view.h): slots, the limit and its bounds become
 * ceil(x / nworkers), at least 1, so the workers together stay within an
 * engine's slots (over by at most nworkers - 1 when slots is not a multiple
 * of nworkers).  slots_configured keeps the configured figure.  Call once,
 * right after sl_registry_init; nworkers <= 1 changes nothing. */
void sl_registry_share(sl_registry_t *reg, int nworkers);

/* Frees the registry's arrays (handles must be closed by upstream.c first). */
void sl_registry_free(sl_registry_t *reg);

/* 1 if pool p lists model. */
int sl_pool_serves(const sl_pool_t *p, const char *model);

/* 1 if endpoint ep (of a pool that serves model) serves it too: its own
 * "models" list when it has one, else all of its pool's. */
int sl_endpoint_serves(const sl_endpoint_t *ep, const char *model);

/* 1 if some pool serves model. */
int sl_registry_has_model(const sl_registry_t *reg, const char *model);

/* 1 if any endpoint is ready and not draining. */
int sl_registry_any_ready(const sl_registry_t *reg);

/* Marks state changes; each bumps snapshot_version and returns 1 if it
 * changed anything. */
int sl_endpoint_set_ready(sl_endpoint_t *ep, int ready);
int sl_endpoint_set_draining(sl_endpoint_t *ep, int draining);
/* Sets the endpoint's limit to v kept in [limit_min, limit_max]; returns
 * the limit it had. */
int sl_endpoint_set_limit(sl_endpoint_t *ep, int v);
/* An engine's 429 or 503, or a timeout, on ep: counted for the rule, and
 * the limit cut at once by the configured factor, once an interval.
 * Returns 1 when it cut. */
int sl_endpoint_drop(sl_endpoint_t *ep, int status);
/* A failed request (an attempt that failed, before or after its first
 * token).  From the cooldown_after_failures-th consecutive one on, the
 * endpoint cools down for base * 2^(failures - that), capped at max. */
void sl_endpoint_failed(sl_endpoint_t *ep, uint64_t now);
/* A request the endpoint served (its first token arrived): clears the
 * failure count and any cooldown.  Only requests call it. */
void sl_endpoint_succeeded(sl_endpoint_t *ep);
/* A health probe's outcome: passed (ok = 1) makes the endpoint ready,
 * failed makes it not ready.  Readiness only: the failure count and the
 * cooldown belong to requests, so a probe neither clears nor extends them.
 * Returns 1 if readiness changed (snapshot_version was bumped), else 0. */
int sl_endpoint_probe(sl_endpoint_t *ep, int ok);

/* Feeds the live estimates (EWMA, alpha 0.2): an attempt's outcome, and for
 * a stream that produced tokens its TTFT, mean inter-token time and decode
 * speed (a value < 0 is "no sample"). */
void sl_endpoint_observe(sl_endpoint_t *ep, int failed, double ttft_ms, double itl_ms, double tokens_per_s);

/* Records one gap of gap_ms between two consecutive tokens of one stream
 * on ep: a store and an increment, no allocation (the relay calls it per
 * token).  The oldest gap in the ring is overwritten. */
static inline void sl_endpoint_gap(sl_endpoint_t *ep, double gap_ms) {
  ep->gaps.ms[ep->gaps.total % SL_DYN_RING] = gap_ms;
  ep->gaps.total++;
}

#endif
