/* fuzz_oai.c: libFuzzer harness for the OpenAI schema helpers
 * (runtime/upstream/oai.h): the stream scanner, the request checks and the
 * JSON string escape and unescape.
 *
 * Input: the whole input, used four ways.  Besides what ASan and UBSan
 * catch, the harness aborts when
 *   - sl_oai_scan or sl_oai_scan_error returns something other than 0 or
 *     SL_EPARSE, or an event's span (id, text, tool-call fragments, error
 *     fields, usage_member...) lies outside the payload, or a count leaves
 *     its array; a scanned string's contents do not unescape (the scan
 *     validated its escapes) or unescape longer than they are;
 *   - sl_oai_check_request refuses without a code and a terminated message,
 *     or with an offset past the body; sl_oai_check_duplicates likewise on
 *     the body cJSON parsed; sl_oai_prompt_chars is not the same twice;
 *   - sl_json_escape of the input does not unescape back to the input,
 *     or writes more than 6 bytes per byte.
 * The input is copied into a buffer of its own size first, so a read past
 * its end shows under ASan.
 *
 * Built by scripts/fuzz (clang, -DSL_FUZZ=ON); seeds in
 * tests/fuzz/corpus/oai/ (tests/fuzz/make_seeds.py). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/errors.h"
#include "runtime/upstream/event.h"
#include "runtime/upstream/oai.h"

static void fail(const char *what) {
  fprintf(stderr, "fuzz_oai: %s\n", what);
  abort();
}

static char scratch[1 << 17];

/* A span must lie inside json[0..len); a string span must unescape. */
static void check_span(const char *json, size_t len, sl_span_t s, int is_string, const char *what) {
  if (s.n == 0) return;
  if (s.p < json || s.p + s.n > json + len) {
    fprintf(stderr, "fuzz_oai: %s span outside the payload\n", what);
    abort();
  }
  if (is_string && s.n <= sizeof(scratch)) {
    size_t w = sl_json_unescape(scratch, s.n, s.p, s.n);
    if (w == (size_t)-1) {
      fprintf(stderr, "fuzz_oai: %s: scanned string contents do not unescape\n", what);
      abort();
    }
  }
}

static void scan(const char *json, size_t len, int error_event) {
  static sl_event_t ev;
  int rc = error_event ? sl_oai_scan_error(json, len, &ev) : sl_oai_scan(json, len, &ev);
  if (rc == SL_EPARSE) return;
  if (rc != 0) fail("scan returned neither 0 nor SL_EPARSE");
  if (ev.kind == SL_EV_DONE) return;
  if (ev.n_tool_calls < 0 || ev.n_tool_calls > SL_EV_MAX_TOOL_CALLS || ev.n_token_ids < 0 ||
      ev.n_token_ids > SL_EV_MAX_TOKEN_IDS)
    fail("a count past its array");
  check_span(json, len, ev.raw, 0, "raw");
  check_span(json, len, ev.id, 1, "id");
  check_span(json, len, ev.object, 1, "object");
  check_span(json, len, ev.model, 1, "model");
  check_span(json, len, ev.role, 1, "role");
  check_span(json, len, ev.text, 1, "text");
  check_span(json, len, ev.reasoning, 1, "reasoning");
  check_span(json, len, ev.finish_raw, 1, "finish_raw");
  check_span(json, len, ev.usage_member, 0, "usage_member");
  check_span(json, len, ev.err_message, 0, "err_message");
  check_span(json, len, ev.err_type, 0, "err_type");
  check_span(json, len, ev.err_code, 0, "err_code");
  for (int i = 0; i < ev.n_tool_calls; i++) {
    check_span(json, len, ev.tool_calls[i].id, 1, "tool id");
    check_span(json, len, ev.tool_calls[i].name, 1, "tool name");
    check_span(json, len, ev.tool_calls[i].arguments, 1, "tool arguments");
  }
}

static void check_problem(int rc, const sl_oai_problem_t *p, size_t len, int offset_counts) {
  if (rc == 0) return;
  if (rc != SL_EINVAL && rc != SL_EPARSE) fail("a request check returned an unknown code");
  if (p->code == NULL || p->code[0] == '\0') fail("a request problem without a code");
  if (memchr(p->message, '\0', sizeof(p->message)) == NULL || p->message[0] == '\0')
    fail("a request problem without a terminated message");
  if (memchr(p->field, '\0', sizeof(p->field)) == NULL) fail("a request problem's field is not terminated");
  for (const char *m = p->message; *m; m++)
    if ((unsigned char)*m < 0x20 || *m == 0x7f) fail("a control character in a problem's message");
  if (offset_counts && p->offset > len) fail("a problem's offset past the body");
}

static void request(const char *json, size_t len) {
  sl_oai_problem_t prob;
  memset(&prob, 0x5A, sizeof(prob));
  check_problem(sl_oai_check_request(json, len, &prob), &prob, len, 1);
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (root == NULL) return;
  memset(&prob, 0x5A, sizeof(prob));
  check_problem(sl_oai_check_duplicates(root, &prob), &prob, len, 0);
  for (int chat = 0; chat <= 1; chat++)
    if (sl_oai_prompt_chars(root, chat) != sl_oai_prompt_chars(root, chat)) fail("prompt_chars is not stable");
  cJSON_Delete(root);
}

static char escaped[6 * 4096 + 1], back[4096];

static void round_trip(const char *in, size_t len) {
  if (len > sizeof(back)) len = sizeof(back);
  size_t e = sl_json_escape(escaped, sizeof(escaped), in, len);
  if (e == (size_t)-1 || e > 6 * len) fail("escape did not fit 6 bytes per byte");
  /* Too small a buffer must be refused, not overrun. */
  if (e > 0 && sl_json_escape(escaped, e - 1, in, len) != (size_t)-1) fail("escape into a short buffer succeeded");
  size_t u = sl_json_unescape(back, sizeof(back), escaped, e);
  if (u != len || memcmp(back, in, len) != 0) fail("escape then unescape does not give the bytes back");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *json = malloc(size ? size : 1);
  if (size) memcpy(json, data, size);
  scan(json, size, 0);
  scan(json, size, 1);
  request(json, size);
  round_trip(json, size);
  free(json);
  return 0;
}
