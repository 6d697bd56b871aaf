/* Tests for runtime/gateway/request: each step of the request phase on good
 * and bad input, without a network or a loop: parse (text, syntax, object,
 * duplicate keys), validate (every field rule, what placement weighs, the
 * session header), the model check against a registry, and keeping the
 * body; then the whole phase up to the OpenAI adapter's engine request,
 * which must be byte for byte what sluice sent before the phase was split
 * (the client's tree with stream and stream_options re-added, printed). */
#include "runtime/gateway/request.h"

#include <stdlib.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/upstream/adapter.h"
#include "test.h"

static sl_request_error_t e;

static int parse(const char *body, cJSON **root) { return sl_request_parse(body, strlen(body), root, &e); }

/* Parses and validates body; returns the validate step's result (-2 when
 * parsing failed).  r is zeroed first. */
static int validate(const char *body, int chat, const char *session, sl_request_t *r) {
  cJSON *root;
  memset(r, 0, sizeof(*r));
  if (parse(body, &root) < 0) return -2;
  int rc = sl_request_validate(root, chat, session, r, &e);
  cJSON_Delete(root);
  return rc;
}

#define ASSERT_REFUSED(status_, code_, message_) \
  do {                                           \
    ASSERT_EQ(e.status, (status_));              \
    ASSERT_STR_EQ(e.code, (code_));              \
    ASSERT_STR_EQ(e.message, (message_));        \
  } while (0)

/* ---- step 1 ---- */

static void test_parse_good(void) {
  cJSON *root = NULL;
  ASSERT_EQ(parse(" {\"model\":\"m\",\"x\":[1,{\"y\":\"\\u00e9\"}]}\r\n\t ", &root), 0);
  ASSERT_NOT_NULL(root);
  ASSERT(cJSON_IsObject(root));
  ASSERT_STR_EQ(cJSON_GetObjectItemCaseSensitive(root, "model")->valuestring, "m");
  cJSON_Delete(root);
}

static void test_parse_bad(void) {
  cJSON *root = (cJSON *)&root; /* must come back NULL */
  ASSERT_EQ(sl_request_parse("", 0, &root, &e), -1);
  ASSERT_NULL(root);
  ASSERT_REFUSED(400, "body", "request body is empty; expected a JSON object");
  ASSERT_STR_EQ(e.type, "invalid_request_error");
  ASSERT_EQ(e.counter, SL_C_ERR_BAD_REQUEST);
  ASSERT_EQ(parse("{\"model\":\"m\",", &root), -1);
  ASSERT_REFUSED(400, "body", "request body is not valid JSON (error near byte 12)");
  ASSERT_EQ(parse("{\"model\":\"m\"} x", &root), -1);
  ASSERT_REFUSED(400, "body", "request body is not valid JSON (error near byte 14)");
  ASSERT_EQ(parse("[{\"model\":\"m\"}]", &root), -1);
  ASSERT_REFUSED(400, "body", "request body must be a JSON object");
  ASSERT_EQ(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"role\":\"system\"}]}", &root), -1);
  ASSERT_EQ(e.status, 400);
  ASSERT_STR_EQ(e.code, "duplicate_key");
  ASSERT(strstr(e.message, "messages[0].role") != NULL);
  /* Text: a stray byte, and a NUL, each named by its field. */
  ASSERT_EQ(parse("{\"model\":\"m\",\"prompt\":\"a\xff\"}", &root), -1);
  ASSERT_EQ(e.status, 400);
  ASSERT_STR_EQ(e.code, "invalid_utf8");
  ASSERT(strstr(e.message, "prompt") != NULL);
  ASSERT_EQ(parse("{\"model\":\"m\",\"prompt\":\"a\\u0000b\"}", &root), -1);
  ASSERT_STR_EQ(e.code, "invalid_string");
  ASSERT(strstr(e.message, "prompt") != NULL);
  ASSERT_NULL(root);
}

/* ---- step 2 ---- */

static void test_validate_good(void) {
  sl_request_t r;
  ASSERT_EQ(validate("{\"model\":\"m1\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"stream\":true,"
                     "\"stream_options\":{\"include_usage\":true},\"max_tokens\":5,\"max_completion_tokens\":9,"
                     "\"temperature\":0.7,\"top_p\":1,\"n\":1,\"stop\":[\"x\"]}",
                     1, "sess-1", &r),
            0);
  ASSERT_STR_EQ(r.model, "m1");
  ASSERT_EQ(r.chat, 1);
  ASSERT_EQ(r.stream, 1);
  ASSERT_EQ(r.include_usage, 1);
  ASSERT_UINT_EQ(r.prompt_chars, 5);
  ASSERT_EQ(r.max_tokens, 9); /* max_completion_tokens wins */
  ASSERT_STR_EQ(r.session, "sess-1");
  ASSERT_NULL(r.body); /* kept only by step 4 */
  ASSERT_EQ(validate("{\"model\":\"m1\",\"prompt\":[\"ab\",\"c\"],\"stream\":false,\"max_tokens\":3,\"stop\":null}", 0,
                     NULL, &r),
            0);
  ASSERT_EQ(r.chat, 0);
  ASSERT_EQ(r.stream, 0);
  ASSERT_EQ(r.include_usage, 0);
  ASSERT_UINT_EQ(r.prompt_chars, 3);
  ASSERT_EQ(r.max_tokens, 3);
  ASSERT_STR_EQ(r.session, "");
}

static void test_validate_bad(void) {
  static const struct {
    const char *body;
    int chat;
    const char *code, *message;
  } cases[] = {
      {"{\"messages\":[{\"role\":\"user\"}]}", 1, "model", "'model' is required"},
      {"{\"model\":\"\",\"messages\":[{\"role\":\"user\"}]}", 1, "model", "'model' must be a non-empty string"},
      {"{\"model\":3,\"prompt\":\"p\"}", 0, "model", "'model' must be a non-empty string"},
      {"{\"model\":\"m\"}", 1, "messages", "'messages' is required"},
      {"{\"model\":\"m\",\"messages\":[]}", 1, "messages", "'messages' must be a non-empty array"},
      {"{\"model\":\"m\",\"messages\":{}}", 1, "messages", "'messages' must be a non-empty array"},
      {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\"},3]}", 1, "messages", "'messages[1]' must be an object"},
      {"{\"model\":\"m\",\"messages\":[{\"role\":1}]}", 1, "messages", "'messages[0].role' must be a string"},
      {"{\"model\":\"m\"}", 0, "prompt", "'prompt' is required"},
      {"{\"model\":\"m\",\"prompt\":[]}", 0, "prompt", "'prompt' must be a string or a non-empty array"},
      {"{\"model\":\"m\",\"prompt\":5}", 0, "prompt", "'prompt' must be a string or a non-empty array"},
      {"{\"model\":\"m\",\"prompt\":\"p\",\"stream\":\"yes\"}", 0, "stream", "'stream' must be a boolean"},
      {"{\"model\":\"m\",\"prompt\":\"p\",\"stream\":true,\"stream_options\":[]}", 0, "stream_options",
       "'stream_options' must be an object"},
      {"{\"model\":\"m\",\"prompt\":\"p\",\"stream_options\":{}}", 0, "stream_options",
       "'stream_options' is only allowed when 'stream' is true"},
      {"{\"model\":\"m\",\"prompt\":\"p\",\"stream\":true,\"stream_options\":{\"include_usage\":1}}", 0,
       "stream_options.include_usage", "'stream_options.include_usage' must be a boolean"},
      {"{\"model\":\"m\",\"prompt\":\"p\",\"max_tokens\":1.5}", 0, "max_tokens", "'max_tokens' must be an integer"},
      {"{\"model\":\"m\",\"prompt\":\"p\",\"max_tokens\":0}", 0, "max_tokens", "'max_tokens' must be at least 1, got 0"},
      {"{\"model\":\"m\",\"prompt\":\"p\",\"max_completion_tokens\":2e9}", 0, "max_completion_tokens",
       "'max_completion_tokens' is too large: 2000000000"},
      {"{\"model\":\"m\",\"prompt\":\"p\",\"temperature\":\"hot\"}", 0, "temperature", "'temperature' must be a number"},
      {"{\"model\":\"m\",\"prompt\":\"p\",\"temperature\":3}", 0, "temperature",
       "'temperature' must be between 0 and 2, got 3"},
      {"{\"model\":\"m\",\"prompt\":\"p\",\"top_p\":-0.5}", 0, "top_p", "'top_p' must be between 0 and 1, got -0.5"},
      {"{\"model\":\"m\",\"prompt\":\"p\",\"n\":2}", 0, "n", "'n' must be 1 (sluice relays one choice per request)"},
      {"{\"model\":\"m\",\"prompt\":\"p\",\"stop\":5}", 0, "stop",
       "'stop' must be a string, an array of strings, or null"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sl_request_t r;
    memset(&e, 0, sizeof(e));
    ASSERT_EQ(validate(cases[i].body, cases[i].chat, NULL, &r), -1);
    ASSERT_REFUSED(400, cases[i].code, cases[i].message);
    ASSERT_STR_EQ(e.type, "invalid_request_error");
    ASSERT_EQ(e.counter, SL_C_ERR_BAD_REQUEST);
  }
  /* A model name too long to keep. */
  char body[600];
  char name[300];
  memset(name, 'a', sizeof(name) - 1);
  name[sizeof(name) - 1] = '\0';
  snprintf(body, sizeof(body), "{\"model\":\"%s\",\"prompt\":\"p\"}", name);
  sl_request_t r;
  ASSERT_EQ(validate(body, 0, NULL, &r), -1);
  ASSERT_REFUSED(400, "model", "'model' is too long");
  /* A session id too long to keep is refused, naming the limit. */
  char session[200];
  memset(session, 's', sizeof(session) - 1);
  session[sizeof(session) - 1] = '\0';
  ASSERT_EQ(validate("{\"model\":\"m\",\"prompt\":\"p\"}", 0, session, &r), -1);
  ASSERT_REFUSED(400, "x-session-id", "header 'X-Session-Id' is too long: 199 bytes (at most 127)");
}

static void test_check_model(void) {
  const char *j =
      "{\"pools\":[{\"name\":\"a\",\"models\":[\"m1\",\"m2\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:9001\"}]}]}";
  sl_config_t cfg;
  char err[256];
  ASSERT_EQ(sl_config_parse(&cfg, j, strlen(j), err, sizeof(err)), 0);
  sl_registry_t reg;
  ASSERT_EQ(sl_registry_init(&reg, NULL, &cfg, err, sizeof(err)), 0);
  sl_request_t r;
  memset(&r, 0, sizeof(r));
  snprintf(r.model, sizeof(r.model), "m2");
  ASSERT_EQ(sl_request_check_model(&reg, &r, &e), 0);
  snprintf(r.model, sizeof(r.model), "gpt-9");
  ASSERT_EQ(sl_request_check_model(&reg, &r, &e), -1);
  ASSERT_REFUSED(404, "model_not_found",
                 "The model 'gpt-9' does not exist (GET /v1/models lists the models served)");
  ASSERT_STR_EQ(e.type, "invalid_request_error");
  ASSERT_EQ(e.counter, SL_C_ERR_NOT_FOUND);
  sl_registry_free(&reg);
  sl_config_free(&cfg);
}

/* ---- step 4, and the whole phase up to the engine request ---- */

static void test_keep_body(void) {
  cJSON *root;
  ASSERT_EQ(parse("{ \"model\": \"m\", \"stream\": true, \"stream_options\": {\"include_usage\": false},"
                  " \"prompt\": \"p\", \"seed\": 7 }",
                  &root),
            0);
  sl_request_t r;
  memset(&r, 0, sizeof(r));
  ASSERT_EQ(sl_request_keep_body(root, &r, &e), 0);
  cJSON_Delete(root);
  ASSERT_STR_EQ(r.body, "{\"model\":\"m\",\"prompt\":\"p\",\"seed\":7}");
  ASSERT_UINT_EQ(r.body_len, strlen(r.body));
  sl_free(r.body);
}

/* The engine body before the phase was split (api.c's sl__validate). */
static char *legacy_body(const char *client) {
  cJSON *root = cJSON_Parse(client);
  cJSON_DeleteItemFromObjectCaseSensitive(root, "stream");
  cJSON_DeleteItemFromObjectCaseSensitive(root, "stream_options");
  cJSON_AddTrueToObject(root, "stream");
  cJSON *opts = cJSON_AddObjectToObject(root, "stream_options");
  cJSON_AddTrueToObject(opts, "include_usage");
  char *s = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return s;
}

static void test_phase_to_engine_request(void) {
  static const struct {
    const char *body;
    int chat;
  } cases[] = {
      {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 1},
      {"{\"stream\":true,\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
       "\"text\":\"\\u00e9\\\"\"}]}],\"stream_options\":{\"include_usage\":true},\"temperature\":0.25}",
       1},
      {"\n{ \"model\" : \"m\", \"prompt\" : [\"a\", \"b\"], \"stream\" : false, \"max_tokens\" : 16,"
       " \"logit_bias\" : {\"1\" : -100}, \"user\" : \"u\" }\n",
       0},
      {"{\"model\":\"m\",\"prompt\":\"p\",\"stream\":null,\"stream_options\":null,\"extra\":{\"stream\":1}}", 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sl_request_t r;
    cJSON *root;
    memset(&r, 0, sizeof(r));
    ASSERT_EQ(parse(cases[i].body, &root), 0);
    ASSERT_EQ(sl_request_validate(root, cases[i].chat, NULL, &r, &e), 0);
    ASSERT_EQ(sl_request_keep_body(root, &r, &e), 0);
    cJSON_Delete(root);
    /* The attempt: the OpenAI adapter builds from what was kept. */
    sl_adapter_req_t in = {r.chat, r.body, r.body_len, "X-Request-Id: t\r\n"};
    sl_engine_req_t er;
    char err[128];
    ASSERT_EQ(sl_adapter_openai.build(&sl_adapter_openai, &in, &er, err, sizeof(err)), 0);
    char *want = legacy_body(cases[i].body);
    ASSERT_MEM_EQ(er.body, er.body_len, want, strlen(want));
    ASSERT_STR_EQ(er.path, cases[i].chat ? "/v1/chat/completions" : "/v1/completions");
    cJSON_free(want);
    sl_engine_req_free(&er);
    sl_free(r.body);
  }
}

int main(void) {
  sl_alloc_init();
  SL_RUN(test_parse_good);
  SL_RUN(test_parse_bad);
  SL_RUN(test_validate_good);
  SL_RUN(test_validate_bad);
  SL_RUN(test_check_model);
  SL_RUN(test_keep_body);
  SL_RUN(test_phase_to_engine_request);
  return SL_TEST_EXIT();
}
