/* End-to-end: `sluice repl` with a script piped into it.
 *
 * A multi-line function definition, tables printed readably (nested, with
 * a cycle), a placement context tried against a shipped policy, an
 * analyzer and the TTL dictionary through the FFI (the binary's own
 * symbols), an error reported with its traceback on stderr while the
 * session goes on, an expression continued over lines, and the exit
 * status: 1 when a chunk failed and stdin was not a terminal.
 */
#include "test.h"
#include "e2e/harness.h"

static void test_repl_script(void) {
  char *out, *err;
  int rc = e2e_run_cli("repl", "",
                    "function double(xs)\n"
                    "  local out = {}\n"
                    "  for i, x in ipairs(xs) do\n"
                    "    out[i] = x * 2\n"
                    "  end\n"
                    "  return out\n"
                    "end\n"
                    "=double({ 1, 2, 3 })\n"
                    "t = { 1, 2, name = 'n', nested = { deep = { true } }, [10] = 'ten' }\n"
                    "t\n"
                    "t.self = t\n"
                    "=t.self\n"
                    "ctx = placement.new_context({ { inflight = 3, slots = 4, name = 'a:1' },\n"
                    "                              { inflight = 1, slots = 4, name = 'b:2' } })\n"
                    "placement.run(require 'placement.least_loaded', ctx)\n"
                    "=sluice.editdist.levenshtein({ 1, 2, 3, 4 }, { 1, 3, 4 })\n"
                    "error('boom')\n"
                    "=sluice.dict.set('repl-key', 'v'), sluice.dict.get('repl-key')\n"
                    "x = (1 +\n"
                    "  2)\n"
                    "=x\n"
                    "=nil, 'two'\n"
                    "print('printed', 1)\n"
                    "=ffi ~= nil, require('ffi').os\n"
                    "=(jit.status())\n",
                    &out, &err);
  ASSERT_EQ(rc, 1); /* the deliberate error */
  const char *want =
      "{ 2, 4, 6 }\n"
      "{ 1, 2, [10] = \"ten\", name = \"n\", nested = { deep = { true } } }\n"
      /* past 72 columns: one entry per line */
      "{\n"
      "  1,\n"
      "  2,\n"
      "  [10] = \"ten\",\n"
      "  name = \"n\",\n"
      "  nested = { deep = { true } },\n"
      "  self = <cycle>\n"
      "}\n"
      "2\t\"least loaded: b:2 at 1/4 streams\"\n"
      "1\n"
      "true\t\"v\"\n"
      "3\n"
      "nil\t\"two\"\n"
      "printed\t1\n"
      "false\t\"Linux\"\n"
      "true\n";
  if (strcmp(out, want) != 0) fprintf(stderr, "stdout:\n%s\nstderr:\n%s\n", out, err);
  ASSERT_STR_EQ(out, want);
  ASSERT_STR_EQ(err,
                "stdin:1: boom\n"
                "stack traceback:\n"
                "\t[C]: in function 'error'\n"
                "\tstdin:1: in main chunk\n");
  free(out);
  free(err);
}

static void test_repl_edges(void) {
  char *out, *err;
  /* A syntax error is reported at once, not taken for an incomplete
   * chunk; a chunk left open at the end of input is an error. */
  int rc = e2e_run_cli("repl", "", "x = = 1\n=1\nfor i = 1, 2 do\n", &out, &err);
  ASSERT_EQ(rc, 1);
  ASSERT_STR_EQ(out, "1\n");
  ASSERT(strstr(err, "stdin:1: unexpected symbol near '='") != NULL);
  ASSERT(strstr(err, "incomplete chunk") != NULL);
  free(out);
  free(err);
  /* Everything fine: exit 0. */
  rc = e2e_run_cli("repl", "", "=inspect({ a = 1 })\n", &out, &err);
  ASSERT_EQ(rc, 0);
  ASSERT_STR_EQ(out, "\"{ a = 1 }\"\n");
  ASSERT_STR_EQ(err, "");
  free(out);
  free(err);
  rc = e2e_run_cli("repl", "--bogus", "", &out, &err);
  ASSERT_EQ(rc, 2);
  free(out);
  free(err);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 120);
  E2E_RUN(test_repl_script);
  E2E_RUN(test_repl_edges);
  return SL_TEST_EXIT();
}
