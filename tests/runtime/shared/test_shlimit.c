/* test_shlimit.c: shared windows against a real redis-server: two
 * "processes" (two clients, two sets) count into one window with their
 * answers interleaved at random, and the total stays within
 * L + (N - 1) x max(B, largest request) every time; a GCRA bucket drains;
 * refusals say when to retry; a stalled Redis makes checks say SL_EAGAIN
 * (the caller's fail mode) and counts nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "redis_server.h"
#include "runtime/base/errors.h"
#include "runtime/shared/redis.h"
#include "runtime/shared/shlimit.h"
#include "test.h"

static rs_t rs;
static char sock[108];
static uv_loop_t loop;

typedef struct {
  sl_redis_t *r;
  sl_shlimits_t *s;
  int closed;
} side_t;

static void on_closed(void *ud) { ((side_t *)ud)->closed = 1; }

/* Runs the loop until *flag or a generous bound (which only fails). */
static int run_until(const int *flag) {
  for (int i = 0; i < 30000 && !*flag; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    if (!*flag) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  return *flag;
}

static int up_a, up_b;
static void on_state(sl_redis_t *r, int up, const char *why, void *ud) {
  (void)r;
  (void)why;
  *(int *)ud = up;
}

static void side_open(side_t *x, int *up) {
  memset(x, 0, sizeof(*x));
  *up = 0;
  char url[160], err[160];
  snprintf(url, sizeof(url), "unix:%s", sock);
  sl_redis_options_t o = {.url = url, .timeout_ms = 2000, .on_state = on_state, .ud = up};
  ASSERT_EQ(sl_redis_open(&x->r, &loop, &o, err, sizeof(err)), 0);
  ASSERT_EQ(sl_shlimits_new(&x->s, x->r), 0);
  ASSERT(run_until(up));
}

static void side_close(side_t *x) {
  sl_redis_close(x->r, on_closed, x);
  ASSERT(run_until(&x->closed));
  sl_shlimits_free(x->s);
}

/* Waits until neither window has anything in flight or pending. */
static void settle(sl_shwin_t *a, sl_shwin_t *b) {
  int idle = 0;
  for (int i = 0; i < 30000 && !idle; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    idle = sl_shwin_idle(a) && sl_shwin_idle(b);
    if (!idle) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  ASSERT(idle);
}

static void on_get(sl_redis_t *r, const redisReply *reply, int status, void *ud) {
  (void)r;
  int64_t *out = ud;
  out[1] = 1;
  if (status == 0 && reply != NULL && reply->type == REDIS_REPLY_STRING) out[0] = atoll(reply->str);
}

/* The integer Redis holds at key (-1 when absent). */
static int64_t redis_int(side_t *x, const char *key) {
  int64_t got[2] = {-1, 0};
  const char *argv[2] = {"GET", key};
  size_t len[2] = {3, strlen(key)};
  if (sl_redis_command(x->r, on_get, got, 2, argv, len) != 0) return -2;
  int done = 0;
  for (int i = 0; i < 30000 && !done; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    done = got[1] != 0;
  }
  return got[0];
}

/* L = 50 requests, B = 4: 600 attempts from two sides, each side's
 * answers read at random moments.  Admitted never passes 50 + 4; once the
 * answers are in, both refuse and the key holds what was admitted. */
static void test_window_bound_under_interleaving(void) {
  side_t a, b;
  side_open(&a, &up_a);
  side_open(&b, &up_b);
  const int64_t L = 50, B = 4;
  for (int round = 0; round < 5; round++) {
    char key[64];
    snprintf(key, sizeof(key), "test:win:%d", round);
    sl_shwin_t *wa = sl_shwin_new(a.s, key, SL_SHL_WINDOW, L, 60000, B);
    sl_shwin_t *wb = sl_shwin_new(b.s, key, SL_SHL_WINDOW, L, 60000, B);
    ASSERT_NOT_NULL(wa);
    ASSERT_NOT_NULL(wb);
    srand(1000 + round);
    int64_t admitted = 0, again = 0, over = 0;
    for (int i = 0; i < 600; i++) {
      sl_shwin_t *w = rand() & 1 ? wa : wb;
      int64_t used, retry;
      int rc = sl_shwin_check(w, 1, &used, &retry);
      if (rc == 0) {
        sl_shwin_add(w, 1);
        admitted++;
      } else if (rc == SL_EAGAIN) {
        again++;
      } else {
        ASSERT_EQ(rc, SL_ETOOBIG);
        ASSERT_GT(retry, 0);
        ASSERT_LE(retry, 60000);
        over++;
      }
      if (rand() % (round + 2) == 0) uv_run(&loop, UV_RUN_NOWAIT);
      ASSERT_LE(admitted, L + B);
    }
    /* Then both keep asking until both refuse with everything answered:
     * a side whose last answer is old admits up to its allowance more,
     * learns the count with the answer, and refuses. */
    int64_t used, retry;
    for (int quiet = 0, i = 0; quiet < 2 && i < 100000; i++) {
      settle(wa, wb);
      quiet = 0;
      for (int k = 0; k < 2; k++) {
        sl_shwin_t *w = k ? wb : wa;
        int rc = sl_shwin_check(w, 1, &used, &retry);
        if (rc == 0) {
          sl_shwin_add(w, 1);
          admitted++;
        }
        quiet += rc == SL_ETOOBIG;
      }
      ASSERT_LE(admitted, L + B);
    }
    fprintf(stderr, "  round %d: admitted %lld (bound %lld), allowance spent %lld, over %lld\n", round,
            (long long)admitted, (long long)(L + B), (long long)again, (long long)over);
    ASSERT_GE(admitted, L);
    ASSERT_LE(admitted, L + B);
    ASSERT_EQ(redis_int(&a, key), admitted);
  }
  side_close(&a);
  side_close(&b);
}

/* Returned units (a stream settling below its reservation) lower the
 * count; a negative count never opens a window. */
static void test_window_returns(void) {
  side_t a, b;
  side_open(&a, &up_a);
  side_open(&b, &up_b);
  sl_shwin_t *wa = sl_shwin_new(a.s, "test:ret", SL_SHL_WINDOW, 100, 60000, 1000);
  sl_shwin_t *wb = sl_shwin_new(b.s, "test:ret", SL_SHL_WINDOW, 100, 60000, 1000);
  sl_shwin_t *wn = sl_shwin_new(a.s, "test:neg", SL_SHL_WINDOW, 100, 60000, 1000);
  int64_t used, retry;
  ASSERT_EQ(sl_shwin_check(wa, 80, &used, &retry), 0);
  sl_shwin_add(wa, 80);
  sl_shwin_add(wa, -50);
  sl_shwin_add(wn, -5);
  settle(wa, wb);
  sl_shwin_add(wb, 1); /* b learns the count with its own answer */
  settle(wa, wb);
  ASSERT_EQ(sl_shwin_check(wb, 69, &used, &retry), 0);
  ASSERT_EQ(used, 31);
  ASSERT_EQ(sl_shwin_check(wb, 70, &used, &retry), SL_ETOOBIG);
  ASSERT_EQ(sl_shwin_check(wn, 100, &used, &retry), 0);
  ASSERT_EQ(used, 0);
  side_close(&a);
  side_close(&b);
}

/* A GCRA bucket of 6000 units a minute (100 a second), B = 200: two sides
 * fill it in steps of 50.  It holds at most 6000 + 200 + what drained
 * meanwhile; a refusal says how long the bucket takes to drain enough. */
static void test_gcra(void) {
  side_t a, b;
  side_open(&a, &up_a);
  side_open(&b, &up_b);
  const int64_t L = 6000, B = 200;
  sl_shwin_t *wa = sl_shwin_new(a.s, "test:gcra", SL_SHL_GCRA, L, 60000, B);
  sl_shwin_t *wb = sl_shwin_new(b.s, "test:gcra", SL_SHL_GCRA, L, 60000, B);
  uint64_t t0 = sl_shlimits_now();
  int64_t admitted = 0, used = 0, retry = 0;
  int refused = 0;
  srand(7);
  for (int i = 0; i < 1000 && !refused; i++) {
    sl_shwin_t *w = rand() & 1 ? wa : wb;
    int rc = sl_shwin_check(w, 50, &used, &retry);
    if (rc == 0) {
      sl_shwin_add(w, 50);
      admitted += 50;
    } else if (rc == SL_ETOOBIG) {
      refused = 1;
    } else {
      settle(wa, wb); /* the allowance is spent until the answers come */
    }
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  double drained = (double)(sl_shlimits_now() - t0 + 1) * (double)L / 60000.0;
  fprintf(stderr, "  gcra: admitted %lld, drained at most %.0f, retry %lld ms\n", (long long)admitted, drained,
          (long long)retry);
  ASSERT(refused);
  ASSERT_LE((double)admitted, (double)(L + B) + drained);
  ASSERT_GE((double)admitted, (double)L - (double)B);
  /* Refused at need 50 with the bucket about full: it drains 100 a second,
   * so retry is at most the time 50 + B units take, and more than 0. */
  ASSERT_GT(retry, 0);
  ASSERT_LE(retry, (50 + B + 1) * 60000 / L + 1);
  side_close(&a);
  side_close(&b);
}

/* Redis stops answering: pending calls time out, the client goes down, and
 * checks say SL_EAGAIN; adds while down count nothing.  Back: shared again. */
static void test_stalled_redis(void) {
  side_t a;
  memset(&a, 0, sizeof(a));
  char url[160], err[160];
  snprintf(url, sizeof(url), "unix:%s", sock);
  up_a = 0;
  sl_redis_options_t o = {.url = url, .timeout_ms = 100, .on_state = on_state, .ud = &up_a};
  ASSERT_EQ(sl_redis_open(&a.r, &loop, &o, err, sizeof(err)), 0);
  ASSERT_EQ(sl_shlimits_new(&a.s, a.r), 0);
  ASSERT(run_until(&up_a));
  sl_shwin_t *w = sl_shwin_new(a.s, "test:stall", SL_SHL_WINDOW, 10, 60000, 5);
  int64_t used, retry;
  rs_pause(&rs);
  ASSERT_EQ(sl_shwin_check(w, 1, &used, &retry), 0);
  sl_shwin_add(w, 1); /* in flight; it will time out */
  int down = 0;
  for (int i = 0; i < 30000 && !down; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    down = !up_a;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  ASSERT(down);
  ASSERT_EQ(sl_shwin_check(w, 1, &used, &retry), SL_EAGAIN);
  sl_shwin_add(w, 3); /* dropped: Redis is down */
  sl_shlimits_stats_t st;
  sl_shlimits_stats(a.s, &st);
  ASSERT_GE(st.lost, 1);
  ASSERT_GE(st.dropped_units, 3);
  rs_resume(&rs);
  ASSERT(run_until(&up_a));
  ASSERT_EQ(sl_shwin_check(w, 1, &used, &retry), 0);
  side_close(&a);
}

int main(void) {
  rs_need();
  char dir[] = "/tmp/sluice-shlimit-XXXXXX";
  if (mkdtemp(dir) == NULL) return 1;
  snprintf(sock, sizeof(sock), "%s/r.sock", dir);
  if (rs_start(&rs, sock, 0) != 0) {
    fprintf(stderr, "redis-server did not start\n");
    return 1;
  }
  uv_loop_init(&loop);
  SL_RUN(test_window_bound_under_interleaving);
  SL_RUN(test_window_returns);
  SL_RUN(test_gcra);
  SL_RUN(test_stalled_redis);
  /* After a failed test a client may still be open: the loop is not run
   * to its end then (it would reconnect forever). */
  if (sl__test_failed_asserts == 0) {
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
  rs_stop(&rs);
  rmdir(dir);
  return SL_TEST_EXIT();
}
