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

/* ---- finding 3: one request id in every line ---- */

/* Checks every log line that belongs to a request (stream-end lines and the
 * narration of placements and stream ends; this test sends one request at a
 * time) carries `id`, and counts them.  Returns the count, or -1 after
 * printing a line with another id. */
static int lines_with_id(const char *log, const char *id, int json) {
  int n = 0;
  const char *p = log;
  while (*p) {
    const char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    char line[4096];
    snprintf(line, sizeof(line), "%.*s", (int)(len < sizeof(line) ? len : sizeof(line) - 1), p);
    p += len + (nl ? 1 : 0);
    char got[1024] = "";
    int mine = 0;
    if (json) {
      cJSON *o = cJSON_Parse(line);
      const char *rid = cJSON_GetStringValue(cJSON_GetObjectItem(o, "request_id"));
      if (rid != NULL) {
        snprintf(got, sizeof(got), "%s", rid);
        mine = 1;
      }
      cJSON_Delete(o);
    } else {
      const char *at;
      if ((at = strstr(line, "Z stream ")) != NULL) {
        sscanf(at + 9, "%127s", got);
        mine = 1;
      } else if ((at = strstr(line, "Z narrate ")) != NULL &&
                 (strstr(line, " placement: ") || strstr(line, " stream_end: "))) {
        sscanf(at + 10, "%127s", got);
        mine = 1;
      }
    }
    if (!mine) continue;
    if (strcmp(got, id) != 0) {
      fprintf(stderr, "  a line of the request with id '%s', not '%s': %s\n", got, id, line);
      return -1;
    }
    n++;
  }
  return n;
}

/* A client id that looks like a secret (the redactor would print it as
 * "[redacted]") is replaced at the door by a generated one; the response
 * says so; the stream-end line and the narration (text too) carry the same
 * generated id and the secret is nowhere in the log.  Human and JSON logs. */
static void test_secret_request_id_replaced(void) {
  for (int json = 0; json <= 1; json++) {
    e2e_proc_t sl;
    ASSERT_EQ(start_sim(&sl, NULL, json ? ",\"log\":{\"format\":\"json\"}" : NULL, NULL), 0);
    char body[1024];
    nu_resp_t head;
    e2e_sse_t s;
    int st = e2e_stream(sl.port, CHAT, "X-Request-Id: sk-abcdefghijklmnop\r\nx-sim-tokens: 3\r\n",
                        e2e_chat_body(body, sizeof(body), "sim-small", 1, NULL), &head, &s, "chat.completion.chunk",
                        10000);
    ASSERT_EQ(st, 200);
    ASSERT(e2e_sse_kinds_are(&s, 1, 3, 0));
    e2e_sse_free(&s);
    const char *id_hdr = nu_header(&head, "x-request-id");
    ASSERT_NOT_NULL(id_hdr);
    char id[128];
    snprintf(id, sizeof(id), "%s", id_hdr);
    ASSERT(strncmp(id, "req-", 4) == 0);
    ASSERT_NOT_NULL(nu_header(&head, "x-sluice-request-id-replaced"));
    ASSERT_STR_EQ(nu_header(&head, "x-sluice-request-id-replaced"), "1");
    nu_resp_free(&head);

    /* Wait for the last line of the request, then read the whole log. */
    char needle[160];
    snprintf(needle, sizeof(needle), json ? "\"kind\":\"stream_end\"" : "narrate %s stream_end:", id);
    ASSERT_EQ(e2e_log_wait(&sl, needle, 10000, NULL, 0), 1);
    snprintf(needle, sizeof(needle), json ? "\"event\":\"stream_end\"" : "Z stream %s ", id);
    ASSERT_EQ(e2e_log_wait(&sl, needle, 10000, NULL, 0), 1);
    char *log = e2e_log_text(&sl);
    ASSERT_NOT_NULL(log);
    ASSERT_NULL(strstr(log, "sk-abcdefghijklmnop"));
    ASSERT_NULL(strstr(log, "abcdefghijklmnop"));
    ASSERT_NULL(strstr(log, "[redacted]"));
    int n = lines_with_id(log, id, json);
    free(log);
    ASSERT_GE(n, 3); /* placement, stream end (narration), the stream-end line */
    ASSERT_EQ(e2e_stop(&sl), 0);
  }
}

/* Which client ids are kept: a safe one verbatim (no "replaced" header);
 * too long, unsafe bytes, or a configured secret are replaced.  Error
 * answers carry the id too. */
static void test_request_id_rule(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_sim(&sl, NULL, ",\"log\":{\"secrets\":[\"hunter2-the-password\"]}", NULL), 0);
  char body[1024];
  e2e_chat_body(body, sizeof(body), "sim-small", 0, NULL);
  static const struct {
    const char *sent;
    int kept;
  } cases[] = {
      {"client-id_1.x", 1},
      {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1},  /* 64 */
      {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0}, /* 65 */
      {"has space", 0},
      {"semi;colon", 0},
      {"hunter2-the-password", 0},
      {"sk-0123456789", 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char hdr[256];
    snprintf(hdr, sizeof(hdr), "X-Request-Id: %s\r\nx-sim-tokens: 2\r\n", cases[i].sent);
    nu_resp_t r;
    ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, hdr, body, &r, 10000), 200);
    char got[1024] = "";
    if (nu_header(&r, "x-request-id") != NULL) snprintf(got, sizeof(got), "%s", nu_header(&r, "x-request-id"));
    const char *replaced = nu_header(&r, "x-sluice-request-id-replaced"); /* nu_header's buffer: read last */
    if (cases[i].kept) {
      ASSERT_STR_EQ(got, cases[i].sent);
      ASSERT_NULL(replaced);
    } else {
      if (strncmp(got, "req-", 4) != 0) fprintf(stderr, "  '%s' was kept as '%s'\n", cases[i].sent, got);
      ASSERT(strncmp(got, "req-", 4) == 0);
      ASSERT_NOT_NULL(replaced);
      ASSERT_STR_EQ(replaced, "1");
    }
    nu_resp_free(&r);
  }
  /* No client id: a generated one, not marked as a replacement. */
  nu_resp_t r;
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, "x-sim-tokens: 2\r\n", body, &r, 10000), 200);
  ASSERT_NOT_NULL(nu_header(&r, "x-request-id"));
  ASSERT_NULL(nu_header(&r, "x-sluice-request-id-replaced"));
  nu_resp_free(&r);
  /* A refused request says which id it had. */
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, "X-Request-Id: sk-abcdefghijklmnop\r\n", "{\"model\":\"sim-small\"}", &r,
                     10000),
            400);
  ASSERT_NOT_NULL(nu_header(&r, "x-request-id"));
  ASSERT(strncmp(nu_header(&r, "x-request-id"), "req-", 4) == 0);
  ASSERT_NOT_NULL(nu_header(&r, "x-sluice-request-id-replaced"));
  nu_resp_free(&r);
  char *log = e2e_log_text(&sl);
  ASSERT_NULL(strstr(log, "hunter2-the-password"));
  ASSERT_NULL(strstr(log, "[redacted]"));
  free(log);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- finding 5: the prompt size counts array-of-parts content ---- */

/* The same oversize prompt as a string and as parts (text parts around an
 * image) is refused alike with 400 context_length_exceeded; a small one in
 * parts goes through. */
static void test_array_of_parts_prompt_counted(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_sim(&sl, ",\"context_tokens\":100", NULL, NULL), 0);
  char text[801];
  memset(text, 'w', sizeof(text) - 1);
  text[sizeof(text) - 1] = '\0'; /* 800 characters: about 200 tokens */
  size_t cap = 4096;
  char *body = malloc(cap);
  nu_resp_t r;
  snprintf(body, cap,
           "{\"model\":\"sim-small\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}", text);
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, NULL, body, &r, 10000), 400);
  ASSERT(e2e_is_error_body(r.body, "context_length_exceeded"));
  nu_resp_free(&r);
  snprintf(body, cap,
           "{\"model\":\"sim-small\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":["
           "{\"type\":\"text\",\"text\":\"%.400s\"},"
           "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0KGgo=\"}},"
           "{\"type\":\"text\",\"text\":\"%.400s\"}]}]}",
           text, text);
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, NULL, body, &r, 10000), 400);
  ASSERT(e2e_is_error_body(r.body, "context_length_exceeded"));
  nu_resp_free(&r);
  snprintf(body, cap,
           "{\"model\":\"sim-small\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":["
           "{\"type\":\"text\",\"text\":\"%.40s\"}]}]}",
           text);
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, "x-sim-tokens: 2\r\n", body, &r, 10000), 200);
  nu_resp_free(&r);
  /* Completions: a prompt of token ids counts too (4 characters an id). */
  size_t n = (size_t)snprintf(body, cap, "{\"model\":\"sim-small\",\"max_tokens\":10,\"prompt\":[");
  for (int i = 0; i < 200; i++) n += (size_t)snprintf(body + n, cap - n, "%s%d", i ? "," : "", 1000 + i);
  snprintf(body + n, cap - n, "]}");
  ASSERT_EQ(e2e_http(sl.port, "POST", "/v1/completions", NULL, body, &r, 10000), 400);
  ASSERT(e2e_is_error_body(r.body, "context_length_exceeded"));
  nu_resp_free(&r);
  free(body);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- finding 6: an over-long session id ---- */

static void test_long_session_id_refused(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_sim(&sl, NULL, NULL, NULL), 0);
  char body[1024], hdr[512], sid[200];
  e2e_chat_body(body, sizeof(body), "sim-small", 0, NULL);
  nu_resp_t r;
  /* 127 bytes is the longest kept. */
  memset(sid, 's', 127);
  sid[127] = '\0';
  snprintf(hdr, sizeof(hdr), "X-Session-Id: %s\r\nx-sim-tokens: 2\r\n", sid);
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, hdr, body, &r, 10000), 200);
  nu_resp_free(&r);
  /* 128 is refused, naming the header and the limit. */
  memset(sid, 's', 128);
  sid[128] = '\0';
  snprintf(hdr, sizeof(hdr), "X-Session-Id: %s\r\nx-sim-tokens: 2\r\n", sid);
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, hdr, body, &r, 10000), 400);
  ASSERT(e2e_is_error_body(r.body, "X-Session-Id"));
  ASSERT_NOT_NULL(strstr(r.body, "at most 127"));
  nu_resp_free(&r);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- findings 11 and 14: strings and keys in the body ---- */

/* Posts body and expects 400 with the message mentioning `mention`. */
static int expect_400(int port, const char *path, const char *body, const char *mention) {
  nu_resp_t r;
  int st = e2e_http(port, "POST", path, NULL, body, &r, 10000);
  int ok = st == 400 && e2e_is_error_body(r.body, mention);
  if (!ok) fprintf(stderr, "  %s: got %d %s\n", body, st, r.body ? r.body : "");
  nu_resp_free(&r);
  return ok;
}

static void test_invalid_utf8_refused(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_sim(&sl, NULL, NULL, NULL), 0);
  int port = sl.port;
  ASSERT(expect_400(port, CHAT, "{\"model\":\"sim-small\",\"messages\":[{\"role\":\"user\",\"content\":\"bad \xff byte\"}]}",
                    "'messages[0].content' is not valid UTF-8"));
  ASSERT(expect_400(port, CHAT,
                    "{\"model\":\"sim-small\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
                    "\"text\":\"overlong \xc0\xaf\"}]}]}",
                    "'messages[0].content[0].text' is not valid UTF-8: an overlong encoding"));
  ASSERT(expect_400(port, CHAT,
                    "{\"model\":\"sim-small\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                    "\"stop\":[\"\xed\xa0\x80\"]}",
                    "'stop[0]' is not valid UTF-8: a UTF-16 surrogate"));
  ASSERT(expect_400(port, CHAT,
                    "{\"model\":\"sim-small\",\"messages\":[{\"role\":\"user\",\"content\":\"\\ud83d oops\"}]}",
                    "'messages[0].content' is not valid UTF-8: a \\u escape of a high surrogate"));
  ASSERT(expect_400(port, CHAT,
                    "{\"model\":\"sim-small\",\"messages\":[{\"role\":\"user\",\"content\":\"\xf4\x90\x80\x80\"}]}",
                    "past U+10FFFF"));
  ASSERT(expect_400(port, CHAT,
                    "{\"model\":\"sim-small\",\"messages\":[{\"role\":\"user\",\"content\":\"cut \\u0000 here\"}]}",
                    "'messages[0].content' contains the escape \\u0000"));
  ASSERT(expect_400(port, CHAT, "{\"model\":\"sim-small\",\"user\xfe\":1,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                    "a top-level key is not valid UTF-8"));
  ASSERT(expect_400(port, "/v1/completions", "{\"model\":\"sim-small\",\"prompt\":[\"ok\",\"\xe2\x82\"]}",
                    "'prompt[1]' is not valid UTF-8: a truncated sequence"));
  /* cJSON reads \uZZZZ as a NUL and would cut the text there. */
  ASSERT(expect_400(port, CHAT,
                    "{\"model\":\"sim-small\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\uZZZZb\"}]}",
                    "'messages[0].content' contains a \\u escape without four hex digits"));
  /* What cJSON always took stays accepted: a raw newline inside a string
   * (re-escaped on the way to the engine). */
  nu_resp_t r;
  ASSERT_EQ(e2e_http(port, "POST", CHAT, "x-sim-tokens: 2\r\n",
                     "{\"model\":\"sim-small\",\"messages\":[{\"role\":\"user\",\"content\":\"line 1\nline 2\"}]}",
                     &r, 10000),
            200);
  nu_resp_free(&r);
  /* Valid text of every width, an escaped pair, and U+FFFF pass. */
  ASSERT_EQ(e2e_http(port, "POST", CHAT, "x-sim-tokens: 2\r\n",
                     "{\"model\":\"sim-small\",\"messages\":[{\"role\":\"user\",\"content\":"
                     "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \\ud83d\\ude00 \xef\xbf\xbf\"}]}",
                     &r, 10000),
            200);
  nu_resp_free(&r);
  ASSERT_GE(e2e_counter(port, "errors_bad_request"), 9);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_duplicate_keys_refused(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_sim(&sl, NULL, NULL, NULL), 0);
  int port = sl.port;
  /* The example: validated as model sim-small with 10 tokens, while
   * an engine reading the last keys would see another model and -7. */
  nu_resp_t r;
  int st = e2e_http(port, "POST", CHAT, NULL,
                    "{\"model\":\"sim-small\",\"model\":\"x-other\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                    "\"max_tokens\":10,\"max_tokens\":-7}",
                    &r, 10000);
  ASSERT_EQ(st, 400);
  ASSERT(e2e_is_error_body(r.body, "appears more than once"));
  ASSERT(strstr(r.body, "'model'") != NULL || strstr(r.body, "'max_tokens'") != NULL);
  ASSERT(e2e_is_error_body(r.body, "duplicate_key"));
  nu_resp_free(&r);
  ASSERT(expect_400(port, CHAT,
                    "{\"model\":\"sim-small\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\",\"role\":\"system\"}]}",
                    "'messages[0].role' appears more than once"));
  ASSERT(expect_400(port, CHAT,
                    "{\"model\":\"sim-small\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                    "\"stream_options\":null,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
                    "{\"schema\":{\"type\":\"object\",\"type\":\"array\"}}}}",
                    "'response_format.json_schema.schema.type' appears more than once"));
  ASSERT(expect_400(port, CHAT,
                    "{\"model\":\"sim-small\",\"mod\\u0065l\":\"x-other\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                    "'model' appears more than once"));
  /* Nothing reached the engine; a good request still does. */
  ASSERT_EQ(e2e_counter(port, "streams_started"), 0);
  ASSERT_EQ(e2e_http(port, "POST", CHAT, "x-sim-tokens: 2\r\n",
                     "{\"model\":\"sim-small\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                     "{\"role\":\"user\",\"content\":\"again\"}]}",
                     &r, 10000),
            200);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 240);
  E2E_RUN(test_chunked_request_with_trailer_completes);
  E2E_RUN(test_secret_request_id_replaced);
  E2E_RUN(test_request_id_rule);
  E2E_RUN(test_array_of_parts_prompt_counted);
  E2E_RUN(test_long_session_id_refused);
  E2E_RUN(test_invalid_utf8_refused);
  E2E_RUN(test_duplicate_keys_refused);
  return SL_TEST_EXIT();
}
