/* e2e_metrics.c: GET /metrics and /health's verdict, through the real binary.
 *
 *  - promtool (Debian's prometheus package) accepts a live scrape;
 *  - our own reading of the exposition: every histogram's buckets are
 *    cumulative and end in _count, _count is the number of streams sent,
 *    requests by outcome add up, and the unlabelled counters equal /health's;
 *  - a real Prometheus server, started here with a scrape config naming
 *    sluice, returns the TTFT histogram through its query API;
 *  - a stall of the event loop, made through attach, lands in the loop-lag
 *    histogram;
 *  - /health says healthy, degraded or unhealthy, with reasons.
 * promtool and prometheus come from scripts/setup; without them the program
 * exits 77 (skipped), except under CI=true, where that is a failure.
 * Nothing here asserts a duration: every wait is for an event.
 */
#include <ctype.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"
#define STALL "x-sim-fault: stall\r\nx-sim-fault-at: 1\r\nx-sim-tokens: 50\r\n"

static char admin_path[512];

/* Exits 77 (or fails under CI=true) when a tool is missing. */
static void need_tool(const char *tool) {
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
  if (system(cmd) == 0) return;
  const char *ci = getenv("CI");
  fprintf(stderr, "e2e_metrics: %s is not installed (scripts/setup --real-engine installs Debian's prometheus)\n", tool);
  if (ci && strcmp(ci, "true") == 0) {
    fprintf(stderr, "CI=true: the metrics tests must run in CI, so this is a failure\n");
    exit(1);
  }
  exit(77);
}

/* sluice in front of the engines on ports[0..n), one pool "p" of model m1;
 * metrics_extra is more members of the "metrics" object (or NULL). */
static int start(e2e_proc_t *sl, const int *ports, int n, const char *metrics_extra) {
  char eps[512] = "", cfg[2048];
  for (int i = 0; i < n; i++) {
    size_t k = strlen(eps);
    snprintf(eps + k, sizeof(eps) - k, "%s{\"url\":\"http://127.0.0.1:%d\"}", i ? "," : "", ports[i]);
  }
  snprintf(admin_path, sizeof(admin_path), "%s/admin.sock", e2e_tmpdir());
  snprintf(cfg, sizeof(cfg),
           "{\"admin_socket\":\"%s\",\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"slots\":8,"
           "\"limits\":{\"adaptive\":false},\"guards\":{\"stop\":{\"strings\":[\"STOPHERE\"]}},\"endpoints\":[%s]}],"
           "\"health\":{\"interval_ms\":100},\"upstream\":{\"idle_timeout_ms\":600000},"
           "\"metrics\":{\"lag_interval_ms\":50%s}}",
           admin_path, eps, metrics_extra ? metrics_extra : "");
  if (e2e_serve_start(sl, cfg, NULL) < 0) return -1;
  return e2e_wait_endpoints_ready(sl->port, n, E2E_WAIT_MS) == 1 ? 0 : -1;
}

/* GET /metrics: the body (free it), or NULL. */
static char *scrape(int port) {
  nu_resp_t r;
  int st = e2e_http(port, "GET", "/metrics", NULL, NULL, &r, E2E_WAIT_MS);
  if (st != 200) {
    fprintf(stderr, "GET /metrics: %d\n", st);
    nu_resp_free(&r);
    return NULL;
  }
  char *text = strndup(r.body ? r.body : "", r.body_len);
  nu_resp_free(&r);
  return text;
}

/* The sum of the samples named `name` (exactly) whose label text contains
 * every one of the NULL-ended `want` strings (such as "outcome=\"ok\"");
 * NAN when there is none. */
static double metric(const char *text, const char *name, const char *const *want) {
  size_t nl = strlen(name);
  double sum = 0;
  int found = 0;
  for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
    if (*line == '#' || strncmp(line, name, nl) != 0 || (line[nl] != '{' && line[nl] != ' ')) continue;
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    char buf[1024];
    if (len >= sizeof(buf)) continue;
    memcpy(buf, line, len);
    buf[len] = '\0';
    char *sp = strrchr(buf, ' ');
    if (sp == NULL) continue;
    *sp = '\0';
    int ok = 1;
    for (int i = 0; want && want[i]; i++) ok &= strstr(buf + nl, want[i]) != NULL;
    if (!ok) continue;
    sum += strcmp(sp + 1, "+Inf") == 0 ? INFINITY : strtod(sp + 1, NULL);
    found = 1;
  }
  return found ? sum : NAN;
}

/* Checks every histogram series in the text: buckets in ascending le,
 * counts never falling, the +Inf bucket equal to _count.  Returns the
 * number of series checked, or -1 after printing the first fault. */
static int check_histograms(const char *text) {
  int series = 0;
  char cur[512] = "";  /* name{labels without le} of the series being read */
  double last_le = -INFINITY, last = -1, inf = -1;
  for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
    const char *end = strchr(line, '\n');
    if (end == NULL) break;
    char buf[1024];
    size_t len = (size_t)(end - line);
    if (*line == '#' || len >= sizeof(buf)) continue;
    memcpy(buf, line, len);
    buf[len] = '\0';
    char *sp = strrchr(buf, ' ');
    if (sp == NULL) continue;
    double v = strtod(sp + 1, NULL);
    *sp = '\0';
    char *b = strstr(buf, "_bucket{");
    if (b != NULL) {
      char *le = strstr(b, "le=\"");
      if (le == NULL) return fprintf(stderr, "a bucket without le: %s\n", buf), -1;
      double lev = strncmp(le + 4, "+Inf", 4) == 0 ? INFINITY : strtod(le + 4, NULL);
      char key[512];
      snprintf(key, sizeof(key), "%.*s%s", (int)(le - buf), buf, strchr(le + 4, '"') + 1);
      if (strcmp(key, cur) != 0) {
        snprintf(cur, sizeof(cur), "%s", key);
        last_le = -INFINITY;
        last = -1;
        series++;
      }
      if (!(lev > last_le)) return fprintf(stderr, "%s: le out of order\n", buf), -1;
      if (v < last) return fprintf(stderr, "%s: %g after %g: not cumulative\n", buf, v, last), -1;
      last_le = lev;
      last = v;
      if (isinf(lev)) inf = v;
      continue;
    }
    char *c = strstr(buf, "_count");
    if (c != NULL && cur[0] != '\0' && strncmp(buf, cur, (size_t)(c - buf)) == 0) {
      if (v != inf) return fprintf(stderr, "%s is %g but its +Inf bucket %g\n", buf, v, inf), -1;
      cur[0] = '\0';
    }
  }
  return series;
}

/* One whole streamed completion; returns 0 when it ended as a clean stream. */
static int one_stream(int port, const char *headers) {
  e2e_sse_t s;
  nu_resp_t head;
  char body[512];
  int st = e2e_stream(port, CHAT, headers, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK,
                      E2E_WAIT_MS);
  int ok = st == 200 && s.read_rc == 0 && s.ndone == 1;
  e2e_sse_free(&s);
  nu_resp_free(&head);
  return ok ? 0 : -1;
}

/* A held stream (one token, then the engine stalls), cancelled by closing
 * its connection; returns once sluice counted the cancel. */
static int cancelled_stream(int port) {
  int64_t c0 = e2e_counter(port, "client_cancels");
  e2e_sse_t s;
  nu_resp_t head;
  char body[512];
  nu_conn_t *c = e2e_sse_open(port, CHAT, STALL, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK,
                              E2E_WAIT_MS);
  if (c == NULL) return -1;
  s.stop_after_content = 1;
  int rc = e2e_sse_read(c, &s, E2E_WAIT_MS) == 1 ? 0 : -1;
  e2e_conn_close(c);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  if (rc == 0 && e2e_wait_counter(port, "client_cancels", c0 + 1, E2E_WAIT_MS) < c0 + 1) rc = -1;
  return rc;
}

/* A figure from a scrape equals b (NaN, no such sample, never does). */
#define ASSERT_M(a, b) ASSERT_DBL_NEAR(a, b, 0)
#define WANT(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- tests ---- */

/* promtool's linter accepts what a live sluice serves, after streams of
 * every kind have filled the families. */
static void test_promtool_accepts_a_live_scrape(void) {
  e2e_proc_t sim, sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "2", "--itl-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  ASSERT_EQ(start(&sl, &sim.port, 1, NULL), 0);
  for (int i = 0; i < 3; i++) ASSERT_EQ(one_stream(sl.port, "x-sim-tokens: 5\r\n"), 0);
  ASSERT_EQ(cancelled_stream(sl.port), 0);
  char *text = scrape(sl.port);
  ASSERT_NOT_NULL(text);
  char path[600], cmd[1400];
  snprintf(path, sizeof(path), "%s/scrape.txt", e2e_tmpdir());
  FILE *f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
  fputs(text, f);
  fclose(f);
  snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s' > '%s.out' 2>&1", path, path);
  int rc = system(cmd);
  if (rc != 0) {
    snprintf(cmd, sizeof(cmd), "%s.out", path);
    char *out = e2e_read_file(cmd);
    fprintf(stderr, "promtool check metrics:\n%s\n", out ? out : "(no output)");
    free(out);
  }
  ASSERT_EQ(rc, 0);
  /* The content-type the format asks for. */
  nu_resp_t r;
  ASSERT_EQ(e2e_http(sl.port, "GET", "/metrics", NULL, NULL, &r, E2E_WAIT_MS), 200);
  const char *ct = nu_header(&r, "content-type");
  ASSERT(ct != NULL && strstr(ct, "text/plain; version=0.0.4") == ct);
  nu_resp_free(&r);
  free(text);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* What the histograms and counters say adds up: N streams sent, N counted,
 * each in its outcome; buckets cumulative; the flat counters equal
 * /health's; a guard's stop is in its family. */
static void test_the_numbers_add_up(void) {
  e2e_proc_t sim[2], sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "2", "--itl-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim[0], sim_args), 0);
  ASSERT_EQ(e2e_sim_start(&sim[1], sim_args), 0);
  int ports[2] = {sim[0].port, sim[1].port};
  ASSERT_EQ(start(&sl, ports, 2, NULL), 0);
  enum { N = 7 };
  for (int i = 0; i < N; i++) ASSERT_EQ(one_stream(sl.port, "x-sim-tokens: 6\r\n"), 0);
  ASSERT_EQ(cancelled_stream(sl.port), 0);
  /* A stream the stop guard ends: the engine's text holds the stop string. */
  ASSERT_EQ(one_stream(sl.port, "x-sim-script: one |two |STOP|HERE| three\r\n"), 0);
  /* The stream-end bookkeeping is done before the next request is read, but
   * wait for the counter that comes last to be sure. */
  ASSERT_EQ(e2e_wait_counter(sl.port, "streams_completed", N + 2, E2E_WAIT_MS), N + 2);

  char *text = scrape(sl.port);
  ASSERT_NOT_NULL(text);
  int series = check_histograms(text);
  ASSERT(series >= 2 * 2 + 3 + 1); /* TTFT and TPOT per endpoint, three per pool, the loop's lag */
  /* Every stream reached its first token: N + 2 TTFT observations over the
   * two endpoints, and N + 2 request durations in the pool. */
  ASSERT_M(metric(text, "sluice_time_to_first_token_seconds_count", NULL), N + 2);
  ASSERT_M(metric(text, "sluice_request_duration_seconds_count", WANT("pool=\"p\"")), N + 2);
  ASSERT_M(metric(text, "sluice_request_output_tokens_count", NULL), N + 2);
  ASSERT_M(metric(text, "sluice_queue_wait_seconds_count", NULL), N + 2);
  /* By outcome. */
  ASSERT_M(metric(text, "sluice_requests_ended_total", WANT("outcome=\"ok\"")), N);
  ASSERT_M(metric(text, "sluice_requests_ended_total", WANT("outcome=\"cancelled\"")), 1);
  ASSERT_M(metric(text, "sluice_requests_ended_total", WANT("outcome=\"guard\"")), 1);
  ASSERT_M(metric(text, "sluice_requests_ended_total", NULL), N + 2);
  ASSERT_M(metric(text, "sluice_guard_firings_total", WANT("guard=\"stop\"")), 1);
  /* Output tokens: N streams of 6 tokens and more; the sum is what the
   * engines said they sent for the streams that ran to their end. */
  ASSERT(metric(text, "sluice_request_output_tokens_sum", NULL) >= N * 6);
  /* Per endpoint: both took streams, none in flight now, the limit is the
   * fixed one, both ready. */
  ASSERT_M(metric(text, "sluice_endpoint_streams", NULL), 0);
  ASSERT_M(metric(text, "sluice_endpoint_limit", NULL), 16);
  ASSERT_M(metric(text, "sluice_endpoint_ready", NULL), 2);
  ASSERT_M(metric(text, "sluice_endpoint_requests_total", NULL), N + 2);
  /* The flat counters equal /health's, read after the scrape (nothing runs
   * between them: no stream is in flight). */
  cJSON *h = e2e_get_json(sl.port, "/health", NULL);
  ASSERT_NOT_NULL(h);
  const cJSON *counters = cJSON_GetObjectItemCaseSensitive(h, "counters");
  int compared = 0;
  static const char *const same[] = {"streams_started", "streams_completed", "tokens_received", "tokens_written",
                                     "client_cancels", "upstream_retries", "upstream_read_pauses", "chunk_pool_reused", "requests",
                                     "generations_live", "watchdog_stalls", "guard_stop", NULL};
  for (int i = 0; same[i]; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(counters, same[i]);
    ASSERT(cJSON_IsNumber(v));
    char name[96];
    int gauge = strcmp(same[i], "generations_live") == 0;
    snprintf(name, sizeof(name), "sluice_%s%s", same[i], gauge ? "" : "_total");
    double m = metric(text, name, NULL);
    if (strcmp(same[i], "requests") == 0) m += 1; /* the /health request itself came after the scrape */
    if (strcmp(same[i], "chunk_pool_reused") == 0 && v->valuedouble >= m) {
      /* The health probes (every 100 ms) read into pool chunks too, and
       * one may land between the scrape and /health on a slow run
       * (valgrind): this total may only have grown. */
      compared++;
      continue;
    }
    if (m != v->valuedouble) fprintf(stderr, "%s: /metrics %g, /health %g\n", same[i], m, v->valuedouble);
    ASSERT_EQ(m, v->valuedouble);
    compared++;
  }
  ASSERT_EQ(compared, 12);
  ASSERT(metric(text, "sluice_tokens_received_total", NULL) >= N * 6);
  cJSON_Delete(h);
  free(text);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim[0]), 0);
  ASSERT_EQ(e2e_stop(&sim[1]), 0);
}

/* Every query of docs/grafana-dashboard.json: Prometheus accepts it (valid
 * PromQL, status "success"), and every sluice_ name in it is a family the
 * scrape declares.  Returns the number of queries checked, or -1. */
static int check_dashboard(int prom_port, const char *scrape_text) {
  char *doc = e2e_read_file(SL_TEST_SOURCE_DIR "/../docs/grafana-dashboard.json");
  cJSON *d = doc ? cJSON_Parse(doc) : NULL;
  free(doc);
  if (d == NULL) return fprintf(stderr, "docs/grafana-dashboard.json: not JSON\n"), -1;
  int n = 0, bad = 0;
  const cJSON *p;
  cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(d, "panels")) {
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(p, "targets")) {
      const cJSON *e = cJSON_GetObjectItemCaseSensitive(t, "expr");
      if (!cJSON_IsString(e)) continue;
      /* $job is the dashboard's variable: any job here. */
      char expr[1024] = "", q[3200] = "/api/v1/query?query=";
      const char *s = e->valuestring;
      for (size_t k = 0; *s && k + 3 < sizeof(expr); s++) {
        if (strncmp(s, "$job", 4) == 0) {
          memcpy(expr + k, ".+", 2);
          k += 2;
          s += 3;
        } else {
          expr[k++] = *s;
        }
        expr[k] = '\0';
      }
      size_t k = strlen(q);
      for (const unsigned char *c = (const unsigned char *)expr; *c && k + 4 < sizeof(q); c++) {
        if (isalnum(*c) || strchr("_.-~", *c)) q[k++] = (char)*c;
        else k += (size_t)snprintf(q + k, sizeof(q) - k, "%%%02X", *c);
      }
      q[k] = '\0';
      int st;
      cJSON *r = e2e_get_json(prom_port, q, &st);
      const cJSON *status = cJSON_GetObjectItemCaseSensitive(r, "status");
      if (st != 200 || !cJSON_IsString(status) || strcmp(status->valuestring, "success") != 0) {
        fprintf(stderr, "the dashboard's query %s: HTTP %d\n", e->valuestring, st);
        bad++;
      }
      cJSON_Delete(r);
      /* Its names. */
      for (const char *m = strstr(expr, "sluice_"); m; m = strstr(m + 1, "sluice_")) {
        char name[128], decl[160];
        size_t j = 0;
        while ((isalnum((unsigned char)m[j]) || m[j] == '_') && j + 1 < sizeof(name)) name[j] = m[j], j++;
        name[j] = '\0';
        if (j > 7 && strcmp(name + j - 7, "_bucket") == 0) name[j - 7] = '\0';
        snprintf(decl, sizeof(decl), "# TYPE %s ", name);
        if (strstr(scrape_text, decl) == NULL) {
          fprintf(stderr, "the dashboard names %s, which /metrics does not serve\n", name);
          bad++;
        }
      }
      n++;
    }
  }
  cJSON_Delete(d);
  return bad ? -1 : n;
}

/* A real Prometheus server scrapes sluice and returns the TTFT histogram
 * through its query API, with the count of streams sent. */
static void test_prometheus_scrapes_the_ttft_histogram(void) {
  e2e_proc_t sim, sl, prom;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "2", "--itl-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  ASSERT_EQ(start(&sl, &sim.port, 1, NULL), 0);
  enum { N = 5 };
  for (int i = 0; i < N; i++) ASSERT_EQ(one_stream(sl.port, "x-sim-tokens: 4\r\n"), 0);

  char yml[600], data[600], cfgarg[700], dataarg[700];
  snprintf(yml, sizeof(yml), "%s/prometheus.yml", e2e_tmpdir());
  snprintf(data, sizeof(data), "%s/prometheus-data", e2e_tmpdir());
  FILE *f = fopen(yml, "w");
  ASSERT_NOT_NULL(f);
  fprintf(f,
          "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
          "scrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: ['127.0.0.1:%d']\n",
          sl.port);
  fclose(f);
  snprintf(cfgarg, sizeof(cfgarg), "--config.file=%s", yml);
  snprintf(dataarg, sizeof(dataarg), "--storage.tsdb.path=%s", data);
  const char *const argv[] = {"/usr/bin/env", "prometheus", cfgarg, dataarg, "--web.listen-address=127.0.0.1:0",
                              "--log.level=info", NULL};
  /* It logs the port it got: msg="Listening on" address=127.0.0.1:PORT */
  ASSERT_EQ(e2e_proc_start(&prom, "prometheus", argv, "msg=\"Listening on\" address=", E2E_WAIT_MS), 0);

  /* Poll the query API until the scrape is in: the TTFT histogram's count
   * for sluice's endpoint, and its +Inf bucket. */
  int64_t deadline = nu_now_ms() + 2 * E2E_WAIT_MS;
  double got = -1;
  char q[256];
  snprintf(q, sizeof(q), "/api/v1/query?query=sluice_time_to_first_token_seconds_count");
  while (nu_now_ms() < deadline) {
    cJSON *j = e2e_get_json(prom.port, q, NULL);
    if (j != NULL) {
      const cJSON *res = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "data"), "result");
      const cJSON *first = cJSON_GetArrayItem(res, 0);
      const cJSON *metric_ = cJSON_GetObjectItemCaseSensitive(first, "metric");
      const cJSON *val = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(first, "value"), 1);
      const cJSON *ep = cJSON_GetObjectItemCaseSensitive(metric_, "endpoint");
      if (cJSON_IsString(val) && cJSON_IsString(ep)) {
        char want[64];
        snprintf(want, sizeof(want), "127.0.0.1:%d", sim.port);
        ASSERT_STR_EQ(ep->valuestring, want);
        ASSERT_STR_EQ(cJSON_GetObjectItemCaseSensitive(metric_, "pool")->valuestring, "p");
        got = strtod(val->valuestring, NULL);
      }
      cJSON_Delete(j);
      if (got >= 0) break;
    }
    usleep(200 * 1000);
  }
  ASSERT_EQ(got, N);
  /* The buckets are there too, usable by histogram_quantile. */
  cJSON *j = e2e_get_json(prom.port,
                          "/api/v1/query?query=histogram_quantile(0.5,%20sum%20by%20(le)%20"
                          "(sluice_time_to_first_token_seconds_bucket))",
                          NULL);
  ASSERT_NOT_NULL(j);
  const cJSON *res = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "data"), "result");
  const cJSON *val = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(res, 0), "value"), 1);
  ASSERT(cJSON_IsString(val));
  double p50 = strtod(val->valuestring, NULL);
  ASSERT(p50 > 0 && p50 <= 10); /* a quantile of TTFTs (seconds), inside the buckets */
  cJSON_Delete(j);
  /* The Grafana dashboard's queries are valid and name served families. */
  char *text = scrape(sl.port);
  ASSERT_NOT_NULL(text);
  ASSERT(check_dashboard(prom.port, text) >= 20);
  free(text);
  ASSERT_EQ(e2e_stop(&prom), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* The sum of a histogram's observations above `le`, from a scrape. */
static double above(const char *text, const char *name, const char *le) {
  char count[128], bucket[128], lel[64];
  snprintf(count, sizeof(count), "%s_count", name);
  snprintf(bucket, sizeof(bucket), "%s_bucket", name);
  snprintf(lel, sizeof(lel), "le=\"%s\"", le);
  return metric(text, count, NULL) - metric(text, bucket, WANT(lel));
}

/* The event loop stalled by an attach session (a blocking sleep in the
 * daemon's own thread) shows as a lag observation of at least the stall. */
static void test_a_loop_stall_shows_in_the_lag_histogram(void) {
  e2e_proc_t sim, sl;
  const char *const sim_args[] = {"--model", "m1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  ASSERT_EQ(start(&sl, &sim.port, 1, NULL), 0);
  ASSERT_EQ(e2e_log_wait(&sl, "admin socket on", E2E_WAIT_MS, NULL, 0), 1);
  char *before = scrape(sl.port);
  ASSERT_NOT_NULL(before);
  double n0 = above(before, "sluice_event_loop_lag_seconds", "1");
  ASSERT(n0 >= 0);
  char *out = NULL, *err = NULL;
  /* os.execute blocks the loop's thread for the whole sleep: no Lua
   * instruction runs meanwhile, so the session's budget does not stop it. */
  int rc = e2e_run_cli("attach", admin_path, "os.execute('sleep 1.5')\n", &out, &err);
  if (rc != 0) fprintf(stderr, "attach: %d\n%s\n%s\n", rc, out ? out : "", err ? err : "");
  ASSERT_EQ(rc, 0);
  free(out);
  free(err);
  /* The lag timer runs late once the loop is back; wait for its sample. */
  int64_t deadline = nu_now_ms() + E2E_WAIT_MS;
  double n1 = n0;
  while (n1 <= n0 && nu_now_ms() < deadline) {
    char *t = scrape(sl.port);
    ASSERT_NOT_NULL(t);
    n1 = above(t, "sluice_event_loop_lag_seconds", "1");
    free(t);
    if (n1 <= n0) usleep(20 * 1000);
  }
  ASSERT(n1 >= n0 + 1);
  free(before);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* /health's verdict: healthy with every endpoint ready; degraded (200) with
 * the reason when one of two is down; unhealthy (503) when none is. */
static void test_health_says_healthy_degraded_unhealthy(void) {
  e2e_proc_t sim[2], sl;
  const char *const sim_args[] = {"--model", "m1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim[0], sim_args), 0);
  ASSERT_EQ(e2e_sim_start(&sim[1], sim_args), 0);
  int ports[2] = {sim[0].port, sim[1].port};
  ASSERT_EQ(start(&sl, ports, 2, NULL), 0);
  int st;
  cJSON *h = e2e_get_json(sl.port, "/health", &st);
  ASSERT_NOT_NULL(h);
  ASSERT_EQ(st, 200);
  ASSERT_STR_EQ(cJSON_GetObjectItemCaseSensitive(h, "status")->valuestring, "healthy");
  ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(h, "reasons")), 0);
  cJSON_Delete(h);

  ASSERT_EQ(e2e_stop(&sim[1]), 0);
  /* Wait until the health checks notice. */
  int64_t deadline = nu_now_ms() + E2E_WAIT_MS;
  char status[32] = "";
  while (nu_now_ms() < deadline) {
    h = e2e_get_json(sl.port, "/health", &st);
    ASSERT_NOT_NULL(h);
    snprintf(status, sizeof(status), "%s", cJSON_GetObjectItemCaseSensitive(h, "status")->valuestring);
    if (strcmp(status, "degraded") == 0) break;
    cJSON_Delete(h);
    h = NULL;
    usleep(50 * 1000);
  }
  ASSERT_NOT_NULL(h);
  ASSERT_EQ(st, 200);
  const cJSON *r0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(h, "reasons"), 0);
  ASSERT(cJSON_IsString(r0) && strcmp(r0->valuestring, "1 of 2 endpoints are not ready") == 0);
  cJSON_Delete(h);

  ASSERT_EQ(e2e_stop(&sim[0]), 0);
  deadline = nu_now_ms() + E2E_WAIT_MS;
  h = NULL;
  while (nu_now_ms() < deadline) {
    h = e2e_get_json(sl.port, "/health", &st);
    ASSERT_NOT_NULL(h);
    if (strcmp(cJSON_GetObjectItemCaseSensitive(h, "status")->valuestring, "unhealthy") == 0) break;
    cJSON_Delete(h);
    h = NULL;
    usleep(50 * 1000);
  }
  ASSERT_NOT_NULL(h);
  ASSERT_EQ(st, 503);
  r0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(h, "reasons"), 0);
  ASSERT(cJSON_IsString(r0) && strcmp(r0->valuestring, "no endpoint is ready") == 0);
  cJSON_Delete(h);
  /* /metrics says the same per endpoint. */
  char *text = scrape(sl.port);
  ASSERT_NOT_NULL(text);
  ASSERT_M(metric(text, "sluice_endpoint_ready", NULL), 0);
  free(text);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* metrics.enabled false: the families are still served (a dashboard keeps
 * its series), but nothing is observed into the histograms. */
static void test_metrics_off_keeps_the_families_and_observes_nothing(void) {
  e2e_proc_t sim, sl;
  const char *const sim_args[] = {"--model", "m1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  ASSERT_EQ(start(&sl, &sim.port, 1, ",\"enabled\":false"), 0);
  ASSERT_EQ(one_stream(sl.port, "x-sim-tokens: 3\r\n"), 0);
  ASSERT_EQ(e2e_wait_counter(sl.port, "streams_completed", 1, E2E_WAIT_MS), 1);
  char *text = scrape(sl.port);
  ASSERT_NOT_NULL(text);
  ASSERT_M(metric(text, "sluice_time_to_first_token_seconds_count", NULL), 0);
  ASSERT_M(metric(text, "sluice_requests_ended_total", NULL), 0);
  ASSERT_M(metric(text, "sluice_streams_completed_total", NULL), 1); /* counters are always kept */
  free(text);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* Past metrics.max_endpoints, endpoints are summed into one "other" series:
 * two endpoints with a cap of one give one named series and "other". */
static void test_endpoints_past_the_cap_are_other(void) {
  e2e_proc_t sim[2], sl;
  const char *const sim_args[] = {"--model", "m1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim[0], sim_args), 0);
  ASSERT_EQ(e2e_sim_start(&sim[1], sim_args), 0);
  int ports[2] = {sim[0].port, sim[1].port};
  ASSERT_EQ(start(&sl, ports, 2, ",\"max_endpoints\":1"), 0);
  for (int i = 0; i < 4; i++) ASSERT_EQ(one_stream(sl.port, "x-sim-tokens: 2\r\n"), 0);
  ASSERT_EQ(e2e_wait_counter(sl.port, "streams_completed", 4, E2E_WAIT_MS), 4);
  char *text = scrape(sl.port);
  ASSERT_NOT_NULL(text);
  char first[64], second[64];
  snprintf(first, sizeof(first), "endpoint=\"127.0.0.1:%d\"", sim[0].port);
  snprintf(second, sizeof(second), "endpoint=\"127.0.0.1:%d\"", sim[1].port);
  ASSERT(strstr(text, first) != NULL);
  ASSERT(strstr(text, second) == NULL);
  ASSERT_M(metric(text, "sluice_endpoint_requests_total", WANT("endpoint=\"other\"")) +
               metric(text, "sluice_endpoint_requests_total", WANT(first)),
           4);
  ASSERT_M(metric(text, "sluice_endpoint_ready", WANT("endpoint=\"other\"")), 1);
  ASSERT_M(metric(text, "sluice_time_to_first_token_seconds_count", NULL), 4);
  ASSERT(check_histograms(text) > 0);
  free(text);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim[0]), 0);
  ASSERT_EQ(e2e_stop(&sim[1]), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 600);
  need_tool("promtool");
  need_tool("prometheus");
  E2E_RUN(test_the_numbers_add_up);
  E2E_RUN(test_endpoints_past_the_cap_are_other);
  E2E_RUN(test_health_says_healthy_degraded_unhealthy);
  E2E_RUN(test_metrics_off_keeps_the_families_and_observes_nothing);
  E2E_RUN(test_a_loop_stall_shows_in_the_lag_histogram);
  E2E_RUN(test_promtool_accepts_a_live_scrape);
  E2E_RUN(test_prometheus_scrapes_the_ttft_histogram);
  return SL_TEST_EXIT();
}
