/* serve.h: `sluice serve`: builds a gateway from a configuration and runs
 * it until SIGINT/SIGTERM drain it.
 *
 * Drain: the listener closes, new requests on open connections get 503,
 * streams in flight run to their end until drain_timeout_ms, then the rest
 * are cut with an error event; everything is closed and the process exits 0.
 * A second signal cuts at once.
 */
#ifndef SL_SERVE_H
#define SL_SERVE_H

/* The `sluice serve` command; argv[0] is "serve".  Returns the exit status:
 * 0 after a drain or --help, 2 for bad options or configuration, 1 when it
 * could not start (e.g. the port is taken). */
int sl_serve_main(int argc, char **argv);

#endif
