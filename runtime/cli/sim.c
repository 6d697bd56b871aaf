/* sim.c: the `sluice sim-engine` command (see sim.h). */
#include "runtime/cli/sim.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/sim/sim_engine.h"

static const char sl__usage[] =
    "usage: sluice sim-engine [--listen HOST:PORT] [options]\n"
    "\n"
    "Runs the simulated OpenAI-compatible engine until SIGINT or SIGTERM.\n"
    "\n"
    "  --listen HOST:PORT          address to bind (default 127.0.0.1:8000; port 0 picks one)\n"
    "  --slots N                   requests generating at once; more wait in FIFO order (4)\n"
    "  --ttft-ms MS                base time to first token (50)\n"
    "  --prefill-us-per-char US    added to TTFT per prompt character (10)\n"
    "  --itl-ms MS                 mean inter-token gap; 0 = as fast as the socket takes (20)\n"
    "  --itl-jitter F              relative jitter, gaps uniform in itl*(1 +- F), 0..1 (0.2)\n"
    "  --itl-wave P,A              gaps follow itl*(1 + A*sin(2 pi k / P)) for token k; P >= 2, 0 <= A < 1 (off)\n"
    "  --max-tokens N              tokens when a request sets no max_tokens (64)\n"
    "  --seed N                    base seed for text and timing (1)\n"
    "  --model NAME                a served model id; repeatable; \"*\" accepts any (sim)\n"
    "  --stamp                     stamp every token with its send time, [t=<uv_hrtime ns>]\n"
    "  --start-delay-ms MS         wait this long before listening, as an engine loading its model does (0)\n"
    "  --help                      this text\n"
    "\n"
    "Per-request headers: x-sim-seed, x-sim-tokens, x-sim-ttft-ms, x-sim-itl-ms,\n"
    "x-sim-stamp, x-sim-fault (stall | reset | garbage | garbage-end | slow-start |\n"
    "status:NNN | error-event | close), x-sim-fault-at, x-sim-delay-ms, x-sim-split,\n"
    "x-sim-split-delay-ms.  Endpoints: POST /v1/chat/completions, POST /v1/completions,\n"
    "GET /v1/models, GET /health, GET /sim/stats, POST /sim/control.  See docs/sim-engine.md.\n";

typedef struct {
  uv_signal_t sigint, sigterm;
  sl_sim_engine_t *engine;
  int stopping;
} sl_sim_cli_t;

static void sl__cli_on_signal(uv_signal_t *h, int signum) {
  sl_sim_cli_t *cli = h->data;
  (void)signum;
  if (cli->stopping) return;
  cli->stopping = 1;
  sl_sim_engine_close(cli->engine, NULL, NULL);
  uv_close((uv_handle_t *)&cli->sigint, NULL);
  uv_close((uv_handle_t *)&cli->sigterm, NULL);
}

static int sl__cli_num(const char *opt, const char *val, double lo, double hi, int integer, double *out) {
  char *end;
  errno = 0;
  double d = strtod(val, &end);
  if (*val == '\0' || *end != '\0' || errno != 0 || !(d >= lo && d <= hi) || (integer && d != floor(d))) {
    fprintf(stderr, "sim-engine: bad value for %s: %s\n", opt, val);
    return -1;
  }
  *out = d;
  return 0;
}

int sl_sim_engine_cli(int argc, char **argv) {
  int rc = sl_alloc_init();
  if (rc < 0) {
    fprintf(stderr, "sim-engine: allocator: %s\n", sl_strerror(rc));
    return 1;
  }
  sl_sim_config_t cfg;
  sl_sim_config_default(&cfg);
  int models_given = 0;
  uint64_t start_delay_ms = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(sl__usage, stdout);
      return 0;
    }
    if (strcmp(a, "--stamp") == 0) {
      cfg.stamp = 1;
      continue;
    }
    /* Every other option takes a value, as "--opt value" or "--opt=value". */
    char name[64];
    const char *val;
    const char *eq = strchr(a, '=');
    if (strncmp(a, "--", 2) == 0 && eq != NULL && (size_t)(eq - a) < sizeof(name)) {
      memcpy(name, a, (size_t)(eq - a));
      name[eq - a] = '\0';
      val = eq + 1;
    } else {
      snprintf(name, sizeof(name), "%s", a);
      if (i + 1 >= argc) {
        fprintf(stderr, "sim-engine: %s needs a value (see --help)\n", a);
        return 2;
      }
      val = argv[++i];
    }
    double d;
    if (strcmp(name, "--listen") == 0) {
      if (sl_sim_config_set_listen(&cfg, val) < 0) {
        fprintf(stderr, "sim-engine: bad --listen %s (want HOST:PORT)\n", val);
        return 2;
      }
    } else if (strcmp(name, "--slots") == 0) {
      if (sl__cli_num(name, val, 1, 1000000, 1, &d) < 0) return 2;
      cfg.slots = (int)d;
    } else if (strcmp(name, "--ttft-ms") == 0) {
      if (sl__cli_num(name, val, 0, 3.6e6, 0, &d) < 0) return 2;
      cfg.ttft_ms = d;
    } else if (strcmp(name, "--prefill-us-per-char") == 0) {
      if (sl__cli_num(name, val, 0, 1e6, 0, &d) < 0) return 2;
      cfg.prefill_us_per_char = d;
    } else if (strcmp(name, "--itl-ms") == 0) {
      if (sl__cli_num(name, val, 0, 3.6e6, 0, &d) < 0) return 2;
      cfg.itl_ms = d;
    } else if (strcmp(name, "--itl-jitter") == 0) {
      if (sl__cli_num(name, val, 0, 1, 0, &d) < 0) return 2;
      cfg.itl_jitter = d;
    } else if (strcmp(name, "--itl-wave") == 0) {
      char *end;
      errno = 0;
      double period = strtod(val, &end), amp = -1;
      if (end != val && *end == ',') {
        const char *a2 = end + 1;
        amp = strtod(a2, &end);
        if (end == a2) amp = -1; /* "16," has no amplitude */
      }
      if (errno != 0 || *end != '\0' || !(period >= 2 && period <= 1e6) || !(amp >= 0 && amp < 1)) {
        fprintf(stderr, "sim-engine: bad value for --itl-wave: %s (want PERIOD,AMPLITUDE: PERIOD >= 2 tokens, "
                        "0 <= AMPLITUDE < 1)\n", val);
        return 2;
      }
      cfg.itl_wave_period = period;
      cfg.itl_wave_amp = amp;
    } else if (strcmp(name, "--max-tokens") == 0) {
      if (sl__cli_num(name, val, 0, 100000000, 1, &d) < 0) return 2;
      cfg.max_tokens = (int)d;
    } else if (strcmp(name, "--seed") == 0) {
      char *end;
      errno = 0;
      unsigned long long s = strtoull(val, &end, 10);
      if (*val == '\0' || *val == '-' || *end != '\0' || errno != 0) {
        fprintf(stderr, "sim-engine: bad value for --seed: %s\n", val);
        return 2;
      }
      cfg.seed = s;
    } else if (strcmp(name, "--start-delay-ms") == 0) {
      if (sl__cli_num(name, val, 0, 3.6e6, 1, &d) < 0) return 2;
      start_delay_ms = (uint64_t)d;
    } else if (strcmp(name, "--model") == 0) {
      if (!models_given) cfg.nmodels = 0;
      models_given = 1;
      if (cfg.nmodels == SL_SIM_MAX_MODELS || val[0] == '\0' || strlen(val) >= SL_SIM_MODEL_MAX) {
        fprintf(stderr, "sim-engine: bad --model %s (at most %d names of 1 to %d bytes)\n", val,
                SL_SIM_MAX_MODELS, SL_SIM_MODEL_MAX - 1);
        return 2;
      }
      snprintf(cfg.models[cfg.nmodels++], SL_SIM_MODEL_MAX, "%s", val);
    } else {
      fprintf(stderr, "sim-engine: unknown option %s (see --help)\n", name);
      return 2;
    }
  }

  /* A real engine loads its model before it listens: connections are
   * refused until then (a signal meanwhile ends the process as usual). */
  if (start_delay_ms > 0) {
    fprintf(stderr, "sim-engine: starting in %llu ms\n", (unsigned long long)start_delay_ms);
    fflush(stderr);
    uv_sleep((unsigned)start_delay_ms);
  }
  /* A peer that closes mid-write must not kill the process. */
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  rc = uv_loop_init(&loop);
  if (rc < 0) {
    fprintf(stderr, "sim-engine: %s\n", sl_strerror(rc));
    return 1;
  }
  sl_sim_cli_t cli;
  memset(&cli, 0, sizeof(cli));
  rc = sl_sim_engine_start(&cli.engine, &loop, &cfg);
  if (rc < 0) {
    fprintf(stderr, "sim-engine: cannot listen on %s:%d: %s\n", cfg.host, cfg.port, sl_strerror(rc));
    uv_run(&loop, UV_RUN_DEFAULT); /* lets the failed listener's close finish */
    uv_loop_close(&loop);
    return 1;
  }
  uv_signal_init(&loop, &cli.sigint);
  uv_signal_init(&loop, &cli.sigterm);
  cli.sigint.data = &cli;
  cli.sigterm.data = &cli;
  uv_signal_start(&cli.sigint, sl__cli_on_signal, SIGINT);
  uv_signal_start(&cli.sigterm, sl__cli_on_signal, SIGTERM);
  int v6 = strchr(cfg.host, ':') != NULL;
  fprintf(stderr, "sim-engine listening on %s%s%s:%d\n", v6 ? "[" : "", cfg.host, v6 ? "]" : "",
          sl_sim_engine_port(cli.engine));
  fflush(stderr);
  uv_run(&loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&loop);
  if (rc < 0) {
    fprintf(stderr, "sim-engine: loop still busy at exit: %s\n", sl_strerror(rc));
    return 1;
  }
  return 0;
}
