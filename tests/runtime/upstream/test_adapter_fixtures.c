/* Tests for the engine adapters against wire fixtures (one directory per
 * engine under tests/fixtures, one .txt file a stream): llama.cpp's recorded from the real llama-server, TGI's,
 * Ollama's and vLLM's built from the cited sections of
 * /work/shared/wire-formats.md (each fixture names its source in its
 * header lines).  Each fixture's body is put in a 200 reply and fed to the
 * upstream decoder with the fixture's adapter, cut in two at every byte
 * offset, and the normalized events must equal, every time, those a
 * reference reading of the same payloads with cJSON gives (written from
 * the wire-formats.md facts, independently of the scans): kind, text,
 * finish reason, usage, token ids, the error message, and the DONE the
 * decoder adds after a native stream's last event.  Then the native
 * adapters' request builds: each engine's field names for the OpenAI ones. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/upstream/adapter.h"
#include "runtime/upstream/oai.h"
#include "runtime/upstream/upstream_decoder.h"
#include "test.h"

#define MAXEV 32

/* One event, as comparable values. */
typedef struct {
  int kind;
  int has_text;
  char text[256];
  sl_finish_t finish;
  int has_usage;
  int64_t prompt, completion;
  int n_ids;
  int32_t ids[SL_EV_MAX_TOKEN_IDS];
  char err[256];
} cev_t;

typedef struct {
  cev_t ev[MAXEV];
  int n;
} cevs_t;

typedef struct {
  char adapter[32];
  char ctype[64];
  char *body;
  size_t body_len;
} fixture_t;

static int load_fixture(const char *rel, fixture_t *f) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/fixtures/%s", SL_TEST_SOURCE_DIR, rel);
  FILE *fp = fopen(path, "rb");
  if (fp == NULL) return -1;
  static char buf[65536];
  size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  memset(f, 0, sizeof(*f));
  char *p = buf;
  int source = 0;
  /* Header lines "# key: value" up to the first blank line. */
  while (*p == '#') {
    char *eol = strchr(p, '\n');
    if (eol == NULL) return -1;
    *eol = '\0';
    if (strncmp(p, "# adapter: ", 11) == 0) snprintf(f->adapter, sizeof(f->adapter), "%s", p + 11);
    if (strncmp(p, "# content-type: ", 16) == 0) snprintf(f->ctype, sizeof(f->ctype), "%s", p + 16);
    if (strncmp(p, "# source: ", 10) == 0 && strstr(p, "wire-formats.md") == NULL && strstr(p, "recorded") == NULL)
      return -1; /* a fixture names where it comes from */
    if (strncmp(p, "# source: ", 10) == 0 || strncmp(p, "# section: ", 11) == 0) source = 1;
    p = eol + 1;
  }
  if (!source || *p != '\n') return -1;
  p++;
  f->body = p;
  f->body_len = n - (size_t)(p - buf);
  return 0;
}

/* ---- the reference: cJSON over each payload ---- */

static sl_finish_t ref_finish(const char *s) {
  if (strcmp(s, "stop") == 0 || strcmp(s, "eos_token") == 0 || strcmp(s, "stop_sequence") == 0)
    return SL_FINISH_STOP;
  if (strcmp(s, "length") == 0) return SL_FINISH_LENGTH;
  if (strcmp(s, "tool_calls") == 0) return SL_FINISH_TOOL_CALLS;
  return SL_FINISH_OTHER;
}

static void ref_text(cev_t *e, const cJSON *s) {
  if (!cJSON_IsString(s)) return;
  e->has_text = 1;
  snprintf(e->text, sizeof(e->text), "%s", s->valuestring);
}

static void ref_ids(cev_t *e, const cJSON *arr) {
  const cJSON *v;
  cJSON_ArrayForEach(v, arr) e->ids[e->n_ids++] = (int32_t)v->valuedouble;
}

static void ref_usage(cev_t *e, const cJSON *prompt, const cJSON *completion) {
  if (!cJSON_IsNumber(prompt) || !cJSON_IsNumber(completion)) return;
  e->has_usage = 1;
  e->prompt = (int64_t)prompt->valuedouble;
  e->completion = (int64_t)completion->valuedouble;
}

/* One payload as the adapter should read it; returns 1 when it ends a
 * native stream (a DONE follows). */
static int ref_event(const char *adapter, const char *payload, cev_t *e) {
  memset(e, 0, sizeof(*e));
  e->kind = SL_EV_CHUNK;
  if (strcmp(payload, "[DONE]") == 0) {
    e->kind = SL_EV_DONE;
    return 0;
  }
  cJSON *j = cJSON_Parse(payload);
  if (j == NULL) { /* a fixture payload that is not JSON: the reference fails loudly */
    e->kind = -1;
    return 0;
  }
  const cJSON *err = cJSON_GetObjectItem(j, "error");
  int end = 0;
  if (err != NULL) {
    e->kind = SL_EV_ERROR;
    const cJSON *m = cJSON_IsString(err) ? err : cJSON_GetObjectItem(err, "message");
    snprintf(e->err, sizeof(e->err), "%s", m->valuestring);
  } else if (strcmp(adapter, "llamacpp") == 0) {
    ref_text(e, cJSON_GetObjectItem(j, "content"));
    ref_ids(e, cJSON_GetObjectItem(j, "tokens"));
    if (cJSON_IsTrue(cJSON_GetObjectItem(j, "stop"))) {
      end = 1;
      e->finish = strcmp(cJSON_GetObjectItem(j, "stop_type")->valuestring, "limit") == 0 ? SL_FINISH_LENGTH
                                                                                         : SL_FINISH_STOP;
      ref_usage(e, cJSON_GetObjectItem(j, "tokens_evaluated"), cJSON_GetObjectItem(j, "tokens_predicted"));
    }
  } else if (strcmp(adapter, "tgi") == 0) {
    const cJSON *tok = cJSON_GetObjectItem(j, "token");
    if (!cJSON_IsTrue(cJSON_GetObjectItem(tok, "special"))) ref_text(e, cJSON_GetObjectItem(tok, "text"));
    e->ids[e->n_ids++] = (int32_t)cJSON_GetObjectItem(tok, "id")->valuedouble;
    if (cJSON_IsString(cJSON_GetObjectItem(j, "generated_text"))) {
      end = 1;
      const cJSON *d = cJSON_GetObjectItem(j, "details");
      e->finish = ref_finish(cJSON_GetObjectItem(d, "finish_reason")->valuestring);
      ref_usage(e, cJSON_GetObjectItem(d, "input_length"), cJSON_GetObjectItem(d, "generated_tokens"));
    }
  } else if (strcmp(adapter, "ollama") == 0) {
    ref_text(e, cJSON_GetObjectItem(j, "response"));
    ref_text(e, cJSON_GetObjectItem(cJSON_GetObjectItem(j, "message"), "content"));
    if (cJSON_IsTrue(cJSON_GetObjectItem(j, "done"))) {
      end = 1;
      e->finish = ref_finish(cJSON_GetObjectItem(j, "done_reason")->valuestring);
      ref_usage(e, cJSON_GetObjectItem(j, "prompt_eval_count"), cJSON_GetObjectItem(j, "eval_count"));
    }
  } else { /* vllm: OpenAI chunks */
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    ref_text(e, cJSON_GetObjectItem(c0, "text"));
    ref_text(e, cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "delta"), "content"));
    const cJSON *fr = cJSON_GetObjectItem(c0, "finish_reason");
    if (cJSON_IsString(fr)) e->finish = ref_finish(fr->valuestring);
    ref_ids(e, cJSON_GetObjectItem(c0, "token_ids"));
    const cJSON *u = cJSON_GetObjectItem(j, "usage");
    ref_usage(e, cJSON_GetObjectItem(u, "prompt_tokens"), cJSON_GetObjectItem(u, "completion_tokens"));
  }
  cJSON_Delete(j);
  return end;
}

/* The payloads of the fixture's body (SSE data lines, or NDJSON lines),
 * read plainly: these fixtures have one data line an event. */
static void reference(const fixture_t *f, cevs_t *out) {
  int ndjson = strstr(f->ctype, "ndjson") != NULL;
  out->n = 0;
  const char *p = f->body, *e = f->body + f->body_len;
  while (p < e) {
    const char *eol = memchr(p, '\n', (size_t)(e - p));
    size_t n = eol ? (size_t)(eol - p) : (size_t)(e - p);
    char line[8192];
    const char *payload = NULL;
    if (ndjson && n > 0) payload = p;
    else if (!ndjson && n >= 5 && memcmp(p, "data:", 5) == 0) {
      payload = p + 5;
      if (*payload == ' ') payload++;
    }
    if (payload != NULL) {
      size_t m = (size_t)(p + n - payload);
      memcpy(line, payload, m);
      line[m] = '\0';
      if (ref_event(f->adapter, line, &out->ev[out->n++])) {
        memset(&out->ev[out->n], 0, sizeof(cev_t));
        out->ev[out->n++].kind = SL_EV_DONE;
      }
    }
    p += n + 1;
  }
}

/* ---- the decoder's events ---- */

static int collect(void *ud, const sl_event_t *ev) {
  cevs_t *out = ud;
  if (out->n >= MAXEV) return 1;
  cev_t *e = &out->ev[out->n++];
  memset(e, 0, sizeof(*e));
  e->kind = (int)ev->kind;
  if (ev->kind == SL_EV_ERROR) {
    size_t w = sl_json_unescape(e->err, sizeof(e->err) - 1, ev->err_message.p, ev->err_message.n);
    e->err[w == (size_t)-1 ? 0 : w] = '\0';
    return 0;
  }
  if (ev->kind == SL_EV_DONE) return 0;
  e->has_text = ev->has_text;
  if (ev->has_text) {
    size_t w = sl_json_unescape(e->text, sizeof(e->text) - 1, ev->text.p, ev->text.n);
    e->text[w == (size_t)-1 ? 0 : w] = '\0';
  }
  e->finish = ev->finish;
  e->has_usage = ev->has_usage;
  e->prompt = ev->prompt_tokens;
  e->completion = ev->completion_tokens;
  e->n_ids = ev->has_token_ids ? ev->n_token_ids : 0;
  memcpy(e->ids, ev->token_ids, sizeof(int32_t) * (size_t)e->n_ids);
  return 0;
}

static int same(const cev_t *a, const cev_t *b, int i, size_t cut) {
  int ok = a->kind == b->kind && a->has_text == b->has_text && strcmp(a->text, b->text) == 0 &&
           a->finish == b->finish && a->has_usage == b->has_usage && a->prompt == b->prompt &&
           a->completion == b->completion && a->n_ids == b->n_ids &&
           memcmp(a->ids, b->ids, sizeof(int32_t) * (size_t)a->n_ids) == 0 && strcmp(a->err, b->err) == 0;
  if (!ok)
    fprintf(stderr, "  event %d (cut at %zu): kind %d/%d text \"%s\"/\"%s\" finish %d/%d usage %d:%lld,%lld/%d:%lld,%lld "
            "ids %d/%d err \"%s\"/\"%s\"\n", i, cut, a->kind, b->kind, a->text, b->text, a->finish, b->finish,
            a->has_usage, (long long)a->prompt, (long long)a->completion, b->has_usage, (long long)b->prompt,
            (long long)b->completion, a->n_ids, b->n_ids, a->err, b->err);
  return ok;
}

static void run_fixture(const char *rel) {
  fixture_t f;
  ASSERT_EQ(load_fixture(rel, &f), 0);
  const sl_adapter_t *a = sl_adapter_find(f.adapter);
  ASSERT_NOT_NULL(a);
  cevs_t want;
  reference(&f, &want);
  ASSERT_GT(want.n, 1);
  char head[256];
  int hn = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n", f.ctype,
                    f.body_len);
  size_t total = (size_t)hn + f.body_len;
  char *msg = malloc(total);
  memcpy(msg, head, (size_t)hn);
  memcpy(msg + hn, f.body, f.body_len);
  sl_updec_t *d = sl_calloc(1, sizeof(*d));
  static char join[8192];
  int bad = 0;
  for (size_t cut = 0; cut <= total && !bad; cut++) {
    sl_updec_init(d, join, sizeof(join));
    sl_updec_set_adapter(d, a);
    cevs_t got = {.n = 0};
    /* The second piece is copied so nothing may point into the first. */
    char *second = malloc(total - cut + 1);
    memcpy(second, msg + cut, total - cut);
    int rc = sl_updec_feed(d, msg, cut, collect, &got);
    if (rc == 0) rc = sl_updec_feed(d, second, total - cut, collect, &got);
    free(second);
    if (rc != 0 || !d->message_done || got.n != want.n) {
      fprintf(stderr, "  %s cut at %zu: rc %d (%s), %d events, want %d\n", rel, cut, rc, d->errmsg, got.n, want.n);
      bad = 1;
      break;
    }
    for (int i = 0; i < want.n && !bad; i++)
      if (!same(&got.ev[i], &want.ev[i], i, cut)) bad = 1;
  }
  ASSERT_EQ(bad, 0);
  sl_free(d);
  free(msg);
}

static void test_llamacpp_recorded(void) {
  run_fixture("llamacpp/limit.txt");
  run_fixture("llamacpp/word.txt");
}

static void test_tgi(void) {
  run_fixture("tgi/eos.txt");
  run_fixture("tgi/length.txt");
  run_fixture("tgi/error.txt");
}

static void test_ollama(void) {
  run_fixture("ollama/generate.txt");
  run_fixture("ollama/chat_length.txt");
  run_fixture("ollama/error.txt");
}

static void test_vllm(void) {
  run_fixture("vllm/chat.txt");
  run_fixture("vllm/error.txt");
}

/* ---- request builds ---- */

static cJSON *build(const sl_adapter_t *a, int chat, const char *body, const char **path, char *err, size_t errlen) {
  sl_adapter_req_t in = {chat, body, strlen(body), "x-request-id: r1\r\n"};
  sl_engine_req_t out;
  if (a->build(a, &in, &out, err, errlen) < 0) return NULL;
  *path = out.path;
  /* The forwarded header lines follow the adapter's own; always a POST. */
  cJSON *j = strstr(out.headers, "x-request-id: r1\r\n") != NULL && strcmp(out.method, "POST") == 0
                 ? cJSON_Parse(out.body)
                 : NULL;
  sl_engine_req_free(&out);
  return j;
}

static double num(const cJSON *j, const char *k) {
  const cJSON *v = cJSON_GetObjectItem(j, k);
  return cJSON_IsNumber(v) ? v->valuedouble : -12345;
}

static void test_builds(void) {
  char err[256];
  const char *path = NULL;
  const char *compl = "{\"model\":\"m\",\"prompt\":\"hi\",\"max_tokens\":5,\"temperature\":0,\"top_p\":1,"
                      "\"stop\":\"END\",\"seed\":7}";
  /* llama.cpp: n_predict, a stop array, token ids asked for. */
  cJSON *j = build(&sl_adapter_llamacpp, 0, compl, &path, err, sizeof(err));
  ASSERT_NOT_NULL(j);
  ASSERT_STR_EQ(path, "/completion");
  ASSERT_STR_EQ(cJSON_GetObjectItem(j, "prompt")->valuestring, "hi");
  ASSERT_EQ(num(j, "n_predict"), 5);
  ASSERT_EQ(num(j, "seed"), 7);
  ASSERT_EQ(num(j, "temperature"), 0);
  ASSERT_STR_EQ(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "stop"), 0)->valuestring, "END");
  ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "return_tokens")));
  ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(j, "stream")));
  cJSON_Delete(j);
  ASSERT_NULL(build(&sl_adapter_llamacpp, 1, "{\"model\":\"m\",\"messages\":[]}", &path, err, sizeof(err)));
  ASSERT_NOT_NULL(strstr(err, "adapter \"llamacpp\" serves only /v1/completions"));
  /* TGI: inputs and parameters; temperature 0 and top_p 1 left out. */
  j = build(&sl_adapter_tgi, 0, compl, &path, err, sizeof(err));
  ASSERT_NOT_NULL(j);
  ASSERT_STR_EQ(path, "/generate_stream");
  ASSERT_STR_EQ(cJSON_GetObjectItem(j, "inputs")->valuestring, "hi");
  const cJSON *p = cJSON_GetObjectItem(j, "parameters");
  ASSERT_EQ(num(p, "max_new_tokens"), 5);
  ASSERT_NULL(cJSON_GetObjectItem(p, "temperature"));
  ASSERT_NULL(cJSON_GetObjectItem(p, "top_p"));
  ASSERT(cJSON_IsTrue(cJSON_GetObjectItem(p, "details")));
  ASSERT_STR_EQ(cJSON_GetArrayItem(cJSON_GetObjectItem(p, "stop"), 0)->valuestring, "END");
  cJSON_Delete(j);
  ASSERT_NULL(build(&sl_adapter_tgi, 0, "{\"prompt\":\"x\",\"stop\":7}", &path, err, sizeof(err)));
  ASSERT_STR_EQ(err, "stop: must be a string, an array of strings or null");
  /* Ollama: /api/chat with string contents (parts joined), options. */
  j = build(&sl_adapter_ollama, 1,
            "{\"model\":\"llama3.2\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
            "{\"type\":\"text\",\"text\":\"b\"}]}],\"max_completion_tokens\":3,\"max_tokens\":9}",
            &path, err, sizeof(err));
  ASSERT_NOT_NULL(j);
  ASSERT_STR_EQ(path, "/api/chat");
  ASSERT_STR_EQ(cJSON_GetObjectItem(j, "model")->valuestring, "llama3.2");
  ASSERT_STR_EQ(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 0), "content")->valuestring,
                "ab");
  ASSERT_EQ(num(cJSON_GetObjectItem(j, "options"), "num_predict"), 3);
  cJSON_Delete(j);
  j = build(&sl_adapter_ollama, 0, compl, &path, err, sizeof(err));
  ASSERT_STR_EQ(path, "/api/generate");
  ASSERT_STR_EQ(cJSON_GetObjectItem(j, "prompt")->valuestring, "hi");
  cJSON_Delete(j);
  ASSERT_NULL(build(&sl_adapter_ollama, 1,
                    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", &path,
                    err, sizeof(err)));
  ASSERT_STR_EQ(err, "messages[0].content: adapter \"ollama\" takes text parts only");
}

int main(void) {
  sl_alloc_init();
  SL_RUN(test_llamacpp_recorded);
  SL_RUN(test_tgi);
  SL_RUN(test_ollama);
  SL_RUN(test_vllm);
  SL_RUN(test_builds);
  return SL_TEST_EXIT();
}
