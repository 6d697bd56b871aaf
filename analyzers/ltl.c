/* ltl.c: LTLf parser, printer, backward evaluator and monitor compiler.
 *
 * The monitor is built by formula progression.  After reading a prefix, what
 * remains to be checked of the suffix w is a boolean combination of "suffix
 * atoms": statements w |= a for a the root, the operands of X and N, and the
 * G, F, U and R subformulas, plus NE ("w is not empty").  Reading one event
 * replaces every atom by its progression, itself a boolean combination of
 * atoms:
 *   G a -> a' && G a        F a -> a' || F a
 *   a U b -> b' || (a' && a U b)     a R b -> b' && (a' || a R b)
 *   X a -> a && NE          N a -> a || !NE          NE -> true
 * where a' is a evaluated at the current event (propositions become
 * constants, boolean operators stay).  Residuals are kept as reduced ordered
 * BDDs over the atoms, which are canonical, so equal residuals are one state
 * and the automaton is finite.  A state accepts the empty suffix when its
 * BDD is true with every atom set to its value on the empty trace; it is
 * satisfied when every state it can reach accepts, violated when none does.
 * The BDD lives only during sl_ltl_compile; the monitor keeps the table.
 */
#include "analyzers/ltl.h"

#include <stdlib.h>
#include <string.h>


#define SL__LTL_MAX_DEPTH 1000          /* nesting the recursive parser allows */
#define SL__NONE32 UINT32_MAX
/* Work units a new BDD node costs: a node is memory (about 32 bytes with
 * its share of the tables) and a cache miss or two, several times an apply
 * step that hits the cache, so the budget bounds memory as well as time. */
#define SL__LTL_NODE_UNITS 16u

struct sl_ltl_s {
  sl_ltl_node_t *nodes; /* children before parents */
  uint32_t nnodes, cap_nodes, root;
  uint8_t *eps;         /* per node: its value on the empty trace */
  char *names[SL_LTL_MAX_PROPS];
  unsigned nprops;
  /* The automaton, after sl_ltl_compile. */
  uint32_t nstates;
  unsigned bits;        /* letter = event & ((1 << bits) - 1) */
  uint64_t mask;
  uint32_t *delta;      /* nstates << bits successors */
  uint8_t *verdict;     /* per state: an sl_ltl_verdict_t */
  uint8_t *accept;      /* per state: accepts the empty suffix */
  uint64_t work;        /* units the last compile attempt spent */
};

/* ---- nodes ------------------------------------------------------------ */

static int is_unary(unsigned op) {
  return op == SL_LTL_NOT || op == SL_LTL_NEXT || op == SL_LTL_WNEXT || op == SL_LTL_ALWAYS ||
         op == SL_LTL_EVENTUALLY;
}

/* The parse-time index of nodes by content: open addressing over node
 * index + 1 (0 = empty), never more than half full since it has twice
 * SL_LTL_MAX_NODES slots.  Without it every node made would scan all the
 * nodes before it, and a long text repeating one subformula would cost
 * length x nodes. */
#define SL__LTL_INDEX_SLOTS (2u * SL_LTL_MAX_NODES)

static uint32_t node_hash(unsigned op, unsigned prop, uint32_t a, uint32_t b) {
  uint64_t h = ((uint64_t)op << 56 | (uint64_t)prop << 48) ^ ((uint64_t)a * 0x9E3779B97F4A7C15ull) ^
               ((uint64_t)b * 0xC2B2AE3D27D4EB4Full);
  return (uint32_t)(h ^ (h >> 32)) & (SL__LTL_INDEX_SLOTS - 1);
}

/* The node (op, prop, a, b), shared with an identical one when it exists.
 * Returns its index, or SL__NONE32 with *rc set. */
static uint32_t node_make(sl_ltl_t *f, uint32_t *index, unsigned op, unsigned prop, uint32_t a,
                          uint32_t b, int *rc) {
  uint32_t h = node_hash(op, prop, a, b);
  for (; index[h] != 0; h = (h + 1) & (SL__LTL_INDEX_SLOTS - 1)) {
    uint32_t i = index[h] - 1;
    const sl_ltl_node_t *n = &f->nodes[i];
    if (n->op == op && n->prop == prop && n->a == a && n->b == b) return i;
  }
  if (f->nnodes >= SL_LTL_MAX_NODES) {
    *rc = SL_AN_ETOOBIG;
    return SL__NONE32;
  }
  if (f->nnodes == f->cap_nodes) {
    uint32_t cap = f->cap_nodes ? f->cap_nodes * 2 : 32;
    sl_ltl_node_t *nn = realloc(f->nodes, cap * sizeof(*nn));
    if (nn == NULL) {
      *rc = SL_AN_ENOMEM;
      return SL__NONE32;
    }
    f->nodes = nn;
    f->cap_nodes = cap;
  }
  sl_ltl_node_t *n = &f->nodes[f->nnodes];
  n->op = (uint8_t)op;
  n->prop = (uint8_t)prop;
  n->pad = 0;
  n->a = a;
  n->b = b;
  index[h] = f->nnodes + 1;
  return f->nnodes++;
}

/* ---- parser ----------------------------------------------------------- */

enum {
  T_END, T_LP, T_RP, T_NOT, T_AND, T_OR, T_IMP, T_X, T_N, T_G, T_F, T_U, T_R,
  T_TRUE, T_FALSE, T_IDENT, T_BAD
};

typedef struct {
  const char *s;
  size_t len, pos;      /* input and scan position */
  int tok;              /* current token */
  size_t tpos, tlen;    /* its offset and length */
  const char *bad;      /* message for T_BAD */
  sl_ltl_t *f;
  int rc;               /* first error */
  size_t err_pos;
  const char *err_msg;
  unsigned depth;
  uint32_t *index;      /* node_make's index, SL__LTL_INDEX_SLOTS slots */
} parser_t;

static int ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int ident_char(char c) { return ident_start(c) || (c >= '0' && c <= '9'); }

static void next_token(parser_t *p) {
  while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                             p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
    p->pos++;
  p->tpos = p->pos;
  p->tlen = 1;
  if (p->pos >= p->len) {
    p->tok = T_END;
    p->tlen = 0;
    return;
  }
  char c = p->s[p->pos], d = p->pos + 1 < p->len ? p->s[p->pos + 1] : '\0';
  if (ident_start(c)) {
    size_t e = p->pos;
    while (e < p->len && ident_char(p->s[e])) e++;
    const char *w = p->s + p->pos;
    size_t n = e - p->pos;
    p->tlen = n;
    p->pos = e;
    p->tok = T_IDENT;
    if (n == 1) {
      switch (w[0]) {
        case 'X': p->tok = T_X; break;
        case 'N': p->tok = T_N; break;
        case 'G': p->tok = T_G; break;
        case 'F': p->tok = T_F; break;
        case 'U': p->tok = T_U; break;
        case 'R': p->tok = T_R; break;
        default: break;
      }
    } else if (n == 2 && w[0] == 'X' && w[1] == 'w') {
      p->tok = T_N;
    } else if (n == 4 && memcmp(w, "true", 4) == 0) {
      p->tok = T_TRUE;
    } else if (n == 5 && memcmp(w, "false", 5) == 0) {
      p->tok = T_FALSE;
    }
    return;
  }
  p->pos++;
  switch (c) {
    case '(': p->tok = T_LP; return;
    case ')': p->tok = T_RP; return;
    case '!': p->tok = T_NOT; return;
    case '&':
      if (d == '&') { p->tok = T_AND; p->pos++; p->tlen = 2; return; }
      p->tok = T_BAD;
      p->bad = "expected '&&'";
      return;
    case '|':
      if (d == '|') { p->tok = T_OR; p->pos++; p->tlen = 2; return; }
      p->tok = T_BAD;
      p->bad = "expected '||'";
      return;
    case '-':
      if (d == '>') { p->tok = T_IMP; p->pos++; p->tlen = 2; return; }
      p->tok = T_BAD;
      p->bad = "expected '->'";
      return;
    default:
      p->tok = T_BAD;
      p->bad = "unexpected character";
      return;
  }
}

static uint32_t fail(parser_t *p, int rc, size_t pos, const char *msg) {
  if (p->rc == 0) {
    p->rc = rc;
    p->err_pos = pos;
    p->err_msg = msg;
  }
  return SL__NONE32;
}

static uint32_t mk(parser_t *p, unsigned op, unsigned prop, uint32_t a, uint32_t b) {
  int rc = 0;
  uint32_t n = node_make(p->f, p->index, op, prop, a, b, &rc);
  if (n == SL__NONE32)
    return fail(p, rc, p->tpos, rc == SL_AN_ETOOBIG ? "formula too large" : "out of memory");
  return n;
}

static uint32_t parse_implies(parser_t *p);

static uint32_t parse_prop(parser_t *p) {
  const char *w = p->s + p->tpos;
  size_t n = p->tlen;
  unsigned i;
  for (i = 0; i < p->f->nprops; i++)
    if (strlen(p->f->names[i]) == n && memcmp(p->f->names[i], w, n) == 0) break;
  if (i == p->f->nprops) {
    if (i >= SL_LTL_MAX_PROPS) return fail(p, SL_AN_ETOOBIG, p->tpos, "too many propositions");
    char *name = malloc(n + 1);
    if (name == NULL) return fail(p, SL_AN_ENOMEM, p->tpos, "out of memory");
    memcpy(name, w, n);
    name[n] = '\0';
    p->f->names[p->f->nprops++] = name;
  }
  uint32_t r = mk(p, SL_LTL_PROP, i, 0, 0);
  next_token(p);
  return r;
}

static uint32_t parse_unary(parser_t *p) {
  if (++p->depth > SL__LTL_MAX_DEPTH) return fail(p, SL_AN_ETOOBIG, p->tpos, "nesting too deep");
  uint32_t r;
  unsigned op;
  switch (p->tok) {
    case T_NOT: op = SL_LTL_NOT; break;
    case T_X: op = SL_LTL_NEXT; break;
    case T_N: op = SL_LTL_WNEXT; break;
    case T_G: op = SL_LTL_ALWAYS; break;
    case T_F: op = SL_LTL_EVENTUALLY; break;
    default: op = 0; break;
  }
  if (op) {
    next_token(p);
    uint32_t a = parse_unary(p);
    r = a == SL__NONE32 ? a : mk(p, op, 0, a, 0);
  } else if (p->tok == T_TRUE || p->tok == T_FALSE) {
    r = mk(p, p->tok == T_TRUE ? SL_LTL_TRUE : SL_LTL_FALSE, 0, 0, 0);
    next_token(p);
  } else if (p->tok == T_IDENT) {
    r = parse_prop(p);
  } else if (p->tok == T_LP) {
    next_token(p);
    r = parse_implies(p);
    if (r != SL__NONE32) {
      if (p->tok != T_RP) r = fail(p, SL_AN_EPARSE, p->tpos, "expected ')'");
      else next_token(p);
    }
  } else if (p->tok == T_BAD) {
    r = fail(p, SL_AN_EPARSE, p->tpos, p->bad);
  } else {
    r = fail(p, SL_AN_EPARSE, p->tpos, "expected a formula");
  }
  p->depth--;
  return r;
}

static uint32_t parse_until(parser_t *p) {
  uint32_t a = parse_unary(p);
  if (a == SL__NONE32 || (p->tok != T_U && p->tok != T_R)) return a;
  unsigned op = p->tok == T_U ? SL_LTL_UNTIL : SL_LTL_RELEASE;
  if (++p->depth > SL__LTL_MAX_DEPTH) return fail(p, SL_AN_ETOOBIG, p->tpos, "nesting too deep");
  next_token(p);
  uint32_t b = parse_until(p);
  p->depth--;
  return b == SL__NONE32 ? b : mk(p, op, 0, a, b);
}

static uint32_t parse_and(parser_t *p) {
  uint32_t a = parse_until(p);
  while (a != SL__NONE32 && p->tok == T_AND) {
    next_token(p);
    uint32_t b = parse_until(p);
    a = b == SL__NONE32 ? b : mk(p, SL_LTL_AND, 0, a, b);
  }
  return a;
}

static uint32_t parse_or(parser_t *p) {
  uint32_t a = parse_and(p);
  while (a != SL__NONE32 && p->tok == T_OR) {
    next_token(p);
    uint32_t b = parse_and(p);
    a = b == SL__NONE32 ? b : mk(p, SL_LTL_OR, 0, a, b);
  }
  return a;
}

static uint32_t parse_implies(parser_t *p) {
  uint32_t a = parse_or(p);
  if (a == SL__NONE32 || p->tok != T_IMP) return a;
  if (++p->depth > SL__LTL_MAX_DEPTH) return fail(p, SL_AN_ETOOBIG, p->tpos, "nesting too deep");
  next_token(p);
  uint32_t b = parse_implies(p);
  p->depth--;
  return b == SL__NONE32 ? b : mk(p, SL_LTL_IMPLIES, 0, a, b);
}

/* Value of every node on the empty trace (see ltl.h). */
static void compute_eps(sl_ltl_t *f) {
  for (uint32_t i = 0; i < f->nnodes; i++) {
    const sl_ltl_node_t *n = &f->nodes[i];
    uint8_t v = 0;
    switch (n->op) {
      case SL_LTL_TRUE: case SL_LTL_WNEXT: case SL_LTL_ALWAYS: case SL_LTL_RELEASE: v = 1; break;
      case SL_LTL_NOT: v = !f->eps[n->a]; break;
      case SL_LTL_AND: v = f->eps[n->a] && f->eps[n->b]; break;
      case SL_LTL_OR: v = f->eps[n->a] || f->eps[n->b]; break;
      case SL_LTL_IMPLIES: v = !f->eps[n->a] || f->eps[n->b]; break;
      default: v = 0; break; /* false, p, X, F, U */
    }
    f->eps[i] = v;
  }
}

int sl_ltl_parse(const char *src, size_t len, sl_ltl_t **out, sl_ltl_error_t *err) {
  if (src == NULL || out == NULL) return SL_AN_EINVAL;
  *out = NULL;
  sl_ltl_t *f = calloc(1, sizeof(*f));
  if (f == NULL) return SL_AN_ENOMEM;
  parser_t p = {0};
  p.s = src;
  p.len = len;
  p.f = f;
  p.index = calloc(SL__LTL_INDEX_SLOTS, sizeof(uint32_t));
  if (p.index == NULL) {
    free(f);
    return SL_AN_ENOMEM;
  }
  next_token(&p);
  uint32_t root = parse_implies(&p);
  free(p.index);
  if (root != SL__NONE32 && p.tok != T_END)
    fail(&p, SL_AN_EPARSE, p.tpos, p.tok == T_BAD ? p.bad : p.tok == T_RP ? "unbalanced ')'"
                                                                        : "expected an operator");
  if (p.rc == 0) {
    f->eps = malloc(f->nnodes);
    if (f->eps == NULL) fail(&p, SL_AN_ENOMEM, 0, "out of memory");
  }
  if (p.rc != 0) {
    if (err) {
      err->column = p.err_pos + 1;
      err->msg = p.err_msg;
    }
    sl_ltl_free(f);
    return p.rc;
  }
  f->root = root;
  compute_eps(f);
  *out = f;
  return 0;
}

void sl_ltl_free(sl_ltl_t *f) {
  if (f == NULL) return;
  for (unsigned i = 0; i < f->nprops; i++) free(f->names[i]);
  free(f->nodes);
  free(f->eps);
  free(f->delta);
  free(f->verdict);
  free(f->accept);
  free(f);
}

/* ---- printer ---------------------------------------------------------- */

typedef struct {
  char *buf;
  size_t cap, len;
} out_t;

static void put(out_t *o, const char *s) {
  for (; *s; s++) {
    if (o->len + 1 < o->cap) o->buf[o->len] = *s;
    o->len++;
  }
}

/* Binding strength of an operator, loosest 1; atoms bind tightest. */
static unsigned prec(unsigned op) {
  switch (op) {
    case SL_LTL_IMPLIES: return 1;
    case SL_LTL_OR: return 2;
    case SL_LTL_AND: return 3;
    case SL_LTL_UNTIL: case SL_LTL_RELEASE: return 4;
    case SL_LTL_TRUE: case SL_LTL_FALSE: case SL_LTL_PROP: return 6;
    default: return 5; /* prefix operators */
  }
}

/* Prints node i where the context needs an operand binding at least as
 * tightly as min.  Parentheses go only where the parser would otherwise
 * build another tree: around a looser operand, and around the operand on
 * the non-associating side of a binary operator (the right of && and ||,
 * which the parser groups to the left; the left of ->, U and R, which it
 * groups to the right).  Printing every binary operator in parentheses
 * made a chain of 1,000 && nest 1,000 deep, past the parser's depth limit,
 * while its source had not nested at all. */
static void print_node(const sl_ltl_t *f, uint32_t i, unsigned min, out_t *o) {
  const sl_ltl_node_t *n = &f->nodes[i];
  static const char *const unary[] = {
      [SL_LTL_NOT] = "!", [SL_LTL_NEXT] = "X ", [SL_LTL_WNEXT] = "N ",
      [SL_LTL_ALWAYS] = "G ", [SL_LTL_EVENTUALLY] = "F "};
  static const char *const binary[] = {
      [SL_LTL_AND] = " && ", [SL_LTL_OR] = " || ", [SL_LTL_IMPLIES] = " -> ",
      [SL_LTL_UNTIL] = " U ", [SL_LTL_RELEASE] = " R "};
  unsigned p = prec(n->op);
  int paren = p < min;
  if (paren) put(o, "(");
  if (n->op == SL_LTL_TRUE) put(o, "true");
  else if (n->op == SL_LTL_FALSE) put(o, "false");
  else if (n->op == SL_LTL_PROP) put(o, f->names[n->prop]);
  else if (is_unary(n->op)) {
    put(o, unary[n->op]);
    print_node(f, n->a, 5, o);
  } else {
    int left_assoc = n->op == SL_LTL_AND || n->op == SL_LTL_OR;
    print_node(f, n->a, left_assoc ? p : p + 1, o);
    put(o, binary[n->op]);
    print_node(f, n->b, left_assoc ? p + 1 : p, o);
  }
  if (paren) put(o, ")");
}

int sl_ltl_print(const sl_ltl_t *f, char *buf, size_t cap, size_t *len) {
  if (f == NULL || (buf == NULL && cap > 0)) return SL_AN_EINVAL;
  out_t o = {buf, cap, 0};
  print_node(f, f->root, 1, &o);
  if (cap > 0) buf[o.len < cap ? o.len : cap - 1] = '\0';
  if (len) *len = o.len;
  return o.len < cap ? 0 : SL_AN_ETOOBIG;
}

const sl_ltl_node_t *sl_ltl_nodes(const sl_ltl_t *f, size_t *count, size_t *root) {
  if (count) *count = f->nnodes;
  if (root) *root = f->root;
  return f->nodes;
}

size_t sl_ltl_prop_count(const sl_ltl_t *f) { return f->nprops; }

const char *sl_ltl_prop_name(const sl_ltl_t *f, size_t i) {
  return i < f->nprops ? f->names[i] : NULL;
}

int sl_ltl_prop_index(const sl_ltl_t *f, const char *name, size_t len) {
  for (unsigned i = 0; i < f->nprops; i++)
    if (strlen(f->names[i]) == len && memcmp(f->names[i], name, len) == 0) return (int)i;
  return SL_AN_ENOTFOUND;
}

/* ---- BDDs over letters and suffix atoms (compile time only) ----------- */

#define B_FALSE 0u
#define B_TRUE 1u
#define B_TERM UINT32_MAX /* var of a terminal: below every variable */
#define B_CACHE_MIN_BITS 16u
#define B_CACHE_MAX_BITS 20u

typedef struct {
  uint32_t *var, *lo, *hi;
  uint32_t n, cap;
  uint32_t *ht; /* unique table: node + 1, 0 = empty */
  uint32_t ht_cap;
  uint64_t *ckey; /* computed cache, direct mapped, 1 << cbits entries */
  uint32_t *cval;
  unsigned cbits;
  uint64_t work, max_work; /* units spent, and allowed */
  const char *stop;        /* why building stopped (out of memory, budget), or NULL */
} bdd_t;

static const char msg_nomem[] = "out of memory";
static const char msg_work[] = "compile work budget exceeded (max_work)";

/* Spends units of work; returns nonzero (with b->stop set) when that
 * passes the budget or building has already stopped.  Saturates rather
 * than wraps, so any max_work is safe. */
static int charge(bdd_t *b, uint64_t units) {
  if (b->stop) return 1;
  if (units > b->max_work - b->work) {
    b->work = b->max_work == UINT64_MAX ? UINT64_MAX : b->max_work + 1;
    b->stop = msg_work;
    return 1;
  }
  b->work += units;
  return 0;
}

static int bdd_init(bdd_t *b, uint64_t max_work) {
  memset(b, 0, sizeof(*b));
  b->max_work = max_work;
  b->cap = 1024;
  b->var = malloc(b->cap * sizeof(uint32_t));
  b->lo = malloc(b->cap * sizeof(uint32_t));
  b->hi = malloc(b->cap * sizeof(uint32_t));
  b->ht_cap = 2048;
  b->ht = calloc(b->ht_cap, sizeof(uint32_t));
  b->cbits = B_CACHE_MIN_BITS;
  b->ckey = malloc(((size_t)1 << b->cbits) * sizeof(uint64_t));
  b->cval = malloc(((size_t)1 << b->cbits) * sizeof(uint32_t));
  if (!b->var || !b->lo || !b->hi || !b->ht || !b->ckey || !b->cval) return SL_AN_ENOMEM;
  memset(b->ckey, 0xff, ((size_t)1 << b->cbits) * sizeof(uint64_t));
  for (uint32_t t = 0; t < 2; t++) {
    b->var[t] = B_TERM;
    b->lo[t] = b->hi[t] = t;
  }
  b->n = 2;
  return 0;
}

static void bdd_destroy(bdd_t *b) {
  free(b->var);
  free(b->lo);
  free(b->hi);
  free(b->ht);
  free(b->ckey);
  free(b->cval);
}

/* The unique table is probed linearly and indexed by the low bits, so the
 * hash mixes every input bit into them: a weaker mix clustered the long
 * chains a nested G builds and made each lookup a long scan. */
static uint32_t bdd_hash(uint32_t v, uint32_t lo, uint32_t hi) {
  uint64_t h = ((uint64_t)v * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)lo * 0xC2B2AE3D27D4EB4Full) ^
               ((uint64_t)hi * 0x165667B19E3779F9ull);
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  return (uint32_t)h;
}

/* Grows the computed cache with the node table: a cache much smaller than
 * the BDDs it serves misses so often that apply redoes shared work over
 * and over.  A failed allocation keeps the smaller cache, which is still
 * correct. */
static void cache_grow(bdd_t *b) {
  unsigned bits = b->cbits;
  while (bits < B_CACHE_MAX_BITS && ((uint32_t)1 << bits) < b->cap) bits++;
  if (bits == b->cbits) return;
  size_t size = (size_t)1 << bits;
  uint64_t *k = realloc(b->ckey, size * sizeof(uint64_t));
  if (k == NULL) return;
  b->ckey = k;
  uint32_t *v = realloc(b->cval, size * sizeof(uint32_t));
  if (v == NULL) return;
  b->cval = v;
  memset(b->ckey, 0xff, size * sizeof(uint64_t));
  b->cbits = bits;
}

/* The node (v, lo, hi), reduced and shared. */
static uint32_t bdd_mk(bdd_t *b, uint32_t v, uint32_t lo, uint32_t hi) {
  if (lo == hi || b->stop) return lo;
  uint32_t mask = b->ht_cap - 1, h = bdd_hash(v, lo, hi) & mask;
  for (;; h = (h + 1) & mask) {
    uint32_t e = b->ht[h];
    if (e == 0) break;
    e--;
    if (b->var[e] == v && b->lo[e] == lo && b->hi[e] == hi) return e;
  }
  if (b->n == b->cap) {
    uint32_t cap = b->cap * 2;
    uint32_t *nv = realloc(b->var, cap * sizeof(uint32_t));
    if (nv) b->var = nv;
    uint32_t *nl = realloc(b->lo, cap * sizeof(uint32_t));
    if (nl) b->lo = nl;
    uint32_t *nh = realloc(b->hi, cap * sizeof(uint32_t));
    if (nh) b->hi = nh;
    if (!nv || !nl || !nh) {
      b->stop = msg_nomem;
      return lo;
    }
    b->cap = cap;
    cache_grow(b);
  }
  if (charge(b, SL__LTL_NODE_UNITS)) return lo;
  uint32_t id = b->n++;
  b->var[id] = v;
  b->lo[id] = lo;
  b->hi[id] = hi;
  b->ht[h] = id + 1;
  if (b->n * 2 > b->ht_cap) {
    /* Keep the unique table at most half full. */
    uint32_t ncap = b->ht_cap * 2;
    uint32_t *nt = calloc(ncap, sizeof(uint32_t));
    if (nt == NULL) {
      b->stop = msg_nomem;
      return id;
    }
    for (uint32_t i = 2; i < b->n; i++) {
      uint32_t g = bdd_hash(b->var[i], b->lo[i], b->hi[i]) & (ncap - 1);
      while (nt[g]) g = (g + 1) & (ncap - 1);
      nt[g] = i + 1;
    }
    free(b->ht);
    b->ht = nt;
    b->ht_cap = ncap;
  }
  return id;
}

enum { OP_AND = 0, OP_OR = 1, OP_NOT = 2 };

static uint32_t cache_slot(const bdd_t *b, uint64_t key) {
  return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - b->cbits));
}

/* x op y (y unused for OP_NOT).  Every call past the constant cases is one
 * unit of work, so the budget bounds apply however large its operands are
 * and however often the cache misses. */
static uint32_t bdd_apply(bdd_t *b, unsigned op, uint32_t x, uint32_t y) {
  if (op == OP_NOT) {
    if (x <= B_TRUE) return x ^ 1u;
  } else {
    if (op == OP_AND) {
      if (x == B_FALSE || y == B_FALSE) return B_FALSE;
      if (x == B_TRUE) return y;
      if (y == B_TRUE) return x;
    } else {
      if (x == B_TRUE || y == B_TRUE) return B_TRUE;
      if (x == B_FALSE) return y;
      if (y == B_FALSE) return x;
    }
    if (x == y) return x;
    if (x > y) { uint32_t t = x; x = y; y = t; }
  }
  if (charge(b, 1)) return B_FALSE;
  uint64_t key = ((uint64_t)op << 62) | ((uint64_t)x << 31) | y;
  uint32_t slot = cache_slot(b, key);
  if (b->ckey[slot] == key) return b->cval[slot];
  uint32_t r;
  if (op == OP_NOT) {
    uint32_t v = b->var[x], lo = b->lo[x], hi = b->hi[x];
    uint32_t nl = bdd_apply(b, OP_NOT, lo, 0);
    uint32_t nh = bdd_apply(b, OP_NOT, hi, 0);
    r = bdd_mk(b, v, nl, nh);
  } else {
    uint32_t vx = b->var[x], vy = b->var[y], v = vx < vy ? vx : vy;
    uint32_t xl = vx == v ? b->lo[x] : x, xh = vx == v ? b->hi[x] : x;
    uint32_t yl = vy == v ? b->lo[y] : y, yh = vy == v ? b->hi[y] : y;
    uint32_t rl = bdd_apply(b, op, xl, yl);
    uint32_t rh = bdd_apply(b, op, xh, yh);
    r = bdd_mk(b, v, rl, rh);
  }
  if (b->stop) return B_FALSE;
  slot = cache_slot(b, key); /* the cache may have grown meanwhile */
  b->ckey[slot] = key;
  b->cval[slot] = r;
  return r;
}

static uint32_t bdd_var(bdd_t *b, uint32_t v) { return bdd_mk(b, v, B_FALSE, B_TRUE); }

/* ---- compilation ------------------------------------------------------ */

/* Letters are not enumerated to progress the formula: the proposition of
 * bit i is BDD variable i, ordered above every atom (atom v is variable
 * bits + v), so one symbolic progression per atom serves all 2^bits
 * letters, and a state's successors for every letter are one BDD whose top
 * levels branch on the letter.  Progressing once per letter cost 2^bits
 * times the formula's size before any limit was looked at (a 700-deep G
 * over 16 propositions ran for minutes to build 3 states); now the only
 * part that grows with 2^bits is the transition table itself, which must
 * be written anyway and is charged to the budget. */
typedef struct {
  sl_ltl_t *f;
  bdd_t b;
  unsigned bits;       /* letter variables are 0 .. bits - 1 */
  uint32_t *atom_of;   /* per node: its atom, or NONE */
  uint32_t *atom_node; /* per atom: its node (the NE atom has none) */
  uint8_t *var_eps;    /* per variable: value on the empty suffix (letters: 0) */
  uint32_t natoms, ne;
  uint32_t *prog;      /* per node: its progression, NONE until computed */
  uint32_t *sub;       /* per atom: its progression (NE: true) */
  uint32_t *cmemo, *cstamp, ccap, stamp; /* compose memo, by BDD node */
  /* The automaton as it is found, breadth first. */
  uint32_t letters;    /* 1 << bits */
  uint32_t *states;    /* per state: its residual (a BDD over atoms) */
  uint32_t *state_of;  /* per BDD node: its state, or NONE */
  uint32_t state_of_cap;
  uint32_t *delta;     /* cap_states rows of letters successors */
  uint32_t nstates, cap_states;
  size_t max_states, max_rows;
  const char *msg;     /* why a limit refused */
} compiler_t;

static uint32_t add_atom(compiler_t *c, uint32_t node) {
  if (c->atom_of[node] == SL__NONE32) {
    c->atom_node[c->natoms] = node;
    c->atom_of[node] = c->natoms++;
  }
  return c->atom_of[node];
}

static uint32_t atom_var(compiler_t *c, uint32_t node) {
  return bdd_var(&c->b, c->bits + c->atom_of[node]);
}

/* The progression of node i: a BDD over the letter variables (the current
 * event) and the atoms (the rest of the trace).  Memoized per node, so the
 * whole formula is progressed once. */
static uint32_t progress(compiler_t *c, uint32_t i) {
  if (c->prog[i] != SL__NONE32) return c->prog[i];
  if (charge(&c->b, 1)) return B_FALSE;
  const sl_ltl_node_t *n = &c->f->nodes[i];
  bdd_t *b = &c->b;
  uint32_t r = B_FALSE, a, d;
  uint32_t ne = bdd_var(b, c->bits + c->ne);
  switch (n->op) {
    case SL_LTL_TRUE: r = B_TRUE; break;
    case SL_LTL_FALSE: r = B_FALSE; break;
    case SL_LTL_PROP: r = bdd_var(b, n->prop); break;
    case SL_LTL_NOT: r = bdd_apply(b, OP_NOT, progress(c, n->a), 0); break;
    case SL_LTL_AND:
      a = progress(c, n->a);
      r = bdd_apply(b, OP_AND, a, progress(c, n->b));
      break;
    case SL_LTL_OR:
      a = progress(c, n->a);
      r = bdd_apply(b, OP_OR, a, progress(c, n->b));
      break;
    case SL_LTL_IMPLIES:
      a = bdd_apply(b, OP_NOT, progress(c, n->a), 0);
      r = bdd_apply(b, OP_OR, a, progress(c, n->b));
      break;
    case SL_LTL_NEXT: r = bdd_apply(b, OP_AND, atom_var(c, n->a), ne); break;
    case SL_LTL_WNEXT:
      r = bdd_apply(b, OP_OR, atom_var(c, n->a), bdd_apply(b, OP_NOT, ne, 0));
      break;
    case SL_LTL_ALWAYS: r = bdd_apply(b, OP_AND, progress(c, n->a), atom_var(c, i)); break;
    case SL_LTL_EVENTUALLY: r = bdd_apply(b, OP_OR, progress(c, n->a), atom_var(c, i)); break;
    case SL_LTL_UNTIL:
      a = progress(c, n->a);
      d = bdd_apply(b, OP_AND, a, atom_var(c, i));
      r = bdd_apply(b, OP_OR, progress(c, n->b), d);
      break;
    case SL_LTL_RELEASE:
      a = progress(c, n->a);
      d = bdd_apply(b, OP_OR, a, atom_var(c, i));
      r = bdd_apply(b, OP_AND, progress(c, n->b), d);
      break;
  }
  if (b->stop) return B_FALSE;
  c->prog[i] = r;
  return r;
}

static int compose_reserve(compiler_t *c) {
  if (c->ccap >= c->b.n) return 0;
  uint32_t cap = c->b.cap;
  uint32_t *m = realloc(c->cmemo, cap * sizeof(uint32_t));
  if (m) c->cmemo = m;
  uint32_t *s = realloc(c->cstamp, cap * sizeof(uint32_t));
  if (s) c->cstamp = s;
  if (!m || !s) return SL_AN_ENOMEM;
  memset(c->cstamp + c->ccap, 0, (cap - c->ccap) * sizeof(uint32_t));
  c->ccap = cap;
  return 0;
}

/* x (a BDD over atoms only) with every atom v replaced by c->sub[v]: the
 * successors of residual x for every letter at once. */
static uint32_t compose(compiler_t *c, uint32_t x) {
  if (x <= B_TRUE) return x;
  if (c->cstamp[x] == c->stamp) return c->cmemo[x];
  bdd_t *b = &c->b;
  if (charge(b, 1)) return B_FALSE;
  uint32_t v = b->var[x], lo = b->lo[x], hi = b->hi[x];
  uint32_t h = compose(c, hi), l = compose(c, lo), t = c->sub[v - c->bits];
  uint32_t th = bdd_apply(b, OP_AND, t, h);
  uint32_t nt = bdd_apply(b, OP_NOT, t, 0);
  uint32_t r = bdd_apply(b, OP_OR, th, bdd_apply(b, OP_AND, nt, l));
  if (b->stop) return B_FALSE;
  c->cstamp[x] = c->stamp;
  c->cmemo[x] = r;
  return r;
}

static int bdd_eval(const bdd_t *b, uint32_t x, const uint8_t *val) {
  while (x > B_TRUE) x = val[b->var[x]] ? b->hi[x] : b->lo[x];
  return x == B_TRUE;
}

/* Marks every state that can reach a marked state (reverse BFS over the
 * predecessor lists off/pred). */
static void mark_backward(const uint32_t *off, const uint32_t *pred, uint32_t nstates,
                          uint8_t *mark, uint32_t *queue) {
  uint32_t head = 0, tail = 0;
  for (uint32_t s = 0; s < nstates; s++)
    if (mark[s]) queue[tail++] = s;
  while (head < tail) {
    uint32_t s = queue[head++];
    for (uint32_t e = off[s]; e < off[s + 1]; e++) {
      uint32_t q = pred[e];
      if (!mark[q]) {
        mark[q] = 1;
        queue[tail++] = q;
      }
    }
  }
}

static const char msg_props[] =
    "a monitor takes at most 16 propositions (SL_LTL_MAX_MONITOR_PROPS)";
static const char msg_states[] = "automaton exceeds max_states";
static const char msg_table[] =
    "transition table exceeds SL_LTL_MAX_TABLE entries (states x 2^propositions)";

/* The state of residual x, a new one when x was not seen yet.  Returns it,
 * or SL__NONE32 with c->msg set when a limit refuses or memory runs out. */
static uint32_t state_for(compiler_t *c, uint32_t x) {
  if (c->state_of[x] != SL__NONE32) return c->state_of[x];
  if (c->nstates >= c->max_states) {
    c->msg = msg_states;
    return SL__NONE32;
  }
  if (c->nstates == c->cap_states) {
    if (c->cap_states >= c->max_rows) {
      c->msg = msg_table;
      return SL__NONE32;
    }
    /* Geometric growth: reallocating one row per state copied the table
     * once per state, quadratic in the states.  The copy is charged. */
    size_t ncap = (size_t)c->cap_states * 2 < c->max_rows ? (size_t)c->cap_states * 2 : c->max_rows;
    if (charge(&c->b, (uint64_t)c->nstates * c->letters)) {
      c->msg = c->b.stop;
      return SL__NONE32;
    }
    uint32_t *ns = realloc(c->states, ncap * sizeof(uint32_t));
    if (ns) c->states = ns;
    uint32_t *nd = ns ? realloc(c->delta, ncap * c->letters * sizeof(uint32_t)) : NULL;
    if (nd) c->delta = nd;
    if (!ns || !nd) {
      c->msg = msg_nomem;
      return SL__NONE32;
    }
    c->cap_states = (uint32_t)ncap;
  }
  c->states[c->nstates] = x;
  c->state_of[x] = c->nstates;
  return c->nstates++;
}

/* Writes row s of the table from succ, the successors of state s as one
 * BDD whose variables 0 .. bits - 1 are the letter's bits.  At depth level
 * the letter's bits below level are fixed (base), and x is what they lead
 * to: once x no longer looks at any letter bit, every letter with those low
 * bits goes to x's state, and they are written without further descent.
 * Returns 0, or -1 with c->msg set. */
static int fill_row(compiler_t *c, uint32_t s, uint32_t x, unsigned level, uint32_t base) {
  if (charge(&c->b, 1)) {
    c->msg = c->b.stop;
    return -1;
  }
  uint32_t v = c->b.var[x];
  if (x <= B_TRUE || v >= c->bits) {
    uint32_t t = state_for(c, x);
    if (t == SL__NONE32) return -1;
    uint32_t n = c->letters >> level;
    if (charge(&c->b, n)) {
      c->msg = c->b.stop;
      return -1;
    }
    uint32_t *row = c->delta + (size_t)s * c->letters;
    for (uint32_t k = 0; k < n; k++) row[base | (k << level)] = t;
    return 0;
  }
  uint32_t lo = x, hi = x;
  if (v == level) {
    lo = c->b.lo[x];
    hi = c->b.hi[x];
  }
  if (fill_row(c, s, lo, level + 1, base) != 0) return -1;
  return fill_row(c, s, hi, level + 1, base | (1u << level));
}

int sl_ltl_compile_opts(sl_ltl_t *f, const sl_ltl_compile_opts_t *opts, sl_ltl_error_t *err) {
  if (err) {
    err->column = 0;
    err->msg = NULL;
  }
  if (f == NULL) return SL_AN_EINVAL;
  if (f->delta) return 0;
  f->work = 0;
  if (f->nprops > SL_LTL_MAX_MONITOR_PROPS) {
    if (err) err->msg = msg_props;
    return SL_AN_ETOOBIG;
  }
  const unsigned bits = f->nprops;
  compiler_t c;
  memset(&c, 0, sizeof(c));
  c.f = f;
  c.bits = bits;
  c.letters = 1u << bits;
  c.max_states = opts && opts->max_states ? opts->max_states : SL_LTL_DEFAULT_MAX_STATES;
  /* The table bounds the states as well: every state has a full row. */
  c.max_rows = SL_LTL_MAX_TABLE / c.letters;
  int rc = bdd_init(&c.b, opts && opts->max_work ? opts->max_work : SL_LTL_DEFAULT_MAX_WORK);
  uint8_t *verdict = NULL, *accept = NULL, *can_acc = NULL, *can_rej = NULL;
  uint32_t *off = NULL, *pred = NULL, *queue = NULL;
  c.atom_of = malloc(f->nnodes * sizeof(uint32_t));
  c.atom_node = malloc((f->nnodes + 1) * sizeof(uint32_t));
  c.var_eps = calloc(bits + f->nnodes + 1, 1);
  c.prog = malloc(f->nnodes * sizeof(uint32_t));
  c.sub = malloc((f->nnodes + 1) * sizeof(uint32_t));
  if (rc || !c.atom_of || !c.atom_node || !c.var_eps || !c.prog || !c.sub) goto nomem;
  if (charge(&c.b, f->nnodes)) goto stopped;
  for (uint32_t i = 0; i < f->nnodes; i++) c.atom_of[i] = c.prog[i] = SL__NONE32;
  /* Atoms are numbered parents first (nodes are stored children first, so
   * downwards): progressing G a conjoins a's progression with the atom
   * G a, and with G a above a's atoms in the order that adds one BDD node,
   * where below them it copied a's whole chain (quadratic in a nest of
   * G's). */
  add_atom(&c, f->root);
  for (uint32_t i = f->nnodes; i-- > 0;) {
    unsigned op = f->nodes[i].op;
    if (op == SL_LTL_ALWAYS || op == SL_LTL_EVENTUALLY || op == SL_LTL_UNTIL ||
        op == SL_LTL_RELEASE)
      add_atom(&c, i);
    if (op == SL_LTL_NEXT || op == SL_LTL_WNEXT) add_atom(&c, f->nodes[i].a);
  }
  c.ne = c.natoms++;
  for (uint32_t v = 0; v < c.ne; v++) c.var_eps[bits + v] = f->eps[c.atom_node[v]];
  /* The substitution of every atom, once for all letters. */
  for (uint32_t v = 0; v < c.ne; v++) c.sub[v] = progress(&c, c.atom_node[v]);
  c.sub[c.ne] = B_TRUE;
  /* Breadth-first over residuals, starting from "the whole trace satisfies
   * the root". */
  uint32_t init = atom_var(&c, f->root);
  if (c.b.stop) goto stopped;
  c.cap_states = 64 < c.max_rows ? 64 : (uint32_t)c.max_rows;
  c.states = malloc(c.cap_states * sizeof(uint32_t));
  c.delta = malloc((size_t)c.cap_states * c.letters * sizeof(uint32_t));
  c.state_of = malloc(c.b.cap * sizeof(uint32_t));
  if (!c.states || !c.delta || !c.state_of) goto nomem;
  for (uint32_t i = 0; i < c.b.cap; i++) c.state_of[i] = SL__NONE32;
  c.state_of_cap = c.b.cap;
  state_for(&c, init);
  for (uint32_t s = 0; s < c.nstates; s++) {
    if (compose_reserve(&c) != 0) goto nomem;
    c.stamp++;
    uint32_t succ = compose(&c, c.states[s]);
    if (c.b.stop) goto stopped;
    /* The state map has a slot per BDD node; it grows with the BDD. */
    if (c.state_of_cap < c.b.cap) {
      uint32_t *m = realloc(c.state_of, c.b.cap * sizeof(uint32_t));
      if (m == NULL) goto nomem;
      for (uint32_t i = c.state_of_cap; i < c.b.cap; i++) m[i] = SL__NONE32;
      c.state_of = m;
      c.state_of_cap = c.b.cap;
    }
    if (fill_row(&c, s, succ, 0, 0) != 0) goto refused;
  }
  /* Verdicts: which states accept the empty suffix, and which can still
   * reach an accepting or a rejecting state.  Linear in the table: two
   * passes to list predecessors and two reverse searches over them. */
  const uint32_t nstates = c.nstates, letters = c.letters;
  if (charge(&c.b, (uint64_t)nstates * letters * 4 + nstates)) goto stopped;
  accept = malloc(nstates);
  verdict = malloc(nstates);
  can_acc = malloc(nstates);
  can_rej = malloc(nstates);
  off = calloc((size_t)nstates + 1, sizeof(uint32_t));
  pred = malloc((size_t)nstates * letters * sizeof(uint32_t));
  queue = malloc((size_t)nstates * sizeof(uint32_t));
  if (!accept || !verdict || !can_acc || !can_rej || !off || !pred || !queue) goto nomem;
  for (uint32_t s = 0; s < nstates; s++) {
    accept[s] = (uint8_t)bdd_eval(&c.b, c.states[s], c.var_eps);
    can_acc[s] = accept[s];
    can_rej[s] = !accept[s];
  }
  const uint32_t *delta = c.delta;
  for (size_t e = 0; e < (size_t)nstates * letters; e++) off[delta[e] + 1]++;
  for (uint32_t s = 0; s < nstates; s++) off[s + 1] += off[s];
  for (uint32_t s = 0; s < nstates; s++) queue[s] = off[s];
  for (uint32_t s = 0; s < nstates; s++)
    for (uint32_t l = 0; l < letters; l++) {
      uint32_t t = delta[(size_t)s * letters + l];
      pred[queue[t]++] = s;
    }
  mark_backward(off, pred, nstates, can_acc, queue);
  mark_backward(off, pred, nstates, can_rej, queue);
  for (uint32_t s = 0; s < nstates; s++)
    verdict[s] = !can_rej[s] ? SL_LTL_SATISFIED : !can_acc[s] ? SL_LTL_VIOLATED : SL_LTL_OPEN;
  /* The monitor keeps exactly nstates rows. */
  if (nstates < c.cap_states) {
    uint32_t *nd = realloc(c.delta, (size_t)nstates * letters * sizeof(uint32_t));
    if (nd) c.delta = nd;
  }
  f->nstates = nstates;
  f->bits = bits;
  f->mask = bits >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << bits) - 1);
  f->delta = c.delta;
  f->verdict = verdict;
  f->accept = accept;
  c.delta = NULL;
  verdict = accept = NULL;
  rc = 0;
  goto done;
nomem:
  c.msg = msg_nomem;
  goto refused;
stopped:
  c.msg = c.b.stop;
refused:
  rc = c.msg == msg_nomem ? SL_AN_ENOMEM : SL_AN_ETOOBIG;
  if (err) err->msg = c.msg;
done:
  f->work = c.b.work;
  bdd_destroy(&c.b);
  free(c.atom_of);
  free(c.atom_node);
  free(c.var_eps);
  free(c.prog);
  free(c.sub);
  free(c.cmemo);
  free(c.cstamp);
  free(c.states);
  free(c.state_of);
  free(c.delta);
  free(verdict);
  free(accept);
  free(can_acc);
  free(can_rej);
  free(off);
  free(pred);
  free(queue);
  return rc;
}

int sl_ltl_compile(sl_ltl_t *f, size_t max_states) {
  sl_ltl_compile_opts_t opts = {max_states, 0};
  return sl_ltl_compile_opts(f, &opts, NULL);
}

uint64_t sl_ltl_compile_work(const sl_ltl_t *f) { return f->work; }

size_t sl_ltl_state_count(const sl_ltl_t *f) { return f->delta ? f->nstates : 0; }

/* ---- offline evaluation ----------------------------------------------- */

size_t sl_ltl_eval_workspace_size(const sl_ltl_t *f) { return 2 * (size_t)f->nnodes; }

int sl_ltl_eval(const sl_ltl_t *f, const uint64_t *trace, size_t n, void *ws, size_t ws_size,
                sl_ltl_result_t *out) {
  if (f == NULL || out == NULL || ws == NULL || (trace == NULL && n > 0) || f->delta == NULL ||
      ws_size < sl_ltl_eval_workspace_size(f))
    return SL_AN_EINVAL;
  /* Backward pass: nxt holds every node's value at i + 1, cur at i; at
   * i + 1 = n that is the empty-trace value. */
  uint8_t *cur = ws, *nxt = cur + f->nnodes;
  memcpy(nxt, f->eps, f->nnodes);
  int holds = f->eps[f->root];
  for (size_t i = n; i-- > 0;) {
    uint64_t ev = trace[i];
    int last = i + 1 == n;
    for (uint32_t k = 0; k < f->nnodes; k++) {
      const sl_ltl_node_t *d = &f->nodes[k];
      uint8_t v = 0;
      switch (d->op) {
        case SL_LTL_TRUE: v = 1; break;
        case SL_LTL_FALSE: v = 0; break;
        case SL_LTL_PROP: v = (uint8_t)((ev >> d->prop) & 1u); break;
        case SL_LTL_NOT: v = !cur[d->a]; break;
        case SL_LTL_AND: v = cur[d->a] && cur[d->b]; break;
        case SL_LTL_OR: v = cur[d->a] || cur[d->b]; break;
        case SL_LTL_IMPLIES: v = !cur[d->a] || cur[d->b]; break;
        case SL_LTL_NEXT: v = !last && nxt[d->a]; break;
        case SL_LTL_WNEXT: v = last || nxt[d->a]; break;
        case SL_LTL_ALWAYS: v = cur[d->a] && nxt[k]; break;
        case SL_LTL_EVENTUALLY: v = cur[d->a] || nxt[k]; break;
        case SL_LTL_UNTIL: v = cur[d->b] || (cur[d->a] && nxt[k]); break;
        case SL_LTL_RELEASE: v = cur[d->b] && (cur[d->a] || nxt[k]); break;
      }
      cur[k] = v;
    }
    uint8_t *t = cur;
    cur = nxt;
    nxt = t;
  }
  if (n > 0) holds = nxt[f->root];
  out->holds = holds;
  out->first_violation = SL_LTL_NOPOS;
  if (!holds) {
    /* Forward through the automaton for the first certain violation. */
    uint32_t s = 0;
    out->first_violation = n;
    for (size_t i = 0; i < n; i++) {
      s = f->delta[((size_t)s << f->bits) | (trace[i] & f->mask)];
      if (f->verdict[s] == SL_LTL_VIOLATED) {
        out->first_violation = i;
        break;
      }
    }
  }
  return 0;
}

/* ---- monitor ---------------------------------------------------------- */

int sl_ltl_monitor_init(sl_ltl_monitor_t *m, const sl_ltl_t *f) {
  if (m == NULL || f == NULL || f->delta == NULL) return SL_AN_EINVAL;
  m->f = f;
  m->state = 0;
  m->steps = 0;
  return 0;
}

void sl_ltl_monitor_reset(sl_ltl_monitor_t *m) {
  m->state = 0;
  m->steps = 0;
}

sl_ltl_verdict_t sl_ltl_monitor_step(sl_ltl_monitor_t *m, uint64_t event) {
  const sl_ltl_t *f = m->f;
  m->state = f->delta[((size_t)m->state << f->bits) | (event & f->mask)];
  m->steps++;
  return (sl_ltl_verdict_t)f->verdict[m->state];
}

sl_ltl_verdict_t sl_ltl_monitor_verdict(const sl_ltl_monitor_t *m) {
  return (sl_ltl_verdict_t)m->f->verdict[m->state];
}

sl_ltl_verdict_t sl_ltl_monitor_final(const sl_ltl_monitor_t *m) {
  return m->f->accept[m->state] ? SL_LTL_SATISFIED : SL_LTL_VIOLATED;
}

const char *sl_ltl_verdict_name(sl_ltl_verdict_t v) {
  switch (v) {
    case SL_LTL_OPEN: return "open";
    case SL_LTL_SATISFIED: return "satisfied";
    case SL_LTL_VIOLATED: return "violated";
  }
  return "unknown";
}
