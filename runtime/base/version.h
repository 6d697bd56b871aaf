/* version.h: the release version and the FFI ABI version.
 *
 * SL_FFI_ABI_VERSION changes whenever a struct or function that Lua reaches
 * through the FFI changes shape; lua/sluice/base.lua carries the same number
 * and refuses to run against a library that reports another one.
 */
#ifndef SL_VERSION_H
#define SL_VERSION_H

#define SL_FFI_ABI_VERSION 5

/* The release version string ("0.1.0"); static storage. */
const char *sl_ffi_version(void);
/* SL_FFI_ABI_VERSION of the library actually loaded. */
int sl_ffi_abi_version(void);

#endif
