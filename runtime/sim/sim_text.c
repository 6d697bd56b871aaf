/* sim_text.c: seeded PRNG, word list and JSON escaping for the simulated
 * engine (see sim_text.h). */
#include "runtime/sim/sim_text.h"

#include <string.h>

uint64_t sl__sim_mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

void sl__sim_rng_seed(sl_sim_rng_t *r, uint64_t seed) {
  r->s = sl__sim_mix(seed);
  /* xorshift has one absorbing state; splitmix64 maps exactly one input to
   * it, so step away from it. */
  if (r->s == 0) r->s = 0x9e3779b97f4a7c15ULL;
}

uint64_t sl__sim_rng_next(sl_sim_rng_t *r) {
  uint64_t x = r->s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->s = x;
  return x * 0x2545f4914f6cdd1dULL;
}

double sl__sim_rng_unit(sl_sim_rng_t *r) {
  return (double)(sl__sim_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

#define SL__N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const sl__openers[] = {
    "The", "In", "A", "This", "When", "Sure", "Here", "Yes", "Most", "Every", "Although", "Streams",
};

/* Plain words; each token is the word with one leading space. */
static const char *const sl__words[] = {
    " the",      " of",        " and",       " to",        " a",          " in",        " is",
    " that",     " for",       " it",        " as",        " was",        " with",      " be",
    " by",       " on",        " not",       " he",        " this",       " are",       " or",
    " his",      " from",      " at",        " which",     " but",        " have",      " an",
    " had",      " they",      " you",       " were",      " their",      " one",       " all",
    " we",       " can",       " her",       " has",       " there",      " been",      " if",
    " more",     " when",      " will",      " would",     " who",        " so",        " no",
    " stream",   " token",     " engine",    " gateway",   " request",    " response",  " latency",
    " buffer",   " socket",    " queue",     " slot",      " model",      " prompt",    " chunk",
    " event",    " window",    " backpressure", " decoder", " encoder",  " parser",    " timer",
    " loop",     " memory",    " pool",      " client",    " server",     " upstream",  " downstream",
    " river",    " water",     " gate",      " channel",   " flow",       " pressure",  " current",
    " valley",   " mountain",  " forest",    " morning",   " evening",    " winter",    " summer",
    " quickly",  " slowly",    " carefully", " quietly",   " together",   " already",   " almost",
    " always",   " never",     " often",     " perhaps",   " however",    " therefore", " because",
    " through",  " between",   " without",   " within",    " against",    " during",    " before",
    " after",    " under",     " over",      " around",    " across",     " toward",    " beyond",
    " small",    " large",     " early",     " late",      " bright",     " quiet",     " steady",
    " simple",   " careful",   " certain",   " clear",     " different",  " important", " possible",
    " measure",  " compare",   " explain",   " describe",  " consider",   " continue",  " follow",
    " build",    " write",     " read",      " send",      " receive",    " wait",      " start",
    " finish",   " open",      " close",     " count",     " check",      " keep",      " hold",
    " time",     " people",    " year",      " way",       " day",        " thing",     " world",
    " life",     " hand",      " part",      " place",     " case",       " week",      " number",
    " point",    " question",  " answer",    " idea",      " system",     " program",   " problem",
    " result",   " reason",    " example",   " detail",    " moment",     " order",     " level",
    " ing",      " ed",        " ly",        "s",          "'s",          " un",        " re",
};

static const char *const sl__punct[] = {",", ".", ";", ":", " -", "!", "?", ")", " ("};

/* Text that decoders must unescape: quote, backslash, control characters,
 * multi-byte UTF-8 (2, 3 and 4 bytes). */
static const char *const sl__tricky[] = {
    "\"",           "\\",        "\n",        "\n\n",          " \"quoted\"", " C:\\path",
    "\t",           " é",        " café",     " naïve",        " \xe2\x80\x94",  /* em dash */
    " \xe2\x82\xac\x35", /* euro sign, then "5" */          " \xf0\x9f\x99\x82",             /* emoji */
    " {\"k\": 1}",  " </p>",     " a\\nb",
};

const char *sl__sim_token(sl_sim_rng_t *r, uint64_t index, size_t *len) {
  const char *t;
  uint64_t x = sl__sim_rng_next(r);
  if (index == 0) {
    t = sl__openers[x % SL__N(sl__openers)];
  } else {
    unsigned kind = (unsigned)((x >> 32) % 100);
    if (kind < 10)
      t = sl__tricky[(x & 0xffff) % SL__N(sl__tricky)];
    else if (kind < 22)
      t = sl__punct[(x & 0xffff) % SL__N(sl__punct)];
    else
      t = sl__words[(x & 0xffff) % SL__N(sl__words)];
  }
  *len = strlen(t);
  return t;
}
