/* e2e_backpressure.c: the slow reader, end to end.
 *
 * A standalone simulated engine sends 100,000 tokens as fast as its socket
 * takes them while the client reads 1 KiB every 10 ms.  sluice must stop
 * reading the engine when the client's write queue passes the high watermark
 * (so the engine's writes block in turn) and keep the bytes it pins for the
 * stream under the configured bound, and still deliver every token and
 * [DONE] once the client speeds up.  The client crawls until it has seen
 * both pauses happen (not for a fixed time, which a slow machine could
 * spend before the engine had filled the buffers between them).
 */
#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"
#define NTOKENS 100000

static void test_slow_reader_backpressure(void) {
  e2e_proc_t sim, sl;
  const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"fast\",\"models\":[\"m1\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:%d\"}]}],"
           "\"stream\":{\"high_watermark\":65536,\"low_watermark\":16384}}",
           sim.port);
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  int64_t bound = e2e_health_num(sl.port, "stream_pin_bound_bytes");
  ASSERT_GT(bound, 0);

  /* A small receive buffer makes the client slow at the TCP level too, so
   * its kernel does not soak up megabytes on its behalf. */
  nu_conn_t *c = e2e_conn_open(sl.port, 16384);
  ASSERT_NOT_NULL(c);
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  char headers[128];
  snprintf(headers, sizeof(headers), "x-sim-tokens: %d\r\nx-sim-itl-ms: 0\r\n", NTOKENS);
  ASSERT_EQ(e2e_sse_start(c, CHAT, headers, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK,
                          E2E_WAIT_MS),
            200);

  /* Crawl: 1 KiB every 10 ms until sluice has paused its reading of the
   * engine and the engine's own writes have blocked (checked every 20
   * reads).  Reading all ~20 MB at this pace would take about an hour, so
   * the stream is far from its end whenever that happens; then the client
   * drains the rest as fast as it can. */
  int64_t crawl_end = nu_now_ms() + 2 * E2E_WAIT_MS;
  long crawled = 0;
  int paused = 0;
  for (int i = 0; !paused && nu_now_ms() < crawl_end; i++) {
    long n = e2e_sse_read_some(c, &s, 1024, E2E_WAIT_MS);
    ASSERT_GT(n, 0);
    crawled += n;
    usleep(10 * 1000);
    if (i % 20 == 19)
      paused = e2e_counter(sl.port, "upstream_read_pauses") >= 1 && e2e_sim_stat(sim.port, "write_blocked") >= 1;
  }
  ASSERT(paused);
  ASSERT_LT(s.ncontent, NTOKENS); /* still far from the end */

  /* Drain: every token and [DONE] arrive.  If they do not, say which side
   * stopped: sluice's reading of the engine, or the engine's writing. */
  int drained = e2e_sse_read(c, &s, 4 * E2E_WAIT_MS);
  if (drained != 0)
    fprintf(stderr,
            "     drain stopped after %ld content chunks: sluice pauses %lld resumes %lld tokens_received %lld "
            "tokens_written %lld; engine tokens_sent %lld write_blocked %lld max_write_queue %lld\n",
            (long)s.ncontent, (long long)e2e_counter(sl.port, "upstream_read_pauses"),
            (long long)e2e_counter(sl.port, "upstream_read_resumes"), (long long)e2e_counter(sl.port, "tokens_received"),
            (long long)e2e_counter(sl.port, "tokens_written"), (long long)e2e_sim_stat(sim.port, "tokens_sent"),
            (long long)e2e_sim_stat(sim.port, "write_blocked"), (long long)e2e_sim_stat(sim.port, "max_write_queue_bytes"));
  ASSERT_EQ(drained, 0);
  e2e_conn_close(c);
  ASSERT(e2e_sse_kinds_are(&s, 1, NTOKENS, 0));
  ASSERT_EQ(s.wrong_object, 0);
  ASSERT_EQ(s.framing_errors, 0);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  fprintf(stderr, "     crawled %ld bytes before both sides had paused\n", crawled);

  /* The pinned peak is recorded when the stream ends. */
  ASSERT_GE(e2e_wait_counter(sl.port, "streams_completed", 1, E2E_WAIT_MS), 1);
  int64_t pauses = e2e_counter(sl.port, "upstream_read_pauses");
  int64_t resumes = e2e_counter(sl.port, "upstream_read_resumes");
  int64_t peak = e2e_counter(sl.port, "stream_pinned_bytes_peak");
  fprintf(stderr, "     pauses %lld, resumes %lld, pinned peak %lld bytes, bound %lld bytes, engine writes blocked %lld\n",
          (long long)pauses, (long long)resumes, (long long)peak, (long long)bound,
          (long long)e2e_sim_stat(sim.port, "write_blocked"));
  ASSERT_GE(pauses, 1);
  ASSERT_GE(resumes, 1);
  ASSERT_GT(peak, 0);
  ASSERT_LE(peak, bound);
  ASSERT_EQ(e2e_sim_stat(sim.port, "completed"), 1);
  ASSERT_EQ(e2e_sim_stat(sim.port, "tokens_sent"), NTOKENS);
  ASSERT_EQ(e2e_stop(&sl), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 280); /* the crawl and the drain are each bounded by minutes under load */
  E2E_RUN(test_slow_reader_backpressure);
  return SL_TEST_EXIT();
}
