/* errors.c: names for error codes. */
#include "runtime/base/errors.h"

#include <uv.h>

const char *sl_strerror(int code) {
  switch (code) {
    case SL_OK: return "ok";
    case SL_EINVAL: return "invalid argument";
    case SL_ENOMEM: return "out of memory";
    case SL_ETOOBIG: return "limit exceeded";
    case SL_EPARSE: return "malformed input";
    case SL_ENOTFOUND: return "not found";
    case SL_EAGAIN: return "needs more input";
    case SL_EUPSTREAM: return "upstream failed";
    case SL_ETIMEDOUT: return "timed out";
    case SL_ECANCELED: return "canceled";
    default: return code < 0 && code > -1000 ? uv_strerror(code) : "unknown error";
  }
}
