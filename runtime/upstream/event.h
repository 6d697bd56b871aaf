/* event.h: the normalized upstream event, whatever engine sent it.
 *
 * An adapter's schema scan (adapter.h; today only the OpenAI-compatible one,
 * sl_oai_scan in oai.h) turns one framed payload of an engine's stream into
 * one sl_event_t, and everything above the decoder (the relay, the output
 * stage, policies) reads only this struct.  It holds spans into the payload
 * (never copies), so it is valid only as long as the payload's bytes: during
 * the decoder's event callback.  Every array is fixed-size and the struct
 * allocates nothing; what does not fit is counted, never silently lost.
 *
 * Field meanings follow /work/shared/wire-formats.md: section 1 (OpenAI)
 * for the names, section 2 (vLLM) for token ids and reasoning, sections 3
 * and 4 for llama.cpp's and TGI's differences.  Pure data, no code.
 */
#ifndef SL_EVENT_H
#define SL_EVENT_H

#include <stddef.h>
#include <stdint.h>

/* Why a choice finished.  OTHER is any reason not listed (vLLM's abort or
 * repetition); TGI's eos_token and stop_sequence are mapped to STOP, as
 * OpenAI clients expect.  finish_raw always keeps the upstream's string. */
typedef enum {
  SL_FINISH_NONE = 0,
  SL_FINISH_STOP,
  SL_FINISH_LENGTH,
  SL_FINISH_TOOL_CALLS,
  SL_FINISH_CONTENT_FILTER,
  SL_FINISH_FUNCTION_CALL,
  SL_FINISH_OTHER
} sl_finish_t;

/* What an event is: a chunk of the answer (text, reasoning, tool-call
 * fragments, a finish, usage, in any mix), the end of the stream ([DONE]),
 * or an error the engine reported inside the stream. */
typedef enum { SL_EV_CHUNK = 1, SL_EV_DONE, SL_EV_ERROR } sl_event_kind_t;

/* Tool-call fragments kept per event; more are validated and counted in
 * tool_calls_dropped. */
#define SL_EV_MAX_TOOL_CALLS 8

/* Token ids kept per event.  An engine sends the ids of the tokens one
 * chunk carries (usually 1; a few with speculative decoding or a stream
 * interval above 1); more are counted in token_ids_dropped. */
#define SL_EV_MAX_TOKEN_IDS 16

/* A span of bytes.  For JSON strings: the raw (still escaped) bytes between
 * the quotes; decode them with sl_json_unescape.  {NULL, 0} when absent. */
typedef struct {
  const char *p; /* first byte */
  size_t n;      /* length */
} sl_span_t;

/* One element of choices[0].delta.tool_calls. */
typedef struct {
  int index;         /* "index"; its position in the array when absent */
  sl_span_t id;      /* "id" (string) */
  sl_span_t type;    /* "type" (string, "function") */
  sl_span_t name;    /* "function.name" (string) */
  sl_span_t arguments; /* "function.arguments": a fragment, to be joined per index */
  int has_id;        /* id was a string (not absent or null) */
  int has_name;      /* name was a string */
  int has_arguments; /* arguments was a string */
} sl_tool_delta_t;

/* One normalized upstream event.  Spans point into the scanned payload.
 * The arrays tool_calls and token_ids are valid up to n_tool_calls and
 * n_token_ids; entries past those are left as they were (a scan does not
 * clear them, to keep the per-event cost independent of their size). */
typedef struct {
  /* -- what it is, and its bytes -- */
  sl_event_kind_t kind;   /* CHUNK, DONE or ERROR */
  sl_span_t raw;          /* the whole JSON payload (or "[DONE]") as received */
  int raw_in_input;       /* 1 if raw lies in the caller's input buffer (set by the upstream decoder) */
  int ends_stream;        /* a CHUNK that is also the end of a native stream (llama.cpp "stop":true,
                             TGI's non-null generated_text, Ollama's "done":true); the upstream
                             decoder delivers a DONE event right after it */
  /* -- what every chunk repeats -- */
  sl_span_t id;           /* top-level "id" (string; TGI sends "") */
  sl_span_t object;       /* top-level "object" (string) */
  sl_span_t model;        /* top-level "model" (string) */
  int64_t created;        /* top-level "created" */
  int has_created;        /* created was a number */
  /* -- the first choice: text, role -- */
  int n_choices;          /* elements in "choices" (0 for a usage-only chunk; -1 if absent or not an array) */
  int choice_index;       /* "index" of the first choice (0 when absent) */
  int has_role;           /* choices[0].delta.role is a string */
  sl_span_t role;         /* that role */
  int has_text;           /* chat: choices[0].delta.content is a string; completions: choices[0].text is */
  sl_span_t text;         /* that text (delta.content wins if both are given) */
  /* -- reasoning: vLLM's delta.reasoning, with the deprecated
   *    delta.reasoning_content as a fallback (wire-formats.md section 2);
   *    llama.cpp's reasoning_content -- */
  int has_reasoning;      /* delta.reasoning or (else) delta.reasoning_content is a string */
  sl_span_t reasoning;    /* that reasoning text */
  /* -- tool-call fragments: choices[0].delta.tool_calls, joined per index
   *    by whoever assembles them (the relay, for non-streaming answers) -- */
  int n_tool_calls;       /* entries used in tool_calls */
  int tool_calls_dropped; /* tool-call objects past SL_EV_MAX_TOOL_CALLS, skipped */
  sl_tool_delta_t tool_calls[SL_EV_MAX_TOOL_CALLS]; /* choices[0].delta.tool_calls */
  int has_logprobs;       /* choices[0].logprobs present and not null */
  /* -- finish: set on the chunk with the last token (which may still carry
   *    text, vLLM) or on a chunk of its own with an empty delta (llama.cpp) -- */
  sl_finish_t finish;     /* choices[0].finish_reason; NONE when null or absent */
  sl_span_t finish_raw;   /* finish_reason string as received */
  /* -- usage: the chunk with "choices":[] after the last token when usage
   *    was asked for, or a running count on every chunk (vLLM's
   *    continuous_usage_stats) -- */
  int has_usage;          /* top-level "usage" is an object whose counts were accepted */
  int64_t prompt_tokens;     /* usage.prompt_tokens (0 when absent) */
  int64_t completion_tokens; /* usage.completion_tokens */
  int64_t total_tokens;      /* usage.total_tokens */
  int usage_refused;      /* "usage" was an object with a count that is negative or past
                             SL_OAI_USAGE_MAX: malformed, so has_usage is 0 and the counts 0 */
  sl_span_t usage_member; /* the bytes that drop the top-level "usage" member when cut out of raw:
                             the member with its separating comma and blanks ("usage":null included);
                             {NULL, 0} when there is no such key or more than one */
  /* -- error (kind ERROR): a truthy top-level "error" (JavaScript
   * truthiness: any object or array, a non-empty string, true, a non-zero
   * number) that is an object ({message,type,code}) or a string (TGI native
   * / Ollama; then err_type is the top-level "error_type").  Also the flat
   * error body of vLLM before v0.10.1, {"object":"error","message",...,
   * "code"}. -- */
  sl_span_t err_message;  /* error.message, or the error string itself */
  sl_span_t err_type;     /* error.type, or top-level error_type */
  sl_span_t err_code;     /* error.code: string contents, or the literal digits if numeric;
                             TGI's error.http_status_code when code is absent */
  /* -- token ids, when the engine gives them.  Sources: vLLM puts
   *    "token_ids":[...] in each choice of a streamed chunk when the
   *    request says "return_token_ids": true (wire-formats.md section 2);
   *    the OpenAI scan reads choices[0].token_ids.  llama.cpp sends
   *    "tokens":[...] only on its native /completion stream (section 3),
   *    which its own adapter's scan will read into the same fields; its
   *    /v1 routes send no ids.  OpenAI, TGI's /v1 and Ollama's /v1 send
   *    none. -- */
  int has_token_ids;      /* the ids came as an array of integers, each in [0, 2^31) (an array
                             holding anything else is skipped: has_token_ids 0, no ids) */
  int n_token_ids;        /* entries used in token_ids */
  int token_ids_dropped;  /* ids past SL_EV_MAX_TOKEN_IDS, counted and not kept: nonzero means
                             token_ids holds only the first SL_EV_MAX_TOKEN_IDS */
  int32_t token_ids[SL_EV_MAX_TOKEN_IDS]; /* the ids, in the engine's order */
} sl_event_t;

#endif
