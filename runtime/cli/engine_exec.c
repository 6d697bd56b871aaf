/* engine_exec.c: `sluice engine-exec` (see engine_exec.h).
 *
 * uv_spawn gives no hook between fork and exec, so the death signal cannot
 * be set in the child the gateway forks; this wrapper is that hook.  It
 * runs no loop and allocates nothing: set the signal, check the parent,
 * exec.  The death signal is kept across execve (not for set-user-ID
 * programs) and sent when the thread that forked it ends, which for
 * `sluice serve` is the loop's thread, the main one. */
#include "runtime/cli/engine_exec.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int sl_engine_exec_main(int argc, char **argv) {
  if (argc < 4 || strcmp(argv[2], "--") != 0) {
    fprintf(stderr, "usage: sluice engine-exec PARENT_PID -- COMMAND [ARGS...]\n"
                    "  (how sluice starts a managed engine so it dies with sluice; see docs/engines.md)\n");
    return 2;
  }
  char *end;
  long parent = strtol(argv[1], &end, 10);
  if (*end != '\0' || parent <= 1) {
    fprintf(stderr, "sluice engine-exec: bad parent pid \"%s\"\n", argv[1]);
    return 2;
  }
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
    fprintf(stderr, "sluice engine-exec: PR_SET_PDEATHSIG: %s\n", strerror(errno));
    return 1;
  }
  /* Set after the parent may have died already: then no signal comes, and
   * the orphan must not start an engine no one will stop. */
  if ((long)getppid() != parent) return 1;
  execvp(argv[3], argv + 3);
  fprintf(stderr, "sluice engine-exec: cannot run %s: %s\n", argv[3], strerror(errno));
  return 127;
}
