/* test_guard.c: the guard layer without a stream: a guard set compiled from
 * JSON, fed text in pieces, stepped per token and by the timer; what it
 * says is final, what it masks, where a stop begins, which verdict it gives.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/base/errors.h"
#include "runtime/guard/guard.h"
#include "test.h"

static sl_guardset_t *build(const char *json) {
  sl_guardset_t *gs = NULL;
  char err[256] = "";
  if (sl_guardset_build_json(json, "guards", NULL, &gs, err, sizeof(err)) != 0) {
    fprintf(stderr, "  build: %s\n", err);
    return NULL;
  }
  return gs;
}

/* Feeds text to channel ch in pieces of `piece` bytes. */
static void feed(sl_guard_t *g, int ch, const char *text, size_t piece) {
  size_t n = strlen(text);
  for (size_t off = 0; off < n; off += piece) sl_guard_feed(g, ch, text + off, n - off < piece ? n - off : piece);
}

/* The channel's text from 0 as the client may see it. */
static void render(const sl_guard_t *g, int ch, const char *text, char *out, size_t cap) {
  size_t w = sl_guard_render(g, ch, 0, text, strlen(text), out, cap - 1, NULL);
  ASSERT(w != (size_t)-1);
  out[w] = '\0';
}

static void test_stop_and_final(void) {
  sl_guardset_t *gs = build("{\"stop\":{\"strings\":[\"STOP\"]}}");
  ASSERT_NOT_NULL(gs);
  const char *cs[] = {"END!"};
  size_t cl[] = {4};
  for (size_t piece = 1; piece <= 6; piece++) {
    sl_guard_t g;
    char err[128];
    ASSERT_EQ(sl_guard_init(&g, gs, cs, cl, 1, err, sizeof(err)), 0);
    feed(&g, SL_CH_CONTENT, "one ST", piece);
    /* "ST" could begin "STOP": only "one " is final. */
    ASSERT_EQ(sl_guard_final(&g, SL_CH_CONTENT), 4);
    ASSERT_EQ(g.fired, 0);
    feed(&g, SL_CH_CONTENT, "ORY EN", piece);
    ASSERT_EQ(sl_guard_final(&g, SL_CH_CONTENT), 10); /* "EN" may begin the client's "END!" */
    feed(&g, SL_CH_CONTENT, "D! more", piece);
    ASSERT_EQ(g.fired, 1);
    ASSERT_EQ(g.verdict.kind, SL_GUARD_STOP);
    ASSERT_EQ(g.stop_at, 10);
    sl_guard_free(&g);
  }
  /* A client stop out of bounds. */
  sl_guard_t g;
  char err[128];
  const char *bad[] = {""};
  size_t bl[] = {0};
  ASSERT_EQ(sl_guard_init(&g, gs, bad, bl, 1, err, sizeof(err)), SL_EINVAL);
  sl_guard_free(&g);
  sl_guardset_free(gs);
}

static void test_masks_across_pieces(void) {
  sl_guardset_t *gs = build("{\"redact\":{\"literals\":[\"hunter2\"],\"classes\":[\"openai_key\"],\"mask\":\"#\"}}");
  ASSERT_NOT_NULL(gs);
  const char *text = "pw hunter2 key sk-abcdefghijklmnopqrstuv ok hunter2";
  for (size_t piece = 1; piece <= 9; piece++) {
    sl_guard_t g;
    char err[128], out[256];
    ASSERT_EQ(sl_guard_init(&g, gs, NULL, NULL, 0, err, sizeof(err)), 0);
    feed(&g, SL_CH_CONTENT, text, piece);
    /* "hunter2" at the very end could still be followed by more: the
     * literal matched, but nothing after it is final beyond the key... */
    sl_guard_end_text(&g);
    ASSERT_EQ(sl_guard_final(&g, SL_CH_CONTENT), strlen(text));
    render(&g, SL_CH_CONTENT, text, out, sizeof(out));
    ASSERT_STR_EQ(out, "pw # key # ok #");
    ASSERT_EQ(g.fired, 0);
    sl_guard_free(&g);
  }
  sl_guardset_free(gs);
  /* end instead of replace: a verdict naming where the secret starts. */
  gs = build("{\"redact\":{\"literals\":[\"hunter2\"],\"action\":\"end\"}}");
  ASSERT_NOT_NULL(gs);
  sl_guard_t g;
  char err[128];
  ASSERT_EQ(sl_guard_init(&g, gs, NULL, NULL, 0, err, sizeof(err)), 0);
  feed(&g, SL_CH_REASONING, "think hunter2", 3);
  ASSERT_EQ(g.fired, 1);
  ASSERT_EQ(g.verdict.kind, SL_GUARD_REDACT);
  ASSERT_EQ(g.verdict.ch, SL_CH_REASONING);
  ASSERT_EQ(g.verdict.at, 6);
  sl_guard_free(&g);
  sl_guardset_free(gs);
}

static void test_budget_loop_ltl(void) {
  sl_guardset_t *gs = build("{\"budget\":{\"max_completion_tokens\":5}}");
  ASSERT_NOT_NULL(gs);
  sl_guard_t g;
  char err[128];
  ASSERT_EQ(sl_guard_init(&g, gs, NULL, NULL, 0, err, sizeof(err)), 0);
  for (int i = 0; i < 4; i++) ASSERT_EQ(sl_guard_step(&g, SL_GSTEP_TEXT, NULL, 0, (uint32_t)i), 0);
  ASSERT_EQ(sl_guard_step(&g, SL_GSTEP_TEXT, NULL, 0, 9), 1);
  ASSERT_EQ(g.verdict.kind, SL_GUARD_BUDGET);
  sl_guard_free(&g);
  sl_guardset_free(gs);

  /* A period-2 loop of token ids after 10 distinct ones: found within
   * repeats(2) * 2 = max(4, 16) * 2 = 32 tokens of its start, checked
   * every token here ("batch": 1). */
  gs = build("{\"loop\":{\"batch\":1}}");
  ASSERT_NOT_NULL(gs);
  ASSERT_EQ(sl_guard_init(&g, gs, NULL, NULL, 0, err, sizeof(err)), 0);
  int fired_at = -1;
  for (int i = 0; i < 200 && fired_at < 0; i++) {
    int32_t id = i < 10 ? 1000 + i : (i % 2 ? 7 : 8);
    if (sl_guard_step(&g, SL_GSTEP_TEXT, &id, 1, 0)) fired_at = i;
  }
  ASSERT_GE(fired_at, 10);
  ASSERT_LE(fired_at, 10 + 32);
  ASSERT_EQ(g.verdict.kind, SL_GUARD_LOOP);
  int exact = fired_at;
  sl_guard_free(&g);
  sl_guardset_free(gs);
  /* A short answer never makes the detector: no loop can span fewer than
   * min_length (32) tokens. */
  gs = build("{\"loop\":{}}");
  ASSERT_NOT_NULL(gs);
  ASSERT_EQ(sl_guard_init(&g, gs, NULL, NULL, 0, err, sizeof(err)), 0);
  for (int i = 0; i < 31; i++) {
    int32_t id = 500 + i;
    ASSERT_EQ(sl_guard_step(&g, SL_GSTEP_TEXT, &id, 1, 0), 0);
  }
  ASSERT(g.loops == NULL);
  int32_t id32 = 9999;
  ASSERT_EQ(sl_guard_step(&g, SL_GSTEP_TEXT, &id32, 1, 0), 0);
  ASSERT(g.loops != NULL);
  sl_guard_free(&g);
  sl_guardset_free(gs);
  /* With the default batch of 8 the same loop fires at the end of the
   * batch that holds that token, never earlier and at most 7 later. */
  gs = build("{\"loop\":{}}");
  ASSERT_NOT_NULL(gs);
  ASSERT_EQ(sl_guard_init(&g, gs, NULL, NULL, 0, err, sizeof(err)), 0);
  fired_at = -1;
  for (int i = 0; i < 200 && fired_at < 0; i++) {
    int32_t id = i < 10 ? 1000 + i : (i % 2 ? 7 : 8);
    if (sl_guard_step(&g, SL_GSTEP_TEXT, &id, 1, 0)) fired_at = i;
  }
  ASSERT_GE(fired_at, exact);
  ASSERT_LE(fired_at, exact + 7);
  ASSERT_EQ((fired_at + 1) % 8, 0);
  sl_guard_free(&g);
  sl_guardset_free(gs);

  /* LTL: a pattern then a tool call; the timer's gap; the end's verdict. */
  gs = build("{\"ltl\":[{\"name\":\"p\",\"formula\":\"G (refusal -> G !tool_call)\","
             "\"patterns\":{\"refusal\":\"I cannot\"}},"
             "{\"name\":\"q\",\"formula\":\"G !gap\",\"gap_ms\":100,\"action\":\"annotate\"},"
             "{\"name\":\"r\",\"formula\":\"F finish\"}]}");
  ASSERT_NOT_NULL(gs);
  ASSERT_EQ(sl_guard_init(&g, gs, NULL, NULL, 0, err, sizeof(err)), 0);
  ASSERT_EQ(sl_guard_tick_ms(&g, 1), 100);
  ASSERT_EQ(sl_guard_tick(&g, 50, 1), 0);
  ASSERT_EQ(g.annotations, 0);
  ASSERT_EQ(sl_guard_tick(&g, 150, 1), 0); /* annotate: no terminal verdict */
  ASSERT_EQ(g.annotations, 1);
  ASSERT_STR_EQ(g.note.name, "ltl:q");
  feed(&g, SL_CH_CONTENT, "I can", 2);
  ASSERT_EQ(sl_guard_step(&g, SL_GSTEP_TEXT, NULL, 0, 1), 0);
  feed(&g, SL_CH_CONTENT, "not help", 2);
  ASSERT_EQ(sl_guard_step(&g, SL_GSTEP_TEXT, NULL, 0, 2), 0);
  ASSERT_EQ(sl_guard_step(&g, SL_GSTEP_TOOL, NULL, 0, 3), 1);
  ASSERT_STR_EQ(g.verdict.name, "ltl:p");
  sl_guard_free(&g);
  ASSERT_EQ(sl_guard_init(&g, gs, NULL, NULL, 0, err, sizeof(err)), 0);
  ASSERT_EQ(sl_guard_step(&g, SL_GSTEP_TEXT, NULL, 0, 1), 0);
  ASSERT_EQ(sl_guard_end_text(&g), 1); /* "F finish" never held */
  ASSERT_STR_EQ(g.verdict.name, "ltl:r");
  sl_guard_free(&g);
  sl_guardset_free(gs);
}

static void test_config_errors(void) {
  static const struct {
    const char *json, *want;
  } cases[] = {
      {"{\"ltl\":[{\"name\":\"x\",\"formula\":\"G (a\"}]}", "guards.ltl[0].formula: column"},
      {"{\"ltl\":[{\"name\":\"x\",\"formula\":\"G p\",\"patterns\":{\"q\":\"z\"}}]}", "the formula does not use \"q\""},
      {"{\"ltl\":[{\"name\":\"x\",\"formula\":\"G p\",\"patterns\":{\"text\":\"z\"}}]}", "built-in proposition"},
      {"{\"ltl\":[{\"name\":\"x\",\"formula\":\"G !ttft\"}]}", "ttft_ms: required"},
      {"{\"ltl\":[{\"name\":\"x\",\"formula\":\"G !text\"},{\"name\":\"x\",\"formula\":\"G !text\"}]}", "used twice"},
      {"{\"loop\":{\"window\":16}}", "guards.loop: inconsistent settings"},
      {"{\"redact\":{\"mask\":7}}", "guards.redact.mask: expected a string"},
      {"{\"stop\":{\"strings\":\"x\"}}", "guards.stop.strings: expected an array"},
      {"{\"budget\":{}}", "guards.budget.max_completion_tokens: required"},
      {"[]", "guards: expected an object"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sl_guardset_t *gs = NULL;
    char err[256] = "";
    ASSERT_EQ(sl_guardset_build_json(cases[i].json, "guards", NULL, &gs, err, sizeof(err)), SL_EINVAL);
    ASSERT(gs == NULL);
    if (strstr(err, cases[i].want) == NULL) fprintf(stderr, "  %s: got \"%s\"\n", cases[i].json, err);
    ASSERT(strstr(err, cases[i].want) != NULL);
  }
}


/* A pipeline's replacements: their own text, never merged with a
 * neighbour, refused over an earlier one, overruled by a secret's mask. */
static void test_replacements(void) {
  sl_guardset_t *gs = build("{\"redact\":{\"literals\":[\"hunter2\"],\"mask\":\"[M]\"}}");
  ASSERT_NOT_NULL(gs);
  sl_guard_t g;
  char err[128], out[256];
  ASSERT_EQ(sl_guard_init(&g, gs, NULL, NULL, 0, err, sizeof(err)), 0);
  const char *text = "hello world, pass hunter2 ok";
  feed(&g, SL_CH_CONTENT, text, 5);
  ASSERT_EQ(sl_guard_replace(&g, SL_CH_CONTENT, 0, 5, "HI", 2), 0);
  ASSERT_EQ(sl_guard_replace(&g, SL_CH_CONTENT, 5, 11, "-there", 6), 0); /* touches, stays apart */
  ASSERT_EQ(sl_guard_replace(&g, SL_CH_CONTENT, 3, 8, "x", 1), SL_EINVAL);  /* overlaps both */
  ASSERT_EQ(sl_guard_replace(&g, SL_CH_CONTENT, 7, 7, "x", 1), SL_EINVAL);  /* empty */
  ASSERT_EQ(sl_guard_replace(&g, SL_CH_CONTENT, 17, 20, "", 0), 0);         /* a deletion under the secret */
  sl_guard_end_text(&g);
  render(&g, SL_CH_CONTENT, text, out, sizeof(out));
  ASSERT_STR_EQ(out, "HI-there, pass[M] ok");
  ASSERT(sl_guard_masked(&g, SL_CH_CONTENT, 0, 1));
  sl_guard_forget(&g, SL_CH_CONTENT, 11); /* frees the two replacements' text */
  ASSERT(!sl_guard_masked(&g, SL_CH_CONTENT, 0, 11));
  sl_guard_free(&g);
  sl_guardset_free(gs);
}

/* A tenant's reservation caps the budget: the set's action when it has a
 * budget guard, end when it has none; it never raises the set's. */
static void test_budget_cap(void) {
  sl_guardset_t *none = build("{}");
  sl_guardset_t *own = build("{\"budget\":{\"max_completion_tokens\":2,\"action\":\"cancel\"}}");
  ASSERT_NOT_NULL(none);
  ASSERT_NOT_NULL(own);
  sl_guard_t g;
  char err[128];
  ASSERT_EQ(sl_guard_init(&g, none, NULL, NULL, 0, err, sizeof(err)), 0);
  sl_guard_cap_budget(&g, 3);
  ASSERT_EQ(sl_guard_step(&g, SL_GSTEP_TEXT, NULL, 0, 1), 0);
  ASSERT_EQ(sl_guard_step(&g, SL_GSTEP_TEXT, NULL, 0, 2), 0);
  ASSERT_EQ(sl_guard_step(&g, SL_GSTEP_TEXT, NULL, 0, 3), 1);
  ASSERT_EQ(g.verdict.kind, SL_GUARD_BUDGET);
  ASSERT_EQ(g.verdict.action, SL_GACT_END);
  sl_guard_free(&g);
  ASSERT_EQ(sl_guard_init(&g, own, NULL, NULL, 0, err, sizeof(err)), 0);
  sl_guard_cap_budget(&g, 10); /* higher than the operator's: no effect */
  ASSERT_EQ(g.budget, 2);
  ASSERT_EQ(sl_guard_step(&g, SL_GSTEP_TEXT, NULL, 0, 1), 0);
  ASSERT_EQ(sl_guard_step(&g, SL_GSTEP_TEXT, NULL, 0, 2), 1);
  ASSERT_EQ(g.verdict.action, SL_GACT_CANCEL);
  sl_guard_free(&g);
  sl_guardset_free(none);
  sl_guardset_free(own);
}

/* A tenant's guards merged into a pool's: added, never weakened. */
static void test_merge(void) {
  cJSON *base = cJSON_Parse("{\"stop\":{\"strings\":[\"a\"],\"action\":\"cancel\"},"
                            "\"redact\":{\"literals\":[\"k1\"],\"mask\":\"[P]\"},\"budget\":{\"max_completion_tokens\":50}}");
  cJSON *add = cJSON_Parse("{\"stop\":{\"strings\":[\"b\",\"a\"],\"action\":\"annotate\",\"client\":false},"
                           "\"redact\":{\"literals\":[\"k2\"],\"classes\":[\"email\"],\"mask\":\"[T]\"},"
                           "\"budget\":{\"max_completion_tokens\":80},\"loop\":{}}");
  cJSON *m = sl_guards_merge(base, add);
  char *txt = cJSON_PrintUnformatted(m);
  ASSERT_STR_EQ(txt, "{\"stop\":{\"strings\":[\"a\",\"b\"],\"action\":\"cancel\"},"
                     "\"redact\":{\"literals\":[\"k1\",\"k2\"],\"mask\":\"[P]\",\"classes\":[\"email\"]},"
                     "\"budget\":{\"max_completion_tokens\":50},\"loop\":{}}");
  cJSON_free(txt);
  sl_guardset_t *gs = NULL;
  char err[256];
  ASSERT_EQ(sl_guardset_build(m, "merged", NULL, &gs, err, sizeof(err)), 0);
  ASSERT_EQ(gs->stop_action, SL_GACT_CANCEL);
  ASSERT(gs->client_stop);
  sl_guardset_free(gs);
  cJSON_Delete(m);
  /* A lower budget from the tenant wins; a pool without guards takes the
   * tenant's whole. */
  cJSON *low = cJSON_Parse("{\"budget\":{\"max_completion_tokens\":7}}");
  m = sl_guards_merge(base, low);
  ASSERT_EQ((int)cJSON_GetObjectItem(cJSON_GetObjectItem(m, "budget"), "max_completion_tokens")->valuedouble, 7);
  cJSON_Delete(m);
  m = sl_guards_merge(NULL, add);
  txt = cJSON_PrintUnformatted(m);
  char *want = cJSON_PrintUnformatted(add);
  ASSERT_STR_EQ(txt, want);
  cJSON_free(txt);
  cJSON_free(want);
  cJSON_Delete(m);
  cJSON_Delete(low);
  cJSON_Delete(base);
  cJSON_Delete(add);
}

int main(void) {
  SL_RUN(test_stop_and_final);
  SL_RUN(test_masks_across_pieces);
  SL_RUN(test_budget_loop_ltl);
  SL_RUN(test_config_errors);
  SL_RUN(test_replacements);
  SL_RUN(test_budget_cap);
  SL_RUN(test_merge);
  return SL_TEST_EXIT();
}
