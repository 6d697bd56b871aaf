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
 * Events go to the output stage (output.h) as they arrive, as the engine's
 * own JSON bytes in the pool chunk that holds them; when the upstream read
 * that brought them ends, the stage sends them all in one write: no copy,
 * no allocation per token.  The engine's top-level "usage" member is cut
 * out of those bytes, in place, for a client that did not ask for usage.
 * When the output stage's watermark test says so, the upstream read stops
 * (the engine's TCP window then closes); it resumes on the server's
 * on_drain at the low watermark, so the bytes a stream pins stay bounded.
 * Tokens are counted twice: received from the engine, and written once the
 * kernel took their bytes (output.c).  A non-streaming answer is assembled
 * (assemble.h); every stream ends with one line (accesslog.h).
 *
 * Before the first token the client sees nothing but, every heartbeat_ms,
 * a ':' comment (which sends the headers); a role-only chunk is held back
 * and sent with the first token, so a retry never shows the client a second
 * role chunk from another engine.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/base/errors.h"
#include "runtime/base/narrate.h"
#include "runtime/stream/accesslog.h"
#include "runtime/stream/assemble.h"
#include "runtime/stream/guarded.h"
#include "runtime/stream/transcript.h"
#include "runtime/stream/output.h"
#include "runtime/stream/placement.h"
#include "runtime/stream/relay.h"
#include "runtime/stream/reply.h"
#include "runtime/upstream/oai.h"

#define SL_MAX_TRIED 32

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
  int first_token;
  int answered;              /* client response ended (or client gone) */
  int finished;              /* end of stream decided; waiting for handles */
  int paused;                /* upstream read stopped for backpressure */
  int retry_pending;         /* retry_timer armed */
  uint64_t last_event_ms;    /* uv_now of the last upstream event (or attempt start) */
  uint64_t deadline_ms;      /* how long after it the deadline timer fires */
  uint32_t pauses;           /* backpressure pauses of this stream */
  uint32_t gap_pauses;       /* pauses when t_last was set: a gap across a pause is not the engine's */
  int saw_done;
  int upstream_sent_usage;
  char enc[SL_OUT_ENCODE_MAX]; /* a native engine's event, re-encoded as an OpenAI chunk */
  int read_events;           /* events of the upstream read in progress */
  uint64_t t_start, t_first, t_end;
  uint64_t tokens_received;  /* token events received from the engine (what usage falls back to) */
  sl_output_t out;           /* everything sent to a streaming client */
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
  sl_assembly_t asm_;        /* a non-streaming answer */
  sl_guarded_t gd;           /* the guards of the pool of the current attempt (gd.g.set NULL: none) */
  int guard_init;            /* gd was set up (for the pool of gd.g.set) */
  int guard_done;            /* a guard ended the stream (the decoder must stop) */
  uint64_t notes_seen;       /* guard annotations already narrated */
  uint64_t masks_seen;       /* masked ranges already counted */
  uint64_t t_guard;          /* uv_hrtime the gap proposition measures from (last token or resume) */
  char guard_name[72];       /* the guard that ended or last touched the stream, for the log */
  char end_after[32];        /* the end reason once [DONE]'s tokens are taken ("" = complete) */
  uv_timer_t guard_timer;    /* LTL gap and ttft propositions, and the pipeline's batch timer */
  sl_guardset_t *own_set;    /* guards built for this stream (its pipeline added some), or NULL */
  int own_pool;              /* the pool own_set was built for */
  sl_stream_t *pq_prev, *pq_next; /* in ss's queue of timed pipeline batches */
  int pq_in;
  uint64_t pq_wait;          /* the pipeline wait it was queued for */
  uint64_t pcalls_seen;      /* on_chunk calls already counted */
  sl_transcript_t *tr;       /* its transcript while recorded, or NULL */
  int tr_decided;            /* whether to record was decided (at the first attempt) */
  /* Admission. */
  sl_admq_node_t qn;         /* its place in its pool's queue while it waits */
  int qpool;                 /* the pool index of that queue */
  int from_queue;            /* sl__try_now runs for the queue's head: it may not queue behind others */
  int dispatched;            /* an attempt was sent once: a resend or retry keeps its turn (no queueing behind
                                newcomers unless there is no room) */
  uint64_t t_queued;         /* uv_hrtime it entered the queue last */
  uint64_t queue_ns;         /* time it spent queued before that */
  uint64_t t_dispatch;       /* uv_hrtime the current attempt was sent (TTFT without the queue) */
  int64_t retry_after_ms;    /* the longest Retry-After an engine or the queue gave it (-1 = none) */
  int refused;               /* attempts an engine answered 429 */
  uint64_t t_paused;         /* uv_hrtime of the current backpressure pause */
  /* Traces. */
  sl_trace_rec_t trace;      /* ids and times (hrtime until the end converts them) */
  int traced;                /* a trace is kept (on_trace set, sampled) */
  size_t tp_span_off;        /* where the parent span's 16 hex digits sit in fwd_headers (0: no traceparent) */
};

#define SL__STREAM_OF(node) ((sl_stream_t *)((char *)(node) - offsetof(sl_stream_t, qn)))

static void sl__try_now(sl_stream_t *st);
static void sl__retry(sl_stream_t *st);
static int sl__on_event_outer(void *ud, const sl_event_t *ev, sl_chunk_t *chunk);
static void sl__on_read_end(void *ud);
static void sl__on_end(void *ud, const sl_up_end_t *end);
static const sl_up_handler_t sl__handler = {
    .on_event = sl__on_event_outer, .on_read_end = sl__on_read_end, .on_end = sl__on_end};
static void sl__finish(sl_stream_t *st, const char *reason);
static void sl__fail(sl_stream_t *st, int status, const char *type, const char *code);
static int sl__complete(sl_stream_t *st);
static void sl__respond_whole(sl_stream_t *st);
static void sl__guard_arm(sl_stream_t *st);
static void sl__pipe_action(void *ud, const char *phase, const sl_pact_t *a, const char *err);
static double sl__t(const sl_stream_t *st);
static void sl__pq_remove(sl_stream_t *st);
static void sl__dequeue(sl_stream_t *st);
static int sl__home_pool(const sl_stream_t *st);
static sl_trace_attempt_t *sl__trace_attempt(sl_stream_t *st);
static void sl__trace_end(sl_stream_t *st, const char *reason);
static void sl__trace_attempt_end(sl_stream_t *st, const char *outcome, int status);
static void sl__queue_narrate(sl_stream_t *st, const char *how, uint64_t waited_ns);

size_t sl_relay_pin_bound(const sl_config_t *cfg) {
  /* The write queue passes the high watermark by at most one read (one
   * chunk), and the chunks at either end of it, the held chunk and the
   * scratch or join chunk may each be partly used. */
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
    if (--st->ep->inflight == 0) st->ep->idle_since = uv_hrtime();
    st->ep->pool->w_ended++;
    st->ep_counted = 0;
    if (st->ss->nqueued > 0) sl_relay_kick(st->ss); /* its place may go to a waiting request */
  }
}

/* An attempt failed on ep: cooldown bookkeeping and the error estimate.
 * status is the engine's 429 or 503, or -1 for a timeout (drops: the limit
 * is cut, once an interval), or 0 for any other failure. */
static void sl__attempt_failed(sl_stream_t *st, sl_endpoint_t *ep, int status) {
  sl_endpoint_failed(ep, uv_hrtime());
  sl_endpoint_observe(ep, 1, -1, -1, -1);
  if (status == 0) {
    ep->w_errors++;
    return;
  }
  int old = ep->limit;
  if (sl_endpoint_drop(ep, status)) {
    char text[160];
    snprintf(text, sizeof(text), "cut at once after %s",
             status == 429 ? "HTTP 429" : status == 503 ? "HTTP 503" : "a timeout");
    sl_counter_inc(st->ss->counters, SL_C_LIMIT_CUTS);
    sl_narrate_push(st->ss->nar, SL_NAR_LIMIT, NULL, ep->name, NULL, text, old, 0, 0, ep->limit);
  }
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
    sl__trace_attempt_end(st, "cancelled", 0); /* sluice ends the engine's request */
    sl_upstream_abort(st->up);
    st->up = NULL;
  }
  sl__release_endpoint(st);
}

/* ---- writing to the client ---- */

/* The output stage failed a write: the client is gone (the server ended
 * the request; no on_abort follows). */
static int sl__gone(sl_stream_t *st, int rc) {
  if (rc < 0 && st->out.req == NULL) {
    st->req = NULL;
    st->answered = 1;
  }
  return rc;
}

/* A native engine's event (adapter.h's native) as an OpenAI chunk in
 * st->enc: its bytes are never the client's dialect.  NULL (with the
 * stream's error set) when the chunk does not fit st->enc. */
static const char *sl__event_encoded(sl_stream_t *st, const sl_event_t *ev, size_t *n) {
  sl_oai_meta_t m;
  sl_output_meta(&st->out, &m);
  size_t w = sl_oai_encode_delta(st->enc, sizeof(st->enc), &m, NULL, ev->has_text ? ev->text.p : NULL,
                                 ev->has_text ? ev->text.n : 0, ev->has_reasoning ? ev->reasoning.p : NULL,
                                 ev->has_reasoning ? ev->reasoning.n : 0, ev->finish);
  if (w == (size_t)-1) {
    sl__set_error(st, "engine %s sent an event whose text does not fit one chunk (%zu bytes)", st->ep->name,
                  ev->text.n + ev->reasoning.n);
    return NULL;
  }
  *n = w;
  return st->enc;
}

/* The bytes an engine event goes out as, in the chunk *pin they were read
 * or joined into (the caller's chunk; NULL for bytes encoded here, which
 * the output stage copies).  A native engine's event is always re-encoded.
 * The engine's top-level "usage" member is cut out when the
 * client did not ask for usage (sluice always asks the engine, and OpenAI
 * omits the key for clients that did not) or when its counts were refused.
 * The cut is made in place, in bytes no one else reads (this event's
 * payload, already scanned), by moving the shorter side over the member:
 * usually the closing brace.  Sets *n; NULL when a native event cannot be
 * encoded (the stream's error is set). */
static const char *sl__event_bytes(sl_stream_t *st, const sl_event_t *ev, sl_chunk_t **pin, size_t *n) {
  if (st->ep->pool->adapter->native) {
    *pin = NULL;
    return sl__event_encoded(st, ev, n);
  }
  sl_chunk_t *chunk = *pin;
  const char *p = ev->raw.p;
  size_t len = ev->raw.n;
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
  *n = len;
  return p;
}

/* Ends the body of a response whose [DONE] is written (sl__complete): the
 * tokens taken by now are counted, the rest never will be. */
static void sl__flush_end(sl_stream_t *st) {
  if (!st->flushing) return;
  st->flushing = 0;
  if (st->req == NULL) return;
  sl_output_end(&st->out, 0);
  st->req = st->out.req = NULL;
}

/* ---- the end of a stream ---- */

static void sl__handle_closed(uv_handle_t *h) {
  sl_stream_t *st = h->data;
  if (--st->handles > 0) return;
  sl_streams_t *ss = st->ss;
  sl_output_free(&st->out);
  sl_guarded_free(&st->gd);
  sl_guardset_free(st->own_set);
  sl_transcript_free(st->tr);
  sl_free(st->r.extra_guards);
  sl_assembly_free(&st->asm_);
  sl_pin_account_release(st->acct);
  sl_generation_release(st->gen);
  sl_free(st->r.body);
  sl_free(st->fwd_headers);
  if (st->prev) st->prev->next = st->next; else ss->head = st->next;
  if (st->next) st->next->prev = st->prev;
  ss->n--;
  sl_free(st);
  if (ss->nqueued > 0) sl_relay_kick(ss); /* its buffers are back (the memory budget) */
  if (ss->n == 0 && ss->on_idle) ss->on_idle(ss->idle_ud);
}

/* The outcome class of an end reason (sl_outcome_t). */
static sl_outcome_t sl__outcome(const char *reason) {
  static const struct {
    const char *reason;
    sl_outcome_t out;
  } map[] = {
      {"complete", SL_OUT_OK},
      {"client_cancel", SL_OUT_CANCELLED},
      {"upstream_timeout", SL_OUT_TIMEOUT},
      {"upstream_idle_timeout", SL_OUT_TIMEOUT},
      {"total_timeout", SL_OUT_TIMEOUT},
      {"upstream_failed", SL_OUT_UPSTREAM_ERROR},
      {"upstream_error_event", SL_OUT_UPSTREAM_ERROR},
      {"upstream_rejected", SL_OUT_UPSTREAM_ERROR},
      {"rate_limited", SL_OUT_RATE_LIMITED},
      {"queue_timeout", SL_OUT_REJECTED},
      {"queue_full", SL_OUT_REJECTED},
      {"overloaded", SL_OUT_REJECTED},
      {"no_ready_endpoint", SL_OUT_REJECTED},
      {"context_length_exceeded", SL_OUT_REJECTED},
      {"shutting_down", SL_OUT_REJECTED},
      {"slow_client", SL_OUT_SLOW_CLIENT},
  };
  if (strncmp(reason, "guard_", 6) == 0 && strcmp(reason, "guard_setup") != 0) return SL_OUT_GUARD;
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    if (strcmp(map[i].reason, reason) == 0) return map[i].out;
  return SL_OUT_ERROR;
}

/* The stream's figures for /metrics, in its home pool (or the pool of its
 * last endpoint) and that endpoint. */
static void sl__metrics_end(sl_stream_t *st, const char *reason) {
  sl_streams_t *ss = st->ss;
  if (!ss->cfg->metrics_enabled) return;
  int pi = st->ep ? (int)(st->ep->pool - ss->reg->pools) : sl__home_pool(st);
  if (pi < 0) pi = 0;
  sl_pool_t *p = &ss->reg->pools[pi];
  p->outcomes[sl__outcome(reason)]++;
  sl_hist_observe(&p->h_duration, (double)(st->t_end - st->t_start) / 1e9);
  sl_hist_observe(&p->h_queue, (double)st->queue_ns / 1e9);
  if (st->first_token)
    sl_hist_observe(&p->h_tokens,
                    (double)(st->has_usage ? st->completion_tokens : (int64_t)st->tokens_received));
  if (st->ep && st->tokens_received > 1 && st->t_last > st->t_first)
    sl_hist_observe(&st->ep->h_tpot, (double)(st->t_last - st->t_first) / 1e9 / (double)(st->tokens_received - 1));
}

static void sl__log_end(sl_stream_t *st) {
  sl_streams_t *ss = st->ss;
  sl_access_entry_t e = {
      .request_id = st->id,
      .pool = st->ep ? st->ep->pool->cfg->name : "-",
      .endpoint = st->ep ? st->ep->name : "-",
      .model = st->r.model,
      .stream = st->r.stream,
      .ttft_ms = st->first_token ? sl__ms(st->t_first - st->t_start) : -1,
      .tokens = st->tokens_received,
      .tokens_written = st->out.tokens_written,
      .has_usage = st->has_usage,
      .prompt_tokens = st->prompt_tokens,
      .completion_tokens = st->completion_tokens,
      .duration_ms = sl__ms(st->t_end - st->t_start),
      .end = st->end_reason,
      .attempts = st->attempts,
      .generation = st->gen ? st->gen->id : 0,
      .placement = st->place_reason,
      .pinned_chunks_peak = st->acct ? st->acct->peak : 0,
      .error = st->error,
      .guard = st->guard_name,
  };
  sl_access_log(ss->log, ss->cfg->log_json, ss->nar, &e);
}

static void sl__transcript_written(void *ud, int status) {
  sl_streams_t *ss = ud;
  sl_counter_inc(ss->counters, status == 0 ? SL_C_TRANSCRIPTS_WRITTEN : SL_C_TRANSCRIPTS_FAILED);
  if (status < 0) fprintf(ss->log, "sluice: a transcript could not be written: %s\n", uv_strerror(status));
  if (--ss->writes == 0 && ss->on_writes_done) ss->on_writes_done(ss->writes_ud);
}

/* The tenant's side of the end: the pipeline's on_end, the reservation
 * settled to the real counts (a cut stream too), the transcript written. */
static void sl__tenant_end(sl_stream_t *st, const char *reason) {
  sl_streams_t *ss = st->ss;
  int cut = strcmp(reason, "complete") != 0;
  int64_t prompt = st->has_usage ? st->prompt_tokens : st->r.resv.prompt;
  int64_t completion = st->has_usage ? st->completion_tokens : (int64_t)st->tokens_received;
  if (st->gd.pcalls != st->pcalls_seen) {
    sl_counter_add(ss->counters, SL_C_PIPELINE_CALLS, st->gd.pcalls - st->pcalls_seen);
    st->pcalls_seen = st->gd.pcalls;
  }
  if (st->r.pipe != NULL) {
    if (sl_pipeline_phases(st->r.pipe) & SL_PIPE_ON_END) {
      char err[256];
      sl_pipe_summary_t sum = {reason, prompt, completion, sl__ms(st->t_end - st->t_start), cut};
      sl_counter_inc(ss->counters, SL_C_PIPELINE_CALLS);
      if (sl_pipeline_on_end(st->r.pipe, st->r.pipe_h, st->id, &sum, ss->acts, err, sizeof(err)) < 0)
        sl__pipe_action(st, "on_end", NULL, err);
      else
        for (int i = 0; i < ss->acts->n; i++) sl__pipe_action(st, "on_end", &ss->acts->a[i], NULL);
    }
    sl_pipeline_finish(st->r.pipe, st->r.pipe_h);
    st->r.pipe_h = 0;
  }
  if (st->r.tenant != NULL) sl_tenant_settle(st->r.tenant, ss->dict, &st->r.resv, prompt, completion, cut);
  if (st->tr != NULL) {
    sl_transcript_end(st->tr, sl__t(st), reason, prompt, completion);
    char path[768];
    snprintf(path, sizeof(path), "%s/%s.ndjson", ss->cfg->transcript_dir, st->id);
    sl_transcript_t *tr = st->tr;
    st->tr = NULL;
    ss->writes++; /* the gateway closes after the last write (gateway.c) */
    int rc = sl_transcript_write(tr, ss->loop, path, sl__transcript_written, ss);
    if (rc < 0) sl__transcript_written(ss, rc);
  }
}

/* Decides the end: stops everything, logs once, frees when handles close.
 * The client must have been answered (or be gone) before. */
static void sl__finish(sl_stream_t *st, const char *reason) {
  if (st->finished) return;
  st->finished = 1;
  sl__pq_remove(st);
  if (st->qn.queued) {
    /* It left the queue without a place: its client went away, or the
     * stream was cut (shutdown, the total timeout). */
    uint64_t waited = uv_hrtime() - st->t_queued;
    sl__dequeue(st);
    if (strcmp(reason, "client_cancel") == 0) {
      sl_counter_inc(st->ss->counters, SL_C_QUEUE_CANCELLED);
      sl__queue_narrate(st, "left: the client went away", waited);
    }
  }
  st->t_end = uv_hrtime();
  snprintf(st->end_reason, sizeof(st->end_reason), "%s", reason);
  sl__observe(st);
  sl__stop_upstream(st);
  sl__flush_end(st); /* [DONE] went out: end the body cleanly */
  if (st->req != NULL) {
    /* Not answered yet (should not happen): close without [DONE]. */
    if (st->out.headers_sent) sl_output_end(&st->out, 1);
    else sl_reply_error(st->req, 500, "server_error", "internal", NULL, "stream ended unexpectedly");
    st->req = st->out.req = NULL;
  }
  sl_counter_dec(st->ss->counters, SL_C_STREAMS_ACTIVE);
  sl_counter_inc(st->ss->counters, SL_C_STREAMS_COMPLETED);
  if (st->first_token && st->ep) st->ep->w_completed++;
  if (st->gd.rewritten) sl_counter_add(st->ss->counters, SL_C_GUARD_REWRITES, st->gd.rewritten);
  if (st->first_token && st->ep && strcmp(reason, "complete") != 0) {
    /* Cut short: the counts it kept are the pool's too. */
    sl_pool_t *pool = st->ep->pool;
    pool->cut_streams++;
    pool->cut_tokens_received += st->tokens_received;
    pool->cut_tokens_written += st->out.tokens_written;
    sl_counter_inc(st->ss->counters, SL_C_CUT_STREAMS);
  }
  if (st->acct) sl_counter_max(st->ss->counters, SL_C_STREAM_PINNED_PEAK, (uint64_t)st->acct->peak * st->ss->chunks->chunk_size);
  sl__tenant_end(st, reason);
  sl__log_end(st);
  sl__metrics_end(st, reason);
  sl__trace_end(st, reason);
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
  uv_close((uv_handle_t *)&st->guard_timer, sl__handle_closed);
}

/* The stream failed for good: answer the client as far as it got. */
static void sl__fail(sl_stream_t *st, int status, const char *type, const char *code) {
  if (st->finished) return;
  sl__stop_upstream(st);
  sl__flush_end(st); /* after [DONE] the answer is complete: no error event */
  if (st->req != NULL) {
    if (st->out.headers_sent) {
      /* Usage survives the cut, before the error event (the SDKs raise
       * there and read nothing after it). */
      if (st->r.include_usage && st->first_token)
        sl__gone(st, sl_output_usage(&st->out, st->prompt_tokens,
                                     st->has_usage ? st->completion_tokens : (int64_t)st->tokens_received));
      if (st->out.req != NULL) sl_output_fail(&st->out, st->error, type, code);
      st->req = st->out.req = NULL;
      st->answered = 1;
    } else {
      char extra[96] = "";
      if ((status == 429 || status == 503) && st->retry_after_ms >= 0)
        snprintf(extra, sizeof(extra), "Retry-After: %lld\r\nretry-after-ms: %lld\r\n",
                 (long long)((st->retry_after_ms + 999) / 1000), (long long)st->retry_after_ms);
      sl_reply_error(st->req, status, type, code, extra[0] ? extra : NULL, "%s", st->error);
      st->req = st->out.req = NULL;
      st->answered = 1;
    }
  }
  sl__finish(st, code);
}

/* ---- non-streaming answers ---- */

static void sl__respond_whole(sl_stream_t *st) {
  sl_asm_answer_t ans = {
      .id = st->out.id[0] ? st->out.id : st->id,
      .model = st->out.model[0] ? st->out.model : st->r.model,
      .created = st->out.created,
      .chat = st->r.chat,
      .finish = st->finish,
      .prompt_tokens = st->prompt_tokens,
      .completion_tokens = st->has_usage ? st->completion_tokens : (int64_t)st->tokens_received,
  };
  if (st->guard_init && st->gd.g.set != NULL && st->asm_.text != NULL) {
    /* The text as the client may see it: cut at a stop, masked. */
    size_t tl;
    char *t = sl_guarded_whole_text(&st->gd, st->asm_.text, st->asm_.text_len, &tl);
    sl_free(st->asm_.text);
    st->asm_.text = t;
    st->asm_.text_len = st->asm_.text_cap = tl;
  }
  size_t len;
  char *body = sl_assembly_body(&st->asm_, &ans, &len);
  int rc = sl_http_respond(st->req, 200, "application/json", body, len, NULL);
  sl_assembly_free_body(body);
  st->req = st->out.req = NULL;
  st->answered = 1;
  st->out.req = NULL;
  if (rc == 0) {
    /* One write that ends the request: nothing tells sluice later when
     * the kernel took it, so its tokens count as written when handed over
     * (docs/operations.md says so). */
    st->out.tokens_written = st->tokens_received;
    sl_counter_add(st->ss->counters, SL_C_TOKENS_WRITTEN, st->tokens_received);
  }
}

/* ---- events from the engine ---- */

static void sl__on_deadline(uv_timer_t *t);

/* (Re)arms the deadline: the first-token timeout until the first token, then
 * the idle timeout between events.  A paused stream has none: the engine is
 * waiting for the client, not stalled. */
static void sl__arm_idle(sl_stream_t *st) {
  if (st->finished || st->paused || st->answered) return; /* answered: the [DONE] grace runs */
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

/* After [DONE] the engine gets this long to end its response body (so its
 * connection can be reused) before sluice closes that connection and the
 * stream ends: the client has its whole answer, and an engine that never
 * ends the body must not hold its slot until the idle timeout. */
#define SL__DONE_GRACE_MS 1000

static void sl__arm_done_grace(sl_stream_t *st) {
  if (st->finished || st->up == NULL) return;
  uint64_t grace = st->ss->cfg->idle_timeout_ms < SL__DONE_GRACE_MS ? st->ss->cfg->idle_timeout_ms : SL__DONE_GRACE_MS;
  st->deadline_ms = grace;
  st->last_event_ms = uv_now(st->ss->loop);
  uv_timer_start(&st->timer, sl__on_deadline, grace, 0);
}

/* The engine said [DONE]: finish the client's response cleanly.  Returns 0,
 * or < 0 if the client turned out to be gone. */
static int sl__complete(sl_stream_t *st) {
  if (st->r.stream) {
    sl_output_t *o = &st->out;
    if (st->r.include_usage && !st->upstream_sent_usage) {
      /* The engine gave no usage chunk: report what sluice counted. */
      int64_t completion = st->has_usage ? st->completion_tokens : (int64_t)st->tokens_received;
      if (sl__gone(st, sl_output_usage(o, st->prompt_tokens, completion)) < 0 && st->req == NULL) return -1;
    }
    static const char done[] = "data: [DONE]\n\n";
    if (sl__gone(st, sl_output_static(o, done, sizeof(done) - 1)) < 0) return -1;
    if (sl__gone(st, sl_output_flush(o)) < 0) return -1;
    st->answered = 1;
    if (sl_output_unsettled(o) > 0) {
      /* Tokens still sit in the write queue.  The body's end waits until
       * the kernel has taken them (sl__on_client_written), so that their
       * count is known before the stream is logged; the client reads
       * [DONE] meanwhile all the same, only the terminating chunk waits. */
      st->flushing = 1;
      sl__arm_done_grace(st);
      return 0;
    }
    sl_output_end(o, 0);
    st->req = st->out.req = NULL;
  } else {
    sl__respond_whole(st);
  }
  sl__arm_done_grace(st);
  return 0;
}

static void sl__first_token(sl_stream_t *st) {
  st->first_token = 1;
  st->error[0] = '\0'; /* an earlier attempt's failure is history: attempts= tells it */
  st->t_first = uv_hrtime();
  uv_timer_stop(&st->hb_timer);
  if (st->ep) sl_endpoint_succeeded(st->ep);
  if (st->ep && st->ss->cfg->metrics_enabled)
    sl_hist_observe(&st->ep->h_ttft, (double)(st->t_first - st->t_start) / 1e9); /* what the client waited */
  if (st->ep && st->t_dispatch) {
    /* The limit rule's TTFT: from the dispatch (sluice's queue is not the
     * engine's), a long prompt's prefill scaled down to 256 tokens'
     * (limit_ffi.h).  One sketch update a stream. */
    double ttft = sl__ms(st->t_first - st->t_dispatch), prompt = (double)((st->r.prompt_chars + 3) / 4);
    if (prompt > 256) ttft *= 256.0 / prompt;
    sl_qs_add(&st->ep->ttft_w, ttft);
  }
}

/* ---- guards ---- */

static void sl__on_guard_timer(uv_timer_t *t);

/* The guards of ep's pool; a pool without its own still enforces the
 * client's stop strings. */
static const sl_guardset_t *sl__pool_guards(const sl_stream_t *st, const sl_endpoint_t *ep) {
  int i = (int)(ep->pool - st->ss->reg->pools);
  const sl_guardset_t *gs = i >= 0 && i < SL_MAX_POOLS ? st->ss->guards[i] : NULL;
  return gs ? gs : st->ss->default_guards;
}

/* Ms since the stream started, for its transcript. */
static double sl__t(const sl_stream_t *st) { return sl__ms(uv_hrtime() - st->t_start); }

/* Appends a string literal to a transcript. */
#define SL__RAW(t, lit) sl_transcript_raw((t), (lit), sizeof(lit) - 1)

/* The guards object of pool index `pool` with the tenant's and the
 * pipeline's additions merged in (guard.h: sl_guards_merge), as a new
 * tree ("{}" when none: the client's stop only). */
static cJSON *sl__guards_tree(const sl_stream_t *st, int pool) {
  const char *pj = st->ss->cfg->pools[pool].guards_json;
  const char *tj = st->r.tenant ? st->r.tenant->guards_json : NULL;
  cJSON *a = pj ? cJSON_Parse(pj) : NULL, *b = tj ? cJSON_Parse(tj) : NULL;
  cJSON *c = st->r.extra_guards ? cJSON_Parse(st->r.extra_guards) : NULL;
  cJSON *m = sl_guards_merge(a, b);
  cJSON *out = sl_guards_merge(m, c);
  cJSON_Delete(a);
  cJSON_Delete(b);
  cJSON_Delete(c);
  cJSON_Delete(m);
  return out;
}

/* The pipeline took an action (a), or failed (err): narrated, counted and
 * recorded. */
static void sl__pipe_action(void *ud, const char *phase, const sl_pact_t *a, const char *err) {
  sl_stream_t *st = ud;
  if (st->tr) sl_transcript_action(st->tr, sl__t(st), phase, a, err);
  if (a == NULL) {
    sl_counter_inc(st->ss->counters, SL_C_PIPELINE_ERRORS);
    if (st->r.tenant) st->r.tenant->usage.pipeline_errors++;
    return;
  }
  if (a->kind == SL_PACT_NARRATE) {
    char text[256];
    snprintf(text, sizeof(text), "pipeline %s: %.*s", phase, (int)(a->len < 200 ? a->len : 200), a->text);
    sl_narrate_push(st->ss->nar, SL_NAR_GUARD, st->id, st->ep ? st->ep->name : NULL, st->r.model, text,
                    st->attempts, st->gen ? st->gen->id : 0, 0, (int64_t)st->tokens_received);
  }
}

/* Decides once, at the first attempt, whether the stream is recorded: the
 * largest of the configured fractions (everything, the tenant's, the
 * pool's). */
static void sl__transcript_decide(sl_stream_t *st, int pool) {
  if (st->tr_decided) return;
  st->tr_decided = 1;
  const sl_config_t *cfg = st->ss->cfg;
  if (cfg->transcript_dir[0] == '\0') return;
  double p = cfg->transcript_sample;
  if (st->r.tenant && st->r.tenant->transcripts > p) p = st->r.tenant->transcripts;
  if (cfg->pools[pool].transcripts > p) p = cfg->pools[pool].transcripts;
  if (p <= 0 || (p < 1 && (double)(sl__rand(st->ss) >> 11) * (1.0 / 9007199254740992.0) >= p)) return;
  st->tr = sl_transcript_new(cfg->transcript_max_bytes);
  sl_transcript_fmt(st->tr, "{\"type\":\"request\",\"id\":");
  sl_transcript_str(st->tr, st->id, strlen(st->id));
  SL__RAW(st->tr, ",\"tenant\":");
  if (st->r.tenant) sl_transcript_str(st->tr, st->r.tenant->name, strlen(st->r.tenant->name));
  else SL__RAW(st->tr, "null");
  SL__RAW(st->tr, ",\"model\":");
  sl_transcript_str(st->tr, st->r.model, strlen(st->r.model));
  sl_transcript_fmt(st->tr, ",\"stream\":%s,\"stops\":[", st->r.stream ? "true" : "false");
  for (int i = 0; i < st->r.nstops; i++) {
    if (i) SL__RAW(st->tr, ",");
    sl_transcript_str(st->tr, st->r.stops[i], st->r.stop_lens[i]);
  }
  SL__RAW(st->tr, "],\"pipeline\":");
  if (st->r.pipe) sl_transcript_str(st->tr, sl_pipeline_file(st->r.pipe), strlen(sl_pipeline_file(st->r.pipe)));
  else SL__RAW(st->tr, "null");
  sl_transcript_fmt(st->tr, ",\"flush_bytes\":%zu,\"flush_ms\":%llu,\"body\":", cfg->pipe_flush_bytes,
                    (unsigned long long)cfg->pipe_flush_ms);
  sl_transcript_raw(st->tr, st->r.body, st->r.body_len);
  SL__RAW(st->tr, "}\n");
}

/* Sets the stream's guards up for the pool of this attempt (nothing was fed
 * yet: attempts are retried only before the first token): the pool's, with
 * the tenant's added, and with what its pipeline's on_request added. */
static int sl__guard_setup(sl_stream_t *st, const sl_endpoint_t *ep) {
  int pool = (int)(ep->pool - st->ss->reg->pools);
  const sl_guardset_t *set = sl__pool_guards(st, ep);
  const sl_tenant_t *t = st->r.tenant;
  char err[320];
  sl__transcript_decide(st, pool);
  if (t != NULL && st->ss->tenant_guards && st->ss->tenant_guards[t->index * SL_MAX_POOLS + pool])
    set = st->ss->tenant_guards[t->index * SL_MAX_POOLS + pool];
  sl_guardset_t *built = NULL;
  if (st->r.extra_guards != NULL) {
    if (st->own_set != NULL && st->own_pool == pool) {
      set = st->own_set;
    } else {
      cJSON *tree = sl__guards_tree(st, pool);
      int rc = sl_guardset_build(tree, "guards added by the pipeline", st->ss->secrets, &built, err, sizeof(err));
      cJSON_Delete(tree);
      if (rc < 0) {
        sl__set_error(st, "%s", err);
        return rc;
      }
      set = built;
    }
  }
  if (st->guard_init && st->gd.g.set == set) return 0;
  if (st->guard_init) sl_guarded_free(&st->gd);
  if (built != NULL) {
    sl_guardset_free(st->own_set);
    st->own_set = built;
    st->own_pool = pool;
  }
  const char *stops[SL_REQUEST_STOPS];
  for (int i = 0; i < st->r.nstops; i++) stops[i] = st->r.stops[i];
  int rc = sl_guarded_init(&st->gd, set, stops, st->r.stop_lens, st->r.nstops, err, sizeof(err));
  st->guard_init = 1;
  st->gd.whole = !st->r.stream;
  if (rc < 0) {
    sl_guarded_free(&st->gd);
    sl__set_error(st, "guards: %s", err);
    return rc;
  }
  if (t != NULL && st->r.resv.active && st->r.resv.completion > 0 &&
      !(st->r.max_tokens > 0 && st->r.max_tokens <= st->r.resv.completion)) {
    /* What the tenant reserved is the most the stream may spend.  (When
     * the engine was asked for no more, it stops there itself, with its
     * own finish: no cut.) */
    sl_guard_cap_budget(&st->gd.g, st->r.resv.completion);
    st->gd.active = 1;
  }
  if (st->r.pipe != NULL)
    sl_guarded_pipe(&st->gd, st->r.pipe, st->r.pipe_h, st->id, st->ss->cfg->pipe_flush_bytes,
                    st->ss->cfg->pipe_flush_ms, st->ss->acts);
  st->gd.on_action = sl__pipe_action;
  st->gd.action_ud = st;
  if (st->tr) {
    sl_transcript_fmt(st->tr, "{\"type\":\"attempt\",\"t\":%.3f,\"endpoint\":", sl__t(st));
    sl_transcript_str(st->tr, ep->name, strlen(ep->name));
    SL__RAW(st->tr, ",\"pool\":");
    sl_transcript_str(st->tr, ep->pool->cfg->name, strlen(ep->pool->cfg->name));
    cJSON *tree = sl__guards_tree(st, pool);
    char *g = cJSON_PrintUnformatted(tree);
    SL__RAW(st->tr, ",\"guards\":");
    sl_transcript_raw(st->tr, g, strlen(g));
    SL__RAW(st->tr, "}\n");
    cJSON_free(g);
    cJSON_Delete(tree);
  }
  sl__guard_arm(st);
  return 0;
}

static int sl__guard_counter(sl_guard_kind_t k) {
  switch (k) {
    case SL_GUARD_STOP: return SL_C_GUARD_STOP;
    case SL_GUARD_REDACT: return SL_C_GUARD_REDACTION;
    case SL_GUARD_BUDGET: return SL_C_GUARD_BUDGET;
    case SL_GUARD_LOOP: return SL_C_GUARD_LOOP;
    case SL_GUARD_PIPELINE: return SL_C_GUARD_PIPELINE;
    default: return SL_C_GUARD_LTL;
  }
}

/* The pipeline's on_verdict, told of a guard's verdict (its actions are
 * narrated and recorded; a cancel it takes ends the stream at the next
 * look, sl__guard_notes). */
static void sl__pipe_verdict(sl_stream_t *st, const sl_guard_verdict_t *v) {
  if (st->r.pipe == NULL || !(sl_pipeline_phases(st->r.pipe) & SL_PIPE_ON_VERDICT)) return;
  char err[256];
  sl_counter_inc(st->ss->counters, SL_C_PIPELINE_CALLS);
  sl_pipe_actions_t *acts = st->ss->acts;
  int rc = sl_pipeline_on_verdict(st->r.pipe, st->r.pipe_h, st->id, sl_guard_kind_name(v->kind), v->name,
                                  sl_guard_action_name(v->action), v->detail, acts, err, sizeof(err));
  if (rc < 0) {
    sl__pipe_action(st, "on_verdict", NULL, err);
    return;
  }
  for (int i = 0; i < acts->n; i++) {
    const sl_pact_t *a = &acts->a[i];
    sl__pipe_action(st, "on_verdict", a, NULL);
    if (a->kind == SL_PACT_CANCEL && !st->gd.g.fired)
      sl_guard_fire(&st->gd.g, SL_GUARD_PIPELINE, SL_GACT_CANCEL, "pipeline", a->text);
    else if (a->kind == SL_PACT_ANNOTATE)
      sl_guard_fire(&st->gd.g, SL_GUARD_PIPELINE, SL_GACT_ANNOTATE, "pipeline", a->text);
  }
}

static void sl__guard_narrate(sl_stream_t *st, const sl_guard_verdict_t *v) {
  if (st->tr) sl_transcript_verdict(st->tr, sl__t(st), v);
  char text[256];
  snprintf(text, sizeof(text), "%s %s: %s", v->name, sl_guard_action_name(v->action), v->detail);
  sl_narrate_push(st->ss->nar, SL_NAR_GUARD, st->id, st->ep ? st->ep->name : NULL, st->r.model, text,
                  st->attempts, st->gen ? st->gen->id : 0, 0, (int64_t)st->tokens_received);
}

/* Annotations and masks since the last look: counted, narrated and told
 * to the pipeline.  Returns 1 when the pipeline's on_verdict cancelled the
 * stream (the caller ends it). */
static int sl__guard_notes(sl_stream_t *st) {
  sl_guard_t *g = &st->gd.g;
  int fired = g->fired;
  if (g->annotations != st->notes_seen) {
    st->notes_seen = g->annotations;
    sl_counter_inc(st->ss->counters, sl__guard_counter(g->note.kind));
    if (st->guard_name[0] == '\0') snprintf(st->guard_name, sizeof(st->guard_name), "%s", g->note.name);
    sl__guard_narrate(st, &g->note);
    if (g->note.kind != SL_GUARD_PIPELINE) sl__pipe_verdict(st, &g->note);
    st->notes_seen = g->annotations; /* the pipeline's own annotations are not told back to it */
  }
  if (g->redactions != st->masks_seen) {
    uint64_t k = g->redactions - st->masks_seen;
    st->masks_seen = g->redactions;
    sl_counter_add(st->ss->counters, SL_C_GUARD_MASKED, k);
    sl_counter_add(st->ss->counters, SL_C_GUARD_REDACTION, k);
    if (st->guard_name[0] == '\0') snprintf(st->guard_name, sizeof(st->guard_name), "redaction");
    sl_guard_verdict_t v = {.kind = SL_GUARD_REDACT, .action = SL_GACT_REPLACE};
    snprintf(v.name, sizeof(v.name), "redaction");
    snprintf(v.detail, sizeof(v.detail), "%llu range%s masked", (unsigned long long)k, k == 1 ? "" : "s");
    sl__guard_narrate(st, &v);
    sl__pipe_verdict(st, &v);
  }
  return !fired && g->fired;
}

/* A guard ended the stream.  ev (with its bytes p[0..n) in chunk) is the
 * event that fired it, or NULL (the timer, or the end of the text).  The
 * engine's request is cancelled; the client gets what the verdict lets
 * through, a ':' comment naming the guard, then for `end` the guard's
 * finish, usage (if asked) and [DONE], for `cancel` usage (if asked) and
 * one error event whose code names the guard. */
static void sl__guard_end(sl_stream_t *st, const sl_event_t *ev, const char *p, size_t n, sl_chunk_t *chunk,
                          uint64_t tokens) {
  const sl_guard_verdict_t *v = &st->gd.g.verdict;
  sl_streams_t *ss = st->ss;
  st->guard_done = 1;
  snprintf(st->guard_name, sizeof(st->guard_name), "%s", v->name);
  sl_counter_inc(ss->counters, sl__guard_counter(v->kind));
  sl__guard_narrate(st, v);
  if (v->kind != SL_GUARD_PIPELINE) sl__pipe_verdict(st, v);
  sl__stop_upstream(st);
  uv_timer_stop(&st->hb_timer);
  char reason[32], msg[320]; /* the end reason is the error code too: "guard_loop" */
  snprintf(reason, sizeof(reason), "guard_%s", sl_guard_kind_name(v->kind));
  snprintf(msg, sizeof(msg), "stream cancelled by guard %s: %s", v->name, v->detail);
  if (st->req == NULL) {
    sl__finish(st, reason);
    return;
  }
  if (!st->r.stream) {
    if (v->action == SL_GACT_CANCEL) {
      sl_reply_error(st->req, 422, "guard_error", reason, NULL, "%s", msg);
      st->req = st->out.req = NULL;
      st->answered = 1;
    } else {
      st->finish = sl_guarded_finish(v);
      sl__respond_whole(st);
    }
    sl__finish(st, reason);
    return;
  }
  sl_output_t *o = &st->out;
  sl_output_drop_held(o); /* a role chunk still held: nothing came after it */
  char line[320];
  int len = snprintf(line, sizeof(line), "sluice guard=%s action=%s %s", v->name, sl_guard_action_name(v->action),
                     v->detail);
  int rc = sl_guarded_settle(&st->gd, o, ev, p, n, chunk, tokens);
  if (rc >= 0) rc = sl_output_comment(o, line, len < (int)sizeof(line) ? (size_t)len : sizeof(line) - 1);
  if (sl__gone(st, rc) < 0 && st->req == NULL) {
    sl__finish(st, reason);
    return;
  }
  if (v->action == SL_GACT_CANCEL) {
    if (st->r.include_usage && st->first_token)
      sl__gone(st, sl_output_usage(o, st->prompt_tokens,
                                   st->has_usage ? st->completion_tokens : (int64_t)st->tokens_received));
    if (st->req != NULL) sl_output_fail(o, msg, "guard_error", reason);
    st->req = st->out.req = NULL;
    st->answered = 1;
    sl__finish(st, reason);
    return;
  }
  st->finish = sl_guarded_finish(v);
  uint64_t carried = st->gd.carry; /* tokens of masked events not sent with another */
  st->gd.carry = 0;
  if (sl__gone(st, sl_output_encoded(o, NULL, NULL, 0, st->finish, carried)) < 0 || sl__complete(st) < 0) {
    sl__finish(st, reason);
    return;
  }
  snprintf(st->end_after, sizeof(st->end_after), "%s", reason);
  if (!st->flushing) sl__finish(st, reason); /* else once [DONE]'s tokens are taken */
}

/* Ms since what the gap and ttft propositions measure from: the last token
 * (or resume), or the start before the first token. */
static uint64_t sl__guard_idle_ms(const sl_stream_t *st) {
  uint64_t since = st->first_token ? st->t_guard : st->t_start;
  return (uv_hrtime() - since) / 1000000u;
}

static void sl__guard_arm(sl_stream_t *st) {
  if (!st->guard_init || st->finished || st->answered) return;
  uint64_t th = sl_guard_tick_ms(&st->gd.g, st->first_token);
  if (th == 0) return;
  uint64_t idle = sl__guard_idle_ms(st);
  uv_timer_start(&st->guard_timer, sl__on_guard_timer, th > idle ? th - idle : 0, 0);
}

static void sl__on_guard_timer(uv_timer_t *t) {
  sl_stream_t *st = t->data;
  if (st->finished || st->answered || st->guard_done || !st->guard_init) return;
  if (st->paused) { /* the client is slow, not the engine: measure from the resume */
    st->t_guard = uv_hrtime();
    sl__guard_arm(st);
    return;
  }
  if (sl_guard_tick(&st->gd.g, sl__guard_idle_ms(st), st->first_token) || sl__guard_notes(st)) {
    sl__guard_end(st, NULL, NULL, 0, NULL, 0);
    return;
  }
  sl__guard_arm(st);
}

/* ---- the pipeline's timed batches ---- */

static void sl__on_pipe_timer(uv_timer_t *t);

static void sl__pq_remove(sl_stream_t *st) {
  sl_streams_t *ss = st->ss;
  if (!st->pq_in) return;
  if (st->pq_prev) st->pq_prev->pq_next = st->pq_next; else ss->pq_head = st->pq_next;
  if (st->pq_next) st->pq_next->pq_prev = st->pq_prev; else ss->pq_tail = st->pq_prev;
  st->pq_prev = st->pq_next = NULL;
  st->pq_in = 0;
}

/* Keeps the stream's place in the queue of timed batches in step with its
 * pipeline: queued at the tail when text begins to wait (later than every
 * stream already there), out when it has none waiting. */
static void sl__pq_sync(sl_stream_t *st) {
  sl_streams_t *ss = st->ss;
  uint64_t wait = st->finished ? 0 : st->gd.pwait_ms;
  if (st->pq_in && st->pq_wait == wait) return;
  sl__pq_remove(st);
  if (wait == 0) return;
  st->pq_wait = wait;
  st->pq_in = 1;
  st->pq_prev = ss->pq_tail;
  if (ss->pq_tail) ss->pq_tail->pq_next = st; else ss->pq_head = st;
  ss->pq_tail = st;
  if (!uv_is_active((uv_handle_t *)&ss->pipe_timer)) {
    uint64_t due = sl_guarded_pipe_due(&st->gd), now = uv_now(ss->loop);
    uv_timer_start(&ss->pipe_timer, sl__on_pipe_timer, due > now ? due - now : 0, 0);
  }
}

/* A stream's batch fell due: on_chunk now, and what that made final goes
 * out. */
static void sl__pipe_tick(sl_stream_t *st) {
  if (st->finished || st->answered || st->guard_done || !st->guard_init) return;
  st->gd.now_ms = uv_now(st->ss->loop);
  uint64_t calls = st->gd.pcalls;
  int rc = sl_guarded_pipe_tick(&st->gd, st->r.stream ? &st->out : NULL);
  if (st->gd.pcalls != calls && st->tr) sl_transcript_tick(st->tr, sl__t(st));
  if (rc == 1) {
    sl__guard_end(st, NULL, NULL, 0, NULL, 0);
    return;
  }
  if (rc == 0 && st->r.stream) rc = sl_output_flush(&st->out);
  if (sl__gone(st, rc) < 0) {
    sl_counter_inc(st->ss->counters, SL_C_CANCELS);
    sl__set_error(st, "client went away");
    sl__finish(st, "client_cancel");
    return;
  }
  if (sl__guard_notes(st)) sl__guard_end(st, NULL, NULL, 0, NULL, 0);
}

/* One timer for every stream's timed batch: those due now, in order. */
static void sl__on_pipe_timer(uv_timer_t *t) {
  sl_streams_t *ss = (sl_streams_t *)((char *)t - offsetof(sl_streams_t, pipe_timer));
  uint64_t now = uv_now(ss->loop);
  while (ss->pq_head != NULL) {
    sl_stream_t *st = ss->pq_head;
    uint64_t due = sl_guarded_pipe_due(&st->gd);
    if (due > now) {
      uv_timer_start(&ss->pipe_timer, sl__on_pipe_timer, due - now, 0);
      return;
    }
    sl__pq_remove(st);
    sl__pipe_tick(st);
    if (!st->finished) sl__pq_sync(st); /* text came in the meantime: it waits anew */
  }
}

/* A native engine names no id and no creation time (and TGI no model):
 * the chunks sluice encodes for it get the request's id, the time of the
 * first event and the model the client asked for. */
static void sl__native_meta(sl_stream_t *st) {
  sl_output_t *o = &st->out;
  if (o->id[0] == '\0') snprintf(o->id, sizeof(o->id), "%s-%s", st->r.chat ? "chatcmpl" : "cmpl", st->id);
  if (!o->created) o->created = (int64_t)time(NULL);
  if (o->model[0] == '\0') {
    size_t w = sl_json_escape(o->model, sizeof(o->model) - 1, st->r.model, strlen(st->r.model));
    o->model[w == (size_t)-1 ? 0 : w] = '\0';
  }
}

/* One event from the engine.  A streamed event is appended to the output
 * stage's batch; sl__on_read_end sends the batch.  Returns nonzero to stop
 * decoding (sl__on_event_outer tells why). */
static int sl__on_event(void *ud, const sl_event_t *ev, sl_chunk_t *chunk) {
  sl_stream_t *st = ud;
  if (st->finished) return 1;
  if (st->answered) return 0; /* after [DONE]: let the engine finish its body */
  st->read_events++;
  if (st->tr) sl_transcript_event(st->tr, sl__t(st), ev->raw.p, ev->raw.n);
  if (ev->kind == SL_EV_DONE) {
    st->saw_done = 1;
    if (!st->first_token) sl__first_token(st); /* an empty answer is still an answer */
    if (st->r.stream) sl_output_drop_held(&st->out); /* a lone role chunk says nothing */
    if (st->guard_init && st->gd.g.set) {
      /* The text ended: what was held goes out, or a property the
       * finished trace violates ends the stream. */
      int rc = sl_guarded_flush(&st->gd, st->r.stream ? &st->out : NULL);
      if (rc == 1) {
        sl__guard_end(st, NULL, NULL, 0, NULL, 0);
        return 1;
      }
      if (sl__gone(st, rc) < 0) return 1;
      if (sl__guard_notes(st)) {
        sl__guard_end(st, NULL, NULL, 0, NULL, 0);
        return 1;
      }
    }
    return sl__complete(st) < 0;
  }
  if (ev->kind == SL_EV_ERROR) {
    sl_counter_inc(st->ss->counters, SL_C_ERR_UPSTREAM_ERROR_EVENT);
    sl__set_error(st, "engine %s reported an error: %.*s", st->ep->name, (int)ev->err_message.n,
                  ev->err_message.p);
    return 1; /* handled by sl__on_event_outer */
  }
  sl_output_note_meta(&st->out, ev);
  if (st->ep->pool->adapter->native) {
    sl__native_meta(st);
    if (st->r.stream && st->r.chat && !st->first_token && st->out.nheld == 0) {
      /* Native engines send no role chunk; OpenAI's streams begin with
       * one, held like an engine's until the first token. */
      sl_oai_meta_t m;
      sl_output_meta(&st->out, &m);
      size_t w = sl_oai_encode_chunk(st->enc, sizeof(st->enc), &m, "assistant", "", 0, SL_FINISH_NONE);
      if (w != (size_t)-1) sl_output_hold(&st->out, st->enc, w, NULL, 0);
    }
  }
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
      return sl__gone(st, sl_output_event(&st->out, ev->raw.p, ev->raw.n, chunk, 0)) < 0;
    return 0;
  }
  /* A token is text, a tool-call fragment, reasoning or a finish; the role
   * chunk's empty content ("") is not. */
  int has_content = (ev->has_text && ev->text.n > 0) || ev->n_tool_calls > 0 ||
                    (ev->has_reasoning && ev->reasoning.n > 0);
  int token = has_content || ev->finish != SL_FINISH_NONE;
  if (!token && !st->first_token) {
    /* Role-only chunk: hold it back until a token comes from the same
     * engine (a retry drops it with the attempt). */
    if (st->r.stream && st->out.nheld == 0) {
      size_t n;
      sl_chunk_t *pin = chunk;
      const char *p = sl__event_bytes(st, ev, &pin, &n);
      if (p == NULL) return 1;
      sl_output_hold(&st->out, p, n, pin, 0);
    }
    return 0;
  }
  if (ev->finish != SL_FINISH_NONE) st->finish = ev->finish;
  if (!st->first_token) sl__first_token(st);
  if (has_content) {
    uint64_t now = uv_hrtime();
    /* The gap since this stream's previous token feeds the endpoint's
     * timing dynamics (registry.h), unless a backpressure pause lies in it. */
    if (st->t_last != 0 && st->pauses == st->gap_pauses) sl_endpoint_gap(st->ep, sl__ms(now - st->t_last));
    st->gap_pauses = st->pauses;
    st->t_last = st->t_guard = now;
    st->tokens_received++;
    sl_counter_inc(st->ss->counters, SL_C_TOKENS_RECEIVED);
  }
  int guarded = st->guard_init && st->gd.g.set != NULL;
  if (guarded) st->gd.now_ms = uv_now(st->ss->loop);
  if (guarded && sl_guarded_judge(&st->gd, ev, has_content)) {
    /* A guard fired on this event: a stop or a budget lets (part of) it
     * through, the others do not. */
    sl_guard_kind_t k = st->gd.g.verdict.kind;
    size_t n = 0;
    const char *p = NULL;
    sl_chunk_t *pin = chunk;
    if (!st->r.stream) {
      if (k == SL_GUARD_STOP || k == SL_GUARD_BUDGET || k == SL_GUARD_REDACT) sl_assembly_add(&st->asm_, ev);
    } else {
      if (st->out.nheld > 0 && sl__gone(st, sl_output_release(&st->out)) < 0) return 1;
      p = sl__event_bytes(st, ev, &pin, &n);
      if (p == NULL) n = 0;
    }
    sl__guard_end(st, ev, p, n, pin, has_content ? 1 : 0);
    return 1;
  }
  if (guarded) {
    if (sl__guard_notes(st)) {
      sl__guard_end(st, NULL, NULL, 0, NULL, 0);
      return 1;
    }
    if (has_content && !uv_is_active((uv_handle_t *)&st->guard_timer)) sl__guard_arm(st);
    if (st->gd.pipe != NULL) sl__pq_sync(st);
  }
  if (!st->r.stream) {
    sl_assembly_add(&st->asm_, ev);
    return 0;
  }
  if (st->out.nheld > 0 && sl__gone(st, sl_output_release(&st->out)) < 0) return 1;
  size_t n;
  sl_chunk_t *pin = chunk;
  const char *p = sl__event_bytes(st, ev, &pin, &n);
  if (p == NULL) return 1;
  if (guarded && st->gd.text)
    return sl__gone(st, sl_guarded_relay(&st->gd, &st->out, ev, p, n, pin, has_content ? 1 : 0)) < 0;
  return sl__gone(st, sl_output_event(&st->out, p, n, pin, has_content ? 1 : 0)) < 0;
}

/* The events of one upstream read were all delivered: the output stage
 * sends them in one write, and the one watermark test decides whether to
 * stop reading the engine. */
static void sl__on_read_end(void *ud) {
  sl_stream_t *st = ud;
  if (st->finished || st->read_events == 0) return;
  st->read_events = 0;
  if (st->answered) return;
  if (st->r.stream && sl__gone(st, sl_output_flush(&st->out)) < 0) {
    sl_counter_inc(st->ss->counters, SL_C_CANCELS);
    sl__set_error(st, "client went away");
    sl__finish(st, "client_cancel");
    return;
  }
  sl__arm_idle(st);
  if (!st->paused && st->up != NULL && st->r.stream && sl_output_over_high(&st->out)) {
    st->paused = 1;
    st->t_paused = uv_hrtime();
    sl_upstream_pause(st->up);
    uv_timer_stop(&st->timer); /* a paused engine is not idle */
    sl_counter_inc(st->ss->counters, SL_C_UPSTREAM_PAUSES);
    if (st->pauses++ == 0) /* the first pause tells the story; the log line has the count */
      sl_narrate_push(st->ss->nar, SL_NAR_PAUSE, st->id, st->ep->name, st->r.model, NULL, st->attempts,
                      st->gen ? st->gen->id : 0, 0, (int64_t)st->tokens_received);
  }
}

/* Wrapper that sees why decoding stopped and acts after the read. */
static int sl__on_event_outer(void *ud, const sl_event_t *ev, sl_chunk_t *chunk) {
  sl_stream_t *st = ud;
  int stop = sl__on_event(ud, ev, chunk);
  if (st->finished || st->guard_done) return 1;
  if (!stop) return 0;
  /* Stop: an error event from the engine, or the client went away. */
  if (ev->kind == SL_EV_ERROR) {
    sl__stop_upstream(st);
    if (!st->first_token) {
      st->error_status = 502;
      if (st->ep) sl__attempt_failed(st, st->ep, 0);
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
  static const char *const outcome[] = {
      [SL_UP_OK] = "ok", [SL_UP_STATUS] = "http_status", [SL_UP_CONNECT] = "connect", [SL_UP_PROTOCOL] = "protocol",
      [SL_UP_RESET] = "reset", [SL_UP_STALE] = "stale"};
  unsigned ri = (unsigned)end->result;
  sl__trace_attempt_end(st, ri < sizeof(outcome) / sizeof(outcome[0]) && outcome[ri] ? outcome[ri] : "failed",
                        end->status);
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
  int drop = 0; /* the engine said "not now": 429 or 503 */
  switch (end->result) {
    case SL_UP_OK:
      if (!end->is_sse) {
        sl_counter_inc(st->ss->counters, SL_C_ERR_UPSTREAM_PROTOCOL);
        sl__set_error(st, "engine %s answered a streaming request without %s", ep->name,
                      ep->pool->adapter->framing == SL_FRAMING_NDJSON ? "application/x-ndjson"
                                                                      : "text/event-stream");
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
      if (sl__status_is_refusal(end->status) && !st->out.headers_sent && st->req != NULL) {
        /* The engine refused the request itself: retrying elsewhere will not
         * help, and its status is the client's answer. */
        sl_reply_error(st->req, end->status, "invalid_request_error", "upstream_rejected", NULL, "%s", st->error);
        st->req = st->out.req = NULL;
        st->answered = 1;
        sl__finish(st, "upstream_rejected");
        return;
      }
      if (end->status == 429 || end->status == 503) {
        /* Not now: the limit is cut, the attempt goes elsewhere, and when
         * every engine says so the client is told when to come back. */
        drop = end->status;
        sl_counter_inc(st->ss->counters, drop == 429 ? SL_C_UPSTREAM_RATE_LIMITED : SL_C_UPSTREAM_UNAVAILABLE);
        if (drop == 429) st->refused++;
        if (end->retry_after_ms > st->retry_after_ms) st->retry_after_ms = end->retry_after_ms;
      }
      break;
    }
    case SL_UP_CONNECT:
      sl_counter_inc(st->ss->counters, SL_C_ERR_UPSTREAM_CONNECT);
      sl__set_error(st, "%s", end->message ? end->message : "connect failed");
      if (!st->first_token) {
        /* Nothing reached the engine: it is down (restarting, say).  It
         * takes no streams until a health check passes again, and the
         * request, which it never saw, waits for room elsewhere or in the
         * queue without spending an attempt. */
        if (ep && sl_endpoint_probe(ep, 0))
          sl_narrate_push(st->ss->nar, SL_NAR_NOT_READY, st->id, ep->name, NULL, st->error, 0, 0, 0, 0);
        if (ep) sl_endpoint_failed(ep, uv_hrtime());
        st->attempts--;
        sl__try_now(st);
        return;
      }
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
  if (ep) sl__attempt_failed(st, ep, drop);
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
  if (st->answered && st->paused) {
    /* The body's end may sit unread behind a slow client: wait for it. */
    uv_timer_start(t, sl__on_deadline, st->deadline_ms, 0);
    return;
  }
  if (st->answered) {
    /* The client has its whole answer; the engine did not end its body
     * within the grace: its connection is closed (not reused), and the
     * stream ends as it was answered. */
    sl__stop_upstream(st);
    if (!st->flushing) sl__finish(st, st->end_after[0] ? st->end_after : "complete");
    return;
  }
  sl_counter_inc(st->ss->counters, SL_C_ERR_UPSTREAM_TIMEOUT);
  sl__trace_attempt_end(st, "timeout", 0);
  if (!st->first_token) {
    sl__set_error(st, "engine %s sent no token within %" PRIu64 " ms", st->ep ? st->ep->name : "-",
                  cfg->first_token_timeout_ms);
    if (st->ep) sl__attempt_failed(st, st->ep, -1);
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
  sl_output_t *o = &st->out;
  if (sl__gone(st, sl_output_static(o, ": keep-alive\n\n", 14)) < 0 || sl__gone(st, sl_output_flush(o)) < 0) {
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
  st->req = st->out.req = NULL;
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
  sl_output_written(&st->out, queued);
  if (!st->flushing || sl_output_unsettled(&st->out) > 0) return;
  sl__flush_end(st); /* ends the request: no more events come */
  if (st->up == NULL) /* else when the engine's response ends */
    sl__finish(st, st->end_after[0] ? st->end_after : "complete");
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
  sl_output_drop_held(&st->out); /* the next attempt's engine sends its own role chunk */
  if (st->attempts >= cfg->max_attempts || ss->draining) {
    if (st->refused > 0 && st->refused == st->attempts) {
      /* Every engine tried said 429: the client is told so, with the
       * longest Retry-After they gave. */
      sl__set_error(st, "every engine tried is rate limited (%d attempts)%s", st->attempts,
                    st->retry_after_ms >= 0 ? "; retry after the time given" : "");
      sl__fail(st, 429, "rate_limit_error", "rate_limited");
      return;
    }
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

/* ---- admission ----
 *
 * A request that finds no endpoint with room under its limit (or finds
 * others waiting before it, or stream buffers over their budget) waits in
 * the queue of its home pool: strict bands by priority, FIFO (or earliest
 * deadline) inside one, until its deadline, measured from its arrival.
 * Room appears when a stream leaves an endpoint, a limit rises, an
 * endpoint becomes ready or a cooldown ends; each of those kicks the
 * queues, which place their heads while there is room.  A head that
 * cannot go holds its queue (strict order).  The stream's deadline timer
 * doubles as the queue deadline: an attempt is not running meanwhile. */

/* The size the request needs: the prompt estimated at 4 characters a token
 * (the common rule of thumb for English BPE vocabularies; sluice has no
 * tokenizer) plus the max tokens asked for. */
static int64_t sl__need(const sl_stream_t *st) {
  return (int64_t)((st->r.prompt_chars + 3) / 4) + st->r.max_tokens;
}

/* The prefilter's candidates that have room under their limits. */
static int sl__candidates(sl_stream_t *st, sl_candidate_t *cands, int cap, int *cause, char *reason,
                          size_t reasonlen) {
  int n = sl_placement_prefilter(st->ss->reg, st->r.model, sl__need(st), uv_hrtime(), cands, cap, cause, reason,
                                 reasonlen);
  int k = 0;
  for (int i = 0; i < n; i++)
    if (cands[i].ep->inflight < cands[i].ep->limit) cands[k++] = cands[i];
  if (n > 0 && k == 0) {
    *cause = SL_PLACE_FULL;
    snprintf(reason, reasonlen, "every ready endpoint serving model \"%.160s\" is at its concurrency limit", st->r.model);
  }
  return k;
}

/* The pool whose queue the request waits in: the first (in the config's
 * order) that serves its model with a context large enough, else the first
 * that serves it; -1 for none. */
static int sl__home_pool(const sl_stream_t *st) {
  const sl_registry_t *reg = st->ss->reg;
  int64_t need = sl__need(st);
  int any = -1;
  for (int i = 0; i < reg->npools; i++) {
    if (!sl_pool_serves(&reg->pools[i], st->r.model)) continue;
    if (any < 0) any = i;
    int64_t ctx = reg->pools[i].cfg->context_tokens;
    if (!(need > 0 && ctx > 0 && need > ctx)) return i;
  }
  return any;
}

size_t sl_relay_stream_memory(const sl_streams_t *ss) { return ss->chunks->in_use * ss->chunks->chunk_size; }

static int sl__over_memory(const sl_streams_t *ss) {
  return ss->cfg->stream_memory_budget > 0 && sl_relay_stream_memory(ss) >= ss->cfg->stream_memory_budget;
}

uint64_t sl_relay_retry_after_ms(const sl_streams_t *ss, int pool) {
  if (pool < 0 || pool >= ss->reg->npools) return 1000;
  const sl_pool_t *p = &ss->reg->pools[pool];
  /* What waits now, plus this request, at the rate the pool's streams
   * ended lately; a second when that rate is not known yet. */
  uint64_t ms = p->drain_per_s > 0 ? (uint64_t)((double)(p->queued + 1) * 1000.0 / p->drain_per_s) : 1000;
  if (ms < 100) ms = 100;
  if (ms > 600000) ms = 600000;
  return ms;
}

/* The earliest end of a cooldown among the ready endpoints serving model
 * (uv_hrtime), or 0. */
static uint64_t sl__cooling_until(const sl_streams_t *ss, const char *model) {
  uint64_t best = 0;
  for (int i = 0; i < ss->reg->npools; i++) {
    const sl_pool_t *p = &ss->reg->pools[i];
    if (!sl_pool_serves(p, model)) continue;
    for (int j = 0; j < p->neps; j++)
      if (p->eps[j].ready && !p->eps[j].draining && p->eps[j].cooldown_until > 0 &&
          sl_endpoint_serves(&p->eps[j], model) && (best == 0 || p->eps[j].cooldown_until < best))
        best = p->eps[j].cooldown_until;
  }
  return best;
}

static void sl__queue_narrate(sl_stream_t *st, const char *how, uint64_t waited_ns) {
  int pool = st->qpool >= 0 ? st->qpool : 0;
  sl_narrate_push(st->ss->nar, SL_NAR_QUEUE, st->id, NULL, st->r.model, how, st->attempts,
                  st->gen ? st->gen->id : 0, sl__ms(waited_ns), st->ss->reg->pools[pool].queued);
}

/* Takes the stream out of its queue (if it is in one). */
static void sl__dequeue(sl_stream_t *st) {
  if (!st->qn.queued) return;
  sl_streams_t *ss = st->ss;
  sl_admq_remove(&ss->queues[st->qpool], &st->qn);
  ss->nqueued--;
  ss->reg->pools[st->qpool].queued--;
  sl_counter_dec(ss->counters, SL_C_QUEUE_WAITING);
  st->queue_ns += uv_hrtime() - st->t_queued;
  if (st->trace.t_queue_end == 0) st->trace.t_queue_end = uv_hrtime();
  uv_timer_stop(&st->timer);
}

static void sl__on_queue_deadline(uv_timer_t *t) {
  sl_stream_t *st = t->data;
  if (st->finished || !st->qn.queued) return;
  sl_streams_t *ss = st->ss;
  int pool = st->qpool;
  uint64_t waited = uv_hrtime() - st->t_queued;
  sl__dequeue(st);
  sl_counter_inc(ss->counters, SL_C_QUEUE_TIMEOUTS);
  sl__queue_narrate(st, "timed out", waited);
  st->retry_after_ms = (int64_t)sl_relay_retry_after_ms(ss, pool);
  sl__set_error(st, "no endpoint of pool %s had room for the request within its queue deadline of %" PRIu64 " ms",
                ss->cfg->pools[pool].name, ss->cfg->pools[pool].queue_timeout_ms);
  sl__fail(st, 503, "service_unavailable", "queue_timeout");
}

/* The request waits in pool's queue (cause and reason: why it cannot go
 * now), or is refused when it may not wait. */
static void sl__enqueue(sl_stream_t *st, int pool, int cause, const char *reason) {
  sl_streams_t *ss = st->ss;
  if (pool < 0) {
    sl_counter_inc(ss->counters, SL_C_ERR_NO_ENDPOINT);
    sl__set_error(st, "%s", reason);
    sl__fail(st, 503, "service_unavailable", "no_ready_endpoint");
    return;
  }
  const sl_pool_config_t *pc = &ss->cfg->pools[pool];
  uint64_t now = uv_hrtime(), deadline = st->t_start + pc->queue_timeout_ms * 1000000ull;
  if (pc->queue_size == 0 || now >= deadline) {
    /* It may not wait (no queue, or its deadline passed): the answer it
     * had before there were queues. */
    if (st->attempts > 0 && st->error_status) {
      sl__fail(st, st->error_status, "upstream_error", "upstream_failed");
      return;
    }
    sl__set_error(st, "%s", reason);
    st->retry_after_ms = (int64_t)sl_relay_retry_after_ms(ss, pool);
    if (cause == SL_PLACE_NOT_READY || cause == SL_PLACE_COOLING) {
      sl_counter_inc(ss->counters, SL_C_ERR_NO_ENDPOINT);
      sl__fail(st, 503, "service_unavailable", "no_ready_endpoint");
    } else {
      sl_counter_inc(ss->counters, SL_C_QUEUE_FULL);
      sl__fail(st, 503, "service_unavailable", pc->queue_size == 0 ? "overloaded" : "queue_timeout");
    }
    return;
  }
  st->qpool = pool;
  if (sl_admq_push(&ss->queues[pool], &st->qn, st->r.priority, deadline) < 0) {
    sl_counter_inc(ss->counters, SL_C_QUEUE_FULL);
    sl__queue_narrate(st, "refused: queue full", 0);
    st->retry_after_ms = (int64_t)sl_relay_retry_after_ms(ss, pool);
    sl__set_error(st, "pool %s is overloaded: its queue holds %d requests already (%s)", pc->name, pc->queue_size,
                  reason);
    sl__fail(st, 503, "service_unavailable", "queue_full");
    return;
  }
  st->t_queued = now;
  if (st->trace.t_queue_start == 0) st->trace.t_queue_start = now;
  ss->nqueued++;
  ss->reg->pools[pool].queued++;
  sl_counter_inc(ss->counters, SL_C_QUEUED);
  sl_counter_inc(ss->counters, SL_C_QUEUE_WAITING);
  uv_timer_start(&st->timer, sl__on_queue_deadline, (deadline - now + 999999) / 1000000, 0);
  if (cause == SL_PLACE_NOT_READY && ss->on_need) ss->on_need(ss->need_ud, pool, st->r.model);
  sl_relay_kick(ss);
}

/* Runs the queues: each places its head while there is room for it. */
static void sl__on_kick(uv_timer_t *t) {
  sl_streams_t *ss = t->data;
  uint64_t cool = 0;
  int memory = 0;
  ss->kicking = 1;
  ss->kick_again = 0;
  for (int p = 0; p < ss->reg->npools && ss->nqueued > 0; p++) {
    sl_admq_node_t *node;
    while ((node = sl_admq_peek(&ss->queues[p])) != NULL) {
      if (sl__over_memory(ss)) {
        memory = 1;
        break;
      }
      sl_stream_t *st = SL__STREAM_OF(node);
      sl_candidate_t cands[64];
      char reason[256];
      int cause = SL_PLACE_OK;
      if (sl__candidates(st, cands, 64, &cause, reason, sizeof(reason)) == 0) {
        if (cause == SL_PLACE_NOT_READY && ss->on_need) ss->on_need(ss->need_ud, p, st->r.model);
        if (cause == SL_PLACE_COOLING) {
          uint64_t c = sl__cooling_until(ss, st->r.model);
          if (c != 0 && (cool == 0 || c < cool)) cool = c;
        }
        break;
      }
      uint64_t waited = uv_hrtime() - st->t_queued;
      sl__dequeue(st);
      sl_pool_t *pool = &ss->reg->pools[p];
      pool->wait_ms = pool->wait_ms == 0 ? sl__ms(waited) : pool->wait_ms + 0.2 * (sl__ms(waited) - pool->wait_ms);
      sl_counter_inc(ss->counters, SL_C_QUEUE_PLACED);
      sl__queue_narrate(st, "placed", waited);
      st->from_queue = 1;
      sl__try_now(st);
      st->from_queue = 0;
    }
  }
  ss->kicking = 0;
  if (ss->kick_again) {
    uv_timer_start(&ss->kick_timer, sl__on_kick, 0, 0);
  } else if (memory) {
    /* Buffers are given back as clients read, with no event that says
     * the total fell under the budget: look again shortly. */
    uv_timer_start(&ss->kick_timer, sl__on_kick, 20, 0);
  } else if (cool != 0) {
    uint64_t now = uv_hrtime();
    uv_timer_start(&ss->kick_timer, sl__on_kick, cool > now ? (cool - now) / 1000000 + 1 : 0, 0);
  }
}

void sl_relay_kick(sl_streams_t *ss) {
  if (ss->kick_timer.data != ss) return; /* admission not set up */
  if (ss->kicking) {
    ss->kick_again = 1;
    return;
  }
  if (!uv_is_closing((uv_handle_t *)&ss->kick_timer)) uv_timer_start(&ss->kick_timer, sl__on_kick, 0, 0);
}

void sl_relay_admission_init(sl_streams_t *ss) {
  for (int i = 0; i < SL_MAX_POOLS; i++)
    sl_admq_init(&ss->queues[i], ss->cfg->queue_edf, i < ss->cfg->npools ? (size_t)ss->cfg->pools[i].queue_size : 0);
  uv_timer_init(ss->loop, &ss->kick_timer);
  ss->kick_timer.data = ss;
}

void sl_relay_admission_free(sl_streams_t *ss) {
  for (int i = 0; i < SL_MAX_POOLS; i++) sl_admq_free(&ss->queues[i]);
}

int sl_relay_slow_clients(sl_streams_t *ss, sl_generation_t *gen, uint64_t threshold_ms) {
  if (threshold_ms == 0 || gen == NULL || !sl_generation_phase_ready(gen, SL_PHASE_SLOW_CLIENT)) return 0;
  uint64_t now = uv_hrtime();
  int n = 0;
  for (sl_stream_t *st = ss->head, *next; st != NULL; st = next) {
    next = st->next; /* a cancelled stream is freed later, when its handles close */
    if (st->finished || !st->paused || st->ep == NULL) continue;
    double paused = sl__ms(now - st->t_paused);
    if (paused < (double)threshold_ms) continue;
    sl_ffi_slow_client_t c = {
        .id = st->id,
        .endpoint = st->ep->name,
        .pool = st->ep->pool->cfg->name,
        .tenant = st->r.tenant ? st->r.tenant->name : NULL,
        .queued = st->ep->pool->queued,
        .priority = st->r.priority,
        .paused_ms = paused,
        .age_ms = sl__ms(now - st->t_start),
        .tokens = (int64_t)st->tokens_received,
        .tokens_written = (int64_t)st->out.tokens_written,
        .pinned_bytes = st->acct ? (int64_t)st->acct->chunks * (int64_t)ss->chunks->chunk_size : 0,
    };
    int cancel = 0;
    char reason[256];
    if (sl_generation_slow_client(gen, &c, &cancel, reason, sizeof(reason)) < 0) {
      sl_counter_inc(ss->counters, SL_C_LIMIT_RULE_ERRORS);
      char safe[320];
      fprintf(ss->log, "sluice: the limit rule's slow_client failed (stream kept): %s\n",
              sl_log_redact(ss->nar, reason, safe, sizeof(safe)));
      continue;
    }
    if (!cancel) continue;
    sl_counter_inc(ss->counters, SL_C_SLOW_CLIENTS_CANCELLED);
    sl__set_error(st, "the client read too slowly: it held the engine back for %.0f ms (%s)", paused, reason);
    sl__fail(st, 503, "server_error", "slow_client");
    n++;
  }
  return n;
}

/* Places the request and sends it (the placement phase), or queues it. */
static void sl__try_now(sl_stream_t *st) {
  sl_streams_t *ss = st->ss;
  const sl_config_t *cfg = ss->cfg;
  if (st->finished) return;
  sl_candidate_t cands[64];
  char reason[256];
  int cause = SL_PLACE_OK;
  int n = sl__candidates(st, cands, 64, &cause, reason, sizeof(reason));
  if (n == 0 && cause == SL_PLACE_TOO_LARGE && st->attempts == 0) {
    sl_counter_inc(st->ss->counters, SL_C_ERR_BAD_REQUEST);
    sl__set_error(st, "%s", reason);
    sl__fail(st, 400, "invalid_request_error", "context_length_exceeded");
    return;
  }
  /* No room now, or others wait before it: it waits in its pool's queue
   * (a request that comes later may not pass those waiting). */
  int pool = sl__home_pool(st);
  int over = sl__over_memory(ss);
  if (n == 0 || over || (!st->from_queue && !st->dispatched && pool >= 0 && ss->queues[pool].n > 0)) {
    if (n > 0 && over) {
      snprintf(reason, sizeof(reason), "stream buffers use %zu bytes of a budget of %zu", sl_relay_stream_memory(ss),
               cfg->stream_memory_budget);
      sl_counter_inc(ss->counters, SL_C_MEMORY_WAITS);
    } else if (n > 0) {
      snprintf(reason, sizeof(reason), "requests queued before it");
    }
    sl__enqueue(st, pool, cause, reason);
    return;
  }
  sl_trace_attempt_t *ta = sl__trace_attempt(st);
  int k = sl__place(st, cands, n);
  sl_endpoint_t *ep = cands[k].ep;
  if (ta) {
    ta->endpoint = ep->name;
    ta->pool = ep->pool->cfg->name;
  }
  st->attempts++;
  if (st->ntried < SL_MAX_TRIED) st->tried[st->ntried++] = ep->id;
  st->ep = ep;
  if (sl__guard_setup(st, ep) < 0) {
    sl__fail(st, 500, "server_error", "guard_setup");
    return;
  }
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
    if (rc == SL_EINVAL) {
      /* The client's request is not one this engine's API can carry
       * (chat on a prompt-only native route, n > 1, an image part): the
       * client's to change, and the same on every endpoint of the pool. */
      sl__set_error(st, "%s", why);
      sl__trace_attempt_end(st, "adapter", 400);
      sl__fail(st, 400, "invalid_request_error", "unsupported_by_adapter");
      return;
    }
    sl__set_error(st, "could not build the request for %s (adapter \"%s\"): %s", ep->name, ad->name, why);
    sl__trace_attempt_end(st, "adapter", 0);
    st->error_status = 502;
    sl__retry(st);
    return;
  }
  ep->inflight++;
  ep->requests++;
  ep->w_started++;
  if (ep->inflight > ep->w_max_inflight) ep->w_max_inflight = ep->inflight;
  st->ep_counted = 1;
  st->dispatched = 1;
  st->t_dispatch = uv_hrtime();
  rc = sl_upstream_request(ss->up, ep, er.method, er.path, er.headers, er.body, er.body_len, &sl__handler, st,
                           st->acct, &st->up);
  sl_engine_req_free(&er); /* sl_upstream_request copied what it sends */
  if (rc < 0) {
    st->up = NULL;
    sl__release_endpoint(st);
    sl__set_error(st, "could not start a request to %s: %s", ep->name, sl_strerror(rc));
    sl__trace_attempt_end(st, "connect", 0);
    sl__attempt_failed(st, ep, 0);
    st->error_status = 502;
    sl__retry(st);
    return;
  }
  if (ta) ta->t_sent = uv_hrtime();
  st->last_event_ms = uv_now(ss->loop);
  st->deadline_ms = cfg->first_token_timeout_ms;
  uv_timer_start(&st->timer, sl__on_deadline, cfg->first_token_timeout_ms, 0);
}

/* The header lines every attempt forwards, whatever the engine: the
 * request id and x-sim-* headers (fault injection for the simulated
 * engine); never the client's Authorization.  The adapter puts its own
 * (Content-Type, Accept) before them. */
static char *sl__forward_headers(const sl_http_req_t *req, const char *id) {
  size_t cap = 256 + 80; /* the id, and room for a traceparent line (sl__trace_start) */
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

/* ---- traces ---- */

static void sl__hex(char *out, const uint8_t *p, size_t n) {
  static const char d[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = d[p[i] >> 4];
    out[2 * i + 1] = d[p[i] & 15];
  }
}

static int sl__unhex(const char *s, uint8_t *out, size_t n) {
  int nonzero = 0;
  for (size_t i = 0; i < 2 * n; i++) {
    char c = s[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return -1; /* W3C: lowercase hex only */
    if (i % 2 == 0) out[i / 2] = (uint8_t)(v << 4);
    else out[i / 2] |= (uint8_t)v;
    nonzero |= v;
  }
  return nonzero ? 0 : -1; /* all zeros is invalid */
}

/* A random id (never all zero). */
static void sl__rand_id(sl_streams_t *ss, uint8_t *out, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t x = sl__rand(ss);
    memcpy(out + i, &x, n - i < 8 ? n - i : 8);
  }
  out[0] |= 1;
}

/* The client's traceparent (W3C Trace Context, version 00: "00-" 32 hex
 * "-" 16 hex "-" 2 hex); an invalid one is ignored, as the spec says.  Then
 * the ids, and the traceparent line the engines get. */
static void sl__trace_start(sl_stream_t *st, const sl_http_req_t *req) {
  sl_streams_t *ss = st->ss;
  sl_trace_rec_t *t = &st->trace;
  const char *tp = sl_http_req_header(req, "traceparent");
  int have = 0;
  uint8_t flags = 1;
  if (tp != NULL && strlen(tp) >= 55 && tp[0] == '0' && tp[1] == '0' && tp[2] == '-' && tp[35] == '-' &&
      tp[52] == '-' && (tp[55] == '\0' || tp[55] == '-') && sl__unhex(tp + 3, t->trace_id, 16) == 0 &&
      sl__unhex(tp + 36, t->parent, 8) == 0) {
    uint8_t f;
    if (sl__unhex(tp + 53, &f, 1) == 0 || (tp[53] == '0' && tp[54] == '0')) {
      flags = tp[53] == '0' && tp[54] == '0' ? 0 : f;
      have = 1;
    }
  }
  if (!have) memset(t->parent, 0, sizeof(t->parent));
  t->sampled = have ? (flags & 1) : 1;
  st->traced = ss->on_trace != NULL && t->sampled;
  if (!have && !st->traced) return;
  if (!have) sl__rand_id(ss, t->trace_id, 16);
  sl__rand_id(ss, t->request_span, 8);
  /* The line every attempt forwards; its parent span is rewritten in place
   * per attempt (sl__trace_attempt) when sluice traces, else it is the
   * client's. */
  size_t n = strlen(st->fwd_headers);
  char *p = st->fwd_headers + n;
  memcpy(p, "traceparent: 00-", 16);
  sl__hex(p + 16, t->trace_id, 16);
  p[48] = '-';
  sl__hex(p + 49, t->parent, 8);
  p[65] = '-';
  p[66] = '0';
  p[67] = t->sampled ? '1' : '0';
  memcpy(p + 68, "\r\n", 3);
  st->tp_span_off = n + 49;
}

/* An attempt begins its placement: its ids, and the engine's parent. */
static sl_trace_attempt_t *sl__trace_attempt(sl_stream_t *st) {
  sl_trace_rec_t *t = &st->trace;
  if (!st->traced || t->nattempts >= SL_TRACE_ATTEMPTS) return NULL;
  sl_trace_attempt_t *a = &t->attempts[t->nattempts++];
  memset(a, 0, sizeof(*a));
  sl__rand_id(st->ss, a->span, 8);
  sl__rand_id(st->ss, a->place_span, 8);
  a->t_place = uv_hrtime();
  a->outcome = "ok";
  if (st->tp_span_off) sl__hex(st->fwd_headers + st->tp_span_off, a->span, 8);
  return a;
}

/* The current attempt ended (outcome NULL: keep what it says). */
static void sl__trace_attempt_end(sl_stream_t *st, const char *outcome, int status) {
  if (!st->traced || st->trace.nattempts == 0) return;
  sl_trace_attempt_t *a = &st->trace.attempts[st->trace.nattempts - 1];
  if (a->t_end != 0) return;
  a->t_end = uv_hrtime();
  if (outcome) a->outcome = outcome;
  if (status) a->http_status = status;
}

static uint64_t sl__unix(const sl_stream_t *st, uint64_t hr) {
  return hr ? (uint64_t)((int64_t)hr + st->ss->unix_offset_ns) : 0;
}

/* The stream ended: the record, in Unix time, to the exporter. */
static void sl__trace_end(sl_stream_t *st, const char *reason) {
  if (!st->traced || st->ss->on_trace == NULL) return;
  sl_trace_rec_t *t = &st->trace;
  sl__trace_attempt_end(st, NULL, 0);
  t->request_id = st->id;
  t->model = st->r.model;
  t->operation = st->r.chat ? "chat" : "text_completion";
  t->tenant = st->r.tenant ? st->r.tenant->name : NULL;
  t->end_reason = reason;
  t->error = st->error;
  t->finish_reason = st->finish != SL_FINISH_NONE ? sl_finish_name(st->finish) : NULL;
  t->stream = st->r.stream;
  t->max_tokens = st->r.max_tokens;
  t->prompt_tokens = st->has_usage ? st->prompt_tokens : -1;
  t->completion_tokens = st->has_usage ? st->completion_tokens : (int64_t)st->tokens_received;
  t->t_start = sl__unix(st, st->t_start);
  t->t_end = sl__unix(st, st->t_end);
  t->t_queue_start = sl__unix(st, t->t_queue_start);
  t->t_queue_end = sl__unix(st, t->t_queue_end ? t->t_queue_end : (t->t_queue_start ? st->t_end : 0));
  t->t_first_token = st->first_token ? sl__unix(st, st->t_first) : 0;
  if (t->t_queue_start) sl__rand_id(st->ss, t->queue_span, 8);
  if (t->t_first_token) sl__rand_id(st->ss, t->stream_span, 8);
  for (int i = 0; i < t->nattempts; i++) {
    sl_trace_attempt_t *a = &t->attempts[i];
    a->t_place = sl__unix(st, a->t_place);
    a->t_sent = sl__unix(st, a->t_sent);
    a->t_end = sl__unix(st, a->t_end);
  }
  st->ss->on_trace(st->ss->trace_ud, t);
}

void sl_relay_start(sl_streams_t *ss, sl_http_req_t *req, sl_request_t *r, sl_generation_t *gen) {
  sl_stream_t *st = sl_calloc(1, sizeof(*st));
  st->ss = ss;
  st->req = req;
  st->r = *r;
  r->body = NULL;
  r->extra_guards = NULL;
  st->t_start = uv_hrtime();
  st->qpool = -1;
  st->retry_after_ms = -1;
  st->acct = sl_pin_account_new();
  st->gen = sl_generation_acquire(gen);
  sl_output_init(&st->out, req, ss->chunks, st->acct, ss->counters, r->chat);
  snprintf(st->id, sizeof(st->id), "%s", r->id); /* decided at the door (api.c) */
  st->fwd_headers = sl__forward_headers(req, st->id);
  sl__trace_start(st, req);
  uv_timer_init(ss->loop, &st->timer);
  uv_timer_init(ss->loop, &st->hb_timer);
  uv_timer_init(ss->loop, &st->total_timer);
  uv_timer_init(ss->loop, &st->retry_timer);
  uv_timer_init(ss->loop, &st->guard_timer);
  st->timer.data = st->hb_timer.data = st->total_timer.data = st->retry_timer.data = st;
  st->guard_timer.data = st;
  st->handles = 5;
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
               : st->qn.queued ? "queued"
               : st->retry_pending ? "backoff"
               : !st->first_token ? "waiting"
               : st->paused ? "paused"
               : "streaming";
  out->placement = st->place_reason;
  out->gen = st->gen;
  out->tokens = st->tokens_received;
  out->tokens_written = st->out.tokens_written;
  out->age_ms = now > st->t_start ? sl__ms(now - st->t_start) : 0;
  out->ttft_ms = st->first_token ? sl__ms(st->t_first - st->t_start) : -1;
  out->attempts = st->attempts;
  out->stream = st->r.stream;
  out->guard = st->guard_name;
  out->held = st->gd.qn;
  out->tenant = st->r.tenant ? st->r.tenant->name : NULL;
  out->queued_ms = sl__ms(st->queue_ns + (st->qn.queued ? uv_hrtime() - st->t_queued : 0));
  out->priority = st->r.priority;
}
