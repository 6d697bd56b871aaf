/* e2e_adapters.c: each engine adapter end to end, through the real sluice
 * binary against the simulated engine speaking that engine's format.
 *
 * The simulated engine serves the native routes by path (docs/sim-engine.md):
 * llama.cpp's POST /completion, TGI's POST /generate_stream, Ollama's POST
 * /api/chat and /api/generate (NDJSON), beside the OpenAI /v1 routes that
 * "vllm" uses.  For every adapter the client must get OpenAI chunks only:
 * streaming (the role chunk on chat, one content chunk a token, the finish
 * chunk, the usage chunk when asked, [DONE]), non-streaming (one assembled
 * answer with usage), both finish reasons (stop when the engine ends by
 * itself, length at max_tokens), and an error the engine reports inside its
 * 200 stream (one OpenAI error event, no [DONE]).  Chat on an adapter whose
 * native route takes only a prompt is refused with a sentence saying so.
 * Every wait is for an event or a count, bounded; nothing is timed.
 */
#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define COMPL "/v1/completions"
#define CHUNK "chat.completion.chunk"
#define TEXT "text_completion"

/* sluice with one pool "p" on adapter `adapter`, serving m1 from one
 * in-process simulated engine. */
static int start_adapter(e2e_proc_t *sl, const char *adapter) {
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"p\",\"adapter\":\"%s\",\"models\":[\"m1\"],"
           "\"endpoints\":[{\"sim\":{\"ttft_ms\":2,\"itl_ms\":1,\"itl_jitter\":0}}]}],"
           "\"health\":{\"cooldown_base_ms\":20,\"cooldown_max_ms\":40}}",
           adapter);
  if (e2e_serve_start(sl, cfg, NULL) < 0) return -1;
  return e2e_wait_ready(sl->port, 200, E2E_WAIT_MS);
}

/* One streamed request; checks the OpenAI event sequence, the finish
 * reason and the usage count.  Returns 1 when all hold. */
static int streamed(int port, int chat, const char *headers, const char *extra, long tokens, int usage,
                    const char *finish) {
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  if (chat) e2e_chat_body(body, sizeof(body), "m1", 1, extra);
  else e2e_completion_body(body, sizeof(body), "m1", 1, extra);
  int st = e2e_stream(port, chat ? CHAT : COMPL, headers, body, &head, &s, chat ? CHUNK : TEXT, E2E_WAIT_MS);
  int ok = st == 200 && e2e_sse_kinds_are(&s, chat, tokens, usage) && strcmp(s.finish_reason, finish) == 0 &&
           s.wrong_object == 0 && s.nbad == 0 && s.nother == 0 && s.event_lines == 0 &&
           (!usage || s.usage_completion_tokens == tokens);
  if (!ok)
    fprintf(stderr, "  streamed(chat=%d): status %d, kinds \"%s\", finish \"%s\", usage %lld, wrong %ld, bad %ld\n",
            chat, st, s.kinds, s.finish_reason, (long long)s.usage_completion_tokens, s.wrong_object, s.nbad);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  return ok;
}

/* One non-streamed request: one answer object with the text, the finish
 * reason and usage.  Returns 1 when they hold. */
static int whole(int port, int chat, const char *headers, long tokens, const char *finish) {
  char body[1024];
  nu_resp_t r;
  if (chat) e2e_chat_body(body, sizeof(body), "m1", 0, NULL);
  else e2e_completion_body(body, sizeof(body), "m1", 0, NULL);
  int st = e2e_http(port, "POST", chat ? CHAT : COMPL, headers, body, &r, E2E_WAIT_MS);
  cJSON *doc = st == 200 ? cJSON_Parse(r.body) : NULL;
  const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "choices"), 0);
  const cJSON *text = chat ? cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "message"), "content")
                           : cJSON_GetObjectItem(c0, "text");
  const cJSON *fr = cJSON_GetObjectItem(c0, "finish_reason");
  const cJSON *ct = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "usage"), "completion_tokens");
  const cJSON *pt = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "usage"), "prompt_tokens");
  const cJSON *obj = cJSON_GetObjectItem(doc, "object");
  int ok = cJSON_IsString(text) && strlen(text->valuestring) > 0 && cJSON_IsString(fr) &&
           strcmp(fr->valuestring, finish) == 0 && cJSON_IsNumber(ct) && (long)ct->valuedouble == tokens &&
           cJSON_IsNumber(pt) && pt->valuedouble > 0 && cJSON_IsString(obj) &&
           strcmp(obj->valuestring, chat ? "chat.completion" : "text_completion") == 0;
  if (!ok) fprintf(stderr, "  whole(chat=%d): status %d, body %.300s\n", chat, st, r.body ? r.body : "");
  cJSON_Delete(doc);
  nu_resp_free(&r);
  return ok;
}

/* Five tokens, then the engine's own error inside its 200 stream: the
 * client gets them and one OpenAI error event, no [DONE]. */
static int error_in_stream(int port, int chat) {
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  const char *headers = "x-sim-tokens: 20\r\nx-sim-fault: error-event\r\nx-sim-fault-at: 5\r\n";
  if (chat) e2e_chat_body(body, sizeof(body), "m1", 1, NULL);
  else e2e_completion_body(body, sizeof(body), "m1", 1, NULL);
  int st = e2e_stream(port, chat ? CHAT : COMPL, headers, body, &head, &s, chat ? CHUNK : TEXT, E2E_WAIT_MS);
  int ok = st == 200 && e2e_sse_kinds_eq(&s, chat ? "RCCCCCE" : "CCCCCE") && s.ndone == 0 && s.error_shape_ok &&
           strstr(s.error_message, "simulated engine error after 5 tokens") != NULL;
  if (!ok)
    fprintf(stderr, "  error_in_stream(chat=%d): status %d, kinds \"%s\", error \"%s\"\n", chat, st, s.kinds,
            s.error_message);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  return ok;
}

/* The cases every adapter passes, on the routes it serves. */
static void run_cases(const char *adapter, int serves_chat, int serves_completions) {
  e2e_proc_t sl;
  ASSERT_EQ(start_adapter(&sl, adapter), 0);
  const char *usage = ",\"stream_options\":{\"include_usage\":true}";
  for (int chat = 0; chat < 2; chat++) {
    if (chat ? !serves_chat : !serves_completions) continue;
    /* stop: the engine ends by itself; length: max_tokens cuts it. */
    ASSERT(streamed(sl.port, chat, "x-sim-tokens: 7\r\n", NULL, 7, 0, "stop"));
    ASSERT(streamed(sl.port, chat, "x-sim-tokens: 7\r\n", usage, 7, 1, "stop"));
    ASSERT(streamed(sl.port, chat, "x-sim-tokens: 50\r\n", ",\"max_tokens\":4", 4, 0, "length"));
    /* Events cut into pieces across reads are joined first. */
    ASSERT(streamed(sl.port, chat, "x-sim-tokens: 6\r\nx-sim-split: 3,40\r\nx-sim-split-delay-ms: 1\r\n", usage, 6, 1,
                    "stop"));
    ASSERT(whole(sl.port, chat, "x-sim-tokens: 9\r\n", 9, "stop"));
    ASSERT(error_in_stream(sl.port, chat));
    ASSERT_GE(e2e_counter(sl.port, "errors_upstream_error_event"), 1);
    ASSERT(e2e_wait_endpoints_ready(sl.port, 1, E2E_WAIT_MS));
  }
  if (!serves_chat) {
    /* Chat on a prompt-only native route: refused, naming the rule. */
    char body[1024];
    nu_resp_t r;
    int st = e2e_http(sl.port, "POST", CHAT, "x-sim-tokens: 3\r\n", e2e_chat_body(body, sizeof(body), "m1", 1, NULL),
                      &r, E2E_WAIT_MS);
    ASSERT_EQ(st, 400);
    ASSERT(e2e_is_error_body(r.body, "serves only /v1/completions"));
    ASSERT(e2e_is_error_body(r.body, "unsupported_by_adapter"));
    nu_resp_free(&r);
  }
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_llamacpp(void) { run_cases("llamacpp", 0, 1); }
static void test_tgi(void) { run_cases("tgi", 0, 1); }
static void test_ollama(void) { run_cases("ollama", 1, 1); }
static void test_vllm(void) { run_cases("vllm", 1, 1); }

int main(int argc, char **argv) {
  e2e_init(argc, argv, 300);
  E2E_RUN(test_llamacpp);
  E2E_RUN(test_tgi);
  E2E_RUN(test_ollama);
  E2E_RUN(test_vllm);
  return SL_TEST_EXIT();
}
