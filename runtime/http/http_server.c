/* http_server.c: HTTP/1.1 server on llhttp and libuv (see http_server.h).
 *
 * A connection is in one of three states: IDLE (between requests, under the
 * idle timer), READING (a request has begun, under the header timer) or
 * ACTIVE (a complete request is with the handler).  Bytes read while ACTIVE
 * are kept unparsed, so pipelined requests are answered in order; reading
 * continues so that a client that goes away is noticed during a long stream.
 * Request line and headers are copied into one per-connection buffer as
 * NUL-terminated strings (offsets while parsing, pointers once complete),
 * the body into another; both are reused across requests on a connection.
 * Once the headers are complete the header buffer is frozen: the request's
 * header pointers point into it, so nothing may append to it (and maybe
 * move it) until the next request begins.  Trailer fields after a chunked
 * body arrive through the same llhttp callbacks; they are counted against
 * the header limit and dropped, never stored.
 */
#include "runtime/http/http_server.h"

#include <assert.h>
#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/base/errors.h"

enum { SL_CONN_IDLE, SL_CONN_READING, SL_CONN_ACTIVE };

typedef struct sl_http_write_s sl_http_write_t;

struct sl_http_write_s {
  uv_write_t w;              /* the libuv request; w.data unused */
  sl_http_write_t *next;     /* free-list link */
  sl_http_conn_t *conn;      /* connection written to */
  sl_chunk_t *pins[SL_HTTP_WRITE_PINS]; /* chunks referenced until sent */
  unsigned npins;
  char *heap;                /* owned buffer freed after the write, or NULL */
  size_t len;                /* bytes this write holds until its callback */
  char prefix[48];           /* chunk-size line plus a copied short first buffer */
  char suffix[24];           /* copied short last buffer plus the chunk's CRLF */
};

typedef struct {
  size_t name_off, value_off;
} sl_hdr_off_t;

struct sl_http_conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_shutdown_t shutdown;
  sl_http_server_t *server;
  sl_http_conn_t *prev, *next; /* server's list of connections */
  llhttp_t parser;
  int state;
  int closing;               /* uv_close called (or about to be) */
  int shutting_down;         /* flushing writes before closing */
  int reading;               /* uv_read_start in effect */
  int in_process;            /* conn_process on the stack */
  int above_high;            /* the handler saw the high watermark passed: on_drain is due */
  int error_status;          /* status chosen by a limit check in a callback */
  int handles;               /* open handles (tcp, timer) */
  int writes_pending;        /* uv_write requests not yet called back */
  size_t held;               /* bytes of those writes (queued, or sent and not yet called back) */
  char *head;                /* a streamed response's head waiting for its first write (sl_http_stream_begin) */
  size_t head_len;
  int expect_continue;       /* client sent Expect: 100-continue */
  /* unparsed input */
  char *in;
  size_t in_len, in_cap;
  /* request being parsed */
  char *hbuf;                /* method, url, header names and values, NUL-terminated */
  size_t hlen, hcap;
  size_t header_bytes;       /* bytes of request line and headers so far */
  size_t url_off, method_off;
  sl_hdr_off_t *hoff;
  int nhdr, hoff_cap;
  int in_value;              /* last header callback was a value */
  size_t field_len;          /* bytes of the header or trailer field name in progress */
  int headers_done;          /* headers complete: header callbacks now carry trailers */
  char *body;
  size_t body_len, body_cap;
  sl_http_header_t *headers;
  int headers_cap;
  char resp_headers[SL_HTTP_RESPONSE_HEADERS_MAX + 1]; /* set by the handler for this request's answer */
  sl_http_req_t req;
};

struct sl_http_server_s {
  uv_tcp_t listener;
  uv_loop_t *loop;
  sl_http_limits_t limits;
  sl_http_handler_cb handler;
  void *ud;
  llhttp_settings_t settings;
  sl_counters_t *counters;   /* the owner's counters, or NULL */
  int port;
  int listening;             /* listener handle open */
  int nconns, nactive;
  uint64_t accepted;         /* connections accepted since start */
  sl_http_conn_t *conns;     /* doubly linked */
  sl_http_write_t *free_writes;
  int closing;
  void (*close_cb)(void *);
  void *close_ud;
  char readbuf[65536];       /* every read lands here, then is parsed or kept */
};

static void sl__conn_close(sl_http_conn_t *c);
static void sl__conn_process(sl_http_conn_t *c);
static void sl__server_maybe_done(sl_http_server_t *s);

const char *sl_http_status_text(int status) {
  /* RFC 9110's reason phrases: an engine's 4xx is passed through with its
   * own code, so every registered code has its phrase, and an unknown one
   * gets its class's name rather than a wrong phrase ("301 OK"). */
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:
      return status < 200   ? "Informational"
             : status < 300 ? "Success"
             : status < 400 ? "Redirection"
             : status < 500 ? "Client Error"
                            : "Server Error";
  }
}

const char *sl_http_req_header(const sl_http_req_t *req, const char *name) {
  for (int i = 0; i < req->nheaders; i++)
    if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
  return NULL;
}

int sl_http_req_set_response_headers(sl_http_req_t *req, const char *lines) {
  sl_http_conn_t *c = req->conn;
  size_t n = strlen(lines);
  if (n > SL_HTTP_RESPONSE_HEADERS_MAX) return SL_ETOOBIG;
  if (req->sink != NULL) return 0; /* a sink has no head */
  memcpy(c->resp_headers, lines, n + 1);
  return 0;
}

/* ---- writes ---- */

static sl_http_write_t *sl__write_get(sl_http_server_t *s) {
  sl_http_write_t *w = s->free_writes;
  if (w != NULL)
    s->free_writes = w->next;
  else
    w = sl_malloc(sizeof(*w));
  w->next = NULL;
  w->npins = 0;
  w->heap = NULL;
  return w;
}

static void sl__write_put(sl_http_server_t *s, sl_http_write_t *w) {
  for (unsigned i = 0; i < w->npins; i++) sl_chunk_unref(w->pins[i]);
  sl_free(w->heap);
  w->npins = 0;
  w->heap = NULL;
  w->next = s->free_writes;
  s->free_writes = w;
}

static void sl__on_write(uv_write_t *req, int status) {
  sl_http_write_t *w = (sl_http_write_t *)req;
  sl_http_conn_t *c = w->conn;
  sl_http_server_t *s = c->server;
  c->writes_pending--;
  c->held -= w->len;
  sl__write_put(s, w);
  if (status < 0) {
    if (!c->closing) sl__conn_close(c);
    return;
  }
  /* libuv lowers the queue's size as the kernel takes bytes and calls a
   * write back once all of its bytes are taken, so the size now is exact.
   * Not so after a failure: libuv drops a failed write's unsent bytes from
   * the size just before its callback, as if the kernel had taken them. */
  if (c->state == SL_CONN_ACTIVE && c->req.on_written != NULL)
    c->req.on_written(&c->req, uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp));
  if (c->above_high && c->state == SL_CONN_ACTIVE && c->held <= s->limits.write_low_watermark &&
      uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <= s->limits.write_low_watermark) {
    c->above_high = 0;
    if (c->req.on_drain != NULL) c->req.on_drain(&c->req);
  }
}

/* Queues bufs on the connection.  Takes ownership of heap and (one reference
 * of) pin only on success. */
static int sl__conn_write(sl_http_conn_t *c, sl_http_write_t *w, const uv_buf_t *bufs, unsigned n) {
  if (c->closing || c->shutting_down) return UV_ECANCELED;
  w->conn = c;
  int rc = uv_write(&w->w, (uv_stream_t *)&c->tcp, bufs, n, sl__on_write);
  if (rc < 0) return rc;
  c->writes_pending++;
  size_t total = 0;
  for (unsigned i = 0; i < n; i++) total += bufs[i].len;
  sl_counter_add(c->server->counters, SL_C_BYTES_TO_CLIENTS, total);
  /* A write the kernel took at once still holds its buffers (and pinned
   * chunk) until its callback, which libuv runs on the next loop turn; a
   * fast upstream can be read many times in between, so the held bytes
   * count toward the high watermark too. */
  w->len = total;
  c->held += total;
  return 0;
}

static int sl__write_heap(sl_http_conn_t *c, char *heap, size_t len) {
  sl_http_write_t *w = sl__write_get(c->server);
  w->heap = heap;
  uv_buf_t b = uv_buf_init(heap, (unsigned)len);
  int rc = sl__conn_write(c, w, &b, 1);
  if (rc < 0) {
    sl__write_put(c->server, w);
    return rc;
  }
  return 0;
}

static int sl__write_static(sl_http_conn_t *c, const char *p, size_t len) {
  sl_http_write_t *w = sl__write_get(c->server);
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
  int rc = sl__conn_write(c, w, &b, 1);
  if (rc < 0) {
    sl__write_put(c->server, w);
    return rc;
  }
  return 0;
}

/* ---- connection life ---- */

static void sl__on_handle_closed(uv_handle_t *h) {
  sl_http_conn_t *c = h->data;
  if (--c->handles > 0) return;
  sl_http_server_t *s = c->server;
  if (c->prev) c->prev->next = c->next; else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->nconns--;
  sl_counter_dec(s->counters, SL_C_CONNECTIONS_ACTIVE);
  sl_free(c->in);
  sl_free(c->head);
  sl_free(c->hbuf);
  sl_free(c->hoff);
  sl_free(c->body);
  sl_free(c->headers);
  sl_free(c);
  sl__server_maybe_done(s);
}

/* Closes at once: pending writes are canceled.  An in-progress response's
 * handler is told through on_abort. */
static void sl__conn_close(sl_http_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  if (c->state == SL_CONN_ACTIVE) {
    c->state = SL_CONN_IDLE;
    c->server->nactive--;
    sl_http_req_cb abort_cb = c->req.on_abort;
    c->req.on_abort = NULL;
    c->req.on_drain = NULL;
    c->req.on_written = NULL;
    if (abort_cb != NULL) abort_cb(&c->req);
  }
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, sl__on_handle_closed);
  uv_close((uv_handle_t *)&c->tcp, sl__on_handle_closed);
}

void sl_http_req_reset(sl_http_req_t *req) {
  if (req->sink != NULL) {
    req->sink->end(req, 1);
    return;
  }
  sl_http_conn_t *c = req->conn;
  if (c->closing) return;
  c->closing = 1;
  if (c->state == SL_CONN_ACTIVE) {
    c->state = SL_CONN_IDLE;
    c->server->nactive--;
    c->req.on_abort = NULL;
    c->req.on_drain = NULL;
    c->req.on_written = NULL;
  }
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, sl__on_handle_closed);
  /* libuv refuses a reset while a shutdown is pending; then a plain close. */
  if (c->shutting_down || uv_tcp_close_reset(&c->tcp, sl__on_handle_closed) != 0)
    uv_close((uv_handle_t *)&c->tcp, sl__on_handle_closed);
}

static void sl__on_shutdown(uv_shutdown_t *req, int status) {
  sl_http_conn_t *c = req->data;
  (void)status;
  sl__conn_close(c);
}

/* Closes once every queued byte is sent. */
static void sl__conn_close_after_writes(sl_http_conn_t *c) {
  if (c->closing || c->shutting_down) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
  c->shutdown.data = c;
  if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, sl__on_shutdown) == 0)
    c->shutting_down = 1;
  else
    sl__conn_close(c);
}

/* Answers a request that cannot be handled (limits, malformed) and closes. */
static void sl__conn_error(sl_http_conn_t *c, int status, const char *message, const char *code) {
  static const sl_counter_id_t none = SL_C__COUNT;
  sl_counter_id_t id = none;
  switch (status) {
    case 400: id = SL_C_ERR_BAD_REQUEST; break;
    case 408: id = SL_C_ERR_CLIENT_TIMEOUT; break;
    case 413: id = SL_C_ERR_BODY_TOO_LARGE; break;
    case 431: id = SL_C_ERR_HEADER_TOO_LARGE; break;
  }
  if (id != none) sl_counter_inc(c->server->counters, id);
  char body[512];
  int blen = snprintf(body, sizeof(body),
                      "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\",\"code\":\"%s\"}}",
                      message, code);
  if (blen < 0 || (size_t)blen >= sizeof(body)) blen = 0;
  char *out = sl_malloc(1024);
  int n = snprintf(out, 1024,
                   "HTTP/1.1 %d %s\r\nServer: sluice\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
                   status, sl_http_status_text(status), blen, body);
  if (n < 0 || n >= 1024) n = 0;
  if (c->state == SL_CONN_READING) c->state = SL_CONN_IDLE;
  if (sl__write_heap(c, out, (size_t)n) < 0) {
    sl__conn_close(c);
    return;
  }
  sl__conn_close_after_writes(c);
}

static void sl__on_timer(uv_timer_t *t) {
  sl_http_conn_t *c = t->data;
  if (c->closing || c->shutting_down) return;
  if (c->state == SL_CONN_READING) {
    sl__conn_error(c, 408, "request not received within the header timeout", "request_timeout");
  } else if (c->state == SL_CONN_IDLE) {
    sl__conn_close(c); /* idle keep-alive connection: close quietly */
  }
}

static void sl__conn_timer(sl_http_conn_t *c, uint64_t ms) {
  if (ms == 0)
    uv_timer_stop(&c->timer);
  else
    uv_timer_start(&c->timer, sl__on_timer, ms, 0);
}

/* ---- parsing ---- */

static size_t sl__hbuf_append(sl_http_conn_t *c, const char *p, size_t n) {
  if (c->hlen + n + 1 > c->hcap) {
    size_t cap = c->hcap ? c->hcap : 512;
    while (c->hlen + n + 1 > cap) cap *= 2;
    c->hbuf = sl_realloc(c->hbuf, cap);
    c->hcap = cap;
  }
  size_t off = c->hlen;
  memcpy(c->hbuf + c->hlen, p, n);
  c->hlen += n;
  return off;
}

/* Request line, headers and trailers share one budget, so a trailer section
 * cannot carry more than a header section could. */
static int sl__count_header_bytes(sl_http_conn_t *c, size_t n) {
  c->header_bytes += n;
  if (c->header_bytes > c->server->limits.max_header_bytes) {
    c->error_status = 431;
    return -1;
  }
  return 0;
}

static int sl__on_message_begin(llhttp_t *p) {
  sl_http_conn_t *c = p->data;
  c->hlen = 0;
  c->header_bytes = 0;
  c->nhdr = 0;
  c->in_value = 0;
  c->field_len = 0;
  c->headers_done = 0;
  c->body_len = 0;
  c->expect_continue = 0;
  c->method_off = 0;
  c->url_off = 0;
  char nul = '\0';
  sl__hbuf_append(c, &nul, 1); /* offset 0 is the empty string */
  return 0;
}

static int sl__on_method(llhttp_t *p, const char *at, size_t n) {
  sl_http_conn_t *c = p->data;
  if (sl__count_header_bytes(c, n) < 0) return -1;
  if (c->method_off == 0) c->method_off = c->hlen;
  sl__hbuf_append(c, at, n);
  return 0;
}

static int sl__on_method_complete(llhttp_t *p) {
  sl_http_conn_t *c = p->data;
  char nul = '\0';
  sl__hbuf_append(c, &nul, 1);
  return 0;
}

static int sl__on_url(llhttp_t *p, const char *at, size_t n) {
  sl_http_conn_t *c = p->data;
  if (sl__count_header_bytes(c, n) < 0) return -1;
  if (c->url_off == 0) c->url_off = c->hlen;
  sl__hbuf_append(c, at, n);
  return 0;
}

static int sl__on_url_complete(llhttp_t *p) {
  sl_http_conn_t *c = p->data;
  char nul = '\0';
  if (c->url_off == 0) c->url_off = c->hlen;
  sl__hbuf_append(c, &nul, 1);
  return 0;
}

static int sl__on_header_field(llhttp_t *p, const char *at, size_t n) {
  sl_http_conn_t *c = p->data;
  if (sl__count_header_bytes(c, n) < 0) return -1;
  c->field_len += n;
  /* A trailer field: counted above, never stored.  Appending it would grow
   * (and move) the buffer the request's header pointers point into. */
  if (c->headers_done) return 0;
  if (c->in_value || c->nhdr == 0 || c->hoff[c->nhdr - 1].value_off != 0) {
    /* A new header begins. */
    if (c->nhdr == c->hoff_cap) {
      c->hoff_cap = c->hoff_cap ? c->hoff_cap * 2 : 16;
      c->hoff = sl_realloc(c->hoff, sizeof(*c->hoff) * (size_t)c->hoff_cap);
    }
    c->hoff[c->nhdr].name_off = c->hlen;
    c->hoff[c->nhdr].value_off = 0;
    c->nhdr++;
    c->in_value = 0;
  }
  sl__hbuf_append(c, at, n);
  return 0;
}

static int sl__on_header_field_complete(llhttp_t *p) {
  sl_http_conn_t *c = p->data;
  char nul = '\0';
  if (sl__count_header_bytes(c, 4) < 0) return -1; /* ": " and CRLF */
  /* llhttp takes a line that starts with ':' as a field with an empty
   * name.  A name is a token (RFC 9110), never empty; stored, it reached
   * the handler as a header without a name (fuzz_http). */
  size_t name_len = c->field_len;
  c->field_len = 0;
  if (name_len == 0) {
    c->error_status = 400;
    return -1;
  }
  if (c->headers_done) return 0;
  sl__hbuf_append(c, &nul, 1);
  if (c->nhdr > 0) c->hoff[c->nhdr - 1].value_off = c->hlen;
  return 0;
}

static int sl__on_header_value(llhttp_t *p, const char *at, size_t n) {
  sl_http_conn_t *c = p->data;
  if (sl__count_header_bytes(c, n) < 0) return -1;
  if (c->headers_done) return 0;
  c->in_value = 1;
  sl__hbuf_append(c, at, n);
  return 0;
}

static int sl__on_header_value_complete(llhttp_t *p) {
  sl_http_conn_t *c = p->data;
  char nul = '\0';
  if (c->headers_done) return 0;
  c->in_value = 1;
  sl__hbuf_append(c, &nul, 1);
  return 0;
}

static int sl__on_headers_complete(llhttp_t *p) {
  sl_http_conn_t *c = p->data;
  sl_http_server_t *s = c->server;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > s->limits.max_body_bytes) {
    c->error_status = 413;
    return -1;
  }
  if (c->nhdr > c->headers_cap) {
    c->headers_cap = c->nhdr;
    c->headers = sl_realloc(c->headers, sizeof(*c->headers) * (size_t)c->headers_cap);
  }
  for (int i = 0; i < c->nhdr; i++) {
    size_t voff = c->hoff[i].value_off; /* 0 (the empty string) if no value came */
    c->headers[i].name = c->hbuf + c->hoff[i].name_off;
    char *v = c->hbuf + voff;
    /* llhttp leaves trailing whitespace in values; trim it in place. */
    size_t vl = strlen(v);
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) v[--vl] = '\0';
    c->headers[i].value = v;
  }
  sl_http_req_t *r = &c->req;
  r->headers = c->headers;
  r->nheaders = c->nhdr;
  c->headers_done = 1;
  const char *expect = sl_http_req_header(r, "expect");
  if (expect != NULL && strcasecmp(expect, "100-continue") == 0) c->expect_continue = 1;
  if (c->expect_continue) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    (void)sl__write_static(c, cont, sizeof(cont) - 1);
  }
  return 0;
}

static int sl__on_body(llhttp_t *p, const char *at, size_t n) {
  sl_http_conn_t *c = p->data;
  size_t max = c->server->limits.max_body_bytes;
  if (c->body_len + n > max) {
    c->error_status = 413;
    return -1;
  }
  if (c->body_len + n + 1 > c->body_cap) {
    size_t cap = c->body_cap ? c->body_cap : 1024;
    while (c->body_len + n + 1 > cap) cap *= 2;
    c->body = sl_realloc(c->body, cap);
    c->body_cap = cap;
  }
  memcpy(c->body + c->body_len, at, n);
  c->body_len += n;
  return 0;
}

static int sl__on_message_complete(llhttp_t *p) {
  sl_http_conn_t *c = p->data;
  sl_http_req_t *r = &c->req;
  if (c->body == NULL) {
    c->body = sl_malloc(1024);
    c->body_cap = 1024;
  }
  c->body[c->body_len] = '\0';
  r->body = c->body;
  r->body_len = c->body_len;
  r->keep_alive = llhttp_should_keep_alive(p);
  r->method = p->method;
  r->method_name = c->hbuf + c->method_off;
  char *url = c->hbuf + c->url_off;
  char *q = strchr(url, '?');
  if (q != NULL) {
    *q = '\0';
    r->query = q + 1;
  } else {
    r->query = "";
  }
  r->path = url;
  return HPE_PAUSED;
}

static void sl__dispatch(sl_http_conn_t *c) {
  sl_http_server_t *s = c->server;
  sl_http_req_t *r = &c->req;
  c->state = SL_CONN_ACTIVE;
  s->nactive++;
  sl__conn_timer(c, 0);
  r->conn = c;
  r->server = s;
  r->data = NULL;
  r->on_drain = NULL;
  r->on_abort = NULL;
  r->on_written = NULL;
  c->above_high = 0;
  c->resp_headers[0] = '\0';
  sl_counter_inc(s->counters, SL_C_REQUESTS);
  s->handler(r, s->ud);
}

/* Parses what input there is, dispatching complete requests one at a time. */
static void sl__conn_process(sl_http_conn_t *c) {
  if (c->in_process) return;
  c->in_process = 1;
  sl_http_server_t *s = c->server;
  while (!c->closing && !c->shutting_down && c->state != SL_CONN_ACTIVE && c->in_len > 0) {
    if (c->state == SL_CONN_IDLE) {
      c->state = SL_CONN_READING;
      c->req.start_ns = uv_hrtime();
      sl__conn_timer(c, s->limits.header_timeout_ms);
    }
    c->error_status = 0;
    llhttp_errno_t err = llhttp_execute(&c->parser, c->in, c->in_len);
    if (err == HPE_OK) {
      c->in_len = 0;
      break;
    }
    if (err == HPE_PAUSED) {
      const char *pos = llhttp_get_error_pos(&c->parser);
      size_t used = (size_t)(pos - c->in);
      memmove(c->in, c->in + used, c->in_len - used);
      c->in_len -= used;
      llhttp_resume(&c->parser);
      sl__dispatch(c);
      continue;
    }
    if (c->error_status == 431) {
      sl__conn_error(c, 431,
                     c->headers_done ? "request trailer fields (after the chunked body) and headers exceed the header limit"
                                     : "request header fields exceed the limit",
                     "header_too_large");
    } else if (c->error_status == 413) {
      sl__conn_error(c, 413, "request body exceeds the limit", "body_too_large");
    } else if (c->error_status == 400) {
      sl__conn_error(c, 400, "malformed HTTP request: empty header field name", "bad_request");
    } else {
      char msg[160];
      const char *reason = llhttp_get_error_reason(&c->parser);
      snprintf(msg, sizeof(msg), "malformed HTTP request: %s", reason ? reason : llhttp_errno_name(err));
      /* keep the message JSON-safe: llhttp's reasons are plain ASCII, drop quotes anyway */
      for (char *m = msg; *m; m++)
        if (*m == '"' || *m == '\\' || (unsigned char)*m < 0x20) *m = ' ';
      sl__conn_error(c, 400, msg, "bad_request");
    }
    c->in_len = 0;
    break;
  }
  if (!c->closing && !c->shutting_down && c->state == SL_CONN_IDLE && c->in_len == 0) {
    /* Idle connections hold no input buffer. */
    if (c->in_cap > 4096) {
      sl_free(c->in);
      c->in = NULL;
      c->in_cap = 0;
    }
  }
  c->in_process = 0;
}

static void sl__on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  sl_http_conn_t *c = h->data;
  (void)suggested;
  buf->base = c->server->readbuf;
  buf->len = sizeof(c->server->readbuf);
}

static void sl__on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  sl_http_conn_t *c = stream->data;
  sl_http_server_t *s = c->server;
  if (nread == 0) return;
  if (nread < 0) {
    /* EOF or error: a request in progress or an active response is cut. */
    sl__conn_close(c);
    return;
  }
  size_t n = (size_t)nread;
  size_t keep_max = s->limits.max_header_bytes + s->limits.max_body_bytes + 65536;
  if (c->in_len + n > c->in_cap) {
    size_t cap = c->in_cap ? c->in_cap : 4096;
    while (c->in_len + n > cap) cap *= 2;
    c->in = sl_realloc(c->in, cap);
    c->in_cap = cap;
  }
  memcpy(c->in + c->in_len, buf->base, n);
  c->in_len += n;
  if (c->state == SL_CONN_ACTIVE) {
    /* Pipelined bytes wait for the current response; stop reading if a
     * client sends far more than one request could hold. */
    if (c->in_len > keep_max) {
      uv_read_stop(stream);
      c->reading = 0;
    }
    return;
  }
  sl__conn_process(c);
}

/* The handler finished its response. */
/* Frees a begun response's head that was never written. */
static void sl__head_drop(sl_http_conn_t *c) {
  sl_free(c->head);
  c->head = NULL;
  c->head_len = 0;
}

static void sl__request_done(sl_http_conn_t *c, int close) {
  sl_http_server_t *s = c->server;
  if (c->state != SL_CONN_ACTIVE) return;
  c->state = SL_CONN_IDLE;
  s->nactive--;
  sl__head_drop(c); /* a begun response that never wrote */
  c->req.on_abort = NULL;
  c->req.on_drain = NULL;
  c->req.on_written = NULL;
  c->req.data = NULL;
  if (close || !c->req.keep_alive || s->closing) {
    sl__conn_close_after_writes(c);
    return;
  }
  sl__conn_timer(c, s->limits.idle_timeout_ms);
  if (!c->reading && !c->closing) {
    if (uv_read_start((uv_stream_t *)&c->tcp, sl__on_alloc, sl__on_read) == 0) c->reading = 1;
  }
  if (c->in_len > 0) sl__conn_process(c);
}

/* ---- responses ---- */

int sl_http_respond(sl_http_req_t *req, int status, const char *content_type, const char *body,
                    size_t body_len, const char *extra_headers) {
  if (req->sink != NULL) {
    req->sink->respond(req, status, body, body_len);
    return 0;
  }
  sl_http_conn_t *c = req->conn;
  int close = !req->keep_alive;
  const char *extra = extra_headers ? extra_headers : "";
  size_t cap = 256 + strlen(c->resp_headers) + strlen(extra) + (content_type ? strlen(content_type) : 0) + body_len;
  char *out = sl_malloc(cap);
  int n = snprintf(out, cap,
                   "HTTP/1.1 %d %s\r\nServer: sluice\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s%s\r\n",
                   status, sl_http_status_text(status), content_type ? content_type : "text/plain",
                   body_len, c->resp_headers, extra, close ? "Connection: close\r\n" : "");
  int rc = 0;
  if (n < 0 || (size_t)n + body_len > cap) {
    sl_free(out);
    rc = SL_EINVAL;
  } else {
    if (body_len) memcpy(out + n, body, body_len);
    rc = sl__write_heap(c, out, (size_t)n + body_len);
  }
  sl__request_done(c, close || rc < 0);
  return rc;
}

/* The head of a chunked response in a heap buffer, or NULL. */
static char *sl__stream_head(sl_http_req_t *req, int status, const char *content_type, const char *extra_headers,
                             size_t *len) {
  sl_http_conn_t *c = req->conn;
  const char *extra = extra_headers ? extra_headers : "";
  size_t cap = 256 + strlen(c->resp_headers) + strlen(extra) + (content_type ? strlen(content_type) : 0);
  char *out = sl_malloc(cap);
  int n = snprintf(out, cap,
                   "HTTP/1.1 %d %s\r\nServer: sluice\r\nContent-Type: %s\r\n"
                   "Transfer-Encoding: chunked\r\n%s%s%s\r\n",
                   status, sl_http_status_text(status), content_type ? content_type : "text/plain",
                   c->resp_headers, extra, req->keep_alive ? "" : "Connection: close\r\n");
  if (n < 0 || (size_t)n >= cap) {
    sl_free(out);
    return NULL;
  }
  *len = (size_t)n;
  return out;
}

int sl_http_stream_start(sl_http_req_t *req, int status, const char *content_type,
                         const char *extra_headers) {
  if (req->sink != NULL) return req->sink->begin(req, status);
  sl_http_conn_t *c = req->conn;
  size_t n;
  char *out = sl__stream_head(req, status, content_type, extra_headers, &n);
  if (out == NULL) return SL_EINVAL;
  int rc = sl__write_heap(c, out, n);
  if (rc < 0) sl__request_done(c, 1);
  return rc;
}

int sl_http_stream_begin(sl_http_req_t *req, int status, const char *content_type, const char *extra_headers) {
  if (req->sink != NULL) return req->sink->begin(req, status);
  sl_http_conn_t *c = req->conn;
  if (c->closing || c->shutting_down) {
    sl__request_done(c, 1);
    return UV_ECANCELED;
  }
  size_t n;
  char *out = sl__stream_head(req, status, content_type, extra_headers, &n);
  if (out == NULL) return SL_EINVAL;
  sl__head_drop(c);
  c->head = out;
  c->head_len = n;
  return 0;
}

int sl_http_stream_writev(sl_http_req_t *req, const uv_buf_t *bufs, unsigned nbufs, sl_chunk_t *const *pins,
                          unsigned npins) {
  if (nbufs > SL_HTTP_WRITE_BUFS || npins > SL_HTTP_WRITE_PINS) return SL_EINVAL;
  if (req->sink != NULL) return req->sink->write(req, bufs, nbufs);
  sl_http_conn_t *c = req->conn;
  size_t total = 0;
  for (unsigned i = 0; i < nbufs; i++) total += bufs[i].len;
  if (total == 0) return 0; /* a zero-size chunk would end the body */
  sl_http_write_t *w = sl__write_get(c->server);
  /* libuv copies more than 4 buffers into a heap array when a write is
   * queued; short first and last buffers are copied into the write's own
   * prefix and suffix, so one event (3 buffers) stays at 3. */
  uv_buf_t out[SL_HTTP_WRITE_BUFS + 3];
  unsigned n = 0, first = 0, last = nbufs;
  size_t wire = 0;
  if (c->head != NULL) {
    /* The head waiting since sl_http_stream_begin goes in the same write;
     * the write owns it from here. */
    w->heap = c->head;
    out[n++] = uv_buf_init(c->head, (unsigned)c->head_len);
    wire += c->head_len;
    c->head = NULL;
    c->head_len = 0;
  }
  int plen = snprintf(w->prefix, sizeof(w->prefix), "%zx\r\n", total);
  if (nbufs > 0 && bufs[0].len <= sizeof(w->prefix) - (size_t)plen) {
    memcpy(w->prefix + plen, bufs[0].base, bufs[0].len);
    plen += (int)bufs[0].len;
    first = 1;
  }
  size_t slen = 0;
  if (last > first && bufs[last - 1].len + 2 <= sizeof(w->suffix)) {
    memcpy(w->suffix, bufs[last - 1].base, bufs[last - 1].len);
    slen = bufs[last - 1].len;
    last--;
  }
  w->suffix[slen++] = '\r';
  w->suffix[slen++] = '\n';
  out[n++] = uv_buf_init(w->prefix, (unsigned)plen);
  for (unsigned i = first; i < last; i++) out[n++] = bufs[i];
  out[n++] = uv_buf_init(w->suffix, (unsigned)slen);
  /* With nothing queued, write at once: when the kernel takes it all (the
   * usual case for a client that keeps up) there is no write request, no
   * callback, and nothing stays pinned.  Only what the kernel refused is
   * queued, referencing the caller's chunk. */
  wire += (size_t)plen + slen;
  for (unsigned i = first; i < last; i++) wire += bufs[i].len;
  if (c->writes_pending == 0 && !c->closing && !c->shutting_down) {
    int wrote = uv_try_write((uv_stream_t *)&c->tcp, out, n);
    if (wrote == (int)wire) {
      sl_counter_add(c->server->counters, SL_C_BYTES_TO_CLIENTS, wire);
      sl__write_put(c->server, w);
      return 0;
    }
    if (wrote < 0 && wrote != UV_EAGAIN) {
      sl__write_put(c->server, w);
      sl__request_done(c, 1);
      return wrote;
    }
    if (wrote > 0) {
      /* Skip what went out; the rest stays in the same buffers. */
      sl_counter_add(c->server->counters, SL_C_BYTES_TO_CLIENTS, (size_t)wrote);
      size_t skip = (size_t)wrote;
      unsigned k = 0;
      while (k < n && skip >= out[k].len) skip -= out[k++].len;
      for (unsigned j = k; j < n; j++) out[j - k] = out[j];
      n -= k;
      out[0].base += skip;
      out[0].len -= (unsigned)skip;
    }
  }
  for (unsigned i = 0; i < npins; i++) {
    sl_chunk_ref(pins[i]);
    w->pins[w->npins++] = pins[i];
  }
  int rc = sl__conn_write(c, w, out, n);
  if (rc < 0) {
    sl__write_put(c->server, w);
    sl__request_done(c, 1);
    return rc;
  }
  return 0;
}

int sl_http_stream_write(sl_http_req_t *req, const uv_buf_t *bufs, unsigned nbufs, sl_chunk_t *pin) {
  return sl_http_stream_writev(req, bufs, nbufs, &pin, pin != NULL ? 1 : 0);
}

void sl_http_stream_end(sl_http_req_t *req, int close) {
  if (req->sink != NULL) {
    req->sink->end(req, close);
    return;
  }
  sl_http_conn_t *c = req->conn;
  static const char last[] = "0\r\n\r\n";
  int rc = 0;
  if (c->head != NULL) { /* begun, nothing written: the head goes first */
    char *head = c->head;
    size_t len = c->head_len;
    c->head = NULL;
    c->head_len = 0;
    rc = sl__write_heap(c, head, len);
  }
  if (rc == 0) rc = sl__write_static(c, last, sizeof(last) - 1);
  sl__request_done(c, close || rc < 0);
}

int sl_http_raw_write(sl_http_req_t *req, const char *p, size_t n) {
  sl_http_conn_t *c = req->conn;
  if (n == 0) return 0;
  char *copy = sl_malloc(n);
  memcpy(copy, p, n);
  int rc = sl__write_heap(c, copy, n);
  if (rc < 0) sl__request_done(c, 1); /* the failed write freed the copy */
  return rc;
}

void sl_http_raw_end(sl_http_req_t *req) { sl__request_done(req->conn, 1); }

size_t sl_http_req_write_queue(const sl_http_req_t *req) {
  if (req->sink != NULL) return 0;
  return uv_stream_get_write_queue_size((const uv_stream_t *)&req->conn->tcp);
}

size_t sl_http_req_write_held(const sl_http_req_t *req) { return req->sink != NULL ? 0 : req->conn->held; }

int sl_http_req_over_high(sl_http_req_t *req, size_t extra) {
  if (req->sink != NULL) return req->sink->over_high(req, extra);
  sl_http_conn_t *c = req->conn;
  const sl_http_limits_t *lim = &c->server->limits;
  /* held >= the write queue always, so held alone is the test.  A write
   * must be pending for on_drain to come: extra bytes alone (nothing
   * queued) cannot drain by writing and do not count as over. */
  if (c->held + extra <= lim->write_high_watermark || c->held <= lim->write_low_watermark) return 0;
  c->above_high = 1;
  return 1;
}

/* ---- server ---- */

static void sl__reject_closed(uv_handle_t *h) { sl_free(h); }

static void sl__on_connection(uv_stream_t *listener, int status) {
  sl_http_server_t *s = listener->data;
  if (status < 0) return;
  if (s->nconns >= s->limits.max_connections) {
    /* Over the limit: answer 503 on a throwaway handle and close. */
    uv_tcp_t *t = sl_malloc(sizeof(*t));
    uv_tcp_init(s->loop, t);
    if (uv_accept(listener, (uv_stream_t *)t) == 0) {
      static const char body[] =
          "{\"error\":{\"message\":\"too many open connections\",\"type\":\"server_error\",\"code\":\"busy\"}}";
      char busy[384];
      int n = snprintf(busy, sizeof(busy),
                       "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                       "Content-Length: %zu\r\nConnection: close\r\nRetry-After: 1\r\n\r\n%s",
                       sizeof(body) - 1, body);
      uv_buf_t b = uv_buf_init(busy, (unsigned)n);
      uv_try_write((uv_stream_t *)t, &b, 1); /* best effort: the socket is fresh */
      /* Closing with unread bytes makes the kernel send a reset instead of
       * a FIN, and a client that gets the reset before reading may lose the
       * 503: so what the client sent already is read and dropped first. */
      uv_os_fd_t fd;
      if (uv_fileno((uv_handle_t *)t, &fd) == 0) {
        char sink[4096];
        for (int i = 0; i < 16 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++) {
        }
      }
    }
    uv_close((uv_handle_t *)t, sl__reject_closed);
    return;
  }
  sl_http_conn_t *c = sl_calloc(1, sizeof(*c));
  c->server = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->handles = 2;
  c->tcp.data = c;
  c->timer.data = c;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  sl_counter_inc(s->counters, SL_C_CONNECTIONS_ACTIVE);
  sl_counter_inc(s->counters, SL_C_CONNECTIONS_ACCEPTED);
  s->accepted++;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    sl__conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
  c->parser.data = c;
  c->state = SL_CONN_IDLE;
  /* A new connection gets the header timeout for its first request. */
  sl__conn_timer(c, s->limits.header_timeout_ms);
  if (uv_read_start((uv_stream_t *)&c->tcp, sl__on_alloc, sl__on_read) == 0) c->reading = 1;
}

/* The parser callbacks every connection of a server shares (also what
 * tests/fuzz/fuzz_http.c, which includes this file, drives). */
static void sl__settings_init(llhttp_settings_t *st) {
  llhttp_settings_init(st);
  st->on_message_begin = sl__on_message_begin;
  st->on_method = sl__on_method;
  st->on_method_complete = sl__on_method_complete;
  st->on_url = sl__on_url;
  st->on_url_complete = sl__on_url_complete;
  st->on_header_field = sl__on_header_field;
  st->on_header_field_complete = sl__on_header_field_complete;
  st->on_header_value = sl__on_header_value;
  st->on_header_value_complete = sl__on_header_value_complete;
  st->on_headers_complete = sl__on_headers_complete;
  st->on_body = sl__on_body;
  st->on_message_complete = sl__on_message_complete;
}

/* Binds a TCP socket to addr with SO_REUSEPORT (and SO_REUSEADDR) set
 * before bind, for a listener that shares its port with other processes'
 * (libuv 1.44 has no flag for it), and hands it to the listener handle.
 * Returns 0 or a negative libuv code; on failure the socket is closed. */
static int sl__bind_reuseport(uv_tcp_t *listener, const struct sockaddr *addr) {
  int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return uv_translate_sys_error(errno);
  int one = 1;
  socklen_t len = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  int rc = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 || bind(fd, addr, len) < 0)
    rc = uv_translate_sys_error(errno);
  if (rc == 0) rc = uv_tcp_open(listener, fd);
  if (rc < 0) close(fd);
  return rc;
}

int sl_http_server_init(sl_http_server_t **out, uv_loop_t *loop, const char *host, int port,
                        const sl_http_limits_t *limits, sl_http_handler_cb handler, void *ud) {
  return sl_http_server_init_flags(out, loop, host, port, limits, 0, handler, ud);
}

int sl_http_server_init_flags(sl_http_server_t **out, uv_loop_t *loop, const char *host, int port,
                              const sl_http_limits_t *limits, unsigned flags, sl_http_handler_cb handler,
                              void *ud) {
  struct sockaddr_storage addr;
  int rc;
  if (strchr(host, ':') != NULL)
    rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
  else
    rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
  if (rc < 0) return rc;
  sl_http_server_t *s = sl_calloc(1, sizeof(*s));
  s->loop = loop;
  if (limits)
    s->limits = *limits;
  else
    sl_http_limits_default(&s->limits);
  s->handler = handler;
  s->ud = ud;
  sl__settings_init(&s->settings);
  uv_tcp_init(loop, &s->listener);
  s->listener.data = s;
  s->listening = 1;
  if (flags & SL_HTTP_REUSEPORT)
    rc = sl__bind_reuseport(&s->listener, (struct sockaddr *)&addr);
  else
    rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 1024, sl__on_connection);
  if (rc < 0) {
    /* Close the listener and free the server once libuv lets go of it. */
    s->closing = 1;
    s->close_cb = NULL;
    s->listening = 0;
    uv_close((uv_handle_t *)&s->listener, (uv_close_cb)sl_free);
    return rc;
  }
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
  s->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&bound)->sin_port);
  *out = s;
  return 0;
}

void sl_http_server_set_counters(sl_http_server_t *s, sl_counters_t *counters) { s->counters = counters; }

void *sl_http_server_ud(const sl_http_server_t *s) { return s->ud; }
int sl_http_server_port(const sl_http_server_t *s) { return s->port; }
int sl_http_server_connections(const sl_http_server_t *s) { return s->nconns; }
int sl_http_server_active_requests(const sl_http_server_t *s) { return s->nactive; }
uint64_t sl_http_server_accepted(const sl_http_server_t *s) { return s->accepted; }

static void sl__on_listener_closed(uv_handle_t *h) {
  sl_http_server_t *s = h->data;
  s->listening = 0;
  sl__server_maybe_done(s);
}

void sl_http_server_stop_accepting(sl_http_server_t *s) {
  if (s->listening && !uv_is_closing((uv_handle_t *)&s->listener))
    uv_close((uv_handle_t *)&s->listener, sl__on_listener_closed);
}

static void sl__server_maybe_done(sl_http_server_t *s) {
  if (!s->closing || s->listening || s->nconns > 0) return;
  while (s->free_writes) {
    sl_http_write_t *w = s->free_writes;
    s->free_writes = w->next;
    sl_free(w);
  }
  void (*cb)(void *) = s->close_cb;
  void *ud = s->close_ud;
  sl_free(s);
  if (cb) cb(ud);
}

void sl_http_server_close(sl_http_server_t *s, void (*cb)(void *ud), void *ud) {
  s->closing = 1;
  s->close_cb = cb;
  s->close_ud = ud;
  sl_http_server_stop_accepting(s);
  sl_http_conn_t *c = s->conns;
  while (c != NULL) {
    sl_http_conn_t *next = c->next;
    sl__conn_close(c);
    c = next;
  }
  /* A listener or connection still closing finishes the job from its close
   * callback.  But the listener may have closed long ago (stop_accepting
   * when a drain began) with no connection left open: then nothing else
   * would, and the server would never be freed nor cb called. */
  sl__server_maybe_done(s);
}
