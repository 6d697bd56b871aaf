/* Tests for runtime/sim_engine: the simulated engine runs on its own uv loop
 * in a background thread and the tests talk to it over loopback with plain
 * blocking sockets, as a real peer would.  Covered: the OpenAI wire format
 * (streaming chat and completions with role, tokens, finish, usage and
 * [DONE]; non-streaming JSON), determinism by seed, token stamps, slots and
 * FIFO queueing, every fault, write splits, a client closing mid-stream,
 * backpressure in as-fast-as-possible mode, error answers, health control,
 * config parsing, the CLI, and closing the engine with streams in flight.
 * Every engine is closed and its loop must close with no handle left.
 */
#include "runtime/sim/sim_engine.h"
#include "runtime/cli/sim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "test.h"

/* ---- the engine on a background loop ---- */

typedef struct {
  uv_loop_t loop;
  uv_async_t stop;
  sl_sim_engine_t *eng;
  pthread_t th;
  int port;
  int closed;          /* engine close callback ran */
  int running;         /* the loop thread is up */
  sl_sim_stats_t final; /* stats read in-process just before closing */
} sim_t;

static sim_t S;

static void *sim_thread(void *arg) {
  sim_t *s = arg;
  uv_run(&s->loop, UV_RUN_DEFAULT);
  return NULL;
}

static void sim_on_closed(void *ud) { ((sim_t *)ud)->closed = 1; }

static void sim_on_stop(uv_async_t *a) {
  sim_t *s = a->data;
  sl_sim_engine_stats(s->eng, &s->final);
  sl_sim_engine_close(s->eng, sim_on_closed, s);
  uv_close((uv_handle_t *)&s->stop, NULL);
}

/* Config for tests: quick timing unless a test asks otherwise. */
static void test_config(sl_sim_config_t *cfg) {
  sl_sim_config_default(cfg);
  cfg->port = 0;
  cfg->ttft_ms = 5;
  cfg->prefill_us_per_char = 1;
  cfg->itl_ms = 1;
  cfg->itl_jitter = 0.5;
  cfg->max_tokens = 8;
  cfg->nmodels = 2;
  snprintf(cfg->models[0], SL_SIM_MODEL_MAX, "sim");
  snprintf(cfg->models[1], SL_SIM_MODEL_MAX, "sim-large");
}

static int sim_start(const sl_sim_config_t *cfg) {
  memset(&S, 0, sizeof(S));
  if (uv_loop_init(&S.loop) != 0) return -1;
  int rc = sl_sim_engine_start(&S.eng, &S.loop, cfg);
  if (rc < 0) {
    uv_run(&S.loop, UV_RUN_DEFAULT);
    uv_loop_close(&S.loop);
    return rc;
  }
  S.port = sl_sim_engine_port(S.eng);
  uv_async_init(&S.loop, &S.stop, sim_on_stop);
  S.stop.data = &S;
  if (pthread_create(&S.th, NULL, sim_thread, &S) != 0) return -1;
  S.running = 1;
  return 0;
}

/* Closes the engine from its own thread; returns uv_loop_close's result. */
static int sim_stop(void) {
  S.running = 0;
  uv_async_send(&S.stop);
  pthread_join(S.th, NULL);
  return uv_loop_close(&S.loop);
}

#define START(cfg)                           \
  do {                                       \
    ASSERT_EQ(sim_start(cfg), 0);            \
    ASSERT_GT(S.port, 0);                    \
  } while (0)
#define STOP()                               \
  do {                                       \
    ASSERT_EQ(sim_stop(), 0);                \
    ASSERT_EQ(S.closed, 1);                  \
  } while (0)

/* ---- a small blocking HTTP client ---- */

static int tcp_connect(int port, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void set_rcvtimeo_ms(int fd, int ms) {
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static int send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Sends one request; headers is extra "Name: value\r\n" lines or NULL. */
static int send_req(int fd, const char *method, const char *path, const char *headers,
                    const char *body) {
  char buf[8192];
  size_t blen = body ? strlen(body) : 0;
  int n = snprintf(buf, sizeof(buf),
                   "%s %s HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\n%s\r\n%s",
                   method, path, blen, headers ? headers : "", body ? body : "");
  if (n < 0 || (size_t)n >= sizeof(buf)) return -1;
  return send_all(fd, buf, (size_t)n);
}

typedef struct {
  char *raw;          /* bytes received */
  size_t rawlen, rawcap;
  size_t pos;         /* parse position in raw */
  int have_head;
  int status;
  char head[4096];    /* status line and headers */
  char *body;         /* de-chunked body, NUL-terminated */
  size_t blen, bcap;
  size_t clen;        /* Content-Length when not chunked */
  int chunked;
  int complete;       /* a whole response was parsed */
  uint32_t *chunks;   /* sizes of the HTTP chunks, in order */
  int nchunks, chunks_cap;
  int reset;          /* the read ended with ECONNRESET */
  int eof;            /* the peer closed */
  int timeout;        /* the read timed out */
} resp_t;

static void resp_free(resp_t *r) {
  free(r->raw);
  free(r->body);
  free(r->chunks);
  memset(r, 0, sizeof(*r));
}

static void body_add(resp_t *r, const char *p, size_t n) {
  if (r->blen + n + 1 > r->bcap) {
    r->bcap = (r->blen + n + 1) * 2;
    r->body = realloc(r->body, r->bcap);
  }
  memcpy(r->body + r->blen, p, n);
  r->blen += n;
  r->body[r->blen] = '\0';
}

/* Parses what has arrived since the last call.  Returns 1 when the
 * response is complete, 0 when more bytes are needed, -1 when malformed. */
static int resp_parse(resp_t *r) {
  if (r->body == NULL) body_add(r, "", 0);
  if (!r->have_head) {
    char *end = r->raw ? memmem(r->raw, r->rawlen, "\r\n\r\n", 4) : NULL;
    if (end == NULL) return 0;
    size_t hlen = (size_t)(end - r->raw) + 4;
    if (hlen >= sizeof(r->head)) return -1;
    memcpy(r->head, r->raw, hlen);
    r->head[hlen] = '\0';
    if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1) return -1;
    r->chunked = strcasestr(r->head, "\r\ntransfer-encoding: chunked") != NULL;
    if (!r->chunked) {
      const char *cl = strcasestr(r->head, "\r\ncontent-length:");
      if (cl == NULL) return -1;
      r->clen = strtoul(cl + 17, NULL, 10);
    }
    r->have_head = 1;
    r->pos = hlen;
  }
  const char *lim = r->raw + r->rawlen;
  if (!r->chunked) {
    if (r->rawlen - r->pos < r->clen) return 0;
    body_add(r, r->raw + r->pos, r->clen);
    r->pos += r->clen;
    return 1;
  }
  for (;;) {
    const char *p = r->raw + r->pos;
    const char *crlf = memmem(p, (size_t)(lim - p), "\r\n", 2);
    if (crlf == NULL) return 0;
    char *e;
    unsigned long n = strtoul(p, &e, 16);
    if (e != crlf) return -1;
    if (n == 0) {
      if (lim - crlf < 4) return 0;
      if (memcmp(crlf, "\r\n\r\n", 4) != 0) return -1;
      r->pos = (size_t)(crlf + 4 - r->raw);
      return 1;
    }
    if ((size_t)(lim - (crlf + 2)) < n + 2) return 0;
    body_add(r, crlf + 2, n);
    if (r->nchunks == r->chunks_cap) {
      r->chunks_cap = r->chunks_cap ? r->chunks_cap * 2 : 256;
      r->chunks = realloc(r->chunks, sizeof(uint32_t) * (size_t)r->chunks_cap);
    }
    r->chunks[r->nchunks++] = (uint32_t)n;
    if (memcmp(crlf + 2 + n, "\r\n", 2) != 0) return -1;
    r->pos = (size_t)(crlf + 2 + n + 2 - r->raw);
  }
}

/* Reads until a whole response is parsed, the peer closes or resets, or
 * the read times out.  Returns 1 complete, 0 incomplete, -1 malformed. */
static int resp_read(int fd, resp_t *r) {
  for (;;) {
    int rc = resp_parse(r);
    if (rc != 0) {
      r->complete = rc == 1;
      return rc;
    }
    if (r->rawcap - r->rawlen < 65536) {
      r->rawcap = r->rawcap ? r->rawcap * 2 : 131072;
      r->raw = realloc(r->raw, r->rawcap);
    }
    ssize_t n = recv(fd, r->raw + r->rawlen, r->rawcap - r->rawlen, 0);
    if (n > 0) {
      r->rawlen += (size_t)n;
      continue;
    }
    if (n == 0) r->eof = 1;
    else if (errno == ECONNRESET) r->reset = 1;
    else if (errno == EAGAIN || errno == EWOULDBLOCK) r->timeout = 1;
    return 0;
  }
}

/* One request on a fresh connection; the response in *r. */
static int http(const char *method, const char *path, const char *headers, const char *body,
                resp_t *r) {
  memset(r, 0, sizeof(*r));
  int fd = tcp_connect(S.port, 0);
  if (fd < 0) return -1;
  if (send_req(fd, method, path, headers, body) < 0) {
    close(fd);
    return -1;
  }
  int rc = resp_read(fd, r);
  close(fd);
  return rc;
}

/* ---- SSE ---- */

typedef struct {
  cJSON **ev;   /* parsed data payloads, in order ([DONE] not included) */
  int n, cap;
  int done;     /* data: [DONE] was seen */
  int after_done; /* events after [DONE] */
  int bad;      /* blocks that were not `data: <json>` */
  int unterminated; /* bytes after the last blank line */
} sse_t;

static void sse_parse(const char *body, size_t len, sse_t *s) {
  memset(s, 0, sizeof(*s));
  const char *p = body, *lim = body + len;
  while (p < lim) {
    const char *e = memmem(p, (size_t)(lim - p), "\n\n", 2);
    if (e == NULL) {
      s->unterminated = 1;
      break;
    }
    size_t n = (size_t)(e - p);
    if (s->done) {
      s->after_done++;
    } else if (n >= 6 && memcmp(p, "data: ", 6) == 0) {
      if (n == 12 && memcmp(p + 6, "[DONE]", 6) == 0) {
        s->done = 1;
      } else {
        cJSON *j = cJSON_ParseWithLength(p + 6, n - 6);
        if (j == NULL) {
          s->bad++;
        } else {
          if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 64;
            s->ev = realloc(s->ev, sizeof(*s->ev) * (size_t)s->cap);
          }
          s->ev[s->n++] = j;
        }
      }
    } else {
      s->bad++;
    }
    p = e + 2;
  }
}

static void sse_free(sse_t *s) {
  for (int i = 0; i < s->n; i++) cJSON_Delete(s->ev[i]);
  free(s->ev);
  memset(s, 0, sizeof(*s));
}

static const cJSON *choice0(const cJSON *ev) {
  return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "choices"), 0);
}

/* The token text of an event (chat delta.content or completion text), or
 * NULL when the event carries none (role, finish, usage). */
static const char *ev_text(const cJSON *ev, int chat) {
  const cJSON *c = choice0(ev);
  if (c == NULL) return NULL;
  const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c, "finish_reason");
  if (!cJSON_IsNull(fr)) return NULL;
  const cJSON *t;
  if (chat) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "delta");
    if (cJSON_GetObjectItemCaseSensitive(d, "role") != NULL) return NULL;
    t = cJSON_GetObjectItemCaseSensitive(d, "content");
  } else {
    t = cJSON_GetObjectItemCaseSensitive(c, "text");
  }
  return cJSON_IsString(t) ? t->valuestring : NULL;
}

static int count_tokens(const sse_t *s, int chat) {
  int n = 0;
  for (int i = 0; i < s->n; i++)
    if (ev_text(s->ev[i], chat) != NULL) n++;
  return n;
}

/* Concatenated token text into buf. */
static void join_text(const sse_t *s, int chat, char *buf, size_t cap) {
  size_t o = 0;
  buf[0] = '\0';
  for (int i = 0; i < s->n; i++) {
    const char *t = ev_text(s->ev[i], chat);
    if (t == NULL) continue;
    size_t n = strlen(t);
    if (o + n + 1 > cap) break;
    memcpy(buf + o, t, n + 1);
    o += n;
  }
}

static const char *str_at(const cJSON *o, const char *a, const char *b) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);
  if (b != NULL) v = cJSON_GetObjectItemCaseSensitive(v, b);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num_at(const cJSON *o, const char *a, const char *b) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);
  if (b != NULL) v = cJSON_GetObjectItemCaseSensitive(v, b);
  return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* ---- stats over HTTP ---- */

static int get_stats(sl_sim_stats_t *st) {
  resp_t r;
  memset(st, 0, sizeof(*st));
  if (http("GET", "/sim/stats", NULL, NULL, &r) != 1 || r.status != 200) {
    resp_free(&r);
    return -1;
  }
  cJSON *j = cJSON_Parse(r.body);
  resp_free(&r);
  if (j == NULL) return -1;
#define F(name) st->name = (uint64_t)num_at(j, #name, NULL);
  F(requests) F(active) F(queued) F(completed) F(tokens_sent) F(client_closed_mid_stream)
  F(write_blocked) F(max_write_queue_bytes) F(connections_accepted) F(faults_injected)
#undef F
  cJSON_Delete(j);
  return 0;
}

/* Polls the stats until cond holds (up to 10 s).  Returns 1 if it did. */
#define WAIT_STATS(st, cond)                                              \
  ({                                                                      \
    int sl__ok = 0;                                                       \
    for (int sl__i = 0; sl__i < 2000 && !sl__ok; sl__i++) {               \
      if (get_stats(&(st)) == 0 && (cond)) sl__ok = 1;                    \
      else usleep(5000);                                                  \
    }                                                                     \
    sl__ok;                                                               \
  })

static const char CHAT_BODY[] =
    "{\"model\":\"sim\",\"messages\":[{\"role\":\"user\",\"content\":\"Say something.\"}],"
    "\"stream\":true,\"max_tokens\":7}";

/* ---- tests ---- */

static void test_config_json(void) {
  sl_sim_config_t cfg;
  char err[128];
  sl_sim_config_default(&cfg);
  ASSERT_STR_EQ(cfg.host, "127.0.0.1");
  ASSERT_EQ(cfg.port, 8000);
  ASSERT_EQ(cfg.nmodels, 1);
  ASSERT_STR_EQ(cfg.models[0], "sim");

  cJSON *j = cJSON_Parse(
      "{\"listen\":\"0.0.0.0:9100\",\"slots\":3,\"ttft_ms\":12.5,\"prefill_us_per_char\":2,"
      "\"itl_ms\":0,\"itl_jitter\":0.1,\"max_tokens\":100,\"seed\":7,\"stamp\":true,"
      "\"models\":[\"a\",\"b\"]}");
  ASSERT_EQ(sl_sim_config_from_json(&cfg, j, err, sizeof(err)), 0);
  cJSON_Delete(j);
  ASSERT_STR_EQ(cfg.host, "0.0.0.0");
  ASSERT_EQ(cfg.port, 9100);
  ASSERT_EQ(cfg.slots, 3);
  ASSERT_DBL_NEAR(cfg.ttft_ms, 12.5, 1e-9);
  ASSERT_DBL_NEAR(cfg.itl_ms, 0, 1e-9);
  ASSERT_EQ(cfg.max_tokens, 100);
  ASSERT_UINT_EQ(cfg.seed, 7);
  ASSERT_EQ(cfg.stamp, 1);
  ASSERT_EQ(cfg.nmodels, 2);
  ASSERT_STR_EQ(cfg.models[1], "b");

  j = cJSON_Parse("{\"slots\":2,\"bogus\":1}");
  ASSERT_EQ(sl_sim_config_from_json(&cfg, j, err, sizeof(err)), SL_EINVAL);
  cJSON_Delete(j);
  ASSERT_NOT_NULL(strstr(err, "bogus"));

  j = cJSON_Parse("{\"itl_ms\":\"fast\"}");
  ASSERT_EQ(sl_sim_config_from_json(&cfg, j, err, sizeof(err)), SL_EINVAL);
  cJSON_Delete(j);
  ASSERT_NOT_NULL(strstr(err, "itl_ms"));

  j = cJSON_Parse("{\"slots\":0}");
  ASSERT_EQ(sl_sim_config_from_json(&cfg, j, err, sizeof(err)), SL_EINVAL);
  cJSON_Delete(j);
  ASSERT_NOT_NULL(strstr(err, "slots"));

  /* The wave: both keys, period >= 2, amplitude in [0, 1). */
  j = cJSON_Parse("{\"itl_wave\":{\"period\":16,\"amplitude\":0.5}}");
  ASSERT_EQ(sl_sim_config_from_json(&cfg, j, err, sizeof(err)), 0);
  cJSON_Delete(j);
  ASSERT_DBL_NEAR(cfg.itl_wave_period, 16, 1e-9);
  ASSERT_DBL_NEAR(cfg.itl_wave_amp, 0.5, 1e-9);
  static const struct {
    const char *json, *err;
  } bad_waves[] = {
      {"{\"itl_wave\":16}", "itl_wave: expected an object {\"period\", \"amplitude\"}"},
      {"{\"itl_wave\":{\"amplitude\":0.5}}", "itl_wave.period: required"},
      {"{\"itl_wave\":{\"period\":16}}", "itl_wave.amplitude: required"},
      {"{\"itl_wave\":{\"period\":1,\"amplitude\":0.5}}", "itl_wave.period: expected a number of tokens from 2 to 1000000"},
      {"{\"itl_wave\":{\"period\":16,\"amplitude\":1}}", "itl_wave.amplitude: expected a number from 0 to below 1"},
      {"{\"itl_wave\":{\"period\":16,\"amplitude\":\"big\"}}", "itl_wave.amplitude: expected a number from 0 to below 1"},
      {"{\"itl_wave\":{\"period\":16,\"amplitude\":0.5,\"phase\":1}}", "itl_wave: unknown key \"phase\""},
  };
  for (size_t i = 0; i < sizeof(bad_waves) / sizeof(bad_waves[0]); i++) {
    j = cJSON_Parse(bad_waves[i].json);
    ASSERT_EQ(sl_sim_config_from_json(&cfg, j, err, sizeof(err)), SL_EINVAL);
    cJSON_Delete(j);
    ASSERT_STR_EQ(err, bad_waves[i].err);
  }

  j = cJSON_Parse("{\"models\":[\"ok\",3]}");
  ASSERT_EQ(sl_sim_config_from_json(&cfg, j, err, sizeof(err)), SL_EINVAL);
  cJSON_Delete(j);
  ASSERT_NOT_NULL(strstr(err, "models[1]"));

  ASSERT_EQ(sl_sim_config_set_listen(&cfg, "[::1]:0"), 0);
  ASSERT_STR_EQ(cfg.host, "::1");
  ASSERT_EQ(cfg.port, 0);
  ASSERT_EQ(sl_sim_config_set_listen(&cfg, ":8123"), 0);
  ASSERT_STR_EQ(cfg.host, "127.0.0.1");
  ASSERT_EQ(cfg.port, 8123);
  ASSERT_EQ(sl_sim_config_set_listen(&cfg, "localhost"), SL_EINVAL);
  ASSERT_EQ(sl_sim_config_set_listen(&cfg, "1.2.3.4:70000"), SL_EINVAL);
  ASSERT_EQ(sl_sim_config_set_listen(&cfg, "::1:80"), SL_EINVAL);

  /* A bad config is refused before anything opens. */
  sl_sim_engine_t *e = NULL;
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  sl_sim_config_default(&cfg);
  cfg.slots = 0;
  ASSERT_EQ(sl_sim_engine_start(&e, &loop, &cfg), SL_EINVAL);
  ASSERT_NULL(e);
  sl_sim_config_default(&cfg);
  cfg.itl_wave_period = 1; /* set in C past the JSON checks */
  ASSERT_EQ(sl_sim_engine_start(&e, &loop, &cfg), SL_EINVAL);
  cfg.itl_wave_period = 8;
  cfg.itl_wave_amp = 1;
  ASSERT_EQ(sl_sim_engine_start(&e, &loop, &cfg), SL_EINVAL);
  ASSERT_NULL(e);
  ASSERT_EQ(uv_loop_close(&loop), 0);
}

/* The gap schedule: jitter scales itl, the wave follows the sine of the
 * token's index, and nothing goes below 0. */
static void test_gap_schedule(void) {
  ASSERT_DBL_NEAR(sl_sim_gap(10, 0.2, 0, 0.5, 3, 1), 12, 1e-12);
  ASSERT_DBL_NEAR(sl_sim_gap(10, 0.2, 0, 0.5, 3, -1), 8, 1e-12);
  /* Period 4, amplitude 0.5: the quarter-cycle points of the sine. */
  const double want[8] = {10, 15, 10, 5, 10, 15, 10, 5};
  for (uint64_t k = 0; k < 8; k++) ASSERT_DBL_NEAR(sl_sim_gap(10, 0, 4, 0.5, k, 0), want[k], 1e-9);
  /* A whole cycle averages to itl, so the mean rate is unchanged. */
  double sum = 0;
  for (uint64_t k = 1; k <= 16; k++) sum += sl_sim_gap(12, 0, 16, 0.5, k, 0);
  ASSERT_DBL_NEAR(sum / 16, 12, 1e-9);
  /* Jitter and wave multiply. */
  ASSERT_DBL_NEAR(sl_sim_gap(10, 0.5, 4, 0.5, 1, 1), 22.5, 1e-9);
  ASSERT_DBL_NEAR(sl_sim_gap(10, 1, 0, 0, 0, -1), 0, 1e-12);
}

/* A wave engine streams every token and ends cleanly (its gaps are the
 * schedule above; e2e_dynamics checks that sluice measures them as
 * periodic). */
static void test_stream_wave(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  cfg.itl_jitter = 0;
  cfg.itl_wave_period = 4;
  cfg.itl_wave_amp = 0.9;
  START(&cfg);
  resp_t r;
  sse_t s;
  ASSERT_EQ(http("POST", "/v1/chat/completions", NULL, CHAT_BODY, &r), 1);
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.bad, 0);
  ASSERT_EQ(count_tokens(&s, 1), 7);
  sse_free(&s);
  resp_free(&r);
  STOP();
}

static void test_stream_chat(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  START(&cfg);
  resp_t r;
  sse_t s;
  ASSERT_EQ(http("POST", "/v1/chat/completions", NULL, CHAT_BODY, &r), 1);
  ASSERT_EQ(r.status, 200);
  ASSERT_NOT_NULL(strcasestr(r.head, "\r\ncontent-type: text/event-stream"));
  ASSERT_EQ(r.chunked, 1);
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.bad, 0);
  ASSERT_EQ(s.unterminated, 0);
  ASSERT_EQ(s.done, 1);
  ASSERT_EQ(s.after_done, 0);
  ASSERT_EQ(s.n, 1 + 7 + 1); /* role, tokens, finish; no usage chunk */
  const cJSON *c0 = choice0(s.ev[0]);
  ASSERT_STR_EQ(str_at(c0, "delta", "role"), "assistant");
  ASSERT_STR_EQ(str_at(c0, "delta", "content"), "");
  ASSERT_EQ(count_tokens(&s, 1), 7);
  for (int i = 0; i < s.n; i++) {
    ASSERT_STR_EQ(str_at(s.ev[i], "object", NULL), "chat.completion.chunk");
    ASSERT_STR_EQ(str_at(s.ev[i], "model", NULL), "sim");
    ASSERT_STR_EQ(str_at(s.ev[i], "id", NULL), str_at(s.ev[0], "id", NULL));
    /* usage:null appears only when include_usage was asked for */
    ASSERT_NULL(cJSON_GetObjectItemCaseSensitive(s.ev[i], "usage"));
  }
  const cJSON *last = choice0(s.ev[s.n - 1]);
  ASSERT_STR_EQ(str_at(last, "finish_reason", NULL), "length");
  ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(last, "delta")), 0);
  sse_free(&s);
  resp_free(&r);

  sl_sim_stats_t st;
  ASSERT(WAIT_STATS(st, st.completed == 1 && st.active == 0));
  ASSERT_UINT_EQ(st.requests, 1);
  ASSERT_UINT_EQ(st.tokens_sent, 7);
  ASSERT_UINT_EQ(st.client_closed_mid_stream, 0);
  STOP();
  ASSERT_UINT_EQ(S.final.completed, 1);
  ASSERT_UINT_EQ(S.final.tokens_sent, 7);
}

static void test_stream_usage(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  START(&cfg);
  resp_t r;
  sse_t s;
  const char *body =
      "{\"model\":\"sim-large\",\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},"
      "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"0123456789012345678901234567890123456789\"}]}],"
      "\"stream\":true,\"max_completion_tokens\":5,\"stream_options\":{\"include_usage\":true}}";
  ASSERT_EQ(http("POST", "/v1/chat/completions", NULL, body, &r), 1);
  ASSERT_EQ(r.status, 200);
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.bad, 0);
  ASSERT_EQ(s.done, 1);
  ASSERT_EQ(s.n, 1 + 5 + 1 + 1);
  for (int i = 0; i < s.n - 1; i++) {
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(s.ev[i], "usage");
    ASSERT_NOT_NULL(u);
    ASSERT(cJSON_IsNull(u));
  }
  const cJSON *uc = s.ev[s.n - 1];
  ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(uc, "choices")), 0);
  ASSERT_EQ(num_at(uc, "usage", "completion_tokens"), 5);
  ASSERT_EQ(num_at(uc, "usage", "prompt_tokens"), (14 + 40) / 4 + 1);
  ASSERT_EQ(num_at(uc, "usage", "total_tokens"), 5 + (14 + 40) / 4 + 1);
  ASSERT_STR_EQ(str_at(choice0(s.ev[s.n - 2]), "finish_reason", NULL), "length");
  ASSERT_STR_EQ(str_at(s.ev[0], "model", NULL), "sim-large");
  sse_free(&s);
  resp_free(&r);
  STOP();
}

static void test_stream_completions(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  START(&cfg);
  resp_t r;
  sse_t s;
  const char *body = "{\"model\":\"sim\",\"prompt\":\"Once upon a time\",\"stream\":true,\"max_tokens\":16}";
  ASSERT_EQ(http("POST", "/v1/completions", "x-sim-tokens: 5\r\n", body, &r), 1);
  ASSERT_EQ(r.status, 200);
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.bad, 0);
  ASSERT_EQ(s.done, 1);
  ASSERT_EQ(s.n, 5 + 1); /* no role chunk on the legacy endpoint */
  ASSERT_EQ(count_tokens(&s, 0), 5);
  for (int i = 0; i < s.n; i++) ASSERT_STR_EQ(str_at(s.ev[i], "object", NULL), "text_completion");
  /* x-sim-tokens below max_tokens: a natural stop */
  ASSERT_STR_EQ(str_at(choice0(s.ev[s.n - 1]), "finish_reason", NULL), "stop");
  ASSERT_STR_EQ(str_at(choice0(s.ev[s.n - 1]), "text", NULL), "");
  sse_free(&s);
  resp_free(&r);

  /* max_tokens smaller than x-sim-tokens caps it with "length". */
  body = "{\"model\":\"sim\",\"prompt\":[\"a\",\"b\"],\"stream\":true,\"max_tokens\":3}";
  ASSERT_EQ(http("POST", "/v1/completions", "x-sim-tokens: 50\r\n", body, &r), 1);
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(count_tokens(&s, 0), 3);
  ASSERT_STR_EQ(str_at(choice0(s.ev[s.n - 1]), "finish_reason", NULL), "length");
  sse_free(&s);
  resp_free(&r);

  /* Neither: the configured default count. */
  body = "{\"model\":\"sim\",\"prompt\":\"x\",\"stream\":true}";
  ASSERT_EQ(http("POST", "/v1/completions", NULL, body, &r), 1);
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(count_tokens(&s, 0), 8);
  sse_free(&s);
  resp_free(&r);
  STOP();
}

static void test_non_stream_and_seed(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  cfg.itl_ms = 0;
  START(&cfg);
  resp_t r;
  const char *hdr42 = "x-sim-seed: 42\r\nx-sim-tokens: 200\r\n";
  const char *chat = "{\"model\":\"sim\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}";
  ASSERT_EQ(http("POST", "/v1/chat/completions", hdr42, chat, &r), 1);
  ASSERT_EQ(r.status, 200);
  ASSERT_NOT_NULL(strcasestr(r.head, "\r\ncontent-type: application/json"));
  cJSON *j = cJSON_Parse(r.body);
  resp_free(&r);
  ASSERT_NOT_NULL(j);
  ASSERT_STR_EQ(str_at(j, "object", NULL), "chat.completion");
  const cJSON *c0 = choice0(j);
  ASSERT_STR_EQ(str_at(c0, "message", "role"), "assistant");
  ASSERT_STR_EQ(str_at(c0, "finish_reason", NULL), "stop");
  ASSERT_EQ(num_at(j, "usage", "completion_tokens"), 200);
  ASSERT_EQ(num_at(j, "usage", "prompt_tokens"), 2);
  ASSERT_EQ(num_at(j, "usage", "total_tokens"), 202);
  static char text1[65536], text2[65536], text3[65536];
  snprintf(text1, sizeof(text1), "%s", str_at(c0, "message", "content"));
  cJSON_Delete(j);
  /* The text exercises JSON escapes and multi-byte UTF-8. */
  ASSERT(strchr(text1, '"') || strchr(text1, '\\') || strchr(text1, '\n') || strstr(text1, "\xc3\xa9"));
  ASSERT_GT(strlen(text1), 200);

  /* Same seed, streamed: the same text. */
  ASSERT_EQ(http("POST", "/v1/chat/completions", hdr42, CHAT_BODY, &r), 1);
  sse_t s;
  sse_parse(r.body, r.blen, &s);
  resp_free(&r);
  ASSERT_EQ(s.bad, 0);
  ASSERT_EQ(count_tokens(&s, 1), 7); /* max_tokens 7 caps the 200 */
  join_text(&s, 1, text2, sizeof(text2));
  sse_free(&s);
  ASSERT_EQ(strncmp(text1, text2, strlen(text2)), 0);

  /* Same seed on the legacy endpoint: same text again. */
  ASSERT_EQ(http("POST", "/v1/completions", hdr42, "{\"model\":\"sim\",\"prompt\":\"hi\"}", &r), 1);
  j = cJSON_Parse(r.body);
  resp_free(&r);
  ASSERT_NOT_NULL(j);
  ASSERT_STR_EQ(str_at(j, "object", NULL), "text_completion");
  ASSERT_STR_EQ(str_at(choice0(j), "text", NULL), text1);
  cJSON_Delete(j);

  /* Another seed: other text. */
  ASSERT_EQ(http("POST", "/v1/chat/completions", "x-sim-seed: 43\r\nx-sim-tokens: 200\r\n", chat, &r), 1);
  j = cJSON_Parse(r.body);
  resp_free(&r);
  ASSERT_NOT_NULL(j);
  snprintf(text3, sizeof(text3), "%s", str_at(choice0(j), "message", "content"));
  cJSON_Delete(j);
  ASSERT(strcmp(text1, text3) != 0);
  STOP();
}

static void test_script(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  START(&cfg);
  resp_t r;
  sse_t s;
  char text[256];
  const char *hdr = "x-sim-script: Hello|,| %22world%22|%0A|caf%C3%A9|a%7Cb\\\r\n";
  ASSERT_EQ(http("POST", "/v1/chat/completions", hdr,
                 "{\"model\":\"sim\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true}", &r), 1);
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.bad, 0);
  ASSERT_EQ(s.done, 1);
  ASSERT_EQ(count_tokens(&s, 1), 6);
  ASSERT_STR_EQ(ev_text(s.ev[5], 1), "caf\xc3\xa9");
  join_text(&s, 1, text, sizeof(text));
  ASSERT_STR_EQ(text, "Hello, \"world\"\ncaf\xc3\xa9" "a|b\\");
  ASSERT_STR_EQ(str_at(choice0(s.ev[s.n - 1]), "finish_reason", NULL), "stop");
  sse_free(&s);
  resp_free(&r);

  /* max_tokens cuts a script short. */
  ASSERT_EQ(http("POST", "/v1/completions", hdr, "{\"model\":\"sim\",\"prompt\":\"x\",\"max_tokens\":2}", &r), 1);
  cJSON *j = cJSON_Parse(r.body);
  resp_free(&r);
  ASSERT_NOT_NULL(j);
  ASSERT_STR_EQ(str_at(choice0(j), "text", NULL), "Hello,");
  ASSERT_STR_EQ(str_at(choice0(j), "finish_reason", NULL), "length");
  cJSON_Delete(j);

  ASSERT_EQ(http("POST", "/v1/completions", "x-sim-script: a|b%zz\r\n",
                 "{\"model\":\"sim\",\"prompt\":\"x\"}", &r), 1);
  ASSERT_EQ(r.status, 400);
  ASSERT_NOT_NULL(strstr(r.body, "x-sim-script"));
  resp_free(&r);
  STOP();
}

static void test_errors_and_routes(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  START(&cfg);
  resp_t r;
  cJSON *j;

  ASSERT_EQ(http("POST", "/v1/chat/completions", NULL,
                 "{\"model\":\"gpt-nope\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &r), 1);
  ASSERT_EQ(r.status, 404);
  j = cJSON_Parse(r.body);
  resp_free(&r);
  ASSERT_NOT_NULL(j);
  ASSERT_STR_EQ(str_at(j, "error", "code"), "model_not_found");
  ASSERT_STR_EQ(str_at(j, "error", "type"), "invalid_request_error");
  ASSERT_NOT_NULL(strstr(str_at(j, "error", "message"), "gpt-nope"));
  cJSON_Delete(j);

  ASSERT_EQ(http("POST", "/v1/chat/completions", NULL, "{not json", &r), 1);
  ASSERT_EQ(r.status, 400);
  resp_free(&r);

  ASSERT_EQ(http("POST", "/v1/chat/completions", NULL,
                 "{\"model\":\"sim\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":-1}", &r), 1);
  ASSERT_EQ(r.status, 400);
  j = cJSON_Parse(r.body);
  resp_free(&r);
  ASSERT_STR_EQ(str_at(j, "error", "param"), "max_tokens");
  cJSON_Delete(j);

  ASSERT_EQ(http("POST", "/v1/chat/completions", "x-sim-fault: meltdown\r\n", CHAT_BODY, &r), 1);
  ASSERT_EQ(r.status, 400);
  j = cJSON_Parse(r.body);
  resp_free(&r);
  ASSERT_STR_EQ(str_at(j, "error", "param"), "x-sim-fault");
  cJSON_Delete(j);

  ASSERT_EQ(http("POST", "/v1/completions", NULL, "{\"model\":\"sim\"}", &r), 1);
  ASSERT_EQ(r.status, 400);
  resp_free(&r);

  ASSERT_EQ(http("GET", "/v1/chat/completions", NULL, NULL, &r), 1);
  ASSERT_EQ(r.status, 405);
  resp_free(&r);
  ASSERT_EQ(http("GET", "/nowhere", NULL, NULL, &r), 1);
  ASSERT_EQ(r.status, 404);
  resp_free(&r);

  ASSERT_EQ(http("GET", "/v1/models", NULL, NULL, &r), 1);
  ASSERT_EQ(r.status, 200);
  j = cJSON_Parse(r.body);
  resp_free(&r);
  ASSERT_STR_EQ(str_at(j, "object", NULL), "list");
  ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "data")), 2);
  ASSERT_STR_EQ(str_at(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "data"), 1), "id", NULL),
                "sim-large");
  cJSON_Delete(j);

  /* Health flips through /sim/control. */
  ASSERT_EQ(http("GET", "/health", NULL, NULL, &r), 1);
  ASSERT_EQ(r.status, 200);
  ASSERT_STR_EQ(r.body, "{\"status\":\"ok\"}");
  resp_free(&r);
  ASSERT_EQ(http("POST", "/sim/control", NULL, "{\"healthy\":false}", &r), 1);
  ASSERT_EQ(r.status, 200);
  resp_free(&r);
  ASSERT_EQ(http("GET", "/health", NULL, NULL, &r), 1);
  ASSERT_EQ(r.status, 503);
  resp_free(&r);
  ASSERT_EQ(http("POST", "/sim/control", NULL, "{\"healthy\":\"yes\"}", &r), 1);
  ASSERT_EQ(r.status, 400);
  resp_free(&r);
  ASSERT_EQ(http("POST", "/sim/control", NULL, "{\"sick\":true}", &r), 1);
  ASSERT_EQ(r.status, 400);
  ASSERT_NOT_NULL(strstr(r.body, "sick"));
  resp_free(&r);
  ASSERT_EQ(http("POST", "/sim/control", NULL, "{\"healthy\":true,\"reset_stats\":true}", &r), 1);
  ASSERT_EQ(r.status, 200);
  resp_free(&r);
  ASSERT_EQ(http("GET", "/health", NULL, NULL, &r), 1);
  ASSERT_EQ(r.status, 200);
  resp_free(&r);
  sl_sim_stats_t st;
  ASSERT_EQ(get_stats(&st), 0);
  ASSERT_UINT_EQ(st.requests, 0); /* reset */
  STOP();
}

static void test_fault_status(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  START(&cfg);
  resp_t r;
  ASSERT_EQ(http("POST", "/v1/chat/completions", "x-sim-fault: status:503\r\n", CHAT_BODY, &r), 1);
  ASSERT_EQ(r.status, 503);
  ASSERT_NOT_NULL(strcasestr(r.head, "\r\nretry-after:"));
  cJSON *j = cJSON_Parse(r.body);
  resp_free(&r);
  ASSERT_NOT_NULL(j);
  ASSERT_STR_EQ(str_at(j, "error", "type"), "server_error");
  ASSERT_NOT_NULL(str_at(j, "error", "message"));
  cJSON_Delete(j);
  ASSERT_EQ(http("POST", "/v1/completions", "x-sim-fault: status:429\r\n",
                 "{\"model\":\"sim\",\"prompt\":\"x\"}", &r), 1);
  ASSERT_EQ(r.status, 429);
  resp_free(&r);
  sl_sim_stats_t st;
  ASSERT_EQ(get_stats(&st), 0);
  ASSERT_UINT_EQ(st.faults_injected, 2);
  ASSERT_UINT_EQ(st.tokens_sent, 0);
  STOP();
}

static void test_fault_reset(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  START(&cfg);
  resp_t r;
  ASSERT_EQ(http("POST", "/v1/chat/completions", "x-sim-fault: reset\r\nx-sim-fault-at: 2\r\n",
                 CHAT_BODY, &r), 0);
  ASSERT_EQ(r.reset, 1);
  ASSERT_EQ(r.status, 200);
  sse_t s;
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.bad, 0);
  ASSERT_EQ(count_tokens(&s, 1), 2);
  ASSERT_EQ(s.done, 0);
  sse_free(&s);
  resp_free(&r);
  sl_sim_stats_t st;
  ASSERT(WAIT_STATS(st, st.active == 0));
  ASSERT_UINT_EQ(st.faults_injected, 1);
  ASSERT_UINT_EQ(st.completed, 0);
  ASSERT_UINT_EQ(st.client_closed_mid_stream, 0);
  STOP();
}

static void test_fault_error_event_close_garbage(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  START(&cfg);
  resp_t r;
  sse_t s;

  /* error-event: tokens, then one error event, a clean chunked end, no [DONE]. */
  ASSERT_EQ(http("POST", "/v1/chat/completions", "x-sim-fault: error-event\r\nx-sim-fault-at: 4\r\n",
                 CHAT_BODY, &r), 1);
  ASSERT_EQ(r.status, 200);
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.bad, 0);
  ASSERT_EQ(s.done, 0);
  ASSERT_EQ(count_tokens(&s, 1), 4);
  const cJSON *err = cJSON_GetObjectItemCaseSensitive(s.ev[s.n - 1], "error");
  ASSERT_NOT_NULL(err);
  ASSERT_STR_EQ(str_at(err, "type", NULL), "server_error");
  ASSERT(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(err, "code")));
  sse_free(&s);
  resp_free(&r);

  /* close: tokens, then the body just ends (no finish, no [DONE]). */
  ASSERT_EQ(http("POST", "/v1/chat/completions", "x-sim-fault: close\r\nx-sim-fault-at: 2\r\n",
                 CHAT_BODY, &r), 1);
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.bad, 0);
  ASSERT_EQ(s.done, 0);
  ASSERT_EQ(s.n, 1 + 2);
  ASSERT_EQ(count_tokens(&s, 1), 2);
  sse_free(&s);
  resp_free(&r);

  /* garbage: non-SSE bytes inside the chunked body, then the stream goes on. */
  ASSERT_EQ(http("POST", "/v1/chat/completions", "x-sim-fault: garbage\r\nx-sim-fault-at: 1\r\n",
                 CHAT_BODY, &r), 1);
  ASSERT_NOT_NULL(memmem(r.body, r.blen, "sim-garbage", 11));
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.bad, 1);
  ASSERT_EQ(s.done, 1);
  ASSERT_EQ(count_tokens(&s, 1), 7);
  sse_free(&s);
  resp_free(&r);

  /* garbage-end: the garbage is the last thing in the body. */
  ASSERT_EQ(http("POST", "/v1/chat/completions", "x-sim-fault: garbage-end\r\nx-sim-fault-at: 1\r\n",
                 CHAT_BODY, &r), 1);
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.bad, 1);
  ASSERT_EQ(s.done, 0);
  ASSERT_EQ(count_tokens(&s, 1), 1);
  sse_free(&s);
  resp_free(&r);

  /* slow-start only delays the first token. */
  ASSERT_EQ(http("POST", "/v1/chat/completions", "x-sim-fault: slow-start\r\nx-sim-delay-ms: 30\r\n",
                 CHAT_BODY, &r), 1);
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.done, 1);
  ASSERT_EQ(count_tokens(&s, 1), 7);
  sse_free(&s);
  resp_free(&r);

  sl_sim_stats_t st;
  ASSERT(WAIT_STATS(st, st.active == 0));
  ASSERT_UINT_EQ(st.faults_injected, 5);
  ASSERT_UINT_EQ(st.completed, 2); /* garbage and slow-start ran to their end */
  STOP();
}

static void test_fault_stall_and_client_close(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  START(&cfg);
  int fd = tcp_connect(S.port, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(send_req(fd, "POST", "/v1/chat/completions", "x-sim-fault: stall\r\nx-sim-fault-at: 2\r\n",
                     CHAT_BODY), 0);
  /* Once the stall has fired, the two tokens are written: then a short
   * read finds them and nothing more (reading for 300 ms from the send
   * assumed the tokens came within that time). */
  sl_sim_stats_t st0;
  ASSERT(WAIT_STATS(st0, st0.faults_injected >= 1 && st0.tokens_sent >= 2));
  set_rcvtimeo_ms(fd, 300);
  resp_t r;
  memset(&r, 0, sizeof(r));
  ASSERT_EQ(resp_read(fd, &r), 0);
  ASSERT_EQ(r.timeout, 1); /* nothing more comes, and the connection stays open */
  sse_t s;
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(count_tokens(&s, 1), 2);
  ASSERT_EQ(s.done, 0);
  sse_free(&s);
  resp_free(&r);
  sl_sim_stats_t st;
  ASSERT_EQ(get_stats(&st), 0);
  ASSERT_UINT_EQ(st.active, 1); /* the stalled request keeps its slot */
  close(fd);
  ASSERT(WAIT_STATS(st, st.client_closed_mid_stream == 1 && st.active == 0));

  /* A client that reads two tokens of a long stream and hangs up. */
  fd = tcp_connect(S.port, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(send_req(fd, "POST", "/v1/chat/completions", "x-sim-tokens: 100000\r\nx-sim-itl-ms: 2\r\n",
                     "{\"model\":\"sim\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true}"),
            0);
  char buf[4096];
  size_t got = 0;
  int events = 0;
  while (events < 3) {
    ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
    ASSERT_GT(n, 0);
    got += (size_t)n;
    buf[got] = '\0';
    events = 0;
    for (char *p = buf; (p = strstr(p, "data: ")) != NULL; p += 6) events++;
  }
  close(fd);
  ASSERT(WAIT_STATS(st, st.client_closed_mid_stream == 2 && st.active == 0));
  ASSERT_LT(st.tokens_sent, 100000);
  ASSERT_UINT_EQ(st.completed, 0);
  STOP();
}

static void test_split(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  START(&cfg);
  resp_t r;
  sse_t s;
  ASSERT_EQ(http("POST", "/v1/completions",
                 "x-sim-tokens: 3\r\nx-sim-split: 40, 6\r\nx-sim-split-delay-ms: 3\r\n",
                 "{\"model\":\"sim\",\"prompt\":\"x\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
                 &r), 1);
  ASSERT_EQ(r.status, 200);
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.bad, 0);
  ASSERT_EQ(s.done, 1);
  ASSERT_EQ(s.n, 3 + 1 + 1); /* tokens, finish, usage */
  /* Walk the events in the body: each must arrive as HTTP chunks cut at
   * bytes 6 and 40 of the event (fewer pieces for short events). */
  const char *p = r.body;
  int ci = 0, nev = 0;
  while (p < r.body + r.blen) {
    const char *e = strstr(p, "\n\n");
    ASSERT_NOT_NULL(e);
    uint32_t len = (uint32_t)(e + 2 - p);
    uint32_t cuts[3] = {6, 40, len};
    uint32_t prev = 0;
    for (int k = 0; k < 3; k++) {
      if (cuts[k] > len) continue;
      if (cuts[k] == prev) continue;
      ASSERT_LT(ci, r.nchunks);
      ASSERT_EQ(r.chunks[ci], cuts[k] - prev);
      ci++;
      prev = cuts[k];
    }
    p = e + 2;
    nev++;
  }
  ASSERT_EQ(nev, 6); /* with [DONE] */
  ASSERT_EQ(ci, r.nchunks);
  ASSERT_EQ(r.nchunks, 5 * 3 + 2); /* [DONE] is 14 bytes: cut once */
  sse_free(&s);
  resp_free(&r);

  /* Without a delay the cuts are still separate HTTP chunks. */
  ASSERT_EQ(http("POST", "/v1/chat/completions", "x-sim-split: 1\r\n", CHAT_BODY, &r), 1);
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.bad, 0);
  ASSERT_EQ(s.done, 1);
  ASSERT_EQ(r.nchunks, 2 * (s.n + 1));
  for (int i = 0; i < r.nchunks; i += 2) ASSERT_EQ(r.chunks[i], 1);
  sse_free(&s);
  resp_free(&r);
  STOP();
}

/* Parses the [t=NS] stamp at the end of a token; 0 if there is none. */
static uint64_t stamp_of(const char *t) {
  const char *p = strstr(t, "[t=");
  if (p == NULL) return 0;
  char *end;
  unsigned long long v = strtoull(p + 3, &end, 10);
  if (*end != ']' || end[1] != '\0') return 0;
  return v;
}

static void test_stamp(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  START(&cfg);
  resp_t r;
  sse_t s;
  uint64_t before = uv_hrtime();
  ASSERT_EQ(http("POST", "/v1/chat/completions", "x-sim-stamp: 1\r\n", CHAT_BODY, &r), 1);
  uint64_t after = uv_hrtime();
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.bad, 0);
  ASSERT_EQ(count_tokens(&s, 1), 7);
  uint64_t prev = before;
  for (int i = 0; i < s.n; i++) {
    const char *t = ev_text(s.ev[i], 1);
    if (t == NULL) continue;
    uint64_t ts = stamp_of(t);
    ASSERT_GE(ts, prev); /* same clock as uv_hrtime here, never backwards */
    ASSERT_LE(ts, after);
    prev = ts;
  }
  sse_free(&s);
  resp_free(&r);
  STOP();
}

static uint64_t first_stamp(const resp_t *r) {
  sse_t s;
  uint64_t ts = 0;
  sse_parse(r->body, r->blen, &s);
  for (int i = 0; i < s.n && ts == 0; i++) {
    const char *t = ev_text(s.ev[i], 1);
    if (t != NULL) ts = stamp_of(t);
  }
  sse_free(&s);
  return ts;
}

static uint64_t last_stamp(const resp_t *r) {
  sse_t s;
  uint64_t ts = 0;
  sse_parse(r->body, r->blen, &s);
  for (int i = 0; i < s.n; i++) {
    const char *t = ev_text(s.ev[i], 1);
    if (t != NULL) ts = stamp_of(t);
  }
  sse_free(&s);
  return ts;
}

static void test_slots_fifo(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  cfg.slots = 1;
  cfg.stamp = 1;
  START(&cfg);
  sl_sim_stats_t st;
  int fa = tcp_connect(S.port, 0), fb = tcp_connect(S.port, 0), fc = tcp_connect(S.port, 0);
  ASSERT(fa >= 0 && fb >= 0 && fc >= 0);
  ASSERT_EQ(send_req(fa, "POST", "/v1/chat/completions", "x-sim-tokens: 8\r\nx-sim-itl-ms: 40\r\n", CHAT_BODY), 0);
  ASSERT(WAIT_STATS(st, st.active == 1));
  ASSERT_EQ(send_req(fb, "POST", "/v1/chat/completions", "x-sim-tokens: 3\r\n", CHAT_BODY), 0);
  ASSERT(WAIT_STATS(st, st.queued == 1));
  ASSERT_EQ(send_req(fc, "POST", "/v1/chat/completions", "x-sim-tokens: 3\r\n", CHAT_BODY), 0);
  ASSERT(WAIT_STATS(st, st.queued == 2));
  ASSERT_UINT_EQ(st.active, 1);
  resp_t a, b, c;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  memset(&c, 0, sizeof(c));
  ASSERT_EQ(resp_read(fa, &a), 1);
  ASSERT_EQ(resp_read(fb, &b), 1);
  ASSERT_EQ(resp_read(fc, &c), 1);
  close(fa);
  close(fb);
  close(fc);
  uint64_t a_last = last_stamp(&a), b_first = first_stamp(&b), b_last = last_stamp(&b),
           c_first = first_stamp(&c);
  ASSERT_GT(a_last, 0);
  ASSERT_GT(b_first, a_last); /* B got the slot only when A finished */
  ASSERT_GT(c_first, b_last); /* and C waited for B: FIFO */
  resp_free(&a);
  resp_free(&b);
  resp_free(&c);
  ASSERT(WAIT_STATS(st, st.completed == 3 && st.active == 0 && st.queued == 0));
  STOP();
}

static void test_keep_alive(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  START(&cfg);
  sl_sim_stats_t st0, st;
  ASSERT_EQ(get_stats(&st0), 0);
  int fd = tcp_connect(S.port, 0);
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 3; i++) {
    resp_t r;
    memset(&r, 0, sizeof(r));
    ASSERT_EQ(send_req(fd, "POST", "/v1/chat/completions", NULL, CHAT_BODY), 0);
    ASSERT_EQ(resp_read(fd, &r), 1);
    ASSERT_EQ(r.status, 200);
    sse_t s;
    sse_parse(r.body, r.blen, &s);
    ASSERT_EQ(s.done, 1);
    sse_free(&s);
    resp_free(&r);
  }
  close(fd);
  ASSERT_EQ(get_stats(&st), 0);
  ASSERT_UINT_EQ(st.requests, 3);
  ASSERT_UINT_EQ(st.completed, 3);
  /* one connection for the three requests, one for this stats call */
  ASSERT_UINT_EQ(st.connections_accepted, st0.connections_accepted + 2);
  STOP();
  ASSERT_UINT_EQ(S.final.connections_accepted, st.connections_accepted);
}

static void test_fast_mode_backpressure(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  START(&cfg);
  const int N = 50000; /* well past what loopback socket buffers absorb (tcp_wmem max 4 MiB) */
  int fd = tcp_connect(S.port, 4096);
  ASSERT_GE(fd, 0);
  char hdr[128];
  snprintf(hdr, sizeof(hdr), "x-sim-itl-ms: 0\r\nx-sim-ttft-ms: 0\r\nx-sim-tokens: %d\r\n", N);
  ASSERT_EQ(send_req(fd, "POST", "/v1/chat/completions", hdr,
                     "{\"model\":\"sim\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true}"),
            0);
  /* The client does not read: the engine must see its writes block and
   * stop there instead of queueing the whole stream. */
  sl_sim_stats_t st;
  ASSERT(WAIT_STATS(st, st.write_blocked >= 1));
  usleep(100 * 1000);
  ASSERT_EQ(get_stats(&st), 0);
  ASSERT_LT(st.tokens_sent, (uint64_t)N);
  ASSERT_LE(st.max_write_queue_bytes, 64 * 1024 + 4096);
  /* Now read it all: it resumes on drain and completes. */
  resp_t r;
  memset(&r, 0, sizeof(r));
  ASSERT_EQ(resp_read(fd, &r), 1);
  close(fd);
  sse_t s;
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(s.bad, 0);
  ASSERT_EQ(s.done, 1);
  ASSERT_EQ(count_tokens(&s, 1), N);
  sse_free(&s);
  resp_free(&r);
  ASSERT(WAIT_STATS(st, st.completed == 1));
  ASSERT_UINT_EQ(st.tokens_sent, (uint64_t)N);
  ASSERT_GE(st.write_blocked, 1);
  ASSERT_LE(st.max_write_queue_bytes, 64 * 1024 + 4096);
  STOP();
}

static void test_close_with_streams_in_flight(void) {
  sl_sim_config_t cfg;
  test_config(&cfg);
  cfg.slots = 2;
  START(&cfg);
  int fds[4];
  const char *hdrs[4] = {"x-sim-fault: stall\r\nx-sim-fault-at: 1\r\n", "x-sim-tokens: 100000\r\nx-sim-itl-ms: 5\r\n",
                         "x-sim-tokens: 5\r\n", "x-sim-split: 3\r\nx-sim-split-delay-ms: 50\r\n"};
  for (int i = 0; i < 4; i++) {
    fds[i] = tcp_connect(S.port, 0);
    ASSERT_GE(fds[i], 0);
    ASSERT_EQ(send_req(fds[i], "POST", "/v1/chat/completions", hdrs[i], CHAT_BODY), 0);
  }
  sl_sim_stats_t st;
  ASSERT(WAIT_STATS(st, st.active == 2 && st.queued == 2));
  STOP(); /* everything closes, nothing leaks (the sanitizer build checks) */
  ASSERT_UINT_EQ(S.final.active, 2);
  ASSERT_UINT_EQ(S.final.queued, 2);
  for (int i = 0; i < 4; i++) {
    resp_t r;
    memset(&r, 0, sizeof(r));
    resp_read(fds[i], &r);
    ASSERT_EQ(r.complete, 0);
    resp_free(&r);
    close(fds[i]);
  }
}

static void test_cli(void) {
  char *help[] = {"sim-engine", "--help", NULL};
  fflush(stdout);
  int saved = dup(1);
  int devnull = open("/dev/null", O_WRONLY);
  dup2(devnull, 1);
  int rc = sl_sim_engine_cli(2, help);
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  close(devnull);
  ASSERT_EQ(rc, 0);
  char *bad[] = {"sim-engine", "--slots", "zero", NULL};
  ASSERT_EQ(sl_sim_engine_cli(3, bad), 2);
  char *unknown[] = {"sim-engine", "--warp-speed", "9", NULL};
  ASSERT_EQ(sl_sim_engine_cli(3, unknown), 2);
  const char *bad_waves[] = {"16", "16,", "1,0.5", "16,1", "16,0.5x", ",0.5"};
  for (size_t i = 0; i < sizeof(bad_waves) / sizeof(bad_waves[0]); i++) {
    char *argv[] = {"sim-engine", "--itl-wave", (char *)bad_waves[i], NULL};
    ASSERT_EQ(sl_sim_engine_cli(3, argv), 2);
  }

  int pfd[2];
  ASSERT_EQ(pipe(pfd), 0);
  fflush(stderr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(pfd[0]);
    dup2(pfd[1], 2);
    char *argv[] = {"sim-engine", "--listen", "127.0.0.1:0", "--slots=2", "--itl-ms", "0.5",
                    "--model", "m1", "--model", "m2", "--seed", "9", NULL};
    exit(sl_sim_engine_cli(12, argv));
  }
  close(pfd[1]);
  char line[256];
  size_t got = 0;
  struct pollfd pf = {pfd[0], POLLIN, 0};
  while (got < sizeof(line) - 1 && memchr(line, '\n', got) == NULL) {
    if (poll(&pf, 1, 10000) <= 0) break;
    ssize_t n = read(pfd[0], line + got, sizeof(line) - 1 - got);
    if (n <= 0) break;
    got += (size_t)n;
  }
  line[got] = '\0';
  int port = 0;
  int parsed = sscanf(line, "sim-engine listening on 127.0.0.1:%d", &port);
  if (parsed != 1 || port <= 0) kill(pid, SIGKILL);
  ASSERT_EQ(parsed, 1);
  ASSERT_GT(port, 0);
  S.port = port;
  resp_t r;
  ASSERT_EQ(http("GET", "/v1/models", NULL, NULL, &r), 1);
  ASSERT_NOT_NULL(strstr(r.body, "\"m2\""));
  resp_free(&r);
  ASSERT_EQ(http("POST", "/v1/chat/completions", NULL,
                 "{\"model\":\"m1\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true,\"max_tokens\":20}",
                 &r), 1);
  sse_t s;
  sse_parse(r.body, r.blen, &s);
  ASSERT_EQ(count_tokens(&s, 1), 20);
  sse_free(&s);
  resp_free(&r);
  /* A stream in flight when the signal comes is cut; the exit is clean. */
  int fd = tcp_connect(port, 0);
  ASSERT_EQ(send_req(fd, "POST", "/v1/chat/completions", "x-sim-fault: stall\r\n",
                     "{\"model\":\"m2\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true}"), 0);
  usleep(50 * 1000);
  kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  close(fd);
  close(pfd[0]);
  ASSERT(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
}

/* Runs a test; if it failed with its engine still up, closes the engine so
 * the next test starts clean. */
#define RUN(fn)                             \
  do {                                      \
    SL_RUN(fn);                             \
    if (S.running) sim_stop();              \
  } while (0)

int main(void) {
  sl_alloc_init();
  signal(SIGPIPE, SIG_IGN);
  SL_RUN(test_config_json);
  SL_RUN(test_gap_schedule);
  RUN(test_stream_wave);
  RUN(test_stream_chat);
  RUN(test_stream_usage);
  RUN(test_stream_completions);
  RUN(test_non_stream_and_seed);
  RUN(test_script);
  RUN(test_errors_and_routes);
  RUN(test_fault_status);
  RUN(test_fault_reset);
  RUN(test_fault_error_event_close_garbage);
  RUN(test_fault_stall_and_client_close);
  RUN(test_split);
  RUN(test_stamp);
  RUN(test_slots_fifo);
  RUN(test_keep_alive);
  RUN(test_fast_mode_backpressure);
  RUN(test_close_with_streams_in_flight);
  RUN(test_cli);
  return SL_TEST_EXIT();
}
