/* sim.h: the `sluice sim-engine` command, a simulated engine on its own. */
#ifndef SL_CLI_SIM_H
#define SL_CLI_SIM_H

/* The `sluice sim-engine` command: argv[0] is "sim-engine".  Parses the
 * options (see --help), starts an engine on a private loop, prints
 * "sim-engine listening on HOST:PORT" on stderr once bound, and runs until
 * SIGINT or SIGTERM, then closes everything.  Calls sl_alloc_init() first.
 * Returns the process exit status: 0 after a signal or --help, 2 for bad
 * options, 1 when the engine could not start. */
int sl_sim_engine_cli(int argc, char **argv);

#endif
