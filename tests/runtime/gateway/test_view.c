/* Tests for runtime/gateway/view: the instance view that lets any worker of
 * a supervisor answer /metrics and /health for the whole instance.
 *
 * The merge on texts made by hand: same name and label set summed (labels in
 * any order), the max families kept at their largest, a sample or family
 * only a later text has still written in its place, totals_only keeping
 * counters and histograms; promtool accepts what it makes.  Two gateways on
 * one loop as workers 1 and 2 of one view (the default simulated
 * configuration): a stream through worker 2 shows in worker 1's /metrics
 * and /health, which pass promtool and list both workers; after worker 2
 * closes and is retired, no total went down.  A retirement reports the
 * streams the dead worker had in flight.  A reader racing a writer on one
 * slot never sees a torn publication.  A worker's endpoint share: slots 3
 * over 2 workers is 2 each.  Waits poll with generous deadlines; no time
 * is asserted.
 */
#include <math.h>
#include <signal.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netutil.h"
#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/base/prom_parse.h"
#include "runtime/gateway/gateway.h"
#include "runtime/gateway/view.h"
#include "sluice.h"
#include "test.h"

/* ---- helpers ---- */

/* The value of sample name{labels} in an exposition, or NaN. */
static double prom_value(const char *text, size_t len, const char *name, const char *const *labels) {
  sl_prom_t p;
  char err[160];
  if (sl_prom_parse(text, len, &p, err, sizeof(err)) < 0) return NAN;
  double v = sl_prom_value(&p, name, labels);
  sl_prom_free(&p);
  return v;
}

/* 1 when promtool accepts text (or promtool is not installed: -1). */
static int promtool_ok(const char *text, size_t len) {
  if (system("command -v promtool >/dev/null 2>&1") != 0) return -1;
  char path[] = "/tmp/sl_test_view_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 0;
  if (write(fd, text, len) != (ssize_t)len) {
    close(fd);
    unlink(path);
    return 0;
  }
  close(fd);
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s' > '%s.out' 2>&1", path, path);
  int rc = system(cmd);
  if (rc != 0) {
    snprintf(cmd, sizeof(cmd), "cat '%s.out' >&2", path);
    if (system(cmd) != 0) fprintf(stderr, "(no promtool output)\n");
  }
  snprintf(cmd, sizeof(cmd), "%s.out", path);
  unlink(cmd);
  unlink(path);
  return rc == 0;
}

/* ---- the merge ---- */

static void test_merge_rules(void) {
  static const char a[] =
      "# HELP sluice_build_info 1, labelled with the version\n# TYPE sluice_build_info gauge\n"
      "sluice_build_info{version=\"1.0\"} 1\n"
      "# HELP sluice_uptime_seconds Seconds since open\n# TYPE sluice_uptime_seconds gauge\n"
      "sluice_uptime_seconds 10.5\n"
      "# HELP sluice_requests_total Requests\n# TYPE sluice_requests_total counter\n"
      "sluice_requests_total 3\n"
      "# HELP sluice_endpoint_streams Streams now\n# TYPE sluice_endpoint_streams gauge\n"
      "sluice_endpoint_streams{pool=\"p\",endpoint=\"a:1\"} 2\n"
      "# HELP sluice_endpoint_ready Ready\n# TYPE sluice_endpoint_ready gauge\n"
      "sluice_endpoint_ready{pool=\"p\",endpoint=\"a:1\"} 0\n"
      "# HELP sluice_lag_seconds Lag\n# TYPE sluice_lag_seconds histogram\n"
      "sluice_lag_seconds_bucket{le=\"0.1\"} 1\nsluice_lag_seconds_bucket{le=\"+Inf\"} 2\n"
      "sluice_lag_seconds_sum 0.25\nsluice_lag_seconds_count 2\n";
  static const char b[] =
      "# HELP sluice_build_info 1, labelled with the version\n# TYPE sluice_build_info gauge\n"
      "sluice_build_info{version=\"1.0\"} 1\n"
      "# HELP sluice_uptime_seconds Seconds since open\n# TYPE sluice_uptime_seconds gauge\n"
      "sluice_uptime_seconds 30\n"
      "# HELP sluice_requests_total Requests\n# TYPE sluice_requests_total counter\n"
      "sluice_requests_total 4\n"
      "# HELP sluice_endpoint_streams Streams now\n# TYPE sluice_endpoint_streams gauge\n"
      "sluice_endpoint_streams{endpoint=\"a:1\",pool=\"p\"} 5\n"
      "sluice_endpoint_streams{pool=\"p\",endpoint=\"b:2\"} 1\n"
      "# HELP sluice_endpoint_ready Ready\n# TYPE sluice_endpoint_ready gauge\n"
      "sluice_endpoint_ready{pool=\"p\",endpoint=\"a:1\"} 1\n"
      "# HELP sluice_lag_seconds Lag\n# TYPE sluice_lag_seconds histogram\n"
      "sluice_lag_seconds_bucket{le=\"0.1\"} 3\nsluice_lag_seconds_bucket{le=\"+Inf\"} 3\n"
      "sluice_lag_seconds_sum 0.125\nsluice_lag_seconds_count 3\n"
      "# HELP sluice_extra_total Only b has it\n# TYPE sluice_extra_total counter\n"
      "sluice_extra_total{who=\"b \\\"quoted\\\"\"} 7\n";
  const char *texts[] = {a, b};
  size_t lens[] = {sizeof(a) - 1, sizeof(b) - 1};
  size_t n;
  char *m = sl_view_merge(texts, lens, 2, 0, &n);
  ASSERT_EQ(n, strlen(m));
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_requests_total", NULL), 7, 0);
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_uptime_seconds", NULL), 30, 0); /* max */
  const char *v1[] = {"version", "1.0", NULL};
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_build_info", v1), 1, 0); /* max, not 2 */
  const char *ea[] = {"pool", "p", "endpoint", "a:1", NULL};
  const char *eb[] = {"pool", "p", "endpoint", "b:2", NULL};
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_endpoint_streams", ea), 7, 0); /* label order does not matter */
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_endpoint_streams", eb), 1, 0); /* only b's, still written */
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_endpoint_ready", ea), 1, 0);   /* max */
  const char *le[] = {"le", "0.1", NULL};
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_lag_seconds_bucket", le), 4, 0);
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_lag_seconds_sum", NULL), 0.375, 0);
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_lag_seconds_count", NULL), 5, 0);
  const char *q[] = {"who", "b \"quoted\"", NULL};
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_extra_total", q), 7, 0);
  /* HELP/TYPE once per family, in a's order, b's own family after. */
  const char *p1 = strstr(m, "# TYPE sluice_build_info gauge");
  const char *p2 = strstr(m, "# TYPE sluice_endpoint_streams gauge");
  const char *p3 = strstr(m, "# TYPE sluice_extra_total counter");
  ASSERT(p1 != NULL && p2 != NULL && p3 != NULL && p1 < p2 && p2 < p3);
  ASSERT_NULL(strstr(p2 + 1, "# TYPE sluice_endpoint_streams"));
  /* The sample only b has stays inside its family: before the next family. */
  const char *s_b = strstr(m, "sluice_endpoint_streams{pool=\"p\",endpoint=\"b:2\"} 1");
  ASSERT(s_b != NULL && s_b < strstr(m, "# HELP sluice_endpoint_ready"));
  int ok = promtool_ok(m, n);
  if (ok >= 0) ASSERT_EQ(ok, 1);
  sl_free(m);
  /* totals_only: counters and histograms, no gauges. */
  m = sl_view_merge(texts, lens, 2, 1, &n);
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_requests_total", NULL), 7, 0);
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_lag_seconds_count", NULL), 5, 0);
  ASSERT(isnan(prom_value(m, n, "sluice_uptime_seconds", NULL)));
  ASSERT_NULL(strstr(m, "sluice_endpoint_streams"));
  ASSERT_NULL(strstr(m, "sluice_build_info"));
  sl_free(m);
  /* A text that does not parse is left out with a comment. */
  static const char bad[] = "sluice_requests_total{ 3\n";
  const char *t2[] = {a, bad};
  size_t l2[] = {sizeof(a) - 1, sizeof(bad) - 1};
  m = sl_view_merge(t2, l2, 2, 0, &n);
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_requests_total", NULL), 3, 0);
  ASSERT_NOT_NULL(strstr(m, "does not parse"));
  sl_free(m);
}

/* ---- retirement, by hand ---- */

static void test_retire_reports_streams_lost(void) {
  int fd;
  char err[256];
  ASSERT_EQ(sl_view_create(2, &fd, err, sizeof(err)), 0);
  sl_view_t *w1, *w2;
  ASSERT_EQ(sl_view_attach(fd, 1, &w1, err, sizeof(err)), 0);
  ASSERT_EQ(sl_view_attach(fd, 2, &w2, err, sizeof(err)), 0);
  ASSERT_EQ(sl_view_attach(fd, 3, &w2, err, sizeof(err)), SL_EINVAL); /* w2 untouched */
  static const char t1[] = "# HELP x_total X\n# TYPE x_total counter\nx_total 5\n# HELP g G\n# TYPE g gauge\ng 2\n";
  static const char t2[] = "# HELP x_total X\n# TYPE x_total counter\nx_total 7\n# HELP g G\n# TYPE g gauge\ng 3\n";
  sl_counters_t c1, c2;
  memset(&c1, 0, sizeof(c1));
  memset(&c2, 0, sizeof(c2));
  c1.v[SL_C_STREAMS_STARTED] = 10;
  c1.v[SL_C_STREAMS_ACTIVE] = 1;
  c2.v[SL_C_STREAMS_STARTED] = 20;
  c2.v[SL_C_STREAMS_ACTIVE] = 3;
  ASSERT_EQ(sl_view_publish(w1, &c1, 1, t1, sizeof(t1) - 1), 0);
  ASSERT_EQ(sl_view_publish(w2, &c2, 3, t2, sizeof(t2) - 1), 0);
  sl_counters_t sum;
  sl_view_worker_t ws[2];
  ASSERT_EQ(sl_view_instance(w1, &sum, ws, 2), 2);
  ASSERT_UINT_EQ(sum.v[SL_C_STREAMS_STARTED], 30);
  ASSERT_UINT_EQ(sum.v[SL_C_STREAMS_ACTIVE], 4);
  ASSERT_EQ(ws[1].worker, 2);
  ASSERT_EQ(ws[1].streams_in_flight, 3);
  ASSERT_EQ(ws[1].pid, (int)getpid());
  sl_view_detach(w2); /* "dies" */
  uint64_t lost = 99;
  ASSERT_EQ(sl_view_retire(fd, 2, &lost), 0);
  ASSERT_UINT_EQ(lost, 3);
  ASSERT_EQ(sl_view_instance(w1, &sum, ws, 2), 2);
  ASSERT_UINT_EQ(sum.v[SL_C_STREAMS_STARTED], 30); /* the total stays */
  ASSERT_UINT_EQ(sum.v[SL_C_STREAMS_ACTIVE], 1);   /* the gauge went with it */
  ASSERT_EQ(ws[1].published, 0);
  size_t n;
  char *m = sl_view_metrics(w1, t1, sizeof(t1) - 1, &n);
  ASSERT_DBL_NEAR(prom_value(m, n, "x_total", NULL), 12, 0);
  ASSERT_DBL_NEAR(prom_value(m, n, "g", NULL), 2, 0);
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_workers", NULL), 2, 0);
  const char *u1[] = {"worker", "1", NULL}, *u2[] = {"worker", "2", NULL};
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_worker_up", u1), 1, 0);
  ASSERT_DBL_NEAR(prom_value(m, n, "sluice_worker_up", u2), 0, 0);
  sl_free(m);
  /* A replacement worker 2 starts from zero; a second death adds again. */
  ASSERT_EQ(sl_view_attach(fd, 2, &w2, err, sizeof(err)), 0);
  c2.v[SL_C_STREAMS_STARTED] = 2;
  c2.v[SL_C_STREAMS_ACTIVE] = 0;
  ASSERT_EQ(sl_view_publish(w2, &c2, 0, t2, sizeof(t2) - 1), 0);
  sl_view_detach(w2);
  ASSERT_EQ(sl_view_retire(fd, 2, &lost), 0);
  ASSERT_UINT_EQ(lost, 0);
  ASSERT_EQ(sl_view_instance(w1, &sum, ws, 2), 2);
  ASSERT_UINT_EQ(sum.v[SL_C_STREAMS_STARTED], 32);
  m = sl_view_metrics(w1, t1, sizeof(t1) - 1, &n);
  ASSERT_DBL_NEAR(prom_value(m, n, "x_total", NULL), 19, 0);
  sl_free(m);
  /* A worker never published: nothing moves. */
  ASSERT_EQ(sl_view_retire(fd, 2, &lost), 0);
  ASSERT_UINT_EQ(lost, 0);
  ASSERT_EQ(sl_view_retire(fd, 5, &lost), SL_EINVAL);
  ASSERT_EQ(sl_view_retire(-1, 1, &lost), SL_EINVAL);
  sl_view_detach(w1);
  close(fd);
}

/* A render over the slot's bound is not published; the merge says so. */
static void test_oversized_text_is_named(void) {
  int fd;
  char err[256];
  ASSERT_EQ(sl_view_create(2, &fd, err, sizeof(err)), 0);
  sl_view_t *w1, *w2;
  ASSERT_EQ(sl_view_attach(fd, 1, &w1, err, sizeof(err)), 0);
  ASSERT_EQ(sl_view_attach(fd, 2, &w2, err, sizeof(err)), 0);
  size_t big = SL_VIEW_TEXT_MAX + 10;
  char *t = sl_malloc(big);
  memset(t, '#', big);
  sl_counters_t c;
  memset(&c, 0, sizeof(c));
  c.v[SL_C_REQUESTS] = 4;
  ASSERT_EQ(sl_view_publish(w2, &c, 0, t, big), 0);
  sl_free(t);
  size_t n;
  char *m = sl_view_metrics(w1, "", 0, &n);
  ASSERT_NOT_NULL(strstr(m, "is over the view's"));
  ASSERT_EQ(promtool_ok(m, n) != 0, 1);
  sl_free(m);
  sl_counters_t sum;
  sl_view_worker_t ws[2];
  ASSERT_EQ(sl_view_instance(w1, &sum, ws, 2), 2);
  ASSERT_UINT_EQ(sum.v[SL_C_REQUESTS], 4); /* the counters array still counts */
  sl_view_detach(w1);
  sl_view_detach(w2);
  close(fd);
}

/* ---- the seqlock under a racing writer ---- */

static atomic_int stress_stop;

typedef struct {
  sl_view_t *v;
  char *text;
} stress_writer_t;

/* Publication k: every counter k, and a text whose every sample is k and
 * whose length varies with k. */
static size_t stress_text(char *buf, size_t cap, unsigned k) {
  size_t n = (size_t)snprintf(buf, cap, "# HELP s_total S\n# TYPE s_total counter\n");
  unsigned lines = 50 + k % 200;
  for (unsigned i = 0; i < lines && n + 64 < cap; i++) n += (size_t)snprintf(buf + n, cap - n, "s_total{i=\"%u\"} %u\n", i, k);
  return n;
}

static void stress_publish(sl_view_t *v, char *buf, unsigned k) {
  sl_counters_t c;
  for (int i = 0; i < SL_C__COUNT; i++) c.v[i] = k;
  size_t n = stress_text(buf, 65536, k);
  sl_view_publish(v, &c, (int)k, buf, n);
}

static void *stress_writer(void *arg) {
  stress_writer_t *w = arg;
  for (unsigned k = 1; !atomic_load(&stress_stop); k++) stress_publish(w->v, w->text, k);
  return NULL;
}

/* Reads until `reads` consistent answers were checked; returns the number
 * of torn ones seen (must be 0). */
static int stress_read(sl_view_t *r, int reads) {
  int torn = 0;
  for (int it = 0; it < reads; it++) {
    sl_counters_t sum;
    sl_view_worker_t ws[2];
    if (sl_view_instance(r, &sum, ws, 2) < 0) continue;
    for (int i = 1; i < SL_C__COUNT; i++) torn += sum.v[i] != sum.v[0];
    if (ws[0].published && (uint64_t)ws[0].streams_in_flight != sum.v[0]) torn++;
    size_t n;
    char *m = sl_view_metrics(r, "", 0, &n);
    sl_prom_t p;
    char err[160];
    if (sl_prom_parse(m, n, &p, err, sizeof(err)) < 0) {
      torn++;
    } else {
      double first = NAN;
      int count = 0;
      for (int i = 0; i < p.n; i++) {
        if (strcmp(p.s[i].name, "s_total") != 0) continue;
        if (count++ == 0) first = p.s[i].value;
        else torn += p.s[i].value != first;
      }
      if (count > 0) torn += count != 50 + (int)((unsigned)first % 200);
      sl_prom_free(&p);
    }
    sl_free(m);
  }
  return torn;
}

static void test_seqlock_threads(void) {
  int fd;
  char err[256];
  ASSERT_EQ(sl_view_create(2, &fd, err, sizeof(err)), 0);
  sl_view_t *w, *r;
  ASSERT_EQ(sl_view_attach(fd, 1, &w, err, sizeof(err)), 0);
  ASSERT_EQ(sl_view_attach(fd, 2, &r, err, sizeof(err)), 0);
  stress_writer_t sw = {w, sl_malloc(65536)};
  atomic_store(&stress_stop, 0);
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, stress_writer, &sw), 0);
  int torn = stress_read(r, 400);
  atomic_store(&stress_stop, 1);
  pthread_join(th, NULL);
  sl_free(sw.text);
  ASSERT_EQ(torn, 0);
  sl_view_detach(w);
  sl_view_detach(r);
  close(fd);
}

/* The same across processes: a forked writer on the MAP_SHARED view. */
static void test_seqlock_processes(void) {
  int fd;
  char err[256];
  ASSERT_EQ(sl_view_create(2, &fd, err, sizeof(err)), 0);
  sl_view_t *r;
  ASSERT_EQ(sl_view_attach(fd, 2, &r, err, sizeof(err)), 0);
  int go[2];
  ASSERT_EQ(pipe(go), 0);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    close(go[1]);
    sl_view_t *w;
    if (sl_view_attach(fd, 1, &w, err, sizeof(err)) < 0) _exit(2);
    static char buf[65536];
    /* Publishes until the parent closes the pipe. */
    struct pollfd pf = {go[0], POLLIN, 0};
    for (unsigned k = 1;; k++) {
      stress_publish(w, buf, k);
      if (k % 64 == 0 && poll(&pf, 1, 0) > 0) break;
    }
    _exit(0);
  }
  close(go[0]);
  /* Wait for the child's first publication, then race it. */
  int64_t deadline = nu_now_ms() + nu_scale_ms(30000);
  sl_counters_t sum;
  sl_view_worker_t ws[2];
  while (nu_now_ms() < deadline && !(sl_view_instance(r, &sum, ws, 2) >= 0 && ws[0].published)) usleep(1000);
  int torn = stress_read(r, 400);
  int published = ws[0].published;
  close(go[1]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_EQ(published, 1);
  ASSERT_EQ(torn, 0);
  ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(ws[0].pid, (int)pid);
  sl_view_detach(r);
  close(fd);
}

/* ---- the endpoint share ---- */

static void on_closed_flag(void *ud) { *(int *)ud = 1; }

static void test_endpoint_share(void) {
  static const char cfg[] =
      "{\"pools\": [{\"name\": \"p\", \"models\": [\"m\"], \"slots\": 3,"
      " \"endpoints\": [{\"sim\": {\"seed\": 1}}, {\"sim\": {\"seed\": 2}, \"slots\": 8}]}]}";
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[1024];
  FILE *devnull = fopen("/dev/null", "w");
  int nworkers[] = {2, 4, 1, 0};
  int want[][2] = {{2, 4}, {1, 2}, {3, 8}, {3, 8}}; /* slots of the two endpoints */
  for (int k = 0; k < 4; k++) {
    sl_gateway_options_t opt = {.config_json = cfg, .listen = "127.0.0.1:0", .log = devnull,
                                .worker = 1, .nworkers = nworkers[k], .view_fd = -1};
    sl_gateway_t *gw;
    ASSERT_EQ(sl_gateway_open(&gw, &loop, &opt, err, sizeof(err)), 0);
    ASSERT_EQ(gw->reg.neps, 2);
    for (int e = 0; e < 2; e++) {
      const sl_endpoint_t *ep = &gw->reg.eps[e];
      ASSERT_EQ(ep->slots, want[k][e]);
      ASSERT_EQ(ep->limit, want[k][e]);
      ASSERT_EQ(ep->slots_configured, e == 0 ? 3 : 8);
      int n = nworkers[k] > 1 ? nworkers[k] : 1, conf = e == 0 ? 3 : 8;
      ASSERT_EQ(ep->limit_min, 1);
      ASSERT_EQ(ep->limit_max, (4 * conf + n - 1) / n); /* the default bound, 4 x slots, shared too */
    }
    int closed = 0;
    sl_gateway_close(gw, on_closed_flag, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(closed, 1);
  }
  fclose(devnull);
  ASSERT_EQ(uv_loop_close(&loop), 0);
}

/* ---- two gateways as workers 1 and 2 of one view ---- */

typedef struct {
  int fd;
  uv_loop_t loop;
  uv_async_t cmd;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  sl_gateway_t *gw[2];
  int port[2];
  int open_rc;
  char err[1024];
  int opened;
  atomic_int close_two;  /* the command: close gateway 2 (1), close everything (2) */
  atomic_int closed[2];  /* on_closed ran */
  FILE *log;
} pair_t;

static void pair_on_closed(void *ud) { atomic_store((atomic_int *)ud, 1); }

static void pair_cmd(uv_async_t *a) {
  pair_t *p = a->data;
  int what = atomic_load(&p->close_two);
  pthread_mutex_lock(&p->mu);
  if (p->gw[1] != NULL) {
    sl_gateway_close(p->gw[1], pair_on_closed, &p->closed[1]);
    p->gw[1] = NULL;
  }
  if (what == 2 && p->gw[0] != NULL) {
    sl_gateway_close(p->gw[0], pair_on_closed, &p->closed[0]);
    p->gw[0] = NULL;
    uv_close((uv_handle_t *)&p->cmd, NULL);
  }
  pthread_mutex_unlock(&p->mu);
}

static void *pair_thread(void *arg) {
  pair_t *p = arg;
  uv_loop_init(&p->loop);
  uv_async_init(&p->loop, &p->cmd, pair_cmd);
  p->cmd.data = p;
  int rc = 0;
  for (int i = 0; i < 2 && rc == 0; i++) {
    sl_gateway_options_t opt = {.listen = "127.0.0.1:0", .log = p->log, .worker = i + 1, .nworkers = 2,
                                .view_fd = p->fd};
    rc = sl_gateway_open(&p->gw[i], &p->loop, &opt, p->err, sizeof(p->err));
    if (rc == 0) p->port[i] = sl_gateway_port(p->gw[i]);
    else p->gw[i] = NULL;
  }
  pthread_mutex_lock(&p->mu);
  p->open_rc = rc;
  p->opened = 1;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  if (rc < 0) {
    if (p->gw[0]) sl_gateway_close(p->gw[0], NULL, NULL);
    uv_close((uv_handle_t *)&p->cmd, NULL);
  }
  uv_run(&p->loop, UV_RUN_DEFAULT);
  return NULL;
}

/* GET path on port: the status, and the body (malloc'd) in *body. */
static int http_get(int port, const char *path, char **body, size_t *len) {
  *body = NULL;
  *len = 0;
  int fd = nu_connect(port);
  if (fd < 0) return 0;
  char req[256];
  snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
  nu_send_str(fd, req);
  nu_conn_t c;
  nu_conn_init(&c, fd);
  nu_resp_t r;
  memset(&r, 0, sizeof(r));
  int rc = nu_read_response(&c, &r, nu_scale_ms(10000));
  close(fd);
  *body = r.body;
  *len = r.body_len;
  return rc == 0 ? r.status : 0;
}

/* Streams one chat completion through port; returns 1 when it ended in [DONE]. */
static int stream_one(int port) {
  int fd = nu_connect(port);
  if (fd < 0) return 0;
  static const char body[] =
      "{\"model\": \"sim-small\", \"stream\": true, \"max_tokens\": 6,"
      " \"messages\": [{\"role\": \"user\", \"content\": \"Say hello.\"}]}";
  char req[512];
  snprintf(req, sizeof(req),
           "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
           sizeof(body) - 1, body);
  nu_send_str(fd, req);
  nu_conn_t c;
  nu_conn_init(&c, fd);
  nu_resp_t r;
  memset(&r, 0, sizeof(r));
  int rc = nu_read_response(&c, &r, nu_scale_ms(30000));
  close(fd);
  int ok = rc == 0 && r.status == 200 && r.body && strstr(r.body, "data: [DONE]") != NULL;
  if (!ok) fprintf(stderr, "stream: status %d: %s\n", r.status, r.body ? r.body : "");
  nu_resp_free(&r);
  return ok;
}

/* A number at "key": in a JSON text (the first), or -1. */
static double json_num(const char *json, const char *key) {
  char k[96];
  snprintf(k, sizeof(k), "\"%s\":", key);
  const char *p = json ? strstr(json, k) : NULL;
  return p ? strtod(p + strlen(k), NULL) : -1;
}

static void test_two_workers_one_instance(void) {
  static pair_t p;
  memset(&p, 0, sizeof(p));
  char err[256];
  ASSERT_EQ(sl_view_create(2, &p.fd, err, sizeof(err)), 0);
  p.log = fopen("/dev/null", "w");
  pthread_mutex_init(&p.mu, NULL);
  pthread_cond_init(&p.cv, NULL);
  ASSERT_EQ(pthread_create(&p.thread, NULL, pair_thread, &p), 0);
  pthread_mutex_lock(&p.mu);
  while (!p.opened) pthread_cond_wait(&p.cv, &p.mu);
  pthread_mutex_unlock(&p.mu);
  if (p.open_rc < 0) {
    pthread_join(p.thread, NULL);
    SL__FAIL("open: %s", p.err);
  }
  char *body;
  size_t len;
  /* Worker 2 serves once an endpoint passed its probe. */
  int64_t deadline = nu_now_ms() + nu_scale_ms(30000);
  int status = 0;
  while (nu_now_ms() < deadline && status != 200) {
    status = http_get(p.port[1], "/ready", &body, &len);
    free(body);
    if (status != 200) usleep(10000);
  }
  ASSERT_EQ(status, 200);
  ASSERT_EQ(stream_one(p.port[1]), 1);
  /* Worker 1 answers for the instance once worker 2 published the end. */
  double completed = -1, started_m = -1;
  deadline = nu_now_ms() + nu_scale_ms(30000);
  while (nu_now_ms() < deadline) {
    status = http_get(p.port[0], "/health", &body, &len);
    completed = json_num(body, "streams_completed");
    free(body);
    if (status != 0 && completed >= 1) break;
    usleep(20000);
  }
  ASSERT_GE(completed, 1);
  deadline = nu_now_ms() + nu_scale_ms(30000);
  while (nu_now_ms() < deadline) {
    status = http_get(p.port[0], "/metrics", &body, &len);
    started_m = body ? prom_value(body, len, "sluice_streams_started_total", NULL) : NAN;
    if (status == 200 && started_m >= 1) break;
    free(body);
    body = NULL;
    usleep(20000);
  }
  ASSERT_EQ(status, 200);
  ASSERT_NOT_NULL(body);
  ASSERT_GE(started_m, 1);
  ASSERT_DBL_NEAR(prom_value(body, len, "sluice_workers", NULL), 2, 0);
  const char *u1[] = {"worker", "1", NULL}, *u2[] = {"worker", "2", NULL};
  ASSERT_DBL_NEAR(prom_value(body, len, "sluice_worker_up", u1), 1, 0);
  ASSERT_DBL_NEAR(prom_value(body, len, "sluice_worker_up", u2), 1, 0);
  double ended_before = 0;
  {
    /* Outcomes summed over both workers' pool series. */
    sl_prom_t pp;
    char perr[160];
    ASSERT_EQ(sl_prom_parse(body, len, &pp, perr, sizeof(perr)), 0);
    for (int i = 0; i < pp.n; i++)
      if (strcmp(pp.s[i].name, "sluice_requests_ended_total") == 0) ended_before += pp.s[i].value;
    int types = 0;
    for (int f = 0; f < pp.nfam; f++) types += strcmp(pp.fam[f].name, "sluice_streams_started_total") == 0;
    sl_prom_free(&pp);
    ASSERT_EQ(types, 1); /* HELP/TYPE once */
  }
  ASSERT_GE(ended_before, 1);
  int ok = promtool_ok(body, len);
  free(body);
  if (ok >= 0) ASSERT_EQ(ok, 1);
  /* /health: who answered, both workers, the scope of what is the worker's own. */
  status = http_get(p.port[0], "/health", &body, &len);
  ASSERT_NOT_NULL(body);
  ASSERT_DBL_NEAR(json_num(body, "worker"), 1, 0);
  ASSERT_NOT_NULL(strstr(body, "\"counters_scope\":\"instance\""));
  ASSERT_NOT_NULL(strstr(body, "\"scope\":\"worker\""));
  ASSERT_NOT_NULL(strstr(body, "\"workers\":[{\"index\":1,"));
  ASSERT_NOT_NULL(strstr(body, "{\"index\":2,\"published\":true,\"up\":true"));
  ASSERT_DBL_NEAR(json_num(body, "slots"), 8, 0);             /* 16 over 2 workers */
  ASSERT_DBL_NEAR(json_num(body, "slots_configured"), 16, 0);
  double started_h = json_num(body, "streams_started");
  free(body);
  ASSERT_GE(started_h, 1);
  /* Worker 2 goes; the supervisor retires it; nothing went down. */
  atomic_store(&p.close_two, 1);
  uv_async_send(&p.cmd);
  deadline = nu_now_ms() + nu_scale_ms(30000);
  int closed = 0;
  while (nu_now_ms() < deadline && !(closed = atomic_load(&p.closed[1]))) usleep(5000);
  ASSERT_EQ(closed, 1);
  uint64_t lost = 99;
  sl_counters_t before;
  {
    sl_view_t *v;
    ASSERT_EQ(sl_view_attach(p.fd, 2, &v, err, sizeof(err)), 0);
    sl_view_worker_t ws[2];
    ASSERT_EQ(sl_view_instance(v, &before, ws, 2), 2);
    sl_view_detach(v);
    ASSERT_EQ(sl_view_retire(p.fd, 2, &lost), 0);
    ASSERT_UINT_EQ(lost, ws[1].streams_in_flight); /* what its last publication had in flight (0: it closed) */
  }
  status = http_get(p.port[0], "/health", &body, &len);
  ASSERT_NOT_NULL(body);
  ASSERT_GE(json_num(body, "streams_started"), (double)before.v[SL_C_STREAMS_STARTED]);
  ASSERT_GE(json_num(body, "streams_completed"), (double)before.v[SL_C_STREAMS_COMPLETED]);
  ASSERT_GE(json_num(body, "streams_started"), started_h);
  ASSERT_NOT_NULL(strstr(body, "{\"index\":2,\"published\":false"));
  free(body);
  status = http_get(p.port[0], "/metrics", &body, &len);
  ASSERT_NOT_NULL(body);
  ASSERT_GE(prom_value(body, len, "sluice_streams_started_total", NULL), started_m);
  double ended_after = 0;
  {
    sl_prom_t pp;
    char perr[160];
    ASSERT_EQ(sl_prom_parse(body, len, &pp, perr, sizeof(perr)), 0);
    for (int i = 0; i < pp.n; i++)
      if (strcmp(pp.s[i].name, "sluice_requests_ended_total") == 0) ended_after += pp.s[i].value;
    sl_prom_free(&pp);
  }
  ASSERT_GE(ended_after, ended_before);
  ASSERT_DBL_NEAR(prom_value(body, len, "sluice_worker_up", u2), 0, 0);
  ok = promtool_ok(body, len);
  free(body);
  if (ok >= 0) ASSERT_EQ(ok, 1);
  /* Close everything; the loop must hold nothing. */
  atomic_store(&p.close_two, 2);
  uv_async_send(&p.cmd);
  pthread_join(p.thread, NULL);
  ASSERT_EQ(atomic_load(&p.closed[0]), 1);
  ASSERT_EQ(uv_loop_close(&p.loop), 0);
  pthread_cond_destroy(&p.cv);
  pthread_mutex_destroy(&p.mu);
  fclose(p.log);
  close(p.fd);
}

int main(void) {
  sl_init();
  signal(SIGPIPE, SIG_IGN);
  SL_RUN(test_merge_rules);
  SL_RUN(test_retire_reports_streams_lost);
  SL_RUN(test_oversized_text_is_named);
  SL_RUN(test_seqlock_threads);
  SL_RUN(test_seqlock_processes);
  SL_RUN(test_endpoint_share);
  SL_RUN(test_two_workers_one_instance);
  return SL_TEST_EXIT();
}
