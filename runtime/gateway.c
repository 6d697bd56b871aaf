/* gateway.c: building generations for the gateway (start and reload). */
#include <stdio.h>

#include "runtime/counters.h"
#include "runtime/errors.h"
#include "runtime/gateway.h"

int sl_gateway_reload(sl_gateway_t *gw, char *msg, size_t msglen) {
  char path[512];
  char err[1024];
  if (sl_policy_resolve(gw->cfg->placement_policy, path, sizeof(path)) < 0) {
    snprintf(msg, msglen, "placement.policy: path too long");
    return SL_ETOOBIG;
  }
  sl_generation_t *g;
  int rc = sl_generation_build(path, gw->cfg->placement_config, gw->gen_built + 1, gw->cfg->lua_memory_limit, &g,
                               err, sizeof(err));
  if (rc < 0) {
    if (gw->gen != NULL) {
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
    sl_generation_release(old);
  } else {
    snprintf(msg, msglen, "generation %llu (policy %s %s from %s)", (unsigned long long)g->id, g->policy_name,
             g->policy_version, g->policy_path);
  }
  return 0;
}
