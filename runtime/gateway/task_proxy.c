/* task_proxy.c: relaying a task request to the worker that owns the task
 * (see task_proxy.h).
 *
 * One relay is one uv_tcp_t to the owner and the client's request; it
 * lives until both are done.  The owner's answer is copied into the
 * client's connection (sl_http_raw_write): a copy per read of the owner's
 * socket, which only a task stream through the wrong worker pays.  The
 * head is held until its end so that the worker lines can be rewritten.
 */
#include "runtime/gateway/task_proxy.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "runtime/base/alloc.h"
#include "runtime/gateway/view.h"
#include "runtime/stream/reply.h"

#define SL__HEAD_MAX 8192

typedef struct {
  sl_http_req_t *req;        /* the client's request; NULL once it ended or left */
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_write_t write;
  char *out;                 /* the request as sent to the owner */
  size_t out_len;
  int me, owner;
  int tcp_open;              /* tcp is not closing */
  int reading;               /* uv_read_start in effect */
  int got;                   /* bytes came from the owner */
  int head_done;             /* the head went to the client */
  size_t head_len;
  char head[SL__HEAD_MAX];
  char rbuf[65536];
} sl__proxy_t;

static void sl__closed(uv_handle_t *h) {
  sl__proxy_t *p = h->data;
  sl_free(p->out);
  sl_free(p);
}

/* The relay is over: the owner's socket closes, and the client's request
 * (if still there) is ended. */
static void sl__done(sl__proxy_t *p, int status, const char *msg) {
  sl_http_req_t *req = p->req;
  p->req = NULL;
  if (req != NULL) {
    req->on_abort = req->on_drain = NULL;
    req->data = NULL;
    if (!p->got) {
      char extra[64];
      snprintf(extra, sizeof(extra), "X-Sluice-Task-Worker: %d\r\n", p->owner);
      sl_reply_error(req, status, "server_error", "task_worker_unreachable", extra, "%s", msg);
    } else {
      if (!p->head_done && p->head_len > 0) (void)sl_http_raw_write(req, p->head, p->head_len);
      sl_http_raw_end(req);
    }
  }
  if (p->tcp_open) {
    p->tcp_open = 0;
    uv_close((uv_handle_t *)&p->tcp, sl__closed);
  }
}

static void sl__client_abort(sl_http_req_t *req) {
  sl__proxy_t *p = req->data;
  p->req = NULL;
  sl__done(p, 0, NULL);
}

static void sl__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  sl__proxy_t *p = h->data;
  (void)suggested;
  *buf = uv_buf_init(p->rbuf, sizeof(p->rbuf));
}

static void sl__on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void sl__client_drain(sl_http_req_t *req) {
  sl__proxy_t *p = req->data;
  if (p->tcp_open && !p->reading && uv_read_start((uv_stream_t *)&p->tcp, sl__alloc, sl__on_read) == 0)
    p->reading = 1;
}

/* The head, rewritten: the owner's X-Sluice-Worker line out, the two
 * worker lines in before the blank line. */
static int sl__send_head(sl__proxy_t *p, size_t end) {
  char out[SL__HEAD_MAX + 128];
  size_t o = 0;
  const char *h = p->head, *stop = p->head + end - 2; /* before the blank line's CRLF */
  while (h < stop) {
    const char *nl = memchr(h, '\n', (size_t)(stop - h));
    const char *next = nl ? nl + 1 : stop;
    if (!(next - h > 16 && strncasecmp(h, "X-Sluice-Worker:", 16) == 0)) {
      memcpy(out + o, h, (size_t)(next - h));
      o += (size_t)(next - h);
    }
    h = next;
  }
  o += (size_t)snprintf(out + o, sizeof(out) - o, "X-Sluice-Worker: %d\r\nX-Sluice-Task-Worker: %d\r\n\r\n", p->me,
                        p->owner);
  p->head_done = 1;
  return sl_http_raw_write(p->req, out, o);
}

static void sl__on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  sl__proxy_t *p = s->data;
  if (n == 0) return;
  if (n < 0 || p->req == NULL) {
    sl__done(p, 502, "the worker that owns the task closed the connection before answering");
    return;
  }
  p->got = 1;
  const char *b = buf->base;
  size_t len = (size_t)n;
  if (!p->head_done) {
    size_t take = len < SL__HEAD_MAX - p->head_len ? len : SL__HEAD_MAX - p->head_len;
    memcpy(p->head + p->head_len, b, take);
    size_t old = p->head_len;
    p->head_len += take;
    const char *e = NULL;
    for (size_t i = old > 3 ? old - 3 : 0; i + 3 < p->head_len; i++)
      if (memcmp(p->head + i, "\r\n\r\n", 4) == 0) {
        e = p->head + i + 4;
        break;
      }
    if (e == NULL) {
      if (p->head_len < SL__HEAD_MAX) return;
      /* A head this long is passed on as it is. */
      p->head_done = 1;
      if (sl_http_raw_write(p->req, p->head, p->head_len) < 0) goto gone;
      b += take;
      len -= take;
    } else {
      size_t hl = (size_t)(e - p->head);
      if (sl__send_head(p, hl) < 0) goto gone;
      /* What came after the head in this read. */
      size_t used = hl - old;
      b += used;
      len -= used;
    }
  }
  if (len > 0 && sl_http_raw_write(p->req, b, len) < 0) goto gone;
  if (sl_http_req_over_high(p->req, 0)) {
    uv_read_stop(s);
    p->reading = 0;
  }
  return;
gone:
  p->req = NULL; /* the server ended the request */
  sl__done(p, 0, NULL);
}

static void sl__on_write(uv_write_t *w, int status) {
  sl__proxy_t *p = w->data;
  if (status < 0 && p->tcp_open) sl__done(p, 502, "the request could not be sent to the worker that owns the task");
}

static void sl__on_connect(uv_connect_t *c, int status) {
  sl__proxy_t *p = c->data;
  if (!p->tcp_open) return;
  if (status < 0) {
    char msg[160];
    snprintf(msg, sizeof(msg), "worker %d, which owns the task, cannot be reached: %s", p->owner, uv_strerror(status));
    sl__done(p, 502, msg);
    return;
  }
  uv_buf_t b = uv_buf_init(p->out, (unsigned)p->out_len);
  p->write.data = p;
  if (uv_write(&p->write, (uv_stream_t *)&p->tcp, &b, 1, sl__on_write) < 0 ||
      uv_read_start((uv_stream_t *)&p->tcp, sl__alloc, sl__on_read) < 0) {
    sl__done(p, 502, "the request could not be sent to the worker that owns the task");
    return;
  }
  p->reading = 1;
}

/* The client's request as the owner gets it. */
static char *sl__request_bytes(const sl_http_req_t *req, int me, size_t *len) {
  size_t cap = 256 + strlen(req->path) + strlen(req->query) + req->body_len;
  for (int i = 0; i < req->nheaders; i++) cap += strlen(req->headers[i].name) + strlen(req->headers[i].value) + 4;
  char *out = sl_malloc(cap);
  size_t n = (size_t)snprintf(out, cap, "%s %s%s%s HTTP/1.1\r\nHost: 127.0.0.1\r\n", req->method_name, req->path,
                              req->query[0] ? "?" : "", req->query);
  static const char *const skip[] = {"host", "connection", "content-length", "transfer-encoding", "keep-alive",
                                     "x-sluice-relayed-from", "expect", NULL};
  for (int i = 0; i < req->nheaders; i++) {
    int drop = 0;
    for (int k = 0; skip[k] && !drop; k++) drop = strcasecmp(req->headers[i].name, skip[k]) == 0;
    if (!drop) n += (size_t)snprintf(out + n, cap - n, "%s: %s\r\n", req->headers[i].name, req->headers[i].value);
  }
  n += (size_t)snprintf(out + n, cap - n, "X-Sluice-Relayed-From: %d\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n",
                        me, req->body_len);
  memcpy(out + n, req->body, req->body_len);
  *len = n + req->body_len;
  return out;
}

void sl_task_proxy(sl_gateway_t *gw, sl_http_req_t *req, int owner) {
  int port = 0, n = sl_view_nworkers(gw->view);
  sl_view_worker_t *w = sl_calloc((size_t)n, sizeof(*w));
  sl_counters_t sum;
  int k = sl_view_instance(gw->view, &sum, w, n);
  for (int i = 0; i < k; i++)
    if (w[i].worker == owner && w[i].up) port = w[i].task_port;
  sl_free(w);
  if (port <= 0) {
    char extra[80];
    snprintf(extra, sizeof(extra), "Retry-After: 1\r\nX-Sluice-Task-Worker: %d\r\n", owner);
    sl_reply_error(req, 503, "service_unavailable", "task_worker_down", extra,
                   "worker %d, which owns the task, is not up", owner);
    return;
  }
  sl__proxy_t *p = sl_calloc(1, sizeof(*p));
  p->req = req;
  p->me = gw->worker;
  p->owner = owner;
  p->out = sl__request_bytes(req, gw->worker, &p->out_len);
  uv_tcp_init(gw->loop, &p->tcp);
  p->tcp.data = p;
  p->tcp_open = 1;
  p->connect.data = p;
  req->data = p;
  req->on_abort = sl__client_abort;
  req->on_drain = sl__client_drain;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  int rc = uv_tcp_connect(&p->connect, &p->tcp, (const struct sockaddr *)&a, sl__on_connect);
  if (rc < 0) sl__done(p, 502, "the worker that owns the task cannot be reached");
}

int sl_task_listener_open(sl_gateway_t *gw, sl_http_handler_cb handler) {
  int rc = sl_http_server_init(&gw->task_http, gw->loop, "127.0.0.1", 0, &gw->cfg->http, handler, gw);
  if (rc < 0) {
    gw->task_http = NULL;
    return rc;
  }
  /* No counters: what comes here came through a sibling's port, and
   * that worker counted it. */
  sl_view_set_task_port(gw->view, sl_http_server_port(gw->task_http));
  /* The gateway's first publication, at the end of its open, carries it. */
  return 0;
}
