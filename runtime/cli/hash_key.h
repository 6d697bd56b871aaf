/* hash_key.h: `sluice hash-key`, the digest of an API key as a tenant's
 * "keys" entry wants it (runtime/tenant/tenant.h). */
#ifndef SL_CLI_HASH_KEY_H
#define SL_CLI_HASH_KEY_H

/* `sluice hash-key [KEY]` (argv[0] is "hash-key"): prints "sha256:<hex>"
 * of KEY, or of stdin when KEY is absent (one trailing newline dropped).
 * Returns the exit status: 0 printed, 1 an empty or unreadable key, 2 usage. */
int sl_hash_key_main(int argc, char **argv);

#endif
