/* output.h: the output stage of one streamed answer.
 *
 * Everything a stream sends its client after the request goes through here:
 * the SSE headers, events, heartbeats, [DONE], the error event and the end
 * of the body.  The stage owns four jobs:
 *
 *   - Batching.  Events are appended to a batch, not written: the relay
 *     appends every event of one upstream read, and the batch goes to the
 *     client in one HTTP chunk and one writev (sl_output_flush) when the
 *     read ends.  An event goes out as "data: " + the engine's JSON bytes +
 *     "\n\n", its bytes pinned in the pool chunk they were read (or joined)
 *     into: no copy, no allocation.
 *   - Holding back.  A bounded queue of events not yet released (the relay
 *     holds a role-only chunk until the first token); their bytes count
 *     toward backpressure.
 *   - Re-encoding.  An event something rewrote, and sluice's own events
 *     (usage, errors), are encoded as valid OpenAI chunks (oai.h's
 *     encoder) into a scratch chunk; untouched events go out as the
 *     engine's bytes.
 *   - Backpressure and written tokens.  sl_output_over_high is the one
 *     high-watermark test (sl_http_req_over_high with the held-back bytes
 *     added).  Tokens count as written once the kernel took the bytes of
 *     the write that carried them (see output.c).
 *
 * A stage is embedded in its stream and lives on the loop's thread.
 */
#ifndef SL_OUTPUT_H
#define SL_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/chunk_pool.h"
#include "runtime/base/counters.h"
#include "runtime/http/http_server.h"
#include "runtime/upstream/oai.h"

/* Buffers of one batch (separators included); a fuller batch is flushed
 * before the next event. */
#define SL_OUT_BUFS 48
/* Chunks one batch pins (one write's worth). */
#define SL_OUT_PINS SL_HTTP_WRITE_PINS
/* Events that may be held back at once. */
#define SL_OUT_HOLD 8
/* Writes with tokens not yet taken by the kernel that are told apart; more
 * are merged into the newest, which only makes their tokens count later. */
#define SL_OUT_MARKS 16

typedef struct {
  uint64_t mark;   /* the write's tokens are taken once this many bytes left the queue */
  uint64_t tokens;
} sl_out_mark_t;

typedef struct {
  const char *p;   /* the event's payload (JSON bytes) */
  size_t n;
  sl_chunk_t *pin; /* the chunk they are in (one reference held) */
  uint64_t tokens;
} sl_out_held_t;

typedef struct sl_output_s {
  sl_http_req_t *req;          /* NULL once the body ended or the client is gone */
  sl_chunk_pool_t *chunks;
  sl_pin_account_t *acct;      /* charged for the scratch chunks */
  sl_counters_t *counters;     /* may be NULL */
  int headers_sent;
  /* The batch: buffers ready for one writev, the chunks they point into
   * (one reference each, held by the batch), the tokens they carry. */
  uv_buf_t bufs[SL_OUT_BUFS];
  unsigned nbufs;
  sl_chunk_t *pins[SL_OUT_PINS];
  unsigned npins;
  int in_event;                /* the last buffer is a payload still owed its "\n\n" */
  uint64_t batch_tokens;
  unsigned batch_events;
  /* Held back, oldest first. */
  sl_out_held_t held[SL_OUT_HOLD];
  int nheld;
  size_t held_bytes;
  sl_chunk_t *scratch;         /* re-encoded and synthesized events are written here */
  /* Tokens written (see output.c). */
  uint64_t wq_in;
  sl_out_mark_t marks[SL_OUT_MARKS];
  int mark_head, nmarks;
  uint64_t tokens_written;
  /* What every synthesized chunk repeats, from the engine's first chunk. */
  char id[128];
  char model[256];
  int64_t created;
  int chat;
  /* Statistics. */
  uint64_t writes;             /* batches handed to the HTTP server */
  uint64_t events;             /* events in them */
} sl_output_t;

/* Sets o up for req (a request whose response has not started: bytes of an
 * earlier response on the connection may still be queued). */
void sl_output_init(sl_output_t *o, sl_http_req_t *req, sl_chunk_pool_t *chunks, sl_pin_account_t *acct,
                    sl_counters_t *counters, int chat);

/* Drops every reference o holds (batch, held events, scratch); o->req is
 * not touched.  Call once, when the stream is freed. */
void sl_output_free(sl_output_t *o);

/* Records id, model and created from an engine event, once each. */
void sl_output_note_meta(sl_output_t *o, const sl_event_t *ev);

/* Fills m with the recorded meta (pointing into o). */
void sl_output_meta(const sl_output_t *o, sl_oai_meta_t *m);

/* Sends the SSE response headers (once; later calls return 0). */
int sl_output_headers(sl_output_t *o);

/* Appends one event, payload p[0..n) carrying `tokens` tokens, to the
 * batch.  pin is the chunk p points into (a reference is taken), or NULL:
 * the bytes are then copied into the scratch chunk.  The headers are sent
 * first if they were not.  Returns 0; SL_ETOOBIG when a copied payload
 * cannot fit a chunk; or < 0 when the client is gone (o->req is then
 * NULL). */
int sl_output_event(sl_output_t *o, const char *p, size_t n, sl_chunk_t *pin, uint64_t tokens);

/* Appends bytes that stay valid for the life of the process (a static
 * string: a heartbeat comment, "data: [DONE]\n\n") to the batch. */
int sl_output_static(sl_output_t *o, const char *s, size_t n);

/* Appends a chunk encoded here (oai.h's sl_oai_encode_chunk, with the
 * recorded meta): an event whose text something rewrote, or one sluice
 * makes.  text_escaped is JSON string contents or NULL. */
int sl_output_encoded(sl_output_t *o, const char *role, const char *text_escaped, size_t text_len,
                      sl_finish_t finish, uint64_t tokens);

/* Bytes an encoded chunk may take (a rewritten event's text is sent in
 * pieces that fit). */
#define SL_OUT_ENCODE_MAX 8192

/* Like sl_output_encoded with reasoning text too (sl_oai_encode_delta). */
int sl_output_delta(sl_output_t *o, const char *role, const char *text_escaped, size_t text_len,
                    const char *reasoning_escaped, size_t reasoning_len, sl_finish_t finish, uint64_t tokens);

/* Appends an SSE comment line ": text" (newlines in text become spaces;
 * at most about 500 bytes): SDKs ignore it, people and logs read it. */
int sl_output_comment(sl_output_t *o, const char *text, size_t n);

/* Appends the usage chunk (prompt and completion counts). */
int sl_output_usage(sl_output_t *o, int64_t prompt, int64_t completion);

/* Holds an event back: like sl_output_event, but it waits in the hold-back
 * queue until sl_output_release.  Returns SL_ETOOBIG when the queue is full. */
int sl_output_hold(sl_output_t *o, const char *p, size_t n, sl_chunk_t *pin, uint64_t tokens);

/* Appends the held events to the batch, oldest first. */
int sl_output_release(sl_output_t *o);

/* Drops the held events unsent. */
void sl_output_drop_held(sl_output_t *o);

/* Writes the batch to the client: one HTTP chunk, one writev when the
 * socket takes it.  Returns 0 (also when the batch is empty or the client
 * is already gone and nothing was appended), or < 0 if the client turned
 * out to be gone (o->req is then NULL). */
int sl_output_flush(sl_output_t *o);

/* The one high-watermark test: the connection's held bytes plus the
 * held-back ones.  1 means stop reading the engine until the request's
 * on_drain (armed now). */
int sl_output_over_high(sl_output_t *o);

/* The server's on_written: counts the tokens of every write taken by now,
 * given the bytes still queued. */
void sl_output_written(sl_output_t *o, size_t queued);

/* Writes whose tokens the kernel has not taken yet. */
static inline int sl_output_unsettled(const sl_output_t *o) { return o->nmarks; }

/* Flushes, then ends the body: cleanly (the terminating chunk), or with
 * close=1 by closing the connection after what was written. */
void sl_output_end(sl_output_t *o, int close);

/* Appends an OpenAI-shaped error event (message is plain text), flushes
 * and ends the body with close: how a stream that fails after its headers
 * ends, without [DONE]. */
void sl_output_fail(sl_output_t *o, const char *message, const char *type, const char *code);

#endif
