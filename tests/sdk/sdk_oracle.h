/* sdk_oracle.h: the official OpenAI Node SDK as an oracle for C tests.
 *
 * A test that produced SSE bytes (an output stage's re-encoded chunks, a
 * relayed stream) asks the SDK's own stream parser what a client would get:
 *
 *   char *out, *err;
 *   int rc = sl_sdk_parse_sse(bytes, n, 0, &out, &err);
 *
 * runs `node <tests>/sdk/parse_sse.mjs FILE` on the bytes written to a temp
 * file.  rc is parse_sse's exit status: 0 when the SDK read everything, out
 * then holds one JSON line per chunk the SDK yielded; 1 when the SDK raised
 * (err's last line is "parse_sse: <error class>: <message>"); 2 for a bad
 * command line; SL_SDK_SKIP (77) when the SDK is not installed (1 under
 * CI=true); -1 when node could not be run.  piece_bytes > 0 hands the
 * body to the SDK in pieces of that many bytes.  Free out and err.
 *
 * node is $SL_NODE, else "node" from PATH; the scripts are in $SL_SDK_DIR,
 * else SL_TEST_SOURCE_DIR "/sdk" (ctest's programs get SL_TEST_SOURCE_DIR
 * from tests/CMakeLists.txt).  The SDK itself is what tests/sdk/install
 * (run by scripts/setup) put in tests/sdk/node_modules; node finds it from
 * the scripts' own folder, so no module path is needed.
 *
 * Header-only (static inline): include it after test.h where needed.
 */
#ifndef SL_TESTS_SDK_ORACLE_H
#define SL_TESTS_SDK_ORACLE_H

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SL_TEST_SOURCE_DIR
#error "sdk_oracle.h needs SL_TEST_SOURCE_DIR (the tests/ folder), as tests/CMakeLists.txt defines it"
#endif

#define SL_SDK_SKIP 77

extern char **environ;

/* The node binary. */
static inline const char *sl_sdk_node(void) {
  const char *n = getenv("SL_NODE");
  return n != NULL && n[0] != '\0' ? n : "node";
}

/* The folder of parse_sse.mjs and sdk_stream.mjs. */
static inline const char *sl_sdk_dir(void) {
  const char *d = getenv("SL_SDK_DIR");
  return d != NULL && d[0] != '\0' ? d : SL_TEST_SOURCE_DIR "/sdk";
}

/* A whole file as a malloc'd NUL-terminated string (NULL if unreadable). */
static inline char *sl_sdk__slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  size_t got;
  while (buf != NULL && (got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += got;
    if (cap - len - 1 == 0) {
      char *nb = realloc(buf, cap * 2);
      if (nb == NULL) free(buf);
      buf = nb;
      cap *= 2;
    }
  }
  fclose(f);
  if (buf != NULL) buf[len] = '\0';
  return buf;
}

/* A new empty temp file; its path goes into path[cap].  Returns 0 or -1. */
static inline int sl_sdk__temp(char *path, size_t cap, const char *tag) {
  const char *tmp = getenv("TMPDIR");
  snprintf(path, cap, "%s/sluice-sdk-%s.XXXXXX", tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp", tag);
  int fd = mkstemp(path);
  if (fd < 0) return -1;
  close(fd);
  return 0;
}

/* Runs `node <sdk dir>/<script> args...` (args NULL-terminated, at most 30)
 * with stdin from /dev/null; stdout and stderr come back in *out and *err
 * (malloc'd; free them).  Returns the exit status, or -1 if node did not run
 * or died of a signal (then *out and *err may be NULL). */
static inline int sl_sdk_run(const char *script, const char *const *args, char **out, char **err) {
  *out = *err = NULL;
  char out_path[512], err_path[512], script_path[1024];
  if (sl_sdk__temp(out_path, sizeof(out_path), "out") < 0) return -1;
  if (sl_sdk__temp(err_path, sizeof(err_path), "err") < 0) {
    unlink(out_path);
    return -1;
  }
  snprintf(script_path, sizeof(script_path), "%s/%s", sl_sdk_dir(), script);
  char *argv[34];
  int n = 0;
  argv[n++] = (char *)sl_sdk_node();
  argv[n++] = script_path;
  for (int i = 0; args != NULL && args[i] != NULL && n < 33; i++) argv[n++] = (char *)args[i];
  argv[n] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_TRUNC, 0);
  posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_TRUNC, 0);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  int st = 0;
  if (rc == 0) {
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
  } else {
    fprintf(stderr, "sdk_oracle: cannot run %s: %s\n", argv[0], strerror(rc));
  }
  *out = sl_sdk__slurp(out_path);
  *err = sl_sdk__slurp(err_path);
  unlink(out_path);
  unlink(err_path);
  if (rc != 0 || *out == NULL || *err == NULL) return -1;
  if (!WIFEXITED(st)) {
    fprintf(stderr, "sdk_oracle: node %s died (wait status %d); stderr:\n%s\n", script, st, *err);
    return -1;
  }
  return WEXITSTATUS(st);
}

/* Runs parse_sse.mjs on bytes[n] (see the top of this file). */
static inline int sl_sdk_parse_sse(const void *bytes, size_t n, size_t piece_bytes, char **out, char **err) {
  *out = *err = NULL;
  char in_path[512];
  if (sl_sdk__temp(in_path, sizeof(in_path), "sse") < 0) return -1;
  FILE *f = fopen(in_path, "wb");
  int ok = f != NULL && fwrite(bytes, 1, n, f) == n;
  if (f != NULL && fclose(f) != 0) ok = 0;
  if (!ok) {
    unlink(in_path);
    return -1;
  }
  char piece[32];
  snprintf(piece, sizeof(piece), "%zu", piece_bytes);
  const char *with_pieces[] = {"--piece-bytes", piece, in_path, NULL};
  const char *whole[] = {in_path, NULL};
  int rc = sl_sdk_run("parse_sse.mjs", piece_bytes > 0 ? with_pieces : whole, out, err);
  unlink(in_path);
  return rc;
}

#endif
