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

#include "runtime/base/chunk_pool.h"
#include "runtime/base/config.h"
#include "runtime/lua/generation.h"
#include "runtime/http/http_server.h"
#include "runtime/upstream/registry.h"
#include "runtime/stream/relay.h"
#include "runtime/upstream/upstream.h"

typedef struct sl_gateway_s {
  uv_loop_t *loop;
  sl_config_t *cfg;
  sl_registry_t reg;
  sl_upstream_ctx_t up;
  sl_chunk_pool_t chunks;
  sl_http_server_t *http;
  sl_streams_t streams;      /* streams in flight and what they share */
  uint64_t next_id;          /* request ids */
  uint64_t started_ns;       /* uv_hrtime at start */
  FILE *log;                 /* log lines (stderr) */
  sl_generation_t *gen;      /* current generation (the gateway holds one reference) */
  uint64_t gen_built;        /* generations built so far (ids) */
} sl_gateway_t;

/* Builds a new generation from the configured placement policy and, if it
 * validates, makes it current (streams in flight keep theirs).  Returns 0
 * with a summary in msg, or < 0 with "file:line: message" in msg; the old
 * generation then stays current. */
int sl_gateway_reload(sl_gateway_t *gw, char *msg, size_t msglen);

#endif
