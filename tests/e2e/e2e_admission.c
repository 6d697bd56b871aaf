/* e2e_admission.c: admission queues and limits, through the real binary.
 *
 * Every case holds its endpoint's only place with a stream the simulated
 * engine stalls (x-sim-fault: stall), so whatever comes next must wait in
 * the queue for as long as the test wants, however fast or slow the
 * machine is; it lets go by closing that stream's client.  Nothing here
 * asserts a duration: deadlines are short where a case waits for them to
 * pass, and every other wait is for an event (a counter, a log line).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"
#define STALL "x-sim-fault: stall\r\nx-sim-fault-at: 1\r\nx-sim-tokens: 50\r\n"

static char cfgbuf[4096];

/* One pool "p" of model m1 over the engines on ports[0..n), its endpoints
 * taking `limit` streams each (a fixed limit, or the rule's when `rule` is
 * not NULL), with pool_extra and top_extra spliced in (each "" or members
 * starting with ','). */
static const char *cfg_of(const int *ports, int n, int limit, const char *rule, const char *pool_extra,
                          const char *top_extra) {
  char eps[512] = "";
  for (int i = 0; i < n; i++) {
    size_t k = strlen(eps);
    snprintf(eps + k, sizeof(eps) - k, "%s{\"url\":\"http://127.0.0.1:%d\"}", i ? "," : "", ports[i]);
  }
  char limits[256];
  if (rule)
    snprintf(limits, sizeof(limits), "\"limits\":{\"min\":1,\"max\":%d,\"initial\":%d}", 4 * limit, limit);
  else
    snprintf(limits, sizeof(limits), "\"limits\":{\"adaptive\":false}");
  char toplimits[256] = "";
  if (rule) snprintf(toplimits, sizeof(toplimits), ",\"limits\":{\"rule\":\"%s\",\"interval_ms\":50}", rule);
  snprintf(cfgbuf, sizeof(cfgbuf),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"slots\":%d,%s%s,\"endpoints\":[%s]}],"
           "\"health\":{\"interval_ms\":100},\"upstream\":{\"idle_timeout_ms\":600000}%s%s}",
           limit, limits, pool_extra, eps, toplimits, top_extra);
  return cfgbuf;
}

/* Opens a streaming request that takes a place and keeps it: the engine
 * sends one token and stalls.  Returns its connection once that token came. */
static nu_conn_t *hold_place(int port, e2e_sse_t *s, nu_resp_t *head) {
  char body[512];
  nu_conn_t *c = e2e_sse_open(port, CHAT, STALL, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), head, s, CHUNK,
                              E2E_WAIT_MS);
  if (c == NULL || head->status != 200) return NULL;
  s->stop_after_content = 1;
  if (e2e_sse_read(c, s, E2E_WAIT_MS) != 1) return NULL;
  return c;
}

/* Sends a request on a new connection without reading the answer. */
static nu_conn_t *send_only(int port, const char *headers, int stream) {
  nu_conn_t *c = e2e_conn_open(port, 0);
  char body[512];
  if (c == NULL || nu_send_request(c->fd, "POST", CHAT, headers, e2e_chat_body(body, sizeof(body), "m1", stream, NULL)) < 0)
    return NULL;
  return c;
}

/* A pool's queue figure from /health (pools[0].queue.<name>), or -1. */
static int64_t queue_num(int port, const char *name) {
  cJSON *h = e2e_get_json(port, "/health", NULL);
  const cJSON *p = h ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(h, "pools"), 0) : NULL;
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(p, "queue"), name);
  int64_t r = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
  cJSON_Delete(h);
  return r;
}

/* An endpoint's figure from /health (pools[0].endpoints[i].<name>), or -1. */
static int64_t endpoint_num(int port, int i, const char *name) {
  cJSON *h = e2e_get_json(port, "/health", NULL);
  const cJSON *p = h ? cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(h, "pools"), 0) : NULL;
  const cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(p, "endpoints"), i);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, name);
  int64_t r = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
  cJSON_Delete(h);
  return r;
}

/* A burst over capacity waits and goes in priority order: with one place,
 * the requests that came low, normal, high, low are placed high, normal,
 * low, low, and none fails. */
static void test_burst_drains_in_priority_order(void) {
  e2e_proc_t sim, sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "1", "--itl-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  ASSERT_EQ(e2e_serve_start(&sl, cfg_of(&sim.port, 1, 1, NULL, "", ",\"admission\":{\"priority_header\":\"x-priority\"}"),
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  e2e_sse_t hs;
  nu_resp_t hh;
  nu_conn_t *holder = hold_place(sl.port, &hs, &hh);
  ASSERT_NOT_NULL(holder);

  static const char *const prio[] = {"low", "normal", "high", "low"};
  static const char *const ids[] = {"q-low-1", "q-normal", "q-high", "q-low-2"};
  nu_conn_t *c[4];
  for (int i = 0; i < 4; i++) {
    char h[160];
    snprintf(h, sizeof(h), "x-priority: %s\r\nX-Request-Id: %s\r\nx-sim-tokens: 3\r\n", prio[i], ids[i]);
    c[i] = send_only(sl.port, h, 0);
    ASSERT_NOT_NULL(c[i]);
    ASSERT_EQ(e2e_wait_counter(sl.port, "requests_queued", i + 1, E2E_WAIT_MS), i + 1); /* arrival order is known */
  }
  ASSERT_EQ(queue_num(sl.port, "waiting"), 4);
  ASSERT_EQ(queue_num(sl.port, "high"), 1);
  ASSERT_EQ(queue_num(sl.port, "normal"), 1);
  ASSERT_EQ(queue_num(sl.port, "low"), 2);
  ASSERT_EQ(e2e_sim_stat(sim.port, "requests"), 1); /* the engine saw the holder only */

  e2e_conn_close(holder); /* the place frees */
  e2e_sse_free(&hs);
  nu_resp_free(&hh);
  for (int i = 0; i < 4; i++) {
    nu_resp_t r;
    ASSERT_EQ(nu_read_head(c[i], &r, E2E_WAIT_MS), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(nu_read_body(c[i], &r, E2E_WAIT_MS, NULL, NULL), 0);
    nu_resp_free(&r);
    e2e_conn_close(c[i]);
  }
  /* The order they were placed in, from the narration. */
  ASSERT_EQ(e2e_wait_log_count(&sl, "was placed", 4, E2E_WAIT_MS), 4);
  char *log = e2e_log_text(&sl);
  ASSERT_NOT_NULL(log);
  const char *want[] = {"q-high", "q-normal", "q-low-1", "q-low-2"};
  const char *at = log;
  for (int i = 0; i < 4; i++) {
    char needle[96];
    snprintf(needle, sizeof(needle), "narrate %s queue: %s waited", want[i], want[i]);
    const char *p = strstr(at, needle);
    if (p == NULL) fprintf(stderr, "     %s was not placed after %s\n", want[i], i ? want[i - 1] : "the start");
    ASSERT_NOT_NULL(p);
    at = p + 1;
  }
  free(log);
  ASSERT_EQ(e2e_counter(sl.port, "queue_placed"), 4);
  ASSERT_EQ(e2e_counter(sl.port, "queue_waiting"), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* A queued client that disconnects leaves the queue at once (its place is
 * not kept until someone would have served it), and the engine never sees
 * its request. */
static void test_queued_client_leaves_at_once(void) {
  e2e_proc_t sim, sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  ASSERT_EQ(e2e_serve_start(&sl, cfg_of(&sim.port, 1, 1, NULL, "", ""), NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  e2e_sse_t hs;
  nu_resp_t hh;
  nu_conn_t *holder = hold_place(sl.port, &hs, &hh);
  ASSERT_NOT_NULL(holder);
  nu_conn_t *c = send_only(sl.port, "x-sim-tokens: 3\r\n", 1);
  ASSERT_NOT_NULL(c);
  ASSERT_EQ(e2e_wait_counter(sl.port, "requests_queued", 1, E2E_WAIT_MS), 1);
  ASSERT_EQ(e2e_counter(sl.port, "queue_waiting"), 1);
  e2e_conn_close(c);
  ASSERT_EQ(e2e_wait_counter(sl.port, "queue_client_gone", 1, E2E_WAIT_MS), 1);
  ASSERT_EQ(e2e_counter(sl.port, "queue_waiting"), 0);
  ASSERT_EQ(queue_num(sl.port, "waiting"), 0);
  ASSERT_EQ(e2e_counter(sl.port, "streams_active"), 1); /* the holder, still streaming */
  e2e_conn_close(holder);
  e2e_sse_free(&hs);
  nu_resp_free(&hh);
  /* The next request finds the place free. */
  nu_resp_t r;
  e2e_sse_t s;
  char body[512];
  ASSERT_EQ(e2e_stream(sl.port, CHAT, "x-sim-tokens: 3\r\n", e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &r, &s,
                       CHUNK, E2E_WAIT_MS),
            200);
  ASSERT(e2e_sse_kinds_are(&s, 1, 3, 0));
  e2e_sse_free(&s);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_wait_sim_stat(sim.port, "completed", 1, E2E_WAIT_MS), 1);
  ASSERT_EQ(e2e_sim_stat(sim.port, "requests"), 2); /* the holder and the last one */
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* A deadline that passes before the first heartbeat: the answer is still
 * an HTTP status, 503 with Retry-After and retry-after-ms. */
static void test_deadline_before_headers_is_503(void) {
  e2e_proc_t sim, sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  ASSERT_EQ(e2e_serve_start(&sl, cfg_of(&sim.port, 1, 1, NULL, ",\"queue_timeout_ms\":200", ",\"heartbeat_ms\":600000"),
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  e2e_sse_t hs;
  nu_resp_t hh;
  nu_conn_t *holder = hold_place(sl.port, &hs, &hh);
  ASSERT_NOT_NULL(holder);
  nu_resp_t r;
  e2e_sse_t s;
  char body[512];
  ASSERT_EQ(e2e_stream(sl.port, CHAT, "", e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &r, &s, CHUNK,
                       E2E_WAIT_MS),
            503);
  ASSERT(e2e_is_error_body(r.body, "queue_timeout"));
  ASSERT_NOT_NULL(nu_header(&r, "retry-after")); /* nu_header's answer lives until its next call */
  long long ra = atoll(nu_header(&r, "retry-after"));
  ASSERT_NOT_NULL(nu_header(&r, "retry-after-ms"));
  long long ram = atoll(nu_header(&r, "retry-after-ms"));
  ASSERT_GE(ra, 1);
  ASSERT_GE(ram, 100);
  ASSERT_LE(ram, ra * 1000);
  e2e_sse_free(&s);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_counter(sl.port, "queue_timeouts"), 1);
  ASSERT_EQ(e2e_sim_stat(sim.port, "requests"), 1);
  e2e_conn_close(holder);
  e2e_sse_free(&hs);
  nu_resp_free(&hh);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* A deadline that passes after heartbeats sent the headers: one error
 * event, code queue_timeout, and the body ends without [DONE]. */
static void test_deadline_after_headers_is_an_event(void) {
  e2e_proc_t sim, sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  ASSERT_EQ(e2e_serve_start(&sl, cfg_of(&sim.port, 1, 1, NULL, ",\"queue_timeout_ms\":600", ",\"heartbeat_ms\":50"),
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  e2e_sse_t hs;
  nu_resp_t hh;
  nu_conn_t *holder = hold_place(sl.port, &hs, &hh);
  ASSERT_NOT_NULL(holder);
  nu_resp_t r;
  e2e_sse_t s;
  char body[512];
  ASSERT_EQ(e2e_stream(sl.port, CHAT, "", e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &r, &s, CHUNK,
                       E2E_WAIT_MS),
            200);
  ASSERT_GE(s.comments_before_data, 1); /* heartbeats while it waited */
  ASSERT(e2e_sse_kinds_eq(&s, "E"));
  ASSERT_STR_EQ(s.error_code, "queue_timeout");
  ASSERT_EQ(s.ndone, 0);
  e2e_sse_free(&s);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_counter(sl.port, "queue_timeouts"), 1);
  e2e_conn_close(holder);
  e2e_sse_free(&hs);
  nu_resp_free(&hh);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* The engine restarts while requests arrive: they wait for it instead of
 * failing, and every one is answered whole once it is back. */
static void test_engine_restart_loses_no_request(void) {
  e2e_proc_t sim, sim2, sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  int port = sim.port;
  ASSERT_EQ(e2e_serve_start(&sl, cfg_of(&port, 1, 4, NULL, "", ""), NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  ASSERT_EQ(e2e_kill(&sim), 0);
  enum { N = 5 };
  nu_conn_t *c[N];
  for (int i = 0; i < N; i++) {
    c[i] = send_only(sl.port, "x-sim-tokens: 4\r\n", 1);
    ASSERT_NOT_NULL(c[i]);
  }
  ASSERT_EQ(e2e_wait_counter(sl.port, "queue_waiting", N, E2E_WAIT_MS), N);
  char listen[64];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
  const char *const argv[] = {e2e_binary(), "sim-engine", "--listen", listen, "--model", "m1", "--ttft-ms", "1", NULL};
  ASSERT_EQ(e2e_proc_start(&sim2, "sim-engine", argv, "listening on ", E2E_WAIT_MS), 0);
  for (int i = 0; i < N; i++) {
    nu_resp_t r;
    e2e_sse_t s;
    ASSERT_EQ(nu_read_head(c[i], &r, E2E_WAIT_MS), 0);
    ASSERT_EQ(r.status, 200);
    e2e_sse_init(&s, CHUNK);
    s.chunked = r.chunked;
    ASSERT_EQ(e2e_sse_read(c[i], &s, E2E_WAIT_MS), 0);
    ASSERT(e2e_sse_kinds_are(&s, 1, 4, 0));
    e2e_sse_free(&s);
    nu_resp_free(&r);
    e2e_conn_close(c[i]);
  }
  ASSERT_EQ(e2e_wait_sim_stat(sim2.port, "completed", N, E2E_WAIT_MS), N);
  ASSERT_EQ(e2e_counter(sl.port, "queue_timeouts"), 0);
  ASSERT_EQ(e2e_counter(sl.port, "errors_no_ready_endpoint"), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim2), 0);
}

/* An engine's 429 goes to another endpoint before the first token and cuts
 * the refusing endpoint's limit; when every engine refuses, the client gets
 * 429 with the engines' Retry-After. */
static void test_engine_429_retried_then_passed_on(void) {
  e2e_proc_t a, b, sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&a, sim_args), 0);
  ASSERT_EQ(e2e_sim_start(&b, sim_args), 0);
  int ports[2] = {a.port, b.port};
  /* The fixed rule keeps what C cut. */
  ASSERT_EQ(e2e_serve_start(&sl, cfg_of(ports, 2, 4, "fixed", "", ""), NULL), 0);
  ASSERT_EQ(e2e_wait_endpoints_ready(sl.port, 2, E2E_WAIT_MS), 1);
  ASSERT_EQ(e2e_sim_control(a.port, "{\"refuse\":429}"), 200);
  nu_resp_t r;
  e2e_sse_t s;
  char body[512];
  /* Least loaded places the first attempt on a (tie: the lower id). */
  ASSERT_EQ(e2e_stream(sl.port, CHAT, "x-sim-tokens: 3\r\n", e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &r, &s,
                       CHUNK, E2E_WAIT_MS),
            200);
  ASSERT(e2e_sse_kinds_are(&s, 1, 3, 0));
  e2e_sse_free(&s);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_counter(sl.port, "upstream_rate_limited"), 1);
  ASSERT_EQ(e2e_sim_stat(b.port, "completed"), 1);
  ASSERT_EQ(endpoint_num(sl.port, 0, "limit"), 3); /* 4 x 0.75 */
  ASSERT_EQ(endpoint_num(sl.port, 1, "limit"), 4);
  ASSERT_EQ(e2e_counter(sl.port, "limit_cuts"), 1);

  /* Both refuse: 429 to the client, with the Retry-After they gave. */
  ASSERT_EQ(e2e_sim_control(b.port, "{\"refuse\":429}"), 200);
  ASSERT_EQ(e2e_stream(sl.port, CHAT, "", e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &r, &s, CHUNK,
                       E2E_WAIT_MS),
            429);
  ASSERT(e2e_is_error_body(r.body, "rate_limited"));
  ASSERT_NOT_NULL(nu_header(&r, "retry-after"));
  ASSERT_STR_EQ(nu_header(&r, "retry-after"), "1");
  ASSERT_STR_EQ(nu_header(&r, "retry-after-ms"), "1000");
  e2e_sse_free(&s);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_counter(sl.port, "upstream_rate_limited"), 1 + 3); /* three attempts, all refused */
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&a), 0);
  ASSERT_EQ(e2e_stop(&b), 0);
}

/* Past the stream-buffer budget new streams wait: a slow reader pins more
 * than the budget, the next request queues until it has read everything. */
static void test_memory_budget_queues_new_streams(void) {
  e2e_proc_t sim, sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  ASSERT_EQ(e2e_serve_start(&sl, cfg_of(&sim.port, 1, 8, NULL, "", ",\"admission\":{\"memory_budget_bytes\":32768}"),
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  nu_conn_t *slow = e2e_conn_open(sl.port, 16384);
  ASSERT_NOT_NULL(slow);
  char body[512];
  nu_resp_t head;
  e2e_sse_t s;
  ASSERT_EQ(e2e_sse_start(slow, CHAT, "x-sim-tokens: 20000\r\nx-sim-itl-ms: 0\r\n",
                          e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, E2E_WAIT_MS),
            200);
  /* Nothing more is read: sluice pauses its reading of the engine with its
   * write queue (and so its buffers) over the budget. */
  ASSERT_GE(e2e_wait_counter(sl.port, "upstream_read_pauses", 1, E2E_WAIT_MS), 1);
  cJSON *h = e2e_get_json(sl.port, "/health", NULL);
  double mem = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(h, "admission"), "stream_memory_bytes")
                   ->valuedouble;
  cJSON_Delete(h);
  ASSERT_GE(mem, 32768);
  nu_resp_t r;
  e2e_sse_t s2;
  nu_conn_t *c = send_only(sl.port, "x-sim-tokens: 3\r\n", 1);
  ASSERT_NOT_NULL(c);
  ASSERT_GE(e2e_wait_counter(sl.port, "memory_budget_waits", 1, E2E_WAIT_MS), 1);
  ASSERT_EQ(e2e_counter(sl.port, "queue_waiting"), 1);
  /* The slow reader reads it all; then the waiting request goes. */
  ASSERT_EQ(e2e_sse_read(slow, &s, E2E_WAIT_MS), 0);
  ASSERT(e2e_sse_kinds_are(&s, 1, 20000, 0));
  e2e_sse_free(&s);
  nu_resp_free(&head);
  e2e_conn_close(slow);
  ASSERT_EQ(nu_read_head(c, &r, E2E_WAIT_MS), 0);
  ASSERT_EQ(r.status, 200);
  e2e_sse_init(&s2, CHUNK);
  s2.chunked = r.chunked;
  ASSERT_EQ(e2e_sse_read(c, &s2, E2E_WAIT_MS), 0);
  ASSERT(e2e_sse_kinds_are(&s2, 1, 3, 0));
  e2e_sse_free(&s2);
  nu_resp_free(&r);
  e2e_conn_close(c);
  ASSERT_EQ(e2e_counter(sl.port, "queue_placed"), 1);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* A client that holds its engine back while another request waits for the
 * place is reported to the limit rule, which cancels it (gradient's
 * slow_client); the waiting request then goes. */
static void test_slow_client_gives_way(void) {
  e2e_proc_t sim, sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  /* The gradient rule, its limit held at 1 by min = max = 1. */
  char pool[] = ",\"limits\":{\"min\":1,\"max\":1}";
  snprintf(cfgbuf, sizeof(cfgbuf),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"slots\":1%s,\"endpoints\":[{\"url\":\"http://127.0.0.1:%d\"}]}],"
           "\"limits\":{\"rule\":\"gradient\",\"interval_ms\":50},\"admission\":{\"slow_client_ms\":100},"
           "\"upstream\":{\"idle_timeout_ms\":600000}}",
           pool, sim.port);
  ASSERT_EQ(e2e_serve_start(&sl, cfgbuf, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  nu_conn_t *slow = e2e_conn_open(sl.port, 16384);
  ASSERT_NOT_NULL(slow);
  char body[512];
  nu_resp_t head;
  e2e_sse_t s;
  ASSERT_EQ(e2e_sse_start(slow, CHAT, "x-sim-tokens: 20000\r\nx-sim-itl-ms: 0\r\n",
                          e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, E2E_WAIT_MS),
            200);
  ASSERT_GE(e2e_wait_counter(sl.port, "upstream_read_pauses", 1, E2E_WAIT_MS), 1);
  nu_conn_t *c = send_only(sl.port, "x-sim-tokens: 3\r\n", 1);
  ASSERT_NOT_NULL(c);
  ASSERT_GE(e2e_wait_counter(sl.port, "slow_clients_cancelled", 1, E2E_WAIT_MS), 1);
  /* The slow client reads what was queued for it, then one error event. */
  int rc = e2e_sse_read(slow, &s, E2E_WAIT_MS);
  ASSERT(rc == 0 || rc == -1);
  ASSERT_EQ(s.nerror, 1);
  ASSERT_STR_EQ(s.error_code, "slow_client");
  ASSERT_EQ(s.ndone, 0);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  e2e_conn_close(slow);
  nu_resp_t r;
  e2e_sse_t s2;
  ASSERT_EQ(nu_read_head(c, &r, E2E_WAIT_MS), 0);
  ASSERT_EQ(r.status, 200);
  e2e_sse_init(&s2, CHUNK);
  s2.chunked = r.chunked;
  ASSERT_EQ(e2e_sse_read(c, &s2, E2E_WAIT_MS), 0);
  ASSERT(e2e_sse_kinds_are(&s2, 1, 3, 0));
  e2e_sse_free(&s2);
  nu_resp_free(&r);
  e2e_conn_close(c);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* Bad input: a priority the operator's header does not know is a 400 that
 * names the header; a bad admission config refuses the start. */
static void test_bad_priority_and_config(void) {
  e2e_proc_t sim, sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  ASSERT_EQ(e2e_serve_start(&sl, cfg_of(&sim.port, 1, 2, NULL, "", ",\"admission\":{\"priority_header\":\"x-priority\"}"),
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  nu_resp_t r;
  char body[512];
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, "x-priority: urgent\r\n", e2e_chat_body(body, sizeof(body), "m1", 0, NULL),
                     &r, E2E_WAIT_MS),
            400);
  ASSERT(e2e_is_error_body(r.body, "x-priority"));
  nu_resp_free(&r);
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, "x-priority: high\r\nx-sim-tokens: 2\r\n",
                     e2e_chat_body(body, sizeof(body), "m1", 0, NULL), &r, E2E_WAIT_MS),
            200);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_stop(&sl), 0);

  static const char *const bad[][2] = {
      {",\"admission\":{\"order\":\"random\"}", "admission.order"},
      {",\"admission\":{\"queue_sizes\":3}", "admission.queue_sizes"},
      {",\"limits\":{\"rule\":\"no_such_rule\"}", "limits.rule"},
      {",\"limits\":{\"cut\":2}", "limits.cut"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    e2e_proc_t p;
    ASSERT_EQ(e2e_serve_spawn(&p, cfg_of(&sim.port, 1, 2, NULL, "", bad[i][0]), NULL), 0);
    ASSERT_EQ(e2e_wait_exit(&p, E2E_WAIT_MS), 0);
    ASSERT(WIFEXITED(p.status) && WEXITSTATUS(p.status) != 0);
    char *log = e2e_log_text(&p);
    if (log == NULL || strstr(log, bad[i][1]) == NULL)
      fprintf(stderr, "     case %zu: no \"%s\" in: %s\n", i, bad[i][1], log ? log : "(no log)");
    ASSERT(log != NULL && strstr(log, bad[i][1]) != NULL);
    free(log);
  }
  ASSERT_EQ(e2e_stop(&sim), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 400);
  E2E_RUN(test_burst_drains_in_priority_order);
  E2E_RUN(test_queued_client_leaves_at_once);
  E2E_RUN(test_deadline_before_headers_is_503);
  E2E_RUN(test_deadline_after_headers_is_an_event);
  E2E_RUN(test_engine_restart_loses_no_request);
  E2E_RUN(test_engine_429_retried_then_passed_on);
  E2E_RUN(test_memory_budget_queues_new_streams);
  E2E_RUN(test_slow_client_gives_way);
  E2E_RUN(test_bad_priority_and_config);
  return SL_TEST_EXIT();
}
