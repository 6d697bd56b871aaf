/* request.c: the steps of the request phase (see request.h).
 *
 * The body is checked as text before it is parsed (valid UTF-8 in every
 * key and value, no NUL), and as a tree after (no key twice in an object),
 * so what is validated is exactly what the engine reads.  Each failure
 * names the field and, where there is one, the value; the texts are the
 * API's contract with clients (tests/e2e/e2e_input.c and e2e_api.c check
 * them), so they change only on purpose.
 */
#include "runtime/gateway/request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/base/errors.h"
#include "runtime/upstream/oai.h"

static int sl__refuse(sl_request_error_t *e, int status, const char *type, const char *code, int counter,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int sl__refuse(sl_request_error_t *e, int status, const char *type, const char *code, int counter,
                      const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof(e->message), fmt, ap);
  va_end(ap);
  e->status = status;
  e->type = type;
  e->code = code;
  e->counter = counter;
  return -1;
}

/* A 400 invalid_request_error about field (the usual refusal). */
#define SL__BAD(e, field, ...) \
  sl__refuse((e), 400, "invalid_request_error", (field), SL_C_ERR_BAD_REQUEST, __VA_ARGS__)

/* ---- step 1: parse ---- */

int sl_request_parse(const char *body, size_t len, cJSON **root, sl_request_error_t *e) {
  *root = NULL;
  if (len == 0) return SL__BAD(e, "body", "request body is empty; expected a JSON object");
  /* cJSON does not validate UTF-8 and ends a string at a NUL; the text
   * check refuses both, naming the field, before anything is parsed.  It
   * leaves JSON syntax to cJSON. */
  sl_oai_problem_t problem;
  int text = sl_oai_check_request(body, len, &problem);
  if (text == SL_EINVAL) return SL__BAD(e, problem.code, "%s", problem.message);
  const char *end = NULL;
  cJSON *r = cJSON_ParseWithLengthOpts(body, len, &end, 0);
  if (r != NULL) {
    /* Only whitespace may follow the value. */
    const char *p = end, *stop = body + len;
    while (p < stop && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    if (p != stop) {
      cJSON_Delete(r);
      r = NULL;
      end = p;
    }
  }
  if (r == NULL) {
    size_t off = end ? (size_t)(end - body) : 0;
    return SL__BAD(e, "body", "request body is not valid JSON (error near byte %zu)", off);
  }
  if (text < 0) {
    /* cJSON took what the text check could not walk (it mirrors cJSON's
     * syntax, so this should not happen): refuse rather than forward
     * strings nobody checked. */
    cJSON_Delete(r);
    return SL__BAD(e, problem.code, "%s", problem.message);
  }
  if (!cJSON_IsObject(r)) {
    cJSON_Delete(r);
    return SL__BAD(e, "body", "request body must be a JSON object");
  }
  /* cJSON's lookups return the first of duplicate keys while an engine may
   * read the last, so the request validated would not be the one served. */
  if (sl_oai_check_duplicates(r, &problem) < 0) {
    cJSON_Delete(r);
    return SL__BAD(e, problem.code, "%s", problem.message);
  }
  *root = r;
  return 0;
}

/* ---- step 2: validate ---- */

static int sl__check_positive_int(const cJSON *root, const char *name, sl_request_error_t *e) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
  if (v == NULL || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
    return SL__BAD(e, name, "'%s' must be an integer", name);
  if (v->valuedouble < 1) return SL__BAD(e, name, "'%s' must be at least 1, got %.0f", name, v->valuedouble);
  if (v->valuedouble > 1e9) return SL__BAD(e, name, "'%s' is too large: %.0f", name, v->valuedouble);
  return 0;
}

static int sl__check_number(const cJSON *root, const char *name, double lo, double hi, sl_request_error_t *e) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
  if (v == NULL || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsNumber(v)) return SL__BAD(e, name, "'%s' must be a number", name);
  if (v->valuedouble < lo || v->valuedouble > hi)
    return SL__BAD(e, name, "'%s' must be between %g and %g, got %g", name, lo, hi, v->valuedouble);
  return 0;
}

/* The input a chat request must carry: a non-empty array of messages,
 * each an object with a string role. */
static int sl__check_messages(const cJSON *root, sl_request_error_t *e) {
  const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
  if (msgs == NULL) return SL__BAD(e, "messages", "'messages' is required");
  if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
    return SL__BAD(e, "messages", "'messages' must be a non-empty array");
  int i = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, msgs) {
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    if (!cJSON_IsObject(m)) return SL__BAD(e, "messages", "'messages[%d]' must be an object", i);
    if (!cJSON_IsString(role)) return SL__BAD(e, "messages", "'messages[%d].role' must be a string", i);
    i++;
  }
  return 0;
}

/* The input a legacy completion must carry: a string or a non-empty
 * array prompt. */
static int sl__check_prompt(const cJSON *root, sl_request_error_t *e) {
  const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(root, "prompt");
  if (prompt == NULL) return SL__BAD(e, "prompt", "'prompt' is required");
  if (!cJSON_IsString(prompt) && !(cJSON_IsArray(prompt) && cJSON_GetArraySize(prompt) > 0))
    return SL__BAD(e, "prompt", "'prompt' must be a string or a non-empty array");
  return 0;
}

/* stream and stream_options: what the client asked to receive. */
static int sl__check_streaming(const cJSON *root, sl_request_t *r, sl_request_error_t *e) {
  const cJSON *stream = cJSON_GetObjectItemCaseSensitive(root, "stream");
  if (stream != NULL && !cJSON_IsNull(stream) && !cJSON_IsBool(stream))
    return SL__BAD(e, "stream", "'stream' must be a boolean");
  r->stream = cJSON_IsTrue(stream);
  const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
  if (so == NULL || cJSON_IsNull(so)) return 0;
  if (!cJSON_IsObject(so)) return SL__BAD(e, "stream_options", "'stream_options' must be an object");
  if (!r->stream)
    return SL__BAD(e, "stream_options", "'stream_options' is only allowed when 'stream' is true");
  const cJSON *iu = cJSON_GetObjectItemCaseSensitive(so, "include_usage");
  if (iu != NULL && !cJSON_IsNull(iu) && !cJSON_IsBool(iu))
    return SL__BAD(e, "stream_options.include_usage", "'stream_options.include_usage' must be a boolean");
  r->include_usage = cJSON_IsTrue(iu);
  return 0;
}

/* The sampling fields sluice understands enough to refuse nonsense. */
static int sl__check_sampling(const cJSON *root, sl_request_error_t *e) {
  if (sl__check_positive_int(root, "max_tokens", e) < 0) return -1;
  if (sl__check_positive_int(root, "max_completion_tokens", e) < 0) return -1;
  if (sl__check_number(root, "temperature", 0, 2, e) < 0) return -1;
  if (sl__check_number(root, "top_p", 0, 1, e) < 0) return -1;
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "n");
  if (n != NULL && !cJSON_IsNull(n) && (!cJSON_IsNumber(n) || n->valuedouble != 1))
    return SL__BAD(e, "n", "'n' must be 1 (sluice relays one choice per request)");
  const cJSON *stop = cJSON_GetObjectItemCaseSensitive(root, "stop");
  if (stop != NULL && !cJSON_IsNull(stop) && !cJSON_IsString(stop) && !cJSON_IsArray(stop))
    return SL__BAD(e, "stop", "'stop' must be a string, an array of strings, or null");
  return 0;
}

/* The client's stop strings, which the stop guard enforces (the engine
 * gets them too). */
static int sl__read_stops(const cJSON *root, sl_request_t *r, sl_request_error_t *e) {
  const cJSON *stop = cJSON_GetObjectItemCaseSensitive(root, "stop");
  if (stop == NULL || cJSON_IsNull(stop)) return 0;
  const cJSON *one = cJSON_IsString(stop) ? stop : NULL, *it = one;
  if (one == NULL) {
    if (cJSON_GetArraySize(stop) > SL_REQUEST_STOPS)
      return SL__BAD(e, "stop", "'stop' may hold at most %d strings", SL_REQUEST_STOPS);
    it = stop->child;
  }
  for (int i = 0; it != NULL; i++, it = one ? NULL : it->next) {
    if (!cJSON_IsString(it)) return SL__BAD(e, "stop", "'stop[%d]' must be a string", i);
    size_t n = strlen(it->valuestring);
    if (n == 0 || n > SL_REQUEST_STOP_MAX) {
      if (one) return SL__BAD(e, "stop", "'stop' must be 1 to %d bytes, got %zu", SL_REQUEST_STOP_MAX, n);
      return SL__BAD(e, "stop", "'stop[%d]' must be 1 to %d bytes, got %zu", i, SL_REQUEST_STOP_MAX, n);
    }
    memcpy(r->stops[r->nstops], it->valuestring, n + 1);
    r->stop_lens[r->nstops++] = n;
  }
  return 0;
}

int sl_request_validate(const cJSON *root, int chat, const char *session, sl_request_t *r,
                        sl_request_error_t *e) {
  r->chat = chat;
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  if (model == NULL) return SL__BAD(e, "model", "'model' is required");
  if (!cJSON_IsString(model) || model->valuestring[0] == '\0')
    return SL__BAD(e, "model", "'model' must be a non-empty string");
  if (strlen(model->valuestring) >= sizeof(r->model)) return SL__BAD(e, "model", "'model' is too long");
  snprintf(r->model, sizeof(r->model), "%s", model->valuestring);
  if ((chat ? sl__check_messages(root, e) : sl__check_prompt(root, e)) < 0) return -1;
  if (sl__check_streaming(root, r, e) < 0) return -1;
  if (sl__check_sampling(root, e) < 0) return -1;
  if (sl__read_stops(root, r, e) < 0) return -1;
  /* What placement may weigh: prompt size (every content form, counted
   * as the simulated engine counts it), requested length, session. */
  r->prompt_chars = sl_oai_prompt_chars(root, chat);
  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "max_completion_tokens");
  if (!cJSON_IsNumber(mt)) mt = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");
  if (cJSON_IsNumber(mt)) r->max_tokens = (int64_t)mt->valuedouble;
  /* A session id too long to keep is refused rather than hashed: a hash
   * would hand affinity policies a key the client never sent (policies log
   * it and match it against ids seen elsewhere), while a 400 tells the
   * client the limit at once instead of silently losing affinity. */
  if (session != NULL && strlen(session) >= sizeof(r->session))
    return SL__BAD(e, "x-session-id", "header 'X-Session-Id' is too long: %zu bytes (at most %zu)",
                   strlen(session), sizeof(r->session) - 1);
  if (session != NULL) snprintf(r->session, sizeof(r->session), "%s", session);
  return 0;
}

int sl_request_check_model(const sl_registry_t *reg, const sl_request_t *r, sl_request_error_t *e) {
  if (sl_registry_has_model(reg, r->model)) return 0;
  return sl__refuse(e, 404, "invalid_request_error", "model_not_found", SL_C_ERR_NOT_FOUND,
                    "The model '%s' does not exist (GET /v1/models lists the models served)", r->model);
}

/* ---- step 4: keep what the adapters build from ---- */

int sl_request_keep_body(cJSON *root, sl_request_t *r, sl_request_error_t *e) {
  /* Validation refused duplicate keys, so each name is at most once. */
  cJSON_DeleteItemFromObjectCaseSensitive(root, "stream");
  cJSON_DeleteItemFromObjectCaseSensitive(root, "stream_options");
  char *body = cJSON_PrintUnformatted(root);
  if (body == NULL)
    return sl__refuse(e, 500, "server_error", "out_of_memory", -1,
                      "sluice ran out of memory while keeping the request body");
  r->body_len = strlen(body);
  r->body = sl_strndup(body, r->body_len);
  cJSON_free(body);
  return 0;
}
