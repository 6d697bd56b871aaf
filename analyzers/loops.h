/* loops.h: repetition and loop detection on a stream of token ids.
 *
 * A model that loops emits the same span of tokens over and over, exactly
 * or with small changes (a word that differs each time round).  The
 * detector takes the stream one token at a time and reports a loop as soon
 * as the newest tokens form at least `min_repeats` consecutive periods of
 * the same length p whose neighbours differ by at most floor(ratio * p)
 * edits (Levenshtein distance, analyzers/editdist.h), and span at least
 * `min_length` tokens.  A report gives the loop's start in the stream, its
 * period, how many whole periods it spans and the largest edit distance
 * between consecutive periods; afterwards the loop is followed, one check per
 * completed period, until it breaks.
 *
 * Per token the detector updates, for every candidate period, a count of
 * recent positions that agree with the token p (or p +- 1) places earlier;
 * only a period whose count is high enough is checked with edit distances.
 * That check is the definition of a loop, and sl_loops_check() applies it to
 * a whole buffer (the batch form).  Memory comes from the caller (size query
 * + init) or one malloc in sl_loops_new(); pushing never allocates.  Units:
 * tokens; positions count tokens from 0 since init or reset.  Errors are
 * the negative SL_AN_E* codes of analyzers/status.h.
 */
#ifndef SL_LOOPS_H
#define SL_LOOPS_H

#include <stddef.h>
#include <stdint.h>

#include "analyzers/status.h"

/* Detector settings. */
typedef struct {
  uint32_t window;       /* tokens of history kept and searched (default 256) */
  uint32_t min_period;   /* shortest period looked for, >= 1 (default 1) */
  uint32_t max_period;   /* longest period (default 64); every period p must
                            fit repeats(p) * p + 2 <= window */
  uint32_t min_repeats;  /* whole periods a loop must span, >= 2 (default 3) */
  uint32_t min_length;   /* tokens a loop must span (default 16), so short
                            periods need more repeats: repeats(p) =
                            max(min_repeats, ceil(min_length / p)) */
  double max_dist_ratio; /* consecutive periods may differ by at most
                            floor(ratio * p) edits; 0 finds exact loops only
                            (default 0.3) */
} sl_loops_config_t;

/* What a push reports. */
enum {
  SL_LOOPS_NONE = 0,   /* no loop at the newest token */
  SL_LOOPS_NEW = 1,    /* a loop was found at this token */
  SL_LOOPS_ACTIVE = 2, /* the loop found earlier still holds */
  SL_LOOPS_ENDED = 3   /* the loop broke at this token; the report is its
                          final extent */
};

/* A loop. */
typedef struct {
  int state;         /* SL_LOOPS_* */
  uint32_t period;   /* tokens per period */
  uint64_t start;    /* stream position of the loop's first token */
  uint64_t length;   /* tokens from start to the loop's last token */
  uint32_t repeats;  /* whole periods in length (length / period) */
  uint32_t max_dist; /* largest edit distance between consecutive periods
                        (0 for an exact loop) */
} sl_loop_t;

/* The detector.  Opaque. */
typedef struct sl_loops_s sl_loops_t;

/* Fills cfg with the defaults above. */
void sl_loops_config_default(sl_loops_config_t *cfg);

/* Bytes sl_loops_init() needs for cfg, or 0 if cfg is invalid (see the
 * field comments; window is at most 2^24). */
size_t sl_loops_size(const sl_loops_config_t *cfg);

/* Places a detector in mem (8-byte aligned, size bytes) configured by cfg
 * (copied).  Returns 0 and sets *out; SL_AN_EINVAL for a bad pointer,
 * alignment or configuration; SL_AN_ETOOBIG if size is too small.  The caller
 * keeps owning mem; no teardown is needed. */
int sl_loops_init(void *mem, size_t size, const sl_loops_config_t *cfg, sl_loops_t **out);

/* Like sl_loops_init() with memory from malloc (SL_AN_ENOMEM if that fails).
 * Free with sl_loops_free(). */
int sl_loops_new(const sl_loops_config_t *cfg, sl_loops_t **out);

/* Frees a detector made by sl_loops_new(); NULL is ignored. */
void sl_loops_free(sl_loops_t *lp);

/* Appends one token and fills *out (out->state says whether a loop is
 * found, holds, or ended; the other fields describe that loop and are zero
 * for SL_LOOPS_NONE).  Cost: O(max_period) comparisons, plus edit distances
 * when a period's agreement count is high, and one edit distance per
 * completed period while a loop is followed.  Never allocates.  Returns 0,
 * or SL_AN_EINVAL if lp or out is NULL. */
int sl_loops_push(sl_loops_t *lp, uint32_t tok, sl_loop_t *out);

/* The batch form: whether tokens[0..n) ends in a loop by the detector's
 * definition (the shortest qualifying period wins), looking back at most
 * window tokens.  Positions in *out count from tokens[0]; out->state is
 * SL_LOOPS_NEW when a loop is found, else SL_LOOPS_NONE.  Uses lp's settings
 * and scratch but not its stream state.  Returns 0, or SL_AN_EINVAL for NULL
 * arguments (tokens may be NULL when n is 0). */
int sl_loops_check(sl_loops_t *lp, const uint32_t *tokens, size_t n, sl_loop_t *out);

/* Forgets the stream, keeping the settings. */
void sl_loops_reset(sl_loops_t *lp);

/* Tokens pushed since init or the last reset. */
uint64_t sl_loops_count(const sl_loops_t *lp);

#endif
