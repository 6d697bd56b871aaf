/* tasks.c: the task store, the task event encoder and the rings (see
 * tasks.h).
 *
 * The relay writes a task's sink request exactly what it writes a
 * streaming chat client (output.c): each write is one upstream read's
 * batch, as the output stage's buffers, "data: " and "\n\ndata: "
 * separators around whole payloads, and whole static lines ("data:
 * [DONE]\n\n", ": keep-alive\n\n" and guard comments).  The encoder walks
 * those buffers once, scans each payload with the OpenAI scanner (no
 * allocation) and appends the task events it makes to the ring's tail
 * chunk with one formatted write each; the batch then goes to the client
 * as one writev of the ring's bytes.  Nothing is allocated per token: a
 * ring takes a pool chunk when its tail chunk is full, and grows its slot
 * array (one per chunk) only when it holds more chunks than ever before.
 *
 * A ring is a FIFO of slots, one per chunk; a slot's events are
 * contiguous, each "id: N\nevent: K\ndata: {...}\n\n" with no blank line
 * inside (JSON has no raw newline), so an event's end is the next "\n\n".
 * Eviction and resumption find events by walking those ends; both are
 * rare (eviction once per event at most, resumption once per GET).
 */
#include "runtime/stream/tasks.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/upstream/oai.h"

typedef struct {
  sl_chunk_t *c;             /* the chunk (one reference held) */
  uint64_t first;            /* seq of its first held event */
  uint32_t nev;              /* events held in it */
  uint32_t off;              /* where its first held event begins */
} sl__slot_t;

struct sl_task_s {
  sl_tasks_t *ts;
  sl_task_t *prev, *next;
  char id[48];
  uint64_t num;
  char request_id[80];
  char model[300];           /* JSON string contents */
  sl_http_req_t vreq;        /* the sink request the relay writes */
  int relay_live;            /* the relay holds vreq */
  int relay_waits;           /* the sink said "over": the relay waits for vreq.on_drain */
  int finished;              /* its end or error event is in the ring */
  int paused;                /* the relay waits because the ring is full and no client reads */
  sl_http_req_t *client;     /* the attached client, or NULL */
  int counted;               /* its timer's close is one the store's close waits for */
  uv_timer_t grace;
  /* The ring. */
  sl__slot_t *slots;
  int cap, head, nslots;
  uint64_t first_seq;        /* the oldest event held (last_seq + 1 when none) */
  uint64_t last_seq;         /* the newest event made */
  uint64_t sent_seq;         /* the newest event handed to a client's connection */
  size_t held;               /* bytes of the events held */
  uint64_t cur_abs;          /* where the first byte not yet sent to the attached client is: its slot,
                                counted from the ring's first slot ever, */
  uint32_t cur_off;          /* and offset */
  uint64_t slot_base;        /* abs number of slots[head] */
  /* The encoder. */
  int expect_payload;        /* the last buffer ended with "data: " */
  uint64_t tokens;
  uint64_t t_start, t_first;
  uint64_t metrics_at;       /* tokens at the last metrics event */
  char finish[32];
  int has_usage;
  int64_t prompt_tokens, completion_tokens;
};

static void sl__grace_start(sl_task_t *t);
static void sl__task_free(sl_task_t *t);
static void sl__detached(sl_task_t *t);

/* ---- ids ---- */

int sl_task_parse_id(const char *id, int *worker, uint64_t *n) {
  if (strncmp(id, "task-", 5) != 0) return SL_EINVAL;
  const char *p = id + 5;
  char *end;
  if (*p < '0' || *p > '9') return SL_EINVAL;
  unsigned long w = strtoul(p, &end, 10);
  if (*end != '-' || w > 4096) return SL_EINVAL;
  p = end + 1;
  if (*p < '1' || *p > '9') return SL_EINVAL;
  unsigned long long k = strtoull(p, &end, 10);
  if (*end != '\0' || end - p > 18) return SL_EINVAL;
  *worker = (int)w;
  *n = k;
  return 0;
}

const char *sl_task_id(const sl_task_t *t) { return t->id; }
sl_http_req_t *sl_task_req(sl_task_t *t) { return &t->vreq; }

/* ---- the ring ---- */

static sl__slot_t *sl__slot(const sl_task_t *t, int i) { return &t->slots[(t->head + i) % t->cap]; }

/* Room for an event of at most max bytes at the ring's tail: a pointer
 * into the tail chunk, taking a new chunk when it lacks room. */
static char *sl__reserve(sl_task_t *t, size_t max) {
  sl__slot_t *s = t->nslots > 0 ? sl__slot(t, t->nslots - 1) : NULL;
  if (s != NULL && s->c->cap - s->c->len >= max) return (char *)s->c->data + s->c->len;
  if (t->nslots == t->cap) {
    /* Grow, keeping the order: the slots from head come first. */
    int ncap = t->cap ? 2 * t->cap : 4;
    sl__slot_t *ns = sl_malloc((size_t)ncap * sizeof(*ns));
    for (int i = 0; i < t->nslots; i++) ns[i] = *sl__slot(t, i);
    sl_free(t->slots);
    t->slots = ns;
    t->cap = ncap;
    t->head = 0;
  }
  s = sl__slot(t, t->nslots++);
  s->c = sl_chunk_get(t->ts->chunks);
  s->first = t->last_seq + 1;
  s->nev = 0;
  s->off = 0;
  return (char *)s->c->data;
}

/* The event just written at the tail (len bytes) is held. */
static void sl__commit(sl_task_t *t, size_t len) {
  sl__slot_t *s = sl__slot(t, t->nslots - 1);
  if (s->nev == 0) {
    s->first = t->last_seq + 1;
    s->off = s->c->len;
  }
  s->c->len += (uint32_t)len;
  s->nev++;
  t->last_seq++;
  t->held += len;
}

/* The length of the event that begins at p (up to end): through its
 * "\n\n". */
static size_t sl__event_len(const char *p, const char *end) {
  const char *q = p;
  while (q + 1 < end && !(q[0] == '\n' && q[1] == '\n')) q++;
  return (size_t)(q + 2 - p);
}

/* Drops the oldest event (one already handed to a client). */
static void sl__evict_one(sl_task_t *t) {
  sl__slot_t *s = sl__slot(t, 0);
  const char *p = (const char *)s->c->data + s->off, *end = (const char *)s->c->data + s->c->len;
  size_t len = sl__event_len(p, end);
  s->off += (uint32_t)len;
  s->nev--;
  s->first++;
  t->first_seq++;
  t->held -= len;
  sl_counter_inc(t->ts->counters, SL_C_TASK_EVENTS_EVICTED);
  if (s->nev == 0 && t->nslots > 1) {
    sl_chunk_unref(s->c);
    t->head = (t->head + 1) % t->cap;
    t->nslots--;
    t->slot_base++;
  }
}

/* Keeps the ring within tasks.ring_bytes by evicting events clients were
 * handed already, oldest first; events no client got stay. */
static void sl__evict(sl_task_t *t) {
  while (t->held > t->ts->ring_bytes && t->first_seq <= t->sent_seq && t->first_seq <= t->last_seq)
    sl__evict_one(t);
}

static void sl__ring_free(sl_task_t *t) {
  for (int i = 0; i < t->nslots; i++) sl_chunk_unref(sl__slot(t, i)->c);
  t->nslots = 0;
  sl_free(t->slots);
  t->slots = NULL;
  t->cap = 0;
  t->held = 0;
}

/* Where event seq begins: its slot (abs number) and offset.  seq must be
 * held. */
static void sl__locate(const sl_task_t *t, uint64_t seq, uint64_t *abs, uint32_t *off) {
  for (int i = 0; i < t->nslots; i++) {
    const sl__slot_t *s = &t->slots[(t->head + i) % t->cap];
    if (s->nev == 0 || seq >= s->first + s->nev) continue;
    const char *p = (const char *)s->c->data + s->off, *end = (const char *)s->c->data + s->c->len;
    for (uint64_t k = s->first; k < seq; k++) p += sl__event_len(p, end);
    *abs = t->slot_base + (uint64_t)i;
    *off = (uint32_t)(p - (const char *)s->c->data);
    return;
  }
  *abs = t->slot_base + (uint64_t)(t->nslots > 0 ? t->nslots - 1 : 0);
  *off = t->nslots > 0 ? sl__slot(t, t->nslots - 1)->c->len : 0;
}

/* ---- the attached client ---- */

/* Sends the attached client every byte from the cursor to the ring's end,
 * as writes of up to SL_HTTP_WRITE_PINS chunks, pinned (no copy).  On a
 * failed write the client is gone (the server ended its request). */
static void sl__send(sl_task_t *t) {
  if (t->client == NULL || t->nslots == 0) return;
  uint64_t last = t->slot_base + (uint64_t)t->nslots - 1;
  if (t->cur_abs < t->slot_base) { /* cannot happen: unsent events are never evicted */
    t->cur_abs = t->slot_base;
    t->cur_off = sl__slot(t, 0)->off;
  }
  while (1) {
    uv_buf_t bufs[SL_HTTP_WRITE_PINS];
    sl_chunk_t *pins[SL_HTTP_WRITE_PINS];
    unsigned n = 0;
    while (n < SL_HTTP_WRITE_PINS) {
      sl__slot_t *s = sl__slot(t, (int)(t->cur_abs - t->slot_base));
      if (s->c->len > t->cur_off) {
        bufs[n] = uv_buf_init((char *)s->c->data + t->cur_off, s->c->len - t->cur_off);
        pins[n++] = s->c;
        t->cur_off = s->c->len;
      }
      if (t->cur_abs == last) break;
      t->cur_abs++;
      t->cur_off = 0;
    }
    if (n == 0) break;
    if (sl_http_stream_writev(t->client, bufs, n, pins, n) < 0) {
      t->client->on_abort = t->client->on_drain = NULL; /* the server ended the request: no on_abort follows */
      t->client = NULL;
      sl__detached(t);
      return;
    }
    if (t->cur_abs == last && t->cur_off == sl__slot(t, t->nslots - 1)->c->len) break;
  }
  t->sent_seq = t->last_seq;
}

/* After events were appended: the client gets them, the ring sheds what
 * clients have, and a finished task's client response ends. */
static void sl__flush(sl_task_t *t) {
  sl__send(t);
  sl__evict(t);
  if (t->finished && t->client != NULL) {
    sl_http_req_t *c = t->client;
    c->on_abort = c->on_drain = NULL;
    t->client = NULL;
    sl_http_stream_end(c, 0);
    sl__detached(t);
  }
}

static void sl__client_abort(sl_http_req_t *req) {
  sl_task_t *t = req->data;
  if (t == NULL || t->client != req) return;
  t->client = NULL;
  req->data = NULL;
  sl__detached(t);
}

/* The relay waits for room and there is some now: it goes on. */
static void sl__relay_go(sl_task_t *t) {
  if (!t->relay_waits || !t->relay_live) return;
  t->relay_waits = 0;
  t->paused = 0;
  if (t->vreq.on_drain != NULL) t->vreq.on_drain(&t->vreq);
}

/* The client left (or its response ended): the grace period starts, and a
 * relay that waited for that client's connection to drain now waits only
 * if the ring is full. */
static void sl__detached(sl_task_t *t) {
  sl__grace_start(t);
  if (!t->relay_waits || !t->relay_live) return;
  if (t->held < t->ts->ring_bytes) sl__relay_go(t);
  else t->paused = 1;
}

static void sl__client_drain(sl_http_req_t *req) {
  sl_task_t *t = req->data;
  if (t != NULL && t->client == req) sl__relay_go(t);
}

/* ---- the encoder ---- */

static double sl__ms(uint64_t ns) { return (double)ns / 1e6; }

/* Appends one event: kind and its data JSON, given as a format. */
static void sl__emit(sl_task_t *t, const char *kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void sl__emit(sl_task_t *t, const char *kind, const char *fmt, ...) {
  size_t max = 2048;
  char *p = sl__reserve(t, max);
  int n = snprintf(p, max, "id: %" PRIu64 "\nevent: %s\ndata: ", t->last_seq + 1, kind);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(p + n, max - (size_t)n - 2, fmt, ap);
  va_end(ap);
  if (m < 0 || (size_t)m >= max - (size_t)n - 2) m = (int)(max - (size_t)n - 3);
  memcpy(p + n + m, "\n\n", 2);
  sl__commit(t, (size_t)(n + m + 2));
}

/* A token event: its text (and reasoning) as the JSON string contents the
 * chunk carried, copied once into the ring. */
static void sl__emit_token(sl_task_t *t, const sl_event_t *ev) {
  size_t tl = ev->has_text ? ev->text.n : 0, rl = ev->has_reasoning ? ev->reasoning.n : 0;
  size_t max = 160 + tl + rl;
  if (max > t->ts->chunks->chunk_size) { /* cannot happen: the chunk that carried it was larger */
    tl = rl = 0;
    max = 160;
  }
  char *p = sl__reserve(t, max);
  int n = snprintf(p, max, "id: %" PRIu64 "\nevent: token\ndata: {\"index\":%" PRIu64 ",\"text\":\"", t->last_seq + 1,
                   t->tokens);
  memcpy(p + n, ev->text.p, tl);
  size_t len = (size_t)n + tl;
  if (rl > 0) {
    memcpy(p + len, "\",\"reasoning\":\"", 15);
    len += 15;
    memcpy(p + len, ev->reasoning.p, rl);
    len += rl;
  }
  memcpy(p + len, "\"}\n\n", 4);
  sl__commit(t, len + 4);
  t->tokens++;
}

static void sl__emit_metrics(sl_task_t *t) {
  uint64_t now = uv_hrtime();
  double el = sl__ms(now - t->t_start);
  double span = t->t_first ? sl__ms(now - t->t_first) : 0;
  double tps = span > 0 && t->tokens > 1 ? (double)(t->tokens - 1) * 1000.0 / span : 0;
  sl__emit(t, "metrics", "{\"tokens\":%" PRIu64 ",\"tokens_per_s\":%.1f,\"ttft_ms\":%.1f,\"elapsed_ms\":%.1f}",
           t->tokens, tps, t->t_first ? sl__ms(t->t_first - t->t_start) : -1.0, el);
  t->metrics_at = t->tokens;
}

/* The task ended cleanly or not: its last event. */
static void sl__emit_end(sl_task_t *t) {
  if (t->finished) return;
  t->finished = 1;
  int64_t c = t->has_usage ? t->completion_tokens : (int64_t)t->tokens;
  int64_t p = t->has_usage ? t->prompt_tokens : 0;
  sl__emit(t, "end",
           "{\"finish_reason\":\"%s\",\"tokens\":%" PRIu64 ",\"usage\":{\"prompt_tokens\":%" PRId64
           ",\"completion_tokens\":%" PRId64 ",\"total_tokens\":%" PRId64 "},\"elapsed_ms\":%.1f}",
           t->finish[0] ? t->finish : "stop", t->tokens, p, c, p + c, sl__ms(uv_hrtime() - t->t_start));
  sl_counter_inc(t->ts->counters, SL_C_TASKS_COMPLETED);
}

/* code and message are JSON string contents (escaped). */
static void sl__emit_error(sl_task_t *t, const char *code, size_t cn, const char *msg, size_t mn, int status) {
  if (t->finished) return;
  t->finished = 1;
  if (cn > 64) cn = 64;
  if (mn > 1200) mn = 1200;
  char st[24] = "";
  if (status > 0) snprintf(st, sizeof(st), ",\"status\":%d", status); /* the HTTP status a client would have had */
  sl__emit(t, "error", "{\"code\":\"%.*s\",\"message\":\"%.*s\"%s,\"tokens\":%" PRIu64 "}", (int)cn, code,
           (int)mn, msg, st, t->tokens);
}

static void sl__emit_error_text(sl_task_t *t, const char *code, const char *msg, int status) {
  char esc[1024];
  size_t n = sl_json_escape(esc, sizeof(esc), msg, strlen(msg));
  if (n == (size_t)-1) n = 0;
  sl__emit_error(t, code, strlen(code), esc, n, status);
}

/* One payload the relay sent: an OpenAI chunk, [DONE] or an error. */
static void sl__payload(sl_task_t *t, const char *p, size_t n) {
  sl_event_t ev;
  if (t->finished || sl_oai_scan(p, n, &ev) < 0) return;
  if (ev.kind == SL_EV_DONE) {
    sl__emit_end(t);
    return;
  }
  if (ev.kind == SL_EV_ERROR) {
    const char *code = ev.err_code.n ? ev.err_code.p : "upstream_error";
    sl__emit_error(t, code, ev.err_code.n ? ev.err_code.n : strlen(code), ev.err_message.p, ev.err_message.n, 0);
    return;
  }
  if (ev.has_usage) {
    t->has_usage = 1;
    t->prompt_tokens = ev.prompt_tokens;
    t->completion_tokens = ev.completion_tokens;
  }
  if (ev.finish != SL_FINISH_NONE) {
    size_t fn = ev.finish_raw.n < sizeof(t->finish) - 1 ? ev.finish_raw.n : sizeof(t->finish) - 1;
    memcpy(t->finish, ev.finish_raw.p, fn);
    t->finish[fn] = '\0';
  }
  if ((ev.has_text && ev.text.n > 0) || (ev.has_reasoning && ev.reasoning.n > 0)) {
    if (t->t_first == 0) t->t_first = uv_hrtime();
    sl__emit_token(t, &ev);
  }
}

/* ---- the sink ---- */

static int sl__sink_begin(sl_http_req_t *req, int status) {
  (void)req;
  (void)status;
  return 0;
}

/* One batch from the relay (see the top of the file for its shape). */
static int sl__sink_write(sl_http_req_t *req, const uv_buf_t *bufs, unsigned nbufs) {
  sl_task_t *t = req->sink_ud;
  if (!t->relay_live) return 0; /* cancelled: the relay is only winding down */
  uint64_t before = t->last_seq;
  for (unsigned i = 0; i < nbufs; i++) {
    const char *p = bufs[i].base;
    size_t n = bufs[i].len;
    if (t->expect_payload) {
      t->expect_payload = 0;
      sl__payload(t, p, n);
    } else if (n >= 6 && memcmp(p, "data: ", 6) == 0 && n > 6) {
      /* A whole line: "data: [DONE]\n\n". */
      size_t m = n - 6;
      while (m > 0 && (p[6 + m - 1] == '\n')) m--;
      sl__payload(t, p + 6, m);
    }
    if (n >= 6 && memcmp(p + n - 6, "data: ", 6) == 0 && (n == 6 || p[n - 7] == '\n')) t->expect_payload = 1;
  }
  if (t->ts->metrics_tokens > 0 && !t->finished && t->tokens - t->metrics_at >= t->ts->metrics_tokens)
    sl__emit_metrics(t);
  if (t->last_seq != before) sl__flush(t);
  return 0;
}

/* The relay is done with the sink request. */
static void sl__relay_done(sl_task_t *t) {
  t->relay_live = 0;
  t->relay_waits = 0;
  t->paused = 0;
  t->vreq.on_abort = t->vreq.on_drain = NULL;
  t->vreq.on_written = NULL;
  t->vreq.data = NULL;
}

/* Tells the relay its client left (it cancels the engine request), then
 * forgets the sink request's callbacks. */
static void sl__relay_abort(sl_task_t *t) {
  sl_http_req_cb abort_cb = t->vreq.on_abort;
  t->relay_live = 0; /* nothing the relay does now reaches the task */
  t->vreq.on_abort = NULL;
  if (abort_cb != NULL) abort_cb(&t->vreq);
  sl__relay_done(t);
}

static void sl__sink_end(sl_http_req_t *req, int close) {
  sl_task_t *t = req->sink_ud;
  if (!t->relay_live) return; /* cancelled: the relay is only winding down */
  (void)close;
  sl__relay_done(t);
  if (!t->finished) sl__emit_error_text(t, "stream_cut", "the stream ended without its end", 0);
  sl__flush(t);
  if (t->client == NULL) sl__grace_start(t);
}

static void sl__sink_respond(sl_http_req_t *req, int status, const char *body, size_t len) {
  sl_task_t *t = req->sink_ud;
  if (!t->relay_live) return; /* cancelled: the relay is only winding down */
  sl__relay_done(t);
  sl_event_t ev;
  if (!t->finished) {
    if (len > 0 && sl_oai_scan(body, len, &ev) == 0 && ev.kind == SL_EV_ERROR)
      sl__emit_error(t, ev.err_code.n ? ev.err_code.p : "error", ev.err_code.n ? ev.err_code.n : 5, ev.err_message.p,
                     ev.err_message.n, status);
    else
      sl__emit_error_text(t, "error", "the request failed", status);
  }
  sl__flush(t);
  if (t->client == NULL) sl__grace_start(t);
}

static int sl__sink_over_high(sl_http_req_t *req, size_t extra) {
  sl_task_t *t = req->sink_ud;
  (void)extra;
  if (!t->relay_live) return 0;
  if (t->client != NULL) {
    if (!sl_http_req_over_high(t->client, 0)) return 0;
    t->relay_waits = 1;
    return 1;
  }
  if (t->held < t->ts->ring_bytes) return 0;
  t->relay_waits = 1;
  t->paused = 1;
  return 1;
}

static const sl_http_sink_t sl__sink = {
    .begin = sl__sink_begin,
    .write = sl__sink_write,
    .end = sl__sink_end,
    .respond = sl__sink_respond,
    .over_high = sl__sink_over_high,
};

/* ---- life ---- */

static void sl__grace_closed(uv_handle_t *h) {
  sl_task_t *t = h->data;
  sl_tasks_t *ts = t->ts;
  int counted = t->counted;
  sl_free(t);
  if (counted && --ts->pending == 0 && ts->close_cb) ts->close_cb(ts->close_ud);
}

/* Unlinks and frees t (the relay must be done with it). */
static void sl__task_free(sl_task_t *t) {
  sl_tasks_t *ts = t->ts;
  if (t->client != NULL) {
    sl_http_req_t *c = t->client;
    c->on_abort = c->on_drain = NULL;
    t->client = NULL;
    sl_http_stream_end(c, 1);
  }
  sl__ring_free(t);
  if (t->prev) t->prev->next = t->next; else ts->head = t->next;
  if (t->next) t->next->prev = t->prev;
  ts->n--;
  t->counted = ts->closing;
  if (t->counted) ts->pending++;
  uv_close((uv_handle_t *)&t->grace, sl__grace_closed);
}

static void sl__on_grace(uv_timer_t *timer) {
  sl_task_t *t = timer->data;
  if (t->client != NULL) return;
  if (t->relay_live) {
    /* Nobody came back within the grace period: the engine request is
     * cancelled as a client that left would have it. */
    sl_counter_inc(t->ts->counters, SL_C_TASKS_EXPIRED);
    sl__relay_abort(t);
    sl__emit_error_text(t, "expired", "no client attached within the grace period", 0);
  }
  sl__task_free(t);
}

static void sl__grace_start(sl_task_t *t) {
  if (t->ts->closing) return;
  uv_timer_start(&t->grace, sl__on_grace, t->ts->grace_ms, 0);
}

void sl_tasks_init(sl_tasks_t *ts, uv_loop_t *loop, sl_chunk_pool_t *chunks, sl_counters_t *counters,
                   const sl_config_t *cfg, int worker) {
  memset(ts, 0, sizeof(*ts));
  ts->loop = loop;
  ts->chunks = chunks;
  ts->counters = counters;
  ts->grace_ms = cfg->task_grace_ms;
  ts->ring_bytes = cfg->task_ring_bytes;
  ts->metrics_tokens = cfg->task_metrics_tokens;
  ts->max = cfg->task_max;
  ts->worker = worker;
  /* Numbers start past the microseconds of the Unix time now, so a worker
   * that restarts never issues an id its predecessor issued. */
  uv_timeval64_t tv;
  ts->base = uv_gettimeofday(&tv) == 0 ? (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec : 0;
  ts->issued = ts->base;
}

int sl_task_create(sl_tasks_t *ts, const sl_http_req_t *src, const char *model, const char *request_id,
                   sl_task_t **out) {
  if (ts->closing || ts->n >= ts->max) return SL_ETOOBIG;
  sl_task_t *t = sl_calloc(1, sizeof(*t));
  t->ts = ts;
  t->num = ++ts->issued;
  snprintf(t->id, sizeof(t->id), "task-%d-%" PRIu64, ts->worker, t->num);
  snprintf(t->request_id, sizeof(t->request_id), "%s", request_id);
  size_t w = sl_json_escape(t->model, sizeof(t->model) - 1, model, strlen(model));
  t->model[w == (size_t)-1 ? 0 : w] = '\0';
  t->first_seq = 1;
  t->t_start = uv_hrtime();
  /* The sink request: what the relay reads of a client's request. */
  t->vreq.method = src->method;
  t->vreq.method_name = src->method_name;
  t->vreq.path = src->path;
  t->vreq.query = "";
  t->vreq.headers = src->headers;
  t->vreq.nheaders = src->nheaders;
  t->vreq.keep_alive = 1;
  t->vreq.start_ns = src->start_ns;
  t->vreq.sink = &sl__sink;
  t->vreq.sink_ud = t;
  t->relay_live = 1;
  uv_timer_init(ts->loop, &t->grace);
  t->grace.data = t;
  t->next = ts->head;
  if (ts->head) ts->head->prev = t;
  ts->head = t;
  ts->n++;
  sl_counter_inc(ts->counters, SL_C_TASKS_SUBMITTED);
  char rid[160];
  size_t rn = sl_json_escape(rid, sizeof(rid) - 1, t->request_id, strlen(t->request_id));
  rid[rn == (size_t)-1 ? 0 : rn] = '\0';
  sl__emit(t, "started", "{\"id\":\"%s\",\"model\":\"%s\",\"request_id\":\"%s\"}", t->id, t->model, rid);
  sl__grace_start(t);
  *out = t;
  return 0;
}

void sl_task_started(sl_task_t *t) {
  t->vreq.headers = NULL;
  t->vreq.nheaders = 0;
  t->vreq.method_name = "POST";
  t->vreq.path = "/tasks";
}

sl_task_t *sl_tasks_find(sl_tasks_t *ts, const char *id, int *gone) {
  int w;
  uint64_t n;
  *gone = 0;
  if (sl_task_parse_id(id, &w, &n) < 0 || w != ts->worker || n <= ts->base || n > ts->issued) return NULL;
  for (sl_task_t *t = ts->head; t != NULL; t = t->next)
    if (t->num == n) return t;
  *gone = 1;
  return NULL;
}

int sl_task_attach(sl_task_t *t, sl_http_req_t *client, const char *last_event_id, const char *extra_headers) {
  static const char sse[] = "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n";
  char hdrs[512];
  snprintf(hdrs, sizeof(hdrs), "%s%s", sse, extra_headers ? extra_headers : "");
  uint64_t after = 0;
  if (last_event_id != NULL) {
    char *end;
    const char *p = last_event_id;
    while (*p == ' ') p++;
    unsigned long long v = strtoull(p, &end, 10);
    if (*p < '0' || *p > '9' || (*end != '\0' && *end != ' ') || v > t->last_seq) {
      char body[512];
      char msg[300];
      snprintf(msg, sizeof(msg), "Last-Event-ID: expected an event id of this task (0 to %" PRIu64 "), got \"%.64s\"",
               t->last_seq, last_event_id);
      size_t n = sl_oai_encode_error(body, sizeof(body), msg, strlen(msg), "invalid_request_error", "last_event_id");
      sl_http_respond(client, 400, "application/json", body, n == (size_t)-1 ? 0 : n, NULL);
      return 0;
    }
    after = v;
  }
  if (t->client != NULL) {
    /* A second client takes the task over: the first one's response ends
     * (a client that reconnects is often the same one, on a connection
     * the server has not seen fail yet). */
    sl_http_req_t *old = t->client;
    old->on_abort = old->on_drain = NULL;
    t->client = NULL;
    sl_http_stream_end(old, 1);
  }
  if (after + 1 <= t->last_seq && after + 1 < t->first_seq) {
    /* The event after the client's was evicted: one error event, no id
     * (the client's Last-Event-ID stays what it was), and the end. */
    char ev[512];
    int n = snprintf(ev, sizeof(ev),
                     "event: error\ndata: {\"code\":\"evicted\",\"message\":\"event %" PRIu64
                     " was evicted from the task's ring; the first event still held is %" PRIu64
                     "\",\"first_held\":%" PRIu64 ",\"last\":%" PRIu64 "}\n\n",
                     after + 1, t->first_seq, t->first_seq, t->last_seq);
    uv_buf_t b = uv_buf_init(ev, (unsigned)n);
    if (sl_http_stream_begin(client, 200, "text/event-stream", hdrs) == 0 &&
        sl_http_stream_writev(client, &b, 1, NULL, 0) == 0)
      sl_http_stream_end(client, 0);
    return 0;
  }
  if (after > 0) sl_counter_inc(t->ts->counters, SL_C_TASKS_RESUMED);
  uv_timer_stop(&t->grace);
  if (sl_http_stream_begin(client, 200, "text/event-stream", hdrs) < 0) {
    sl__detached(t);
    return 0;
  }
  t->client = client;
  client->data = t;
  client->on_abort = sl__client_abort;
  client->on_drain = sl__client_drain;
  /* A comment first, so the client has the head before the next event. */
  static const char hello[] = ": sluice task stream\n\n";
  uv_buf_t b = uv_buf_init((char *)hello, sizeof(hello) - 1);
  if (sl_http_stream_writev(client, &b, 1, NULL, 0) < 0) {
    client->on_abort = NULL;
    t->client = NULL;
    sl__detached(t);
    return 0;
  }
  sl__locate(t, after + 1, &t->cur_abs, &t->cur_off);
  sl__flush(t);
  if (t->client != NULL && t->relay_waits && !sl_http_req_over_high(t->client, 0)) sl__relay_go(t);
  return 0;
}

int sl_task_cancel(sl_task_t *t) {
  if (!t->relay_live) return SL_EINVAL;
  sl__relay_abort(t);
  sl_counter_inc(t->ts->counters, SL_C_TASKS_CANCELLED);
  sl__emit_error_text(t, "cancelled", "the task was cancelled (DELETE)", 0);
  sl__flush(t);
  if (t->client == NULL) sl__grace_start(t);
  return 0;
}

size_t sl_task_describe(const sl_task_t *t, char *buf, size_t cap) {
  int n = snprintf(buf, cap,
                   "\"status\":\"%s\",\"model\":\"%s\",\"request_id\":\"%s\",\"events\":%" PRIu64
                   ",\"first_held\":%" PRIu64 ",\"tokens\":%" PRIu64
                   ",\"attached\":%s,\"paused\":%s,\"ring_bytes\":%zu",
                   t->relay_live ? "running" : "finished", t->model, t->request_id, t->last_seq, t->first_seq,
                   t->tokens, t->client ? "true" : "false", t->paused ? "true" : "false", t->held);
  return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

void sl_tasks_stats(const sl_tasks_t *ts, sl_tasks_stats_t *out) {
  memset(out, 0, sizeof(*out));
  for (const sl_task_t *t = ts->head; t != NULL; t = t->next) {
    out->live++;
    if (t->relay_live) out->running++;
    if (t->client == NULL) out->detached++;
    if (t->paused) out->paused++;
    out->ring_bytes += t->held;
    out->ring_memory += (size_t)t->nslots * ts->chunks->chunk_size;
  }
}

void sl_tasks_close(sl_tasks_t *ts, void (*cb)(void *ud), void *ud) {
  ts->closing = 1;
  ts->close_cb = cb;
  ts->close_ud = ud;
  ts->pending = 1;
  while (ts->head != NULL) {
    sl_task_t *t = ts->head;
    if (t->relay_live) {
      sl__relay_abort(t);
    }
    sl__task_free(t);
  }
  if (--ts->pending == 0 && cb) cb(ud);
}
