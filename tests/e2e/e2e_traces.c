/* e2e_traces.c: OTLP/HTTP traces, through the real binary.
 *
 * A small OTLP receiver runs in a thread of this program: it keeps every
 * POST body and answers with the status the test sets (or holds the answer
 * until told).  sluice runs in-process simulated engines with tracing sent
 * to the receiver; the engines report the last traceparent they got
 * (/sim/stats "last_traceparent").  Each request carries an X-Request-Id,
 * so its request span is found by sluice.request_id and its other spans by
 * the trace id.  Every wait is for an event (a span, a counter, a log
 * line) under a generous bound; absence is asserted only behind a barrier
 * (a later request's spans, which are exported in order after it).
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define COMPL "/v1/completions"
#define CHUNK "chat.completion.chunk"
#define STALL "x-sim-fault: stall\r\nx-sim-fault-at: 1\r\nx-sim-tokens: 50\r\n"
#define RX_MAX 256

/* ---- the receiver ---- */

typedef struct {
  int lfd, port;
  pthread_t thread;
  atomic_int stop;
  atomic_int status;  /* what it answers */
  atomic_int hold;    /* while 1, a request read is not answered */
  atomic_int posts;   /* requests read whole */
  atomic_int held;    /* requests read and held now */
  pthread_mutex_t mu;
  char *bodies[RX_MAX];
  int nbodies;
  char path[256], ctype[128];
} rx_t;

/* Reads one request; keeps its body.  Returns 0 or -1. */
static int rx_read(rx_t *rx, int fd) {
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap);
  char *end = NULL;
  size_t want = 0;
  for (;;) {
    if (len + 1 >= cap) buf = realloc(buf, cap *= 2);
    ssize_t n = nu_recv(fd, buf + len, cap - 1 - len, 10000);
    if (n <= 0) {
      free(buf);
      return -1;
    }
    len += (size_t)n;
    buf[len] = '\0';
    if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
      const char *cl = strcasestr(buf, "\r\ncontent-length:");
      want = (size_t)(end + 4 - buf) + (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
    }
    if (end != NULL && len >= want) break;
  }
  pthread_mutex_lock(&rx->mu);
  sscanf(buf, "%*s %255s", rx->path);
  const char *ct = strcasestr(buf, "\r\ncontent-type:");
  rx->ctype[0] = '\0';
  if (ct && ct < end) sscanf(ct + 15, " %127[^\r]", rx->ctype);
  if (rx->nbodies < RX_MAX) rx->bodies[rx->nbodies++] = strdup(end + 4);
  pthread_mutex_unlock(&rx->mu);
  free(buf);
  atomic_fetch_add(&rx->posts, 1);
  return 0;
}

static void *rx_main(void *arg) {
  rx_t *rx = arg;
  while (!atomic_load(&rx->stop)) {
    struct pollfd p = {rx->lfd, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;
    int fd = accept(rx->lfd, NULL, NULL);
    if (fd < 0) continue;
    if (rx_read(rx, fd) == 0) {
      atomic_fetch_add(&rx->held, 1);
      while (atomic_load(&rx->hold) && !atomic_load(&rx->stop)) usleep(2000);
      atomic_fetch_sub(&rx->held, 1);
      char out[256];
      snprintf(out, sizeof(out),
               "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
               atomic_load(&rx->status));
      (void)nu_send_str(fd, out);
    }
    close(fd);
  }
  return NULL;
}

static int rx_start(rx_t *rx) {
  memset(rx, 0, sizeof(*rx));
  atomic_store(&rx->status, 200);
  pthread_mutex_init(&rx->mu, NULL);
  rx->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof(a);
  if (rx->lfd < 0 || bind(rx->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(rx->lfd, 16) < 0 ||
      getsockname(rx->lfd, (struct sockaddr *)&a, &al) < 0)
    return -1;
  rx->port = ntohs(a.sin_port);
  return pthread_create(&rx->thread, NULL, rx_main, rx) == 0 ? 0 : -1;
}

static void rx_stop(rx_t *rx) {
  atomic_store(&rx->stop, 1);
  pthread_join(rx->thread, NULL);
  close(rx->lfd);
  for (int i = 0; i < rx->nbodies; i++) free(rx->bodies[i]);
  pthread_mutex_destroy(&rx->mu);
}

/* A loopback port nothing listens on. */
static int closed_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof(a);
  int port = -1;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && getsockname(fd, (struct sockaddr *)&a, &al) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

/* ---- spans ---- */

/* Every span received so far, copied into one array (cJSON_Delete it). */
static cJSON *rx_spans(rx_t *rx) {
  cJSON *all = cJSON_CreateArray();
  pthread_mutex_lock(&rx->mu);
  for (int i = 0; i < rx->nbodies; i++) {
    cJSON *doc = cJSON_Parse(rx->bodies[i]);
    const cJSON *rs, *ss, *sp;
    cJSON_ArrayForEach(rs, cJSON_GetObjectItemCaseSensitive(doc, "resourceSpans")) {
      cJSON_ArrayForEach(ss, cJSON_GetObjectItemCaseSensitive(rs, "scopeSpans")) {
        cJSON_ArrayForEach(sp, cJSON_GetObjectItemCaseSensitive(ss, "spans")) {
          cJSON_AddItemToArray(all, cJSON_Duplicate(sp, 1));
        }
      }
    }
    cJSON_Delete(doc);
  }
  pthread_mutex_unlock(&rx->mu);
  return all;
}

static const char *str_of(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int kind_of(const cJSON *span) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(span, "kind");
  return cJSON_IsNumber(v) ? v->valueint : -1;
}

static uint64_t time_of(const cJSON *span, const char *key) {
  const char *s = str_of(span, key);
  return s ? strtoull(s, NULL, 10) : 0;
}

static const cJSON *attr_value(const cJSON *span, const char *key) {
  const cJSON *a;
  cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(span, "attributes")) {
    const char *k = str_of(a, "key");
    if (k && strcmp(k, key) == 0) return cJSON_GetObjectItemCaseSensitive(a, "value");
  }
  return NULL;
}

static const char *attr_str(const cJSON *span, const char *key) { return str_of(attr_value(span, key), "stringValue"); }

/* An intValue attribute (a decimal string in OTLP/JSON), or -1. */
static int64_t attr_int(const cJSON *span, const char *key) {
  const char *s = str_of(attr_value(span, key), "intValue");
  return s ? strtoll(s, NULL, 10) : -1;
}

/* The status code of a span (0: unset). */
static int status_code(const cJSON *span) {
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(span, "status"), "code");
  return cJSON_IsNumber(c) ? c->valueint : 0;
}

/* Waits for the request span of request id; returns all spans of its
 * trace (cJSON_Delete it) with *req pointing at it, or NULL. */
static cJSON *wait_trace(rx_t *rx, const char *id, const cJSON **req) {
  int64_t deadline = nu_now_ms() + E2E_WAIT_MS;
  for (;;) {
    cJSON *all = rx_spans(rx);
    const cJSON *sp, *found = NULL;
    cJSON_ArrayForEach(sp, all) {
      const char *rid = attr_str(sp, "sluice.request_id");
      if (kind_of(sp) == 2 && rid && strcmp(rid, id) == 0) found = sp;
    }
    if (found) {
      const char *tid = str_of(found, "traceId");
      cJSON *out = cJSON_CreateArray();
      cJSON_ArrayForEach(sp, all) {
        const char *t = str_of(sp, "traceId");
        if (t && tid && strcmp(t, tid) == 0) {
          cJSON *d = cJSON_Duplicate(sp, 1);
          cJSON_AddItemToArray(out, d);
          if (sp == found) *req = d;
        }
      }
      cJSON_Delete(all);
      return out;
    }
    cJSON_Delete(all);
    if (nu_now_ms() >= deadline) break;
    usleep(10000);
  }
  fprintf(stderr, "  no request span for %s after %d ms (%d posts)\n", id, E2E_WAIT_MS, atomic_load(&rx->posts));
  return NULL;
}

/* The spans in arr named name of kind kind. */
static int count_spans(const cJSON *arr, const char *name, int kind) {
  int n = 0;
  const cJSON *sp;
  cJSON_ArrayForEach(sp, arr) {
    const char *nm = str_of(sp, "name");
    if (nm && strcmp(nm, name) == 0 && kind_of(sp) == kind) n++;
  }
  return n;
}

static const cJSON *span_named(const cJSON *arr, const char *name, int kind, int nth) {
  const cJSON *sp;
  cJSON_ArrayForEach(sp, arr) {
    const char *nm = str_of(sp, "name");
    if (nm && strcmp(nm, name) == 0 && kind_of(sp) == kind && nth-- == 0) return sp;
  }
  return NULL;
}

/* 1 if every span but req is a child of req and lies within its time. */
static int children_of(const cJSON *arr, const cJSON *req) {
  const char *rid = str_of(req, "spanId");
  uint64_t s0 = time_of(req, "startTimeUnixNano"), e0 = time_of(req, "endTimeUnixNano");
  const cJSON *sp;
  cJSON_ArrayForEach(sp, arr) {
    if (sp == req) continue;
    const char *p = str_of(sp, "parentSpanId");
    uint64_t s = time_of(sp, "startTimeUnixNano"), e = time_of(sp, "endTimeUnixNano");
    if (p == NULL || strcmp(p, rid) != 0 || s < s0 || e > e0 || s > e) {
      fprintf(stderr, "  span %s (%s): parent %s (want %s), [%llu, %llu] not in [%llu, %llu]\n",
              str_of(sp, "name"), str_of(sp, "spanId"), p ? p : "-", rid, (unsigned long long)s,
              (unsigned long long)e, (unsigned long long)s0, (unsigned long long)e0);
      return 0;
    }
  }
  return 1;
}

/* The engine's last traceparent, copied into out ("" when it had none).
 * Returns 0, or -1 if the stats did not say. */
static int engine_tp(int sim_port, char *out, size_t cap) {
  cJSON *s = e2e_get_json(sim_port, "/sim/stats", NULL);
  const char *tp = str_of(s, "last_traceparent");
  if (tp) snprintf(out, cap, "%s", tp);
  cJSON_Delete(s);
  return tp ? 0 : -1;
}

/* ---- sluice ---- */

/* sluice with nsims in-process engines in pool "p" (model m1), tracing to
 * tracing_json (the "tracing" object, or NULL for none), top more members
 * (",..." or NULL). */
static int start_sluice(e2e_proc_t *sl, int nsims, const char *tracing_json, const char *top) {
  char eps[512] = "", cfg[2048];
  for (int i = 0; i < nsims; i++) {
    size_t k = strlen(eps);
    snprintf(eps + k, sizeof(eps) - k, "%s{\"sim\":{\"ttft_ms\":2,\"itl_ms\":1,\"itl_jitter\":0}}", i ? "," : "");
  }
  char tr[600] = "";
  if (tracing_json) snprintf(tr, sizeof(tr), ",\"tracing\":%s", tracing_json);
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"endpoints\":[%s]}],"
           "\"health\":{\"cooldown_base_ms\":50,\"cooldown_max_ms\":100},"
           "\"upstream\":{\"max_attempts\":2,\"backoff_base_ms\":1,\"backoff_max_ms\":2}%s%s}",
           eps, tr, top ? top : "");
  if (e2e_serve_start(sl, cfg, NULL) < 0) return -1;
  if (e2e_wait_ready(sl->port, 200, E2E_WAIT_MS) < 0) return -1;
  return e2e_wait_endpoints_ready(sl->port, nsims, E2E_WAIT_MS) ? 0 : -1;
}

static const char *tracing_to(char *buf, size_t cap, int port, const char *extra) {
  snprintf(buf, cap, "{\"endpoint\":\"http://127.0.0.1:%d/v1/traces\",\"batch_ms\":20%s}", port, extra ? extra : "");
  return buf;
}

/* One streamed request with extra headers; 1 if it got 200 and n tokens. */
static int stream_ok(int port, const char *path, const char *headers, int n) {
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  int chat = strcmp(path, CHAT) == 0;
  if (chat) e2e_chat_body(body, sizeof(body), "m1", 1, ",\"max_tokens\":64,\"stream_options\":{\"include_usage\":true}");
  else e2e_completion_body(body, sizeof(body), "m1", 1, ",\"max_tokens\":64");
  int st = e2e_stream(port, path, headers, body, &head, &s, chat ? CHUNK : "text_completion", E2E_WAIT_MS);
  int ok = st == 200 && s.ncontent == n && s.ndone == 1;
  if (!ok) fprintf(stderr, "  %s: status %d, %ld content chunks (want %d), events %s\n", path, st, s.ncontent, n, s.kinds);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  return ok;
}

/* ---- tests ---- */

/* A plain stream: the request span and its children, their kinds and
 * attributes, one trace; the engine got the CLIENT span as its parent. */
static void test_spans_of_a_stream(void) {
  rx_t rx;
  e2e_proc_t sl;
  char tr[256];
  ASSERT_EQ(rx_start(&rx), 0);
  ASSERT_EQ(start_sluice(&sl, 1, tracing_to(tr, sizeof(tr), rx.port, NULL), NULL), 0);
  ASSERT(e2e_log_wait(&sl, "tracing: spans go to http://127.0.0.1:", E2E_WAIT_MS, NULL, 0));
  ASSERT(stream_ok(sl.port, CHAT, "X-Request-Id: t-plain\r\nx-sim-tokens: 5\r\n", 5));
  char tp[128];
  ASSERT_EQ(engine_tp(sl.sim_ports[0], tp, sizeof(tp)), 0);

  const cJSON *req = NULL;
  cJSON *tr_spans = wait_trace(&rx, "t-plain", &req);
  ASSERT_NOT_NULL(tr_spans);
  ASSERT_EQ(cJSON_GetArraySize(tr_spans), 4);
  ASSERT_STR_EQ(str_of(req, "name"), "chat m1");
  ASSERT_NULL(str_of(req, "parentSpanId")); /* no client span: a root */
  ASSERT_EQ(strlen(str_of(req, "traceId")), 32);
  ASSERT_EQ(strlen(str_of(req, "spanId")), 16);
  ASSERT_STR_EQ(attr_str(req, "gen_ai.operation.name"), "chat");
  ASSERT_STR_EQ(attr_str(req, "gen_ai.request.model"), "m1");
  ASSERT_EQ(attr_int(req, "gen_ai.request.max_tokens"), 64);
  ASSERT_EQ(attr_int(req, "gen_ai.usage.output_tokens"), 5);
  const cJSON *fr = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(attr_value(req, "gen_ai.response.finish_reasons"), "arrayValue"), "values");
  ASSERT_EQ(cJSON_GetArraySize(fr), 1);
  ASSERT_STR_EQ(str_of(cJSON_GetArrayItem(fr, 0), "stringValue"), "stop");
  ASSERT_GE(attr_int(req, "gen_ai.usage.input_tokens"), 1);
  ASSERT_STR_EQ(attr_str(req, "sluice.end_reason"), "complete");
  ASSERT_EQ(status_code(req), 0);
  ASSERT_EQ(count_spans(tr_spans, "chat m1", 2), 1);
  ASSERT_EQ(count_spans(tr_spans, "placement", 1), 1);
  ASSERT_EQ(count_spans(tr_spans, "chat m1", 3), 1);
  ASSERT_EQ(count_spans(tr_spans, "stream", 1), 1);
  ASSERT_EQ(count_spans(tr_spans, "queue", 1), 0); /* it never waited */
  ASSERT(children_of(tr_spans, req));

  const cJSON *up = span_named(tr_spans, "chat m1", 3, 0);
  ASSERT_STR_EQ(attr_str(up, "server.address"), "127.0.0.1");
  ASSERT_EQ(attr_int(up, "server.port"), sl.sim_ports[0]);
  ASSERT_EQ(attr_int(up, "http.response.status_code"), 200);
  ASSERT_STR_EQ(attr_str(up, "sluice.pool"), "p");
  ASSERT_NULL(attr_value(up, "error.type"));
  /* The engine's parent is the upstream request's span, in the same trace. */
  char want[128];
  snprintf(want, sizeof(want), "00-%s-%s-01", str_of(req, "traceId"), str_of(up, "spanId"));
  ASSERT_STR_EQ(tp, want);
  const cJSON *pl = span_named(tr_spans, "placement", 1, 0);
  ASSERT(time_of(pl, "endTimeUnixNano") <= time_of(up, "startTimeUnixNano"));
  const cJSON *st = span_named(tr_spans, "stream", 1, 0);
  ASSERT(time_of(st, "startTimeUnixNano") >= time_of(up, "startTimeUnixNano"));
  cJSON_Delete(tr_spans);

  /* The envelope: the traces path, JSON, the resource and scope. */
  pthread_mutex_lock(&rx.mu);
  int path_ok = strcmp(rx.path, "/v1/traces") == 0, ctype_ok = strcmp(rx.ctype, "application/json") == 0;
  cJSON *doc = cJSON_Parse(rx.bodies[0]);
  pthread_mutex_unlock(&rx.mu);
  ASSERT(path_ok);
  ASSERT(ctype_ok);
  const cJSON *rs = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "resourceSpans"), 0);
  const cJSON *res = cJSON_GetObjectItemCaseSensitive(rs, "resource");
  ASSERT_STR_EQ(attr_str(res, "service.name"), "sluice");
  ASSERT_NOT_NULL(attr_str(res, "service.version"));
  const cJSON *ss = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rs, "scopeSpans"), 0);
  ASSERT_STR_EQ(str_of(cJSON_GetObjectItemCaseSensitive(ss, "scope"), "name"), "sluice");
  cJSON_Delete(doc);

  /* A completion is a "text_completion" operation. */
  ASSERT(stream_ok(sl.port, COMPL, "X-Request-Id: t-compl\r\nx-sim-tokens: 3\r\n", 3));
  tr_spans = wait_trace(&rx, "t-compl", &req);
  ASSERT_NOT_NULL(tr_spans);
  ASSERT_STR_EQ(str_of(req, "name"), "text_completion m1");
  ASSERT_STR_EQ(attr_str(req, "gen_ai.operation.name"), "text_completion");
  ASSERT_EQ(count_spans(tr_spans, "text_completion m1", 3), 1);
  cJSON_Delete(tr_spans);
  ASSERT_GE(e2e_wait_counter(sl.port, "trace_spans_exported", 8, E2E_WAIT_MS), 8);
  ASSERT_EQ(e2e_counter(sl.port, "trace_export_errors"), 0);
  ASSERT_EQ(e2e_counter(sl.port, "trace_spans_dropped"), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
  rx_stop(&rx);
}

/* The client's traceparent: its trace goes on, the request span is a
 * child of the client's span, the engine's parent is sluice's. */
static void test_client_traceparent_honoured(void) {
  rx_t rx;
  e2e_proc_t sl;
  char tr[256];
  ASSERT_EQ(rx_start(&rx), 0);
  ASSERT_EQ(start_sluice(&sl, 1, tracing_to(tr, sizeof(tr), rx.port, NULL), NULL), 0);
  const char *tid = "4bf92f3577b34da6a3ce929d0e0e4736", *sid = "00f067aa0ba902b7";
  char h[256];
  snprintf(h, sizeof(h), "X-Request-Id: t-client\r\ntraceparent: 00-%s-%s-01\r\nx-sim-tokens: 2\r\n", tid, sid);
  ASSERT(stream_ok(sl.port, CHAT, h, 2));
  char tp[128];
  ASSERT_EQ(engine_tp(sl.sim_ports[0], tp, sizeof(tp)), 0);
  const cJSON *req = NULL;
  cJSON *spans = wait_trace(&rx, "t-client", &req);
  ASSERT_NOT_NULL(spans);
  ASSERT_STR_EQ(str_of(req, "traceId"), tid);
  ASSERT_STR_EQ(str_of(req, "parentSpanId"), sid);
  ASSERT(children_of(spans, req));
  const cJSON *up = span_named(spans, "chat m1", 3, 0);
  ASSERT_NOT_NULL(up);
  char want[128];
  snprintf(want, sizeof(want), "00-%s-%s-01", tid, str_of(up, "spanId"));
  ASSERT_STR_EQ(tp, want);
  ASSERT(strcmp(str_of(up, "spanId"), sid) != 0);
  cJSON_Delete(spans);

  /* An invalid one (upper-case hex) is ignored: a new trace, a root span,
   * and the engine gets that trace. */
  ASSERT(stream_ok(sl.port, CHAT,
                   "X-Request-Id: t-invalid\r\ntraceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01\r\n"
                   "x-sim-tokens: 2\r\n",
                   2));
  ASSERT_EQ(engine_tp(sl.sim_ports[0], tp, sizeof(tp)), 0);
  spans = wait_trace(&rx, "t-invalid", &req);
  ASSERT_NOT_NULL(spans);
  ASSERT(strcasecmp(str_of(req, "traceId"), tid) != 0);
  ASSERT_NULL(str_of(req, "parentSpanId"));
  up = span_named(spans, "chat m1", 3, 0);
  ASSERT_NOT_NULL(up);
  snprintf(want, sizeof(want), "00-%s-%s-01", str_of(req, "traceId"), str_of(up, "spanId"));
  ASSERT_STR_EQ(tp, want);
  cJSON_Delete(spans);
  /* So is an all-zero trace id. */
  ASSERT(stream_ok(sl.port, CHAT,
                   "X-Request-Id: t-zero\r\ntraceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n"
                   "x-sim-tokens: 2\r\n",
                   2));
  spans = wait_trace(&rx, "t-zero", &req);
  ASSERT_NOT_NULL(spans);
  ASSERT(strcmp(str_of(req, "traceId"), "00000000000000000000000000000000") != 0);
  ASSERT_NULL(str_of(req, "parentSpanId"));
  cJSON_Delete(spans);
  ASSERT_EQ(e2e_stop(&sl), 0);
  rx_stop(&rx);
}

/* The sampled flag 00: no spans for it (the barrier is a later sampled
 * request's spans), and the engine still gets the client's traceparent. */
static void test_unsampled_sends_no_spans(void) {
  rx_t rx;
  e2e_proc_t sl;
  char tr[256];
  ASSERT_EQ(rx_start(&rx), 0);
  ASSERT_EQ(start_sluice(&sl, 1, tracing_to(tr, sizeof(tr), rx.port, NULL), NULL), 0);
  const char *tp_in = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
  char h[256], tp[128];
  snprintf(h, sizeof(h), "X-Request-Id: t-unsampled\r\ntraceparent: %s\r\nx-sim-tokens: 2\r\n", tp_in);
  ASSERT(stream_ok(sl.port, CHAT, h, 2));
  ASSERT(e2e_log_wait(&sl, " stream t-unsampled pool=", E2E_WAIT_MS, NULL, 0)); /* it ended */
  ASSERT_EQ(engine_tp(sl.sim_ports[0], tp, sizeof(tp)), 0);
  ASSERT_STR_EQ(tp, tp_in);
  ASSERT(stream_ok(sl.port, CHAT, "X-Request-Id: t-after\r\nx-sim-tokens: 2\r\n", 2));
  const cJSON *req = NULL;
  cJSON *spans = wait_trace(&rx, "t-after", &req);
  ASSERT_NOT_NULL(spans);
  cJSON_Delete(spans);
  cJSON *all = rx_spans(&rx);
  const cJSON *sp;
  int unsampled = 0;
  cJSON_ArrayForEach(sp, all) {
    const char *t = str_of(sp, "traceId");
    if (t && strcmp(t, "0af7651916cd43dd8448eb211c80319c") == 0) unsampled++;
  }
  ASSERT_EQ(cJSON_GetArraySize(all), 4); /* t-after's only */
  cJSON_Delete(all);
  ASSERT_EQ(unsampled, 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
  rx_stop(&rx);
}

/* An engine that refuses: the retried request has two attempts, each with
 * its placement and upstream span; each engine saw its own attempt's span.
 * When both refuse, the request span carries the (redacted) error. */
static void test_retry_has_two_attempts(void) {
  rx_t rx;
  e2e_proc_t sl;
  char tr[256];
  ASSERT_EQ(rx_start(&rx), 0);
  ASSERT_EQ(start_sluice(&sl, 2, tracing_to(tr, sizeof(tr), rx.port, NULL),
                         ",\"log\":{\"secrets\":[\"simulated engine fault\"]}"),
            0);
  ASSERT_EQ(sl.nsims, 2);
  /* Least loaded places the first attempt on the first engine (a tie goes
   * to the lower id); it refuses, the second serves. */
  ASSERT_EQ(e2e_sim_control(sl.sim_ports[0], "{\"refuse\":503}"), 200);
  ASSERT(stream_ok(sl.port, CHAT, "X-Request-Id: t-retry\r\nx-sim-tokens: 3\r\n", 3));
  char tp0[128], tp1[128];
  ASSERT_EQ(engine_tp(sl.sim_ports[0], tp0, sizeof(tp0)), 0);
  ASSERT_EQ(engine_tp(sl.sim_ports[1], tp1, sizeof(tp1)), 0);
  const cJSON *req = NULL;
  cJSON *spans = wait_trace(&rx, "t-retry", &req);
  ASSERT_NOT_NULL(spans);
  ASSERT_EQ(count_spans(spans, "placement", 1), 2);
  ASSERT_EQ(count_spans(spans, "chat m1", 3), 2);
  ASSERT_EQ(cJSON_GetArraySize(spans), 1 + 2 + 2 + 1);
  ASSERT(children_of(spans, req));
  ASSERT_EQ(attr_int(req, "sluice.attempts"), 2);
  ASSERT_STR_EQ(attr_str(req, "sluice.end_reason"), "complete");
  const cJSON *a1 = span_named(spans, "chat m1", 3, 0), *a2 = span_named(spans, "chat m1", 3, 1);
  if (attr_int(a1, "sluice.attempt") == 2) {
    const cJSON *x = a1;
    a1 = a2;
    a2 = x;
  }
  ASSERT_EQ(attr_int(a1, "sluice.attempt"), 1);
  ASSERT_EQ(attr_int(a1, "server.port"), sl.sim_ports[0]);
  ASSERT_EQ(attr_int(a1, "http.response.status_code"), 503);
  ASSERT_STR_EQ(attr_str(a1, "error.type"), "503");
  ASSERT_EQ(status_code(a1), 2);
  ASSERT_EQ(attr_int(a2, "server.port"), sl.sim_ports[1]);
  ASSERT_EQ(attr_int(a2, "http.response.status_code"), 200);
  ASSERT_EQ(status_code(a2), 0);
  ASSERT(time_of(a1, "endTimeUnixNano") <= time_of(a2, "startTimeUnixNano"));
  char want[128];
  snprintf(want, sizeof(want), "00-%s-%s-01", str_of(req, "traceId"), str_of(a1, "spanId"));
  ASSERT_STR_EQ(tp0, want);
  snprintf(want, sizeof(want), "00-%s-%s-01", str_of(req, "traceId"), str_of(a2, "spanId"));
  ASSERT_STR_EQ(tp1, want);
  cJSON_Delete(spans);

  /* Every attempt refused: the request span carries the error. */
  ASSERT(e2e_wait_endpoints_ready(sl.port, 2, E2E_WAIT_MS));
  ASSERT_EQ(e2e_sim_control(sl.sim_ports[1], "{\"refuse\":503}"), 200);
  char body[512];
  nu_resp_t r;
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, "X-Request-Id: t-failed\r\n",
                     e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &r, E2E_WAIT_MS),
            502);
  nu_resp_free(&r);
  spans = wait_trace(&rx, "t-failed", &req);
  ASSERT_NOT_NULL(spans);
  ASSERT_EQ(count_spans(spans, "chat m1", 3), 2);
  ASSERT_EQ(count_spans(spans, "stream", 1), 0);
  ASSERT_EQ(status_code(req), 2);
  ASSERT_STR_EQ(attr_str(req, "error.type"), "upstream_failed");
  /* The error text quotes the engine, redacted as log lines are. */
  const char *msg = str_of(cJSON_GetObjectItemCaseSensitive(req, "status"), "message");
  ASSERT_NOT_NULL(msg);
  ASSERT_NOT_NULL(strstr(msg, "HTTP 503"));
  ASSERT_NOT_NULL(strstr(msg, "[redacted]"));
  ASSERT_NULL(strstr(msg, "fault"));
  cJSON_Delete(spans);
  ASSERT_EQ(e2e_stop(&sl), 0);
  rx_stop(&rx);
}

/* A request that waited for a place has a "queue" span; the one holding
 * the place, cut by its client, ends as client_cancel. */
static void test_queue_span(void) {
  rx_t rx;
  e2e_proc_t sl;
  char tr[256];
  ASSERT_EQ(rx_start(&rx), 0);
  tracing_to(tr, sizeof(tr), rx.port, NULL);
  /* One place only. */
  char eps[] = "{\"sim\":{\"ttft_ms\":2,\"itl_ms\":1,\"itl_jitter\":0}}";
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"slots\":1,\"limits\":{\"adaptive\":false},"
           "\"endpoints\":[%s]}],\"upstream\":{\"idle_timeout_ms\":600000},\"tracing\":%s}",
           eps, tr);
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT(e2e_wait_endpoints_ready(sl.port, 1, E2E_WAIT_MS));
  char body[512];
  nu_resp_t hh;
  e2e_sse_t hs;
  nu_conn_t *holder = e2e_sse_open(sl.port, CHAT, "X-Request-Id: t-holder\r\n" STALL,
                                   e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &hh, &hs, CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(holder);
  hs.stop_after_content = 1;
  ASSERT_EQ(e2e_sse_read(holder, &hs, E2E_WAIT_MS), 1);
  nu_conn_t *w = e2e_conn_open(sl.port, 0);
  ASSERT_NOT_NULL(w);
  ASSERT_EQ(nu_send_request(w->fd, "POST", CHAT, "X-Request-Id: t-waiter\r\nx-sim-tokens: 3\r\n",
                            e2e_chat_body(body, sizeof(body), "m1", 0, NULL)),
            0);
  ASSERT_EQ(e2e_wait_counter(sl.port, "requests_queued", 1, E2E_WAIT_MS), 1);
  e2e_conn_close(holder); /* lets go of the place */
  e2e_sse_free(&hs);
  nu_resp_free(&hh);
  nu_resp_t wr;
  int wst = nu_read_response(w, &wr, E2E_WAIT_MS) < 0 ? -1 : wr.status;
  nu_resp_free(&wr);
  ASSERT_EQ(wst, 200);
  e2e_conn_close(w);

  const cJSON *req = NULL;
  cJSON *spans = wait_trace(&rx, "t-waiter", &req);
  ASSERT_NOT_NULL(spans);
  ASSERT_EQ(count_spans(spans, "queue", 1), 1);
  ASSERT(children_of(spans, req));
  const cJSON *q = span_named(spans, "queue", 1, 0), *pl = span_named(spans, "placement", 1, 0);
  ASSERT(time_of(q, "endTimeUnixNano") <= time_of(pl, "startTimeUnixNano"));
  ASSERT_STR_EQ(attr_str(req, "sluice.end_reason"), "complete");
  cJSON_Delete(spans);

  spans = wait_trace(&rx, "t-holder", &req);
  ASSERT_NOT_NULL(spans);
  ASSERT_EQ(count_spans(spans, "queue", 1), 0);
  ASSERT_STR_EQ(attr_str(req, "sluice.end_reason"), "client_cancel");
  ASSERT_EQ(status_code(req), 0); /* the client leaving is no error of sluice's */
  const cJSON *up = span_named(spans, "chat m1", 3, 0);
  ASSERT_STR_EQ(attr_str(up, "sluice.outcome"), "cancelled");
  ASSERT_EQ(count_spans(spans, "stream", 1), 1);
  ASSERT(children_of(spans, req));
  cJSON_Delete(spans);
  ASSERT_EQ(e2e_stop(&sl), 0);
  rx_stop(&rx);
}

/* Tracing off (the endpoint null, whatever the environment says): no
 * tracer, and the engine gets the client's traceparent exactly as sent (or
 * none when the client sent none). */
static void test_tracing_off_still_forwards(void) {
  rx_t rx;
  e2e_proc_t sl;
  ASSERT_EQ(rx_start(&rx), 0);
  char env[64];
  snprintf(env, sizeof(env), "http://127.0.0.1:%d", rx.port);
  setenv("OTEL_EXPORTER_OTLP_ENDPOINT", env, 1);
  int rc = start_sluice(&sl, 1, "{\"endpoint\":null,\"batch_ms\":10}", NULL);
  unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT");
  ASSERT_EQ(rc, 0);
  const char *tp_in = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  char h[256], tp[128];
  snprintf(h, sizeof(h), "X-Request-Id: t-off\r\ntraceparent: %s\r\nx-sim-tokens: 2\r\n", tp_in);
  ASSERT(stream_ok(sl.port, CHAT, h, 2));
  ASSERT_EQ(engine_tp(sl.sim_ports[0], tp, sizeof(tp)), 0);
  ASSERT_STR_EQ(tp, tp_in);
  ASSERT(stream_ok(sl.port, CHAT, "X-Request-Id: t-off2\r\nx-sim-tokens: 2\r\n", 2));
  ASSERT_EQ(engine_tp(sl.sim_ports[0], tp, sizeof(tp)), 0);
  ASSERT_STR_EQ(tp, "");
  ASSERT_EQ(e2e_log_count(&sl, "tracing: spans go to"), 0);
  ASSERT_EQ(e2e_counter(sl.port, "trace_spans_exported"), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(atomic_load(&rx.posts), 0);
  rx_stop(&rx);
}

/* The environment's OTEL_EXPORTER_OTLP_ENDPOINT is a base: spans go to
 * its /v1/traces. */
static void test_endpoint_from_environment(void) {
  rx_t rx;
  e2e_proc_t sl;
  ASSERT_EQ(rx_start(&rx), 0);
  char env[64];
  snprintf(env, sizeof(env), "http://127.0.0.1:%d", rx.port);
  setenv("OTEL_EXPORTER_OTLP_ENDPOINT", env, 1);
  int rc = start_sluice(&sl, 1, "{\"batch_ms\":20}", NULL);
  unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT");
  ASSERT_EQ(rc, 0);
  ASSERT(stream_ok(sl.port, CHAT, "X-Request-Id: t-env\r\nx-sim-tokens: 2\r\n", 2));
  const cJSON *req = NULL;
  cJSON *spans = wait_trace(&rx, "t-env", &req);
  ASSERT_NOT_NULL(spans);
  cJSON_Delete(spans);
  pthread_mutex_lock(&rx.mu);
  int path_ok = strcmp(rx.path, "/v1/traces") == 0;
  pthread_mutex_unlock(&rx.mu);
  ASSERT(path_ok);
  ASSERT_EQ(e2e_stop(&sl), 0);
  rx_stop(&rx);
}

/* A receiver that is down, or answers 500: errors are counted, the spans
 * dropped, one log line per run of failures; the streams go on as ever,
 * and once the receiver answers 200 exports succeed again. */
static void test_receiver_failures(void) {
  e2e_proc_t sl;
  char tr[256];
  int port = closed_port();
  ASSERT_GT(port, 0);
  ASSERT_EQ(start_sluice(&sl, 1, tracing_to(tr, sizeof(tr), port, NULL), NULL), 0);
  for (int i = 0; i < 3; i++) ASSERT(stream_ok(sl.port, CHAT, "x-sim-tokens: 4\r\n", 4));
  ASSERT_GE(e2e_wait_counter(sl.port, "trace_export_errors", 1, E2E_WAIT_MS), 1);
  ASSERT(stream_ok(sl.port, CHAT, "x-sim-tokens: 4\r\n", 4));
  ASSERT_GE(e2e_wait_counter(sl.port, "trace_export_errors", 2, E2E_WAIT_MS), 2);
  ASSERT_GE(e2e_wait_counter(sl.port, "trace_spans_dropped", 16, E2E_WAIT_MS), 16);
  ASSERT_EQ(e2e_counter(sl.port, "trace_spans_exported"), 0);
  ASSERT_EQ(e2e_counter(sl.port, "streams_completed"), 4);
  ASSERT(e2e_log_wait(&sl, "trace export to", E2E_WAIT_MS, NULL, 0));
  ASSERT_EQ(e2e_log_count(&sl, "trace export to"), 1);
  ASSERT_EQ(e2e_stop(&sl), 0);

  /* 500, then 200. */
  rx_t rx;
  ASSERT_EQ(rx_start(&rx), 0);
  atomic_store(&rx.status, 500);
  ASSERT_EQ(start_sluice(&sl, 1, tracing_to(tr, sizeof(tr), rx.port, NULL), NULL), 0);
  ASSERT(stream_ok(sl.port, CHAT, "x-sim-tokens: 2\r\n", 2));
  ASSERT_EQ(e2e_wait_counter(sl.port, "trace_export_errors", 1, E2E_WAIT_MS), 1);
  ASSERT(e2e_log_wait(&sl, "the receiver answered HTTP 500", E2E_WAIT_MS, NULL, 0));
  ASSERT_EQ(e2e_counter(sl.port, "trace_spans_dropped"), 4);
  atomic_store(&rx.status, 200);
  ASSERT(stream_ok(sl.port, CHAT, "X-Request-Id: t-ok-again\r\nx-sim-tokens: 2\r\n", 2));
  ASSERT_EQ(e2e_wait_counter(sl.port, "trace_spans_exported", 4, E2E_WAIT_MS), 4);
  ASSERT_EQ(e2e_counter(sl.port, "trace_export_errors"), 1);
  ASSERT_EQ(e2e_stop(&sl), 0);
  rx_stop(&rx);
}

/* A receiver that holds its answer: one export in flight, the queue bounded
 * by max_queue (the oldest dropped and counted), and an export past
 * timeout_ms given up. */
static void test_queue_bound_and_timeout(void) {
  rx_t rx;
  e2e_proc_t sl;
  char tr[256];
  ASSERT_EQ(rx_start(&rx), 0);
  atomic_store(&rx.hold, 1);
  ASSERT_EQ(start_sluice(&sl, 1, tracing_to(tr, sizeof(tr), rx.port, ",\"max_queue\":2,\"timeout_ms\":600000"), NULL),
            0);
  ASSERT(stream_ok(sl.port, CHAT, "X-Request-Id: t-q1\r\nx-sim-tokens: 2\r\n", 2));
  /* The first record's export is read and held. */
  int64_t deadline = nu_now_ms() + E2E_WAIT_MS;
  while (atomic_load(&rx.held) < 1 && nu_now_ms() < deadline) usleep(5000);
  ASSERT_EQ(atomic_load(&rx.held), 1);
  for (int i = 2; i <= 4; i++) {
    char h[128], line[64];
    snprintf(h, sizeof(h), "X-Request-Id: t-q%d\r\nx-sim-tokens: 2\r\n", i);
    ASSERT(stream_ok(sl.port, CHAT, h, 2));
    snprintf(line, sizeof(line), " stream t-q%d pool=", i);
    ASSERT(e2e_log_wait(&sl, line, E2E_WAIT_MS, NULL, 0));
  }
  /* Three records for two places: t-q2's went. */
  ASSERT_EQ(e2e_counter(sl.port, "trace_spans_dropped"), 4);
  ASSERT_EQ(atomic_load(&rx.posts), 1);
  atomic_store(&rx.hold, 0);
  ASSERT_EQ(e2e_wait_counter(sl.port, "trace_spans_exported", 12, E2E_WAIT_MS), 12);
  const cJSON *req;
  cJSON *spans = wait_trace(&rx, "t-q4", &req);
  ASSERT_NOT_NULL(spans);
  cJSON_Delete(spans);
  spans = wait_trace(&rx, "t-q3", &req);
  ASSERT_NOT_NULL(spans);
  cJSON_Delete(spans);
  cJSON *all = rx_spans(&rx);
  ASSERT_EQ(cJSON_GetArraySize(all), 12); /* t-q1, t-q3, t-q4 */
  cJSON_Delete(all);
  ASSERT_EQ(e2e_counter(sl.port, "trace_export_errors"), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);

  /* Held past timeout_ms: the export is given up and counted. */
  atomic_store(&rx.hold, 1);
  ASSERT_EQ(start_sluice(&sl, 1, tracing_to(tr, sizeof(tr), rx.port, ",\"timeout_ms\":50"), NULL), 0);
  ASSERT(stream_ok(sl.port, CHAT, "x-sim-tokens: 2\r\n", 2));
  ASSERT_EQ(e2e_wait_counter(sl.port, "trace_export_errors", 1, E2E_WAIT_MS), 1);
  ASSERT(e2e_log_wait(&sl, "no answer within 50 ms", E2E_WAIT_MS, NULL, 0));
  ASSERT_EQ(e2e_counter(sl.port, "trace_spans_dropped"), 4);
  ASSERT_EQ(e2e_stop(&sl), 0);
  atomic_store(&rx.hold, 0);
  deadline = nu_now_ms() + E2E_WAIT_MS;
  while (atomic_load(&rx.held) > 0 && nu_now_ms() < deadline) usleep(5000);
  ASSERT_EQ(atomic_load(&rx.held), 0);

  /* Shutting down with an export in flight (held, far from its timeout)
   * waits for it at most SL_TRACE_FLUSH_MS (5 s), then exits cleanly,
   * nothing left open. */
  atomic_store(&rx.hold, 1);
  ASSERT_EQ(start_sluice(&sl, 1, tracing_to(tr, sizeof(tr), rx.port, ",\"timeout_ms\":600000"), NULL), 0);
  ASSERT(stream_ok(sl.port, CHAT, "x-sim-tokens: 2\r\n", 2));
  deadline = nu_now_ms() + E2E_WAIT_MS;
  while (atomic_load(&rx.held) < 1 && nu_now_ms() < deadline) usleep(5000);
  ASSERT_EQ(atomic_load(&rx.held), 1);
  ASSERT_EQ(e2e_stop(&sl), 0);
  atomic_store(&rx.hold, 0);
  rx_stop(&rx);
}

/* A shutdown sends what is queued: with a batch period far longer than
 * the run, the spans of the streams reach the receiver only because
 * SIGTERM flushes them before the exit. */
static void test_shutdown_sends_what_is_queued(void) {
  rx_t rx;
  e2e_proc_t sl;
  char tr[256];
  ASSERT_EQ(rx_start(&rx), 0);
  snprintf(tr, sizeof(tr), "{\"endpoint\":\"http://127.0.0.1:%d/v1/traces\",\"batch_ms\":600000}", rx.port);
  ASSERT_EQ(start_sluice(&sl, 1, tr, NULL), 0);
  ASSERT(stream_ok(sl.port, CHAT, "X-Request-Id: t-flush1\r\nx-sim-tokens: 2\r\n", 2));
  ASSERT(stream_ok(sl.port, CHAT, "X-Request-Id: t-flush2\r\nx-sim-tokens: 2\r\n", 2));
  ASSERT(e2e_log_wait(&sl, " stream t-flush2 pool=", E2E_WAIT_MS, NULL, 0));
  ASSERT_EQ(atomic_load(&rx.posts), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(atomic_load(&rx.posts), 1);
  const cJSON *req;
  cJSON *spans = wait_trace(&rx, "t-flush1", &req);
  ASSERT_NOT_NULL(spans);
  cJSON_Delete(spans);
  spans = wait_trace(&rx, "t-flush2", &req);
  ASSERT_NOT_NULL(spans);
  cJSON_Delete(spans);
  rx_stop(&rx);
}

/* A bad endpoint refuses the start, naming the key. */
static void test_bad_endpoint_refused(void) {
  e2e_proc_t sl;
  ASSERT_EQ(e2e_serve_spawn(&sl,
                            "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"endpoints\":[{\"sim\":{}}]}],"
                            "\"tracing\":{\"endpoint\":\"https://collector:4318/v1/traces\"}}",
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_exit(&sl, E2E_WAIT_MS), 0);
  ASSERT(WIFEXITED(sl.status) && WEXITSTATUS(sl.status) != 0);
  ASSERT(e2e_log_wait(&sl, "tracing.endpoint", 1000, NULL, 0));
  ASSERT_EQ(e2e_serve_spawn(&sl,
                            "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"endpoints\":[{\"sim\":{}}]}],"
                            "\"tracing\":{\"endpoint\":\"http://no-such-host.invalid:4318/v1/traces\"}}",
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_exit(&sl, E2E_WAIT_MS), 0);
  ASSERT(WIFEXITED(sl.status) && WEXITSTATUS(sl.status) != 0);
  ASSERT(e2e_log_wait(&sl, "tracing.endpoint: cannot resolve \"no-such-host.invalid\"", 1000, NULL, 0));
  ASSERT_EQ(e2e_log_check(&sl), 0);
}

int main(int argc, char **argv) {
  /* The tests say where spans go; the environment this runs in does not. */
  unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT");
  unsetenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  unsetenv("OTEL_EXPORTER_OTLP_TIMEOUT");
  unsetenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT");
  e2e_init(argc, argv, 240);
  E2E_RUN(test_spans_of_a_stream);
  E2E_RUN(test_client_traceparent_honoured);
  E2E_RUN(test_unsampled_sends_no_spans);
  E2E_RUN(test_retry_has_two_attempts);
  E2E_RUN(test_queue_span);
  E2E_RUN(test_tracing_off_still_forwards);
  E2E_RUN(test_endpoint_from_environment);
  E2E_RUN(test_receiver_failures);
  E2E_RUN(test_queue_bound_and_timeout);
  E2E_RUN(test_shutdown_sends_what_is_queued);
  E2E_RUN(test_bad_endpoint_refused);
  return SL_TEST_EXIT();
}
