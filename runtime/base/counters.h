/* counters.h: the fixed set of counters one gateway keeps.
 *
 * Every counter is declared once in SL_COUNTERS below; a gateway (or a
 * worker) owns one sl_counters_t, a plain array, and hands a pointer to each
 * unit that counts, so bumping one on the hot path is a single add, and
 * readers (/health, /metrics and the instance view of a supervisor's
 * workers, gateway/view.h) walk the array without touching the hot path.  A NULL set counts nothing (an
 * in-process engine's server, unit tests).  Gauges (things in use now) go up
 * and down; totals only go up.  Single-threaded: one set per loop.
 */
#ifndef SL_COUNTERS_H
#define SL_COUNTERS_H

#include <stddef.h>
#include <stdint.h>

/* X(id, name, kind): kind is "total" or "gauge". */
#define SL_COUNTERS(X)                                               \
  X(STREAMS_STARTED, "streams_started", "total")                     \
  X(STREAMS_ACTIVE, "streams_active", "gauge")                       \
  X(STREAMS_COMPLETED, "streams_completed", "total")                 \
  X(TOKENS_RECEIVED, "tokens_received", "total")                     \
  X(TOKENS_WRITTEN, "tokens_written", "total")                       \
  X(BYTES_FROM_UPSTREAM, "bytes_from_upstream", "total")             \
  X(BYTES_TO_CLIENTS, "bytes_to_clients", "total")                   \
  X(STREAM_WRITES, "stream_writes", "total")                         \
  X(STREAM_EVENTS, "stream_events", "total")                         \
  X(CHUNKS_ALLOCATED, "chunk_pool_allocated", "total")               \
  X(CHUNKS_REUSED, "chunk_pool_reused", "total")                     \
  X(CHUNKS_IN_USE, "chunk_pool_in_use", "gauge")                     \
  X(UPSTREAM_PAUSES, "upstream_read_pauses", "total")                \
  X(UPSTREAM_RESUMES, "upstream_read_resumes", "total")              \
  X(STREAM_PINNED_PEAK, "stream_pinned_bytes_peak", "gauge")         \
  X(CANCELS, "client_cancels", "total")                              \
  X(RETRIES, "upstream_retries", "total")                            \
  X(HEARTBEATS, "heartbeats_sent", "total")                          \
  X(CONNECTIONS_ACTIVE, "connections_active", "gauge")               \
  X(CONNECTIONS_ACCEPTED, "connections_accepted", "total")           \
  X(REQUESTS, "requests", "total")                                   \
  X(UPSTREAM_CONNECTS, "upstream_connects", "total")                 \
  X(UPSTREAM_REUSES, "upstream_keepalive_reuses", "total")           \
  X(ERR_BAD_REQUEST, "errors_bad_request", "total")                  \
  X(ERR_HEADER_TOO_LARGE, "errors_header_too_large", "total")        \
  X(ERR_BODY_TOO_LARGE, "errors_body_too_large", "total")            \
  X(ERR_CLIENT_TIMEOUT, "errors_client_timeout", "total")            \
  X(ERR_NOT_FOUND, "errors_not_found", "total")                      \
  X(ERR_METHOD, "errors_method_not_allowed", "total")                \
  X(ERR_NO_ENDPOINT, "errors_no_ready_endpoint", "total")            \
  X(ERR_UPSTREAM_CONNECT, "errors_upstream_connect", "total")        \
  X(ERR_UPSTREAM_STATUS, "errors_upstream_status", "total")          \
  X(ERR_UPSTREAM_PROTOCOL, "errors_upstream_protocol", "total")      \
  X(ERR_UPSTREAM_RESET, "errors_upstream_reset", "total")            \
  X(ERR_UPSTREAM_TIMEOUT, "errors_upstream_timeout", "total")        \
  X(ERR_UPSTREAM_ERROR_EVENT, "errors_upstream_error_event", "total")  \
  X(ERR_UPSTREAM_TLS, "errors_upstream_tls", "total")                \
  X(GENERATIONS_LIVE, "generations_live", "gauge")                   \
  X(GENERATIONS_FREED, "generations_freed", "total")                 \
  X(RELOADS_OK, "reloads_ok", "total")                               \
  X(RELOADS_FAILED, "reloads_failed", "total")                       \
  X(POLICY_ERRORS, "placement_policy_errors", "total")               \
  X(NARRATION_DROPPED, "narration_dropped", "total")                 \
  X(NARRATION_ERRORS, "narration_policy_errors", "total")            \
  X(LUA_BUDGET_EXCEEDED, "lua_budget_exceeded", "total")             \
  X(WATCHDOG_STALLS, "watchdog_stalls", "total")                     \
  X(GUARD_STOP, "guard_stop", "total")                               \
  X(GUARD_REDACTION, "guard_redaction", "total")                     \
  X(GUARD_BUDGET, "guard_budget", "total")                           \
  X(GUARD_LOOP, "guard_loop", "total")                               \
  X(GUARD_LTL, "guard_ltl", "total")                                 \
  X(GUARD_MASKED, "guard_masked_ranges", "total")                    \
  X(GUARD_REWRITES, "guard_rewritten_events", "total")               \
  X(CUT_STREAMS, "streams_cut", "total")                             \
  X(GUARD_PIPELINE, "guard_pipeline", "total")                       \
  X(PIPELINE_CALLS, "pipeline_calls", "total")                       \
  X(PIPELINE_ERRORS, "pipeline_errors", "total")                     \
  X(PIPELINE_DENIED, "pipeline_denied", "total")                     \
  X(TENANT_UNAUTHORIZED, "tenant_unauthorized", "total")             \
  X(TENANT_FORBIDDEN, "tenant_forbidden", "total")                   \
  X(TENANT_RATE_LIMITED, "tenant_rate_limited", "total")             \
  X(TRANSCRIPTS_WRITTEN, "transcripts_written", "total")             \
  X(TRANSCRIPTS_FAILED, "transcripts_failed", "total")              \
  X(QUEUED, "requests_queued", "total")                              \
  X(QUEUE_WAITING, "queue_waiting", "gauge")                         \
  X(QUEUE_PLACED, "queue_placed", "total")                           \
  X(QUEUE_TIMEOUTS, "queue_timeouts", "total")                       \
  X(QUEUE_FULL, "queue_full", "total")                               \
  X(QUEUE_CANCELLED, "queue_client_gone", "total")                   \
  X(MEMORY_WAITS, "memory_budget_waits", "total")                    \
  X(UPSTREAM_RATE_LIMITED, "upstream_rate_limited", "total")         \
  X(UPSTREAM_UNAVAILABLE, "upstream_unavailable", "total")           \
  X(LIMIT_CHANGES, "limit_changes", "total")                         \
  X(LIMIT_CUTS, "limit_cuts", "total")                               \
  X(LIMIT_RULE_ERRORS, "limit_rule_errors", "total")                 \
  X(SLOW_CLIENTS_CANCELLED, "slow_clients_cancelled", "total")       \
  X(TRACE_SPANS_EXPORTED, "trace_spans_exported", "total")           \
  X(TRACE_SPANS_DROPPED, "trace_spans_dropped", "total")             \
  X(TRACE_EXPORT_ERRORS, "trace_export_errors", "total")            \
  X(REDIS_UP, "redis_up", "gauge")                                   \
  X(REDIS_OUTAGES, "redis_outages", "total")                         \
  X(SHARED_FAIL_OPEN, "shared_limit_fail_open", "total")             \
  X(SHARED_FAIL_CLOSED, "shared_limit_fail_closed", "total")         \
  X(TASKS_SUBMITTED, "tasks_submitted", "total")                     \
  X(TASKS_COMPLETED, "tasks_completed", "total")                     \
  X(TASKS_CANCELLED, "tasks_cancelled", "total")                     \
  X(TASKS_EXPIRED, "tasks_expired", "total")                         \
  X(TASKS_RESUMED, "tasks_resumed", "total")                         \
  X(TASK_EVENTS_EVICTED, "task_events_evicted", "total")             \
  X(ENGINES_STARTED, "engines_started", "total")                     \
  X(ENGINES_READY, "engines_ready", "total")                         \
  X(ENGINES_CRASHED, "engines_crashed", "total")                     \
  X(ENGINES_RESTARTED, "engines_restarted", "total")                 \
  X(ENGINES_SWAPPED, "engines_swapped", "total")                     \
  X(ENGINES_STOPPED, "engines_stopped", "total")                     \
  X(ENGINES_RUNNING, "engines_running", "gauge")                     \
  X(ADMIN_HTTP_REQUESTS, "admin_http_requests", "total")             \
  X(ADMIN_HTTP_UNAUTHORIZED, "admin_http_unauthorized", "total")

typedef enum {
#define SL__COUNTER_ENUM(id, name, kind) SL_C_##id,
  SL_COUNTERS(SL__COUNTER_ENUM)
#undef SL__COUNTER_ENUM
  SL_C__COUNT
} sl_counter_id_t;

typedef struct sl_counters_s {
  uint64_t v[SL_C__COUNT];
} sl_counters_t;

static inline void sl_counter_inc(sl_counters_t *c, sl_counter_id_t id) {
  if (c) c->v[id]++;
}
static inline void sl_counter_add(sl_counters_t *c, sl_counter_id_t id, uint64_t n) {
  if (c) c->v[id] += n;
}
static inline void sl_counter_dec(sl_counters_t *c, sl_counter_id_t id) {
  if (c) c->v[id]--;
}
static inline void sl_counter_max(sl_counters_t *c, sl_counter_id_t id, uint64_t v) {
  if (c && v > c->v[id]) c->v[id] = v;
}
static inline uint64_t sl_counter_get(const sl_counters_t *c, sl_counter_id_t id) { return c ? c->v[id] : 0; }

/* The counter's name ("tokens_received"), or NULL for an id out of range. */
const char *sl_counter_name(sl_counter_id_t id);
/* "total" or "gauge". */
const char *sl_counter_kind(sl_counter_id_t id);

/* Writes the registry as one JSON object ({"name":value,...}) into buf.
 * Returns the length written (excluding NUL), or the length needed if it
 * did not fit (snprintf convention). */
size_t sl_counters_json(const sl_counters_t *c, char *buf, size_t cap);

/* Zeroes every counter. */
void sl_counters_reset(sl_counters_t *c);

#endif
