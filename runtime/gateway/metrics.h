/* metrics.h: GET /metrics, the Prometheus text exposition format (0.0.4).
 *
 * Every family is written on every scrape, registered up front by the
 * configuration (pools, endpoints, tenants, guard kinds, reasons and
 * outcomes are known when the gateway opens), so a dashboard never meets a
 * series that appears late.  Names follow the Prometheus conventions:
 * "sluice_" prefix, base units (_seconds, _bytes), counters end in _total.
 * Two kinds:
 *   - every counter and gauge of counters.h, unlabelled, under its /health
 *     name (sluice_<name>_total for a total, sluice_<name> for a gauge), so
 *     the two agree by construction;
 *   - labelled families (pool, endpoint, tenant, guard, reason, outcome)
 *     and the histograms (TTFT, time per output token, request duration,
 *     queue wait, completion tokens per request, the loop's lag), with the
 *     OpenTelemetry GenAI bucket boundaries.
 * Cardinality is bounded: past metrics.max_endpoints endpoints (and
 * metrics.max_tenants tenants), the rest are summed into one "other" series.
 * Nothing here runs per token: the relay records into the registry's
 * histograms once per stream, and this walks them per scrape.
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include <stddef.h>

#include "runtime/gateway/gateway.h"

/* The exposition of gw's metrics now, as a malloc'd text (free with
 * sl_free) of *len bytes. */
char *sl_metrics_render(const sl_gateway_t *gw, size_t *len);

/* /health's verdict: "healthy", "degraded" or "unhealthy", with the reasons
 * (sentences, at most cap) in reasons[]; returns how many reasons. */
int sl_health_verdict(const sl_gateway_t *gw, const char **status, char reasons[][160], int cap);

/* The loop-lag sampler (gw->lag_timer): started by the gateway. */
void sl_metrics_start_lag(sl_gateway_t *gw);

#endif
