/* e2e_shared.c: state shared through a real Redis by two sluice instances.
 *
 * The test starts Debian's redis-server on a unix socket (persistence
 * off), two simulated engines E1 and E2, and two sluice instances A and B
 * in front of both engines, with the configuration's "redis" pointing at
 * that socket.  Three tenants:
 *   req  requests_per_minute 6, fails closed;
 *   tok  tokens_per_day 1000, fails open;
 *   (both with the allowance batch_requests 2, batch_tokens 300).
 * Checked:
 *   - the two instances jointly hold each limit: what both admitted stays
 *     within  L + (N - 1) x max(batch, largest request)  (shlimit.h), where
 *     either alone would have admitted L; and each instance refused with
 *     429 having admitted fewer than L itself;
 *   - session affinity holds across instances: A and B list the engines in
 *     opposite orders, so least loaded alone would send a new session to E2
 *     on A and to E1 on B; with the dictionary shared, B follows A;
 *   - Redis killed with a stream in flight: the stream completes; the
 *     fail-closed limit answers 503 with Retry-After, the fail-open one
 *     admits; the outage is counted; after Redis returns, both instances
 *     reconnect by themselves and the limits are enforced again.
 * redis-server missing: the test skips (exit 77), or fails under CI=true
 * (tests/redis_server.h).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "e2e/harness.h"
#include "redis_server.h"

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"
#define KEY_REQ "Authorization: Bearer sk-req\r\n"
#define KEY_TOK "Authorization: Bearer sk-tok\r\n"
#define SHA_REQ "sha256:5638ad5fcdb74ea40a2416e46a7dfe9689fb176db4f143085f75a6b5ccbcfb21"
#define SHA_TOK "sha256:f2bf1626e20a99c2fa95c5c68c2c718c5b99173c3616d6cc432650c98265e23b"
#define RPM 6
#define TPD 1000
#define BATCH_REQ 2
#define BATCH_TOK 300
#define NINST 2

static char redis_sock[108];
static rs_t redis;
static e2e_proc_t e1, e2, a, b;

static int redis_start(void) { return rs_start(&redis, redis_sock, 0); }

/* A sluice instance in front of the engines, in the order given. */
static int instance_start(e2e_proc_t *p, const e2e_proc_t *first, const e2e_proc_t *second) {
  char cfg[4096];
  snprintf(cfg, sizeof(cfg),
           "{\"heartbeat_ms\":50,"
           "\"health\":{\"interval_ms\":3600000},"
           "\"placement\":{\"policy\":\"affinity\"},"
           "\"redis\":{\"url\":\"unix:%s\",\"timeout_ms\":2000,\"batch_requests\":%d,\"batch_tokens\":%d,"
           "\"fail\":{\"requests_per_minute\":\"closed\",\"tokens_per_day\":\"open\"}},"
           "\"tenants\":["
           "{\"name\":\"req\",\"keys\":[\"" SHA_REQ "\"],\"limits\":{\"requests_per_minute\":%d}},"
           "{\"name\":\"tok\",\"keys\":[\"" SHA_TOK "\"],\"limits\":{\"tokens_per_day\":%d}}],"
           "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":["
           "{\"url\":\"http://127.0.0.1:%d\"},{\"url\":\"http://127.0.0.1:%d\"}]}]}",
           redis_sock, BATCH_REQ, BATCH_TOK, RPM, TPD, first->port, second->port);
  if (e2e_serve_start(p, cfg, NULL) != 0) return -1;
  if (e2e_wait_ready(p->port, 200, E2E_WAIT_MS) != 0) return -1;
  if (!e2e_wait_endpoints_ready(p->port, 2, E2E_WAIT_MS)) return -1;
  return e2e_wait_counter(p->port, "redis_up", 1, E2E_WAIT_MS) == 1 ? 0 : -1;
}

/* A non-streaming request of `key` with max_tokens; returns the status and
 * the usage's total tokens in *tokens (when 200). */
static int ask(const e2e_proc_t *p, const char *key, int max_tokens, int ntok, int64_t *tokens, nu_resp_t *keep) {
  char hdrs[256], extra[64], body[512];
  snprintf(hdrs, sizeof(hdrs), "%sx-sim-tokens: %d\r\n", key, ntok);
  snprintf(extra, sizeof(extra), ",\"max_tokens\":%d", max_tokens);
  nu_resp_t r;
  int st = e2e_http(p->port, "POST", CHAT, hdrs, e2e_chat_body(body, sizeof(body), "m", 0, extra), &r, E2E_WAIT_MS);
  *tokens = 0;
  if (st == 200) {
    cJSON *j = cJSON_Parse(r.body);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "usage");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(u, "total_tokens");
    if (cJSON_IsNumber(t)) *tokens = (int64_t)t->valuedouble;
    cJSON_Delete(j);
  }
  static int told;
  if (st != 200 && st != 429 && told++ < 3) fprintf(stderr, "  %s: %d %s\n", key, st, r.body ? r.body : "");
  if (keep != NULL) *keep = r;
  else nu_resp_free(&r);
  return st;
}

/* /health's redis.<obj>.<name> (obj NULL: redis.<name>), or -1. */
static int64_t redis_num(int port, const char *obj, const char *name) {
  int status;
  cJSON *h = e2e_get_json(port, "/health", &status);
  const cJSON *o = cJSON_GetObjectItemCaseSensitive(h, "redis");
  if (obj != NULL) o = cJSON_GetObjectItemCaseSensitive(o, obj);
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
  int64_t v = cJSON_IsNumber(x) ? (int64_t)x->valuedouble : -1;
  cJSON_Delete(h);
  return v;
}

/* Waits until redis_num reaches min; returns the last value. */
static int64_t wait_redis_num(int port, const char *obj, const char *name, int64_t min) {
  int64_t v = -1;
  for (int64_t end = nu_now_ms() + nu_scale_ms(E2E_WAIT_MS); nu_now_ms() < end; usleep(10000))
    if ((v = redis_num(port, obj, name)) >= min) break;
  return v;
}

/* Redis, the two engines and the two instances, fresh for each test. */
static int world_start(void) {
  if (redis_start() != 0) return -1;
  const char *const sim_args[] = {"--model", "m", "--ttft-ms", "1", "--itl-ms", "1", "--itl-jitter", "0", NULL};
  if (e2e_sim_start(&e1, sim_args) != 0 || e2e_sim_start(&e2, sim_args) != 0) return -1;
  if (instance_start(&a, &e2, &e1) != 0 || instance_start(&b, &e1, &e2) != 0) return -1;
  return 0;
}

static void world_stop(void) {
  ASSERT_EQ(e2e_stop(&a), 0);
  ASSERT_EQ(e2e_stop(&b), 0);
  e2e_stop(&e1);
  e2e_stop(&e2);
  rs_stop(&redis);
}


/* ---- the limits, held jointly ---- */

/* requests_per_minute 6: 18 requests, alternating A and B.  Alone, each
 * instance would admit 6 (12 in all); together they admit at most
 * 6 + (2 - 1) x 2 = 8, and each refuses having admitted fewer than 6. */
static void test_requests_held_jointly(void) {
  ASSERT_EQ(world_start(), 0);
  int ok[NINST] = {0, 0}, r429[NINST] = {0, 0}, other = 0;
  e2e_proc_t *inst[NINST] = {&a, &b};
  for (int i = 0; i < 3 * RPM; i++) {
    int64_t tok;
    int st = ask(inst[i % NINST], KEY_REQ, 4, 2, &tok, NULL);
    if (st == 200) ok[i % NINST]++;
    else if (st == 429) r429[i % NINST]++;
    else other++; /* 503: an instance's unconfirmed allowance was spent (fails closed) */
  }
  int admitted = ok[0] + ok[1];
  fprintf(stderr, "  requests: A admitted %d, refused %d; B admitted %d, refused %d; 503 %d; bound %d\n", ok[0],
          r429[0], ok[1], r429[1], other, RPM + (NINST - 1) * BATCH_REQ);
  ASSERT_LE(admitted, RPM + (NINST - 1) * BATCH_REQ);
  ASSERT_GE(admitted + other, RPM); /* what was not admitted was refused by the limit, not lost */
  for (int k = 0; k < NINST; k++) {
    ASSERT_LT(ok[k], RPM);  /* alone it would have admitted RPM */
    ASSERT_GE(r429[k], 1);  /* ... and it refused all the same: it saw the other's count */
    ASSERT_EQ(e2e_tenant_num(inst[k]->port, "req", "refused_429"), r429[k]);
  }
  world_stop();
}

/* tokens_per_day 1000: requests of max_tokens 100 (about 110 tokens
 * reserved, about 105 used).  Alone, each instance would admit about 1000
 * tokens; together at most 1000 + (2 - 1) x max(300, 110) = 1300 are used. */
static void test_tokens_held_jointly(void) {
  ASSERT_EQ(world_start(), 0);
  int64_t used[NINST] = {0, 0};
  int r429[NINST] = {0, 0}, ok[NINST] = {0, 0};
  e2e_proc_t *inst[NINST] = {&a, &b};
  for (int i = 0; i < 40; i++) {
    int64_t tok;
    int st = ask(inst[i % NINST], KEY_TOK, 100, 100, &tok, NULL);
    if (st == 200) {
      ok[i % NINST]++;
      used[i % NINST] += tok;
    } else {
      ASSERT_EQ(st, 429);
      r429[i % NINST]++;
    }
  }
  int64_t bound = TPD + (NINST - 1) * BATCH_TOK;
  fprintf(stderr, "  tokens: A used %lld in %d requests (%d refused); B used %lld in %d (%d refused); bound %lld\n",
          (long long)used[0], ok[0], r429[0], (long long)used[1], ok[1], r429[1], (long long)bound);
  ASSERT_LE(used[0] + used[1], bound);
  ASSERT_GE(used[0] + used[1], TPD / 2); /* the limit, not something else, refused */
  for (int k = 0; k < NINST; k++) {
    ASSERT_LT(used[k], TPD);
    ASSERT_GE(r429[k], 1);
    ASSERT_EQ(e2e_tenant_num(inst[k]->port, "tok", "completion_tokens") + e2e_tenant_num(inst[k]->port, "tok", "prompt_tokens"),
              used[k]);
  }
  world_stop();
}

/* ---- session affinity ---- */

/* A lists E2 first, B lists E1 first: a new session goes to E2 on A.  Once
 * B has A's write, the session goes to E2 on B as well. */
static void test_affinity_across_instances(void) {
  ASSERT_EQ(world_start(), 0);
  char hdrs[256], body[512];
  nu_resp_t r;
  for (int s = 0; s < 3; s++) {
    int64_t e1_before = e2e_sim_stat(e1.port, "requests"), e2_before = e2e_sim_stat(e2.port, "requests");
    snprintf(hdrs, sizeof(hdrs), "%sx-session-id: conv-%d\r\nx-sim-tokens: 2\r\n", KEY_TOK, s);
    int64_t applied = redis_num(b.port, "dict", "remote_applied");
    ASSERT_EQ(e2e_http(a.port, "POST", CHAT, hdrs, e2e_chat_body(body, sizeof(body), "m", 0, ",\"max_tokens\":4"), &r, E2E_WAIT_MS),
              200);
    nu_resp_free(&r);
    ASSERT_EQ(e2e_sim_stat(e2.port, "requests"), e2_before + 1); /* least loaded on A: E2, its first */
    /* B learns the session from A's write (Redis pub/sub), then follows it. */
    ASSERT_GE(wait_redis_num(b.port, "dict", "remote_applied", applied + 1), applied + 1);
    ASSERT_EQ(e2e_http(b.port, "POST", CHAT, hdrs, e2e_chat_body(body, sizeof(body), "m", 0, ",\"max_tokens\":4"), &r, E2E_WAIT_MS),
              200);
    nu_resp_free(&r);
    ASSERT_EQ(e2e_sim_stat(e2.port, "requests"), e2_before + 2);
    ASSERT_EQ(e2e_sim_stat(e1.port, "requests"), e1_before);
  }
  world_stop();
}

/* ---- Redis down, then back ---- */

static void test_redis_outage(void) {
  ASSERT_EQ(world_start(), 0);
  char body[512];
  nu_resp_t head;
  e2e_sse_t held;
  /* A stream in flight on A, held by a stalled engine (both engines stall:
   * whichever A picks). */
  ASSERT_EQ(e2e_pause(&e1, E2E_WAIT_MS), 0);
  ASSERT_EQ(e2e_pause(&e2, E2E_WAIT_MS), 0);
  nu_conn_t *c = e2e_sse_open(a.port, CHAT, KEY_TOK "x-sim-tokens: 8\r\n",
                              e2e_chat_body(body, sizeof(body), "m", 1, ",\"max_tokens\":8"), &head, &held, CHUNK,
                              E2E_WAIT_MS);
  ASSERT_NOT_NULL(c);
  ASSERT_EQ(head.status, 200);
  nu_resp_free(&head);
  ASSERT_EQ(e2e_sse_read_comments(c, &held, 1, E2E_WAIT_MS), 0);

  rs_kill(&redis);
  for (int k = 0; k < NINST; k++) {
    e2e_proc_t *p = k == 0 ? &a : &b;
    ASSERT_GE(e2e_wait_counter(p->port, "redis_outages", 1, E2E_WAIT_MS), 1);
    ASSERT_EQ(e2e_counter(p->port, "redis_up"), 0);
  }
  ASSERT_EQ(e2e_resume(&e1), 0);
  ASSERT_EQ(e2e_resume(&e2), 0);
  /* The stream comes through whole. */
  ASSERT_EQ(e2e_sse_read(c, &held, E2E_WAIT_MS), 0);
  ASSERT(e2e_sse_kinds_are(&held, 1, 8, 0));
  ASSERT_EQ(held.ndone, 1);
  e2e_sse_free(&held);
  e2e_conn_close(c);

  /* Fail closed: 503 with Retry-After, saying why. */
  int64_t tok;
  nu_resp_t r;
  ASSERT_EQ(ask(&b, KEY_REQ, 4, 2, &tok, &r), 503);
  ASSERT_NOT_NULL(nu_header(&r, "retry-after"));
  ASSERT(strstr(r.body, "Redis") != NULL);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_counter(b.port, "shared_limit_fail_closed"), 1);
  /* Fail open: admitted on B's own window (it alone counts from zero). */
  ASSERT_EQ(ask(&b, KEY_TOK, 4, 2, &tok, NULL), 200);
  ASSERT_GE(e2e_counter(b.port, "shared_limit_fail_open"), 1);

  /* Redis returns, empty (no persistence): both reconnect by themselves. */
  ASSERT_EQ(redis_start(), 0);
  for (int k = 0; k < NINST; k++) {
    e2e_proc_t *p = k == 0 ? &a : &b;
    ASSERT_EQ(e2e_wait_counter(p->port, "redis_up", 1, E2E_WAIT_MS), 1);
  }
  /* The fail-closed limit is shared again: a fresh window, held jointly. */
  int ok = 0, r429 = 0;
  for (int i = 0; i < 3 * RPM; i++) {
    int st = ask(i % 2 ? &b : &a, KEY_REQ, 4, 2, &tok, NULL);
    ok += st == 200;
    r429 += st == 429;
  }
  fprintf(stderr, "  after the outage: admitted %d, refused %d\n", ok, r429);
  ASSERT_GE(ok, 1);
  ASSERT_LE(ok, RPM + (NINST - 1) * BATCH_REQ);
  ASSERT_GE(r429, RPM);
  world_stop();
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 600);
  rs_need();
  snprintf(redis_sock, sizeof(redis_sock), "%s/redis.sock", e2e_tmpdir());
  E2E_RUN(test_requests_held_jointly);
  E2E_RUN(test_tokens_held_jointly);
  E2E_RUN(test_affinity_across_instances);
  E2E_RUN(test_redis_outage);
  return SL_TEST_EXIT();
}
