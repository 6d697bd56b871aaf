/* e2e_loadgen.c: the benchmark load generator's accounting, end to end.
 *
 * bench/bench_loadgen (built beside the sluice binary, in bench/) is run
 * in a quick configuration against a standalone simulated engine with send
 * stamps on, and its JSON report is checked against what is known:
 *  - the tokens it counted equal the engine's own tokens_sent, every token
 *    carried a stamp, every request ended cleanly;
 *  - on the direct path the added latency is never negative and far from
 *    the years a wrong clock would show: stamps and receive times use the
 *    same clock;
 *  - through a relay inside this test that sleeps 20 ms before forwarding
 *    each chunk from the engine, the added latency shows those 20 ms (never
 *    less, since the sleep guarantees them);
 *  - the cancel mode sees every close reach the engine.
 * No bound depends on how fast anything runs: lower bounds are what the
 * engine's TTFT and the relay's sleep guarantee, and upper bounds only
 * catch a wrong clock (they are minutes wide; an upper bound of a few ms
 * on a latency measured on a loaded machine is a speed test).  The cancel
 * run has the engine hold each stream after the tokens the client reads,
 * so the count read is exact however reads coalesce.  Only loopback.
 */
#include "test.h"
#include "e2e/harness.h"

#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#define CHAT "/v1/chat/completions"
#define RELAY_DELAY_MS 20
/* An upper bound on a measured latency that only a wrong clock (a
 * different clock on the two sides: decades off) or a lost stamp can break. */
#define SANE_MS 120000.0

static char loadgen[1024];

/* Runs the load generator with args (NULL-terminated) plus --json FILE and
 * returns the parsed report (cJSON_Delete it), or NULL after printing why. */
static cJSON *run_loadgen(const char *name, const char *const *args) {
  char json_path[1024], log_path[1024];
  snprintf(json_path, sizeof(json_path), "%s/%s.json", e2e_tmpdir(), name);
  snprintf(log_path, sizeof(log_path), "%s/%s.log", e2e_tmpdir(), name);
  const char *argv[48];
  int n = 0;
  argv[n++] = loadgen;
  for (int i = 0; args[i] && n < 44; i++) argv[n++] = args[i];
  argv[n++] = "--json";
  argv[n++] = json_path;
  argv[n] = NULL;
  pid_t pid = fork();
  if (pid < 0) return NULL;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execv(loadgen, (char *const *)argv);
    _exit(127);
  }
  int st = 0;
  /* The load generator bounds its own run with --timeout-s; the harness watchdog bounds this wait. */
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  FILE *f = fopen(json_path, "r");
  char *buf = NULL;
  long len = 0;
  if (f) {
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)len + 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) len = 0;
    fclose(f);
  }
  cJSON *doc = (buf && len > 0) ? cJSON_ParseWithLength(buf, (size_t)len) : NULL;
  free(buf);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !doc) {
    fprintf(stderr, "     bench_loadgen %s: wait status %d, report %s; its log:\n", name, st, doc ? "ok" : "missing");
    FILE *lf = fopen(log_path, "r");
    char line[512];
    while (lf && fgets(line, sizeof(line), lf)) fprintf(stderr, "       %s", line);
    if (lf) fclose(lf);
    if (doc && (!WIFEXITED(st) || WEXITSTATUS(st) != 3)) { /* 3: the run had errors, the report still counts */
      cJSON_Delete(doc);
      doc = NULL;
    }
  }
  return doc;
}

/* A number at a dotted path ("added_itl_ms.p50"), or NAN. */
static double jget(const cJSON *doc, const char *path) {
  char buf[128];
  snprintf(buf, sizeof(buf), "%s", path);
  const cJSON *cur = doc;
  for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, "."))
    cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
  return cJSON_IsNumber(cur) ? cur->valuedouble : NAN;
}

static void test_direct_accounting(void) {
  e2e_proc_t sim;
  const char *const sim_args[] = {"--stamp", "--model", "*", "--slots", "64", "--ttft-ms", "5", "--itl-ms", "2",
                                  "--prefill-us-per-char", "0", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  char url[128], simport[16];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d" CHAT, sim.port);
  snprintf(simport, sizeof(simport), "%d", sim.port);
  const char *const args[] = {"--url", url, "--sim-port", simport, "--streams", "20", "--requests", "60",
                              "--max-tokens", "16", "--timeout-s", "120", "--quiet", NULL};
  cJSON *r = run_loadgen("direct", args);
  ASSERT_NOT_NULL(r);
  /* Read every figure, then free the report, so a failed assertion leaks nothing. */
  int64_t sent = e2e_sim_stat(sim.port, "tokens_sent");
  double tokens = jget(r, "tokens"), ok = jget(r, "ok"), errors = jget(r, "errors");
  double engine_sent = jget(r, "engine.tokens_sent"), unstamped = jget(r, "unstamped_tokens");
  double ttft_n = jget(r, "added_ttft_ms.n"), itl_n = jget(r, "added_itl_ms.n"), open = jget(r, "max_open_streams");
  double per_read = jget(r, "tokens_per_read"), itl50 = jget(r, "added_itl_ms.p50"), itl99 = jget(r, "added_itl_ms.p99");
  double ttft50 = jget(r, "added_ttft_ms.p50"), client_ttft50 = jget(r, "client_ttft_ms.p50");
  cJSON_Delete(r);
  fprintf(stderr, "     tokens %.0f (engine %lld), added TTFT p50 %.3f ms, added ITL p50 %.3f ms p99 %.3f ms, "
          "tokens/read %.2f\n", tokens, (long long)sent, ttft50, itl50, itl99, per_read);
  ASSERT_EQ((int64_t)ok, 60);
  ASSERT_EQ((int64_t)errors, 0);
  ASSERT_EQ((int64_t)tokens, 60 * 16);
  ASSERT_EQ((int64_t)tokens, sent);
  ASSERT_EQ((int64_t)engine_sent, sent);
  ASSERT_EQ((int64_t)unstamped, 0);
  ASSERT_EQ((int64_t)ttft_n, 60);
  ASSERT_EQ((int64_t)itl_n, 60 * 15);
  ASSERT_EQ((int64_t)open, 20); /* the closed loop starts all 20 at once (no ramp) */
  ASSERT(per_read >= 1.0);
  /* Same clock on both sides: never negative, and not off by a clock's
   * difference (how small it is measures the machine, not the instrument). */
  ASSERT(itl50 >= 0.0);
  ASSERT(ttft50 >= 0.0);
  ASSERT(itl99 < SANE_MS);
  ASSERT(ttft50 < SANE_MS);
  /* The client's TTFT includes the engine's 5 ms. */
  ASSERT(client_ttft50 >= 5.0);
  ASSERT_EQ(e2e_sim_stat(sim.port, "completed"), 60);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* ---- a relay that delays every chunk from the engine ---- */

static int listen_loopback(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a;
  socklen_t al = sizeof(a);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0 ||
      getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The relay's body (in a child process): up to 8 client connections, each
 * paired with its own connection to the engine; client bytes go on at once,
 * engine bytes after a sleep of delay_ms per read. */
static void relay_main(int lfd, int up_port, int delay_ms) {
  int cl[8], up[8], n = 0;
  char buf[65536];
  for (;;) {
    struct pollfd pf[17];
    pf[0].fd = lfd;
    pf[0].events = POLLIN;
    for (int i = 0; i < n; i++) {
      pf[1 + 2 * i].fd = cl[i];
      pf[1 + 2 * i].events = POLLIN;
      pf[2 + 2 * i].fd = up[i];
      pf[2 + 2 * i].events = POLLIN;
    }
    if (poll(pf, (nfds_t)(1 + 2 * n), 30000) <= 0) _exit(0); /* idle for 30 s: the test is gone */
    if (pf[0].revents & POLLIN) {
      int c = accept(lfd, NULL, NULL);
      if (c >= 0 && n < 8) {
        int u = nu_connect(up_port);
        if (u < 0) close(c);
        else {
          int one = 1;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
          cl[n] = c;
          up[n] = u;
          n++;
        }
      } else if (c >= 0) {
        close(c);
      }
      continue; /* the pollfd array changed */
    }
    for (int i = 0; i < n; i++) {
      int drop = 0;
      if (pf[1 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t r = read(cl[i], buf, sizeof(buf));
        if (r <= 0 || write_all(up[i], buf, (size_t)r) < 0) drop = 1;
      }
      if (!drop && (pf[2 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t r = read(up[i], buf, sizeof(buf));
        if (r > 0) usleep((useconds_t)delay_ms * 1000);
        if (r <= 0 || write_all(cl[i], buf, (size_t)r) < 0) drop = 1;
      }
      if (drop) {
        close(cl[i]);
        close(up[i]);
        cl[i] = cl[n - 1];
        up[i] = up[n - 1];
        n--;
        break; /* the pollfd array no longer matches */
      }
    }
  }
}

static void test_delayed_relay(void) {
  e2e_proc_t sim;
  /* Tokens 50 ms apart and a 40 ms TTFT, both longer than the relay's
   * delay, so each engine write (the response head too) is one relay read
   * and no delay queues behind another. */
  const char *const sim_args[] = {"--stamp", "--model", "*", "--ttft-ms", "40", "--itl-ms", "50", "--itl-jitter", "0",
                                  "--prefill-us-per-char", "0", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  int rport = 0;
  int lfd = listen_loopback(&rport);
  ASSERT_GE(lfd, 0);
  pid_t relay = fork();
  ASSERT_GE(relay, 0);
  if (relay == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    relay_main(lfd, sim.port, RELAY_DELAY_MS);
    _exit(0);
  }
  close(lfd);

  char url[128], simport[16];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d" CHAT, rport);
  snprintf(simport, sizeof(simport), "%d", sim.port);
  const char *const args[] = {"--url", url, "--sim-port", simport, "--streams", "1", "--requests", "3",
                              "--max-tokens", "10", "--timeout-s", "120", "--quiet", NULL};
  cJSON *r = run_loadgen("delayed", args);
  kill(relay, SIGKILL);
  waitpid(relay, NULL, 0);
  ASSERT_NOT_NULL(r);
  double p50 = jget(r, "added_itl_ms.p50"), ttft = jget(r, "added_ttft_ms.p50"), max = jget(r, "added_itl_ms.max");
  double n = jget(r, "added_itl_ms.n"), errors = jget(r, "errors"), tokens = jget(r, "tokens");
  cJSON_Delete(r);
  fprintf(stderr, "     through a %d ms relay: added ITL p50 %.3f ms (n=%.0f), added TTFT p50 %.3f ms\n",
          RELAY_DELAY_MS, p50, n, ttft);
  ASSERT_EQ((int64_t)errors, 0);
  ASSERT_EQ((int64_t)tokens, 30);
  ASSERT_EQ((int64_t)tokens, e2e_sim_stat(sim.port, "tokens_sent"));
  ASSERT_EQ((int64_t)n, 27);
  /* The relay slept 20 ms before every forward: the added latency is at
   * least that (for the first token too), and the same clock on both sides. */
  ASSERT(p50 >= RELAY_DELAY_MS);
  ASSERT(max >= RELAY_DELAY_MS);
  ASSERT(max < SANE_MS);
  ASSERT(ttft >= RELAY_DELAY_MS);
  ASSERT(ttft < SANE_MS);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

static void test_cancel_mode(void) {
  e2e_proc_t sim;
  const char *const sim_args[] = {"--stamp", "--model", "*", "--ttft-ms", "5", "--itl-ms", "5", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  char url[128], simport[16];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d" CHAT, sim.port);
  snprintf(simport, sizeof(simport), "%d", sim.port);
  /* The engine sends 3 tokens and holds the stream until the client
   * leaves: the client reads exactly 3 even when a read would have brought
   * several tokens at once. */
  const char *const args[] = {"--url", url, "--sim-port", simport, "--mode", "cancel", "--requests", "4",
                              "--max-tokens", "500", "--cancel-after", "3", "--header", "x-sim-fault: stall",
                              "--header", "x-sim-fault-at: 3", "--cancel-timeout-ms", "60000", "--timeout-s", "120",
                              "--quiet", NULL};
  cJSON *r = run_loadgen("cancel", args);
  ASSERT_NOT_NULL(r);
  double p50 = jget(r, "cancel_ms.p50"), n = jget(r, "cancel_ms.n"), not_seen = jget(r, "cancel_not_seen");
  double closed = jget(r, "engine.client_closed_mid_stream"), tokens = jget(r, "tokens");
  cJSON_Delete(r);
  fprintf(stderr, "     cancel seen by the engine after p50 %.3f ms\n", p50);
  ASSERT_EQ((int64_t)n, 4);
  ASSERT_EQ((int64_t)not_seen, 0);
  ASSERT_EQ((int64_t)closed, 4);
  ASSERT_EQ((int64_t)tokens, 12);
  ASSERT_EQ(e2e_sim_stat(sim.port, "client_closed_mid_stream"), 4);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 280); /* each load generator run is bounded by its own --timeout-s */
  /* The load generator is built beside the binary, in bench/. */
  char tmp[1024];
  snprintf(tmp, sizeof(tmp), "%s", e2e_binary());
  snprintf(loadgen, sizeof(loadgen), "%s/bench/bench_loadgen", dirname(tmp));
  struct stat sb;
  if (stat(loadgen, &sb) != 0) {
    fprintf(stderr, "e2e_loadgen: %s not found (build the bench targets)\n", loadgen);
    return 1;
  }
  E2E_RUN(test_direct_accounting);
  E2E_RUN(test_delayed_relay);
  E2E_RUN(test_cancel_mode);
  return SL_TEST_EXIT();
}
