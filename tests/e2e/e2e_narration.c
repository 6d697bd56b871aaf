/* End-to-end: narration.  The shipped narration policy tells a placement, a
 * failed reload, a cancel and a readiness flip in sentences, correlated by
 * request id, in human and JSON logs; a bearer token sent by the client
 * never appears in any log line.
 */
#include "test.h"
#include "e2e/harness.h"

static char policy_path[600];

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

static const char *good_policy =
    "return { name = 'first', version = '1', schema = {},\n"
    "  place = function(ctx) return 1, 'it is the first candidate' end }\n";

static void config(char *buf, size_t cap, int json) {
  snprintf(buf, cap,
           "{\"placement\":{\"policy\":\"%s\",\"watch\":false},%s\"upstream\":{\"idle_timeout_ms\":3600000},"
           "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"sim\":{\"itl_ms\":20}},{\"sim\":{}}]}]}",
           policy_path, json ? "\"log\":{\"format\":\"json\"}," : "");
}

static void test_sentences(void) {
  snprintf(policy_path, sizeof(policy_path), "%s/narr_policy.lua", e2e_tmpdir());
  write_file(policy_path, good_policy);
  char cfg[1024];
  config(cfg, sizeof(cfg), 0);
  e2e_proc_t p;
  ASSERT_EQ(e2e_serve_start(&p, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_endpoints_ready(p.port, 2, E2E_WAIT_MS), 1);
  char line[2048];
  /* Readiness. */
  ASSERT_EQ(e2e_log_wait(&p, "passed its health check and takes streams", E2E_WAIT_MS, line, sizeof(line)), 1);

  /* A placement, with the policy's reason, for the client's request id. */
  const char *secret_hdr = "Authorization: Bearer client-secret-token-1\r\nX-Request-Id: narr-1\r\nx-sim-tokens: 3\r\n";
  char body[512];
  nu_resp_t head;
  e2e_sse_t s;
  ASSERT_EQ(e2e_stream(p.port, "/v1/chat/completions", secret_hdr, e2e_chat_body(body, sizeof(body), "m", 1, NULL),
                       &head, &s, "chat.completion.chunk", E2E_WAIT_MS),
            200);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_log_wait(&p, "narrate narr-1 placement: narr-1 for model m went to 127.0.0.1:", E2E_WAIT_MS, line,
                         sizeof(line)),
            1);
  ASSERT(strstr(line, "because it is the first candidate.") != NULL);
  ASSERT_EQ(e2e_log_wait(&p, "narrate narr-1 stream_end: narr-1 finished: 3 tokens from", E2E_WAIT_MS, NULL, 0), 1);

  /* A cancel: the client leaves after a few tokens.  The engine holds the
   * stream after 5 (a stall, the idle timeout out of reach), so it is
   * still in flight when the client leaves, however slow the client. */
  const char *hdr2 = "Authorization: Bearer client-secret-token-1\r\nX-Request-Id: narr-2\r\nx-sim-tokens: 200\r\n"
                     "x-sim-fault: stall\r\nx-sim-fault-at: 5\r\n";
  nu_conn_t *c = e2e_sse_open(p.port, "/v1/chat/completions", hdr2, e2e_chat_body(body, sizeof(body), "m", 1, NULL),
                              &head, &s, "chat.completion.chunk", E2E_WAIT_MS);
  ASSERT_NOT_NULL(c);
  s.stop_after_content = 3;
  ASSERT_EQ(e2e_sse_read(c, &s, E2E_WAIT_MS), 1);
  e2e_conn_close(c);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_log_wait(&p, "narrate narr-2 cancel: narr-2's client went away after", E2E_WAIT_MS, line,
            sizeof(line)), 1);
  ASSERT(strstr(line, "was cancelled and the") != NULL);

  /* A failed reload: the old generation keeps serving, the line is named. */
  write_file(policy_path, "return { name = 'broken',\n  version = '1'\n  schema = {} }\n");
  kill(p.pid, SIGHUP);
  ASSERT_EQ(e2e_log_wait(&p, "reload_failed: Reload failed, generation 1 keeps serving:", E2E_WAIT_MS, line,
            sizeof(line)), 1);
  ASSERT(strstr(line, "narr_policy.lua:3:") != NULL);

  /* The client's bearer token appears in no log line. */
  char *log = e2e_log_text(&p);
  ASSERT_NULL(strstr(log, "client-secret-token-1"));
  free(log);
  ASSERT_EQ(e2e_stop(&p), 0);
}

static void test_json_narration(void) {
  snprintf(policy_path, sizeof(policy_path), "%s/narr_policy2.lua", e2e_tmpdir());
  write_file(policy_path, good_policy);
  char cfg[1024];
  config(cfg, sizeof(cfg), 1);
  e2e_proc_t p;
  ASSERT_EQ(e2e_serve_start(&p, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_endpoints_ready(p.port, 2, E2E_WAIT_MS), 1);
  char body[512];
  nu_resp_t head;
  e2e_sse_t s;
  e2e_stream(p.port, "/v1/chat/completions", "X-Request-Id: narr-j\r\nx-sim-tokens: 2\r\n",
             e2e_chat_body(body, sizeof(body), "m", 1, NULL), &head, &s, "chat.completion.chunk", E2E_WAIT_MS);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  char line[2048];
  ASSERT_EQ(e2e_log_wait(&p, "\"kind\":\"placement\"", E2E_WAIT_MS, line, sizeof(line)), 1);
  cJSON *o = cJSON_Parse(line);
  ASSERT_NOT_NULL(o);
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(o, "event")), "narration");
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(o, "request_id")), "narr-j");
  ASSERT(strstr(cJSON_GetStringValue(cJSON_GetObjectItem(o, "text")), "went to") != NULL);
  ASSERT(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "generation")) == 1);
  cJSON_Delete(o);
  ASSERT_EQ(e2e_stop(&p), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 60);
  E2E_RUN(test_sentences);
  E2E_RUN(test_json_narration);
  return SL_TEST_EXIT();
}
