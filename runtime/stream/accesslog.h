/* accesslog.h: the one line every stream ends with.
 *
 * Plain text (key=value) or JSON (log.json), one line per stream, flushed
 * at once.  The error and placement texts are redacted (narrate.h's
 * sl_log_redact) before they are printed: they may quote an engine's reply
 * or a policy's reason, either of which may echo a credential.
 */
#ifndef SL_ACCESSLOG_H
#define SL_ACCESSLOG_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/base/narrate.h"

/* One stream's line.  Strings are borrowed for the call. */
typedef struct {
  const char *request_id;
  const char *pool;          /* "-" when never placed */
  const char *endpoint;      /* "-" when never placed */
  const char *model;
  int stream;                /* the client asked for SSE */
  double ttft_ms;            /* < 0: no first token */
  uint64_t tokens;           /* token events received */
  uint64_t tokens_written;   /* of those, the ones the kernel took */
  int has_usage;
  int64_t prompt_tokens, completion_tokens;
  double duration_ms;
  const char *end;           /* why it ended */
  int attempts;
  uint64_t generation;       /* 0: none */
  const char *placement;     /* the placement reason ("" = none) */
  uint32_t pinned_chunks_peak;
  const char *error;         /* "" = none */
  const char *guard;         /* the guard that ended or touched the stream ("loop", "ltl:x"), "" = none */
} sl_access_entry_t;

/* Writes e's line to log (JSON when json is set). */
void sl_access_log(FILE *log, int json, sl_narrator_t *nar, const sl_access_entry_t *e);

#endif
