/* e2e_guards.c: guards acting on live streams, through the real binary.
 *
 * One simulated engine with guards configured on its pool; the engine's
 * text comes from x-sim-script (exact tokens) and its events are cut into
 * separate TCP reads with x-sim-split, so matches span reads.  Each case
 * asserts what the client receives (text, finish, comment, usage, error
 * event), that the engine's request was cancelled where the stream stopped
 * early (the engine holds the rest with a stall, so "cancelled" cannot be
 * confused with "finished first"), and what the log line says.
 */
#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"

static const char GUARDS[] =
    "{\"stop\":{\"strings\":[\"<|end|>\"]},"
    "\"redact\":{\"literals\":[\"hunter2\",\"tiger-lily\"],\"mask\":\"[MASKED]\"},"
    "\"loop\":{},"
    "\"ltl\":[{\"name\":\"no_refusal\",\"formula\":\"G !refusal\",\"patterns\":{\"refusal\":\"I cannot\"}},"
    "{\"name\":\"no_stall\",\"formula\":\"G !gap\",\"gap_ms\":300}]}";

static char admin_path[108];

static int start_guarded(e2e_proc_t *sl, const char *guards) {
  char cfg[4096];
  snprintf(admin_path, sizeof(admin_path), "%s/guards-admin.sock", e2e_tmpdir());
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"guards\":%s,"
           "\"endpoints\":[{\"sim\":{\"ttft_ms\":2,\"itl_ms\":1,\"itl_jitter\":0}}]}],"
           "\"admin_socket\":\"%s\",\"upstream\":{\"idle_timeout_ms\":3600000}}",
           guards, admin_path);
  if (e2e_serve_start(sl, cfg, NULL) < 0) return -1;
  if (sl->nsims != 1) return -1;
  return e2e_wait_ready(sl->port, 200, E2E_WAIT_MS);
}

/* Percent-encodes s for x-sim-script (the bar separates tokens). */
static void pct(char *out, size_t cap, const char *s, size_t n) {
  size_t w = 0;
  for (size_t i = 0; i < n && w + 4 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '|' || c == '%' || c < 0x21 || c > 0x7e)
      w += (size_t)snprintf(out + w, cap - w, "%%%02X", c);
    else
      out[w++] = (char)c;
  }
  out[w] = '\0';
}

/* A streamed chat request with `headers`, read to its end into s.
 * Returns the status. */
static int chat(const e2e_proc_t *sl, const char *headers, const char *extra, e2e_sse_t *s, nu_resp_t *head) {
  char body[2048];
  return e2e_stream(sl->port, CHAT, headers, e2e_chat_body(body, sizeof(body), "m1", 1, extra), head, s, CHUNK,
                    E2E_WAIT_MS);
}

/* The engine's request ended before the engine finished it. */
static int engine_cancelled(const e2e_proc_t *sl, int64_t before) {
  return e2e_wait_sim_stat(sl->sim_ports[0], "client_closed_mid_stream", before + 1, E2E_WAIT_MS) >= before + 1;
}

/* ---- stop ---- */

static void test_stop_across_three_reads(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_guarded(&sl, GUARDS), 0);
  int64_t closed = e2e_sim_stat(sl.sim_ports[0], "client_closed_mid_stream");
  /* "<|end|>" arrives in three tokens, each event cut in two reads; the
   * engine then stalls, so only a cancel can end its request. */
  e2e_sse_t s;
  nu_resp_t head;
  ASSERT_EQ(chat(&sl,
                 "x-sim-script: Hello| world.| <%7C|en|d%7C>| never| seen\r\nx-sim-split: 60\r\n"
                 "x-sim-split-delay-ms: 5\r\nx-sim-fault: stall\r\nx-sim-fault-at: 7\r\n",
                 ",\"stream_options\":{\"include_usage\":true}", &s, &head),
            200);
  ASSERT_EQ(s.read_rc, 0);
  ASSERT_STR_EQ(s.content, "Hello world. ");
  ASSERT_STR_EQ(s.finish_reason, "stop");
  ASSERT_EQ(s.ndone, 1);
  ASSERT_EQ(s.nusage, 1);
  ASSERT_EQ(s.nerror, 0);
  ASSERT_GE(s.ncomments, 1); /* ": sluice guard=stop ..." before the finish */
  ASSERT(e2e_sse_kinds_eq(&s, "RCCCFUD") || e2e_sse_kinds_eq(&s, "RCCFUD"));
  ASSERT(engine_cancelled(&sl, closed));
  char line[1024];
  ASSERT(e2e_log_wait(&sl, "end=guard_stop", E2E_WAIT_MS, line, sizeof(line)));
  ASSERT(strstr(line, "guard=stop") != NULL);
  ASSERT_GE(e2e_counter(sl.port, "guard_stop"), 1);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_stop_at_every_split(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_guarded(&sl, GUARDS), 0);
  /* The client's stop "STOP" in a short text cut into three tokens at
   * every pair of offsets: the client always gets the text before it. */
  static const char text[] = "one two STOP three";
  size_t n = sizeof(text) - 1;
  int cases = 0;
  for (size_t a = 1; a < n; a++) {
    for (size_t b = a + 1; b < n; b += 3) {
      char t1[64], t2[64], t3[64], hdr[512];
      pct(t1, sizeof(t1), text, a);
      pct(t2, sizeof(t2), text + a, b - a);
      pct(t3, sizeof(t3), text + b, n - b);
      snprintf(hdr, sizeof(hdr), "x-sim-script: %s|%s|%s\r\n", t1, t2, t3);
      e2e_sse_t s;
      nu_resp_t head;
      ASSERT_EQ(chat(&sl, hdr, ",\"stop\":\"STOP\"", &s, &head), 200);
      if (strcmp(s.content ? s.content : "", "one two ") != 0 || strcmp(s.finish_reason, "stop") != 0 ||
          s.ndone != 1) {
        fprintf(stderr, "     split at %zu,%zu: content \"%s\" finish %s kinds %s\n", a, b, s.content,
                s.finish_reason, s.kinds);
        ASSERT(0);
      }
      cases++;
      e2e_sse_free(&s);
      nu_resp_free(&head);
    }
  }
  fprintf(stderr, "     %d splits\n", cases);
  /* A held prefix that is no stop goes out intact. */
  e2e_sse_t s;
  nu_resp_t head;
  ASSERT_EQ(chat(&sl, "x-sim-script: Hello| ST|OR|Y <%7C|end| time\r\n", ",\"stop\":[\"STOP\"]", &s, &head), 200);
  ASSERT_STR_EQ(s.content, "Hello STORY <|end time");
  ASSERT_STR_EQ(s.finish_reason, "stop");
  ASSERT_EQ(s.ndone, 1);
  ASSERT_EQ(s.ncomments, 0); /* no guard fired */
  e2e_sse_free(&s);
  nu_resp_free(&head);
  /* A multibyte stop split inside its first character. */
  ASSERT_EQ(chat(&sl, "x-sim-script: caf%C3|%A9!| more\r\n", ",\"stop\":\"\xc3\xa9!\"", &s, &head), 200);
  ASSERT_STR_EQ(s.content, "caf");
  ASSERT_STR_EQ(s.finish_reason, "stop");
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- redaction ---- */

static void test_redaction_literals(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_guarded(&sl, GUARDS), 0);
  e2e_sse_t s;
  nu_resp_t head;
  ASSERT_EQ(chat(&sl, "x-sim-script: my pass is hun|te|r2, and| tiger-|lily| too\r\nx-sim-split: 50\r\n", NULL, &s,
                 &head),
            200);
  ASSERT_STR_EQ(s.content, "my pass is [MASKED], and [MASKED] too");
  ASSERT_STR_EQ(s.finish_reason, "stop");
  ASSERT_EQ(s.ndone, 1);
  ASSERT_EQ(s.nbad, 0);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  /* Look-alikes pass unchanged. */
  ASSERT_EQ(chat(&sl, "x-sim-script: hunter| 2 and hunter3| tiger lily\r\n", NULL, &s, &head), 200);
  ASSERT_STR_EQ(s.content, "hunter 2 and hunter3 tiger lily");
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_GE(e2e_counter(sl.port, "guard_masked_ranges"), 2);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_redaction_classes_split(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_guarded(&sl, "{\"redact\":{\"classes\":[\"openai_key\",\"bearer\",\"aws_access_key_id\","
                               "\"email\"]}}"),
            0);
  static const struct {
    const char *script, *want;
  } cases[] = {
      {"my key is sk-|proj-abcdefgh|ijklmnop|qrstuv ok", "my key is [REDACTED] ok"},
      {"Authorization: Bear|er abcdefghij|klmnopqrstu== done", "Authorization: Bearer [REDACTED] done"},
      {"id AKIA|IOSFODNN7|EXAMPLE, next", "id [REDACTED], next"},
      {"mail bob.sm|ith@exam|ple.co|.uk. Thanks", "mail [REDACTED]. Thanks"},
      /* look-alikes */
      {"ask-me task-force sk-|short AKIA|12345 user@|localhost a@b.c Bearer| abc", NULL},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char hdr[512], pc[400];
    /* Keep the bars (token cuts); encode spaces. */
    size_t w = 0;
    for (const char *c = cases[i].script; *c && w + 4 < sizeof(pc); c++) {
      if (*c == ' ') w += (size_t)snprintf(pc + w, sizeof(pc) - w, "%%20");
      else pc[w++] = *c;
    }
    pc[w] = '\0';
    snprintf(hdr, sizeof(hdr), "x-sim-script: %s\r\nx-sim-split: 40\r\n", pc);
    char plain[400];
    w = 0;
    for (const char *c = cases[i].script; *c; c++)
      if (*c != '|') plain[w++] = *c;
    plain[w] = '\0';
    e2e_sse_t s;
    nu_resp_t head;
    ASSERT_EQ(chat(&sl, hdr, NULL, &s, &head), 200);
    ASSERT_STR_EQ(s.content, cases[i].want ? cases[i].want : plain);
    ASSERT_STR_EQ(s.finish_reason, "stop");
    ASSERT_EQ(s.ndone, 1);
    ASSERT_EQ(s.nbad, 0);
    e2e_sse_free(&s);
    nu_resp_free(&head);
  }
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- budget, loop, LTL ---- */

static void test_budget_cuts_with_length(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_guarded(&sl, "{\"budget\":{\"max_completion_tokens\":5}}"), 0);
  int64_t closed = e2e_sim_stat(sl.sim_ports[0], "client_closed_mid_stream");
  e2e_sse_t s;
  nu_resp_t head;
  ASSERT_EQ(chat(&sl, "x-sim-tokens: 50\r\nx-sim-fault: stall\r\nx-sim-fault-at: 20\r\n",
                 ",\"max_tokens\":100,\"stream_options\":{\"include_usage\":true}", &s, &head),
            200);
  ASSERT_EQ(s.ncontent, 5);
  ASSERT_STR_EQ(s.finish_reason, "length");
  ASSERT_EQ(s.usage_completion_tokens, 5);
  ASSERT_EQ(s.ndone, 1);
  ASSERT(engine_cancelled(&sl, closed));
  ASSERT(e2e_log_wait(&sl, "end=guard_budget", E2E_WAIT_MS, NULL, 0));
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_loop_stopped_and_tables_not(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_guarded(&sl, GUARDS), 0);
  /* 10 ordinary tokens, then a period-3 loop. */
  char hdr[4096];
  size_t w = (size_t)snprintf(hdr, sizeof(hdr), "x-sim-script: The| answer| is| that| we| should| look| at| it| again");
  for (int i = 0; i < 40; i++) w += (size_t)snprintf(hdr + w, sizeof(hdr) - w, "| I| am| here");
  snprintf(hdr + w, sizeof(hdr) - w, "\r\nx-sim-fault: stall\r\nx-sim-fault-at: 130\r\n");
  e2e_sse_t s;
  nu_resp_t head;
  ASSERT_EQ(chat(&sl, hdr, NULL, &s, &head), 200);
  ASSERT_STR_EQ(s.finish_reason, "content_filter");
  ASSERT_EQ(s.ndone, 1);
  /* Detected within repeats(3) * 3 = max(4, ceil(32 / 3)) * 3 = 33 tokens of
   * the loop's start (token 10), plus up to batch - 1 = 7 tokens waiting in
   * the batch; the firing token is not sent. */
  fprintf(stderr, "     loop: %ld content chunks before the cut\n", s.ncontent);
  ASSERT_GT(s.ncontent, 10);
  ASSERT_LE(s.ncontent, 10 + 33 + 7);
  char line[1024];
  ASSERT(e2e_log_wait(&sl, "end=guard_loop", E2E_WAIT_MS, line, sizeof(line)));
  e2e_sse_free(&s);
  nu_resp_free(&head);
  /* A markdown table and a numbered list repeat their frame, not their
   * text: they run to the end. */
  static const char *const rows[] = {"Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi",
                                     "Ivan", "Judy", "Mallory", "Niaj", "Olivia", "Peggy"};
  w = (size_t)snprintf(hdr, sizeof(hdr), "x-sim-script: %%7C Name| %%7C| Age| %%7C%%0A");
  for (int i = 0; i < 14; i++)
    w += (size_t)snprintf(hdr + w, sizeof(hdr) - w, "|%%7C %s| %%7C| %d| %%7C%%0A", rows[i], 20 + 3 * i);
  for (int i = 0; i < 14; i++)
    w += (size_t)snprintf(hdr + w, sizeof(hdr) - w, "|%d.| Call| %s| about| item| %d%%0A", i + 1, rows[i], i * 7);
  snprintf(hdr + w, sizeof(hdr) - w, "\r\n");
  ASSERT_EQ(chat(&sl, hdr, NULL, &s, &head), 200);
  ASSERT_STR_EQ(s.finish_reason, "stop");
  ASSERT_EQ(s.ncontent, 4 + 14 * 4 + 14 * 6);
  ASSERT_EQ(s.ncomments, 0);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_ltl_violation_and_stall(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_guarded(&sl, GUARDS), 0);
  int64_t closed = e2e_sim_stat(sl.sim_ports[0], "client_closed_mid_stream");
  e2e_sse_t s;
  nu_resp_t head;
  ASSERT_EQ(chat(&sl, "x-sim-script: Sure.| Well,| I| can|not| do| that.| Bye\r\nx-sim-fault: stall\r\n"
                      "x-sim-fault-at: 8\r\n",
                 NULL, &s, &head),
            200);
  ASSERT_STR_EQ(s.finish_reason, "content_filter");
  ASSERT_STR_EQ(s.content, "Sure. Well, I can");
  ASSERT_EQ(s.ndone, 1);
  ASSERT(engine_cancelled(&sl, closed));
  char line[1024];
  ASSERT(e2e_log_wait(&sl, "guard=ltl:no_refusal", E2E_WAIT_MS, line, sizeof(line)));
  ASSERT(strstr(line, "end=guard_ltl") != NULL);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  /* A stall after 3 tokens: no event comes, the timer steps the monitor
   * with gap, and the property "G !gap" ends the stream. */
  ASSERT_EQ(chat(&sl, "x-sim-tokens: 20\r\nx-sim-fault: stall\r\nx-sim-fault-at: 3\r\n", NULL, &s, &head), 200);
  ASSERT_EQ(s.ncontent, 3);
  ASSERT_STR_EQ(s.finish_reason, "content_filter");
  ASSERT_EQ(s.ndone, 1);
  ASSERT(e2e_log_wait(&sl, "guard=ltl:no_stall", E2E_WAIT_MS, NULL, 0));
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- actions, usage of cut streams, whole answers ---- */

static void test_cancel_action_sends_usage_then_error(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_guarded(&sl, "{\"ltl\":[{\"name\":\"no_refusal\",\"formula\":\"G !refusal\","
                               "\"patterns\":{\"refusal\":[\"I cannot\",\"I can't\"]},\"action\":\"cancel\"}]}"),
            0);
  e2e_sse_t s;
  nu_resp_t head;
  ASSERT_EQ(chat(&sl, "x-sim-script: Sorry,| I can't| help\r\n", ",\"stream_options\":{\"include_usage\":true}", &s,
                 &head),
            200);
  ASSERT(e2e_sse_kinds_eq(&s, "RCUE"));
  ASSERT_STR_EQ(s.error_code, "guard_ltl");
  ASSERT(strstr(s.error_message, "no_refusal") != NULL);
  ASSERT_EQ(s.usage_completion_tokens, 2);
  ASSERT_EQ(s.ndone, 0);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  /* Annotate: the stream runs on, the log names the guard. */
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(start_guarded(&sl, "{\"ltl\":[{\"name\":\"no_refusal\",\"formula\":\"G !refusal\","
                               "\"patterns\":{\"refusal\":\"I can't\"},\"action\":\"annotate\"}]}"),
            0);
  ASSERT_EQ(chat(&sl, "x-sim-script: Sorry,| I can't| help\r\n", NULL, &s, &head), 200);
  ASSERT_STR_EQ(s.content, "Sorry, I can't help");
  ASSERT_EQ(s.ndone, 1);
  char line[1024];
  ASSERT(e2e_log_wait(&sl, "end=complete", E2E_WAIT_MS, line, sizeof(line)));
  ASSERT(strstr(line, "guard=ltl:no_refusal") != NULL);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  /* Attach shows it on a stream in flight (the engine stalls after it). */
  char body[1024];
  nu_conn_t *c = e2e_sse_open(sl.port, CHAT, "x-sim-script: Sorry,| I can't| help| more\r\nx-sim-fault: stall\r\n"
                              "x-sim-fault-at: 3\r\n",
                              e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(c);
  s.stop_after_content = 3;
  ASSERT_EQ(e2e_sse_read(c, &s, E2E_WAIT_MS), 1);
  char *out = NULL, *err = NULL;
  ASSERT_EQ(e2e_run_cli("attach", admin_path, "=streams()[1].guard\n", &out, &err), 0);
  ASSERT(out != NULL && strstr(out, "ltl:no_refusal") != NULL);
  free(out);
  free(err);
  e2e_conn_close(c);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_usage_of_an_engine_cut(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_guarded(&sl, "null"), 0);
  e2e_sse_t s;
  nu_resp_t head;
  ASSERT_EQ(chat(&sl, "x-sim-tokens: 20\r\nx-sim-fault: reset\r\nx-sim-fault-at: 3\r\n",
                 ",\"stream_options\":{\"include_usage\":true}", &s, &head),
            200);
  ASSERT(e2e_sse_kinds_eq(&s, "RCCCUE"));
  ASSERT_EQ(s.usage_completion_tokens, 3);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  cJSON *h = e2e_get_json(sl.port, "/health", NULL);
  ASSERT_NOT_NULL(h);
  const cJSON *pool = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(h, "pools"), 0);
  ASSERT_EQ((int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(pool, "cut_streams")), 1);
  ASSERT_EQ((int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(pool, "cut_tokens_received")), 3);
  cJSON_Delete(h);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_whole_answers_are_guarded(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_guarded(&sl, GUARDS), 0);
  char body[1024];
  nu_resp_t r;
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, "x-sim-script: pass hun|ter2 then| <%7Cend%7C>| rest\r\n",
                     e2e_chat_body(body, sizeof(body), "m1", 0, NULL), &r, E2E_WAIT_MS),
            200);
  cJSON *doc = cJSON_ParseWithLength(r.body, r.body_len);
  ASSERT_NOT_NULL(doc);
  const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "choices"), 0);
  const cJSON *msg = cJSON_GetObjectItemCaseSensitive(ch, "message");
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "content")), "pass [MASKED] then ");
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ch, "finish_reason")), "stop");
  cJSON_Delete(doc);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_bad_guard_config_is_refused(void) {
  static const struct {
    const char *guards, *want;
  } cases[] = {
      {"{\"ltl\":[{\"name\":\"x\",\"formula\":\"G (a\"}]}", "pools[0].guards.ltl[0].formula: column"},
      {"{\"ltl\":[{\"name\":\"x\",\"formula\":\"G nope\"}]}", "unknown proposition \"nope\""},
      {"{\"ltl\":[{\"name\":\"x\",\"formula\":\"G !gap\"}]}", "pools[0].guards.ltl[0].gap_ms: required"},
      {"{\"stop\":{\"strings\":[\"\"]}}", "pools[0].guards.stop.strings[0]: expected a non-empty string"},
      {"{\"budget\":{\"max_completion_tokens\":0}}", "pools[0].guards.budget.max_completion_tokens"},
      {"{\"loop\":{\"action\":\"explode\"}}", "pools[0].guards.loop.action: \"explode\" is not one of"},
      {"{\"redact\":{\"classes\":[\"passwords\"]}}", "pools[0].guards.redact.classes[0]: expected one of"},
      {"{\"stopp\":{}}", "pools[0].guards.stopp: unknown key"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char cfg[1024], path[256];
    snprintf(cfg, sizeof(cfg),
             "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"guards\":%s,"
             "\"endpoints\":[{\"url\":\"http://127.0.0.1:9\"}]}]}",
             cases[i].guards);
    snprintf(path, sizeof(path), "%s/bad-guards.json", e2e_tmpdir());
    FILE *f = fopen(path, "w");
    ASSERT_NOT_NULL(f);
    fputs(cfg, f);
    fclose(f);
    char args[300], *out = NULL, *err = NULL;
    snprintf(args, sizeof(args), "--config %s", path);
    int rc = e2e_run_cli("check", args, "", &out, &err);
    if (rc == 0 || err == NULL || strstr(err, cases[i].want) == NULL) {
      fprintf(stderr, "     %s: rc %d, stderr: %s\n", cases[i].guards, rc, err ? err : "(none)");
      ASSERT(0);
    }
    free(out);
    free(err);
  }
  /* A client stop out of bounds is a 400 naming the field. */
  e2e_proc_t sl;
  ASSERT_EQ(start_guarded(&sl, "null"), 0);
  char body[1024];
  nu_resp_t r;
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, NULL,
                     e2e_chat_body(body, sizeof(body), "m1", 1, ",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]"), &r,
                     E2E_WAIT_MS),
            400);
  ASSERT(e2e_is_error_body(r.body, "at most 4"));
  nu_resp_free(&r);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 180);
  E2E_RUN(test_stop_across_three_reads);
  E2E_RUN(test_stop_at_every_split);
  E2E_RUN(test_redaction_literals);
  E2E_RUN(test_redaction_classes_split);
  E2E_RUN(test_budget_cuts_with_length);
  E2E_RUN(test_loop_stopped_and_tables_not);
  E2E_RUN(test_ltl_violation_and_stall);
  E2E_RUN(test_cancel_action_sends_usage_then_error);
  E2E_RUN(test_usage_of_an_engine_cut);
  E2E_RUN(test_whole_answers_are_guarded);
  E2E_RUN(test_bad_guard_config_is_refused);
  return SL_TEST_EXIT();
}
