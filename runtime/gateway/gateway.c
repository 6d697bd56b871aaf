/* gateway.c: building generations for the gateway (start and reload). */
#include <stdio.h>
#include <string.h>

#include "runtime/base/counters.h"
#include "runtime/base/errors.h"
#include "runtime/gateway/gateway.h"
#include "runtime/base/narrate.h"
#include "runtime/lua/policy_check.h"

int sl_gateway_reload(sl_gateway_t *gw, char *msg, size_t msglen) {
  char path[512];
  char err[1024];
  if (sl_policy_resolve(gw->cfg->placement_policy, path, sizeof(path)) < 0) {
    snprintf(msg, msglen, "placement.policy: path too long");
    return SL_ETOOBIG;
  }
  char npath[512];
  if (gw->cfg->narration_policy[0] && sl_narration_resolve(gw->cfg->narration_policy, npath, sizeof(npath)) < 0) {
    snprintf(msg, msglen, "narration.policy: path too long");
    return SL_ETOOBIG;
  }
  sl_lua_limits_t lim = {gw->cfg->lua_memory_limit, gw->cfg->lua_budget, gw->cfg->lua_load_budget};
  sl_generation_t *g;
  int rc = sl_policy_build_checked(path, gw->cfg->placement_config, gw->cfg->narration_policy[0] ? npath : NULL,
                                   gw->gen_built + 1, &lim, NULL, &g, err, sizeof(err));
  if (rc < 0) {
    if (gw->gen != NULL) {
      sl_narrate_push(SL_NAR_RELOAD_FAILED, NULL, NULL, NULL, err, 0, gw->gen->id, 0, 0);
      sl_counter_inc(SL_C_RELOADS_FAILED);
      snprintf(msg, msglen, "reload failed; generation %llu stays current: %s", (unsigned long long)gw->gen->id, err);
    } else {
      snprintf(msg, msglen, "%s", err);
    }
    return rc;
  }
  gw->gen_built++;
  sl_generation_t *old = gw->gen;
  gw->gen = g;
  if (old != NULL) {
    sl_counter_inc(SL_C_RELOADS_OK);
    /* The gateway's reference goes; streams admitted under it keep theirs. */
    int streams = old->refs - 1;
    snprintf(msg, msglen,
             "generation %llu is current (policy %s %s from %s); generation %llu ends with its %d stream(s)",
             (unsigned long long)g->id, g->policy_name, g->policy_version, g->policy_path,
             (unsigned long long)old->id, streams);
    sl_narrate_push(SL_NAR_RELOAD_OK, NULL, NULL, NULL, msg, 0, g->id, 0, 0);
    sl_generation_release(old);
  } else {
    snprintf(msg, msglen, "generation %llu (policy %s %s from %s)", (unsigned long long)g->id, g->policy_name,
             g->policy_version, g->policy_path);
  }
  return 0;
}
