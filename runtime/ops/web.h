/* web.h: the admin web view, an HTTP listener of its own beside the gateway.
 *
 * With "admin_http" in the configuration, `sluice serve` runs a second
 * sl_http_server_t (not the gateway's: the gateway's handler cannot call up
 * into ops/) that serves:
 *   GET  /                         the page (web/index.html; app.js and style.css beside it)
 *   GET  /app.js, /style.css       its script and style sheet
 *   GET  /api/state                one JSON snapshot: pools and endpoints (readiness, draining,
 *                                  limit, queue, streams), the streams in flight (tenant, endpoint,
 *                                  model, tokens, tokens/s, guard), recent percentiles
 *   GET  /api/events               server-sent events: "state" (the snapshot above) at once and
 *                                  every second, the last 100 narration events at once, then
 *                                  "narration" and "guard" as the narrator flushes them, and
 *                                  "admin" for a drain or undrain from the view
 *   POST /api/endpoints/NAME/drain     the endpoint takes no new streams (as attach's drain())
 *   POST /api/endpoints/NAME/undrain   it takes them again
 * NAME is the endpoint's "host:port" (percent-encoded or not) or its id.
 *
 * It reads the gateway as admin.c does: the registry, the streams through
 * relay.h's listing, the endpoints' histograms.  Nothing here runs per
 * token: the narrator calls the view's tap once per flushed batch
 * (narrate.h), and a one-second timer samples the histograms for the
 * recent percentiles and sends the state snapshot.
 *
 * Access: admin_http.token, when set, is required of every request, as
 * "Authorization: Bearer T", a cookie "sluice_admin=T" (the page's answer to
 * "/?token=T" sets it, so the page's own requests and its EventSource carry
 * it) or a query parameter "?token=T"; compared in constant time; anything
 * else is 401 and counted (admin_http_unauthorized).  Without a token the
 * configuration only allows a loopback address (config.c).  A POST whose
 * Origin is not this listener's own is refused (403), so another site's
 * page cannot drain endpoints through a browser holding the cookie.
 *
 * The page's files are found like lua/ and policies/ (generation.c):
 * $SLUICE_WEB_DIR, else the source tree's web/ (a developer's build), else
 * <prefix>/share/sluice/web beside the installed binary.
 */
#ifndef SL_WEB_H
#define SL_WEB_H

#include "runtime/gateway/gateway.h"

#define SL_WEB_WINDOW_S 10        /* the recent percentiles cover the last this many seconds */
#define SL_WEB_STREAMS_MAX 500    /* streams listed in one snapshot (the count says how many there are) */
#define SL_WEB_CLIENT_HELD_MAX (4u << 20) /* an events client holding more unsent bytes is cut */

typedef struct sl_web_s sl_web_t;

/* Listens on host:port (port 0 picks a free one) for gw, requiring token
 * when it is not NULL (borrowed: it must outlive the view).  Returns 0 with
 * *out, or a negative libuv code (UV_EADDRINUSE, ...) with nothing left
 * open. */
int sl_web_start(sl_web_t **out, sl_gateway_t *gw, const char *host, int port, const char *token);

/* The bound port. */
int sl_web_port(const sl_web_t *w);

/* The folder the page's files are served from. */
const char *sl_web_dir(void);

/* Stops the tap and the timer, closes the listener and every connection
 * (events clients are cut) and frees the view; cb (may be NULL) runs once
 * every handle is closed. */
void sl_web_close(sl_web_t *w, void (*cb)(void *), void *ud);

#endif
