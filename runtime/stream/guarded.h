/* guarded.h: what a streaming client sees of a guarded stream.
 *
 * The guard (guard/guard.h) judges the text; this unit holds back the
 * engine's events while their text is not final (part of a stop string or
 * a secret could still be completing), and releases them in order: an
 * event nothing touched goes out as the engine's own bytes (no copy), one
 * whose text is masked or cut is re-encoded (output.h) with the text as the
 * client may see it.  Events are held whole rather than split, so holding
 * back costs no re-encoding: an event waits until all of its text is final,
 * at most until the next event shows the suspect bytes were innocent.
 * Re-encoded chunks carry the role, content, reasoning and finish; the
 * engine's logprobs and token ids of such a chunk are not repeated.
 *
 * Tool-call arguments are fed to the loop guard and to LTL patterns but
 * are not held or rewritten (docs/guards.md).
 */
#ifndef SL_GUARDED_H
#define SL_GUARDED_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/guard/guard.h"
#include "runtime/lua/pipeline.h"
#include "runtime/stream/output.h"
#include "runtime/upstream/event.h"

/* Events held back at once; past it the oldest are merged into one
 * re-encoded event (two neighbours that carry text only). */
#define SL_GQ 64

typedef struct {
  size_t off, n;              /* the engine's bytes, copied to hbuf[off..off+n) */
  int raw;                    /* they are there (0 once merged: re-encoded) */
  uint64_t tokens;
  uint64_t c0, c1, r0, r1;    /* its content and reasoning ranges */
  int role;                   /* it carried the role */
  sl_finish_t finish;         /* it carried a finish */
  int tools;                  /* it carried tool-call fragments (never merged) */
} sl_gheld_t;

typedef struct {
  sl_guard_t g;
  int text;                   /* the guard looks at text */
  int active;                 /* it has anything to do per token */
  sl_gheld_t q[SL_GQ];        /* held, oldest first (ring) */
  int qh, qn;
  char *tb[SL_CH__COUNT];     /* each channel's text from tbase to fed, unescaped (tool-call text
                                 is judged and dropped, never held) */
  size_t tcap[SL_CH__COUNT];
  uint64_t tbase[SL_CH__COUNT];
  uint64_t c0, c1, r0, r1;    /* the ranges of the event judged last */
  int whole;                  /* a whole answer: nothing is held, masks are kept */
  char *rbuf;                 /* rendering scratch (grown when a rewrite needs it) */
  size_t rcap;
  char *hbuf;                 /* the held events' bytes, oldest first: copied out of the read chunk,
                                 so a stream between tokens pins no 16 KiB chunk for a held word */
  size_t hlen, hcap;
  uint64_t rewritten;         /* events re-encoded */
  uint64_t carry;             /* tokens of events whose text was all masked, sent with the next */
  uint64_t forced;            /* held events sent before their text was final (a full queue) */
  /* The tenant's pipeline (sl_guarded_pipe): text reaches its on_chunk in
   * batches, and text it has not seen, or holds, is not final. */
  sl_pipeline_t *pipe;        /* NULL: none, or no on_chunk */
  int pipe_h;                 /* the stream's handle in it */
  const char *rid;            /* the request id (named to the watchdog) */
  sl_pipe_actions_t *acts;    /* scratch for the call's actions (shared: one call at a time) */
  size_t flush_bytes;         /* a batch is due at this many new bytes */
  uint64_t flush_ms;          /* ... or when its oldest byte waited this long */
  uint64_t now_ms;            /* the caller's clock, set before each judge and tick */
  uint64_t pseen[2];          /* bytes of content and reasoning on_chunk saw */
  uint64_t pfinal[2];         /* bytes it let through (what it saw, less what it holds) */
  uint64_t pwait_ms;          /* when the oldest byte it has not seen came (0: none) */
  uint64_t pcalls;            /* on_chunk calls */
  /* Told of every action the pipeline took (a != NULL), and of its failure
   * (a == NULL, err says why); may be NULL. */
  void (*on_action)(void *ud, const char *phase, const sl_pact_t *a, const char *err);
  void *action_ud;
} sl_guarded_t;

/* Starts gd over set with the client's stop strings (see sl_guard_init). */
int sl_guarded_init(sl_guarded_t *gd, const sl_guardset_t *set, const char *const *stops, const size_t *lens,
                    int n, char *err, size_t errlen);
void sl_guarded_free(sl_guarded_t *gd);

/* Gives gd a pipeline whose on_chunk sees the stream's text in batches of
 * flush_bytes, or after flush_ms, or at the end (a pipeline without
 * on_chunk is not attached).  acts is scratch the caller owns.  Call after
 * sl_guarded_init, before the first judge. */
void sl_guarded_pipe(sl_guarded_t *gd, sl_pipeline_t *p, int handle, const char *request_id, size_t flush_bytes,
                     uint64_t flush_ms, sl_pipe_actions_t *acts);

/* When the pipeline's next batch is due by time (ms on the caller's clock),
 * or 0 when nothing waits. */
uint64_t sl_guarded_pipe_due(const sl_guarded_t *gd);

/* The clock reached gd->now_ms: calls on_chunk when a batch is due and, for
 * a streamed answer (o not NULL), releases what that made final.  Returns
 * 1 when the pipeline gave a terminal verdict, < 0 when the client is
 * gone, else 0. */
int sl_guarded_pipe_tick(sl_guarded_t *gd, sl_output_t *o);

/* Feeds one chunk event's text to the guard and steps it (token: the event
 * carries text, reasoning or a tool call).  Used for both streamed and
 * whole answers.  Returns 1 when a terminal verdict is given. */
int sl_guarded_judge(sl_guarded_t *gd, const sl_event_t *ev, int token);

/* After sl_guarded_judge said 0 for a streamed answer: sends the event (its
 * bytes p[0..n) in pin, `tokens` of them) at once when nothing is held and
 * its text is final and untouched; else queues a copy of its bytes, and
 * releases every held event whose text is final.  Returns 0, or < 0 when
 * the client is gone. */
int sl_guarded_relay(sl_guarded_t *gd, sl_output_t *o, const sl_event_t *ev, const char *p, size_t n,
                     sl_chunk_t *pin, uint64_t tokens);

/* The text ended (the engine's finish or [DONE]): everything held goes out.
 * Returns 1 when that gave a terminal verdict (a property the finished
 * trace violates), < 0 when the client is gone, else 0. */
int sl_guarded_flush(sl_guarded_t *gd, sl_output_t *o);

/* After a terminal verdict: releases what the verdict lets through (a stop:
 * the text before it; end: what was held before the firing event, with
 * that event too for a budget; cancel: nothing) and drops the rest.  The
 * current event (the one that fired, not yet queued) is passed again for
 * the stop and budget cases.  Returns 0 or < 0 when the client is gone. */
int sl_guarded_settle(sl_guarded_t *gd, sl_output_t *o, const sl_event_t *ev, const char *p, size_t n,
                      sl_chunk_t *pin, uint64_t tokens);

/* For a whole answer: the assembled content text[0..len) as the client may
 * see it (cut at a stop, masked), in a new buffer (sl_malloc; *out_len set). */
char *sl_guarded_whole_text(sl_guarded_t *gd, const char *text, size_t len, size_t *out_len);

/* The finish a terminal verdict gives the client. */
sl_finish_t sl_guarded_finish(const sl_guard_verdict_t *v);

#endif
