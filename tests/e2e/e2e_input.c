/* e2e_input.c: what a client sends, end to end, against the real sluice
 * binary: a chunked request with trailers (the fuzzer's use-after-free,
 * kept as a regression input), the request id rule (a client id that looks
 * like a secret is replaced at the door, said so in a header, and every log
 * line for the request carries the same id), the prompt size of
 * array-of-parts content against the context prefilter, an over-long
 * session id header, invalid UTF-8 in JSON strings, and duplicate JSON keys.
 * Each bad request gets a 400 naming the field or header, and a good request
 * after it still completes.
 */
#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"

/* One pool "sim" serving sim-small from one in-process simulated engine;
 * `pool` adds members to the pool object and `top` to the top level (each
 * starting with ','). */
static int start_sim(e2e_proc_t *sl, const char *pool, const char *top, const char *const *args) {
  char cfg[2048];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"sim\",\"models\":[\"sim-small\"]%s,"
           "\"endpoints\":[{\"sim\":{\"ttft_ms\":2,\"itl_ms\":1,\"itl_jitter\":0}}]}]%s}",
           pool ? pool : "", top ? top : "");
  if (e2e_serve_start(sl, cfg, args) < 0) return -1;
  return e2e_wait_ready(sl->port, 200, 10000);
}

/* A regression input from tests/fuzz/regress/ as a malloc'd string (or NULL). */
static char *read_regress(const char *name) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/fuzz/regress/%s", SL_TEST_SOURCE_DIR, name);
  char *text = e2e_read_file(path);
  if (text == NULL) fprintf(stderr, "cannot read %s\n", path);
  return text;
}

/* Sends raw bytes on a new connection and reads one response. */
static int raw_exchange(int port, const char *raw, size_t len, nu_resp_t *r, int timeout_ms) {
  memset(r, 0, sizeof(*r));
  nu_conn_t *c = e2e_conn_open(port, 0);
  if (c == NULL) return -1;
  int st = -1;
  if (nu_send(c->fd, raw, len) == 0 && nu_read_response(c, r, timeout_ms) == 0) st = r->status;
  e2e_conn_close(c);
  return st;
}

/* ---- finding 8: trailers after a chunked body ---- */

/* The request the use-after-free was found with: a valid chat request, sent
 * chunked, with a 600-byte trailer field.  The sanitizer build of the daemon
 * used to read freed memory while validating it and die; now the trailer is
 * ignored and the request completes normally. */
static void test_chunked_request_with_trailer_completes(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_sim(&sl, NULL, NULL, NULL), 0);
  char *raw = read_regress("http/http-trailers-request.txt");
  ASSERT_NOT_NULL(raw);
  ASSERT_NOT_NULL(strstr(raw, "X-Trailer: xxxx"));
  nu_resp_t r;
  int st = raw_exchange(sl.port, raw, strlen(raw), &r, 10000);
  free(raw);
  ASSERT_EQ(st, 200);
  cJSON *doc = cJSON_Parse(r.body);
  ASSERT_NOT_NULL(doc);
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(doc, "object")), "chat.completion");
  const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "choices"), 0);
  const char *finish = cJSON_GetStringValue(cJSON_GetObjectItem(c0, "finish_reason"));
  ASSERT_NOT_NULL(finish); /* the simulated engine's default length may end it */
  ASSERT(strcmp(finish, "stop") == 0 || strcmp(finish, "length") == 0);
  const cJSON *msg = cJSON_GetObjectItem(c0, "message");
  ASSERT_NOT_NULL(cJSON_GetStringValue(cJSON_GetObjectItem(msg, "content")));
  cJSON_Delete(doc);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_wait_counter(sl.port, "streams_completed", 1, 10000), 1);
  ASSERT(e2e_log_wait(&sl, "end=complete", 10000, NULL, 0));
  ASSERT_EQ(e2e_stop(&sl), 0); /* exit 0 and no sanitizer report in the log */
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 240);
  E2E_RUN(test_chunked_request_with_trailer_completes);
  return SL_TEST_EXIT();
}
