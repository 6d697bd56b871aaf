/* ltl.h: linear temporal logic on finite traces (LTLf) over named propositions.
 *
 * A formula is parsed from text, then compiled once into a deterministic
 * automaton whose states carry a three-valued verdict.  An event is a bitset
 * (uint64_t) of the propositions true at one step, bit i standing for the
 * proposition with index i (indices follow first appearance in the text,
 * see sl_ltl_prop_index).  Two ways to check a trace:
 *  - sl_ltl_eval, offline: a backward pass over the trace, linear in its
 *    length times the formula size, giving whether the trace satisfies the
 *    formula and the first position at which violation became certain;
 *  - sl_ltl_monitor_*, online: one table lookup per event, no allocation,
 *    reporting satisfied / violated / open.  Once satisfied or violated,
 *    the verdict holds for every continuation of the trace (the automaton
 *    knows which of its states accept everything or nothing); when the
 *    trace ends, sl_ltl_monitor_final equals sl_ltl_eval's answer.
 *
 * Syntax (loosest binding first): `a -> b` (right associative), `a || b`,
 * `a && b`, `a U b` and `a R b` (right associative), then the prefix
 * operators `!a`, `X a` (strong next), `N a` or `Xw a` (weak next), `G a`,
 * `F a`; atoms are `true`, `false`, `( formula )` and proposition names
 * [A-Za-z_][A-Za-z0-9_]* other than the keywords true false X N Xw G F U R.
 * A letter operator must be separated from a following name (`G p`,
 * `G(p)`; `Gp` is the proposition "Gp").
 *
 * Semantics on a trace w = w_0 .. w_{n-1} at position i (standard LTLf):
 * p holds iff i < n and p is in w_i; X a iff i + 1 < n and a at i + 1;
 * N a iff i + 1 >= n or a at i + 1; G a iff a at every j in [i, n);
 * F a iff a at some j in [i, n); a U b iff b at some j in [i, n) and a at
 * every k in [i, j); a R b iff !(!a U !b).  A trace satisfies a formula iff
 * it holds at 0.  On non-empty traces this never looks at position n; the
 * empty trace is position n = 0, where p, X, F and U are false and N, G and
 * R are true (so the empty trace satisfies `!p` and `G p`, not `F p`).
 */
#ifndef SL_LTL_H
#define SL_LTL_H

#include <stddef.h>
#include <stdint.h>

#include "analyzers/status.h"

#define SL_LTL_MAX_PROPS 64         /* propositions in one formula (event bits) */
#define SL_LTL_MAX_NODES 4096       /* distinct subformulas in one formula */
#define SL_LTL_MAX_MONITOR_PROPS 16 /* propositions a compiled monitor can take */
#define SL_LTL_DEFAULT_MAX_STATES 65536 /* automaton states sl_ltl_compile allows by default */
#define SL_LTL_DEFAULT_MAX_WORK ((uint64_t)1 << 24) /* compile work units allowed by default */
#define SL_LTL_MAX_TABLE ((size_t)1 << 22) /* transitions (states x 2^props) a monitor may have */
#define SL_LTL_NOPOS ((size_t)-1)   /* "no position": the trace satisfies */

typedef enum {
  SL_LTL_OPEN = 0,      /* both outcomes still possible */
  SL_LTL_SATISFIED = 1, /* every continuation satisfies */
  SL_LTL_VIOLATED = 2   /* every continuation violates */
} sl_ltl_verdict_t;

typedef enum {
  SL_LTL_TRUE, SL_LTL_FALSE, SL_LTL_PROP,       /* atoms */
  SL_LTL_NOT, SL_LTL_AND, SL_LTL_OR, SL_LTL_IMPLIES, /* boolean */
  SL_LTL_NEXT, SL_LTL_WNEXT, SL_LTL_ALWAYS, SL_LTL_EVENTUALLY, /* unary temporal */
  SL_LTL_UNTIL, SL_LTL_RELEASE                  /* binary temporal */
} sl_ltl_op_t;

typedef struct {
  uint8_t op;   /* an sl_ltl_op_t */
  uint8_t prop; /* proposition index, for SL_LTL_PROP */
  uint16_t pad; /* zero */
  uint32_t a;   /* first operand's node index (unary and binary ops) */
  uint32_t b;   /* second operand's node index (binary ops) */
} sl_ltl_node_t;

typedef struct {
  size_t column;   /* 1-based column (byte) where the input went wrong */
  const char *msg; /* static text, e.g. "expected ')'" */
} sl_ltl_error_t;

typedef struct sl_ltl_s sl_ltl_t; /* a parsed (and maybe compiled) formula */

/* Limits for sl_ltl_compile_opts; a zero field means its default.  Work is
 * counted in units of one elementary step: one BDD operation step (an
 * apply or a substitution), one subformula progressed, one transition-table
 * entry written, copied or scanned; a new BDD node costs 16 units, since it
 * is memory and cache misses as well.  So max_work bounds both the time
 * (a unit is a few to about 50 nanoseconds) and the memory (about 3 bytes
 * per unit at most) of a compilation, whatever the formula: the default
 * (2^24 units) stops any formula within about a second and 50 MB, and
 * fits automata of about a million transitions. */
typedef struct {
  size_t max_states; /* automaton states; 0 means SL_LTL_DEFAULT_MAX_STATES */
  uint64_t max_work; /* work units; 0 means SL_LTL_DEFAULT_MAX_WORK */
} sl_ltl_compile_opts_t;

typedef struct {
  int holds;              /* 1 when the trace satisfies the formula */
  size_t first_violation; /* first i such that every trace starting with
                             w_0..w_i violates; n when violation is certain
                             only at the end; SL_LTL_NOPOS when it holds */
} sl_ltl_result_t;

typedef struct {
  const sl_ltl_t *f; /* the compiled formula; borrowed, must outlive this */
  uint32_t state;    /* current automaton state */
  uint64_t steps;    /* events seen */
} sl_ltl_monitor_t;

/* Parses len bytes of src into a new formula in *out.  Returns 0; on bad
 * input SL_AN_EPARSE with err (when non-NULL) naming the column and what was
 * wrong; SL_AN_ETOOBIG past SL_LTL_MAX_PROPS propositions or SL_LTL_MAX_NODES
 * subformulas (err says which); SL_AN_ENOMEM; SL_AN_EINVAL for NULL src or out.
 * The caller owns *out and frees it with sl_ltl_free.  Identical
 * subformulas share one node. */
int sl_ltl_parse(const char *src, size_t len, sl_ltl_t **out, sl_ltl_error_t *err);

/* Frees a formula and its automaton; NULL is fine.  Monitors over it must
 * not be used afterwards. */
void sl_ltl_free(sl_ltl_t *f);

/* Writes the formula in canonical form (parentheses only where precedence
 * or associativity needs them, so `a && b && c` stays flat; one space
 * around binary operators and after letter operators; weak next as N) with
 * a terminating NUL.  sl_ltl_parse of it gives the same tree, and never
 * refuses it: the text nests no deeper than any text that parses to the
 * same tree.  *len (when non-NULL) gets the length without the NUL, also
 * when the buffer is short.  Returns 0, or SL_AN_ETOOBIG when cap is too
 * small. */
int sl_ltl_print(const sl_ltl_t *f, char *buf, size_t cap, size_t *len);

/* The node array (children before parents) and the root's index. */
const sl_ltl_node_t *sl_ltl_nodes(const sl_ltl_t *f, size_t *count, size_t *root);

/* Number of propositions, and the NUL-terminated name of proposition i
 * (owned by f; NULL when i is out of range). */
size_t sl_ltl_prop_count(const sl_ltl_t *f);
const char *sl_ltl_prop_name(const sl_ltl_t *f, size_t i);

/* The bit index of proposition name[0..len), or SL_AN_ENOTFOUND. */
int sl_ltl_prop_index(const sl_ltl_t *f, const char *name, size_t len);

/* Builds the monitor automaton (allocating once, here) within the limits of
 * opts (NULL means every default).  Returns 0 (also when already compiled),
 * or fails with nothing built and err->msg (when err is non-NULL; column 0)
 * naming the limit: SL_AN_ETOOBIG when the formula has more than
 * SL_LTL_MAX_MONITOR_PROPS propositions, the automaton would exceed
 * opts->max_states states or SL_LTL_MAX_TABLE transitions, or compiling
 * would take more than opts->max_work units ("compile work budget exceeded
 * (max_work)"); SL_AN_ENOMEM; SL_AN_EINVAL for NULL f.  The work is counted the
 * same way on every run, so a formula that compiles within a budget always
 * does, and sl_ltl_compile_work says how much it took. */
int sl_ltl_compile_opts(sl_ltl_t *f, const sl_ltl_compile_opts_t *opts, sl_ltl_error_t *err);

/* sl_ltl_compile_opts with max_states (0 for the default), the default work
 * budget and no error text. */
int sl_ltl_compile(sl_ltl_t *f, size_t max_states);

/* Work units the last sl_ltl_compile_opts call on f spent (also when it
 * failed; up to the budget plus one when the budget stopped it); 0 before
 * any. */
uint64_t sl_ltl_compile_work(const sl_ltl_t *f);

/* States of the compiled automaton (0 before sl_ltl_compile). */
size_t sl_ltl_state_count(const sl_ltl_t *f);

/* Bytes of workspace sl_ltl_eval needs (two bytes per subformula). */
size_t sl_ltl_eval_workspace_size(const sl_ltl_t *f);

/* Checks the n events of trace against a compiled formula, offline: truth
 * by a backward pass (O(n * nodes)), first violation by running the
 * automaton forward.  Returns 0, or SL_AN_EINVAL when f is not compiled, an
 * argument is NULL (trace may be NULL when n is 0) or ws is short. */
int sl_ltl_eval(const sl_ltl_t *f, const uint64_t *trace, size_t n, void *ws, size_t ws_size,
                sl_ltl_result_t *out);

/* Starts a monitor on a compiled formula (m is caller-owned; nothing is
 * allocated).  Returns 0 or SL_AN_EINVAL when f is not compiled. */
int sl_ltl_monitor_init(sl_ltl_monitor_t *m, const sl_ltl_t *f);

/* Back to the empty trace. */
void sl_ltl_monitor_reset(sl_ltl_monitor_t *m);

/* Consumes one event and returns the verdict for the trace so far.  O(1),
 * never allocates, never fails. */
sl_ltl_verdict_t sl_ltl_monitor_step(sl_ltl_monitor_t *m, uint64_t event);

/* The verdict for the trace so far, without consuming anything. */
sl_ltl_verdict_t sl_ltl_monitor_verdict(const sl_ltl_monitor_t *m);

/* The verdict if the trace ended now: SL_LTL_SATISFIED or SL_LTL_VIOLATED. */
sl_ltl_verdict_t sl_ltl_monitor_final(const sl_ltl_monitor_t *m);

/* A static lower-case name for a verdict ("open", "satisfied", "violated"). */
const char *sl_ltl_verdict_name(sl_ltl_verdict_t v);

#endif
