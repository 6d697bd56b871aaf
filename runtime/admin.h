/* admin.h: the admin command socket.
 *
 * A unix socket (mode 0600, so only the daemon's user reaches it) speaking
 * one command per line and answering one line per command:
 *   reload   build and validate a new generation, then make it current
 *            ("ok: generation 4 is current ..." or "error: file:line: ...")
 *   status   one JSON line: current generation, live generations, streams
 *   help     the command list
 * Several clients may be connected at once; a bad command gets an error
 * line and the connection stays open.  Commands run on the loop between
 * events, never inside a stream's callbacks.
 */
#ifndef SL_ADMIN_H
#define SL_ADMIN_H

#include "runtime/gateway.h"

typedef struct sl_admin_s sl_admin_t;

/* Listens on path (an existing socket file there is replaced).  Returns 0
 * or a negative libuv code. */
int sl_admin_start(sl_admin_t **out, sl_gateway_t *gw, const char *path);

/* Closes the listener and every client, removes the socket file; cb (may
 * be NULL) runs when all handles are closed. */
void sl_admin_close(sl_admin_t *a, void (*cb)(void *), void *ud);

#endif
