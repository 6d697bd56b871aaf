/* ahocorasick.c: Aho-Corasick automaton with a full transition table.
 *
 * Implements analyzers/ahocorasick.h.
 *
 * Build.  Bytes are first mapped to classes: each byte that occurs in a
 * pattern (after ASCII folding with SL_AC_NOCASE) gets its own class, every
 * other byte shares class 0, and the class count K is rounded up to a power
 * of two.  The trie is built in a table of K entries per state; a
 * breadth-first pass then sets each state's failure link and fills its
 * missing transitions from its failure state's row (complete already, as
 * that state is shallower), which turns the trie into a DFA.  The same pass
 * computes, per state: the number of matches it ends (its own patterns plus
 * those of its failure state, recursively), the next state on its failure
 * chain that ends a pattern (the "dictionary" link that reporting follows),
 * and the holdback: the state's depth if it still has children, else its
 * failure state's holdback (a stream sitting in a leaf can only go on via
 * its failure chain).  Finally states are renumbered, non-matching ones
 * first in breadth-first order, and every table entry is stored as the
 * target's row offset (state * K): feeding a byte is then
 * `state = table[state + class[byte]]`, and `state >= out_base` says a
 * match ended, one compare off the dependency chain.
 *
 * Feeding.  Large chunks run as two lanes, the second started maxlen bytes
 * early from the root, so two independent chains of loads overlap (see
 * two_lanes()); the rest runs one lane, four bytes per iteration until a
 * byte ends a match.
 *
 * Holdback is minimal: a match still to come that starts in text already
 * fed has its fed part as a suffix of the stream that is a pattern prefix
 * with somewhere to go, hence no longer than the state's holdback; and the
 * holdback suffix itself can be completed into a match.
 */
#include "analyzers/ahocorasick.h"

#include <stdlib.h>
#include <string.h>


#define MAX_PATTERNS ((size_t)1 << 20)
#define MAX_BYTES ((size_t)1 << 24)
#define MAX_ENTRIES ((size_t)1 << 28)
#define NONE UINT32_MAX

struct sl_ac_s {
  uint32_t cls[256];    /* byte -> class */
  uint32_t k;           /* classes per row, a power of two */
  uint32_t kshift;      /* log2(k) */
  uint32_t nstates;     /* states in use */
  uint32_t out_base;    /* row offset of the first state that ends a match */
  uint32_t max_matches; /* largest nout */
  uint32_t npat;        /* patterns */
  uint32_t maxlen;      /* longest pattern */
  uint32_t *trans;      /* nstates * k row offsets */
  uint32_t *hold;       /* per state: holdback in bytes */
  uint32_t *nout;       /* per state: matches ending here */
  uint32_t *dict;       /* per state: next state on the failure chain that
                           ends a pattern, or NONE */
  uint32_t *head;       /* per state: first pattern ending here, or NONE */
  uint32_t *next_same;  /* per pattern: next pattern with the same bytes */
  uint32_t *plen;       /* per pattern: length */
  int heap;             /* made by sl_ac_new() */
};

static size_t align8(size_t x) { return (x + 7) & ~(size_t)7; }

static void make_classes(const char *const *pats, const size_t *lens, size_t n, unsigned flags,
                         uint32_t *cls, uint32_t *k_out, uint32_t *kshift) {
  uint8_t seen[256] = {0};
  for (size_t i = 0; i < n; i++) {
    const unsigned char *p = (const unsigned char *)pats[i];
    for (size_t j = 0; j < lens[i]; j++) {
      unsigned c = p[j];
      if ((flags & SL_AC_NOCASE) && c >= 'A' && c <= 'Z') c += 'a' - 'A';
      seen[c] = 1;
    }
  }
  uint32_t next = 0, distinct = 0;
  for (int c = 0; c < 256; c++) distinct += seen[c];
  /* Class 0 is "no pattern has this byte" unless every byte occurs. */
  if (distinct < 256) next = 1;
  for (int c = 0; c < 256; c++) cls[c] = seen[c] ? next++ : 0;
  if (flags & SL_AC_NOCASE)
    for (int c = 'A'; c <= 'Z'; c++) cls[c] = cls[c + ('a' - 'A')];
  uint32_t k = 1, sh = 0;
  while (k < next) {
    k <<= 1;
    sh++;
  }
  *k_out = k;
  *kshift = sh;
}

typedef struct {
  size_t trans, hold, nout, dict, head, next_same, plen, queue, newid, rows, total;
  uint32_t k, kshift, smax;
} layout_t;

static int layout(const char *const *pats, const size_t *lens, size_t n, unsigned flags,
                  layout_t *l, uint32_t *cls) {
  if (pats == NULL || lens == NULL || n == 0 || n > MAX_PATTERNS) return SL_AN_EINVAL;
  if (flags & ~(unsigned)SL_AC_NOCASE) return SL_AN_EINVAL;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    if (pats[i] == NULL || lens[i] == 0 || lens[i] > MAX_BYTES) return SL_AN_EINVAL;
    total += lens[i];
    if (total > MAX_BYTES) return SL_AN_EINVAL;
  }
  uint32_t tmp[256];
  make_classes(pats, lens, n, flags, cls ? cls : tmp, &l->k, &l->kshift);
  size_t smax = total + 1;
  if (smax * l->k > MAX_ENTRIES) return SL_AN_EINVAL;
  l->smax = (uint32_t)smax;
  size_t off = align8(sizeof(sl_ac_t));
  l->trans = off;
  off += align8(smax * l->k * sizeof(uint32_t));
  l->hold = off;
  off += align8(smax * sizeof(uint32_t));
  l->nout = off;
  off += align8(smax * sizeof(uint32_t));
  l->dict = off;
  off += align8(smax * sizeof(uint32_t));
  l->head = off;
  off += align8(smax * sizeof(uint32_t));
  l->next_same = off;
  off += align8(n * sizeof(uint32_t));
  l->plen = off;
  off += align8(n * sizeof(uint32_t));
  /* Build scratch, unused afterwards. */
  l->queue = off;
  off += align8(smax * sizeof(uint32_t));
  l->newid = off;
  off += align8(smax * sizeof(uint32_t));
  l->rows = off;
  off += align8(2 * (size_t)l->k * sizeof(uint32_t));
  l->total = off;
  return 0;
}

size_t sl_ac_size(const char *const *pats, const size_t *lens, size_t n, unsigned flags) {
  layout_t l;
  return layout(pats, lens, n, flags, &l, NULL) == 0 ? l.total : 0;
}

/* Moves every row s of the table to row newid[s] by following the
 * permutation's cycles with two spare rows; marks visited states in the
 * top bit of newid (state ids stay below 2^31). */
static void permute_rows(uint32_t *t, uint32_t k, uint32_t *newid, uint32_t ns, uint32_t *ra,
                         uint32_t *rb) {
  const uint32_t mark = (uint32_t)1 << 31;
  size_t rowb = (size_t)k * sizeof *t;
  for (uint32_t s = 0; s < ns; s++) {
    if (newid[s] & mark) continue;
    if (newid[s] == s) {
      newid[s] |= mark;
      continue;
    }
    memcpy(ra, t + (size_t)s * k, rowb);
    uint32_t j = s;
    do {
      uint32_t to = newid[j];
      newid[j] |= mark;
      memcpy(rb, t + (size_t)to * k, rowb);
      memcpy(t + (size_t)to * k, ra, rowb);
      uint32_t *x = ra;
      ra = rb;
      rb = x;
      j = to;
    } while (j != s);
  }
}

/* a[newid[s]] = a[s] for every state, through tmp. */
static void permute_array(uint32_t *a, const uint32_t *newid, uint32_t ns, uint32_t *tmp) {
  for (uint32_t s = 0; s < ns; s++) tmp[newid[s]] = a[s];
  memcpy(a, tmp, (size_t)ns * sizeof *a);
}

int sl_ac_build(void *mem, size_t size, const char *const *pats, const size_t *lens, size_t n,
                unsigned flags, sl_ac_t **out) {
  if (mem == NULL || out == NULL || ((uintptr_t)mem & 7) != 0) return SL_AN_EINVAL;
  layout_t l;
  sl_ac_t *ac = mem;
  uint32_t cls[256];
  int rc = layout(pats, lens, n, flags, &l, cls);
  if (rc != 0) return rc;
  if (size < l.total) return SL_AN_ETOOBIG;
  char *base = mem;
  memset(ac, 0, sizeof *ac);
  memcpy(ac->cls, cls, sizeof cls);
  ac->k = l.k;
  ac->kshift = l.kshift;
  ac->npat = (uint32_t)n;
  ac->trans = (uint32_t *)(base + l.trans);
  ac->hold = (uint32_t *)(base + l.hold);
  ac->nout = (uint32_t *)(base + l.nout);
  ac->dict = (uint32_t *)(base + l.dict);
  ac->head = (uint32_t *)(base + l.head);
  ac->next_same = (uint32_t *)(base + l.next_same);
  ac->plen = (uint32_t *)(base + l.plen);
  uint32_t *queue = (uint32_t *)(base + l.queue), *newid = (uint32_t *)(base + l.newid);
  uint32_t *rows = (uint32_t *)(base + l.rows);
  uint32_t k = l.k, *t = ac->trans;
  /* hold[] doubles as the depth while building. */
  uint32_t *depth = ac->hold, *fail = newid;

  /* The trie: entry 0 means "no child" (the root is nobody's child).
   * Patterns go in last to first so each state's list of identical
   * patterns comes out in increasing index order. */
  uint32_t ns = 1;
  memset(t, 0, (size_t)k * sizeof *t);
  ac->head[0] = NONE;
  depth[0] = 0;
  for (size_t pi = n; pi-- > 0;) {
    const unsigned char *p = (const unsigned char *)pats[pi];
    uint32_t cur = 0;
    for (size_t j = 0; j < lens[pi]; j++) {
      uint32_t *e = &t[(size_t)cur * k + cls[p[j]]];
      if (*e == 0) {
        memset(t + (size_t)ns * k, 0, (size_t)k * sizeof *t);
        ac->head[ns] = NONE;
        depth[ns] = depth[cur] + 1;
        *e = ns++;
      }
      cur = *e;
    }
    ac->next_same[pi] = ac->head[cur];
    ac->head[cur] = (uint32_t)pi;
    ac->plen[pi] = (uint32_t)lens[pi];
    if (lens[pi] > ac->maxlen) ac->maxlen = (uint32_t)lens[pi];
  }
  ac->nstates = ns;

  /* Breadth-first: failure links, DFA rows, match counts, dictionary
   * links, holdback (overwriting depth, which is read first). */
  uint32_t qh = 0, qt = 0;
  queue[qt++] = 0;
  fail[0] = 0;
  while (qh < qt) {
    uint32_t u = queue[qh++], f = fail[u];
    int leaf = 1;
    for (uint32_t c = 0; c < k; c++) {
      uint32_t *e = &t[(size_t)u * k + c];
      if (*e != 0) {
        uint32_t v = *e;
        fail[v] = u == 0 ? 0 : t[(size_t)f * k + c];
        queue[qt++] = v;
        leaf = 0;
      } else if (u != 0) {
        *e = t[(size_t)f * k + c];
      }
    }
    uint32_t own = 0;
    for (uint32_t p = ac->head[u]; p != NONE; p = ac->next_same[p]) own++;
    if (u == 0) {
      ac->nout[0] = 0;
      ac->dict[0] = NONE;
      ac->hold[0] = 0;
    } else {
      ac->nout[u] = own + ac->nout[f];
      ac->dict[u] = ac->head[f] != NONE ? f : ac->dict[f];
      ac->hold[u] = leaf ? ac->hold[f] : depth[u];
    }
    if (ac->nout[u] > ac->max_matches) ac->max_matches = ac->nout[u];
  }

  /* Renumber: states that end no match first, in breadth-first order (so
   * the root stays 0), then the others. */
  uint32_t id = 0;
  for (uint32_t i = 0; i < ns; i++)
    if (ac->nout[queue[i]] == 0) newid[queue[i]] = id++;
  ac->out_base = id << l.kshift;
  for (uint32_t i = 0; i < ns; i++)
    if (ac->nout[queue[i]] != 0) newid[queue[i]] = id++;
  for (size_t e = 0; e < (size_t)ns * k; e++) t[e] = newid[t[e]] << l.kshift;
  for (uint32_t s = 0; s < ns; s++)
    if (ac->dict[s] != NONE) ac->dict[s] = newid[ac->dict[s]];
  permute_array(ac->hold, newid, ns, queue);
  permute_array(ac->nout, newid, ns, queue);
  permute_array(ac->dict, newid, ns, queue);
  permute_array(ac->head, newid, ns, queue);
  permute_rows(t, k, newid, ns, rows, rows + k);
  *out = ac;
  return 0;
}

int sl_ac_new(const char *const *pats, const size_t *lens, size_t n, unsigned flags,
              sl_ac_t **out) {
  if (out == NULL) return SL_AN_EINVAL;
  size_t size = sl_ac_size(pats, lens, n, flags);
  if (size == 0) return SL_AN_EINVAL;
  void *mem = malloc(size);
  if (mem == NULL) return SL_AN_ENOMEM;
  int rc = sl_ac_build(mem, size, pats, lens, n, flags, out);
  if (rc != 0) {
    free(mem);
    return rc;
  }
  (*out)->heap = 1;
  return 0;
}

void sl_ac_free(sl_ac_t *ac) {
  if (ac != NULL && ac->heap) free(ac);
}

uint32_t sl_ac_states(const sl_ac_t *ac) { return ac ? ac->nstates : 0; }

uint32_t sl_ac_max_matches(const sl_ac_t *ac) { return ac ? ac->max_matches : 0; }

void sl_ac_stream_init(sl_ac_stream_t *st, const sl_ac_t *ac) {
  if (st == NULL) return;
  st->ac = ac;
  st->state = 0;
  st->offset = 0;
}

size_t sl_ac_holdback(const sl_ac_stream_t *st) {
  if (st == NULL || st->ac == NULL) return 0;
  return st->ac->hold[st->state >> st->ac->kshift];
}

/* Writes the matches of state s (an index) ending at stream offset end. */
static size_t emit(const sl_ac_t *ac, uint32_t s, uint64_t end, sl_ac_match_t *out) {
  size_t n = 0;
  for (; s != NONE; s = ac->dict[s]) {
    for (uint32_t p = ac->head[s]; p != NONE; p = ac->next_same[p]) {
      out[n].end = end;
      out[n].pattern = p;
      out[n].len = ac->plen[p];
      n++;
    }
  }
  return n;
}

/* Bytes per lane in the two-lane loop, and the most matches a lane
 * records before the block is redone one lane at a time. */
#define LANE 256
#define LANE_HITS 32

/* Feeds p[i .. i + 2 * LANE) as two independent lanes, to overlap two chains
 * of table loads: lane A from the current state over the first half, lane B
 * from the root starting maxlen bytes before the second half.  After those
 * maxlen bytes lane B is in the true state (a state is the longest suffix
 * of the input that is a pattern prefix, never longer than maxlen), so its
 * matches from then on are real, and it ends in the true state.  Matching
 * states are recorded per lane and emitted in order afterwards.  Returns 0
 * (nothing written, *cur unchanged) when a lane records too many matches or
 * they would not fit in the rest of out: the caller redoes the block the
 * plain way. */
static int two_lanes(const sl_ac_t *ac, const unsigned char *p, uint32_t *cur, uint64_t base,
                     sl_ac_match_t *out, size_t cap, size_t *n) {
  const uint32_t *t = ac->trans, *cls = ac->cls;
  uint32_t ob = ac->out_base, w = ac->maxlen, a = *cur, b = 0;
  const unsigned char *pa = p, *pb = p + LANE - w;
  uint32_t ha[LANE_HITS], hb[LANE_HITS], sa[LANE_HITS], sb[LANE_HITS], na = 0, nb = 0;
  for (uint32_t k = 0; k < LANE; k++) {
    a = t[a + cls[pa[k]]];
    b = t[b + cls[pb[k]]];
    if ((a >= ob) | (b >= ob)) {
      if (a >= ob) {
        if (na == LANE_HITS) return 0;
        ha[na] = k;
        sa[na++] = a;
      }
      if (b >= ob && k >= w) {
        if (nb == LANE_HITS) return 0;
        hb[nb] = LANE - w + k;
        sb[nb++] = b;
      }
    }
  }
  for (uint32_t k = LANE; k < LANE + w; k++) {
    b = t[b + cls[pb[k]]];
    if (b >= ob) {
      if (nb == LANE_HITS) return 0;
      hb[nb] = LANE - w + k;
      sb[nb++] = b;
    }
  }
  size_t need = 0;
  for (uint32_t h = 0; h < na; h++) need += ac->nout[sa[h] >> ac->kshift];
  for (uint32_t h = 0; h < nb; h++) need += ac->nout[sb[h] >> ac->kshift];
  if (*n + need > cap) return 0;
  for (uint32_t h = 0; h < na; h++) *n += emit(ac, sa[h] >> ac->kshift, base + ha[h] + 1, out + *n);
  for (uint32_t h = 0; h < nb; h++) *n += emit(ac, sb[h] >> ac->kshift, base + hb[h] + 1, out + *n);
  *cur = b;
  return 1;
}

int sl_ac_feed(sl_ac_stream_t *st, const void *buf, size_t len, sl_ac_match_t *out, size_t cap,
               size_t *nout, size_t *consumed) {
  if (st == NULL || st->ac == NULL || nout == NULL || consumed == NULL) return SL_AN_EINVAL;
  if ((buf == NULL && len != 0) || (out == NULL && cap != 0)) return SL_AN_EINVAL;
  const sl_ac_t *ac = st->ac;
  const uint32_t *t = ac->trans, *cls = ac->cls;
  const unsigned char *p = buf;
  uint32_t cur = st->state, ob = ac->out_base;
  size_t i = 0, n = 0;
  int rc = 0, lanes = ac->maxlen <= LANE / 4;
  while (i < len) {
    size_t end = len;
    if (lanes && len - i >= 2 * LANE) {
      if (two_lanes(ac, p + i, &cur, st->offset + i, out, cap, &n)) {
        i += 2 * LANE;
        continue;
      }
      end = i + 2 * LANE;
    }
    /* One lane, four bytes at a time while none of them ends a match (for
     * token-sized feeds one at a time: fewer branches to mispredict). */
    int stop = 0;
    while (i < end) {
      while (len >= 16 && i + 4 <= end) {
        uint32_t s1 = t[cur + cls[p[i]]];
        if (s1 >= ob) break;
        uint32_t s2 = t[s1 + cls[p[i + 1]]];
        if (s2 >= ob) {
          cur = s1;
          i += 1;
          break;
        }
        uint32_t s3 = t[s2 + cls[p[i + 2]]];
        if (s3 >= ob) {
          cur = s2;
          i += 2;
          break;
        }
        uint32_t s4 = t[s3 + cls[p[i + 3]]];
        if (s4 >= ob) {
          cur = s3;
          i += 3;
          break;
        }
        cur = s4;
        i += 4;
      }
      if (i >= end) break;
      uint32_t nx = t[cur + cls[p[i]]];
      if (nx >= ob) {
        uint32_t s = nx >> ac->kshift, k = ac->nout[s];
        if (n + k > cap) {
          if (n == 0 && i == 0) rc = SL_AN_ETOOBIG;
          stop = 1;
          break;
        }
        n += emit(ac, s, st->offset + i + 1, out + n);
      }
      cur = nx;
      i++;
    }
    if (stop) break;
  }
  st->state = cur;
  st->offset += i;
  *nout = n;
  *consumed = i;
  return rc;
}
