/* Tests for runtime/stream/output: the events of one batch leave in one
 * HTTP chunk (one write), in order, with their separators; held-back
 * events wait for release, are dropped unsent, and count toward the one
 * watermark test; re-encoded and synthesized chunks are valid OpenAI
 * chunks (checked with cJSON here, and with the official SDK's own stream
 * parser when tests/sdk is installed); tokens count as written once the
 * kernel took them.  A real HTTP server runs on a loop in a background
 * thread; the client reads the raw chunked body over loopback.
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>

#include "netutil.h"
#include "runtime/base/alloc.h"
#include "runtime/stream/output.h"
#include "test.h"
#include "sdk/sdk_oracle.h"

static uv_loop_t loop;
static sl_http_server_t *server;
static uv_async_t stop_async;
static pthread_t thread;
static atomic_int port;
static sl_chunk_pool_t pool;

/* What the handlers saw, for the test thread. */
static atomic_int h_writes, h_events, h_tokens_written, h_over_before, h_over_held, h_over_dropped;
static atomic_int h_done;

#define HIGH 16384
#define LOW 4096

/* Puts s into chunk ch and returns where. */
static const char *put(sl_chunk_t *ch, const char *s) {
  size_t n = strlen(s);
  char *dst = (char *)ch->data + ch->len;
  memcpy(dst, s, n);
  ch->len += (uint32_t)n;
  return dst;
}

/* /batch: five engine events from one "read" (one chunk), one flush; then
 * [DONE] and a second flush. */
static void handle_batch(sl_http_req_t *req) {
  sl_output_t o;
  sl_output_init(&o, req, &pool, NULL, NULL, 1);
  sl_chunk_t *ch = sl_chunk_get(&pool);
  for (int i = 0; i < 5; i++) {
    char ev[64];
    snprintf(ev, sizeof(ev), "{\"i\":%d}", i);
    (void)put(ch, "\r\n"); /* bytes between events that must not be sent */
    const char *p = put(ch, ev);
    sl_output_event(&o, p, strlen(ev), ch, 1);
  }
  sl_chunk_unref(ch); /* the batch holds its own reference */
  sl_output_flush(&o);
  sl_output_static(&o, "data: [DONE]\n\n", 14);
  sl_output_flush(&o);
  atomic_store(&h_writes, (int)o.writes);
  atomic_store(&h_events, (int)o.events);
  atomic_store(&h_tokens_written, (int)o.tokens_written);
  sl_output_end(&o, 0);
  sl_output_free(&o);
}

/* /hold: A is held, B dropped after being held, then A released ahead of
 * C. */
static void handle_hold(sl_http_req_t *req) {
  sl_output_t o;
  sl_output_init(&o, req, &pool, NULL, NULL, 1);
  sl_output_hold(&o, "{\"a\":1}", 7, NULL, 0);
  sl_output_release(&o);
  sl_output_hold(&o, "{\"b\":2}", 7, NULL, 0);
  sl_output_drop_held(&o);
  sl_output_event(&o, "{\"c\":3}", 7, NULL, 1);
  sl_output_end(&o, 0);
  sl_output_free(&o);
}

/* /pressure (the client reads nothing): writes until the connection holds
 * more than the low watermark, then asks the watermark test without and
 * with held-back bytes that pass the high watermark. */
static sl_output_t pressure_out;

static void pressure_abort(sl_http_req_t *req) {
  (void)req;
  sl_output_free(&pressure_out);
}

static void handle_pressure(sl_http_req_t *req) {
  sl_output_t *o = &pressure_out;
  sl_output_init(o, req, &pool, NULL, NULL, 1);
  req->on_abort = pressure_abort;
  static char blob[1024];
  memset(blob, 'x', sizeof(blob));
  while (sl_http_req_write_held(req) <= LOW) {
    if (sl_output_event(o, blob, sizeof(blob), NULL, 0) < 0 || sl_output_flush(o) < 0) return;
  }
  atomic_store(&h_over_before, sl_output_over_high(o));
  size_t need = HIGH - sl_http_req_write_held(req) + 1;
  char *big = malloc(need);
  memset(big, 'y', need);
  sl_output_hold(o, big, need, NULL, 0);
  free(big);
  atomic_store(&h_over_held, sl_output_over_high(o));
  sl_output_drop_held(o);
  atomic_store(&h_over_dropped, (int)o->held_bytes);
  atomic_store(&h_done, 1);
}

/* /encode?chat=0|1: sluice's own chunks after the engine's first chunk set
 * the meta: role, text with characters JSON must escape, finish, usage. */
static const char enc_text[] = "caf\xc3\xa9 \"q\" \\ end\n\ttab \x01";

static void handle_encode(sl_http_req_t *req) {
  int chat = strstr(req->query, "chat=1") != NULL;
  sl_output_t o;
  sl_output_init(&o, req, &pool, NULL, NULL, chat);
  const char *first = chat ? "{\"id\":\"chatcmpl-7\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
                             "\"model\":\"m\\/x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"}}]}"
                           : "{\"id\":\"cmpl-7\",\"object\":\"text_completion\",\"created\":1700000000,"
                             "\"model\":\"m\\/x\",\"choices\":[{\"index\":0,\"text\":\"\"}]}";
  sl_event_t ev;
  if (sl_oai_scan(first, strlen(first), &ev) == 0) sl_output_note_meta(&o, &ev);
  if (chat) sl_output_encoded(&o, "assistant", "", 0, SL_FINISH_NONE, 0);
  char esc[256];
  size_t n = sl_json_escape(esc, sizeof(esc), enc_text, sizeof(enc_text) - 1);
  sl_output_encoded(&o, NULL, esc, n, SL_FINISH_NONE, 1);
  sl_output_encoded(&o, NULL, NULL, 0, SL_FINISH_LENGTH, 0);
  sl_output_usage(&o, 3, 1);
  sl_output_static(&o, "data: [DONE]\n\n", 14);
  sl_output_end(&o, 0);
  sl_output_free(&o);
}

/* /many: more copied events than one batch holds, so a batch fills up and
 * is flushed while the next event's copy waits in the scratch chunk. */
#define MANY 100
static void handle_many(sl_http_req_t *req) {
  sl_output_t o;
  sl_output_init(&o, req, &pool, NULL, NULL, 1);
  for (int i = 0; i < MANY; i++) {
    char ev[64];
    int n = snprintf(ev, sizeof(ev), "{\"i\":%d}", i);
    sl_output_event(&o, ev, (size_t)n, NULL, 1);
  }
  sl_output_end(&o, 0);
  sl_output_free(&o);
}

static void handler(sl_http_req_t *req, void *ud) {
  (void)ud;
  if (strcmp(req->path, "/batch") == 0) handle_batch(req);
  else if (strcmp(req->path, "/hold") == 0) handle_hold(req);
  else if (strcmp(req->path, "/pressure") == 0) handle_pressure(req);
  else if (strcmp(req->path, "/encode") == 0) handle_encode(req);
  else if (strcmp(req->path, "/many") == 0) handle_many(req);
  else sl_http_respond(req, 404, "text/plain", "nope", 4, NULL);
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

/* ---- the client side ---- */

typedef struct {
  int status;
  int nchunks;          /* HTTP chunks before the terminator */
  char chunk[8][4096];  /* the first 8 of them */
  size_t chunk_len[8];
  char body[65536];     /* all of them */
  size_t body_len;
} raw_t;

/* GETs path and reads the chunked body raw, chunk by chunk. */
static int get_raw(const char *path, raw_t *out) {
  memset(out, 0, sizeof(*out));
  int fd = nu_connect(atomic_load(&port));
  if (fd < 0) return -1;
  nu_conn_t c;
  nu_conn_init(&c, fd);
  char reqline[256];
  snprintf(reqline, sizeof(reqline), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
  nu_resp_t r;
  if (nu_send_str(fd, reqline) < 0 || nu_read_head(&c, &r, 5000) < 0) {
    close(fd);
    return -1;
  }
  out->status = r.status;
  int64_t deadline = nu_now_ms() + 5000;
  for (;;) {
    char line[64];
    if (nu_line(&c, line, sizeof(line), deadline) < 0) break;
    size_t n = strtoul(line, NULL, 16);
    if (n == 0) break;
    char *dst = out->body + out->body_len;
    if (out->body_len + n > sizeof(out->body) || nu_read_exact(&c, dst, n, deadline) < 0) break;
    if (out->nchunks < 8 && n < sizeof(out->chunk[0])) {
      memcpy(out->chunk[out->nchunks], dst, n);
      out->chunk_len[out->nchunks] = n;
    }
    out->body_len += n;
    out->nchunks++;
    if (nu_line(&c, line, sizeof(line), deadline) != 0) break; /* the chunk's CRLF */
  }
  close(fd);
  return 0;
}

/* ---- tests ---- */

static void test_batch_is_one_write(void) {
  raw_t r;
  ASSERT_EQ(get_raw("/batch", &r), 0);
  ASSERT_EQ(r.status, 200);
  ASSERT_EQ(r.nchunks, 2);
  const char *want = "data: {\"i\":0}\n\ndata: {\"i\":1}\n\ndata: {\"i\":2}\n\ndata: {\"i\":3}\n\ndata: {\"i\":4}\n\n";
  ASSERT_MEM_EQ(r.chunk[0], r.chunk_len[0], want, strlen(want));
  ASSERT_MEM_EQ(r.chunk[1], r.chunk_len[1], "data: [DONE]\n\n", 14);
  ASSERT_EQ(atomic_load(&h_writes), 2);
  ASSERT_EQ(atomic_load(&h_events), 5);
  /* Nothing was queued ahead: the kernel took the batch at once. */
  ASSERT_EQ(atomic_load(&h_tokens_written), 5);
}

/* A batch that fills up mid-event keeps the scratch chunk holding the
 * event's copy: every event arrives intact and in order. */
static void test_full_batch_keeps_the_copy(void) {
  raw_t r;
  ASSERT_EQ(get_raw("/many", &r), 0);
  ASSERT_GE(r.nchunks, 3);
  char want[4096];
  size_t w = 0;
  for (int i = 0; i < MANY; i++) w += (size_t)snprintf(want + w, sizeof(want) - w, "data: {\"i\":%d}\n\n", i);
  ASSERT_MEM_EQ(r.body, r.body_len, want, w);
}

static void test_hold_release_and_drop(void) {
  raw_t r;
  ASSERT_EQ(get_raw("/hold", &r), 0);
  ASSERT_EQ(r.nchunks, 1);
  ASSERT_MEM_EQ(r.body, r.body_len, "data: {\"a\":1}\n\ndata: {\"c\":3}\n\n", 30);
}

static void test_held_bytes_count_toward_the_watermark(void) {
  atomic_store(&h_done, 0);
  int fd = nu_connect_rcvbuf(atomic_load(&port), 4096);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(nu_send_str(fd, "GET /pressure HTTP/1.1\r\n\r\n"), 0);
  int64_t deadline = nu_now_ms() + 10000;
  while (!atomic_load(&h_done) && nu_now_ms() < deadline) usleep(1000);
  ASSERT_EQ(atomic_load(&h_done), 1);
  ASSERT_EQ(atomic_load(&h_over_before), 0); /* past the low watermark only */
  ASSERT_EQ(atomic_load(&h_over_held), 1);   /* the held-back bytes pass the high one */
  ASSERT_EQ(atomic_load(&h_over_dropped), 0);
  close(fd);
}

/* Checks one re-encoded body with cJSON: every chunk is an object of the
 * right kind with the engine's id, model and created; the text joins to
 * enc_text; the finish and usage chunks are where they belong. */
static void check_encoded(const raw_t *r, int chat) {
  char text[256];
  size_t tl = 0;
  int chunks = 0, finish_seen = 0, usage_seen = 0, done = 0;
  const char *p = r->body, *end = r->body + r->body_len;
  while (p < end) {
    const char *e = strstr(p, "\n\n");
    ASSERT(e != NULL);
    ASSERT_EQ(strncmp(p, "data: ", 6), 0);
    size_t n = (size_t)(e - p) - 6;
    if (n == 6 && memcmp(p + 6, "[DONE]", 6) == 0) {
      done = 1;
      p = e + 2;
      continue;
    }
    cJSON *o = cJSON_ParseWithLength(p + 6, n);
    ASSERT(o != NULL);
    chunks++;
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "id")->valuestring, chat ? "chatcmpl-7" : "cmpl-7");
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "model")->valuestring, "m/x");
    ASSERT_EQ((long long)cJSON_GetObjectItem(o, "created")->valuedouble, 1700000000LL);
    ASSERT_STR_EQ(cJSON_GetObjectItem(o, "object")->valuestring, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_GetObjectItem(o, "choices");
    ASSERT(cJSON_IsArray(choices));
    cJSON *u = cJSON_GetObjectItem(o, "usage");
    if (cJSON_GetArraySize(choices) == 0) {
      ASSERT(cJSON_IsObject(u));
      ASSERT_EQ(cJSON_GetObjectItem(u, "prompt_tokens")->valueint, 3);
      ASSERT_EQ(cJSON_GetObjectItem(u, "completion_tokens")->valueint, 1);
      ASSERT_EQ(cJSON_GetObjectItem(u, "total_tokens")->valueint, 4);
      usage_seen = 1;
    } else {
      cJSON *c0 = cJSON_GetArrayItem(choices, 0);
      ASSERT_EQ(cJSON_GetObjectItem(c0, "index")->valueint, 0);
      cJSON *t = chat ? cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "delta"), "content")
                      : cJSON_GetObjectItem(c0, "text");
      if (cJSON_IsString(t)) {
        size_t k = strlen(t->valuestring);
        ASSERT(tl + k < sizeof(text));
        memcpy(text + tl, t->valuestring, k);
        tl += k;
      }
      cJSON *f = cJSON_GetObjectItem(c0, "finish_reason");
      if (cJSON_IsString(f)) {
        ASSERT_STR_EQ(f->valuestring, "length");
        finish_seen = 1;
      }
    }
    cJSON_Delete(o);
    p = e + 2;
  }
  ASSERT_EQ(done, 1);
  ASSERT_EQ(finish_seen, 1);
  ASSERT_EQ(usage_seen, 1);
  ASSERT_EQ(chunks, chat ? 4 : 3);
  ASSERT_MEM_EQ(text, tl, enc_text, sizeof(enc_text) - 1);
}

/* The official OpenAI SDK's own stream parser (tests/sdk/parse_sse.mjs,
 * installed by scripts/setup) must accept the bytes, whole and handed over
 * in 7-byte pieces, and yield the same chunks and text. */
static void check_with_sdk(const raw_t *r, int chat) {
  for (int piece = 0; piece <= 7; piece += 7) {
    char *out = NULL, *err = NULL;
    int rc = sl_sdk_parse_sse(r->body, r->body_len, (size_t)piece, &out, &err);
    if (rc == SL_SDK_SKIP) {
      fprintf(stderr, "     SKIP the SDK check: the SDK is not installed (scripts/setup installs it)\n");
      free(out);
      free(err);
      return;
    }
    if (rc != 0) fprintf(stderr, "%s", err ? err : "");
    ASSERT_EQ(rc, 0);
    char text[256];
    size_t tl = 0;
    int lines = 0;
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
      cJSON *o = cJSON_Parse(line);
      ASSERT(o != NULL);
      lines++;
      cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
      cJSON *t = c0 ? (chat ? cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "delta"), "content")
                            : cJSON_GetObjectItem(c0, "text"))
                    : NULL;
      if (cJSON_IsString(t)) {
        size_t k = strlen(t->valuestring);
        ASSERT(tl + k < sizeof(text));
        memcpy(text + tl, t->valuestring, k);
        tl += k;
      }
      cJSON_Delete(o);
    }
    free(out);
    free(err);
    ASSERT_EQ(lines, chat ? 4 : 3);
    ASSERT_MEM_EQ(text, tl, enc_text, sizeof(enc_text) - 1);
    fprintf(stderr, "     the OpenAI SDK parsed %d chunks (pieces of %d bytes; 0 = whole)\n", lines, piece);
  }
}

static void test_reencoded_chat_chunks_are_valid(void) {
  static raw_t r;
  ASSERT_EQ(get_raw("/encode?chat=1", &r), 0);
  check_encoded(&r, 1);
  check_with_sdk(&r, 1);
}

static void test_reencoded_completion_chunks_are_valid(void) {
  static raw_t r;
  ASSERT_EQ(get_raw("/encode?chat=0", &r), 0);
  check_encoded(&r, 0);
  check_with_sdk(&r, 0);
}

int main(void) {
  sl_alloc_init();
  sl_chunk_pool_init(&pool, 16384, 4);
  sl_http_limits_t l;
  sl_http_limits_default(&l);
  l.write_high_watermark = HIGH;
  l.write_low_watermark = LOW;
  uv_loop_init(&loop);
  uv_async_init(&loop, &stop_async, on_stop);
  if (sl_http_server_init(&server, &loop, "127.0.0.1", 0, &l, handler, NULL) != 0) return 1;
  atomic_store(&port, sl_http_server_port(server));
  pthread_create(&thread, NULL, run_loop, NULL);
  SL_RUN(test_batch_is_one_write);
  SL_RUN(test_hold_release_and_drop);
  SL_RUN(test_full_batch_keeps_the_copy);
  SL_RUN(test_held_bytes_count_toward_the_watermark);
  SL_RUN(test_reencoded_chat_chunks_are_valid);
  SL_RUN(test_reencoded_completion_chunks_are_valid);
  uv_async_send(&stop_async);
  pthread_join(thread, NULL);
  if (uv_loop_close(&loop) != 0) {
    fprintf(stderr, "handles left open on the loop\n");
    return 1;
  }
  sl_chunk_pool_destroy(&pool);
  return SL_TEST_EXIT();
}
