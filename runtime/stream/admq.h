/* admq.h: the admission queue of a pool (docs/admission.md).
 *
 * Strict priority bands (band 0 is served first), and inside a band either
 * FIFO (push, pop and remove O(1), over intrusive links) or, when the queue
 * is made with edf = 1, earliest deadline first (a binary heap per band:
 * push, pop and remove O(log n); equal deadlines in arrival order).  The
 * queue holds nodes the caller embeds in its own objects and never frees
 * them; a bounded queue refuses a push past its capacity.  The EDF heaps
 * grow by doubling (sl_realloc) on a push: no allocation on pop or remove.
 */
#ifndef SL_ADMQ_H
#define SL_ADMQ_H

#include <stddef.h>
#include <stdint.h>

#define SL_ADMQ_BANDS 3 /* sl_priority_t: high, normal, low */

/* A node must be zeroed before its first push (queued = 0); pop and remove
 * leave it ready for the next one. */
typedef struct sl_admq_node_s {
  struct sl_admq_node_s *prev, *next; /* FIFO links inside the band */
  uint64_t deadline;  /* ordering key under EDF (any unit; the caller's) */
  uint64_t seq;       /* arrival order, set by push */
  int band;           /* set by push */
  int heap_index;     /* position in the band's heap under EDF */
  int queued;         /* 1 while in a queue */
} sl_admq_node_t;

typedef struct {
  int edf;                            /* earliest deadline first inside a band */
  size_t cap;                         /* most nodes queued (0 = no bound) */
  size_t n;                           /* nodes queued */
  size_t nband[SL_ADMQ_BANDS];        /* nodes queued per band */
  sl_admq_node_t *head[SL_ADMQ_BANDS], *tail[SL_ADMQ_BANDS]; /* FIFO */
  sl_admq_node_t **heap[SL_ADMQ_BANDS];                     /* EDF */
  size_t heap_cap[SL_ADMQ_BANDS];
  uint64_t seq;
} sl_admq_t;

/* An empty queue: FIFO inside a band, or EDF when edf is nonzero; at most
 * cap nodes (0: no bound).  Allocates nothing. */
void sl_admq_init(sl_admq_t *q, int edf, size_t cap);
/* Frees the heaps; the nodes are the caller's.  Nodes still queued are left
 * unqueued, and q is empty again (same edf and cap), ready for pushes. */
void sl_admq_free(sl_admq_t *q);
/* Queues n in band (clamped to [0, SL_ADMQ_BANDS)) with deadline (kept in
 * n even under FIFO).  Returns 0, or SL_ETOOBIG when the queue holds cap
 * nodes (n is left out), or SL_EINVAL when n is already queued (here or in
 * another queue; n is left as it was).  Growing an EDF heap aborts when
 * memory is exhausted, as sl_realloc does. */
int sl_admq_push(sl_admq_t *q, sl_admq_node_t *n, int band, uint64_t deadline);
/* The node served next (the first band with nodes: its FIFO head or its
 * earliest deadline), or NULL when empty.  pop also removes it. */
sl_admq_node_t *sl_admq_peek(const sl_admq_t *q);
sl_admq_node_t *sl_admq_pop(sl_admq_t *q);
/* Takes n out of q, which must be the queue it is in (a no-op when n is
 * not queued).  FIFO O(1), EDF O(log n); allocates nothing. */
void sl_admq_remove(sl_admq_t *q, sl_admq_node_t *n);

#endif
