/* dtw.c: banded DTW along anti-diagonals, LB_Kim, LB_Keogh, search.
 *
 * Implements analyzers/dtw.h.
 *
 * The DP.  Cell (i, j) holds D(i, j) = cost(a[i], b[j]) + min(D(i-1, j-1),
 * D(i-1, j), D(i, j-1)).  Row by row, each cell waits for its left
 * neighbour, so the loop runs at the latency of a min and an add per cell.
 * Along an anti-diagonal d = i + j no cell depends on another: cell (i, d-i)
 * needs (i-1, d-i-1) from diagonal d-2 and (i-1, d-i), (i, d-i-1) from
 * diagonal d-1.  So three diagonal buffers indexed by i (offset by one for a
 * sentinel) rotate, b is read reversed so that b[d - i] is contiguous in i,
 * and the cells of a diagonal are computed two per SSE2 instruction, or
 * four per AVX2 instruction when the CPU has it (chosen at run time).  The
 * band |i - j| <= r keeps i within [(d - r) / 2, (d + r) / 2] on diagonal d.
 * After each diagonal the cells just outside its range are set to +inf;
 * the ranges move by at most one per diagonal, so every neighbour read
 * outside the band or the matrix finds +inf or a live cell, never a stale
 * value from three diagonals back.
 *
 * Early abandoning.  A path reaches (na-1, nb-1) through diagonal d or,
 * with a diagonal step, skips it from d-1; so the least D on two
 * consecutive diagonals, plus a lower bound for the rows still to come
 * (cb[i + 1], from LB_Keogh terms, in the search), bounds the final
 * distance.  It is checked every fourth diagonal.  Without cb the bound
 * holds exactly (adding non-negative doubles never decreases a sum); the
 * bounds from other sums are scaled by BOUND_SLACK before any comparison.
 *
 * Search.  For each window, cheapest test first: LB_Kim (O(1)), LB_Keogh of
 * the window against the query's envelope, LB_Keogh of the query against
 * the series' envelope (computed once for the whole series: an envelope over
 * a wider range is looser but still a bound), then the DTW with the larger
 * bound's per-position terms as cb and the best distance so far as the
 * abandoning limit.  DTW is symmetric, so the DP is run with the series
 * whose terms are used as rows.  A window is dropped only when a bound is
 * at least the best distance so far, so the result equals a brute-force
 * scan, first minimum included.
 */
#include "analyzers/dtw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_AVX2_PATH 1
#endif

#define ABANDON_EVERY 4

/* A bound is a sum in another order than the DP's, so in floating point it
 * can exceed a distance it equals in exact arithmetic by a few ulps.
 * Scaled by this before it is compared with a limit, a bound never drops a
 * window whose distance is below the limit. */
#define BOUND_SLACK (1.0 - 1e-12)

static size_t align8(size_t x) { return (x + 7) & ~(size_t)7; }

static int cost_ok(int cost) { return cost == SL_DTW_ABS || cost == SL_DTW_SQUARED; }

static inline double cell_cost(double x, double y, int cost) {
  double d = x - y;
  return cost == SL_DTW_SQUARED ? d * d : fabs(d);
}

static inline double min2(double x, double y) { return y < x ? y : x; }

/* Doubles of scratch dtw_core() needs: three diagonals of na + 2 and b
 * reversed. */
static size_t core_doubles(size_t na, size_t nb) { return 3 * (na + 2) + nb; }

/* d0[k] = cost(x[k], y[k]) + min(d2[k], d1[k], d1[k + 1]) for k < n. */
static void diag_abs(double *restrict d0, const double *restrict d1, const double *restrict d2,
                     const double *restrict x, const double *restrict y, size_t n) {
  size_t k = 0;
#if defined(__SSE2__)
  const __m128d sign = _mm_set1_pd(-0.0);
  for (; k + 2 <= n; k += 2) {
    __m128d c = _mm_andnot_pd(sign, _mm_sub_pd(_mm_loadu_pd(x + k), _mm_loadu_pd(y + k)));
    __m128d m = _mm_min_pd(_mm_loadu_pd(d1 + k), _mm_loadu_pd(d1 + k + 1));
    m = _mm_min_pd(_mm_loadu_pd(d2 + k), m);
    _mm_storeu_pd(d0 + k, _mm_add_pd(c, m));
  }
#endif
  for (; k < n; k++) d0[k] = fabs(x[k] - y[k]) + min2(d2[k], min2(d1[k], d1[k + 1]));
}

static void diag_sq(double *restrict d0, const double *restrict d1, const double *restrict d2,
                    const double *restrict x, const double *restrict y, size_t n) {
  size_t k = 0;
#if defined(__SSE2__)
  for (; k + 2 <= n; k += 2) {
    __m128d t = _mm_sub_pd(_mm_loadu_pd(x + k), _mm_loadu_pd(y + k));
    __m128d m = _mm_min_pd(_mm_loadu_pd(d1 + k), _mm_loadu_pd(d1 + k + 1));
    m = _mm_min_pd(_mm_loadu_pd(d2 + k), m);
    _mm_storeu_pd(d0 + k, _mm_add_pd(_mm_mul_pd(t, t), m));
  }
#endif
  for (; k < n; k++) {
    double t = x[k] - y[k];
    d0[k] = t * t + min2(d2[k], min2(d1[k], d1[k + 1]));
  }
}

#ifdef HAVE_AVX2_PATH
/* The same two loops, four cells per instruction, compiled for AVX2 and
 * used only when the CPU reports it (the rest of the library stays at the
 * x86-64 baseline). */
__attribute__((target("avx2"))) static void diag_abs_avx2(double *restrict d0,
                                                          const double *restrict d1,
                                                          const double *restrict d2,
                                                          const double *restrict x,
                                                          const double *restrict y, size_t n) {
  size_t k = 0;
  const __m256d sign = _mm256_set1_pd(-0.0);
  for (; k + 4 <= n; k += 4) {
    __m256d c =
        _mm256_andnot_pd(sign, _mm256_sub_pd(_mm256_loadu_pd(x + k), _mm256_loadu_pd(y + k)));
    __m256d m = _mm256_min_pd(_mm256_loadu_pd(d1 + k), _mm256_loadu_pd(d1 + k + 1));
    m = _mm256_min_pd(_mm256_loadu_pd(d2 + k), m);
    _mm256_storeu_pd(d0 + k, _mm256_add_pd(c, m));
  }
  for (; k < n; k++) d0[k] = fabs(x[k] - y[k]) + min2(d2[k], min2(d1[k], d1[k + 1]));
}

__attribute__((target("avx2"))) static void diag_sq_avx2(double *restrict d0,
                                                         const double *restrict d1,
                                                         const double *restrict d2,
                                                         const double *restrict x,
                                                         const double *restrict y, size_t n) {
  size_t k = 0;
  for (; k + 4 <= n; k += 4) {
    __m256d t = _mm256_sub_pd(_mm256_loadu_pd(x + k), _mm256_loadu_pd(y + k));
    __m256d m = _mm256_min_pd(_mm256_loadu_pd(d1 + k), _mm256_loadu_pd(d1 + k + 1));
    m = _mm256_min_pd(_mm256_loadu_pd(d2 + k), m);
    _mm256_storeu_pd(d0 + k, _mm256_add_pd(_mm256_mul_pd(t, t), m));
  }
  for (; k < n; k++) {
    double t = x[k] - y[k];
    d0[k] = t * t + min2(d2[k], min2(d1[k], d1[k + 1]));
  }
}
#endif

typedef void (*diag_fn)(double *restrict, const double *restrict, const double *restrict,
                        const double *restrict, const double *restrict, size_t);

/* Least D(i, .) + cb[i + 1] over rows lo..hi of a diagonal buffer. */
static double diag_bound(const double *dg, const double *cb, size_t lo, size_t hi) {
  double m = INFINITY;
  for (size_t i = lo; i <= hi; i++) {
    double v = dg[i + 1] + (cb ? cb[i + 1] : 0.0);
    m = min2(m, v);
  }
  return m;
}

/* Banded DTW of a[0..na) and b[0..nb) (both non-empty, r >= |na - nb|)
 * with diagonal kernel diag.  Returns the distance if it is below limit,
 * else INFINITY.  cb, when not
 * NULL, holds na + 1 lower bounds: cb[i] for the cost still to come in rows
 * i..na-1 (cb[na] = 0).  w holds core_doubles(na, nb) doubles. */
static inline __attribute__((always_inline)) double core_impl(
    const double *a, size_t na, const double *b, size_t nb, size_t r, int cost, double limit,
    const double *cb, double *w, diag_fn diag) {
  size_t stride = na + 2;
  double *d0 = w, *d1 = w + stride, *d2 = w + 2 * stride, *br = w + 3 * stride;
  for (size_t k = 0; k < nb; k++) br[k] = b[nb - 1 - k];
  for (size_t k = 0; k < 3 * stride; k++) w[k] = INFINITY;
  if (r > na + nb) r = na + nb;
  size_t last = na + nb - 2, plo = 0, phi = 0;
  int abandon = limit < INFINITY;
  for (size_t d = 0; d <= last; d++) {
    double *t = d2;
    d2 = d1;
    d1 = d0;
    d0 = t;
    /* Rows of diagonal d inside the matrix and the band. */
    size_t lo = d > r ? (d - r + 1) / 2 : 0;
    if (d + 1 > nb && d + 1 - nb > lo) lo = d + 1 - nb;
    size_t hi = (d + r) / 2;
    if (hi > d) hi = d;
    if (hi > na - 1) hi = na - 1;
    if (d == 0) {
      d0[1] = cell_cost(a[0], b[0], cost);
    } else {
      diag(d0 + lo + 1, d1 + lo, d2 + lo, a + lo, br + (nb - 1 - d + lo), hi - lo + 1);
    }
    d0[lo] = INFINITY;
    d0[hi + 2] = INFINITY;
    if (abandon && d % ABANDON_EVERY == 0 && d > 0 && d < last) {
      double m = min2(diag_bound(d0, cb, lo, hi), diag_bound(d1, cb, plo, phi));
      if (m * BOUND_SLACK >= limit) return INFINITY;
    }
    plo = lo;
    phi = hi;
  }
  double res = d0[na];
  return res < limit ? res : INFINITY;
}

/* core_impl() instantiated with each diagonal kernel inlined: an indirect
 * call per diagonal costs as much as the cells of a narrow band. */
static double core_base(const double *a, size_t na, const double *b, size_t nb, size_t r,
                        int cost, double limit, const double *cb, double *w) {
  if (cost == SL_DTW_SQUARED) return core_impl(a, na, b, nb, r, cost, limit, cb, w, diag_sq);
  return core_impl(a, na, b, nb, r, cost, limit, cb, w, diag_abs);
}

#ifdef HAVE_AVX2_PATH
__attribute__((target("avx2"))) static double core_avx2(const double *a, size_t na,
                                                        const double *b, size_t nb, size_t r,
                                                        int cost, double limit,
                                                        const double *cb, double *w) {
  if (cost == SL_DTW_SQUARED)
    return core_impl(a, na, b, nb, r, cost, limit, cb, w, diag_sq_avx2);
  return core_impl(a, na, b, nb, r, cost, limit, cb, w, diag_abs_avx2);
}
#endif

/* Banded DTW (see core_impl) with the widest kernel this CPU runs.  AVX2
 * code does not fuse the multiply and add (no FMA), so both paths give the
 * same bits. */
static double dtw_core(const double *a, size_t na, const double *b, size_t nb, size_t r,
                       int cost, double limit, const double *cb, double *w) {
#ifdef HAVE_AVX2_PATH
  if (__builtin_cpu_supports("avx2")) return core_avx2(a, na, b, nb, r, cost, limit, cb, w);
#endif
  return core_base(a, na, b, nb, r, cost, limit, cb, w);
}

static size_t band_for(size_t band, size_t na, size_t nb) {
  size_t diff = na > nb ? na - nb : nb - na;
  return band < diff ? diff : band;
}

size_t sl_dtw_work_size(size_t na, size_t nb) { return core_doubles(na, nb) * sizeof(double); }

int sl_dtw_distance(const double *a, size_t na, const double *b, size_t nb, size_t band,
                    int cost, double abandon_at, void *work, size_t work_size, double *out) {
  if (out == NULL || !cost_ok(cost) || (a == NULL && na) || (b == NULL && nb)) return SL_AN_EINVAL;
  if (na == 0 || nb == 0) {
    *out = na == nb ? 0.0 : INFINITY;
    if (*out >= abandon_at) *out = INFINITY;
    return 0;
  }
  if (work == NULL || ((uintptr_t)work & 7) != 0) return SL_AN_EINVAL;
  if (work_size < sl_dtw_work_size(na, nb)) return SL_AN_ETOOBIG;
  *out = dtw_core(a, na, b, nb, band_for(band, na, nb), cost, abandon_at, NULL, work);
  return 0;
}

static inline double min3(double x, double y, double z) { return min2(x, min2(y, z)); }

static double lb_kim(const double *a, size_t na, const double *b, size_t nb, int cost) {
  double lb = cell_cost(a[0], b[0], cost);
  if (na > 1 || nb > 1) lb += cell_cost(a[na - 1], b[nb - 1], cost);
  if (na >= 4 && nb >= 4) {
    /* Every path leaves (0, 0) through one of its three neighbours and
     * enters the last cell from one of its three; with four or more samples
     * those six cells are distinct from each other and from the corners. */
    lb += min3(cell_cost(a[1], b[0], cost), cell_cost(a[0], b[1], cost),
               cell_cost(a[1], b[1], cost));
    lb += min3(cell_cost(a[na - 2], b[nb - 1], cost), cell_cost(a[na - 1], b[nb - 2], cost),
               cell_cost(a[na - 2], b[nb - 2], cost));
  }
  return lb;
}

int sl_dtw_lb_kim(const double *a, size_t na, const double *b, size_t nb, int cost,
                  double *out) {
  if (out == NULL || !cost_ok(cost) || (a == NULL && na) || (b == NULL && nb)) return SL_AN_EINVAL;
  if (na == 0 || nb == 0) {
    *out = na == nb ? 0.0 : INFINITY;
    return 0;
  }
  *out = lb_kim(a, na, b, nb, cost);
  return 0;
}

/* Capacity of each monotone deque: indices within one window of 2r + 1
 * plus the one being pushed, and never more than n + 1. */
static size_t deque_cap(size_t n, size_t band) {
  size_t r = band < n ? band : n;
  size_t k = 2 * r + 2;
  return k < n + 1 ? k : n + 1;
}

size_t sl_dtw_envelope_work_size(size_t n, size_t band) {
  return 2 * deque_cap(n, band) * sizeof(size_t);
}

/* Lemire's streaming min / max: two deques of indices whose values are
 * decreasing (max) or increasing (min); the front is the extreme of the
 * window, and each index enters and leaves once. */
static void envelope(const double *x, size_t n, size_t band, double *lower, double *upper,
                     size_t *dq) {
  size_t r = band < n ? band : n, cap = deque_cap(n, band);
  size_t *mx = dq, *mn = dq + cap;
  size_t mx_h = 0, mx_n = 0, mn_h = 0, mn_n = 0;
  for (size_t j = 0; j < n + r; j++) {
    if (j < n) {
      double v = x[j];
      while (mx_n > 0 && x[mx[(mx_h + mx_n - 1) % cap]] <= v) mx_n--;
      mx[(mx_h + mx_n++) % cap] = j;
      while (mn_n > 0 && x[mn[(mn_h + mn_n - 1) % cap]] >= v) mn_n--;
      mn[(mn_h + mn_n++) % cap] = j;
    }
    if (j < r) continue;
    size_t i = j - r;
    while (mx[mx_h] + r < i) {
      mx_h = (mx_h + 1) % cap;
      mx_n--;
    }
    while (mn[mn_h] + r < i) {
      mn_h = (mn_h + 1) % cap;
      mn_n--;
    }
    upper[i] = x[mx[mx_h]];
    lower[i] = x[mn[mn_h]];
  }
}

int sl_dtw_envelope(const double *x, size_t n, size_t band, double *lower, double *upper,
                    void *work, size_t work_size) {
  if (n == 0) return 0;
  if (x == NULL || lower == NULL || upper == NULL || work == NULL ||
      ((uintptr_t)work & 7) != 0)
    return SL_AN_EINVAL;
  if (work_size < sl_dtw_envelope_work_size(n, band)) return SL_AN_ETOOBIG;
  envelope(x, n, band, lower, upper, work);
  return 0;
}

/* LB_Keogh of c against (lower, upper), stopping at abandon_at; when terms
 * is not NULL, terms[i] receives position i's share (only for the
 * positions summed before stopping). */
static double keogh(const double *c, size_t n, const double *lower, const double *upper,
                    int cost, double abandon_at, double *terms) {
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    double x = c[i], t = 0.0;
    if (x > upper[i]) t = cell_cost(x, upper[i], cost);
    else if (x < lower[i]) t = cell_cost(x, lower[i], cost);
    if (terms) terms[i] = t;
    sum += t;
    if (sum >= abandon_at) break;
  }
  return sum;
}

int sl_dtw_lb_keogh(const double *c, size_t n, const double *lower, const double *upper,
                    int cost, double abandon_at, double *out) {
  if (out == NULL || !cost_ok(cost)) return SL_AN_EINVAL;
  if (n > 0 && (c == NULL || lower == NULL || upper == NULL)) return SL_AN_EINVAL;
  *out = keogh(c, n, lower, upper, cost, abandon_at, NULL);
  return 0;
}

/* cb[i] = terms[i] + ... + terms[m - 1], cb[m] = 0. */
static void suffix_sums(const double *terms, size_t m, double *cb) {
  cb[m] = 0.0;
  for (size_t i = m; i-- > 0;) cb[i] = cb[i + 1] + terms[i];
}

/* Scratch of a search, in doubles, then the deques. */
typedef struct {
  size_t qlo, qup, slo, sup, t1, t2, cb, core, dq, total;
} search_layout_t;

static void search_layout(size_t m, size_t n, size_t band, search_layout_t *l) {
  size_t off = 0;
  l->qlo = off;
  off += m;
  l->qup = off;
  off += m;
  l->slo = off;
  off += n;
  l->sup = off;
  off += n;
  l->t1 = off;
  off += m;
  l->t2 = off;
  off += m;
  l->cb = off;
  off += m + 1;
  l->core = off;
  off += core_doubles(m, m);
  l->dq = off * sizeof(double);
  size_t e1 = sl_dtw_envelope_work_size(m, band), e2 = sl_dtw_envelope_work_size(n, band);
  l->total = l->dq + align8(e1 > e2 ? e1 : e2);
}

size_t sl_dtw_search_work_size(size_t m, size_t n, size_t band) {
  search_layout_t l;
  search_layout(m, n, band, &l);
  return l.total;
}

int sl_dtw_search(const double *q, size_t m, const double *s, size_t n, size_t band, int cost,
                  void *work, size_t work_size, sl_dtw_match_t *best) {
  if (best == NULL || q == NULL || m == 0 || !cost_ok(cost) || (s == NULL && n))
    return SL_AN_EINVAL;
  memset(best, 0, sizeof *best);
  best->dist = INFINITY;
  if (n < m) return 0;
  if (work == NULL || ((uintptr_t)work & 7) != 0) return SL_AN_EINVAL;
  search_layout_t l;
  search_layout(m, n, band, &l);
  if (work_size < l.total) return SL_AN_ETOOBIG;
  double *w = work;
  double *qlo = w + l.qlo, *qup = w + l.qup, *slo = w + l.slo, *sup = w + l.sup;
  double *t1 = w + l.t1, *t2 = w + l.t2, *cb = w + l.cb, *core = w + l.core;
  size_t *dq = (size_t *)((char *)work + l.dq);
  size_t r = band < m ? band : m;
  envelope(q, m, r, qlo, qup, dq);
  envelope(s, n, r, slo, sup, dq);
  double bsf = INFINITY;
  best->windows = n - m + 1;
  for (size_t k = 0; k + m <= n; k++) {
    const double *c = s + k;
    if (lb_kim(q, m, c, m, cost) * BOUND_SLACK >= bsf) {
      best->pruned_kim++;
      continue;
    }
    double lb1 = keogh(c, m, qlo, qup, cost, bsf / BOUND_SLACK, t1);
    if (lb1 * BOUND_SLACK >= bsf) {
      best->pruned_keogh++;
      continue;
    }
    double lb2 = keogh(q, m, slo + k, sup + k, cost, bsf / BOUND_SLACK, t2);
    if (lb2 * BOUND_SLACK >= bsf) {
      best->pruned_keogh2++;
      continue;
    }
    double d;
    if (lb1 >= lb2) {
      suffix_sums(t1, m, cb);
      d = dtw_core(c, m, q, m, r, cost, bsf, cb, core);
    } else {
      suffix_sums(t2, m, cb);
      d = dtw_core(q, m, c, m, r, cost, bsf, cb, core);
    }
    if (d == INFINITY) {
      best->abandoned++;
      continue;
    }
    best->computed++;
    if (d < bsf) {
      bsf = d;
      best->pos = k;
      best->dist = d;
    }
  }
  return 0;
}

struct sl_dtw_stream_s {
  double *q;        /* m query samples */
  double *qlo;      /* query envelope, lower */
  double *qup;      /* query envelope, upper */
  double *ring;     /* 2m: sample s at s mod m and s mod m + m */
  double *terms;    /* m LB_Keogh terms of the window */
  double *cb;       /* m + 1 suffix sums of terms */
  double *core;     /* DTW scratch */
  size_t m;         /* query length */
  size_t r;         /* band, at most m */
  int cost;
  double threshold; /* report only distances below this */
  uint64_t n;       /* samples pushed */
  int heap;         /* made by sl_dtw_stream_new() */
};

typedef struct {
  size_t q, qlo, qup, ring, terms, cb, core, dq, total;
} stream_layout_t;

static void stream_layout(size_t m, size_t band, stream_layout_t *l) {
  size_t off = align8(sizeof(sl_dtw_stream_t)) / sizeof(double);
  l->q = off;
  off += m;
  l->qlo = off;
  off += m;
  l->qup = off;
  off += m;
  l->ring = off;
  off += 2 * m;
  l->terms = off;
  off += m;
  l->cb = off;
  off += m + 1;
  l->core = off;
  off += core_doubles(m, m);
  l->dq = off * sizeof(double);
  l->total = l->dq + align8(sl_dtw_envelope_work_size(m, band));
}

size_t sl_dtw_stream_size(size_t m, size_t band) {
  if (m == 0) return 0;
  stream_layout_t l;
  stream_layout(m, band, &l);
  return l.total;
}

void sl_dtw_stream_reset(sl_dtw_stream_t *s) {
  if (s != NULL) s->n = 0;
}

int sl_dtw_stream_init(void *mem, size_t size, const double *q, size_t m, size_t band, int cost,
                       double threshold, sl_dtw_stream_t **out) {
  if (mem == NULL || out == NULL || q == NULL || m == 0 || !cost_ok(cost) ||
      ((uintptr_t)mem & 7) != 0 || isnan(threshold))
    return SL_AN_EINVAL;
  stream_layout_t l;
  stream_layout(m, band, &l);
  if (size < l.total) return SL_AN_ETOOBIG;
  sl_dtw_stream_t *s = mem;
  double *w = mem;
  memset(s, 0, sizeof *s);
  s->q = w + l.q;
  s->qlo = w + l.qlo;
  s->qup = w + l.qup;
  s->ring = w + l.ring;
  s->terms = w + l.terms;
  s->cb = w + l.cb;
  s->core = w + l.core;
  s->m = m;
  s->r = band < m ? band : m;
  s->cost = cost;
  s->threshold = threshold;
  memcpy(s->q, q, m * sizeof *q);
  envelope(s->q, m, s->r, s->qlo, s->qup, (size_t *)((char *)mem + l.dq));
  *out = s;
  return 0;
}

int sl_dtw_stream_new(const double *q, size_t m, size_t band, int cost, double threshold,
                      sl_dtw_stream_t **out) {
  if (out == NULL) return SL_AN_EINVAL;
  size_t size = sl_dtw_stream_size(m, band);
  if (size == 0) return SL_AN_EINVAL;
  void *mem = malloc(size);
  if (mem == NULL) return SL_AN_ENOMEM;
  int rc = sl_dtw_stream_init(mem, size, q, m, band, cost, threshold, out);
  if (rc != 0) {
    free(mem);
    return rc;
  }
  (*out)->heap = 1;
  return 0;
}

void sl_dtw_stream_free(sl_dtw_stream_t *s) {
  if (s != NULL && s->heap) free(s);
}

int sl_dtw_stream_push(sl_dtw_stream_t *s, double x, double *dist) {
  if (s == NULL || dist == NULL) return SL_AN_EINVAL;
  size_t m = s->m, slot = (size_t)(s->n % m);
  s->ring[slot] = x;
  s->ring[slot + m] = x;
  s->n++;
  *dist = INFINITY;
  if (s->n < m) return 0;
  const double *win = s->ring + (size_t)(s->n % m);
  double thr = s->threshold;
  if (lb_kim(win, m, s->q, m, s->cost) * BOUND_SLACK >= thr) return 0;
  if (keogh(win, m, s->qlo, s->qup, s->cost, thr / BOUND_SLACK, s->terms) * BOUND_SLACK >= thr)
    return 0;
  suffix_sums(s->terms, m, s->cb);
  *dist = dtw_core(win, m, s->q, m, s->r, s->cost, thr, s->cb, s->core);
  return 0;
}
