/* chunk_pool.h: fixed-size, refcounted byte chunks on a recycle list.
 *
 * Upstream reads land in pool chunks; token events are spans into them and a
 * write to a client holds a reference until libuv has sent the bytes, so the
 * same bytes go from the engine's socket to the client's without a copy.
 * A released chunk goes back on the pool's recycle list while the list holds
 * fewer than `keep` chunks (the low watermark); past that it is freed, so
 * idle memory stays bounded.  In the sanitizer build (SL_POISON) a chunk's
 * bytes are poisoned while it sits on the recycle list, so a use after
 * release is reported by AddressSanitizer.
 *
 * A chunk may be charged to a pin account (one per stream): the account
 * counts the chunks that stream keeps alive, and its peak, so the relay can
 * show that the bytes it pins per stream stay bounded.  An account may be
 * released by its owner while chunks still hold it; it is freed when the
 * last of them goes.  Units: sizes in bytes.  Single-threaded (one loop).
 */
#ifndef SL_CHUNK_POOL_H
#define SL_CHUNK_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/counters.h"

typedef struct sl_chunk_pool_s sl_chunk_pool_t;
typedef struct sl_chunk_s sl_chunk_t;
typedef struct sl_pin_account_s sl_pin_account_t;

struct sl_pin_account_s {
  uint32_t chunks;           /* chunks charged to this account and still alive */
  uint32_t peak;             /* the most that were alive at once */
  int released;              /* owner is gone: free when chunks reaches 0 */
};

struct sl_chunk_s {
  sl_chunk_t *next;          /* recycle-list link; NULL while in use */
  sl_chunk_pool_t *pool;     /* the pool it returns to */
  uint32_t refcnt;           /* references; 0 only on the recycle list */
  uint32_t cap;              /* usable bytes in data[] */
  uint32_t len;              /* bytes written so far by the producer */
  sl_pin_account_t *charged; /* account charged for this chunk, or NULL */
  unsigned char data[];      /* the bytes */
};

struct sl_chunk_pool_s {
  size_t chunk_size;         /* data[] capacity of every chunk */
  size_t keep;               /* low watermark: most chunks kept for reuse */
  sl_chunk_t *free_list;     /* recycled chunks, poisoned under SL_POISON */
  size_t nfree;              /* chunks on free_list */
  size_t in_use;             /* chunks handed out and not yet released */
  uint64_t allocated;        /* chunks ever obtained from the allocator */
  uint64_t reused;           /* chunks ever served from the recycle list */
  sl_counters_t *counters;   /* the owner's counters (NULL, the default: none) */
};

/* Initializes a pool of chunk_size-byte chunks keeping at most `keep` idle.
 * Returns 0, or SL_EINVAL for a zero or over-4-GiB size. */
int sl_chunk_pool_init(sl_chunk_pool_t *pool, size_t chunk_size, size_t keep);

/* Frees every idle chunk.  Release every chunk before destroying the pool:
 * in_use tells how many are still out, for the caller to assert on. */
void sl_chunk_pool_destroy(sl_chunk_pool_t *pool);

/* Returns a chunk with refcnt 1 and len 0, reused if possible.  Never NULL
 * (aborts on exhaustion like sl_malloc). */
sl_chunk_t *sl_chunk_get(sl_chunk_pool_t *pool);

/* Adds a reference. */
static inline void sl_chunk_ref(sl_chunk_t *c) { c->refcnt++; }

/* Drops a reference; the last one recycles or frees the chunk and
 * uncharges its account. */
void sl_chunk_unref(sl_chunk_t *c);

/* Charges the chunk to acct (counted now, uncounted when the chunk is
 * released).  A chunk carries at most one charge; re-charging moves it. */
void sl_chunk_charge(sl_chunk_t *c, sl_pin_account_t *acct);

/* A new, zeroed pin account (heap).  Never NULL. */
sl_pin_account_t *sl_pin_account_new(void);
/* The owner lets go: the account is freed now if no chunk holds it, else
 * when the last one is released. */
void sl_pin_account_release(sl_pin_account_t *acct);

/* 1 if p lies in memory that is currently poisoned (SL_POISON builds only;
 * always 0 otherwise).  For tests. */
int sl_chunk_pool_poisoned(const void *p);

#endif
