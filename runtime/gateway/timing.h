/* timing.h: the timing dynamics of every endpoint, classified off the loop.
 *
 * The relay records the gap between consecutive tokens of each stream in
 * its endpoint's ring (sl_endpoint_gap, runtime/upstream/registry.h).  This
 * job wakes every dynamics.interval_ms on the loop and, for each endpoint
 * whose ring holds at least dynamics.min_samples gaps of which at least a
 * quarter of min_samples arrived since its last run, copies the ring (oldest
 * first, up to SL_DYN_RING gaps) into a buffer of its own and classifies it
 * on the libuv thread pool: the gaps are clipped to their 1st and 99th
 * percentiles (a hiccup of the loop is not the engine's), then go to
 * sl_dyn_classify (analyzers/dynamics.h) with one sample per token.  The
 * completion, back on the loop, stores the verdict in ep->dyn, where /health,
 * attach and the placement context read it.
 *
 * At most one classification per endpoint is in flight.  Each endpoint's
 * series buffer and workspace are allocated when its first run starts and
 * kept until the job closes; a run allocates nothing.  The worker thread
 * touches only that endpoint's buffers, which the loop does not touch
 * while the run is in flight.  Times are uv_hrtime nanoseconds unless a
 * name says _ms.
 */
#ifndef SL_TIMING_H
#define SL_TIMING_H

#include <stdio.h>
#include <uv.h>

#include "runtime/base/config.h"
#include "runtime/upstream/registry.h"

typedef struct sl_timing_s sl_timing_t;

/* Starts the job on loop over reg's endpoints with cfg's dynamics.* keys
 * (cfg and reg must outlive the job).  A change of an endpoint's class is
 * logged on log (may be NULL).  Returns 0 with *out, or a libuv error from
 * the timer (nothing is left open then). */
int sl_timing_start(sl_timing_t **out, uv_loop_t *loop, sl_registry_t *reg, const sl_config_t *cfg, FILE *log);

/* Runs one pass now, as the timer does (tests call it to decide when):
 * starts a classification for every endpoint that is due.  Returns the
 * number started; 0 once the job is closing. */
int sl_timing_run(sl_timing_t *t);

/* Classifications in flight now. */
int sl_timing_inflight(const sl_timing_t *t);

/* Stops the job: cancels the classifications still queued, waits for the
 * ones already running (their results are dropped), closes the timer and
 * frees everything; cb(ud) (may be NULL) runs once all that is done, from
 * a loop callback.  The registry must stay alive until then.  The job must
 * not be used afterwards. */
void sl_timing_close(sl_timing_t *t, void (*cb)(void *ud), void *ud);

#endif
