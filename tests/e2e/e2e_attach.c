/* End-to-end: Lua sessions in the running daemon (`sluice attach`).
 *
 * Through the real `sluice attach` binary with piped stdin, and directly on
 * the admin socket's framed protocol: the helpers show a stream in flight,
 * both endpoints and the counters; a multi-line function defined in the
 * session works; drain() makes new requests avoid an endpoint and undrain()
 * brings it back; reload() makes a new generation current; `while true do
 * end` (also inside pcall) is stopped by the instruction budget while a
 * parallel stream keeps flowing and completes; a deliberate error and a
 * memory blow-up are reported and the next command works; two sessions at
 * once keep separate states, and closing one leaves the other working.
 *
 * A stream a session must see is held open by the simulated engine (a
 * stall after a few tokens, with the upstream idle timeout out of reach),
 * never by its length: however slow the session, the stream is still
 * there, and it ends only when the test closes it.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include "test.h"
#include "e2e/harness.h"

static char admin_path[108];

static int config(char *buf, size_t cap, int itl_ms) {
  return snprintf(buf, cap,
                  "{\"admin_socket\":\"%s\",\"placement\":{\"watch\":false},"
                  "\"upstream\":{\"idle_timeout_ms\":3600000},"
                  "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"slots\":64,\"endpoints\":["
                  "{\"sim\":{\"seed\":1,\"ttft_ms\":5,\"itl_ms\":%d,\"itl_jitter\":0}},"
                  "{\"sim\":{\"seed\":2,\"ttft_ms\":5,\"itl_ms\":%d,\"itl_jitter\":0}}]}]}",
                  admin_path, itl_ms, itl_ms);
}

static int start(e2e_proc_t *p, int itl_ms) {
  if (snprintf(admin_path, sizeof(admin_path), "%s/admin.sock", e2e_tmpdir()) >= (int)sizeof(admin_path)) return -1;
  char cfg[2048];
  config(cfg, sizeof(cfg), itl_ms);
  if (e2e_serve_start(p, cfg, NULL) < 0) return -1;
  if (e2e_wait_endpoints_ready(p->port, 2, E2E_WAIT_MS) != 1) return -1;
  return e2e_log_wait(p, "admin socket on", E2E_WAIT_MS, NULL, 0) == 1 ? 0 : -1;
}

/* ---- the framed protocol, directly on the socket ---- */

typedef struct {
  nu_conn_t c;
  char status[16];
  char text[65536];
} sess_t;

static int sess_read_frame(sess_t *s) {
  char head[128];
  int64_t deadline = nu_now_ms() + E2E_WAIT_MS;
  if (nu_line(&s->c, head, sizeof(head), deadline) < 0) return -1;
  size_t len;
  if (sscanf(head, "%15s %zu", s->status, &len) != 2 || len >= sizeof(s->text)) {
    fprintf(stderr, "not a frame: \"%s\"\n", head);
    return -1;
  }
  if (nu_read_exact(&s->c, s->text, len, deadline) < 0) return -1;
  s->text[len] = '\0';
  return 0;
}

static sess_t *sess_open(void) {
  sess_t *s = calloc(1, sizeof(*s));
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path, admin_path, strlen(admin_path) + 1);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
    close(fd);
    free(s);
    return NULL;
  }
  nu_conn_init(&s->c, fd);
  nu_send_str(fd, "lua\n");
  if (sess_read_frame(s) < 0 || strcmp(s->status, "ok") != 0 || strstr(s->text, "Lua session") == NULL) {
    fprintf(stderr, "lua: %s %s\n", s->status, s->text);
    close(fd);
    free(s);
    return NULL;
  }
  return s;
}

/* Sends one line and reads its frame; returns 0 (status and text in s). */
static int sess_line(sess_t *s, const char *line) {
  nu_send_str(s->c.fd, line);
  nu_send_str(s->c.fd, "\n");
  return sess_read_frame(s);
}

static void sess_close(sess_t *s) {
  if (s == NULL) return;
  close(s->c.fd);
  free(s);
}

/* The endpoint of the stream-end line for request id. */
static int endpoint_of(const e2e_proc_t *p, const char *id, char *endpoint, size_t cap) {
  char needle[96], line[2048];
  snprintf(needle, sizeof(needle), "stream %s ", id);
  if (!e2e_log_wait(p, needle, E2E_WAIT_MS, line, sizeof(line))) return -1;
  char *ep = strstr(line, "endpoint=");
  if (ep == NULL) return -1;
  ep += 9;
  size_t n = strcspn(ep, " ");
  if (n >= cap) return -1;
  memcpy(endpoint, ep, n);
  endpoint[n] = '\0';
  return 0;
}

/* One short streamed request with x-request-id id, read to its end. */
static int one_request(int port, const char *id) {
  char body[512], headers[256];
  e2e_chat_body(body, sizeof(body), "m", 1, NULL);
  snprintf(headers, sizeof(headers), "x-request-id: %s\r\nx-sim-tokens: 3\r\n", id);
  nu_resp_t head;
  e2e_sse_t s;
  int st = e2e_stream(port, "/v1/chat/completions", headers, body, &head, &s, "chat.completion.chunk", E2E_WAIT_MS);
  int ok = st == 200 && e2e_sse_kinds_are(&s, 1, 3, 0);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  return ok ? 0 : -1;
}

/* Opens a streamed request with x-request-id id that the engine holds open
 * after `after` tokens (a stall: no more tokens, the connection stays until
 * the client leaves), and reads those tokens.  Returns the connection (the
 * stream is in s), or NULL. */
static nu_conn_t *held_stream(int port, const char *id, int after, e2e_sse_t *s) {
  char body[512], headers[256];
  e2e_chat_body(body, sizeof(body), "m", 1, NULL);
  snprintf(headers, sizeof(headers),
           "x-request-id: %s\r\nx-sim-tokens: 60\r\nx-sim-fault: stall\r\nx-sim-fault-at: %d\r\n", id, after);
  nu_resp_t head;
  nu_conn_t *c = e2e_sse_open(port, "/v1/chat/completions", headers, body, &head, s, "chat.completion.chunk",
                              E2E_WAIT_MS);
  int ok = c != NULL && head.status == 200;
  nu_resp_free(&head);
  if (ok) {
    s->stop_after_content = after;
    ok = e2e_sse_read(c, s, E2E_WAIT_MS) == 1;
    s->stop_after_content = 0;
  }
  if (!ok && c != NULL) {
    e2e_conn_close(c);
    c = NULL;
  }
  return c;
}

/* The sum of a /sim/stats field over both in-process engines. */
static int64_t sims_stat(const e2e_proc_t *p, const char *name) {
  return e2e_sim_stat(p->sim_ports[0], name) + e2e_sim_stat(p->sim_ports[1], name);
}

/* Closes a held stream's connection and waits until the engine has seen
 * its request cancelled (one more client_closed_mid_stream) and sluice
 * has logged the stream's end as a cancel.  Returns 0 or -1. */
static int cancel_held(const e2e_proc_t *p, nu_conn_t *c, const char *id) {
  int64_t closed0 = sims_stat(p, "client_closed_mid_stream");
  e2e_conn_close(c);
  int64_t end = nu_now_ms() + E2E_WAIT_MS;
  while (sims_stat(p, "client_closed_mid_stream") < closed0 + 1) {
    if (nu_now_ms() >= end) return -1;
    usleep(10 * 1000);
  }
  char needle[96], line[2048];
  snprintf(needle, sizeof(needle), "stream %s ", id);
  if (!e2e_log_wait(p, needle, E2E_WAIT_MS, line, sizeof(line))) return -1;
  return strstr(line, "end=client_cancel") != NULL ? 0 : -1;
}

/* ---- tests ---- */

static void test_helpers_show_the_live_daemon(void) {
  e2e_proc_t p;
  ASSERT_EQ(start(&p, 20), 0);
  /* A stream in flight for as long as the test needs: 3 tokens, then the
   * engine holds it (it used to be 60 tokens 20 ms apart, which a slow
   * session could outlast). */
  e2e_sse_t sse;
  nu_conn_t *c = held_stream(p.port, "long-1", 3, &sse);
  ASSERT_NOT_NULL(c);

  char *out, *err;
  int rc = e2e_run_cli("attach", admin_path,
                      "print('nstreams=' .. #streams())\n"
                      "s = streams()[1]\n"
                      "print('id=' .. s.id .. ' model=' .. s.model .. ' state=' .. s.state ..\n"
                      "      ' gen=' .. s.generation .. ' tokens>0=' .. tostring(s.tokens > 0))\n"
                      "print('stream endpoint=' .. s.endpoint)\n"
                      "print('neps=' .. #endpoints())\n"
                      "for _, e in ipairs(endpoints()) do\n"
                      "  print('ep=' .. e.name .. ' ready=' .. tostring(e.ready) ..\n"
                      "        ' draining=' .. tostring(e.draining))\n"
                      "end\n"
                      "c = counters()\n"
                      "print('requests>0=' .. tostring(c.requests > 0) .. ' started=' .. c.streams_started)\n"
                      "function busiest()\n"
                      "  local best\n"
                      "  for _, e in ipairs(endpoints()) do\n"
                      "    if not best or e.streams > best.streams then best = e end\n"
                      "  end\n"
                      "  return best.name\n"
                      "end\n"
                      "print('busiest=' .. busiest())\n"
                      "streams()\n"
                      "=pools()[1].models\n"
                      "=generations().current, #generations().list\n",
                      &out, &err);
  ASSERT_EQ(rc, 0);
  ASSERT_STR_EQ(err, "");
  ASSERT(strstr(out, "nstreams=1\n") != NULL);
  ASSERT(strstr(out, "id=long-1 model=m state=streaming gen=1 tokens>0=true\n") != NULL);
  ASSERT(strstr(out, "neps=2\n") != NULL);
  char want[128];
  for (int i = 0; i < 2; i++) {
    snprintf(want, sizeof(want), "ep=127.0.0.1:%d ready=true draining=false\n", p.sim_ports[i]);
    ASSERT(strstr(out, want) != NULL);
  }
  ASSERT(strstr(out, "requests>0=true started=1\n") != NULL);
  /* The endpoint the stream is on is the busiest one. */
  char *se = strstr(out, "stream endpoint=");
  ASSERT_NOT_NULL(se);
  char ep[64];
  ASSERT_EQ(sscanf(se, "stream endpoint=%63s", ep), 1);
  snprintf(want, sizeof(want), "busiest=%s\n", ep);
  ASSERT(strstr(out, want) != NULL);
  /* streams() printed readably: a list of tables with sorted keys. */
  ASSERT(strstr(out, "{\n  {\n    age_ms = ") != NULL);
  ASSERT(strstr(out, "    id = \"long-1\",\n") != NULL);
  ASSERT(strstr(out, "    model = \"m\",\n") != NULL);
  ASSERT(strstr(out, "{ \"m\" }\n") != NULL);
  ASSERT(strstr(out, "1\t1\n") != NULL);
  free(out);
  free(err);

  /* The stream was not disturbed: still there, with what it had, and
   * its client's leaving still cancels it at the engine. */
  rc = e2e_run_cli("attach", admin_path, "=#streams(), streams()[1].id, streams()[1].state\n", &out, &err);
  ASSERT_EQ(rc, 0);
  ASSERT_STR_EQ(out, "1\t\"long-1\"\t\"streaming\"\n");
  free(out);
  free(err);
  ASSERT(e2e_sse_kinds_eq(&sse, "RCCC"));
  ASSERT_EQ(cancel_held(&p, c, "long-1"), 0);
  e2e_sse_free(&sse);

  /* reload() makes a new generation current. */
  rc = e2e_run_cli("attach", admin_path, "=reload()\n=generations().current\n", &out, &err);
  ASSERT_EQ(rc, 0);
  ASSERT(strstr(out, "true\t\"generation 2 is current") != NULL);
  ASSERT(strstr(out, "\n2\n") != NULL);
  free(out);
  free(err);
  ASSERT_EQ(e2e_counter(p.port, "reloads_ok"), 1);
  ASSERT_EQ(one_request(p.port, "after-reload"), 0);
  ASSERT_EQ(e2e_stop(&p), 0);
}

static void test_drain_and_undrain(void) {
  e2e_proc_t p;
  ASSERT_EQ(start(&p, 1), 0);
  char first[64], second[64], ep[64], args[700], id[32];
  snprintf(first, sizeof(first), "127.0.0.1:%d", p.sim_ports[0]);
  snprintf(second, sizeof(second), "127.0.0.1:%d", p.sim_ports[1]);
  /* Least loaded with ties to the first endpoint: an idle daemon places
   * there. */
  ASSERT_EQ(one_request(p.port, "before-drain"), 0);
  ASSERT_EQ(endpoint_of(&p, "before-drain", ep, sizeof(ep)), 0);
  ASSERT_STR_EQ(ep, first);

  char *out, *err;
  snprintf(args, sizeof(args), "-e '=drain(\"%s\")' -e '=drain(\"nope\")' -e 'print(endpoints()[1].draining)' %s",
           first, admin_path);
  int rc = e2e_run_cli("attach", args, "", &out, &err);
  ASSERT_EQ(rc, 0);
  char want[256];
  snprintf(want, sizeof(want), "true\t\"%s is draining: new streams avoid it", first);
  ASSERT(strstr(out, want) != NULL);
  ASSERT(strstr(out, "nil\t\"no endpoint \\\"nope\\\" (endpoints: ") != NULL);
  ASSERT(strstr(out, "\ntrue\n") != NULL);
  free(out);
  free(err);
  for (int i = 0; i < 4; i++) {
    snprintf(id, sizeof(id), "drained-%d", i);
    ASSERT_EQ(one_request(p.port, id), 0);
    ASSERT_EQ(endpoint_of(&p, id, ep, sizeof(ep)), 0);
    ASSERT_STR_EQ(ep, second);
  }
  /* undrain by id this time (endpoint 0 is the first). */
  rc = e2e_run_cli("attach", admin_path, "=undrain(0)\n=endpoints()[1].draining\n", &out, &err);
  ASSERT_EQ(rc, 0);
  snprintf(want, sizeof(want), "true\t\"%s takes new streams again\"\nfalse\n", first);
  ASSERT_STR_EQ(out, want);
  free(out);
  free(err);
  ASSERT_EQ(one_request(p.port, "undrained"), 0);
  ASSERT_EQ(endpoint_of(&p, "undrained", ep, sizeof(ep)), 0);
  ASSERT_STR_EQ(ep, first);
  ASSERT_EQ(e2e_stop(&p), 0);
}

static void test_runaway_and_errors_leave_it_serving(void) {
  e2e_proc_t p;
  ASSERT_EQ(start(&p, 20), 0);
  /* Two parallel streams: one the engine holds after 2 tokens, which the
   * session must still see at its end (the flaky version counted a
   * 40-token stream that a slow session could outlast), and one of 40
   * tokens 20 ms apart that flows and must complete. */
  e2e_sse_t held;
  nu_conn_t *hc = held_stream(p.port, "held", 2, &held);
  ASSERT_NOT_NULL(hc);
  char body[512];
  e2e_chat_body(body, sizeof(body), "m", 1, NULL);
  nu_resp_t head;
  e2e_sse_t sse;
  nu_conn_t *c = e2e_sse_open(p.port, "/v1/chat/completions", "x-sim-tokens: 40\r\n", body, &head, &sse,
                              "chat.completion.chunk", E2E_WAIT_MS);
  ASSERT_NOT_NULL(c);
  ASSERT_EQ(head.status, 200);
  nu_resp_free(&head);
  sse.stop_after_content = 1;
  ASSERT_EQ(e2e_sse_read(c, &sse, E2E_WAIT_MS), 1);

  char *out, *err;
  int rc = e2e_run_cli("attach", admin_path,
                      "while true do end\n"
                      "=1 + 1\n"
                      "pcall(function() while true do end end)\n"
                      "=2 + 2\n"
                      "error('boom')\n"
                      "=3 + 3\n"
                      "x = string.rep('x', 200 * 2^20)\n"
                      "=4 + 4\n"
                      /* fills the session to its cap and keeps it: the
                       * next chunk still compiles and can let it go */
                      "t = {} for i = 1, 1e7 do t[i] = { i } end\n"
                      "t = nil\n"
                      "=5 + 5\n"
                      "jit.on()\n"
                      "os.exit(0)\n"
                      "for _, s in ipairs(streams()) do if s.id == 'held' then print(s.state) end end\n",
                      &out, &err);
  ASSERT_EQ(rc, 1); /* some chunks failed */
  ASSERT_STR_EQ(out, "2\n4\n6\n8\n10\nstreaming\n");
  /* Both runaway loops were stopped by the budget. */
  const char *b1 = strstr(err, "instruction budget exceeded");
  ASSERT_NOT_NULL(b1);
  ASSERT_NOT_NULL(strstr(b1 + 1, "instruction budget exceeded"));
  ASSERT(strstr(err, "attach:1: boom\nstack traceback:\n") != NULL);
  const char *m1 = strstr(err, "not enough memory (this session is capped at 67108864 bytes)");
  ASSERT_NOT_NULL(m1);
  ASSERT_NOT_NULL(strstr(m1 + 1, "not enough memory"));
  ASSERT(strstr(err, "the JIT stays off") != NULL);
  ASSERT(strstr(err, "os.exit would stop the daemon") != NULL);
  free(out);
  free(err);

  /* The flowing stream completes, the held one is intact and still
   * cancels at the engine; new requests are served. */
  sse.stop_after_content = 0;
  ASSERT_EQ(e2e_sse_read(c, &sse, E2E_WAIT_MS), 0);
  ASSERT(e2e_sse_kinds_are(&sse, 1, 40, 0));
  e2e_sse_free(&sse);
  e2e_conn_close(c);
  ASSERT(e2e_sse_kinds_eq(&held, "RCC"));
  ASSERT_EQ(cancel_held(&p, hc, "held"), 0);
  e2e_sse_free(&held);
  ASSERT_EQ(one_request(p.port, "after-runaway"), 0);
  ASSERT_EQ(e2e_log_wait(&p, "attach session 1: closed", E2E_WAIT_MS, NULL, 0), 1);
  ASSERT_EQ(e2e_stop(&p), 0);
}

static void test_two_sessions_and_the_framed_protocol(void) {
  e2e_proc_t p;
  ASSERT_EQ(start(&p, 20), 0);
  sess_t *a = sess_open(), *b = sess_open();
  ASSERT_NOT_NULL(a);
  ASSERT_NOT_NULL(b);
  /* Separate states. */
  ASSERT_EQ(sess_line(a, "x = 'from a'"), 0);
  ASSERT_STR_EQ(a->status, "ok");
  ASSERT_STR_EQ(a->text, "");
  ASSERT_EQ(sess_line(b, "x = 'from b'"), 0);
  ASSERT_EQ(sess_line(a, "=x"), 0);
  ASSERT_STR_EQ(a->status, "ok");
  ASSERT_STR_EQ(a->text, "\"from a\"");
  ASSERT_EQ(sess_line(b, "=x"), 0);
  ASSERT_STR_EQ(b->text, "\"from b\"");
  /* Multi-line: "more" until the chunk is complete. */
  ASSERT_EQ(sess_line(b, "function g(n)"), 0);
  ASSERT_STR_EQ(b->status, "more");
  ASSERT_STR_EQ(b->text, "");
  ASSERT_EQ(sess_line(b, "  return { n = n, list = { n, n * 2 } }"), 0);
  ASSERT_STR_EQ(b->status, "more");
  ASSERT_EQ(sess_line(b, "end"), 0);
  ASSERT_STR_EQ(b->status, "ok");
  ASSERT_EQ(sess_line(b, "g(3)"), 0);
  ASSERT_STR_EQ(b->text, "{ list = { 3, 6 }, n = 3 }");
  /* A runaway chunk in one session; the other answers right after. */
  ASSERT_EQ(sess_line(a, "while true do end"), 0);
  ASSERT_STR_EQ(a->status, "error");
  ASSERT(strstr(a->text, "instruction budget exceeded") != NULL);
  ASSERT_EQ(sess_line(b, "=#endpoints()"), 0);
  ASSERT_STR_EQ(b->text, "2");
  /* A syntax error is an error, not "more". */
  ASSERT_EQ(sess_line(a, "x = = 1"), 0);
  ASSERT_STR_EQ(a->status, "error");
  ASSERT(strstr(a->text, "attach:1:") != NULL);
  /* print() output comes back in the frame, before the values. */
  ASSERT_EQ(sess_line(a, "print('a', 1) return 'r'"), 0);
  ASSERT_STR_EQ(a->text, "a\t1\n\"r\"");
  /* Closing a session (mid-chunk) leaves the other working. */
  ASSERT_EQ(sess_line(a, "for i = 1, 3 do"), 0);
  ASSERT_STR_EQ(a->status, "more");
  sess_close(a);
  ASSERT_EQ(sess_line(b, "=x"), 0);
  ASSERT_STR_EQ(b->text, "\"from b\"");
  /* The line protocol still works beside the sessions. */
  sess_t *cmd = calloc(1, sizeof(*cmd));
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, admin_path, strlen(admin_path) + 1);
  ASSERT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  nu_conn_init(&cmd->c, fd);
  nu_send_str(fd, "help\n");
  char line[256];
  ASSERT_GE(nu_line(&cmd->c, line, sizeof(line), nu_now_ms() + E2E_WAIT_MS), 0);
  ASSERT_STR_EQ(line, "commands: reload | status | lua | help");
  sess_close(cmd);
  sess_close(b);
  ASSERT_EQ(e2e_log_wait(&p, "attach session 2: closed", E2E_WAIT_MS, NULL, 0), 1);
  /* A session still attached when the daemon stops is closed with it
   * (the stop checks a clean exit and, under ASan, no leak). */
  sess_t *left = sess_open();
  ASSERT_NOT_NULL(left);
  ASSERT_EQ(sess_line(left, "big = string.rep('y', 1000000)"), 0);
  ASSERT_STR_EQ(left->status, "ok");
  ASSERT_EQ(e2e_stop(&p), 0);
  ASSERT_EQ(e2e_log_wait(&p, "attach session 3: closed", 1000, NULL, 0), 1);
  sess_close(left);
}

static void test_client_errors(void) {
  /* No daemon: exit status 2 and a message naming the socket. */
  char *out, *err, args[700];
  snprintf(args, sizeof(args), "%s/none.sock", e2e_tmpdir());
  int rc = e2e_run_cli("attach", args, "=1\n", &out, &err);
  ASSERT_EQ(rc, 2);
  ASSERT(strstr(err, "cannot connect to") != NULL && strstr(err, "none.sock") != NULL);
  free(out);
  free(err);
  /* $SLUICE_ADMIN_SOCKET is the default; an incomplete chunk at the end
   * of input is an error. */
  e2e_proc_t p;
  ASSERT_EQ(start(&p, 20), 0);
  setenv("SLUICE_ADMIN_SOCKET", admin_path, 1);
  rc = e2e_run_cli("attach", "", "=1\nfunction f()\n", &out, &err);
  unsetenv("SLUICE_ADMIN_SOCKET");
  ASSERT_EQ(rc, 1);
  ASSERT_STR_EQ(out, "1\n");
  ASSERT(strstr(err, "incomplete chunk") != NULL);
  free(out);
  free(err);
  ASSERT_EQ(e2e_stop(&p), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 180);
  E2E_RUN(test_helpers_show_the_live_daemon);
  E2E_RUN(test_drain_and_undrain);
  E2E_RUN(test_runaway_and_errors_leave_it_serving);
  E2E_RUN(test_two_sessions_and_the_framed_protocol);
  E2E_RUN(test_client_errors);
  return SL_TEST_EXIT();
}
