/* Tests for runtime/stream/placement (over runtime/upstream/registry): the prefilter (model, ready, draining,
 * cooldown, with the reason when nothing is eligible), the least-loaded
 * choice and its deterministic tie-break, retries avoiding tried endpoints,
 * cooldown backoff (which health probes leave alone), and snapshot_version
 * moving on every state change. */
#include "runtime/base/config.h"
#include "runtime/stream/placement.h"
#include "test.h"

static const char *cfg_json =
    "{\"pools\":["
    "{\"name\":\"a\",\"models\":[\"m1\",\"shared\"],\"slots\":4,"
    " \"endpoints\":[{\"url\":\"http://127.0.0.1:9001\"},{\"url\":\"http://127.0.0.1:9002\"}]},"
    "{\"name\":\"b\",\"models\":[\"shared\",\"bonly\"],\"slots\":8,\"context_tokens\":1000,"
    " \"endpoints\":[{\"url\":\"http://127.0.0.1:9003\"}]}],"
    "\"health\":{\"cooldown_base_ms\":100,\"cooldown_max_ms\":350,\"cooldown_after_failures\":2}}";

static sl_config_t cfg;
static sl_registry_t reg;

static int setup(void) {
  char err[256];
  if (sl_config_parse(&cfg, cfg_json, strlen(cfg_json), err, sizeof(err)) != 0) return -1;
  if (sl_registry_init(&reg, NULL, &cfg, err, sizeof(err)) != 0) return -1;
  return 0;
}

static void teardown(void) {
  sl_registry_free(&reg);
  sl_config_free(&cfg);
}

static void all_ready(void) {
  for (int i = 0; i < reg.neps; i++) {
    reg.eps[i].ready = 1;
    reg.eps[i].draining = 0;
    reg.eps[i].cooldown_until = 0;
    reg.eps[i].failures = 0;
    reg.eps[i].inflight = 0;
  }
}

static void test_prefilter_reasons(void) {
  sl_candidate_t c[8];
  char why[256];
  ASSERT_EQ(setup(), 0);
  ASSERT_EQ(sl_placement_prefilter(&reg, "nope", 0, 0, c, 8, NULL, why, sizeof(why)), 0);
  ASSERT_STR_EQ(why, "no pool serves model \"nope\"");
  /* Nothing is ready before health checks pass. */
  ASSERT_EQ(sl_placement_prefilter(&reg, "m1", 0, 0, c, 8, NULL, why, sizeof(why)), 0);
  ASSERT_STR_EQ(why, "no ready endpoint serves model \"m1\"");
  all_ready();
  ASSERT_EQ(sl_placement_prefilter(&reg, "m1", 0, 0, c, 8, NULL, why, sizeof(why)), 2);
  ASSERT_EQ(sl_placement_prefilter(&reg, "shared", 0, 0, c, 8, NULL, why, sizeof(why)), 3);
  sl_endpoint_set_draining(&reg.eps[0], 1);
  ASSERT_EQ(sl_placement_prefilter(&reg, "m1", 0, 0, c, 8, NULL, why, sizeof(why)), 1);
  ASSERT(c[0].ep == &reg.eps[1]);
  sl_endpoint_failed(&reg.eps[1], 1000);
  ASSERT_EQ(sl_placement_prefilter(&reg, "m1", 0, 1000, c, 8, NULL, why, sizeof(why)), 1); /* one failure: no cooldown */
  sl_endpoint_failed(&reg.eps[1], 1000);
  ASSERT_EQ(sl_placement_prefilter(&reg, "m1", 0, 1000, c, 8, NULL, why, sizeof(why)), 0);
  ASSERT_STR_EQ(why, "every endpoint serving model \"m1\" is cooling down after failures");
  /* After the cooldown it is eligible again. */
  ASSERT_EQ(sl_placement_prefilter(&reg, "m1", 0, 1000 + 100 * 1000000ull, c, 8, NULL, why, sizeof(why)), 1);
  teardown();
}

static void test_context_too_small(void) {
  sl_candidate_t c[8];
  char why[256];
  int cause = -1;
  ASSERT_EQ(setup(), 0);
  all_ready();
  /* Pool b alone serves "bonly", with a 1000-token context. */
  ASSERT_EQ(sl_placement_prefilter(&reg, "bonly", 500, 0, c, 8, &cause, why, sizeof(why)), 1);
  ASSERT_EQ(cause, SL_PLACE_OK);
  ASSERT_EQ(sl_placement_prefilter(&reg, "bonly", 5000, 0, c, 8, &cause, why, sizeof(why)), 0);
  ASSERT_EQ(cause, SL_PLACE_TOO_LARGE);
  ASSERT(strstr(why, "about 5000 tokens") != NULL && strstr(why, "is 1000 tokens") != NULL);
  /* "shared" is also served by pool a, whose context is unknown: it stays. */
  ASSERT_EQ(sl_placement_prefilter(&reg, "shared", 5000, 0, c, 8, &cause, why, sizeof(why)), 2);
  ASSERT(c[0].ep->pool == &reg.pools[0] && c[1].ep->pool == &reg.pools[0]);
  /* Size unknown (0): nothing is dropped for it. */
  ASSERT_EQ(sl_placement_prefilter(&reg, "bonly", 0, 0, c, 8, &cause, why, sizeof(why)), 1);
  teardown();
}

static void test_least_loaded_and_tie_break(void) {
  sl_candidate_t c[8];
  char why[256];
  ASSERT_EQ(setup(), 0);
  all_ready();
  int n = sl_placement_prefilter(&reg, "shared", 0, 0, c, 8, NULL, why, sizeof(why));
  ASSERT_EQ(n, 3);
  /* All idle: the tie goes to the lowest id, every time. */
  for (int i = 0; i < 5; i++) ASSERT_EQ(c[sl_placement_least_loaded(c, n, NULL, 0, why, sizeof(why))].ep->id, 0);
  /* Load per slot: 2/4 and 1/4 against 3/8: endpoint 2 (3/8 < 1/2) loses to 1/4. */
  c[0].inflight = 2;
  c[1].inflight = 1;
  c[2].inflight = 3;
  int k = sl_placement_least_loaded(c, n, NULL, 0, why, sizeof(why));
  ASSERT_EQ(c[k].ep->id, 1);
  ASSERT_STR_EQ(why, "least loaded: 1/4 streams");
  c[1].inflight = 2; /* 2/4 = 4/8 > 3/8 */
  k = sl_placement_least_loaded(c, n, NULL, 0, why, sizeof(why));
  ASSERT_EQ(c[k].ep->id, 2);
  c[2].inflight = 4; /* 4/8 ties 2/4: lowest id */
  k = sl_placement_least_loaded(c, n, NULL, 0, why, sizeof(why));
  ASSERT_EQ(c[k].ep->id, 0);
  teardown();
}

static void test_retry_avoids_tried(void) {
  sl_candidate_t c[8];
  char why[256];
  ASSERT_EQ(setup(), 0);
  all_ready();
  int n = sl_placement_prefilter(&reg, "shared", 0, 0, c, 8, NULL, why, sizeof(why));
  int tried[3] = {0};
  int k = sl_placement_least_loaded(c, n, tried, 1, why, sizeof(why));
  ASSERT_EQ(c[k].ep->id, 1);
  tried[1] = 1;
  k = sl_placement_least_loaded(c, n, tried, 2, why, sizeof(why));
  ASSERT_EQ(c[k].ep->id, 2);
  tried[2] = 2;
  /* Everything tried: allowed again, and the reason says so. */
  k = sl_placement_least_loaded(c, n, tried, 3, why, sizeof(why));
  ASSERT_EQ(c[k].ep->id, 0);
  ASSERT(strstr(why, "every candidate tried before") != NULL);
  teardown();
}

static void test_cooldown_backoff_and_snapshot(void) {
  ASSERT_EQ(setup(), 0);
  sl_endpoint_t *ep = &reg.eps[0];
  uint64_t v = reg.snapshot_version;
  ASSERT_EQ(sl_endpoint_set_ready(ep, 1), 1);
  ASSERT_GT(reg.snapshot_version, v);
  v = reg.snapshot_version;
  ASSERT_EQ(sl_endpoint_set_ready(ep, 1), 0); /* no change, no bump */
  ASSERT_UINT_EQ(reg.snapshot_version, v);
  sl_endpoint_failed(ep, 0);
  ASSERT_UINT_EQ(ep->cooldown_until, 0); /* the first failure of a run does not cool down */
  sl_endpoint_failed(ep, 0);
  ASSERT_UINT_EQ(ep->cooldown_until, 100 * 1000000ull);
  sl_endpoint_failed(ep, 0);
  ASSERT_UINT_EQ(ep->cooldown_until, 200 * 1000000ull);
  sl_endpoint_failed(ep, 0);
  ASSERT_UINT_EQ(ep->cooldown_until, 350 * 1000000ull); /* capped */
  ASSERT_GT(reg.snapshot_version, v);
  sl_endpoint_succeeded(ep);
  ASSERT_EQ(ep->failures, 0);
  ASSERT_UINT_EQ(ep->cooldown_until, 0);
  teardown();
}

/* A health probe moves readiness only: passing ones do not clear a run of
 * failed requests (so the backoff still grows to its cap across probe
 * intervals), failing ones do not add to it; a served request clears it. */
static void test_probe_is_readiness_only(void) {
  ASSERT_EQ(setup(), 0);
  sl_endpoint_t *ep = &reg.eps[0];
  uint64_t v = reg.snapshot_version;
  ASSERT_EQ(sl_endpoint_probe(ep, 1), 1);
  ASSERT_EQ(ep->ready, 1);
  ASSERT_GT(reg.snapshot_version, v);
  ASSERT_EQ(sl_endpoint_probe(ep, 1), 0); /* no change */
  static const uint64_t want_ms[] = {0, 100, 200, 350, 350};
  for (int i = 0; i < 5; i++) {
    sl_endpoint_failed(ep, 0);
    ASSERT_EQ(sl_endpoint_probe(ep, 1), 0); /* the probe between requests passes */
    ASSERT_EQ(ep->failures, i + 1);
    ASSERT_UINT_EQ(ep->cooldown_until, want_ms[i] * 1000000ull);
  }
  /* A failing probe: not ready, and the run is unchanged. */
  ASSERT_EQ(sl_endpoint_probe(ep, 0), 1);
  ASSERT_EQ(ep->ready, 0);
  ASSERT_EQ(ep->failures, 5);
  ASSERT_UINT_EQ(ep->cooldown_until, 350 * 1000000ull);
  ASSERT_EQ(sl_endpoint_probe(ep, 1), 1);
  sl_endpoint_succeeded(ep);
  ASSERT_EQ(ep->failures, 0);
  ASSERT_UINT_EQ(ep->cooldown_until, 0);
  ASSERT_EQ(ep->ready, 1);
  teardown();
}

/* Endpoint "models": a pool of two models whose endpoints serve one each
 * (local engines, docs/engines.md) places a request only on the
 * endpoint serving its model, and says "not ready" when that one is not. */
static void test_endpoint_models(void) {
  static const char *j =
      "{\"pools\":[{\"name\":\"local\",\"models\":[\"m1\",\"m2\"],\"endpoints\":["
      "{\"url\":\"http://127.0.0.1:9001\",\"models\":[\"m1\"]},"
      "{\"url\":\"http://127.0.0.1:9002\",\"models\":[\"m2\"]},"
      "{\"url\":\"http://127.0.0.1:9003\"}]}]}";
  static sl_config_t c2;
  static sl_registry_t r2;
  char err[256];
  ASSERT_EQ(sl_config_parse(&c2, j, strlen(j), err, sizeof(err)), 0);
  ASSERT_EQ(sl_registry_init(&r2, NULL, &c2, err, sizeof(err)), 0);
  ASSERT(sl_endpoint_serves(&r2.eps[0], "m1"));
  ASSERT(!sl_endpoint_serves(&r2.eps[0], "m2"));
  ASSERT(sl_endpoint_serves(&r2.eps[2], "m2")); /* no list: all of the pool's */
  r2.eps[0].ready = r2.eps[1].ready = 1;
  sl_candidate_t c[8];
  char why[256];
  int cause = -1;
  ASSERT_EQ(sl_placement_prefilter(&r2, "m1", 0, 0, c, 8, &cause, why, sizeof(why)), 1);
  ASSERT(c[0].ep == &r2.eps[0]);
  ASSERT_EQ(sl_placement_prefilter(&r2, "m2", 0, 0, c, 8, &cause, why, sizeof(why)), 1);
  ASSERT(c[0].ep == &r2.eps[1]);
  r2.eps[1].ready = 0; /* m2's engine restarts: m1's does not take its requests */
  ASSERT_EQ(sl_placement_prefilter(&r2, "m2", 0, 0, c, 8, &cause, why, sizeof(why)), 0);
  ASSERT_EQ(cause, SL_PLACE_NOT_READY);
  ASSERT_STR_EQ(why, "no ready endpoint serves model \"m2\"");
  r2.eps[2].ready = 1;
  ASSERT_EQ(sl_placement_prefilter(&r2, "m2", 0, 0, c, 8, &cause, why, sizeof(why)), 1);
  ASSERT(c[0].ep == &r2.eps[2]);
  sl_registry_free(&r2);
  sl_config_free(&c2);
}

int main(void) {
  SL_RUN(test_prefilter_reasons);
  SL_RUN(test_context_too_small);
  SL_RUN(test_least_loaded_and_tie_break);
  SL_RUN(test_retry_avoids_tried);
  SL_RUN(test_cooldown_backoff_and_snapshot);
  SL_RUN(test_probe_is_readiness_only);
  SL_RUN(test_endpoint_models);
  return SL_TEST_EXIT();
}
