/* web.c: the admin web view (see web.h). */
#include "runtime/ops/web.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/base/errors.h"
#include "runtime/base/histogram.h"
#include "runtime/base/narrate.h"
#include "runtime/stream/relay.h"

#define SL__WEB_CHUNK (64u << 10)  /* events are copied into chunks of this size to be sent */
#define SL__WEB_TICK_MS 1000       /* state snapshots and histogram samples */
#define SL__WEB_RING (SL_WEB_WINDOW_S + 1)
#define SL__WEB_RECENT 100          /* narration events a new events client gets first */

typedef struct sl__web_client_s sl__web_client_t;

/* One GET /api/events response in progress. */
struct sl__web_client_s {
  sl_web_t *w;
  sl_http_req_t *req;
  sl__web_client_t *prev, *next;
  int ended;                 /* a write failed: the server ended the request (no on_abort will come) */
};

/* What the endpoints' histograms held at one tick, summed over endpoints. */
typedef struct {
  uint64_t at;               /* uv_hrtime of the sample */
  uint64_t tokens;           /* tokens_received then */
  sl_hist_t ttft, tpot;
} sl__web_sample_t;

struct sl_web_s {
  sl_gateway_t *gw;
  sl_http_server_t *http;
  uv_timer_t tick;
  const char *token;         /* borrowed; NULL: none required */
  size_t token_len;
  int port;
  sl__web_client_t *clients;
  int nclients;
  sl_chunk_pool_t pool;      /* what events are sent from (a write pins its chunk until sent) */
  sl__web_sample_t ring[SL__WEB_RING]; /* the last samples, the next goes to ring[nsamples % SL__WEB_RING] */
  uint64_t nsamples;
  char *recent[SL__WEB_RECENT]; /* the last narration events as sent ("event: ...\n\n"), for new clients */
  uint64_t nrecent;            /* events told so far; the next goes to recent[nrecent % SL__WEB_RECENT] */
  int open;                  /* handles (timer, server) not yet closed */
  void (*close_cb)(void *);
  void *close_ud;
};

/* ---- the page's folder ---- */

/* As generation.c finds lua/: the environment, then the source tree this
 * binary was built from, then <prefix>/share/sluice/web beside the
 * installed binary (<prefix>/bin/sluice). */
static pthread_once_t sl__web_dir_once = PTHREAD_ONCE_INIT;
static char sl__web_dir_buf[600];
static const char *sl__web_dir_path;

static void sl__find_web_dir(void) {
  const char *d = getenv("SLUICE_WEB_DIR");
  if (d && *d) {
    sl__web_dir_path = d;
    return;
  }
  sl__web_dir_path = SL_WEB_DIR;
  if (access(SL_WEB_DIR, R_OK) == 0) return;
  char exe[512];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n <= 0) return;
  exe[n] = '\0';
  char *slash = strrchr(exe, '/');
  if (slash) *slash = '\0'; /* <prefix>/bin */
  slash = strrchr(exe, '/');
  if (slash) *slash = '\0'; /* <prefix> */
  snprintf(sl__web_dir_buf, sizeof(sl__web_dir_buf), "%s/share/sluice/web", exe);
  if (access(sl__web_dir_buf, R_OK) == 0) sl__web_dir_path = sl__web_dir_buf;
}

const char *sl_web_dir(void) {
  pthread_once(&sl__web_dir_once, sl__find_web_dir);
  return sl__web_dir_path;
}

/* ---- small helpers ---- */

static void sl__json_reply(sl_http_req_t *req, int status, cJSON *o, const char *extra) {
  char *s = cJSON_PrintUnformatted(o);
  char headers[160];
  snprintf(headers, sizeof(headers), "Cache-Control: no-store\r\n%s", extra ? extra : "");
  sl_http_respond(req, status, "application/json", s, strlen(s), headers);
  cJSON_free(s);
  cJSON_Delete(o);
}

static void sl__error(sl_http_req_t *req, int status, const char *code, const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void sl__error(sl_http_req_t *req, int status, const char *code, const char *extra, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  cJSON *o = cJSON_CreateObject();
  cJSON *e = cJSON_AddObjectToObject(o, "error");
  cJSON_AddStringToObject(e, "message", msg);
  cJSON_AddStringToObject(e, "code", code);
  cJSON_AddNumberToObject(e, "status", status);
  sl__json_reply(req, status, o, extra);
}

static int sl__hex(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes in[0..n) into out (cap bytes, NUL-terminated; '+' stays
 * '+').  Returns the length, or -1 when it does not fit or holds a NUL. */
static int sl__pct_decode(const char *in, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int c = (unsigned char)in[i];
    if (c == '%' && i + 2 < n) {
      int h = sl__hex((unsigned char)in[i + 1]), l = sl__hex((unsigned char)in[i + 2]);
      if (h >= 0 && l >= 0) {
        c = h * 16 + l;
        i += 2;
      }
    }
    if (c == 0 || o + 1 >= cap) return -1;
    out[o++] = (char)c;
  }
  out[o] = '\0';
  return (int)o;
}

/* The value of parameter name in a query string ("a=1&token=x"), decoded
 * into out.  Returns 1 if present. */
static int sl__query_param(const char *query, const char *name, char *out, size_t cap) {
  size_t k = strlen(name);
  for (const char *p = query; p && *p;) {
    const char *end = strchr(p, '&');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > k && strncmp(p, name, k) == 0 && p[k] == '=')
      return sl__pct_decode(p + k + 1, len - k - 1, out, cap) >= 0;
    p = end ? end + 1 : NULL;
  }
  return 0;
}

/* The value of cookie name in a Cookie header ("a=1; sluice_admin=x"). */
static int sl__cookie(const char *header, const char *name, char *out, size_t cap) {
  size_t k = strlen(name);
  for (const char *p = header; p && *p;) {
    p += strspn(p, " \t");
    const char *end = strchr(p, ';');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > k && strncmp(p, name, k) == 0 && p[k] == '=') {
      size_t v = len - k - 1;
      if (v >= cap) return 0;
      memcpy(out, p + k + 1, v);
      out[v] = '\0';
      return 1;
    }
    p = end ? end + 1 : NULL;
  }
  return 0;
}

/* Compares what the client sent with the token in time that depends on the
 * token's length only, never on where the first difference is. */
static int sl__token_eq(const sl_web_t *w, const char *got) {
  size_t n = strlen(got);
  unsigned char diff = n != w->token_len;
  for (size_t i = 0; i < w->token_len; i++) diff |= (unsigned char)(w->token[i] ^ (i < n ? got[i] : 0));
  return diff == 0;
}

typedef enum { SL__AUTH_OK, SL__AUTH_NONE, SL__AUTH_WRONG } sl__auth_t;

/* Checks the token in any of the three places.  *from_query is set when
 * the query carried it (the page then gets the cookie). */
static sl__auth_t sl__auth(const sl_web_t *w, const sl_http_req_t *req, int *from_query) {
  *from_query = 0;
  if (w->token == NULL) return SL__AUTH_OK;
  char got[300];
  int seen = 0;
  const char *h = sl_http_req_header(req, "authorization");
  if (h != NULL && strncasecmp(h, "bearer ", 7) == 0) {
    seen = 1;
    const char *t = h + 7;
    t += strspn(t, " ");
    if (strlen(t) < sizeof(got) && sl__token_eq(w, t)) return SL__AUTH_OK;
  }
  if (sl__query_param(req->query, "token", got, sizeof(got))) {
    seen = 1;
    if (sl__token_eq(w, got)) {
      *from_query = 1;
      return SL__AUTH_OK;
    }
  }
  /* Several Cookie headers may come; each is looked at. */
  for (int i = 0; i < req->nheaders; i++) {
    if (strcasecmp(req->headers[i].name, "cookie") != 0) continue;
    if (sl__cookie(req->headers[i].value, "sluice_admin", got, sizeof(got))) {
      seen = 1;
      if (sl__token_eq(w, got)) return SL__AUTH_OK;
    }
  }
  return seen ? SL__AUTH_WRONG : SL__AUTH_NONE;
}

/* ---- recent percentiles from the histograms ---- */

static void sl__sample_now(const sl_web_t *w, sl__web_sample_t *s) {
  const sl_gateway_t *gw = w->gw;
  sl_hist_init(&s->ttft, &sl_buckets_ttft);
  sl_hist_init(&s->tpot, &sl_buckets_tpot);
  for (int i = 0; i < gw->reg.neps; i++) {
    sl_hist_add(&s->ttft, &gw->reg.eps[i].h_ttft);
    sl_hist_add(&s->tpot, &gw->reg.eps[i].h_tpot);
  }
  s->tokens = sl_counter_get(&gw->counters, SL_C_TOKENS_RECEIVED);
  s->at = uv_hrtime();
}

/* The q-quantile of the observations in now minus then (same buckets),
 * interpolated linearly inside its bucket as Prometheus's
 * histogram_quantile does; above the last bound it is that bound.
 * Returns -1 when the window holds no observation. */
static double sl__quantile(const sl_hist_t *now, const sl_hist_t *then, double q) {
  uint64_t total = now->count - then->count;
  if (total == 0 || now->b == NULL) return -1;
  double rank = q * (double)total, seen = 0;
  const sl_buckets_t *b = now->b;
  for (int i = 0; i <= b->n; i++) {
    double c = (double)(now->counts[i] - then->counts[i]);
    if (seen + c >= rank && c > 0) {
      if (i == b->n) return b->le[b->n - 1];
      double lo = i == 0 ? 0 : b->le[i - 1], hi = b->le[i];
      return lo + (hi - lo) * (rank - seen) / c;
    }
    seen += c;
  }
  return b->le[b->n - 1];
}

static void sl__pair(cJSON *o, const char *name, double p50, double p99, double scale) {
  cJSON *x = cJSON_AddObjectToObject(o, name);
  if (p50 < 0) cJSON_AddNullToObject(x, "p50");
  else cJSON_AddNumberToObject(x, "p50", p50 * scale);
  if (p99 < 0) cJSON_AddNullToObject(x, "p99");
  else cJSON_AddNumberToObject(x, "p99", p99 * scale);
}

static void sl__percentiles(const sl_web_t *w, cJSON *root) {
  sl__web_sample_t now;
  sl__sample_now(w, &now);
  /* The oldest sample still in the window (one SL_WEB_WINDOW_S ago once
   * the ring is full); before the first tick, everything since start. */
  sl__web_sample_t zero;
  memset(&zero, 0, sizeof(zero));
  zero.at = w->gw->started_ns;
  const sl__web_sample_t *then = &zero;
  if (w->nsamples > 0) {
    uint64_t oldest = w->nsamples > SL__WEB_RING ? w->nsamples - SL__WEB_RING : 0;
    then = &w->ring[oldest % SL__WEB_RING];
  }
  cJSON *p = cJSON_AddObjectToObject(root, "recent");
  double dt = (double)(now.at - then->at) / 1e9;
  cJSON_AddNumberToObject(p, "window_s", dt);
  cJSON_AddNumberToObject(p, "throughput_tokens_per_s", dt > 0 ? (double)(now.tokens - then->tokens) / dt : 0);
  sl__pair(p, "ttft_ms", sl__quantile(&now.ttft, &then->ttft, 0.5), sl__quantile(&now.ttft, &then->ttft, 0.99),
           1000);
  double t50 = sl__quantile(&now.tpot, &then->tpot, 0.5), t99 = sl__quantile(&now.tpot, &then->tpot, 0.99);
  sl__pair(p, "itl_ms", t50, t99, 1000);
  /* A stream's decode speed is 1 / its time per token: the median speed is
   * 1 / the median time, and the 99th percentile speed (the fastest 1%)
   * 1 / the 1st percentile time. */
  double t01 = sl__quantile(&now.tpot, &then->tpot, 0.01);
  sl__pair(p, "tokens_per_s", t50 > 0 ? 1 / t50 : -1, t01 > 0 ? 1 / t01 : -1, 1);
  cJSON_AddNumberToObject(p, "ttft_samples", (double)(now.ttft.count - then->ttft.count));
  cJSON_AddNumberToObject(p, "itl_samples", (double)(now.tpot.count - then->tpot.count));
}

/* ---- the state snapshot ---- */

static cJSON *sl__state(const sl_web_t *w) {
  const sl_gateway_t *gw = w->gw;
  uint64_t now = uv_hrtime();
  struct timeval tv;
  gettimeofday(&tv, NULL);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "time_ms", (double)tv.tv_sec * 1000 + (double)(tv.tv_usec / 1000));
  cJSON_AddNumberToObject(o, "worker", gw->worker);
  cJSON_AddNumberToObject(o, "workers", gw->nworkers > 1 ? gw->nworkers : 1);
  cJSON_AddNumberToObject(o, "pid", (double)getpid());
  cJSON_AddNumberToObject(o, "uptime_s", (double)(now - gw->started_ns) / 1e9);
  cJSON_AddBoolToObject(o, "draining", gw->streams.draining);
  cJSON_AddNumberToObject(o, "generation", gw->gen ? (double)gw->gen->id : 0);
  cJSON_AddStringToObject(o, "policy", gw->gen ? gw->gen->phase[SL_PHASE_PLACEMENT].name : "");
  cJSON_AddNumberToObject(o, "streams_in_flight", gw->streams.n);
  cJSON_AddNumberToObject(o, "queued", gw->streams.nqueued);
  cJSON *pools = cJSON_AddArrayToObject(o, "pools");
  for (int i = 0; i < gw->reg.npools; i++) {
    const sl_pool_t *p = &gw->reg.pools[i];
    cJSON *po = cJSON_CreateObject();
    cJSON_AddStringToObject(po, "name", p->cfg->name);
    cJSON *models = cJSON_AddArrayToObject(po, "models");
    for (int m = 0; m < p->cfg->nmodels; m++) cJSON_AddItemToArray(models, cJSON_CreateString(p->cfg->models[m]));
    cJSON *q = cJSON_AddObjectToObject(po, "queue");
    cJSON_AddNumberToObject(q, "waiting", gw->streams.queues[i].n);
    cJSON_AddNumberToObject(q, "capacity", p->cfg->queue_size);
    cJSON_AddNumberToObject(q, "wait_ms", p->wait_ms);
    int ready = 0, streams = 0;
    cJSON *eps = cJSON_AddArrayToObject(po, "endpoints");
    for (int j = 0; j < p->neps; j++) {
      const sl_endpoint_t *ep = &p->eps[j];
      ready += ep->ready && !ep->draining;
      streams += ep->inflight;
      cJSON *e = cJSON_CreateObject();
      cJSON_AddStringToObject(e, "name", ep->name);
      cJSON_AddNumberToObject(e, "id", ep->id);
      cJSON_AddBoolToObject(e, "ready", ep->ready);
      cJSON_AddBoolToObject(e, "draining", ep->draining);
      cJSON_AddBoolToObject(e, "simulated", sl_gateway_sim(gw, ep) != NULL);
      /* A managed engine (gateway/engines.c): its process starting, or none running. */
      cJSON_AddBoolToObject(e, "starting", ep->starting);
      cJSON_AddBoolToObject(e, "down", ep->down);
      cJSON_AddNumberToObject(e, "streams", ep->inflight);
      cJSON_AddNumberToObject(e, "limit", ep->limit);
      cJSON_AddNumberToObject(e, "slots", ep->slots);
      cJSON_AddNumberToObject(e, "cooldown_ms",
                              ep->cooldown_until > now ? (double)(ep->cooldown_until - now) / 1e6 : 0);
      cJSON_AddNumberToObject(e, "requests", (double)ep->requests);
      cJSON_AddNumberToObject(e, "errors", (double)ep->errors);
      cJSON_AddNumberToObject(e, "ttft_ms", ep->ewma_ttft_ms);
      cJSON_AddNumberToObject(e, "itl_ms", ep->ewma_itl_ms);
      cJSON_AddNumberToObject(e, "tokens_per_s", ep->tokens_per_s);
      cJSON_AddItemToArray(eps, e);
    }
    cJSON_AddNumberToObject(po, "ready", ready);
    cJSON_AddNumberToObject(po, "streams", streams);
    cJSON_AddItemToArray(pools, po);
  }
  cJSON *list = cJSON_AddArrayToObject(o, "streams");
  int n = 0;
  for (const sl_stream_t *st = sl_relay_stream_next(&gw->streams, NULL); st != NULL && n < SL_WEB_STREAMS_MAX;
       st = sl_relay_stream_next(&gw->streams, st), n++) {
    sl_stream_info_t in;
    sl_relay_stream_info(st, now, &in);
    cJSON *s = cJSON_CreateObject();
    char safe[160];
    cJSON_AddStringToObject(s, "id", sl_log_redact(gw->nar, in.id ? in.id : "", safe, sizeof(safe)));
    if (in.tenant) cJSON_AddStringToObject(s, "tenant", in.tenant);
    else cJSON_AddNullToObject(s, "tenant");
    if (in.endpoint) cJSON_AddStringToObject(s, "endpoint", in.endpoint);
    else cJSON_AddNullToObject(s, "endpoint");
    if (in.pool) cJSON_AddStringToObject(s, "pool", in.pool);
    else cJSON_AddNullToObject(s, "pool");
    cJSON_AddStringToObject(s, "model", in.model ? in.model : "");
    cJSON_AddStringToObject(s, "state", in.state ? in.state : "");
    cJSON_AddNumberToObject(s, "tokens", (double)in.tokens);
    cJSON_AddNumberToObject(s, "tokens_written", (double)in.tokens_written);
    /* Its decode speed so far: tokens after the first over the time since
     * the first. */
    double since_first = in.ttft_ms >= 0 ? in.age_ms - in.ttft_ms : 0;
    cJSON_AddNumberToObject(s, "tokens_per_s",
                            in.tokens > 1 && since_first > 0 ? (double)(in.tokens - 1) * 1000 / since_first : 0);
    cJSON_AddNumberToObject(s, "age_ms", in.age_ms);
    if (in.ttft_ms >= 0) cJSON_AddNumberToObject(s, "ttft_ms", in.ttft_ms);
    else cJSON_AddNullToObject(s, "ttft_ms");
    cJSON_AddNumberToObject(s, "attempts", in.attempts);
    cJSON *g = cJSON_AddArrayToObject(s, "guards");
    if (in.guard && in.guard[0]) cJSON_AddItemToArray(g, cJSON_CreateString(in.guard));
    cJSON_AddNumberToObject(s, "held", in.held);
    cJSON_AddNumberToObject(s, "priority", in.priority);
    cJSON_AddItemToArray(list, s);
  }
  sl__percentiles(w, o);
  cJSON *c = cJSON_AddObjectToObject(o, "counters");
  static const sl_counter_id_t shown[] = {SL_C_STREAMS_STARTED,     SL_C_STREAMS_COMPLETED, SL_C_TOKENS_RECEIVED,
                                          SL_C_CANCELS,             SL_C_RETRIES,           SL_C_GUARD_STOP,
                                          SL_C_GUARD_REDACTION,     SL_C_GUARD_BUDGET,      SL_C_GUARD_LOOP,
                                          SL_C_GUARD_LTL,           SL_C_QUEUE_TIMEOUTS,    SL_C_NARRATION_DROPPED,
                                          SL_C_ADMIN_HTTP_REQUESTS, SL_C_ADMIN_HTTP_UNAUTHORIZED};
  for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
    cJSON_AddNumberToObject(c, sl_counter_name(shown[i]), (double)sl_counter_get(&gw->counters, shown[i]));
  return o;
}

/* ---- server-sent events ---- */

static void sl__client_free(sl__web_client_t *c) {
  sl_web_t *w = c->w;
  if (c->prev) c->prev->next = c->next;
  else w->clients = c->next;
  if (c->next) c->next->prev = c->prev;
  w->nclients--;
  sl_free(c);
}

static void sl__client_abort(sl_http_req_t *req) { sl__client_free(req->data); }

/* Sends msg[0..len) to one events client (only), or to every one (only
 * NULL): copied once into pool chunks, each chunk pinned by every client's
 * write until sent.  A client that holds too much unsent is cut (it
 * reconnects, as EventSource does).  Returns 0 when only was given and is
 * gone now (freed), else 1. */
static int sl__send(sl_web_t *w, sl__web_client_t *only, const char *msg, size_t len) {
  if (w->clients == NULL) return 1;
  int alive = 1;
  for (size_t off = 0; off < len;) {
    sl_chunk_t *ch = sl_chunk_get(&w->pool);
    size_t n = len - off < ch->cap ? len - off : ch->cap;
    memcpy(ch->data, msg + off, n);
    ch->len = (uint32_t)n;
    uv_buf_t b = uv_buf_init((char *)ch->data, (unsigned)n);
    for (sl__web_client_t *c = only ? only : w->clients; c != NULL; c = only ? NULL : c->next)
      if (!c->ended && sl_http_stream_write(c->req, &b, 1, ch) < 0) c->ended = 1;
    sl_chunk_unref(ch);
    off += n;
  }
  /* A failed write ended the request without on_abort (http_server.h):
   * the client goes now, before anything could touch its request again. */
  for (sl__web_client_t *c = only ? only : w->clients, *next; c != NULL; c = next) {
    next = only ? NULL : c->next;
    if (c->ended) {
      sl__client_free(c);
      alive = 0;
    } else if (sl_http_req_write_held(c->req) > SL_WEB_CLIENT_HELD_MAX) {
      sl_http_req_reset(c->req); /* no on_abort after this */
      sl__client_free(c);
      alive = 0;
    }
  }
  return only == NULL || alive;
}

/* "event: NAME\ndata: JSON\n\n" appended to *buf (grown as needed). */
static void sl__event(char **buf, size_t *len, size_t *cap, const char *name, cJSON *o) {
  char *s = cJSON_PrintUnformatted(o);
  size_t need = strlen(name) + strlen(s) + 32;
  if (*len + need > *cap) {
    *cap = (*len + need) * 2;
    *buf = sl_realloc(*buf, *cap);
  }
  *len += (size_t)snprintf(*buf + *len, *cap - *len, "event: %s\ndata: %s\n\n", name, s);
  cJSON_free(s);
}

/* Returns as sl__send. */
static int sl__send_state(sl_web_t *w, sl__web_client_t *only) {
  cJSON *o = sl__state(w);
  char *buf = NULL;
  size_t len = 0, cap = 0;
  sl__event(&buf, &len, &cap, "state", o);
  cJSON_Delete(o);
  int alive = sl__send(w, only, buf, len);
  sl_free(buf);
  return alive;
}

/* The narrator's tap: one batch, once, to every events client. */
static void sl__on_told(void *ud, const sl_narrate_told_t *told, int32_t n) {
  sl_web_t *w = ud;
  if (n <= 0) return;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  double ts = (double)tv.tv_sec * 1000 + (double)(tv.tv_usec / 1000);
  char *buf = NULL;
  size_t len = 0, cap = 0;
  char safe[256];
  for (int32_t i = 0; i < n; i++) {
    const sl_ffi_narration_event_t *e = told[i].event;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "ts", ts);
    cJSON_AddStringToObject(o, "kind", sl_narrate_kind_name(e->kind));
    cJSON_AddStringToObject(o, "sentence", told[i].sentence);
    if (e->request_id[0])
      cJSON_AddStringToObject(o, "request_id", sl_log_redact(w->gw->nar, e->request_id, safe, sizeof(safe)));
    if (e->endpoint[0]) cJSON_AddStringToObject(o, "endpoint", e->endpoint);
    if (e->model[0]) cJSON_AddStringToObject(o, "model", sl_log_redact(w->gw->nar, e->model, safe, sizeof(safe)));
    if (e->generation) cJSON_AddNumberToObject(o, "generation", (double)e->generation);
    cJSON_AddNumberToObject(o, "tokens", (double)e->tokens);
    if (e->kind == SL_NAR_GUARD) {
      /* text is "name action: detail" (relay.c): the name alone is safe to show. */
      size_t k = strcspn(e->text, " ");
      char guard[64];
      snprintf(guard, sizeof(guard), "%.*s", (int)(k < sizeof(guard) - 1 ? k : sizeof(guard) - 1), e->text);
      cJSON_AddStringToObject(o, "guard", guard);
    }
    size_t at = len;
    sl__event(&buf, &len, &cap, e->kind == SL_NAR_GUARD ? "guard" : "narration", o);
    cJSON_Delete(o);
    /* The last few are kept for clients that connect later. */
    char **slot = &w->recent[w->nrecent++ % SL__WEB_RECENT];
    sl_free(*slot);
    *slot = sl_strndup(buf + at, len - at);
  }
  sl__send(w, NULL, buf, len);
  sl_free(buf);
}

static void sl__events(sl_web_t *w, sl_http_req_t *req) {
  if (sl_http_stream_start(req, 200, "text/event-stream",
                           "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\n") < 0)
    return;
  sl__web_client_t *c = sl_calloc(1, sizeof(*c));
  c->w = w;
  c->req = req;
  req->data = c;
  req->on_abort = sl__client_abort;
  c->next = w->clients;
  if (w->clients) w->clients->prev = c;
  w->clients = c;
  w->nclients++;
  static const char hello[] = "retry: 2000\n\n";
  uv_buf_t b = uv_buf_init((char *)hello, sizeof(hello) - 1); /* static: valid until sent */
  if (sl_http_stream_write(req, &b, 1, NULL) < 0) {
    sl__client_free(c); /* the request ended with the write */
    return;
  }
  if (!sl__send_state(w, c)) return; /* gone already */
  /* Then the recent narration, oldest first, so the feed is not empty. */
  size_t len = 0, cap = 0;
  char *buf = NULL;
  uint64_t first = w->nrecent > SL__WEB_RECENT ? w->nrecent - SL__WEB_RECENT : 0;
  for (uint64_t i = first; i < w->nrecent; i++) {
    const char *ev = w->recent[i % SL__WEB_RECENT];
    size_t n = strlen(ev);
    if (len + n + 1 > cap) {
      cap = (len + n + 1) * 2;
      buf = sl_realloc(buf, cap);
    }
    memcpy(buf + len, ev, n);
    len += n;
  }
  if (len > 0) sl__send(w, c, buf, len);
  sl_free(buf);
}

static void sl__on_tick(uv_timer_t *t) {
  sl_web_t *w = t->data;
  sl__sample_now(w, &w->ring[w->nsamples % SL__WEB_RING]);
  w->nsamples++;
  if (w->clients != NULL) sl__send_state(w, NULL);
}

/* ---- drain and undrain ---- */

static sl_endpoint_t *sl__find_endpoint(sl_registry_t *reg, const char *name) {
  for (int i = 0; i < reg->neps; i++)
    if (strcmp(reg->eps[i].name, name) == 0) return &reg->eps[i];
  char *end;
  long id = strtol(name, &end, 10);
  if (*name && *end == '\0' && id >= 0 && id < reg->neps) return &reg->eps[id];
  return NULL;
}

static void sl__drain(sl_web_t *w, sl_http_req_t *req, const char *name, int on) {
  sl_gateway_t *gw = w->gw;
  sl_endpoint_t *ep = sl__find_endpoint(&gw->reg, name);
  if (ep == NULL) {
    char list[1024];
    size_t n = 0;
    list[0] = '\0';
    for (int i = 0; i < gw->reg.neps && n < sizeof(list); i++)
      n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "", gw->reg.eps[i].name);
    sl__error(req, 404, "unknown_endpoint", NULL, "no endpoint \"%.200s\" (endpoints: %s)", name, list);
    return;
  }
  int changed = sl_endpoint_set_draining(ep, on);
  char msg[400];
  if (!changed)
    snprintf(msg, sizeof(msg), "%s was already %s", ep->name, on ? "draining" : "taking new streams");
  else if (on)
    snprintf(msg, sizeof(msg), "%s is draining: new streams avoid it; its %d stream(s) in flight go on", ep->name,
             ep->inflight);
  else
    snprintf(msg, sizeof(msg), "%s takes new streams again", ep->name);
  if (changed) {
    fprintf(gw->log, "sluice: admin web view: endpoint %s %s\n", ep->name,
            on ? "draining: new streams avoid it" : "takes new streams again");
    fflush(gw->log);
    if (!on) sl_relay_kick(&gw->streams); /* requests queued for room may go there now */
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddBoolToObject(o, "ok", 1);
  cJSON_AddStringToObject(o, "endpoint", ep->name);
  cJSON_AddBoolToObject(o, "draining", ep->draining);
  cJSON_AddBoolToObject(o, "changed", changed);
  cJSON_AddNumberToObject(o, "streams", ep->inflight);
  cJSON_AddStringToObject(o, "message", msg);
  if (changed && w->clients != NULL) {
    /* The page's feed shows it among the narration. */
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "kind", on ? "drain" : "undrain");
    cJSON_AddStringToObject(ev, "endpoint", ep->name);
    cJSON_AddStringToObject(ev, "sentence", msg);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    sl__event(&buf, &len, &cap, "admin", ev);
    cJSON_Delete(ev);
    sl__send(w, NULL, buf, len);
    sl_free(buf);
  }
  sl__json_reply(req, 200, o, NULL);
}

/* A POST must come from this listener's own page (or from no page at all:
 * curl sends no Origin). */
static int sl__same_origin(const sl_http_req_t *req) {
  const char *origin = sl_http_req_header(req, "origin");
  if (origin == NULL) return 1;
  const char *host = sl_http_req_header(req, "host");
  if (host == NULL) return 0;
  const char *o = strncmp(origin, "http://", 7) == 0 ? origin + 7 : NULL;
  return o != NULL && strcmp(o, host) == 0;
}

/* ---- static files ---- */

static void sl__file(sl_http_req_t *req, const char *name, const char *type, const char *cookie) {
  char path[700];
  snprintf(path, sizeof(path), "%s/%s", sl_web_dir(), name);
  char *body;
  size_t len;
  if (sl_read_file(path, 4u << 20, &body, &len) < 0) {
    sl__error(req, 404, "no_web_files", NULL,
              "%s is missing: the page's files are not installed (set SLUICE_WEB_DIR to the web/ folder)", path);
    return;
  }
  /* The page loads nothing from anywhere else and runs no inline script. */
  char headers[700];
  snprintf(headers, sizeof(headers),
           "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
           "Content-Security-Policy: default-src 'self'; img-src 'self' data:; frame-ancestors 'none'\r\n%s",
           cookie ? cookie : "");
  sl_http_respond(req, 200, type, body, len, headers);
  sl_free(body);
}

/* ---- routing ---- */

static void sl__handle(sl_http_req_t *req, void *ud) {
  sl_web_t *w = ud;
  sl_gateway_t *gw = w->gw;
  sl_counter_inc(&gw->counters, SL_C_ADMIN_HTTP_REQUESTS);
  int from_query;
  sl__auth_t auth = sl__auth(w, req, &from_query);
  if (auth != SL__AUTH_OK) {
    sl_counter_inc(&gw->counters, SL_C_ADMIN_HTTP_UNAUTHORIZED);
    if (auth == SL__AUTH_WRONG)
      sl__error(req, 401, "wrong_token", "WWW-Authenticate: Bearer realm=\"sluice admin\"\r\n",
                "wrong admin token: this view wants admin_http.token from sluice's configuration");
    else
      sl__error(req, 401, "token_required", "WWW-Authenticate: Bearer realm=\"sluice admin\"\r\n",
                "this view needs admin_http.token from sluice's configuration: open /?token=TOKEN in a browser, "
                "or send \"Authorization: Bearer TOKEN\"");
    return;
  }
  const char *path = req->path;
  int get = strcmp(req->method_name, "GET") == 0, post = strcmp(req->method_name, "POST") == 0;
  static const struct {
    const char *path, *file, *type;
  } files[] = {
      {"/", "index.html", "text/html; charset=utf-8"},
      {"/index.html", "index.html", "text/html; charset=utf-8"},
      {"/app.js", "app.js", "text/javascript; charset=utf-8"},
      {"/style.css", "style.css", "text/css; charset=utf-8"},
  };
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    if (strcmp(path, files[i].path) != 0) continue;
    if (!get) {
      sl__error(req, 405, "method_not_allowed", "Allow: GET\r\n", "%s takes GET", path);
      return;
    }
    char cookie[400] = "";
    if (from_query && w->token != NULL) /* the page's own requests carry the token from now on */
      snprintf(cookie, sizeof(cookie), "Set-Cookie: sluice_admin=%s; Path=/; HttpOnly; SameSite=Strict\r\n",
               w->token);
    sl__file(req, files[i].file, files[i].type, cookie);
    return;
  }
  if (strcmp(path, "/api/state") == 0 || strcmp(path, "/api/events") == 0) {
    if (!get) {
      sl__error(req, 405, "method_not_allowed", "Allow: GET\r\n", "%s takes GET", path);
      return;
    }
    if (path[5] == 's') sl__json_reply(req, 200, sl__state(w), NULL);
    else sl__events(w, req);
    return;
  }
  static const char eps[] = "/api/endpoints/";
  if (strncmp(path, eps, sizeof(eps) - 1) == 0) {
    const char *name = path + sizeof(eps) - 1;
    const char *slash = strrchr(name, '/');
    int on = slash && strcmp(slash, "/drain") == 0, off = slash && strcmp(slash, "/undrain") == 0;
    if (slash != NULL && slash > name && (on || off)) {
      if (!post) {
        sl__error(req, 405, "method_not_allowed", "Allow: POST\r\n", "%s takes POST", path);
        return;
      }
      if (!sl__same_origin(req)) {
        sl__error(req, 403, "cross_origin", NULL, "a drain must come from this view's own page (Origin %.200s)",
                  sl_http_req_header(req, "origin"));
        return;
      }
      char decoded[320];
      if (sl__pct_decode(name, (size_t)(slash - name), decoded, sizeof(decoded)) < 0) {
        sl__error(req, 400, "bad_endpoint", NULL, "the endpoint name in %.200s is not valid", path);
        return;
      }
      sl__drain(w, req, decoded, on);
      return;
    }
  }
  sl__error(req, 404, "not_found", NULL,
            "no such page: %.200s (GET /, /api/state, /api/events; POST /api/endpoints/NAME/drain or /undrain)",
            path);
}

/* ---- life ---- */

static void sl__maybe_done(sl_web_t *w) {
  if (--w->open > 0) return;
  for (int i = 0; i < SL__WEB_RECENT; i++) sl_free(w->recent[i]);
  sl_chunk_pool_destroy(&w->pool);
  void (*cb)(void *) = w->close_cb;
  void *ud = w->close_ud;
  sl_free(w);
  if (cb) cb(ud);
}

static void sl__tick_closed(uv_handle_t *h) { sl__maybe_done(h->data); }
static void sl__http_closed(void *ud) { sl__maybe_done(ud); }

int sl_web_start(sl_web_t **out, sl_gateway_t *gw, const char *host, int port, const char *token) {
  sl_web_t *w = sl_calloc(1, sizeof(*w));
  w->gw = gw;
  w->token = token;
  w->token_len = token ? strlen(token) : 0;
  sl_chunk_pool_init(&w->pool, SL__WEB_CHUNK, 4);
  sl_http_limits_t lim = gw->cfg->http;
  lim.max_body_bytes = 4096;   /* drain and undrain take no body */
  lim.max_connections = 64;    /* a few browsers and scripts */
  if (strcmp(host, "localhost") == 0) host = "127.0.0.1"; /* the server takes address literals */
  int rc = sl_http_server_init(&w->http, gw->loop, host, port, &lim, sl__handle, w);
  if (rc < 0) {
    sl_chunk_pool_destroy(&w->pool);
    sl_free(w);
    return rc;
  }
  w->port = sl_http_server_port(w->http);
  uv_timer_init(gw->loop, &w->tick);
  w->tick.data = w;
  uv_timer_start(&w->tick, sl__on_tick, SL__WEB_TICK_MS, SL__WEB_TICK_MS);
  uv_unref((uv_handle_t *)&w->tick); /* the view never keeps the daemon up by itself */
  w->open = 2;
  sl_narrate_set_tap(gw->nar, sl__on_told, w);
  *out = w;
  return 0;
}

int sl_web_port(const sl_web_t *w) { return w->port; }

void sl_web_close(sl_web_t *w, void (*cb)(void *), void *ud) {
  w->close_cb = cb;
  w->close_ud = ud;
  /* No batch reaches the view from here on; the events clients are cut by
   * the server's close (their on_abort frees them). */
  sl_narrate_set_tap(w->gw->nar, NULL, NULL);
  uv_timer_stop(&w->tick);
  uv_close((uv_handle_t *)&w->tick, sl__tick_closed);
  sl_http_server_close(w->http, sl__http_closed, w);
}
