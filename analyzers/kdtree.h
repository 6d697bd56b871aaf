/* kdtree.h: nearest-neighbour search over delay vectors, with a Theiler window.
 *
 * The dynamics kernels (analyzers/embed.c, analyzers/dynamics.c) need, for
 * every point of a delay embedding, its nearest neighbour that is not close in
 * time: points j with |i - j| <= w are excluded (the Theiler window), since
 * temporally adjacent samples are trivially close and say nothing about the
 * attractor.  This is an implicit k-d tree: a permutation of point indices
 * arranged so that every range [lo, hi) is split at its middle element on the
 * coordinate of largest spread, with small ranges scanned as buckets.  It
 * owns no memory: the points and the workspace belong to the caller and must
 * outlive the tree.  Distances are squared Euclidean, summed over coordinates
 * in index order; ties are broken towards the smaller point index, so a brute
 * scan with the same rule returns exactly the same neighbour.
 */
#ifndef SL_KDTREE_H
#define SL_KDTREE_H

#include <stddef.h>
#include <stdint.h>

#include "analyzers/status.h"

#define SL_KDTREE_MAX_DIM 32 /* largest supported point dimension */
#define SL_KDTREE_NONE ((size_t)-1) /* "no centre": exclude nothing */

typedef struct sl_kdtree_s {
  const double *pts; /* n points, dim doubles each, row-major; caller-owned */
  uint32_t n;        /* number of points */
  unsigned dim;      /* coordinates per point, 1..SL_KDTREE_MAX_DIM */
  uint32_t *idx;     /* n indices into pts, in tree order (workspace) */
  uint8_t *sdim;     /* n split coordinates, one per range middle (workspace) */
} sl_kdtree_t;

/* Bytes of workspace sl_kdtree_build needs for n points. */
size_t sl_kdtree_workspace_size(size_t n);

/* Builds a tree over n points of dim coordinates at pts, in O(n log n).
 * ws must hold sl_kdtree_workspace_size(n) bytes, aligned for uint32_t.
 * Returns 0, or SL_AN_EINVAL for n == 0, n >= 2^32, a dim outside
 * 1..SL_KDTREE_MAX_DIM or a short workspace.  pts and ws stay owned by the
 * caller and must not change while the tree is used. */
int sl_kdtree_build(sl_kdtree_t *t, const double *pts, size_t n, unsigned dim,
                    void *ws, size_t ws_size);

/* Finds the point nearest to q (dim coordinates) among the points j with
 * |j - centre| > exclude; with centre == SL_KDTREE_NONE no point is excluded.
 * hint, unless SL_KDTREE_NONE, is a point likely to be near (for a delay
 * embedding, the successor of the previous vector's neighbour): starting
 * from it prunes most of the tree, and never changes the answer.  On success
 * stores the index in *nn and the squared distance in *d2 and returns 0;
 * returns SL_AN_ENOTFOUND when every point is excluded.  Ties go to the smaller
 * index.  Never allocates; safe to call from several threads. */
int sl_kdtree_nearest(const sl_kdtree_t *t, const double *q, size_t centre, size_t exclude,
                      size_t hint, size_t *nn, double *d2);

#endif
