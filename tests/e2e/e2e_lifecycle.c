/* e2e_lifecycle.c: readiness, the model list and shutdown, end to end.
 *
 * /ready and completions follow the health of the only engine (a standalone
 * simulated engine switched unhealthy and back through POST /sim/control);
 * GET /v1/models lists the configured models; SIGTERM drains: a stream in
 * flight completes with [DONE], new connections are refused, and the process
 * exits 0 with every handle closed; a bad config refuses to start.
 *
 * A stream that must still be in flight when SIGTERM comes is held by a
 * standalone engine the test pauses (SIGSTOP) before the request and lets
 * go only after it has seen the drain begin, or by an engine that stalls:
 * never by how long its tokens take, which a slow machine can outlast.
 */
#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"

/* ---- 9: readiness follows the engine's health; the model list ---- */

static int completion_status(int port, int stream, char *err, size_t errcap) {
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  int st = e2e_stream(port, CHAT, "x-sim-tokens: 3\r\n", e2e_chat_body(body, sizeof(body), "m2", stream, NULL), &head,
                      &s, CHUNK, E2E_WAIT_MS);
  if (err != NULL) snprintf(err, errcap, "%s", head.body ? head.body : "");
  if (st == 200 && stream && !e2e_sse_kinds_are(&s, 1, 3, 0)) st = -2;
  e2e_sse_free(&s);
  nu_resp_free(&head);
  return st;
}

static void test_ready_follows_engine_health(void) {
  e2e_proc_t sim, sl;
  const char *const sim_args[] = {"--model", "m1", "--model", "m2", "--ttft-ms", "2", "--itl-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"only\",\"models\":[\"m1\",\"m2\"],\"queue_size\":0,"
           "\"endpoints\":[{\"url\":\"http://127.0.0.1:%d\"}]}],"
           "\"health\":{\"interval_ms\":100,\"cooldown_base_ms\":50,\"cooldown_max_ms\":100}}",
           sim.port);
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  ASSERT_EQ(completion_status(sl.port, 1, NULL, 0), 200);

  /* The model list. */
  int st;
  cJSON *models = e2e_get_json(sl.port, "/v1/models", &st);
  ASSERT_EQ(st, 200);
  ASSERT_NOT_NULL(models);
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(models, "object")), "list");
  const cJSON *data = cJSON_GetObjectItem(models, "data");
  ASSERT_EQ(cJSON_GetArraySize(data), 2);
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 0), "id")), "m1");
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 1), "id")), "m2");
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(data, 0), "object")), "model");
  cJSON_Delete(models);

  /* The engine turns unhealthy: /ready goes 503 and completions get 503
   * at once (this pool has no queue to wait in: queue_size 0; with one, a
   * request waits for the engine, e2e_admission's restart case). */
  ASSERT_EQ(e2e_sim_control(sim.port, "{\"healthy\":false}"), 200);
  ASSERT_EQ(e2e_wait_ready(sl.port, 503, E2E_WAIT_MS), 0);
  char err[1024];
  for (int stream = 1; stream >= 0; stream--) {
    ASSERT_EQ(completion_status(sl.port, stream, err, sizeof(err)), 503);
    ASSERT(e2e_is_error_body(err, "no ready endpoint serves model"));
  }
  ASSERT_GE(e2e_counter(sl.port, "errors_no_ready_endpoint"), 2);
  nu_resp_t r;
  ASSERT_EQ(e2e_http(sl.port, "GET", "/ready", NULL, NULL, &r, E2E_WAIT_MS), 503);
  cJSON *doc = cJSON_Parse(r.body);
  ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(doc, "ready")));
  cJSON_Delete(doc);
  nu_resp_free(&r);
  cJSON *h = e2e_get_json(sl.port, "/health", NULL);
  const cJSON *ep = cJSON_GetArrayItem(
      cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(h, "pools"), 0), "endpoints"), 0);
  ASSERT_NOT_NULL(ep);
  ASSERT(cJSON_IsFalse(cJSON_GetObjectItem(ep, "ready")));
  cJSON_Delete(h);

  /* Healthy again: ready, and completions are served. */
  ASSERT_EQ(e2e_sim_control(sim.port, "{\"healthy\":true}"), 200);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  ASSERT(e2e_wait_endpoints_ready(sl.port, 1, E2E_WAIT_MS));
  ASSERT_EQ(completion_status(sl.port, 1, NULL, 0), 200);
  ASSERT_EQ(completion_status(sl.port, 0, NULL, 0), 200);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* ---- 12: SIGTERM drains the streams in flight ---- */

/* Starts a standalone engine and sluice in front of it with heartbeats (so
 * a stream's headers go out while its engine is paused), no health check
 * after the first, and no first-token or drain timeout within reach.
 * Returns 0. */
static int start_pausable(e2e_proc_t *sim, e2e_proc_t *sl) {
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "2", "--itl-ms", "1", "--itl-jitter", "0", NULL};
  if (e2e_sim_start(sim, sim_args) < 0) return -1;
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:%d\"}]}],"
           "\"heartbeat_ms\":50,\"health\":{\"interval_ms\":3600000},\"drain_timeout_ms\":3600000,"
           "\"upstream\":{\"first_token_timeout_ms\":3600000}}",
           sim->port);
  if (e2e_serve_start(sl, cfg, NULL) < 0) return -1;
  return e2e_wait_ready(sl->port, 200, E2E_WAIT_MS);
}

/* With the engine paused, opens a stream of ntokens 25 ms apart and reads
 * its response head (sent with the first heartbeat): the stream is in
 * flight and cannot end until the engine is resumed.  Returns the
 * connection or NULL. */
static nu_conn_t *held_stream(e2e_proc_t *sim, const e2e_proc_t *sl, int ntokens, nu_resp_t *head, e2e_sse_t *s) {
  if (e2e_pause(sim, E2E_WAIT_MS) < 0) return NULL;
  char body[1024], headers[128];
  snprintf(headers, sizeof(headers), "x-sim-tokens: %d\r\nx-sim-itl-ms: 25\r\n", ntokens);
  nu_conn_t *c = e2e_sse_open(sl->port, CHAT, headers, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), head, s, CHUNK,
                              E2E_WAIT_MS);
  if (c != NULL && head->status != 200) {
    e2e_conn_close(c);
    c = NULL;
  }
  return c;
}

static void test_sigterm_drains_stream(void) {
  e2e_proc_t sim, sl;
  ASSERT_EQ(start_pausable(&sim, &sl), 0);
  nu_resp_t head;
  e2e_sse_t s;
  /* 40 tokens 25 ms apart, held before the first until the drain began. */
  nu_conn_t *c = held_stream(&sim, &sl, 40, &head, &s);
  ASSERT_NOT_NULL(c);

  ASSERT_EQ(kill(sl.pid, SIGTERM), 0);
  ASSERT(e2e_log_wait(&sl, "draining 1 stream", E2E_WAIT_MS, NULL, 0));
  /* The listener closes right after that line is written: from then on new
   * connections are refused (a connect that slipped in just before is
   * retried, for as long as the generous bound). */
  int refused = 0;
  for (int64_t end = nu_now_ms() + E2E_WAIT_MS; !refused && nu_now_ms() < end;) {
    int fd = nu_connect(sl.port);
    if (fd < 0) refused = 1;
    else {
      close(fd);
      usleep(10 * 1000);
    }
  }
  ASSERT(refused);

  /* The stream in flight runs to its end. */
  ASSERT_EQ(e2e_resume(&sim), 0);
  ASSERT_EQ(e2e_sse_read(c, &s, E2E_WAIT_MS), 0);
  ASSERT(e2e_sse_kinds_are(&s, 1, 40, 0));
  ASSERT_EQ(s.nerror, 0);
  e2e_conn_close(c);
  e2e_sse_free(&s);
  nu_resp_free(&head);

  /* Then the process exits 0 on its own with every handle closed. */
  ASSERT_EQ(e2e_wait_exit(&sl, E2E_WAIT_MS), 0);
  ASSERT(WIFEXITED(sl.status));
  ASSERT_EQ(WEXITSTATUS(sl.status), 0);
  ASSERT_EQ(e2e_log_check(&sl), 0);
  ASSERT(e2e_log_wait(&sl, "end=complete", 0, NULL, 0));
  ASSERT(e2e_log_wait(&sl, "every stream has ended", 0, NULL, 0));
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* A request on a connection opened before SIGTERM, while a stream drains,
 * is refused with 503 rather than started. */
static void test_draining_refuses_new_requests(void) {
  e2e_proc_t sim, sl;
  ASSERT_EQ(start_pausable(&sim, &sl), 0);
  nu_conn_t *other = e2e_conn_open(sl.port, 0);
  ASSERT_NOT_NULL(other);
  nu_resp_t head;
  e2e_sse_t s;
  nu_conn_t *c = held_stream(&sim, &sl, 30, &head, &s);
  ASSERT_NOT_NULL(c);
  ASSERT_EQ(kill(sl.pid, SIGTERM), 0);
  ASSERT(e2e_log_wait(&sl, "draining 1 stream", E2E_WAIT_MS, NULL, 0));
  char body[1024];
  nu_resp_t r;
  ASSERT_EQ(e2e_http_on(other, "POST", CHAT, NULL, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &r, E2E_WAIT_MS),
            503);
  ASSERT(e2e_is_error_body(r.body, "shutting down"));
  nu_resp_free(&r);
  e2e_conn_close(other);
  ASSERT_EQ(e2e_resume(&sim), 0);
  ASSERT_EQ(e2e_sse_read(c, &s, E2E_WAIT_MS), 0);
  ASSERT(e2e_sse_kinds_are(&s, 1, 30, 0));
  e2e_conn_close(c);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_wait_exit(&sl, E2E_WAIT_MS), 0);
  ASSERT(WIFEXITED(sl.status));
  ASSERT_EQ(WEXITSTATUS(sl.status), 0);
  ASSERT_EQ(e2e_log_check(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* SIGTERM while a stream runs, then its client leaves: the stream ends as a
 * cancel, and the process still exits 0 with everything closed and freed
 * (the listener closed long before the last connection did). */
static void test_sigterm_then_client_leaves(void) {
  e2e_proc_t sl;
  /* The engine holds the stream after 5 tokens (a stall; the idle timeout
   * is out of reach), so it is in flight whenever SIGTERM comes. */
  const char *cfg =
      "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
      "\"endpoints\":[{\"sim\":{\"ttft_ms\":2,\"itl_ms\":1,\"itl_jitter\":0}}]}],"
      "\"upstream\":{\"idle_timeout_ms\":3600000},\"drain_timeout_ms\":3600000}";
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  nu_conn_t *c = e2e_sse_open(sl.port, CHAT,
                              "x-sim-tokens: 1000\r\nx-sim-itl-ms: 20\r\nx-sim-fault: stall\r\nx-sim-fault-at: 5\r\n",
                              e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(c);
  s.stop_after_content = 2;
  ASSERT_EQ(e2e_sse_read(c, &s, E2E_WAIT_MS), 1);
  ASSERT_EQ(kill(sl.pid, SIGTERM), 0);
  ASSERT(e2e_log_wait(&sl, "draining 1 stream", E2E_WAIT_MS, NULL, 0));
  usleep(50 * 1000);
  e2e_conn_close(c);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_wait_exit(&sl, E2E_WAIT_MS), 0);
  ASSERT(WIFEXITED(sl.status));
  ASSERT_EQ(WEXITSTATUS(sl.status), 0);
  ASSERT_EQ(e2e_log_check(&sl), 0);
  ASSERT(e2e_log_wait(&sl, "end=client_cancel", 0, NULL, 0));
}

/* A config with an unknown key refuses to start and names the key. */
static void test_bad_config_refuses_to_start(void) {
  e2e_proc_t sl;
  const char *cfg = "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"endpoints\":[{\"sim\":{}}]}],\"heartbeat\":5}";
  ASSERT_EQ(e2e_serve_spawn(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_exit(&sl, E2E_WAIT_MS), 0);
  ASSERT(WIFEXITED(sl.status));
  ASSERT_EQ(WEXITSTATUS(sl.status), 2);
  char line[512];
  ASSERT(e2e_log_wait(&sl, "heartbeat", 0, line, sizeof(line)));
  ASSERT(strstr(line, "unknown key") != NULL);
  ASSERT_EQ(e2e_log_check(&sl), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 120);
  E2E_RUN(test_ready_follows_engine_health);
  E2E_RUN(test_sigterm_drains_stream);
  E2E_RUN(test_draining_refuses_new_requests);
  E2E_RUN(test_sigterm_then_client_leaves);
  E2E_RUN(test_bad_config_refuses_to_start);
  return SL_TEST_EXIT();
}
