/* status.h: the return codes of the analyzer kernels.
 *
 * Every analyzers/ function that can fail returns SL_AN_OK (0) or one of the
 * negative SL_AN_E* codes below, with its results in out-parameters.  The
 * kernels depend on libc alone, so they do not include the runtime's
 * errors.h; instead these codes carry deliberately the same numbers as the
 * runtime's SL_E* codes of the same name (SL_AN_EINVAL == SL_EINVAL, and so
 * on).  C and Lua callers therefore see one code space: an analyzer's code
 * can be passed on as a runtime code unchanged and named with sl_strerror(),
 * and the Lua modules compare it against sluice.base's E table.  Keep the two
 * sets equal: a new code here takes the number of its runtime twin, or one
 * the runtime does not use.  Every analyzers/ header includes this one.  Uses
 * no other unit.
 */
#ifndef SL_AN_STATUS_H
#define SL_AN_STATUS_H

#define SL_AN_OK 0                /* success */
#define SL_AN_EINVAL (-1001)      /* invalid argument or value (SL_EINVAL) */
#define SL_AN_ENOMEM (-1002)      /* allocation failed (SL_ENOMEM) */
#define SL_AN_ETOOBIG (-1003)     /* exceeds a limit or a buffer (SL_ETOOBIG) */
#define SL_AN_EPARSE (-1004)      /* malformed input (SL_EPARSE) */
#define SL_AN_ENOTFOUND (-1005)   /* no such name or point (SL_ENOTFOUND) */

#endif
