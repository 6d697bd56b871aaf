/* e2e_web.c: the admin web view (admin_http, runtime/ops/web.h) through the
 * real binary.
 *
 *  - Token rules: a loopback listener without a token answers; a
 *    non-loopback listen without one is refused at start naming
 *    admin_http.token (and accepted with one, by `sluice check`, so the
 *    test never binds beyond loopback); with a token the header, the
 *    cookie and the query parameter are each accepted, a wrong or missing
 *    one is 401 and counted (admin_http_unauthorized).
 *  - /api/state shows the streams the test holds open: three held after
 *    three tokens by an in-process engine's stall fault, one held before
 *    its first token by an engine process the test paused (SIGSTOP), with
 *    the right endpoints, tokens and per-endpoint counts.
 *  - /api/events delivers a "state" snapshot and a narration event (the
 *    placement of a request made while it listens), and a guard verdict;
 *    a client connecting later gets the recent ones first.
 *  - POST /api/endpoints/NAME/drain takes the endpoint out of placement
 *    (the next request goes to the other one; /health shows it draining),
 *    undrain puts it back; unknown names, wrong methods and another site's
 *    Origin are refused.
 *  - With "workers": 2, worker I serves its view on port + I - 1.
 * Every wait polls up to a generous bound; nothing asserts a duration.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"
#define TOKEN "e2e-web-token-0123456789abcdef"
#define STALL3 "x-sim-fault: stall\r\nx-sim-fault-at: 3\r\nx-sim-tokens: 50\r\n"

/* The admin view's port from the log line "admin web view on http://H:P/"
 * (the n-th such line, 1-based, for workers), or -1. */
static int admin_port(const e2e_proc_t *p, int nth) {
  if (e2e_wait_log_count(p, "admin web view on http://", nth, E2E_WAIT_MS) < nth) return -1;
  char *log = e2e_log_text(p);
  if (log == NULL) return -1;
  int port = -1;
  const char *at = log;
  for (int i = 0; i < nth && at; i++) {
    at = strstr(at, "admin web view on http://");
    if (at && i + 1 < nth) at++;
  }
  if (at) {
    const char *colon = strchr(at + strlen("admin web view on http://"), ':');
    if (colon) port = atoi(colon + 1);
  }
  free(log);
  return port;
}

/* The whole JSON answer of a request to the view (cJSON_Delete it), with
 * its status in *status; NULL when it is not JSON. */
static cJSON *view_json(int port, const char *method, const char *path, const char *headers, int *status) {
  nu_resp_t r;
  *status = e2e_http(port, method, path, headers, NULL, &r, E2E_WAIT_MS);
  cJSON *doc = *status > 0 ? cJSON_ParseWithLength(r.body, r.body_len) : NULL;
  nu_resp_free(&r);
  return doc;
}

static const char *error_code(const cJSON *doc) {
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
  return cJSON_IsString(c) ? c->valuestring : "";
}

/* ---- token rules ---- */

static void test_loopback_without_token(void) {
  e2e_proc_t sl;
  ASSERT_EQ(e2e_serve_start(&sl,
                            "{\"admin_http\":\"127.0.0.1:0\",\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
                            "\"endpoints\":[{\"sim\":{\"ttft_ms\":1,\"itl_ms\":1}}]}]}",
                            NULL),
            0);
  int port = admin_port(&sl, 1);
  ASSERT_GT(port, 0);
  ASSERT(e2e_log_count(&sl, "no token: loopback only") >= 1);
  int64_t requests0 = e2e_counter(sl.port, "requests");
  int status;
  cJSON *st = view_json(port, "GET", "/api/state", NULL, &status);
  ASSERT_EQ(status, 200);
  ASSERT_NOT_NULL(st);
  ASSERT(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(st, "pools")));
  cJSON_Delete(st);
  /* The page and its files come from the source tree's web/. */
  nu_resp_t r;
  ASSERT_EQ(e2e_http(port, "GET", "/", NULL, NULL, &r, E2E_WAIT_MS), 200);
  ASSERT(strstr(r.body, "<html") != NULL || strstr(r.body, "<!doctype html>") != NULL);
  ASSERT_NOT_NULL(nu_header(&r, "content-security-policy"));
  nu_resp_free(&r);
  ASSERT_EQ(e2e_http(port, "GET", "/app.js", NULL, NULL, &r, E2E_WAIT_MS), 200);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_http(port, "GET", "/style.css", NULL, NULL, &r, E2E_WAIT_MS), 200);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_http(port, "GET", "/../CMakeLists.txt", NULL, NULL, &r, E2E_WAIT_MS), 404);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_http(port, "POST", "/api/state", NULL, "{}", &r, E2E_WAIT_MS), 405);
  nu_resp_free(&r);
  /* The view's requests are its own: the gateway's request counter saw
   * only the two /health reads. */
  ASSERT_EQ(e2e_counter(sl.port, "requests"), requests0 + 1);
  ASSERT_GE(e2e_counter(sl.port, "admin_http_requests"), 6);
  ASSERT_EQ(e2e_counter(sl.port, "admin_http_unauthorized"), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_non_loopback_needs_token(void) {
  e2e_proc_t sl;
  ASSERT_EQ(e2e_serve_spawn(&sl,
                            "{\"admin_http\":{\"listen\":\"0.0.0.0:0\"},\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
                            "\"endpoints\":[{\"sim\":{}}]}]}",
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_exit(&sl, E2E_WAIT_MS), 0);
  ASSERT(WIFEXITED(sl.status));
  ASSERT_EQ(WEXITSTATUS(sl.status), 2);
  ASSERT(e2e_log_count(&sl, "admin_http.token: required when admin_http.listen (\"0.0.0.0:0\")") == 1);
  /* The string form is held to the same rule. */
  ASSERT_EQ(e2e_serve_spawn(&sl,
                            "{\"admin_http\":\"10.1.2.3:9090\",\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
                            "\"endpoints\":[{\"sim\":{}}]}]}",
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_exit(&sl, E2E_WAIT_MS), 0);
  ASSERT_EQ(WEXITSTATUS(sl.status), 2);
  ASSERT(e2e_log_count(&sl, "admin_http.token: required") == 1);
  /* A token too short is refused too; with a good one the configuration
   * is accepted (checked by `sluice check`: nothing binds). */
  ASSERT_EQ(e2e_serve_spawn(&sl,
                            "{\"admin_http\":{\"listen\":\"0.0.0.0:9090\",\"token\":\"short\"},\"pools\":[{\"name\":"
                            "\"p\",\"models\":[\"m1\"],\"endpoints\":[{\"sim\":{}}]}]}",
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_exit(&sl, E2E_WAIT_MS), 0);
  ASSERT_EQ(WEXITSTATUS(sl.status), 2);
  ASSERT(e2e_log_count(&sl, "admin_http.token: expected 16 to 256 characters") == 1);
  char path[600];
  snprintf(path, sizeof(path), "%s/check.json", e2e_tmpdir());
  FILE *f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
  fprintf(f,
          "{\"admin_http\":{\"listen\":\"0.0.0.0:9090\",\"token\":\"" TOKEN "\"},\"pools\":[{\"name\":\"p\","
          "\"models\":[\"m1\"],\"endpoints\":[{\"sim\":{}}]}]}");
  fclose(f);
  char args[700], *out = NULL, *err = NULL;
  snprintf(args, sizeof(args), "--config %s", path);
  int rc = e2e_run_cli("check", args, "", &out, &err);
  if (rc != 0) fprintf(stderr, "sluice check: %s%s\n", out ? out : "", err ? err : "");
  ASSERT_EQ(rc, 0);
  free(out);
  free(err);
}

static void test_token_accepted_three_ways(void) {
  e2e_proc_t sl;
  ASSERT_EQ(e2e_serve_start(&sl,
                            "{\"admin_http\":{\"listen\":\"127.0.0.1:0\",\"token\":\"" TOKEN "\"},"
                            "\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
                            "\"endpoints\":[{\"sim\":{\"ttft_ms\":1,\"itl_ms\":1}}]}]}",
                            NULL),
            0);
  int port = admin_port(&sl, 1);
  ASSERT_GT(port, 0);
  int status;
  /* Missing: 401 saying what to send. */
  cJSON *d = view_json(port, "GET", "/api/state", NULL, &status);
  ASSERT_EQ(status, 401);
  ASSERT_STR_EQ(error_code(d), "token_required");
  ASSERT(strstr(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(d, "error"), "message")
                    ->valuestring,
                "admin_http.token") != NULL);
  cJSON_Delete(d);
  /* Wrong, in each place: 401. */
  d = view_json(port, "GET", "/api/state", "Authorization: Bearer e2e-web-token-0123456789abcdeX\r\n", &status);
  ASSERT_EQ(status, 401);
  ASSERT_STR_EQ(error_code(d), "wrong_token");
  cJSON_Delete(d);
  d = view_json(port, "GET", "/api/state?token=nope", NULL, &status);
  ASSERT_EQ(status, 401);
  cJSON_Delete(d);
  d = view_json(port, "GET", "/api/state", "Cookie: sluice_admin=" TOKEN "x\r\n", &status);
  ASSERT_EQ(status, 401);
  cJSON_Delete(d);
  d = view_json(port, "GET", "/", NULL, &status);
  ASSERT_EQ(status, 401);
  cJSON_Delete(d);
  /* Right, in each place: 200. */
  d = view_json(port, "GET", "/api/state", "Authorization: Bearer " TOKEN "\r\n", &status);
  ASSERT_EQ(status, 200);
  cJSON_Delete(d);
  d = view_json(port, "GET", "/api/state", "Cookie: theme=dark; sluice_admin=" TOKEN "\r\n", &status);
  ASSERT_EQ(status, 200);
  cJSON_Delete(d);
  d = view_json(port, "GET", "/api/state?token=" TOKEN, NULL, &status);
  ASSERT_EQ(status, 200);
  cJSON_Delete(d);
  /* The page opened with ?token= sets the cookie its own requests use. */
  nu_resp_t r;
  ASSERT_EQ(e2e_http(port, "GET", "/?token=" TOKEN, NULL, NULL, &r, E2E_WAIT_MS), 200);
  const char *sc = nu_header(&r, "set-cookie");
  ASSERT_NOT_NULL(sc);
  ASSERT(strstr(sc, "sluice_admin=" TOKEN) != NULL);
  ASSERT(strstr(sc, "HttpOnly") != NULL);
  nu_resp_free(&r);
  /* The events stream takes the query form (an EventSource sends no headers). */
  nu_resp_t head;
  e2e_sse_t s;
  nu_conn_t *c = e2e_conn_open(port, 0);
  ASSERT_NOT_NULL(c);
  ASSERT_EQ(nu_send_request(c->fd, "GET", "/api/events?token=" TOKEN, NULL, NULL), 0);
  memset(&head, 0, sizeof(head));
  ASSERT_EQ(nu_read_head(c, &head, E2E_WAIT_MS), 0);
  ASSERT_EQ(head.status, 200);
  nu_resp_free(&head);
  e2e_conn_close(c);
  (void)s;
  ASSERT_EQ(e2e_wait_counter(sl.port, "admin_http_unauthorized", 5, E2E_WAIT_MS), 5);
  ASSERT_GE(e2e_counter(sl.port, "admin_http_requests"), 10);
  /* The token never reaches the log. */
  ASSERT_EQ(e2e_log_count(&sl, TOKEN), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- state, events, drain ---- */

typedef struct {
  e2e_proc_t sl, h;       /* sluice; the engine process the test pauses */
  int port;               /* the view's */
  nu_conn_t *held[4];     /* three streams after 3 tokens, one before its first */
  e2e_sse_t held_s[4];
  int nheld;
} world_t;

/* Pool "p" (model m1): two in-process engines; pool "h" (model mh): the
 * engine process H.  A stop guard on "p" for the events test. */
static void world_start(world_t *x) {
  memset(x, 0, sizeof(*x));
  const char *const h_args[] = {"--model", "mh", "--ttft-ms", "1", "--itl-ms", "1", "--itl-jitter", "0", NULL};
  ASSERT_EQ(e2e_sim_start(&x->h, h_args), 0);
  char cfg[2048];
  snprintf(cfg, sizeof(cfg),
           "{\"admin_http\":\"127.0.0.1:0\",\"heartbeat_ms\":50,"
           "\"health\":{\"interval_ms\":3600000},"
           "\"upstream\":{\"first_token_timeout_ms\":3600000,\"idle_timeout_ms\":3600000},"
           "\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
           "\"guards\":{\"stop\":{\"strings\":[\"sluice\"]}},"
           "\"endpoints\":[{\"sim\":{\"ttft_ms\":1,\"itl_ms\":1,\"itl_jitter\":0}},"
           "{\"sim\":{\"ttft_ms\":1,\"itl_ms\":1,\"itl_jitter\":0}}]},"
           "{\"name\":\"h\",\"models\":[\"mh\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:%d\"}]}]}",
           x->h.port);
  ASSERT_EQ(e2e_serve_start(&x->sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(x->sl.port, 200, E2E_WAIT_MS), 0);
  ASSERT(e2e_wait_endpoints_ready(x->sl.port, 3, E2E_WAIT_MS));
  x->port = admin_port(&x->sl, 1);
  ASSERT_GT(x->port, 0);
}

/* Holds a "p" stream after its third token (the engine stalls there). */
static void hold_p(world_t *x) {
  char body[512];
  nu_resp_t head;
  int i = x->nheld;
  x->held[i] = e2e_sse_open(x->sl.port, CHAT, STALL3, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head,
                            &x->held_s[i], CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(x->held[i]);
  ASSERT_EQ(head.status, 200);
  nu_resp_free(&head);
  x->nheld++;
  x->held_s[i].stop_after_content = 3;
  ASSERT_EQ(e2e_sse_read(x->held[i], &x->held_s[i], E2E_WAIT_MS), 1);
}

/* Holds an "h" stream before its first token: H is paused. */
static void hold_h(world_t *x) {
  ASSERT_EQ(e2e_pause(&x->h, E2E_WAIT_MS), 0);
  char body[512];
  nu_resp_t head;
  int i = x->nheld;
  x->held[i] = e2e_sse_open(x->sl.port, CHAT, NULL, e2e_chat_body(body, sizeof(body), "mh", 1, NULL), &head,
                            &x->held_s[i], CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(x->held[i]);
  ASSERT_EQ(head.status, 200);
  nu_resp_free(&head);
  x->nheld++;
  ASSERT_EQ(e2e_sse_read_comments(x->held[i], &x->held_s[i], 1, E2E_WAIT_MS), 0); /* a heartbeat: it waits */
}

static void world_stop(world_t *x) {
  int held = x->nheld;
  for (int i = 0; i < x->nheld; i++) {
    e2e_conn_close(x->held[i]);
    e2e_sse_free(&x->held_s[i]);
  }
  x->nheld = 0;
  ASSERT_EQ(e2e_resume(&x->h), 0);
  ASSERT_GE(e2e_wait_counter(x->sl.port, "client_cancels", held, E2E_WAIT_MS), held);
  ASSERT_EQ(e2e_stop(&x->sl), 0);
  ASSERT_EQ(e2e_stop(&x->h), 0);
}

static const cJSON *find_endpoint(const cJSON *state, const char *name) {
  const cJSON *p, *e;
  cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(state, "pools")) {
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "endpoints")) {
      if (strcmp(cJSON_GetObjectItemCaseSensitive(e, "name")->valuestring, name) == 0) return e;
    }
  }
  return NULL;
}

static double num(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static const char *str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void test_state_shows_held_streams(void) {
  world_t x;
  world_start(&x);
  for (int i = 0; i < 3; i++) hold_p(&x);
  hold_h(&x);
  int status;
  cJSON *st = view_json(x.port, "GET", "/api/state", NULL, &status);
  ASSERT_EQ(status, 200);
  ASSERT_NOT_NULL(st);
  ASSERT_EQ(num(st, "streams_in_flight"), 4);
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(st, "streams");
  ASSERT_EQ(cJSON_GetArraySize(list), 4);
  /* Three "p" streams at 3 tokens, one "h" stream waiting with none. */
  int p_streams = 0, h_streams = 0;
  char p_eps[3][64];
  const cJSON *s;
  cJSON_ArrayForEach(s, list) {
    const char *model = str(s, "model");
    ASSERT_NOT_NULL(model);
    ASSERT_NOT_NULL(str(s, "id"));
    ASSERT(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(s, "tenant")));
    ASSERT(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(s, "guards")));
    if (strcmp(model, "m1") == 0) {
      ASSERT_EQ(num(s, "tokens"), 3);
      ASSERT_STR_EQ(str(s, "pool"), "p");
      ASSERT_STR_EQ(str(s, "state"), "streaming");
      ASSERT_GE(num(s, "tokens_per_s"), 0);
      snprintf(p_eps[p_streams++], 64, "%s", str(s, "endpoint"));
    } else {
      ASSERT_STR_EQ(model, "mh");
      ASSERT_EQ(num(s, "tokens"), 0);
      ASSERT_STR_EQ(str(s, "state"), "waiting");
      ASSERT_STR_EQ(str(s, "pool"), "h");
      h_streams++;
    }
  }
  ASSERT_EQ(p_streams, 3);
  ASSERT_EQ(h_streams, 1);
  /* Each endpoint's count is the streams listed on it; the pools add up. */
  const cJSON *pool;
  cJSON_ArrayForEach(pool, cJSON_GetObjectItemCaseSensitive(st, "pools")) {
    int sum = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(pool, "endpoints")) {
      int listed = 0;
      cJSON_ArrayForEach(s, list) {
        if (str(s, "endpoint") && strcmp(str(s, "endpoint"), str(e, "name")) == 0) listed++;
      }
      ASSERT_EQ(num(e, "streams"), listed);
      ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "ready")));
      ASSERT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(e, "draining")));
      ASSERT_GT(num(e, "limit"), 0);
      sum += listed;
    }
    ASSERT_EQ(num(pool, "streams"), sum);
    ASSERT_EQ(sum, strcmp(str(pool, "name"), "p") == 0 ? 3 : 1);
    ASSERT_EQ(num(cJSON_GetObjectItemCaseSensitive(pool, "queue"), "waiting"), 0);
  }
  /* The recent figures are there (TTFT of the three "p" streams at least). */
  const cJSON *rec = cJSON_GetObjectItemCaseSensitive(st, "recent");
  ASSERT_NOT_NULL(rec);
  ASSERT_GE(num(rec, "ttft_samples"), 3);
  ASSERT_GT(num(cJSON_GetObjectItemCaseSensitive(rec, "ttft_ms"), "p50"), 0);
  cJSON_Delete(st);
  world_stop(&x);
}

/* Reads SSE lines from c until an "event: NAME" whose data contains
 * needle; copies that data into out.  Returns 1 when found. */
static int read_event(nu_conn_t *c, const char *name, const char *needle, char *out, size_t cap) {
  char line[65536];
  int64_t deadline = nu_now_ms() + E2E_WAIT_MS;
  int want = 0;
  char ev[64];
  snprintf(ev, sizeof(ev), "event: %s", name);
  while (nu_now_ms() < deadline) {
    long n = nu_line(c, line, sizeof(line), deadline);
    if (n < 0) return 0;
    /* Chunk-size lines and blank lines come between; only the two kinds matter. */
    if (strncmp(line, "event: ", 7) == 0) {
      want = strcmp(line, ev) == 0;
    } else if (want && strncmp(line, "data: ", 6) == 0) {
      if (needle == NULL || strstr(line, needle) != NULL) {
        snprintf(out, cap, "%s", line + 6);
        return 1;
      }
      want = 0;
    }
  }
  return 0;
}

static void test_events_deliver_narration(void) {
  world_t x;
  world_start(&x);
  nu_conn_t *c = e2e_conn_open(x.port, 0);
  ASSERT_NOT_NULL(c);
  ASSERT_EQ(nu_send_request(c->fd, "GET", "/api/events", NULL, NULL), 0);
  nu_resp_t head;
  memset(&head, 0, sizeof(head));
  ASSERT_EQ(nu_read_head(c, &head, E2E_WAIT_MS), 0);
  ASSERT_EQ(head.status, 200);
  ASSERT(strstr(nu_header(&head, "content-type"), "text/event-stream") != NULL);
  nu_resp_free(&head);
  static char data[65536];
  /* The snapshot comes at once. */
  ASSERT(read_event(c, "state", "\"pools\"", data, sizeof(data)));
  cJSON *st = cJSON_Parse(data);
  ASSERT_NOT_NULL(st);
  cJSON_Delete(st);
  /* A request made now is narrated to the listener: its placement. */
  char body[512];
  e2e_sse_t s;
  nu_resp_t r;
  ASSERT_EQ(e2e_stream(x.sl.port, CHAT, "X-Request-Id: web-narrated-1\r\nx-sim-tokens: 4\r\n",
                       e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &r, &s, CHUNK, E2E_WAIT_MS),
            200);
  nu_resp_free(&r);
  e2e_sse_free(&s);
  ASSERT(read_event(c, "narration", "web-narrated-1", data, sizeof(data)));
  cJSON *ev = cJSON_Parse(data);
  ASSERT_NOT_NULL(ev);
  ASSERT_STR_EQ(str(ev, "request_id"), "web-narrated-1");
  ASSERT_NOT_NULL(str(ev, "kind"));
  ASSERT_NOT_NULL(str(ev, "sentence"));
  ASSERT_GT(strlen(str(ev, "sentence")), 0);
  cJSON_Delete(ev);
  /* A guard verdict: the stop guard on "sluice" (x-sim-script makes the
   * engine say it). */
  ASSERT_EQ(e2e_stream(x.sl.port, CHAT, "X-Request-Id: web-guarded-1\r\nx-sim-script: hello| sluice| world| more\r\n",
                       e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &r, &s, CHUNK, E2E_WAIT_MS),
            200);
  nu_resp_free(&r);
  e2e_sse_free(&s);
  ASSERT(read_event(c, "guard", "web-guarded-1", data, sizeof(data)));
  ev = cJSON_Parse(data);
  ASSERT_NOT_NULL(ev);
  ASSERT_STR_EQ(str(ev, "kind"), "guard");
  ASSERT_STR_EQ(str(ev, "guard"), "stop");
  cJSON_Delete(ev);
  /* And the snapshot keeps coming, once a second. */
  ASSERT(read_event(c, "state", "\"streams\"", data, sizeof(data)));
  e2e_conn_close(c);
  /* A client that connects later gets the recent narration first. */
  c = e2e_conn_open(x.port, 0);
  ASSERT_NOT_NULL(c);
  ASSERT_EQ(nu_send_request(c->fd, "GET", "/api/events", NULL, NULL), 0);
  memset(&head, 0, sizeof(head));
  ASSERT_EQ(nu_read_head(c, &head, E2E_WAIT_MS), 0);
  nu_resp_free(&head);
  ASSERT(read_event(c, "narration", "web-narrated-1", data, sizeof(data)));
  ASSERT(read_event(c, "guard", "web-guarded-1", data, sizeof(data)));
  /* The daemon stops cleanly with a page still listening (its stream is
   * cut; e2e_stop checks the exit status and the log). */
  world_stop(&x);
  e2e_conn_close(c);
}

/* An endpoint's "requests" in /health (which endpoint served a request is
 * the one whose count grew), or -1. */
static int64_t ep_requests(int port, const char *name) {
  int status;
  cJSON *h = e2e_get_json(port, "/health", &status);
  int64_t v = -1;
  const cJSON *p, *e;
  cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(h, "pools")) {
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "endpoints")) {
      if (strcmp(str(e, "address"), name) == 0) v = (int64_t)num(e, "requests");
    }
  }
  cJSON_Delete(h);
  return v;
}

static int health_draining(int port, const char *name) {
  int status;
  cJSON *h = e2e_get_json(port, "/health", &status);
  int v = -1;
  const cJSON *p, *e;
  cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(h, "pools")) {
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "endpoints")) {
      if (strcmp(str(e, "address"), name) == 0) v = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "draining"));
    }
  }
  cJSON_Delete(h);
  return v;
}

static int one_request(world_t *x) {
  char body[512];
  e2e_sse_t s;
  nu_resp_t r;
  int st = e2e_stream(x->sl.port, CHAT, "x-sim-tokens: 3\r\n", e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &r,
                      &s, CHUNK, E2E_WAIT_MS);
  nu_resp_free(&r);
  e2e_sse_free(&s);
  return st;
}

static void test_drain_and_undrain(void) {
  world_t x;
  world_start(&x);
  int status;
  cJSON *st = view_json(x.port, "GET", "/api/state", NULL, &status);
  ASSERT_EQ(status, 200);
  const cJSON *eps = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(st, "pools"), 0),
                                                      "endpoints");
  char a[64], b[64];
  snprintf(a, sizeof(a), "%s", str(cJSON_GetArrayItem(eps, 0), "name"));
  snprintf(b, sizeof(b), "%s", str(cJSON_GetArrayItem(eps, 1), "name"));
  cJSON_Delete(st);
  /* Refusals first: wrong method, unknown name, another site's page. */
  char path[200];
  snprintf(path, sizeof(path), "/api/endpoints/%s/drain", a);
  cJSON *d = view_json(x.port, "GET", path, NULL, &status);
  ASSERT_EQ(status, 405);
  cJSON_Delete(d);
  d = view_json(x.port, "POST", "/api/endpoints/nowhere:1/drain", NULL, &status);
  ASSERT_EQ(status, 404);
  ASSERT_STR_EQ(error_code(d), "unknown_endpoint");
  cJSON_Delete(d);
  d = view_json(x.port, "POST", path, "Origin: http://evil.example\r\n", &status);
  ASSERT_EQ(status, 403);
  cJSON_Delete(d);
  ASSERT_EQ(health_draining(x.sl.port, a), 0);
  /* Drain A (its name percent-encoded, as a page would send it). */
  char enc[200];
  snprintf(enc, sizeof(enc), "/api/endpoints/%.*s%%3A%s/drain", (int)(strchr(a, ':') - a), a, strchr(a, ':') + 1);
  d = view_json(x.port, "POST", enc, "Origin: http://127.0.0.1\r\n", &status);
  ASSERT_EQ(status, 200);
  ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "draining")));
  ASSERT(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "changed")));
  cJSON_Delete(d);
  ASSERT_EQ(health_draining(x.sl.port, a), 1);
  ASSERT(e2e_log_wait(&x.sl, "admin web view: endpoint", E2E_WAIT_MS, NULL, 0));
  /* Every request now goes to B. */
  int64_t a0 = ep_requests(x.sl.port, a), b0 = ep_requests(x.sl.port, b);
  for (int i = 0; i < 4; i++) ASSERT_EQ(one_request(&x), 200);
  ASSERT_EQ(ep_requests(x.sl.port, a), a0);
  ASSERT_EQ(ep_requests(x.sl.port, b), b0 + 4);
  /* Draining again changes nothing. */
  snprintf(path, sizeof(path), "/api/endpoints/%s/drain", a);
  d = view_json(x.port, "POST", path, NULL, &status);
  ASSERT_EQ(status, 200);
  ASSERT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(d, "changed")));
  cJSON_Delete(d);
  /* Undrain A while B holds a stream: least loaded, the next goes to A. */
  hold_p(&x);
  ASSERT_EQ(ep_requests(x.sl.port, b), b0 + 5);
  snprintf(path, sizeof(path), "/api/endpoints/%s/undrain", a);
  d = view_json(x.port, "POST", path, NULL, &status);
  ASSERT_EQ(status, 200);
  ASSERT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(d, "draining")));
  cJSON_Delete(d);
  ASSERT_EQ(health_draining(x.sl.port, a), 0);
  ASSERT_EQ(one_request(&x), 200);
  ASSERT_EQ(ep_requests(x.sl.port, a), a0 + 1);
  /* The state agrees. */
  st = view_json(x.port, "GET", "/api/state", NULL, &status);
  ASSERT(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(find_endpoint(st, a), "draining")));
  ASSERT_EQ(num(find_endpoint(st, b), "streams"), 1);
  cJSON_Delete(st);
  world_stop(&x);
}

/* ---- workers ---- */

/* A port free now, with the one after it (for two workers' views). */
static int two_free_ports(void) {
  for (int tries = 0; tries < 50; tries++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
      close(fd);
      continue;
    }
    int p = ntohs(sa.sin_port);
    close(fd);
    if (p >= 65535) continue;
    int fd2 = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_port = htons((uint16_t)(p + 1));
    int ok = bind(fd2, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd2);
    if (ok) return p;
  }
  return -1;
}

static void test_workers_each_serve_a_view(void) {
  int p = two_free_ports();
  ASSERT_GT(p, 0);
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"workers\":2,\"admin_http\":\"127.0.0.1:%d\",\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
           "\"endpoints\":[{\"sim\":{\"ttft_ms\":1,\"itl_ms\":1}}]}]}",
           p);
  e2e_proc_t sl;
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_log_count(&sl, "admin web view on http://", 2, E2E_WAIT_MS), 2);
  int workers[2] = {0, 0};
  for (int i = 0; i < 2; i++) {
    int status;
    cJSON *st = NULL;
    for (int64_t end = nu_now_ms() + E2E_WAIT_MS; nu_now_ms() < end && st == NULL; usleep(20000))
      st = view_json(p + i, "GET", "/api/state", NULL, &status);
    ASSERT_NOT_NULL(st);
    workers[i] = (int)num(st, "worker");
    ASSERT_EQ(num(st, "workers"), 2);
    cJSON_Delete(st);
  }
  ASSERT_EQ(workers[0], 1);
  ASSERT_EQ(workers[1], 2);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 280);
  E2E_RUN(test_loopback_without_token);
  E2E_RUN(test_non_loopback_needs_token);
  E2E_RUN(test_token_accepted_three_ways);
  E2E_RUN(test_state_shows_held_streams);
  E2E_RUN(test_events_deliver_narration);
  E2E_RUN(test_drain_and_undrain);
  E2E_RUN(test_workers_each_serve_a_view);
  return SL_TEST_EXIT();
}
