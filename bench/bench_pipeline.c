/* bench_pipeline: what one on_chunk call of a tenant pipeline costs
 * (runtime/lua/pipeline.h), beside baselines measured in this one run:
 *
 *   empty     a pipeline whose on_chunk returns at once: the call path
 *             alone (budget runner, ctx fields, the held-bytes table)
 *   typical   the bench/run column's pipeline: words counted with gsub,
 *             three phrases looked for with plain find
 *   replace   the same plus a find with a pattern and a replace action
 *
 * Each is called with batches of 6 bytes (about one token: what a paced
 * stream gives when flush_ms equals the engine's inter-token time) and of
 * 256 bytes (pipelines.flush_bytes).  Reports ns per call and per byte,
 * best of 3 runs.  Usage: bench_pipeline [calls] (default 200000).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/base/alloc.h"
#include "runtime/lua/pipeline.h"

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static const char *const srcs[][2] = {
    {"empty", "return { on_chunk = function(ctx, text) end }\n"},
    {"typical",
     "local M = {}\n"
     "local watch = {'account number', 'password is', 'internal use only'}\n"
     "function M.on_chunk(ctx, text)\n"
     "  local _, words = text:gsub('%S+', '')\n"
     "  ctx.words = (ctx.words or 0) + words\n"
     "  for i = 1, #watch do\n"
     "    if not ctx.hit and text:find(watch[i], 1, true) then ctx.hit = watch[i] end\n"
     "  end\n"
     "end\n"
     "return M\n"},
    {"replace",
     "local M = {}\n"
     "function M.on_chunk(ctx, text)\n"
     "  local _, words = text:gsub('%S+', '')\n"
     "  ctx.words = (ctx.words or 0) + words\n"
     "  local s, e = text:find('ACCT%-%d+')\n"
     "  if s then sluice.replace(ctx.offset + s - 1, ctx.offset + e, 'ACCT-****') end\n"
     "end\n"
     "return M\n"},
};

int main(int argc, char **argv) {
  long calls = argc > 1 ? atol(argv[1]) : 200000;
  sl_alloc_init();
  static const char prose[] =
      "the quick brown fox jumps over the lazy dog while ACCT-1234 waits and the model keeps talking about "
      "rivers, engines, tokens and the weather in the valley; nothing here is secret except the number above "
      "and perhaps the way the sentences go on and on until the batch is full of plain English words....";
  static sl_pipe_actions_t acts;
  char path[64];
  snprintf(path, sizeof(path), "/tmp/bench_pipeline_%d.lua", (int)getpid());
  printf("bench_pipeline: %ld on_chunk calls per run, best of 3 (ns per call; ns per byte)\n\n", calls);
  printf("| pipeline | 6-byte batches | 256-byte batches |\n|---|---|---|\n");
  for (size_t k = 0; k < sizeof(srcs) / sizeof(srcs[0]); k++) {
    FILE *f = fopen(path, "w");
    if (f == NULL) return 1;
    fputs(srcs[k][1], f);
    fclose(f);
    sl_pipeline_t *p;
    char err[512];
    sl_pipeline_limits_t lim = {0, 0, 0, NULL, NULL};
    if (sl_pipeline_new("bench", path, &lim, &p, err, sizeof(err)) < 0) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    double per[2];
    const size_t sizes[2] = {6, 256};
    for (int z = 0; z < 2; z++) {
      double best = 1e300;
      for (int run = 0; run < 3; run++) {
        int h = sl_pipeline_begin(p, "req-bench", "sim");
        uint64_t off = 0;
        double t0 = now_ns();
        for (long i = 0; i < calls; i++) {
          size_t at = (size_t)(i * 7) % (sizeof(prose) - 1 - sizes[z]);
          if (sl_pipeline_on_chunk(p, h, "req-bench", 0, off, prose + at, sizes[z], &acts, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s: %s\n", srcs[k][0], err);
            return 1;
          }
          off += sizes[z];
        }
        double t = (now_ns() - t0) / (double)calls;
        if (t < best) best = t;
        sl_pipeline_finish(p, h);
      }
      per[z] = best;
    }
    printf("| %s | %.0f ns (%.1f ns/B) | %.0f ns (%.1f ns/B) |\n", srcs[k][0], per[0], per[0] / 6, per[1],
           per[1] / 256);
    sl_pipeline_free(p);
  }
  unlink(path);
  return 0;
}
