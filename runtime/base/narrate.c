/* narrate.c: the narration ring, batch flush and log redaction. */
#include "runtime/base/narrate.h"

#include <ctype.h>
#include <stddef.h>
#include <cjson/cJSON.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/base/errors.h"

#define SL_MAX_SECRETS 64

struct sl_narrator_s {
  sl_counters_t *counters;
  FILE *log;
  int json;
  char *secrets[SL_MAX_SECRETS];
  int nsecrets;
  size_t head, count;                         /* ring state */
  int32_t nbatch;
  int in_flush;
  int dry;                                    /* a trial run: sentences go to `say`, not the log */
  FILE *say;
  sl_narrate_tap_cb tap;                      /* sl_narrate_set_tap's, or NULL */
  void *tap_ud;
  sl_narrate_told_t *told;                    /* the batch as told, for the tap (SL_NARRATE_RING; NULL before
                                                 the first tap) */
  /* The arrays last, and never zeroed: a slot is written before it is
   * read, so their pages are touched only as far as the ring is used. */
  char emitted[SL_NARRATE_RING];              /* the policy told event i */
  sl_ffi_narration_event_t ring[SL_NARRATE_RING];
  sl_ffi_narration_event_t batch[SL_NARRATE_RING];
};

sl_narrator_t *sl_narrator_new(FILE *log, int json, const char *const *secrets, sl_counters_t *counters) {
  sl_narrator_t *nar = sl_malloc(sizeof(*nar));
  memset(nar, 0, offsetof(sl_narrator_t, emitted));
  nar->counters = counters;
  nar->log = log;
  nar->json = json;
  for (int i = 0; secrets && secrets[i] && nar->nsecrets < SL_MAX_SECRETS; i++)
    if (strlen(secrets[i]) >= 4) /* shorter ones would redact ordinary words */
      nar->secrets[nar->nsecrets++] = sl_strndup(secrets[i], strlen(secrets[i]));
  return nar;
}

void sl_narrator_free(sl_narrator_t *nar) {
  if (nar == NULL) return;
  for (int i = 0; i < nar->nsecrets; i++) sl_free(nar->secrets[i]);
  sl_free(nar->told);
  sl_free(nar);
}

static void sl__copy(char *dst, size_t cap, const char *src) {
  if (src == NULL) src = "";
  size_t n = strlen(src);
  if (n >= cap) n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

void sl_narrate_push(sl_narrator_t *nar, int kind, const char *request_id, const char *endpoint, const char *model, const char *text,
                     int attempt, uint64_t generation, double ms, int64_t tokens) {
  if (nar == NULL) return;
  if (nar->count == SL_NARRATE_RING) {
    sl_counter_inc(nar->counters, SL_C_NARRATION_DROPPED);
    return;
  }
  sl_ffi_narration_event_t *e = &nar->ring[(nar->head + nar->count) % SL_NARRATE_RING];
  nar->count++;
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

size_t sl_narrate_pending(const sl_narrator_t *nar) { return nar ? nar->count : 0; }

const sl_ffi_narration_event_t *sl_ffi_narrate_batch(const sl_narrator_t *nar, int32_t *n) {
  *n = nar->in_flush ? nar->nbatch : 0;
  return nar->batch;
}

/* ---- redaction ---- */

static int sl__tokch(int c) { return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '+' || c == '/' || c == '='; }

char *sl_log_redact(const sl_narrator_t *nar, const char *in, char *out, size_t cap) {
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
    for (int s = 0; !skip && nar != NULL && s < nar->nsecrets; s++) {
      size_t sl = strlen(nar->secrets[s]);
      if (n - i >= sl && memcmp(in + i, nar->secrets[s], sl) == 0) skip = sl;
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
    "stream_end", "guard", "limit", "queue", "shared", "engine"};

const char *sl_narrate_kind_name(int kind) { return kind > 0 && kind < SL_NAR__COUNT ? sl__kind_names[kind] : "?"; }

static void sl__log(const sl_narrator_t *nar, const sl_ffi_narration_event_t *e, const char *sentence) {
  FILE *f = nar->log ? nar->log : stderr;
  char safe[1024];
  sl_log_redact(nar, sentence, safe, sizeof(safe));
  if (nar->tap != NULL && e >= nar->batch && e < nar->batch + nar->nbatch) {
    /* Kept for the tap, which hears the batch once it is all logged. */
    sl_narrate_told_t *t = &nar->told[e - nar->batch];
    size_t k = strnlen(safe, sizeof(t->sentence) - 1);
    memcpy(t->sentence, safe, k);
    t->sentence[k] = '\0';
  }
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  char ts[32];
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
  const char *kind = e->kind > 0 && e->kind < SL_NAR__COUNT ? sl__kind_names[e->kind] : "?";
  if (nar->json) {
    char buf[512];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ts", ts);
    cJSON_AddStringToObject(o, "event", "narration");
    cJSON_AddStringToObject(o, "kind", kind);
    if (e->request_id[0]) cJSON_AddStringToObject(o, "request_id", sl_log_redact(nar, e->request_id, buf, sizeof(buf)));
    if (e->endpoint[0]) cJSON_AddStringToObject(o, "endpoint", e->endpoint);
    if (e->model[0]) cJSON_AddStringToObject(o, "model", sl_log_redact(nar, e->model, buf, sizeof(buf)));
    if (e->generation) cJSON_AddNumberToObject(o, "generation", (double)e->generation);
    cJSON_AddStringToObject(o, "text", safe);
    char *line = cJSON_PrintUnformatted(o);
    fprintf(f, "%s\n", line);
    cJSON_free(line);
    cJSON_Delete(o);
  } else {
    char rid[160];
    sl_log_redact(nar, e->request_id, rid, sizeof(rid));
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
    case SL_NAR_GUARD:
      snprintf(out, cap, "guard %s after %lld tokens", e->text, (long long)e->tokens);
      break;
    case SL_NAR_LIMIT:
      snprintf(out, cap, "endpoint %s limit %d -> %lld: %s", e->endpoint, e->attempt, (long long)e->tokens, e->text);
      break;
    case SL_NAR_QUEUE:
      snprintf(out, cap, "queued %.0f ms, %s (%lld queued now)", e->ms, e->text, (long long)e->tokens);
      break;
    case SL_NAR_SHARED:
      snprintf(out, cap, e->attempt ? "shared state is back: %s" : "shared state is down (%s); limits apply their fail "
                                                                   "mode and the dictionary stays local",
               e->text);
      break;
    case SL_NAR_ENGINE:
      snprintf(out, cap, "engine %s: %s", e->endpoint, e->text);
      break;
    default: snprintf(out, cap, "event %d", e->kind); break;
  }
}

void sl_narrate_set_tap(sl_narrator_t *nar, sl_narrate_tap_cb cb, void *ud) {
  if (nar == NULL) return;
  if (cb != NULL && nar->told == NULL) nar->told = sl_malloc(SL_NARRATE_RING * sizeof(*nar->told));
  nar->tap = cb;
  nar->tap_ud = ud;
}

int sl_ffi_narrate_emit(sl_narrator_t *nar, int32_t i, const char *sentence, size_t len) {
  if (!nar->in_flush || i < 0 || i >= nar->nbatch) return SL_EINVAL;
  nar->emitted[i] = 1;
  if (len == 0) return 0; /* the policy chose to say nothing about it (the tap hears "") */
  char buf[1024];
  if (len >= sizeof(buf)) len = sizeof(buf) - 1;
  memcpy(buf, sentence, len);
  buf[len] = '\0';
  if (nar->dry) {
    char safe[1024];
    int32_t k = nar->batch[i].kind;
    if (nar->say)
      fprintf(nar->say, "  %s: %s\n", k > 0 && k < SL_NAR__COUNT ? sl__kind_names[k] : "?",
              sl_log_redact(nar, buf, safe, sizeof(safe)));
    return 0;
  }
  sl__log(nar, &nar->batch[i], buf);
  return 0;
}

void sl_narrate_flush(sl_narrator_t *nar, int (*run)(void *ud, char *err, size_t errlen), void *ud) {
  if (nar == NULL || nar->count == 0 || nar->in_flush) return;
  /* Take the whole ring as one batch; events pushed while the policy runs
   * wait for the next flush. */
  size_t n = nar->count; /* at most SL_NARRATE_RING */
  for (size_t k = 0; k < n; k++) nar->batch[k] = nar->ring[(nar->head + k) % SL_NARRATE_RING];
  nar->head = (nar->head + n) % SL_NARRATE_RING;
  nar->count = 0;
  nar->nbatch = (int32_t)n;
  memset(nar->emitted, 0, n);
  nar->in_flush = 1;
  if (nar->tap != NULL)
    for (size_t k = 0; k < n; k++) {
      nar->told[k].event = &nar->batch[k];
      nar->told[k].sentence[0] = '\0';
    }
  char err[512] = "";
  if (run != NULL && run(ud, err, sizeof(err)) < 0) {
    sl_counter_inc(nar->counters, SL_C_NARRATION_ERRORS);
    char line[700];
    char safe[700];
    snprintf(line, sizeof(line), "sluice: narration policy failed; plain narration for this batch: %s\n", err);
    fputs(sl_log_redact(nar, line, safe, sizeof(safe)), nar->log ? nar->log : stderr);
  }
  char plain[512];
  for (int32_t k = 0; k < nar->nbatch; k++) {
    if (nar->emitted[k]) continue;
    sl__plain(&nar->batch[k], plain, sizeof(plain));
    sl__log(nar, &nar->batch[k], plain);
  }
  fflush(nar->log ? nar->log : stderr);
  /* Events the tap pushes wait for the next flush, as the policy's do. */
  if (nar->tap != NULL) nar->tap(nar->tap_ud, nar->told, nar->nbatch);
  nar->in_flush = 0;
  nar->nbatch = 0;
}

int sl_narrate_trial(sl_narrator_t *nar, const sl_ffi_narration_event_t *events, int32_t n, int (*run)(void *ud, char *err, size_t errlen),
                     void *ud, FILE *say, char *err, size_t errlen) {
  if (nar->in_flush || n < 0 || n > SL_NARRATE_RING) {
    snprintf(err, errlen, "narration trial: %s", nar->in_flush ? "a batch is being narrated" : "too many events");
    return SL_EINVAL;
  }
  /* The live ring is not touched: events queued now wait for the next
   * flush as usual. */
  memcpy(nar->batch, events, (size_t)n * sizeof(*events));
  memset(nar->emitted, 0, (size_t)n);
  nar->nbatch = n;
  nar->in_flush = 1;
  nar->dry = 1;
  nar->say = say;
  int rc = run(ud, err, errlen);
  nar->in_flush = 0;
  nar->dry = 0;
  nar->say = NULL;
  nar->nbatch = 0;
  return rc;
}
