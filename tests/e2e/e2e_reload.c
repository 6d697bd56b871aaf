/* End-to-end: hot reload of the placement policy by generations.
 *
 * With hundreds of streams in flight, the policy file is rewritten 20 times
 * (alternating two rules, reloaded through the admin socket); every stream
 * completes with [DONE], streams admitted after a reload follow the new rule,
 * old generations are freed once their streams end, and a counter the
 * policy keeps in the TTL dictionary survives every reload.  A broken policy
 * file leaves the old generation serving and the error names the line; a
 * policy that raises on the sample contexts is refused, and one that raises
 * only on real traffic falls back to the C least-loaded rule.
 */
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "test.h"
#include "e2e/harness.h"

#define NSTREAMS 240
#define NRELOADS 20

static char policy_path[600];
static char admin_path[100];

/* Replaces the policy file in one step (a temporary file renamed over
 * it), so a watcher sees one change, never a half-written file. */
static void replace_policy_file(const char *text) {
  char tmp[640];
  snprintf(tmp, sizeof(tmp), "%s.tmp", policy_path);
  FILE *f = fopen(tmp, "w");
  fputs(text, f);
  fclose(f);
  rename(tmp, policy_path);
}

/* Rule "first" picks candidate 1, rule "last" the last one; both count
 * their placements in the TTL dictionary and put the count in the reason. */
static void write_policy(const char *rule) {
  char text[1024];
  snprintf(text, sizeof(text),
          "local dict = require 'sluice.dict'\n"
          "return {\n"
          "  name = 'test_%s', version = '1', schema = {},\n"
          "  place = function(ctx)\n"
          "    local n = dict.incr('e2e_placements', 1, 0)\n"
          "    local k = %s\n"
          "    return k, 'rule %s n=' .. tostring(n)\n"
          "  end,\n"
          "}\n",
          rule, strcmp(rule, "first") == 0 ? "1" : "ctx.n", rule);
  replace_policy_file(text);
}

static void write_raw_policy(const char *text) { replace_policy_file(text); }

static int admin(const char *cmd, char *out, size_t cap) { return e2e_admin(admin_path, cmd, out, cap); }

typedef struct {
  nu_conn_t *c;
  e2e_sse_t sse;
  int done;
} stream_t;

static int config(char *buf, size_t cap) {
  return snprintf(buf, cap,
                  "{\"placement\":{\"policy\":\"%s\",\"watch\":false},\"admin_socket\":\"%s\","
                  "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"slots\":512,\"endpoints\":["
                  "{\"sim\":{\"seed\":1,\"ttft_ms\":5,\"itl_ms\":20,\"itl_jitter\":0}},"
                  "{\"sim\":{\"seed\":2,\"ttft_ms\":5,\"itl_ms\":20,\"itl_jitter\":0}}]}]}",
                  policy_path, admin_path);
}

/* The endpoint and placement reason of the stream-end line for request id. */
static int placement_of(const e2e_proc_t *p, const char *id, char *endpoint, char *reason) {
  char *log = e2e_log_text(p);
  char needle[96];
  snprintf(needle, sizeof(needle), "stream %s ", id);
  char *line = strstr(log, needle);
  int ok = -1;
  if (line) {
    char *ep = strstr(line, "endpoint=");
    char *pl = strstr(line, "placement=\"");
    if (ep && pl && sscanf(ep, "endpoint=%63s", endpoint) == 1 && sscanf(pl, "placement=\"%127[^\"]", reason) == 1)
      ok = 0;
  }
  free(log);
  return ok;
}

static void one_request(int port, const char *id, e2e_proc_t *p, char *endpoint, char *reason) {
  char hdr[128], body[512];
  snprintf(hdr, sizeof(hdr), "X-Request-Id: %s\r\nx-sim-tokens: 2\r\n", id);
  nu_resp_t head;
  e2e_sse_t s;
  e2e_stream(port, "/v1/chat/completions", hdr, e2e_chat_body(body, sizeof(body), "m", 1, NULL), &head, &s,
             "chat.completion.chunk", E2E_WAIT_MS);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  char needle[96];
  snprintf(needle, sizeof(needle), "stream %s ", id);
  /* The stream's line is written after its last byte: wait for it (an
   * empty reason then fails the caller's check). */
  e2e_log_wait(p, needle, E2E_WAIT_MS, NULL, 0);
  endpoint[0] = reason[0] = '\0';
  placement_of(p, id, endpoint, reason);
}

static void test_reload_under_load(void) {
  snprintf(policy_path, sizeof(policy_path), "%s/policy.lua", e2e_tmpdir());
  if (snprintf(admin_path, sizeof(admin_path), "%s/admin.sock", e2e_tmpdir()) >= (int)sizeof(admin_path)) ASSERT(0);
  write_policy("first");
  char cfg[2048];
  config(cfg, sizeof(cfg));
  e2e_proc_t p;
  ASSERT_EQ(e2e_serve_start(&p, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_endpoints_ready(p.port, 2, E2E_WAIT_MS), 1);

  /* The first rule is in force. */
  char ep_first[64], ep_last[64], reason[128];
  one_request(p.port, "probe-0", &p, ep_first, reason);
  ASSERT(strncmp(reason, "rule first", 10) == 0);

  /* Hundreds of streams in flight: 40 tokens, 20 ms apart (~0.8 s each). */
  static stream_t st[NSTREAMS];
  char body[512];
  e2e_chat_body(body, sizeof(body), "m", 1, NULL);
  for (int i = 0; i < NSTREAMS; i++) {
    nu_resp_t head;
    st[i].c = e2e_sse_open(p.port, "/v1/chat/completions", "x-sim-tokens: 40\r\n", body, &head, &st[i].sse,
                           "chat.completion.chunk", E2E_WAIT_MS);
    ASSERT_NOT_NULL(st[i].c);
    ASSERT_EQ(head.status, 200);
    nu_resp_free(&head);
    st[i].done = 0;
  }
  /* Reload 20 times while they stream, alternating the rules. */
  char reply[2048];
  int64_t freed_before = e2e_counter(p.port, "generations_freed");
  for (int r = 0; r < NRELOADS; r++) {
    write_policy(r % 2 == 0 ? "last" : "first");
    ASSERT_EQ(admin("reload", reply, sizeof(reply)), 0);
    usleep(20 * 1000);
  }
  /* Read every stream to its end. */
  int remaining = NSTREAMS;
  int64_t deadline = nu_now_ms() + 4 * E2E_WAIT_MS;
  while (remaining > 0 && nu_now_ms() < deadline) {
    struct pollfd pf[NSTREAMS];
    int map[NSTREAMS], n = 0;
    for (int i = 0; i < NSTREAMS; i++) {
      if (st[i].done) continue;
      pf[n].fd = st[i].c->fd;
      pf[n].events = POLLIN;
      pf[n].revents = st[i].c->start < st[i].c->end ? POLLIN : 0; /* bytes already buffered */
      map[n++] = i;
    }
    poll(pf, (nfds_t)n, 200);
    for (int k = 0; k < n; k++) {
      stream_t *s = &st[map[k]];
      if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)) && s->c->start >= s->c->end) continue;
      long got = e2e_sse_read_some(s->c, &s->sse, 16384, 0);
      if (got == 0 || got == -1 || s->sse.body_ended) {
        s->done = 1;
        remaining--;
      }
    }
  }
  ASSERT_EQ(remaining, 0);
  for (int i = 0; i < NSTREAMS; i++) {
    /* role, 40 tokens, finish, [DONE]: every stream complete, none cut. */
    if (!e2e_sse_kinds_are(&st[i].sse, 1, 40, 0)) {
      fprintf(stderr, "stream %d: kinds %s\n", i, st[i].sse.kinds);
      ASSERT(0);
    }
    e2e_conn_close(st[i].c);
    e2e_sse_free(&st[i].sse);
  }
  /* After an even number of reloads the rule is "first" again; switch once
   * more and check new streams follow it. */
  write_policy("last");
  ASSERT_EQ(admin("reload", reply, sizeof(reply)), 0);
  one_request(p.port, "probe-1", &p, ep_last, reason);
  ASSERT(strncmp(reason, "rule last", 9) == 0);
  ASSERT(strcmp(ep_first, ep_last) != 0); /* the rules pick different endpoints */
  /* The dictionary counter survived 21 reloads: it counts every placement. */
  long count = 0;
  char *eq = strstr(reason, "n=");
  ASSERT_NOT_NULL(eq);
  count = atol(eq + 2);
  ASSERT_GE(count, NSTREAMS + 2);
  /* Old generations were freed once their streams ended: only one is live. */
  int64_t freed = e2e_wait_counter(p.port, "generations_freed", freed_before + NRELOADS + 1, E2E_WAIT_MS);
  ASSERT_GE(freed, freed_before + NRELOADS + 1);
  ASSERT_EQ(e2e_counter(p.port, "generations_live"), 1);
  ASSERT_EQ(e2e_counter(p.port, "reloads_ok"), NRELOADS + 1);

  /* A broken file: the reload fails naming the line, the old rule serves. */
  write_raw_policy("return {\n  name = 'broken',\n  version = \n");
  ASSERT_EQ(admin("reload", reply, sizeof(reply)), 1);
  ASSERT(strstr(reply, "policy.lua:4:") != NULL || strstr(reply, "policy.lua:3:") != NULL);
  ASSERT(strstr(reply, "stays current") != NULL);
  one_request(p.port, "probe-2", &p, ep_last, reason);
  ASSERT(strncmp(reason, "rule last", 9) == 0);
  /* A module without place(): refused with what is missing. */
  write_raw_policy("return { name = 'x', version = '1', schema = {} }\n");
  ASSERT_EQ(admin("reload", reply, sizeof(reply)), 1);
  ASSERT(strstr(reply, "place") != NULL);
  ASSERT_EQ(e2e_counter(p.port, "reloads_failed"), 2);

  /* A policy that raises on the sample contexts is refused at reload,
   * naming the sample and the line. */
  write_raw_policy("return { name = 'raises', version = '1', schema = {},\n"
                   "  place = function(ctx)\n"
                   "    error('deliberate failure')\n"
                   "  end }\n");
  ASSERT_EQ(admin("reload", reply, sizeof(reply)), 1);
  ASSERT(strstr(reply, "placement sample 1") != NULL);
  ASSERT(strstr(reply, "policy.lua:3: deliberate failure") != NULL);
  ASSERT_EQ(e2e_counter(p.port, "reloads_failed"), 3);
  /* One that raises only on real traffic (model m, which no sample uses)
   * loads; the request still succeeds through the C least-loaded rule, and
   * the error is counted and logged with file and line. */
  write_raw_policy("local ffi = require 'ffi'\n"
                   "return { name = 'raises', version = '1', schema = {},\n"
                   "  place = function(ctx)\n"
                   "    if ffi.string(ctx.model) == 'm' then error('deliberate failure') end\n"
                   "    return 1, 'sample'\n"
                   "  end }\n");
  ASSERT_EQ(admin("reload", reply, sizeof(reply)), 0);
  one_request(p.port, "probe-3", &p, ep_last, reason);
  ASSERT(strstr(reason, "fallback (policy error): least loaded") != NULL);
  ASSERT_EQ(e2e_counter(p.port, "placement_policy_errors"), 1);
  ASSERT_EQ(e2e_log_wait(&p, "policy.lua:4: deliberate failure", E2E_WAIT_MS, NULL, 0), 1);
  ASSERT_EQ(e2e_stop(&p), 0);
}

static void test_sighup_and_file_watch(void) {
  snprintf(policy_path, sizeof(policy_path), "%s/watched.lua", e2e_tmpdir());

  write_policy("first");
  char cfg[2048];
  snprintf(cfg, sizeof(cfg),
           "{\"placement\":{\"policy\":\"%s\"},"
           "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"sim\":{}},{\"sim\":{}}]}]}",
           policy_path);
  e2e_proc_t p;
  ASSERT_EQ(e2e_serve_start(&p, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_endpoints_ready(p.port, 2, E2E_WAIT_MS), 1);
  /* Writing the file reloads it (the directory is watched).  The file is
   * replaced in one rename, so the watcher sees one change; the count is
   * still read as "at least", the rule in force being what matters. */
  write_policy("last");
  int64_t reloads = e2e_wait_counter(p.port, "reloads_ok", 1, E2E_WAIT_MS);
  ASSERT_GE(reloads, 1);
  char ep[64], reason[128];
  one_request(p.port, "w-1", &p, ep, reason);
  ASSERT(strncmp(reason, "rule last", 9) == 0);
  /* SIGHUP reloads too. */
  reloads = e2e_counter(p.port, "reloads_ok");
  kill(p.pid, SIGHUP);
  ASSERT_GE(e2e_wait_counter(p.port, "reloads_ok", reloads + 1, E2E_WAIT_MS), reloads + 1);
  ASSERT_EQ(e2e_stop(&p), 0);
}

static void test_check_command(void) {
  char path[600], cmd[1400];
  snprintf(path, sizeof(path), "%s/check_bad.lua", e2e_tmpdir());
  FILE *f = fopen(path, "w");
  fputs("return {\n  name = 'x',\n  version = '1'\n  schema = {},\n}\n", f);
  fclose(f);
  snprintf(cmd, sizeof(cmd), "%s check %s 2>&1", e2e_binary(), path);
  FILE *o = popen(cmd, "r");
  char out[1024] = "";
  size_t n = fread(out, 1, sizeof(out) - 1, o);
  out[n] = '\0';
  int st = pclose(o);
  ASSERT_NE(WEXITSTATUS(st), 0);
  ASSERT(strstr(out, "check_bad.lua:4:") != NULL);
  snprintf(cmd, sizeof(cmd), "%s check least_loaded 2>&1", e2e_binary());
  o = popen(cmd, "r");
  n = fread(out, 1, sizeof(out) - 1, o);
  out[n] = '\0';
  st = pclose(o);
  ASSERT_EQ(WEXITSTATUS(st), 0);
  ASSERT(strstr(out, "ok:") != NULL);
}

static void test_policy_config(void) {
  /* A configured shipped policy serves; a config key the schema does not
   * know refuses the start with the key named. */
  e2e_proc_t p;
  ASSERT_EQ(e2e_serve_start(&p,
                            "{\"placement\":{\"policy\":\"p2c\",\"config\":{\"error_weight\":2}},"
                            "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"sim\":{}},{\"sim\":{}}]}]}",
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_endpoints_ready(p.port, 2, E2E_WAIT_MS), 1);
  char ep[64], reason[128];
  one_request(p.port, "p2c-1", &p, ep, reason);
  ASSERT(strncmp(reason, "p2c", 3) == 0);
  ASSERT_EQ(e2e_stop(&p), 0);
  e2e_proc_t q;
  ASSERT_EQ(e2e_serve_spawn(&q,
                            "{\"placement\":{\"policy\":\"p2c\",\"config\":{\"bogus\":1}},"
                            "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"sim\":{}}]}]}",
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_exit(&q, E2E_WAIT_MS), 0);
  ASSERT(WIFEXITED(q.status) && WEXITSTATUS(q.status) == 2);
  ASSERT_EQ(e2e_log_wait(&q, "unknown config key \"bogus\"", 1000, NULL, 0), 1);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 120);
  E2E_RUN(test_check_command);
  E2E_RUN(test_reload_under_load);
  E2E_RUN(test_sighup_and_file_watch);
  E2E_RUN(test_policy_config);
  return SL_TEST_EXIT();
}
