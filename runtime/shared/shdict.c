/* shdict.c: the TTL dictionary's replicator over Redis (shdict.h).
 *
 * The dictionary's hook (runtime/lua/ttldict.h) hands every local write to
 * sl__on_write, which sends one EVALSHA (write + PUBLISH, atomic in Redis),
 * and every local miss to sl__on_miss, which only notes the key in a fixed
 * slot and arms a zero timer; the timer sends the fetches, so the get path
 * neither allocates nor enters the Redis client.  The subscription
 * (sl__on_message) and the fetch replies change the local store through
 * the sl_ttldict_apply_* functions, which do not call the hook back.
 *
 * Lifetime: every command in flight carries a pointer into the replicator,
 * so sl_shdict_detach only marks it detached; it is freed when the last
 * answer has come (the client answers everything, SL_ECANCELED when it
 * closes) and its timer has closed.
 */
#include "runtime/shared/shdict.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"

/* A TTL longer than this (about 31 years) goes to Redis as this: PX must
 * keep Redis's absolute expiry within a long long of milliseconds. */
#define SL__MAX_TTL_MS 1000000000000LL
#define SL__MAX_PREFIX 200

/* The scripts.  KEYS[1] is always "<prefix>d:<key>"; the message header
 * ("SL1 <op> <instance> ") comes from the caller, and the dictionary key is
 * KEYS[1] from position keyoff on.  Redis hands integers to Lua as doubles,
 * so values travel as the strings GET returns, and TTLs are formatted with
 * %d. */

/* ARGV: value, ttl_ms, channel, header, keyoff. */
static const char sl__lua_set[] =
  "local k = KEYS[1]\n"
  "if tonumber(ARGV[2]) > 0 then redis.call('SET', k, ARGV[1], 'PX', ARGV[2])\n"
  "else redis.call('SET', k, ARGV[1]) end\n"
  "local dk = string.sub(k, tonumber(ARGV[5]))\n"
  "redis.call('PUBLISH', ARGV[3], ARGV[4] .. ARGV[2] .. ' ' .. #dk .. '\\n' .. dk .. ARGV[1])\n"
  "return 1\n";

/* ARGV: value, ttl_ms, channel, header (op 'a'), keyoff, header (op 's').
 * Returns 1 when it added, 0 when a live value was there (published as a
 * set, so the adder converges on it in order with everything else). */
static const char sl__lua_add[] =
  "local k = KEYS[1]\n"
  "local ok\n"
  "if tonumber(ARGV[2]) > 0 then ok = redis.call('SET', k, ARGV[1], 'NX', 'PX', ARGV[2])\n"
  "else ok = redis.call('SET', k, ARGV[1], 'NX') end\n"
  "local dk = string.sub(k, tonumber(ARGV[5]))\n"
  "if ok then\n"
  "  redis.call('PUBLISH', ARGV[3], ARGV[4] .. ARGV[2] .. ' ' .. #dk .. '\\n' .. dk .. ARGV[1])\n"
  "  return 1\n"
  "end\n"
  "local v = redis.call('GET', k)\n"
  "local p = redis.call('PTTL', k)\n"
  "if p < 0 then p = 0 end\n"
  "redis.call('PUBLISH', ARGV[3], ARGV[6] .. string.format('%d', p) .. ' ' .. #dk .. '\\n' .. dk .. v)\n"
  "return 0\n";

/* ARGV: by, seed (the local sum), ttl_ms (the local entry's remaining),
 * channel, header, keyoff.  Returns the value now in Redis. */
static const char sl__lua_incr[] =
  "local k = KEYS[1]\n"
  "if redis.call('EXISTS', k) == 1 then redis.call('INCRBY', k, ARGV[1])\n"
  "elseif tonumber(ARGV[3]) > 0 then redis.call('SET', k, ARGV[2], 'PX', ARGV[3])\n"
  "else redis.call('SET', k, ARGV[2]) end\n"
  "local v = redis.call('GET', k)\n"
  "local p = redis.call('PTTL', k)\n"
  "if p < 0 then p = 0 end\n"
  "local dk = string.sub(k, tonumber(ARGV[6]))\n"
  "redis.call('PUBLISH', ARGV[4], ARGV[5] .. string.format('%d', p) .. ' ' .. #dk .. '\\n' .. dk .. v)\n"
  "return v\n";

/* ARGV: channel, header, keyoff. */
static const char sl__lua_del[] =
  "local k = KEYS[1]\n"
  "redis.call('DEL', k)\n"
  "local dk = string.sub(k, tonumber(ARGV[3]))\n"
  "redis.call('PUBLISH', ARGV[1], ARGV[2] .. '0 ' .. #dk .. '\\n' .. dk)\n"
  "return 1\n";

/* No ARGV.  Returns nil, or {value, remaining ms (0 = none)}. */
static const char sl__lua_get[] =
  "local v = redis.call('GET', KEYS[1])\n"
  "if not v then return false end\n"
  "local p = redis.call('PTTL', KEYS[1])\n"
  "if p < 0 then p = 0 end\n"
  "return {v, p}\n";

enum { SL__FILL_FREE, SL__FILL_QUEUED, SL__FILL_INFLIGHT, SL__FILL_EMPTY };

/* One remembered miss. */
typedef struct {
  sl_shdict_t *s;   /* the owner (a fetch's ud is the slot) */
  int state;        /* SL__FILL_* */
  int superseded;   /* a message about the key arrived while in flight */
  uint64_t hash;    /* of the key, a fast reject */
  uint64_t until;   /* EMPTY: loop time until which the key is not fetched */
  uint32_t klen;    /* key bytes */
  char *key;        /* max_fill_key bytes, in the replicator's one block */
} sl__fill_t;

struct sl_shdict_s {
  uv_loop_t *loop;
  sl_ttldict_t *d;          /* the dictionary (NULL once detached) */
  sl_redis_t *r;            /* the client (not used once detached) */
  uint64_t instance_id;
  char channel[SL__MAX_PREFIX + 8];  /* "<prefix>dict" */
  size_t channel_len;
  char keyoff[16];          /* 1-based offset of the dictionary key in KEYS[1], decimal */
  size_t keyoff_len;
  char head[4][32];         /* "SL1 <op> <instance> " for s, a, i, d */
  size_t head_len;          /* all four have the same length */
  int sid_set, sid_add, sid_incr, sid_del, sid_get; /* script ids */
  char *kbuf;               /* "<prefix>d:" then room for the longest key */
  size_t plen;              /* bytes of "<prefix>d:" */
  sl__fill_t *fills;        /* max_fills slots */
  uint32_t max_fills, max_fill_key, max_pending_writes;
  uint64_t negative_ms;
  size_t max_value;
  uint32_t queued;          /* slots QUEUED */
  uint32_t pending_writes;  /* write scripts awaiting their answer */
  uv_timer_t timer;         /* sends queued fetches on the next loop turn */
  bool detached;
  bool timer_closed;
  sl_shdict_stats_t st;
};

enum { SL__H_SET, SL__H_ADD, SL__H_INCR, SL__H_DEL };

/* FNV-1a: the hash only rejects non-matching slots quickly. */
static uint64_t sl__hash(const char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
  return h;
}

static void sl__maybe_free(sl_shdict_t *s) {
  if (!s->detached || !s->timer_closed || s->st.pending) return;
  sl_free(s->fills);
  sl_free(s->kbuf);
  sl_free(s);
}

/* "<prefix>d:<key>" in kbuf; returns its length. */
static size_t sl__rkey(sl_shdict_t *s, const char *key, size_t klen) {
  memcpy(s->kbuf + s->plen, key, klen);
  return s->plen + klen;
}

/* ------------------------------------------------------------------ */
/* Writes.                                                              */

static void sl__write_done(sl_redis_t *r, const redisReply *reply, int status, void *ud, bool add) {
  sl_shdict_t *s = ud;
  (void)r;
  s->st.pending--;
  s->pending_writes--;
  if (status != 0 || !reply || reply->type == REDIS_REPLY_ERROR) {
    if (status != SL_ECANCELED) s->st.write_failures++;
  } else if (add && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
    s->st.conflicts++;
  }
  sl__maybe_free(s);
}

static void sl__write_cb(sl_redis_t *r, const redisReply *reply, int status, void *ud) {
  sl__write_done(r, reply, status, ud, false);
}

static void sl__add_cb(sl_redis_t *r, const redisReply *reply, int status, void *ud) {
  sl__write_done(r, reply, status, ud, true);
}

static void sl__on_write(void *ud, int op, const char *key, size_t klen, const char *val, size_t vlen,
                         int64_t ttl_ms, int64_t incr_by) {
  sl_shdict_t *s = ud;
  if (op == SL_TTLDICT_OP_FLUSH || s->detached) return; /* flush is local by design (shdict.h) */
  if (!sl_redis_up(s->r) || s->pending_writes >= s->max_pending_writes || vlen > s->max_value) {
    s->st.writes_local++;
    return;
  }
  char ttl[24], by[24];
  if (ttl_ms > SL__MAX_TTL_MS) ttl_ms = SL__MAX_TTL_MS;
  if (ttl_ms < 0) ttl_ms = 0;
  size_t ttl_len = (size_t)snprintf(ttl, sizeof(ttl), "%" PRId64, ttl_ms);
  size_t rlen = sl__rkey(s, key, klen);
  const char *argv[7];
  size_t argvlen[7];
  int argc = 0, id = 0;
  sl_redis_cb cb = sl__write_cb;
#define SL__ARG(p, n) (argv[argc] = (p), argvlen[argc] = (n), argc++)
  SL__ARG(s->kbuf, rlen);
  switch (op) {
    case SL_TTLDICT_OP_SET:
    case SL_TTLDICT_OP_ADD:
      id = op == SL_TTLDICT_OP_SET ? s->sid_set : s->sid_add;
      SL__ARG(vlen ? val : "", vlen);
      SL__ARG(ttl, ttl_len);
      SL__ARG(s->channel, s->channel_len);
      SL__ARG(s->head[op == SL_TTLDICT_OP_SET ? SL__H_SET : SL__H_ADD], s->head_len);
      SL__ARG(s->keyoff, s->keyoff_len);
      if (op == SL_TTLDICT_OP_ADD) {
        SL__ARG(s->head[SL__H_SET], s->head_len);
        cb = sl__add_cb;
      }
      break;
    case SL_TTLDICT_OP_INCR:
      id = s->sid_incr;
      SL__ARG(by, (size_t)snprintf(by, sizeof(by), "%" PRId64, incr_by));
      SL__ARG(val, vlen);
      SL__ARG(ttl, ttl_len);
      SL__ARG(s->channel, s->channel_len);
      SL__ARG(s->head[SL__H_INCR], s->head_len);
      SL__ARG(s->keyoff, s->keyoff_len);
      break;
    case SL_TTLDICT_OP_DELETE:
      id = s->sid_del;
      SL__ARG(s->channel, s->channel_len);
      SL__ARG(s->head[SL__H_DEL], s->head_len);
      SL__ARG(s->keyoff, s->keyoff_len);
      break;
    default:
      return;
  }
#undef SL__ARG
  int rc = sl_redis_evalsha(s->r, id, 1, argc, argv, argvlen, cb, s);
  if (rc == 0) {
    s->st.writes_sent++;
    s->st.pending++;
    s->pending_writes++;
  } else if (rc == SL_EAGAIN) {
    s->st.writes_local++;
  } else {
    s->st.write_failures++;
  }
}

/* ------------------------------------------------------------------ */
/* Misses and fills.                                                    */

static void sl__fill_cb(sl_redis_t *r, const redisReply *reply, int status, void *ud) {
  sl__fill_t *f = ud;
  sl_shdict_t *s = f->s;
  (void)r;
  s->st.pending--;
  if (s->detached) {
    f->state = SL__FILL_FREE;
    sl__maybe_free(s);
    return;
  }
  if (status != 0 || !reply || reply->type == REDIS_REPLY_ERROR) {
    if (status != SL_ECANCELED) s->st.fill_failures++;
    f->state = SL__FILL_FREE;
    return;
  }
  if (reply->type == REDIS_REPLY_NIL) {
    s->st.fills_empty++;
    f->state = SL__FILL_EMPTY;
    f->until = uv_now(s->loop) + s->negative_ms;
    return;
  }
  f->state = SL__FILL_FREE;
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 || reply->element[0]->type != REDIS_REPLY_STRING ||
      reply->element[1]->type != REDIS_REPLY_INTEGER) {
    s->st.fill_failures++;
    return;
  }
  /* A message about the key arrived after Redis answered this fetch: it is
   * newer than the answer, and already applied. */
  if (f->superseded) return;
  const redisReply *v = reply->element[0];
  long long ttl = reply->element[1]->integer;
  int added = 0;
  int rc = sl_ttldict_apply_add(s->d, f->key, f->klen, v->str, v->len, ttl > 0 ? ttl : 0, &added);
  if (rc == 0 && added) s->st.fills_applied++;
  else if (rc != 0) s->st.apply_failures++;
}

static void sl__timer_cb(uv_timer_t *t) {
  sl_shdict_t *s = t->data;
  for (uint32_t i = 0; i < s->max_fills && s->queued; i++) {
    sl__fill_t *f = &s->fills[i];
    if (f->state != SL__FILL_QUEUED) continue;
    s->queued--;
    size_t rlen = sl__rkey(s, f->key, f->klen);
    const char *argv[1] = {s->kbuf};
    size_t argvlen[1] = {rlen};
    int rc = sl_redis_evalsha(s->r, s->sid_get, 1, 1, argv, argvlen, sl__fill_cb, f);
    if (rc == 0) {
      f->state = SL__FILL_INFLIGHT;
      f->superseded = 0;
      s->st.fills++;
      s->st.pending++;
    } else {
      f->state = SL__FILL_FREE;
      if (rc == SL_EAGAIN) s->st.fills_skipped++;
      else s->st.fill_failures++;
    }
  }
}

/* The slot remembering key, or NULL. */
static sl__fill_t *sl__fill_find(sl_shdict_t *s, uint64_t h, const char *key, size_t klen) {
  for (uint32_t i = 0; i < s->max_fills; i++) {
    sl__fill_t *f = &s->fills[i];
    if (f->state != SL__FILL_FREE && f->hash == h && f->klen == klen && memcmp(f->key, key, klen) == 0) return f;
  }
  return NULL;
}

static void sl__on_miss(void *ud, const char *key, size_t klen) {
  sl_shdict_t *s = ud;
  if (s->detached || klen > s->max_fill_key || !sl_redis_up(s->r)) {
    s->st.fills_skipped++;
    return;
  }
  uint64_t h = sl__hash(key, klen), now = uv_now(s->loop);
  sl__fill_t *f = sl__fill_find(s, h, key, klen);
  if (f && (f->state != SL__FILL_EMPTY || now < f->until)) {
    s->st.fills_skipped++; /* in flight already, or Redis lacked it a moment ago */
    return;
  }
  if (!f) {
    /* A free slot; else the empty slot that expires first (the oldest
     * negative entry goes before any fetch is refused). */
    for (uint32_t i = 0; i < s->max_fills; i++) {
      sl__fill_t *c = &s->fills[i];
      if (c->state == SL__FILL_FREE) {
        f = c;
        break;
      }
      if (c->state == SL__FILL_EMPTY && (!f || c->until < f->until)) f = c;
    }
    if (!f) {
      s->st.fills_skipped++;
      return;
    }
  }
  f->state = SL__FILL_QUEUED;
  f->superseded = 0;
  f->hash = h;
  f->klen = (uint32_t)klen;
  memcpy(f->key, key, klen);
  if (s->queued++ == 0) uv_timer_start(&s->timer, sl__timer_cb, 0, 0);
}

/* ------------------------------------------------------------------ */
/* Messages.                                                            */

/* Reads a decimal number ending at the delimiter d; advances *p past it. */
static bool sl__num(const char **p, const char *end, char d, uint64_t *out) {
  const char *q = *p;
  uint64_t v = 0;
  if (q == end || *q < '0' || *q > '9') return false;
  for (; q < end && *q >= '0' && *q <= '9'; q++) {
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + (uint64_t)(*q - '0');
  }
  if (q == end || *q != d) return false;
  *p = q + 1;
  *out = v;
  return true;
}

/* One message, parsed; the pointers are into the message. */
typedef struct {
  char op;          /* 's', 'a', 'i', 'd' */
  uint64_t id;      /* the writer's instance id */
  uint64_t ttl;     /* ms, 0 = none */
  const char *key;  /* klen bytes */
  size_t klen;
  const char *val;  /* vlen bytes */
  size_t vlen;
} sl__msg_t;

/* Parses "SL1 <op> <16 hex> <ttl> <klen>\n<key><value>"; false when it is
 * not one. */
static bool sl__parse(const char *msg, size_t len, sl__msg_t *m) {
  const char *p = msg, *end = msg + len;
  uint64_t klen = 0;
  if (len < 23 || memcmp(p, "SL1 ", 4) != 0 || p[5] != ' ' || p[22] != ' ') return false;
  m->op = p[4];
  if (m->op != 's' && m->op != 'a' && m->op != 'i' && m->op != 'd') return false;
  m->id = 0;
  for (int i = 6; i < 22; i++) {
    char c = p[i];
    unsigned dgt;
    if (c >= '0' && c <= '9') dgt = (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') dgt = (unsigned)(c - 'a' + 10);
    else return false;
    m->id = (m->id << 4) | dgt;
  }
  p += 23;
  if (!sl__num(&p, end, ' ', &m->ttl) || !sl__num(&p, end, '\n', &klen)) return false;
  if (klen == 0 || klen > SL_TTLDICT_MAX_KEY || klen > (uint64_t)(end - p) || m->ttl > (uint64_t)INT64_MAX)
    return false;
  m->key = p;
  m->klen = (size_t)klen;
  m->val = p + klen;
  m->vlen = (size_t)(end - m->val);
  return true;
}

static void sl__on_message(sl_redis_t *r, const char *channel, const char *msg, size_t len, void *ud) {
  sl_shdict_t *s = ud;
  sl__msg_t m;
  (void)r;
  (void)channel;
  if (s->detached) return;
  if (!sl__parse(msg, len, &m)) {
    s->st.apply_failures++;
    return;
  }
  int rc;
  if (m.op == 'd') {
    rc = sl_ttldict_apply_delete(s->d, m.key, m.klen);
    if (rc == SL_ENOTFOUND) rc = 0;
  } else {
    rc = sl_ttldict_apply_set(s->d, m.key, m.klen, m.val, m.vlen, (int64_t)m.ttl);
  }
  if (rc != 0) {
    s->st.apply_failures++;
    return;
  }
  if (m.id == s->instance_id) s->st.own_applied++;
  else s->st.remote_applied++;
  /* A fetch of this key in flight is now older than what was applied; a
   * key Redis lacked a moment ago may be fetched again. */
  sl__fill_t *f = sl__fill_find(s, sl__hash(m.key, m.klen), m.key, m.klen);
  if (f && f->state == SL__FILL_INFLIGHT) f->superseded = 1;
  else if (f && f->state == SL__FILL_EMPTY) f->state = SL__FILL_FREE;
}

/* ------------------------------------------------------------------ */
/* Attach and detach.                                                   */

static const sl_ttldict_repl_t sl__hook = {sl__on_write, sl__on_miss};

static void sl__timer_closed(uv_handle_t *h) {
  sl_shdict_t *s = h->data;
  s->timer_closed = true;
  sl__maybe_free(s);
}

int sl_shdict_attach(sl_shdict_t **out, uv_loop_t *loop, sl_ttldict_t *d, sl_redis_t *r, const char *prefix,
                     uint64_t instance_id, const sl_shdict_options_t *opt) {
  sl_shdict_options_t o;
  int rc;
  if (opt) o = *opt;
  else memset(&o, 0, sizeof(o));
  if (!out || !loop || !d || !r) return SL_EINVAL;
  if (!prefix) prefix = SL_SHDICT_DEFAULT_PREFIX;
  size_t pl = strlen(prefix);
  if (pl > SL__MAX_PREFIX || o.max_fills > SL_SHDICT_MAX_FILLS) return SL_EINVAL;
  if (!o.max_fills) o.max_fills = 64;
  if (!o.max_fill_key) o.max_fill_key = 256;
  if (o.max_fill_key > SL_TTLDICT_MAX_KEY) o.max_fill_key = SL_TTLDICT_MAX_KEY;
  if (!o.negative_ms) o.negative_ms = 1000;
  if (!o.max_pending_writes) o.max_pending_writes = 1024;
  if (!o.max_value) o.max_value = 1024 * 1024;
  if (instance_id == 0) {
    while (instance_id == 0) {
      if (uv_random(NULL, NULL, &instance_id, sizeof(instance_id), 0, NULL) != 0)
        instance_id = uv_hrtime() ^ ((uint64_t)(uintptr_t)out * 0x9e3779b97f4a7c15ull);
    }
  }

  sl_shdict_t *s = sl_try_malloc(sizeof(*s));
  if (!s) return SL_ENOMEM;
  memset(s, 0, sizeof(*s));
  s->plen = pl + 2;
  s->kbuf = sl_try_malloc(s->plen + SL_TTLDICT_MAX_KEY);
  /* One block for the slots and, after them, their keys. */
  size_t fbytes = (size_t)o.max_fills * sizeof(sl__fill_t);
  s->fills = sl_try_malloc(fbytes + (size_t)o.max_fills * o.max_fill_key);
  if (!s->kbuf || !s->fills) goto nomem;
  memset(s->fills, 0, fbytes);
  for (uint32_t i = 0; i < o.max_fills; i++) {
    s->fills[i].s = s;
    s->fills[i].key = (char *)s->fills + fbytes + (size_t)i * o.max_fill_key;
  }
  memcpy(s->kbuf, prefix, pl);
  memcpy(s->kbuf + pl, "d:", 2);
  s->loop = loop;
  s->d = d;
  s->r = r;
  s->instance_id = instance_id;
  s->max_fills = o.max_fills;
  s->max_fill_key = o.max_fill_key;
  s->negative_ms = o.negative_ms;
  s->max_pending_writes = o.max_pending_writes;
  s->max_value = o.max_value;
  s->channel_len = (size_t)snprintf(s->channel, sizeof(s->channel), "%sdict", prefix);
  s->keyoff_len = (size_t)snprintf(s->keyoff, sizeof(s->keyoff), "%zu", s->plen + 1);
  static const char ops[4] = {'s', 'a', 'i', 'd'};
  for (int i = 0; i < 4; i++)
    s->head_len = (size_t)snprintf(s->head[i], sizeof(s->head[i]), "SL1 %c %016" PRIx64 " ", ops[i], instance_id);

  rc = uv_timer_init(loop, &s->timer);
  if (rc) goto fail;
  s->timer.data = s;
  if (sl_redis_script(r, sl__lua_set, &s->sid_set) || sl_redis_script(r, sl__lua_add, &s->sid_add) ||
      sl_redis_script(r, sl__lua_incr, &s->sid_incr) || sl_redis_script(r, sl__lua_del, &s->sid_del) ||
      sl_redis_script(r, sl__lua_get, &s->sid_get) || sl_redis_subscribe(r, s->channel, sl__on_message, s) != 0) {
    /* The timer is a handle now: s goes with its close, and ignores
     * messages meanwhile (sl_redis_subscribe failed, or never ran). */
    s->detached = true;
    uv_close((uv_handle_t *)&s->timer, sl__timer_closed);
    return SL_ENOMEM;
  }
  sl_ttldict_set_repl(d, &sl__hook, s);
  *out = s;
  return 0;
nomem:
  rc = SL_ENOMEM;
fail:
  sl_free(s->fills);
  sl_free(s->kbuf);
  sl_free(s);
  return rc;
}

void sl_shdict_detach(sl_shdict_t *s) {
  if (!s || s->detached) return;
  sl_ttldict_set_repl(s->d, NULL, NULL);
  s->detached = true;
  s->d = NULL;
  for (uint32_t i = 0; i < s->max_fills; i++)
    if (s->fills[i].state == SL__FILL_QUEUED) s->fills[i].state = SL__FILL_FREE;
  s->queued = 0;
  uv_close((uv_handle_t *)&s->timer, sl__timer_closed);
}

void sl_shdict_stats(const sl_shdict_t *s, sl_shdict_stats_t *out) { *out = s->st; }

uint64_t sl_shdict_instance_id(const sl_shdict_t *s) { return s->instance_id; }
