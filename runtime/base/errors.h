/* errors.h: sluice's error codes, one set for C and (mirrored) for Lua.
 *
 * Functions return 0 on success or a negative SL_E* code.  libuv codes
 * (UV_E*) pass through unchanged where a libuv call failed; they are also
 * negative and sl_strerror() names both kinds.
 */
#ifndef SL_ERRORS_H
#define SL_ERRORS_H

#define SL_OK 0
#define SL_EINVAL (-1001)    /* invalid argument or value */
#define SL_ENOMEM (-1002)    /* allocation failed */
#define SL_ETOOBIG (-1003)   /* exceeds a configured limit */
#define SL_EPARSE (-1004)    /* malformed input */
#define SL_ENOTFOUND (-1005) /* no such name */
#define SL_EAGAIN (-1006)    /* needs more input */
#define SL_EUPSTREAM (-1007) /* upstream failed */
#define SL_ETIMEDOUT (-1008) /* a timeout fired */
#define SL_ECANCELED (-1009) /* canceled by the other side */

/* A static string naming code (an SL_E* or a libuv code). */
const char *sl_strerror(int code);

#endif
