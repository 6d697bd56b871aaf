/* redact.h: classes of secrets found in text that arrives in chunks.
 *
 * For the redaction guard: literals are Aho-Corasick's (ahocorasick.h);
 * this file finds the secrets a literal cannot name, by class, on a stream
 * fed chunk by chunk, with matches that span chunk boundaries.  The
 * grammars (ASCII; "run" means a maximal sequence of the named bytes):
 *
 *   openai_key         "sk-" then 20 or more of [A-Za-z0-9_-], the "s" not
 *                      preceded by [A-Za-z0-9_-] (so "task-..." is not one).
 *                      The match is the whole key, at most 256 bytes.
 *   bearer             the word "Bearer" (any case), not preceded by
 *                      [A-Za-z0-9], one or more spaces, then a token of 16
 *                      or more of [A-Za-z0-9._~+/-] and any "=" padding.
 *                      The match is the token: "Bearer " stays visible.
 *                      At most 512 bytes.
 *   aws_access_key_id  one of AKIA ASIA ABIA ACCA AGPA AIDA AROA ANPA ANVA
 *                      APKA, then exactly 16 of [A-Z0-9]: a run of
 *                      [A-Za-z0-9] of exactly 20 bytes.
 *   email              a local part of 1 to 64 of
 *                      [A-Za-z0-9.!#$%&'*+/=?^_`{|}~-] (a run: not preceded
 *                      by one of those; not starting or ending with "."),
 *                      "@", then a domain of labels of 1 to 63 of
 *                      [A-Za-z0-9-] (not starting or ending with "-") joined
 *                      by ".", at least two labels, the last of 2 or more
 *                      letters; at most 254 bytes.  The longest valid domain
 *                      wins ("a@b.com." ends before the final dot).
 *
 * A match is reported once it can no longer grow: when the byte after it
 * arrives, or at sl_rx_finish.  A key longer than its class's maximum is
 * reported in pieces of at most that length, each following the last, so an
 * over-long secret is covered whole.  Matches of different classes may
 * overlap (the caller merges ranges).  Positions are byte offsets from the
 * stream's start.
 *
 * Hold-back: sl_rx_holdback() is the fewest trailing bytes fed that a
 * future match could still cover.  Bytes before them are never part of a
 * match reported later.  It is bounded by the longest class (512 bytes);
 * with "email" on it is usually the current word, since any word could be
 * the local part of an address still to come.
 *
 * Cost: a few comparisons per byte per class, no table, no allocation
 * after sl_rx_new (one malloc).  Errors are analyzers/status.h codes.
 * (Prefix sl_rx_: "redaction classes".)
 */
#ifndef SL_REDACT_H
#define SL_REDACT_H

#include <stddef.h>
#include <stdint.h>

#include "analyzers/status.h"

/* Class bits. */
enum {
  SL_RX_OPENAI_KEY = 1,
  SL_RX_BEARER = 2,
  SL_RX_AWS_KEY_ID = 4,
  SL_RX_EMAIL = 8,
  SL_RX_ALL = 15
};

#define SL_RX_MAX_MATCHES 8 /* a match array this long always lets sl_rx_feed progress */

typedef struct sl_rx_s sl_rx_t;

/* One match: [start, end), class bit cls. */
typedef struct {
  uint64_t start, end;
  unsigned cls;
} sl_rx_match_t;

/* A stream's state.  Caller-owned; every field is the scanner's. */
typedef struct {
  unsigned classes;
  const uint8_t *fl;    /* the scanner's byte classes */
  uint64_t fed;
  uint8_t prev;         /* the last byte fed (0 at the start) */
  /* openai_key: 0 idle, 1 "s", 2 "sk", 3 in the key (n = bytes after "sk-"), 4 continuing */
  int key_st;
  uint64_t key_start;
  uint32_t key_n;
  /* bearer: 0 idle, 1..6 letters of "bearer" matched, 7 spaces, 8 token, 9 padding, 10 continuing */
  int br_st;
  uint64_t br_start;    /* token start */
  uint32_t br_n;
  /* aws: the current [A-Za-z0-9] run */
  uint64_t aws_start;
  uint32_t aws_n;
  int aws_ok;           /* the run so far can be a key id */
  char aws_pre[4];
  /* email: 0 idle, 1 local run, 2 domain */
  int em_st;
  uint64_t em_start;
  uint32_t em_local;    /* local-part bytes */
  int em_local_ok;      /* the run so far can be a local part */
  uint32_t em_label;    /* bytes of the current label */
  uint32_t em_labels;   /* complete labels before it */
  int em_alpha;         /* the current label is letters only */
  uint64_t em_best;     /* end of the longest valid address so far (0: none) */
} sl_rx_stream_t;

/* The bit of a class name ("openai_key", ...), or 0. */
unsigned sl_rx_class_bit(const char *name);

/* "openai_key, bearer, aws_access_key_id, email" (static). */
const char *sl_rx_class_list(void);

/* The name of one class bit, or "?". */
const char *sl_rx_class_name(unsigned cls);

/* A scanner for the classes in the bit set (SL_RX_*).  Returns 0 and sets
 * *out; SL_AN_EINVAL for no or unknown bits; SL_AN_ENOMEM. */
int sl_rx_new(unsigned classes, sl_rx_t **out);
void sl_rx_free(sl_rx_t *rx);

void sl_rx_stream_init(sl_rx_stream_t *st, const sl_rx_t *rx);

/* Feeds buf[0..len), writing completed matches to out[0..cap) (*nout);
 * stops early (*consumed < len) when fewer than SL_RX_MAX_MATCHES slots
 * are left: drain and feed the rest.  Returns 0; SL_AN_EINVAL for NULL
 * arguments; SL_AN_ETOOBIG when cap < SL_RX_MAX_MATCHES. */
int sl_rx_feed(sl_rx_stream_t *st, const void *buf, size_t len, sl_rx_match_t *out, size_t cap, size_t *nout,
               size_t *consumed);

/* The fewest trailing bytes a later match could still cover. */
size_t sl_rx_holdback(const sl_rx_stream_t *st);

/* The stream ended: the matches valid as they stand.  Same returns. */
int sl_rx_finish(sl_rx_stream_t *st, sl_rx_match_t *out, size_t cap, size_t *nout);

#endif
