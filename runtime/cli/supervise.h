/* supervise.h: the supervisor of `sluice serve` when the configuration
 * says "workers": N with N > 1.
 *
 * The supervisor never opens a gateway, never runs Lua and never accepts
 * HTTP.  It reserves the port (a TCP socket with SO_REUSEPORT bound to
 * host:port and never listened on, so the port stays taken and port 0 is
 * resolved once), makes the instance view (runtime/gateway/view.h), and
 * runs N copies of its own executable as
 *   sluice serve <the user's arguments> --worker I/N --listen HOST:PORT
 *                --view-fd 4 --ready-fd 3
 * each of which listens on that port with SO_REUSEPORT, so the kernel
 * spreads connections over them.  Workers share the supervisor's stdout
 * and stderr and run in their own session (a terminal's Ctrl-C reaches
 * the supervisor only).  A worker says it is listening by writing a line
 * to fd 3; once all have, the supervisor prints its own "listening on"
 * line.
 *
 * It restarts a worker that exits without being asked (a crash, kill -9,
 * the watchdog's abort) after retiring it from the instance view, with an
 * exponential backoff (100 ms doubling to 10 s, back to 100 ms once a
 * worker had stayed up 30 s), and counts restarts and the streams lost.
 * A worker that fails on its first start (a policy that does not load, a
 * port it cannot bind) stops the whole instance with its exit status.
 * SIGHUP is forwarded to every worker (each reloads); SIGTERM or SIGINT
 * sends SIGTERM to every worker (each drains) and exits 0 once all have
 * exited; a second one sends SIGKILL.
 *
 * With an admin socket path P, worker I's admin socket is "P.I" and the
 * supervisor listens on P itself, one command a line, one line a reply
 * (the framing of runtime/ops/admin.h's command mode):
 *   status | workers  one JSON line: the supervisor and every worker
 *                     (index, pid, state, uptime_s, restarts, last_exit),
 *                     total restarts and streams lost
 *   reload            SIGHUP to every worker: "ok: signalled N worker(s)"
 *   lua               "error: supervisor ...": the supervisor has no Lua;
 *                     `sluice attach --worker I` reaches worker I's
 *   help              the command list
 */
#ifndef SL_SUPERVISE_H
#define SL_SUPERVISE_H

#include "runtime/base/config.h"

/* Runs the supervisor until it is stopped.  argc/argv are the `serve`
 * command's own (argv[0] is "serve"), passed on to every worker; cfg is the
 * parsed configuration (with --listen applied) and admin_path the admin
 * socket ("" for none).  Returns the exit status: 0 after a stop, 1 when
 * the port or the view cannot be had, or a worker's exit status when it
 * failed on its first start. */
int sl_supervise_main(int argc, char **argv, const sl_config_t *cfg, const char *admin_path);

#endif
