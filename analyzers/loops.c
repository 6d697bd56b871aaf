/* loops.c: incremental loop detection over token ids.
 *
 * Implements analyzers/loops.h.  The last `cap` tokens (cap the power of
 * two at or above the window) are kept twice, at s mod cap and
 * s mod cap + cap, so any run of up to cap recent tokens is one contiguous
 * array and can be handed to the edit-distance kernel without copying.
 *
 * Screening.  For each candidate period p the detector keeps cnt[p], how
 * many of the last span(p) = (repeats(p) - 1) * p positions s "agree": the
 * token at s equals the one at s - p, or, when near loops are allowed at
 * this p, at s - p - 1 or s - p + 1 (an inserted or deleted token shifts the
 * next period by one).  The count is moved by the entering position and by
 * the leaving one, recomputed from the ring, so no per-period history is
 * stored.  When at most allow(p) = 2 * dmax(p) * (repeats(p) - 1) positions
 * disagree, p is verified.  For exact loops (dmax = 0) the screen is exact.
 *
 * Verification is the definition of a loop (decide() below; the batch form
 * sl_loops_check() applies it to every period in turn):
 *  1. walking back from the newest token in blocks of p, consecutive blocks
 *     are within dmax(p) edits for at least repeats(p) blocks;
 *  2. the loop's start is placed within a period of the first block's start
 *     by a +1 / -1 vote of tokens that repeat p later, so a token that does
 *     not repeat is cut off and a partial period that does is added; the
 *     loop must still span repeats(p) periods from there;
 *  3. if a period slightly above p fits the newest two periods better, the
 *     decision waits (blocks one token shorter than the true period are a
 *     rotation apart, two edits, and would otherwise qualify first);
 *  4. a divisor of p that also qualifies is reported instead.
 * The smallest period that qualifies is reported.  A period whose newest
 * two blocks already disagree is not tried again for p / 4 + 1 tokens,
 * which bounds the cost of a screen that keeps passing on text that is not
 * a loop.
 *
 * Following.  Once found, the loop is checked once per completed period
 * (the newest block against the one before it), so a followed loop costs
 * O(1) per token plus one edit distance per period.  When the check fails
 * the loop has ended; its end is placed by the same vote as its start,
 * searching forward from the start of the last good block, and a later
 * loop must start after it.
 */
#include "analyzers/loops.h"

#include <stdlib.h>
#include <string.h>

#include "analyzers/editdist.h"

#define MAX_WINDOW ((uint32_t)1 << 24)

struct sl_loops_s {
  sl_loops_config_t cfg;
  uint32_t *ring;      /* 2 * cap tokens */
  uint32_t cap;        /* power of two >= window */
  uint32_t mask;       /* cap - 1 */
  uint32_t *cnt;       /* [max_period + 1] agreeing positions in the span */
  uint32_t *span;      /* (repeats(p) - 1) * p */
  uint32_t *reps;      /* repeats(p) */
  uint32_t *dmax;      /* floor(ratio * p): edits allowed between periods */
  uint32_t *allow;     /* disagreeing positions the screen tolerates */
  uint64_t *skip;      /* no verification of p before this position */
  sl_editdist_t *ed;   /* scratch for patterns of max_period tokens */
  uint64_t n;          /* tokens pushed */
  int active;          /* a loop is being followed */
  sl_loop_t cur;       /* the followed loop */
  uint64_t last_check; /* position of the last completed-period check */
  uint32_t prev_max;   /* max_dist before the last check */
  uint64_t floor;      /* a new loop starts at or after this position */
  int heap;            /* made by sl_loops_new() */
  /* The fast path, for max_period <= SL__FAST_MAX: abits[s & mask] has bit
   * p - 1 set when position s agrees with period p, so the count update
   * of every period is a shift and a mask instead of ring lookups. */
  uint64_t *abits;     /* cap entries, or NULL */
  uint64_t range_bits; /* bits p - 1 for p in [min_period, max_period] */
  uint64_t near_bits;  /* bits p - 1 for the periods with dmax[p] > 0 */
};

#define SL__FAST_MAX 64

static size_t align8(size_t x) { return (x + 7) & ~(size_t)7; }

void sl_loops_config_default(sl_loops_config_t *cfg) {
  if (cfg == NULL) return;
  cfg->window = 256;
  cfg->min_period = 1;
  cfg->max_period = 64;
  cfg->min_repeats = 3;
  cfg->min_length = 16;
  cfg->max_dist_ratio = 0.3;
}

static uint32_t repeats_for(const sl_loops_config_t *cfg, uint32_t p) {
  uint64_t r = ((uint64_t)cfg->min_length + p - 1) / p;
  return r > cfg->min_repeats ? (uint32_t)r : cfg->min_repeats;
}

static int config_ok(const sl_loops_config_t *cfg) {
  if (cfg == NULL) return 0;
  if (cfg->window < 4 || cfg->window > MAX_WINDOW) return 0;
  if (cfg->min_period < 1 || cfg->max_period < cfg->min_period) return 0;
  if (cfg->min_repeats < 2) return 0;
  if (!(cfg->max_dist_ratio >= 0.0 && cfg->max_dist_ratio <= 1.0)) return 0;
  for (uint32_t p = cfg->min_period; p <= cfg->max_period; p++) {
    if ((uint64_t)repeats_for(cfg, p) * p + 2 > cfg->window) return 0;
  }
  return 1;
}

/* How far above p the search for a better-fitting period looks. */
static uint32_t reach_for(uint32_t dmax) { return dmax > 1 ? dmax : 1; }

static uint32_t dmax_for(const sl_loops_config_t *cfg, uint32_t p) {
  /* The epsilon keeps ratio * p from rounding just under an integer. */
  return (uint32_t)(cfg->max_dist_ratio * p + 1e-9);
}

/* The longest block the edit-distance scratch must take: max_period and
 * the periods just above it that decide() compares against. */
static uint32_t ed_len_for(const sl_loops_config_t *cfg) {
  return cfg->max_period + reach_for(dmax_for(cfg, cfg->max_period));
}

static uint32_t cap_for(uint32_t window) {
  uint32_t cap = 4;
  while (cap < window) cap <<= 1;
  return cap;
}

typedef struct {
  size_t ring, tables, skip, ed, ed_size, abits, total;
} layout_t;

static void layout(const sl_loops_config_t *cfg, layout_t *l) {
  size_t np = (size_t)cfg->max_period + 1;
  size_t off = align8(sizeof(sl_loops_t));
  l->ring = off;
  off += align8((size_t)2 * cap_for(cfg->window) * sizeof(uint32_t));
  l->tables = off;
  off += align8(5 * np * sizeof(uint32_t));
  l->skip = off;
  off += np * sizeof(uint64_t);
  l->ed = off;
  l->ed_size = sl_editdist_size(ed_len_for(cfg));
  off += align8(l->ed_size);
  l->abits = 0;
  if (cfg->max_period <= SL__FAST_MAX) {
    l->abits = off;
    off += (size_t)cap_for(cfg->window) * sizeof(uint64_t);
  }
  l->total = off;
}

size_t sl_loops_size(const sl_loops_config_t *cfg) {
  if (!config_ok(cfg)) return 0;
  layout_t l;
  layout(cfg, &l);
  return l.total;
}

void sl_loops_reset(sl_loops_t *lp) {
  if (lp == NULL) return;
  size_t np = (size_t)lp->cfg.max_period + 1;
  memset(lp->cnt, 0, np * sizeof *lp->cnt);
  memset(lp->skip, 0, np * sizeof *lp->skip);
  memset(&lp->cur, 0, sizeof lp->cur);
  lp->n = 0;
  lp->active = 0;
  lp->last_check = 0;
  lp->prev_max = 0;
  lp->floor = 0;
}

int sl_loops_init(void *mem, size_t size, const sl_loops_config_t *cfg, sl_loops_t **out) {
  if (mem == NULL || out == NULL || ((uintptr_t)mem & 7) != 0) return SL_AN_EINVAL;
  if (!config_ok(cfg)) return SL_AN_EINVAL;
  layout_t l;
  layout(cfg, &l);
  if (size < l.total) return SL_AN_ETOOBIG;
  char *base = mem;
  sl_loops_t *lp = mem;
  memset(lp, 0, sizeof *lp);
  lp->cfg = *cfg;
  lp->cap = cap_for(cfg->window);
  lp->mask = lp->cap - 1;
  lp->ring = (uint32_t *)(base + l.ring);
  size_t np = (size_t)cfg->max_period + 1;
  uint32_t *tab = (uint32_t *)(base + l.tables);
  lp->cnt = tab;
  lp->span = tab + np;
  lp->reps = tab + 2 * np;
  lp->dmax = tab + 3 * np;
  lp->allow = tab + 4 * np;
  lp->skip = (uint64_t *)(base + l.skip);
  memset(tab, 0, 5 * np * sizeof *tab);
  for (uint32_t p = cfg->min_period; p <= cfg->max_period; p++) {
    uint32_t r = repeats_for(cfg, p);
    uint32_t d = dmax_for(cfg, p);
    lp->reps[p] = r;
    lp->span[p] = (r - 1) * p;
    lp->dmax[p] = d;
    lp->allow[p] = 2 * d * (r - 1);
  }
  int rc = sl_editdist_init(base + l.ed, l.ed_size, ed_len_for(cfg), &lp->ed);
  if (rc != 0) return rc;
  memset(lp->ring, 0, (size_t)2 * lp->cap * sizeof *lp->ring);
  if (l.abits) {
    lp->abits = (uint64_t *)(base + l.abits);
    memset(lp->abits, 0, (size_t)lp->cap * sizeof *lp->abits);
    for (uint32_t p = cfg->min_period; p <= cfg->max_period; p++) {
      lp->range_bits |= (uint64_t)1 << (p - 1);
      if (lp->dmax[p] > 0) lp->near_bits |= (uint64_t)1 << (p - 1);
    }
  }
  sl_loops_reset(lp);
  *out = lp;
  return 0;
}

int sl_loops_new(const sl_loops_config_t *cfg, sl_loops_t **out) {
  if (out == NULL) return SL_AN_EINVAL;
  size_t size = sl_loops_size(cfg);
  if (size == 0) return SL_AN_EINVAL;
  void *mem = malloc(size);
  if (mem == NULL) return SL_AN_ENOMEM;
  int rc = sl_loops_init(mem, size, cfg, out);
  if (rc != 0) {
    free(mem);
    return rc;
  }
  (*out)->heap = 1;
  return 0;
}

void sl_loops_free(sl_loops_t *lp) {
  if (lp != NULL && lp->heap) free(lp);
}

uint64_t sl_loops_count(const sl_loops_t *lp) { return lp ? lp->n : 0; }

static inline uint32_t tok_at(const sl_loops_t *lp, uint64_t s) {
  return lp->ring[s & lp->mask];
}

/* Whether position s agrees with period p (see the file comment).  Depends
 * only on s, p and the tokens, so the same position gives the same answer
 * when it enters the span and when it leaves it. */
static inline uint32_t agree(const sl_loops_t *lp, uint64_t s, uint32_t p) {
  uint32_t x = tok_at(lp, s);
  if (s >= p && tok_at(lp, s - p) == x) return 1;
  if (lp->dmax[p] == 0) return 0;
  if (s >= (uint64_t)p + 1 && tok_at(lp, s - p - 1) == x) return 1;
  if (p >= 2 && s >= (uint64_t)p - 1 && tok_at(lp, s - p + 1) == x) return 1;
  return 0;
}

/* Edit distance between two runs of p tokens (memcmp when only exact
 * repeats count: then any difference is "more than 0"). */
static uint32_t block_dist(sl_loops_t *lp, const uint32_t *a, const uint32_t *b, uint32_t p,
                           uint32_t d) {
  if (d == 0) return memcmp(a, b, (size_t)p * sizeof *a) != 0;
  size_t e = 0;
  sl_editdist_levenshtein(lp->ed, a, p, b, p, &e);
  return (uint32_t)e;
}

/* How period p fits the tokens before the head. */
typedef struct {
  size_t start;     /* index of the loop's first token */
  uint32_t maxd;    /* largest distance between consecutive blocks */
  uint32_t head_ed; /* distance between the two newest blocks */
} fit_t;

/* Applies the definition of a loop with period p to h[0..hn) (h[hn - 1]
 * the newest token).  Returns 1 and fills *f when it holds, -1 when even
 * the newest two blocks are too far apart (p is no loop at the head), and
 * 0 when the loop is there but not yet long enough.
 *
 * The blocks fix the loop up to its first period.  Its start is then the
 * position c (not before min_start) within one period either side of the
 * first block's start that maximises the sum, from c to the end of the
 * first block, of +1 for a token that repeats p later (or p +- 1 later when
 * near loops are allowed) and -1 for one that does not: a token that does
 * not repeat is cut off the front, and a partial period before the first
 * block is added when its tokens mostly repeat.  Ties go to the earlier c.
 * After that the loop must still span repeats(p) periods. */
static int verify(sl_loops_t *lp, const uint32_t *h, size_t hn, uint32_t p, size_t min_start,
                  fit_t *f) {
  uint32_t d = lp->dmax[p], maxd = 0, head = 0;
  size_t blocks = 1, need = (size_t)lp->reps[p] * p;
  if (need > hn) return 0;
  while ((blocks + 1) * p <= hn) {
    const uint32_t *newer = h + hn - blocks * p, *older = newer - p;
    uint32_t e = block_dist(lp, older, newer, p, d);
    if (blocks == 1) head = e;
    if (e > d) break;
    if (e > maxd) maxd = e;
    blocks++;
  }
  if (blocks == 1) return -1;
  if (blocks < lp->reps[p]) return 0;
  size_t b = hn - blocks * p, hi = b + p - 1, lo = b >= p - 1 ? b - (p - 1) : 0;
  if (lo < min_start) lo = min_start;
  if (lo > hi) return 0;
  long sum = 0, best_sum = 0;
  size_t best = hi;
  for (size_t c = hi;; c--) {
    uint32_t x = h[c];
    int rep = x == h[c + p] || (d > 0 && (x == h[c + p - 1] || x == h[c + p + 1]));
    sum += rep ? 1 : -1;
    if (c == hi || sum >= best_sum) {
      best_sum = sum;
      best = c;
    }
    if (c == lo) break;
  }
  if (hn - best < need) return 0;
  f->start = best;
  f->maxd = maxd;
  f->head_ed = head;
  return 1;
}

/* Decides whether period p is reported at the head of h[0..hn), whose last
 * token is at stream position last.  Returns 1 with *out filled (with a
 * verified divisor of p instead when there is one), 0 when p is no loop
 * here yet, -2 when the newest two periods already disagree, and -1 when p
 * holds but a slightly longer period fits the newest
 * two periods better: blocks one token short of the true period are a
 * rotation apart (two edits), so they qualify as a near loop before the
 * true period has enough repeats; the decision waits for it, and only the
 * periods up to p + reach are tried after a wait. */
static int decide(sl_loops_t *lp, const uint32_t *h, size_t hn, uint32_t p, size_t min_start,
                  uint64_t last, sl_loop_t *out) {
  fit_t f;
  int v = verify(lp, h, hn, p, min_start, &f);
  if (v <= 0) return v == 0 ? 0 : -2;
  if (f.head_ed > 0) {
    /* Periods past max_period count here too, so a loop too long to report
     * is not reported as a near loop one token shorter. */
    uint32_t reach = reach_for(lp->dmax[p]);
    for (uint32_t q = p + 1; q <= p + reach && 2 * (size_t)q <= hn; q++) {
      const uint32_t *newer = h + hn - q, *older = newer - q;
      if (block_dist(lp, older, newer, q, dmax_for(&lp->cfg, q)) < f.head_ed) return -1;
    }
  }
  for (uint32_t q = lp->cfg.min_period; q <= p / 2; q++) {
    fit_t g;
    if (p % q == 0 && verify(lp, h, hn, q, min_start, &g) > 0) {
      p = q;
      f = g;
      break;
    }
  }
  memset(out, 0, sizeof *out);
  out->state = SL_LOOPS_NEW;
  out->period = p;
  out->length = hn - f.start;
  out->start = last + 1 - out->length;
  out->repeats = (uint32_t)(out->length / p);
  out->max_dist = f.maxd;
  return 1;
}

static int screen_passes(const sl_loops_t *lp, uint32_t p, uint64_t t) {
  return lp->cnt[p] + lp->allow[p] >= lp->span[p] &&
         t + 1 >= (uint64_t)lp->reps[p] * p && t >= lp->skip[p];
}

/* One step of following the active loop at position t. */
static void follow(sl_loops_t *lp, uint64_t t, sl_loop_t *out) {
  uint32_t p = lp->cur.period, d = lp->dmax[p];
  if (t - lp->last_check == p) {
    const uint32_t *newer = lp->ring + ((t + 1 - p) & lp->mask);
    const uint32_t *older = lp->ring + ((t + 1 - 2 * (uint64_t)p) & lp->mask);
    uint32_t e = block_dist(lp, older, newer, p, d);
    if (e > d) {
      uint64_t last_good = lp->last_check;
      /* Ended.  A check passes while the newest block holds at most d
       * tokens from after the loop, so the end is searched from the start
       * of the last good block, the mirror image of the start: the
       * position maximising the sum of +1 for a token equal to the one a
       * period earlier and -1 otherwise, ties going to the later one. */
      uint64_t from = lp->last_check + 1 - p, end = from;
      long sum = 0, best_sum = 0;
      for (uint64_t s = from; s <= t; s++) {
        uint32_t x = tok_at(lp, s);
        int rep = x == tok_at(lp, s - p) ||
                  (d > 0 && (x == tok_at(lp, s - p - 1) || x == tok_at(lp, s - p + 1)));
        sum += rep ? 1 : -1;
        if (s == from || sum >= best_sum) {
          best_sum = sum;
          end = s;
        }
      }
      lp->cur.length = end + 1 - lp->cur.start;
      lp->cur.repeats = (uint32_t)(lp->cur.length / p);
      /* The last good check may have compared a block that reached past
       * the end (at most d tokens past, so only that one check). */
      if (last_good > end) lp->cur.max_dist = lp->prev_max;
      lp->cur.state = SL_LOOPS_ENDED;
      lp->active = 0;
      lp->floor = end + 1;
      *out = lp->cur;
      return;
    }
    lp->prev_max = lp->cur.max_dist;
    if (e > lp->cur.max_dist) lp->cur.max_dist = e;
    lp->last_check = t;
  }
  lp->cur.length = t + 1 - lp->cur.start;
  lp->cur.repeats = (uint32_t)(lp->cur.length / p);
  lp->cur.state = SL_LOOPS_ACTIVE;
  *out = lp->cur;
}

int sl_loops_push(sl_loops_t *lp, uint32_t tok, sl_loop_t *out) {
  if (lp == NULL || out == NULL) return SL_AN_EINVAL;
  uint64_t t = lp->n++;
  uint32_t slot = (uint32_t)(t & lp->mask);
  lp->ring[slot] = tok;
  lp->ring[slot + lp->cap] = tok;

  uint32_t first = 0;
  if (lp->abits != NULL) {
    /* The tokens before this one as one contiguous run (the doubled ring):
     * w[-k] is the token k places back.  agree(t, p) is w[-p] == tok, or
     * w[-p - 1] or w[-p + 1] where edits are allowed (near); the bit of
     * agree(t - span, p) was stored when that token came. */
    const uint32_t *w = lp->ring + slot + lp->cap;
    const uint64_t *old = lp->abits;
    uint64_t a = 0, near = lp->near_bits;
    for (uint32_t p = lp->cfg.min_period; p <= lp->cfg.max_period; p++) {
      uint64_t bit = (uint64_t)1 << (p - 1);
      /* Only positions that exist count: k places back needs k <= t (the
       * ring's older slots hold zeros or an earlier stream's tokens). */
      uint64_t b = (uint64_t)(p <= t && w[-(int32_t)p] == tok) |
                   ((uint64_t)((near & bit) != 0) &
                    (uint64_t)((p + 1 <= t && w[-(int32_t)p - 1] == tok) |
                               (p >= 2 && p - 1 <= t && w[-(int32_t)p + 1] == tok)));
      a |= b << (p - 1);
      uint32_t sp = lp->span[p];
      uint32_t c = lp->cnt[p] + (uint32_t)b;
      if (t >= sp) c -= (uint32_t)((old[(t - sp) & lp->mask] >> (p - 1)) & 1);
      lp->cnt[p] = c;
      if (first == 0 && c + lp->allow[p] >= sp) first = p;
    }
    lp->abits[slot] = a;
  } else {
    uint64_t a = 0;
    for (uint32_t p = lp->cfg.min_period; p <= lp->cfg.max_period; p++) {
      uint32_t g = agree(lp, t, p);
      uint32_t c = lp->cnt[p] + g;
      uint32_t sp = lp->span[p];
      if (t >= sp) c -= agree(lp, t - sp, p);
      lp->cnt[p] = c;
      if (first == 0 && c + lp->allow[p] >= sp) first = p;
      if (p <= SL__FAST_MAX) a |= (uint64_t)g << (p - 1);
    }
    if (lp->abits != NULL) lp->abits[slot] = a;
  }

  memset(out, 0, sizeof *out);
  if (lp->active) {
    follow(lp, t, out);
    return 0;
  }
  if (first == 0) return 0;
  uint64_t hn = lp->n < lp->cfg.window ? lp->n : lp->cfg.window;
  const uint32_t *h = lp->ring + ((lp->n - hn) & lp->mask);
  /* A loop that ended is not found again: a new one starts after it. */
  size_t min_start = lp->floor > lp->n - hn ? (size_t)(lp->floor - (lp->n - hn)) : 0;
  uint32_t limit = lp->cfg.max_period;
  for (uint32_t p = first; p <= limit; p++) {
    if (!screen_passes(lp, p, t)) continue;
    int r = decide(lp, h, (size_t)hn, p, min_start, t, out);
    if (r > 0) {
      lp->active = 1;
      lp->cur = *out;
      lp->last_check = t;
      lp->prev_max = 0;
      return 0;
    }
    if (r == -1) {
      uint32_t reach = reach_for(lp->dmax[p]);
      if (p + reach < limit) limit = p + reach;
    } else if (r == -2) {
      lp->skip[p] = t + 1 + p / 4;
    }
  }
  memset(out, 0, sizeof *out);
  return 0;
}

int sl_loops_check(sl_loops_t *lp, const uint32_t *tokens, size_t n, sl_loop_t *out) {
  if (lp == NULL || out == NULL || (tokens == NULL && n != 0)) return SL_AN_EINVAL;
  memset(out, 0, sizeof *out);
  if (n == 0) return 0;
  size_t hn = n < lp->cfg.window ? n : lp->cfg.window;
  const uint32_t *h = tokens + (n - hn);
  uint32_t limit = lp->cfg.max_period;
  for (uint32_t p = lp->cfg.min_period; p <= limit; p++) {
    int r = decide(lp, h, hn, p, 0, (uint64_t)n - 1, out);
    if (r > 0) return 0;
    if (r == -1) {
      uint32_t reach = reach_for(lp->dmax[p]);
      if (p + reach < limit) limit = p + reach;
    }
  }
  memset(out, 0, sizeof *out);
  return 0;
}
