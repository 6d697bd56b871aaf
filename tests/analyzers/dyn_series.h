/* dyn_series.h: reference series for the dynamics tests and benchmarks.
 *
 * Deterministic generators (a xorshift generator with a caller seed, the
 * logistic and Henon maps, the Lorenz system integrated by fourth-order
 * Runge-Kutta) shared by tests/analyzers/test_dynamics.c and
 * bench/bench_dynamics.c so that both measure the same inputs.
 */
#ifndef SL_TEST_DYN_SERIES_H
#define SL_TEST_DYN_SERIES_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint64_t s;
} dyn_rng_t;

static inline uint64_t dyn_rng_next(dyn_rng_t *r) {
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return r->s;
}

/* Uniform in [0, 1). */
static inline double dyn_rng_unit(dyn_rng_t *r) { return (double)(dyn_rng_next(r) >> 11) * 0x1p-53; }

/* Logistic map x -> r x (1 - x), 1000 transient steps dropped. */
static inline void dyn_gen_logistic(double *x, size_t n, double r, double x0) {
  double v = x0;
  for (int i = 0; i < 1000; i++) v = r * v * (1 - v);
  for (size_t i = 0; i < n; i++) {
    x[i] = v;
    v = r * v * (1 - v);
  }
}

/* Henon map (a = 1.4, b = 0.3), x coordinate, 1000 transient steps dropped. */
static inline void dyn_gen_henon(double *x, size_t n, double x0) {
  double a = x0, b = 0.1;
  for (size_t i = 0; i < n + 1000; i++) {
    double na = 1 - 1.4 * a * a + b;
    b = 0.3 * a;
    a = na;
    if (i >= 1000) x[i - 1000] = a;
  }
}

static inline void dyn_lorenz_deriv(const double *s, double *d) {
  d[0] = 10 * (s[1] - s[0]);
  d[1] = s[0] * (28 - s[2]) - s[1];
  d[2] = s[0] * s[1] - 8.0 / 3.0 * s[2];
}

/* Lorenz (10, 28, 8/3) x coordinate every dt time units (a multiple of the
 * 0.005 integration step), 2000 samples of transient dropped. */
static inline void dyn_gen_lorenz(double *x, size_t n, double dt, double x0) {
  double s[3] = {x0, 1, 1}, h = 0.005;
  int sub = (int)(dt / h + 0.5);
  for (size_t i = 0; i < n + 2000; i++) {
    for (int j = 0; j < sub; j++) {
      double k1[3], k2[3], k3[3], k4[3], t[3];
      dyn_lorenz_deriv(s, k1);
      for (int q = 0; q < 3; q++) t[q] = s[q] + h / 2 * k1[q];
      dyn_lorenz_deriv(t, k2);
      for (int q = 0; q < 3; q++) t[q] = s[q] + h / 2 * k2[q];
      dyn_lorenz_deriv(t, k3);
      for (int q = 0; q < 3; q++) t[q] = s[q] + h * k3[q];
      dyn_lorenz_deriv(t, k4);
      for (int q = 0; q < 3; q++) s[q] += h / 6 * (k1[q] + 2 * k2[q] + 2 * k3[q] + k4[q]);
    }
    if (i >= 2000) x[i - 2000] = s[0];
  }
}

#endif
