/* prom_parse.c: the Prometheus text format reader (see prom_parse.h). */
#include "runtime/base/prom_parse.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"

/* ---- parsing ---- */

typedef struct {
  sl_prom_t *p;
  int line;
  char *err;
  size_t errcap;
} sl__pp_t;

static int sl__name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int sl__name_char(char c) { return sl__name_start(c) || (c >= '0' && c <= '9'); }
static int sl__ws(char c) { return c == ' ' || c == '\t'; }

static int sl__fail(sl__pp_t *pp, const char *what, char c) {
  if (c == '\0' || c == '\n')
    snprintf(pp->err, pp->errcap, "line %d: %s, found the end of the line", pp->line, what);
  else if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
    snprintf(pp->err, pp->errcap, "line %d: %s, found byte 0x%02x", pp->line, what, (unsigned char)c);
  else
    snprintf(pp->err, pp->errcap, "line %d: %s, found '%c'", pp->line, what, c);
  return SL_EPARSE;
}

static char *sl__skip_ws(char *q, const char *end) {
  while (q < end && sl__ws(*q)) q++;
  return q;
}

static void sl__push_label(sl_prom_t *p, const char *name, const char *value) {
  if (p->nlabels == p->labels_cap) {
    p->labels_cap = p->labels_cap ? p->labels_cap * 2 : 256;
    p->labels = sl_realloc(p->labels, (size_t)p->labels_cap * sizeof(*p->labels));
  }
  p->labels[p->nlabels++] = (sl_prom_label_t){name, value};
}

/* One label value after its opening quote, unescaped in place (it only
 * shrinks).  Returns the position after the closing quote, or NULL. */
static char *sl__label_value(sl__pp_t *pp, char *q, const char *end, const char *name) {
  char *w = q, *start = q;
  while (q < end && *q != '"') {
    char c = *q++;
    if (c == '\\') {
      char e = q < end ? *q++ : '\0';
      if (e == '\\' || e == '"') c = e;
      else if (e == 'n') c = '\n';
      else {
        char what[160];
        snprintf(what, sizeof(what), "unknown escape in the value of label \"%s\" (\\\\, \\\" and \\n are allowed)", name);
        sl__fail(pp, what, e);
        return NULL;
      }
    }
    *w++ = c;
  }
  if (q >= end) {
    snprintf(pp->err, pp->errcap, "line %d: the value of label \"%s\" has no closing quote", pp->line, name);
    return NULL;
  }
  *w = '\0';
  sl__push_label(pp->p, name, start);
  return q + 1;
}

/* The {...} after a metric name (q just past the '{').  Returns the
 * position after the '}', or NULL. */
static char *sl__labels(sl__pp_t *pp, char *q, const char *end) {
  for (;;) {
    q = sl__skip_ws(q, end);
    if (q < end && *q == '}') return q + 1;
    if (q >= end || !sl__name_start(*q)) {
      sl__fail(pp, "expected a label name or '}'", q < end ? *q : '\0');
      return NULL;
    }
    char *name = q;
    while (q < end && sl__name_char(*q)) q++;
    char *name_end = q;
    q = sl__skip_ws(q, end);
    if (q >= end || *q != '=') {
      sl__fail(pp, "expected '=' after a label name", q < end ? *q : '\0');
      return NULL;
    }
    *name_end = '\0';
    q = sl__skip_ws(q + 1, end);
    if (q >= end || *q != '"') {
      sl__fail(pp, "expected '\"' to open a label value", q < end ? *q : '\0');
      return NULL;
    }
    q = sl__label_value(pp, q + 1, end, name);
    if (q == NULL) return NULL;
    q = sl__skip_ws(q, end);
    if (q < end && *q == ',') {
      q++;
      continue;
    }
    if (q < end && *q == '}') return q + 1;
    sl__fail(pp, "expected ',' or '}' after a label value", q < end ? *q : '\0');
    return NULL;
  }
}

/* A number token at q..end: the value, or the optional timestamp. */
static char *sl__token(char *q, const char *end, char **tok) {
  *tok = q;
  while (q < end && !sl__ws(*q)) q++;
  return q;
}

/* One sample line, line[0..end) (end is at its '\n' or the text's NUL). */
static int sl__sample_line(sl__pp_t *pp, char *q, char *end) {
  sl_prom_t *p = pp->p;
  if (!sl__name_start(*q) && *q != ':') return sl__fail(pp, "expected a metric name", *q);
  char *name = q;
  while (q < end && (sl__name_char(*q) || *q == ':')) q++;
  char *name_end = q;
  int label0 = p->nlabels;
  char *r = sl__skip_ws(q, end); /* blanks may stand between the name and its '{' */
  if (r < end && *r == '{') {
    q = sl__labels(pp, r + 1, end);
    if (q == NULL) return SL_EPARSE;
  } else if (r > q) {
    q = r;
  } else {
    return sl__fail(pp, "expected '{', or a space and the value, after the metric name", q < end ? *q : '\0');
  }
  /* q is past the name's end now, so ending the name there hides nothing
   * still to be read. */
  *name_end = '\0';
  q = sl__skip_ws(q, end);
  char *tok;
  q = sl__token(q, end, &tok);
  if (q == tok) return sl__fail(pp, "expected a value", q < end ? *q : '\0');
  char saved = *q;
  *q = '\0';
  char *num_end;
  double v = strtod(tok, &num_end);
  if (*num_end != '\0') {
    snprintf(pp->err, pp->errcap, "line %d: the value \"%.40s\" of %s is not a number", pp->line, tok, name);
    return SL_EPARSE;
  }
  *q = saved;
  q = sl__skip_ws(q, end);
  if (q < end) {
    q = sl__token(q, end, &tok);
    saved = *q;
    *q = '\0';
    strtoll(tok, &num_end, 10);
    if (*num_end != '\0') {
      snprintf(pp->err, pp->errcap, "line %d: the timestamp \"%.40s\" of %s is not an integer", pp->line, tok, name);
      return SL_EPARSE;
    }
    *q = saved;
    q = sl__skip_ws(q, end);
    if (q < end) return sl__fail(pp, "expected the end of the line after the timestamp", *q);
  }
  if (p->n == p->cap) {
    p->cap = p->cap ? p->cap * 2 : 256;
    p->s = sl_realloc(p->s, (size_t)p->cap * sizeof(*p->s));
  }
  p->s[p->n++] = (sl_prom_sample_t){name, label0, p->nlabels - label0, v, p->nfam - 1};
  return 0;
}

/* A comment line (q at its '#', end at its end, which may be written):
 * "# HELP name text" and "# TYPE name type" open or complete a family;
 * any other comment is skipped. */
static void sl__comment(sl_prom_t *p, char *q, char *end) {
  q = sl__skip_ws(q + 1, end);
  int help = end - q > 5 && memcmp(q, "HELP", 4) == 0 && sl__ws(q[4]);
  int type = end - q > 5 && memcmp(q, "TYPE", 4) == 0 && sl__ws(q[4]);
  if (!help && !type) return;
  char *name = sl__skip_ws(q + 4, end), *name_end = name;
  while (name_end < end && !sl__ws(*name_end)) name_end++;
  if (name_end == name) return;
  char *rest = sl__skip_ws(name_end, end);
  *name_end = '\0';
  *end = '\0';
  if (p->nfam == 0 || strcmp(p->fam[p->nfam - 1].name, name) != 0) {
    if (p->nfam == p->fam_cap) {
      p->fam_cap = p->fam_cap ? p->fam_cap * 2 : 64;
      p->fam = sl_realloc(p->fam, (size_t)p->fam_cap * sizeof(*p->fam));
    }
    p->fam[p->nfam++] = (sl_prom_family_t){name, NULL, NULL};
  }
  if (help) p->fam[p->nfam - 1].help = rest;
  else p->fam[p->nfam - 1].type = rest;
}

int sl_prom_parse(const char *text, size_t len, sl_prom_t *p, char *err, size_t errcap) {
  memset(p, 0, sizeof(*p));
  p->text = sl_malloc(len + 1);
  memcpy(p->text, text, len);
  p->text[len] = '\0';
  sl__pp_t pp = {p, 0, err, errcap};
  char *line = p->text, *text_end = p->text + len;
  while (line < text_end) {
    pp.line++;
    char *nl = memchr(line, '\n', (size_t)(text_end - line));
    char *end = nl ? nl : text_end;
    char *next = nl ? nl + 1 : text_end;
    /* A CRLF line ends at its CR: the format says LF, but a file written
     * on Windows should read the same. */
    if (end > line && end[-1] == '\r') end--;
    char *q = sl__skip_ws(line, end);
    if (q < end && *q == '#') {
      sl__comment(p, q, end);
    } else if (q < end) {
      int rc = sl__sample_line(&pp, q, end);
      if (rc < 0) {
        sl_prom_free(p);
        return rc;
      }
    }
    line = next;
  }
  return 0;
}

void sl_prom_free(sl_prom_t *p) {
  sl_free(p->text);
  sl_free(p->s);
  sl_free(p->labels);
  sl_free(p->fam);
  memset(p, 0, sizeof(*p));
}

/* ---- lookups ---- */

const char *sl_prom_label(const sl_prom_t *p, const sl_prom_sample_t *s, const char *key) {
  for (int i = 0; i < s->nlabels; i++)
    if (strcmp(p->labels[s->label0 + i].name, key) == 0) return p->labels[s->label0 + i].value;
  return NULL;
}

int sl_prom_labels_are(const sl_prom_t *p, const sl_prom_sample_t *s, const char *const *labels,
                          const char *skip) {
  int want = 0;
  while (labels && labels[want]) want += 2;
  int have = s->nlabels;
  if (skip && sl_prom_label(p, s, skip)) have--;
  if (have != want / 2) return 0;
  for (int i = 0; i < want; i += 2) {
    const char *v = sl_prom_label(p, s, labels[i]);
    if (v == NULL || strcmp(v, labels[i + 1]) != 0) return 0;
  }
  return 1;
}

const sl_prom_sample_t *sl_prom_find(const sl_prom_t *p, const char *name, const char *const *labels) {
  for (int i = 0; i < p->n; i++)
    if (strcmp(p->s[i].name, name) == 0 && sl_prom_labels_are(p, &p->s[i], labels, NULL)) return &p->s[i];
  return NULL;
}

double sl_prom_value(const sl_prom_t *p, const char *name, const char *const *labels) {
  const sl_prom_sample_t *s = sl_prom_find(p, name, labels);
  return s ? s->value : NAN;
}

