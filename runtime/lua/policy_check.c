/* policy_check.c: sample runs of every phase before a generation serves
 * (see policy_check.h). */
#include "runtime/lua/policy_check.h"

#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/config.h"
#include "runtime/base/errors.h"
#include "runtime/lua/lua_budget.h"
#include "runtime/base/narrate.h"
#include "runtime/lua/ttldict.h"

static const char *const sl__names[8] = {"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000", "10.0.0.4:8000",
                                         "10.0.1.1:8000", "10.0.1.2:8000", "10.0.1.3:8000", "10.0.1.4:8000"};

/* Fills ctx with sample k; returns a short description, or NULL past the last. */
static const char *sl__sample(int k, sl_ffi_place_ctx_t *ctx) {
  static const struct {
    int n, attempt, loaded, tried, session, learned;
    const char *what;
  } samples[] = {
      {1, 1, 0, 0, 0, 0, "1 fresh candidate"},
      {2, 1, 1, 0, 1, 1, "2 candidates, one busy, with a session"},
      {3, 3, 1, 3, 1, 1, "3 candidates, all tried (third attempt)"},
      {8, 2, 1, 1, 0, 1, "8 candidates, one tried (retry)"},
      {8, 1, 2, 0, 1, 0, "8 candidates, all full"},
      {SL_FFI_MAX_CANDIDATES, 1, 1, 0, 1, 1, "64 candidates"},
  };
  if (k < 0 || k >= (int)(sizeof(samples) / sizeof(samples[0]))) return NULL;
  memset(ctx, 0, sizeof(*ctx));
  ctx->model = "sample-model";
  ctx->n = samples[k].n;
  ctx->attempt = samples[k].attempt;
  ctx->prompt_chars = 1200;
  ctx->max_tokens = k % 2 ? 256 : 0;
  ctx->session = samples[k].session ? "sample-session" : NULL;
  ctx->seed = 0x9e3779b97f4a7c15ull * (uint64_t)(k + 1);
  for (int i = 0; i < ctx->n; i++) {
    sl_ffi_candidate_t *c = &ctx->cands[i];
    c->endpoint_id = i;
    c->pool_id = i / 8;
    c->slots = 4;
    c->inflight = samples[k].loaded == 2 ? 4 : samples[k].loaded ? (i * 3) % 5 : 0;
    c->context_tokens = 8192;
    c->tried = i < samples[k].tried;
    c->limit = c->slots;
    c->queued = samples[k].loaded == 2 ? 3 : 0; /* all full: requests wait */
    if (samples[k].learned) {
      c->ewma_ttft_ms = 40.0 + 7.0 * i;
      c->ewma_itl_ms = 8.0 + (i % 3);
      c->tokens_per_s = 90.0 - i;
      c->error_rate = i % 4 == 0 ? 0.25 : 0.0;
    }
    /* Every timing verdict a policy may branch on, "none yet" (-1) too. */
    c->dyn_class = samples[k].learned ? i % 6 - 1 : -1;
    c->dyn_samples = c->dyn_class >= 0 ? 256 : 0;
    c->dyn_lambda = c->dyn_class == 2 ? 0.3 : 0.0;
    c->dyn_age_ms = c->dyn_class >= 0 ? 1000.0 * (i % 4) : 0.0;
    c->name = sl__names[i % 8];
  }
  return samples[k].what;
}

int sl_policy_check_placement(sl_generation_t *g, FILE *say, char *err, size_t errlen) {
  /* Policies may write to the TTL dictionary (affinity, learning): give
   * the trial a scratch dictionary so nothing reaches the live one. */
  sl_ttldict_t *scratch = NULL;
  if (sl_ttldict_new(NULL, &scratch) != 0) {
    snprintf(err, errlen, "placement check: out of memory for a scratch dictionary");
    return SL_ENOMEM;
  }
  sl_ttldict_t *live = g->dict_slot;
  g->dict_slot = scratch;
  sl_ffi_place_ctx_t *ctx = sl_malloc(sizeof(*ctx)); /* 4 KiB: kept off the stack */
  int rc = 0;
  for (int k = 0; rc == 0; k++) {
    const char *what = sl__sample(k, ctx);
    if (what == NULL) break;
    int index = -1;
    char reason[512];
    rc = sl_generation_place(g, ctx, NULL, &index, reason, sizeof(reason));
    if (rc < 0)
      snprintf(err, errlen, "%s: placement sample %d (%s): %s", g->phase[SL_PHASE_PLACEMENT].file, k + 1, what,
               reason);
    else if (say)
      fprintf(say, "  placement sample %d (%s): candidate %d (%s): %s\n", k + 1, what, index + 1,
              ctx->cands[index].name, reason);
  }
  sl_free(ctx);
  g->dict_slot = live;
  sl_ttldict_free(scratch);
  return rc;
}

typedef struct {
  sl_generation_t *g;
  sl_narrator_t *nar;
} sl__trial_t;

static int sl__narrate_run(void *ud, char *err, size_t errlen) {
  sl__trial_t *t = ud;
  return sl_generation_narrate(t->g, t->nar, err, errlen);
}

int sl_policy_check_narration(sl_generation_t *g, const char *const *secrets, FILE *say, char *err, size_t errlen) {
  if (!sl_generation_phase_ready(g, SL_PHASE_NARRATION)) return 0;
  sl_ffi_narration_event_t ev[SL_NAR__COUNT - 1];
  memset(ev, 0, sizeof(ev));
  for (int k = 1; k < SL_NAR__COUNT; k++) {
    sl_ffi_narration_event_t *e = &ev[k - 1];
    e->kind = k;
    e->attempt = 1 + (k == SL_NAR_PLACEMENT);
    e->generation = 2;
    e->ms = 125.0;
    e->tokens = 42;
    snprintf(e->request_id, sizeof(e->request_id), "sample-%d", k);
    snprintf(e->endpoint, sizeof(e->endpoint), "%s", sl__names[k % 8]);
    snprintf(e->model, sizeof(e->model), "sample-model");
    snprintf(e->text, sizeof(e->text), "%s",
             k == SL_NAR_RELOAD_FAILED ? "policy.lua:3: sample error"
             : k == SL_NAR_STREAM_END  ? "stop"
             : k == SL_NAR_NOT_READY   ? "connection refused"
             : k == SL_NAR_LIMIT       ? "ttft p90 98 ms vs 95 ms long: 1.00 -> 5"
             : k == SL_NAR_QUEUE       ? "placed"
             : k == SL_NAR_SHARED      ? "unix:/run/redis.sock"
             : k == SL_NAR_ENGINE      ? "crash: exit status 1 after 12 s; restarting in 100 ms"
                                       : "least loaded");
    if (k == SL_NAR_LIMIT) { /* the old limit in attempt, the new one in tokens */
      e->attempt = 4;
      e->tokens = 5;
    }
  }
  /* A narrator of its own: the trial's sentences go to say, never to a log,
   * and a live gateway's ring is not touched. */
  sl__trial_t t = {g, sl_narrator_new(NULL, 0, secrets, NULL)};
  int rc = sl_narrate_trial(t.nar, ev, SL_NAR__COUNT - 1, sl__narrate_run, &t, say, err, errlen);
  sl_narrator_free(t.nar);
  if (rc < 0) {
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s: narration of one sample event of each kind: %s",
             g->phase[SL_PHASE_NARRATION].file, err);
    snprintf(err, errlen, "%s", msg);
  }
  return rc;
}

int sl_policy_build_checked(const char *placement_path, const char *placement_config, const char *narration_path,
                            uint64_t id, const sl_lua_host_t *lim, const char *const *secrets, FILE *say,
                            sl_generation_t **out, char *err, size_t errlen) {
  sl_generation_t *g;
  int rc = sl_generation_build(placement_path, placement_config, id, lim, &g, err, errlen);
  if (rc < 0) return rc;
  if (narration_path) rc = sl_generation_load_narration(g, narration_path, err, errlen);
  if (rc == 0) rc = sl_policy_check_placement(g, say, err, errlen);
  if (rc == 0) rc = sl_policy_check_narration(g, secrets, say, err, errlen);
  if (rc < 0) {
    sl_generation_release(g);
    return rc;
  }
  *out = g;
  return 0;
}
