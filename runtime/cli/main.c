/* main.c: the sluice command line: dispatches to serve, sim-engine, check,
 * replay, repl, attach, top, hash-key, or prints help and version. */
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/ops/attach_client.h"
#include "runtime/cli/serve.h"
#include "runtime/cli/check.h"
#include "runtime/cli/replay.h"
#include "runtime/cli/engine_exec.h"
#include "runtime/cli/hash_key.h"
#include "runtime/ops/repl.h"
#include "runtime/cli/sim.h"
#include "runtime/cli/top.h"

static void sl__usage(FILE *f) {
  fprintf(f,
          "sluice %s: a streaming runtime for LLM token streams\n"
          "\n"
          "usage:\n"
          "  sluice serve [--config FILE] [--listen HOST:PORT] [--admin-socket PATH] [--log-json]\n"
          "      Serve the OpenAI-compatible API (default 127.0.0.1:8080).  Without\n"
          "      --config, the compiled-in default serves a pool of two simulated\n"
          "      engines running in-process on loopback ports.  With \"workers\": N (or\n"
          "      \"auto\") in the config, a supervisor runs N worker processes on the port\n"
          "      and restarts any that dies; admin socket P is the supervisor's, P.I worker I's.\n"
          "  sluice serve --print-default-config\n"
          "      Print the compiled-in configuration (a starting point for a file).\n"
          "  sluice check POLICY.lua | --config FILE\n"
          "      Load a placement or narration policy (or a config's policies) as the daemon\n"
          "      would, run each phase on sample inputs under the instruction budget; on\n"
          "      error print file:line and exit 1.\n"
          "  sluice repl\n"
          "      A LuaJIT prompt with the sluice library loaded (reads stdin; scripts may be piped).\n"
          "  sluice attach [-e CHUNK]... [--worker I] [SOCKET]\n"
          "      A Lua prompt inside the running daemon over its admin socket (default\n"
          "      $SLUICE_ADMIN_SOCKET, else " SL_ATTACH_DEFAULT_SOCKET "); see docs/attach.md.  With\n"
          "      workers, --worker I attaches to worker I (SOCKET.I).\n"
          "  sluice replay FILE [--pipeline FILE|none] [--guards FILE] [--timing fast|original]\n"
          "      Run a recorded stream (transcripts.dir) through a pipeline and the guards,\n"
          "      offline; print every action and verdict (see docs/tenants.md).\n"
          "  sluice top [--url http://127.0.0.1:8080] [--interval-ms 1000] [--once]\n"
          "      A live view of a running daemon from its /metrics: streams, queues, tokens/s,\n"
          "      TTFT and inter-token percentiles per endpoint, outcomes, guards, rejections.\n"
          "  sluice hash-key [KEY]\n"
          "      Print the \"sha256:<hex>\" digest of an API key for a tenant's \"keys\" (reads\n"
          "      stdin without KEY, one trailing newline dropped).\n"
          "  sluice sim-engine [--listen HOST:PORT] [options]\n"
          "      Run the simulated engine on its own (see sluice sim-engine --help).\n"
          "  sluice engine-exec PID -- COMMAND [ARGS...]\n"
          "      How serve starts a managed engine: exec COMMAND so that it dies with\n"
          "      process PID (docs/engines.md, \"Local engines\").\n"
          "  sluice --help | --version\n",
          SL_VERSION);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    sl__usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    sl__usage(stdout);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("sluice %s\n", SL_VERSION);
    return 0;
  }
  if (strcmp(cmd, "serve") == 0) return sl_serve_main(argc - 1, argv + 1);
  if (strcmp(cmd, "sim-engine") == 0) return sl_sim_engine_cli(argc - 1, argv + 1);
  if (strcmp(cmd, "check") == 0) return sl_policy_check_main(argc - 1, argv + 1);
  if (strcmp(cmd, "repl") == 0) return sl_repl_main(argc - 1, argv + 1);
  if (strcmp(cmd, "attach") == 0) return sl_attach_client_main(argc - 1, argv + 1);
  if (strcmp(cmd, "replay") == 0) return sl_replay_main(argc - 1, argv + 1);
  if (strcmp(cmd, "top") == 0) return sl_top_main(argc - 1, argv + 1);
  if (strcmp(cmd, "hash-key") == 0) return sl_hash_key_main(argc - 1, argv + 1);
  if (strcmp(cmd, "engine-exec") == 0) return sl_engine_exec_main(argc - 1, argv + 1);
  fprintf(stderr, "sluice: unknown command '%s'\n\n", cmd);
  sl__usage(stderr);
  return 2;
}
