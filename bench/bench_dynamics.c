/* bench_dynamics: Rosenstein's exponent with the k-d tree neighbour search
 * against the brute-force O(N^2) search, in the same run on the same input,
 * checking that both give the same curve to the bit; plus the cost of the
 * correlation dimension and of a full classification.
 *
 * Usage: bench_dynamics [n]   (default n = 5000; m = 3, lag and window
 * chosen automatically).  Reports the best of several runs in milliseconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyzers/dynamics.h"
#include "analyzers/dyn_series.h"

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

typedef struct {
  double ms;
  sl_lyap_t res;
} run_t;

static run_t best_of(int reps, const double *x, size_t n, const sl_dyn_params_t *p, void *ws,
                     size_t wsz, double *curve, size_t cap) {
  run_t r;
  memset(&r, 0, sizeof r);
  r.ms = 1e30;
  for (int i = 0; i < reps; i++) {
    double t0 = now_ms();
    if (sl_lyap_estimate(x, n, p, ws, wsz, curve, cap, &r.res) != 0) {
      fprintf(stderr, "sl_lyap_estimate failed\n");
      exit(1);
    }
    double t = now_ms() - t0;
    if (t < r.ms) r.ms = t;
  }
  return r;
}

static int bench_system(const char *name, const double *x, size_t n, double dt) {
  size_t wsz = sl_dyn_workspace_size(n);
  void *ws = malloc(wsz);
  double *ca = malloc((n + 1) * sizeof(double)), *cb = malloc((n + 1) * sizeof(double));
  sl_dyn_params_t kd = {dt, 3, 0, 0, 0, SL_DYN_SEARCH_KDTREE};
  sl_dyn_params_t bf = kd;
  bf.search = SL_DYN_SEARCH_BRUTE;
  run_t a = best_of(5, x, n, &kd, ws, wsz, ca, n + 1);
  run_t b = best_of(3, x, n, &bf, ws, wsz, cb, n + 1);
  int same = a.res.steps == b.res.steps && a.res.lambda == b.res.lambda &&
             memcmp(ca, cb, a.res.steps * sizeof(double)) == 0;
  printf("%-8s n=%zu m=%u tau=%u w=%u steps=%u  k-d tree %8.2f ms  brute %8.2f ms  ratio %6.1fx"
         "  lambda %.4f / %.4f  %s\n",
         name, n, a.res.m, a.res.tau, a.res.theiler, a.res.steps - 1, a.ms, b.ms, b.ms / a.ms,
         a.res.lambda, b.res.lambda, same ? "same result" : "RESULTS DIFFER");
  free(ws);
  free(ca);
  free(cb);
  return same;
}

int main(int argc, char **argv) {
  size_t n = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 5000;
  if (n < SL_DYN_MIN_SAMPLES) n = SL_DYN_MIN_SAMPLES;
  double *x = malloc(n * sizeof(double));
  int ok = 1;
  printf("Rosenstein, k-d tree vs brute-force neighbour search (best of 5 / 3 runs)\n");
  dyn_gen_lorenz(x, n, 0.05, 1.0);
  ok &= bench_system("lorenz", x, n, 0.05);
  dyn_gen_henon(x, n, 0.1);
  ok &= bench_system("henon", x, n, 1.0);
  dyn_gen_logistic(x, n, 4.0, 0.123456);
  ok &= bench_system("logistic", x, n, 1.0);

  size_t wsz = sl_dyn_workspace_size(n);
  void *ws = malloc(wsz);
  sl_corrdim_t c;
  sl_dyn_report_t rep;
  dyn_gen_lorenz(x, n, 0.05, 1.0);
  sl_dyn_params_t p = {0.05, 0, 0, 0, 0, SL_DYN_SEARCH_KDTREE};
  double t0 = now_ms();
  sl_corrdim_estimate(x, n, &p, ws, wsz, &c);
  double t1 = now_ms();
  sl_dyn_classify(x, n, &p, ws, wsz, &rep);
  double t2 = now_ms();
  printf("lorenz   correlation dimension %.3f in %.2f ms (%llu pairs); classify (%s) %.2f ms\n",
         c.dim, t1 - t0, (unsigned long long)c.pairs, sl_dyn_class_name(rep.cls), t2 - t1);
  free(ws);
  free(x);
  return ok ? 0 : 1;
}
