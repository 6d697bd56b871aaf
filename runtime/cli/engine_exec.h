/* engine_exec.h: `sluice engine-exec`, the wrapper a managed engine starts
 * through (runtime/gateway/engines.h), so that it dies with sluice. */
#ifndef SL_CLI_ENGINE_EXEC_H
#define SL_CLI_ENGINE_EXEC_H

/* `sluice engine-exec PID -- COMMAND [ARGS...]` (argv[0] is "engine-exec"):
 * asks the kernel to SIGKILL this process when its parent dies
 * (PR_SET_PDEATHSIG), exits with 1 if its parent is already not PID (sluice
 * died between the fork and here), then execs COMMAND, which keeps the pid
 * and the death signal.  Returns only on failure: 2 for usage, 127 when
 * COMMAND cannot be run (said on stderr). */
int sl_engine_exec_main(int argc, char **argv);

#endif
