/* adapter_openai.c: the OpenAI-compatible engine adapter (see adapter.h).
 *
 * Speaks the OpenAI streaming API as vLLM, llama.cpp's and TGI's /v1
 * routes and Ollama's /v1 serve it (/work/shared/wire-formats.md).  The
 * engine's body is the client's, with "stream": true and "stream_options":
 * {"include_usage": true} appended: sluice always streams from the engine
 * and always asks for usage, whatever the client asked (it assembles
 * non-streaming answers and drops usage the client did not want itself).
 * The client's body arrives as cJSON's compact print without those two
 * members (the request phase removed them), so appending them produces the
 * same bytes as deleting and re-adding them in the tree and printing it,
 * without parsing the body again on every attempt.
 */
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/upstream/adapter.h"
#include "runtime/upstream/oai.h"

/* What every engine body ends with, after the client's members. */
static const char sl__oai_tail[] = "\"stream\":true,\"stream_options\":{\"include_usage\":true}}";

/* The adapter's own header lines, before the forwarded ones. */
static const char sl__oai_headers[] = "Content-Type: application/json\r\nAccept: text/event-stream\r\n";

static int sl__openai_build(const sl_adapter_t *a, const sl_adapter_req_t *in, sl_engine_req_t *out, char *err,
                            size_t errlen) {
  (void)a;
  memset(out, 0, sizeof(*out));
  /* The body is the compact print of a JSON object: "{...}" or "{}". */
  if (in->body == NULL || in->body_len < 2 || in->body[0] != '{' || in->body[in->body_len - 1] != '}') {
    snprintf(err, errlen, "the request body to build from is not a JSON object");
    return SL_EINVAL;
  }
  int empty = in->body_len == 2;
  size_t keep = in->body_len - 1; /* everything but the closing brace */
  size_t tail = sizeof(sl__oai_tail) - 1;
  size_t n = keep + (empty ? 0 : 1) + tail;
  char *body = sl_try_malloc(n + 1);
  size_t fwd = in->fwd_headers ? strlen(in->fwd_headers) : 0;
  char *headers = sl_try_malloc(sizeof(sl__oai_headers) + fwd);
  if (body == NULL || headers == NULL) {
    sl_free(body);
    sl_free(headers);
    snprintf(err, errlen, "out of memory for the engine request (%zu bytes)", n);
    return SL_ENOMEM;
  }
  memcpy(body, in->body, keep);
  size_t k = keep;
  if (!empty) body[k++] = ',';
  memcpy(body + k, sl__oai_tail, tail);
  body[n] = '\0';
  memcpy(headers, sl__oai_headers, sizeof(sl__oai_headers) - 1);
  if (fwd) memcpy(headers + sizeof(sl__oai_headers) - 1, in->fwd_headers, fwd);
  headers[sizeof(sl__oai_headers) - 1 + fwd] = '\0';
  out->method = "POST";
  out->path = in->chat ? "/v1/chat/completions" : "/v1/completions";
  out->headers = headers;
  out->body = body;
  out->body_len = n;
  return 0;
}

/* sl_oai_scan, and for an SSE event named "error" (which the Node SDK
 * raises on) sl_oai_scan_error; data that is not JSON in such an event is
 * still an error, whose text is only in raw. */
static int sl__openai_scan(const char *data, size_t len, const char *event, size_t event_len, sl_event_t *ev) {
  int named_error = event_len == 5 && memcmp(event, "error", 5) == 0;
  if (!named_error) return sl_oai_scan(data, len, ev);
  if (sl_oai_scan_error(data, len, ev) == 0) return 0;
  memset(ev, 0, offsetof(sl_event_t, token_ids));
  ev->raw.p = data;
  ev->raw.n = len;
  ev->n_choices = -1;
  ev->kind = SL_EV_ERROR;
  return 0;
}

const sl_adapter_t sl_adapter_openai = {
    .name = "openai",
    .health_path = "/health",
    .framing = SL_FRAMING_SSE,
    .build = sl__openai_build,
    .scan = sl__openai_scan,
};

/* vLLM speaks this dialect; its differences are all read by sl_oai_scan
 * (wire-formats.md section 2), so only the name and the docs differ. */
const sl_adapter_t sl_adapter_vllm = {
    .name = "vllm",
    .health_path = "/health",
    .framing = SL_FRAMING_SSE,
    .build = sl__openai_build,
    .scan = sl__openai_scan,
};
