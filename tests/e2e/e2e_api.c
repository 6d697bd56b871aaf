/* e2e_api.c: the client API end to end, against the real sluice binary.
 *
 * Streaming and non-streaming chat and legacy completions (event sequence,
 * chunk shapes, usage only when asked, the same text either way), keep-alive
 * reuse toward the client and toward the engine, heartbeats before a slow
 * first token, a battery of bad requests answered with their own statuses
 * while a good stream runs untouched beside them, and the Authorization
 * header (the client's is dropped, the pool's api_key is sent) seen by a
 * scripted fake engine that runs in this process.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define COMPL "/v1/completions"
#define CHUNK "chat.completion.chunk"

/* One pool "p" serving m1 from one in-process simulated engine; `top` adds
 * top-level members (starting with ','). */
static const char *one_sim_config(char *buf, size_t cap, const char *top) {
  snprintf(buf, cap,
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
           "\"endpoints\":[{\"sim\":{\"ttft_ms\":2,\"itl_ms\":1,\"itl_jitter\":0}}]}]%s}",
           top ? top : "");
  return buf;
}

static int start_one_sim(e2e_proc_t *sl, const char *top) {
  char cfg[2048];
  if (e2e_serve_start(sl, one_sim_config(cfg, sizeof(cfg), top), NULL) < 0) return -1;
  return e2e_wait_ready(sl->port, 200, E2E_WAIT_MS);
}

/* ---- 1: streaming and non-streaming, chat and completions, usage ---- */

static void test_chat_stream_matches_whole(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_one_sim(&sl, NULL), 0);
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  int st = e2e_stream(sl.port, CHAT, "x-sim-tokens: 7\r\nx-sim-seed: 42\r\n", e2e_chat_body(body, sizeof(body), "m1", 1, NULL),
                      &head, &s, CHUNK, E2E_WAIT_MS);
  ASSERT_EQ(st, 200);
  ASSERT_NOT_NULL(nu_header(&head, "content-type"));
  ASSERT(strncmp(nu_header(&head, "content-type"), "text/event-stream", 17) == 0);
  ASSERT_EQ(s.read_rc, 0);
  ASSERT_EQ(s.body_ended, 1);
  ASSERT_EQ(s.framing_errors, 0);
  ASSERT(e2e_sse_kinds_are(&s, 1, 7, 0)); /* role, 7 tokens, finish, [DONE] */
  ASSERT_EQ(s.wrong_object, 0);
  ASSERT_EQ(s.nbad, 0);
  ASSERT_EQ(s.event_lines, 0);
  ASSERT_EQ(s.other_lines, 0);
  ASSERT_EQ(s.nusage, 0);
  ASSERT_STR_EQ(s.finish_reason, "stop");
  ASSERT_GT(s.content_len, 0);
  char *streamed = strdup(s.content);
  e2e_sse_free(&s);
  nu_resp_free(&head);

  /* The same seed without streaming: one JSON object with the same text. */
  nu_resp_t r;
  st = e2e_http(sl.port, "POST", CHAT, "x-sim-tokens: 7\r\nx-sim-seed: 42\r\n",
                e2e_chat_body(body, sizeof(body), "m1", 0, NULL), &r, E2E_WAIT_MS);
  ASSERT_EQ(st, 200);
  ASSERT_NOT_NULL(nu_header(&r, "content-type"));
  ASSERT(strncmp(nu_header(&r, "content-type"), "application/json", 16) == 0);
  cJSON *doc = cJSON_Parse(r.body);
  ASSERT_NOT_NULL(doc);
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "object")), "chat.completion");
  const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "choices"), 0);
  const cJSON *msg = cJSON_GetObjectItem(c0, "message");
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(msg, "role")), "assistant");
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(msg, "content")), streamed);
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(c0, "finish_reason")), "stop");
  ASSERT_EQ(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "usage"), "completion_tokens")), 7);
  cJSON_Delete(doc);
  nu_resp_free(&r);

  /* Another seed gives another text, so the comparison above means something. */
  st = e2e_stream(sl.port, CHAT, "x-sim-tokens: 7\r\nx-sim-seed: 43\r\n", e2e_chat_body(body, sizeof(body), "m1", 1, NULL),
                  &head, &s, CHUNK, E2E_WAIT_MS);
  ASSERT_EQ(st, 200);
  ASSERT_EQ(s.ncontent, 7);
  ASSERT(strcmp(s.content, streamed) != 0);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  free(streamed);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_completions_stream_matches_whole(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_one_sim(&sl, NULL), 0);
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  int st = e2e_stream(sl.port, COMPL, "x-sim-tokens: 9\r\nx-sim-seed: 7\r\n",
                      e2e_completion_body(body, sizeof(body), "m1", 1, NULL), &head, &s, "text_completion",
                                          E2E_WAIT_MS);
  ASSERT_EQ(st, 200);
  ASSERT_EQ(s.read_rc, 0);
  ASSERT(e2e_sse_kinds_are(&s, 0, 9, 0)); /* legacy completions have no role chunk */
  ASSERT_EQ(s.wrong_object, 0);
  ASSERT_EQ(s.event_lines, 0);
  ASSERT_EQ(s.other_lines, 0);
  ASSERT_GT(s.content_len, 0);
  char *streamed = strdup(s.content);
  e2e_sse_free(&s);
  nu_resp_free(&head);

  nu_resp_t r;
  st = e2e_http(sl.port, "POST", COMPL, "x-sim-tokens: 9\r\nx-sim-seed: 7\r\n",
                e2e_completion_body(body, sizeof(body), "m1", 0, NULL), &r, E2E_WAIT_MS);
  ASSERT_EQ(st, 200);
  cJSON *doc = cJSON_Parse(r.body);
  ASSERT_NOT_NULL(doc);
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "object")), "text_completion");
  const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "choices"), 0);
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(c0, "text")), streamed);
  ASSERT_EQ(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "usage"), "completion_tokens")), 9);
  cJSON_Delete(doc);
  nu_resp_free(&r);
  free(streamed);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_usage_only_when_asked(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_one_sim(&sl, NULL), 0);
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  const char *usage = ",\"stream_options\":{\"include_usage\":true}";
  int st = e2e_stream(sl.port, CHAT, "x-sim-tokens: 5\r\n", e2e_chat_body(body, sizeof(body), "m1", 1, usage), &head, &s,
                      CHUNK, E2E_WAIT_MS);
  ASSERT_EQ(st, 200);
  ASSERT(e2e_sse_kinds_are(&s, 1, 5, 1)); /* ... finish, usage (choices: []), [DONE] */
  ASSERT_EQ(s.usage_completion_tokens, 5);
  ASSERT_EQ(s.wrong_object, 0);
  e2e_sse_free(&s);
  nu_resp_free(&head);

  st = e2e_stream(sl.port, COMPL, "x-sim-tokens: 4\r\n", e2e_completion_body(body, sizeof(body), "m1", 1, usage), &head,
                  &s, "text_completion", E2E_WAIT_MS);
  ASSERT_EQ(st, 200);
  ASSERT(e2e_sse_kinds_are(&s, 0, 4, 1));
  ASSERT_EQ(s.usage_completion_tokens, 4);
  e2e_sse_free(&s);
  nu_resp_free(&head);

  /* include_usage false: no usage chunk, though sluice always asks the
   * engine for one. */
  st = e2e_stream(sl.port, CHAT, "x-sim-tokens: 5\r\n",
                  e2e_chat_body(body, sizeof(body), "m1", 1, ",\"stream_options\":{\"include_usage\":false}"), &head,
                  &s, CHUNK, E2E_WAIT_MS);
  ASSERT_EQ(st, 200);
  ASSERT(e2e_sse_kinds_are(&s, 1, 5, 0));
  ASSERT_EQ(s.nusage, 0);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- 2: keep-alive on both sides ---- */

/* Polls GET /health on the open connection c (so that no other client
 * connection is made) until the first endpoint has an idle upstream
 * connection.  Returns 1 when so, 0 after timeout_ms. */
static int wait_idle_upstream(nu_conn_t *c, int timeout_ms) {
  int64_t end = nu_now_ms() + timeout_ms;
  for (;;) {
    nu_resp_t r;
    if (e2e_http_on(c, "GET", "/health", NULL, NULL, &r, timeout_ms) != 200) return 0;
    cJSON *doc = cJSON_Parse(r.body);
    const cJSON *ep = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "pools"), 0), "endpoints"), 0);
    const cJSON *idle = cJSON_GetObjectItem(ep, "idle_connections");
    int ok = cJSON_IsNumber(idle) && idle->valuedouble >= 1;
    cJSON_Delete(doc);
    nu_resp_free(&r);
    if (ok) return 1;
    if (nu_now_ms() >= end) return 0;
    usleep(10 * 1000);
  }
}

static int64_t counter_of(const nu_resp_t *r, const char *name) {
  cJSON *doc = cJSON_Parse(r->body);
  const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "counters"), name);
  int64_t out = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
  cJSON_Delete(doc);
  return out;
}

static void test_keepalive_both_sides(void) {
  e2e_proc_t sl;
  /* One health check at start only, so the engine's connection count is
   * about requests. */
  ASSERT_EQ(start_one_sim(&sl, ",\"health\":{\"interval_ms\":3600000}"), 0);
  ASSERT_EQ(sl.nsims, 1);
  int sim = sl.sim_ports[0];
  int64_t sim_conns0 = e2e_sim_stat(sim, "connections_accepted");
  ASSERT_GE(sim_conns0, 0);

  nu_conn_t *c = e2e_conn_open(sl.port, 0);
  ASSERT_NOT_NULL(c);
  nu_resp_t r;
  ASSERT_EQ(e2e_http_on(c, "GET", "/health", NULL, NULL, &r, E2E_WAIT_MS), 200);
  int64_t accepted0 = counter_of(&r, "connections_accepted");
  nu_resp_free(&r);
  ASSERT_GT(accepted0, 0);

  enum { NREQ = 6 };
  char body[1024];
  for (int i = 0; i < NREQ; i++) {
    /* The previous answer's engine connection is back in the idle list
     * before the next request: the client can read [DONE] before sluice
     * has read the engine's end of body, and a request sent in that moment
     * rightly takes a new connection. */
    if (i > 0) ASSERT(wait_idle_upstream(c, E2E_WAIT_MS));
    if (i % 2 == 0) {
      nu_resp_t head;
      e2e_sse_t s;
      ASSERT_EQ(e2e_sse_start(c, CHAT, "x-sim-tokens: 3\r\n", e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s,
                              CHUNK, E2E_WAIT_MS),
                200);
      ASSERT_EQ(e2e_sse_read(c, &s, E2E_WAIT_MS), 0);
      ASSERT(e2e_sse_kinds_are(&s, 1, 3, 0));
      e2e_sse_free(&s);
      nu_resp_free(&head);
    } else {
      ASSERT_EQ(e2e_http_on(c, "POST", CHAT, "x-sim-tokens: 3\r\n", e2e_chat_body(body, sizeof(body), "m1", 0, NULL), &r,
                            E2E_WAIT_MS),
                200);
      ASSERT(strstr(r.body, "\"chat.completion\"") != NULL);
      nu_resp_free(&r);
    }
  }
  /* Still the same client connection: sluice accepted no other. */
  ASSERT_EQ(e2e_http_on(c, "GET", "/health", NULL, NULL, &r, E2E_WAIT_MS), 200);
  ASSERT_EQ(counter_of(&r, "connections_accepted"), accepted0);
  ASSERT_GT(counter_of(&r, "upstream_keepalive_reuses"), 0);
  nu_resp_free(&r);
  e2e_conn_close(c);

  /* The engine's count includes this query's own connection. */
  int64_t sim_conns = e2e_sim_stat(sim, "connections_accepted") - sim_conns0 - 1;
  int64_t sim_reqs = e2e_sim_stat(sim, "requests");
  fprintf(stderr, "     %d requests on one client connection took %lld new engine connection(s)\n", NREQ,
          (long long)sim_conns);
  ASSERT_EQ(sim_reqs, NREQ);
  ASSERT_LE(sim_conns, 1); /* every request after the first reused it */
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- 7: heartbeats before a slow first token ---- */

static void test_heartbeats(void) {
  /* A standalone engine that the test pauses: the first token cannot come
   * before the test has seen the heartbeats and lets the engine go on
   * (a 1 s TTFT against 200 ms heartbeats depended on the timers' pace). */
  e2e_proc_t sim, sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "2", "--itl-ms", "1", "--itl-jitter", "0", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:%d\"}]}],"
           "\"heartbeat_ms\":200,\"health\":{\"interval_ms\":3600000},"
           "\"upstream\":{\"first_token_timeout_ms\":3600000}}",
           sim.port);
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  ASSERT_EQ(e2e_pause(&sim, E2E_WAIT_MS), 0);
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  nu_conn_t *c = e2e_sse_open(sl.port, CHAT, "x-sim-tokens: 3\r\n", e2e_chat_body(body, sizeof(body), "m1", 1, NULL),
                              &head, &s, CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(c);
  /* The headers come with the first heartbeat, long before the token. */
  ASSERT_EQ(head.status, 200);
  ASSERT(strncmp(nu_header(&head, "content-type"), "text/event-stream", 17) == 0);
  ASSERT_EQ(e2e_sse_read_comments(c, &s, 2, E2E_WAIT_MS), 0);
  ASSERT_EQ(s.nevents, 0);
  ASSERT_EQ(e2e_resume(&sim), 0);
  ASSERT_EQ(e2e_sse_read(c, &s, E2E_WAIT_MS), 0);
  e2e_conn_close(c);
  ASSERT_GE(s.comments_before_data, 2);
  ASSERT(e2e_sse_kinds_are(&s, 1, 3, 0));
  ASSERT_EQ(s.event_lines, 0);
  ASSERT_EQ(s.other_lines, 0);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_GE(e2e_counter(sl.port, "heartbeats_sent"), 2);

  /* Not streaming: no heartbeat, the body is one plain JSON object. */
  int64_t hb0 = e2e_counter(sl.port, "heartbeats_sent");
  nu_resp_t r;
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, "x-sim-ttft-ms: 1000\r\nx-sim-tokens: 3\r\n",
                     e2e_chat_body(body, sizeof(body), "m1", 0, NULL), &r, E2E_WAIT_MS),
            200);
  ASSERT(strncmp(nu_header(&r, "content-type"), "application/json", 16) == 0);
  ASSERT_EQ(r.body[0], '{');
  cJSON *doc = cJSON_Parse(r.body);
  ASSERT_NOT_NULL(doc);
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "object")), "chat.completion");
  cJSON_Delete(doc);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_counter(sl.port, "heartbeats_sent"), hb0);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* ---- 8: bad requests beside a good stream ---- */

/* Sends raw bytes on a new connection and reads one response. */
static int raw_exchange(int port, const char *raw, size_t len, nu_resp_t *r, int timeout_ms) {
  memset(r, 0, sizeof(*r));
  nu_conn_t *c = e2e_conn_open(port, 0);
  if (c == NULL) return -1;
  int st = -1;
  /* The server may answer and close before it has read everything (431):
   * read the answer even if the send failed. */
  (void)nu_send(c->fd, raw, len);
  if (nu_read_response(c, r, timeout_ms) == 0) st = r->status;
  e2e_conn_close(c);
  return st;
}

/* POSTs body to path; checks the status and an error body mentioning what. */
static int expect_error(int port, const char *method, const char *path, const char *body, int status,
                        const char *mention) {
  nu_resp_t r;
  int st = e2e_http(port, method, path, NULL, body, &r, E2E_WAIT_MS);
  int ok = st == status && e2e_is_error_body(r.body, mention);
  if (!ok) fprintf(stderr, "  %s %s %s: got %d, want %d: %.300s\n", method, path, body ? body : "", st, status,
                   r.body ? r.body : "");
  nu_resp_free(&r);
  return ok;
}

static int expect_raw_error(int port, const char *raw, size_t len, int status) {
  nu_resp_t r;
  int st = raw_exchange(port, raw, len, &r, E2E_WAIT_MS);
  int ok = st == status && e2e_is_error_body(r.body, NULL);
  if (!ok) fprintf(stderr, "  raw request %.40s...: got %d, want %d\n", raw, st, status);
  nu_resp_free(&r);
  return ok;
}

static void test_bad_requests_beside_good_stream(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_one_sim(&sl, ",\"http\":{\"max_body_bytes\":4096,\"header_timeout_ms\":500}"), 0);
  char body[1024];
  nu_resp_t ghead;
  e2e_sse_t good;
  nu_conn_t *gc = e2e_sse_open(sl.port, CHAT, "x-sim-tokens: 200\r\nx-sim-itl-ms: 5\r\n",
                               e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &ghead, &good, CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(gc);
  ASSERT_EQ(ghead.status, 200);

  /* A half request, then silence: answered 408 after the header timeout.
   * Started first so that its wait overlaps the others. */
  nu_conn_t *half = e2e_conn_open(sl.port, 0);
  ASSERT_NOT_NULL(half);
  ASSERT_EQ(nu_send_str(half->fd, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-"), 0);

  int port = sl.port;
  ASSERT(expect_error(port, "POST", CHAT, "{\"model\": \"m1\", \"messages\": [", 400, "JSON"));
  ASSERT(expect_error(port, "POST", CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 400, "model"));
  ASSERT(expect_error(port, "POST", CHAT,
                      "{\"model\":\"m1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":-5}", 400,
                      "max_tokens"));
  ASSERT(expect_error(port, "POST", CHAT,
                      "{\"model\":\"m1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                      "\"stream_options\":{\"include_usage\":true}}",
                      400, "stream_options"));
  ASSERT(expect_error(port, "POST", CHAT,
                      "{\"model\":\"m1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2}", 400, "'n'"));
  ASSERT(expect_error(port, "POST", CHAT,
                      "{\"model\":\"no-such-model\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 404,
                      "no-such-model"));
  ASSERT(expect_error(port, "POST", COMPL, "{\"model\":\"m1\"}", 400, "prompt"));

  /* Wrong method: 405 with Allow. */
  nu_resp_t r;
  ASSERT_EQ(e2e_http(port, "GET", CHAT, NULL, NULL, &r, E2E_WAIT_MS), 405);
  ASSERT_NOT_NULL(nu_header(&r, "allow"));
  ASSERT_STR_EQ(nu_header(&r, "allow"), "POST");
  ASSERT(e2e_is_error_body(r.body, "GET"));
  nu_resp_free(&r);
  ASSERT(expect_error(port, "GET", "/v2/nothing/here", NULL, 404, "/v2/nothing/here"));

  /* Oversize headers: 431. */
  size_t big = 20000;
  char *raw = malloc(big + 256);
  int n = snprintf(raw, 256, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ");
  memset(raw + n, 'a', big);
  memcpy(raw + n + big, "\r\n\r\n", 5);
  int ok431 = expect_raw_error(port, raw, strlen(raw), 431);
  free(raw);
  ASSERT(ok431);
  /* A declared body past max_body_bytes: 413 at once, without the body. */
  static const char too_big[] =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      "Content-Length: 100000\r\n\r\n";
  ASSERT(expect_raw_error(port, too_big, sizeof(too_big) - 1, 413));
  static const char cl_te[] =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
  ASSERT(expect_raw_error(port, cl_te, sizeof(cl_te) - 1, 400));
  static const char garbage[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n";
  ASSERT(expect_raw_error(port, garbage, sizeof(garbage) - 1, 400));

  ASSERT_EQ(nu_read_response(half, &r, E2E_WAIT_MS), 0);
  ASSERT_EQ(r.status, 408);
  ASSERT(e2e_is_error_body(r.body, NULL));
  nu_resp_free(&r);
  ASSERT_EQ(nu_wait_closed(half->fd, E2E_WAIT_MS), 1);
  e2e_conn_close(half);

  /* The good stream went on untouched. */
  ASSERT_EQ(e2e_sse_read(gc, &good, E2E_WAIT_MS), 0);
  e2e_conn_close(gc);
  ASSERT(e2e_sse_kinds_are(&good, 1, 200, 0));
  ASSERT_EQ(good.nerror, 0);
  ASSERT_EQ(good.framing_errors, 0);
  e2e_sse_free(&good);
  nu_resp_free(&ghead);

  ASSERT_GE(e2e_counter(port, "errors_bad_request"), 7);
  ASSERT_GE(e2e_counter(port, "errors_header_too_large"), 1);
  ASSERT_GE(e2e_counter(port, "errors_body_too_large"), 1);
  ASSERT_GE(e2e_counter(port, "errors_client_timeout"), 1);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- 10: Authorization: the pool's key goes upstream, the client's never ---- */

#define FAKE_MAX_CONNS 16

typedef struct {
  int lfd, port;
  pthread_t thread;
  atomic_int stop;
  pthread_mutex_t mu;
  char headers[8192]; /* header block of the last completion request */
  char body[4096];    /* its body */
  int completions;
  int with_pool_key;     /* completion requests that carried the pool's api_key */
  int with_client_token; /* completion requests that carried the client's token anywhere */
  int health_checks;
} fake_engine_t;

static const char fake_sse[] =
    "data: {\"id\":\"f1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"fm\",\"choices\":"
    "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"f1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"fm\",\"choices\":"
    "[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"f1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"fm\",\"choices\":"
    "[{\"index\":0,\"delta\":{\"content\":\" fake\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"f1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"fm\",\"choices\":"
    "[{\"index\":0,\"delta\":{\"content\":\" world\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"f1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"fm\",\"choices\":"
    "[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    "data: {\"id\":\"f1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"fm\",\"choices\":[],"
    "\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":3,\"total_tokens\":7}}\n\n"
    "data: [DONE]\n\n";

/* 1 if the header block has a line "name: value" (name case-insensitive). */
static int has_header_line(const char *headers, const char *name, const char *value) {
  size_t nl = strlen(name);
  for (const char *p = headers; p && *p; p = strstr(p, "\r\n") ? strstr(p, "\r\n") + 2 : NULL) {
    if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (*v == ' ') v++;
      if (strncmp(v, value, strlen(value)) == 0 && v[strlen(value)] == '\r') return 1;
    }
  }
  return 0;
}

/* Answers one complete request in buf[0..len); returns the bytes it used, 0
 * if the request is not complete yet. */
static size_t fake_handle(fake_engine_t *f, int fd, const char *buf, size_t len) {
  const char *end = memmem(buf, len, "\r\n\r\n", 4);
  if (end == NULL) return 0;
  size_t hlen = (size_t)(end - buf) + 4;
  size_t clen = 0;
  for (const char *p = buf; p < end; p++) {
    if ((p == buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) clen = strtoul(p + 15, NULL, 10);
  }
  if (len < hlen + clen) return 0;
  char out[4096];
  int n;
  if (strncmp(buf, "GET /health ", 12) == 0) {
    n = snprintf(out, sizeof(out),
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}");
    pthread_mutex_lock(&f->mu);
    f->health_checks++;
    pthread_mutex_unlock(&f->mu);
  } else if (strncmp(buf, "POST /v1/chat/completions ", 26) == 0 &&
             memmem(buf + hlen, clen, "\"fm-echo\"", 9) != NULL) {
    /* An engine that quotes the credential it got in its error reply. */
    char auth[256] = "";
    const char *a = memmem(buf, hlen, "Authorization: ", 15);
    if (a) sscanf(a + 15, "%255[^\r]", auth);
    char msg[512];
    int ml = snprintf(msg, sizeof(msg), "{\"error\":{\"message\":\"invalid api key: %s\",\"type\":\"auth\"}}", auth);
    n = snprintf(out, sizeof(out),
                 "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", ml, msg);
  } else if (strncmp(buf, "POST /v1/chat/completions ", 26) == 0) {
    pthread_mutex_lock(&f->mu);
    size_t hl = hlen < sizeof(f->headers) ? hlen : sizeof(f->headers) - 1;
    memcpy(f->headers, buf, hl);
    f->headers[hl] = '\0';
    size_t bl = clen < sizeof(f->body) ? clen : sizeof(f->body) - 1;
    memcpy(f->body, buf + hlen, bl);
    f->body[bl] = '\0';
    f->completions++;
    if (has_header_line(f->headers, "authorization", "Bearer pool-secret-123")) f->with_pool_key++;
    if (memmem(buf, hlen + clen, "client-token-xyz", 16) != NULL) f->with_client_token++;
    pthread_mutex_unlock(&f->mu);
    n = snprintf(out, sizeof(out),
                 "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "%zx\r\n%s\r\n0\r\n\r\n",
                 sizeof(fake_sse) - 1, fake_sse);
  } else {
    n = snprintf(out, sizeof(out), "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  }
  nu_send(fd, out, (size_t)n);
  return hlen + clen;
}

static void *fake_main(void *arg) {
  fake_engine_t *f = arg;
  struct pollfd pfd[FAKE_MAX_CONNS + 1];
  char *bufs[FAKE_MAX_CONNS + 1] = {0};
  size_t lens[FAKE_MAX_CONNS + 1] = {0};
  int nfds = 1;
  pfd[0].fd = f->lfd;
  pfd[0].events = POLLIN;
  while (!atomic_load(&f->stop)) {
    int r = poll(pfd, (nfds_t)nfds, 50);
    if (r <= 0) continue;
    if ((pfd[0].revents & POLLIN) && nfds <= FAKE_MAX_CONNS) {
      int fd = accept(f->lfd, NULL, NULL);
      if (fd >= 0) {
        pfd[nfds].fd = fd;
        pfd[nfds].events = POLLIN;
        pfd[nfds].revents = 0;
        bufs[nfds] = malloc(65536);
        lens[nfds] = 0;
        nfds++;
      }
    }
    for (int i = 1; i < nfds; i++) {
      if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = recv(pfd[i].fd, bufs[i] + lens[i], 65536 - lens[i], 0);
      if (got <= 0) {
        close(pfd[i].fd);
        free(bufs[i]);
        pfd[i] = pfd[nfds - 1];
        bufs[i] = bufs[nfds - 1];
        lens[i] = lens[nfds - 1];
        nfds--;
        i--;
        continue;
      }
      lens[i] += (size_t)got;
      size_t used;
      while ((used = fake_handle(f, pfd[i].fd, bufs[i], lens[i])) > 0) {
        memmove(bufs[i], bufs[i] + used, lens[i] - used);
        lens[i] -= used;
      }
    }
  }
  for (int i = 1; i < nfds; i++) {
    close(pfd[i].fd);
    free(bufs[i]);
  }
  return NULL;
}

static int fake_start(fake_engine_t *f) {
  memset(f, 0, sizeof(*f));
  pthread_mutex_init(&f->mu, NULL);
  f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof(a);
  if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(f->lfd, 16) < 0 ||
      getsockname(f->lfd, (struct sockaddr *)&a, &al) < 0)
    return -1;
  f->port = ntohs(a.sin_port);
  return pthread_create(&f->thread, NULL, fake_main, f) == 0 ? 0 : -1;
}

static void fake_stop(fake_engine_t *f) {
  atomic_store(&f->stop, 1);
  pthread_join(f->thread, NULL);
  close(f->lfd);
  pthread_mutex_destroy(&f->mu);
}

static fake_engine_t fake;

static void test_authorization_not_forwarded(void) {
  ASSERT_EQ(fake_start(&fake), 0);
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"keyed\",\"models\":[\"fm\",\"fm-echo\"],\"api_key\":\"pool-secret-123\","
           "\"endpoints\":[{\"url\":\"http://127.0.0.1:%d\"}]}]}",
           fake.port);
  e2e_proc_t sl;
  int started = e2e_serve_start(&sl, cfg, NULL) == 0 && e2e_wait_ready(sl.port, 200, E2E_WAIT_MS) == 0;
  if (!started) fake_stop(&fake);
  ASSERT(started);
  char body[1024];
  const char *auth = "Authorization: Bearer client-token-xyz\r\n";
  nu_resp_t head;
  e2e_sse_t s;
  int st = e2e_stream(sl.port, CHAT, auth, e2e_chat_body(body, sizeof(body), "fm", 1, NULL), &head, &s, CHUNK,
                      E2E_WAIT_MS);
  nu_resp_t r;
  int st2 = e2e_http(sl.port, "POST", CHAT, auth, e2e_chat_body(body, sizeof(body), "fm", 0, NULL), &r, E2E_WAIT_MS);
  /* An engine that quotes the credential it received in its error: the
   * client gets the engine's 401 with the pool's key redacted, and no log
   * line carries either the pool's key or the client's token. */
  nu_resp_t r3;
  int st3 = e2e_http(sl.port, "POST", CHAT, auth, e2e_chat_body(body, sizeof(body), "fm-echo", 0, NULL), &r3,
                     E2E_WAIT_MS);
  /* The stream's log line comes after its answer: wait for it. */
  int logged = e2e_log_wait(&sl, "end=upstream_rejected", E2E_WAIT_MS, NULL, 0);
  fake_stop(&fake);
  ASSERT(logged);
  ASSERT_EQ(st3, 401);
  ASSERT(strstr(r3.body, "[redacted]") != NULL);
  ASSERT_NULL(strstr(r3.body, "pool-secret-123"));
  nu_resp_free(&r3);
  char *log = e2e_log_text(&sl);
  int leaked = strstr(log, "pool-secret-123") != NULL || strstr(log, "client-token-xyz") != NULL;
  int narrated = strstr(log, "narrate") != NULL && strstr(log, "[redacted]") != NULL;
  free(log);
  ASSERT(!leaked);
  ASSERT(narrated);
  ASSERT_EQ(st, 200);
  ASSERT(e2e_sse_kinds_are(&s, 1, 3, 0));
  ASSERT_STR_EQ(s.content, "Hello fake world");
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(st2, 200);
  cJSON *doc = cJSON_Parse(r.body);
  const cJSON *msg = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "choices"), 0), "message");
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(msg, "content")), "Hello fake world");
  cJSON_Delete(doc);
  nu_resp_free(&r);

  ASSERT_EQ(fake.completions, 2);
  ASSERT_GE(fake.health_checks, 1);

  ASSERT_EQ(fake.with_pool_key, 2);
  ASSERT_EQ(fake.with_client_token, 0);
  ASSERT(has_header_line(fake.headers, "authorization", "Bearer pool-secret-123"));
  ASSERT_NULL(strstr(fake.headers, "client-token-xyz"));
  /* Upstream always streams, even for the client's non-streaming request. */
  cJSON *ub = cJSON_Parse(fake.body);
  ASSERT_NOT_NULL(ub);
  ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(ub, "stream")));
  cJSON_Delete(ub);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* A request larger than every context serving its model is the client's
 * error (400 context_length_exceeded, naming the sizes); one that fits goes
 * through. */
static void test_context_length(void) {
  e2e_proc_t p;
  ASSERT_EQ(e2e_serve_start(&p,
                            "{\"pools\":[{\"name\":\"small\",\"models\":[\"m\"],\"context_tokens\":100,"
                            "\"endpoints\":[{\"sim\":{}}]}]}",
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_ready(p.port, 200, E2E_WAIT_MS), 0);
  char body[512];
  nu_resp_t r;
  int st = e2e_http(p.port, "POST", CHAT, NULL, e2e_chat_body(body, sizeof(body), "m", 0, ",\"max_tokens\":500"), &r,
                    E2E_WAIT_MS);
  ASSERT_EQ(st, 400);
  ASSERT(e2e_is_error_body(r.body, "context_length_exceeded"));
  ASSERT(strstr(r.body, "is 100 tokens") != NULL);
  nu_resp_free(&r);
  st = e2e_http(p.port, "POST", CHAT, "x-sim-tokens: 3\r\n",
                e2e_chat_body(body, sizeof(body), "m", 0, ",\"max_tokens\":50"), &r, E2E_WAIT_MS);
  ASSERT_EQ(st, 200);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_stop(&p), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 120);
  E2E_RUN(test_chat_stream_matches_whole);
  E2E_RUN(test_completions_stream_matches_whole);
  E2E_RUN(test_usage_only_when_asked);
  E2E_RUN(test_keepalive_both_sides);
  E2E_RUN(test_heartbeats);
  E2E_RUN(test_bad_requests_beside_good_stream);
  E2E_RUN(test_authorization_not_forwarded);
  E2E_RUN(test_context_length);
  return SL_TEST_EXIT();
}
