/* trace.h: the OTLP/HTTP trace exporter.
 *
 * The relay hands each sampled stream's record (stream/relay.h,
 * sl_trace_rec_t) to sl_tracer_record when the stream ends; the tracer
 * copies it into a bounded queue (tracing.max_queue records; past it the
 * oldest record goes, its spans counted in trace_spans_dropped).  A timer
 * every tracing.batch_ms, or sooner once a batch's worth of records waits,
 * turns up to one batch into an OTLP/HTTP JSON ExportTraceServiceRequest
 * and POSTs it to tracing.endpoint on a new plain TCP connection: one
 * export in flight at a time, under a deadline (tracing.timeout_ms).  A failed or non-2xx
 * export counts trace_export_errors and its spans are dropped (never
 * retried), so a receiver that is down costs memory bounded by the queue
 * and nothing else; the streams never wait for the exporter.
 *
 * Spans per record: the request (SERVER, "chat {model}" or
 * "text_completion {model}", a child of the client's span when it sent a
 * traceparent), and as its children: "queue" (INTERNAL, when it waited),
 * per attempt "placement" (INTERNAL) and the upstream request (CLIENT,
 * named like the request; its span id is the parent the engine got in its
 * traceparent), and "stream" (INTERNAL, first token to end).
 * docs/operations.md ("Traces") lists the attributes.
 */
#ifndef SL_TRACE_H
#define SL_TRACE_H

#include <stddef.h>
#include <stdio.h>
#include <uv.h>

#include "runtime/base/config.h"
#include "runtime/base/counters.h"
#include "runtime/base/narrate.h"
#include "runtime/stream/relay.h"

typedef struct sl_tracer_s sl_tracer_t;

/* Records waiting that start an export at once instead of at the next
 * tick, and the most records one export carries. */
#define SL_TRACE_BATCH 256

/* The most a close waits for what is queued to be sent (or
 * tracing.timeout_ms, when that is shorter), in ms. */
#define SL_TRACE_FLUSH_MS 5000

/* Sets up the exporter for cfg->trace_endpoint (must be non-empty) on loop,
 * counting into counters (may be NULL), redacting request ids and error
 * texts with nar's secrets as log lines are, the first failure of a run
 * logged to log (may be NULL).  The endpoint's host is resolved here, once.  Returns 0 with *out, or SL_EINVAL with the reason in err
 * ("tracing.endpoint: ..."); nothing is left on the loop then. */
int sl_tracer_open(sl_tracer_t **out, uv_loop_t *loop, const sl_config_t *cfg, sl_counters_t *counters,
                   const sl_narrator_t *nar, FILE *log, char *err, size_t errlen);

/* The relay's on_trace (ud is the tracer): queues a copy of rec. */
void sl_tracer_record(void *ud, const sl_trace_rec_t *rec);

/* Records waiting to be exported. */
int sl_tracer_queued(const sl_tracer_t *t);

/* Sends what waits first (the export in flight, then the queue, batch by
 * batch), for at most SL_TRACE_FLUSH_MS or tracing.timeout_ms, whichever
 * is shorter; then aborts what is still in flight, drops what still waits
 * and closes the handles.  cb (may be NULL) runs with ud once all are
 * closed and the tracer is freed.  No record may be added meanwhile. */
void sl_tracer_close(sl_tracer_t *t, void (*cb)(void *ud), void *ud);

#endif
