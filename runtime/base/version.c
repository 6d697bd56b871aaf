/* version.c: version queries, callable through the FFI. */
#include "runtime/base/version.h"

const char *sl_ffi_version(void) { return SL_VERSION; }
int sl_ffi_abi_version(void) { return SL_FFI_ABI_VERSION; }
