/* narrate.c: the narration ring, batch flush and log redaction. */
#include "runtime/base/narrate.h"

#include <ctype.h>
#include <cjson/cJSON.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/base/errors.h"

#define SL_MAX_SECRETS 64

static struct {
  FILE *log;
  int json;
  char *secrets[SL_MAX_SECRETS];
  int nsecrets;
  sl_ffi_narration_event_t ring[SL_NARRATE_RING];
  size_t head, count;                         /* ring state */
  sl_ffi_narration_event_t batch[SL_NARRATE_RING];
  char emitted[SL_NARRATE_RING];              /* the policy told event i */
  int32_t nbatch;
  int in_flush;
  int dry;                                    /* a trial run: sentences go to `say`, not the log */
  FILE *say;
} sl__nar;

void sl_narrate_configure(FILE *log, int json, const char *const *secrets) {
  sl__nar.log = log;
  sl__nar.json = json;
  for (int i = 0; i < sl__nar.nsecrets; i++) sl_free(sl__nar.secrets[i]);
  sl__nar.nsecrets = 0;
  for (int i = 0; secrets && secrets[i] && sl__nar.nsecrets < SL_MAX_SECRETS; i++)
    if (strlen(secrets[i]) >= 4) /* shorter ones would redact ordinary words */
      sl__nar.secrets[sl__nar.nsecrets++] = sl_strndup(secrets[i], strlen(secrets[i]));
}

static void sl__copy(char *dst, size_t cap, const char *src) {
  if (src == NULL) src = "";
  size_t n = strlen(src);
  if (n >= cap) n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

void sl_narrate_push(int kind, const char *request_id, const char *endpoint, const char *model, const char *text,
                     int attempt, uint64_t generation, double ms, int64_t tokens) {
  if (sl__nar.count == SL_NARRATE_RING) {
    sl_counter_inc(SL_C_NARRATION_DROPPED);
    return;
  }
  sl_ffi_narration_event_t *e = &sl__nar.ring[(sl__nar.head + sl__nar.count) % SL_NARRATE_RING];
  sl__nar.count++;
  e->kind = kind;
  e->attempt = attempt;
  e->generation = generation;
  e->ms = ms;
  e->tokens = tokens;
  sl__copy(e->request_id, sizeof(e->request_id), request_id);
  sl__copy(e->endpoint, sizeof(e->endpoint), endpoint);
  sl__copy(e->model, sizeof(e->model), model);
  sl__copy(e->text, sizeof(e->text), text);
}

size_t sl_narrate_pending(void) { return sl__nar.count; }

const sl_ffi_narration_event_t *sl_ffi_narrate_batch(int32_t *n) {
  *n = sl__nar.in_flush ? sl__nar.nbatch : 0;
  return sl__nar.batch;
}

/* ---- redaction ---- */

static int sl__tokch(int c) { return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '+' || c == '/' || c == '='; }

char *sl_log_redact(const char *in, char *out, size_t cap) {
  static const char red[] = "[redacted]";
  size_t o = 0, i = 0, n = strlen(in);
  while (i < n && o + 1 < cap) {
    size_t skip = 0;
    /* "Bearer <token>" in any case. */
    if (n - i > 7 && strncasecmp(in + i, "bearer ", 7) == 0) {
      size_t j = i + 7;
      while (j < n && sl__tokch((unsigned char)in[j])) j++;
      if (j > i + 7) {
        if (o + 7 < cap) {
          memcpy(out + o, in + i, 7);
          o += 7;
        }
        i += 7;
        skip = j - i;
      }
    }
    /* API-key shapes: sk-..., at least 8 key characters. */
    if (!skip && n - i >= 11 && in[i] == 's' && in[i + 1] == 'k' && in[i + 2] == '-' &&
        (i == 0 || !sl__tokch((unsigned char)in[i - 1]))) {
      size_t j = i + 3;
      while (j < n && sl__tokch((unsigned char)in[j])) j++;
      if (j - i >= 11) skip = j - i;
    }
    /* Configured secrets, verbatim. */
    for (int s = 0; !skip && s < sl__nar.nsecrets; s++) {
      size_t sl = strlen(sl__nar.secrets[s]);
      if (n - i >= sl && memcmp(in + i, sl__nar.secrets[s], sl) == 0) skip = sl;
    }
    if (skip) {
      for (size_t k = 0; k < sizeof(red) - 1 && o + 1 < cap; k++) out[o++] = red[k];
      i += skip;
    } else {
      out[o++] = in[i++];
    }
  }
  out[o] = '\0';
  return out;
}

/* ---- logging ---- */

static const char *const sl__kind_names[SL_NAR__COUNT] = {
    "?", "placement", "reload", "reload_failed", "ready", "not_ready", "cooldown", "backpressure", "cancel",
    "stream_end"};

static void sl__log(const sl_ffi_narration_event_t *e, const char *sentence) {
  FILE *f = sl__nar.log ? sl__nar.log : stderr;
  char safe[1024];
  sl_log_redact(sentence, safe, sizeof(safe));
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  char ts[32];
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
  const char *kind = e->kind > 0 && e->kind < SL_NAR__COUNT ? sl__kind_names[e->kind] : "?";
  if (sl__nar.json) {
    char buf[512];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ts", ts);
    cJSON_AddStringToObject(o, "event", "narration");
    cJSON_AddStringToObject(o, "kind", kind);
    if (e->request_id[0]) cJSON_AddStringToObject(o, "request_id", sl_log_redact(e->request_id, buf, sizeof(buf)));
    if (e->endpoint[0]) cJSON_AddStringToObject(o, "endpoint", e->endpoint);
    if (e->model[0]) cJSON_AddStringToObject(o, "model", sl_log_redact(e->model, buf, sizeof(buf)));
    if (e->generation) cJSON_AddNumberToObject(o, "generation", (double)e->generation);
    cJSON_AddStringToObject(o, "text", safe);
    char *line = cJSON_PrintUnformatted(o);
    fprintf(f, "%s\n", line);
    cJSON_free(line);
    cJSON_Delete(o);
  } else {
    char rid[160];
    sl_log_redact(e->request_id, rid, sizeof(rid));
    fprintf(f, "%s narrate %s %s: %s\n", ts, rid[0] ? rid : "-", kind, safe);
  }
}

/* The plain rendering, when no policy told the event. */
static void sl__plain(const sl_ffi_narration_event_t *e, char *out, size_t cap) {
  switch (e->kind) {
    case SL_NAR_PLACEMENT:
      snprintf(out, cap, "placed on %s (attempt %d): %s", e->endpoint, e->attempt, e->text);
      break;
    case SL_NAR_RELOAD_OK: snprintf(out, cap, "reloaded: %s", e->text); break;
    case SL_NAR_RELOAD_FAILED: snprintf(out, cap, "reload failed: %s", e->text); break;
    case SL_NAR_READY: snprintf(out, cap, "endpoint %s is ready", e->endpoint); break;
    case SL_NAR_NOT_READY: snprintf(out, cap, "endpoint %s is not ready: %s", e->endpoint, e->text); break;
    case SL_NAR_COOLDOWN:
      snprintf(out, cap, "endpoint %s cools down for %.0f ms after %lld failures", e->endpoint, e->ms,
               (long long)e->tokens);
      break;
    case SL_NAR_PAUSE:
      snprintf(out, cap, "client reads slowly; paused reading %s after %lld tokens", e->endpoint,
               (long long)e->tokens);
      break;
    case SL_NAR_CANCEL:
      snprintf(out, cap, "client went away after %lld tokens; engine %s cancelled", (long long)e->tokens,
               e->endpoint);
      break;
    case SL_NAR_STREAM_END:
      snprintf(out, cap, "stream ended (%s) after %lld tokens in %.0f ms", e->text, (long long)e->tokens, e->ms);
      break;
    default: snprintf(out, cap, "event %d", e->kind); break;
  }
}

int sl_ffi_narrate_emit(int32_t i, const char *sentence, size_t len) {
  if (!sl__nar.in_flush || i < 0 || i >= sl__nar.nbatch) return SL_EINVAL;
  sl__nar.emitted[i] = 1;
  if (len == 0) return 0; /* the policy chose to say nothing about it */
  char buf[1024];
  if (len >= sizeof(buf)) len = sizeof(buf) - 1;
  memcpy(buf, sentence, len);
  buf[len] = '\0';
  if (sl__nar.dry) {
    char safe[1024];
    int32_t k = sl__nar.batch[i].kind;
    if (sl__nar.say)
      fprintf(sl__nar.say, "  %s: %s\n", k > 0 && k < SL_NAR__COUNT ? sl__kind_names[k] : "?",
              sl_log_redact(buf, safe, sizeof(safe)));
    return 0;
  }
  sl__log(&sl__nar.batch[i], buf);
  return 0;
}

void sl_narrate_flush(int (*run)(void *ud, char *err, size_t errlen), void *ud) {
  if (sl__nar.count == 0 || sl__nar.in_flush) return;
  /* Take the whole ring as one batch; events pushed while the policy runs
   * wait for the next flush. */
  sl__nar.nbatch = (int32_t)sl__nar.count;
  for (int32_t k = 0; k < sl__nar.nbatch; k++)
    sl__nar.batch[k] = sl__nar.ring[(sl__nar.head + (size_t)k) % SL_NARRATE_RING];
  sl__nar.head = (sl__nar.head + sl__nar.count) % SL_NARRATE_RING;
  sl__nar.count = 0;
  memset(sl__nar.emitted, 0, (size_t)sl__nar.nbatch);
  sl__nar.in_flush = 1;
  char err[512] = "";
  if (run != NULL && run(ud, err, sizeof(err)) < 0) {
    sl_counter_inc(SL_C_NARRATION_ERRORS);
    char line[700];
    char safe[700];
    snprintf(line, sizeof(line), "sluice: narration policy failed; plain narration for this batch: %s\n", err);
    fputs(sl_log_redact(line, safe, sizeof(safe)), sl__nar.log ? sl__nar.log : stderr);
  }
  char plain[512];
  for (int32_t k = 0; k < sl__nar.nbatch; k++) {
    if (sl__nar.emitted[k]) continue;
    sl__plain(&sl__nar.batch[k], plain, sizeof(plain));
    sl__log(&sl__nar.batch[k], plain);
  }
  fflush(sl__nar.log ? sl__nar.log : stderr);
  sl__nar.in_flush = 0;
  sl__nar.nbatch = 0;
}

int sl_narrate_trial(const sl_ffi_narration_event_t *events, int32_t n, int (*run)(void *ud, char *err, size_t errlen),
                     void *ud, FILE *say, char *err, size_t errlen) {
  if (sl__nar.in_flush || n < 0 || n > SL_NARRATE_RING) {
    snprintf(err, errlen, "narration trial: %s", sl__nar.in_flush ? "a batch is being narrated" : "too many events");
    return SL_EINVAL;
  }
  /* The live ring is not touched: events queued now wait for the next
   * flush as usual. */
  memcpy(sl__nar.batch, events, (size_t)n * sizeof(*events));
  memset(sl__nar.emitted, 0, (size_t)n);
  sl__nar.nbatch = n;
  sl__nar.in_flush = 1;
  sl__nar.dry = 1;
  sl__nar.say = say;
  int rc = run(ud, err, errlen);
  sl__nar.in_flush = 0;
  sl__nar.dry = 0;
  sl__nar.say = NULL;
  sl__nar.nbatch = 0;
  return rc;
}
