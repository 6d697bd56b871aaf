/* e2e_top.c: `sluice top` against the real daemon.
 *
 * A daemon with two in-process simulated engines serves a few streams
 * that end in different ways (finished, stopped by a guard, an engine
 * error), a 404, and one stream the engine holds open (x-sim-fault:
 * stall, with the idle timeout out of reach), so every compared figure is
 * known and stays put while the test looks.  Then:
 *  - `sluice top --once` prints a frame whose figures (streams, limit and
 *    readiness per endpoint, requests by outcome, guard firings,
 *    rejections by reason) equal a /metrics scrape the test reads itself,
 *    with its own few lines of parsing; the scrapes before and after must
 *    agree, or the comparison would prove nothing;
 *  - in a detached tmux session on a private socket, the live view draws
 *    the same figures while idle, then shows the stream a new held request
 *    puts on an endpoint, and 0 again once its client leaves; with the
 *    daemon stopped it says it cannot scrape it and keeps trying; q ends
 *    it with status 0 and no sanitizer report.
 * tmux missing: the tmux case is skipped with the reason (exit 77), but
 * fails under CI=true.  Every wait polls for a condition up to a generous
 * bound; nothing asserts a duration.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"
#define SKIP_CODE 77

static int start(e2e_proc_t *sl) {
  const char *cfg =
      "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"guards\":{\"stop\":{\"strings\":[\"<|end|>\"]}},"
      "\"endpoints\":[{\"sim\":{\"ttft_ms\":2,\"itl_ms\":1,\"itl_jitter\":0}},"
      "{\"sim\":{\"ttft_ms\":2,\"itl_ms\":1,\"itl_jitter\":0}}]}],"
      "\"upstream\":{\"idle_timeout_ms\":3600000}}";
  if (e2e_serve_start(sl, cfg, NULL) < 0) return -1;
  if (e2e_wait_ready(sl->port, 200, E2E_WAIT_MS) < 0) return -1;
  return e2e_wait_endpoints_ready(sl->port, 2, E2E_WAIT_MS) ? 0 : -1;
}

/* ---- /metrics, read by the test itself ---- */

/* The body of GET /metrics (free it), or NULL. */
static char *scrape(int port) {
  nu_resp_t r;
  if (e2e_http(port, "GET", "/metrics", NULL, NULL, &r, E2E_WAIT_MS) != 200) {
    nu_resp_free(&r);
    return NULL;
  }
  char *body = r.body;
  r.body = NULL;
  nu_resp_free(&r);
  return body;
}

/* The value of the series key (name{labels} as sluice writes it), or NaN. */
static double metric(const char *text, const char *key) {
  size_t k = strlen(key);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, key, k) == 0 && p[k] == ' ') return strtod(p + k + 1, NULL);
  return NAN;
}

/* The values of label `label` over the series of family prefix (e.g.
 * "sluice_requests_ended_total{pool=\"p\",outcome=\""), in order, into out[cap]
 * (each up to 63 bytes).  Returns how many. */
static int label_values(const char *text, const char *prefix, char out[][64], int cap) {
  int n = 0;
  size_t k = strlen(prefix);
  for (const char *p = text; p && *p && n < cap; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, prefix, k) == 0) {
      size_t len = strcspn(p + k, "\"");
      snprintf(out[n++], 64, "%.*s", (int)len, p + k);
    }
  return n;
}

/* Sum of the series of a family (lines starting with prefix). */
static double sum_of(const char *text, const char *prefix) {
  double s = 0;
  size_t k = strlen(prefix);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, prefix, k) == 0) s += strtod(strchr(p, ' ') + 1, NULL);
  return s;
}

/* Polls /metrics until the sum of family prefix is want.  Returns 1 then. */
static int wait_sum(int port, const char *prefix, double want) {
  int64_t until = nu_now_ms() + E2E_WAIT_MS;
  while (nu_now_ms() < until) {
    char *m = scrape(port);
    double v = m ? sum_of(m, prefix) : NAN;
    free(m);
    if (v == want) return 1;
    usleep(20000);
  }
  fprintf(stderr, "e2e_top: %s... never summed to %g\n", prefix, want);
  return 0;
}

/* ---- a frame of `sluice top`, read as the user reads it ---- */

/* The n-th blank-separated word of the line starting (after blanks) with
 * first word `first`, into w[cap].  Returns 1 if there is one. */
static int row_word(const char *frame, const char *first, int n, char *w, size_t cap) {
  size_t k = strlen(first);
  for (const char *p = frame; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
    const char *q = p + strspn(p, " ");
    if (strncmp(q, first, k) != 0 || (q[k] != ' ' && q[k] != '\n' && q[k] != '\0')) continue;
    for (int i = 0; *q && *q != '\n'; i++) {
      size_t len = strcspn(q, " \n");
      if (i == n) {
        snprintf(w, cap, "%.*s", (int)len, q);
        return 1;
      }
      q += len;
      q += strspn(q, " ");
    }
    return 0;
  }
  return 0;
}

/* In the list titled title ("requests", "guards", "rejections"; it may
 * wrap onto lines indented past the title), the figure after name into
 * w[cap].  Returns 1 if found. */
static int list_figure(const char *frame, const char *title, const char *name, char *w, size_t cap) {
  size_t k = strlen(title);
  const char *p = frame;
  for (; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
    const char *q = p + strspn(p, " ");
    if (strncmp(q, title, k) == 0 && q[k] == ' ') break;
  }
  if (p == NULL || *p == '\0') return 0;
  size_t indent = strspn(p, " ") + k + strspn(p + strspn(p, " ") + k, " ");
  for (int first = 1; p && *p; first = 0) {
    const char *eol = strchr(p, '\n');
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    if (!first && strspn(p, " ") < indent) return 0; /* the list ended */
    char line[1024];
    snprintf(line, sizeof(line), "%.*s ", (int)len, p);
    char want[128];
    snprintf(want, sizeof(want), " %.100s ", name);
    const char *at = strstr(line, want);
    if (at) {
      at += strlen(want);
      snprintf(w, cap, "%.*s", (int)strcspn(at, " "), at);
      return 1;
    }
    p = eol ? eol + 1 : NULL;
  }
  return 0;
}

/* What /metrics says a cell should read: an integer. */
static void as_text(double v, char *buf, size_t cap) { snprintf(buf, cap, "%.0f", v); }

/* Compares every stable figure of frame with the scrape m: per endpoint
 * readiness, streams and limit; requests by outcome; guard firings;
 * rejections by reason.  Returns how many differ (each printed), or -1 if
 * the scrape lacks a family. */
static int compare(const char *frame, const char *m, int *nfigures) {
  char names[32][64], key[256], want[64], got[64];
  int bad = 0, n = 0;
  int neps = label_values(m, "sluice_endpoint_limit{pool=\"p\",endpoint=\"", names, 32);
  if (neps != 2) return -1;
  for (int i = 0; i < neps; i++) {
    static const struct {
      const char *family;
      int col;
    } cols[] = {{"sluice_endpoint_ready", 1}, {"sluice_endpoint_streams", 2}, {"sluice_endpoint_limit", 3}};
    for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++) {
      snprintf(key, sizeof(key), "%s{pool=\"p\",endpoint=\"%.63s\"}", cols[c].family, names[i]);
      double v = metric(m, key);
      if (isnan(v)) return -1;
      if (c == 0) snprintf(want, sizeof(want), "%s", v > 0 ? "yes" : "no");
      else as_text(v, want, sizeof(want));
      if (!row_word(frame, names[i], cols[c].col, got, sizeof(got))) snprintf(got, sizeof(got), "(none)");
      if (strcmp(got, want) != 0) {
        fprintf(stderr, "e2e_top: %s: top shows %s, /metrics %s\n", key, got, want);
        bad++;
      }
      n++;
    }
  }
  static const struct {
    const char *title, *prefix, *family, *label;
  } lists[] = {
      {"requests", "sluice_requests_ended_total{pool=\"p\",outcome=\"", "sluice_requests_ended_total{pool=\"p\",", "outcome"},
      {"guards", "sluice_guard_firings_total{guard=\"", "sluice_guard_firings_total{", "guard"},
      {"rejections", "sluice_rejections_total{reason=\"", "sluice_rejections_total{", "reason"},
  };
  for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
    int k = label_values(m, lists[l].prefix, names, 32);
    if (k == 0) return -1;
    for (int i = 0; i < k; i++) {
      snprintf(key, sizeof(key), "%s%s=\"%.63s\"}", lists[l].family, lists[l].label, names[i]);
      as_text(metric(m, key), want, sizeof(want));
      if (!list_figure(frame, lists[l].title, names[i], got, sizeof(got))) snprintf(got, sizeof(got), "(none)");
      if (strcmp(got, want) != 0) {
        fprintf(stderr, "e2e_top: %s: top shows %s, /metrics %s\n", key, got, want);
        bad++;
      }
      n++;
    }
  }
  *nfigures = n;
  return bad;
}

/* ---- traffic ---- */

static int chat(int port, const char *headers) {
  char body[512];
  e2e_sse_t s;
  nu_resp_t head;
  int st = e2e_stream(port, CHAT, headers, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK,
                      E2E_WAIT_MS);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  return st;
}

/* Five streams that finish, one a guard stops, one an engine error ends,
 * one 404; then waits until all seven streams are counted by outcome. */
static int traffic(int port) {
  for (int i = 0; i < 5; i++)
    if (chat(port, "x-sim-tokens: 5\r\n") != 200) return -1;
  if (chat(port, "x-sim-script: Hello| <%7Cend%7C>| more\r\n") != 200) return -1;
  if (chat(port, "x-sim-tokens: 6\r\nx-sim-fault: error-event\r\nx-sim-fault-at: 2\r\n") != 200) return -1;
  nu_resp_t r;
  int st = e2e_http(port, "GET", "/nope", NULL, NULL, &r, E2E_WAIT_MS);
  nu_resp_free(&r);
  if (st != 404) return -1;
  return wait_sum(port, "sluice_requests_ended_total{", 7) ? 0 : -1;
}

/* A stream the engine holds after one token; returns its connection once
 * that token came and /metrics counts streams streams in flight. */
static nu_conn_t *hold(int port, e2e_sse_t *s, nu_resp_t *head, int streams) {
  char body[512];
  nu_conn_t *c = e2e_sse_open(port, CHAT, "x-sim-fault: stall\r\nx-sim-fault-at: 1\r\nx-sim-tokens: 50\r\n",
                              e2e_chat_body(body, sizeof(body), "m1", 1, NULL), head, s, CHUNK, E2E_WAIT_MS);
  if (c == NULL || head->status != 200) return NULL;
  s->stop_after_content = 1;
  if (e2e_sse_read(c, s, E2E_WAIT_MS) != 1) return NULL;
  if (!wait_sum(port, "sluice_endpoint_streams{", streams)) return NULL;
  return c;
}

/* The endpoint whose streams gauge reads 1 in scrape m, into ep[64]. */
static int busy_endpoint(const char *m, char ep[64]) {
  char names[32][64], key[256];
  int n = label_values(m, "sluice_endpoint_streams{pool=\"p\",endpoint=\"", names, 32);
  for (int i = 0; i < n; i++) {
    snprintf(key, sizeof(key), "sluice_endpoint_streams{pool=\"p\",endpoint=\"%.63s\"}", names[i]);
    if (metric(m, key) == 1) {
      snprintf(ep, 64, "%.63s", names[i]);
      return 1;
    }
  }
  return 0;
}

/* ---- 1: --once ---- */

static void test_once_matches_metrics(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start(&sl), 0);
  ASSERT_EQ(traffic(sl.port), 0);
  e2e_sse_t s;
  nu_resp_t head;
  nu_conn_t *held = hold(sl.port, &s, &head, 1);
  ASSERT_NOT_NULL(held);
  char *before = scrape(sl.port);
  ASSERT_NOT_NULL(before);
  char args[128], *out, *err;
  snprintf(args, sizeof(args), "--once --interval-ms 100 --url http://127.0.0.1:%d", sl.port);
  ASSERT_EQ(e2e_run_cli("top", args, "", &out, &err), 0);
  char *after = scrape(sl.port);
  ASSERT_NOT_NULL(after);
  fprintf(stderr, "%s", out);
  ASSERT_STR_EQ(err, "");
  int n = 0, n2 = 0;
  /* The figures did not move while top looked: the scrapes agree. */
  ASSERT_EQ(compare(out, before, &n), 0);
  ASSERT_EQ(compare(out, after, &n2), 0);
  ASSERT_GE(n, 6 + 9 + 6 + 11); /* 2 endpoints x 3, 9 outcomes, 6 guards, 11 reasons */
  /* And they are the ones the traffic made, so the comparison was not of zeros. */
  ASSERT_DBL_NEAR(metric(after, "sluice_requests_ended_total{pool=\"p\",outcome=\"ok\"}"), 5, 0);
  ASSERT_DBL_NEAR(metric(after, "sluice_requests_ended_total{pool=\"p\",outcome=\"guard\"}"), 1, 0);
  ASSERT_DBL_NEAR(metric(after, "sluice_requests_ended_total{pool=\"p\",outcome=\"upstream_error\"}"), 1, 0);
  ASSERT_DBL_NEAR(metric(after, "sluice_guard_firings_total{guard=\"stop\"}"), 1, 0);
  ASSERT_DBL_NEAR(metric(after, "sluice_rejections_total{reason=\"not_found\"}"), 1, 0);
  char ep[64], w[64];
  ASSERT(busy_endpoint(after, ep));
  ASSERT(row_word(out, ep, 2, w, sizeof(w)));
  ASSERT_STR_EQ(w, "1");
  ASSERT(row_word(out, "streams", 1, w, sizeof(w))); /* the header */
  ASSERT_STR_EQ(w, "1");
  ASSERT(strstr(out, "percentiles: window, the last") != NULL);
  free(out);
  free(err);
  free(before);
  free(after);
  e2e_conn_close(held);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  /* Unreachable with --once: exit 1, saying so. */
  ASSERT_EQ(e2e_stop(&sl), 0);
  snprintf(args, sizeof(args), "--once --url http://127.0.0.1:%d", sl.port);
  ASSERT_EQ(e2e_run_cli("top", args, "", &out, &err), 1);
  ASSERT_STR_EQ(out, "");
  ASSERT(strstr(err, "sluice top: cannot scrape") != NULL && strstr(err, "Connection refused") != NULL);
  free(out);
  free(err);
}

/* ---- 2: the live view in tmux ---- */

static char tmux_socket[64];

/* Runs `tmux -L <socket> <args>` (bounded by timeout(1)); its stdout into
 * *out when out is not NULL (free it).  Returns the exit status or -1. */
static int tmux(const char *args, char **out) {
  char cmd[2048], path[600];
  snprintf(path, sizeof(path), "%s/tmux.out", e2e_tmpdir());
  snprintf(cmd, sizeof(cmd), "env -u TMUX timeout 60 tmux -L %s %s > %s 2>&1", tmux_socket, args, path);
  int st = system(cmd);
  if (out) *out = e2e_read_file(path);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void tmux_kill(void) {
  if (tmux_socket[0]) tmux("kill-server", NULL);
}

/* Polls the pane until ok(frame) holds; the last capture goes into *frame
 * (free it).  Returns 1, or 0 at the bound (the capture is printed). */
static int pane_until(int (*ok)(const char *, const void *), const void *arg, char **frame) {
  int64_t until = nu_now_ms() + 2 * E2E_WAIT_MS;
  *frame = NULL;
  while (nu_now_ms() < until) {
    free(*frame);
    if (tmux("capture-pane -p -t top", frame) == 0 && *frame && ok(*frame, arg)) return 1;
    usleep(50000);
  }
  fprintf(stderr, "e2e_top: the pane never showed what was awaited; last capture:\n%s\n", *frame ? *frame : "");
  return 0;
}

/* The frame is drawn and agrees with the scrape arg: every figure. */
static int pane_matches(const char *frame, const void *arg) {
  int n = 0;
  return strstr(frame, "rejections") != NULL && compare(frame, arg, &n) == 0 && n >= 32;
}

/* Endpoint arg's row shows one stream and the header one in flight. */
static int pane_one_stream(const char *frame, const void *arg) {
  char w[64], h[64];
  return row_word(frame, arg, 2, w, sizeof(w)) && strcmp(w, "1") == 0 &&
         row_word(frame, "streams", 1, h, sizeof(h)) && strcmp(h, "1") == 0;
}

/* Every endpoint row shows 0 streams. */
static int pane_idle(const char *frame, const void *arg) {
  char w[64];
  const char *const *eps = arg;
  for (int i = 0; eps[i]; i++)
    if (!row_word(frame, eps[i], 2, w, sizeof(w)) || strcmp(w, "0") != 0) return 0;
  return 1;
}

/* The screen of a daemon that cannot be reached, after two failures. */
static int pane_down(const char *frame, const void *arg) {
  (void)arg;
  char w[64];
  return strstr(frame, "cannot scrape the daemon: cannot connect to 127.0.0.1:") != NULL &&
         strstr(frame, "Connection refused") != NULL && strstr(frame, "retrying every 200 ms (") != NULL &&
         row_word(frame, "retrying", 4, w, sizeof(w)) && atoi(w + 1) >= 2;
}

static void tmux_case(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start(&sl), 0);
  ASSERT_EQ(traffic(sl.port), 0);
  char done[600], errf[600], cmd[2048], *frame;
  snprintf(done, sizeof(done), "%s/top.status", e2e_tmpdir());
  snprintf(errf, sizeof(errf), "%s/top.stderr", e2e_tmpdir());
  /* timeout(1) bounds the view even if this program dies without killing
   * the server; the pane's shell writes top's exit status. */
  snprintf(cmd, sizeof(cmd),
           "new-session -d -s top -x 200 -y 50 \"timeout --foreground 600 '%s' top --url http://127.0.0.1:%d "
           "--interval-ms 200 2>'%s'; echo \\$? > '%s'\"",
           e2e_binary(), sl.port, errf, done);
  ASSERT_EQ(tmux(cmd, NULL), 0);
  char *m = scrape(sl.port);
  ASSERT_NOT_NULL(m);
  int shown = pane_until(pane_matches, m, &frame);
  if (shown) fprintf(stderr, "%s", frame);
  free(frame);
  ASSERT(shown);
  /* A stream appears on its endpoint, in the row and the header. */
  e2e_sse_t s;
  nu_resp_t head;
  nu_conn_t *held = hold(sl.port, &s, &head, 1);
  ASSERT_NOT_NULL(held);
  char ep[64];
  free(m);
  m = scrape(sl.port);
  ASSERT(m && busy_endpoint(m, ep));
  ASSERT(pane_until(pane_one_stream, ep, &frame));
  free(frame);
  /* And goes when its client does. */
  e2e_conn_close(held);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  char names[2][64];
  ASSERT_EQ(label_values(m, "sluice_endpoint_limit{pool=\"p\",endpoint=\"", names, 2), 2);
  const char *eps[] = {names[0], names[1], NULL};
  ASSERT(pane_until(pane_idle, eps, &frame));
  free(frame);
  free(m);
  /* The daemon goes away: the screen says so, and top keeps trying. */
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT(pane_until(pane_down, NULL, &frame));
  free(frame);
  /* q quits: top exits 0, the session and its server end. */
  ASSERT_EQ(tmux("send-keys -t top q", NULL), 0);
  int64_t until = nu_now_ms() + E2E_WAIT_MS;
  char *status = NULL;
  /* The shell creates the file, then writes the status and its newline. */
  while (nu_now_ms() < until) {
    status = e2e_read_file(done);
    if (status && strchr(status, '\n')) break;
    free(status);
    status = NULL;
    usleep(20000);
  }
  ASSERT_NOT_NULL(status);
  ASSERT_STR_EQ(status, "0\n");
  free(status);
  char *err = e2e_read_file(errf);
  ASSERT_NOT_NULL(err);
  ASSERT_STR_EQ(err, ""); /* no sanitizer report, no complaint */
  free(err);
}

static void test_tmux_live_view(void) {
  snprintf(tmux_socket, sizeof(tmux_socket), "sluice-e2e-top-%d", (int)getpid());
  tmux_case();
  tmux_kill();
}

/* 1 if tmux runs; else the reason is in why. */
static int have_tmux(char *why, size_t cap) {
  int st = system("tmux -V > /dev/null 2>&1");
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 1;
  snprintf(why, cap, "tmux is not installed (apt-get install tmux), so the live view is not checked in a terminal");
  return 0;
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 300);
  atexit(tmux_kill);
  E2E_RUN(test_once_matches_metrics);
  char why[256];
  if (have_tmux(why, sizeof(why))) {
    E2E_RUN(test_tmux_live_view);
  } else {
    const char *ci = getenv("CI");
    if (ci != NULL && strcmp(ci, "true") == 0) {
      fprintf(stderr, "e2e_top: %s\nCI=true: the tmux check must run in CI, so this is a failure\n", why);
      sl__tests_failed++;
    } else if (sl__tests_failed == 0) {
      printf("SKIP: e2e_top: %s\n", why);
      (void)SL_TEST_EXIT();
      return SKIP_CODE;
    }
  }
  return SL_TEST_EXIT();
}
