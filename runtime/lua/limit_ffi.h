/* limit_ffi.h: what a Lua limit rule sees, through the FFI.
 *
 * Adaptive stream limits (docs/admission.md) are Lua rules called on an
 * interval, never per request.  For each endpoint of a pool that adapts, the
 * gateway's limits job (runtime/gateway/limits.c) fills one snapshot of the
 * interval that just ended and calls the rule's limit(s, state); the rule
 * returns the new limit (an integer) and a short reason, and C keeps it
 * within [min, max].  A rule may also define slow_client(c), asked about a
 * stream whose client has stayed above the high watermark for longer than
 * the configured threshold: it answers "keep" or "cancel".
 *
 * TTFT here is measured from the dispatch to the engine (sluice's own queue
 * wait is not in it) and normalized by prompt length: a prompt of p
 * estimated tokens counts as ttft * 256 / max(p, 256), so prompts up to 256
 * tokens count as they are and a long prompt's prefill does not look like
 * queueing.  Quantiles come from a sketch (runtime/base/qsketch.h) whose
 * relative error is at most sketch_error.
 *
 * lua/sluice/limits.lua carries the same cdef (its spec compares them).  The
 * snapshot is valid only during the call: a rule must not keep the pointer.
 */
#ifndef SL_LIMIT_FFI_H
#define SL_LIMIT_FFI_H

#include <stdint.h>

typedef struct {
  const char *endpoint;  /* "host:port" (borrowed) */
  const char *pool;      /* its pool's name (borrowed) */
  int32_t endpoint_id;   /* stable id of the endpoint (index in the registry) */
  int32_t pool_id;       /* index of its pool */
  int32_t limit;         /* the limit now (what the rule's answer replaces) */
  int32_t min, max;      /* the bounds C keeps the answer in */
  int32_t slots;         /* the configured slots (the first limit unless the pool sets one) */
  int32_t inflight;      /* streams on it now */
  int32_t max_inflight;  /* most streams on it at once during the interval */
  int32_t queued;        /* requests waiting in its pool's queue now */
  int32_t ready;         /* 1 if it passed its last health check */
  int32_t reserved;      /* 0 (alignment) */
  double interval_ms;    /* length of the interval (since the last call) */
  double now_ms;         /* a monotonic clock, in ms */
  int64_t started;       /* attempts dispatched to it during the interval */
  int64_t completed;     /* of its streams, those that ended during the interval after a first token */
  int64_t rate_limited;  /* its answers of HTTP 429 during the interval */
  int64_t unavailable;   /* its answers of HTTP 503 during the interval */
  int64_t timeouts;      /* first-token and idle timeouts during the interval */
  int64_t errors;        /* other failed attempts during the interval */
  int64_t drops;         /* rate_limited + unavailable + timeouts (C cut the limit once for them already) */
  int64_t ttft_n;        /* TTFT samples in the interval */
  double ttft_mean, ttft_p50, ttft_p90, ttft_p99; /* normalized TTFT, ms (0 when ttft_n is 0) */
  int64_t itl_n;         /* inter-token gaps in the interval (the latest SL_DYN_RING at most) */
  double itl_mean, itl_p50, itl_p90, itl_p99;     /* inter-token time, ms (0 when itl_n is 0) */
  double sketch_error;   /* the quantiles' relative error bound (SL_QS_ALPHA) */
  double ttft_min;       /* the interval's smallest normalized TTFT, exact (0 when ttft_n is 0) */
} sl_ffi_limit_stats_t;

typedef struct {
  const char *id;        /* the request id (borrowed) */
  const char *endpoint;  /* "host:port" of its engine (borrowed) */
  const char *pool;      /* its pool (borrowed) */
  const char *tenant;    /* its tenant's name, or NULL (borrowed) */
  int32_t queued;        /* requests waiting in its pool's queue now */
  int32_t priority;      /* 0 high, 1 normal, 2 low */
  double paused_ms;      /* how long its client has stayed above the high watermark */
  double age_ms;         /* since the stream was admitted */
  int64_t tokens;        /* tokens received from the engine so far */
  int64_t tokens_written;/* of those, the ones the client's kernel took */
  int64_t pinned_bytes;  /* bytes of stream buffers it holds */
} sl_ffi_slow_client_t;

#endif
