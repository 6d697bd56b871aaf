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
    if (samples[k].learned) {
      c->ewma_ttft_ms = 40.0 + 7.0 * i;
      c->ewma_itl_ms = 8.0 + (i % 3);
      c->tokens_per_s = 90.0 - i;
      c->error_rate = i % 4 == 0 ? 0.25 : 0.0;
    }
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
  sl_ttldict_t *live = sl_ttldict_swap_default(scratch);
  static sl_ffi_place_ctx_t ctx; /* large; one check at a time on this loop */
  int rc = 0;
  for (int k = 0; rc == 0; k++) {
    const char *what = sl__sample(k, &ctx);
    if (what == NULL) break;
    int index = -1;
    char reason[512];
    rc = sl_generation_place(g, &ctx, NULL, &index, reason, sizeof(reason));
    if (rc < 0)
      snprintf(err, errlen, "%s: placement sample %d (%s): %s", g->policy_path, k + 1, what, reason);
    else if (say)
      fprintf(say, "  placement sample %d (%s): candidate %d (%s): %s\n", k + 1, what, index + 1,
              ctx.cands[index].name, reason);
  }
  sl_ttldict_swap_default(live);
  sl_ttldict_free(scratch);
  return rc;
}

static int sl__narrate_run(void *ud, char *err, size_t errlen) { return sl_generation_narrate(ud, err, errlen); }

int sl_policy_check_narration(sl_generation_t *g, FILE *say, char *err, size_t errlen) {
  if (g->narrate_ref < 0) return 0;
  static sl_ffi_narration_event_t ev[SL_NAR__COUNT - 1];
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
                                       : "least loaded");
  }
  int rc = sl_narrate_trial(ev, SL_NAR__COUNT - 1, sl__narrate_run, g, say, err, errlen);
  if (rc < 0) {
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s: narration of one sample event of each kind: %s", g->narration_path, err);
    snprintf(err, errlen, "%s", msg);
  }
  return rc;
}

int sl_policy_build_checked(const char *placement_path, const char *placement_config, const char *narration_path,
                            uint64_t id, const sl_lua_limits_t *lim, FILE *say, sl_generation_t **out, char *err,
                            size_t errlen) {
  sl_generation_t *g;
  int rc = sl_generation_build(placement_path, placement_config, id, lim, &g, err, errlen);
  if (rc < 0) return rc;
  if (narration_path) rc = sl_generation_load_narration(g, narration_path, err, errlen);
  if (rc == 0) rc = sl_policy_check_placement(g, say, err, errlen);
  if (rc == 0) rc = sl_policy_check_narration(g, say, err, errlen);
  if (rc < 0) {
    sl_generation_release(g);
    return rc;
  }
  *out = g;
  return 0;
}

/* ---- sluice check ---- */

/* Loads path in a scratch state (fenced, under the load budget) and tells
 * whether it is a narration module (it has narrate and no place). */
static int sl__is_narration(const char *path, const sl_lua_limits_t *lim, char *err, size_t errlen) {
  static const char probe[] =
      "local chunk, err = loadfile((...))\n"
      "if not chunk then error(err, 0) end\n"
      "local ok, mod = pcall(chunk)\n"
      "if not ok then error(mod, 0) end\n"
      "return type(mod) == 'table' and type(mod.narrate) == 'function' and type(mod.place) ~= 'function'\n";
  sl_lua_mem_t mem = {0, 0, lim->mem_limit};
  lua_State *L = sl_lua_new_state(&mem, err, errlen);
  if (L == NULL) return SL_ENOMEM;
  int rc = sl_budget_fence_state(L, err, errlen);
  if (rc == 0 && luaL_loadbuffer(L, probe, sizeof(probe) - 1, "=sluice.check") != 0) rc = SL_EINVAL;
  if (rc == 0) {
    lua_pushstring(L, path);
    sl_budget_call_t call = {"load", path, NULL, lim->load_budget};
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
  if (rc < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  sl_lua_limits_t lim = {cfg.lua_memory_limit, cfg.lua_budget, cfg.lua_load_budget};
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
      sl_config_free(&cfg);
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
    sl_config_free(&cfg);
    return 1;
  }
  /* Narration trial sentences are redacted like every log line. */
  const char *secrets[SL_MAX_POOLS + 34];
  int ns = 0;
  for (int i = 0; i < cfg.npools; i++)
    if (cfg.pools[i].api_key) secrets[ns++] = cfg.pools[i].api_key;
  for (int i = 0; i < cfg.nlog_secrets; i++) secrets[ns++] = cfg.log_secrets[i];
  secrets[ns] = NULL;
  sl_narrate_configure(stderr, 0, secrets);
  sl_generation_t *g;
  rc = sl_policy_build_checked(ppath, pconf, nar, 0, &lim, stdout, &g, err, sizeof(err));
  if (rc < 0) {
    fflush(stdout);
    fprintf(stderr, "%s\n", err);
  } else {
    if (file == NULL || nar == NULL)
      printf("ok: %s: placement policy %s %s\n", g->policy_path, g->policy_name, g->policy_version);
    if (nar) printf("ok: %s: narration policy\n", nar);
    printf("every phase returned on the samples within %llu VM instructions per call (lua.instruction_budget)\n",
           (unsigned long long)g->limits.budget);
    sl_generation_release(g);
  }
  sl_narrate_configure(NULL, 0, NULL);
  sl_ttldict_set_default(NULL);
  sl_config_free(&cfg);
  return rc < 0 ? 1 : 0;
}
