/* adapter_llamacpp.c: llama.cpp's native /completion route (see adapter.h).
 *
 * Facts from /work/shared/wire-formats.md section 3 (LCPP).  The request
 * is {"prompt", "n_predict", "stop":[...], "temperature", "top_p", "seed",
 * "stream":true, "return_tokens":true}: token ids are always asked for, so
 * the loop guard sees them.  The route takes a prompt, not chat messages,
 * and sluice knows no model's chat template, so chat requests are refused
 * on this adapter with a sentence saying so (use "openai" for llama.cpp's
 * /v1/chat/completions); n must be 1.
 *
 * Each SSE event is {"index","content","tokens":[ids],"stop":false,...};
 * the last has "stop":true, "stop_type" (none|eos|limit|word),
 * "tokens_predicted", "tokens_evaluated", "model" and "timings", and no
 * [DONE] follows (the decoder adds it: event.h's ends_stream).  stop_type
 * limit is OpenAI's "length", the others "stop".  Usage is
 * tokens_evaluated / tokens_predicted (timings.prompt_n counts only the
 * prompt tokens not served from the cache).  An {"error":{...}} event is
 * read by sl_oai_scan.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/errors.h"
#include "runtime/upstream/adapter.h"
#include "runtime/upstream/oai.h"

static const char sl__lcpp_headers[] = "Content-Type: application/json\r\nAccept: text/event-stream\r\n";

static int sl__lcpp_build(const sl_adapter_t *a, const sl_adapter_req_t *in, sl_engine_req_t *out, char *err,
                          size_t errlen) {
  memset(out, 0, sizeof(*out));
  if (in->chat) {
    snprintf(err, errlen,
             "adapter \"%s\" serves only /v1/completions: llama.cpp's /completion takes a prompt, not chat "
             "messages (use adapter \"openai\" for its /v1/chat/completions)",
             a->name);
    return SL_EINVAL;
  }
  cJSON *body = sl_adapter_parse(in, err, errlen);
  if (body == NULL) return SL_EINVAL;
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(body, "n");
  if (cJSON_IsNumber(n) && n->valuedouble != 1) {
    cJSON_Delete(body);
    snprintf(err, errlen, "n: adapter \"%s\" gives one completion per request", a->name);
    return SL_EINVAL;
  }
  cJSON *eb = cJSON_CreateObject();
  const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
  cJSON_AddItemToObject(eb, "prompt", prompt ? cJSON_Duplicate(prompt, 1) : cJSON_CreateString(""));
  const cJSON *mt = sl_adapter_max_tokens(body);
  if (mt) cJSON_AddNumberToObject(eb, "n_predict", mt->valuedouble);
  sl_adapter_copy_number(body, "temperature", eb, "temperature");
  sl_adapter_copy_number(body, "top_p", eb, "top_p");
  sl_adapter_copy_number(body, "seed", eb, "seed");
  if (sl_adapter_stop_array(body, eb, "stop", err, errlen) < 0) {
    cJSON_Delete(body);
    cJSON_Delete(eb);
    return SL_EINVAL;
  }
  cJSON_AddTrueToObject(eb, "stream");
  cJSON_AddTrueToObject(eb, "return_tokens");
  cJSON_Delete(body);
  return sl_adapter_finish(in, "/completion", sl__lcpp_headers, eb, out, err, errlen);
}

/* The ids of "tokens" into ev (an array holding anything but ids in
 * [0, 2^31) gives none, as the OpenAI scan does). */
static int sl__lcpp_tokens(sl_jcur_t *c, sl_event_t *ev) {
  if (*c->p != '[') return sl_jcur_skip(c);
  int r, first = 1, ok = 1, n = 0, dropped = 0;
  if (sl_jcur_array(c) < 0) return SL_EPARSE;
  while ((r = sl_jcur_element(c, &first)) > 0) {
    int64_t v;
    int has;
    if (sl_jcur_int(c, &v, &has) < 0) return SL_EPARSE;
    if (!has || v < 0 || v > INT32_MAX) ok = 0;
    else if (n < SL_EV_MAX_TOKEN_IDS) ev->token_ids[n++] = (int32_t)v;
    else dropped++;
  }
  if (r < 0) return r;
  ev->has_token_ids = ok;
  ev->n_token_ids = ok ? n : 0;
  ev->token_ids_dropped = ok ? dropped : 0;
  return 0;
}

static int sl__lcpp_scan(const char *data, size_t len, const char *event, size_t event_len, sl_event_t *ev) {
  (void)event;
  (void)event_len;
  sl_adapter_native_chunk(data, len, ev);
  sl_jcur_t c = {data, data + len, 0};
  sl_span_t k, stop_type = {NULL, 0};
  int r, kesc, first = 1, stop = 0, has, has_pred = 0, has_eval = 0, is_error = 0;
  int64_t predicted = 0, evaluated = 0, index = 0;
  if (sl_jcur_object(&c) < 0) return SL_EPARSE;
  while ((r = sl_jcur_member(&c, &first, &k, &kesc)) > 0) {
    if (sl_jcur_key_is(k, kesc, "content")) r = sl_jcur_str(&c, &ev->text, &ev->has_text);
    else if (sl_jcur_key_is(k, kesc, "tokens")) r = sl__lcpp_tokens(&c, ev);
    else if (sl_jcur_key_is(k, kesc, "stop")) r = sl_jcur_bool(&c, &stop, &has);
    else if (sl_jcur_key_is(k, kesc, "stop_type")) r = sl_jcur_str(&c, &stop_type, &has);
    else if (sl_jcur_key_is(k, kesc, "tokens_predicted")) r = sl_jcur_int(&c, &predicted, &has_pred);
    else if (sl_jcur_key_is(k, kesc, "tokens_evaluated")) r = sl_jcur_int(&c, &evaluated, &has_eval);
    else if (sl_jcur_key_is(k, kesc, "model")) r = sl_jcur_str(&c, &ev->model, &has);
    else if (sl_jcur_key_is(k, kesc, "index")) r = sl_jcur_int(&c, &index, &has);
    else if (sl_jcur_key_is(k, kesc, "error")) {
      is_error = 1;
      r = sl_jcur_skip(&c);
    } else r = sl_jcur_skip(&c);
    if (r < 0) return r;
  }
  if (r < 0 || sl_jcur_end(&c) < 0) return SL_EPARSE;
  /* An error event is the OpenAI error object (section 3, "Errors"). */
  if (is_error) return sl_oai_scan(data, len, ev) < 0 ? SL_EPARSE : 0;
  ev->choice_index = index > 0 && index < 1024 ? (int)index : 0;
  if (stop) {
    ev->ends_stream = 1;
    ev->finish_raw = stop_type;
    /* "limit" is n_predict running out; eos, word and none are a stop. */
    ev->finish = stop_type.n == 5 && memcmp(stop_type.p, "limit", 5) == 0 ? SL_FINISH_LENGTH : SL_FINISH_STOP;
    if (has_pred && has_eval) sl_adapter_native_usage(ev, evaluated, predicted);
  }
  return 0;
}

const sl_adapter_t sl_adapter_llamacpp = {
    .name = "llamacpp",
    .health_path = "/health",
    .framing = SL_FRAMING_SSE,
    .build = sl__lcpp_build,
    .scan = sl__lcpp_scan,
    .native = 1,
};
