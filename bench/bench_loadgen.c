/* bench_loadgen.c: a streaming load generator for OpenAI-compatible gateways.
 *
 * Opens N concurrent streaming chat requests (1 to 8,000) against any
 * OpenAI-compatible URL on loopback, closed-loop (each of N clients sends its
 * next request when the last one ended) or at a fixed rate, and measures
 * what the path between the engine and the client adds.  It relies on the
 * simulated engine's send stamps (`--stamp` or `x-sim-stamp: 1`): every
 * token's text ends with `[t=<uv_hrtime ns>]`, the engine's send time on the
 * same monotonic clock this program reads, and the stamp is inside the
 * content string so peers that re-serialize chunks keep it.
 *
 * Per token: added latency = receive time (uv_hrtime at the read that
 * delivered it) - stamp.  Per request: added TTFT = the same for the first
 * token (the engine's own TTFT is between the request's arrival and its
 * stamp, so it is not counted); client TTFT = first token's receive time -
 * the moment the request was started (connect included).  Coalescing: tokens
 * per client read that carried tokens (the engine writes one token per
 * write, so 1.0 is the floor).  With --pid, CPU time (se.sum_exec_runtime
 * over its threads, or utime + stime where the kernel lacks it) and VmRSS of
 * that process are sampled from /proc: CPU microseconds per relayed token
 * and RSS growth per open stream; and the read- and write-type system calls
 * it made, from the syscr and syscw fields of /proc/PID/io (the kernel
 * counts read/readv/pread there, and write/writev/pwrite; send, sendto,
 * sendmsg, recv, recvfrom and recvmsg are in neither): write calls per
 * relayed token, measured outside the process under test.  With
 * --duration-s, no request starts after that many seconds and the run ends
 * when the ones in flight have.  With --sim-port, the engine's
 * /sim/stats are read before and after, so tokens the engine sent can be
 * compared with tokens received.
 *
 * Modes:
 *   stream  (default) the load above;
 *   cancel  one stream at a time: after --cancel-after tokens the client
 *           closes its socket, and a tight poll of the engine's /sim/stats
 *           measures the time until client_closed_mid_stream increments
 *           (needs --sim-port), repeated --requests times;
 *   slow    one long stream read at a crawl (--slow-bytes every
 *           --slow-interval-ms, small SO_RCVBUF) for --slow-seconds while
 *           the RSS of --pid is sampled; reports how many tokens the engine
 *           sent that the client had not read yet (held by the path).
 *
 * Results go to stdout as one JSON object (and to --json FILE); --tsv FILE
 * appends one summary line, --cdf FILE writes the sorted added-latency
 * distribution for plots.  Decoding reuses runtime/upstream/upstream_decoder.h
 * (llhttp, SSE framing, OpenAI scan).  Times are nanoseconds inside,
 * milliseconds in the report.  Only loopback targets are accepted.
 *
 * Usage: bench_loadgen --url http://127.0.0.1:PORT/v1/chat/completions [options]
 *        (see usage() below)
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "runtime/upstream/upstream_decoder.h"

#define LG_MAX_STREAMS 8000
#define LG_JOIN 4096          /* largest SSE event joined across reads (the engine's are < 1 KiB) */
#define LG_READ_BUF 65536     /* shared read buffer */
#define LG_MAX_HEADERS 16

/* ---------------------------------------------------------------- options */

typedef struct {
  char host[64];
  int port;
  char path[256];
  const char *model;
  int streams;          /* concurrent clients (closed loop) or in-flight cap (rate) */
  long requests;        /* total requests */
  double rate;          /* requests per second; 0 = closed loop */
  int ramp_ms;          /* closed loop: first requests spread over this time */
  int max_tokens;       /* "max_tokens" in the body; 0 = not sent */
  const char *headers[LG_MAX_HEADERS];
  int nheaders;
  int pids[8];          /* processes under test (CPU and RSS are summed) */
  int npids;
  int sim_port;         /* engine for /sim/stats, 0 = none */
  double engine_ttft_ms;/* the engine's configured TTFT, for the request-path figure */
  const char *mode;     /* stream, cancel, slow */
  int cancel_after;     /* cancel: tokens read before closing */
  int cancel_timeout_ms;
  int slow_bytes;       /* slow: bytes per read */
  int slow_interval_ms; /* slow: pause between reads */
  double slow_seconds;  /* slow: how long to crawl */
  double timeout_s;     /* whole run */
  double duration_s;    /* stop starting requests after this long; 0 = run all --requests */
  int sample_ms;        /* RSS sampling period */
  const char *json_path, *tsv_path, *cdf_path, *label, *scenario;
  int quiet;
} lg_opts_t;

static lg_opts_t O;

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_loadgen --url http://127.0.0.1:PORT/PATH [options]\n"
          "  --model NAME            model in the body (default sim)\n"
          "  --streams N             concurrent streams, 1..%d (default 1)\n"
          "  --requests M            total requests (default: N)\n"
          "  --rate R                start R requests per second (open loop; N caps in-flight)\n"
          "  --ramp-ms MS            closed loop: spread the first N starts over MS\n"
          "  --max-tokens T          max_tokens in the request body\n"
          "  --header 'K: V'         extra request header (repeatable)\n"
          "  --pid PID               sample CPU and RSS of PID (repeatable; summed)\n"
          "  --sim-port PORT         the simulated engine (loopback) for /sim/stats\n"
          "  --engine-ttft-ms MS     the engine's configured TTFT (reported path overhead)\n"
          "  --mode stream|cancel|slow\n"
          "  --cancel-after K        cancel: tokens read before closing (default 5)\n"
          "  --cancel-timeout-ms MS  cancel: give up waiting for the engine (default 3000)\n"
          "  --slow-bytes B --slow-interval-ms MS --slow-seconds S   slow reader\n"
          "  --duration-s S          start no request after S seconds; in-flight ones finish\n"
          "  --timeout-s S           whole run (default 120)\n"
          "  --json FILE --tsv FILE --cdf FILE --label L --scenario S --quiet\n"
          "bench_loadgen --free-port   prints a port free on 127.0.0.1 now\n",
          LG_MAX_STREAMS);
}

static int is_loopback(const char *h) {
  return strcmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0;
}

static int parse_url(const char *url) {
  const char *p = url;
  if (strncmp(p, "http://", 7) != 0) return -1;
  p += 7;
  const char *colon = strchr(p, ':');
  const char *slash = strchr(p, '/');
  if (!colon || (slash && slash < colon)) return -1;
  size_t hl = (size_t)(colon - p);
  if (hl == 0 || hl >= sizeof(O.host)) return -1;
  memcpy(O.host, p, hl);
  O.host[hl] = 0;
  if (strcmp(O.host, "localhost") == 0) strcpy(O.host, "127.0.0.1");
  O.port = atoi(colon + 1);
  if (O.port <= 0 || O.port > 65535) return -1;
  snprintf(O.path, sizeof(O.path), "%s", slash ? slash : "/v1/chat/completions");
  return is_loopback(O.host) ? 0 : -2;
}

/* ---------------------------------------------------------------- samples */

typedef struct {
  double *v; /* values in ms */
  size_t n, cap;
} lg_samples_t;

static void samples_add(lg_samples_t *s, double x) {
  if (s->n == s->cap) {
    size_t nc = s->cap ? s->cap * 2 : 4096;
    double *nv = realloc(s->v, nc * sizeof(double));
    if (!nv) return; /* out of memory: drop the sample rather than abort the run */
    s->v = nv;
    s->cap = nc;
  }
  s->v[s->n++] = x;
}

static int cmp_dbl(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank quantile over sorted values; NaN when empty. */
static double quantile(const lg_samples_t *s, double q) {
  if (s->n == 0) return NAN;
  size_t i = (size_t)ceil(q * (double)s->n);
  if (i > 0) i--;
  if (i >= s->n) i = s->n - 1;
  return s->v[i];
}

static double mean_of(const lg_samples_t *s) {
  if (s->n == 0) return NAN;
  double t = 0;
  for (size_t i = 0; i < s->n; i++) t += s->v[i];
  return t / (double)s->n;
}

/* ---------------------------------------------------------------- /proc */

/* CPU time of one process from /proc/PID/stat (utime + stime): clock ticks,
 * usually 10 ms.  Returns microseconds or -1. */
static int64_t stat_cpu_us(int pid) {
  char path[64], buf[2048];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  /* Fields after the command name, which may hold spaces: start after the last ')'. */
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  unsigned long long ut = 0, st = 0;
  /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
  return (int64_t)((ut + st) * 1000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK));
}

/* The same with microsecond resolution: the sum of se.sum_exec_runtime (ms
 * with 6 decimals) over the process's threads, from /proc/PID/task/TID/sched
 * (kernels with CONFIG_SCHED_DEBUG).  Returns microseconds or -1. */
static int64_t sched_cpu_us(int pid) {
  char path[96], line[256];
  snprintf(path, sizeof(path), "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (!d) return -1;
  double ms = 0;
  int found = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof(path), "/proc/%d/task/%.16s/sched", pid, e->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue;
    while (fgets(line, sizeof(line), f))
      if (strncmp(line, "se.sum_exec_runtime", 19) == 0) {
        char *c = strchr(line, ':');
        if (c) {
          ms += atof(c + 1);
          found = 1;
        }
        break;
      }
    fclose(f);
  }
  closedir(d);
  return found ? (int64_t)(ms * 1000.0) : -1;
}

static int cpu_fine = -1; /* 1: sched (µs), 0: stat (ticks); chosen at the first read */

static int64_t proc_cpu_us(void) {
  int64_t total = 0;
  for (int i = 0; i < O.npids; i++) {
    if (cpu_fine < 0) cpu_fine = sched_cpu_us(O.pids[i]) >= 0;
    int64_t v = cpu_fine ? sched_cpu_us(O.pids[i]) : stat_cpu_us(O.pids[i]);
    if (v < 0) return -1;
    total += v;
  }
  return total;
}

static int64_t proc_rss_kb(void) {
  int64_t total = 0;
  for (int i = 0; i < O.npids; i++) {
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", O.pids[i]);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long long kb = -1;
    while (fgets(line, sizeof(line), f))
      if (strncmp(line, "VmRSS:", 6) == 0) {
        kb = atoll(line + 6);
        break;
      }
    fclose(f);
    if (kb < 0) return -1;
    total += kb;
  }
  return total;
}

/* Read- and write-type system calls of the processes under test, summed:
 * the syscr and syscw fields of /proc/PID/io (all threads of the process).
 * Returns 0, or -1 when a file cannot be read (another user's process
 * without ptrace rights, a kernel without task I/O accounting). */
static int proc_syscalls(int64_t *r, int64_t *w) {
  int64_t tr = 0, tw = 0;
  for (int i = 0; i < O.npids; i++) {
    char path[64], line[128];
    snprintf(path, sizeof(path), "/proc/%d/io", O.pids[i]);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long long vr = -1, vw = -1;
    while (fgets(line, sizeof(line), f)) {
      if (strncmp(line, "syscr:", 6) == 0) vr = atoll(line + 6);
      else if (strncmp(line, "syscw:", 6) == 0) vw = atoll(line + 6);
    }
    fclose(f);
    if (vr < 0 || vw < 0) return -1;
    tr += vr;
    tw += vw;
  }
  *r = tr;
  *w = tw;
  return 0;
}

/* ---------------------------------------------------------------- engine stats (blocking) */

/* A kept-alive blocking connection to the engine's /sim/stats, used before
 * and after a run and for the tight poll of the cancel mode. */
static int sim_fd = -1;

static int sim_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)O.sim_port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

/* Reads one /sim/stats document into *out (cJSON_Delete it).  Returns 0 or -1. */
static int sim_stats(cJSON **out) {
  static const char req[] = "GET /sim/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  for (int attempt = 0; attempt < 2; attempt++) {
    if (sim_fd < 0 && (sim_fd = sim_connect()) < 0) return -1;
    if (write(sim_fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) goto retry;
    char buf[4096];
    size_t len = 0;
    long clen = -1;
    char *body = NULL;
    for (;;) {
      struct pollfd pfd = {sim_fd, POLLIN, 0};
      if (poll(&pfd, 1, 2000) <= 0) goto retry;
      ssize_t n = read(sim_fd, buf + len, sizeof(buf) - 1 - len);
      if (n <= 0) goto retry;
      len += (size_t)n;
      buf[len] = 0;
      if (!body) {
        char *e = strstr(buf, "\r\n\r\n");
        if (e) {
          body = e + 4;
          char *cl = strcasestr(buf, "content-length:");
          if (!cl || cl > e) goto retry;
          clen = atol(cl + 15);
        }
      }
      if (body && (long)(buf + len - body) >= clen) break;
      if (len >= sizeof(buf) - 1) goto retry;
    }
    *out = cJSON_ParseWithLength(body, (size_t)clen);
    return *out ? 0 : -1;
  retry:
    close(sim_fd);
    sim_fd = -1;
  }
  return -1;
}

static int64_t json_num(const cJSON *doc, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, name);
  return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

static int64_t sim_stat(const char *name) {
  cJSON *doc;
  if (O.sim_port <= 0 || sim_stats(&doc) < 0) return -1;
  int64_t v = json_num(doc, name);
  cJSON_Delete(doc);
  return v;
}

/* ---------------------------------------------------------------- run state */

enum { ERR_CONNECT, ERR_STATUS, ERR_PROTOCOL, ERR_EOF, ERR_ERROR_EVENT, ERR_NO_DONE, ERR_TIMEOUT, ERR_NKINDS };
static const char *err_names[ERR_NKINDS] = {"connect", "http_status", "protocol", "eof_mid_stream",
                                            "error_event", "no_done", "timeout"};

typedef struct lg_conn_s {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  int slot;              /* the client this connection belongs to */
  int open;              /* connected and not closing */
  int closing;
  int in_request;        /* a request is in flight on it */
  int cancelled;         /* cancel mode: closed on purpose */
  sl_updec_t dec;
  char join[LG_JOIN];
  uint64_t t_start;      /* request started (before connect, for a new connection) */
  uint64_t now;          /* receive time of the read being decoded */
  long tokens;           /* content tokens of this request */
  long reads_tok;        /* reads that carried at least one token */
  long tokens_this_read;
  int got_first;
  int error_event;
} lg_conn_t;

typedef struct {
  lg_conn_t *conn;       /* current connection, or NULL */
  int busy;              /* a request is in flight */
} lg_slot_t;

static struct {
  uv_loop_t *loop;
  uv_timer_t tick, sampler, deadline, slow_timer, slow_end;
  lg_slot_t *slots;
  int *free_slots;
  int nfree;
  char *req;             /* the request bytes, shared by every write */
  size_t req_len;
  uint64_t t0, t_end;
  long started, finished, ok, ramp_started;
  long errors[ERR_NKINDS];
  long open_streams, max_open;
  long tokens, reads_tok, unstamped;
  lg_samples_t itl, ttft_added, ttft_client;
  int stopping;
  /* /proc sampling */
  int64_t cpu0, cpu1, rss0, rss_peak, rss_last;
  int64_t syscr0, syscw0, syscr1, syscw1;
  int sysc_ok;           /* both syscall readings succeeded */
  long open_at_peak;
  /* engine */
  int64_t sim_tokens0, sim_tokens1, sim_closed0, sim_closed1, sim_blocked0, sim_blocked1;
  /* cancel mode */
  lg_samples_t cancel;
  long cancel_timeouts;
  double poll_rtt_total_ms;
  long polls;
  /* slow mode */
  lg_conn_t *slow_conn;
  uint64_t slow_t0;
  int64_t slow_sim_tokens_at_end;
  long slow_tokens_at_end;
  int64_t slow_rss_at_end;
} G;

static char rbuf[LG_READ_BUF];

static void start_request(int slot);
static void conn_close(lg_conn_t *c);
static void finish_run(void);

static int mode_is(const char *m) { return strcmp(O.mode, m) == 0; }

/* --duration-s: once it has passed, the requests started so far are all
 * there will be (the run ends when they have finished). */
static void duration_check(void) {
  if (O.duration_s > 0 && G.started < O.requests && (double)(uv_hrtime() - G.t0) / 1e9 >= O.duration_s)
    O.requests = G.started > 0 ? G.started : 1;
}

/* Parses the trailing "[t=<ns>]" of a token's (JSON-escaped) text. */
static int stamp_of(const sl_span_t *t, uint64_t *out) {
  if (t->n < 5 || t->p[t->n - 1] != ']') return 0;
  size_t i = t->n - 1;
  uint64_t v = 0, mul = 1;
  int digits = 0;
  while (i > 0 && t->p[i - 1] >= '0' && t->p[i - 1] <= '9' && digits < 20) {
    v += (uint64_t)(t->p[i - 1] - '0') * mul;
    mul *= 10;
    i--;
    digits++;
  }
  if (digits == 0 || i < 3 || memcmp(t->p + i - 3, "[t=", 3) != 0) return 0;
  *out = v;
  return 1;
}

static int on_event(void *ud, const sl_event_t *ev) {
  lg_conn_t *c = ud;
  if (ev->kind == SL_EV_ERROR) {
    c->error_event = 1;
    return 0;
  }
  if (ev->kind != SL_EV_CHUNK || !ev->has_text || ev->text.n == 0) return 0;
  c->tokens++;
  c->tokens_this_read++;
  G.tokens++;
  uint64_t stamp;
  if (!stamp_of(&ev->text, &stamp)) {
    G.unstamped++;
    return 0;
  }
  double lat_ms = ((double)c->now - (double)stamp) / 1e6;
  if (!c->got_first) {
    c->got_first = 1;
    samples_add(&G.ttft_added, lat_ms);
    samples_add(&G.ttft_client, ((double)c->now - (double)c->t_start) / 1e6);
  } else {
    samples_add(&G.itl, lat_ms);
  }
  return 0;
}

/* ---------------------------------------------------------------- request life */

static void request_done(lg_conn_t *c, int err_kind) {
  if (!c->in_request) return;
  c->in_request = 0;
  G.open_streams--;
  G.finished++;
  if (err_kind < 0) G.ok++;
  else G.errors[err_kind]++;
  G.reads_tok += c->reads_tok;
  lg_slot_t *s = &G.slots[c->slot];
  s->busy = 0;
  if (G.stopping) return;
  duration_check();
  if (G.finished >= O.requests) {
    finish_run();
    return;
  }
  if (mode_is("stream") && O.rate <= 0 && G.started < O.requests) {
    start_request(c->slot); /* closed loop: the same client goes again */
  } else {
    G.free_slots[G.nfree++] = c->slot;
  }
}

static void on_close(uv_handle_t *h) {
  lg_conn_t *c = h->data;
  free(c);
}

static void conn_close(lg_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  c->open = 0;
  if (G.slots[c->slot].conn == c) G.slots[c->slot].conn = NULL;
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  size_t n = LG_READ_BUF;
  if (mode_is("slow") && O.slow_bytes > 0 && (size_t)O.slow_bytes < n) n = (size_t)O.slow_bytes;
  *buf = uv_buf_init(rbuf, (unsigned)n);
}

static void cancel_measure(lg_conn_t *c);
static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void slow_resume(uv_timer_t *t) {
  (void)t;
  lg_conn_t *c = G.slow_conn;
  if (c && c->open) uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  lg_conn_t *c = st->data;
  if (nread == 0) return;
  if (nread < 0) {
    int kind = ERR_EOF;
    if (c->in_request) {
      int rc = sl_updec_eof(&c->dec);
      if (rc == 0 && c->dec.message_done) kind = (c->dec.saw_done && c->dec.status == 200) ? -1 : ERR_NO_DONE;
    }
    request_done(c, kind);
    conn_close(c);
    return;
  }
  if (!c->in_request) { /* bytes outside a request: the server misbehaved */
    conn_close(c);
    return;
  }
  c->now = uv_hrtime();
  c->tokens_this_read = 0;
  int rc = sl_updec_feed(&c->dec, buf->base, (size_t)nread, on_event, c);
  if (c->tokens_this_read > 0) c->reads_tok++;
  if (rc < 0) {
    if (!O.quiet) fprintf(stderr, "bench_loadgen: decode error: %s\n", c->dec.errmsg);
    request_done(c, ERR_PROTOCOL);
    conn_close(c);
    return;
  }
  if (mode_is("cancel") && c->tokens >= O.cancel_after) {
    cancel_measure(c);
    return;
  }
  if (c->dec.message_done) {
    int kind = -1;
    if (c->dec.status != 200) kind = ERR_STATUS;
    else if (c->error_event) kind = ERR_ERROR_EVENT;
    else if (!c->dec.saw_done) kind = ERR_NO_DONE;
    if (kind == ERR_STATUS && !O.quiet && G.errors[ERR_STATUS] < 3)
      fprintf(stderr, "bench_loadgen: HTTP %d: %.*s\n", c->dec.status, (int)c->dec.body_len, c->dec.body);
    int keep = c->dec.keep_alive;
    if (keep) sl_updec_reset(&c->dec);
    else conn_close(c);
    request_done(c, kind);
    return;
  }
  if (mode_is("slow") && c->open) {
    uv_read_stop(st);
    uv_timer_start(&G.slow_timer, slow_resume, (uint64_t)O.slow_interval_ms, 0);
  }
}

static void write_cb(uv_write_t *w, int status) {
  lg_conn_t *c = w->data;
  if (status < 0 && !c->closing) {
    request_done(c, ERR_CONNECT);
    conn_close(c);
  }
}

static void send_request(lg_conn_t *c) {
  uv_buf_t b = uv_buf_init(G.req, (unsigned)G.req_len);
  c->wreq.data = c;
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb) < 0) {
    request_done(c, ERR_CONNECT);
    conn_close(c);
  }
}

static void connect_cb(uv_connect_t *r, int status) {
  lg_conn_t *c = r->data;
  if (c->closing) return;
  if (status < 0) {
    if (!O.quiet && G.errors[ERR_CONNECT] < 3) fprintf(stderr, "bench_loadgen: connect: %s\n", uv_strerror(status));
    request_done(c, ERR_CONNECT);
    conn_close(c);
    return;
  }
  c->open = 1;
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
  send_request(c);
}

static lg_conn_t *conn_new(int slot) {
  lg_conn_t *c = calloc(1, sizeof(*c));
  if (!c) return NULL;
  c->slot = slot;
  sl_updec_init(&c->dec, c->join, sizeof(c->join));
  uv_tcp_init(G.loop, &c->tcp);
  c->tcp.data = c;
  c->creq.data = c;
  if (mode_is("slow")) {
    /* A small receive buffer so the client's kernel does not read ahead on its behalf. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int rcv = 4096;
    if (fd >= 0) {
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
      uv_tcp_open(&c->tcp, fd);
    }
  }
  uv_tcp_nodelay(&c->tcp, 1);
  return c;
}

static void start_request(int slot) {
  lg_slot_t *s = &G.slots[slot];
  s->busy = 1;
  G.started++;
  G.open_streams++;
  if (G.open_streams > G.max_open) G.max_open = G.open_streams;
  lg_conn_t *c = s->conn;
  if (c && c->open && !c->closing) {
    c->t_start = uv_hrtime();
    c->in_request = 1;
    c->tokens = c->reads_tok = 0;
    c->got_first = c->error_event = 0;
    send_request(c);
    return;
  }
  c = conn_new(slot);
  if (!c) {
    G.open_streams--;
    G.finished++;
    G.errors[ERR_CONNECT]++;
    s->busy = 0;
    G.free_slots[G.nfree++] = slot;
    return;
  }
  s->conn = c;
  c->t_start = uv_hrtime();
  c->in_request = 1;
  struct sockaddr_in a;
  uv_ip4_addr(O.host, O.port, &a);
  if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&a, connect_cb) < 0) {
    request_done(c, ERR_CONNECT);
    conn_close(c);
  }
}

/* ---------------------------------------------------------------- cancel mode */

/* Called once the stream has delivered cancel_after tokens: close the
 * socket, then poll the engine until it has seen the close (or give up). */
static void cancel_measure(lg_conn_t *c) {
  int64_t before = sim_stat("client_closed_mid_stream");
  c->cancelled = 1;
  uint64_t t_close = uv_hrtime();
  conn_close(c); /* uv_close closes the descriptor now; only the callback is deferred */
  int seen = 0;
  uint64_t deadline = t_close + (uint64_t)O.cancel_timeout_ms * 1000000ULL;
  while (before >= 0) {
    uint64_t ts = uv_hrtime();
    int64_t v = sim_stat("client_closed_mid_stream");
    uint64_t tr = uv_hrtime();
    G.poll_rtt_total_ms += (double)(tr - ts) / 1e6;
    G.polls++;
    if (v > before) {
      samples_add(&G.cancel, (double)(tr - t_close) / 1e6);
      seen = 1;
      break;
    }
    if (v < 0 || tr > deadline) break;
  }
  if (!seen) G.cancel_timeouts++;
  /* The request counts as finished and successful for the load's accounting. */
  request_done(c, -1);
}

/* ---------------------------------------------------------------- timers */

static void tick_cb(uv_timer_t *t) {
  (void)t;
  if (G.stopping) return;
  duration_check();
  uint64_t now = uv_hrtime();
  double el_ms = (double)(now - G.t0) / 1e6;
  if (O.rate > 0) {
    long target = (long)(O.rate * el_ms / 1000.0) + 1;
    while (G.started < target && G.started < O.requests && G.nfree > 0) start_request(G.free_slots[--G.nfree]);
  } else if (mode_is("stream")) {
    /* Closed loop: the first request of client i starts at i * ramp / N. */
    while (G.ramp_started < O.streams && G.started < O.requests) {
      double at = O.ramp_ms > 0 ? (double)O.ramp_ms * (double)G.ramp_started / (double)O.streams : 0;
      if (at > el_ms) break;
      G.ramp_started++;
      start_request((int)G.ramp_started - 1);
    }
  } else if (mode_is("cancel")) {
    /* One at a time, a short pause between them. */
    if (G.open_streams == 0 && G.started < O.requests && G.nfree > 0) start_request(G.free_slots[--G.nfree]);
  }
}

static void sample_cb(uv_timer_t *t) {
  (void)t;
  int64_t rss = proc_rss_kb();
  if (rss < 0) return;
  G.rss_last = rss;
  if (rss > G.rss_peak) {
    G.rss_peak = rss;
    G.open_at_peak = G.open_streams;
  }
}

static void deadline_cb(uv_timer_t *t) {
  (void)t;
  if (!O.quiet) fprintf(stderr, "bench_loadgen: run timeout, %ld requests unfinished\n", G.started - G.finished + (O.requests - G.started));
  G.errors[ERR_TIMEOUT] += O.requests - G.finished;
  finish_run();
}

static void slow_end_cb(uv_timer_t *t) {
  (void)t;
  /* Take the figures while the stream is still open and held back. */
  if (O.npids) sample_cb(NULL);
  G.slow_rss_at_end = G.rss_last;
  G.slow_sim_tokens_at_end = sim_stat("tokens_sent");
  G.slow_tokens_at_end = G.tokens;
  lg_conn_t *c = G.slots[0].conn;
  if (c) {
    request_done(c, -1);
    conn_close(c);
  } else {
    finish_run();
  }
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h)) return;
  if (h->type == UV_TCP) conn_close(h->data);
  else uv_close(h, NULL);
}

static void finish_run(void) {
  if (G.stopping) return;
  G.stopping = 1;
  G.t_end = uv_hrtime();
  if (O.npids) {
    sample_cb(NULL);
    G.cpu1 = proc_cpu_us();
    if (G.sysc_ok && proc_syscalls(&G.syscr1, &G.syscw1) < 0) G.sysc_ok = 0;
  }
  uv_walk(G.loop, close_walk, NULL);
}

/* ---------------------------------------------------------------- report */

/* A JSON number with 4 decimals, or null when x is not finite (no samples). */
static const char *jnum(char *buf, double x) {
  if (!isfinite(x)) return "null";
  snprintf(buf, 40, "%.4f", x);
  return buf;
}

static void put_dist(FILE *f, const char *name, lg_samples_t *s) {
  char a[40], b[40], c[40], d[40], e[40];
  qsort(s->v, s->n, sizeof(double), cmp_dbl);
  fprintf(f, "\"%s\":{\"n\":%zu,\"mean\":%s,\"p50\":%s,\"p90\":%s,\"p99\":%s,\"max\":%s}", name, s->n,
          jnum(a, mean_of(s)), jnum(b, quantile(s, 0.5)), jnum(c, quantile(s, 0.9)), jnum(d, quantile(s, 0.99)),
          jnum(e, quantile(s, 1.0)));
}

static void report(FILE *f) {
  double secs = (double)(G.t_end - G.t0) / 1e9;
  long errors = 0;
  for (int i = 0; i < ERR_NKINDS; i++) errors += G.errors[i];
  fprintf(f, "{\"label\":\"%s\",\"scenario\":\"%s\",\"mode\":\"%s\",\"url\":\"http://%s:%d%s\",", O.label,
          O.scenario, O.mode, O.host, O.port, O.path);
  fprintf(f, "\"streams\":%d,\"requests\":%ld,\"rate\":%g,\"max_tokens\":%d,", O.streams, O.requests, O.rate,
          O.max_tokens);
  fprintf(f, "\"seconds\":%.3f,\"ok\":%ld,\"errors\":%ld,\"error_kinds\":{", secs, G.ok, errors);
  for (int i = 0; i < ERR_NKINDS; i++) fprintf(f, "%s\"%s\":%ld", i ? "," : "", err_names[i], G.errors[i]);
  fprintf(f, "},\"tokens\":%ld,\"unstamped_tokens\":%ld,\"tokens_per_s\":%.1f,", G.tokens, G.unstamped,
          secs > 0 ? (double)G.tokens / secs : 0.0);
  fprintf(f, "\"max_open_streams\":%ld,\"client_reads_with_tokens\":%ld,\"tokens_per_read\":%.4f,", G.max_open,
          G.reads_tok, G.reads_tok ? (double)G.tokens / (double)G.reads_tok : 0.0);
  fprintf(f, "\"coalescing_ratio\":%.4f,", G.reads_tok ? (double)G.tokens / (double)G.reads_tok / 1.0 : 0.0);
  put_dist(f, "added_ttft_ms", &G.ttft_added);
  fputc(',', f);
  put_dist(f, "added_itl_ms", &G.itl);
  fputc(',', f);
  put_dist(f, "client_ttft_ms", &G.ttft_client);
  if (O.engine_ttft_ms > 0 && G.ttft_client.n)
    fprintf(f, ",\"request_path_ms_p50\":%.4f", quantile(&G.ttft_client, 0.5) - O.engine_ttft_ms);
  if (O.npids) {
    double cpu_us = (double)(G.cpu1 - G.cpu0);
    fprintf(f, ",\"proc\":{\"cpu_source\":\"%s\",\"cpu_us\":%.0f,\"cpu_us_per_token\":%.4f,\"cpu_share\":%.4f,",
            cpu_fine == 1 ? "sched" : "stat", cpu_us, G.tokens ? cpu_us / (double)G.tokens : 0.0,
            secs > 0 ? cpu_us / 1e6 / secs : 0.0);
    fprintf(f, "\"rss_base_kb\":%lld,\"rss_peak_kb\":%lld,\"open_at_peak\":%ld,\"rss_kb_per_stream\":%.2f",
            (long long)G.rss0, (long long)G.rss_peak, G.open_at_peak,
            G.max_open ? (double)(G.rss_peak - G.rss0) / (double)G.max_open : 0.0);
    if (G.sysc_ok)
      fprintf(f, ",\"syscr\":%lld,\"syscw\":%lld,\"syscr_per_token\":%.4f,\"syscw_per_token\":%.4f",
              (long long)(G.syscr1 - G.syscr0), (long long)(G.syscw1 - G.syscw0),
              G.tokens ? (double)(G.syscr1 - G.syscr0) / (double)G.tokens : 0.0,
              G.tokens ? (double)(G.syscw1 - G.syscw0) / (double)G.tokens : 0.0);
    fputc('}', f);
  }
  if (O.sim_port > 0) {
    fprintf(f, ",\"engine\":{\"tokens_sent\":%lld,\"client_closed_mid_stream\":%lld,\"write_blocked\":%lld}",
            (long long)(G.sim_tokens1 - G.sim_tokens0), (long long)(G.sim_closed1 - G.sim_closed0),
            (long long)(G.sim_blocked1 - G.sim_blocked0));
  }
  if (mode_is("cancel")) {
    fputc(',', f);
    put_dist(f, "cancel_ms", &G.cancel);
    fprintf(f, ",\"cancel_not_seen\":%ld,\"poll_rtt_ms\":%.4f", G.cancel_timeouts,
            G.polls ? G.poll_rtt_total_ms / (double)G.polls : 0.0);
  }
  if (mode_is("slow")) {
    fprintf(f, ",\"slow\":{\"seconds\":%g,\"tokens_read\":%ld,\"engine_tokens_sent\":%lld,\"tokens_held\":%lld,",
            O.slow_seconds, G.slow_tokens_at_end, (long long)(G.slow_sim_tokens_at_end - G.sim_tokens0),
            (long long)(G.slow_sim_tokens_at_end - G.sim_tokens0 - G.slow_tokens_at_end));
    fprintf(f, "\"rss_base_kb\":%lld,\"rss_peak_kb\":%lld,\"rss_end_kb\":%lld,\"rss_growth_kb\":%lld}",
            (long long)G.rss0, (long long)G.rss_peak, (long long)G.slow_rss_at_end,
            (long long)(G.rss_peak - G.rss0));
  }
  fprintf(f, "}\n");
}

static void report_tsv(FILE *f) {
  double secs = (double)(G.t_end - G.t0) / 1e9;
  long errors = 0;
  for (int i = 0; i < ERR_NKINDS; i++) errors += G.errors[i];
  /* label scenario mode streams requests ok errors tokens tok/s
   * ttft_p50 ttft_p99 itl_p50 itl_p90 itl_p99 itl_max tokens_per_read
   * cpu_us_per_token rss_base_kb rss_peak_kb rss_kb_per_stream
   * cancel_p50 cancel_p99 cancel_not_seen slow_tokens_held slow_rss_growth_kb
   * client_ttft_p50 engine_tokens_sent engine_write_blocked
   * syscw_per_token syscr_per_token */
  double cpt = (O.npids && G.tokens) ? (double)(G.cpu1 - G.cpu0) / (double)G.tokens : NAN;
  double kps = (O.npids && G.max_open) ? (double)(G.rss_peak - G.rss0) / (double)G.max_open : NAN;
  fprintf(f,
          "%s\t%s\t%s\t%d\t%ld\t%ld\t%ld\t%ld\t%.1f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%lld\t%lld\t%.2f\t",
          O.label, O.scenario, O.mode, O.streams, O.requests, G.ok, errors, G.tokens,
          secs > 0 ? (double)G.tokens / secs : 0.0, quantile(&G.ttft_added, 0.5), quantile(&G.ttft_added, 0.99),
          quantile(&G.itl, 0.5), quantile(&G.itl, 0.9), quantile(&G.itl, 0.99), quantile(&G.itl, 1.0),
          G.reads_tok ? (double)G.tokens / (double)G.reads_tok : NAN, cpt, (long long)(O.npids ? G.rss0 : -1),
          (long long)(O.npids ? G.rss_peak : -1), kps);
  if (mode_is("cancel"))
    fprintf(f, "%.4f\t%.4f\t%ld\t", quantile(&G.cancel, 0.5), quantile(&G.cancel, 0.99), G.cancel_timeouts);
  else fprintf(f, "nan\tnan\t-1\t");
  if (mode_is("slow"))
    fprintf(f, "%lld\t%lld\t", (long long)(G.slow_sim_tokens_at_end - G.sim_tokens0 - G.slow_tokens_at_end),
            (long long)(G.rss_peak - G.rss0));
  else fprintf(f, "-1\t-1\t");
  int sysc = O.npids && G.sysc_ok && G.tokens;
  fprintf(f, "%.4f\t%lld\t%lld\t%.4f\t%.4f\n", quantile(&G.ttft_client, 0.5),
          (long long)(O.sim_port > 0 ? G.sim_tokens1 - G.sim_tokens0 : -1),
          (long long)(O.sim_port > 0 ? G.sim_blocked1 - G.sim_blocked0 : -1),
          sysc ? (double)(G.syscw1 - G.syscw0) / (double)G.tokens : NAN,
          sysc ? (double)(G.syscr1 - G.syscr0) / (double)G.tokens : NAN);
}

static void write_cdf(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f) return;
  /* At most ~2,000 points: the sorted samples thinned evenly, then the max. */
  size_t n = G.itl.n, step = n > 2000 ? n / 2000 : 1;
  fprintf(f, "# added per-token latency after the first token (ms)\tcumulative fraction\n");
  for (size_t i = 0; i < n; i += step) fprintf(f, "%.5f\t%.6f\n", G.itl.v[i], (double)(i + 1) / (double)n);
  if (n) fprintf(f, "%.5f\t1.0\n", G.itl.v[n - 1]);
  fclose(f);
}

/* ---------------------------------------------------------------- main */

static int build_request(void) {
  char body[1024];
  int bl = snprintf(body, sizeof(body),
                    "{\"model\":\"%s\",\"stream\":true,%s%.0d%s\"messages\":[{\"role\":\"user\",\"content\":"
                    "\"Tell me about rivers.\"}]}",
                    O.model, O.max_tokens > 0 ? "\"max_tokens\":" : "", O.max_tokens, O.max_tokens > 0 ? "," : "");
  size_t cap = 4096 + (size_t)bl;
  G.req = malloc(cap);
  if (!G.req) return -1;
  size_t n = (size_t)snprintf(G.req, cap,
                              "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                              "Accept: text/event-stream\r\nAuthorization: Bearer bench\r\nContent-Length: %d\r\n",
                              O.path, O.host, O.port, bl);
  for (int i = 0; i < O.nheaders; i++) n += (size_t)snprintf(G.req + n, cap - n, "%s\r\n", O.headers[i]);
  n += (size_t)snprintf(G.req + n, cap - n, "\r\n%s", body);
  if (n >= cap) return -1;
  G.req_len = n;
  return 0;
}

/* Prints a port that is free on 127.0.0.1 right now (for scripts that must
 * give a peer a fixed port).  Returns 0 or 1. */
static int print_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a;
  socklen_t al = sizeof(a);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || getsockname(fd, (struct sockaddr *)&a, &al) < 0) {
    if (fd >= 0) close(fd);
    return 1;
  }
  printf("%d\n", ntohs(a.sin_port));
  close(fd);
  return 0;
}

static void raise_nofile(void) {
  struct rlimit r;
  if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
}

int main(int argc, char **argv) {
  O.model = "sim";
  O.streams = 1;
  O.requests = -1;
  O.mode = "stream";
  O.cancel_after = 5;
  O.cancel_timeout_ms = 3000;
  O.slow_bytes = 1024;
  O.slow_interval_ms = 10;
  O.slow_seconds = 5;
  O.timeout_s = 120;
  O.sample_ms = 50;
  O.label = "run";
  O.scenario = "";
  const char *url = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (i++, 1))
    if (OPT("--url")) url = v;
    else if (OPT("--model")) O.model = v;
    else if (OPT("--streams")) O.streams = atoi(v);
    else if (OPT("--requests")) O.requests = atol(v);
    else if (OPT("--rate")) O.rate = atof(v);
    else if (OPT("--ramp-ms")) O.ramp_ms = atoi(v);
    else if (OPT("--max-tokens")) O.max_tokens = atoi(v);
    else if (OPT("--header")) {
      if (O.nheaders < LG_MAX_HEADERS) O.headers[O.nheaders++] = v;
    } else if (OPT("--pid")) {
      if (O.npids < 8 && atoi(v) > 0) O.pids[O.npids++] = atoi(v);
    } else if (OPT("--sim-port")) O.sim_port = atoi(v);
    else if (OPT("--engine-ttft-ms")) O.engine_ttft_ms = atof(v);
    else if (OPT("--mode")) O.mode = v;
    else if (OPT("--cancel-after")) O.cancel_after = atoi(v);
    else if (OPT("--cancel-timeout-ms")) O.cancel_timeout_ms = atoi(v);
    else if (OPT("--slow-bytes")) O.slow_bytes = atoi(v);
    else if (OPT("--slow-interval-ms")) O.slow_interval_ms = atoi(v);
    else if (OPT("--slow-seconds")) O.slow_seconds = atof(v);
    else if (OPT("--timeout-s")) O.timeout_s = atof(v);
    else if (OPT("--duration-s")) O.duration_s = atof(v);
    else if (OPT("--sample-ms")) O.sample_ms = atoi(v);
    else if (OPT("--json")) O.json_path = v;
    else if (OPT("--tsv")) O.tsv_path = v;
    else if (OPT("--cdf")) O.cdf_path = v;
    else if (OPT("--label")) O.label = v;
    else if (OPT("--scenario")) O.scenario = v;
    else if (strcmp(a, "--quiet") == 0) O.quiet = 1;
    else if (strcmp(a, "--free-port") == 0) return print_free_port();
    else if (strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "bench_loadgen: unknown or incomplete option %s\n", a);
      usage(stderr);
      return 2;
    }
#undef OPT
  }
  if (!url) {
    usage(stderr);
    return 2;
  }
  int pr = parse_url(url);
  if (pr == -2) {
    fprintf(stderr, "bench_loadgen: only loopback targets are allowed (%s)\n", url);
    return 2;
  }
  if (pr < 0) {
    fprintf(stderr, "bench_loadgen: bad --url %s (want http://127.0.0.1:PORT/path)\n", url);
    return 2;
  }
  if (!mode_is("stream") && !mode_is("cancel") && !mode_is("slow")) {
    fprintf(stderr, "bench_loadgen: --mode must be stream, cancel or slow\n");
    return 2;
  }
  if (!mode_is("stream")) O.streams = 1;
  if (mode_is("slow")) O.requests = 1;
  if (O.streams < 1 || O.streams > LG_MAX_STREAMS) {
    fprintf(stderr, "bench_loadgen: --streams must be 1..%d\n", LG_MAX_STREAMS);
    return 2;
  }
  if (!(O.duration_s >= 0)) {
    fprintf(stderr, "bench_loadgen: --duration-s must be a number of seconds >= 0\n");
    return 2;
  }
  if (O.requests < 0) O.requests = mode_is("cancel") ? 10 : O.streams;
  if (O.requests < 1) O.requests = 1;
  if (mode_is("cancel") && O.sim_port <= 0) {
    fprintf(stderr, "bench_loadgen: --mode cancel needs --sim-port\n");
    return 2;
  }
  raise_nofile();
  if (build_request() < 0) return 2;

  G.loop = uv_default_loop();
  G.slots = calloc((size_t)O.streams, sizeof(lg_slot_t));
  G.free_slots = calloc((size_t)O.streams, sizeof(int));
  if (!G.slots || !G.free_slots) return 1;
  /* Free slots are popped from the end: push them in reverse so slot 0 goes first. */
  for (int i = O.streams - 1; i >= 0; i--) G.free_slots[G.nfree++] = i;
  /* Closed loop hands slots out by the ramp instead; each is pushed back once, when it is done. */
  if (mode_is("stream") && O.rate <= 0) G.nfree = 0;

  if (O.sim_port > 0) {
    G.sim_tokens0 = sim_stat("tokens_sent");
    G.sim_closed0 = sim_stat("client_closed_mid_stream");
    G.sim_blocked0 = sim_stat("write_blocked");
    if (G.sim_tokens0 < 0) {
      fprintf(stderr, "bench_loadgen: cannot read /sim/stats on 127.0.0.1:%d\n", O.sim_port);
      return 1;
    }
  }
  if (O.npids) {
    G.cpu0 = proc_cpu_us();
    G.rss0 = proc_rss_kb();
    if (G.cpu0 < 0 || G.rss0 < 0) {
      fprintf(stderr, "bench_loadgen: cannot read /proc for the given --pid\n");
      return 1;
    }
    G.rss_peak = G.rss_last = G.rss0;
    G.sysc_ok = proc_syscalls(&G.syscr0, &G.syscw0) == 0;
    if (!G.sysc_ok && !O.quiet) fprintf(stderr, "bench_loadgen: /proc/PID/io unreadable; no syscall counts\n");
    uv_timer_init(G.loop, &G.sampler);
    uv_timer_start(&G.sampler, sample_cb, (uint64_t)O.sample_ms, (uint64_t)O.sample_ms);
  }
  G.t0 = uv_hrtime();
  uv_timer_init(G.loop, &G.tick);
  uv_timer_start(&G.tick, tick_cb, 0, 1);
  uv_timer_init(G.loop, &G.deadline);
  uv_timer_start(&G.deadline, deadline_cb, (uint64_t)(O.timeout_s * 1000), 0);
  uv_timer_init(G.loop, &G.slow_timer);
  if (mode_is("slow")) {
    G.nfree = 0;
    start_request(0);
    G.slow_conn = G.slots[0].conn;
    uv_timer_init(G.loop, &G.slow_end);
    uv_timer_start(&G.slow_end, slow_end_cb, (uint64_t)(O.slow_seconds * 1000), 0);
  }
  uv_run(G.loop, UV_RUN_DEFAULT);
  if (!G.stopping) finish_run(); /* the loop ran dry: nothing left to do */
  uv_run(G.loop, UV_RUN_DEFAULT);

  if (O.sim_port > 0) {
    /* The engine counts a token when it writes it; give in-flight counters a moment. */
    G.sim_tokens1 = sim_stat("tokens_sent");
    G.sim_closed1 = sim_stat("client_closed_mid_stream");
    G.sim_blocked1 = sim_stat("write_blocked");
  }
  report(stdout);
  if (O.json_path) {
    FILE *f = fopen(O.json_path, "w");
    if (f) {
      report(f);
      fclose(f);
    }
  }
  if (O.tsv_path) {
    FILE *f = fopen(O.tsv_path, "a");
    if (f) {
      report_tsv(f);
      fclose(f);
    }
  }
  if (O.cdf_path) write_cdf(O.cdf_path);
  if (sim_fd >= 0) close(sim_fd);
  uv_loop_close(G.loop);
  free(G.slots);
  free(G.free_slots);
  free(G.req);
  free(G.itl.v);
  free(G.ttft_added.v);
  free(G.ttft_client.v);
  free(G.cancel.v);
  long errors = 0;
  for (int i = 0; i < ERR_NKINDS; i++) errors += G.errors[i];
  return errors ? 3 : 0;
}
