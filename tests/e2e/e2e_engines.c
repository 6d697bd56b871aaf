/* e2e_engines.c: local engines under sluice's care (docs/engines.md,
 * "Local engines"), end to end.
 *
 * The managed engine is the sluice binary itself as `sluice sim-engine`,
 * listening on the port sluice gives it ({port}); the models are two small
 * files of a catalog the test writes, their SHA-256 computed with `sluice
 * hash-key`.  It checks:
 *  - two managed engines (m1, m2) start, both models are served and listed
 *    as loaded, the engines' output reaches sluice's log with the
 *    endpoint's name, and SIGTERM ends sluice with status 0 and no engine
 *    process left; SIGKILL to sluice kills its engines too;
 *  - an engine killed (SIGKILL) mid-stream: that stream ends with one error
 *    event and no [DONE], a stream on the other engine completes whole, the
 *    engine is restarted (narrated, restarts = 1 in /health) and serves the
 *    next request;
 *  - a swap pool with max_running 1: requests m1, m2, m1, m2 all complete,
 *    engines_swapped counts, never more than one engine process runs, and
 *    a stream that waits for an engine to start gets heartbeats first;
 *    an idle engine stops after idle_timeout_ms; an engine not ready in
 *    start_timeout_ms is restarted;
 *  - a catalog file whose digest does not match refuses the start (exit
 *    status 2, the file named).
 * Nothing here waits on time: every wait is for a log line, a counter or a
 * state in /health, under a generous bound.
 */
#include "test.h"
#include "e2e/harness.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"

/* ---- the catalog and the configuration ---- */

static char g_catalog[4096]; /* the "catalog" object of the configurations */

/* Writes dir/name with text (no trailing newline) and puts its SHA-256 hex
 * digest into hex[65].  Returns 0 or -1. */
static int write_model(const char *name, const char *text, char hex[65]) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/%s", e2e_tmpdir(), name);
  FILE *f = fopen(path, "w");
  if (f == NULL) return -1;
  fputs(text, f);
  fclose(f);
  char *out = NULL, *err = NULL;
  int st = e2e_run_cli("hash-key", "", text, &out, &err);
  int rc = st == 0 && out != NULL && strncmp(out, "sha256:", 7) == 0 && strlen(out) >= 7 + 64 ? 0 : -1;
  if (rc == 0) {
    memcpy(hex, out + 7, 64);
    hex[64] = '\0';
  }
  free(out);
  free(err);
  return rc;
}

/* The catalog of two model files, m1 and m2; bad_digest spoils m2's. */
static int make_catalog(int bad_digest) {
  char h1[65], h2[65];
  if (write_model("m1.bin", "weights of model one", h1) < 0 || write_model("m2.bin", "weights of model two", h2) < 0)
    return -1;
  if (bad_digest) h2[0] = h2[0] == '0' ? '1' : '0';
  snprintf(g_catalog, sizeof(g_catalog),
           "\"catalog\":{\"dir\":\"%s\",\"models\":[{\"name\":\"m1\",\"file\":\"m1.bin\",\"sha256\":\"%s\"},"
           "{\"name\":\"m2\",\"file\":\"m2.bin\",\"sha256\":\"%s\"}]}",
           e2e_tmpdir(), h1, h2);
  return 0;
}

/* A managed endpoint serving model, as `sluice sim-engine` with extra
 * arguments (a JSON list tail such as ",\"--start-delay-ms\",\"500\"" or ""). */
static char *managed_ep(char *buf, size_t cap, const char *model, const char *extra) {
  snprintf(buf, cap,
           "{\"models\":[\"%s\"],\"managed\":{\"model\":\"%s\",\"stop_grace_ms\":5000,"
           "\"command\":[\"%s\",\"sim-engine\",\"--listen\",\"127.0.0.1:{port}\",\"--model\",\"%s\","
           "\"--ttft-ms\",\"5\",\"--itl-ms\",\"2\"%s]}}",
           model, model, e2e_binary(), model, extra);
  return buf;
}

/* The configuration: one pool of m1 and m2 on two managed engines, with
 * pool_extra (",\"swap\":{...}" or "") added to the pool. */
static char *config(char *buf, size_t cap, const char *m1_extra, const char *m2_extra, const char *pool_extra) {
  char e1[1024], e2[1024];
  snprintf(buf, cap,
           "{\"heartbeat_ms\":100,%s,\"health\":{\"interval_ms\":200},"
           "\"pools\":[{\"name\":\"local\",\"models\":[\"m1\",\"m2\"]%s,\"endpoints\":[%s,%s]}]}",
           g_catalog, pool_extra, managed_ep(e1, sizeof(e1), "m1", m1_extra),
           managed_ep(e2, sizeof(e2), "m2", m2_extra));
  return buf;
}

/* ---- /health of the managed engines ---- */

/* Endpoint i's "managed" number or string field: a number into *num, a
 * string into str.  Returns 0, or -1 when /health or the field is missing. */
static int managed_field(int port, int i, const char *field, double *num, char *str, size_t cap) {
  cJSON *h = e2e_get_json(port, "/health", NULL);
  const cJSON *pool = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(h, "pools"), 0);
  const cJSON *ep = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pool, "endpoints"), i);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ep, "managed"), field);
  int rc = -1;
  if (cJSON_IsNumber(v) && num) {
    *num = v->valuedouble;
    rc = 0;
  } else if (cJSON_IsString(v) && str) {
    snprintf(str, cap, "%s", v->valuestring);
    rc = 0;
  }
  cJSON_Delete(h);
  return rc;
}

static int managed_pid(int port, int i) {
  double pid = -1;
  return managed_field(port, i, "pid", &pid, NULL, 0) == 0 ? (int)pid : -1;
}

/* Waits until endpoint i's engine is in state want.  Returns 1, or 0 at the
 * bound (after saying what it was). */
static int wait_state(int port, int i, const char *want) {
  int64_t deadline = nu_now_ms() + nu_scale_ms(E2E_WAIT_MS);
  char st[32] = "";
  for (;;) {
    if (managed_field(port, i, "state", NULL, st, sizeof(st)) == 0 && strcmp(st, want) == 0) return 1;
    if (nu_now_ms() >= deadline) break;
    usleep(10 * 1000);
  }
  fprintf(stderr, "e2e: engine %d is \"%s\", not \"%s\"\n", i, st, want);
  return 0;
}

/* Engine processes alive now, by /health (pid != 0). */
static int engines_alive(int port) {
  return (managed_pid(port, 0) > 0) + (managed_pid(port, 1) > 0);
}

static int gone(int pid) { return kill(pid, 0) == -1 && errno == ESRCH; }

/* One whole stream for model: 200 and role, n tokens, finish, [DONE]. */
static int whole_stream(int port, const char *model, int n, long *heartbeats) {
  char body[512], hdrs[64];
  snprintf(hdrs, sizeof(hdrs), "x-sim-tokens: %d\r\n", n);
  nu_resp_t head;
  e2e_sse_t s;
  int st = e2e_stream(port, CHAT, hdrs, e2e_chat_body(body, sizeof(body), model, 1, NULL), &head, &s, CHUNK,
                      E2E_WAIT_MS);
  int ok = st == 200 && e2e_sse_kinds_are(&s, 1, n, 0);
  if (st != 200) fprintf(stderr, "e2e: %s answered %d: %s\n", model, st, head.body ? head.body : "");
  if (heartbeats) *heartbeats = s.comments_before_data;
  e2e_sse_free(&s);
  nu_resp_free(&head);
  return ok;
}

/* A stream for model with hdrs, read until its first n tokens came.
 * Returns its connection (head and s filled in), or NULL after saying why. */
static nu_conn_t *begun_stream(int port, const char *model, const char *hdrs, long n, nu_resp_t *head, e2e_sse_t *s) {
  char body[512];
  nu_conn_t *c = e2e_sse_open(port, CHAT, hdrs, e2e_chat_body(body, sizeof(body), model, 1, NULL), head, s, CHUNK,
                              E2E_WAIT_MS);
  if (c == NULL) return NULL;
  s->stop_after_content = n;
  if (head->status == 200 && e2e_sse_read(c, s, E2E_WAIT_MS) == 1) return c;
  fprintf(stderr, "e2e: the %s stream: status %d, %ld tokens\n", model, head->status, s->ncontent);
  e2e_conn_close(c);
  return NULL;
}

/* ---- two engines: start, serve, stop with sluice ---- */

/* sluice with two managed engines (m1, m2), both running and ready.
 * Returns 0, or -1 after saying why. */
static int start_two(e2e_proc_t *sl) {
  char cfg[8192];
  if (make_catalog(0) < 0 || e2e_serve_start(sl, config(cfg, sizeof(cfg), "", "", ""), NULL) < 0) return -1;
  if (!e2e_wait_endpoints_ready(sl->port, 2, E2E_WAIT_MS)) return -1;
  return wait_state(sl->port, 0, "running") && wait_state(sl->port, 1, "running") ? 0 : -1;
}

static void test_two_engines_start_serve_and_stop(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_two(&sl), 0);
  ASSERT_EQ(e2e_counter(sl.port, "engines_running"), 2);
  ASSERT(whole_stream(sl.port, "m1", 4, NULL));
  ASSERT(whole_stream(sl.port, "m2", 4, NULL));
  /* The engines' own output, line by line, under the endpoint's name. */
  ASSERT(e2e_log_wait(&sl, "sim-engine listening on 127.0.0.1:", E2E_WAIT_MS, NULL, 0));
  char line[512];
  ASSERT(e2e_log_wait(&sl, "engine 127.0.0.1:", E2E_WAIT_MS, line, sizeof(line)));
  /* Both models loaded, each by its own engine. */
  int st;
  cJSON *models = e2e_get_json(sl.port, "/v1/models", &st);
  ASSERT_EQ(st, 200);
  const cJSON *m;
  int loaded = 0;
  cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(models, "data")) loaded += cJSON_IsTrue(
      cJSON_GetObjectItemCaseSensitive(m, "loaded"));
  cJSON_Delete(models);
  ASSERT_EQ(loaded, 2);
  int p1 = managed_pid(sl.port, 0), p2 = managed_pid(sl.port, 1);
  ASSERT_GT(p1, 0);
  ASSERT_GT(p2, 0);
  ASSERT_NE(p1, p2);
  ASSERT_EQ(e2e_stop(&sl), 0); /* SIGTERM: exit 0, clean log */
  ASSERT_EQ(e2e_log_count(&sl, ") stopped: exit status 0"), 2); /* each engine exited on its SIGTERM */
  ASSERT(gone(p1));
  ASSERT(gone(p2));
}

/* Waits until pid is gone or a zombie (dead, not yet reaped by whoever
 * inherited it).  Returns 1, or 0 at the bound. */
static int wait_dead(int pid) {
  int64_t deadline = nu_now_ms() + nu_scale_ms(E2E_WAIT_MS);
  for (;;) {
    if (gone(pid)) return 1;
    char path[64], buf[256] = "";
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
      size_t n = fread(buf, 1, sizeof(buf) - 1, f);
      buf[n] = '\0';
      fclose(f);
      const char *close_paren = strrchr(buf, ')');
      if (close_paren != NULL && close_paren[1] == ' ' && (close_paren[2] == 'Z' || close_paren[2] == 'X')) return 1;
    }
    if (nu_now_ms() >= deadline) break;
    usleep(10 * 1000);
  }
  fprintf(stderr, "e2e: engine pid %d still runs\n", pid);
  return 0;
}

/* sluice killed outright: its engines die too (engine-exec's death signal). */
static void test_sigkill_takes_engines_along(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_two(&sl), 0);
  int p1 = managed_pid(sl.port, 0), p2 = managed_pid(sl.port, 1);
  ASSERT_GT(p1, 0);
  ASSERT_GT(p2, 0);
  ASSERT_EQ(e2e_kill(&sl), 0);
  ASSERT(wait_dead(p1));
  ASSERT(wait_dead(p2));
}

/* ---- an engine killed mid-stream ---- */

static void test_engine_killed_mid_stream(void) {
  e2e_proc_t sl;
  ASSERT_EQ(start_two(&sl), 0);
  int victim = managed_pid(sl.port, 0);
  ASSERT_GT(victim, 0);

  /* A on m1: endless, held after two tokens.  B on m2: 40 tokens, begun. */
  nu_resp_t ha, hb;
  e2e_sse_t a, b;
  nu_conn_t *ca = begun_stream(sl.port, "m1", "x-sim-tokens: 1000000\r\nx-sim-itl-ms: 20\r\n", 2, &ha, &a);
  ASSERT_NOT_NULL(ca);
  nu_conn_t *cb = begun_stream(sl.port, "m2", "x-sim-tokens: 40\r\nx-sim-itl-ms: 5\r\n", 1, &hb, &b);
  ASSERT_NOT_NULL(cb);

  ASSERT_EQ(kill(victim, SIGKILL), 0);
  a.stop_after_content = 0;
  e2e_sse_read(ca, &a, E2E_WAIT_MS); /* the stream ends: an error event, no [DONE] */
  ASSERT_EQ(a.nerror, 1);
  ASSERT_EQ(a.ndone, 0);
  ASSERT_GE(a.ncontent, 2);
  b.stop_after_content = 0;
  ASSERT_EQ(e2e_sse_read(cb, &b, E2E_WAIT_MS), 0);
  ASSERT(e2e_sse_kinds_are(&b, 1, 40, 0)); /* untouched */
  e2e_sse_free(&a);
  e2e_sse_free(&b);
  nu_resp_free(&ha);
  nu_resp_free(&hb);
  e2e_conn_close(ca);
  e2e_conn_close(cb);

  /* Restarted: narrated, counted, and running again under a new pid. */
  ASSERT(e2e_log_wait(&sl, "crash: pid", E2E_WAIT_MS, NULL, 0));
  ASSERT(e2e_log_wait(&sl, "restart: number 1", E2E_WAIT_MS, NULL, 0));
  ASSERT_EQ(e2e_wait_counter(sl.port, "engines_restarted", 1, E2E_WAIT_MS), 1);
  ASSERT_EQ(e2e_counter(sl.port, "engines_crashed"), 1);
  ASSERT(wait_state(sl.port, 0, "running"));
  double restarts = -1;
  char last[64] = "";
  ASSERT_EQ(managed_field(sl.port, 0, "restarts", &restarts, NULL, 0), 0);
  ASSERT_EQ((int)restarts, 1);
  ASSERT_EQ(managed_field(sl.port, 0, "last_exit", NULL, last, sizeof(last)), 0);
  ASSERT_STR_EQ(last, "killed by signal 9");
  int again = managed_pid(sl.port, 0);
  ASSERT_GT(again, 0);
  ASSERT_NE(again, victim);
  ASSERT(e2e_wait_endpoints_ready(sl.port, 2, E2E_WAIT_MS));
  ASSERT(whole_stream(sl.port, "m1", 5, NULL));
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT(gone(again));
}

/* ---- a swap pool ---- */

static void test_swap_pool(void) {
  ASSERT_EQ(make_catalog(0), 0);
  char cfg[8192];
  e2e_proc_t sl;
  /* m2's engine takes a while to listen, as a model loading would: a
   * request waiting for it gets heartbeats (every 100 ms) first. */
  ASSERT_EQ(e2e_serve_start(&sl,
                            config(cfg, sizeof(cfg), "", ",\"--start-delay-ms\",\"1500\"",
                                   ",\"swap\":{\"max_running\":1,\"idle_timeout_ms\":0}"),
                            NULL),
            0);
  /* Nothing runs before a request asks. */
  ASSERT_EQ(e2e_counter(sl.port, "engines_started"), 0);
  ASSERT_EQ(engines_alive(sl.port), 0);
  /* On standby is not down: /ready says the instance can serve. */
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  char st[32];
  ASSERT_EQ(managed_field(sl.port, 0, "state", NULL, st, sizeof(st)), 0);
  ASSERT_STR_EQ(st, "stopped");
  const char *order[] = {"m1", "m2", "m1", "m2"};
  int last_pid[2] = {0, 0};
  for (int i = 0; i < 4; i++) {
    int k = order[i][1] - '1';
    long hb = 0;
    ASSERT(whole_stream(sl.port, order[i], 6, &hb));
    if (k == 1) ASSERT_GE(hb, 1); /* it waited for the engine with heartbeats, before its first token */
    /* One engine process at a time: the other one's is gone. */
    ASSERT_LE(engines_alive(sl.port), 1);
    ASSERT_LE(e2e_counter(sl.port, "engines_running"), 1);
    int pid = managed_pid(sl.port, k);
    ASSERT_GT(pid, 0);
    if (last_pid[1 - k] > 0) ASSERT(gone(last_pid[1 - k]));
    last_pid[k] = pid;
  }
  ASSERT_GE(e2e_counter(sl.port, "engines_swapped"), 3);
  ASSERT_GE(e2e_counter(sl.port, "engines_stopped"), 3);
  ASSERT_EQ(e2e_counter(sl.port, "engines_crashed"), 0);
  ASSERT(e2e_log_wait(&sl, "swap: gives its place", E2E_WAIT_MS, NULL, 0));
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT(gone(last_pid[0]));
  ASSERT(gone(last_pid[1]));
}

/* An engine of a swap pool idle for idle_timeout_ms stops; an engine not
 * ready within start_timeout_ms is a failed start, stopped and restarted. */
static void test_idle_stop_and_start_timeout(void) {
  ASSERT_EQ(make_catalog(0), 0);
  char cfg[8192];
  e2e_proc_t sl;
  ASSERT_EQ(e2e_serve_start(&sl, config(cfg, sizeof(cfg), "", "", ",\"swap\":{\"max_running\":2,\"idle_timeout_ms\":200}"),
                            NULL),
            0);
  ASSERT(whole_stream(sl.port, "m1", 3, NULL));
  int pid = managed_pid(sl.port, 0);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(e2e_wait_counter(sl.port, "engines_stopped", 1, E2E_WAIT_MS), 1);
  ASSERT(wait_state(sl.port, 0, "stopped"));
  ASSERT(e2e_log_wait(&sl, "(swap.idle_timeout_ms)", E2E_WAIT_MS, NULL, 0));
  ASSERT(gone(pid));
  ASSERT_EQ(e2e_counter(sl.port, "engines_swapped"), 0); /* room for both: nothing was swapped */
  ASSERT(whole_stream(sl.port, "m1", 3, NULL));         /* asked again, started again */
  ASSERT_EQ(e2e_stop(&sl), 0);

  /* m2's engine listens only after an hour; it may take 300 ms. */
  char e2[1024];
  snprintf(e2, sizeof(e2),
           "{\"models\":[\"m2\"],\"managed\":{\"model\":\"m2\",\"start_timeout_ms\":300,\"stop_grace_ms\":5000,"
           "\"command\":[\"%s\",\"sim-engine\",\"--listen\",\"127.0.0.1:{port}\",\"--model\",\"m2\","
           "\"--start-delay-ms\",\"3600000\"]}}",
           e2e_binary());
  snprintf(cfg, sizeof(cfg), "{%s,\"pools\":[{\"name\":\"slow\",\"models\":[\"m2\"],\"endpoints\":[%s]}]}",
           g_catalog, e2);
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT(e2e_log_wait(&sl, "not ready after 300 ms (start_timeout_ms)", E2E_WAIT_MS, NULL, 0));
  ASSERT_GE(e2e_wait_counter(sl.port, "engines_restarted", 1, E2E_WAIT_MS), 1);
  ASSERT_GE(e2e_counter(sl.port, "engines_crashed"), 1);
  ASSERT_EQ(e2e_counter(sl.port, "engines_ready"), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- the catalog check ---- */

static void test_catalog_digest_mismatch_refuses_start(void) {
  ASSERT_EQ(make_catalog(1), 0);
  char cfg[8192];
  e2e_proc_t sl;
  ASSERT_EQ(e2e_serve_spawn(&sl, config(cfg, sizeof(cfg), "", "", ""), NULL), 0);
  ASSERT_EQ(e2e_wait_exit(&sl, E2E_WAIT_MS), 0);
  ASSERT(WIFEXITED(sl.status));
  ASSERT_EQ(WEXITSTATUS(sl.status), 2);
  char path[1024];
  snprintf(path, sizeof(path), "%s/m2.bin", e2e_tmpdir());
  ASSERT(e2e_log_wait(&sl, path, 1000, NULL, 0));
  ASSERT_EQ(e2e_log_count(&sl, "started pid"), 0); /* no engine was started */
  ASSERT_EQ(e2e_log_check(&sl), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 240);
  E2E_RUN(test_two_engines_start_serve_and_stop);
  E2E_RUN(test_sigkill_takes_engines_along);
  E2E_RUN(test_engine_killed_mid_stream);
  E2E_RUN(test_swap_pool);
  E2E_RUN(test_idle_stop_and_start_timeout);
  E2E_RUN(test_catalog_digest_mismatch_refuses_start);
  return SL_TEST_EXIT();
}
