/* shlimit.h: limits shared by every process and instance through Redis.
 *
 * A shared window is one Redis key that every sluice process counts into
 * with a Lua script loaded once (SCRIPT LOAD, then EVALSHA):
 *
 *   window   a fixed window: the key holds the count and gets its expiry
 *            (the window's length) when the first count creates it; later
 *            counts leave the expiry alone.  Used for requests_per_minute
 *            and tokens_per_day.
 *   gcra     the generic cell rate algorithm: the key holds the theoretical
 *            arrival time (TAT, ms on Redis's clock); a count of n moves it
 *            n x period/limit ms later, never before now.  What the bucket
 *            holds is (TAT - now) / (period/limit) units, draining at
 *            limit/period; the key expires when the bucket is empty.  Used
 *            for tokens_per_minute: a rate, smoother than a window.
 * Both scripts answer what the key holds after the count, and how long the
 * window has left (window) or 0 (gcra).
 *
 * Reads never wait on Redis.  Each process keeps, per window, what Redis
 * said last (base, and when), and what it has counted since that Redis has
 * not confirmed (pending: not sent yet; in flight: sent, not answered).  A
 * check is local arithmetic on those: used = base (aged: an ended window
 * holds 0, a gcra bucket drains) + in flight + pending.  Counts are sent
 * batched: one script call in flight per window; what arrives meanwhile
 * goes with the next call, sent when the answer comes.
 *
 * The over-admission bound.  A process may hold at most `batch` admitted
 * units unconfirmed (one request larger than batch only when it holds
 * none); past that, the check says SL_EAGAIN, as when Redis is down, and
 * the caller applies the limit's fail mode.  Then, with N processes
 * counting into one window of limit L, everything admitted in the window
 * is at most
 *
 *     L + (N - 1) x max(batch, largest single request)
 *
 * whatever the timing: the process whose confirmed count is the newest saw
 * everything confirmed before it and admitted only up to L on top, and
 * each other process can have admitted at most its unconfirmed allowance
 * that this process had not seen.  docs/scaling.md derives it;
 * tests/e2e/e2e_shared.c asserts it.  (Returned tokens, a stream settling
 * below its reservation, only lower the count.)
 *
 * While Redis is down (or past the allowance), counts are not queued: what
 * the caller admits then is its own business (fail open: the tenant's local
 * windows; fail closed: refused), and is never replayed later.
 *
 * Single-threaded: one set belongs to one loop.
 */
#ifndef SL_SHLIMIT_H
#define SL_SHLIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/shared/redis.h"

typedef enum { SL_SHL_WINDOW = 0, SL_SHL_GCRA = 1 } sl_shl_kind_t;

typedef struct sl_shlimits_s sl_shlimits_t;
typedef struct sl_shwin_s sl_shwin_t;

typedef struct {
  uint64_t flushes;          /* script calls sent */
  uint64_t confirmed;        /* answered */
  uint64_t lost;             /* script calls that failed (timeout, broken connection, error reply) */
  uint64_t dropped_units;    /* units counted while Redis was down or lost in failed calls */
  uint64_t over_allowance;   /* checks refused because `batch` units were unconfirmed */
} sl_shlimits_stats_t;

/* A set of shared windows on client r (registers the two scripts).
 * Returns 0 or SL_ENOMEM. */
int sl_shlimits_new(sl_shlimits_t **out, sl_redis_t *r);

/* Frees the set and its windows.  Call it once r has been closed (its
 * pending calls are answered with SL_ECANCELED during sl_redis_close and
 * touch the windows). */
void sl_shlimits_free(sl_shlimits_t *s);

void sl_shlimits_stats(const sl_shlimits_t *s, sl_shlimits_stats_t *out);

/* A window on Redis key `key` (copied): limit units per period_ms, at
 * most batch units unconfirmed.  NULL when allocation fails. */
sl_shwin_t *sl_shwin_new(sl_shlimits_t *s, const char *key, sl_shl_kind_t kind, int64_t limit, int64_t period_ms,
                         int64_t batch);

/* Whether need more units fit now.  0: they do (*used is the estimate
 * before them).  SL_ETOOBIG: they do not (*used as above; *retry_ms is
 * when they may: the window's end, or the time the bucket takes to drain
 * enough).  SL_EAGAIN: the shared count cannot be trusted now (Redis is
 * down, or the unconfirmed allowance is spent): apply the fail mode.
 * Changes nothing. */
int sl_shwin_check(sl_shwin_t *w, int64_t need, int64_t *used, int64_t *retry_ms);

/* Counts delta (> 0 admitted, < 0 returned) and sends it when no call is
 * in flight.  Counting while Redis is down drops the units (counted in
 * dropped_units). */
void sl_shwin_add(sl_shwin_t *w, int64_t delta);

/* 1 when nothing of w's is pending or in flight (Redis has confirmed all
 * it counted, or the rest was dropped). */
int sl_shwin_idle(const sl_shwin_t *w);

/* Milliseconds on the clock the windows use (the monotonic clock). */
uint64_t sl_shlimits_now(void);

#endif
