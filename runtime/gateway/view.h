/* view.h: the instance view, what N worker processes of one sluice
 * instance publish so that any of them answers /metrics and /health for
 * the whole instance.
 *
 * With `workers: N` a supervisor spawns N worker processes, each a full
 * gateway on its own loop, all accepting on one port; a scrape lands on one
 * of them.  The view is one memfd the supervisor makes (sl_view_create) and
 * every worker maps MAP_SHARED: a header, one slot per worker (index 1..N)
 * and a "retired" slot (index 0).
 *
 * Publishing.  A worker publishes its counters array (counters.h), its
 * streams in flight, its pid, the time (CLOCK_MONOTONIC) and its rendered
 * exposition (sl_metrics_render) into its slot: once at open, every
 * SL_VIEW_PERIOD_MS on an unref'd loop timer, at drain end and at close,
 * and before it answers /metrics or /health itself, so the answer is never
 * older than what an earlier answer showed (counters never go backwards
 * between scrapes).  A text longer than SL_VIEW_TEXT_MAX is not published:
 * the slot says how long it was and the merge says so in a comment.
 *
 * Consistency.  Each slot holds two copies, each under a seqlock (an odd
 * sequence while written; C11 atomics on the shared mapping): the writer
 * fills the copy that is not current, then makes it current, so a reader
 * copying the current one rarely meets the writer, and a worker killed
 * mid-write leaves its previous copy intact.  Readers copy and re-check,
 * SL_VIEW_READ_TRIES times at most (a slot they cannot read is left out
 * and the answer says so).  A retirement moves a dead worker's totals
 * into the retired slot under the header's own sequence, so a reader sees
 * them in one place or the other, never both or neither.
 *
 * Merging /metrics.  The answering worker's fresh exposition, every other
 * published slot's and the retired slot's are merged: a sample with the
 * same name and label set is summed, except in the families of
 * sl_view_max_families, where the largest value is kept because a sum
 * would be wrong: sluice_build_info (1 per version), sluice_uptime_seconds
 * (the oldest worker's), sluice_generation (ids, per worker),
 * sluice_stream_memory_budget_bytes (the configured per-worker budget),
 * sluice_stream_pinned_bytes_peak (a peak), sluice_endpoint_ready (1 when
 * some worker sees the endpoint ready).  Everything else sums, gauges
 * included (streams, connections, queue lengths, memory in use,
 * generations_live, and sluice_endpoint_limit, whose per-worker shares add
 * up to the instance's limit).  HELP and TYPE come once per family, in the
 * order of the answering worker's exposition; a family or sample only
 * other workers have is still written (a family after the answering
 * worker's, a sample at the end of its family).  Then the instance's own
 * series: sluice_workers (N) and sluice_worker_up{worker="I"} (1 when slot
 * I was published within SL_VIEW_UP_PERIODS periods).
 *
 * Retiring.  When a worker dies, the supervisor calls sl_view_retire before
 * the replacement starts: the dead worker's last published totals (every
 * counter of kind "total", every counter family such as the labelled
 * _total series, every histogram's buckets, _sum and _count) are added into
 * the retired slot, its gauges are dropped, and its slot is cleared; so the
 * instance's counters never go backwards because a worker died.  (Series
 * only the dead worker had, such as a simulated engine's per-worker
 * address, live on in the retired slot.)
 *
 * /health.  Every standalone key stays.  "counters" holds the instance's
 * sums (gauges summed, except stream_pinned_bytes_peak: max) and
 * "counters_scope" says "instance" ("worker" in the unlikely case that no
 * consistent read was had); "worker" is who answered, "nworkers" N, and
 * "workers" lists each worker: index, published, up, pid,
 * published_age_ms, streams_in_flight.  The other top-level figures
 * (streams_in_flight, connections, ...), the verdict, "admission" and each
 * pool with its endpoints stay the answering worker's own and say so
 * ("scope": "worker" at the top level, on "admission" and on each pool).
 *
 * Endpoint shares.  With nworkers = N > 1 each worker enforces
 * ceil(x / N) of every endpoint's slots, adaptive limit and its bounds (at
 * least 1; upstream/registry.h sl_registry_share), so the N workers
 * together stay within an engine's slots, over by at most N - 1 when slots
 * is not a multiple of N.  /health shows the share ("slots") and the
 * configured figure ("slots_configured").
 *
 * Uses base (counters, prom_parse) and the gateway's metrics renderer.
 */
#ifndef SL_VIEW_H
#define SL_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/counters.h"

struct sl_gateway_s;

#define SL_VIEW_TEXT_MAX (2u << 20) /* bytes of exposition a slot's copy holds */
#define SL_VIEW_PERIOD_MS 200       /* how often a worker publishes */
#define SL_VIEW_UP_PERIODS 5        /* a worker is up while its last publication is younger than this many periods */
#define SL_VIEW_READ_TRIES 200      /* a reader's tries at one consistent copy */
#define SL_VIEW_MAX_WORKERS 256     /* the most workers a view holds (sparse, but 4 MiB of address space a slot) */

/* The families merged with max instead of sum (see above), NULL-ended. */
extern const char *const sl_view_max_families[];

typedef struct sl_view_s sl_view_t;

/* One worker as the view sees it. */
typedef struct {
  int worker;            /* 1..N */
  int published;         /* 1 once its slot holds a publication */
  int up;                /* published within SL_VIEW_UP_PERIODS periods */
  int pid;               /* its process id (0 before its first publication) */
  double age_ms;         /* since its last publication */
  int streams_in_flight; /* as published */
  int task_port;         /* its private loopback port for task requests other workers relay (0: none) */
} sl_view_worker_t;

/* The supervisor's: makes the view for nworkers workers (a memfd, sized,
 * sparse until written).  Returns 0 with *fd (the caller owns it and
 * passes it to the workers), or < 0 with the reason in err: SL_EINVAL for
 * nworkers outside 1..SL_VIEW_MAX_WORKERS, -errno (libuv's UV_E* on
 * Linux) when memfd_create, ftruncate or mmap fail. */
int sl_view_create(int nworkers, int *fd, char *err, size_t errlen);

/* The supervisor's, after worker `worker` died and before its replacement
 * starts: adds its last published totals into the retired slot, returns
 * its last published streams_active gauge in *streams_lost (may be NULL),
 * and clears its slot.  Returns 0 (also when the slot was never
 * published: nothing moves, *streams_lost 0), SL_EINVAL for a bad fd,
 * view or worker, or a negative code when the view cannot be mapped. */
int sl_view_retire(int fd, int worker, uint64_t *streams_lost);

/* A worker's: maps the view in fd as worker `worker` (1..N).  Returns 0
 * with *out (free with sl_view_detach), or < 0 with the reason in err. */
int sl_view_attach(int fd, int worker, sl_view_t **out, char *err, size_t errlen);

/* Unmaps and frees v (NULL: nothing).  The slot keeps its last
 * publication for the supervisor to retire. */
void sl_view_detach(sl_view_t *v);

/* The view's worker count (N). */
int sl_view_nworkers(const sl_view_t *v);

/* Publishes counters c, streams in flight and text[0..len) into v's slot.
 * Returns 0 (a text over SL_VIEW_TEXT_MAX is published as its length only),
 * never blocks: the slot has one writer. */
int sl_view_publish(sl_view_t *v, const sl_counters_t *c, int streams_in_flight, const char *text, size_t len);

/* The private loopback port this worker publishes from now on (its task
 * listener, gateway/task_proxy.h), so that a sibling that receives a
 * request for one of its tasks can relay it there. */
void sl_view_set_task_port(sl_view_t *v, int port);

/* Renders gw's exposition, publishes it with gw's counters into gw's slot,
 * and returns the text (malloc'd, free with sl_free; *len bytes) when text
 * is non-NULL.  A gateway without a view: nothing is published, and text
 * (when asked) is its own exposition. */
void sl_view_publish_gateway(struct sl_gateway_s *gw, char **text, size_t *len);

/* The instance's counters into *sum (gauges summed, stream_pinned_bytes_peak
 * max; the retired slot's totals added) and each worker into w[0..cap)
 * (cap >= N to see them all).  Returns the number of workers written, or
 * SL_EAGAIN when no consistent read was had (then *sum holds what was
 * read). */
int sl_view_instance(sl_view_t *v, sl_counters_t *sum, sl_view_worker_t *w, int cap);

/* Workers retired so far (each one a restart) and the streams they had in
 * flight when they died (/health worker_restarts, worker_streams_lost;
 * /metrics sluice_worker_restarts_total, sluice_worker_streams_lost_total). */
void sl_view_losses(const sl_view_t *v, uint64_t *restarts, uint64_t *lost);

/* The instance's exposition: own[0..ownlen) (the answering worker's fresh
 * render, standing for its slot) merged with every other slot as described
 * above.  Returns a malloc'd text (free with sl_free) of *len bytes; never
 * NULL (what cannot be read is left out and a comment says so). */
char *sl_view_metrics(sl_view_t *v, const char *own, size_t ownlen, size_t *len);

/* The merge itself, for tests and the retirement: texts[0..n) merged as
 * above, texts[0] giving the order.  totals_only keeps only counter and
 * histogram families.  Returns a malloc'd text of *len bytes; a text that
 * does not parse is skipped with a comment. */
char *sl_view_merge(const char *const *texts, const size_t *lens, int n, int totals_only, size_t *len);

#endif
