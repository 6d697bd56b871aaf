/* adapter_ollama.c: Ollama's native NDJSON routes (see adapter.h).
 *
 * Facts from /work/shared/wire-formats.md section 5 (OLL).  Chat requests
 * go to POST /api/chat with {"model", "messages", "stream":true,
 * "options":{...}}, legacy completions to POST /api/generate with
 * {"model", "prompt", ...}.  The options are num_predict (the token limit:
 * max_completion_tokens, else max_tokens), stop (an array), temperature,
 * top_p and seed.  Ollama's message content is a string, so an OpenAI
 * content array is joined from its text parts; a part of another kind
 * (an image) and tool calls or tool messages are refused on this adapter
 * with a sentence naming the message, as is n other than 1.
 *
 * The reply is NDJSON: {"model","created_at","response":"The","done":false}
 * (/api/generate) or {"model",...,"message":{"role","content"[,"thinking"]},
 * "done":false} (/api/chat).  The last line has "done":true, "done_reason"
 * (stop or length; load and unload for the one-line replies) and the
 * counts prompt_eval_count and eval_count, which are the usage (the
 * durations, in ns, are not carried over).  No [DONE] follows (the decoder
 * adds it).  An error once streaming started is a last line
 * {"error":"..."}, read by sl_oai_scan.  Tool calls come whole, with
 * arguments as an object; they are not carried over (docs/engines.md).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/errors.h"
#include "runtime/upstream/adapter.h"
#include "runtime/upstream/oai.h"

static const char sl__oll_headers[] = "Content-Type: application/json\r\nAccept: application/x-ndjson\r\n";

/* messages[i].content as one string: a string as it is, null as "", an
 * array of parts joined from their "text".  NULL with err set otherwise. */
static cJSON *sl__oll_content(const cJSON *content, int i, char *err, size_t errlen) {
  if (content == NULL || cJSON_IsNull(content)) return cJSON_CreateString("");
  if (cJSON_IsString(content)) return cJSON_CreateString(content->valuestring);
  if (!cJSON_IsArray(content)) {
    snprintf(err, errlen, "messages[%d].content: must be a string or an array of text parts", i);
    return NULL;
  }
  size_t n = 0;
  const cJSON *part;
  cJSON_ArrayForEach(part, content) {
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
    if (!cJSON_IsString(text)) {
      snprintf(err, errlen, "messages[%d].content: adapter \"ollama\" takes text parts only", i);
      return NULL;
    }
    n += strlen(text->valuestring);
  }
  char *joined = cJSON_malloc(n + 1);
  if (joined == NULL) {
    snprintf(err, errlen, "out of memory for messages[%d].content", i);
    return NULL;
  }
  size_t k = 0;
  cJSON_ArrayForEach(part, content) {
    const char *t = cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring;
    size_t m = strlen(t);
    memcpy(joined + k, t, m);
    k += m;
  }
  joined[k] = '\0';
  cJSON *s = cJSON_CreateString(joined);
  cJSON_free(joined);
  return s;
}

/* The client's messages as Ollama's: role and a string content each. */
static cJSON *sl__oll_messages(const cJSON *body, char *err, size_t errlen) {
  const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
  if (!cJSON_IsArray(msgs)) {
    snprintf(err, errlen, "messages: must be an array");
    return NULL;
  }
  cJSON *out = cJSON_CreateArray();
  int i = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, msgs) {
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    const char *why = NULL;
    if (!cJSON_IsString(role)) why = "role must be a string";
    else if (cJSON_GetObjectItemCaseSensitive(m, "tool_calls") != NULL || strcmp(role->valuestring, "tool") == 0)
      why = "tool calls are not carried by adapter \"ollama\"";
    cJSON *content = why ? NULL : sl__oll_content(cJSON_GetObjectItemCaseSensitive(m, "content"), i, err, errlen);
    if (why != NULL) snprintf(err, errlen, "messages[%d]: %s", i, why);
    if (content == NULL) {
      cJSON_Delete(out);
      return NULL;
    }
    cJSON *om = cJSON_CreateObject();
    cJSON_AddStringToObject(om, "role", role->valuestring);
    cJSON_AddItemToObject(om, "content", content);
    cJSON_AddItemToArray(out, om);
    i++;
  }
  return out;
}

static int sl__oll_build(const sl_adapter_t *a, const sl_adapter_req_t *in, sl_engine_req_t *out, char *err,
                         size_t errlen) {
  memset(out, 0, sizeof(*out));
  cJSON *body = sl_adapter_parse(in, err, errlen);
  if (body == NULL) return SL_EINVAL;
  cJSON *eb = cJSON_CreateObject();
  int rc = 0;
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(body, "n");
  if (cJSON_IsString(model)) cJSON_AddStringToObject(eb, "model", model->valuestring);
  if (cJSON_IsNumber(n) && n->valuedouble != 1) {
    snprintf(err, errlen, "n: adapter \"%s\" gives one completion per request", a->name);
    rc = SL_EINVAL;
  } else if (in->chat) {
    cJSON *msgs = sl__oll_messages(body, err, errlen);
    if (msgs == NULL) rc = SL_EINVAL;
    else cJSON_AddItemToObject(eb, "messages", msgs);
  } else {
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    if (prompt != NULL && !cJSON_IsString(prompt)) {
      snprintf(err, errlen, "prompt: adapter \"%s\" takes one prompt string", a->name);
      rc = SL_EINVAL;
    } else {
      cJSON_AddStringToObject(eb, "prompt", prompt ? prompt->valuestring : "");
    }
  }
  cJSON_AddTrueToObject(eb, "stream");
  cJSON *opt = cJSON_AddObjectToObject(eb, "options");
  const cJSON *mt = sl_adapter_max_tokens(body);
  if (mt) cJSON_AddNumberToObject(opt, "num_predict", mt->valuedouble);
  sl_adapter_copy_number(body, "temperature", opt, "temperature");
  sl_adapter_copy_number(body, "top_p", opt, "top_p");
  sl_adapter_copy_number(body, "seed", opt, "seed");
  if (rc == 0) rc = sl_adapter_stop_array(body, opt, "stop", err, errlen);
  cJSON_Delete(body);
  if (rc < 0) {
    cJSON_Delete(eb);
    return rc;
  }
  return sl_adapter_finish(in, in->chat ? "/api/chat" : "/api/generate", sl__oll_headers, eb, out, err, errlen);
}

/* "message": {"role", "content", "thinking", "tool_calls"}. */
static int sl__oll_message(sl_jcur_t *c, sl_event_t *ev) {
  if (*c->p != '{') return sl_jcur_skip(c);
  sl_span_t k;
  int r, kesc, first = 1;
  if (sl_jcur_object(c) < 0) return SL_EPARSE;
  while ((r = sl_jcur_member(c, &first, &k, &kesc)) > 0) {
    if (sl_jcur_key_is(k, kesc, "content")) r = sl_jcur_str(c, &ev->text, &ev->has_text);
    else if (sl_jcur_key_is(k, kesc, "thinking")) r = sl_jcur_str(c, &ev->reasoning, &ev->has_reasoning);
    else r = sl_jcur_skip(c);
    if (r < 0) return r;
  }
  return r;
}

static int sl__oll_scan(const char *data, size_t len, const char *event, size_t event_len, sl_event_t *ev) {
  (void)event;
  (void)event_len;
  sl_adapter_native_chunk(data, len, ev);
  sl_jcur_t c = {data, data + len, 0};
  sl_span_t k, reason = {NULL, 0};
  int r, kesc, first = 1, done = 0, has, has_prompt = 0, has_eval = 0, is_error = 0;
  int64_t prompt = 0, eval = 0;
  if (sl_jcur_object(&c) < 0) return SL_EPARSE;
  while ((r = sl_jcur_member(&c, &first, &k, &kesc)) > 0) {
    if (sl_jcur_key_is(k, kesc, "response")) r = sl_jcur_str(&c, &ev->text, &ev->has_text);
    else if (sl_jcur_key_is(k, kesc, "message")) r = sl__oll_message(&c, ev);
    else if (sl_jcur_key_is(k, kesc, "thinking")) r = sl_jcur_str(&c, &ev->reasoning, &ev->has_reasoning);
    else if (sl_jcur_key_is(k, kesc, "done")) r = sl_jcur_bool(&c, &done, &has);
    else if (sl_jcur_key_is(k, kesc, "done_reason")) r = sl_jcur_str(&c, &reason, &has);
    else if (sl_jcur_key_is(k, kesc, "prompt_eval_count")) r = sl_jcur_int(&c, &prompt, &has_prompt);
    else if (sl_jcur_key_is(k, kesc, "eval_count")) r = sl_jcur_int(&c, &eval, &has_eval);
    else if (sl_jcur_key_is(k, kesc, "model")) r = sl_jcur_str(&c, &ev->model, &has);
    else if (sl_jcur_key_is(k, kesc, "error")) {
      is_error = 1;
      r = sl_jcur_skip(&c);
    } else r = sl_jcur_skip(&c);
    if (r < 0) return r;
  }
  if (r < 0 || sl_jcur_end(&c) < 0) return SL_EPARSE;
  if (is_error) return sl_oai_scan(data, len, ev) < 0 ? SL_EPARSE : 0;
  if (done) {
    ev->ends_stream = 1;
    ev->finish_raw = reason;
    ev->finish = reason.n > 0 ? sl_finish_of(reason) : SL_FINISH_STOP;
    /* A prompt served from the cache has no prompt_eval_count: 0 then. */
    if (has_eval) sl_adapter_native_usage(ev, has_prompt ? prompt : 0, eval);
  }
  return 0;
}

const sl_adapter_t sl_adapter_ollama = {
    .name = "ollama",
    .health_path = "/",
    .framing = SL_FRAMING_NDJSON,
    .build = sl__oll_build,
    .scan = sl__oll_scan,
    .native = 1,
};
