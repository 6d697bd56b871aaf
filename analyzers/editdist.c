/* editdist.c: bit-parallel Levenshtein distance and LCS over token ids.
 *
 * Implements analyzers/editdist.h.  The pattern's ids are remapped to dense
 * indices 1..k with an open-addressing table keyed by id (index 0 means "not
 * in the pattern", whose bit mask is all zero); each dense index owns a row
 * of ceil(m / 64) words, the positions where that id occurs in the pattern
 * (Myers' Peq).  The batch scratch is reused across calls without clearing
 * its table: every call moves a generation base, and a slot whose value does
 * not lie just above the current base is empty.
 *
 * Levenshtein keeps the vertical delta vectors Pv / Mv of the current DP
 * column as bit strings of ceil(m / 64) words and advances them per text
 * token with Myers' step, the score at the last pattern row moving by the
 * horizontal delta that leaves it.  Patterns of up to 64 tokens use one
 * register, up to 128 a 128-bit integer where the compiler has one, longer
 * ones a loop over words whose additions carry from word to word (through a
 * 128-bit sum, or a look-ahead carry without one).  LCS keeps one bit
 * vector V whose zero bits count the LCS (Allison-Dix, in Hyyrö's form
 * V' = (V + (V & Peq)) | (V & ~Peq)); the addition carries across words, and
 * a carry out of the top pattern row is exactly an increase of the LCS.
 * The batch forms map text ids to Peq rows 256 at a time ahead of the
 * bit-parallel loop, which then has no data-dependent branches.
 */
#include "analyzers/editdist.h"

#include <stdlib.h>
#include <string.h>


#define MAX_LEN ((size_t)1 << 28)

typedef struct {
  uint32_t key; /* token id */
  uint32_t val; /* base + dense index while live */
} remap_slot_t;

typedef struct {
  remap_slot_t *slots; /* cap slots, cap a power of two >= 4 * maxk */
  uint32_t cap;        /* slots allocated */
  uint32_t mask;       /* slots in use this generation, minus 1 */
  uint32_t shift;      /* 32 - log2(mask + 1), for multiplicative hashing */
  uint32_t maxk;       /* the most distinct ids one pattern may have */
  uint32_t base;       /* generation: live slots hold base + 1..maxk */
  uint32_t k;          /* dense ids handed out in this generation */
} remap_t;

struct sl_editdist_s {
  remap_t map;
  uint64_t *peq; /* (max_len + 1) rows, stride chosen per call */
  uint64_t *pv;  /* Wmax words: Pv, or V for LCS */
  uint64_t *mv;  /* Wmax words: Mv */
  uint32_t *pidx; /* max_len dense indices of the pattern, while building */
  size_t max_len;
  int heap;      /* made by sl_editdist_new() */
};

struct sl_editdist_stream_s {
  remap_t map;
  uint64_t *peq;     /* (m + 1) rows of w words */
  uint64_t *pv;      /* Pv, or V for LCS */
  uint64_t *mv;      /* Mv */
  uint32_t *pidx;    /* m dense indices of the pattern, used at init */
  size_t m;          /* pattern length */
  size_t w;          /* words per row: ceil(m / 64) */
  uint64_t lastmask; /* bit of the last pattern row within the last word */
  uint64_t count;    /* tokens pushed */
  size_t score;      /* the current value of the mode's measure */
  int mode;
  int heap;
};

#define MIN(a, b) ((a) < (b) ? (a) : (b))

static size_t align8(size_t x) { return (x + 7) & ~(size_t)7; }

static size_t words_for(size_t m) { return (m + 63) / 64; }

/* Slots for a pattern of maxk tokens: a load factor of at most 1/4 keeps
 * almost every lookup to one probe. */
static uint32_t table_cap(size_t maxk) {
  uint32_t cap = 16;
  while (cap < 4 * maxk) cap <<= 1;
  return cap;
}

static uint32_t log2u(uint32_t x) {
  uint32_t r = 0;
  while (x > 1) { x >>= 1; r++; }
  return r;
}

static void remap_setup(remap_t *r, remap_slot_t *slots, size_t maxk) {
  uint32_t cap = table_cap(maxk);
  r->slots = slots;
  r->cap = cap;
  r->mask = cap - 1;
  r->shift = 32 - log2u(cap);
  r->maxk = (uint32_t)maxk;
  memset(slots, 0, (size_t)cap * sizeof *slots);
  r->base = r->maxk + 1;
  r->k = 0;
}

/* Starts a new generation for a pattern of m tokens: every slot becomes
 * empty without a memset (except when the base would wrap, once every
 * 2^32 / maxk calls), and only the first table_cap(m) slots are used, so a
 * short pattern's table stays small and in cache.  Slots past them keep
 * stale values, which a later, longer pattern sees as empty. */
static void remap_clear(remap_t *r, size_t m) {
  uint32_t span = r->maxk + 1;
  if (r->base > UINT32_MAX - 2 * span) {
    memset(r->slots, 0, (size_t)r->cap * sizeof *r->slots);
    r->base = span;
  } else {
    r->base += span;
  }
  uint32_t used = table_cap(m);
  r->mask = used - 1;
  r->shift = 32 - log2u(used);
  r->k = 0;
}


static inline uint32_t remap_hash(const remap_t *r, uint32_t key) {
  return (uint32_t)(key * 0x9E3779B1u) >> r->shift;
}

/* Dense index of key, or 0 when key is not in the pattern. */
static inline uint32_t remap_find(const remap_t *r, uint32_t key) {
  uint32_t h = remap_hash(r, key);
  for (;;) {
    const remap_slot_t *s = &r->slots[h];
    uint32_t idx = s->val - r->base;
    if (idx - 1u >= r->maxk) return 0;
    if (s->key == key) return idx;
    h = (h + 1) & r->mask;
  }
}

#define MAP_CHUNK 256

/* Maps text ids b[0..n) (n <= MAP_CHUNK) to Peq row offsets (dense index
 * times w).  Done a chunk ahead of the bit-parallel loop so that loop has
 * no branches that depend on the data. */
static void map_chunk(const remap_t *r, const uint32_t *b, size_t n, size_t w, uint32_t *rows) {
  for (size_t i = 0; i < n; i++) rows[i] = remap_find(r, b[i]) * (uint32_t)w;
}

/* Fills the Peq rows for pattern p[0..m) with stride w; row 0 (ids not in
 * the pattern) stays zero.  Two passes: ids to dense indices (into pidx),
 * then one memset of the k + 1 rows and the bits.  Zeroing each row when
 * its id first appears would put a wide store right before a narrow
 * read-modify-write of the same word, which stalls store forwarding. */
static void build_peq(remap_t *r, uint64_t *peq, const uint32_t *p, size_t m, size_t w,
                      uint32_t *pidx) {
  remap_slot_t *slots = r->slots;
  uint32_t base = r->base, maxk = r->maxk, mask = r->mask, k = 0;
  for (size_t i = 0; i < m; i++) {
    uint32_t key = p[i], h = remap_hash(r, key), idx;
    for (;;) {
      remap_slot_t *s = &slots[h];
      idx = s->val - base;
      if (idx - 1u >= maxk) {
        idx = ++k;
        s->key = key;
        s->val = base + idx;
        break;
      }
      if (s->key == key) break;
      h = (h + 1) & mask;
    }
    pidx[i] = idx;
  }
  r->k = k;
  memset(peq, 0, (size_t)(k + 1) * w * sizeof *peq);
  for (size_t i = 0; i < m; i++) peq[(size_t)pidx[i] * w + i / 64] |= (uint64_t)1 << (i % 64);
}

static uint64_t last_mask(size_t m) { return (uint64_t)1 << ((m - 1) % 64); }

#ifdef __SIZEOF_INT128__
__extension__ typedef unsigned __int128 u128;
#define HAVE_U128 1
#endif

/* Advances the Levenshtein column by one text token whose pattern mask is
 * eq[0..w) and returns the change of the score at the last pattern row.
 * top is the horizontal delta of the boundary row: +1 for the global
 * distance (D[0][j] = j), 0 for search (D[0][j] = 0).  The vectors are one
 * long bit string of w words: the addition carries from word to word and
 * the shifts move each word's top bit into the next word's bit 0.  The carry
 * is the top half of a 128-bit sum (an add-with-carry), or without 128-bit
 * integers a look-ahead (generate, or propagate an incoming carry through an
 * all-ones sum); either way the chain from one word to the next is short and
 * the rest of each word's work overlaps with it. */
static inline int lev_column(uint64_t *pv, uint64_t *mv, const uint64_t *eq, size_t w,
                             uint64_t lastmask, int top) {
  uint64_t carry = 0, phc = (uint64_t)top, mhc = 0;
  int delta = 0;
  for (size_t b = 0; b < w; b++) {
    uint64_t p = pv[b], n = mv[b], e = eq[b];
    uint64_t xv = e | n;
    uint64_t x = e & p;
#ifdef HAVE_U128
    u128 t = (u128)x + p + carry;
    uint64_t s = (uint64_t)t;
    carry = (uint64_t)(t >> 64);
#else
    uint64_t s0 = x + p;
    uint64_t gen = s0 < x;
    uint64_t s = s0 + carry;
    carry = gen | (carry & (uint64_t)(s0 == ~(uint64_t)0));
#endif
    uint64_t xh = (s ^ p) | e;
    uint64_t ph = n | ~(xh | p);
    uint64_t mh = p & xh;
    if (b + 1 == w) delta = (int)((ph & lastmask) != 0) - (int)((mh & lastmask) != 0);
    uint64_t phs = (ph << 1) | phc, mhs = (mh << 1) | mhc;
    phc = ph >> 63;
    mhc = mh >> 63;
    pv[b] = mhs | ~(xv | phs);
    mv[b] = phs & xv;
  }
  return delta;
}

/* Advances the LCS vector by one text token; returns 1 when the LCS grew.
 * The bits above row m-1 of the last word are kept zero, so a carry out of
 * row m-1 lands in bit m and can be read and cleared there.  The carry is
 * propagated as in lev_column(). */
static inline int lcs_column(uint64_t *v, const uint64_t *eq, size_t w, size_t m) {
  uint64_t carry = 0;
  for (size_t b = 0; b < w; b++) {
    uint64_t x = v[b], u = x & eq[b];
#ifdef HAVE_U128
    u128 t = (u128)x + u + carry;
    carry = (uint64_t)(t >> 64);
    v[b] = (uint64_t)t | (x & ~u);
#else
    uint64_t s0 = x + u;
    uint64_t c1 = s0 < x;
    uint64_t s = s0 + carry;
    carry = c1 | (s < s0);
    v[b] = s | (x & ~u);
#endif
  }
  unsigned top = (unsigned)(m % 64);
  if (top == 0) return (int)carry;
  uint64_t grew = (v[w - 1] >> top) & 1;
  v[w - 1] &= ((uint64_t)1 << top) - 1;
  return (int)grew;
}

static void lcs_reset(uint64_t *v, size_t w, size_t m) {
  for (size_t b = 0; b < w; b++) v[b] = ~(uint64_t)0;
  if (m % 64) v[w - 1] = ((uint64_t)1 << (m % 64)) - 1;
}

/* Where the parts of a batch scratch or a stream live in its memory. */
typedef struct {
  size_t slots, peq, pv, mv, pidx, total;
} layout_t;

/* The memory for a header of hdr bytes and patterns of up to m tokens. */
static int layout(size_t hdr, size_t m, layout_t *l) {
  if (m > MAX_LEN) return SL_AN_EINVAL;
  size_t w = words_for(m ? m : 1);
  size_t off = align8(hdr);
  l->slots = off;
  off += align8((size_t)table_cap(m) * sizeof(remap_slot_t));
  l->peq = off;
  off += (m + 1) * w * sizeof(uint64_t);
  l->pv = off;
  off += w * sizeof(uint64_t);
  l->mv = off;
  off += w * sizeof(uint64_t);
  l->pidx = off;
  off += align8(m * sizeof(uint32_t));
  l->total = off;
  return 0;
}

/* ---- batch ---- */

size_t sl_editdist_size(size_t max_len) {
  layout_t l;
  return layout(sizeof(sl_editdist_t), max_len, &l) == 0 ? l.total : 0;
}

int sl_editdist_init(void *mem, size_t size, size_t max_len, sl_editdist_t **out) {
  layout_t l;
  if (mem == NULL || out == NULL || ((uintptr_t)mem & 7) != 0) return SL_AN_EINVAL;
  int rc = layout(sizeof(sl_editdist_t), max_len, &l);
  if (rc != 0) return rc;
  if (size < l.total) return SL_AN_ETOOBIG;
  char *base = mem;
  sl_editdist_t *ed = mem;
  memset(ed, 0, sizeof *ed);
  remap_setup(&ed->map, (remap_slot_t *)(base + l.slots), max_len);
  ed->peq = (uint64_t *)(base + l.peq);
  ed->pv = (uint64_t *)(base + l.pv);
  ed->mv = (uint64_t *)(base + l.mv);
  ed->pidx = (uint32_t *)(base + l.pidx);
  ed->max_len = max_len;
  *out = ed;
  return 0;
}

int sl_editdist_new(size_t max_len, sl_editdist_t **out) {
  if (out == NULL) return SL_AN_EINVAL;
  size_t size = sl_editdist_size(max_len);
  if (size == 0) return SL_AN_EINVAL;
  void *mem = malloc(size);
  if (mem == NULL) return SL_AN_ENOMEM;
  int rc = sl_editdist_init(mem, size, max_len, out);
  if (rc != 0) {
    free(mem);
    return rc;
  }
  (*out)->heap = 1;
  return 0;
}

void sl_editdist_free(sl_editdist_t *ed) {
  if (ed != NULL && ed->heap) free(ed);
}

/* Orders the pair so that the pattern is the shorter sequence and checks the
 * arguments shared by both batch measures. */
static int batch_args(sl_editdist_t *ed, const uint32_t **a, size_t *na, const uint32_t **b,
                      size_t *nb, const void *result) {
  if (ed == NULL || result == NULL) return SL_AN_EINVAL;
  if ((*a == NULL && *na != 0) || (*b == NULL && *nb != 0)) return SL_AN_EINVAL;
  if (*na > *nb) {
    const uint32_t *tp = *a;
    size_t tn = *na;
    *a = *b;
    *na = *nb;
    *b = tp;
    *nb = tn;
  }
  if (*na > ed->max_len) return SL_AN_ETOOBIG;
  return 0;
}

int sl_editdist_levenshtein(sl_editdist_t *ed, const uint32_t *a, size_t na,
                            const uint32_t *b, size_t nb, size_t *dist) {
  int rc = batch_args(ed, &a, &na, &b, &nb, dist);
  if (rc != 0) return rc;
  if (na == 0) {
    *dist = nb;
    return 0;
  }
  size_t w = words_for(na);
  uint64_t lastmask = last_mask(na);
  uint64_t *peq = ed->peq, *pv = ed->pv, *mv = ed->mv;
  uint32_t rows[MAP_CHUNK];
  remap_clear(&ed->map, na);
  build_peq(&ed->map, peq, a, na, w, ed->pidx);
  size_t score = na;
  if (w == 1) {
    /* One word: Myers' step with the global boundary (+1) shifted in. */
    uint64_t p = ~(uint64_t)0, n = 0;
    for (size_t j = 0; j < nb; j++) {
      if (j % MAP_CHUNK == 0) map_chunk(&ed->map, b + j, MIN(MAP_CHUNK, nb - j), 1, rows);
      uint64_t eq = peq[rows[j % MAP_CHUNK]];
      uint64_t xv = eq | n;
      uint64_t xh = (((eq & p) + p) ^ p) | eq;
      uint64_t ph = n | ~(xh | p);
      uint64_t mh = p & xh;
      score += (ph & lastmask) != 0;
      score -= (mh & lastmask) != 0;
      ph = (ph << 1) | 1;
      mh <<= 1;
      p = mh | ~(xv | ph);
      n = ph & xv;
    }
#ifdef HAVE_U128
  } else if (w == 2) {
    /* Two words as one 128-bit integer: the compiler carries with adc. */
    u128 p = ~(u128)0, n = 0, last = (u128)1 << (na - 1);
    for (size_t j = 0; j < nb; j++) {
      if (j % MAP_CHUNK == 0) map_chunk(&ed->map, b + j, MIN(MAP_CHUNK, nb - j), 2, rows);
      const uint64_t *row = peq + rows[j % MAP_CHUNK];
      u128 eq = (u128)row[0] | ((u128)row[1] << 64);
      u128 xv = eq | n;
      u128 xh = (((eq & p) + p) ^ p) | eq;
      u128 ph = n | ~(xh | p);
      u128 mh = p & xh;
      score += (ph & last) != 0;
      score -= (mh & last) != 0;
      ph = (ph << 1) | 1;
      mh <<= 1;
      p = mh | ~(xv | ph);
      n = ph & xv;
    }
#endif
  } else {
    for (size_t i = 0; i < w; i++) {
      pv[i] = ~(uint64_t)0;
      mv[i] = 0;
    }
    for (size_t j = 0; j < nb; j++) {
      if (j % MAP_CHUNK == 0) map_chunk(&ed->map, b + j, MIN(MAP_CHUNK, nb - j), w, rows);
      const uint64_t *eq = peq + rows[j % MAP_CHUNK];
      score += (size_t)(ptrdiff_t)lev_column(pv, mv, eq, w, lastmask, 1);
    }
  }
  *dist = score;
  return 0;
}

int sl_editdist_lcs(sl_editdist_t *ed, const uint32_t *a, size_t na, const uint32_t *b,
                    size_t nb, size_t *len) {
  int rc = batch_args(ed, &a, &na, &b, &nb, len);
  if (rc != 0) return rc;
  if (na == 0) {
    *len = 0;
    return 0;
  }
  size_t w = words_for(na);
  uint64_t *peq = ed->peq, *v = ed->pv;
  uint32_t rows[MAP_CHUNK];
  remap_clear(&ed->map, na);
  build_peq(&ed->map, peq, a, na, w, ed->pidx);
  size_t lcs = 0;
  if (w == 1) {
    uint64_t x = na == 64 ? ~(uint64_t)0 : (((uint64_t)1 << na) - 1);
    for (size_t j = 0; j < nb; j++) {
      if (j % MAP_CHUNK == 0) map_chunk(&ed->map, b + j, MIN(MAP_CHUNK, nb - j), 1, rows);
      uint64_t u = x & peq[rows[j % MAP_CHUNK]];
      x = (x + u) | (x & ~u);
    }
    /* The zero bits among the m low ones are the LCS; a carry out of row
     * m-1 only sets bits above it, which the mask drops. */
    if (na < 64) x &= ((uint64_t)1 << na) - 1;
    lcs = na - (size_t)__builtin_popcountll(x);
#ifdef HAVE_U128
  } else if (w == 2) {
    u128 mask = na == 128 ? ~(u128)0 : (((u128)1 << na) - 1), x = mask;
    for (size_t j = 0; j < nb; j++) {
      if (j % MAP_CHUNK == 0) map_chunk(&ed->map, b + j, MIN(MAP_CHUNK, nb - j), 2, rows);
      const uint64_t *row = peq + rows[j % MAP_CHUNK];
      u128 u = x & ((u128)row[0] | ((u128)row[1] << 64));
      x = (x + u) | (x & ~u);
    }
    x &= mask;
    lcs = na - (size_t)__builtin_popcountll((uint64_t)x) -
          (size_t)__builtin_popcountll((uint64_t)(x >> 64));
#endif
  } else {
    lcs_reset(v, w, na);
    for (size_t j = 0; j < nb; j++) {
      if (j % MAP_CHUNK == 0) map_chunk(&ed->map, b + j, MIN(MAP_CHUNK, nb - j), w, rows);
      const uint64_t *eq = peq + rows[j % MAP_CHUNK];
      lcs += (size_t)lcs_column(v, eq, w, na);
    }
  }
  *len = lcs;
  return 0;
}

/* ---- incremental ---- */

size_t sl_editdist_stream_size(size_t m) {
  layout_t l;
  return layout(sizeof(sl_editdist_stream_t), m, &l) == 0 ? l.total : 0;
}

void sl_editdist_stream_reset(sl_editdist_stream_t *s) {
  if (s == NULL) return;
  s->count = 0;
  if (s->m == 0) {
    s->score = 0;
    return;
  }
  if (s->mode == SL_EDITDIST_LCS) {
    lcs_reset(s->pv, s->w, s->m);
    s->score = 0;
  } else {
    for (size_t i = 0; i < s->w; i++) {
      s->pv[i] = ~(uint64_t)0;
      s->mv[i] = 0;
    }
    s->score = s->m;
  }
}

int sl_editdist_stream_init(void *mem, size_t size, const uint32_t *pattern, size_t m,
                            int mode, sl_editdist_stream_t **out) {
  layout_t l;
  if (mem == NULL || out == NULL || ((uintptr_t)mem & 7) != 0) return SL_AN_EINVAL;
  if (pattern == NULL && m != 0) return SL_AN_EINVAL;
  if (mode != SL_EDITDIST_GLOBAL && mode != SL_EDITDIST_SEARCH && mode != SL_EDITDIST_LCS)
    return SL_AN_EINVAL;
  int rc = layout(sizeof(sl_editdist_stream_t), m, &l);
  if (rc != 0) return rc;
  if (size < l.total) return SL_AN_ETOOBIG;
  char *base = mem;
  sl_editdist_stream_t *s = mem;
  memset(s, 0, sizeof *s);
  remap_setup(&s->map, (remap_slot_t *)(base + l.slots), m);
  s->peq = (uint64_t *)(base + l.peq);
  s->pv = (uint64_t *)(base + l.pv);
  s->mv = (uint64_t *)(base + l.mv);
  s->pidx = (uint32_t *)(base + l.pidx);
  s->m = m;
  s->w = words_for(m ? m : 1);
  s->lastmask = m ? last_mask(m) : 0;
  s->mode = mode;
  build_peq(&s->map, s->peq, pattern, m, s->w, s->pidx);
  sl_editdist_stream_reset(s);
  *out = s;
  return 0;
}

int sl_editdist_stream_new(const uint32_t *pattern, size_t m, int mode,
                           sl_editdist_stream_t **out) {
  if (out == NULL) return SL_AN_EINVAL;
  size_t size = sl_editdist_stream_size(m);
  if (size == 0) return SL_AN_EINVAL;
  void *mem = malloc(size);
  if (mem == NULL) return SL_AN_ENOMEM;
  int rc = sl_editdist_stream_init(mem, size, pattern, m, mode, out);
  if (rc != 0) {
    free(mem);
    return rc;
  }
  (*out)->heap = 1;
  return 0;
}

void sl_editdist_stream_free(sl_editdist_stream_t *s) {
  if (s != NULL && s->heap) free(s);
}

int sl_editdist_stream_push(sl_editdist_stream_t *s, uint32_t tok, size_t *value) {
  if (s == NULL || value == NULL) return SL_AN_EINVAL;
  s->count++;
  if (s->m == 0) {
    /* Empty pattern: the distance to the text is its length, the best
     * occurrence is the empty substring, and there is nothing in common. */
    s->score = s->mode == SL_EDITDIST_GLOBAL ? (size_t)s->count : 0;
    *value = s->score;
    return 0;
  }
  const uint64_t *eq = s->peq + (size_t)remap_find(&s->map, tok) * s->w;
  if (s->mode == SL_EDITDIST_LCS) {
    s->score += (size_t)lcs_column(s->pv, eq, s->w, s->m);
  } else {
    int top = s->mode == SL_EDITDIST_GLOBAL ? 1 : 0;
    s->score += (size_t)(ptrdiff_t)lev_column(s->pv, s->mv, eq, s->w, s->lastmask, top);
  }
  *value = s->score;
  return 0;
}

size_t sl_editdist_stream_value(const sl_editdist_stream_t *s) { return s ? s->score : 0; }

uint64_t sl_editdist_stream_count(const sl_editdist_stream_t *s) { return s ? s->count : 0; }
