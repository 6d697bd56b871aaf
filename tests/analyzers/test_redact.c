/* Tests for analyzers/redact: each class found in one chunk, at every
 * split offset and byte by byte with the same matches in the same order;
 * text that must not match; over-long keys and tokens masked whole in
 * pieces; UTF-8 around secrets (split inside characters); finish(); small
 * match arrays; errors.  A brute-force reference written here (every class
 * tried at every offset of the whole text) is compared with the stream over
 * thousands of random texts and random splits.  After every feed the
 * holdback is checked: the release point never moves back, no match
 * reported later starts before it, and it stays within
 * sl_rx_max_holdback(); on short texts, after every byte, continuations
 * show it is exact (a continuation puts a match at the release point, and
 * none puts a new one before it). */
#include <stdlib.h>

#include "analyzers/redact.h"
#include "analyzers/status.h"
#include "test.h"

static uint64_t rng_state = 0x3C6EF372FE94F82Bull;

static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static size_t rnd_below(size_t n) { return (size_t)(rnd() % n); }

/* ---- The reference: the grammar of redact.h, over a whole text. ---- */

static int r_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int r_alnum(int c) { return r_alpha(c) || (c >= '0' && c <= '9'); }
static int r_key(int c) { return r_alnum(c) || c == '_' || c == '-'; }
static int r_tok(int c) {
  return r_alnum(c) || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '-';
}
static int r_upnum(int c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
static int r_local(int c) {
  static const char extra[] = ".!#$%&'*+/=?^_`{|}~-";
  if (r_alnum(c)) return 1;
  for (const char *p = extra; *p; p++)
    if (*p == c) return 1;
  return 0;
}

#define REF_MAX 4096

typedef struct {
  sl_rx_match_t m[REF_MAX];
  size_t n;
} mlist_t;

static void add(mlist_t *l, uint64_t s, uint64_t e, uint32_t cls) {
  if (l->n < REF_MAX) {
    l->m[l->n].start = s;
    l->m[l->n].end = e;
    l->m[l->n].cls = cls;
  }
  l->n++;
}

/* [s, e) as pieces of at most max bytes. */
static void add_pieces(mlist_t *l, size_t s, size_t e, size_t max, uint32_t cls) {
  for (size_t a = s; a < e; a += max) add(l, a, a + max < e ? a + max : e, cls);
}

/* The longest m <= max such that x[0..m) is a domain, or 0: labels of
 * 1-63 [A-Za-z0-9-] not starting or ending with '-', at least two, the last
 * of 2+ letters.  Every end position is tried; the labels before the
 * current one are checked as they close. */
static size_t r_domain_longest(const unsigned char *x, size_t max) {
  size_t best = 0, labels = 0, start = 0;
  int alpha = 1;
  for (size_t m = 1; m <= max; m++) {
    unsigned char c = x[m - 1];
    if (c == '.') {
      size_t len = m - 1 - start;
      if (len < 1 || len > 63 || x[start] == '-' || x[m - 2] == '-') break;
      labels++;
      start = m;
      alpha = 1;
      continue;
    }
    if (!r_alnum(c) && c != '-') break;
    if (!r_alpha(c)) alpha = 0;
    size_t len = m - start;
    if (len > 63) break;
    if (labels >= 1 && alpha && len >= 2) best = m;
  }
  return best;
}

static const char *const aws_pre[] = {"AKIA", "ASIA", "ABIA", "ACCA", "AGPA",
                                      "AIDA", "AROA", "ANPA", "ANVA", "APKA"};

static void ref_scan(unsigned classes, const unsigned char *t, size_t n, mlist_t *l) {
  l->n = 0;
  for (size_t s = 0; s < n; s++) {
    int after_key = s > 0 && r_key(t[s - 1]), after_alnum = s > 0 && r_alnum(t[s - 1]);
    if ((classes & SL_RX_OPENAI_KEY) && !after_key && s + 3 <= n && memcmp(t + s, "sk-", 3) == 0) {
      size_t e = s + 3;
      while (e < n && r_key(t[e])) e++;
      if (e - s - 3 >= 20) add_pieces(l, s, e, 256, SL_RX_OPENAI_KEY);
    }
    if ((classes & SL_RX_BEARER) && !after_alnum && s + 7 <= n) {
      int word = 1;
      for (int k = 0; k < 6; k++)
        if ((t[s + k] | 0x20) != (unsigned char)"bearer"[k] || !r_alpha(t[s + k])) word = 0;
      if (word && t[s + 6] == ' ') {
        size_t j = s + 6;
        while (j < n && t[j] == ' ') j++;
        size_t e = j;
        while (e < n && r_tok(t[e])) e++;
        if (e - j >= 16) {
          while (e < n && t[e] == '=') e++;
          add_pieces(l, j, e, 512, SL_RX_BEARER);
        }
      }
    }
    if ((classes & SL_RX_AWS_KEY_ID) && !after_alnum) {
      size_t e = s;
      while (e < n && r_alnum(t[e])) e++;
      if (e - s == 20) {
        int ok = 0;
        for (int k = 0; k < 10; k++)
          if (memcmp(t + s, aws_pre[k], 4) == 0) ok = 1;
        for (size_t i = s; i < e; i++)
          if (!r_upnum(t[i])) ok = 0;
        if (ok) add(l, s, e, SL_RX_AWS_KEY_ID);
      }
    }
    if ((classes & SL_RX_EMAIL) && t[s] == '@') {
      size_t a = s, b = a;
      while (b > 0 && r_local(t[b - 1])) b--;
      if (a - b < 1 || a - b > 64 || t[b] == '.' || t[a - 1] == '.') continue;
      size_t room = 254 - (a + 1 - b), avail = n - (a + 1);
      size_t d = r_domain_longest(t + a + 1, avail < room ? avail : room);
      if (d) add(l, b, a + 1 + d, SL_RX_EMAIL);
    }
  }
}

static int cmp_match(const void *pa, const void *pb) {
  const sl_rx_match_t *a = pa, *b = pb;
  if (a->start != b->start) return a->start < b->start ? -1 : 1;
  if (a->end != b->end) return a->end < b->end ? -1 : 1;
  return a->cls < b->cls ? -1 : a->cls > b->cls;
}

static int same_list(const mlist_t *a, const mlist_t *b) {
  if (a->n != b->n) return 0;
  for (size_t i = 0; i < a->n && i < REF_MAX; i++)
    if (a->m[i].start != b->m[i].start || a->m[i].end != b->m[i].end || a->m[i].cls != b->m[i].cls)
      return 0;
  return 1;
}

static void print_list(const char *what, const mlist_t *l) {
  fprintf(stderr, "  %s (%zu):", what, l->n);
  for (size_t i = 0; i < l->n && i < 20; i++)
    fprintf(stderr, " [%llu,%llu)%s", (unsigned long long)l->m[i].start,
            (unsigned long long)l->m[i].end, sl_rx_class_name(l->m[i].cls));
  fprintf(stderr, "\n");
}

/* ---- Running the kernel ---- */

static sl_rx_set_t all_set;

/* Feeds text[0..n) in the chunks cuts[0..ncuts) (the rest, if any, as one
 * more), each from its own copy, with an out array of cap entries, then
 * finishes; the matches in the order reported go to l.  After every feed
 * call: each new match lies in bytes not yet released, within its class's
 * maximum; the holdback is at most sl_rx_max_holdback() and the release
 * point (offset - holdback) never moves back. */
static void run_stream(const sl_rx_set_t *set, const unsigned char *t, size_t n,
                       const size_t *cuts, size_t ncuts, size_t cap, mlist_t *l) {
  sl_rx_stream_t st;
  sl_rx_stream_init(&st, set);
  sl_rx_match_t buf[64];
  size_t pos = 0, maxh = sl_rx_max_holdback(set);
  uint64_t released = 0;
  l->n = 0;
  for (size_t c = 0; c <= ncuts; c++) {
    size_t len = c < ncuts ? cuts[c] : n - pos;
    if (len > n - pos) len = n - pos;
    /* Each chunk is fed from a copy followed by a space: a kernel that
     * read past the chunk would see that instead of the stream's next byte. */
    static unsigned char chunk[16384];
    ASSERT_LT(len, sizeof chunk);
    memcpy(chunk, t + pos, len);
    chunk[len] = ' ';
    size_t done = 0;
    do {
      size_t k = 0, used = 0;
      int rc = sl_rx_feed(&st, chunk + done, len - done, buf, cap, &k, &used);
      ASSERT_EQ(rc, 0);
      ASSERT(used > 0 || done == len);
      for (size_t i = 0; i < k; i++) {
        ASSERT_GE(buf[i].start, released);
        ASSERT_LT(buf[i].start, buf[i].end);
        ASSERT_LE(buf[i].end, st.offset);
        ASSERT_LE(buf[i].end - buf[i].start, sl_rx_class_max_len(buf[i].cls));
        add(l, buf[i].start, buf[i].end, buf[i].cls);
      }
      done += used;
      size_t h = sl_rx_holdback(&st);
      ASSERT_LE(h, maxh);
      ASSERT_LE(h, st.offset);
      ASSERT_GE(st.offset - h, released);
      released = st.offset - h;
    } while (done < len);
    pos += len;
  }
  ASSERT_UINT_EQ(st.offset, n);
  size_t k = 0;
  ASSERT_EQ(sl_rx_finish(&st, buf, cap < SL_RX_MAX_MATCHES ? SL_RX_MAX_MATCHES : cap, &k), 0);
  for (size_t i = 0; i < k; i++) {
    ASSERT_GE(buf[i].start, released);
    ASSERT_LT(buf[i].start, buf[i].end);
    ASSERT_LE(buf[i].end, n);
    ASSERT_LE(buf[i].end - buf[i].start, sl_rx_class_max_len(buf[i].cls));
    add(l, buf[i].start, buf[i].end, buf[i].cls);
  }
  ASSERT_EQ(sl_rx_holdback(&st), 0);
}

static void run_whole(const sl_rx_set_t *set, const char *s, mlist_t *l) {
  run_stream(set, (const unsigned char *)s, strlen(s), NULL, 0, 64, l);
}

/* The stream over t with the given cuts, sorted, against the reference. */
static void check_vs_ref(const sl_rx_set_t *set, const unsigned char *t, size_t n,
                         const size_t *cuts, size_t ncuts, size_t cap) {
  static mlist_t got, want;
  run_stream(set, t, n, cuts, ncuts, cap, &got);
  if (sl__test_cur_failed) return;
  ref_scan(set->classes, t, n, &want);
  ASSERT_LE(got.n, REF_MAX);
  qsort(got.m, got.n, sizeof got.m[0], cmp_match);
  qsort(want.m, want.n, sizeof want.m[0], cmp_match);
  if (!same_list(&got, &want)) {
    fprintf(stderr, "  text (%zu bytes): \"%.*s\"\n", n, (int)(n < 300 ? n : 300), (const char *)t);
    print_list("stream", &got);
    print_list("reference", &want);
  }
  ASSERT(same_list(&got, &want));
}

/* ---- Tests ---- */

/* One secret in surrounding text: exactly its bytes, one match. */
static void expect_one(const char *text, const char *secret, uint32_t cls) {
  static mlist_t l;
  run_whole(&all_set, text, &l);
  const char *at = strstr(text, secret);
  ASSERT_NOT_NULL(at);
  if (l.n != 1) print_list(text, &l);
  ASSERT_EQ(l.n, 1);
  ASSERT_UINT_EQ(l.m[0].start, (uint64_t)(at - text));
  ASSERT_UINT_EQ(l.m[0].end, (uint64_t)(at - text) + strlen(secret));
  ASSERT_EQ(l.m[0].cls, cls);
}

static void test_each_class_one_chunk(void) {
  ASSERT_EQ(sl_rx_set_init(&all_set, SL_RX_ALL), 0);
  expect_one("key: sk-proj-ABCDEFGHIJKLMNOPQRST1234 end", "sk-proj-ABCDEFGHIJKLMNOPQRST1234",
             SL_RX_OPENAI_KEY);
  expect_one("sk-ant-api03-abcdefghij_KLMNOPQRST-uvw.", "sk-ant-api03-abcdefghij_KLMNOPQRST-uvw",
             SL_RX_OPENAI_KEY);
  expect_one("(sk-aaaaaaaaaaaaaaaaaaaa)", "sk-aaaaaaaaaaaaaaaaaaaa", SL_RX_OPENAI_KEY);
  expect_one("Authorization: Bearer abcdefghijklmnop0123456789._~+/-== rest",
             "abcdefghijklmnop0123456789._~+/-==", SL_RX_BEARER);
  expect_one("auth=bEaReR    0123456789abcdef\n", "0123456789abcdef", SL_RX_BEARER);
  expect_one("_Bearer ABCDEFGHIJKLMNOPQRSTUVWXYZ=", "ABCDEFGHIJKLMNOPQRSTUVWXYZ=", SL_RX_BEARER);
  expect_one("id AKIAIOSFODNN7EXAMPLE.", "AKIAIOSFODNN7EXAMPLE", SL_RX_AWS_KEY_ID);
  expect_one("\"ASIA0123456789ABCDEF\"", "ASIA0123456789ABCDEF", SL_RX_AWS_KEY_ID);
  expect_one("k=APKAZZZZZZZZZZZZZZZZ", "APKAZZZZZZZZZZZZZZZZ", SL_RX_AWS_KEY_ID);
  expect_one("mail john.doe+tag@mail.example.co.uk, thanks", "john.doe+tag@mail.example.co.uk",
             SL_RX_EMAIL);
  expect_one("<a@bc.de>", "a@bc.de", SL_RX_EMAIL);
  expect_one("write to x_y@sub-domain.example.org.", "x_y@sub-domain.example.org", SL_RX_EMAIL);
  expect_one("see me@a.com-x", "me@a.com", SL_RX_EMAIL);
  expect_one("see me@a.com1", "me@a.com", SL_RX_EMAIL);
  expect_one("tick `me@x.org`", "`me@x.org", SL_RX_EMAIL);
  expect_one("at 123@4-5.io!", "123@4-5.io", SL_RX_EMAIL);
  /* Two addresses sharing bytes; a bearer token that is also a key. */
  static mlist_t l;
  run_whole(&all_set, "a@b.io@c.io", &l);
  ASSERT_EQ(l.n, 2);
  ASSERT_UINT_EQ(l.m[0].start, 0);
  ASSERT_UINT_EQ(l.m[0].end, 6);
  ASSERT_UINT_EQ(l.m[1].start, 2);
  ASSERT_UINT_EQ(l.m[1].end, 11);
  run_whole(&all_set, "Bearer sk-abcdefghijklmnopqrstuvwxyz ok", &l);
  ASSERT_EQ(l.n, 2); /* final at the same byte: class order */
  ASSERT_EQ(l.m[0].cls, SL_RX_OPENAI_KEY);
  ASSERT_EQ(l.m[1].cls, SL_RX_BEARER);
  ASSERT_UINT_EQ(l.m[0].start, 7);
  ASSERT_UINT_EQ(l.m[1].start, 7);
  ASSERT_UINT_EQ(l.m[0].end, 36);
  ASSERT_UINT_EQ(l.m[1].end, 36);
  /* Only the enabled classes. */
  sl_rx_set_t only;
  ASSERT_EQ(sl_rx_set_init(&only, SL_RX_EMAIL), 0);
  run_whole(&only, "Bearer sk-abcdefghijklmnopqrstuvwxyz AKIAIOSFODNN7EXAMPLE me@x.org", &l);
  ASSERT_EQ(l.n, 1);
  ASSERT_EQ(l.m[0].cls, SL_RX_EMAIL);
}

static const char *const examples[] = {
    "key: sk-proj-ABCDEFGHIJKLMNOPQRST1234 end",
    "Authorization: Bearer abcdefghijklmnop0123456789._~+/-== rest",
    "id AKIAIOSFODNN7EXAMPLE.",
    "mail john.doe+tag@mail.example.co.uk, thanks",
    "a@b.io@c.io and Bearer sk-abcdefghijklmnopqrstuvwxyz ok",
    "\xc3\xa9sk-aaaaaaaaaaaaaaaaaaaaaaaa\xe2\x82\xac|\xe2\x82\xac" "AKIAIOSFODNN7EXAMPLE\xc3\xa9"
    "\xf0\x9f\x94\x91me@x.org\xc3\xa9 Bearer \xc3\xa9 Bearer 0123456789abcdefXYZ\xe2\x82\xac",
    "sk-aaaaaaaaaaaaaaaaaaaaaaaaa", /* ends the stream: finish() reports it */
    "Bearer    tok_tok_tok_tok_tok_", "x ASIA0123456789ABCDEF", "end me@example.museum",
};

/* Every example fed whole, split in two at every offset, in three at
 * random offsets, and byte by byte: the same matches in the same order. */
static void test_every_split(void) {
  static mlist_t whole, got;
  for (size_t e = 0; e < sizeof examples / sizeof examples[0]; e++) {
    const unsigned char *t = (const unsigned char *)examples[e];
    size_t n = strlen(examples[e]);
    run_stream(&all_set, t, n, NULL, 0, 64, &whole);
    ASSERT_GE(whole.n, 1);
    check_vs_ref(&all_set, t, n, NULL, 0, 64);
    for (size_t cut = 0; cut <= n; cut++) {
      size_t cuts[1] = {cut};
      run_stream(&all_set, t, n, cuts, 1, 64, &got);
      ASSERT(same_list(&got, &whole));
      size_t c3[2] = {rnd_below(n + 1), 0};
      c3[1] = rnd_below(n - c3[0] + 1);
      run_stream(&all_set, t, n, c3, 2, 64, &got);
      ASSERT(same_list(&got, &whole));
    }
    size_t ones[512];
    for (size_t i = 0; i < n; i++) ones[i] = 1;
    run_stream(&all_set, t, n, ones, n, 64, &got);
    ASSERT(same_list(&got, &whole));
    run_stream(&all_set, t, n, ones, n, SL_RX_MAX_MATCHES, &got);
    ASSERT(same_list(&got, &whole));
  }
}

static void test_false_positives(void) {
  static const char *const none[] = {
      "sk-short",
      "task-force",
      "ask-me-anything-about-it-right-now-please",
      "xsk-abcdefghijklmnopqrstuvwxyz",
      "_sk-abcdefghijklmnopqrstuvwxyz",
      "5sk-abcdefghijklmnopqrstuvwxyz",
      "sk-abcdefghijklmnopqrs", /* 19 */
      "sk_abcdefghijklmnopqrstuvwxyz",
      "SK-abcdefghijklmnopqrstuvwxyz",
      "sk- abcdefghijklmnopqrstuvwxyz",
      "AKIAIOSFODNN7EXAMP",    /* AKIA + 14 */
      "AKIAIOSFODNN7EXAMPL",   /* AKIA + 15 */
      "AKIAIOSFODNN7EXAMPLEX", /* AKIA + 17 */
      "xAKIAIOSFODNN7EXAMPLE",
      "9AKIAIOSFODNN7EXAMPLE",
      "AKIAIOSFODNN7EXAMPLEx",
      "AKIAIOSFODNN7EXAMPLe",
      "AKIBIOSFODNN7EXAMPLE",
      "akiaIOSFODNN7EXAMPLE",
      "user@localhost",
      "a@b.c",
      "@example.com",
      "me@example",
      "john.@example.com",
      ".john@example.com",
      "..john@example.com",
      "john@-example.com",
      "john@example-.com",
      "john@example.c0m",
      "john@example..com",
      "john@.example.com",
      "john@@example.com",
      "john@ex_ample.com",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com", /* 65 */
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaajohn@example.com",
      "Bearer abc",
      "Bearer abcdefghijklmno", /* 15 */
      "Bearer abcdefghijklmno=",
      "xBearer abcdefghijklmnopqrstuv",
      "7Bearer abcdefghijklmnopqrstuv",
      "Bearerabcdefghijklmnopqrstuv",
      "Bearer\tabcdefghijklmnopqrstuv",
      "Beare abcdefghijklmnopqrstuv",
      "Bearer =abcdefghijklmnopqrstuv",
      "Bearer \xc3\xa9\141bcdefghijklmnopqrstuv", /* é, then "ab..." */
      "bbearer abcdefghijklmnopqrstuv",
      "BeBearer abcdefghijklmnopqrstuv",
      "bearebearer abcdefghijklmnopqrstuv",
  };
  static mlist_t l;
  for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
    run_whole(&all_set, none[i], &l);
    if (l.n != 0) print_list(none[i], &l);
    ASSERT_EQ(l.n, 0);
    /* And with a separator after it, and split byte by byte. */
    char buf[256];
    snprintf(buf, sizeof buf, "%s end", none[i]);
    run_whole(&all_set, buf, &l);
    ASSERT_EQ(l.n, 0);
    size_t n = strlen(none[i]), ones[256];
    for (size_t k = 0; k < n; k++) ones[k] = 1;
    run_stream(&all_set, (const unsigned char *)none[i], n, ones, n, 4, &l);
    ASSERT_EQ(l.n, 0);
  }
  /* Near misses next to real ones still leave the real ones. */
  expect_one("sk-short sk-abcdefghijklmnopqrst", "sk-abcdefghijklmnopqrst", SL_RX_OPENAI_KEY);
  expect_one("user@localhost or user@local.host", "user@local.host", SL_RX_EMAIL);
}

/* Over-long keys and tokens: pieces of the maximum, then the tail, all of
 * the run covered; the first piece reported as soon as it is complete. */
static void test_max_length(void) {
  static unsigned char t[2048];
  static mlist_t l;
  size_t body[] = {253, 254, 797};
  for (size_t b = 0; b < 3; b++) {
    size_t n = 0;
    memcpy(t, "sk-", 3);
    n = 3;
    for (size_t i = 0; i < body[b]; i++) t[n++] = "aZ9_-"[i % 5];
    size_t keylen = n;
    memcpy(t + n, " after", 6);
    n += 6;
    check_vs_ref(&all_set, t, n, NULL, 0, 64);
    run_stream(&all_set, t, n, NULL, 0, 64, &l);
    size_t want = (keylen + 255) / 256;
    ASSERT_EQ(l.n, want);
    for (size_t i = 0; i < l.n; i++) {
      ASSERT_UINT_EQ(l.m[i].start, i * 256);
      ASSERT_UINT_EQ(l.m[i].end, (i + 1) * 256 < keylen ? (i + 1) * 256 : keylen);
    }
    /* Fed exactly the first 256 bytes: that piece is out already. */
    sl_rx_stream_t st;
    sl_rx_stream_init(&st, &all_set);
    sl_rx_match_t m[8];
    size_t k, used;
    ASSERT_EQ(sl_rx_feed(&st, t, 256, m, 8, &k, &used), 0);
    ASSERT_EQ(k, 1);
    ASSERT_UINT_EQ(m[0].start, 0);
    ASSERT_UINT_EQ(m[0].end, 256);
    ASSERT_EQ(sl_rx_holdback(&st), 0);
    /* Every split of the long one. */
    if (b == 2) {
      for (size_t cut = 0; cut <= n; cut += 7) {
        size_t cuts[1] = {cut};
        check_vs_ref(&all_set, t, n, cuts, 1, 64);
      }
    }
  }
  /* A key or token ending the stream exactly at a cut: the last piece was
   * reported by the feed, and finish() adds no empty one. */
  for (size_t len = 256; len <= 512; len += 256) {
    memcpy(t, "sk-", 3);
    memset(t + 3, 'k', len - 3);
    run_stream(&all_set, t, len, NULL, 0, 64, &l);
    ASSERT_EQ(l.n, len / 256);
    ASSERT_UINT_EQ(l.m[l.n - 1].end, len);
    memcpy(t, "Bearer ", 7);
    memset(t + 7, 'k', len * 2);
    run_stream(&all_set, t, 7 + len * 2, NULL, 0, 64, &l);
    ASSERT_EQ(l.n, len / 256);
    ASSERT_UINT_EQ(l.m[l.n - 1].end, 7 + len * 2);
    memset(t + 7 + len * 2 - 3, '=', 3);
    run_stream(&all_set, t, 7 + len * 2, NULL, 0, 64, &l);
    ASSERT_EQ(l.n, len / 256);
  }
  /* Tokens: 512 exactly; 520 and padding; 510 and five '=' then text. */
  struct {
    size_t tok, pad;
    size_t pieces[4][2];
    size_t npieces;
  } cases[] = {
      {512, 0, {{7, 519}}, 1},
      {520, 2, {{7, 519}, {519, 529}}, 2},
      {510, 5, {{7, 519}, {519, 522}}, 2},
      {1100, 1, {{7, 519}, {519, 1031}, {1031, 1108}}, 3},
  };
  for (size_t c = 0; c < 4; c++) {
    size_t n = 0;
    memcpy(t, "Bearer ", 7);
    n = 7;
    for (size_t i = 0; i < cases[c].tok; i++) t[n++] = "aB3._~+/-"[i % 9];
    for (size_t i = 0; i < cases[c].pad; i++) t[n++] = '=';
    /* After padding a TOK byte is no part of the token; without, a space
     * ends it. */
    const char *after = cases[c].pad ? "abc def" : " abc def";
    memcpy(t + n, after, strlen(after));
    n += strlen(after);
    static sl_rx_set_t bearer;
    ASSERT_EQ(sl_rx_set_init(&bearer, SL_RX_BEARER), 0);
    run_stream(&bearer, t, n, NULL, 0, 64, &l);
    ASSERT_EQ(l.n, cases[c].npieces);
    for (size_t i = 0; i < l.n; i++) {
      ASSERT_UINT_EQ(l.m[i].start, cases[c].pieces[i][0]);
      ASSERT_UINT_EQ(l.m[i].end, cases[c].pieces[i][1]);
    }
    check_vs_ref(&all_set, t, n, NULL, 0, 64);
    for (size_t cut = 0; cut <= n; cut += 5) {
      size_t cuts[2] = {cut, 3};
      check_vs_ref(&all_set, t, n, cuts, 2, 64);
    }
  }
  /* Email has no tail: a label past 63 ends the address at the longest
   * valid one, a domain past 254 in all likewise. */
  {
    size_t n = 0;
    memcpy(t, "me@ab.", 6);
    n = 6;
    for (int i = 0; i < 70; i++) t[n++] = 'x';
    check_vs_ref(&all_set, t, n, NULL, 0, 64);
    run_stream(&all_set, t, n, NULL, 0, 64, &l);
    ASSERT_EQ(l.n, 1);
    ASSERT_UINT_EQ(l.m[0].end, 6 + 63);
    n = 0;
    memcpy(t, "me@", 3);
    n = 3;
    while (n < 300) {
      for (int i = 0; i < 9; i++) t[n++] = 'q';
      t[n++] = '.';
    }
    check_vs_ref(&all_set, t, n, NULL, 0, 64);
    run_stream(&all_set, t, n, NULL, 0, 64, &l);
    ASSERT_EQ(l.n, 1);
    ASSERT_UINT_EQ(l.m[0].end, 252); /* "me@" + 24 x "qqqqqqqqq." + "qqqqqqqqq" */
  }
}

/* Secrets against multibyte UTF-8 (a non-ASCII byte is a separator), with
 * splits inside the characters. */
static void test_utf8(void) {
  static const char *const cases[][2] = {
      {"\xc3\xa9sk-abcdefghijklmnopqrstu\xc3\xa9", "sk-abcdefghijklmnopqrstu"},
      {"\xe2\x82\xac" "AKIAIOSFODNN7EXAMPLE\xe2\x82\xac", "AKIAIOSFODNN7EXAMPLE"},
      {"\xf0\x9f\x98\x80john@example.com\xf0\x9f\x98\x80", "john@example.com"},
      {"\xe6\x97\xa5" "Bearer abcdefghijklmnopq\xe6\x97\xa5", "abcdefghijklmnopq"},
      {"\xd0\x9f\xd1\x80\xd0\xb8 me@\xd0\xbf.com x@a.ru", "x@a.ru"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    expect_one(cases[c][0], cases[c][1], 0 == c ? SL_RX_OPENAI_KEY
                                         : 1 == c ? SL_RX_AWS_KEY_ID
                                         : 3 == c ? SL_RX_BEARER
                                                  : SL_RX_EMAIL);
    const unsigned char *t = (const unsigned char *)cases[c][0];
    size_t n = strlen(cases[c][0]), ones[128];
    for (size_t cut = 0; cut <= n; cut++) {
      size_t cuts[1] = {cut};
      check_vs_ref(&all_set, t, n, cuts, 1, 64);
    }
    for (size_t i = 0; i < n; i++) ones[i] = 1;
    check_vs_ref(&all_set, t, n, ones, n, 64);
  }
}

static void test_finish(void) {
  static const struct {
    const char *text;
    size_t start, end; /* end 0: no match */
  } cases[] = {
      {"x sk-abcdefghijklmnopqrstuv", 2, 27}, /* 25 bytes at the end */
      {"x sk-abcdefghijklmnopqrs", 0, 0},     /* 19 in the body */
      {"Bearer abcdefghijklmnop", 7, 23},
      {"Bearer abcdefghijklmnop==", 7, 25},
      {"Bearer abcdefghijklmno", 0, 0},
      {"AKIAIOSFODNN7EXAMPLE", 0, 20},
      {"AKIAIOSFODNN7EXAMPL", 0, 0},
      {"me@x.org", 0, 8},
      {"me@x.org.", 0, 8},
      {"me@x.org.u", 0, 8},
      {"me@x.org.uk", 0, 11},
      {"me@x.o", 0, 0},
      {"me@x", 0, 0},
      {"me", 0, 0},
  };
  sl_rx_match_t m[8];
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    sl_rx_stream_t st;
    sl_rx_stream_init(&st, &all_set);
    size_t n = strlen(cases[c].text), k = 9, used;
    ASSERT_EQ(sl_rx_feed(&st, cases[c].text, n, m, 8, &k, &used), 0);
    ASSERT_EQ(k, 0); /* nothing is final before the end */
    ASSERT_EQ(used, n);
    ASSERT_EQ(sl_rx_finish(&st, m, 8, &k), 0);
    ASSERT_EQ(k, cases[c].end ? 1 : 0);
    if (k) {
      ASSERT_UINT_EQ(m[0].start, cases[c].start);
      ASSERT_UINT_EQ(m[0].end, cases[c].end);
    }
    ASSERT_EQ(sl_rx_holdback(&st), 0);
    ASSERT_EQ(sl_rx_feed(&st, "x", 1, m, 8, &k, &used), SL_AN_EINVAL);
    ASSERT_EQ(sl_rx_finish(&st, m, 8, &k), SL_AN_EINVAL);
  }
  /* All four classes pending at once; too small an array changes nothing. */
  static const char four[] = "Bearer sk-abcdefghijklmnopqrstuvwxyz ASIA0123456789ABCDEF x@ab.cd";
  sl_rx_set_t s1;
  ASSERT_EQ(sl_rx_set_init(&s1, SL_RX_OPENAI_KEY | SL_RX_BEARER), 0);
  sl_rx_stream_t st;
  sl_rx_stream_init(&st, &s1);
  size_t k, used;
  ASSERT_EQ(sl_rx_feed(&st, "Bearer sk-abcdefghijklmnopqrstuvwxyz", 36, m, 8, &k, &used), 0);
  ASSERT_EQ(k, 0);
  ASSERT_EQ(sl_rx_holdback(&st), 29);
  ASSERT_EQ(sl_rx_finish(&st, m, 1, &k), SL_AN_ETOOBIG);
  ASSERT_EQ(sl_rx_holdback(&st), 29);
  ASSERT_EQ(sl_rx_finish(&st, m, 2, &k), 0);
  ASSERT_EQ(k, 2);
  ASSERT_EQ(m[0].cls, SL_RX_OPENAI_KEY);
  ASSERT_EQ(m[1].cls, SL_RX_BEARER);
  static mlist_t l;
  run_whole(&all_set, four, &l);
  ASSERT_EQ(l.n, 4);
  ASSERT_EQ(l.m[3].cls, SL_RX_EMAIL);
}

static void test_holdback_values(void) {
  static const struct {
    const char *text;
    size_t hold;
  } cases[] = {
      {"", 0},
      {"hello", 5},                 /* could be a local part */
      {"hello ", 0},
      {"Bearer ", 0},               /* the word is never masked */
      {"x Bearer  abc", 3},         /* the token so far */
      {"s", 1},
      {"sk-abc", 6},
      {"task", 4},                  /* email run only */
      {"\xc3\xa9s", 1},
      {"AKIA12", 6},
      {"AKIB12", 6},                /* not a key, but a local part */
      {"+AKIB12", 7},
      {".hidden", 0},               /* a run starting with '.' is no local part */
      {"me@x", 4},
      {"me@x.org", 8},
      {"me@x.org ", 0},
      {"me@-", 1},                  /* dead scan; '-' may begin a new local part */
      {"me@x-", 5},
      {"...", 0},
      {"a.", 2},
      {"\xe2\x82", 0},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    sl_rx_stream_t st;
    sl_rx_stream_init(&st, &all_set);
    sl_rx_match_t m[8];
    size_t k, used;
    ASSERT_EQ(sl_rx_feed(&st, cases[c].text, strlen(cases[c].text), m, 8, &k, &used), 0);
    if (sl_rx_holdback(&st) != cases[c].hold) fprintf(stderr, "  \"%s\"\n", cases[c].text);
    ASSERT_EQ(sl_rx_holdback(&st), cases[c].hold);
  }
  /* The local-part limit: a run of 64 is held, unless it ends with '.';
   * 65 is not. */
  char run[70];
  memset(run, 'a', sizeof run);
  sl_rx_stream_t st;
  sl_rx_match_t m[8];
  size_t k, used;
  sl_rx_stream_init(&st, &all_set);
  ASSERT_EQ(sl_rx_feed(&st, run, 64, m, 8, &k, &used), 0);
  ASSERT_EQ(sl_rx_holdback(&st), 64);
  ASSERT_EQ(sl_rx_feed(&st, run, 1, m, 8, &k, &used), 0);
  ASSERT_EQ(sl_rx_holdback(&st), 0);
  run[63] = '.';
  sl_rx_stream_init(&st, &all_set);
  ASSERT_EQ(sl_rx_feed(&st, run, 64, m, 8, &k, &used), 0);
  ASSERT_EQ(sl_rx_holdback(&st), 0);
  /* A first label of 63 ending in '-' can go nowhere (no byte may follow
   * it but '.', which a trailing '-' forbids): the scan is over, and only
   * the run after the '@' (a local part to come) is held. */
  char dom[80] = "x@1";
  memset(dom + 3, 'a', 61);
  dom[64] = '-';
  dom[65] = 0;
  sl_rx_stream_init(&st, &all_set);
  ASSERT_EQ(sl_rx_feed(&st, dom, 64, m, 8, &k, &used), 0);
  ASSERT_EQ(sl_rx_holdback(&st), 64); /* "x@" + 62: the scan still lives */
  ASSERT_EQ(sl_rx_feed(&st, dom + 64, 1, m, 8, &k, &used), 0);
  ASSERT_EQ(sl_rx_holdback(&st), 63);
  ASSERT_EQ(sl_rx_max_holdback(&all_set), 511);
  sl_rx_set_t s;
  ASSERT_EQ(sl_rx_set_init(&s, SL_RX_AWS_KEY_ID), 0);
  ASSERT_EQ(sl_rx_max_holdback(&s), 20);
  ASSERT_EQ(sl_rx_set_init(&s, SL_RX_EMAIL | SL_RX_AWS_KEY_ID), 0);
  ASSERT_EQ(sl_rx_max_holdback(&s), 253);
  ASSERT_EQ(sl_rx_set_init(&s, SL_RX_OPENAI_KEY), 0);
  ASSERT_EQ(sl_rx_max_holdback(&s), 255);
}

/* ---- Random texts ---- */

static const char *const frags[] = {
    "sk-", "sk-proj-", "sk-ant-", "Bearer ", "bearer", "BEARER  ", " Bearer", "AKIA", "ASIA",
    "APKA", "AKIB", "AIDA", "@", "@", "@", ".", ".", "-", "_", "=", "==", " ", " ", "  ", "\n",
    "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x94\x91", "x@y", ".com", ".io", "example", "@ex.io", "`",
    "'", "/", "+", "0123456789", "ABCDEFGHJK0123", "the", "task", "ask", "s", "k", "A", "b", "(",
    ")", ":", ",", "\"", "~",
};

static size_t run_of(unsigned char *t, size_t max, const char *alphabet, size_t len) {
  size_t a = strlen(alphabet), n = 0;
  while (n < len && n < max) t[n++] = (unsigned char)alphabet[rnd_below(a)];
  return n;
}

/* A random text of about n bytes from fragments and runs of class bytes;
 * long runs now and then, so maximum lengths are reached. */
static size_t make_text(unsigned char *t, size_t cap, size_t n, int long_runs) {
  static const char *const alphabets[] = {
      "abcdefghijklmnopqrstuvwxyz",
      "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
      "aZ09_-",
      "aB3._~+/-",
      "abc.de-f",
      "ab.!#$%&'*+/=?^_`{|}~-",
  };
  size_t len = 0;
  while (len < n && len + 8 < cap) {
    size_t r = rnd_below(10);
    if (r < 6) {
      const char *f = frags[rnd_below(sizeof frags / sizeof frags[0])];
      size_t fl = strlen(f);
      if (len + fl > cap) break;
      memcpy(t + len, f, fl);
      len += fl;
    } else {
      size_t rl = 1 + rnd_below(24);
      if (long_runs && rnd_below(8) == 0) rl = 200 + rnd_below(900);
      len += run_of(t + len, cap - len, alphabets[rnd_below(6)], rl);
    }
  }
  return len;
}

static void test_random_vs_reference(void) {
  static unsigned char t[8192];
  static size_t cuts[8192];
  sl_rx_set_t sets[6];
  unsigned masks[6] = {SL_RX_ALL, SL_RX_OPENAI_KEY, SL_RX_BEARER, SL_RX_AWS_KEY_ID, SL_RX_EMAIL,
                       SL_RX_BEARER | SL_RX_EMAIL};
  for (int s = 0; s < 6; s++) ASSERT_EQ(sl_rx_set_init(&sets[s], masks[s]), 0);
  for (int iter = 0; iter < 3000; iter++) {
    int long_runs = iter % 10 == 0;
    size_t n = make_text(t, sizeof t, long_runs ? 3000 : 1 + rnd_below(300), long_runs);
    const sl_rx_set_t *set = &sets[iter % 3 == 0 ? rnd_below(6) : 0];
    size_t mode = rnd_below(4), nc = 0, total = 0;
    while (total < n) {
      size_t c = mode == 0 ? 1 : mode == 1 ? 1 + rnd_below(3) : mode == 2 ? 1 + rnd_below(64)
                                                                          : rnd_below(n + 1);
      cuts[nc++] = c;
      total += c;
    }
    size_t cap = rnd_below(3) == 0 ? SL_RX_MAX_MATCHES : 64;
    check_vs_ref(set, t, n, cuts, nc, cap);
    if (sl__test_cur_failed) {
      fprintf(stderr, "  iteration %d, mode %zu, classes %u\n", iter, mode, set->classes);
      return;
    }
  }
}

/* Exactness of the holdback on short texts, after every byte: with every
 * completion tried, (a) when the holdback h > 0 some completion gives a
 * match starting exactly at offset - h, and (b) no completion gives a match
 * starting before offset - h that was not reported already. */
static void test_holdback_exact(void) {
  static const char *const templates[] = {
      "sk-aaaaaaaaaaaaaaaaaaaa", "bearer aaaaaaaaaaaaaaaa", "a@example.com", "a.com",
      "AKIAAAAAAAAAAAAAAAAA", "ASIAAAAAAAAAAAAAAAAA", "ABIAAAAAAAAAAAAAAAAA",
      "ACCAAAAAAAAAAAAAAAAA", "AGPAAAAAAAAAAAAAAAAA", "AIDAAAAAAAAAAAAAAAAA",
      "AROAAAAAAAAAAAAAAAAA", "ANPAAAAAAAAAAAAAAAAA", "ANVAAAAAAAAAAAAAAAAA",
      "APKAAAAAAAAAAAAAAAAA", "=",
  };
  static char comps[512][32];
  size_t ncomp = 0;
  comps[ncomp++][0] = 0; /* the stream ends here */
  for (size_t i = 0; i < sizeof templates / sizeof templates[0]; i++) {
    size_t tl = strlen(templates[i]);
    for (size_t k = 0; k < tl; k++) snprintf(comps[ncomp++], 32, "%s", templates[i] + k);
  }
  static unsigned char t[400], ext[500];
  static mlist_t reported, ref;
  for (int iter = 0; iter < 150; iter++) {
    size_t n = make_text(t, 60, 12 + rnd_below(40), 0);
    sl_rx_stream_t st;
    sl_rx_stream_init(&st, &all_set);
    reported.n = 0;
    for (size_t i = 0; i < n; i++) {
      sl_rx_match_t m[8];
      size_t k, used;
      ASSERT_EQ(sl_rx_feed(&st, t + i, 1, m, 8, &k, &used), 0);
      for (size_t j = 0; j < k; j++) add(&reported, m[j].start, m[j].end, m[j].cls);
      size_t h = sl_rx_holdback(&st), fed = i + 1;
      uint64_t rel = fed - h;
      int hit = h == 0;
      memcpy(ext, t, fed);
      for (size_t c = 0; c < ncomp; c++) {
        size_t cl = strlen(comps[c]);
        memcpy(ext + fed, comps[c], cl);
        ref_scan(SL_RX_ALL, ext, fed + cl, &ref);
        for (size_t r = 0; r < ref.n; r++) {
          if (ref.m[r].start == rel && ref.m[r].end > rel) hit = 1;
          if (ref.m[r].start < rel) {
            int seen = 0;
            for (size_t q = 0; q < reported.n; q++)
              if (reported.m[q].start == ref.m[r].start && reported.m[q].end == ref.m[r].end &&
                  reported.m[q].cls == ref.m[r].cls)
                seen = 1;
            if (!seen)
              fprintf(stderr, "  \"%.*s\" + \"%s\": [%llu,%llu) %s before %llu\n", (int)fed,
                      (const char *)t, comps[c], (unsigned long long)ref.m[r].start,
                      (unsigned long long)ref.m[r].end, sl_rx_class_name(ref.m[r].cls),
                      (unsigned long long)rel);
            ASSERT(seen);
          }
        }
      }
      if (!hit) fprintf(stderr, "  \"%.*s\": holdback %zu too large\n", (int)fed, t, h);
      ASSERT(hit);
    }
  }
}

/* Addresses whose length ends near the 254-byte limit, with every kind of
 * tail (a valid last label, one of digits, one ending in '-', a label cut
 * by the limit), against the reference whole and byte by byte; and the
 * holdback exact, as in test_holdback_exact, over the last bytes before
 * the limit with the short completions that matter there. */
static void test_email_limits(void) {
  static const char *const tails[] = {"", ".ab", ".abc", "-a.ab", ".a", "1.ab", "a", "ab",
                                      "a1", ".a1", "-", "1", "a-", ".", "..ab", "a.b", "abc"};
  static const char *const ends[] = {"", " ", "-", "1", ".", "@x.io", "a"};
  static const char *const comps[] = {"", "a", "b", "ab", ".ab", "a.ab", "1", ".", "-",
                                      "-a.ab", "aa", "1.ab", "a-", "@ab.cd", "a@ab.cd"};
  static unsigned char t[400];
  static size_t ones[400];
  static mlist_t reported, ref;
  for (int iter = 0; iter < 2000; iter++) {
    size_t n = 0, local = 1 + rnd_below(64), target = 236 + rnd_below(22);
    for (size_t i = 0; i < local; i++) t[n++] = "xy+"[rnd_below(3)];
    t[n++] = '@';
    /* Mostly valid labels, some with digits or inner dashes, so the text
     * reaches the limit inside every kind of label; in a third of the texts
     * no label can be the last, so only the tail can make an address. */
    int digits = rnd_below(3) == 0; /* every label starts with a digit: no address yet */
    while (n < target) {
      size_t ll = 1 + rnd_below(rnd_below(4) == 0 ? 63 : 12);
      for (size_t i = 0; i < ll && n < target; i++) {
        unsigned char c = (unsigned char)"abq"[rnd_below(3)];
        if (rnd_below(6) == 0 || (digits && i == 0)) c = '1';
        if (i > 0 && i + 1 < ll && rnd_below(6) == 0) c = '-';
        t[n++] = c;
      }
      if (n < target) t[n++] = '.';
    }
    const char *tail = tails[rnd_below(sizeof tails / sizeof tails[0])];
    const char *end = ends[rnd_below(sizeof ends / sizeof ends[0])];
    memcpy(t + n, tail, strlen(tail));
    n += strlen(tail);
    memcpy(t + n, end, strlen(end));
    n += strlen(end);
    check_vs_ref(&all_set, t, n, NULL, 0, 64);
    for (size_t i = 0; i < n; i++) ones[i] = 1;
    check_vs_ref(&all_set, t, n, ones, n, 64);
    if (sl__test_cur_failed) return;
    if (iter % 3 != 0) continue;
    sl_rx_stream_t st;
    sl_rx_stream_init(&st, &all_set);
    reported.n = 0;
    static unsigned char ext[420];
    for (size_t i = 0; i < n; i++) {
      sl_rx_match_t m[8];
      size_t k, used;
      ASSERT_EQ(sl_rx_feed(&st, t + i, 1, m, 8, &k, &used), 0);
      for (size_t j = 0; j < k; j++) add(&reported, m[j].start, m[j].end, m[j].cls);
      size_t fed = i + 1, h = sl_rx_holdback(&st);
      if (fed < 246) continue; /* the limit matters from here on */
      uint64_t rel = fed - h;
      int hit = h == 0;
      memcpy(ext, t, fed);
      for (size_t c = 0; c < sizeof comps / sizeof comps[0]; c++) {
        size_t cl = strlen(comps[c]);
        memcpy(ext + fed, comps[c], cl);
        ref_scan(SL_RX_ALL, ext, fed + cl, &ref);
        for (size_t r = 0; r < ref.n; r++) {
          if (ref.m[r].start == rel && ref.m[r].end > rel) hit = 1;
          if (ref.m[r].start < rel) {
            int seen = 0;
            for (size_t q = 0; q < reported.n; q++)
              if (reported.m[q].start == ref.m[r].start && reported.m[q].end == ref.m[r].end)
                seen = 1;
            ASSERT(seen);
          }
        }
      }
      if (!hit)
        fprintf(stderr, "  \"%.*s\": holdback %zu too large\n", (int)fed, (const char *)t, h);
      ASSERT(hit);
    }
  }
}

/* Out arrays smaller than SL_RX_MAX_MATCHES: the feed stops before a byte
 * whose matches do not fit and goes on from there. */
static void test_small_out(void) {
  static const char text[] = "Bearer sk-abcdefghijklmnopqrstuvwxyz ok";
  sl_rx_stream_t st;
  sl_rx_match_t m[2];
  size_t k, used;
  sl_rx_stream_init(&st, &all_set);
  /* The space after the token ends two matches at once. */
  ASSERT_EQ(sl_rx_feed(&st, text, 36, m, 1, &k, &used), 0);
  ASSERT_EQ(used, 36);
  ASSERT_EQ(sl_rx_feed(&st, text + 36, 3, m, 1, &k, &used), SL_AN_ETOOBIG);
  ASSERT_EQ(used, 0);
  ASSERT_EQ(k, 0);
  ASSERT_EQ(sl_rx_holdback(&st), 29);
  ASSERT_EQ(sl_rx_feed(&st, text + 36, 3, NULL, 0, &k, &used), SL_AN_ETOOBIG);
  ASSERT_EQ(sl_rx_feed(&st, text + 36, 3, m, 2, &k, &used), 0);
  ASSERT_EQ(used, 3);
  ASSERT_EQ(k, 2);
  /* With a match already written, the feed stops with rc 0. */
  static const char two[] = "x@ab.cd sk-abcdefghijklmnopqrstuvwxyz x";
  sl_rx_stream_init(&st, &all_set);
  ASSERT_EQ(sl_rx_feed(&st, two, sizeof two - 1, m, 1, &k, &used), 0);
  ASSERT_EQ(k, 1);
  ASSERT_EQ(used, sizeof two - 3); /* the first match filled m; stopped at the space */
  ASSERT_EQ(m[0].cls, SL_RX_EMAIL);
  ASSERT_EQ(sl_rx_feed(&st, two + used, sizeof two - 1 - used, m, 1, &k, &used), 0);
  ASSERT_EQ(k, 1);
  ASSERT_EQ(m[0].cls, SL_RX_OPENAI_KEY);
  /* No out array: text without matches goes through; a match stops it. */
  sl_rx_stream_init(&st, &all_set);
  ASSERT_EQ(sl_rx_feed(&st, "plain text ", 11, NULL, 0, &k, &used), 0);
  ASSERT_EQ(used, 11);
  ASSERT_EQ(sl_rx_feed(&st, "me@ab.cd done", 13, NULL, 0, &k, &used), 0);
  ASSERT_EQ(used, 8);
  /* Random texts with arrays of 1 and 2 against the reference. */
  static unsigned char t[4096];
  static size_t cuts[4096];
  for (int iter = 0; iter < 300; iter++) {
    size_t n = make_text(t, sizeof t, 1 + rnd_below(200), 0), nc = 0, total = 0;
    while (total < n) total += cuts[nc++] = 1 + rnd_below(16);
    static mlist_t got, want;
    sl_rx_stream_init(&st, &all_set);
    got.n = 0;
    uint64_t released = 0;
    for (size_t c = 0, pos = 0; c < nc; c++) {
      size_t len = cuts[c] < n - pos ? cuts[c] : n - pos, done = 0;
      size_t cap = 1 + (size_t)(iter & 1);
      while (done < len) {
        sl_rx_match_t mm[2];
        int rc = sl_rx_feed(&st, t + pos + done, len - done, mm, cap, &k, &used);
        ASSERT(rc == 0 || (rc == SL_AN_ETOOBIG && cap < SL_RX_MAX_MATCHES));
        if (rc == SL_AN_ETOOBIG) { /* the caller's fallback: a larger array */
          sl_rx_match_t big[SL_RX_MAX_MATCHES];
          ASSERT_EQ(sl_rx_feed(&st, t + pos + done, 1, big, SL_RX_MAX_MATCHES, &k, &used), 0);
          ASSERT_GT(k, cap);
          for (size_t j = 0; j < k; j++) add(&got, big[j].start, big[j].end, big[j].cls);
        } else {
          for (size_t j = 0; j < k; j++) add(&got, mm[j].start, mm[j].end, mm[j].cls);
        }
        for (size_t j = got.n - k; j < got.n; j++) ASSERT_GE(got.m[j].start, released);
        done += used;
        released = st.offset - sl_rx_holdback(&st);
      }
      pos += len;
    }
    sl_rx_match_t fm[SL_RX_MAX_MATCHES];
    ASSERT_EQ(sl_rx_finish(&st, fm, SL_RX_MAX_MATCHES, &k), 0);
    for (size_t j = 0; j < k; j++) add(&got, fm[j].start, fm[j].end, fm[j].cls);
    ref_scan(SL_RX_ALL, t, n, &want);
    qsort(got.m, got.n, sizeof got.m[0], cmp_match);
    qsort(want.m, want.n, sizeof want.m[0], cmp_match);
    ASSERT(same_list(&got, &want));
  }
}

static void test_api(void) {
  sl_rx_set_t s;
  ASSERT_EQ(sl_rx_set_init(NULL, SL_RX_ALL), SL_AN_EINVAL);
  ASSERT_EQ(sl_rx_set_init(&s, 0), SL_AN_EINVAL);
  ASSERT_EQ(sl_rx_set_init(&s, SL_RX_ALL + 1), SL_AN_EINVAL);
  ASSERT_EQ(sl_rx_set_init(&s, 1u << 31), SL_AN_EINVAL);
  unsigned cls = 0;
  static const char *const names[] = {"openai_key", "bearer", "aws_access_key_id", "email"};
  for (unsigned i = 0; i < 4; i++) {
    ASSERT_EQ(sl_rx_class_parse(names[i], strlen(names[i]), &cls), 0);
    ASSERT_EQ(cls, 1u << i);
    ASSERT_STR_EQ(sl_rx_class_name(1u << i), names[i]);
  }
  ASSERT_EQ(sl_rx_class_parse("emails", 6, &cls), SL_AN_ENOTFOUND);
  ASSERT_EQ(sl_rx_class_parse("email", 4, &cls), SL_AN_ENOTFOUND);
  ASSERT_EQ(sl_rx_class_parse("Bearer", 6, &cls), SL_AN_ENOTFOUND);
  ASSERT_EQ(sl_rx_class_parse(NULL, 0, &cls), SL_AN_EINVAL);
  ASSERT_EQ(sl_rx_class_parse("email", 5, NULL), SL_AN_EINVAL);
  ASSERT_NULL(sl_rx_class_name(0));
  ASSERT_NULL(sl_rx_class_name(SL_RX_ALL));
  ASSERT_EQ(sl_rx_class_max_len(SL_RX_OPENAI_KEY), 256);
  ASSERT_EQ(sl_rx_class_max_len(SL_RX_BEARER), 512);
  ASSERT_EQ(sl_rx_class_max_len(SL_RX_AWS_KEY_ID), 20);
  ASSERT_EQ(sl_rx_class_max_len(SL_RX_EMAIL), 254);
  ASSERT_EQ(sl_rx_class_max_len(3), 0);
  ASSERT_EQ(sl_rx_max_holdback(NULL), 0);

  sl_rx_stream_t st;
  sl_rx_match_t m[4];
  size_t k, used;
  sl_rx_stream_init(&st, NULL);
  ASSERT_EQ(sl_rx_feed(&st, "x", 1, m, 4, &k, &used), SL_AN_EINVAL);
  ASSERT_EQ(sl_rx_finish(&st, m, 4, &k), SL_AN_EINVAL);
  ASSERT_EQ(sl_rx_holdback(&st), 0);
  ASSERT_EQ(sl_rx_holdback(NULL), 0);
  sl_rx_stream_init(&st, &all_set);
  ASSERT_EQ(sl_rx_feed(NULL, "x", 1, m, 4, &k, &used), SL_AN_EINVAL);
  ASSERT_EQ(sl_rx_feed(&st, NULL, 1, m, 4, &k, &used), SL_AN_EINVAL);
  ASSERT_EQ(sl_rx_feed(&st, "x", 1, NULL, 4, &k, &used), SL_AN_EINVAL);
  ASSERT_EQ(sl_rx_feed(&st, "x", 1, m, 4, NULL, &used), SL_AN_EINVAL);
  ASSERT_EQ(sl_rx_feed(&st, "x", 1, m, 4, &k, NULL), SL_AN_EINVAL);
  ASSERT_EQ(sl_rx_feed(&st, NULL, 0, m, 4, &k, &used), 0);
  ASSERT_EQ(used, 0);
  ASSERT_EQ(sl_rx_finish(&st, NULL, 4, &k), SL_AN_EINVAL);
  ASSERT_EQ(sl_rx_finish(&st, m, 4, NULL), SL_AN_EINVAL);
  ASSERT_UINT_EQ(st.offset, 0);
  /* A copied cursor forks the stream. */
  ASSERT_EQ(sl_rx_feed(&st, "id AKIAIOSFODNN7", strlen("id AKIAIOSFODNN7"), m, 4, &k, &used), 0);
  sl_rx_stream_t fork = st;
  ASSERT_EQ(sl_rx_feed(&st, "EXAMPLE ", 8, m, 4, &k, &used), 0);
  ASSERT_EQ(k, 1);
  ASSERT_EQ(sl_rx_feed(&fork, "EXAMPLEX ", 9, m, 4, &k, &used), 0);
  ASSERT_EQ(k, 0);
}

int main(void) {
  SL_RUN(test_each_class_one_chunk);
  SL_RUN(test_every_split);
  SL_RUN(test_false_positives);
  SL_RUN(test_max_length);
  SL_RUN(test_utf8);
  SL_RUN(test_finish);
  SL_RUN(test_holdback_values);
  SL_RUN(test_random_vs_reference);
  SL_RUN(test_holdback_exact);
  SL_RUN(test_email_limits);
  SL_RUN(test_small_out);
  SL_RUN(test_api);
  return SL_TEST_EXIT();
}
