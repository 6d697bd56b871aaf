/* Tests for runtime/upstream_decoder: complete upstream HTTP/1.1 responses
 * (chunked with one event per chunk or random chunk sizes, Content-Length,
 * close-delimited) carrying the documented streams of OpenAI, vLLM,
 * llama.cpp's OpenAI route and TGI's chat route, with LF, CRLF and lone-CR
 * line ends.  Every response is also fed split at every byte position, one
 * byte at a time and in random pieces; the normalized events must match the
 * unsplit feed and the expected values written here.  Each piece is a
 * private heap copy freed after its feed, so under AddressSanitizer a span
 * kept into an old read is caught.  Then malformed HTTP, bad chunking,
 * garbage and truncated JSON, join-buffer overflow, truncation at EOF,
 * pipelined junk, cancellation, non-SSE replies, Retry-After and
 * retry-after-ms (seconds, milliseconds, HTTP-dates, malformed values,
 * each split at every byte), and a random-bytes fuzz. */
#include "runtime/upstream/upstream_decoder.h"

#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/base/errors.h"
#include "test.h"

/* ---- helpers ---------------------------------------------------------- */

static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ULL;
}

/* A readable record of the events one response produced. */
typedef struct {
  char s[32768];
  size_t n;
  int events;
  int not_in_input;     /* events with raw_in_input == 0 */
  int bad_ptr;          /* an in-input span outside the current piece */
  const char *lo, *hi;  /* the piece being fed */
  int stop_after;       /* callback returns 1 after this many events (0: never) */
} trace_t;

static void tput(trace_t *t, const char *p, size_t n) {
  if (n > sizeof(t->s) - t->n) n = sizeof(t->s) - t->n;
  memcpy(t->s + t->n, p, n);
  t->n += n;
}
static void tstr(trace_t *t, const char *s) { tput(t, s, strlen(s)); }
static void tspan(trace_t *t, sl_span_t sp) {
  char tmp[4096];
  if (sp.p == NULL) {
    tstr(t, "-");
    return;
  }
  size_t n = sl_json_unescape(tmp, sizeof(tmp), sp.p, sp.n);
  if (n == (size_t)-1) tstr(t, "(bad)");
  else tput(t, tmp, n);
}
static void tnum(trace_t *t, int64_t v) {
  char tmp[32];
  snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
  tstr(t, tmp);
}

static int on_event(void *ud, const sl_event_t *ev) {
  trace_t *t = ud;
  t->events++;
  if (!ev->raw_in_input) t->not_in_input++;
  else if (ev->raw.p < t->lo || ev->raw.p + ev->raw.n > t->hi) t->bad_ptr++;
  switch (ev->kind) {
    case SL_EV_DONE:
      tstr(t, "DONE\n");
      break;
    case SL_EV_ERROR:
      tstr(t, "ERROR msg=");
      tspan(t, ev->err_message);
      tstr(t, " type=");
      tspan(t, ev->err_type);
      tstr(t, " code=");
      tspan(t, ev->err_code);
      tstr(t, "\n");
      break;
    default:
      tstr(t, "CHUNK");
      if (ev->n_choices != 1) {
        tstr(t, " choices=");
        tnum(t, ev->n_choices);
      }
      if (ev->has_role) {
        tstr(t, " role=");
        tspan(t, ev->role);
      }
      if (ev->has_text) {
        tstr(t, " text=");
        tspan(t, ev->text);
      }
      if (ev->has_reasoning) {
        tstr(t, " reasoning=");
        tspan(t, ev->reasoning);
      }
      for (int i = 0; i < ev->n_tool_calls; i++) {
        const sl_tool_delta_t *tc = &ev->tool_calls[i];
        tstr(t, " tool=");
        tnum(t, tc->index);
        tstr(t, ",");
        tspan(t, tc->has_id ? tc->id : (sl_span_t){NULL, 0});
        tstr(t, ",");
        tspan(t, tc->has_name ? tc->name : (sl_span_t){NULL, 0});
        tstr(t, ",");
        tspan(t, tc->has_arguments ? tc->arguments : (sl_span_t){NULL, 0});
      }
      if (ev->has_logprobs) tstr(t, " logprobs");
      if (ev->finish != SL_FINISH_NONE) {
        tstr(t, " finish=");
        tstr(t, sl_finish_name(ev->finish));
        tstr(t, "/");
        tspan(t, ev->finish_raw);
      }
      if (ev->has_usage) {
        tstr(t, " usage=");
        tnum(t, ev->prompt_tokens);
        tstr(t, "/");
        tnum(t, ev->completion_tokens);
        tstr(t, "/");
        tnum(t, ev->total_tokens);
      }
      tstr(t, "\n");
  }
  return t->stop_after && t->events >= t->stop_after;
}

static char joinbuf[8192];
static sl_updec_t dec;
static long runs; /* decodes performed, reported at the end */

/* Feeds resp in pieces ending at cuts[] (then the rest), each from its own
 * heap copy, then EOF.  Returns the first negative code, or eof's result. */
static int run_cuts_cap(const char *resp, size_t len, const size_t *cuts, int ncuts, size_t cap,
                        trace_t *t) {
  sl_updec_init(&dec, joinbuf, cap);
  runs++;
  t->n = 0;
  t->events = t->not_in_input = t->bad_ptr = 0;
  size_t at = 0;
  for (int i = 0; i <= ncuts; i++) {
    size_t to = i < ncuts ? cuts[i] : len;
    size_t n = to - at;
    char *piece = malloc(n ? n : 1);
    memcpy(piece, resp + at, n);
    t->lo = piece;
    t->hi = piece + n;
    int r = sl_updec_feed(&dec, piece, n, on_event, t);
    memset(piece, 0xEE, n); /* what a reused read buffer would hold */
    free(piece);
    at = to;
    if (r < 0) {
      if (dec.errmsg[0] == '\0') return -77777; /* an error must say why */
      return r;
    }
  }
  int r = sl_updec_eof(&dec);
  if (r < 0 && dec.errmsg[0] == '\0') return -77777;
  return r;
}

static int run_cuts(const char *resp, size_t len, const size_t *cuts, int ncuts, trace_t *t) {
  return run_cuts_cap(resp, len, cuts, ncuts, sizeof(joinbuf), t);
}

static int run_whole(const char *resp, size_t len, trace_t *t) {
  return run_cuts(resp, len, NULL, 0, t);
}

/* ---- streams ---------------------------------------------------------- */

typedef struct {
  const char *name;
  const char *ctype;        /* Content-Type value */
  const char *headers;      /* extra header lines */
  const char *segs[16];     /* what the server wrote per flush (LF line ends), NULL-terminated */
  const char *expect;       /* the trace */
  int saw_done;
} stream_t;

#define OAI_HEAD "{\"id\":\"chatcmpl-Bwkw\",\"object\":\"chat.completion.chunk\",\"created\":1753343173,\"model\":\"gpt-4.1-2025-04-14\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_b3f1157249\","

static const stream_t streams[] = {
    {"openai",
     "text/event-stream; charset=utf-8",
     "",
     {"data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null,\"obfuscation\":\"kX9q\"}\n\n",
      "data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"He said \\\"hi\\\"\"},\"logprobs\":{\"content\":[{\"token\":\"He\",\"logprob\":-0.0123,\"bytes\":[72,101],\"top_logprobs\":[{\"token\":\"He\",\"logprob\":-0.0123,\"bytes\":[72,101]},{\"token\":\"She\",\"logprob\":-9999.0,\"bytes\":null}]}],\"refusal\":null},\"finish_reason\":null}],\"usage\":null}\n\n",
      "data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" C:\\\\temp\\\\x\\nnext\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
      "data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" caf\\u00e9 \\ud83d\\ude00\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
      "data: " OAI_HEAD "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
      "data: " OAI_HEAD "\"choices\":[],\"usage\":{\"prompt_tokens\":60,\"completion_tokens\":15,\"total_tokens\":75,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n",
      "data: [DONE]\n\n", NULL},
     "CHUNK role=assistant text=\n"
     "CHUNK text=He said \"hi\" logprobs\n"
     "CHUNK text= C:\\temp\\x\nnext\n"
     "CHUNK text= caf\xc3\xa9 \xf0\x9f\x98\x80\n"
     "CHUNK finish=stop/stop\n"
     "CHUNK choices=0 usage=60/15/75\n"
     "DONE\n",
     1},
    {"openai-tools",
     "text/event-stream; charset=utf-8",
     "",
     {"data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"created\":1753343174,\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_Qx7\",\"type\":\"function\",\"function\":{\"name\":\"read_file\",\"arguments\":\"\"}}],\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
      "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"created\":1753343174,\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
      "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"created\":1753343174,\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"path\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
      "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"created\":1753343174,\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\":\\\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
      "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"created\":1753343174,\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"README.md\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
      "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"created\":1753343174,\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
      "data: {\"id\":\"chatcmpl-T\",\"object\":\"chat.completion.chunk\",\"created\":1753343174,\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n",
      "data: [DONE]\n\n", NULL},
     "CHUNK role=assistant tool=0,call_Qx7,read_file,\n"
     "CHUNK tool=0,-,-,{\"\n"
     "CHUNK tool=0,-,-,path\n"
     "CHUNK tool=0,-,-,\":\"\n"
     "CHUNK tool=0,-,-,README.md\n"
     "CHUNK tool=0,-,-,\"}\n"
     "CHUNK finish=tool_calls/tool_calls\n"
     "DONE\n",
     1},
    {"vllm-reasoning",
     "text/event-stream; charset=utf-8",
     "server: uvicorn\r\n",
     {"data: {\"id\":\"chatcmpl-v1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"Qwen3-8B\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"prompt_token_ids\":null}\n\n",
      "data: {\"id\":\"chatcmpl-v1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"Qwen3-8B\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"Let me think\",\"reasoning_content\":\"Let me think\"},\"logprobs\":null,\"finish_reason\":null,\"token_ids\":[1,2]}]}\n\n",
      "data: {\"id\":\"chatcmpl-v1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"Qwen3-8B\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"42\"},\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":null}]}\n\n",
      "data: {\"id\":\"chatcmpl-v1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"Qwen3-8B\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"total_tokens\":17,\"completion_tokens\":5}}\n\n",
      "data: [DONE]\n\n", NULL},
     "CHUNK role=assistant text=\n"
     "CHUNK reasoning=Let me think\n"
     "CHUNK text=42 finish=stop/stop\n"
     "CHUNK choices=0 usage=12/5/17\n"
     "DONE\n",
     1},
    {"llamacpp-oai",
     "text/event-stream",
     "Server: llama.cpp\r\nAccess-Control-Allow-Origin: http://localhost\r\n",
     {"data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}],\"created\":1762000000,\"id\":\"chatcmpl-Zq1\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b6123-a1b2c3\",\"object\":\"chat.completion.chunk\"}\n\n",
      "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\"Hello\"}}],\"created\":1762000000,\"id\":\"chatcmpl-Zq1\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b6123-a1b2c3\",\"object\":\"chat.completion.chunk\",\"timings\":{\"prompt_n\":4,\"predicted_n\":1}}\n\n",
      "data: {\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":\", w\\u00f6rld\\t\\u2603\"},\"logprobs\":{\"content\":[{\"id\":11,\"token\":\", w\",\"logprob\":-0.5,\"bytes\":[44,32,119],\"top_logprobs\":[]}]}}],\"created\":1762000000,\"id\":\"chatcmpl-Zq1\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b6123-a1b2c3\",\"object\":\"chat.completion.chunk\"}\n\n",
      "data: {\"choices\":[{\"finish_reason\":\"length\",\"index\":0,\"delta\":{}}],\"created\":1762000000,\"id\":\"chatcmpl-Zq1\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b6123-a1b2c3\",\"object\":\"chat.completion.chunk\"}\n\n",
      "data: {\"choices\":[],\"created\":1762000000,\"id\":\"chatcmpl-Zq1\",\"model\":\"gpt-3.5-turbo\",\"system_fingerprint\":\"b6123-a1b2c3\",\"object\":\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":3,\"prompt_tokens\":4,\"total_tokens\":7,\"prompt_tokens_details\":{\"cached_tokens\":0}},\"timings\":{\"cache_n\":0,\"prompt_n\":4,\"prompt_ms\":12.5,\"prompt_per_token_ms\":3.1,\"prompt_per_second\":320.0,\"predicted_n\":3,\"predicted_ms\":30.0,\"predicted_per_token_ms\":10.0,\"predicted_per_second\":100.0}}\n\n",
      "data: [DONE]\n\n", NULL},
     "CHUNK role=assistant\n"
     "CHUNK text=Hello\n"
     "CHUNK text=, w\xc3\xb6rld\t\xe2\x98\x83 logprobs\n"
     "CHUNK finish=length/length\n"
     "CHUNK choices=0 usage=4/3/7\n"
     "DONE\n",
     1},
    {"tgi-chat-error",
     "text/event-stream",
     "x-compute-type: gpu+optimized\r\nx-compute-characters: 42\r\nX-Accel-Buffering: no\r\ncache-control: no-cache\r\n",
     {"data:{\"object\":\"chat.completion.chunk\",\"id\":\"\",\"created\":1762000001,\"model\":\"meta-llama/Llama-3.1-8B-Instruct\",\"system_fingerprint\":\"3.3.6-native\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Bonjour\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
      ":\n\n",
      "data:{\"object\":\"chat.completion.chunk\",\"id\":\"\",\"created\":1762000001,\"model\":\"meta-llama/Llama-3.1-8B-Instruct\",\"system_fingerprint\":\"3.3.6-native\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\" \\u00e0 tous\"},\"logprobs\":{\"content\":[{\"token\":\" \\u00e0\",\"logprob\":-0.25,\"top_logprobs\":[{\"token\":\" \\u00e0\",\"logprob\":-0.25}]}]},\"finish_reason\":null}],\"usage\":null}\n\n",
      ":\n\n",
      "data:{\"error\":{\"message\":\"Request failed during generation: Server error: CUDA out of memory\",\"http_status_code\":422}}\n\n",
      "data:[DONE]\n\n", NULL},
     "CHUNK role=assistant text=Bonjour\n"
     "CHUNK role=assistant text= \xc3\xa0 tous logprobs\n"
     "ERROR msg=Request failed during generation: Server error: CUDA out of memory type=- code=422\n"
     "DONE\n",
     1},
    {"tgi-chat-finish",
     "text/event-stream",
     "",
     {"data:{\"object\":\"chat.completion.chunk\",\"id\":\"\",\"created\":1,\"model\":\"tgi\",\"system_fingerprint\":\"3.3.6-native\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"end\"},\"logprobs\":null,\"finish_reason\":\"stop_sequence\"}],\"usage\":null}\n\n",
      "data:{\"object\":\"chat.completion.chunk\",\"id\":\"\",\"created\":1,\"model\":\"tgi\",\"system_fingerprint\":\"3.3.6-native\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n",
      "data:[DONE]\n\n", NULL},
     "CHUNK role=assistant text=end finish=stop/stop_sequence\n"
     "CHUNK choices=0 usage=5/1/6\n"
     "DONE\n",
     1},
    {"openai-midstream-error",
     "text/event-stream; charset=utf-8",
     "openai-processing-ms: 120\r\n",
     {"data: {\"id\":\"chatcmpl-E\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4.1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Part\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
      "data: {\"error\": {\"message\": \"The server had an error while processing your request. Sorry about that!\", \"type\": \"server_error\"}}\n\n",
      NULL},
     "CHUNK text=Part\n"
     "ERROR msg=The server had an error while processing your request. Sorry about that! type=server_error code=-\n",
     0},
    {"tgi-native-error",
     "text/event-stream",
     "",
     {"data:{\"error\":\"Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 200 `max_new_tokens`\",\"error_type\":\"validation\"}\n\n",
      NULL},
     "ERROR msg=Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 200 `max_new_tokens` type=validation code=-\n",
     0},
    {"completions",
     "text/event-stream; charset=utf-8",
     "",
     {"data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"choices\":[{\"text\":\"This\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}],\"model\":\"gpt-3.5-turbo-instruct\"}\n\n",
      "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"choices\":[{\"text\":\" is\",\"index\":0,\"logprobs\":{\"tokens\":[\" is\"],\"token_logprobs\":[-0.1],\"top_logprobs\":[{\" is\":-0.1}],\"text_offset\":[4]},\"finish_reason\":\"length\"}],\"model\":\"gpt-3.5-turbo-instruct\"}\n\n",
      "data: [DONE]\n\n", NULL},
     "CHUNK text=This\n"
     "CHUNK text= is logprobs finish=length/length\n"
     "DONE\n",
     1},
    {"quirks",
     "Text/Event-Stream",
     "",
     {": connected\n\n",
      "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\nid: 1\nretry: 5000\n\n",
      "data: {\"choices\":\ndata: [{\"delta\":{\"content\":\"b\"}}]}\n\n",
      "event: error\ndata: {\"message\":\"named\"}\n\n",
      "error: {\"old\":\"llama.cpp field, ignored\"}\n\n",
      "data: [DONE]\n\n",
      "data: {\"after\":\"done\"}\n\ndata: not json after done\n\n", NULL},
     "CHUNK text=a\n"
     "CHUNK text=b\n"
     "ERROR msg=named type=- code=-\n"
     "DONE\n",
     1},
};
#define NSTREAMS ((int)(sizeof(streams) / sizeof(streams[0])))

enum { LE_LF, LE_CRLF, LE_CR, LE_N };
enum { T_CHUNK_PER_EVENT, T_CHUNK_RANDOM, T_LENGTH, T_CLOSE, T_N };
static const char *le_names[] = {"LF", "CRLF", "CR"};
static const char *t_names[] = {"chunked-per-event", "chunked-random", "content-length", "close"};

static size_t apply_le(char *out, const char *seg, int le) {
  size_t n = 0;
  for (const char *p = seg; *p; p++) {
    if (*p != '\n') out[n++] = *p;
    else if (le == LE_LF) out[n++] = '\n';
    else if (le == LE_CR) out[n++] = '\r';
    else {
      out[n++] = '\r';
      out[n++] = '\n';
    }
  }
  return n;
}

static size_t put(char *out, size_t n, const char *s) {
  size_t k = strlen(s);
  memcpy(out + n, s, k);
  return n + k;
}

/* Builds the raw HTTP response of stream s. */
static size_t build(char *out, const stream_t *s, int le, int tr, uint64_t seed) {
  static char body[65536];
  size_t segoff[17], nseg = 0, blen = 0;
  for (int i = 0; s->segs[i]; i++) {
    segoff[nseg++] = blen;
    blen += apply_le(body + blen, s->segs[i], le);
  }
  segoff[nseg] = blen;
  size_t n = put(out, 0, "HTTP/1.1 200 OK\r\nContent-Type: ");
  n = put(out, n, s->ctype);
  n = put(out, n, "\r\n");
  n = put(out, n, s->headers);
  char tmp[64];
  switch (tr) {
    case T_CHUNK_PER_EVENT:
    case T_CHUNK_RANDOM:
      n = put(out, n, "Transfer-Encoding: chunked\r\n\r\n");
      if (tr == T_CHUNK_PER_EVENT) {
        for (size_t i = 0; i < nseg; i++) {
          size_t k = segoff[i + 1] - segoff[i];
          snprintf(tmp, sizeof(tmp), "%zx\r\n", k);
          n = put(out, n, tmp);
          memcpy(out + n, body + segoff[i], k);
          n += k;
          n = put(out, n, "\r\n");
        }
      } else {
        uint64_t save = rng_state;
        rng_state = seed;
        size_t at = 0;
        int i = 0;
        while (at < blen) {
          size_t k = 1 + rnd() % 400;
          if (k > blen - at) k = blen - at;
          /* Upper-case hex and a chunk extension now and then. */
          snprintf(tmp, sizeof(tmp), i % 3 == 1 ? "%zX" : "%zx", k);
          n = put(out, n, tmp);
          if (i % 5 == 2) n = put(out, n, ";ext=\"v\"");
          n = put(out, n, "\r\n");
          memcpy(out + n, body + at, k);
          n += k;
          n = put(out, n, "\r\n");
          at += k;
          i++;
        }
        rng_state = save;
      }
      n = put(out, n, "0\r\n\r\n");
      break;
    case T_LENGTH:
      snprintf(tmp, sizeof(tmp), "Content-Length: %zu\r\n\r\n", blen);
      n = put(out, n, tmp);
      memcpy(out + n, body, blen);
      n += blen;
      break;
    default:
      n = put(out, n, "Connection: close\r\n\r\n");
      memcpy(out + n, body, blen);
      n += blen;
  }
  return n;
}

static char resp[65536];

/* ---- the stream matrix ------------------------------------------------ */

static void check_one(const stream_t *s, int le, int tr, int every_split) {
  static trace_t whole, part;
  size_t len = build(resp, s, le, tr, 0xABCDEF01ULL + (uint64_t)le);
  int r = run_whole(resp, len, &whole);
  if (r != 0 || whole.n != strlen(s->expect) || memcmp(whole.s, s->expect, whole.n) != 0)
    fprintf(stderr, "stream %s, %s, %s: rc %d (%s)\n", s->name, le_names[le], t_names[tr], r, dec.errmsg);
  ASSERT_EQ(r, 0);
  ASSERT_MEM_EQ(whole.s, whole.n, s->expect, strlen(s->expect));
  ASSERT_EQ(dec.status, 200);
  ASSERT_EQ(dec.is_sse, 1);
  ASSERT_EQ(dec.headers_done, 1);
  ASSERT_EQ(dec.message_done, 1);
  ASSERT_EQ(dec.keep_alive, tr == T_CLOSE ? 0 : 1);
  ASSERT_EQ(dec.saw_done, s->saw_done);
  ASSERT_EQ(dec.body_len, 0);
  ASSERT_EQ(whole.bad_ptr, 0);

  /* Two pieces cut at every byte position. */
  if (every_split) {
    for (size_t i = 0; i <= len; i++) {
      r = run_cuts(resp, len, &i, 1, &part);
      if (r != 0 || part.n != whole.n || memcmp(part.s, whole.s, whole.n) != 0)
        fprintf(stderr, "stream %s, %s, %s, cut at %zu: rc %d (%s)\n", s->name, le_names[le],
                t_names[tr], i, r, dec.errmsg);
      ASSERT_EQ(r, 0);
      ASSERT_MEM_EQ(part.s, part.n, whole.s, whole.n);
      ASSERT_EQ(part.bad_ptr, 0);
      ASSERT_EQ(dec.saw_done, s->saw_done);
    }
  }
  /* One byte at a time. */
  static size_t cuts[65536];
  for (size_t i = 0; i + 1 < len; i++) cuts[i] = i + 1;
  r = run_cuts(resp, len, cuts, (int)len - 1, &part);
  ASSERT_EQ(r, 0);
  ASSERT_MEM_EQ(part.s, part.n, whole.s, whole.n);
  ASSERT_EQ(part.bad_ptr, 0);
  /* Random pieces, fixed seed. */
  for (int round = 0; round < 40; round++) {
    int nc = 1 + (int)(rnd() % 24);
    size_t at = 0;
    int k = 0;
    while (k < nc && at < len) {
      at += 1 + rnd() % (2 * len / (size_t)nc + 1);
      if (at >= len) break;
      cuts[k++] = at;
    }
    r = run_cuts(resp, len, cuts, k, &part);
    ASSERT_EQ(r, 0);
    ASSERT_MEM_EQ(part.s, part.n, whole.s, whole.n);
    ASSERT_EQ(part.bad_ptr, 0);
  }
}

static void test_streams_lf(void) {
  rng_state = 0x1234567ULL;
  for (int i = 0; i < NSTREAMS; i++)
    for (int tr = 0; tr < T_N; tr++) {
      check_one(&streams[i], LE_LF, tr, 1);
      if (sl__test_cur_failed) return;
    }
}

static void test_streams_crlf(void) {
  rng_state = 0x2345678ULL;
  for (int i = 0; i < NSTREAMS; i++)
    for (int tr = 0; tr < T_N; tr++) {
      check_one(&streams[i], LE_CRLF, tr, 1);
      if (sl__test_cur_failed) return;
    }
}

static void test_streams_lone_cr(void) {
  rng_state = 0x3456789ULL;
  for (int i = 0; i < NSTREAMS; i++)
    for (int tr = 0; tr < T_N; tr++) {
      check_one(&streams[i], LE_CR, tr, 1);
      if (sl__test_cur_failed) return;
    }
}

/* An unsplit read of a normal stream costs no copy: every event's raw span
 * lies in the caller's input. */
static void test_zero_copy_unsplit(void) {
  static trace_t t;
  for (int i = 0; i < NSTREAMS; i++) {
    if (strcmp(streams[i].name, "quirks") == 0) continue;
    for (int le = 0; le < LE_N; le++)
      for (int tr = 0; tr < T_N; tr++) {
        if (tr == T_CHUNK_RANDOM) continue; /* chunk boundaries cut events there */
        size_t len = build(resp, &streams[i], le, tr, 1);
        ASSERT_EQ(run_whole(resp, len, &t), 0);
        ASSERT_GT(t.events, 0);
        ASSERT_EQ(t.not_in_input, 0);
        ASSERT_EQ(t.bad_ptr, 0);
      }
  }
  /* The multi-line event of the quirks stream is the only joined one. */
  const stream_t *q = &streams[NSTREAMS - 1];
  size_t len = build(resp, q, LE_LF, T_CHUNK_PER_EVENT, 1);
  ASSERT_EQ(run_whole(resp, len, &t), 0);
  ASSERT_EQ(t.not_in_input, 1);
  ASSERT_EQ(dec.events_after_done, 2);
  ASSERT_UINT_EQ(dec.sse.comments, 1);
}

/* ---- failures --------------------------------------------------------- */

#define SSE_HEAD "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
#define SSE_HEAD_NOTE "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"

static int run_str(const char *s, trace_t *t) { return run_whole(s, strlen(s), t); }

/* head (status line and headers, without the blank line) plus a chunked
 * body made of the given chunks, NULL-terminated.  Returns a static string. */
static const char *mk_chunked(const char *head, ...) {
  static char out[8192];
  va_list ap;
  size_t n = (size_t)snprintf(out, sizeof(out), "%sTransfer-Encoding: chunked\r\n\r\n", head);
  va_start(ap, head);
  for (const char *c = va_arg(ap, const char *); c != NULL; c = va_arg(ap, const char *))
    n += (size_t)snprintf(out + n, sizeof(out) - n, "%zx\r\n%s\r\n", strlen(c), c);
  va_end(ap);
  snprintf(out + n, sizeof(out) - n, "0\r\n\r\n");
  return out;
}

/* head plus a Content-Length body. */
static const char *mk_length(const char *head, const char *body) {
  static char out[8192];
  snprintf(out, sizeof(out), "%sContent-Length: %zu\r\n\r\n%s", head, strlen(body), body);
  return out;
}

static void test_malformed_http(void) {
  static trace_t t;
  const char *bad[] = {
      "HTTP/1.1 2x0 OK\r\n\r\n",
      "FOO/1.1 200 OK\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Type text/event-stream\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
      "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX\001Y: a\r\n\r\n",          /* control byte in a header name */
      "HTTP/1.1 200 OK\r\nX: a\001b\r\n\r\n",          /* ... and in a value */
      "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
      "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", /* a TLS hello */
      SSE_HEAD "zz\r\ndata: x\r\n",                   /* chunk size not hex */
      SSE_HEAD "-1\r\n",
      SSE_HEAD "ffffffffffffffffff\r\n",              /* overflows */
      SSE_HEAD "5\r\nhelloXX\r\n0\r\n\r\n",             /* no CRLF after the data */
      SSE_HEAD "5 5\r\nhello\r\n",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int r = run_str(bad[i], &t);
    if (r != SL_EPARSE) fprintf(stderr, "case %zu: rc %d\n", i, r);
    ASSERT_EQ(r, SL_EPARSE);
    ASSERT_EQ(t.events, 0);
    ASSERT(strstr(dec.errmsg, "HTTP") != NULL);
    /* The error is sticky. */
    ASSERT_EQ(sl_updec_feed(&dec, "x", 1, on_event, &t), SL_EPARSE);
    ASSERT_EQ(sl_updec_eof(&dec), SL_EPARSE);
  }
  /* A 101 upgrade is not a stream either. */
  ASSERT_EQ(run_str("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", &t),
            SL_EPARSE);
}

static void test_body_garbage_and_bad_json(void) {
  static trace_t t;
  /* Garbage lines with no data field are ignored, as the spec says. */
  ASSERT_EQ(run_str(mk_chunked(SSE_HEAD_NOTE, "\xff\xfe\x01garbage\n", "\x80:\n\n", NULL), &t), 0);
  ASSERT_EQ(t.events, 0);
  /* Garbage as data is not JSON. */
  ASSERT_EQ(run_str(mk_chunked(SSE_HEAD_NOTE, "data: \x01\xfe zzz\n\n", NULL), &t), SL_EPARSE);
  ASSERT(strstr(dec.errmsg, "JSON") != NULL);
  /* Truncated JSON after a good event: the good one was delivered first. */
  const char *trunc = mk_chunked(SSE_HEAD_NOTE, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
                                 "data: {\"id\":\"x\",\"choices\":[{\n\n", NULL);
  ASSERT_EQ(run_str(trunc, &t), SL_EPARSE);
  ASSERT_EQ(t.events, 1);
  ASSERT_MEM_EQ(t.s, t.n, "CHUNK text=a\n", 13);
  ASSERT_EQ(sl_updec_eof(&dec), SL_EPARSE);
  /* A payload that is JSON but not an object. */
  ASSERT_EQ(run_str(mk_chunked(SSE_HEAD_NOTE, "data: 42\n\n", NULL), &t), SL_EPARSE);
  /* Bad JSON after [DONE] is ignored, as the SDKs stop reading there. */
  ASSERT_EQ(run_str(mk_chunked(SSE_HEAD_NOTE, "data: [DONE]\n\n", "data: {oops\n\n", NULL), &t), 0);
  ASSERT_EQ(dec.events_after_done, 1);
  /* `event: error` with text that is not JSON is an error event. */
  ASSERT_EQ(run_str(mk_chunked(SSE_HEAD_NOTE, "event: error\ndata: out of memory\n\n", NULL), &t), 0);
  ASSERT_MEM_EQ(t.s, t.n, "ERROR msg=- type=- code=-\n", 26);
}

static void test_join_buffer_overflow(void) {
  static trace_t t;
  /* One event with 300 bytes of data against a 256-byte join buffer. */
  char big[1024];
  char data[301];
  memset(data, 'x', 300);
  data[300] = '\0';
  char ev[512];
  int evn = snprintf(ev, sizeof(ev), "data: {\"choices\":[{\"delta\":{\"content\":\"%s\"}}]}\n\n", data);
  int n = snprintf(big, sizeof(big), SSE_HEAD "%x\r\n%s\r\n0\r\n\r\n", evn, ev);
  ASSERT_EQ(run_cuts_cap(big, (size_t)n, NULL, 0, 256, &t), SL_ETOOBIG);
  ASSERT(strstr(dec.errmsg, "join buffer") != NULL);
  for (size_t i = 0; i <= (size_t)n; i += 7) {
    ASSERT_EQ(run_cuts_cap(big, (size_t)n, &i, 1, 256, &t), SL_ETOOBIG);
    ASSERT_EQ(t.events, 0);
  }
  /* The same response fits a larger buffer. */
  ASSERT_EQ(run_cuts_cap(big, (size_t)n, NULL, 0, 512, &t), 0);
  ASSERT_EQ(t.events, 1);
}

static void test_truncation_at_eof(void) {
  static trace_t t;
  for (int tr = 0; tr < T_N; tr++) {
    size_t len = build(resp, &streams[0], LE_LF, tr, 7);
    for (size_t cut = 0; cut < len; cut++) {
      int r = run_whole(resp, cut, &t);
      size_t head = (size_t)(strstr(resp, "\r\n\r\n") - resp) + 4;
      /* A close-delimited body can only be cut short before its headers end. */
      int want = (tr == T_CLOSE && cut >= head) ? 0 : SL_EUPSTREAM;
      if (r != want) fprintf(stderr, "%s cut %zu: rc %d\n", t_names[tr], cut, r);
      ASSERT_EQ(r, want);
      ASSERT_EQ(dec.message_done, want == 0);
    }
    ASSERT_EQ(run_whole(resp, len, &t), 0);
  }
  /* Nothing at all. */
  sl_updec_init(&dec, joinbuf, sizeof(joinbuf));
  ASSERT_EQ(sl_updec_eof(&dec), SL_EUPSTREAM);
  ASSERT(strstr(dec.errmsg, "headers") != NULL);
}

static void test_pipelined_junk(void) {
  static trace_t t;
  size_t len = build(resp, &streams[6], LE_LF, T_CHUNK_PER_EVENT, 1);
  memcpy(resp + len, "HTTP/1.1 200 OK\r\n\r\n", 19);
  ASSERT_EQ(run_whole(resp, len + 19, &t), SL_EPARSE);
  ASSERT_EQ(t.events, 2); /* the response itself was decoded */
  ASSERT(strstr(dec.errmsg, "after the end") != NULL);
  /* Junk in a later read. */
  size_t cut = len;
  ASSERT_EQ(run_cuts(resp, len + 1, &cut, 1, &t), SL_EPARSE);
  /* Even a stray CRLF after a Content-Length body. */
  len = build(resp, &streams[6], LE_LF, T_LENGTH, 1);
  memcpy(resp + len, "\r\n", 2);
  ASSERT_EQ(run_whole(resp, len + 2, &t), SL_EPARSE);
}

static void test_callback_cancels(void) {
  static trace_t t;
  size_t len = build(resp, &streams[0], LE_LF, T_CHUNK_RANDOM, 3);
  sl_updec_init(&dec, joinbuf, sizeof(joinbuf));
  memset(&t, 0, sizeof(t));
  t.lo = resp;
  t.hi = resp + len;
  t.stop_after = 2;
  ASSERT_EQ(sl_updec_feed(&dec, resp, len, on_event, &t), SL_ECANCELED);
  ASSERT_EQ(t.events, 2);
  ASSERT_EQ(sl_updec_feed(&dec, resp, len, on_event, &t), SL_ECANCELED);
  ASSERT_EQ(t.events, 2); /* no callback after a failure */
  ASSERT_EQ(sl_updec_eof(&dec), SL_ECANCELED);
}

static void test_non_sse_replies(void) {
  static trace_t t;
  /* vLLM 400 before the stream. */
  const char *body400 =
      "{\"error\":{\"message\":\"max_tokens is too large\",\"type\":\"BadRequestError\",\"param\":null,\"code\":400}}";
  ASSERT_EQ(run_str(mk_length("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n", body400), &t), 0);
  ASSERT_EQ(dec.status, 400);
  ASSERT_EQ(dec.is_sse, 0);
  ASSERT_EQ(dec.message_done, 1);
  ASSERT_EQ(dec.keep_alive, 1);
  ASSERT_EQ(t.events, 0);
  ASSERT_MEM_EQ(dec.body, dec.body_len, body400, strlen(body400));
  /* llama.cpp loading: 503 with a JSON body, chunked. */
  const char *r503 = mk_chunked("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n",
                                "{\"error\":{\"code\":503,\"message\":", "\"Loading model\",\"type\":\"unavailable_error\"}}",
                                NULL);
  ASSERT_EQ(run_str(r503, &t), 0);
  ASSERT_EQ(dec.status, 503);
  const char *want503 = "{\"error\":{\"code\":503,\"message\":\"Loading model\",\"type\":\"unavailable_error\"}}";
  ASSERT_MEM_EQ(dec.body, dec.body_len, want503, strlen(want503));
  /* An SSE content type on an error status is still not decoded. */
  ASSERT_EQ(run_str(mk_length("HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/event-stream\r\n",
                              "data: {\"a\"\n\n"),
                    &t),
            0);
  ASSERT_EQ(dec.is_sse, 1);
  ASSERT_EQ(t.events, 0);
  ASSERT_MEM_EQ(dec.body, dec.body_len, "data: {\"a\"\n\n", 12);
  /* A 200 that is not SSE (a non-streaming answer): no error here. */
  ASSERT_EQ(run_str("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", &t), 0);
  ASSERT_EQ(dec.is_sse, 0);
  ASSERT_EQ(dec.body_len, 2);
  /* TGI healthy /health: empty body; Ollama liveness text. */
  ASSERT_EQ(run_str("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", &t), 0);
  ASSERT_EQ(dec.message_done, 1);
  ASSERT_EQ(dec.body_len, 0);
  ASSERT_EQ(run_str("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 17\r\n\r\nOllama is running", &t), 0);
  ASSERT_MEM_EQ(dec.body, dec.body_len, "Ollama is running", 17);
  /* Ollama NDJSON is recognized (decoded elsewhere). */
  ASSERT_EQ(run_str("HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: 2\r\n\r\n{}", &t), 0);
  ASSERT_EQ(dec.is_ndjson, 1);
  ASSERT_EQ(dec.is_sse, 0);
  /* A long body: the first 4096 bytes are kept, all are counted. */
  static char big[12000];
  int n = snprintf(big, sizeof(big), "HTTP/1.0 502 Bad Gateway\r\nContent-Type: text/html\r\n\r\n");
  for (int i = 0; i < 10000; i++) big[n++] = (char)('a' + i % 26);
  ASSERT_EQ(run_whole(big, (size_t)n, &t), 0);
  ASSERT_EQ(dec.status, 502);
  ASSERT_EQ(dec.body_len, SL_UPDEC_BODY_MAX);
  ASSERT_UINT_EQ(dec.body_total, 10000);
  ASSERT_EQ(dec.keep_alive, 0);
  ASSERT_EQ(dec.body[4095], (char)('a' + 4095 % 26));
}

static void test_content_types(void) {
  static trace_t t;
  struct { const char *ct; int sse; } cases[] = {
      {"text/event-stream", 1},
      {"text/event-stream; charset=utf-8", 1},
      {"TEXT/EVENT-STREAM;charset=UTF-8", 1},
      {"text/event-stream ; q=1", 1},
      {"text/event-streamx", 0},
      {"text/event", 0},
      {"application/json", 0},
      {"text/event-stream-but-this-media-type-is-much-too-long-to-be-kept-anyway", 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char r[512];
    snprintf(r, sizeof(r), "HTTP/1.1 200 OK\r\nX-Before: 1\r\ncontent-TYPE: %s\r\nContent-Length: 15\r\n\r\ndata: [DONE]\n\n\n", cases[i].ct);
    ASSERT_EQ(run_str(r, &t), 0);
    ASSERT_EQ(dec.is_sse, cases[i].sse);
    ASSERT_EQ(t.events, cases[i].sse);
  }
  /* Header names and values split across reads. */
  const char *r = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 14\r\n\r\ndata: [DONE]\n\n";
  for (size_t i = 0; i <= strlen(r); i++) {
    ASSERT_EQ(run_cuts(r, strlen(r), &i, 1, &t), 0);
    ASSERT_EQ(dec.is_sse, 1);
    ASSERT_EQ(dec.saw_done, 1);
  }
}

static void test_keep_alive_reuse_and_interim(void) {
  static trace_t t;
  sl_updec_init(&dec, joinbuf, sizeof(joinbuf));
  const char *a = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 14\r\n\r\ndata: [DONE]\n\n";
  memset(&t, 0, sizeof(t));
  t.lo = a;
  t.hi = a + strlen(a);
  for (int round = 0; round < 3; round++) {
    ASSERT_EQ(sl_updec_feed(&dec, a, strlen(a), on_event, &t), 0);
    ASSERT_EQ(dec.message_done, 1);
    ASSERT_EQ(dec.keep_alive, 1);
    ASSERT_EQ(dec.saw_done, 1);
    ASSERT_EQ(sl_updec_eof(&dec), 0);
    sl_updec_reset(&dec);
    ASSERT_EQ(dec.saw_done, 0);
    ASSERT_EQ(dec.status, 0);
  }
  ASSERT_EQ(t.events, 3);
  /* Connection: close and HTTP/1.0 end the connection. */
  ASSERT_EQ(run_str("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", &t), 0);
  ASSERT_EQ(dec.keep_alive, 0);
  ASSERT_EQ(run_str("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", &t), 0);
  ASSERT_EQ(dec.keep_alive, 0);
  /* 100 Continue before the real response. */
  const char *c = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                  "Content-Length: 14\r\n\r\ndata: [DONE]\n\n";
  for (size_t i = 0; i <= strlen(c); i++) {
    ASSERT_EQ(run_cuts(c, strlen(c), &i, 1, &t), 0);
    ASSERT_EQ(dec.status, 200);
    ASSERT_EQ(dec.saw_done, 1);
    ASSERT_EQ(t.events, 1);
  }
  ASSERT_EQ(run_whole(c, 25, &t), SL_EUPSTREAM); /* only the interim one arrived */
}

/* ---- Retry-After ------------------------------------------------------ */

#define RA_CAP_MS 2147483648000LL /* 2^31 s, RFC 9111's cap on delta-seconds */

static char ra_resp[1024];

/* A 429 carrying the header lines hdrs ("Name: value\r\n"...). */
static size_t mk_429(const char *hdrs) {
  return (size_t)snprintf(ra_resp, sizeof(ra_resp),
                          "HTTP/1.1 429 Too Many Requests\r\n%sContent-Type: application/json\r\n"
                          "Content-Length: 2\r\n\r\n{}",
                          hdrs);
}

/* Decodes the 429 with hdrs whole, cut in two at every byte and one byte
 * at a time; returns the number of decodes whose retry_after_ms was not
 * in [lo, hi] (or not a whole number of seconds when secs is set), so the
 * caller asserts 0. */
static int ra_check(const char *hdrs, int64_t lo, int64_t hi, int secs) {
  static trace_t t;
  static size_t cuts[1024];
  size_t len = mk_429(hdrs);
  int bad = 0;
  for (size_t i = 0; i <= len + 1; i++) {
    int r;
    if (i <= len) {
      r = i == len ? run_whole(ra_resp, len, &t) : run_cuts(ra_resp, len, &i, 1, &t);
    } else {
      for (size_t k = 0; k + 1 < len; k++) cuts[k] = k + 1;
      r = run_cuts(ra_resp, len, cuts, (int)len - 1, &t);
    }
    int64_t v = dec.retry_after_ms;
    if (r != 0 || dec.status != 429 || v < lo || v > hi || (secs && v % 1000 != 0)) {
      fprintf(stderr, "%s(cut %zu) rc %d: retry_after_ms %lld, want [%lld, %lld]\n", hdrs, i, r,
              (long long)v, (long long)lo, (long long)hi);
      bad++;
    }
  }
  return bad;
}

static int ra_is(const char *hdrs, int64_t want) { return ra_check(hdrs, want, want, 0); }

/* An HTTP-date for the moment epoch: the wish is epoch minus the decoder's
 * time(), which lies between the clock read before and after each decode,
 * so the check holds however long a decode takes. */
static int ra_date(const char *hdrs, int64_t epoch) {
  static trace_t t;
  size_t len = mk_429(hdrs);
  int bad = 0;
  for (size_t i = 0; i <= len; i++) {
    int64_t t0 = (int64_t)time(NULL);
    int r = i == len ? run_whole(ra_resp, len, &t) : run_cuts(ra_resp, len, &i, 1, &t);
    int64_t t1 = (int64_t)time(NULL);
    int64_t lo = epoch > t1 ? (epoch - t1) * 1000 : 0, hi = epoch > t0 ? (epoch - t0) * 1000 : 0;
    int64_t v = dec.retry_after_ms;
    if (r != 0 || v < lo || v > hi || v % 1000 != 0) {
      fprintf(stderr, "%s(cut %zu) rc %d: retry_after_ms %lld, want [%lld, %lld]\n", hdrs, i, r,
              (long long)v, (long long)lo, (long long)hi);
      bad++;
    }
  }
  return bad;
}

static void test_retry_after(void) {
  /* Absent, or only look-alike names. */
  ASSERT_EQ(ra_is("", -1), 0);
  ASSERT_EQ(ra_is("X-Retry-After: 5\r\nRetry-After-Sec: 5\r\nRetry-Afte: 5\r\nretry-after-msec: 5\r\n", -1), 0);
  /* Delta-seconds. */
  ASSERT_EQ(ra_is("Retry-After: 5\r\n", 5000), 0);
  ASSERT_EQ(ra_is("retry-after: 0\r\n", 0), 0);
  ASSERT_EQ(ra_is("RETRY-AFTER:    120  \r\n", 120000), 0);
  ASSERT_EQ(ra_is("Retry-After:\t7\r\n", 7000), 0);
  ASSERT_EQ(ra_is("Retry-After: 8                                                            \r\n", 8000), 0);
  ASSERT_EQ(ra_is("Retry-After: 99999999999999999999\r\n", RA_CAP_MS), 0);
  /* Milliseconds. */
  ASSERT_EQ(ra_is("retry-after-ms: 1500\r\n", 1500), 0);
  ASSERT_EQ(ra_is("Retry-After-Ms: 0\r\n", 0), 0);
  ASSERT_EQ(ra_is("retry-after-ms: 99999999999999999999\r\n", RA_CAP_MS), 0);
  /* Both: the milliseconds win, in either order, unless they are malformed. */
  ASSERT_EQ(ra_is("Retry-After: 5\r\nretry-after-ms: 250\r\n", 250), 0);
  ASSERT_EQ(ra_is("retry-after-ms: 250\r\nRetry-After: 5\r\n", 250), 0);
  ASSERT_EQ(ra_is("retry-after-ms: 0\r\nRetry-After: 5\r\n", 0), 0);
  ASSERT_EQ(ra_is("retry-after-ms: 2.5s\r\nRetry-After: 5\r\n", 5000), 0);
  ASSERT_EQ(ra_is("retry-after-ms: 250\r\nRetry-After: later\r\n", 250), 0);
  /* A repeated header: the last copy counts. */
  ASSERT_EQ(ra_is("Retry-After: 5\r\nRetry-After: 9\r\n", 9000), 0);
  ASSERT_EQ(ra_is("Retry-After: 5\r\nRetry-After: x\r\n", -1), 0);
  /* Malformed. */
  const char *bad[] = {
      "Retry-After: soon\r\n",
      "Retry-After: -5\r\n",
      "Retry-After: +5\r\n",
      "Retry-After: 1.5\r\n",
      "Retry-After: 5s\r\n",
      "Retry-After: 5 5\r\n",
      "Retry-After: 0x10\r\n",
      "Retry-After:\r\n",
      "Retry-After: Sun, 06 Nov 1994 08:49:37\r\n",      /* no zone */
      "Retry-After: Sun, 06 Nov 1994 08:49:37 UTC\r\n",  /* not GMT */
      "Retry-After: sun, 06 nov 1994 08:49:37 gmt\r\n",  /* HTTP-dates are case-sensitive */
      "Retry-After: Sun, 6 Nov 1994 08:49:37 GMT\r\n",   /* one-digit day */
      "Retry-After: Sun, 06 Nox 1994 08:49:37 GMT\r\n",
      "Retry-After: Mon, 29 Feb 2100 00:00:00 GMT\r\n",  /* 2100 is not a leap year */
      "Retry-After: Sat, 31 Apr 2100 00:00:00 GMT\r\n",
      "Retry-After: Fri, 01 Jan 2100 24:00:00 GMT\r\n",
      "Retry-After: Fri, 01 Jan 2100 00:60:00 GMT\r\n",
      "Retry-After: Fri, 01 Jan 2100 00:00:00 GMT x\r\n",
      "Retry-After: Fri, 01 Jan 2100 00:00:00 GMT and then some more text after it\r\n", /* longer than kept */
      "Retry-After: 5                                                                     x\r\n",
      "Retry-After: 0000000000000000000000000000000000000000000000000000000000000000005\r\n", /* too long to keep */
      "Retry-After: Friday, 01 Jan 2100 00:00:00 GMT\r\n",
      "Retry-After: Sunday, 06-Nov-1994 08:49:37 GMT\r\n",
      "Retry-After: Sun Nov 6 08:49:37 1994\r\n",
      "retry-after-ms: 12abc\r\n",
      "retry-after-ms: -1\r\n",
      "retry-after-ms: 1.5\r\n",
      "retry-after-ms: Fri, 01 Jan 2100 00:00:00 GMT\r\n", /* only Retry-After may be a date */
      "retry-after-ms:\r\n",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) ASSERT_EQ(ra_is(bad[i], -1), 0);
  /* HTTP-dates in the past: 0. */
  ASSERT_EQ(ra_is("Retry-After: Sun, 06 Nov 1994 08:49:37 GMT\r\n", 0), 0);
  ASSERT_EQ(ra_is("Retry-After: Sunday, 06-Nov-94 08:49:37 GMT\r\n", 0), 0);
  ASSERT_EQ(ra_is("Retry-After: Sun Nov  6 08:49:37 1994\r\n", 0), 0);
  ASSERT_EQ(ra_is("Retry-After: Thu, 01 Jan 1970 00:00:00 GMT\r\n", 0), 0);
  /* In the future: the seconds from now, in all three forms (the epochs
   * are computed independently: 2050-01-01 and 2028-02-29T12:34:56). */
  ASSERT_EQ(ra_date("Retry-After: Sat, 01 Jan 2050 00:00:00 GMT\r\n", 2524608000LL), 0);
  ASSERT_EQ(ra_date("Retry-After: Tue, 29 Feb 2028 12:34:56 GMT\r\n", 1835440496LL), 0);
  ASSERT_EQ(ra_date("Retry-After: Tuesday, 29-Feb-28 12:34:56 GMT\r\n", 1835440496LL), 0);
  ASSERT_EQ(ra_date("Retry-After: Tue Feb 29 12:34:56 2028\r\n", 1835440496LL), 0);
  /* An hour from now, written as a server would. */
  time_t soon = time(NULL) + 3600;
  struct tm tm;
  gmtime_r(&soon, &tm);
  char line[96];
  strftime(line, sizeof(line), "Retry-After: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
  ASSERT_EQ(ra_date(line, (int64_t)soon), 0);
  ASSERT_EQ(ra_check(line, 3000 * 1000, 3600 * 1000, 1), 0); /* and it is about an hour */
  /* Too far ahead: capped like delta-seconds. */
  ASSERT_EQ(ra_is("Retry-After: Fri, 31 Dec 9999 23:59:59 GMT\r\n", RA_CAP_MS), 0);
}

/* The wish belongs to one final response: not to a 1xx before it, not to
 * the previous response on the connection, and not before the headers end. */
static void test_retry_after_per_response(void) {
  static trace_t t;
  sl_updec_init(&dec, joinbuf, sizeof(joinbuf));
  ASSERT_EQ(dec.retry_after_ms, -1);
  memset(&t, 0, sizeof(t));
  const char *a = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n";
  const char *b = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 14\r\n\r\ndata: [DONE]\n\n";
  const char *head = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\n";
  ASSERT_EQ(sl_updec_feed(&dec, head, strlen(head), on_event, &t), 0);
  ASSERT_EQ(dec.retry_after_ms, -1); /* the headers are not over yet */
  const char *rest = "Content-Length: 0\r\n\r\n";
  ASSERT_EQ(sl_updec_feed(&dec, rest, strlen(rest), on_event, &t), 0);
  ASSERT_EQ(dec.retry_after_ms, 3000);
  sl_updec_reset(&dec);
  ASSERT_EQ(dec.retry_after_ms, -1);
  ASSERT_EQ(sl_updec_feed(&dec, b, strlen(b), on_event, &t), 0);
  ASSERT_EQ(dec.retry_after_ms, -1);
  sl_updec_reset(&dec);
  ASSERT_EQ(sl_updec_feed(&dec, a, strlen(a), on_event, &t), 0);
  ASSERT_EQ(dec.retry_after_ms, 3000);
  /* A stream may carry one too. */
  ASSERT_EQ(run_str("HTTP/1.1 200 OK\r\nretry-after-ms: 40\r\nContent-Type: text/event-stream\r\n"
                    "Content-Length: 14\r\n\r\ndata: [DONE]\n\n",
                    &t),
            0);
  ASSERT_EQ(dec.retry_after_ms, 40);
  ASSERT_EQ(t.events, 1);
  /* An interim response's header is not the final one's. */
  const char *c = "HTTP/1.1 103 Early Hints\r\nRetry-After: 4\r\nretry-after-ms: 4000\r\n\r\n"
                  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  for (size_t i = 0; i <= strlen(c); i++) {
    ASSERT_EQ(run_cuts(c, strlen(c), &i, 1, &t), 0);
    ASSERT_EQ(dec.status, 200);
    ASSERT_EQ(dec.retry_after_ms, -1);
  }
  const char *e = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\n"
                  "Content-Length: 0\r\n\r\n";
  ASSERT_EQ(run_str(e, &t), 0);
  ASSERT_EQ(dec.retry_after_ms, 2000);
}

/* Random bytes, and valid responses with random damage: never a crash,
 * always one of the documented codes. */
static void test_fuzz(void) {
  static char buf[8192];
  static trace_t t;
  rng_state = 0xF022ULL;
  int outcomes[4] = {0};
  for (int i = 0; i < 3000; i++) {
    size_t n;
    int mode = i % 3;
    if (mode == 0) {
      n = rnd() % 600;
      for (size_t k = 0; k < n; k++) buf[k] = (char)rnd();
    } else if (mode == 1) {
      n = (size_t)snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n%s\r\n",
                           rnd() % 2 ? "Transfer-Encoding: chunked\r\n" : "");
      size_t extra = rnd() % 500;
      static const char alpha[] = "data: {}[]\",:\\\r\n0123456789abcdef;[DONE]x";
      for (size_t k = 0; k < extra; k++) buf[n++] = rnd() % 4 ? alpha[rnd() % (sizeof(alpha) - 1)] : (char)rnd();
    } else {
      const stream_t *s = &streams[rnd() % NSTREAMS];
      n = build(resp, s, (int)(rnd() % LE_N), (int)(rnd() % T_N), rnd());
      if (n > sizeof(buf)) n = sizeof(buf);
      memcpy(buf, resp, n);
      int flips = 1 + (int)(rnd() % 4);
      for (int f = 0; f < flips; f++) buf[rnd() % n] = (char)rnd();
    }
    size_t cuts[8];
    int nc = (int)(rnd() % 8);
    for (int k = 0; k < nc; k++) cuts[k] = n ? rnd() % n : 0;
    for (int a = 1; a < nc; a++)
      for (int b = a; b > 0 && cuts[b - 1] > cuts[b]; b--) {
        size_t x = cuts[b];
        cuts[b] = cuts[b - 1];
        cuts[b - 1] = x;
      }
    size_t cap = rnd() % 2 ? sizeof(joinbuf) : 64;
    int r = run_cuts_cap(buf, n, cuts, nc, cap, &t);
    if (!(r == 0 || r == SL_EPARSE || r == SL_ETOOBIG || r == SL_EUPSTREAM))
      fprintf(stderr, "fuzz %d: rc %d\n", i, r);
    ASSERT(r == 0 || r == SL_EPARSE || r == SL_ETOOBIG || r == SL_EUPSTREAM);
    ASSERT_EQ(t.bad_ptr, 0);
    ASSERT_LE(dec.body_len, SL_UPDEC_BODY_MAX);
    outcomes[r == 0 ? 0 : r == SL_EPARSE ? 1 : r == SL_ETOOBIG ? 2 : 3]++;
  }
  fprintf(stderr, "  fuzz: ok %d, parse %d, toobig %d, upstream %d\n", outcomes[0], outcomes[1],
          outcomes[2], outcomes[3]);
}

int main(void) {
  SL_RUN(test_streams_lf);
  SL_RUN(test_streams_crlf);
  SL_RUN(test_streams_lone_cr);
  SL_RUN(test_zero_copy_unsplit);
  SL_RUN(test_malformed_http);
  SL_RUN(test_body_garbage_and_bad_json);
  SL_RUN(test_join_buffer_overflow);
  SL_RUN(test_truncation_at_eof);
  SL_RUN(test_pipelined_junk);
  SL_RUN(test_callback_cancels);
  SL_RUN(test_non_sse_replies);
  SL_RUN(test_content_types);
  SL_RUN(test_keep_alive_reuse_and_interim);
  SL_RUN(test_retry_after);
  SL_RUN(test_retry_after_per_response);
  SL_RUN(test_fuzz);
  fprintf(stderr, "  %ld responses decoded\n", runs);
  return SL_TEST_EXIT();
}
