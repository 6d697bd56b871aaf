/* ttldict.c: the TTL dictionary front, its in-process hash table backend,
 * and the process-wide default reached through the FFI.
 *
 * The front (sl_ttldict_*) checks arguments, reads the clock and calls the
 * backend, so a backend never sees an empty key or a negative TTL.  The
 * in-process backend is a chained hash table keyed by SipHash-1-3 with a
 * per-table random key, so keys chosen by clients (a session header) cannot
 * pile into one chain.  Each entry is one allocation: header, key bytes,
 * then room for the value.
 */
#include "runtime/lua/ttldict.h"

#include <stdbool.h>
#include <string.h>
#include <uv.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"

/* ------------------------------------------------------------------ */
/* The in-process backend.                                              */

typedef struct sl__tde_s sl__tde_t;
struct sl__tde_s {
  sl__tde_t *next;    /* bucket chain */
  uint64_t hash;      /* of the key, kept for rehashing */
  uint64_t expire_at; /* ms on the dictionary's clock; 0 = never */
  uint32_t klen;      /* key bytes */
  uint32_t vlen;      /* value bytes in use */
  uint32_t vcap;      /* value bytes allocated */
  char data[];        /* key, then vcap bytes for the value */
};

typedef struct {
  sl__tde_t **buckets; /* nbuckets chains */
  size_t nbuckets;     /* a power of two */
  size_t count;        /* entries stored, expired or not */
  size_t bytes;        /* charged: entries plus the bucket array */
  size_t max_bytes;    /* the bound on bytes */
  size_t cursor;       /* bucket where the next partial sweep starts */
  uint64_t next_expiry;/* no entry expires before this (UINT64_MAX: none known) */
  uint64_t k0, k1;     /* SipHash key */
} sl__mem_t;

#define SL__INITIAL_BUCKETS 16
/* An incremented value is stored with room for any int64 in decimal, so
 * later increments rewrite it in place. */
#define SL__INT_CAP 20

#define SL__ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SL__SIPROUND                                                   \
  do {                                                                 \
    v0 += v1; v1 = SL__ROTL(v1, 13); v1 ^= v0; v0 = SL__ROTL(v0, 32); \
    v2 += v3; v3 = SL__ROTL(v3, 16); v3 ^= v2;                         \
    v0 += v3; v3 = SL__ROTL(v3, 21); v3 ^= v0;                         \
    v2 += v1; v1 = SL__ROTL(v1, 17); v1 ^= v2; v2 = SL__ROTL(v2, 32); \
  } while (0)

/* SipHash-1-3: a keyed hash, fast on short keys.  Words are read in host
 * order; the value only has to be stable within this process. */
static uint64_t sl__siphash13(const unsigned char *in, size_t len, uint64_t k0, uint64_t k1) {
  uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
  uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
  uint64_t b = (uint64_t)len << 56;
  size_t whole = len - (len & 7);
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m;
    memcpy(&m, in + i, 8);
    v3 ^= m;
    SL__SIPROUND;
    v0 ^= m;
  }
  const unsigned char *t = in + whole;
  switch (len & 7) {
    case 7: b |= (uint64_t)t[6] << 48; /* fall through */
    case 6: b |= (uint64_t)t[5] << 40; /* fall through */
    case 5: b |= (uint64_t)t[4] << 32; /* fall through */
    case 4: b |= (uint64_t)t[3] << 24; /* fall through */
    case 3: b |= (uint64_t)t[2] << 16; /* fall through */
    case 2: b |= (uint64_t)t[1] << 8;  /* fall through */
    case 1: b |= (uint64_t)t[0]; break;
    default: break;
  }
  v3 ^= b;
  SL__SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SL__SIPROUND;
  SL__SIPROUND;
  SL__SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

static size_t sl__entry_size(size_t klen, size_t vcap) { return sizeof(sl__tde_t) + klen + vcap; }

static bool sl__expired(const sl__tde_t *e, uint64_t now) { return e->expire_at != 0 && now >= e->expire_at; }

static uint64_t sl__expire_at(int64_t ttl_ms, uint64_t now) {
  if (ttl_ms <= 0) return 0;
  /* A TTL past the end of the clock means "practically never", but still
   * a finite time so ttl() reports it. */
  if ((uint64_t)ttl_ms > UINT64_MAX - 1 - now) return UINT64_MAX - 1;
  return now + (uint64_t)ttl_ms;
}

static uint64_t sl__mem_hash(const sl__mem_t *m, const char *key, size_t klen) {
  return sl__siphash13((const unsigned char *)key, klen, m->k0, m->k1);
}

/* The link that points at key's entry (expired or not), or NULL. */
static sl__tde_t **sl__mem_find(sl__mem_t *m, uint64_t h, const char *key, size_t klen) {
  sl__tde_t **link = &m->buckets[h & (m->nbuckets - 1)];
  for (; *link; link = &(*link)->next) {
    const sl__tde_t *e = *link;
    if (e->hash == h && e->klen == klen && memcmp(e->data, key, klen) == 0) return link;
  }
  return NULL;
}

static void sl__mem_unlink(sl__mem_t *m, sl__tde_t **link) {
  sl__tde_t *e = *link;
  *link = e->next;
  m->count--;
  m->bytes -= sl__entry_size(e->klen, e->vcap);
  sl_free(e);
}

/* Finds key's live entry; an expired one found on the way is freed (lazy
 * expiry), so an access reclaims what it steps on. */
static sl__tde_t **sl__mem_live(sl__mem_t *m, uint64_t h, const char *key, size_t klen, uint64_t now) {
  sl__tde_t **link = sl__mem_find(m, h, key, klen);
  if (link && sl__expired(*link, now)) {
    sl__mem_unlink(m, link);
    return NULL;
  }
  return link;
}

/* Frees every expired entry and recomputes next_expiry.  O(entries): it
 * runs for a full sweep, and for a write that would pass the bound when
 * something may have expired since the last scan. */
static size_t sl__mem_reclaim_all(sl__mem_t *m, uint64_t now) {
  size_t freed = 0;
  uint64_t next = UINT64_MAX;
  for (size_t i = 0; i < m->nbuckets; i++) {
    sl__tde_t **link = &m->buckets[i];
    while (*link) {
      sl__tde_t *e = *link;
      if (sl__expired(e, now)) {
        sl__mem_unlink(m, link);
        freed++;
      } else {
        if (e->expire_at != 0 && e->expire_at < next) next = e->expire_at;
        link = &e->next;
      }
    }
  }
  m->next_expiry = next;
  return freed;
}

/* Doubles the bucket array when the table is fuller than one entry per
 * bucket, if the bound leaves room for it; otherwise chains just grow. */
static void sl__mem_maybe_grow(sl__mem_t *m) {
  if (m->count <= m->nbuckets || m->nbuckets > SIZE_MAX / (2 * sizeof(sl__tde_t *))) return;
  size_t n = m->nbuckets * 2, add = (n - m->nbuckets) * sizeof(sl__tde_t *);
  if (m->bytes + add > m->max_bytes) return;
  sl__tde_t **b = sl_try_malloc(n * sizeof(*b));
  if (!b) return;
  memset(b, 0, n * sizeof(*b));
  for (size_t i = 0; i < m->nbuckets; i++) {
    sl__tde_t *e = m->buckets[i];
    while (e) {
      sl__tde_t *next = e->next;
      size_t j = e->hash & (n - 1);
      e->next = b[j];
      b[j] = e;
      e = next;
    }
  }
  sl_free(m->buckets);
  m->buckets = b;
  m->nbuckets = n;
  m->bytes += add;
}

/* Stores val as key's value with expire_at.  link points at key's live
 * entry, or is NULL when there is none.  An entry whose room fits the value
 * (and does not waste more than half of it) is rewritten in place;
 * otherwise a new entry of vcap >= vlen replaces it.  Fails with
 * SL_ETOOBIG (after reclaiming expired entries) or SL_ENOMEM, changing no
 * live entry. */
static int sl__mem_store(sl__mem_t *m, sl__tde_t **link, uint64_t h, const char *key, size_t klen, const char *val,
                         size_t vlen, size_t vcap, uint64_t expire_at, uint64_t now) {
  if (vlen > UINT32_MAX || vcap > UINT32_MAX) return SL_ETOOBIG;
  if (vcap < vlen) vcap = vlen;
  sl__tde_t *old = link ? *link : NULL;
  if (old && vlen <= old->vcap && old->vcap <= 2 * vlen + 32) {
    memcpy(old->data + klen, val, vlen);
    old->vlen = (uint32_t)vlen;
    old->expire_at = expire_at;
    if (expire_at != 0 && expire_at < m->next_expiry) m->next_expiry = expire_at;
    return 0;
  }
  size_t need = sl__entry_size(klen, vcap);
  size_t release = old ? sl__entry_size(old->klen, old->vcap) : 0;
  if (m->bytes - release + need > m->max_bytes) {
    if (now >= m->next_expiry) {
      sl__mem_reclaim_all(m, now);
      /* Reclaiming may have freed the entry before ours in the chain. */
      if (old) link = sl__mem_find(m, h, key, klen);
    }
    if (m->bytes - release + need > m->max_bytes) return SL_ETOOBIG;
  }
  sl__tde_t *e = sl_try_malloc(need);
  if (!e) return SL_ENOMEM;
  e->hash = h;
  e->expire_at = expire_at;
  e->klen = (uint32_t)klen;
  e->vlen = (uint32_t)vlen;
  e->vcap = (uint32_t)vcap;
  memcpy(e->data, key, klen);
  if (vlen) memcpy(e->data + klen, val, vlen);
  if (expire_at != 0 && expire_at < m->next_expiry) m->next_expiry = expire_at;
  m->bytes += need;
  if (old) {
    e->next = old->next;
    *link = e;
    m->bytes -= release;
    sl_free(old);
    return 0;
  }
  size_t b = h & (m->nbuckets - 1);
  e->next = m->buckets[b];
  m->buckets[b] = e;
  m->count++;
  sl__mem_maybe_grow(m);
  return 0;
}

static int sl__mem_get(void *self, const char *key, size_t klen, uint64_t now, char *buf, size_t cap,
                       size_t *vlen) {
  sl__mem_t *m = self;
  sl__tde_t **link = sl__mem_live(m, sl__mem_hash(m, key, klen), key, klen, now);
  if (!link) return SL_ENOTFOUND;
  const sl__tde_t *e = *link;
  *vlen = e->vlen;
  if (e->vlen > cap) return SL_ETOOBIG;
  if (e->vlen) memcpy(buf, e->data + e->klen, e->vlen);
  return 0;
}

static int sl__mem_set(void *self, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms,
                       unsigned flags, uint64_t now, int *stored) {
  sl__mem_t *m = self;
  uint64_t h = sl__mem_hash(m, key, klen);
  sl__tde_t **link = sl__mem_live(m, h, key, klen, now);
  *stored = 0;
  if (link && (flags & SL_TTLDICT_NX)) return 0;
  int rc = sl__mem_store(m, link, h, key, klen, val, vlen, vlen, sl__expire_at(ttl_ms, now), now);
  if (rc == 0) *stored = 1;
  return rc;
}

/* Parses "-?[0-9]+" within int64. */
static int sl__parse_i64(const char *s, size_t n, int64_t *out) {
  size_t i = 0;
  bool neg = n > 0 && s[0] == '-';
  if (neg) i = 1;
  if (i == n) return SL_EPARSE;
  uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, acc = 0;
  for (; i < n; i++) {
    unsigned d = (unsigned)(unsigned char)s[i] - '0';
    if (d > 9 || acc > (limit - d) / 10) return SL_EPARSE;
    acc = acc * 10 + d;
  }
  if (!neg) *out = (int64_t)acc;
  else *out = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
  return 0;
}

/* Writes v in decimal (at most SL__INT_CAP bytes) and returns the length. */
static size_t sl__format_i64(int64_t v, char *out) {
  char tmp[SL__INT_CAP];
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  size_t n = 0, k = 0;
  do {
    tmp[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) out[k++] = '-';
  while (n) out[k++] = tmp[--n];
  return k;
}

static int sl__mem_incr(void *self, const char *key, size_t klen, int64_t by, const int64_t *init, int64_t ttl_ms,
                        uint64_t now, int64_t *out) {
  sl__mem_t *m = self;
  uint64_t h = sl__mem_hash(m, key, klen);
  sl__tde_t **link = sl__mem_live(m, h, key, klen, now);
  int64_t cur, sum;
  uint64_t expire_at;
  if (link) {
    const sl__tde_t *e = *link;
    int rc = sl__parse_i64(e->data + e->klen, e->vlen, &cur);
    if (rc) return rc;
    expire_at = e->expire_at;
  } else {
    if (!init) return SL_ENOTFOUND;
    cur = *init;
    expire_at = sl__expire_at(ttl_ms, now);
  }
  if (__builtin_add_overflow(cur, by, &sum)) return SL_EINVAL;
  char text[SL__INT_CAP];
  size_t len = sl__format_i64(sum, text);
  int rc = sl__mem_store(m, link, h, key, klen, text, len, SL__INT_CAP, expire_at, now);
  if (rc == 0) *out = sum;
  return rc;
}

static int sl__mem_del(void *self, const char *key, size_t klen, uint64_t now) {
  sl__mem_t *m = self;
  sl__tde_t **link = sl__mem_live(m, sl__mem_hash(m, key, klen), key, klen, now);
  if (!link) return SL_ENOTFOUND;
  sl__mem_unlink(m, link);
  return 0;
}

static int sl__mem_ttl(void *self, const char *key, size_t klen, uint64_t now, int64_t *remaining) {
  sl__mem_t *m = self;
  sl__tde_t **link = sl__mem_live(m, sl__mem_hash(m, key, klen), key, klen, now);
  if (!link) return SL_ENOTFOUND;
  uint64_t at = (*link)->expire_at;
  uint64_t left = at == 0 ? 0 : at - now;
  *remaining = left > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)left;
  return 0;
}

static int sl__mem_count(void *self, size_t *entries, size_t *bytes) {
  const sl__mem_t *m = self;
  *entries = m->count;
  *bytes = m->bytes;
  return 0;
}

static void sl__mem_free_entries(sl__mem_t *m) {
  for (size_t i = 0; i < m->nbuckets; i++) {
    sl__tde_t *e = m->buckets[i];
    while (e) {
      sl__tde_t *next = e->next;
      sl_free(e);
      e = next;
    }
    m->buckets[i] = NULL;
  }
  m->count = 0;
  m->bytes = m->nbuckets * sizeof(sl__tde_t *);
  m->cursor = 0;
  m->next_expiry = UINT64_MAX;
}

static int sl__mem_flush(void *self) {
  sl__mem_t *m = self;
  sl__mem_free_entries(m);
  /* Give a grown bucket array back; if that allocation fails the emptied
   * big array serves just as well. */
  if (m->nbuckets > SL__INITIAL_BUCKETS) {
    sl__tde_t **b = sl_try_malloc(SL__INITIAL_BUCKETS * sizeof(*b));
    if (b) {
      memset(b, 0, SL__INITIAL_BUCKETS * sizeof(*b));
      sl_free(m->buckets);
      m->buckets = b;
      m->nbuckets = SL__INITIAL_BUCKETS;
      m->bytes = SL__INITIAL_BUCKETS * sizeof(*b);
    }
  }
  return 0;
}

static size_t sl__mem_sweep(void *self, uint64_t now, size_t max_entries) {
  sl__mem_t *m = self;
  if (max_entries == 0) return sl__mem_reclaim_all(m, now);
  /* Nothing can have expired yet: skip the walk. */
  if (now < m->next_expiry) return 0;
  size_t examined = 0, freed = 0, visited = 0;
  uint64_t next = UINT64_MAX;
  for (; visited < m->nbuckets && examined < max_entries; visited++) {
    sl__tde_t **link = &m->buckets[m->cursor];
    while (*link) {
      sl__tde_t *e = *link;
      examined++;
      if (sl__expired(e, now)) {
        sl__mem_unlink(m, link);
        freed++;
      } else {
        if (e->expire_at != 0 && e->expire_at < next) next = e->expire_at;
        link = &e->next;
      }
    }
    m->cursor = (m->cursor + 1) & (m->nbuckets - 1);
  }
  /* A call that went round the whole table knows the earliest expiry left,
   * so the next sweeps can skip the walk until then. */
  if (visited == m->nbuckets) m->next_expiry = next;
  return freed;
}

static void sl__mem_destroy(void *self) {
  sl__mem_t *m = self;
  if (!m) return;
  sl__mem_free_entries(m);
  sl_free(m->buckets);
  sl_free(m);
}

const sl_ttldict_backend_t sl_ttldict_memory_backend = {
  .name = "memory",
  .get = sl__mem_get,
  .set = sl__mem_set,
  .incr = sl__mem_incr,
  .del = sl__mem_del,
  .ttl = sl__mem_ttl,
  .count = sl__mem_count,
  .flush = sl__mem_flush,
  .sweep = sl__mem_sweep,
  .destroy = sl__mem_destroy,
};

int sl_ttldict_memory_new(size_t max_bytes, void **state) {
  sl__mem_t *m = sl_try_malloc(sizeof(*m));
  if (!m) return SL_ENOMEM;
  memset(m, 0, sizeof(*m));
  m->buckets = sl_try_malloc(SL__INITIAL_BUCKETS * sizeof(*m->buckets));
  if (!m->buckets) {
    sl_free(m);
    return SL_ENOMEM;
  }
  memset(m->buckets, 0, SL__INITIAL_BUCKETS * sizeof(*m->buckets));
  m->nbuckets = SL__INITIAL_BUCKETS;
  m->bytes = SL__INITIAL_BUCKETS * sizeof(*m->buckets);
  m->max_bytes = max_bytes ? max_bytes : SL_TTLDICT_DEFAULT_MAX_BYTES;
  m->next_expiry = UINT64_MAX;
  uint64_t key[2];
  if (uv_random(NULL, NULL, key, sizeof(key), 0, NULL) != 0) {
    /* No entropy source: a time- and address-derived key still varies per
     * process, which is all a fallback can do. */
    key[0] = uv_hrtime() ^ 0x9e3779b97f4a7c15ull;
    key[1] = (uint64_t)(uintptr_t)m * 0xbf58476d1ce4e5b9ull;
  }
  m->k0 = key[0];
  m->k1 = key[1];
  *state = m;
  return 0;
}

/* ------------------------------------------------------------------ */
/* The front.                                                           */

struct sl_ttldict_s {
  const sl_ttldict_backend_t *backend; /* the store */
  void *state;                         /* the backend's state (owned) */
  sl_ttldict_clock_fn clock;           /* time source, ms */
  void *clock_data;
  int64_t test_now;                    /* >= 0: the time the clock reports (tests); -1: the clock */
  sl_ttldict_repl_t repl;              /* the replication hook (on_write NULL: none) */
  void *repl_ud;                       /* passed to the hook */
};

static uint64_t sl__default_clock(void *data) {
  (void)data;
  return uv_hrtime() / 1000000u;
}

int sl_ttldict_new(const sl_ttldict_options_t *opts, sl_ttldict_t **out) {
  sl_ttldict_options_t o;
  if (opts) o = *opts;
  else memset(&o, 0, sizeof(o));
  if (o.backend && !o.backend_state) return SL_EINVAL;
  if (!o.backend) {
    int rc = sl_ttldict_memory_new(o.max_bytes, &o.backend_state);
    if (rc) return rc;
    o.backend = &sl_ttldict_memory_backend;
  }
  sl_ttldict_t *d = sl_try_malloc(sizeof(*d));
  if (!d) {
    o.backend->destroy(o.backend_state);
    return SL_ENOMEM;
  }
  d->backend = o.backend;
  d->state = o.backend_state;
  d->clock = o.clock ? o.clock : sl__default_clock;
  d->clock_data = o.clock_data;
  d->test_now = -1;
  memset(&d->repl, 0, sizeof(d->repl));
  d->repl_ud = NULL;
  *out = d;
  return 0;
}

void sl_ttldict_free(sl_ttldict_t *d) {
  if (!d) return;
  d->backend->destroy(d->state);
  sl_free(d);
}

uint64_t sl_ttldict_now(const sl_ttldict_t *d) {
  return d->test_now >= 0 ? (uint64_t)d->test_now : d->clock(d->clock_data);
}

static int sl__check_key(const char *key, size_t klen) {
  if (!key || klen == 0) return SL_EINVAL;
  if (klen > SL_TTLDICT_MAX_KEY) return SL_ETOOBIG;
  return 0;
}

/* Whether key's changes and misses go to the hook: there is one, and the
 * key is not an instance's own (SL_TTLDICT_LOCAL_PREFIX, the tenants'
 * windows, which every instance keeps for itself). */
static bool sl__replicated(const sl_ttldict_t *d, const char *key, size_t klen) {
  if (!d->repl.on_write) return false;
  return !(klen >= 2 && key[0] == 't' && key[1] == ':');
}

int sl_ttldict_get(sl_ttldict_t *d, const char *key, size_t klen, char *buf, size_t cap, size_t *vlen) {
  size_t len = 0;
  int rc = sl__check_key(key, klen);
  if (rc) return rc;
  if (!buf && cap) return SL_EINVAL;
  rc = d->backend->get(d->state, key, klen, sl_ttldict_now(d), buf, cap, &len);
  if (vlen) *vlen = len;
  /* The caller's answer is settled; the replicator may only start a fill
   * that lands later. */
  if (rc == SL_ENOTFOUND && d->repl.on_miss && sl__replicated(d, key, klen)) d->repl.on_miss(d->repl_ud, key, klen);
  return rc;
}

static int sl__set(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms,
                   unsigned flags, int *stored) {
  int st = 0, rc = sl__check_key(key, klen);
  if (rc) return rc;
  if ((!val && vlen) || ttl_ms < 0) return SL_EINVAL;
  if (!val) val = "";
  rc = d->backend->set(d->state, key, klen, val, vlen, ttl_ms, flags, sl_ttldict_now(d), &st);
  if (stored) *stored = rc == 0 && st;
  return rc;
}

int sl_ttldict_set(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms) {
  int rc = sl__set(d, key, klen, val, vlen, ttl_ms, 0, NULL);
  if (rc == 0 && sl__replicated(d, key, klen))
    d->repl.on_write(d->repl_ud, SL_TTLDICT_OP_SET, key, klen, val ? val : "", vlen, ttl_ms, 0);
  return rc;
}

int sl_ttldict_add(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms,
                   int *added) {
  int st = 0, *stored = added ? added : &st;
  int rc = sl__set(d, key, klen, val, vlen, ttl_ms, SL_TTLDICT_NX, stored);
  /* An add that found a live entry changed nothing, so there is nothing to
   * tell; the entry it found is already what the others converge on. */
  if (rc == 0 && *stored && sl__replicated(d, key, klen))
    d->repl.on_write(d->repl_ud, SL_TTLDICT_OP_ADD, key, klen, val ? val : "", vlen, ttl_ms, 0);
  return rc;
}

int sl_ttldict_incr(sl_ttldict_t *d, const char *key, size_t klen, int64_t by, const int64_t *init, int64_t ttl_ms,
                    int64_t *out) {
  int64_t sum = 0;
  int rc = sl__check_key(key, klen);
  if (rc) return rc;
  if (ttl_ms < 0) return SL_EINVAL;
  uint64_t now = sl_ttldict_now(d);
  rc = d->backend->incr(d->state, key, klen, by, init, ttl_ms, now, &sum);
  if (rc == 0 && out) *out = sum;
  if (rc == 0 && sl__replicated(d, key, klen)) {
    /* The replicator seeds a store that lacks the key with the sum and the
     * entry's remaining lifetime, so it needs both, not init. */
    char text[SL__INT_CAP];
    size_t len = sl__format_i64(sum, text);
    int64_t left = 0;
    if (d->backend->ttl(d->state, key, klen, now, &left) != 0) left = 0;
    d->repl.on_write(d->repl_ud, SL_TTLDICT_OP_INCR, key, klen, text, len, left, by);
  }
  return rc;
}

int sl_ttldict_delete(sl_ttldict_t *d, const char *key, size_t klen) {
  int rc = sl__check_key(key, klen);
  if (rc) return rc;
  rc = d->backend->del(d->state, key, klen, sl_ttldict_now(d));
  /* A key absent here may still live elsewhere (written during an outage,
   * or never fetched), so a delete is passed on either way. */
  if ((rc == 0 || rc == SL_ENOTFOUND) && sl__replicated(d, key, klen))
    d->repl.on_write(d->repl_ud, SL_TTLDICT_OP_DELETE, key, klen, NULL, 0, 0, 0);
  return rc;
}

int sl_ttldict_set_repl(sl_ttldict_t *d, const sl_ttldict_repl_t *repl, void *ud) {
  if (repl && !repl->on_write) return SL_EINVAL;
  if (repl) d->repl = *repl;
  else memset(&d->repl, 0, sizeof(d->repl));
  d->repl_ud = repl ? ud : NULL;
  return 0;
}

int sl_ttldict_apply_set(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms) {
  return sl__set(d, key, klen, val, vlen, ttl_ms, 0, NULL);
}

int sl_ttldict_apply_add(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms,
                         int *added) {
  return sl__set(d, key, klen, val, vlen, ttl_ms, SL_TTLDICT_NX, added);
}

int sl_ttldict_apply_delete(sl_ttldict_t *d, const char *key, size_t klen) {
  int rc = sl__check_key(key, klen);
  if (rc) return rc;
  return d->backend->del(d->state, key, klen, sl_ttldict_now(d));
}

int sl_ttldict_ttl(sl_ttldict_t *d, const char *key, size_t klen, int64_t *remaining_ms) {
  int64_t left = 0;
  int rc = sl__check_key(key, klen);
  if (rc) return rc;
  rc = d->backend->ttl(d->state, key, klen, sl_ttldict_now(d), &left);
  if (rc == 0 && remaining_ms) *remaining_ms = left;
  return rc;
}

int sl_ttldict_count(sl_ttldict_t *d, size_t *entries, size_t *bytes) {
  size_t n = 0, b = 0;
  int rc = d->backend->count(d->state, &n, &b);
  if (rc) return rc;
  if (entries) *entries = n;
  if (bytes) *bytes = b;
  return 0;
}

int sl_ttldict_flush(sl_ttldict_t *d) {
  int rc = d->backend->flush(d->state);
  if (rc == 0 && d->repl.on_write) d->repl.on_write(d->repl_ud, SL_TTLDICT_OP_FLUSH, NULL, 0, NULL, 0, 0, 0);
  return rc;
}

size_t sl_ttldict_sweep(sl_ttldict_t *d, uint64_t now_ms, size_t max_entries) {
  return d->backend->sweep(d->state, now_ms, max_entries);
}

/* ------------------------------------------------------------------ */
/* The FFI surface (lua/sluice/dict.lua).                               */

int sl_ffi_dict_get(sl_ttldict_t *d, const char *key, size_t klen, char *buf, size_t cap, size_t *vlen) {
  return sl_ttldict_get(d, key, klen, buf, cap, vlen);
}

int sl_ffi_dict_set(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms) {
  return sl_ttldict_set(d, key, klen, val, vlen, ttl_ms);
}

int sl_ffi_dict_add(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms,
                    int *added) {
  return sl_ttldict_add(d, key, klen, val, vlen, ttl_ms, added);
}

int sl_ffi_dict_incr(sl_ttldict_t *d, const char *key, size_t klen, int64_t by, int has_init, int64_t init,
                     int64_t ttl_ms, int64_t *out) {
  return sl_ttldict_incr(d, key, klen, by, has_init ? &init : NULL, ttl_ms, out);
}

int sl_ffi_dict_delete(sl_ttldict_t *d, const char *key, size_t klen) { return sl_ttldict_delete(d, key, klen); }

int sl_ffi_dict_ttl(sl_ttldict_t *d, const char *key, size_t klen, int64_t *remaining_ms) {
  return sl_ttldict_ttl(d, key, klen, remaining_ms);
}

int sl_ffi_dict_count(sl_ttldict_t *d, size_t *entries, size_t *bytes) { return sl_ttldict_count(d, entries, bytes); }

int sl_ffi_dict_flush(sl_ttldict_t *d) { return sl_ttldict_flush(d); }

int sl_ffi_dict_sweep(sl_ttldict_t *d, size_t max_entries, size_t *reclaimed) {
  size_t n = sl_ttldict_sweep(d, sl_ttldict_now(d), max_entries);
  if (reclaimed) *reclaimed = n;
  return 0;
}

int sl_ffi_dict_set_clock_for_tests(sl_ttldict_t *d, int64_t now_ms) {
  d->test_now = now_ms < 0 ? -1 : now_ms;
  return 0;
}
