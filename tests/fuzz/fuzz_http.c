/* fuzz_http.c: libFuzzer harness for the server's HTTP request handling
 * (runtime/http/http_server.c): llhttp with sluice's callbacks, the header
 * and body limits, chunked request bodies and their trailers, pipelining.
 *
 * The parser lives inside the server, so this file includes
 * http_server.c and drives one connection without a listener: the
 * connection's socket is one end of a socketpair, its reads are handed to
 * the server's read callback by hand, and the other end collects what the
 * server writes back.  (The harness then defines every symbol of
 * http_server.o itself, so the linker never takes that object from
 * sluice_static.)
 *
 * Input: byte 0 picks the limits (low nibble: the header limit, 32 bytes a
 * step, 0 the default; high nibble: the body limit, 16 bytes a step, 0 the
 * default), byte 1 the way the rest is cut into reads; the rest is what a
 * client sends, then the client half-closes.  Every complete request gets
 * a 200 whose body describes it (method, path, query, every header, the
 * body's length and bytes); a refused one gets the server's own answer.
 * The bytes are fed three times: in one read, one byte a read, and in
 * reads cut where byte 1 says.  Besides what ASan, its leak checker and
 * UBSan catch, the harness aborts when
 *   - a request reaches the handler with a body past the body limit, a
 *     header without a name, or more header bytes than the header limit;
 *   - the three feedings answer differently: every response byte, in
 *     order, must be the same, except that a final refusal may say 400
 *     where another says 431 (see refusal_class).
 * Every read is a copy overwritten after its feed, so a request pointing
 * into an earlier read shows.
 *
 * Built by scripts/fuzz (clang, -DSL_FUZZ=ON); seeds in
 * tests/fuzz/corpus/http/; tests/fuzz/regress/http/ replayed first. */
#include "runtime/http/http_server.c"
#include "tests/fuzz/fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

static void fail(const char *what) {
  fprintf(stderr, "fuzz_http: %s\n", what);
  abort();
}

typedef struct {
  char *p;
  size_t n, cap;
} out_t;

static void out_add(out_t *o, const void *p, size_t n) {
  if (o->n + n > o->cap) {
    size_t cap = o->cap ? o->cap : 4096;
    while (o->n + n > cap) cap *= 2;
    o->p = realloc(o->p, cap);
    o->cap = cap;
  }
  memcpy(o->p + o->n, p, n);
  o->n += n;
}

static void out_str(out_t *o, const char *s) { out_add(o, s, strlen(s) + 1); }

static uv_loop_t loop;
static int loop_ready;

/* Answers with what the request was, as the server handed it over. */
static void handler(sl_http_req_t *r, void *ud) {
  (void)ud;
  sl_http_conn_t *c = r->conn;
  const sl_http_limits_t *l = &c->server->limits;
  if (r->body_len > l->max_body_bytes) fail("a body past the body limit reached the handler");
  if (c->header_bytes > l->max_header_bytes) fail("header bytes past the header limit reached the handler");
  out_t o = {0};
  char line[64];
  out_str(&o, r->method_name);
  out_str(&o, r->path);
  out_str(&o, r->query);
  for (int i = 0; i < r->nheaders; i++) {
    if (r->headers[i].name[0] == '\0') fail("a header without a name");
    out_str(&o, r->headers[i].name);
    out_str(&o, r->headers[i].value);
  }
  snprintf(line, sizeof(line), "method %d keep-alive %d body %zu", r->method, r->keep_alive, r->body_len);
  out_str(&o, line);
  out_add(&o, r->body, r->body_len);
  sl_http_respond(r, 200, "application/octet-stream", o.p, o.n, NULL);
  free(o.p);
}

/* Reads whatever the server has written so far. */
static void collect(int fd, out_t *o) {
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) {
      out_add(o, buf, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return;
  }
}

static char copy[1 << 16];

static void feed(const uint8_t *in, size_t len, uint8_t lim, int how, uint8_t seed, out_t *o) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) fail("socketpair");
  fcntl(sv[1], F_SETFL, O_NONBLOCK);
  sl_http_server_t *s = sl_calloc(1, sizeof(*s));
  s->loop = &loop;
  sl_http_limits_default(&s->limits);
  if (lim & 0x0f) s->limits.max_header_bytes = 32u * (lim & 0x0f);
  if (lim >> 4) s->limits.max_body_bytes = 16u * (lim >> 4);
  s->handler = handler;
  sl__settings_init(&s->settings);
  /* What sl__on_connection does after accept. */
  sl_http_conn_t *c = sl_calloc(1, sizeof(*c));
  c->server = s;
  uv_tcp_init(&loop, &c->tcp);
  uv_timer_init(&loop, &c->timer);
  c->handles = 2;
  c->tcp.data = c;
  c->timer.data = c;
  s->conns = c;
  s->nconns = 1;
  if (uv_tcp_open(&c->tcp, sv[0]) != 0) fail("uv_tcp_open");
  llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
  c->parser.data = c;
  c->state = SL_CONN_IDLE;
  c->reading = 1; /* reads come from this harness, not libuv */
  size_t off = 0;
  cutter_t cut = cutter_init(how, seed, 61);
  /* The connection is freed once closed (s->nconns drops to 0). */
  while (off < len && s->nconns > 0 && !c->closing && !c->shutting_down) {
    size_t n = cutter_next(&cut, len - off);
    memcpy(copy, in + off, n);
    uv_buf_t b = uv_buf_init(copy, (unsigned)n);
    sl__on_read((uv_stream_t *)&c->tcp, (ssize_t)n, &b);
    memset(copy, 0xA5, n);
    off += n;
    if (s->nconns > 0 && !c->closing && c->writes_pending > 0) {
      uv_run(&loop, UV_RUN_NOWAIT);
      collect(sv[1], o);
    }
  }
  /* Let queued answers go out, then the client's end of input. */
  while (s->nconns > 0 && !c->closing && c->writes_pending > 0) {
    uv_run(&loop, UV_RUN_NOWAIT);
    collect(sv[1], o);
  }
  if (s->nconns > 0 && !c->closing && !c->shutting_down) {
    uv_buf_t b = uv_buf_init(copy, 0);
    sl__on_read((uv_stream_t *)&c->tcp, UV_EOF, &b);
  }
  sl_http_server_close(s, NULL, NULL);
  while (uv_run(&loop, UV_RUN_NOWAIT) != 0) collect(sv[1], o);
  collect(sv[1], o);
  close(sv[1]);
}

/* The header limit is counted as llhttp reports the spans of the request
 * line and the header fields, and llhttp reports a span when it ends or
 * when a read ends inside it.  So a header section that is both too long
 * and malformed further on is refused as too long (431) when the reads end
 * inside the long span, and as malformed (400) when the malformed byte
 * comes in the same read.  Both refuse and close; which of the two it says
 * is the one thing allowed to depend on the cuts: the last answer, when it
 * is either, becomes one word. */
static void refusal_class(out_t *o) {
  static const char head[] = "HTTP/1.1 ";
  size_t last = (size_t)-1;
  for (size_t i = 0; i + sizeof(head) - 1 <= o->n; i++)
    if (memcmp(o->p + i, head, sizeof(head) - 1) == 0) last = i;
  if (last == (size_t)-1 || o->n - last < 12) return;
  if (memcmp(o->p + last + 9, "400", 3) == 0 || memcmp(o->p + last + 9, "431", 3) == 0) {
    o->n = last;
    out_add(o, "refused: 400 or 431", 19);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2 || size - 2 > sizeof(copy)) return 0;
  if (!loop_ready) {
    uv_loop_init(&loop);
    loop_ready = 1;
  }
  uint8_t lim = data[0], seed = data[1];
  data += 2;
  size -= 2;
  out_t whole = {0}, bytes = {0}, cuts = {0};
  feed(data, size, lim, FUZZ_WHOLE, seed, &whole);
  feed(data, size, lim, FUZZ_BYTES, seed, &bytes);
  feed(data, size, lim, FUZZ_CUTS, seed, &cuts);
  refusal_class(&whole);
  refusal_class(&bytes);
  refusal_class(&cuts);
  if (whole.n != bytes.n || whole.n != cuts.n ||
      (whole.n > 0 && (memcmp(whole.p, bytes.p, whole.n) != 0 || memcmp(whole.p, cuts.p, whole.n) != 0))) {
    fprintf(stderr, "fuzz_http: limits 0x%02x: the answers differ (%zu bytes whole, %zu byte a read, %zu cut)\n",
            lim, whole.n, bytes.n, cuts.n);
    fprintf(stderr, "--- whole:\n%.*s\n--- byte a read:\n%.*s\n--- cut:\n%.*s\n", (int)whole.n, whole.p,
            (int)bytes.n, bytes.p, (int)cuts.n, cuts.p);
    abort();
  }
  free(whole.p);
  free(bytes.p);
  free(cuts.p);
  return 0;
}
