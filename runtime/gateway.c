/* gateway.c: building generations for the gateway (start and reload). */
#include <stdio.h>
#include <string.h>

#include "runtime/counters.h"
#include "runtime/errors.h"
#include "runtime/gateway.h"
#include "runtime/narrate.h"

/* <policy dir>/<name>.lua for a bare name, else the path as given. */
static int sl__resolve_narration(const char *name_or_path, char *out, size_t cap) {
  size_t n = strlen(name_or_path);
  int is_path = strchr(name_or_path, '/') != NULL || (n > 4 && strcmp(name_or_path + n - 4, ".lua") == 0);
  int w = is_path ? snprintf(out, cap, "%s", name_or_path) : snprintf(out, cap, "%s/%s.lua", sl_policy_dir(), name_or_path);
  return w < 0 || (size_t)w >= cap ? -1 : 0;
}

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
  if (rc == 0 && gw->cfg->narration_policy[0]) {
    char npath[512];
    if (sl__resolve_narration(gw->cfg->narration_policy, npath, sizeof(npath)) < 0) {
      snprintf(err, sizeof(err), "narration.policy: path too long");
      rc = SL_ETOOBIG;
    } else {
      rc = sl_generation_load_narration(g, npath, err, sizeof(err));
    }
    if (rc < 0) sl_generation_release(g);
  }
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
