/* narrate.h: key events queued from C, told as sentences by a Lua policy.
 *
 * Anything in the runtime that decides something an operator wants to read
 * (a placement and its reason, a reload that worked or failed, an endpoint
 * becoming ready or not, a cooldown, the first backpressure pause of a
 * stream, a client cancel, a stream's end) pushes one fixed-size record
 * into its gateway's ring here.  Pushing is a copy: no allocation, no Lua.  Once per
 * loop iteration, if the ring is not empty, the daemon hands the whole
 * batch to the current generation's narration policy (one lua_pcall per
 * batch, never per event, never from inside an FFI call); the policy calls
 * sl_ffi_narrate_emit with a sentence per event, and the sentence is logged
 * beside the event's structured fields, correlated by request id.  Without
 * a policy (or when it fails) a plain C rendering is logged instead.
 *
 * Every log line sluice writes goes through sl_log_redact first: bearer
 * tokens, API-key-looking strings and every configured secret (pool
 * api_keys, log.secrets) become "[redacted]".
 */
#ifndef SL_NARRATE_H
#define SL_NARRATE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime/base/counters.h"

enum {
  SL_NAR_PLACEMENT = 1,   /* text: reason; endpoint; attempt */
  SL_NAR_RELOAD_OK,       /* generation: the new one; text: summary */
  SL_NAR_RELOAD_FAILED,   /* generation: the one that stays; text: file:line: message */
  SL_NAR_READY,           /* endpoint passed its health check */
  SL_NAR_NOT_READY,       /* endpoint failed its health check; text: why */
  SL_NAR_COOLDOWN,        /* endpoint cools down; ms: for how long; tokens: consecutive failures */
  SL_NAR_PAUSE,           /* first backpressure pause of a stream; tokens: relayed so far */
  SL_NAR_CANCEL,          /* client went away; tokens: relayed (and counted) */
  SL_NAR_STREAM_END,      /* text: end reason; ms: duration; tokens; attempt: attempts */
  SL_NAR_GUARD,           /* a guard fired; text: "name action: detail"; tokens: received so far */
  SL_NAR_LIMIT,           /* an endpoint's concurrency limit moved; text: why; tokens: the new limit; attempt:
                             the old one */
  SL_NAR_QUEUE,           /* a request waited in its pool's queue; text: how it left ("placed", "timed out",
                             "refused: queue full", "client gone"); ms: its wait; tokens: queued now */
  SL_NAR_SHARED,          /* the shared state's Redis went down (attempt 0) or came back (attempt 1); text: why
                             or where; tokens: outages so far */
  SL_NAR_ENGINE,          /* a managed engine's life (runtime/gateway/engines.c); text: what happened, starting
                             with the word: "start", "ready", "crash", "restart", "swap" or "stop"; endpoint;
                             model: the catalog model or ""; attempt: its restarts; ms: a delay or an uptime */
  SL_NAR__COUNT
};

typedef struct {
  int32_t kind;           /* SL_NAR_* */
  int32_t attempt;        /* placement: attempt number; stream end: attempts */
  uint64_t generation;    /* generation id involved (0 = none) */
  double ms;              /* duration, cooldown or TTFT, per kind */
  int64_t tokens;         /* tokens relayed, or a count, per kind */
  char request_id[72];    /* "" when not about a request */
  char endpoint[64];      /* "host:port" or "" */
  char model[64];         /* requested model or "" */
  char text[256];         /* reason, error or summary (may be truncated) */
} sl_ffi_narration_event_t;

#define SL_NARRATE_RING 1024

typedef struct sl_narrator_s sl_narrator_t;

/* A narrator: where lines go (NULL = stderr), their format, the secrets to
 * redact (copied; a NULL entry ends the list; NULL = none) and the counters
 * it bumps (narration_dropped, narration_policy_errors; may be NULL).  One
 * per gateway; every function below that takes one accepts NULL as "no
 * narration" (pushes are dropped, redaction uses the built-in shapes only). */
sl_narrator_t *sl_narrator_new(FILE *log, int json, const char *const *secrets, sl_counters_t *counters);
void sl_narrator_free(sl_narrator_t *nar);

/* Queues one event (copied; strings may be NULL).  When the ring is full
 * the event is dropped and counted (narration_dropped). */
void sl_narrate_push(sl_narrator_t *nar, int kind, const char *request_id, const char *endpoint, const char *model, const char *text,
                     int attempt, uint64_t generation, double ms, int64_t tokens);

/* Events queued now. */
size_t sl_narrate_pending(const sl_narrator_t *nar);

/* The batch being narrated: *n events at the returned pointer (valid only
 * during the narration call).  For the Lua side. */
const sl_ffi_narration_event_t *sl_ffi_narrate_batch(const sl_narrator_t *nar, int32_t *n);

/* The policy's sentence for event i of the batch: logged (redacted) beside
 * that event's fields; an empty sentence (len 0) means "say nothing about
 * it".  Returns 0, or SL_EINVAL for an i out of range. */
int sl_ffi_narrate_emit(sl_narrator_t *nar, int32_t i, const char *sentence, size_t len);

/* Narrates everything queued: takes the batch, calls run (the policy; may
 * be NULL) with ud, then logs a plain rendering of every event the policy
 * did not emit a sentence for.  run returns 0, or < 0 with a message (the
 * failure is logged once per batch). */
void sl_narrate_flush(sl_narrator_t *nar, int (*run)(void *ud, char *err, size_t errlen), void *ud);

/* A trial run of a narration policy (sluice check, and every generation
 * before it goes live): hands events[0..n) to run as one batch, as a flush
 * would, but the sentences go to say (one "  kind: sentence" line each,
 * redacted; NULL = nowhere) instead of the log, and the live ring is not
 * touched.  Returns what run returned (its message in err), or SL_EINVAL
 * when a flush is in progress or n is out of range. */
int sl_narrate_trial(sl_narrator_t *nar, const sl_ffi_narration_event_t *events, int32_t n, int (*run)(void *ud, char *err, size_t errlen),
                     void *ud, FILE *say, char *err, size_t errlen);

/* ---- a tap: who else hears the narration (the admin web view) ----
 *
 * One event as it was told: the event and the sentence logged for it
 * (redacted, cut to SL_NARRATE_TOLD_MAX - 1 bytes; "" when the policy
 * chose to say nothing). */
#define SL_NARRATE_TOLD_MAX 256

typedef struct {
  const sl_ffi_narration_event_t *event;  /* borrowed for the call */
  char sentence[SL_NARRATE_TOLD_MAX];
} sl_narrate_told_t;

/* Called once per flushed batch, after its lines are logged, with the
 * batch's n events in order; the array is borrowed for the call.  Never
 * called per event, nor for a trial run. */
typedef void (*sl_narrate_tap_cb)(void *ud, const sl_narrate_told_t *told, int32_t n);

/* Sets nar's one tap (cb NULL removes it).  The first set allocates the
 * batch's sentence table (SL_NARRATE_RING entries), kept until
 * sl_narrator_free; without a tap a flush costs nothing more. */
void sl_narrate_set_tap(sl_narrator_t *nar, sl_narrate_tap_cb cb, void *ud);

/* The name of an event kind ("placement", "guard", ...; static), or "?". */
const char *sl_narrate_kind_name(int kind);

/* Copies in to out (cap bytes, NUL-terminated) with secrets replaced by
 * "[redacted]".  Returns out. */
char *sl_log_redact(const sl_narrator_t *nar, const char *in, char *out, size_t cap);

#endif
