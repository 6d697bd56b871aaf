/* guardset.c: a pool's "guards" config object, checked and compiled once
 * (see guard.h).  Every key is checked: unknown keys, wrong types, values
 * out of range, an LTL formula that does not parse or names an unknown
 * proposition are refused with the key's path, as config.c does. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/guard/guard.h"

typedef struct {
  char *err;
  size_t errlen;
} sl__gctx_t;

static int sl__bad(sl__gctx_t *x, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (x->err && x->errlen) vsnprintf(x->err, x->errlen, fmt, ap);
  va_end(ap);
  return SL_EINVAL;
}

#define SL__TRY(e)       \
  do {                   \
    int rc_ = (e);       \
    if (rc_ < 0) return rc_; \
  } while (0)

static int sl__keys(sl__gctx_t *x, const cJSON *o, const char *path, const char *const *allowed) {
  if (!cJSON_IsObject(o)) return sl__bad(x, "%s: expected an object", path);
  const cJSON *it;
  cJSON_ArrayForEach(it, o) {
    int ok = 0;
    for (int i = 0; allowed[i] && !ok; i++) ok = strcmp(allowed[i], it->string) == 0;
    if (!ok) return sl__bad(x, "%s.%s: unknown key", path, it->string);
  }
  return 0;
}

static const char *const sl__kind_names[SL_GUARD__COUNT] = {"none", "stop", "redaction", "budget", "loop", "ltl",
                                                                            "pipeline"};
static const char *const sl__action_names[] = {"end", "cancel", "annotate", "replace"};

const char *sl_guard_kind_name(sl_guard_kind_t k) {
  return (unsigned)k < SL_GUARD__COUNT ? sl__kind_names[k] : "?";
}

const char *sl_guard_action_name(sl_guard_action_t a) {
  return (unsigned)a <= SL_GACT_REPLACE ? sl__action_names[a] : "?";
}

/* "action": one of end, cancel, annotate (and replace where allowed). */
static int sl__action(sl__gctx_t *x, const cJSON *o, const char *path, int allow_replace,
                      sl_guard_action_t *out) {
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "action");
  if (a == NULL) return 0;
  if (!cJSON_IsString(a)) return sl__bad(x, "%s.action: expected a string", path);
  for (int i = 0; i <= (allow_replace ? SL_GACT_REPLACE : SL_GACT_ANNOTATE); i++)
    if (strcmp(a->valuestring, sl__action_names[i]) == 0) {
      *out = (sl_guard_action_t)i;
      return 0;
    }
  return sl__bad(x, "%s.action: \"%s\" is not one of end, cancel, annotate%s", path, a->valuestring,
                 allow_replace ? ", replace" : "");
}

static int sl__num(sl__gctx_t *x, const cJSON *o, const char *key, const char *path, double min, double max,
                   int integer, double *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (v == NULL) return 0;
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || (integer && v->valuedouble != floor(v->valuedouble)))
    return sl__bad(x, "%s.%s: expected %s", path, key, integer ? "an integer" : "a number");
  if (v->valuedouble < min || v->valuedouble > max)
    return sl__bad(x, "%s.%s: %g is out of range [%g, %g]", path, key, v->valuedouble, min, max);
  *out = v->valuedouble;
  return 1;
}

static int sl__bool(sl__gctx_t *x, const cJSON *o, const char *key, const char *path, int *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (v == NULL) return 0;
  if (!cJSON_IsBool(v)) return sl__bad(x, "%s.%s: expected true or false", path, key);
  *out = cJSON_IsTrue(v);
  return 0;
}

/* An array of non-empty strings of at most maxlen bytes, appended to
 * out[*n..cap). */
static int sl__strings(sl__gctx_t *x, const cJSON *arr, const char *path, size_t maxlen, char **out,
                       size_t *lens, int *n, int cap) {
  if (!cJSON_IsArray(arr)) return sl__bad(x, "%s: expected an array of strings", path);
  int i = 0;
  const cJSON *s;
  cJSON_ArrayForEach(s, arr) {
    if (!cJSON_IsString(s) || s->valuestring[0] == '\0')
      return sl__bad(x, "%s[%d]: expected a non-empty string", path, i);
    size_t len = strlen(s->valuestring);
    if (len > maxlen) return sl__bad(x, "%s[%d]: %zu bytes, at most %zu", path, i, len, maxlen);
    if (*n == cap) return sl__bad(x, "%s: more than %d strings", path, cap);
    out[*n] = sl_strndup(s->valuestring, len);
    lens[*n] = len;
    (*n)++;
    i++;
  }
  return 0;
}

/* Builds an automaton over pats in memory from sl_malloc. */
static int sl__ac(sl__gctx_t *x, const char *path, char *const *pats, const size_t *lens, int n, sl_ac_t **out) {
  *out = NULL;
  if (n == 0) return 0;
  size_t size = sl_ac_size((const char *const *)pats, lens, (size_t)n, 0);
  if (size == 0) return sl__bad(x, "%s: the strings cannot be compiled", path);
  void *mem = sl_malloc(size);
  if (sl_ac_build(mem, size, (const char *const *)pats, lens, (size_t)n, 0, out) != 0) {
    sl_free(mem);
    return sl__bad(x, "%s: the strings cannot be compiled", path);
  }
  return 0;
}

static int sl__stop(sl__gctx_t *x, sl_guardset_t *gs, const cJSON *o, const char *path) {
  static const char *const keys[] = {"strings", "client", "action", NULL};
  SL__TRY(sl__keys(x, o, path, keys));
  char p[160];
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "strings");
  if (s != NULL) {
    if (snprintf(p, sizeof(p), "%s.strings", path) >= (int)sizeof(p)) return sl__bad(x, "%s: path too long", path);
    SL__TRY(sl__strings(x, s, p, SL_GUARD_MAX_STOP_LEN, gs->stops, gs->stop_lens, &gs->nstops, SL_GUARD_MAX_STOPS));
  }
  SL__TRY(sl__bool(x, o, "client", path, &gs->client_stop));
  SL__TRY(sl__action(x, o, path, 0, &gs->stop_action));
  return sl__ac(x, path, gs->stops, gs->stop_lens, gs->nstops, &gs->stop_ac);
}

static int sl__redact(sl__gctx_t *x, sl_guardset_t *gs, const cJSON *o, const char *path,
                      const char *const *secrets) {
  static const char *const keys[] = {"literals", "classes", "secrets", "mask", "action", NULL};
  SL__TRY(sl__keys(x, o, path, keys));
  char p[160];
  char *lits[SL_GUARD_MAX_LITERALS];
  size_t lens[SL_GUARD_MAX_LITERALS];
  int n = 0, rc = 0, use_secrets = 1;
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "literals");
  if (l != NULL) {
    snprintf(p, sizeof(p), "%s.literals", path);
    rc = sl__strings(x, l, p, 1024, lits, lens, &n, SL_GUARD_MAX_LITERALS);
  }
  if (rc == 0) rc = sl__bool(x, o, "secrets", path, &use_secrets);
  for (int i = 0; rc == 0 && use_secrets && secrets && secrets[i]; i++) {
    if (secrets[i][0] == '\0') continue;
    if (n == SL_GUARD_MAX_LITERALS) {
      rc = sl__bad(x, "%s: more than %d literals with the secrets", path, SL_GUARD_MAX_LITERALS);
      break;
    }
    lens[n] = strlen(secrets[i]);
    lits[n] = sl_strndup(secrets[i], lens[n]);
    n++;
  }
  for (int i = 0; i < n; i++)
    if (lens[i] > gs->redact_max_len) gs->redact_max_len = lens[i];
  if (rc == 0) rc = sl__ac(x, path, lits, lens, n, &gs->redact_ac);
  for (int i = 0; i < n; i++) sl_free(lits[i]);
  if (rc < 0) return rc;
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "classes");
  if (c != NULL) {
    if (!cJSON_IsArray(c)) return sl__bad(x, "%s.classes: expected an array of class names", path);
    int i = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, c) {
      unsigned bit = 0;
      if (!cJSON_IsString(s) || sl_rx_class_parse(s->valuestring, strlen(s->valuestring), &bit) != 0)
        return sl__bad(x, "%s.classes[%d]: expected one of openai_key, bearer, aws_access_key_id, email", path,
                       i);
      gs->redact_classes |= bit;
      i++;
    }
    if (gs->redact_classes) {
      gs->rx = sl_malloc(sizeof(*gs->rx));
      sl_rx_set_init(gs->rx, gs->redact_classes);
    }
  }
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "mask");
  if (m != NULL) {
    if (!cJSON_IsString(m)) return sl__bad(x, "%s.mask: expected a string", path);
    size_t len = strlen(m->valuestring);
    if (len >= SL_GUARD_MASK_MAX) return sl__bad(x, "%s.mask: at most %d bytes", path, SL_GUARD_MASK_MAX - 1);
    memcpy(gs->mask, m->valuestring, len + 1);
    gs->mask_len = len;
  }
  return sl__action(x, o, path, 1, &gs->redact_action);
}

static int sl__budget(sl__gctx_t *x, sl_guardset_t *gs, const cJSON *o, const char *path) {
  static const char *const keys[] = {"max_completion_tokens", "action", NULL};
  SL__TRY(sl__keys(x, o, path, keys));
  double v = 0;
  int got = sl__num(x, o, "max_completion_tokens", path, 1, 1e12, 1, &v);
  if (got < 0) return got;
  if (got == 0) return sl__bad(x, "%s.max_completion_tokens: required", path);
  gs->budget = (int64_t)v;
  return sl__action(x, o, path, 0, &gs->budget_action);
}

static int sl__loop(sl__gctx_t *x, sl_guardset_t *gs, const cJSON *o, const char *path) {
  static const char *const keys[] = {"window", "min_period", "max_period", "min_repeats", "min_length",
                                     "max_dist_ratio", "batch", "action", NULL};
  SL__TRY(sl__keys(x, o, path, keys));
  sl_loops_config_t *c = &gs->loop_cfg;
  double v;
  int got;
  /* Stricter than the kernel's defaults: a loop must span 32 tokens and 4
   * periods, and periods may differ by a fifth, so lists and tables
   * (rows that share their frame, not their cells) are not loops. */
  c->window = 512;
  c->min_repeats = 4;
  c->min_length = 32;
  c->max_dist_ratio = 0.2;
  if ((got = sl__num(x, o, "window", path, 8, 1 << 16, 1, &v)) < 0) return got;
  if (got) c->window = (uint32_t)v;
  if ((got = sl__num(x, o, "min_period", path, 1, 1 << 16, 1, &v)) < 0) return got;
  if (got) c->min_period = (uint32_t)v;
  if ((got = sl__num(x, o, "max_period", path, 1, 1 << 16, 1, &v)) < 0) return got;
  if (got) c->max_period = (uint32_t)v;
  if ((got = sl__num(x, o, "min_repeats", path, 2, 1 << 16, 1, &v)) < 0) return got;
  if (got) c->min_repeats = (uint32_t)v;
  if ((got = sl__num(x, o, "min_length", path, 1, 1 << 16, 1, &v)) < 0) return got;
  if (got) c->min_length = (uint32_t)v;
  if ((got = sl__num(x, o, "max_dist_ratio", path, 0, 1, 0, &v)) < 0) return got;
  if (got) c->max_dist_ratio = v;
  gs->loop_batch = 8;
  if ((got = sl__num(x, o, "batch", path, 1, 64, 1, &v)) < 0) return got;
  if (got) gs->loop_batch = (int)v;
  gs->loop_size = sl_loops_size(c);
  if (gs->loop_size == 0)
    return sl__bad(x, "%s: inconsistent settings (every period p needs repeats(p) * p + 2 <= window, "
                      "min_period <= max_period)", path);
  gs->loop_on = 1;
  return sl__action(x, o, path, 0, &gs->loop_action);
}

/* The proposition names a monitor may use besides its patterns. */
static const char *const sl__builtin[] = {"text", "reasoning", "tool_call", "finish", "gap", "ttft", NULL};

static int sl__ltl_one(sl__gctx_t *x, sl_guardset_t *gs, const cJSON *o, const char *path, char **pats,
                       size_t *plens, int *npats) {
  static const char *const keys[] = {"name", "formula", "patterns", "gap_ms", "ttft_ms", "action", NULL};
  SL__TRY(sl__keys(x, o, path, keys));
  sl_guard_ltl_t *m = &gs->ltl[gs->nltl];
  m->p_text = m->p_reasoning = m->p_tool = m->p_finish = m->p_gap = m->p_ttft = -1;
  const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
  if (!cJSON_IsString(name) || name->valuestring[0] == '\0' || strlen(name->valuestring) >= sizeof(m->name))
    return sl__bad(x, "%s.name: expected a non-empty string of at most %zu bytes", path, sizeof(m->name) - 1);
  for (const char *c = name->valuestring; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' ||
          *c == '-' || *c == '.'))
      return sl__bad(x, "%s.name: \"%s\" may hold only letters, digits, '_', '-' and '.'", path,
                     name->valuestring);
  for (int i = 0; i < gs->nltl; i++)
    if (strcmp(gs->ltl[i].name, name->valuestring) == 0)
      return sl__bad(x, "%s.name: \"%s\" is used twice", path, name->valuestring);
  snprintf(m->name, sizeof(m->name), "%s", name->valuestring);
  const cJSON *fs = cJSON_GetObjectItemCaseSensitive(o, "formula");
  if (!cJSON_IsString(fs)) return sl__bad(x, "%s.formula: expected a string", path);
  sl_ltl_error_t le = {0, NULL};
  int rc = sl_ltl_parse(fs->valuestring, strlen(fs->valuestring), &m->f, &le);
  if (rc != 0)
    return sl__bad(x, "%s.formula: column %zu: %s", path, le.column, le.msg ? le.msg : "does not parse");
  double v;
  int got;
  if ((got = sl__num(x, o, "gap_ms", path, 1, 86400000, 1, &v)) < 0) return got;
  if (got) m->gap_ms = (uint64_t)v;
  if ((got = sl__num(x, o, "ttft_ms", path, 1, 86400000, 1, &v)) < 0) return got;
  if (got) m->ttft_ms = (uint64_t)v;
  SL__TRY(sl__action(x, o, path, 0, &m->action));
  /* Patterns: {"name": "text" | ["text", ...]}. */
  const cJSON *ps = cJSON_GetObjectItemCaseSensitive(o, "patterns");
  const char *patnames[SL_GUARD_MAX_PATTERNS];
  int npn = 0;
  if (ps != NULL) {
    if (!cJSON_IsObject(ps)) return sl__bad(x, "%s.patterns: expected an object of name: strings", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, ps) {
      for (int b = 0; sl__builtin[b]; b++)
        if (strcmp(sl__builtin[b], it->string) == 0)
          return sl__bad(x, "%s.patterns.%s: the name of a built-in proposition", path, it->string);
      char pp[200];
      snprintf(pp, sizeof(pp), "%s.patterns.%s", path, it->string);
      int before = *npats;
      if (cJSON_IsString(it)) {
        cJSON *arr = cJSON_CreateArray();
        cJSON_AddItemToArray(arr, cJSON_CreateString(it->valuestring));
        rc = sl__strings(x, arr, pp, 1024, pats, plens, npats, SL_GUARD_MAX_PATTERNS);
        cJSON_Delete(arr);
      } else {
        rc = sl__strings(x, it, pp, 1024, pats, plens, npats, SL_GUARD_MAX_PATTERNS);
      }
      if (rc < 0) return rc;
      int bit = sl_ltl_prop_index(m->f, it->string, strlen(it->string));
      if (bit < 0) return sl__bad(x, "%s: the formula does not use \"%s\"", pp, it->string);
      for (int k = before; k < *npats; k++) {
        gs->pat_ltl[k] = (uint8_t)gs->nltl;
        gs->pat_bit[k] = (uint8_t)bit;
      }
      if (npn < SL_GUARD_MAX_PATTERNS) patnames[npn++] = it->string;
    }
  }
  /* Every proposition must be a built-in or a pattern. */
  size_t np = sl_ltl_prop_count(m->f);
  for (size_t i = 0; i < np; i++) {
    const char *pn = sl_ltl_prop_name(m->f, i);
    int *slot = NULL;
    if (strcmp(pn, "text") == 0) slot = &m->p_text;
    else if (strcmp(pn, "reasoning") == 0) slot = &m->p_reasoning;
    else if (strcmp(pn, "tool_call") == 0) slot = &m->p_tool;
    else if (strcmp(pn, "finish") == 0) slot = &m->p_finish;
    else if (strcmp(pn, "gap") == 0) slot = &m->p_gap;
    else if (strcmp(pn, "ttft") == 0) slot = &m->p_ttft;
    if (slot) {
      *slot = (int)i;
      continue;
    }
    int found = 0;
    for (int k = 0; k < npn && !found; k++) found = strcmp(patnames[k], pn) == 0;
    if (!found)
      return sl__bad(x, "%s.formula: unknown proposition \"%s\" (known: text, reasoning, tool_call, finish, "
                        "gap, ttft and the names in \"patterns\")", path, pn);
  }
  if (m->p_gap >= 0 && m->gap_ms == 0) return sl__bad(x, "%s.gap_ms: required when the formula uses gap", path);
  if (m->p_ttft >= 0 && m->ttft_ms == 0)
    return sl__bad(x, "%s.ttft_ms: required when the formula uses ttft", path);
  if (m->p_gap < 0) m->gap_ms = 0;
  if (m->p_ttft < 0) m->ttft_ms = 0;
  sl_ltl_error_t ce = {0, NULL};
  if (sl_ltl_compile_opts(m->f, NULL, &ce) != 0)
    return sl__bad(x, "%s.formula: %s", path, ce.msg ? ce.msg : "cannot be compiled");
  char canon[1024];
  size_t clen = 0;
  if (sl_ltl_print(m->f, canon, sizeof(canon), &clen) == 0) m->formula = sl_strndup(canon, clen);
  else m->formula = sl_strndup(fs->valuestring, strlen(fs->valuestring));
  gs->nltl++;
  return 0;
}

static int sl__ltl(sl__gctx_t *x, sl_guardset_t *gs, const cJSON *arr, const char *path) {
  if (!cJSON_IsArray(arr)) return sl__bad(x, "%s: expected an array of monitors", path);
  char *pats[SL_GUARD_MAX_PATTERNS];
  size_t lens[SL_GUARD_MAX_PATTERNS];
  int npats = 0, rc = 0, i = 0;
  const cJSON *o;
  cJSON_ArrayForEach(o, arr) {
    char p[160];
    if (snprintf(p, sizeof(p), "%s[%d]", path, i++) >= (int)sizeof(p)) {
      rc = sl__bad(x, "%s: path too long", path);
      break;
    }
    if (gs->nltl == SL_GUARD_MAX_LTL) {
      rc = sl__bad(x, "%s: more than %d monitors", path, SL_GUARD_MAX_LTL);
      break;
    }
    if ((rc = sl__ltl_one(x, gs, o, p, pats, lens, &npats)) < 0) {
      /* The monitor being built is not counted yet: free it here. */
      sl_ltl_free(gs->ltl[gs->nltl].f);
      sl_free(gs->ltl[gs->nltl].formula);
      memset(&gs->ltl[gs->nltl], 0, sizeof(gs->ltl[0]));
      break;
    }
  }
  if (rc == 0) rc = sl__ac(x, path, pats, lens, npats, &gs->pat_ac);
  for (int k = 0; k < npats; k++) sl_free(pats[k]);
  return rc;
}

void sl_guardset_free(sl_guardset_t *gs) {
  if (gs == NULL) return;
  for (int i = 0; i < gs->nstops; i++) sl_free(gs->stops[i]);
  sl_free(gs->stop_ac);
  sl_free(gs->redact_ac);
  sl_free(gs->rx);
  sl_free(gs->pat_ac);
  for (int i = 0; i < gs->nltl; i++) {
    sl_ltl_free(gs->ltl[i].f);
    sl_free(gs->ltl[i].formula);
  }
  sl_free(gs);
}

int sl_guardset_build(const cJSON *obj, const char *path, const char *const *secrets, sl_guardset_t **out,
                      char *err, size_t errlen) {
  static const char *const keys[] = {"stop", "redact", "budget", "loop", "ltl", NULL};
  sl__gctx_t x = {err, errlen};
  *out = NULL;
  if (obj == NULL || cJSON_IsNull(obj)) return 0;
  SL__TRY(sl__keys(&x, obj, path, keys));
  sl_guardset_t *gs = sl_calloc(1, sizeof(*gs));
  gs->client_stop = 1;
  memcpy(gs->mask, "[REDACTED]", 11);
  gs->mask_len = 10;
  gs->redact_action = SL_GACT_REPLACE;
  sl_loops_config_default(&gs->loop_cfg);
  char p[160];
  const cJSON *v;
  int rc = 0;
  if (rc == 0 && (v = cJSON_GetObjectItemCaseSensitive(obj, "stop")) != NULL) {
    snprintf(p, sizeof(p), "%s.stop", path);
    rc = sl__stop(&x, gs, v, p);
  }
  if (rc == 0 && (v = cJSON_GetObjectItemCaseSensitive(obj, "redact")) != NULL) {
    snprintf(p, sizeof(p), "%s.redact", path);
    rc = sl__redact(&x, gs, v, p, secrets);
  }
  if (rc == 0 && (v = cJSON_GetObjectItemCaseSensitive(obj, "budget")) != NULL) {
    snprintf(p, sizeof(p), "%s.budget", path);
    rc = sl__budget(&x, gs, v, p);
  }
  if (rc == 0 && (v = cJSON_GetObjectItemCaseSensitive(obj, "loop")) != NULL) {
    snprintf(p, sizeof(p), "%s.loop", path);
    rc = sl__loop(&x, gs, v, p);
  }
  if (rc == 0 && (v = cJSON_GetObjectItemCaseSensitive(obj, "ltl")) != NULL) {
    snprintf(p, sizeof(p), "%s.ltl", path);
    rc = sl__ltl(&x, gs, v, p);
  }
  if (rc < 0) {
    sl_guardset_free(gs);
    return rc;
  }
  *out = gs;
  return 0;
}

int sl_guardset_build_json(const char *json, const char *path, const char *const *secrets,
                           sl_guardset_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (json == NULL) return 0;
  cJSON *o = cJSON_Parse(json);
  if (o == NULL) {
    snprintf(err, errlen, "%s: not valid JSON", path);
    return SL_EINVAL;
  }
  int rc = sl_guardset_build(o, path, secrets, out, err, errlen);
  cJSON_Delete(o);
  return rc;
}

/* ---- merging a tenant's guards into a pool's ---- */

/* Appends the items of array `from` to dst[key] (made when missing),
 * skipping strings dst already holds when unique is set. */
static void sl__append(cJSON *dst, const char *key, const cJSON *from, int unique) {
  if (!cJSON_IsArray(from)) return;
  cJSON *to = cJSON_GetObjectItemCaseSensitive(dst, key);
  if (!cJSON_IsArray(to)) {
    cJSON_DeleteItemFromObjectCaseSensitive(dst, key);
    to = cJSON_AddArrayToObject(dst, key);
  }
  const cJSON *it;
  cJSON_ArrayForEach(it, from) {
    int dup = 0;
    if (unique && cJSON_IsString(it)) {
      const cJSON *have;
      cJSON_ArrayForEach(have, to) if (cJSON_IsString(have) && strcmp(have->valuestring, it->valuestring) == 0) dup = 1;
    }
    if (!dup) cJSON_AddItemToArray(to, cJSON_Duplicate(it, 1));
  }
}

/* Sets dst[key] to true when add[key] is true. */
static void sl__or_bool(cJSON *dst, const cJSON *add, const char *key) {
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(add, key);
  if (!cJSON_IsTrue(a)) return;
  cJSON_DeleteItemFromObjectCaseSensitive(dst, key);
  cJSON_AddTrueToObject(dst, key);
}

cJSON *sl_guards_merge(const cJSON *base, const cJSON *add) {
  cJSON *out = cJSON_IsObject(base) ? cJSON_Duplicate(base, 1) : cJSON_CreateObject();
  if (!cJSON_IsObject(add)) return out;
  const cJSON *a;
  cJSON_ArrayForEach(a, add) {
    cJSON *have = cJSON_GetObjectItemCaseSensitive(out, a->string);
    if (have == NULL) { /* a kind the operator did not configure: the tenant's, whole */
      cJSON_AddItemToObject(out, a->string, cJSON_Duplicate(a, 1));
      continue;
    }
    /* A kind the operator configured keeps the operator's action, mask
     * and settings; the tenant's strings and classes are added to it. */
    if (strcmp(a->string, "stop") == 0) {
      sl__append(have, "strings", cJSON_GetObjectItemCaseSensitive(a, "strings"), 1);
      sl__or_bool(have, a, "client");
    } else if (strcmp(a->string, "redact") == 0) {
      sl__append(have, "literals", cJSON_GetObjectItemCaseSensitive(a, "literals"), 1);
      sl__append(have, "classes", cJSON_GetObjectItemCaseSensitive(a, "classes"), 1);
      sl__or_bool(have, a, "secrets");
    } else if (strcmp(a->string, "budget") == 0) {
      const cJSON *n = cJSON_GetObjectItemCaseSensitive(a, "max_completion_tokens");
      const cJSON *m = cJSON_GetObjectItemCaseSensitive(have, "max_completion_tokens");
      if (cJSON_IsNumber(n) && (!cJSON_IsNumber(m) || n->valuedouble < m->valuedouble)) {
        cJSON_DeleteItemFromObjectCaseSensitive(have, "max_completion_tokens");
        cJSON_AddNumberToObject(have, "max_completion_tokens", n->valuedouble);
      }
    } else if (strcmp(a->string, "ltl") == 0) {
      if (cJSON_IsArray(have)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, a) cJSON_AddItemToArray(have, cJSON_Duplicate(it, 1));
      }
    }
    /* "loop": the operator's detector stands as configured. */
  }
  return out;
}
