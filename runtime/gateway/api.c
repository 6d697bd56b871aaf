/* api.c: the client API: routes, request validation, and the small
 * operational endpoints.
 *
 * Routes: POST /v1/chat/completions and POST /v1/completions (to the relay),
 * GET /v1/models, GET /health (counters and endpoint states as JSON),
 * GET /ready (200 when some endpoint is ready, else 503).  A known path with
 * the wrong method is 405 with Allow; anything else is 404.  Validation
 * answers 400 naming the field and the value, 404 for an unknown model, and
 * builds the body sent upstream: the client's JSON with stream forced on and
 * usage requested, since sluice always streams from the engine and
 * assembles non-streaming answers itself.  Authorization is accepted and
 * ignored while no tenants are configured, and never forwarded.
 *
 * The body is checked as text before it is parsed (valid UTF-8 in every key
 * and value, no NUL), and as a tree after (no key twice in an object), so
 * what is validated is exactly what the engine reads.  The request id is
 * decided here, at the door, for every completion request: the client's
 * X-Request-Id when it is safe to print, else a generated one; every
 * response and log line for the request carries that id.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/base/errors.h"
#include "runtime/gateway/api.h"
#include "runtime/gateway/gateway.h"
#include "runtime/stream/reply.h"
#include "runtime/base/narrate.h"
#include "runtime/upstream/oai.h"

static void sl__json_reply(sl_http_req_t *req, int status, cJSON *o) {
  char *s = cJSON_PrintUnformatted(o);
  sl_http_respond(req, status, "application/json", s, strlen(s), NULL);
  cJSON_free(s);
  cJSON_Delete(o);
}

/* ---- operational endpoints ---- */

static void sl__health(sl_gateway_t *gw, sl_http_req_t *req) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "status", gw->streams.draining ? "draining" : "ok");
  cJSON_AddNumberToObject(o, "uptime_s", (double)(uv_hrtime() - gw->started_ns) / 1e9);
  cJSON_AddNumberToObject(o, "streams_in_flight", gw->streams.n);
  cJSON_AddNumberToObject(o, "connections", sl_http_server_connections(gw->http));
  cJSON_AddNumberToObject(o, "upstream_connections", sl_upstream_open_connections(&gw->up));
  cJSON_AddNumberToObject(o, "chunk_size", (double)gw->chunks.chunk_size);
  cJSON_AddNumberToObject(o, "stream_pin_bound_bytes", (double)sl_relay_pin_bound(gw->cfg));
  cJSON_AddNumberToObject(o, "snapshot_version", (double)gw->reg.snapshot_version);
  cJSON *c = cJSON_AddObjectToObject(o, "counters");
  for (int i = 0; i < SL_C__COUNT; i++) cJSON_AddNumberToObject(c, sl_counter_name(i), (double)gw->counters.v[i]);
  cJSON *pools = cJSON_AddArrayToObject(o, "pools");
  uint64_t now = uv_hrtime();
  for (int i = 0; i < gw->reg.npools; i++) {
    sl_pool_t *p = &gw->reg.pools[i];
    cJSON *po = cJSON_CreateObject();
    cJSON_AddStringToObject(po, "name", p->cfg->name);
    cJSON *eps = cJSON_AddArrayToObject(po, "endpoints");
    for (int j = 0; j < p->neps; j++) {
      sl_endpoint_t *ep = &p->eps[j];
      cJSON *e = cJSON_CreateObject();
      cJSON_AddStringToObject(e, "address", ep->name);
      cJSON_AddBoolToObject(e, "simulated", sl_gateway_sim(gw, ep) != NULL);
      cJSON_AddBoolToObject(e, "ready", ep->ready);
      cJSON_AddBoolToObject(e, "draining", ep->draining);
      cJSON_AddNumberToObject(e, "streams", ep->inflight);
      cJSON_AddNumberToObject(e, "slots", ep->slots);
      cJSON_AddNumberToObject(e, "cooldown_ms",
                              ep->cooldown_until > now ? (double)(ep->cooldown_until - now) / 1e6 : 0);
      cJSON_AddNumberToObject(e, "consecutive_failures", ep->failures);
      cJSON_AddNumberToObject(e, "requests", (double)ep->requests);
      cJSON_AddNumberToObject(e, "errors", (double)ep->errors);
      cJSON_AddNumberToObject(e, "idle_connections", ep->nidle);
      cJSON_AddItemToArray(eps, e);
    }
    cJSON_AddItemToArray(pools, po);
  }
  sl__json_reply(req, 200, o);
}

static void sl__ready(sl_gateway_t *gw, sl_http_req_t *req) {
  int ready = !gw->streams.draining && sl_registry_any_ready(&gw->reg);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddBoolToObject(o, "ready", ready);
  if (!ready) cJSON_AddStringToObject(o, "reason", gw->streams.draining ? "draining" : "no endpoint has passed its health check");
  sl__json_reply(req, ready ? 200 : 503, o);
}

static void sl__models(sl_gateway_t *gw, sl_http_req_t *req) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "object", "list");
  cJSON *data = cJSON_AddArrayToObject(o, "data");
  for (int i = 0; i < gw->reg.npools; i++) {
    const sl_pool_config_t *p = gw->reg.pools[i].cfg;
    for (int m = 0; m < p->nmodels; m++) {
      int dup = 0;
      for (int a = 0; a <= i && !dup; a++) {
        const sl_pool_config_t *q = gw->reg.pools[a].cfg;
        for (int b = 0; b < (a == i ? m : q->nmodels); b++)
          if (strcmp(q->models[b], p->models[m]) == 0) dup = 1;
      }
      if (dup) continue;
      cJSON *e = cJSON_CreateObject();
      cJSON_AddStringToObject(e, "id", p->models[m]);
      cJSON_AddStringToObject(e, "object", "model");
      cJSON_AddNumberToObject(e, "created", 0);
      char owner[160];
      snprintf(owner, sizeof(owner), "sluice:%s", p->name);
      cJSON_AddStringToObject(e, "owned_by", owner);
      cJSON_AddItemToArray(data, e);
    }
  }
  sl__json_reply(req, 200, o);
}

/* ---- validation ---- */

static int sl__bad(sl_http_req_t *req, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int sl__bad(sl_http_req_t *req, const char *param, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  sl_gateway_t *gw = sl_http_server_ud(req->server);
  sl_counter_inc(&gw->counters, SL_C_ERR_BAD_REQUEST);
  sl_reply_error(req, 400, "invalid_request_error", param, NULL, "%s", msg);
  return -1;
}

static int sl__check_positive_int(sl_http_req_t *req, const cJSON *root, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
  if (v == NULL || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
    return sl__bad(req, name, "'%s' must be an integer", name);
  if (v->valuedouble < 1)
    return sl__bad(req, name, "'%s' must be at least 1, got %.0f", name, v->valuedouble);
  if (v->valuedouble > 1e9) return sl__bad(req, name, "'%s' is too large: %.0f", name, v->valuedouble);
  return 0;
}

static int sl__check_number(sl_http_req_t *req, const cJSON *root, const char *name, double lo, double hi) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
  if (v == NULL || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsNumber(v)) return sl__bad(req, name, "'%s' must be a number", name);
  if (v->valuedouble < lo || v->valuedouble > hi)
    return sl__bad(req, name, "'%s' must be between %g and %g, got %g", name, lo, hi, v->valuedouble);
  return 0;
}

/* Validates the body of a completion request and fills r (zeroed by the
 * caller, its id already decided).  Returns 0, or -1 after answering the
 * client. */
static int sl__validate(sl_gateway_t *gw, sl_http_req_t *req, int chat, sl_request_t *r) {
  r->chat = chat;
  if (req->body_len == 0) return sl__bad(req, "body", "request body is empty; expected a JSON object");
  /* cJSON does not validate UTF-8 and ends a string at a NUL; the text
   * check refuses both, naming the field, before anything is parsed.  It
   * leaves JSON syntax to cJSON. */
  sl_oai_problem_t problem;
  int text = sl_oai_check_request(req->body, req->body_len, &problem);
  if (text == SL_EINVAL) return sl__bad(req, problem.code, "%s", problem.message);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(req->body, req->body_len, &end, 0);
  if (root != NULL) {
    /* Only whitespace may follow the value. */
    const char *p = end, *stop = req->body + req->body_len;
    while (p < stop && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    if (p != stop) {
      cJSON_Delete(root);
      root = NULL;
      end = p;
    }
  }
  if (root == NULL) {
    size_t off = end ? (size_t)(end - req->body) : 0;
    return sl__bad(req, "body", "request body is not valid JSON (error near byte %zu)", off);
  }
  int rc = -1;
  if (text < 0) {
    /* cJSON took what the text check could not walk (it mirrors cJSON's
     * syntax, so this should not happen): refuse rather than forward
     * strings nobody checked. */
    sl__bad(req, problem.code, "%s", problem.message);
    goto out;
  }
  if (!cJSON_IsObject(root)) {
    sl__bad(req, "body", "request body must be a JSON object");
    goto out;
  }
  /* cJSON's lookups return the first of duplicate keys while an engine may
   * read the last, so the request validated would not be the one served. */
  if (sl_oai_check_duplicates(root, &problem) < 0) {
    sl__bad(req, problem.code, "%s", problem.message);
    goto out;
  }
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
  if (model == NULL) {
    sl__bad(req, "model", "'model' is required");
    goto out;
  }
  if (!cJSON_IsString(model) || model->valuestring[0] == '\0') {
    sl__bad(req, "model", "'model' must be a non-empty string");
    goto out;
  }
  if (strlen(model->valuestring) >= sizeof(r->model)) {
    sl__bad(req, "model", "'model' is too long");
    goto out;
  }
  snprintf(r->model, sizeof(r->model), "%s", model->valuestring);
  if (chat) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (msgs == NULL) {
      sl__bad(req, "messages", "'messages' is required");
      goto out;
    }
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
      sl__bad(req, "messages", "'messages' must be a non-empty array");
      goto out;
    }
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
      const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
      if (!cJSON_IsObject(m)) {
        sl__bad(req, "messages", "'messages[%d]' must be an object", i);
        goto out;
      }
      if (!cJSON_IsString(role)) {
        sl__bad(req, "messages", "'messages[%d].role' must be a string", i);
        goto out;
      }
      i++;
    }
  } else {
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (prompt == NULL) {
      sl__bad(req, "prompt", "'prompt' is required");
      goto out;
    }
    if (!cJSON_IsString(prompt) && !(cJSON_IsArray(prompt) && cJSON_GetArraySize(prompt) > 0)) {
      sl__bad(req, "prompt", "'prompt' must be a string or a non-empty array");
      goto out;
    }
  }
  const cJSON *stream = cJSON_GetObjectItemCaseSensitive(root, "stream");
  if (stream != NULL && !cJSON_IsNull(stream) && !cJSON_IsBool(stream)) {
    sl__bad(req, "stream", "'stream' must be a boolean");
    goto out;
  }
  r->stream = cJSON_IsTrue(stream);
  const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
  if (so != NULL && !cJSON_IsNull(so)) {
    if (!cJSON_IsObject(so)) {
      sl__bad(req, "stream_options", "'stream_options' must be an object");
      goto out;
    }
    if (!r->stream) {
      sl__bad(req, "stream_options", "'stream_options' is only allowed when 'stream' is true");
      goto out;
    }
    const cJSON *iu = cJSON_GetObjectItemCaseSensitive(so, "include_usage");
    if (iu != NULL && !cJSON_IsNull(iu) && !cJSON_IsBool(iu)) {
      sl__bad(req, "stream_options.include_usage", "'stream_options.include_usage' must be a boolean");
      goto out;
    }
    r->include_usage = cJSON_IsTrue(iu);
  }
  if (sl__check_positive_int(req, root, "max_tokens") < 0) goto out;
  if (sl__check_positive_int(req, root, "max_completion_tokens") < 0) goto out;
  if (sl__check_number(req, root, "temperature", 0, 2) < 0) goto out;
  if (sl__check_number(req, root, "top_p", 0, 1) < 0) goto out;
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "n");
  if (n != NULL && !cJSON_IsNull(n) && (!cJSON_IsNumber(n) || n->valuedouble != 1)) {
    sl__bad(req, "n", "'n' must be 1 (sluice relays one choice per request)");
    goto out;
  }
  const cJSON *stop = cJSON_GetObjectItemCaseSensitive(root, "stop");
  if (stop != NULL && !cJSON_IsNull(stop) && !cJSON_IsString(stop) && !cJSON_IsArray(stop)) {
    sl__bad(req, "stop", "'stop' must be a string, an array of strings, or null");
    goto out;
  }
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
  const char *session = sl_http_req_header(req, "x-session-id");
  if (session != NULL && strlen(session) >= sizeof(r->session)) {
    sl__bad(req, "x-session-id", "header 'X-Session-Id' is too long: %zu bytes (at most %zu)", strlen(session),
            sizeof(r->session) - 1);
    goto out;
  }
  if (session != NULL) snprintf(r->session, sizeof(r->session), "%s", session);
  if (!sl_registry_has_model(&gw->reg, r->model)) {
    sl_counter_inc(&gw->counters, SL_C_ERR_NOT_FOUND);
    sl_reply_error(req, 404, "invalid_request_error", "model_not_found", NULL,
                 "The model '%s' does not exist (GET /v1/models lists the models served)", r->model);
    goto out;
  }
  /* Upstream always streams, with usage. */
  cJSON_DeleteItemFromObjectCaseSensitive(root, "stream");
  cJSON_DeleteItemFromObjectCaseSensitive(root, "stream_options");
  cJSON_AddTrueToObject(root, "stream");
  cJSON *opts = cJSON_AddObjectToObject(root, "stream_options");
  cJSON_AddTrueToObject(opts, "include_usage");
  char *body = cJSON_PrintUnformatted(root);
  r->upstream_body_len = strlen(body);
  r->upstream_body = sl_strndup(body, r->upstream_body_len);
  cJSON_free(body);
  rc = 0;
out:
  cJSON_Delete(root);
  return rc;
}

/* ---- request id ---- */

/* A client id is kept only if it is short, made of [A-Za-z0-9._-], and the
 * log redactor would print it unchanged: an id that looks like a secret
 * would otherwise be printed verbatim in some lines and "[redacted]" in
 * others, and log lines could no longer be matched by id. */
static int sl__client_id_ok(const sl_gateway_t *gw, const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > SL_REQUEST_ID_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
          c == '.'))
      return 0;
  }
  char shown[2 * SL_REQUEST_ID_MAX + 16];
  return strcmp(sl_log_redact(gw->nar, s, shown, sizeof(shown)), s) == 0;
}

/* Decides the request's id (into r->id) and has every response to it say
 * so: X-Request-Id, and X-Sluice-Request-Id-Replaced: 1 when the client's
 * own id was refused. */
static void sl__request_id(sl_gateway_t *gw, sl_http_req_t *req, sl_request_t *r) {
  const char *cid = sl_http_req_header(req, "x-request-id");
  int replaced = 0;
  if (cid != NULL && sl__client_id_ok(gw, cid)) {
    snprintf(r->id, sizeof(r->id), "%s", cid);
  } else {
    snprintf(r->id, sizeof(r->id), "req-%08" PRIx64, ++gw->next_id);
    replaced = cid != NULL && cid[0] != '\0';
  }
  char lines[SL_HTTP_RESPONSE_HEADERS_MAX + 1];
  snprintf(lines, sizeof(lines), "X-Request-Id: %s\r\n%s", r->id,
           replaced ? "X-Sluice-Request-Id-Replaced: 1\r\n" : "");
  (void)sl_http_req_set_response_headers(req, lines); /* at most ~100 bytes: fits */
}

/* ---- routing ---- */

typedef enum { SL_R_NONE, SL_R_CHAT, SL_R_COMPLETIONS, SL_R_MODELS, SL_R_HEALTH, SL_R_READY } sl__route_t;

static sl__route_t sl__route(const char *path, const char **allow) {
  static const struct {
    const char *path;
    sl__route_t route;
    const char *allow;
  } routes[] = {
      {"/v1/chat/completions", SL_R_CHAT, "POST"}, {"/v1/completions", SL_R_COMPLETIONS, "POST"},
      {"/v1/models", SL_R_MODELS, "GET"},          {"/health", SL_R_HEALTH, "GET"},
      {"/ready", SL_R_READY, "GET"},
  };
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    if (strcmp(path, routes[i].path) == 0) {
      *allow = routes[i].allow;
      return routes[i].route;
    }
  }
  return SL_R_NONE;
}

void sl_api_handle(sl_http_req_t *req, void *ud) {
  sl_gateway_t *gw = ud;
  const char *allow = NULL;
  sl__route_t route = sl__route(req->path, &allow);
  if (route == SL_R_NONE) {
    sl_counter_inc(&gw->counters, SL_C_ERR_NOT_FOUND);
    sl_reply_error(req, 404, "invalid_request_error", "unknown_url", NULL, "Unknown request URL: %s %s",
                 req->method_name, req->path);
    return;
  }
  int is_get = strcmp(req->method_name, "GET") == 0;
  if ((strcmp(allow, "GET") == 0 && !is_get) ||
      (strcmp(allow, "POST") == 0 && strcmp(req->method_name, "POST") != 0)) {
    char extra[64];
    snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
    sl_counter_inc(&gw->counters, SL_C_ERR_METHOD);
    sl_reply_error(req, 405, "invalid_request_error", "method_not_allowed", extra,
                 "Method %s is not allowed on %s (allowed: %s)", req->method_name, req->path, allow);
    return;
  }
  switch (route) {
    case SL_R_HEALTH: sl__health(gw, req); return;
    case SL_R_READY: sl__ready(gw, req); return;
    case SL_R_MODELS: sl__models(gw, req); return;
    default: break;
  }
  sl_request_t r;
  memset(&r, 0, sizeof(r));
  sl__request_id(gw, req, &r);
  if (gw->streams.draining) {
    sl_reply_error(req, 503, "service_unavailable", "shutting_down", "Retry-After: 1\r\n",
                 "sluice is shutting down and takes no new requests");
    return;
  }
  if (sl__validate(gw, req, route == SL_R_CHAT, &r) < 0) return;
  sl_relay_start(&gw->streams, req, &r, gw->gen);
}
