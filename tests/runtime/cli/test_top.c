/* Tests for runtime/cli/top: the frames `sluice top` draws and its HTTP
 * client.  Frames are drawn from made-up /metrics bodies whose figures are
 * worked out by hand: the first frame has no window (percentiles since
 * start, no rates); the next takes percentiles over the window where it
 * had observations and marks the totals it fell back to; tokens/s come
 * from counter deltas over the daemon's own uptime; a restart between two
 * scrapes voids the window; a rank past the last finite bucket shows as a
 * lower bound; a family that is missing shows "-", never 0; lists wrap at
 * the width.  The client reads a chunked answer from a real socket, and
 * names what is wrong with bad URLs, refused connections, non-200 answers
 * and answers cut short. */
#include "runtime/cli/top.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "test.h"

/* A /metrics body: endpoints e1 and e2 of pool p, TTFT buckets 0.1, 0.25,
 * 0.5 and +Inf with e1's and e2's cumulative counts, lag buckets 0.001,
 * 0.01 and +Inf with lag's. */
static char *body(char *buf, size_t cap, double uptime, double tin, double tout, const double *e1, const double *e2,
                  const double *lag) {
  static const char *const le[] = {"0.1", "0.25", "0.5", "+Inf"};
  int n = snprintf(buf, cap,
                   "# HELP sluice_build_info 1\n# TYPE sluice_build_info gauge\n"
                   "sluice_build_info{version=\"9.8.7\"} 1\n"
                   "sluice_uptime_seconds %g\n"
                   "sluice_streams_active 3\nsluice_queue_waiting 2\n"
                   "sluice_tokens_received_total %g\nsluice_tokens_written_total %g\n"
                   "sluice_some_future_family{x=\"y\"} 5\n"
                   "sluice_endpoint_ready{pool=\"p\",endpoint=\"e1\"} 1\n"
                   "sluice_endpoint_ready{pool=\"p\",endpoint=\"e2\"} 0\n"
                   "sluice_endpoint_streams{pool=\"p\",endpoint=\"e1\"} 3\n"
                   "sluice_endpoint_streams{pool=\"p\",endpoint=\"e2\"} 0\n"
                   "sluice_endpoint_limit{pool=\"p\",endpoint=\"e1\"} 16\n"
                   "sluice_endpoint_limit{pool=\"p\",endpoint=\"e2\"} 4\n"
                   "sluice_endpoint_requests_total{pool=\"p\",endpoint=\"e1\"} 11\n"
                   "sluice_endpoint_errors_total{pool=\"p\",endpoint=\"e1\"} 1\n",
                   uptime, tin, tout);
  for (int i = 0; i < 4; i++)
    n += snprintf(buf + n, cap - (size_t)n,
                  "sluice_time_to_first_token_seconds_bucket{pool=\"p\",endpoint=\"e1\",le=\"%s\"} %g\n", le[i], e1[i]);
  for (int i = 0; i < 4; i++)
    n += snprintf(buf + n, cap - (size_t)n,
                  "sluice_time_to_first_token_seconds_bucket{pool=\"p\",endpoint=\"e2\",le=\"%s\"} %g\n", le[i], e2[i]);
  static const char *const lle[] = {"0.001", "0.01", "+Inf"};
  for (int i = 0; i < 3; i++)
    n += snprintf(buf + n, cap - (size_t)n, "sluice_event_loop_lag_seconds_bucket{le=\"%s\"} %g\n", lle[i], lag[i]);
  snprintf(buf + n, cap - (size_t)n,
           "sluice_pool_queue_waiting{pool=\"p\"} 2\n"
           "sluice_requests_ended_total{pool=\"p\",outcome=\"ok\"} 9\n"
           "sluice_requests_ended_total{pool=\"p\",outcome=\"upstream_error\"} 1\n"
           "sluice_guard_firings_total{guard=\"stop\"} 4\n"
           "sluice_guard_firings_total{guard=\"loop\"} 0\n"
           "sluice_rejections_total{reason=\"queue_full\"} 6\n");
  return buf;
}

/* The frame for now (and prev, when not NULL) at width, as a string
 * (free it). */
static char *frame(const char *now_text, const char *prev_text, int width) {
  sl_prom_t now, prev;
  char err[200];
  if (sl_prom_parse(now_text, strlen(now_text), &now, err, sizeof(err)) < 0) return NULL;
  if (prev_text && sl_prom_parse(prev_text, strlen(prev_text), &prev, err, sizeof(err)) < 0) return NULL;
  char *out = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&out, &n);
  sl_top_view_t v = {"http://127.0.0.1:1", 1000, width};
  sl_top_render(f, &now, prev_text ? &prev : NULL, &v);
  fclose(f);
  sl_prom_free(&now);
  if (prev_text) sl_prom_free(&prev);
  return out;
}

/* The line of text starting with prefix (after leading blanks), copied
 * into line[cap] without its newline; 1 if found. */
static int line_of(const char *text, const char *prefix, char *line, size_t cap) {
  for (const char *p = text; *p;) {
    const char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    const char *q = p;
    while (*q == ' ') q++;
    if (strncmp(q, prefix, strlen(prefix)) == 0) {
      snprintf(line, cap, "%.*s", (int)(len - (size_t)(q - p)), q);
      return 1;
    }
    p += len + (nl != NULL);
  }
  return 0;
}

/* The n-th blank-separated word of line (0-based) into w[cap]; 1 if any. */
static int word(const char *line, int n, char *w, size_t cap) {
  for (int i = 0;; i++) {
    while (*line == ' ') line++;
    if (*line == '\0') return 0;
    size_t len = strcspn(line, " ");
    if (i == n) {
      snprintf(w, cap, "%.*s", (int)len, line);
      return 1;
    }
    line += len;
  }
}

#define ASSERT_WORD(line, n, want)          \
  do {                                      \
    char w_[64] = "";                       \
    ASSERT(word((line), (n), w_, sizeof(w_))); \
    ASSERT_STR_EQ(w_, (want));              \
  } while (0)

static const double E1_PREV[] = {2, 2, 2, 2}, E1_NOW[] = {2, 6, 10, 10};
static const double E2[] = {1, 1, 1, 1};
static const double LAG_PREV[] = {10, 10, 10}, LAG_NOW[] = {20, 30, 30};

static void test_first_frame(void) {
  char b[8192], line[512];
  char *out = frame(body(b, sizeof(b), 10, 100, 90, E1_NOW, E2, LAG_NOW), NULL, 200);
  ASSERT_NOT_NULL(out);
  ASSERT(strstr(out, "sluice 9.8.7   http://127.0.0.1:1   up 10s   refresh 1000 ms\n") != NULL);
  /* No earlier scrape: no rate; lag p99 over the totals: rank 29.7 of 30,
   * 9.7 of 10 into (1 ms, 10 ms]. */
  ASSERT(strstr(out, "streams 3   queued 2   tokens/s in - out -   loop lag p99 9.7ms\n") != NULL);
  ASSERT(strstr(out, "percentiles: since start") != NULL);
  /* e1's totals {2,6,10,10}: p50 rank 5 is 3 of 4 into (100, 250] ms,
   * p90 rank 9 is 3 of 4 into (250, 500] ms; no TPOT at all: "-". */
  ASSERT(line_of(out, "e1 ", line, sizeof(line)));
  ASSERT_WORD(line, 1, "yes");
  ASSERT_WORD(line, 2, "3");
  ASSERT_WORD(line, 3, "16");
  ASSERT_WORD(line, 4, "212.5ms");
  ASSERT_WORD(line, 5, "437.5ms");
  ASSERT_WORD(line, 6, "-");
  ASSERT_WORD(line, 7, "-");
  ASSERT_WORD(line, 8, "11");
  ASSERT_WORD(line, 9, "1");
  ASSERT(line_of(out, "e2 ", line, sizeof(line)));
  ASSERT_WORD(line, 1, "no");
  ASSERT_WORD(line, 4, "50.0ms");
  ASSERT_WORD(line, 8, "-"); /* no requests series for e2: unknown, not 0 */
  ASSERT(line_of(out, "pool p", line, sizeof(line)));
  ASSERT_STR_EQ(line, "pool p   queued 2");
  ASSERT(line_of(out, "requests", line, sizeof(line)));
  ASSERT_STR_EQ(line, "requests    ok 9  upstream_error 1");
  ASSERT(line_of(out, "guards", line, sizeof(line)));
  ASSERT_STR_EQ(line, "guards        stop 4  loop 0");
  ASSERT(line_of(out, "rejections", line, sizeof(line)));
  ASSERT_STR_EQ(line, "rejections    queue_full 6");
  free(out);
}

static void test_window_frame(void) {
  char a[8192], b[8192], line[512];
  body(a, sizeof(a), 10, 100, 90, E1_PREV, E2, LAG_PREV);
  char *out = frame(body(b, sizeof(b), 12.5, 350, 340, E1_NOW, E2, LAG_NOW), a, 200);
  ASSERT_NOT_NULL(out);
  /* 250 tokens each way over 2.5 s of the daemon's time; the lag window
   * {10,20,20}: rank 19.8 is 9.8 of 10 into (1, 10] ms. */
  ASSERT(strstr(out, "tokens/s in 100.0 out 100.0   loop lag p99 9.8ms\n") != NULL);
  ASSERT(strstr(out, "percentiles: window, the last 2.50 s") != NULL);
  /* e1's window {0,4,8,8}: p50 rank 4 tops (100, 250] ms, p90 rank 7.2
   * is 3.2 of 4 into (250, 500] ms. */
  ASSERT(line_of(out, "e1 ", line, sizeof(line)));
  ASSERT_WORD(line, 4, "250.0ms");
  ASSERT_WORD(line, 5, "450.0ms");
  /* e2 saw nothing in the window: its totals, marked. */
  ASSERT(line_of(out, "e2 ", line, sizeof(line)));
  ASSERT_WORD(line, 4, "50.0ms*");
  free(out);
}

/* Uptime that went back: the daemon restarted between the scrapes, and no
 * delta across that means anything. */
static void test_restart_voids_window(void) {
  char a[8192], b[8192];
  body(a, sizeof(a), 500, 9000, 9000, E1_PREV, E2, LAG_PREV);
  char *out = frame(body(b, sizeof(b), 12.5, 350, 340, E1_NOW, E2, LAG_NOW), a, 200);
  ASSERT_NOT_NULL(out);
  ASSERT(strstr(out, "tokens/s in - out -") != NULL);
  ASSERT(strstr(out, "percentiles: since start") != NULL);
  ASSERT(strstr(out, "*") == NULL);
  free(out);
}

/* A rank in +Inf is only known to lie past the last bound. */
static void test_past_last_bucket(void) {
  char b[8192], line[512];
  static const double slow[] = {0, 0, 1, 10};
  char *out = frame(body(b, sizeof(b), 10, 0, 0, slow, E2, LAG_NOW), NULL, 200);
  ASSERT_NOT_NULL(out);
  ASSERT(line_of(out, "e1 ", line, sizeof(line)));
  ASSERT_WORD(line, 4, ">500.0ms");
  ASSERT_WORD(line, 5, ">500.0ms");
  free(out);
}

/* A daemon that exposes almost nothing: every figure "-". */
static void test_missing_families(void) {
  char *out = frame("sluice_uptime_seconds 3725\n", NULL, 200);
  ASSERT_NOT_NULL(out);
  ASSERT(strstr(out, "sluice -   http://127.0.0.1:1   up 1h02m05s") != NULL);
  ASSERT(strstr(out, "streams -   queued -   tokens/s in - out -   loop lag p99 -\n") != NULL);
  ASSERT(strstr(out, "\nguards        -\n") != NULL);
  ASSERT(strstr(out, "\nrejections    -\n") != NULL);
  ASSERT(strstr(out, "pool ") == NULL);
  free(out);
}

/* Lists wrap before the width, continuing under their first item. */
static void test_wrap(void) {
  char b[8192];
  snprintf(b, sizeof(b),
           "sluice_rejections_total{reason=\"bad_request\"} 1\n"
           "sluice_rejections_total{reason=\"not_found\"} 22\n"
           "sluice_rejections_total{reason=\"queue_full\"} 333\n"
           "sluice_rejections_total{reason=\"queue_timeout\"} 4\n");
  char *out = frame(b, NULL, 44);
  ASSERT_NOT_NULL(out);
  ASSERT(strstr(out, "rejections    bad_request 1  not_found 22\n"
                     "              queue_full 333\n"
                     "              queue_timeout 4\n") != NULL);
  free(out);
}

/* ---- the client ---- */

/* A listening socket on 127.0.0.1:0; its port into *port. */
static int listener(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4) < 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) < 0)
    return -1;
  *port = ntohs(a.sin_port);
  return fd;
}

/* A child that answers one connection with `answer` after reading the
 * request head (it checks the request line and writes "BAD" otherwise). */
static pid_t serve_once(int lfd, const char *answer) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  int c = accept(lfd, NULL, NULL);
  char req[4096];
  size_t n = 0;
  while (n < sizeof(req) - 1) {
    ssize_t r = read(c, req + n, sizeof(req) - 1 - n);
    if (r <= 0) break;
    n += (size_t)r;
    req[n] = '\0';
    if (strstr(req, "\r\n\r\n")) break;
  }
  req[n] = '\0';
  const char *out = strncmp(req, "GET /metrics HTTP/1.1\r\n", 23) == 0 && strstr(req, "\r\nHost: 127.0.0.1:") ? answer
                                                                                                              : "BAD";
  if (write(c, out, strlen(out)) < 0) _exit(1);
  close(c);
  _exit(0);
}

static void fetch_from(const char *answer, int *rc, char **got, char *err, size_t errcap) {
  int port, lfd = listener(&port);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
  pid_t pid = serve_once(lfd, answer);
  size_t len = 0;
  *got = NULL;
  *rc = sl_top_fetch(url, 30000, got, &len, err, errcap);
  if (*rc == 0 && strlen(*got) != len) *rc = -99;
  close(lfd);
  int st;
  waitpid(pid, &st, 0);
}

static void test_fetch(void) {
  int rc;
  char *got, err[512];
  fetch_from("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
             "6\r\nup 1\nx\r\n4\r\n 2\nz\r\n0\r\n\r\n",
             &rc, &got, err, sizeof(err));
  ASSERT_EQ(rc, 0);
  ASSERT_STR_EQ(got, "up 1\nx 2\nz");
  sl_free(got);
  fetch_from("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nm 1\n\n", &rc, &got, err, sizeof(err));
  ASSERT_EQ(rc, 0);
  ASSERT_STR_EQ(got, "m 1\n\n");
  sl_free(got);
  fetch_from("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nno\nthing\n", &rc, &got, err, sizeof(err));
  ASSERT_EQ(rc, SL_EUPSTREAM);
  ASSERT_STR_EQ(err, "GET /metrics answered HTTP 404: no thing ");
  fetch_from("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", &rc, &got, err, sizeof(err));
  ASSERT_EQ(rc, SL_EUPSTREAM);
  ASSERT_STR_EQ(err, "the connection closed before the answer ended");
  fetch_from("SSH-2.0-OpenSSH\r\n", &rc, &got, err, sizeof(err));
  ASSERT_EQ(rc, SL_EUPSTREAM);
  ASSERT(strncmp(err, "not an HTTP answer", 18) == 0);
}

static void test_fetch_refused_and_bad_urls(void) {
  int port, lfd = listener(&port);
  close(lfd); /* nothing listens there now */
  char url[64], err[512];
  char *got = NULL;
  size_t len;
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
  ASSERT_EQ(sl_top_fetch(url, 30000, &got, &len, err, sizeof(err)), SL_EUPSTREAM);
  char want[128];
  snprintf(want, sizeof(want), "cannot connect to 127.0.0.1:%d: Connection refused", port);
  ASSERT_STR_EQ(err, want);
  static const struct {
    const char *url, *want;
  } bad[] = {
      {"https://127.0.0.1:8080", "https://127.0.0.1:8080: only http:// URLs are supported"},
      {"http://:8080", "http://:8080: no host, or a host too long"},
      {"http://h:0", "http://h:0: the port must be a number from 1 to 65535"},
      {"http://h:80x", "http://h:80x: the port must be a number from 1 to 65535"},
      {"http://[::1", "http://[::1: no ']' closes the IPv6 address"},
      {"http://h:80/a b", "http://h:80/a b: the path is too long or holds a space or line break"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ASSERT_EQ(sl_top_fetch(bad[i].url, 1000, &got, &len, err, sizeof(err)), SL_EINVAL);
    ASSERT_STR_EQ(err, bad[i].want);
  }
  ASSERT_NULL(got);
}

int main(void) {
  SL_RUN(test_first_frame);
  SL_RUN(test_window_frame);
  SL_RUN(test_restart_voids_window);
  SL_RUN(test_past_last_bucket);
  SL_RUN(test_missing_families);
  SL_RUN(test_wrap);
  SL_RUN(test_fetch);
  SL_RUN(test_fetch_refused_and_bad_urls);
  return SL_TEST_EXIT();
}
