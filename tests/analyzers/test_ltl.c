/* Tests for analyzers/ltl: the parser (precedence, round trips, errors with
 * columns, limits), the backward evaluator and the monitor against a direct
 * recursive LTLf evaluator written here from the definitions in ltl.h, over
 * thousands of random formulas (depth up to 5 over p, q, r) and random
 * traces (length 0..30); verdict stability over random continuations; the
 * first violating position; and edge cases (empty trace, length 1, long
 * traces). */
#include <stdlib.h>

#include "analyzers/ltl.h"
#include "analyzers/status.h"
#include "test.h"

/* ---- helpers ----------------------------------------------------------- */

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static unsigned rndn(unsigned n) { return (unsigned)(rnd() % n); }

static sl_ltl_t *parse(const char *s) {
  sl_ltl_t *f = NULL;
  sl_ltl_error_t err = {0, NULL};
  int rc = sl_ltl_parse(s, strlen(s), &f, &err);
  if (rc != 0) fprintf(stderr, "parse \"%s\": %d at %zu: %s\n", s, rc, err.column, err.msg);
  return f;
}

static const char *print(const sl_ltl_t *f) {
  static char buf[8192];
  if (sl_ltl_print(f, buf, sizeof buf, NULL) != 0) return "(too long)";
  return buf;
}

/* The direct recursive semantics of ltl.h, position i of w[0..n). */
static int ref_at(const sl_ltl_t *f, uint32_t k, size_t i, const uint64_t *w, size_t n) {
  const sl_ltl_node_t *nd = sl_ltl_nodes(f, NULL, NULL) + k;
  switch (nd->op) {
    case SL_LTL_TRUE: return 1;
    case SL_LTL_FALSE: return 0;
    case SL_LTL_PROP: return i < n && ((w[i] >> nd->prop) & 1u);
    case SL_LTL_NOT: return !ref_at(f, nd->a, i, w, n);
    case SL_LTL_AND: return ref_at(f, nd->a, i, w, n) && ref_at(f, nd->b, i, w, n);
    case SL_LTL_OR: return ref_at(f, nd->a, i, w, n) || ref_at(f, nd->b, i, w, n);
    case SL_LTL_IMPLIES: return !ref_at(f, nd->a, i, w, n) || ref_at(f, nd->b, i, w, n);
    case SL_LTL_NEXT: return i + 1 < n && ref_at(f, nd->a, i + 1, w, n);
    case SL_LTL_WNEXT: return i + 1 >= n || ref_at(f, nd->a, i + 1, w, n);
    case SL_LTL_ALWAYS:
      for (size_t j = i; j < n; j++)
        if (!ref_at(f, nd->a, j, w, n)) return 0;
      return 1;
    case SL_LTL_EVENTUALLY:
      for (size_t j = i; j < n; j++)
        if (ref_at(f, nd->a, j, w, n)) return 1;
      return 0;
    case SL_LTL_UNTIL:
      for (size_t j = i; j < n; j++) {
        if (ref_at(f, nd->b, j, w, n)) return 1;
        if (!ref_at(f, nd->a, j, w, n)) return 0;
      }
      return 0;
    case SL_LTL_RELEASE:
      for (size_t j = i; j < n; j++) {
        if (!ref_at(f, nd->b, j, w, n)) return 0;
        if (ref_at(f, nd->a, j, w, n)) return 1;
      }
      return 1;
  }
  return -1;
}

static int ref_holds(const sl_ltl_t *f, const uint64_t *w, size_t n) {
  size_t root;
  sl_ltl_nodes(f, NULL, &root);
  return ref_at(f, (uint32_t)root, 0, w, n);
}

/* Structural equality of two formulas' trees (names compared as text). */
static int same_tree(const sl_ltl_t *f, uint32_t i, const sl_ltl_t *g, uint32_t j) {
  const sl_ltl_node_t *a = sl_ltl_nodes(f, NULL, NULL) + i, *b = sl_ltl_nodes(g, NULL, NULL) + j;
  if (a->op != b->op) return 0;
  switch (a->op) {
    case SL_LTL_TRUE: case SL_LTL_FALSE: return 1;
    case SL_LTL_PROP: return strcmp(sl_ltl_prop_name(f, a->prop), sl_ltl_prop_name(g, b->prop)) == 0;
    case SL_LTL_NOT: case SL_LTL_NEXT: case SL_LTL_WNEXT: case SL_LTL_ALWAYS: case SL_LTL_EVENTUALLY:
      return same_tree(f, a->a, g, b->a);
    default: return same_tree(f, a->a, g, b->a) && same_tree(f, a->b, g, b->b);
  }
}

/* A random formula over p, q, r in random but valid concrete syntax. */
static void gen(char *buf, size_t *len, int depth) {
  static const char *const atoms[] = {"p", "q", "r", "p", "q", "r", "true", "false"};
  static const char *const un[] = {"!", "X ", "N ", "Xw ", "G ", "F ", "!", "X(", "G(", "F("};
  static const char *const bin[] = {" && ", " || ", " -> ", " U ", " R ", "&&", "||", "->"};
  unsigned c = depth <= 0 ? 0 : rndn(10);
  if (c < 3) {
    *len += (size_t)sprintf(buf + *len, "%s", atoms[rndn(8)]);
  } else if (c < 6) {
    unsigned u = rndn(10);
    *len += (size_t)sprintf(buf + *len, "%s", un[u]);
    if (u < 6) {
      buf[(*len)++] = '(';
      gen(buf, len, depth - 1);
      buf[(*len)++] = ')';
    } else {
      gen(buf, len, depth - 1);
      if (u > 6) buf[(*len)++] = ')';
    }
  } else {
    buf[(*len)++] = '(';
    gen(buf, len, depth - 1);
    *len += (size_t)sprintf(buf + *len, "%s", bin[rndn(8)]);
    gen(buf, len, depth - 1);
    buf[(*len)++] = ')';
  }
  buf[*len] = '\0';
}

static sl_ltl_t *random_formula(char *text) {
  size_t len = 0;
  gen(text, &len, 1 + rndn(5));
  sl_ltl_t *f = parse(text);
  return f;
}

static void random_trace(uint64_t *w, size_t n) {
  for (size_t i = 0; i < n; i++) w[i] = rnd() & 7u;
}

/* Event bits of w (over p, q, r as named in the test) remapped to f's own
 * proposition indices, which follow first appearance in the text. */
static void remap(const sl_ltl_t *f, const uint64_t *w, size_t n, uint64_t *out) {
  int idx[3];
  const char *names[3] = {"p", "q", "r"};
  for (int k = 0; k < 3; k++) idx[k] = sl_ltl_prop_index(f, names[k], 1);
  for (size_t i = 0; i < n; i++) {
    out[i] = 0;
    for (int k = 0; k < 3; k++)
      if (idx[k] >= 0 && ((w[i] >> k) & 1u)) out[i] |= (uint64_t)1 << idx[k];
  }
}

/* ---- parser ------------------------------------------------------------ */

static void test_parse_precedence(void) {
  static const char *const cases[][2] = {
      {"p || q && r", "p || q && r"},
      {"p && q || r", "p && q || r"},
      {"a -> b -> c", "a -> b -> c"},
      {"a || b -> c", "a || b -> c"},
      {"p U q U r", "p U q U r"},
      {"p R q U r", "p R q U r"},
      {"!p U q", "!p U q"},
      {"p U q && r", "p U q && r"},
      {"X p U q", "X p U q"},
      {"G p && F q", "G p && F q"},
      {"G (req -> F ack)", "G (req -> F ack)"},
      {"Xw p", "N p"},
      {"N N p", "N N p"},
      {"!!p", "!!p"},
      {"G(p)", "G p"},
      {"((true))", "true"},
      {"  false\t", "false"},
      {"G F p_1 && Gp", "G F p_1 && Gp"},
      {"a && b && c", "a && b && c"},
      {"X!p", "X !p"},
      /* Parentheses stay exactly where the tree needs them. */
      {"(a && b) && c", "a && b && c"},
      {"a && (b && c)", "a && (b && c)"},
      {"(a || b) && c", "(a || b) && c"},
      {"a || (b || c)", "a || (b || c)"},
      {"a || (b && c)", "a || b && c"},
      {"(a -> b) -> c", "(a -> b) -> c"},
      {"a -> (b -> c)", "a -> b -> c"},
      {"(p U q) U r", "(p U q) U r"},
      {"(p U q) R r", "(p U q) R r"},
      {"p U (q R r)", "p U q R r"},
      {"(p && q) U r", "(p && q) U r"},
      {"!(p && q)", "!(p && q)"},
      {"X (p U q)", "X (p U q)"},
      {"(G p) U (F q)", "G p U F q"},
      {"((a -> b) || c) && (d U e)", "((a -> b) || c) && d U e"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sl_ltl_t *f = parse(cases[i][0]);
    ASSERT_NOT_NULL(f);
    ASSERT_STR_EQ(print(f), cases[i][1]);
    sl_ltl_free(f);
  }
  /* Propositions are numbered by first appearance; shared subformulas. */
  sl_ltl_t *f = parse("F b && (a U b) && F b");
  ASSERT_EQ(sl_ltl_prop_count(f), 2);
  ASSERT_STR_EQ(sl_ltl_prop_name(f, 0), "b");
  ASSERT_STR_EQ(sl_ltl_prop_name(f, 1), "a");
  ASSERT_NULL(sl_ltl_prop_name(f, 2));
  ASSERT_EQ(sl_ltl_prop_index(f, "a", 1), 1);
  ASSERT_EQ(sl_ltl_prop_index(f, "c", 1), SL_AN_ENOTFOUND);
  size_t count;
  sl_ltl_nodes(f, &count, NULL);
  ASSERT_EQ(count, 6); /* b, F b, a, a U b, F b && a U b, ... && F b */
  sl_ltl_free(f);
}

static void test_parse_errors_point_at_column(void) {
  static const struct {
    const char *src;
    size_t column;
    const char *msg;
  } cases[] = {
      {"", 1, "expected a formula"},
      {"   ", 4, "expected a formula"},
      {"p &&", 5, "expected a formula"},
      {"(p || q", 8, "expected ')'"},
      {"p q", 3, "expected an operator"},
      {"p & q", 3, "expected '&&'"},
      {"p | q", 3, "expected '||'"},
      {"p - q", 3, "expected '->'"},
      {"p $ q", 3, "unexpected character"},
      {"G", 2, "expected a formula"},
      {"p)", 2, "unbalanced ')'"},
      {"G (p -> ) ", 9, "expected a formula"},
      {"p U", 4, "expected a formula"},
      {"&& p", 1, "expected a formula"},
      {"F (a U (b R #))", 13, "unexpected character"},
      {"X U p", 3, "expected a formula"},
      {"()", 2, "expected a formula"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sl_ltl_t *f = (sl_ltl_t *)1;
    sl_ltl_error_t err = {0, NULL};
    ASSERT_EQ(sl_ltl_parse(cases[i].src, strlen(cases[i].src), &f, &err), SL_AN_EPARSE);
    ASSERT_NULL(f);
    if (err.column != cases[i].column) fprintf(stderr, "case \"%s\"\n", cases[i].src);
    ASSERT_UINT_EQ(err.column, cases[i].column);
    ASSERT_STR_EQ(err.msg, cases[i].msg);
  }
  /* Only len bytes are read: a NUL-free slice works. */
  sl_ltl_t *f;
  ASSERT_EQ(sl_ltl_parse("p && q garbage", 6, &f, NULL), 0);
  ASSERT_STR_EQ(print(f), "p && q");
  sl_ltl_free(f);
  ASSERT_EQ(sl_ltl_parse(NULL, 0, &f, NULL), SL_AN_EINVAL);
}

static void test_parse_limits(void) {
  char *buf = malloc(20000);
  size_t len = 0;
  for (int i = 0; i < 65; i++) len += (size_t)sprintf(buf + len, "%sp%d", i ? " || " : "", i);
  sl_ltl_t *f;
  sl_ltl_error_t err;
  ASSERT_EQ(sl_ltl_parse(buf, len, &f, &err), SL_AN_ETOOBIG);
  ASSERT_STR_EQ(err.msg, "too many propositions");
  ASSERT_UINT_EQ(err.column, (size_t)(strstr(buf, "p64") - buf) + 1);
  /* Deep nesting is refused, not a stack overflow. */
  memset(buf, '(', 5000);
  buf[5000] = 'p';
  memset(buf + 5001, ')', 5000);
  ASSERT_EQ(sl_ltl_parse(buf, 10001, &f, &err), SL_AN_ETOOBIG);
  ASSERT_STR_EQ(err.msg, "nesting too deep");
  memset(buf, '!', 5000);
  ASSERT_EQ(sl_ltl_parse(buf, 5001, &f, &err), SL_AN_ETOOBIG);
  /* 500 levels are fine. */
  memset(buf, '(', 500);
  buf[500] = 'p';
  memset(buf + 501, ')', 500);
  ASSERT_EQ(sl_ltl_parse(buf, 1001, &f, &err), 0);
  sl_ltl_free(f);
  /* Too many distinct subformulas: 64 * 63 distinct U nodes and their
   * conjunctions. */
  free(buf);
  buf = malloc(80000);
  len = 0;
  for (int i = 0; i < 64; i++)
    for (int j = 0; j < 64; j++)
      if (i != j) len += (size_t)sprintf(buf + len, "%sp%d U p%d", len ? " && " : "", i, j);
  ASSERT_EQ(sl_ltl_parse(buf, len, &f, &err), SL_AN_ETOOBIG);
  ASSERT_STR_EQ(err.msg, "formula too large");
  free(buf);
  /* Printing into a short buffer reports the length needed. */
  f = parse("G (a -> F b)");
  char small[5];
  size_t need;
  ASSERT_EQ(sl_ltl_print(f, small, sizeof small, &need), SL_AN_ETOOBIG);
  ASSERT_UINT_EQ(need, strlen("G (a -> F b)"));
  ASSERT_STR_EQ(small, "G (a");
  sl_ltl_free(f);
}

static void test_parse_round_trip_randomized(void) {
  char text[4096];
  int n = 0;
  for (int round = 0; round < 4000; round++) {
    sl_ltl_t *f = random_formula(text);
    ASSERT_NOT_NULL(f);
    char printed[8192];
    ASSERT_EQ(sl_ltl_print(f, printed, sizeof printed, NULL), 0);
    sl_ltl_t *g = parse(printed);
    ASSERT_NOT_NULL(g);
    size_t rf, rg, nf, ng;
    sl_ltl_nodes(f, &nf, &rf);
    sl_ltl_nodes(g, &ng, &rg);
    ASSERT(same_tree(f, (uint32_t)rf, g, (uint32_t)rg));
    ASSERT_UINT_EQ(nf, ng);
    ASSERT_STR_EQ(print(g), printed);
    sl_ltl_free(f);
    sl_ltl_free(g);
    n++;
  }
  ASSERT_EQ(n, 4000);
}

/* ---- semantics --------------------------------------------------------- */

static int eval_holds(sl_ltl_t *f, const uint64_t *w, size_t n, size_t *first) {
  uint8_t ws[8192];
  sl_ltl_result_t r;
  if (sl_ltl_compile(f, 0) != 0) return -1;
  if (sl_ltl_eval(f, w, n, ws, sizeof ws, &r) != 0) return -1;
  if (first) *first = r.first_violation;
  return r.holds;
}

static void test_edge_traces(void) {
  static const struct {
    const char *src;
    int empty, one_p, one_none;
  } cases[] = {
      {"p", 0, 1, 0},          {"!p", 1, 0, 1},         {"G p", 1, 1, 0},
      {"F p", 0, 1, 0},        {"X true", 0, 0, 0},     {"N false", 1, 1, 1},
      {"Xw false", 1, 1, 1},   {"p U p", 0, 1, 0},      {"false R p", 1, 1, 0},
      {"true", 1, 1, 1},       {"false", 0, 0, 0},      {"G false", 1, 0, 0},
      {"F true", 0, 1, 1},     {"X p || N p", 1, 1, 1}, {"p -> X p", 1, 0, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sl_ltl_t *f = parse(cases[i].src);
    ASSERT_NOT_NULL(f);
    uint64_t p = 1, none = 0;
    int bit = sl_ltl_prop_index(f, "p", 1) >= 0;
    ASSERT_EQ(eval_holds(f, NULL, 0, NULL), cases[i].empty);
    ASSERT_EQ(eval_holds(f, bit ? &p : &none, 1, NULL), cases[i].one_p);
    ASSERT_EQ(eval_holds(f, &none, 1, NULL), cases[i].one_none);
    ASSERT_EQ(ref_holds(f, NULL, 0), cases[i].empty);
    sl_ltl_monitor_t m;
    ASSERT_EQ(sl_ltl_monitor_init(&m, f), 0);
    ASSERT_EQ(sl_ltl_monitor_final(&m) == SL_LTL_SATISFIED, cases[i].empty);
    sl_ltl_free(f);
  }
}

static void test_monitor_examples(void) {
  sl_ltl_t *f = parse("G (req -> F ack)");
  ASSERT_EQ(sl_ltl_compile(f, 0), 0);
  uint64_t req = 1u << sl_ltl_prop_index(f, "req", 3), ack = 1u << sl_ltl_prop_index(f, "ack", 3);
  sl_ltl_monitor_t m;
  ASSERT_EQ(sl_ltl_monitor_init(&m, f), 0);
  ASSERT_EQ(sl_ltl_monitor_verdict(&m), SL_LTL_OPEN);
  ASSERT_EQ(sl_ltl_monitor_final(&m), SL_LTL_SATISFIED);
  ASSERT_EQ(sl_ltl_monitor_step(&m, req), SL_LTL_OPEN);
  ASSERT_EQ(sl_ltl_monitor_final(&m), SL_LTL_VIOLATED);
  ASSERT_EQ(sl_ltl_monitor_step(&m, 0), SL_LTL_OPEN);
  ASSERT_EQ(sl_ltl_monitor_step(&m, ack), SL_LTL_OPEN);
  ASSERT_EQ(sl_ltl_monitor_final(&m), SL_LTL_SATISFIED);
  ASSERT_UINT_EQ(m.steps, 3);
  sl_ltl_free(f);

  /* A safety property: violated at the first bad event, for ever. */
  f = parse("G !err");
  ASSERT_EQ(sl_ltl_compile(f, 0), 0);
  ASSERT_EQ(sl_ltl_monitor_init(&m, f), 0);
  uint64_t tr[6] = {0, 0, 0, 1, 0, 0};
  for (int i = 0; i < 3; i++) ASSERT_EQ(sl_ltl_monitor_step(&m, tr[i]), SL_LTL_OPEN);
  ASSERT_EQ(sl_ltl_monitor_step(&m, tr[3]), SL_LTL_VIOLATED);
  ASSERT_EQ(sl_ltl_monitor_step(&m, 0), SL_LTL_VIOLATED);
  size_t first;
  ASSERT_EQ(eval_holds(f, tr, 6, &first), 0);
  ASSERT_UINT_EQ(first, 3);
  ASSERT_EQ(eval_holds(f, tr, 3, &first), 1);
  ASSERT_UINT_EQ(first, SL_LTL_NOPOS);
  sl_ltl_monitor_reset(&m);
  ASSERT_EQ(sl_ltl_monitor_verdict(&m), SL_LTL_OPEN);
  sl_ltl_free(f);

  /* A guarantee: satisfied as soon as it happens; violated only at the end. */
  f = parse("F done");
  ASSERT_EQ(sl_ltl_compile(f, 0), 0);
  ASSERT_EQ(sl_ltl_monitor_init(&m, f), 0);
  ASSERT_EQ(sl_ltl_monitor_step(&m, 0), SL_LTL_OPEN);
  ASSERT_EQ(sl_ltl_monitor_step(&m, 1), SL_LTL_SATISFIED);
  uint64_t never[4] = {0, 0, 0, 0};
  ASSERT_EQ(eval_holds(f, never, 4, &first), 0);
  ASSERT_UINT_EQ(first, 4); /* certain only at the end */
  sl_ltl_free(f);

  /* Strong next at the end of the trace; the monitor knows X false is dead. */
  f = parse("X false || p");
  ASSERT_EQ(sl_ltl_compile(f, 0), 0);
  ASSERT_EQ(sl_ltl_monitor_init(&m, f), 0);
  ASSERT_EQ(sl_ltl_monitor_step(&m, 0), SL_LTL_VIOLATED);
  sl_ltl_free(f);

  /* Tautologies and contradictions are decided before any event. */
  f = parse("G p || F !p");
  ASSERT_EQ(sl_ltl_compile(f, 0), 0);
  ASSERT_EQ(sl_ltl_monitor_init(&m, f), 0);
  ASSERT_EQ(sl_ltl_monitor_verdict(&m), SL_LTL_SATISFIED);
  sl_ltl_free(f);
  f = parse("F p && G !p");
  ASSERT_EQ(sl_ltl_compile(f, 0), 0);
  ASSERT_EQ(sl_ltl_monitor_init(&m, f), 0);
  ASSERT_EQ(sl_ltl_monitor_verdict(&m), SL_LTL_VIOLATED);
  sl_ltl_free(f);
}

static void test_compile_limits_and_misuse(void) {
  char buf[512];
  size_t len = 0;
  for (int i = 0; i < 17; i++) len += (size_t)sprintf(buf + len, "%sF p%d", i ? " && " : "", i);
  sl_ltl_t *f;
  ASSERT_EQ(sl_ltl_parse(buf, len, &f, NULL), 0);
  ASSERT_EQ(sl_ltl_compile(f, 0), SL_AN_ETOOBIG);
  ASSERT_EQ(sl_ltl_state_count(f), 0);
  sl_ltl_monitor_t m;
  ASSERT_EQ(sl_ltl_monitor_init(&m, f), SL_AN_EINVAL);
  uint8_t ws[256];
  sl_ltl_result_t r;
  ASSERT_EQ(sl_ltl_eval(f, NULL, 0, ws, sizeof ws, &r), SL_AN_EINVAL);
  sl_ltl_free(f);
  /* A counter that needs many states hits a small state limit. */
  f = parse("F (p && X (p && X (p && X (p && X p))))");
  ASSERT_EQ(sl_ltl_compile(f, 3), SL_AN_ETOOBIG);
  ASSERT_EQ(sl_ltl_compile(f, 0), 0);
  ASSERT_EQ(sl_ltl_compile(f, 0), 0); /* again: no-op */
  ASSERT_EQ(sl_ltl_eval(f, NULL, 0, ws, 1, &r), SL_AN_EINVAL);
  sl_ltl_free(f);
  sl_ltl_free(NULL);
}

/* The heart: random formulas and traces, offline evaluator and monitor
 * against the recursive reference; monitor verdicts stable over random
 * continuations; first violation where the monitor first says violated. */
static void test_agreement_randomized(void) {
  char text[4096];
  uint64_t w[64], mw[64];
  int formulas = 0, traces = 0, decided = 0, continuations = 0;
  uint8_t ws[8192];
  for (int round = 0; round < 3000; round++) {
    sl_ltl_t *f = random_formula(text);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(sl_ltl_compile(f, 0), 0);
    formulas++;
    for (int t = 0; t < 6; t++) {
      size_t n = rndn(31);
      random_trace(w, n);
      remap(f, w, n, mw);
      int expect = ref_holds(f, mw, n);
      sl_ltl_result_t r;
      ASSERT_EQ(sl_ltl_eval(f, mw, n, ws, sizeof ws, &r), 0);
      if (r.holds != expect) fprintf(stderr, "formula %s n %zu\n", text, n);
      ASSERT_EQ(r.holds, expect);
      sl_ltl_monitor_t m;
      ASSERT_EQ(sl_ltl_monitor_init(&m, f), 0);
      size_t first_viol = SL_LTL_NOPOS;
      sl_ltl_verdict_t v = sl_ltl_monitor_verdict(&m);
      for (size_t i = 0; i <= n; i++) {
        if (i > 0) {
          sl_ltl_verdict_t nv = sl_ltl_monitor_step(&m, mw[i - 1]);
          /* Once decided, never changes. */
          if (v != SL_LTL_OPEN) ASSERT_EQ(nv, v);
          v = nv;
          if (v == SL_LTL_VIOLATED && first_viol == SL_LTL_NOPOS) first_viol = i - 1;
        }
        /* The final verdict on every prefix equals the reference. */
        ASSERT_EQ(sl_ltl_monitor_final(&m) == SL_LTL_SATISFIED, ref_holds(f, mw, i));
        if (v != SL_LTL_OPEN && rndn(4) == 0) {
          /* Random continuations keep the verdict. */
          decided++;
          for (int c = 0; c < 4; c++) {
            uint64_t ext[64], mext[64];
            size_t extra = rndn(12);
            memcpy(ext, w, i * sizeof(uint64_t));
            random_trace(ext + i, extra);
            remap(f, ext, i + extra, mext);
            ASSERT_EQ(ref_holds(f, mext, i + extra), v == SL_LTL_SATISFIED);
            continuations++;
          }
        }
      }
      ASSERT_EQ(sl_ltl_monitor_final(&m) == SL_LTL_SATISFIED, expect);
      if (expect) {
        ASSERT_UINT_EQ(r.first_violation, SL_LTL_NOPOS);
      } else {
        ASSERT_UINT_EQ(r.first_violation, first_viol == SL_LTL_NOPOS ? n : first_viol);
      }
      traces++;
    }
    sl_ltl_free(f);
  }
  fprintf(stderr, "  %d formulas, %d traces, %d decided prefixes, %d continuations\n", formulas,
          traces, decided, continuations);
  ASSERT_EQ(formulas, 3000);
  ASSERT_GT(decided, 1000);
}

/* OPEN means open: for a few formulas, both outcomes are reachable. */
static void test_open_is_exact(void) {
  static const char *const src[] = {"G (a -> X b)", "a U b", "F a && F b", "G F a", "a R b"};
  for (size_t i = 0; i < sizeof src / sizeof src[0]; i++) {
    sl_ltl_t *f = parse(src[i]);
    ASSERT_EQ(sl_ltl_compile(f, 0), 0);
    sl_ltl_monitor_t m;
    sl_ltl_monitor_init(&m, f);
    ASSERT_EQ(sl_ltl_monitor_verdict(&m), SL_LTL_OPEN);
    /* Search short continuations (alphabet of 4 letters, length <= 4) for
     * one that satisfies and one that violates. */
    int sat = 0, viol = 0;
    for (unsigned code = 0; code < 4 * 4 * 4 * 4 * 5; code++) {
      uint64_t w[4];
      size_t n = code % 5;
      unsigned c = code / 5;
      for (size_t k = 0; k < n; k++, c /= 4) w[k] = c % 4;
      if (ref_holds(f, w, n)) sat = 1;
      else viol = 1;
    }
    ASSERT(sat && viol);
    sl_ltl_free(f);
  }
}

static void test_long_trace(void) {
  enum { L = 200000 };
  uint64_t *w = malloc(L * sizeof(uint64_t));
  sl_ltl_t *f = parse("G (req -> (!done U ack)) && F done");
  ASSERT_EQ(sl_ltl_compile(f, 0), 0);
  int req = sl_ltl_prop_index(f, "req", 3), ack = sl_ltl_prop_index(f, "ack", 3),
      done = sl_ltl_prop_index(f, "done", 4);
  for (size_t i = 0; i < L; i++)
    w[i] = (i % 7 == 0 ? 1u << req : 0) | (i % 7 == 3 ? 1u << ack : 0);
  for (size_t i = L - 10; i < L; i++) w[i] = 0; /* every request answered */
  w[L - 1] |= 1u << done;
  size_t wsz = sl_ltl_eval_workspace_size(f);
  void *ws = malloc(wsz);
  sl_ltl_result_t r;
  ASSERT_EQ(sl_ltl_eval(f, w, L, ws, wsz, &r), 0);
  ASSERT_EQ(r.holds, 1);
  sl_ltl_monitor_t m;
  sl_ltl_monitor_init(&m, f);
  sl_ltl_verdict_t v = SL_LTL_OPEN;
  for (size_t i = 0; i < L; i++) v = sl_ltl_monitor_step(&m, w[i]);
  ASSERT_EQ(v, SL_LTL_OPEN); /* G is never settled */
  ASSERT_EQ(sl_ltl_monitor_final(&m), SL_LTL_SATISFIED);
  /* Break it in the middle: a request answered by done before ack. */
  w[L / 2 - (L / 2) % 7 + 1] |= 1u << done;
  ASSERT_EQ(sl_ltl_eval(f, w, L, ws, wsz, &r), 0);
  ASSERT_EQ(r.holds, 0);
  ASSERT_UINT_EQ(r.first_violation, (size_t)(L / 2 - (L / 2) % 7 + 1));
  sl_ltl_free(f);
  free(ws);
  free(w);
}

/* ---- printing and parsing agree on long and deep formulas -------------- */

/* Whether text parses, prints, and the printed text parses back to the
 * same tree and prints the same again.  Says what went wrong on stderr. */
static int round_trips(const char *text, size_t len) {
  sl_ltl_t *f = NULL, *g = NULL;
  sl_ltl_error_t err = {0, NULL};
  int ok = 0;
  char *out = NULL, *again = NULL;
  size_t n = 0, m = 0, rf, rg, nf, ng;
  if (sl_ltl_parse(text, len, &f, &err) != 0) {
    fprintf(stderr, "source refused at %zu: %s\n", err.column, err.msg);
    goto done;
  }
  sl_ltl_print(f, NULL, 0, &n);
  out = malloc(n + 1);
  again = malloc(n + 1);
  if (sl_ltl_print(f, out, n + 1, NULL) != 0) goto done;
  if (sl_ltl_parse(out, n, &g, &err) != 0) {
    fprintf(stderr, "printed text (%zu bytes) refused at %zu: %s\n", n, err.column, err.msg);
    goto done;
  }
  sl_ltl_nodes(f, &nf, &rf);
  sl_ltl_nodes(g, &ng, &rg);
  if (nf != ng || !same_tree(f, (uint32_t)rf, g, (uint32_t)rg)) {
    fprintf(stderr, "printed text parses to another tree\n");
    goto done;
  }
  if (sl_ltl_print(g, again, n + 1, &m) != 0 || m != n || memcmp(out, again, n) != 0) {
    fprintf(stderr, "printing is not a fixed point\n");
    goto done;
  }
  ok = 1;
done:
  sl_ltl_free(f);
  sl_ltl_free(g);
  free(out);
  free(again);
  return ok;
}

/* A random formula of about depth levels along one spine (the other operand
 * of each binary operator is a proposition or a short formula), each level
 * written with or without redundant parentheses, so the text nests up to
 * the parser's limit without growing exponentially. */
static void gen_spine(char *buf, size_t *len, int depth) {
  static const char *const un[] = {"!", "X ", "N ", "G ", "F "};
  static const char *const bin[] = {" && ", " || ", " -> ", " U ", " R "};
  if (depth <= 0) {
    *len += (size_t)sprintf(buf + *len, "p%u", rndn(64));
    return;
  }
  int paren = rndn(4) == 0;
  if (paren) buf[(*len)++] = '(';
  unsigned c = rndn(3);
  if (c == 0) {
    *len += (size_t)sprintf(buf + *len, "%s", un[rndn(5)]);
    buf[(*len)++] = '(';
    gen_spine(buf, len, depth - 1);
    buf[(*len)++] = ')';
  } else {
    int spine_left = rndn(2);
    if (!spine_left) *len += (size_t)sprintf(buf + *len, "%sp%u", rndn(2) ? "!" : "", rndn(64));
    else {
      buf[(*len)++] = '(';
      gen_spine(buf, len, depth - 1);
      buf[(*len)++] = ')';
    }
    *len += (size_t)sprintf(buf + *len, "%s", bin[rndn(5)]);
    if (spine_left) *len += (size_t)sprintf(buf + *len, "F p%u", rndn(64));
    else {
      buf[(*len)++] = '(';
      gen_spine(buf, len, depth - 1);
      buf[(*len)++] = ')';
    }
  }
  if (paren) buf[(*len)++] = ')';
  buf[*len] = '\0';
}

static void test_print_parse_agree_long(void) {
  char *buf = malloc(1 << 20);
  size_t len = 0;
  /* 1,000 && in a row: the printer used to wrap each in parentheses,
   * nesting 1,000 deep, which the parser then refused. */
  for (int i = 0; i <= 1000; i++) len += (size_t)sprintf(buf + len, "%sp%d", i ? " && " : "", i % 64);
  ASSERT(round_trips(buf, len));
  /* The same 1,000 && and || alternating, and 999 written the way the old
   * printer did, fully parenthesized (999 levels parse; so must the
   * print). */
  len = 0;
  for (int i = 0; i <= 1000; i++)
    len += (size_t)sprintf(buf + len, "%sp%d", i ? (i % 2 ? " && " : " || ") : "", i % 64);
  ASSERT(round_trips(buf, len));
  len = 0;
  memset(buf, '(', 999);
  len = 999;
  len += (size_t)sprintf(buf + len, "p0");
  for (int i = 1; i <= 999; i++) len += (size_t)sprintf(buf + len, " && p%d)", i % 64);
  ASSERT(round_trips(buf, len));
  /* Right-nested chains as deep as the parser allows: 999 U, 999 ->, 999
   * G; and && nested to the right, which keeps its parentheses. */
  static const char *const right[] = {" U ", " -> ", " R "};
  for (int k = 0; k < 3; k++) {
    len = 0;
    for (int i = 0; i <= 999; i++) len += (size_t)sprintf(buf + len, "%sp%d", i ? right[k] : "", i % 64);
    ASSERT(round_trips(buf, len));
  }
  len = 0;
  for (int i = 0; i < 999; i++) len += (size_t)sprintf(buf + len, "G ");
  len += (size_t)sprintf(buf + len, "p");
  ASSERT(round_trips(buf, len));
  len = 0;
  for (int i = 0; i < 490; i++) len += (size_t)sprintf(buf + len, "p%d && (", i % 64);
  len += (size_t)sprintf(buf + len, "p0");
  memset(buf + len, ')', 490);
  len += 490;
  ASSERT(round_trips(buf, len));
  /* Random deep formulas with redundant parentheses: whatever parses must
   * print to text that parses to the same tree. */
  int parsed = 0, deep = 0;
  for (int round = 0; round < 300; round++) {
    len = 0;
    int depth = 1 + (int)rndn(round < 150 ? 60 : 700);
    gen_spine(buf, &len, depth);
    sl_ltl_t *f;
    if (sl_ltl_parse(buf, len, &f, NULL) != 0) continue;
    sl_ltl_free(f);
    parsed++;
    if (depth > 300) deep++;
    if (!round_trips(buf, len)) fprintf(stderr, "%.200s...\n", buf);
    ASSERT(round_trips(buf, len));
  }
  fprintf(stderr, "  %d random formulas parsed and round-tripped (%d deeper than 300)\n", parsed,
          deep);
  ASSERT_GT(parsed, 200);
  ASSERT_GT(deep, 20);
  free(buf);
}

/* ---- compile work budget ----------------------------------------------- */

static const char *const budget_msg = "compile work budget exceeded (max_work)";

static void test_compile_budget(void) {
  const char *src = "G (req -> (!done U ack)) && F done";
  sl_ltl_t *f = parse(src);
  sl_ltl_error_t err = {7, "x"};
  ASSERT_EQ(sl_ltl_compile_work(f), 0);
  ASSERT_EQ(sl_ltl_compile_opts(f, NULL, &err), 0);
  ASSERT_NULL(err.msg);
  uint64_t need = sl_ltl_compile_work(f);
  size_t states = sl_ltl_state_count(f);
  ASSERT_GT(need, 0);
  sl_ltl_free(f);
  /* The count is the same on every run: exactly that budget is enough, one
   * unit less is refused with the budget named, and nothing is built. */
  f = parse(src);
  sl_ltl_compile_opts_t opts = {0, need};
  ASSERT_EQ(sl_ltl_compile_opts(f, &opts, &err), 0);
  ASSERT_UINT_EQ(sl_ltl_compile_work(f), need);
  ASSERT_UINT_EQ(sl_ltl_state_count(f), states);
  sl_ltl_free(f);
  f = parse(src);
  opts.max_work = need - 1;
  ASSERT_EQ(sl_ltl_compile_opts(f, &opts, &err), SL_AN_ETOOBIG);
  ASSERT_STR_EQ(err.msg, budget_msg);
  ASSERT_UINT_EQ(err.column, 0);
  ASSERT_UINT_EQ(sl_ltl_compile_work(f), need); /* stopped at max_work + 1 */
  ASSERT_EQ(sl_ltl_state_count(f), 0);
  sl_ltl_monitor_t m;
  ASSERT_EQ(sl_ltl_monitor_init(&m, f), SL_AN_EINVAL);
  /* A refused formula can be compiled again with a larger budget. */
  ASSERT_EQ(sl_ltl_compile_opts(f, NULL, &err), 0);
  ASSERT_UINT_EQ(sl_ltl_state_count(f), states);
  sl_ltl_free(f);

  /* The budget bounds all the work, whatever the other limits allow: a
   * counter (2^22 states over 2 propositions, each cheap) with max_states
   * out of the way stops at the default budget, and at a small one. */
  char buf[256];
  size_t len = (size_t)sprintf(buf, "F (a && ");
  for (int i = 0; i < 22; i++) len += (size_t)sprintf(buf + len, "X ");
  sprintf(buf + len, "b)");
  f = parse(buf);
  opts.max_states = 4000000;
  opts.max_work = 0;
  ASSERT_EQ(sl_ltl_compile_opts(f, &opts, &err), SL_AN_ETOOBIG);
  ASSERT_STR_EQ(err.msg, budget_msg);
  ASSERT_UINT_EQ(sl_ltl_compile_work(f), SL_LTL_DEFAULT_MAX_WORK + 1);
  opts.max_work = 100000;
  ASSERT_EQ(sl_ltl_compile_opts(f, &opts, &err), SL_AN_ETOOBIG);
  ASSERT_STR_EQ(err.msg, budget_msg);
  ASSERT_UINT_EQ(sl_ltl_compile_work(f), 100001);
  /* The plain entry point has the default budget (and here the default
   * state limit, which this counter reaches first). */
  ASSERT_EQ(sl_ltl_compile(f, 0), SL_AN_ETOOBIG);
  ASSERT_EQ(sl_ltl_compile_opts(f, NULL, &err), SL_AN_ETOOBIG);
  ASSERT_STR_EQ(err.msg, "automaton exceeds max_states");
  sl_ltl_free(f);

  /* Other refusals name their limit too. */
  len = 0;
  for (int i = 0; i < 17; i++) len += (size_t)sprintf(buf + len, "%sF p%d", i ? " && " : "", i);
  f = parse(buf);
  ASSERT_EQ(sl_ltl_compile_opts(f, NULL, &err), SL_AN_ETOOBIG);
  ASSERT_STR_EQ(err.msg, "a monitor takes at most 16 propositions (SL_LTL_MAX_MONITOR_PROPS)");
  sl_ltl_free(f);
  /* 16 independent F's need 2^16 states of 2^16 letters each. */
  len = 0;
  for (int i = 0; i < 16; i++) len += (size_t)sprintf(buf + len, "%sF p%d", i ? " && " : "", i);
  f = parse(buf);
  opts.max_states = 0;
  opts.max_work = UINT64_MAX; /* no budget: the table limit must still hold */
  ASSERT_EQ(sl_ltl_compile_opts(f, &opts, &err), SL_AN_ETOOBIG);
  ASSERT_STR_EQ(err.msg,
                "transition table exceeds SL_LTL_MAX_TABLE entries (states x 2^propositions)");
  sl_ltl_free(f);
  ASSERT_EQ(sl_ltl_compile_opts(NULL, NULL, &err), SL_AN_EINVAL);
}

/* Checks a compiled formula's monitor against the offline evaluator's
 * backward pass (which does not use the automaton) on random traces over
 * all its propositions: the final verdict on every prefix, and settled
 * verdicts never changing.  Returns the number of traces checked, or -1. */
static int check_monitor(const sl_ltl_t *f, int traces, size_t max_len) {
  size_t wsz = sl_ltl_eval_workspace_size(f);
  void *ws = malloc(wsz);
  uint64_t w[64];
  uint64_t mask = ((uint64_t)1 << sl_ltl_prop_count(f)) - 1;
  for (int t = 0; t < traces; t++) {
    size_t n = rndn((unsigned)max_len + 1);
    for (size_t i = 0; i < n; i++) w[i] = rnd() & mask;
    /* Bias toward events where everything holds, where long formulas
     * over many propositions get interesting. */
    for (size_t i = 0; i < n; i++)
      if (rndn(2)) w[i] = mask & ~(rndn(3) ? 0 : (uint64_t)1 << rndn(64));
    sl_ltl_monitor_t m;
    if (sl_ltl_monitor_init(&m, f) != 0) goto fail;
    sl_ltl_verdict_t v = sl_ltl_monitor_verdict(&m);
    for (size_t i = 0; i <= n; i++) {
      if (i > 0) {
        sl_ltl_verdict_t nv = sl_ltl_monitor_step(&m, w[i - 1]);
        if (v != SL_LTL_OPEN && nv != v) goto fail;
        v = nv;
      }
      sl_ltl_result_t r;
      if (sl_ltl_eval(f, w, i, ws, wsz, &r) != 0) goto fail;
      if ((sl_ltl_monitor_final(&m) == SL_LTL_SATISFIED) != r.holds) goto fail;
      if (v == SL_LTL_SATISFIED && !r.holds) goto fail;
      if (v == SL_LTL_VIOLATED && r.holds) goto fail;
    }
  }
  free(ws);
  return traces;
fail:
  free(ws);
  return -1;
}

/* "(G G ... G a) && b && ... && p": 700 G's, 16 propositions, 3 states.
 * The compiler used to progress all 731 subformulas once for each of the
 * 2^16 letters (about 48 million steps, before max_states was looked at);
 * progression is now symbolic, done once, and the letters cost only the
 * table. */
static void test_compile_cost_not_per_letter(void) {
  char *buf = malloc(4096);
  size_t len = (size_t)sprintf(buf, "(");
  for (int i = 0; i < 700; i++) len += (size_t)sprintf(buf + len, "G ");
  len += (size_t)sprintf(buf + len, "a)");
  for (char c = 'b'; c <= 'p'; c++) len += (size_t)sprintf(buf + len, "&&%c", c);
  sl_ltl_t *f = parse(buf);
  ASSERT_NOT_NULL(f);
  ASSERT_EQ(sl_ltl_prop_count(f), 16);
  sl_ltl_error_t err;
  ASSERT_EQ(sl_ltl_compile_opts(f, NULL, &err), 0);
  ASSERT_EQ(sl_ltl_state_count(f), 3);
  uint64_t work = sl_ltl_compile_work(f);
  fprintf(stderr, "  700 G over 16 propositions: %llu work units\n", (unsigned long long)work);
  /* 3 rows of 65,536 transitions, scanned 4 times, plus the BDDs. */
  ASSERT_LT(work, 4000000);
  /* The semantics: a at every position, and b..p at the first. */
  uint64_t all = 0xFFFF, no_a = all & ~((uint64_t)1 << sl_ltl_prop_index(f, "a", 1));
  uint64_t no_q = all & ~((uint64_t)1 << sl_ltl_prop_index(f, "p", 1));
  uint64_t tr[4] = {all, no_q, all, all};
  sl_ltl_monitor_t m;
  ASSERT_EQ(sl_ltl_monitor_init(&m, f), 0);
  for (int i = 0; i < 4; i++) ASSERT_EQ(sl_ltl_monitor_step(&m, tr[i]), SL_LTL_OPEN);
  ASSERT_EQ(sl_ltl_monitor_final(&m), SL_LTL_SATISFIED);
  ASSERT_EQ(sl_ltl_monitor_step(&m, no_a), SL_LTL_VIOLATED);
  sl_ltl_monitor_reset(&m);
  ASSERT_EQ(sl_ltl_monitor_step(&m, no_q), SL_LTL_VIOLATED);
  ASSERT_EQ(check_monitor(f, 300, 12), 300);
  sl_ltl_free(f);
  /* A state limit is met before the letters are all walked, cheaply. */
  f = parse(buf);
  sl_ltl_compile_opts_t opts = {2, 0};
  ASSERT_EQ(sl_ltl_compile_opts(f, &opts, &err), SL_AN_ETOOBIG);
  ASSERT_STR_EQ(err.msg, "automaton exceeds max_states");
  ASSERT_LT(sl_ltl_compile_work(f), 4000000);
  sl_ltl_free(f);
  free(buf);
}

/* The transition table grows geometrically: 10 independent F's give 1,025
 * states of 1,024 letters.  Growing it one row per state copied the table
 * once per state (half a billion entries here); the copies are charged to
 * the budget, so the work stays a small multiple of the table's size. */
static void test_compile_table_grows_geometrically(void) {
  char buf[256];
  size_t len = 0;
  for (int i = 0; i < 10; i++) len += (size_t)sprintf(buf + len, "%sF p%d", i ? " && " : "", i);
  sl_ltl_t *f = parse(buf);
  ASSERT_EQ(sl_ltl_compile_opts(f, NULL, NULL), 0);
  uint64_t entries = (uint64_t)sl_ltl_state_count(f) << 10;
  ASSERT_EQ(sl_ltl_state_count(f), 1025);
  fprintf(stderr, "  1025 states x 1024 letters: %llu work units\n",
          (unsigned long long)sl_ltl_compile_work(f));
  ASSERT_LT(sl_ltl_compile_work(f), 16 * entries);
  ASSERT_EQ(check_monitor(f, 100, 20), 100);
  sl_ltl_free(f);
}

/* ---- fuzz regressions ---------------------------------------------------- */

/* tests/fuzz/regress/ltl/, found from this file's own path. */
static void regress_path(char *out, size_t cap, const char *name) {
  const char *here = __FILE__;
  const char *slash = strrchr(here, '/');
  int dir = slash ? (int)(slash - here) : 0;
  snprintf(out, cap, "%.*s%s../fuzz/regress/ltl/%s", dir, here, slash ? "/" : "", name);
}

/* Parses and compiles one input: a clear refusal, or a monitor that agrees
 * with the offline evaluator.  Returns 1 when it compiled, 0 when refused,
 * -1 when something was wrong. */
static int regress_one(const char *text, size_t len) {
  sl_ltl_t *f = NULL;
  sl_ltl_error_t err = {0, NULL};
  int rc = sl_ltl_parse(text, len, &f, &err);
  if (rc != 0) {
    if ((rc != SL_AN_EPARSE && rc != SL_AN_ETOOBIG) || err.msg == NULL || err.column < 1 ||
        err.column > len + 1)
      return -1;
    fprintf(stderr, "    refused at column %zu: %s\n", err.column, err.msg);
    return 0;
  }
  if (!round_trips(text, len)) {
    sl_ltl_free(f);
    return -1;
  }
  rc = sl_ltl_compile_opts(f, NULL, &err);
  int out = -1;
  if (rc == SL_AN_ETOOBIG && err.msg != NULL) {
    fprintf(stderr, "    compile refused: %s\n", err.msg);
    out = 0;
  } else if (rc == 0 && sl_ltl_compile_work(f) <= SL_LTL_DEFAULT_MAX_WORK &&
             check_monitor(f, 100, 16) == 100) {
    fprintf(stderr, "    %zu states, %llu work units\n", sl_ltl_state_count(f),
            (unsigned long long)sl_ltl_compile_work(f));
    out = 1;
  }
  sl_ltl_free(f);
  return out;
}

static void test_fuzz_regressions(void) {
  static const char *const files[] = {"ltl-slow-compile-1.txt", "ltl-slow-compile-2.txt",
                                      "ltl-slow-compile-3.txt", "ltl-slow-compile-4.txt"};
  int compiled = 0;
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char path[4096];
    regress_path(path, sizeof path, files[i]);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) fprintf(stderr, "cannot open %s\n", path);
    ASSERT_NOT_NULL(fp);
    char text[8192];
    size_t len = fread(text, 1, sizeof text, fp);
    fclose(fp);
    ASSERT_GT(len, 0);
    fprintf(stderr, "  %s (%zu bytes)\n", files[i], len);
    int r = regress_one(text, len);
    ASSERT_GE(r, 0);
    compiled += r;
    /* A NUL ends the text for a reader of C strings: that formula too. */
    size_t z = strnlen(text, len);
    if (z < len) {
      r = regress_one(text, z);
      ASSERT_GE(r, 0);
      compiled += r;
    }
  }
  ASSERT_EQ(compiled, 4); /* all four formulas compile; the NUL file is refused */
}

int main(void) {
  SL_RUN(test_parse_precedence);
  SL_RUN(test_parse_errors_point_at_column);
  SL_RUN(test_parse_limits);
  SL_RUN(test_parse_round_trip_randomized);
  SL_RUN(test_edge_traces);
  SL_RUN(test_monitor_examples);
  SL_RUN(test_compile_limits_and_misuse);
  SL_RUN(test_agreement_randomized);
  SL_RUN(test_open_is_exact);
  SL_RUN(test_long_trace);
  SL_RUN(test_print_parse_agree_long);
  SL_RUN(test_compile_budget);
  SL_RUN(test_compile_cost_not_per_letter);
  SL_RUN(test_compile_table_grows_geometrically);
  SL_RUN(test_fuzz_regressions);
  return SL_TEST_EXIT();
}
