/* Tests for runtime/base/narrate (a narrator object): redaction of bearer tokens, key-shaped strings
 * and configured secrets; the ring's overflow counted, never blocking; the
 * plain rendering when no policy speaks; a policy's sentences and silences. */
#include <stdlib.h>

#include "runtime/base/counters.h"
#include "runtime/base/narrate.h"
#include "test.h"

static sl_counters_t counters;

static void test_redaction(void) {
  const char *secrets[] = {"pool-secret-123", "abc", NULL}; /* "abc" is too short to redact */
  sl_narrator_t *nar = sl_narrator_new(stderr, 0, secrets, &counters);
  char out[256];
  ASSERT_STR_EQ(sl_log_redact(nar, "Authorization: Bearer tok.en-123_x end", out, sizeof(out)),
                "Authorization: Bearer [redacted] end");
  ASSERT_STR_EQ(sl_log_redact(nar, "BEARER x", out, sizeof(out)), "BEARER [redacted]");
  ASSERT_STR_EQ(sl_log_redact(nar, "key sk-ABCDEFGH1234 here", out, sizeof(out)), "key [redacted] here");
  ASSERT_STR_EQ(sl_log_redact(nar, "sk-short ok", out, sizeof(out)), "sk-short ok");
  ASSERT_STR_EQ(sl_log_redact(nar, "task-ABCDEFGHIJKL", out, sizeof(out)), "task-ABCDEFGHIJKL"); /* not a key prefix */
  ASSERT_STR_EQ(sl_log_redact(nar, "got pool-secret-123!", out, sizeof(out)), "got [redacted]!");
  ASSERT_STR_EQ(sl_log_redact(nar, "abc abc", out, sizeof(out)), "abc abc");
  ASSERT_STR_EQ(sl_log_redact(nar, "Bearer", out, sizeof(out)), "Bearer");
  /* Output never overflows its buffer. */
  char tiny[8];
  sl_log_redact(nar, "Bearer abcdefghij", tiny, sizeof(tiny));
  ASSERT_LT(strlen(tiny), sizeof(tiny));
  sl_narrator_free(nar);
}

static FILE *capture(char **buf, size_t *len) { return open_memstream(buf, len); }

static void test_plain_rendering_without_policy(void) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = capture(&buf, &len);
  const char *secrets[] = {"hunter2-secret", NULL};
  sl_narrator_t *nar = sl_narrator_new(f, 0, secrets, &counters);
  sl_narrate_push(nar, SL_NAR_PLACEMENT, "req-9", "127.0.0.1:9", "m", "least loaded", 1, 1, 0, 0);
  sl_narrate_push(nar, SL_NAR_RELOAD_FAILED, NULL, NULL, NULL, "p.lua:3: bad hunter2-secret", 0, 1, 0, 0);
  ASSERT_EQ(sl_narrate_pending(nar), 2);
  sl_narrate_flush(nar, NULL, NULL);
  ASSERT_EQ(sl_narrate_pending(nar), 0);
  fflush(f);
  ASSERT(strstr(buf, "narrate req-9 placement: placed on 127.0.0.1:9 (attempt 1): least loaded") != NULL);
  ASSERT(strstr(buf, "narrate - reload_failed: reload failed: p.lua:3: bad [redacted]") != NULL);
  ASSERT_NULL(strstr(buf, "hunter2"));
  fclose(f);
  free(buf);
  sl_narrator_free(nar);
}

/* A stand-in for the Lua runner: speaks for event 0, stays silent on 1. */
static int fake_policy(void *ud, char *err, size_t errlen) {
  sl_narrator_t *nar = ud;
  (void)err;
  (void)errlen;
  int32_t n;
  const sl_ffi_narration_event_t *ev = sl_ffi_narrate_batch(nar, &n);
  if (n != 3 || ev[0].kind != SL_NAR_READY) return -1;
  sl_ffi_narrate_emit(nar, 0, "custom sentence", 15);
  sl_ffi_narrate_emit(nar, 1, "", 0);
  if (sl_ffi_narrate_emit(nar, 3, "x", 1) == 0) return -1; /* out of range refused */
  return 0; /* event 2 falls back to the plain rendering */
}

/* The same over three events of any kind. */
static int fake_policy_3(void *ud, char *err, size_t errlen) {
  sl_narrator_t *nar = ud;
  (void)err;
  (void)errlen;
  int32_t n;
  sl_ffi_narrate_batch(nar, &n);
  if (n != 3) return -1;
  sl_ffi_narrate_emit(nar, 0, "custom sentence", 15);
  sl_ffi_narrate_emit(nar, 1, "", 0);
  return 0;
}

static int failing_policy(void *ud, char *err, size_t errlen) {
  (void)ud;
  snprintf(err, errlen, "narration.lua:7: boom");
  return -1;
}

static void test_policy_sentences_silence_and_failure(void) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = capture(&buf, &len);
  sl_narrator_t *nar = sl_narrator_new(f, 0, NULL, &counters);
  sl_narrate_push(nar, SL_NAR_READY, NULL, "e:1", NULL, NULL, 0, 0, 0, 0);
  sl_narrate_push(nar, SL_NAR_READY, NULL, "e:2", NULL, NULL, 0, 0, 0, 0);
  sl_narrate_push(nar, SL_NAR_COOLDOWN, NULL, "e:3", NULL, NULL, 0, 0, 250, 3);
  sl_narrate_flush(nar, fake_policy, nar);
  sl_narrate_push(nar, SL_NAR_READY, NULL, "e:4", NULL, NULL, 0, 0, 0, 0);
  uint64_t errs = sl_counter_get(&counters, SL_C_NARRATION_ERRORS);
  sl_narrate_flush(nar, failing_policy, nar);
  fflush(f);
  ASSERT(strstr(buf, "ready: custom sentence") != NULL);
  ASSERT_NULL(strstr(buf, "e:2"));
  ASSERT(strstr(buf, "endpoint e:3 cools down for 250 ms after 3 failures") != NULL);
  ASSERT(strstr(buf, "narration policy failed; plain narration for this batch: narration.lua:7: boom") != NULL);
  ASSERT(strstr(buf, "endpoint e:4 is ready") != NULL);
  ASSERT_UINT_EQ(sl_counter_get(&counters, SL_C_NARRATION_ERRORS), errs + 1);
  fclose(f);
  free(buf);
  sl_narrator_free(nar);
}

static void test_ring_overflow_is_counted(void) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = capture(&buf, &len);
  sl_narrator_t *nar = sl_narrator_new(f, 0, NULL, &counters);
  uint64_t dropped = sl_counter_get(&counters, SL_C_NARRATION_DROPPED);
  for (int i = 0; i < SL_NARRATE_RING + 10; i++) sl_narrate_push(nar, SL_NAR_READY, NULL, "e", NULL, NULL, 0, 0, 0, 0);
  ASSERT_EQ(sl_narrate_pending(nar), SL_NARRATE_RING);
  ASSERT_UINT_EQ(sl_counter_get(&counters, SL_C_NARRATION_DROPPED), dropped + 10);
  sl_narrate_flush(nar, NULL, NULL);
  ASSERT_EQ(sl_narrate_pending(nar), 0);
  fclose(f);
  free(buf);
  sl_narrator_free(nar);
}

/* The tap hears each flushed batch once, with the sentences as logged
 * (redacted; "" for a silence), and never a trial run. */
static int tap_calls;
static int32_t tap_n;
static char tap_sentences[4][SL_NARRATE_TOLD_MAX];
static int tap_kinds[4];

static void tap(void *ud, const sl_narrate_told_t *told, int32_t n) {
  (void)ud;
  tap_calls++;
  tap_n = n;
  for (int32_t i = 0; i < n && i < 4; i++) {
    snprintf(tap_sentences[i], sizeof(tap_sentences[i]), "%s", told[i].sentence);
    tap_kinds[i] = told[i].event->kind;
  }
}

static void test_tap_once_per_batch(void) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = capture(&buf, &len);
  const char *secrets[] = {"hunter2-secret", NULL};
  sl_narrator_t *nar = sl_narrator_new(f, 0, secrets, &counters);
  sl_narrate_set_tap(nar, tap, NULL);
  tap_calls = 0;
  sl_narrate_flush(nar, NULL, NULL); /* nothing queued: no call */
  ASSERT_EQ(tap_calls, 0);
  sl_narrate_push(nar, SL_NAR_READY, NULL, "e:1", NULL, NULL, 0, 0, 0, 0);
  sl_narrate_push(nar, SL_NAR_READY, NULL, "e:2", NULL, NULL, 0, 0, 0, 0);
  sl_narrate_push(nar, SL_NAR_NOT_READY, NULL, "e:3", NULL, "refused hunter2-secret", 0, 0, 0, 0);
  sl_narrate_flush(nar, fake_policy_3, nar);
  ASSERT_EQ(tap_calls, 1);
  ASSERT_EQ(tap_n, 3);
  ASSERT_STR_EQ(tap_sentences[0], "custom sentence");
  ASSERT_STR_EQ(tap_sentences[1], "");
  ASSERT_STR_EQ(tap_sentences[2], "endpoint e:3 is not ready: refused [redacted]");
  ASSERT_EQ(tap_kinds[2], SL_NAR_NOT_READY);
  ASSERT_STR_EQ(sl_narrate_kind_name(SL_NAR_GUARD), "guard");
  ASSERT_STR_EQ(sl_narrate_kind_name(999), "?");
  /* A trial run is not heard. */
  sl_ffi_narration_event_t ev = {.kind = SL_NAR_READY};
  char err[128];
  ASSERT_EQ(sl_narrate_trial(nar, &ev, 1, fake_policy_3, nar, NULL, err, sizeof(err)), -1);
  ASSERT_EQ(tap_calls, 1);
  /* Removed: no more calls. */
  sl_narrate_set_tap(nar, NULL, NULL);
  sl_narrate_push(nar, SL_NAR_READY, NULL, "e:4", NULL, NULL, 0, 0, 0, 0);
  sl_narrate_flush(nar, NULL, NULL);
  ASSERT_EQ(tap_calls, 1);
  fclose(f);
  free(buf);
  sl_narrator_free(nar);
}

int main(void) {
  SL_RUN(test_redaction);
  SL_RUN(test_plain_rendering_without_policy);
  SL_RUN(test_policy_sentences_silence_and_failure);
  SL_RUN(test_ring_overflow_is_counted);
  SL_RUN(test_tap_once_per_batch);
  return SL_TEST_EXIT();
}
