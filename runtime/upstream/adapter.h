/* adapter.h: engine adapters, the seam between sluice and an engine's API.
 *
 * An adapter says how to talk to one kind of engine: how the request of
 * one attempt is built (method, path, header lines, body) from the
 * validated client request, which path health probes GET, how the
 * response body is framed (SSE or NDJSON), and the schema scan that turns
 * one framed payload into a normalized sl_event_t (event.h).  Adapters are
 * constant tables of data and function pointers; a pool names its adapter
 * in the configuration (pools[].adapter) and the registry keeps a pointer
 * per pool (registry.h), so each attempt uses the adapter of the pool it
 * was placed on and a retry on another pool may speak another dialect.
 *
 * The adapters: "openai" and "vllm" (adapter_openai.c, OpenAI chunks
 * passed through), and the native ones whose events are always re-encoded
 * as OpenAI chunks: "llamacpp", "tgi", "ollama" (docs/engines.md).
 * sl_adapter_find is the lookup table by name.  Uses base/ and oai.h;
 * the request building allocates (once per attempt), the scan never does.
 */
#ifndef SL_ADAPTER_H
#define SL_ADAPTER_H

#include <stddef.h>

#include "runtime/base/config.h"
#include "runtime/upstream/event.h"

/* How an engine frames its streamed response body. */
typedef enum {
  SL_FRAMING_SSE = 1, /* text/event-stream: "data: <payload>\n\n" (sse.h) */
  SL_FRAMING_NDJSON   /* application/x-ndjson: one JSON object a line (Ollama's native routes),
                         framed by sse.c's NDJSON mode */
} sl_framing_t;

/* What an adapter builds an engine request from: the validated client
 * request, as the gateway keeps it (runtime/gateway/request.h).  Borrowed
 * for the duration of the build call. */
typedef struct {
  int chat;                /* 1: a chat completion (/v1/chat/completions); 0: a legacy completion */
  const char *body;        /* the client's JSON object, compact (cJSON's unformatted print), without the
                              members "stream" and "stream_options", which the adapter decides */
  size_t body_len;         /* bytes in body */
  const char *fwd_headers; /* header lines the gateway forwards ("Name: value\r\n"..., the request id
                              and x-sim-*), appended after the adapter's own; NULL for none */
} sl_adapter_req_t;

/* The engine request of one attempt.  The endpoint's base path, Host,
 * User-Agent, Authorization and Content-Length are added by
 * sl_upstream_request; the rest is here. */
typedef struct {
  const char *method;      /* "POST" (static) */
  const char *path;        /* path without the endpoint's base, e.g. "/v1/chat/completions" (static) */
  char *headers;           /* header lines ("Name: value\r\n"...), NUL-terminated; owned (sl_malloc) */
  char *body;              /* the body, NUL-terminated after body_len bytes; owned (sl_malloc) */
  size_t body_len;         /* bytes in body */
} sl_engine_req_t;

typedef struct sl_adapter_s sl_adapter_t;

struct sl_adapter_s {
  const char *name;        /* the configuration's name for it: pools[].adapter */
  const char *health_path; /* GET this for health probes, unless health.path is configured */
  sl_framing_t framing;    /* how the streamed body is framed */
  /* Builds the request of one attempt into *out.  Returns 0, or a negative
   * SL_E* code with a sentence in err[0..errlen) and nothing in *out to
   * free: SL_EINVAL when the client's request is not one this engine's API
   * carries (the relay answers 400 with the sentence), another code for a
   * failure of sluice's own (SL_ENOMEM).  On success the caller frees *out with sl_engine_req_free. */
  int (*build)(const sl_adapter_t *a, const sl_adapter_req_t *in, sl_engine_req_t *out, char *err,
               size_t errlen);
  /* Scans one framed payload data[0..len) into *ev (fully overwritten, its
   * spans into data).  event[0..event_len) is the SSE event name (event_len
   * 0 when none; always 0 for NDJSON).  Returns 0, or SL_EPARSE when the
   * payload is not one this schema reads.  Never allocates. */
  int (*scan)(const char *data, size_t len, const char *event, size_t event_len, sl_event_t *ev);
  /* 1: the engine's payloads are not OpenAI chunks (a native API), so the
   * relay never passes their bytes through: every event goes to the client
   * re-encoded from its normalized fields (sl_oai_encode_delta).  0: the
   * payloads are OpenAI chunks, passed through as they came. */
  int native;
};

/* The OpenAI-compatible adapter (adapter_openai.c): POST /v1/chat/completions
 * or /v1/completions with the client's body, "stream": true and
 * "stream_options": {"include_usage": true} (sluice always streams from the
 * engine, with usage); health /health; SSE; sl_oai_scan (sl_oai_scan_error
 * for an event named "error"). */
extern const sl_adapter_t sl_adapter_openai;

/* vLLM's OpenAI-compatible server (adapter_openai.c): the OpenAI adapter's
 * build and scan, which already read vLLM's differences (integer
 * error.code, the flat pre-0.10.1 error body, usage left out of ordinary
 * chunks, a finish on a chunk that still carries text, choices[0].
 * token_ids; wire-formats.md section 2); health /health. */
extern const sl_adapter_t sl_adapter_vllm;

/* llama.cpp's native route (adapter_llamacpp.c): POST /completion, SSE,
 * health /health (503 while the model loads).  Legacy completions only. */
extern const sl_adapter_t sl_adapter_llamacpp;

/* TGI's native route (adapter_tgi.c): POST /generate_stream, SSE with
 * "data:" and ":" heartbeats, health /health.  Legacy completions only. */
extern const sl_adapter_t sl_adapter_tgi;

/* Ollama's native routes (adapter_ollama.c): POST /api/chat and
 * /api/generate, NDJSON, health GET /. */
extern const sl_adapter_t sl_adapter_ollama;

/* The adapter named name, or NULL when there is none.  The result is a
 * static table entry. */
const sl_adapter_t *sl_adapter_find(const char *name);

/* Writes the names of every adapter into buf[0..cap), quoted and separated
 * by ", " ("\"openai\""), truncated to fit; returns buf. */
const char *sl_adapter_names(char *buf, size_t cap);

/* Checks that every pool of cfg names an adapter that exists.  Returns 0,
 * or SL_EINVAL with err naming the key: `pools[1].adapter: "tgi" is not
 * supported (supported: "openai")`. */
int sl_adapter_check_config(const sl_config_t *cfg, char *err, size_t errlen);

/* Frees what sl_adapter_t.build put in r and clears it; a cleared or
 * zeroed r is fine. */
void sl_engine_req_free(sl_engine_req_t *r);

/* ---- helpers for the native adapters' builds (adapter_native.c) ---- */

struct cJSON;

/* The client's body as a cJSON tree (free it with cJSON_Delete), or NULL
 * with err set. */
struct cJSON *sl_adapter_parse(const sl_adapter_req_t *in, char *err, size_t errlen);

/* The client's token limit: max_completion_tokens, else max_tokens (the
 * newer name wins, as vLLM reads them); NULL when neither is a number. */
const struct cJSON *sl_adapter_max_tokens(const struct cJSON *body);

/* Adds body's "stop" to dst as key: an array of strings (a single string
 * becomes a one-element array, as llama.cpp wraps it); nothing when stop is
 * absent or null.  Returns 0, or SL_EINVAL with err naming the field when
 * it is anything else. */
int sl_adapter_stop_array(const struct cJSON *body, struct cJSON *dst, const char *key, char *err,
                          size_t errlen);

/* Copies the number body[key] into dst as dst_key when it is a number. */
void sl_adapter_copy_number(const struct cJSON *body, const char *key, struct cJSON *dst, const char *dst_key);

/* Finishes a native build: prints engine_body compactly into out->body,
 * joins own_headers and in->fwd_headers into out->headers, sets POST and
 * path.  Takes engine_body (deletes it).  Returns 0 or SL_ENOMEM with err. */
int sl_adapter_finish(const sl_adapter_req_t *in, const char *path, const char *own_headers,
                      struct cJSON *engine_body, sl_engine_req_t *out, char *err, size_t errlen);

/* Fills ev for one native chunk: everything cleared (as a scan must), raw
 * = data[0..len), kind CHUNK, one choice (n_choices 1).  The native scans
 * start with it. */
void sl_adapter_native_chunk(const char *data, size_t len, sl_event_t *ev);

/* Sets ev's usage from native counts (has_usage, or usage_refused when a
 * count is negative or past SL_OAI_USAGE_MAX). */
void sl_adapter_native_usage(sl_event_t *ev, int64_t prompt, int64_t completion);

#endif
