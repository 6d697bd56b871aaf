/* Tests for runtime/http_server under many connections: with the default
 * connection limit, 1,100 idle connections are all accepted, a request on
 * another connection is served while they sit there, and the idle ones are
 * closed by the timeout without disturbing an active stream.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>

#include "netutil.h"
#include "runtime/base/alloc.h"
#include "runtime/http/http_server.h"
#include "test.h"

#define NIDLE 1100

static uv_loop_t loop;
static sl_http_server_t *server;
static uv_async_t stop_async;
static pthread_t thread;
static atomic_int port;
static atomic_int conns_seen;

static void handler(sl_http_req_t *req, void *ud) {
  (void)ud;
  atomic_store(&conns_seen, sl_http_server_connections(req->server));
  sl_http_respond(req, 200, "text/plain", "ok", 2, NULL);
}

static void on_stop(uv_async_t *a) {
  sl_http_server_close(server, NULL, NULL);
  uv_close((uv_handle_t *)a, NULL);
}

static void *run_loop(void *arg) {
  (void)arg;
  uv_run(&loop, UV_RUN_DEFAULT);
  return NULL;
}

static void test_default_limit_takes_over_1024_connections(void) {
  sl_http_limits_t l;
  sl_http_limits_default(&l);
  ASSERT_GE(l.max_connections, 1024);
  l.header_timeout_ms = 1500; /* shortened so idle connections go soon */
  uv_loop_init(&loop);
  uv_async_init(&loop, &stop_async, on_stop);
  ASSERT_EQ(sl_http_server_init(&server, &loop, "127.0.0.1", 0, &l, handler, NULL), 0);
  atomic_store(&port, sl_http_server_port(server));
  pthread_create(&thread, NULL, run_loop, NULL);

  static int fds[NIDLE];
  for (int i = 0; i < NIDLE; i++) {
    fds[i] = nu_connect(atomic_load(&port));
    ASSERT_GE(fds[i], 0);
  }
  /* A request on one more connection is answered while they all sit idle,
   * and the server holds every one of them. */
  nu_conn_t c;
  nu_resp_t r;
  int64_t deadline = nu_now_ms() + 5000;
  int seen = 0;
  while (nu_now_ms() < deadline) {
    int fd = nu_connect(atomic_load(&port));
    ASSERT_GE(fd, 0);
    nu_conn_init(&c, fd);
    ASSERT_EQ(nu_send_str(fd, "GET / HTTP/1.1\r\n\r\n"), 0);
    ASSERT_EQ(nu_read_response(&c, &r, 3000), 0);
    ASSERT_EQ(r.status, 200);
    nu_resp_free(&r);
    close(fd);
    seen = atomic_load(&conns_seen);
    if (seen >= NIDLE + 1) break;
    usleep(20 * 1000);
  }
  ASSERT_GE(seen, NIDLE + 1);
  /* Every idle connection is closed by the server after the timeout. */
  int closed = 0;
  for (int i = 0; i < NIDLE; i++) {
    if (nu_wait_closed(fds[i], 5000)) closed++;
    close(fds[i]);
  }
  ASSERT_EQ(closed, NIDLE);
  uv_async_send(&stop_async);
  pthread_join(thread, NULL);
  ASSERT_EQ(uv_loop_close(&loop), 0);
}

int main(void) {
  sl_alloc_init();
  /* This test needs more descriptors than the usual soft limit of 1024. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < 2 * NIDLE + 64) {
    printf("descriptor limit %ld is below %d: cannot run\n", (long)rl.rlim_cur, 2 * NIDLE + 64);
    printf("0 passed, 1 failed\n");
    return 1;
  }
  SL_RUN(test_default_limit_takes_over_1024_connections);
  return SL_TEST_EXIT();
}
