/* config.h: sluice's configuration, read from JSON.
 *
 * One JSON document describes the listener, the HTTP limits, the stream
 * watermarks, upstream timeouts and retries, logging, and the engine pools.
 * The default configuration is compiled in (sl_config_default_json) and
 * serves one pool of two simulated engines that run inside the process on
 * loopback ports, so `sluice serve` works with no file.  Unknown keys and
 * wrong types are refused with the key's path named ("pools[0].endpoints[1]
 * .url: expected a string"), so a typo never silently falls back to a
 * default.  Times are milliseconds; sizes are bytes.
 */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* ---- the HTTP server's limits (runtime/http) ---- */

typedef struct {
  size_t max_header_bytes;     /* request line + headers + trailers; past it: 431 */
  size_t max_body_bytes;       /* declared or received body; past it: 413 */
  uint64_t header_timeout_ms;  /* first byte to complete request; then 408 */
  uint64_t idle_timeout_ms;    /* keep-alive idle between requests; then close */
  int max_connections;         /* open connections; past it: 503 and close */
  size_t write_high_watermark; /* write queue bytes at which the handler should pause */
  size_t write_low_watermark;  /* write queue bytes at which on_drain fires */
} sl_http_limits_t;

/* Fills in the defaults: 16 KiB headers, 4 MiB body, 10 s header timeout,
 * 60 s idle, 8192 connections, 64 KiB / 16 KiB write watermarks. */
void sl_http_limits_default(sl_http_limits_t *l);

/* ---- a simulated engine's options (runtime/sim) ---- */

#define SL_SIM_MAX_MODELS 16  /* model names a config may list */
#define SL_SIM_MODEL_MAX 128  /* bytes per model name, NUL included */

typedef struct {
  char host[64];              /* listen address (IPv4 or IPv6 literal); default "127.0.0.1" */
  int port;                   /* listen port; default 8000; 0 picks a free one */
  int slots;                  /* requests generating at once; default 4; more wait FIFO */
  double ttft_ms;             /* base time to first token; default 50 */
  double prefill_us_per_char; /* added to TTFT per prompt character; default 10 */
  double itl_ms;              /* mean inter-token gap; default 20; 0 = as fast as possible */
  double itl_jitter;          /* relative jitter in [0,1]: gaps uniform in itl*(1 +- j); default 0.2 */
  double itl_wave_period;     /* itl_wave.period: tokens per cycle of a sine on the gaps (0 = none, else >= 2) */
  double itl_wave_amp;        /* itl_wave.amplitude in [0,1): the gap before token k is
                                 itl*(1 + amp*sin(2 pi k / period)), times the jitter; default 0 */
  int max_tokens;             /* tokens when the request gives neither max_tokens nor x-sim-tokens; default 64 */
  uint64_t seed;              /* base seed; request k uses a seed derived from (seed, k); default 1 */
  int stamp;                  /* 1: stamp every token with its send time (as x-sim-stamp: 1); default 0 */
  int nmodels;                /* entries in models; default 1 ("sim") */
  char models[SL_SIM_MAX_MODELS][SL_SIM_MODEL_MAX]; /* served model ids; "*" accepts any */
} sl_sim_config_t;

/* Fills cfg with the defaults listed above. */
void sl_sim_config_default(sl_sim_config_t *cfg);

/* Applies the keys of a JSON object onto cfg (start from
 * sl_sim_config_default): "listen" ("HOST:PORT"), "host", "port", "slots",
 * "ttft_ms", "prefill_us_per_char", "itl_ms", "itl_jitter", "itl_wave" (an
 * object {"period", "amplitude"}), "max_tokens", "seed", "stamp" (bool) and
 * "models" (a string or an array of strings).
 * Returns 0, or SL_EINVAL with a message naming the key in err (errlen bytes,
 * may be NULL) for an unknown key, a wrong type or a value out of range; cfg
 * may then be partly updated. */
int sl_sim_config_from_json(sl_sim_config_t *cfg, const cJSON *obj, char *err, size_t errlen);

/* Parses "HOST:PORT" (or "[v6]:PORT", or ":PORT" for 127.0.0.1) into
 * cfg->host and cfg->port.  Returns 0 or SL_EINVAL. */
int sl_sim_config_set_listen(sl_sim_config_t *cfg, const char *hostport);

/* Lua budgets (lua.instruction_budget, lua.load_instruction_budget). */
#define SL_BUDGET_DEFAULT 1000000u        /* VM instructions per phase call */
#define SL_BUDGET_LOAD_DEFAULT 50000000u  /* VM instructions to load and configure a module */

/* Timing dynamics per endpoint (dynamics.*; runtime/gateway/timing.h). */
#define SL_DYN_RING 512          /* inter-token gaps an endpoint keeps (its ring) */
#define SL_DYN_MIN_FLOOR 64      /* fewest gaps a verdict may use: SL_DYN_MIN_SAMPLES of
                                    analyzers/dynamics.h (timing.c asserts they agree) */

#define SL_WORKERS_MAX 64    /* "workers": processes under one supervisor */
#define SL_MAX_POOLS 32
#define SL_MAX_ENDPOINTS 64  /* per pool */
#define SL_MAX_MODELS 32     /* per pool */
#define SL_MAX_CATALOG 64    /* models in the catalog */

/* One model file of the catalog ("catalog.models[i]"). */
typedef struct {
  char name[128];            /* the model's name, as requests and endpoints say it */
  char path[1024];           /* catalog.dir + "/" + file (or file when absolute) */
  char sha256[65];           /* its expected digest, 64 lowercase hex digits */
} sl_catalog_entry_t;

/* Upstream TLS of an https:// endpoint: the endpoint's "tls" object, else
 * its pool's, else the defaults (system CA store, verification on, SNI and
 * host name check against the URL's host). */
typedef struct {
  char *ca_file;             /* PEM bundle of trusted CAs, or NULL for the system store */
  int verify;                /* check the engine's certificate chain and host name (1) */
  char *server_name;         /* name sent as SNI and checked in the certificate, or NULL for the URL's host */
} sl_tls_config_t;

/* A local engine sluice runs, restarts and stops: an endpoint's "managed"
 * object (docs/engines.md, "Local engines"; runtime/gateway/engines.h). */
#define SL_MANAGED_MAX_ARGS 64  /* command words */
#define SL_MANAGED_MAX_ENV 32   /* env entries */

typedef struct {
  char *argv[SL_MANAGED_MAX_ARGS + 1]; /* command: program and arguments, NULL-ended; "{port}" and
                                          "{model_path}" are replaced when it starts */
  int argc;
  char *model;               /* model: a catalog model's name, or NULL */
  const char *model_path;    /* that entry's path (into the config's catalog), or NULL */
  char *cwd;                 /* cwd: where it runs, or NULL for sluice's own */
  char *env[SL_MANAGED_MAX_ENV + 1]; /* env: "KEY=VALUE" added to sluice's environment, NULL-ended */
  int nenv;
  uint64_t start_timeout_ms; /* start_timeout_ms: not ready by then is a failed start (120000) */
  uint64_t stop_grace_ms;    /* stop_grace_ms: SIGTERM, then SIGKILL after this (5000) */
} sl_managed_config_t;

typedef struct {
  char *url;                 /* "http[s]://host:port[/base]", or NULL for an in-process sim or a managed engine */
  int tls;                   /* https://: spoken over TLS with tls_cfg */
  sl_tls_config_t tls_cfg;   /* its TLS options (endpoint's, else the pool's) */
  int is_sim;                /* run a simulated engine in-process for this endpoint */
  sl_sim_config_t sim;       /* its options when is_sim */
  char host[256];            /* parsed from url (or 127.0.0.1 for a sim) */
  int port;                  /* parsed from url (0 for a sim until it listens) */
  char base[256];            /* path prefix from url, without trailing '/' ("" for none) */
  int slots;                 /* concurrent streams this endpoint takes (from the pool if unset) */
  int managed;               /* "managed": sluice runs this engine (mg) */
  sl_managed_config_t mg;    /* its command and options when managed */
  char *models[SL_MAX_MODELS]; /* models: what this endpoint serves, a subset of its pool's (0 = all of them) */
  int nmodels;
} sl_endpoint_config_t;

typedef struct {
  char *name;                /* pool name */
  char *adapter;             /* engine adapter's name (default "openai"); checked against the adapter
                                table by the registry (upstream/adapter.h), not here */
  char *models[SL_MAX_MODELS];
  int nmodels;
  int slots;                 /* default slots per endpoint */
  int context_tokens;        /* context limit of the pool's engines (0 = unknown) */
  char *api_key;             /* upstream bearer token, or NULL */
  sl_tls_config_t tls;       /* "tls": defaults for its https:// endpoints */
  int has_tls;               /* "tls" was given */
  char *guards_json;         /* the pool's "guards" object as JSON text, or NULL (compiled by
                                runtime/guard, see guard.h) */
  double transcripts;        /* fraction of the pool's streams recorded (transcripts.dir) */
  int queue_size;            /* queue_size: requests its admission queue holds (admission.queue_size) */
  uint64_t queue_timeout_ms; /* queue_timeout_ms: a request's deadline (admission.queue_timeout_ms) */
  int limit_adaptive;        /* limits.adaptive: the limit rule moves its endpoints' limits (1) */
  int limit_min;             /* limits.min: the lowest limit (1) */
  int limit_max;             /* limits.max: the highest (0 = 4 x the endpoint's slots) */
  int limit_initial;         /* limits.initial: the first limit (0 = the endpoint's slots) */
  int swap;                  /* "swap": its managed engines start on demand, swapped by model */
  int swap_max_running;      /* swap.max_running: engines running at once (1..) */
  uint64_t swap_idle_ms;     /* swap.idle_timeout_ms: an engine without streams this long stops (0 = never) */
  sl_endpoint_config_t endpoints[SL_MAX_ENDPOINTS];
  int nendpoints;
} sl_pool_config_t;

typedef struct {
  char listen_host[256];
  int listen_port;
  sl_http_limits_t http;          /* client-side limits and write watermarks */
  uint64_t heartbeat_ms;          /* ':' comment interval before the first token */
  size_t chunk_size;              /* upstream read chunk size */
  size_t chunk_keep;              /* recycle-list low watermark (chunks) */
  size_t max_event_bytes;         /* one SSE event joined across reads */
  uint64_t connect_timeout_ms;
  uint64_t first_token_timeout_ms;
  uint64_t idle_timeout_ms;       /* between upstream events */
  uint64_t total_timeout_ms;      /* whole stream */
  int max_attempts;               /* upstream attempts before the first token */
  uint64_t backoff_base_ms;
  uint64_t backoff_max_ms;
  int keepalive_per_endpoint;     /* idle upstream connections kept per endpoint */
  uint64_t upstream_keepalive_ms; /* an idle upstream connection is closed after this */
  uint64_t health_interval_ms;
  uint64_t health_timeout_ms;
  char health_path[128];          /* health.path: probed on every endpoint; "" (default) = each pool's adapter's path */
  uint64_t cooldown_base_ms;
  uint64_t cooldown_max_ms;
  int cooldown_after_failures;    /* consecutive failures before an endpoint cools down */
  uint64_t drain_timeout_ms;      /* SIGTERM: streams get this long to finish */
  int workers;                    /* processes serving the port (1..SL_WORKERS_MAX; "auto" = CPUs); 1 = no supervisor */
  int log_json;                   /* stream-end lines as JSON */
  char placement_policy[512];     /* policy name ("least_loaded") or path to a .lua file */
  int placement_watch;            /* reload when the policy file changes */
  char *placement_config;         /* the policy's config object as JSON text, or NULL */
  char admin_socket[256];         /* unix socket for admin commands ("" = none) */
  /* The admin web view (runtime/ops/web.h; docs/operations.md). */
  int admin_http;                 /* admin_http was given: serve the view and its API */
  char admin_http_host[256];      /* admin_http.listen's host (a loopback address unless a token is set) */
  int admin_http_port;            /* ... and port (0 picks a free one; worker I listens on port + I - 1) */
  char *admin_http_token;         /* admin_http.token: required of every request, or NULL (loopback only) */
  char narration_policy[512];     /* narration policy name or path ("" = narration off) */
  char *log_secrets[33];          /* strings redacted from every log line (log.secrets, at most 32, then
                                     admin_http.token) */
  int nlog_secrets;
  size_t lua_memory_limit;        /* bytes per Lua state (0 = no cap) */
  uint64_t lua_budget;            /* VM instructions per policy call (placement, narration batch) */
  uint64_t lua_load_budget;       /* VM instructions to load and configure a policy module */
  uint64_t watchdog_warn_ms;      /* the loop stuck this long: log what runs (0 = no watchdog) */
  uint64_t watchdog_abort_ms;     /* stuck this long: end the process (0 = never) */
  int dynamics_enabled;           /* dynamics.enabled: classify each endpoint's inter-token gaps */
  uint64_t dynamics_interval_ms;  /* dynamics.interval_ms: how often the job looks at the endpoints */
  int dynamics_min_samples;       /* dynamics.min_samples: gaps an endpoint needs before a verdict */
  char *tenants_json;             /* the "tenants" array as JSON text, or NULL (compiled by runtime/tenant) */
  size_t pipe_flush_bytes;        /* pipelines.flush_bytes: on_chunk gets at least this many new bytes (256) */
  uint64_t pipe_flush_ms;         /* pipelines.flush_ms: ... or what waited this long (20) */
  size_t pipe_memory_limit;       /* pipelines.memory_limit_bytes: per tenant pipeline (16 MiB) */
  uint64_t pipe_budget;           /* pipelines.instruction_budget: per phase call (200000) */
  uint64_t pipe_load_budget;      /* pipelines.load_instruction_budget (5000000) */
  char transcript_dir[512];       /* transcripts.dir: where recorded streams go ("" = none) */
  double transcript_sample;       /* transcripts.sample: fraction of every stream recorded (0) */
  size_t transcript_max_bytes;    /* transcripts.max_bytes: one transcript's bound (4 MiB) */
  /* Admission and adaptive limits (docs/admission.md). */
  int queue_size;                 /* admission.queue_size: requests a pool's queue holds (1024) */
  uint64_t queue_timeout_ms;      /* admission.queue_timeout_ms: a request's deadline, from its arrival (30000) */
  int queue_edf;                  /* admission.order "deadline": earliest deadline first inside a band
                                     (default "fifo") */
  char priority_header[64];       /* admission.priority_header: the header a client names its band in
                                     ("high", "normal", "low") when no tenants are configured ("" = none) */
  size_t stream_memory_budget;    /* admission.memory_budget_bytes: stream buffers of all streams; past it new
                                     streams queue (512 MiB; 0 = none) */
  uint64_t slow_client_ms;        /* admission.slow_client_ms: a client above the high watermark this long is
                                     reported to the limit rule (10000; 0 = never) */
  char limit_rule[512];           /* limits.rule: rule name or path ("gradient") */
  char *limit_config;             /* limits.config: the rule's config object as JSON text, or NULL */
  uint64_t limit_interval_ms;     /* limits.interval_ms: how often the rule runs (1000) */
  double limit_cut;               /* limits.cut: an engine's 429, 503 or a timeout multiplies the limit by
                                     this at once, once an interval (0.75) */
  /* Metrics and traces (docs/operations.md). */
  int metrics_enabled;            /* metrics.enabled: histograms and labelled series are kept (1) */
  int metrics_max_endpoints;      /* metrics.max_endpoints: endpoint label values; the rest are "other" (256) */
  int metrics_max_tenants;        /* metrics.max_tenants: tenant label values; the rest are "other" (256) */
  uint64_t lag_interval_ms;       /* metrics.lag_interval_ms: how often the loop's lag is sampled (100) */
  char trace_endpoint[512];       /* tracing.endpoint: OTLP/HTTP base URL ("" = tracing off; the environment's
                                     OTEL_EXPORTER_OTLP_ENDPOINT when the key is absent) */
  char trace_service[128];        /* tracing.service_name ("sluice") */
  uint64_t trace_batch_ms;        /* tracing.batch_ms: spans are sent at least this often (1000) */
  int trace_max_queue;            /* tracing.max_queue: streams' records waiting to be sent; past it the oldest
                                     are dropped and counted (2048) */
  uint64_t trace_timeout_ms;      /* tracing.timeout_ms: one export's bound, connect to answer (the environment's
                                     OTEL_EXPORTER_OTLP_TRACES_TIMEOUT or OTEL_EXPORTER_OTLP_TIMEOUT, else 10000) */
  char redis_url[512];            /* redis.url: "unix:/path" or "redis://host:port[/db]" ("" = no shared state:
                                     every limit and the dictionary are this process's own) */
  uint64_t redis_timeout_ms;      /* redis.timeout_ms: a command's bound; past it Redis counts as down (100) */
  char redis_prefix[64];          /* redis.prefix: put before every key and channel ("sluice:") */
  int64_t redis_batch_requests;   /* redis.batch_requests: requests one process may admit that Redis has not
                                     confirmed yet, per limit (8); the over-admission bound's B for requests */
  int64_t redis_batch_tokens;     /* redis.batch_tokens: the same for tokens (8192) */
  int redis_fail_closed[3];       /* redis.fail: per limit (requests_per_minute, tokens_per_minute,
                                     tokens_per_day), 1 = closed (refuse while Redis is down), 0 = open */
  char catalog_dir[512];          /* catalog.dir: the folder of model files ("" = no catalog) */
  sl_catalog_entry_t catalog[SL_MAX_CATALOG]; /* catalog.models: checked by SHA-256 at start */
  int ncatalog;
  /* The native task API (docs/operations.md, "Task API"). */
  uint64_t task_grace_ms;         /* tasks.grace_ms: a task with no client is kept this long (60000) */
  size_t task_ring_bytes;         /* tasks.ring_bytes: events a task's ring holds (256 KiB) */
  uint64_t task_metrics_tokens;   /* tasks.metrics_tokens: a metrics event every this many tokens (32; 0 = none) */
  int task_max;                   /* tasks.max: tasks a process keeps at once (1024) */
  sl_pool_config_t pools[SL_MAX_POOLS];
  int npools;
} sl_config_t;

/* The compiled-in default configuration (JSON text; static storage). */
const char *sl_config_default_json(void);

/* Parses JSON text into cfg (zeroed first, defaults applied, then the
 * document).  Returns 0, or SL_EINVAL with a message naming the key path
 * (and line, for JSON syntax errors) in err[0..errlen).  On failure cfg
 * holds nothing that needs freeing.  On success free it with
 * sl_config_free. */
int sl_config_parse(sl_config_t *cfg, const char *json, size_t len, char *err, size_t errlen);

/* Reads and parses a file; errors name the file. */
int sl_config_load(sl_config_t *cfg, const char *path, char *err, size_t errlen);

/* Frees the strings cfg owns. */
void sl_config_free(sl_config_t *cfg);

/* Parses "host:port" (or "[v6]:port", or ":port" for 127.0.0.1) into host
 * and port.  Returns 0 or SL_EINVAL. */
int sl_parse_hostport(const char *s, char *host, size_t hostcap, int *port);

/* 1 if host names the loopback interface ("localhost", 127.0.0.0/8, ::1),
 * else 0 (a wildcard such as 0.0.0.0 is not loopback). */
int sl_host_is_loopback(const char *host);

#define SL_ADMIN_TOKEN_MIN 16  /* admin_http.token: bytes at least */

#endif
