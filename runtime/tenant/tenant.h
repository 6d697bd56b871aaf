/* tenant.h: tenants, their keys, their limits and their usage.
 *
 * The config's "tenants" array compiles once into a tenant set
 * (sl_tenants_t, owned by the gateway).  With no tenants configured the
 * gateway stays open (any key or none is accepted).  With tenants:
 *
 *   keys     each tenant lists the SHA-256 digests of its API keys
 *            ("sha256:<64 hex>"; `sluice hash-key KEY` prints one).  A
 *            request's "Authorization: Bearer KEY" is hashed and compared
 *            with every configured digest in constant time
 *            (CRYPTO_memcmp, no early exit), so the key never sits in the
 *            config and the time taken says nothing about which digest
 *            came close.  A missing or unknown key is 401.
 *   models   the models the tenant may use (absent: all); another is 403.
 *   limits   requests_per_minute, tokens_per_minute, tokens_per_day, each
 *            a fixed window that starts at the tenant's first request in
 *            it (its own window), kept in the TTL dictionary under the key
 *            "t:<tenant>:rpm" (tpm, tpd) with the window as its TTL; and
 *            max_tokens_per_request, the completion tokens a request may
 *            reserve when it does not say max_tokens (and the most it may
 *            reserve when it does).  Over a limit: 429 with Retry-After
 *            (the window's remaining lifetime, rounded up to seconds).
 *   priority "high", "normal" (default) or "low" (the admission queue's
 *            band).
 *   pipeline a Lua file (runtime/lua/pipeline.h), loaded with each
 *            generation.
 *   guards   a guards object (guard.h) added to the pool's: a tenant may
 *            add guards, never remove or weaken an operator's
 *            (sl_guards_merge).
 *   transcripts  the fraction of the tenant's streams recorded (0..1).
 *
 * Token limits hold for streams: a request reserves prompt + completion
 * tokens before its first byte (sl_tenant_admit), and the stream settles
 * to the real count when it ends or is cut (sl_tenant_settle); the
 * completion reservation is the stream's budget ceiling, so a stream that
 * would spend more is ended by the budget guard.
 *
 * Shared limits (a "redis" config, docs/scaling.md): each limit is then
 * kept in Redis for every process and instance (shlimit.h):
 * requests_per_minute and tokens_per_day as fixed windows,
 * tokens_per_minute as a GCRA rate.  When Redis cannot answer (down, or
 * this process's unconfirmed allowance spent), a limit that fails open is
 * checked and counted in this process's own window above, one that fails
 * closed refuses the request with 503 and Retry-After.
 *
 * Usage (requests, prompt and completion tokens, cut streams, refusals by
 * kind) is counted per tenant in memory and shown by /health and attach.
 */
#ifndef SL_TENANT_H
#define SL_TENANT_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/lua/ttldict.h"
#include "runtime/shared/shlimit.h"

#define SL_TENANT_MAX 256          /* tenants in a config */
#define SL_TENANT_MAX_KEYS 16      /* key digests per tenant */
#define SL_TENANT_NAME_MAX 64      /* bytes of a name, NUL included; [A-Za-z0-9_.-] only */
#define SL_TENANT_MAX_TOKENS_DEFAULT 4096 /* max_tokens_per_request when the config says nothing */

typedef enum { SL_PRIO_HIGH = 0, SL_PRIO_NORMAL = 1, SL_PRIO_LOW = 2 } sl_priority_t;

typedef struct {
  uint64_t requests;          /* admitted */
  uint64_t prompt_tokens;     /* settled */
  uint64_t completion_tokens; /* settled */
  uint64_t cut_streams;       /* ended before the engine's own finish (client gone, guard, error) */
  uint64_t refused_401;       /* (not per tenant: see sl_tenants_t.unauthorized) */
  uint64_t refused_403;       /* model not allowed */
  uint64_t refused_429;       /* a limit */
  uint64_t denied;            /* the pipeline's on_request denied */
  uint64_t pipeline_errors;   /* pipeline phases that failed (raised, budget, memory) */
  int64_t reserved_tokens;    /* reserved by streams in flight, not yet settled */
  uint64_t shared_fail_open;  /* limit checks that Redis could not answer, admitted on the local window */
  uint64_t shared_fail_closed;/* ... refused (503) because that limit fails closed */
} sl_tenant_usage_t;

typedef struct sl_tenant_s {
  int index;                  /* in the set */
  char name[SL_TENANT_NAME_MAX];
  uint8_t keys[SL_TENANT_MAX_KEYS][32];
  int nkeys;
  char **models;              /* NULL = every model */
  int nmodels;
  sl_priority_t priority;
  int64_t rpm, tpm, tpd;      /* 0 = no limit */
  int64_t max_tokens;         /* max_tokens_per_request */
  char *pipeline;             /* the pipeline file as configured, or NULL */
  char *guards_json;          /* its "guards" object as JSON text, or NULL */
  double transcripts;         /* fraction of streams recorded */
  sl_tenant_usage_t usage;
  struct sl_shwin_s *shared[3]; /* rpm, tpm, tpd kept in Redis (shlimit.h), or NULL: local only */
  int fail_closed[3];         /* while Redis cannot answer: refuse (1) or count locally (0) */
} sl_tenant_t;

typedef struct sl_tenants_s {
  sl_tenant_t *t;
  int n;
  uint64_t unauthorized;      /* 401s */
} sl_tenants_t;

/* Compiles the "tenants" array (JSON text; NULL or "[]": no tenants, *out
 * has n = 0).  Every key is checked; errors name the path
 * ("tenants[1].keys[0]: expected \"sha256:\" and 64 hex digits").  Names
 * must be unique, and so must key digests across tenants.  Returns 0 or
 * SL_EINVAL / SL_ENOMEM with err set. */
int sl_tenants_build(const char *json, sl_tenants_t **out, char *err, size_t errlen);
void sl_tenants_free(sl_tenants_t *ts);

/* The tenant whose key the Authorization header value (e.g. "Bearer
 * sk-...", may be NULL) carries, or NULL (401).  Every digest is compared,
 * whatever matched.  Counts nothing. */
sl_tenant_t *sl_tenants_auth(const sl_tenants_t *ts, const char *authorization);

/* 1 if t may use model. */
int sl_tenant_model_ok(const sl_tenant_t *t, const char *model);

/* "sha256:<hex>" of key into out (at least 72 bytes). */
void sl_tenant_hash_key(const char *key, size_t len, char *out);

/* A stream's reservation (kept by the stream until it settles). */
typedef struct {
  int active;                 /* reserved and not settled */
  int64_t prompt;             /* tokens reserved for the prompt (the estimate) */
  int64_t completion;         /* tokens reserved for the completion: the stream's budget ceiling */
  uint64_t tpm_window, tpd_window; /* the local windows reserved in (settling into a later window does nothing) */
  unsigned char shared[3];    /* 1: that window (rpm, tpm, tpd) was counted in Redis, not locally */
} sl_tenant_resv_t;

/* What sl_tenant_admit refused. */
typedef struct {
  int status;                 /* 429 */
  uint64_t retry_after_ms;    /* the window's remaining lifetime */
  const char *limit;          /* "requests_per_minute", "tokens_per_minute", "tokens_per_day" (static) */
  char message[256];          /* for the client: which limit, its size, when it resets */
} sl_tenant_refusal_t;

/* The request phase: counts the request in the tenant's request window and
 * reserves prompt_estimate + the completion tokens (max_tokens when > 0,
 * capped at the tenant's max_tokens_per_request; else the smaller of
 * context_left (when > 0) and max_tokens_per_request) in its token windows.
 * Returns 0 with *res active, or SL_ETOOBIG with *why filled and nothing
 * kept (a refused request counts in no window); SL_ENOMEM / other < 0 when
 * the dictionary fails (the message says so; the caller answers 503). */
int sl_tenant_admit(sl_tenant_t *t, sl_ttldict_t *d, int64_t prompt_estimate, int64_t max_tokens,
                    int64_t context_left, sl_tenant_resv_t *res, sl_tenant_refusal_t *why);

/* The stream ended (or was cut): moves the windows it reserved in from the
 * reservation to the real counts, and counts usage.  Safe to call once per
 * reservation; does nothing when res is not active. */
void sl_tenant_settle(sl_tenant_t *t, sl_ttldict_t *d, sl_tenant_resv_t *res, int64_t prompt_tokens,
                      int64_t completion_tokens, int cut);

/* Static "high", "normal", "low". */
const char *sl_priority_name(sl_priority_t p);

#endif
