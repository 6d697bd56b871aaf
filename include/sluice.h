/* sluice.h: sluice inside your program.
 *
 * A gateway is everything `sluice serve` runs, on a libuv loop the caller
 * owns: the HTTP server, the engine pools (and the simulated engines a
 * configuration asks for), the streams in flight, the Lua policies in
 * generations that reload without dropping a stream, its counters, its
 * narration and its TTL dictionary.  Nothing is process-wide: two gateways
 * on two loops (in one thread or in two) share nothing but the allocator.
 *
 *   sl_init();                                   once, before any libuv call
 *   uv_loop_t loop;  uv_loop_init(&loop);
 *   sl_gateway_options_t opt = {.listen = "127.0.0.1:0"};
 *   sl_gateway_t *gw;
 *   if (sl_gateway_open(&gw, &loop, &opt, err, sizeof(err)) < 0) ...
 *   ... uv_run(&loop, UV_RUN_DEFAULT) ...
 *   sl_gateway_close(gw, on_closed, ud);         on the loop's thread
 *
 * docs/embedding.md walks through it; examples/embed_two.c runs two
 * gateways on two loops in one process.  Every function runs on the
 * gateway's loop thread, except sl_init.  Errors are negative: SL_E* codes
 * (runtime/base/errors.h) or libuv's UV_E*; sl_strerror names both.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_gateway_s sl_gateway_t;

/* Process set-up: installs sluice's allocator in libuv (it must precede
 * every other libuv call in the process).  Idempotent and thread-safe.
 * Returns 0 or a negative code. */
int sl_init(void);

/* The library's version ("0.1.0"). */
const char *sl_version(void);

/* A name for an error code (SL_E* or UV_E*). */
const char *sl_strerror(int code);

typedef struct {
  /* The configuration (docs/operations.md): JSON text, or a file, or
   * neither for the embedded default (one simulated pool). */
  const char *config_json;
  size_t config_len;            /* bytes of config_json (0: up to its NUL) */
  const char *config_path;
  const char *listen;           /* "HOST:PORT" instead of the configuration's; port 0 picks a free one */
  FILE *log;                    /* stream-end lines, narration, notices (NULL: stderr) */
  int log_json;                 /* 1: stream-end lines as JSON whatever the configuration says */
  int worker;                   /* 1..nworkers when a worker of a supervisor, 0 = standalone */
  int nworkers;                 /* workers in the instance (0 or 1: standalone) */
  int view_fd;                  /* the instance view's memfd (inherited from the supervisor); ignored when worker is 0 */
  const char *engine_exec;      /* managed engines start as `engine_exec engine-exec PID -- command...` so they die
                                   with this process even when it is killed (`sluice serve` passes its own binary);
                                   NULL: the command is spawned directly (docs/engines.md, "Local engines") */
} sl_gateway_options_t;

/* Builds a gateway on loop and starts serving: parses and checks the
 * configuration, loads and tries the policies, starts the simulated
 * engines the configuration names, listens, and starts health checks.
 * Returns 0 with *out, or < 0 with the reason in err: SL_EINVAL for a
 * configuration or policy that is refused (err names the key, or
 * file:line), a libuv code when something would not start (such as
 * UV_EADDRINUSE).  On failure *out is untouched; handles that were opened
 * are already closing, so run the loop before uv_loop_close. */
int sl_gateway_open(sl_gateway_t **out, uv_loop_t *loop, const sl_gateway_options_t *opt, char *err,
                    size_t errlen);

/* The port it listens on (the real one when the configuration said 0). */
int sl_gateway_port(const sl_gateway_t *gw);

/* Builds a new generation of policies from the configured files and, when
 * it loads and passes its sample checks, makes it current; streams in
 * flight keep theirs.  Returns 0 with a summary in msg, or < 0 with
 * "file:line: message" in msg (the old generation stays). */
int sl_gateway_reload(sl_gateway_t *gw, char *msg, size_t msglen);

/* Drains: stops accepting connections, answers new requests on open ones
 * with 503, lets streams in flight finish until the configuration's
 * drain_timeout_ms, then cuts the rest with an error event.  on_drained
 * (may be NULL) runs once no stream is left; then close the gateway.  A
 * second call is a no-op. */
void sl_gateway_drain(sl_gateway_t *gw, void (*on_drained)(sl_gateway_t *gw, void *ud), void *ud);

/* Streams in flight now. */
int sl_gateway_streams(const sl_gateway_t *gw);

/* The gateway's counters as one JSON object ({"streams_started":N,...}).
 * Returns the length written (without the NUL), or the length needed when
 * it did not fit (snprintf convention). */
size_t sl_gateway_counters_json(const sl_gateway_t *gw, char *buf, size_t cap);

/* Closes everything at once: streams in flight are cut with an error
 * event, connections and engines are closed, and when the last handle has
 * closed the gateway is freed and on_closed (may be NULL) runs with ud.
 * The loop then holds nothing of the gateway's.  gw must not be used after
 * this call. */
void sl_gateway_close(sl_gateway_t *gw, void (*on_closed)(void *ud), void *ud);

#ifdef __cplusplus
}
#endif

#endif
