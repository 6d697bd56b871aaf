/* redact.h: streaming scanner for classes of secrets in a token stream.
 *
 * For the redaction guard: the JSON-unescaped text of a stream arrives in
 * small pieces, split anywhere (even inside a UTF-8 character), and every
 * secret in it must be masked before the bytes reach the client.  Literal
 * secrets are found by analyzers/ahocorasick.h; this unit finds the secrets
 * a literal list cannot name, by shape.  It mirrors the Aho-Corasick API:
 * an immutable class set (sl_rx_set_t, shareable between streams and
 * threads), a fixed-size per-stream cursor the caller owns (sl_rx_stream_t),
 * sl_rx_feed() chunk by chunk, matches as [start, end) byte offsets from the
 * start of the stream, sl_rx_holdback() for what must still be held, and
 * sl_rx_finish() at the end of the stream.  Nothing ever allocates or calls
 * back.  Errors are the negative SL_AN_E* codes of analyzers/status.h.
 * Uses no other unit.  (Prefix sl_rx_: "redaction classes".)
 *
 * The classes.  Character sets are ASCII; every byte >= 0x80 (any part of a
 * UTF-8 character) is outside all of them, so a non-ASCII letter counts as
 * a separator for the boundary rules.  A "run" is a maximal sequence of
 * bytes of one set.
 *
 *   openai_key (SL_RX_OPENAI_KEY), at most 256 bytes:
 *       "sk-" KEY{20,}   KEY = [A-Za-z0-9_-]
 *     The 's' is not preceded by a KEY byte; the body is the whole KEY run
 *     after "sk-" (so "sk-proj-..." and "sk-ant-..." are one key).  The
 *     match covers "sk-" and the body.
 *
 *   bearer (SL_RX_BEARER), at most 512 bytes:
 *       "Bearer" " "+ TOK{16,} "="*   TOK = [A-Za-z0-9._~+/-]
 *     "Bearer" in any ASCII case, not preceded by a letter or digit, then
 *     one or more spaces (0x20 only).  The token is the whole TOK run after
 *     the spaces, then the whole run of '=' after it.  The match covers the
 *     token and its padding only: "Bearer " stays visible.
 *
 *   aws_access_key_id (SL_RX_AWS_KEY_ID), exactly 20 bytes:
 *       (AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|APKA) [A-Z0-9]{16}
 *     Neither preceded nor followed by [A-Za-z0-9]: the key is a whole
 *     alphanumeric run of exactly 20 bytes.  The match covers all 20.
 *
 *   email (SL_RX_EMAIL), at most 254 bytes:
 *       LOCAL "@" LABEL ("." LABEL)+
 *       LOCAL = [A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}, not starting or
 *               ending with '.'
 *       LABEL = [A-Za-z0-9-]{1,63}, not starting or ending with '-'; the
 *               last label is [A-Za-z]{2,}
 *     The local part is the whole run of local-part bytes before the '@'
 *     (it is not preceded by one): a run longer than 64 or starting with
 *     '.' gives no address.  Punctuation of that set is included, so in
 *     "`me@x.org`" the match is "`me@x.org".  The domain is the longest
 *     that makes a valid address of at most 254 bytes in all (leftmost
 *     longest, as a POSIX regular expression would take it): in
 *     "me@a.com." and "me@a.com-x" the match ends after "com".
 *
 * Over-long secrets.  When an openai_key or bearer match reaches its
 * class's maximum length, that much is reported as a match and the bytes of
 * the class that follow (KEY bytes; TOK bytes and then '=', or '=' once
 * padding began) are reported as further matches, each again at most the
 * maximum, until a byte outside the class: an over-long secret is masked
 * whole and never leaks its tail.  aws_access_key_id has no such tail (21
 * alphanumerics are no key), and neither has email: an address is bounded
 * by its grammar, and text beyond what can be valid is not part of one.
 *
 * Reporting.  A match is reported once it can no longer grow: at the byte
 * that cannot extend it (a key or token at the first byte after its run,
 * an AWS key at the byte after its 20, an address when no longer valid
 * address can follow), at the byte that completes a maximum-length piece,
 * or by sl_rx_finish().  Matches therefore come in the order they become
 * final, not sorted by start; those final at one byte come in class order
 * (openai_key, bearer, aws_access_key_id, email).  Matches of different
 * classes may overlap ("Bearer sk-..." is both a bearer token and an
 * openai_key), and two addresses may share bytes ("a@b.io@c.io" gives
 * "a@b.io" and "b.io@c.io"); the caller masks the union of the ranges.
 *
 * Holdback.  After each feed, sl_rx_holdback() is the fewest trailing bytes
 * that could still become part of a match (exactly: for each class, the
 * start of the earliest candidate that some continuation of the stream
 * would turn into a match).  No match reported later starts before
 * offset - holdback, so the caller may release everything before that at
 * once.  It never exceeds sl_rx_max_holdback(), the largest bound of the
 * enabled classes: openai_key 255, bearer 511, aws_access_key_id 20,
 * email 253.  The word "Bearer " is never held for the bearer
 * class (it is not masked), but email holds every run of local-part bytes
 * of at most 64, i.e. most words, until the byte after it shows it is no
 * local part.
 *
 * Cost.  One 256-entry table of flags per set, and O(1) work per byte.
 * While no class has a candidate in progress a byte costs one table load
 * and a test against the starts the previous byte allows.  A byte that
 * could start a candidate ('s', 'b', 'B' or 'A' after a separator, '@'
 * after a local-part byte) is passed over as well when the next byte, if
 * it is in the same chunk, rules the candidate out ("s" not followed by
 * 'k', "b" by 'e' or 'E', "A" by a second prefix letter; an '@' always
 * goes on).  Only the rest go through the per-class step.  The start of
 * the current email run is kept as the fast loop goes in chunks of up to
 * 16 bytes, and found where it stops by looking back at most 65 bytes in
 * longer ones, so no byte is read more than twice.  docs/analyzers.md has
 * measurements (bench/bench_redact).
 */
#ifndef SL_REDACT_H
#define SL_REDACT_H

#include <stddef.h>
#include <stdint.h>

#include "analyzers/status.h"

/* The classes, as bits of a class mask. */
enum {
  SL_RX_OPENAI_KEY = 1u << 0,  /* "openai_key" */
  SL_RX_BEARER = 1u << 1,      /* "bearer" */
  SL_RX_AWS_KEY_ID = 1u << 2,  /* "aws_access_key_id" */
  SL_RX_EMAIL = 1u << 3,       /* "email" */
  SL_RX_ALL = (1u << 4) - 1    /* every class */
};

/* The most matches one byte (or sl_rx_finish()) can report: one per class.
 * A match array this large always lets sl_rx_feed() make progress. */
#define SL_RX_MAX_MATCHES 4

/* A compiled class set: which classes to look for and the byte table they
 * need.  Fill with sl_rx_set_init(); read-only afterwards, so one set may
 * serve any number of streams on any threads.  Fields are private. */
typedef struct {
  uint32_t classes;  /* the SL_RX_* bits enabled */
  uint32_t tab[256]; /* per byte: the flags of redact.c */
} sl_rx_set_t;

/* A stream's scanning state.  Caller-owned and fixed-size (on the stack or
 * inside a stream object); copy it to fork a stream.  Fields are private:
 * read offset if you like, change nothing. */
typedef struct {
  const sl_rx_set_t *set; /* the class set scanned for */
  uint64_t offset;        /* bytes fed so far */
  uint64_t run_start;     /* email: offset of the current run of local-part
                             bytes (offset when none); a marker value when the
                             run began with '.' */
  uint64_t key_start;     /* openai_key: offset of the 's', or of the piece
                             continuing an over-long key */
  uint64_t tok_start;     /* bearer: offset of the token, or of the piece
                             continuing an over-long token */
  uint64_t aws_start;     /* aws_access_key_id: offset of the 'A' */
  uint64_t mail_start;    /* email: offset of the local part of the address
                             being scanned */
  uint64_t mail_best;     /* email: end of the longest valid address so far,
                             0 if none yet */
  uint32_t ok;            /* the starts the previous byte allows next */
  uint32_t busy;          /* nonzero while some class has a candidate */
  uint16_t label_len;     /* email: bytes of the current domain label */
  uint8_t key_phase;      /* openai_key: where in "sk-" + body */
  uint8_t word;           /* bearer: bytes of "bearer" matched, then spaces */
  uint8_t tok_phase;      /* bearer: token, padding, continued piece */
  uint8_t aws_len;        /* aws_access_key_id: bytes of the candidate */
  uint8_t aws_prefix[4];  /* aws_access_key_id: its first four bytes */
  uint8_t mail;           /* email: address scan on, label flags */
  uint8_t finished;       /* sl_rx_finish() was called */
} sl_rx_stream_t;

/* One match: bytes [start, end) of the stream, of class cls. */
typedef struct {
  uint64_t start; /* stream offset of the first byte */
  uint64_t end;   /* stream offset one past the last byte */
  uint32_t cls;   /* one SL_RX_* bit */
} sl_rx_match_t;

/* Fills *set for the classes in the mask.  Returns 0; SL_AN_EINVAL when set
 * is NULL or the mask is 0 or has a bit outside SL_RX_ALL. */
int sl_rx_set_init(sl_rx_set_t *set, unsigned classes);

/* The class bit named name[0..len) ("openai_key", "bearer",
 * "aws_access_key_id", "email", exactly) in *cls.  Returns 0;
 * SL_AN_ENOTFOUND for any other name; SL_AN_EINVAL for NULL arguments. */
int sl_rx_class_parse(const char *name, size_t len, unsigned *cls);

/* The name of one class bit (a static string), or NULL for anything else. */
const char *sl_rx_class_name(unsigned cls);

/* The longest match one class bit reports (256, 512, 20, 254), or 0 for
 * anything else. */
size_t sl_rx_class_max_len(unsigned cls);

/* The largest value sl_rx_holdback() can return for streams on set: what
 * a hold-back queue must be able to hold for these classes (0 for NULL). */
size_t sl_rx_max_holdback(const sl_rx_set_t *set);

/* Starts a stream on set at offset 0 (set may be NULL only if the stream is
 * never fed).  The set must outlive the stream; no teardown is needed. */
void sl_rx_stream_init(sl_rx_stream_t *st, const sl_rx_set_t *set);

/* Feeds buf[0..len) and writes the matches that become final to
 * out[0..cap), in the order described above, setting *nout.  Stops early,
 * before a byte whose matches would not fit, with *consumed < len: use the
 * matches and feed the rest.  Returns 0; SL_AN_EINVAL for NULL arguments
 * (buf may be NULL when len is 0; out may be NULL when cap is 0, but then a
 * match stops the feed), a stream without a set, or one already finished;
 * SL_AN_ETOOBIG when nothing could be consumed because the first byte's
 * matches do not fit in cap (never with cap >= SL_RX_MAX_MATCHES).  Never
 * allocates. */
int sl_rx_feed(sl_rx_stream_t *st, const void *buf, size_t len, sl_rx_match_t *out, size_t cap,
               size_t *nout, size_t *consumed);

/* The fewest trailing bytes of what was fed that could still become part
 * of a match: bytes before offset - holdback are in no match reported
 * later, and may be released.  0 for NULL, a stream without a set, and
 * after sl_rx_finish(). */
size_t sl_rx_holdback(const sl_rx_stream_t *st);

/* Ends the stream: reports the candidates that are valid as they stand
 * (an openai_key of 25 bytes, a bearer token of 16, a whole AWS key, the
 * longest valid address scanned) in out[0..cap), setting *nout, and marks
 * the stream finished (holdback 0; feeding it again is an error until
 * sl_rx_stream_init()).  Returns 0; SL_AN_EINVAL for NULL arguments or a
 * stream without a set or already finished; SL_AN_ETOOBIG, changing
 * nothing, when the matches do not fit in cap (never with cap >=
 * SL_RX_MAX_MATCHES). */
int sl_rx_finish(sl_rx_stream_t *st, sl_rx_match_t *out, size_t cap, size_t *nout);

#endif
