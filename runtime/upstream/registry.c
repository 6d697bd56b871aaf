/* registry.c: the engine pools and endpoints (see registry.h). */
#include "runtime/upstream/registry.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/base/narrate.h"

static int sl__same_str(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

/* The SSL_CTX for t's CA settings: shared with an endpoint made with the
 * same ones, else made now.  NULL with err set when the bundle is bad. */
static SSL_CTX *sl__tls_ctx(sl_registry_t *reg, const sl_tls_config_t *t, const char *path, char *err,
                            size_t errlen) {
  for (int i = 0; i < reg->ntls; i++)
    if (reg->tls_keys[i]->verify == t->verify && sl__same_str(reg->tls_keys[i]->ca_file, t->ca_file))
      return reg->tls_ctxs[i];
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) {
    snprintf(err, errlen, "%s: cannot make a TLS context: %s", path, ERR_reason_error_string(ERR_get_error()));
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  /* Engines speak HTTP/1.1 to us; saying so lets an ALPN server agree. */
  static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn));
  SSL_CTX_set_verify(ctx, t->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
  int ok = t->ca_file ? SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL)
                      : SSL_CTX_set_default_verify_paths(ctx);
  if (ok != 1) {
    unsigned long e = ERR_get_error();
    snprintf(err, errlen, "%s: cannot load %s: %s", path, t->ca_file ? t->ca_file : "the system CA store",
             e ? ERR_reason_error_string(e) : "no certificate");
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
  }
  reg->tls_ctxs[reg->ntls] = ctx;
  reg->tls_keys[reg->ntls] = t;
  reg->ntls++;
  return ctx;
}

/* TLS settings of one https:// endpoint. */
static int sl__endpoint_tls(sl_registry_t *reg, sl_endpoint_t *ep, const sl_endpoint_config_t *ec, int i, int j,
                            char *err, size_t errlen) {
  char path[80];
  snprintf(path, sizeof(path), "pools[%d].endpoints[%d].tls%s", i, j, ec->tls_cfg.ca_file ? ".ca_file" : "");
  ep->tls = sl__tls_ctx(reg, &ec->tls_cfg, path, err, errlen);
  if (ep->tls == NULL) return SL_EINVAL;
  ep->tls_verify = ec->tls_cfg.verify;
  snprintf(ep->tls_name, sizeof(ep->tls_name), "%s", ec->tls_cfg.server_name ? ec->tls_cfg.server_name : ec->host);
  return 0;
}

int sl_registry_init(sl_registry_t *reg, uv_loop_t *loop, const sl_config_t *cfg, char *err, size_t errlen) {
  memset(reg, 0, sizeof(*reg));
  reg->loop = loop;
  reg->cfg = cfg;
  /* Before anything is allocated: an unknown adapter is a configuration
   * error, named by its key. */
  if (sl_adapter_check_config(cfg, err, errlen) < 0) return SL_EINVAL;
  int total = 0;
  for (int i = 0; i < cfg->npools; i++) total += cfg->pools[i].nendpoints;
  reg->eps = sl_calloc((size_t)total, sizeof(sl_endpoint_t));
  reg->neps = total;
  reg->tls_ctxs = sl_calloc((size_t)total + 1, sizeof(*reg->tls_ctxs));
  reg->tls_keys = sl_calloc((size_t)total + 1, sizeof(*reg->tls_keys));
  reg->npools = cfg->npools;
  int k = 0;
  for (int i = 0; i < cfg->npools; i++) {
    const sl_pool_config_t *pc = &cfg->pools[i];
    sl_pool_t *pool = &reg->pools[i];
    pool->cfg = pc;
    pool->adapter = sl_adapter_find(pc->adapter);
    pool->eps = &reg->eps[k];
    pool->neps = pc->nendpoints;
    sl_hist_init(&pool->h_duration, &sl_buckets_duration);
    sl_hist_init(&pool->h_queue, &sl_buckets_duration);
    sl_hist_init(&pool->h_tokens, &sl_buckets_tokens);
    for (int j = 0; j < pc->nendpoints; j++, k++) {
      const sl_endpoint_config_t *ec = &pc->endpoints[j];
      sl_endpoint_t *ep = &reg->eps[k];
      ep->id = k;
      ep->pool = pool;
      ep->reg = reg;
      ep->slots = ec->slots > 0 ? ec->slots : pc->slots;
      ep->slots_configured = ep->slots;
      ep->dyn.cls = -1; /* no verdict yet (0 would read as fixed_point) */
      ep->adaptive = pc->limit_adaptive;
      ep->limit_min = pc->limit_min > 0 ? pc->limit_min : 1;
      ep->limit_max = pc->limit_max > 0 ? pc->limit_max : 4 * ep->slots;
      if (ep->limit_max < ep->limit_min) ep->limit_max = ep->limit_min;
      ep->limit = pc->limit_initial > 0 ? pc->limit_initial : ep->slots;
      if (ep->limit < ep->limit_min) ep->limit = ep->limit_min;
      if (ep->limit > ep->limit_max) ep->limit = ep->limit_max;
      sl_qs_reset(&ep->ttft_w);
      sl_hist_init(&ep->h_ttft, &sl_buckets_ttft);
      sl_hist_init(&ep->h_tpot, &sl_buckets_tpot);
      snprintf(ep->host, sizeof(ep->host), "%s", ec->host);
      snprintf(ep->base, sizeof(ep->base), "%s", ec->base);
      ep->port = ec->port;
      ep->ecfg = ec;
      ep->managed = ec->managed;
      ep->down = ec->managed; /* until its engine starts (runtime/gateway/engines.c) */
      snprintf(ep->name, sizeof(ep->name), "%s:%d", ep->host, ep->port);
      if (ec->is_sim) continue;
      if (ec->tls && sl__endpoint_tls(reg, ep, ec, i, j, err, errlen) < 0) {
        sl_registry_free(reg);
        return SL_EINVAL;
      } /* resolved when the in-process engine listens */
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

/* ceil(v / n), at least 1. */
static int sl__share(int v, int n) {
  int s = (v + n - 1) / n;
  return s < 1 ? 1 : s;
}

void sl_registry_share(sl_registry_t *reg, int nworkers) {
  if (nworkers <= 1) return;
  for (int i = 0; i < reg->neps; i++) {
    sl_endpoint_t *ep = &reg->eps[i];
    ep->slots = sl__share(ep->slots_configured, nworkers);
    ep->limit_min = sl__share(ep->limit_min, nworkers);
    ep->limit_max = sl__share(ep->limit_max, nworkers);
    if (ep->limit_max < ep->limit_min) ep->limit_max = ep->limit_min;
    ep->limit = sl__share(ep->limit, nworkers);
    if (ep->limit < ep->limit_min) ep->limit = ep->limit_min;
    if (ep->limit > ep->limit_max) ep->limit = ep->limit_max;
  }
}

void sl_registry_free(sl_registry_t *reg) {
  for (int i = 0; i < reg->ntls; i++) SSL_CTX_free(reg->tls_ctxs[i]);
  sl_free(reg->tls_ctxs);
  sl_free(reg->tls_keys);
  reg->tls_ctxs = NULL;
  reg->tls_keys = NULL;
  reg->ntls = 0;
  sl_free(reg->eps);
  reg->eps = NULL;
  reg->neps = 0;
}

int sl_pool_serves(const sl_pool_t *p, const char *model) {
  for (int m = 0; m < p->cfg->nmodels; m++)
    if (strcmp(p->cfg->models[m], model) == 0) return 1;
  return 0;
}

int sl_endpoint_serves(const sl_endpoint_t *ep, const char *model) {
  if (ep->ecfg == NULL || ep->ecfg->nmodels == 0) return 1;
  for (int m = 0; m < ep->ecfg->nmodels; m++)
    if (strcmp(ep->ecfg->models[m], model) == 0 || strcmp(ep->ecfg->models[m], "*") == 0) return 1;
  return 0;
}

int sl_registry_has_model(const sl_registry_t *reg, const char *model) {
  for (int i = 0; i < reg->npools; i++)
    if (sl_pool_serves(&reg->pools[i], model)) return 1;
  return 0;
}

int sl_registry_any_ready(const sl_registry_t *reg) {
  for (int i = 0; i < reg->neps; i++)
    if (reg->eps[i].ready && !reg->eps[i].draining) return 1;
  return 0;
}

const char *const sl_outcome_names[SL_OUT__COUNT] = {
    "ok", "cancelled", "guard", "timeout", "upstream_error", "rate_limited", "rejected", "slow_client", "error"};

int sl_endpoint_set_ready(sl_endpoint_t *ep, int ready) {
  if (ep->ready == !!ready) return 0;
  ep->ready = !!ready;
  ep->reg->snapshot_version++;
  if (ready && ep->reg->on_ready) ep->reg->on_ready(ep->reg->ready_ud, ep);
  return 1;
}

int sl_endpoint_set_limit(sl_endpoint_t *ep, int v) {
  int old = ep->limit;
  if (v < ep->limit_min) v = ep->limit_min;
  if (v > ep->limit_max) v = ep->limit_max;
  ep->limit = v;
  return old;
}

int sl_endpoint_drop(sl_endpoint_t *ep, int status) {
  if (status == 429) ep->w_429++;
  else if (status == 503) ep->w_503++;
  else ep->w_timeouts++;
  if (!ep->adaptive || ep->w_cut) return 0;
  /* One cut an interval: a burst of refusals is one overload, and the
   * rule sees how many there were when the interval ends. */
  ep->w_cut = 1;
  int old = ep->limit;
  sl_endpoint_set_limit(ep, (int)((double)ep->limit * ep->reg->cfg->limit_cut));
  return ep->limit != old;
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
  sl_narrate_push(ep->reg->nar, SL_NAR_COOLDOWN, NULL, ep->name, NULL, NULL, 0, 0, (double)ms, ep->failures);
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
