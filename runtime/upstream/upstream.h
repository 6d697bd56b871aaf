/* upstream.h: the HTTP client toward engines, with a keep-alive pool per
 * endpoint and health checks.
 *
 * sl_upstream_request sends one request on an idle kept-alive connection of
 * the endpoint, or on a new one (under the connect timeout).  Response bytes
 * are read into pool chunks charged to the caller's pin account and decoded
 * by the upstream decoder (HTTP, then the framing and schema of the
 * endpoint's pool's adapter); each normalized event reaches the caller's C
 * callback with the chunk its spans point into, so the relay can pass the
 * bytes on without copying.  Exactly
 * one on_end call ends every request that started: with the response
 * complete (the connection then goes back to the endpoint's idle list if the
 * engine allows keep-alive) or with the failure kind.  After
 * sl_upstream_abort no callback comes; the connection is closed, never
 * reused, so the engine sees the cancel at once.
 *
 * Health checks: every endpoint is probed with GET <health path> (health.path
 * if configured, else its pool's adapter's) at the configured interval; a
 * 2xx makes it ready, anything else (or a timeout) makes it not ready and
 * puts it in cooldown.
 */
#ifndef SL_UPSTREAM_H
#define SL_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/chunk_pool.h"
#include "runtime/upstream/oai.h"
#include "runtime/upstream/registry.h"

typedef enum {
  SL_UP_OK = 0,       /* response complete */
  SL_UP_CONNECT,      /* could not connect (refused, unreachable, connect timeout) */
  SL_UP_STALE,        /* a reused keep-alive connection was closed before any byte: safe to resend */
  SL_UP_RESET,        /* connection closed or reset before the response ended */
  SL_UP_PROTOCOL,     /* malformed HTTP, SSE or JSON from the engine */
  SL_UP_STATUS,       /* the engine answered a non-2xx status */
  SL_UP_ABORTED       /* never reported: the caller aborted */
} sl_up_result_t;

typedef struct {
  sl_up_result_t result;  /* what happened */
  int status;             /* HTTP status, 0 if none arrived */
  int is_sse;             /* the response was in the adapter's framing (text/event-stream, or
                             application/x-ndjson for an NDJSON adapter) */
  int saw_done;           /* a [DONE] event arrived */
  const char *body;       /* first bytes of a body that was not decoded (error replies) */
  size_t body_len;
  int64_t retry_after_ms; /* the engine's Retry-After or retry-after-ms, in ms; -1 when none */
  const char *message;    /* human-readable detail (static or in the connection; valid during the call) */
} sl_up_end_t;

typedef struct {
  /* One event; chunk is the pool chunk ev->raw points into: the read chunk,
   * or for an event joined across reads the connection's join chunk.  Take
   * a reference (sl_chunk_ref) to keep the bytes past the call.  Return 0
   * to go on, nonzero to stop decoding (then call sl_upstream_abort). */
  int (*on_event)(void *ud, const sl_event_t *ev, sl_chunk_t *chunk);
  /* The events of one read were all delivered (may be NULL).  Called after
   * every read that reached the decoder and was not stopped by on_event,
   * before on_end when that read also ended the response: the place to
   * send a read's events in one write. */
  void (*on_read_end)(void *ud);
  /* The request ended (not called after sl_upstream_abort). */
  void (*on_end)(void *ud, const sl_up_end_t *end);
} sl_up_handler_t;

/* State of the upstream side of one loop. */
typedef struct sl_upstream_ctx_s {
  uv_loop_t *loop;
  sl_registry_t *reg;
  sl_chunk_pool_t *chunks;   /* reads land in these */
  int nopen;                 /* connections open (idle, busy, closing) */
  int health_open;           /* health timers open */
  int closing;
  void (*close_cb)(void *);
  void *close_ud;
} sl_upstream_ctx_t;

/* Sets up the context; must precede every other call. */
void sl_upstream_init(sl_upstream_ctx_t *ctx, uv_loop_t *loop, sl_registry_t *reg, sl_chunk_pool_t *chunks);

/* Sends method path (the endpoint's base is prefixed) with extra header lines
 * ("Name: value\r\n"...) and body.  acct (may be NULL) is charged for every
 * chunk the response is read into.  Returns 0 with *out set, or a negative
 * code (the handler is then never called). */
int sl_upstream_request(sl_upstream_ctx_t *ctx, sl_endpoint_t *ep, const char *method, const char *path,
                        const char *headers, const char *body, size_t body_len, const sl_up_handler_t *h,
                        void *ud, sl_pin_account_t *acct, sl_upconn_t **out);

/* Stops reading the response (backpressure); events stop until resume. */
void sl_upstream_pause(sl_upconn_t *c);
void sl_upstream_resume(sl_upconn_t *c);

/* Cancels: closes the connection at once; no further callbacks. */
void sl_upstream_abort(sl_upconn_t *c);

/* Probes ep after ms (a check in flight is dropped): a managed engine that
 * was just spawned is asked at once instead of at the next interval.  Does
 * nothing before sl_upstream_start_health or while closing. */
void sl_upstream_probe_soon(sl_endpoint_t *ep, uint64_t ms);

/* Starts health checks on every endpoint (the first one at once). */
void sl_upstream_start_health(sl_upstream_ctx_t *ctx);

/* Closes every idle connection and health-check handle; cb runs when all
 * are closed.  In-flight requests must have been aborted or ended. */
void sl_upstream_close(sl_upstream_ctx_t *ctx, void (*cb)(void *), void *ud);

/* Connections open now (idle + busy), for /health. */
int sl_upstream_open_connections(const sl_upstream_ctx_t *ctx);

#endif
