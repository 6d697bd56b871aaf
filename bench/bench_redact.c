/* bench_redact: the secret-class scanner (analyzers/redact.h) per byte and
 * per token, beside baselines measured in this one run: a whole-text scan
 * written here that tries every class at every offset (what one would write
 * without streaming: it needs the whole text and knows nothing of chunks or
 * holdback), the Aho-Corasick automaton over the classes' literal anchors
 * ("sk-", "bearer", the ten AWS prefixes, "@"; it finds where a secret might
 * begin, not the secret), and a floor: one table load per byte.
 *
 * Two texts: English-like prose (words of 1-12 lowercase letters,
 * punctuation, capitals at sentence starts) with a secret planted about
 * every 4 KB, and a dense one, a secret about every 200 bytes among words.
 * Throughput is the best of 3 runs fed in 64 KB chunks; the streaming cost
 * feeds the same text 1-8 bytes at a time (a model token) and asks for the
 * holdback after each.  Match counts of the kernel and the whole-text scan
 * are compared before anything is printed.  Usage: bench_redact [megabytes]
 * (default 16).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyzers/ahocorasick.h"
#include "analyzers/redact.h"

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd32(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 17);
}

/* ---- The whole-text baseline: the grammar of redact.h tried at every
 * offset, with the cheapest test first. ---- */

static int b_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int b_alnum(int c) { return b_alpha(c) || (c >= '0' && c <= '9'); }
static int b_key(int c) { return b_alnum(c) || c == '_' || c == '-'; }
static int b_tok(int c) {
  return b_alnum(c) || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '-';
}
static int b_local(int c) { return b_alnum(c) || (c && strchr(".!#$%&'*+/=?^_`{|}~-", c)); }

static size_t pieces(size_t len, size_t max) { return (len + max - 1) / max; }

static size_t scan_whole(const unsigned char *t, size_t n) {
  static const char *const pre[] = {"AKIA", "ASIA", "ABIA", "ACCA", "AGPA",
                                    "AIDA", "AROA", "ANPA", "ANVA", "APKA"};
  size_t found = 0;
  for (size_t s = 0; s < n; s++) {
    unsigned char c = t[s];
    if (c == 's' && (s == 0 || !b_key(t[s - 1])) && s + 3 <= n && t[s + 1] == 'k' &&
        t[s + 2] == '-') {
      size_t e = s + 3;
      while (e < n && b_key(t[e])) e++;
      if (e - s - 3 >= 20) found += pieces(e - s, 256);
    } else if ((c | 0x20) == 'b' && (s == 0 || !b_alnum(t[s - 1])) && s + 7 <= n &&
               strncasecmp((const char *)t + s, "bearer ", 7) == 0) {
      size_t j = s + 6;
      while (j < n && t[j] == ' ') j++;
      size_t e = j;
      while (e < n && b_tok(t[e])) e++;
      if (e - j >= 16) {
        while (e < n && t[e] == '=') e++;
        found += pieces(e - j, 512);
      }
    } else if (c == 'A' && (s == 0 || !b_alnum(t[s - 1]))) {
      size_t e = s;
      while (e < n && e - s <= 20 && (b_alnum(t[e]))) e++;
      if (e - s == 20) {
        int ok = 0;
        for (int k = 0; k < 10; k++) ok |= memcmp(t + s, pre[k], 4) == 0;
        for (size_t i = s; i < e; i++)
          ok &= (t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= '0' && t[i] <= '9');
        found += ok;
      }
    } else if (c == '@') {
      size_t b = s;
      while (b > 0 && s - b <= 64 && b_local(t[b - 1])) b--;
      if (s - b < 1 || s - b > 64 || t[b] == '.' || t[s - 1] == '.') continue;
      /* The longest valid domain within 254 bytes in all. */
      size_t labels = 0, start = s + 1, best = 0;
      int alpha = 1;
      for (size_t m = s + 1; m < n && m + 1 - b <= 254; m++) {
        unsigned char d = t[m];
        if (d == '.') {
          if (m == start || t[start] == '-' || t[m - 1] == '-') break;
          labels++;
          start = m + 1;
          alpha = 1;
          continue;
        }
        if (!b_alnum(d) && d != '-') break;
        alpha &= b_alpha(d);
        if (m + 1 - start > 63) break;
        if (labels && alpha && m + 1 - start >= 2) best = m + 1;
      }
      found += best != 0;
    }
  }
  return found;
}

/* ---- Texts ---- */

static const char letters[] = "eeeeettttaaaooiinnsshhrrdlucmfwypvbgk";

static size_t word(char *w) {
  static const int lens[] = {1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 6, 6, 7, 8, 9, 10, 12};
  size_t n = (size_t)lens[rnd32() % 18];
  for (size_t i = 0; i < n; i++) w[i] = letters[rnd32() % (sizeof letters - 1)];
  return n;
}

static size_t secret(char *s) {
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  size_t n = 0;
  switch (rnd32() % 4) {
    case 0:
      n = (size_t)sprintf(s, "sk-proj-");
      for (int i = 0; i < 40; i++) s[n++] = b64[rnd32() % 62];
      break;
    case 1:
      n = (size_t)sprintf(s, "Bearer ");
      for (int i = 0; i < 32; i++) s[n++] = b64[rnd32() % 62];
      s[n++] = '=';
      break;
    case 2:
      n = (size_t)sprintf(s, "AKIA");
      for (int i = 0; i < 16; i++) s[n++] = b64[rnd32() % 26];
      break;
    default: n = (size_t)sprintf(s, "jane.doe%u@mail.example.com", rnd32() % 1000); break;
  }
  return n;
}

static void make_text(char *t, size_t n, size_t every) {
  size_t pos = 0, next = every / 2;
  char w[128];
  int sentence = 1;
  while (pos < n) {
    size_t l;
    if (pos >= next) {
      l = secret(w);
      next = pos + every / 2 + rnd32() % every;
    } else {
      l = word(w);
      if (sentence) w[0] = (char)(w[0] - 32);
    }
    if (pos + l + 2 > n) break;
    memcpy(t + pos, w, l);
    pos += l;
    uint32_t r = rnd32() % 40;
    sentence = r < 3;
    t[pos++] = r == 0 ? '\n' : r < 3 ? '.' : r == 3 ? ',' : ' ';
    if (r < 3 && r != 0) t[pos++] = ' ';
  }
  while (pos < n) t[pos++] = ' ';
}

static size_t count_rx(const sl_rx_set_t *set, const char *t, size_t n, size_t chunk) {
  static sl_rx_match_t buf[4096];
  sl_rx_stream_t st;
  sl_rx_stream_init(&st, set);
  size_t total = 0, k, used;
  for (size_t pos = 0; pos < n;) {
    size_t len = chunk < n - pos ? chunk : n - pos;
    sl_rx_feed(&st, t + pos, len, buf, 4096, &k, &used);
    total += k;
    pos += used;
  }
  sl_rx_finish(&st, buf, 4096, &k);
  return total + k;
}

static size_t count_ac(const sl_ac_t *ac, const char *t, size_t n, size_t chunk) {
  static sl_ac_match_t buf[1 << 16];
  sl_ac_stream_t st;
  sl_ac_stream_init(&st, ac);
  size_t total = 0, k, used;
  for (size_t pos = 0; pos < n;) {
    size_t len = chunk < n - pos ? chunk : n - pos;
    sl_ac_feed(&st, t + pos, len, buf, 1 << 16, &k, &used);
    total += k;
    pos += used;
  }
  return total;
}

static uint32_t floor_loop(const uint32_t *tab, const unsigned char *t, size_t n) {
  uint32_t acc = 0;
  for (size_t i = 0; i < n; i++) acc ^= tab[t[i]];
  return acc;
}

int main(int argc, char **argv) {
  size_t mb = argc > 1 ? (size_t)atoi(argv[1]) : 16;
  if (mb < 1) mb = 1;
  size_t n = mb << 20;
  char *text = malloc(n);
  sl_rx_set_t set;
  if (text == NULL || sl_rx_set_init(&set, SL_RX_ALL) != 0) return 1;
  static const char *const anchors[] = {"sk-", "bearer", "AKIA", "ASIA", "ABIA", "ACCA", "AGPA",
                                        "AIDA", "AROA", "ANPA", "ANVA", "APKA", "@"};
  size_t alens[13];
  for (int i = 0; i < 13; i++) alens[i] = strlen(anchors[i]);
  sl_ac_t *ac;
  if (sl_ac_new(anchors, alens, 13, SL_AC_NOCASE, &ac) != 0) return 1;

  printf("secret classes (openai_key, bearer, aws_access_key_id, email), %zu MB, best of 3\n", mb);
  for (int which = 0; which < 2; which++) {
    size_t every = which ? 200 : 4096;
    make_text(text, n, every);
    double best[4] = {1e300, 1e300, 1e300, 1e300};
    size_t cw = 0, cr = 0, ca = 0;
    volatile uint32_t sink = 0;
    for (int round = 0; round < 3; round++) {
      double t0 = now_ns();
      cw = scan_whole((const unsigned char *)text, n);
      double t1 = now_ns();
      cr = count_rx(&set, text, n, 65536);
      double t2 = now_ns();
      ca = count_ac(ac, text, n, 65536);
      double t3 = now_ns();
      sink ^= floor_loop(set.tab, (const unsigned char *)text, n);
      double t4 = now_ns();
      double t[4] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3};
      for (int k = 0; k < 4; k++)
        if (t[k] < best[k]) best[k] = t[k];
    }
    (void)sink;
    if (cw != cr) {
      fprintf(stderr, "bench_redact: %zu matches vs the whole-text scan's %zu\n", cr, cw);
      return 1;
    }
    printf("\n%s: a secret every ~%zu bytes, %zu matches (%.2f per KB)\n",
           which ? "dense" : "prose", every, cr, (double)cr / (double)(n >> 10));
    printf("  %-36s %7.3f GB/s %7.3f ns/byte  1.0x\n", "whole-text scan (baseline)",
           (double)n / best[0], best[0] / (double)n);
    printf("  %-36s %7.3f GB/s %7.3f ns/byte  %.1fx\n", "sl_rx_feed, 64 KB chunks",
           (double)n / best[1], best[1] / (double)n, best[0] / best[1]);
    printf("  %-36s %7.3f GB/s %7.3f ns/byte  %.1fx  (%zu anchor hits)\n",
           "sl_ac_feed over the anchors", (double)n / best[2], best[2] / (double)n,
           best[0] / best[2], ca);
    printf("  %-36s %7.3f GB/s %7.3f ns/byte  %.1fx\n", "floor: one table load per byte",
           (double)n / best[3], best[3] / (double)n, best[0] / best[3]);

    /* Streaming: tokens of 1-8 bytes, holdback after each. */
    size_t stream_n = n < (4u << 20) ? n : (4u << 20), ntok = 0, held = 0, maxheld = 0;
    unsigned char *toklen = malloc(stream_n);
    for (size_t i = 0; i < stream_n; i++) toklen[i] = (unsigned char)(1 + (rnd32() & 7));
    double tbest = 1e300;
    for (int round = 0; round < 3; round++) {
      sl_rx_stream_t st;
      sl_rx_match_t buf[64];
      sl_rx_stream_init(&st, &set);
      ntok = held = maxheld = 0;
      double t0 = now_ns();
      for (size_t p = 0; p < stream_n;) {
        size_t len = toklen[ntok], k, used;
        if (len > stream_n - p) len = stream_n - p;
        sl_rx_feed(&st, text + p, len, buf, 64, &k, &used);
        p += used;
        size_t h = sl_rx_holdback(&st);
        held += h;
        if (h > maxheld) maxheld = h;
        ntok++;
      }
      double t = now_ns() - t0;
      if (t < tbest) tbest = t;
    }
    printf("  %-36s %7.1f ns/token (%.2f bytes/token, %.2f ns/byte; holdback mean %.2f, max %zu)\n",
           "per-token feed + holdback", tbest / (double)ntok, (double)stream_n / (double)ntok,
           tbest / (double)stream_n, (double)held / (double)ntok, maxheld);
    free(toklen);
  }
  sl_ac_free(ac);
  free(text);
  return 0;
}
