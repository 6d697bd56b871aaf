/* admq.c: the admission queue (see admq.h).
 *
 * FIFO bands are doubly linked lists through the nodes themselves.  EDF
 * bands are binary min-heaps of node pointers ordered by (deadline, seq):
 * seq breaks ties so that equal deadlines leave in arrival order, which a
 * heap alone would not keep.  Each node records its heap position, so a
 * node can be taken out of the middle (a client that went away) in
 * O(log n) without a search.
 */
#include "runtime/stream/admq.h"

#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"

void sl_admq_init(sl_admq_t *q, int edf, size_t cap) {
  memset(q, 0, sizeof(*q));
  q->edf = edf != 0;
  q->cap = cap;
}

void sl_admq_free(sl_admq_t *q) {
  /* Nodes still queued are the caller's; leave them unqueued so they can
   * be pushed into another queue (or this one after a new init). */
  for (int b = 0; b < SL_ADMQ_BANDS; b++) {
    if (q->edf) {
      for (size_t i = 0; i < q->nband[b]; i++) q->heap[b][i]->queued = 0;
    } else {
      for (sl_admq_node_t *n = q->head[b]; n != NULL; n = n->next) n->queued = 0;
    }
    sl_free(q->heap[b]);
  }
  sl_admq_init(q, q->edf, q->cap);
}

/* a is served before b. */
static int sl__admq_before(const sl_admq_node_t *a, const sl_admq_node_t *b) {
  return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void sl__admq_place(sl_admq_node_t **h, size_t i, sl_admq_node_t *n) {
  h[i] = n;
  n->heap_index = (int)i;
}

static void sl__admq_up(sl_admq_node_t **h, size_t i) {
  sl_admq_node_t *n = h[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!sl__admq_before(n, h[parent])) break;
    sl__admq_place(h, i, h[parent]);
    i = parent;
  }
  sl__admq_place(h, i, n);
}

static void sl__admq_down(sl_admq_node_t **h, size_t len, size_t i) {
  sl_admq_node_t *n = h[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= len) break;
    if (c + 1 < len && sl__admq_before(h[c + 1], h[c])) c++;
    if (!sl__admq_before(h[c], n)) break;
    sl__admq_place(h, i, h[c]);
    i = c;
  }
  sl__admq_place(h, i, n);
}

int sl_admq_push(sl_admq_t *q, sl_admq_node_t *n, int band, uint64_t deadline) {
  if (n->queued) return SL_EINVAL;
  if (q->cap != 0 && q->n >= q->cap) return SL_ETOOBIG;
  if (band < 0) band = 0;
  if (band >= SL_ADMQ_BANDS) band = SL_ADMQ_BANDS - 1;
  size_t len = q->nband[band];
  if (q->edf) {
    if (len == q->heap_cap[band]) {
      /* Grow before touching n, so nothing is half done if it aborts. */
      size_t ncap = q->heap_cap[band] ? 2 * q->heap_cap[band] : 16;
      q->heap[band] = sl_realloc(q->heap[band], ncap * sizeof(*q->heap[band]));
      q->heap_cap[band] = ncap;
    }
  }
  n->deadline = deadline;
  n->seq = q->seq++;
  n->band = band;
  n->queued = 1;
  if (q->edf) {
    n->prev = n->next = NULL;
    q->heap[band][len] = n;
    n->heap_index = (int)len;
    sl__admq_up(q->heap[band], len);
  } else {
    n->heap_index = -1;
    n->next = NULL;
    n->prev = q->tail[band];
    if (q->tail[band]) q->tail[band]->next = n;
    else q->head[band] = n;
    q->tail[band] = n;
  }
  q->nband[band] = len + 1;
  q->n++;
  return 0;
}

sl_admq_node_t *sl_admq_peek(const sl_admq_t *q) {
  for (int b = 0; b < SL_ADMQ_BANDS; b++) {
    if (q->nband[b] == 0) continue;
    return q->edf ? q->heap[b][0] : q->head[b];
  }
  return NULL;
}

sl_admq_node_t *sl_admq_pop(sl_admq_t *q) {
  sl_admq_node_t *n = sl_admq_peek(q);
  if (n != NULL) sl_admq_remove(q, n);
  return n;
}

void sl_admq_remove(sl_admq_t *q, sl_admq_node_t *n) {
  if (!n->queued) return;
  int b = n->band;
  if (q->edf) {
    sl_admq_node_t **h = q->heap[b];
    size_t i = (size_t)n->heap_index, last = q->nband[b] - 1;
    if (i != last) {
      /* The last leaf fills the hole; it may belong above or below it. */
      sl__admq_place(h, i, h[last]);
      if (i > 0 && sl__admq_before(h[i], h[(i - 1) / 2]))
        sl__admq_up(h, i);
      else
        sl__admq_down(h, last, i);
    }
    h[last] = NULL;
  } else {
    if (n->prev) n->prev->next = n->next;
    else q->head[b] = n->next;
    if (n->next) n->next->prev = n->prev;
    else q->tail[b] = n->prev;
  }
  n->prev = n->next = NULL;
  n->heap_index = -1;
  n->queued = 0;
  q->nband[b]--;
  q->n--;
}
