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
#include <stdio.h>
#include <string.h>

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
  d->hdr = d->hname_len <= sizeof(d->hname) && sl__ieq(d->hname, d->hname_len, "content-type");
  d->hname_len = 0;
  if (d->hdr) d->ctype_len = 0;
  return 0;
}

static int sl__on_header_value(llhttp_t *p, const char *at, size_t n) {
  sl_updec_t *d = sl__d(p);
  if (!d->hdr) return 0;
  if (d->ctype_len < sizeof(d->ctype)) {
    size_t room = sizeof(d->ctype) - d->ctype_len;
    memcpy(d->ctype + d->ctype_len, at, n < room ? n : room);
  }
  d->ctype_len += n;
  return 0;
}

/* Classifies the media type (the part before any ';', trimmed).  A repeated
 * Content-Type header overrides the earlier one. */
static int sl__on_header_value_complete(llhttp_t *p) {
  sl_updec_t *d = sl__d(p);
  if (!d->hdr) return 0;
  d->hdr = 0;
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
    return 0;
  }
  d->status = status;
  d->headers_done = 1;
  if (status == 101) {
    /* The upstream request never asks for an upgrade. */
    sl__updec_fail(d, SL_EPARSE, "malformed upstream HTTP response: unexpected 101 upgrade");
    return -1;
  }
  int ok = status >= 200 && status < 300;
  if (ok && d->adapter->framing == SL_FRAMING_NDJSON && d->is_ndjson) {
    /* Refused rather than kept as an opaque body: the stream would look
     * like an engine that sent no events. */
    sl__updec_fail(d, SL_EINVAL, "NDJSON framing (adapter \"%s\") is not implemented yet", d->adapter->name);
    return -1;
  }
  d->emit = ok && d->is_sse && d->adapter->framing == SL_FRAMING_SSE;
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
    return sl__updec_fail(d, SL_EPARSE, "upstream SSE data is not a valid JSON object: \"%s\"", snip);
  }
  ev->raw_in_input = se->in_input;
  if (ev->kind == SL_EV_DONE) d->saw_done = 1;
  d->events++;
  if (d->cb != NULL && d->cb(d->ud, ev) != 0)
    return sl__updec_fail(d, SL_ECANCELED, "stopped by the event callback");
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
      sl__updec_fail(d, r, "upstream SSE event larger than the join buffer (%zu bytes)", d->sse.cap);
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

void sl_updec_set_adapter(sl_updec_t *d, const sl_adapter_t *a) { d->adapter = a; }

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
