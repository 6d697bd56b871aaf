/* Temporary: removed once analyzers/ has its own codes. */
#include "runtime/base/errors.h"
