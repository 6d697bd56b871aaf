/* gateway.h: the daemon's shared state and the client-facing request phases.
 *
 * One gateway per loop: the configuration, the endpoint registry, the
 * upstream context, the chunk pool, the HTTP server and the list of streams
 * in flight.  api.c routes and validates client requests; relay.c runs one
 * stream from placement to its end: attempts (with retries before the first
 * token), relaying events with backpressure, heartbeats, timeouts, and the
 * one log line at the end.  daemon.c builds a gateway from a config and runs
 * it until a signal drains it.
 *
 * Phase boundaries where Lua will attach (placement, pipelines) are the
 * calls sl_relay_place (placement) and sl_api_validate (request phase).
 */
#ifndef SL_GATEWAY_H
#define SL_GATEWAY_H

#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "runtime/chunk_pool.h"
#include "runtime/config.h"
#include "runtime/generation.h"
#include "runtime/http_server.h"
#include "runtime/pool.h"
#include "runtime/upstream.h"

typedef struct sl_stream_s sl_stream_t;

typedef struct sl_gateway_s {
  uv_loop_t *loop;
  sl_config_t *cfg;
  sl_registry_t reg;
  sl_upstream_ctx_t up;
  sl_chunk_pool_t chunks;
  sl_http_server_t *http;
  sl_stream_t *streams;      /* streams in flight (doubly linked) */
  int nstreams;
  uint64_t next_id;          /* request ids */
  uint64_t started_ns;       /* uv_hrtime at start */
  int draining;              /* no new streams; exit when the last ends */
  FILE *log;                 /* stream-end lines (stderr) */
  uint64_t rng;              /* backoff jitter (xorshift) */
  void (*on_idle)(struct sl_gateway_s *gw); /* called when draining and the last stream ended */
  sl_generation_t *gen;      /* current generation (the gateway holds one reference) */
  uint64_t gen_built;        /* generations built so far (ids) */
} sl_gateway_t;

/* A client's X-Request-Id is kept only up to this many bytes. */
#define SL_API_REQUEST_ID_MAX 64

/* A validated client request, as the relay needs it. */
typedef struct {
  char id[SL_API_REQUEST_ID_MAX + 8]; /* the request id decided at the door (api.c): the client's, or generated */
  char model[256];
  int chat;                  /* /v1/chat/completions (1) or /v1/completions (0) */
  int stream;                /* client asked for SSE */
  int include_usage;         /* stream_options.include_usage */
  char *upstream_body;       /* JSON sent upstream (stream forced on, usage asked); owned */
  size_t upstream_body_len;
  size_t prompt_chars;       /* characters of prompt / message contents */
  int64_t max_tokens;        /* max_completion_tokens or max_tokens (0 = not given) */
  char session[128];         /* x-session-id header, for affinity policies ("" = none) */
} sl_api_request_t;

/* Handles one HTTP request (the server's handler). */
void sl_api_handle(sl_http_req_t *req, void *ud);

/* Starts a stream for a validated request; takes ownership of r's body.
 * Answers the client itself in every case. */
void sl_relay_start(sl_gateway_t *gw, sl_http_req_t *req, sl_api_request_t *r);

/* Cancels every stream in flight (shutdown past the drain deadline). */
void sl_relay_cancel_all(sl_gateway_t *gw, const char *why);

/* Writes an OpenAI-shaped error reply {"error":{"message","type","code"}}
 * with the given status (and extra header lines, may be NULL). */
void sl_api_error(sl_http_req_t *req, int status, const char *type, const char *code, const char *extra_headers,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Builds a new generation from the configured placement policy and, if it
 * validates, makes it current (streams in flight keep theirs).  Returns 0
 * with a summary in msg, or < 0 with "file:line: message" in msg; the old
 * generation then stays current. */
int sl_gateway_reload(sl_gateway_t *gw, char *msg, size_t msglen);

/* Bytes a stream may pin at most with this configuration: the high
 * watermark plus one read and the partly used chunks at either end. */
size_t sl_relay_pin_bound(const sl_config_t *cfg);

#endif
