/* End-to-end: no Lua code can freeze the daemon.
 *
 *  - Placement and narration policies that loop forever on real traffic
 *    (but not on the sample inputs every generation is tried on), in the
 *    config at start and swapped in by a reload: under 50 streams every
 *    stream completes, placement falls back to the C least-loaded rule (two
 *    held streams land on two endpoints, not both on the first), every
 *    budget stop is counted and logged with file and line, after 8 stops in
 *    a row each policy is suspended for its generation (said once), /health
 *    answers, and SIGTERM drains and exits cleanly.
 *  - Policies that loop on the samples are refused: `sluice serve` does not
 *    start, a reload keeps the old generation, `sluice check` exits 1; the
 *    messages name the sample, the budget and the line.
 *  - A policy stuck in C (an FFI call that blocks): the loop watchdog logs
 *    what is running (phase, file, request) and, past watchdog.abort_ms,
 *    ends the process with status 70; a shorter block is logged when the
 *    loop turns again and counted in watchdog_stalls.
 * Streams are held open with the simulated engine's stall fault, never by
 * timing.
 */
#include "test.h"
#include "e2e/harness.h"

#define NSTREAMS 50

static char dir_policy[300], dir_narration[300], admin_path[100];

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

/* Loops forever for model "m" (real traffic); returns candidate 1 on the
 * samples, whose model is "sample-model". */
static const char RUNAWAY_PLACEMENT[] =
    "local ffi = require 'ffi'\n"
    "return { name = 'runaway', version = '1', schema = {},\n"
    "  place = function(ctx)\n"
    "    if ffi.string(ctx.model) == 'm' then while true do end end\n"
    "    return 1, 'sample'\n"
    "  end }\n";

/* Loops forever for every real event; says something on the samples. */
static const char RUNAWAY_NARRATION[] =
    "local narration = require 'sluice.narration'\n"
    "return { name = 'runaway_narration', version = '1', schema = {},\n"
    "  narrate = function(ev)\n"
    "    if not narration.str(ev.request_id):find('^sample%-') then while true do end end\n"
    "    return 'sample'\n"
    "  end }\n";

static const char ALWAYS_LOOPS[] =
    "return { name = 'always', version = '1', schema = {},\n"
    "  place = function(ctx)\n"
    "    while true do end\n"
    "  end }\n";

static const char ALWAYS_LOOPS_NARRATION[] =
    "return { name = 'always_narration', version = '1', schema = {},\n"
    "  narrate = function(ev)\n"
    "    while true do end\n"
    "  end }\n";

static void paths(void) {
  if (snprintf(dir_policy, sizeof(dir_policy), "%s/policy.lua", e2e_tmpdir()) >= (int)sizeof(dir_policy) ||
      snprintf(dir_narration, sizeof(dir_narration), "%s/narration.lua", e2e_tmpdir()) >= (int)sizeof(dir_narration))
    exit(2);
  if (snprintf(admin_path, sizeof(admin_path), "%s/admin.sock", e2e_tmpdir()) >= (int)sizeof(admin_path)) exit(2);
}

static int config(char *buf, size_t cap, const char *placement, const char *narration, const char *extra) {
  return snprintf(buf, cap,
                  "{\"placement\":{\"policy\":\"%s\",\"watch\":false},\"narration\":{\"policy\":\"%s\"},"
                  "\"admin_socket\":\"%s\",\"lua\":{\"instruction_budget\":200000}%s,"
                  "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"slots\":64,\"endpoints\":["
                  "{\"sim\":{\"seed\":1,\"ttft_ms\":5,\"itl_ms\":2,\"itl_jitter\":0}},"
                  "{\"sim\":{\"seed\":2,\"ttft_ms\":5,\"itl_ms\":2,\"itl_jitter\":0}}]}]}",
                  placement, narration, admin_path, extra ? extra : "");
}

static int admin(const char *cmd, char *out, size_t cap) { return e2e_admin(admin_path, cmd, out, cap); }

/* Two streams that stall after 2 tokens, held open: with least-loaded
 * placement they go to different endpoints (the first candidate rule
 * would put both on the first). */
static void hold_two(const e2e_proc_t *p, nu_conn_t *held[2], e2e_sse_t sse[2]) {
  char body[512];
  e2e_chat_body(body, sizeof(body), "m", 1, NULL);
  for (int i = 0; i < 2; i++) {
    nu_resp_t head;
    char hdr[160];
    snprintf(hdr, sizeof(hdr), "X-Request-Id: held-%d\r\nx-sim-tokens: 10\r\nx-sim-fault: stall\r\nx-sim-fault-at: 2\r\n", i);
    held[i] = e2e_sse_open(p->port, "/v1/chat/completions", hdr, body, &head, &sse[i], "chat.completion.chunk", 30000);
    ASSERT_NOT_NULL(held[i]);
    ASSERT_EQ(head.status, 200);
    nu_resp_free(&head);
    sse[i].stop_after_content = 2;
    ASSERT_EQ(e2e_sse_read(held[i], &sse[i], 30000), 1);
  }
  /* One stalled stream on each simulated engine. */
  ASSERT_EQ(e2e_sim_stat(p->sim_ports[0], "active"), 1);
  ASSERT_EQ(e2e_sim_stat(p->sim_ports[1], "active"), 1);
}

static void release_two(nu_conn_t *held[2], e2e_sse_t sse[2]) {
  for (int i = 0; i < 2; i++) {
    e2e_conn_close(held[i]);
    e2e_sse_free(&sse[i]);
  }
}

/* NSTREAMS streams at once, each read to its end: all complete. */
static void run_streams(const e2e_proc_t *p) {
  static nu_conn_t *c[NSTREAMS];
  static e2e_sse_t s[NSTREAMS];
  char body[512];
  e2e_chat_body(body, sizeof(body), "m", 1, NULL);
  for (int i = 0; i < NSTREAMS; i++) {
    nu_resp_t head;
    c[i] = e2e_sse_open(p->port, "/v1/chat/completions", "x-sim-tokens: 5\r\n", body, &head, &s[i],
                        "chat.completion.chunk", 30000);
    ASSERT_NOT_NULL(c[i]);
    ASSERT_EQ(head.status, 200);
    nu_resp_free(&head);
  }
  for (int i = 0; i < NSTREAMS; i++) {
    ASSERT_EQ(e2e_sse_read(c[i], &s[i], 60000), 0);
    if (!e2e_sse_kinds_are(&s[i], 1, 5, 0)) {
      fprintf(stderr, "stream %d: kinds %s\n", i, s[i].kinds);
      ASSERT(0);
    }
    e2e_conn_close(c[i]);
    e2e_sse_free(&s[i]);
  }
}

static int count_lines(const e2e_proc_t *p, const char *needle) {
  char *log = e2e_log_text(p);
  int n = 0;
  for (const char *q = log; q && (q = strstr(q, needle)) != NULL; q++) n++;
  free(log);
  return n;
}

/* The budget stops were counted and logged with file and line; after
 * SL_BUDGET_SUSPEND_AFTER (8) stops in a row each policy was suspended for
 * its generation, said once, and the fallbacks served the rest. */
static void check_kills(const e2e_proc_t *p, int64_t placements, unsigned long long gen) {
  ASSERT_GE(e2e_counter(p->port, "placement_policy_errors"), placements);
  ASSERT_EQ(e2e_wait_counter(p->port, "lua_budget_exceeded", 16, E2E_WAIT_MS), 16);
  ASSERT_GE(e2e_counter(p->port, "narration_policy_errors"), 8);
  char needle[1024];
  snprintf(needle, sizeof(needle), "stopped after 200000 VM instructions at %s:4", dir_policy);
  ASSERT_EQ(e2e_log_wait(p, needle, E2E_WAIT_MS, NULL, 0), 1);
  ASSERT_EQ(count_lines(p, needle), 8);
  ASSERT_EQ(count_lines(p, "using the least-loaded rule"), 8);
  snprintf(needle, sizeof(needle),
           "8 stops in a row: the policy is suspended for generation %llu (the C rule places every request", gen);
  ASSERT_EQ(count_lines(p, needle), 1);
  snprintf(needle, sizeof(needle), "narration %s stopped after 200000 VM instructions at %s:4", dir_narration,
           dir_narration);
  ASSERT_EQ(e2e_log_wait(p, needle, E2E_WAIT_MS, NULL, 0), 1);
  ASSERT_EQ(count_lines(p, needle), 8);
  snprintf(needle, sizeof(needle),
           "8 stops in a row: the policy is suspended for generation %llu (plain narration until a reload)", gen);
  ASSERT_EQ(count_lines(p, needle), 1);
  /* Narration fell back to the plain rendering: the events are still told. */
  ASSERT_EQ(e2e_log_wait(p, "stream_end: stream ended (complete)", E2E_WAIT_MS, NULL, 0), 1);
  ASSERT_GE(count_lines(p, "fallback (policy suspended): least loaded"), 1);
}

static void test_runaway_policies_in_config(void) {
  paths();
  write_file(dir_policy, RUNAWAY_PLACEMENT);
  write_file(dir_narration, RUNAWAY_NARRATION);
  char cfg[2048];
  config(cfg, sizeof(cfg), dir_policy, dir_narration, NULL);
  e2e_proc_t p;
  ASSERT_EQ(e2e_serve_start(&p, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_endpoints_ready(p.port, 2, 30000), 1);
  nu_conn_t *held[2];
  e2e_sse_t sse[2];
  hold_two(&p, held, sse);
  run_streams(&p);
  ASSERT_EQ(e2e_wait_ready(p.port, 200, 10000), 0);
  check_kills(&p, NSTREAMS + 2, 1);
  release_two(held, sse);
  ASSERT_EQ(e2e_stop(&p), 0);
}

static void test_runaway_policies_through_reload(void) {
  paths();
  write_file(dir_policy, "return require 'placement.least_loaded'\n");
  write_file(dir_narration, "return require 'narration'\n");
  char cfg[2048];
  config(cfg, sizeof(cfg), dir_policy, dir_narration, NULL);
  e2e_proc_t p;
  ASSERT_EQ(e2e_serve_start(&p, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_endpoints_ready(p.port, 2, 30000), 1);
  ASSERT_EQ(e2e_counter(p.port, "lua_budget_exceeded"), 0);
  /* Streams in flight under generation 1 when the runaway policies come. */
  nu_conn_t *held[2];
  e2e_sse_t sse[2];
  hold_two(&p, held, sse);
  write_file(dir_policy, RUNAWAY_PLACEMENT);
  write_file(dir_narration, RUNAWAY_NARRATION);
  char reply[2048];
  ASSERT_EQ(admin("reload", reply, sizeof(reply)), 0);
  ASSERT(strstr(reply, "generation 2 is current") != NULL);
  run_streams(&p);
  check_kills(&p, NSTREAMS, 2);
  /* The held streams (generation 1) are still alive and end normally. */
  release_two(held, sse);
  ASSERT_EQ(e2e_stop(&p), 0);
}

/* One streamed request of 3 tokens; 1 if it came whole. */
static int three_tokens(const e2e_proc_t *p, const char *headers) {
  nu_resp_t head;
  e2e_sse_t s;
  char body[512];
  int st = e2e_stream(p->port, "/v1/chat/completions", headers, e2e_chat_body(body, sizeof(body), "m", 1, NULL),
                      &head, &s, "chat.completion.chunk", 60000);
  int ok = st == 200 && e2e_sse_kinds_are(&s, 1, 3, 0);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  return ok;
}

static void test_looping_on_samples_is_refused(void) {
  paths();
  char cfg[2048];
  /* At start: serve refuses to start. */
  write_file(dir_policy, ALWAYS_LOOPS);
  write_file(dir_narration, "return require 'narration'\n");
  config(cfg, sizeof(cfg), dir_policy, dir_narration, NULL);
  e2e_proc_t p;
  ASSERT_EQ(e2e_serve_spawn(&p, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_exit(&p, 60000), 0);
  ASSERT(WIFEXITED(p.status));
  ASSERT_EQ(WEXITSTATUS(p.status), 2);
  char needle[1024];
  snprintf(needle, sizeof(needle), "placement sample 1 (1 fresh candidate): instruction budget exceeded: placement %s "
           "stopped after 200000 VM instructions at %s:3", dir_policy, dir_policy);
  ASSERT_EQ(e2e_log_wait(&p, needle, 1000, NULL, 0), 1);

  /* sluice check refuses both kinds, with the default budget. */
  char *out = NULL, *err = NULL;
  ASSERT_EQ(e2e_run_cli("check", dir_policy, "", &out, &err), 1);
  ASSERT(strstr(err, "placement sample 1") != NULL);
  ASSERT(strstr(err, "stopped after 1000000 VM instructions") != NULL);
  free(out);
  free(err);
  write_file(dir_narration, ALWAYS_LOOPS_NARRATION);
  ASSERT_EQ(e2e_run_cli("check", dir_narration, "", &out, &err), 1);
  snprintf(needle, sizeof(needle), "narration %s stopped after 1000000 VM instructions at %s:3", dir_narration,
           dir_narration);
  ASSERT(strstr(err, needle) != NULL);
  free(out);
  free(err);
  /* A module whose top level loops: the load budget stops it. */
  write_file(dir_policy, "local n = 0\nwhile true do n = n + 1 end\n");
  ASSERT_EQ(e2e_run_cli("check", dir_policy, "", &out, &err), 1);
  ASSERT(strstr(err, "instruction budget exceeded: load") != NULL);
  free(out);
  free(err);
  /* jit.on is fenced: it would defeat the budget. */
  write_file(dir_policy, "jit.on()\nreturn require 'placement.least_loaded'\n");
  ASSERT_EQ(e2e_run_cli("check", dir_policy, "", &out, &err), 1);
  ASSERT(strstr(err, "the JIT stays off") != NULL);
  free(out);
  free(err);
  /* The shipped policies pass, and check prints what they chose. */
  ASSERT_EQ(e2e_run_cli("check", "least_loaded", "", &out, &err), 0);
  ASSERT(strstr(out, "placement sample 6 (64 candidates)") != NULL);
  ASSERT(strstr(out, "ok: ") != NULL);
  free(out);
  free(err);

  /* Through a reload: the old generation stays, the message says why. */
  write_file(dir_policy, "return require 'placement.least_loaded'\n");
  write_file(dir_narration, "return require 'narration'\n");
  ASSERT_EQ(e2e_serve_start(&p, cfg, NULL), 0);
  write_file(dir_policy, ALWAYS_LOOPS);
  char reply[2048];
  ASSERT_EQ(admin("reload", reply, sizeof(reply)), 1);
  ASSERT(strstr(reply, "generation 1 stays current") != NULL);
  ASSERT(strstr(reply, "instruction budget exceeded") != NULL);
  write_file(dir_policy, "return require 'placement.least_loaded'\n");
  write_file(dir_narration, ALWAYS_LOOPS_NARRATION);
  ASSERT_EQ(admin("reload", reply, sizeof(reply)), 1);
  ASSERT(strstr(reply, "narration of one sample event of each kind") != NULL);
  ASSERT_EQ(e2e_counter(p.port, "reloads_failed"), 2);
  ASSERT_EQ(three_tokens(&p, "x-sim-tokens: 3\r\n"), 1);
  ASSERT_EQ(e2e_stop(&p), 0);
}

/* Blocks in C (poll with no descriptors) for `ms` on real traffic. */
static void write_blocking_policy(int ms) {
  char text[1024];
  snprintf(text, sizeof(text),
           "local ffi = require 'ffi'\n"
           "ffi.cdef 'int poll(void *fds, unsigned long nfds, int timeout)'\n"
           "return { name = 'blocks', version = '1', schema = {},\n"
           "  place = function(ctx)\n"
           "    if ffi.string(ctx.model) == 'm' then ffi.C.poll(nil, 0, %d) end\n"
           "    return 1, 'after the block'\n"
           "  end }\n",
           ms);
  write_file(dir_policy, text);
}

static void test_watchdog_ends_a_stuck_loop(void) {
  paths();
  write_blocking_policy(600000);
  write_file(dir_narration, "return require 'narration'\n");
  char cfg[2048];
  config(cfg, sizeof(cfg), dir_policy, dir_narration, ",\"watchdog\":{\"warn_ms\":500,\"abort_ms\":3000}");
  e2e_proc_t p;
  ASSERT_EQ(e2e_serve_start(&p, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_endpoints_ready(p.port, 2, 30000), 1);
  char body[512];
  e2e_chat_body(body, sizeof(body), "m", 1, NULL);
  nu_conn_t *c = e2e_conn_open(p.port, 0);
  ASSERT_NOT_NULL(c);
  ASSERT_EQ(nu_send_request(c->fd, "POST", "/v1/chat/completions", "X-Request-Id: wd-1\r\n", body), 0);
  /* The loop is stuck in the policy's poll(): the watchdog says so, then
   * ends the process. */
  ASSERT_EQ(e2e_wait_exit(&p, 120000), 0);
  ASSERT(WIFEXITED(p.status));
  ASSERT_EQ(WEXITSTATUS(p.status), 70);
  char needle[1024];
  snprintf(needle, sizeof(needle), "the event loop has not turned for");
  ASSERT_EQ(e2e_log_wait(&p, needle, 1000, NULL, 0), 1);
  snprintf(needle, sizeof(needle), "running: placement %s for request wd-1", dir_policy);
  ASSERT_EQ(e2e_log_wait(&p, needle, 1000, NULL, 0), 1);
  ASSERT_EQ(e2e_log_wait(&p, "ending the process (exit status 70) so a supervisor can restart it", 1000, NULL, 0), 1);
  e2e_conn_close(c);
}

static void test_watchdog_logs_a_stall_that_ends(void) {
  paths();
  write_blocking_policy(3000);
  write_file(dir_narration, "return require 'narration'\n");
  char cfg[2048];
  config(cfg, sizeof(cfg), dir_policy, dir_narration, ",\"watchdog\":{\"warn_ms\":300,\"abort_ms\":0}");
  e2e_proc_t p;
  ASSERT_EQ(e2e_serve_start(&p, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_endpoints_ready(p.port, 2, 30000), 1);
  ASSERT_EQ(three_tokens(&p, "X-Request-Id: wd-2\r\nx-sim-tokens: 3\r\n"), 1);
  ASSERT_EQ(e2e_log_wait(&p, "running: placement", E2E_WAIT_MS, NULL, 0), 1);
  ASSERT_EQ(e2e_log_wait(&p, "the event loop turns again after", E2E_WAIT_MS, NULL, 0), 1);
  ASSERT_GE(e2e_wait_counter(p.port, "watchdog_stalls", 1, E2E_WAIT_MS), 1);
  ASSERT_EQ(e2e_stop(&p), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 280);
  E2E_RUN(test_runaway_policies_in_config);
  E2E_RUN(test_runaway_policies_through_reload);
  E2E_RUN(test_looping_on_samples_is_refused);
  E2E_RUN(test_watchdog_ends_a_stuck_loop);
  E2E_RUN(test_watchdog_logs_a_stall_that_ends);
  return SL_TEST_EXIT();
}
