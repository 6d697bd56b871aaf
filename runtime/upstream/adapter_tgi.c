/* adapter_tgi.c: Hugging Face TGI's native /generate_stream (see adapter.h).
 *
 * Facts from /work/shared/wire-formats.md section 4 (TGI).  The request is
 * {"inputs": prompt, "parameters": {"max_new_tokens", "stop":[...],
 * "temperature", "top_p", "seed", "details":true}}: details is asked for
 * because it carries the finish reason and the counts (serde's default is
 * false).  TGI refuses temperature 0 and top_p 1 (they must be strictly
 * positive and below 1), which OpenAI clients send to mean greedy
 * decoding and no nucleus cut: those are left out, TGI's defaults being
 * exactly that.  The route takes text, not chat messages, so chat
 * requests are refused on this adapter (use "openai" for TGI's
 * /v1/chat/completions); n must be 1.
 *
 * Events come as "data:{...}" (no space) with ":" heartbeats, both read by
 * the SSE framing: {"index","token":{"id","text","logprob","special"},
 * "generated_text":null,"details":null}.  The last has generated_text set
 * and details {"finish_reason": length|eos_token|stop_sequence,
 * "generated_tokens", "input_length"}; no [DONE] follows (the decoder adds
 * it).  A special token's text (the EOS's "</s>") is not part of the
 * answer (generated_text leaves it out), so only its id is kept.  Errors
 * arrive inside the 200 stream as {"error":"...","error_type":"..."},
 * which sl_oai_scan reads.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/errors.h"
#include "runtime/upstream/adapter.h"
#include "runtime/upstream/oai.h"

static const char sl__tgi_headers[] = "Content-Type: application/json\r\nAccept: text/event-stream\r\n";

static int sl__tgi_build(const sl_adapter_t *a, const sl_adapter_req_t *in, sl_engine_req_t *out, char *err,
                         size_t errlen) {
  memset(out, 0, sizeof(*out));
  if (in->chat) {
    snprintf(err, errlen,
             "adapter \"%s\" serves only /v1/completions: TGI's /generate_stream takes text, not chat messages "
             "(use adapter \"openai\" for its /v1/chat/completions)",
             a->name);
    return SL_EINVAL;
  }
  cJSON *body = sl_adapter_parse(in, err, errlen);
  if (body == NULL) return SL_EINVAL;
  const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(body, "n");
  const char *why = NULL;
  if (prompt != NULL && !cJSON_IsString(prompt)) why = "prompt: adapter \"tgi\" takes one prompt string";
  else if (cJSON_IsNumber(n) && n->valuedouble != 1) why = "n: adapter \"tgi\" gives one completion per request";
  if (why != NULL) {
    cJSON_Delete(body);
    snprintf(err, errlen, "%s", why);
    return SL_EINVAL;
  }
  cJSON *eb = cJSON_CreateObject();
  cJSON_AddStringToObject(eb, "inputs", prompt ? prompt->valuestring : "");
  cJSON *p = cJSON_AddObjectToObject(eb, "parameters");
  const cJSON *mt = sl_adapter_max_tokens(body);
  if (mt) cJSON_AddNumberToObject(p, "max_new_tokens", mt->valuedouble);
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(body, "temperature");
  if (cJSON_IsNumber(t) && t->valuedouble > 0) cJSON_AddNumberToObject(p, "temperature", t->valuedouble);
  const cJSON *tp = cJSON_GetObjectItemCaseSensitive(body, "top_p");
  if (cJSON_IsNumber(tp) && tp->valuedouble > 0 && tp->valuedouble < 1)
    cJSON_AddNumberToObject(p, "top_p", tp->valuedouble);
  sl_adapter_copy_number(body, "seed", p, "seed");
  if (sl_adapter_stop_array(body, p, "stop", err, errlen) < 0) {
    cJSON_Delete(body);
    cJSON_Delete(eb);
    return SL_EINVAL;
  }
  cJSON_AddTrueToObject(p, "details");
  cJSON_Delete(body);
  return sl_adapter_finish(in, "/generate_stream", sl__tgi_headers, eb, out, err, errlen);
}

/* "token": {"id", "text", "special", ...}. */
static int sl__tgi_token(sl_jcur_t *c, sl_event_t *ev) {
  if (*c->p != '{') return sl_jcur_skip(c);
  sl_span_t k, text = {NULL, 0};
  int r, kesc, first = 1, has_text = 0, special = 0, has, has_id = 0;
  int64_t id = 0;
  if (sl_jcur_object(c) < 0) return SL_EPARSE;
  while ((r = sl_jcur_member(c, &first, &k, &kesc)) > 0) {
    if (sl_jcur_key_is(k, kesc, "text")) r = sl_jcur_str(c, &text, &has_text);
    else if (sl_jcur_key_is(k, kesc, "id")) r = sl_jcur_int(c, &id, &has_id);
    else if (sl_jcur_key_is(k, kesc, "special")) r = sl_jcur_bool(c, &special, &has);
    else r = sl_jcur_skip(c);
    if (r < 0) return r;
  }
  if (r < 0) return r;
  if (has_id && id >= 0 && id <= INT32_MAX) {
    ev->has_token_ids = 1;
    ev->n_token_ids = 1;
    ev->token_ids[0] = (int32_t)id;
  }
  if (!special) {
    ev->has_text = has_text;
    ev->text = text;
  }
  return 0;
}

/* "details": {"finish_reason", "generated_tokens", "input_length", ...}. */
static int sl__tgi_details(sl_jcur_t *c, sl_event_t *ev) {
  if (*c->p != '{') return sl_jcur_skip(c);
  sl_span_t k;
  int r, kesc, first = 1, has, has_gen = 0, has_in = 0;
  int64_t gen = 0, input = 0;
  if (sl_jcur_object(c) < 0) return SL_EPARSE;
  while ((r = sl_jcur_member(c, &first, &k, &kesc)) > 0) {
    if (sl_jcur_key_is(k, kesc, "finish_reason")) r = sl_jcur_str(c, &ev->finish_raw, &has);
    else if (sl_jcur_key_is(k, kesc, "generated_tokens")) r = sl_jcur_int(c, &gen, &has_gen);
    else if (sl_jcur_key_is(k, kesc, "input_length")) r = sl_jcur_int(c, &input, &has_in);
    else r = sl_jcur_skip(c);
    if (r < 0) return r;
  }
  if (r < 0) return r;
  if (has_gen && has_in) sl_adapter_native_usage(ev, input, gen);
  return 0;
}

static int sl__tgi_scan(const char *data, size_t len, const char *event, size_t event_len, sl_event_t *ev) {
  (void)event;
  (void)event_len;
  sl_adapter_native_chunk(data, len, ev);
  sl_jcur_t c = {data, data + len, 0};
  sl_span_t k, generated = {NULL, 0};
  int r, kesc, first = 1, has_generated = 0, is_error = 0;
  int64_t index = 0;
  int has;
  if (sl_jcur_object(&c) < 0) return SL_EPARSE;
  while ((r = sl_jcur_member(&c, &first, &k, &kesc)) > 0) {
    if (sl_jcur_key_is(k, kesc, "token")) r = sl__tgi_token(&c, ev);
    else if (sl_jcur_key_is(k, kesc, "generated_text")) r = sl_jcur_str(&c, &generated, &has_generated);
    else if (sl_jcur_key_is(k, kesc, "details")) r = sl__tgi_details(&c, ev);
    else if (sl_jcur_key_is(k, kesc, "index")) r = sl_jcur_int(&c, &index, &has);
    else if (sl_jcur_key_is(k, kesc, "error")) {
      is_error = 1;
      r = sl_jcur_skip(&c);
    } else r = sl_jcur_skip(&c);
    if (r < 0) return r;
  }
  if (r < 0 || sl_jcur_end(&c) < 0) return SL_EPARSE;
  if (is_error) return sl_oai_scan(data, len, ev) < 0 ? SL_EPARSE : 0;
  /* TGI's index counts tokens, not choices: the one choice is 0. */
  ev->choice_index = 0;
  if (has_generated) {
    ev->ends_stream = 1;
    /* Without details (not asked for) the reason is unknown: a stop. */
    ev->finish = ev->finish_raw.n > 0 ? sl_finish_of(ev->finish_raw) : SL_FINISH_STOP;
  } else {
    ev->finish_raw.p = NULL;
    ev->finish_raw.n = 0;
    ev->has_usage = ev->usage_refused = 0; /* details belong to the last event */
    ev->prompt_tokens = ev->completion_tokens = ev->total_tokens = 0;
  }
  return 0;
}

const sl_adapter_t sl_adapter_tgi = {
    .name = "tgi",
    .health_path = "/health",
    .framing = SL_FRAMING_SSE,
    .build = sl__tgi_build,
    .scan = sl__tgi_scan,
    .native = 1,
};
