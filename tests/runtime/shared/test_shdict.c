/* test_shdict.c: the TTL dictionary replicated through a real redis-server,
 * started here as a child on a Unix socket in a temporary directory.  Each
 * "instance" is its own dictionary, Redis client and instance id, all on
 * one loop: a set on A appears in B through the channel (with its TTL
 * carried over), a delete propagates, an add that lost the race converges
 * on the first writer (in both orders), increments on both instances
 * converge on their sum, a miss on C (attached later) fills from Redis
 * while the get itself answers "not found" at once, misses do not storm,
 * "t:" keys never reach Redis, and with Redis killed writes stay local (no
 * crash, no stall) until a restart, after which replication resumes.
 *
 * redis-server comes from scripts/setup; without it the program exits 77
 * (skipped), except under CI=true, where that is a failure.  Nothing here
 * asserts a duration: every wait runs the loop until an event, under a
 * generous deadline that only fails the test.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/lua/ttldict.h"
#include "runtime/shared/redis.h"
#include "runtime/shared/shdict.h"
#include "tests/redis_server.h"
#include "tests/test.h"

/* The longest any one wait may take before the test fails. */
#define WAIT_MS 30000
/* Commands' deadline: long, so a slow (sanitizer, shared) machine never
 * times one out. */
#define LONG_MS 20000

static uv_loop_t loop;
static uv_timer_t tick; /* wakes the loop while a wait polls its condition */
static uint64_t wait_deadline;

static char tmpdir[64];
static char sockpath[96];
static char url[200];

#define S(lit) lit, sizeof(lit) - 1

/* ---- waiting ---- */

static void on_tick(uv_timer_t *t) { (void)t; }

static uint64_t now_ms(void) { return uv_hrtime() / 1000000; }

static void wait_begin(void) {
  wait_deadline = now_ms() + WAIT_MS;
  uv_timer_start(&tick, on_tick, 10, 10);
}

static int wait_expired(void) { return now_ms() > wait_deadline; }

#define WAIT_UNTIL(cond)                                            \
  do {                                                              \
    wait_begin();                                                   \
    while (!(cond) && !wait_expired()) uv_run(&loop, UV_RUN_ONCE);  \
    uv_timer_stop(&tick);                                           \
    if (!(cond)) SL__FAIL("gave up waiting for %s", #cond);         \
  } while (0)

/* Like WAIT_UNTIL, doing `again` first and then every 200 ms while waiting:
 * for a message that a subscriber not yet (re)subscribed would miss. */
#define WAIT_AGAIN(cond, again)                                     \
  do {                                                              \
    uint64_t next_ = now_ms() + 200;                                \
    wait_begin();                                                   \
    again;                                                          \
    while (!(cond) && !wait_expired()) {                            \
      if (now_ms() >= next_) {                                      \
        again;                                                      \
        next_ = now_ms() + 200;                                     \
      }                                                             \
      uv_run(&loop, UV_RUN_ONCE);                                   \
    }                                                               \
    uv_timer_stop(&tick);                                           \
    if (!(cond)) SL__FAIL("gave up waiting for %s", #cond);         \
  } while (0)

/* ---- the server ---- */

static rs_t rs;

/* Starts redis-server on sockpath, no TCP (tests/redis_server.h). */
static int redis_start(void) { return rs_start(&rs, sockpath, 0); }

static void redis_kill(void) { rs_kill(&rs); }

/* ---- instances ---- */

/* One instance: its dictionary, client and replicator. */
typedef struct {
  sl_ttldict_t *d;
  sl_redis_t *r;
  sl_shdict_t *s;
  int closed; /* the client's close finished */
} node_t;

static void on_closed(void *ud) { *(int *)ud = 1; }

static int node_open_opt(node_t *n, const char *prefix, uint64_t id, const sl_shdict_options_t *opt) {
  memset(n, 0, sizeof(*n));
  sl_redis_options_t o;
  memset(&o, 0, sizeof(o));
  o.url = url;
  o.timeout_ms = LONG_MS;
  o.reconnect_base_ms = 10;
  o.reconnect_max_ms = 100;
  char err[160];
  if (sl_ttldict_new(NULL, &n->d) != 0) return -1;
  if (sl_redis_open(&n->r, &loop, &o, err, sizeof(err)) != 0) return -1;
  if (sl_shdict_attach(&n->s, &loop, n->d, n->r, prefix, id, opt) != 0) return -1;
  return 0;
}

static int node_open(node_t *n, const char *prefix, uint64_t id) { return node_open_opt(n, prefix, id, NULL); }

/* Detaches, then closes the client on the same turn (shdict.h's order),
 * and runs the loop until the client is gone. */
static void node_close(node_t *n) {
  if (n->s) sl_shdict_detach(n->s);
  if (n->r) sl_redis_close(n->r, on_closed, &n->closed);
  else n->closed = 1;
  while (!n->closed) uv_run(&loop, UV_RUN_ONCE);
  /* The replicator's timer closes on the next turn. */
  uv_run(&loop, UV_RUN_NOWAIT);
  sl_ttldict_free(n->d);
  memset(n, 0, sizeof(*n));
}

static sl_shdict_stats_t stats(const node_t *n) {
  sl_shdict_stats_t st;
  sl_shdict_stats(n->s, &st);
  return st;
}

/* 1 when key's value in n is want (a NUL-terminated string).  Reads
 * through sl_ttldict_get, so a miss starts a fill. */
static int has(const node_t *n, const char *key, const char *want) {
  char buf[256];
  size_t len = 0;
  if (sl_ttldict_get(n->d, key, strlen(key), buf, sizeof(buf), &len) != 0) return 0;
  return len == strlen(want) && memcmp(buf, want, len) == 0;
}

/* 1 when key has a live entry in n; does not start a fill (ttl is not a
 * get), so a wait on it waits for the channel. */
static int present(const node_t *n, const char *key) {
  int64_t left;
  return sl_ttldict_ttl(n->d, key, strlen(key), &left) == 0;
}

static int64_t ttl_of(const node_t *n, const char *key) {
  int64_t left = -1;
  if (sl_ttldict_ttl(n->d, key, strlen(key), &left) != 0) return -1;
  return left;
}

/* ---- a raw command through a client, for looking at Redis itself ---- */

typedef struct {
  int done, status, type;
  long long integer;
  size_t len;
  char str[256];
} reply_t;

static void on_reply(sl_redis_t *r, const redisReply *rep, int status, void *ud) {
  reply_t *x = ud;
  (void)r;
  x->done = 1;
  x->status = status;
  if (!rep) return;
  x->type = rep->type;
  x->integer = rep->integer;
  x->len = rep->str ? rep->len : 0;
  if (rep->str) memcpy(x->str, rep->str, rep->len < sizeof(x->str) ? rep->len : sizeof(x->str));
}

/* Sends "<verb> <key>" on n's client into x. */
static int raw(node_t *n, reply_t *x, const char *verb, const char *key) {
  const char *argv[2] = {verb, key};
  memset(x, 0, sizeof(*x));
  return sl_redis_command(n->r, on_reply, x, 2, argv, NULL);
}

/* Sends "PUBLISH <channel> <msg>" (msg of len bytes) on n's client. */
static int publish(node_t *n, reply_t *x, const char *channel, const char *msg, size_t len) {
  const char *argv[3] = {"PUBLISH", channel, msg};
  size_t lens[3] = {7, strlen(channel), len};
  memset(x, 0, sizeof(*x));
  return sl_redis_command(n->r, on_reply, x, 3, argv, lens);
}

/* Both ends hear each other's messages: writes a fresh value of "sync" on
 * a until b and a both hold it (again and again while b's or a's
 * subscription is still being made). */
static int sync_seq;
static char sync_val[32];
static void sync_write(node_t *a) {
  snprintf(sync_val, sizeof(sync_val), "%d", ++sync_seq);
  sl_ttldict_set(a->d, S("sync"), sync_val, strlen(sync_val), 0);
}
static int sync_heard(node_t *a, node_t *b) {
  sl_shdict_stats_t sa = stats(a);
  return present(b, "sync") && has(b, "sync", sync_val) && sa.own_applied > 0;
}
#define SYNC(a, b)                                                   \
  do {                                                               \
    WAIT_UNTIL(sl_redis_up((a)->r) && sl_redis_up((b)->r));          \
    WAIT_AGAIN(sync_heard(a, b), sync_write(a));                     \
  } while (0)

/* ---- tests ---- */

static void test_set_and_delete_propagate(void) {
  node_t a, b;
  ASSERT_EQ(node_open(&a, "sp:", 0xA), 0);
  ASSERT_EQ(node_open(&b, "sp:", 0xB), 0);
  ASSERT_UINT_EQ(sl_shdict_instance_id(a.s), 0xA);
  SYNC(&a, &b);
  sl_shdict_stats_t b0 = stats(&b);

  ASSERT_EQ(sl_ttldict_set(a.d, S("affinity:s1"), S("127.0.0.1:9001"), 60000), 0);
  WAIT_UNTIL(present(&b, "affinity:s1"));
  ASSERT(has(&b, "affinity:s1", "127.0.0.1:9001"));
  /* The TTL came with it: B stores it for no longer than A was given. */
  int64_t tb = ttl_of(&b, "affinity:s1");
  ASSERT_GT(tb, 0);
  ASSERT_LE(tb, 60000);
  sl_shdict_stats_t b1 = stats(&b);
  ASSERT_GT(b1.remote_applied, b0.remote_applied);
  /* A value without a TTL stays without one; binary values survive. */
  ASSERT_EQ(sl_ttldict_set(a.d, S("learning:e1"), "\0\xff\n x", 5, 0), 0);
  WAIT_UNTIL(present(&b, "learning:e1"));
  char buf[16];
  size_t n = 0;
  ASSERT_EQ(sl_ttldict_get(b.d, S("learning:e1"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "\0\xff\n x", 5);
  ASSERT_EQ(ttl_of(&b, "learning:e1"), 0);
  /* In Redis under the prefix. */
  reply_t x;
  ASSERT_EQ(raw(&a, &x, "PTTL", "sp:d:affinity:s1"), 0);
  WAIT_UNTIL(x.done);
  ASSERT_EQ(x.type, REDIS_REPLY_INTEGER);
  ASSERT_GT(x.integer, 0);
  ASSERT_LE(x.integer, 60000);

  /* A delete on B reaches A. */
  ASSERT_EQ(sl_ttldict_delete(b.d, S("affinity:s1")), 0);
  WAIT_UNTIL(!present(&a, "affinity:s1"));
  ASSERT_EQ(raw(&a, &x, "EXISTS", "sp:d:affinity:s1"), 0);
  WAIT_UNTIL(x.done);
  ASSERT_EQ(x.integer, 0);

  WAIT_UNTIL(stats(&a).pending == 0 && stats(&b).pending == 0);
  sl_shdict_stats_t sa = stats(&a), sb = stats(&b);
  ASSERT_GE(sa.writes_sent, 2);
  ASSERT_GE(sb.writes_sent, 1);
  ASSERT_EQ(sa.write_failures + sb.write_failures, 0);
  ASSERT_EQ(sa.apply_failures + sb.apply_failures, 0);
  ASSERT_EQ(sa.writes_local + sb.writes_local, 0);
  node_close(&a);
  node_close(&b);
}

static void test_add_converges_on_first_writer(void) {
  node_t a, b;
  ASSERT_EQ(node_open(&a, "ad:", 0xA), 0);
  ASSERT_EQ(node_open(&b, "ad:", 0xB), 0);
  SYNC(&a, &b);

  /* A adds first and B hears it; then B loses it locally (as if written
   * during B's outage) and adds its own: Redis keeps A's, and B comes
   * round to it. */
  int added = 0;
  ASSERT_EQ(sl_ttldict_add(a.d, S("affinity:s2"), S("first"), 60000, &added), 0);
  ASSERT_EQ(added, 1);
  WAIT_UNTIL(present(&b, "affinity:s2"));
  ASSERT(has(&b, "affinity:s2", "first"));
  ASSERT_EQ(sl_ttldict_apply_delete(b.d, S("affinity:s2")), 0);
  ASSERT_EQ(sl_ttldict_add(b.d, S("affinity:s2"), S("second"), 60000, &added), 0);
  ASSERT_EQ(added, 1);
  ASSERT(has(&b, "affinity:s2", "second")); /* local at once */
  WAIT_UNTIL(stats(&b).conflicts == 1 && has(&b, "affinity:s2", "first"));
  ASSERT(has(&a, "affinity:s2", "first"));
  int64_t tb = ttl_of(&b, "affinity:s2");
  ASSERT_GT(tb, 0);
  ASSERT_LE(tb, 60000);

  /* Both add at once, neither knowing: whichever Redis ran first wins
   * everywhere. */
  ASSERT_EQ(sl_ttldict_add(a.d, S("affinity:s3"), S("from-a"), 0, &added), 0);
  ASSERT_EQ(added, 1);
  ASSERT_EQ(sl_ttldict_add(b.d, S("affinity:s3"), S("from-b"), 0, &added), 0);
  ASSERT_EQ(added, 1);
  WAIT_UNTIL(stats(&a).conflicts + stats(&b).conflicts == 2 && stats(&a).pending == 0 && stats(&b).pending == 0);
  reply_t x;
  ASSERT_EQ(raw(&a, &x, "GET", "ad:d:affinity:s3"), 0);
  WAIT_UNTIL(x.done);
  ASSERT_EQ(x.type, REDIS_REPLY_STRING);
  x.str[x.len] = '\0';
  WAIT_UNTIL(has(&a, "affinity:s3", x.str) && has(&b, "affinity:s3", x.str));
  node_close(&a);
  node_close(&b);
}

static void test_incr_converges_on_sum(void) {
  node_t a, b;
  ASSERT_EQ(node_open(&a, "in:", 0xA), 0);
  ASSERT_EQ(node_open(&b, "in:", 0xB), 0);
  SYNC(&a, &b);
  int64_t init = 0, out = 0;
  /* Interleaved on one turn, and across turns. */
  for (int i = 0; i < 5; i++) {
    ASSERT_EQ(sl_ttldict_incr(a.d, S("learning:clock"), 1, &init, 60000, &out), 0);
    if (i < 3) ASSERT_EQ(sl_ttldict_incr(b.d, S("learning:clock"), 2, &init, 60000, &out), 0);
    if (i == 2) uv_run(&loop, UV_RUN_NOWAIT);
  }
  WAIT_UNTIL(stats(&a).pending == 0 && stats(&b).pending == 0 && has(&a, "learning:clock", "11") &&
             has(&b, "learning:clock", "11"));
  reply_t x;
  ASSERT_EQ(raw(&a, &x, "GET", "in:d:learning:clock"), 0);
  WAIT_UNTIL(x.done);
  ASSERT_MEM_EQ(x.str, x.len, "11", 2);
  /* The TTL was set when Redis created the key, and carried over. */
  ASSERT_EQ(raw(&a, &x, "PTTL", "in:d:learning:clock"), 0);
  WAIT_UNTIL(x.done);
  ASSERT_GT(x.integer, 0);
  ASSERT_LE(x.integer, 60000);
  ASSERT_GT(ttl_of(&b, "learning:clock"), 0);
  /* Negative increments too. */
  ASSERT_EQ(sl_ttldict_incr(b.d, S("learning:clock"), -20, NULL, 0, &out), 0);
  WAIT_UNTIL(has(&a, "learning:clock", "-9") && has(&b, "learning:clock", "-9"));
  ASSERT_EQ(stats(&a).write_failures + stats(&b).write_failures, 0);
  node_close(&a);
  node_close(&b);
}

static void test_miss_fills(void) {
  node_t a, b, c;
  char buf[64];
  size_t n = 0;
  ASSERT_EQ(node_open(&a, "mf:", 0xA), 0);
  ASSERT_EQ(node_open(&b, "mf:", 0xB), 0);
  SYNC(&a, &b);
  ASSERT_EQ(sl_ttldict_set(a.d, S("affinity:s9"), S("127.0.0.1:9002"), 60000), 0);
  WAIT_UNTIL(present(&b, "affinity:s9")); /* so it is in Redis */

  /* C comes later: it never heard the message.  (A negative entry lasts
   * far longer than this test, so nothing here depends on timing.) */
  sl_shdict_options_t co = {.negative_ms = 600000};
  ASSERT_EQ(node_open_opt(&c, "mf:", 0xC, &co), 0);
  WAIT_UNTIL(sl_redis_up(c.r));
  ASSERT(!present(&c, "affinity:s9"));
  /* The get answers at once, "not found"; many misses on one turn send one
   * fetch. */
  for (int i = 0; i < 100; i++)
    ASSERT_EQ(sl_ttldict_get(c.d, S("affinity:s9"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  ASSERT_EQ(stats(&c).fills, 0); /* sent on the next turn, not from the get */
  WAIT_UNTIL(present(&c, "affinity:s9"));
  ASSERT(has(&c, "affinity:s9", "127.0.0.1:9002"));
  int64_t tc = ttl_of(&c, "affinity:s9");
  ASSERT_GT(tc, 0);
  ASSERT_LE(tc, 60000);
  sl_shdict_stats_t sc = stats(&c);
  ASSERT_EQ(sc.fills, 1);
  ASSERT_EQ(sc.fills_applied, 1);
  ASSERT_EQ(sc.fills_skipped, 99);

  /* A key Redis lacks: one fetch, then misses are not fetched again for a
   * while. */
  for (int i = 0; i < 10; i++)
    ASSERT_EQ(sl_ttldict_get(c.d, S("learning:never"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  WAIT_UNTIL(stats(&c).fills_empty == 1);
  ASSERT_EQ(sl_ttldict_get(c.d, S("learning:never"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  uv_run(&loop, UV_RUN_NOWAIT);
  sc = stats(&c);
  ASSERT_EQ(sc.fills, 2);
  ASSERT_EQ(sc.fills_skipped, 99 + 9 + 1);

  /* Many distinct keys on one turn: no more fetches than slots (64): the
   * 63 free ones, then the negative entry of "learning:never". */
  for (int i = 0; i < 200; i++) {
    char key[32];
    snprintf(key, sizeof(key), "affinity:burst%d", i);
    ASSERT_EQ(sl_ttldict_get(c.d, key, strlen(key), buf, sizeof(buf), &n), SL_ENOTFOUND);
  }
  WAIT_UNTIL(stats(&c).fills_empty == 1 + 64 && stats(&c).pending == 0);
  uv_run(&loop, UV_RUN_NOWAIT);
  sc = stats(&c);
  ASSERT_EQ(sc.fills, 2 + 64);
  ASSERT_EQ(sc.fills_empty, 1 + 64);
  ASSERT_EQ(sc.fill_failures, 0);
  node_close(&c);
  node_close(&a);
  node_close(&b);
}

static void test_tenant_keys_stay_local(void) {
  node_t a, b;
  char buf[16];
  size_t n = 0;
  ASSERT_EQ(node_open(&a, "tk:", 0xA), 0);
  ASSERT_EQ(node_open(&b, "tk:", 0xB), 0);
  SYNC(&a, &b);
  int64_t init = 0, out = 0;
  sl_shdict_stats_t a0 = stats(&a), b0 = stats(&b);
  ASSERT_EQ(sl_ttldict_set(a.d, S("t:acme:rpm"), S("7"), 60000), 0);
  ASSERT_EQ(sl_ttldict_incr(a.d, S("t:acme:tpm"), 5, &init, 60000, &out), 0);
  ASSERT_EQ(sl_ttldict_get(b.d, S("t:acme:rpm"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  /* A write after them on the same connection: once B has it, the earlier
   * ones would have arrived too. */
  ASSERT_EQ(sl_ttldict_set(a.d, S("after"), S("x"), 0), 0);
  WAIT_UNTIL(present(&b, "after"));
  ASSERT(!present(&b, "t:acme:rpm"));
  ASSERT(!present(&b, "t:acme:tpm"));
  ASSERT_EQ(stats(&a).writes_sent, a0.writes_sent + 1);
  ASSERT_EQ(stats(&b).fills, b0.fills);
  reply_t x;
  ASSERT_EQ(raw(&a, &x, "EXISTS", "tk:d:t:acme:rpm"), 0);
  WAIT_UNTIL(x.done);
  ASSERT_EQ(x.integer, 0);
  ASSERT_EQ(raw(&a, &x, "GET", "tk:d:t:acme:tpm"), 0);
  WAIT_UNTIL(x.done);
  ASSERT_EQ(x.type, REDIS_REPLY_NIL);
  node_close(&a);
  node_close(&b);
}

static void test_redis_down_and_back(void) {
  node_t a, b;
  char buf[16];
  size_t n = 0;
  ASSERT_EQ(node_open(&a, "kd:", 0xA), 0);
  ASSERT_EQ(node_open(&b, "kd:", 0xB), 0);
  SYNC(&a, &b);
  ASSERT_EQ(sl_ttldict_set(a.d, S("affinity:before"), S("1"), 0), 0);
  WAIT_UNTIL(present(&b, "affinity:before"));

  redis_kill();
  WAIT_UNTIL(!sl_redis_up(a.r) && !sl_redis_up(b.r));
  /* Writes and reads work locally; nothing is sent, nothing waits. */
  sl_shdict_stats_t a0 = stats(&a), b0 = stats(&b);
  int64_t init = 0, out = 0;
  int added = 0;
  ASSERT_EQ(sl_ttldict_set(a.d, S("affinity:outage"), S("local"), 0), 0);
  ASSERT_EQ(sl_ttldict_add(a.d, S("affinity:outage2"), S("local"), 0, &added), 0);
  ASSERT_EQ(sl_ttldict_incr(a.d, S("learning:clock"), 1, &init, 0, &out), 0);
  ASSERT_EQ(sl_ttldict_delete(a.d, S("affinity:before")), 0);
  ASSERT(has(&a, "affinity:outage", "local"));
  ASSERT_EQ(sl_ttldict_get(b.d, S("affinity:outage"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  uv_run(&loop, UV_RUN_NOWAIT);
  sl_shdict_stats_t a1 = stats(&a), b1 = stats(&b);
  ASSERT_EQ(a1.writes_local, a0.writes_local + 4);
  ASSERT_EQ(a1.writes_sent, a0.writes_sent);
  ASSERT_EQ(a1.pending, 0);
  ASSERT_EQ(b1.fills, b0.fills);
  ASSERT_EQ(b1.fills_skipped, b0.fills_skipped + 1);
  ASSERT(present(&b, "affinity:before")); /* the delete stayed local too */

  ASSERT_EQ(redis_start(), 0);
  /* Replication resumes (once both subscribers are back). */
  SYNC(&a, &b);
  ASSERT_EQ(sl_ttldict_set(a.d, S("affinity:after"), S("2"), 0), 0);
  WAIT_UNTIL(present(&b, "affinity:after"));
  ASSERT(has(&b, "affinity:after", "2"));
  /* Nothing was replayed: the outage's writes stayed on A (a fresh
   * server has none of them). */
  reply_t x;
  ASSERT_EQ(raw(&a, &x, "EXISTS", "kd:d:affinity:outage"), 0);
  WAIT_UNTIL(x.done);
  ASSERT_EQ(x.integer, 0);
  ASSERT(!present(&b, "affinity:outage"));
  ASSERT(has(&a, "affinity:outage", "local"));
  node_close(&a);
  node_close(&b);
}

/* The message format (shdict.h), written by hand: a foreign instance's
 * set and delete apply; malformed messages are counted and change
 * nothing. */
static void test_messages(void) {
  node_t a, b;
  reply_t x;
  ASSERT_EQ(node_open(&a, "bm:", 0xA), 0);
  ASSERT_EQ(node_open(&b, "bm:", 0xB), 0);
  SYNC(&a, &b);
  sl_shdict_stats_t b0 = stats(&b);
  static const struct {
    const char *m;
    size_t len;
  } bad[] = {
    {S("garbage")},
    {S("SL1 s 00000000000000zz 0 1\nk")},   /* not hex */
    {S("SL1 s 00000000000000ff 0 9\nkey")}, /* key longer than the message */
    {S("SL1 s 00000000000000ff 0 0\n")},    /* empty key */
    {S("SL1 x 00000000000000ff 0 1\nk")},   /* no such op */
    {S("SL1 s 00000000000000ff -1 1\nk")},  /* negative TTL */
    {S("SL1 s 00000000000000ff 0 1 k")},     /* no newline */
    {S("SL2 s 00000000000000ff 0 1\nk")},   /* another version */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ASSERT_EQ(publish(&a, &x, "bm:dict", bad[i].m, bad[i].len), 0);
    WAIT_UNTIL(x.done);
  }
  /* Then a good one from instance ff: a binary value with a TTL. */
  ASSERT_EQ(publish(&a, &x, "bm:dict", S("SL1 s 00000000000000ff 5000 3\nkey\0v\n")), 0);
  WAIT_UNTIL(present(&b, "key"));
  char buf[8];
  size_t n = 0;
  ASSERT_EQ(sl_ttldict_get(b.d, S("key"), buf, sizeof(buf), &n), 0);
  ASSERT_MEM_EQ(buf, n, "\0v\n", 3);
  ASSERT_GT(ttl_of(&b, "key"), 0);
  ASSERT_LE(ttl_of(&b, "key"), 5000);
  sl_shdict_stats_t b1 = stats(&b);
  ASSERT_EQ(b1.apply_failures, b0.apply_failures + sizeof(bad) / sizeof(bad[0]));
  ASSERT_EQ(b1.remote_applied, b0.remote_applied + 1);
  ASSERT_EQ(b1.own_applied, b0.own_applied);
  /* A delete, and a delete of a key never seen (fine, not a failure). */
  ASSERT_EQ(publish(&a, &x, "bm:dict", S("SL1 d 00000000000000ff 0 3\nkey")), 0);
  ASSERT_EQ(publish(&a, &x, "bm:dict", S("SL1 d 00000000000000ff 0 5\nnokey")), 0);
  WAIT_UNTIL(stats(&b).remote_applied == b0.remote_applied + 3);
  ASSERT(!present(&b, "key"));
  ASSERT_EQ(stats(&b).apply_failures, b1.apply_failures);
  /* B's own id is counted apart. */
  ASSERT_EQ(publish(&a, &x, "bm:dict", S("SL1 s 000000000000000b 0 4\nmine1")), 0);
  WAIT_UNTIL(present(&b, "mine"));
  ASSERT_EQ(stats(&b).own_applied, b0.own_applied + 1);
  node_close(&a);
  node_close(&b);
}

/* Detach with commands in flight and a fill queued: the answers come back
 * as SL_ECANCELED after the replicator was detached, and nothing leaks. */
static void test_detach_in_flight(void) {
  node_t a;
  char buf[16];
  size_t n = 0;
  ASSERT_EQ(node_open(&a, "dt:", 0xA), 0);
  WAIT_UNTIL(sl_redis_up(a.r));
  for (int i = 0; i < 20; i++) ASSERT_EQ(sl_ttldict_set(a.d, S("affinity:x"), S("1"), 0), 0);
  ASSERT_EQ(sl_ttldict_get(a.d, S("affinity:y"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  ASSERT_EQ(stats(&a).pending, 20);
  node_close(&a);
  /* A dictionary whose replicator is gone is plain local again. */
  node_t b;
  ASSERT_EQ(node_open(&b, "dt:", 0xB), 0);
  sl_shdict_detach(b.s);
  b.s = NULL;
  ASSERT_EQ(sl_ttldict_set(b.d, S("affinity:z"), S("1"), 0), 0);
  ASSERT_EQ(sl_ttldict_get(b.d, S("affinity:w"), buf, sizeof(buf), &n), SL_ENOTFOUND);
  node_close(&b);
}

static void test_bad_args(void) {
  sl_shdict_t *s = NULL;
  sl_ttldict_t *d = NULL;
  char prefix[300];
  ASSERT_EQ(sl_ttldict_new(NULL, &d), 0);
  ASSERT_EQ(sl_shdict_attach(&s, &loop, NULL, NULL, NULL, 1, NULL), SL_EINVAL);
  ASSERT_EQ(sl_shdict_attach(&s, NULL, d, NULL, NULL, 1, NULL), SL_EINVAL);
  memset(prefix, 'p', sizeof(prefix) - 1);
  prefix[sizeof(prefix) - 1] = '\0';
  node_t a;
  memset(&a, 0, sizeof(a));
  sl_redis_options_t o;
  memset(&o, 0, sizeof(o));
  o.url = url;
  char err[160];
  ASSERT_EQ(sl_redis_open(&a.r, &loop, &o, err, sizeof(err)), 0);
  ASSERT_EQ(sl_shdict_attach(&s, &loop, d, a.r, prefix, 1, NULL), SL_EINVAL);
  sl_shdict_options_t big = {.max_fills = SL_SHDICT_MAX_FILLS + 1};
  ASSERT_EQ(sl_shdict_attach(&s, &loop, d, a.r, NULL, 1, &big), SL_EINVAL);
  /* Instance id 0: a random one. */
  ASSERT_EQ(sl_shdict_attach(&s, &loop, d, a.r, NULL, 0, NULL), 0);
  ASSERT_NE(sl_shdict_instance_id(s), 0);
  a.s = s;
  a.d = d;
  node_close(&a);
}

int main(void) {
  sl_alloc_init();
  rs_need();
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/sl-shdict-XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(sockpath, sizeof(sockpath), "%s/r.sock", tmpdir);
  snprintf(url, sizeof(url), "unix:%s", sockpath);
  uv_loop_init(&loop);
  uv_timer_init(&loop, &tick);
  if (redis_start() != 0) {
    fprintf(stderr, "test_shdict: could not start redis-server\n");
    return 1;
  }

  SL_RUN(test_set_and_delete_propagate);
  SL_RUN(test_add_converges_on_first_writer);
  SL_RUN(test_incr_converges_on_sum);
  SL_RUN(test_miss_fills);
  SL_RUN(test_tenant_keys_stay_local);
  SL_RUN(test_redis_down_and_back);
  SL_RUN(test_messages);
  SL_RUN(test_detach_in_flight);
  SL_RUN(test_bad_args);

  redis_kill();
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  int left = uv_loop_close(&loop);
  if (left != 0) fprintf(stderr, "handles left on the loop: %s\n", uv_strerror(left));
  char rm[200];
  snprintf(rm, sizeof(rm), "rm -rf '%s'", tmpdir);
  if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  int rc = SL_TEST_EXIT();
  return left != 0 ? 1 : rc;
}
