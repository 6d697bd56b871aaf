/* transcript.c: recording one stream as NDJSON (see transcript.h). */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/stream/transcript.h"
#include "runtime/upstream/oai.h"

struct sl_transcript_s {
  char *buf;
  size_t len, cap, max;
  int truncated;             /* an append did not fit max_bytes: later events were not recorded */
  /* The write. */
  uv_fs_t req;
  uv_buf_t iov;
  uv_file fd;
  int status;
  void (*done)(void *ud, int status);
  void *ud;
};

sl_transcript_t *sl_transcript_new(size_t max_bytes) {
  sl_transcript_t *t = sl_calloc(1, sizeof(*t));
  t->max = max_bytes;
  return t;
}

void sl_transcript_free(sl_transcript_t *t) {
  if (t == NULL) return;
  sl_free(t->buf);
  sl_free(t);
}

/* Room for n more bytes.  The end line is always recorded: it gets room
 * past max_bytes (at most a few hundred bytes). */
static int sl__room(sl_transcript_t *t, size_t n, int always) {
  if (!always && (t->truncated || t->len + n > t->max)) {
    t->truncated = 1;
    return 0;
  }
  if (t->len + n > t->cap) {
    size_t cap = t->cap ? t->cap : 4096;
    while (t->len + n > cap) cap *= 2;
    t->buf = sl_realloc(t->buf, cap);
    t->cap = cap;
  }
  return 1;
}

void sl_transcript_raw(sl_transcript_t *t, const char *p, size_t n) {
  if (!sl__room(t, n, 0)) return;
  memcpy(t->buf + t->len, p, n);
  t->len += n;
}

void sl_transcript_str(sl_transcript_t *t, const char *p, size_t n) {
  if (!sl__room(t, 6 * n + 2, 0)) return;
  t->buf[t->len++] = '"';
  t->len += sl_json_escape(t->buf + t->len, t->cap - t->len, p, n);
  t->buf[t->len++] = '"';
}

static void sl__vfmt(sl_transcript_t *t, int always, const char *fmt, va_list ap) {
  va_list cp;
  va_copy(cp, ap);
  int n = vsnprintf(NULL, 0, fmt, cp);
  va_end(cp);
  if (n < 0 || !sl__room(t, (size_t)n + 1, always)) return;
  vsnprintf(t->buf + t->len, (size_t)n + 1, fmt, ap);
  t->len += (size_t)n;
}

void sl_transcript_fmt(sl_transcript_t *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sl__vfmt(t, 0, fmt, ap);
  va_end(ap);
}

static void sl__str0(sl_transcript_t *t, const char *s) { sl_transcript_str(t, s, strlen(s)); }

void sl_transcript_event(sl_transcript_t *t, double ms, const char *json, size_t n) {
  sl_transcript_fmt(t, "{\"type\":\"event\",\"t\":%.3f,\"data\":", ms);
  sl_transcript_str(t, json, n);
  sl_transcript_raw(t, "}\n", 2);
}

void sl_transcript_tick(sl_transcript_t *t, double ms) { sl_transcript_fmt(t, "{\"type\":\"tick\",\"t\":%.3f}\n", ms); }

void sl_transcript_verdict(sl_transcript_t *t, double ms, const sl_guard_verdict_t *v) {
  sl_transcript_fmt(t, "{\"type\":\"verdict\",\"t\":%.3f,\"kind\":\"%s\",\"name\":", ms, sl_guard_kind_name(v->kind));
  sl__str0(t, v->name);
  sl_transcript_fmt(t, ",\"action\":\"%s\",\"detail\":", sl_guard_action_name(v->action));
  sl__str0(t, v->detail);
  sl_transcript_raw(t, "}\n", 2);
}

void sl_transcript_action(sl_transcript_t *t, double ms, const char *phase, const sl_pact_t *a, const char *err) {
  sl_transcript_fmt(t, "{\"type\":\"action\",\"t\":%.3f,\"phase\":\"%s\",", ms, phase);
  if (a == NULL) {
    sl_transcript_raw(t, "\"error\":", 8);
    sl__str0(t, err ? err : "");
  } else {
    sl_transcript_fmt(t, "\"action\":\"%s\"", sl_pact_name(a->kind));
    if (a->kind == SL_PACT_REPLACE)
      sl_transcript_fmt(t, ",\"start\":%llu,\"stop\":%llu", (unsigned long long)a->start, (unsigned long long)a->stop);
    if (a->kind == SL_PACT_HOLD) sl_transcript_fmt(t, ",\"n\":%llu", (unsigned long long)a->start);
    if (a->kind == SL_PACT_DENY) sl_transcript_fmt(t, ",\"status\":%d", a->status);
    if (a->text != NULL && a->kind != SL_PACT_HOLD) {
      sl_transcript_raw(t, ",\"text\":", 8);
      sl_transcript_str(t, a->text, a->len);
    }
  }
  sl_transcript_raw(t, "}\n", 2);
}

static void sl__fmt_always(sl_transcript_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sl__fmt_always(sl_transcript_t *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sl__vfmt(t, 1, fmt, ap);
  va_end(ap);
}

void sl_transcript_end(sl_transcript_t *t, double ms, const char *reason, int64_t prompt, int64_t completion) {
  /* reason is one of sluice's own end reasons: plain ASCII, no quoting needed. */
  sl__fmt_always(t,
                 "{\"type\":\"end\",\"t\":%.3f,\"reason\":\"%s\",\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
                 "\"truncated\":%s}\n",
                 ms, reason, (long long)prompt, (long long)completion, t->truncated ? "true" : "false");
}

/* ---- the write: open, write, close, each on the loop's thread pool ---- */

static void sl__done(sl_transcript_t *t, int status) {
  if (t->done) t->done(t->ud, status);
  sl_transcript_free(t);
}

static void sl__on_close(uv_fs_t *req) {
  sl_transcript_t *t = req->data;
  int rc = (int)req->result;
  uv_fs_req_cleanup(req);
  sl__done(t, t->status < 0 ? t->status : rc < 0 ? rc : 0);
}

static void sl__close(sl_transcript_t *t) {
  if (uv_fs_close(t->req.loop, &t->req, t->fd, sl__on_close) < 0) sl__done(t, t->status);
}

static void sl__on_write(uv_fs_t *req) {
  sl_transcript_t *t = req->data;
  ssize_t n = req->result;
  uv_loop_t *loop = req->loop;
  uv_fs_req_cleanup(req);
  if (n < 0) {
    t->status = (int)n;
    sl__close(t);
    return;
  }
  t->iov.base += n;
  t->iov.len -= (size_t)n;
  if (t->iov.len == 0) {
    sl__close(t);
    return;
  }
  int rc = uv_fs_write(loop, &t->req, t->fd, &t->iov, 1, -1, sl__on_write);
  if (rc < 0) {
    t->status = rc;
    sl__close(t);
  }
}

static void sl__on_open(uv_fs_t *req) {
  sl_transcript_t *t = req->data;
  int fd = (int)req->result;
  uv_loop_t *loop = req->loop;
  uv_fs_req_cleanup(req);
  if (fd < 0) {
    sl__done(t, fd);
    return;
  }
  t->fd = fd;
  t->iov = uv_buf_init(t->buf, (unsigned)t->len);
  int rc = uv_fs_write(loop, &t->req, t->fd, &t->iov, 1, -1, sl__on_write);
  if (rc < 0) {
    t->status = rc;
    sl__close(t);
  }
}

int sl_transcript_write(sl_transcript_t *t, uv_loop_t *loop, const char *path, void (*done)(void *ud, int status),
                        void *ud) {
  t->done = done;
  t->ud = ud;
  t->req.data = t;
  int rc = uv_fs_open(loop, &t->req, path, O_WRONLY | O_CREAT | O_TRUNC, 0640, sl__on_open);
  if (rc < 0) sl_transcript_free(t);
  return rc;
}
