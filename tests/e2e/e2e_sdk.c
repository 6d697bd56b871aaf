/* e2e_sdk.c: the official OpenAI Node SDK as the judge of sluice's streams.
 *
 * Every other test reads sluice's answers with our own parser (harness.c,
 * over cJSON).  This one also asks the SDK users run, `openai` on npm at the
 * version pinned in tests/sdk/package-lock.json (tests/sdk/install puts it in
 * tests/sdk/node_modules; scripts/setup runs that):
 *  - the oracle itself (tests/sdk/parse_sse.mjs through sdk_oracle.h): it
 *    yields every chunk of a valid stream, whole or cut into 1-byte pieces,
 *    and raises on an error event and on a payload that is not JSON;
 *  - sluice's bytes, read raw from sluice with its default configuration
 *    (the two simulated engines), parsed by both our reference and the
 *    SDK's stream parser: the same chunks and text, equal to what the engine
 *    sends for that seed when asked directly; a stream cut by the engine
 *    makes the SDK raise;
 *  - the SDK's client (tests/sdk/sdk_stream.mjs) against that sluice:
 *    streamed chat with fixed tokens (exact text), streamed chat, with
 *    usage, streamed completion, whole chat and a cut stream; the texts
 *    must equal what the engine sends for the seed.
 *
 * Run by ctest as `e2e_sdk <sluice>`, with SL_NODE (node) in the
 * environment when CMake found it.  When node or the SDK is missing it
 * prints why and exits 77 (skipped), except under CI=true, where that is a
 * failure (docs/testing.md).
 */
#include "test.h"
#include "e2e/harness.h"
#include "sdk/sdk_oracle.h"

#define CHAT "/v1/chat/completions"
#define COMPL "/v1/completions"
#define CHUNK "chat.completion.chunk"
#define MODEL "sim-small" /* served by the default configuration's pool */
#define SEED "7"
#define TOKENS 24
#define SKIP_CODE 77

/* The tokens sdk_stream.mjs sends in x-sim-script for its chat_script case,
 * concatenated: quotes, a backslash, newlines, a tab, é, ï, an em dash, a
 * euro sign, an emoji, JSON and SSE look-alikes, a percent sign, a bar and
 * U+2028 (a line separator JavaScript once could not hold in a string). */
static const char SCRIPT_TEXT[] =
    "Hello \"quoted\" back\\slash\nnew line\ttab caf\xc3\xa9 na\xc3\xafve \xe2\x80\x94 5 \xe2\x82\xac "
    "\xf0\x9f\x98\x80 {\"k\": 1} </p>\n\ndata: [DONE]\n\n 100% | pipe \xe2\x80\xa8sep";

/* ---- setup ---- */

/* Skips the program (or fails it under CI=true) with a reason. */
static void skip(const char *why) {
  const char *ci = getenv("CI");
  if (ci != NULL && strcmp(ci, "true") == 0) {
    fprintf(stderr, "e2e_sdk: %s\nCI=true: the SDK tests must run in CI, so this is a failure\n", why);
    printf("0 passed, 1 failed\n");
    exit(1);
  }
  printf("SKIP: e2e_sdk: %s\n", why);
  exit(SKIP_CODE);
}

/* Checks that node runs and the SDK loads (parse_sse on an empty stream). */
static void prepare(void) {
  char *out, *err;
  int rc = sl_sdk_parse_sse("data: [DONE]\n\n", 14, 0, &out, &err);
  if (rc == 0 && out != NULL && out[0] == '\0') {
    free(out);
    free(err);
    return;
  }
  char why[2048];
  if (rc == -1)
    snprintf(why, sizeof(why), "cannot run %s (scripts/setup --sdk installs Debian's nodejs)", sl_sdk_node());
  else
    snprintf(why, sizeof(why), "%s/parse_sse.mjs exited %d: %.1500s", sl_sdk_dir(), rc, err ? err : "");
  free(out);
  free(err);
  if (rc == SL_SDK_SKIP) skip(why);
  if (rc == -1) skip(why);
  fprintf(stderr, "e2e_sdk: %s\n", why);
  printf("0 passed, 1 failed\n");
  exit(1);
}

/* ---- the SDK's output ---- */

/* The chunks of parse_sse's output: one JSON document per line, in an array
 * (cJSON_Delete it), or NULL if a line is not JSON. */
static cJSON *sdk_lines(const char *out) {
  cJSON *arr = cJSON_CreateArray();
  const char *p = out;
  while (*p != '\0') {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    if (n > 0) {
      cJSON *doc = cJSON_ParseWithLength(p, n);
      if (doc == NULL) {
        fprintf(stderr, "e2e_sdk: not a JSON line from the SDK: %.*s\n", (int)n, p);
        cJSON_Delete(arr);
        return NULL;
      }
      cJSON_AddItemToArray(arr, doc);
    }
    p += n + (nl != NULL);
  }
  return arr;
}

/* The text of the chunks: choices[0].delta.content (chat) or
 * choices[0].text (completions), concatenated into buf[cap]. */
static const char *sdk_text(const cJSON *chunks, char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = '\0';
  const cJSON *c;
  cJSON_ArrayForEach(c, chunks) {
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(c, "choices"), 0);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ch, "delta"), "content");
    if (!cJSON_IsString(t)) t = cJSON_GetObjectItemCaseSensitive(ch, "text");
    if (!cJSON_IsString(t)) continue;
    size_t n = strlen(t->valuestring);
    if (len + n >= cap) n = cap - 1 - len;
    memcpy(buf + len, t->valuestring, n);
    len += n;
    buf[len] = '\0';
  }
  return buf;
}

/* The last line of s (without its newline) into line[cap]. */
static const char *last_line(const char *s, char *line, size_t cap) {
  size_t n = strlen(s);
  while (n > 0 && s[n - 1] == '\n') n--;
  size_t b = n;
  while (b > 0 && s[b - 1] != '\n') b--;
  snprintf(line, cap, "%.*s", (int)(n - b), s + b);
  return line;
}

/* ---- 1: the oracle ---- */

static const char VALID[] =
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"
    ": a comment\n\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\"a \\\"q\\\" \\\\ \\n caf\\u00e9 \xf0\x9f\x98\x80\"},\"finish_reason\":null}]}\r\n\r\n"
    "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
    "\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    "data: [DONE]\n\n";

static void test_oracle_reads_a_valid_stream(void) {
  char *out, *err, *out1, *err1;
  ASSERT_EQ(sl_sdk_parse_sse(VALID, strlen(VALID), 0, &out, &err), 0);
  cJSON *chunks = sdk_lines(out);
  ASSERT_NOT_NULL(chunks);
  ASSERT_EQ(cJSON_GetArraySize(chunks), 3); /* comment and [DONE] yield nothing */
  char text[256];
  ASSERT_STR_EQ(sdk_text(chunks, text, sizeof(text)), "a \"q\" \\ \n caf\xc3\xa9 \xf0\x9f\x98\x80");
  cJSON_Delete(chunks);
  /* Cut anywhere (inside lines, escapes and UTF-8 sequences): the same. */
  ASSERT_EQ(sl_sdk_parse_sse(VALID, strlen(VALID), 1, &out1, &err1), 0);
  ASSERT_STR_EQ(out1, out);
  free(out);
  free(err);
  free(out1);
  free(err1);
}

static void test_oracle_raises(void) {
  static const char error_event[] =
      "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
      "\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"
      "data: {\"error\":{\"message\":\"engine went away\",\"type\":\"upstream_error\",\"code\":\"x\"}}\n\n";
  static const char not_json[] = "data: {\"id\":\"c1\",\"choices\":[]}\n\ndata: {\"id\":\n\n";
  char *out, *err, line[512];
  ASSERT_EQ(sl_sdk_parse_sse(error_event, strlen(error_event), 0, &out, &err), 1);
  ASSERT_STR_EQ(last_line(err, line, sizeof(line)), "parse_sse: APIError: engine went away");
  cJSON *chunks = sdk_lines(out); /* the chunk before the error */
  ASSERT_NOT_NULL(chunks);
  ASSERT_EQ(cJSON_GetArraySize(chunks), 1);
  cJSON_Delete(chunks);
  free(out);
  free(err);
  ASSERT_EQ(sl_sdk_parse_sse(not_json, strlen(not_json), 0, &out, &err), 1);
  ASSERT(strncmp(last_line(err, line, sizeof(line)), "parse_sse: SyntaxError: ", 24) == 0);
  free(out);
  free(err);
}

/* ---- sluice with its default configuration ---- */

/* Starts `sluice serve` with the configuration it prints as its default
 * (two simulated engines serving sim-small and sim-large) and waits until
 * both engines take streams. */
static int start_default(e2e_proc_t *sl) {
  char *cfg, *err;
  int rc = e2e_run_cli("serve", "--print-default-config", "", &cfg, &err);
  free(err);
  if (rc != 0 || cfg == NULL) {
    free(cfg);
    fprintf(stderr, "e2e_sdk: sluice serve --print-default-config exited %d\n", rc);
    return -1;
  }
  rc = e2e_serve_start(sl, cfg, NULL);
  free(cfg);
  if (rc < 0) return -1;
  if (sl->nsims != 2) {
    fprintf(stderr, "e2e_sdk: the default configuration started %d simulated engines, want 2\n", sl->nsims);
    return -1;
  }
  return e2e_wait_endpoints_ready(sl->port, 2, E2E_WAIT_MS) ? 0 : -1;
}

/* What the engine itself sends for this request, read directly from one of
 * sluice's simulated engines with the reference parser: its text into
 * text[cap].  Returns 0 or -1. */
static int engine_text(const e2e_proc_t *sl, const char *path, const char *headers, const char *body, char *text,
                       size_t cap) {
  nu_resp_t head;
  e2e_sse_t s;
  int st = e2e_stream(sl->sim_ports[0], path, headers, body, &head, &s,
                      strcmp(path, CHAT) == 0 ? CHUNK : "text_completion", E2E_WAIT_MS);
  int ok = st == 200 && s.read_rc == 0 && s.ndone == 1 && s.nerror == 0 && s.nbad == 0 && s.content != NULL;
  if (ok) snprintf(text, cap, "%s", s.content);
  else fprintf(stderr, "e2e_sdk: the engine's own answer to %s: status %d, read %d\n", path, st, s.read_rc);
  nu_resp_free(&head);
  e2e_sse_free(&s);
  return ok ? 0 : -1;
}

/* ---- 2: sluice's bytes, read by the reference and by the SDK ---- */

typedef struct {
  const char *path;
  const char *headers;
  const char *extra; /* more body members, or NULL */
  int usage;         /* include_usage asked */
  const char *want;  /* the exact text, or NULL: what the engine sends */
} byte_case_t;

static void test_sluice_bytes_parse_alike(void) {
  static const byte_case_t cases[] = {
      {CHAT, "x-sim-seed: " SEED "\r\n", ",\"max_tokens\":24", 0, NULL},
      {CHAT, "x-sim-seed: " SEED "\r\n", ",\"max_tokens\":24,\"stream_options\":{\"include_usage\":true}", 1, NULL},
      {COMPL, "x-sim-seed: " SEED "\r\n", ",\"max_tokens\":24", 0, NULL},
      {CHAT, "x-sim-script: Hi|%20%22q%22|%5C|%0A|%20caf%C3%A9|%20%F0%9F%98%80|%0A%0Adata:%20x\r\n", NULL, 0,
       "Hi \"q\"\\\n caf\xc3\xa9 \xf0\x9f\x98\x80\n\ndata: x"},
  };
  e2e_proc_t sl;
  ASSERT_EQ(start_default(&sl), 0);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const byte_case_t *c = &cases[i];
    int chat = strcmp(c->path, CHAT) == 0;
    char body[1024], want[8192], text[8192];
    if (chat) e2e_chat_body(body, sizeof(body), MODEL, 1, c->extra);
    else e2e_completion_body(body, sizeof(body), MODEL, 1, c->extra);
    if (c->want != NULL) snprintf(want, sizeof(want), "%s", c->want);
    else ASSERT_EQ(engine_text(&sl, c->path, c->headers, body, want, sizeof(want)), 0);
    /* The whole response through sluice, de-chunked: the bytes a client
     * hands to its SSE parser. */
    nu_resp_t r;
    ASSERT_EQ(e2e_http(sl.port, "POST", c->path, c->headers, body, &r, E2E_WAIT_MS), 200);
    ASSERT_EQ(r.complete, 1);
    e2e_sse_t ref;
    e2e_sse_init(&ref, chat ? CHUNK : "text_completion");
    ASSERT_EQ(e2e_sse_feed(&ref, r.body, r.body_len), r.body_len);
    fprintf(stderr, "     %s %s: kinds %s\n", c->path, c->want ? "script" : "seed " SEED, ref.kinds);
    ASSERT(e2e_sse_kinds_are(&ref, chat, c->want ? 7 : TOKENS, c->usage));
    ASSERT_EQ(ref.wrong_object, 0);
    ASSERT_STR_EQ(ref.content, want);
    char *out, *err;
    ASSERT_EQ(sl_sdk_parse_sse(r.body, r.body_len, 0, &out, &err), 0);
    cJSON *chunks = sdk_lines(out);
    ASSERT_NOT_NULL(chunks);
    /* Every data event but [DONE] is one chunk for the SDK too. */
    ASSERT_EQ(cJSON_GetArraySize(chunks), ref.nevents - ref.ndone);
    ASSERT_STR_EQ(sdk_text(chunks, text, sizeof(text)), want);
    cJSON_Delete(chunks);
    free(out);
    free(err);
    e2e_sse_free(&ref);
    nu_resp_free(&r);
  }
  /* A stream the engine cuts after 3 tokens: our parser sees the error
   * event, and the SDK raises it. */
  char body[1024], line[512];
  nu_resp_t r;
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, "x-sim-seed: " SEED "\r\nx-sim-fault: reset\r\nx-sim-fault-at: 3\r\n",
                     e2e_chat_body(body, sizeof(body), MODEL, 1, NULL), &r, E2E_WAIT_MS),
            200);
  e2e_sse_t ref;
  e2e_sse_init(&ref, CHUNK);
  e2e_sse_feed(&ref, r.body, r.body_len);
  ASSERT(e2e_sse_kinds_eq(&ref, "RCCCE"));
  char *out, *err;
  ASSERT_EQ(sl_sdk_parse_sse(r.body, r.body_len, 0, &out, &err), 1);
  ASSERT(strncmp(last_line(err, line, sizeof(line)), "parse_sse: APIError: ", 21) == 0);
  ASSERT(strstr(line, ref.error_message) != NULL);
  free(out);
  free(err);
  e2e_sse_free(&ref);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- 3: the SDK's client against sluice ---- */

/* The result line of one sdk_stream.mjs case, or NULL. */
static const cJSON *sdk_case(const cJSON *lines, const char *name) {
  const cJSON *l;
  cJSON_ArrayForEach(l, lines) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(l, "case");
    if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0) return l;
  }
  fprintf(stderr, "e2e_sdk: sdk_stream.mjs printed no result for %s\n", name);
  return NULL;
}

/* The string member name of o, or "" (so a missing one fails a compare). */
static const char *str_of(const cJSON *o, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static void test_sdk_client(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_default(&sl), 0);
  char body[1024], chat_want[8192], compl_want[8192], url[64], tokens[16];
  const char *seed = "x-sim-seed: " SEED "\r\n";
  ASSERT_EQ(engine_text(&sl, CHAT, seed, e2e_chat_body(body, sizeof(body), MODEL, 1, ",\"max_tokens\":24"),
                        chat_want, sizeof(chat_want)),
            0);
  ASSERT_EQ(engine_text(&sl, COMPL, seed, e2e_completion_body(body, sizeof(body), MODEL, 1, ",\"max_tokens\":24"),
                        compl_want, sizeof(compl_want)),
            0);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1", sl.port);
  snprintf(tokens, sizeof(tokens), "%d", TOKENS);
  const char *args[] = {"--base-url", url, "--model", MODEL, "--seed", SEED, "--tokens", tokens, NULL};
  char *out, *err;
  int rc = sl_sdk_run("sdk_stream.mjs", args, &out, &err);
  if (rc != 0) fprintf(stderr, "sdk_stream.mjs exited %d:\n%s\n%s\n", rc, out ? out : "", err ? err : "");
  ASSERT_EQ(rc, 0);
  cJSON *lines = sdk_lines(out);
  ASSERT_NOT_NULL(lines);
  ASSERT_EQ(cJSON_GetArraySize(lines), 6);
  static const char *const names[] = {"chat_script", "chat_stream", "chat_usage", "completion_stream", "chat_whole",
                                      "chat_cut"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    const cJSON *l = sdk_case(lines, names[i]);
    ASSERT_NOT_NULL(l);
    ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(l, "ok")));
  }
  fprintf(stderr, "     openai %s (the Node SDK)\n", str_of(sdk_case(lines, "chat_stream"), "sdk"));
  /* The exact texts: fixed tokens, and what the engine sends for the seed. */
  ASSERT_STR_EQ(str_of(sdk_case(lines, "chat_script"), "content"), SCRIPT_TEXT);
  ASSERT_STR_EQ(str_of(sdk_case(lines, "chat_stream"), "content"), chat_want);
  ASSERT_STR_EQ(str_of(sdk_case(lines, "chat_usage"), "content"), chat_want);
  ASSERT_STR_EQ(str_of(sdk_case(lines, "chat_whole"), "content"), chat_want);
  ASSERT_STR_EQ(str_of(sdk_case(lines, "completion_stream"), "content"), compl_want);
  ASSERT_STR_EQ(str_of(sdk_case(lines, "chat_script"), "finish_reason"), "stop");
  ASSERT_STR_EQ(str_of(sdk_case(lines, "chat_stream"), "finish_reason"), "length");
  /* Usage only when asked, and right. */
  ASSERT(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(sdk_case(lines, "chat_stream"), "usage")));
  const cJSON *usage = cJSON_GetObjectItemCaseSensitive(sdk_case(lines, "chat_usage"), "usage");
  ASSERT_EQ(cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens")), TOKENS);
  /* The cut stream: an APIError carrying sluice's error, after a prefix. */
  const cJSON *raised = cJSON_GetObjectItemCaseSensitive(sdk_case(lines, "chat_cut"), "raised");
  ASSERT_STR_EQ(str_of(raised, "class"), "APIError");
  ASSERT_STR_EQ(str_of(raised, "type"), "upstream_error");
  const char *cut = str_of(sdk_case(lines, "chat_cut"), "content");
  ASSERT_GT(strlen(cut), 0);
  ASSERT(strncmp(chat_want, cut, strlen(cut)) == 0);
  cJSON_Delete(lines);
  free(out);
  free(err);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- 4: guarded streams, re-encoded by sluice ---- */

static void test_guarded_streams_parse(void) {
  char cfg[2048];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"guards\":{"
           "\"stop\":{\"strings\":[\"<END>\"]},"
           "\"redact\":{\"literals\":[\"hunter2\"],\"classes\":[\"openai_key\",\"bearer\",\"aws_access_key_id\","
           "\"email\"]},"
           "\"ltl\":[{\"name\":\"no_refusal\",\"formula\":\"G !refusal\",\"patterns\":{\"refusal\":\"I cannot\"},"
           "\"action\":\"cancel\"}]},"
           "\"endpoints\":[{\"sim\":{\"ttft_ms\":2,\"itl_ms\":1,\"itl_jitter\":0}}]}]}");
  e2e_proc_t sl;
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  static const struct {
    const char *script, *want;
    int usage;
  } cases[] = {
      {"Key:%20sk-|abcdefghij|klmnopqrstu,%20pass%20hun|ter2%20\"q\"%20caf%C3%A9|<EN|D>|never", 
       "Key: [REDACTED], pass [REDACTED] \"q\" caf\xc3\xa9", 1},
      {"Bearer%20abcdefghij|klmnopqrst%20AKIAIOSF|ODNN7EXAMPLE%20bob@ex|ample.org.", 
       "Bearer [REDACTED] [REDACTED] [REDACTED].", 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char hdr[512], body[1024], text[2048];
    snprintf(hdr, sizeof(hdr), "x-sim-script: %s\r\nx-sim-split: 30\r\n", cases[i].script);
    e2e_chat_body(body, sizeof(body), "m1", 1,
                  cases[i].usage ? ",\"stream_options\":{\"include_usage\":true}" : NULL);
    nu_resp_t r;
    ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, hdr, body, &r, E2E_WAIT_MS), 200);
    char *out, *err;
    ASSERT_EQ(sl_sdk_parse_sse(r.body, r.body_len, 0, &out, &err), 0);
    cJSON *chunks = sdk_lines(out);
    ASSERT_NOT_NULL(chunks);
    ASSERT_STR_EQ(sdk_text(chunks, text, sizeof(text)), cases[i].want);
    fprintf(stderr, "     guarded case %zu: the SDK read %d chunks, text \"%s\"\n", i, cJSON_GetArraySize(chunks),
            text);
    cJSON_Delete(chunks);
    free(out);
    free(err);
    /* Cut into 1-byte pieces, the SDK reads the same. */
    ASSERT_EQ(sl_sdk_parse_sse(r.body, r.body_len, 1, &out, &err), 0);
    chunks = sdk_lines(out);
    ASSERT_NOT_NULL(chunks);
    ASSERT_STR_EQ(sdk_text(chunks, text, sizeof(text)), cases[i].want);
    cJSON_Delete(chunks);
    free(out);
    free(err);
    nu_resp_free(&r);
  }
  /* A guard's cancel: the SDK raises with the guard's message. */
  char body[1024], line[512];
  nu_resp_t r;
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, "x-sim-script: Well,| I cannot| do it\r\n",
                     e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &r, E2E_WAIT_MS),
            200);
  char *out, *err;
  ASSERT_EQ(sl_sdk_parse_sse(r.body, r.body_len, 0, &out, &err), 1);
  ASSERT(strncmp(last_line(err, line, sizeof(line)), "parse_sse: APIError: ", 21) == 0);
  ASSERT(strstr(line, "no_refusal") != NULL);
  free(out);
  free(err);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 280);
  prepare();
  E2E_RUN(test_oracle_reads_a_valid_stream);
  E2E_RUN(test_oracle_raises);
  E2E_RUN(test_sluice_bytes_parse_alike);
  E2E_RUN(test_sdk_client);
  E2E_RUN(test_guarded_streams_parse);
  return SL_TEST_EXIT();
}
