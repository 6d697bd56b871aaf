/* End-to-end: timing dynamics per endpoint, through the real binary.
 *
 * Two pools of one in-process simulated engine each: "wave" sends its
 * tokens with gaps following a sine over the token's index (itl_wave:
 * period 16 tokens, amplitude 75% of 20 ms, with 10% jitter on top), "noisy"
 * with uniform jitter of +-50% around the same 20 ms.  Responses run on both
 * engines at once, one at a time per engine, each 129 tokens long: 128 gaps,
 * whole cycles of the wave, so consecutive responses continue it without a
 * seam.  Once an engine has sent enough gaps for a verdict (min_samples,
 * a full ring) the test waits for GET /health to show it (an event, bounded
 * by a cap that only fails the test); then the wave engine must be
 * "periodic" and the noisy one "noise", with the evidence behind each.  The
 * same verdicts must reach a placement policy (a policy file written here
 * puts every candidate's class in its placement reason, which the stream's
 * log line carries) and an attach session's endpoints().  A second test
 * checks that a gap spanning a backpressure pause is not recorded.
 *
 * The gaps are the ones the relay measured, loop scheduling included: the
 * wave swings by +-15 ms, far above the few milliseconds a loaded machine
 * adds to a gap now and then, and the job clips the rare larger hiccup
 * (timing.c), so the verdicts do not depend on how loaded the machine is.
 */
#include <unistd.h>

#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"
#define TOKENS 129      /* per response: 128 gaps, 8 whole cycles of the wave */
#define MIN_SAMPLES 512 /* gaps before a verdict: a full ring, four responses */
#define RESPONSES ((MIN_SAMPLES + TOKENS - 2) / (TOKENS - 1))
#define CAP_MS 120000   /* the most the responses and verdicts may take */

static char policy_path[600];
static char admin_path[108];

/* Picks the first candidate and says every candidate's timing verdict in
 * its reason: "dyn 127.0.0.1:P=periodic/512 127.0.0.1:Q=noise/512". */
static void write_policy(void) {
  FILE *f = fopen(policy_path, "w");
  fputs("local placement = require 'sluice.placement'\n"
        "return {\n"
        "  name = 'dyn_probe', version = '1', schema = {},\n"
        "  place = function(ctx)\n"
        "    local parts = {}\n"
        "    for i = 0, ctx.n - 1 do\n"
        "      local c = ctx.cands[i]\n"
        "      parts[#parts + 1] = placement.name(c) .. '=' .. (placement.dynamics(c) or 'none')\n"
        "        .. '/' .. c.dyn_samples\n"
        "    end\n"
        "    table.sort(parts)\n"
        "    return 1, 'dyn ' .. table.concat(parts, ' ')\n"
        "  end,\n"
        "}\n",
        f);
  fclose(f);
}

static int config(char *buf, size_t cap) {
  return snprintf(buf, cap,
                  "{\"placement\":{\"policy\":\"%s\",\"watch\":false},\"admin_socket\":\"%s\","
                  "\"dynamics\":{\"interval_ms\":100,\"min_samples\":%d},"
                  "\"pools\":["
                  "{\"name\":\"wave\",\"models\":[\"mw\",\"both\"],\"endpoints\":[{\"sim\":{\"seed\":1,"
                  "\"ttft_ms\":1,\"itl_ms\":20,\"itl_jitter\":0.1,\"itl_wave\":{\"period\":16,\"amplitude\":0.75}}}]},"
                  "{\"name\":\"noisy\",\"models\":[\"mn\",\"both\"],\"endpoints\":[{\"sim\":{\"seed\":2,"
                  "\"ttft_ms\":1,\"itl_ms\":20,\"itl_jitter\":0.5}}]}]}",
                  policy_path, admin_path, MIN_SAMPLES);
}

/* The pool's first endpoint in a /health document, or NULL. */
static const cJSON *endpoint_of(const cJSON *health, const char *pool) {
  const cJSON *p;
  cJSON_ArrayForEach(p, cJSON_GetObjectItem(health, "pools")) {
    if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(p, "name")), pool) == 0)
      return cJSON_GetArrayItem(cJSON_GetObjectItem(p, "endpoints"), 0);
  }
  return NULL;
}

/* The "dynamics" member of the pool's first endpoint (NULL when the pool is
 * missing; a cJSON null before the first verdict), and its address into
 * addr. */
static const cJSON *dynamics_of(const cJSON *health, const char *pool, char *addr, size_t cap) {
  const cJSON *e = endpoint_of(health, pool);
  if (e == NULL) return NULL;
  if (addr) snprintf(addr, cap, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(e, "address")));
  return cJSON_GetObjectItem(e, "dynamics");
}

/* 1 when the pool's endpoint has a verdict, 0 when not yet, -1 when
 * /health did not answer. */
static int has_verdict(int port, const char *pool) {
  cJSON *h = e2e_get_json(port, "/health", NULL);
  if (h == NULL) return -1;
  const cJSON *d = dynamics_of(h, pool, NULL, 0);
  int yes = cJSON_IsObject(d);
  cJSON_Delete(h);
  return yes;
}

/* One engine's feed: RESPONSES responses one after another, which bring
 * the gaps a verdict needs.  Both feeds are read in turns by one thread
 * (the harness's helpers are not made for threads); a slice that brings
 * nothing is not a failure, only the overall cap is. */
typedef struct {
  const char *model, *pool;
  nu_conn_t *c;  /* the response being read, or NULL */
  nu_resp_t head;
  e2e_sse_t s;
  int streams;   /* responses that completed */
  int failed;    /* a response that did not complete */
} feed_t;

static int feed_open(feed_t *f, int port) {
  char body[512], hdr[64];
  snprintf(hdr, sizeof(hdr), "x-sim-tokens: %d\r\n", TOKENS);
  f->c = e2e_sse_open(port, CHAT, hdr, e2e_chat_body(body, sizeof(body), f->model, 1, NULL), &f->head, &f->s, CHUNK,
                      E2E_WAIT_MS);
  if (f->c == NULL || f->head.status != 200) {
    fprintf(stderr, "feed %s: the request was not answered with 200 (%d)\n", f->model, f->head.status);
    if (f->c) e2e_conn_close(f->c);
    f->c = NULL;
    f->failed = 1;
    return -1;
  }
  return 0;
}

/* Reads what f's response has for up to slice_ms; at its end checks it and
 * starts the next response while more are needed. */
static void feed_step(feed_t *f, int port, int slice_ms) {
  if (f->c == NULL) return;
  long n = e2e_sse_read_some(f->c, &f->s, 65536, slice_ms);
  if (n == -2 || (n > 0 && !f->s.body_ended)) return;
  int ok = f->s.body_ended && f->s.ncontent == TOKENS && f->s.ndone == 1 && f->s.nerror == 0;
  if (!ok)
    fprintf(stderr, "feed %s: a response did not complete (%ld content chunks, [DONE] %ld, eof %d)\n", f->model,
            f->s.ncontent, f->s.ndone, f->s.eof);
  e2e_sse_free(&f->s);
  nu_resp_free(&f->head);
  e2e_conn_close(f->c);
  f->c = NULL;
  if (!ok) {
    f->failed = 1;
    return;
  }
  if (++f->streams < RESPONSES) feed_open(f, port);
}

static double num(const cJSON *o, const char *k) { return cJSON_GetNumberValue(cJSON_GetObjectItem(o, k)); }

static void print_verdict(const char *pool, const cJSON *d) {
  printf("  %s: class=%s lambda=%.4f fit_r2=%.3f growth=%.3f fnn=%.3f recurrence=%.3f trend_r2=%.4f "
         "mean_gap_ms=%.2f samples=%.0f runs=%.0f\n",
         pool, cJSON_GetStringValue(cJSON_GetObjectItem(d, "class")), num(d, "lambda"), num(d, "fit_r2"),
         num(d, "growth"), num(d, "fnn"), num(d, "recurrence"), num(d, "trend_r2"), num(d, "mean_gap_ms"),
         num(d, "samples"), num(d, "runs"));
}

static void test_periodic_and_noisy_engines(void) {
  snprintf(policy_path, sizeof(policy_path), "%s/dyn_probe.lua", e2e_tmpdir());
  if (snprintf(admin_path, sizeof(admin_path), "%s/admin.sock", e2e_tmpdir()) >= (int)sizeof(admin_path)) ASSERT(0);
  write_policy();
  char cfg[2048];
  config(cfg, sizeof(cfg));
  e2e_proc_t p;
  ASSERT_EQ(e2e_serve_start(&p, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_endpoints_ready(p.port, 2, E2E_WAIT_MS), 1);

  /* Before any stream: no verdict, shown as null. */
  cJSON *h = e2e_get_json(p.port, "/health", NULL);
  ASSERT_NOT_NULL(h);
  char wave_addr[64], noisy_addr[64];
  ASSERT(cJSON_IsNull(dynamics_of(h, "wave", wave_addr, sizeof(wave_addr))));
  ASSERT(cJSON_IsNull(dynamics_of(h, "noisy", noisy_addr, sizeof(noisy_addr))));
  cJSON_Delete(h);

  feed_t fw, fn;
  memset(&fw, 0, sizeof(fw));
  memset(&fn, 0, sizeof(fn));
  fw.model = "mw";
  fw.pool = "wave";
  fn.model = "mn";
  fn.pool = "noisy";
  ASSERT_EQ(feed_open(&fw, p.port), 0);
  ASSERT_EQ(feed_open(&fn, p.port), 0);
  int64_t t0 = nu_now_ms();
  while ((fw.c != NULL || fn.c != NULL) && nu_now_ms() - t0 < CAP_MS) {
    feed_step(&fw, p.port, 20);
    feed_step(&fn, p.port, 20);
  }
  /* The gaps are in; the next pass of the job (every 100 ms) classifies
   * them.  Wait for that event. */
  int vw = 0, vn = 0;
  while (!(fw.failed || fn.failed) && (vw == 0 || vn == 0) && nu_now_ms() - t0 < CAP_MS) {
    vw = has_verdict(p.port, "wave");
    vn = has_verdict(p.port, "noisy");
    if (vw < 0 || vn < 0) break;
    if (vw == 0 || vn == 0) usleep(20 * 1000);
  }
  for (int i = 0; i < 2; i++) { /* past the cap: close what is still open */
    feed_t *f = i ? &fn : &fw;
    if (f->c == NULL) continue;
    e2e_sse_free(&f->s);
    nu_resp_free(&f->head);
    e2e_conn_close(f->c);
  }
  ASSERT_EQ(fw.failed, 0);
  ASSERT_EQ(fn.failed, 0);
  ASSERT_EQ(fw.streams, RESPONSES);
  ASSERT_EQ(fn.streams, RESPONSES);
  ASSERT_EQ(vw, 1);
  ASSERT_EQ(vn, 1);

  h = e2e_get_json(p.port, "/health", NULL);
  ASSERT_NOT_NULL(h);
  const cJSON *dw = dynamics_of(h, "wave", NULL, 0), *dn = dynamics_of(h, "noisy", NULL, 0);
  ASSERT(cJSON_IsObject(dw) && cJSON_IsObject(dn));
  printf("  after %d responses of %d tokens on each engine:\n", RESPONSES, TOKENS);
  print_verdict("wave", dw);
  print_verdict("noisy", dn);
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(dw, "class")), "periodic");
  ASSERT_STR_EQ(cJSON_GetStringValue(cJSON_GetObjectItem(dn, "class")), "noise");
  /* The evidence: the wave recurs (its autocorrelation comes back), noise
   * unfolds in no dimension; both were measured around the engines' 12 ms. */
  ASSERT(num(dw, "recurrence") >= 0.5);
  ASSERT(num(dn, "fnn") > 0.02);
  for (int i = 0; i < 2; i++) {
    const cJSON *d = i ? dn : dw;
    ASSERT_EQ(num(d, "samples"), MIN_SAMPLES);
    ASSERT_EQ(num(endpoint_of(h, i ? "noisy" : "wave"), "gaps_seen"), RESPONSES * (TOKENS - 1));
    ASSERT(num(d, "mean_gap_ms") > 15 && num(d, "mean_gap_ms") < 30);
    ASSERT_GE(num(d, "runs"), 1);
    ASSERT_GE(num(d, "age_ms"), 0);
  }
  cJSON_Delete(h);

  /* The placement context: a request both pools serve sees both verdicts. */
  char body[512];
  nu_resp_t head;
  e2e_sse_t s;
  int st = e2e_stream(p.port, CHAT, "X-Request-Id: dyn-both\r\nx-sim-tokens: 2\r\n",
                      e2e_chat_body(body, sizeof(body), "both", 1, NULL), &head, &s, CHUNK, E2E_WAIT_MS);
  ASSERT_EQ(st, 200);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  char line[2048];
  ASSERT_EQ(e2e_log_wait(&p, "stream dyn-both ", E2E_WAIT_MS, line, sizeof(line)), 1);
  char want[160];
  printf("  placement line: %s\n", line);
  snprintf(want, sizeof(want), "%s=periodic/", wave_addr);
  ASSERT_NOT_NULL(strstr(line, want));
  snprintf(want, sizeof(want), "%s=noise/", noisy_addr);
  ASSERT_NOT_NULL(strstr(line, want));
  ASSERT_NOT_NULL(strstr(line, "placement=\"dyn "));

  /* attach: endpoints() carries the same verdicts. */
  char *out = NULL, *err = NULL;
  int rc = e2e_run_cli("attach", admin_path,
                       "for _, e in ipairs(endpoints()) do\n"
                       "  local d = e.dynamics\n"
                       "  print('dyn ' .. e.pool .. ' ' .. (d and d.class or 'none') .. ' ' ..\n"
                       "        tostring(d ~= nil and d.samples == 512 and e.gaps_seen >= d.samples))\n"
                       "end\n",
                       &out, &err);
  ASSERT_EQ(rc, 0);
  ASSERT_NOT_NULL(out);
  ASSERT_NOT_NULL(strstr(out, "dyn wave periodic true\n"));
  ASSERT_NOT_NULL(strstr(out, "dyn noisy noise true\n"));
  free(out);
  free(err);

  /* Each endpoint's first verdict was logged. */
  snprintf(want, sizeof(want), "endpoint %s timing: ", wave_addr);
  ASSERT_GE(e2e_wait_log_count(&p, want, 1, 30000), 1);
  snprintf(want, sizeof(want), "endpoint %s timing: ", noisy_addr);
  ASSERT_GE(e2e_wait_log_count(&p, want, 1, 30000), 1);
  ASSERT_EQ(e2e_stop(&p), 0);
}

/* A gap that spans a backpressure pause is the client's, not the
 * engine's: the first gap after each resume is not recorded.  An engine
 * sends 20,000 tokens back to back to a client that crawls until sluice
 * paused reading it, then drains the rest. */
#define FAST_TOKENS 20000

static void test_gap_across_a_pause_is_skipped(void) {
  e2e_proc_t p;
  ASSERT_EQ(e2e_serve_start(&p,
                            "{\"stream\":{\"high_watermark\":65536,\"low_watermark\":16384},"
                            "\"pools\":[{\"name\":\"fast\",\"models\":[\"mf\"],"
                            "\"endpoints\":[{\"sim\":{\"ttft_ms\":1,\"itl_ms\":0}}]}]}",
                            NULL),
            0);
  ASSERT_EQ(e2e_wait_endpoints_ready(p.port, 1, E2E_WAIT_MS), 1);
  nu_conn_t *c = e2e_conn_open(p.port, 16384); /* a small receive buffer: slow at the TCP level too */
  ASSERT_NOT_NULL(c);
  char body[512], hdr[64];
  nu_resp_t head;
  e2e_sse_t s;
  snprintf(hdr, sizeof(hdr), "x-sim-tokens: %d\r\n", FAST_TOKENS);
  ASSERT_EQ(e2e_sse_start(c, CHAT, hdr, e2e_chat_body(body, sizeof(body), "mf", 1, NULL), &head, &s, CHUNK,
                          E2E_WAIT_MS),
            200);
  /* Crawl until sluice has paused its reading of the engine (an event:
   * checked every 20 reads), then drain. */
  int64_t crawl_end = nu_now_ms() + 2 * E2E_WAIT_MS;
  int paused = 0;
  for (int i = 0; !paused && nu_now_ms() < crawl_end; i++) {
    ASSERT_GT(e2e_sse_read_some(c, &s, 1024, E2E_WAIT_MS), 0);
    usleep(10 * 1000);
    if (i % 20 == 19) paused = e2e_counter(p.port, "upstream_read_pauses") >= 1;
  }
  ASSERT(paused);
  ASSERT_LT(s.ncontent, FAST_TOKENS); /* the pause came with tokens still to follow */
  ASSERT_EQ(e2e_sse_read(c, &s, 4 * E2E_WAIT_MS), 0);
  e2e_conn_close(c);
  ASSERT(e2e_sse_kinds_are(&s, 1, FAST_TOKENS, 0));
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_GE(e2e_wait_counter(p.port, "streams_completed", 1, E2E_WAIT_MS), 1);
  int64_t pauses = e2e_counter(p.port, "upstream_read_pauses");
  int64_t resumes = e2e_counter(p.port, "upstream_read_resumes");
  cJSON *h = e2e_get_json(p.port, "/health", NULL);
  ASSERT_NOT_NULL(h);
  int64_t gaps = (int64_t)num(endpoint_of(h, "fast"), "gaps_seen");
  cJSON_Delete(h);
  printf("  %d tokens, %lld pauses, %lld resumes: %lld gaps recorded\n", FAST_TOKENS, (long long)pauses,
         (long long)resumes, (long long)gaps);
  /* Every pause skips at most the one gap after it, and every resume but
   * perhaps the last one (after which only the finish may have come) is
   * followed by a token whose gap is skipped. */
  ASSERT_GE(resumes, 1);
  ASSERT_GE(gaps, FAST_TOKENS - 1 - pauses);
  ASSERT_LE(gaps, FAST_TOKENS - 1 - (resumes - 1));
  ASSERT_LT(gaps, FAST_TOKENS - 1); /* the first resume was followed by the rest of the tokens */
  ASSERT_EQ(e2e_stop(&p), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 240);
  E2E_RUN(test_periodic_and_noisy_engines);
  E2E_RUN(test_gap_across_a_pause_is_skipped);
  return SL_TEST_EXIT();
}
