/* request.h: the request phase of a completion request, one step a
 * function.
 *
 * api.c runs the steps in this order for POST /v1/chat/completions and
 * /v1/completions, answering the client with the step's error when one
 * fails:
 *   1. sl_request_parse: the body's text (valid UTF-8, no NUL) and JSON
 *      syntax, a JSON object with no key twice;
 *   2. sl_request_validate: the fields sluice reads (model, messages or
 *      prompt, stream, stream_options, the sampling numbers, n, stop), what
 *      placement weighs (prompt size, max tokens, session), and
 *      sl_request_check_model: some pool serves the model;
 *   3. (tenant and on_request: later issues, on the parsed tree);
 *   4. sl_request_keep_body: what the engine adapters build from, the
 *      client's JSON printed compactly without "stream" and
 *      "stream_options"; the tree is freed after it;
 *   5. (admission: a later issue);
 *   6. placement (sl_relay_start), and in every attempt the adapter of the
 *      pool it was placed on builds the engine request
 *      (sl_adapter_t.build, upstream/adapter.h; called from relay.c).
 * The steps are pure over their arguments: no HTTP request, no network,
 * no loop.  A failing step fills an sl_request_error_t, which api.c turns
 * into the OpenAI-shaped error answer (stream/reply.h) and a counter.
 */
#ifndef SL_REQUEST_H
#define SL_REQUEST_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "runtime/stream/relay.h"
#include "runtime/upstream/registry.h"

/* Why a step refused the request: the error answer to send. */
typedef struct {
  int status;         /* HTTP status: 400, 404, or 500 (out of memory) */
  const char *type;   /* OpenAI error type: "invalid_request_error" or "server_error" (static) */
  const char *code;   /* error.param/code: the field ("model", "messages", "x-session-id"), "body",
                         a text problem ("invalid_utf8", "duplicate_key"), "model_not_found" (static) */
  int counter;        /* the counter to count it in (SL_C_ERR_*), or -1 for none */
  char message[512];  /* the sentence for the client, naming the field and the value */
} sl_request_error_t;

/* Step 1.  Parses body[0..len) into a JSON object tree: refuses an empty
 * body, text that is not valid UTF-8 or holds a NUL (naming the field),
 * JSON that does not parse or has more than whitespace after the value
 * (naming the byte), a value that is not an object, and a key that occurs
 * twice in one object.  Returns 0 with *root set (the caller frees it with
 * cJSON_Delete), or -1 with *e filled and *root NULL. */
int sl_request_parse(const char *body, size_t len, cJSON **root, sl_request_error_t *e);

/* Step 2.  Checks the fields of a parsed body for chat (/v1/chat/
 * completions, chat = 1) or a legacy completion (chat = 0), with the
 * X-Session-Id header's value (NULL when absent), and fills r's model,
 * chat, stream, include_usage, prompt_chars, max_tokens and session (r was
 * zeroed by the caller; its id is left alone).  Returns 0, or -1 with *e
 * filled (a 400 naming the field); r may then be partly filled. */
int sl_request_validate(const cJSON *root, int chat, const char *session, sl_request_t *r,
                        sl_request_error_t *e);

/* Step 2, last: 0 if some pool of reg serves r->model, else -1 with *e
 * filled (404, code "model_not_found"). */
int sl_request_check_model(const sl_registry_t *reg, const sl_request_t *r, sl_request_error_t *e);

/* Step 4.  Removes "stream" and "stream_options" from root (sluice decides
 * them with each engine; the client's wishes are in r->stream and
 * r->include_usage) and keeps the compact print of the rest in r->body
 * (owned by r, sl_malloc; NUL-terminated after r->body_len bytes).
 * Returns 0, or -1 with *e filled (500) when printing ran out of memory. */
int sl_request_keep_body(cJSON *root, sl_request_t *r, sl_request_error_t *e);

#endif
