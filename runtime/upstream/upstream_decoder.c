/* upstream_decoder.c: llhttp response parsing + framing + the adapter's
 * schema scan (see upstream_decoder.h).
 *
 * llhttp drives everything: its on_body callback hands de-chunked body
 * spans (pointing into the caller's input) to the SSE decoder, and each
 * complete event is scanned and passed to the caller's callback from
 * inside on_body.  on_message_complete pauses the parser, so that bytes
 * after the end of the response are seen and refused instead of being
 * parsed as a next response nobody asked for. */
#include "runtime/upstream/upstream_decoder.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "runtime/base/errors.h"

static int sl__updec_fail(sl_updec_t *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int sl__updec_fail(sl_updec_t *d, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->errmsg, sizeof(d->errmsg), fmt, ap);
  va_end(ap);
  d->err = code;
  return code;
}

/* ASCII case-insensitive equality of s[0..n) and the lowercase lit. */
static int sl__ieq(const char *s, size_t n, const char *lit) {
  size_t m = strlen(lit);
  if (n != m) return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (ch >= 'A' && ch <= 'Z') ch = (char)(ch + 32);
    if (ch != lit[i]) return 0;
  }
  return 1;
}

static sl_updec_t *sl__d(llhttp_t *p) { return (sl_updec_t *)p->data; }

static int sl__on_header_field(llhttp_t *p, const char *at, size_t n) {
  sl_updec_t *d = sl__d(p);
  if (d->hname_len < sizeof(d->hname)) {
    size_t room = sizeof(d->hname) - d->hname_len;
    memcpy(d->hname + d->hname_len, at, n < room ? n : room);
  }
  d->hname_len += n;
  return 0;
}

static int sl__on_header_field_complete(llhttp_t *p) {
  sl_updec_t *d = sl__d(p);
  d->hdr = 0;
  if (d->hname_len <= sizeof(d->hname)) {
    if (sl__ieq(d->hname, d->hname_len, "content-type")) d->hdr = 1;
    else if (sl__ieq(d->hname, d->hname_len, "retry-after")) d->hdr = 2;
    else if (sl__ieq(d->hname, d->hname_len, "retry-after-ms")) d->hdr = 3;
  }
  d->hname_len = 0;
  d->ctype_len = 0;
  d->rval_len = 0;
  return 0;
}

/* Appends at[0..n) to buf (keeping its first cap bytes); *len counts all. */
static void sl__keep(char *buf, size_t cap, size_t *len, const char *at, size_t n) {
  if (*len < cap) {
    size_t room = cap - *len;
    memcpy(buf + *len, at, n < room ? n : room);
  }
  *len += n;
}

/* Appends at[0..n) to the Retry-After value.  llhttp hands over trailing
 * whitespace, which may run past rval and is trimmed later anyway; any
 * other byte that does not fit makes the value too long to be either form. */
static void sl__keep_rval(sl_updec_t *d, const char *at, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (d->rval_len < sizeof(d->rval)) d->rval[d->rval_len++] = at[i];
    else if (at[i] != ' ' && at[i] != '\t') d->rval_len = sizeof(d->rval) + 1;
  }
}

static int sl__on_header_value(llhttp_t *p, const char *at, size_t n) {
  sl_updec_t *d = sl__d(p);
  if (d->hdr == 1) sl__keep(d->ctype, sizeof(d->ctype), &d->ctype_len, at, n);
  else if (d->hdr != 0) sl__keep_rval(d, at, n);
  return 0;
}

/* ---- Retry-After ---- */

/* Delta-seconds past this are taken as this many (RFC 9111 section 1.2.2):
 * an engine asking for more than 68 years means "not soon", not an error. */
#define SL__RA_MAX_S 2147483648LL

/* s[0..n) as 1*DIGIT, capped at cap; -1 when empty or not all digits. */
static int64_t sl__digits(const char *s, size_t n, int64_t cap) {
  if (n == 0) return -1;
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    if (v < cap) v = v * 10 + (s[i] - '0');
  }
  return v < cap ? v : cap;
}

typedef struct {
  const char *p, *e;
} sl__cur_t;

/* Consumes lit when the input continues with it (HTTP-dates are case-sensitive). */
static int sl__lit(sl__cur_t *c, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(c->e - c->p) < n || memcmp(c->p, lit, n) != 0) return 0;
  c->p += n;
  return 1;
}

/* Consumes exactly k digits into *v. */
static int sl__num(sl__cur_t *c, int k, int *v) {
  if (c->e - c->p < k) return 0;
  *v = 0;
  for (int i = 0; i < k; i++) {
    if (c->p[i] < '0' || c->p[i] > '9') return 0;
    *v = *v * 10 + (c->p[i] - '0');
  }
  c->p += k;
  return 1;
}

static const char *const sl__day_names[7] = {"Monday", "Tuesday", "Wednesday", "Thursday",
                                             "Friday", "Saturday", "Sunday"};

/* A day name, the three-letter form or (longform) the whole word.  The
 * weekday is not checked against the date: the date alone says when. */
static int sl__day(sl__cur_t *c, int longform) {
  for (int i = 0; i < 7; i++) {
    if (longform) {
      if (sl__lit(c, sl__day_names[i])) return 1;
    } else if (c->e - c->p >= 3 && memcmp(c->p, sl__day_names[i], 3) == 0) {
      c->p += 3;
      return 1;
    }
  }
  return 0;
}

static int sl__month(sl__cur_t *c, int *m) {
  static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  if (c->e - c->p < 3) return 0;
  for (int i = 0; i < 12; i++) {
    if (memcmp(c->p, names + 3 * i, 3) == 0) {
      c->p += 3;
      *m = i + 1;
      return 1;
    }
  }
  return 0;
}

/* hour ":" minute ":" second */
static int sl__clock(sl__cur_t *c, int *h, int *mi, int *sec) {
  return sl__num(c, 2, h) && sl__lit(c, ":") && sl__num(c, 2, mi) && sl__lit(c, ":") && sl__num(c, 2, sec);
}

static int sl__leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

/* Leap years in [1, y). */
static int64_t sl__leaps_before(int64_t y) {
  y--;
  return y / 4 - y / 100 + y / 400;
}

/* s[0..n) as an HTTP-date (RFC 9110 section 5.6.7: IMF-fixdate, or the
 * obsolete RFC 850 and asctime forms recipients must still read) into
 * seconds since the epoch.  now places RFC 850's two-digit years. */
static int sl__http_date(const char *s, size_t n, int64_t now, int64_t *out) {
  static const int cum[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
  static const int dim[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int y = 0, m = 0, d = 0, h = 0, mi = 0, sec = 0;
  sl__cur_t c = {s, s + n};
  int ok = sl__day(&c, 0) && sl__lit(&c, ", ") && sl__num(&c, 2, &d) && sl__lit(&c, " ") && sl__month(&c, &m) &&
           sl__lit(&c, " ") && sl__num(&c, 4, &y) && sl__lit(&c, " ") && sl__clock(&c, &h, &mi, &sec) &&
           sl__lit(&c, " GMT") && c.p == c.e;
  if (!ok) { /* Sunday, 06-Nov-94 08:49:37 GMT */
    c = (sl__cur_t){s, s + n};
    ok = sl__day(&c, 1) && sl__lit(&c, ", ") && sl__num(&c, 2, &d) && sl__lit(&c, "-") && sl__month(&c, &m) &&
         sl__lit(&c, "-") && sl__num(&c, 2, &y) && sl__lit(&c, " ") && sl__clock(&c, &h, &mi, &sec) &&
         sl__lit(&c, " GMT") && c.p == c.e;
    if (ok) {
      /* The year within 50 of the current one with those last two digits;
       * the average Gregorian year is precise enough for that. */
      int cur = 1970 + (int)(now / 31556952);
      y += cur - cur % 100;
      if (y > cur + 50) y -= 100;
      else if (y <= cur - 50) y += 100;
    }
  }
  if (!ok) { /* Sun Nov  6 08:49:37 1994 */
    c = (sl__cur_t){s, s + n};
    ok = sl__day(&c, 0) && sl__lit(&c, " ") && sl__month(&c, &m) && sl__lit(&c, " ") &&
         (sl__lit(&c, " ") ? sl__num(&c, 1, &d) : sl__num(&c, 2, &d)) && sl__lit(&c, " ") &&
         sl__clock(&c, &h, &mi, &sec) && sl__lit(&c, " ") && sl__num(&c, 4, &y) && c.p == c.e;
  }
  if (!ok || y < 1 || d < 1 || d > dim[m - 1] || (m == 2 && d == 29 && !sl__leap(y)) || h > 23 || mi > 59 ||
      sec > 60)
    return -1;
  int64_t days = 365 * ((int64_t)y - 1970) + sl__leaps_before(y) - sl__leaps_before(1970) + cum[m - 1] +
                 (m > 2 && sl__leap(y)) + d - 1;
  *out = days * 86400 + h * 3600 + mi * 60 + sec;
  return 0;
}

/* The Retry-After value s[0..n) (trimmed) in ms: delta-seconds or an
 * HTTP-date; -1 when it is neither. */
static int64_t sl__retry_after(const char *s, size_t n) {
  if (n > 0 && s[0] >= '0' && s[0] <= '9') {
    int64_t secs = sl__digits(s, n, SL__RA_MAX_S);
    return secs < 0 ? -1 : secs * 1000;
  }
  int64_t now = (int64_t)time(NULL), when;
  if (sl__http_date(s, n, now, &when) < 0) return -1;
  if (when <= now) return 0;
  return (when - now < SL__RA_MAX_S ? when - now : SL__RA_MAX_S) * 1000;
}

/* Reads a complete Retry-After (which = 2) or retry-after-ms (3) value.
 * A later copy of the header overrides an earlier one, as Content-Type. */
static void sl__on_retry_value(sl_updec_t *d, int which) {
  int64_t v = -1;
  if (d->rval_len <= sizeof(d->rval)) { /* a longer value is neither form */
    const char *s = d->rval, *e = d->rval + d->rval_len;
    while (s < e && (*s == ' ' || *s == '\t')) s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
    size_t n = (size_t)(e - s);
    v = which == 2 ? sl__retry_after(s, n) : sl__digits(s, n, SL__RA_MAX_S * 1000);
  }
  if (which == 2) d->ra_after = v;
  else d->ra_after_ms = v;
}

/* Reads the Retry-After headers, and classifies the media type (the part
 * before any ';', trimmed).  A repeated Content-Type header overrides the
 * earlier one. */
static int sl__on_header_value_complete(llhttp_t *p) {
  sl_updec_t *d = sl__d(p);
  int which = d->hdr;
  d->hdr = 0;
  if (which == 2 || which == 3) sl__on_retry_value(d, which);
  if (which != 1) return 0;
  size_t have = d->ctype_len < sizeof(d->ctype) ? d->ctype_len : sizeof(d->ctype);
  const char *s = d->ctype, *e = d->ctype + have;
  const char *semi = memchr(s, ';', have);
  if (semi == NULL) {
    if (d->ctype_len > have) { /* the media type itself is longer than we keep */
      d->is_sse = d->is_ndjson = 0;
      return 0;
    }
  } else {
    e = semi;
  }
  while (s < e && (*s == ' ' || *s == '\t')) s++;
  while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
  d->is_sse = sl__ieq(s, (size_t)(e - s), "text/event-stream");
  d->is_ndjson = sl__ieq(s, (size_t)(e - s), "application/x-ndjson");
  return 0;
}

static int sl__on_headers_complete(llhttp_t *p) {
  sl_updec_t *d = sl__d(p);
  int status = p->status_code;
  if (status >= 100 && status < 200 && status != 101) {
    /* An interim response (100 Continue, 103 Early Hints): llhttp ends it
     * as a bodiless message and parses the real one after it. */
    d->is_sse = d->is_ndjson = 0;
    d->ra_after = d->ra_after_ms = -1;
    return 0;
  }
  d->status = status;
  d->headers_done = 1;
  /* retry-after-ms first, as OpenAI's SDKs read them: it is the precise
   * one, and Retry-After is often its value rounded up to seconds. */
  d->retry_after_ms = d->ra_after_ms >= 0 ? d->ra_after_ms : d->ra_after;
  if (status == 101) {
    /* The upstream request never asks for an upgrade. */
    sl__updec_fail(d, SL_EPARSE, "malformed upstream HTTP response: unexpected 101 upgrade");
    return -1;
  }
  int ok = status >= 200 && status < 300;
  /* Only a reply in the adapter's own framing is decoded: anything else
   * is kept as a body for the caller's error handling. */
  int ndjson = d->adapter->framing == SL_FRAMING_NDJSON;
  d->emit = ok && (ndjson ? d->is_ndjson : d->is_sse);
  return 0;
}

/* One SSE event: scan it with the adapter's schema and hand it over.
 * Returns 0 or an SL_E* code. */
static int sl__updec_event(sl_updec_t *d, const sl_sse_event_t *se) {
  if (d->saw_done) {
    d->events_after_done++;
    return 0;
  }
  sl_event_t *ev = &d->ev;
  if (d->adapter->scan(se->data, se->data_len, se->event, se->event_len, ev) < 0) {
    char snip[41];
    size_t n = se->data_len < 40 ? se->data_len : 40;
    for (size_t i = 0; i < n; i++) {
      unsigned char ch = (unsigned char)se->data[i];
      snip[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '.';
    }
    snip[n] = '\0';
    return sl__updec_fail(d, SL_EPARSE, "upstream %s is not a valid JSON object: \"%s\"",
                          d->sse.ndjson ? "NDJSON line" : "SSE data", snip);
  }
  ev->raw_in_input = se->in_input;
  if (ev->kind == SL_EV_DONE) d->saw_done = 1;
  d->events++;
  int last = ev->kind == SL_EV_CHUNK && ev->ends_stream;
  if (d->cb != NULL && d->cb(d->ud, ev) != 0)
    return sl__updec_fail(d, SL_ECANCELED, "stopped by the event callback");
  if (last) {
    /* A native stream's terminal chunk (llama.cpp's stop:true, TGI's
     * generated_text, Ollama's done:true) is also its end: the [DONE]
     * those engines never send follows it, so everything above the
     * decoder sees one way a stream ends. */
    memset(ev, 0, offsetof(sl_event_t, token_ids));
    ev->kind = SL_EV_DONE;
    ev->raw.p = "[DONE]";
    ev->raw.n = 6;
    /* Static bytes, in no join buffer: the caller must not look for them
     * there (it pins the read chunk, which holds nothing of them). */
    ev->raw_in_input = 1;
    ev->n_choices = -1;
    d->saw_done = 1;
    d->events++;
    if (d->cb != NULL && d->cb(d->ud, ev) != 0)
      return sl__updec_fail(d, SL_ECANCELED, "stopped by the event callback");
  }
  return 0;
}

static int sl__on_body(llhttp_t *p, const char *at, size_t n) {
  sl_updec_t *d = sl__d(p);
  d->body_total += n;
  if (!d->emit) {
    size_t room = sizeof(d->body) - d->body_len;
    size_t k = n < room ? n : room;
    memcpy(d->body + d->body_len, at, k);
    d->body_len += k;
    return 0;
  }
  while (n > 0) {
    size_t used;
    sl_sse_event_t se;
    int r = sl_sse_feed(&d->sse, at, n, &used, &se);
    if (r < 0) {
      sl__updec_fail(d, r, "upstream %s larger than the join buffer (%zu bytes)",
                     d->sse.ndjson ? "NDJSON line" : "SSE event", d->sse.cap);
      return HPE_USER;
    }
    at += used;
    n -= used;
    if (r == 0) break;
    if (sl__updec_event(d, &se) < 0) return HPE_USER;
  }
  return 0;
}

static int sl__on_message_complete(llhttp_t *p) {
  sl_updec_t *d = sl__d(p);
  if (!d->headers_done) return 0; /* the end of an interim 1xx response */
  d->message_done = 1;
  d->keep_alive = llhttp_should_keep_alive(p);
  return HPE_PAUSED;
}

static const llhttp_settings_t sl__updec_settings = {
  .on_header_field = sl__on_header_field,
  .on_header_field_complete = sl__on_header_field_complete,
  .on_header_value = sl__on_header_value,
  .on_header_value_complete = sl__on_header_value_complete,
  .on_headers_complete = sl__on_headers_complete,
  .on_body = sl__on_body,
  .on_message_complete = sl__on_message_complete,
};

void sl_updec_init(sl_updec_t *d, char *joinbuf, size_t cap) {
  sl_sse_init(&d->sse, joinbuf, cap);
  d->adapter = &sl_adapter_openai;
  sl_updec_reset(d);
}

void sl_updec_set_adapter(sl_updec_t *d, const sl_adapter_t *a) {
  d->adapter = a;
  sl_sse_set_ndjson(&d->sse, a->framing == SL_FRAMING_NDJSON);
}

void sl_updec_reset(sl_updec_t *d) {
  llhttp_init(&d->parser, HTTP_RESPONSE, &sl__updec_settings);
  d->parser.data = d;
  sl_sse_reset(&d->sse);
  d->status = 0;
  d->headers_done = 0;
  d->message_done = 0;
  d->keep_alive = 0;
  d->is_sse = 0;
  d->is_ndjson = 0;
  d->saw_done = 0;
  d->retry_after_ms = -1;
  d->body_len = 0;
  d->body_total = 0;
  d->events = 0;
  d->events_after_done = 0;
  d->errmsg[0] = '\0';
  d->err = 0;
  d->emit = 0;
  d->cb = NULL;
  d->ud = NULL;
  d->hdr = 0;
  d->hname_len = 0;
  d->ctype_len = 0;
  d->rval_len = 0;
  d->ra_after = -1;
  d->ra_after_ms = -1;
}

int sl_updec_feed(sl_updec_t *d, const char *in, size_t len, sl_updec_event_cb cb, void *ud) {
  if (d->err) return d->err;
  if (len == 0) return 0;
  if (d->message_done)
    return sl__updec_fail(d, SL_EPARSE, "upstream sent %zu bytes after the end of the response", len);
  d->cb = cb;
  d->ud = ud;
  llhttp_errno_t e = llhttp_execute(&d->parser, in, len);
  d->cb = NULL;
  d->ud = NULL;
  if (e == HPE_OK) return 0;
  if (e == HPE_PAUSED && d->message_done) {
    const char *pos = llhttp_get_error_pos(&d->parser);
    if (pos != in + len)
      return sl__updec_fail(d, SL_EPARSE, "upstream sent %zu bytes after the end of the response",
                            (size_t)(in + len - pos));
    return 0;
  }
  if (d->err) return d->err; /* set by one of our callbacks */
  return sl__updec_fail(d, SL_EPARSE, "malformed upstream HTTP response: %s (%s)",
                        llhttp_errno_name(e),
                        llhttp_get_error_reason(&d->parser) ? llhttp_get_error_reason(&d->parser) : "");
}

int sl_updec_eof(sl_updec_t *d) {
  if (d->err) return d->err;
  if (d->message_done) return 0;
  d->cb = NULL;
  llhttp_errno_t e = llhttp_finish(&d->parser);
  if ((e == HPE_OK || e == HPE_PAUSED) && d->message_done) return 0;
  if (!d->headers_done)
    return sl__updec_fail(d, SL_EUPSTREAM, "upstream closed the connection before the response headers");
  return sl__updec_fail(d, SL_EUPSTREAM, "upstream closed the connection before the end of the body");
}
