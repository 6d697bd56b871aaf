/* bench_codec.c: nanoseconds per event for the upstream decoding stack.
 *
 * Builds one realistic streamed chat response (vLLM/OpenAI shape: a role
 * chunk, content chunks of typical sizes with some escapes and non-ASCII
 * text, a few logprobs chunks, a finish chunk, a usage chunk, [DONE]),
 * chunked one event per HTTP chunk, and decodes it with sl_updec_feed in
 * socket-sized reads.  Baselines measured in the same run: sl_oai_scan
 * alone on each payload, and cJSON_Parse + field lookup + cJSON_Delete on
 * each payload (what a tree-building decoder pays before any framing).
 * Reports best-of-N ns/event and the ratios.  Not run by ctest.
 *
 * Usage: bench_codec [events] [rounds]
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/upstream/oai.h"
#include "runtime/upstream/upstream_decoder.h"

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static const char *words[] = {
    "The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".",
    " caf\\u00e9", " \\\"quoted\\\"", "\\n\\n", " r\\u00e9sum\\u00e9", " \\ud83d\\ude00", " 42",
    " tokens", " stream", " gateway", ",",
};

typedef struct {
  char *resp;        /* the whole HTTP response */
  size_t resp_len;
  const char **pay;  /* each event's JSON payload */
  size_t *pay_len;
  int n;             /* events */
} corpus_t;

static size_t add_event(corpus_t *c, size_t at, const char *json, size_t jl) {
  char head[32];
  size_t evlen = 6 + jl + 2; /* "data: " json "\n\n" */
  int hl = snprintf(head, sizeof(head), "%zx\r\n", evlen);
  memcpy(c->resp + at, head, (size_t)hl);
  at += (size_t)hl;
  memcpy(c->resp + at, "data: ", 6);
  c->pay[c->n] = c->resp + at + 6;
  c->pay_len[c->n] = jl;
  c->n++;
  memcpy(c->resp + at + 6, json, jl);
  memcpy(c->resp + at + 6 + jl, "\n\n\r\n", 4);
  return at + evlen + 2;
}

static void build(corpus_t *c, int nev) {
  c->resp = malloc((size_t)nev * 1024 + 4096);
  c->pay = malloc(sizeof(*c->pay) * (size_t)(nev + 4));
  c->pay_len = malloc(sizeof(*c->pay_len) * (size_t)(nev + 4));
  c->n = 0;
  size_t at = (size_t)sprintf(c->resp,
                              "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                              "server: uvicorn\r\ntransfer-encoding: chunked\r\n\r\n");
  const char *head =
      "{\"id\":\"chatcmpl-8f1c2a7e4b0d4e0f9a\",\"object\":\"chat.completion.chunk\","
      "\"created\":1753343173,\"model\":\"meta-llama/Llama-3.1-8B-Instruct\",\"choices\":[{\"index\":0,";
  char js[2048];
  int n = snprintf(js, sizeof(js),
                   "%s\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
                   "\"finish_reason\":null}]}",
                   head);
  at = add_event(c, at, js, (size_t)n);
  unsigned seed = 12345;
  for (int i = 0; i < nev - 4; i++) {
    seed = seed * 1103515245u + 12345u;
    const char *w = words[(seed >> 16) % (sizeof(words) / sizeof(words[0]))];
    if (i % 50 == 7)
      n = snprintf(js, sizeof(js),
                   "%s\"delta\":{\"content\":\"%s\"},\"logprobs\":{\"content\":[{\"token\":\"%s\","
                   "\"logprob\":-0.0312,\"bytes\":[32,116,104,101],\"top_logprobs\":[{\"token\":\"%s\","
                   "\"logprob\":-0.0312,\"bytes\":[32,116]},{\"token\":\" a\",\"logprob\":-3.51,"
                   "\"bytes\":[32,97]}]}]},\"finish_reason\":null}]}",
                   head, w, w, w);
    else
      n = snprintf(js, sizeof(js), "%s\"delta\":{\"content\":\"%s\"},\"logprobs\":null,\"finish_reason\":null}]}",
                   head, w);
    at = add_event(c, at, js, (size_t)n);
  }
  n = snprintf(js, sizeof(js), "%s\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}", head);
  at = add_event(c, at, js, (size_t)n);
  n = snprintf(js, sizeof(js),
               "{\"id\":\"chatcmpl-8f1c2a7e4b0d4e0f9a\",\"object\":\"chat.completion.chunk\","
               "\"created\":1753343173,\"model\":\"meta-llama/Llama-3.1-8B-Instruct\",\"choices\":[],"
               "\"usage\":{\"prompt_tokens\":812,\"total_tokens\":%d,\"completion_tokens\":%d}}",
               812 + nev, nev);
  at = add_event(c, at, js, (size_t)n);
  at = add_event(c, at, "[DONE]", 6);
  memcpy(c->resp + at, "0\r\n\r\n", 5);
  c->resp_len = at + 5;
}

static size_t sink;

static int on_event(void *ud, const sl_event_t *ev) {
  (void)ud;
  sink += ev->text.n + (size_t)ev->finish;
  return 0;
}

static char joinbuf[65536];
static sl_updec_t dec;

/* Decodes the whole response in reads of `rd` bytes; returns ns/event. */
static double run_decoder(const corpus_t *c, size_t rd, int rounds) {
  double best = 1e30;
  for (int r = 0; r < rounds; r++) {
    double t0 = now_ns();
    sl_updec_init(&dec, joinbuf, sizeof(joinbuf));
    for (size_t at = 0; at < c->resp_len; at += rd) {
      size_t n = c->resp_len - at < rd ? c->resp_len - at : rd;
      if (sl_updec_feed(&dec, c->resp + at, n, on_event, NULL) != 0) {
        fprintf(stderr, "decode failed: %s\n", dec.errmsg);
        exit(1);
      }
    }
    if (!dec.message_done || (int)dec.events != c->n) {
      fprintf(stderr, "decode incomplete\n");
      exit(1);
    }
    double dt = (now_ns() - t0) / c->n;
    if (dt < best) best = dt;
  }
  return best;
}

static double run_scan(const corpus_t *c, int rounds) {
  double best = 1e30;
  sl_event_t ev;
  for (int r = 0; r < rounds; r++) {
    double t0 = now_ns();
    for (int i = 0; i < c->n; i++) {
      if (sl_oai_scan(c->pay[i], c->pay_len[i], &ev) != 0) exit(1);
      sink += ev.text.n;
    }
    double dt = (now_ns() - t0) / c->n;
    if (dt < best) best = dt;
  }
  return best;
}

static double run_cjson(const corpus_t *c, int rounds) {
  double best = 1e30;
  for (int r = 0; r < rounds; r++) {
    double t0 = now_ns();
    for (int i = 0; i < c->n; i++) {
      cJSON *root = cJSON_ParseWithLength(c->pay[i], c->pay_len[i]);
      if (root == NULL) { /* [DONE] */
        sink++;
        continue;
      }
      const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "choices"), 0);
      const cJSON *content =
          cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ch, "delta"), "content");
      if (cJSON_IsString(content)) sink += strlen(content->valuestring);
      cJSON_Delete(root);
    }
    double dt = (now_ns() - t0) / c->n;
    if (dt < best) best = dt;
  }
  return best;
}

int main(int argc, char **argv) {
  int nev = argc > 1 ? atoi(argv[1]) : 20000;
  int rounds = argc > 2 ? atoi(argv[2]) : 15;
  if (nev < 8) nev = 8;
  corpus_t c;
  build(&c, nev);
  size_t payload = 0;
  for (int i = 0; i < c.n; i++) payload += c.pay_len[i];
  printf("bench_codec: %d events, %zu response bytes, mean payload %.0f bytes, best of %d\n", c.n,
         c.resp_len, (double)payload / c.n, rounds);

  /* Interleaved rounds: every variant sees the same machine conditions;
   * each keeps its best round. */
  double dec64k = 1e30, dec1400 = 1e30, dec_ev = 1e30, scan = 1e30, cj = 1e30, x;
  for (int r = 0; r < rounds; r++) {
    if ((x = run_cjson(&c, 1)) < cj) cj = x;
    if ((x = run_scan(&c, 1)) < scan) scan = x;
    if ((x = run_decoder(&c, 65536, 1)) < dec64k) dec64k = x;
    if ((x = run_decoder(&c, 1400, 1)) < dec1400) dec1400 = x;
    if ((x = run_decoder(&c, 97, 1)) < dec_ev) dec_ev = x;
  }
  printf("  %-52s %8.1f ns/event\n", "baseline: cJSON_Parse + lookup + Delete per payload", cj);
  printf("  %-52s %8.1f ns/event  (%.2fx of baseline)\n", "sl_oai_scan per payload", scan, scan / cj);
  printf("  %-52s %8.1f ns/event  (%.2fx of baseline)\n", "sl_updec_feed, 64 KiB reads (HTTP+SSE+scan)",
         dec64k, dec64k / cj);
  printf("  %-52s %8.1f ns/event  (%.2fx of baseline)\n", "sl_updec_feed, 1400-byte reads (events cut)",
         dec1400, dec1400 / cj);
  printf("  %-52s %8.1f ns/event  (%.2fx of baseline)\n", "sl_updec_feed, 97-byte reads", dec_ev,
         dec_ev / cj);
  printf("  (sink %zu)\n", sink);
  free(c.resp);
  free(c.pay);
  free(c.pay_len);
  return 0;
}
