/* limits.h: the limits job, which moves each endpoint's concurrency limit.
 *
 * Every limits.interval_ms the job looks at every endpoint: what happened
 * in the interval (attempts, streams ended, the engine's 429s and 503s,
 * timeouts, TTFT from dispatch in the endpoint's sketch, inter-token gaps
 * from its ring) becomes a snapshot (runtime/lua/limit_ffi.h) for the
 * current generation's limit rule, whose answer C keeps in [min, max].
 * Then each pool's drain rate (for Retry-After) is updated, slow clients
 * are put to the rule, and, when a limit rose, the admission queues are
 * kicked.  One call per endpoint per interval, never per request or token.
 */
#ifndef SL_LIMITS_H
#define SL_LIMITS_H

#include "runtime/gateway/gateway.h"

/* Starts the job on gw's loop (gw->limits_timer). */
void sl_limits_start(sl_gateway_t *gw);
/* One round, as the timer runs it (interval_ms since the last); exposed for
 * tests and the admin console.  Returns how many limits moved. */
int sl_limits_round(sl_gateway_t *gw, double interval_ms);
/* Fills s with ep's snapshot of the interval (without touching it). */
void sl_limits_snapshot(const sl_gateway_t *gw, const sl_endpoint_t *ep, double interval_ms, sl_qsketch_t *itl,
                        sl_ffi_limit_stats_t *s);

#endif
