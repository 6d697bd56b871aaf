/* Tests for runtime/upstream/adapter: the table by name, the configuration
 * check naming the key (directly and through the registry), the OpenAI
 * adapter's engine request (the same body as sluice sent before adapters
 * existed: the client's members, then "stream": true and "stream_options":
 * {"include_usage": true}; the path per route; the headers), its health
 * path, framing and scan, and the upstream decoder taking framing and scan
 * from the adapter it is given (NDJSON lines, a too long line refused
 * with a clear error). */
#include "runtime/upstream/adapter.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/upstream/oai.h"
#include "runtime/upstream/registry.h"
#include "runtime/upstream/upstream_decoder.h"
#include "test.h"

/* What sluice sent the engine before adapters existed (api.c's
 * sl__validate): the client's tree with stream and stream_options deleted
 * and re-added, printed compactly.  The caller frees the result. */
static char *legacy_body(const char *client) {
  cJSON *root = cJSON_Parse(client);
  if (root == NULL) return NULL;
  cJSON_DeleteItemFromObjectCaseSensitive(root, "stream");
  cJSON_DeleteItemFromObjectCaseSensitive(root, "stream_options");
  cJSON_AddTrueToObject(root, "stream");
  cJSON *opts = cJSON_AddObjectToObject(root, "stream_options");
  cJSON_AddTrueToObject(opts, "include_usage");
  char *s = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return s;
}

/* The adapter's input as the request phase keeps it: the compact print
 * without stream and stream_options.  The caller frees the result. */
static char *kept_body(const char *client) {
  cJSON *root = cJSON_Parse(client);
  if (root == NULL) return NULL;
  cJSON_DeleteItemFromObjectCaseSensitive(root, "stream");
  cJSON_DeleteItemFromObjectCaseSensitive(root, "stream_options");
  char *s = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return s;
}

static void test_table(void) {
  ASSERT(sl_adapter_find("openai") == &sl_adapter_openai);
  ASSERT(sl_adapter_find("tgi") == &sl_adapter_tgi);
  ASSERT(sl_adapter_find("vllm") == &sl_adapter_vllm);
  ASSERT(sl_adapter_find("llamacpp") == &sl_adapter_llamacpp);
  ASSERT(sl_adapter_find("ollama") == &sl_adapter_ollama);
  ASSERT_NULL(sl_adapter_find("llama.cpp"));
  ASSERT_NULL(sl_adapter_find("OpenAI")); /* names are exact */
  ASSERT_NULL(sl_adapter_find(""));
  ASSERT_NULL(sl_adapter_find(NULL));
  char names[128];
  ASSERT_STR_EQ(sl_adapter_names(names, sizeof(names)), "\"openai\", \"vllm\", \"llamacpp\", \"tgi\", \"ollama\"");
  char tiny[4];
  sl_adapter_names(tiny, sizeof(tiny));
  ASSERT_EQ(strlen(tiny), 3); /* truncated, still a string */
  ASSERT_STR_EQ(sl_adapter_openai.name, "openai");
  ASSERT_STR_EQ(sl_adapter_openai.health_path, "/health");
  ASSERT_EQ(sl_adapter_openai.framing, SL_FRAMING_SSE);
  ASSERT_EQ(sl_adapter_openai.native, 0);
  ASSERT_EQ(sl_adapter_vllm.native, 0);
  /* Health per engine kind (wire-formats.md sections 3, 4, 5). */
  ASSERT_STR_EQ(sl_adapter_llamacpp.health_path, "/health");
  ASSERT_STR_EQ(sl_adapter_tgi.health_path, "/health");
  ASSERT_STR_EQ(sl_adapter_ollama.health_path, "/");
  ASSERT_EQ(sl_adapter_ollama.framing, SL_FRAMING_NDJSON);
  ASSERT_EQ(sl_adapter_tgi.framing, SL_FRAMING_SSE);
  ASSERT(sl_adapter_llamacpp.native && sl_adapter_tgi.native && sl_adapter_ollama.native);
}

static int parse_cfg(sl_config_t *cfg, const char *json) {
  char err[512];
  return sl_config_parse(cfg, json, strlen(json), err, sizeof(err));
}

static void test_unknown_adapter_named_by_key(void) {
  const char *j =
      "{\"pools\":[{\"name\":\"a\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:9001\"}]},"
      "{\"name\":\"b\",\"adapter\":\"tgi-native\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:9002\"}]}]}";
  sl_config_t cfg;
  ASSERT_EQ(parse_cfg(&cfg, j), 0); /* the configuration's syntax is fine */
  char err[512];
  ASSERT_EQ(sl_adapter_check_config(&cfg, err, sizeof(err)), SL_EINVAL);
  ASSERT_STR_EQ(err, "pools[1].adapter: \"tgi-native\" is not supported (supported: \"openai\", \"vllm\", "
                "\"llamacpp\", \"tgi\", \"ollama\")");
  /* The registry refuses it the same way, so a gateway never opens with it. */
  sl_registry_t reg;
  err[0] = '\0';
  ASSERT_EQ(sl_registry_init(&reg, NULL, &cfg, err, sizeof(err)), SL_EINVAL);
  ASSERT_STR_EQ(err, "pools[1].adapter: \"tgi-native\" is not supported (supported: \"openai\", \"vllm\", "
                "\"llamacpp\", \"tgi\", \"ollama\")");
  sl_registry_free(&reg);
  sl_config_free(&cfg);
  /* An empty name is no adapter either. */
  ASSERT_EQ(parse_cfg(&cfg, "{\"pools\":[{\"name\":\"a\",\"adapter\":\"\",\"models\":[\"m\"],"
                            "\"endpoints\":[{\"url\":\"http://127.0.0.1:9001\"}]}]}"),
            0);
  ASSERT_EQ(sl_adapter_check_config(&cfg, err, sizeof(err)), SL_EINVAL);
  ASSERT_STR_EQ(err, "pools[0].adapter: \"\" is not supported (supported: \"openai\", \"vllm\", \"llamacpp\", "
                "\"tgi\", \"ollama\")");
  sl_config_free(&cfg);
}

static void test_registry_keeps_adapter_per_pool(void) {
  const char *j =
      "{\"pools\":[{\"name\":\"a\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:9001\"}]},"
      "{\"name\":\"b\",\"adapter\":\"openai\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:9002\"}]}]}";
  sl_config_t cfg;
  ASSERT_EQ(parse_cfg(&cfg, j), 0);
  char err[512];
  ASSERT_EQ(sl_adapter_check_config(&cfg, err, sizeof(err)), 0);
  sl_registry_t reg;
  ASSERT_EQ(sl_registry_init(&reg, NULL, &cfg, err, sizeof(err)), 0);
  ASSERT_EQ(reg.npools, 2);
  ASSERT(reg.pools[0].adapter == &sl_adapter_openai); /* the default */
  ASSERT(reg.pools[1].adapter == &sl_adapter_openai);
  sl_registry_free(&reg);
  sl_config_free(&cfg);
}

/* Builds with the OpenAI adapter from a client body; checks the body is
 * byte for byte what sluice sent before, and returns the request. */
static int build_from(const char *client, int chat, const char *fwd, sl_engine_req_t *er) {
  char *kept = kept_body(client);
  if (kept == NULL) return -100;
  sl_adapter_req_t in = {chat, kept, strlen(kept), fwd};
  char err[256];
  int rc = sl_adapter_openai.build(&sl_adapter_openai, &in, er, err, sizeof(err));
  cJSON_free(kept);
  return rc;
}

static void test_openai_body_same_as_before(void) {
  static const char *const clients[] = {
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}",
      "{\"stream\":false,\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\\"b\\u00e9\\n\"}],"
      "\"temperature\":0.5,\"max_tokens\":12}",
      "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":false},\"prompt\":[1,2,3],"
      "\"stop\":[\"x\"],\"seed\":7,\"logit_bias\":{\"50256\":-100},\"user\":\"u\"}",
      "{\"model\":\"m\",\"prompt\":\"p\",\"stream_options\":null,\"stream\":null,\"tools\":[{\"type\":\"function\","
      "\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\",\"properties\":{}}}}],\"n\":1}",
      "  {\n \"model\" : \"m\" ,\n \"prompt\" : \"spaces\" }\n",
      "{\"model\":\"m\",\"prompt\":\"p\",\"extra\":{\"stream\":false,\"nested\":[{},[],null,true,1.25e2]}}",
  };
  for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++) {
    sl_engine_req_t er;
    ASSERT_EQ(build_from(clients[i], 1, NULL, &er), 0);
    char *want = legacy_body(clients[i]);
    ASSERT_NOT_NULL(want);
    ASSERT_MEM_EQ(er.body, er.body_len, want, strlen(want));
    ASSERT_EQ(er.body[er.body_len], '\0');
    /* And read back: streaming with usage, every client field kept. */
    cJSON *got = cJSON_Parse(er.body), *client = cJSON_Parse(clients[i]);
    ASSERT_NOT_NULL(got);
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(got, "stream")));
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(got, "stream_options"),
                                                         "include_usage")));
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(got, "stream_options")), 1);
    const cJSON *m;
    cJSON_ArrayForEach(m, client) {
      if (strcmp(m->string, "stream") == 0 || strcmp(m->string, "stream_options") == 0) continue;
      ASSERT(cJSON_Compare(m, cJSON_GetObjectItemCaseSensitive(got, m->string), 1));
    }
    cJSON_Delete(got);
    cJSON_Delete(client);
    cJSON_free(want);
    sl_engine_req_free(&er);
    ASSERT_NULL(er.body); /* cleared */
  }
  /* The empty object (the request phase never keeps one, but the adapter
   * does not depend on that). */
  sl_engine_req_t er;
  ASSERT_EQ(build_from("{}", 0, NULL, &er), 0);
  ASSERT_STR_EQ(er.body, "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
  sl_engine_req_free(&er);
  sl_engine_req_free(&er); /* twice is fine */
}

static void test_openai_path_method_headers(void) {
  const char *client = "{\"model\":\"m\",\"prompt\":\"p\"}";
  sl_engine_req_t er;
  ASSERT_EQ(build_from(client, 1, "X-Request-Id: r1\r\nx-sim-fail: 500\r\n", &er), 0);
  ASSERT_STR_EQ(er.method, "POST");
  ASSERT_STR_EQ(er.path, "/v1/chat/completions");
  /* The adapter's own lines first, then the forwarded ones, unchanged. */
  ASSERT_STR_EQ(er.headers,
                "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                "X-Request-Id: r1\r\nx-sim-fail: 500\r\n");
  sl_engine_req_free(&er);
  ASSERT_EQ(build_from(client, 0, NULL, &er), 0);
  ASSERT_STR_EQ(er.path, "/v1/completions");
  ASSERT_STR_EQ(er.headers, "Content-Type: application/json\r\nAccept: text/event-stream\r\n");
  sl_engine_req_free(&er);
}

static void test_openai_refuses_what_is_not_an_object(void) {
  static const char *const bad[] = {"", "{", "[1]", "\"s\"", "x}"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    sl_adapter_req_t in = {1, bad[i], strlen(bad[i]), NULL};
    sl_engine_req_t er;
    char err[256] = "";
    ASSERT_EQ(sl_adapter_openai.build(&sl_adapter_openai, &in, &er, err, sizeof(err)), SL_EINVAL);
    ASSERT_STR_EQ(err, "the request body to build from is not a JSON object");
    ASSERT_NULL(er.body);
    ASSERT_NULL(er.headers);
  }
  sl_adapter_req_t none = {1, NULL, 0, NULL};
  sl_engine_req_t er;
  char err[256];
  ASSERT_EQ(sl_adapter_openai.build(&sl_adapter_openai, &none, &er, err, sizeof(err)), SL_EINVAL);
}

static void test_openai_scan(void) {
  sl_event_t a, b;
  const char *chunk = "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"token_ids\":[9]}]}";
  ASSERT_EQ(sl_adapter_openai.scan(chunk, strlen(chunk), NULL, 0, &a), 0);
  ASSERT_EQ(sl_oai_scan(chunk, strlen(chunk), &b), 0);
  ASSERT_EQ(a.kind, SL_EV_CHUNK);
  ASSERT_EQ(a.has_text, b.has_text);
  ASSERT(a.text.p == b.text.p && a.text.n == b.text.n);
  ASSERT_EQ(a.n_token_ids, 1);
  ASSERT_EQ(a.token_ids[0], 9);
  /* Another event name is not an error. */
  ASSERT_EQ(sl_adapter_openai.scan(chunk, strlen(chunk), "message", 7, &a), 0);
  ASSERT_EQ(a.kind, SL_EV_CHUNK);
  ASSERT_EQ(sl_adapter_openai.scan("nope", 4, NULL, 0, &a), SL_EPARSE);
  /* `event: error` (the Node SDK raises on it): JSON without an "error"
   * key is still an error, and data that is not JSON one whose text is
   * only in raw. */
  const char *flat = "{\"message\":\"boom\",\"type\":\"t\"}";
  ASSERT_EQ(sl_adapter_openai.scan(flat, strlen(flat), "error", 5, &a), 0);
  ASSERT_EQ(a.kind, SL_EV_ERROR);
  ASSERT_MEM_EQ(a.err_message.p, a.err_message.n, "boom", 4);
  ASSERT_EQ(sl_adapter_openai.scan("engine fell over", 16, "error", 5, &a), 0);
  ASSERT_EQ(a.kind, SL_EV_ERROR);
  ASSERT_MEM_EQ(a.raw.p, a.raw.n, "engine fell over", 16);
  ASSERT_EQ(a.n_choices, -1);
  ASSERT_NULL(a.err_message.p);
  ASSERT_EQ(sl_adapter_openai.scan("[DONE]", 6, "error", 5, &a), 0);
  ASSERT_EQ(a.kind, SL_EV_DONE);
}

/* ---- the decoder takes framing and scan from its adapter ---- */

static int scans;

/* A scan of a made-up schema: every payload is one chunk whose text is
 * the whole payload. */
static int counting_scan(const char *data, size_t len, const char *event, size_t event_len, sl_event_t *ev) {
  (void)event;
  (void)event_len;
  scans++;
  memset(ev, 0, offsetof(sl_event_t, token_ids));
  ev->kind = SL_EV_CHUNK;
  ev->raw.p = ev->text.p = data;
  ev->raw.n = ev->text.n = len;
  ev->has_text = 1;
  ev->n_choices = -1;
  return 0;
}

static const sl_adapter_t plain_sse = {"plain", "/ping", SL_FRAMING_SSE, NULL, counting_scan, 0};
static const sl_adapter_t plain_ndjson = {"ndj", "/ping", SL_FRAMING_NDJSON, NULL, counting_scan, 0};

typedef struct {
  int events;
  char last[64];
} seen_t;

static int on_event(void *ud, const sl_event_t *ev) {
  seen_t *s = ud;
  s->events++;
  snprintf(s->last, sizeof(s->last), "%.*s", (int)ev->text.n, ev->text.p);
  return 0;
}

static const char sse_resp[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 23\r\n\r\n"
    "data: not json at all\n\n";

static void test_decoder_uses_adapter_scan(void) {
  sl_updec_t *d = sl_calloc(1, sizeof(*d));
  char join[256];
  seen_t s;
  /* The default is OpenAI's scan, which refuses this payload... */
  sl_updec_init(d, join, sizeof(join));
  ASSERT(d->adapter == &sl_adapter_openai);
  memset(&s, 0, sizeof(s));
  ASSERT_EQ(sl_updec_feed(d, sse_resp, strlen(sse_resp), on_event, &s), SL_EPARSE);
  ASSERT_EQ(s.events, 0);
  /* ...another adapter's scan reads it, and the adapter survives a reset. */
  sl_updec_set_adapter(d, &plain_sse);
  sl_updec_reset(d);
  ASSERT(d->adapter == &plain_sse);
  scans = 0;
  memset(&s, 0, sizeof(s));
  ASSERT_EQ(sl_updec_feed(d, sse_resp, strlen(sse_resp), on_event, &s), 0);
  ASSERT_EQ(d->message_done, 1);
  ASSERT_EQ(scans, 1);
  ASSERT_EQ(s.events, 1);
  ASSERT_STR_EQ(s.last, "not json at all");
  sl_free(d);
}

static void test_decoder_ndjson_lines(void) {
  sl_updec_t *d = sl_calloc(1, sizeof(*d));
  char join[256];
  seen_t s;
  sl_updec_init(d, join, sizeof(join));
  sl_updec_set_adapter(d, &plain_ndjson);
  /* One event a line; a blank line and a CRLF are line ends only. */
  const char *nd =
      "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: 14\r\n\r\n"
      "{\"a\":1}\n\r\n{}\n\n";
  scans = 0;
  memset(&s, 0, sizeof(s));
  ASSERT_EQ(sl_updec_feed(d, nd, strlen(nd), on_event, &s), 0);
  ASSERT_EQ(d->message_done, 1);
  ASSERT_EQ(s.events, 2);
  ASSERT_EQ(scans, 2);
  ASSERT_STR_EQ(s.last, "{}");
  ASSERT_EQ(sl_updec_eof(d), 0);
  /* A line longer than the join buffer is a clear error. */
  char small[8];
  sl_updec_init(d, small, sizeof(small));
  sl_updec_set_adapter(d, &plain_ndjson);
  const char *head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n";
  ASSERT_EQ(sl_updec_feed(d, head, strlen(head), on_event, &s), 0);
  const char *c1 = "6\r\n{\"abc\"\r\n";
  const char *c2 = "6\r\n:12345\r\n";
  ASSERT_EQ(sl_updec_feed(d, c1, strlen(c1), on_event, &s), 0);
  ASSERT_EQ(sl_updec_feed(d, c2, strlen(c2), on_event, &s), SL_ETOOBIG);
  ASSERT_STR_EQ(d->errmsg, "upstream NDJSON line larger than the join buffer (8 bytes)");
  sl_updec_init(d, join, sizeof(join));
  sl_updec_set_adapter(d, &plain_ndjson);
  /* An error reply to such an adapter is kept as a body, as for any
   * engine: the caller reads the engine's own error. */
  sl_updec_reset(d);
  const char *e503 = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
  ASSERT_EQ(sl_updec_feed(d, e503, strlen(e503), on_event, &s), 0);
  ASSERT_EQ(d->status, 503);
  ASSERT_EQ(d->message_done, 1);
  ASSERT_MEM_EQ(d->body, d->body_len, "{}", 2);
  /* An SSE reply to an NDJSON adapter is not its framing: no events,
   * the body kept (the caller sees a 2xx it cannot read). */
  sl_updec_reset(d);
  memset(&s, 0, sizeof(s));
  ASSERT_EQ(sl_updec_feed(d, sse_resp, strlen(sse_resp), on_event, &s), 0);
  ASSERT_EQ(s.events, 0);
  ASSERT_EQ(d->is_sse, 1);
  ASSERT_GT(d->body_len, 0);
  sl_free(d);
}

int main(void) {
  sl_alloc_init();
  SL_RUN(test_table);
  SL_RUN(test_unknown_adapter_named_by_key);
  SL_RUN(test_registry_keeps_adapter_per_pool);
  SL_RUN(test_openai_body_same_as_before);
  SL_RUN(test_openai_path_method_headers);
  SL_RUN(test_openai_refuses_what_is_not_an_object);
  SL_RUN(test_openai_scan);
  SL_RUN(test_decoder_uses_adapter_scan);
  SL_RUN(test_decoder_ndjson_lines);
  return SL_TEST_EXIT();
}
