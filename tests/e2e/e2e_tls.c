/* e2e_tls.c: sluice toward an https:// engine, end to end.
 *
 * The test makes a CA and a server certificate for localhost and 127.0.0.1
 * with the openssl CLI in its temp directory, plus a second CA that signed
 * nothing.  The TLS engine is a terminating proxy in this process (OpenSSL
 * server, a thread per connection) in front of sluice's simulated engine;
 * when either side closes, it closes the other, so a cancel reaches the
 * engine as it would over plain HTTP.
 *
 * - Streaming and non-streaming requests through https with the right CA,
 *   health probes over TLS, and kept-alive TLS connections reused; SNI is
 *   the URL's host name, never an address.
 * - A client that leaves mid-stream cancels the engine's request.
 * - A slow client pauses the reading and decrypting of the engine's stream;
 *   every token still arrives once it reads on, pinned bytes under the bound.
 * - A wrong CA, a wrong host name (tls.server_name) and a plain HTTP engine
 *   on an https:// URL are refused, each with its own message in the log,
 *   and counted in errors_upstream_tls.
 * - A CA bundle that holds no certificate refuses the start, naming the key.
 *
 * The openssl CLI is needed: without it the program exits 77 (skipped),
 * except under CI=true, where that is a failure.  Every wait is for an event
 * or a count, bounded.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"

static char ca_pem[600], other_ca_pem[600], srv_pem[600], srv_key[600];

/* ---- the TLS engine: a terminating proxy ---- */

#define PX_MAX_CONNS 256

typedef struct {
  SSL_CTX *ctx;
  int lfd, port, backend_port;
  pthread_t thread;
  atomic_int stop;
  atomic_int accepted;        /* TCP connections taken */
  atomic_int handshakes;      /* TLS handshakes completed */
  atomic_int handshake_fails; /* refused by the client or broken */
  atomic_int sni_localhost;   /* handshakes whose SNI was "localhost" */
  atomic_int sni_none;        /* handshakes without SNI */
  pthread_t conns[PX_MAX_CONNS];
  int nconns;
} px_t;

typedef struct {
  px_t *px;
  int fd;
} px_conn_t;

static int px_write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int px_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Relays one connection until either side closes, then closes both. */
static void *px_conn_main(void *arg) {
  px_conn_t *pc = arg;
  px_t *px = pc->px;
  int fd = pc->fd, bfd = -1;
  free(pc);
  SSL *ssl = SSL_new(px->ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) != 1) {
    atomic_fetch_add(&px->handshake_fails, 1);
    goto out;
  }
  atomic_fetch_add(&px->handshakes, 1);
  const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (sni == NULL) atomic_fetch_add(&px->sni_none, 1);
  else if (strcmp(sni, "localhost") == 0) atomic_fetch_add(&px->sni_localhost, 1);
  bfd = px_connect(px->backend_port);
  if (bfd < 0) goto out;
  char buf[16384];
  while (!atomic_load(&px->stop)) {
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = bfd, .events = POLLIN}};
    int pending = SSL_pending(ssl) > 0;
    if (!pending && poll(p, 2, 100) <= 0) continue;
    if (pending || (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      int n = SSL_read(ssl, buf, sizeof(buf));
      if (n <= 0 || px_write_all(bfd, buf, (size_t)n) < 0) break;
    }
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(bfd, buf, sizeof(buf));
      if (n <= 0 || SSL_write(ssl, buf, (int)n) != (int)n) break;
    }
  }
out:
  SSL_free(ssl);
  ERR_clear_error();
  close(fd);
  if (bfd >= 0) close(bfd);
  return NULL;
}

static void *px_accept_main(void *arg) {
  px_t *px = arg;
  while (!atomic_load(&px->stop)) {
    struct pollfd p = {.fd = px->lfd, .events = POLLIN};
    if (poll(&p, 1, 100) <= 0) continue;
    int fd = accept(px->lfd, NULL, NULL);
    if (fd < 0) continue;
    atomic_fetch_add(&px->accepted, 1);
    if (px->nconns == PX_MAX_CONNS) {
      close(fd);
      continue;
    }
    px_conn_t *pc = malloc(sizeof(*pc));
    pc->px = px;
    pc->fd = fd;
    pthread_create(&px->conns[px->nconns++], NULL, px_conn_main, pc);
  }
  return NULL;
}

/* Serves TLS with cert/key on 127.0.0.1:0 in front of backend_port. */
static int px_start(px_t *px, int backend_port) {
  memset(px, 0, sizeof(*px));
  px->backend_port = backend_port;
  px->ctx = SSL_CTX_new(TLS_server_method());
  if (SSL_CTX_use_certificate_chain_file(px->ctx, srv_pem) != 1 ||
      SSL_CTX_use_PrivateKey_file(px->ctx, srv_key, SSL_FILETYPE_PEM) != 1) {
    fprintf(stderr, "px_start: cannot load %s / %s\n", srv_pem, srv_key);
    SSL_CTX_free(px->ctx);
    return -1;
  }
  px->lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof(a);
  if (bind(px->lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(px->lfd, 64) < 0 ||
      getsockname(px->lfd, (struct sockaddr *)&a, &al) < 0) {
    perror("px_start");
    close(px->lfd);
    SSL_CTX_free(px->ctx);
    return -1;
  }
  px->port = ntohs(a.sin_port);
  pthread_create(&px->thread, NULL, px_accept_main, px);
  return 0;
}

static void px_stop(px_t *px) {
  atomic_store(&px->stop, 1);
  pthread_join(px->thread, NULL);
  for (int i = 0; i < px->nconns; i++) pthread_join(px->conns[i], NULL);
  close(px->lfd);
  SSL_CTX_free(px->ctx);
}

/* ---- setup ---- */

static void need_openssl(void) {
  if (system("command -v openssl >/dev/null 2>&1") == 0) return;
  const char *ci = getenv("CI");
  fprintf(stderr, "e2e_tls: the openssl CLI is not installed (apt-get install openssl)\n");
  if (ci && strcmp(ci, "true") == 0) {
    fprintf(stderr, "CI=true: the TLS tests must run in CI, so this is a failure\n");
    exit(1);
  }
  exit(77);
}

static int run(const char *cmd) {
  int rc = system(cmd);
  if (rc != 0) fprintf(stderr, "failed (%d): %s\n", rc, cmd);
  return rc == 0 ? 0 : -1;
}

/* Two CAs and a server certificate for localhost and 127.0.0.1 signed by
 * the first, in the temp directory. */
static int make_certs(void) {
  const char *d = e2e_tmpdir();
  char cmd[4096];
  snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", d);
  snprintf(other_ca_pem, sizeof(other_ca_pem), "%s/other-ca.pem", d);
  snprintf(srv_pem, sizeof(srv_pem), "%s/server.pem", d);
  snprintf(srv_key, sizeof(srv_key), "%s/server.key", d);
  const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  snprintf(cmd, sizeof(cmd),
           "cd '%s' && openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 -subj /CN=sluice-test-ca "
           ">openssl.log 2>&1 && "
           "openssl req -x509 %s -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=sluice-other-ca "
           ">>openssl.log 2>&1 && "
           "openssl req %s -keyout server.key -out server.csr -subj /CN=localhost >>openssl.log 2>&1 && "
           "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' >server.ext && "
           "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
           "-extfile server.ext -out server.pem >>openssl.log 2>&1",
           d, ec, ec, ec);
  return run(cmd);
}

/* sluice in front of one engine at url with the pool's "tls" object tls
 * (or none); waits for the endpoint to be ready when ready is set. */
static int start_sluice(e2e_proc_t *sl, const char *url, const char *tls, int ready) {
  char cfg[2048];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"queue_timeout_ms\":300%s%s,\"endpoints\":[{\"url\":\"%s\"}]}],"
           "\"health\":{\"interval_ms\":200},"
           "\"upstream\":{\"max_attempts\":2,\"backoff_base_ms\":10,\"backoff_max_ms\":20}}",
           tls ? ",\"tls\":" : "", tls ? tls : "", url);
  if (e2e_serve_start(sl, cfg, NULL) < 0) return -1;
  if (ready && !e2e_wait_endpoints_ready(sl->port, 1, E2E_WAIT_MS)) return -1;
  return 0;
}

static const char *const sim_args[] = {"--model", "m1", "--ttft-ms", "2", "--itl-ms", "1", NULL};

/* ---- cases ---- */

static void test_streams_through_tls(void) {
  e2e_proc_t sim, sl;
  px_t px;
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  ASSERT_EQ(px_start(&px, sim.port), 0);
  char url[128], tls[1024];
  snprintf(url, sizeof(url), "https://127.0.0.1:%d", px.port);
  snprintf(tls, sizeof(tls), "{\"ca_file\":\"%s\"}", ca_pem);
  /* Ready means a health probe passed over TLS. */
  ASSERT_EQ(start_sluice(&sl, url, tls, 1), 0);
  ASSERT_GE(atomic_load(&px.handshakes), 1);

  /* Streaming. */
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  ASSERT_EQ(e2e_stream(sl.port, CHAT, "x-sim-tokens: 40\r\n", e2e_chat_body(body, sizeof(body), "m1", 1, NULL),
                       &head, &s, CHUNK, E2E_WAIT_MS),
            200);
  ASSERT_EQ(s.read_rc, 0);
  ASSERT(e2e_sse_kinds_are(&s, 1, 40, 0));
  ASSERT_EQ(s.nbad, 0);
  e2e_sse_free(&s);
  nu_resp_free(&head);

  /* Non-streaming, several in a row: kept-alive TLS connections are reused. */
  int64_t reuses0 = e2e_counter(sl.port, "upstream_keepalive_reuses");
  for (int i = 0; i < 3; i++) {
    nu_resp_t r;
    ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, "x-sim-tokens: 12\r\n",
                       e2e_chat_body(body, sizeof(body), "m1", 0, NULL), &r, E2E_WAIT_MS),
              200);
    cJSON *doc = cJSON_Parse(r.body);
    ASSERT_NOT_NULL(doc);
    const cJSON *fr = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "choices"), 0), "finish_reason");
    ASSERT(cJSON_IsString(fr));
    const cJSON *tok = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "usage"), "completion_tokens");
    ASSERT(cJSON_IsNumber(tok));
    ASSERT_EQ((long)tok->valuedouble, 12);
    cJSON_Delete(doc);
    nu_resp_free(&r);
  }
  ASSERT_GE(e2e_counter(sl.port, "upstream_keepalive_reuses") - reuses0, 2);
  /* A handshake per new connection, none per reuse. */
  ASSERT_LE(atomic_load(&px.handshakes), e2e_counter(sl.port, "upstream_connects"));
  /* An address is never sent as SNI. */
  ASSERT_GE(atomic_load(&px.sni_none), 1);
  ASSERT_EQ(atomic_load(&px.sni_localhost), 0);
  ASSERT_EQ(e2e_counter(sl.port, "errors_upstream_tls"), 0);
  ASSERT_EQ(e2e_sim_stat(sim.port, "completed") >= 4, 1);
  ASSERT_EQ(e2e_stop(&sl), 0);
  px_stop(&px);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

static void test_client_cancel_over_tls(void) {
  e2e_proc_t sim, sl;
  px_t px;
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  ASSERT_EQ(px_start(&px, sim.port), 0);
  char url[128], tls[1024];
  snprintf(url, sizeof(url), "https://localhost:%d", px.port);
  snprintf(tls, sizeof(tls), "{\"ca_file\":\"%s\"}", ca_pem);
  ASSERT_EQ(start_sluice(&sl, url, tls, 1), 0);
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  /* The engine stalls after 8 tokens, so the stream is in flight when the
   * client leaves however slow anything is. */
  nu_conn_t *c = e2e_sse_open(sl.port, CHAT,
                              "x-sim-tokens: 2000\r\nx-sim-itl-ms: 10\r\nx-sim-fault: stall\r\nx-sim-fault-at: 8\r\n",
                              e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK, E2E_WAIT_MS);
  ASSERT_NOT_NULL(c);
  ASSERT_EQ(head.status, 200);
  s.stop_after_content = 5;
  ASSERT_EQ(e2e_sse_read(c, &s, E2E_WAIT_MS), 1);
  e2e_conn_close(c);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_GE(e2e_wait_sim_stat(sim.port, "client_closed_mid_stream", 1, E2E_WAIT_MS), 1);
  ASSERT_GE(e2e_wait_counter(sl.port, "client_cancels", 1, E2E_WAIT_MS), 1);
  /* A host name is sent as SNI. */
  ASSERT_GE(atomic_load(&px.sni_localhost), 1);
  ASSERT_EQ(atomic_load(&px.sni_none), 0);
  ASSERT_EQ(e2e_stop(&sl), 0);
  px_stop(&px);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* A slow client over TLS: sluice pauses its reading (and so its
 * decrypting) of the engine, resumes, and every token still arrives, with
 * the pinned bytes under the bound. */
static void test_backpressure_over_tls(void) {
  e2e_proc_t sim, sl;
  px_t px;
  const char *const fast[] = {"--model", "m1", "--ttft-ms", "1", NULL};
  ASSERT_EQ(e2e_sim_start(&sim, fast), 0);
  ASSERT_EQ(px_start(&px, sim.port), 0);
  char cfg[2048];
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],\"tls\":{\"ca_file\":\"%s\"},"
           "\"endpoints\":[{\"url\":\"https://localhost:%d\"}]}],"
           "\"stream\":{\"high_watermark\":65536,\"low_watermark\":16384}}",
           ca_pem, px.port);
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  int64_t bound = e2e_health_num(sl.port, "stream_pin_bound_bytes");
  nu_conn_t *c = e2e_conn_open(sl.port, 16384);
  ASSERT_NOT_NULL(c);
  char body[1024];
  nu_resp_t head;
  e2e_sse_t s;
  const long ntokens = 30000;
  char headers[128];
  snprintf(headers, sizeof(headers), "x-sim-tokens: %ld\r\nx-sim-itl-ms: 0\r\n", ntokens);
  ASSERT_EQ(e2e_sse_start(c, CHAT, headers, e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &head, &s, CHUNK,
                          E2E_WAIT_MS),
            200);
  /* Crawl until sluice has paused its reading of the engine. */
  int64_t crawl_end = nu_now_ms() + 2 * E2E_WAIT_MS;
  int paused = 0;
  for (int i = 0; !paused && nu_now_ms() < crawl_end; i++) {
    ASSERT_GT(e2e_sse_read_some(c, &s, 1024, E2E_WAIT_MS), 0);
    usleep(10 * 1000);
    if (i % 20 == 19) paused = e2e_counter(sl.port, "upstream_read_pauses") >= 1;
  }
  ASSERT(paused);
  ASSERT_LT(s.ncontent, ntokens);
  ASSERT_EQ(e2e_sse_read(c, &s, 4 * E2E_WAIT_MS), 0);
  e2e_conn_close(c);
  ASSERT(e2e_sse_kinds_are(&s, 1, ntokens, 0));
  ASSERT_EQ(s.framing_errors, 0);
  e2e_sse_free(&s);
  nu_resp_free(&head);
  ASSERT_GE(e2e_wait_counter(sl.port, "streams_completed", 1, E2E_WAIT_MS), 1);
  ASSERT_GE(e2e_counter(sl.port, "upstream_read_resumes"), 1);
  int64_t peak = e2e_counter(sl.port, "stream_pinned_bytes_peak");
  ASSERT_GT(peak, 0);
  ASSERT_LE(peak, bound);
  ASSERT_EQ(e2e_stop(&sl), 0);
  px_stop(&px);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

/* sluice toward url with tls never gets the endpoint ready: the log says
 * why (want), the TLS errors are counted, and a request is not served. */
static void expect_refused(const char *url, const char *tls, const char *want) {
  e2e_proc_t sl;
  ASSERT_EQ(start_sluice(&sl, url, tls, 0), 0);
  char line[1024];
  ASSERT(e2e_log_wait(&sl, want, E2E_WAIT_MS, line, sizeof(line)));
  fprintf(stderr, "refused as expected: %s\n", line);
  ASSERT_GE(e2e_wait_counter(sl.port, "errors_upstream_tls", 1, E2E_WAIT_MS), 1);
  char body[1024];
  nu_resp_t r;
  int st = e2e_http(sl.port, "POST", CHAT, NULL, e2e_chat_body(body, sizeof(body), "m1", 0, NULL), &r, E2E_WAIT_MS);
  ASSERT(st >= 500);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

/* An engine behind the TLS proxy that sluice, with tls (a JSON object),
 * must refuse with expect in the log: no handshake completes, and no
 * request reaches the engine. */
static void refused_through_proxy(const char *tls, const char *expect) {
  e2e_proc_t sim;
  px_t px;
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  ASSERT_EQ(px_start(&px, sim.port), 0);
  char url[128];
  snprintf(url, sizeof(url), "https://127.0.0.1:%d", px.port);
  expect_refused(url, tls, expect);
  ASSERT_EQ(atomic_load(&px.handshakes), 0);
  ASSERT_EQ(e2e_sim_stat(sim.port, "requests"), 0);
  px_stop(&px);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

static void test_wrong_ca_refused(void) {
  char tls[1024];
  snprintf(tls, sizeof(tls), "{\"ca_file\":\"%s\"}", other_ca_pem);
  refused_through_proxy(tls, "TLS: certificate verify failed: unable to get local issuer certificate");
}

static void test_wrong_host_name_refused(void) {
  char tls[1024];
  snprintf(tls, sizeof(tls), "{\"ca_file\":\"%s\",\"server_name\":\"engine.example\"}", ca_pem);
  refused_through_proxy(tls, "TLS: host name mismatch");
}

static void test_plain_http_engine_refused(void) {
  e2e_proc_t sim;
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  char url[128], tls[1024];
  snprintf(url, sizeof(url), "https://127.0.0.1:%d", sim.port);
  snprintf(tls, sizeof(tls), "{\"ca_file\":\"%s\"}", ca_pem);
  /* Whether the engine answers the ClientHello with an HTTP error or
   * closes at once, the message says it may not speak TLS. */
  expect_refused(url, tls, "speak TLS on this port");
  ASSERT_EQ(e2e_sim_stat(sim.port, "completed"), 0);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

static void test_bad_ca_file_refuses_start(void) {
  char empty[600], cfg[2048];
  snprintf(empty, sizeof(empty), "%s/empty.pem", e2e_tmpdir());
  FILE *f = fopen(empty, "w");
  ASSERT_NOT_NULL(f);
  fputs("not a certificate\n", f);
  fclose(f);
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
           "\"endpoints\":[{\"url\":\"https://127.0.0.1:9\",\"tls\":{\"ca_file\":\"%s\"}}]}]}",
           empty);
  e2e_proc_t sl;
  ASSERT_EQ(e2e_serve_spawn(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_exit(&sl, E2E_WAIT_MS), 0);
  ASSERT(WIFEXITED(sl.status) && WEXITSTATUS(sl.status) != 0);
  char *log = e2e_log_text(&sl);
  ASSERT_NOT_NULL(log);
  ASSERT(strstr(log, "pools[0].endpoints[0].tls.ca_file") != NULL);
  free(log);
  /* tls on a plain http:// URL is a mistake, named. */
  snprintf(cfg, sizeof(cfg),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
           "\"endpoints\":[{\"url\":\"http://127.0.0.1:9\",\"tls\":{\"verify\":false}}]}]}");
  ASSERT_EQ(e2e_serve_spawn(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_exit(&sl, E2E_WAIT_MS), 0);
  ASSERT(WIFEXITED(sl.status) && WEXITSTATUS(sl.status) != 0);
  log = e2e_log_text(&sl);
  ASSERT_NOT_NULL(log);
  ASSERT(strstr(log, "pools[0].endpoints[0].tls: only an https:// url speaks TLS") != NULL);
  free(log);
}

static void test_verify_off_warns(void) {
  e2e_proc_t sim, sl;
  px_t px;
  ASSERT_EQ(e2e_sim_start(&sim, sim_args), 0);
  ASSERT_EQ(px_start(&px, sim.port), 0);
  char url[128];
  snprintf(url, sizeof(url), "https://127.0.0.1:%d", px.port);
  /* The certificate is not checked (no CA given would otherwise refuse it). */
  ASSERT_EQ(start_sluice(&sl, url, "{\"verify\":false}", 1), 0);
  ASSERT(e2e_log_wait(&sl, "TLS certificate verification is OFF", E2E_WAIT_MS, NULL, 0));
  char body[1024];
  nu_resp_t r;
  ASSERT_EQ(e2e_http(sl.port, "POST", CHAT, NULL, e2e_chat_body(body, sizeof(body), "m1", 0, NULL), &r,
                     E2E_WAIT_MS),
            200);
  nu_resp_free(&r);
  ASSERT_EQ(e2e_stop(&sl), 0);
  px_stop(&px);
  ASSERT_EQ(e2e_stop(&sim), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 240);
  need_openssl();
  if (make_certs() < 0) return 1;
  E2E_RUN(test_streams_through_tls);
  E2E_RUN(test_client_cancel_over_tls);
  E2E_RUN(test_backpressure_over_tls);
  E2E_RUN(test_wrong_ca_refused);
  E2E_RUN(test_wrong_host_name_refused);
  E2E_RUN(test_plain_http_engine_refused);
  E2E_RUN(test_bad_ca_file_refuses_start);
  E2E_RUN(test_verify_off_warns);
  return SL_TEST_EXIT();
}
