/* Tests for analyzers/loops: planted exact and near loops in random token
 * streams are found at the right time with the right period, start, repeat
 * count and edit distance; random streams and English text (words and
 * punctuation as token ids) give no detection; the incremental detector
 * agrees with the batch form after every token; every report satisfies the
 * definition of a loop as checked by a reference written here with a plain
 * edit-distance DP. */
#include <stdlib.h>

#include "analyzers/loops.h"
#include "analyzers/status.h"
#include "test.h"

static uint64_t rng_state = 0x243F6A8885A308D3ull;

static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint32_t rnd_below(uint32_t n) { return (uint32_t)(rnd() % n); }

/* ---- reference: the definition of a loop, with a textbook DP ---- */

static uint32_t ref_lev(const uint32_t *a, const uint32_t *b, uint32_t n) {
  uint32_t row[300];
  for (uint32_t j = 0; j <= n; j++) row[j] = j;
  for (uint32_t i = 1; i <= n; i++) {
    uint32_t diag = row[0];
    row[0] = i;
    for (uint32_t j = 1; j <= n; j++) {
      uint32_t up = row[j], d = diag + (a[i - 1] != b[j - 1]);
      if (up + 1 < d) d = up + 1;
      if (row[j - 1] + 1 < d) d = row[j - 1] + 1;
      row[j] = d;
      diag = up;
    }
  }
  return row[n];
}

static uint32_t ref_reps(const sl_loops_config_t *c, uint32_t p) {
  uint32_t r = (c->min_length + p - 1) / p;
  return r > c->min_repeats ? r : c->min_repeats;
}

static uint32_t ref_dmax(const sl_loops_config_t *c, uint32_t p) {
  return (uint32_t)(c->max_dist_ratio * p + 1e-9);
}

/* The definition, written out plainly: consecutive blocks of p from the
 * newest token back within dmax(p) edits; the start is the position within
 * a period of the first block's start maximising (+1 per token equal to the
 * one p later, or p +- 1 later when dmax(p) > 0, -1 otherwise) summed to the
 * end of the first block, earliest on ties; at least repeats(p) periods from
 * there.  Fills start (index into
 * h), maxd and the newest pair's distance. */
static int ref_fit(const sl_loops_config_t *c, const uint32_t *h, size_t n, uint32_t p,
                   size_t *start, uint32_t *maxd, uint32_t *head) {
  uint32_t d = ref_dmax(c, p);
  size_t need = (size_t)ref_reps(c, p) * p, blocks = 1;
  *maxd = 0;
  if (need > n) return 0;
  while ((blocks + 1) * p <= n) {
    uint32_t e = ref_lev(h + n - (blocks + 1) * p, h + n - blocks * p, p);
    if (blocks == 1) *head = e;
    if (e > d) break;
    if (e > *maxd) *maxd = e;
    blocks++;
  }
  if (blocks < ref_reps(c, p)) return 0;
  size_t b = n - blocks * p;
  long best_sum = -1000000;
  for (size_t cand = (b >= p - 1 ? b - (p - 1) : 0); cand <= b + p - 1; cand++) {
    long sum = 0;
    for (size_t s = cand; s <= b + p - 1; s++) {
      int rep = h[s] == h[s + p] || (d > 0 && (h[s] == h[s + p - 1] || h[s] == h[s + p + 1]));
      sum += rep ? 1 : -1;
    }
    if (sum > best_sum) {
      best_sum = sum;
      *start = cand;
    }
  }
  return n - *start >= need;
}

/* 1: report (out filled), 0: no loop of period p, -1: wait for a longer
 * period that fits the newest two periods better. */
static int ref_decide(const sl_loops_config_t *c, const uint32_t *h, size_t n, uint32_t p,
                      sl_loop_t *out) {
  size_t start;
  uint32_t maxd, head = 0;
  if (!ref_fit(c, h, n, p, &start, &maxd, &head)) return 0;
  uint32_t reach = ref_dmax(c, p) > 1 ? ref_dmax(c, p) : 1;
  if (head > 0)
    for (uint32_t q = p + 1; q <= p + reach && 2 * (size_t)q <= n; q++)
      if (ref_lev(h + n - 2 * q, h + n - q, q) < head) return -1;
  for (uint32_t q = c->min_period; q <= p / 2; q++) {
    size_t s2;
    uint32_t m2, h2;
    if (p % q == 0 && ref_fit(c, h, n, q, &s2, &m2, &h2)) {
      p = q;
      start = s2;
      maxd = m2;
      break;
    }
  }
  out->period = p;
  out->length = n - start;
  out->repeats = (uint32_t)(out->length / p);
  out->max_dist = maxd;
  return 1;
}

/* Whether h[0..n) ends in a loop (the last `window` tokens are searched). */
static int ref_check(const sl_loops_config_t *c, const uint32_t *h, size_t n, sl_loop_t *out) {
  if (n > c->window) {
    h += n - c->window;
    n = c->window;
  }
  uint32_t limit = c->max_period;
  for (uint32_t p = c->min_period; p <= limit; p++) {
    int r = ref_decide(c, h, n, p, out);
    if (r > 0) return 1;
    if (r < 0) {
      uint32_t reach = ref_dmax(c, p) > 1 ? ref_dmax(c, p) : 1;
      if (p + reach < limit) limit = p + reach;
    }
  }
  return 0;
}

/* ref_decide for one period, windowed like ref_check. */
static int ref_verify(const sl_loops_config_t *c, const uint32_t *h, size_t n, uint32_t p,
                      sl_loop_t *out) {
  if (n > c->window) {
    h += n - c->window;
    n = c->window;
  }
  return ref_decide(c, h, n, p, out) > 0;
}

/* ---- helpers ---- */

typedef struct {
  size_t at;     /* stream position of the push that reported */
  sl_loop_t rep;
} event_t;

/* Pushes toks[0..n) and records every NEW and ENDED report; also checks that
 * ACTIVE reports only follow a NEW.  Returns the number of events. */
static size_t run(sl_loops_t *lp, const uint32_t *toks, size_t n, event_t *ev, size_t cap) {
  size_t ne = 0;
  int active = 0;
  for (size_t i = 0; i < n; i++) {
    sl_loop_t r;
    if (sl_loops_push(lp, toks[i], &r) != 0) return (size_t)-1;
    if (r.state == SL_LOOPS_ACTIVE && !active) return (size_t)-1;
    if (r.state == SL_LOOPS_NEW) active = 1;
    if (r.state == SL_LOOPS_ENDED) active = 0;
    if ((r.state == SL_LOOPS_NEW || r.state == SL_LOOPS_ENDED) && ne < cap) {
      ev[ne].at = i;
      ev[ne].rep = r;
      ne++;
    }
  }
  return ne;
}

static void fill_random(uint32_t *x, size_t n, uint32_t vocab) {
  for (size_t i = 0; i < n; i++) x[i] = 1000 + rnd_below(vocab);
}

/* ---- tests ---- */

static void test_config(void) {
  sl_loops_config_t c;
  sl_loops_t *lp;
  sl_loops_config_default(&c);
  ASSERT_EQ(c.window, 256);
  ASSERT_GT(sl_loops_size(&c), 0);
  ASSERT_EQ(sl_loops_size(NULL), 0);
  sl_loops_config_t bad = c;
  bad.max_period = 200; /* 3 * 200 + 2 > 256 */
  ASSERT_EQ(sl_loops_size(&bad), 0);
  ASSERT_EQ(sl_loops_new(&bad, &lp), SL_AN_EINVAL);
  bad = c;
  bad.min_repeats = 1;
  ASSERT_EQ(sl_loops_size(&bad), 0);
  bad = c;
  bad.min_period = 0;
  ASSERT_EQ(sl_loops_size(&bad), 0);
  bad = c;
  bad.max_dist_ratio = -0.1;
  ASSERT_EQ(sl_loops_size(&bad), 0);
  bad = c;
  bad.max_dist_ratio = 0.0 / 0.0;
  ASSERT_EQ(sl_loops_size(&bad), 0);
  bad = c;
  bad.min_length = 200; /* period 1 would need 200 repeats: fits; period 64 needs 4 */
  ASSERT_EQ(sl_loops_size(&bad), 0);
  bad.window = 512;
  ASSERT_GT(sl_loops_size(&bad), 0);

  size_t need = sl_loops_size(&c);
  uint64_t *mem = malloc(need + 8);
  ASSERT_EQ(sl_loops_init(mem, need - 1, &c, &lp), SL_AN_ETOOBIG);
  ASSERT_EQ(sl_loops_init((char *)mem + 4, need, &c, &lp), SL_AN_EINVAL);
  ASSERT_EQ(sl_loops_init(mem, need, &c, &lp), 0);
  sl_loop_t r;
  ASSERT_EQ(sl_loops_push(lp, 1, NULL), SL_AN_EINVAL);
  ASSERT_EQ(sl_loops_push(NULL, 1, &r), SL_AN_EINVAL);
  ASSERT_EQ(sl_loops_push(lp, 1, &r), 0);
  ASSERT_EQ(r.state, SL_LOOPS_NONE);
  ASSERT_UINT_EQ(sl_loops_count(lp), 1);
  ASSERT_EQ(sl_loops_check(lp, NULL, 0, &r), 0);
  ASSERT_EQ(r.state, SL_LOOPS_NONE);
  ASSERT_EQ(sl_loops_check(lp, NULL, 3, &r), SL_AN_EINVAL);
  free(mem);
}

static void test_single_token_run(void) {
  sl_loops_config_t c;
  sl_loops_t *lp;
  sl_loops_config_default(&c);
  ASSERT_EQ(sl_loops_new(&c, &lp), 0);
  uint32_t toks[60];
  for (int i = 0; i < 10; i++) toks[i] = 100 + (uint32_t)i;
  for (int i = 10; i < 40; i++) toks[i] = 7;
  for (int i = 40; i < 60; i++) toks[i] = 200 + (uint32_t)i;
  event_t ev[8];
  size_t ne = run(lp, toks, 60, ev, 8);
  ASSERT_EQ(ne, 2);
  ASSERT_EQ(ev[0].rep.state, SL_LOOPS_NEW);
  ASSERT_EQ(ev[0].at, 10 + 16 - 1); /* min_length 16 for period 1 */
  ASSERT_EQ(ev[0].rep.period, 1);
  ASSERT_UINT_EQ(ev[0].rep.start, 10);
  ASSERT_EQ(ev[0].rep.repeats, 16);
  ASSERT_EQ(ev[0].rep.max_dist, 0);
  ASSERT_EQ(ev[1].rep.state, SL_LOOPS_ENDED);
  ASSERT_EQ(ev[1].at, 40);
  ASSERT_UINT_EQ(ev[1].rep.start, 10);
  ASSERT_UINT_EQ(ev[1].rep.length, 30);
  ASSERT_EQ(ev[1].rep.repeats, 30);
  sl_loops_free(lp);
}

/* Exact loops of every period 1..64 planted in random text. */
static void test_exact_loops_planted(void) {
  sl_loops_config_t c;
  sl_loops_t *lp;
  sl_loops_config_default(&c);
  ASSERT_EQ(sl_loops_new(&c, &lp), 0);
  uint32_t toks[1200];
  int found = 0;
  for (int trial = 0; trial < 640; trial++) {
    uint32_t p = 1 + (uint32_t)(trial % 64);
    uint32_t reps = ref_reps(&c, p);
    uint32_t k = reps + rnd_below(4);
    while ((uint64_t)k * p > 250) k--;
    size_t S = 50 + rnd_below(400), n = S + (size_t)k * p + 300;
    fill_random(toks, n, 50000);
    for (size_t i = 0; i < (size_t)k * p; i++) toks[S + i] = toks[S + i % p];
    /* Make the loop body itself aperiodic (a random body rarely is, but a
     * repeat inside it would legitimately give a shorter period). */
    sl_loops_reset(lp);
    event_t ev[8];
    size_t ne = run(lp, toks, n, ev, 8);
    if (k < reps) {
      ASSERT_EQ(ne, 0);
      continue;
    }
    if (ne != 2 || ev[0].at != S + (size_t)reps * p - 1)
      fprintf(stderr, "  trial %d: p=%u S=%zu k=%u ne=%zu at=%zu period=%u start=%llu\n", trial, p, S, k,
              ne, ne ? ev[0].at : 0, ne ? ev[0].rep.period : 0,
              ne ? (unsigned long long)ev[0].rep.start : 0ull);
    ASSERT_EQ(ne, 2);
    ASSERT_EQ(ev[0].rep.state, SL_LOOPS_NEW);
    ASSERT_EQ(ev[0].at, S + (size_t)reps * p - 1);
    ASSERT_EQ(ev[0].rep.period, p);
    ASSERT_UINT_EQ(ev[0].rep.start, S);
    ASSERT_EQ(ev[0].rep.repeats, reps);
    ASSERT_EQ(ev[0].rep.max_dist, 0);
    ASSERT_EQ(ev[1].rep.state, SL_LOOPS_ENDED);
    ASSERT_LE(ev[1].at, S + (size_t)k * p + 2 * p);
    ASSERT_UINT_EQ(ev[1].rep.start, S);
    ASSERT_UINT_EQ(ev[1].rep.length, (uint64_t)k * p);
    ASSERT_EQ(ev[1].rep.repeats, k);
    /* The report satisfies the definition (reference DP). */
    sl_loop_t ref;
    ASSERT(ref_check(&c, toks, ev[0].at + 1, &ref));
    ASSERT_EQ(ref.period, p);
    ASSERT_UINT_EQ(ref.length, ev[0].rep.length);
    found++;
  }
  ASSERT_GE(found, 600);
  sl_loops_free(lp);
}

/* A near loop: a period of p tokens in which the word at one offset is a
 * different random token each time round. */
static void test_near_loops_substitution(void) {
  sl_loops_config_t c;
  sl_loops_t *lp;
  sl_loops_config_default(&c);
  ASSERT_EQ(sl_loops_new(&c, &lp), 0);
  uint32_t toks[1200], body[64];
  int found = 0;
  for (int trial = 0; trial < 400; trial++) {
    uint32_t p = 4 + rnd_below(61); /* dmax(p) >= 1 from p = 4 */
    uint32_t reps = ref_reps(&c, p);
    uint32_t k = reps + 1 + rnd_below(3);
    while ((uint64_t)k * p > 250) k--;
    if (k < reps) continue;
    uint32_t o = 1 + rnd_below(p - 2);
    size_t S = 50 + rnd_below(400), n = S + (size_t)k * p + 300;
    fill_random(toks, n, 50000);
    fill_random(body, p, 50000);
    for (uint32_t r = 0; r < k; r++)
      for (uint32_t i = 0; i < p; i++)
        toks[S + (size_t)r * p + i] = i == o ? 1000 + rnd_below(50000) : body[i];
    sl_loops_reset(lp);
    event_t ev[8];
    size_t ne = run(lp, toks, n, ev, 8);
    ASSERT_EQ(ne, 2);
    ASSERT_EQ(ev[0].rep.state, SL_LOOPS_NEW);
    ASSERT_EQ(ev[0].rep.period, p);
    ASSERT_UINT_EQ(ev[0].rep.start, S);
    ASSERT_EQ(ev[0].rep.max_dist, 1);
    ASSERT_LE(ev[0].at, S + (size_t)k * p - 1);
    ASSERT_EQ(ev[1].rep.state, SL_LOOPS_ENDED);
    ASSERT_UINT_EQ(ev[1].rep.start, S);
    ASSERT_EQ(ev[1].rep.repeats, k);
    ASSERT_LE(ev[1].rep.max_dist, 1);
    sl_loop_t ref;
    ASSERT(ref_verify(&c, toks, ev[0].at + 1, p, &ref));
    ASSERT_UINT_EQ(ref.length, ev[0].rep.length);
    ASSERT_EQ(ref.max_dist, ev[0].rep.max_dist);
    found++;
  }
  ASSERT_GE(found, 300);
  sl_loops_free(lp);
}

/* A near loop whose changing word is one token in some rounds and two in
 * others (so consecutive periods differ by an insertion or deletion). */
static void test_near_loops_indel(void) {
  sl_loops_config_t c;
  sl_loops_t *lp;
  sl_loops_config_default(&c);
  ASSERT_EQ(sl_loops_new(&c, &lp), 0);
  uint32_t toks[1400], body[64];
  int found = 0, trials = 0;
  for (int trial = 0; trial < 300; trial++) {
    uint32_t p = 8 + rnd_below(40);
    uint32_t k = ref_reps(&c, p) + 2;
    while ((uint64_t)k * (p + 1) > 250) k--;
    if (k < ref_reps(&c, p) + 1) continue;
    trials++;
    uint32_t o = 1 + rnd_below(p - 2);
    size_t S = 50 + rnd_below(400), at = S;
    fill_random(toks, 1400, 50000);
    fill_random(body, p, 50000);
    for (uint32_t r = 0; r < k; r++) {
      for (uint32_t i = 0; i < p; i++) {
        if (i == o) {
          toks[at++] = 1000 + rnd_below(50000);
          if (r % 2) toks[at++] = 1000 + rnd_below(50000);
        } else {
          toks[at++] = body[i];
        }
      }
    }
    size_t end = at, n = end + 300;
    sl_loops_reset(lp);
    event_t ev[8];
    size_t ne = run(lp, toks, n, ev, 8);
    ASSERT_GE(ne, 2);
    ASSERT_EQ(ev[0].rep.state, SL_LOOPS_NEW);
    ASSERT(ev[0].rep.period == p || ev[0].rep.period == p + 1);
    ASSERT_LE(ev[0].at, end - 1);
    ASSERT_LE(ev[0].rep.start, S + 2);
    ASSERT_GE(ev[0].rep.start + 2, S);
    ASSERT_GE(ev[0].rep.max_dist, 1);
    ASSERT_LE(ev[0].rep.max_dist, ref_dmax(&c, ev[0].rep.period));
    sl_loop_t ref;
    ASSERT(ref_verify(&c, toks, ev[0].at + 1, ev[0].rep.period, &ref));
    ASSERT_UINT_EQ(ref.length, ev[0].rep.length);
    ASSERT_EQ(ref.max_dist, ev[0].rep.max_dist);
    found++;
  }
  ASSERT_EQ(found, trials);
  ASSERT_GE(trials, 100);
  sl_loops_free(lp);
}

/* Random streams over several vocabulary sizes: never a detection, and the
 * batch form agrees. */
static void test_random_streams_no_detection(void) {
  static const uint32_t vocabs[] = {20, 100, 1000, 50000, 200000};
  sl_loops_config_t c;
  sl_loops_t *lp;
  sl_loops_config_default(&c);
  ASSERT_EQ(sl_loops_new(&c, &lp), 0);
  uint32_t *toks = malloc(20000 * sizeof *toks);
  for (int v = 0; v < 5; v++) {
    for (int s = 0; s < 4; s++) {
      fill_random(toks, 20000, vocabs[v]);
      sl_loops_reset(lp);
      event_t ev[4];
      size_t ne = run(lp, toks, 20000, ev, 4);
      if (ne != 0) fprintf(stderr, "  vocab %u: period %u at %zu\n", vocabs[v], ev[0].rep.period, ev[0].at);
      ASSERT_EQ(ne, 0);
      sl_loop_t r;
      ASSERT_EQ(sl_loops_check(lp, toks, 20000, &r), 0);
      ASSERT_EQ(r.state, SL_LOOPS_NONE);
    }
  }
  free(toks);
  sl_loops_free(lp);
}

/* Plain English prose, tokenized into lower-case words and punctuation;
 * the token id is a hash of the token's text, as sparse as a real
 * vocabulary. */
static const char *const prose =
    "The river rises in the hills above the town, where the snow lies late into "
    "spring and the first warm days send water down every gully at once. By the "
    "time it reaches the mill it has slowed and widened, and in summer children "
    "wade across it at the ford below the church, holding their shoes above their "
    "heads. The miller's family kept records of the floods for almost two "
    "hundred years: the height of the water on the wall, the date, and sometimes "
    "a line about what was lost. In one year it was a cart and two sheep; in "
    "another, the whole of the lower meadow's hay, which had been cut the day "
    "before. Nobody now remembers who painted the marks, but they are still "
    "there, faded brown lines with numbers beside them, the highest well above a "
    "tall man's head.\n"
    "When the railway came, the town changed faster than it had in the previous "
    "century. Goods that had gone by road to the market twenty miles away now "
    "went by train to the city, and people followed them. Some came back with "
    "money and ideas; most did not come back at all. The mill closed in the "
    "year the new bridge opened, and for a while its wheel turned only for the "
    "pleasure of visitors, who paid a small coin to watch it and bought postcards "
    "of the weir. Later even that stopped, and the building stood empty until a "
    "potter rented the ground floor and a painter the loft above.\n"
    "Ask anyone who grew up here what they remember, and they will tell you "
    "about the sound of the water. It is never quite silent. In a dry August "
    "it murmurs over the stones; after a storm it roars so loudly that you have "
    "to shout to be heard on the bridge. Old people say they could tell the "
    "season with their eyes closed, from the pitch of it alone, and perhaps "
    "they could. What is certain is that the river shaped the town more than "
    "any mayor or merchant did: where the houses stand, which streets flood, "
    "where the school was built and why it was moved, all of it follows the "
    "water.\n"
    "There are plans, every few years, to make more of it. A footpath along both "
    "banks, a small museum in the mill, a festival with boats and lanterns on "
    "the longest evening of the year. Some of these have happened and some have "
    "not. The footpath exists for about half its intended length and then gives "
    "up in a field of nettles. The festival ran for three summers, grew too big "
    "for the narrow streets, and was quietly moved to a park in the next valley. "
    "The museum is still a plan, though the potter has put a few old tools and "
    "photographs in her window, with handwritten labels, and people stop to "
    "read them.\n";

static uint32_t fnv1a(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 16777619u;
  }
  return h;
}

static size_t tokenize(const char *text, size_t len, uint32_t *out, size_t cap) {
  size_t n = 0, i = 0;
  char w[64];
  while (i < len && n < cap) {
    unsigned char ch = (unsigned char)text[i];
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
        ch == '\'') {
      size_t k = 0;
      while (i < len && k < sizeof w) {
        ch = (unsigned char)text[i];
        if (ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch - 'A' + 'a');
        else if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '\'')) break;
        w[k++] = (char)ch;
        i++;
      }
      out[n++] = fnv1a(w, k);
    } else if (ch == ' ' || ch == '\t' || ch == '\r') {
      i++;
    } else {
      /* Punctuation and newlines are tokens; a run of one character
       * ("=====", "\n\n") is one token, as a subword tokenizer makes it. */
      size_t k = 1;
      while (i + k < len && text[i + k] == text[i] && k < 16) k++;
      out[n++] = fnv1a(text + i, k);
      i += k;
    }
  }
  return n;
}

static void test_english_text_no_detection(void) {
  sl_loops_config_t c;
  sl_loops_t *lp;
  sl_loops_config_default(&c);
  ASSERT_EQ(sl_loops_new(&c, &lp), 0);
  uint32_t *toks = malloc(200000 * sizeof *toks);
  size_t n = tokenize(prose, strlen(prose), toks, 200000);
  ASSERT_GT(n, 500);
  event_t ev[4];
  size_t ne = run(lp, toks, n, ev, 4);
  ASSERT_EQ(ne, 0);
  /* A sentence of the prose said four times over in the middle of it is a
   * loop, found where it starts. */
  uint32_t *looped = malloc((n + 200) * sizeof *looped);
  size_t cut = 300, sent = 23;
  memcpy(looped, toks, cut * sizeof *toks);
  for (size_t r = 0; r < 4; r++) memcpy(looped + cut + r * sent, toks + 100, sent * sizeof *toks);
  memcpy(looped + cut + 4 * sent, toks + cut, (n - cut) * sizeof *toks);
  sl_loops_reset(lp);
  ne = run(lp, looped, n + 4 * sent, ev, 4);
  ASSERT_EQ(ne, 2);
  ASSERT_EQ(ev[0].rep.period, sent);
  /* Natural text repeats common tokens ("the", ",") by chance, so the
   * boundary of a loop in it may move by a token or two. */
  ASSERT_LE(ev[0].rep.start, cut + 2);
  ASSERT_GE(ev[0].rep.start + 2, cut);
  ASSERT_LE(ev[1].rep.length, 4 * sent + 4);
  ASSERT_GE(ev[1].rep.length + 4, 4 * sent);
  free(looped);

  /* The licence texts shipped with Debian, when present: thousands of
   * words of real English with numbered lists and repeated phrases. */
  static const char *const files[] = {"/usr/share/common-licenses/GPL-3",
                                      "/usr/share/common-licenses/Apache-2.0",
                                      "/usr/share/common-licenses/MPL-2.0"};
  char *buf = malloc(1 << 20);
  size_t total = 0;
  for (int f = 0; f < 3; f++) {
    FILE *fp = fopen(files[f], "rb");
    if (fp == NULL) continue;
    size_t len = fread(buf, 1, (1 << 20) - 1, fp);
    fclose(fp);
    size_t m = tokenize(buf, len, toks, 200000);
    sl_loops_reset(lp);
    ne = run(lp, toks, m, ev, 4);
    if (ne) fprintf(stderr, "  %s: period %u at token %zu\n", files[f], ev[0].rep.period, ev[0].at);
    ASSERT_EQ(ne, 0);
    total += m;
  }
  fprintf(stderr, "  english: %zu prose tokens, %zu licence tokens, no detection\n", n, total);
  free(buf);
  free(toks);
  sl_loops_free(lp);
}

/* With exact loops only (ratio 0) the screen is exact, so the incremental
 * detector must report NEW exactly when the batch form first finds a loop,
 * with the same report; checked after every token. */
static void test_incremental_agrees_with_batch(void) {
  sl_loops_config_t c;
  sl_loops_t *lp, *lb;
  sl_loops_config_default(&c);
  c.max_dist_ratio = 0.0;
  ASSERT_EQ(sl_loops_new(&c, &lp), 0);
  ASSERT_EQ(sl_loops_new(&c, &lb), 0);
  uint32_t toks[900];
  int steps = 0;
  for (int trial = 0; trial < 60; trial++) {
    uint32_t p = 1 + rnd_below(64), k = ref_reps(&c, p) + 1;
    while ((uint64_t)k * p > 250) k--;
    size_t S = 20 + rnd_below(300), n = S + (size_t)k * p + 100;
    if (n > 900) n = 900;
    fill_random(toks, n, trial % 2 ? 50000 : 30);
    for (size_t i = 0; i < (size_t)k * p && S + i < n; i++) toks[S + i] = toks[S + i % p];
    sl_loops_reset(lp);
    for (size_t i = 0; i < n; i++) {
      sl_loop_t r, b;
      ASSERT_EQ(sl_loops_push(lp, toks[i], &r), 0);
      ASSERT_EQ(sl_loops_check(lb, toks, i + 1, &b), 0);
      steps++;
      if (r.state == SL_LOOPS_NEW) {
        ASSERT_EQ(b.state, SL_LOOPS_NEW);
        ASSERT_EQ(r.period, b.period);
        ASSERT_UINT_EQ(r.start, b.start);
        ASSERT_UINT_EQ(r.length, b.length);
        ASSERT_EQ(r.repeats, b.repeats);
        ASSERT_EQ(r.max_dist, b.max_dist);
        break;
      }
      ASSERT_EQ(b.state, SL_LOOPS_NONE);
    }
  }
  ASSERT_GT(steps, 10000);
  sl_loops_free(lp);
  sl_loops_free(lb);
}

/* Near loops: every NEW report equals the batch form run with the reported
 * period only, and satisfies the reference definition. */
static void test_near_reports_match_batch(void) {
  sl_loops_config_t c;
  sl_loops_t *lp;
  sl_loops_config_default(&c);
  ASSERT_EQ(sl_loops_new(&c, &lp), 0);
  uint32_t toks[1200], body[64];
  int checked = 0;
  for (int trial = 0; trial < 200; trial++) {
    uint32_t p = 4 + rnd_below(50), k = ref_reps(&c, p) + 2;
    while ((uint64_t)k * p > 250) k--;
    size_t S = 50 + rnd_below(300), n = S + (size_t)k * p + 200;
    fill_random(toks, n, 50000);
    fill_random(body, p, 50000);
    for (uint32_t r = 0; r < k; r++)
      for (uint32_t i = 0; i < p; i++)
        toks[S + (size_t)r * p + i] = rnd_below(10) == 0 ? 1000 + rnd_below(50000) : body[i];
    sl_loops_reset(lp);
    for (size_t i = 0; i < n; i++) {
      sl_loop_t r;
      ASSERT_EQ(sl_loops_push(lp, toks[i], &r), 0);
      if (r.state != SL_LOOPS_NEW) continue;
      sl_loops_config_t one = c;
      one.min_period = one.max_period = r.period;
      sl_loops_t *lb;
      ASSERT_EQ(sl_loops_new(&one, &lb), 0);
      sl_loop_t b, ref;
      ASSERT_EQ(sl_loops_check(lb, toks, i + 1, &b), 0);
      sl_loops_free(lb);
      ASSERT_EQ(b.state, SL_LOOPS_NEW);
      ASSERT_UINT_EQ(r.start, b.start);
      ASSERT_UINT_EQ(r.length, b.length);
      ASSERT_EQ(r.max_dist, b.max_dist);
      ASSERT(ref_verify(&c, toks, i + 1, r.period, &ref));
      ASSERT_UINT_EQ(ref.length, r.length);
      ASSERT_EQ(ref.max_dist, r.max_dist);
      checked++;
      break; /* a later NEW may start after an earlier loop's end, which
                the stateless batch form does not know */
    }
  }
  ASSERT_GT(checked, 100);
  sl_loops_free(lp);
}

/* A loop far longer than the window is followed to its end. */
static void test_long_loop_followed(void) {
  sl_loops_config_t c;
  sl_loops_t *lp;
  sl_loops_config_default(&c);
  ASSERT_EQ(sl_loops_new(&c, &lp), 0);
  size_t S = 100, p = 37, L = 20000;
  uint32_t *toks = malloc((S + L + 200) * sizeof *toks);
  fill_random(toks, S + L + 200, 50000);
  for (size_t i = 0; i < L; i++) toks[S + i] = toks[S + i % p];
  size_t n = S + L + 200, actives = 0;
  sl_loop_t last = {0};
  int news = 0, ends = 0;
  for (size_t i = 0; i < n; i++) {
    sl_loop_t r;
    ASSERT_EQ(sl_loops_push(lp, toks[i], &r), 0);
    if (r.state == SL_LOOPS_ACTIVE) {
      actives++;
      ASSERT_UINT_EQ(r.start, S);
      ASSERT_UINT_EQ(r.length, i + 1 - S);
    }
    if (r.state == SL_LOOPS_NEW) news++;
    if (r.state == SL_LOOPS_ENDED) {
      ends++;
      last = r;
    }
  }
  ASSERT_EQ(news, 1);
  ASSERT_EQ(ends, 1);
  ASSERT_GT(actives, L - 3 * p);
  ASSERT_UINT_EQ(last.start, S);
  ASSERT_UINT_EQ(last.length, L);
  ASSERT_EQ(last.repeats, L / p);
  ASSERT_EQ(last.period, p);
  free(toks);
  sl_loops_free(lp);
}

/* Periods outside [min_period, max_period] are not reported (a multiple
 * inside the range is), and a loop shorter than min_length is no loop. */
static void test_limits_respected(void) {
  sl_loops_config_t c;
  sl_loops_t *lp;
  sl_loops_config_default(&c);
  c.min_period = 5;
  c.max_period = 10;
  ASSERT_EQ(sl_loops_new(&c, &lp), 0);
  uint32_t toks[600];
  event_t ev[4];
  fill_random(toks, 600, 50000);
  for (size_t i = 0; i < 120; i++) toks[300 + i] = toks[300 + i % 11]; /* period 11 */
  ASSERT_EQ(run(lp, toks, 600, ev, 4), 0);
  sl_loops_reset(lp);
  fill_random(toks, 600, 50000);
  for (size_t i = 0; i < 60; i++) toks[100 + i] = toks[100 + i % 3]; /* period 3: seen as 6 */
  ASSERT_EQ(run(lp, toks, 600, ev, 4), 2);
  ASSERT_EQ(ev[0].rep.period, 6);
  ASSERT_UINT_EQ(ev[0].rep.start, 100);
  ASSERT_UINT_EQ(ev[1].rep.length, 60);
  sl_loops_free(lp);

  sl_loops_config_default(&c);
  ASSERT_EQ(sl_loops_new(&c, &lp), 0);
  fill_random(toks, 600, 50000);
  for (size_t i = 0; i < 15; i++) toks[100 + i] = toks[100 + i % 5]; /* 3 x 5 < 16 */
  ASSERT_EQ(run(lp, toks, 600, ev, 4), 0);
  sl_loops_reset(lp);
  for (size_t i = 0; i < 16; i++) toks[100 + i] = toks[100 + i % 4]; /* 4 x 4 = 16 */
  ASSERT_EQ(run(lp, toks, 600, ev, 4), 2);
  ASSERT_EQ(ev[0].rep.period, 4);
  sl_loops_free(lp);
}

int main(void) {
  SL_RUN(test_config);
  SL_RUN(test_single_token_run);
  SL_RUN(test_exact_loops_planted);
  SL_RUN(test_near_loops_substitution);
  SL_RUN(test_near_loops_indel);
  SL_RUN(test_random_streams_no_detection);
  SL_RUN(test_english_text_no_detection);
  SL_RUN(test_incremental_agrees_with_batch);
  SL_RUN(test_near_reports_match_batch);
  SL_RUN(test_long_loop_followed);
  SL_RUN(test_limits_respected);
  return SL_TEST_EXIT();
}
