/* sse.c: incremental SSE framing decoder (see sse.h).
 *
 * Complete lines found in the input are parsed in place; only a line cut by
 * the end of a feed goes through the byte-wise line machine (lstate), which
 * stores nothing but the field name's first bytes and the data value. */
#include "runtime/upstream/sse.h"

#include <string.h>

#include "runtime/base/errors.h"

/* States of the line machine for a line split across feeds. */
enum { SL__SSE_BOL = 0, SL__SSE_NAME, SL__SSE_VALUE0, SL__SSE_VALUE, SL__SSE_SKIP };
/* Fields the decoder acts on. */
enum { SL__SSE_F_OTHER = 0, SL__SSE_F_DATA, SL__SSE_F_EVENT };

static const char sl__sse_bom[3] = {'\xEF', '\xBB', '\xBF'};

void sl_sse_init(sl_sse_t *st, char *joinbuf, size_t cap) {
  st->buf = joinbuf;
  st->cap = cap;
  st->bufcap = cap;
  st->acquire = NULL;
  st->acquire_ud = NULL;
  st->ndjson = 0;
  sl_sse_reset(st);
}

void sl_sse_set_ndjson(sl_sse_t *st, int on) { st->ndjson = on != 0; }

void sl_sse_set_acquire(sl_sse_t *st, sl_sse_acquire_fn acquire, void *ud) {
  st->acquire = acquire;
  st->acquire_ud = ud;
}

void sl_sse_reset(sl_sse_t *st) {
  st->dlen = 0;
  st->din = NULL;
  st->dinlen = 0;
  st->data_in_input = 0;
  st->data_seen = 0;
  st->event_len = 0;
  st->lstate = SL__SSE_BOL;
  st->field = SL__SSE_F_OTHER;
  st->name_len = 0;
  st->after_cr = 0;
  st->bom = 0;
  st->comments = 0;
  st->events = 0;
  st->err = 0;
}

int sl_sse_pending(const sl_sse_t *st) {
  return st->data_seen || st->lstate != SL__SSE_BOL;
}

static int sl__sse_fail(sl_sse_t *st, int code) {
  st->err = code;
  return code;
}

/* Makes sure the join buffer holds `need` bytes (need <= cap, checked by
 * the callers): a lazily provided one is asked for the first time an event
 * actually has to be joined, and asked again, keeping the dlen bytes joined
 * so far, when the one it gave is too small for the event. */
static int sl__sse_need_buf(sl_sse_t *st, size_t need) {
  if (st->buf != NULL && need <= st->bufcap) return 0;
  if (st->acquire == NULL) return st->buf != NULL ? 0 : sl__sse_fail(st, SL_ENOMEM);
  size_t got = 0;
  char *b = st->acquire(st->acquire_ud, st->buf, st->buf != NULL ? st->dlen : 0, need, &got);
  if (b == NULL || got < need) return sl__sse_fail(st, SL_ENOMEM);
  st->buf = b;
  st->bufcap = got;
  return 0;
}

/* Moves data that still points into the caller's input into the join
 * buffer.  It always fits: a zero-copy value was checked against cap. */
static int sl__sse_own_data(sl_sse_t *st) {
  if (st->data_in_input) {
    st->dlen = 0;
    int r = sl__sse_need_buf(st, st->dinlen);
    if (r < 0) return r;
    memcpy(st->buf, st->din, st->dinlen);
    st->dlen = st->dinlen;
    st->data_in_input = 0;
    st->din = NULL;
    st->dinlen = 0;
  }
  return 0;
}

/* Starts a new data line whose value will be appended to the join buffer:
 * a second or later line needs the \n separator first. */
static int sl__sse_begin_data_buffered(sl_sse_t *st) {
  if (st->data_seen) {
    int r = sl__sse_own_data(st);
    if (r < 0) return r;
    if (st->dlen + 1 > st->cap) return sl__sse_fail(st, SL_ETOOBIG);
    if ((r = sl__sse_need_buf(st, st->dlen + 1)) < 0) return r;
    st->buf[st->dlen++] = '\n';
  }
  st->data_seen = 1;
  return 0;
}

static int sl__sse_append_data(sl_sse_t *st, const char *p, size_t n) {
  if (n > st->cap - st->dlen) return sl__sse_fail(st, SL_ETOOBIG);
  if (n > 0) {
    int r = sl__sse_need_buf(st, st->dlen + n);
    if (r < 0) return r;
  }
  memcpy(st->buf + st->dlen, p, n);
  st->dlen += n;
  return 0;
}

static int sl__sse_append_event(sl_sse_t *st, const char *p, size_t n) {
  if (n > SL_SSE_EVENT_MAX - st->event_len) return sl__sse_fail(st, SL_ETOOBIG);
  memcpy(st->event + st->event_len, p, n);
  st->event_len += n;
  return 0;
}

static int sl__sse_field_of(const char *name, size_t n) {
  if (n == 4 && memcmp(name, "data", 4) == 0) return SL__SSE_F_DATA;
  if (n == 5 && memcmp(name, "event", 5) == 0) return SL__SSE_F_EVENT;
  return SL__SSE_F_OTHER;
}

/* The field name of a split line is known: act on it before its value. */
static int sl__sse_resolve(sl_sse_t *st) {
  st->field = st->name_len <= sizeof(st->name) ? sl__sse_field_of(st->name, st->name_len)
                                               : SL__SSE_F_OTHER;
  if (st->field == SL__SSE_F_DATA) return sl__sse_begin_data_buffered(st);
  if (st->field == SL__SSE_F_EVENT) st->event_len = 0;
  return 0;
}

/* Runs bytes p[0..n) of a line (no line-end bytes among them) through the
 * line machine.  Used for a line that a feed boundary cut, on both sides of
 * the cut. */
static int sl__sse_partial(sl_sse_t *st, const char *p, size_t n) {
  const char *end = p + n;
  int r;
  while (p < end) {
    switch (st->lstate) {
      case SL__SSE_BOL:
        if (st->ndjson) {
          /* The whole line is the value. */
          st->field = SL__SSE_F_DATA;
          if ((r = sl__sse_begin_data_buffered(st)) < 0) return r;
          st->lstate = SL__SSE_VALUE;
          break;
        }
        if (*p == ':') {
          st->comments++;
          st->lstate = SL__SSE_SKIP;
          return 0;
        }
        st->lstate = SL__SSE_NAME;
        st->name_len = 0;
        break;
      case SL__SSE_NAME: {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        const char *stop = colon ? colon : end;
        size_t k = (size_t)(stop - p);
        if (st->name_len < sizeof(st->name)) {
          size_t room = sizeof(st->name) - st->name_len;
          memcpy(st->name + st->name_len, p, k < room ? k : room);
        }
        st->name_len += k;
        p = stop;
        if (colon == NULL) return 0;
        p++;
        if ((r = sl__sse_resolve(st)) < 0) return r;
        st->lstate = SL__SSE_VALUE0;
        break;
      }
      case SL__SSE_VALUE0:
        /* One leading space is not part of the value. */
        if (*p == ' ') p++;
        st->lstate = SL__SSE_VALUE;
        break;
      case SL__SSE_VALUE:
        if (st->field == SL__SSE_F_DATA) {
          if ((r = sl__sse_append_data(st, p, (size_t)(end - p))) < 0) return r;
        } else if (st->field == SL__SSE_F_EVENT) {
          if ((r = sl__sse_append_event(st, p, (size_t)(end - p))) < 0) return r;
        }
        return 0;
      default: /* SL__SSE_SKIP: a comment or an ignored field */
        return 0;
    }
  }
  return 0;
}

/* A split line reached its line end. */
static int sl__sse_partial_end(sl_sse_t *st) {
  int r = 0;
  /* A line without a colon is a field name with an empty value. */
  if (st->lstate == SL__SSE_NAME) r = sl__sse_resolve(st);
  st->lstate = SL__SSE_BOL;
  return r;
}

/* Parses one complete line s[0..n), n > 0, lying in the input. */
static int sl__sse_line(sl_sse_t *st, const char *s, size_t n) {
  if (st->ndjson) {
    /* The line is the event (data_seen is 0: each line dispatched). */
    if (n > st->cap) return sl__sse_fail(st, SL_ETOOBIG);
    st->din = s;
    st->dinlen = n;
    st->data_in_input = 1;
    st->data_seen = 1;
    return 0;
  }
  if (s[0] == ':') {
    st->comments++;
    return 0;
  }
  const char *colon = memchr(s, ':', n);
  size_t nlen = colon ? (size_t)(colon - s) : n;
  const char *v = s + n;
  if (colon != NULL) {
    v = colon + 1;
    if (v < s + n && *v == ' ') v++;
  }
  size_t vlen = (size_t)(s + n - v);
  switch (sl__sse_field_of(s, nlen)) {
    case SL__SSE_F_DATA:
      if (!st->data_seen) {
        /* The common case: keep pointing into the input. */
        if (vlen > st->cap) return sl__sse_fail(st, SL_ETOOBIG);
        st->din = v;
        st->dinlen = vlen;
        st->data_in_input = 1;
        st->data_seen = 1;
        return 0;
      }
      {
        int r = sl__sse_begin_data_buffered(st);
        if (r < 0) return r;
      }
      return sl__sse_append_data(st, v, vlen);
    case SL__SSE_F_EVENT:
      st->event_len = 0;
      return sl__sse_append_event(st, v, vlen);
    default:
      return 0;
  }
}

/* First CR or LF in [p, end), or NULL.  memchr for LF first keeps the
 * common LF-only stream at one vectorized scan per line. */
static const char *sl__sse_eol(const char *p, const char *end) {
  const char *lf = memchr(p, '\n', (size_t)(end - p));
  const char *lim = lf ? lf : end;
  const char *cr = memchr(p, '\r', (size_t)(lim - p));
  return cr ? cr : lf;
}

int sl_sse_feed(sl_sse_t *st, const char *in, size_t len, size_t *consumed, sl_sse_event_t *ev) {
  const char *p = in, *end = in + len;
  int r;
  *consumed = 0;
  if (st->err) return st->err;

  /* The BOM may itself be split across feeds; bytes that began like a BOM
   * but were not one are ordinary line bytes. */
  while (st->bom < 3 && p < end) {
    if (*p == sl__sse_bom[st->bom]) {
      st->bom++;
      p++;
    } else {
      int matched = st->bom;
      st->bom = 3;
      if (matched > 0 && (r = sl__sse_partial(st, sl__sse_bom, (size_t)matched)) < 0) return r;
    }
  }
  if (st->after_cr && p < end) {
    st->after_cr = 0;
    if (*p == '\n') p++;
  }

  while (p < end) {
    const char *eol = sl__sse_eol(p, end);
    if (eol == NULL) {
      if ((r = sl__sse_partial(st, p, (size_t)(end - p))) < 0) return r;
      p = end;
      break;
    }
    int blank = 0;
    if (st->lstate != SL__SSE_BOL) {
      if ((r = sl__sse_partial(st, p, (size_t)(eol - p))) < 0) return r;
      if ((r = sl__sse_partial_end(st)) < 0) return r;
    } else if (eol == p) {
      blank = 1;
    } else if ((r = sl__sse_line(st, p, (size_t)(eol - p))) < 0) {
      return r;
    }
    p = eol + 1;
    if (*eol == '\r') {
      if (p < end) {
        if (*p == '\n') p++;
      } else {
        st->after_cr = 1;
      }
    }
    /* NDJSON: a line is a whole event; SSE: a blank line ends one. */
    if (!blank && !(st->ndjson && st->data_seen)) continue;
    if (!st->data_seen) {
      st->event_len = 0;
      continue;
    }
    if (st->data_in_input) {
      ev->data = st->din;
      ev->data_len = st->dinlen;
      ev->in_input = 1;
    } else {
      ev->data = st->buf;
      ev->data_len = st->dlen;
      ev->in_input = 0;
      /* A lazy buffer is asked for again by the next join: the caller may
       * hand this one on with the event. */
      if (st->acquire != NULL) st->buf = NULL;
    }
    ev->event = st->event_len ? st->event : NULL;
    ev->event_len = st->event_len;
    st->data_seen = 0;
    st->data_in_input = 0;
    st->din = NULL;
    st->dinlen = 0;
    st->dlen = 0;
    st->event_len = 0;
    st->events++;
    *consumed = (size_t)(p - in);
    return 1;
  }

  /* The caller may release `in` now: nothing may keep pointing into it. */
  if (sl__sse_own_data(st) < 0) return st->err;
  *consumed = len;
  return 0;
}
