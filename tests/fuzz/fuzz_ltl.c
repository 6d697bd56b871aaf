/* fuzz_ltl.c: libFuzzer harness for the LTL parser, printer, compiler and
 * monitor of the analyzers (analyzers/ltl.h).
 *
 * Input: the whole input is formula text.  Besides what ASan and UBSan
 * catch, the harness aborts when
 *   - a refusal has no message, or its column lies past the text's end + 1;
 *   - the printed form of a parsed formula does not parse, or prints
 *     differently the second time;
 *   - a compiled formula's monitor, run over events derived from the
 *     input's bytes, changes a settled verdict, or ends with a verdict that
 *     differs from sl_ltl_eval's offline answer, or reports its first
 *     violation elsewhere than the offline pass.
 * Compilation runs under a small work budget (2^18 units), so a formula
 * that would take long is refused quickly rather than timing out.
 *
 * Built by scripts/fuzz (clang, -DSL_FUZZ=ON); seeds in
 * tests/fuzz/corpus/ltl/; tests/fuzz/regress/ltl/ replayed first. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyzers/ltl.h"
#include "analyzers/status.h"

#define TRACE_MAX 24

static void fail(const char *what) {
  fprintf(stderr, "fuzz_ltl: %s\n", what);
  abort();
}

static char printed[1 << 17], printed2[1 << 17];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sl_ltl_t *f = NULL;
  sl_ltl_error_t err = {0, NULL};
  int rc = sl_ltl_parse((const char *)data, size, &f, &err);
  if (rc != 0) {
    if (f != NULL) fail("a refusal left a formula");
    if (err.msg == NULL || err.msg[0] == '\0') fail("a refusal without a message");
    if (rc == SL_AN_EPARSE && (err.column == 0 || err.column > size + 1)) fail("a parse error's column is off the text");
    return 0;
  }
  size_t plen = 0;
  if (sl_ltl_print(f, printed, sizeof(printed), &plen) == 0) {
    sl_ltl_t *g = NULL;
    sl_ltl_error_t gerr = {0, NULL};
    if (sl_ltl_parse(printed, plen, &g, &gerr) != 0) {
      fprintf(stderr, "fuzz_ltl: printed \"%.*s\" is refused: %s at %zu\n", (int)plen, printed,
              gerr.msg ? gerr.msg : "?", gerr.column);
      abort();
    }
    size_t plen2 = 0;
    if (sl_ltl_print(g, printed2, sizeof(printed2), &plen2) != 0 || plen2 != plen || memcmp(printed, printed2, plen) != 0)
      fail("print, parse, print is not stable");
    if (sl_ltl_prop_count(g) != sl_ltl_prop_count(f)) fail("the printed form has other propositions");
    sl_ltl_free(g);
  }
  sl_ltl_compile_opts_t opts = {0, (uint64_t)1 << 18};
  sl_ltl_error_t cerr = {0, NULL};
  if (sl_ltl_compile_opts(f, &opts, &cerr) == 0) {
    size_t nprops = sl_ltl_prop_count(f);
    uint64_t mask = nprops >= 64 ? ~0ull : ((1ull << nprops) - 1);
    uint64_t trace[TRACE_MAX];
    size_t n = size < TRACE_MAX ? size : TRACE_MAX;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
      x = (x ^ data[size - 1 - i]) * 0x100000001b3ull;
      trace[i] = (x >> 7) & mask;
    }
    sl_ltl_monitor_t m;
    if (sl_ltl_monitor_init(&m, f) != 0) fail("a compiled formula has no monitor");
    sl_ltl_verdict_t settled = SL_LTL_OPEN;
    size_t first = SL_LTL_NOPOS;
    for (size_t i = 0; i < n; i++) {
      sl_ltl_verdict_t v = sl_ltl_monitor_step(&m, trace[i]);
      if (settled != SL_LTL_OPEN && v != settled) fail("a settled verdict changed");
      if (v == SL_LTL_VIOLATED && first == SL_LTL_NOPOS) first = i;
      settled = v;
    }
    sl_ltl_verdict_t fin = sl_ltl_monitor_final(&m);
    static unsigned char ws[1 << 16];
    size_t wsn = sl_ltl_eval_workspace_size(f);
    sl_ltl_result_t res;
    if (wsn <= sizeof(ws) && sl_ltl_eval(f, trace, n, ws, sizeof(ws), &res) == 0) {
      if ((fin == SL_LTL_SATISFIED) != (res.holds == 1)) fail("the monitor's final verdict and sl_ltl_eval differ");
      if (first != SL_LTL_NOPOS && res.first_violation != first) fail("first violation differs from sl_ltl_eval's");
      if (first == SL_LTL_NOPOS && !res.holds && res.first_violation != n) fail("sl_ltl_eval's first violation is not n");
    }
  } else if (cerr.msg == NULL) {
    fail("a compile refusal without a message");
  }
  sl_ltl_free(f);
  return 0;
}
