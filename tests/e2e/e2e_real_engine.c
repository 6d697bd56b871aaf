/* e2e_real_engine.c: sluice in front of a real engine, llama.cpp's server.
 *
 * Every other e2e test talks to the simulated engine, which the team wrote;
 * this one runs llama.cpp's `llama-server` (fetched from Debian unstable by
 * scripts/fetch-llama-server, run through scripts/llama-server) with a small
 * random-weight model that tests/real_engine/make_gguf.py writes, and puts
 * sluice in front of it on the OpenAI path.  It checks:
 *  - a stream with usage: role and content chunks, the finish reason, a
 *    usage chunk whose completion_tokens is exactly max_tokens (ignore_eos),
 *    then [DONE];
 *  - a non-streaming answer: a well-formed chat.completion with usage;
 *  - a client that closes mid-stream: the cancel reaches the engine (its
 *    `cancel task` log line) and the engine frees the slot;
 *  - a client that stops reading while the engine, which does not slow down
 *    for a slow reader, generates everything: sluice's pinned memory stays
 *    under its bound (docs/architecture.md: high watermark + 4 chunks), then
 *    the client reads the rest and the stream ends well-formed;
 *  - more concurrent streams than the engine has slots (-np): the excess
 *    waits in sluice's queue (never more than the slots on the engine),
 *    and all complete;
 *  - llama-server as an engine sluice runs itself ("managed", with
 *    {port} and {model_path} from a catalog entry for the model): it
 *    starts, answers, and SIGTERM to sluice leaves no llama-server.
 * It prints figures (tokens/s through sluice and direct, the time from the
 * client's close to the engine's cancel) and asserts none of them.
 *
 * Run by ctest as `e2e_real_engine <sluice>` with SL_LLAMA_SERVER (the
 * launcher script) and SL_MAKE_GGUF (the model generator) in the
 * environment (by hand, the source tree's copies are the default);
 * SLUICE_LLAMA_DIR, when set, names the cache folder.  When the
 * server was not fetched (or python3 is missing) it prints why and exits 77,
 * which ctest reports as skipped; with CI=true that is a failure instead, so
 * CI can never pass by skipping it.  docs/testing.md says how to run it by
 * hand.
 */
#include "test.h"
#include "e2e/harness.h"

#include <errno.h>
#include <limits.h>

#define CHAT "/v1/chat/completions"
#define COMPL "/v1/completions"
#define CHUNK "chat.completion.chunk"
#define MODEL "random-llama"
#define SKIP_CODE 77

/* The model: 256-wide, 4 blocks, about 15 MB, written in about a second;
 * it streams a few hundred to a thousand tokens a second on one thread. */
#define MODEL_ARGS "--embd 256 --layers 4 --vocab 1024 --ctx 8192 --seed 1"
/* Two slots of 8192 tokens each. */
#define ENGINE_SLOTS "2"
#define ENGINE_CTX "16384"

static char g_launcher[PATH_MAX];
static char g_model[PATH_MAX];

/* ---- setup ---- */

/* Runs cmd with sh and returns its first output line in out (trailing
 * newline removed) and its exit status, or -1 if it did not run. */
static int run_line(const char *cmd, char *out, size_t cap) {
  out[0] = '\0';
  FILE *f = popen(cmd, "r");
  if (f == NULL) return -1;
  if (fgets(out, (int)cap, f) != NULL) out[strcspn(out, "\n")] = '\0';
  char rest[256];
  while (fgets(rest, sizeof(rest), f) != NULL) {
  }
  int st = pclose(f);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Skips the program (or fails it under CI=true) with a reason. */
static void skip(const char *why) {
  const char *ci = getenv("CI");
  if (ci != NULL && strcmp(ci, "true") == 0) {
    fprintf(stderr, "e2e_real_engine: %s\nCI=true: the real-engine test must run in CI, so this is a failure\n", why);
    printf("0 passed, 1 failed\n");
    exit(1);
  }
  printf("SKIP: e2e_real_engine: %s\n", why);
  exit(SKIP_CODE);
}

/* Finds the launcher, checks that the fetched server runs, and makes (or
 * finds in the cache) the model; skips with the reason when any is missing. */
static void prepare(void) {
  char line[512], cmd[3 * PATH_MAX], why[PATH_MAX + 1024];
  const char *launcher = getenv("SL_LLAMA_SERVER");
  const char *gen = getenv("SL_MAKE_GGUF");
  /* Run by hand without ctest's environment: the source tree's copies. */
  if (launcher == NULL) launcher = SL_SOURCE_DIR "/scripts/llama-server";
  if (gen == NULL) gen = SL_SOURCE_DIR "/tests/real_engine/make_gguf.py";
  snprintf(g_launcher, sizeof(g_launcher), "%s", launcher);
  snprintf(cmd, sizeof(cmd), "'%s' --cache-dir", g_launcher);
  char dir[PATH_MAX];
  if (run_line(cmd, dir, sizeof(dir)) != 0 || dir[0] == '\0') {
    snprintf(why, sizeof(why), "cannot run %s", g_launcher);
    skip(why);
  }
  snprintf(cmd, sizeof(cmd), "'%s' --version 2>&1", g_launcher);
  if (run_line(cmd, line, sizeof(line)) != 0) {
    snprintf(why, sizeof(why), "llama-server is not fetched into %s or does not run (%.300s); "
             "scripts/fetch-llama-server fetches it (scripts/setup tries to)", dir, line);
    skip(why);
  }
  fprintf(stderr, "     llama-server %s (from %s)\n", line, dir);
  if (system("python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' >/dev/null 2>&1") != 0)
    skip("python3 (3.9 or later) is needed to write the test model");
  int64_t t0 = nu_now_ms();
  snprintf(cmd, sizeof(cmd), "python3 '%s' --cache '%s/models' " MODEL_ARGS, gen, dir);
  if (run_line(cmd, g_model, sizeof(g_model)) != 0 || access(g_model, R_OK) != 0) {
    /* A model that cannot be written is a bug in the generator or a full
     * disk, not a missing download: fail, do not skip. */
    fprintf(stderr, "e2e_real_engine: `%s` did not write a model (%s)\n", cmd, g_model);
    printf("0 passed, 1 failed\n");
    exit(1);
  }
  fprintf(stderr, "     model %s (ready in %lld ms)\n", g_model, (long long)(nu_now_ms() - t0));
}

/* Starts llama-server on a free loopback port: one thread, two slots, and
 * the metrics endpoint.  It prints its listening line once the model is
 * loaded; /health answering 200 is checked too.  Returns 0 or -1. */
static int engine_start(e2e_proc_t *eng) {
  const char *const argv[] = {g_launcher, "-m", g_model, "--host", "127.0.0.1", "--port", "0",
                              "-t", "1", "-np", ENGINE_SLOTS, "-c", ENGINE_CTX, "--metrics",
                              "--no-webui", "--log-colors", "off", NULL};
  if (e2e_proc_start(eng, "llama-server", argv, "listening on http://", 60000) < 0) return -1;
  int64_t deadline = nu_now_ms() + 30000;
  for (;;) {
    nu_resp_t r;
    int st = e2e_http(eng->port, "GET", "/health", NULL, NULL, &r, 5000);
    nu_resp_free(&r);
    if (st == 200) return 0;
    if (nu_now_ms() >= deadline) {
      fprintf(stderr, "e2e: llama-server /health answers %d after 30 s\n", st);
      return -1;
    }
    usleep(20 * 1000);
  }
}

/* Starts sluice with one pool whose only endpoint is the engine, and waits
 * until the endpoint passed a health probe.  Returns 0 or -1. */
/* pool_extra: more members of the pool ("" or starting with ','). */
static int gateway_start_with(e2e_proc_t *sl, int engine_port, const char *pool_extra) {
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"llama\",\"models\":[\"" MODEL "\"],\"slots\":" ENGINE_SLOTS
           ",\"context_tokens\":8192%s,\"endpoints\":[{\"url\":\"http://127.0.0.1:%d\"}]}],"
           "\"stream\":{\"high_watermark\":65536,\"low_watermark\":16384,\"chunk_size\":16384},"
           "\"health\":{\"interval_ms\":500}}",
           pool_extra, engine_port);
  if (e2e_serve_start(sl, cfg, NULL) < 0) return -1;
  if (e2e_wait_ready(sl->port, 200, 20000) < 0) return -1;
  return e2e_wait_endpoints_ready(sl->port, 1, 20000) ? 0 : -1;
}

static int gateway_start(e2e_proc_t *sl, int engine_port) { return gateway_start_with(sl, engine_port, ""); }

/* ---- checks ---- */

/* Streams that came without a role chunk (see well_formed). */
static int g_roleless;

/* 1 if the stream is well-formed OpenAI SSE: a role chunk, one or more
 * content chunks, a finish chunk, a usage chunk when usage, [DONE], nothing
 * else and nothing malformed; else 0 after printing why.  The number of
 * content chunks is not fixed: llama.cpp holds a token that ends inside a
 * UTF-8 sequence and sends it with the next one.  And when the very first
 * token is such a byte, llama.cpp (build 11669) sends no role chunk at all:
 * it emits the role only with the first token's result, which it held.  So
 * the role chunk may be missing exactly when the first content starts with
 * a non-ASCII byte (U+FFFD or a multi-byte character); sluice relays the
 * engine's stream as it is. */
static int well_formed(const e2e_sse_t *s, int usage) {
  const char *k = s->kinds ? s->kinds : "";
  size_t n = strlen(k), i = 0;
  int ok = n >= 3;
  if (ok && k[0] == E2E_EV_ROLE) {
    i++;
  } else if (ok && k[0] == E2E_EV_CONTENT && s->content != NULL && (unsigned char)s->content[0] >= 0x80) {
    g_roleless++;
  } else {
    ok = 0;
  }
  long contents = 0;
  while (ok && i < n && k[i] == E2E_EV_CONTENT) i++, contents++;
  ok = ok && contents >= 1 && i < n && k[i++] == E2E_EV_FINISH;
  if (ok && usage) ok = i < n && k[i++] == E2E_EV_USAGE;
  ok = ok && i < n && k[i++] == E2E_EV_DONE && i == n;
  if (!ok) fprintf(stderr, "e2e: events are not role, content+, finish,%s [DONE]: \"%.120s\"\n", usage ? " usage," : "", k);
  if (s->nbad || s->nother || s->nerror || s->wrong_object || s->framing_errors || s->event_lines ||
      s->other_lines || s->data_after_done) {
    fprintf(stderr, "e2e: malformed stream: bad %ld other %ld error %ld wrong_object %ld framing %d event: %ld "
            "other lines %ld after [DONE] %ld\n", s->nbad, s->nother, s->nerror, s->wrong_object,
            s->framing_errors, s->event_lines, s->other_lines, s->data_after_done);
    ok = 0;
  }
  return ok;
}

/* A chat request for exactly max_tokens tokens (the engine may not stop at
 * its end token: a random model emits it at random). */
static char *exact_body(char *buf, size_t cap, int stream, int max_tokens, int usage) {
  char extra[256];
  snprintf(extra, sizeof(extra), ",\"max_tokens\":%d,\"ignore_eos\":true%s", max_tokens,
           usage ? ",\"stream_options\":{\"include_usage\":true}" : "");
  return e2e_chat_body(buf, cap, MODEL, stream, extra);
}

/* A value from llama-server's Prometheus /metrics (e.g.
 * "llamacpp:requests_processing"), or -1. */
/* One short stream with usage through sluice at port: well formed, 8
 * tokens, ended by its length.  Returns 1 if so, else 0. */
static int short_stream_ok(int port) {
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  int st = e2e_stream(port, CHAT, NULL, exact_body(body, sizeof(body), 1, 8, 1), &head, &s, CHUNK, 60000);
  int ok = st == 200 && well_formed(&s, 1) && s.usage_completion_tokens == 8 &&
           strcmp(s.finish_reason, "length") == 0 && s.ncontent <= 8;
  if (!ok)
    fprintf(stderr, "e2e: the short stream: status %d, kinds \"%.80s\", %lld tokens, finish \"%s\"\n", st,
            s.kinds ? s.kinds : "", (long long)s.usage_completion_tokens, s.finish_reason);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  return ok;
}

static long engine_metric(int port, const char *name) {
  nu_resp_t r;
  long v = -1;
  if (e2e_http(port, "GET", "/metrics", NULL, NULL, &r, 5000) == 200) {
    size_t nl = strlen(name);
    for (const char *p = r.body; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
      if (strncmp(p, name, nl) == 0 && p[nl] == ' ') {
        v = (long)strtod(p + nl + 1, NULL);
        break;
      }
    }
  }
  nu_resp_free(&r);
  return v;
}

/* The engine's own generation time of its last finished request (its
 * "eval time = X ms" log line, not the "prompt eval time" one), in ms, or
 * -1.  Printed beside the wall-clock rates: on a shared machine the
 * engine's pace varies from one request to the next. */
static double engine_last_eval_ms(const e2e_proc_t *eng) {
  char *text = e2e_log_text(eng);
  double ms = -1;
  for (const char *at = text; at != NULL && (at = strstr(at, "eval time =")) != NULL; at++) {
    if (at - text >= 7 && memcmp(at - 7, "prompt ", 7) == 0) continue;
    ms = strtod(at + 11, NULL);
  }
  free(text);
  return ms;
}

/* The engine's own generation time of the request it finishes next after
 * `seen` generation-time lines were logged: waits (bounded) for its line,
 * which the engine writes once the stream has ended.  -1 if none came. */
static double engine_eval_ms_after(const e2e_proc_t *eng, int seen) {
  for (int64_t until = nu_now_ms() + 10000; nu_now_ms() < until; usleep(10 * 1000)) {
    int n = e2e_log_count(eng, "eval time =") - e2e_log_count(eng, "prompt eval time =");
    if (n > seen) return engine_last_eval_ms(eng);
  }
  return -1;
}

/* How many generation-time lines the engine has logged. */
static int engine_eval_lines(const e2e_proc_t *eng) {
  return e2e_log_count(eng, "eval time =") - e2e_log_count(eng, "prompt eval time =");
}

/* ---- a: a stream with usage, and the tokens/s figures ---- */

#define RATE_TOKENS 1000

static void test_stream_with_usage(void) {
  e2e_proc_t eng, sl;
  ASSERT_EQ(engine_start(&eng), 0);
  ASSERT_EQ(gateway_start(&sl, eng.port), 0);
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;

  /* A short stream first, so both timed runs find the prompt cached. */
  ASSERT(short_stream_ok(sl.port));

  /* The same request direct to the engine and through sluice. */
  exact_body(body, sizeof(body), 1, RATE_TOKENS, 1);
  ASSERT_GE(engine_eval_ms_after(&eng, 0), 0); /* the short stream's line is out */
  int seen = engine_eval_lines(&eng);
  int64_t t0 = nu_now_ms();
  ASSERT_EQ(e2e_stream(eng.port, CHAT, NULL, body, &head, &s, CHUNK, 120000), 200);
  int64_t direct_ms = nu_now_ms() - t0;
  double direct_eval = engine_eval_ms_after(&eng, seen);
  seen = engine_eval_lines(&eng);
  ASSERT(well_formed(&s, 1));
  ASSERT_EQ(s.usage_completion_tokens, RATE_TOKENS);
  e2e_sse_free(&s);
  nu_resp_free(&head);

  t0 = nu_now_ms();
  ASSERT_EQ(e2e_stream(sl.port, CHAT, NULL, body, &head, &s, CHUNK, 120000), 200);
  int64_t via_ms = nu_now_ms() - t0;
  double via_eval = engine_eval_ms_after(&eng, seen);
  ASSERT_EQ(s.read_rc, 0);
  ASSERT(s.body_ended);
  ASSERT(well_formed(&s, 1));
  ASSERT_EQ(s.usage_completion_tokens, RATE_TOKENS);
  ASSERT_STR_EQ(s.finish_reason, "length");
  ASSERT_LE(s.ncontent, RATE_TOKENS);
  ASSERT_GT(s.content_len, 0);
  long chunks = s.ncontent;
  e2e_sse_free(&s);
  nu_resp_free(&head);

  char line[1024];
  ASSERT(e2e_log_wait(&sl, "end=complete", 5000, line, sizeof(line)));
  fprintf(stderr, "     FIGURE tokens/s for %d tokens, client's wall clock: through sluice %.0f (%lld ms), direct "
          "%.0f (%lld ms); the engine's own eval time for the same requests: %.0f ms and %.0f ms; %ld content "
          "chunks\n", RATE_TOKENS, RATE_TOKENS * 1000.0 / (double)(via_ms ? via_ms : 1), (long long)via_ms,
          RATE_TOKENS * 1000.0 / (double)(direct_ms ? direct_ms : 1), (long long)direct_ms, via_eval, direct_eval,
          chunks);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&eng), 0);
}

/* ---- b: a non-streaming answer ---- */

static void test_non_streaming(void) {
  e2e_proc_t eng, sl;
  ASSERT_EQ(engine_start(&eng), 0);
  ASSERT_EQ(gateway_start(&sl, eng.port), 0);
  char body[1024];
  nu_resp_t r;
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, NULL, exact_body(body, sizeof(body), 0, 16, 0), &r, 60000), 200);
  const char *ct = nu_header(&r, "content-type");
  ASSERT_NOT_NULL(ct);
  ASSERT(strncmp(ct, "application/json", 16) == 0);
  cJSON *doc = cJSON_ParseWithLength(r.body, r.body_len);
  nu_resp_free(&r);
  ASSERT_NOT_NULL(doc);
  const cJSON *obj = cJSON_GetObjectItemCaseSensitive(doc, "object");
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
  const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "choices"), 0);
  const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c0, "message");
  const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
  const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
  const cJSON *fin = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
  const cJSON *usage = cJSON_GetObjectItemCaseSensitive(doc, "usage");
  double pt = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens"));
  double done_tokens = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens"));
  double tt = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(usage, "total_tokens"));
  int ok = cJSON_IsString(obj) && strcmp(obj->valuestring, "chat.completion") == 0 && cJSON_IsString(id) &&
           cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(doc, "choices")) == 1 && cJSON_IsString(role) &&
           strcmp(role->valuestring, "assistant") == 0 && cJSON_IsString(content) &&
           content->valuestring[0] != '\0' && cJSON_IsString(fin) && strcmp(fin->valuestring, "length") == 0;
  if (!ok) {
    char *text = cJSON_PrintUnformatted(doc);
    fprintf(stderr, "e2e: not a chat.completion with an assistant message and finish_reason length: %.600s\n", text);
    free(text);
  }
  cJSON_Delete(doc);
  ASSERT(ok);
  ASSERT_EQ(done_tokens, 16);
  ASSERT_GT(pt, 0);
  ASSERT_EQ(tt, pt + done_tokens);
  ASSERT(e2e_log_wait(&sl, "end=complete", 5000, NULL, 0));
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&eng), 0);
}

/* ---- c: a client's close reaches the engine as a cancel ---- */

/* Far more than the test reads: the engine needs tens of seconds for them,
 * so the cancel, not the end of the stream, frees the slot. */
#define CANCEL_TOKENS 8000

static void test_cancel_reaches_engine(void) {
  e2e_proc_t eng, sl;
  ASSERT_EQ(engine_start(&eng), 0);
  ASSERT_EQ(gateway_start(&sl, eng.port), 0);
  ASSERT_EQ(e2e_log_count(&eng, "cancel task"), 0);
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  nu_conn_t *c = e2e_sse_open(sl.port, CHAT, NULL, exact_body(body, sizeof(body), 1, CANCEL_TOKENS, 1), &head, &s,
                              CHUNK, 60000);
  ASSERT_NOT_NULL(c);
  ASSERT_EQ(head.status, 200);
  s.stop_after_content = 5;
  ASSERT_EQ(e2e_sse_read(c, &s, 60000), 1);
  ASSERT_EQ(s.ndone, 0);
  int64_t closed_at = nu_now_ms();
  e2e_conn_close(c); /* gone mid-stream */
  e2e_sse_free(&s);
  nu_resp_free(&head);

  /* Polled every millisecond so the figure means something; bounded. */
  int64_t deadline = closed_at + 30000, cancel_at = -1;
  while (nu_now_ms() < deadline) {
    if (e2e_log_count(&eng, "cancel task") > 0) {
      cancel_at = nu_now_ms();
      break;
    }
    usleep(1000);
  }
  if (cancel_at < 0) e2e_log_dump(&eng, 30);
  ASSERT_GE(cancel_at, 0);
  char line[512];
  ASSERT(e2e_log_wait(&eng, "cancel task", 0, line, sizeof(line)));
  const char *idp = strstr(line, "id_task = ");
  ASSERT_NOT_NULL(idp);
  long task = strtol(idp + 10, NULL, 10);
  /* The engine frees the slot: that task stops processing, well before it
   * could have produced all its tokens. */
  char needle[64];
  snprintf(needle, sizeof(needle), "| task %ld | stop processing", task);
  ASSERT(e2e_log_wait(&eng, needle, 30000, line, sizeof(line)));
  const char *nt = strstr(line, "n_tokens = ");
  ASSERT_NOT_NULL(nt);
  ASSERT_LT(strtol(nt + 11, NULL, 10), CANCEL_TOKENS);
  ASSERT_GE(e2e_wait_counter(sl.port, "client_cancels", 1, 10000), 1);
  ASSERT(e2e_log_wait(&sl, "end=client_cancel", 10000, NULL, 0));
  int64_t busy = -1;
  for (int64_t until = nu_now_ms() + 10000; nu_now_ms() < until; usleep(20 * 1000))
    if ((busy = engine_metric(eng.port, "llamacpp:requests_processing")) == 0) break;
  ASSERT_EQ(busy, 0);
  fprintf(stderr, "     FIGURE cancel latency: %lld ms from the client's close to the engine's \"cancel task\" line "
          "(polled every 1 ms)\n", (long long)(cancel_at - closed_at));
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&eng), 0);
}

/* ---- d: a client that stops reading, an engine that does not slow down ---- */

/* Each chunk carries the 20 most likely alternatives to its token (about
 * 2 KB a chunk, as a client asking for logprobs gets), so the stream is
 * megabytes long: more than the kernel's socket buffers hold. */
#define SLOW_TOKENS 4000
#define SLOW_EXTRA ",\"logprobs\":true,\"top_logprobs\":20"

/* The most a TCP socket's send buffer may grow to (tcp_wmem's maximum), or
 * 4 MiB when it cannot be read. */
static long tcp_wmem_max(void) {
  long lo, def, max = 4L << 20;
  FILE *f = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
  if (f != NULL) {
    if (fscanf(f, "%ld %ld %ld", &lo, &def, &max) != 3) max = 4L << 20;
    fclose(f);
  }
  return max;
}

static void test_slow_reader_memory_bound(void) {
  e2e_proc_t eng, sl;
  ASSERT_EQ(engine_start(&eng), 0);
  ASSERT_EQ(gateway_start(&sl, eng.port), 0);
  int64_t bound = e2e_health_num(sl.port, "stream_pin_bound_bytes");
  /* docs/architecture.md: high_watermark + 4 * chunk_size. */
  ASSERT_EQ(bound, 65536 + 4 * 16384);
  int before = e2e_log_count(&eng, "stop processing");
  ASSERT_GE(before, 0);

  /* A small receive buffer so the client's kernel does not read on its behalf. */
  nu_conn_t *c = e2e_conn_open(sl.port, 16384);
  ASSERT_NOT_NULL(c);
  char body[1024], extra[256];
  snprintf(extra, sizeof(extra), ",\"max_tokens\":%d,\"ignore_eos\":true,"
           "\"stream_options\":{\"include_usage\":true}" SLOW_EXTRA, SLOW_TOKENS);
  nu_resp_t head;
  e2e_sse_t s;
  ASSERT_EQ(e2e_sse_start(c, CHAT, NULL, e2e_chat_body(body, sizeof(body), MODEL, 1, extra), &head, &s, CHUNK, 60000),
            200);

  /* The client reads nothing more until the engine has generated every
   * token: it does not wait for its reader.  Meanwhile every chunk sluice
   * holds (there is one stream) stays under the bound. */
  int64_t deadline = nu_now_ms() + 240000, in_use_max = 0, samples = 0;
  int done = 0;
  while (!done && nu_now_ms() < deadline) {
    int64_t in_use = e2e_counter(sl.port, "chunk_pool_in_use");
    ASSERT_GE(in_use, 0);
    if (in_use > in_use_max) in_use_max = in_use;
    samples++;
    ASSERT_LE(in_use * 16384, bound);
    done = e2e_log_count(&eng, "stop processing") > before;
    if (!done) usleep(50 * 1000);
  }
  ASSERT(done);
  int64_t pauses = e2e_counter(sl.port, "upstream_read_pauses");
  int64_t from_engine = e2e_counter(sl.port, "bytes_from_upstream");

  /* Now the client reads the rest: every token, the usage chunk, [DONE]. */
  ASSERT_EQ(e2e_sse_read(c, &s, 120000), 0);
  e2e_conn_close(c);
  ASSERT(well_formed(&s, 1));
  ASSERT_EQ(s.usage_completion_tokens, SLOW_TOKENS);
  ASSERT_STR_EQ(s.finish_reason, "length");
  size_t body_bytes = s.body_bytes;
  e2e_sse_free(&s);
  nu_resp_free(&head);

  ASSERT_GE(e2e_wait_counter(sl.port, "streams_completed", 1, 10000), 1);
  int64_t peak = e2e_counter(sl.port, "stream_pinned_bytes_peak");
  long kernel = tcp_wmem_max() + (1L << 20);
  fprintf(stderr, "     FIGURE slow reader: when the engine was done (client stalled) sluice had read %lld bytes "
          "from it and paused reading %lld time(s); the stream is %zu bytes; "
          "in all %lld pauses, %lld resumes; chunks in use at most %lld (%lld samples); pinned peak %lld bytes, "
          "bound %lld\n",
          (long long)from_engine, (long long)pauses, body_bytes,
          (long long)e2e_counter(sl.port, "upstream_read_pauses"),
          (long long)e2e_counter(sl.port, "upstream_read_resumes"), (long long)in_use_max, (long long)samples,
          (long long)peak, (long long)bound);
  ASSERT_GT(peak, 0);
  ASSERT_LE(peak, bound);
  /* When the stream is larger than what the kernel's buffers can hold
   * between sluice and the stalled client (the send buffer's maximum plus a
   * generous MiB), sluice must have stopped reading the engine. */
  if ((long)body_bytes > kernel) ASSERT_GE(pauses, 1);
  else fprintf(stderr, "     (pauses not asserted: %zu bytes fit the kernel's buffers, %ld)\n", body_bytes, kernel);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&eng), 0);
}

/* ---- e: more streams than the engine has slots ---- */

#define NSTREAMS 5
/* Each stream keeps a slot busy for about a second or more (hundreds of
 * tokens a second), far longer than the five requests take to arrive. */
#define MANY_TOKENS 500

/* Streams sluice has in flight on its (only) endpoint, from /health, or -1. */
static long gateway_endpoint_streams(int port) {
  cJSON *h = e2e_get_json(port, "/health", NULL);
  const cJSON *pool = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(h, "pools"), 0);
  const cJSON *ep = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pool, "endpoints"), 0);
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(ep, "streams");
  long v = cJSON_IsNumber(n) ? (long)n->valuedouble : -1;
  cJSON_Delete(h);
  return v;
}

static void test_more_streams_than_slots(void) {
  e2e_proc_t eng, sl;
  ASSERT_EQ(engine_start(&eng), 0);
  /* The limit stays at the engine's slots (the rule does not move it
   * here: docs/admission.md has the convergence runs). */
  ASSERT_EQ(gateway_start_with(&sl, eng.port, ",\"limits\":{\"adaptive\":false}"), 0);
  int before = e2e_log_count(&eng, "stop processing");
  char body[1024];
  exact_body(body, sizeof(body), 1, MANY_TOKENS, 1);
  nu_conn_t *c[NSTREAMS];
  int sent = 0;
  /* Every request goes out before any answer is read. */
  for (int i = 0; i < NSTREAMS; i++) {
    c[i] = e2e_conn_open(sl.port, 0);
    if (c[i] != NULL && nu_send_request(c[i]->fd, "POST", CHAT, NULL, body) == 0) sent++;
  }
  /* Wait for the event: the requests past the engine's slots wait in
   * sluice's queue, where they can be ordered, timed out and seen, instead
   * of inside the engine (its requests_deferred gauge, sampled meanwhile
   * for the figure). */
  long deferred_max = 0, inflight_max = 0;
  int64_t queued = 0;
  for (int64_t until = nu_now_ms() + 30000; nu_now_ms() < until && queued < NSTREAMS - 2; usleep(5 * 1000)) {
    long d = engine_metric(eng.port, "llamacpp:requests_deferred");
    long n = gateway_endpoint_streams(sl.port);
    queued = e2e_counter(sl.port, "queue_waiting");
    if (d > deferred_max) deferred_max = d;
    if (n > inflight_max) inflight_max = n;
  }
  ASSERT_EQ(queued, NSTREAMS - 2); /* ENGINE_SLOTS is 2 */
  int ok = 0;
  for (int i = 0; i < NSTREAMS; i++) {
    if (c[i] == NULL) continue;
    nu_resp_t head;
    e2e_sse_t s;
    e2e_sse_init(&s, CHUNK);
    if (nu_read_head(c[i], &head, 120000) == 0 && head.status == 200) {
      s.chunked = head.chunked;
      if (e2e_sse_read(c[i], &s, 120000) == 0 && well_formed(&s, 1) && s.usage_completion_tokens == MANY_TOKENS &&
          strcmp(s.finish_reason, "length") == 0)
        ok++;
      else
        fprintf(stderr, "e2e: stream %d of %d: read %d, usage %lld, finish \"%s\"\n", i, NSTREAMS, s.read_rc,
                (long long)s.usage_completion_tokens, s.finish_reason);
    } else {
      fprintf(stderr, "e2e: stream %d of %d: no 200 head (status %d)\n", i, NSTREAMS, head.status);
    }
    e2e_sse_free(&s);
    e2e_conn_close(c[i]);
  }
  ASSERT_EQ(sent, NSTREAMS);
  ASSERT_EQ(ok, NSTREAMS);
  ASSERT_LE(inflight_max, 2); /* sluice never put more than the slots on the engine */
  ASSERT_EQ(e2e_counter(sl.port, "queue_placed"), NSTREAMS - 2);
  ASSERT_GE(e2e_wait_counter(sl.port, "streams_completed", NSTREAMS, 10000), NSTREAMS);
  /* The engine logs a slot's release after it sent the last bytes: wait for
   * the line, then check no extra one came. */
  ASSERT_EQ(e2e_wait_log_count(&eng, "stop processing", before + NSTREAMS, 30000) - before, NSTREAMS);
  ASSERT_EQ(e2e_counter(sl.port, "streams_active"), 0);
  fprintf(stderr, "     FIGURE %d streams on %s slots: sluice queued %d and had at most %ld in flight on the engine, "
          "which deferred at most %ld while the queue held them\n",
          NSTREAMS, ENGINE_SLOTS, NSTREAMS - 2, inflight_max, deferred_max);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&eng), 0);
}

/* ---- f: the native /completion adapter beside the OpenAI path ---- */

#define NATIVE_MODEL "random-llama-native"

/* One legacy completion through sluice, greedy, streamed or not: the text
 * (malloc'd, or NULL), the finish reason and the completion tokens. */
static char *completion_text(int port, const char *model, int stream, char *finish, size_t fcap, long *tokens) {
  char body[1024];
  snprintf(body, sizeof(body),
           "{\"model\":\"%s\",\"prompt\":\"The quick brown fox\",\"max_tokens\":12,\"temperature\":0,"
           "\"seed\":5,\"stream\":%s%s}",
           model, stream ? "true" : "false", stream ? ",\"stream_options\":{\"include_usage\":true}" : "");
  char *text = NULL;
  *tokens = -1;
  finish[0] = '\0';
  if (stream) {
    nu_resp_t head;
    e2e_sse_t s;
    if (e2e_stream(port, COMPL, NULL, body, &head, &s, "text_completion", 60000) == 200 && s.read_rc == 0 &&
        s.nbad == 0 && s.nother == 0 && s.nerror == 0 && s.wrong_object == 0 && s.ndone == 1 && s.nusage == 1) {
      text = strdup(s.content ? s.content : "");
      snprintf(finish, fcap, "%s", s.finish_reason);
      *tokens = (long)s.usage_completion_tokens;
    } else {
      fprintf(stderr, "e2e: %s stream: kinds \"%.80s\"\n", model, s.kinds ? s.kinds : "");
    }
    e2e_sse_free(&s);
    nu_resp_free(&head);
    return text;
  }
  nu_resp_t r;
  if (e2e_http(port, "POST", COMPL, NULL, body, &r, 60000) == 200) {
    cJSON *doc = cJSON_Parse(r.body);
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "choices"), 0);
    const cJSON *t = cJSON_GetObjectItem(c0, "text"), *fr = cJSON_GetObjectItem(c0, "finish_reason");
    const cJSON *ct = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "usage"), "completion_tokens");
    if (cJSON_IsString(t) && cJSON_IsString(fr) && cJSON_IsNumber(ct)) {
      text = strdup(t->valuestring);
      snprintf(finish, fcap, "%s", fr->valuestring);
      *tokens = (long)ct->valuedouble;
    }
    cJSON_Delete(doc);
  }
  nu_resp_free(&r);
  return text;
}

static void test_native_completion_adapter(void) {
  e2e_proc_t eng, sl;
  ASSERT_EQ(engine_start(&eng), 0);
  /* Two pools on the same server: its /v1 routes ("openai") and its
   * native /completion ("llamacpp"), told apart by the model name. */
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"llama\",\"models\":[\"" MODEL "\"],\"endpoints\":[{\"url\":"
           "\"http://127.0.0.1:%d\"}]},{\"name\":\"native\",\"adapter\":\"llamacpp\",\"models\":[\"" NATIVE_MODEL
           "\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:%d\"}]}],\"health\":{\"interval_ms\":500}}",
           eng.port, eng.port);
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, 20000), 0);
  ASSERT(e2e_wait_endpoints_ready(sl.port, 2, 20000));
  for (int stream = 0; stream < 2; stream++) {
    char f1[32], f2[32];
    long n1, n2;
    char *oai = completion_text(sl.port, MODEL, stream, f1, sizeof(f1), &n1);
    char *nat = completion_text(sl.port, NATIVE_MODEL, stream, f2, sizeof(f2), &n2);
    ASSERT_NOT_NULL(oai);
    ASSERT_NOT_NULL(nat);
    /* Greedy decoding of the same prompt on the same engine: the same
     * text, finish reason and count whichever route carried it. */
    ASSERT_STR_EQ(nat, oai);
    ASSERT_STR_EQ(f2, f1);
    ASSERT_EQ(n2, n1);
    ASSERT_GT(n2, 0);
    ASSERT(strcmp(f2, "length") == 0 ? n2 == 12 : strcmp(f2, "stop") == 0);
    free(oai);
    free(nat);
  }
  /* Chat is refused on the native route, naming the rule. */
  char body[1024];
  nu_resp_t r;
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, NULL, e2e_chat_body(body, sizeof(body), NATIVE_MODEL, 1, NULL), &r, 60000),
            400);
  ASSERT(e2e_is_error_body(r.body, "serves only /v1/completions"));
  nu_resp_free(&r);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&eng), 0);
}

/* ---- g: llama-server as a managed engine ---- */

/* sluice starts llama-server itself (docs/engines.md, "Local engines"):
 * {model_path} from a catalog entry for the generated model (its digest
 * checked at start), {port} a free port sluice picked.  A request is
 * answered by it, /health shows it running, and SIGTERM to sluice leaves
 * no llama-server behind. */
static void test_managed_llama_server(void) {
  char cmd[PATH_MAX + 64], sum[256];
  snprintf(cmd, sizeof(cmd), "sha256sum '%s'", g_model);
  ASSERT_EQ(run_line(cmd, sum, sizeof(sum)), 0);
  ASSERT_GE(strlen(sum), 64);
  sum[64] = '\0';
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s", g_model);
  char *slash = strrchr(dir, '/');
  ASSERT_NOT_NULL(slash);
  *slash = '\0';
  char cfg[4 * PATH_MAX];
  snprintf(cfg, sizeof(cfg),
           "{\"catalog\":{\"dir\":\"%s\",\"models\":[{\"name\":\"" MODEL "\",\"file\":\"%s\",\"sha256\":\"%s\"}]},"
           "\"health\":{\"interval_ms\":500},"
           "\"pools\":[{\"name\":\"llama\",\"models\":[\"" MODEL "\"],\"slots\":" ENGINE_SLOTS
           ",\"context_tokens\":8192,\"endpoints\":[{\"managed\":{\"model\":\"" MODEL "\",\"start_timeout_ms\":120000,"
           "\"command\":[\"%s\",\"-m\",\"{model_path}\",\"--host\",\"127.0.0.1\",\"--port\",\"{port}\",\"-t\",\"1\","
           "\"-np\",\"" ENGINE_SLOTS "\",\"-c\",\"" ENGINE_CTX "\",\"--no-webui\",\"--log-colors\",\"off\"]}}]}]}",
           dir, slash + 1, sum, g_launcher);
  e2e_proc_t sl;
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT(e2e_wait_endpoints_ready(sl.port, 1, 120000));
  ASSERT_EQ(e2e_wait_counter(sl.port, "engines_ready", 1, 120000), 1);
  /* Its own log lines come through sluice's, under the endpoint's name. */
  ASSERT(e2e_log_wait(&sl, "listening on http://127.0.0.1:", 10000, NULL, 0));
  cJSON *h = e2e_get_json(sl.port, "/health", NULL);
  const cJSON *ep = cJSON_GetArrayItem(
      cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(h, "pools"), 0), "endpoints"), 0);
  const cJSON *m = cJSON_GetObjectItem(ep, "managed");
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(m, "state")), "running");
  int pid = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(m, "pid"));
  cJSON_Delete(h);
  ASSERT_GT(pid, 0);
  ASSERT(short_stream_ok(sl.port));
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT(kill(pid, 0) == -1 && errno == ESRCH); /* no llama-server left */
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 840); /* under ctest's 900 s, so the harness reports first */
  prepare();
  E2E_RUN(test_stream_with_usage);
  E2E_RUN(test_non_streaming);
  E2E_RUN(test_cancel_reaches_engine);
  E2E_RUN(test_slow_reader_memory_bound);
  E2E_RUN(test_more_streams_than_slots);
  E2E_RUN(test_native_completion_adapter);
  E2E_RUN(test_managed_llama_server);
  if (g_roleless > 0)
    fprintf(stderr, "     NOTE %d stream(s) came without a role chunk: the engine's first token was an incomplete "
            "UTF-8 byte (see well_formed)\n", g_roleless);
  return SL_TEST_EXIT();
}
