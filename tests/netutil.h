/* netutil.h: a small blocking HTTP/1.1 client for tests (header-only).
 *
 * Tests talk to real sockets on loopback: connect, send raw bytes, and read
 * one response (Content-Length, chunked, or close-delimited) with a timeout.
 * Chunked bodies are de-chunked into resp->body; resp->raw keeps the bytes as
 * received.  Everything is plain POSIX so the same code serves unit tests and
 * end-to-end tests.
 */
#ifndef SL_TEST_NETUTIL_H
#define SL_TEST_NETUTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  int status;          /* 0 if no status line arrived */
  char headers[8192];  /* raw header block, NUL-terminated */
  char *body;          /* de-chunked body, NUL-terminated (malloc'd) */
  size_t body_len;
  int chunked;         /* Transfer-Encoding: chunked */
  int complete;        /* the body ended as its framing says */
  int closed;          /* the server closed the connection */
} nu_resp_t;

static inline int64_t nu_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A wait's bound scaled by SL_TEST_TIMEOUT_SCALE (a number >= 1, default 1),
 * for runs where everything is slower: scripts/valgrind sets it.  Only
 * bounds scale; a test never asserts a time. */
static inline int nu_scale_ms(int ms) {
  static double scale = 0;
  if (scale == 0) {
    const char *e = getenv("SL_TEST_TIMEOUT_SCALE");
    double v = e != NULL ? strtod(e, NULL) : 1;
    scale = v >= 1 ? v : 1;
  }
  double r = ms * scale;
  return r > 2000000000.0 ? 2000000000 : (int)r;
}

static inline int nu_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

/* Like nu_connect, with SO_RCVBUF set to rcvbuf bytes before connecting
 * when rcvbuf > 0 (a slow reader whose kernel should not buffer much on its
 * behalf), and close-on-exec so a spawned child does not hold the socket.
 * Returns the fd or -1. */
static inline int nu_connect_rcvbuf(int port, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

static inline int nu_send(int fd, const void *p, size_t n) {
  const char *s = p;
  while (n > 0) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

static inline int nu_send_str(int fd, const char *s) { return nu_send(fd, s, strlen(s)); }

/* Sends one request: "METHOD path HTTP/1.1", a Host line, the extra header
 * lines (each ending in "\r\n"; may be NULL) and, when body is not NULL, a
 * JSON Content-Type, Content-Length and the body.  Returns 0 or -1. */
static inline int nu_send_request(int fd, const char *method, const char *path, const char *headers,
                                  const char *body) {
  size_t blen = body ? strlen(body) : 0;
  size_t cap = 512 + strlen(method) + strlen(path) + (headers ? strlen(headers) : 0) + blen;
  char *buf = malloc(cap);
  if (buf == NULL) return -1;
  int n = snprintf(buf, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s", method, path, headers ? headers : "");
  if (body != NULL)
    n += snprintf(buf + n, cap - (size_t)n, "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
  n += snprintf(buf + n, cap - (size_t)n, "\r\n");
  if (body != NULL) {
    memcpy(buf + n, body, blen);
    n += (int)blen;
  }
  int rc = nu_send(fd, buf, (size_t)n);
  free(buf);
  return rc;
}

/* Reads up to cap bytes, waiting at most timeout_ms.  Returns bytes read,
 * 0 on EOF, -1 on error, -2 on timeout. */
static inline ssize_t nu_recv(int fd, char *buf, size_t cap, int timeout_ms) {
  struct pollfd p = {fd, POLLIN, 0};
  int r;
  do r = poll(&p, 1, timeout_ms); while (r < 0 && errno == EINTR);
  if (r == 0) return -2;
  if (r < 0) return -1;
  ssize_t n = recv(fd, buf, cap, 0);
  return n < 0 ? -1 : n;
}

/* A buffered reader over one connection. */
typedef struct {
  int fd;
  char buf[65536];
  size_t start, end;
  int eof;
} nu_conn_t;

static inline void nu_conn_init(nu_conn_t *c, int fd) {
  c->fd = fd;
  c->start = c->end = 0;
  c->eof = 0;
}

/* Ensures at least one unread byte; returns 1, 0 on EOF, -2 timeout, -1 error. */
static inline int nu_fill(nu_conn_t *c, int64_t deadline) {
  if (c->start < c->end) return 1;
  if (c->eof) return 0;
  int64_t left = deadline - nu_now_ms();
  if (left <= 0) return -2;
  ssize_t n = nu_recv(c->fd, c->buf, sizeof(c->buf), (int)left);
  if (n == 0) {
    c->eof = 1;
    return 0;
  }
  if (n < 0) return (int)n;
  c->start = 0;
  c->end = (size_t)n;
  return 1;
}

/* Reads one line (without CRLF) into out; returns its length or < 0. */
static inline long nu_line(nu_conn_t *c, char *out, size_t cap, int64_t deadline) {
  size_t n = 0;
  for (;;) {
    int r = nu_fill(c, deadline);
    if (r <= 0) return r == 0 ? -1 : r;
    char ch = c->buf[c->start++];
    if (ch == '\n') {
      if (n > 0 && out[n - 1] == '\r') n--;
      out[n] = '\0';
      return (long)n;
    }
    if (n + 1 < cap) out[n++] = ch;
  }
}

static inline int nu_read_exact(nu_conn_t *c, char *out, size_t n, int64_t deadline) {
  while (n > 0) {
    int r = nu_fill(c, deadline);
    if (r <= 0) return -1;
    size_t take = c->end - c->start;
    if (take > n) take = n;
    memcpy(out, c->buf + c->start, take);
    c->start += take;
    out += take;
    n -= take;
  }
  return 0;
}

static inline const char *nu_header(const nu_resp_t *r, const char *name) {
  static char val[1024];
  size_t nl = strlen(name);
  const char *p = r->headers;
  while (*p) {
    const char *eol = strstr(p, "\r\n");
    if (!eol) eol = p + strlen(p);
    if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (*v == ' ') v++;
      size_t vl = (size_t)(eol - v);
      if (vl >= sizeof(val)) vl = sizeof(val) - 1;
      memcpy(val, v, vl);
      val[vl] = '\0';
      return val;
    }
    p = *eol ? eol + 2 : eol;
  }
  return NULL;
}

static inline void nu_body_append(nu_resp_t *r, const char *p, size_t n, size_t *cap) {
  if (r->body_len + n + 1 > *cap) {
    while (r->body_len + n + 1 > *cap) *cap = *cap ? *cap * 2 : 4096;
    r->body = realloc(r->body, *cap);
  }
  memcpy(r->body + r->body_len, p, n);
  r->body_len += n;
  r->body[r->body_len] = '\0';
}

/* Reads one response head (skipping 1xx).  Returns 0 or -1. */
static inline int nu_read_head(nu_conn_t *c, nu_resp_t *r, int timeout_ms) {
  int64_t deadline = nu_now_ms() + nu_scale_ms(timeout_ms);
  char line[8192];
  memset(r, 0, sizeof(*r));
  for (;;) {
    long n = nu_line(c, line, sizeof(line), deadline);
    if (n < 0) {
      r->closed = c->eof;
      return -1;
    }
    if (sscanf(line, "HTTP/1.%*d %d", &r->status) != 1) return -1;
    size_t hl = 0;
    r->headers[0] = '\0';
    for (;;) {
      n = nu_line(c, line, sizeof(line), deadline);
      if (n < 0) return -1;
      if (n == 0) break;
      if (hl + (size_t)n + 3 < sizeof(r->headers)) {
        memcpy(r->headers + hl, line, (size_t)n);
        hl += (size_t)n;
        memcpy(r->headers + hl, "\r\n", 3);
        hl += 2;
      }
    }
    if (r->status >= 200) break;
  }
  const char *te = nu_header(r, "transfer-encoding");
  r->chunked = te && strcasestr(te, "chunked") != NULL;
  return 0;
}

/* Reads the body after nu_read_head.  on_data (may be NULL) sees each piece
 * as it arrives.  Returns 0 when the body completed as framed, -1 if the
 * connection ended early, -2 on timeout. */
static inline int nu_read_body(nu_conn_t *c, nu_resp_t *r, int timeout_ms,
                               void (*on_data)(void *ud, const char *p, size_t n), void *ud) {
  int64_t deadline = nu_now_ms() + nu_scale_ms(timeout_ms);
  size_t cap = 0;
  nu_body_append(r, "", 0, &cap);
  const char *cl = nu_header(r, "content-length");
  if (r->chunked) {
    char line[256];
    for (;;) {
      long n = nu_line(c, line, sizeof(line), deadline);
      if (n < 0) { r->closed = c->eof; return nu_now_ms() >= deadline ? -2 : -1; }
      size_t sz = strtoul(line, NULL, 16);
      if (sz == 0) {
        (void)nu_line(c, line, sizeof(line), deadline); /* final CRLF */
        r->complete = 1;
        return 0;
      }
      char *tmp = malloc(sz);
      if (nu_read_exact(c, tmp, sz, deadline) < 0) {
        free(tmp);
        r->closed = c->eof;
        return nu_now_ms() >= deadline ? -2 : -1;
      }
      nu_body_append(r, tmp, sz, &cap);
      if (on_data) on_data(ud, tmp, sz);
      free(tmp);
      if (nu_line(c, line, sizeof(line), deadline) != 0) return -1;
    }
  }
  if (cl != NULL) {
    size_t want = strtoul(cl, NULL, 10);
    char *tmp = malloc(want + 1);
    int rc = nu_read_exact(c, tmp, want, deadline);
    if (rc == 0) {
      nu_body_append(r, tmp, want, &cap);
      if (on_data) on_data(ud, tmp, want);
      r->complete = 1;
    }
    free(tmp);
    return rc;
  }
  /* close-delimited */
  for (;;) {
    int f = nu_fill(c, deadline);
    if (f == 0) { r->complete = 1; r->closed = 1; return 0; }
    if (f < 0) return f;
    nu_body_append(r, c->buf + c->start, c->end - c->start, &cap);
    if (on_data) on_data(ud, c->buf + c->start, c->end - c->start);
    c->start = c->end;
  }
}

static inline int nu_read_response(nu_conn_t *c, nu_resp_t *r, int timeout_ms) {
  if (nu_read_head(c, r, timeout_ms) < 0) return -1;
  return nu_read_body(c, r, timeout_ms, NULL, NULL);
}

static inline void nu_resp_free(nu_resp_t *r) {
  free(r->body);
  r->body = NULL;
}

/* 1 if the peer has closed (EOF or reset) within timeout_ms. */
static inline int nu_wait_closed(int fd, int timeout_ms) {
  char b[4096];
  int64_t deadline = nu_now_ms() + nu_scale_ms(timeout_ms);
  for (;;) {
    int64_t left = deadline - nu_now_ms();
    if (left <= 0) return 0;
    ssize_t n = nu_recv(fd, b, sizeof(b), (int)left);
    if (n == 0 || n == -1) return 1;
    if (n == -2) return 0;
  }
}

#endif
