/* ahocorasick.h: multi-pattern matching over bytes that arrive in chunks.
 *
 * For stop sequences and redaction on a token stream: an automaton built
 * once from a set of byte patterns (sl_ac_t, immutable, shareable between
 * streams and threads) and a small per-stream cursor (sl_ac_stream_t,
 * caller-owned) fed chunk by chunk.  Matches that span chunk boundaries are
 * found; every occurrence of every pattern is reported, overlapping ones
 * included, in order of end position (longest pattern first at one end).
 * After each chunk, sl_ac_holdback() gives the fewest trailing bytes that
 * could still become part of a match: the caller may release everything
 * before them at once, so text is delayed only while it might be a stop
 * sequence or a secret.  With SL_AC_NOCASE, ASCII letters match either case
 * (other bytes match exactly).
 *
 * The automaton is a full transition table over byte classes (the bytes
 * that occur in some pattern, plus one class for all others), so a byte
 * costs one table load; states that end a pattern are numbered last, so the
 * check for a match is one comparison.  Memory: the caller provides it
 * (sl_ac_size() + sl_ac_build()) or sl_ac_new() mallocs it once; feeding
 * never allocates and never calls back.  Positions are byte offsets from the
 * start of the stream.  Errors are the negative SL_AN_E* codes of
 * analyzers/status.h.  (Prefix sl_ac_: "Aho-Corasick".)
 */
#ifndef SL_AHOCORASICK_H
#define SL_AHOCORASICK_H

#include <stddef.h>
#include <stdint.h>

#include "analyzers/status.h"

/* Build flags. */
enum {
  SL_AC_NOCASE = 1 /* ASCII case-insensitive */
};

/* A compiled pattern set.  Opaque; read-only after build. */
typedef struct sl_ac_s sl_ac_t;

/* A stream's position in the automaton.  Caller-owned (e.g. on the stack
 * or inside a stream object); copy it to fork a stream. */
typedef struct {
  const sl_ac_t *ac; /* the automaton fed */
  uint32_t state;    /* current state, pre-multiplied table offset */
  uint64_t offset;   /* bytes fed so far */
} sl_ac_stream_t;

/* One occurrence. */
typedef struct {
  uint64_t end;     /* stream offset one past the match's last byte */
  uint32_t pattern; /* index of the pattern in the build arrays */
  uint32_t len;     /* pattern length: the match starts at end - len */
} sl_ac_match_t;

/* Bytes of memory sl_ac_build() needs for these patterns (pats[i] of
 * lens[i] bytes, i < n) and flags, or 0 when the set is invalid: n == 0, a
 * NULL pointer, an empty pattern, more than 2^20 patterns or 2^24 pattern
 * bytes in all. */
size_t sl_ac_size(const char *const *pats, const size_t *lens, size_t n, unsigned flags);

/* Builds the automaton in mem (8-byte aligned, size bytes).  The patterns
 * are read during the call only.  Returns 0 and sets *out (a pointer into
 * mem); SL_AN_EINVAL for an invalid set, flags or mem; SL_AN_ETOOBIG if size is
 * below sl_ac_size().  The caller keeps owning mem; no teardown is needed. */
int sl_ac_build(void *mem, size_t size, const char *const *pats, const size_t *lens, size_t n,
                unsigned flags, sl_ac_t **out);

/* Like sl_ac_build() with memory from malloc (SL_AN_ENOMEM if that fails).
 * Free with sl_ac_free() once no stream uses it. */
int sl_ac_new(const char *const *pats, const size_t *lens, size_t n, unsigned flags,
              sl_ac_t **out);

/* Frees an automaton made by sl_ac_new(); NULL is ignored. */
void sl_ac_free(sl_ac_t *ac);

/* Number of states (1 + distinct pattern prefixes). */
uint32_t sl_ac_states(const sl_ac_t *ac);

/* The most matches a single byte can produce (the longest chain of
 * patterns that are suffixes of one another); a match array of at least
 * this many entries always lets sl_ac_feed() make progress. */
uint32_t sl_ac_max_matches(const sl_ac_t *ac);

/* Starts a stream on ac at offset 0. */
void sl_ac_stream_init(sl_ac_stream_t *st, const sl_ac_t *ac);

/* Feeds buf[0..len) and writes the matches it completes to out[0..cap) in
 * order, setting *nout.  Stops early, before a byte whose matches would not
 * fit, with *consumed < len: drain out and feed the rest.  Returns 0;
 * SL_AN_EINVAL for NULL arguments (buf may be NULL when len is 0; out may be
 * NULL when cap is 0, but then a match stops the feed); SL_AN_ETOOBIG when
 * nothing could be consumed because cap < sl_ac_max_matches().  Never
 * allocates. */
int sl_ac_feed(sl_ac_stream_t *st, const void *buf, size_t len, sl_ac_match_t *out, size_t cap,
               size_t *nout, size_t *consumed);

/* The fewest trailing bytes of what was fed that a match could still end
 * in: the longest suffix of the stream that is a prefix of some pattern and
 * can still be extended.  Bytes before those can be released; at the end of
 * the stream nothing needs holding. */
size_t sl_ac_holdback(const sl_ac_stream_t *st);

#endif
