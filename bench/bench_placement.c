/* bench_placement.c: what one placement costs, JIT off under the budget
 * (as the daemon runs it) against the JIT on and against the C rule.
 *
 * For each shipped placement policy, builds a generation exactly as the
 * daemon does (fenced state, JIT off) and calls place() through
 * sl_generation_place over contexts of 8 and 64 candidates with changing
 * loads.  The same generation is then switched to JIT on (what the daemon
 * did before every Lua call went through the budget runner) and measured
 * again; the budget's count hook stays set in both, as in the daemon.  Baseline in the same run: the C least-loaded rule over the same
 * candidates (sl_placement_least_loaded).  Reports best-of-N ns per
 * placement and the ratios.  Not run by ctest.
 *
 * Usage: bench_placement [calls] [rounds]
 */
#include <luajit.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/base/alloc.h"
#include "runtime/lua/generation.h"
#include "runtime/stream/placement.h"
#include "runtime/lua/ttldict.h"

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static const char *const names[8] = {"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000", "10.0.0.4:8000",
                                     "10.0.1.1:8000", "10.0.1.2:8000", "10.0.1.3:8000", "10.0.1.4:8000"};

static sl_ffi_place_ctx_t ctx;
static sl_endpoint_t eps[SL_FFI_MAX_CANDIDATES];
static sl_candidate_t cands[SL_FFI_MAX_CANDIDATES];

static void fill(int n, unsigned i) {
  ctx.model = "m";
  ctx.n = n;
  ctx.attempt = 1;
  ctx.prompt_chars = 1000;
  ctx.max_tokens = 256;
  ctx.session = (i & 1) ? "session-abc" : NULL;
  ctx.seed = 0x9e3779b97f4a7c15ull * (i + 1);
  for (int k = 0; k < n; k++) {
    sl_ffi_candidate_t *c = &ctx.cands[k];
    c->endpoint_id = k;
    c->pool_id = 0;
    c->slots = 8;
    c->inflight = (int32_t)((i * 7 + (unsigned)k * 3) % 9);
    c->context_tokens = 8192;
    c->tried = 0;
    c->ewma_ttft_ms = 40.0 + k;
    c->ewma_itl_ms = 10.0 + (k % 3);
    c->tokens_per_s = 80.0 - k;
    c->error_rate = 0.0;
    c->name = names[k % 8];
    eps[k].id = k;
    eps[k].slots = 8;
    eps[k].inflight = c->inflight;
    cands[k].ep = &eps[k];
  }
}

/* Best of rounds: ns per place() call over calls calls. */
static double measure(sl_generation_t *g, int n, int calls, int rounds) {
  double best = 1e30;
  char reason[256];
  for (int r = 0; r < rounds; r++) {
    double t0 = now_ns();
    for (int i = 0; i < calls; i++) {
      fill(n, (unsigned)i);
      int k;
      if (sl_generation_place(g, &ctx, NULL, &k, reason, sizeof(reason)) < 0) {
        fprintf(stderr, "place failed: %s\n", reason);
        exit(1);
      }
    }
    double ns = (now_ns() - t0) / calls;
    if (ns < best) best = ns;
  }
  return best;
}

static double measure_c(int n, int calls, int rounds) {
  double best = 1e30;
  char reason[256];
  volatile int sink = 0;
  for (int r = 0; r < rounds; r++) {
    double t0 = now_ns();
    for (int i = 0; i < calls; i++) {
      fill(n, (unsigned)i);
      sink += sl_placement_least_loaded(cands, n, NULL, 0, reason, sizeof(reason));
    }
    double ns = (now_ns() - t0) / calls;
    if (ns < best) best = ns;
  }
  (void)sink;
  return best;
}

int main(int argc, char **argv) {
  int calls = argc > 1 ? atoi(argv[1]) : 200000;
  int rounds = argc > 2 ? atoi(argv[2]) : 5;
  sl_alloc_init();
  sl_ttldict_t *dict = NULL; /* what affinity and learning store into */
  if (sl_ttldict_new(NULL, &dict) != 0) return 1;
  static const char *const policies[] = {"least_loaded", "p2c", "affinity", "weighted", "learning"};
  printf("ns per placement, best of %d rounds of %d calls (fill of the context included in every column)\n\n",
         rounds, calls);
  printf("| policy | candidates | C least-loaded | Lua, JIT off (budgeted) | Lua, JIT on | JIT off / JIT on | JIT off / C |\n");
  printf("|---|---:|---:|---:|---:|---:|---:|\n");
  for (size_t p = 0; p < sizeof(policies) / sizeof(policies[0]); p++) {
    char path[512], err[1024];
    sl_policy_resolve(policies[p], path, sizeof(path));
    sl_generation_t *g;
    sl_lua_host_t lim = {64u << 20, 0, 0, NULL, dict};
    if (sl_generation_build(path, NULL, 1, &lim, &g, err, sizeof(err)) < 0) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    /* JIT off first: turning the JIT off later would not remove traces it
     * compiled (only a flush does), and the daemon's states never had any. */
    double c[2], off[2], on[2];
    for (int j = 0; j < 2; j++) off[j] = measure(g, j ? 64 : 8, calls, rounds);
    luaJIT_setmode(g->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_ON);
    for (int j = 0; j < 2; j++) on[j] = measure(g, j ? 64 : 8, calls, rounds);
    for (int j = 0; j < 2; j++) c[j] = measure_c(j ? 64 : 8, calls, rounds);
    for (int j = 0; j < 2; j++)
      printf("| %s | %d | %.0f | %.0f | %.0f | %.2f | %.1f |\n", policies[p], j ? 64 : 8, c[j], off[j], on[j],
             off[j] / on[j], off[j] / c[j]);
    sl_generation_release(g);
  }
  sl_ttldict_free(dict);
  return 0;
}
