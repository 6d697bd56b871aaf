/* daemon.c: `sluice serve` (see daemon.h). */
#include "runtime/cli/serve.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "runtime/ops/admin.h"
#include "runtime/base/alloc.h"
#include "runtime/gateway/api.h"
#include "runtime/gateway/gateway.h"
#include "runtime/base/narrate.h"
#include "runtime/sim/sim_engine.h"
#include "runtime/lua/ttldict.h"
#include "runtime/gateway/watchdog.h"

typedef struct {
  sl_gateway_t gw;
  sl_config_t cfg;
  uv_signal_t sigint, sigterm, sighup;
  uv_timer_t drain_timer;
  uv_fs_event_t watch;          /* the placement policy's directory */
  int watching;
  uv_timer_t reload_timer;      /* debounces file events */
  uv_timer_t sweep_timer;       /* reclaims expired TTL dictionary entries */
  uv_check_t narrate_check;     /* narrates queued events once per loop iteration */
  char watch_name[512];         /* the policy file's name in that directory */
  sl_admin_t *admin;
  sl_watchdog_t *watchdog;      /* NULL when watchdog.warn_ms is 0 */
  int shutting_down;
  int pending_closes;
} sl__daemon_t;

static void sl__narrate_now(sl__daemon_t *d);

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

static void sl__closed_one(void *ud) {
  sl__daemon_t *d = ud;
  d->pending_closes--;
}

static void sl__handle_closed(uv_handle_t *h) { sl__closed_one(h->data); }

/* Closes everything; the loop then runs out of handles and uv_run returns. */
static void sl__shutdown(sl__daemon_t *d) {
  if (d->shutting_down) return;
  d->shutting_down = 1;
  sl_gateway_t *gw = &d->gw;
  sl_relay_cancel_all(&gw->streams, "sluice is shutting down");
  d->pending_closes = 0;
  d->pending_closes++;
  sl_http_server_close(gw->http, sl__closed_one, d);
  d->pending_closes++;
  sl_upstream_close(&gw->up, sl__closed_one, d);
  for (int i = 0; i < gw->reg.neps; i++) {
    if (gw->reg.eps[i].sim) {
      d->pending_closes++;
      sl_sim_engine_close(gw->reg.eps[i].sim, sl__closed_one, d);
      gw->reg.eps[i].sim = NULL;
    }
  }
  if (d->admin) {
    d->pending_closes++;
    sl_admin_close(d->admin, sl__closed_one, d);
    d->admin = NULL;
  }
  d->sigint.data = d->sigterm.data = d->sighup.data = d->drain_timer.data = d->reload_timer.data = d;
  d->sweep_timer.data = d;
  d->narrate_check.data = d;
  d->pending_closes += 7;
  uv_close((uv_handle_t *)&d->sweep_timer, sl__handle_closed);
  uv_close((uv_handle_t *)&d->narrate_check, sl__handle_closed);
  uv_close((uv_handle_t *)&d->sigint, sl__handle_closed);
  uv_close((uv_handle_t *)&d->sigterm, sl__handle_closed);
  uv_close((uv_handle_t *)&d->sighup, sl__handle_closed);
  uv_close((uv_handle_t *)&d->drain_timer, sl__handle_closed);
  uv_close((uv_handle_t *)&d->reload_timer, sl__handle_closed);
  if (d->watching) {
    d->watch.data = d;
    d->pending_closes++;
    uv_close((uv_handle_t *)&d->watch, sl__handle_closed);
    d->watching = 0;
  }
  /* Tell what the cut streams did, then drop the gateway's reference;
   * streams were cut above and hold none now. */
  sl__narrate_now(d);
  sl_generation_release(gw->gen);
  gw->gen = NULL;
}

static void sl__reload(sl__daemon_t *d, const char *why) {
  char msg[1536];
  int rc = sl_gateway_reload(&d->gw, msg, sizeof(msg));
  fprintf(d->gw.log, "sluice: %s: %s%s\n", why, rc == 0 ? "reloaded: " : "", msg);
  fflush(d->gw.log);
}

static int sl__narrate_run(void *ud, char *err, size_t errlen) {
  sl__daemon_t *d = ud;
  return sl_generation_narrate(d->gw.gen, err, errlen);
}

static void sl__narrate_now(sl__daemon_t *d) {
  if (sl_narrate_pending() == 0) return;
  /* A suspended narration policy (generation.h) gets no call: its batches
   * go straight to the plain rendering, without an error line each. */
  int has_policy = d->gw.gen != NULL && d->gw.gen->narrate_ref >= 0 && !d->gw.gen->narrate_suspended;
  sl_narrate_flush(has_policy ? sl__narrate_run : NULL, d);
}

static void sl__on_narrate_check(uv_check_t *c) { sl__narrate_now(c->data); }

/* Expired dictionary entries are invisible at once; this reclaims their
 * memory a bounded batch at a time. */
static void sl__on_sweep(uv_timer_t *t) {
  (void)t;
  sl_ttldict_t *dict = sl_ttldict_default();
  if (dict) sl_ttldict_sweep(dict, sl_ttldict_now(dict), 1000);
}

static void sl__on_sighup(uv_signal_t *s, int signum) {
  (void)signum;
  sl__daemon_t *d = s->data;
  if (!d->shutting_down) sl__reload(d, "SIGHUP");
}

static void sl__on_reload_timer(uv_timer_t *t) {
  sl__daemon_t *d = t->data;
  if (!d->shutting_down) sl__reload(d, "policy file changed");
}

static void sl__on_watch(uv_fs_event_t *h, const char *filename, int events, int status) {
  sl__daemon_t *d = h->data;
  (void)events;
  if (status < 0 || filename == NULL || strcmp(filename, d->watch_name) != 0) return;
  /* Editors write in several steps (truncate, write, rename): wait until
   * the file has been quiet for a moment, then reload once. */
  uv_timer_start(&d->reload_timer, sl__on_reload_timer, 100, 0);
}

static void sl__start_watch(sl__daemon_t *d) {
  char path[512];
  if (sl_policy_resolve(d->cfg.placement_policy, path, sizeof(path)) < 0) return;
  char dir[512];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL) {
    snprintf(d->watch_name, sizeof(d->watch_name), "%s", dir);
    snprintf(dir, sizeof(dir), ".");
  } else {
    snprintf(d->watch_name, sizeof(d->watch_name), "%s", slash + 1);
    *slash = '\0';
  }
  uv_fs_event_init(d->gw.loop, &d->watch);
  d->watch.data = d;
  if (uv_fs_event_start(&d->watch, sl__on_watch, dir, 0) == 0) {
    d->watching = 1;
  } else {
    fprintf(stderr, "sluice: cannot watch %s for policy changes; SIGHUP and the admin socket still reload\n", dir);
    uv_close((uv_handle_t *)&d->watch, NULL);
  }
}

static void sl__on_idle(void *ud) {
  sl__daemon_t *d = ud;
  fprintf(stderr, "sluice: every stream has ended; exiting\n");
  sl__shutdown(d);
}

static void sl__on_drain_deadline(uv_timer_t *t) {
  sl__daemon_t *d = t->data;
  fprintf(stderr, "sluice: drain deadline reached with %d stream(s) in flight; cutting them\n", d->gw.streams.n);
  sl__shutdown(d);
}

static void sl__on_signal(uv_signal_t *s, int signum) {
  sl__daemon_t *d = s->data;
  sl_gateway_t *gw = &d->gw;
  if (gw->streams.draining) {
    fprintf(stderr, "sluice: second signal; stopping now\n");
    sl__shutdown(d);
    return;
  }
  gw->streams.draining = 1;
  fprintf(stderr, "sluice: %s: draining %d stream(s), up to %llu ms\n", signum == SIGINT ? "SIGINT" : "SIGTERM",
          gw->streams.n, (unsigned long long)gw->cfg->drain_timeout_ms);
  sl_http_server_stop_accepting(gw->http);
  if (gw->streams.n == 0) {
    sl__shutdown(d);
    return;
  }
  gw->streams.on_idle = sl__on_idle;
  gw->streams.idle_ud = d;
  uv_timer_start(&d->drain_timer, sl__on_drain_deadline, gw->cfg->drain_timeout_ms, 0);
}

static int sl__start_sims(sl__daemon_t *d) {
  sl_gateway_t *gw = &d->gw;
  int k = 0;
  for (int i = 0; i < d->cfg.npools; i++) {
    sl_pool_config_t *pc = &d->cfg.pools[i];
    for (int j = 0; j < pc->nendpoints; j++, k++) {
      sl_endpoint_config_t *ec = &pc->endpoints[j];
      if (!ec->is_sim) continue;
      sl_endpoint_t *ep = &gw->reg.eps[k];
      snprintf(ec->sim.host, sizeof(ec->sim.host), "127.0.0.1");
      ec->sim.port = 0;
      int rc = sl_sim_engine_start(&ep->sim, gw->loop, &ec->sim);
      if (rc < 0) {
        fprintf(stderr, "sluice: pools[%d].endpoints[%d]: the simulated engine did not start: %s\n", i, j,
                uv_strerror(rc));
        return rc;
      }
      ep->port = sl_sim_engine_port(ep->sim);
      snprintf(ep->name, sizeof(ep->name), "%s:%d", ep->host, ep->port);
      uv_ip4_addr("127.0.0.1", ep->port, (struct sockaddr_in *)&ep->addr);
      fprintf(stderr, "sluice: pool %s: simulated engine on http://127.0.0.1:%d\n", pc->name, ep->port);
    }
  }
  return 0;
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
  sl_alloc_init(); /* before any other libuv call */
  signal(SIGPIPE, SIG_IGN);
  sl__raise_nofile();

  sl__daemon_t *d = sl_calloc(1, sizeof(*d));
  char err[768];
  int rc = config_path ? sl_config_load(&d->cfg, config_path, err, sizeof(err))
                       : sl_config_parse(&d->cfg, sl_config_default_json(), strlen(sl_config_default_json()), err,
                                         sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "sluice: bad configuration: %s\n", err);
    sl_free(d);
    return 2;
  }
  if (listen && sl_parse_hostport(listen, d->cfg.listen_host, sizeof(d->cfg.listen_host), &d->cfg.listen_port) < 0) {
    fprintf(stderr, "sluice: --listen: \"%s\" is not HOST:PORT\n", listen);
    sl_config_free(&d->cfg);
    sl_free(d);
    return 2;
  }
  if (log_json) d->cfg.log_json = 1;
  if (admin) snprintf(d->cfg.admin_socket, sizeof(d->cfg.admin_socket), "%s", admin);

  sl_gateway_t *gw = &d->gw;
  uv_loop_t *loop = uv_default_loop();
  gw->loop = loop;
  gw->cfg = &d->cfg;
  gw->log = stderr;
  gw->started_ns = uv_hrtime();
  gw->streams.loop = loop;
  gw->streams.cfg = &d->cfg;
  gw->streams.reg = &gw->reg;
  gw->streams.up = &gw->up;
  gw->streams.chunks = &gw->chunks;
  gw->streams.log = stderr;
  gw->streams.rng = gw->started_ns | 1;
  sl_chunk_pool_init(&gw->chunks, d->cfg.chunk_size, d->cfg.chunk_keep);
  if (sl_registry_init(&gw->reg, loop, &d->cfg, err, sizeof(err)) < 0) {
    fprintf(stderr, "sluice: %s\n", err);
    sl_config_free(&d->cfg);
    sl_free(d);
    return 2;
  }
  sl_upstream_init(&gw->up, loop, &gw->reg, &gw->chunks);
  /* Every log line is redacted: pool api_keys and log.secrets. */
  {
    const char *secrets[SL_MAX_POOLS + 34];
    int ns = 0;
    for (int i = 0; i < d->cfg.npools; i++)
      if (d->cfg.pools[i].api_key) secrets[ns++] = d->cfg.pools[i].api_key;
    for (int i = 0; i < d->cfg.nlog_secrets; i++) secrets[ns++] = d->cfg.log_secrets[i];
    secrets[ns] = NULL;
    sl_narrate_configure(stderr, d->cfg.log_json, secrets);
  }
  /* The watchdog starts before the first generation loads: a policy stuck
   * in C while loading is caught too. */
  if (d->cfg.watchdog_warn_ms) {
    int wrc = sl_watchdog_start(&d->watchdog, loop, d->cfg.watchdog_warn_ms, d->cfg.watchdog_abort_ms, stderr);
    if (wrc < 0) fprintf(stderr, "sluice: the loop watchdog did not start: %s (continuing without it)\n", uv_strerror(wrc));
  }
  /* The first generation: a policy that does not load refuses the start. */
  {
    char msg[1536];
    if (sl_gateway_reload(gw, msg, sizeof(msg)) < 0) {
      fprintf(stderr, "sluice: placement policy: %s\n", msg);
      sl_watchdog_close(d->watchdog);
      uv_run(loop, UV_RUN_NOWAIT); /* runs the timer's close */
      sl_watchdog_free(d->watchdog);
      sl_narrate_configure(NULL, 0, NULL);
      sl_ttldict_set_default(NULL);
      sl_registry_free(&gw->reg);
      sl_config_free(&d->cfg);
      sl_free(d);
      return 2;
    }
    fprintf(stderr, "sluice: %s\n", msg);
  }
  uv_signal_init(loop, &d->sigint);
  uv_signal_init(loop, &d->sigterm);
  uv_signal_init(loop, &d->sighup);
  uv_timer_init(loop, &d->drain_timer);
  uv_timer_init(loop, &d->reload_timer);
  uv_timer_init(loop, &d->sweep_timer);
  uv_check_init(loop, &d->narrate_check);
  d->narrate_check.data = d;
  uv_check_start(&d->narrate_check, sl__on_narrate_check);
  d->sigint.data = d->sigterm.data = d->sighup.data = d->drain_timer.data = d->reload_timer.data = d;
  d->sweep_timer.data = d;
  uv_signal_start(&d->sigint, sl__on_signal, SIGINT);
  uv_signal_start(&d->sigterm, sl__on_signal, SIGTERM);
  uv_signal_start(&d->sighup, sl__on_sighup, SIGHUP);

  int exit_code = 0;
  rc = sl__start_sims(d);
  if (rc == 0) {
    rc = sl_http_server_init(&gw->http, loop, d->cfg.listen_host, d->cfg.listen_port, &d->cfg.http, sl_api_handle,
                             gw);
    if (rc < 0)
      fprintf(stderr, "sluice: cannot listen on %s:%d: %s\n", d->cfg.listen_host, d->cfg.listen_port,
              uv_strerror(rc));
  }
  if (rc < 0) {
    exit_code = 1;
    gw->http = NULL;
    /* Close what did start, then fall through to the loop to let it end. */
    d->shutting_down = 1;
    sl_upstream_close(&gw->up, NULL, NULL);
    for (int i = 0; i < gw->reg.neps; i++)
      if (gw->reg.eps[i].sim) sl_sim_engine_close(gw->reg.eps[i].sim, NULL, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
    uv_close((uv_handle_t *)&d->drain_timer, NULL);
    uv_close((uv_handle_t *)&d->reload_timer, NULL);
    uv_close((uv_handle_t *)&d->sweep_timer, NULL);
    uv_close((uv_handle_t *)&d->narrate_check, NULL);
    sl_generation_release(gw->gen);
    gw->gen = NULL;
  } else {
    fprintf(stderr, "sluice %s listening on http://%s:%d\n", SL_VERSION, d->cfg.listen_host,
            sl_http_server_port(gw->http));
    fflush(stderr);
    sl_upstream_start_health(&gw->up);
    uv_timer_start(&d->sweep_timer, sl__on_sweep, 1000, 1000);
    if (d->cfg.placement_watch) sl__start_watch(d);
    if (d->cfg.admin_socket[0]) {
      int arc = sl_admin_start(&d->admin, gw, d->cfg.admin_socket);
      if (arc < 0)
        fprintf(stderr, "sluice: admin socket %s: %s (continuing without it)\n", d->cfg.admin_socket,
                uv_strerror(arc));
      else
        fprintf(stderr, "sluice: admin socket on %s (mode 0600)\n", d->cfg.admin_socket);
    }
  }
  uv_run(loop, UV_RUN_DEFAULT);
  /* The watchdog watched the whole shutdown; its timer goes last. */
  sl_watchdog_close(d->watchdog);
  uv_run(loop, UV_RUN_DEFAULT);
  if (uv_loop_close(loop) != 0) {
    fprintf(stderr, "sluice: warning: handles still open at exit\n");
    uv_print_all_handles(loop, stderr);
  }
  sl_registry_free(&gw->reg);
  sl_chunk_pool_destroy(&gw->chunks);
  sl_config_free(&d->cfg);
  sl_ttldict_set_default(NULL); /* frees the process dictionary */
  sl_narrate_configure(NULL, 0, NULL); /* frees the secrets */
  sl_watchdog_free(d->watchdog);
  sl_free(d);
  return exit_code;
}
