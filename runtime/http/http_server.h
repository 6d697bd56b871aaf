/* http_server.h: the HTTP/1.1 server under the client API and the simulated
 * engine.
 *
 * Built on llhttp and libuv.  It accepts connections, parses requests with
 * limits that each have their own answer (431 header bytes: request line,
 * headers and the trailer fields of a chunked body together, 413 body bytes as
 * soon as the headers declare too much or a chunked body grows past it, 408
 * when a request takes longer than the header timeout, 400 for malformed
 * requests including Content-Length together with Transfer-Encoding and a
 * header or trailer field with an empty name, 503 past
 * the connection limit) and hands each complete request to one handler.
 * Keep-alive and pipelining: requests on a connection are handed over one at
 * a time, and the next is parsed only after the previous response ended, so
 * answers go out in order.  A connection idle between requests is closed
 * after the idle timeout.  While a response is in progress the connection is
 * still read, so a client that goes away is noticed at once (on_abort).
 *
 * Responses are either whole (sl_http_respond) or streamed with chunked
 * transfer encoding (sl_http_stream_*).  A streamed write may pin a pool
 * chunk: the chunk is referenced until libuv has sent the bytes, so spans
 * into upstream reads go out without a copy.  The handler asks
 * sl_http_req_over_high after it writes and, when it says so, stops
 * producing until on_drain, which comes when the held bytes fall to the low
 * watermark: that is how the relay applies backpressure.
 * on_written tells it, per write, when the kernel has taken a queued write
 * whole: the relay counts tokens written and ends a body on that event.
 *
 * Trailer fields after a chunked body are read (within the header limit)
 * and dropped: the handler sees only the headers before the body.
 *
 * Ownership: the request belongs to the connection.  The handler may use it
 * from the handler call until it ends the response, or until on_abort, after
 * which it must not touch it again.  Times are uv_hrtime nanoseconds or
 * milliseconds where a name says _ms.
 */
#ifndef SL_HTTP_SERVER_H
#define SL_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "runtime/base/chunk_pool.h"
#include "runtime/base/config.h"
#include "runtime/base/counters.h"

typedef struct sl_http_server_s sl_http_server_t;
typedef struct sl_http_conn_s sl_http_conn_t;
typedef struct sl_http_req_s sl_http_req_t;


typedef struct {
  const char *name;  /* NUL-terminated, as received */
  const char *value; /* NUL-terminated, surrounding whitespace trimmed */
} sl_http_header_t;

typedef void (*sl_http_req_cb)(sl_http_req_t *req);
/* A write's bytes were all taken by the kernel; queued is the connection's
 * write queue (sl_http_req_write_queue) at that moment. */
typedef void (*sl_http_written_cb)(sl_http_req_t *req, size_t queued);
typedef void (*sl_http_handler_cb)(sl_http_req_t *req, void *ud);

struct sl_http_req_s {
  sl_http_conn_t *conn;       /* owning connection */
  sl_http_server_t *server;   /* owning server */
  int method;                 /* llhttp_method_t */
  const char *method_name;    /* "GET", ... */
  const char *path;           /* NUL-terminated path, query removed */
  const char *query;          /* NUL-terminated query after '?', or "" */
  sl_http_header_t *headers;  /* nheaders entries */
  int nheaders;
  char *body;                 /* NUL-terminated body bytes (may contain NULs) */
  size_t body_len;
  int keep_alive;             /* client allows reuse after this response */
  uint64_t start_ns;          /* uv_hrtime when the request's first byte came */
  /* Set by the handler: */
  void *data;                 /* handler's per-request state */
  sl_http_req_cb on_drain;    /* held bytes fell to the low watermark after sl_http_req_over_high said 1 */
  sl_http_req_cb on_abort;    /* client went away before the response ended */
  sl_http_written_cb on_written; /* a queued write was taken whole by the kernel (see below) */
  /* A sink request (below): conn and server are NULL and the answer goes here. */
  const struct sl_http_sink_s *sink;
  void *sink_ud;              /* the sink's own state */
};

/* ---- sink requests ----
 *
 * A request that no connection carries: its owner (the task store,
 * runtime/stream/tasks.h) fills in a sl_http_req_t with conn NULL, the
 * headers it wants the handler to see and a sink, and hands it to a
 * handler as if a client had sent it.  Every response call below then goes
 * to the sink instead of a socket: the handler's code is the same for a
 * client and for a sink.  Headers set with sl_http_req_set_response_headers
 * are dropped.  The sink answers sl_http_req_over_high itself and calls
 * req->on_drain when the handler may go on; it calls req->on_abort to
 * cancel the request as a client that left would.  sl_http_req_write_queue
 * and sl_http_req_write_held are 0: a sink takes the bytes at once (it
 * copies what it keeps), so on_written never runs. */
typedef struct sl_http_sink_s {
  /* A streamed response began (sl_http_stream_begin or _start). */
  int (*begin)(sl_http_req_t *req, int status);
  /* One streamed write: the concatenation of bufs, borrowed for the call. */
  int (*write)(sl_http_req_t *req, const uv_buf_t *bufs, unsigned nbufs);
  /* The streamed response ended (close: without a clean end, as after an
   * error event).  The handler is done with req. */
  void (*end)(sl_http_req_t *req, int close);
  /* A whole response (sl_http_respond); the handler is done with req. */
  void (*respond)(sl_http_req_t *req, int status, const char *body, size_t len);
  /* sl_http_req_over_high for this request. */
  int (*over_high)(sl_http_req_t *req, size_t extra);
} sl_http_sink_t;

/* on_written, when set, runs at the completion of each write request on
 * the connection, once the kernel has taken all of that write's bytes, in
 * the order the writes were made; queued is what is still queued then (the
 * queue is FIFO: every byte written before is taken too).  It does not run
 * for a chunk sl_http_stream_write got into the kernel at once (no write
 * request is made; the queue's size right after the call shows it), for a
 * write that failed, nor once the response has ended or on_abort has run.
 * It may write, end the response or reset the connection.  It costs no
 * allocation and no system call: the completion is libuv's own. */

/* Case-insensitive header lookup: the value, or NULL if absent. */
const char *sl_http_req_header(const sl_http_req_t *req, const char *name);

/* Header lines ("Name: value\r\n"...) that every response to this request
 * carries, whole or streamed, before the extra_headers of the call that
 * answers it: how a handler attaches something (a request id) to whatever
 * answer the request ends up with.  Copied; a later call replaces them.
 * Returns 0, or SL_ETOOBIG if they are longer than
 * SL_HTTP_RESPONSE_HEADERS_MAX bytes (nothing is set then). */
#define SL_HTTP_RESPONSE_HEADERS_MAX 255
int sl_http_req_set_response_headers(sl_http_req_t *req, const char *lines);

/* Initializes and starts listening on host:port (port 0 picks a free one).
 * Returns 0 or a negative libuv code (e.g. UV_EADDRINUSE).  The handler is
 * called once per complete request.  The server struct must stay valid until
 * the close callback of sl_http_server_close. */
int sl_http_server_init(sl_http_server_t **out, uv_loop_t *loop, const char *host, int port,
                        const sl_http_limits_t *limits, sl_http_handler_cb handler, void *ud);

/* sl_http_server_init_flags: the listening socket gets SO_REUSEPORT (and
 * SO_REUSEADDR) before it is bound, so several processes may listen on
 * one port and the kernel spreads new connections among them (the
 * workers of `sluice serve` with "workers" > 1). */
#define SL_HTTP_REUSEPORT 1u

/* sl_http_server_init with flags (SL_HTTP_*; 0 is sl_http_server_init).
 * Returns and fails as sl_http_server_init. */
int sl_http_server_init_flags(sl_http_server_t **out, uv_loop_t *loop, const char *host, int port,
                              const sl_http_limits_t *limits, unsigned flags, sl_http_handler_cb handler,
                              void *ud);

/* Counts requests, connections and bytes into counters (NULL, the
 * default: counts nothing, as for an in-process engine's server).  Call it
 * before the loop runs again after init. */
void sl_http_server_set_counters(sl_http_server_t *s, sl_counters_t *counters);

/* The ud the server was made with (what its handler gets). */
void *sl_http_server_ud(const sl_http_server_t *s);

/* The bound port (useful after port 0). */
int sl_http_server_port(const sl_http_server_t *s);

/* Stops accepting new connections; open ones continue. */
void sl_http_server_stop_accepting(sl_http_server_t *s);

/* Connections open right now, and those with a response in progress. */
int sl_http_server_connections(const sl_http_server_t *s);
int sl_http_server_active_requests(const sl_http_server_t *s);
/* Connections this server has accepted since it started (a total). */
uint64_t sl_http_server_accepted(const sl_http_server_t *s);

/* Closes the listener and every connection (in-progress responses are cut,
 * their handlers get on_abort) and frees the server; cb (may be NULL) runs
 * once everything is closed. */
void sl_http_server_close(sl_http_server_t *s, void (*cb)(void *ud), void *ud);

/* A whole response with Content-Length.  extra_headers is raw header lines
 * ("Name: value\r\n"...) or NULL.  Ends the request: the handler must not
 * touch req afterwards.  Returns 0, or a negative code if the connection is
 * gone (the request is ended all the same). */
int sl_http_respond(sl_http_req_t *req, int status, const char *content_type, const char *body,
                    size_t body_len, const char *extra_headers);

/* Starts a streamed (chunked) response.  Returns 0 or a negative code. */
int sl_http_stream_start(sl_http_req_t *req, int status, const char *content_type,
                         const char *extra_headers);

/* Like sl_http_stream_start, but the head is kept and goes out with the
 * response's first sl_http_stream_writev (or sl_http_stream_end), in the
 * same system call: a stream's head and its first events cost one write.
 * Returns 0 or a negative code (the request is then ended). */
int sl_http_stream_begin(sl_http_req_t *req, int status, const char *content_type, const char *extra_headers);

/* The most buffers and pinned chunks one streamed write may carry. */
#define SL_HTTP_WRITE_BUFS 64
#define SL_HTTP_WRITE_PINS 4

/* Writes one HTTP chunk holding the concatenation of nbufs buffers (at most
 * SL_HTTP_WRITE_BUFS), in one system call when the socket takes it all.
 * pins[0..npins) (at most SL_HTTP_WRITE_PINS) are referenced until the
 * bytes are sent, so the buffers may point into them.  Other buffers must
 * stay valid until sent (static strings) or be copied by the caller.  With
 * nothing queued the bytes go straight to the kernel (uv_try_write, no
 * write request); only what it refused is queued.  Returns 0, or a
 * negative code if the connection is gone (nothing is queued; no pin is
 * referenced) or the counts are too large (SL_EINVAL). */
int sl_http_stream_writev(sl_http_req_t *req, const uv_buf_t *bufs, unsigned nbufs, sl_chunk_t *const *pins,
                          unsigned npins);

/* sl_http_stream_writev of up to 3 buffers with one pin (or NULL). */
int sl_http_stream_write(sl_http_req_t *req, const uv_buf_t *bufs, unsigned nbufs, sl_chunk_t *pin);

/* Ends a streamed response with the terminating chunk.  With close=1 the
 * connection is closed once the bytes are sent (no further requests on it).
 * Ends the request: the handler must not touch req afterwards. */
void sl_http_stream_end(sl_http_req_t *req, int close);

/* Closes the request's connection at once with a TCP RST instead of a FIN;
 * queued writes are dropped.  Ends the request: on_abort is not called and
 * the handler must not touch req afterwards. */
void sl_http_req_reset(sl_http_req_t *req);

/* Bytes queued for this request's connection and not yet sent. */
size_t sl_http_req_write_queue(const sl_http_req_t *req);

/* Bytes of this connection's writes whose callbacks have not run yet: those
 * still queued and those the kernel took but libuv reports only on its next
 * loop turn.  Their buffers and pinned chunks are still held, so this (never
 * less than sl_http_req_write_queue) is what bounds memory. */
size_t sl_http_req_write_held(const sl_http_req_t *req);

/* The one high-watermark test of the streaming path.  Returns 1 when the
 * connection's held bytes plus `extra` (bytes the caller holds back for
 * this response and will write later) are above the high watermark and
 * writes are pending past the low watermark; on_drain is then armed and
 * comes once the held bytes are back at the low watermark.  Returns 0
 * otherwise (nothing armed).  A writer that stops producing on 1 and
 * resumes on on_drain keeps the bytes it pins within the high watermark
 * plus what it writes between two tests. */
int sl_http_req_over_high(sl_http_req_t *req, size_t extra);

/* Relaying another server's whole answer.  sl_http_raw_write writes
 * p[0..n) to the request's connection as it is, with no framing: the
 * caller sends a complete HTTP response (head and body) it got elsewhere,
 * which must say "Connection: close".  The bytes are copied.  Backpressure
 * is sl_http_req_over_high and on_drain as for a streamed response.
 * Returns 0, or a negative code when the connection is gone (the request
 * is then ended, no on_abort follows).  sl_http_raw_end ends the request
 * and closes the connection once the bytes are sent; the handler must not
 * touch req afterwards. */
int sl_http_raw_write(sl_http_req_t *req, const char *p, size_t n);
void sl_http_raw_end(sl_http_req_t *req);

/* The reason phrase for a status code ("Not Found"). */
const char *sl_http_status_text(int status);

#endif
