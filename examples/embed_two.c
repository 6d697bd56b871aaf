/* embed_two.c: two sluice gateways in one process, each on its own loop and
 * its own thread.
 *
 * What an embedder does, start to end: sl_init once; per gateway a loop of
 * its own, sl_gateway_open on that loop's thread, uv_run; from another
 * thread, a uv_async_t is the only way in (every sl_gateway_* call runs on
 * the gateway's loop thread).  The main thread streams one chat completion
 * from each gateway over a plain blocking socket, then asks each loop to
 * drain and close its gateway; each uv_run returns and uv_loop_close
 * must find no handle left.  The two configurations name different models,
 * so each answer shows which gateway served it, and each gateway's counters
 * show one stream, not two.
 *
 * Exits 0 when everything checked out, 1 with a message otherwise.
 * docs/embedding.md walks through it. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "sluice.h"

#define FAIL(...) (fprintf(stderr, "embed_two: " __VA_ARGS__), fputc('\n', stderr), exit(1))

/* One gateway, its loop and its thread.  The mutex and condition guard
 * `opened`, `open_rc` and `port`, which the loop thread sets once. */
typedef struct {
  const char *name;           /* "A" or "B", for messages */
  const char *model;          /* the model its configuration serves */
  char config[512];           /* its inline configuration */
  pthread_t thread;
  uv_loop_t loop;             /* not the default loop */
  uv_async_t stop;            /* the main thread's way to say "close now" */
  sl_gateway_t *gw;           /* touched only on the loop thread */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int opened;                 /* 1 once open_rc is set */
  int open_rc;
  int port;
  char err[1024];
  char counters[4096];        /* counters JSON, read on the loop thread before closing */
  int closed;                 /* on_closed ran */
  int loop_close_rc;          /* uv_loop_close's answer after uv_run returned */
} gateway_thread_t;

/* ---- on the loop thread ---- */

static void on_closed(void *ud) {
  gateway_thread_t *t = ud;
  t->closed = 1;
}

/* No stream is left: read the counters (on the loop thread, as every call)
 * and close the gateway and our async handle; the loop then runs out of
 * handles and uv_run returns. */
static void on_drained(sl_gateway_t *gw, void *ud) {
  gateway_thread_t *t = ud;
  sl_gateway_counters_json(gw, t->counters, sizeof(t->counters));
  sl_gateway_close(gw, on_closed, t);
  t->gw = NULL;
  uv_close((uv_handle_t *)&t->stop, NULL);
}

/* Draining first lets a stream whose [DONE] the client has read finish its
 * bookkeeping, so the counters are final without waiting for anything. */
static void on_stop(uv_async_t *a) {
  gateway_thread_t *t = a->data;
  sl_gateway_drain(t->gw, on_drained, t);
}

static void *loop_thread(void *arg) {
  gateway_thread_t *t = arg;
  uv_loop_init(&t->loop);
  uv_async_init(&t->loop, &t->stop, on_stop);
  t->stop.data = t;
  sl_gateway_options_t opt = {.config_json = t->config, .listen = "127.0.0.1:0", .log = stderr};
  int rc = sl_gateway_open(&t->gw, &t->loop, &opt, t->err, sizeof(t->err));
  pthread_mutex_lock(&t->mu);
  t->open_rc = rc;
  t->port = rc == 0 ? sl_gateway_port(t->gw) : 0;
  t->opened = 1;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
  if (rc < 0) uv_close((uv_handle_t *)&t->stop, NULL); /* what did open is already closing */
  uv_run(&t->loop, UV_RUN_DEFAULT);
  t->loop_close_rc = uv_loop_close(&t->loop);
  return NULL;
}

/* ---- on the main thread ---- */

/* Sends one request to the gateway on t->port and reads the answer until
 * the server closes the connection (the request says Connection: close).
 * Returns the answer's length; resp is NUL-terminated. */
static size_t exchange(gateway_thread_t *t, const char *req, size_t reqlen, char *resp, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t->port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) FAIL("gateway %s: cannot connect", t->name);
  if (write(fd, req, reqlen) != (ssize_t)reqlen) FAIL("gateway %s: short write", t->name);
  size_t n = 0;
  ssize_t r;
  while (n < cap - 1 && (r = read(fd, resp + n, cap - 1 - n)) > 0) n += (size_t)r;
  resp[n] = '\0';
  close(fd);
  return n;
}

/* Endpoints start "not ready" and the gateway probes them at once; a
 * request before the first probe passed would get a 503.  GET /ready
 * answers 200 once an endpoint is ready.  Each try is a full round trip
 * through the gateway's loop, so this waits for the probe's events, not
 * for a span of time; the cap only turns a broken gateway into an error. */
static void wait_ready(gateway_thread_t *t) {
  static const char req[] = "GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  char resp[4096];
  for (int tries = 1; tries <= 100000; tries++) {
    exchange(t, req, sizeof(req) - 1, resp, sizeof(resp));
    if (strncmp(resp, "HTTP/1.1 200", 12) == 0) return;
  }
  FAIL("gateway %s: GET /ready never answered 200:\n%s", t->name, resp);
}

/* Streams one chat completion and reads the whole answer.  Returns the
 * number of token events; fails unless it saw [DONE] and every event
 * names t->model. */
static int stream_one(gateway_thread_t *t) {
  char body[256], req[512];
  int bn = snprintf(body, sizeof(body),
                    "{\"model\": \"%s\", \"stream\": true, \"max_tokens\": 16,"
                    " \"messages\": [{\"role\": \"user\", \"content\": \"Say hello.\"}]}",
                    t->model);
  int rn = snprintf(req, sizeof(req),
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
                    bn, body);
  static char resp[256 * 1024];
  exchange(t, req, (size_t)rn, resp, sizeof(resp));
  if (strncmp(resp, "HTTP/1.1 200", 12) != 0) FAIL("gateway %s: not a 200 answer:\n%s", t->name, resp);
  if (strstr(resp, "data: [DONE]") == NULL) FAIL("gateway %s: no [DONE] in the answer:\n%s", t->name, resp);
  char want[128];
  snprintf(want, sizeof(want), "\"model\":\"%s\"", t->model);
  int tokens = 0;
  for (const char *p = resp; (p = strstr(p, "data: {")) != NULL; p++) {
    const char *eol = strstr(p, "\n\n");
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    if (memmem(p, len, want, strlen(want)) == NULL)
      FAIL("gateway %s: an event not from %s: %.*s", t->name, t->model, (int)len, p);
    const char *c = memmem(p, len, "\"content\":\"", 11);
    if (c != NULL && c[11] != '"') tokens++; /* a non-empty delta */
  }
  if (tokens == 0) FAIL("gateway %s: no token in the answer:\n%s", t->name, resp);
  printf("gateway %s: streamed %d token event(s) from model %s, ending in [DONE]\n", t->name, tokens, t->model);
  return tokens;
}

static void start_gateway(gateway_thread_t *t, const char *name, const char *model) {
  t->name = name;
  t->model = model;
  snprintf(t->config, sizeof(t->config),
           "{\"pools\": [{\"name\": \"pool-%s\", \"models\": [\"%s\"], \"slots\": 2,"
           " \"endpoints\": [{\"sim\": {\"seed\": 7, \"ttft_ms\": 5, \"itl_ms\": 2}}]}]}",
           name, model);
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  if (pthread_create(&t->thread, NULL, loop_thread, t) != 0) FAIL("gateway %s: pthread_create failed", name);
  pthread_mutex_lock(&t->mu);
  while (!t->opened) pthread_cond_wait(&t->cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
  if (t->open_rc < 0) FAIL("gateway %s did not open: %s: %s", name, sl_strerror(t->open_rc), t->err);
  wait_ready(t);
  printf("gateway %s: serving %s on 127.0.0.1:%d, ready\n", name, model, t->port);
}

/* The value of "key": in a counters object, or -1. */
static long counter(const char *json, const char *key) {
  char k[64];
  snprintf(k, sizeof(k), "\"%s\":", key);
  const char *p = strstr(json, k);
  return p ? strtol(p + strlen(k), NULL, 10) : -1;
}

static void stop_gateway(gateway_thread_t *t) {
  uv_async_send(&t->stop); /* the one libuv call that is safe from another thread */
  pthread_join(t->thread, NULL);
  if (!t->closed) FAIL("gateway %s: on_closed did not run", t->name);
  if (t->loop_close_rc != 0) FAIL("gateway %s: uv_loop_close: %s (a handle was left)", t->name, uv_strerror(t->loop_close_rc));
  long started = counter(t->counters, "streams_started"), completed = counter(t->counters, "streams_completed");
  if (started != 1 || completed != 1)
    FAIL("gateway %s: expected its own one stream, counters say started=%ld completed=%ld: %s", t->name, started,
         completed, t->counters);
  printf("gateway %s: closed; counters streams_started=%ld streams_completed=%ld; uv_loop_close returned 0\n",
         t->name, started, completed);
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
}

int main(void) {
  /* Before any other libuv call in the process; a write to a client that
   * went away must be an error, not a signal. */
  if (sl_init() < 0) FAIL("sl_init failed");
  signal(SIGPIPE, SIG_IGN);
  printf("sluice %s\n", sl_version());
  static gateway_thread_t a, b;
  start_gateway(&a, "A", "alpha-1");
  start_gateway(&b, "B", "beta-2");
  stream_one(&a);
  stream_one(&b);
  stop_gateway(&a);
  stop_gateway(&b);
  printf("ok: two gateways, two loops, two threads; each served its own model and counted its own stream\n");
  return 0;
}
