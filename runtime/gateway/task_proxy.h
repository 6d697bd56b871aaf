/* task_proxy.h: a task request that reached the wrong worker goes to its
 * owner (docs/operations.md, "Task API", workers).
 *
 * With "workers": N every worker also listens on a private loopback port
 * of its own (port 0: the kernel picks it) and publishes that port in the
 * instance view (view.h).  A task's id names its worker
 * (task-<worker>-<n>); a worker that receives a GET or DELETE for a task
 * of another worker relays it: it connects to the owner's private port,
 * sends the client's request (with Connection: close and an
 * X-Sluice-Relayed-From header, so that the owner never relays it on), and
 * copies the owner's answer back to the client byte for byte, except that
 * the head names both workers (X-Sluice-Worker: the one the client reached,
 * X-Sluice-Task-Worker: the owner).  The copy keeps the client's
 * backpressure: the owner's socket is not read while the client's write
 * queue is above the high watermark.  The client's connection closes after
 * the relayed answer.
 */
#ifndef SL_TASK_PROXY_H
#define SL_TASK_PROXY_H

#include "runtime/gateway/gateway.h"
#include "runtime/http/http_server.h"

/* Opens the private task listener of a worker (gw->worker > 0), whose
 * requests go to handler (the gateway's API handler, with gw), and
 * publishes its port.  Returns 0 or a negative libuv code. */
int sl_task_listener_open(sl_gateway_t *gw, sl_http_handler_cb handler);

/* Relays req to worker owner's private port (from the view).  Answers the
 * client in every case: 503 when the owner has published no port (it is
 * not up), 502 when it cannot be reached. */
void sl_task_proxy(sl_gateway_t *gw, sl_http_req_t *req, int owner);

#endif
