/* test_ttldict.c: the TTL dictionary with a fake clock: get/set/overwrite,
 * add, incr semantics, delete, expiry (lazy and by sweep), the memory
 * bound, a backend plugged in through the interface, the FFI default, and
 * agreement with a simple reference model over thousands of random ops.
 */
#include <errno.h>
#include <stdlib.h>

#include "runtime/base/errors.h"
#include "runtime/lua/ttldict.h"
#include "tests/test.h"

static uint64_t fake_now;
static uint64_t fake_clock(void *data) {
  (void)data;
  return fake_now;
}

static sl_ttldict_t *make(size_t max_bytes) {
  sl_ttldict_options_t o = {0};
  o.max_bytes = max_bytes;
  o.clock = fake_clock;
  sl_ttldict_t *d = NULL;
  if (sl_ttldict_new(&o, &d) != 0) return NULL;
  return d;
}

#define S(lit) lit, sizeof(lit) - 1

static void test_set_get_overwrite(void) {
  sl_ttldict_t *d = make(0);
  char buf[64];
  size_t n = 0;
  fake_now = 1000;
  ASSERT_NOT_NULL(d);
  ASSERT_EQ(sl_ttldict_get(d, S("a"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  ASSERT_EQ(sl_ttldict_set(d, S("a"), S("hello"), 0), 0);
  ASSERT_EQ(sl_ttldict_get(d, S("a"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "hello", 5);
  /* Longer, then much shorter, then empty: each replaces the value. */
  ASSERT_EQ(sl_ttldict_set(d, S("a"), S("a considerably longer value than before"), 0), 0);
  ASSERT_EQ(sl_ttldict_get(d, S("a"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "a considerably longer value than before", 39);
  ASSERT_EQ(sl_ttldict_set(d, S("a"), S("x"), 0), 0);
  ASSERT_EQ(sl_ttldict_get(d, S("a"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "x", 1);
  ASSERT_EQ(sl_ttldict_set(d, S("a"), NULL, 0, 0), 0);
  ASSERT_EQ(sl_ttldict_get(d, S("a"), buf, sizeof(buf), &n), 0);
  ASSERT_EQ(n, 0);
  /* Binary-safe keys and values. */
  ASSERT_EQ(sl_ttldict_set(d, "k\0ey", 4, "v\0\xff", 3, 0), 0);
  ASSERT_EQ(sl_ttldict_get(d, "k\0ey", 4, buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "v\0\xff", 3);
  ASSERT_EQ(sl_ttldict_get(d, "k\0ez", 4, buf, sizeof(buf), &n), SL_ENOTFOUND);
  ASSERT_EQ(sl_ttldict_get(d, "k", 1, buf, sizeof(buf), &n), SL_ENOTFOUND);
  /* Too small a buffer: nothing copied, the size comes back. */
  ASSERT_EQ(sl_ttldict_set(d, S("b"), S("0123456789"), 0), 0);
  memset(buf, '#', sizeof(buf));
  ASSERT_EQ(sl_ttldict_get(d, S("b"), buf, 4, &n), SL_ETOOBIG);
  ASSERT_EQ(n, 10);
  ASSERT_EQ(buf[0], '#');
  ASSERT_EQ(sl_ttldict_get(d, S("b"), NULL, 0, &n), SL_ETOOBIG);
  ASSERT_EQ(n, 10);
  ASSERT_EQ(sl_ttldict_get(d, S("b"), buf, 10, &n), 0);
  size_t entries = 0;
  ASSERT_EQ(sl_ttldict_count(d, &entries, NULL), 0);
  ASSERT_EQ(entries, 3);
  sl_ttldict_free(d);
}

static void test_arguments(void) {
  sl_ttldict_t *d = make(0);
  char big[SL_TTLDICT_MAX_KEY + 1];
  char buf[8];
  size_t n;
  int64_t v;
  ASSERT_NOT_NULL(d);
  memset(big, 'k', sizeof(big));
  ASSERT_EQ(sl_ttldict_set(d, "", 0, S("v"), 0), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_set(d, NULL, 3, S("v"), 0), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_set(d, big, sizeof(big), S("v"), 0), SL_ETOOBIG);
  ASSERT_EQ(sl_ttldict_set(d, big, sizeof(big) - 1, S("v"), 0), 0);
  ASSERT_EQ(sl_ttldict_get(d, big, sizeof(big) - 1, buf, sizeof(buf), &n), 0);
  ASSERT_EQ(sl_ttldict_set(d, S("k"), S("v"), -1), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_set(d, S("k"), NULL, 2, 0), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_get(d, S("k"), NULL, 4, &n), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_incr(d, S("k"), 1, NULL, -5, &v), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_delete(d, "", 0), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_ttl(d, "", 0, &v), SL_EINVAL);
  sl_ttldict_free(d);
}

static void test_expiry_with_fake_clock(void) {
  sl_ttldict_t *d = make(0);
  char buf[16];
  size_t n, entries;
  int64_t left;
  ASSERT_NOT_NULL(d);
  fake_now = 5000;
  ASSERT_EQ(sl_ttldict_set(d, S("short"), S("s"), 100), 0);
  ASSERT_EQ(sl_ttldict_set(d, S("forever"), S("f"), 0), 0);
  ASSERT_EQ(sl_ttldict_ttl(d, S("short"), &left), 0);
  ASSERT_EQ(left, 100);
  ASSERT_EQ(sl_ttldict_ttl(d, S("forever"), &left), 0);
  ASSERT_EQ(left, 0);
  fake_now = 5099;
  ASSERT_EQ(sl_ttldict_get(d, S("short"), buf, sizeof(buf), &n), 0);
  ASSERT_EQ(sl_ttldict_ttl(d, S("short"), &left), 0);
  ASSERT_EQ(left, 1);
  /* Expired at exactly now >= set time + ttl. */
  fake_now = 5100;
  sl_ttldict_count(d, &entries, NULL);
  ASSERT_EQ(entries, 2); /* not reclaimed until touched or swept */
  ASSERT_EQ(sl_ttldict_get(d, S("short"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  sl_ttldict_count(d, &entries, NULL);
  ASSERT_EQ(entries, 1); /* the access reclaimed it */
  ASSERT_EQ(sl_ttldict_ttl(d, S("short"), &left), SL_ENOTFOUND);
  ASSERT_EQ(sl_ttldict_delete(d, S("short")), SL_ENOTFOUND);
  fake_now = 1000000000;
  ASSERT_EQ(sl_ttldict_get(d, S("forever"), buf, sizeof(buf), &n), 0);
  /* Overwriting resets the TTL; a set without TTL clears it. */
  ASSERT_EQ(sl_ttldict_set(d, S("x"), S("1"), 50), 0);
  fake_now += 40;
  ASSERT_EQ(sl_ttldict_set(d, S("x"), S("2"), 50), 0);
  fake_now += 40;
  ASSERT_EQ(sl_ttldict_get(d, S("x"), buf, sizeof(buf), &n), 0);
  ASSERT_EQ(sl_ttldict_set(d, S("x"), S("3"), 0), 0);
  fake_now += 1000;
  ASSERT_EQ(sl_ttldict_get(d, S("x"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "3", 1);
  /* An enormous TTL saturates instead of wrapping. */
  ASSERT_EQ(sl_ttldict_set(d, S("y"), S("1"), INT64_MAX), 0);
  ASSERT_EQ(sl_ttldict_ttl(d, S("y"), &left), 0);
  ASSERT_GT(left, 0);
  sl_ttldict_free(d);
}

static void test_add(void) {
  sl_ttldict_t *d = make(0);
  char buf[16];
  size_t n;
  int added = -1;
  ASSERT_NOT_NULL(d);
  fake_now = 0;
  ASSERT_EQ(sl_ttldict_add(d, S("k"), S("first"), 10, &added), 0);
  ASSERT_EQ(added, 1);
  ASSERT_EQ(sl_ttldict_add(d, S("k"), S("second"), 0, &added), 0);
  ASSERT_EQ(added, 0);
  ASSERT_EQ(sl_ttldict_get(d, S("k"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "first", 5);
  fake_now = 10; /* expired: add stores again */
  ASSERT_EQ(sl_ttldict_add(d, S("k"), S("third"), 0, &added), 0);
  ASSERT_EQ(added, 1);
  ASSERT_EQ(sl_ttldict_get(d, S("k"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "third", 5);
  ASSERT_EQ(sl_ttldict_add(d, S("k2"), S("v"), 0, NULL), 0);
  sl_ttldict_free(d);
}

static void test_incr(void) {
  sl_ttldict_t *d = make(0);
  char buf[32];
  size_t n;
  int64_t v = 0, init = 10, left;
  ASSERT_NOT_NULL(d);
  fake_now = 100;
  ASSERT_EQ(sl_ttldict_incr(d, S("c"), 1, NULL, 0, &v), SL_ENOTFOUND);
  ASSERT_EQ(sl_ttldict_incr(d, S("c"), 5, &init, 1000, &v), 0);
  ASSERT_EQ(v, 15);
  ASSERT_EQ(sl_ttldict_get(d, S("c"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "15", 2);
  /* An existing entry keeps its TTL: the ttl argument is for creation. */
  fake_now = 600;
  ASSERT_EQ(sl_ttldict_incr(d, S("c"), -20, &init, 99999, &v), 0);
  ASSERT_EQ(v, -5);
  ASSERT_EQ(sl_ttldict_ttl(d, S("c"), &left), 0);
  ASSERT_EQ(left, 500);
  ASSERT_EQ(sl_ttldict_get(d, S("c"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "-5", 2);
  /* Expired: starts again from init. */
  fake_now = 1100;
  ASSERT_EQ(sl_ttldict_incr(d, S("c"), 1, &init, 0, &v), 0);
  ASSERT_EQ(v, 11);
  ASSERT_EQ(sl_ttldict_ttl(d, S("c"), &left), 0);
  ASSERT_EQ(left, 0);
  /* A value written by set as text counts too, and grows past its room. */
  ASSERT_EQ(sl_ttldict_set(d, S("s"), S("7"), 0), 0);
  ASSERT_EQ(sl_ttldict_incr(d, S("s"), 1000000, NULL, 0, &v), 0);
  ASSERT_EQ(v, 1000007);
  ASSERT_EQ(sl_ttldict_get(d, S("s"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "1000007", 7);
  /* Not a number. */
  static const char *bad[] = { "", "-", "x", "1.5", " 1", "+1", "1 ", "9223372036854775808" };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ASSERT_EQ(sl_ttldict_set(d, S("b"), bad[i], strlen(bad[i]), 0), 0);
    ASSERT_EQ(sl_ttldict_incr(d, S("b"), 1, &init, 0, &v), SL_EPARSE);
  }
  /* The int64 edges, and overflow leaving the value alone. */
  ASSERT_EQ(sl_ttldict_set(d, S("e"), S("-9223372036854775808"), 0), 0);
  ASSERT_EQ(sl_ttldict_incr(d, S("e"), 0, NULL, 0, &v), 0);
  ASSERT(v == INT64_MIN);
  ASSERT_EQ(sl_ttldict_incr(d, S("e"), -1, NULL, 0, &v), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_get(d, S("e"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "-9223372036854775808", 20);
  ASSERT_EQ(sl_ttldict_set(d, S("e"), S("9223372036854775806"), 0), 0);
  ASSERT_EQ(sl_ttldict_incr(d, S("e"), 1, NULL, 0, &v), 0);
  ASSERT(v == INT64_MAX);
  ASSERT_EQ(sl_ttldict_incr(d, S("e"), 1, NULL, 0, &v), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_get(d, S("e"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "9223372036854775807", 19);
  init = INT64_MAX;
  ASSERT_EQ(sl_ttldict_incr(d, S("new"), 1, &init, 0, &v), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_get(d, S("new"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  sl_ttldict_free(d);
}

static void test_delete_and_flush(void) {
  sl_ttldict_t *d = make(0);
  char buf[8];
  size_t n, entries, bytes, bytes0;
  ASSERT_NOT_NULL(d);
  fake_now = 0;
  sl_ttldict_count(d, &entries, &bytes0);
  ASSERT_EQ(entries, 0);
  ASSERT_EQ(sl_ttldict_set(d, S("a"), S("1"), 0), 0);
  ASSERT_EQ(sl_ttldict_set(d, S("b"), S("2"), 0), 0);
  ASSERT_EQ(sl_ttldict_delete(d, S("a")), 0);
  ASSERT_EQ(sl_ttldict_delete(d, S("a")), SL_ENOTFOUND);
  ASSERT_EQ(sl_ttldict_get(d, S("a"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  ASSERT_EQ(sl_ttldict_get(d, S("b"), buf, sizeof(buf), &n), 0);
  /* Many entries grow the table; flush gives everything back. */
  char key[32];
  for (int i = 0; i < 20000; i++) {
    int len = snprintf(key, sizeof(key), "key-%d", i);
    ASSERT_EQ(sl_ttldict_set(d, key, (size_t)len, key, (size_t)len, i % 2 ? 1000 : 0), 0);
  }
  for (int i = 0; i < 20000; i += 7) {
    int len = snprintf(key, sizeof(key), "key-%d", i);
    ASSERT_EQ(sl_ttldict_get(d, key, (size_t)len, buf, sizeof(buf), &n), i >= 10000 ? SL_ETOOBIG : 0);
  }
  sl_ttldict_count(d, &entries, &bytes);
  ASSERT_EQ(entries, 20001);
  ASSERT_GT(bytes, 20001 * 40);
  ASSERT_EQ(sl_ttldict_flush(d), 0);
  sl_ttldict_count(d, &entries, &bytes);
  ASSERT_EQ(entries, 0);
  ASSERT_EQ(bytes, bytes0);
  ASSERT_EQ(sl_ttldict_get(d, S("b"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  sl_ttldict_free(d);
}

static void test_sweep_reclaims(void) {
  sl_ttldict_t *d = make(0);
  char key[32];
  size_t entries, total = 0;
  ASSERT_NOT_NULL(d);
  fake_now = 1;
  for (int i = 0; i < 1000; i++) {
    int len = snprintf(key, sizeof(key), "s%d", i);
    ASSERT_EQ(sl_ttldict_set(d, key, (size_t)len, "v", 1, i % 2 ? 0 : 10 + i % 7), 0);
  }
  ASSERT_EQ(sl_ttldict_sweep(d, fake_now, 100), 0); /* nothing due yet */
  fake_now = 100;
  /* Bounded steps: each examines at most about 100 entries; together they
   * go round the table and free every expired entry. */
  for (int step = 0; step < 100 && total < 500; step++) {
    size_t freed = sl_ttldict_sweep(d, fake_now, 100);
    ASSERT_LE(freed, 100 + 16); /* a step finishes the chain it is in */
    total += freed;
  }
  ASSERT_EQ(total, 500);
  sl_ttldict_count(d, &entries, NULL);
  ASSERT_EQ(entries, 500);
  ASSERT_EQ(sl_ttldict_sweep(d, fake_now, 0), 0);
  /* A full sweep does it in one call. */
  for (int i = 0; i < 300; i++) {
    int len = snprintf(key, sizeof(key), "t%d", i);
    ASSERT_EQ(sl_ttldict_set(d, key, (size_t)len, "v", 1, 5), 0);
  }
  fake_now += 5;
  ASSERT_EQ(sl_ttldict_sweep(d, fake_now, 0), 300);
  sl_ttldict_count(d, &entries, NULL);
  ASSERT_EQ(entries, 500);
  sl_ttldict_free(d);
}

static void test_memory_bound(void) {
  const size_t max = 4096;
  sl_ttldict_t *d = make(max);
  char key[32], val[100], buf[128];
  size_t entries, bytes, n;
  int i, rc = 0, added;
  ASSERT_NOT_NULL(d);
  fake_now = 0;
  memset(val, 'v', sizeof(val));
  /* A value bigger than the whole bound never fits. */
  static char huge[8192];
  ASSERT_EQ(sl_ttldict_set(d, S("huge"), huge, sizeof(huge), 0), SL_ETOOBIG);
  for (i = 0; i < 1000; i++) {
    int len = snprintf(key, sizeof(key), "k%d", i);
    rc = sl_ttldict_set(d, key, (size_t)len, val, sizeof(val), 0);
    if (rc) break;
  }
  ASSERT_EQ(rc, SL_ETOOBIG);
  ASSERT_GT(i, 10);
  sl_ttldict_count(d, &entries, &bytes);
  ASSERT_EQ(entries, (size_t)i);
  ASSERT_LE(bytes, max);
  /* A failed write changes nothing: a bigger replacement keeps the old value. */
  ASSERT_EQ(sl_ttldict_set(d, S("k0"), huge, 1000, 0), SL_ETOOBIG);
  ASSERT_EQ(sl_ttldict_get(d, S("k0"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, val, sizeof(val));
  ASSERT_EQ(sl_ttldict_add(d, S("new"), val, sizeof(val), 0, &added), SL_ETOOBIG);
  /* Fill the last crumbs with empty values; then a new counter (room for
   * 20 digits) does not fit either. */
  for (int j = 0; j < 1000; j++) {
    int len = snprintf(key, sizeof(key), "f%d", j);
    if (sl_ttldict_set(d, key, (size_t)len, NULL, 0, 0) != 0) break;
  }
  int64_t init = 0, v;
  ASSERT_EQ(sl_ttldict_incr(d, S("new"), 1, &init, 0, &v), SL_ETOOBIG);
  ASSERT_EQ(sl_ttldict_get(d, S("new"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  /* A same-size replacement and a delete still work when full. */
  ASSERT_EQ(sl_ttldict_set(d, S("k0"), S("small"), 0), 0);
  ASSERT_EQ(sl_ttldict_delete(d, S("k1")), 0);
  ASSERT_EQ(sl_ttldict_set(d, S("k1"), val, sizeof(val), 0), 0);
  ASSERT_EQ(sl_ttldict_flush(d), 0);

  /* Expired entries make room without a sweep: a full table of entries
   * with a TTL accepts new writes once they are due. */
  for (i = 0; i < 1000; i++) {
    int len = snprintf(key, sizeof(key), "e%d", i);
    if (sl_ttldict_set(d, key, (size_t)len, val, sizeof(val), 50) != 0) break;
  }
  int filled = i;
  ASSERT_EQ(sl_ttldict_set(d, S("late"), val, sizeof(val), 0), SL_ETOOBIG);
  fake_now = 50;
  for (i = 0; i < filled; i++) {
    int len = snprintf(key, sizeof(key), "n%d", i);
    ASSERT_EQ(sl_ttldict_set(d, key, (size_t)len, val, sizeof(val), 0), 0);
  }
  sl_ttldict_count(d, &entries, &bytes);
  ASSERT_EQ(entries, (size_t)filled);
  ASSERT_LE(bytes, max);
  sl_ttldict_free(d);
}

/* A backend that wraps the in-process one and counts calls: what a Redis
 * backend plugs into, with callers unchanged. */
static int wrap_calls;
static void *wrap_inner(void *self) { return self; }
static int wrap_get(void *s, const char *k, size_t kl, uint64_t now, char *b, size_t cap, size_t *vl) {
  wrap_calls++;
  return sl_ttldict_memory_backend.get(wrap_inner(s), k, kl, now, b, cap, vl);
}
static int wrap_set(void *s, const char *k, size_t kl, const char *v, size_t vl, int64_t ttl, unsigned f,
                    uint64_t now, int *stored) {
  wrap_calls++;
  return sl_ttldict_memory_backend.set(wrap_inner(s), k, kl, v, vl, ttl, f, now, stored);
}
static int wrap_incr(void *s, const char *k, size_t kl, int64_t by, const int64_t *init, int64_t ttl,
                     uint64_t now, int64_t *out) {
  wrap_calls++;
  return sl_ttldict_memory_backend.incr(wrap_inner(s), k, kl, by, init, ttl, now, out);
}
static int wrap_del(void *s, const char *k, size_t kl, uint64_t now) {
  wrap_calls++;
  return sl_ttldict_memory_backend.del(wrap_inner(s), k, kl, now);
}
static int wrap_ttl(void *s, const char *k, size_t kl, uint64_t now, int64_t *left) {
  wrap_calls++;
  return sl_ttldict_memory_backend.ttl(wrap_inner(s), k, kl, now, left);
}
static int wrap_count(void *s, size_t *e, size_t *b) {
  wrap_calls++;
  return sl_ttldict_memory_backend.count(wrap_inner(s), e, b);
}
static int wrap_flush(void *s) {
  wrap_calls++;
  return sl_ttldict_memory_backend.flush(wrap_inner(s));
}
static size_t wrap_sweep(void *s, uint64_t now, size_t max) {
  wrap_calls++;
  return sl_ttldict_memory_backend.sweep(wrap_inner(s), now, max);
}
static int wrap_destroyed;
static void wrap_destroy(void *s) {
  wrap_destroyed++;
  sl_ttldict_memory_backend.destroy(wrap_inner(s));
}
static const sl_ttldict_backend_t wrap_backend = {
  "wrap", wrap_get, wrap_set, wrap_incr, wrap_del, wrap_ttl, wrap_count, wrap_flush, wrap_sweep, wrap_destroy,
};

static void test_backend_interface(void) {
  sl_ttldict_options_t o = {0};
  sl_ttldict_t *d = NULL;
  char buf[8];
  size_t n;
  int64_t v;
  o.clock = fake_clock;
  o.backend = &wrap_backend;
  ASSERT_EQ(sl_ttldict_new(&o, &d), SL_EINVAL); /* a backend needs its state */
  ASSERT_EQ(sl_ttldict_memory_new(0, &o.backend_state), 0);
  ASSERT_EQ(sl_ttldict_new(&o, &d), 0);
  fake_now = 0;
  ASSERT_EQ(sl_ttldict_set(d, S("a"), S("1"), 10), 0);
  ASSERT_EQ(sl_ttldict_incr(d, S("a"), 2, NULL, 0, &v), 0);
  ASSERT_EQ(v, 3);
  ASSERT_EQ(sl_ttldict_get(d, S("a"), buf, sizeof(buf), &n), 0);
  ASSERT_EQ(sl_ttldict_ttl(d, S("a"), &v), 0);
  ASSERT_EQ(sl_ttldict_count(d, &n, NULL), 0);
  fake_now = 10;
  ASSERT_EQ(sl_ttldict_sweep(d, sl_ttldict_now(d), 0), 1);
  ASSERT_EQ(sl_ttldict_delete(d, S("a")), SL_ENOTFOUND);
  ASSERT_EQ(sl_ttldict_flush(d), 0);
  /* The front rejects bad arguments before the backend sees them. */
  ASSERT_EQ(sl_ttldict_set(d, "", 0, S("1"), 0), SL_EINVAL);
  ASSERT_EQ(wrap_calls, 8);
  sl_ttldict_free(d);
  ASSERT_EQ(wrap_destroyed, 1);
}

static void test_ffi_surface(void) {
  char buf[8];
  size_t n = 0, entries = 0, bytes = 0, freed = 0;
  int64_t v = 0;
  int added = -1;
  sl_ttldict_t *d = make(0), *other = make(0);
  ASSERT_NOT_NULL(d);
  ASSERT_NOT_NULL(other);
  fake_now = 5;
  ASSERT_EQ(sl_ffi_dict_set_clock_for_tests(d, 1000), 0);
  ASSERT_EQ(sl_ffi_dict_set(d, S("k"), S("v"), 100), 0);
  ASSERT_EQ(sl_ffi_dict_get(d, S("k"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "v", 1);
  ASSERT_EQ(sl_ffi_dict_add(d, S("k"), S("w"), 0, &added), 0);
  ASSERT_EQ(added, 0);
  ASSERT_EQ(sl_ffi_dict_incr(d, S("n"), 2, 1, 40, 0, &v), 0);
  ASSERT_EQ(v, 42);
  ASSERT_EQ(sl_ffi_dict_incr(d, S("m"), 2, 0, 0, 0, &v), SL_ENOTFOUND);
  ASSERT_EQ(sl_ffi_dict_ttl(d, S("k"), &v), 0);
  ASSERT_EQ(v, 100);
  ASSERT_EQ(sl_ffi_dict_count(d, &entries, &bytes), 0);
  ASSERT_EQ(entries, 2);
  /* Dictionaries share nothing: not entries, not the test clock. */
  ASSERT_EQ(sl_ffi_dict_get(other, S("k"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  ASSERT_EQ(sl_ttldict_now(other), 5);
  sl_ffi_dict_set_clock_for_tests(d, 1100);
  ASSERT_EQ(sl_ffi_dict_sweep(d, 0, &freed), 0);
  ASSERT_EQ(freed, 1);
  ASSERT_EQ(sl_ffi_dict_delete(d, S("n")), 0);
  ASSERT_EQ(sl_ffi_dict_delete(d, S("n")), SL_ENOTFOUND);
  ASSERT_EQ(sl_ffi_dict_flush(d), 0);
  ASSERT_EQ(sl_ffi_dict_count(d, &entries, &bytes), 0);
  ASSERT_EQ(entries, 0);
  sl_ffi_dict_set_clock_for_tests(d, -1);
  ASSERT_EQ(sl_ttldict_now(d), 5);
  sl_ttldict_free(d);
  sl_ttldict_free(other);
}

/* ---- agreement with a reference model ---- */

#define MODEL_KEYS 40
typedef struct {
  int present;
  char val[32];
  size_t len;
  uint64_t expire_at;
} model_entry_t;
static model_entry_t model[MODEL_KEYS];

static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}
static int rnd_in(int lo, int hi) { return lo + (int)(rnd() % (uint64_t)(hi - lo + 1)); }

static int model_live(int k, uint64_t now) {
  model_entry_t *e = &model[k];
  if (e->present && e->expire_at && now >= e->expire_at) e->present = 0;
  return e->present;
}

/* The model's own number rule: "-?[0-9]+" that strtoll reads without ERANGE. */
static int model_number(const model_entry_t *e, long long *out) {
  char tmp[40];
  size_t i = e->len && e->val[0] == '-';
  if (i == e->len) return 0;
  for (size_t j = i; j < e->len; j++)
    if (e->val[j] < '0' || e->val[j] > '9') return 0;
  memcpy(tmp, e->val, e->len);
  tmp[e->len] = 0;
  errno = 0;
  *out = strtoll(tmp, NULL, 10);
  return errno == 0;
}

static void random_value(char *v, size_t *len) {
  static const char numbers[][21] = { "0", "7", "-12", "123456", "9223372036854775800", "-9223372036854775800" };
  static const char alphabet[] = "0123456789-ab \0";
  if (rnd() % 3 == 0) {
    const char *s = numbers[rnd() % 6];
    *len = strlen(s);
    memcpy(v, s, *len);
    return;
  }
  *len = (size_t)rnd_in(0, 24);
  for (size_t i = 0; i < *len; i++) v[i] = alphabet[rnd() % (sizeof(alphabet) - 1)];
}

static void run_model(size_t max_bytes, int ops, uint64_t seed) {
  sl_ttldict_t *d = make(max_bytes);
  char key[8], val[32], buf[64];
  size_t n, vlen, entries, bytes;
  int full = 0;
  ASSERT_NOT_NULL(d);
  memset(model, 0, sizeof(model));
  rng_state = seed;
  fake_now = 1;
  for (int op = 0; op < ops; op++) {
    int k = rnd_in(0, MODEL_KEYS - 1);
    size_t klen = (size_t)snprintf(key, sizeof(key), "k%d", k);
    int64_t ttl = rnd() % 2 ? 0 : rnd_in(1, 200);
    model_entry_t *e = &model[k];
    int live = model_live(k, fake_now), rc, choice = rnd_in(0, 99);
    if (choice < 20) { /* set */
      random_value(val, &vlen);
      rc = sl_ttldict_set(d, key, klen, val, vlen, ttl);
      if (rc == SL_ETOOBIG && max_bytes) {
        full++;
        continue;
      }
      ASSERT_EQ(rc, 0);
      e->present = 1;
      memcpy(e->val, val, vlen);
      e->len = vlen;
      e->expire_at = ttl ? fake_now + (uint64_t)ttl : 0;
    } else if (choice < 30) { /* add */
      int added = -1;
      random_value(val, &vlen);
      rc = sl_ttldict_add(d, key, klen, val, vlen, ttl, &added);
      if (rc == SL_ETOOBIG && max_bytes && !live) {
        full++;
        continue;
      }
      ASSERT_EQ(rc, 0);
      ASSERT_EQ(added, !live);
      if (!live) {
        e->present = 1;
        memcpy(e->val, val, vlen);
        e->len = vlen;
        e->expire_at = ttl ? fake_now + (uint64_t)ttl : 0;
      }
    } else if (choice < 50) { /* incr */
      int64_t by = rnd_in(-100, 100), init = rnd_in(-5, 5), out = 0;
      int with_init = rnd() % 2;
      long long cur = 0;
      int expect;
      if (!live) expect = with_init ? 0 : SL_ENOTFOUND;
      else if (!model_number(e, &cur)) expect = SL_EPARSE;
      else if ((by > 0 && cur > INT64_MAX - by) || (by < 0 && cur < INT64_MIN - by)) expect = SL_EINVAL;
      else expect = 0;
      rc = sl_ttldict_incr(d, key, klen, by, with_init ? &init : NULL, ttl, &out);
      if (rc == SL_ETOOBIG && max_bytes && expect == 0) {
        full++;
        continue;
      }
      ASSERT_EQ(rc, expect);
      if (rc == 0) {
        long long sum = (live ? cur : init) + by;
        ASSERT_EQ(out, sum);
        if (!live) e->expire_at = ttl ? fake_now + (uint64_t)ttl : 0;
        e->present = 1;
        e->len = (size_t)snprintf(e->val, sizeof(e->val), "%lld", sum);
      }
    } else if (choice < 75) { /* get, sometimes into too small a buffer */
      size_t cap = rnd() % 4 ? sizeof(buf) : (size_t)rnd_in(0, 4);
      rc = sl_ttldict_get(d, key, klen, buf, cap, &n);
      if (!live) {
        ASSERT_EQ(rc, SL_ENOTFOUND);
      } else if (e->len > cap) {
        ASSERT_EQ(rc, SL_ETOOBIG);
        ASSERT_EQ(n, e->len);
      } else {
        ASSERT_EQ(rc, 0);
        ASSERT_MEM_EQ(buf, n, e->val, e->len);
      }
    } else if (choice < 83) { /* delete */
      rc = sl_ttldict_delete(d, key, klen);
      ASSERT_EQ(rc, live ? 0 : SL_ENOTFOUND);
      e->present = 0;
    } else if (choice < 88) { /* ttl */
      int64_t left = -1;
      rc = sl_ttldict_ttl(d, key, klen, &left);
      ASSERT_EQ(rc, live ? 0 : SL_ENOTFOUND);
      if (live) ASSERT_EQ(left, e->expire_at ? (int64_t)(e->expire_at - fake_now) : 0);
    } else if (choice < 96) { /* time passes */
      fake_now += (uint64_t)rnd_in(0, 60);
    } else if (choice < 99) { /* a partial or full sweep, then the count */
      size_t max = (size_t)rnd_in(0, 20);
      sl_ttldict_sweep(d, fake_now, max);
      if (max == 0) {
        size_t want = 0;
        for (int j = 0; j < MODEL_KEYS; j++) want += (size_t)model_live(j, fake_now);
        sl_ttldict_count(d, &entries, NULL);
        ASSERT_EQ(entries, want);
      }
    } else if (rnd() % 20 == 0) {
      ASSERT_EQ(sl_ttldict_flush(d), 0);
      memset(model, 0, sizeof(model));
    }
    sl_ttldict_count(d, &entries, &bytes);
    if (max_bytes) ASSERT_LE(bytes, max_bytes);
  }
  /* Every key agrees at the end. */
  for (int k = 0; k < MODEL_KEYS; k++) {
    size_t klen = (size_t)snprintf(key, sizeof(key), "k%d", k);
    int rc = sl_ttldict_get(d, key, klen, buf, sizeof(buf), &n);
    if (model_live(k, fake_now)) {
      ASSERT_EQ(rc, 0);
      ASSERT_MEM_EQ(buf, n, model[k].val, model[k].len);
    } else {
      ASSERT_EQ(rc, SL_ENOTFOUND);
    }
  }
  if (max_bytes) ASSERT_GT(full, 0); /* the bound was actually exercised */
  sl_ttldict_free(d);
}

static void test_model_unbounded(void) {
  run_model(0, 20000, 0x9e3779b97f4a7c15ull);
  run_model(0, 20000, 12345);
}

static void test_model_tight_bound(void) {
  run_model(2048, 20000, 0xdeadbeefull);
  run_model(1500, 20000, 777);
}

int main(void) {
  SL_RUN(test_set_get_overwrite);
  SL_RUN(test_arguments);
  SL_RUN(test_expiry_with_fake_clock);
  SL_RUN(test_add);
  SL_RUN(test_incr);
  SL_RUN(test_delete_and_flush);
  SL_RUN(test_sweep_reclaims);
  SL_RUN(test_memory_bound);
  SL_RUN(test_backend_interface);
  SL_RUN(test_ffi_surface);
  SL_RUN(test_model_unbounded);
  SL_RUN(test_model_tight_bound);
  return SL_TEST_EXIT();
}
