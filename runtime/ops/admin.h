/* admin.h: the admin command socket.
 *
 * A unix socket (mode 0600, so only the daemon's user reaches it) speaking
 * one command per line and answering one line per command:
 *   reload   build and validate a new generation, then make it current
 *            ("ok: generation 4 is current ..." or "error: file:line: ...")
 *   status   one JSON line: current generation, live generations, streams
 *   lua      switch this connection to a Lua session (attach.h)
 *   help     the command list
 * After `lua` every line the client sends is Lua source and every reply is
 * one frame: "<status> <length>\n" followed by exactly length bytes of
 * text (no newline added).  The status is "ok" (the text is the output:
 * print()s, then the results; the first frame, the answer to `lua` itself,
 * carries the session's banner), "more" (the chunk is incomplete, send the
 * next line; length 0) or "error" (a syntax or runtime error with its
 * traceback, or the instruction budget).  One line in, one frame out,
 * always in order; the session lives until the connection closes.  If the
 * session cannot be made, `lua` is answered with an "error: ..." line and
 * the connection stays in command mode.
 *
 * Several clients may be connected at once; a bad command gets an error
 * line and the connection stays open.  Commands and Lua chunks run on the
 * loop between events, never inside a stream's callbacks.  A client that
 * half-closes still gets every reply queued before its EOF.
 */
#ifndef SL_ADMIN_H
#define SL_ADMIN_H

#include "runtime/gateway/gateway.h"

typedef struct sl_admin_s sl_admin_t;

/* Listens on path (an existing socket file there is replaced).  Returns 0
 * or a negative libuv code. */
int sl_admin_start(sl_admin_t **out, sl_gateway_t *gw, const char *path);

/* Closes the listener and every client, removes the socket file; cb (may
 * be NULL) runs when all handles are closed. */
void sl_admin_close(sl_admin_t *a, void (*cb)(void *), void *ud);

#endif
