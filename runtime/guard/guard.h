/* guard.h: guards, the analyzers that judge a live stream.
 *
 * A pool's "guards" config object compiles once into a guard set
 * (sl_guardset_t: immutable, shared by every stream of the pool); each
 * stream then runs its own guard (sl_guard_t), built once when the stream
 * starts, fed as the engine's events arrive, never allocating per token:
 *
 *   stop       the client's "stop" strings plus configured ones, matched
 *              across chunk boundaries on the content (Aho-Corasick);
 *   redaction  configured literals (and the pools' own secrets) and classes
 *              of secrets (analyzers/redact.h), replaced by a mask;
 *   budget     a completion-token ceiling, whatever max_tokens said;
 *   loop       a degenerate loop (analyzers/loops.h) over token ids when
 *              the engine gives them, else over a hash of each token's text;
 *   ltl        properties in the LTL syntax of analyzers/ltl.h over stream
 *              propositions (below), each a monitor stepped once per token
 *              and by the stream's timer for stalls.
 *
 * Text comes in channels (content, reasoning, tool-call arguments) as the
 * JSON-unescaped bytes of each event; offsets count bytes of a channel from
 * the stream's start.  Stop strings look at content only; redaction, loop
 * and LTL patterns at every channel.  The guard only judges: it says where
 * a stop begins, which ranges to mask, how much of each channel is final
 * (no future match can touch it: sl_guard_final) and which guard fired.
 * What the client then sees is the stream layer's job (stream/guarded.h).
 *
 * LTL propositions: text (a content token), reasoning, tool_call, finish
 * (the engine's finish), gap (the timer found no token for gap_ms), ttft (no
 * first token after ttft_ms), and each configured pattern's name (true at
 * the step whose text completed a match).
 */
#ifndef SL_GUARD_H
#define SL_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "analyzers/ahocorasick.h"
#include "analyzers/loops.h"
#include "analyzers/ltl.h"
#include "analyzers/redact.h"

#define SL_GUARD_MAX_STOPS 16     /* configured stop strings */
#define SL_GUARD_MAX_CLIENT_STOPS 8 /* per stream: a client's "stop" (OpenAI allows 4) and the
                                       tenant pipeline's sluice.add_stop */
#define SL_GUARD_MAX_STOP_LEN 256 /* bytes per stop string */
#define SL_GUARD_MAX_LITERALS 256 /* redaction literals (secrets included) */
#define SL_GUARD_MAX_LTL 8        /* monitors */
#define SL_GUARD_MAX_PATTERNS 32  /* LTL pattern strings, over all monitors */
#define SL_GUARD_MASK_MAX 64      /* bytes of the mask */
#define SL_GUARD_LOOP_BUF 80      /* tokens buffered for the loop detector (the largest batch, or the
                                     tokens before it is made, plus one event's ids) */
#define SL_GUARD_LOOP_IDS 16      /* token ids one event may carry (SL_EV_MAX_TOKEN_IDS) */

/* Text channels. */
enum { SL_CH_CONTENT = 0, SL_CH_REASONING = 1, SL_CH_TOOL = 2, SL_CH__COUNT };

/* What a guard does when it fires. */
typedef enum {
  SL_GACT_END = 0,   /* end the stream: finish, usage (if asked), [DONE] */
  SL_GACT_CANCEL,    /* usage (if asked), one error event naming the guard, close */
  SL_GACT_ANNOTATE,  /* narrate and count only */
  SL_GACT_REPLACE    /* redaction only: mask the match */
} sl_guard_action_t;

typedef enum {
  SL_GUARD_NONE = 0,
  SL_GUARD_STOP,
  SL_GUARD_REDACT,
  SL_GUARD_BUDGET,
  SL_GUARD_LOOP,
  SL_GUARD_LTL,
  SL_GUARD_PIPELINE, /* the tenant's pipeline acted (sl_guard_fire) */
  SL_GUARD__COUNT
} sl_guard_kind_t;

typedef struct {
  char name[64];              /* the property's name (config) */
  char *formula;              /* its text, canonical form */
  sl_ltl_t *f;                /* compiled */
  int p_text, p_reasoning, p_tool, p_finish, p_gap, p_ttft; /* bit index, -1 when unused */
  uint64_t gap_ms, ttft_ms;   /* thresholds (0 when the proposition is unused) */
  sl_guard_action_t action;
} sl_guard_ltl_t;

typedef struct sl_guardset_s {
  /* stop */
  char *stops[SL_GUARD_MAX_STOPS];
  size_t stop_lens[SL_GUARD_MAX_STOPS];
  int nstops;
  sl_ac_t *stop_ac;           /* the configured ones (NULL when none) */
  sl_guard_action_t stop_action;
  int client_stop;            /* 1 (default): the client's "stop" is enforced */
  /* redaction */
  sl_ac_t *redact_ac;         /* literals and secrets (NULL when none) */
  size_t redact_max_len;      /* longest literal */
  unsigned redact_classes;    /* SL_RX_* bits */
  sl_rx_set_t *rx;            /* the classes (NULL when none) */
  char mask[SL_GUARD_MASK_MAX];
  size_t mask_len;
  sl_guard_action_t redact_action;
  /* budget */
  int64_t budget;             /* completion tokens (0: off) */
  sl_guard_action_t budget_action;
  /* loop */
  int loop_on;
  sl_loops_config_t loop_cfg;
  size_t loop_size;           /* bytes of one detector */
  int loop_batch;             /* tokens pushed at once (1..64, default 8) */
  sl_guard_action_t loop_action;
  /* ltl */
  sl_guard_ltl_t ltl[SL_GUARD_MAX_LTL];
  int nltl;
  sl_ac_t *pat_ac;            /* every monitor's patterns (NULL when none) */
  uint8_t pat_ltl[SL_GUARD_MAX_PATTERNS]; /* pattern i belongs to monitor pat_ltl[i] */
  uint8_t pat_bit[SL_GUARD_MAX_PATTERNS]; /* as proposition bit pat_bit[i] */
} sl_guardset_t;

/* Compiles the guards object `obj` (NULL or JSON null: no guards; *out is
 * then NULL) of the pool named at `path` ("pools[0].guards"), with the
 * pool's and the operator's secrets (NULL-terminated list, may be NULL) as
 * extra redaction literals when "redact.secrets" is true.  Returns 0, or
 * SL_EINVAL with err naming the key ("pools[0].guards.ltl[1].formula:
 * column 7: expected ')'"). */
int sl_guardset_build(const cJSON *obj, const char *path, const char *const *secrets, sl_guardset_t **out,
                      char *err, size_t errlen);

/* Same from JSON text (what the config keeps). */
int sl_guardset_build_json(const char *json, const char *path, const char *const *secrets,
                           sl_guardset_t **out, char *err, size_t errlen);

void sl_guardset_free(sl_guardset_t *gs);

/* A tenant's guards object `add` merged into a pool's `base` (either may
 * be NULL), as a new object for sl_guardset_build.  A tenant may add
 * guards, never remove or weaken the operator's: a kind the pool does not
 * configure is taken whole from add; for a kind it does, add's stop
 * strings, redaction literals and classes and LTL properties are appended,
 * "client" and "secrets" can only turn on, a budget can only go down, and
 * the pool's actions, mask and loop settings stand.  Both inputs must
 * have been checked (sl_guardset_build) on their own. */
cJSON *sl_guards_merge(const cJSON *base, const cJSON *add);

/* Static names: "stop", "redaction", "budget", "loop", "ltl"; "end",
 * "cancel", "annotate", "replace". */
const char *sl_guard_kind_name(sl_guard_kind_t k);
const char *sl_guard_action_name(sl_guard_action_t a);

/* ---- one stream ---- */

/* A masked range of a channel: [start, end), shown as the set's mask, or
 * as `with` (owned) when a pipeline replaced it (sl_guard_replace). */
typedef struct {
  uint64_t start, end;
  char *with;                 /* NULL: the set's mask */
  size_t wlen;
} sl_guard_range_t;

typedef struct {
  uint64_t fed;               /* bytes fed */
  sl_ac_stream_t redact;      /* literals */
  sl_rx_stream_t rx;          /* classes */
  sl_ac_stream_t pat;         /* LTL patterns */
  sl_guard_range_t *masks;    /* ranges found and not yet forgotten, by start */
  int nmasks, capmasks;
} sl_guard_chan_t;

/* One firing. */
typedef struct {
  sl_guard_kind_t kind;
  sl_guard_action_t action;
  char name[72];              /* "stop", "loop", "ltl:<property>", ... */
  char detail[160];           /* what was seen ("period 3 from token 12") */
  int ch;                     /* redaction: the channel of the secret */
  uint64_t at;                /* redaction: where the secret starts; stop: where the stop starts */
} sl_guard_verdict_t;

typedef struct sl_guard_s {
  const sl_guardset_t *set;
  sl_ac_t *stop_ac;           /* configured + client stops (owned when own_stop_ac) */
  int own_stop_ac;
  sl_ac_stream_t stop;
  uint64_t stop_at;           /* content offset where the first stop begins (UINT64_MAX: none) */
  sl_guard_chan_t ch[SL_CH__COUNT];
  sl_loops_t *loops;          /* in loops_mem, made once the stream has min_length tokens (NULL before) */
  void *loops_mem;
  uint32_t lbuf[SL_GUARD_LOOP_BUF]; /* tokens not yet pushed into the detector */
  int lbn;
  sl_ltl_monitor_t mon[SL_GUARD_MAX_LTL];
  uint64_t pat_hits_ltl[SL_GUARD_MAX_LTL];
  int64_t tokens;             /* token steps taken */
  int64_t budget;             /* this stream's completion-token ceiling (0: none): the set's, or lower
                                 (sl_guard_cap_budget) */
  int fired;                  /* a terminal verdict was given (later ones are ignored) */
  sl_guard_verdict_t verdict; /* the terminal one (kind NONE until then) */
  sl_guard_verdict_t note;    /* the last annotate-only firing (or redaction) */
  uint64_t annotations;       /* annotate-only firings and replacements */
  int text_ended;             /* sl_guard_end_text was called */
  unsigned gap_stepped;       /* monitors stepped by the timer since the last token */
  uint64_t redactions;        /* masked ranges */
  int ltl_done[SL_GUARD_MAX_LTL]; /* the monitor gave a final verdict */
} sl_guard_t;

/* Sets g up for one stream: the set's guards plus the client's stop
 * strings (n of them, NULL-free; may be 0).  Allocates once, here.
 * Returns 0, or SL_EINVAL with err set for a client stop that is empty or
 * longer than SL_GUARD_MAX_STOP_LEN (the caller answers 400), or SL_ENOMEM. */
int sl_guard_init(sl_guard_t *g, const sl_guardset_t *set, const char *const *stops, const size_t *lens,
                  int n, char *err, size_t errlen);
void sl_guard_free(sl_guard_t *g);

/* Whether g looks at text at all (else callers skip unescaping). */
int sl_guard_wants_text(const sl_guard_t *g);

/* Feeds text of channel ch.  Records masks and the stop; a redaction whose
 * action is end or cancel fires at once (the text is never released).
 * Returns 1 when a terminal verdict was given (now or before), else 0. */
int sl_guard_feed(sl_guard_t *g, int ch, const char *text, size_t n);

/* Bytes of channel ch that are final: no stop, mask or pattern found later
 * can start before this offset.  At the end of the stream, after
 * sl_guard_end_text, every byte is. */
uint64_t sl_guard_final(const sl_guard_t *g, int ch);

/* The stream's text ended (finish, [DONE], or a guard ends it): matches in
 * progress are completed where valid (a class match at the end), and each
 * LTL monitor still open judges the finished trace.  Returns 1 when a
 * terminal verdict was given (now or before). */
int sl_guard_end_text(sl_guard_t *g);

/* Writes text[0..n), the channel's bytes from offset `at`, with masks
 * applied, into out[0..cap) (the mask appears once, where a masked range
 * starts).  Returns the bytes written, or (size_t)-1 if they would not
 * fit.  *masked (when non-NULL) is set when a mask touched the range. */
size_t sl_guard_render(const sl_guard_t *g, int ch, uint64_t at, const char *text, size_t n, char *out,
                       size_t cap, int *masked);

/* Whether a mask touches [a, b) of channel ch. */
int sl_guard_masked(const sl_guard_t *g, int ch, uint64_t a, uint64_t b);

/* Forgets masks that end at or before `upto` (their text went out). */
void sl_guard_forget(sl_guard_t *g, int ch, uint64_t upto);

/* One token event: its token ids (n may be 0: then text_hash stands for
 * the token), what it carried (SL_GSTEP_* bits).  Runs budget, loop and
 * LTL.  Returns 1 when a terminal verdict was given. */
enum { SL_GSTEP_TEXT = 1, SL_GSTEP_REASONING = 2, SL_GSTEP_TOOL = 4, SL_GSTEP_FINISH = 8 };
int sl_guard_step(sl_guard_t *g, unsigned what, const int32_t *ids, int n, uint32_t text_hash);

/* The timer: ms since the last token (or since the start when first is 0:
 * no token yet).  Steps the LTL monitors whose gap or ttft threshold passed.
 * Returns 1 when a terminal verdict was given. */
int sl_guard_tick(sl_guard_t *g, uint64_t idle_ms, int first);

/* The ms of idleness after which sl_guard_tick could next say something
 * (first: a token came already): the smallest threshold of a monitor still
 * open (0: no timer needed). */
uint64_t sl_guard_tick_ms(const sl_guard_t *g, int first);

/* Lowers the stream's completion-token ceiling to n (a tenant's
 * reservation); the budget guard ends the stream there with the set's
 * budget action (end when the set has no budget guard). */
void sl_guard_cap_budget(sl_guard_t *g, int64_t n);

/* Replaces channel ch's bytes [start, end) with with[0..n) when they are
 * shown (start < end).  A replacement that overlaps a secret's mask gives
 * way to the mask; one that overlaps an earlier replacement is refused.
 * Returns 0, SL_EINVAL (overlap, empty range) or SL_ENOMEM. */
int sl_guard_replace(sl_guard_t *g, int ch, uint64_t start, uint64_t end, const char *with, size_t n);

/* A verdict from outside the guard's own kernels (the pipeline): a
 * terminal action ends the stream like any guard's (the first wins), an
 * annotation is counted and kept as the note.  Returns g->fired. */
int sl_guard_fire(sl_guard_t *g, sl_guard_kind_t kind, sl_guard_action_t action, const char *name,
                  const char *detail);

/* 32-bit FNV-1a of a token's text, the loop guard's token when the engine
 * gives no ids. */
uint32_t sl_guard_hash(const char *p, size_t n);

#endif
