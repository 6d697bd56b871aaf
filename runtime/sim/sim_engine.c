/* sim_engine.c: the simulated inference engine (see sim_engine.h and
 * docs/sim-engine.md).
 *
 * Each completion request gets one sl_sim_req_t with one libuv timer.  The
 * request runs as a small state machine driven by sl__pump(): it waits for a
 * slot (QUEUED), then generates (RUN) until its due time for the next token,
 * the split delay of a cut event, or the connection's drain (DRAIN); a
 * stalled request (STALLED) does nothing until the client leaves.  The pump
 * builds one event at a time into the engine's current pool chunk, keeps a
 * reference to it while the event's pieces go out, and writes every piece as
 * its own HTTP chunk with the chunk pinned, so no token allocates.
 *
 * Life of the per-request state: it is created by the handler, ends its HTTP
 * request exactly once (a response end, a reset, a failed write or the
 * server's on_abort), then closes its timer; the memory is freed in the
 * timer's close callback.  The engine is freed once its server has closed and
 * every request's timer has closed.
 */
#include "runtime/sim/sim_engine.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "runtime/base/alloc.h"
#include "runtime/base/chunk_pool.h"
#include "runtime/base/errors.h"
#include "runtime/http/http_server.h"
#include "runtime/upstream/oai.h"
#include "runtime/sim/sim_text.h"

#define SL_SIM_CHUNK_SIZE 8192  /* pool chunk bytes */
#define SL_SIM_CHUNK_KEEP 64    /* idle chunks kept for reuse */
#define SL_SIM_EVENT_MAX 2560   /* room reserved per event; the largest is well under it */
#define SL_SIM_PREFIX_MAX 1024  /* per-request event prefix (id, model escaped) */
#define SL_SIM_MAX_SPLITS 16    /* offsets in x-sim-split */
#define SL_SIM_BURST 256        /* events per pump before yielding to the loop */
#define SL_SIM_DEFAULT_FAULT_AT 3
#define SL_SIM_DEFAULT_DELAY_MS 5000.0

enum { SL_SIM_CHAT, SL_SIM_COMPLETION };

/* The wire format of a response, chosen by the route (wire-formats.md):
 * OpenAI's /v1 routes, llama.cpp's POST /completion (section 3), TGI's
 * POST /generate_stream (section 4), Ollama's POST /api/chat and
 * /api/generate (section 5).  The native routes always stream. */
enum { SL_SIM_FMT_OAI, SL_SIM_FMT_LCPP, SL_SIM_FMT_TGI, SL_SIM_FMT_OLLAMA };

enum { SL_SIM_QUEUED, SL_SIM_RUN, SL_SIM_DRAIN, SL_SIM_STALLED };

/* What the pump produces next. */
enum {
  SL_SIM_PH_ROLE,     /* chat role chunk (streaming chat only) */
  SL_SIM_PH_TOKENS,   /* content chunks, one per token */
  SL_SIM_PH_FINISH,   /* empty delta with finish_reason */
  SL_SIM_PH_USAGE,    /* choices:[] with usage (include_usage only) */
  SL_SIM_PH_DONE,     /* data: [DONE] */
  SL_SIM_PH_END,      /* terminating chunk: the normal end */
  SL_SIM_PH_CUT       /* terminating chunk after a fault: no finish, no [DONE] */
};

enum {
  SL_SIM_F_NONE,
  SL_SIM_F_STALL,
  SL_SIM_F_RESET,
  SL_SIM_F_GARBAGE,
  SL_SIM_F_GARBAGE_END,
  SL_SIM_F_SLOW_START,
  SL_SIM_F_STATUS,
  SL_SIM_F_ERROR_EVENT,
  SL_SIM_F_CLOSE,
  SL_SIM_F_HOLD_OPEN /* the whole answer and [DONE], then the body never ends */
};

typedef struct sl_sim_req_s sl_sim_req_t;

struct sl_sim_engine_s {
  uv_loop_t *loop;
  sl_http_server_t *server;  /* NULL once its close callback ran */
  sl_http_limits_t limits;
  sl_sim_config_t cfg;
  sl_chunk_pool_t pool;
  sl_chunk_t *cur;           /* chunk events are being packed into, or NULL */
  sl_sim_req_t *qhead, *qtail; /* requests waiting for a slot, FIFO */
  int nlive;                 /* requests whose timer has not closed yet */
  int healthy;               /* GET /health answers 200 (1) or 503 (0) */
  int refuse;                /* /sim/control "refuse": every completion is answered with this status (0 = none),
                                as an engine over its own limit does (429 and 503 carry Retry-After: 1) */
  int closing;               /* sl_sim_engine_close was called */
  int port;                  /* bound port */
  uint64_t seq;              /* completion requests ever seen; names ids and seeds */
  char last_traceparent[128];/* the traceparent header of the last completion request ("" = it had none), so a
                                test can see what a gateway forwards (/sim/stats "last_traceparent") */
  sl_sim_stats_t st;
  /* connections_accepted is the server's own total, offset so that a stats
   * reset zeroes it too, and kept once the server is gone */
  uint64_t accepted_base;
  void (*close_cb)(void *);
  void *close_ud;
};

struct sl_sim_req_s {
  sl_sim_engine_t *e;
  sl_http_req_t *req;        /* NULL once the HTTP request has ended */
  sl_sim_req_t *qnext;       /* queue link */
  uv_timer_t timer;          /* prefill, token gaps, split delays, yields */
  int state;                 /* SL_SIM_QUEUED, _RUN, _DRAIN or _STALLED */
  int in_slot;               /* holds one of the engine's slots */
  int queued;                /* on the engine's wait queue */
  int kind;                  /* SL_SIM_CHAT or SL_SIM_COMPLETION */
  int fmt;                   /* SL_SIM_FMT_*: the route's wire format */
  int stream;                /* SSE answer (1) or one JSON object (0) */
  int include_usage;         /* stream_options.include_usage */
  int stamp;                 /* append [t=<ns>] to every token */
  int phase;                 /* SL_SIM_PH_*: what comes next */
  int fault;                 /* SL_SIM_F_* from x-sim-fault */
  int fault_fired;           /* the fault has happened */
  uint64_t fault_at;         /* tokens before the fault */
  const char *finish;        /* "length" or "stop" */
  uint64_t ntokens;          /* tokens to produce */
  uint64_t sent;             /* tokens produced so far */
  uint64_t prompt_tokens;    /* prompt characters / 4 + 1 */
  uint64_t ttft_ns;          /* time from getting a slot to the first token */
  double itl_ns;             /* mean gap between tokens; 0 = as fast as possible */
  double jitter;             /* relative jitter of the gap */
  double wave_period;        /* tokens per cycle of the gaps' sine (0 = no wave) */
  double wave_amp;           /* its amplitude, a share of itl_ns */
  uint64_t due;              /* uv_hrtime at which the next token may go */
  sl_sim_rng_t text_rng, time_rng; /* separate, so timing never changes the text */
  /* current event, being written in pieces */
  sl_chunk_t *ev;            /* referenced while pieces remain, or NULL */
  uint32_t ev_off, ev_len;   /* the event's bytes in ev->data */
  uint32_t ev_pos;           /* bytes of it already written */
  int piece;                 /* next cut index */
  uint64_t piece_due;        /* uv_hrtime before which the next piece waits */
  uint32_t splits[SL_SIM_MAX_SPLITS]; /* x-sim-split offsets, ascending */
  int nsplits;
  uint64_t split_delay_ns;   /* x-sim-split-delay-ms between pieces */
  /* x-sim-script: the decoded token texts, back to back */
  char *script;              /* NULL when the text comes from the word list */
  uint32_t *script_off;      /* nscript + 1 offsets into script */
  uint64_t nscript;
  /* non-streaming: the text so far */
  char *text;
  size_t tlen, tcap;
  char id[40];               /* "chatcmpl-sim..." or "cmpl-sim..." */
  uint64_t created;          /* Unix seconds */
  char model[SL_SIM_MODEL_MAX]; /* as the request named it */
  size_t plen;               /* bytes used in prefix */
  char prefix[SL_SIM_PREFIX_MAX]; /* `data: {"id":...,"choices":[` */
};

/* ---- small output buffer with overflow detection ---- */

typedef struct {
  char *p;
  size_t cap, len; /* len may exceed cap: then the output did not fit */
} sl_sim_buf_t;

static void sl__bput(sl_sim_buf_t *b, const char *s, size_t n) {
  if (b->len < b->cap) memcpy(b->p + b->len, s, b->len + n <= b->cap ? n : b->cap - b->len);
  b->len += n;
}

static void sl__bputs(sl_sim_buf_t *b, const char *s) { sl__bput(b, s, strlen(s)); }

static void sl__bput_u64(sl_sim_buf_t *b, uint64_t v) {
  char tmp[24];
  int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
  sl__bput(b, tmp, (size_t)n);
}

/* The JSON escape of s (oai.h's); when it does not fit, what it would
 * take is still counted, byte by byte, as the buffer's length. */
static void sl__bput_esc(sl_sim_buf_t *b, const char *s, size_t n) {
  size_t room = b->len < b->cap ? b->cap - b->len : 0;
  size_t w = sl_json_escape(b->p + (b->cap > b->len ? b->len : b->cap), room, s, n);
  if (w != (size_t)-1) {
    b->len += w;
    return;
  }
  char one[8];
  for (size_t i = 0; i < n; i++) sl__bput(b, one, sl_json_escape(one, sizeof(one), s + i, 1));
}

/* ---- responses outside the stream ---- */

/* An OpenAI-shaped error answer. */
static void sl__respond_error(sl_http_req_t *req, int status, const char *type, const char *code,
                              const char *param, const char *msg) {
  char body[1024];
  sl_sim_buf_t b = {body, sizeof(body), 0};
  sl__bputs(&b, "{\"error\":{\"message\":\"");
  sl__bput_esc(&b, msg, strlen(msg) > 600 ? 600 : strlen(msg));
  sl__bputs(&b, "\",\"type\":\"");
  sl__bputs(&b, type);
  sl__bputs(&b, "\",\"param\":");
  if (param != NULL) {
    sl__bputs(&b, "\"");
    sl__bput_esc(&b, param, strlen(param) > 128 ? 128 : strlen(param));
    sl__bputs(&b, "\"");
  } else {
    sl__bputs(&b, "null");
  }
  sl__bputs(&b, ",\"code\":");
  if (code != NULL) {
    sl__bputs(&b, "\"");
    sl__bputs(&b, code);
    sl__bputs(&b, "\"");
  } else {
    sl__bputs(&b, "null");
  }
  sl__bputs(&b, "}}");
  const char *extra = (status == 429 || status == 503) ? "Retry-After: 1\r\n" : NULL;
  sl_http_respond(req, status, "application/json", body, b.len <= b.cap ? b.len : b.cap, extra);
}

static void sl__respond_json(sl_http_req_t *req, int status, const char *body, size_t len) {
  sl_http_respond(req, status, "application/json", body, len, NULL);
}

/* ---- engine bookkeeping ---- */

static void sl__engine_maybe_done(sl_sim_engine_t *e) {
  if (!e->closing || e->server != NULL || e->nlive > 0) return;
  if (e->cur != NULL) {
    sl_chunk_unref(e->cur);
    e->cur = NULL;
  }
  sl_chunk_pool_destroy(&e->pool);
  void (*cb)(void *) = e->close_cb;
  void *ud = e->close_ud;
  sl_free(e);
  if (cb != NULL) cb(ud);
}

static void sl__req_free(sl_sim_req_t *r) {
  if (r == NULL) return;
  sl_free(r->script);
  sl_free(r->script_off);
  sl_free(r->text);
  sl_free(r);
}

static void sl__req_freed(uv_handle_t *h) {
  sl_sim_req_t *r = h->data;
  sl_sim_engine_t *e = r->e;
  sl__req_free(r);
  e->nlive--;
  sl__engine_maybe_done(e);
}

static void sl__start(sl_sim_req_t *r);

/* Gives the request's slot to the oldest waiting request. */
static void sl__release_slot(sl_sim_req_t *r) {
  sl_sim_engine_t *e = r->e;
  if (r->queued) {
    sl_sim_req_t **pp = &e->qhead;
    sl_sim_req_t *prev = NULL;
    while (*pp != NULL && *pp != r) {
      prev = *pp;
      pp = &(*pp)->qnext;
    }
    if (*pp == r) {
      *pp = r->qnext;
      if (e->qtail == r) e->qtail = prev;
    }
    r->queued = 0;
    e->st.queued--;
  }
  if (!r->in_slot) return;
  r->in_slot = 0;
  e->st.active--;
  if (e->closing) return;
  sl_sim_req_t *next = e->qhead;
  if (next != NULL) {
    e->qhead = next->qnext;
    if (e->qhead == NULL) e->qtail = NULL;
    next->queued = 0;
    e->st.queued--;
    sl__start(next);
  }
}

/* Drops everything the request holds; its memory goes in the timer's close
 * callback.  The HTTP request must already have ended (r->req NULL). */
static void sl__destroy(sl_sim_req_t *r) {
  sl__release_slot(r);
  if (r->ev != NULL) {
    sl_chunk_unref(r->ev);
    r->ev = NULL;
  }
  uv_timer_stop(&r->timer);
  uv_close((uv_handle_t *)&r->timer, sl__req_freed);
}

/* The HTTP request ended on the server's side (write failed): the client is
 * gone. */
static void sl__gone(sl_sim_req_t *r) {
  r->req = NULL;
  if (!r->e->closing) r->e->st.client_closed_mid_stream++;
  sl__destroy(r);
}

static void sl__on_abort(sl_http_req_t *req) {
  sl_sim_req_t *r = req->data;
  sl__gone(r);
}

/* ---- timing ---- */

static void sl__on_timer(uv_timer_t *t);

static void sl__arm_ns(sl_sim_req_t *r, uint64_t delta_ns) {
  uint64_t ms = (delta_ns + 999999) / 1000000;
  uv_timer_start(&r->timer, sl__on_timer, ms, 0);
}

double sl_sim_gap(double itl, double jitter, double wave_period, double wave_amp, uint64_t k, double u) {
  double g = itl * (1.0 + jitter * u);
  if (wave_period > 0) g *= 1.0 + wave_amp * sin(2.0 * M_PI * (double)k / wave_period);
  return g > 0 ? g : 0;
}

/* The gap before the next token, whose index in the response is r->sent
 * (0 for the first), so every response starts the wave's cycle afresh. */
static uint64_t sl__next_gap_ns(sl_sim_req_t *r) {
  if (r->itl_ns <= 0) return 0;
  double u = sl__sim_rng_unit(&r->time_rng) * 2.0 - 1.0;
  return (uint64_t)sl_sim_gap(r->itl_ns, r->jitter, r->wave_period, r->wave_amp, r->sent, u);
}

/* ---- events ---- */

/* Writes the object head up to and including `"choices":[`: with event=1
 * the `data: ` line of a chunk, otherwise a whole (non-streamed) answer. */
static void sl__put_head(sl_sim_req_t *r, sl_sim_buf_t *b, int event) {
  int chat = r->kind == SL_SIM_CHAT;
  sl__bputs(b, event ? "data: {\"id\":\"" : "{\"id\":\"");
  sl__bputs(b, r->id);
  if (chat)
    sl__bputs(b, event ? "\",\"object\":\"chat.completion.chunk\",\"created\":"
                       : "\",\"object\":\"chat.completion\",\"created\":");
  else
    sl__bputs(b, "\",\"object\":\"text_completion\",\"created\":");
  sl__bput_u64(b, r->created);
  sl__bputs(b, ",\"model\":\"");
  sl__bput_esc(b, r->model, strlen(r->model));
  sl__bputs(b, chat ? "\",\"system_fingerprint\":\"fp_sluice_sim\",\"choices\":[" : "\",\"choices\":[");
}

/* Returns a chunk with at least SL_SIM_EVENT_MAX free bytes at its end. */
static sl_chunk_t *sl__room(sl_sim_engine_t *e) {
  if (e->cur != NULL && e->cur->cap - e->cur->len < SL_SIM_EVENT_MAX) {
    sl_chunk_unref(e->cur);
    e->cur = NULL;
  }
  if (e->cur == NULL) e->cur = sl_chunk_get(&e->pool);
  return e->cur;
}

/* Opens an event in the current chunk. */
static sl_sim_buf_t sl__ev_begin(sl_sim_req_t *r) {
  sl_chunk_t *c = sl__room(r->e);
  sl_sim_buf_t b = {(char *)c->data + c->len, SL_SIM_EVENT_MAX, 0};
  return b;
}

/* Commits the event written into b as the request's current event.
 * Returns 0, or -1 if it did not fit (cannot happen with the bounds on model
 * and token sizes; handled as an internal error). */
static int sl__ev_commit(sl_sim_req_t *r, sl_sim_buf_t *b) {
  if (b->len > b->cap) return -1;
  sl_chunk_t *c = r->e->cur;
  r->ev = c;
  sl_chunk_ref(c);
  r->ev_off = c->len;
  r->ev_len = (uint32_t)b->len;
  r->ev_pos = 0;
  r->piece = 0;
  r->piece_due = 0;
  c->len += (uint32_t)b->len;
  return 0;
}

static void sl__ev_usage_json(sl_sim_req_t *r, sl_sim_buf_t *b) {
  sl__bputs(b, "{\"prompt_tokens\":");
  sl__bput_u64(b, r->prompt_tokens);
  sl__bputs(b, ",\"completion_tokens\":");
  sl__bput_u64(b, r->sent);
  sl__bputs(b, ",\"total_tokens\":");
  sl__bput_u64(b, r->prompt_tokens + r->sent);
  sl__bputs(b, "}");
}

static void sl__ev_close(sl_sim_req_t *r, sl_sim_buf_t *b) {
  sl__bputs(b, r->include_usage ? "],\"usage\":null}\n\n" : "]}\n\n");
}

/* The text of the next token: the script's, or a word from the list. */
static const char *sl__next_token(sl_sim_req_t *r, size_t *len) {
  if (r->script != NULL) {
    uint64_t i = r->sent < r->nscript ? r->sent : r->nscript - 1;
    *len = r->script_off[i + 1] - r->script_off[i];
    return r->script + r->script_off[i];
  }
  return sl__sim_token(&r->text_rng, r->sent, len);
}

/* Appends a token's text, with its send-time stamp when asked. */
static void sl__put_token(sl_sim_req_t *r, sl_sim_buf_t *b, const char *t, size_t n) {
  sl__bput_esc(b, t, n);
  if (r->stamp) {
    sl__bputs(b, "[t=");
    sl__bput_u64(b, uv_hrtime());
    sl__bputs(b, "]");
  }
}

/* A made-up token id for the native formats that carry ids: the same
 * token text always gets the same id, as a tokenizer's would. */
static uint32_t sl__token_id(const char *t, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)t[i]) * 16777619u;
  return 100 + h % 32000;
}

/* Ollama's created_at: RFC 3339 with nanoseconds, as Go prints it. */
static void sl__put_created_at(sl_sim_req_t *r, sl_sim_buf_t *b) {
  time_t t = (time_t)r->created;
  struct tm tm;
  gmtime_r(&t, &tm);
  char ts[48];
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S.000000000Z", &tm);
  sl__bputs(b, ts);
}

/* Keeps a streamed token's text for TGI's generated_text. */
static void sl__keep_text(sl_sim_req_t *r, const char *t, size_t n) {
  if (r->tlen + n > r->tcap) {
    size_t cap = r->tcap ? r->tcap : 256;
    while (r->tlen + n > cap) cap *= 2;
    r->text = sl_realloc(r->text, cap);
    r->tcap = cap;
  }
  if (n > 0) memcpy(r->text + r->tlen, t, n);
  r->tlen += n;
}

/* One token event of a native format. */
static void sl__native_token(sl_sim_req_t *r, sl_sim_buf_t *b, const char *t, size_t n) {
  uint32_t id = sl__token_id(t, n);
  switch (r->fmt) {
    case SL_SIM_FMT_LCPP:
      sl__bputs(b, "data: {\"index\":0,\"content\":\"");
      sl__put_token(r, b, t, n);
      sl__bputs(b, "\",\"tokens\":[");
      sl__bput_u64(b, id);
      sl__bputs(b, "],\"stop\":false,\"id_slot\":0,\"tokens_predicted\":");
      sl__bput_u64(b, r->sent + 1);
      sl__bputs(b, ",\"tokens_evaluated\":");
      sl__bput_u64(b, r->prompt_tokens);
      sl__bputs(b, "}\n\n");
      break;
    case SL_SIM_FMT_TGI:
      if (r->sent == 0) sl__bputs(b, ":\n\n"); /* a keep-alive comment, as axum sends when idle */
      sl__bputs(b, "data:{\"index\":");
      sl__bput_u64(b, r->sent + 1);
      sl__bputs(b, ",\"token\":{\"id\":");
      sl__bput_u64(b, id);
      sl__bputs(b, ",\"text\":\"");
      sl__put_token(r, b, t, n);
      sl__bputs(b, "\",\"logprob\":-0.25,\"special\":false},\"generated_text\":null,\"details\":null}\n\n");
      sl__keep_text(r, t, n);
      break;
    default: /* Ollama */
      sl__bputs(b, "{\"model\":\"");
      sl__bput_esc(b, r->model, strlen(r->model));
      sl__bputs(b, "\",\"created_at\":\"");
      sl__put_created_at(r, b);
      sl__bputs(b, r->kind == SL_SIM_CHAT ? "\",\"message\":{\"role\":\"assistant\",\"content\":\""
                                          : "\",\"response\":\"");
      sl__put_token(r, b, t, n);
      sl__bputs(b, r->kind == SL_SIM_CHAT ? "\"},\"done\":false}\n" : "\",\"done\":false}\n");
      break;
  }
}

/* The last event of a native format: finish reason and counts, and no
 * [DONE] after it (those engines end by closing the stream). */
static void sl__native_finish(sl_sim_req_t *r, sl_sim_buf_t *b) {
  int length = strcmp(r->finish, "length") == 0;
  switch (r->fmt) {
    case SL_SIM_FMT_LCPP:
      sl__bputs(b, "data: {\"index\":0,\"content\":\"\",\"tokens\":[],\"id_slot\":0,\"stop\":true,\"model\":\"");
      sl__bput_esc(b, r->model, strlen(r->model));
      sl__bputs(b, "\",\"tokens_predicted\":");
      sl__bput_u64(b, r->sent);
      sl__bputs(b, ",\"tokens_evaluated\":");
      sl__bput_u64(b, r->prompt_tokens);
      sl__bputs(b, length ? ",\"stop_type\":\"limit\"" : ",\"stop_type\":\"eos\"");
      sl__bputs(b, ",\"stopping_word\":\"\",\"tokens_cached\":0,\"timings\":{\"cache_n\":0,\"prompt_n\":");
      sl__bput_u64(b, r->prompt_tokens);
      sl__bputs(b, ",\"predicted_n\":");
      sl__bput_u64(b, r->sent);
      sl__bputs(b, "}}\n\n");
      break;
    case SL_SIM_FMT_TGI:
      /* The EOS token, special (its text is not in generated_text). */
      sl__bputs(b, "data:{\"index\":");
      sl__bput_u64(b, r->sent + 1);
      sl__bputs(b, ",\"token\":{\"id\":2,\"text\":\"</s>\",\"logprob\":0.0,\"special\":true},\"generated_text\":\"");
      /* Capped so the event fits its room (SL_SIM_EVENT_MAX): sluice only
       * reads that generated_text is set. */
      sl__bput_esc(b, r->text ? r->text : "", r->tlen < 256 ? r->tlen : 256);
      sl__bputs(b, length ? "\",\"details\":{\"finish_reason\":\"length\",\"generated_tokens\":"
                          : "\",\"details\":{\"finish_reason\":\"eos_token\",\"generated_tokens\":");
      sl__bput_u64(b, r->sent);
      sl__bputs(b, ",\"seed\":null,\"input_length\":");
      sl__bput_u64(b, r->prompt_tokens);
      sl__bputs(b, "}}\n\n");
      break;
    default:
      sl__bputs(b, "{\"model\":\"");
      sl__bput_esc(b, r->model, strlen(r->model));
      sl__bputs(b, "\",\"created_at\":\"");
      sl__put_created_at(r, b);
      sl__bputs(b, r->kind == SL_SIM_CHAT ? "\",\"message\":{\"role\":\"assistant\",\"content\":\"\"}"
                                          : "\",\"response\":\"\"");
      sl__bputs(b, length ? ",\"done\":true,\"done_reason\":\"length\"" : ",\"done\":true,\"done_reason\":\"stop\"");
      sl__bputs(b, ",\"total_duration\":");
      sl__bput_u64(b, r->ttft_ns + (uint64_t)(r->itl_ns * (double)r->sent));
      sl__bputs(b, ",\"load_duration\":0,\"prompt_eval_count\":");
      sl__bput_u64(b, r->prompt_tokens);
      sl__bputs(b, ",\"prompt_eval_duration\":");
      sl__bput_u64(b, r->ttft_ns);
      sl__bputs(b, ",\"eval_count\":");
      sl__bput_u64(b, r->sent);
      sl__bputs(b, ",\"eval_duration\":");
      sl__bput_u64(b, (uint64_t)(r->itl_ns * (double)r->sent));
      sl__bputs(b, "}\n");
      break;
  }
}

/* Builds the next event of a native format; advances the phase. */
static int sl__build_native_event(sl_sim_req_t *r) {
  sl_sim_buf_t b = sl__ev_begin(r);
  if (r->phase == SL_SIM_PH_TOKENS) {
    size_t n;
    const char *t = sl__next_token(r, &n);
    sl__native_token(r, &b, t, n);
    r->sent++;
    r->e->st.tokens_sent++;
  } else if (r->phase == SL_SIM_PH_FINISH) {
    sl__native_finish(r, &b);
    r->phase = SL_SIM_PH_END;
  } else {
    return -1;
  }
  return sl__ev_commit(r, &b);
}

/* Builds the next event of the current phase; advances the phase. */
static int sl__build_event(sl_sim_req_t *r) {
  if (r->fmt != SL_SIM_FMT_OAI) return sl__build_native_event(r);
  sl_sim_buf_t b = sl__ev_begin(r);
  int chat = r->kind == SL_SIM_CHAT;
  switch (r->phase) {
    case SL_SIM_PH_ROLE:
      sl__bput(&b, r->prefix, r->plen);
      sl__bputs(&b, "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                    "\"logprobs\":null,\"finish_reason\":null}");
      sl__ev_close(r, &b);
      r->phase = SL_SIM_PH_TOKENS;
      break;
    case SL_SIM_PH_TOKENS: {
      size_t n;
      const char *t = sl__next_token(r, &n);
      sl__bput(&b, r->prefix, r->plen);
      sl__bputs(&b, chat ? "{\"index\":0,\"delta\":{\"content\":\"" : "{\"text\":\"");
      sl__put_token(r, &b, t, n);
      sl__bputs(&b, chat ? "\"},\"logprobs\":null,\"finish_reason\":null}"
                         : "\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}");
      sl__ev_close(r, &b);
      r->sent++;
      r->e->st.tokens_sent++;
      break;
    }
    case SL_SIM_PH_FINISH:
      sl__bput(&b, r->prefix, r->plen);
      sl__bputs(&b, chat ? "{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\""
                         : "{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"");
      sl__bputs(&b, r->finish);
      sl__bputs(&b, "\"}");
      sl__ev_close(r, &b);
      r->phase = r->include_usage ? SL_SIM_PH_USAGE : SL_SIM_PH_DONE;
      break;
    case SL_SIM_PH_USAGE:
      sl__bput(&b, r->prefix, r->plen);
      sl__bputs(&b, "],\"usage\":");
      sl__ev_usage_json(r, &b);
      sl__bputs(&b, "}\n\n");
      r->phase = SL_SIM_PH_DONE;
      break;
    case SL_SIM_PH_DONE:
      sl__bputs(&b, "data: [DONE]\n\n");
      r->phase = SL_SIM_PH_END;
      break;
    default:
      return -1;
  }
  return sl__ev_commit(r, &b);
}

static int sl__build_error_event(sl_sim_req_t *r) {
  sl_sim_buf_t b = sl__ev_begin(r);
  /* Each format's error inside a 200 stream (wire-formats.md 1, 3, 4, 5). */
  if (r->fmt == SL_SIM_FMT_TGI) {
    sl__bputs(&b, "data:{\"error\":\"simulated engine error after ");
    sl__bput_u64(&b, r->sent);
    sl__bputs(&b, " tokens\",\"error_type\":\"generation\"}\n\n");
  } else if (r->fmt == SL_SIM_FMT_OLLAMA) {
    sl__bputs(&b, "{\"error\":\"simulated engine error after ");
    sl__bput_u64(&b, r->sent);
    sl__bputs(&b, " tokens\"}\n");
  } else if (r->fmt == SL_SIM_FMT_LCPP) {
    sl__bputs(&b, "data: {\"error\":{\"code\":500,\"message\":\"simulated engine error after ");
    sl__bput_u64(&b, r->sent);
    sl__bputs(&b, " tokens\",\"type\":\"server_error\"}}\n\n");
  } else {
    sl__bputs(&b, "data: {\"error\":{\"message\":\"simulated engine error after ");
    sl__bput_u64(&b, r->sent);
    sl__bputs(&b, " tokens\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n");
  }
  r->phase = SL_SIM_PH_CUT;
  return sl__ev_commit(r, &b);
}

/* ---- writing ---- */

/* Records the queue after a write; returns 1 if the request must now wait
 * for on_drain (the server's one watermark test, which arms it). */
static int sl__after_write(sl_sim_req_t *r) {
  sl_sim_engine_t *e = r->e;
  size_t q = sl_http_req_write_queue(r->req);
  if (q > e->st.max_write_queue_bytes) e->st.max_write_queue_bytes = q;
  if (sl_http_req_over_high(r->req, 0)) {
    e->st.write_blocked++;
    r->state = SL_SIM_DRAIN;
    return 1;
  }
  return 0;
}

/* Writes the next piece of the current event.  Returns 0 to go on, 1 when
 * the request waits (timer or drain) or is gone. */
static int sl__write_piece(sl_sim_req_t *r) {
  uint64_t now = uv_hrtime();
  if (r->piece_due > now) {
    sl__arm_ns(r, r->piece_due - now);
    return 1;
  }
  uint32_t end = r->ev_len;
  while (r->piece < r->nsplits && r->splits[r->piece] <= r->ev_pos) r->piece++;
  if (r->piece < r->nsplits && r->splits[r->piece] < r->ev_len) end = r->splits[r->piece];
  uv_buf_t buf = uv_buf_init((char *)r->ev->data + r->ev_off + r->ev_pos, end - r->ev_pos);
  if (sl_http_stream_write(r->req, &buf, 1, r->ev) < 0) {
    sl__gone(r);
    return 1;
  }
  r->ev_pos = end;
  if (r->ev_pos >= r->ev_len) {
    sl_chunk_unref(r->ev);
    r->ev = NULL;
  } else if (r->split_delay_ns > 0) {
    r->piece_due = uv_hrtime() + r->split_delay_ns;
  }
  return sl__after_write(r);
}

/* Ends the stream (normal end or a fault's cut) and frees the request. */
static void sl__finish_stream(sl_sim_req_t *r, int normal) {
  sl_http_req_t *req = r->req;
  r->req = NULL;
  if (normal) r->e->st.completed++;
  sl_http_stream_end(req, 0);
  sl__destroy(r);
}

/* The non-streaming answer: one JSON object with the whole text. */
static void sl__finish_whole(sl_sim_req_t *r) {
  sl_sim_engine_t *e = r->e;
  int chat = r->kind == SL_SIM_CHAT;
  size_t cap = 1024 + SL_SIM_PREFIX_MAX + r->tlen * 6;
  char *out = sl_malloc(cap);
  sl_sim_buf_t b = {out, cap, 0};
  sl__put_head(r, &b, 0);
  if (chat) {
    sl__bputs(&b, "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"");
    sl__bput_esc(&b, r->text, r->tlen);
    sl__bputs(&b, "\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"");
  } else {
    sl__bputs(&b, "{\"text\":\"");
    sl__bput_esc(&b, r->text, r->tlen);
    sl__bputs(&b, "\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"");
  }
  sl__bputs(&b, r->finish);
  sl__bputs(&b, "\"}],\"usage\":");
  sl__ev_usage_json(r, &b);
  sl__bputs(&b, "}");
  sl_http_req_t *req = r->req;
  r->req = NULL;
  if (b.len <= b.cap) {
    e->st.completed++;
    sl__respond_json(req, 200, out, b.len);
  } else {
    sl__respond_error(req, 500, "server_error", NULL, NULL, "simulated engine: response too large");
  }
  sl_free(out);
  sl__destroy(r);
}

/* Appends a token to the non-streaming text. */
static void sl__append_text(sl_sim_req_t *r) {
  size_t n;
  const char *t = sl__next_token(r, &n);
  char stamp[32];
  int sn = 0;
  if (r->stamp) sn = snprintf(stamp, sizeof(stamp), "[t=%llu]", (unsigned long long)uv_hrtime());
  if (r->tlen + n + (size_t)sn > r->tcap) {
    size_t cap = r->tcap ? r->tcap : 256;
    while (r->tlen + n + (size_t)sn > cap) cap *= 2;
    r->text = sl_realloc(r->text, cap);
    r->tcap = cap;
  }
  if (n + (size_t)sn > 0) { /* an empty script token leaves text NULL */
    memcpy(r->text + r->tlen, t, n);
    memcpy(r->text + r->tlen + n, stamp, (size_t)sn);
    r->tlen += n + (size_t)sn;
  }
  r->sent++;
  r->e->st.tokens_sent++;
}

static const char sl__garbage[] =
    "\xff\xfe\x00\x01 sim-garbage {{{ not an event \x7f\x80\n\n";

/* Fires the request's fault.  Returns 0 to go on pumping, 1 when the
 * request waits or is gone. */
static int sl__fire_fault(sl_sim_req_t *r) {
  sl_sim_engine_t *e = r->e;
  r->fault_fired = 1;
  e->st.faults_injected++;
  switch (r->fault) {
    case SL_SIM_F_STALL:
      r->state = SL_SIM_STALLED;
      return 1;
    case SL_SIM_F_RESET: {
      sl_http_req_t *req = r->req;
      r->req = NULL;
      sl_http_req_reset(req);
      sl__destroy(r);
      return 1;
    }
    case SL_SIM_F_GARBAGE:
    case SL_SIM_F_GARBAGE_END:
      if (!r->stream) {
        sl_http_req_t *req = r->req;
        r->req = NULL;
        sl_http_respond(req, 200, "application/json", sl__garbage, sizeof(sl__garbage) - 1, NULL);
        sl__destroy(r);
        return 1;
      } else {
        uv_buf_t buf = uv_buf_init((char *)sl__garbage, sizeof(sl__garbage) - 1);
        if (sl_http_stream_write(r->req, &buf, 1, NULL) < 0) {
          sl__gone(r);
          return 1;
        }
        if (r->fault == SL_SIM_F_GARBAGE_END) r->phase = SL_SIM_PH_CUT;
        return sl__after_write(r);
      }
    case SL_SIM_F_ERROR_EVENT:
      if (!r->stream) {
        sl_http_req_t *req = r->req;
        r->req = NULL;
        sl__respond_error(req, 500, "server_error", NULL, NULL, "simulated engine error");
        sl__destroy(r);
        return 1;
      }
      if (sl__build_error_event(r) < 0) return -1;
      return 0;
    case SL_SIM_F_CLOSE:
      if (!r->stream) {
        /* A 200 whose body ends before any JSON: the non-streaming analogue
         * of a stream cut without its end. */
        sl_http_req_t *req = r->req;
        r->req = NULL;
        if (sl_http_stream_start(req, 200, "application/json", NULL) == 0) sl_http_stream_end(req, 1);
        sl__destroy(r);
        return 1;
      }
      r->phase = SL_SIM_PH_CUT;
      return 0;
    default:
      return 0;
  }
}

/* 1 if the request's fault is still to fire once `sent` tokens are out. */
static int sl__fault_pending(const sl_sim_req_t *r) {
  return r->fault != SL_SIM_F_NONE && r->fault != SL_SIM_F_SLOW_START && r->fault != SL_SIM_F_HOLD_OPEN &&
         !r->fault_fired;
}

/* Drives the request as far as it can go now. */
static void sl__pump(sl_sim_req_t *r) {
  int burst = SL_SIM_BURST;
  r->state = SL_SIM_RUN;
  for (;;) {
    if (r->ev != NULL) {
      if (sl__write_piece(r)) return;
      continue;
    }
    if (r->phase == SL_SIM_PH_END && r->fault == SL_SIM_F_HOLD_OPEN && !r->fault_fired) {
      /* [DONE] is out; the terminating chunk never comes (until the client
       * leaves). */
      r->fault_fired = 1;
      r->e->st.faults_injected++;
      r->state = SL_SIM_STALLED;
      return;
    }
    if (r->phase == SL_SIM_PH_END || r->phase == SL_SIM_PH_CUT) {
      sl__finish_stream(r, r->phase == SL_SIM_PH_END);
      return;
    }
    if (--burst == 0) {
      /* As-fast-as-possible streams yield now and then, so other requests
       * and the client's close are still served. */
      uv_timer_start(&r->timer, sl__on_timer, 0, 0);
      return;
    }
    if (r->phase != SL_SIM_PH_TOKENS) {
      if (!r->stream) {
        sl__finish_whole(r);
        return;
      }
      if (sl__build_event(r) < 0) goto internal;
      continue;
    }
    /* Tokens: a fault fires after fault_at tokens (or after the last one if
     * there are fewer), at the time the next token would have gone. */
    int pending = sl__fault_pending(r);
    uint64_t at = r->fault_at < r->ntokens ? r->fault_at : r->ntokens;
    if (r->sent >= r->ntokens && !pending) {
      r->phase = SL_SIM_PH_FINISH;
      continue;
    }
    uint64_t now = uv_hrtime();
    if (now < r->due) {
      sl__arm_ns(r, r->due - now);
      return;
    }
    if (pending && r->sent >= at) {
      int rc = sl__fire_fault(r);
      if (rc < 0) goto internal;
      if (rc > 0) return;
      continue;
    }
    if (!r->stream)
      sl__append_text(r);
    else if (sl__build_event(r) < 0)
      goto internal;
    uint64_t gap = sl__next_gap_ns(r);
    /* With a wave the gaps are the signal: after a stall longer than a gap
     * (the loop was held up, or the client's backpressure held the engine)
     * the schedule restarts from now rather than catching up with a burst
     * of tokens without gaps, which would be noise in the wave. */
    if (r->wave_period > 0 && now > r->due + gap) r->due = now;
    r->due += gap;
  }
internal:
  /* An event did not fit its reserved room: end the body without [DONE] so
   * the peer sees a truncated stream rather than a clean one. */
  fprintf(stderr, "sim-engine: internal error building an event; stream cut\n");
  if (r->ev != NULL) {
    sl_chunk_unref(r->ev);
    r->ev = NULL;
  }
  if (r->stream) {
    sl__finish_stream(r, 0);
  } else {
    sl_http_req_t *req = r->req;
    r->req = NULL;
    sl__respond_error(req, 500, "server_error", NULL, NULL, "simulated engine internal error");
    sl__destroy(r);
  }
}

static void sl__on_timer(uv_timer_t *t) {
  sl_sim_req_t *r = t->data;
  if (r->req == NULL || r->state == SL_SIM_STALLED || r->state == SL_SIM_QUEUED) return;
  sl__pump(r);
}

static void sl__on_drain(sl_http_req_t *req) {
  sl_sim_req_t *r = req->data;
  if (r->state != SL_SIM_DRAIN) return;
  sl__pump(r);
}

/* The request got a slot: prefill, then tokens. */
static void sl__start(sl_sim_req_t *r) {
  sl_sim_engine_t *e = r->e;
  r->in_slot = 1;
  e->st.active++;
  r->state = SL_SIM_RUN;
  r->phase = (r->stream && r->kind == SL_SIM_CHAT && r->fmt == SL_SIM_FMT_OAI) ? SL_SIM_PH_ROLE : SL_SIM_PH_TOKENS;
  r->due = uv_hrtime() + r->ttft_ns;
  sl__arm_ns(r, r->ttft_ns);
}

/* ---- request parsing ---- */

/* Parses a non-negative decimal integer header.  Returns 0, or -1. */
static int sl__parse_u64(const char *s, uint64_t *out) {
  if (s == NULL || !isdigit((unsigned char)*s)) return -1;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0') return -1;
  *out = v;
  return 0;
}

/* Parses a non-negative finite number (fractions allowed). */
static int sl__parse_ms(const char *s, double *out) {
  if (s == NULL || *s == '\0') return -1;
  char *end;
  double v = strtod(s, &end);
  if (*end != '\0' || !(v >= 0) || !isfinite(v) || v > 3.6e6) return -1;
  *out = v;
  return 0;
}

static int sl__parse_bool(const char *s, int *out) {
  if (strcmp(s, "1") == 0 || strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0) {
    *out = 1;
    return 0;
  }
  if (strcmp(s, "0") == 0 || strcasecmp(s, "false") == 0 || strcasecmp(s, "no") == 0) {
    *out = 0;
    return 0;
  }
  return -1;
}

static int sl__model_ok(const sl_sim_config_t *cfg, const char *model) {
  if (strlen(model) >= SL_SIM_MODEL_MAX) return 0;
  for (int i = 0; i < cfg->nmodels; i++)
    if (strcmp(cfg->models[i], "*") == 0 || strcmp(cfg->models[i], model) == 0) return 1;
  return 0;
}

/* An integer field >= 0, or absent.  Returns 1 if present and valid, 0 if
 * absent or null, -1 if invalid. */
static int sl__int_field(const cJSON *obj, const char *name, uint64_t *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  if (v == NULL || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsNumber(v)) return -1;
  double d = v->valuedouble;
  if (!(d >= 0) || d != floor(d) || d > 1e12) return -1;
  *out = (uint64_t)d;
  return 1;
}

static int sl__parse_fault(const char *s, int *fault, int *status) {
  static const struct {
    const char *name;
    int fault;
  } names[] = {
      {"stall", SL_SIM_F_STALL},           {"reset", SL_SIM_F_RESET},
      {"garbage", SL_SIM_F_GARBAGE},       {"garbage-end", SL_SIM_F_GARBAGE_END},
      {"slow-start", SL_SIM_F_SLOW_START}, {"error-event", SL_SIM_F_ERROR_EVENT},
      {"close", SL_SIM_F_CLOSE},           {"none", SL_SIM_F_NONE},
      {"hold-open", SL_SIM_F_HOLD_OPEN},
  };
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strcasecmp(s, names[i].name) == 0) {
      *fault = names[i].fault;
      return 0;
    }
  if (strncasecmp(s, "status:", 7) == 0) {
    uint64_t v;
    if (sl__parse_u64(s + 7, &v) < 0 || v < 200 || v > 599) return -1;
    *fault = SL_SIM_F_STATUS;
    *status = (int)v;
    return 0;
  }
  return -1;
}

/* Parses "a,b,c" byte offsets (each > 0), sorted and deduplicated. */
static int sl__parse_splits(const char *s, uint32_t *out, int *n) {
  *n = 0;
  while (*s) {
    while (*s == ' ') s++;
    if (!isdigit((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || v == 0 || v > 1u << 20) return -1;
    if (*n == SL_SIM_MAX_SPLITS) return -1;
    out[(*n)++] = (uint32_t)v;
    s = end;
    while (*s == ' ') s++;
    if (*s == ',') {
      s++;
      if (*s == '\0') return -1;
    } else if (*s != '\0') {
      return -1;
    }
  }
  /* insertion sort, then drop duplicates */
  for (int i = 1; i < *n; i++)
    for (int j = i; j > 0 && out[j - 1] > out[j]; j--) {
      uint32_t t = out[j];
      out[j] = out[j - 1];
      out[j - 1] = t;
    }
  int k = 0;
  for (int i = 0; i < *n; i++)
    if (k == 0 || out[k - 1] != out[i]) out[k++] = out[i];
  *n = k;
  return 0;
}

static int sl__hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes x-sim-script: tokens separated by '|', each percent-decoded (so
 * "%7C" is a literal bar, "%0A" a newline, "%25" a percent sign).  Each
 * token is at most 128 bytes, which keeps an event within its reserved room.
 * Returns 0, or -1 if malformed. */
static int sl__parse_script(sl_sim_req_t *r, const char *h) {
  size_t hl = strlen(h);
  uint64_t n = 1;
  for (size_t i = 0; i < hl; i++)
    if (h[i] == '|') n++;
  r->script = sl_malloc(hl + 1);
  r->script_off = sl_malloc(sizeof(uint32_t) * (size_t)(n + 1));
  r->nscript = n;
  uint32_t o = 0, k = 0, start = 0;
  r->script_off[0] = 0;
  for (size_t i = 0; i <= hl; i++) {
    if (i == hl || h[i] == '|') {
      if (o - start > 128) return -1;
      r->script_off[++k] = o;
      start = o;
      continue;
    }
    if (h[i] == '%') {
      /* The value is NUL-terminated, so h[i + 1] and (if that was a hex
       * digit) h[i + 2] are readable. */
      int hi = sl__hexval((unsigned char)h[i + 1]);
      int lo = hi >= 0 ? sl__hexval((unsigned char)h[i + 2]) : -1;
      if (hi < 0 || lo < 0) return -1;
      r->script[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      r->script[o++] = h[i];
    }
  }
  return 0;
}

/* Rejects with 400 naming the field; returns -1 for the caller to return. */
static int sl__bad(sl_http_req_t *req, const char *param, const char *fmt, const char *arg) {
  char msg[256];
  snprintf(msg, sizeof(msg), fmt, arg);
  sl__respond_error(req, 400, "invalid_request_error", "invalid_value", param, msg);
  return -1;
}

/* Reads the x-sim-* headers into r.  Returns 0, or -1 after answering 400. */
static int sl__read_headers(sl_http_req_t *req, sl_sim_req_t *r, uint64_t *tokens, int *have_tokens, int *status) {
  const char *h;
  double ms;
  uint64_t v;
  if ((h = sl_http_req_header(req, "x-sim-seed")) != NULL) {
    if (sl__parse_u64(h, &v) < 0) return sl__bad(req, "x-sim-seed", "invalid x-sim-seed: %s", h);
    sl__sim_rng_seed(&r->text_rng, v);
    sl__sim_rng_seed(&r->time_rng, v ^ 0x5eed71be5eed71beULL);
  }
  if ((h = sl_http_req_header(req, "x-sim-tokens")) != NULL) {
    if (sl__parse_u64(h, tokens) < 0 || *tokens > 100000000)
      return sl__bad(req, "x-sim-tokens", "invalid x-sim-tokens: %s", h);
    *have_tokens = 1;
  }
  if ((h = sl_http_req_header(req, "x-sim-script")) != NULL) {
    if (sl__parse_script(r, h) < 0)
      return sl__bad(req, "x-sim-script", "%s", "invalid x-sim-script (tokens split by |, %XX escapes, 128 bytes each)");
    *tokens = r->nscript;
    *have_tokens = 1;
  }
  if ((h = sl_http_req_header(req, "x-sim-ttft-ms")) != NULL) {
    if (sl__parse_ms(h, &ms) < 0) return sl__bad(req, "x-sim-ttft-ms", "invalid x-sim-ttft-ms: %s", h);
    r->ttft_ns = (uint64_t)(ms * 1e6);
  }
  if ((h = sl_http_req_header(req, "x-sim-itl-ms")) != NULL) {
    if (sl__parse_ms(h, &ms) < 0) return sl__bad(req, "x-sim-itl-ms", "invalid x-sim-itl-ms: %s", h);
    r->itl_ns = ms * 1e6;
  }
  if ((h = sl_http_req_header(req, "x-sim-stamp")) != NULL) {
    if (sl__parse_bool(h, &r->stamp) < 0)
      return sl__bad(req, "x-sim-stamp", "invalid x-sim-stamp: %s", h);
  }
  if ((h = sl_http_req_header(req, "x-sim-fault")) != NULL) {
    if (sl__parse_fault(h, &r->fault, status) < 0)
      return sl__bad(req, "x-sim-fault", "unknown x-sim-fault: %s", h);
  }
  r->fault_at = SL_SIM_DEFAULT_FAULT_AT;
  if ((h = sl_http_req_header(req, "x-sim-fault-at")) != NULL) {
    if (sl__parse_u64(h, &r->fault_at) < 0)
      return sl__bad(req, "x-sim-fault-at", "invalid x-sim-fault-at: %s", h);
  }
  if (r->fault == SL_SIM_F_SLOW_START) {
    ms = SL_SIM_DEFAULT_DELAY_MS;
    if ((h = sl_http_req_header(req, "x-sim-delay-ms")) != NULL && sl__parse_ms(h, &ms) < 0)
      return sl__bad(req, "x-sim-delay-ms", "invalid x-sim-delay-ms: %s", h);
    r->ttft_ns = (uint64_t)(ms * 1e6);
  }
  if ((h = sl_http_req_header(req, "x-sim-split")) != NULL) {
    if (sl__parse_splits(h, r->splits, &r->nsplits) < 0)
      return sl__bad(req, "x-sim-split", "invalid x-sim-split: %s", h);
  }
  if ((h = sl_http_req_header(req, "x-sim-split-delay-ms")) != NULL) {
    if (sl__parse_ms(h, &ms) < 0)
      return sl__bad(req, "x-sim-split-delay-ms", "invalid x-sim-split-delay-ms: %s", h);
    r->split_delay_ns = (uint64_t)(ms * 1e6);
  }
  return 0;
}

/* Keeps tp (may be NULL) as the last traceparent seen, printable ASCII
 * only, so that it goes into the stats JSON as it is. */
static void sl__keep_traceparent(sl_sim_engine_t *e, const char *tp) {
  size_t n = 0;
  for (; tp != NULL && tp[n] != '\0' && n + 1 < sizeof(e->last_traceparent); n++)
    e->last_traceparent[n] = tp[n] >= 0x20 && tp[n] < 0x7f && tp[n] != '"' && tp[n] != '\\' ? tp[n] : '?';
  e->last_traceparent[n] = '\0';
}

/* Moves obj[from] (a number) to body["max_tokens"]; a negative limit
 * (llama.cpp's -1) means none. */
static void sl__native_limit(cJSON *body, cJSON *obj, const char *from) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, from);
  cJSON_DeleteItemFromObjectCaseSensitive(body, "max_tokens");
  cJSON_DeleteItemFromObjectCaseSensitive(body, "max_completion_tokens");
  if (cJSON_IsNumber(v) && v->valuedouble >= 0) cJSON_AddNumberToObject(body, "max_tokens", v->valuedouble);
}

/* Rewrites a native route's request into the OpenAI fields the rest of
 * the handler reads: llama.cpp's prompt and n_predict, TGI's inputs and
 * parameters.max_new_tokens, Ollama's options.num_predict.  llama.cpp's
 * and TGI's requests name no model: the engine's first is assumed.
 * Returns 0, or -1 with the error answered. */
static int sl__native_request(sl_sim_engine_t *e, sl_http_req_t *req, cJSON *body, int fmt) {
  if (fmt == SL_SIM_FMT_TGI) {
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(body, "inputs");
    if (!cJSON_IsString(in)) {
      sl__bad(req, "inputs", "%s", "inputs: a string is required");
      return -1;
    }
    cJSON_AddItemToObject(body, "prompt", cJSON_CreateString(in->valuestring));
    cJSON *p = cJSON_GetObjectItemCaseSensitive(body, "parameters");
    sl__native_limit(body, cJSON_IsObject(p) ? p : body, "max_new_tokens");
  } else if (fmt == SL_SIM_FMT_LCPP) {
    sl__native_limit(body, body, "n_predict");
  } else {
    cJSON *o = cJSON_GetObjectItemCaseSensitive(body, "options");
    sl__native_limit(body, cJSON_IsObject(o) ? o : body, "num_predict");
  }
  if (fmt != SL_SIM_FMT_OLLAMA && cJSON_GetObjectItemCaseSensitive(body, "model") == NULL) {
    const char *m = e->cfg.nmodels > 0 && strcmp(e->cfg.models[0], "*") != 0 ? e->cfg.models[0] : "sim";
    cJSON_AddStringToObject(body, "model", m);
  }
  cJSON_DeleteItemFromObjectCaseSensitive(body, "stream");
  cJSON_DeleteItemFromObjectCaseSensitive(body, "stream_options");
  cJSON_AddTrueToObject(body, "stream");
  return 0;
}

/* POST /v1/chat/completions and /v1/completions, and the native routes
 * (fmt). */
static void sl__handle_completion(sl_sim_engine_t *e, sl_http_req_t *req, int kind, int fmt) {
  const sl_sim_config_t *cfg = &e->cfg;
  e->st.requests++;
  sl__keep_traceparent(e, sl_http_req_header(req, "traceparent"));
  uint64_t seq = ++e->seq;
  cJSON *body = cJSON_ParseWithLength(req->body, req->body_len);
  if (body == NULL || !cJSON_IsObject(body)) {
    cJSON_Delete(body);
    sl__respond_error(req, 400, "invalid_request_error", "invalid_json", NULL,
                      "request body is not a JSON object");
    return;
  }
  if (fmt != SL_SIM_FMT_OAI && sl__native_request(e, req, body, fmt) < 0) {
    cJSON_Delete(body);
    return;
  }
  sl_sim_req_t *r = NULL;
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
  if (!cJSON_IsString(model)) {
    sl__bad(req, "model", "%s", "model: a string is required");
    goto out;
  }
  if (!sl__model_ok(cfg, model->valuestring)) {
    char msg[256];
    snprintf(msg, sizeof(msg), "The model `%.128s` does not exist", model->valuestring);
    sl__respond_error(req, 404, "invalid_request_error", "model_not_found", "model", msg);
    goto out;
  }
  size_t prompt_chars;
  if (kind == SL_SIM_CHAT) {
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0) {
      sl__bad(req, "messages", "%s", "messages: a non-empty array is required");
      goto out;
    }
    prompt_chars = sl_oai_prompt_chars(body, 1); /* the gateway's own estimate counts the same way */
  } else {
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    if (prompt == NULL || !(cJSON_IsString(prompt) || cJSON_IsArray(prompt))) {
      sl__bad(req, "prompt", "%s", "prompt: a string or an array is required");
      goto out;
    }
    prompt_chars = sl_oai_prompt_chars(body, 0);
  }
  uint64_t max_tokens = 0, mct = 0;
  int have_max = sl__int_field(body, "max_tokens", &max_tokens);
  if (have_max < 0) {
    sl__bad(req, "max_tokens", "%s", "max_tokens: must be an integer >= 0");
    goto out;
  }
  int have_mct = sl__int_field(body, "max_completion_tokens", &mct);
  if (have_mct < 0) {
    sl__bad(req, "max_completion_tokens", "%s", "max_completion_tokens: must be an integer >= 0");
    goto out;
  }
  if (have_mct > 0) { /* as vLLM: max_completion_tokens wins */
    max_tokens = mct;
    have_max = 1;
  }
  const cJSON *stream = cJSON_GetObjectItemCaseSensitive(body, "stream");
  if (stream != NULL && !cJSON_IsNull(stream) && !cJSON_IsBool(stream)) {
    sl__bad(req, "stream", "%s", "stream: must be a boolean");
    goto out;
  }
  int include_usage = 0;
  const cJSON *so = cJSON_GetObjectItemCaseSensitive(body, "stream_options");
  if (so != NULL && !cJSON_IsNull(so)) {
    if (!cJSON_IsObject(so)) {
      sl__bad(req, "stream_options", "%s", "stream_options: must be an object");
      goto out;
    }
    const cJSON *iu = cJSON_GetObjectItemCaseSensitive(so, "include_usage");
    if (iu != NULL && !cJSON_IsBool(iu)) {
      sl__bad(req, "stream_options.include_usage", "%s", "stream_options.include_usage: must be a boolean");
      goto out;
    }
    include_usage = cJSON_IsTrue(iu);
  }
  const cJSON *n = cJSON_GetObjectItemCaseSensitive(body, "n");
  if (n != NULL && !cJSON_IsNull(n) && !(cJSON_IsNumber(n) && n->valuedouble == 1)) {
    sl__bad(req, "n", "%s", "n: the simulated engine supports only n = 1");
    goto out;
  }

  r = sl_calloc(1, sizeof(*r));
  r->e = e;
  r->kind = kind;
  r->fmt = fmt;
  r->stream = cJSON_IsTrue(stream);
  r->include_usage = r->stream && include_usage;
  r->stamp = cfg->stamp;
  r->ttft_ns = (uint64_t)((cfg->ttft_ms * 1e3 + cfg->prefill_us_per_char * (double)prompt_chars) * 1e3);
  r->itl_ns = cfg->itl_ms * 1e6;
  r->jitter = cfg->itl_jitter;
  r->wave_period = cfg->itl_wave_period;
  r->wave_amp = cfg->itl_wave_amp;
  uint64_t seed = sl__sim_mix(cfg->seed ^ (seq * 0x9e3779b97f4a7c15ULL));
  sl__sim_rng_seed(&r->text_rng, seed);
  sl__sim_rng_seed(&r->time_rng, seed ^ 0x5eed71be5eed71beULL);
  uint64_t tokens = 0;
  int have_tokens = 0, status = 0;
  if (sl__read_headers(req, r, &tokens, &have_tokens, &status) < 0) goto out;
  if (e->refuse != 0 && r->fault == SL_SIM_F_NONE) {
    r->fault = SL_SIM_F_STATUS;
    status = e->refuse;
  }
  if (r->fault == SL_SIM_F_STATUS) {
    char msg[96];
    snprintf(msg, sizeof(msg), "simulated engine fault: HTTP %d", status);
    e->st.faults_injected++;
    sl__respond_error(req, status, status >= 500 ? "server_error" : "invalid_request_error",
                      NULL, NULL, msg);
    goto out;
  }
  if (r->fault == SL_SIM_F_SLOW_START) e->st.faults_injected++;
  /* Token count: x-sim-tokens is the natural length, capped by max_tokens;
   * without it the request's max_tokens (or the configured default) is
   * produced in full, ending with "length". */
  if (have_tokens) {
    r->ntokens = tokens;
    r->finish = "stop";
    if (have_max > 0 && max_tokens <= tokens) {
      r->ntokens = max_tokens;
      r->finish = "length";
    }
  } else {
    r->ntokens = have_max > 0 ? max_tokens : (uint64_t)cfg->max_tokens;
    r->finish = "length";
  }
  r->prompt_tokens = prompt_chars / 4 + 1;

  /* The event prefix shared by every chunk of this response. */
  snprintf(r->id, sizeof(r->id), "%s-sim%012llx", kind == SL_SIM_CHAT ? "chatcmpl" : "cmpl",
           (unsigned long long)(sl__sim_mix(cfg->seed + seq) & 0xffffffffffffULL));
  r->created = (uint64_t)time(NULL);
  snprintf(r->model, sizeof(r->model), "%s", model->valuestring);
  sl_sim_buf_t pb = {r->prefix, sizeof(r->prefix) - 1, 0};
  sl__put_head(r, &pb, 1);
  if (pb.len > pb.cap) { /* cannot happen: model names are bounded */
    sl__respond_error(req, 500, "server_error", NULL, NULL, "simulated engine: model name too long");
    goto out;
  }
  r->plen = pb.len;
  r->prefix[r->plen] = '\0';

  if (r->stream && sl_http_stream_start(req, 200, fmt == SL_SIM_FMT_OLLAMA ? "application/x-ndjson" : "text/event-stream",
                                        "Cache-Control: no-cache\r\n") < 0) {
    /* The connection is gone; the request has ended. */
    e->st.client_closed_mid_stream++;
    goto out;
  }
  uv_timer_init(e->loop, &r->timer);
  r->timer.data = r;
  r->req = req;
  req->data = r;
  req->on_abort = sl__on_abort;
  req->on_drain = sl__on_drain;
  e->nlive++;
  if (e->st.active < (uint64_t)cfg->slots) {
    sl__start(r);
  } else {
    r->state = SL_SIM_QUEUED;
    r->queued = 1;
    e->st.queued++;
    if (e->qtail) e->qtail->qnext = r; else e->qhead = r;
    e->qtail = r;
  }
  r = NULL; /* owned by the engine now */
out:
  sl__req_free(r);
  cJSON_Delete(body);
}

/* ---- other routes ---- */

static void sl__handle_models(sl_sim_engine_t *e, sl_http_req_t *req) {
  char out[SL_SIM_MAX_MODELS * (SL_SIM_MODEL_MAX * 6 + 96) + 64];
  sl_sim_buf_t b = {out, sizeof(out), 0};
  sl__bputs(&b, "{\"object\":\"list\",\"data\":[");
  int first = 1;
  for (int i = 0; i < e->cfg.nmodels; i++) {
    if (strcmp(e->cfg.models[i], "*") == 0) continue;
    sl__bputs(&b, first ? "{\"id\":\"" : ",{\"id\":\"");
    sl__bput_esc(&b, e->cfg.models[i], strlen(e->cfg.models[i]));
    sl__bputs(&b, "\",\"object\":\"model\",\"created\":0,\"owned_by\":\"sluice-sim\"}");
    first = 0;
  }
  sl__bputs(&b, "]}");
  sl__respond_json(req, 200, out, b.len);
}

static void sl__handle_stats(sl_sim_engine_t *e, sl_http_req_t *req) {
  char out[1024];
  sl_sim_stats_t st;
  sl_sim_engine_stats(e, &st);
  size_t cap = sizeof(out) - sizeof(e->last_traceparent) - 32; /* room left for the traceparent */
  size_t n = sl_sim_stats_json(&st, out, cap);
  if (n > 0 && n < cap) {
    /* The counters' object, the traceparent added before its '}'. */
    n--;
    n += (size_t)snprintf(out + n, sizeof(out) - n, ",\"last_traceparent\":\"%s\"}", e->last_traceparent);
  } else {
    n = 0;
  }
  sl__respond_json(req, 200, out, n);
}

static void sl__handle_control(sl_sim_engine_t *e, sl_http_req_t *req) {
  cJSON *body = cJSON_ParseWithLength(req->body, req->body_len);
  if (body == NULL || !cJSON_IsObject(body)) {
    cJSON_Delete(body);
    sl__respond_error(req, 400, "invalid_request_error", "invalid_json", NULL,
                      "request body is not a JSON object");
    return;
  }
  const cJSON *it;
  cJSON_ArrayForEach(it, body) {
    if (strcmp(it->string, "healthy") == 0 || strcmp(it->string, "reset_stats") == 0) {
      if (!cJSON_IsBool(it)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%s: must be a boolean", it->string);
        sl__respond_error(req, 400, "invalid_request_error", "invalid_value", it->string, msg);
        cJSON_Delete(body);
        return;
      }
    } else if (strcmp(it->string, "refuse") == 0) {
      if (!cJSON_IsNumber(it) || (it->valuedouble != 0 && (it->valuedouble < 400 || it->valuedouble > 599))) {
        sl__respond_error(req, 400, "invalid_request_error", "invalid_value", "refuse",
                          "refuse: must be 0 or an HTTP status from 400 to 599");
        cJSON_Delete(body);
        return;
      }
    } else {
      char msg[160];
      snprintf(msg, sizeof(msg), "unknown control key \"%.64s\"", it->string);
      sl__respond_error(req, 400, "invalid_request_error", "invalid_value", it->string, msg);
      cJSON_Delete(body);
      return;
    }
  }
  const cJSON *h = cJSON_GetObjectItemCaseSensitive(body, "healthy");
  if (h != NULL) e->healthy = cJSON_IsTrue(h);
  const cJSON *rf = cJSON_GetObjectItemCaseSensitive(body, "refuse");
  if (rf != NULL) e->refuse = (int)rf->valuedouble;
  if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "reset_stats"))) sl_sim_engine_reset_stats(e);
  cJSON_Delete(body);
  const char *out = e->healthy ? "{\"healthy\":true}" : "{\"healthy\":false}";
  sl__respond_json(req, 200, out, strlen(out));
}

static void sl__handler(sl_http_req_t *req, void *ud) {
  sl_sim_engine_t *e = ud;
  const char *path = req->path;
  int get = strcmp(req->method_name, "GET") == 0;
  int post = strcmp(req->method_name, "POST") == 0;
  int want_post = 0, want_get = 0;
  if (strcmp(path, "/v1/chat/completions") == 0) {
    if (post) return sl__handle_completion(e, req, SL_SIM_CHAT, SL_SIM_FMT_OAI);
    want_post = 1;
  } else if (strcmp(path, "/v1/completions") == 0) {
    if (post) return sl__handle_completion(e, req, SL_SIM_COMPLETION, SL_SIM_FMT_OAI);
    want_post = 1;
  } else if (strcmp(path, "/completion") == 0) {
    if (post) return sl__handle_completion(e, req, SL_SIM_COMPLETION, SL_SIM_FMT_LCPP);
    want_post = 1;
  } else if (strcmp(path, "/generate_stream") == 0) {
    if (post) return sl__handle_completion(e, req, SL_SIM_COMPLETION, SL_SIM_FMT_TGI);
    want_post = 1;
  } else if (strcmp(path, "/api/chat") == 0) {
    if (post) return sl__handle_completion(e, req, SL_SIM_CHAT, SL_SIM_FMT_OLLAMA);
    want_post = 1;
  } else if (strcmp(path, "/api/generate") == 0) {
    if (post) return sl__handle_completion(e, req, SL_SIM_COMPLETION, SL_SIM_FMT_OLLAMA);
    want_post = 1;
  } else if (strcmp(path, "/") == 0) {
    /* Ollama's liveness answer (wire-formats.md section 5). */
    if (get) {
      if (e->healthy) sl_http_respond(req, 200, "text/plain; charset=utf-8", "Ollama is running", 17, NULL);
      else sl_http_respond(req, 503, "text/plain", "unhealthy", 9, "Retry-After: 1\r\n");
      return;
    }
    want_get = 1;
  } else if (strcmp(path, "/sim/control") == 0) {
    if (post) return sl__handle_control(e, req);
    want_post = 1;
  } else if (strcmp(path, "/v1/models") == 0) {
    if (get) return sl__handle_models(e, req);
    want_get = 1;
  } else if (strcmp(path, "/sim/stats") == 0) {
    if (get) return sl__handle_stats(e, req);
    want_get = 1;
  } else if (strcmp(path, "/health") == 0) {
    if (get) {
      if (e->healthy)
        sl__respond_json(req, 200, "{\"status\":\"ok\"}", 15);
      else
        sl_http_respond(req, 503, "application/json", "{\"status\":\"unhealthy\"}", 22,
                        "Retry-After: 1\r\n");
      return;
    }
    want_get = 1;
  }
  if (want_post || want_get) {
    char msg[160];
    snprintf(msg, sizeof(msg), "method %.16s not allowed on %.64s (use %s)", req->method_name, path,
             want_post ? "POST" : "GET");
    sl__respond_error(req, 405, "invalid_request_error", "method_not_allowed", NULL, msg);
    return;
  }
  char msg[192];
  snprintf(msg, sizeof(msg), "no route for %.128s", path);
  sl__respond_error(req, 404, "invalid_request_error", "not_found", NULL, msg);
}

/* ---- public ---- */

static int sl__config_check(const sl_sim_config_t *cfg) {
  if (cfg->slots < 1 || cfg->port < 0 || cfg->port > 65535 || cfg->nmodels < 1 ||
      cfg->nmodels > SL_SIM_MAX_MODELS || !(cfg->ttft_ms >= 0) || !(cfg->prefill_us_per_char >= 0) ||
      !(cfg->itl_ms >= 0) || !(cfg->itl_jitter >= 0 && cfg->itl_jitter <= 1) ||
      !(cfg->itl_wave_period == 0 || cfg->itl_wave_period >= 2) || !(cfg->itl_wave_amp >= 0 && cfg->itl_wave_amp < 1) || cfg->max_tokens < 0 ||
      memchr(cfg->host, '\0', sizeof(cfg->host)) == NULL)
    return SL_EINVAL;
  for (int i = 0; i < cfg->nmodels; i++)
    if (memchr(cfg->models[i], '\0', SL_SIM_MODEL_MAX) == NULL || cfg->models[i][0] == '\0')
      return SL_EINVAL;
  return 0;
}

int sl_sim_engine_start(sl_sim_engine_t **out, uv_loop_t *loop, const sl_sim_config_t *cfg) {
  int rc = sl__config_check(cfg);
  if (rc < 0) return rc;
  sl_sim_engine_t *e = sl_calloc(1, sizeof(*e));
  e->loop = loop;
  e->cfg = *cfg;
  e->healthy = 1;
  sl_http_limits_default(&e->limits);
  rc = sl_chunk_pool_init(&e->pool, SL_SIM_CHUNK_SIZE, SL_SIM_CHUNK_KEEP);
  if (rc == 0)
    rc = sl_http_server_init(&e->server, loop, cfg->host, cfg->port, &e->limits, sl__handler, e);
  if (rc < 0) {
    sl_chunk_pool_destroy(&e->pool);
    sl_free(e);
    return rc;
  }
  e->port = sl_http_server_port(e->server);
  *out = e;
  return 0;
}

int sl_sim_engine_port(const sl_sim_engine_t *e) { return e->port; }

void sl_sim_engine_stats(const sl_sim_engine_t *e, sl_sim_stats_t *out) {
  *out = e->st;
  out->connections_accepted = e->accepted_base;
  if (e->server != NULL) out->connections_accepted += sl_http_server_accepted(e->server);
}

void sl_sim_engine_reset_stats(sl_sim_engine_t *e) {
  uint64_t active = e->st.active, queued = e->st.queued;
  memset(&e->st, 0, sizeof(e->st));
  e->last_traceparent[0] = '\0';
  e->accepted_base = e->server != NULL ? (uint64_t)0 - sl_http_server_accepted(e->server) : 0;
  e->st.active = active;
  e->st.queued = queued;
}

size_t sl_sim_stats_json(const sl_sim_stats_t *st, char *buf, size_t cap) {
  int n = snprintf(buf, cap,
                   "{\"requests\":%llu,\"active\":%llu,\"queued\":%llu,\"completed\":%llu,"
                   "\"tokens_sent\":%llu,\"client_closed_mid_stream\":%llu,\"write_blocked\":%llu,"
                   "\"max_write_queue_bytes\":%llu,\"connections_accepted\":%llu,"
                   "\"faults_injected\":%llu}",
                   (unsigned long long)st->requests, (unsigned long long)st->active,
                   (unsigned long long)st->queued, (unsigned long long)st->completed,
                   (unsigned long long)st->tokens_sent, (unsigned long long)st->client_closed_mid_stream,
                   (unsigned long long)st->write_blocked, (unsigned long long)st->max_write_queue_bytes,
                   (unsigned long long)st->connections_accepted, (unsigned long long)st->faults_injected);
  return n < 0 ? 0 : (size_t)n;
}

void sl_sim_engine_set_healthy(sl_sim_engine_t *e, int healthy) { e->healthy = healthy ? 1 : 0; }

static void sl__on_server_closed(void *ud) {
  sl_sim_engine_t *e = ud;
  e->server = NULL;
  sl__engine_maybe_done(e);
}

void sl_sim_engine_close(sl_sim_engine_t *e, void (*cb)(void *ud), void *ud) {
  e->closing = 1;
  e->close_cb = cb;
  e->close_ud = ud;
  e->accepted_base += sl_http_server_accepted(e->server);
  /* Every live request has an active HTTP request, so the server's close
   * reaches each of them through on_abort. */
  sl_http_server_close(e->server, sl__on_server_closed, e);
}
