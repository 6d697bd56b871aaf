/* Tests for runtime/config: the compiled-in default, every error naming its
 * key, URL and HOST:PORT parsing, and that nothing leaks on failure. */
#include <stdlib.h>

#include "runtime/base/config.h"
#include "runtime/base/errors.h"
#include "test.h"

static int parse(sl_config_t *cfg, const char *json, char *err, size_t n) {
  return sl_config_parse(cfg, json, strlen(json), err, n);
}

static void test_default_config_parses(void) {
  sl_config_t cfg;
  char err[512];
  ASSERT_EQ(parse(&cfg, sl_config_default_json(), err, sizeof(err)), 0);
  ASSERT_EQ(cfg.npools, 1);
  ASSERT_STR_EQ(cfg.pools[0].name, "sim");
  ASSERT_EQ(cfg.pools[0].nendpoints, 2);
  ASSERT_EQ(cfg.pools[0].endpoints[0].is_sim, 1);
  /* In-process engines serve the pool's models. */
  ASSERT_EQ(cfg.pools[0].endpoints[0].sim.nmodels, cfg.pools[0].nmodels);
  ASSERT_STR_EQ(cfg.pools[0].endpoints[0].sim.models[0], cfg.pools[0].models[0]);
  ASSERT_STR_EQ(cfg.listen_host, "127.0.0.1");
  ASSERT_EQ(cfg.listen_port, 8080);
  ASSERT_UINT_EQ(cfg.heartbeat_ms, 10000);
  /* Unset: each pool's adapter gives its own health path and name. */
  ASSERT_STR_EQ(cfg.health_path, "");
  ASSERT_STR_EQ(cfg.pools[0].adapter, "openai");
  sl_config_free(&cfg);
}

static void test_full_config(void) {
  sl_config_t cfg;
  char err[512];
  const char *j =
      "{\"listen\":\"[::1]:9000\",\"heartbeat_ms\":250,"
      "\"http\":{\"max_body_bytes\":1000,\"max_connections\":2000},"
      "\"stream\":{\"high_watermark\":8192,\"low_watermark\":1024},"
      "\"upstream\":{\"max_attempts\":5,\"idle_timeout_ms\":700},"
      "\"health\":{\"path\":\"/v1/health\",\"interval_ms\":100},\"log\":{\"format\":\"json\"},"
      "\"pools\":[{\"name\":\"a\",\"models\":[\"m1\",\"m2\"],\"api_key\":\"k\",\"slots\":3,"
      "\"endpoints\":[{\"url\":\"http://127.0.0.1:8001/base/\"},{\"url\":\"http://localhost\",\"slots\":9}]}]}";
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_STR_EQ(cfg.listen_host, "::1");
  ASSERT_EQ(cfg.listen_port, 9000);
  ASSERT_UINT_EQ(cfg.heartbeat_ms, 250);
  ASSERT_UINT_EQ(cfg.http.max_body_bytes, 1000);
  ASSERT_EQ(cfg.http.max_connections, 2000);
  ASSERT_UINT_EQ(cfg.http.write_high_watermark, 8192);
  ASSERT_EQ(cfg.max_attempts, 5);
  ASSERT_STR_EQ(cfg.health_path, "/v1/health");
  ASSERT_EQ(cfg.log_json, 1);
  const sl_pool_config_t *p = &cfg.pools[0];
  ASSERT_STR_EQ(p->api_key, "k");
  ASSERT_STR_EQ(p->endpoints[0].host, "127.0.0.1");
  ASSERT_EQ(p->endpoints[0].port, 8001);
  ASSERT_STR_EQ(p->endpoints[0].base, "/base");
  ASSERT_EQ(p->endpoints[0].slots, 3);
  ASSERT_STR_EQ(p->endpoints[1].host, "localhost");
  ASSERT_EQ(p->endpoints[1].port, 80);
  ASSERT_EQ(p->endpoints[1].slots, 9);
  sl_config_free(&cfg);
}

static void expect_error(const char *json, const char *needle) {
  sl_config_t cfg;
  char err[512];
  int rc = parse(&cfg, json, err, sizeof(err));
  ASSERT_EQ(rc, SL_EINVAL);
  if (strstr(err, needle) == NULL) {
    fprintf(stderr, "error \"%s\" does not contain \"%s\"\n", err, needle);
    ASSERT(0);
  }
}

static void test_errors_name_the_key(void) {
  expect_error("{", "line 1, column ");
  expect_error("{\n\"pools\": [\n  {\"name\": }\n]}", "line 3");
  expect_error("[]", "top level");
  expect_error("{}", "pools: expected a non-empty array");
  expect_error("{\"pools\":[],\"lisen\":\"x\"}", "lisen: unknown key");
  expect_error("{\"listen\":\"nope\",\"pools\":[]}", "listen: \"nope\" is not HOST:PORT");
  expect_error("{\"heartbeat_ms\":\"5\",\"pools\":[]}", "heartbeat_ms: expected a number");
  expect_error("{\"heartbeat_ms\":1.5,\"pools\":[]}", "heartbeat_ms");
  expect_error("{\"http\":{\"max_connections\":0},\"pools\":[]}", "http.max_connections: 0 is out of range");
  expect_error("{\"stream\":{\"high_watermark\":4096,\"low_watermark\":8192},\"pools\":[{}]}", "low_watermark");
  expect_error("{\"pools\":[{\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://a:1\"}]}]}", "pools[0].name: required");
  expect_error("{\"pools\":[{\"name\":\"p\",\"models\":[],\"endpoints\":[]}]}", "pools[0].models");
  expect_error("{\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"10.0.0.1:80\"}]}]}",
               "pools[0].endpoints[0].url: \"10.0.0.1:80\" is not an http[s]://host:port[/base] URL");
  expect_error("{\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://a:1\",\"sim\":{}}]}]}",
               "exactly one of");
  expect_error("{\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"sim\":{\"itl_ms\":\"x\"}}]}]}",
               "pools[0].endpoints[0].sim: itl_ms");
  /* An unknown adapter name is refused by the adapter table (upstream/),
   * tested in tests/runtime/upstream/test_adapter.c; a wrong type here. */
  expect_error("{\"pools\":[{\"name\":\"p\",\"adapter\":7,\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://a:1\"}]}]}",
               "pools[0].adapter");
  expect_error("{\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://a:1\"}]},"
               "{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://a:1\"}]}]}",
               "\"p\" is used twice");
}

static void test_hostport(void) {
  char host[64];
  int port;
  ASSERT_EQ(sl_parse_hostport("0.0.0.0:80", host, sizeof(host), &port), 0);
  ASSERT_STR_EQ(host, "0.0.0.0");
  ASSERT_EQ(port, 80);
  ASSERT_EQ(sl_parse_hostport(":0", host, sizeof(host), &port), 0);
  ASSERT_STR_EQ(host, "127.0.0.1");
  ASSERT_EQ(port, 0);
  ASSERT_EQ(sl_parse_hostport("[::1]:8080", host, sizeof(host), &port), 0);
  ASSERT_STR_EQ(host, "::1");
  ASSERT_LT(sl_parse_hostport("::1:8080", host, sizeof(host), &port), 0);
  ASSERT_LT(sl_parse_hostport("host", host, sizeof(host), &port), 0);
  ASSERT_LT(sl_parse_hostport("host:", host, sizeof(host), &port), 0);
  ASSERT_LT(sl_parse_hostport("host:70000", host, sizeof(host), &port), 0);
  ASSERT_LT(sl_parse_hostport("host:12ab", host, sizeof(host), &port), 0);
}

/* https:// endpoints: the port default, tls from the endpoint or else the
 * pool, and each mistake named. */
static void test_tls_keys(void) {
  static sl_config_t cfg; /* expect_error puts another of these (MBs) on the stack */
  char err[512];
  const char *j =
      "{\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"tls\":{\"server_name\":\"engine.example\"},"
      "\"endpoints\":[{\"url\":\"https://a/v1\"},{\"url\":\"https://b:8443\",\"tls\":{\"verify\":false}},"
      "{\"url\":\"http://c:1\"}]}]}";
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  const sl_endpoint_config_t *e = cfg.pools[0].endpoints;
  ASSERT_EQ(e[0].tls, 1);
  ASSERT_EQ(e[0].port, 443);
  ASSERT_STR_EQ(e[0].base, "/v1");
  ASSERT_EQ(e[0].tls_cfg.verify, 1);
  ASSERT_STR_EQ(e[0].tls_cfg.server_name, "engine.example"); /* the pool's */
  ASSERT(e[0].tls_cfg.ca_file == NULL);
  ASSERT_EQ(e[1].tls, 1);
  ASSERT_EQ(e[1].port, 8443);
  ASSERT_EQ(e[1].tls_cfg.verify, 0);
  ASSERT(e[1].tls_cfg.server_name == NULL); /* the endpoint's replaces the pool's whole */
  ASSERT_EQ(e[2].tls, 0);
  ASSERT_EQ(e[2].port, 1);
  sl_config_free(&cfg);
#define EP(x) "{\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[" x "]}]}"
  expect_error(EP("{\"url\":\"http://a:1\",\"tls\":{}}"), "pools[0].endpoints[0].tls: only an https:// url speaks TLS");
  expect_error(EP("{\"sim\":{},\"tls\":{}}"), "pools[0].endpoints[0].tls: only an https:// url speaks TLS");
  expect_error(EP("{\"url\":\"https://a\",\"tls\":{\"verify\":\"no\"}}"),
               "pools[0].endpoints[0].tls.verify: expected true or false");
  expect_error(EP("{\"url\":\"https://a\",\"tls\":{\"cafile\":\"x\"}}"), "pools[0].endpoints[0].tls.cafile: unknown key");
  expect_error(EP("{\"url\":\"https://a\",\"tls\":{\"ca_file\":\"/nonexistent/ca.pem\"}}"),
               "pools[0].endpoints[0].tls.ca_file: cannot open \"/nonexistent/ca.pem\"");
  expect_error(EP("{\"url\":\"https://a\",\"tls\":{\"server_name\":\"a b\"}}"),
               "pools[0].endpoints[0].tls.server_name: \"a b\" is not a host name");
  expect_error(EP("{\"url\":\"https://a\",\"tls\":7}"), "pools[0].endpoints[0].tls: expected an object");
  expect_error(EP("{\"url\":\"ftp://a\"}"), "is not an http[s]://host:port[/base] URL");
#undef EP
  expect_error("{\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"tls\":{\"verify\":false,\"ca_file\":\"/etc/hostname\"},"
               "\"endpoints\":[{\"url\":\"https://a\"}]}]}",
               "pools[0].tls.ca_file: has no use with verify: false");
}

/* dynamics.*: the defaults, every key, and each wrong value named. */
static void test_dynamics_keys(void) {
  sl_config_t cfg;
  char err[512];
  const char *pools = "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://a:1\"}]}]";
  char j[512];
  snprintf(j, sizeof(j), "{%s}", pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_EQ(cfg.dynamics_enabled, 1);
  ASSERT_UINT_EQ(cfg.dynamics_interval_ms, 5000);
  ASSERT_EQ(cfg.dynamics_min_samples, 128);
  sl_config_free(&cfg);
  snprintf(j, sizeof(j), "{\"dynamics\":{\"enabled\":false,\"interval_ms\":250,\"min_samples\":512},%s}", pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_EQ(cfg.dynamics_enabled, 0);
  ASSERT_UINT_EQ(cfg.dynamics_interval_ms, 250);
  ASSERT_EQ(cfg.dynamics_min_samples, SL_DYN_RING);
  sl_config_free(&cfg);
  static const struct {
    const char *dyn, *err;
  } bad[] = {
      {"[]", "dynamics: expected an object"},
      {"{\"enable\":true}", "dynamics.enable: unknown key"},
      {"{\"enabled\":1}", "dynamics.enabled: expected true or false"},
      {"{\"interval_ms\":\"5s\"}", "dynamics.interval_ms: expected a number"},
      {"{\"interval_ms\":5}", "dynamics.interval_ms: 5 is out of range [10, 3.6e+06]"},
      {"{\"min_samples\":63}", "dynamics.min_samples: 63 is out of range [64, 512]"},
      {"{\"min_samples\":513}", "dynamics.min_samples: 513 is out of range [64, 512]"},
      {"{\"min_samples\":100.5}", "dynamics.min_samples: expected an integer"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(j, sizeof(j), "{\"dynamics\":%s,%s}", bad[i].dyn, pools);
    ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), SL_EINVAL);
    ASSERT_STR_EQ(err, bad[i].err);
  }
}

/* tracing.timeout_ms, and the OpenTelemetry variables under it (the
 * traces-specific one first); a bad value names its variable. */
static void test_tracing_timeout(void) {
  sl_config_t cfg;
  char err[512];
  const char *pools = "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://a:1\"}]}]";
  char j[512];
  unsetenv("OTEL_EXPORTER_OTLP_TIMEOUT");
  unsetenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT");
  snprintf(j, sizeof(j), "{%s}", pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_UINT_EQ(cfg.trace_timeout_ms, 10000);
  sl_config_free(&cfg);
  setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1234", 1);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_UINT_EQ(cfg.trace_timeout_ms, 1234);
  sl_config_free(&cfg);
  setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "777", 1);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_UINT_EQ(cfg.trace_timeout_ms, 777);
  sl_config_free(&cfg);
  snprintf(j, sizeof(j), "{\"tracing\":{\"timeout_ms\":250},%s}", pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_UINT_EQ(cfg.trace_timeout_ms, 250); /* the key wins */
  sl_config_free(&cfg);
  setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "10s", 1);
  snprintf(j, sizeof(j), "{%s}", pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), SL_EINVAL);
  ASSERT_STR_EQ(err, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: \"10s\" is not a timeout in milliseconds from 1 to 600000");
  unsetenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT");
  setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0", 1);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), SL_EINVAL);
  ASSERT_STR_EQ(err, "OTEL_EXPORTER_OTLP_TIMEOUT: \"0\" is not a timeout in milliseconds from 1 to 600000");
  unsetenv("OTEL_EXPORTER_OTLP_TIMEOUT");
  snprintf(j, sizeof(j), "{\"tracing\":{\"timeout_ms\":0},%s}", pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), SL_EINVAL);
  ASSERT_STR_EQ(err, "tracing.timeout_ms: 0 is out of range [1, 600000]");
}

/* admission.order without admission.priority_header: the order string was
 * freed and then, the header key being absent, found again as if it were
 * the header's value (used after free, freed twice).  fuzz_config found it;
 * its input is tests/fuzz/regress/config/config-admission-order-use-after-free.json. */
static void test_admission_order_alone(void) {
  static sl_config_t cfg, def; /* large: not on the stack */
  char err[512];
  const char *j = "{\"admission\":{\"order\":\"deadline\"},"
                  "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://a:1\"}]}]}";
  ASSERT_EQ(parse(&def, sl_config_default_json(), err, sizeof(err)), 0);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_EQ(cfg.queue_edf, 1);
  ASSERT_STR_EQ(cfg.priority_header, def.priority_header); /* untouched */
  sl_config_free(&cfg);
  j = "{\"admission\":{\"order\":\"fifo\",\"queue_size\":8},"
      "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://a:1\"}]}]}";
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_EQ(cfg.queue_edf, 0);
  ASSERT_STR_EQ(cfg.priority_header, def.priority_header);
  sl_config_free(&cfg);
  sl_config_free(&def);
}

/* "workers": 1..64 or "auto" (one per CPU, at most 64); default 1. */
static void test_workers(void) {
  static sl_config_t cfg; /* large: not on the stack */
  char err[512], j[256];
  const char *pools = "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://a:1\"}]}]";
  snprintf(j, sizeof(j), "{%s}", pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_EQ(cfg.workers, 1);
  sl_config_free(&cfg);
  snprintf(j, sizeof(j), "{\"workers\":64,%s}", pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_EQ(cfg.workers, 64);
  sl_config_free(&cfg);
  snprintf(j, sizeof(j), "{\"workers\":\"auto\",%s}", pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_GE(cfg.workers, 1);
  ASSERT_LE(cfg.workers, SL_WORKERS_MAX);
  sl_config_free(&cfg);
  static const char *const bad[] = {"0", "65", "-1", "2.5", "\"many\"", "\"\"", "true", "null", "[2]"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(j, sizeof(j), "{\"workers\":%s,%s}", bad[i], pools);
    expect_error(j, "workers: expected an integer from 1 to 64 or \"auto\", not ");
  }
}

/* "admin_http": a string or {listen, token}; off loopback the token is
 * required; the token is checked and joins the redacted secrets. */
static void test_admin_http(void) {
  static sl_config_t cfg;
  char err[512], j[512];
  const char *pools = "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://a:1\"}]}]";
  snprintf(j, sizeof(j), "{%s}", pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_EQ(cfg.admin_http, 0);
  sl_config_free(&cfg);
  snprintf(j, sizeof(j), "{\"admin_http\":\"127.0.0.1:9090\",%s}", pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_EQ(cfg.admin_http, 1);
  ASSERT_STR_EQ(cfg.admin_http_host, "127.0.0.1");
  ASSERT_EQ(cfg.admin_http_port, 9090);
  ASSERT_NULL(cfg.admin_http_token);
  sl_config_free(&cfg);
  snprintf(j, sizeof(j), "{\"admin_http\":{\"listen\":\"[::]:9090\",\"token\":\"0123456789abcdef\"},%s}", pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_STR_EQ(cfg.admin_http_host, "::");
  ASSERT_STR_EQ(cfg.admin_http_token, "0123456789abcdef");
  ASSERT_EQ(cfg.nlog_secrets, 1);
  ASSERT_STR_EQ(cfg.log_secrets[0], "0123456789abcdef");
  sl_config_free(&cfg);
  ASSERT(sl_host_is_loopback("127.0.0.1"));
  ASSERT(sl_host_is_loopback("127.9.8.7"));
  ASSERT(sl_host_is_loopback("::1"));
  ASSERT(sl_host_is_loopback("localhost"));
  ASSERT(!sl_host_is_loopback("0.0.0.0"));
  ASSERT(!sl_host_is_loopback("::"));
  ASSERT(!sl_host_is_loopback("10.0.0.1"));
  snprintf(j, sizeof(j), "{\"admin_http\":\"0.0.0.0:9090\",%s}", pools);
  expect_error(j, "admin_http.token: required when admin_http.listen (\"0.0.0.0:9090\") is not a loopback address");
  snprintf(j, sizeof(j), "{\"admin_http\":{\"listen\":\"[::]:1\"},%s}", pools);
  expect_error(j, "admin_http.token: required");
  snprintf(j, sizeof(j), "{\"admin_http\":{\"listen\":\"127.0.0.1:1\",\"token\":\"short\"},%s}", pools);
  expect_error(j, "admin_http.token: expected 16 to 256 characters");
  snprintf(j, sizeof(j), "{\"admin_http\":{\"listen\":\"127.0.0.1:1\",\"token\":\"0123456789abcdef;x\"},%s}", pools);
  expect_error(j, "admin_http.token: character 16 is not allowed");
  snprintf(j, sizeof(j), "{\"admin_http\":{\"listen\":\"127.0.0.1:1\",\"tokn\":\"x\"},%s}", pools);
  expect_error(j, "admin_http.tokn: unknown key");
  snprintf(j, sizeof(j), "{\"admin_http\":{\"token\":\"0123456789abcdef\"},%s}", pools);
  expect_error(j, "admin_http.listen: expected a string");
  snprintf(j, sizeof(j), "{\"admin_http\":\"nowhere\",%s}", pools);
  expect_error(j, "admin_http.listen: \"nowhere\" is not HOST:PORT");
  snprintf(j, sizeof(j), "{\"admin_http\":9090,%s}", pools);
  expect_error(j, "admin_http: expected \"HOST:PORT\" or an object");
}

/* "redis": url required and checked; fail per limit or for all. */
static void test_redis(void) {
  static sl_config_t cfg;
  char err[512], j[512];
  const char *pools = "\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://a:1\"}]}]";
  snprintf(j, sizeof(j), "{%s}", pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_STR_EQ(cfg.redis_url, "");
  ASSERT_EQ(cfg.redis_timeout_ms, 100);
  ASSERT_STR_EQ(cfg.redis_prefix, "sluice:");
  ASSERT_EQ(cfg.redis_batch_requests, 8);
  ASSERT_EQ(cfg.redis_batch_tokens, 8192);
  ASSERT_EQ(cfg.redis_fail_closed[0] + cfg.redis_fail_closed[1] + cfg.redis_fail_closed[2], 0);
  sl_config_free(&cfg);
  snprintf(j, sizeof(j),
           "{\"redis\":{\"url\":\"redis://10.0.0.5:6380/2\",\"timeout_ms\":50,\"prefix\":\"p1:\","
           "\"batch_requests\":3,\"batch_tokens\":500,\"fail\":{\"tokens_per_day\":\"closed\"}},%s}",
           pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_STR_EQ(cfg.redis_url, "redis://10.0.0.5:6380/2");
  ASSERT_EQ(cfg.redis_timeout_ms, 50);
  ASSERT_STR_EQ(cfg.redis_prefix, "p1:");
  ASSERT_EQ(cfg.redis_batch_requests, 3);
  ASSERT_EQ(cfg.redis_batch_tokens, 500);
  ASSERT_EQ(cfg.redis_fail_closed[0], 0);
  ASSERT_EQ(cfg.redis_fail_closed[1], 0);
  ASSERT_EQ(cfg.redis_fail_closed[2], 1);
  sl_config_free(&cfg);
  snprintf(j, sizeof(j), "{\"redis\":{\"url\":\"unix:/run/r.sock\",\"fail\":\"closed\"},%s}", pools);
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_EQ(cfg.redis_fail_closed[0] + cfg.redis_fail_closed[1] + cfg.redis_fail_closed[2], 3);
  sl_config_free(&cfg);
  static const struct {
    const char *redis, *says;
  } bad[] = {
      {"{}", "redis.url: required"},
      {"{\"url\":\"http://x:1\"}", "redis.url: expected \"unix:/path/redis.sock\" or \"redis://host:port[/db]\""},
      {"{\"url\":\"unix:/r\",\"fail\":\"sometimes\"}", "redis.fail: expected \"open\" or \"closed\""},
      {"{\"url\":\"unix:/r\",\"fail\":{\"requests_per_hour\":\"open\"}}", "requests_per_hour"},
      {"{\"url\":\"unix:/r\",\"fail\":{\"tokens_per_day\":1}}", "redis.fail.tokens_per_day: expected"},
      {"{\"url\":\"unix:/r\",\"batch_tokens\":0}", "batch_tokens"},
      {"{\"url\":\"unix:/r\",\"prefix\":\"a b\"}", "redis.prefix"},
      {"{\"url\":\"unix:/r\",\"colour\":1}", "colour"},
      {"\"unix:/r\"", "redis: expected an object"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(j, sizeof(j), "{\"redis\":%s,%s}", bad[i].redis, pools);
    expect_error(j, bad[i].says);
  }
}

/* Managed endpoints ("managed"), endpoint "models" and a pool's "swap". */
#define CAT "\"catalog\":{\"dir\":\"/models\",\"models\":[{\"name\":\"a\",\"file\":\"a.gguf\",\"sha256\":" \
            "\"0000000000000000000000000000000000000000000000000000000000000000\"}]}"

static void test_managed(void) {
  static sl_config_t cfg;
  char err[512], j[2048];
  snprintf(j, sizeof(j),
           "{" CAT ",\"pools\":[{\"name\":\"p\",\"models\":[\"a\",\"b\"],\"swap\":{\"max_running\":1,"
           "\"idle_timeout_ms\":60000},\"endpoints\":["
           "{\"models\":[\"a\"],\"managed\":{\"command\":[\"llama-server\",\"-m\",\"{model_path}\",\"--port\","
           "\"{port}\"],\"model\":\"a\",\"cwd\":\"/tmp\",\"env\":{\"CUDA_VISIBLE_DEVICES\":\"0\"},"
           "\"start_timeout_ms\":5000,\"stop_grace_ms\":100}},"
           "{\"models\":[\"b\"],\"managed\":{\"command\":[\"eng\"],\"port\":9001}}]}]}");
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  const sl_pool_config_t *p = &cfg.pools[0];
  ASSERT_EQ(p->swap, 1);
  ASSERT_EQ(p->swap_max_running, 1);
  ASSERT_UINT_EQ(p->swap_idle_ms, 60000);
  const sl_endpoint_config_t *e = &p->endpoints[0];
  ASSERT_EQ(e->managed, 1);
  ASSERT_EQ(e->mg.argc, 5);
  ASSERT_STR_EQ(e->mg.argv[2], "{model_path}"); /* replaced when it starts */
  ASSERT_NULL(e->mg.argv[5]);
  ASSERT_STR_EQ(e->mg.model, "a");
  ASSERT_STR_EQ(e->mg.model_path, "/models/a.gguf");
  ASSERT_STR_EQ(e->mg.cwd, "/tmp");
  ASSERT_EQ(e->mg.nenv, 1);
  ASSERT_STR_EQ(e->mg.env[0], "CUDA_VISIBLE_DEVICES=0");
  ASSERT_UINT_EQ(e->mg.start_timeout_ms, 5000);
  ASSERT_UINT_EQ(e->mg.stop_grace_ms, 100);
  ASSERT_STR_EQ(e->host, "127.0.0.1");
  ASSERT_EQ(e->port, 0); /* sluice picks one at open */
  ASSERT_EQ(e->nmodels, 1);
  ASSERT_STR_EQ(e->models[0], "a");
  e = &p->endpoints[1];
  ASSERT_EQ(e->port, 9001);
  ASSERT_UINT_EQ(e->mg.start_timeout_ms, 120000); /* the defaults */
  ASSERT_UINT_EQ(e->mg.stop_grace_ms, 5000);
  ASSERT_NULL(e->mg.model_path);
  sl_config_free(&cfg);
  /* With a url: its port is the engine's. */
  snprintf(j, sizeof(j),
           "{\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"url\":\"http://127.0.0.1:8123/x\","
           "\"managed\":{\"command\":[\"eng\",\"{port}\"]}}]}]}");
  ASSERT_EQ(parse(&cfg, j, err, sizeof(err)), 0);
  ASSERT_EQ(cfg.pools[0].endpoints[0].port, 8123);
  ASSERT_STR_EQ(cfg.pools[0].endpoints[0].base, "/x");
  ASSERT_EQ(cfg.pools[0].swap, 0);
  sl_config_free(&cfg);

  static const struct {
    const char *ep, *pool, *says;
  } bad[] = {
      {"{\"managed\":{}}", "", "pools[0].endpoints[0].managed.command: expected a non-empty array"},
      {"{\"managed\":{\"command\":[]}}", "", "managed.command: expected a non-empty array"},
      {"{\"managed\":{\"command\":[\"\"]}}", "", "managed.command[0]: expected a non-empty string"},
      {"{\"managed\":{\"command\":[\"e\",3]}}", "", "managed.command[1]: expected a string"},
      {"{\"managed\":{\"command\":[\"e\"],\"model\":\"zz\"}}", "", "managed.model: \"zz\" is not in catalog.models"},
      {"{\"managed\":{\"command\":[\"e\",\"{model_path}\"]}}", "", "managed.command[1]: uses {model_path}"},
      {"{\"managed\":{\"command\":[\"e\"],\"port\":70000}}", "", "managed.port: 70000 is out of range"},
      {"{\"managed\":{\"command\":[\"e\"],\"env\":{\"A\":1}}}", "", "managed.env.A: expected a string"},
      {"{\"managed\":{\"command\":[\"e\"],\"env\":[]}}", "", "managed.env: expected an object"},
      {"{\"managed\":{\"command\":[\"e\"],\"start_timeout_ms\":0}}", "", "managed.start_timeout_ms: 0 is out"},
      {"{\"managed\":{\"command\":[\"e\"],\"stop_grace_ms\":\"x\"}}", "", "managed.stop_grace_ms: expected a number"},
      {"{\"managed\":{\"command\":[\"e\"],\"colour\":1}}", "", "managed.colour: unknown key"},
      {"{\"managed\":{\"command\":[\"e\"],\"cwd\":\"\"}}", "", "managed.cwd: expected a folder"},
      {"{\"managed\":[\"e\"]}", "", "pools[0].endpoints[0].managed: expected an object"},
      {"{\"url\":\"http://h:1\",\"managed\":{\"command\":[\"e\"],\"port\":2}}", "", "managed.port: 2 is not the url's port 1"},
      {"{\"url\":\"https://h:1\",\"managed\":{\"command\":[\"e\"]}}", "", "a managed engine is spoken to over http://"},
      {"{\"sim\":{},\"managed\":{\"command\":[\"e\"]}}", "", "exactly one of"},
      {"{\"slots\":2}", "", "exactly one of"},
      {"{\"url\":\"http://h:1\",\"models\":[\"q\"]}", "", "pools[0].endpoints[0].models[0]: \"q\" is not one of the pool's models"},
      {"{\"url\":\"http://h:1\",\"models\":[]}", "", "pools[0].endpoints[0].models: expected a non-empty array"},
      {"{\"url\":\"http://h:1\"}", ",\"swap\":{}", "pools[0].swap: endpoints[0] is not \"managed\""},
      {"{\"managed\":{\"command\":[\"e\"]}}", ",\"swap\":{\"max_running\":0}", "pools[0].swap.max_running: 0 is out"},
      {"{\"managed\":{\"command\":[\"e\"]}}", ",\"swap\":{\"max\":1}", "pools[0].swap.max: unknown key"},
      {"{\"managed\":{\"command\":[\"e\"]}}", ",\"swap\":1", "pools[0].swap: expected an object"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(j, sizeof(j), "{" CAT ",\"pools\":[{\"name\":\"p\",\"models\":[\"m\"]%s,\"endpoints\":[%s]}]}", bad[i].pool,
             bad[i].ep);
    expect_error(j, bad[i].says);
  }
  /* A pool model no endpoint serves. */
  expect_error("{\"pools\":[{\"name\":\"p\",\"models\":[\"m\",\"n\"],\"endpoints\":[{\"url\":\"http://h:1\","
               "\"models\":[\"m\"]}]}]}",
               "pools[0].models[1]: \"n\" is served by none of the pool's endpoints");
  /* Workers would each start their own engine. */
  expect_error("{\"workers\":2,\"pools\":[{\"name\":\"p\",\"models\":[\"m\"],\"endpoints\":[{\"managed\":{\"command\":"
               "[\"e\"]}}]}]}",
               "pools[0].endpoints[0].managed: needs \"workers\": 1");
}

int main(void) {
  SL_RUN(test_workers);
  SL_RUN(test_redis);
  SL_RUN(test_managed);
  SL_RUN(test_default_config_parses);
  SL_RUN(test_full_config);
  SL_RUN(test_errors_name_the_key);
  SL_RUN(test_tls_keys);
  SL_RUN(test_hostport);
  SL_RUN(test_dynamics_keys);
  SL_RUN(test_tracing_timeout);
  SL_RUN(test_admission_order_alone);
  SL_RUN(test_admin_http);
  return SL_TEST_EXIT();
}
