/* trace.c: the OTLP/HTTP trace exporter (see trace.h).
 *
 * A record is copied once, at the stream's end, into one allocation (the
 * struct, then its strings).  The queue is a ring of those.  An export
 * takes up to SL_TRACE_BATCH records off the ring, builds the JSON with
 * cJSON on the libuv thread pool (a batch's JSON is a few hundred KB, and
 * building it on the loop delayed every stream's tokens by as long:
 * docs/operations.md, "What metrics and traces cost"), frees the records
 * back on the loop, and sends "POST path" with Connection: close on a new
 * TCP connection; llhttp reads the answer's status.  Everything the
 * export owns (the batch, the TCP handle, the request bytes) lives in the
 * tracer, since there is at most one.  From uv_queue_work until its
 * after-work callback the worker owns the batch and `body`; the loop
 * touches neither. */
#include "runtime/gateway/trace.h"

#include <cjson/cJSON.h>
#include <llhttp.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/base/version.h"

/* A queued record: the relay's record with its strings copied after it. */
typedef struct {
  sl_trace_rec_t r;
  int nspans;
  char strs[];
} sl__trec_t;

struct sl_tracer_s {
  uv_loop_t *loop;
  const sl_config_t *cfg;
  sl_counters_t *counters;
  const sl_narrator_t *nar;  /* redacts what may quote a secret */
  FILE *log;
  /* The receiver. */
  struct sockaddr_storage addr;
  char hostport[300];        /* the Host header */
  char path[512];
  /* The queue: a ring of cap records. */
  sl__trec_t **ring;
  int cap, head, n;
  /* Handles. */
  uv_timer_t tick;           /* every batch_ms (restarted at 0 when a batch is waiting) */
  uv_timer_t deadline;       /* the export in flight's */
  uv_tcp_t tcp;              /* the export in flight's connection */
  uv_connect_t connect_req;
  uv_write_t write_req;
  int tcp_open;              /* tcp is initialised and not yet closed */
  /* The batch being encoded on the thread pool. */
  uv_work_t work;
  int encoding;              /* work is queued or running */
  sl__trec_t *batch[SL_TRACE_BATCH];
  int nbatch;
  char *body;                /* the worker's JSON (cJSON_free), NULL if it could not build it */
  /* The export in flight. */
  int over;                  /* it ended (callbacks still due are ignored) */
  char *req;                 /* its bytes (head and body) */
  size_t req_len;
  int nspans;
  llhttp_t parser;
  llhttp_settings_t settings;
  int answered;              /* the whole answer arrived */
  char rbuf[4096];
  int failing;               /* the last export failed (the next failure is not logged) */
  /* Closing. */
  int flushing;              /* sl_tracer_close waits for the queue to be sent (tick is its deadline) */
  int closing;
  int pending;
  void (*close_cb)(void *);
  void *close_ud;
};

/* ---- the receiver's address ---- */

/* "http://host[:port][/path]" into t; the host is resolved now. */
static int sl__parse_endpoint(sl_tracer_t *t, const char *url, char *err, size_t errlen) {
  const char *p = url + 7; /* config.c checked the scheme */
  const char *slash = strchr(p, '/');
  size_t alen = slash ? (size_t)(slash - p) : strlen(p);
  char auth[300], host[256];
  int port = 80;
  if (strncmp(url, "http://", 7) != 0 || alen == 0 || alen >= sizeof(auth)) {
    snprintf(err, errlen, "tracing.endpoint: \"%s\" is not an http://host[:port]/path URL", url);
    return SL_EINVAL;
  }
  memcpy(auth, p, alen);
  auth[alen] = '\0';
  int has_port = auth[0] == '[' ? strstr(auth, "]:") != NULL : strchr(auth, ':') != NULL;
  if (has_port) {
    if (sl_parse_hostport(auth, host, sizeof(host), &port) < 0 || port == 0) {
      snprintf(err, errlen, "tracing.endpoint: \"%s\" has no valid host:port", url);
      return SL_EINVAL;
    }
  } else {
    int v6 = auth[0] == '[' && auth[alen - 1] == ']';
    snprintf(host, sizeof(host), "%.*s", (int)(v6 ? alen - 2 : alen), v6 ? auth + 1 : auth);
  }
  snprintf(t->hostport, sizeof(t->hostport), "%s", auth);
  if (snprintf(t->path, sizeof(t->path), "%s", slash ? slash : "/") >= (int)sizeof(t->path)) {
    snprintf(err, errlen, "tracing.endpoint: the path is too long");
    return SL_EINVAL;
  }
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  char ps[16];
  snprintf(ps, sizeof(ps), "%d", port);
  int rc = getaddrinfo(host, ps, &hints, &res);
  if (rc != 0 || res == NULL) {
    snprintf(err, errlen, "tracing.endpoint: cannot resolve \"%s\": %s", host, gai_strerror(rc));
    return SL_EINVAL;
  }
  memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  return 0;
}

/* ---- records ---- */

static size_t sl__slen(const char *s) { return s ? strlen(s) + 1 : 0; }

/* Copies s to *pos and returns the copy (NULL stays NULL). */
static const char *sl__scopy(char **pos, const char *s) {
  if (s == NULL) return NULL;
  size_t n = strlen(s) + 1;
  char *d = *pos;
  memcpy(d, s, n);
  *pos += n;
  return d;
}

static int sl__nspans(const sl_trace_rec_t *r) {
  int n = 1 + (r->t_queue_start != 0) + (r->t_first_token != 0);
  for (int i = 0; i < r->nattempts; i++) n += 1 + (r->attempts[i].t_sent != 0);
  return n;
}

/* A copy of r, with the strings that may quote a client or an engine
 * (the request id, the error text) redacted as log lines are. */
static sl__trec_t *sl__copy(const sl_tracer_t *t, const sl_trace_rec_t *r0) {
  char rid[SL_REQUEST_ID_MAX + 64], error[512];
  sl_trace_rec_t red = *r0;
  const sl_trace_rec_t *r = &red;
  if (red.request_id) red.request_id = sl_log_redact(t->nar, red.request_id, rid, sizeof(rid));
  if (red.error) red.error = sl_log_redact(t->nar, red.error, error, sizeof(error));
  int na = r->nattempts < SL_TRACE_ATTEMPTS ? r->nattempts : SL_TRACE_ATTEMPTS;
  size_t len = sl__slen(r->request_id) + sl__slen(r->model) + sl__slen(r->operation) + sl__slen(r->tenant) +
               sl__slen(r->end_reason) + sl__slen(r->error) + sl__slen(r->finish_reason);
  for (int i = 0; i < na; i++)
    len += sl__slen(r->attempts[i].endpoint) + sl__slen(r->attempts[i].pool) + sl__slen(r->attempts[i].outcome);
  sl__trec_t *c = sl_malloc(sizeof(*c) + len);
  c->r = *r;
  c->r.nattempts = na;
  char *pos = c->strs;
  c->r.request_id = sl__scopy(&pos, r->request_id);
  c->r.model = sl__scopy(&pos, r->model);
  c->r.operation = sl__scopy(&pos, r->operation);
  c->r.tenant = sl__scopy(&pos, r->tenant);
  c->r.end_reason = sl__scopy(&pos, r->end_reason);
  c->r.error = sl__scopy(&pos, r->error);
  c->r.finish_reason = sl__scopy(&pos, r->finish_reason);
  for (int i = 0; i < na; i++) {
    sl_trace_attempt_t *a = &c->r.attempts[i];
    a->endpoint = sl__scopy(&pos, r->attempts[i].endpoint);
    a->pool = sl__scopy(&pos, r->attempts[i].pool);
    a->outcome = sl__scopy(&pos, r->attempts[i].outcome);
  }
  c->nspans = sl__nspans(&c->r);
  return c;
}

static sl__trec_t *sl__pop(sl_tracer_t *t) {
  if (t->n == 0) return NULL;
  sl__trec_t *c = t->ring[t->head];
  t->ring[t->head] = NULL;
  t->head = (t->head + 1) % t->cap;
  t->n--;
  return c;
}

/* ---- OTLP JSON ---- */

static void sl__hex(char *out, const uint8_t *p, size_t n) {
  static const char d[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = d[p[i] >> 4];
    out[2 * i + 1] = d[p[i] & 15];
  }
  out[2 * n] = '\0';
}

static int sl__zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

static void sl__add_hex(cJSON *o, const char *key, const uint8_t *p, size_t n) {
  char s[33];
  sl__hex(s, p, n);
  cJSON_AddStringToObject(o, key, s);
}

/* OTLP/JSON writes 64-bit integers as decimal strings. */
static void sl__add_u64(cJSON *o, const char *key, uint64_t v) {
  char s[24];
  snprintf(s, sizeof(s), "%llu", (unsigned long long)v);
  cJSON_AddStringToObject(o, key, s);
}

static cJSON *sl__attr(cJSON *attrs, const char *key) {
  cJSON *a = cJSON_CreateObject();
  cJSON_AddStringToObject(a, "key", key);
  cJSON_AddItemToArray(attrs, a);
  return cJSON_AddObjectToObject(a, "value");
}

static void sl__attr_str(cJSON *attrs, const char *key, const char *v) {
  if (v != NULL) cJSON_AddStringToObject(sl__attr(attrs, key), "stringValue", v);
}

static void sl__attr_int(cJSON *attrs, const char *key, int64_t v) {
  char s[24];
  snprintf(s, sizeof(s), "%lld", (long long)v);
  cJSON_AddStringToObject(sl__attr(attrs, key), "intValue", s);
}

static void sl__attr_strs1(cJSON *attrs, const char *key, const char *v) {
  cJSON *vals = cJSON_AddArrayToObject(cJSON_AddObjectToObject(sl__attr(attrs, key), "arrayValue"), "values");
  cJSON *one = cJSON_CreateObject();
  cJSON_AddStringToObject(one, "stringValue", v);
  cJSON_AddItemToArray(vals, one);
}

enum { SL__KIND_INTERNAL = 1, SL__KIND_SERVER = 2, SL__KIND_CLIENT = 3 };

/* One span of r's trace, under parent (NULL: a root); returns its
 * attributes array. */
static cJSON *sl__span(cJSON *spans, const sl_trace_rec_t *r, const uint8_t *id, const uint8_t *parent,
                       const char *name, int kind, uint64_t start, uint64_t end, cJSON **span_out) {
  cJSON *s = cJSON_CreateObject();
  sl__add_hex(s, "traceId", r->trace_id, 16);
  sl__add_hex(s, "spanId", id, 8);
  if (parent != NULL) sl__add_hex(s, "parentSpanId", parent, 8);
  cJSON_AddStringToObject(s, "name", name);
  cJSON_AddNumberToObject(s, "kind", kind);
  sl__add_u64(s, "startTimeUnixNano", start);
  sl__add_u64(s, "endTimeUnixNano", end >= start ? end : start);
  cJSON_AddItemToArray(spans, s);
  if (span_out) *span_out = s;
  return cJSON_AddArrayToObject(s, "attributes");
}

/* A child's end, within its request's: the last attempt is closed as the
 * record is handed over, a moment after the request's end. */
static uint64_t sl__in(const sl_trace_rec_t *r, uint64_t t) { return r->t_end && t > r->t_end ? r->t_end : t; }

static void sl__span_error(cJSON *span, const char *msg) {
  cJSON *st = cJSON_AddObjectToObject(span, "status");
  cJSON_AddNumberToObject(st, "code", 2); /* STATUS_CODE_ERROR */
  if (msg && msg[0]) cJSON_AddStringToObject(st, "message", msg);
}

/* A request that ended this way did not fail: it completed, the client
 * left, or a guard ended it on purpose. */
static int sl__ok_end(const char *reason) {
  return reason == NULL || strcmp(reason, "complete") == 0 || strcmp(reason, "client_cancel") == 0 ||
         (strncmp(reason, "guard_", 6) == 0 && strcmp(reason, "guard_setup") != 0);
}

static void sl__attempt_spans(cJSON *spans, const sl_trace_rec_t *r, int i, const char *name) {
  const sl_trace_attempt_t *a = &r->attempts[i];
  int failed = a->outcome && strcmp(a->outcome, "ok") != 0 && strcmp(a->outcome, "cancelled") != 0;
  cJSON *span;
  cJSON *at = sl__span(spans, r, a->place_span, r->request_span, "placement", SL__KIND_INTERNAL, a->t_place,
                       sl__in(r, a->t_sent ? a->t_sent : a->t_end), &span);
  sl__attr_str(at, "sluice.pool", a->pool);
  sl__attr_str(at, "sluice.endpoint", a->endpoint);
  sl__attr_int(at, "sluice.attempt", i + 1);
  if (a->t_sent == 0) { /* the request never went out: the attempt failed here */
    if (failed) {
      sl__attr_str(at, "error.type", a->outcome);
      sl__span_error(span, a->outcome);
    }
    return;
  }
  at = sl__span(spans, r, a->span, r->request_span, name, SL__KIND_CLIENT, a->t_sent, sl__in(r, a->t_end), &span);
  sl__attr_str(at, "gen_ai.operation.name", r->operation);
  sl__attr_str(at, "gen_ai.request.model", r->model);
  if (a->endpoint) {
    const char *colon = strrchr(a->endpoint, ':');
    char host[256];
    snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - a->endpoint) : (int)strlen(a->endpoint),
             a->endpoint);
    sl__attr_str(at, "server.address", host);
    if (colon) sl__attr_int(at, "server.port", strtol(colon + 1, NULL, 10));
  }
  if (a->http_status) sl__attr_int(at, "http.response.status_code", a->http_status);
  sl__attr_str(at, "sluice.pool", a->pool);
  sl__attr_int(at, "sluice.attempt", i + 1);
  sl__attr_str(at, "sluice.outcome", a->outcome);
  if (failed) {
    char msg[64];
    if (a->http_status) snprintf(msg, sizeof(msg), "%d", a->http_status);
    sl__attr_str(at, "error.type", a->http_status && strcmp(a->outcome, "http_status") == 0 ? msg : a->outcome);
    sl__span_error(span, a->outcome);
  }
}

/* The spans of one stream. */
static void sl__rec_spans(cJSON *spans, const sl_trace_rec_t *r) {
  char name[320];
  snprintf(name, sizeof(name), "%s %s", r->operation ? r->operation : "chat", r->model ? r->model : "");
  cJSON *span;
  cJSON *at = sl__span(spans, r, r->request_span, sl__zero(r->parent, 8) ? NULL : r->parent, name,
                       SL__KIND_SERVER, r->t_start, r->t_end, &span);
  sl__attr_str(at, "gen_ai.operation.name", r->operation);
  sl__attr_str(at, "gen_ai.request.model", r->model);
  if (r->max_tokens > 0) sl__attr_int(at, "gen_ai.request.max_tokens", r->max_tokens);
  if (r->prompt_tokens >= 0) sl__attr_int(at, "gen_ai.usage.input_tokens", r->prompt_tokens);
  if (r->completion_tokens >= 0) sl__attr_int(at, "gen_ai.usage.output_tokens", r->completion_tokens);
  if (r->finish_reason) sl__attr_strs1(at, "gen_ai.response.finish_reasons", r->finish_reason);
  sl__attr_str(at, "sluice.request_id", r->request_id);
  sl__attr_str(at, "sluice.end_reason", r->end_reason);
  sl__attr_str(at, "sluice.tenant", r->tenant);
  sl__attr_int(at, "sluice.attempts", r->nattempts);
  if (!sl__ok_end(r->end_reason)) {
    sl__attr_str(at, "error.type", r->end_reason);
    sl__span_error(span, r->error && r->error[0] ? r->error : r->end_reason);
  }
  if (r->t_queue_start)
    sl__span(spans, r, r->queue_span, r->request_span, "queue", SL__KIND_INTERNAL, r->t_queue_start,
             sl__in(r, r->t_queue_end), NULL);
  for (int i = 0; i < r->nattempts; i++) sl__attempt_spans(spans, r, i, name);
  if (r->t_first_token) {
    at = sl__span(spans, r, r->stream_span, r->request_span, "stream", SL__KIND_INTERNAL, r->t_first_token,
                  r->t_end, NULL);
    if (r->completion_tokens >= 0) sl__attr_int(at, "gen_ai.usage.output_tokens", r->completion_tokens);
  }
}

/* An ExportTraceServiceRequest of the batch's records, on a worker
 * thread: reads only the batch and the configuration.  cJSON_free it. */
static char *sl__encode(const sl_tracer_t *t) {
  cJSON *root = cJSON_CreateObject();
  cJSON *rs = cJSON_CreateObject();
  cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "resourceSpans"), rs);
  cJSON *rattrs = cJSON_AddArrayToObject(cJSON_AddObjectToObject(rs, "resource"), "attributes");
  sl__attr_str(rattrs, "service.name", t->cfg->trace_service);
  sl__attr_str(rattrs, "service.version", sl_ffi_version());
  cJSON *ss = cJSON_CreateObject();
  cJSON_AddItemToArray(cJSON_AddArrayToObject(rs, "scopeSpans"), ss);
  cJSON *scope = cJSON_AddObjectToObject(ss, "scope");
  cJSON_AddStringToObject(scope, "name", "sluice");
  cJSON_AddStringToObject(scope, "version", sl_ffi_version());
  cJSON *spans = cJSON_AddArrayToObject(ss, "spans");
  for (int k = 0; k < t->nbatch; k++) sl__rec_spans(spans, &t->batch[k]->r);
  char *s = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return s;
}

/* ---- the export ---- */

static void sl__kick(sl_tracer_t *t);
static void sl__export(sl_tracer_t *t);
static void sl__close_now(sl_tracer_t *t);

/* While flushing, an export ended: the next one, or the close. */
static void sl__flush_next(sl_tracer_t *t) {
  if (t->n > 0) sl__export(t);
  else sl__close_now(t);
}

/* One of the handles closed while closing: the last one frees. */
static void sl__closed_one(sl_tracer_t *t) {
  if (--t->pending > 0) return;
  void (*cb)(void *) = t->close_cb;
  void *ud = t->close_ud;
  sl_free(t->req);
  sl_free(t->ring);
  sl_free(t);
  if (cb) cb(ud);
}

static void sl__tcp_closed(uv_handle_t *h) {
  sl_tracer_t *t = h->data;
  t->tcp_open = 0;
  /* Its write request is done (cancelled at the latest by the close). */
  sl_free(t->req);
  t->req = NULL;
  if (t->closing) sl__closed_one(t);
  else if (t->flushing) sl__flush_next(t);
  else if (t->n >= SL_TRACE_BATCH) sl__kick(t); /* a batch is waiting already */
}

/* The export in flight ended: counts, logs the first of a run of
 * failures, closes its connection (fmt NULL: it succeeded). */
static void sl__export_end(sl_tracer_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sl__export_end(sl_tracer_t *t, const char *fmt, ...) {
  if (t->over) return;
  t->over = 1;
  uv_timer_stop(&t->deadline);
  if (fmt == NULL) {
    sl_counter_add(t->counters, SL_C_TRACE_SPANS_EXPORTED, (uint64_t)t->nspans);
    t->failing = 0;
  } else {
    sl_counter_inc(t->counters, SL_C_TRACE_EXPORT_ERRORS);
    sl_counter_add(t->counters, SL_C_TRACE_SPANS_DROPPED, (uint64_t)t->nspans);
    if (!t->failing && t->log) {
      /* Once per run of failures: a receiver that is down would
       * otherwise write a line every batch. */
      char why[256];
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(why, sizeof(why), fmt, ap);
      va_end(ap);
      fprintf(t->log,
              "sluice: trace export to %s failed: %s; %d span(s) dropped (further failures count in "
              "trace_export_errors until an export succeeds)\n",
              t->cfg->trace_endpoint, why, t->nspans);
      fflush(t->log);
    }
    t->failing = 1;
  }
  if (!uv_is_closing((uv_handle_t *)&t->tcp)) uv_close((uv_handle_t *)&t->tcp, sl__tcp_closed);
}

static void sl__on_deadline(uv_timer_t *h) {
  sl_tracer_t *t = h->data;
  sl__export_end(t, "no answer within %llu ms", (unsigned long long)t->cfg->trace_timeout_ms);
}

static int sl__on_message_complete(llhttp_t *p) {
  sl_tracer_t *t = p->data;
  t->answered = 1;
  return HPE_PAUSED; /* the one answer asked for; what follows is not read */
}

static void sl__answered(sl_tracer_t *t) {
  int status = t->parser.status_code;
  if (status >= 200 && status < 300) sl__export_end(t, NULL);
  else sl__export_end(t, "the receiver answered HTTP %d", status);
}

static void sl__alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  sl_tracer_t *t = h->data;
  (void)suggested;
  *buf = uv_buf_init(t->rbuf, sizeof(t->rbuf));
}

static void sl__on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sl_tracer_t *t = s->data;
  if (t->over || nread == 0) return;
  if (nread < 0) {
    /* A close-delimited answer ends here. */
    if (nread == UV_EOF && llhttp_finish(&t->parser) == HPE_OK && t->parser.status_code != 0) t->answered = 1;
    if (t->answered) sl__answered(t);
    else sl__export_end(t, "the connection ended before the answer: %s", uv_strerror((int)nread));
    return;
  }
  llhttp_errno_t e = llhttp_execute(&t->parser, buf->base, (size_t)nread);
  if (t->answered) sl__answered(t);
  else if (e != HPE_OK) sl__export_end(t, "malformed HTTP answer: %s", llhttp_errno_name(e));
}

static void sl__on_written(uv_write_t *w, int status) {
  sl_tracer_t *t = w->data;
  if (status < 0) sl__export_end(t, "sending: %s", uv_strerror(status));
}

static void sl__on_connected(uv_connect_t *c, int status) {
  sl_tracer_t *t = c->data;
  if (t->over) return;
  if (status < 0) {
    sl__export_end(t, "connect: %s", uv_strerror(status));
    return;
  }
  uv_read_start((uv_stream_t *)&t->tcp, sl__alloc, sl__on_read);
  uv_buf_t b = uv_buf_init(t->req, (unsigned)t->req_len);
  t->write_req.data = t;
  int rc = uv_write(&t->write_req, (uv_stream_t *)&t->tcp, &b, 1, sl__on_written);
  if (rc < 0) sl__export_end(t, "sending: %s", uv_strerror(rc));
}

static void sl__encode_work(uv_work_t *w) {
  sl_tracer_t *t = w->data;
  t->body = sl__encode(t);
}

static void sl__send(sl_tracer_t *t, char *body);

/* The batch's JSON is built (or the work was cancelled by a close): the
 * records are freed, and the export goes on unless the tracer closes. */
static void sl__encoded(uv_work_t *w, int status) {
  sl_tracer_t *t = w->data;
  t->encoding = 0;
  for (int k = 0; k < t->nbatch; k++) sl_free(t->batch[k]);
  t->nbatch = 0;
  char *body = status == 0 ? t->body : NULL;
  t->body = NULL;
  if (t->closing) {
    cJSON_free(body);
    sl__closed_one(t);
    return;
  }
  if (body == NULL) { /* no connection was made: counted as a failed export */
    sl_counter_inc(t->counters, SL_C_TRACE_EXPORT_ERRORS);
    sl_counter_add(t->counters, SL_C_TRACE_SPANS_DROPPED, (uint64_t)t->nspans);
    if (t->flushing) sl__flush_next(t);
    return;
  }
  sl__send(t, body);
}

/* Starts an export of what waits, unless one is in flight: the batch
 * goes to the thread pool to be encoded. */
static void sl__export(sl_tracer_t *t) {
  if (t->closing || t->tcp_open || t->encoding || t->n == 0) return;
  sl__trec_t *c;
  t->nbatch = 0;
  t->nspans = 0;
  while (t->nbatch < SL_TRACE_BATCH && (c = sl__pop(t)) != NULL) {
    t->batch[t->nbatch++] = c;
    t->nspans += c->nspans;
  }
  t->work.data = t;
  t->encoding = 1;
  if (uv_queue_work(t->loop, &t->work, sl__encode_work, sl__encoded) < 0) {
    t->body = NULL;
    sl__encoded(&t->work, UV_ECANCELED);
  }
}

/* Sends body (taken) on a new connection. */
static void sl__send(sl_tracer_t *t, char *body) {
  size_t blen = strlen(body);
  char head[1024];
  int hl = snprintf(head, sizeof(head),
                    "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sluice/%s\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                    t->path, t->hostport, sl_ffi_version(), blen);
  t->req_len = (size_t)hl + blen;
  t->req = sl_malloc(t->req_len);
  memcpy(t->req, head, (size_t)hl);
  memcpy(t->req + hl, body, blen);
  cJSON_free(body);
  t->over = 0;
  t->answered = 0;
  llhttp_init(&t->parser, HTTP_RESPONSE, &t->settings);
  t->parser.data = t;
  uv_tcp_init(t->loop, &t->tcp);
  t->tcp.data = t;
  t->tcp_open = 1;
  uv_timer_start(&t->deadline, sl__on_deadline, t->cfg->trace_timeout_ms, 0);
  t->connect_req.data = t;
  int rc = uv_tcp_connect(&t->connect_req, &t->tcp, (const struct sockaddr *)&t->addr, sl__on_connected);
  if (rc < 0) sl__export_end(t, "connect: %s", uv_strerror(rc));
}

static void sl__on_tick(uv_timer_t *h) { sl__export(h->data); }

/* Export on the next loop turn (not inside the relay's call), then keep
 * the usual period. */
static void sl__kick(sl_tracer_t *t) { uv_timer_start(&t->tick, sl__on_tick, 0, t->cfg->trace_batch_ms); }

/* ---- the API ---- */

int sl_tracer_open(sl_tracer_t **out, uv_loop_t *loop, const sl_config_t *cfg, sl_counters_t *counters,
                   const sl_narrator_t *nar, FILE *log, char *err, size_t errlen) {
  sl_tracer_t *t = sl_calloc(1, sizeof(*t));
  if (sl__parse_endpoint(t, cfg->trace_endpoint, err, errlen) < 0) {
    sl_free(t);
    return SL_EINVAL;
  }
  t->loop = loop;
  t->cfg = cfg;
  t->counters = counters;
  t->nar = nar;
  t->log = log;
  t->cap = cfg->trace_max_queue > 0 ? cfg->trace_max_queue : 1;
  t->ring = sl_calloc((size_t)t->cap, sizeof(*t->ring));
  llhttp_settings_init(&t->settings);
  t->settings.on_message_complete = sl__on_message_complete;
  uv_timer_init(loop, &t->tick);
  uv_timer_init(loop, &t->deadline);
  t->tick.data = t->deadline.data = t;
  uv_timer_start(&t->tick, sl__on_tick, cfg->trace_batch_ms, cfg->trace_batch_ms);
  *out = t;
  return 0;
}

void sl_tracer_record(void *ud, const sl_trace_rec_t *rec) {
  sl_tracer_t *t = ud;
  if (t->closing) return;
  if (t->n == t->cap) {
    /* Full: the oldest goes, the newest is kept. */
    sl__trec_t *old = sl__pop(t);
    sl_counter_add(t->counters, SL_C_TRACE_SPANS_DROPPED, (uint64_t)old->nspans);
    sl_free(old);
  }
  t->ring[(t->head + t->n) % t->cap] = sl__copy(t, rec);
  t->n++;
  if (t->n == SL_TRACE_BATCH && !t->tcp_open) sl__kick(t);
}

int sl_tracer_queued(const sl_tracer_t *t) { return t->n; }

static void sl__timer_closed(uv_handle_t *h) { sl__closed_one(h->data); }

/* Closes now: what is still queued is dropped, an export in flight
 * abandoned. */
static void sl__close_now(sl_tracer_t *t) {
  if (t->closing) return;
  t->closing = 1;
  sl__trec_t *c;
  while ((c = sl__pop(t)) != NULL) sl_free(c);
  t->over = 1;
  t->pending = 2;
  uv_close((uv_handle_t *)&t->tick, sl__timer_closed);
  uv_close((uv_handle_t *)&t->deadline, sl__timer_closed);
  if (t->encoding) {
    /* A batch on the thread pool: cancelled if it has not started, else
     * waited for; its after-work callback frees it and counts as one. */
    t->pending++;
    uv_cancel((uv_req_t *)&t->work);
  }
  if (t->tcp_open) {
    /* An export in flight is abandoned; its close may be under way. */
    t->pending++;
    if (!uv_is_closing((uv_handle_t *)&t->tcp)) uv_close((uv_handle_t *)&t->tcp, sl__tcp_closed);
  }
}

static void sl__on_flush_deadline(uv_timer_t *h) { sl__close_now(h->data); }

void sl_tracer_close(sl_tracer_t *t, void (*cb)(void *ud), void *ud) {
  if (t->closing || t->flushing) return;
  t->close_cb = cb;
  t->close_ud = ud;
  if (t->n == 0 && !t->encoding && !t->tcp_open) {
    sl__close_now(t);
    return;
  }
  /* Send what is queued first, under one deadline for all of it (tick,
   * no longer needed for batches, keeps it). */
  uint64_t ms = t->cfg->trace_timeout_ms < SL_TRACE_FLUSH_MS ? t->cfg->trace_timeout_ms : SL_TRACE_FLUSH_MS;
  t->flushing = 1;
  uv_timer_start(&t->tick, sl__on_flush_deadline, ms, 0);
  if (!t->encoding && !t->tcp_open) sl__export(t);
}
