/* e2e_tenants.c: tenants and their Lua pipelines, through the real binary.
 *
 * Three tenants on one pool of one simulated engine: alpha (a pipeline
 * that rewrites, denies, adds a stop and replaces a word split across
 * reads), bravo (limits, no pipeline) and evil (a pipeline that tries to
 * escape its sandbox, one case per request).  Keys are configured as
 * SHA-256 digests; the digests below are of "sk-test-alpha", "sk-test-bravo"
 * and "sk-test-evil".  Each sandbox case runs while a stream of alpha's is
 * held open by a stalled engine, and that stream must come through whole.
 */
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"
#define KEY_ALPHA "Authorization: Bearer sk-test-alpha\r\n"
#define KEY_BRAVO "Authorization: Bearer sk-test-bravo\r\n"
#define KEY_EVIL "Authorization: Bearer sk-test-evil\r\n"
#define SHA_ALPHA "sha256:5a44ee831beb11795ca9e062551a912f66aaa8043e59ded9eaf05a337784dec8"
#define SHA_BRAVO "sha256:ae062ea34d010555a15ef3d3f4d3ce8446864edb7c98a144f4b6d6408eb3fa78"
#define SHA_EVIL "sha256:77631b6cb3399f60216dcb05509dc08b7eebcbe5b954384cca167f073272c551"

/* alpha's pipeline.  on_request: a user message "deny me" is refused with
 * 451; "short please" is rewritten to max_tokens 3; "stop at STOP" adds
 * the stop string STOP; "remember" stores a value in the dictionary.
 * on_chunk: "secret-word" becomes "[gone]" wherever the reads cut it (the
 * last 10 bytes of every batch are held back until the next one). */
static const char ALPHA[] =
    "local M = {}\n"
    "function M.on_request(ctx, req)\n"
    "  local say = req.messages[#req.messages].content\n"
    "  if say == 'deny me' then sluice.deny(451, 'alpha does not answer that') end\n"
    "  if say == 'short please' then req.max_tokens = 3 end\n"
    "  if say == 'stop at STOP' then sluice.add_stop('STOP') end\n"
    "  if say == 'remember' then sluice.dict.set('x', 'alpha-private', 60000) end\n"
    "end\n"
    "local WORD = 'secret-word'\n"
    "function M.on_chunk(ctx, text)\n"
    "  if ctx.channel ~= 'content' then return end\n"
    "  local base = ctx.keep_at or ctx.offset\n"
    "  local all = (ctx.keep or '') .. text\n"
    "  local i = 1\n"
    "  while true do\n"
    "    local s, e = all:find(WORD, i, true)\n"
    "    if not s then break end\n"
    "    sluice.replace(base + s - 1, base + e, '[gone]')\n"
    "    i = e + 1\n"
    "  end\n"
    "  local tail = #WORD - 1\n"
    "  local from = math.max(i, #all - tail + 1)\n"
    "  ctx.keep = all:sub(from)\n"
    "  ctx.keep_at = base + from - 1\n"
    "  sluice.hold(#ctx.keep)\n"
    "end\n"
    "function M.on_end(ctx, s)\n"
    "  sluice.narrate('alpha ended ' .. s.reason .. ' after ' .. s.completion_tokens .. ' tokens')\n"
    "end\n"
    "return M\n";

/* evil's pipeline: the user message names the escape to try. */
static const char EVIL[] =
    "local M = {}\n"
    "local cases = {\n"
    "  dump_method = function() return ('').dump(function() end) end,\n"
    "  dump = function() return string.dump(function() end) end,\n"
    "  ffi = function() return require('ffi') end,\n"
    "  os = function() return os.execute('true') end,\n"
    "  io = function() return io.open('/etc/passwd') end,\n"
    "  debug = function() return debug.getregistry() end,\n"
    "  jit = function() return jit.on() end,\n"
    "  getfenv = function() return getfenv(0) end,\n"
    "  loadstring = function() return loadstring('return 1')() end,\n"
    "  base = function() return require('sluice.base') end,\n"
    "  spin = function() while true do end end,\n"
    "  spin_pcall = function() while true do pcall(function() while true do end end) end end,\n"
    "  spin_xpcall = function() xpcall(function() while true do end end, function(e) return e end) while true do end end,\n"
    "  spin_coroutine = function() local co = coroutine.create(function() while true do end end)\n"
    "    while true do coroutine.resume(co) end end,\n"
    "  memory = function() local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(1024) .. i end end,\n"
    "  rep = function() return ('x'):rep(1e9) end,\n"
    "  pattern = function() return ('a'):rep(5000):find(('a*'):rep(30) .. 'b') end,\n"
    "  metatable = function() local mt = getmetatable('') mt.__index = { dump = string.dump }\n"
    "    return ('').dump(print) end,\n"
    "  peek = function() return sluice.dict.get('x') end,\n"
    "  peek_limits = function() return sluice.dict.get('t:alpha:rpm') end,\n"
    "}\n"
    "function M.on_request(ctx, req)\n"
    "  local case = req.messages[#req.messages].content\n"
    "  ctx.case = case\n"
    "  if case == 'chunk_spin' then return end\n"
    "  local f = cases[case]\n"
    "  if not f then sluice.deny(400, 'no case ' .. tostring(case)) end\n"
    "  local ok, v = pcall(f)\n"
    "  sluice.deny(409, 'case ' .. case .. ' returned ' .. tostring(ok) .. ' ' .. tostring(v))\n"
    "end\n"
    "function M.on_chunk(ctx, text)\n"
    "  if ctx.case == 'chunk_spin' then while true do end end\n"
    "end\n"
    "return M\n";

static char alpha_path[512], evil_path[512], tr_dir[512];

/* The pipelines' batching: every byte by default, so batches follow the
 * engine's reads; test_timed_batches sets its own. */
static const char *pipelines = "{\"flush_bytes\":1,\"flush_ms\":5,\"instruction_budget\":100000,"
                               "\"memory_limit_bytes\":4194304}";

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f == NULL) abort();
  fputs(text, f);
  fclose(f);
}

static int start(e2e_proc_t *sl, const char *bravo_limits, const char *extra) {
  snprintf(alpha_path, sizeof(alpha_path), "%s/alpha.lua", e2e_tmpdir());
  snprintf(evil_path, sizeof(evil_path), "%s/evil.lua", e2e_tmpdir());
  snprintf(tr_dir, sizeof(tr_dir), "%s/transcripts", e2e_tmpdir());
  mkdir(tr_dir, 0755);
  write_file(alpha_path, ALPHA);
  write_file(evil_path, EVIL);
  char cfg[8192];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\",\"m2\"],\"context_tokens\":4096,"
           "\"endpoints\":[{\"sim\":{\"ttft_ms\":2,\"itl_ms\":1,\"itl_jitter\":0}}]}],"
           "\"upstream\":{\"idle_timeout_ms\":3600000},"
           "\"pipelines\":%s,"
           "\"transcripts\":{\"dir\":\"%s\"},"
           "\"tenants\":["
           "{\"name\":\"alpha\",\"keys\":[\"" SHA_ALPHA "\"],\"pipeline\":\"%s\",\"transcripts\":1,"
           "\"guards\":{\"stop\":{\"strings\":[\"<|end|>\"]}}},"
           "{\"name\":\"bravo\",\"keys\":[\"" SHA_BRAVO "\"],\"models\":[\"m1\"],\"limits\":%s},"
           "{\"name\":\"evil\",\"keys\":[\"" SHA_EVIL "\"],\"pipeline\":\"%s\"}]%s}",
           pipelines, tr_dir, alpha_path, bravo_limits ? bravo_limits : "{}", evil_path, extra ? extra : "");
  if (e2e_serve_start(sl, cfg, NULL) < 0) return -1;
  return e2e_wait_ready(sl->port, 200, E2E_WAIT_MS);
}

/* A chat body whose user message is `say`. */
static char *body_of(char *buf, size_t cap, const char *model, int stream, const char *say, const char *extra) {
  snprintf(buf, cap, "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"stream\":%s%s}",
           model, say, stream ? "true" : "false", extra ? extra : "");
  return buf;
}

static int chat(const e2e_proc_t *sl, const char *headers, const char *model, const char *say, const char *extra,
                e2e_sse_t *s, nu_resp_t *head) {
  char body[2048];
  return e2e_stream(sl->port, CHAT, headers, body_of(body, sizeof(body), model, 1, say, extra), head, s, CHUNK,
                    E2E_WAIT_MS);
}

/* A whole (non-streaming) request; returns the status, the body in r. */
static int post(const e2e_proc_t *sl, const char *headers, const char *model, const char *say, nu_resp_t *r) {
  char body[2048];
  return e2e_http(sl->port, "POST", CHAT, headers, body_of(body, sizeof(body), model, 0, say, NULL), r, E2E_WAIT_MS);
}

/* The number `name` of tenant `tenant` in /health, or -1. */

/* ---- keys and models ---- */

static void test_keys_and_models(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start(&sl, NULL, NULL), 0);
  nu_resp_t r;
  ASSERT_EQ(post(&sl, NULL, "m1", "hi", &r), 401);
  ASSERT(e2e_is_error_body(r.body, "No API key"));
  ASSERT_NOT_NULL(nu_header(&r, "www-authenticate"));
  nu_resp_free(&r);
  ASSERT_EQ(post(&sl, "Authorization: Bearer sk-test-nobody\r\n", "m1", "hi", &r), 401);
  ASSERT(e2e_is_error_body(r.body, "invalid_api_key"));
  nu_resp_free(&r);
  /* A key's digest is compared, not the key: the digest itself is no key. */
  ASSERT_EQ(post(&sl, "Authorization: Bearer " SHA_ALPHA "\r\n", "m1", "hi", &r), 401);
  nu_resp_free(&r);
  ASSERT_EQ(post(&sl, KEY_BRAVO, "m2", "hi", &r), 403);
  ASSERT(e2e_is_error_body(r.body, "tenant bravo may not use model m2"));
  nu_resp_free(&r);
  ASSERT_EQ(post(&sl, "authorization: bearer sk-test-bravo\r\n", "m1", "hi", &r), 200);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_health_num(sl.port, "tenants_unauthorized"), 3);
  ASSERT_EQ(e2e_counter(sl.port, "tenant_unauthorized"), 3);
  ASSERT_EQ(e2e_counter(sl.port, "tenant_forbidden"), 1);
  ASSERT_EQ(e2e_tenant_num(sl.port, "bravo", "requests"), 1);
  ASSERT_EQ(e2e_tenant_num(sl.port, "bravo", "refused_403"), 1);
  /* The key appears in no log line. */
  char *log = e2e_log_text(&sl);
  ASSERT_NULL(strstr(log, "sk-test-bravo"));
  free(log);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- limits ---- */

static void test_request_window_429(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start(&sl, "{\"requests_per_minute\":2}", NULL), 0);
  nu_resp_t r;
  for (int i = 0; i < 2; i++) {
    ASSERT_EQ(post(&sl, KEY_BRAVO, "m1", "hi", &r), 200);
    nu_resp_free(&r);
  }
  /* The third, streamed: refused before any byte of a stream. */
  e2e_sse_t s;
  nu_resp_t head;
  ASSERT_EQ(chat(&sl, KEY_BRAVO, "m1", "hi", NULL, &s, &head), 429);
  const char *ra = nu_header(&head, "retry-after");
  ASSERT_NOT_NULL(ra);
  ASSERT_GE(atoi(ra), 1);
  ASSERT_LE(atoi(ra), 60);
  ASSERT_NOT_NULL(nu_header(&head, "retry-after-ms"));
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(post(&sl, KEY_BRAVO, "m1", "hi", &r), 429);
  ASSERT(e2e_is_error_body(r.body, "requests_per_minute"));
  ASSERT(e2e_is_error_body(r.body, "rate_limit_exceeded"));
  nu_resp_free(&r);
  /* Another tenant's window is its own. */
  ASSERT_EQ(post(&sl, KEY_ALPHA, "m1", "hi", &r), 200);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_tenant_num(sl.port, "bravo", "refused_429"), 2);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_token_window_and_budget(void) {
  e2e_proc_t sl;
  /* 40 tokens a minute, at most 10 a request: a request without max_tokens
   * reserves 10 (and its prompt); the stream is cut by the budget guard at
   * 10 tokens whatever the engine would send. */
  ASSERT_EQ(start(&sl, "{\"tokens_per_minute\":40,\"max_tokens_per_request\":10}", NULL), 0);
  e2e_sse_t s;
  nu_resp_t head;
  ASSERT_EQ(chat(&sl, KEY_BRAVO "x-sim-tokens: 50\r\n", "m1", "hi", ",\"stream_options\":{\"include_usage\":true}",
                 &s, &head),
            200);
  ASSERT_STR_EQ(s.finish_reason, "length");
  ASSERT_EQ(s.usage_completion_tokens, 10);
  ASSERT_EQ(s.ndone, 1);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT(e2e_log_wait(&sl, "end=guard_budget", E2E_WAIT_MS, NULL, 0));
  /* Settled to what it used; reserve until the window is spent. */
  ASSERT_EQ(e2e_tenant_num(sl.port, "bravo", "completion_tokens"), 10);
  ASSERT_EQ(e2e_tenant_num(sl.port, "bravo", "reserved_tokens"), 0);
  int refused = 0;
  for (int i = 0; i < 6 && !refused; i++) {
    nu_resp_t r;
    int st = post(&sl, KEY_BRAVO "x-sim-tokens: 10\r\n", "m1", "hi", &r);
    if (st == 429) {
      refused = 1;
      ASSERT(e2e_is_error_body(r.body, "tokens_per_minute"));
      ASSERT_NOT_NULL(nu_header(&r, "retry-after"));
    } else {
      ASSERT_EQ(st, 200);
    }
    nu_resp_free(&r);
  }
  ASSERT(refused);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- the pipeline's phases ---- */

static void test_on_request_deny_rewrite_stop(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start(&sl, NULL, NULL), 0);
  nu_resp_t r;
  ASSERT_EQ(post(&sl, KEY_ALPHA, "m1", "deny me", &r), 451);
  ASSERT(e2e_is_error_body(r.body, "alpha does not answer that"));
  ASSERT(e2e_is_error_body(r.body, "pipeline_denied"));
  nu_resp_free(&r);
  e2e_sse_t s;
  nu_resp_t head;
  ASSERT_EQ(chat(&sl, KEY_ALPHA "x-sim-tokens: 40\r\n", "m1", "short please",
                 ",\"stream_options\":{\"include_usage\":true}", &s, &head),
            200);
  ASSERT_EQ(s.usage_completion_tokens, 3); /* the engine got max_tokens 3 */
  ASSERT_STR_EQ(s.finish_reason, "length");
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(chat(&sl, KEY_ALPHA "x-sim-script: one| two| STOP| three\r\n", "m1", "stop at STOP", NULL, &s, &head),
            200);
  ASSERT_STR_EQ(s.content, "one two ");
  ASSERT_STR_EQ(s.finish_reason, "stop");
  e2e_sse_free(&s);
  nu_resp_free(&head);
  /* The tenant's own guard (added to the pool's none) holds as well. */
  ASSERT_EQ(chat(&sl, KEY_ALPHA "x-sim-script: a| b| <%7Cend%7C>| c\r\n", "m1", "hi", NULL, &s, &head), 200);
  ASSERT_STR_EQ(s.content, "a b ");
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_tenant_num(sl.port, "alpha", "denied"), 1);
  ASSERT(e2e_log_wait(&sl, "alpha ended", E2E_WAIT_MS, NULL, 0));
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_on_chunk_replaces_across_reads(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start(&sl, NULL, NULL), 0);
  /* "secret-word" in four tokens, every event cut in two reads. */
  e2e_sse_t s;
  nu_resp_t head;
  ASSERT_EQ(chat(&sl,
                 KEY_ALPHA "x-sim-script: the sec|ret-w|o|rd is| here, secret-word twice\r\nx-sim-split: 40\r\n"
                           "x-sim-split-delay-ms: 3\r\n",
                 "m1", "hi", NULL, &s, &head),
            200);
  ASSERT_EQ(s.read_rc, 0);
  ASSERT_STR_EQ(s.content, "the [gone] is here, [gone] twice");
  ASSERT_EQ(s.ndone, 1);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  /* A whole answer: the same replacements in the assembled message. */
  nu_resp_t r;
  ASSERT_EQ(post(&sl, KEY_ALPHA "x-sim-script: the sec|ret-w|o|rd is| here, secret-word twice\r\n", "m1", "hi", &r),
            200);
  ASSERT_NOT_NULL(r.body);
  ASSERT_NOT_NULL(strstr(r.body, "\"content\":\"the [gone] is here, [gone] twice\""));
  nu_resp_free(&r);
  ASSERT_GE(e2e_counter(sl.port, "pipeline_calls"), 4);
  ASSERT_EQ(e2e_counter(sl.port, "pipeline_errors"), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* Batches cut by time: the engine sends three tokens and stalls, far
 * short of flush_bytes, so only the shared batch timer can give on_chunk
 * the text and let it out (the pipeline still holds what could begin the
 * word). */
static void test_timed_batches(void) {
  e2e_proc_t sl;
  pipelines = "{\"flush_bytes\":65536,\"flush_ms\":30}";
  int rc = start(&sl, NULL, NULL);
  pipelines = "{\"flush_bytes\":1,\"flush_ms\":5,\"instruction_budget\":100000,\"memory_limit_bytes\":4194304}";
  ASSERT_EQ(rc, 0);
  nu_resp_t head;
  e2e_sse_t s;
  char body[1024];
  nu_conn_t *c = e2e_sse_open(sl.port, CHAT,
                              KEY_ALPHA "x-sim-script: a| secret-word| b| c\r\nx-sim-fault: stall\r\nx-sim-fault-at: 3\r\n",
                              e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(c);
  int64_t deadline = nu_now_ms() + E2E_WAIT_MS;
  while ((s.content == NULL || strlen(s.content) < 8) && nu_now_ms() < deadline)
    if (e2e_sse_read_some(c, &s, 4096, 1000) == 0) break;
  ASSERT_NOT_NULL(s.content);
  ASSERT_STR_EQ(s.content, "a [gone]");
  ASSERT_GE(e2e_counter(sl.port, "pipeline_calls"), 1);
  e2e_conn_close(c);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT(e2e_log_wait(&sl, "end=client_cancel", E2E_WAIT_MS, NULL, 0));
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* A client that leaves mid-stream is still charged what it received, and
 * its reservation comes back. */
static void test_usage_after_client_cut(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start(&sl, "{\"tokens_per_minute\":100000}", NULL), 0);
  nu_resp_t head;
  e2e_sse_t s;
  char body[1024];
  nu_conn_t *c = e2e_sse_open(sl.port, CHAT, KEY_BRAVO "x-sim-tokens: 100\r\nx-sim-fault: stall\r\nx-sim-fault-at: 6\r\n",
                              e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(c);
  /* All 6 tokens the engine sends before it stalls have reached the client. */
  s.stop_after_content = 6;
  ASSERT_EQ(e2e_sse_read(c, &s, E2E_WAIT_MS), 1);
  ASSERT_EQ(e2e_tenant_num(sl.port, "bravo", "reserved_tokens") > 0, 1);
  e2e_conn_close(c);
  ASSERT(e2e_log_wait(&sl, "end=client_cancel", E2E_WAIT_MS, NULL, 0));
  ASSERT_EQ(e2e_tenant_num(sl.port, "bravo", "requests"), 1);
  ASSERT_EQ(e2e_tenant_num(sl.port, "bravo", "cut_streams"), 1);
  ASSERT_EQ(e2e_tenant_num(sl.port, "bravo", "completion_tokens"), 6);
  ASSERT_EQ(e2e_tenant_num(sl.port, "bravo", "reserved_tokens"), 0);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- the sandbox ---- */

static void test_sandbox_battery(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start(&sl, NULL, NULL), 0);
  /* alpha's stream, paced (300 tokens, 20 ms apart) so that it is still
   * streaming while evil's cases run; whenever it ends, it must end whole. */
  nu_resp_t head;
  e2e_sse_t held;
  char body[1024];
  nu_conn_t *c = e2e_sse_open(sl.port, CHAT, KEY_ALPHA "x-sim-tokens: 300\r\nx-sim-itl-ms: 20\r\n",
                              e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &held, CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(c);
  held.stop_after_content = 2;
  ASSERT_EQ(e2e_sse_read(c, &held, E2E_WAIT_MS), 1);
  static const struct {
    const char *name;
    int status;
    const char *says;
  } cases[] = {
      {"dump_method", 409, "returned false"},     {"dump", 409, "returned false"},
      {"ffi", 409, "returned false"},             {"os", 409, "returned false"},
      {"io", 409, "returned false"},              {"debug", 409, "returned false"},
      {"jit", 409, "returned false"},             {"getfenv", 409, "returned false"},
      {"loadstring", 409, "returned false"},      {"base", 409, "returned false"},
      {"metatable", 409, "returned false"},       {"peek", 409, "returned true nil"},
      {"peek_limits", 409, "returned true nil"},  {"spin", 500, "instruction budget exceeded"},
      {"spin_pcall", 500, "instruction budget exceeded"}, {"spin_xpcall", 500, "instruction budget exceeded"},
      {"spin_coroutine", 500, "instruction budget exceeded"}, {"memory", 500, "memory"},
      {"rep", 409, "returned false"},             {"pattern", 500, "pattern too complex"},
  };
  nu_resp_t r;
  /* alpha stores a value first: evil must not see it ("peek"). */
  ASSERT_EQ(post(&sl, KEY_ALPHA, "m1", "remember", &r), 200);
  nu_resp_free(&r);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int st = post(&sl, KEY_EVIL, "m1", cases[i].name, &r);
    if (st != cases[i].status || !e2e_is_error_body(r.body, cases[i].says)) {
      fprintf(stderr, "     case %s: status %d body %s\n", cases[i].name, st, r.body ? r.body : "(none)");
      ASSERT(0);
    }
    nu_resp_free(&r);
  }
  /* A runaway on_chunk ends only evil's stream, with an error event. */
  e2e_sse_t s;
  ASSERT_EQ(chat(&sl, KEY_EVIL, "m1", "chunk_spin", NULL, &s, &head), 200);
  ASSERT_EQ(s.nerror, 1);
  ASSERT_EQ(s.ndone, 0);
  ASSERT_STR_EQ(s.error_code, "guard_pipeline");
  ASSERT(strstr(s.error_message, "instruction budget exceeded") != NULL);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  /* The daemon serves, and alpha's stream was never touched. */
  ASSERT_EQ(post(&sl, KEY_ALPHA, "m1", "hi", &r), 200);
  nu_resp_free(&r);
  held.stop_after_content = 0;
  ASSERT_EQ(e2e_sse_read(c, &held, E2E_WAIT_MS), 0);
  ASSERT_EQ(held.ncontent, 300);
  ASSERT_EQ(held.ndone, 1);
  ASSERT_EQ(held.nerror, 0);
  e2e_conn_close(c);
  e2e_sse_free(&held);
  ASSERT_GE(e2e_tenant_num(sl.port, "evil", "pipeline_errors"), 6);
  ASSERT_EQ(e2e_tenant_num(sl.port, "alpha", "pipeline_errors"), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- transcripts and replay ---- */

static void test_replay_matches_live(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start(&sl, NULL, NULL), 0);
  e2e_sse_t s;
  nu_resp_t head;
  ASSERT_EQ(chat(&sl,
                 KEY_ALPHA "X-Request-Id: replay-me\r\nx-sim-script: a secr|et-word| b| <%7Ce|nd%7C>| c\r\n"
                           "x-sim-split: 30\r\n",
                 "m1", "hi", NULL, &s, &head),
            200);
  ASSERT_STR_EQ(s.content, "a [gone] b ");
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_GE(e2e_wait_counter(sl.port, "transcripts_written", 1, E2E_WAIT_MS), 1);
  char path[640], args[1400];
  snprintf(path, sizeof(path), "%s/replay-me.ndjson", tr_dir);
  char *text = e2e_read_file(path);
  ASSERT_NOT_NULL(text);
  ASSERT(strstr(text, "\"type\":\"verdict\"") != NULL);
  ASSERT(strstr(text, "\"action\":\"replace\"") != NULL);
  free(text);
  char *out = NULL, *err = NULL;
  snprintf(args, sizeof(args), "%s", path);
  ASSERT_EQ(e2e_run_cli("replay", args, "", &out, &err), 0);
  ASSERT_NOT_NULL(strstr(out, "verdict  stop stop end"));
  ASSERT_NOT_NULL(strstr(out, "action   on_chunk replace"));
  ASSERT_NOT_NULL(strstr(out, ": the same"));
  free(out);
  free(err);
  /* Another pipeline over the same traffic: no replacements, the verdict
   * stays (it is the guards'). */
  snprintf(args, sizeof(args), "%s --pipeline none", path);
  ASSERT_EQ(e2e_run_cli("replay", args, "", &out, &err), 0);
  ASSERT_NULL(strstr(out, "replace"));
  ASSERT_NOT_NULL(strstr(out, "verdict  stop stop end"));
  free(out);
  free(err);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- hot reload ---- */

static void test_reload_keeps_a_streams_pipeline(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start(&sl, NULL, NULL), 0);
  /* A stream under the first pipeline: the word 20 times, 50 ms apart. */
  char script[1024] = "x-sim-itl-ms: 50\r\nx-sim-script: ";
  for (int i = 0; i < 20; i++) strcat(script, i ? "| secret-word" : "secret-word");
  strcat(script, "\r\n");
  char hdr[1200];
  snprintf(hdr, sizeof(hdr), KEY_ALPHA "%s", script);
  nu_resp_t head;
  e2e_sse_t a;
  char body[1024];
  nu_conn_t *c = e2e_sse_open(sl.port, CHAT, hdr, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &a, CHUNK,
                              E2E_WAIT_MS);
  ASSERT_NOT_NULL(c);
  a.stop_after_content = 1;
  ASSERT_EQ(e2e_sse_read(c, &a, E2E_WAIT_MS), 1);
  /* The new pipeline replaces the word with another mask. */
  char v2[sizeof(ALPHA) + 16];
  snprintf(v2, sizeof(v2), "%s", ALPHA);
  char *at = strstr(v2, "'[gone]'");
  ASSERT_NOT_NULL(at);
  memcpy(at, "'[v2!]'", 7);
  memmove(at + 7, at + 8, strlen(at + 8) + 1);
  write_file(alpha_path, v2);
  kill(sl.pid, SIGHUP);
  char line[1024];
  ASSERT(e2e_log_wait(&sl, "generation 2 is current", E2E_WAIT_MS, line, sizeof(line)));
  int in_flight = strstr(line, "generation 1 ends with its 1 stream(s)") != NULL;
  e2e_sse_t b;
  nu_resp_t hb;
  ASSERT_EQ(chat(&sl, KEY_ALPHA "x-sim-script: secret-word| z\r\n", "m1", "hi", NULL, &b, &hb), 200);
  ASSERT_STR_EQ(b.content, "[v2!] z");
  e2e_sse_free(&b);
  nu_resp_free(&hb);
  a.stop_after_content = 0;
  ASSERT_EQ(e2e_sse_read(c, &a, E2E_WAIT_MS), 0);
  /* The old stream kept the pipeline it started with, to its end. */
  char want[512] = "";
  for (int i = 0; i < 20; i++) strcat(want, i ? " [gone]" : "[gone]");
  ASSERT_STR_EQ(a.content, want);
  if (!in_flight) fprintf(stderr, "     NOTE the first stream had ended before the reload: the check above is weaker\n");
  e2e_conn_close(c);
  e2e_sse_free(&a);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- the open default ---- */

static void test_no_tenants_is_open(void) {
  e2e_proc_t sl;
  ASSERT_EQ(e2e_serve_start(&sl,
                            "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
                            "\"endpoints\":[{\"sim\":{\"ttft_ms\":2,\"itl_ms\":1}}]}]}",
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  nu_resp_t r;
  ASSERT_EQ(post(&sl, NULL, "m1", "hi", &r), 200);
  nu_resp_free(&r);
  ASSERT_EQ(post(&sl, "Authorization: Bearer anything\r\n", "m1", "hi", &r), 200);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_health_num(sl.port, "tenants_unauthorized"), -1); /* absent */
  ASSERT_EQ(e2e_stop(&sl), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 600);
  E2E_RUN(test_keys_and_models);
  E2E_RUN(test_request_window_429);
  E2E_RUN(test_token_window_and_budget);
  E2E_RUN(test_on_request_deny_rewrite_stop);
  E2E_RUN(test_on_chunk_replaces_across_reads);
  E2E_RUN(test_usage_after_client_cut);
  E2E_RUN(test_timed_batches);
  E2E_RUN(test_sandbox_battery);
  E2E_RUN(test_replay_matches_live);
  E2E_RUN(test_reload_keeps_a_streams_pipeline);
  E2E_RUN(test_no_tenants_is_open);
  return SL_TEST_EXIT();
}
