/* check.c: `sluice check` (see check.h). */
#include "runtime/cli/check.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/config.h"
#include "runtime/base/errors.h"
#include "runtime/guard/guard.h"
#include "runtime/lua/pipeline.h"
#include "runtime/tenant/tenant.h"
#include "runtime/lua/generation.h"
#include "runtime/lua/lua_budget.h"
#include "runtime/lua/policy_check.h"
#include "runtime/lua/ttldict.h"
#include "runtime/upstream/adapter.h"

/* Loads path in a scratch state (fenced, under the load budget) and tells
 * whether it is a narration module (it has narrate and no place). */
static int sl__is_narration(const char *path, const sl_lua_host_t *lim, char *err, size_t errlen) {
  static const char probe[] =
      "local chunk, err = loadfile((...))\n"
      "if not chunk then error(err, 0) end\n"
      "local ok, mod = pcall(chunk)\n"
      "if not ok then error(mod, 0) end\n"
      "return type(mod) == 'table' and type(mod.narrate) == 'function' and type(mod.place) ~= 'function'\n";
  sl_lua_mem_t mem = {0, 0, lim->mem_limit, 0};
  lua_State *L = sl_lua_new_state(&mem, err, errlen);
  if (L == NULL) return SL_ENOMEM;
  int rc = sl_budget_fence_state(L, err, errlen);
  if (rc == 0 && luaL_loadbuffer(L, probe, sizeof(probe) - 1, "=sluice.check") != 0) rc = SL_EINVAL;
  if (rc == 0) {
    lua_pushstring(L, path);
    sl_budget_call_t call = {"load", path, NULL, lim->load_budget, NULL};
    rc = sl_budget_pcall(L, 1, 1, &call, err, errlen) == SL_BUDGET_OK ? lua_toboolean(L, -1) : SL_EINVAL;
  }
  lua_close(L);
  return rc;
}

static void sl__check_usage(FILE *f) {
  fprintf(f,
          "usage: sluice check POLICY.lua\n"
          "       sluice check --config FILE\n"
          "  Loads a placement or narration policy (or every policy a config names, with\n"
          "  its placement.config and lua limits) exactly as the daemon would, then runs\n"
          "  each phase over sample inputs under the instruction budget and prints what\n"
          "  it decided.  A policy that raises, returns something unusable or runs past\n"
          "  its budget is refused: file:line and exit status 1.\n");
}

int sl_policy_check_main(int argc, char **argv) {
  const char *config_path = NULL, *file = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
      config_path = argv[++i];
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      sl__check_usage(stdout);
      return 0;
    } else if (argv[i][0] != '-' && file == NULL) {
      file = argv[i];
    } else {
      sl__check_usage(stderr);
      return 2;
    }
  }
  if ((config_path == NULL) == (file == NULL)) {
    sl__check_usage(stderr);
    return 2;
  }
  sl_alloc_init();
  static sl_config_t cfg;
  char err[1536];
  int rc = config_path ? sl_config_load(&cfg, config_path, err, sizeof(err))
                       : sl_config_parse(&cfg, sl_config_default_json(), strlen(sl_config_default_json()), err,
                                         sizeof(err));
  /* The adapter names are the adapter table's to judge (the gateway's
   * registry refuses an unknown one the same way when it opens). */
  if (rc == 0 && (rc = sl_adapter_check_config(&cfg, err, sizeof(err))) < 0) sl_config_free(&cfg);
  /* So are the guards the guard layer's (compiled as the gateway does). */
  for (int i = 0; rc == 0 && i < cfg.npools; i++) {
    char path[48];
    sl_guardset_t *gs = NULL;
    snprintf(path, sizeof(path), "pools[%d].guards", i);
    if ((rc = sl_guardset_build_json(cfg.pools[i].guards_json, path, NULL, &gs, err, sizeof(err))) < 0)
      sl_config_free(&cfg);
    sl_guardset_free(gs);
  }
  /* The tenants the tenant layer's, their guards the guard layer's. */
  sl_tenants_t *ts = NULL;
  if (rc == 0 && (rc = sl_tenants_build(cfg.tenants_json, &ts, err, sizeof(err))) < 0) sl_config_free(&cfg);
  for (int i = 0; rc == 0 && ts != NULL && i < ts->n; i++) {
    char path[48];
    sl_guardset_t *gs = NULL;
    snprintf(path, sizeof(path), "tenants[%d].guards", i);
    if ((rc = sl_guardset_build_json(ts->t[i].guards_json, path, NULL, &gs, err, sizeof(err))) < 0)
      sl_config_free(&cfg);
    sl_guardset_free(gs);
  }
  if (rc < 0) {
    if (ts != NULL) sl_tenants_free(ts);
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  /* Loading may store into the dictionary (a policy's configure): a
   * dictionary of the check's own, as a daemon has its own. */
  sl_ttldict_t *dict = NULL;
  if (sl_ttldict_new(NULL, &dict) != 0) {
    fprintf(stderr, "out of memory\n");
    sl_config_free(&cfg);
    if (ts != NULL) sl_tenants_free(ts);
    return 1;
  }
  sl_lua_host_t lim = {cfg.lua_memory_limit, cfg.lua_budget, cfg.lua_load_budget, NULL, dict};
  char ppath[512], npath[512];
  const char *pconf = NULL, *nar = NULL;
  int bad_path = 0;
  if (config_path) {
    bad_path = sl_policy_resolve(cfg.placement_policy, ppath, sizeof(ppath)) < 0 ||
               (cfg.narration_policy[0] && sl_narration_resolve(cfg.narration_policy, npath, sizeof(npath)) < 0);
    pconf = cfg.placement_config;
    nar = cfg.narration_policy[0] ? npath : NULL;
  } else if (sl_policy_resolve(file, ppath, sizeof(ppath)) < 0) {
    bad_path = 1;
  } else {
    /* One file: a placement policy, or a narration policy checked beside
     * the shipped least_loaded placement. */
    int is_nar = sl__is_narration(ppath, &lim, err, sizeof(err));
    if (is_nar < 0) {
      fprintf(stderr, "%s\n", err);
      sl_ttldict_free(dict);
      sl_config_free(&cfg);
      if (ts != NULL) sl_tenants_free(ts);
      return 1;
    }
    if (is_nar) {
      snprintf(npath, sizeof(npath), "%s", ppath);
      nar = npath;
      sl_policy_resolve("least_loaded", ppath, sizeof(ppath));
    }
  }
  if (bad_path) {
    fprintf(stderr, "policy path too long\n");
    sl_ttldict_free(dict);
    sl_config_free(&cfg);
    if (ts != NULL) sl_tenants_free(ts);
    return 1;
  }
  /* Narration trial sentences are redacted like every log line. */
  const char *secrets[SL_MAX_POOLS + 34];
  int ns = 0;
  for (int i = 0; i < cfg.npools; i++)
    if (cfg.pools[i].api_key) secrets[ns++] = cfg.pools[i].api_key;
  for (int i = 0; i < cfg.nlog_secrets; i++) secrets[ns++] = cfg.log_secrets[i];
  secrets[ns] = NULL;
  sl_generation_t *g;
  rc = sl_policy_build_checked(ppath, pconf, nar, 0, &lim, secrets, stdout, &g, err, sizeof(err));
  if (rc < 0) {
    fflush(stdout);
    fprintf(stderr, "%s\n", err);
  } else {
    if (file == NULL || nar == NULL)
      printf("ok: %s: placement policy %s %s\n", g->phase[SL_PHASE_PLACEMENT].file, g->phase[SL_PHASE_PLACEMENT].name, g->phase[SL_PHASE_PLACEMENT].version);
    if (nar) printf("ok: %s: narration policy\n", nar);
    printf("every phase returned on the samples within %llu VM instructions per call (lua.instruction_budget)\n",
           (unsigned long long)g->host.budget);
    if (file == NULL) {
      /* The limit rule, loaded into the same state as the daemon does. */
      char lpath[512], lerr[900];
      if (sl_limits_resolve(cfg.limit_rule, lpath, sizeof(lpath)) < 0) {
        fprintf(stderr, "limits.rule: path too long\n");
        rc = SL_ETOOBIG;
      } else if (sl_generation_load(g, "limits", lpath, cfg.limit_config, lerr, sizeof(lerr)) < 0) {
        fprintf(stderr, "limits.rule: %s\n", lerr);
        rc = SL_EINVAL;
      } else {
        printf("ok: %s: limit rule %s %s%s\n", lpath, g->phase[SL_PHASE_LIMIT].name, g->phase[SL_PHASE_LIMIT].version,
               g->phase[SL_PHASE_SLOW_CLIENT].ref >= 0 ? " (with slow_client)" : "");
      }
    }
    sl_generation_release(g);
  }
  /* Each tenant's pipeline, loaded into its sandbox as the daemon would. */
  for (int i = 0; rc == 0 && ts != NULL && i < ts->n; i++) {
    const sl_tenant_t *t = &ts->t[i];
    if (t->pipeline == NULL) continue;
    sl_pipeline_limits_t plim = {cfg.pipe_memory_limit, cfg.pipe_budget, cfg.pipe_load_budget, NULL, dict};
    sl_pipeline_t *p = NULL;
    if ((rc = sl_pipeline_new(t->name, t->pipeline, &plim, &p, err, sizeof(err))) < 0) {
      fprintf(stderr, "tenants[%d].pipeline: %s\n", i, err);
      break;
    }
    unsigned ph = sl_pipeline_phases(p);
    printf("ok: tenant %s: pipeline %s (%s%s%s%s)\n", t->name, sl_pipeline_file(p),
           ph & SL_PIPE_ON_REQUEST ? "on_request " : "", ph & SL_PIPE_ON_CHUNK ? "on_chunk " : "",
           ph & SL_PIPE_ON_VERDICT ? "on_verdict " : "", ph & SL_PIPE_ON_END ? "on_end" : "");
    sl_pipeline_free(p);
  }
  if (ts != NULL) sl_tenants_free(ts);
  sl_ttldict_free(dict);
  sl_config_free(&cfg);
  return rc < 0 ? 1 : 0;
}
