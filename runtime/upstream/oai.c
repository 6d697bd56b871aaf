/* oai.c: OpenAI stream schema scanner and encoder, JSON string helpers
 * (see oai.h).
 *
 * The scanner is a recursive-descent JSON validator over a cursor.  Where
 * the path leads to a field the event needs (choices[0].delta.content,
 * usage.total_tokens, ...), a specialized loop records the value's span;
 * everywhere else the generic skipper only validates.  Nothing is copied
 * except object keys that contain escapes, which are decoded into a small
 * stack buffer so that "conten\u0074" still means content.
 *
 * The request text check has its own walker, as lenient as cJSON (which
 * stays the judge of a request's JSON syntax) but reading every string; the
 * duplicate-key check and the prompt size work on the cJSON tree the
 * gateway and the simulated engine parse anyway. */
#include "runtime/upstream/oai.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"

/* Deeper nesting than this is refused; chunks are about 6 levels deep. */
#define SL__OAI_MAX_DEPTH 128

typedef struct {
  const char *p; /* next byte */
  const char *e; /* end of input */
  int depth;     /* open containers */
} sl__jc_t;

/* ---- lexical layer ---------------------------------------------------- */

static inline void sl__ws(sl__jc_t *c) {
  const char *p = c->p, *e = c->e;
  while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  c->p = p;
}

static inline int sl__hexval(unsigned char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  ch |= 0x20;
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  return -1;
}

static inline int sl__isdigit(char ch) { return ch >= '0' && ch <= '9'; }

#define SL__ONES 0x0101010101010101ULL
#define SL__HIGHS 0x8080808080808080ULL

/* Nonzero if a byte of v is zero / is below 0x20 (exact as a whole-word
 * test, which is all it is used for). */
static inline uint64_t sl__has_zero(uint64_t v) { return (v - SL__ONES) & ~v & SL__HIGHS; }
static inline uint64_t sl__has_ctl(uint64_t v) { return (v - SL__ONES * 0x20) & ~v & SL__HIGHS; }

/* c->p is at an opening quote.  Validates the string, sets *out to its
 * contents and *esc to whether it holds a backslash, and moves past the
 * closing quote.  Plain runs are checked eight bytes at a time. */
static int sl__str(sl__jc_t *c, sl_span_t *out, int *esc) {
  const char *p = c->p + 1, *e = c->e, *s = p;
  int has_esc = 0;
  for (;;) {
    while (e - p >= 8) {
      uint64_t v;
      memcpy(&v, p, 8);
      uint64_t m = sl__has_zero(v ^ (SL__ONES * '"')) | sl__has_zero(v ^ (SL__ONES * '\\')) | sl__has_ctl(v);
      if (m != 0) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* The lowest flagged byte is exact (no borrow reaches it from
         * below), so jump straight to the first special byte. */
        p += __builtin_ctzll(m) >> 3;
#endif
        break;
      }
      p += 8;
    }
    if (p >= e) return SL_EPARSE;
    unsigned char ch = (unsigned char)*p;
    if (ch == '"') break;
    if (ch == '\\') {
      has_esc = 1;
      if (e - p < 2) return SL_EPARSE;
      switch (p[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
          p += 2;
          continue;
        case 'u':
          if (e - p < 6 || sl__hexval((unsigned char)p[2]) < 0 || sl__hexval((unsigned char)p[3]) < 0 ||
              sl__hexval((unsigned char)p[4]) < 0 || sl__hexval((unsigned char)p[5]) < 0)
            return SL_EPARSE;
          p += 6;
          continue;
        default:
          return SL_EPARSE;
      }
    }
    if (ch < 0x20) return SL_EPARSE;
    p++;
  }
  out->p = s;
  out->n = (size_t)(p - s);
  if (esc != NULL) *esc = has_esc;
  c->p = p + 1;
  return 0;
}

/* c->p is at '-' or a digit.  RFC 8259 number grammar. */
static int sl__num(sl__jc_t *c, sl_span_t *out) {
  const char *p = c->p, *e = c->e, *s = p;
  if (p < e && *p == '-') p++;
  if (p >= e) return SL_EPARSE;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (p < e && sl__isdigit(*p)) p++;
  } else {
    return SL_EPARSE;
  }
  if (p < e && *p == '.') {
    p++;
    if (p >= e || !sl__isdigit(*p)) return SL_EPARSE;
    while (p < e && sl__isdigit(*p)) p++;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < e && (*p == '+' || *p == '-')) p++;
    if (p >= e || !sl__isdigit(*p)) return SL_EPARSE;
    while (p < e && sl__isdigit(*p)) p++;
  }
  out->p = s;
  out->n = (size_t)(p - s);
  c->p = p;
  return 0;
}

static int sl__lit(sl__jc_t *c, const char *lit, size_t n) {
  if ((size_t)(c->e - c->p) < n || memcmp(c->p, lit, n) != 0) return SL_EPARSE;
  c->p += n;
  return 0;
}

/* A validated number literal as int64: integers exactly (saturating), a
 * fraction or exponent truncated toward zero.  Computed by hand rather than
 * with strtod, which depends on the process locale. */
static int64_t sl__num_i64(sl_span_t s) {
  const char *p = s.p, *e = s.p + s.n;
  int neg = 0;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  uint64_t v = 0;
  int over = 0;
  while (p < e && sl__isdigit(*p)) {
    unsigned d = (unsigned)(*p - '0');
    if (v > (UINT64_MAX - d) / 10) over = 1;
    else v = v * 10 + d;
    p++;
  }
  if (p == e && !over) {
    if (neg) return v > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)v;
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
  }
  /* Rare: 12.0, 1e3, or a huge integer.  Double precision is plenty. */
  double d = 0;
  p = s.p + neg;
  while (p < e && sl__isdigit(*p)) d = d * 10 + (*p++ - '0');
  double scale = 1;
  if (p < e && *p == '.') {
    p++;
    while (p < e && sl__isdigit(*p)) {
      scale /= 10;
      d += (*p++ - '0') * scale;
    }
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    int eneg = 0, ex = 0;
    if (*p == '+' || *p == '-') eneg = *p++ == '-';
    while (p < e && sl__isdigit(*p)) {
      if (ex < 1000) ex = ex * 10 + (*p - '0');
      p++;
    }
    for (int i = 0; i < ex && d != 0 && d < 1e300; i++) d = eneg ? d / 10 : d * 10;
  }
  if (d >= 9.2233720368547758e18) return neg ? INT64_MIN : INT64_MAX;
  return neg ? -(int64_t)d : (int64_t)d;
}

/* ---- structure layer -------------------------------------------------- */

static int sl__open(sl__jc_t *c) {
  if (++c->depth > SL__OAI_MAX_DEPTH) return SL_EPARSE;
  c->p++;
  return 0;
}

/* The step shared by objects and arrays: 0 after consuming the closing
 * `close`, 1 with c->p at the next member (past its ',' unless it is the
 * first), or SL_EPARSE. */
static int sl__next_member(sl__jc_t *c, int *first, char close) {
  sl__ws(c);
  if (c->p >= c->e) return SL_EPARSE;
  if (*c->p == close) {
    c->p++;
    c->depth--;
    return 0;
  }
  if (!*first) {
    if (*c->p != ',') return SL_EPARSE;
    c->p++;
    sl__ws(c);
    if (c->p >= c->e) return SL_EPARSE;
  }
  *first = 0;
  return 1;
}

/* Iterates an object opened with sl__open.  Returns 1 with the key set and
 * c->p at the (non-blank) value, 0 after consuming the closing brace, or
 * SL_EPARSE. */
static int sl__obj_next(sl__jc_t *c, int *first, sl_span_t *key, int *kesc) {
  int r = sl__next_member(c, first, '}');
  if (r <= 0) return r;
  if (*c->p != '"' || sl__str(c, key, kesc) < 0) return SL_EPARSE;
  sl__ws(c);
  if (c->p >= c->e || *c->p != ':') return SL_EPARSE;
  c->p++;
  sl__ws(c);
  return c->p < c->e ? 1 : SL_EPARSE;
}

/* Iterates an array opened with sl__open: 1 with c->p at the next element,
 * 0 after the closing bracket, or SL_EPARSE. */
static int sl__arr_next(sl__jc_t *c, int *first) { return sl__next_member(c, first, ']'); }

/* Validates and skips one value; c->p is at its first byte. */
static int sl__skip(sl__jc_t *c) {
  sl_span_t s;
  int r, first = 1;
  switch (*c->p) {
    case '"':
      return sl__str(c, &s, NULL);
    case '{':
      if (sl__open(c) < 0) return SL_EPARSE;
      while ((r = sl__obj_next(c, &first, &s, NULL)) > 0)
        if ((r = sl__skip(c)) < 0) return r;
      return r;
    case '[':
      if (sl__open(c) < 0) return SL_EPARSE;
      while ((r = sl__arr_next(c, &first)) > 0)
        if ((r = sl__skip(c)) < 0) return r;
      return r;
    case 't':
      return sl__lit(c, "true", 4);
    case 'f':
      return sl__lit(c, "false", 5);
    case 'n':
      return sl__lit(c, "null", 4);
    default:
      if (*c->p == '-' || sl__isdigit(*c->p)) return sl__num(c, &s);
      return SL_EPARSE;
  }
}

/* A key, decoded only if it holds escapes. */
typedef struct {
  const char *p;
  size_t n;
  char tmp[32];
} sl__key_t;

static void sl__key(sl__key_t *k, sl_span_t s, int esc) {
  if (!esc) {
    k->p = s.p;
    k->n = s.n;
    return;
  }
  size_t m = sl_json_unescape(k->tmp, sizeof(k->tmp), s.p, s.n);
  k->p = k->tmp;
  k->n = m == (size_t)-1 ? 0 : m; /* too long to be a key we know */
}

#define SL__IS(k, lit) ((k).n == sizeof(lit) - 1 && memcmp((k).p, lit, sizeof(lit) - 1) == 0)

/* A string value sets *out (and *has); any other value, null included, is
 * skipped and clears them. */
static int sl__get_str(sl__jc_t *c, sl_span_t *out, int *has, int *esc) {
  if (*c->p == '"') {
    if (sl__str(c, out, esc) < 0) return SL_EPARSE;
    if (has != NULL) *has = 1;
    return 0;
  }
  out->p = NULL;
  out->n = 0;
  if (has != NULL) *has = 0;
  return sl__skip(c);
}

/* A number value sets *out (and *has); any other value is skipped. */
static int sl__get_int(sl__jc_t *c, int64_t *out, int *has) {
  if (*c->p == '-' || sl__isdigit(*c->p)) {
    sl_span_t s;
    if (sl__num(c, &s) < 0) return SL_EPARSE;
    *out = sl__num_i64(s);
    if (has != NULL) *has = 1;
    return 0;
  }
  *out = 0;
  if (has != NULL) *has = 0;
  return sl__skip(c);
}

static int sl__clamp_int(int64_t v) {
  return v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int)v;
}

/* ---- schema layer ----------------------------------------------------- */

typedef struct {
  sl_event_t *ev;
  int has_content;           /* delta.content was a string */
  sl_span_t content;
  int has_legacy_text;       /* choices[0].text was a string */
  sl_span_t legacy_text;
  int has_reasoning_content; /* delta.reasoning_content was a string */
  sl_span_t reasoning_content;
  int err_truthy;            /* "error" is truthy */
  int err_is_str;            /* ... and a string */
  sl_span_t err_message, err_type, err_code, err_http;
  sl_span_t top_message, top_type, top_code, top_error_type; /* flat error forms */
} sl__scan_t;

static sl_finish_t sl__finish_of(const sl__key_t *k) {
  if (SL__IS(*k, "stop")) return SL_FINISH_STOP;
  if (SL__IS(*k, "length")) return SL_FINISH_LENGTH;
  if (SL__IS(*k, "tool_calls")) return SL_FINISH_TOOL_CALLS;
  if (SL__IS(*k, "content_filter")) return SL_FINISH_CONTENT_FILTER;
  if (SL__IS(*k, "function_call")) return SL_FINISH_FUNCTION_CALL;
  /* TGI passes its own reasons through (wire-formats.md section 4). */
  if (SL__IS(*k, "eos_token") || SL__IS(*k, "stop_sequence")) return SL_FINISH_STOP;
  return SL_FINISH_OTHER;
}

/* c->p at '{' of a tool_calls element. */
static int sl__scan_tool(sl__jc_t *c, sl_tool_delta_t *t) {
  sl_span_t ks;
  sl__key_t k;
  int r, kesc, first = 1;
  if (sl__open(c) < 0) return SL_EPARSE;
  while ((r = sl__obj_next(c, &first, &ks, &kesc)) > 0) {
    sl__key(&k, ks, kesc);
    if (SL__IS(k, "index")) {
      int64_t v;
      int has;
      if (sl__get_int(c, &v, &has) < 0) return SL_EPARSE;
      if (has) t->index = sl__clamp_int(v);
    } else if (SL__IS(k, "id")) {
      r = sl__get_str(c, &t->id, &t->has_id, NULL);
    } else if (SL__IS(k, "type")) {
      r = sl__get_str(c, &t->type, NULL, NULL);
    } else if (SL__IS(k, "function") && *c->p == '{') {
      int f1 = 1;
      if (sl__open(c) < 0) return SL_EPARSE;
      t->has_name = t->has_arguments = 0;
      while ((r = sl__obj_next(c, &f1, &ks, &kesc)) > 0) {
        sl__key(&k, ks, kesc);
        if (SL__IS(k, "name")) r = sl__get_str(c, &t->name, &t->has_name, NULL);
        else if (SL__IS(k, "arguments")) r = sl__get_str(c, &t->arguments, &t->has_arguments, NULL);
        else r = sl__skip(c);
        if (r < 0) return r;
      }
    } else {
      r = sl__skip(c);
    }
    if (r < 0) return r;
  }
  return r;
}

/* c->p at '[' of delta.tool_calls. */
static int sl__scan_tools(sl__jc_t *c, sl_event_t *ev) {
  int r, first = 1, pos = 0;
  ev->n_tool_calls = 0;
  ev->tool_calls_dropped = 0;
  if (sl__open(c) < 0) return SL_EPARSE;
  while ((r = sl__arr_next(c, &first)) > 0) {
    if (*c->p == '{' && ev->n_tool_calls < SL_EV_MAX_TOOL_CALLS) {
      sl_tool_delta_t *t = &ev->tool_calls[ev->n_tool_calls++];
      memset(t, 0, sizeof(*t));
      t->index = pos;
      r = sl__scan_tool(c, t);
    } else {
      if (*c->p == '{') ev->tool_calls_dropped++;
      r = sl__skip(c);
    }
    if (r < 0) return r;
    pos++;
  }
  return r;
}

/* c->p at '{' of choices[0].delta. */
static int sl__scan_delta(sl__jc_t *c, sl__scan_t *s) {
  sl_event_t *ev = s->ev;
  sl_span_t ks;
  sl__key_t k;
  int r, kesc, first = 1;
  if (sl__open(c) < 0) return SL_EPARSE;
  while ((r = sl__obj_next(c, &first, &ks, &kesc)) > 0) {
    sl__key(&k, ks, kesc);
    if (SL__IS(k, "content")) r = sl__get_str(c, &s->content, &s->has_content, NULL);
    else if (SL__IS(k, "role")) r = sl__get_str(c, &ev->role, &ev->has_role, NULL);
    else if (SL__IS(k, "reasoning")) r = sl__get_str(c, &ev->reasoning, &ev->has_reasoning, NULL);
    else if (SL__IS(k, "reasoning_content"))
      r = sl__get_str(c, &s->reasoning_content, &s->has_reasoning_content, NULL);
    else if (SL__IS(k, "tool_calls") && *c->p == '[') r = sl__scan_tools(c, ev);
    else r = sl__skip(c);
    if (r < 0) return r;
  }
  return r;
}

/* c->p at '[' of choices[0].token_ids (vLLM with return_token_ids).  Ids
 * are non-negative integers below 2^31 written without a fraction or an
 * exponent; an array holding anything else is still validated but gives
 * no ids, since a partial or rounded list would misnumber the tokens. */
static int sl__scan_token_ids(sl__jc_t *c, sl_event_t *ev) {
  int r, first = 1, ok = 1;
  ev->n_token_ids = ev->token_ids_dropped = 0;
  if (sl__open(c) < 0) return SL_EPARSE;
  while ((r = sl__arr_next(c, &first)) > 0) {
    if (!sl__isdigit(*c->p)) {
      ok = 0;
      if ((r = sl__skip(c)) < 0) return r;
      continue;
    }
    sl_span_t s;
    if (sl__num(c, &s) < 0) return SL_EPARSE;
    int integral = memchr(s.p, '.', s.n) == NULL && memchr(s.p, 'e', s.n) == NULL && memchr(s.p, 'E', s.n) == NULL;
    int64_t v = integral ? sl__num_i64(s) : -1;
    if (v < 0 || v > INT32_MAX) ok = 0;
    else if (ev->n_token_ids < SL_EV_MAX_TOKEN_IDS) ev->token_ids[ev->n_token_ids++] = (int32_t)v;
    else ev->token_ids_dropped++;
  }
  if (r < 0) return r;
  ev->has_token_ids = ok;
  if (!ok) ev->n_token_ids = ev->token_ids_dropped = 0;
  return 0;
}

/* c->p at '{' of choices[0]. */
static int sl__scan_choice(sl__jc_t *c, sl__scan_t *s) {
  sl_event_t *ev = s->ev;
  sl_span_t ks;
  sl__key_t k;
  int r, kesc, first = 1;
  if (sl__open(c) < 0) return SL_EPARSE;
  while ((r = sl__obj_next(c, &first, &ks, &kesc)) > 0) {
    sl__key(&k, ks, kesc);
    if (SL__IS(k, "delta")) {
      s->has_content = ev->has_role = ev->has_reasoning = s->has_reasoning_content = 0;
      ev->n_tool_calls = ev->tool_calls_dropped = 0;
      r = *c->p == '{' ? sl__scan_delta(c, s) : sl__skip(c);
    } else if (SL__IS(k, "index")) {
      int64_t v;
      r = sl__get_int(c, &v, NULL);
      ev->choice_index = sl__clamp_int(v);
    } else if (SL__IS(k, "text")) {
      r = sl__get_str(c, &s->legacy_text, &s->has_legacy_text, NULL);
    } else if (SL__IS(k, "finish_reason")) {
      int has, fesc;
      r = sl__get_str(c, &ev->finish_raw, &has, &fesc);
      if (r == 0) {
        sl__key_t f;
        sl__key(&f, ev->finish_raw, has ? fesc : 0);
        ev->finish = has ? sl__finish_of(&f) : SL_FINISH_NONE;
      }
    } else if (SL__IS(k, "logprobs")) {
      ev->has_logprobs = *c->p != 'n';
      r = sl__skip(c);
    } else if (SL__IS(k, "token_ids")) {
      ev->has_token_ids = ev->n_token_ids = ev->token_ids_dropped = 0;
      r = *c->p == '[' ? sl__scan_token_ids(c, ev) : sl__skip(c);
    } else {
      r = sl__skip(c);
    }
    if (r < 0) return r;
  }
  return r;
}

/* c->p at '[' of "choices". */
static int sl__scan_choices(sl__jc_t *c, sl__scan_t *s) {
  sl_event_t *ev = s->ev;
  int r, first = 1, n = 0;
  if (sl__open(c) < 0) return SL_EPARSE;
  while ((r = sl__arr_next(c, &first)) > 0) {
    if (n == 0 && *c->p == '{') r = sl__scan_choice(c, s);
    else r = sl__skip(c);
    if (r < 0) return r;
    n++;
  }
  ev->n_choices = n;
  return r;
}

/* c->p at '{' of "usage". */
static int sl__scan_usage(sl__jc_t *c, sl_event_t *ev) {
  sl_span_t ks;
  sl__key_t k;
  int r, kesc, first = 1;
  if (sl__open(c) < 0) return SL_EPARSE;
  while ((r = sl__obj_next(c, &first, &ks, &kesc)) > 0) {
    sl__key(&k, ks, kesc);
    if (SL__IS(k, "prompt_tokens")) r = sl__get_int(c, &ev->prompt_tokens, NULL);
    else if (SL__IS(k, "completion_tokens")) r = sl__get_int(c, &ev->completion_tokens, NULL);
    else if (SL__IS(k, "total_tokens")) r = sl__get_int(c, &ev->total_tokens, NULL);
    else r = sl__skip(c);
    if (r < 0) return r;
  }
  return r;
}

/* Usage counts an engine sends are trusted only within [0,
 * SL_OAI_USAGE_MAX].  Saturating would report a made-up number as the
 * engine's; a count outside that range means the engine's accounting is
 * broken, so the whole usage object is treated as absent (usage_refused)
 * and the relay falls back to what it counted itself. */
static int sl__count_ok(int64_t v) { return v >= 0 && v <= SL_OAI_USAGE_MAX; }

static int sl__usage_ok(const sl_event_t *ev) {
  return sl__count_ok(ev->prompt_tokens) && sl__count_ok(ev->completion_tokens) && sl__count_ok(ev->total_tokens);
}

/* A number, a string's contents, or nothing, for error codes. */
static int sl__get_code(sl__jc_t *c, sl_span_t *out) {
  if (*c->p == '-' || sl__isdigit(*c->p)) return sl__num(c, out);
  return sl__get_str(c, out, NULL, NULL);
}

/* c->p at '{' of "error". */
static int sl__scan_error_obj(sl__jc_t *c, sl__scan_t *s) {
  sl_span_t ks;
  sl__key_t k;
  int r, kesc, first = 1;
  if (sl__open(c) < 0) return SL_EPARSE;
  while ((r = sl__obj_next(c, &first, &ks, &kesc)) > 0) {
    sl__key(&k, ks, kesc);
    if (SL__IS(k, "message")) r = sl__get_str(c, &s->err_message, NULL, NULL);
    else if (SL__IS(k, "type")) r = sl__get_str(c, &s->err_type, NULL, NULL);
    else if (SL__IS(k, "code")) r = sl__get_code(c, &s->err_code);
    else if (SL__IS(k, "http_status_code")) r = sl__get_code(c, &s->err_http);
    else r = sl__skip(c);
    if (r < 0) return r;
  }
  return r;
}

/* c->p at the value of the top-level "error". */
static int sl__scan_error(sl__jc_t *c, sl__scan_t *s) {
  static const sl_span_t none = {NULL, 0};
  s->err_truthy = s->err_is_str = 0;
  s->err_message = s->err_type = s->err_code = s->err_http = none;
  switch (*c->p) {
    case '"':
      if (sl__str(c, &s->err_message, NULL) < 0) return SL_EPARSE;
      s->err_truthy = s->err_message.n > 0;
      s->err_is_str = 1;
      return 0;
    case '{':
      s->err_truthy = 1;
      return sl__scan_error_obj(c, s);
    case '[':
    case 't':
      s->err_truthy = 1;
      return sl__skip(c);
    default:
      if (*c->p == '-' || sl__isdigit(*c->p)) {
        sl_span_t n;
        if (sl__num(c, &n) < 0) return SL_EPARSE;
        /* Truthy unless the mantissa is all zeros (0, -0, 0.0, 0e5). */
        for (size_t i = 0; i < n.n && n.p[i] != 'e' && n.p[i] != 'E'; i++)
          if (n.p[i] >= '1' && n.p[i] <= '9') s->err_truthy = 1;
        return 0;
      }
      return sl__skip(c);
  }
}

static int sl__is_done(const char *json, size_t len) {
  sl__jc_t c = {json, json + len, 0};
  sl__ws(&c);
  if (sl__lit(&c, "[DONE]", 6) < 0) return 0;
  sl__ws(&c);
  return c.p == c.e;
}

/* The scanner behind sl_oai_scan and sl_oai_scan_error. */
static int sl__oai_scan(const char *json, size_t len, sl_event_t *ev, int as_error) {
  /* Everything but the two arrays, whose entries past their counts are
   * left alone (event.h). */
  memset(ev, 0, offsetof(sl_event_t, tool_calls));
  memset(&ev->has_logprobs, 0, offsetof(sl_event_t, token_ids) - offsetof(sl_event_t, has_logprobs));
  ev->raw.p = json;
  ev->raw.n = len;
  ev->n_choices = -1;
  if (sl__is_done(json, len)) {
    ev->kind = SL_EV_DONE;
    return 0;
  }
  ev->kind = SL_EV_CHUNK;

  sl__scan_t s;
  memset(&s, 0, sizeof(s));
  s.ev = ev;
  sl__jc_t c = {json, json + len, 0};
  sl_span_t ks;
  sl__key_t k;
  int r, kesc, first = 1, object_is_error = 0;
  /* For usage_member: the end of the previous member's value, the usage
   * keys seen, and whether a leading usage member waits for the next key
   * (its span then runs up to that key, taking the comma after it). */
  const char *prev_end = NULL;
  int nusage = 0, usage_leads = 0;
  sl__ws(&c);
  if (c.p >= c.e || *c.p != '{' || sl__open(&c) < 0) return SL_EPARSE;
  while ((r = sl__obj_next(&c, &first, &ks, &kesc)) > 0) {
    const char *kstart = ks.p - 1; /* the key's opening quote */
    int is_usage = 0;
    if (usage_leads) {
      ev->usage_member.n = (size_t)(kstart - ev->usage_member.p);
      usage_leads = 0;
    }
    sl__key(&k, ks, kesc);
    if (SL__IS(k, "choices")) {
      ev->n_choices = -1;
      ev->choice_index = 0;
      ev->has_role = ev->has_reasoning = ev->has_logprobs = 0;
      ev->n_tool_calls = ev->tool_calls_dropped = 0;
      ev->has_token_ids = ev->n_token_ids = ev->token_ids_dropped = 0;
      ev->finish = SL_FINISH_NONE;
      ev->finish_raw.p = NULL;
      ev->finish_raw.n = 0;
      s.has_content = s.has_legacy_text = s.has_reasoning_content = 0;
      r = *c.p == '[' ? sl__scan_choices(&c, &s) : sl__skip(&c);
    } else if (SL__IS(k, "id")) {
      r = sl__get_str(&c, &ev->id, NULL, NULL);
    } else if (SL__IS(k, "object")) {
      int oesc;
      r = sl__get_str(&c, &ev->object, NULL, &oesc);
      if (r == 0) {
        sl__key_t o;
        sl__key(&o, ev->object, ev->object.p ? oesc : 0);
        object_is_error = ev->object.p != NULL && SL__IS(o, "error");
      }
    } else if (SL__IS(k, "model")) {
      r = sl__get_str(&c, &ev->model, NULL, NULL);
    } else if (SL__IS(k, "created")) {
      r = sl__get_int(&c, &ev->created, &ev->has_created);
    } else if (SL__IS(k, "usage")) {
      is_usage = 1;
      ev->prompt_tokens = ev->completion_tokens = ev->total_tokens = 0;
      ev->usage_refused = 0;
      ev->has_usage = *c.p == '{';
      r = ev->has_usage ? sl__scan_usage(&c, ev) : sl__skip(&c);
      if (r == 0 && ev->has_usage && !sl__usage_ok(ev)) {
        ev->has_usage = 0;
        ev->usage_refused = 1;
        ev->prompt_tokens = ev->completion_tokens = ev->total_tokens = 0;
      }
    } else if (SL__IS(k, "error")) {
      r = sl__scan_error(&c, &s);
    } else if (SL__IS(k, "error_type")) {
      r = sl__get_str(&c, &s.top_error_type, NULL, NULL);
    } else if (SL__IS(k, "message")) {
      r = sl__get_str(&c, &s.top_message, NULL, NULL);
    } else if (SL__IS(k, "type")) {
      r = sl__get_str(&c, &s.top_type, NULL, NULL);
    } else if (SL__IS(k, "code")) {
      r = sl__get_code(&c, &s.top_code);
    } else {
      r = sl__skip(&c);
    }
    if (r < 0) return r;
    if (is_usage) {
      /* A later member drops with the comma before it; a first one with
       * the comma after it, found at the next key. */
      nusage++;
      ev->usage_member.p = prev_end != NULL ? prev_end : kstart;
      ev->usage_member.n = (size_t)(c.p - ev->usage_member.p);
      usage_leads = prev_end == NULL;
    }
    prev_end = c.p;
  }
  if (r < 0) return r;
  sl__ws(&c);
  if (c.p != c.e) return SL_EPARSE;
  if (nusage != 1) {
    /* With duplicate keys the last one wins; cutting one would change
     * which that is, so none is offered for cutting. */
    ev->usage_member.p = NULL;
    ev->usage_member.n = 0;
  }

  if (s.has_content) {
    ev->has_text = 1;
    ev->text = s.content;
  } else if (s.has_legacy_text) {
    ev->has_text = 1;
    ev->text = s.legacy_text;
  }
  if (!ev->has_reasoning && s.has_reasoning_content) {
    ev->has_reasoning = 1;
    ev->reasoning = s.reasoning_content;
  }
  if (s.err_truthy) {
    ev->kind = SL_EV_ERROR;
    ev->err_message = s.err_message;
    if (s.err_is_str) {
      ev->err_type = s.top_error_type;
    } else {
      ev->err_type = s.err_type;
      ev->err_code = s.err_code.p != NULL ? s.err_code : s.err_http;
    }
  } else if (object_is_error || as_error) {
    ev->kind = SL_EV_ERROR;
    ev->err_message = s.top_message;
    ev->err_type = s.top_type;
    ev->err_code = s.top_code;
  }
  return 0;
}

/* ---- the public cursor (oai.h), for the native engines' scans ---------- */

_Static_assert(sizeof(sl_jcur_t) == sizeof(sl__jc_t), "sl_jcur_t mirrors sl__jc_t");

static sl__jc_t *sl__jc(sl_jcur_t *c) { return (sl__jc_t *)(void *)c; }

int sl_jcur_object(sl_jcur_t *c) {
  sl__ws(sl__jc(c));
  if (c->p >= c->e || *c->p != '{') return SL_EPARSE;
  return sl__open(sl__jc(c));
}

int sl_jcur_array(sl_jcur_t *c) {
  sl__ws(sl__jc(c));
  if (c->p >= c->e || *c->p != '[') return SL_EPARSE;
  return sl__open(sl__jc(c));
}

int sl_jcur_member(sl_jcur_t *c, int *first, sl_span_t *key, int *kesc) {
  return sl__obj_next(sl__jc(c), first, key, kesc);
}

int sl_jcur_element(sl_jcur_t *c, int *first) { return sl__arr_next(sl__jc(c), first); }

int sl_jcur_skip(sl_jcur_t *c) { return sl__skip(sl__jc(c)); }

int sl_jcur_str(sl_jcur_t *c, sl_span_t *out, int *has) { return sl__get_str(sl__jc(c), out, has, NULL); }

int sl_jcur_int(sl_jcur_t *c, int64_t *out, int *has) { return sl__get_int(sl__jc(c), out, has); }

int sl_jcur_bool(sl_jcur_t *c, int *out, int *has) {
  *out = 0;
  *has = 0;
  if (*c->p == 't' || *c->p == 'f') {
    *out = *c->p == 't';
    *has = 1;
  }
  return sl__skip(sl__jc(c));
}

int sl_jcur_end(sl_jcur_t *c) {
  sl__ws(sl__jc(c));
  return c->p == c->e ? 0 : SL_EPARSE;
}

int sl_jcur_key_is(sl_span_t key, int kesc, const char *lit) {
  sl__key_t k;
  sl__key(&k, key, kesc);
  size_t n = strlen(lit);
  return k.n == n && memcmp(k.p, lit, n) == 0;
}

sl_finish_t sl_finish_of(sl_span_t s) {
  if (s.n == 0) return SL_FINISH_OTHER;
  sl__key_t k;
  sl__key(&k, s, memchr(s.p, '\\', s.n) != NULL);
  return sl__finish_of(&k);
}

int sl_oai_scan(const char *json, size_t len, sl_event_t *ev) {
  return sl__oai_scan(json, len, ev, 0);
}

int sl_oai_scan_error(const char *json, size_t len, sl_event_t *ev) {
  return sl__oai_scan(json, len, ev, 1);
}

/* ---- string helpers --------------------------------------------------- */

static size_t sl__put_utf8(char *d, uint32_t cp) {
  if (cp < 0x80) {
    d[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    d[0] = (char)(0xC0 | (cp >> 6));
    d[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    d[0] = (char)(0xE0 | (cp >> 12));
    d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  d[0] = (char)(0xF0 | (cp >> 18));
  d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  d[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  d[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Reads the four hex digits after "\u" at s[0..]; -1 if malformed. */
static long sl__u4(const char *s, const char *e) {
  if (e - s < 6 || s[0] != '\\' || s[1] != 'u') return -1;
  long v = 0;
  for (int i = 2; i < 6; i++) {
    int h = sl__hexval((unsigned char)s[i]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

size_t sl_json_unescape(char *dst, size_t cap, const char *src, size_t len) {
  const char *p = src, *e = src + len;
  size_t n = 0;
  while (p < e) {
    const char *bs = memchr(p, '\\', (size_t)(e - p));
    size_t run = (size_t)((bs ? bs : e) - p);
    if (run > cap - n) return (size_t)-1;
    memcpy(dst + n, p, run);
    n += run;
    if (bs == NULL) break;
    p = bs;
    if (e - p < 2) return (size_t)-1;
    char out;
    switch (p[1]) {
      case '"': out = '"'; break;
      case '\\': out = '\\'; break;
      case '/': out = '/'; break;
      case 'b': out = '\b'; break;
      case 'f': out = '\f'; break;
      case 'n': out = '\n'; break;
      case 'r': out = '\r'; break;
      case 't': out = '\t'; break;
      case 'u': {
        long u = sl__u4(p, e);
        if (u < 0) return (size_t)-1;
        p += 6;
        uint32_t cp = (uint32_t)u;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          long lo = sl__u4(p, e);
          if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
            p += 6;
          } else {
            cp = 0xFFFD; /* a high surrogate without its pair */
          }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          cp = 0xFFFD; /* a low surrogate on its own */
        }
        char tmp[4];
        size_t k = sl__put_utf8(tmp, cp);
        if (k > cap - n) return (size_t)-1;
        memcpy(dst + n, tmp, k);
        n += k;
        continue;
      }
      default:
        return (size_t)-1;
    }
    if (n >= cap) return (size_t)-1;
    dst[n++] = out;
    p += 2;
  }
  return n;
}

/* What each byte becomes: 0 itself, a letter its short escape, 'u' \u00XX. */
static const char sl__esc_tab[256] = {
  ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't',
  [0x00] = 'u', [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u', [0x05] = 'u',
  [0x06] = 'u', [0x07] = 'u', [0x0B] = 'u', [0x0E] = 'u', [0x0F] = 'u', [0x10] = 'u',
  [0x11] = 'u', [0x12] = 'u', [0x13] = 'u', [0x14] = 'u', [0x15] = 'u', [0x16] = 'u',
  [0x17] = 'u', [0x18] = 'u', [0x19] = 'u', [0x1A] = 'u', [0x1B] = 'u', [0x1C] = 'u',
  [0x1D] = 'u', [0x1E] = 'u', [0x1F] = 'u', ['"'] = '"', ['\\'] = '\\',
};

size_t sl_json_escape(char *dst, size_t cap, const char *src, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)src[i];
    char t = sl__esc_tab[ch];
    if (t == 0) {
      if (n >= cap) return (size_t)-1;
      dst[n++] = (char)ch;
    } else if (t != 'u') {
      if (cap - n < 2) return (size_t)-1;
      dst[n++] = '\\';
      dst[n++] = t;
    } else {
      if (cap - n < 6) return (size_t)-1;
      memcpy(dst + n, "\\u00", 4);
      dst[n + 4] = hex[ch >> 4];
      dst[n + 5] = hex[ch & 15];
      n += 6;
    }
  }
  return n;
}

/* ---- encoder ---------------------------------------------------------- */

typedef struct {
  char *p;
  size_t n, cap;
  int bad; /* ran out of room */
} sl__w_t;

static void sl__w_put(sl__w_t *w, const char *s, size_t n) {
  if (w->bad || n > w->cap - w->n) {
    w->bad = 1;
    return;
  }
  memcpy(w->p + w->n, s, n);
  w->n += n;
}

#define SL__W_LIT(w, s) sl__w_put((w), (s), sizeof(s) - 1)

static void sl__w_esc(sl__w_t *w, const char *s, size_t n) {
  if (w->bad) return;
  size_t k = sl_json_escape(w->p + w->n, w->cap - w->n, s, n);
  if (k == (size_t)-1) w->bad = 1;
  else w->n += k;
}

static void sl__w_i64(sl__w_t *w, int64_t v) {
  char tmp[24], *e = tmp + sizeof(tmp), *q = e;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    *--q = (char)('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (v < 0) *--q = '-';
  sl__w_put(w, q, (size_t)(e - q));
}

/* A C string as a JSON string, or null. */
static void sl__w_cstr(sl__w_t *w, const char *s) {
  if (s == NULL) {
    SL__W_LIT(w, "null");
    return;
  }
  SL__W_LIT(w, "\"");
  sl__w_esc(w, s, strlen(s));
  SL__W_LIT(w, "\"");
}

static void sl__w_head(sl__w_t *w, const sl_oai_meta_t *m) {
  SL__W_LIT(w, "{\"id\":\"");
  sl__w_put(w, m->id.p, m->id.n);
  if (m->chat) SL__W_LIT(w, "\",\"object\":\"chat.completion.chunk\",\"created\":");
  else SL__W_LIT(w, "\",\"object\":\"text_completion\",\"created\":");
  sl__w_i64(w, m->created);
  SL__W_LIT(w, ",\"model\":\"");
  sl__w_put(w, m->model.p, m->model.n);
  SL__W_LIT(w, "\",\"choices\":[");
}

static size_t sl__w_done(sl__w_t *w) { return w->bad ? (size_t)-1 : w->n; }

size_t sl_oai_encode_chunk(char *buf, size_t cap, const sl_oai_meta_t *m, const char *role,
                           const char *text_escaped, size_t text_len, sl_finish_t finish) {
  return sl_oai_encode_delta(buf, cap, m, role, text_escaped, text_len, NULL, 0, finish);
}

size_t sl_oai_encode_delta(char *buf, size_t cap, const sl_oai_meta_t *m, const char *role,
                           const char *text_escaped, size_t text_len, const char *reasoning_escaped,
                           size_t reasoning_len, sl_finish_t finish) {
  sl__w_t w = {buf, 0, cap, 0};
  sl__w_head(&w, m);
  if (m->chat) {
    SL__W_LIT(&w, "{\"index\":0,\"delta\":{");
    int sep = 0;
    if (role != NULL) {
      SL__W_LIT(&w, "\"role\":");
      sl__w_cstr(&w, role);
      sep = 1;
    }
    if (text_escaped != NULL) {
      if (sep) SL__W_LIT(&w, ",");
      SL__W_LIT(&w, "\"content\":\"");
      sl__w_put(&w, text_escaped, text_len);
      SL__W_LIT(&w, "\"");
      sep = 1;
    }
    if (reasoning_escaped != NULL) {
      if (sep) SL__W_LIT(&w, ",");
      SL__W_LIT(&w, "\"reasoning_content\":\"");
      sl__w_put(&w, reasoning_escaped, reasoning_len);
      SL__W_LIT(&w, "\"");
    }
    SL__W_LIT(&w, "},\"logprobs\":null,\"finish_reason\":");
  } else {
    SL__W_LIT(&w, "{\"text\":\"");
    if (text_escaped != NULL) sl__w_put(&w, text_escaped, text_len);
    SL__W_LIT(&w, "\",\"index\":0,\"logprobs\":null,\"finish_reason\":");
  }
  sl__w_cstr(&w, finish == SL_FINISH_OTHER ? "stop" : sl_finish_name(finish));
  SL__W_LIT(&w, "}]}");
  return sl__w_done(&w);
}

size_t sl_oai_encode_usage(char *buf, size_t cap, const sl_oai_meta_t *m, int64_t prompt,
                           int64_t completion) {
  /* Bounded counts keep the sum exact (and defined). */
  if (!sl__count_ok(prompt) || !sl__count_ok(completion)) return (size_t)-1;
  sl__w_t w = {buf, 0, cap, 0};
  sl__w_head(&w, m);
  SL__W_LIT(&w, "],\"usage\":{\"prompt_tokens\":");
  sl__w_i64(&w, prompt);
  SL__W_LIT(&w, ",\"completion_tokens\":");
  sl__w_i64(&w, completion);
  SL__W_LIT(&w, ",\"total_tokens\":");
  sl__w_i64(&w, prompt + completion);
  SL__W_LIT(&w, "}}");
  return sl__w_done(&w);
}

size_t sl_oai_encode_error(char *buf, size_t cap, const char *message, size_t message_len,
                           const char *type, const char *code) {
  sl__w_t w = {buf, 0, cap, 0};
  SL__W_LIT(&w, "{\"error\":{\"message\":\"");
  sl__w_esc(&w, message, message_len);
  SL__W_LIT(&w, "\",\"type\":");
  sl__w_cstr(&w, type);
  SL__W_LIT(&w, ",\"code\":");
  sl__w_cstr(&w, code);
  SL__W_LIT(&w, "}}");
  return sl__w_done(&w);
}

const char *sl_finish_name(sl_finish_t f) {
  switch (f) {
    case SL_FINISH_STOP: return "stop";
    case SL_FINISH_LENGTH: return "length";
    case SL_FINISH_TOOL_CALLS: return "tool_calls";
    case SL_FINISH_CONTENT_FILTER: return "content_filter";
    case SL_FINISH_FUNCTION_CALL: return "function_call";
    case SL_FINISH_OTHER: return "other";
    default: return NULL;
  }
}

/* ---- request checks --------------------------------------------------- */

/* One step of the path from the body to a value: an object key (raw JSON
 * string contents or decoded text) or an array index.  Steps live on the
 * walkers' stacks and point up to their parent. */
typedef struct sl__step_s {
  const struct sl__step_s *up;
  const char *key; /* NULL for an array element */
  size_t keylen;
  size_t index;
} sl__step_t;

typedef struct {
  char *buf;
  size_t cap, n;
} sl__pb_t;

static void sl__pb_put(sl__pb_t *b, const char *s, size_t n) {
  for (size_t i = 0; i < n && b->n + 1 < b->cap; i++) b->buf[b->n++] = s[i];
  b->buf[b->n] = '\0';
}

static int sl__ident(const char *k, size_t n) {
  if (n == 0 || !((k[0] >= 'a' && k[0] <= 'z') || (k[0] >= 'A' && k[0] <= 'Z') || k[0] == '_')) return 0;
  for (size_t i = 1; i < n; i++)
    if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') || (k[i] >= '0' && k[i] <= '9') ||
          k[i] == '_'))
      return 0;
  return 1;
}

/* messages[0].content, or ["odd key"] for keys that are not identifiers.
 * Only printable ASCII is written (other bytes become '?'), so the path is
 * safe in any message whatever the key held. */
static void sl__path_render(const sl__step_t *st, sl__pb_t *b) {
  if (st == NULL) return;
  sl__path_render(st->up, b);
  if (st->key == NULL) {
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "[%zu]", st->index);
    sl__pb_put(b, tmp, (size_t)n);
  } else if (sl__ident(st->key, st->keylen)) {
    if (b->n > 0) sl__pb_put(b, ".", 1);
    sl__pb_put(b, st->key, st->keylen);
  } else {
    sl__pb_put(b, "[\"", 2);
    for (size_t i = 0; i < st->keylen; i++) {
      unsigned char ch = (unsigned char)st->key[i];
      char o = ch >= 0x20 && ch < 0x7F && ch != '"' && ch != '\\' ? (char)ch : '?';
      sl__pb_put(b, &o, 1);
    }
    sl__pb_put(b, "\"]", 2);
  }
}

static void sl__path(const sl__step_t *st, char *out, size_t cap) {
  sl__pb_t b = {out, cap, 0};
  out[0] = '\0';
  sl__path_render(st, &b);
  if (b.n + 1 >= cap && cap > 4) memcpy(out + cap - 4, "...", 4); /* cut: say so */
}

/* The request walker's cursor.  Its grammar is cJSON's (which parses the
 * body afterwards and decides what is JSON): every byte up to 0x20 is
 * blank, raw control characters may stand in strings, a number is a run of
 * [0-9+-.eE] after '-' or a digit.  It only has to find every string. */
typedef struct {
  const char *p, *e;
  const char *base;
  int depth;
  sl_oai_problem_t *out;
} sl__rq_t;

static void sl__rq_ws(sl__rq_t *q) {
  while (q->p < q->e && (unsigned char)*q->p <= 0x20) q->p++;
}

/* The walk cannot go on at q->p: not JSON as cJSON reads it either (or, in
 * theory, a leniency of cJSON's not mirrored here; the caller refuses then). */
static int sl__rq_json(sl__rq_t *q, int too_deep) {
  sl_oai_problem_t *o = q->out;
  o->offset = (size_t)((q->p < q->e ? q->p : q->e) - q->base);
  o->field[0] = '\0';
  o->code = "body";
  if (too_deep)
    snprintf(o->message, sizeof(o->message), "request body nests deeper than %d levels (at byte %zu)",
             SL_OAI_REQUEST_MAX_DEPTH, o->offset);
  else
    snprintf(o->message, sizeof(o->message), "request body is not valid JSON (error near byte %zu)", o->offset);
  return SL_EPARSE;
}

static int sl__cont(const unsigned char *p, const unsigned char *e, int k) {
  for (int i = 1; i <= k; i++)
    if (p + i >= e || (p[i] & 0xC0) != 0x80) return 0;
  return 1;
}

/* The four hex digits at p as a number, or -1 if one is not a hex digit. */
static long sl__hex4(const char *p) {
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int h = sl__hexval((unsigned char)p[i]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

/* q->p is at an opening quote: the string's contents into *out and q->p
 * past the closing quote.  The string ends where cJSON ends it: a backslash
 * takes the next byte with it, whatever it is; what the escapes mean is
 * sl__text_problem's to judge, in the order cJSON decodes them.  Plain runs
 * are skipped eight bytes at a time. */
static int sl__rq_str(sl__rq_t *q, sl_span_t *out) {
  const char *p = q->p + 1, *e = q->e, *s = p;
  for (;;) {
    while (e - p >= 8) {
      uint64_t v;
      memcpy(&v, p, 8);
      if ((sl__has_zero(v ^ (SL__ONES * '"')) | sl__has_zero(v ^ (SL__ONES * '\\'))) != 0) break;
      p += 8;
    }
    if (p >= e) return sl__rq_json(q, 0);
    if (*p == '"') break;
    if (*p == '\\') {
      if (e - p < 2) return sl__rq_json(q, 0);
      p += 2;
    } else {
      p++;
    }
  }
  out->p = s;
  out->n = (size_t)(p - s);
  q->p = p + 1;
  return 0;
}

enum { SL__TEXT_OK, SL__TEXT_UTF8, SL__TEXT_NUL, SL__TEXT_ESCAPE };

/* The first thing wrong with the text of string contents s[0..n), decoded
 * as cJSON decodes it: a static reason with *at its offset in s and *kind
 * saying what it is (invalid UTF-8; a NUL, raw or as an escape cJSON would
 * turn into one and end the string at; an escape cJSON refuses); NULL when
 * the text is valid.  Runs of ASCII without a backslash or a NUL are
 * skipped eight bytes at a time. */
static const char *sl__text_problem(const char *s, size_t n, size_t *at, int *kind) {
  const unsigned char *p = (const unsigned char *)s, *e = p + n;
  *kind = SL__TEXT_UTF8;
  while (p < e) {
    while (e - p >= 8) {
      uint64_t v;
      memcpy(&v, p, 8);
      if ((v & SL__HIGHS) != 0 || (sl__has_zero(v ^ (SL__ONES * '\\')) | sl__has_zero(v)) != 0) break;
      p += 8;
    }
    if (p >= e) break;
    *at = (size_t)((const char *)p - s);
    unsigned ch = *p;
    if (ch == 0) {
      *kind = SL__TEXT_NUL;
      return "a NUL byte";
    }
    if (ch == '\\') {
      switch (p[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
          p += 2;
          continue;
        case 'u':
          break;
        default:
          *kind = SL__TEXT_ESCAPE;
          return "an unknown escape";
      }
      /* cJSON reads a \u escape without four hex digits as U+0000. */
      long u = e - p >= 6 ? sl__hex4((const char *)p + 2) : -1;
      if (u <= 0) {
        *kind = SL__TEXT_NUL;
        return u < 0 ? "a \\u escape without four hex digits" : "the escape \\u0000 (NUL)";
      }
      if (u >= 0xDC00 && u <= 0xDFFF) return "a \\u escape of a low surrogate (U+DC00..U+DFFF) with no high one before it";
      if (u >= 0xD800 && u <= 0xDBFF) {
        long lo = e - p >= 12 && p[6] == '\\' && p[7] == 'u' ? sl__hex4((const char *)p + 8) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
          return "a \\u escape of a high surrogate (U+D800..U+DBFF) with no low one after it";
        p += 12;
        continue;
      }
      p += 6;
      continue;
    }
    if (ch < 0x80) {
      p++;
      continue;
    }
    if (ch < 0xC0) return "a continuation byte (0x80..0xBF) with no lead byte";
    if (ch < 0xC2) return "an overlong encoding";
    if (ch >= 0xF8) return "a byte that never occurs in UTF-8 (0xF8..0xFF)";
    if (ch >= 0xF5) return "a code point past U+10FFFF";
    int k = ch < 0xE0 ? 1 : ch < 0xF0 ? 2 : 3;
    if (!sl__cont(p, e, k)) return "a truncated sequence";
    if (ch == 0xE0 && p[1] < 0xA0) return "an overlong encoding";
    if (ch == 0xED && p[1] >= 0xA0) return "a UTF-16 surrogate (U+D800..U+DFFF) encoded as UTF-8";
    if (ch == 0xF0 && p[1] < 0x90) return "an overlong encoding";
    if (ch == 0xF4 && p[1] >= 0x90) return "a code point past U+10FFFF";
    p += k + 1;
  }
  *kind = SL__TEXT_OK;
  return NULL;
}

/* Checks the text of a string (a key of the object at `at` when is_key,
 * else the value at `at`). */
static int sl__rq_text(sl__rq_t *q, sl_span_t s, const sl__step_t *at, int is_key) {
  size_t off = 0;
  int kind = SL__TEXT_OK;
  const char *why = sl__text_problem(s.p, s.n, &off, &kind);
  if (why == NULL) return 0;
  if (kind == SL__TEXT_ESCAPE) {
    q->p = s.p + off;
    return sl__rq_json(q, 0); /* cJSON refuses it too */
  }
  sl_oai_problem_t *o = q->out;
  o->offset = (size_t)(s.p - q->base) + off;
  sl__path(at, o->field, sizeof(o->field));
  char name[sizeof(o->field) + 32];
  if (is_key)
    snprintf(name, sizeof(name), o->field[0] ? "a key of '%s'" : "a top-level key%s", o->field);
  else
    snprintf(name, sizeof(name), o->field[0] ? "'%s'" : "the request body%s", o->field);
  if (kind == SL__TEXT_NUL) {
    o->code = "invalid_string";
    snprintf(o->message, sizeof(o->message), "%s contains %s, which sluice does not accept (byte %zu)", name, why,
             o->offset);
  } else {
    o->code = "invalid_utf8";
    snprintf(o->message, sizeof(o->message), "%s is not valid UTF-8: %s (byte %zu)", name, why, o->offset);
  }
  return SL_EINVAL;
}

static int sl__rq_lit(sl__rq_t *q, const char *lit, size_t n) {
  if ((size_t)(q->e - q->p) < n || memcmp(q->p, lit, n) != 0) return sl__rq_json(q, 0);
  q->p += n;
  return 0;
}

/* One value at q->p (not blank); `at` is its path. */
static int sl__rq_value(sl__rq_t *q, const sl__step_t *at) {
  sl_span_t s;
  int r;
  char c = *q->p;
  if (c == '"') {
    if ((r = sl__rq_str(q, &s)) < 0) return r;
    return sl__rq_text(q, s, at, 0);
  }
  if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    if (q->depth >= SL_OAI_REQUEST_MAX_DEPTH) return sl__rq_json(q, 1);
    q->depth++;
    q->p++;
    sl__rq_ws(q);
    if (q->p < q->e && *q->p == close) {
      q->p++;
      q->depth--;
      return 0;
    }
    for (size_t i = 0;; i++) {
      sl__step_t st = {at, NULL, 0, i};
      if (q->p >= q->e) return sl__rq_json(q, 0);
      if (c == '{') {
        if (*q->p != '"') return sl__rq_json(q, 0);
        if ((r = sl__rq_str(q, &s)) < 0) return r;
        if ((r = sl__rq_text(q, s, at, 1)) < 0) return r;
        st.key = s.p;
        st.keylen = s.n;
        sl__rq_ws(q);
        if (q->p >= q->e || *q->p != ':') return sl__rq_json(q, 0);
        q->p++;
        sl__rq_ws(q);
        if (q->p >= q->e) return sl__rq_json(q, 0);
      }
      if ((r = sl__rq_value(q, &st)) < 0) return r;
      sl__rq_ws(q);
      if (q->p < q->e && *q->p == ',') {
        q->p++;
        sl__rq_ws(q);
        continue;
      }
      if (q->p < q->e && *q->p == close) {
        q->p++;
        q->depth--;
        return 0;
      }
      return sl__rq_json(q, 0);
    }
  }
  if (c == 't') return sl__rq_lit(q, "true", 4);
  if (c == 'f') return sl__rq_lit(q, "false", 5);
  if (c == 'n') return sl__rq_lit(q, "null", 4);
  if (c == '-' || sl__isdigit(c)) {
    q->p++;
    while (q->p < q->e && (sl__isdigit(*q->p) || *q->p == '+' || *q->p == '-' || *q->p == '.' || *q->p == 'e' ||
                           *q->p == 'E'))
      q->p++;
    return 0;
  }
  return sl__rq_json(q, 0);
}

int sl_oai_check_request(const char *json, size_t len, sl_oai_problem_t *out) {
  sl__rq_t q = {json, json + len, json, 0, out};
  if (len >= 3 && memcmp(json, "\xEF\xBB\xBF", 3) == 0) q.p += 3; /* a UTF-8 BOM, which cJSON skips too */
  sl__rq_ws(&q);
  if (q.p >= q.e) return sl__rq_json(&q, 0);
  int r = sl__rq_value(&q, NULL);
  if (r < 0) return r;
  sl__rq_ws(&q);
  if (q.p != q.e) return sl__rq_json(&q, 0);
  return 0;
}

static int sl__keycmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* An object's first duplicated key, or NULL.  Small objects (nearly all)
 * compare every pair; larger ones sort a copy of the key pointers, so that
 * a body of many keys in one object cannot cost quadratic time. */
static const char *sl__dup_key(const cJSON *obj) {
  size_t k = 0;
  const cJSON *m;
  for (m = obj->child; m != NULL; m = m->next) k++;
  if (k < 2) return NULL;
  if (k <= 16) {
    for (const cJSON *a = obj->child; a != NULL; a = a->next)
      for (const cJSON *b = a->next; b != NULL; b = b->next)
        if (strcmp(a->string, b->string) == 0) return a->string;
    return NULL;
  }
  const char **keys = sl_malloc(k * sizeof(*keys));
  size_t i = 0;
  for (m = obj->child; m != NULL; m = m->next) keys[i++] = m->string;
  qsort(keys, k, sizeof(*keys), sl__keycmp);
  const char *dup = NULL;
  for (i = 1; i < k && dup == NULL; i++)
    if (strcmp(keys[i - 1], keys[i]) == 0) dup = keys[i];
  sl_free(keys);
  return dup;
}

static int sl__dup_walk(const cJSON *v, const sl__step_t *at, sl_oai_problem_t *out) {
  if (cJSON_IsObject(v)) {
    const char *dup = sl__dup_key(v);
    if (dup != NULL) {
      sl__step_t st = {at, dup, strlen(dup), 0};
      out->offset = 0;
      out->code = "duplicate_key";
      sl__path(&st, out->field, sizeof(out->field));
      snprintf(out->message, sizeof(out->message),
               "'%s' appears more than once; a key may appear only once in an object", out->field);
      return SL_EINVAL;
    }
    for (const cJSON *m = v->child; m != NULL; m = m->next) {
      sl__step_t st = {at, m->string, strlen(m->string), 0};
      int r = sl__dup_walk(m, &st, out);
      if (r < 0) return r;
    }
  } else if (cJSON_IsArray(v)) {
    size_t i = 0;
    for (const cJSON *m = v->child; m != NULL; m = m->next) {
      sl__step_t st = {at, NULL, 0, i++};
      int r = sl__dup_walk(m, &st, out);
      if (r < 0) return r;
    }
  }
  return 0;
}

int sl_oai_check_duplicates(const cJSON *root, sl_oai_problem_t *out) { return sl__dup_walk(root, NULL, out); }

/* A completion prompt: a string, token ids (4 characters each) or arrays
 * of them, nested. */
static size_t sl__prompt_value_chars(const cJSON *v) {
  if (cJSON_IsString(v)) return strlen(v->valuestring);
  if (cJSON_IsNumber(v)) return 4;
  size_t n = 0;
  if (cJSON_IsArray(v)) {
    const cJSON *it;
    cJSON_ArrayForEach(it, v) n += sl__prompt_value_chars(it);
  }
  return n;
}

/* One message's content: a string, or parts whose text counts. */
static size_t sl__content_chars(const cJSON *c) {
  if (cJSON_IsString(c)) return strlen(c->valuestring);
  size_t n = 0;
  if (cJSON_IsArray(c)) {
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
      if (cJSON_IsString(part)) {
        n += strlen(part->valuestring);
        continue;
      }
      if (!cJSON_IsObject(part)) continue;
      const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
      if (cJSON_IsString(t)) n += strlen(t->valuestring);
      const cJSON *refusal = cJSON_GetObjectItemCaseSensitive(part, "refusal");
      if (cJSON_IsString(refusal)) n += strlen(refusal->valuestring);
    }
  }
  return n;
}

size_t sl_oai_prompt_chars(const cJSON *body, int chat) {
  if (!cJSON_IsObject(body)) return 0;
  if (!chat) return sl__prompt_value_chars(cJSON_GetObjectItemCaseSensitive(body, "prompt"));
  const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
  size_t n = 0;
  const cJSON *m;
  if (!cJSON_IsArray(msgs)) return 0;
  cJSON_ArrayForEach(m, msgs) {
    if (cJSON_IsObject(m)) n += sl__content_chars(cJSON_GetObjectItemCaseSensitive(m, "content"));
  }
  return n;
}
