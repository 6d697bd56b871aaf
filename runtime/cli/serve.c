/* serve.c: `sluice serve` (see serve.h): arguments, signals, the admin
 * socket; the gateway itself is runtime/sluice.h's. */
#include "runtime/cli/serve.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "runtime/base/config.h"
#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/cli/supervise.h"
#include "runtime/gateway/gateway.h"
#include "runtime/ops/admin.h"
#include "runtime/ops/web.h"
#include "sluice.h"

typedef struct {
  uv_loop_t *loop;
  sl_gateway_t *gw;
  sl_admin_t *admin;
  sl_web_t *web;           /* the admin web view (admin_http), or NULL */
  uv_signal_t sigint, sigterm, sighup;
  int stopping;
  char who[32];            /* how its own lines begin: "sluice" or "sluice worker 2" */
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
          "builds and validates a new generation of policies and swaps it in.\n"
          "With \"workers\": N (2..64, or \"auto\": one per CPU) in the configuration, serve is a\n"
          "supervisor: N worker processes share the port (SO_REUSEPORT), each a whole gateway;\n"
          "a worker that dies is restarted.  SIGHUP and SIGTERM go to every worker.  With an\n"
          "admin socket PATH, the supervisor answers status | workers | reload on PATH and\n"
          "worker I has its own full admin socket PATH.I (sluice attach --worker I PATH).\n"
          "With \"admin_http\": \"HOST:PORT\" (or {\"listen\", \"token\"}) a web view of the pools, endpoints\n"
          "and streams (with drain buttons) is served there; worker I serves its own on PORT + I - 1.\n");
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
  if (s->web) {
    sl_web_close(s->web, NULL, NULL);
    s->web = NULL;
  }
  uv_close((uv_handle_t *)&s->sigint, sl__handle_closed);
  uv_close((uv_handle_t *)&s->sigterm, sl__handle_closed);
  uv_close((uv_handle_t *)&s->sighup, sl__handle_closed);
  sl_gateway_close(s->gw, NULL, NULL);
}

static void sl__on_drained(sl_gateway_t *gw, void *ud) {
  (void)gw;
  fprintf(stderr, "%s: every stream has ended; exiting\n", ((sl__serve_t *)ud)->who);
  sl__stop(ud);
}

static void sl__on_signal(uv_signal_t *h, int signum) {
  sl__serve_t *s = h->data;
  if (s->gw->draining) {
    fprintf(stderr, "%s: second signal; stopping now\n", s->who);
    sl__stop(s);
    return;
  }
  fprintf(stderr, "%s: %s: draining %d stream(s), up to %llu ms\n", s->who, signum == SIGINT ? "SIGINT" : "SIGTERM",
          sl_gateway_streams(s->gw), (unsigned long long)s->gw->cfg->drain_timeout_ms);
  sl_gateway_drain(s->gw, sl__on_drained, s);
}

static void sl__on_sighup(uv_signal_t *h, int signum) {
  (void)signum;
  sl__serve_t *s = h->data;
  if (s->stopping) return;
  char msg[1536];
  int rc = sl_gateway_reload(s->gw, msg, sizeof(msg));
  fprintf(stderr, "%s: SIGHUP: %s%s\n", s->who, rc == 0 ? "reloaded: " : "", msg);
  fflush(stderr);
}

/* Parses "I/N" (1 <= I <= N <= SL_WORKERS_MAX).  Returns 0 or -1. */
static int sl__parse_worker(const char *arg, int *worker, int *nworkers) {
  int i = 0, n = 0, used = 0;
  if (sscanf(arg, "%d/%d%n", &i, &n, &used) != 2 || arg[used] != '\0' || i < 1 || n < i || n > SL_WORKERS_MAX)
    return -1;
  *worker = i;
  *nworkers = n;
  return 0;
}

/* Reads the configuration as the gateway will (the file, or the default;
 * --listen over its address) for what the supervisor needs before any
 * gateway exists.  Returns 0, or 2 after saying why. */
static int sl__peek_config(sl_config_t *cfg, const char *config_path, const char *listen) {
  char err[2048];
  int rc;
  if (config_path) {
    rc = sl_config_load(cfg, config_path, err, sizeof(err));
  } else {
    const char *d = sl_config_default_json();
    rc = sl_config_parse(cfg, d, strlen(d), err, sizeof(err));
  }
  if (rc < 0) {
    fprintf(stderr, "sluice: bad configuration: %s\n", err);
    return 2;
  }
  if (listen && sl_parse_hostport(listen, cfg->listen_host, sizeof(cfg->listen_host), &cfg->listen_port) < 0) {
    fprintf(stderr, "sluice: bad configuration: listen: \"%s\" is not HOST:PORT\n", listen);
    sl_config_free(cfg);
    return 2;
  }
  return 0;
}

int sl_serve_main(int argc, char **argv) {
  const char *config_path = NULL, *listen = NULL, *admin = NULL;
  int log_json = 0, worker = 0, nworkers = 0, view_fd = -1, ready_fd = -1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      config_path = argv[++i];
    } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
      listen = argv[++i];
    } else if (strcmp(argv[i], "--admin-socket") == 0 && i + 1 < argc) {
      admin = argv[++i];
    } else if (strcmp(argv[i], "--log-json") == 0) {
      log_json = 1;
    } else if (strcmp(argv[i], "--worker") == 0 && i + 1 < argc) {
      /* Internal: set by the supervisor (supervise.h), with the three below. */
      if (sl__parse_worker(argv[++i], &worker, &nworkers) < 0) {
        fprintf(stderr, "sluice serve: --worker: expected I/N with 1 <= I <= N <= %d\n", SL_WORKERS_MAX);
        return 2;
      }
    } else if (strcmp(argv[i], "--view-fd") == 0 && i + 1 < argc) {
      view_fd = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--ready-fd") == 0 && i + 1 < argc) {
      ready_fd = atoi(argv[++i]);
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

  if (worker == 0) {
    /* "workers" > 1: this process becomes the supervisor and never opens a
     * gateway itself. */
    sl_config_t *cfg = sl_calloc(1, sizeof(*cfg));
    int rc = sl__peek_config(cfg, config_path, listen);
    if (rc == 0 && cfg->workers > 1) {
      /* Without Redis each worker keeps its own windows: say what that
       * means before anyone relies on the limits. */
      if (cfg->redis_url[0] == '\0' && cfg->tenants_json != NULL && strstr(cfg->tenants_json, "_per_") != NULL)
        fprintf(stderr,
                "sluice: WARNING: %d workers and no \"redis\": each worker keeps its own tenant limits, so a "
                "tenant may get up to %d times each limit (docs/scaling.md)\n",
                cfg->workers, cfg->workers);
      rc = sl_supervise_main(argc, argv, cfg, admin ? admin : cfg->admin_socket);
      sl_config_free(cfg);
      sl_free(cfg);
      return rc;
    }
    if (rc == 0) sl_config_free(cfg);
    sl_free(cfg);
    if (rc != 0) return rc;
  } else {
    /* A worker ends with its supervisor (draining as for SIGTERM), also
     * when the supervisor is killed outright. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) return 1;
  }

  sl__serve_t s;
  memset(&s, 0, sizeof(s));
  s.loop = uv_default_loop();
  if (worker > 0)
    snprintf(s.who, sizeof(s.who), "sluice worker %d", worker);
  else
    snprintf(s.who, sizeof(s.who), "sluice");
  sl_gateway_options_t opt = {.config_path = config_path,
                              .listen = listen,
                              .log = stderr,
                              .log_json = log_json,
                              .worker = worker,
                              .nworkers = nworkers,
                              .view_fd = view_fd,
                              /* Managed engines start through `sluice engine-exec`, so they die with
                               * this process however it ends (runtime/cli/engine_exec.c). */
                              .engine_exec = "/proc/self/exe"};
  char err[2048];
  int rc = sl_gateway_open(&s.gw, s.loop, &opt, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "%s: %s%s\n", s.who, rc == SL_EINVAL ? "bad configuration: " : "", err);
    uv_run(s.loop, UV_RUN_DEFAULT); /* lets what did start close */
    uv_loop_close(s.loop);
    return rc == SL_EINVAL ? 2 : 1;
  }
  /* Worker I of a supervisor with admin socket P has its own, P.I. */
  const char *admin_base = admin ? admin : s.gw->cfg->admin_socket;
  char admin_path[300];
  if (worker > 0 && admin_base[0])
    snprintf(admin_path, sizeof(admin_path), "%s.%d", admin_base, worker);
  else
    snprintf(admin_path, sizeof(admin_path), "%s", admin_base);
  if (admin_path[0]) {
    int arc = sl_admin_start(&s.admin, s.gw, admin_path);
    if (arc < 0)
      fprintf(stderr, "%s: admin socket %s: %s (continuing without it)\n", s.who, admin_path, uv_strerror(arc));
    else
      fprintf(stderr, "%s: admin socket on %s (mode 0600)\n", s.who, admin_path);
  }
  /* The admin web view (ops/web.h).  Worker I of a supervisor listens on
   * port + I - 1, as its admin socket is PATH.I: each worker is a gateway
   * of its own, and its view shows and drains that worker's streams and
   * endpoints.  A view that cannot listen refuses the start: it was asked
   * for by name. */
  if (s.gw->cfg->admin_http) {
    const sl_config_t *cfg = s.gw->cfg;
    int port = cfg->admin_http_port;
    if (worker > 0 && port > 0) port += worker - 1;
    int wrc = port > 65535 ? UV_EINVAL : sl_web_start(&s.web, s.gw, cfg->admin_http_host, port, cfg->admin_http_token);
    if (wrc < 0) {
      fprintf(stderr, "%s: admin_http.listen %s:%d: %s\n", s.who, cfg->admin_http_host, port, uv_strerror(wrc));
      if (s.admin) sl_admin_close(s.admin, NULL, NULL);
      sl_gateway_close(s.gw, NULL, NULL);
      uv_run(s.loop, UV_RUN_DEFAULT);
      uv_loop_close(s.loop);
      return 1;
    }
    int ip6 = strchr(cfg->admin_http_host, ':') != NULL;
    fprintf(stderr, "%s: admin web view on http://%s%s%s:%d/ (%s; files from %s)\n", s.who, ip6 ? "[" : "",
            cfg->admin_http_host, ip6 ? "]" : "", sl_web_port(s.web),
            cfg->admin_http_token ? "token required" : "no token: loopback only", sl_web_dir());
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
  if (worker > 0)
    fprintf(stderr, "sluice %s worker %d/%d pid %d listening on http://%s:%d\n", sl_version(), worker, nworkers,
            (int)getpid(), s.gw->cfg->listen_host, sl_gateway_port(s.gw));
  else
    fprintf(stderr, "sluice %s listening on http://%s:%d\n", sl_version(), s.gw->cfg->listen_host,
            sl_gateway_port(s.gw));
  fflush(stderr);
  if (ready_fd >= 0) {
    /* Tells the supervisor this worker listens (supervise.h). */
    ssize_t w = write(ready_fd, "ready\n", 6);
    (void)w;
    close(ready_fd);
  }
  uv_run(s.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(s.loop) != 0) {
    fprintf(stderr, "%s: warning: handles still open at exit\n", s.who);
    uv_print_all_handles(s.loop, stderr);
    return 1;
  }
  return 0;
}
