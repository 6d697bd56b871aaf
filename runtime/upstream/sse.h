/* sse.h: incremental Server-Sent Events framing decoder (WHATWG rules).
 *
 * Turns the body bytes of a text/event-stream response, fed in whatever
 * pieces the network delivered, into events: the joined `data` of each event
 * and its `event` name.  Line ends may be CRLF, LF or a lone CR (also a CR
 * that ends one feed and an LF that starts the next); comment lines count in
 * `comments`; `id`, `retry` and unknown fields are ignored; a blank line
 * dispatches only if some data was seen; a UTF-8 BOM is removed only at the
 * very start of the stream.  See /work/shared/wire-formats.md section 6.
 *
 * Zero copy: an event whose data is a single `data:` line lying wholly in
 * the buffer of the current feed call is returned as a span into that
 * buffer (in_input = 1).  Whenever a feed call ends while an event is still
 * pending (a partial line, or data without its dispatching blank line yet),
 * the pending data bytes are copied into the caller's join buffer, so the
 * state never points into a buffer the caller may release; such an event is
 * returned from the join buffer (in_input = 0).  Only data values are
 * stored, never field names, comments or ignored lines, so the one limit is
 * the join buffer's capacity on an event's data, whatever the read splits.
 *
 * Pure C over (buffer, length, state): no allocation, no libuv.  All state
 * is inline in sl_sse_t; the join buffer belongs to the caller and must
 * outlive the state.
 */
#ifndef SL_SSE_H
#define SL_SSE_H

#include <stddef.h>
#include <stdint.h>

/* Longest `event:` name kept; a longer name fails the feed with SL_ETOOBIG. */
#define SL_SSE_EVENT_MAX 64

/* One dispatched event.  The spans are valid until the next sl_sse_feed or
 * sl_sse_reset on the same state, and (when in_input is 1) only while the
 * caller's input buffer is. */
typedef struct {
  const char *data;  /* the event's data: data lines joined with \n */
  size_t data_len;   /* bytes in data (0 for a lone "data:" line) */
  int in_input;      /* 1: data points into this feed call's `in`; 0: into the join buffer */
  const char *event; /* the `event:` name, or NULL when none (or empty) was given */
  size_t event_len;  /* bytes in event */
} sl_sse_event_t;

/* Decoder state.  Fields are public for inspection; treat them as read-only. */
typedef struct sl_sse_s {
  char *buf;               /* caller's join buffer (NULL until acquired, when lazy) */
  char *(*acquire)(void *ud, const char *keep, size_t keep_len, size_t need, size_t *got); /* lazy buffer (sl_sse_set_acquire), or NULL */
  void *acquire_ud;        /* its argument */
  size_t cap;              /* the most data bytes one event may carry */
  size_t bufcap;           /* bytes in buf now (cap unless lazy) */
  size_t dlen;             /* pending data bytes held in buf */
  const char *din;         /* pending data in the current input (valid inside one feed call) */
  size_t dinlen;           /* bytes at din */
  int data_in_input;       /* 1 while the pending data is at din rather than in buf */
  int data_seen;           /* a data field arrived since the last dispatch */
  char event[SL_SSE_EVENT_MAX]; /* pending event name (always copied) */
  size_t event_len;        /* bytes in event */
  int lstate;              /* line-parser state for a line split across feeds */
  int field;               /* field of the line in progress (data, event, other) */
  char name[8];            /* field name bytes of a split line (first 8) */
  size_t name_len;         /* field name length so far (may exceed sizeof name) */
  int after_cr;            /* the last feed ended in CR: skip one LF next */
  int bom;                 /* BOM bytes matched at stream start; 3 once decided */
  uint64_t comments;       /* comment lines seen (heartbeats) */
  uint64_t events;         /* events dispatched */
  int err;                 /* sticky error (SL_ETOOBIG) until reset */
  int ndjson;              /* NDJSON mode (sl_sse_set_ndjson); kept across resets */
} sl_sse_t;

/* Initializes st over the caller's join buffer joinbuf[0..cap).  The buffer
 * must stay valid and unused by anyone else while st is in use. */
void sl_sse_init(sl_sse_t *st, char *joinbuf, size_t cap);

/* Provides join buffer space: at least `need` bytes, the first keep_len of
 * them a copy of keep[0..keep_len) (the bytes joined so far, in the buffer
 * it gave before, or NULL), and its capacity in *got.  NULL: no memory. */
typedef char *(*sl_sse_acquire_fn)(void *ud, const char *keep, size_t keep_len, size_t need, size_t *got);

/* Makes the join buffer lazy: with joinbuf NULL at init, acquire is asked
 * for space the first time an event must be joined across feeds; engines
 * that write whole events never cause one.  It may give less than cap
 * bytes: when the event outgrows them, it is asked again with the bytes
 * joined so far (never past cap in all).  After an event is returned from
 * the join buffer, the next join asks again, so the caller may keep that
 * event's bytes (the upstream client passes its buffer, a pool chunk, on
 * to the write that sends the event: an event is joined once and not
 * copied again unless it outgrew the space first given) and answer with
 * the rest of the same chunk or a fresh one.  The space must stay valid
 * while st uses it.  A NULL answer fails the feed with SL_ENOMEM. */
void sl_sse_set_acquire(sl_sse_t *st, sl_sse_acquire_fn acquire, void *ud);

/* NDJSON mode (on nonzero): every non-blank line is one whole event
 * whose data is the line itself (no field names, no comments, no blank
 * line needed to dispatch), as Ollama's native routes frame their replies
 * (wire-formats.md section 5: one JSON object followed by \n).  Line ends,
 * joining across feeds, the lazy join buffer and its cap (now on one line)
 * work as for SSE; a line still open at the end of the stream is
 * discarded like a pending SSE event.  Kept across sl_sse_reset. */
void sl_sse_set_ndjson(sl_sse_t *st, int on);

/* Forgets everything about the current stream (pending data, partial line,
 * BOM state, counters, sticky error) so st can decode a new stream. */
void sl_sse_reset(sl_sse_t *st);

/* Decodes from in[0..len).  Returns 1 when an event is complete: *ev is set
 * and *consumed says how many bytes were used (call again with in+*consumed
 * for the rest).  Returns 0 when all input was consumed without completing
 * an event (*consumed == len).  Returns SL_ETOOBIG when one event's data
 * exceeds the join buffer's capacity (or an event name exceeds
 * SL_SSE_EVENT_MAX); st then keeps returning that error until reset.
 * Comment and ignored lines are never stored, so they have no size limit.
 * ev's spans stay valid until the next call on st (see sl_sse_event_t). */
int sl_sse_feed(sl_sse_t *st, const char *in, size_t len, size_t *consumed, sl_sse_event_t *ev);

/* 1 if an event is pending (data seen without its blank line, or a partial
 * line) — at end of stream such an event is discarded, as the spec says. */
int sl_sse_pending(const sl_sse_t *st);

#endif
