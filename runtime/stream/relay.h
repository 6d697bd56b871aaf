/* relay.h: the streams in flight on one loop, each from placement to its end.
 *
 * A stream runs attempts until the first token reaches the client: each
 * attempt places the request (placement.h), sends it upstream and waits
 * under the first-token timeout; failures before the first token are
 * retried on another endpoint after a jittered backoff.  Events are relayed
 * with backpressure (the upstream read stops while the client's write queue
 * is above the high watermark), heartbeats go out before the first token,
 * and every stream ends with one log line.  relay.c tells the details.
 *
 * sl_streams_t is what the streams of one loop share: the gateway (or a
 * worker) owns one and fills in the pointers before the first stream.
 */
#ifndef SL_RELAY_H
#define SL_RELAY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "runtime/base/chunk_pool.h"
#include "runtime/base/config.h"
#include "runtime/base/counters.h"
#include "runtime/base/narrate.h"
#include "runtime/http/http_server.h"
#include "runtime/lua/generation.h"
#include "runtime/lua/place_ffi.h"
#include "runtime/upstream/registry.h"
#include "runtime/lua/pipeline.h"
#include "runtime/lua/ttldict.h"
#include "runtime/tenant/tenant.h"
#include "runtime/upstream/upstream.h"
#include "runtime/stream/admq.h"

typedef struct sl_stream_s sl_stream_t;

/* ---- traces ----
 *
 * What one stream did, for a trace exporter (runtime/gateway/trace.h): the
 * relay keeps the ids and times as the stream runs (no allocation) and
 * hands the record to ss->on_trace once, when the stream ends.  Spans: the
 * request (the root, or a child of the client's traceparent), its wait in
 * the admission queue, and per attempt its placement and the upstream
 * request; then the stream from the first token to the end.  Times are
 * Unix nanoseconds (0: did not happen).  Strings are borrowed for the call. */
#define SL_TRACE_ATTEMPTS 8

typedef struct {
  uint8_t span[8];          /* the upstream request's span id (the traceparent the engine got) */
  uint8_t place_span[8];    /* its placement's span id */
  const char *endpoint;     /* "host:port" */
  const char *pool;
  uint64_t t_place;         /* placement began */
  uint64_t t_sent;          /* the request went to the engine (placement ended) */
  uint64_t t_end;           /* the attempt ended */
  int http_status;          /* the engine's status (0: none) */
  const char *outcome;      /* "ok", or why it failed ("HTTP 429", "connect", "reset", "timeout", ...) */
} sl_trace_attempt_t;

typedef struct {
  uint8_t trace_id[16];
  uint8_t parent[8];        /* the client's span (all zero: the request span is a root) */
  uint8_t request_span[8];
  uint8_t queue_span[8];
  uint8_t stream_span[8];
  int sampled;              /* the client's sampled flag, or 1 without a traceparent */
  const char *request_id;
  const char *model;
  const char *operation;    /* "chat" or "text_completion" (gen_ai.operation.name) */
  const char *tenant;       /* or NULL */
  const char *end_reason;   /* the stream's end ("complete", "client_cancel", ...) */
  const char *error;        /* the last failure's text, or "" */
  const char *finish_reason;/* "stop", "length", ... or NULL */
  int stream;               /* the client asked for SSE */
  int64_t max_tokens;       /* 0: not given */
  int64_t prompt_tokens, completion_tokens; /* -1: unknown */
  uint64_t t_start, t_end;  /* the request's span */
  uint64_t t_queue_start, t_queue_end; /* its first wait in the queue (0: never queued) */
  uint64_t t_first_token;   /* 0: none */
  int nattempts;            /* attempts recorded (the first SL_TRACE_ATTEMPTS) */
  sl_trace_attempt_t attempts[SL_TRACE_ATTEMPTS];
} sl_trace_rec_t;

typedef struct sl_streams_s {
  uv_loop_t *loop;
  const sl_config_t *cfg;
  sl_registry_t *reg;
  sl_upstream_ctx_t *up;
  sl_chunk_pool_t *chunks;
  FILE *log;                 /* stream-end lines */
  sl_counters_t *counters;   /* what the streams count into (may be NULL) */
  sl_narrator_t *nar;        /* where they narrate (may be NULL) */
  sl_stream_t *head;         /* streams in flight (doubly linked) */
  int n;
  int draining;              /* no retries; set by the owner when it drains */
  uint64_t rng;              /* backoff jitter and policy seeds (xorshift; nonzero) */
  void (*on_idle)(void *ud); /* called when the last stream ends (set it while draining) */
  void *idle_ud;
  sl_ffi_place_ctx_t place_ctx; /* the placement context handed to Lua (one placement at a time) */
  struct sl_guardset_s *guards[SL_MAX_POOLS]; /* each pool's guards, by pool index (NULL: none; owned by
                                                 the gateway) */
  struct sl_guardset_s *default_guards;       /* for a pool without: the client's stop only (owned by the
                                                 gateway) */
  /* Tenants (runtime/tenant): NULL when none are configured. */
  struct sl_tenants_s *tenants;
  struct sl_guardset_s **tenant_guards;       /* [tenant * SL_MAX_POOLS + pool]: the pool's guards with the
                                                 tenant's added (NULL: the tenant adds none); owned by the
                                                 gateway */
  sl_ttldict_t *dict;                         /* where tenants' windows are counted */
  const char *const *secrets;                 /* the operator's secrets (redact.secrets), NULL-ended */
  sl_pipe_actions_t *acts;                    /* scratch for pipeline calls (one at a time) */
  /* Streams whose pipeline holds text for a timed batch, oldest first:
   * they all wait the same flush_ms, so the order they began waiting is
   * the order they fall due, and one timer serves them all (set up and
   * closed by the owner with the loop's other handles). */
  sl_stream_t *pq_head, *pq_tail;
  uv_timer_t pipe_timer;
  /* Admission (docs/admission.md): each pool's queue of requests waiting
   * for an endpoint with room under its limit, and one timer that runs the
   * queues soon after room may have appeared (a stream ended, a limit rose,
   * an endpoint became ready or its cooldown ended).  sl_relay_admission_init
   * sets them up; the owner closes kick_timer with the loop's other handles
   * and then calls sl_relay_admission_free. */
  sl_admq_t queues[SL_MAX_POOLS];
  int nqueued;                                /* requests in all the queues */
  uv_timer_t kick_timer;
  int kicking;                                /* the queues are being run now */
  int kick_again;                             /* ... and room appeared meanwhile: run them again */
  /* A request waits because no ready endpoint serves its model (the
   * prefilter's "not ready"): the owner may start an engine for it (a swap
   * pool, runtime/gateway/engines.h).  Called when such a request is
   * queued and whenever the queues are run with one at a head; it must be
   * cheap and idempotent, and may not end streams.  NULL: nothing to start. */
  void (*on_need)(void *ud, int pool, const char *model);
  void *need_ud;
  /* Traces: set by the owner to receive each sampled stream's record when
   * it ends (NULL: none).  A client's valid traceparent always goes on to
   * the engines: as it came without on_trace, else with the attempt's span
   * as the parent (and a new trace when the client sent none). */
  void (*on_trace)(void *ud, const sl_trace_rec_t *rec);
  void *trace_ud;
  int64_t unix_offset_ns;                     /* Unix time minus uv_hrtime, for the records */
  int writes;                                 /* transcript writes in flight */
  void (*on_writes_done)(void *ud);           /* called when the last one completes (set it to close) */
  void *writes_ud;
} sl_streams_t;

/* A client's "stop": at most 4 strings (OpenAI's limit) of 1 to 256 bytes. */
#define SL_REQUEST_STOPS 4
#define SL_REQUEST_STOP_MAX 256

/* A client's X-Request-Id is kept only up to this many bytes. */
#define SL_REQUEST_ID_MAX 64

/* A validated client request, as the relay needs it (built by the request
 * phase, runtime/gateway/api.c). */
typedef struct {
  char id[SL_REQUEST_ID_MAX + 8]; /* the request id decided at the door (api.c): the client's, or generated */
  char model[256];
  int chat;                  /* /v1/chat/completions (1) or /v1/completions (0) */
  int stream;                /* client asked for SSE */
  int include_usage;         /* stream_options.include_usage */
  char *body;                /* the client's JSON, compact, without "stream" and "stream_options"
                                (gateway/request.h); each attempt's adapter builds the engine's body
                                from it (upstream/adapter.h); owned (sl_malloc) */
  size_t body_len;           /* bytes in body */
  size_t prompt_chars;       /* characters of prompt / message contents */
  int64_t max_tokens;        /* max_completion_tokens or max_tokens (0 = not given) */
  char session[128];         /* x-session-id header, for affinity policies ("" = none) */
  int nstops;                /* the client's "stop" strings, enforced by the stop guard */
  size_t stop_lens[SL_REQUEST_STOPS];
  char stops[SL_REQUEST_STOPS][SL_REQUEST_STOP_MAX + 1];
  /* The tenant's side (api.c step 3), all empty without tenants. */
  struct sl_tenant_s *tenant;/* who asked (NULL: no tenants configured) */
  sl_tenant_resv_t resv;     /* the tokens it reserved; settled when the stream ends */
  sl_pipeline_t *pipe;       /* its pipeline in the request's generation (NULL: none) */
  int pipe_h;                /* the stream's handle in it */
  char *extra_guards;        /* guards its on_request added, as a guards object in JSON (owned), or NULL */
  int record;                /* record a transcript of the stream */
  int priority;              /* its admission band: sl_priority_t (the tenant's, or the allowed header's) */
} sl_request_t;

/* Starts a stream for a validated request under generation gen (the stream
 * takes a reference; NULL = the least-loaded rule); takes ownership of r's
 * body (r->body is NULL after).  Each attempt builds its engine request
 * with the adapter of the pool it was placed on.  Answers the client
 * itself in every case. */
void sl_relay_start(sl_streams_t *ss, sl_http_req_t *req, sl_request_t *r, sl_generation_t *gen);

/* Cancels every stream in flight (shutdown past the drain deadline). */
void sl_relay_cancel_all(sl_streams_t *ss, const char *why);

/* Admission: sets up the queues (from ss->cfg) and kick_timer (on ss->loop);
 * frees the queues' heaps once kick_timer is closed. */
void sl_relay_admission_init(sl_streams_t *ss);
void sl_relay_admission_free(sl_streams_t *ss);
/* Runs the queues soon (on the next loop turn): room may have appeared. */
void sl_relay_kick(sl_streams_t *ss);
/* Bytes of stream buffers in use now (the chunks handed out), which
 * admission.memory_budget_bytes bounds. */
size_t sl_relay_stream_memory(const sl_streams_t *ss);
/* The Retry-After a refused or timed-out request of pool index pool is
 * told, in ms: the time its queue takes to drain at the pool's rate. */
uint64_t sl_relay_retry_after_ms(const sl_streams_t *ss, int pool);
/* Asks gen's slow_client rule about every stream whose client has stayed
 * above the high watermark for at least threshold_ms, and cancels those it
 * says to (one error event, code slow_client).  Returns how many. */
int sl_relay_slow_clients(sl_streams_t *ss, sl_generation_t *gen, uint64_t threshold_ms);

/* Bytes a stream may pin at most with this configuration: the high
 * watermark plus one read and the partly used chunks at either end. */
size_t sl_relay_pin_bound(const sl_config_t *cfg);

/* ---- stream listing (for operator tools) ---- */

/* One stream in flight as the attach helpers show it.  Strings are borrowed
 * from the stream: valid until control returns to the loop. */
typedef struct {
  const char *id;                 /* request id */
  const char *model;              /* requested model */
  const char *endpoint;           /* "host:port" of the current or last attempt, or NULL before placement */
  const char *pool;               /* that endpoint's pool, or NULL */
  const char *state;              /* "queued" (in its pool's admission queue), "waiting" (no token yet),
                                     "backoff" (retry pending), "streaming",
                                     "paused" (backpressure) or "ending" (finished, closing handles) */
  const char *placement;          /* the placement reason ("" before placement) */
  const sl_generation_t *gen;     /* the generation it was admitted under (NULL when none) */
  uint64_t tokens;                /* token events received from the engine */
  uint64_t tokens_written;        /* of those, the ones whose bytes the kernel took for the client */
  double age_ms;                  /* since it was admitted */
  double ttft_ms;                 /* time to first token, or -1 before it */
  int attempts;                   /* attempts that counted so far */
  int stream;                     /* the client asked for SSE */
  const char *guard;              /* the guard that fired or annotated last ("" = none) */
  int held;                       /* events held back by the guards now */
  const char *tenant;             /* its tenant's name, or NULL */
  double queued_ms;               /* time it spent in the admission queue so far */
  int priority;                   /* its band (0 high, 1 normal, 2 low) */
} sl_stream_info_t;

/* The first stream in flight (after == NULL) or the one after `after`;
 * NULL at the end.  The list must not change while it is walked (nothing
 * in a synchronous walk can change it). */
const sl_stream_t *sl_relay_stream_next(const sl_streams_t *ss, const sl_stream_t *after);

/* Fills *out for st at time now (uv_hrtime). */
void sl_relay_stream_info(const sl_stream_t *st, uint64_t now, sl_stream_info_t *out);

#endif
