/* sim_text.h: deterministic token text for the simulated
 * engine (its JSON escaping is oai.h's sl_json_escape).
 *
 * A small seeded PRNG (splitmix64 seeding an xorshift64* stream) drives the
 * choice of words, so the same seed gives the same tokens on every run and
 * every machine.  Tokens are static strings from a built-in word list: mostly
 * " word", sometimes punctuation, and now and then text that a JSON encoder
 * must escape (a quote, a backslash, a newline, a tab, "é", an emoji), so the
 * decoders on the other side are exercised.  No allocation, no libuv; the
 * engine (sim_engine.c) is the only user.  Internal to runtime/, hence the
 * sl__ prefix.
 */
#ifndef SL_SIM_TEXT_H
#define SL_SIM_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* One PRNG stream. */
typedef struct {
  uint64_t s; /* xorshift64* state, never 0 */
} sl_sim_rng_t;

/* splitmix64 of x: a well-mixed 64-bit value (used to derive seeds). */
uint64_t sl__sim_mix(uint64_t x);

/* Seeds r from seed (any value, 0 included). */
void sl__sim_rng_seed(sl_sim_rng_t *r, uint64_t seed);

/* The next 64 random bits. */
uint64_t sl__sim_rng_next(sl_sim_rng_t *r);

/* A uniform double in [0, 1). */
double sl__sim_rng_unit(sl_sim_rng_t *r);

/* The text of token number `index` of a response (index 0 is a capitalized
 * opener without a leading space).  Returns a static NUL-terminated string
 * and its length in *len; never NULL.  Draws from r. */
const char *sl__sim_token(sl_sim_rng_t *r, uint64_t index, size_t *len);

#endif
