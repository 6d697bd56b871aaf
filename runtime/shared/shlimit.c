/* shlimit.c: shared windows (see shlimit.h): the two scripts, the local
 * estimate, and the batched counts.  Uses base (allocator, errors) and the
 * Redis client. */
#include "runtime/shared/shlimit.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"

/* ARGV: delta, window ms.  A negative count never opens a window. */
static const char sl__window_lua[] =
    "local d = tonumber(ARGV[1])\n"
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then\n"
    "  if d <= 0 then return {0, 0} end\n"
    "  redis.call('SET', KEYS[1], d, 'PX', ARGV[2])\n"
    "  return {d, tonumber(ARGV[2])}\n"
    "end\n"
    "local n = redis.call('INCRBY', KEYS[1], d)\n"
    "local t = redis.call('PTTL', KEYS[1])\n"
    "if t < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]); t = tonumber(ARGV[2]) end\n"
    "return {n, t}\n";

/* ARGV: delta, period ms, limit.  The key holds the TAT in ms on Redis's
 * clock; the answer is what the bucket holds after the count, in units. */
static const char sl__gcra_lua[] =
    "local d = tonumber(ARGV[1])\n"
    "local interval = tonumber(ARGV[2]) / tonumber(ARGV[3])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000\n"
    "local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
    "if tat < now then tat = now end\n"
    "tat = tat + d * interval\n"
    "if tat <= now then redis.call('DEL', KEYS[1]); return {0, 0} end\n"
    "redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1)\n"
    "return {math.ceil((tat - now) / interval), 0}\n";

struct sl_shwin_s {
  sl_shlimits_t *set;
  sl_shwin_t *next;
  char *key;
  sl_shl_kind_t kind;
  int64_t limit, period_ms, batch;
  int64_t base;       /* what Redis said the key held after the last confirmed call */
  uint64_t base_at;   /* when that answer came (sl_shlimits_now) */
  int64_t left_ms;    /* window: its remaining lifetime then */
  int64_t pending;    /* counted, not sent (net) */
  int64_t pend_pos;   /* ... of which admitted (positive counts) */
  int64_t inflight;   /* sent, not answered (net) */
  int64_t infl_pos;   /* ... of which admitted */
  int busy;           /* a call is in flight */
};

struct sl_shlimits_s {
  sl_redis_t *r;
  int script[2];      /* by kind */
  sl_shwin_t *wins;
  sl_shlimits_stats_t st;
};

uint64_t sl_shlimits_now(void) { return uv_hrtime() / 1000000u; }

int sl_shlimits_new(sl_shlimits_t **out, sl_redis_t *r) {
  sl_shlimits_t *s = sl_calloc(1, sizeof(*s));
  if (s == NULL) return SL_ENOMEM;
  s->r = r;
  if (sl_redis_script(r, sl__window_lua, &s->script[SL_SHL_WINDOW]) < 0 ||
      sl_redis_script(r, sl__gcra_lua, &s->script[SL_SHL_GCRA]) < 0) {
    sl_free(s);
    return SL_ENOMEM;
  }
  *out = s;
  return 0;
}

void sl_shlimits_free(sl_shlimits_t *s) {
  if (s == NULL) return;
  for (sl_shwin_t *w = s->wins, *next; w != NULL; w = next) {
    next = w->next;
    sl_free(w->key);
    sl_free(w);
  }
  sl_free(s);
}

void sl_shlimits_stats(const sl_shlimits_t *s, sl_shlimits_stats_t *out) { *out = s->st; }

sl_shwin_t *sl_shwin_new(sl_shlimits_t *s, const char *key, sl_shl_kind_t kind, int64_t limit, int64_t period_ms,
                         int64_t batch) {
  if (limit <= 0 || period_ms <= 0 || batch <= 0) return NULL;
  sl_shwin_t *w = sl_calloc(1, sizeof(*w));
  if (w == NULL) return NULL;
  size_t n = strlen(key);
  w->key = sl_malloc(n + 1);
  if (w->key == NULL) {
    sl_free(w);
    return NULL;
  }
  memcpy(w->key, key, n + 1);
  w->set = s;
  w->kind = kind;
  w->limit = limit;
  w->period_ms = period_ms;
  w->batch = batch;
  w->next = s->wins;
  s->wins = w;
  return w;
}

/* What the key holds now by the last answer: an ended window holds
 * nothing, a bucket has drained since. */
static int64_t sl__base_now(const sl_shwin_t *w, uint64_t now) {
  uint64_t age = now - w->base_at;
  if (w->kind == SL_SHL_WINDOW) return (int64_t)age >= w->left_ms ? 0 : w->base;
  double drained = (double)age * (double)w->limit / (double)w->period_ms;
  return drained >= (double)w->base ? 0 : w->base - (int64_t)drained;
}

int sl_shwin_check(sl_shwin_t *w, int64_t need, int64_t *used, int64_t *retry_ms) {
  uint64_t now = sl_shlimits_now();
  int64_t u = sl__base_now(w, now) + w->inflight + w->pending;
  if (u < 0) u = 0;
  *used = u;
  *retry_ms = 0;
  if (!sl_redis_up(w->set->r)) return SL_EAGAIN;
  int64_t unconfirmed = w->pend_pos + w->infl_pos;
  if (unconfirmed > 0 && unconfirmed + need > w->batch) {
    w->set->st.over_allowance++;
    return SL_EAGAIN;
  }
  if (need <= w->limit - u) return 0;
  if (w->kind == SL_SHL_WINDOW) {
    int64_t left = w->left_ms - (int64_t)(now - w->base_at);
    *retry_ms = left > 0 ? left : 1;
  } else {
    double excess = (double)(u + need - w->limit);
    *retry_ms = (int64_t)(excess * (double)w->period_ms / (double)w->limit) + 1;
  }
  return SL_ETOOBIG;
}

static void sl__flush(sl_shwin_t *w);

static void sl__answered(sl_redis_t *r, const redisReply *reply, int status, void *ud) {
  (void)r;
  sl_shwin_t *w = ud;
  sl_shlimits_t *s = w->set;
  w->busy = 0;
  if (status == 0 && reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
      reply->element[0]->type == REDIS_REPLY_INTEGER && reply->element[1]->type == REDIS_REPLY_INTEGER) {
    s->st.confirmed++;
    w->base = reply->element[0]->integer;
    w->left_ms = reply->element[1]->integer;
    w->base_at = sl_shlimits_now();
  } else {
    /* Applied or not, Redis did not say: the units leave the estimate and
     * the next answer brings the truth. */
    s->st.lost++;
    s->st.dropped_units += (uint64_t)(w->infl_pos);
  }
  w->inflight = 0;
  w->infl_pos = 0;
  if (status != SL_ECANCELED && (w->pending != 0 || w->pend_pos != 0)) sl__flush(w);
}

static void sl__flush(sl_shwin_t *w) {
  sl_shlimits_t *s = w->set;
  char delta[24], arg2[24], arg3[24];
  const char *argv[4] = {w->key, delta, arg2, arg3};
  size_t len[4];
  len[0] = strlen(w->key);
  len[1] = (size_t)snprintf(delta, sizeof(delta), "%" PRId64, w->pending);
  len[2] = (size_t)snprintf(arg2, sizeof(arg2), "%" PRId64, w->period_ms);
  len[3] = (size_t)snprintf(arg3, sizeof(arg3), "%" PRId64, w->limit);
  int argc = w->kind == SL_SHL_WINDOW ? 3 : 4;
  int rc = sl_redis_evalsha(s->r, s->script[w->kind], 1, argc, argv, len, sl__answered, w);
  if (rc < 0) {
    s->st.dropped_units += (uint64_t)w->pend_pos;
    w->pending = 0;
    w->pend_pos = 0;
    return;
  }
  s->st.flushes++;
  w->busy = 1;
  w->inflight = w->pending;
  w->infl_pos = w->pend_pos;
  w->pending = 0;
  w->pend_pos = 0;
}

void sl_shwin_add(sl_shwin_t *w, int64_t delta) {
  if (delta == 0) return;
  w->pending += delta;
  if (delta > 0) w->pend_pos += delta;
  if (!w->busy) sl__flush(w);
}

int sl_shwin_idle(const sl_shwin_t *w) { return !w->busy && w->pending == 0 && w->pend_pos == 0; }
