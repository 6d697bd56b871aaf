/* test_tenant.c: the tenant set: the config (every error with its
 * message), key digests and auth, the model check, and the limit windows in
 * a TTL dictionary with a frozen clock: refusal with Retry-After, the
 * reservation and settlement arithmetic, settling after a rollover, a
 * refused request changing nothing, and a full dictionary reported apart
 * from a limit.
 */
#include <stdlib.h>

#include "runtime/base/errors.h"
#include "runtime/lua/ttldict.h"
#include "runtime/tenant/tenant.h"
#include "tests/test.h"

static uint64_t fake_now;
static uint64_t fake_clock(void *data) {
  (void)data;
  return fake_now;
}

static sl_ttldict_t *make_dict(size_t max_bytes) {
  sl_ttldict_options_t o = {0};
  o.max_bytes = max_bytes;
  o.clock = fake_clock;
  sl_ttldict_t *d = NULL;
  if (sl_ttldict_new(&o, &d) != 0) return NULL;
  return d;
}

/* The digest of key, as a config writes it. */
static const char *digest(const char *key) {
  static char out[4][72];
  static int next;
  char *o = out[next++ % 4];
  sl_tenant_hash_key(key, strlen(key), o);
  return o;
}

/* Builds the set from JSON; NULL when it is refused (err says why). */
static sl_tenants_t *build(const char *json, char *err, size_t errlen) {
  sl_tenants_t *ts = NULL;
  return sl_tenants_build(json, &ts, err, errlen) == 0 ? ts : NULL;
}

/* One tenant named acme with key "k-acme" and the given extra members. */
static sl_tenants_t *one_tenant(const char *extra) {
  char json[2048], err[256];
  snprintf(json, sizeof(json), "[{\"name\": \"acme\", \"keys\": [\"%s\"]%s%s}]", digest("k-acme"),
           extra[0] ? ", " : "", extra);
  sl_tenants_t *ts = build(json, err, sizeof(err));
  if (ts == NULL) fprintf(stderr, "one_tenant: %s\n", err);
  return ts;
}

static void test_hash_key(void) {
  char out[72];
  sl_tenant_hash_key("abc", 3, out);
  ASSERT_STR_EQ(out, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  sl_tenant_hash_key("", 0, out);
  ASSERT_STR_EQ(out, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  ASSERT_EQ(strlen(out), 71);
}

static void test_config_ok(void) {
  char json[2048], err[256] = "";
  /* Upper-case hex is the same digest. */
  char upper[72];
  snprintf(upper, sizeof(upper), "%s", digest("k-beta"));
  for (char *p = upper + 7; *p; p++)
    if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 'a' + 'A');
  snprintf(json, sizeof(json),
           "[{\"name\": \"acme\", \"keys\": [\"%s\", \"%s\"], \"models\": [\"m1\", \"m2\"], \"priority\": \"high\","
           " \"limits\": {\"requests_per_minute\": 60, \"tokens_per_minute\": 10000, \"tokens_per_day\": 500000,"
           " \"max_tokens_per_request\": 2048}, \"pipeline\": \"pipes/acme.lua\","
           " \"guards\": {\"stop\": {\"strings\": [\"X\"]}}, \"transcripts\": 0.25},"
           " {\"name\": \"b-e.t_a\", \"keys\": [\"%s\"]}]",
           digest("k-acme"), digest("k-acme-2"), upper);
  sl_tenants_t *ts = build(json, err, sizeof(err));
  ASSERT_STR_EQ(err, "");
  ASSERT_NOT_NULL(ts);
  ASSERT_EQ(ts->n, 2);
  sl_tenant_t *a = &ts->t[0], *b = &ts->t[1];
  ASSERT_EQ(a->index, 0);
  ASSERT_STR_EQ(a->name, "acme");
  ASSERT_EQ(a->nkeys, 2);
  ASSERT_EQ(a->nmodels, 2);
  ASSERT_STR_EQ(a->models[1], "m2");
  ASSERT_EQ(a->priority, SL_PRIO_HIGH);
  ASSERT_EQ(a->rpm, 60);
  ASSERT_EQ(a->tpm, 10000);
  ASSERT_EQ(a->tpd, 500000);
  ASSERT_EQ(a->max_tokens, 2048);
  ASSERT_STR_EQ(a->pipeline, "pipes/acme.lua");
  ASSERT_STR_EQ(a->guards_json, "{\"stop\":{\"strings\":[\"X\"]}}");
  ASSERT_DBL_NEAR(a->transcripts, 0.25, 0);
  /* Defaults. */
  ASSERT_EQ(b->index, 1);
  ASSERT_STR_EQ(b->name, "b-e.t_a");
  ASSERT_NULL(b->models);
  ASSERT_EQ(b->priority, SL_PRIO_NORMAL);
  ASSERT_EQ(b->rpm + b->tpm + b->tpd, 0);
  ASSERT_EQ(b->max_tokens, SL_TENANT_MAX_TOKENS_DEFAULT);
  ASSERT_NULL(b->pipeline);
  ASSERT_NULL(b->guards_json);
  ASSERT_DBL_NEAR(b->transcripts, 0, 0);
  ASSERT(sl_tenants_auth(ts, "Bearer k-beta") == b);
  ASSERT_STR_EQ(sl_priority_name(a->priority), "high");
  ASSERT_STR_EQ(sl_priority_name(SL_PRIO_LOW), "low");
  sl_tenants_free(ts);

  /* No tenants: an empty set. */
  ts = build(NULL, err, sizeof(err));
  ASSERT_NOT_NULL(ts);
  ASSERT_EQ(ts->n, 0);
  ASSERT_NULL(sl_tenants_auth(ts, "Bearer k-acme"));
  sl_tenants_free(ts);
  ts = build(" [ ] ", err, sizeof(err));
  ASSERT_NOT_NULL(ts);
  ASSERT_EQ(ts->n, 0);
  sl_tenants_free(ts);
}

static void test_config_errors(void) {
  char d1[72], d2[72];
  snprintf(d1, sizeof(d1), "%s", digest("k1"));
  snprintf(d2, sizeof(d2), "%s", digest("k2"));
  /* "%1" stands for d1's digest, "%2" for d2's. */
  static const struct {
    const char *json, *msg;
  } cases[] = {
      {"[{\"name\" 1}]", "tenants: not valid JSON (near byte 9)"},
      {"{}", "tenants: expected an array of tenant objects"},
      {"[1]", "tenants[0]: expected an object"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"limit\": {}}]",
       "tenants[0].limit: unknown key (known: name, keys, models, priority, limits, pipeline, guards, transcripts)"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"name\": \"b\"}]", "tenants[0].name: given twice"},
      {"[{\"keys\": [\"%1\"]}]", "tenants[0].name: required"},
      {"[{\"name\": 7, \"keys\": [\"%1\"]}]", "tenants[0].name: expected a string"},
      {"[{\"name\": \"a b\", \"keys\": [\"%1\"]}]",
       "tenants[0].name: \"a b\" is not 1 to 63 bytes of A-Z a-z 0-9 _ . -"},
      {"[{\"name\": \"\", \"keys\": [\"%1\"]}]", "tenants[0].name: \"\" is not 1 to 63 bytes of A-Z a-z 0-9 _ . -"},
      {"[{\"name\": \"a234567890123456789012345678901234567890123456789012345678901234\", \"keys\": [\"%1\"]}]",
       "tenants[0].name: \"a234567890123456789012345678901234567890123456789012345678901234\" is not 1 to 63 "
       "bytes of A-Z a-z 0-9 _ . -"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"]}, {\"name\": \"a\", \"keys\": [\"%2\"]}]",
       "tenants[1].name: \"a\" is already the name of tenants[0]"},
      {"[{\"name\": \"a\"}]", "tenants[0].keys: required (`sluice hash-key KEY` prints a digest)"},
      {"[{\"name\": \"a\", \"keys\": \"%1\"}]", "tenants[0].keys: expected an array of \"sha256:<64 hex>\" digests"},
      {"[{\"name\": \"a\", \"keys\": []}]", "tenants[0].keys: 0 digests, expected 1 to 16"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\", \"sha256:abc\"]}]",
       "tenants[0].keys[1]: expected \"sha256:\" and 64 hex digits"},
      {"[{\"name\": \"a\", \"keys\": [\"md5:00\"]}]", "tenants[0].keys[0]: expected \"sha256:\" and 64 hex digits"},
      {"[{\"name\": \"a\", \"keys\": [\"sha256:zz0000000000000000000000000000000000000000000000000000000000000000\"]}]",
       "tenants[0].keys[0]: expected \"sha256:\" and 64 hex digits"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\", \"%1\"]}]", "tenants[0].keys[1]: the same digest as tenants[0].keys[0]"},
      {"[{\"name\": \"a\", \"keys\": [\"%2\", \"%1\"]}, {\"name\": \"b\", \"keys\": [\"%1\"]}]",
       "tenants[1].keys[0]: the same digest as tenants[0].keys[1]"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"models\": \"m\"}]",
       "tenants[0].models: expected an array of model names"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"models\": []}]",
       "tenants[0].models: empty (leave it out to allow every model)"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"models\": [\"m\", 3]}]",
       "tenants[0].models[1]: expected a non-empty string"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"priority\": \"urgent\"}]",
       "tenants[0].priority: \"urgent\" is not one of high, normal, low"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"priority\": 1}]",
       "tenants[0].priority: expected a string (high, normal or low)"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"limits\": []}]", "tenants[0].limits: expected an object"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"limits\": {\"rpm\": 5}}]",
       "tenants[0].limits.rpm: unknown key (known: requests_per_minute, tokens_per_minute, tokens_per_day, "
       "max_tokens_per_request)"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"limits\": {\"tokens_per_minute\": 0}}]",
       "tenants[0].limits.tokens_per_minute: expected a positive integer (leave it out for no limit)"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"limits\": {\"tokens_per_day\": 1.5}}]",
       "tenants[0].limits.tokens_per_day: expected a positive integer (leave it out for no limit)"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"limits\": {\"requests_per_minute\": \"5\"}}]",
       "tenants[0].limits.requests_per_minute: expected a positive integer (leave it out for no limit)"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"limits\": {\"max_tokens_per_request\": 1e300}}]",
       "tenants[0].limits.max_tokens_per_request: 1e+300 is more than 1000000000000000"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"pipeline\": 3}]",
       "tenants[0].pipeline: expected the path of a Lua file"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"guards\": [1]}]", "tenants[0].guards: expected an object"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"transcripts\": 1.5}]",
       "tenants[0].transcripts: expected a number from 0 to 1 (the fraction of streams recorded)"},
      {"[{\"name\": \"a\", \"keys\": [\"%1\"], \"transcripts\": \"all\"}]",
       "tenants[0].transcripts: expected a number from 0 to 1 (the fraction of streams recorded)"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char json[1024], err[1024] = "";
    size_t o = 0;
    for (const char *p = cases[i].json; *p && o + 80 < sizeof(json); p++) {
      if (p[0] == '%' && (p[1] == '1' || p[1] == '2')) {
        o += (size_t)snprintf(json + o, sizeof(json) - o, "%s", p[1] == '1' ? d1 : d2);
        p++;
      } else {
        json[o++] = *p;
      }
    }
    json[o] = '\0';
    sl_tenants_t *ts = (sl_tenants_t *)1;
    int rc = sl_tenants_build(json, &ts, err, sizeof(err));
    if (rc != SL_EINVAL) fprintf(stderr, "case %zu: %s\n", i, json);
    ASSERT_EQ(rc, SL_EINVAL);
    ASSERT_NULL(ts);
    if (strcmp(err, cases[i].msg) != 0) fprintf(stderr, "case %zu: %s\n", i, json);
    ASSERT_STR_EQ(err, cases[i].msg);
  }

  /* More keys and more tenants than allowed. */
  char big[16384], err[256];
  size_t o = (size_t)snprintf(big, sizeof(big), "[{\"name\": \"a\", \"keys\": [");
  for (int k = 0; k < SL_TENANT_MAX_KEYS + 1; k++) {
    char key[16];
    snprintf(key, sizeof(key), "k%d", k);
    o += (size_t)snprintf(big + o, sizeof(big) - o, "%s\"%s\"", k ? ", " : "", digest(key));
  }
  snprintf(big + o, sizeof(big) - o, "]}]");
  ASSERT_NULL(build(big, err, sizeof(err)));
  ASSERT_STR_EQ(err, "tenants[0].keys: 17 digests, expected 1 to 16");
  o = (size_t)snprintf(big, sizeof(big), "[");
  for (int k = 0; k < SL_TENANT_MAX + 1; k++) o += (size_t)snprintf(big + o, sizeof(big) - o, "%s{}", k ? "," : "");
  snprintf(big + o, sizeof(big) - o, "]");
  ASSERT_NULL(build(big, err, sizeof(err)));
  ASSERT_STR_EQ(err, "tenants: 257 tenants, at most 256");
}

static void test_auth(void) {
  char json[1024], err[256];
  snprintf(json, sizeof(json),
           "[{\"name\": \"acme\", \"keys\": [\"%s\", \"%s\"]}, {\"name\": \"beta\", \"keys\": [\"%s\"]}]",
           digest("sk-acme-1"), digest("sk-acme-2"), digest("sk-beta"));
  sl_tenants_t *ts = build(json, err, sizeof(err));
  ASSERT_NOT_NULL(ts);
  sl_tenant_t *acme = &ts->t[0], *beta = &ts->t[1];
  ASSERT(sl_tenants_auth(ts, "Bearer sk-acme-1") == acme);
  ASSERT(sl_tenants_auth(ts, "Bearer sk-acme-2") == acme);
  ASSERT(sl_tenants_auth(ts, "Bearer sk-beta") == beta);
  /* The scheme in any case, spaces and tabs around. */
  ASSERT(sl_tenants_auth(ts, "bearer sk-beta") == beta);
  ASSERT(sl_tenants_auth(ts, "BEARER sk-beta") == beta);
  ASSERT(sl_tenants_auth(ts, "  Bearer \t  sk-acme-1  \t") == acme);
  /* Wrong, missing, malformed. */
  ASSERT_NULL(sl_tenants_auth(ts, "Bearer sk-acme-3"));
  ASSERT_NULL(sl_tenants_auth(ts, "Bearer sk-acme-1x"));
  ASSERT_NULL(sl_tenants_auth(ts, "Bearer sk-acme"));
  ASSERT_NULL(sl_tenants_auth(ts, NULL));
  ASSERT_NULL(sl_tenants_auth(ts, ""));
  ASSERT_NULL(sl_tenants_auth(ts, "Bearer"));
  ASSERT_NULL(sl_tenants_auth(ts, "Bearer   "));
  ASSERT_NULL(sl_tenants_auth(ts, "sk-acme-1"));
  ASSERT_NULL(sl_tenants_auth(ts, "Basic sk-acme-1"));
  ASSERT_NULL(sl_tenants_auth(ts, "Bearersk-acme-1"));
  /* The digest itself is not a key. */
  ASSERT_NULL(sl_tenants_auth(ts, json + 0));
  char bearer_digest[96];
  snprintf(bearer_digest, sizeof(bearer_digest), "Bearer %s", digest("sk-beta"));
  ASSERT_NULL(sl_tenants_auth(ts, bearer_digest));
  /* Auth counts nothing. */
  ASSERT_UINT_EQ(ts->unauthorized, 0);
  ASSERT_UINT_EQ(acme->usage.requests, 0);
  sl_tenants_free(ts);
}

static void test_model_ok(void) {
  sl_tenants_t *ts = one_tenant("\"models\": [\"llama-3\", \"qwen\"]");
  ASSERT_NOT_NULL(ts);
  ASSERT(sl_tenant_model_ok(&ts->t[0], "llama-3"));
  ASSERT(sl_tenant_model_ok(&ts->t[0], "qwen"));
  ASSERT(!sl_tenant_model_ok(&ts->t[0], "qwen2"));
  ASSERT(!sl_tenant_model_ok(&ts->t[0], "llama"));
  ASSERT(!sl_tenant_model_ok(&ts->t[0], ""));
  ASSERT(!sl_tenant_model_ok(&ts->t[0], NULL));
  sl_tenants_free(ts);
  ts = one_tenant("");
  ASSERT_NOT_NULL(ts);
  ASSERT(sl_tenant_model_ok(&ts->t[0], "anything"));
  sl_tenants_free(ts);
}

static void test_rpm_window(void) {
  sl_tenants_t *ts = one_tenant("\"limits\": {\"requests_per_minute\": 2}");
  sl_ttldict_t *d = make_dict(0);
  ASSERT_NOT_NULL(ts);
  ASSERT_NOT_NULL(d);
  sl_tenant_t *t = &ts->t[0];
  sl_tenant_resv_t r[4];
  sl_tenant_refusal_t why;
  fake_now = 1000000;
  ASSERT_EQ(sl_tenant_admit(t, d, 10, 5, 0, &r[0], &why), 0);
  ASSERT(r[0].active);
  fake_now += 15000;
  ASSERT_EQ(sl_tenant_admit(t, d, 10, 5, 0, &r[1], &why), 0);
  /* The window opened with the first request: 45 s of it are left. */
  fake_now += 500;
  ASSERT_EQ(sl_tenant_admit(t, d, 10, 5, 0, &r[2], &why), SL_ETOOBIG);
  ASSERT(!r[2].active);
  ASSERT_EQ(why.status, 429);
  ASSERT_UINT_EQ(why.retry_after_ms, 44500);
  ASSERT_STR_EQ(why.limit, "requests_per_minute");
  ASSERT_STR_EQ(why.message, "tenant acme is over its requests_per_minute limit (2; 2 used); the window resets in 45 s");
  /* Settling does not give a request back. */
  sl_tenant_settle(t, d, &r[0], 10, 5, 0);
  fake_now += 44499;
  ASSERT_EQ(sl_tenant_admit(t, d, 10, 5, 0, &r[2], &why), SL_ETOOBIG);
  ASSERT_UINT_EQ(why.retry_after_ms, 1);
  ASSERT_STR_EQ(why.message, "tenant acme is over its requests_per_minute limit (2; 2 used); the window resets in 1 s");
  /* The window's end: a new one opens with this request. */
  fake_now += 1;
  ASSERT_EQ(sl_tenant_admit(t, d, 10, 5, 0, &r[2], &why), 0);
  fake_now += 59999;
  ASSERT_EQ(sl_tenant_admit(t, d, 10, 5, 0, &r[3], &why), 0);
  ASSERT_EQ(sl_tenant_admit(t, d, 10, 5, 0, &r[3], &why), SL_ETOOBIG);
  ASSERT_UINT_EQ(why.retry_after_ms, 1);
  ASSERT_UINT_EQ(t->usage.requests, 4);
  ASSERT_UINT_EQ(t->usage.refused_429, 3);
  sl_ttldict_free(d);
  sl_tenants_free(ts);
}

static void test_token_reservation(void) {
  sl_tenants_t *ts =
      one_tenant("\"limits\": {\"tokens_per_minute\": 10000, \"max_tokens_per_request\": 4000}");
  sl_ttldict_t *d = make_dict(0);
  ASSERT_NOT_NULL(ts);
  ASSERT_NOT_NULL(d);
  sl_tenant_t *t = &ts->t[0];
  sl_tenant_resv_t a, b, c, e;
  sl_tenant_refusal_t why;
  fake_now = 5000;
  /* The completion reserved: max_tokens capped at max_tokens_per_request,
   * else the smaller of context_left and max_tokens_per_request. */
  ASSERT_EQ(sl_tenant_admit(t, d, 352, 0, 0, &a, &why), 0);
  ASSERT_EQ(a.prompt, 352);
  ASSERT_EQ(a.completion, 4000);
  ASSERT_UINT_EQ(a.tpd_window, 0);
  ASSERT_UINT_EQ(a.tpm_window, 5001);
  ASSERT_EQ(t->usage.reserved_tokens, 4352);
  ASSERT_EQ(sl_tenant_admit(t, d, 352, 9999, 0, &b, &why), 0);
  ASSERT_EQ(b.completion, 4000);
  ASSERT_EQ(t->usage.reserved_tokens, 8704);
  fake_now += 23000;
  ASSERT_EQ(sl_tenant_admit(t, d, 352, 0, 0, &c, &why), SL_ETOOBIG);
  ASSERT_STR_EQ(why.limit, "tokens_per_minute");
  ASSERT_UINT_EQ(why.retry_after_ms, 37000);
  ASSERT_STR_EQ(why.message, "tenant acme is over its tokens_per_minute limit (10000; this request needs 4352, "
                             "8704 used); the window resets in 37 s");
  /* The stream used 452 of its 4352: the window gives back 3900. */
  sl_tenant_settle(t, d, &a, 352, 100, 0);
  ASSERT(!a.active);
  ASSERT_EQ(t->usage.reserved_tokens, 4352);
  ASSERT_UINT_EQ(t->usage.prompt_tokens, 352);
  ASSERT_UINT_EQ(t->usage.completion_tokens, 100);
  ASSERT_UINT_EQ(t->usage.cut_streams, 0);
  /* Once only. */
  sl_tenant_settle(t, d, &a, 352, 100, 1);
  ASSERT_UINT_EQ(t->usage.prompt_tokens, 352);
  ASSERT_UINT_EQ(t->usage.cut_streams, 0);
  /* 4804 used: 5196 fit, 5197 do not. */
  ASSERT_EQ(sl_tenant_admit(t, d, 5197, 0, 1, &c, &why), SL_ETOOBIG);
  ASSERT_STR_EQ(why.message, "tenant acme is over its tokens_per_minute limit (10000; this request needs 5198, "
                             "4804 used); the window resets in 37 s");
  ASSERT_EQ(sl_tenant_admit(t, d, 5000, 0, 196, &c, &why), 0);
  ASSERT_EQ(c.completion, 196);
  ASSERT_EQ(t->usage.reserved_tokens, 4352 + 5196);
  ASSERT_EQ(sl_tenant_admit(t, d, 0, 1, 0, &e, &why), SL_ETOOBIG);
  ASSERT_STR_EQ(why.message, "tenant acme is over its tokens_per_minute limit (10000; this request needs 1, "
                             "10000 used); the window resets in 37 s");
  /* A stream that spent more than it reserved (the prompt estimate was
   * low) counts what it spent; a cut stream counts as cut. */
  sl_tenant_settle(t, d, &c, 5100, 196, 1);
  ASSERT_UINT_EQ(t->usage.cut_streams, 1);
  ASSERT_EQ(sl_tenant_admit(t, d, 0, 1, 0, &e, &why), SL_ETOOBIG);
  ASSERT_STR_EQ(why.message, "tenant acme is over its tokens_per_minute limit (10000; this request needs 1, "
                             "10100 used); the window resets in 37 s");
  sl_tenant_settle(t, d, &b, 0, 0, 1);
  ASSERT_EQ(t->usage.reserved_tokens, 0);
  ASSERT_UINT_EQ(t->usage.prompt_tokens, 352 + 5100);
  ASSERT_UINT_EQ(t->usage.completion_tokens, 100 + 196);
  /* 5748 used now: 4252 fit exactly. */
  ASSERT_EQ(sl_tenant_admit(t, d, 4000, 0, 4252, &e, &why), SL_ETOOBIG);
  ASSERT_EQ(sl_tenant_admit(t, d, 252, 4000, 0, &e, &why), 0);
  ASSERT_EQ(sl_tenant_admit(t, d, 0, 1, 0, &c, &why), SL_ETOOBIG);
  ASSERT_STR_EQ(why.message, "tenant acme is over its tokens_per_minute limit (10000; this request needs 1, "
                             "10000 used); the window resets in 37 s");
  sl_tenant_settle(t, d, &e, 252, 4000, 0);
  ASSERT_EQ(t->usage.reserved_tokens, 0);
  ASSERT_UINT_EQ(t->usage.requests, 4);
  ASSERT_UINT_EQ(t->usage.refused_429, 6);
  sl_ttldict_free(d);
  sl_tenants_free(ts);
}

/* Entries and bytes of d, to tell that a call changed nothing. */
static void footprint(sl_ttldict_t *d, size_t *entries, size_t *bytes) {
  sl_ttldict_sweep(d, sl_ttldict_now(d), 0);
  sl_ttldict_count(d, entries, bytes);
}

static void test_window_keys(void) {
  sl_tenants_t *ts = one_tenant("\"limits\": {\"requests_per_minute\": 5, \"tokens_per_day\": 100000}");
  sl_ttldict_t *d = make_dict(0);
  ASSERT_NOT_NULL(ts);
  ASSERT_NOT_NULL(d);
  sl_tenant_resv_t r;
  sl_tenant_refusal_t why;
  fake_now = 7000;
  ASSERT_EQ(sl_tenant_admit(&ts->t[0], d, 10, 10, 0, &r, &why), 0);
  /* The keys tenant.h names, with the window as their TTL; no tpm window
   * without a tpm limit. */
  int64_t left = 0;
  fake_now += 1000;
  ASSERT_EQ(sl_ttldict_ttl(d, "t:acme:rpm", 10, &left), 0);
  ASSERT_EQ(left, 59000);
  ASSERT_EQ(sl_ttldict_ttl(d, "t:acme:tpd", 10, &left), 0);
  ASSERT_EQ(left, 86400000 - 1000);
  ASSERT_EQ(sl_ttldict_ttl(d, "t:acme:tpm", 10, &left), SL_ENOTFOUND);
  ASSERT_UINT_EQ(r.tpm_window, 0);
  ASSERT_UINT_EQ(r.tpd_window, 7001);
  sl_tenant_settle(&ts->t[0], d, &r, 10, 10, 0);
  sl_ttldict_free(d);
  sl_tenants_free(ts);
}

static void test_rollover(void) {
  sl_tenants_t *ts = one_tenant("\"limits\": {\"tokens_per_minute\": 10000, \"max_tokens_per_request\": 4000}");
  sl_ttldict_t *d = make_dict(0);
  ASSERT_NOT_NULL(ts);
  ASSERT_NOT_NULL(d);
  sl_tenant_t *t = &ts->t[0];
  sl_tenant_resv_t old1, old2, cur, probe;
  sl_tenant_refusal_t why;
  fake_now = 100000;
  ASSERT_EQ(sl_tenant_admit(t, d, 352, 0, 0, &old1, &why), 0);
  ASSERT_EQ(sl_tenant_admit(t, d, 352, 0, 0, &old2, &why), 0);
  /* The window closes while both streams run; a new one opens. */
  fake_now += 60000;
  ASSERT_EQ(sl_tenant_admit(t, d, 352, 0, 0, &cur, &why), 0);
  ASSERT(cur.tpm_window != old1.tpm_window);
  /* Settling the old streams, for less and for more than they reserved,
   * leaves the new window at 4352. */
  sl_tenant_settle(t, d, &old1, 0, 0, 1);
  sl_tenant_settle(t, d, &old2, 9000, 4000, 0);
  ASSERT_EQ(sl_tenant_admit(t, d, 5649, 0, 1, &probe, &why), SL_ETOOBIG);
  ASSERT_STR_EQ(why.message, "tenant acme is over its tokens_per_minute limit (10000; this request needs 5650, "
                             "4352 used); the window resets in 60 s");
  /* Usage still counts what the old streams spent. */
  ASSERT_UINT_EQ(t->usage.prompt_tokens, 9000);
  ASSERT_UINT_EQ(t->usage.completion_tokens, 4000);
  ASSERT_EQ(t->usage.reserved_tokens, 4352);
  /* A window that closed with nothing after it: settling opens nothing. */
  fake_now += 60000;
  size_t n0, b0, n1, b1;
  footprint(d, &n0, &b0);
  ASSERT_EQ(n0, 0);
  sl_tenant_settle(t, d, &cur, 9999, 0, 0);
  footprint(d, &n1, &b1);
  ASSERT_EQ(n1, 0);
  ASSERT_EQ(t->usage.reserved_tokens, 0);
  sl_ttldict_free(d);
  sl_tenants_free(ts);
}

static void test_refusal_changes_nothing(void) {
  sl_tenants_t *ts = one_tenant(
      "\"limits\": {\"requests_per_minute\": 3, \"tokens_per_minute\": 1000, \"tokens_per_day\": 1500}");
  sl_ttldict_t *d = make_dict(0);
  ASSERT_NOT_NULL(ts);
  ASSERT_NOT_NULL(d);
  sl_tenant_t *t = &ts->t[0];
  sl_tenant_resv_t r[4];
  sl_tenant_refusal_t why;
  size_t n0, b0, n1, b1;
  fake_now = 0;
  /* A request no window can ever hold: refused before any window opens. */
  ASSERT_EQ(sl_tenant_admit(t, d, 1500, 1, 0, &r[0], &why), SL_ETOOBIG);
  ASSERT_STR_EQ(why.limit, "tokens_per_day"); /* tpm refuses too; tpd stays shut longer */
  ASSERT_UINT_EQ(why.retry_after_ms, 0);
  ASSERT_STR_EQ(why.message, "tenant acme's tokens_per_day limit (1500) is smaller than this request (1501 tokens: "
                             "1500 prompt + 1 completion); ask for fewer max_tokens");
  footprint(d, &n0, &b0);
  ASSERT_EQ(n0, 0);
  ASSERT_EQ(sl_tenant_admit(t, d, 800, 100, 0, &r[0], &why), 0);
  footprint(d, &n0, &b0);
  ASSERT_EQ(n0, 6); /* three windows: an id and a counter each */
  /* Over tpm (and tpd) with rpm room: nothing moves, rpm included. */
  fake_now = 30000;
  ASSERT_EQ(sl_tenant_admit(t, d, 600, 1, 0, &r[1], &why), SL_ETOOBIG);
  ASSERT_STR_EQ(why.limit, "tokens_per_day");
  ASSERT_UINT_EQ(why.retry_after_ms, 86400000 - 30000);
  ASSERT_EQ(sl_tenant_admit(t, d, 150, 1, 0, &r[1], &why), SL_ETOOBIG);
  ASSERT_STR_EQ(why.limit, "tokens_per_minute");
  ASSERT_UINT_EQ(why.retry_after_ms, 30000);
  ASSERT(!r[1].active);
  footprint(d, &n1, &b1);
  ASSERT_EQ(n1, n0);
  ASSERT_EQ(b1, b0);
  ASSERT_UINT_EQ(t->usage.requests, 1);
  ASSERT_UINT_EQ(t->usage.refused_429, 3);
  ASSERT_EQ(t->usage.reserved_tokens, 900);
  /* The refused requests did not count in rpm: two more fit, not three. */
  ASSERT_EQ(sl_tenant_admit(t, d, 1, 1, 0, &r[1], &why), 0);
  ASSERT_EQ(sl_tenant_admit(t, d, 1, 1, 0, &r[2], &why), 0);
  ASSERT_EQ(sl_tenant_admit(t, d, 1, 1, 0, &r[3], &why), SL_ETOOBIG);
  ASSERT_STR_EQ(why.limit, "requests_per_minute");
  for (int i = 0; i < 3; i++) sl_tenant_settle(t, d, &r[i], 0, 0, 0);
  ASSERT_EQ(t->usage.reserved_tokens, 0);
  sl_ttldict_free(d);
  sl_tenants_free(ts);
}

/* Fills d with filler entries until one more does not fit, then frees
 * `room` of them.  Returns the number stored. */
static int fill(sl_ttldict_t *d, int room) {
  char key[32];
  int i = 0;
  for (;; i++) {
    int klen = snprintf(key, sizeof(key), "filler:%06d", i);
    if (sl_ttldict_set(d, key, (size_t)klen, "0123456789abcdef", 16, 0) != 0) break;
  }
  for (int j = 0; j < room && i > 0; j++) {
    int klen = snprintf(key, sizeof(key), "filler:%06d", --i);
    sl_ttldict_delete(d, key, (size_t)klen);
  }
  return i;
}

static void test_full_dictionary(void) {
  sl_tenants_t *ts = one_tenant(
      "\"limits\": {\"requests_per_minute\": 3, \"tokens_per_minute\": 1000, \"tokens_per_day\": 1500}");
  ASSERT_NOT_NULL(ts);
  sl_tenant_t *t = &ts->t[0];
  sl_tenant_resv_t r;
  sl_tenant_refusal_t why;
  fake_now = 0;
  /* Room for none, one, ... of the six entries a first request makes:
   * each fails as a dictionary error, not a limit, and leaves nothing. */
  for (int room = 0; room <= 3; room++) {
    sl_ttldict_t *d = make_dict(8192);
    ASSERT_NOT_NULL(d);
    ASSERT_GT(fill(d, room), 0);
    size_t n0, b0, n1, b1;
    footprint(d, &n0, &b0);
    int rc = sl_tenant_admit(t, d, 10, 10, 0, &r, &why);
    ASSERT_EQ(rc, SL_ENOMEM);
    ASSERT(rc != SL_ETOOBIG);
    ASSERT(!r.active);
    ASSERT_EQ(why.status, 503);
    ASSERT_NULL(why.limit);
    ASSERT(strstr(why.message, "tenant acme: the dictionary that keeps the limit windows is full") == why.message);
    footprint(d, &n1, &b1);
    ASSERT_EQ(n1, n0);
    ASSERT_EQ(b1, b0);
    sl_ttldict_free(d);
  }
  ASSERT_UINT_EQ(t->usage.requests, 0);
  ASSERT_UINT_EQ(t->usage.refused_429, 0);
  ASSERT_EQ(t->usage.reserved_tokens, 0);
  /* With room the same request is admitted. */
  sl_ttldict_t *d = make_dict(8192);
  ASSERT_NOT_NULL(d);
  ASSERT_EQ(sl_tenant_admit(t, d, 10, 10, 0, &r, &why), 0);
  sl_tenant_settle(t, d, &r, 10, 10, 0);
  sl_ttldict_free(d);
  sl_tenants_free(ts);
}

int main(void) {
  SL_RUN(test_hash_key);
  SL_RUN(test_config_ok);
  SL_RUN(test_config_errors);
  SL_RUN(test_auth);
  SL_RUN(test_model_ok);
  SL_RUN(test_rpm_window);
  SL_RUN(test_token_reservation);
  SL_RUN(test_window_keys);
  SL_RUN(test_rollover);
  SL_RUN(test_refusal_changes_nothing);
  SL_RUN(test_full_dictionary);
  return SL_TEST_EXIT();
}
