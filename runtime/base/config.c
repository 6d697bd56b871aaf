/* config.c: JSON configuration parsing with errors that name the key. */
#include "runtime/base/config.h"

#include <cjson/cJSON.h>
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include <uv.h>

static const char sl__default_config[] =
    "{\n"
    "  \"listen\": \"127.0.0.1:8080\",\n"
    "  \"pools\": [\n"
    "    {\n"
    "      \"name\": \"sim\",\n"
    "      \"adapter\": \"openai\",\n"
    "      \"models\": [\"sim-small\", \"sim-large\"],\n"
    "      \"slots\": 16,\n"
    "      \"context_tokens\": 8192,\n"
    "      \"endpoints\": [\n"
    "        {\"sim\": {\"seed\": 1, \"ttft_ms\": 120, \"itl_ms\": 25}},\n"
    "        {\"sim\": {\"seed\": 2, \"ttft_ms\": 150, \"itl_ms\": 30}}\n"
    "      ]\n"
    "    }\n"
    "  ]\n"
    "}\n";

const char *sl_config_default_json(void) { return sl__default_config; }

typedef struct {
  char *err;
  size_t errlen;
  const sl_config_t *cfg;    /* what is parsed so far (the catalog comes before the pools) */
} sl__cfgctx_t;

static int sl__fail(sl__cfgctx_t *x, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(x->err, x->errlen, fmt, ap);
  va_end(ap);
  return SL_EINVAL;
}

int sl_parse_hostport(const char *s, char *host, size_t hostcap, int *port) {
  const char *colon = strrchr(s, ':');
  if (colon == NULL) return SL_EINVAL;
  const char *h = s;
  size_t hl = (size_t)(colon - s);
  if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  } else if (memchr(h, ':', hl) != NULL) {
    return SL_EINVAL; /* a bare IPv6 address needs brackets */
  }
  if (hl == 0) {
    h = "127.0.0.1";
    hl = strlen(h);
  }
  if (hl >= hostcap) return SL_EINVAL;
  char *end;
  errno = 0;
  long p = strtol(colon + 1, &end, 10);
  if (errno || *end != '\0' || end == colon + 1 || p < 0 || p > 65535) return SL_EINVAL;
  memcpy(host, h, hl);
  host[hl] = '\0';
  *port = (int)p;
  return 0;
}

/* Parses "http[s]://host[:port][/base]". */
static int sl__parse_url(const char *url, sl_endpoint_config_t *ep) {
  const char *p;
  if (strncmp(url, "http://", 7) == 0) {
    p = url + 7;
  } else if (strncmp(url, "https://", 8) == 0) {
    p = url + 8;
    ep->tls = 1;
  } else {
    return SL_EINVAL;
  }
  const char *slash = strchr(p, '/');
  size_t authlen = slash ? (size_t)(slash - p) : strlen(p);
  char auth[300];
  if (authlen == 0 || authlen >= sizeof(auth)) return SL_EINVAL;
  memcpy(auth, p, authlen);
  auth[authlen] = '\0';
  int has_port = auth[0] == '[' ? strstr(auth, "]:") != NULL : strchr(auth, ':') != NULL;
  if (has_port) {
    if (sl_parse_hostport(auth, ep->host, sizeof(ep->host), &ep->port) < 0 || ep->port == 0)
      return SL_EINVAL;
  } else {
    if (authlen >= sizeof(ep->host)) return SL_EINVAL;
    memcpy(ep->host, auth, authlen + 1);
    ep->port = ep->tls ? 443 : 80;
  }
  const char *base = slash ? slash : "";
  size_t bl = strlen(base);
  while (bl > 0 && base[bl - 1] == '/') bl--;
  if (bl >= sizeof(ep->base)) return SL_EINVAL;
  memcpy(ep->base, base, bl);
  ep->base[bl] = '\0';
  return 0;
}

/* Typed getters: each returns 0 if the key is absent (leaving *out), 1 if
 * read, or SL_EINVAL with the path in the message. */
static int sl__get_num(sl__cfgctx_t *x, const cJSON *obj, const char *key, const char *path, double min,
                       double max, double *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (v == NULL) return 0;
  if (!cJSON_IsNumber(v)) return sl__fail(x, "%s%s: expected a number", path, key);
  if (v->valuedouble < min || v->valuedouble > max)
    return sl__fail(x, "%s%s: %g is out of range [%g, %g]", path, key, v->valuedouble, min, max);
  *out = v->valuedouble;
  return 1;
}

static int sl__get_u64(sl__cfgctx_t *x, const cJSON *obj, const char *key, const char *path, double min,
                       double max, uint64_t *out) {
  double d = 0;
  int rc = sl__get_num(x, obj, key, path, min, max, &d);
  if (rc == 1) {
    if (d != (double)(uint64_t)d) return sl__fail(x, "%s%s: expected an integer", path, key);
    *out = (uint64_t)d;
  }
  return rc;
}

static int sl__get_size(sl__cfgctx_t *x, const cJSON *obj, const char *key, const char *path, double min,
                        double max, size_t *out) {
  uint64_t v = *out;
  int rc = sl__get_u64(x, obj, key, path, min, max, &v);
  *out = (size_t)v;
  return rc;
}

static int sl__get_int(sl__cfgctx_t *x, const cJSON *obj, const char *key, const char *path, double min,
                       double max, int *out) {
  uint64_t v = (uint64_t)(*out < 0 ? 0 : *out);
  int rc = sl__get_u64(x, obj, key, path, min, max, &v);
  *out = (int)v;
  return rc;
}

static int sl__get_str(sl__cfgctx_t *x, const cJSON *obj, const char *key, const char *path, char **out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (v == NULL || cJSON_IsNull(v)) return 0;
  if (!cJSON_IsString(v)) return sl__fail(x, "%s%s: expected a string", path, key);
  *out = sl_strndup(v->valuestring, strlen(v->valuestring));
  return 1;
}

/* Refuses keys not in the allowed list. */
static int sl__only_keys(sl__cfgctx_t *x, const cJSON *obj, const char *path, const char *const *allowed) {
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    int ok = 0;
    for (const char *const *a = allowed; *a; a++)
      if (strcmp(it->string, *a) == 0) ok = 1;
    if (!ok) return sl__fail(x, "%s%s: unknown key", path, it->string);
  }
  return 0;
}

#define SL__TRY(e) do { int sl__rc = (e); if (sl__rc < 0) return sl__rc; } while (0)

/* A "tls" object (path ends in "tls."): {ca_file, verify, server_name}.
 * The CA file is opened here so a wrong path is named at once; whether it
 * holds certificates is the registry's to say when it loads it. */
static int sl__parse_tls(sl__cfgctx_t *x, const cJSON *o, const char *path, sl_tls_config_t *t) {
  static const char *const keys[] = {"ca_file", "verify", "server_name", NULL};
  if (!cJSON_IsObject(o)) return sl__fail(x, "%.*s: expected an object", (int)strlen(path) - 1, path);
  SL__TRY(sl__only_keys(x, o, path, keys));
  t->verify = 1;
  SL__TRY(sl__get_str(x, o, "ca_file", path, &t->ca_file));
  if (t->ca_file != NULL) {
    FILE *f = t->ca_file[0] ? fopen(t->ca_file, "r") : NULL;
    if (f == NULL)
      return sl__fail(x, "%sca_file: cannot open \"%s\": %s", path, t->ca_file,
                      t->ca_file[0] ? strerror(errno) : "empty path");
    fclose(f);
  }
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "verify");
  if (v != NULL) {
    if (!cJSON_IsBool(v)) return sl__fail(x, "%sverify: expected true or false", path);
    t->verify = cJSON_IsTrue(v);
  }
  SL__TRY(sl__get_str(x, o, "server_name", path, &t->server_name));
  if (t->server_name != NULL && (t->server_name[0] == '\0' || strlen(t->server_name) > 253 ||
                                 strpbrk(t->server_name, " /:\t") != NULL))
    return sl__fail(x, "%sserver_name: \"%s\" is not a host name", path, t->server_name);
  if (!t->verify && t->ca_file != NULL)
    return sl__fail(x, "%sca_file: has no use with verify: false", path);
  return 0;
}

static char *sl__dup_or_null(const char *s) { return s ? sl_strndup(s, strlen(s)) : NULL; }

/* An endpoint's "models": names its pool lists (path ends in "."). */
static int sl__parse_ep_models(sl__cfgctx_t *x, const cJSON *e, const char *p, const sl_pool_config_t *pool,
                               sl_endpoint_config_t *ep) {
  const cJSON *models = cJSON_GetObjectItemCaseSensitive(e, "models");
  if (models == NULL) return 0;
  if (!cJSON_IsArray(models) || cJSON_GetArraySize(models) == 0)
    return sl__fail(x, "%smodels: expected a non-empty array of model names", p);
  const cJSON *m;
  cJSON_ArrayForEach(m, models) {
    if (!cJSON_IsString(m) || m->valuestring[0] == '\0')
      return sl__fail(x, "%smodels[%d]: expected a non-empty string", p, ep->nmodels);
    int listed = 0;
    for (int i = 0; i < pool->nmodels && !listed; i++)
      listed = strcmp(pool->models[i], m->valuestring) == 0 || strcmp(pool->models[i], "*") == 0;
    if (!listed)
      return sl__fail(x, "%smodels[%d]: \"%s\" is not one of the pool's models", p, ep->nmodels, m->valuestring);
    if (ep->nmodels == SL_MAX_MODELS) return sl__fail(x, "%smodels: more than %d", p, SL_MAX_MODELS);
    ep->models[ep->nmodels++] = sl_strndup(m->valuestring, strlen(m->valuestring));
  }
  return 0;
}

/* An endpoint's "managed" object (p ends in "managed."): the command and
 * how sluice runs it (runtime/gateway/engines.h). */
static int sl__parse_managed(sl__cfgctx_t *x, const cJSON *o, const char *p, sl_endpoint_config_t *ep) {
  static const char *const keys[] = {"command", "model", "port", "cwd", "env", "start_timeout_ms",
                                     "stop_grace_ms", NULL};
  if (!cJSON_IsObject(o)) return sl__fail(x, "%.*s: expected an object", (int)strlen(p) - 1, p);
  SL__TRY(sl__only_keys(x, o, p, keys));
  sl_managed_config_t *mg = &ep->mg;
  ep->managed = 1;
  mg->start_timeout_ms = 120000;
  mg->stop_grace_ms = 5000;
  const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(o, "command");
  if (!cJSON_IsArray(cmd) || cJSON_GetArraySize(cmd) == 0)
    return sl__fail(x, "%scommand: expected a non-empty array of strings (the program, then its arguments)", p);
  if (cJSON_GetArraySize(cmd) > SL_MANAGED_MAX_ARGS)
    return sl__fail(x, "%scommand: at most %d words", p, SL_MANAGED_MAX_ARGS);
  const cJSON *w;
  cJSON_ArrayForEach(w, cmd) {
    if (!cJSON_IsString(w) || (mg->argc == 0 && w->valuestring[0] == '\0'))
      return sl__fail(x, "%scommand[%d]: expected a%s string", p, mg->argc, mg->argc == 0 ? " non-empty" : "");
    mg->argv[mg->argc++] = sl_strndup(w->valuestring, strlen(w->valuestring));
  }
  SL__TRY(sl__get_str(x, o, "model", p, &mg->model));
  if (mg->model != NULL) {
    for (int i = 0; i < x->cfg->ncatalog && mg->model_path == NULL; i++)
      if (strcmp(x->cfg->catalog[i].name, mg->model) == 0) mg->model_path = x->cfg->catalog[i].path;
    if (mg->model_path == NULL)
      return sl__fail(x, "%smodel: \"%s\" is not in catalog.models", p, mg->model);
  }
  for (int i = 0; i < mg->argc; i++)
    if (strstr(mg->argv[i], "{model_path}") != NULL && mg->model_path == NULL)
      return sl__fail(x, "%scommand[%d]: uses {model_path} but \"model\" names no catalog model", p, i);
  int port = 0;
  SL__TRY(sl__get_int(x, o, "port", p, 0, 65535, &port));
  if (port != 0) {
    if (ep->url != NULL && port != ep->port)
      return sl__fail(x, "%sport: %d is not the url's port %d", p, port, ep->port);
    ep->port = port;
  }
  SL__TRY(sl__get_str(x, o, "cwd", p, &mg->cwd));
  if (mg->cwd != NULL && mg->cwd[0] == '\0') return sl__fail(x, "%scwd: expected a folder", p);
  const cJSON *env = cJSON_GetObjectItemCaseSensitive(o, "env");
  if (env != NULL) {
    if (!cJSON_IsObject(env)) return sl__fail(x, "%senv: expected an object of strings", p);
    const cJSON *v;
    cJSON_ArrayForEach(v, env) {
      if (!cJSON_IsString(v)) return sl__fail(x, "%senv.%s: expected a string", p, v->string);
      if (v->string[0] == '\0' || strchr(v->string, '=') != NULL)
        return sl__fail(x, "%senv.%s: not a variable name", p, v->string);
      if (mg->nenv == SL_MANAGED_MAX_ENV) return sl__fail(x, "%senv: at most %d variables", p, SL_MANAGED_MAX_ENV);
      size_t n = strlen(v->string) + 1 + strlen(v->valuestring);
      char *kv = sl_malloc(n + 1);
      snprintf(kv, n + 1, "%s=%s", v->string, v->valuestring);
      mg->env[mg->nenv++] = kv;
    }
  }
  SL__TRY(sl__get_u64(x, o, "start_timeout_ms", p, 1, 3600000, &mg->start_timeout_ms));
  SL__TRY(sl__get_u64(x, o, "stop_grace_ms", p, 0, 600000, &mg->stop_grace_ms));
  if (ep->url == NULL) {
    snprintf(ep->host, sizeof(ep->host), "127.0.0.1");
    ep->base[0] = '\0';
  }
  return 0;
}

static int sl__parse_endpoint(sl__cfgctx_t *x, const cJSON *e, const char *path, sl_pool_config_t *pool,
                              sl_endpoint_config_t *ep) {
  static const char *const keys[] = {"url", "sim", "slots", "tls", "managed", "models", NULL};
  if (!cJSON_IsObject(e)) return sl__fail(x, "%s: expected an object", path);
  char p[128];
  snprintf(p, sizeof(p), "%s.", path);
  SL__TRY(sl__only_keys(x, e, p, keys));
  ep->slots = pool->slots;
  SL__TRY(sl__get_int(x, e, "slots", p, 1, 100000, &ep->slots));
  SL__TRY(sl__parse_ep_models(x, e, p, pool, ep));
  const cJSON *sim = cJSON_GetObjectItemCaseSensitive(e, "sim");
  const cJSON *managed = cJSON_GetObjectItemCaseSensitive(e, "managed");
  SL__TRY(sl__get_str(x, e, "url", p, &ep->url));
  if ((sim != NULL && (ep->url != NULL || managed != NULL)) || (ep->url == NULL && sim == NULL && managed == NULL))
    return sl__fail(x, "%s: give exactly one of \"url\", \"managed\" (with or without \"url\") or \"sim\"", path);
  if (ep->url != NULL) {
    if (sl__parse_url(ep->url, ep) < 0)
      return sl__fail(x, "%surl: \"%s\" is not an http[s]://host:port[/base] URL", p, ep->url);
  }
  if (managed != NULL) {
    if (ep->tls) return sl__fail(x, "%surl: a managed engine is spoken to over http://, not https://", p);
    char mp[140];
    snprintf(mp, sizeof(mp), "%smanaged.", p);
    SL__TRY(sl__parse_managed(x, managed, mp, ep));
  }
  if (ep->url != NULL || managed != NULL) {
    const cJSON *tls = cJSON_GetObjectItemCaseSensitive(e, "tls");
    if (tls != NULL && !ep->tls)
      return sl__fail(x, "%stls: only an https:// url speaks TLS (\"%s\")", p, ep->url ? ep->url : "managed");
    if (tls != NULL) {
      char tp[140];
      snprintf(tp, sizeof(tp), "%stls.", p);
      return sl__parse_tls(x, tls, tp, &ep->tls_cfg);
    }
    /* The pool's defaults, copied so each endpoint owns what it frees. */
    ep->tls_cfg.verify = pool->has_tls ? pool->tls.verify : 1;
    ep->tls_cfg.ca_file = sl__dup_or_null(pool->tls.ca_file);
    ep->tls_cfg.server_name = sl__dup_or_null(pool->tls.server_name);
    return 0;
  }
  if (cJSON_GetObjectItemCaseSensitive(e, "tls") != NULL)
    return sl__fail(x, "%stls: only an https:// url speaks TLS", p);
  if (!cJSON_IsObject(sim)) return sl__fail(x, "%ssim: expected an object", p);
  ep->is_sim = 1;
  sl_sim_config_default(&ep->sim);
  char simerr[256];
  if (sl_sim_config_from_json(&ep->sim, sim, simerr, sizeof(simerr)) < 0)
    return sl__fail(x, "%ssim: %s", p, simerr);
  /* The simulated engine serves the endpoint's models (else its pool's)
   * and slots. */
  ep->sim.nmodels = 0;
  char *const *models = ep->nmodels > 0 ? ep->models : pool->models;
  int nmodels = ep->nmodels > 0 ? ep->nmodels : pool->nmodels;
  for (int i = 0; i < nmodels && i < SL_SIM_MAX_MODELS; i++) {
    snprintf(ep->sim.models[i], sizeof(ep->sim.models[i]), "%s", models[i]);
    ep->sim.nmodels++;
  }
  ep->sim.slots = ep->slots;
  snprintf(ep->host, sizeof(ep->host), "127.0.0.1");
  ep->port = 0;
  ep->base[0] = '\0';
  return 0;
}

static int sl__parse_pool(sl__cfgctx_t *x, const cJSON *o, int idx, sl_pool_config_t *pool) {
  static const char *const keys[] = {"name", "adapter", "models", "slots", "context_tokens",
                                     "api_key", "endpoints", "guards", "transcripts", "queue_size",
                                     "queue_timeout_ms", "limits", "tls", "swap", NULL};
  static const char *const limits[] = {"adaptive", "min", "max", "initial", NULL};
  static const char *const swap[] = {"max_running", "idle_timeout_ms", NULL};
  char p[64];
  snprintf(p, sizeof(p), "pools[%d].", idx);
  if (!cJSON_IsObject(o)) return sl__fail(x, "pools[%d]: expected an object", idx);
  SL__TRY(sl__only_keys(x, o, p, keys));
  if (sl__get_str(x, o, "name", p, &pool->name) <= 0)
    return x->err[0] ? SL_EINVAL : sl__fail(x, "%sname: required", p);
  SL__TRY(sl__get_str(x, o, "adapter", p, &pool->adapter));
  /* Which names exist is the adapter table's to say (upstream/adapter.c,
   * a layer above this one): the registry refuses an unknown one, naming
   * this key, when the gateway opens, and so does `sluice check`. */
  if (pool->adapter == NULL) pool->adapter = sl_strndup("openai", 6);
  SL__TRY(sl__get_str(x, o, "api_key", p, &pool->api_key));
  const cJSON *tls = cJSON_GetObjectItemCaseSensitive(o, "tls");
  if (tls != NULL) {
    char tp[80];
    snprintf(tp, sizeof(tp), "%stls.", p);
    SL__TRY(sl__parse_tls(x, tls, tp, &pool->tls));
    pool->has_tls = 1;
  }
  pool->slots = 8;
  SL__TRY(sl__get_int(x, o, "slots", p, 1, 100000, &pool->slots));
  SL__TRY(sl__get_int(x, o, "context_tokens", p, 0, 1e9, &pool->context_tokens));
  const cJSON *models = cJSON_GetObjectItemCaseSensitive(o, "models");
  if (!cJSON_IsArray(models) || cJSON_GetArraySize(models) == 0)
    return sl__fail(x, "%smodels: expected a non-empty array of model names", p);
  const cJSON *m;
  cJSON_ArrayForEach(m, models) {
    if (!cJSON_IsString(m) || m->valuestring[0] == '\0')
      return sl__fail(x, "%smodels[%d]: expected a non-empty string", p, pool->nmodels);
    if (pool->nmodels == SL_MAX_MODELS) return sl__fail(x, "%smodels: more than %d", p, SL_MAX_MODELS);
    pool->models[pool->nmodels++] = sl_strndup(m->valuestring, strlen(m->valuestring));
  }
  /* Guards are compiled (and every key checked) by the guard layer, when
   * the gateway opens and by `sluice check`; here only their shape. */
  const cJSON *guards = cJSON_GetObjectItemCaseSensitive(o, "guards");
  if (guards != NULL && !cJSON_IsNull(guards)) {
    if (!cJSON_IsObject(guards)) return sl__fail(x, "%sguards: expected an object", p);
    char *txt = cJSON_PrintUnformatted(guards);
    pool->guards_json = sl_strndup(txt, strlen(txt));
    cJSON_free(txt);
  }
  SL__TRY(sl__get_num(x, o, "transcripts", p, 0, 1, &pool->transcripts));
  /* Admission: unset takes the top-level value (sl__parse_doc fills it in). */
  pool->queue_size = -1;
  pool->queue_timeout_ms = UINT64_MAX;
  if (cJSON_GetObjectItemCaseSensitive(o, "queue_size") != NULL) /* (sl__get_int reads -1 as 0) */
    SL__TRY(sl__get_int(x, o, "queue_size", p, 0, 1e7, &pool->queue_size));
  SL__TRY(sl__get_u64(x, o, "queue_timeout_ms", p, 0, 3600000, &pool->queue_timeout_ms));
  pool->limit_adaptive = 1;
  pool->limit_min = 1;
  const cJSON *lim = cJSON_GetObjectItemCaseSensitive(o, "limits");
  if (lim != NULL) {
    char lp[80];
    snprintf(lp, sizeof(lp), "%slimits.", p);
    if (!cJSON_IsObject(lim)) return sl__fail(x, "%slimits: expected an object", p);
    SL__TRY(sl__only_keys(x, lim, lp, limits));
    const cJSON *ad = cJSON_GetObjectItemCaseSensitive(lim, "adaptive");
    if (ad != NULL) {
      if (!cJSON_IsBool(ad)) return sl__fail(x, "%sadaptive: expected true or false", lp);
      pool->limit_adaptive = cJSON_IsTrue(ad);
    }
    SL__TRY(sl__get_int(x, lim, "min", lp, 1, 100000, &pool->limit_min));
    SL__TRY(sl__get_int(x, lim, "max", lp, 1, 100000, &pool->limit_max));
    SL__TRY(sl__get_int(x, lim, "initial", lp, 1, 100000, &pool->limit_initial));
    if (pool->limit_max > 0 && pool->limit_max < pool->limit_min)
      return sl__fail(x, "%smax: must be at least %smin (%d)", lp, lp, pool->limit_min);
    if (pool->limit_initial > 0 &&
        (pool->limit_initial < pool->limit_min || (pool->limit_max > 0 && pool->limit_initial > pool->limit_max)))
      return sl__fail(x, "%sinitial: must lie in [min, max]", lp);
  }
  const cJSON *eps = cJSON_GetObjectItemCaseSensitive(o, "endpoints");
  if (!cJSON_IsArray(eps) || cJSON_GetArraySize(eps) == 0)
    return sl__fail(x, "%sendpoints: expected a non-empty array", p);
  const cJSON *e;
  cJSON_ArrayForEach(e, eps) {
    if (pool->nendpoints == SL_MAX_ENDPOINTS)
      return sl__fail(x, "%sendpoints: more than %d", p, SL_MAX_ENDPOINTS);
    char ep[96];
    snprintf(ep, sizeof(ep), "%sendpoints[%d]", p, pool->nendpoints);
    SL__TRY(sl__parse_endpoint(x, e, ep, pool, &pool->endpoints[pool->nendpoints++]));
  }
  /* Endpoint "models" may narrow what an endpoint serves, not leave a
   * pool model with no endpoint at all (its requests could only wait). */
  for (int m = 0; m < pool->nmodels; m++) {
    int served = 0;
    for (int j = 0; j < pool->nendpoints && !served; j++) {
      const sl_endpoint_config_t *ec = &pool->endpoints[j];
      served = ec->nmodels == 0;
      for (int k = 0; k < ec->nmodels && !served; k++)
        served = strcmp(ec->models[k], pool->models[m]) == 0 || strcmp(ec->models[k], "*") == 0;
    }
    if (!served)
      return sl__fail(x, "%smodels[%d]: \"%s\" is served by none of the pool's endpoints (their \"models\")", p, m,
                      pool->models[m]);
  }
  const cJSON *sw = cJSON_GetObjectItemCaseSensitive(o, "swap");
  if (sw != NULL) {
    char sp[80];
    snprintf(sp, sizeof(sp), "%sswap.", p);
    if (!cJSON_IsObject(sw)) return sl__fail(x, "%sswap: expected an object", p);
    SL__TRY(sl__only_keys(x, sw, sp, swap));
    pool->swap = 1;
    pool->swap_max_running = 1;
    pool->swap_idle_ms = 0;
    SL__TRY(sl__get_int(x, sw, "max_running", sp, 1, SL_MAX_ENDPOINTS, &pool->swap_max_running));
    SL__TRY(sl__get_u64(x, sw, "idle_timeout_ms", sp, 0, 86400000, &pool->swap_idle_ms));
    for (int j = 0; j < pool->nendpoints; j++)
      if (!pool->endpoints[j].managed)
        return sl__fail(x, "%sswap: endpoints[%d] is not \"managed\" (a swap pool starts and stops its engines)", p,
                        j);
  }
  return 0;
}

/* "workers": an integer from 1 to SL_WORKERS_MAX, or "auto" for one per
 * CPU the process may use (at most SL_WORKERS_MAX). */
static int sl__parse_workers(sl__cfgctx_t *x, const cJSON *root, int *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "workers");
  if (v == NULL) return 0;
  if (cJSON_IsString(v)) {
    if (strcmp(v->valuestring, "auto") != 0)
      return sl__fail(x, "workers: expected an integer from 1 to %d or \"auto\", not \"%.64s\"", SL_WORKERS_MAX,
                      v->valuestring);
    unsigned n = uv_available_parallelism();
    *out = n < 1 ? 1 : n > SL_WORKERS_MAX ? SL_WORKERS_MAX : (int)n;
    return 1;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble || v->valuedouble < 1 ||
      v->valuedouble > SL_WORKERS_MAX) {
    char shown[64];
    if (cJSON_IsNumber(v))
      snprintf(shown, sizeof(shown), "%g", v->valuedouble);
    else
      snprintf(shown, sizeof(shown), "a %s", cJSON_IsBool(v) ? "boolean" : cJSON_IsNull(v) ? "null"
                                             : cJSON_IsArray(v) ? "array" : "object");
    return sl__fail(x, "workers: expected an integer from 1 to %d or \"auto\", not %s", SL_WORKERS_MAX, shown);
  }
  *out = (int)v->valuedouble;
  return 1;
}

static void sl__defaults(sl_config_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
  cfg->listen_port = 8080;
  sl_http_limits_default(&cfg->http);
  cfg->heartbeat_ms = 10000;
  cfg->chunk_size = 16384;
  cfg->chunk_keep = 1024;
  cfg->max_event_bytes = 16384;
  cfg->connect_timeout_ms = 2000;
  cfg->first_token_timeout_ms = 60000;
  cfg->idle_timeout_ms = 30000;
  cfg->total_timeout_ms = 600000;
  cfg->max_attempts = 3;
  cfg->backoff_base_ms = 50;
  cfg->backoff_max_ms = 2000;
  cfg->keepalive_per_endpoint = 64;
  cfg->upstream_keepalive_ms = 30000;
  cfg->health_interval_ms = 2000;
  cfg->health_timeout_ms = 1000;
  cfg->health_path[0] = '\0'; /* each pool's adapter's own (/health for openai) */
  cfg->cooldown_base_ms = 1000;
  cfg->cooldown_max_ms = 30000;
  cfg->cooldown_after_failures = 3;
  cfg->drain_timeout_ms = 30000;
  cfg->workers = 1;
  snprintf(cfg->placement_policy, sizeof(cfg->placement_policy), "least_loaded");
  cfg->placement_watch = 1;
  snprintf(cfg->narration_policy, sizeof(cfg->narration_policy), "narration");
  cfg->lua_memory_limit = 64u << 20;
  cfg->lua_budget = SL_BUDGET_DEFAULT;
  cfg->lua_load_budget = SL_BUDGET_LOAD_DEFAULT;
  cfg->watchdog_warn_ms = 2000;
  cfg->watchdog_abort_ms = 20000;
  cfg->dynamics_enabled = 1;
  cfg->dynamics_interval_ms = 5000;
  cfg->dynamics_min_samples = 128;
  cfg->pipe_flush_bytes = 256;
  cfg->pipe_flush_ms = 20;
  cfg->pipe_memory_limit = 16u << 20;
  cfg->pipe_budget = 200000;
  cfg->pipe_load_budget = 5000000;
  cfg->transcript_max_bytes = 4u << 20;
  cfg->queue_size = 1024;
  cfg->queue_timeout_ms = 30000;
  cfg->stream_memory_budget = (size_t)512 << 20;
  cfg->slow_client_ms = 10000;
  cfg->task_grace_ms = 60000;
  cfg->task_ring_bytes = 256u << 10;
  cfg->task_metrics_tokens = 32;
  cfg->task_max = 1024;
  snprintf(cfg->limit_rule, sizeof(cfg->limit_rule), "gradient");
  cfg->limit_interval_ms = 1000;
  cfg->limit_cut = 0.75;
  cfg->metrics_enabled = 1;
  cfg->metrics_max_endpoints = 256;
  cfg->metrics_max_tenants = 256;
  cfg->lag_interval_ms = 100;
  snprintf(cfg->trace_service, sizeof(cfg->trace_service), "sluice");
  cfg->trace_batch_ms = 1000;
  cfg->trace_max_queue = 2048;
  cfg->trace_timeout_ms = 10000;
  cfg->redis_timeout_ms = 100;
  snprintf(cfg->redis_prefix, sizeof(cfg->redis_prefix), "sluice:");
  cfg->redis_batch_requests = 8;
  cfg->redis_batch_tokens = 8192;
}

/* "catalog": model files and their SHA-256 digests (docs/engines.md); the
 * gateway checks every file at start (gateway/catalog.h). */
static int sl__catalog(sl__cfgctx_t *x, sl_config_t *cfg, const cJSON *o) {
  static const char *const keys[] = {"dir", "models", NULL};
  static const char *const mkeys[] = {"name", "file", "sha256", NULL};
  if (!cJSON_IsObject(o)) return sl__fail(x, "catalog: expected an object with \"dir\" and \"models\"");
  SL__TRY(sl__only_keys(x, o, "catalog.", keys));
  char *dir = NULL;
  SL__TRY(sl__get_str(x, o, "dir", "catalog.", &dir));
  int bad = dir == NULL || dir[0] != '/' || strlen(dir) >= sizeof(cfg->catalog_dir);
  if (!bad) snprintf(cfg->catalog_dir, sizeof(cfg->catalog_dir), "%s", dir);
  sl_free(dir);
  if (bad) return sl__fail(x, "catalog.dir: expected the absolute path of the folder of model files");
  const cJSON *ms = cJSON_GetObjectItemCaseSensitive(o, "models");
  if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) == 0)
    return sl__fail(x, "catalog.models: expected a non-empty array of {\"name\", \"file\", \"sha256\"}");
  if (cJSON_GetArraySize(ms) > SL_MAX_CATALOG) return sl__fail(x, "catalog.models: at most %d models", SL_MAX_CATALOG);
  const cJSON *m;
  int i = 0;
  cJSON_ArrayForEach(m, ms) {
    char p[48];
    snprintf(p, sizeof(p), "catalog.models[%d].", i);
    if (!cJSON_IsObject(m)) return sl__fail(x, "catalog.models[%d]: expected an object", i);
    SL__TRY(sl__only_keys(x, m, p, mkeys));
    sl_catalog_entry_t *e = &cfg->catalog[i];
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(m, "file");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(m, "sha256");
    if (!cJSON_IsString(name) || name->valuestring[0] == '\0' || strlen(name->valuestring) >= sizeof(e->name))
      return sl__fail(x, "%sname: expected the model's name (1 to 127 bytes)", p);
    if (!cJSON_IsString(file) || file->valuestring[0] == '\0' || strstr(file->valuestring, "..") != NULL)
      return sl__fail(x, "%sfile: expected a file name inside catalog.dir", p);
    size_t sl = cJSON_IsString(sha) ? strlen(sha->valuestring) : 0;
    int hex = sl == 64 || (sl == 71 && strncmp(sha->valuestring, "sha256:", 7) == 0);
    const char *h = hex ? sha->valuestring + (sl == 71 ? 7 : 0) : "";
    for (int k = 0; hex && k < 64; k++)
      hex = (h[k] >= '0' && h[k] <= '9') || (h[k] >= 'a' && h[k] <= 'f') || (h[k] >= 'A' && h[k] <= 'F');
    if (!hex) return sl__fail(x, "%ssha256: expected 64 hex digits (\"sha256sum FILE\" prints them)", p);
    for (int k = 0; k < 64; k++) e->sha256[k] = (char)(h[k] >= 'A' && h[k] <= 'F' ? h[k] - 'A' + 'a' : h[k]);
    e->sha256[64] = '\0';
    snprintf(e->name, sizeof(e->name), "%s", name->valuestring);
    int n = file->valuestring[0] == '/'
                ? snprintf(e->path, sizeof(e->path), "%s", file->valuestring)
                : snprintf(e->path, sizeof(e->path), "%s/%s", cfg->catalog_dir, file->valuestring);
    if (n < 0 || (size_t)n >= sizeof(e->path)) return sl__fail(x, "%sfile: the path is too long", p);
    for (int k = 0; k < i; k++)
      if (strcmp(cfg->catalog[k].name, e->name) == 0)
        return sl__fail(x, "%sname: \"%s\" is already catalog.models[%d]", p, e->name, k);
    i++;
  }
  cfg->ncatalog = i;
  return 0;
}

/* "redis": where the state shared across processes and instances lives
 * (docs/scaling.md). */
static int sl__redis(sl__cfgctx_t *x, sl_config_t *cfg, const cJSON *o) {
  static const char *const keys[] = {"url", "timeout_ms", "prefix", "batch_requests", "batch_tokens", "fail", NULL};
  static const char *const limits[] = {"requests_per_minute", "tokens_per_minute", "tokens_per_day", NULL};
  if (!cJSON_IsObject(o)) return sl__fail(x, "redis: expected an object");
  SL__TRY(sl__only_keys(x, o, "redis.", keys));
  char *s = NULL;
  SL__TRY(sl__get_str(x, o, "url", "redis.", &s));
  if (s == NULL) return sl__fail(x, "redis.url: required (\"unix:/path/redis.sock\" or \"redis://host:port\")");
  int bad = strlen(s) >= sizeof(cfg->redis_url) || (strncmp(s, "unix:/", 6) != 0 && strncmp(s, "redis://", 8) != 0);
  if (!bad) snprintf(cfg->redis_url, sizeof(cfg->redis_url), "%s", s);
  sl_free(s);
  if (bad) return sl__fail(x, "redis.url: expected \"unix:/path/redis.sock\" or \"redis://host:port[/db]\"");
  s = NULL;
  SL__TRY(sl__get_str(x, o, "prefix", "redis.", &s));
  if (s != NULL) {
    bad = strlen(s) >= sizeof(cfg->redis_prefix) || strpbrk(s, " \t\r\n") != NULL;
    if (!bad) snprintf(cfg->redis_prefix, sizeof(cfg->redis_prefix), "%s", s);
    sl_free(s);
    if (bad) return sl__fail(x, "redis.prefix: expected at most 63 bytes without spaces");
  }
  SL__TRY(sl__get_u64(x, o, "timeout_ms", "redis.", 1, 60000, &cfg->redis_timeout_ms));
  int br = (int)cfg->redis_batch_requests, bt = (int)cfg->redis_batch_tokens;
  SL__TRY(sl__get_int(x, o, "batch_requests", "redis.", 1, 1000000, &br));
  SL__TRY(sl__get_int(x, o, "batch_tokens", "redis.", 1, 1000000000, &bt));
  cfg->redis_batch_requests = br;
  cfg->redis_batch_tokens = bt;
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "fail");
  if (f == NULL) return 0;
  if (cJSON_IsString(f)) {
    int closed = strcmp(f->valuestring, "closed") == 0;
    if (!closed && strcmp(f->valuestring, "open") != 0)
      return sl__fail(x, "redis.fail: expected \"open\" or \"closed\" (or an object of them per limit)");
    for (int i = 0; i < 3; i++) cfg->redis_fail_closed[i] = closed;
    return 0;
  }
  if (!cJSON_IsObject(f)) return sl__fail(x, "redis.fail: expected \"open\", \"closed\" or an object per limit");
  SL__TRY(sl__only_keys(x, f, "redis.fail.", limits));
  for (int i = 0; i < 3; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(f, limits[i]);
    if (v == NULL) continue;
    if (!cJSON_IsString(v) || (strcmp(v->valuestring, "open") != 0 && strcmp(v->valuestring, "closed") != 0))
      return sl__fail(x, "redis.fail.%s: expected \"open\" or \"closed\"", limits[i]);
    cfg->redis_fail_closed[i] = strcmp(v->valuestring, "closed") == 0;
  }
  return 0;
}

int sl_host_is_loopback(const char *host) {
  if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0) return 1;
  struct in_addr a;
  return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* "admin_http": "host:port", or {"listen": "host:port", "token": "..."}.
 * Off a loopback address the token is required: the view can drain
 * endpoints and shows every stream's tenant.  The token is redacted from
 * the log like log.secrets (it rides in URLs as ?token=). */
static int sl__admin_http(sl__cfgctx_t *x, sl_config_t *cfg, const cJSON *o) {
  static const char *const keys[] = {"listen", "token", NULL};
  const char *listen = NULL;
  const cJSON *tok = NULL;
  if (cJSON_IsString(o)) {
    listen = o->valuestring;
  } else if (cJSON_IsObject(o)) {
    SL__TRY(sl__only_keys(x, o, "admin_http.", keys));
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "listen");
    if (l == NULL || !cJSON_IsString(l)) return sl__fail(x, "admin_http.listen: expected a string \"HOST:PORT\"");
    listen = l->valuestring;
    tok = cJSON_GetObjectItemCaseSensitive(o, "token");
  } else {
    return sl__fail(x, "admin_http: expected \"HOST:PORT\" or an object {\"listen\", \"token\"}");
  }
  if (sl_parse_hostport(listen, cfg->admin_http_host, sizeof(cfg->admin_http_host), &cfg->admin_http_port) < 0)
    return sl__fail(x, "admin_http.listen: \"%.200s\" is not HOST:PORT", listen);
  if (tok != NULL && !cJSON_IsNull(tok)) {
    if (!cJSON_IsString(tok)) return sl__fail(x, "admin_http.token: expected a string");
    size_t n = strlen(tok->valuestring);
    if (n < SL_ADMIN_TOKEN_MIN || n > 256)
      return sl__fail(x, "admin_http.token: expected %d to 256 characters (got %zu)", SL_ADMIN_TOKEN_MIN, n);
    for (size_t i = 0; i < n; i++) {
      unsigned char c = (unsigned char)tok->valuestring[i];
      /* It travels in a header, a cookie and a query: printable ASCII with
       * no separators keeps it the same in all three. */
      if (c <= 0x20 || c >= 0x7f || c == ';' || c == ',' || c == '"' || c == '\\' || c == '&' || c == '%' ||
          c == '#' || c == '+' || c == '=')
        return sl__fail(x, "admin_http.token: character %zu is not allowed (use letters, digits, - _ . ~)", i);
    }
    cfg->admin_http_token = sl_strndup(tok->valuestring, n);
    cfg->log_secrets[cfg->nlog_secrets++] = sl_strndup(tok->valuestring, n); /* room for it: see config.h */
  }
  if (cfg->admin_http_token == NULL && !sl_host_is_loopback(cfg->admin_http_host))
    return sl__fail(x,
                    "admin_http.token: required when admin_http.listen (\"%.200s\") is not a loopback address: the "
                    "view can drain endpoints and shows every stream",
                    listen);
  cfg->admin_http = 1;
  return 0;
}

static int sl__parse_doc(sl__cfgctx_t *x, sl_config_t *cfg, const cJSON *root) {
  static const char *const top[] = {"listen", "heartbeat_ms", "http", "stream", "upstream", "health",
                                    "log", "drain_timeout_ms", "placement", "admin_socket", "lua", "narration",
                                    "watchdog", "dynamics", "pools", "tenants", "pipelines", "transcripts",
                                    "admission", "limits", "metrics", "tracing", "workers", "redis", "catalog",
                                    "tasks", "admin_http", NULL};
  static const char *const narration[] = {"policy", "enabled", NULL};
  static const char *const placement[] = {"policy", "watch", "config", NULL};
  static const char *const lua[] = {"memory_limit_bytes", "instruction_budget", "load_instruction_budget", NULL};
  static const char *const watchdog[] = {"warn_ms", "abort_ms", NULL};
  static const char *const http[] = {"max_header_bytes", "max_body_bytes", "header_timeout_ms",
                                     "idle_timeout_ms", "max_connections", NULL};
  static const char *const stream[] = {"high_watermark", "low_watermark", "chunk_size", "chunk_keep",
                                       "max_event_bytes", NULL};
  static const char *const up[] = {"connect_timeout_ms", "first_token_timeout_ms", "idle_timeout_ms",
                                   "total_timeout_ms", "max_attempts", "backoff_base_ms", "backoff_max_ms",
                                   "keepalive_per_endpoint", "keepalive_ms", NULL};
  static const char *const health[] = {"interval_ms", "timeout_ms", "path", "cooldown_base_ms",
                                       "cooldown_max_ms", "cooldown_after_failures", NULL};
  static const char *const log[] = {"format", "secrets", NULL};
  if (!cJSON_IsObject(root)) return sl__fail(x, "config: expected a JSON object at the top level");
  SL__TRY(sl__only_keys(x, root, "", top));
  char *listen = NULL;
  SL__TRY(sl__get_str(x, root, "listen", "", &listen));
  if (listen != NULL) {
    int rc = sl_parse_hostport(listen, cfg->listen_host, sizeof(cfg->listen_host), &cfg->listen_port);
    if (rc < 0) sl__fail(x, "listen: \"%s\" is not HOST:PORT", listen);
    sl_free(listen);
    if (rc < 0) return rc;
  }
  SL__TRY(sl__get_u64(x, root, "heartbeat_ms", "", 10, 3600000, &cfg->heartbeat_ms));
  SL__TRY(sl__get_u64(x, root, "drain_timeout_ms", "", 0, 3600000, &cfg->drain_timeout_ms));
  SL__TRY(sl__parse_workers(x, root, &cfg->workers));
  const cJSON *o;
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "http")) != NULL) {
    if (!cJSON_IsObject(o)) return sl__fail(x, "http: expected an object");
    SL__TRY(sl__only_keys(x, o, "http.", http));
    SL__TRY(sl__get_size(x, o, "max_header_bytes", "http.", 256, 1 << 24, &cfg->http.max_header_bytes));
    SL__TRY(sl__get_size(x, o, "max_body_bytes", "http.", 0, 1 << 30, &cfg->http.max_body_bytes));
    SL__TRY(sl__get_u64(x, o, "header_timeout_ms", "http.", 10, 3600000, &cfg->http.header_timeout_ms));
    SL__TRY(sl__get_u64(x, o, "idle_timeout_ms", "http.", 10, 3600000, &cfg->http.idle_timeout_ms));
    SL__TRY(sl__get_int(x, o, "max_connections", "http.", 1, 1000000, &cfg->http.max_connections));
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "stream")) != NULL) {
    if (!cJSON_IsObject(o)) return sl__fail(x, "stream: expected an object");
    SL__TRY(sl__only_keys(x, o, "stream.", stream));
    SL__TRY(sl__get_size(x, o, "high_watermark", "stream.", 1024, 1 << 30, &cfg->http.write_high_watermark));
    SL__TRY(sl__get_size(x, o, "low_watermark", "stream.", 0, 1 << 30, &cfg->http.write_low_watermark));
    SL__TRY(sl__get_size(x, o, "chunk_size", "stream.", 1024, 1 << 24, &cfg->chunk_size));
    SL__TRY(sl__get_size(x, o, "chunk_keep", "stream.", 0, 1 << 24, &cfg->chunk_keep));
    SL__TRY(sl__get_size(x, o, "max_event_bytes", "stream.", 1024, 1 << 26, &cfg->max_event_bytes));
    if (cfg->max_event_bytes > cfg->chunk_size)
      return sl__fail(x, "stream.max_event_bytes: must not exceed stream.chunk_size (%zu)", cfg->chunk_size);
    if (cfg->http.write_low_watermark >= cfg->http.write_high_watermark)
      return sl__fail(x, "stream.low_watermark: must be below stream.high_watermark");
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "upstream")) != NULL) {
    if (!cJSON_IsObject(o)) return sl__fail(x, "upstream: expected an object");
    SL__TRY(sl__only_keys(x, o, "upstream.", up));
    SL__TRY(sl__get_u64(x, o, "connect_timeout_ms", "upstream.", 1, 3600000, &cfg->connect_timeout_ms));
    SL__TRY(sl__get_u64(x, o, "first_token_timeout_ms", "upstream.", 1, 3600000, &cfg->first_token_timeout_ms));
    SL__TRY(sl__get_u64(x, o, "idle_timeout_ms", "upstream.", 1, 3600000, &cfg->idle_timeout_ms));
    SL__TRY(sl__get_u64(x, o, "total_timeout_ms", "upstream.", 1, 86400000, &cfg->total_timeout_ms));
    SL__TRY(sl__get_int(x, o, "max_attempts", "upstream.", 1, 20, &cfg->max_attempts));
    SL__TRY(sl__get_u64(x, o, "backoff_base_ms", "upstream.", 0, 60000, &cfg->backoff_base_ms));
    SL__TRY(sl__get_u64(x, o, "backoff_max_ms", "upstream.", 0, 600000, &cfg->backoff_max_ms));
    SL__TRY(sl__get_int(x, o, "keepalive_per_endpoint", "upstream.", 0, 100000, &cfg->keepalive_per_endpoint));
    SL__TRY(sl__get_u64(x, o, "keepalive_ms", "upstream.", 1, 3600000, &cfg->upstream_keepalive_ms));
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "health")) != NULL) {
    if (!cJSON_IsObject(o)) return sl__fail(x, "health: expected an object");
    SL__TRY(sl__only_keys(x, o, "health.", health));
    SL__TRY(sl__get_u64(x, o, "interval_ms", "health.", 10, 3600000, &cfg->health_interval_ms));
    SL__TRY(sl__get_u64(x, o, "timeout_ms", "health.", 10, 3600000, &cfg->health_timeout_ms));
    SL__TRY(sl__get_u64(x, o, "cooldown_base_ms", "health.", 1, 3600000, &cfg->cooldown_base_ms));
    SL__TRY(sl__get_u64(x, o, "cooldown_max_ms", "health.", 1, 3600000, &cfg->cooldown_max_ms));
    SL__TRY(sl__get_int(x, o, "cooldown_after_failures", "health.", 1, 1000, &cfg->cooldown_after_failures));
    char *path = NULL;
    SL__TRY(sl__get_str(x, o, "path", "health.", &path));
    if (path != NULL) {
      int bad = path[0] != '/' || strlen(path) >= sizeof(cfg->health_path);
      if (!bad) snprintf(cfg->health_path, sizeof(cfg->health_path), "%s", path);
      sl_free(path);
      if (bad) return sl__fail(x, "health.path: expected an absolute path such as \"/health\"");
    }
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "log")) != NULL) {
    if (!cJSON_IsObject(o)) return sl__fail(x, "log: expected an object");
    SL__TRY(sl__only_keys(x, o, "log.", log));
    char *fmt = NULL;
    SL__TRY(sl__get_str(x, o, "format", "log.", &fmt));
    if (fmt != NULL) {
      int ok = strcmp(fmt, "json") == 0 || strcmp(fmt, "human") == 0;
      cfg->log_json = strcmp(fmt, "json") == 0;
      sl_free(fmt);
      if (!ok) return sl__fail(x, "log.format: expected \"human\" or \"json\"");
    }
    const cJSON *sec = cJSON_GetObjectItemCaseSensitive(o, "secrets");
    if (sec != NULL) {
      const cJSON *it;
      if (!cJSON_IsArray(sec)) return sl__fail(x, "log.secrets: expected an array of strings");
      cJSON_ArrayForEach(it, sec) {
        if (!cJSON_IsString(it)) return sl__fail(x, "log.secrets[%d]: expected a string", cfg->nlog_secrets);
        if (cfg->nlog_secrets == 32) return sl__fail(x, "log.secrets: more than 32");
        cfg->log_secrets[cfg->nlog_secrets++] = sl_strndup(it->valuestring, strlen(it->valuestring));
      }
    }
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "placement")) != NULL) {
    if (!cJSON_IsObject(o)) return sl__fail(x, "placement: expected an object");
    SL__TRY(sl__only_keys(x, o, "placement.", placement));
    char *pol = NULL;
    SL__TRY(sl__get_str(x, o, "policy", "placement.", &pol));
    if (pol != NULL) {
      int bad = pol[0] == '\0' || strlen(pol) >= sizeof(cfg->placement_policy);
      if (!bad) snprintf(cfg->placement_policy, sizeof(cfg->placement_policy), "%s", pol);
      sl_free(pol);
      if (bad) return sl__fail(x, "placement.policy: expected a policy name or a path to a .lua file");
    }
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(o, "config");
    if (pc != NULL) {
      if (!cJSON_IsObject(pc)) return sl__fail(x, "placement.config: expected an object");
      char *text = cJSON_PrintUnformatted(pc);
      cfg->placement_config = sl_strndup(text, strlen(text));
      cJSON_free(text);
    }
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "watch");
    if (w != NULL) {
      if (!cJSON_IsBool(w)) return sl__fail(x, "placement.watch: expected true or false");
      cfg->placement_watch = cJSON_IsTrue(w);
    }
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "narration")) != NULL) {
    if (!cJSON_IsObject(o)) return sl__fail(x, "narration: expected an object");
    SL__TRY(sl__only_keys(x, o, "narration.", narration));
    char *pol = NULL;
    SL__TRY(sl__get_str(x, o, "policy", "narration.", &pol));
    if (pol != NULL) {
      int bad = pol[0] == '\0' || strlen(pol) >= sizeof(cfg->narration_policy);
      if (!bad) snprintf(cfg->narration_policy, sizeof(cfg->narration_policy), "%s", pol);
      sl_free(pol);
      if (bad) return sl__fail(x, "narration.policy: expected a policy name or a path to a .lua file");
    }
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(o, "enabled");
    if (en != NULL) {
      if (!cJSON_IsBool(en)) return sl__fail(x, "narration.enabled: expected true or false");
      if (cJSON_IsFalse(en)) cfg->narration_policy[0] = '\0';
    }
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "lua")) != NULL) {
    if (!cJSON_IsObject(o)) return sl__fail(x, "lua: expected an object");
    SL__TRY(sl__only_keys(x, o, "lua.", lua));
    SL__TRY(sl__get_size(x, o, "memory_limit_bytes", "lua.", 0, 1e12, &cfg->lua_memory_limit));
    /* lua_sethook counts in an int. */
    SL__TRY(sl__get_u64(x, o, "instruction_budget", "lua.", 1000, 2147483647.0, &cfg->lua_budget));
    SL__TRY(sl__get_u64(x, o, "load_instruction_budget", "lua.", 1000, 2147483647.0, &cfg->lua_load_budget));
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "watchdog")) != NULL) {
    if (!cJSON_IsObject(o)) return sl__fail(x, "watchdog: expected an object");
    SL__TRY(sl__only_keys(x, o, "watchdog.", watchdog));
    SL__TRY(sl__get_u64(x, o, "warn_ms", "watchdog.", 0, 3600000, &cfg->watchdog_warn_ms));
    SL__TRY(sl__get_u64(x, o, "abort_ms", "watchdog.", 0, 3600000, &cfg->watchdog_abort_ms));
    if (cfg->watchdog_abort_ms && cfg->watchdog_warn_ms && cfg->watchdog_abort_ms < cfg->watchdog_warn_ms)
      return sl__fail(x, "watchdog.abort_ms: must be at least watchdog.warn_ms (%llu)",
                      (unsigned long long)cfg->watchdog_warn_ms);
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "dynamics")) != NULL) {
    /* Timing dynamics per endpoint (runtime/gateway/timing.h): a verdict
     * needs at least the classifier's shortest series and at most a full
     * ring of gaps. */
    static const char *const dynamics[] = {"enabled", "interval_ms", "min_samples", NULL};
    if (!cJSON_IsObject(o)) return sl__fail(x, "dynamics: expected an object");
    SL__TRY(sl__only_keys(x, o, "dynamics.", dynamics));
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(o, "enabled");
    if (en != NULL) {
      if (!cJSON_IsBool(en)) return sl__fail(x, "dynamics.enabled: expected true or false");
      cfg->dynamics_enabled = cJSON_IsTrue(en);
    }
    SL__TRY(sl__get_u64(x, o, "interval_ms", "dynamics.", 10, 3600000, &cfg->dynamics_interval_ms));
    SL__TRY(sl__get_int(x, o, "min_samples", "dynamics.", SL_DYN_MIN_FLOOR, SL_DYN_RING, &cfg->dynamics_min_samples));
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "tenants")) != NULL && !cJSON_IsNull(o)) {
    /* Compiled (every key checked) by the tenant layer, when the gateway
     * opens and by `sluice check`; here only their shape. */
    if (!cJSON_IsArray(o)) return sl__fail(x, "tenants: expected an array");
    char *txt = cJSON_PrintUnformatted(o);
    cfg->tenants_json = sl_strndup(txt, strlen(txt));
    cJSON_free(txt);
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "pipelines")) != NULL) {
    static const char *const pipelines[] = {"flush_bytes", "flush_ms", "memory_limit_bytes", "instruction_budget",
                                            "load_instruction_budget", NULL};
    if (!cJSON_IsObject(o)) return sl__fail(x, "pipelines: expected an object");
    SL__TRY(sl__only_keys(x, o, "pipelines.", pipelines));
    SL__TRY(sl__get_size(x, o, "flush_bytes", "pipelines.", 1, 1 << 20, &cfg->pipe_flush_bytes));
    SL__TRY(sl__get_u64(x, o, "flush_ms", "pipelines.", 0, 60000, &cfg->pipe_flush_ms));
    SL__TRY(sl__get_size(x, o, "memory_limit_bytes", "pipelines.", 1 << 20, 1e12, &cfg->pipe_memory_limit));
    SL__TRY(sl__get_u64(x, o, "instruction_budget", "pipelines.", 1000, 2147483647.0, &cfg->pipe_budget));
    SL__TRY(sl__get_u64(x, o, "load_instruction_budget", "pipelines.", 1000, 2147483647.0, &cfg->pipe_load_budget));
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "admission")) != NULL) {
    static const char *const admission[] = {"queue_size", "queue_timeout_ms", "order", "priority_header",
                                            "memory_budget_bytes", "slow_client_ms", NULL};
    if (!cJSON_IsObject(o)) return sl__fail(x, "admission: expected an object");
    SL__TRY(sl__only_keys(x, o, "admission.", admission));
    SL__TRY(sl__get_int(x, o, "queue_size", "admission.", 0, 1e7, &cfg->queue_size));
    SL__TRY(sl__get_u64(x, o, "queue_timeout_ms", "admission.", 0, 3600000, &cfg->queue_timeout_ms));
    SL__TRY(sl__get_size(x, o, "memory_budget_bytes", "admission.", 0, 1e13, &cfg->stream_memory_budget));
    SL__TRY(sl__get_u64(x, o, "slow_client_ms", "admission.", 0, 86400000, &cfg->slow_client_ms));
    char *s = NULL;
    SL__TRY(sl__get_str(x, o, "order", "admission.", &s));
    if (s != NULL) {
      int edf = strcmp(s, "deadline") == 0, bad = !edf && strcmp(s, "fifo") != 0;
      sl_free(s);
      if (bad) return sl__fail(x, "admission.order: expected \"fifo\" or \"deadline\"");
      cfg->queue_edf = edf;
    }
    /* sl__get_str leaves s alone when the key is absent: without this a
     * missing priority_header found the freed order string (fuzz_config). */
    s = NULL;
    SL__TRY(sl__get_str(x, o, "priority_header", "admission.", &s));
    if (s != NULL) {
      int bad = strlen(s) >= sizeof(cfg->priority_header) || strpbrk(s, " :\r\n\t") != NULL;
      if (!bad) snprintf(cfg->priority_header, sizeof(cfg->priority_header), "%s", s);
      sl_free(s);
      if (bad) return sl__fail(x, "admission.priority_header: expected a header name");
    }
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "metrics")) != NULL) {
    static const char *const metrics[] = {"enabled", "max_endpoints", "max_tenants", "lag_interval_ms", NULL};
    if (!cJSON_IsObject(o)) return sl__fail(x, "metrics: expected an object");
    SL__TRY(sl__only_keys(x, o, "metrics.", metrics));
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(o, "enabled");
    if (en != NULL) {
      if (!cJSON_IsBool(en)) return sl__fail(x, "metrics.enabled: expected true or false");
      cfg->metrics_enabled = cJSON_IsTrue(en);
    }
    SL__TRY(sl__get_int(x, o, "max_endpoints", "metrics.", 1, 100000, &cfg->metrics_max_endpoints));
    SL__TRY(sl__get_int(x, o, "max_tenants", "metrics.", 1, 100000, &cfg->metrics_max_tenants));
    SL__TRY(sl__get_u64(x, o, "lag_interval_ms", "metrics.", 10, 60000, &cfg->lag_interval_ms));
  }
  {
    /* Tracing: the config's endpoint, else the OpenTelemetry environment's
     * (the traces-specific variable is a full URL, the general one a
     * base), else off. */
    const char *env = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    const char *base = getenv("OTEL_EXPORTER_OTLP_ENDPOINT");
    if (env && env[0]) snprintf(cfg->trace_endpoint, sizeof(cfg->trace_endpoint), "%s", env);
    else if (base && base[0]) snprintf(cfg->trace_endpoint, sizeof(cfg->trace_endpoint), "%s/v1/traces", base);
    /* The export timeout likewise, in milliseconds as the spec says. */
    const char *tvar = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
    const char *tenv = getenv(tvar);
    if (tenv == NULL || tenv[0] == '\0') tenv = getenv(tvar = "OTEL_EXPORTER_OTLP_TIMEOUT");
    if (tenv != NULL && tenv[0] != '\0') {
      char *end;
      errno = 0;
      unsigned long long ms = strtoull(tenv, &end, 10);
      if (errno || *end != '\0' || tenv[0] < '0' || tenv[0] > '9' || ms < 1 || ms > 600000)
        return sl__fail(x, "%s: \"%.32s\" is not a timeout in milliseconds from 1 to 600000", tvar, tenv);
      cfg->trace_timeout_ms = ms;
    }
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "tracing")) != NULL) {
    static const char *const tracing[] = {"endpoint", "service_name", "batch_ms", "max_queue", "timeout_ms", NULL};
    if (!cJSON_IsObject(o)) return sl__fail(x, "tracing: expected an object");
    SL__TRY(sl__only_keys(x, o, "tracing.", tracing));
    char *s = NULL;
    const cJSON *ep = cJSON_GetObjectItemCaseSensitive(o, "endpoint");
    if (ep != NULL && cJSON_IsNull(ep)) cfg->trace_endpoint[0] = '\0'; /* null: off, whatever the environment says */
    SL__TRY(sl__get_str(x, o, "endpoint", "tracing.", &s));
    if (s != NULL) {
      int bad = strlen(s) >= sizeof(cfg->trace_endpoint) || strncmp(s, "http://", 7) != 0;
      if (!bad) snprintf(cfg->trace_endpoint, sizeof(cfg->trace_endpoint), "%s", s);
      sl_free(s);
      if (bad) return sl__fail(x, "tracing.endpoint: expected an http:// URL of an OTLP/HTTP receiver's traces path");
    }
    s = NULL;
    SL__TRY(sl__get_str(x, o, "service_name", "tracing.", &s));
    if (s != NULL) {
      int bad = s[0] == '\0' || strlen(s) >= sizeof(cfg->trace_service);
      if (!bad) snprintf(cfg->trace_service, sizeof(cfg->trace_service), "%s", s);
      sl_free(s);
      if (bad) return sl__fail(x, "tracing.service_name: expected a short non-empty string");
    }
    SL__TRY(sl__get_u64(x, o, "batch_ms", "tracing.", 10, 600000, &cfg->trace_batch_ms));
    SL__TRY(sl__get_int(x, o, "max_queue", "tracing.", 1, 1000000, &cfg->trace_max_queue));
    SL__TRY(sl__get_u64(x, o, "timeout_ms", "tracing.", 1, 600000, &cfg->trace_timeout_ms));
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "redis")) != NULL) SL__TRY(sl__redis(x, cfg, o));
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "catalog")) != NULL) SL__TRY(sl__catalog(x, cfg, o));
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "tasks")) != NULL) {
    static const char *const tasks[] = {"grace_ms", "ring_bytes", "metrics_tokens", "max", NULL};
    if (!cJSON_IsObject(o)) return sl__fail(x, "tasks: expected an object");
    SL__TRY(sl__only_keys(x, o, "tasks.", tasks));
    SL__TRY(sl__get_u64(x, o, "grace_ms", "tasks.", 1, 86400000, &cfg->task_grace_ms));
    SL__TRY(sl__get_size(x, o, "ring_bytes", "tasks.", 1, 1e10, &cfg->task_ring_bytes));
    SL__TRY(sl__get_u64(x, o, "metrics_tokens", "tasks.", 0, 1e9, &cfg->task_metrics_tokens));
    SL__TRY(sl__get_int(x, o, "max", "tasks.", 1, 1e7, &cfg->task_max));
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "limits")) != NULL) {
    static const char *const limits[] = {"rule", "config", "interval_ms", "cut", NULL};
    if (!cJSON_IsObject(o)) return sl__fail(x, "limits: expected an object");
    SL__TRY(sl__only_keys(x, o, "limits.", limits));
    char *rule = NULL;
    SL__TRY(sl__get_str(x, o, "rule", "limits.", &rule));
    if (rule != NULL) {
      int bad = rule[0] == '\0' || strlen(rule) >= sizeof(cfg->limit_rule);
      if (!bad) snprintf(cfg->limit_rule, sizeof(cfg->limit_rule), "%s", rule);
      sl_free(rule);
      if (bad) return sl__fail(x, "limits.rule: expected a rule name or a path to a .lua file");
    }
    const cJSON *lc = cJSON_GetObjectItemCaseSensitive(o, "config");
    if (lc != NULL) {
      if (!cJSON_IsObject(lc)) return sl__fail(x, "limits.config: expected an object");
      char *text = cJSON_PrintUnformatted(lc);
      cfg->limit_config = sl_strndup(text, strlen(text));
      cJSON_free(text);
    }
    SL__TRY(sl__get_u64(x, o, "interval_ms", "limits.", 10, 3600000, &cfg->limit_interval_ms));
    SL__TRY(sl__get_num(x, o, "cut", "limits.", 0.05, 1, &cfg->limit_cut));
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "transcripts")) != NULL) {
    static const char *const transcripts[] = {"dir", "sample", "max_bytes", NULL};
    if (!cJSON_IsObject(o)) return sl__fail(x, "transcripts: expected an object");
    SL__TRY(sl__only_keys(x, o, "transcripts.", transcripts));
    char *dir = NULL;
    SL__TRY(sl__get_str(x, o, "dir", "transcripts.", &dir));
    if (dir != NULL) {
      if (strlen(dir) >= sizeof(cfg->transcript_dir)) {
        sl_free(dir);
        return sl__fail(x, "transcripts.dir: longer than %zu bytes", sizeof(cfg->transcript_dir) - 1);
      }
      snprintf(cfg->transcript_dir, sizeof(cfg->transcript_dir), "%s", dir);
      sl_free(dir);
    }
    SL__TRY(sl__get_num(x, o, "sample", "transcripts.", 0, 1, &cfg->transcript_sample));
    SL__TRY(sl__get_size(x, o, "max_bytes", "transcripts.", 4096, 1 << 30, &cfg->transcript_max_bytes));
  }
  {
    char *sock = NULL;
    SL__TRY(sl__get_str(x, root, "admin_socket", "", &sock));
    if (sock != NULL) {
      int bad = strlen(sock) >= sizeof(cfg->admin_socket);
      if (!bad) snprintf(cfg->admin_socket, sizeof(cfg->admin_socket), "%s", sock);
      sl_free(sock);
      if (bad) return sl__fail(x, "admin_socket: path too long");
    }
  }
  if ((o = cJSON_GetObjectItemCaseSensitive(root, "admin_http")) != NULL) SL__TRY(sl__admin_http(x, cfg, o));
  const cJSON *pools = cJSON_GetObjectItemCaseSensitive(root, "pools");
  if (!cJSON_IsArray(pools) || cJSON_GetArraySize(pools) == 0)
    return sl__fail(x, "pools: expected a non-empty array");
  const cJSON *p;
  cJSON_ArrayForEach(p, pools) {
    if (cfg->npools == SL_MAX_POOLS) return sl__fail(x, "pools: more than %d", SL_MAX_POOLS);
    sl_pool_config_t *pool = &cfg->pools[cfg->npools];
    SL__TRY(sl__parse_pool(x, p, cfg->npools, pool));
    if (pool->queue_size < 0) pool->queue_size = cfg->queue_size;
    if (pool->queue_timeout_ms == UINT64_MAX) pool->queue_timeout_ms = cfg->queue_timeout_ms;
    cfg->npools++;
  }
  for (int i = 0; i < cfg->npools; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(cfg->pools[i].name, cfg->pools[j].name) == 0)
        return sl__fail(x, "pools[%d].name: \"%s\" is used twice", i, cfg->pools[i].name);
  /* One process runs the engines: workers would each start their own. */
  for (int i = 0; i < cfg->npools && cfg->workers > 1; i++)
    for (int j = 0; j < cfg->pools[i].nendpoints; j++)
      if (cfg->pools[i].endpoints[j].managed)
        return sl__fail(x, "pools[%d].endpoints[%d].managed: needs \"workers\": 1 (each worker would start its own "
                        "engine)", i, j);
  return 0;
}

/* Line and column of a byte offset, for JSON syntax errors. */
static void sl__line_col(const char *text, size_t off, int *line, int *col) {
  *line = 1;
  *col = 1;
  for (size_t i = 0; i < off && text[i]; i++) {
    if (text[i] == '\n') {
      (*line)++;
      *col = 1;
    } else {
      (*col)++;
    }
  }
}

int sl_config_parse(sl_config_t *cfg, const char *json, size_t len, char *err, size_t errlen) {
  sl__cfgctx_t x = {err, errlen, cfg};
  err[0] = '\0';
  sl__defaults(cfg);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
  if (root == NULL) {
    int line, col;
    size_t off = end ? (size_t)(end - json) : 0;
    sl__line_col(json, off, &line, &col);
    return sl__fail(&x, "line %d, column %d: invalid JSON", line, col);
  }
  int rc = sl__parse_doc(&x, cfg, root);
  cJSON_Delete(root);
  if (rc < 0) {
    sl_config_free(cfg);
    sl__defaults(cfg);
  }
  return rc;
}

int sl_config_load(sl_config_t *cfg, const char *path, char *err, size_t errlen) {
  char *buf;
  size_t len;
  int rc = sl_read_file(path, 64u << 20, &buf, &len);
  if (rc < 0) {
    if (rc == SL_ETOOBIG) snprintf(err, errlen, "%s: larger than 64 MiB", path);
    else snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return SL_EINVAL;
  }
  char msg[512];
  rc = sl_config_parse(cfg, buf, len, msg, sizeof(msg));
  sl_free(buf);
  if (rc < 0) snprintf(err, errlen, "%s: %s", path, msg);
  return rc;
}

static void sl__pool_free(sl_pool_config_t *p) {
  sl_free(p->name);
  sl_free(p->adapter);
  sl_free(p->api_key);
  sl_free(p->guards_json);
  for (int m = 0; m < p->nmodels; m++) sl_free(p->models[m]);
  for (int e = 0; e < p->nendpoints; e++) {
    sl_endpoint_config_t *ec = &p->endpoints[e];
    sl_free(ec->url);
    for (int m = 0; m < ec->nmodels; m++) sl_free(ec->models[m]);
    for (int a = 0; a < ec->mg.argc; a++) sl_free(ec->mg.argv[a]);
    for (int a = 0; a < ec->mg.nenv; a++) sl_free(ec->mg.env[a]);
    sl_free(ec->mg.model);
    sl_free(ec->mg.cwd);
    sl_free(p->endpoints[e].tls_cfg.ca_file);
    sl_free(p->endpoints[e].tls_cfg.server_name);
  }
  sl_free(p->tls.ca_file);
  sl_free(p->tls.server_name);
}

void sl_config_free(sl_config_t *cfg) {
  /* A pool that failed half-way sits at index npools: free what it got. */
  int n = cfg->npools < SL_MAX_POOLS ? cfg->npools + 1 : cfg->npools;
  for (int i = 0; i < n; i++) sl__pool_free(&cfg->pools[i]);
  memset(cfg->pools, 0, sizeof(cfg->pools));
  cfg->npools = 0;
  sl_free(cfg->placement_config);
  cfg->placement_config = NULL;
  sl_free(cfg->limit_config);
  cfg->limit_config = NULL;
  sl_free(cfg->tenants_json);
  cfg->tenants_json = NULL;
  sl_free(cfg->admin_http_token);
  cfg->admin_http_token = NULL;
  for (int i = 0; i < cfg->nlog_secrets; i++) sl_free(cfg->log_secrets[i]);
  cfg->nlog_secrets = 0;
}

/* ---- the HTTP server's limits ---- */

void sl_http_limits_default(sl_http_limits_t *l) {
  l->max_header_bytes = 16 * 1024;
  l->max_body_bytes = 4 * 1024 * 1024;
  l->header_timeout_ms = 10000;
  l->idle_timeout_ms = 60000;
  l->max_connections = 8192;
  l->write_high_watermark = 64 * 1024;
  l->write_low_watermark = 16 * 1024;
}

/* ---- a simulated engine's options (the "sim" object of an endpoint) ---- */

void sl_sim_config_default(sl_sim_config_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  snprintf(cfg->host, sizeof(cfg->host), "127.0.0.1");
  cfg->port = 8000;
  cfg->slots = 4;
  cfg->ttft_ms = 50;
  cfg->prefill_us_per_char = 10;
  cfg->itl_ms = 20;
  cfg->itl_jitter = 0.2;
  cfg->max_tokens = 64;
  cfg->seed = 1;
  cfg->stamp = 0;
  cfg->nmodels = 1;
  snprintf(cfg->models[0], SL_SIM_MODEL_MAX, "sim");
}

int sl_sim_config_set_listen(sl_sim_config_t *cfg, const char *hostport) {
  return sl_parse_hostport(hostport, cfg->host, sizeof(cfg->host), &cfg->port);
}

static int sl__cfg_err(char *err, size_t errlen, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return SL_EINVAL;
}

/* A JSON number that is an integer in [lo, hi]. */
static int sl__json_int(const cJSON *v, double lo, double hi, double *out) {
  if (!cJSON_IsNumber(v)) return -1;
  double d = v->valuedouble;
  if (!(d >= lo && d <= hi) || d != floor(d)) return -1;
  *out = d;
  return 0;
}

static int sl__json_num(const cJSON *v, double lo, double hi, double *out) {
  if (!cJSON_IsNumber(v)) return -1;
  double d = v->valuedouble;
  if (!(d >= lo && d <= hi)) return -1;
  *out = d;
  return 0;
}

static int sl__set_model(sl_sim_config_t *cfg, int i, const cJSON *v) {
  if (!cJSON_IsString(v) || v->valuestring[0] == '\0' ||
      strlen(v->valuestring) >= SL_SIM_MODEL_MAX)
    return -1;
  snprintf(cfg->models[i], SL_SIM_MODEL_MAX, "%s", v->valuestring);
  return 0;
}

int sl_sim_config_from_json(sl_sim_config_t *cfg, const cJSON *obj, char *err, size_t errlen) {
  if (!cJSON_IsObject(obj)) return sl__cfg_err(err, errlen, "sim options must be a JSON object");
  const cJSON *v;
  cJSON_ArrayForEach(v, obj) {
    const char *k = v->string;
    double d;
    if (strcmp(k, "listen") == 0) {
      if (!cJSON_IsString(v) || sl_sim_config_set_listen(cfg, v->valuestring) < 0)
        return sl__cfg_err(err, errlen, "%s: expected a string \"HOST:PORT\"", k);
    } else if (strcmp(k, "host") == 0) {
      if (!cJSON_IsString(v) || v->valuestring[0] == '\0' || strlen(v->valuestring) >= sizeof(cfg->host))
        return sl__cfg_err(err, errlen, "%s: expected an address string", k);
      snprintf(cfg->host, sizeof(cfg->host), "%s", v->valuestring);
    } else if (strcmp(k, "port") == 0) {
      if (sl__json_int(v, 0, 65535, &d) < 0)
        return sl__cfg_err(err, errlen, "%s: expected an integer from 0 to 65535", k);
      cfg->port = (int)d;
    } else if (strcmp(k, "slots") == 0) {
      if (sl__json_int(v, 1, 1000000, &d) < 0)
        return sl__cfg_err(err, errlen, "%s: expected an integer >= 1", k);
      cfg->slots = (int)d;
    } else if (strcmp(k, "ttft_ms") == 0) {
      if (sl__json_num(v, 0, 3.6e6, &d) < 0)
        return sl__cfg_err(err, errlen, "%s: expected a number of milliseconds >= 0", k);
      cfg->ttft_ms = d;
    } else if (strcmp(k, "prefill_us_per_char") == 0) {
      if (sl__json_num(v, 0, 1e6, &d) < 0)
        return sl__cfg_err(err, errlen, "%s: expected a number of microseconds >= 0", k);
      cfg->prefill_us_per_char = d;
    } else if (strcmp(k, "itl_ms") == 0) {
      if (sl__json_num(v, 0, 3.6e6, &d) < 0)
        return sl__cfg_err(err, errlen, "%s: expected a number of milliseconds >= 0", k);
      cfg->itl_ms = d;
    } else if (strcmp(k, "itl_jitter") == 0) {
      if (sl__json_num(v, 0, 1, &d) < 0)
        return sl__cfg_err(err, errlen, "%s: expected a number from 0 to 1", k);
      cfg->itl_jitter = d;
    } else if (strcmp(k, "itl_wave") == 0) {
      /* {"period": tokens per cycle (>= 2), "amplitude": share of itl_ms in
       * [0, 1)}: periodic timing for the dynamics classifier to find. */
      const cJSON *w;
      double period = 0, amp = -1;
      if (!cJSON_IsObject(v)) return sl__cfg_err(err, errlen, "%s: expected an object {\"period\", \"amplitude\"}", k);
      cJSON_ArrayForEach(w, v) {
        if (strcmp(w->string, "period") == 0) {
          if (sl__json_num(w, 2, 1e6, &period) < 0)
            return sl__cfg_err(err, errlen, "%s.period: expected a number of tokens from 2 to 1000000", k);
        } else if (strcmp(w->string, "amplitude") == 0) {
          if (sl__json_num(w, 0, 1, &amp) < 0 || amp >= 1)
            return sl__cfg_err(err, errlen, "%s.amplitude: expected a number from 0 to below 1", k);
        } else {
          return sl__cfg_err(err, errlen, "%s: unknown key \"%.64s\"", k, w->string);
        }
      }
      if (period == 0) return sl__cfg_err(err, errlen, "%s.period: required", k);
      if (amp < 0) return sl__cfg_err(err, errlen, "%s.amplitude: required", k);
      cfg->itl_wave_period = period;
      cfg->itl_wave_amp = amp;
    } else if (strcmp(k, "max_tokens") == 0) {
      if (sl__json_int(v, 0, 100000000, &d) < 0)
        return sl__cfg_err(err, errlen, "%s: expected an integer >= 0", k);
      cfg->max_tokens = (int)d;
    } else if (strcmp(k, "seed") == 0) {
      if (sl__json_int(v, 0, 9007199254740992.0, &d) < 0)
        return sl__cfg_err(err, errlen, "%s: expected an integer >= 0", k);
      cfg->seed = (uint64_t)d;
    } else if (strcmp(k, "stamp") == 0) {
      if (!cJSON_IsBool(v)) return sl__cfg_err(err, errlen, "%s: expected true or false", k);
      cfg->stamp = cJSON_IsTrue(v);
    } else if (strcmp(k, "models") == 0) {
      if (cJSON_IsString(v)) {
        if (sl__set_model(cfg, 0, v) < 0)
          return sl__cfg_err(err, errlen, "%s: model names are 1 to %d bytes", k, SL_SIM_MODEL_MAX - 1);
        cfg->nmodels = 1;
      } else if (cJSON_IsArray(v)) {
        int n = cJSON_GetArraySize(v);
        if (n < 1 || n > SL_SIM_MAX_MODELS)
          return sl__cfg_err(err, errlen, "%s: expected 1 to %d model names", k, SL_SIM_MAX_MODELS);
        int i = 0;
        const cJSON *m;
        cJSON_ArrayForEach(m, v) {
          if (sl__set_model(cfg, i, m) < 0)
            return sl__cfg_err(err, errlen, "%s[%d]: expected a model name of 1 to %d bytes", k, i,
                               SL_SIM_MODEL_MAX - 1);
          i++;
        }
        cfg->nmodels = n;
      } else {
        return sl__cfg_err(err, errlen, "%s: expected a string or an array of strings", k);
      }
    } else {
      return sl__cfg_err(err, errlen, "unknown key \"%.64s\"", k);
    }
  }
  return 0;
}

