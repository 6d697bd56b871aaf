/* output.c: the output stage of one streamed answer (see output.h).
 *
 * A batch is the buffers of one writev, built as events arrive:
 *
 *   "data: " payload1 "\n\ndata: " payload2 ... payloadN "\n\n"
 *
 * The separators are static strings, the payloads point into pool chunks
 * the batch references (the read chunk, the connection's join chunk, or the
 * scratch chunk).  sl_http_stream_writev wraps it in one HTTP chunk and, with
 * nothing queued, hands it to the kernel in one system call.
 *
 * Tokens written.  A token counts as written once the kernel has taken its
 * bytes for the client's socket: at once when the write went straight out,
 * or later, when libuv moves the bytes from the connection's write queue
 * into the socket.  That is as far as a server can see; bytes the kernel
 * took can still be lost with the connection, but nothing sluice holds is
 * counted.  The write queue is FIFO: wq_in is the total of bytes that ever
 * stayed in it (the queue found at the start, then what each write left
 * there), and a write holding tokens records wq_in just after it as its
 * mark.  Bytes taken so far are wq_in minus the queue's size now; a mark at
 * or below that is a write the kernel took whole.  Marks are settled after
 * each write (what went straight out) and on the server's on_written event,
 * which libuv's write completion raises whenever the kernel has taken a
 * queued write whole.  No allocation and no extra system call.  A client
 * that leaves is counted short, never long: nothing is settled once it is
 * gone.
 */
#include <string.h>

#include "runtime/base/errors.h"
#include "runtime/stream/output.h"

static const char sl__sse_headers[] = "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n";
static const char sl__pre[] = "data: ", sl__sep[] = "\n\ndata: ", sl__post[] = "\n\n";

void sl_output_init(sl_output_t *o, sl_http_req_t *req, sl_chunk_pool_t *chunks, sl_pin_account_t *acct,
                    sl_counters_t *counters, int chat) {
  memset(o, 0, sizeof(*o));
  o->req = req;
  o->chunks = chunks;
  o->acct = acct;
  o->counters = counters;
  o->chat = chat;
  /* Bytes of an earlier response on this connection may still be queued
   * ahead of this one's. */
  o->wq_in = req ? sl_http_req_write_queue(req) : 0;
}

static void sl__batch_clear(sl_output_t *o) {
  for (unsigned i = 0; i < o->npins; i++) sl_chunk_unref(o->pins[i]);
  o->npins = 0;
  o->nbufs = 0;
  o->in_event = 0;
  o->batch_tokens = 0;
  o->batch_events = 0;
}

void sl_output_drop_held(sl_output_t *o) {
  for (int i = 0; i < o->nheld; i++) sl_chunk_unref(o->held[i].pin);
  o->nheld = 0;
  o->held_bytes = 0;
}

void sl_output_free(sl_output_t *o) {
  sl__batch_clear(o);
  sl_output_drop_held(o);
  if (o->scratch) sl_chunk_unref(o->scratch);
  o->scratch = NULL;
}

void sl_output_note_meta(sl_output_t *o, const sl_event_t *ev) {
  if (o->id[0] == '\0' && ev->id.n > 0 && ev->id.n < sizeof(o->id)) {
    memcpy(o->id, ev->id.p, ev->id.n);
    o->id[ev->id.n] = '\0';
  }
  if (o->model[0] == '\0' && ev->model.n > 0 && ev->model.n < sizeof(o->model)) {
    memcpy(o->model, ev->model.p, ev->model.n);
    o->model[ev->model.n] = '\0';
  }
  if (!o->created && ev->has_created) o->created = ev->created;
}

void sl_output_meta(const sl_output_t *o, sl_oai_meta_t *m) {
  m->id.p = o->id;
  m->id.n = strlen(o->id);
  m->model.p = o->model;
  m->model.n = strlen(o->model);
  m->created = o->created;
  m->chat = o->chat;
}

/* ---- tokens written ---- */

void sl_output_written(sl_output_t *o, size_t queued) {
  if (o->nmarks == 0) return;
  uint64_t taken = o->wq_in > queued ? o->wq_in - queued : 0;
  while (o->nmarks > 0) {
    sl_out_mark_t *m = &o->marks[o->mark_head];
    if (m->mark > taken) break;
    o->tokens_written += m->tokens;
    sl_counter_add(o->counters, SL_C_TOKENS_WRITTEN, m->tokens);
    o->mark_head = (o->mark_head + 1) % SL_OUT_MARKS;
    o->nmarks--;
  }
}

/* After a write that succeeded: q0 was the queue's size just before it.
 * Notes what it left in the queue and, if it held tokens, their mark. */
static void sl__note(sl_output_t *o, size_t q0, uint64_t tokens) {
  size_t q1 = sl_http_req_write_queue(o->req);
  if (q1 > q0) o->wq_in += q1 - q0;
  if (tokens > 0) {
    if (o->nmarks == SL_OUT_MARKS) {
      sl_out_mark_t *last = &o->marks[(o->mark_head + SL_OUT_MARKS - 1) % SL_OUT_MARKS];
      last->mark = o->wq_in;
      last->tokens += tokens;
    } else {
      sl_out_mark_t *m = &o->marks[(o->mark_head + o->nmarks) % SL_OUT_MARKS];
      m->mark = o->wq_in;
      m->tokens = tokens;
      o->nmarks++;
    }
  }
  sl_output_written(o, q1);
}

/* ---- writing ---- */

int sl_output_headers(sl_output_t *o) {
  if (o->headers_sent) return 0;
  if (o->req == NULL) return UV_ECANCELED;
  o->headers_sent = 1;
  size_t q0 = sl_http_req_write_queue(o->req);
  /* The head goes out with the first batch, in the same write. */
  int rc = sl_http_stream_begin(o->req, 200, "text/event-stream", sl__sse_headers);
  if (rc < 0) {
    o->req = NULL; /* the server ended the request; no on_abort follows */
    return rc;
  }
  sl__note(o, q0, 0);
  return 0;
}

int sl_output_flush(sl_output_t *o) {
  if (o->nbufs == 0) return 0;
  if (o->req == NULL) {
    sl__batch_clear(o);
    return UV_ECANCELED;
  }
  if (o->in_event) o->bufs[o->nbufs++] = uv_buf_init((char *)sl__post, 2);
  size_t q0 = sl_http_req_write_queue(o->req);
  int rc = sl_http_stream_writev(o->req, o->bufs, o->nbufs, o->pins, o->npins);
  uint64_t tokens = o->batch_tokens;
  o->writes++;
  o->events += o->batch_events;
  sl_counter_inc(o->counters, SL_C_STREAM_WRITES);
  sl_counter_add(o->counters, SL_C_STREAM_EVENTS, o->batch_events);
  sl__batch_clear(o); /* the server took its own references */
  if (o->scratch != NULL && o->scratch->refcnt == 1) {
    /* No write holds the scratch chunk (the kernel took the bytes): give
     * it back, so a stream between tokens pins nothing. */
    sl_chunk_unref(o->scratch);
    o->scratch = NULL;
  }
  if (rc < 0) {
    o->req = NULL;
    return rc;
  }
  sl__note(o, q0, tokens);
  return 0;
}

/* Makes room for `bufs` more buffers and the chunk pin (NULL: none) in the
 * batch, flushing it first if either would not fit. */
static int sl__room(sl_output_t *o, unsigned bufs, sl_chunk_t *pin) {
  int has = pin == NULL;
  for (unsigned i = 0; i < o->npins && !has; i++) has = o->pins[i] == pin;
  /* One buffer stays free for the closing "\n\n". */
  if (o->nbufs + bufs + 1 > SL_OUT_BUFS || (!has && o->npins == SL_OUT_PINS)) {
    /* The caller's bytes may sit in the scratch chunk, not yet in the
     * batch: the flush must not give that chunk back (it gives the scratch
     * chunk back when nothing else holds it). */
    if (pin != NULL) sl_chunk_ref(pin);
    int rc = sl_output_flush(o);
    if (pin != NULL) sl_chunk_unref(pin);
    if (rc < 0) return rc;
    has = pin == NULL;
  }
  if (!has) {
    sl_chunk_ref(pin);
    o->pins[o->npins++] = pin;
  }
  return 0;
}

/* Copies *p[0..n) into the scratch chunk and points *p and *pin there.
 * Returns 0, or SL_ETOOBIG if the bytes cannot fit a chunk. */
static int sl__scratch_copy(sl_output_t *o, const char **p, size_t n, sl_chunk_t **pin) {
  if (n > o->chunks->chunk_size) return SL_ETOOBIG;
  if (o->scratch == NULL || o->scratch->cap - o->scratch->len < n) {
    if (o->scratch) sl_chunk_unref(o->scratch);
    o->scratch = sl_chunk_get(o->chunks);
    if (o->acct) sl_chunk_charge(o->scratch, o->acct);
  }
  char *dst = (char *)o->scratch->data + o->scratch->len;
  memcpy(dst, *p, n);
  o->scratch->len += (uint32_t)n;
  *p = dst;
  *pin = o->scratch;
  return 0;
}

/* Appends payload p[0..n) in pin (not NULL) as one event. */
static int sl__append_event(sl_output_t *o, const char *p, size_t n, sl_chunk_t *pin, uint64_t tokens) {
  int rc = sl_output_headers(o);
  if (rc < 0) return rc;
  if ((rc = sl__room(o, 2, pin)) < 0) return rc;
  if (o->in_event)
    o->bufs[o->nbufs++] = uv_buf_init((char *)sl__sep, sizeof(sl__sep) - 1);
  else
    o->bufs[o->nbufs++] = uv_buf_init((char *)sl__pre, sizeof(sl__pre) - 1);
  o->bufs[o->nbufs++] = uv_buf_init((char *)p, (unsigned)n);
  o->in_event = 1;
  o->batch_tokens += tokens;
  o->batch_events++;
  return 0;
}

int sl_output_event(sl_output_t *o, const char *p, size_t n, sl_chunk_t *pin, uint64_t tokens) {
  if (o->req == NULL) return UV_ECANCELED;
  if (pin == NULL && sl__scratch_copy(o, &p, n, &pin) < 0) return SL_ETOOBIG;
  return sl__append_event(o, p, n, pin, tokens);
}

int sl_output_static(sl_output_t *o, const char *s, size_t n) {
  if (o->req == NULL) return UV_ECANCELED;
  int rc = sl_output_headers(o);
  if (rc < 0) return rc;
  if ((rc = sl__room(o, 2, NULL)) < 0) return rc;
  if (o->in_event) o->bufs[o->nbufs++] = uv_buf_init((char *)sl__post, 2);
  o->in_event = 0;
  o->bufs[o->nbufs++] = uv_buf_init((char *)s, (unsigned)n);
  return 0;
}

/* Appends a chunk encoded into buf[0..len) (len (size_t)-1: it did not
 * fit), copied into the scratch chunk. */
static int sl__append_encoded(sl_output_t *o, size_t len, const char *buf, uint64_t tokens) {
  if (len == (size_t)-1) return SL_ETOOBIG;
  return sl_output_event(o, buf, len, NULL, tokens);
}

int sl_output_encoded(sl_output_t *o, const char *role, const char *text_escaped, size_t text_len,
                      sl_finish_t finish, uint64_t tokens) {
  if (o->req == NULL) return UV_ECANCELED;
  char buf[4096];
  sl_oai_meta_t m;
  sl_output_meta(o, &m);
  size_t n = sl_oai_encode_chunk(buf, sizeof(buf), &m, role, text_escaped, text_len, finish);
  return sl__append_encoded(o, n, buf, tokens);
}

int sl_output_delta(sl_output_t *o, const char *role, const char *text_escaped, size_t text_len,
                    const char *reasoning_escaped, size_t reasoning_len, sl_finish_t finish, uint64_t tokens) {
  if (o->req == NULL) return UV_ECANCELED;
  char buf[SL_OUT_ENCODE_MAX];
  sl_oai_meta_t m;
  sl_output_meta(o, &m);
  size_t n = sl_oai_encode_delta(buf, sizeof(buf), &m, role, text_escaped, text_len, reasoning_escaped,
                                 reasoning_len, finish);
  return sl__append_encoded(o, n, buf, tokens);
}

int sl_output_comment(sl_output_t *o, const char *text, size_t n) {
  if (o->req == NULL) return UV_ECANCELED;
  char buf[512];
  if (n > sizeof(buf) - 4) n = sizeof(buf) - 4;
  buf[0] = ':';
  buf[1] = ' ';
  size_t len = 2;
  for (size_t i = 0; i < n; i++) buf[len++] = (text[i] == '\n' || text[i] == '\r') ? ' ' : text[i];
  buf[len++] = '\n';
  buf[len++] = '\n';
  const char *p = buf;
  sl_chunk_t *pin;
  int rc = sl_output_headers(o);
  if (rc < 0) return rc;
  if (sl__scratch_copy(o, &p, len, &pin) < 0) return SL_ETOOBIG;
  if ((rc = sl__room(o, 2, pin)) < 0) return rc;
  if (o->in_event) o->bufs[o->nbufs++] = uv_buf_init((char *)sl__post, 2);
  o->in_event = 0;
  o->bufs[o->nbufs++] = uv_buf_init((char *)p, (unsigned)len);
  return 0;
}

int sl_output_usage(sl_output_t *o, int64_t prompt, int64_t completion) {
  if (o->req == NULL) return UV_ECANCELED;
  char buf[1024];
  sl_oai_meta_t m;
  sl_output_meta(o, &m);
  return sl__append_encoded(o, sl_oai_encode_usage(buf, sizeof(buf), &m, prompt, completion), buf, 0);
}

/* ---- holding back ---- */

int sl_output_hold(sl_output_t *o, const char *p, size_t n, sl_chunk_t *pin, uint64_t tokens) {
  if (o->nheld == SL_OUT_HOLD) return SL_ETOOBIG;
  if (pin == NULL && sl__scratch_copy(o, &p, n, &pin) < 0) return SL_ETOOBIG;
  sl_chunk_ref(pin);
  o->held[o->nheld++] = (sl_out_held_t){p, n, pin, tokens};
  o->held_bytes += n;
  return 0;
}

int sl_output_release(sl_output_t *o) {
  int rc = 0, i = 0;
  for (; i < o->nheld && rc == 0; i++) {
    sl_out_held_t *h = &o->held[i];
    rc = sl_output_event(o, h->p, h->n, h->pin, h->tokens);
  }
  sl_output_drop_held(o);
  return rc;
}

/* ---- backpressure and the end ---- */

int sl_output_over_high(sl_output_t *o) {
  if (o->req == NULL) return 0;
  return sl_http_req_over_high(o->req, o->held_bytes);
}

void sl_output_end(sl_output_t *o, int close) {
  if (o->req == NULL) {
    sl__batch_clear(o);
    return;
  }
  if (sl_output_flush(o) < 0) return;
  sl_output_written(o, sl_http_req_write_queue(o->req));
  sl_http_stream_end(o->req, close);
  o->req = NULL;
}

void sl_output_fail(sl_output_t *o, const char *message, const char *type, const char *code) {
  if (o->req == NULL) return;
  char buf[1024];
  size_t n = sl_oai_encode_error(buf, sizeof(buf), message, strlen(message), type, code);
  if (n != (size_t)-1 && sl_output_event(o, buf, n, NULL, 0) < 0) return;
  sl_output_end(o, 1);
}
