/* dtw.h: dynamic time warping over numeric series, with lower bounds.
 *
 * For series such as inter-token times or token log-probabilities: the DTW
 * distance under a Sakoe-Chiba band (cells with |i - j| <= band), with an
 * absolute or squared per-cell cost; the LB_Kim and LB_Keogh lower bounds;
 * early abandoning once a distance cannot stay under a limit; and a
 * sliding-window search for the window of a series closest to a query,
 * which prunes with the bounds (cheapest first) before computing any DTW.
 * An incremental form (sl_dtw_stream_t) takes samples one at a time and
 * reports the distance between the query and the newest window.
 *
 * The distance is the sum of the costs along the best warping path from
 * (0, 0) to (na - 1, nb - 1) with steps (1,0), (0,1), (1,1); with the
 * squared cost it is that sum, not its square root.  The band is widened to
 * |na - nb| when narrower, so a path always exists; SL_DTW_NO_BAND leaves
 * the alignment unconstrained.  The DP runs along anti-diagonals, whose
 * cells do not depend on each other, two cells per SSE2 instruction or four
 * per AVX2 instruction when the CPU has AVX2.
 *
 * Memory: every function works in caller-provided scratch sized by a
 * *_work_size() query (bytes, 8-byte aligned) or, for the stream, in memory
 * from sl_dtw_stream_size(); nothing here allocates except
 * sl_dtw_stream_new().  Errors are the negative SL_AN_E* codes of
 * analyzers/status.h.  Inputs must be finite (no NaN or infinity).
 */
#ifndef SL_DTW_H
#define SL_DTW_H

#include <stddef.h>
#include <stdint.h>

#include "analyzers/status.h"

/* Per-cell cost. */
enum {
  SL_DTW_ABS = 0,    /* |x - y| */
  SL_DTW_SQUARED = 1 /* (x - y)^2 */
};

/* A band wide enough never to constrain the path. */
#define SL_DTW_NO_BAND ((size_t)-1)

/* Bytes of scratch sl_dtw_distance() needs for series of na and nb
 * samples. */
size_t sl_dtw_work_size(size_t na, size_t nb);

/* DTW distance between a[0..na) and b[0..nb) within the band.  Sets *out to
 * the distance when it is below abandon_at, else to INFINITY (pass INFINITY
 * never to abandon); the computation stops as soon as every path is known
 * to reach abandon_at.  Both series empty: 0; one empty: INFINITY.
 * Returns 0; SL_AN_EINVAL for a bad cost, NULL pointers (a series may be NULL
 * when its length is 0) or misaligned work; SL_AN_ETOOBIG when work_size is
 * below sl_dtw_work_size(na, nb).  Only work is written. */
int sl_dtw_distance(const double *a, size_t na, const double *b, size_t nb, size_t band,
                    int cost, double abandon_at, void *work, size_t work_size, double *out);

/* LB_Kim (first and last cells, and the cheapest of the three cells next to
 * each; O(1)): a lower bound on the DTW distance of a and b under any band.
 * Sets *out; 0 for two empty series and INFINITY for one.  Returns 0 or
 * SL_AN_EINVAL. */
int sl_dtw_lb_kim(const double *a, size_t na, const double *b, size_t nb, int cost,
                  double *out);

/* Bytes of scratch sl_dtw_envelope() needs for n samples and this band. */
size_t sl_dtw_envelope_work_size(size_t n, size_t band);

/* The band envelope of x[0..n): lower[i] = min and upper[i] = max of
 * x[i - band .. i + band] (clipped to the series), in O(n) (Lemire's
 * streaming min / max).  Writes lower[0..n) and upper[0..n), which the
 * caller owns.  Returns 0; SL_AN_EINVAL for NULL pointers or misaligned work;
 * SL_AN_ETOOBIG when work_size is too small. */
int sl_dtw_envelope(const double *x, size_t n, size_t band, double *lower, double *upper,
                    void *work, size_t work_size);

/* LB_Keogh: the cost of c[0..n) against the envelope (lower, upper) of
 * another series of n samples computed with the same band, a lower bound on
 * their banded DTW distance.  Summing stops once the sum reaches abandon_at
 * (then *out >= abandon_at).  Returns 0 or SL_AN_EINVAL. */
int sl_dtw_lb_keogh(const double *c, size_t n, const double *lower, const double *upper,
                    int cost, double abandon_at, double *out);

/* Result of a search. */
typedef struct {
  size_t pos;             /* start of the closest window (0 if none) */
  double dist;            /* its DTW distance; INFINITY when n < m */
  uint64_t windows;       /* windows considered: n - m + 1 */
  uint64_t pruned_kim;    /* windows dropped by LB_Kim */
  uint64_t pruned_keogh;  /* dropped by LB_Keogh of the window against the
                             query's envelope */
  uint64_t pruned_keogh2; /* dropped by LB_Keogh of the query against the
                             series' envelope */
  uint64_t abandoned;     /* DTW started and abandoned */
  uint64_t computed;      /* DTW computed to the end */
} sl_dtw_match_t;

/* Bytes of scratch sl_dtw_search() needs for a query of m samples in a
 * series of n. */
size_t sl_dtw_search_work_size(size_t m, size_t n, size_t band);

/* Finds the window s[pos .. pos + m) with the smallest DTW distance to
 * q[0..m) (the first one on ties).  Same result as computing every window's
 * distance; the bounds and early abandoning only skip work.  m must be at
 * least 1.  Fills *best; returns 0; SL_AN_EINVAL for bad arguments;
 * SL_AN_ETOOBIG when work_size is too small. */
int sl_dtw_search(const double *q, size_t m, const double *s, size_t n, size_t band, int cost,
                  void *work, size_t work_size, sl_dtw_match_t *best);

/* Incremental search: a fixed query against the newest m samples of a
 * stream.  Opaque. */
typedef struct sl_dtw_stream_s sl_dtw_stream_t;

/* Bytes sl_dtw_stream_init() needs for a query of m samples. */
size_t sl_dtw_stream_size(size_t m, size_t band);

/* Places a stream in mem (8-byte aligned, size bytes) for query q[0..m)
 * (copied), band, cost and threshold: a push reports the distance of the
 * newest window only when it is below threshold (INFINITY: always).
 * Returns 0 and sets *out; SL_AN_EINVAL for bad arguments (m must be >= 1);
 * SL_AN_ETOOBIG if size is too small.  The caller keeps owning mem. */
int sl_dtw_stream_init(void *mem, size_t size, const double *q, size_t m, size_t band, int cost,
                       double threshold, sl_dtw_stream_t **out);

/* Like sl_dtw_stream_init() with memory from malloc (SL_AN_ENOMEM if that
 * fails).  Free with sl_dtw_stream_free(). */
int sl_dtw_stream_new(const double *q, size_t m, size_t band, int cost, double threshold,
                      sl_dtw_stream_t **out);

/* Frees a stream made by sl_dtw_stream_new(); NULL is ignored. */
void sl_dtw_stream_free(sl_dtw_stream_t *s);

/* Appends sample x and sets *dist to the DTW distance between the query and
 * the newest m samples if it is below the threshold, else (or while fewer
 * than m samples have arrived) to INFINITY.  Never allocates.  Returns 0, or
 * SL_AN_EINVAL for NULL arguments. */
int sl_dtw_stream_push(sl_dtw_stream_t *s, double x, double *dist);

/* Forgets the samples, keeping query and settings. */
void sl_dtw_stream_reset(sl_dtw_stream_t *s);

#endif
