/* Tests for runtime/oai: the scanner on the documented chunk shapes of
 * OpenAI, vLLM, llama.cpp and TGI; strict rejection of invalid JSON;
 * agreement with cJSON on thousands of generated chunks (random field
 * order, escapes, unicode, unknown nested fields) and on mutated ones;
 * usage counts out of range refused, and the usage member's bytes (cut out,
 * the rest is the same object); the JSON string escape/unescape pair;
 * encoder output read back by cJSON; and the request side: the text check
 * of request bodies (UTF-8 in every string, escapes, NUL, the field named;
 * JSON read as cJSON reads it), duplicate keys at any depth, and the prompt
 * size of every content form. */
#include "runtime/upstream/oai.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>

#include "runtime/base/errors.h"
#include "test.h"

/* ---- helpers ---------------------------------------------------------- */

static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}
static int chance(int pct) { return (int)(rnd() % 100) < pct; }

static int scan(const char *s, sl_event_t *ev) { return sl_oai_scan(s, strlen(s), ev); }

/* Unescapes a span into a static NUL-terminated buffer (one of four, so a
 * few can be compared in one expression). */
static const char *U(sl_span_t sp) {
  static char bufs[4][8192];
  static int next;
  char *b = bufs[next++ & 3];
  if (sp.p == NULL) return "(none)";
  size_t n = sl_json_unescape(b, sizeof(bufs[0]) - 1, sp.p, sp.n);
  if (n == (size_t)-1) return "(bad)";
  b[n] = '\0';
  return b;
}

static const char *S(sl_span_t sp) {
  static char bufs[4][512];
  static int next;
  char *b = bufs[next++ & 3];
  if (sp.p == NULL) return "(none)";
  size_t n = sp.n < 511 ? sp.n : 511;
  memcpy(b, sp.p, n);
  b[n] = '\0';
  return b;
}

/* raw with usage_member cut out, into a static buffer. */
static const char *cut_usage(const sl_event_t *ev) {
  static char out[1 << 16];
  if (ev->raw.n >= sizeof(out)) return "(too long)";
  size_t head = (size_t)(ev->usage_member.p - ev->raw.p);
  memcpy(out, ev->raw.p, head);
  size_t tail = ev->raw.n - head - ev->usage_member.n;
  memcpy(out + head, ev->usage_member.p + ev->usage_member.n, tail);
  out[head + tail] = '\0';
  return out;
}

/* ---- documented shapes ------------------------------------------------ */

static void test_openai_chat_chunks(void) {
  sl_event_t ev;
  const char *role =
      "{\"id\":\"chatcmpl-Bwkw\",\"object\":\"chat.completion.chunk\",\"created\":1753343173,"
      "\"model\":\"gpt-4.1-2025-04-14\",\"service_tier\":\"default\",\"system_fingerprint\":"
      "\"fp_b3f1157249\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":"
      "\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}";
  ASSERT_EQ(scan(role, &ev), 0);
  ASSERT_EQ(ev.kind, SL_EV_CHUNK);
  ASSERT_STR_EQ(S(ev.id), "chatcmpl-Bwkw");
  ASSERT_STR_EQ(S(ev.object), "chat.completion.chunk");
  ASSERT_STR_EQ(S(ev.model), "gpt-4.1-2025-04-14");
  ASSERT_EQ(ev.has_created, 1);
  ASSERT_EQ(ev.created, 1753343173);
  ASSERT_EQ(ev.n_choices, 1);
  ASSERT_EQ(ev.choice_index, 0);
  ASSERT_EQ(ev.has_role, 1);
  ASSERT_STR_EQ(S(ev.role), "assistant");
  ASSERT_EQ(ev.has_text, 1);
  ASSERT_EQ(ev.text.n, 0);
  ASSERT_EQ(ev.has_logprobs, 0);
  ASSERT_EQ(ev.finish, SL_FINISH_NONE);
  ASSERT_NULL(ev.finish_raw.p);
  ASSERT_EQ(ev.has_usage, 0);
  ASSERT(ev.raw.p == role);
  ASSERT_EQ(ev.raw.n, strlen(role));

  ASSERT_EQ(scan("{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"The \\\"q\\\" \\\\ "
                 "\\n caf\\u00e9 \\ud83d\\ude00\"},\"logprobs\":null,\"finish_reason\":null}]}",
                 &ev),
            0);
  ASSERT_EQ(ev.has_role, 0);
  ASSERT_STR_EQ(U(ev.text), "The \"q\" \\ \n caf\xc3\xa9 \xf0\x9f\x98\x80");

  ASSERT_EQ(scan("{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                 "\"finish_reason\":\"stop\"}],\"usage\":null}",
                 &ev),
            0);
  ASSERT_EQ(ev.has_text, 0);
  ASSERT_EQ(ev.finish, SL_FINISH_STOP);
  ASSERT_STR_EQ(S(ev.finish_raw), "stop");

  ASSERT_EQ(scan("{\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":60,\"completion_tokens\":"
                 "15,\"total_tokens\":75,\"prompt_tokens_details\":{\"cached_tokens\":0,"
                 "\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,"
                 "\"audio_tokens\":0,\"accepted_prediction_tokens\":0,"
                 "\"rejected_prediction_tokens\":0}}}",
                 &ev),
            0);
  ASSERT_EQ(ev.n_choices, 0);
  ASSERT_EQ(ev.has_usage, 1);
  ASSERT_EQ(ev.prompt_tokens, 60);
  ASSERT_EQ(ev.completion_tokens, 15);
  ASSERT_EQ(ev.total_tokens, 75);

  ASSERT_EQ(scan("[DONE]", &ev), 0);
  ASSERT_EQ(ev.kind, SL_EV_DONE);
  ASSERT_EQ(scan(" [DONE]\n", &ev), 0);
  ASSERT_EQ(ev.kind, SL_EV_DONE);
  ASSERT_EQ(scan("[DONE]x", &ev), SL_EPARSE);
  ASSERT_EQ(scan("[DONE", &ev), SL_EPARSE);
}

static void test_logprobs_and_completions(void) {
  sl_event_t ev;
  /* Chat logprobs: nested arrays, bytes, -9999.0, skipped but flagged. */
  ASSERT_EQ(scan("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"He\"},\"logprobs\":{\"content\":"
                 "[{\"token\":\"He\",\"logprob\":-0.0123,\"bytes\":[72,101],\"top_logprobs\":[{"
                 "\"token\":\"He\",\"logprob\":-0.0123,\"bytes\":[72,101]},{\"token\":\"\\u00e9\","
                 "\"logprob\":-9999.0,\"bytes\":null}]}],\"refusal\":null},\"finish_reason\":null}]}",
                 &ev),
            0);
  ASSERT_EQ(ev.has_logprobs, 1);
  ASSERT_STR_EQ(U(ev.text), "He");
  /* Legacy completions. */
  ASSERT_EQ(scan("{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"choices\":[{"
                 "\"text\":\"This\",\"index\":0,\"logprobs\":{\"tokens\":[\"This\"],"
                 "\"token_logprobs\":[-0.5],\"top_logprobs\":[{\"This\":-0.5}],\"text_offset\":[0]},"
                 "\"finish_reason\":\"length\"}],\"model\":\"davinci\"}",
                 &ev),
            0);
  ASSERT_EQ(ev.has_text, 1);
  ASSERT_STR_EQ(U(ev.text), "This");
  ASSERT_EQ(ev.finish, SL_FINISH_LENGTH);
  ASSERT_EQ(ev.has_logprobs, 1);
  ASSERT_STR_EQ(S(ev.model), "davinci");
}

static void test_engine_variants(void) {
  sl_event_t ev;
  /* llama.cpp: content null on the role chunk, timings on the last chunk. */
  ASSERT_EQ(scan("{\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"role\":\"assistant\","
                 "\"content\":null}}],\"created\":1,\"id\":\"chatcmpl-x\",\"model\":\"m\","
                 "\"system_fingerprint\":\"b1-abc\",\"object\":\"chat.completion.chunk\"}",
                 &ev),
            0);
  ASSERT_EQ(ev.has_role, 1);
  ASSERT_EQ(ev.has_text, 0);
  ASSERT_EQ(scan("{\"choices\":[],\"usage\":{\"completion_tokens\":9,\"prompt_tokens\":4,"
                 "\"total_tokens\":13,\"prompt_tokens_details\":{\"cached_tokens\":0}},"
                 "\"timings\":{\"prompt_n\":4,\"prompt_ms\":1.5,\"predicted_per_second\":88.2}}",
                 &ev),
            0);
  ASSERT_EQ(ev.total_tokens, 13);
  /* TGI: empty id, role on every delta, stop_sequence mapped to stop. */
  ASSERT_EQ(scan("{\"object\":\"chat.completion.chunk\",\"id\":\"\",\"created\":1,\"model\":\"m\","
                 "\"system_fingerprint\":\"3.0-native\",\"choices\":[{\"index\":0,\"delta\":{"
                 "\"role\":\"assistant\",\"content\":\"x\"},\"logprobs\":null,\"finish_reason\":"
                 "\"stop_sequence\"}],\"usage\":null}",
                 &ev),
            0);
  ASSERT_NOT_NULL(ev.id.p);
  ASSERT_EQ(ev.id.n, 0);
  ASSERT_EQ(ev.finish, SL_FINISH_STOP);
  ASSERT_STR_EQ(S(ev.finish_raw), "stop_sequence");
  ASSERT_EQ(scan("{\"choices\":[{\"delta\":{},\"finish_reason\":\"eos_token\"}]}", &ev), 0);
  ASSERT_EQ(ev.finish, SL_FINISH_STOP);
  /* vLLM: abort is passed through as OTHER; reasoning, its old name, and a
   * continuous usage object next to the choice. */
  ASSERT_EQ(scan("{\"choices\":[{\"index\":1,\"delta\":{\"reasoning_content\":\"hm\"},"
                 "\"finish_reason\":\"abort\",\"stop_reason\":null}],\"usage\":{"
                 "\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}",
                 &ev),
            0);
  ASSERT_EQ(ev.choice_index, 1);
  ASSERT_EQ(ev.finish, SL_FINISH_OTHER);
  ASSERT_STR_EQ(S(ev.finish_raw), "abort");
  ASSERT_EQ(ev.has_reasoning, 1);
  ASSERT_STR_EQ(S(ev.reasoning), "hm");
  ASSERT_EQ(ev.has_usage, 1);
  ASSERT_EQ(scan("{\"choices\":[{\"delta\":{\"reasoning_content\":\"old\",\"reasoning\":\"new\"}}]}",
                 &ev),
            0);
  ASSERT_STR_EQ(S(ev.reasoning), "new");
  const char *fins[] = {"stop", "length", "tool_calls", "content_filter", "function_call", "repetition"};
  sl_finish_t want[] = {SL_FINISH_STOP, SL_FINISH_LENGTH, SL_FINISH_TOOL_CALLS,
                        SL_FINISH_CONTENT_FILTER, SL_FINISH_FUNCTION_CALL, SL_FINISH_OTHER};
  for (int i = 0; i < 6; i++) {
    char js[128];
    snprintf(js, sizeof(js), "{\"choices\":[{\"finish_reason\":\"%s\"}]}", fins[i]);
    ASSERT_EQ(scan(js, &ev), 0);
    ASSERT_EQ(ev.finish, want[i]);
  }
  /* No choices key at all, and choices that is not an array. */
  ASSERT_EQ(scan("{}", &ev), 0);
  ASSERT_EQ(ev.n_choices, -1);
  ASSERT_EQ(scan("{\"choices\":null}", &ev), 0);
  ASSERT_EQ(ev.n_choices, -1);
  ASSERT_EQ(scan("{\"choices\":[null,{\"delta\":{\"content\":\"second\"}}]}", &ev), 0);
  ASSERT_EQ(ev.n_choices, 2);
  ASSERT_EQ(ev.has_text, 0); /* only the first choice is read */
}

static void test_tool_calls(void) {
  sl_event_t ev;
  ASSERT_EQ(scan("{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,"
                 "\"tool_calls\":[{\"index\":0,\"id\":\"call_abc\",\"type\":\"function\","
                 "\"function\":{\"name\":\"read_file\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}",
                 &ev),
            0);
  ASSERT_EQ(ev.n_tool_calls, 1);
  ASSERT_EQ(ev.tool_calls[0].index, 0);
  ASSERT_EQ(ev.tool_calls[0].has_id, 1);
  ASSERT_STR_EQ(S(ev.tool_calls[0].id), "call_abc");
  ASSERT_STR_EQ(S(ev.tool_calls[0].type), "function");
  ASSERT_EQ(ev.tool_calls[0].has_name, 1);
  ASSERT_STR_EQ(S(ev.tool_calls[0].name), "read_file");
  ASSERT_EQ(ev.tool_calls[0].has_arguments, 1);
  ASSERT_EQ(ev.tool_calls[0].arguments.n, 0);
  ASSERT_EQ(scan("{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{"
                 "\"arguments\":\"{\\\"\"}}]}}]}",
                 &ev),
            0);
  ASSERT_EQ(ev.tool_calls[0].has_id, 0);
  ASSERT_EQ(ev.tool_calls[0].has_name, 0);
  ASSERT_STR_EQ(U(ev.tool_calls[0].arguments), "{\"");
  /* TGI: name null on later deltas. */
  ASSERT_EQ(scan("{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"tool_calls\":[{\"index\":0,"
                 "\"id\":\"0\",\"type\":\"function\",\"function\":{\"name\":null,\"arguments\":"
                 "\"\\\"x\\\"\"}}]}}]}",
                 &ev),
            0);
  ASSERT_EQ(ev.tool_calls[0].has_name, 0);
  ASSERT_STR_EQ(U(ev.tool_calls[0].arguments), "\"x\"");
  /* Ten tool calls: eight kept, two counted; index defaults to position. */
  char js[2048] = "{\"choices\":[{\"delta\":{\"tool_calls\":[";
  for (int i = 0; i < 10; i++) {
    char one[96];
    snprintf(one, sizeof(one), "%s{\"id\":\"c%d\",\"function\":{\"name\":\"f%d\"}}", i ? "," : "", i, i);
    strcat(js, one);
  }
  strcat(js, "]}}]}");
  ASSERT_EQ(scan(js, &ev), 0);
  ASSERT_EQ(ev.n_tool_calls, 8);
  ASSERT_EQ(ev.tool_calls_dropped, 2);
  ASSERT_EQ(ev.tool_calls[7].index, 7);
  ASSERT_STR_EQ(S(ev.tool_calls[7].name), "f7");
}

static void test_errors(void) {
  sl_event_t ev;
  /* OpenAI mid-stream (with the spaces the recording has). */
  ASSERT_EQ(scan("{\"error\": {\"message\": \"The server had an error while processing your request. "
                 "Sorry about that!\", \"type\": \"server_error\"}}",
                 &ev),
            0);
  ASSERT_EQ(ev.kind, SL_EV_ERROR);
  ASSERT_STR_EQ(U(ev.err_message),
                "The server had an error while processing your request. Sorry about that!");
  ASSERT_STR_EQ(S(ev.err_type), "server_error");
  ASSERT_NULL(ev.err_code.p);
  /* llama.cpp: numeric code; vLLM: string type, numeric code. */
  ASSERT_EQ(scan("{\"error\":{\"code\":500,\"message\":\"boom\",\"type\":\"server_error\"}}", &ev), 0);
  ASSERT_STR_EQ(S(ev.err_code), "500");
  ASSERT_EQ(scan("{\"error\":{\"message\":\"m\",\"type\":\"BadRequestError\",\"param\":null,"
                 "\"code\":\"context_length_exceeded\"}}",
                 &ev),
            0);
  ASSERT_STR_EQ(S(ev.err_code), "context_length_exceeded");
  /* TGI chat: http_status_code stands in for the code. */
  ASSERT_EQ(scan("{\"error\":{\"message\":\"Input validation error\",\"http_status_code\":422}}", &ev), 0);
  ASSERT_EQ(ev.kind, SL_EV_ERROR);
  ASSERT_STR_EQ(S(ev.err_code), "422");
  /* TGI native / Ollama: a string. */
  ASSERT_EQ(scan("{\"error\":\"Input validation error: `inputs` must have less than 1024 tokens\","
                 "\"error_type\":\"validation\"}",
                 &ev),
            0);
  ASSERT_EQ(ev.kind, SL_EV_ERROR);
  ASSERT_STR_EQ(U(ev.err_message), "Input validation error: `inputs` must have less than 1024 tokens");
  ASSERT_STR_EQ(S(ev.err_type), "validation");
  /* vLLM before v0.10.1: the flat form. */
  ASSERT_EQ(scan("{\"object\":\"error\",\"message\":\"bad\",\"type\":\"BadRequestError\",\"param\":null,"
                 "\"code\":400}",
                 &ev),
            0);
  ASSERT_EQ(ev.kind, SL_EV_ERROR);
  ASSERT_STR_EQ(S(ev.err_message), "bad");
  ASSERT_STR_EQ(S(ev.err_code), "400");
  /* Falsy errors are ordinary chunks; truthy odd ones are errors. */
  const char *falsy[] = {"{\"error\":null}", "{\"error\":false}", "{\"error\":\"\"}",
                         "{\"error\":0}", "{\"error\":-0.0e3}"};
  for (int i = 0; i < 5; i++) {
    ASSERT_EQ(scan(falsy[i], &ev), 0);
    ASSERT_EQ(ev.kind, SL_EV_CHUNK);
  }
  const char *truthy[] = {"{\"error\":{}}", "{\"error\":[]}", "{\"error\":true}", "{\"error\":0.5}",
                          "{\"error\":\"x\"}"};
  for (int i = 0; i < 5; i++) {
    ASSERT_EQ(scan(truthy[i], &ev), 0);
    ASSERT_EQ(ev.kind, SL_EV_ERROR);
  }
}

static void test_keys_numbers_duplicates(void) {
  sl_event_t ev;
  /* Escaped keys mean the same key. */
  ASSERT_EQ(scan("{\"ch\\u006fices\":[{\"delta\":{\"conten\\u0074\":\"k\"},\"finish\\u005freason\":"
                 "\"\\u0073top\"}]}",
                 &ev),
            0);
  ASSERT_STR_EQ(U(ev.text), "k");
  ASSERT_EQ(ev.finish, SL_FINISH_STOP);
  /* The last duplicate wins, including a later null. */
  ASSERT_EQ(scan("{\"choices\":[{\"delta\":{\"content\":\"a\",\"content\":null}}]}", &ev), 0);
  ASSERT_EQ(ev.has_text, 0);
  ASSERT_EQ(scan("{\"usage\":{\"total_tokens\":5},\"usage\":null}", &ev), 0);
  ASSERT_EQ(ev.has_usage, 0);
  ASSERT_EQ(scan("{\"error\":{\"message\":\"x\"},\"error\":null}", &ev), 0);
  ASSERT_EQ(ev.kind, SL_EV_CHUNK);
  /* Numbers: large, fraction, exponent. */
  ASSERT_EQ(scan("{\"created\":9223372036854775807,\"usage\":{\"prompt_tokens\":1e3,"
                 "\"completion_tokens\":12.9,\"total_tokens\":1012}}",
                 &ev),
            0);
  ASSERT_EQ(ev.created, INT64_MAX);
  ASSERT_EQ(ev.has_usage, 1);
  ASSERT_EQ(ev.prompt_tokens, 1000);
  ASSERT_EQ(ev.completion_tokens, 12);
  ASSERT_EQ(ev.total_tokens, 1012);
  ASSERT_EQ(scan("{\"created\":99999999999999999999}", &ev), 0);
  ASSERT_EQ(ev.created, INT64_MAX);
  ASSERT_EQ(scan("{\"created\":\"soon\"}", &ev), 0);
  ASSERT_EQ(ev.has_created, 0);
}

static void test_invalid_json(void) {
  sl_event_t ev;
  const char *bad[] = {
      "", " ", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{\"a\":1 \"b\":2}",
      "{\"a\":[1,]}", "{\"a\":[,1]}", "{\"a\":[1 2]}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}",
      "{\"a\":-}", "{\"a\":1e}", "{\"a\":+1}", "{\"a\":0x1}", "{\"a\":NaN}", "{\"a\":tru}",
      "{\"a\":nul}", "{\"a\":True}", "{\"a\":\"x}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}",
      "{\"a\":\"\\u12g4\"}", "{\"a\":\"tab\there\"}", "{\"a\":\"nl\nhere\"}", "{'a':1}",
      "{a:1}", "{\"a\":1}}", "{\"a\":1} x", "{\"a\":1}{}", "[1]", "\"s\"", "42", "null",
      "{\"a\":[}", "{\"a\":{]}", "{\"choices\":[{\"delta\":{\"content\":\"x\"}]}",
      "{\"choices\":[{\"delta\":{\"content\":\"x\"}}]", "\x01{}", "{}\x0b", "{\"a\"\x0c:1}",
      "{\"a\":1,\"b\"", "{\"a\":\"\\", "{\"a\":\"\\u",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int r = scan(bad[i], &ev);
    if (r != SL_EPARSE) fprintf(stderr, "accepted: %s\n", bad[i]);
    ASSERT_EQ(r, SL_EPARSE);
  }
  /* Embedded NUL inside a string is a control character. */
  ASSERT_EQ(sl_oai_scan("{\"a\":\"x\0y\"}", 11, &ev), SL_EPARSE);
  /* Depth: 100 levels are fine, 200 are refused. */
  char deep[512];
  size_t n = 0;
  deep[n++] = '{';
  memcpy(deep + n, "\"a\":", 4);
  n += 4;
  for (int i = 0; i < 100; i++) deep[n++] = '[';
  for (int i = 0; i < 100; i++) deep[n++] = ']';
  deep[n++] = '}';
  ASSERT_EQ(sl_oai_scan(deep, n, &ev), 0);
  n = 5;
  for (int i = 0; i < 200; i++) deep[n++] = '[';
  ASSERT_EQ(sl_oai_scan(deep, n, &ev), SL_EPARSE);
  const char *good[] = {
      "{}", " {} ", "\t{\r\n}\n", "{\"a\":[]}", "{\"a\":{}}", "{\"a\":-0}", "{\"a\":0.5e-3}",
      "{\"a\":1E+2}", "{\"a\":\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"}", "{\"a\":\"\\uD800\"}",
      "{\"a\":[true,false,null,1,\"s\",{\"b\":[]}]}", "{\"\":1}", "{\"a\":\"\x7f\xff\"}",
  };
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    int r = scan(good[i], &ev);
    if (r != 0) fprintf(stderr, "rejected: %s\n", good[i]);
    ASSERT_EQ(r, 0);
  }
}

/* ---- agreement with cJSON --------------------------------------------- */

typedef struct {
  char s[1 << 16];
  size_t n;
} gbuf_t;

static void gput(gbuf_t *b, const char *s, size_t n) {
  if (n > sizeof(b->s) - 1 - b->n) n = sizeof(b->s) - 1 - b->n;
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = '\0';
}
static void gs(gbuf_t *b, const char *s) { gput(b, s, strlen(s)); }
static void gf(gbuf_t *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  gput(b, tmp, (size_t)n);
}
static void gws(gbuf_t *b) {
  static const char w[] = " \t\n\r";
  if (chance(20)) {
    int k = 1 + (int)(rnd() % 3);
    for (int i = 0; i < k; i++) gput(b, &w[rnd() % 4], 1);
  }
}

static void g_hex4(gbuf_t *b, unsigned v) {
  gf(b, chance(50) ? "\\u%04x" : "\\u%04X", v);
}

/* A random valid JSON string (with quotes): ASCII, short escapes, \u
 * escapes of BMP and astral code points, raw UTF-8.  No NUL, no lone
 * surrogates (cJSON refuses those). */
static void g_string(gbuf_t *b, int maxlen) {
  gs(b, "\"");
  int n = (int)(rnd() % (unsigned)(maxlen + 1));
  for (int i = 0; i < n; i++) {
    switch (rnd() % 10) {
      case 0: {
        static const char *esc[] = {"\\\"", "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t"};
        gs(b, esc[rnd() % 8]);
        break;
      }
      case 1: {
        unsigned cp;
        do cp = 1 + (unsigned)(rnd() % 0xFFFF);
        while (cp >= 0xD800 && cp <= 0xDFFF);
        g_hex4(b, cp);
        break;
      }
      case 2: {
        unsigned cp = 0x10000 + (unsigned)(rnd() % 0x100000);
        g_hex4(b, 0xD800 + ((cp - 0x10000) >> 10));
        g_hex4(b, 0xDC00 + ((cp - 0x10000) & 0x3FF));
        break;
      }
      case 3: {
        static const char *raw[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xe4\xb8\xad", "\x7f"};
        gs(b, raw[rnd() % 5]);
        break;
      }
      default: {
        char ch = (char)(' ' + rnd() % 95);
        if (ch == '"' || ch == '\\') ch = 'q';
        gput(b, &ch, 1);
      }
    }
  }
  gs(b, "\"");
}

/* A key, sometimes with one letter written as a \u escape. */
static void g_key(gbuf_t *b, const char *k) {
  gws(b);
  gs(b, "\"");
  size_t n = strlen(k);
  size_t esc = chance(10) ? rnd() % n : n;
  for (size_t i = 0; i < n; i++) {
    if (i == esc) g_hex4(b, (unsigned char)k[i]);
    else gput(b, &k[i], 1);
  }
  gs(b, "\"");
  gws(b);
  gs(b, ":");
  gws(b);
}

static void g_number(gbuf_t *b) {
  switch (rnd() % 4) {
    case 0: gf(b, "%d", (int)(rnd() % 100000)); break;
    case 1: gf(b, "-%d.%d", (int)(rnd() % 1000), (int)(rnd() % 1000)); break;
    case 2: gf(b, "%de%s%d", 1 + (int)(rnd() % 9), chance(50) ? "-" : "+", (int)(rnd() % 20)); break;
    default: gs(b, "-9999.0"); break;
  }
}

static void g_value(gbuf_t *b, int depth) {
  int k = (int)(rnd() % (depth > 3 ? 5 : 7));
  gws(b);
  switch (k) {
    case 0: g_string(b, 12); break;
    case 1: g_number(b); break;
    case 2: gs(b, "true"); break;
    case 3: gs(b, "false"); break;
    case 4: gs(b, "null"); break;
    case 5: {
      int n = (int)(rnd() % 4);
      gs(b, "[");
      for (int i = 0; i < n; i++) {
        if (i) gs(b, ",");
        g_value(b, depth + 1);
      }
      gws(b);
      gs(b, "]");
      break;
    }
    default: {
      int n = (int)(rnd() % 4);
      gs(b, "{");
      for (int i = 0; i < n; i++) {
        char key[16];
        if (i) gs(b, ",");
        snprintf(key, sizeof(key), "u%d_%d", depth, i);
        g_key(b, key);
        g_value(b, depth + 1);
      }
      gws(b);
      gs(b, "}");
    }
  }
  gws(b);
}

static void g_str_or_null(gbuf_t *b) {
  if (chance(20)) gs(b, "null");
  else g_string(b, 16);
}

static void shuffle(int *a, int n) {
  for (int i = n - 1; i > 0; i--) {
    int j = (int)(rnd() % (unsigned)(i + 1));
    int t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

static void g_tool(gbuf_t *b, int pos) {
  int f[5] = {0, 1, 2, 3, 4}, nf = 5, first = 1;
  shuffle(f, nf);
  gs(b, "{");
  for (int i = 0; i < nf; i++) {
    if (f[i] == 0 && chance(80)) { /* index */
      if (!first) gs(b, ",");
      g_key(b, "index");
      gf(b, "%d", chance(80) ? pos : (int)(rnd() % 5));
      first = 0;
    } else if (f[i] == 1 && chance(50)) {
      if (!first) gs(b, ",");
      g_key(b, "id");
      g_str_or_null(b);
      first = 0;
    } else if (f[i] == 2 && chance(50)) {
      if (!first) gs(b, ",");
      g_key(b, "type");
      gs(b, "\"function\"");
      first = 0;
    } else if (f[i] == 3 && chance(90)) {
      if (!first) gs(b, ",");
      g_key(b, "function");
      gs(b, "{");
      int ff = 0;
      if (chance(50)) {
        g_key(b, "name");
        g_str_or_null(b);
        ff = 1;
      }
      if (chance(80)) {
        if (ff) gs(b, ",");
        g_key(b, "arguments");
        g_string(b, 20);
      }
      gs(b, "}");
      first = 0;
    } else if (f[i] == 4 && chance(20)) {
      if (!first) gs(b, ",");
      g_key(b, "extra");
      g_value(b, 2);
      first = 0;
    }
  }
  gs(b, "}");
}

static void g_delta(gbuf_t *b) {
  int f[6] = {0, 1, 2, 3, 4, 5}, first = 1;
  shuffle(f, 6);
  gs(b, "{");
  for (int i = 0; i < 6; i++) {
    const char *key = NULL;
    int which = f[i];
    if (!chance(which == 1 ? 80 : 40)) continue;
    if (!first) gs(b, ",");
    first = 0;
    switch (which) {
      case 0: key = "role"; g_key(b, key); g_str_or_null(b); break;
      case 1: key = "content"; g_key(b, key); g_str_or_null(b); break;
      case 2: key = chance(50) ? "reasoning" : "reasoning_content"; g_key(b, key); g_string(b, 10); break;
      case 3: {
        g_key(b, "tool_calls");
        int n = chance(10) ? 9 + (int)(rnd() % 3) : (int)(rnd() % 3);
        gs(b, "[");
        for (int k = 0; k < n; k++) {
          if (k) gs(b, ",");
          gws(b);
          if (chance(5)) gs(b, "null");
          else g_tool(b, k);
        }
        gs(b, "]");
        break;
      }
      case 4: g_key(b, "refusal"); gs(b, "null"); break;
      default: g_key(b, "x_unknown"); g_value(b, 2); break;
    }
  }
  gs(b, "}");
}

static const char *finish_names[] = {"stop", "length", "tool_calls", "content_filter",
                                     "function_call", "eos_token", "stop_sequence", "abort"};

static void g_choice(gbuf_t *b) {
  int f[6] = {0, 1, 2, 3, 4, 5}, first = 1;
  shuffle(f, 6);
  gs(b, "{");
  for (int i = 0; i < 6; i++) {
    if (!chance(75)) continue;
    if (!first) gs(b, ",");
    first = 0;
    switch (f[i]) {
      case 0: g_key(b, "index"); gf(b, "%d", (int)(rnd() % 3)); break;
      case 1: g_key(b, "delta"); if (chance(90)) g_delta(b); else gs(b, "null"); break;
      case 2: g_key(b, "text"); g_str_or_null(b); break;
      case 3: g_key(b, "logprobs"); if (chance(50)) gs(b, "null"); else g_value(b, 1); break;
      case 4:
        g_key(b, "finish_reason");
        if (chance(50)) gs(b, "null");
        else gf(b, "\"%s\"", finish_names[rnd() % 8]);
        break;
      default: g_key(b, "stop_reason"); g_value(b, 2); break;
    }
  }
  gs(b, "}");
}

static void g_chunk(gbuf_t *b) {
  int f[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, first = 1;
  shuffle(f, 10);
  b->n = 0;
  gws(b);
  gs(b, "{");
  for (int i = 0; i < 10; i++) {
    int which = f[i];
    if (!chance(which == 4 ? 90 : which == 7 ? 8 : 60)) continue;
    if (!first) gs(b, ",");
    first = 0;
    switch (which) {
      case 0: g_key(b, "id"); g_string(b, 20); break;
      case 1: g_key(b, "object"); gs(b, "\"chat.completion.chunk\""); break;
      case 2: g_key(b, "created"); gf(b, "%d", (int)(rnd() % 2000000000)); break;
      case 3: g_key(b, "model"); g_string(b, 12); break;
      case 4: {
        g_key(b, "choices");
        int n = (int)(rnd() % 3);
        gs(b, "[");
        for (int k = 0; k < n; k++) {
          if (k) gs(b, ",");
          gws(b);
          g_choice(b);
          gws(b);
        }
        gs(b, "]");
        break;
      }
      case 5:
        g_key(b, "usage");
        if (chance(40)) {
          gs(b, "null");
        } else {
          int u[4] = {0, 1, 2, 3};
          shuffle(u, 4);
          gs(b, "{");
          for (int k = 0; k < 4; k++) {
            if (k) gs(b, ",");
            static const char *uk[] = {"prompt_tokens", "completion_tokens", "total_tokens",
                                       "prompt_tokens_details"};
            g_key(b, uk[u[k]]);
            if (u[k] == 3) gs(b, "{\"cached_tokens\":0}");
            else gf(b, "%d", (int)(rnd() % 100000));
          }
          gs(b, "}");
        }
        break;
      case 6: g_key(b, "system_fingerprint"); g_str_or_null(b); break;
      case 7:
        g_key(b, "error");
        switch (rnd() % 4) {
          case 0: g_string(b, 20); break;
          case 1: gs(b, "null"); break;
          default:
            gs(b, "{");
            g_key(b, "message");
            g_string(b, 30);
            gs(b, ",");
            g_key(b, "type");
            gs(b, "\"server_error\"");
            gs(b, "}");
        }
        break;
      case 8: g_key(b, "obfuscation"); g_string(b, 8); break;
      default: g_key(b, "x_meta"); g_value(b, 0); break;
    }
  }
  gs(b, "}");
  gws(b);
}

/* Compares a span with what cJSON holds at that place. */
static int same_str(sl_span_t sp, int has, const cJSON *it) {
  if (!cJSON_IsString(it)) return !has;
  return has && strcmp(U(sp), it->valuestring) == 0;
}

#define OBJ(o, k) cJSON_GetObjectItemCaseSensitive((o), (k))

static void check_against_cjson(const char *js, size_t len) {
  sl_event_t ev;
  cJSON *root = cJSON_ParseWithLengthOpts(js, len + 1, NULL, 1);
  ASSERT_NOT_NULL(root);
  int r = sl_oai_scan(js, len, &ev);
  if (r != 0) fprintf(stderr, "rejected: %s\n", js);
  ASSERT_EQ(r, 0);
  const cJSON *err = OBJ(root, "error");
  int truthy = cJSON_IsObject(err) || cJSON_IsArray(err) || cJSON_IsTrue(err) ||
               (cJSON_IsString(err) && err->valuestring[0] != '\0') ||
               (cJSON_IsNumber(err) && err->valuedouble != 0);
  ASSERT_EQ(ev.kind, truthy ? SL_EV_ERROR : SL_EV_CHUNK);
  if (cJSON_IsObject(err)) ASSERT(same_str(ev.err_message, ev.err_message.p != NULL, OBJ(err, "message")));
  if (cJSON_IsString(err) && truthy) ASSERT_STR_EQ(U(ev.err_message), err->valuestring);
  ASSERT(same_str(ev.id, ev.id.p != NULL, OBJ(root, "id")));
  ASSERT(same_str(ev.model, ev.model.p != NULL, OBJ(root, "model")));
  const cJSON *created = OBJ(root, "created");
  ASSERT_EQ(ev.has_created, cJSON_IsNumber(created));
  if (ev.has_created) ASSERT_EQ(ev.created, (int64_t)created->valuedouble);

  const cJSON *usage = OBJ(root, "usage");
  ASSERT_EQ(ev.has_usage, cJSON_IsObject(usage));
  /* Cutting usage_member out leaves the same object without "usage". */
  ASSERT_EQ(ev.usage_member.p != NULL, usage != NULL);
  if (usage != NULL) {
    cJSON *cut = cJSON_Parse(cut_usage(&ev));
    cJSON *want = cJSON_Duplicate(root, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(want, "usage");
    int same = cut != NULL && cJSON_Compare(cut, want, 1);
    cJSON_Delete(cut);
    cJSON_Delete(want);
    if (!same) fprintf(stderr, "cut: %s\n", cut_usage(&ev));
    ASSERT(same);
  }
  if (ev.has_usage) {
    const cJSON *pt = OBJ(usage, "prompt_tokens"), *ct = OBJ(usage, "completion_tokens"),
                *tt = OBJ(usage, "total_tokens");
    ASSERT_EQ(ev.prompt_tokens, pt ? (int64_t)pt->valuedouble : 0);
    ASSERT_EQ(ev.completion_tokens, ct ? (int64_t)ct->valuedouble : 0);
    ASSERT_EQ(ev.total_tokens, tt ? (int64_t)tt->valuedouble : 0);
  }

  const cJSON *choices = OBJ(root, "choices");
  ASSERT_EQ(ev.n_choices, cJSON_IsArray(choices) ? cJSON_GetArraySize(choices) : -1);
  const cJSON *c0 = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
  if (!cJSON_IsObject(c0)) c0 = NULL;
  const cJSON *delta = c0 ? OBJ(c0, "delta") : NULL;
  if (!cJSON_IsObject(delta)) delta = NULL;
  const cJSON *content = delta ? OBJ(delta, "content") : NULL;
  const cJSON *text = c0 ? OBJ(c0, "text") : NULL;
  if (cJSON_IsString(content)) ASSERT(same_str(ev.text, ev.has_text, content));
  else ASSERT(same_str(ev.text, ev.has_text, text));
  ASSERT(same_str(ev.role, ev.has_role, delta ? OBJ(delta, "role") : NULL));
  const cJSON *reasoning = delta ? OBJ(delta, "reasoning") : NULL;
  if (!cJSON_IsString(reasoning)) reasoning = delta ? OBJ(delta, "reasoning_content") : NULL;
  ASSERT(same_str(ev.reasoning, ev.has_reasoning, reasoning));
  const cJSON *idx = c0 ? OBJ(c0, "index") : NULL;
  ASSERT_EQ(ev.choice_index, cJSON_IsNumber(idx) ? idx->valueint : 0);
  const cJSON *lp = c0 ? OBJ(c0, "logprobs") : NULL;
  ASSERT_EQ(ev.has_logprobs, lp != NULL && !cJSON_IsNull(lp));
  const cJSON *fr = c0 ? OBJ(c0, "finish_reason") : NULL;
  if (cJSON_IsString(fr)) {
    ASSERT_STR_EQ(U(ev.finish_raw), fr->valuestring);
    const char *want = fr->valuestring;
    if (!strcmp(want, "eos_token") || !strcmp(want, "stop_sequence")) want = "stop";
    if (!strcmp(want, "abort")) want = "other";
    ASSERT_STR_EQ(sl_finish_name(ev.finish), want);
  } else {
    ASSERT_EQ(ev.finish, SL_FINISH_NONE);
  }

  const cJSON *tools = delta ? OBJ(delta, "tool_calls") : NULL;
  int kept = 0, dropped = 0, pos = 0;
  const cJSON *t, *tarr = cJSON_IsArray(tools) ? tools : NULL;
  cJSON_ArrayForEach(t, tarr) {
    if (cJSON_IsObject(t)) {
      if (kept == SL_EV_MAX_TOOL_CALLS) {
        dropped++;
      } else {
        const sl_tool_delta_t *d = &ev.tool_calls[kept++];
        const cJSON *ti = OBJ(t, "index"), *fn = OBJ(t, "function");
        ASSERT_EQ(d->index, cJSON_IsNumber(ti) ? ti->valueint : pos);
        ASSERT(same_str(d->id, d->has_id, OBJ(t, "id")));
        ASSERT(same_str(d->type, d->type.p != NULL, OBJ(t, "type")));
        ASSERT(same_str(d->name, d->has_name, cJSON_IsObject(fn) ? OBJ(fn, "name") : NULL));
        ASSERT(same_str(d->arguments, d->has_arguments, cJSON_IsObject(fn) ? OBJ(fn, "arguments") : NULL));
      }
    }
    pos++;
  }
  ASSERT_EQ(ev.n_tool_calls, kept);
  ASSERT_EQ(ev.tool_calls_dropped, dropped);
  cJSON_Delete(root);
}

static void test_agrees_with_cjson(void) {
  static gbuf_t b;
  rng_state = 0xC0FFEE1234ULL;
  int with_text = 0, with_tools = 0, with_usage = 0, with_error = 0;
  for (int i = 0; i < 4000; i++) {
    g_chunk(&b);
    check_against_cjson(b.s, b.n);
    if (sl__test_cur_failed) {
      fprintf(stderr, "input %d: %s\n", i, b.s);
      return;
    }
    sl_event_t ev;
    sl_oai_scan(b.s, b.n, &ev);
    with_text += ev.has_text;
    with_tools += ev.n_tool_calls > 0;
    with_usage += ev.has_usage;
    with_error += ev.kind == SL_EV_ERROR;
  }
  /* The generator really exercised each part. */
  ASSERT_GT(with_text, 400);
  ASSERT_GT(with_tools, 200);
  ASSERT_GT(with_usage, 400);
  ASSERT_GT(with_error, 50);
}

/* A \uD800-\uDFFF escape not in a proper pair: cJSON refuses those, JSON
 * grammar (and JavaScript, Python) accept them. */
static int has_lone_surrogate(const char *s, size_t n) {
  for (size_t i = 0; i + 1 < n; i++) {
    if (s[i] != '\\') continue;
    if (s[i + 1] != 'u' || i + 6 > n) {
      i++;
      continue;
    }
    char h[5] = {s[i + 2], s[i + 3], s[i + 4], s[i + 5], 0};
    char *end;
    unsigned long v = strtoul(h, &end, 16);
    if (end != h + 4) {
      i++;
      continue;
    }
    if (v >= 0xDC00 && v <= 0xDFFF) return 1;
    if (v >= 0xD800 && v <= 0xDBFF) {
      if (i + 12 > n || s[i + 6] != '\\' || s[i + 7] != 'u') return 1;
      char l[5] = {s[i + 8], s[i + 9], s[i + 10], s[i + 11], 0};
      unsigned long w = strtoul(l, &end, 16);
      if (end != l + 4 || w < 0xDC00 || w > 0xDFFF) return 1;
      i += 6;
    }
    i += 5;
  }
  return 0;
}

/* cJSON's known leniencies: a \u escape whose digits are not all hex
 * (it reads U+0000), a number with a leading zero, or one ending in '.'. */
static int cjson_lenient_case(const char *s, size_t n) {
  for (size_t i = 0; i + 1 < n; i++) {
    if (s[i] == '\\') {
      if (s[i + 1] == 'u') {
        for (size_t k = i + 2; k < i + 6; k++)
          if (k >= n || !strchr("0123456789abcdefABCDEF", s[k]) || s[k] == 0) return 1;
      }
      i++;
      continue;
    }
    int prev_ok = i == 0 || strchr(":[, \t\r\n-", s[i - 1]) != NULL;
    if (s[i] == '0' && prev_ok && s[i + 1] >= '0' && s[i + 1] <= '9') return 1;
    if (s[i] >= '0' && s[i] <= '9' && s[i + 1] == '.' && (i + 2 >= n || s[i + 2] < '0' || s[i + 2] > '9'))
      return 1;
  }
  return 0;
}

static void test_mutations_rejected_like_cjson(void) {
  static gbuf_t b;
  static char m[1 << 16];
  static const char alphabet[] = "{}[]\",:\\ 0123456789.-+eEtfnulx/u";
  rng_state = 0xBADC0DEULL;
  int both_reject = 0, both_accept = 0, only_cjson_accepts = 0;
  for (int i = 0; i < 4000; i++) {
    g_chunk(&b);
    size_t n = b.n;
    memcpy(m, b.s, n);
    int kinds = 1 + (int)(rnd() % 3);
    for (int k = 0; k < kinds && n > 0; k++) {
      size_t at = rnd() % n;
      char ch = alphabet[rnd() % (sizeof(alphabet) - 1)];
      switch (rnd() % 5) {
        case 0: n = at; break;                                              /* truncate */
        case 1: memmove(m + at, m + at + 1, n - at - 1); n--; break;        /* delete */
        case 2: memmove(m + at + 1, m + at, n - at); m[at] = ch; n++; break; /* insert */
        case 3: m[at] = ch; break;                                          /* replace */
        default: m[n++] = ch; break;                                        /* append */
      }
    }
    m[n] = '\0';
    sl_event_t ev;
    int ours = sl_oai_scan(m, n, &ev);
    cJSON *cj = cJSON_ParseWithLengthOpts(m, n + 1, NULL, 1);
    if (ours == 0 && cj == NULL && !has_lone_surrogate(m, n)) {
      fprintf(stderr, "accepted what cJSON rejects: %s\n", m);
      ASSERT(0);
    }
    ASSERT(ours == 0 || ours == SL_EPARSE);
    if (ours == 0 && cj != NULL) both_accept++;
    if (ours != 0 && cj == NULL) both_reject++;
    /* Where cJSON is laxer, the reason must be one it is known for. */
    if (ours != 0 && cj != NULL) {
      only_cjson_accepts++;
      if (!cjson_lenient_case(m, n)) fprintf(stderr, "rejected what cJSON accepts: %s\n", m);
      ASSERT(cjson_lenient_case(m, n));
    }
    cJSON_Delete(cj);
  }
  fprintf(stderr, "  mutations: both reject %d, both accept %d, only cJSON accepts %d\n",
          both_reject, both_accept, only_cjson_accepts);
  ASSERT_GT(both_reject, 2000);
}

/* ---- string helpers --------------------------------------------------- */

static size_t put_utf8(char *d, unsigned cp) {
  if (cp < 0x80) { d[0] = (char)cp; return 1; }
  if (cp < 0x800) { d[0] = (char)(0xC0 | (cp >> 6)); d[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    d[0] = (char)(0xE0 | (cp >> 12)); d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[2] = (char)(0x80 | (cp & 0x3F)); return 3;
  }
  d[0] = (char)(0xF0 | (cp >> 18)); d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  d[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); d[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

static void test_unescape_cases(void) {
  char out[64];
  struct { const char *in, *out; } ok[] = {
      {"plain", "plain"},
      {"\\\"\\\\\\/\\b\\f\\n\\r\\t", "\"\\/\b\f\n\r\t"},
      {"caf\\u00e9", "caf\xc3\xa9"},
      {"\\u20AC\\u20ac", "\xe2\x82\xac\xe2\x82\xac"},
      {"\\ud83d\\ude00!", "\xf0\x9f\x98\x80!"},
      {"\\uDBFF\\uDFFF", "\xf4\x8f\xbf\xbf"},
      {"a\\ud800b", "a\xef\xbf\xbd" "b"},            /* lone high */
      {"\\udc00", "\xef\xbf\xbd"},                     /* lone low */
      {"\\ud800\\ud800\\udc00", "\xef\xbf\xbd\xf0\x90\x80\x80"}, /* high, then a pair */
      {"\\ud800\\n", "\xef\xbf\xbd\n"},
      {"\\u0041\\u007f\\u0080", "A\x7f\xc2\x80"},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    size_t n = sl_json_unescape(out, sizeof(out), ok[i].in, strlen(ok[i].in));
    ASSERT_MEM_EQ(out, n == (size_t)-1 ? 0 : n, ok[i].out, strlen(ok[i].out));
  }
  size_t n = sl_json_unescape(out, sizeof(out), "\\u0000", 6);
  ASSERT_EQ(n, 1);
  ASSERT_EQ(out[0], 0);
  const char *bad[] = {"\\", "\\x", "\\u12", "\\u12G4", "ab\\"};
  for (size_t i = 0; i < 5; i++)
    ASSERT_UINT_EQ(sl_json_unescape(out, sizeof(out), bad[i], strlen(bad[i])), (size_t)-1);
  /* Exact fit works, one byte less does not. */
  ASSERT_EQ(sl_json_unescape(out, 4, "\\ud83d\\ude00", 12), 4);
  ASSERT_UINT_EQ(sl_json_unescape(out, 3, "\\ud83d\\ude00", 12), (size_t)-1);
  ASSERT_UINT_EQ(sl_json_unescape(out, 2, "abc", 3), (size_t)-1);
  ASSERT_UINT_EQ(sl_json_unescape(out, 2, "ab\\n", 4), (size_t)-1);
  ASSERT_EQ(sl_json_unescape(NULL, 0, "", 0), 0);
}

static void test_escape_cases(void) {
  char out[64];
  size_t n = sl_json_escape(out, sizeof(out), "a\"b\\c/\n\r\t\b\f\x01\x1f\x7f\xc3\xa9", 16);
  const char want[] = "a\\\"b\\\\c/\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\xc3\xa9";
  ASSERT_MEM_EQ(out, n, want, sizeof(want) - 1);
  n = sl_json_escape(out, sizeof(out), "\0", 1);
  ASSERT_MEM_EQ(out, n, "\\u0000", 6);
  for (size_t cap = 0; cap < 6; cap++) ASSERT_UINT_EQ(sl_json_escape(out, cap, "\x02", 1), (size_t)-1);
  ASSERT_UINT_EQ(sl_json_escape(out, 1, "\n", 1), (size_t)-1);
  ASSERT_UINT_EQ(sl_json_escape(out, 2, "abc", 3), (size_t)-1);
}

static void test_escape_round_trip_random(void) {
  static char src[512], esc[3200], back[512], js[3300];
  rng_state = 0xE5CA9EULL;
  for (int i = 0; i < 3000; i++) {
    size_t n = 0;
    int bytes_mode = i % 3 == 0;
    int want = (int)(rnd() % 80);
    for (int k = 0; k < want && n < sizeof(src) - 4; k++) {
      if (bytes_mode) {
        src[n++] = (char)(rnd() & 0xFF); /* arbitrary bytes, NUL and invalid UTF-8 included */
      } else {
        unsigned cp;
        switch (rnd() % 4) {
          case 0: cp = 1 + (unsigned)(rnd() % 0x7F); break;
          case 1: cp = 0x80 + (unsigned)(rnd() % 0x780); break;
          case 2: do cp = 0x800 + (unsigned)(rnd() % 0xF800); while (cp >= 0xD800 && cp <= 0xDFFF); break;
          default: cp = 0x10000 + (unsigned)(rnd() % 0x100000); break;
        }
        n += put_utf8(src + n, cp);
      }
    }
    size_t e = sl_json_escape(esc, sizeof(esc), src, n);
    ASSERT(e != (size_t)-1);
    ASSERT_LE(e, 6 * n);
    size_t u = sl_json_unescape(back, sizeof(back), esc, e);
    ASSERT_MEM_EQ(back, u, src, n);
    /* The escaped form is a valid JSON string to our scanner... */
    memcpy(js, "{\"k\":\"", 6);
    memcpy(js + 6, esc, e);
    memcpy(js + 6 + e, "\"}", 3);
    sl_event_t ev;
    ASSERT_EQ(sl_oai_scan(js, e + 8, &ev), 0);
    /* ...and to cJSON, which reads back the same text (UTF-8 mode has no NUL). */
    if (!bytes_mode) {
      cJSON *root = cJSON_ParseWithLengthOpts(js, e + 9, NULL, 1);
      ASSERT_NOT_NULL(root);
      const cJSON *k = OBJ(root, "k");
      ASSERT_MEM_EQ(k->valuestring, strlen(k->valuestring), src, n);
      /* cJSON's own escaping (\uXXXX for controls) unescapes back too. */
      char *printed = cJSON_PrintUnformatted(k);
      size_t pl = strlen(printed);
      u = sl_json_unescape(back, sizeof(back), printed + 1, pl - 2);
      ASSERT_MEM_EQ(back, u, src, n);
      cJSON_free(printed);
      cJSON_Delete(root);
    }
    if (sl__test_cur_failed) return;
  }
}

/* ---- encoder ---------------------------------------------------------- */

static void test_encode_chunks(void) {
  char buf[1024];
  sl_oai_meta_t m = {{"chatcmpl-\\\"x", 12}, {"llama-3", 7}, 1753343173, 1};
  size_t n = sl_oai_encode_chunk(buf, sizeof(buf), &m, "assistant", "", 0, SL_FINISH_NONE);
  ASSERT(n != (size_t)-1);
  cJSON *root = cJSON_ParseWithLength(buf, n);
  ASSERT_NOT_NULL(root);
  ASSERT_STR_EQ(OBJ(root, "id")->valuestring, "chatcmpl-\"x");
  ASSERT_STR_EQ(OBJ(root, "object")->valuestring, "chat.completion.chunk");
  ASSERT_EQ((int64_t)OBJ(root, "created")->valuedouble, 1753343173);
  ASSERT_STR_EQ(OBJ(root, "model")->valuestring, "llama-3");
  const cJSON *c0 = cJSON_GetArrayItem(OBJ(root, "choices"), 0);
  ASSERT_EQ(OBJ(c0, "index")->valueint, 0);
  ASSERT_STR_EQ(OBJ(OBJ(c0, "delta"), "role")->valuestring, "assistant");
  ASSERT_STR_EQ(OBJ(OBJ(c0, "delta"), "content")->valuestring, "");
  ASSERT(cJSON_IsNull(OBJ(c0, "finish_reason")));
  ASSERT(cJSON_IsNull(OBJ(c0, "logprobs")));
  cJSON_Delete(root);

  /* Content from a scanned span passes through still escaped. */
  const char tx[] = "caf\\u00e9 \\\"q\\\"\\n";
  n = sl_oai_encode_chunk(buf, sizeof(buf), &m, NULL, tx, sizeof(tx) - 1, SL_FINISH_NONE);
  root = cJSON_ParseWithLength(buf, n);
  ASSERT_NOT_NULL(root);
  c0 = cJSON_GetArrayItem(OBJ(root, "choices"), 0);
  ASSERT_NULL(OBJ(OBJ(c0, "delta"), "role"));
  ASSERT_STR_EQ(OBJ(OBJ(c0, "delta"), "content")->valuestring, "caf\xc3\xa9 \"q\"\n");
  cJSON_Delete(root);
  /* The scanner reads back what the encoder wrote. */
  sl_event_t ev;
  ASSERT_EQ(sl_oai_scan(buf, n, &ev), 0);
  ASSERT_MEM_EQ(ev.text.p, ev.text.n, tx, sizeof(tx) - 1);

  n = sl_oai_encode_chunk(buf, sizeof(buf), &m, NULL, NULL, 0, SL_FINISH_TOOL_CALLS);
  root = cJSON_ParseWithLength(buf, n);
  ASSERT_NOT_NULL(root);
  c0 = cJSON_GetArrayItem(OBJ(root, "choices"), 0);
  ASSERT_EQ(cJSON_GetArraySize(OBJ(c0, "delta")), 0);
  ASSERT_STR_EQ(OBJ(c0, "finish_reason")->valuestring, "tool_calls");
  cJSON_Delete(root);
  n = sl_oai_encode_chunk(buf, sizeof(buf), &m, NULL, NULL, 0, SL_FINISH_OTHER);
  ASSERT_EQ(sl_oai_scan(buf, n, &ev), 0);
  ASSERT_EQ(ev.finish, SL_FINISH_STOP);

  /* Legacy completions. */
  m.chat = 0;
  n = sl_oai_encode_chunk(buf, sizeof(buf), &m, "assistant", "Hi", 2, SL_FINISH_LENGTH);
  root = cJSON_ParseWithLength(buf, n);
  ASSERT_NOT_NULL(root);
  ASSERT_STR_EQ(OBJ(root, "object")->valuestring, "text_completion");
  c0 = cJSON_GetArrayItem(OBJ(root, "choices"), 0);
  ASSERT_STR_EQ(OBJ(c0, "text")->valuestring, "Hi");
  ASSERT_NULL(OBJ(c0, "delta"));
  ASSERT_STR_EQ(OBJ(c0, "finish_reason")->valuestring, "length");
  cJSON_Delete(root);

  /* Every capacity short of the length fails; the length itself fits. */
  m.chat = 1;
  n = sl_oai_encode_chunk(buf, sizeof(buf), &m, "assistant", "x", 1, SL_FINISH_STOP);
  for (size_t cap = 0; cap < n; cap++)
    ASSERT_UINT_EQ(sl_oai_encode_chunk(buf, cap, &m, "assistant", "x", 1, SL_FINISH_STOP), (size_t)-1);
  ASSERT_EQ(sl_oai_encode_chunk(buf, n, &m, "assistant", "x", 1, SL_FINISH_STOP), n);
}

static void test_encode_usage_and_error(void) {
  char buf[512];
  sl_oai_meta_t m = {{"id1", 3}, {"m", 1}, 7, 1};
  size_t n = sl_oai_encode_usage(buf, sizeof(buf), &m, 60, 15);
  cJSON *root = cJSON_ParseWithLength(buf, n);
  ASSERT_NOT_NULL(root);
  ASSERT_EQ(cJSON_GetArraySize(OBJ(root, "choices")), 0);
  const cJSON *u = OBJ(root, "usage");
  ASSERT_EQ(OBJ(u, "prompt_tokens")->valueint, 60);
  ASSERT_EQ(OBJ(u, "completion_tokens")->valueint, 15);
  ASSERT_EQ(OBJ(u, "total_tokens")->valueint, 75);
  cJSON_Delete(root);
  sl_event_t ev;
  ASSERT_EQ(sl_oai_scan(buf, n, &ev), 0);
  ASSERT_EQ(ev.n_choices, 0);
  ASSERT_EQ(ev.total_tokens, 75);
  for (size_t cap = 0; cap < n; cap++)
    ASSERT_UINT_EQ(sl_oai_encode_usage(buf, cap, &m, 60, 15), (size_t)-1);

  const char msg[] = "upstream \"engine\" failed\n\x01";
  n = sl_oai_encode_error(buf, sizeof(buf), msg, sizeof(msg) - 1, "server_error", NULL);
  root = cJSON_ParseWithLength(buf, n);
  ASSERT_NOT_NULL(root);
  const cJSON *e = OBJ(root, "error");
  ASSERT_STR_EQ(OBJ(e, "message")->valuestring, msg);
  ASSERT_STR_EQ(OBJ(e, "type")->valuestring, "server_error");
  ASSERT(cJSON_IsNull(OBJ(e, "code")));
  cJSON_Delete(root);
  ASSERT_EQ(sl_oai_scan(buf, n, &ev), 0);
  ASSERT_EQ(ev.kind, SL_EV_ERROR);
  ASSERT_STR_EQ(U(ev.err_message), msg);
  n = sl_oai_encode_error(buf, sizeof(buf), "x", 1, "rate_limit", "429");
  root = cJSON_ParseWithLength(buf, n);
  ASSERT_STR_EQ(OBJ(OBJ(root, "error"), "code")->valuestring, "429");
  cJSON_Delete(root);
  for (size_t cap = 0; cap < n; cap++)
    ASSERT_UINT_EQ(sl_oai_encode_error(buf, cap, "x", 1, "rate_limit", "429"), (size_t)-1);

  ASSERT_NULL(sl_finish_name(SL_FINISH_NONE));
  ASSERT_STR_EQ(sl_finish_name(SL_FINISH_CONTENT_FILTER), "content_filter");
  ASSERT_STR_EQ(sl_finish_name(SL_FINISH_FUNCTION_CALL), "function_call");
}

/* ---- usage: refused counts, the member's bytes ------------------------ */

static void test_usage_counts_refused(void) {
  sl_event_t ev;
  /* An engine's overflowing, negative or unrepresentable counts: the usage
   * is malformed and counts as absent. */
  const char *bad[] = {
      "{\"choices\":[],\"usage\":{\"prompt_tokens\":9223372036854775807,\"completion_tokens\":1}}",
      "{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":-1,\"total_tokens\":4}}",
      "{\"choices\":[],\"usage\":{\"total_tokens\":-4}}",
      "{\"choices\":[],\"usage\":{\"prompt_tokens\":9007199254740993}}",
      "{\"choices\":[],\"usage\":{\"completion_tokens\":1e300}}",
      "{\"choices\":[],\"usage\":{\"prompt_tokens\":99999999999999999999999}}",
  };
  for (int i = 0; i < (int)(sizeof(bad) / sizeof(bad[0])); i++) {
    ASSERT_EQ(scan(bad[i], &ev), 0);
    ASSERT_EQ(ev.kind, SL_EV_CHUNK);
    ASSERT_EQ(ev.has_usage, 0);
    ASSERT_EQ(ev.usage_refused, 1);
    ASSERT_EQ(ev.prompt_tokens, 0);
    ASSERT_EQ(ev.completion_tokens, 0);
    ASSERT_EQ(ev.total_tokens, 0);
  }
  /* Up to 2^53 is accepted; so are -0 and counts that are not numbers
   * (absent). */
  ASSERT_EQ(scan("{\"usage\":{\"prompt_tokens\":9007199254740992,\"completion_tokens\":-0,"
                 "\"total_tokens\":\"9\"}}",
                 &ev),
            0);
  ASSERT_EQ(ev.has_usage, 1);
  ASSERT_EQ(ev.usage_refused, 0);
  ASSERT_EQ(ev.prompt_tokens, SL_OAI_USAGE_MAX);
  ASSERT_EQ(ev.completion_tokens, 0);
  /* The last duplicate wins, refusal included. */
  ASSERT_EQ(scan("{\"usage\":{\"prompt_tokens\":-1},\"usage\":{\"prompt_tokens\":3}}", &ev), 0);
  ASSERT_EQ(ev.has_usage, 1);
  ASSERT_EQ(ev.usage_refused, 0);
  ASSERT_EQ(ev.prompt_tokens, 3);
  ASSERT_EQ(scan("{\"usage\":{\"prompt_tokens\":3},\"usage\":{\"prompt_tokens\":-1}}", &ev), 0);
  ASSERT_EQ(ev.has_usage, 0);
  ASSERT_EQ(ev.usage_refused, 1);

  /* The encoder refuses what the scanner refuses, so a sum never
   * overflows; at the bound the total is exact. */
  char buf[512];
  sl_oai_meta_t m = {{"id1", 3}, {"m", 1}, 7, 1};
  ASSERT_UINT_EQ(sl_oai_encode_usage(buf, sizeof(buf), &m, INT64_MAX, 1), (size_t)-1);
  ASSERT_UINT_EQ(sl_oai_encode_usage(buf, sizeof(buf), &m, 1, INT64_MAX), (size_t)-1);
  ASSERT_UINT_EQ(sl_oai_encode_usage(buf, sizeof(buf), &m, -1, 2), (size_t)-1);
  ASSERT_UINT_EQ(sl_oai_encode_usage(buf, sizeof(buf), &m, 2, SL_OAI_USAGE_MAX + 1), (size_t)-1);
  size_t n = sl_oai_encode_usage(buf, sizeof(buf), &m, SL_OAI_USAGE_MAX, SL_OAI_USAGE_MAX);
  ASSERT(n != (size_t)-1);
  buf[n] = '\0';
  ASSERT(strstr(buf, "\"total_tokens\":18014398509481984}") != NULL);
}

static void test_usage_member_span(void) {
  sl_event_t ev;
  static const struct {
    const char *in, *cut;
  } cases[] = {
      {"{\"id\":\"a\",\"choices\":[],\"usage\":null}", "{\"id\":\"a\",\"choices\":[]}"},
      {"{\"usage\":null,\"id\":\"a\"}", "{\"id\":\"a\"}"},
      {"{\"id\":\"a\",\"usage\":null,\"model\":\"m\"}", "{\"id\":\"a\",\"model\":\"m\"}"},
      {"{\"usage\":null}", "{}"},
      {" { \"usage\" : null , \"id\" : \"a\" } ", " { \"id\" : \"a\" } "},
      {"{\"id\":\"a\" ,\n \"usage\"\t:null\n}", "{\"id\":\"a\"\n}"},
      {"{\"id\":\"a\",\"usage\":{\"prompt_tokens\":1,\"x\":[1,{}]}}", "{\"id\":\"a\"}"},
      {"{\"us\\u0061ge\":null,\"id\":\"a\"}", "{\"id\":\"a\"}"},
  };
  for (int i = 0; i < (int)(sizeof(cases) / sizeof(cases[0])); i++) {
    ASSERT_EQ(scan(cases[i].in, &ev), 0);
    ASSERT_NOT_NULL(ev.usage_member.p);
    ASSERT_STR_EQ(cut_usage(&ev), cases[i].cut);
  }
  /* No usage key, or two (the last one wins: cutting one would change
   * which). */
  ASSERT_EQ(scan("{\"id\":\"a\",\"x\":{\"usage\":null}}", &ev), 0);
  ASSERT_NULL(ev.usage_member.p);
  ASSERT_EQ(ev.usage_member.n, 0);
  ASSERT_EQ(scan("{\"usage\":null,\"usage\":{\"prompt_tokens\":1}}", &ev), 0);
  ASSERT_NULL(ev.usage_member.p);
  ASSERT_EQ(scan("[DONE]", &ev), 0);
  ASSERT_NULL(ev.usage_member.p);
}

/* ---- request side ---------------------------------------------------- */

/* Checks body; returns the code and copies the field and message out. */
static int check(const char *body, char *field, char *msg) {
  sl_oai_problem_t p;
  memset(&p, 0, sizeof(p));
  int r = sl_oai_check_request(body, strlen(body), &p);
  if (field) strcpy(field, r < 0 ? p.field : "");
  if (msg) strcpy(msg, r < 0 ? p.message : "");
  return r;
}

static void test_request_utf8_valid(void) {
  const char *good[] = {
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
      "{\"a\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf\"}", /* 2, 3, 4 bytes, U+FFFF, U+10FFFF */
      "{\"a\":\"\\ud83d\\ude00 \\u00e9 \\u20ac \\n\\t\\\"\\\\\\/\"}",                   /* escapes, a pair */
      "{\"\xc3\xa9t\xc3\xa9\":[1,-2.5e3,true,false,null,{}],\"b\":[]}",                    /* a UTF-8 key */
      "  [\"x\"]  ", "\"just a string\"", "0",
      "{\"long\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9\"}",
  };
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    char msg[512];
    int r = check(good[i], NULL, msg);
    if (r != 0) fprintf(stderr, "  good[%zu]: %s\n", i, msg);
    ASSERT_EQ(r, 0);
  }
}

static void test_request_utf8_invalid_named(void) {
  static const struct {
    const char *body, *field, *mention;
  } bad[] = {
      /* raw bytes */
      {"{\"messages\":[{\"role\":\"user\",\"content\":\"a\xff\"}]}", "messages[0].content", "0xF8..0xFF"},
      {"{\"messages\":[{\"content\":\"x\"},{\"content\":[{\"type\":\"text\",\"text\":\"\x80\"}]}]}",
       "messages[1].content[0].text", "continuation"},
      {"{\"model\":\"\xc0\xaf\"}", "model", "overlong"},                 /* '/' in two bytes */
      {"{\"model\":\"\xc1\xbf\"}", "model", "overlong"},
      {"{\"model\":\"\xe0\x80\xaf\"}", "model", "overlong"},             /* '/' in three bytes */
      {"{\"model\":\"\xf0\x80\x80\xaf\"}", "model", "overlong"},         /* '/' in four bytes */
      {"{\"model\":\"\xed\xa0\x80\"}", "model", "surrogate"},            /* U+D800 as UTF-8 */
      {"{\"model\":\"\xed\xbf\xbf\"}", "model", "surrogate"},            /* U+DFFF */
      {"{\"model\":\"\xf4\x90\x80\x80\"}", "model", "U+10FFFF"},         /* U+110000 */
      {"{\"model\":\"\xf5\x80\x80\x80\"}", "model", "U+10FFFF"},
      {"{\"model\":\"\xe2\x82\"}", "model", "truncated"},                /* cut before the quote */
      {"{\"model\":\"\xc3\"}", "model", "truncated"},
      {"{\"model\":\"\xc3x\"}", "model", "truncated"},
      /* escapes: lone surrogates are refused, not replaced */
      {"{\"stop\":[\"ok\",\"\\ud800\"]}", "stop[1]", "high surrogate"},
      {"{\"stop\":[\"\\ud800x\"]}", "stop[0]", "high surrogate"},
      {"{\"stop\":[\"\\ud800\\u0041\"]}", "stop[0]", "high surrogate"},
      {"{\"stop\":[\"\\ud800\\ud800\"]}", "stop[0]", "high surrogate"},
      {"{\"stop\":[\"\\udc00\"]}", "stop[0]", "low surrogate"},
      {"{\"stop\":[\"\\ude00\\ud83d\"]}", "stop[0]", "low surrogate"},   /* a pair in the wrong order */
      {"{\"a\":{\"b c\":{\"d\":\"\\u0000\"}}}", "a[\"b c\"].d", "\\u0000"},
      /* keys */
      {"{\"messages\":[{\"r\xffle\":\"user\"}]}", "messages[0]", "a key of 'messages[0]'"},
      {"{\"\\udfff\":1}", "", "a top-level key"},
      {"\"\xff\"", "", "the request body"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char field[256], msg[512];
    int r = check(bad[i].body, field, msg);
    if (r != SL_EINVAL || strcmp(field, bad[i].field) != 0 || strstr(msg, bad[i].mention) == NULL)
      fprintf(stderr, "  bad[%zu]: r=%d field=%s msg=%s\n", i, r, field, msg);
    ASSERT_EQ(r, SL_EINVAL);
    ASSERT_STR_EQ(field, bad[i].field);
    ASSERT_NOT_NULL(strstr(msg, bad[i].mention));
  }
  /* The message names the field the way a client wrote it and says what is wrong. */
  char msg[512];
  ASSERT_EQ(check("{\"messages\":[{\"role\":\"user\",\"content\":\"\xc0\xaf\"}]}", NULL, msg), SL_EINVAL);
  ASSERT_STR_EQ(msg, "'messages[0].content' is not valid UTF-8: an overlong encoding (byte 39)");
  sl_oai_problem_t p;
  const char *nul = "{\"prompt\":\"ab\\u0000cd\"}";
  ASSERT_EQ(sl_oai_check_request(nul, strlen(nul), &p), SL_EINVAL);
  ASSERT_STR_EQ(p.code, "invalid_string");
  ASSERT_EQ(p.offset, 13);
  const char *ff = "{\"prompt\":\"\xff\"}";
  ASSERT_EQ(sl_oai_check_request(ff, strlen(ff), &p), SL_EINVAL);
  ASSERT_STR_EQ(p.code, "invalid_utf8");
  ASSERT_EQ(p.offset, 11);
}

/* Every invalid byte in every position of a string: the fast ASCII path
 * must not skip over one. */
static void test_request_utf8_every_position(void) {
  char body[64];
  for (int pos = 0; pos < 24; pos++) {
    char text[32];
    memset(text, 'a', sizeof(text));
    text[pos] = (char)0xFE;
    int n = snprintf(body, sizeof(body), "{\"k\":\"%.24s\"}", text);
    sl_oai_problem_t p;
    ASSERT_EQ(sl_oai_check_request(body, (size_t)n, &p), SL_EINVAL);
    ASSERT_EQ(p.offset, 6 + (size_t)pos);
  }
}

/* The well-formed byte sequences of the Unicode standard (table 3-7),
 * written as ranges: an independent reference for the checker. */
static int ref_utf8_ok(const unsigned char *s, size_t n) {
  static const struct {
    unsigned char lo[4], hi[4];
    int len;
  } rows[] = {
      {{0x00}, {0x7F}, 1},
      {{0xC2, 0x80}, {0xDF, 0xBF}, 2},
      {{0xE0, 0xA0, 0x80}, {0xE0, 0xBF, 0xBF}, 3},
      {{0xE1, 0x80, 0x80}, {0xEC, 0xBF, 0xBF}, 3},
      {{0xED, 0x80, 0x80}, {0xED, 0x9F, 0xBF}, 3},
      {{0xEE, 0x80, 0x80}, {0xEF, 0xBF, 0xBF}, 3},
      {{0xF0, 0x90, 0x80, 0x80}, {0xF0, 0xBF, 0xBF, 0xBF}, 4},
      {{0xF1, 0x80, 0x80, 0x80}, {0xF3, 0xBF, 0xBF, 0xBF}, 4},
      {{0xF4, 0x80, 0x80, 0x80}, {0xF4, 0x8F, 0xBF, 0xBF}, 4},
  };
  size_t i = 0;
  while (i < n) {
    int matched = 0;
    for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]) && !matched; r++) {
      int len = rows[r].len;
      if (i + (size_t)len > n) continue;
      int ok = 1;
      for (int k = 0; k < len; k++)
        if (s[i + k] < rows[r].lo[k] || s[i + k] > rows[r].hi[k]) ok = 0;
      if (ok) {
        i += (size_t)len;
        matched = 1;
      }
    }
    if (!matched) return 0;
  }
  return 1;
}

/* Random strings of bytes near the edges of the UTF-8 ranges: the checker
 * agrees with the reference on every one. */
static void test_request_utf8_agrees_with_reference(void) {
  static const unsigned char edge[] = {'a',  'z',  0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
                                       0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
  rng_state = 0x5eed1234abcdULL;
  int valid = 0;
  for (int round = 0; round < 200000; round++) {
    unsigned char text[12];
    size_t n = 1 + rnd() % sizeof(text);
    for (size_t i = 0; i < n; i++) text[i] = edge[rnd() % sizeof(edge)];
    char body[64];
    int bn = snprintf(body, sizeof(body), "{\"k\":[\"%.*s\"]}", (int)n, (const char *)text);
    sl_oai_problem_t p;
    int r = sl_oai_check_request(body, (size_t)bn, &p);
    int want = ref_utf8_ok(text, n);
    valid += want;
    if ((r == 0) != want) {
      fprintf(stderr, "  disagree on");
      for (size_t i = 0; i < n; i++) fprintf(stderr, " %02x", text[i]);
      fprintf(stderr, ": checker %d, reference %d\n", r, want);
    }
    ASSERT_EQ(r == 0, want);
    if (r != 0) ASSERT_STR_EQ(p.field, "k[0]");
  }
  ASSERT_GT(valid, 1000); /* both outcomes were exercised */
}

/* What the gateway accepts as JSON: cJSON parses it and only " \t\r\n"
 * follow the value. */
static int gateway_accepts(const char *body, size_t n) {
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(body, n, &end, 0);
  int ok = root != NULL;
  if (root != NULL)
    for (const char *q = end; q < body + n; q++)
      if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n') ok = 0;
  cJSON_Delete(root);
  return ok;
}

/* The walk reads JSON as cJSON does (cJSON judges the syntax afterwards):
 * what cJSON accepts is walked and its strings checked; what neither can
 * read is SL_EPARSE with the offset. */
static void test_request_json_as_cjson_reads_it(void) {
  const char *bad[] = {"", "   ", "{", "{\"a\":1,}", "{\"a\":1} x", "{\"a\":\"\\x\"}", "{\"a\":[1 2]}",
                       "nul", "{\"a\":1}{}", "{a:1}", "{\"a\" 1}", "[1,]", "{\"a\":\"open"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    sl_oai_problem_t p;
    int r = sl_oai_check_request(bad[i], strlen(bad[i]), &p);
    if (r != SL_EPARSE) fprintf(stderr, "  bad[%zu] '%s': %d\n", i, bad[i], r);
    ASSERT_EQ(r, SL_EPARSE);
    ASSERT_STR_EQ(p.code, "body");
    ASSERT_NOT_NULL(strstr(p.message, "not valid JSON"));
    ASSERT(!gateway_accepts(bad[i], strlen(bad[i]))); /* the gateway refuses them too */
  }
  /* cJSON reads a \u escape without four hex digits as U+0000 and cuts the
   * string there: refused like \u0000, naming the field. */
  const char *bad_u[] = {"{\"a\":\"\\u12g4\"}", "{\"a\":\"x\\uZZZZy\"}", "{\"a\":\"\\u1\\\"23\"}", "{\"a\":\"\\u12\"}"};
  for (size_t i = 0; i < sizeof(bad_u) / sizeof(bad_u[0]); i++) {
    sl_oai_problem_t p;
    int r = sl_oai_check_request(bad_u[i], strlen(bad_u[i]), &p);
    if (r != SL_EINVAL) fprintf(stderr, "  bad_u[%zu] '%s': %d\n", i, bad_u[i], r);
    ASSERT_EQ(r, SL_EINVAL);
    ASSERT_STR_EQ(p.code, "invalid_string");
    ASSERT_STR_EQ(p.field, "a");
  }
  /* cJSON's leniencies are walked, and their strings still checked. */
  const char *lenient[] = {"{\"a\":\"raw\ttab and\nnewline\"}", "{\"a\":007,\"b\":1.,\"c\":-.5}",
                           "\x01{\x1f\"a\"\x02:\x03[\x04]\x05}\x06", "\xef\xbb\xbf{\"bom\":1}"};
  for (size_t i = 0; i < sizeof(lenient) / sizeof(lenient[0]); i++) {
    sl_oai_problem_t p;
    int r = sl_oai_check_request(lenient[i], strlen(lenient[i]), &p);
    if (r != 0) fprintf(stderr, "  lenient[%zu]: %s\n", i, p.message);
    ASSERT_EQ(r, 0);
    cJSON *root = cJSON_ParseWithLength(lenient[i], strlen(lenient[i]));
    ASSERT_NOT_NULL(root);
    cJSON_Delete(root);
  }
  sl_oai_problem_t p;
  const char *bad_in_lenient = "{\"a\":007,\"b\":\"x\ty\xc0\x80\"}";
  ASSERT_EQ(sl_oai_check_request(bad_in_lenient, strlen(bad_in_lenient), &p), SL_EINVAL);
  ASSERT_STR_EQ(p.field, "b");
  /* A raw NUL inside a string is refused like \u0000 (cJSON would cut the
   * string there); between tokens cJSON reads it as blank. */
  const char nul_in[] = "{\"prompt\":\"ab\0cd\"}";
  ASSERT_EQ(sl_oai_check_request(nul_in, sizeof(nul_in) - 1, &p), SL_EINVAL);
  ASSERT_STR_EQ(p.code, "invalid_string");
  ASSERT_STR_EQ(p.field, "prompt");
  ASSERT_NOT_NULL(strstr(p.message, "a NUL byte"));
  const char nul_out[] = "{\"prompt\":\0\"abcd\"}";
  ASSERT_EQ(sl_oai_check_request(nul_out, sizeof(nul_out) - 1, &p), 0);
  /* Nesting: up to cJSON's limit is walked, one more is refused. */
  size_t depth = SL_OAI_REQUEST_MAX_DEPTH;
  char *deep = malloc(2 * depth + 3);
  for (size_t i = 0; i < depth + 1; i++) deep[i] = '[';
  for (size_t i = 0; i < depth + 1; i++) deep[depth + 1 + i] = ']';
  ASSERT_EQ(sl_oai_check_request(deep, 2 * (depth + 1), &p), SL_EPARSE);
  ASSERT_NOT_NULL(strstr(p.message, "deeper than"));
  ASSERT_NULL(cJSON_ParseWithLength(deep, 2 * (depth + 1)));
  ASSERT_EQ(sl_oai_check_request(deep + 1, 2 * depth, &p), 0);
  cJSON *root = cJSON_ParseWithLength(deep + 1, 2 * depth);
  ASSERT_NOT_NULL(root);
  cJSON_Delete(root);
  free(deep);
}

/* Random mutations of request bodies: whenever the gateway's parse (cJSON,
 * then only " \t\r\n" after the value) would accept a body, the walk does
 * not give up on it, so no string goes to the engine unchecked. */
static void test_request_walk_never_stricter_than_cjson(void) {
  static const char *seeds[] = {
      "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"h\\u00e9\"}]}],"
      "\"max_tokens\":10,\"temperature\":0.5,\"stop\":null,\"stream\":true}",
      "{\"model\":\"m\",\"prompt\":[1,2,-3e2],\"x\":{\"y\":[[],{}],\"z\":false}}",
  };
  static const char alphabet[] = "{}[]\":,\\ \t\n\r0123456789-+.eEntrufalsu\x01\x1f\x7f\x80\xc3\xa9\xff";
  rng_state = 0xc0ffee77ULL;
  int accepted = 0;
  for (int round = 0; round < 60000; round++) {
    char body[512];
    const char *seed = seeds[rnd() % 2];
    size_t n = strlen(seed);
    memcpy(body, seed, n);
    int edits = 1 + (int)(rnd() % 3);
    for (int k = 0; k < edits; k++) {
      size_t at = rnd() % (n + 1);
      char ch = alphabet[rnd() % (sizeof(alphabet) - 1)];
      int op = (int)(rnd() % 3);
      if (op == 0 && at < n) {
        body[at] = ch;
      } else if (op == 1 && n + 1 < sizeof(body)) {
        memmove(body + at + 1, body + at, n - at);
        body[at] = ch;
        n++;
      } else if (at < n) {
        memmove(body + at, body + at + 1, n - at - 1);
        n--;
      }
    }
    sl_oai_problem_t p;
    int walk = sl_oai_check_request(body, n, &p);
    int gateway_ok = gateway_accepts(body, n);
    accepted += gateway_ok;
    if (gateway_ok && walk == SL_EPARSE) fprintf(stderr, "  walk gave up on an accepted body: %.*s\n", (int)n, body);
    ASSERT(!(gateway_ok && walk == SL_EPARSE));
  }
  ASSERT_GT(accepted, 1000);
}

static int dups(const char *body, char *field) {
  cJSON *root = cJSON_Parse(body);
  if (root == NULL) return 99;
  sl_oai_problem_t p;
  int r = sl_oai_check_duplicates(root, &p);
  strcpy(field, r < 0 ? p.field : "");
  if (r < 0 && (strstr(p.message, p.field) == NULL || strcmp(p.code, "duplicate_key") != 0)) r = 98;
  cJSON_Delete(root);
  return r;
}

static void test_request_duplicate_keys(void) {
  char field[256];
  /* The example: the first model and max_tokens were validated, the
   * last ones may be what an engine reads. */
  ASSERT_EQ(dups("{\"model\":\"m\",\"model\":\"x-other\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                 "\"max_tokens\":10,\"max_tokens\":-7}",
                 field),
            SL_EINVAL);
  ASSERT(strcmp(field, "model") == 0 || strcmp(field, "max_tokens") == 0);
  ASSERT_EQ(dups("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"role\":\"system\"}]}", field),
            SL_EINVAL);
  ASSERT_STR_EQ(field, "messages[1].role");
  ASSERT_EQ(dups("{\"a\":{\"b\":[{},{\"odd key\":1,\"odd key\":2}]}}", field), SL_EINVAL);
  ASSERT_STR_EQ(field, "a.b[1][\"odd key\"]");
  /* An escape spelling the same key is the same key. */
  ASSERT_EQ(dups("{\"model\":\"m\",\"mod\\u0065l\":\"n\"}", field), SL_EINVAL);
  ASSERT_STR_EQ(field, "model");
  /* The same key in different objects, or differing in case, is fine. */
  ASSERT_EQ(dups("{\"messages\":[{\"role\":\"user\"},{\"role\":\"user\"}],\"Model\":1,\"model\":2}", field), 0);
  /* A large object (the sorted path) with one duplicate at its end, and without. */
  char *big = malloc(200 * 16 + 64);
  size_t n = 0;
  big[n++] = '{';
  for (int i = 0; i < 200; i++) n += (size_t)sprintf(big + n, "%s\"k%d\":%d", i ? "," : "", i, i);
  strcpy(big + n, "}");
  ASSERT_EQ(dups(big, field), 0);
  strcpy(big + n, ",\"k117\":0}");
  ASSERT_EQ(dups(big, field), SL_EINVAL);
  ASSERT_STR_EQ(field, "k117");
  free(big);
}

static size_t prompt_chars(const char *body, int chat) {
  cJSON *root = cJSON_Parse(body);
  size_t n = sl_oai_prompt_chars(root, chat);
  cJSON_Delete(root);
  return n;
}

static void test_prompt_chars_every_form(void) {
  /* String content and array-of-parts content count the same text. */
  ASSERT_UINT_EQ(prompt_chars("{\"messages\":[{\"role\":\"user\",\"content\":\"hello world\"}]}", 1), 11);
  ASSERT_UINT_EQ(prompt_chars("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hello \"},"
                              "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\"}},"
                              "{\"type\":\"text\",\"text\":\"world\"}]}]}",
                              1),
                 11);
  /* Several messages, mixed forms, a refusal part, a bare string part, and
   * things that hold no text. */
  ASSERT_UINT_EQ(prompt_chars("{\"messages\":[{\"role\":\"system\",\"content\":\"abc\"},"
                              "{\"role\":\"assistant\",\"content\":[{\"type\":\"refusal\",\"refusal\":\"no\"}]},"
                              "{\"role\":\"user\",\"content\":[\"de\",{\"type\":\"input_audio\"},7,null]},"
                              "{\"role\":\"assistant\",\"content\":null},{\"role\":\"user\"},5]}",
                              1),
                 7);
  /* Completions: string, array of strings, token ids at 4 characters each. */
  ASSERT_UINT_EQ(prompt_chars("{\"prompt\":\"hello\"}", 0), 5);
  ASSERT_UINT_EQ(prompt_chars("{\"prompt\":[\"ab\",\"cde\"]}", 0), 5);
  ASSERT_UINT_EQ(prompt_chars("{\"prompt\":[1,2,3]}", 0), 12);
  ASSERT_UINT_EQ(prompt_chars("{\"prompt\":[[1,2],[3]]}", 0), 12);
  /* Missing or mistyped: nothing. */
  ASSERT_UINT_EQ(prompt_chars("{\"messages\":\"x\"}", 1), 0);
  ASSERT_UINT_EQ(prompt_chars("{}", 0), 0);
  ASSERT_UINT_EQ(prompt_chars("[1]", 1), 0);
  ASSERT_UINT_EQ(sl_oai_prompt_chars(NULL, 1), 0);
}

/* vLLM with "return_token_ids": choices[i].token_ids on every streamed
 * chunk (wire-formats.md section 2): kept up to SL_EV_MAX_TOKEN_IDS, the
 * rest counted; an array holding anything but ids gives none. */
static void test_token_ids(void) {
  sl_event_t ev;
  ASSERT_EQ(scan("{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" Hi\"},\"logprobs\":null,"
                 "\"finish_reason\":null,\"token_ids\":[15043, 0,2147483647]}]}",
                 &ev),
            0);
  ASSERT_EQ(ev.has_text, 1);
  ASSERT_EQ(ev.has_token_ids, 1);
  ASSERT_EQ(ev.n_token_ids, 3);
  ASSERT_EQ(ev.token_ids_dropped, 0);
  ASSERT_EQ(ev.token_ids[0], 15043);
  ASSERT_EQ(ev.token_ids[1], 0);
  ASSERT_EQ(ev.token_ids[2], 2147483647);
  /* The next event without ids says so, whatever the array still holds. */
  ASSERT_EQ(scan("{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}", &ev), 0);
  ASSERT_EQ(ev.has_token_ids, 0);
  ASSERT_EQ(ev.n_token_ids, 0);
  ASSERT_EQ(ev.token_ids_dropped, 0);
  /* Empty, and null (vLLM without return_token_ids leaves the key out,
   * but a null must not count as ids). */
  ASSERT_EQ(scan("{\"choices\":[{\"delta\":{},\"token_ids\":[]}]}", &ev), 0);
  ASSERT_EQ(ev.has_token_ids, 1);
  ASSERT_EQ(ev.n_token_ids, 0);
  ASSERT_EQ(scan("{\"choices\":[{\"delta\":{},\"token_ids\":null}]}", &ev), 0);
  ASSERT_EQ(ev.has_token_ids, 0);
  /* More than fit: the first SL_EV_MAX_TOKEN_IDS, in order, and the count
   * of the rest. */
  char buf[1024];
  size_t n = (size_t)snprintf(buf, sizeof(buf), "{\"choices\":[{\"delta\":{},\"token_ids\":[");
  for (int i = 0; i < SL_EV_MAX_TOKEN_IDS + 5; i++)
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%d", i ? "," : "", 100 + i);
  snprintf(buf + n, sizeof(buf) - n, "]}]}");
  ASSERT_EQ(scan(buf, &ev), 0);
  ASSERT_EQ(ev.has_token_ids, 1);
  ASSERT_EQ(ev.n_token_ids, SL_EV_MAX_TOKEN_IDS);
  ASSERT_EQ(ev.token_ids_dropped, 5);
  for (int i = 0; i < SL_EV_MAX_TOKEN_IDS; i++) ASSERT_EQ(ev.token_ids[i], 100 + i);
  /* Not ids: negative, a fraction, an exponent, past 2^31 - 1, a string.
   * The payload is still valid, so the event is; only the ids are not. */
  static const char *const bad[] = {"[1,-2]", "[1.5]", "[1e3]", "[2147483648]", "[\"7\"]", "[[1]]"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(buf, sizeof(buf), "{\"choices\":[{\"delta\":{\"content\":\"x\"},\"token_ids\":%s}]}", bad[i]);
    ASSERT_EQ(scan(buf, &ev), 0);
    ASSERT_EQ(ev.kind, SL_EV_CHUNK);
    ASSERT_EQ(ev.has_text, 1);
    ASSERT_EQ(ev.has_token_ids, 0);
    ASSERT_EQ(ev.n_token_ids, 0);
  }
  /* Still validated: a broken array is a broken payload. */
  ASSERT_EQ(scan("{\"choices\":[{\"delta\":{},\"token_ids\":[1,]}]}", &ev), SL_EPARSE);
  ASSERT_EQ(scan("{\"choices\":[{\"delta\":{},\"token_ids\":[01]}]}", &ev), SL_EPARSE);
  /* Only the first choice's ids, and a second "choices" key (the last
   * wins) starts over. */
  ASSERT_EQ(scan("{\"choices\":[{\"delta\":{},\"token_ids\":[1]},{\"delta\":{},\"token_ids\":[2,3]}]}", &ev), 0);
  ASSERT_EQ(ev.n_token_ids, 1);
  ASSERT_EQ(ev.token_ids[0], 1);
  ASSERT_EQ(scan("{\"choices\":[{\"delta\":{},\"token_ids\":[1]}],\"choices\":[{\"delta\":{}}]}", &ev), 0);
  ASSERT_EQ(ev.has_token_ids, 0);
  ASSERT_EQ(ev.n_token_ids, 0);
  /* llama.cpp's native top-level "tokens" is not the OpenAI schema's. */
  ASSERT_EQ(scan("{\"choices\":[{\"delta\":{}}],\"tokens\":[5]}", &ev), 0);
  ASSERT_EQ(ev.has_token_ids, 0);
}

int main(void) {
  SL_RUN(test_openai_chat_chunks);
  SL_RUN(test_logprobs_and_completions);
  SL_RUN(test_engine_variants);
  SL_RUN(test_tool_calls);
  SL_RUN(test_token_ids);
  SL_RUN(test_errors);
  SL_RUN(test_keys_numbers_duplicates);
  SL_RUN(test_invalid_json);
  SL_RUN(test_agrees_with_cjson);
  SL_RUN(test_mutations_rejected_like_cjson);
  SL_RUN(test_unescape_cases);
  SL_RUN(test_escape_cases);
  SL_RUN(test_escape_round_trip_random);
  SL_RUN(test_encode_chunks);
  SL_RUN(test_encode_usage_and_error);
  SL_RUN(test_usage_counts_refused);
  SL_RUN(test_usage_member_span);
  SL_RUN(test_request_utf8_valid);
  SL_RUN(test_request_utf8_invalid_named);
  SL_RUN(test_request_utf8_every_position);
  SL_RUN(test_request_utf8_agrees_with_reference);
  SL_RUN(test_request_json_as_cjson_reads_it);
  SL_RUN(test_request_walk_never_stricter_than_cjson);
  SL_RUN(test_request_duplicate_keys);
  SL_RUN(test_prompt_chars_every_form);
  return SL_TEST_EXIT();
}
