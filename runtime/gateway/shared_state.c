/* shared_state.c: the gateway's Redis client and the tenants' shared
 * windows (see shared_state.h). */
#include "runtime/gateway/shared_state.h"

#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/tenant/tenant.h"

static void sl__on_state(sl_redis_t *r, int up, const char *why, void *ud) {
  sl_shared_t *sh = ud;
  sl_gateway_t *gw = sh->gw;
  (void)r;
  gw->counters.v[SL_C_REDIS_UP] = up ? 1 : 0;
  if (!up) sl_counter_inc(&gw->counters, SL_C_REDIS_OUTAGES);
  sl_narrate_push(gw->nar, SL_NAR_SHARED, NULL, NULL, NULL, up ? gw->cfg->redis_url : why, up, 0, 0,
                  (int64_t)gw->counters.v[SL_C_REDIS_OUTAGES]);
}

int sl_shared_open(sl_gateway_t *gw, char *err, size_t errlen) {
  const sl_config_t *cfg = gw->cfg;
  if (cfg->redis_url[0] == '\0') return 0;
  sl_shared_t *sh = sl_calloc(1, sizeof(*sh));
  if (sh == NULL) return SL_ENOMEM;
  sh->gw = gw;
  sl_redis_options_t o = {.url = cfg->redis_url, .timeout_ms = cfg->redis_timeout_ms, .on_state = sl__on_state,
                          .ud = sh};
  char why[256];
  int rc = sl_redis_open(&sh->redis, gw->loop, &o, why, sizeof(why));
  if (rc < 0) {
    snprintf(err, errlen, "redis.url: %s", why);
    sl_free(sh);
    return rc;
  }
  gw->shared = sh;
  if (sl_shlimits_new(&sh->limits, sh->redis) < 0) {
    snprintf(err, errlen, "out of memory for the shared limits");
    return SL_ENOMEM;
  }
  static const struct {
    const char *tag;
    sl_shl_kind_t kind;
    int64_t period_ms;
  } wins[3] = {{"rpm", SL_SHL_WINDOW, 60000}, {"tpm", SL_SHL_GCRA, 60000}, {"tpd", SL_SHL_WINDOW, 86400000}};
  for (int i = 0; gw->tenants != NULL && i < gw->tenants->n; i++) {
    sl_tenant_t *t = &gw->tenants->t[i];
    const int64_t limit[3] = {t->rpm, t->tpm, t->tpd};
    for (int w = 0; w < 3; w++) {
      if (limit[w] <= 0) continue;
      char key[256];
      snprintf(key, sizeof(key), "%st:%s:%s", cfg->redis_prefix, t->name, wins[w].tag);
      int64_t batch = w == 0 ? cfg->redis_batch_requests : cfg->redis_batch_tokens;
      t->shared[w] = sl_shwin_new(sh->limits, key, wins[w].kind, limit[w], wins[w].period_ms, batch);
      if (t->shared[w] == NULL) {
        snprintf(err, errlen, "out of memory for tenant %s's shared windows", t->name);
        return SL_ENOMEM;
      }
      t->fail_closed[w] = cfg->redis_fail_closed[w];
    }
  }
  rc = sl_shdict_attach(&sh->dict, gw->loop, gw->dict, sh->redis, cfg->redis_prefix, 0, NULL);
  if (rc < 0) {
    snprintf(err, errlen, "the dictionary's replication did not start: %s", sl_strerror(rc));
    return rc;
  }
  fprintf(gw->log, "sluice: shared state in Redis at %s (keys under \"%s\"; a command's bound %llu ms)\n",
          cfg->redis_url, cfg->redis_prefix, (unsigned long long)cfg->redis_timeout_ms);
  return 0;
}

static void sl__redis_closed(void *ud) {
  sl_shared_t *sh = ud;
  void (*done)(void *) = sh->closed;
  void *dud = sh->closed_ud;
  sl_shlimits_free(sh->limits);
  sl_free(sh);
  if (done) done(dud);
}

void sl_shared_close(sl_shared_t *sh, void (*done)(void *ud), void *ud) {
  sh->closed = done;
  sh->closed_ud = ud;
  /* The tenants outlive this: their windows must not be reached again. */
  sl_gateway_t *gw = sh->gw;
  for (int i = 0; gw->tenants != NULL && i < gw->tenants->n; i++)
    for (int w = 0; w < 3; w++) gw->tenants->t[i].shared[w] = NULL;
  /* The replicator goes first, on this loop turn (shdict.h). */
  sl_shdict_detach(sh->dict);
  sh->dict = NULL;
  sl_redis_close(sh->redis, sl__redis_closed, sh);
}

void sl_shared_json(const sl_shared_t *sh, cJSON *o) {
  cJSON *r = cJSON_AddObjectToObject(o, "redis");
  sl_redis_stats_t st;
  sl_redis_stats(sh->redis, &st);
  cJSON_AddStringToObject(r, "url", sh->gw->cfg->redis_url);
  cJSON_AddBoolToObject(r, "up", st.up);
  cJSON_AddNumberToObject(r, "pending", st.pending);
  cJSON_AddNumberToObject(r, "commands", (double)st.commands);
  cJSON_AddNumberToObject(r, "replies", (double)st.replies);
  cJSON_AddNumberToObject(r, "error_replies", (double)st.error_replies);
  cJSON_AddNumberToObject(r, "timeouts", (double)st.timeouts);
  cJSON_AddNumberToObject(r, "failed", (double)st.failed);
  cJSON_AddNumberToObject(r, "refused_down", (double)st.refused_down);
  cJSON_AddNumberToObject(r, "connects", (double)st.connects);
  cJSON_AddNumberToObject(r, "outages", (double)st.outages);
  cJSON_AddStringToObject(r, "last_error", st.last_error);
  sl_shlimits_stats_t ls;
  sl_shlimits_stats(sh->limits, &ls);
  cJSON *l = cJSON_AddObjectToObject(r, "limits");
  cJSON_AddNumberToObject(l, "flushes", (double)ls.flushes);
  cJSON_AddNumberToObject(l, "confirmed", (double)ls.confirmed);
  cJSON_AddNumberToObject(l, "lost", (double)ls.lost);
  cJSON_AddNumberToObject(l, "dropped_units", (double)ls.dropped_units);
  cJSON_AddNumberToObject(l, "over_allowance", (double)ls.over_allowance);
  if (sh->dict == NULL) return;
  sl_shdict_stats_t ds;
  sl_shdict_stats(sh->dict, &ds);
  cJSON *d = cJSON_AddObjectToObject(r, "dict");
  cJSON_AddNumberToObject(d, "writes_sent", (double)ds.writes_sent);
  cJSON_AddNumberToObject(d, "writes_local", (double)ds.writes_local);
  cJSON_AddNumberToObject(d, "write_failures", (double)ds.write_failures);
  cJSON_AddNumberToObject(d, "conflicts", (double)ds.conflicts);
  cJSON_AddNumberToObject(d, "fills", (double)ds.fills);
  cJSON_AddNumberToObject(d, "fills_applied", (double)ds.fills_applied);
  cJSON_AddNumberToObject(d, "fills_empty", (double)ds.fills_empty);
  cJSON_AddNumberToObject(d, "fills_skipped", (double)ds.fills_skipped);
  cJSON_AddNumberToObject(d, "fill_failures", (double)ds.fill_failures);
  cJSON_AddNumberToObject(d, "remote_applied", (double)ds.remote_applied);
  cJSON_AddNumberToObject(d, "own_applied", (double)ds.own_applied);
  cJSON_AddNumberToObject(d, "apply_failures", (double)ds.apply_failures);
  cJSON_AddNumberToObject(d, "pending", ds.pending);
}
