/* test_redis.c: the Redis client against a real redis-server, started here
 * as a child process on a Unix socket and a TCP port in a temporary
 * directory: a bad URL and a refused connect, SET/GET/INCRBY, a thousand
 * pipelined commands answered in order, binary-safe keys and values (one
 * larger than a read), an error reply, scripts (registered before and after
 * connecting, one that does not compile, NOSCRIPT recovery after SCRIPT
 * FLUSH), a subscription (and its connection killed alone), commands sent
 * from inside callbacks, redis:// with a database and with a host name, a
 * SELECT the server refuses, a stopped server (SIGSTOP: pending commands
 * time out, the client goes down, refuses commands, and comes back by
 * itself after SIGCONT), a killed and restarted server (pending commands
 * fail, the client reconnects, scripts and the subscription work again), and
 * close with commands pending, from a callback and before connecting.
 *
 * redis-server comes from scripts/setup; without it the program exits 77
 * (skipped), except under CI=true, where that is a failure.  Nothing here
 * asserts a duration: every wait runs the loop until an event, under a
 * generous deadline that only fails the test.
 */
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
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
#include "runtime/shared/redis.h"
#include "tests/redis_server.h"
#include "tests/test.h"

/* The longest any one wait may take before the test fails. */
#define WAIT_MS 30000
/* Deadline of commands in the tests that do not stall the server: long, so
 * that a slow (sanitizer, shared) machine never times one out. */
#define LONG_MS 20000

static uv_loop_t loop;
static uv_timer_t tick; /* wakes the loop while a wait polls its condition */
static uint64_t wait_deadline;

static char tmpdir[64];
static char sockpath[96];
static char url_unix[300];
static int rport;

/* ---- waiting ---- */

static void on_tick(uv_timer_t *t) { (void)t; }

static void wait_begin(void) {
  wait_deadline = uv_hrtime() / 1000000 + WAIT_MS;
  uv_timer_start(&tick, on_tick, 10, 10);
}

static int wait_expired(void) { return uv_hrtime() / 1000000 > wait_deadline; }

#define WAIT_UNTIL(cond)                                                 \
  do {                                                                   \
    wait_begin();                                                        \
    while (!(cond) && !wait_expired()) uv_run(&loop, UV_RUN_ONCE);       \
    uv_timer_stop(&tick);                                                \
    if (!(cond)) SL__FAIL("gave up waiting for %s", #cond);              \
  } while (0)

/* ---- the server ---- */

static rs_t rs;

/* Starts redis-server on sockpath and rport (tests/redis_server.h). */
static int redis_start(void) { return rs_start(&rs, sockpath, rport); }

static void redis_kill(void) { rs_kill(&rs); }

/* ---- the client's callbacks ---- */

typedef struct {
  int ups, downs;
  char why[160];
} state_t;

static void on_state(sl_redis_t *r, int up, const char *why, void *ud) {
  state_t *s = ud;
  if (up) {
    s->ups++;
  } else {
    s->downs++;
    snprintf(s->why, sizeof(s->why), "%s", why);
  }
}

typedef struct {
  int done;       /* times called */
  int status;
  int type;       /* REDIS_REPLY_*, 0 without a reply */
  long long integer;
  size_t len;
  char str[512];
  size_t elements;
  int order;      /* when it was answered, among all answers */
} rec_t;

static int answers;

static void on_reply(sl_redis_t *r, const redisReply *rep, int status, void *ud) {
  rec_t *x = ud;
  x->done++;
  x->status = status;
  x->order = answers++;
  if (!rep) return;
  x->type = rep->type;
  x->integer = rep->integer;
  x->elements = rep->elements;
  x->len = rep->str ? rep->len : 0;
  if (rep->str) memcpy(x->str, rep->str, rep->len < sizeof(x->str) ? rep->len : sizeof(x->str));
}

/* Sends the NULL-terminated words as one command (lengths by strlen, so
 * argvlen NULL is exercised too). */
static int cmd(sl_redis_t *r, rec_t *x, ...) {
  const char *argv[16];
  int argc = 0;
  va_list ap;
  va_start(ap, x);
  for (const char *a; argc < 16 && (a = va_arg(ap, const char *)) != NULL;) argv[argc++] = a;
  va_end(ap);
  memset(x, 0, sizeof(*x));
  return sl_redis_command(r, on_reply, x, argc, argv, NULL);
}

static int closed_count;
static void on_closed(void *ud) {
  (*(int *)ud)++;
  closed_count++;
}

static sl_redis_t *open_client(const char *url, uint64_t timeout_ms, state_t *s) {
  sl_redis_options_t o;
  memset(&o, 0, sizeof(o));
  o.url = url;
  o.timeout_ms = timeout_ms;
  o.reconnect_base_ms = 10;
  o.reconnect_max_ms = 100;
  o.on_state = on_state;
  o.ud = s;
  sl_redis_t *r = NULL;
  char err[160] = "";
  int rc = sl_redis_open(&r, &loop, &o, err, sizeof(err));
  if (rc != 0) fprintf(stderr, "sl_redis_open(%s): %d %s\n", url, rc, err);
  return r;
}

#define CLOSE(r)                               \
  do {                                         \
    int closed_ = 0;                           \
    sl_redis_close((r), on_closed, &closed_);  \
    WAIT_UNTIL(closed_ == 1);                  \
  } while (0)

typedef struct {
  int got;
  char channel[64];
  char msg[128];
  size_t len;
} inbox_t;

static void on_message(sl_redis_t *r, const char *channel, const char *msg, size_t len, void *ud) {
  inbox_t *in = ud;
  in->got++;
  snprintf(in->channel, sizeof(in->channel), "%s", channel);
  in->len = len;
  memcpy(in->msg, msg, len < sizeof(in->msg) ? len : sizeof(in->msg));
}

/* PUBLISHes msg on ch until a subscriber hears it (the subscriber connection
 * comes up on its own time), then waits for in to get it.  1 when it did. */
static int publish_until_heard(sl_redis_t *r, const char *ch, const char *msg, inbox_t *in) {
  uint64_t end = uv_hrtime() / 1000000 + WAIT_MS;
  int before = in->got;
  rec_t x;
  uv_timer_start(&tick, on_tick, 10, 10);
  while (uv_hrtime() / 1000000 < end) {
    if (cmd(r, &x, "PUBLISH", ch, msg, NULL) != 0) {
      uv_run(&loop, UV_RUN_ONCE);
      continue;
    }
    while (!x.done && uv_hrtime() / 1000000 < end) uv_run(&loop, UV_RUN_ONCE);
    if (x.done && x.status == 0 && x.type == REDIS_REPLY_INTEGER && x.integer >= 1) break;
    uv_run(&loop, UV_RUN_ONCE); /* a tick before trying again */
  }
  while (in->got == before && uv_hrtime() / 1000000 < end) uv_run(&loop, UV_RUN_ONCE);
  uv_timer_stop(&tick);
  return in->got > before;
}

/* PINGs until one is answered PONG: after a reconnect the first commands may
 * still meet a flapping connection on a slow machine. */
static int ping_until_ok(sl_redis_t *r) {
  uint64_t end = uv_hrtime() / 1000000 + WAIT_MS;
  rec_t x;
  int ok = 0;
  uv_timer_start(&tick, on_tick, 10, 10);
  while (!ok && uv_hrtime() / 1000000 < end) {
    if (cmd(r, &x, "PING", NULL) != 0) {
      uv_run(&loop, UV_RUN_ONCE);
      continue;
    }
    while (!x.done && uv_hrtime() / 1000000 < end) uv_run(&loop, UV_RUN_ONCE);
    ok = x.done && x.status == 0 && x.type == REDIS_REPLY_STATUS && strcmp(x.str, "PONG") == 0;
  }
  uv_timer_stop(&tick);
  return ok;
}

/* ---- tests ---- */

static void test_bad_url(void) {
  static const char *bad[] = {
    NULL, "", "http://127.0.0.1:6379", "unix:", "redis://", "redis://:6379", "redis://h:0", "redis://h:65536",
    "redis://h:12x", "redis://h:6379/x", "redis://u:p@h:6379", "redis://[::1", "redis://h:6379?db=1",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    sl_redis_options_t o;
    memset(&o, 0, sizeof(o));
    o.url = bad[i];
    sl_redis_t *r = (sl_redis_t *)&o; /* must be left alone */
    char err[160] = "";
    ASSERT_EQ(sl_redis_open(&r, &loop, &o, err, sizeof(err)), SL_EINVAL);
    ASSERT(r == (sl_redis_t *)&o);
    ASSERT(strncmp(err, "redis url: ", 11) == 0);
  }
  /* A path longer than a socket address holds. */
  char longurl[300] = "unix:/";
  memset(longurl + 6, 'x', 200);
  longurl[206] = '\0';
  sl_redis_options_t o;
  memset(&o, 0, sizeof(o));
  o.url = longurl;
  sl_redis_t *r = NULL;
  char err[160] = "";
  ASSERT_EQ(sl_redis_open(&r, &loop, &o, err, sizeof(err)), SL_EINVAL);
  ASSERT_STR_EQ(err, "redis url: unix socket path too long");
  ASSERT_NULL(r);
}

static void test_refused(void) {
  char url[300];
  state_t s = {0};
  rec_t x;
  snprintf(url, sizeof(url), "unix:%s/nobody.sock", tmpdir);
  sl_redis_t *r = open_client(url, LONG_MS, &s);
  ASSERT_NOT_NULL(r);
  ASSERT_EQ(sl_redis_up(r), 0);
  ASSERT_EQ(cmd(r, &x, "PING", NULL), SL_EAGAIN);
  WAIT_UNTIL(s.downs == 1);
  ASSERT(strstr(s.why, "connect: ") == s.why);
  ASSERT_EQ(cmd(r, &x, "PING", NULL), SL_EAGAIN);
  ASSERT_EQ(x.done, 0);
  sl_redis_stats_t st;
  sl_redis_stats(r, &st);
  ASSERT_UINT_EQ(st.refused_down, 2);
  ASSERT_UINT_EQ(st.connects, 0);
  ASSERT_UINT_EQ(st.outages, 0);
  ASSERT_STR_EQ(st.last_error, s.why);
  CLOSE(r);
  ASSERT_EQ(s.downs, 1); /* told once, not per attempt */
  ASSERT_EQ(s.ups, 0);
}

static void test_roundtrip(void) {
  state_t s = {0};
  rec_t a, b, c, d, e;
  sl_redis_t *r = open_client(url_unix, LONG_MS, &s);
  ASSERT_NOT_NULL(r);
  WAIT_UNTIL(sl_redis_up(r));
  ASSERT_EQ(s.ups, 1);
  ASSERT_EQ(cmd(r, &a, "SET", "rt:k", "hello", NULL), 0);
  ASSERT_EQ(cmd(r, &b, "GET", "rt:k", NULL), 0);
  ASSERT_EQ(cmd(r, &c, "INCRBY", "rt:n", "5", NULL), 0);
  ASSERT_EQ(cmd(r, &d, "INCRBY", "rt:n", "-2", NULL), 0);
  ASSERT_EQ(cmd(r, &e, "GET", "rt:missing", NULL), 0);
  sl_redis_stats_t st;
  sl_redis_stats(r, &st);
  ASSERT_EQ(st.pending, 5);
  WAIT_UNTIL(e.done);
  ASSERT_EQ(a.status, 0);
  ASSERT_EQ(a.type, REDIS_REPLY_STATUS);
  ASSERT_MEM_EQ(a.str, a.len, "OK", 2);
  ASSERT_EQ(b.type, REDIS_REPLY_STRING);
  ASSERT_MEM_EQ(b.str, b.len, "hello", 5);
  ASSERT_EQ(c.type, REDIS_REPLY_INTEGER);
  ASSERT_EQ(c.integer, 5);
  ASSERT_EQ(d.integer, 3);
  ASSERT_EQ(e.status, 0);
  ASSERT_EQ(e.type, REDIS_REPLY_NIL);
  ASSERT(a.order < b.order && b.order < c.order && c.order < d.order && d.order < e.order);
  sl_redis_stats(r, &st);
  ASSERT_EQ(st.up, 1);
  ASSERT_EQ(st.pending, 0);
  ASSERT_UINT_EQ(st.commands, 5);
  ASSERT_UINT_EQ(st.replies, 5);
  ASSERT_UINT_EQ(st.connects, 1);
  ASSERT_UINT_EQ(st.error_replies, 0);
  CLOSE(r);
  ASSERT_EQ(s.downs, 0); /* closing is not an outage */
}

#define NPIPE 1000
static long long pipe_val[NPIPE];
static int pipe_order[NPIPE], pipe_status[NPIPE], pipe_done;

static void on_pipe(sl_redis_t *r, const redisReply *rep, int status, void *ud) {
  int i = (int)(intptr_t)ud;
  pipe_status[i] = status;
  pipe_val[i] = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
  pipe_order[i] = pipe_done++;
}

static void test_pipeline(void) {
  state_t s = {0};
  sl_redis_t *r = open_client(url_unix, LONG_MS, &s);
  ASSERT_NOT_NULL(r);
  WAIT_UNTIL(sl_redis_up(r));
  rec_t del;
  ASSERT_EQ(cmd(r, &del, "DEL", "pipe:n", NULL), 0);
  pipe_done = 0;
  /* All written before any answer is read. */
  for (int i = 0; i < NPIPE; i++) {
    const char *argv[] = {"INCR", "pipe:n"};
    ASSERT_EQ(sl_redis_command(r, on_pipe, (void *)(intptr_t)i, 2, argv, NULL), 0);
  }
  sl_redis_stats_t st;
  sl_redis_stats(r, &st);
  ASSERT_EQ(st.pending, NPIPE + 1);
  WAIT_UNTIL(pipe_done == NPIPE);
  for (int i = 0; i < NPIPE; i++) {
    ASSERT_EQ(pipe_status[i], 0);
    ASSERT_EQ(pipe_order[i], i);
    ASSERT_EQ(pipe_val[i], i + 1);
  }
  ASSERT(del.done);
  CLOSE(r);
}

#define BIG (300 * 1024)
static char *big_value;
static int big_match;

static void on_big(sl_redis_t *r, const redisReply *rep, int status, void *ud) {
  big_match = status == 0 && rep && rep->type == REDIS_REPLY_STRING && rep->len == BIG &&
              memcmp(rep->str, big_value, BIG) == 0;
  (*(int *)ud)++;
}

static void test_binary(void) {
  state_t s = {0};
  sl_redis_t *r = open_client(url_unix, LONG_MS, &s);
  ASSERT_NOT_NULL(r);
  WAIT_UNTIL(sl_redis_up(r));
  /* A key and a value with NULs, high bytes and protocol text in them. */
  static const char key[] = "bin:\0k\xfe";
  static const char val[] = "a\0b\xff\r\n$3\r\n*1\r\n-ERR\r\n";
  const char *setv[] = {"SET", key, val};
  size_t setl[] = {3, sizeof(key) - 1, sizeof(val) - 1};
  const char *getv[] = {"GET", key};
  size_t getl[] = {3, sizeof(key) - 1};
  rec_t a, b, c;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  ASSERT_EQ(sl_redis_command(r, on_reply, &a, 3, setv, setl), 0);
  ASSERT_EQ(sl_redis_command(r, on_reply, &b, 2, getv, getl), 0);
  /* The key differs from "bin:" at its NUL. */
  ASSERT_EQ(cmd(r, &c, "EXISTS", "bin:", NULL), 0);
  WAIT_UNTIL(c.done);
  ASSERT_EQ(a.type, REDIS_REPLY_STATUS);
  ASSERT_EQ(b.type, REDIS_REPLY_STRING);
  ASSERT_MEM_EQ(b.str, b.len, val, sizeof(val) - 1);
  ASSERT_EQ(c.integer, 0);
  /* A value many reads long. */
  big_value = malloc(BIG);
  ASSERT_NOT_NULL(big_value);
  for (size_t i = 0; i < BIG; i++) big_value[i] = (char)(i * 131 + (i >> 7));
  const char *bsetv[] = {"SET", "bin:big", big_value};
  size_t bsetl[] = {3, 7, BIG};
  const char *bgetv[] = {"GET", "bin:big"};
  int got = 0;
  big_match = 0;
  ASSERT_EQ(sl_redis_command(r, NULL, NULL, 3, bsetv, bsetl), 0); /* no callback wanted */
  ASSERT_EQ(sl_redis_command(r, on_big, &got, 2, bgetv, NULL), 0);
  WAIT_UNTIL(got == 1);
  free(big_value);
  big_value = NULL;
  ASSERT_EQ(big_match, 1);
  CLOSE(r);
}

static void test_error_reply(void) {
  state_t s = {0};
  rec_t a, b, c;
  sl_redis_t *r = open_client(url_unix, LONG_MS, &s);
  ASSERT_NOT_NULL(r);
  WAIT_UNTIL(sl_redis_up(r));
  ASSERT_EQ(cmd(r, &a, "SET", "err:k", "not a number", NULL), 0);
  ASSERT_EQ(cmd(r, &b, "INCR", "err:k", NULL), 0);
  ASSERT_EQ(cmd(r, &c, "NOSUCHCOMMAND", NULL), 0);
  WAIT_UNTIL(c.done);
  ASSERT_EQ(b.status, 0);
  ASSERT_EQ(b.type, REDIS_REPLY_ERROR);
  ASSERT(strncmp(b.str, "ERR", 3) == 0);
  ASSERT_EQ(c.status, 0);
  ASSERT_EQ(c.type, REDIS_REPLY_ERROR);
  sl_redis_stats_t st;
  sl_redis_stats(r, &st);
  ASSERT_UINT_EQ(st.error_replies, 2);
  ASSERT_UINT_EQ(st.replies, 3);
  ASSERT_EQ(st.up, 1); /* an error reply is an answer, not a broken connection */
  CLOSE(r);
}

static int evalsha(sl_redis_t *r, int id, rec_t *x, int nkeys, int argc, const char *const *argv) {
  memset(x, 0, sizeof(*x));
  return sl_redis_evalsha(r, id, nkeys, argc, argv, NULL, on_reply, x);
}

static void test_scripts(void) {
  state_t s = {0};
  rec_t a, b, c, d, e, f, g[3];
  int incr = -1, concat = -1, broken = -1, fails = -1;
  sl_redis_t *r = open_client(url_unix, LONG_MS, &s);
  ASSERT_NOT_NULL(r);
  /* Registered before the connection is up: loaded before it counts as up,
   * and one that does not compile does not keep it down. */
  ASSERT_EQ(sl_redis_script(r, "return redis.call('INCRBY', KEYS[1], ARGV[1])", &incr), 0);
  ASSERT_EQ(sl_redis_script(r, "return (", &broken), 0);
  ASSERT_EQ(sl_redis_evalsha(r, incr, 0, 0, NULL, NULL, on_reply, &a), SL_EAGAIN);
  WAIT_UNTIL(sl_redis_up(r));
  const char *kv[] = {"sc:n", "7"};
  ASSERT_EQ(cmd(r, &a, "DEL", "sc:n", NULL), 0);
  ASSERT_EQ(evalsha(r, incr, &b, 1, 2, kv), 0);
  /* Registered while up: loaded at once, usable at once. */
  ASSERT_EQ(sl_redis_script(r, "return ARGV[1] .. ARGV[2]", &concat), 0);
  ASSERT_EQ(sl_redis_script(r, "return redis.call('NOSUCHCOMMAND')", &fails), 0);
  const char *ab[] = {"a", "b"};
  ASSERT_EQ(evalsha(r, concat, &c, 0, 2, ab), 0);
  ASSERT_EQ(evalsha(r, fails, &d, 0, 0, NULL), 0);
  ASSERT_EQ(evalsha(r, broken, &e, 0, 0, NULL), 0);
  WAIT_UNTIL(e.done);
  ASSERT_EQ(b.status, 0);
  ASSERT_EQ(b.type, REDIS_REPLY_INTEGER);
  ASSERT_EQ(b.integer, 7);
  ASSERT_EQ(c.type, REDIS_REPLY_STRING);
  ASSERT_MEM_EQ(c.str, c.len, "ab", 2);
  ASSERT_EQ(d.status, 0);
  ASSERT_EQ(d.type, REDIS_REPLY_ERROR);
  ASSERT_EQ(e.status, 0);
  ASSERT_EQ(e.type, REDIS_REPLY_ERROR); /* NOSCRIPT even after the reload */
  ASSERT(strncmp(e.str, "NOSCRIPT", 8) == 0);
  /* Misuse. */
  ASSERT_EQ(sl_redis_evalsha(r, 99, 0, 0, NULL, NULL, on_reply, &f), SL_EINVAL);
  ASSERT_EQ(sl_redis_evalsha(r, incr, 3, 2, kv, NULL, on_reply, &f), SL_EINVAL);
  /* The server forgets every script: the next calls reload and retry. */
  ASSERT_EQ(cmd(r, &f, "SCRIPT", "FLUSH", NULL), 0);
  for (int i = 0; i < 3; i++) ASSERT_EQ(evalsha(r, incr, &g[i], 1, 2, kv), 0);
  WAIT_UNTIL(g[2].done);
  ASSERT_EQ(f.type, REDIS_REPLY_STATUS);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(g[i].status, 0);
    ASSERT_EQ(g[i].type, REDIS_REPLY_INTEGER);
    ASSERT_EQ(g[i].integer, 14 + 7 * i);
  }
  /* Many arguments: the vector outgrows the stack. */
  const char *many[40];
  for (int i = 0; i < 40; i++) many[i] = i % 2 ? "x" : "y";
  ASSERT_EQ(evalsha(r, concat, &a, 0, 40, many), 0);
  WAIT_UNTIL(a.done);
  ASSERT_MEM_EQ(a.str, a.len, "yx", 2);
  sl_redis_stats_t st;
  sl_redis_stats(r, &st);
  ASSERT_EQ(st.up, 1);
  ASSERT_EQ(st.pending, 0);
  CLOSE(r);
}

static void test_subscribe(void) {
  state_t s = {0};
  inbox_t news = {0}, other = {0};
  sl_redis_t *r = open_client(url_unix, LONG_MS, &s);
  ASSERT_NOT_NULL(r);
  ASSERT_EQ(sl_redis_subscribe(r, "news", on_message, &news), 0); /* before up */
  WAIT_UNTIL(sl_redis_up(r));
  ASSERT_EQ(publish_until_heard(r, "news", "hello", &news), 1);
  ASSERT_STR_EQ(news.channel, "news");
  ASSERT_MEM_EQ(news.msg, news.len, "hello", 5);
  ASSERT_EQ(sl_redis_subscribe(r, "other", on_message, &other), 0); /* while up */
  ASSERT_EQ(publish_until_heard(r, "other", "second", &other), 1);
  ASSERT_MEM_EQ(other.msg, other.len, "second", 6);
  ASSERT_EQ(news.got, 1);
  /* Binary-safe messages. */
  const char *pub[] = {"PUBLISH", "news", "x\0y"};
  size_t publ[] = {7, 4, 3};
  rec_t x;
  memset(&x, 0, sizeof(x));
  ASSERT_EQ(sl_redis_command(r, on_reply, &x, 3, pub, publ), 0);
  WAIT_UNTIL(news.got == 2);
  ASSERT_MEM_EQ(news.msg, news.len, "x\0y", 3);
  sl_redis_stats_t st;
  sl_redis_stats(r, &st);
  ASSERT_UINT_EQ(st.messages, 3);
  CLOSE(r);
}

/* The subscriber connection killed alone: remade and resubscribed, while
 * the command connection stays up. */
static void test_subscriber_killed(void) {
  state_t s = {0};
  inbox_t in = {0};
  rec_t k;
  sl_redis_t *r = open_client(url_unix, LONG_MS, &s);
  ASSERT_NOT_NULL(r);
  ASSERT_EQ(sl_redis_subscribe(r, "alone", on_message, &in), 0);
  WAIT_UNTIL(sl_redis_up(r));
  ASSERT_EQ(publish_until_heard(r, "alone", "one", &in), 1);
  ASSERT_EQ(cmd(r, &k, "CLIENT", "KILL", "TYPE", "pubsub", NULL), 0);
  WAIT_UNTIL(k.done);
  ASSERT_EQ(k.type, REDIS_REPLY_INTEGER);
  ASSERT_GE(k.integer, 1);
  ASSERT_EQ(publish_until_heard(r, "alone", "two", &in), 1);
  ASSERT_MEM_EQ(in.msg, in.len, "two", 3);
  ASSERT_EQ(s.downs, 0);
  ASSERT_EQ(s.ups, 1);
  CLOSE(r);
}

/* Commands sent from inside callbacks: on_state's "up" and an answer. */
static rec_t chain[3];
static int chain_next;
static void on_chain(sl_redis_t *r, const redisReply *rep, int status, void *ud) {
  on_reply(r, rep, status, ud);
  if (chain_next < 3) {
    static const char *const incr[] = {"INCR", "chain:n"};
    rec_t *x = &chain[chain_next++];
    if (sl_redis_command(r, on_chain, x, 2, incr, NULL) != 0) x->status = -1;
  }
}

static void on_state_send(sl_redis_t *r, int up, const char *why, void *ud) {
  on_state(r, up, why, ud);
  static const char *const del[] = {"DEL", "chain:n"};
  static rec_t first;
  if (up) sl_redis_command(r, on_chain, &first, 2, del, NULL);
}

static void test_reentrant_commands(void) {
  state_t s = {0};
  sl_redis_options_t o;
  memset(&o, 0, sizeof(o));
  o.url = url_unix;
  o.timeout_ms = LONG_MS;
  o.on_state = on_state_send;
  o.ud = &s;
  sl_redis_t *r = NULL;
  chain_next = 0;
  memset(chain, 0, sizeof(chain));
  ASSERT_EQ(sl_redis_open(&r, &loop, &o, NULL, 0), 0);
  WAIT_UNTIL(chain_next == 3 && chain[2].done);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(chain[i].status, 0);
    ASSERT_EQ(chain[i].integer, i + 1);
  }
  CLOSE(r);
}

static void test_tcp_url(void) {
  char url[128];
  state_t s = {0}, s0 = {0}, s2 = {0};
  rec_t a, b, c, d;
  snprintf(url, sizeof(url), "redis://127.0.0.1:%d/3", rport);
  sl_redis_t *r = open_client(url, LONG_MS, &s);
  sl_redis_t *r0 = open_client(url_unix, LONG_MS, &s0);
  ASSERT_NOT_NULL(r);
  ASSERT_NOT_NULL(r0);
  WAIT_UNTIL(sl_redis_up(r) && sl_redis_up(r0));
  /* The key set through database 3 is not in database 0. */
  ASSERT_EQ(cmd(r, &a, "SET", "tcp:k", "three", NULL), 0);
  WAIT_UNTIL(a.done);
  ASSERT_EQ(cmd(r, &b, "GET", "tcp:k", NULL), 0);
  ASSERT_EQ(cmd(r0, &c, "GET", "tcp:k", NULL), 0);
  WAIT_UNTIL(b.done && c.done);
  ASSERT_MEM_EQ(b.str, b.len, "three", 5);
  ASSERT_EQ(c.type, REDIS_REPLY_NIL);
  CLOSE(r);
  CLOSE(r0);
  /* A host name, resolved off the loop. */
  snprintf(url, sizeof(url), "redis://localhost:%d", rport);
  r = open_client(url, LONG_MS, &s2);
  ASSERT_NOT_NULL(r);
  WAIT_UNTIL(sl_redis_up(r));
  ASSERT_EQ(cmd(r, &d, "PING", NULL), 0);
  WAIT_UNTIL(d.done);
  ASSERT_MEM_EQ(d.str, d.len, "PONG", 4);
  CLOSE(r);
}

static void test_bad_db(void) {
  char url[128];
  state_t s = {0};
  snprintf(url, sizeof(url), "redis://127.0.0.1:%d/99", rport);
  sl_redis_t *r = open_client(url, LONG_MS, &s);
  ASSERT_NOT_NULL(r);
  WAIT_UNTIL(s.downs == 1);
  ASSERT(strncmp(s.why, "SELECT 99: ERR", 14) == 0);
  ASSERT_EQ(sl_redis_up(r), 0);
  sl_redis_stats_t st;
  sl_redis_stats(r, &st);
  ASSERT_UINT_EQ(st.connects, 0);
  CLOSE(r);
}

static void test_stall(void) {
  state_t s = {0};
  rec_t x[5], y;
  sl_redis_options_t o;
  memset(&o, 0, sizeof(o));
  o.url = url_unix;
  o.timeout_ms = 150;
  o.reconnect_base_ms = 20;
  o.reconnect_max_ms = 200;
  o.on_state = on_state;
  o.ud = &s;
  sl_redis_t *r = NULL;
  ASSERT_EQ(sl_redis_open(&r, &loop, &o, NULL, 0), 0);
  WAIT_UNTIL(sl_redis_up(r));
  ASSERT_EQ(rs_pause(&rs), 0);
  int ups = s.ups;
  for (int i = 0; i < 5; i++) ASSERT_EQ(cmd(r, &x[i], "INCR", "stall:n", NULL), 0);
  WAIT_UNTIL(x[4].done);
  for (int i = 0; i < 5; i++) {
    ASSERT_EQ(x[i].done, 1);
    ASSERT_EQ(x[i].status, SL_ETIMEDOUT);
    ASSERT_EQ(x[i].type, 0);
  }
  ASSERT_GE(s.downs, 1);
  ASSERT(strstr(s.why, "timed out") != NULL);
  ASSERT_EQ(sl_redis_up(r), 0);
  /* Down: refused at once, the callback never called. */
  ASSERT_EQ(cmd(r, &y, "PING", NULL), SL_EAGAIN);
  sl_redis_stats_t st;
  sl_redis_stats(r, &st);
  ASSERT_UINT_EQ(st.timeouts, 5);
  ASSERT_GE(st.outages, 1);
  ASSERT_GE(st.refused_down, 1);
  ASSERT_EQ(st.pending, 0);
  ASSERT(strstr(st.last_error, "timed out") != NULL);
  ASSERT_EQ(rs_resume(&rs), 0);
  /* Back by itself. */
  WAIT_UNTIL(s.ups > ups);
  ASSERT_EQ(ping_until_ok(r), 1);
  ASSERT_EQ(y.done, 0);
  CLOSE(r);
}

static void test_kill_restart(void) {
  state_t s = {0};
  inbox_t in = {0};
  rec_t block, a, b;
  int incr = -1;
  sl_redis_t *r = open_client(url_unix, LONG_MS, &s);
  ASSERT_NOT_NULL(r);
  ASSERT_EQ(sl_redis_script(r, "return redis.call('INCRBY', KEYS[1], ARGV[1])", &incr), 0);
  ASSERT_EQ(sl_redis_subscribe(r, "kr", on_message, &in), 0);
  WAIT_UNTIL(sl_redis_up(r));
  ASSERT_EQ(publish_until_heard(r, "kr", "before", &in), 1);
  /* A command the server holds (it blocks), then the server dies. */
  ASSERT_EQ(cmd(r, &block, "BLPOP", "kr:nothing", "0", NULL), 0);
  redis_kill();
  WAIT_UNTIL(block.done);
  ASSERT_EQ(block.status, SL_EUPSTREAM);
  WAIT_UNTIL(s.downs == 1);
  ASSERT_EQ(sl_redis_up(r), 0);
  ASSERT_EQ(cmd(r, &a, "PING", NULL), SL_EAGAIN);
  /* A new server on the same socket, with no scripts loaded. */
  ASSERT_EQ(redis_start(), 0);
  WAIT_UNTIL(s.ups == 2);
  const char *kv[] = {"kr:n", "5"};
  ASSERT_EQ(cmd(r, &a, "DEL", "kr:n", NULL), 0);
  ASSERT_EQ(evalsha(r, incr, &b, 1, 2, kv), 0);
  WAIT_UNTIL(b.done);
  ASSERT_EQ(b.status, 0);
  ASSERT_EQ(b.type, REDIS_REPLY_INTEGER);
  ASSERT_EQ(b.integer, 5);
  /* Resubscribed. */
  ASSERT_EQ(publish_until_heard(r, "kr", "after", &in), 1);
  ASSERT_MEM_EQ(in.msg, in.len, "after", 5);
  sl_redis_stats_t st;
  sl_redis_stats(r, &st);
  ASSERT_UINT_EQ(st.outages, 1);
  ASSERT_UINT_EQ(st.connects, 2);
  ASSERT_GE(st.failed, 1);
  CLOSE(r);
}

/* Closes the client from inside the first answer. */
static int reentrant_closed;
static void on_reply_close(sl_redis_t *r, const redisReply *rep, int status, void *ud) {
  on_reply(r, rep, status, ud);
  sl_redis_close(r, on_closed, &reentrant_closed);
}

static void test_close_pending(void) {
  state_t s = {0};
  rec_t x[20];
  sl_redis_t *r = open_client(url_unix, LONG_MS, &s);
  ASSERT_NOT_NULL(r);
  WAIT_UNTIL(sl_redis_up(r));
  for (int i = 0; i < 20; i++) ASSERT_EQ(cmd(r, &x[i], "PING", NULL), 0);
  int closed = 0;
  sl_redis_close(r, on_closed, &closed);
  /* Every pending command is canceled within the call. */
  for (int i = 0; i < 20; i++) {
    ASSERT_EQ(x[i].done, 1);
    ASSERT_EQ(x[i].status, SL_ECANCELED);
  }
  ASSERT_EQ(closed, 0); /* freed later, on the loop */
  WAIT_UNTIL(closed == 1);

  /* Closed from a callback: the rest are canceled. */
  rec_t a, b, c;
  r = open_client(url_unix, LONG_MS, &s);
  ASSERT_NOT_NULL(r);
  WAIT_UNTIL(sl_redis_up(r));
  memset(&a, 0, sizeof(a));
  const char *ping[] = {"PING"};
  reentrant_closed = 0;
  ASSERT_EQ(sl_redis_command(r, on_reply_close, &a, 1, ping, NULL), 0);
  ASSERT_EQ(cmd(r, &b, "PING", NULL), 0);
  ASSERT_EQ(cmd(r, &c, "PING", NULL), 0);
  WAIT_UNTIL(reentrant_closed == 1);
  ASSERT_EQ(a.status, 0);
  ASSERT_EQ(b.status, SL_ECANCELED);
  ASSERT_EQ(c.status, SL_ECANCELED);
  ASSERT_EQ(b.done + c.done, 2);

  /* Closed before it ever connected, and while a host name resolves. */
  r = open_client(url_unix, LONG_MS, &s);
  ASSERT_NOT_NULL(r);
  CLOSE(r);
  char url[128];
  snprintf(url, sizeof(url), "redis://localhost:%d", rport);
  r = open_client(url, LONG_MS, &s);
  ASSERT_NOT_NULL(r);
  uv_run(&loop, UV_RUN_NOWAIT);
  CLOSE(r);
}

int main(void) {
  sl_alloc_init();
  rs_need();
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/sl-redis-XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  snprintf(sockpath, sizeof(sockpath), "%s/r.sock", tmpdir);
  snprintf(url_unix, sizeof(url_unix), "unix:%s", sockpath);
  uv_loop_init(&loop);
  uv_timer_init(&loop, &tick);
  int started = -1;
  for (int tries = 0; tries < 5 && started != 0; tries++) {
    rport = rs_free_port();
    started = rport > 0 ? redis_start() : -1;
  }
  if (started != 0) {
    fprintf(stderr, "test_redis: could not start redis-server\n");
    return 1;
  }

  SL_RUN(test_bad_url);
  SL_RUN(test_refused);
  SL_RUN(test_roundtrip);
  SL_RUN(test_pipeline);
  SL_RUN(test_binary);
  SL_RUN(test_error_reply);
  SL_RUN(test_scripts);
  SL_RUN(test_subscribe);
  SL_RUN(test_subscriber_killed);
  SL_RUN(test_reentrant_commands);
  SL_RUN(test_tcp_url);
  SL_RUN(test_bad_db);
  SL_RUN(test_stall);
  SL_RUN(test_kill_restart);
  SL_RUN(test_close_pending);

  redis_kill();
  uv_close((uv_handle_t *)&tick, NULL);
  /* Not UV_RUN_DEFAULT: a client a failed test left open would reconnect
   * forever. */
  for (int i = 0; i < 10; i++) uv_run(&loop, UV_RUN_NOWAIT);
  int left = uv_loop_close(&loop);
  if (left != 0) {
    fprintf(stderr, "handles left on the loop: %s\n", uv_strerror(left));
    uv_print_all_handles(&loop, stderr);
  }
  char rm[200];
  snprintf(rm, sizeof(rm), "rm -rf '%s'", tmpdir);
  if (system(rm) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  int rc = SL_TEST_EXIT();
  return left != 0 ? 1 : rc;
}
