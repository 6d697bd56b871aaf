/* engines.h: the engines a gateway runs itself.
 *
 * Two kinds.  An in-process simulated engine ("sim" endpoints) listens on a
 * loopback port of the gateway's own loop (sl_engines_start_sims).  A
 * managed engine ("managed" endpoints, docs/engines.md "Local engines") is
 * a process: its command, with "{port}" and "{model_path}" filled in, is
 * spawned with uv_spawn in a session of its own; its stdout and stderr are
 * read line by line into the gateway's log ("engine 127.0.0.1:41234: ...",
 * lines cut at SL_ENGINE_LINE bytes, one fixed buffer per stream, none per
 * line); readiness comes from the endpoint's probes (upstream.h), which
 * treat a refused connection or a 503 as "starting" until the engine's
 * start_timeout_ms.  An engine that exits is restarted after 100 ms,
 * doubling up to 10 s, the delay forgotten once it stayed up 60 s.  It is
 * stopped with SIGTERM to its process group, then SIGKILL after
 * stop_grace_ms, when the gateway closes (the close waits for every exit).
 *
 * States: stopped (no process, none wanted), starting (spawned, not ready),
 * running (ready), stopping (asked to exit), backoff (died; its restart is
 * timed).
 *
 * A swap pool ("swap": {max_running, idle_timeout_ms}) starts no engine at
 * open: a request for a model whose engine is not running reaches
 * sl_engines_need (through the relay's on_need; stream/ may not call up
 * here), which starts it, first draining and stopping the engine idle
 * longest when max_running already run.  An engine without streams for
 * idle_timeout_ms stops.
 *
 * Engines die with sluice: with an exec wrapper (the options' engine_exec,
 * `sluice engine-exec`), each engine is started through it, which sets
 * PR_SET_PDEATHSIG to SIGKILL and checks its parent is still the gateway
 * before it execs the command, so even a SIGKILLed sluice leaves no engine
 * behind.  Endpoints are fixed at open (a reload changes policies only), so
 * no reload starts or stops an engine.
 */
#ifndef SL_ENGINES_H
#define SL_ENGINES_H

#include <stdint.h>

#include "cjson/cJSON.h"
#include "runtime/upstream/registry.h"

#define SL_ENGINE_LINE 1024          /* bytes of one engine log line kept; the rest is cut */
#define SL_ENGINE_BACKOFF_BASE_MS 100
#define SL_ENGINE_BACKOFF_MAX_MS 10000
#define SL_ENGINE_BACKOFF_RESET_MS 60000

typedef enum {
  SL_ENGINE_STOPPED = 0,
  SL_ENGINE_STARTING,
  SL_ENGINE_RUNNING,
  SL_ENGINE_STOPPING,
  SL_ENGINE_BACKOFF
} sl_engine_state_t;

extern const char *const sl_engine_state_names[]; /* "stopped", "starting", "running", "stopping", "backoff" */

typedef struct sl_engines_s sl_engines_t;
struct sl_gateway_s;

/* Starts the in-process simulated engines of gw's configuration and gives
 * their endpoints their ports.  Returns 0, or a libuv code with the
 * endpoint named in err. */
int sl_engines_start_sims(struct sl_gateway_s *gw, char *err, size_t errlen);

/* Sets up the managed engines of gw's configuration (none: *out = NULL and
 * 0) and starts those of pools that do not swap.  exec_wrapper is the
 * program run as `exec_wrapper engine-exec PID -- command...` (NULL: the
 * command is spawned directly, and dies with sluice only when sluice stops
 * normally).  An endpoint with port 0 gets a free loopback port now, kept
 * across restarts.  Returns 0, or a libuv code with the endpoint named in
 * err (a port could not be had); engines that failed to spawn are retried
 * with backoff, not refused.  Close with sl_engines_close. */
int sl_engines_open(sl_engines_t **out, struct sl_gateway_s *gw, const char *exec_wrapper, char *err, size_t errlen);

/* The relay's on_need (relay.h): a request waits for model with no ready
 * endpoint.  In a swap pool whose engine for model is not running, starts
 * it (or drains the idle-longest one first).  Cheap and idempotent. */
void sl_engines_need(void *engines, int pool, const char *model);

/* Endpoint ep passed a probe: a starting engine is running now. */
void sl_engines_on_ready(sl_engines_t *es, sl_endpoint_t *ep);

/* 1 when ep's engine is stopped in a swap pool: not ready, by design, and
 * started when a request asks for its model (health and /ready count it
 * as available, not as down); else 0. */
int sl_engines_standby(const sl_engines_t *es, const sl_endpoint_t *ep);

/* Adds {state, pid, uptime_s, restarts, last_exit} about ep's engine to o
 * as "managed", when ep is managed. */
void sl_engines_json(const sl_engines_t *es, const sl_endpoint_t *ep, cJSON *o);

/* ep's engine state, pid (0: none), uptime in seconds, restarts and last
 * exit ("" for none) into the out-parameters (any may be NULL).  Returns 0,
 * or SL_ENOTFOUND when ep is not managed. */
int sl_engines_info(const sl_engines_t *es, const sl_endpoint_t *ep, const char **state, int *pid, double *uptime_s,
                    uint64_t *restarts, const char **last_exit);

/* Stops every engine (SIGTERM, SIGKILL after its stop_grace_ms), closes
 * every handle, and calls cb(ud) once all are closed and every process has
 * exited; then frees es.  es may be NULL (cb runs at once). */
void sl_engines_close(sl_engines_t *es, void (*cb)(void *ud), void *ud);

#endif
