/* Tests for runtime/chunk_pool: recycling, the low watermark, refcounts,
 * charge counters, and poisoning of recycled chunks in the sanitizer build. */
#include "runtime/base/alloc.h"
#include "runtime/base/chunk_pool.h"
#include "runtime/base/counters.h"
#include "test.h"

static void test_get_and_recycle(void) {
  sl_chunk_pool_t pool;
  ASSERT_EQ(sl_chunk_pool_init(&pool, 4096, 2), 0);
  sl_chunk_t *a = sl_chunk_get(&pool);
  ASSERT_EQ(a->cap, 4096);
  ASSERT_EQ(a->len, 0);
  ASSERT_EQ(a->refcnt, 1);
  memset(a->data, 'x', a->cap);
  sl_chunk_unref(a);
  ASSERT_EQ(pool.nfree, 1);
  ASSERT_EQ(pool.in_use, 0);
  sl_chunk_t *b = sl_chunk_get(&pool);
  ASSERT(b == a); /* reused, not allocated */
  ASSERT_UINT_EQ(pool.allocated, 1);
  ASSERT_UINT_EQ(pool.reused, 1);
  sl_chunk_unref(b);
  sl_chunk_pool_destroy(&pool);
}

static void test_low_watermark_bounds_idle_chunks(void) {
  sl_chunk_pool_t pool;
  sl_chunk_t *c[10];
  ASSERT_EQ(sl_chunk_pool_init(&pool, 512, 3), 0);
  for (int i = 0; i < 10; i++) c[i] = sl_chunk_get(&pool);
  ASSERT_EQ(pool.in_use, 10);
  for (int i = 0; i < 10; i++) sl_chunk_unref(c[i]);
  ASSERT_EQ(pool.nfree, 3); /* the other 7 went back to the allocator */
  ASSERT_EQ(pool.in_use, 0);
  sl_chunk_pool_destroy(&pool);
  ASSERT_EQ(pool.nfree, 0);
}

static void test_refcount_keeps_chunk_alive(void) {
  sl_chunk_pool_t pool;
  ASSERT_EQ(sl_chunk_pool_init(&pool, 256, 4), 0);
  sl_chunk_t *a = sl_chunk_get(&pool);
  sl_chunk_ref(a);
  sl_chunk_ref(a);
  sl_chunk_unref(a);
  sl_chunk_unref(a);
  ASSERT_EQ(pool.nfree, 0);
  ASSERT_EQ(pool.in_use, 1);
  sl_chunk_unref(a);
  ASSERT_EQ(pool.nfree, 1);
  sl_chunk_pool_destroy(&pool);
}

static void test_charge_counts_live_chunks(void) {
  sl_chunk_pool_t pool;
  sl_pin_account_t *acct = sl_pin_account_new(), *other = sl_pin_account_new();
  ASSERT_EQ(sl_chunk_pool_init(&pool, 256, 4), 0);
  sl_chunk_t *a = sl_chunk_get(&pool), *b = sl_chunk_get(&pool);
  sl_chunk_charge(a, acct);
  sl_chunk_charge(b, acct);
  ASSERT_EQ(acct->chunks, 2);
  ASSERT_EQ(acct->peak, 2);
  sl_chunk_charge(b, other); /* moves the charge */
  ASSERT_EQ(acct->chunks, 1);
  ASSERT_EQ(acct->peak, 2);
  ASSERT_EQ(other->chunks, 1);
  sl_chunk_ref(a);
  sl_chunk_unref(a);
  ASSERT_EQ(acct->chunks, 1); /* still referenced */
  sl_chunk_unref(a);
  ASSERT_EQ(acct->chunks, 0);
  sl_pin_account_release(acct); /* freed at once: nothing holds it */
  /* Released while a chunk still holds it: freed with the chunk (ASan
   * reports a leak or a use after free if not). */
  sl_pin_account_release(other);
  sl_chunk_unref(b);
  sl_chunk_pool_destroy(&pool);
}

static void test_gauge_tracks_in_use(void) {
  sl_chunk_pool_t pool;
  sl_counters_t counters = {{0}};
  uint64_t before = sl_counter_get(&counters, SL_C_CHUNKS_IN_USE);
  ASSERT_EQ(sl_chunk_pool_init(&pool, 128, 1), 0);
  pool.counters = &counters;
  sl_chunk_t *a = sl_chunk_get(&pool);
  ASSERT_UINT_EQ(sl_counter_get(&counters, SL_C_CHUNKS_IN_USE), before + 1);
  sl_chunk_unref(a);
  ASSERT_UINT_EQ(sl_counter_get(&counters, SL_C_CHUNKS_IN_USE), before);
  sl_chunk_pool_destroy(&pool);
}

static void test_recycled_chunk_is_poisoned(void) {
  sl_chunk_pool_t pool;
  ASSERT_EQ(sl_chunk_pool_init(&pool, 1024, 2), 0);
  sl_chunk_t *a = sl_chunk_get(&pool);
  ASSERT_EQ(sl_chunk_pool_poisoned(a->data), 0);
  ASSERT_EQ(sl_chunk_pool_poisoned(a->data + 1023), 0);
  sl_chunk_unref(a);
#ifdef SL_POISON
  /* On the recycle list every data byte is poisoned: any read is reported. */
  ASSERT_EQ(sl_chunk_pool_poisoned(a->data), 1);
  ASSERT_EQ(sl_chunk_pool_poisoned(a->data + 512), 1);
  ASSERT_EQ(sl_chunk_pool_poisoned(a->data + 1023), 1);
#endif
  sl_chunk_t *b = sl_chunk_get(&pool);
  ASSERT(b == a);
  ASSERT_EQ(sl_chunk_pool_poisoned(b->data), 0);
  ASSERT_EQ(sl_chunk_pool_poisoned(b->data + 1023), 0);
  sl_chunk_unref(b);
  sl_chunk_pool_destroy(&pool);
}

static void test_rejects_bad_size(void) {
  sl_chunk_pool_t pool;
  ASSERT_LT(sl_chunk_pool_init(&pool, 0, 1), 0);
}

int main(void) {
  SL_RUN(test_get_and_recycle);
  SL_RUN(test_low_watermark_bounds_idle_chunks);
  SL_RUN(test_refcount_keeps_chunk_alive);
  SL_RUN(test_charge_counts_live_chunks);
  SL_RUN(test_gauge_tracks_in_use);
  SL_RUN(test_recycled_chunk_is_poisoned);
  SL_RUN(test_rejects_bad_size);
  return SL_TEST_EXIT();
}
