/* e2e_workers.c: `"workers": N`, a supervisor and N worker processes on one
 * port, end to end.
 *
 * Two standalone simulated engines serve every worker: H (model mh), which
 * the test pauses (SIGSTOP) to hold a stream open at a point it chose, and
 * G (model m) for everything else.  Every answer to an API request names
 * its worker (X-Sluice-Worker), so the test knows which worker holds a
 * stream; which worker the kernel picks for a connection is left to the
 * kernel, and the test sends requests until it has seen each (the chance
 * that hundreds of connections all land on one of two is nil).  Every wait
 * is for an event or a log line, never for an amount of time:
 *  - both workers serve through the shared port;
 *  - kill -9 of one worker while the other holds a stream: the held stream
 *    completes as its baseline once H resumes, the supervisor restarts the
 *    killed one and counts the restart, new requests succeed;
 *  - SIGHUP to the supervisor (and `reload` on its admin socket) reloads
 *    every worker; `status` on the admin socket; `sluice attach` on the
 *    supervisor's socket and on a worker's (--worker I);
 *  - SIGTERM drains the streams every worker holds, then everything exits 0;
 *  - bad "workers" values are refused with exit status 2; workers: 1 runs
 *    no supervisor; a worker that fails on its first start stops the
 *    instance with its status instead of restarting.
 */
#include "test.h"
#include "e2e/harness.h"

#include <unistd.h>

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"
#define HELD_HDRS "x-sim-seed: 4242\r\nx-sim-tokens: 24\r\n"
#define HELD_TOKENS 24

/* One instance: the engines, the supervisor (whose log the workers share)
 * and its admin socket. */
typedef struct {
  e2e_proc_t h, g, sl;
  char admin[300];
  e2e_sse_t base; /* the held request made alone */
} inst_t;

/* Starts H, G and `sluice serve` with workers: 2, and waits until both
 * workers listen and each has seen both engines pass a health check. */
static void start(inst_t *x) {
  static int k;
  memset(x, 0, sizeof(*x));
  const char *const h_args[] = {"--model", "mh", "--ttft-ms", "1", "--itl-ms", "1", "--itl-jitter", "0", NULL};
  const char *const g_args[] = {"--model", "m", "--ttft-ms", "1", "--itl-ms", "1", "--itl-jitter", "0", NULL};
  ASSERT_EQ(e2e_sim_start(&x->h, h_args), 0);
  ASSERT_EQ(e2e_sim_start(&x->g, g_args), 0);
  snprintf(x->admin, sizeof(x->admin), "%s/admin-%d.sock", e2e_tmpdir(), ++k);
  char cfg[2048];
  snprintf(cfg, sizeof(cfg),
           "{\"workers\":2,\"heartbeat_ms\":50,\"drain_timeout_ms\":600000,\"admin_socket\":\"%s\","
           "\"health\":{\"interval_ms\":3600000,\"cooldown_base_ms\":50,\"cooldown_max_ms\":100},"
           "\"upstream\":{\"first_token_timeout_ms\":3600000},"
           "\"pools\":[{\"name\":\"h\",\"models\":[\"mh\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:%d\"}]},"
           "{\"name\":\"g\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:%d\"}]}]}",
           x->admin, x->h.port, x->g.port);
  ASSERT_EQ(e2e_serve_start(&x->sl, cfg, NULL), 0);
  ASSERT(e2e_log_wait(&x->sl, "supervisor pid", E2E_WAIT_MS, NULL, 0));
  ASSERT(e2e_log_wait(&x->sl, "2 workers listening on http://", E2E_WAIT_MS, NULL, 0));
  ASSERT(e2e_log_wait(&x->sl, " worker 1/2 pid ", 0, NULL, 0));
  ASSERT(e2e_log_wait(&x->sl, " worker 2/2 pid ", 0, NULL, 0));
  ASSERT_GE(e2e_wait_log_count(&x->sl, "passed its health check", 4, E2E_WAIT_MS), 4);
}

/* The worker that answered (its X-Sluice-Worker), or -1. */
static int worker_of(const nu_resp_t *head) {
  const char *w = nu_header(head, "x-sluice-worker");
  return w ? atoi(w) : -1;
}

/* The pid of worker i from its latest start line, or -1. */
static int worker_pid(const e2e_proc_t *sl, int i) {
  char *text = e2e_log_text(sl);
  if (text == NULL) return -1;
  char needle[64];
  snprintf(needle, sizeof(needle), " worker %d/2 pid ", i);
  int pid = -1;
  for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle)) pid = atoi(p + strlen(needle));
  free(text);
  return pid;
}

/* A short stream of model m on a new connection.  Returns 1 if it was a
 * whole, well-formed stream, with the worker that served it (its
 * X-Sluice-Worker, -1 without one) in *worker; else 0. */
static int short_stream(int port, int *worker) {
  char body[512];
  nu_resp_t head;
  e2e_sse_t s;
  int st = e2e_stream(port, CHAT, "x-sim-tokens: 3\r\n", e2e_chat_body(body, sizeof(body), "m", 1, NULL), &head, &s,
                      CHUNK, E2E_WAIT_MS);
  *worker = worker_of(&head);
  int ok = st == 200 && s.read_rc == 0 && e2e_sse_kinds_are(&s, 1, 3, 0);
  if (!ok) fprintf(stderr, "  short stream: status %d, read_rc %d, events \"%s\"\n", st, s.read_rc, s.kinds);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  return ok;
}

/* Short streams until both workers have served one (each answer must be
 * whole).  Returns 1 when both did. */
static int both_serve(int port) {
  int seen[3] = {0, 0, 0};
  for (int i = 0; i < 400 && !(seen[1] && seen[2]); i++) {
    int w = -1;
    if (!short_stream(port, &w) || w < 1 || w > 2) {
      fprintf(stderr, "  request %d: worker %d\n", i, w);
      return 0;
    }
    seen[w]++;
  }
  if (!(seen[1] && seen[2])) fprintf(stderr, "  workers seen: 1: %d, 2: %d\n", seen[1], seen[2]);
  return seen[1] && seen[2];
}

/* Opens the held request (model mh) while H is paused: its head comes with
 * the first heartbeat, no event until H resumes.  Returns the connection
 * and the worker that holds it in *worker, or NULL. */
static nu_conn_t *hold(const inst_t *x, e2e_sse_t *s, int *worker) {
  char body[512];
  nu_resp_t head;
  nu_conn_t *c = e2e_sse_open(x->sl.port, CHAT, HELD_HDRS, e2e_chat_body(body, sizeof(body), "mh", 1, NULL), &head, s,
                              CHUNK, E2E_WAIT_MS);
  if (c == NULL) return NULL;
  *worker = worker_of(&head);
  int st = head.status;
  nu_resp_free(&head);
  if (st != 200 || e2e_sse_read_comments(c, s, 1, E2E_WAIT_MS) != 0 || s->nevents != 0) {
    fprintf(stderr, "  held stream: status %d, %ld events\n", st, s->nevents);
    e2e_conn_close(c);
    return NULL;
  }
  return c;
}

/* 1 if s is the whole held stream, event for event, as the baseline. */
static int same_as_base(const inst_t *x, const e2e_sse_t *s) {
  int ok = e2e_sse_kinds_are(s, 1, HELD_TOKENS, 0) && s->read_rc == 0 && s->ndone == 1 && s->nerror == 0 &&
           strcmp(s->finish_reason, "stop") == 0 && strcmp(s->content, x->base.content) == 0;
  if (!ok) fprintf(stderr, "  held stream differs from its baseline: events \"%s\"\n", s->kinds);
  return ok;
}

/* The held request made alone, as the baseline. */
static void baseline(inst_t *x) {
  char body[512];
  nu_resp_t head;
  ASSERT_EQ(e2e_stream(x->sl.port, CHAT, HELD_HDRS, e2e_chat_body(body, sizeof(body), "mh", 1, NULL), &head, &x->base,
                       CHUNK, E2E_WAIT_MS),
            200);
  nu_resp_free(&head);
  ASSERT(e2e_sse_kinds_are(&x->base, 1, HELD_TOKENS, 0));
}

/* The supervisor's `status` as JSON (cJSON_Delete it), or NULL. */
static cJSON *sup_status(const inst_t *x) {
  char out[8192];
  if (e2e_admin(x->admin, "status", out, sizeof(out)) < 0) return NULL;
  return cJSON_Parse(out);
}

/* A member of workers[i] (0-based) of a status document, or -1. */
static double wfield(const cJSON *st, int i, const char *name) {
  const cJSON *w = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "workers"), i);
  const cJSON *v = cJSON_GetObjectItem(w, name);
  return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* ---- both workers serve through the shared port ---- */

static void test_two_workers_serve(void) {
  inst_t x;
  start(&x);
  if (sl__test_cur_failed) return;
  ASSERT(both_serve(x.sl.port));
  /* Two processes besides the supervisor, each with its own pid. */
  int p1 = worker_pid(&x.sl, 1), p2 = worker_pid(&x.sl, 2);
  ASSERT_GT(p1, 0);
  ASSERT_GT(p2, 0);
  ASSERT_NE(p1, p2);
  ASSERT_NE(p1, x.sl.pid);
  ASSERT_EQ(kill(p1, 0), 0);
  ASSERT_EQ(kill(p2, 0), 0);
  /* The supervisor's status lists both, running. */
  cJSON *st = sup_status(&x);
  ASSERT_NOT_NULL(st);
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(st, "role")), "supervisor");
  ASSERT_EQ(cJSON_GetObjectItem(st, "nworkers")->valuedouble, 2);
  ASSERT_EQ(cJSON_GetObjectItem(st, "port")->valuedouble, x.sl.port);
  ASSERT_EQ(wfield(st, 0, "pid"), p1);
  ASSERT_EQ(wfield(st, 1, "pid"), p2);
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(st, "workers"), 0),
                                                         "state")),
                "running");
  ASSERT_EQ(cJSON_GetObjectItem(st, "restarts_total")->valuedouble, 0);
  cJSON_Delete(st);
  ASSERT_EQ(e2e_stop(&x.sl), 0);
  ASSERT_EQ(e2e_wait_log_count(&x.sl, "every stream has ended; exiting", 2, E2E_WAIT_MS), 2);
  ASSERT(e2e_log_wait(&x.sl, "supervisor: every worker has exited", 0, NULL, 0));
  /* The workers are gone with it. */
  ASSERT_NE(kill(p1, 0), 0);
  ASSERT_NE(kill(p2, 0), 0);
  ASSERT_EQ(e2e_stop(&x.g), 0);
  ASSERT_EQ(e2e_stop(&x.h), 0);
  e2e_sse_free(&x.base);
}

/* Waits until every worker has published exactly on[w] streams in flight
 * into the instance view (/health "workers"): the held streams are all
 * counted and the baseline's stream is gone from every worker's count.
 * Returns 1, or 0 when that did not happen within the wait. */
static const int none[3] = {0, 0, 0};

static int wait_published(int port, const int *on) {
  for (int64_t end = nu_now_ms() + nu_scale_ms(E2E_WAIT_MS); nu_now_ms() < end; usleep(20000)) {
    cJSON *h = e2e_get_json(port, "/health", NULL);
    int match = 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(h, "workers")) {
      const cJSON *i = cJSON_GetObjectItemCaseSensitive(w, "index");
      const cJSON *f = cJSON_GetObjectItemCaseSensitive(w, "streams_in_flight");
      if (cJSON_IsNumber(i) && cJSON_IsNumber(f) && i->valueint >= 1 && i->valueint <= 2 &&
          f->valueint == on[i->valueint])
        match++;
    }
    cJSON_Delete(h);
    if (match == 2) return 1;
  }
  cJSON *h = e2e_get_json(port, "/health", NULL);
  char *txt = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(h, "workers"));
  fprintf(stderr, "  the view never showed %d and %d streams on workers 1 and 2: %s (this worker: %d in flight)\n",
          on[1], on[2], txt ? txt : "?", cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(h, "streams_in_flight")) > 0
              ? (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(h, "streams_in_flight"))
              : 0);
  cJSON_free(txt);
  cJSON_Delete(h);
  return 0;
}

/* ---- kill -9 of one worker; the other's stream is untouched ---- */

static void test_kill_one_worker(void) {
  inst_t x;
  start(&x);
  if (sl__test_cur_failed) return;
  baseline(&x);
  if (sl__test_cur_failed) return;
  /* The baseline's stream ends in sluice when the engine ends its body,
   * just after [DONE]: H is paused only once both workers count none. */
  ASSERT(wait_published(x.sl.port, none));
  ASSERT_EQ(e2e_pause(&x.h, E2E_WAIT_MS), 0);
  e2e_sse_t held;
  int holder = -1;
  nu_conn_t *c = hold(&x, &held, &holder);
  ASSERT_NOT_NULL(c);
  ASSERT(holder == 1 || holder == 2);
  int victim = 3 - holder;
  int vpid = worker_pid(&x.sl, victim);
  ASSERT_GT(vpid, 0);
  ASSERT_EQ(kill(vpid, SIGKILL), 0);

  /* The supervisor says so and restarts it. */
  char line[512], needle[64];
  snprintf(needle, sizeof(needle), "worker %d (pid %d) died: killed by signal 9", victim, vpid);
  ASSERT(e2e_log_wait(&x.sl, needle, E2E_WAIT_MS, line, sizeof(line)));
  ASSERT(strstr(line, "stream(s) lost; restarting in 100 ms") != NULL);
  snprintf(needle, sizeof(needle), "worker %d restarted (pid ", victim);
  ASSERT(e2e_log_wait(&x.sl, needle, E2E_WAIT_MS, NULL, 0));
  int npid = worker_pid(&x.sl, victim);
  ASSERT_GT(npid, 0);
  ASSERT_NE(npid, vpid);
  /* The new worker has seen G pass its health check (H is paused). */
  ASSERT_GE(e2e_wait_log_count(&x.sl, "passed its health check", 5, E2E_WAIT_MS), 5);

  /* New requests succeed, and the restarted worker serves too. */
  ASSERT(both_serve(x.sl.port));
  cJSON *st = sup_status(&x);
  ASSERT_NOT_NULL(st);
  ASSERT_EQ(cJSON_GetObjectItem(st, "restarts_total")->valuedouble, 1);
  ASSERT_EQ(cJSON_GetObjectItem(st, "streams_lost_total")->valuedouble, 0);
  ASSERT_EQ(wfield(st, victim - 1, "restarts"), 1);
  ASSERT_EQ(wfield(st, victim - 1, "pid"), npid);
  ASSERT_EQ(wfield(st, holder - 1, "restarts"), 0);
  const cJSON *vw = cJSON_GetArrayItem(cJSON_GetObjectItem(st, "workers"), victim - 1);
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(vw, "last_exit")), "killed by signal 9");
  cJSON_Delete(st);

  /* The held stream, on the worker that lived, completes untouched. */
  ASSERT_EQ(e2e_resume(&x.h), 0);
  ASSERT_EQ(e2e_sse_read(c, &held, E2E_WAIT_MS), 0);
  ASSERT(same_as_base(&x, &held));
  e2e_conn_close(c);
  e2e_sse_free(&held);
  ASSERT_EQ(e2e_stop(&x.sl), 0);
  ASSERT_EQ(e2e_stop(&x.g), 0);
  ASSERT_EQ(e2e_stop(&x.h), 0);
  e2e_sse_free(&x.base);
}

/* Held streams until each worker holds at least one: c[], s[], who[]
 * (the worker of each) and on[w] (how many on worker w); returns how many
 * (0 when a stream could not be held). */
#define MAXHELD 40
static int hold_on_both(const inst_t *x, nu_conn_t **c, e2e_sse_t *s, int *who, int *on) {
  int n = 0;
  on[0] = on[1] = on[2] = 0;
  while (n < MAXHELD && !(on[1] && on[2])) {
    c[n] = hold(x, &s[n], &who[n]);
    if (c[n] == NULL || (who[n] != 1 && who[n] != 2)) return 0;
    on[who[n]]++;
    n++;
  }
  return on[1] && on[2] ? n : 0;
}

/* After the baseline: waits until no worker counts a stream (the
 * baseline's ends in sluice when the engine ends its body, just after
 * [DONE]), pauses H, holds streams until each worker has one
 * (hold_on_both), and waits until each worker has published exactly its
 * held streams, so counts in logs and the view can be asserted.  Returns
 * how many are held, 0 on failure. */
static int hold_settled(inst_t *x, nu_conn_t **c, e2e_sse_t *s, int *who, int *on) {
  if (!wait_published(x->sl.port, none) || e2e_pause(&x->h, E2E_WAIT_MS) != 0) return 0;
  int n = hold_on_both(x, c, s, who, on);
  return n > 0 && wait_published(x->sl.port, on) ? n : 0;
}

/* Streams on both workers, then kill -9 the worker holding the first:
 * exactly its streams are lost (the client sees the connection end
 * without [DONE]), and counted in the supervisor's status, /health and
 * /metrics; the other worker's streams complete; no total goes back. */
static void test_kill_worker_with_streams(void) {
  inst_t x;
  start(&x);
  if (sl__test_cur_failed) return;
  baseline(&x);
  if (sl__test_cur_failed) return;
  nu_conn_t *c[MAXHELD];
  e2e_sse_t s[MAXHELD];
  int on[3], who[MAXHELD];
  int n = hold_settled(&x, c, s, who, on);
  ASSERT_GT(n, 0);
  int64_t started = e2e_counter(x.sl.port, "streams_started");
  int victim = who[0];
  int vpid = worker_pid(&x.sl, victim);
  ASSERT_GT(vpid, 0);
  ASSERT_EQ(kill(vpid, SIGKILL), 0);
  char needle[128];
  snprintf(needle, sizeof(needle), "worker %d (pid %d) died: killed by signal 9; %d stream(s) lost", victim, vpid,
           on[victim]);
  ASSERT(e2e_log_wait(&x.sl, needle, E2E_WAIT_MS, NULL, 0));
  snprintf(needle, sizeof(needle), "worker %d restarted (pid ", victim);
  ASSERT(e2e_log_wait(&x.sl, needle, E2E_WAIT_MS, NULL, 0));

  cJSON *st = sup_status(&x);
  ASSERT_NOT_NULL(st);
  ASSERT_EQ(cJSON_GetObjectItem(st, "streams_lost_total")->valuedouble, on[victim]);
  cJSON_Delete(st);
  ASSERT_EQ(e2e_health_num(x.sl.port, "worker_restarts"), 1);
  ASSERT_EQ(e2e_health_num(x.sl.port, "worker_streams_lost"), on[victim]);
  ASSERT_GE(e2e_counter(x.sl.port, "streams_started"), started);
  nu_resp_t m;
  ASSERT_EQ(e2e_http(x.sl.port, "GET", "/metrics", NULL, NULL, &m, E2E_WAIT_MS), 200);
  char want[96];
  snprintf(want, sizeof(want), "\nsluice_worker_streams_lost_total %d\n", on[victim]);
  ASSERT(strstr(m.body, want) != NULL);
  ASSERT(strstr(m.body, "\nsluice_worker_restarts_total 1\n") != NULL);
  nu_resp_free(&m);

  /* The victim's streams ended without [DONE]; the others' complete whole. */
  ASSERT_EQ(e2e_resume(&x.h), 0);
  for (int i = 0; i < n; i++) {
    e2e_sse_read(c[i], &s[i], E2E_WAIT_MS);
    if (who[i] == victim) {
      ASSERT_EQ(s[i].ndone, 0);
      ASSERT(s[i].eof);
    } else {
      ASSERT(same_as_base(&x, &s[i]));
    }
    e2e_conn_close(c[i]);
    e2e_sse_free(&s[i]);
  }
  ASSERT_EQ(e2e_stop(&x.sl), 0);
  ASSERT_EQ(e2e_stop(&x.g), 0);
  ASSERT_EQ(e2e_stop(&x.h), 0);
  e2e_sse_free(&x.base);
}

/* ---- SIGHUP and the admin socket ---- */

static void test_reload_and_admin(void) {
  inst_t x;
  start(&x);
  if (sl__test_cur_failed) return;
  ASSERT_EQ(kill(x.sl.pid, SIGHUP), 0);
  ASSERT(e2e_log_wait(&x.sl, "sluice worker 1: SIGHUP: reloaded", E2E_WAIT_MS, NULL, 0));
  ASSERT(e2e_log_wait(&x.sl, "sluice worker 2: SIGHUP: reloaded", E2E_WAIT_MS, NULL, 0));
  ASSERT(e2e_log_wait(&x.sl, "sluice: SIGHUP: forwarded to 2 worker(s)", E2E_WAIT_MS, NULL, 0));

  /* `reload` on the supervisor's socket does the same. */
  char out[8192];
  ASSERT_EQ(e2e_admin(x.admin, "reload", out, sizeof(out)), 0);
  ASSERT(strstr(out, "signalled 2 worker(s)") != NULL);
  ASSERT_EQ(e2e_wait_log_count(&x.sl, ": SIGHUP: reloaded", 4, E2E_WAIT_MS), 4);
  ASSERT_EQ(e2e_admin(x.admin, "bogus", out, sizeof(out)), 1);
  ASSERT(strstr(out, "unknown command") != NULL);

  /* Each worker has its own full admin socket, P.I. */
  char wsock[320];
  snprintf(wsock, sizeof(wsock), "%s.2", x.admin);
  ASSERT_EQ(e2e_admin(wsock, "status", out, sizeof(out)), 1); /* a JSON line, not "ok" */
  ASSERT(strstr(out, "\"generation\":3") != NULL);

  /* sluice attach on the supervisor's socket shows its status and says how
   * to reach a worker; with --worker I it is worker I's Lua prompt. */
  char *so = NULL, *se = NULL, args[400];
  snprintf(args, sizeof(args), "%s", x.admin);
  ASSERT_EQ(e2e_run_cli("attach", args, "", &so, &se), 0);
  ASSERT(strstr(so, "\"role\":\"supervisor\"") != NULL);
  ASSERT(strstr(se, "--worker I") != NULL);
  free(so);
  free(se);
  snprintf(args, sizeof(args), "--worker 1 %s", x.admin);
  ASSERT_EQ(e2e_run_cli("attach", args, "print(40 + 2)\n", &so, &se), 0);
  ASSERT(strstr(so, "42") != NULL);
  free(so);
  free(se);
  ASSERT(e2e_log_wait(&x.sl, "attach session 1: closed", E2E_WAIT_MS, NULL, 0));

  ASSERT_EQ(e2e_stop(&x.sl), 0);
  ASSERT_EQ(access(x.admin, F_OK), -1); /* the supervisor removed its socket */
  ASSERT_EQ(e2e_stop(&x.g), 0);
  ASSERT_EQ(e2e_stop(&x.h), 0);
  e2e_sse_free(&x.base);
}

/* ---- SIGTERM drains every worker's streams ---- */

static void test_sigterm_drains_all(void) {
  inst_t x;
  start(&x);
  if (sl__test_cur_failed) return;
  baseline(&x);
  if (sl__test_cur_failed) return;
  nu_conn_t *c[MAXHELD];
  e2e_sse_t s[MAXHELD];
  int on[3], who[MAXHELD];
  int n = hold_settled(&x, c, s, who, on);
  ASSERT_GT(n, 0);

  ASSERT_EQ(kill(x.sl.pid, SIGTERM), 0);
  char needle[96];
  for (int w = 1; w <= 2; w++) {
    snprintf(needle, sizeof(needle), "sluice worker %d: SIGTERM: draining %d stream(s)", w, on[w]);
    ASSERT(e2e_log_wait(&x.sl, needle, E2E_WAIT_MS, NULL, 0));
  }
  /* Every held stream runs to its end. */
  ASSERT_EQ(e2e_resume(&x.h), 0);
  for (int i = 0; i < n; i++) {
    ASSERT_EQ(e2e_sse_read(c[i], &s[i], E2E_WAIT_MS), 0);
    ASSERT(same_as_base(&x, &s[i]));
    e2e_conn_close(c[i]);
    e2e_sse_free(&s[i]);
  }
  /* Then the supervisor exits 0 after both workers did. */
  ASSERT_EQ(e2e_wait_exit(&x.sl, E2E_WAIT_MS), 0);
  ASSERT(WIFEXITED(x.sl.status));
  ASSERT_EQ(WEXITSTATUS(x.sl.status), 0);
  ASSERT_EQ(e2e_log_check(&x.sl), 0);
  ASSERT_EQ(e2e_log_count(&x.sl, "every stream has ended; exiting"), 2);
  ASSERT_EQ(e2e_log_count(&x.sl, ") exited: exit status 0"), 2);
  ASSERT(e2e_log_wait(&x.sl, "supervisor: every worker has exited", 0, NULL, 0));
  ASSERT_EQ(e2e_log_count(&x.sl, "restarting in"), 0);
  ASSERT_EQ(e2e_stop(&x.g), 0);
  ASSERT_EQ(e2e_stop(&x.h), 0);
  e2e_sse_free(&x.base);
}

/* ---- bad values; workers: 1 ---- */

static void test_bad_workers_refused(void) {
  static const char *const bad[] = {"0", "65", "\"many\"", "2.5", "-1", "true", "\"\""};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char cfg[512];
    snprintf(cfg, sizeof(cfg),
             "{\"workers\":%s,\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"sim\":{}}]}]}", bad[i]);
    e2e_proc_t sl;
    ASSERT_EQ(e2e_serve_spawn(&sl, cfg, NULL), 0);
    ASSERT_EQ(e2e_wait_exit(&sl, E2E_WAIT_MS), 0);
    ASSERT(WIFEXITED(sl.status));
    ASSERT_EQ(WEXITSTATUS(sl.status), 2);
    char line[512];
    ASSERT(e2e_log_wait(&sl, "workers: expected an integer from 1 to 64 or \"auto\", not ", 0, line, sizeof(line)));
    ASSERT(strstr(line, "sluice: bad configuration: ") != NULL);
    ASSERT_EQ(e2e_log_check(&sl), 0);
  }
}

static void test_one_worker_is_plain(void) {
  e2e_proc_t sl;
  ASSERT_EQ(e2e_serve_start(&sl,
                            "{\"workers\":1,\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],"
                            "\"endpoints\":[{\"sim\":{\"ttft_ms\":1,\"itl_ms\":1}}]}]}",
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  int w = 0;
  ASSERT(short_stream(sl.port, &w));
  ASSERT_EQ(w, -1); /* no X-Sluice-Worker */
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_log_count(&sl, "supervisor"), 0);
  ASSERT_EQ(e2e_log_count(&sl, " worker 1/"), 0);
}

/* Tenant limits with workers and no Redis: the start says each worker keeps
 * its own windows (and by how much a tenant may exceed a limit). */
static void test_limits_without_redis_warned(void) {
  e2e_proc_t sl;
  ASSERT_EQ(e2e_serve_start(&sl,
                            "{\"workers\":2,\"tenants\":[{\"name\":\"t\",\"keys\":[\"sha256:"
                            "5638ad5fcdb74ea40a2416e46a7dfe9689fb176db4f143085f75a6b5ccbcfb21\"],"
                            "\"limits\":{\"requests_per_minute\":10}}],"
                            "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"sim\":{}}]}]}",
                            NULL),
            0);
  ASSERT_EQ(e2e_log_count(&sl, "WARNING: 2 workers and no \"redis\": each worker keeps its own tenant limits, "
                               "so a tenant may get up to 2 times each limit"),
            1);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* A worker that cannot start (its placement policy does not load, which
 * only a gateway finds out) is not restarted in a loop: the supervisor
 * stops the others and exits with its status. */
static void test_worker_fails_first_start(void) {
  e2e_proc_t sl;
  ASSERT_EQ(e2e_serve_spawn(&sl,
                            "{\"workers\":2,\"placement\":{\"policy\":\"/nonexistent/policy.lua\"},"
                            "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"sim\":{}}]}]}",
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_exit(&sl, E2E_WAIT_MS), 0);
  ASSERT(WIFEXITED(sl.status));
  ASSERT_EQ(WEXITSTATUS(sl.status), 2);
  ASSERT(e2e_log_wait(&sl, "failed to start: exit status 2; stopping", 0, NULL, 0));
  ASSERT(e2e_log_wait(&sl, "sluice worker ", 0, NULL, 0)); /* its own reason, from the worker */
  ASSERT_EQ(e2e_log_count(&sl, "restarting in"), 0);
  ASSERT_EQ(e2e_log_check(&sl), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 280);
  E2E_RUN(test_bad_workers_refused);
  E2E_RUN(test_one_worker_is_plain);
  E2E_RUN(test_limits_without_redis_warned);
  E2E_RUN(test_worker_fails_first_start);
  E2E_RUN(test_two_workers_serve);
  E2E_RUN(test_reload_and_admin);
  E2E_RUN(test_kill_one_worker);
  E2E_RUN(test_kill_worker_with_streams);
  E2E_RUN(test_sigterm_drains_all);
  return SL_TEST_EXIT();
}
