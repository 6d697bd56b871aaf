/* hash_key.c: `sluice hash-key` (see hash_key.h).  The hashing itself is
 * the tenant layer's (sl_tenant_hash_key), the same the gateway uses to
 * check a request's key. */
#include "runtime/cli/hash_key.h"

#include <stdio.h>
#include <string.h>

#include "runtime/tenant/tenant.h"

/* The longest key read from stdin; API keys are tens of bytes. */
#define SL__KEY_MAX 4096

static void sl__hash_key_usage(FILE *f) {
  fprintf(f,
          "usage: sluice hash-key [KEY]\n"
          "  Prints the SHA-256 digest of an API key as a tenant's \"keys\" entry takes it\n"
          "  (\"sha256:<64 hex>\"), so the key itself never sits in the config.  Without\n"
          "  KEY the key is read from stdin (one trailing newline is dropped), which keeps\n"
          "  it out of the shell's history and the process list:\n"
          "    printf %%s \"$KEY\" | sluice hash-key\n");
}

int sl_hash_key_main(int argc, char **argv) {
  const char *arg = NULL;
  int options_done = 0;
  for (int i = 1; i < argc; i++) {
    if (!options_done && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
      sl__hash_key_usage(stdout);
      return 0;
    }
    if (!options_done && strcmp(argv[i], "--") == 0) {
      options_done = 1;
    } else if (arg == NULL) {
      arg = argv[i];
    } else {
      sl__hash_key_usage(stderr);
      return 2;
    }
  }
  char buf[SL__KEY_MAX + 2];
  const char *key = arg;
  size_t len = arg ? strlen(arg) : 0;
  if (arg == NULL) {
    len = fread(buf, 1, sizeof(buf), stdin);
    if (ferror(stdin)) {
      fprintf(stderr, "sluice hash-key: cannot read the key from stdin\n");
      return 1;
    }
    if (len > 0 && buf[len - 1] == '\n') len--;
    if (len > SL__KEY_MAX) {
      fprintf(stderr, "sluice hash-key: the key on stdin is longer than %d bytes\n", SL__KEY_MAX);
      return 1;
    }
    key = buf;
  }
  if (len == 0) {
    fprintf(stderr, "sluice hash-key: the key is empty\n");
    return 1;
  }
  char out[72];
  sl_tenant_hash_key(key, len, out);
  memset(buf, 0, sizeof(buf));
  if (out[0] == '\0') {
    fprintf(stderr, "sluice hash-key: libcrypto could not compute SHA-256\n");
    return 1;
  }
  printf("%s\n", out);
  return 0;
}
