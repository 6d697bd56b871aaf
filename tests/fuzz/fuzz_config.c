/* fuzz_config.c: libFuzzer harness for the configuration loader
 * (runtime/base/config.h, sl_config_parse) on arbitrary JSON text.
 *
 * Input: the whole input is the configuration document.  It is parsed
 * from memory (no file, no server started).  Besides what ASan, its leak
 * checker and UBSan catch, the harness aborts when
 *   - a refusal is not SL_EINVAL, or its message is empty or not
 *     NUL-terminated inside the error buffer;
 *   - an accepted document has more pools than SL_MAX_POOLS;
 *   - parsing the same text twice gives different answers.
 *
 * Built by scripts/fuzz (clang, -DSL_FUZZ=ON); seeds in
 * tests/fuzz/corpus/config/ (the repository's example configurations and
 * the compiled-in default, by tests/fuzz/make_seeds.py). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/config.h"
#include "runtime/base/errors.h"

static void fail(const char *what) {
  fprintf(stderr, "fuzz_config: %s\n", what);
  abort();
}

static sl_config_t cfg;

static int parse(const uint8_t *data, size_t size, char *err, size_t errlen) {
  memset(err, 0x5A, errlen);
  int rc = sl_config_parse(&cfg, (const char *)data, size, err, errlen);
  if (rc == 0) {
    if (cfg.npools < 0 || cfg.npools > SL_MAX_POOLS) fail("pool count out of range");
    sl_config_free(&cfg);
    return 0;
  }
  if (rc != SL_EINVAL) fail("a refusal that is not SL_EINVAL");
  if (memchr(err, '\0', errlen) == NULL) fail("the error message is not terminated");
  if (err[0] == '\0') fail("a refusal with an empty message");
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err1[512], err2[512];
  /* The text in a buffer of its own size, with no NUL after it: a reader
   * that runs past len shows under ASan. */
  uint8_t *copy = malloc(size ? size : 1);
  if (size) memcpy(copy, data, size);
  int a = parse(copy, size, err1, sizeof(err1));
  int b = parse(copy, size, err2, sizeof(err2));
  if (a != b || (a != 0 && strcmp(err1, err2) != 0)) fail("two parses of the same text differ");
  free(copy);
  return 0;
}
