/* pool.c: the endpoint registry and the C placement steps (see pool.h). */
#include "runtime/pool.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "runtime/alloc.h"
#include "runtime/errors.h"
#include "runtime/narrate.h"

int sl_registry_init(sl_registry_t *reg, uv_loop_t *loop, const sl_config_t *cfg, char *err, size_t errlen) {
  memset(reg, 0, sizeof(*reg));
  reg->loop = loop;
  reg->cfg = cfg;
  int total = 0;
  for (int i = 0; i < cfg->npools; i++) total += cfg->pools[i].nendpoints;
  reg->eps = sl_calloc((size_t)total, sizeof(sl_endpoint_t));
  reg->neps = total;
  reg->npools = cfg->npools;
  int k = 0;
  for (int i = 0; i < cfg->npools; i++) {
    const sl_pool_config_t *pc = &cfg->pools[i];
    sl_pool_t *pool = &reg->pools[i];
    pool->cfg = pc;
    pool->eps = &reg->eps[k];
    pool->neps = pc->nendpoints;
    for (int j = 0; j < pc->nendpoints; j++, k++) {
      const sl_endpoint_config_t *ec = &pc->endpoints[j];
      sl_endpoint_t *ep = &reg->eps[k];
      ep->id = k;
      ep->pool = pool;
      ep->reg = reg;
      ep->slots = ec->slots > 0 ? ec->slots : pc->slots;
      snprintf(ep->host, sizeof(ep->host), "%s", ec->host);
      snprintf(ep->base, sizeof(ep->base), "%s", ec->base);
      ep->port = ec->port;
      snprintf(ep->name, sizeof(ep->name), "%s:%d", ep->host, ep->port);
      if (ec->is_sim) continue; /* resolved when the in-process engine listens */
      struct addrinfo hints, *res = NULL;
      memset(&hints, 0, sizeof(hints));
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      char port[16];
      snprintf(port, sizeof(port), "%d", ep->port);
      int rc = getaddrinfo(ep->host, port, &hints, &res);
      if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "pools[%d].endpoints[%d]: cannot resolve \"%s\": %s", i, j, ep->host,
                 gai_strerror(rc));
        sl_registry_free(reg);
        return SL_EINVAL;
      }
      memcpy(&ep->addr, res->ai_addr, res->ai_addrlen);
      freeaddrinfo(res);
    }
  }
  reg->snapshot_version = 1;
  return 0;
}

void sl_registry_free(sl_registry_t *reg) {
  sl_free(reg->eps);
  reg->eps = NULL;
  reg->neps = 0;
}

static int sl__pool_serves(const sl_pool_t *p, const char *model) {
  for (int m = 0; m < p->cfg->nmodels; m++)
    if (strcmp(p->cfg->models[m], model) == 0) return 1;
  return 0;
}

int sl_registry_has_model(const sl_registry_t *reg, const char *model) {
  for (int i = 0; i < reg->npools; i++)
    if (sl__pool_serves(&reg->pools[i], model)) return 1;
  return 0;
}

int sl_registry_any_ready(const sl_registry_t *reg) {
  for (int i = 0; i < reg->neps; i++)
    if (reg->eps[i].ready && !reg->eps[i].draining) return 1;
  return 0;
}

int sl_endpoint_set_ready(sl_endpoint_t *ep, int ready) {
  if (ep->ready == !!ready) return 0;
  ep->ready = !!ready;
  ep->reg->snapshot_version++;
  return 1;
}

int sl_endpoint_set_draining(sl_endpoint_t *ep, int draining) {
  if (ep->draining == !!draining) return 0;
  ep->draining = !!draining;
  ep->reg->snapshot_version++;
  return 1;
}

void sl_endpoint_failed(sl_endpoint_t *ep, uint64_t now) {
  const sl_config_t *cfg = ep->reg->cfg;
  ep->failures++;
  ep->errors++;
  /* One failure may be the request's bad luck; a run of them is the
   * endpoint.  Cooldown starts at the configured run length and doubles
   * with every further failure. */
  if (ep->failures < cfg->cooldown_after_failures) return;
  uint64_t ms = cfg->cooldown_base_ms;
  for (int i = cfg->cooldown_after_failures; i < ep->failures && ms < cfg->cooldown_max_ms; i++) ms *= 2;
  if (ms > cfg->cooldown_max_ms) ms = cfg->cooldown_max_ms;
  ep->cooldown_until = now + ms * 1000000ull;
  ep->reg->snapshot_version++;
  sl_narrate_push(SL_NAR_COOLDOWN, NULL, ep->name, NULL, NULL, 0, 0, (double)ms, ep->failures);
}

int sl_endpoint_probe(sl_endpoint_t *ep, int ok) {
  /* A probe and a request test different things: /health can answer while
   * completions fail (a broken model, a full disk).  If a passing probe
   * cleared the failure run, the backoff would restart every probe
   * interval and never reach its cap; if a failing probe added to it, an
   * engine that comes back would still sit out a cooldown earned while it
   * was down.  So probes move readiness only. */
  return sl_endpoint_set_ready(ep, ok);
}

void sl_endpoint_succeeded(sl_endpoint_t *ep) {
  if (ep->failures == 0 && ep->cooldown_until == 0) return;
  ep->failures = 0;
  ep->cooldown_until = 0;
  ep->reg->snapshot_version++;
}

int sl_placement_prefilter(sl_registry_t *reg, const char *model, int64_t need_tokens, uint64_t now,
                           sl_candidate_t *cands, int cap, int *cause, char *reason, size_t reasonlen) {
  int n = 0, served = 0, fits = 0, ready = 0;
  int64_t largest = 0;
  for (int i = 0; i < reg->npools; i++) {
    sl_pool_t *p = &reg->pools[i];
    if (!sl__pool_serves(p, model)) continue;
    served = 1;
    int64_t ctx = p->cfg->context_tokens;
    if (ctx > largest) largest = ctx;
    if (need_tokens > 0 && ctx > 0 && need_tokens > ctx) continue;
    fits = 1;
    for (int j = 0; j < p->neps; j++) {
      sl_endpoint_t *ep = &p->eps[j];
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

static double sl__ewma(double old, double sample) {
  const double alpha = 0.2;
  return old == 0 ? sample : old + alpha * (sample - old);
}

void sl_endpoint_observe(sl_endpoint_t *ep, int failed, double ttft_ms, double itl_ms, double tokens_per_s) {
  ep->error_rate += 0.2 * ((failed ? 1.0 : 0.0) - ep->error_rate);
  if (ttft_ms >= 0) ep->ewma_ttft_ms = sl__ewma(ep->ewma_ttft_ms, ttft_ms);
  if (itl_ms >= 0) ep->ewma_itl_ms = sl__ewma(ep->ewma_itl_ms, itl_ms);
  if (tokens_per_s >= 0) ep->tokens_per_s = sl__ewma(ep->tokens_per_s, tokens_per_s);
}
