/* top.c: `sluice top` (see top.h). */
#include "runtime/cli/top.h"

#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"

/* The largest /metrics body taken: far above what any daemon writes (a
 * few hundred KiB with every endpoint and tenant capped), small enough
 * that a wrong URL serving a huge file fails fast. */
#define SL__BODY_MAX (64u << 20)
#define SL__MAX_POOLS 64
#define SL__MAX_EPS 256

/* ---- the frame ---- */

typedef struct {
  const sl_prom_t *now;
  const sl_prom_t *prev; /* NULL when there is no window (first scrape, or the daemon restarted) */
  double dt;             /* seconds of the daemon's uptime between the two scrapes, when prev */
} sl__frame_t;

/* A number as the table shows it: integers exactly, "-" for NaN. */
static const char *sl__num(double v, char *buf, size_t cap) {
  if (isnan(v)) return "-";
  if (v == floor(v) && fabs(v) < 1e15) snprintf(buf, cap, "%.0f", v);
  else snprintf(buf, cap, "%.3g", v);
  return buf;
}

/* A duration in seconds with a unit that keeps three figures or so. */
static void sl__dur(double s, char *buf, size_t cap) {
  if (s < 1e-3) snprintf(buf, cap, "%.0fus", s * 1e6);
  else if (s < 1) snprintf(buf, cap, "%.1fms", s * 1e3);
  else if (s < 100) snprintf(buf, cap, "%.2fs", s);
  else snprintf(buf, cap, "%.0fs", s);
}

static void sl__uptime(double s, char *buf, size_t cap) {
  if (isnan(s) || s < 0) {
    snprintf(buf, cap, "-");
    return;
  }
  long t = (long)s, d = t / 86400, h = t / 3600 % 24, m = t / 60 % 60, sec = t % 60;
  if (d > 0) snprintf(buf, cap, "%ldd%02ldh%02ldm", d, h, m);
  else if (h > 0) snprintf(buf, cap, "%ldh%02ldm%02lds", h, m, sec);
  else if (m > 0) snprintf(buf, cap, "%ldm%02lds", m, sec);
  else snprintf(buf, cap, "%lds", sec);
}

/* The q-quantile of histogram name{labels}: over the window when anything
 * was observed in it, else over the totals, then marked "*" (when there is
 * a window at all, which the header explains).  "-" when neither has an
 * observation or the family is missing; ">" when it lies past the last
 * finite bucket, where the figure is only a lower bound. */
static const char *sl__pct(const sl__frame_t *fr, const char *name, const char *const *labels, double q, char *buf,
                           size_t cap) {
  sl_prom_hist_t now, prev, win;
  if (sl_prom_hist(fr->now, name, labels, &now) < 0) return "-";
  const sl_prom_hist_t *h = &now;
  int since_start = 1;
  if (fr->prev && sl_prom_hist(fr->prev, name, labels, &prev) == 0 && sl_prom_hist_sub(&now, &prev, &win) == 0 &&
      win.cum[win.n - 1] > 0) {
    h = &win;
    since_start = 0;
  }
  int above;
  double v = sl_prom_quantile(q, h, &above);
  if (isnan(v) || isinf(v)) return "-";
  char d[24];
  sl__dur(v, d, sizeof(d));
  snprintf(buf, cap, "%s%s%s", above ? ">" : "", d, since_start && fr->prev ? "*" : "");
  return buf;
}

/* Per second over the window, of a counter: "-" without a window, or when
 * the counter is missing or went down. */
static const char *sl__rate(const sl__frame_t *fr, const char *name, char *buf, size_t cap) {
  if (fr->prev == NULL) return "-";
  double a = sl_prom_value(fr->now, name, NULL), b = sl_prom_value(fr->prev, name, NULL);
  if (isnan(a) || isnan(b) || a < b) return "-";
  snprintf(buf, cap, "%.1f", (a - b) / fr->dt);
  return buf;
}

/* Lists of "name value" pairs after a title, wrapped before the width. */
typedef struct {
  FILE *f;
  int width, indent, col, items;
} sl__wrap_t;

static void sl__wrap_start(sl__wrap_t *w, FILE *f, int width, int indent, const char *title) {
  *w = (sl__wrap_t){f, width, indent, indent, 0};
  fprintf(f, "%-*s", indent, title);
}

static void sl__wrap_item(sl__wrap_t *w, const char *name, const char *value) {
  int n = (int)strlen(name) + 1 + (int)strlen(value);
  if (w->items > 0 && w->col + 2 + n > w->width) {
    fprintf(w->f, "\n%*s", w->indent, "");
    w->col = w->indent;
  } else if (w->items > 0) {
    fputs("  ", w->f);
    w->col += 2;
  }
  fprintf(w->f, "%s %s", name, value);
  w->col += n;
  w->items++;
}

static void sl__wrap_end(sl__wrap_t *w) {
  if (w->items == 0) fputs("-", w->f); /* the family is missing: nothing to show, not zeros */
  fputc('\n', w->f);
}

/* Every sample of counter family name (with label key, and pool == pool
 * when pool is not NULL), as key's value and the count. */
static void sl__by_label(FILE *f, const sl_top_view_t *v, const sl_prom_t *p, int indent, const char *title,
                         const char *name, const char *key, const char *pool) {
  sl__wrap_t w;
  sl__wrap_start(&w, f, v->width, indent, title);
  for (int i = 0; i < p->n; i++) {
    const sl_prom_sample_t *s = &p->s[i];
    if (strcmp(s->name, name) != 0) continue;
    const char *k = sl_prom_label(p, s, key);
    const char *sp = sl_prom_label(p, s, "pool");
    if (k == NULL || (pool && (sp == NULL || strcmp(sp, pool) != 0))) continue;
    char n[32];
    sl__wrap_item(&w, k, sl__num(s->value, n, sizeof(n)));
  }
  sl__wrap_end(&w);
}

/* Adds s's label key to list (no repeats), in the order met. */
static int sl__collect(const char **list, int n, int cap, const char *value) {
  if (value == NULL) return n;
  for (int i = 0; i < n; i++)
    if (strcmp(list[i], value) == 0) return n;
  if (n < cap) list[n++] = value;
  return n;
}

static void sl__header(FILE *f, const sl__frame_t *fr, const sl_top_view_t *v) {
  const sl_prom_t *p = fr->now;
  const char *version = NULL;
  for (int i = 0; i < p->n && version == NULL; i++)
    if (strcmp(p->s[i].name, "sluice_build_info") == 0) version = sl_prom_label(p, &p->s[i], "version");
  char up[32], a[32], b[32], c[32], d[32], lag[32];
  sl__uptime(sl_prom_value(p, "sluice_uptime_seconds", NULL), up, sizeof(up));
  fprintf(f, "sluice %s   %s   up %s   refresh %d ms\n", version ? version : "-", v->url, up, v->interval_ms);
  fprintf(f, "streams %s   queued %s   tokens/s in %s out %s   loop lag p99 %s\n",
          sl__num(sl_prom_value(p, "sluice_streams_active", NULL), a, sizeof(a)),
          sl__num(sl_prom_value(p, "sluice_queue_waiting", NULL), b, sizeof(b)),
          sl__rate(fr, "sluice_tokens_received_total", c, sizeof(c)),
          sl__rate(fr, "sluice_tokens_written_total", d, sizeof(d)),
          sl__pct(fr, "sluice_event_loop_lag_seconds", NULL, 0.99, lag, sizeof(lag)));
  if (fr->prev)
    fprintf(f, "percentiles: window, the last %.2f s (* since start: nothing observed in the window)\n", fr->dt);
  else
    fprintf(f, "percentiles: since start (no earlier scrape to take a window from)\n");
}

static void sl__endpoint_row(FILE *f, const sl__frame_t *fr, const char *pool, const char *ep, int namew) {
  const sl_prom_t *p = fr->now;
  const char *l[] = {"pool", pool, "endpoint", ep, NULL};
  double ready = sl_prom_value(p, "sluice_endpoint_ready", l);
  char st[32], li[32], t50[32], t90[32], i50[32], i90[32], rq[32], er[32];
  fprintf(f, "  %-*s %5s %8s %6s %9s %9s %9s %9s %9s %7s\n", namew, ep, isnan(ready) ? "-" : ready > 0 ? "yes" : "no",
          sl__num(sl_prom_value(p, "sluice_endpoint_streams", l), st, sizeof(st)),
          sl__num(sl_prom_value(p, "sluice_endpoint_limit", l), li, sizeof(li)),
          sl__pct(fr, "sluice_time_to_first_token_seconds", l, 0.5, t50, sizeof(t50)),
          sl__pct(fr, "sluice_time_to_first_token_seconds", l, 0.9, t90, sizeof(t90)),
          sl__pct(fr, "sluice_time_per_output_token_seconds", l, 0.5, i50, sizeof(i50)),
          sl__pct(fr, "sluice_time_per_output_token_seconds", l, 0.9, i90, sizeof(i90)),
          sl__num(sl_prom_value(p, "sluice_endpoint_requests_total", l), rq, sizeof(rq)),
          sl__num(sl_prom_value(p, "sluice_endpoint_errors_total", l), er, sizeof(er)));
}

static void sl__pool(FILE *f, const sl__frame_t *fr, const sl_top_view_t *v, const char *pool) {
  static const char *const ep_families[] = {"sluice_endpoint_ready", "sluice_endpoint_streams", "sluice_endpoint_limit"};
  const sl_prom_t *p = fr->now;
  const char *eps[SL__MAX_EPS];
  int neps = 0, namew = 8;
  for (int i = 0; i < p->n; i++)
    for (size_t k = 0; k < sizeof(ep_families) / sizeof(ep_families[0]); k++) {
      const char *sp = sl_prom_label(p, &p->s[i], "pool");
      if (strcmp(p->s[i].name, ep_families[k]) == 0 && sp && strcmp(sp, pool) == 0)
        neps = sl__collect(eps, neps, SL__MAX_EPS, sl_prom_label(p, &p->s[i], "endpoint"));
    }
  for (int i = 0; i < neps; i++)
    if ((int)strlen(eps[i]) > namew) namew = (int)strlen(eps[i]);
  const char *l[] = {"pool", pool, NULL};
  char q[32];
  fprintf(f, "\npool %s   queued %s\n", pool, sl__num(sl_prom_value(p, "sluice_pool_queue_waiting", l), q, sizeof(q)));
  fprintf(f, "  %-*s %5s %8s %6s %9s %9s %9s %9s %9s %7s\n", namew, "endpoint", "ready", "streams", "limit", "ttft_p50",
          "ttft_p90", "itl_p50", "itl_p90", "attempts", "errors");
  for (int i = 0; i < neps; i++) sl__endpoint_row(f, fr, pool, eps[i], namew);
  sl__by_label(f, v, p, 14, "  requests", "sluice_requests_ended_total", "outcome", pool);
}

void sl_top_render(FILE *f, const sl_prom_t *now, const sl_prom_t *prev, const sl_top_view_t *v) {
  sl__frame_t fr = {now, NULL, 0};
  double up = sl_prom_value(now, "sluice_uptime_seconds", NULL);
  double up_prev = prev ? sl_prom_value(prev, "sluice_uptime_seconds", NULL) : NAN;
  /* The window is the daemon's own time between the scrapes; if its
   * uptime went back it restarted, and no delta means anything. */
  if (prev && up > up_prev) {
    fr.prev = prev;
    fr.dt = up - up_prev;
  }
  sl__header(f, &fr, v);
  const char *pools[SL__MAX_POOLS];
  int npools = 0;
  for (int i = 0; i < now->n; i++)
    if (strcmp(now->s[i].name, "sluice_pool_queue_waiting") == 0 ||
        strncmp(now->s[i].name, "sluice_endpoint_", strlen("sluice_endpoint_")) == 0)
      npools = sl__collect(pools, npools, SL__MAX_POOLS, sl_prom_label(now, &now->s[i], "pool"));
  for (int i = 0; i < npools; i++) sl__pool(f, &fr, v, pools[i]);
  fputc('\n', f);
  sl__by_label(f, v, now, 14, "guards", "sluice_guard_firings_total", "guard", NULL);
  sl__by_label(f, v, now, 14, "rejections", "sluice_rejections_total", "reason", NULL);
}

void sl_top_render_down(FILE *f, const sl_top_view_t *v, const char *why, int attempt) {
  fprintf(f, "sluice top   %s   refresh %d ms\n\n", v->url, v->interval_ms);
  fprintf(f, "cannot scrape the daemon: %s\n", why);
  fprintf(f, "retrying every %d ms (%d failed in a row)\n", v->interval_ms, attempt);
}

/* ---- the HTTP client ---- */

typedef struct {
  char host[256];
  char port[8];
  char path[1024];
} sl__url_t;

static int sl__url_parse(const char *url, sl__url_t *u, char *err, size_t errcap) {
  const char *p = url;
  if (strncmp(p, "http://", 7) == 0) {
    p += 7;
  } else if (strstr(p, "://") != NULL) {
    snprintf(err, errcap, "%s: only http:// URLs are supported", url);
    return SL_EINVAL;
  }
  const char *host = p, *host_end;
  if (*p == '[') { /* an IPv6 literal */
    host_end = strchr(p, ']');
    if (host_end == NULL) {
      snprintf(err, errcap, "%s: no ']' closes the IPv6 address", url);
      return SL_EINVAL;
    }
    host++;
    p = host_end + 1;
  } else {
    p += strcspn(p, ":/");
    host_end = p;
  }
  if (host_end == host || (size_t)(host_end - host) >= sizeof(u->host)) {
    snprintf(err, errcap, "%s: no host, or a host too long", url);
    return SL_EINVAL;
  }
  memcpy(u->host, host, (size_t)(host_end - host));
  u->host[host_end - host] = '\0';
  snprintf(u->port, sizeof(u->port), "80");
  if (*p == ':') {
    char *e;
    long port = strtol(p + 1, &e, 10);
    if (e == p + 1 || (*e != '\0' && *e != '/') || port < 1 || port > 65535) {
      snprintf(err, errcap, "%s: the port must be a number from 1 to 65535", url);
      return SL_EINVAL;
    }
    snprintf(u->port, sizeof(u->port), "%ld", port);
    p = e;
  }
  if (*p != '\0' && *p != '/') {
    snprintf(err, errcap, "%s: expected ':PORT' or '/PATH' after the host", url);
    return SL_EINVAL;
  }
  if (strlen(p) >= sizeof(u->path) || strpbrk(p, " \r\n\t") != NULL) {
    snprintf(err, errcap, "%s: the path is too long or holds a space or line break", url);
    return SL_EINVAL;
  }
  snprintf(u->path, sizeof(u->path), "%s", p[0] == '\0' || strcmp(p, "/") == 0 ? "/metrics" : p);
  return 0;
}

static int64_t sl__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until deadline.  Returns 1 ready, 0 timed out,
 * -1 interrupted by a signal (errno EINTR) or failed. */
static int sl__wait(int fd, short events, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - sl__now_ms();
    if (left <= 0) return 0;
    struct pollfd pfd = {fd, events, 0};
    int r = poll(&pfd, 1, (int)left);
    if (r != 0) return r > 0 ? 1 : -1;
  }
}

/* A non-blocking connection to u, made by deadline.  Returns the fd, or -1
 * with the reason in err. */
static int sl__connect(const sl__url_t *u, int64_t deadline, char *err, size_t errcap) {
  struct addrinfo hints, *res;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int g = getaddrinfo(u->host, u->port, &hints, &res);
  if (g != 0) {
    snprintf(err, errcap, "cannot resolve %s: %s", u->host, gai_strerror(g));
    return -1;
  }
  int fd = -1, last = 0;
  for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last = errno;
      continue;
    }
    int r = connect(fd, a->ai_addr, a->ai_addrlen);
    if (r < 0 && errno == EINPROGRESS) {
      int w = sl__wait(fd, POLLOUT, deadline);
      socklen_t len = sizeof(last);
      if (w == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &last, &len) == 0 && last == 0) r = 0;
      else if (w == 0) last = ETIMEDOUT;
      else if (w < 0) last = errno;
    } else if (r < 0) {
      last = errno;
    }
    if (r < 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) snprintf(err, errcap, "cannot connect to %s:%s: %s", u->host, u->port, strerror(last));
  return fd;
}

typedef struct {
  char *p;
  size_t n, cap;
  int done;    /* the message ended as its framing says */
  int toobig;  /* past SL__BODY_MAX */
} sl__body_t;

static int sl__on_body(llhttp_t *h, const char *at, size_t n) {
  sl__body_t *b = h->data;
  if (b->n + n > SL__BODY_MAX) {
    b->toobig = 1;
    return -1;
  }
  if (b->n + n + 1 > b->cap) {
    while (b->n + n + 1 > b->cap) b->cap = b->cap ? b->cap * 2 : 65536;
    b->p = sl_realloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, at, n);
  b->n += n;
  return 0;
}

static int sl__on_complete(llhttp_t *h) {
  ((sl__body_t *)h->data)->done = 1;
  return HPE_PAUSED; /* one answer is all we asked for */
}

/* Sends the request and reads the answer into b.  Returns 0 or -1 with
 * err set. */
static int sl__exchange(int fd, const sl__url_t *u, int64_t deadline, llhttp_t *parser, sl__body_t *b, char *err,
                        size_t errcap) {
  char req[1400];
  int n = snprintf(req, sizeof(req),
                   "GET %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nAccept: text/plain\r\nUser-Agent: sluice-top/%s\r\n"
                   "Connection: close\r\n\r\n",
                   u->path, strchr(u->host, ':') ? "[" : "", u->host, strchr(u->host, ':') ? "]" : "", u->port,
                   SL_VERSION);
  for (int off = 0; off < n;) {
    ssize_t w = send(fd, req + off, (size_t)(n - off), MSG_NOSIGNAL);
    if (w < 0 && errno == EAGAIN && sl__wait(fd, POLLOUT, deadline) == 1) continue;
    if (w < 0) {
      snprintf(err, errcap, "cannot send the request: %s", errno == EAGAIN ? "timed out" : strerror(errno));
      return -1;
    }
    off += (int)w;
  }
  char buf[16384];
  while (!b->done) {
    int ready = sl__wait(fd, POLLIN, deadline);
    if (ready != 1) {
      snprintf(err, errcap, "%s", ready == 0 ? "no whole answer in time" : strerror(errno));
      return -1;
    }
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (r < 0) {
      snprintf(err, errcap, "reading the answer: %s", strerror(errno));
      return -1;
    }
    llhttp_errno_t e = r == 0 ? llhttp_finish(parser) : llhttp_execute(parser, buf, (size_t)r);
    if (b->done) break;
    if (b->toobig) {
      snprintf(err, errcap, "the answer is larger than %u MiB", SL__BODY_MAX >> 20);
      return -1;
    }
    if (r == 0) {
      snprintf(err, errcap, "the connection closed before the answer ended");
      return -1;
    }
    if (e != HPE_OK) {
      snprintf(err, errcap, "not an HTTP answer (%s)", llhttp_get_error_reason(parser));
      return -1;
    }
  }
  return 0;
}

int sl_top_fetch(const char *url, int timeout_ms, char **body, size_t *len, char *err, size_t errcap) {
  sl__url_t u;
  int rc = sl__url_parse(url, &u, err, errcap);
  if (rc < 0) return rc;
  int64_t deadline = sl__now_ms() + timeout_ms;
  int fd = sl__connect(&u, deadline, err, errcap);
  if (fd < 0) return SL_EUPSTREAM;
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  settings.on_body = sl__on_body;
  settings.on_message_complete = sl__on_complete;
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &settings);
  sl__body_t b = {0};
  parser.data = &b;
  rc = sl__exchange(fd, &u, deadline, &parser, &b, err, errcap);
  close(fd);
  if (rc == 0 && parser.status_code != 200) {
    /* The body is not NUL-terminated yet: print its bytes, at most 200. */
    snprintf(err, errcap, "GET %s answered HTTP %d: %.*s", u.path, parser.status_code, (int)(b.n < 200 ? b.n : 200),
             b.n ? b.p : "");
    for (char *c = err; *c; c++)
      if (*c == '\n' || *c == '\r') *c = ' ';
    rc = -1;
  }
  if (rc < 0) {
    sl_free(b.p);
    return SL_EUPSTREAM;
  }
  if (b.p == NULL) b.p = sl_malloc(1);
  b.p[b.n] = '\0';
  *body = b.p;
  *len = b.n;
  return 0;
}

/* ---- the command ---- */

static volatile sig_atomic_t sl__stop;

static void sl__on_signal(int sig) {
  (void)sig;
  sl__stop = 1;
}

static const char sl__usage[] =
    "usage: sluice top [--url URL] [--interval-ms MS] [--once]\n"
    "\n"
    "A live view of a running sluice from its GET /metrics: streams in flight, queue,\n"
    "tokens/s, loop lag; per pool and endpoint readiness, streams, limit, TTFT and\n"
    "inter-token p50/p90, requests by outcome; guard firings; rejections by reason.\n"
    "Percentiles cover the last interval where anything was observed in it, else\n"
    "everything since the daemon started (marked *).  \"-\" is a figure that cannot\n"
    "be computed.  q or Ctrl-C quits.\n"
    "\n"
    "  --url URL          the daemon (default http://127.0.0.1:8080; path /metrics)\n"
    "  --interval-ms MS   time between scrapes, 50..3600000 (1000)\n"
    "  --once             print one frame as plain text and exit: two scrapes MS apart\n"
    "                     (one with --interval-ms 0, then no rates or window); exit 1\n"
    "                     when the daemon cannot be scraped\n"
    "  --help             this text\n";

typedef struct {
  const char *url;
  int interval_ms;
  int once;
} sl__opts_t;

/* Returns 0, 1 (help printed) or -1 (usage error printed). */
static int sl__parse_args(int argc, char **argv, sl__opts_t *o) {
  *o = (sl__opts_t){"http://127.0.0.1:8080", 1000, 0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(sl__usage, stdout);
      return 1;
    } else if (strcmp(a, "--once") == 0) {
      o->once = 1;
    } else if (strcmp(a, "--url") == 0 || strcmp(a, "--interval-ms") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "sluice top: %s needs a value\n\n%s", a, sl__usage);
        return -1;
      }
      const char *val = argv[++i];
      if (a[2] == 'u') {
        o->url = val;
        continue;
      }
      char *e;
      errno = 0;
      long ms = strtol(val, &e, 10);
      if (*val == '\0' || *e != '\0' || errno != 0 || ms < 0 || ms > 3600000) {
        fprintf(stderr, "sluice top: bad value for --interval-ms: %s (a number of milliseconds, 50 to 3600000)\n",
                val);
        return -1;
      }
      o->interval_ms = (int)ms;
    } else {
      fprintf(stderr, "sluice top: unknown argument '%s'\n\n%s", a, sl__usage);
      return -1;
    }
  }
  if (o->interval_ms < 50 && !(o->once && o->interval_ms == 0)) {
    fprintf(stderr, "sluice top: --interval-ms must be at least 50 (0 only with --once)\n");
    return -1;
  }
  return 0;
}

/* One scrape into *p.  Returns 0 or -1 with the reason in err. */
static int sl__scrape(const sl__opts_t *o, sl_prom_t *p, char *err, size_t errcap) {
  char *body;
  size_t len;
  /* Generous: a daemon under load (or built with sanitizers) answers late,
   * and a scrape that gives up early shows the daemon as down. */
  int timeout = o->interval_ms > 5000 ? o->interval_ms : 5000;
  if (sl_top_fetch(o->url, timeout, &body, &len, err, errcap) < 0) return -1;
  char perr[200];
  int rc = sl_prom_parse(body, len, p, perr, sizeof(perr));
  sl_free(body);
  if (rc < 0) {
    snprintf(err, errcap, "the answer is not Prometheus text: %s", perr);
    return -1;
  }
  return 0;
}

static int sl__once(const sl__opts_t *o) {
  sl_prom_t a, b;
  char err[512];
  if (sl__scrape(o, &a, err, sizeof(err)) < 0) {
    fprintf(stderr, "sluice top: cannot scrape %s: %s\n", o->url, err);
    return 1;
  }
  /* On a terminal lists wrap at its width; into a pipe or file each list
   * stays on one line, which is what a script reading it wants. */
  struct winsize ws;
  int width = isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 1 << 20;
  sl_top_view_t v = {o->url, o->interval_ms, width};
  if (o->interval_ms == 0) {
    sl_top_render(stdout, &a, NULL, &v);
    sl_prom_free(&a);
    return 0;
  }
  struct timespec ts = {o->interval_ms / 1000, (long)(o->interval_ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !sl__stop) {
  }
  int rc = sl__scrape(o, &b, err, sizeof(err));
  if (rc < 0) {
    fprintf(stderr, "sluice top: cannot scrape %s: %s\n", o->url, err);
  } else {
    sl_top_render(stdout, &b, &a, &v);
    sl_prom_free(&b);
  }
  sl_prom_free(&a);
  return rc < 0 ? 1 : 0;
}

/* Writes the frame in text[0..n) over the last one: from the top left,
 * each line cut at the terminal's width and cleared to its end, lines past
 * its height dropped (a scroll would push the top away), the rest of the
 * screen cleared. */
static void sl__paint(const char *text, size_t n, int cols, int rows) {
  fputs("\x1b[H", stdout);
  const char *p = text, *end = text + n;
  for (int row = 0; p < end && row < rows; row++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    int col = 0;
    const char *q = p;
    /* Columns count characters: UTF-8 continuation bytes take none. */
    for (; q < le; q++) {
      if (((unsigned char)*q & 0xc0) != 0x80 && col++ == cols) break;
    }
    fwrite(p, 1, (size_t)(q - p), stdout);
    fputs("\x1b[K", stdout);
    if (row + 1 < rows && nl) fputs("\r\n", stdout);
    p = nl ? nl + 1 : end;
  }
  fputs("\x1b[J", stdout);
  fflush(stdout);
}

/* Waits until deadline for the next frame, reading keys when stdin is a
 * terminal.  Returns 1 when the user asked to quit. */
static int sl__pause(int64_t deadline, int keys) {
  while (!sl__stop) {
    int64_t left = deadline - sl__now_ms();
    if (left <= 0) return 0;
    struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
    int r = poll(&pfd, keys ? 1 : 0, (int)left);
    if (r > 0 && (pfd.revents & (POLLHUP | POLLERR))) keys = 0; /* the terminal went away: go on, keyless */
    if (r > 0 && (pfd.revents & POLLIN)) {
      char c[64];
      ssize_t k = read(STDIN_FILENO, c, sizeof(c));
      if (k == 0) keys = 0;
      for (ssize_t i = 0; i < k; i++)
        if (c[i] == 'q' || c[i] == 'Q') return 1;
    }
  }
  return 1;
}

static int sl__live(const sl__opts_t *o) {
  int keys = isatty(STDIN_FILENO);
  struct termios saved, raw;
  if (keys && tcgetattr(STDIN_FILENO, &saved) == 0) {
    /* Keys without Enter and without echo; Ctrl-C still raises SIGINT. */
    raw = saved;
    raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    tcsetattr(STDIN_FILENO, TCSANOW, &raw);
  } else {
    keys = 0;
  }
  fputs("\x1b[?25l\x1b[2J", stdout);
  sl_prom_t frames[2];
  int have = 0, cur = 0, failures = 0;
  char *text = NULL;
  size_t n = 0;
  while (!sl__stop) {
    int64_t deadline = sl__now_ms() + o->interval_ms;
    struct winsize ws;
    int cols = 100, rows = 50;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
      cols = ws.ws_col;
      rows = ws.ws_row > 0 ? ws.ws_row : rows;
    }
    sl_top_view_t v = {o->url, o->interval_ms, cols};
    FILE *f = open_memstream(&text, &n);
    if (f == NULL) break;
    char err[512];
    if (sl__scrape(o, &frames[cur], err, sizeof(err)) == 0) {
      failures = 0;
      sl_top_render(f, &frames[cur], have ? &frames[!cur] : NULL, &v);
      if (have) sl_prom_free(&frames[!cur]);
      have = 1;
      cur = !cur;
    } else if (!sl__stop) {
      sl_top_render_down(f, &v, err, ++failures);
    }
    fclose(f);
    if (!sl__stop) sl__paint(text, n, cols, rows);
    free(text); /* open_memstream's buffer is libc's */
    text = NULL;
    if (sl__pause(deadline, keys)) break;
  }
  if (have) sl_prom_free(&frames[!cur]);
  fputs("\x1b[?25h\n", stdout);
  fflush(stdout);
  if (keys) tcsetattr(STDIN_FILENO, TCSANOW, &saved);
  return 0;
}

int sl_top_main(int argc, char **argv) {
  sl__opts_t o;
  int rc = sl__parse_args(argc, argv, &o);
  if (rc != 0) return rc > 0 ? 0 : 2;
  char err[512];
  sl__url_t u;
  if (sl__url_parse(o.url, &u, err, sizeof(err)) < 0) {
    fprintf(stderr, "sluice top: bad --url: %s\n", err);
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = sl__on_signal; /* no SA_RESTART: a wait in poll ends at once */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  return o.once ? sl__once(&o) : sl__live(&o);
}
