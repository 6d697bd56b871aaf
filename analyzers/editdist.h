/* editdist.h: edit distance and longest common subsequence over token ids.
 *
 * Sequences are arrays of 32-bit token ids from an alphabet of any size.
 * Before each comparison the ids of the shorter sequence (the "pattern") are
 * remapped to a dense alphabet 1..k through a small open-addressing table,
 * so a vocabulary of 200,000 ids costs the same as bytes; the distances are
 * then computed bit-parallel, 64 pattern positions per machine word:
 * Levenshtein distance by Myers' algorithm in Hyyrö's block form, LCS by the
 * Allison-Dix / Hyyrö bit-vector recurrence.  Cost per text token is
 * O(ceil(m / 64)) word operations for a pattern of m tokens.
 *
 * Two forms:
 *  - batch: sl_editdist_levenshtein() / sl_editdist_lcs() over two whole
 *    arrays, with a scratch object sized once for a maximum length;
 *  - incremental: an sl_editdist_stream_t holds a fixed pattern and takes
 *    the text one token at a time, updating one DP column per token
 *    (global distance to the text so far, best approximate occurrence ending
 *    at the newest token, or LCS with the text so far).
 *
 * Memory: every object lives in memory the caller provides (size query +
 * init) or that a _new() function allocates once with malloc; no call after
 * init allocates.  Objects are not thread-safe; use one per thread.
 * Lengths are in tokens.  Errors are the negative SL_AN_E* codes of
 * analyzers/status.h.
 */
#ifndef SL_EDITDIST_H
#define SL_EDITDIST_H

#include <stddef.h>
#include <stdint.h>

#include "analyzers/status.h"

/* Scratch for batch comparisons: the id remap table and the pattern bit
 * masks, sized for patterns up to max_len tokens.  Opaque. */
typedef struct sl_editdist_s sl_editdist_t;

/* Bytes of memory sl_editdist_init() needs for patterns of up to max_len
 * tokens (the shorter of the two sequences is the pattern); 0 if max_len is
 * too large to represent (over 2^28).  The memory grows as
 * max_len * ceil(max_len / 64) * 8 bytes (about 130 KB at 1000). */
size_t sl_editdist_size(size_t max_len);

/* Places a scratch object in mem (8-byte aligned, size bytes, at least
 * sl_editdist_size(max_len)).  Returns 0 and sets *out (a pointer into mem);
 * SL_AN_EINVAL for a NULL or misaligned mem or max_len over the limit;
 * SL_AN_ETOOBIG if size is too small.  The caller keeps owning mem; the object
 * needs no teardown. */
int sl_editdist_init(void *mem, size_t size, size_t max_len, sl_editdist_t **out);

/* Like sl_editdist_init() with memory from malloc.  Returns 0 and sets *out;
 * SL_AN_EINVAL as above, SL_AN_ENOMEM if malloc fails.  Free with
 * sl_editdist_free(). */
int sl_editdist_new(size_t max_len, sl_editdist_t **out);

/* Frees an object made by sl_editdist_new(); NULL is ignored.  Never call it
 * on an object placed by sl_editdist_init(). */
void sl_editdist_free(sl_editdist_t *ed);

/* Levenshtein distance (unit-cost insert, delete, substitute) between
 * a[0..na) and b[0..nb).  Returns 0 and sets *dist; SL_AN_EINVAL if a pointer
 * is NULL while its length is not 0 or dist is NULL; SL_AN_ETOOBIG if
 * min(na, nb) exceeds the scratch's max_len.  The arrays are only read. */
int sl_editdist_levenshtein(sl_editdist_t *ed, const uint32_t *a, size_t na,
                            const uint32_t *b, size_t nb, size_t *dist);

/* Length of a longest common subsequence of a[0..na) and b[0..nb).
 * Returns and fails as sl_editdist_levenshtein(), with the result in *len. */
int sl_editdist_lcs(sl_editdist_t *ed, const uint32_t *a, size_t na,
                    const uint32_t *b, size_t nb, size_t *len);

/* What an incremental stream reports after each token. */
enum {
  SL_EDITDIST_GLOBAL = 0, /* Levenshtein(pattern, all text so far) */
  SL_EDITDIST_SEARCH = 1, /* min over i of Levenshtein(pattern, text[i..now]):
                             the best approximate occurrence ending here */
  SL_EDITDIST_LCS = 2     /* LCS length of pattern and all text so far */
};

/* Incremental comparison of a fixed pattern with a growing text.  Opaque. */
typedef struct sl_editdist_stream_s sl_editdist_stream_t;

/* Bytes sl_editdist_stream_init() needs for a pattern of m tokens; 0 if m
 * is over 2^28. */
size_t sl_editdist_stream_size(size_t m);

/* Places a stream in mem (8-byte aligned, size bytes) for pattern[0..m)
 * (copied: the caller may free pattern afterwards) and mode (an
 * SL_EDITDIST_* value).  m may be 0.  Returns 0 and sets *out; SL_AN_EINVAL for
 * a bad pointer, alignment or mode; SL_AN_ETOOBIG if size is too small.  The
 * caller keeps owning mem; no teardown is needed. */
int sl_editdist_stream_init(void *mem, size_t size, const uint32_t *pattern,
                            size_t m, int mode, sl_editdist_stream_t **out);

/* Like sl_editdist_stream_init() with memory from malloc (SL_AN_ENOMEM if that
 * fails).  Free with sl_editdist_stream_free(). */
int sl_editdist_stream_new(const uint32_t *pattern, size_t m, int mode,
                           sl_editdist_stream_t **out);

/* Frees a stream made by sl_editdist_stream_new(); NULL is ignored. */
void sl_editdist_stream_free(sl_editdist_stream_t *s);

/* Appends one text token and sets *value to the mode's measure over the
 * text so far (see SL_EDITDIST_*).  O(ceil(m / 64)); never allocates.
 * Returns 0, or SL_AN_EINVAL if s or value is NULL. */
int sl_editdist_stream_push(sl_editdist_stream_t *s, uint32_t tok, size_t *value);

/* The measure for the text so far without adding a token (for an empty text:
 * m for GLOBAL and SEARCH, 0 for LCS). */
size_t sl_editdist_stream_value(const sl_editdist_stream_t *s);

/* Tokens pushed since init or the last reset. */
uint64_t sl_editdist_stream_count(const sl_editdist_stream_t *s);

/* Forgets the text, keeping the pattern and mode. */
void sl_editdist_stream_reset(sl_editdist_stream_t *s);

#endif
