/* oai.h: the OpenAI streaming schema: scanner, encoder, JSON string helpers.
 *
 * sl_oai_scan reads one SSE data payload of an OpenAI-shaped stream (OpenAI,
 * vLLM, llama.cpp's and TGI's OpenAI routes, Ollama /v1) and fills one
 * normalized event (event.h) with spans into the payload: ids, the first
 * choice's delta text, role, reasoning and tool-call fragments, token ids
 * (vLLM's choices[0].token_ids), the finish reason, usage, or an error.  It validates the whole payload as JSON while it
 * scans, but builds no tree and allocates nothing: fields it does not need
 * (logprobs arrays, unknown nested objects) are only validated and skipped.
 * The encoder writes OpenAI chunks, usage chunks and error bodies into
 * caller buffers; sl_json_escape / sl_json_unescape convert between raw
 * bytes and JSON string contents.  Field meanings follow
 * /work/shared/wire-formats.md sections 1 and 2.
 *
 * The request side of the schema: sl_oai_check_request (valid text in
 * every string, naming the field) and sl_oai_check_duplicates (no key twice
 * in an object), used by the gateway's validation (api.c), and
 * sl_oai_prompt_chars (the prompt size of a request, every content form
 * counted), used by the gateway and the simulated engine alike.
 *
 * Pure C over caller buffers, no libuv.  Only the stream side is on the
 * hot path and it allocates nothing; the request checks run once per
 * request and sl_oai_check_duplicates may allocate scratch.
 */
#ifndef SL_OAI_H
#define SL_OAI_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/upstream/event.h"

/* The largest token count accepted in usage: 2^53, the largest integer
 * every JSON reader holds exactly (JavaScript numbers are doubles).  Real
 * counts are many orders of magnitude below it, and sums of two accepted
 * counts cannot overflow an int64_t. */
#define SL_OAI_USAGE_MAX 9007199254740992LL

/* Scans one SSE data payload json[0..len).  "[DONE]" (optionally wrapped in
 * JSON whitespace) gives SL_EV_DONE, a payload with a truthy top-level
 * "error" gives SL_EV_ERROR, any other JSON object SL_EV_CHUNK.  Duplicate
 * keys: the last one wins, as in JavaScript and Python.
 * Returns 0, or SL_EPARSE when the payload is not one valid JSON object
 * (strict RFC 8259 structure: no trailing bytes, no raw control characters
 * in strings, valid escapes, no leading zeros; nesting deeper than 128
 * levels is refused too).  UTF-8 inside strings is not validated.
 * ev is fully overwritten; its spans point into json (raw_in_input = 0). */
int sl_oai_scan(const char *json, size_t len, sl_event_t *ev);

/* Like sl_oai_scan, for the data of an SSE event named `error` (which the
 * Node SDK raises on): a valid JSON object without a truthy "error" key is
 * still SL_EV_ERROR, described by its top-level "message", "type" and
 * "code".  "[DONE]" stays SL_EV_DONE.  Same returns as sl_oai_scan. */
int sl_oai_scan_error(const char *json, size_t len, sl_event_t *ev);

/* A validating JSON cursor over one payload, for the native engines'
 * scans (adapter_*.c): the same strict reader as sl_oai_scan, walked by
 * hand.  Nothing is built or allocated; strings come back as raw spans. */
typedef struct {
  const char *p; /* next byte */
  const char *e; /* end of input */
  int depth;     /* open containers */
} sl_jcur_t;

/* Opens the object at c->p (after blanks).  0, or SL_EPARSE when the value
 * there is not an object (or nests too deep). */
int sl_jcur_object(sl_jcur_t *c);

/* The next member of an object opened by sl_jcur_object: 1 with *key (raw
 * contents; *kesc 1 if it holds escapes) and c->p at the value, 0 after
 * the closing brace, SL_EPARSE.  *first starts at 1. */
int sl_jcur_member(sl_jcur_t *c, int *first, sl_span_t *key, int *kesc);

/* The next element of an array opened by sl_jcur_array: 1 with c->p at it,
 * 0 after the closing bracket, SL_EPARSE.  *first starts at 1. */
int sl_jcur_element(sl_jcur_t *c, int *first);

/* Opens the array at c->p: 0, or SL_EPARSE when it is not one. */
int sl_jcur_array(sl_jcur_t *c);

/* Validates and skips the value at c->p. */
int sl_jcur_skip(sl_jcur_t *c);

/* A string value sets *out and *has to 1; any other value (null too) is
 * validated, skipped, and sets them to {NULL, 0} and 0. */
int sl_jcur_str(sl_jcur_t *c, sl_span_t *out, int *has);

/* A number value (truncated to an integer) sets *out and *has to 1; any
 * other value is skipped and sets 0 and 0. */
int sl_jcur_int(sl_jcur_t *c, int64_t *out, int *has);

/* true/false sets *out (1/0) and *has to 1; any other value is skipped and
 * sets 0 and 0. */
int sl_jcur_bool(sl_jcur_t *c, int *out, int *has);

/* 0 when only blanks are left, else SL_EPARSE. */
int sl_jcur_end(sl_jcur_t *c);

/* 1 if the key span (kesc: it holds escapes) is the plain literal lit. */
int sl_jcur_key_is(sl_span_t key, int kesc, const char *lit);

/* The finish reason the string contents s name (OpenAI's, and TGI's
 * eos_token / stop_sequence as STOP); OTHER for any other string. */
sl_finish_t sl_finish_of(sl_span_t s);

/* Decodes JSON string contents src[0..len) (the bytes between the quotes):
 * \" \\ \/ \b \f \n \r \t and \uXXXX, surrogate pairs combined, a lone
 * surrogate becoming U+FFFD, into UTF-8 in dst[0..cap).  Other bytes are
 * copied.  Returns the bytes written, or (size_t)-1 if the result would not
 * fit or an escape is malformed (dst contents are then unspecified). */
size_t sl_json_unescape(char *dst, size_t cap, const char *src, size_t len);

/* Encodes arbitrary bytes src[0..len) as JSON string contents (without the
 * quotes) into dst[0..cap): " and \ are backslashed, \b \f \n \r \t get
 * their short forms, other bytes below 0x20 become \u00XX; every other byte
 * is copied.  Returns the bytes written or (size_t)-1 if they would not
 * fit.  At most 6 * len bytes are written. */
size_t sl_json_escape(char *dst, size_t cap, const char *src, size_t len);

/* What every synthesized chunk repeats.  id and model are JSON string
 * contents, already escaped (e.g. spans of a scanned event). */
typedef struct {
  sl_span_t id;    /* "id" */
  sl_span_t model; /* "model" */
  int64_t created; /* "created" */
  int chat;        /* 1: chat.completion.chunk with choices[0].delta; 0: text_completion with choices[0].text */
} sl_oai_meta_t;

/* Writes one chunk into buf[0..cap): choices[0] has index 0, the delta (chat:
 * "role" if role is not NULL, "content" if text_escaped is not NULL; else
 * {}) or "text" (completions; "" when text_escaped is NULL),
 * "logprobs":null and finish_reason (null for NONE; OTHER is written as
 * "stop", the closest value OpenAI clients know).  role is a plain C string
 * (escaped here); text_escaped[0..text_len) is JSON string contents.
 * Returns the length written (no NUL), or (size_t)-1 if cap is too small. */
size_t sl_oai_encode_chunk(char *buf, size_t cap, const sl_oai_meta_t *m, const char *role,
                           const char *text_escaped, size_t text_len, sl_finish_t finish);

/* Like sl_oai_encode_chunk, with reasoning text too (chat only: the
 * delta's "reasoning_content", the key llama.cpp and DeepSeek use and the
 * SDKs pass through; NULL for none). */
size_t sl_oai_encode_delta(char *buf, size_t cap, const sl_oai_meta_t *m, const char *role,
                           const char *text_escaped, size_t text_len, const char *reasoning_escaped,
                           size_t reasoning_len, sl_finish_t finish);

/* Writes the usage chunk: "choices":[] and usage {prompt_tokens,
 * completion_tokens, total_tokens = their sum}.  Returns the length, or
 * (size_t)-1 if cap is too small or a count is negative or past
 * SL_OAI_USAGE_MAX (nothing meaningful is written then). */
size_t sl_oai_encode_usage(char *buf, size_t cap, const sl_oai_meta_t *m, int64_t prompt,
                           int64_t completion);

/* Writes {"error":{"message":...,"type":...,"code":...}}: message is raw
 * bytes (escaped here); type and code are C strings (escaped here), NULL
 * giving null.  Returns the length or (size_t)-1 if cap is too small. */
size_t sl_oai_encode_error(char *buf, size_t cap, const char *message, size_t message_len,
                           const char *type, const char *code);

/* "stop", "length", "tool_calls", "content_filter", "function_call",
 * "other" for OTHER; NULL for NONE.  A static string. */
const char *sl_finish_name(sl_finish_t f);

/* ---- request side ---- */

struct cJSON;

/* Request bodies may nest this deep (cJSON's own limit). */
#define SL_OAI_REQUEST_MAX_DEPTH 1000

/* What a request check found wrong. */
typedef struct {
  size_t offset;     /* byte offset in the body where it was found */
  char field[160];   /* the field, as a path: "messages[0].content", "model"; "" = the body itself */
  const char *code;  /* static: "body" (not JSON), "invalid_utf8", "invalid_string", "duplicate_key" */
  char message[400]; /* a sentence for the client naming the field (printable ASCII and valid UTF-8) */
} sl_oai_problem_t;

/* Checks the text of every string, keys and values, in a request body
 * json[0..len) before it is parsed into a tree (cJSON validates none of
 * it), and names the field of the first bad one:
 *  - valid UTF-8 once escapes are decoded: no stray or truncated byte, no
 *    overlong form, no surrogate (U+D800..U+DFFF), nothing past U+10FFFF;
 *    a \uXXXX escape of a high surrogate must be followed by one of a low
 *    surrogate and a low one must follow a high one (a lone surrogate is
 *    not a character and has no UTF-8 form, so it is refused rather than
 *    replaced): else SL_EINVAL, code "invalid_utf8";
 *  - no NUL, raw or as \u0000: a C string (cJSON's) would silently end
 *    there and the rest would not reach the engine: SL_EINVAL, code
 *    "invalid_string".
 * The walk reads JSON as leniently as cJSON does (cJSON parses the body
 * next and stays the judge of its syntax: raw control characters in
 * strings, any byte up to 0x20 as blank, a leading BOM, nesting up to
 * SL_OAI_REQUEST_MAX_DEPTH).  Where it cannot go on it returns SL_EPARSE,
 * code "body", with the offset in the message.
 * Returns 0 or the code above with *out filled.  Allocates nothing. */
int sl_oai_check_request(const char *json, size_t len, sl_oai_problem_t *out);

/* Checks that no object in the tree, at any depth, has a key twice (cJSON
 * keeps every member and its lookups return the first, while an engine may
 * read the last).  Returns 0, or SL_EINVAL with *out naming the duplicated
 * key's path (code "duplicate_key"; offset 0).  Objects with many members
 * are checked by sorting a scratch copy of their keys (allocated and freed
 * here), so a body of many keys costs O(n log n). */
int sl_oai_check_duplicates(const struct cJSON *root, sl_oai_problem_t *out);

/* The prompt size, in characters (bytes of UTF-8 text), of a parsed
 * request body: for chat (chat = 1) the "content" of every message, either
 * a string or an array of parts, where each part's "text" string counts
 * (a bare string part counts too; image, audio and file parts have no
 * text and count 0); for completions the "prompt", a string, an array of
 * strings, or token ids (4 characters each, the same rule of thumb as
 * text), nested arrays included.  Missing or mistyped fields count 0. */
size_t sl_oai_prompt_chars(const struct cJSON *body, int chat);

#endif
