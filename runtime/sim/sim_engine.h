/* sim_engine.h: the simulated inference engine.
 *
 * An OpenAI-compatible engine with realistic timing and injectable faults,
 * built on sluice's own HTTP server.  It serves POST /v1/chat/completions and
 * POST /v1/completions (SSE in chunked transfer encoding when streaming, one
 * JSON object otherwise), GET /v1/models, GET /health, GET /sim/stats and
 * POST /sim/control.  Timing: TTFT = ttft_ms + prefill_us_per_char x prompt
 * characters, then one token per inter-token gap (itl_ms with relative
 * jitter, from a seeded PRNG, and optionally a sine wave over the token's
 * index, itl_wave), or as fast as the socket takes them when the gap is 0.  A fixed number of slots generate at once; requests past them
 * wait in FIFO order.  Per-request `x-sim-*` headers choose the seed, token
 * count, timing, send-time stamps, faults (stall, reset, garbage, slow start,
 * HTTP status, error event, clean close) and a write-split pattern.
 * docs/sim-engine.md is the operator's reference.
 *
 * Event bytes are generated into chunks of the engine's own pool and pinned
 * by the HTTP writes, so a token costs no allocation.  After a write leaves
 * the connection's queue above the server's high watermark the request waits
 * for on_drain, so the engine itself has real backpressure and bounded
 * memory per stream.  Single-threaded: every function runs on the loop's
 * thread.  Times are milliseconds where a name says _ms, microseconds for
 * _us, otherwise uv_hrtime nanoseconds.
 */
#ifndef SL_SIM_ENGINE_H
#define SL_SIM_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "runtime/base/config.h"


typedef struct sl_sim_engine_s sl_sim_engine_t;


/* Counters of one engine, as GET /sim/stats reports them. */
typedef struct {
  uint64_t requests;                 /* completion requests received (rejected ones included) */
  uint64_t active;                   /* requests holding a slot now (gauge) */
  uint64_t queued;                   /* requests waiting for a slot now (gauge) */
  uint64_t completed;                /* responses that ran to their normal end */
  uint64_t tokens_sent;              /* tokens generated and written (or buffered when not streaming) */
  uint64_t client_closed_mid_stream; /* clients that went away before their response ended */
  uint64_t write_blocked;            /* times a write left the queue above the high watermark */
  uint64_t max_write_queue_bytes;    /* largest write queue seen after a write (gauge, peak) */
  uint64_t connections_accepted;     /* TCP connections the engine's server accepted */
  uint64_t faults_injected;          /* x-sim-fault faults that fired */
} sl_sim_stats_t;


/* Starts an engine on loop: binds cfg->host:cfg->port and serves.  The
 * config is copied.  Returns 0 with *out set, or a negative code (SL_EINVAL
 * for a bad config, a libuv code such as UV_EADDRINUSE); on failure *out is
 * untouched and no callback will run, but the failed listener's close may
 * still be pending: run the loop once more before uv_loop_close. */
int sl_sim_engine_start(sl_sim_engine_t **out, uv_loop_t *loop, const sl_sim_config_t *cfg);

/* The bound port (the real one when cfg->port was 0). */
int sl_sim_engine_port(const sl_sim_engine_t *e);

/* Copies the engine's counters into *out. */
void sl_sim_engine_stats(const sl_sim_engine_t *e, sl_sim_stats_t *out);

/* Zeroes the totals (gauges keep their current values). */
void sl_sim_engine_reset_stats(sl_sim_engine_t *e);

/* Writes stats as one JSON object into buf.  Returns the length written
 * (excluding the NUL) or, if it did not fit, the length needed (snprintf
 * convention). */
size_t sl_sim_stats_json(const sl_sim_stats_t *st, char *buf, size_t cap);

/* The gap before token k (0 for a response's first) of a response whose
 * mean gap is itl (any unit; the result is in the same one): itl *
 * (1 + jitter * u) * (1 + wave_amp * sin(2 pi k / wave_period)), the last
 * factor only when wave_period > 0, and never below 0.  u in [-1, 1] is the
 * jitter draw. */
double sl_sim_gap(double itl, double jitter, double wave_period, double wave_amp, uint64_t k, double u);

/* Makes GET /health answer 200 (healthy=1) or 503 (healthy=0).  Completions
 * are served either way. */
void sl_sim_engine_set_healthy(sl_sim_engine_t *e, int healthy);

/* Stops accepting, cuts every open connection and in-progress response, and
 * frees the engine; cb (may be NULL) runs with ud once every handle the
 * engine opened is closed.  The engine must not be used afterwards. */
void sl_sim_engine_close(sl_sim_engine_t *e, void (*cb)(void *ud), void *ud);


#endif
