/* serve.c: `sluice serve` (see serve.h): arguments, signals, the admin
 * socket; the gateway itself is runtime/sluice.h's. */
#include "runtime/cli/serve.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "runtime/base/config.h"
#include "runtime/base/errors.h"
#include "runtime/gateway/gateway.h"
#include "runtime/ops/admin.h"
#include "sluice.h"

typedef struct {
  uv_loop_t *loop;
  sl_gateway_t *gw;
  sl_admin_t *admin;
  uv_signal_t sigint, sigterm, sighup;
  int stopping;
} sl__serve_t;

static void sl__serve_usage(FILE *f) {
  fprintf(f,
          "usage: sluice serve [--config FILE] [--listen HOST:PORT] [--admin-socket PATH] [--log-json]\n"
          "       sluice serve --print-default-config\n"
          "  --config FILE        JSON configuration (default: the compiled-in simulated pool)\n"
          "  --listen H:P         address to serve on (overrides the config; default 127.0.0.1:8080)\n"
          "  --admin-socket PATH  unix socket (mode 0600) for admin commands: reload, status, lua\n"
          "                       (sluice attach PATH gives a Lua prompt inside the daemon)\n"
          "  --log-json           one JSON object per stream-end log line\n"
          "SIGHUP, a change to the placement policy file, or `reload` on the admin socket\n"
          "builds and validates a new generation of policies and swaps it in.\n");
}

/* Raises the soft descriptor limit to the hard one: a proxy holds two
 * descriptors per stream. */
static void sl__raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static void sl__handle_closed(uv_handle_t *h) { (void)h; }

/* Closes the admin socket, the signals and the gateway; the loop then runs
 * out of handles and uv_run returns. */
static void sl__stop(sl__serve_t *s) {
  if (s->stopping) return;
  s->stopping = 1;
  if (s->admin) {
    sl_admin_close(s->admin, NULL, NULL);
    s->admin = NULL;
  }
  uv_close((uv_handle_t *)&s->sigint, sl__handle_closed);
  uv_close((uv_handle_t *)&s->sigterm, sl__handle_closed);
  uv_close((uv_handle_t *)&s->sighup, sl__handle_closed);
  sl_gateway_close(s->gw, NULL, NULL);
}

static void sl__on_drained(sl_gateway_t *gw, void *ud) {
  (void)gw;
  fprintf(stderr, "sluice: every stream has ended; exiting\n");
  sl__stop(ud);
}

static void sl__on_signal(uv_signal_t *h, int signum) {
  sl__serve_t *s = h->data;
  if (s->gw->draining) {
    fprintf(stderr, "sluice: second signal; stopping now\n");
    sl__stop(s);
    return;
  }
  fprintf(stderr, "sluice: %s: draining %d stream(s), up to %llu ms\n", signum == SIGINT ? "SIGINT" : "SIGTERM",
          sl_gateway_streams(s->gw), (unsigned long long)s->gw->cfg->drain_timeout_ms);
  sl_gateway_drain(s->gw, sl__on_drained, s);
}

static void sl__on_sighup(uv_signal_t *h, int signum) {
  (void)signum;
  sl__serve_t *s = h->data;
  if (s->stopping) return;
  char msg[1536];
  int rc = sl_gateway_reload(s->gw, msg, sizeof(msg));
  fprintf(stderr, "sluice: SIGHUP: %s%s\n", rc == 0 ? "reloaded: " : "", msg);
  fflush(stderr);
}

int sl_serve_main(int argc, char **argv) {
  const char *config_path = NULL, *listen = NULL, *admin = NULL;
  int log_json = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      config_path = argv[++i];
    } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
      listen = argv[++i];
    } else if (strcmp(argv[i], "--admin-socket") == 0 && i + 1 < argc) {
      admin = argv[++i];
    } else if (strcmp(argv[i], "--log-json") == 0) {
      log_json = 1;
    } else if (strcmp(argv[i], "--print-default-config") == 0) {
      fputs(sl_config_default_json(), stdout);
      return 0;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      sl__serve_usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "sluice serve: unknown or incomplete option '%s'\n", argv[i]);
      sl__serve_usage(stderr);
      return 2;
    }
  }
  sl_init(); /* before any other libuv call */
  signal(SIGPIPE, SIG_IGN);
  sl__raise_nofile();

  sl__serve_t s;
  memset(&s, 0, sizeof(s));
  s.loop = uv_default_loop();
  sl_gateway_options_t opt = {.config_path = config_path, .listen = listen, .log = stderr, .log_json = log_json};
  char err[2048];
  int rc = sl_gateway_open(&s.gw, s.loop, &opt, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "sluice: %s%s\n", rc == SL_EINVAL ? "bad configuration: " : "", err);
    uv_run(s.loop, UV_RUN_DEFAULT); /* lets what did start close */
    uv_loop_close(s.loop);
    return rc == SL_EINVAL ? 2 : 1;
  }
  const char *admin_path = admin ? admin : s.gw->cfg->admin_socket;
  if (admin_path[0]) {
    int arc = sl_admin_start(&s.admin, s.gw, admin_path);
    if (arc < 0)
      fprintf(stderr, "sluice: admin socket %s: %s (continuing without it)\n", admin_path, uv_strerror(arc));
    else
      fprintf(stderr, "sluice: admin socket on %s (mode 0600)\n", admin_path);
  }
  uv_signal_init(s.loop, &s.sigint);
  uv_signal_init(s.loop, &s.sigterm);
  uv_signal_init(s.loop, &s.sighup);
  s.sigint.data = s.sigterm.data = s.sighup.data = &s;
  uv_signal_start(&s.sigint, sl__on_signal, SIGINT);
  uv_signal_start(&s.sigterm, sl__on_signal, SIGTERM);
  uv_signal_start(&s.sighup, sl__on_sighup, SIGHUP);
  /* Said last, once the admin socket and the signals are ready: whoever
   * waits for this line (a supervisor, the tests) may reload at once. */
  fprintf(stderr, "sluice %s listening on http://%s:%d\n", sl_version(), s.gw->cfg->listen_host,
          sl_gateway_port(s.gw));
  fflush(stderr);
  uv_run(s.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(s.loop) != 0) {
    fprintf(stderr, "sluice: warning: handles still open at exit\n");
    uv_print_all_handles(s.loop, stderr);
    return 1;
  }
  return 0;
}
