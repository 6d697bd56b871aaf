/* e2e_fault_matrix.c: the fault matrix (issue 17), one case per cell.
 *
 * Every cell runs the same frame around one fault:
 *  - sluice serves two pools: "h" (model mh) from a standalone simulated
 *    engine H that only the healthy stream uses, and "f" (model mf) from two
 *    in-process simulated engines that take the faults (or, for a cell,
 *    something else: a dead port, a Lua policy that fails for mf);
 *  - a baseline: the healthy request (a fixed seed and token count) alone;
 *  - H is paused (SIGSTOP) and the same healthy request is opened: its
 *    headers come with the first heartbeat, and it stays in flight across
 *    the fault however fast or slow anything runs, since no byte of it can
 *    come before H is resumed;
 *  - the fault, with its own answer checked against what docs/operations.md
 *    says it must look like (a status before headers; after the first token
 *    one error event and no [DONE]);
 *  - H resumes and the healthy stream is read to its end: the same content,
 *    finish_reason and [DONE] as the baseline; then the healthy request once
 *    more (still serving), /health answers, the stream gauge goes back to 0,
 *    the counters add up, and both processes stop cleanly (exit 0, no
 *    sanitizer report).
 * No assertion depends on how fast anything runs: streams are held by the
 * paused engine or a stall fault, and every wait is for an event.
 */
#include "test.h"
#include "e2e/harness.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"
#define HEALTHY_TOKENS 48
#define HEALTHY_HDRS "x-sim-seed: 4242\r\nx-sim-tokens: 48\r\n"

/* Runs a step of the frame; a failed step (its ASSERT returned from it)
 * ends the cell there, and E2E_RUN kills what it left running. */
#define CELL(step)                       \
  do {                                   \
    step;                                \
    if (sl__test_cur_failed) return;     \
  } while (0)

static char policy_path[300], admin_path[100];

/* One cell's processes and its healthy stream. */
typedef struct {
  e2e_proc_t h;    /* the healthy stream's engine (standalone, paused across the fault) */
  e2e_proc_t sl;   /* sluice */
  e2e_sse_t base;  /* the healthy request made alone */
  e2e_sse_t held;  /* the healthy request in flight across the fault */
  nu_conn_t *held_c;
  const char *hdrs;   /* the healthy request's x-sim-* headers */
  long ntok;          /* its tokens */
  int64_t completed0; /* streams_completed once the baseline was in */
} cell_t;

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f == NULL) exit(2);
  fputs(text, f);
  fclose(f);
}

/* A placement policy that places every request on candidate 1, except that
 * for model mf it runs `bad` first (the samples every generation is tried
 * on use another model, so the policy loads). */
static void write_policy(const char *bad) {
  char text[1024];
  snprintf(text, sizeof(text),
           "local ffi = require 'ffi'\n"
           "return { name = 'matrix', version = '1', schema = {},\n"
           "  place = function(ctx)\n"
           "    if ffi.string(ctx.model) == 'mf' then %s end\n"
           "    return 1, 'matrix'\n"
           "  end }\n",
           bad);
  write_file(policy_path, text);
}

/* The healthy request on a new connection, read to its end into s. */
static int healthy_alone(const cell_t *x, e2e_sse_t *s) {
  char body[512];
  nu_resp_t head;
  int st = e2e_stream(x->sl.port, CHAT, x->hdrs, e2e_chat_body(body, sizeof(body), "mh", 1, NULL), &head, s, CHUNK,
                      E2E_WAIT_MS);
  nu_resp_free(&head);
  return st;
}

/* 1 if s is the whole healthy stream, event for event, as the baseline. */
static int same_as_base(const cell_t *x, const e2e_sse_t *s) {
  int ok = e2e_sse_kinds_are(s, 1, x->ntok, 0) && s->read_rc == 0 && s->ndone == 1 && s->nerror == 0 &&
           s->nbad == 0 && strcmp(s->finish_reason, "stop") == 0 && strcmp(s->content, x->base.content) == 0;
  if (!ok)
    fprintf(stderr, "  healthy stream differs from its baseline: events \"%s\", finish \"%s\", read_rc %d\n", s->kinds,
            s->finish_reason, s->read_rc);
  return ok;
}

/* Starts H and sluice.  f_endpoints is the "f" pool's endpoint list (NULL:
 * two in-process simulated engines); upstream adds members to the
 * "upstream" object and top to the top level (each starting with ','). */
static void cell_start_with(cell_t *x, const char *hdrs, long ntok, const char *f_endpoints, const char *upstream,
                            const char *top) {
  memset(x, 0, sizeof(*x));
  x->hdrs = hdrs;
  x->ntok = ntok;
  const char *const h_args[] = {"--model", "mh", "--ttft-ms", "1", "--itl-ms", "1", "--itl-jitter", "0", NULL};
  ASSERT_EQ(e2e_sim_start(&x->h, h_args), 0);
  char cfg[4096];
  snprintf(cfg, sizeof(cfg),
           "{\"heartbeat_ms\":50,"
           "\"health\":{\"interval_ms\":3600000,\"cooldown_base_ms\":50,\"cooldown_max_ms\":100},"
           "\"upstream\":{\"max_attempts\":2,\"backoff_base_ms\":10,\"backoff_max_ms\":20,"
           "%s%s},"
           "\"pools\":[{\"name\":\"h\",\"models\":[\"mh\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:%d\"}]},"
           "{\"name\":\"f\",\"models\":[\"mf\"],\"endpoints\":%s}]%s}",
           upstream && strstr(upstream, "first_token_timeout_ms") ? "\"connect_timeout_ms\":2000"
                                                                  : "\"first_token_timeout_ms\":3600000",
           upstream ? upstream : "", x->h.port,
           f_endpoints ? f_endpoints
                       : "[{\"sim\":{\"ttft_ms\":1,\"itl_ms\":1,\"itl_jitter\":0}},"
                         "{\"sim\":{\"ttft_ms\":1,\"itl_ms\":1,\"itl_jitter\":0}}]",
           top ? top : "");
  ASSERT_EQ(e2e_serve_start(&x->sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(x->sl.port, 200, E2E_WAIT_MS), 0);
  ASSERT(e2e_wait_endpoints_ready(x->sl.port, f_endpoints ? 2 : 3, E2E_WAIT_MS));
  ASSERT_EQ(healthy_alone(x, &x->base), 200);
  ASSERT(e2e_sse_kinds_are(&x->base, 1, x->ntok, 0));
  ASSERT_STR_EQ(x->base.finish_reason, "stop");
  x->completed0 = e2e_wait_counter(x->sl.port, "streams_completed", 1, E2E_WAIT_MS);
  ASSERT_EQ(x->completed0, 1);
}

static void cell_start(cell_t *x, const char *f_endpoints, const char *upstream, const char *top) {
  cell_start_with(x, HEALTHY_HDRS, HEALTHY_TOKENS, f_endpoints, upstream, top);
}

/* Pauses H and opens the healthy stream: the head comes with the first
 * heartbeat, and nothing more can come until H is resumed. */
static void cell_hold(cell_t *x) {
  ASSERT_EQ(e2e_pause(&x->h, E2E_WAIT_MS), 0);
  char body[512];
  nu_resp_t head;
  x->held_c = e2e_sse_open(x->sl.port, CHAT, x->hdrs, e2e_chat_body(body, sizeof(body), "mh", 1, NULL), &head,
                           &x->held, CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(x->held_c);
  ASSERT_EQ(head.status, 200);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_sse_read_comments(x->held_c, &x->held, 1, E2E_WAIT_MS), 0);
  ASSERT_EQ(x->held.nevents, 0);
}

/* Resumes H and reads the healthy stream to its end: it must equal the
 * baseline. */
static void cell_release(cell_t *x) {
  ASSERT_EQ(e2e_resume(&x->h), 0);
  ASSERT_EQ(e2e_sse_read(x->held_c, &x->held, E2E_WAIT_MS), 0);
  if (!same_as_base(x, &x->held)) {
    /* Say whether H itself is still there and listening, so that a failure
     * tells a lost engine from a disturbed stream. */
    int fd = nu_connect(x->h.port);
    fprintf(stderr, "  H (pid %d) %s; a connect to it now: %s\n", (int)x->h.pid,
            kill(x->h.pid, 0) == 0 ? "exists" : "is gone", fd >= 0 ? "accepted" : strerror(errno));
    if (fd >= 0) close(fd);
  }
  ASSERT(same_as_base(x, &x->held));
  e2e_conn_close(x->held_c);
  x->held_c = NULL;
}

/* Still alive and serving: /health answers, the healthy request alone once
 * more equals the baseline, no stream is left in flight, and the
 * completions counted include the three healthy ones.  Then both processes
 * stop cleanly. */
static void cell_finish(cell_t *x) {
  int status = 0;
  cJSON *h = e2e_get_json(x->sl.port, "/health", &status);
  ASSERT_NOT_NULL(h);
  ASSERT_EQ(status, 200);
  cJSON_Delete(h);
  e2e_sse_t again;
  ASSERT_EQ(healthy_alone(x, &again), 200);
  ASSERT(same_as_base(x, &again));
  e2e_sse_free(&again);
  ASSERT_GE(e2e_wait_counter(x->sl.port, "streams_completed", x->completed0 + 2, E2E_WAIT_MS), x->completed0 + 2);
  /* H saw the three healthy requests and nothing else, each to its end. */
  ASSERT_EQ(e2e_wait_sim_stat(x->h.port, "completed", 3, E2E_WAIT_MS), 3);
  ASSERT_EQ(e2e_sim_stat(x->h.port, "requests"), 3);
  ASSERT_EQ(e2e_sim_stat(x->h.port, "faults_injected"), 0);
  /* No stream left in flight, and no client connection but the one asking. */
  int64_t active = -1, conns = -1;
  for (int64_t end = nu_now_ms() + E2E_WAIT_MS; nu_now_ms() < end; usleep(20 * 1000))
    if ((active = e2e_counter(x->sl.port, "streams_active")) == 0 &&
        (conns = e2e_health_num(x->sl.port, "connections")) == 1)
      break;
  ASSERT_EQ(active, 0);
  ASSERT_EQ(conns, 1);
  ASSERT_EQ(e2e_stop(&x->sl), 0);
  ASSERT_EQ(e2e_stop(&x->h), 0);
  e2e_sse_free(&x->base);
  e2e_sse_free(&x->held);
}

/* The sum of a stat over sluice's in-process simulated engines. */
static int64_t f_stat(const cell_t *x, const char *name) {
  int64_t sum = 0;
  for (int i = 0; i < x->sl.nsims; i++) sum += e2e_sim_stat(x->sl.sim_ports[i], name);
  return sum;
}

/* A whole (non-streaming) mf request with extra headers: the status, with
 * the answer in *r (free it). */
static int f_whole(const cell_t *x, const char *headers, nu_resp_t *r) {
  char body[512];
  return e2e_http(x->sl.port, "POST", CHAT, headers, e2e_chat_body(body, sizeof(body), "mf", 0, NULL), r, E2E_WAIT_MS);
}

/* A streamed mf request with extra headers, read to its end into s. */
static int f_stream(const cell_t *x, const char *headers, e2e_sse_t *s) {
  char body[512];
  nu_resp_t head;
  int st = e2e_stream(x->sl.port, CHAT, headers, e2e_chat_body(body, sizeof(body), "mf", 1, NULL), &head, s, CHUNK,
                      E2E_WAIT_MS);
  nu_resp_free(&head);
  return st;
}

/* A failure after the first token: 200, the tokens before it, one error
 * event, no finish and no [DONE]. */
static int one_error_after(const e2e_sse_t *s, long ntokens) {
  char want[64];
  snprintf(want, sizeof(want), "R%.*sE", (int)ntokens, "CCCCCCCCCCCCCCCC");
  return e2e_sse_kinds_eq(s, want) && s->ndone == 0 && s->nfinish == 0 && s->error_shape_ok &&
         s->error_message[0] != '\0' && s->other_lines == 0 && s->event_lines == 0;
}

/* ================= engine side ================= */

/* Nothing listens at the f endpoint any more (the engine died after its
 * first health probe, and probes are an hour apart): the refused connect
 * marks it not ready and the request, which no engine saw, waits in the
 * queue without spending an attempt (docs/admission.md) until its deadline:
 * 503 queue_timeout with Retry-After. */
static void test_matrix_engine_refused(void) {
  e2e_proc_t dead;
  const char *const args[] = {"--model", "mf", NULL};
  ASSERT_EQ(e2e_sim_start(&dead, args), 0);
  char eps[160];
  snprintf(eps, sizeof(eps), "[{\"url\":\"http://127.0.0.1:%d\"}],\"queue_timeout_ms\":1000", dead.port);
  cell_t x;
  CELL(cell_start(&x, eps, NULL, NULL));
  ASSERT_EQ(e2e_kill(&dead), 0);
  CELL(cell_hold(&x));
  nu_resp_t r;
  ASSERT_EQ(f_whole(&x, NULL, &r), 503);
  ASSERT(e2e_is_error_body(r.body, "queue_timeout"));
  ASSERT_NOT_NULL(nu_header(&r, "retry-after"));
  nu_resp_free(&r);
  ASSERT_GE(e2e_counter(x.sl.port, "errors_upstream_connect"), 1);
  ASSERT_EQ(e2e_counter(x.sl.port, "upstream_retries"), 0);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* The engine resets the connection before the first token, on every
 * attempt: retried, then 502. */
static void test_matrix_engine_reset_before_first_token(void) {
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, NULL));
  CELL(cell_hold(&x));
  nu_resp_t r;
  ASSERT_EQ(f_whole(&x, "x-sim-fault: reset\r\nx-sim-fault-at: 0\r\n", &r), 502);
  ASSERT(e2e_is_error_body(r.body, NULL));
  nu_resp_free(&r);
  ASSERT_EQ(f_stat(&x, "faults_injected"), 2);
  ASSERT_EQ(e2e_counter(x.sl.port, "upstream_retries"), 1);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* The engine resets after 3 tokens: one error event, no [DONE], no retry. */
static void test_matrix_engine_reset_after_first_token(void) {
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, NULL));
  CELL(cell_hold(&x));
  e2e_sse_t s;
  ASSERT_EQ(f_stream(&x, "x-sim-tokens: 20\r\nx-sim-fault: reset\r\nx-sim-fault-at: 3\r\n", &s), 200);
  ASSERT(one_error_after(&s, 3));
  e2e_sse_free(&s);
  ASSERT_GE(e2e_counter(x.sl.port, "errors_upstream_reset"), 1);
  ASSERT_EQ(e2e_counter(x.sl.port, "upstream_retries"), 0);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* The engine stalls after 2 tokens: the idle timeout ends that stream with
 * an error event naming it.  (The healthy stream waits for its first
 * token, under the first-token timeout, which is an hour here.) */
static void test_matrix_engine_stall(void) {
  cell_t x;
  CELL(cell_start(&x, NULL, ",\"idle_timeout_ms\":2000", NULL));
  CELL(cell_hold(&x));
  e2e_sse_t s;
  ASSERT_EQ(f_stream(&x, "x-sim-tokens: 20\r\nx-sim-fault: stall\r\nx-sim-fault-at: 2\r\n", &s), 200);
  ASSERT(one_error_after(&s, 2));
  ASSERT(strstr(s.error_code, "idle_timeout") != NULL);
  e2e_sse_free(&s);
  ASSERT_GE(e2e_counter(x.sl.port, "errors_upstream_timeout"), 1);
  /* sluice closed the stalled engine connection. */
  for (int64_t end = nu_now_ms() + E2E_WAIT_MS; nu_now_ms() < end && f_stat(&x, "client_closed_mid_stream") < 1;)
    usleep(20 * 1000);
  ASSERT_EQ(f_stat(&x, "client_closed_mid_stream"), 1);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* No first token within first_token_timeout_ms (1 s) from either engine:
 * retried once, then 504 before any header.  A healthy stream waiting for
 * its own first token would meet the same timeout, so here the healthy
 * stream is held past its first token instead: its client reads nothing of
 * 50,000 tokens until sluice has paused reading H (backpressure, during
 * which neither the idle timeout counts nor a slow client is cut here). */
static void test_matrix_engine_first_token_timeout(void) {
  cell_t x;
  CELL(cell_start_with(&x, "x-sim-seed: 4243\r\nx-sim-tokens: 50000\r\nx-sim-itl-ms: 0\r\n", 50000, NULL,
                       ",\"first_token_timeout_ms\":1000", ",\"admission\":{\"slow_client_ms\":0}"));
  x.held_c = e2e_conn_open(x.sl.port, 16384);
  ASSERT_NOT_NULL(x.held_c);
  char body[512];
  nu_resp_t head;
  ASSERT_EQ(e2e_sse_start(x.held_c, CHAT, x.hdrs, e2e_chat_body(body, sizeof(body), "mh", 1, NULL), &head, &x.held,
                          CHUNK, E2E_WAIT_MS),
            200);
  nu_resp_free(&head);
  ASSERT_GE(e2e_wait_counter(x.sl.port, "upstream_read_pauses", 1, E2E_WAIT_MS), 1);
  nu_resp_t r;
  ASSERT_EQ(f_whole(&x, "x-sim-ttft-ms: 3600000\r\n", &r), 504);
  ASSERT(e2e_is_error_body(r.body, "token"));
  nu_resp_free(&r);
  ASSERT_EQ(e2e_counter(x.sl.port, "upstream_retries"), 1);
  ASSERT_GE(e2e_counter(x.sl.port, "errors_upstream_timeout"), 2);
  ASSERT_EQ(e2e_sse_read(x.held_c, &x.held, 4 * E2E_WAIT_MS), 0);
  ASSERT(same_as_base(&x, &x.held));
  e2e_conn_close(x.held_c);
  x.held_c = NULL;
  CELL(cell_finish(&x));
}

/* Non-SSE bytes after 2 tokens, then the rest of the answer: by the SSE
 * rules the garbage is a line without a field and a blank line, an event
 * with no data, so sluice drops it; the client gets the whole answer and
 * never the garbage.  (Garbage followed by a cut is e2e_faults.c's
 * test_garbage_then_close: one error event.) */
static void test_matrix_engine_garbage(void) {
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, NULL));
  CELL(cell_hold(&x));
  e2e_sse_t s;
  ASSERT_EQ(f_stream(&x, "x-sim-tokens: 6\r\nx-sim-fault: garbage\r\nx-sim-fault-at: 2\r\n", &s), 200);
  ASSERT(e2e_sse_kinds_are(&s, 1, 6, 0));
  ASSERT_EQ(s.nbad + s.nother + s.other_lines, 0);
  ASSERT_EQ(f_stat(&x, "faults_injected"), 1);
  e2e_sse_free(&s);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* A first token 1 s late is not a fault: the slow stream completes whole,
 * with heartbeats before its first event. */
static void test_matrix_engine_slow_start(void) {
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, NULL));
  CELL(cell_hold(&x));
  e2e_sse_t s;
  ASSERT_EQ(f_stream(&x, "x-sim-tokens: 5\r\nx-sim-fault: slow-start\r\nx-sim-delay-ms: 1000\r\n", &s), 200);
  ASSERT(e2e_sse_kinds_are(&s, 1, 5, 0));
  ASSERT_GE(s.comments_before_data, 1);
  e2e_sse_free(&s);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* HTTP 500 from every attempt: retried on the other engine, then 502
 * naming the engine's status. */
static void test_matrix_engine_5xx(void) {
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, NULL));
  CELL(cell_hold(&x));
  nu_resp_t r;
  ASSERT_EQ(f_whole(&x, "x-sim-fault: status:500\r\n", &r), 502);
  ASSERT(e2e_is_error_body(r.body, "500"));
  nu_resp_free(&r);
  ASSERT_EQ(f_stat(&x, "faults_injected"), 2);
  ASSERT_EQ(e2e_counter(x.sl.port, "upstream_retries"), 1);
  ASSERT_GE(e2e_counter(x.sl.port, "errors_upstream_status"), 2);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* HTTP 429 from every attempt: retried, then passed on as 429 with the
 * engines' Retry-After. */
static void test_matrix_engine_429(void) {
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, NULL));
  CELL(cell_hold(&x));
  nu_resp_t r;
  ASSERT_EQ(f_whole(&x, "x-sim-fault: status:429\r\n", &r), 429);
  ASSERT(e2e_is_error_body(r.body, NULL));
  ASSERT_NOT_NULL(nu_header(&r, "retry-after"));
  ASSERT_STR_EQ(nu_header(&r, "retry-after"), "1");
  nu_resp_free(&r);
  ASSERT_EQ(f_stat(&x, "faults_injected"), 2);
  ASSERT_EQ(e2e_counter(x.sl.port, "upstream_retries"), 1);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* ================= client side ================= */

/* A client leaves mid-stream (its engine stalled after 3 tokens, so the
 * stream is in flight whatever the pace): the engine's request is
 * cancelled at once and counted. */
static void test_matrix_client_disconnect(void) {
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, NULL));
  CELL(cell_hold(&x));
  char body[512];
  nu_resp_t head;
  e2e_sse_t s;
  nu_conn_t *c = e2e_sse_open(x.sl.port, CHAT, "x-sim-tokens: 100\r\nx-sim-fault: stall\r\nx-sim-fault-at: 3\r\n",
                              e2e_chat_body(body, sizeof(body), "mf", 1, NULL), &head, &s, CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(c);
  ASSERT_EQ(head.status, 200);
  nu_resp_free(&head);
  s.stop_after_content = 3;
  ASSERT_EQ(e2e_sse_read(c, &s, E2E_WAIT_MS), 1);
  e2e_conn_close(c);
  e2e_sse_free(&s);
  ASSERT_GE(e2e_wait_counter(x.sl.port, "client_cancels", 1, E2E_WAIT_MS), 1);
  for (int64_t end = nu_now_ms() + E2E_WAIT_MS; nu_now_ms() < end && f_stat(&x, "client_closed_mid_stream") < 1;)
    usleep(20 * 1000);
  ASSERT_EQ(f_stat(&x, "client_closed_mid_stream"), 1);
  ASSERT(e2e_log_wait(&x.sl, "end=client_cancel", E2E_WAIT_MS, NULL, 0));
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* A client that reads nothing of a 100,000-token stream: sluice pauses
 * reading its engine (backpressure), and the healthy stream flows to its
 * end meanwhile. */
static void test_matrix_client_slow_reader(void) {
  cell_t x;
  /* The slow client is never cut for being slow here (admission.slow_client_ms
   * 0), so that its end is its own disconnect however long the rest takes. */
  CELL(cell_start(&x, NULL, NULL, ",\"admission\":{\"slow_client_ms\":0}"));
  CELL(cell_hold(&x));
  nu_conn_t *slow = e2e_conn_open(x.sl.port, 16384);
  ASSERT_NOT_NULL(slow);
  char body[512];
  ASSERT_EQ(nu_send_request(slow->fd, "POST", CHAT, "x-sim-tokens: 100000\r\nx-sim-itl-ms: 0\r\n",
                            e2e_chat_body(body, sizeof(body), "mf", 1, NULL)),
            0);
  ASSERT_GE(e2e_wait_counter(x.sl.port, "upstream_read_pauses", 1, E2E_WAIT_MS), 1);
  CELL(cell_release(&x)); /* while the slow client still reads nothing */
  ASSERT_EQ(e2e_counter(x.sl.port, "client_cancels"), 0);
  e2e_conn_close(slow);
  ASSERT_GE(e2e_wait_counter(x.sl.port, "client_cancels", 1, E2E_WAIT_MS), 1);
  CELL(cell_finish(&x));
}

/* Sends a byte string piece by piece (a line every 50 ms) until the server
 * answers or closes; returns the status read then (-1 if none), and checks
 * the connection is closed after it. */
static int trickle_until_answer(int port, const char *first, const char *piece) {
  nu_conn_t *c = e2e_conn_open(port, 0);
  if (c == NULL) return -1;
  int st = -1;
  if (nu_send_str(c->fd, first) == 0) {
    int64_t end = nu_now_ms() + 2 * E2E_WAIT_MS;
    for (;;) {
      struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
      if (poll(&pfd, 1, 50) > 0) break;     /* an answer (or a close) */
      if (nu_now_ms() > end) goto out;
      if (nu_send_str(c->fd, piece) != 0) break; /* closed under us: read what came */
    }
    nu_resp_t r;
    memset(&r, 0, sizeof(r));
    if (nu_read_response(c, &r, E2E_WAIT_MS) == 0 || r.status > 0) st = r.status;
    if (st > 0 && !e2e_is_error_body(r.body, NULL)) st = -2;
    nu_resp_free(&r);
    if (st > 0 && nu_wait_closed(c->fd, E2E_WAIT_MS) != 1) {
      fprintf(stderr, "  the connection stayed open after %d\n", st);
      st = -3;
    }
  }
out:
  e2e_conn_close(c);
  return st;
}

/* Headers trickled a line at a time, never finished: 408 at
 * header_timeout_ms, and the connection closed. */
static void test_matrix_client_slowloris_headers(void) {
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, ",\"http\":{\"header_timeout_ms\":1000}"));
  CELL(cell_hold(&x));
  ASSERT_EQ(trickle_until_answer(x.sl.port, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n", "X-Pad: slow\r\n"), 408);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* Complete headers, then a body trickled 8 bytes at a time that would take
 * far longer than header_timeout_ms: 408, and the connection closed. */
static void test_matrix_client_slowloris_body(void) {
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, ",\"http\":{\"header_timeout_ms\":1000}"));
  CELL(cell_hold(&x));
  ASSERT_EQ(trickle_until_answer(x.sl.port,
                                 "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 "Content-Length: 1000000\r\n\r\n{\"model\":\"mf\",",
                                 "        "),
            408);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* Raw bytes on a new connection: the status of the one response read, and
 * whether the server closed the connection after it (*closed). */
static int raw_once(int port, const char *raw, size_t len, int *closed, char *body, size_t cap) {
  nu_conn_t *c = e2e_conn_open(port, 0);
  if (c == NULL) return -1;
  nu_resp_t r;
  memset(&r, 0, sizeof(r));
  int st = -1;
  if (nu_send(c->fd, raw, len) == 0 && nu_read_response(c, &r, E2E_WAIT_MS) == 0) st = r.status;
  if (body != NULL) snprintf(body, cap, "%s", r.body ? r.body : "");
  nu_resp_free(&r);
  *closed = nu_wait_closed(c->fd, E2E_WAIT_MS) == 1;
  e2e_conn_close(c);
  return st;
}

/* Malformed HTTP (no request line; Content-Length with chunked): 400 and
 * the connection closed. */
static void test_matrix_client_malformed_http(void) {
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, NULL));
  CELL(cell_hold(&x));
  static const char *const raws[] = {
      "\x01\x02 not http at all\r\n\r\n",
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof(raws) / sizeof(raws[0]); i++) {
    int closed = 0;
    ASSERT_EQ(raw_once(x.sl.port, raws[i], strlen(raws[i]), &closed, NULL, 0), 400);
    ASSERT(closed);
  }
  ASSERT_GE(e2e_counter(x.sl.port, "errors_bad_request"), 2);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* Malformed JSON, and a field of the wrong value: 400 naming it. */
static void test_matrix_client_malformed_json(void) {
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, NULL));
  CELL(cell_hold(&x));
  nu_resp_t r;
  ASSERT_EQ(e2e_http(x.sl.port, "POST", CHAT, NULL, "{\"model\":\"mf\",\"messages\":[{\"role\":", &r, E2E_WAIT_MS),
            400);
  ASSERT(e2e_is_error_body(r.body, NULL));
  nu_resp_free(&r);
  char body[512];
  ASSERT_EQ(e2e_http(x.sl.port, "POST", CHAT, NULL,
                     e2e_chat_body(body, sizeof(body), "mf", 1, ",\"max_tokens\":-3"), &r, E2E_WAIT_MS),
            400);
  ASSERT(e2e_is_error_body(r.body, "max_tokens"));
  nu_resp_free(&r);
  ASSERT_EQ(f_stat(&x, "requests"), 0); /* nothing reached an engine */
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* Headers past http.max_header_bytes: 431; a declared body past
 * http.max_body_bytes: 413 before the body is read; a chunked body growing
 * past it: 413. */
static void test_matrix_client_oversize(void) {
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, ",\"http\":{\"max_body_bytes\":65536}"));
  CELL(cell_hold(&x));
  size_t cap = 200000;
  char *raw = malloc(cap);
  ASSERT_NOT_NULL(raw);
  int n = snprintf(raw, cap, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: ");
  memset(raw + n, 'a', 20000);
  n += 20000;
  n += snprintf(raw + n, cap - (size_t)n, "\r\nContent-Length: 2\r\n\r\n{}");
  int closed = 0;
  ASSERT_EQ(raw_once(x.sl.port, raw, (size_t)n, &closed, NULL, 0), 431);
  n = snprintf(raw, cap,
               "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: 100000000\r\n\r\n{");
  ASSERT_EQ(raw_once(x.sl.port, raw, (size_t)n, &closed, NULL, 0), 413);
  n = snprintf(raw, cap,
               "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 20; i++) { /* 20 chunks of 4 KiB: 80 KiB */
    n += snprintf(raw + n, cap - (size_t)n, "1000\r\n");
    memset(raw + n, ' ', 4096);
    n += 4096;
    n += snprintf(raw + n, cap - (size_t)n, "\r\n");
  }
  n += snprintf(raw + n, cap - (size_t)n, "0\r\n\r\n");
  ASSERT_EQ(raw_once(x.sl.port, raw, (size_t)n, &closed, NULL, 0), 413);
  free(raw);
  ASSERT_GE(e2e_counter(x.sl.port, "errors_header_too_large"), 1);
  ASSERT_GE(e2e_counter(x.sl.port, "errors_body_too_large"), 2);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* ================= 10,000 connections at once ================= */

#define FLOOD 10000
#define MAX_CONN 8192 /* http.max_connections' default */

/* What one flood connection got. */
typedef struct {
  int fd;
  int sent;       /* how many of the request's two parts went out */
  int status;     /* of the response's status line (0: none yet) */
  int closed;     /* EOF or reset */
  char head[16];  /* the first bytes of the response */
  int head_len;
} flood_t;

/* Reads what is there; notes the status and the close. */
static void flood_read(flood_t *f) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(f->fd, buf, sizeof(buf), 0);
    if (n > 0) {
      for (ssize_t i = 0; i < n && f->head_len < (int)sizeof(f->head) - 1; i++) f->head[f->head_len++] = buf[i];
      f->head[f->head_len] = '\0';
      if (f->status == 0 && f->head_len >= 12 && strncmp(f->head, "HTTP/1.1 ", 9) == 0) f->status = atoi(f->head + 9);
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) f->closed = 1;
    return;
  }
}

/* The request, in two parts: the request line goes out as soon as the
 * connection is up, the rest when the test asks for answers.  The first
 * part matters: 10,000 SYNs at once overflow the kernel's SYN queue, so it
 * answers with syncookies, and a cookie's ACK that finds sluice's accept
 * queue full is dropped with no state kept.  The client then believes it is
 * connected while the server knows nothing of it, until the client sends
 * data: that data (retransmitted until accepted) re-validates the cookie. */
static const char *const flood_req[2] = {"GET /ready HTTP/1.1\r\n", "Host: x\r\nConnection: close\r\n\r\n"};

/* Polls every open flood connection once (up to 100 ms) and sends the
 * request's parts up to part `upto` (1 or 2) on connected ones. */
static void flood_poll(flood_t *fl, struct pollfd *pfd, int upto) {
  int np = 0;
  static int idx[FLOOD];
  for (int i = 0; i < FLOOD; i++) {
    if (fl[i].closed) continue;
    pfd[np].fd = fl[i].fd;
    pfd[np].events = POLLIN | (fl[i].sent < upto ? POLLOUT : 0);
    pfd[np].revents = 0;
    idx[np++] = i;
  }
  if (np == 0 || poll(pfd, (nfds_t)np, 100) <= 0) return;
  for (int k = 0; k < np; k++) {
    flood_t *f = &fl[idx[k]];
    if (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) flood_read(f);
    while (!f->closed && f->sent < upto && (pfd[k].revents & POLLOUT)) {
      size_t len = strlen(flood_req[f->sent]);
      if (send(f->fd, flood_req[f->sent], len, MSG_NOSIGNAL) == (ssize_t)len) f->sent++;
      else f->closed = 1;
    }
  }
}

/* 10,000 connections opened at once against the default max_connections of
 * 8192: the excess is answered 503 and closed; then every connection still
 * open asks GET /ready and is served (200, or 503 while the limit holds,
 * or 408 had its header timeout passed); none is left without an answer,
 * sluice does not crash, and the healthy stream completes. */
static void test_matrix_client_10k_connections(void) {
  struct rlimit rl;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < FLOOD + 1000) {
    rl.rlim_cur = rl.rlim_max;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  ASSERT_GE((long long)rl.rlim_cur, (long long)(FLOOD + 1000)); /* sluice inherits it */
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, ",\"http\":{\"header_timeout_ms\":600000}"));
  CELL(cell_hold(&x));
  flood_t *fl = calloc(FLOOD, sizeof(*fl));
  struct pollfd *pfd = calloc(FLOOD, sizeof(*pfd));
  ASSERT_NOT_NULL(fl);
  ASSERT_NOT_NULL(pfd);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)x.sl.port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < FLOOD; i++) {
    fl[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ASSERT_GE(fl[i].fd, 0);
    int rc = connect(fl[i].fd, (struct sockaddr *)&sa, sizeof(sa));
    ASSERT(rc == 0 || errno == EINPROGRESS);
  }
  /* The excess: with every held connection idle (the header timeout is far
   * away), at least FLOOD - (MAX_CONN - 1) get 503 (one place is the
   * healthy stream's). */
  int n503 = 0;
  for (int64_t end = nu_now_ms() + 4 * E2E_WAIT_MS; n503 < FLOOD - MAX_CONN + 1 && nu_now_ms() < end;) {
    flood_poll(fl, pfd, 1);
    n503 = 0;
    for (int i = 0; i < FLOOD; i++) n503 += fl[i].closed && fl[i].status == 503;
  }
  fprintf(stderr, "  %d connections got 503 and a close\n", n503);
  ASSERT_GE(n503, FLOOD - MAX_CONN + 1);
  /* The rest ask, and are all answered. */
  int open = FLOOD;
  for (int64_t end = nu_now_ms() + 4 * E2E_WAIT_MS; open > 0 && nu_now_ms() < end;) {
    flood_poll(fl, pfd, 2);
    open = 0;
    for (int i = 0; i < FLOOD; i++) open += !fl[i].closed;
  }
  int n200 = 0, n408 = 0, other = 0;
  n503 = 0;
  for (int i = 0; i < FLOOD; i++) {
    switch (fl[i].status) {
    case 200: n200++; break;
    case 503: n503++; break;
    case 408: n408++; break;
    default:
      if (other++ < 5) fprintf(stderr, "  connection %d: \"%s\" closed %d\n", i, fl[i].head, fl[i].closed);
    }
    close(fl[i].fd);
  }
  fprintf(stderr, "  10k: 200 %d, 503 %d, 408 %d, other %d, left open %d\n", n200, n503, n408, other, open);
  free(fl);
  free(pfd);
  ASSERT_EQ(open, 0);
  ASSERT_EQ(other, 0);
  ASSERT_GE(n503, FLOOD - MAX_CONN + 1);
  ASSERT_GE(n200, 1);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* ================= Lua side ================= */

/* The config members of a cell with the matrix placement policy. */
static const char *lua_top(void) {
  static char top[1024];
  snprintf(top, sizeof(top),
           ",\"placement\":{\"policy\":\"%s\",\"watch\":false},\"admin_socket\":\"%s\","
           "\"lua\":{\"instruction_budget\":200000,\"memory_limit_bytes\":16777216}",
           policy_path, admin_path);
  return top;
}

/* The mf request whose placement the policy fails: placed by the C rule
 * instead, and served whole. */
static void mf_served_despite_policy(const cell_t *x) {
  e2e_sse_t s;
  ASSERT_EQ(f_stream(x, "x-sim-tokens: 4\r\n", &s), 200);
  ASSERT(e2e_sse_kinds_are(&s, 1, 4, 0));
  e2e_sse_free(&s);
  ASSERT_EQ(e2e_counter(x->sl.port, "placement_policy_errors"), 1);
}

/* A policy that raises for mf: that request falls back to the C rule; the
 * error is logged with the policy's line. */
static void test_matrix_lua_error(void) {
  write_policy("error('matrix: deliberate failure')");
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, lua_top()));
  CELL(cell_hold(&x));
  CELL(mf_served_despite_policy(&x));
  ASSERT(e2e_log_wait(&x.sl, "matrix: deliberate failure", E2E_WAIT_MS, NULL, 0));
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* A policy that loops forever for mf: the instruction budget stops it once,
 * counted and logged, and that request falls back to the C rule. */
static void test_matrix_lua_runaway(void) {
  write_policy("while true do end");
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, lua_top()));
  CELL(cell_hold(&x));
  CELL(mf_served_despite_policy(&x));
  ASSERT_EQ(e2e_counter(x.sl.port, "lua_budget_exceeded"), 1);
  ASSERT(e2e_log_wait(&x.sl, "stopped after 200000 VM instructions", E2E_WAIT_MS, NULL, 0));
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* A policy that fills its state up to lua.memory_limit_bytes for mf: the
 * allocator refuses, the phase fails with "not enough memory", the request
 * falls back to the C rule, and the state is usable afterwards (the
 * healthy requests after it are placed by the same policy). */
static void test_matrix_lua_memory_cap(void) {
  write_policy("local t = {} for i = 1, 1e6 do t[i] = ('x'):rep(65536) .. i end");
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, lua_top()));
  CELL(cell_hold(&x));
  CELL(mf_served_despite_policy(&x));
  ASSERT(e2e_log_wait(&x.sl, "not enough memory", E2E_WAIT_MS, NULL, 0));
  ASSERT_EQ(e2e_counter(x.sl.port, "lua_budget_exceeded"), 0);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
  /* The state is usable after the refusal: the healthy requests before and
   * after it were all placed by the policy itself. */
  ASSERT_EQ(e2e_log_count(&x.sl, "placement=\"matrix\""), 3);
}

/* A reload with a policy that does not compile is refused with its line;
 * the old generation keeps serving (the healthy stream in flight and new
 * requests alike). */
static void test_matrix_lua_bad_reload(void) {
  write_policy("local _ = 1");
  cell_t x;
  CELL(cell_start(&x, NULL, NULL, lua_top()));
  int64_t gen0 = e2e_health_num(x.sl.port, "snapshot_version");
  CELL(cell_hold(&x));
  write_file(policy_path, "return { name = 'broken', version = '1',\n  place = function(ctx)\n    return 1 +\n  end }\n");
  char reply[1024];
  ASSERT_EQ(e2e_admin(admin_path, "reload", reply, sizeof(reply)), 1);
  ASSERT(strstr(reply, "policy.lua") != NULL);
  ASSERT_EQ(e2e_counter(x.sl.port, "reloads_failed"), 1);
  ASSERT_EQ(e2e_health_num(x.sl.port, "snapshot_version"), gen0);
  e2e_sse_t s;
  ASSERT_EQ(f_stream(&x, "x-sim-tokens: 4\r\n", &s), 200); /* the old generation places it */
  ASSERT(e2e_sse_kinds_are(&s, 1, 4, 0));
  e2e_sse_free(&s);
  ASSERT_EQ(e2e_counter(x.sl.port, "placement_policy_errors"), 0);
  CELL(cell_release(&x));
  CELL(cell_finish(&x));
}

/* E2E_RUN, for the cells whose name contains $MATRIX_ONLY when it is set
 * (to run one cell while working on it). */
#define CELL_RUN(fn)                                                          \
  do {                                                                        \
    const char *only = getenv("MATRIX_ONLY");                                 \
    if (only == NULL || strstr(#fn, only) != NULL) E2E_RUN(fn);               \
  } while (0)

int main(int argc, char **argv) {
  e2e_init(argc, argv, 600);
  if (snprintf(policy_path, sizeof(policy_path), "%s/policy.lua", e2e_tmpdir()) >= (int)sizeof(policy_path) ||
      snprintf(admin_path, sizeof(admin_path), "%s/admin.sock", e2e_tmpdir()) >= (int)sizeof(admin_path))
    return 2;
  CELL_RUN(test_matrix_engine_refused);
  CELL_RUN(test_matrix_engine_reset_before_first_token);
  CELL_RUN(test_matrix_engine_reset_after_first_token);
  CELL_RUN(test_matrix_engine_stall);
  CELL_RUN(test_matrix_engine_first_token_timeout);
  CELL_RUN(test_matrix_engine_garbage);
  CELL_RUN(test_matrix_engine_slow_start);
  CELL_RUN(test_matrix_engine_5xx);
  CELL_RUN(test_matrix_engine_429);
  CELL_RUN(test_matrix_client_disconnect);
  CELL_RUN(test_matrix_client_slow_reader);
  CELL_RUN(test_matrix_client_slowloris_headers);
  CELL_RUN(test_matrix_client_slowloris_body);
  CELL_RUN(test_matrix_client_malformed_http);
  CELL_RUN(test_matrix_client_malformed_json);
  CELL_RUN(test_matrix_client_oversize);
  CELL_RUN(test_matrix_client_10k_connections);
  CELL_RUN(test_matrix_lua_error);
  CELL_RUN(test_matrix_lua_runaway);
  CELL_RUN(test_matrix_lua_memory_cap);
  CELL_RUN(test_matrix_lua_bad_reload);
  return SL_TEST_EXIT();
}
