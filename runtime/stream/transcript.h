/* transcript.h: one stream recorded as NDJSON, for `sluice replay`.
 *
 * A sampled stream (transcripts.sample, a pool's or a tenant's
 * "transcripts") keeps its transcript in memory while it runs, bounded by
 * transcripts.max_bytes (past it the events stop being recorded and the
 * end line says so), and writes it in one asynchronous file write when it
 * ends, to <transcripts.dir>/<request id>.ndjson.  One JSON object a line,
 * "t" in ms since the stream started:
 *
 *   {"type":"request","id":..,"tenant":..,"model":..,"stream":true,
 *    "stops":[..],"pipeline":"file"|null,"flush_bytes":N,"flush_ms":N,
 *    "body":{the request as the engine got it, after on_request}}
 *   {"type":"attempt","t":..,"endpoint":..,"pool":..,"guards":{..}|null}
 *   {"type":"event","t":..,"data":"<the engine's JSON payload>"}
 *   {"type":"tick","t":..}          the pipeline's timer flushed a batch
 *   {"type":"action","t":..,"phase":"on_chunk","action":"replace",
 *    "start":..,"stop":..,"text":..}   (or "error":".." when it failed)
 *   {"type":"verdict","t":..,"kind":..,"name":..,"action":..,"detail":..}
 *   {"type":"end","t":..,"reason":..,"prompt_tokens":..,
 *    "completion_tokens":..,"truncated":false}
 *
 * Appending grows one buffer by doubling: no allocation per token in the
 * steady state, and none at all for streams not sampled.
 */
#ifndef SL_TRANSCRIPT_H
#define SL_TRANSCRIPT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "runtime/guard/guard.h"
#include "runtime/lua/pipeline.h"

typedef struct sl_transcript_s sl_transcript_t;

sl_transcript_t *sl_transcript_new(size_t max_bytes);
void sl_transcript_free(sl_transcript_t *t);

/* Appends bytes as they are (the caller's JSON). */
void sl_transcript_raw(sl_transcript_t *t, const char *p, size_t n);
/* Appends p[0..n) as a JSON string, quoted. */
void sl_transcript_str(sl_transcript_t *t, const char *p, size_t n);
/* Appends printf-formatted text. */
void sl_transcript_fmt(sl_transcript_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void sl_transcript_event(sl_transcript_t *t, double ms, const char *json, size_t n);
void sl_transcript_tick(sl_transcript_t *t, double ms);
void sl_transcript_verdict(sl_transcript_t *t, double ms, const sl_guard_verdict_t *v);
/* An action the pipeline took in phase (a != NULL), or its failure (err). */
void sl_transcript_action(sl_transcript_t *t, double ms, const char *phase, const sl_pact_t *a, const char *err);
void sl_transcript_end(sl_transcript_t *t, double ms, const char *reason, int64_t prompt, int64_t completion);

/* Writes the transcript to path with the loop's file requests and frees it
 * (it is the write's from here); done(ud, status) is called on the loop
 * with 0 or a negative libuv error.  Returns 0, or a negative libuv error
 * (t is freed, done is not called). */
int sl_transcript_write(sl_transcript_t *t, uv_loop_t *loop, const char *path, void (*done)(void *ud, int status),
                        void *ud);

#endif
