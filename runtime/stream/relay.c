/* relay.c: one stream from placement to its end (see relay.h).
 *
 * A stream runs attempts until the first token reaches the client: each
 * attempt places the request (C prefilter, then the choice), sends it
 * upstream and waits under the first-token timeout.  A failed attempt before
 * the first token is retried on another endpoint if one is eligible, after
 * a jittered exponential backoff; a stale kept-alive connection is resent at
 * once without counting.  After the first token nothing is retried: a
 * failure ends the stream with one OpenAI-shaped error event and no [DONE].
 *
 * Events are written to the client as they arrive, as "data: " + the
 * engine's own JSON bytes + "\n\n", with the pool chunk that holds the bytes
 * pinned by the write: no copy, no allocation per token.  Only an event that
 * was joined across reads is copied, into a per-stream copy chunk.  The
 * engine's top-level "usage" member is cut out of those bytes, in place,
 * for a client that did not ask for usage.  When the client's write queue
 * passes the high watermark the upstream read stops (the engine's TCP
 * window then closes); it resumes on the server's on_drain at the low
 * watermark, so the bytes a stream pins stay bounded.  Tokens are counted
 * twice: received from the engine, and written once the kernel took their
 * bytes (see "tokens written" below).
 *
 * Before the first token the client sees nothing but, every heartbeat_ms,
 * a ':' comment (which sends the headers); a role-only chunk is held back
 * and sent with the first token, so a retry never shows the client a second
 * role chunk from another engine.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/base/errors.h"
#include "runtime/base/narrate.h"
#include "runtime/stream/placement.h"
#include "runtime/stream/relay.h"
#include "runtime/stream/reply.h"
#include "runtime/upstream/oai.h"

#define SL_MAX_TRIED 32
#define SL_MAX_TOOLS 16
/* Writes with tokens not yet taken by the kernel that are told apart; more
 * are merged into the newest, which only makes their tokens count later. */
#define SL_WPEND 16

/* A write that held tokens: they are written once the bytes that ever
 * entered the write queue minus those still in it reach mark. */
typedef struct {
  uint64_t mark;
  uint64_t tokens;
} sl__wmark_t;

typedef struct {
  int index;
  char *id, *name, *args;
  size_t args_len, args_cap;
} sl__tool_t;

struct sl_stream_s {
  sl_streams_t *ss;
  sl_stream_t *prev, *next;
  sl_http_req_t *req;        /* client request; NULL once answered or gone */
  sl_upconn_t *up;           /* current attempt's connection, or NULL */
  sl_endpoint_t *ep;         /* endpoint of the current/last attempt */
  int ep_counted;            /* ep->inflight includes this stream */
  sl_pin_account_t *acct;    /* chunks this stream keeps alive */
  sl_generation_t *gen;      /* policies this stream was admitted under */
  uint64_t t_last;           /* uv_hrtime of the last token */
  sl_request_t r;
  char id[72];
  char *fwd_headers;         /* header lines sent upstream */
  int attempts;              /* attempts that counted */
  int tried[SL_MAX_TRIED];
  int ntried;
  int headers_sent;
  int first_token;
  int answered;              /* client response ended (or client gone) */
  int finished;              /* end of stream decided; waiting for handles */
  int paused;                /* upstream read stopped for backpressure */
  int retry_pending;         /* retry_timer armed */
  uint64_t last_event_ms;    /* uv_now of the last upstream event (or attempt start) */
  uint64_t deadline_ms;      /* how long after it the deadline timer fires */
  uint32_t pauses;           /* backpressure pauses of this stream */
  int saw_done;
  int upstream_sent_usage;
  sl_chunk_t *held;          /* role-only chunk held until the first token */
  const char *held_p;
  size_t held_len;
  sl_chunk_t *copy;          /* chunk for events joined across reads */
  uint64_t t_start, t_first, t_end;
  uint64_t tokens_received;  /* token events received from the engine (what usage falls back to) */
  uint64_t tokens_written;   /* of those, the ones whose bytes the kernel took for the client */
  uint64_t wq_in;            /* bytes that ever stayed in the client's write queue (see sl__wq_note) */
  sl__wmark_t wpend[SL_WPEND]; /* writes holding tokens not yet taken, oldest first (a ring) */
  int wpend_head, wpend_n;
  int flushing;              /* [DONE] is queued; the body ends once its tokens are taken */
  int64_t prompt_tokens, completion_tokens;
  int has_usage;
  sl_finish_t finish;
  char end_reason[32];
  char error[384];           /* last failure, for the log and the client */
  int error_status;          /* HTTP status to answer if the stream fails before headers */
  uv_timer_t timer;          /* first-token, then idle-between-tokens deadline */
  uv_timer_t hb_timer;       /* heartbeats before the first token */
  uv_timer_t total_timer;    /* whole-stream deadline */
  uv_timer_t retry_timer;    /* backoff before the next attempt */
  int handles;
  char place_reason[128];
  /* Non-streaming answers are assembled here. */
  char *text;
  size_t text_len, text_cap;
  sl__tool_t tools[SL_MAX_TOOLS];
  int ntools;
  char resp_id[128];
  char resp_model[256];
  int64_t created;
};

static void sl__try_now(sl_stream_t *st);
static void sl__retry(sl_stream_t *st);
static int sl__on_event_outer(void *ud, const sl_event_t *ev, sl_chunk_t *chunk);
static void sl__on_end(void *ud, const sl_up_end_t *end);
static const sl_up_handler_t sl__handler = {sl__on_event_outer, sl__on_end};
static void sl__finish(sl_stream_t *st, const char *reason);
static void sl__fail(sl_stream_t *st, int status, const char *type, const char *code);

size_t sl_relay_pin_bound(const sl_config_t *cfg) {
  /* The write queue passes the high watermark by at most one read (one
   * chunk), and the chunks at either end of it, the held chunk and the copy
   * chunk may each be partly used. */
  return cfg->http.write_high_watermark + 4 * cfg->chunk_size;
}

/* ---- small helpers ---- */

static uint64_t sl__rand(sl_streams_t *ss) {
  uint64_t x = ss->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  ss->rng = x;
  return x;
}

static double sl__ms(uint64_t ns) { return (double)ns / 1e6; }

/* Records why the stream (or an attempt) failed.  The text may quote an
 * engine's reply, which may echo a credential: it is redacted here, since
 * it reaches both the log and the client. */
static void sl__set_error(sl_stream_t *st, const char *fmt, ...) {
  char raw[sizeof(st->error)];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(raw, sizeof(raw), fmt, ap);
  va_end(ap);
  sl_log_redact(st->ss->nar, raw, st->error, sizeof(st->error));
}

static void sl__release_endpoint(sl_stream_t *st) {
  if (st->ep_counted) {
    st->ep->inflight--;
    st->ep_counted = 0;
  }
}

/* An attempt failed on ep: cooldown bookkeeping and the error estimate. */
static void sl__attempt_failed(sl_stream_t *st, sl_endpoint_t *ep) {
  (void)st;
  sl_endpoint_failed(ep, uv_hrtime());
  sl_endpoint_observe(ep, 1, -1, -1, -1);
}

/* Feeds the endpoint's live estimates with this stream's timing. */
static void sl__observe(sl_stream_t *st) {
  if (st->ep == NULL || !st->first_token) return;
  double ttft = sl__ms(st->t_first - st->t_start);
  double itl = -1, tps = -1;
  if (st->tokens_received > 1 && st->t_last > st->t_first) {
    double span = sl__ms(st->t_last - st->t_first);
    itl = span / (double)(st->tokens_received - 1);
    tps = (double)(st->tokens_received - 1) / (span / 1000.0);
  }
  sl_endpoint_observe(st->ep, 0, ttft, itl, tps);
}

static void sl__stop_upstream(sl_stream_t *st) {
  if (st->up != NULL) {
    sl_upstream_abort(st->up);
    st->up = NULL;
  }
  sl__release_endpoint(st);
}

/* ---- tokens written ----
 *
 * A token counts as written once the kernel has taken its bytes for the
 * client's socket: at once when the write went straight out (uv_try_write,
 * or uv_write finding the queue empty and the socket ready), or later, when
 * libuv moves the bytes from the connection's write queue into the socket.
 * That is as far as a server can see; bytes the kernel took can still be
 * lost with the connection, but nothing sluice holds is counted.
 *
 * The relay measures the write queue, which is FIFO: wq_in is the total
 * of bytes that ever stayed in it (the queue found at the start, then what
 * each write left there), and a write holding tokens records wq_in just
 * after it as its mark.  Bytes taken so far are wq_in minus the queue's
 * size now; a mark at or below that is a write the kernel took whole.  The
 * marks are settled after each write (what went straight out) and on the
 * server's on_written event (sl__on_client_written), which libuv's write
 * completion raises with the queue's size whenever the kernel has taken a
 * queued write whole: a mark is reached exactly when its write is taken,
 * and that write's event settles it.  After [DONE] the body ends on the
 * event that settles the last mark, with no timer.  No allocation and no
 * extra system call per token.
 *
 * A client that leaves is counted short, never long.  A failed write
 * raises no event (libuv takes its unsent bytes off the queue's size, as
 * if sent, before calling it back), and nothing is settled once the client
 * is gone: the tokens the kernel had not taken stay uncounted.  Every
 * write it took whole was settled on its own event before the client's
 * end was seen, so a client that read everything and left is counted in
 * full. */

/* Counts the tokens of every write the kernel has taken, given the bytes
 * still queued. */
static void sl__wq_settle(sl_stream_t *st, size_t queued) {
  if (st->wpend_n == 0) return;
  uint64_t taken = st->wq_in > queued ? st->wq_in - queued : 0;
  while (st->wpend_n > 0) {
    sl__wmark_t *m = &st->wpend[st->wpend_head];
    if (m->mark > taken) break;
    st->tokens_written += m->tokens;
    sl_counter_add(st->ss->counters, SL_C_TOKENS_WRITTEN, m->tokens);
    st->wpend_head = (st->wpend_head + 1) % SL_WPEND;
    st->wpend_n--;
  }
}

/* After a write that succeeded: q0 was the queue's size just before it.
 * Notes what it left in the queue and, if it held tokens, their mark. */
static void sl__wq_note(sl_stream_t *st, size_t q0, uint64_t tokens) {
  size_t q1 = sl_http_req_write_queue(st->req);
  if (q1 > q0) st->wq_in += q1 - q0;
  if (tokens > 0) {
    if (st->wpend_n == SL_WPEND) {
      sl__wmark_t *last = &st->wpend[(st->wpend_head + SL_WPEND - 1) % SL_WPEND];
      last->mark = st->wq_in;
      last->tokens += tokens;
    } else {
      sl__wmark_t *m = &st->wpend[(st->wpend_head + st->wpend_n) % SL_WPEND];
      m->mark = st->wq_in;
      m->tokens = tokens;
      st->wpend_n++;
    }
  }
  sl__wq_settle(st, q1);
}

/* ---- writing to the client ---- */

/* X-Request-Id is on every response already (api.c sets it at the door). */
static const char sl__sse_headers[] = "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n";

static int sl__send_headers(sl_stream_t *st) {
  if (st->headers_sent) return 0;
  st->headers_sent = 1;
  size_t q0 = sl_http_req_write_queue(st->req);
  int rc = sl_http_stream_start(st->req, 200, "text/event-stream", sl__sse_headers);
  if (rc < 0) {
    st->req = NULL;
    st->answered = 1;
    return rc;
  }
  sl__wq_note(st, q0, 0);
  return rc;
}

/* Puts n bytes into the copy chunk and returns where they are (the chunk in
 * *pin), or NULL if they cannot fit a chunk. */
static const char *sl__copy(sl_stream_t *st, const char *p, size_t n, sl_chunk_t **pin) {
  sl_streams_t *ss = st->ss;
  if (n > ss->chunks->chunk_size) return NULL;
  if (st->copy == NULL || st->copy->cap - st->copy->len < n) {
    if (st->copy) sl_chunk_unref(st->copy);
    st->copy = sl_chunk_get(ss->chunks);
    sl_chunk_charge(st->copy, st->acct);
  }
  char *dst = (char *)st->copy->data + st->copy->len;
  memcpy(dst, p, n);
  st->copy->len += (uint32_t)n;
  *pin = st->copy;
  return dst;
}

/* The bytes an engine event goes out as, in a chunk a write can pin: the
 * pool chunk it was read into, or (an event joined across reads, chunk
 * NULL) the stream's copy chunk.  The engine's top-level "usage" member is
 * cut out when the client did not ask for usage (sluice always asks the
 * engine, and OpenAI omits the key for clients that did not) or when its
 * counts were refused.  The cut is made in place, in bytes no one else
 * reads (this event's payload, already scanned), by moving the shorter
 * side over the member: usually the closing brace.  Returns the bytes and
 * sets *pin and *n, or NULL if a joined event cannot fit a chunk. */
static const char *sl__event_bytes(sl_stream_t *st, const sl_event_t *ev, sl_chunk_t *chunk, sl_chunk_t **pin,
                                   size_t *n) {
  const char *p = ev->raw.p;
  size_t len = ev->raw.n;
  if (chunk == NULL) {
    p = sl__copy(st, p, len, &chunk);
    if (p == NULL) return NULL;
  }
  if (ev->usage_member.n > 0 && (ev->usage_refused || !st->r.include_usage)) {
    size_t head = (size_t)(ev->usage_member.p - ev->raw.p), cut = ev->usage_member.n;
    size_t tail = len - head - cut;
    char *w = (char *)chunk->data + (p - (const char *)chunk->data);
    if (head <= tail) {
      memmove(w + cut, w, head);
      p = w + cut;
    } else {
      memmove(w + head, w + head + cut, tail);
      p = w;
    }
    len -= cut;
  }
  *pin = chunk;
  *n = len;
  return p;
}

/* Writes one "data: <payload>\n\n" event holding `tokens` tokens.  Returns
 * 0, or < 0 if the client is gone (the stream is then finished as canceled
 * by the caller). */
static int sl__write_event(sl_stream_t *st, const char *p, size_t n, sl_chunk_t *pin, uint64_t tokens) {
  if (st->req == NULL) return UV_ECANCELED;
  if (pin == NULL) {
    p = sl__copy(st, p, n, &pin);
    if (p == NULL) return SL_ETOOBIG;
  }
  static const char pre[] = "data: ", post[] = "\n\n";
  uv_buf_t b[3] = {uv_buf_init((char *)pre, 6), uv_buf_init((char *)p, (unsigned)n),
                   uv_buf_init((char *)post, 2)};
  size_t q0 = sl_http_req_write_queue(st->req);
  int rc = sl_http_stream_write(st->req, b, 3, pin);
  if (rc < 0) {
    st->req = NULL; /* the server ended the request; no on_abort follows */
    st->answered = 1;
    return rc;
  }
  sl__wq_note(st, q0, tokens);
  return rc;
}

static int sl__write_static(sl_stream_t *st, const char *s, size_t n) {
  if (st->req == NULL) return UV_ECANCELED;
  uv_buf_t b = uv_buf_init((char *)s, (unsigned)n);
  size_t q0 = sl_http_req_write_queue(st->req);
  int rc = sl_http_stream_write(st->req, &b, 1, NULL);
  if (rc < 0) {
    st->req = NULL;
    st->answered = 1;
    return rc;
  }
  sl__wq_note(st, q0, 0);
  return rc;
}

/* Ends the body of a response whose [DONE] is written (sl__complete): the
 * tokens taken by now are counted, the rest never will be. */
static void sl__flush_end(sl_stream_t *st) {
  if (!st->flushing) return;
  st->flushing = 0;
  if (st->req == NULL) return;
  sl__wq_settle(st, sl_http_req_write_queue(st->req));
  sl_http_stream_end(st->req, 0);
  st->req = NULL;
}

/* Ends the client response after headers: one error event, then close,
 * never [DONE]. */
static void sl__error_event(sl_stream_t *st, const char *type, const char *code) {
  if (st->req == NULL) return;
  char buf[1024];
  size_t n = sl_oai_encode_error(buf, sizeof(buf), st->error, strlen(st->error), type, code);
  if (n != (size_t)-1 && sl__write_event(st, buf, n, NULL, 0) < 0) return;
  sl_http_stream_end(st->req, 1);
  st->req = NULL;
  st->answered = 1;
}

/* ---- the end of a stream ---- */

static void sl__handle_closed(uv_handle_t *h) {
  sl_stream_t *st = h->data;
  if (--st->handles > 0) return;
  sl_streams_t *ss = st->ss;
  if (st->held) sl_chunk_unref(st->held);
  if (st->copy) sl_chunk_unref(st->copy);
  sl_pin_account_release(st->acct);
  sl_generation_release(st->gen);
  sl_free(st->r.body);
  sl_free(st->fwd_headers);
  sl_free(st->text);
  for (int i = 0; i < st->ntools; i++) {
    sl_free(st->tools[i].id);
    sl_free(st->tools[i].name);
    sl_free(st->tools[i].args);
  }
  if (st->prev) st->prev->next = st->next; else ss->head = st->next;
  if (st->next) st->next->prev = st->prev;
  ss->n--;
  sl_free(st);
  if (ss->n == 0 && ss->on_idle) ss->on_idle(ss->idle_ud);
}

static void sl__log_end(sl_stream_t *st) {
  sl_streams_t *ss = st->ss;
  double ttft = st->first_token ? sl__ms(st->t_first - st->t_start) : -1;
  double dur = sl__ms(st->t_end - st->t_start);
  const char *pool = st->ep ? st->ep->pool->cfg->name : "-";
  const char *ep = st->ep ? st->ep->name : "-";
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  char ts[32];
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
  uint32_t peak = st->acct ? st->acct->peak : 0;
  char error[sizeof(st->error)], placement[sizeof(st->place_reason)];
  sl_log_redact(st->ss->nar, st->error, error, sizeof(error));
  sl_log_redact(st->ss->nar, st->place_reason, placement, sizeof(placement));
  if (ss->cfg->log_json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ts", ts);
    cJSON_AddStringToObject(o, "event", "stream_end");
    cJSON_AddStringToObject(o, "request_id", st->id);
    cJSON_AddStringToObject(o, "pool", pool);
    cJSON_AddStringToObject(o, "endpoint", ep);
    cJSON_AddStringToObject(o, "model", st->r.model);
    cJSON_AddBoolToObject(o, "stream", st->r.stream);
    if (st->first_token) cJSON_AddNumberToObject(o, "ttft_ms", ttft); else cJSON_AddNullToObject(o, "ttft_ms");
    cJSON_AddNumberToObject(o, "tokens", (double)st->tokens_received);
    cJSON_AddNumberToObject(o, "tokens_written", (double)st->tokens_written);
    if (st->has_usage) {
      cJSON_AddNumberToObject(o, "prompt_tokens", (double)st->prompt_tokens);
      cJSON_AddNumberToObject(o, "completion_tokens", (double)st->completion_tokens);
    }
    cJSON_AddNumberToObject(o, "duration_ms", dur);
    cJSON_AddStringToObject(o, "end", st->end_reason);
    cJSON_AddNumberToObject(o, "attempts", st->attempts);
    if (st->gen) cJSON_AddNumberToObject(o, "generation", (double)st->gen->id);
    if (placement[0]) cJSON_AddStringToObject(o, "placement", placement);
    cJSON_AddNumberToObject(o, "pinned_chunks_peak", peak);
    if (error[0]) cJSON_AddStringToObject(o, "error", error);
    char *line = cJSON_PrintUnformatted(o);
    fprintf(ss->log, "%s\n", line);
    cJSON_free(line);
    cJSON_Delete(o);
  } else {
    char ttfts[32];
    if (st->first_token) snprintf(ttfts, sizeof(ttfts), "%.1fms", ttft); else snprintf(ttfts, sizeof(ttfts), "-");
    fprintf(ss->log,
            "%s stream %s pool=%s endpoint=%s model=%s ttft=%s tokens=%" PRIu64 " tokens_written=%" PRIu64
            " duration=%.1fms end=%s "
            "attempts=%d gen=%llu placement=\"%s\"%s%s%s\n",
            ts, st->id, pool, ep, st->r.model, ttfts, st->tokens_received, st->tokens_written, dur, st->end_reason,
            st->attempts,
            st->gen ? (unsigned long long)st->gen->id : 0ull, placement, error[0] ? " error=\"" : "", error,
            error[0] ? "\"" : "");
  }
  fflush(ss->log);
}

/* Decides the end: stops everything, logs once, frees when handles close.
 * The client must have been answered (or be gone) before. */
static void sl__finish(sl_stream_t *st, const char *reason) {
  if (st->finished) return;
  st->finished = 1;
  st->t_end = uv_hrtime();
  snprintf(st->end_reason, sizeof(st->end_reason), "%s", reason);
  sl__observe(st);
  sl__stop_upstream(st);
  sl__flush_end(st); /* [DONE] went out: end the body cleanly */
  if (st->req != NULL) {
    /* Not answered yet (should not happen): close without [DONE]. */
    if (st->headers_sent) sl_http_stream_end(st->req, 1);
    else sl_reply_error(st->req, 500, "server_error", "internal", NULL, "stream ended unexpectedly");
    st->req = NULL;
  }
  sl_counter_dec(st->ss->counters, SL_C_STREAMS_ACTIVE);
  sl_counter_inc(st->ss->counters, SL_C_STREAMS_COMPLETED);
  if (st->acct) sl_counter_max(st->ss->counters, SL_C_STREAM_PINNED_PEAK, (uint64_t)st->acct->peak * st->ss->chunks->chunk_size);
  sl__log_end(st);
  const char *epname = st->ep ? st->ep->name : NULL;
  uint64_t gid = st->gen ? st->gen->id : 0;
  if (strcmp(reason, "client_cancel") == 0)
    sl_narrate_push(st->ss->nar, SL_NAR_CANCEL, st->id, epname, st->r.model, NULL, st->attempts, gid, 0,
                    (int64_t)st->tokens_received);
  sl_narrate_push(st->ss->nar, SL_NAR_STREAM_END, st->id, epname, st->r.model, reason, st->attempts, gid,
                  sl__ms(st->t_end - st->t_start), (int64_t)st->tokens_received);
  uv_close((uv_handle_t *)&st->timer, sl__handle_closed);
  uv_close((uv_handle_t *)&st->hb_timer, sl__handle_closed);
  uv_close((uv_handle_t *)&st->total_timer, sl__handle_closed);
  uv_close((uv_handle_t *)&st->retry_timer, sl__handle_closed);
}

/* The stream failed for good: answer the client as far as it got. */
static void sl__fail(sl_stream_t *st, int status, const char *type, const char *code) {
  if (st->finished) return;
  sl__stop_upstream(st);
  sl__flush_end(st); /* after [DONE] the answer is complete: no error event */
  if (st->req != NULL) {
    if (st->headers_sent) {
      sl__error_event(st, type, code);
    } else {
      sl_reply_error(st->req, status, type, code, NULL, "%s", st->error);
      st->req = NULL;
      st->answered = 1;
    }
  }
  sl__finish(st, code);
}

/* ---- non-streaming assembly ---- */

static void sl__text_append(sl_stream_t *st, const sl_span_t *s) {
  /* Unescaping never grows the text. */
  if (st->text_len + s->n + 1 > st->text_cap) {
    size_t cap = st->text_cap ? st->text_cap : 1024;
    while (st->text_len + s->n + 1 > cap) cap *= 2;
    st->text = sl_realloc(st->text, cap);
    st->text_cap = cap;
  }
  size_t w = sl_json_unescape(st->text + st->text_len, st->text_cap - st->text_len, s->p, s->n);
  if (w != (size_t)-1) st->text_len += w;
  st->text[st->text_len] = '\0';
}

static char *sl__unescape_dup(const sl_span_t *s) {
  char *out = sl_malloc(s->n + 1);
  size_t w = sl_json_unescape(out, s->n + 1, s->p, s->n);
  out[w == (size_t)-1 ? 0 : w] = '\0';
  return out;
}

static void sl__assemble(sl_stream_t *st, const sl_event_t *ev) {
  if (ev->has_text) sl__text_append(st, &ev->text);
  for (int i = 0; i < ev->n_tool_calls; i++) {
    const sl_tool_delta_t *d = &ev->tool_calls[i];
    sl__tool_t *t = NULL;
    for (int k = 0; k < st->ntools; k++)
      if (st->tools[k].index == d->index) t = &st->tools[k];
    if (t == NULL) {
      if (st->ntools == SL_MAX_TOOLS) continue;
      t = &st->tools[st->ntools++];
      memset(t, 0, sizeof(*t));
      t->index = d->index;
    }
    if (d->has_id && t->id == NULL) t->id = sl__unescape_dup(&d->id);
    if (d->has_name && t->name == NULL) t->name = sl__unescape_dup(&d->name);
    if (d->has_arguments) {
      if (t->args_len + d->arguments.n + 1 > t->args_cap) {
        t->args_cap = (t->args_len + d->arguments.n + 1) * 2;
        t->args = sl_realloc(t->args, t->args_cap);
      }
      size_t w = sl_json_unescape(t->args + t->args_len, t->args_cap - t->args_len, d->arguments.p,
                                  d->arguments.n);
      if (w != (size_t)-1) t->args_len += w;
      t->args[t->args_len] = '\0';
    }
  }
}

static void sl__respond_whole(sl_stream_t *st) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", st->resp_id[0] ? st->resp_id : st->id);
  cJSON_AddStringToObject(o, "object", st->r.chat ? "chat.completion" : "text_completion");
  cJSON_AddNumberToObject(o, "created", (double)(st->created ? st->created : (int64_t)time(NULL)));
  cJSON_AddStringToObject(o, "model", st->resp_model[0] ? st->resp_model : st->r.model);
  cJSON *choices = cJSON_AddArrayToObject(o, "choices");
  cJSON *c = cJSON_CreateObject();
  cJSON_AddNumberToObject(c, "index", 0);
  const char *text = st->text ? st->text : "";
  if (st->r.chat) {
    cJSON *m = cJSON_AddObjectToObject(c, "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    if (st->ntools > 0 && st->text_len == 0)
      cJSON_AddNullToObject(m, "content");
    else
      cJSON_AddStringToObject(m, "content", text);
    if (st->ntools > 0) {
      cJSON *tc = cJSON_AddArrayToObject(m, "tool_calls");
      for (int i = 0; i < st->ntools; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "id", st->tools[i].id ? st->tools[i].id : "");
        cJSON_AddStringToObject(t, "type", "function");
        cJSON *f = cJSON_AddObjectToObject(t, "function");
        cJSON_AddStringToObject(f, "name", st->tools[i].name ? st->tools[i].name : "");
        cJSON_AddStringToObject(f, "arguments", st->tools[i].args ? st->tools[i].args : "");
        cJSON_AddItemToArray(tc, t);
      }
    }
  } else {
    cJSON_AddStringToObject(c, "text", text);
  }
  cJSON_AddNullToObject(c, "logprobs");
  const char *fin = sl_finish_name(st->finish);
  if (fin) cJSON_AddStringToObject(c, "finish_reason", fin); else cJSON_AddNullToObject(c, "finish_reason");
  cJSON_AddItemToArray(choices, c);
  cJSON *u = cJSON_AddObjectToObject(o, "usage");
  int64_t completion = st->has_usage ? st->completion_tokens : (int64_t)st->tokens_received;
  cJSON_AddNumberToObject(u, "prompt_tokens", (double)st->prompt_tokens);
  cJSON_AddNumberToObject(u, "completion_tokens", (double)completion);
  cJSON_AddNumberToObject(u, "total_tokens", (double)(st->prompt_tokens + completion));
  char *body = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  int rc = sl_http_respond(st->req, 200, "application/json", body, strlen(body), NULL);
  cJSON_free(body);
  st->req = NULL;
  st->answered = 1;
  if (rc == 0) {
    /* One write that ends the request: nothing tells sluice later when
     * the kernel took it, so its tokens count as written when handed over
     * (docs/operations.md says so). */
    st->tokens_written = st->tokens_received;
    sl_counter_add(st->ss->counters, SL_C_TOKENS_WRITTEN, st->tokens_received);
  }
}

/* ---- events from the engine ---- */

static void sl__on_deadline(uv_timer_t *t);

/* (Re)arms the deadline: the first-token timeout until the first token, then
 * the idle timeout between events.  A paused stream has none: the engine is
 * waiting for the client, not stalled. */
static void sl__arm_idle(sl_stream_t *st) {
  if (st->finished || st->paused) return;
  uint64_t now = uv_now(st->ss->loop);
  st->deadline_ms = st->first_token ? st->ss->cfg->idle_timeout_ms : st->ss->cfg->first_token_timeout_ms;
  st->last_event_ms = now;
  /* Re-arming a timer per token churns the timer heap (thousands of
   * streams, a token each every few ms).  The timer stays armed; when it
   * fires early it re-arms for what is left.  It is restarted here only
   * when the deadline moved earlier (the first token switches from the
   * first-token timeout to the shorter idle timeout). */
  if (!uv_is_active((uv_handle_t *)&st->timer) || uv_timer_get_due_in(&st->timer) > st->deadline_ms)
    uv_timer_start(&st->timer, sl__on_deadline, st->deadline_ms, 0);
}

/* The engine said [DONE]: finish the client's response cleanly.  Returns 0,
 * or < 0 if the client turned out to be gone. */
static int sl__complete(sl_stream_t *st) {
  if (st->r.stream) {
    if (sl__send_headers(st) < 0) return -1;
    if (st->r.include_usage && !st->upstream_sent_usage) {
      /* The engine gave no usage chunk: report what sluice counted. */
      char buf[1024];
      sl_oai_meta_t m = {{st->resp_id, strlen(st->resp_id)}, {st->resp_model, strlen(st->resp_model)},
                         st->created, st->r.chat};
      size_t n = sl_oai_encode_usage(buf, sizeof(buf), &m, st->prompt_tokens,
                                     st->has_usage ? st->completion_tokens : (int64_t)st->tokens_received);
      if (n != (size_t)-1 && sl__write_event(st, buf, n, NULL, 0) < 0) return -1;
    }
    static const char done[] = "data: [DONE]\n\n";
    if (sl__write_static(st, done, sizeof(done) - 1) < 0) return -1;
    st->answered = 1;
    if (st->wpend_n > 0) {
      /* Tokens still sit in the write queue.  The body's end waits until
       * the kernel has taken them (sl__on_client_written), so that their
       * count is known before the stream is logged; the client reads
       * [DONE] meanwhile all the same, only the terminating chunk waits. */
      st->flushing = 1;
      return 0;
    }
    sl_http_stream_end(st->req, 0);
    st->req = NULL;
  } else {
    sl__respond_whole(st);
  }
  return 0;
}

static void sl__note_meta(sl_stream_t *st, const sl_event_t *ev) {
  if (st->resp_id[0] == '\0' && ev->id.n > 0 && ev->id.n < sizeof(st->resp_id)) {
    memcpy(st->resp_id, ev->id.p, ev->id.n);
    st->resp_id[ev->id.n] = '\0';
  }
  if (st->resp_model[0] == '\0' && ev->model.n > 0 && ev->model.n < sizeof(st->resp_model)) {
    memcpy(st->resp_model, ev->model.p, ev->model.n);
    st->resp_model[ev->model.n] = '\0';
  }
  if (!st->created && ev->has_created) st->created = ev->created;
}

static void sl__first_token(sl_stream_t *st) {
  st->first_token = 1;
  st->error[0] = '\0'; /* an earlier attempt's failure is history: attempts= tells it */
  st->t_first = uv_hrtime();
  uv_timer_stop(&st->hb_timer);
  if (st->ep) sl_endpoint_succeeded(st->ep);
}

static int sl__on_event(void *ud, const sl_event_t *ev, sl_chunk_t *chunk) {
  sl_stream_t *st = ud;
  if (st->finished) return 1;
  if (st->answered) return 0; /* after [DONE]: let the engine finish its body */
  if (ev->kind == SL_EV_DONE) {
    st->saw_done = 1;
    if (!st->first_token) sl__first_token(st); /* an empty answer is still an answer */
    return sl__complete(st) < 0;
  }
  if (ev->kind == SL_EV_ERROR) {
    sl_counter_inc(st->ss->counters, SL_C_ERR_UPSTREAM_ERROR_EVENT);
    sl__set_error(st, "engine %s reported an error: %.*s", st->ep->name, (int)ev->err_message.n,
                  ev->err_message.p);
    return 1; /* handled by sl__on_event_outer */
  }
  sl__note_meta(st, ev);
  if (ev->has_usage) {
    st->has_usage = 1;
    st->prompt_tokens = ev->prompt_tokens;
    st->completion_tokens = ev->completion_tokens;
  }
  if (ev->n_choices == 0) {
    /* The usage chunk: only for clients that asked, and not with counts
     * that were refused (sluice's own usage chunk replaces it at [DONE]). */
    if (ev->has_usage) st->upstream_sent_usage = 1;
    if (st->r.stream && st->r.include_usage && st->first_token && !ev->usage_refused)
      return sl__write_event(st, ev->raw.p, ev->raw.n, chunk, 0) < 0;
    return 0;
  }
  /* A token is text, a tool-call fragment, reasoning or a finish; the role
   * chunk's empty content ("") is not. */
  int has_content = (ev->has_text && ev->text.n > 0) || ev->n_tool_calls > 0 ||
                    (ev->has_reasoning && ev->reasoning.n > 0);
  int token = has_content || ev->finish != SL_FINISH_NONE;
  if (!token && !st->first_token) {
    /* Role-only chunk: hold it until a token comes from the same engine. */
    if (st->r.stream && st->held == NULL) {
      sl_chunk_t *pin;
      size_t n;
      const char *p = sl__event_bytes(st, ev, chunk, &pin, &n);
      if (p != NULL) {
        sl_chunk_ref(pin);
        st->held = pin;
        st->held_p = p;
        st->held_len = n;
      }
    }
    return 0;
  }
  if (ev->finish != SL_FINISH_NONE) st->finish = ev->finish;
  if (!st->first_token) sl__first_token(st);
  if (has_content) {
    st->t_last = uv_hrtime();
    st->tokens_received++;
    sl_counter_inc(st->ss->counters, SL_C_TOKENS_RECEIVED);
  }
  if (!st->r.stream) {
    sl__assemble(st, ev);
    return 0;
  }
  if (!st->headers_sent && sl__send_headers(st) < 0) return 1;
  if (st->held != NULL) {
    int rc = sl__write_event(st, st->held_p, st->held_len, st->held, 0);
    sl_chunk_unref(st->held);
    st->held = NULL;
    if (rc < 0) return 1;
  }
  sl_chunk_t *pin;
  size_t n;
  const char *p = sl__event_bytes(st, ev, chunk, &pin, &n);
  if (p == NULL || sl__write_event(st, p, n, pin, has_content ? 1 : 0) < 0) return 1;
  /* Backpressure: past the high watermark, stop reading the engine.  The
   * held bytes, not only the unsent ones, count: writes the kernel took
   * keep their chunks pinned until the next loop turn. */
  if (!st->paused && st->up != NULL &&
      sl_http_req_write_held(st->req) > st->ss->cfg->http.write_high_watermark) {
    st->paused = 1;
    sl_upstream_pause(st->up);
    uv_timer_stop(&st->timer); /* a paused engine is not idle */
    sl_counter_inc(st->ss->counters, SL_C_UPSTREAM_PAUSES);
    if (st->pauses++ == 0) /* the first pause tells the story; the log line has the count */
      sl_narrate_push(st->ss->nar, SL_NAR_PAUSE, st->id, st->ep->name, st->r.model, NULL, st->attempts,
                      st->gen ? st->gen->id : 0, 0, (int64_t)st->tokens_received);
  }
  return 0;
}

/* Wrapper that sees why decoding stopped and acts after the read. */
static int sl__on_event_outer(void *ud, const sl_event_t *ev, sl_chunk_t *chunk) {
  sl_stream_t *st = ud;
  int stop = sl__on_event(ud, ev, chunk);
  if (st->finished) return 1;
  if (!stop) {
    if (!st->answered) sl__arm_idle(st);
    return 0;
  }
  /* Stop: an error event from the engine, or the client went away. */
  if (ev->kind == SL_EV_ERROR) {
    sl__stop_upstream(st);
    if (!st->first_token) {
      st->error_status = 502;
      if (st->ep) sl__attempt_failed(st, st->ep);
      sl__retry(st);
    } else {
      sl__fail(st, 502, "upstream_error", "upstream_error_event");
    }
    return 1;
  }
  sl_counter_inc(st->ss->counters, SL_C_CANCELS);
  sl__set_error(st, "client went away");
  sl__finish(st, "client_cancel");
  return 1;
}

/* ---- the end of an attempt ---- */

/* Whether an engine's non-2xx status is the engine refusing the request
 * itself (its answer then goes to the client as is) rather than the
 * endpoint failing (retried, then 502).  Only 4xx can be a refusal, and not
 * 408 or 429, which say "not now".  A 3xx is the endpoint failing too:
 * sluice does not follow redirects (the pool names the engines it may
 * use), and the client cannot follow an engine's Location either. */
static int sl__status_is_refusal(int status) {
  return status >= 400 && status < 500 && status != 408 && status != 429;
}

static void sl__on_end(void *ud, const sl_up_end_t *end) {
  sl_stream_t *st = ud;
  st->up = NULL;
  sl__release_endpoint(st);
  if (st->finished) return;
  if (st->answered) {
    /* The client got its [DONE] or answer already; the engine finished too.
     * While [DONE] waits for the last tokens to be taken, the write event
     * that settles them ends the stream; nothing upstream can time out any
     * more. */
    if (st->flushing) {
      uv_timer_stop(&st->timer);
      return;
    }
    sl__finish(st, "complete");
    return;
  }
  sl_endpoint_t *ep = st->ep;
  switch (end->result) {
    case SL_UP_OK:
      if (!end->is_sse) {
        sl_counter_inc(st->ss->counters, SL_C_ERR_UPSTREAM_PROTOCOL);
        sl__set_error(st, "engine %s answered a streaming request without text/event-stream", ep->name);
      } else {
        sl_counter_inc(st->ss->counters, SL_C_ERR_UPSTREAM_RESET);
        sl__set_error(st, "engine %s ended the stream without [DONE]", ep->name);
      }
      break;
    case SL_UP_STALE:
      /* Resend at once; this attempt does not count and the engine is fine. */
      st->attempts--;
      st->ntried--;
      sl__try_now(st);
      return;
    case SL_UP_STATUS: {
      sl_counter_inc(st->ss->counters, SL_C_ERR_UPSTREAM_STATUS);
      sl_event_t ev;
      const char *msg = "";
      size_t mlen = 0;
      if (end->body_len > 0 && sl_oai_scan(end->body, end->body_len, &ev) == 0 && ev.err_message.n > 0) {
        msg = ev.err_message.p;
        mlen = ev.err_message.n;
      }
      sl__set_error(st, "engine %s answered HTTP %d%s%.*s", ep->name, end->status, mlen ? ": " : "", (int)mlen,
                    msg);
      if (sl__status_is_refusal(end->status) && !st->headers_sent && st->req != NULL) {
        /* The engine refused the request itself: retrying elsewhere will not
         * help, and its status is the client's answer. */
        sl_reply_error(st->req, end->status, "invalid_request_error", "upstream_rejected", NULL, "%s", st->error);
        st->req = NULL;
        st->answered = 1;
        sl__finish(st, "upstream_rejected");
        return;
      }
      break;
    }
    case SL_UP_CONNECT:
      sl_counter_inc(st->ss->counters, SL_C_ERR_UPSTREAM_CONNECT);
      sl__set_error(st, "%s", end->message ? end->message : "connect failed");
      break;
    case SL_UP_PROTOCOL:
      sl_counter_inc(st->ss->counters, SL_C_ERR_UPSTREAM_PROTOCOL);
      sl__set_error(st, "%s", end->message ? end->message : "malformed response");
      break;
    case SL_UP_RESET:
    default:
      sl_counter_inc(st->ss->counters, SL_C_ERR_UPSTREAM_RESET);
      sl__set_error(st, "%s", end->message ? end->message : "connection reset");
      break;
  }
  if (ep) sl__attempt_failed(st, ep);
  if (st->first_token) {
    sl__fail(st, 502, "upstream_error", "upstream_failed");
    return;
  }
  st->error_status = 502;
  sl__retry(st);
}

/* ---- timers ---- */

static void sl__on_deadline(uv_timer_t *t) {
  sl_stream_t *st = t->data;
  const sl_config_t *cfg = st->ss->cfg;
  if (st->finished) return;
  uint64_t due = st->last_event_ms + st->deadline_ms, now = uv_now(st->ss->loop);
  if (now < due) { /* an event came since the timer was armed */
    uv_timer_start(t, sl__on_deadline, due - now, 0);
    return;
  }
  sl_counter_inc(st->ss->counters, SL_C_ERR_UPSTREAM_TIMEOUT);
  if (!st->first_token) {
    sl__set_error(st, "engine %s sent no token within %" PRIu64 " ms", st->ep ? st->ep->name : "-",
                  cfg->first_token_timeout_ms);
    if (st->ep) sl__attempt_failed(st, st->ep);
    sl__stop_upstream(st);
    st->error_status = 504;
    sl__retry(st);
    return;
  }
  sl__set_error(st, "engine %s sent nothing for %" PRIu64 " ms after the last token", st->ep->name,
                cfg->idle_timeout_ms);
  sl__fail(st, 504, "timeout", "upstream_idle_timeout");
}

static void sl__on_total(uv_timer_t *t) {
  sl_stream_t *st = t->data;
  if (st->finished) return;
  sl_counter_inc(st->ss->counters, SL_C_ERR_UPSTREAM_TIMEOUT);
  sl__set_error(st, "stream exceeded the total timeout of %" PRIu64 " ms", st->ss->cfg->total_timeout_ms);
  sl__fail(st, 504, "timeout", "total_timeout");
}

static void sl__on_heartbeat(uv_timer_t *t) {
  sl_stream_t *st = t->data;
  if (st->finished || st->first_token || st->req == NULL) return;
  if (sl__send_headers(st) < 0 || sl__write_static(st, ": keep-alive\n\n", 14) < 0) {
    sl_counter_inc(st->ss->counters, SL_C_CANCELS);
    sl__set_error(st, "client went away");
    sl__finish(st, "client_cancel");
    return;
  }
  sl_counter_inc(st->ss->counters, SL_C_HEARTBEATS);
}

static void sl__on_retry_timer(uv_timer_t *t) {
  sl_stream_t *st = t->data;
  st->retry_pending = 0;
  if (st->finished) return;
  sl__try_now(st);
}

/* ---- client side ---- */

static void sl__on_client_abort(sl_http_req_t *req) {
  sl_stream_t *st = req->data;
  /* Nothing is settled now: the write queue cannot tell bytes the kernel
   * took from those a failed write dropped.  Every write taken whole was
   * settled already, right after it or on its own on_written event, so
   * only tokens the kernel had not taken stay uncounted: short, never
   * long. */
  st->req = NULL;
  st->answered = 1;
  if (st->finished) return;
  if (st->flushing) {
    /* It left after its [DONE] was queued behind its last tokens: the
     * engine's answer was complete and all of it handed over, so the
     * stream completed, with the tokens the kernel had not taken left
     * uncounted. */
    st->flushing = 0;
    if (st->up == NULL) sl__finish(st, "complete");
    return;
  }
  sl_counter_inc(st->ss->counters, SL_C_CANCELS);
  sl__set_error(st, "client went away");
  sl__finish(st, "client_cancel");
}

/* The kernel took a queued write whole (the server's on_written): counts the
 * tokens of every write taken by now and, when [DONE] was waiting for the
 * last of them, ends the body and, if the engine is done too, the stream. */
static void sl__on_client_written(sl_http_req_t *req, size_t queued) {
  sl_stream_t *st = req->data;
  sl__wq_settle(st, queued);
  if (!st->flushing || st->wpend_n > 0) return;
  sl__flush_end(st); /* ends the request: no more events come */
  if (st->up == NULL) sl__finish(st, "complete"); /* else when the engine's response ends */
}

static void sl__on_client_drain(sl_http_req_t *req) {
  sl_stream_t *st = req->data;
  /* The marks are settled: on_written came just before, with the same
   * queue. */
  if (!st->paused || st->finished) return;
  st->paused = 0;
  sl_counter_inc(st->ss->counters, SL_C_UPSTREAM_RESUMES);
  if (st->up) sl_upstream_resume(st->up);
  sl__arm_idle(st);
}

/* ---- attempts ---- */

/* After a failed attempt before the first token: give up when attempts are
 * spent, else try again after base * 2^(n-1) ms, jittered to 50-100%. */
static void sl__retry(sl_stream_t *st) {
  sl_streams_t *ss = st->ss;
  const sl_config_t *cfg = ss->cfg;
  if (st->finished || st->retry_pending) return;
  if (st->attempts >= cfg->max_attempts || ss->draining) {
    int timeout = st->error_status == 504;
    sl__fail(st, st->error_status ? st->error_status : 502, timeout ? "timeout" : "upstream_error",
             timeout ? "upstream_timeout" : "upstream_failed");
    return;
  }
  uint64_t ms = cfg->backoff_base_ms;
  for (int i = 1; i < st->attempts && ms < cfg->backoff_max_ms; i++) ms *= 2;
  if (ms > cfg->backoff_max_ms) ms = cfg->backoff_max_ms;
  ms = ms / 2 + (ms > 1 ? sl__rand(ss) % (ms / 2 + 1) : 0);
  st->retry_pending = 1;
  uv_timer_stop(&st->timer);
  sl_counter_inc(st->ss->counters, SL_C_RETRIES);
  uv_timer_start(&st->retry_timer, sl__on_retry_timer, ms, 0);
}

/* The choice step (placement.c): the policy of the stream's generation, or
 * the C least-loaded rule. */
static int sl__place(sl_stream_t *st, const sl_candidate_t *cands, int n) {
  sl_place_req_t pr = {st->r.model, st->attempts + 1, (int64_t)st->r.prompt_chars, st->r.max_tokens,
                       st->r.session[0] ? st->r.session : NULL, sl__rand(st->ss), st->tried, st->ntried, st->id};
  return sl_placement_choose(st->gen, &st->ss->place_ctx, st->ss->reg, cands, n, &pr, st->ss->log, st->place_reason,
                             sizeof(st->place_reason));
}

/* Places the request and sends it (the placement phase). */
static void sl__try_now(sl_stream_t *st) {
  sl_streams_t *ss = st->ss;
  const sl_config_t *cfg = ss->cfg;
  if (st->finished) return;
  sl_candidate_t cands[64];
  char reason[256];
  /* The size the request needs: the prompt estimated at 4 characters a
   * token (the common rule of thumb for English BPE vocabularies; sluice has
   * no tokenizer) plus the max tokens asked for. */
  int64_t need = (int64_t)((st->r.prompt_chars + 3) / 4) + st->r.max_tokens;
  int cause = SL_PLACE_OK;
  int n = sl_placement_prefilter(ss->reg, st->r.model, need, uv_hrtime(), cands, 64, &cause, reason,
                                 sizeof(reason));
  if (n == 0 && cause == SL_PLACE_TOO_LARGE && st->attempts == 0) {
    sl_counter_inc(st->ss->counters, SL_C_ERR_BAD_REQUEST);
    sl__set_error(st, "%s", reason);
    sl__fail(st, 400, "invalid_request_error", "context_length_exceeded");
    return;
  }
  if (n == 0) {
    if (st->attempts == 0) {
      sl_counter_inc(st->ss->counters, SL_C_ERR_NO_ENDPOINT);
      sl__set_error(st, "%s", reason);
      sl__fail(st, 503, "service_unavailable", "no_ready_endpoint");
    } else {
      sl__fail(st, st->error_status ? st->error_status : 502, "upstream_error", "upstream_failed");
    }
    return;
  }
  int k = sl__place(st, cands, n);
  sl_endpoint_t *ep = cands[k].ep;
  st->attempts++;
  if (st->ntried < SL_MAX_TRIED) st->tried[st->ntried++] = ep->id;
  st->ep = ep;
  sl_narrate_push(st->ss->nar, SL_NAR_PLACEMENT, st->id, ep->name, st->r.model, st->place_reason, st->attempts,
                  st->gen ? st->gen->id : 0, 0, 0);
  /* The engine request of this attempt, in the dialect of the pool it was
   * placed on: a retry on another pool may use another adapter. */
  const sl_adapter_t *ad = ep->pool->adapter;
  sl_adapter_req_t in = {st->r.chat, st->r.body, st->r.body_len, st->fwd_headers};
  sl_engine_req_t er;
  char why[256];
  int rc = ad->build(ad, &in, &er, why, sizeof(why));
  if (rc < 0) {
    /* The request cannot be put to this engine: not the endpoint's fault,
     * so it is not marked failed; another pool may take it. */
    sl__set_error(st, "could not build the request for %s (adapter \"%s\"): %s", ep->name, ad->name, why);
    st->error_status = 502;
    sl__retry(st);
    return;
  }
  ep->inflight++;
  ep->requests++;
  st->ep_counted = 1;
  rc = sl_upstream_request(ss->up, ep, er.method, er.path, er.headers, er.body, er.body_len, &sl__handler, st,
                           st->acct, &st->up);
  sl_engine_req_free(&er); /* sl_upstream_request copied what it sends */
  if (rc < 0) {
    st->up = NULL;
    sl__release_endpoint(st);
    sl__set_error(st, "could not start a request to %s: %s", ep->name, sl_strerror(rc));
    sl__attempt_failed(st, ep);
    st->error_status = 502;
    sl__retry(st);
    return;
  }
  st->last_event_ms = uv_now(ss->loop);
  st->deadline_ms = cfg->first_token_timeout_ms;
  uv_timer_start(&st->timer, sl__on_deadline, cfg->first_token_timeout_ms, 0);
}

/* The header lines every attempt forwards, whatever the engine: the
 * request id and x-sim-* headers (fault injection for the simulated
 * engine); never the client's Authorization.  The adapter puts its own
 * (Content-Type, Accept) before them. */
static char *sl__forward_headers(const sl_http_req_t *req, const char *id) {
  size_t cap = 256;
  for (int i = 0; i < req->nheaders; i++)
    if (strncasecmp(req->headers[i].name, "x-sim-", 6) == 0)
      cap += strlen(req->headers[i].name) + strlen(req->headers[i].value) + 4;
  char *out = sl_malloc(cap);
  size_t n = (size_t)snprintf(out, cap, "X-Request-Id: %s\r\n", id);
  for (int i = 0; i < req->nheaders; i++)
    if (strncasecmp(req->headers[i].name, "x-sim-", 6) == 0)
      n += (size_t)snprintf(out + n, cap - n, "%s: %s\r\n", req->headers[i].name, req->headers[i].value);
  return out;
}

void sl_relay_start(sl_streams_t *ss, sl_http_req_t *req, sl_request_t *r, sl_generation_t *gen) {
  sl_stream_t *st = sl_calloc(1, sizeof(*st));
  st->ss = ss;
  st->req = req;
  st->r = *r;
  r->body = NULL;
  st->t_start = uv_hrtime();
  st->acct = sl_pin_account_new();
  st->gen = sl_generation_acquire(gen);
  /* Bytes of an earlier response on this connection may still be queued
   * ahead of this one's (see "tokens written"). */
  st->wq_in = sl_http_req_write_queue(req);
  snprintf(st->id, sizeof(st->id), "%s", r->id); /* decided at the door (api.c) */
  st->fwd_headers = sl__forward_headers(req, st->id);
  uv_timer_init(ss->loop, &st->timer);
  uv_timer_init(ss->loop, &st->hb_timer);
  uv_timer_init(ss->loop, &st->total_timer);
  uv_timer_init(ss->loop, &st->retry_timer);
  st->timer.data = st->hb_timer.data = st->total_timer.data = st->retry_timer.data = st;
  st->handles = 4;
  st->next = ss->head;
  if (ss->head) ss->head->prev = st;
  ss->head = st;
  ss->n++;
  sl_counter_inc(st->ss->counters, SL_C_STREAMS_STARTED);
  sl_counter_inc(st->ss->counters, SL_C_STREAMS_ACTIVE);
  req->data = st;
  req->on_abort = sl__on_client_abort;
  req->on_drain = sl__on_client_drain;
  req->on_written = sl__on_client_written;
  uv_timer_start(&st->total_timer, sl__on_total, ss->cfg->total_timeout_ms, 0);
  if (st->r.stream)
    uv_timer_start(&st->hb_timer, sl__on_heartbeat, ss->cfg->heartbeat_ms, ss->cfg->heartbeat_ms);
  sl__try_now(st);
}

void sl_relay_cancel_all(sl_streams_t *ss, const char *why) {
  sl_stream_t *st = ss->head;
  while (st != NULL) {
    sl_stream_t *next = st->next;
    if (!st->finished) {
      sl__set_error(st, "%s", why);
      sl__fail(st, 503, "service_unavailable", "shutting_down");
    }
    st = next;
  }
}

/* ---- stream listing (for attach sessions) ----
 *
 * sl_stream_t stays private to this file: the admin helpers walk the list
 * and copy what they show through these two accessors, synchronously. */
const sl_stream_t *sl_relay_stream_next(const sl_streams_t *ss, const sl_stream_t *after) {
  return after == NULL ? ss->head : after->next;
}

void sl_relay_stream_info(const sl_stream_t *st, uint64_t now, sl_stream_info_t *out) {
  memset(out, 0, sizeof(*out));
  out->id = st->id;
  out->model = st->r.model;
  out->endpoint = st->ep ? st->ep->name : NULL;
  out->pool = st->ep ? st->ep->pool->cfg->name : NULL;
  out->state = st->finished ? "ending"
               : st->retry_pending ? "backoff"
               : !st->first_token ? "waiting"
               : st->paused ? "paused"
               : "streaming";
  out->placement = st->place_reason;
  out->gen = st->gen;
  out->tokens = st->tokens_received;
  out->tokens_written = st->tokens_written;
  out->age_ms = now > st->t_start ? sl__ms(now - st->t_start) : 0;
  out->ttft_ms = st->first_token ? sl__ms(st->t_first - st->t_start) : -1;
  out->attempts = st->attempts;
  out->stream = st->r.stream;
}
