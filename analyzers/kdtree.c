/* kdtree.c: an implicit k-d tree with Theiler-window exclusion.
 *
 * The tree is a permutation of point indices: a range [lo, hi) longer than a
 * bucket is split at mid = lo + (hi - lo) / 2 so that idx[lo..mid) lie at or
 * below idx[mid] on the split coordinate and idx[mid+1..hi) at or above it.
 * Nothing but the permutation and one byte per range middle is stored, so
 * the tree needs 5 bytes per point and no allocation.
 */
#include "analyzers/kdtree.h"


/* Ranges at most this long are scanned linearly: below it the bookkeeping of
 * a descent costs more than the distances it saves. */
#define SL__KD_BUCKET 8

size_t sl_kdtree_workspace_size(size_t n) { return n * sizeof(uint32_t) + n; }

static inline double kd_coord(const sl_kdtree_t *t, uint32_t p, unsigned d) {
  return t->pts[(size_t)p * t->dim + d];
}

/* Rearranges idx[lo..hi) so that idx[k] holds the element that would be there
 * if the range were sorted on coordinate d (quickselect, median of three). */
static void kd_select(sl_kdtree_t *t, size_t lo, size_t hi, size_t k, unsigned d) {
  uint32_t *a = t->idx;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2, last = hi - 1;
    /* Order a[lo], a[mid], a[last] so the median lands in a[mid]. */
    if (kd_coord(t, a[mid], d) < kd_coord(t, a[lo], d)) { uint32_t s = a[mid]; a[mid] = a[lo]; a[lo] = s; }
    if (kd_coord(t, a[last], d) < kd_coord(t, a[lo], d)) { uint32_t s = a[last]; a[last] = a[lo]; a[lo] = s; }
    if (kd_coord(t, a[last], d) < kd_coord(t, a[mid], d)) { uint32_t s = a[last]; a[last] = a[mid]; a[mid] = s; }
    if (hi - lo <= 3) return; /* three sorted elements: done */
    double pivot = kd_coord(t, a[mid], d);
    /* Hoare partition around the pivot value. */
    size_t i = lo, j = last;
    for (;;) {
      while (kd_coord(t, a[i], d) < pivot) i++;
      while (kd_coord(t, a[j], d) > pivot) j--;
      if (i >= j) break;
      uint32_t s = a[i]; a[i] = a[j]; a[j] = s;
      i++;
      j--;
    }
    /* Now a[lo..j] <= pivot <= a[j+1..hi). */
    if (k <= j) hi = j + 1;
    else lo = j + 1;
  }
}

static void kd_build(sl_kdtree_t *t, size_t lo, size_t hi) {
  while (hi - lo > SL__KD_BUCKET) {
    unsigned best = 0;
    double spread = -1;
    /* The spread is judged on at most 64 evenly strided points of the
     * range: enough to find the long axis, and it keeps the build
     * O(n log n) with a small constant. */
    size_t stride = (hi - lo + 63) / 64;
    for (unsigned d = 0; d < t->dim; d++) {
      double mn = kd_coord(t, t->idx[lo], d), mx = mn;
      for (size_t i = lo + stride; i < hi; i += stride) {
        double v = kd_coord(t, t->idx[i], d);
        if (v < mn) mn = v;
        if (v > mx) mx = v;
      }
      if (mx - mn > spread) { spread = mx - mn; best = d; }
    }
    size_t mid = lo + (hi - lo) / 2;
    kd_select(t, lo, hi, mid, best);
    t->sdim[mid] = (uint8_t)best;
    kd_build(t, lo, mid);
    lo = mid + 1; /* the right half by iteration */
  }
}

int sl_kdtree_build(sl_kdtree_t *t, const double *pts, size_t n, unsigned dim,
                    void *ws, size_t ws_size) {
  if (t == NULL || pts == NULL || ws == NULL || n == 0 || n >= UINT32_MAX || dim == 0 ||
      dim > SL_KDTREE_MAX_DIM || ws_size < sl_kdtree_workspace_size(n))
    return SL_AN_EINVAL;
  t->pts = pts;
  t->n = (uint32_t)n;
  t->dim = dim;
  t->idx = (uint32_t *)ws;
  t->sdim = (uint8_t *)ws + n * sizeof(uint32_t);
  for (size_t i = 0; i < n; i++) t->idx[i] = (uint32_t)i;
  kd_build(t, 0, n);
  return 0;
}

typedef struct {
  const sl_kdtree_t *t;
  const double *q;
  size_t centre, exclude;
  size_t best;
  double best_d2;
} kd_query_t;

static inline void kd_consider(kd_query_t *s, uint32_t p) {
  size_t gap = p > s->centre ? p - s->centre : s->centre - p;
  if (s->centre != SL_KDTREE_NONE && gap <= s->exclude) return;
  const double *x = s->t->pts + (size_t)p * s->t->dim;
  double d2 = 0;
  for (unsigned k = 0; k < s->t->dim; k++) {
    double diff = s->q[k] - x[k];
    d2 += diff * diff;
  }
  if (d2 < s->best_d2 || (d2 == s->best_d2 && p < s->best)) {
    s->best_d2 = d2;
    s->best = p;
  }
}

static void kd_search(kd_query_t *s, size_t lo, size_t hi) {
  const sl_kdtree_t *t = s->t;
  while (hi - lo > SL__KD_BUCKET) {
    size_t mid = lo + (hi - lo) / 2;
    uint32_t p = t->idx[mid];
    unsigned d = t->sdim[mid];
    double diff = s->q[d] - kd_coord(t, p, d);
    kd_consider(s, p);
    size_t nlo, nhi, flo, fhi; /* near side, far side */
    if (diff < 0) { nlo = lo; nhi = mid; flo = mid + 1; fhi = hi; }
    else { nlo = mid + 1; nhi = hi; flo = lo; fhi = mid; }
    kd_search(s, nlo, nhi);
    /* The far side can only hold a point as near as the splitting plane; an
     * equal distance still matters because ties go to the smaller index. */
    if (!(diff * diff <= s->best_d2)) return;
    lo = flo;
    hi = fhi;
  }
  for (size_t i = lo; i < hi; i++) kd_consider(s, t->idx[i]);
}

int sl_kdtree_nearest(const sl_kdtree_t *t, const double *q, size_t centre, size_t exclude,
                      size_t hint, size_t *nn, double *d2) {
  kd_query_t s = {t, q, centre, exclude, SL_KDTREE_NONE, __builtin_inf()};
  if (t == NULL || q == NULL || nn == NULL || d2 == NULL) return SL_AN_EINVAL;
  /* A hint only tightens the bound; the search still visits every point
   * that could be nearer or as near with a smaller index. */
  if (hint != SL_KDTREE_NONE && hint < t->n) kd_consider(&s, (uint32_t)hint);
  kd_search(&s, 0, t->n);
  if (s.best == SL_KDTREE_NONE) return SL_AN_ENOTFOUND;
  *nn = s.best;
  *d2 = s.best_d2;
  return 0;
}
