/* bench_ltl: per-event cost of the compiled LTLf monitor against a direct
 * recursive evaluator (the definitions of ltl.h written as recursion, the
 * baseline), and of the offline backward evaluator, on traces of 1,000
 * events, in the same run.  The recursive evaluator answers once per trace;
 * the monitor gives a verdict after every event; both are charged per event.
 *
 * Usage: bench_ltl [events]   (default 1000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyzers/ltl.h"

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static int rec(const sl_ltl_node_t *nd, uint32_t k, size_t i, const uint64_t *w, size_t n) {
  const sl_ltl_node_t *d = nd + k;
  switch (d->op) {
    case SL_LTL_TRUE: return 1;
    case SL_LTL_FALSE: return 0;
    case SL_LTL_PROP: return i < n && ((w[i] >> d->prop) & 1u);
    case SL_LTL_NOT: return !rec(nd, d->a, i, w, n);
    case SL_LTL_AND: return rec(nd, d->a, i, w, n) && rec(nd, d->b, i, w, n);
    case SL_LTL_OR: return rec(nd, d->a, i, w, n) || rec(nd, d->b, i, w, n);
    case SL_LTL_IMPLIES: return !rec(nd, d->a, i, w, n) || rec(nd, d->b, i, w, n);
    case SL_LTL_NEXT: return i + 1 < n && rec(nd, d->a, i + 1, w, n);
    case SL_LTL_WNEXT: return i + 1 >= n || rec(nd, d->a, i + 1, w, n);
    case SL_LTL_ALWAYS:
      for (size_t j = i; j < n; j++)
        if (!rec(nd, d->a, j, w, n)) return 0;
      return 1;
    case SL_LTL_EVENTUALLY:
      for (size_t j = i; j < n; j++)
        if (rec(nd, d->a, j, w, n)) return 1;
      return 0;
    case SL_LTL_UNTIL:
      for (size_t j = i; j < n; j++) {
        if (rec(nd, d->b, j, w, n)) return 1;
        if (!rec(nd, d->a, j, w, n)) return 0;
      }
      return 0;
    case SL_LTL_RELEASE:
      for (size_t j = i; j < n; j++) {
        if (!rec(nd, d->b, j, w, n)) return 0;
        if (rec(nd, d->a, j, w, n)) return 1;
      }
      return 1;
  }
  return 0;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

int main(int argc, char **argv) {
  size_t n = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1000;
  /* Stream-like events: each proposition is true with its own, mostly small,
   * probability (percent, by order of first appearance), chosen so that the
   * traces mostly satisfy the formula and the recursive evaluator has to
   * read them to the end. */
  static const struct {
    const char *src;
    unsigned pct[4];
  } formulas[] = {
      {"G (req -> F ack)", {5, 5}},
      {"G (req -> (!done U ack)) && F done", {5, 0, 10}},
      {"G F tick", {2}},
      {"G F a && F G !b", {3, 0}},
      {"G (a -> X (b R c))", {5, 5, 100}},
      {"(a U b) || G (c -> N !a)", {1, 0, 5}},
  };
  uint64_t *w = malloc(n * sizeof(uint64_t));
  int traces = 20;
  printf("ns per event over %d traces of %zu events; 'held' = traces satisfying the formula\n",
         traces, n);
  printf("%-36s %3s %6s %10s %9s %9s %8s %12s %10s\n", "formula", "st", "held", "recursive",
         "offline", "monitor", "rec/mon", "rec/prefix", "pre/mon");
  for (size_t fi = 0; fi < sizeof formulas / sizeof formulas[0]; fi++) {
    sl_ltl_t *f;
    if (sl_ltl_parse(formulas[fi].src, strlen(formulas[fi].src), &f, NULL) != 0 ||
        sl_ltl_compile(f, 0)) {
      fprintf(stderr, "cannot compile %s\n", formulas[fi].src);
      return 1;
    }
    size_t count, root;
    const sl_ltl_node_t *nodes = sl_ltl_nodes(f, &count, &root);
    size_t wsz = sl_ltl_eval_workspace_size(f);
    void *ws = malloc(wsz);
    double t_rec = 0, t_off = 0, t_mon = 0, t_pre = 0;
    long agree = 0, sink = 0, held = 0;
    for (int t = 0; t < traces; t++) {
      for (size_t i = 0; i < n; i++) {
        uint64_t e = 0;
        for (size_t p = 0; p < sl_ltl_prop_count(f); p++)
          if (rnd() % 100 < formulas[fi].pct[p]) e |= (uint64_t)1 << p;
        w[i] = e;
      }
      double t0 = now_ns();
      int r = rec(nodes, (uint32_t)root, 0, w, n);
      double t1 = now_ns();
      sl_ltl_result_t res;
      sl_ltl_eval(f, w, n, ws, wsz, &res);
      double t2 = now_ns();
      sl_ltl_monitor_t m;
      sl_ltl_monitor_init(&m, f);
      for (size_t i = 0; i < n; i++) sink += sl_ltl_monitor_step(&m, w[i]);
      double t3 = now_ns();
      int mon = sl_ltl_monitor_final(&m) == SL_LTL_SATISFIED;
      agree += r == res.holds && r == mon;
      held += r;
      /* Online use of the recursive evaluator: a verdict after every event
       * means evaluating every prefix (only on the first trace: it is
       * quadratic). */
      if (t == 0) {
        double t4 = now_ns();
        for (size_t i = 1; i <= n; i++) sink += rec(nodes, (uint32_t)root, 0, w, i);
        t_pre = now_ns() - t4;
      }
      t_rec += t1 - t0;
      t_off += t2 - t1;
      t_mon += t3 - t2;
    }
    double ev = (double)n * traces;
    printf("%-36s %3zu %5.0f%% %10.2f %9.2f %9.2f %7.0fx %12.1f %9.0fx%s\n", formulas[fi].src,
           sl_ltl_state_count(f), 100.0 * held / traces, t_rec / ev, t_off / ev, t_mon / ev,
           t_rec / t_mon, t_pre / n, t_pre / n / (t_mon / ev),
           agree == traces ? "" : "  VERDICTS DIFFER");
    (void)sink;
    free(ws);
    sl_ltl_free(f);
  }
  free(w);
  return 0;
}
