/* e2e_faults.c: failures on either side of a stream, end to end.
 *
 * A client that leaves mid-stream cancels the engine's request at once; an
 * engine that resets, closes early or sends an error event after some tokens
 * gives the client exactly one error event and no [DONE]; a stalled engine
 * hits the idle timeout (after tokens) or the first-token timeout (before
 * them, a 504); an engine that fails before the first token is retried on
 * another endpoint, and a fault on every attempt ends in a 502.
 */
#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"

/* One pool "p" serving m1 from one in-process simulated engine.  A failed
 * request puts its endpoint into cooldown (by design), and with a single
 * endpoint the next request would get 503 until it ends: the cooldown is
 * short here and tests wait it out between failures. */
static int start_one_sim(e2e_proc_t *sl, const char *top) {
  char cfg[2048];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
           "\"endpoints\":[{\"sim\":{\"ttft_ms\":2,\"itl_ms\":1,\"itl_jitter\":0}}]}],"
           "\"health\":{\"cooldown_base_ms\":50,\"cooldown_max_ms\":100}%s}",
           top ? top : "");
  if (e2e_serve_start(sl, cfg, NULL) < 0) return -1;
  return e2e_wait_ready(sl->port, 200, E2E_WAIT_MS);
}

/* The number after "key=" in line, or -1. */
static long field_num(const char *line, const char *key) {
  const char *p = strstr(line, key);
  return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* ---- 3: a client that disconnects cancels the engine's request ---- */

static void test_client_disconnect_cancels_engine(void) {
  e2e_proc_t sl;
  /* The engine holds the stream after 8 tokens (a stall, with the idle
   * timeout out of reach), so it is still in flight when the client
   * leaves however long the client takes (2000 tokens 10 ms apart could
   * in principle all be sent first). */
  ASSERT_EQ(start_one_sim(&sl, ",\"upstream\":{\"idle_timeout_ms\":3600000}"), 0);
  ASSERT_EQ(sl.nsims, 1);
  int sim = sl.sim_ports[0];
  ASSERT_EQ(e2e_sim_stat(sim, "client_closed_mid_stream"), 0);
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  nu_conn_t *c = e2e_sse_open(sl.port, CHAT,
                              "x-sim-tokens: 2000\r\nx-sim-itl-ms: 10\r\nx-sim-fault: stall\r\nx-sim-fault-at: 8\r\n",
                              e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(c);
  ASSERT_EQ(head.status, 200);
  s.stop_after_content = 5;
  ASSERT_EQ(e2e_sse_read(c, &s, E2E_WAIT_MS), 1);
  ASSERT_GE(s.ncontent, 5);
  ASSERT_EQ(s.ndone, 0);
  e2e_conn_close(c); /* gone mid-stream */
  e2e_sse_free(&s);
  nu_resp_free(&head);

  /* The engine sees its connection closed, and sluice counts the cancel. */
  ASSERT_GE(e2e_wait_sim_stat(sim, "client_closed_mid_stream", 1, E2E_WAIT_MS), 1);
  ASSERT_GE(e2e_wait_counter(sl.port, "client_cancels", 1, E2E_WAIT_MS), 1);
  ASSERT_EQ(e2e_sim_stat(sim, "completed"), 0);
  char line[1024];
  ASSERT(e2e_log_wait(&sl, "end=client_cancel", E2E_WAIT_MS, line, sizeof(line)));
  long tokens = field_num(line, " tokens=");
  ASSERT_GE(tokens, 5);     /* the tokens relayed before the cancel still count */
  ASSERT_LE(tokens, 8);
  ASSERT_EQ(e2e_counter(sl.port, "streams_active"), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* An engine that sends [DONE] and never ends its body: the client has its
 * whole answer at once, and the stream ends in sluice after the short
 * [DONE] grace (the engine's connection closed, not reused), as complete,
 * with no timeout counted; the idle timeout is out of reach, so only the
 * grace can end it. */
static void test_engine_holds_body_open_after_done(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_one_sim(&sl, ",\"upstream\":{\"idle_timeout_ms\":3600000}"), 0);
  int sim = sl.sim_ports[0];
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  ASSERT_EQ(e2e_stream(sl.port, CHAT, "x-sim-tokens: 6\r\nx-sim-fault: hold-open\r\n",
                       e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, E2E_WAIT_MS),
            200);
  ASSERT(e2e_sse_kinds_are(&s, 1, 6, 0));
  ASSERT_EQ(s.ndone, 1);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  char line[1024];
  ASSERT(e2e_log_wait(&sl, "end=complete", E2E_WAIT_MS, line, sizeof(line)));
  ASSERT_EQ(field_num(line, " tokens="), 6);
  ASSERT_EQ(e2e_counter(sl.port, "streams_active"), 0);
  ASSERT_EQ(e2e_counter(sl.port, "streams_completed"), 1);
  ASSERT_EQ(e2e_counter(sl.port, "errors_upstream_timeout"), 0);
  ASSERT_EQ(e2e_sim_stat(sim, "faults_injected"), 1);
  ASSERT_GE(e2e_wait_sim_stat(sim, "client_closed_mid_stream", 1, E2E_WAIT_MS), 1);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- 4: failures after the first token ---- */

/* Streams 20 tokens with the fault after 5; expects 5 tokens, one error
 * event, no [DONE], and the connection closed. */
static int fault_after_five(int port, const char *fault) {
  char headers[256], body[1024];
  snprintf(headers, sizeof(headers), "x-sim-tokens: 20\r\nx-sim-fault: %s\r\nx-sim-fault-at: 5\r\n", fault);
  nu_resp_t head;
  e2e_sse_t s;
  int st = e2e_stream(port, CHAT, headers, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK,
                      E2E_WAIT_MS);
  int ok = st == 200 && e2e_sse_kinds_eq(&s, "RCCCCCE") && s.ncontent == 5 && s.nerror == 1 && s.ndone == 0 &&
           s.nfinish == 0 && s.error_shape_ok && s.error_message[0] != '\0' && s.event_lines == 0 &&
           s.read_rc != -2 && (s.eof || s.body_ended);
  if (!ok)
    fprintf(stderr, "  fault %s: status %d, events \"%s\", error \"%s\" (%s/%s), read_rc %d\n", fault, st,
            s.kinds, s.error_message, s.error_type, s.error_code, s.read_rc);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  return ok;
}

static void test_upstream_failure_after_first_token(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_one_sim(&sl, NULL), 0);
  ASSERT(fault_after_five(sl.port, "reset"));
  ASSERT_GE(e2e_counter(sl.port, "errors_upstream_reset"), 1);
  ASSERT(e2e_wait_endpoints_ready(sl.port, 1, E2E_WAIT_MS));
  ASSERT(fault_after_five(sl.port, "close"));
  ASSERT_GE(e2e_counter(sl.port, "errors_upstream_reset"), 2);
  ASSERT(e2e_wait_endpoints_ready(sl.port, 1, E2E_WAIT_MS));
  ASSERT(fault_after_five(sl.port, "error-event"));
  ASSERT_GE(e2e_counter(sl.port, "errors_upstream_error_event"), 1);
  ASSERT(e2e_wait_endpoints_ready(sl.port, 1, E2E_WAIT_MS));
  /* Nothing was retried after the first token. */
  ASSERT_EQ(e2e_counter(sl.port, "upstream_retries"), 0);
  ASSERT_EQ(e2e_sim_stat(sl.sim_ports[0], "requests"), 3);
  /* A good stream still works afterwards. */
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  ASSERT_EQ(e2e_stream(sl.port, CHAT, "x-sim-tokens: 4\r\n", e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s,
                       CHUNK, E2E_WAIT_MS),
            200);
  ASSERT(e2e_sse_kinds_are(&s, 1, 4, 0));
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* Engine events cut at arbitrary bytes (inside "data: ", the JSON, the
 * blank line), each piece a separate write a few ms apart so that sluice
 * reads them separately: the client still gets exactly the same events and
 * text as without cuts, streamed and assembled. */
static void test_split_events_rejoined(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_one_sim(&sl, NULL), 0);
  static const char *const splits[] = {"1,3,6,7", "20,60,120,180,200,230", "2,90,240,241,242,243"};
  char body[1024], headers[256];
  nu_resp_t head;
  e2e_sse_t plain, cut;
  ASSERT_EQ(e2e_stream(sl.port, CHAT, "x-sim-tokens: 12\r\nx-sim-seed: 99\r\n",
                       e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &plain, CHUNK, E2E_WAIT_MS),
            200);
  nu_resp_free(&head);
  ASSERT(e2e_sse_kinds_are(&plain, 1, 12, 0));
  for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
    snprintf(headers, sizeof(headers),
             "x-sim-tokens: 12\r\nx-sim-seed: 99\r\nx-sim-split: %s\r\nx-sim-split-delay-ms: 2\r\n", splits[i]);
    ASSERT_EQ(e2e_stream(sl.port, CHAT, headers, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &cut, CHUNK,
                         E2E_WAIT_MS),
              200);
    nu_resp_free(&head);
    ASSERT(e2e_sse_kinds_are(&cut, 1, 12, 0));
    ASSERT_STR_EQ(cut.content, plain.content);
    ASSERT_EQ(cut.nbad, 0);
    e2e_sse_free(&cut);
    nu_resp_t r;
    ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, headers, e2e_chat_body(body, sizeof(body), "m1", 0, NULL), &r,
              E2E_WAIT_MS),
              200);
    cJSON *doc = cJSON_Parse(r.body);
    const cJSON *msg = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "choices"), 0), "message");
    ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(msg, "content")), plain.content);
    cJSON_Delete(doc);
    nu_resp_free(&r);
  }
  e2e_sse_free(&plain);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* Garbage bytes and then a close without [DONE] after 2 tokens: the stream
 * still ends with one error event and no [DONE]. */
static void test_garbage_then_close(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_one_sim(&sl, NULL), 0);
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  ASSERT_EQ(e2e_stream(sl.port, CHAT, "x-sim-tokens: 6\r\nx-sim-fault: garbage-end\r\nx-sim-fault-at: 2\r\n",
                       e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, E2E_WAIT_MS),
            200);
  ASSERT(e2e_sse_kinds_eq(&s, "RCCE"));
  ASSERT(s.error_shape_ok);
  ASSERT_EQ(s.ndone, 0);
  ASSERT_EQ(s.other_lines, 0); /* the garbage itself never reaches the client */
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* Headers went out with heartbeats, then an attempt fails before its first
 * token: it is still retried on the other endpoint, and when that fails too
 * the end is one error event, no [DONE], and no role chunk from either
 * failed attempt.  Both engines are standalone processes the test pauses
 * until it has seen two heartbeats, so the failures come after them
 * whatever the timers' pace (a 300 ms TTFT against 100 ms heartbeats did
 * not guarantee it). */
static void test_failure_after_heartbeat_before_first_token(void) {
  e2e_proc_t a, b, sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "2", "--itl-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&a, sim_args), 0);
  ASSERT_EQ(e2e_sim_start(&b, sim_args), 0);
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"endpoints\":["
           "{\"url\":\"http://127.0.0.1:%d\"},{\"url\":\"http://127.0.0.1:%d\"}]}],"
           "\"heartbeat_ms\":100,\"health\":{\"interval_ms\":3600000},"
           "\"upstream\":{\"max_attempts\":2,\"backoff_base_ms\":10,\"backoff_max_ms\":20,"
           "\"first_token_timeout_ms\":3600000}}",
           a.port, b.port);
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT(e2e_wait_endpoints_ready(sl.port, 2, E2E_WAIT_MS));
  ASSERT_EQ(e2e_pause(&a, E2E_WAIT_MS), 0);
  ASSERT_EQ(e2e_pause(&b, E2E_WAIT_MS), 0);
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  nu_conn_t *c = e2e_sse_open(sl.port, CHAT, "x-sim-ttft-ms: 50\r\nx-sim-fault: reset\r\nx-sim-fault-at: 0\r\n",
                              e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(c);
  ASSERT_EQ(head.status, 200);
  ASSERT_EQ(e2e_sse_read_comments(c, &s, 2, E2E_WAIT_MS), 0);
  ASSERT_EQ(e2e_resume(&a), 0);
  ASSERT_EQ(e2e_resume(&b), 0);
  int rc = e2e_sse_read(c, &s, E2E_WAIT_MS); /* the error event, then the end */
  ASSERT(rc == 0 || rc == -1);
  e2e_conn_close(c);
  ASSERT_GE(s.comments_before_data, 2);
  ASSERT(e2e_sse_kinds_eq(&s, "E"));
  ASSERT(s.error_shape_ok);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_sim_stat(a.port, "requests"), 1);
  ASSERT_EQ(e2e_sim_stat(b.port, "requests"), 1);
  ASSERT_EQ(e2e_counter(sl.port, "upstream_retries"), 1);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&a), 0);
  ASSERT_EQ(e2e_stop(&b), 0);
}

/* ---- 5: stalls ---- */

static void test_stalled_upstream_timeouts(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_one_sim(&sl, ",\"upstream\":{\"idle_timeout_ms\":500,\"first_token_timeout_ms\":1000,"
                               "\"max_attempts\":1}"),
            0);
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  /* A stall after 3 tokens: the idle timeout ends the stream with an error
   * event that names it, and no [DONE]. */
  int st = e2e_stream(sl.port, CHAT, "x-sim-tokens: 10\r\nx-sim-fault: stall\r\nx-sim-fault-at: 3\r\n",
                      e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, E2E_WAIT_MS);
  ASSERT_EQ(st, 200);
  ASSERT(e2e_sse_kinds_eq(&s, "RCCCE"));
  ASSERT_EQ(s.ndone, 0);
  ASSERT(s.error_shape_ok);
  ASSERT(strstr(s.error_code, "idle_timeout") != NULL);
  ASSERT(strstr(s.error_message, "500 ms") != NULL);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_GE(e2e_counter(sl.port, "errors_upstream_timeout"), 1);
  /* sluice closed the stalled engine connection. */
  ASSERT_GE(e2e_wait_sim_stat(sl.sim_ports[0], "client_closed_mid_stream", 1, E2E_WAIT_MS), 1);

  /* No first token within first_token_timeout_ms: 504 before any header,
   * streaming or not. */
  for (int stream = 1; stream >= 0; stream--) {
    ASSERT(e2e_wait_endpoints_ready(sl.port, 1, E2E_WAIT_MS));
    /* A first token an hour away: the 1 s timeout always comes first. */
    st = e2e_stream(sl.port, CHAT, "x-sim-ttft-ms: 3600000\r\nx-sim-tokens: 3\r\n",
                    e2e_chat_body(body, sizeof(body), "m1", stream, NULL), &head, &s, CHUNK, E2E_WAIT_MS);
    ASSERT_EQ(st, 504);
    ASSERT(strncmp(nu_header(&head, "content-type"), "application/json", 16) == 0);
    ASSERT(e2e_is_error_body(head.body, "token"));
    ASSERT_EQ(s.nevents, 0);
    e2e_sse_free(&s);
    nu_resp_free(&head);
  }
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- 6: retry on another endpoint before the first token ---- */

static void test_retry_on_another_endpoint(void) {
  e2e_proc_t a, b, sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "2", "--itl-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&a, sim_args), 0);
  ASSERT_EQ(e2e_sim_start(&b, sim_args), 0);
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"two\",\"models\":[\"m1\"],\"endpoints\":["
           "{\"url\":\"http://127.0.0.1:%d\"},{\"url\":\"http://127.0.0.1:%d\"}]}],"
           "\"health\":{\"interval_ms\":3600000,\"cooldown_base_ms\":100,\"cooldown_max_ms\":200},"
           "\"upstream\":{\"max_attempts\":2,\"backoff_base_ms\":10,\"backoff_max_ms\":20}}",
           a.port, b.port);
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  ASSERT(e2e_wait_endpoints_ready(sl.port, 2, E2E_WAIT_MS));

  /* An HTTP 503 from every attempt: the header goes to each attempt, one
   * per endpoint, and the client gets 502. */
  char body[1024];
  nu_resp_t r;
  int st = e2e_http(sl.port, "POST", CHAT, "x-sim-fault: status:503\r\n",
                    e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &r, E2E_WAIT_MS);
  ASSERT_EQ(st, 502);
  ASSERT(e2e_is_error_body(r.body, "503"));
  nu_resp_free(&r);
  ASSERT_EQ(e2e_sim_stat(a.port, "faults_injected"), 1);
  ASSERT_EQ(e2e_sim_stat(b.port, "faults_injected"), 1);
  ASSERT_GE(e2e_counter(sl.port, "upstream_retries"), 1);
  ASSERT_GE(e2e_counter(sl.port, "errors_upstream_status"), 2);

  /* Both endpoints failed once: wait out their cooldown. */
  ASSERT(e2e_wait_endpoints_ready(sl.port, 2, E2E_WAIT_MS));
  int64_t retries0 = e2e_counter(sl.port, "upstream_retries");
  int64_t connect_errs0 = e2e_counter(sl.port, "errors_upstream_connect");
  int64_t b_reqs0 = e2e_sim_stat(b.port, "requests");

  /* A dies without a word; with health checks an hour apart sluice still
   * thinks it ready.  Every request is served by B. */
  ASSERT_EQ(e2e_kill(&a), 0);
  for (int i = 0; i < 3; i++) {
    nu_resp_t head;
    e2e_sse_t s;
    st = e2e_stream(sl.port, CHAT, "x-sim-tokens: 4\r\n", e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s,
                    CHUNK, E2E_WAIT_MS);
    ASSERT_EQ(st, 200);
    ASSERT(e2e_sse_kinds_are(&s, 1, 4, 0));
    e2e_sse_free(&s);
    nu_resp_free(&head);
  }
  ASSERT_EQ(e2e_sim_stat(b.port, "requests"), b_reqs0 + 3);
  int64_t retries = e2e_counter(sl.port, "upstream_retries") - retries0;
  int64_t connect_errs = e2e_counter(sl.port, "errors_upstream_connect") - connect_errs0;
  ASSERT_GE(retries + connect_errs, 1);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&b), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 120);
  E2E_RUN(test_client_disconnect_cancels_engine);
  E2E_RUN(test_engine_holds_body_open_after_done);
  E2E_RUN(test_upstream_failure_after_first_token);
  E2E_RUN(test_split_events_rejoined);
  E2E_RUN(test_garbage_then_close);
  E2E_RUN(test_failure_after_heartbeat_before_first_token);
  E2E_RUN(test_stalled_upstream_timeouts);
  E2E_RUN(test_retry_on_another_endpoint);
  return SL_TEST_EXIT();
}
