/* upstream_decoder.h: one upstream HTTP/1.1 response to normalized events.
 *
 * Stacks the three decoding layers of a streamed upstream reply: llhttp
 * parses the response (status line, headers, chunked or Content-Length or
 * close-delimited body, de-chunking into spans of the input), the framing
 * of the engine's adapter cuts the body of a 2xx reply into payloads (SSE
 * through sl_sse for a text/event-stream reply, or sl_sse's NDJSON mode
 * for an application/x-ndjson reply to an NDJSON adapter), and the adapter's schema scan turns each payload into
 * an sl_event_t that the caller receives through a C callback, in order.
 * The adapter is the OpenAI-compatible one unless sl_updec_set_adapter
 * says otherwise.  A non-2xx reply, or one not in the adapter's framing,
 * produces no events; its first bytes are kept in `body` for the caller's
 * error or health handling.
 *
 * Zero copy: an event that one read delivered whole (the usual "data:
 * {...}\n\n" in one chunk) reaches the callback as spans into the caller's
 * input (ev->raw_in_input = 1); an event cut by a read or chunk boundary is
 * joined in the caller's join buffer first.  No allocation, no libuv: the
 * state is inline and the function is pure over (buffer, length, state),
 * except that a Retry-After given as an HTTP-date is measured from time().
 * Uses runtime/upstream/sse.h, adapter.h (whose scan is oai.h's for
 * "openai") and llhttp.
 */
#ifndef SL_UPSTREAM_DECODER_H
#define SL_UPSTREAM_DECODER_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "runtime/upstream/adapter.h"
#include "runtime/upstream/event.h"
#include "runtime/upstream/oai.h" /* sl_json_unescape and friends, for reading event spans */
#include "runtime/upstream/sse.h"

/* Bytes of a non-SSE (or non-2xx) body kept in sl_updec_t.body. */
#define SL_UPDEC_BODY_MAX 4096

typedef struct sl_updec_s sl_updec_t;

/* Receives each normalized event.  ev and its spans are valid only during
 * the call.  Return 0 to continue, nonzero to stop: sl_updec_feed then
 * returns SL_ECANCELED and calls nothing more. */
typedef int (*sl_updec_event_cb)(void *ud, const sl_event_t *ev);

struct sl_updec_s {
  llhttp_t parser;         /* the HTTP/1.1 response parser */
  sl_sse_t sse;            /* SSE framing of the body (its join buffer is the caller's) */
  int status;              /* HTTP status once headers are complete, else 0 */
  int headers_done;        /* the final (non-1xx) response's headers were parsed */
  int message_done;        /* the whole response was parsed */
  int keep_alive;          /* the connection may be reused after message_done */
  int is_sse;              /* Content-Type is text/event-stream (parameters ignored, any case) */
  int is_ndjson;           /* Content-Type is application/x-ndjson (decoded for an NDJSON adapter) */
  int saw_done;            /* a [DONE] event arrived */
  /* The engine's wish, in ms, once headers_done: retry-after-ms (digits)
   * when it is present and well formed, else Retry-After (delta-seconds,
   * capped at 2^31 s as RFC 9111 caps them, or an HTTP-date in any of the
   * three forms of RFC 9110, as ms from time(), 0 when it is past); -1
   * when neither is usable (a value over 40 bytes, trailing blanks aside,
   * is not).  A later copy of a header overrides an earlier one; a 1xx
   * interim response's are ignored. */
  int64_t retry_after_ms;
  char body[SL_UPDEC_BODY_MAX]; /* first bytes of a body that is not decoded (non-2xx or non-SSE) */
  size_t body_len;         /* bytes in body */
  uint64_t body_total;     /* body bytes seen (de-chunked), decoded or not */
  uint64_t events;         /* events delivered to the callback */
  uint64_t events_after_done; /* SSE events after [DONE], ignored as the SDKs do */
  char errmsg[128];        /* why feed or eof failed (NUL-terminated) */
  int err;                 /* sticky error code, 0 while healthy */
  const sl_adapter_t *adapter; /* framing and schema scan (sl_updec_set_adapter); kept across resets */
  /* Internal. */
  int emit;                /* decode the body as SSE events (2xx and SSE) */
  sl_updec_event_cb cb;    /* callback of the feed in progress */
  void *ud;                /* its argument */
  int hdr;                 /* the header being parsed: 0 other, 1 Content-Type, 2 Retry-After, 3 retry-after-ms */
  char hname[16];          /* header name bytes (first 16) */
  size_t hname_len;        /* header name length so far */
  char ctype[64];          /* Content-Type value bytes (first 64) */
  size_t ctype_len;        /* Content-Type value length so far */
  char rval[40];           /* Retry-After or retry-after-ms value bytes (first 40) */
  size_t rval_len;         /* its length so far; sizeof(rval) + 1 when too long */
  int64_t ra_after;        /* this response's Retry-After in ms so far, -1 none or malformed */
  int64_t ra_after_ms;     /* its retry-after-ms, -1 none or malformed */
  sl_event_t ev;           /* scratch event handed to the callback */
};

/* Initializes d for a new connection's first response; joinbuf[0..cap) is
 * the caller's join buffer (the most data bytes one SSE event may carry),
 * which must outlive d.  d must not move in memory while in use. */
void sl_updec_init(sl_updec_t *d, char *joinbuf, size_t cap);

/* Ready for the next response on a kept-alive connection (also clears a
 * sticky error).  Keeps the join buffer and the adapter. */
void sl_updec_reset(sl_updec_t *d);

/* Decodes the following responses with adapter a's framing and schema
 * scan (sl_updec_init chose the OpenAI-compatible adapter).  a is static
 * data (adapter.h) and must not be NULL.  Call it between responses. */
void sl_updec_set_adapter(sl_updec_t *d, const sl_adapter_t *a);

/* Feeds raw socket bytes in[0..len).  Calls cb(ud, ev) for each normalized
 * event, in order.  Returns 0 when all bytes were consumed (check
 * headers_done / message_done), or a negative code with errmsg set:
 * SL_EPARSE for malformed HTTP (an llhttp error, bytes after the end of
 * the response) or an SSE payload the adapter's scan refuses (not a valid
 * JSON object, for OpenAI), SL_ETOOBIG for an SSE event or NDJSON line
 * larger than the join buffer, SL_ECANCELED
 * when cb asked to stop.  An error is sticky: later feeds and eof return it
 * until reset.  Nothing keeps pointing into `in` after the call returns.
 * Not reentrant: cb must not call sl_updec_feed, _eof or _reset on d. */
int sl_updec_feed(sl_updec_t *d, const char *in, size_t len, sl_updec_event_cb cb, void *ud);

/* Tells d the connection reached EOF.  Returns 0 if the response was
 * complete (or its body was close-delimited and is complete now), else
 * SL_EUPSTREAM (nothing, or only part of the response arrived) with errmsg
 * set, or the sticky error of an earlier feed.  A stream that ended without
 * [DONE] is not an error here: check saw_done.  An SSE event that was still
 * pending (no blank line after it) is discarded, as the SSE spec says.
 * Calls no callback. */
int sl_updec_eof(sl_updec_t *d);

#endif
