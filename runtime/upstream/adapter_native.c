/* adapter_native.c: the helpers the native adapters' builds and scans
 * share (see adapter.h).  A unit of its own, below the adapters that use
 * it, so that the table (adapter.c) naming the adapters and the adapters
 * using these helpers do not depend on each other in a circle. */
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/upstream/adapter.h"
#include "runtime/upstream/oai.h"

cJSON *sl_adapter_parse(const sl_adapter_req_t *in, char *err, size_t errlen) {
  cJSON *root = in->body ? cJSON_ParseWithLength(in->body, in->body_len) : NULL;
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    snprintf(err, errlen, "the request body to build from is not a JSON object");
    return NULL;
  }
  return root;
}

const cJSON *sl_adapter_max_tokens(const cJSON *body) {
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(body, "max_completion_tokens");
  if (cJSON_IsNumber(m)) return m;
  m = cJSON_GetObjectItemCaseSensitive(body, "max_tokens");
  return cJSON_IsNumber(m) ? m : NULL;
}

int sl_adapter_stop_array(const cJSON *body, cJSON *dst, const char *key, char *err, size_t errlen) {
  const cJSON *stop = cJSON_GetObjectItemCaseSensitive(body, "stop");
  if (stop == NULL || cJSON_IsNull(stop)) return 0;
  cJSON *arr = cJSON_CreateArray();
  if (cJSON_IsString(stop)) {
    cJSON_AddItemToArray(arr, cJSON_CreateString(stop->valuestring));
  } else if (cJSON_IsArray(stop)) {
    const cJSON *s;
    cJSON_ArrayForEach(s, stop) {
      if (!cJSON_IsString(s)) {
        cJSON_Delete(arr);
        snprintf(err, errlen, "stop: every element must be a string");
        return SL_EINVAL;
      }
      cJSON_AddItemToArray(arr, cJSON_CreateString(s->valuestring));
    }
  } else {
    cJSON_Delete(arr);
    snprintf(err, errlen, "stop: must be a string, an array of strings or null");
    return SL_EINVAL;
  }
  cJSON_AddItemToObject(dst, key, arr);
  return 0;
}

void sl_adapter_copy_number(const cJSON *body, const char *key, cJSON *dst, const char *dst_key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);
  if (cJSON_IsNumber(v)) cJSON_AddItemToObject(dst, dst_key, cJSON_Duplicate(v, 0));
}

int sl_adapter_finish(const sl_adapter_req_t *in, const char *path, const char *own_headers, cJSON *engine_body,
                      sl_engine_req_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  char *printed = cJSON_PrintUnformatted(engine_body);
  cJSON_Delete(engine_body);
  size_t n = printed ? strlen(printed) : 0;
  size_t own = strlen(own_headers);
  size_t fwd = in->fwd_headers ? strlen(in->fwd_headers) : 0;
  char *body = printed ? sl_try_malloc(n + 1) : NULL;
  char *headers = sl_try_malloc(own + fwd + 1);
  if (body == NULL || headers == NULL) {
    cJSON_free(printed);
    sl_free(body);
    sl_free(headers);
    snprintf(err, errlen, "out of memory for the engine request");
    return SL_ENOMEM;
  }
  memcpy(body, printed, n + 1);
  cJSON_free(printed);
  memcpy(headers, own_headers, own);
  if (fwd) memcpy(headers + own, in->fwd_headers, fwd);
  headers[own + fwd] = '\0';
  out->method = "POST";
  out->path = path;
  out->headers = headers;
  out->body = body;
  out->body_len = n;
  return 0;
}

void sl_adapter_native_chunk(const char *data, size_t len, sl_event_t *ev) {
  memset(ev, 0, offsetof(sl_event_t, tool_calls));
  memset(&ev->has_logprobs, 0, offsetof(sl_event_t, token_ids) - offsetof(sl_event_t, has_logprobs));
  ev->kind = SL_EV_CHUNK;
  ev->raw.p = data;
  ev->raw.n = len;
  ev->n_choices = 1;
}

void sl_adapter_native_usage(sl_event_t *ev, int64_t prompt, int64_t completion) {
  if (prompt < 0 || completion < 0 || prompt > SL_OAI_USAGE_MAX || completion > SL_OAI_USAGE_MAX) {
    ev->has_usage = 0;
    ev->usage_refused = 1;
    return;
  }
  ev->has_usage = 1;
  ev->prompt_tokens = prompt;
  ev->completion_tokens = completion;
  ev->total_tokens = prompt + completion;
}
