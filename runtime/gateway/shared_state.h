/* shared_state.h: the gateway's link to Redis (docs/scaling.md).
 *
 * With "redis" in the configuration, the gateway opens one client
 * (runtime/shared/redis.h) and keeps on it the tenants' limits
 * (runtime/shared/shlimit.h: each tenant's requests_per_minute,
 * tokens_per_minute and tokens_per_day under "<prefix>t:<tenant>:rpm", tpm,
 * tpd) and the replication of the TTL dictionary (runtime/shared/shdict.h:
 * reads stay local, writes go to Redis and reach every other instance).
 * The client's outages and recoveries are narrated (SL_NAR_SHARED)
 * and counted (redis_up, redis_outages); /health shows the client's and the
 * limits' figures under "redis".
 */
#ifndef SL_SHARED_STATE_H
#define SL_SHARED_STATE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "runtime/gateway/gateway.h"
#include "runtime/shared/redis.h"
#include "runtime/shared/shdict.h"
#include "runtime/shared/shlimit.h"

typedef struct sl_shared_s {
  sl_gateway_t *gw;
  sl_redis_t *redis;
  sl_shlimits_t *limits;
  sl_shdict_t *dict;       /* the TTL dictionary's replication (shdict.h) */
  void (*closed)(void *ud);
  void *closed_ud;
} sl_shared_t;

/* Opens gw->shared when the configuration names a Redis (nothing when it
 * does not) and gives every tenant limit its shared window.  Returns 0, or
 * SL_EINVAL / SL_ENOMEM with err set.  Call after the tenants are built. */
int sl_shared_open(sl_gateway_t *gw, char *err, size_t errlen);

/* Closes the client (pending calls are cancelled), frees the windows, and
 * calls done(ud) once the client's handles have closed. */
void sl_shared_close(sl_shared_t *sh, void (*done)(void *ud), void *ud);

/* /health's "redis" object into o. */
void sl_shared_json(const sl_shared_t *sh, cJSON *o);

#endif
