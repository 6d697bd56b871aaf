/* Tests for runtime/sse: WHATWG line and field rules, zero-copy spans, the
 * copy-on-pending rule, the join-buffer limit, and identical results for
 * every way of splitting the same bytes into feeds.  Every piece is fed
 * from its own heap copy that is freed right after the call, so under
 * AddressSanitizer a span kept into an old input is caught. */
#include "runtime/upstream/sse.h"

#include <stdlib.h>

#include "runtime/base/errors.h"
#include "test.h"

/* ---- helpers ---------------------------------------------------------- */

static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}

/* Appends a readable record of every event to a trace. */
typedef struct {
  char s[65536];
  size_t n;
  int events;
  int err;
} trace_t;

static void trace_add(trace_t *t, const char *p, size_t n) {
  if (n > sizeof(t->s) - t->n) n = sizeof(t->s) - t->n;
  memcpy(t->s + t->n, p, n);
  t->n += n;
}

static void trace_event(trace_t *t, const sl_sse_event_t *ev) {
  trace_add(t, "[", 1);
  if (ev->event != NULL) {
    trace_add(t, ev->event, ev->event_len);
    trace_add(t, "|", 1);
  }
  trace_add(t, ev->data, ev->data_len);
  trace_add(t, "]", 1);
  t->events++;
}

/* Feeds one piece from a private heap copy, draining all events. */
static int feed_piece(sl_sse_t *st, const char *p, size_t n, trace_t *t) {
  char *copy = malloc(n ? n : 1);
  memcpy(copy, p, n);
  const char *q = copy;
  size_t left = n;
  int r;
  for (;;) {
    size_t used;
    sl_sse_event_t ev;
    r = sl_sse_feed(st, q, left, &used, &ev);
    if (r < 0) break;
    if (used > left) {
      r = -99999;
      break;
    }
    q += used;
    left -= used;
    if (r == 0) {
      if (left != 0) r = -99998;
      break;
    }
    if (ev.in_input && (ev.data < copy || ev.data + ev.data_len > copy + n)) {
      r = -99997; /* claims to be in the input but is not */
      break;
    }
    trace_event(t, &ev);
  }
  free(copy);
  return r < 0 ? r : 0;
}

/* Decodes s split at the given cut points; returns the trace. */
static void run_cuts(const char *s, size_t len, const size_t *cuts, int ncuts, size_t cap,
                     trace_t *t) {
  char *join = malloc(cap ? cap : 1);
  sl_sse_t st;
  sl_sse_init(&st, join, cap);
  t->n = 0;
  t->events = 0;
  t->err = 0;
  size_t at = 0;
  for (int i = 0; i <= ncuts && t->err == 0; i++) {
    size_t to = i < ncuts ? cuts[i] : len;
    t->err = feed_piece(&st, s + at, to - at, t);
    at = to;
  }
  free(join);
}

static void run_whole(const char *s, size_t len, size_t cap, trace_t *t) {
  run_cuts(s, len, NULL, 0, cap, t);
}

/* ---- rules ------------------------------------------------------------ */

static void test_single_event_zero_copy(void) {
  char join[64];
  sl_sse_t st;
  sl_sse_init(&st, join, sizeof(join));
  const char in[] = "data: {\"a\":1}\n\ndata: x\n\n";
  size_t used;
  sl_sse_event_t ev;
  ASSERT_EQ(sl_sse_feed(&st, in, sizeof(in) - 1, &used, &ev), 1);
  ASSERT_EQ(ev.in_input, 1);
  ASSERT(ev.data == in + 6);
  ASSERT_MEM_EQ(ev.data, ev.data_len, "{\"a\":1}", 7);
  ASSERT_NULL(ev.event);
  ASSERT_EQ(used, 15);
  size_t used2;
  ASSERT_EQ(sl_sse_feed(&st, in + used, sizeof(in) - 1 - used, &used2, &ev), 1);
  ASSERT_MEM_EQ(ev.data, ev.data_len, "x", 1);
  ASSERT_EQ(used + used2, sizeof(in) - 1);
  ASSERT_EQ(sl_sse_feed(&st, in + sizeof(in) - 1, 0, &used, &ev), 0);
  ASSERT_EQ(used, 0);
  ASSERT_UINT_EQ(st.events, 2);
  ASSERT_EQ(sl_sse_pending(&st), 0);
}

static void test_field_value_spacing(void) {
  trace_t t;
  const char s[] = "data:x\n\ndata: y\n\ndata:  z\n\ndata\n\ndata:\n\ndata: \n\n";
  run_whole(s, sizeof(s) - 1, 64, &t);
  ASSERT_EQ(t.err, 0);
  /* One space is removed, a second is kept; "data" alone is empty data. */
  ASSERT_MEM_EQ(t.s, t.n, "[x][y][ z][][][]", 16);
}

static void test_multiline_join(void) {
  char join[64];
  sl_sse_t st;
  sl_sse_init(&st, join, sizeof(join));
  const char in[] = "data: a\ndata: b\ndata:\ndata: c\n\n";
  size_t used;
  sl_sse_event_t ev;
  ASSERT_EQ(sl_sse_feed(&st, in, sizeof(in) - 1, &used, &ev), 1);
  ASSERT_EQ(ev.in_input, 0);
  ASSERT(ev.data == join);
  ASSERT_MEM_EQ(ev.data, ev.data_len, "a\nb\n\nc", 6);
  ASSERT_EQ(used, sizeof(in) - 1);
}

static void test_line_ends(void) {
  trace_t t;
  const char crlf[] = "data: a\r\ndata: b\r\n\r\n: c\r\ndata: d\r\n\r\n";
  run_whole(crlf, sizeof(crlf) - 1, 64, &t);
  ASSERT_EQ(t.err, 0);
  ASSERT_MEM_EQ(t.s, t.n, "[a\nb][d]", 8);
  const char cr[] = "data: a\rdata: b\r\r: c\rdata: d\r\r";
  run_whole(cr, sizeof(cr) - 1, 64, &t);
  ASSERT_MEM_EQ(t.s, t.n, "[a\nb][d]", 8);
  const char mixed[] = "data: a\r\ndata: b\n\rdata: c\r\r\n\n";
  run_whole(mixed, sizeof(mixed) - 1, 64, &t);
  /* "\n\r": the LF ends b's line and the CR is a blank line; c's line ends
   * in CR, then "\r\n" is one blank line, and the last LF another. */
  ASSERT_MEM_EQ(t.s, t.n, "[a\nb][c]", 8);
}

static void test_cr_at_feed_end_then_lf(void) {
  trace_t t;
  /* A CR ending one feed and an LF starting the next are one line end. */
  const char s[] = "data: a\r\ndata: b\r\n\r\n";
  size_t cut = 8; /* after "data: a\r" */
  run_cuts(s, sizeof(s) - 1, &cut, 1, 64, &t);
  ASSERT_EQ(t.err, 0);
  ASSERT_MEM_EQ(t.s, t.n, "[a\nb]", 5);
  size_t cut2 = 19; /* between the CR and LF of the blank line */
  run_cuts(s, sizeof(s) - 1, &cut2, 1, 64, &t);
  ASSERT_MEM_EQ(t.s, t.n, "[a\nb]", 5);
  /* Lone CRs with a feed boundary after each. */
  const char c2[] = "data: a\r\rdata: b\r\r";
  size_t cuts[] = {8, 9, 17};
  run_cuts(c2, sizeof(c2) - 1, cuts, 3, 64, &t);
  ASSERT_MEM_EQ(t.s, t.n, "[a][b]", 6);
}

static void test_comments_counted(void) {
  char join[64];
  sl_sse_t st;
  sl_sse_init(&st, join, sizeof(join));
  const char in[] = ":\n\n: keep-alive\n:ping\r\n\r\n";
  size_t used;
  sl_sse_event_t ev;
  ASSERT_EQ(sl_sse_feed(&st, in, sizeof(in) - 1, &used, &ev), 0);
  ASSERT_EQ(used, sizeof(in) - 1);
  ASSERT_UINT_EQ(st.comments, 3);
  ASSERT_UINT_EQ(st.events, 0);
  /* A comment split across feeds counts once. */
  ASSERT_EQ(sl_sse_feed(&st, ": long comm", 11, &used, &ev), 0);
  ASSERT_EQ(sl_sse_feed(&st, "ent\ndata: x\n\n", 13, &used, &ev), 1);
  ASSERT_UINT_EQ(st.comments, 4);
  ASSERT_MEM_EQ(ev.data, ev.data_len, "x", 1);
}

static void test_event_names_and_ignored_fields(void) {
  trace_t t;
  const char s[] =
      "event: error\ndata: {\"e\":1}\n\n"   /* named */
      "event: lonely\n\n"                    /* no data: dropped, name reset */
      "data: plain\n\n"                      /* so this one has no name */
      "id: 7\nretry: 100\nfoo: bar\nDATA: x\nerror: {\"x\":1}\ndata: kept\n\n"
      "event:\ndata: empty-name\n\n"
      "event: a\nevent: b\ndata: last-name-wins\n\n";
  run_whole(s, sizeof(s) - 1, 64, &t);
  ASSERT_EQ(t.err, 0);
  const char want[] = "[error|{\"e\":1}][plain][kept][empty-name][b|last-name-wins]";
  ASSERT_MEM_EQ(t.s, t.n, want, sizeof(want) - 1);
}

static void test_bom(void) {
  trace_t t;
  const char s[] = "\xEF\xBB\xBF" "data: x\n\n\xEF\xBB\xBF" "data: y\n\ndata: z\n\n";
  run_whole(s, sizeof(s) - 1, 64, &t);
  ASSERT_EQ(t.err, 0);
  /* Only the first BOM is removed; the second makes an unknown field. */
  ASSERT_MEM_EQ(t.s, t.n, "[x][z]", 6);
  size_t cuts[] = {1, 2, 3, 4};
  run_cuts(s, sizeof(s) - 1, cuts, 4, 64, &t);
  ASSERT_MEM_EQ(t.s, t.n, "[x][z]", 6);
  /* Bytes that start like a BOM but are not one stay line bytes. */
  const char notbom[] = "\xEF\xBB" "data: q\n\ndata: r\n\n";
  size_t c1 = 1;
  run_cuts(notbom, sizeof(notbom) - 1, &c1, 1, 64, &t);
  ASSERT_MEM_EQ(t.s, t.n, "[r]", 3);
  const char empty_then[] = "\xEF\xBB\xBF\n" "data: s\n\n";
  run_cuts(empty_then, sizeof(empty_then) - 1, &c1, 1, 64, &t);
  ASSERT_MEM_EQ(t.s, t.n, "[s]", 3);
}

static void test_pending_is_copied(void) {
  char join[64];
  sl_sse_t st;
  sl_sse_init(&st, join, sizeof(join));
  size_t used;
  sl_sse_event_t ev;
  /* Complete data line, blank line not yet: the value must be copied. */
  char *a = malloc(16);
  memcpy(a, "data: abc\n", 10);
  ASSERT_EQ(sl_sse_feed(&st, a, 10, &used, &ev), 0);
  ASSERT_EQ(sl_sse_pending(&st), 1);
  memset(a, '#', 10);
  free(a);
  ASSERT_EQ(sl_sse_feed(&st, "\n", 1, &used, &ev), 1);
  ASSERT_EQ(ev.in_input, 0);
  ASSERT(ev.data == join);
  ASSERT_MEM_EQ(ev.data, ev.data_len, "abc", 3);
  /* A partial line. */
  char *b = malloc(16);
  memcpy(b, "data: de", 8);
  ASSERT_EQ(sl_sse_feed(&st, b, 8, &used, &ev), 0);
  memset(b, '#', 8);
  free(b);
  ASSERT_EQ(sl_sse_feed(&st, "f\n\n", 3, &used, &ev), 1);
  ASSERT_EQ(ev.in_input, 0);
  ASSERT_MEM_EQ(ev.data, ev.data_len, "def", 3);
  ASSERT_EQ(sl_sse_pending(&st), 0);
}

static void test_too_big(void) {
  char join[8];
  sl_sse_t st;
  sl_sse_init(&st, join, sizeof(join));
  size_t used;
  sl_sse_event_t ev;
  /* Exactly cap bytes is fine, in place or joined. */
  ASSERT_EQ(sl_sse_feed(&st, "data: 12345678\n\n", 16, &used, &ev), 1);
  ASSERT_EQ(sl_sse_feed(&st, "data: 1234", 10, &used, &ev), 0);
  ASSERT_EQ(sl_sse_feed(&st, "5678\n\n", 6, &used, &ev), 1);
  ASSERT_MEM_EQ(ev.data, ev.data_len, "12345678", 8);
  ASSERT_EQ(sl_sse_feed(&st, "data: 123\ndata: 4567\n\n", 22, &used, &ev), 1);
  ASSERT_MEM_EQ(ev.data, ev.data_len, "123\n4567", 8);
  /* One more byte fails, even when the line lies whole in the input. */
  ASSERT_EQ(sl_sse_feed(&st, "data: 123456789\n\n", 17, &used, &ev), SL_ETOOBIG);
  ASSERT_EQ(sl_sse_feed(&st, "data: 1\n\n", 9, &used, &ev), SL_ETOOBIG); /* sticky */
  sl_sse_reset(&st);
  ASSERT_EQ(sl_sse_feed(&st, "data: 1\n\n", 9, &used, &ev), 1);
  ASSERT_EQ(sl_sse_feed(&st, "data: 1234", 10, &used, &ev), 0);
  ASSERT_EQ(sl_sse_feed(&st, "56789", 5, &used, &ev), SL_ETOOBIG);
  sl_sse_reset(&st);
  ASSERT_EQ(sl_sse_feed(&st, "data: 1234\ndata: 5678\n\n", 23, &used, &ev), SL_ETOOBIG);
  sl_sse_reset(&st);
  /* Long comments and ignored fields cost nothing, whatever their size. */
  char big[300];
  memset(big, 'z', sizeof(big));
  big[0] = ':';
  ASSERT_EQ(sl_sse_feed(&st, big, sizeof(big), &used, &ev), 0);
  ASSERT_EQ(sl_sse_feed(&st, "\nid: ", 5, &used, &ev), 0);
  ASSERT_EQ(sl_sse_feed(&st, big, sizeof(big), &used, &ev), 0);
  ASSERT_EQ(sl_sse_feed(&st, "\ndata: ok\n\n", 11, &used, &ev), 1);
  ASSERT_MEM_EQ(ev.data, ev.data_len, "ok", 2);
  /* Event names have their own limit. */
  char name[80] = "event: ";
  memset(name + 7, 'n', 70);
  name[77] = '\n';
  ASSERT_EQ(sl_sse_feed(&st, name, 78, &used, &ev), SL_ETOOBIG);
}

/* ---- split invariance ------------------------------------------------- */

static const char corpus[] =
    "\xEF\xBB\xBF: hello\n\n"
    "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n"
    "data:{\"tgi\":true}\r\n\r\n"
    ":\n\n"
    "event: error\r\ndata: first\rdata: second\r\rid: 3\nretry: 10\n"
    "data: a\ndata:  b\ndata\n\n"
    "x-unknown: y\nevent: tick\n\n"
    "data: [DONE]\n\n"
    "data: tail-without-blank-line";

static void test_split_everywhere(void) {
  static trace_t whole, part;
  const size_t len = sizeof(corpus) - 1;
  run_whole(corpus, len, 256, &whole);
  ASSERT_EQ(whole.err, 0);
  const char want[] =
      "[{\"id\":\"chatcmpl-1\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}]"
      "[{\"tgi\":true}][error|first\nsecond][a\n b\n][[DONE]]";
  ASSERT_MEM_EQ(whole.s, whole.n, want, sizeof(want) - 1);

  /* Two pieces, cut at every position. */
  for (size_t i = 0; i <= len; i++) {
    run_cuts(corpus, len, &i, 1, 256, &part);
    ASSERT_EQ(part.err, 0);
    ASSERT_MEM_EQ(part.s, part.n, whole.s, whole.n);
  }
  /* Every pair of positions (three pieces), over a stride. */
  for (size_t i = 0; i <= len; i += 3)
    for (size_t j = i; j <= len; j += 5) {
      size_t cuts[2] = {i, j};
      run_cuts(corpus, len, cuts, 2, 256, &part);
      ASSERT_MEM_EQ(part.s, part.n, whole.s, whole.n);
    }
  /* One byte at a time. */
  size_t ones[sizeof(corpus)];
  for (size_t i = 0; i < len; i++) ones[i] = i + 1;
  run_cuts(corpus, len, ones, (int)len - 1, 256, &part);
  ASSERT_MEM_EQ(part.s, part.n, whole.s, whole.n);
  /* Random multi-piece splits. */
  rng_state = 0x5EEDULL;
  for (int round = 0; round < 500; round++) {
    size_t cuts[32];
    int n = (int)(rnd() % 32);
    for (int k = 0; k < n; k++) cuts[k] = rnd() % (len + 1);
    for (int a = 1; a < n; a++) /* sort */
      for (int b = a; b > 0 && cuts[b - 1] > cuts[b]; b--) {
        size_t tmp = cuts[b];
        cuts[b] = cuts[b - 1];
        cuts[b - 1] = tmp;
      }
    run_cuts(corpus, len, cuts, n, 256, &part);
    ASSERT_MEM_EQ(part.s, part.n, whole.s, whole.n);
  }
}

/* The data limit does not depend on how the bytes were split. */
static void test_limit_independent_of_splits(void) {
  static trace_t t;
  const char s[] = "data: 0123456789\n\ndata: 01234\ndata: 5678\n\ndata: 0123456789a\n\n";
  const size_t len = sizeof(s) - 1;
  for (size_t i = 0; i <= len; i++) {
    run_cuts(s, len, &i, 1, 10, &t);
    ASSERT_EQ(t.err, SL_ETOOBIG);
    ASSERT_MEM_EQ(t.s, t.n, "[0123456789][01234\n5678]", 24);
  }
}

static int acquired;
static char lazy_buf[64];

static char *lazy_acquire(void *ud, const char *keep, size_t keep_len, size_t need, size_t *got) {
  (void)keep;
  (void)keep_len;
  (void)need;
  acquired++;
  *got = sizeof(lazy_buf);
  return ud;
}

/* Gives space in steps of 4 bytes, in a new place each time, keeping what
 * was joined: the decoder must carry the bytes over and ask for no more
 * than it needs. */
static char grow_bufs[8][64];
static int grows;
static size_t grow_max_need;

static char *grow_acquire(void *ud, const char *keep, size_t keep_len, size_t need, size_t *got) {
  (void)ud;
  if (grows == 8) return NULL;
  char *b = grow_bufs[grows++];
  if (keep_len > 0) memcpy(b, keep, keep_len);
  if (need > grow_max_need) grow_max_need = need;
  *got = need + 4 <= 64 ? need + 4 : 64;
  return b;
}

/* A lazy buffer that is too small for the event is asked for again with
 * the bytes joined so far, which survive the move. */
static void test_lazy_join_buffer_grows(void) {
  sl_sse_t st;
  sl_sse_event_t ev;
  size_t used;
  grows = 0;
  grow_max_need = 0;
  sl_sse_init(&st, NULL, 64);
  sl_sse_set_acquire(&st, grow_acquire, NULL);
  ASSERT_EQ(sl_sse_feed(&st, "data: {\"ab", 10, &used, &ev), 0);
  ASSERT_EQ(sl_sse_feed(&st, "cdefgh", 6, &used, &ev), 0);
  ASSERT_EQ(sl_sse_feed(&st, "ijkl\":1}\n", 9, &used, &ev), 0);
  ASSERT_EQ(sl_sse_feed(&st, "data: [2]\n\n", 11, &used, &ev), 1);
  ASSERT_MEM_EQ(ev.data, ev.data_len, "{\"abcdefghijkl\":1}\n[2]", 22);
  ASSERT_EQ(ev.in_input, 0);
  ASSERT(grows >= 3);
  ASSERT_EQ(grow_max_need, 18); /* then 19 and 22 fit the 22 bytes given */
}

/* A lazy join buffer is asked for only when an event must be joined across
 * feeds; a refusal fails the feed with SL_ENOMEM. */
static void test_lazy_join_buffer(void) {
  sl_sse_t st;
  sl_sse_event_t ev;
  size_t used;
  acquired = 0;
  sl_sse_init(&st, NULL, sizeof(lazy_buf));
  sl_sse_set_acquire(&st, lazy_acquire, lazy_buf);
  const char *whole = "data: {\"a\":1}\n\ndata: {\"b\":2}\n\n";
  size_t off = 0, n = strlen(whole);
  int events = 0;
  while (off < n) {
    int rc = sl_sse_feed(&st, whole + off, n - off, &used, &ev);
    ASSERT_GE(rc, 0);
    off += used;
    if (rc == 1) events++;
  }
  ASSERT_EQ(events, 2);
  ASSERT_EQ(acquired, 0);
  /* Split inside an event: the buffer is acquired once. */
  ASSERT_EQ(sl_sse_feed(&st, "data: {\"c\"", 10, &used, &ev), 0);
  ASSERT_EQ(acquired, 1);
  ASSERT_EQ(sl_sse_feed(&st, ":3}\n\n", 5, &used, &ev), 1);
  ASSERT_MEM_EQ(ev.data, ev.data_len, "{\"c\":3}", 7);
  ASSERT_EQ(ev.in_input, 0);
  ASSERT_EQ(acquired, 1);
  /* No buffer to be had: the split event fails with SL_ENOMEM. */
  sl_sse_t st2;
  sl_sse_init(&st2, NULL, 64);
  sl_sse_set_acquire(&st2, lazy_acquire, NULL);
  ASSERT_EQ(sl_sse_feed(&st2, "data: x", 7, &used, &ev), SL_ENOMEM);
}

int main(void) {
  SL_RUN(test_lazy_join_buffer);
  SL_RUN(test_lazy_join_buffer_grows);
  SL_RUN(test_single_event_zero_copy);
  SL_RUN(test_field_value_spacing);
  SL_RUN(test_multiline_join);
  SL_RUN(test_line_ends);
  SL_RUN(test_cr_at_feed_end_then_lf);
  SL_RUN(test_comments_counted);
  SL_RUN(test_event_names_and_ignored_fields);
  SL_RUN(test_bom);
  SL_RUN(test_pending_is_copied);
  SL_RUN(test_too_big);
  SL_RUN(test_split_everywhere);
  SL_RUN(test_limit_independent_of_splits);
  return SL_TEST_EXIT();
}
