/* placement.c: the prefilter, the least-loaded rule and the policy call
 * (see placement.h). */
#include "runtime/stream/placement.h"

#include <string.h>

#include "runtime/base/counters.h"
#include "runtime/base/errors.h"
#include "runtime/base/narrate.h"

int sl_placement_prefilter(sl_registry_t *reg, const char *model, int64_t need_tokens, uint64_t now,
                           sl_candidate_t *cands, int cap, int *cause, char *reason, size_t reasonlen) {
  int n = 0, served = 0, fits = 0, ready = 0;
  int64_t largest = 0;
  for (int i = 0; i < reg->npools; i++) {
    sl_pool_t *p = &reg->pools[i];
    if (!sl_pool_serves(p, model)) continue;
    served = 1;
    int64_t ctx = p->cfg->context_tokens;
    if (ctx > largest) largest = ctx;
    if (need_tokens > 0 && ctx > 0 && need_tokens > ctx) continue;
    fits = 1;
    for (int j = 0; j < p->neps; j++) {
      sl_endpoint_t *ep = &p->eps[j];
      if (!sl_endpoint_serves(ep, model)) continue; /* its engine has other models (endpoint "models") */
      if (!ep->ready || ep->draining) continue;
      ready = 1;
      if (ep->cooldown_until > now) continue;
      if (n < cap) {
        cands[n].ep = ep;
        cands[n].inflight = ep->inflight;
        cands[n].slots = ep->slots;
        n++;
      }
    }
  }
  int why = SL_PLACE_OK;
  if (n == 0) {
    if (!served) {
      why = SL_PLACE_NO_MODEL;
      snprintf(reason, reasonlen, "no pool serves model \"%s\"", model);
    } else if (!fits) {
      why = SL_PLACE_TOO_LARGE;
      snprintf(reason, reasonlen,
               "the request needs about %lld tokens (prompt estimate plus max tokens) but the largest context "
               "serving model \"%s\" is %lld tokens",
               (long long)need_tokens, model, (long long)largest);
    } else if (!ready) {
      why = SL_PLACE_NOT_READY;
      snprintf(reason, reasonlen, "no ready endpoint serves model \"%s\"", model);
    } else {
      why = SL_PLACE_COOLING;
      snprintf(reason, reasonlen, "every endpoint serving model \"%s\" is cooling down after failures", model);
    }
  }
  if (cause) *cause = why;
  return n;
}

static int sl__tried(int id, const int *avoid, int navoid) {
  for (int i = 0; i < navoid; i++)
    if (avoid[i] == id) return 1;
  return 0;
}

int sl_placement_least_loaded(const sl_candidate_t *cands, int n, const int *avoid, int navoid,
                              char *reason, size_t reasonlen) {
  int best = -1, fresh = 0;
  for (int i = 0; i < n; i++)
    if (!sl__tried(cands[i].ep->id, avoid, navoid)) fresh = 1;
  for (int i = 0; i < n; i++) {
    if (fresh && sl__tried(cands[i].ep->id, avoid, navoid)) continue;
    if (best < 0) {
      best = i;
      continue;
    }
    /* Compare inflight/slots without division; ties go to the lower id. */
    long long a = (long long)cands[i].inflight * cands[best].slots;
    long long b = (long long)cands[best].inflight * cands[i].slots;
    if (a < b || (a == b && cands[i].ep->id < cands[best].ep->id)) best = i;
  }
  if (best >= 0)
    snprintf(reason, reasonlen, "least loaded: %d/%d streams%s", cands[best].inflight, cands[best].slots,
             fresh ? "" : " (every candidate tried before)");
  return best;
}

int sl_placement_choose(sl_generation_t *gen, sl_ffi_place_ctx_t *ctx, const sl_registry_t *reg,
                        const sl_candidate_t *cands, int n, const sl_place_req_t *pr, FILE *log, char *reason,
                        size_t reasonlen) {
  if (gen == NULL || gen->phase[SL_PHASE_PLACEMENT].ref < 0)
    return sl_placement_least_loaded(cands, n, pr->tried, pr->ntried, reason, reasonlen);
  ctx->model = pr->model;
  ctx->n = n < SL_FFI_MAX_CANDIDATES ? n : SL_FFI_MAX_CANDIDATES;
  ctx->attempt = pr->attempt;
  ctx->prompt_chars = pr->prompt_chars;
  ctx->max_tokens = pr->max_tokens;
  ctx->session = pr->session;
  ctx->seed = pr->seed;
  uint64_t now = uv_hrtime();
  for (int i = 0; i < ctx->n; i++) {
    const sl_endpoint_t *ep = cands[i].ep;
    sl_ffi_candidate_t *c = &ctx->cands[i];
    c->endpoint_id = ep->id;
    c->pool_id = (int32_t)(ep->pool - reg->pools);
    c->slots = ep->slots;
    c->inflight = ep->inflight;
    c->context_tokens = ep->pool->cfg->context_tokens;
    c->tried = 0;
    for (int t = 0; t < pr->ntried; t++)
      if (pr->tried[t] == ep->id) c->tried = 1;
    /* Admission: the limit the relay enforces now, and what waits for the pool. */
    c->limit = ep->limit;
    c->queued = ep->pool->queued;
    c->ewma_ttft_ms = ep->ewma_ttft_ms;
    c->ewma_itl_ms = ep->ewma_itl_ms;
    c->tokens_per_s = ep->tokens_per_s;
    c->error_rate = ep->error_rate;
    c->dyn_class = ep->dyn.cls;
    c->dyn_samples = ep->dyn.cls >= 0 ? (int32_t)ep->dyn.samples : 0;
    c->dyn_lambda = ep->dyn.cls >= 0 ? ep->dyn.lambda : 0;
    c->dyn_age_ms = ep->dyn.cls >= 0 && now > ep->dyn.at ? (double)(now - ep->dyn.at) / 1e6 : 0;
    c->name = ep->name;
  }
  int k = 0;
  char msg[768]; /* a Lua error with its file and line; the reason is kept short */
  int rc = sl_generation_place(gen, ctx, pr->request_id, &k, msg, sizeof(msg));
  if (rc == 0) { /* the policy's reason, cut to fit */
    size_t len = strnlen(msg, reasonlen - 1);
    memcpy(reason, msg, len);
    reason[len] = '\0';
    return k;
  }
  sl_counter_inc(gen->host.counters, SL_C_POLICY_ERRORS);
  char why[64];
  k = sl_placement_least_loaded(cands, n, pr->tried, pr->ntried, why, sizeof(why));
  if (rc == SL_ECANCELED) { /* suspended: said once, when it happened */
    snprintf(reason, reasonlen, "fallback (policy suspended): %s", why);
    return k;
  }
  char safe[sizeof(msg)];
  fprintf(log, "sluice: placement policy %s (generation %llu, request %s), using the least-loaded rule: %s\n",
          rc == SL_ETIMEDOUT ? "stopped" : "error", (unsigned long long)gen->id, pr->request_id,
          sl_log_redact(reg->nar, msg, safe, sizeof(safe)));
  fflush(log);
  snprintf(reason, reasonlen, "fallback (policy %s): %s", rc == SL_ETIMEDOUT ? "over its budget" : "error", why);
  return k;
}
