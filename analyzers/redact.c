/* redact.c: classes of secrets on a stream (see redact.h).
 *
 * Each class is a small state machine fed one byte at a time; each keeps
 * the offset where its candidate began, which is also what it needs held
 * back.  A machine that loses its candidate drops to idle; the byte that
 * broke it can never start a new candidate of the same class (every class
 * needs a boundary before its start that this byte's predecessor, part of
 * the broken candidate, does not give), so no byte is looked at twice.
 */
#include <stdlib.h>
#include <string.h>

#include "analyzers/redact.h"

#define SL__KEY_MAX 256
#define SL__BEARER_MAX 512
#define SL__EMAIL_MAX 254

/* Byte classes, looked up once per byte. */
enum { SL__ALNUM = 1, SL__ALPHA = 2, SL__KEY = 4, SL__TOK = 8, SL__LOCAL = 16, SL__UPDIG = 32 };

struct sl_rx_s {
  unsigned classes;
  uint8_t fl[256]; /* SL__* bits of each byte */
};

static const char *const sl__names[] = {"openai_key", "bearer", "aws_access_key_id", "email"};

unsigned sl_rx_class_bit(const char *name) {
  for (unsigned i = 0; i < 4; i++)
    if (name && strcmp(name, sl__names[i]) == 0) return 1u << i;
  return 0;
}

const char *sl_rx_class_list(void) { return "openai_key, bearer, aws_access_key_id, email"; }

const char *sl_rx_class_name(unsigned cls) {
  for (unsigned i = 0; i < 4; i++)
    if (cls == 1u << i) return sl__names[i];
  return "?";
}

int sl_rx_new(unsigned classes, sl_rx_t **out) {
  if (out == NULL || classes == 0 || (classes & ~(unsigned)SL_RX_ALL)) return SL_AN_EINVAL;
  sl_rx_t *rx = malloc(sizeof(*rx));
  if (rx == NULL) return SL_AN_ENOMEM;
  rx->classes = classes;
  for (int c = 0; c < 256; c++) {
    int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'), digit = c >= '0' && c <= '9';
    uint8_t f = 0;
    if (alpha || digit) f |= SL__ALNUM;
    if (alpha) f |= SL__ALPHA;
    if (alpha || digit || c == '_' || c == '-') f |= SL__KEY;
    if (alpha || digit || (c != 0 && strchr("._~+/-", c) != NULL)) f |= SL__TOK;
    if (alpha || digit || (c != 0 && strchr(".!#$%&'*+/=?^_`{|}~-", c) != NULL)) f |= SL__LOCAL;
    if ((c >= 'A' && c <= 'Z') || digit) f |= SL__UPDIG;
    rx->fl[c] = f;
  }
  *out = rx;
  return SL_AN_OK;
}

void sl_rx_free(sl_rx_t *rx) { free(rx); }

void sl_rx_stream_init(sl_rx_stream_t *st, const sl_rx_t *rx) {
  memset(st, 0, sizeof(*st));
  st->classes = rx ? rx->classes : 0;
  st->fl = rx ? rx->fl : NULL;
}

/* ---- byte classes ---- */

#define sl__alnum(c) (st->fl[(uint8_t)(c)] & SL__ALNUM)
#define sl__alpha(c) (st->fl[(uint8_t)(c)] & SL__ALPHA)
#define sl__keych(c) (st->fl[(uint8_t)(c)] & SL__KEY)
#define sl__tokch(c) (st->fl[(uint8_t)(c)] & SL__TOK)
#define sl__localch(c) (st->fl[(uint8_t)(c)] & SL__LOCAL)
static int sl__lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static void sl__emit(sl_rx_match_t *out, size_t *n, uint64_t s, uint64_t e, unsigned cls) {
  out[*n].start = s;
  out[*n].end = e;
  out[*n].cls = cls;
  (*n)++;
}

/* ---- the machines ---- */

static void sl__key(sl_rx_stream_t *st, int c, uint64_t pos, sl_rx_match_t *out, size_t *n) {
  switch (st->key_st) {
    case 0:
      if (c == 's' && !sl__keych(st->prev)) {
        st->key_st = 1;
        st->key_start = pos;
      }
      return;
    case 1: st->key_st = c == 'k' ? 2 : 0; return;
    case 2:
      st->key_st = c == '-' ? 3 : 0;
      st->key_n = 0;
      return;
    case 3:
      if (sl__keych(c)) {
        st->key_n++;
        if (3 + st->key_n == SL__KEY_MAX) { /* longest key reported; the rest follows */
          sl__emit(out, n, st->key_start, pos + 1, SL_RX_OPENAI_KEY);
          st->key_st = 4;
          st->key_start = pos + 1;
        }
        return;
      }
      if (st->key_n >= 20) sl__emit(out, n, st->key_start, pos, SL_RX_OPENAI_KEY);
      st->key_st = 0;
      return;
    default: /* continuing an over-long key */
      if (sl__keych(c)) {
        if (pos + 1 - st->key_start == SL__KEY_MAX) {
          sl__emit(out, n, st->key_start, pos + 1, SL_RX_OPENAI_KEY);
          st->key_start = pos + 1;
        }
        return;
      }
      if (pos > st->key_start) sl__emit(out, n, st->key_start, pos, SL_RX_OPENAI_KEY);
      st->key_st = 0;
      return;
  }
}

static void sl__bearer(sl_rx_stream_t *st, int c, uint64_t pos, sl_rx_match_t *out, size_t *n) {
  static const char word[] = "bearer";
  int s = st->br_st;
  if (s == 0) {
    if (sl__lower(c) == 'b' && !sl__alnum(st->prev)) st->br_st = 1;
  } else if (s < 6) {
    st->br_st = sl__lower(c) == word[s] ? s + 1 : 0;
  } else if (s == 6) {
    st->br_st = c == ' ' ? 7 : 0;
  } else if (s == 7) {
    if (c == ' ') return;
    if (sl__tokch(c)) {
      st->br_st = 8;
      st->br_start = pos;
      st->br_n = 1;
    } else {
      st->br_st = 0;
    }
  } else if (s == 8) {
    if (sl__tokch(c)) {
      if (++st->br_n == SL__BEARER_MAX) {
        sl__emit(out, n, st->br_start, pos + 1, SL_RX_BEARER);
        st->br_st = 10;
        st->br_start = pos + 1;
      }
    } else if (c == '=' && st->br_n >= 16) {
      st->br_st = 9;
    } else {
      if (st->br_n >= 16) sl__emit(out, n, st->br_start, pos, SL_RX_BEARER);
      st->br_st = 0;
    }
  } else if (s == 9) {
    if (c == '=') return;
    sl__emit(out, n, st->br_start, pos, SL_RX_BEARER);
    st->br_st = 0;
  } else { /* continuing an over-long token */
    if (sl__tokch(c) || c == '=') {
      if (pos + 1 - st->br_start == SL__BEARER_MAX) {
        sl__emit(out, n, st->br_start, pos + 1, SL_RX_BEARER);
        st->br_start = pos + 1;
      }
      return;
    }
    if (pos > st->br_start) sl__emit(out, n, st->br_start, pos, SL_RX_BEARER);
    st->br_st = 0;
  }
}

static int sl__aws_prefix(const char *p) {
  static const char pre[][5] = {"AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "APKA"};
  for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++)
    if (memcmp(p, pre[i], 4) == 0) return 1;
  return 0;
}

static void sl__aws(sl_rx_stream_t *st, int c, uint64_t pos, sl_rx_match_t *out, size_t *n) {
  if (sl__alnum(c)) {
    if (!sl__alnum(st->prev)) {
      st->aws_start = pos;
      st->aws_n = 0;
      st->aws_ok = 1;
    }
    if (!st->aws_ok) return;
    st->aws_n++;
    if (st->aws_n > 20 || !(st->fl[c] & SL__UPDIG)) {
      st->aws_ok = 0;
      return;
    }
    if (st->aws_n <= 4) st->aws_pre[st->aws_n - 1] = (char)c;
    if (st->aws_n == 4 && !sl__aws_prefix(st->aws_pre)) st->aws_ok = 0;
    return;
  }
  if (sl__alnum(st->prev) && st->aws_ok && st->aws_n == 20) sl__emit(out, n, st->aws_start, pos, SL_RX_AWS_KEY_ID);
  st->aws_ok = 0;
}

/* The domain ended (or broke): report the longest valid address in it. */
static void sl__email_end(sl_rx_stream_t *st, sl_rx_match_t *out, size_t *n) {
  if (st->em_best) sl__emit(out, n, st->em_start, st->em_best, SL_RX_EMAIL);
  st->em_st = 0;
}

static void sl__email(sl_rx_stream_t *st, int c, uint64_t pos, sl_rx_match_t *out, size_t *n) {
  if (st->em_st == 2) {
    if (pos + 1 - st->em_start > SL__EMAIL_MAX) {
      sl__email_end(st, out, n);
      return;
    }
    if (sl__alnum(c)) {
      if (st->em_label == 0) st->em_alpha = 1;
      if (!sl__alpha(c)) st->em_alpha = 0;
      if (++st->em_label > 63) {
        sl__email_end(st, out, n);
        return;
      }
      if (st->em_labels >= 1 && st->em_alpha && st->em_label >= 2) st->em_best = pos + 1;
      return;
    }
    if (c == '-' && st->em_label > 0) {
      st->em_label++;
      st->em_alpha = 0;
      return;
    }
    if (c == '.' && st->em_label > 0 && st->prev != '-') {
      st->em_labels++;
      st->em_label = 0;
      return;
    }
    sl__email_end(st, out, n);
    return;
  }
  if (sl__localch(c)) {
    if (!sl__localch(st->prev)) {
      st->em_st = 1;
      st->em_start = pos;
      st->em_local = 0;
      st->em_local_ok = c != '.';
    }
    if (st->em_st == 1) {
      if (++st->em_local > 64 || (c == '.' && st->prev == '.')) st->em_local_ok = 0;
    }
    return;
  }
  if (c == '@' && st->em_st == 1 && st->em_local_ok && st->prev != '.') {
    st->em_st = 2;
    st->em_label = st->em_labels = 0;
    st->em_alpha = 1;
    st->em_best = 0;
    return;
  }
  st->em_st = 0;
}

/* ---- feeding ---- */

int sl_rx_feed(sl_rx_stream_t *st, const void *buf, size_t len, sl_rx_match_t *out, size_t cap, size_t *nout,
               size_t *consumed) {
  if (st == NULL || nout == NULL || consumed == NULL || (buf == NULL && len > 0) || (out == NULL && cap > 0))
    return SL_AN_EINVAL;
  *nout = 0;
  *consumed = 0;
  if (cap < SL_RX_MAX_MATCHES) return len == 0 ? SL_AN_OK : SL_AN_ETOOBIG;
  const uint8_t *p = buf;
  size_t n = 0, i = 0;
  unsigned cl = st->classes;
  for (; i < len && cap - n >= 4; i++) {
    int c = p[i];
    uint64_t pos = st->fed;
    if (cl & SL_RX_OPENAI_KEY) sl__key(st, c, pos, out, &n);
    if (cl & SL_RX_BEARER) sl__bearer(st, c, pos, out, &n);
    if (cl & SL_RX_AWS_KEY_ID) sl__aws(st, c, pos, out, &n);
    if (cl & SL_RX_EMAIL) sl__email(st, c, pos, out, &n);
    st->prev = (uint8_t)c;
    st->fed++;
  }
  *nout = n;
  *consumed = i;
  return SL_AN_OK;
}

size_t sl_rx_holdback(const sl_rx_stream_t *st) {
  uint64_t from = st->fed;
  if (st->key_st != 0 && st->key_start < from) from = st->key_start;
  if (st->br_st >= 8 && st->br_start < from) from = st->br_start;
  if (sl__alnum(st->prev) && st->aws_ok && st->aws_start < from) from = st->aws_start;
  if ((st->em_st == 2 || (st->em_st == 1 && st->em_local_ok)) && st->em_start < from) from = st->em_start;
  return (size_t)(st->fed - from);
}

int sl_rx_finish(sl_rx_stream_t *st, sl_rx_match_t *out, size_t cap, size_t *nout) {
  if (st == NULL || nout == NULL || (out == NULL && cap > 0)) return SL_AN_EINVAL;
  *nout = 0;
  if (cap < SL_RX_MAX_MATCHES) return SL_AN_ETOOBIG;
  size_t n = 0;
  uint64_t end = st->fed;
  if ((st->key_st == 3 && st->key_n >= 20) || (st->key_st == 4 && end > st->key_start))
    sl__emit(out, &n, st->key_start, end, SL_RX_OPENAI_KEY);
  if ((st->br_st == 8 && st->br_n >= 16) || st->br_st == 9 || (st->br_st == 10 && end > st->br_start))
    sl__emit(out, &n, st->br_start, end, SL_RX_BEARER);
  if (sl__alnum(st->prev) && st->aws_ok && st->aws_n == 20) sl__emit(out, &n, st->aws_start, end, SL_RX_AWS_KEY_ID);
  if (st->em_st == 2) sl__email_end(st, out, &n);
  st->key_st = st->br_st = st->em_st = 0;
  st->aws_ok = 0;
  *nout = n;
  return SL_AN_OK;
}
