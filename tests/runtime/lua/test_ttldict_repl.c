/* test_ttldict_repl.c: the TTL dictionary's replication hook.  A recording
 * hook sees every successful local change with its op, key, value, TTL and
 * increment, and every get that missed; failed writes, adds that found an
 * entry, "t:" keys and the apply functions never reach it; removing the
 * hook restores the plain behaviour.
 */
#include <stdlib.h>

#include "runtime/base/errors.h"
#include "runtime/lua/ttldict.h"
#include "tests/test.h"

static uint64_t fake_now;
static uint64_t fake_clock(void *data) {
  (void)data;
  return fake_now;
}

#define S(lit) lit, sizeof(lit) - 1

/* What the hook saw last, and how often. */
typedef struct {
  int writes, misses;
  int op;
  char key[64], val[64];
  size_t klen, vlen;
  int key_null, val_null;
  int64_t ttl_ms, incr_by;
} rec_t;

static void rec_write(void *ud, int op, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms,
                      int64_t incr_by) {
  rec_t *r = ud;
  r->writes++;
  r->op = op;
  r->key_null = key == NULL;
  r->val_null = val == NULL;
  r->klen = klen;
  r->vlen = vlen;
  if (key && klen <= sizeof(r->key)) memcpy(r->key, key, klen);
  if (val && vlen <= sizeof(r->val)) memcpy(r->val, val, vlen);
  r->ttl_ms = ttl_ms;
  r->incr_by = incr_by;
}

static void rec_miss(void *ud, const char *key, size_t klen) {
  rec_t *r = ud;
  r->misses++;
  r->klen = klen;
  if (klen <= sizeof(r->key)) memcpy(r->key, key, klen);
}

static const sl_ttldict_repl_t rec_hook = {rec_write, rec_miss};

static sl_ttldict_t *make(size_t max_bytes, rec_t *r) {
  sl_ttldict_options_t o = {0};
  o.max_bytes = max_bytes;
  o.clock = fake_clock;
  sl_ttldict_t *d = NULL;
  if (sl_ttldict_new(&o, &d) != 0) return NULL;
  memset(r, 0, sizeof(*r));
  if (sl_ttldict_set_repl(d, &rec_hook, r) != 0) {
    sl_ttldict_free(d);
    return NULL;
  }
  return d;
}

static void test_hook_sees_each_op(void) {
  rec_t r;
  sl_ttldict_t *d = make(0, &r);
  char buf[32];
  size_t n = 0;
  int added = -1;
  int64_t sum = 0;
  fake_now = 1000;
  ASSERT_NOT_NULL(d);

  ASSERT_EQ(sl_ttldict_set(d, S("a"), S("one"), 500), 0);
  ASSERT_EQ(r.writes, 1);
  ASSERT_EQ(r.op, SL_TTLDICT_OP_SET);
  ASSERT_MEM_EQ(r.key, r.klen, "a", 1);
  ASSERT_MEM_EQ(r.val, r.vlen, "one", 3);
  ASSERT_EQ(r.ttl_ms, 500);
  ASSERT_EQ(r.incr_by, 0);

  /* An add that adds is told; one that finds the entry is not. */
  ASSERT_EQ(sl_ttldict_add(d, S("b"), S("two"), 0, &added), 0);
  ASSERT_EQ(added, 1);
  ASSERT_EQ(r.writes, 2);
  ASSERT_EQ(r.op, SL_TTLDICT_OP_ADD);
  ASSERT_MEM_EQ(r.key, r.klen, "b", 1);
  ASSERT_MEM_EQ(r.val, r.vlen, "two", 3);
  ASSERT_EQ(r.ttl_ms, 0);
  ASSERT_EQ(sl_ttldict_add(d, S("b"), S("three"), 0, &added), 0);
  ASSERT_EQ(added, 0);
  ASSERT_EQ(r.writes, 2);
  ASSERT_EQ(sl_ttldict_add(d, S("b2"), S("x"), 0, NULL), 0);
  ASSERT_EQ(r.writes, 3);

  /* incr: the sum in decimal, the increment, the entry's remaining TTL. */
  int64_t init = 40;
  ASSERT_EQ(sl_ttldict_incr(d, S("c"), 2, &init, 300, &sum), 0);
  ASSERT_EQ(sum, 42);
  ASSERT_EQ(r.writes, 4);
  ASSERT_EQ(r.op, SL_TTLDICT_OP_INCR);
  ASSERT_MEM_EQ(r.key, r.klen, "c", 1);
  ASSERT_MEM_EQ(r.val, r.vlen, "42", 2);
  ASSERT_EQ(r.incr_by, 2);
  ASSERT_EQ(r.ttl_ms, 300);
  fake_now = 1100;
  ASSERT_EQ(sl_ttldict_incr(d, S("c"), -50, NULL, 0, &sum), 0);
  ASSERT_EQ(sum, -8);
  ASSERT_EQ(r.writes, 5);
  ASSERT_MEM_EQ(r.val, r.vlen, "-8", 2);
  ASSERT_EQ(r.incr_by, -50);
  ASSERT_EQ(r.ttl_ms, 200);
  /* An incr without init on an absent key, or on text, changed nothing. */
  ASSERT_EQ(sl_ttldict_incr(d, S("nope"), 1, NULL, 0, &sum), SL_ENOTFOUND);
  ASSERT_EQ(sl_ttldict_incr(d, S("a"), 1, NULL, 0, &sum), SL_EPARSE);
  ASSERT_EQ(r.writes, 5);

  /* delete: told whether or not the entry was here. */
  ASSERT_EQ(sl_ttldict_delete(d, S("a")), 0);
  ASSERT_EQ(r.writes, 6);
  ASSERT_EQ(r.op, SL_TTLDICT_OP_DELETE);
  ASSERT_MEM_EQ(r.key, r.klen, "a", 1);
  ASSERT(r.val_null);
  ASSERT_EQ(r.vlen, 0);
  ASSERT_EQ(sl_ttldict_delete(d, S("a")), SL_ENOTFOUND);
  ASSERT_EQ(r.writes, 7);
  ASSERT_EQ(r.op, SL_TTLDICT_OP_DELETE);

  /* get: a hit is silent, a miss is told, with the key. */
  ASSERT_EQ(sl_ttldict_get(d, S("b"), buf, sizeof(buf), &n), 0);
  ASSERT_EQ(r.misses, 0);
  ASSERT_EQ(sl_ttldict_get(d, S("zz"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  ASSERT_EQ(r.misses, 1);
  ASSERT_MEM_EQ(r.key, r.klen, "zz", 2);
  /* Too small a buffer is not a miss. */
  ASSERT_EQ(sl_ttldict_get(d, S("b"), buf, 1, &n), SL_ETOOBIG);
  ASSERT_EQ(r.misses, 1);
  /* An expired entry is a miss. */
  fake_now = 2000;
  ASSERT_EQ(sl_ttldict_get(d, S("c"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  ASSERT_EQ(r.misses, 2);
  ASSERT_EQ(r.writes, 7);

  /* flush: no key. */
  ASSERT_EQ(sl_ttldict_flush(d), 0);
  ASSERT_EQ(r.writes, 8);
  ASSERT_EQ(r.op, SL_TTLDICT_OP_FLUSH);
  ASSERT(r.key_null);
  ASSERT_EQ(r.klen, 0);
  sl_ttldict_free(d);
}

static void test_failed_writes_are_silent(void) {
  rec_t r;
  sl_ttldict_t *d = make(1024, &r);
  static char big[4096];
  fake_now = 1000;
  ASSERT_NOT_NULL(d);
  ASSERT_EQ(sl_ttldict_set(d, S(""), S("v"), 0), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_set(d, S("k"), S("v"), -1), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_set(d, S("k"), big, sizeof(big), 0), SL_ETOOBIG);
  ASSERT_EQ(sl_ttldict_add(d, S("k"), big, sizeof(big), 0, NULL), SL_ETOOBIG);
  ASSERT_EQ(sl_ttldict_delete(d, S("")), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_get(d, S(""), NULL, 0, NULL), SL_EINVAL);
  ASSERT_EQ(r.writes, 0);
  ASSERT_EQ(r.misses, 0);
  sl_ttldict_free(d);
}

static void test_tenant_keys_stay_local(void) {
  rec_t r;
  sl_ttldict_t *d = make(0, &r);
  char buf[32];
  size_t n = 0;
  int64_t init = 0, sum = 0;
  fake_now = 1000;
  ASSERT_NOT_NULL(d);
  ASSERT_EQ(sl_ttldict_set(d, S("t:acme:rpm"), S("1"), 60000), 0);
  ASSERT_EQ(sl_ttldict_add(d, S("t:acme:tpm"), S("1"), 60000, NULL), 0);
  ASSERT_EQ(sl_ttldict_incr(d, S("t:acme:rpm"), 1, &init, 60000, &sum), 0);
  ASSERT_EQ(sl_ttldict_delete(d, S("t:acme:tpm")), 0);
  ASSERT_EQ(sl_ttldict_get(d, S("t:acme:tpd"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  ASSERT_EQ(r.writes, 0);
  ASSERT_EQ(r.misses, 0);
  /* Only the exact prefix: "t" alone and "tx:" are shared keys. */
  ASSERT_EQ(sl_ttldict_set(d, S("t"), S("1"), 0), 0);
  ASSERT_EQ(sl_ttldict_set(d, S("tx:1"), S("1"), 0), 0);
  ASSERT_EQ(sl_ttldict_get(d, S("T:1"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  ASSERT_EQ(r.writes, 2);
  ASSERT_EQ(r.misses, 1);
  sl_ttldict_free(d);
}

static void test_apply_does_not_call_hook(void) {
  rec_t r;
  sl_ttldict_t *d = make(0, &r);
  char buf[32];
  size_t n = 0;
  int added = -1;
  int64_t left = 0;
  fake_now = 1000;
  ASSERT_NOT_NULL(d);
  ASSERT_EQ(sl_ttldict_apply_set(d, S("k"), S("remote"), 700), 0);
  ASSERT_EQ(sl_ttldict_get(d, S("k"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "remote", 6);
  ASSERT_EQ(sl_ttldict_ttl(d, S("k"), &left), 0);
  ASSERT_EQ(left, 700);
  ASSERT_EQ(sl_ttldict_apply_add(d, S("k"), S("other"), 0, &added), 0);
  ASSERT_EQ(added, 0);
  ASSERT_EQ(sl_ttldict_apply_add(d, S("k2"), S("fill"), 0, &added), 0);
  ASSERT_EQ(added, 1);
  ASSERT_EQ(sl_ttldict_get(d, S("k2"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "fill", 4);
  ASSERT_EQ(sl_ttldict_apply_delete(d, S("k")), 0);
  ASSERT_EQ(sl_ttldict_apply_delete(d, S("k")), SL_ENOTFOUND);
  ASSERT_EQ(sl_ttldict_apply_set(d, S(""), S("v"), 0), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_apply_set(d, S("k"), S("v"), -5), SL_EINVAL);
  ASSERT_EQ(r.writes, 0);
  ASSERT_EQ(r.misses, 0);
  sl_ttldict_free(d);
}

static void test_remove_hook(void) {
  rec_t r;
  sl_ttldict_t *d = make(0, &r);
  char buf[8];
  size_t n = 0;
  sl_ttldict_repl_t bad = {NULL, rec_miss};
  fake_now = 1000;
  ASSERT_NOT_NULL(d);
  ASSERT_EQ(sl_ttldict_set_repl(d, &bad, &r), SL_EINVAL);
  ASSERT_EQ(sl_ttldict_set(d, S("a"), S("1"), 0), 0);
  ASSERT_EQ(r.writes, 1); /* the bad hook did not replace the good one */
  ASSERT_EQ(sl_ttldict_set_repl(d, NULL, NULL), 0);
  ASSERT_EQ(sl_ttldict_set(d, S("a"), S("2"), 0), 0);
  ASSERT_EQ(sl_ttldict_delete(d, S("a")), 0);
  ASSERT_EQ(sl_ttldict_get(d, S("a"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  ASSERT_EQ(sl_ttldict_flush(d), 0);
  ASSERT_EQ(r.writes, 1);
  ASSERT_EQ(r.misses, 0);
  /* A hook without on_miss: misses are nobody's business. */
  sl_ttldict_repl_t writes_only = {rec_write, NULL};
  ASSERT_EQ(sl_ttldict_set_repl(d, &writes_only, &r), 0);
  ASSERT_EQ(sl_ttldict_get(d, S("a"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  ASSERT_EQ(sl_ttldict_set(d, S("a"), S("3"), 0), 0);
  ASSERT_EQ(r.writes, 2);
  ASSERT_EQ(r.misses, 0);
  sl_ttldict_free(d);
}

/* The FFI surface (lua/sluice/dict.lua) reaches the hook too. */
static void test_ffi_reaches_hook(void) {
  rec_t r;
  sl_ttldict_t *d = make(0, &r);
  char buf[8];
  size_t n = 0;
  int added = 0;
  int64_t out = 0;
  fake_now = 1000;
  ASSERT_NOT_NULL(d);
  ASSERT_EQ(sl_ffi_dict_set(d, S("affinity:s1"), S("127.0.0.1:9001"), 600000), 0);
  ASSERT_EQ(sl_ffi_dict_add(d, S("x"), S("1"), 0, &added), 0);
  ASSERT_EQ(sl_ffi_dict_incr(d, S("learning:clock"), 1, 1, 0, 0, &out), 0);
  ASSERT_EQ(sl_ffi_dict_delete(d, S("x")), 0);
  ASSERT_EQ(sl_ffi_dict_get(d, S("learning:h:1"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  ASSERT_EQ(r.writes, 4);
  ASSERT_EQ(r.misses, 1);
  sl_ttldict_free(d);
}

int main(void) {
  SL_RUN(test_hook_sees_each_op);
  SL_RUN(test_failed_writes_are_silent);
  SL_RUN(test_tenant_keys_stay_local);
  SL_RUN(test_apply_does_not_call_hook);
  SL_RUN(test_remove_hook);
  SL_RUN(test_ffi_reaches_hook);
  return SL_TEST_EXIT();
}
