/* chunk_pool.c: the recycle list behind upstream reads (see chunk_pool.h). */
#include "runtime/base/chunk_pool.h"

#include <assert.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/base/errors.h"

#ifdef SL_POISON
#include <sanitizer/asan_interface.h>
#define SL_POISON_BYTES(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define SL_UNPOISON_BYTES(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define SL_POISON_BYTES(p, n) ((void)(p), (void)(n))
#define SL_UNPOISON_BYTES(p, n) ((void)(p), (void)(n))
#endif

int sl_chunk_pool_init(sl_chunk_pool_t *pool, size_t chunk_size, size_t keep) {
  if (chunk_size == 0 || chunk_size > UINT32_MAX) return SL_EINVAL;
  pool->chunk_size = chunk_size;
  pool->keep = keep;
  pool->free_list = NULL;
  pool->nfree = 0;
  pool->in_use = 0;
  pool->allocated = 0;
  pool->reused = 0;
  pool->counters = NULL;
  return 0;
}

void sl_chunk_pool_destroy(sl_chunk_pool_t *pool) {
  sl_chunk_t *c = pool->free_list;
  while (c != NULL) {
    SL_UNPOISON_BYTES(c->data, c->cap);
    sl_chunk_t *next = c->next;
    sl_free(c);
    c = next;
  }
  pool->free_list = NULL;
  pool->nfree = 0;
}

sl_chunk_t *sl_chunk_get(sl_chunk_pool_t *pool) {
  sl_chunk_t *c = pool->free_list;
  if (c != NULL) {
    pool->free_list = c->next;
    pool->nfree--;
    pool->reused++;
    SL_UNPOISON_BYTES(c->data, c->cap);
    sl_counter_inc(pool->counters, SL_C_CHUNKS_REUSED);
  } else {
    c = sl_malloc(sizeof(*c) + pool->chunk_size);
    c->pool = pool;
    c->cap = (uint32_t)pool->chunk_size;
    pool->allocated++;
    sl_counter_inc(pool->counters, SL_C_CHUNKS_ALLOCATED);
  }
  c->next = NULL;
  c->refcnt = 1;
  c->len = 0;
  c->charged = NULL;
  pool->in_use++;
  sl_counter_inc(pool->counters, SL_C_CHUNKS_IN_USE);
  return c;
}

static void sl__uncharge(sl_chunk_t *c) {
  sl_pin_account_t *a = c->charged;
  if (a == NULL) return;
  c->charged = NULL;
  if (--a->chunks == 0 && a->released) sl_free(a);
}

void sl_chunk_charge(sl_chunk_t *c, sl_pin_account_t *acct) {
  sl__uncharge(c);
  c->charged = acct;
  if (acct != NULL && ++acct->chunks > acct->peak) acct->peak = acct->chunks;
}

sl_pin_account_t *sl_pin_account_new(void) { return sl_calloc(1, sizeof(sl_pin_account_t)); }

void sl_pin_account_release(sl_pin_account_t *acct) {
  if (acct == NULL) return;
  acct->released = 1;
  if (acct->chunks == 0) sl_free(acct);
}

void sl_chunk_unref(sl_chunk_t *c) {
  assert(c->refcnt > 0);
  if (--c->refcnt > 0) return;
  sl_chunk_pool_t *pool = c->pool;
  sl__uncharge(c);
  pool->in_use--;
  sl_counter_dec(pool->counters, SL_C_CHUNKS_IN_USE);
  if (pool->nfree < pool->keep) {
    c->next = pool->free_list;
    pool->free_list = c;
    pool->nfree++;
    SL_POISON_BYTES(c->data, c->cap);
  } else {
    sl_free(c);
  }
}

int sl_chunk_pool_poisoned(const void *p) {
#ifdef SL_POISON
  return __asan_address_is_poisoned(p) ? 1 : 0;
#else
  (void)p;
  return 0;
#endif
}
