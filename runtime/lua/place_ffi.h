/* place_ffi.h: what a Lua placement policy sees, through the FFI.
 *
 * Before calling a policy's place(ctx) the relay fills one context: the
 * request's model and size, and the compact array of eligible candidates
 * the C prefilter left (model served, ready, not draining, not cooling
 * down), each with its load, the live estimates the relay keeps and the
 * latest verdict on its timing dynamics (runtime/gateway/timing.h).  The
 * policy reads it (never writes it) and returns the 1-based index of its
 * choice and a short reason.  lua/sluice/placement.lua carries the same
 * cdef; SL_FFI_ABI_VERSION changes whenever these structs do.
 *
 * The context is valid only during the place() call: a policy must not keep
 * the pointer (STYLE item 10).
 */
#ifndef SL_PLACE_FFI_H
#define SL_PLACE_FFI_H

#include <stdint.h>

#define SL_FFI_MAX_CANDIDATES 64

typedef struct {
  int32_t endpoint_id;   /* stable id of the endpoint (index in the registry) */
  int32_t pool_id;       /* index of its pool */
  int32_t slots;         /* streams it takes at once */
  int32_t inflight;      /* streams on it now */
  int32_t context_tokens;/* its pool's context size (0 = unknown) */
  int32_t tried;         /* 1 if this request already failed on it (a retry) */
  int32_t limit;         /* its concurrency limit now (its slots unless its pool adapts; docs/limit-rules.md) */
  int32_t queued;        /* requests waiting in its pool's admission queue now */
  int32_t dyn_class;     /* timing verdict: 0 fixed_point, 1 periodic, 2 chaotic, 3 noise, 4 trend
                            (sl_dyn_class_t); -1 = no verdict yet */
  int32_t dyn_samples;   /* inter-token gaps the verdict was computed over (0 = none) */
  double ewma_ttft_ms;   /* smoothed time to first token (0 = no sample yet) */
  double ewma_itl_ms;    /* smoothed inter-token time (0 = no sample yet) */
  double tokens_per_s;   /* smoothed decode speed of its streams */
  double error_rate;     /* smoothed share of attempts that failed, 0..1 */
  double dyn_lambda;     /* the verdict's largest Lyapunov exponent, per token (0 = none) */
  double dyn_age_ms;     /* how old the verdict is (0 = none) */
  const char *name;      /* "host:port" (borrowed) */
} sl_ffi_candidate_t;

typedef struct {
  const char *model;     /* requested model (borrowed) */
  int32_t n;             /* candidates */
  int32_t attempt;       /* 1 for the first attempt, 2.. for retries */
  int64_t prompt_chars;  /* size of the prompt in characters */
  int64_t max_tokens;    /* requested max tokens (0 = not given) */
  const char *session;   /* value of the session header, or NULL */
  uint64_t seed;         /* per-request random seed (deterministic policies ignore it) */
  sl_ffi_candidate_t cands[SL_FFI_MAX_CANDIDATES];
} sl_ffi_place_ctx_t;

#endif
