/* fuzz_common.h: what the split-invariance harnesses share (fuzz_http,
 * fuzz_sse, fuzz_upstream): a digest of what a decoding produced, and the
 * three ways of cutting one input into reads they compare.
 *
 *   FUZZ_WHOLE  one read;
 *   FUZZ_BYTES  one byte a read;
 *   FUZZ_CUTS   reads of 1 to max bytes, the lengths drawn from the seed.
 */
#ifndef SL_FUZZ_COMMON_H
#define SL_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint64_t h;      /* FNV-1a over what the decoding produced */
  uint64_t events; /* events seen */
} digest_t;

static inline digest_t digest_init(void) {
  digest_t d = {0xcbf29ce484222325ull, 0};
  return d;
}

static inline void mix(digest_t *d, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) d->h = (d->h ^ b[i]) * 0x100000001b3ull;
}

static inline void mix_int(digest_t *d, int64_t v) { mix(d, &v, sizeof(v)); }

enum { FUZZ_WHOLE = 0, FUZZ_BYTES = 1, FUZZ_CUTS = 2 };

typedef struct {
  int how;    /* FUZZ_WHOLE, FUZZ_BYTES or FUZZ_CUTS */
  size_t max; /* FUZZ_CUTS: the longest read */
  uint32_t x; /* the generator's state */
} cutter_t;

static inline cutter_t cutter_init(int how, uint8_t seed, size_t max) {
  cutter_t c = {how, max, seed * 2654435761u + 1};
  return c;
}

/* The next read's length, with left bytes still to feed (left > 0). */
static inline size_t cutter_next(cutter_t *c, size_t left) {
  size_t n = left;
  if (c->how == FUZZ_BYTES) n = 1;
  if (c->how == FUZZ_CUTS) {
    c->x = c->x * 1103515245u + 12345u;
    n = 1 + (c->x >> 16) % c->max;
    if (n > left) n = left;
  }
  return n;
}

#endif
