/* restart.h: what the two process supervisors of sluice share.
 *
 * sluice restarts processes in two places: the supervisor of "workers"
 * (runtime/cli/supervise.c) restarts a worker that died, and the gateway
 * restarts a local engine it runs (runtime/gateway/engines.c).  Both wait
 * before a restart with the same rule, and both say how a process ended in
 * the same words; those two pieces are here, as plain functions over
 * numbers, so neither copies the other.
 */
#ifndef SL_RESTART_H
#define SL_RESTART_H

#include <stddef.h>
#include <stdint.h>

/* The delay before the next restart: base after the first death, or after
 * a process that stayed up at least reset_ms (its last delay forgotten);
 * else the last delay doubled, at most max_ms.  last_ms is the delay used
 * before the previous restart (0: none yet), up_ms how long the process
 * that died ran.  Returns the delay in milliseconds. */
uint64_t sl_restart_delay(uint64_t last_ms, uint64_t up_ms, uint64_t base_ms, uint64_t max_ms, uint64_t reset_ms);

/* The delay after a restart that failed at once (it could not even be
 * spawned): the last one doubled, at most max_ms, at least base_ms. */
uint64_t sl_restart_delay_again(uint64_t last_ms, uint64_t base_ms, uint64_t max_ms);

/* Writes how a process ended into out[0..cap): "killed by signal 9" when
 * sig is not 0, else "exit status N".  out is always NUL-terminated. */
void sl_restart_describe_exit(char *out, size_t cap, int64_t status, int sig);

#endif
