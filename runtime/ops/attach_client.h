/* attach_client.h: `sluice attach [SOCKET]`, the client of the admin
 * socket's Lua sessions (admin.h, attach.h).
 *
 * Connects to the socket (the argument, else $SLUICE_ADMIN_SOCKET, else
 * SL_ATTACH_DEFAULT_SOCKET), sends `lua`, and then sends its input a line at
 * a time, waiting for each line's frame before the next: "ok" text goes to
 * stdout, "error" text to stderr, "more" shows the continuation prompt.  The
 * daemon decides when a chunk is complete, so multi-line input works the
 * same whether typed or piped.  Prompts and the banner are written only
 * when stdin is a terminal.  Plain blocking sockets, no libuv.
 */
#ifndef SL_ATTACH_CLIENT_H
#define SL_ATTACH_CLIENT_H

#define SL_ATTACH_DEFAULT_SOCKET "/run/sluice.sock"

/* The `sluice attach` command (argv[0] is "attach"); options: -e CHUNK
 * (repeatable: run these instead of reading stdin).  Returns the exit
 * status: 0; 1 when some chunk failed and the input was not a terminal;
 * 2 on misuse, when the socket cannot be reached or the daemon closes the
 * connection. */
int sl_attach_client_main(int argc, char **argv);

#endif
