/* watchdog.h: notices a loop that stopped turning, says why, and ends it.
 *
 * The instruction budget (lua_budget.h) stops Lua code, but not a C call
 * that blocks: a policy's FFI call that sleeps, a pattern match over a huge
 * string, a bug of ours.  A stuck loop answers nothing, not even SIGTERM.
 * The watchdog is a thread beside the loop.  A loop timer stamps the time
 * every warn_ms / 4; the thread wakes as often and looks at the stamp.  Past
 * warn_ms without a stamp it logs that the loop is stuck and what runs in
 * Lua (phase, file, stream; from lua_budget.h), once per stall; past
 * abort_ms it logs that it ends the process and exits with status
 * SL_WATCHDOG_EXIT, so a supervisor restarts sluice instead of leaving a
 * silent hang.  When the loop turns again after a warning, the loop logs
 * how long it was stuck and counts the stall (watchdog_stalls).
 *
 * The timer is unreferenced, so it never keeps the loop alive; a loop that
 * is idle in epoll still runs its timer, so idle is never taken for stuck.
 */
#ifndef SL_WATCHDOG_H
#define SL_WATCHDOG_H

#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "runtime/base/counters.h"

#define SL_WATCHDOG_EXIT 70 /* EX_SOFTWARE */

typedef struct sl_watchdog_s sl_watchdog_t;

/* Starts watching loop, which must run on the calling thread: warn past
 * warn_ms, exit past abort_ms (0 = never; otherwise at least warn_ms),
 * lines to log, stalls counted in counters (may be NULL).  The stamp starts now, so the
 * time before uv_run counts (a policy stuck while the first generation
 * loads is caught too).  Returns 0 with *out, or a negative libuv code
 * (nothing is left running then).  warn_ms 0 is refused with UV_EINVAL. */
int sl_watchdog_start(sl_watchdog_t **out, uv_loop_t *loop, uint64_t warn_ms, uint64_t abort_ms, FILE *log,
                      sl_counters_t *counters);

/* Closes the timer; cb (may be NULL) runs with ud once the loop has closed
 * it, and then sl_watchdog_free may follow.  Close it last, so the watchdog
 * watches the whole shutdown.  NULL is a no-op. */
void sl_watchdog_close(sl_watchdog_t *w, void (*cb)(void *ud), void *ud);

/* Stops and joins the thread and frees w (after sl_watchdog_close and the
 * loop's run).  NULL is a no-op. */
void sl_watchdog_free(sl_watchdog_t *w);

#endif
