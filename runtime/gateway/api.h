/* api.h: the client-facing routes and the request phase.
 *
 * The gateway's HTTP handler: /health, /v1/models, and the completion
 * routes, whose requests go through the request phase (the steps of
 * request.h, run in order by api.c) into an sl_request_t before the relay
 * starts a stream for them.
 */
#ifndef SL_API_H
#define SL_API_H

#include "runtime/http/http_server.h"

/* Handles one HTTP request; ud is the sl_gateway_t. */
void sl_api_handle(sl_http_req_t *req, void *ud);

#endif
