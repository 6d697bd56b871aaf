/* e2e_upstream.c: what sluice makes of its engines, end to end.
 *
 * - A passing health probe makes an endpoint ready but never erases the
 *   backoff its failed requests earned: the consecutive failures and the
 *   cooldown keep growing to the configured cap across probe intervals.
 * - Two token counts: tokens received from the engine and tokens written to
 *   the client.  Against a client that stops reading they part; once it has
 *   read everything they agree, in the counters and in the stream's log line,
 *   also when it leaves right after reading [DONE].
 * - An engine's redirect is a failure of that endpoint (retried, then 502),
 *   never a "301 OK" for the client; statuses carry their reason phrases.
 * - Chunks carry no "usage" key unless the client asked for usage (sluice
 *   asks every engine for it); with include_usage the usage chunk comes.
 * - Absurd usage numbers from an engine (past 2^53, negative) are refused as
 *   malformed: sluice's own count stands in, and no total overflows.
 *
 * The redirect and usage cases run against a scripted fake engine in this
 * process (one thread, one connection at a time, Connection: close); the
 * others against sluice's simulated engine.  No assertion depends on how
 * fast anything runs: every wait is for an event or a count, bounded.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>

#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define COMPL "/v1/completions"
#define CHUNK "chat.completion.chunk"

/* ---- the fake engine ---- */

typedef struct {
  int lfd;
  int port;
  pthread_t thread;
  atomic_int stop;
  atomic_int redirects;   /* 301 answers given */
  atomic_int completions; /* completion requests of any model */
} fake_t;

#define FAKE_HEAD_SSE "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
#define FAKE_ID "\"id\":\"chatcmpl-f\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\""

/* A stream whose usage chunk claims 2^63-1 prompt tokens. */
static const char fake_huge[] =
    FAKE_HEAD_SSE
    "data: {" FAKE_ID ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
    "\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: {" FAKE_ID ",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}],"
    "\"usage\":null}\n\n"
    "data: {" FAKE_ID ",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world\"},\"finish_reason\":null}],"
    "\"usage\":null}\n\n"
    "data: {" FAKE_ID ",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n"
    "data: {" FAKE_ID ",\"choices\":[],\"usage\":{\"prompt_tokens\":9223372036854775807,\"completion_tokens\":1,"
    "\"total_tokens\":9223372036854775807}}\n\n"
    "data: [DONE]\n\n";

/* The same with negative counts. */
static const char fake_negative[] =
    FAKE_HEAD_SSE
    "data: {" FAKE_ID ",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}]}\n\n"
    "data: {" FAKE_ID ",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world\"},\"finish_reason\":\"stop\"}]}\n\n"
    "data: {" FAKE_ID ",\"choices\":[],\"usage\":{\"prompt_tokens\":-7,\"completion_tokens\":2,"
    "\"total_tokens\":-5}}\n\n"
    "data: [DONE]\n\n";

/* "usage":null first, in the middle and last, with blanks around it. */
static const char fake_order[] =
    FAKE_HEAD_SSE
    "data: { \"usage\" : null , " FAKE_ID ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":\"\"},\"finish_reason\":null}]}\n\n"
    "data: {" FAKE_ID ",\"usage\":null,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one\"},"
    "\"finish_reason\":null}]}\n\n"
    "data: {" FAKE_ID ",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" two\"},\"finish_reason\":null}] ,"
    "\"usage\":null }\n\n"
    "data: {" FAKE_ID ",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n"
    "data: [DONE]\n\n";

static const char fake_redirect[] =
    "HTTP/1.1 301 Moved Permanently\r\nLocation: http://127.0.0.1:9/v1/chat/completions\r\n"
    "Content-Length: 0\r\nConnection: close\r\n\r\n";

static const char fake_412_body[] =
    "{\"error\":{\"message\":\"precondition\",\"type\":\"invalid_request_error\",\"code\":null}}";

static const char fake_health[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

static void fake_send(int fd, const char *s) { (void)nu_send(fd, s, strlen(s)); }

/* Reads one request (head and Content-Length body) and answers it by path
 * and by the model named in the body. */
static void fake_serve(fake_t *f, int fd) {
  char buf[16384];
  size_t len = 0;
  char *end = NULL;
  while (end == NULL && len + 1 < sizeof(buf)) {
    ssize_t n = nu_recv(fd, buf + len, sizeof(buf) - 1 - len, 5000);
    if (n <= 0) return;
    len += (size_t)n;
    buf[len] = '\0';
    end = strstr(buf, "\r\n\r\n");
  }
  if (end == NULL) return;
  size_t body_len = 0;
  const char *cl = strcasestr(buf, "\r\ncontent-length:");
  if (cl != NULL && cl < end) body_len = strtoul(cl + 17, NULL, 10);
  size_t want = (size_t)(end + 4 - buf) + body_len;
  while (len < want && len + 1 < sizeof(buf)) {
    ssize_t n = nu_recv(fd, buf + len, sizeof(buf) - 1 - len, 5000);
    if (n <= 0) return;
    len += (size_t)n;
    buf[len] = '\0';
  }
  if (strncmp(buf, "GET /health ", 12) == 0) {
    fake_send(fd, fake_health);
    return;
  }
  atomic_fetch_add(&f->completions, 1);
  const char *body = end + 4;
  if (strstr(body, "\"model\":\"m-redirect\"") != NULL) {
    atomic_fetch_add(&f->redirects, 1);
    fake_send(fd, fake_redirect);
  } else if (strstr(body, "\"model\":\"m-412\"") != NULL) {
    char out[512];
    snprintf(out, sizeof(out),
             "HTTP/1.1 412 Precondition Failed\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s",
             strlen(fake_412_body), fake_412_body);
    fake_send(fd, out);
  } else if (strstr(body, "\"model\":\"m-huge\"") != NULL) {
    fake_send(fd, fake_huge);
  } else if (strstr(body, "\"model\":\"m-negative\"") != NULL) {
    fake_send(fd, fake_negative);
  } else {
    fake_send(fd, fake_order);
  }
}

static void *fake_main(void *arg) {
  fake_t *f = arg;
  while (!atomic_load(&f->stop)) {
    struct pollfd p = {f->lfd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0) continue;
    fake_serve(f, fd);
    shutdown(fd, SHUT_WR);
    close(fd);
  }
  return NULL;
}

static int fake_start(fake_t *f) {
  memset(f, 0, sizeof(*f));
  f->lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof(a);
  if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(f->lfd, 64) < 0 ||
      getsockname(f->lfd, (struct sockaddr *)&a, &al) < 0)
    return -1;
  f->port = ntohs(a.sin_port);
  return pthread_create(&f->thread, NULL, fake_main, f) == 0 ? 0 : -1;
}

static void fake_stop(fake_t *f) {
  atomic_store(&f->stop, 1);
  pthread_join(f->thread, NULL);
  close(f->lfd);
}

/* sluice in front of the fake engine: one pool serving the fake's models. */
static int start_on_fake(e2e_proc_t *sl, const fake_t *f) {
  char cfg[1024];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"fake\",\"models\":[\"m-redirect\",\"m-412\",\"m-huge\",\"m-negative\","
           "\"m-order\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:%d\"}]}],"
           "\"health\":{\"interval_ms\":200,\"cooldown_after_failures\":100},"
           "\"upstream\":{\"max_attempts\":2,\"backoff_base_ms\":1,\"backoff_max_ms\":2}}",
           f->port);
  if (e2e_serve_start(sl, cfg, NULL) < 0) return -1;
  return e2e_wait_ready(sl->port, 200, 10000);
}

/* The fake engine, then sluice in front of it; on failure neither runs. */
static int fake_and_sluice_start(fake_t *f, e2e_proc_t *sl) {
  if (fake_start(f) != 0) return -1;
  if (start_on_fake(sl, f) == 0) return 0;
  fake_stop(f);
  return -1;
}

/* Sends one request on a new connection and reads the response's status
 * line into line (without CRLF).  Returns the status or -1. */
static int status_line(int port, const char *path, const char *body, char *line, size_t cap) {
  int fd = nu_connect(port);
  if (fd < 0) return -1;
  nu_conn_t c;
  nu_conn_init(&c, fd);
  int status = -1;
  if (nu_send_request(fd, "POST", path, "Content-Type: application/json\r\n", body) == 0 &&
      nu_line(&c, line, cap, nu_now_ms() + 10000) > 0)
    sscanf(line, "HTTP/1.%*d %d", &status);
  close(fd);
  return status;
}

/* The number after "key=" in line, or -1. */
static long field_num(const char *line, const char *key) {
  const char *p = strstr(line, key);
  return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* ---- finding 2: a passing probe does not erase the backoff ---- */

/* Upstream requests sluice has started (connects plus kept-alive reuses):
 * probes and completions alike. */
static int64_t upstream_requests(int port) {
  return e2e_counter(port, "upstream_connects") + e2e_counter(port, "upstream_keepalive_reuses");
}

static int64_t endpoint_num(int port, const char *name) {
  cJSON *h = e2e_get_json(port, "/health", NULL);
  const cJSON *ep = cJSON_GetArrayItem(
      cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(h, "pools"), 0), "endpoints"), 0);
  const cJSON *v = cJSON_GetObjectItem(ep, name);
  int64_t out = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
  cJSON_Delete(h);
  return out;
}

static void test_probe_keeps_request_backoff(void) {
  e2e_proc_t sl;
  /* Probes every 20 ms pass; every completion fails with HTTP 500.  The
   * cooldown starts at the first failure: 10, 20, then 40 ms (the cap). */
  const char *cfg =
      "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
      "\"endpoints\":[{\"sim\":{\"ttft_ms\":1,\"itl_ms\":1,\"itl_jitter\":0}}]}],"
      "\"health\":{\"interval_ms\":20,\"cooldown_after_failures\":1,\"cooldown_base_ms\":10,"
      "\"cooldown_max_ms\":40},\"upstream\":{\"max_attempts\":1}}";
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, 10000), 0);
  char body[1024];
  e2e_chat_body(body, sizeof(body), "m1", 0, NULL);
  static const int rest_ms[] = {10, 20, 40, 40, 40};
  for (int i = 1; i <= 5; i++) {
    ASSERT(e2e_wait_endpoints_ready(sl.port, 1, 10000)); /* out of the last cooldown */
    int64_t before = upstream_requests(sl.port);
    nu_resp_t r;
    ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, "x-sim-fault: status:500\r\n", body, &r, 10000), 502);
    nu_resp_free(&r);
    /* The failed request and then two more probes: at least one probe
     * started and ended after the failure. */
    int64_t want = before + 3;
    int64_t deadline = nu_now_ms() + 10000;
    while (upstream_requests(sl.port) < want && nu_now_ms() < deadline) usleep(5 * 1000);
    ASSERT_GE(upstream_requests(sl.port), want);
    /* The probes passed (the endpoint is ready) and the run of failures
     * still stands. */
    ASSERT_EQ(endpoint_num(sl.port, "consecutive_failures"), i);
    char needle[128];
    snprintf(needle, sizeof(needle), "failed %d times in a row; it rests for %d ms", i, rest_ms[i - 1]);
    ASSERT(e2e_log_wait(&sl, needle, 10000, NULL, 0));
  }
  /* A completed request clears it. */
  ASSERT(e2e_wait_endpoints_ready(sl.port, 1, 10000));
  nu_resp_t r;
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, "x-sim-tokens: 2\r\n", body, &r, 10000), 200);
  nu_resp_free(&r);
  ASSERT_EQ(endpoint_num(sl.port, "consecutive_failures"), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- finding 4: tokens received and tokens written ---- */

/* Far more than kernel socket buffers hold (about 20 MB of events). */
#define SLOW_TOKENS 100000

static void test_received_and_written_tokens(void) {
  e2e_proc_t sl;
  const char *cfg =
      "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
      "\"endpoints\":[{\"sim\":{\"ttft_ms\":1,\"itl_ms\":0,\"itl_jitter\":0}}]}]}";
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, 10000), 0);
  ASSERT_EQ(e2e_counter(sl.port, "tokens_received"), 0);
  ASSERT_EQ(e2e_counter(sl.port, "tokens_written"), 0);

  /* A client with a small receive buffer that reads three tokens and then
   * stops reading. */
  nu_conn_t *c = e2e_conn_open(sl.port, 4096);
  ASSERT_NOT_NULL(c);
  char body[1024], headers[128];
  nu_resp_t head;
  e2e_sse_t s;
  snprintf(headers, sizeof(headers), "x-request-id: slow-1\r\nx-sim-tokens: %d\r\nx-sim-itl-ms: 0\r\n",
           SLOW_TOKENS);
  ASSERT_EQ(e2e_sse_start(c, CHAT, headers, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, 10000),
            200);
  s.stop_after_content = 3;
  ASSERT_EQ(e2e_sse_read(c, &s, 10000), 1);
  s.stop_after_content = 0;

  /* The engine keeps sending until backpressure stops sluice reading it;
   * what sits in sluice's write queue was received, not written. */
  ASSERT_GE(e2e_wait_counter(sl.port, "upstream_read_pauses", 1, 30000), 1);
  int64_t received = -1, written = -1;
  for (int64_t deadline = nu_now_ms() + 30000; nu_now_ms() < deadline; usleep(10 * 1000)) {
    received = e2e_counter(sl.port, "tokens_received");
    written = e2e_counter(sl.port, "tokens_written");
    if (received > written && written >= 0) break;
  }
  fprintf(stderr, "     client stopped reading: %lld tokens received, %lld written\n", (long long)received,
          (long long)written);
  ASSERT_GE(written, 3);
  ASSERT_GT(received, written);
  ASSERT_LT(received, SLOW_TOKENS); /* the engine was held back too */

  /* The client reads everything: both counts agree. */
  ASSERT_EQ(e2e_sse_read(c, &s, 120000), 0);
  ASSERT(e2e_sse_kinds_are(&s, 1, SLOW_TOKENS, 0));
  e2e_conn_close(c);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  char line[1024];
  ASSERT(e2e_log_wait(&sl, "stream slow-1 ", 10000, line, sizeof(line)));
  ASSERT_EQ(field_num(line, " tokens="), SLOW_TOKENS);
  ASSERT_EQ(field_num(line, " tokens_written="), SLOW_TOKENS);
  ASSERT_EQ(e2e_counter(sl.port, "tokens_received"), SLOW_TOKENS);
  ASSERT_EQ(e2e_counter(sl.port, "tokens_written"), SLOW_TOKENS);

  /* A client that stops reading and then leaves: tokens still queued for it
   * then are received, not written (and never counted later). */
  c = e2e_conn_open(sl.port, 4096);
  ASSERT_NOT_NULL(c);
  snprintf(headers, sizeof(headers), "x-request-id: gone-1\r\nx-sim-tokens: %d\r\nx-sim-itl-ms: 0\r\n", SLOW_TOKENS);
  ASSERT_EQ(e2e_sse_start(c, CHAT, headers, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, 10000),
            200);
  s.stop_after_content = 3;
  ASSERT_EQ(e2e_sse_read(c, &s, 10000), 1);
  for (int64_t deadline = nu_now_ms() + 30000; nu_now_ms() < deadline; usleep(10 * 1000)) {
    received = e2e_counter(sl.port, "tokens_received");
    written = e2e_counter(sl.port, "tokens_written");
    if (received > written && written >= 0) break;
  }
  ASSERT_GT(received, written);
  e2e_conn_close(c);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT(e2e_log_wait(&sl, "stream gone-1 ", 10000, line, sizeof(line)));
  ASSERT(strstr(line, "end=client_cancel") != NULL);
  long r2 = field_num(line, " tokens="), w2 = field_num(line, " tokens_written=");
  ASSERT_GE(w2, 3);
  ASSERT_LE(w2, r2);
  ASSERT_LT(r2, SLOW_TOKENS);
  ASSERT_EQ(e2e_counter(sl.port, "tokens_received"), SLOW_TOKENS + r2);
  ASSERT_EQ(e2e_counter(sl.port, "tokens_written"), SLOW_TOKENS + w2);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* A client that stops reading until the engine is done, its [DONE] queued
 * behind tokens sluice still holds, then reads up to [DONE] and leaves at
 * once, without waiting for the body's end: it read every token, so every
 * token counts as written and the stream as complete. */
static void test_written_tokens_when_client_leaves_after_done(void) {
  e2e_proc_t sl;
  /* A high watermark past the whole answer: the engine is never paused, so
   * all of it is received while the client does not read, and queued. */
  const char *cfg =
      "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
      "\"endpoints\":[{\"sim\":{\"ttft_ms\":1,\"itl_ms\":0,\"itl_jitter\":0}}]}],"
      "\"stream\":{\"high_watermark\":67108864}}";
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, 10000), 0);
  nu_conn_t *c = e2e_conn_open(sl.port, 4096);
  ASSERT_NOT_NULL(c);
  char body[1024], headers[128];
  nu_resp_t head;
  e2e_sse_t s;
  snprintf(headers, sizeof(headers), "x-request-id: all-read-1\r\nx-sim-tokens: %d\r\nx-sim-itl-ms: 0\r\n",
           SLOW_TOKENS);
  ASSERT_EQ(e2e_sse_start(c, CHAT, headers, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, 10000),
            200);
  s.stop_after_content = 3;
  ASSERT_EQ(e2e_sse_read(c, &s, 10000), 1);
  s.stop_after_content = 0;
  /* Every token came from the engine; most still sit in the write queue. */
  ASSERT_EQ(e2e_wait_counter(sl.port, "tokens_received", SLOW_TOKENS, 60000), SLOW_TOKENS);
  ASSERT_LT(e2e_counter(sl.port, "tokens_written"), SLOW_TOKENS);
  /* Read up to [DONE], then leave. */
  int64_t deadline = nu_now_ms() + 120000;
  while (s.ndone == 0 && !s.eof && nu_now_ms() < deadline) {
    long n = e2e_sse_read_some(c, &s, 65536, 1000);
    if (n == 0 && s.body_ended) break;
  }
  ASSERT_EQ(s.ndone, 1);
  e2e_conn_close(c);
  ASSERT_EQ(s.ncontent, SLOW_TOKENS);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  char line[1024];
  ASSERT(e2e_log_wait(&sl, "stream all-read-1 ", 10000, line, sizeof(line)));
  ASSERT(strstr(line, "end=complete") != NULL);
  ASSERT_EQ(field_num(line, " tokens="), SLOW_TOKENS);
  ASSERT_EQ(field_num(line, " tokens_written="), SLOW_TOKENS);
  ASSERT_EQ(e2e_counter(sl.port, "tokens_written"), SLOW_TOKENS);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* ---- finding 10: an engine's redirect is the endpoint failing ---- */

static void test_engine_redirect_is_a_failure(void) {
  fake_t f;
  e2e_proc_t sl;
  ASSERT_EQ(fake_and_sluice_start(&f, &sl), 0);
  char body[1024], line[256];
  for (int stream = 0; stream <= 1; stream++) {
    nu_resp_t r;
    int before = atomic_load(&f.redirects);
    ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, NULL, e2e_chat_body(body, sizeof(body), "m-redirect", stream, NULL), &r,
                       10000),
              502);
    ASSERT(e2e_is_error_body(r.body, "HTTP 301"));
    ASSERT_NULL(nu_header(&r, "location"));
    nu_resp_free(&r);
    ASSERT_EQ(atomic_load(&f.redirects), before + 2); /* retried, then given up */
  }
  ASSERT_GE(e2e_counter(sl.port, "upstream_retries"), 2);
  ASSERT_EQ(status_line(sl.port, CHAT, e2e_chat_body(body, sizeof(body), "m-redirect", 0, NULL), line, sizeof(line)),
            502);
  ASSERT_STR_EQ(line, "HTTP/1.1 502 Bad Gateway");

  /* An engine's 4xx still passes through, with its own reason phrase. */
  ASSERT_EQ(status_line(sl.port, CHAT, e2e_chat_body(body, sizeof(body), "m-412", 0, NULL), line, sizeof(line)), 412);
  ASSERT_STR_EQ(line, "HTTP/1.1 412 Precondition Failed");
  /* sluice's own statuses too. */
  ASSERT_EQ(status_line(sl.port, CHAT, "{\"model\":", line, sizeof(line)), 400);
  ASSERT_STR_EQ(line, "HTTP/1.1 400 Bad Request");
  ASSERT_EQ(status_line(sl.port, "/v1/nothing-here", "{}", line, sizeof(line)), 404);
  ASSERT_STR_EQ(line, "HTTP/1.1 404 Not Found");
  ASSERT_EQ(e2e_stop(&sl), 0);
  fake_stop(&f);
}

/* ---- finding 12: no "usage" key unless the client asked ---- */

/* Every data payload of a raw SSE body, parsed; counts those that carry a
 * "usage" key (null or not) and a usage chunk (choices []), and joins the
 * content.  Returns the number of JSON payloads, or -1 if one is not an
 * object. */
static int scan_body(const char *body, int *with_usage_key, int *usage_chunks, char *content, size_t cap) {
  int n = 0;
  *with_usage_key = *usage_chunks = 0;
  content[0] = '\0';
  for (const char *p = strstr(body, "data: "); p != NULL; p = strstr(p, "data: ")) {
    p += 6;
    const char *e = strstr(p, "\n\n");
    if (e == NULL) return -1;
    if (strncmp(p, "[DONE]", 6) == 0) continue;
    cJSON *o = cJSON_ParseWithLength(p, (size_t)(e - p));
    if (!cJSON_IsObject(o)) {
      fprintf(stderr, "not a JSON object: %.*s\n", (int)(e - p), p);
      cJSON_Delete(o);
      return -1;
    }
    n++;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "usage");
    if (u != NULL) (*with_usage_key)++;
    if (cJSON_IsObject(u)) (*usage_chunks)++;
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c0, "delta"), "content");
    if (t == NULL) t = cJSON_GetObjectItemCaseSensitive(c0, "text");
    if (cJSON_IsString(t) && strlen(content) + strlen(t->valuestring) < cap) strcat(content, t->valuestring);
    cJSON_Delete(o);
    p = e;
  }
  return n;
}

static void test_no_usage_key_unless_asked(void) {
  e2e_proc_t sl;
  const char *cfg =
      "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
      "\"endpoints\":[{\"sim\":{\"ttft_ms\":1,\"itl_ms\":1,\"itl_jitter\":0}}]}]}";
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, 10000), 0);
  const char *asked = ",\"stream_options\":{\"include_usage\":true}";
  /* Whole events, and events cut into pieces that arrive in separate reads
   * (joined by sluice in its join chunk, and sent from there). */
  const char *headers[] = {"x-sim-tokens: 9\r\nx-sim-seed: 5\r\n",
                           "x-sim-tokens: 9\r\nx-sim-seed: 5\r\nx-sim-split: 7,60\r\nx-sim-split-delay-ms: 2\r\n"};
  for (int route = 0; route < 2; route++) {
    for (int h = 0; h < 2; h++) {
      char body[1024], with_text[4096], without_text[4096];
      int keyed, usage_chunks;
      nu_resp_t r;
      if (route == 0) e2e_chat_body(body, sizeof(body), "m1", 1, asked);
      else e2e_completion_body(body, sizeof(body), "m1", 1, asked);
      ASSERT_EQ(e2e_http(sl.port, "POST", route ? COMPL : CHAT, headers[h], body, &r, 10000), 200);
      int n = scan_body(r.body, &keyed, &usage_chunks, with_text, sizeof(with_text));
      nu_resp_free(&r);
      /* Asked: every chunk has the key (null but for the usage chunk), as
       * OpenAI sends them. */
      ASSERT_GT(n, 9);
      ASSERT_EQ(keyed, n);
      ASSERT_EQ(usage_chunks, 1);

      if (route == 0) e2e_chat_body(body, sizeof(body), "m1", 1, NULL);
      else e2e_completion_body(body, sizeof(body), "m1", 1, NULL);
      ASSERT_EQ(e2e_http(sl.port, "POST", route ? COMPL : CHAT, headers[h], body, &r, 10000), 200);
      ASSERT_NULL(strstr(r.body, "\"usage\""));
      n = scan_body(r.body, &keyed, &usage_chunks, without_text, sizeof(without_text));
      nu_resp_free(&r);
      ASSERT_GT(n, 9);
      ASSERT_EQ(keyed, 0);
      /* The same seed gives the same text: nothing else was cut. */
      ASSERT_STR_EQ(without_text, with_text);
    }
  }
  ASSERT_EQ(e2e_stop(&sl), 0);
}

static void test_usage_null_anywhere_in_the_chunk(void) {
  fake_t f;
  e2e_proc_t sl;
  ASSERT_EQ(fake_and_sluice_start(&f, &sl), 0);
  char body[1024], text[1024];
  int keyed, usage_chunks;
  nu_resp_t r;
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, NULL, e2e_chat_body(body, sizeof(body), "m-order", 1, NULL), &r, 10000),
            200);
  ASSERT_NULL(strstr(r.body, "usage"));
  ASSERT_EQ(scan_body(r.body, &keyed, &usage_chunks, text, sizeof(text)), 4); /* role, two tokens, finish */
  ASSERT_STR_EQ(text, "one two");
  nu_resp_free(&r);
  ASSERT_EQ(e2e_stop(&sl), 0);
  fake_stop(&f);
}

/* ---- one write per read ---- */

/* The fake engine sends its whole stream in one send(), which sluice reads
 * in one read: every event of it, [DONE] included, must reach the client
 * in one HTTP chunk (one write), in order.  What the client sees of the
 * chunked framing is what sluice wrote, whatever TCP did in between. */
static void test_events_of_one_read_leave_in_one_write(void) {
  fake_t f;
  e2e_proc_t sl;
  ASSERT_EQ(fake_and_sluice_start(&f, &sl), 0);
  char body[1024];
  nu_conn_t *c = e2e_conn_open(sl.port, 0);
  ASSERT_NOT_NULL(c);
  ASSERT_EQ(nu_send_request(c->fd, "POST", CHAT, NULL, e2e_chat_body(body, sizeof(body), "m-order", 1, NULL)), 0);
  nu_resp_t head;
  ASSERT_EQ(nu_read_head(c, &head, 10000), 0);
  ASSERT_EQ(head.status, 200);
  int64_t deadline = nu_now_ms() + 10000;
  int chunks = 0;
  static char data[8192];
  size_t first_len = 0;
  for (;;) {
    char line[64];
    ASSERT_GE(nu_line(c, line, sizeof(line), deadline), 1);
    size_t n = strtoul(line, NULL, 16);
    if (n == 0) break;
    ASSERT_LT(n, sizeof(data));
    ASSERT_EQ(nu_read_exact(c, data, n, deadline), 0);
    if (chunks++ == 0) first_len = n;
    ASSERT_EQ(nu_line(c, line, sizeof(line), deadline), 0);
  }
  ASSERT_EQ(chunks, 1);
  data[first_len] = '\0';
  /* role, "one", " two", the finish, then [DONE]: five events. */
  int events = 0;
  for (const char *p = data; (p = strstr(p, "data: ")) != NULL; p += 6) events++;
  ASSERT_EQ(events, 5);
  ASSERT_NOT_NULL(strstr(data, "\"one\""));
  ASSERT(strstr(data, "\"one\"") < strstr(data, "\" two\""));
  ASSERT_NOT_NULL(strstr(data, "data: [DONE]\n\n"));
  e2e_conn_close(c);
  ASSERT_EQ(e2e_counter(sl.port, "stream_events"), 4);
  ASSERT_EQ(e2e_stop(&sl), 0);
  fake_stop(&f);
}

/* ---- finding 13: absurd usage numbers are refused ---- */

static void check_usage_obj(const cJSON *u, int64_t completion) {
  ASSERT(cJSON_IsObject(u));
  double p = cJSON_GetNumberValue(cJSON_GetObjectItem(u, "prompt_tokens"));
  double c = cJSON_GetNumberValue(cJSON_GetObjectItem(u, "completion_tokens"));
  double t = cJSON_GetNumberValue(cJSON_GetObjectItem(u, "total_tokens"));
  ASSERT(p == 0); /* refused: sluice cannot know the prompt's size */
  ASSERT(c == (double)completion);
  ASSERT(t == p + c);
}

static void test_absurd_usage_refused(void) {
  fake_t f;
  e2e_proc_t sl;
  ASSERT_EQ(fake_and_sluice_start(&f, &sl), 0);
  const char *models[] = {"m-huge", "m-negative"};
  for (int m = 0; m < 2; m++) {
    char body[1024], text[1024];
    nu_resp_t r;
    /* Whole answer: usage from sluice's own count. */
    ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, NULL, e2e_chat_body(body, sizeof(body), models[m], 0, NULL), &r, 10000),
              200);
    cJSON *doc = cJSON_Parse(r.body);
    ASSERT_NOT_NULL(doc);
    check_usage_obj(cJSON_GetObjectItem(doc, "usage"), 2);
    cJSON_Delete(doc);
    nu_resp_free(&r);
    if (sl__test_cur_failed) break;

    /* Streamed with include_usage: one usage chunk, sluice's. */
    ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, NULL,
                       e2e_chat_body(body, sizeof(body), models[m], 1, ",\"stream_options\":{\"include_usage\":true}"),
                       &r, 10000),
              200);
    ASSERT_NULL(strstr(r.body, "9223372036854775807"));
    ASSERT_NULL(strstr(r.body, "\"prompt_tokens\":-7"));
    int keyed, usage_chunks;
    ASSERT_GT(scan_body(r.body, &keyed, &usage_chunks, text, sizeof(text)), 0);
    ASSERT_EQ(usage_chunks, 1);
    ASSERT_STR_EQ(text, "Hello world");
    const char *u = strstr(r.body, "\"choices\":[]");
    ASSERT_NOT_NULL(u);
    const char *start = u;
    while (start > r.body && strncmp(start, "data: ", 6) != 0) start--;
    cJSON *chunk = cJSON_ParseWithLength(start + 6, (size_t)(strstr(start, "\n\n") - start - 6));
    check_usage_obj(cJSON_GetObjectItem(chunk, "usage"), 2);
    cJSON_Delete(chunk);
    nu_resp_free(&r);
    if (sl__test_cur_failed) break;
  }
  ASSERT_EQ(e2e_stop(&sl), 0); /* and no sanitizer report */
  fake_stop(&f);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 280);
  E2E_RUN(test_probe_keeps_request_backoff);
  E2E_RUN(test_received_and_written_tokens);
  E2E_RUN(test_written_tokens_when_client_leaves_after_done);
  E2E_RUN(test_engine_redirect_is_a_failure);
  E2E_RUN(test_no_usage_key_unless_asked);
  E2E_RUN(test_usage_null_anywhere_in_the_chunk);
  E2E_RUN(test_events_of_one_read_leave_in_one_write);
  E2E_RUN(test_absurd_usage_refused);
  return SL_TEST_EXIT();
}
