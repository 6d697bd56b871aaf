/* tenant.c: the tenant set (see tenant.h): the config's "tenants" array
 * checked and compiled, API-key digests and the constant-time lookup, the
 * model check, and the request and token windows kept in the TTL
 * dictionary.  Uses base (allocator, errors), lua/ttldict.h (the windows),
 * cJSON (the config) and OpenSSL's libcrypto (SHA-256, CRYPTO_memcmp).
 *
 * A window is two dictionary entries, both with the window's length as
 * their TTL from the moment the window opens:
 *
 *   t:<tenant>:<w>        the window's id (the dictionary time it opened,
 *                         plus one so that no id is 0), created only when
 *                         absent (add); <w> is rpm, tpm or tpd
 *   t:<tenant>:<w>:<id>   what the window has counted (requests, or
 *                         tokens reserved and settled)
 *
 * The counter is made with the id key's remaining lifetime, so both go at
 * once.  Because the counter's key carries the id, a stream that settles
 * after its window closed finds no counter under its id and leaves the
 * window open now alone.
 */
#include "runtime/tenant/tenant.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"

/* The largest limit a config may set: far below int64's range, so sums of
 * limits, reservations and counts never overflow. */
#define SL__LIMIT_MAX 1000000000000000LL

const char *sl_priority_name(sl_priority_t p) {
  switch (p) {
  case SL_PRIO_HIGH: return "high";
  case SL_PRIO_NORMAL: return "normal";
  case SL_PRIO_LOW: return "low";
  }
  return "?";
}

/* ---- Digests ---- */

/* SHA-256 of data into md.  Returns 0, or SL_EINVAL when libcrypto fails
 * (it does not for SHA-256 unless the library is broken). */
static int sl__sha256(const char *data, size_t len, uint8_t md[32]) {
  unsigned int mdlen = 0;
  if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) return SL_EINVAL;
  return 0;
}

void sl_tenant_hash_key(const char *key, size_t len, char *out) {
  static const char hex[] = "0123456789abcdef";
  uint8_t md[32];
  out[0] = '\0';
  if (sl__sha256(key ? key : "", key ? len : 0, md) != 0) return;
  memcpy(out, "sha256:", 7);
  for (int i = 0; i < 32; i++) {
    out[7 + 2 * i] = hex[md[i] >> 4];
    out[8 + 2 * i] = hex[md[i] & 15];
  }
  out[71] = '\0';
  OPENSSL_cleanse(md, sizeof(md));
}

static int sl__hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* "sha256:" and 64 hex digits (either case) into md.  Returns 0 or -1. */
static int sl__parse_digest(const char *s, uint8_t md[32]) {
  if (strncmp(s, "sha256:", 7) != 0 || strlen(s) != 7 + 64) return -1;
  for (int i = 0; i < 32; i++) {
    int hi = sl__hexval(s[7 + 2 * i]), lo = sl__hexval(s[8 + 2 * i]);
    if (hi < 0 || lo < 0) return -1;
    md[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

sl_tenant_t *sl_tenants_auth(const sl_tenants_t *ts, const char *authorization) {
  if (ts == NULL || ts->n == 0 || authorization == NULL) return NULL;
  const char *p = authorization;
  while (*p == ' ' || *p == '\t') p++;
  if (strncasecmp(p, "bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t')) return NULL;
  p += 6;
  while (*p == ' ' || *p == '\t') p++;
  const char *end = p + strlen(p);
  while (end > p && (end[-1] == ' ' || end[-1] == '\t')) end--;
  if (end == p) return NULL;
  uint8_t md[32];
  if (sl__sha256(p, (size_t)(end - p), md) != 0) return NULL;
  /* Every digest is compared, whichever matched, so the time taken depends
   * only on how many digests there are. */
  sl_tenant_t *found = NULL;
  for (int i = 0; i < ts->n; i++) {
    sl_tenant_t *t = &ts->t[i];
    for (int k = 0; k < t->nkeys; k++) {
      int differ = CRYPTO_memcmp(md, t->keys[k], 32);
      found = (differ == 0 && found == NULL) ? t : found;
    }
  }
  OPENSSL_cleanse(md, sizeof(md));
  return found;
}

int sl_tenant_model_ok(const sl_tenant_t *t, const char *model) {
  if (t == NULL) return 0;
  if (t->models == NULL) return 1;
  if (model == NULL) return 0;
  for (int i = 0; i < t->nmodels; i++)
    if (strcmp(t->models[i], model) == 0) return 1;
  return 0;
}

/* ---- The config ---- */

static const char *const sl__tenant_keys[] = {"name",     "keys",   "models",      "priority", "limits",
                                              "pipeline", "guards", "transcripts", NULL};
static const char *const sl__limit_keys[] = {"requests_per_minute", "tokens_per_minute", "tokens_per_day",
                                             "max_tokens_per_request", NULL};

typedef struct {
  char *err;
  size_t errlen;
} sl__tctx_t;

static int sl__bad(sl__tctx_t *x, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (x->err && x->errlen) vsnprintf(x->err, x->errlen, fmt, ap);
  va_end(ap);
  return SL_EINVAL;
}

/* An object whose keys are all in allowed, each once. */
static int sl__keys(sl__tctx_t *x, const cJSON *o, const char *path, const char *const *allowed) {
  if (!cJSON_IsObject(o)) return sl__bad(x, "%s: expected an object", path);
  const cJSON *it;
  cJSON_ArrayForEach(it, o) {
    int ok = 0;
    for (int i = 0; allowed[i] && !ok; i++) ok = strcmp(allowed[i], it->string) == 0;
    if (!ok) {
      char known[256] = "";
      size_t used = 0;
      for (int i = 0; allowed[i]; i++)
        used += (size_t)snprintf(known + used, sizeof(known) - used, "%s%s", i ? ", " : "", allowed[i]);
      return sl__bad(x, "%s.%.64s: unknown key (known: %s)", path, it->string, known);
    }
    for (const cJSON *o2 = o->child; o2 != it; o2 = o2->next)
      if (strcmp(o2->string, it->string) == 0) return sl__bad(x, "%s.%s: given twice", path, it->string);
  }
  return 0;
}

static int sl__name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= SL_TENANT_NAME_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
          c == '-'))
      return 0;
  }
  return 1;
}

/* limits.<key>: a positive integer up to SL__LIMIT_MAX, or absent (0). */
static int sl__limit(sl__tctx_t *x, const cJSON *limits, const char *key, const char *path, int64_t *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(limits, key);
  if (v == NULL) return 0;
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble) ||
      v->valuedouble < 1)
    return sl__bad(x, "%s.limits.%s: expected a positive integer (leave it out for no limit)", path, key);
  if (v->valuedouble > (double)SL__LIMIT_MAX)
    return sl__bad(x, "%s.limits.%s: %g is more than %lld", path, key, v->valuedouble, SL__LIMIT_MAX);
  *out = (int64_t)v->valuedouble;
  return 0;
}

static int sl__tenant(sl__tctx_t *x, const cJSON *o, int idx, sl_tenants_t *ts) {
  char path[32];
  snprintf(path, sizeof(path), "tenants[%d]", idx);
  int rc = sl__keys(x, o, path, sl__tenant_keys);
  if (rc < 0) return rc;
  sl_tenant_t *t = &ts->t[idx];
  t->index = idx;
  t->priority = SL_PRIO_NORMAL;
  t->max_tokens = SL_TENANT_MAX_TOKENS_DEFAULT;

  const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
  if (name == NULL) return sl__bad(x, "%s.name: required", path);
  if (!cJSON_IsString(name)) return sl__bad(x, "%s.name: expected a string", path);
  if (!sl__name_ok(name->valuestring))
    return sl__bad(x, "%s.name: \"%.80s\" is not 1 to %d bytes of A-Z a-z 0-9 _ . -", path, name->valuestring,
                   SL_TENANT_NAME_MAX - 1);
  for (int j = 0; j < idx; j++)
    if (strcmp(ts->t[j].name, name->valuestring) == 0)
      return sl__bad(x, "%s.name: \"%s\" is already the name of tenants[%d]", path, name->valuestring, j);
  snprintf(t->name, sizeof(t->name), "%s", name->valuestring);

  const cJSON *keys = cJSON_GetObjectItemCaseSensitive(o, "keys");
  if (keys == NULL) return sl__bad(x, "%s.keys: required (`sluice hash-key KEY` prints a digest)", path);
  if (!cJSON_IsArray(keys)) return sl__bad(x, "%s.keys: expected an array of \"sha256:<64 hex>\" digests", path);
  int nkeys = cJSON_GetArraySize(keys);
  if (nkeys < 1 || nkeys > SL_TENANT_MAX_KEYS)
    return sl__bad(x, "%s.keys: %d digests, expected 1 to %d", path, nkeys, SL_TENANT_MAX_KEYS);
  const cJSON *k;
  cJSON_ArrayForEach(k, keys) {
    int ki = t->nkeys;
    if (!cJSON_IsString(k) || sl__parse_digest(k->valuestring, t->keys[ki]) != 0)
      return sl__bad(x, "%s.keys[%d]: expected \"sha256:\" and 64 hex digits", path, ki);
    for (int j = 0; j <= idx; j++)
      for (int kj = 0; kj < (j == idx ? ki : ts->t[j].nkeys); kj++)
        if (memcmp(ts->t[j].keys[kj], t->keys[ki], 32) == 0)
          return sl__bad(x, "%s.keys[%d]: the same digest as tenants[%d].keys[%d]", path, ki, j, kj);
    t->nkeys++;
  }

  const cJSON *models = cJSON_GetObjectItemCaseSensitive(o, "models");
  if (models != NULL) {
    if (!cJSON_IsArray(models)) return sl__bad(x, "%s.models: expected an array of model names", path);
    int n = cJSON_GetArraySize(models);
    if (n == 0) return sl__bad(x, "%s.models: empty (leave it out to allow every model)", path);
    t->models = sl_calloc((size_t)n, sizeof(char *));
    const cJSON *m;
    cJSON_ArrayForEach(m, models) {
      if (!cJSON_IsString(m) || m->valuestring[0] == '\0')
        return sl__bad(x, "%s.models[%d]: expected a non-empty string", path, t->nmodels);
      t->models[t->nmodels] = sl_strndup(m->valuestring, strlen(m->valuestring));
      t->nmodels++;
    }
  }

  const cJSON *prio = cJSON_GetObjectItemCaseSensitive(o, "priority");
  if (prio != NULL) {
    if (!cJSON_IsString(prio)) return sl__bad(x, "%s.priority: expected a string (high, normal or low)", path);
    if (strcmp(prio->valuestring, "high") == 0) t->priority = SL_PRIO_HIGH;
    else if (strcmp(prio->valuestring, "normal") == 0) t->priority = SL_PRIO_NORMAL;
    else if (strcmp(prio->valuestring, "low") == 0) t->priority = SL_PRIO_LOW;
    else return sl__bad(x, "%s.priority: \"%.64s\" is not one of high, normal, low", path, prio->valuestring);
  }

  const cJSON *limits = cJSON_GetObjectItemCaseSensitive(o, "limits");
  if (limits != NULL) {
    char lpath[48];
    snprintf(lpath, sizeof(lpath), "%s.limits", path);
    if ((rc = sl__keys(x, limits, lpath, sl__limit_keys)) < 0 ||
        (rc = sl__limit(x, limits, "requests_per_minute", path, &t->rpm)) < 0 ||
        (rc = sl__limit(x, limits, "tokens_per_minute", path, &t->tpm)) < 0 ||
        (rc = sl__limit(x, limits, "tokens_per_day", path, &t->tpd)) < 0 ||
        (rc = sl__limit(x, limits, "max_tokens_per_request", path, &t->max_tokens)) < 0)
      return rc;
  }

  const cJSON *pipeline = cJSON_GetObjectItemCaseSensitive(o, "pipeline");
  if (pipeline != NULL) {
    if (!cJSON_IsString(pipeline) || pipeline->valuestring[0] == '\0')
      return sl__bad(x, "%s.pipeline: expected the path of a Lua file", path);
    t->pipeline = sl_strndup(pipeline->valuestring, strlen(pipeline->valuestring));
  }

  const cJSON *guards = cJSON_GetObjectItemCaseSensitive(o, "guards");
  if (guards != NULL) {
    if (!cJSON_IsObject(guards)) return sl__bad(x, "%s.guards: expected an object", path);
    char *text = cJSON_PrintUnformatted(guards);
    if (text == NULL) return sl__bad(x, "%s.guards: out of memory", path) < 0 ? SL_ENOMEM : 0;
    t->guards_json = sl_strndup(text, strlen(text));
    cJSON_free(text);
  }

  const cJSON *tr = cJSON_GetObjectItemCaseSensitive(o, "transcripts");
  if (tr != NULL) {
    if (!cJSON_IsNumber(tr) || !isfinite(tr->valuedouble) || tr->valuedouble < 0 || tr->valuedouble > 1)
      return sl__bad(x, "%s.transcripts: expected a number from 0 to 1 (the fraction of streams recorded)", path);
    t->transcripts = tr->valuedouble;
  }
  return 0;
}

int sl_tenants_build(const char *json, sl_tenants_t **out, char *err, size_t errlen) {
  sl__tctx_t x = {err, errlen};
  if (err && errlen) err[0] = '\0';
  *out = NULL;
  sl_tenants_t *ts = sl_calloc(1, sizeof(*ts));
  if (json == NULL) {
    *out = ts;
    return 0;
  }
  cJSON *root = cJSON_ParseWithLength(json, strlen(json));
  if (root == NULL) {
    const char *at = cJSON_GetErrorPtr();
    sl_free(ts);
    if (at != NULL && at >= json && at <= json + strlen(json))
      return sl__bad(&x, "tenants: not valid JSON (near byte %td)", at - json);
    return sl__bad(&x, "tenants: not valid JSON");
  }
  int rc = 0;
  if (!cJSON_IsArray(root)) {
    rc = sl__bad(&x, "tenants: expected an array of tenant objects");
  } else if (cJSON_GetArraySize(root) > SL_TENANT_MAX) {
    rc = sl__bad(&x, "tenants: %d tenants, at most %d", cJSON_GetArraySize(root), SL_TENANT_MAX);
  } else if (cJSON_GetArraySize(root) > 0) {
    ts->t = sl_calloc((size_t)cJSON_GetArraySize(root), sizeof(sl_tenant_t));
    const cJSON *o;
    cJSON_ArrayForEach(o, root) {
      /* Counted before it is checked, so that freeing on an error frees
       * what this tenant holds so far too. */
      ts->n++;
      if ((rc = sl__tenant(&x, o, ts->n - 1, ts)) < 0) break;
    }
  }
  cJSON_Delete(root);
  if (rc < 0) {
    sl_tenants_free(ts);
    return rc;
  }
  *out = ts;
  return 0;
}

void sl_tenants_free(sl_tenants_t *ts) {
  if (ts == NULL) return;
  for (int i = 0; i < ts->n; i++) {
    sl_tenant_t *t = &ts->t[i];
    for (int m = 0; m < t->nmodels; m++) sl_free(t->models[m]);
    sl_free(t->models);
    sl_free(t->pipeline);
    sl_free(t->guards_json);
  }
  sl_free(ts->t);
  sl_free(ts);
}

/* ---- Windows ---- */

enum { SL__RPM = 0, SL__TPM = 1, SL__TPD = 2, SL__NWIN = 3 };

static const struct {
  const char *limit; /* the config's name, shown in refusals */
  const char *tag;   /* in the dictionary keys */
  int64_t ms;        /* the window's length */
} sl__win[SL__NWIN] = {
    {"requests_per_minute", "rpm", 60000},
    {"tokens_per_minute", "tpm", 60000},
    {"tokens_per_day", "tpd", 86400000},
};

static int64_t sl__win_limit(const sl_tenant_t *t, int w) {
  return w == SL__RPM ? t->rpm : w == SL__TPM ? t->tpm : t->tpd;
}

static size_t sl__id_key(char *buf, size_t cap, const sl_tenant_t *t, int w) {
  return (size_t)snprintf(buf, cap, "t:%s:%s", t->name, sl__win[w].tag);
}

static size_t sl__count_key(char *buf, size_t cap, const sl_tenant_t *t, int w, uint64_t id) {
  return (size_t)snprintf(buf, cap, "t:%s:%s:%" PRIu64, t->name, sl__win[w].tag, id);
}

/* Reads the decimal integer at key.  Returns 0, SL_ENOTFOUND, SL_EPARSE
 * (not "-?[0-9]+", e.g. a key someone else wrote), or the dictionary's error. */
static int sl__get_int(sl_ttldict_t *d, const char *key, size_t klen, int64_t *out) {
  char buf[24];
  size_t n = 0;
  int rc = sl_ttldict_get(d, key, klen, buf, sizeof(buf) - 1, &n);
  if (rc == SL_ETOOBIG) return SL_EPARSE;
  if (rc < 0) return rc;
  buf[n] = '\0';
  size_t i = buf[0] == '-' ? 1 : 0;
  if (i == n) return SL_EPARSE;
  int64_t v = 0;
  for (; i < n; i++) {
    if (buf[i] < '0' || buf[i] > '9' || v > (INT64_MAX - 9) / 10) return SL_EPARSE;
    v = v * 10 + (buf[i] - '0');
  }
  *out = buf[0] == '-' ? -v : v;
  return 0;
}

/* The window w now: its id (0 when none is open), what it counted and its
 * remaining lifetime (the full length when none is open: one would open
 * now).  Changes nothing. */
static int sl__win_read(const sl_tenant_t *t, sl_ttldict_t *d, int w, uint64_t *id, int64_t *used,
                        int64_t *left_ms) {
  char key[SL_TENANT_NAME_MAX + 48];
  size_t klen = sl__id_key(key, sizeof(key), t, w);
  int64_t v = 0;
  *id = 0;
  *used = 0;
  *left_ms = sl__win[w].ms;
  int rc = sl__get_int(d, key, klen, &v);
  if (rc == SL_ENOTFOUND) return 0;
  if (rc < 0) return rc;
  if (v <= 0) return SL_EPARSE;
  rc = sl_ttldict_ttl(d, key, klen, left_ms);
  if (rc == SL_ENOTFOUND) {
    *left_ms = sl__win[w].ms;
    return 0;
  }
  if (rc < 0) return rc;
  *id = (uint64_t)v;
  klen = sl__count_key(key, sizeof(key), t, w, *id);
  rc = sl__get_int(d, key, klen, used);
  if (rc == SL_ENOTFOUND) {
    *used = 0;
    return 0;
  }
  return rc;
}

/* What sl__win_count did, so that it can be undone. */
typedef struct {
  uint64_t id;        /* the window counted in */
  int opened;         /* this call opened the window (made its id key) */
  int made_counter;   /* the counter held nothing before */
  int64_t by;         /* added to the counter */
} sl__undo_t;

/* Counts `by` in window w, opening it when none is open.  On failure
 * nothing is left changed. */
static int sl__win_count(const sl_tenant_t *t, sl_ttldict_t *d, int w, int64_t by, sl__undo_t *u) {
  char key[SL_TENANT_NAME_MAX + 48], num[24];
  size_t klen = sl__id_key(key, sizeof(key), t, w);
  int64_t v = 0, left = 0;
  memset(u, 0, sizeof(*u));
  /* The window is read again: with a running clock the one read before may
   * have closed in between, and then a new one opens here. */
  int rc = sl__get_int(d, key, klen, &v);
  if (rc == 0 && v > 0 && (rc = sl_ttldict_ttl(d, key, klen, &left)) == 0) {
    u->id = (uint64_t)v;
  } else if (rc == SL_ENOTFOUND) {
    int added = 0;
    u->id = sl_ttldict_now(d) + 1;
    left = sl__win[w].ms;
    int nlen = snprintf(num, sizeof(num), "%" PRIu64, u->id);
    if ((rc = sl_ttldict_add(d, key, klen, num, (size_t)nlen, left, &added)) < 0) return rc;
    if (!added) return SL_EINVAL; /* one loop owns the dictionary: nobody can have added it in between */
    u->opened = 1;
  } else {
    return rc < 0 ? rc : SL_EPARSE;
  }
  char ckey[SL_TENANT_NAME_MAX + 48];
  size_t clen = sl__count_key(ckey, sizeof(ckey), t, w, u->id);
  const int64_t zero = 0;
  int64_t now = 0;
  /* The counter lives exactly as long as its window. */
  rc = sl_ttldict_incr(d, ckey, clen, by, &zero, left, &now);
  if (rc < 0) {
    if (u->opened) sl_ttldict_delete(d, key, klen);
    return rc;
  }
  u->made_counter = now == by;
  u->by = by;
  return 0;
}

static void sl__win_undo(const sl_tenant_t *t, sl_ttldict_t *d, int w, const sl__undo_t *u) {
  char key[SL_TENANT_NAME_MAX + 48];
  size_t klen = sl__count_key(key, sizeof(key), t, w, u->id);
  /* A counter this call made goes; one that was there gets back its value
   * (a decrement never needs more room). */
  if (u->made_counter) sl_ttldict_delete(d, key, klen);
  else sl_ttldict_incr(d, key, klen, -u->by, NULL, 0, NULL);
  if (u->opened) {
    klen = sl__id_key(key, sizeof(key), t, w);
    sl_ttldict_delete(d, key, klen);
  }
}

/* A failing dictionary is not a limit: it is reported with its own code
 * (a full dictionary, SL_ETOOBIG there, becomes SL_ENOMEM here, so that
 * SL_ETOOBIG from sl_tenant_admit always means "over a limit"). */
static int sl__dict_failed(const sl_tenant_t *t, int w, int rc, sl_tenant_refusal_t *why) {
  why->status = 503;
  why->limit = NULL;
  why->retry_after_ms = 0;
  if (rc == SL_ETOOBIG)
    snprintf(why->message, sizeof(why->message),
             "tenant %s: the dictionary that keeps the limit windows is full (no room for %s); "
             "the request was not counted",
             t->name, sl__win[w].limit);
  else
    snprintf(why->message, sizeof(why->message),
             "tenant %s: the dictionary that keeps the limit windows failed on %s (%s); "
             "the request was not counted",
             t->name, sl__win[w].limit, sl_strerror(rc));
  return rc == SL_ETOOBIG ? SL_ENOMEM : rc;
}

/* A limit kept in Redis that Redis cannot answer now, and that fails
 * closed: 503 with a short Retry-After (the client retries; the limit is
 * not the reason). */
static int sl__shared_closed(sl_tenant_t *t, int w, sl_tenant_refusal_t *why) {
  t->usage.shared_fail_closed++;
  why->status = 503;
  why->limit = sl__win[w].limit;
  why->retry_after_ms = 1000;
  snprintf(why->message, sizeof(why->message),
           "tenant %s's %s is kept in Redis, which cannot answer now, and that limit fails closed; "
           "the request was not counted",
           t->name, sl__win[w].limit);
  return SL_EAGAIN;
}

int sl_tenant_admit(sl_tenant_t *t, sl_ttldict_t *d, int64_t prompt_estimate, int64_t max_tokens,
                    int64_t context_left, sl_tenant_resv_t *res, sl_tenant_refusal_t *why) {
  if (res) memset(res, 0, sizeof(*res));
  if (why) memset(why, 0, sizeof(*why));
  if (t == NULL || d == NULL || res == NULL || why == NULL) return SL_EINVAL;

  int64_t cap = t->max_tokens > 0 ? t->max_tokens : SL_TENANT_MAX_TOKENS_DEFAULT;
  int64_t completion = max_tokens > 0 ? max_tokens : context_left > 0 ? context_left : cap;
  if (completion > cap) completion = cap;
  int64_t prompt = prompt_estimate > 0 ? prompt_estimate : 0;
  if (prompt > SL__LIMIT_MAX) prompt = SL__LIMIT_MAX; /* keeps every sum below int64's range */
  int64_t tokens = prompt + completion;
  const int64_t need[SL__NWIN] = {1, tokens, tokens};

  /* Every window is read before any is counted in: a refused request must
   * leave all of them as they were. */
  uint64_t id[SL__NWIN];
  int64_t used[SL__NWIN], left[SL__NWIN];
  int shared[SL__NWIN] = {0, 0, 0};
  int refused = -1;
  for (int w = 0; w < SL__NWIN; w++) {
    int64_t limit = sl__win_limit(t, w);
    if (limit <= 0) continue;
    if (t->shared[w] != NULL) {
      int src = sl_shwin_check(t->shared[w], need[w], &used[w], &left[w]);
      if (src != SL_EAGAIN) {
        shared[w] = 1;
        if (src == SL_ETOOBIG && (refused < 0 || left[w] > left[refused])) refused = w;
        continue;
      }
      if (t->fail_closed[w]) return sl__shared_closed(t, w, why);
      t->usage.shared_fail_open++;
    }
    int rc = sl__win_read(t, d, w, &id[w], &used[w], &left[w]);
    if (rc < 0) return sl__dict_failed(t, w, rc, why);
    /* When several windows refuse, the one that stays shut longest says
     * when a retry can succeed. */
    if (need[w] > limit - used[w] && (refused < 0 || left[w] > left[refused])) refused = w;
  }
  if (refused >= 0) {
    int w = refused;
    int64_t limit = sl__win_limit(t, w);
    int64_t secs = (left[w] + 999) / 1000;
    why->status = 429;
    why->limit = sl__win[w].limit;
    if (need[w] > limit) {
      /* No window will ever hold it: waiting does not help. */
      why->retry_after_ms = 0;
      snprintf(why->message, sizeof(why->message),
               "tenant %s's %s limit (%" PRId64 ") is smaller than this request (%" PRId64 " tokens: %" PRId64
               " prompt + %" PRId64 " completion); ask for fewer max_tokens",
               t->name, why->limit, limit, tokens, prompt, completion);
    } else {
      why->retry_after_ms = (uint64_t)left[w];
      if (w == SL__RPM)
        snprintf(why->message, sizeof(why->message),
                 "tenant %s is over its %s limit (%" PRId64 "; %" PRId64 " used); the window resets in %" PRId64
                 " s",
                 t->name, why->limit, limit, used[w], secs);
      else
        snprintf(why->message, sizeof(why->message),
                 "tenant %s is over its %s limit (%" PRId64 "; this request needs %" PRId64 ", %" PRId64
                 " used); the window resets in %" PRId64 " s",
                 t->name, why->limit, limit, need[w], used[w], secs);
    }
    t->usage.refused_429++;
    return SL_ETOOBIG;
  }

  sl__undo_t undo[SL__NWIN];
  for (int w = 0; w < SL__NWIN; w++) {
    undo[w].id = 0;
    if (sl__win_limit(t, w) <= 0 || shared[w]) continue;
    int rc = sl__win_count(t, d, w, need[w], &undo[w]);
    if (rc < 0) {
      for (int v = 0; v < w; v++)
        if (undo[v].id != 0) sl__win_undo(t, d, v, &undo[v]);
      return sl__dict_failed(t, w, rc, why);
    }
  }
  /* Shared windows count last: nothing local can fail after them. */
  for (int w = 0; w < SL__NWIN; w++)
    if (shared[w]) {
      sl_shwin_add(t->shared[w], need[w]);
      res->shared[w] = 1;
    }
  res->active = 1;
  res->prompt = prompt;
  res->completion = completion;
  res->tpm_window = undo[SL__TPM].id;
  res->tpd_window = undo[SL__TPD].id;
  t->usage.requests++;
  t->usage.reserved_tokens += tokens;
  return 0;
}

/* Adds delta to the counter of window `id` of w.  The counter's key carries
 * the id and expires with its window, so once that window has closed the
 * counter is gone and, incremented without init, stays gone: a later
 * window is never touched. */
static void sl__win_settle(const sl_tenant_t *t, sl_ttldict_t *d, int w, uint64_t id, int64_t delta) {
  if (id == 0 || delta == 0) return;
  char key[SL_TENANT_NAME_MAX + 48];
  size_t klen = sl__count_key(key, sizeof(key), t, w, id);
  /* A failure (a full dictionary for a longer number) loses only this
   * correction. */
  sl_ttldict_incr(d, key, klen, delta, NULL, 0, NULL);
}

void sl_tenant_settle(sl_tenant_t *t, sl_ttldict_t *d, sl_tenant_resv_t *res, int64_t prompt_tokens,
                      int64_t completion_tokens, int cut) {
  if (t == NULL || res == NULL || !res->active) return;
  res->active = 0;
  if (prompt_tokens < 0) prompt_tokens = 0;
  if (completion_tokens < 0) completion_tokens = 0;
  if (prompt_tokens > SL__LIMIT_MAX) prompt_tokens = SL__LIMIT_MAX;
  if (completion_tokens > SL__LIMIT_MAX) completion_tokens = SL__LIMIT_MAX;
  int64_t reserved = res->prompt + res->completion;
  int64_t delta = prompt_tokens + completion_tokens - reserved;
  for (int w = SL__TPM; w <= SL__TPD; w++) {
    if (res->shared[w] && t->shared[w] != NULL) sl_shwin_add(t->shared[w], delta);
    else if (d != NULL) sl__win_settle(t, d, w, w == SL__TPM ? res->tpm_window : res->tpd_window, delta);
  }
  t->usage.prompt_tokens += (uint64_t)prompt_tokens;
  t->usage.completion_tokens += (uint64_t)completion_tokens;
  if (cut) t->usage.cut_streams++;
  t->usage.reserved_tokens -= reserved;
}
