/* Tests for runtime/stream/admq: strict band order, FIFO inside a band,
 * EDF with equal deadlines in arrival order, removal from the head, the
 * middle and the tail of a list and from the middle of a heap, the
 * capacity bound, double pushes, heap growth, free with nodes still
 * queued, and a long random run (fixed seed) of pushes, pops, peeks and
 * removals checked after every step against a plain reference model and
 * against the heap invariants. */
#include "runtime/stream/admq.h"

#include "runtime/base/errors.h"
#include "test.h"

static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}

#define NN 2048
static sl_admq_node_t nodes[NN];
static sl_admq_t q;

static void clear_nodes(void) { memset(nodes, 0, sizeof(nodes)); }
static int id(const sl_admq_node_t *n) { return n ? (int)(n - nodes) : -1; }

/* Pops everything into out[]; returns how many. */
static int drain(int *out, int max) {
  int k = 0;
  sl_admq_node_t *n;
  while (k < max && (n = sl_admq_pop(&q)) != NULL) {
    if (n->queued) return -1;
    out[k++] = id(n);
  }
  return k;
}

/* Every band's heap: positions recorded right, each parent served no later
 * than its children; or every list linked both ways with the right count. */
static int check_structure(void) {
  size_t total = 0;
  for (int b = 0; b < SL_ADMQ_BANDS; b++) {
    size_t len = q.nband[b];
    total += len;
    if (q.edf) {
      for (size_t i = 0; i < len; i++) {
        sl_admq_node_t *n = q.heap[b][i];
        if (!n->queued || n->band != b || n->heap_index != (int)i) return 1;
        if (i > 0) {
          sl_admq_node_t *p = q.heap[b][(i - 1) / 2];
          if (p->deadline > n->deadline || (p->deadline == n->deadline && p->seq > n->seq)) return 2;
        }
      }
    } else {
      size_t k = 0;
      sl_admq_node_t *prev = NULL;
      for (sl_admq_node_t *n = q.head[b]; n != NULL; n = n->next) {
        if (!n->queued || n->band != b || n->prev != prev) return 3;
        if (prev && prev->seq >= n->seq) return 4;
        prev = n;
        if (++k > len) return 5;
      }
      if (k != len || q.tail[b] != prev) return 6;
    }
  }
  return total == q.n ? 0 : 7;
}

static void test_empty(void) {
  for (int edf = 0; edf <= 1; edf++) {
    sl_admq_init(&q, edf, 0);
    ASSERT_NULL(sl_admq_peek(&q));
    ASSERT_NULL(sl_admq_pop(&q));
    ASSERT_EQ(q.n, 0);
    sl_admq_free(&q);
  }
}

/* Band 0 first, whatever the arrival order and the deadlines; bands out of
 * range are clamped. */
static void test_strict_band_order(void) {
  for (int edf = 0; edf <= 1; edf++) {
    clear_nodes();
    sl_admq_init(&q, edf, 0);
    /* id i goes to band i % 3, the later bands with the earlier deadlines:
     * under EDF too, the band comes first. */
    for (int i = 0; i < 9; i++) ASSERT_EQ(sl_admq_push(&q, &nodes[i], i % 3, (uint64_t)(100 - 10 * (i % 3))), 0);
    ASSERT_EQ(sl_admq_push(&q, &nodes[9], -5, 1000), 0);
    ASSERT_EQ(sl_admq_push(&q, &nodes[10], 99, 0), 0);
    ASSERT_EQ(nodes[9].band, 0);
    ASSERT_EQ(nodes[10].band, SL_ADMQ_BANDS - 1);
    ASSERT_EQ(q.nband[0], 4);
    ASSERT_EQ(q.nband[1], 3);
    ASSERT_EQ(q.nband[2], 4);
    int out[16];
    ASSERT_EQ(drain(out, 16), 11);
    for (int k = 1; k < 11; k++) ASSERT_LE(nodes[out[k - 1]].band, nodes[out[k]].band);
    ASSERT_EQ(q.n, 0);
    sl_admq_free(&q);
  }
}

static void test_fifo_inside_band(void) {
  clear_nodes();
  sl_admq_init(&q, 0, 0);
  /* Deadlines are ignored under FIFO. */
  for (int i = 0; i < 8; i++) ASSERT_EQ(sl_admq_push(&q, &nodes[i], 1, (uint64_t)(8 - i)), 0);
  ASSERT_EQ(nodes[3].deadline, 5);
  ASSERT(sl_admq_peek(&q) == &nodes[0]);
  ASSERT(sl_admq_peek(&q) == &nodes[0]); /* peek takes nothing */
  ASSERT_EQ(q.n, 8);
  int out[8];
  ASSERT_EQ(drain(out, 8), 8);
  for (int i = 0; i < 8; i++) ASSERT_EQ(out[i], i);
  sl_admq_free(&q);
}

static void test_edf_order_and_ties(void) {
  clear_nodes();
  sl_admq_init(&q, 1, 0);
  const uint64_t dl[] = {50, 30, 50, 10, 30, 50, 10, 40};
  for (int i = 0; i < 8; i++) ASSERT_EQ(sl_admq_push(&q, &nodes[i], 0, dl[i]), 0);
  ASSERT_EQ(check_structure(), 0);
  int out[8];
  ASSERT_EQ(drain(out, 8), 8);
  const int want[] = {3, 6, 1, 4, 7, 0, 2, 5};
  for (int i = 0; i < 8; i++) ASSERT_EQ(out[i], want[i]);
  /* All equal: arrival order, also for more nodes than the first heap holds. */
  for (int i = 0; i < 100; i++) ASSERT_EQ(sl_admq_push(&q, &nodes[i], 2, 7), 0);
  int out100[100];
  ASSERT_EQ(drain(out100, 100), 100);
  for (int i = 0; i < 100; i++) ASSERT_EQ(out100[i], i);
  sl_admq_free(&q);
}

static void test_fifo_remove(void) {
  clear_nodes();
  sl_admq_init(&q, 0, 0);
  for (int i = 0; i < 6; i++) ASSERT_EQ(sl_admq_push(&q, &nodes[i], 0, 0), 0);
  sl_admq_remove(&q, &nodes[0]); /* head */
  ASSERT(q.head[0] == &nodes[1]);
  ASSERT_NULL(nodes[1].prev);
  sl_admq_remove(&q, &nodes[5]); /* tail */
  ASSERT(q.tail[0] == &nodes[4]);
  ASSERT_NULL(nodes[4].next);
  sl_admq_remove(&q, &nodes[3]); /* middle */
  ASSERT(nodes[2].next == &nodes[4] && nodes[4].prev == &nodes[2]);
  ASSERT_EQ(nodes[3].queued, 0);
  ASSERT_EQ(q.n, 3);
  ASSERT_EQ(check_structure(), 0);
  /* Not queued: nothing happens. */
  sl_admq_remove(&q, &nodes[3]);
  sl_admq_remove(&q, &nodes[100]);
  ASSERT_EQ(q.n, 3);
  /* A removed node goes back in, at the end. */
  ASSERT_EQ(sl_admq_push(&q, &nodes[0], 0, 0), 0);
  int out[8];
  ASSERT_EQ(drain(out, 8), 4);
  ASSERT(out[0] == 1 && out[1] == 2 && out[2] == 4 && out[3] == 0);
  /* The only node of a band. */
  ASSERT_EQ(sl_admq_push(&q, &nodes[7], 1, 0), 0);
  sl_admq_remove(&q, &nodes[7]);
  ASSERT(q.head[1] == NULL && q.tail[1] == NULL);
  ASSERT_NULL(sl_admq_peek(&q));
  sl_admq_free(&q);
}

static void test_edf_remove(void) {
  clear_nodes();
  sl_admq_init(&q, 1, 0);
  /* Deadlines 0, 10, ..., 300 in a scrambled order. */
  for (int i = 0; i < 31; i++) ASSERT_EQ(sl_admq_push(&q, &nodes[i], 1, (uint64_t)((i * 17) % 31) * 10), 0);
  /* The root, a leaf (the last slot) and nodes in the middle of the heap. */
  sl_admq_node_t *root = q.heap[1][0], *last = q.heap[1][30], *mid1 = q.heap[1][4], *mid2 = q.heap[1][9];
  ASSERT_EQ(root->deadline, 0);
  sl_admq_remove(&q, root);
  ASSERT_EQ(check_structure(), 0);
  sl_admq_remove(&q, last);
  ASSERT_EQ(check_structure(), 0);
  sl_admq_remove(&q, mid1);
  ASSERT_EQ(check_structure(), 0);
  sl_admq_remove(&q, mid2);
  ASSERT_EQ(check_structure(), 0);
  ASSERT(!root->queued && !last->queued && !mid1->queued && !mid2->queued);
  ASSERT_EQ(root->heap_index, -1);
  sl_admq_remove(&q, mid2); /* again: a no-op */
  ASSERT_EQ(q.n, 27);
  uint64_t prev = 0;
  int k = 0;
  sl_admq_node_t *n;
  while ((n = sl_admq_pop(&q)) != NULL) {
    ASSERT(n != root && n != last && n != mid1 && n != mid2);
    ASSERT_GE(n->deadline, prev);
    prev = n->deadline;
    k++;
  }
  ASSERT_EQ(k, 27);
  sl_admq_free(&q);
}

/* A hole filled by a leaf that belongs above it: the leaf must sift up. */
static void test_edf_remove_sifts_up(void) {
  clear_nodes();
  sl_admq_init(&q, 1, 0);
  /* Heap by position: 0:[1] 1:[100] 2:[2] 3:[101] 4:[102] 5:[3] 6:[4].
   * Removing position 4 moves the last leaf (deadline 4) under [100]: it
   * must go up past it. */
  const uint64_t dl[] = {1, 100, 2, 101, 102, 3, 4};
  for (int i = 0; i < 7; i++) ASSERT_EQ(sl_admq_push(&q, &nodes[i], 0, dl[i]), 0);
  for (int i = 0; i < 7; i++) ASSERT_EQ(nodes[i].heap_index, i);
  sl_admq_remove(&q, &nodes[4]);
  ASSERT_EQ(check_structure(), 0);
  ASSERT_EQ(nodes[6].heap_index, 1);
  int out[8];
  ASSERT_EQ(drain(out, 8), 6);
  const int want[] = {0, 2, 5, 6, 1, 3};
  for (int i = 0; i < 6; i++) ASSERT_EQ(out[i], want[i]);
  sl_admq_free(&q);
}

static void test_cap(void) {
  for (int edf = 0; edf <= 1; edf++) {
    clear_nodes();
    sl_admq_init(&q, edf, 3);
    ASSERT_EQ(sl_admq_push(&q, &nodes[0], 0, 5), 0);
    ASSERT_EQ(sl_admq_push(&q, &nodes[1], 1, 5), 0);
    ASSERT_EQ(sl_admq_push(&q, &nodes[2], 2, 5), 0);
    ASSERT_EQ(sl_admq_push(&q, &nodes[3], 0, 1), SL_ETOOBIG);
    ASSERT_EQ(nodes[3].queued, 0);
    ASSERT_EQ(q.n, 3);
    ASSERT(sl_admq_peek(&q) == &nodes[0]); /* the refused node did not get in front */
    ASSERT(sl_admq_pop(&q) == &nodes[0]);
    ASSERT_EQ(sl_admq_push(&q, &nodes[3], 0, 1), 0); /* room again */
    ASSERT_EQ(sl_admq_push(&q, &nodes[4], 0, 1), SL_ETOOBIG);
    sl_admq_remove(&q, &nodes[2]);
    ASSERT_EQ(sl_admq_push(&q, &nodes[4], 0, 1), 0); /* a removal makes room too */
    ASSERT_EQ(check_structure(), 0);
    sl_admq_free(&q);
  }
}

static void test_double_push(void) {
  for (int edf = 0; edf <= 1; edf++) {
    clear_nodes();
    static sl_admq_t other;
    sl_admq_init(&q, edf, 0);
    sl_admq_init(&other, edf, 0);
    ASSERT_EQ(sl_admq_push(&q, &nodes[0], 1, 9), 0);
    ASSERT_EQ(sl_admq_push(&q, &nodes[1], 1, 9), 0);
    uint64_t seq = nodes[0].seq;
    ASSERT_EQ(sl_admq_push(&q, &nodes[0], 0, 1), SL_EINVAL);
    ASSERT_EQ(sl_admq_push(&other, &nodes[0], 0, 1), SL_EINVAL);
    /* Refused and untouched. */
    ASSERT_EQ(nodes[0].band, 1);
    ASSERT_EQ(nodes[0].deadline, 9);
    ASSERT_UINT_EQ(nodes[0].seq, seq);
    ASSERT_EQ(q.n, 2);
    ASSERT_EQ(other.n, 0);
    ASSERT_EQ(check_structure(), 0);
    /* A full queue still says EINVAL for a node that is already queued. */
    static sl_admq_t tiny;
    sl_admq_init(&tiny, edf, 1);
    ASSERT_EQ(sl_admq_push(&tiny, &nodes[5], 0, 0), 0);
    ASSERT_EQ(sl_admq_push(&tiny, &nodes[5], 0, 0), SL_EINVAL);
    ASSERT_EQ(sl_admq_push(&tiny, &nodes[6], 0, 0), SL_ETOOBIG);
    sl_admq_free(&tiny);
    sl_admq_free(&other);
    sl_admq_free(&q);
  }
}

/* free with nodes still queued: they come out unqueued, the queue is empty
 * and works again (its heaps grow afresh). */
static void test_free(void) {
  rng_state = 0xADB0000ULL;
  for (int edf = 0; edf <= 1; edf++) {
    clear_nodes();
    sl_admq_init(&q, edf, 5000);
    for (int i = 0; i < 1000; i++) ASSERT_EQ(sl_admq_push(&q, &nodes[i], i % 3, (uint64_t)(rnd() % 100)), 0);
    if (edf) ASSERT_GE(q.heap_cap[0], 334);
    sl_admq_free(&q);
    ASSERT_EQ(q.n, 0);
    ASSERT_EQ(q.edf, edf);
    ASSERT_EQ(q.cap, 5000);
    for (int b = 0; b < SL_ADMQ_BANDS; b++) {
      ASSERT_NULL(q.heap[b]);
      ASSERT_NULL(q.head[b]);
      ASSERT_EQ(q.nband[b], 0);
    }
    for (int i = 0; i < 1000; i++) ASSERT_EQ(nodes[i].queued, 0);
    ASSERT_NULL(sl_admq_peek(&q));
    ASSERT_EQ(sl_admq_push(&q, &nodes[7], 2, 1), 0);
    ASSERT(sl_admq_pop(&q) == &nodes[7]);
    sl_admq_free(&q);
    sl_admq_free(&q); /* twice is fine */
  }
}

/* ---- the reference model ---------------------------------------------- */

static int ref_queued[NN], ref_band[NN];
static uint64_t ref_deadline[NN], ref_seq[NN];

/* The node the model serves next, or -1. */
static int ref_next(int edf, int nnodes) {
  int best = -1;
  for (int i = 0; i < nnodes; i++) {
    if (!ref_queued[i]) continue;
    if (best < 0 || ref_band[i] < ref_band[best]) {
      best = i;
      continue;
    }
    if (ref_band[i] > ref_band[best]) continue;
    int before = edf ? (ref_deadline[i] < ref_deadline[best] ||
                        (ref_deadline[i] == ref_deadline[best] && ref_seq[i] < ref_seq[best]))
                     : ref_seq[i] < ref_seq[best];
    if (before) best = i;
  }
  return best;
}

static void run_random(int edf, uint64_t seed, int nnodes, size_t cap, int ops) {
  rng_state = seed;
  clear_nodes();
  memset(ref_queued, 0, sizeof(ref_queued));
  sl_admq_init(&q, edf, cap);
  uint64_t seq = 0;
  size_t count = 0;
  int pushes = 0, refused_full = 0, refused_dup = 0, pops = 0, removes = 0;
  for (int op = 0; op < ops; op++) {
    int i = (int)(rnd() % (uint64_t)nnodes);
    uint64_t kind = rnd() % 10;
    if (kind < 5) {
      int band = (int)(rnd() % 5) - 1; /* -1 and 3 are clamped */
      uint64_t dl = rnd() % 20;        /* few values: many ties */
      int r = sl_admq_push(&q, &nodes[i], band, dl);
      int want = ref_queued[i] ? SL_EINVAL : (cap && count >= cap) ? SL_ETOOBIG : 0;
      ASSERT_EQ(r, want);
      if (r == 0) {
        ref_queued[i] = 1;
        ref_band[i] = band < 0 ? 0 : band >= SL_ADMQ_BANDS ? SL_ADMQ_BANDS - 1 : band;
        ref_deadline[i] = dl;
        ref_seq[i] = seq++;
        count++;
        pushes++;
      } else if (r == SL_ETOOBIG) {
        refused_full++;
      } else {
        refused_dup++;
      }
    } else if (kind < 8) {
      int want = ref_next(edf, nnodes);
      sl_admq_node_t *n = sl_admq_pop(&q);
      ASSERT_EQ(id(n), want);
      if (want >= 0) {
        ref_queued[want] = 0;
        count--;
        pops++;
      }
    } else {
      sl_admq_remove(&q, &nodes[i]);
      if (ref_queued[i]) {
        ref_queued[i] = 0;
        count--;
        removes++;
      }
    }
    ASSERT_EQ(q.n, count);
    ASSERT_EQ(id(sl_admq_peek(&q)), ref_next(edf, nnodes));
    ASSERT_EQ(nodes[i].queued, ref_queued[i]);
    ASSERT_EQ(check_structure(), 0);
  }
  /* The rest comes out in the model's order. */
  int want;
  while ((want = ref_next(edf, nnodes)) >= 0) {
    ASSERT_EQ(id(sl_admq_pop(&q)), want);
    ref_queued[want] = 0;
  }
  ASSERT_NULL(sl_admq_pop(&q));
  ASSERT_EQ(q.n, 0);
  sl_admq_free(&q);
  fprintf(stderr, "  %s cap %zu: %d pushes, %d full, %d already queued, %d pops, %d removes\n",
          edf ? "edf" : "fifo", cap, pushes, refused_full, refused_dup, pops, removes);
  /* The run reached every path it is meant to check. */
  ASSERT_GT(pushes, ops / 10);
  ASSERT_GT(pops, ops / 10);
  ASSERT_GT(removes, ops / 50);
  ASSERT_GT(refused_dup, 0);
  if (cap) ASSERT_GT(refused_full, 0);
}

static void test_random_fifo(void) {
  run_random(0, 0xADB0001ULL, 64, 0, 20000);
  run_random(0, 0xADB0002ULL, 200, 40, 20000);
}

static void test_random_edf(void) {
  run_random(1, 0xADB0003ULL, 64, 0, 20000);
  run_random(1, 0xADB0004ULL, 200, 40, 20000);
  run_random(1, 0xADB0005ULL, 600, 0, 20000); /* deep heaps */
}

int main(void) {
  SL_RUN(test_empty);
  SL_RUN(test_strict_band_order);
  SL_RUN(test_fifo_inside_band);
  SL_RUN(test_edf_order_and_ties);
  SL_RUN(test_fifo_remove);
  SL_RUN(test_edf_remove);
  SL_RUN(test_edf_remove_sifts_up);
  SL_RUN(test_cap);
  SL_RUN(test_double_push);
  SL_RUN(test_free);
  SL_RUN(test_random_fifo);
  SL_RUN(test_random_edf);
  return SL_TEST_EXIT();
}
