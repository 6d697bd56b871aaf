/* placement.h: where a stream's attempt goes.
 *
 * Two steps, and the seam between them is where a Lua policy plugs in:
 * sl_placement_prefilter drops ineligible endpoints (model not served, not
 * ready, draining, cooling down, context too small) into a compact
 * candidate array; sl_placement_choose asks the generation's policy to pick
 * one, or uses sl_placement_least_loaded (fewest streams per slot, ties to
 * the lowest endpoint id, so the choice is deterministic) when there is no
 * policy or the policy failed.  Times are uv_hrtime nanoseconds.
 */
#ifndef SL_PLACEMENT_H
#define SL_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime/lua/generation.h"
#include "runtime/upstream/registry.h"

typedef struct {
  sl_endpoint_t *ep;
  int inflight;
  int slots;
} sl_candidate_t;

/* Why nothing was eligible (sl_placement_prefilter's *cause). */
enum {
  SL_PLACE_OK = 0,          /* some candidate is eligible */
  SL_PLACE_NO_MODEL,        /* no pool serves the model */
  SL_PLACE_NOT_READY,       /* endpoints serve it but none is ready (or all drain) */
  SL_PLACE_COOLING,         /* ready ones are all cooling down after failures */
  SL_PLACE_TOO_LARGE,       /* every pool serving it has a context smaller than the request */
  SL_PLACE_FULL             /* ready ones are all at their concurrency limit (the relay's filter) */
};

/* Fills cands (capacity cap) with the endpoints eligible for model at time
 * now and returns how many.  need_tokens (0 = unknown) is the request's
 * estimated prompt plus max tokens: a pool whose context_tokens is set and
 * smaller is not eligible.  When none is eligible, returns 0, sets *cause
 * (may be NULL) and writes the reason ("no pool serves model \"x\"", "no
 * ready endpoint serves model \"x\"", ...) into reason. */
int sl_placement_prefilter(sl_registry_t *reg, const char *model, int64_t need_tokens, uint64_t now,
                           sl_candidate_t *cands, int cap, int *cause, char *reason, size_t reasonlen);

/* The default choice: among candidates not in avoid[0..navoid) (endpoint
 * ids tried already; if every candidate was tried, they are allowed again),
 * the fewest streams per slot, ties to the lowest id.  Returns the index in
 * cands and writes a short reason ("least loaded: 2/16 streams"). */
int sl_placement_least_loaded(const sl_candidate_t *cands, int n, const int *avoid, int navoid,
                              char *reason, size_t reasonlen);

/* What the policy sees of the request being placed. */
typedef struct {
  const char *model;
  int attempt;               /* 1 for the first attempt */
  int64_t prompt_chars;
  int64_t max_tokens;        /* 0 = not given */
  const char *session;       /* X-Session-Id, or NULL */
  uint64_t seed;             /* a random number for the policy's own draws */
  const int *tried;          /* endpoint ids tried already */
  int ntried;
  const char *request_id;    /* for the log */
} sl_place_req_t;

/* The choice step: gen's Lua policy over the candidates (ctx is the scratch
 * context handed to it through the FFI, one per loop), or the C
 * least-loaded rule when gen has no policy.  A policy that raises, returns
 * nonsense or runs past its instruction budget does not fail the request:
 * the least-loaded rule chooses instead (never simply the first candidate,
 * which would pile every request on one endpoint for as long as the policy
 * is broken); the error is counted and logged on log with the policy's file
 * and line.  Returns the index in cands; writes why into reason. */
int sl_placement_choose(sl_generation_t *gen, sl_ffi_place_ctx_t *ctx, const sl_registry_t *reg,
                        const sl_candidate_t *cands, int n, const sl_place_req_t *pr, FILE *log, char *reason,
                        size_t reasonlen);

#endif
