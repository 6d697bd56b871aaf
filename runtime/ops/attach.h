/* attach.h: Lua sessions inside the running daemon (`sluice attach`).
 *
 * The admin socket (admin.c) gives each connection that sends `lua` its own
 * session: a lua_State made by sl_lua_new_state (accounted allocator, capped)
 * with the JIT off and an instruction budget per chunk enforced by a count
 * hook, so a runaway chunk (`while true do end`) is stopped with "instruction
 * budget exceeded" and the daemon keeps serving.  (LuaJIT's count hooks do
 * not fire inside compiled traces, hence the JIT off.)  Lines are fed one at
 * a time; a chunk that is not complete yet answers "more" and waits for the
 * next line.  Chunks run synchronously in the admin socket's read callback,
 * that is on the loop between events, never inside a stream's callbacks.
 *
 * The session's helpers (streams(), endpoints(), drain(), ... wrapped by
 * lua/sluice/admin.lua) are lua_CFunctions registered in that state as the
 * module "sluice.admin_core": the state is the daemon's own and the helpers
 * build Lua tables directly, so no FFI structs or scratch buffers are
 * needed, and C never hands Lua a pointer it could keep.
 *
 * Streams are private to relay.c; the helpers list them through the
 * accessors of runtime/stream/relay.h.  Times are uv_hrtime nanoseconds
 * unless a name says _ms.
 */
#ifndef SL_ATTACH_H
#define SL_ATTACH_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/gateway/gateway.h"

#define SL_ATTACH_BUDGET 10000000u          /* VM instructions one chunk may run */
#define SL_ATTACH_MEM_DEFAULT (64u << 20)   /* session cap when lua.memory_limit_bytes is 0 */
#define SL_ATTACH_CHUNK_MAX (1u << 20)      /* bytes of one (multi-line) chunk */
#define SL_ATTACH_OUTPUT_MAX (1u << 20)     /* bytes of one reply; more is cut with a note */

typedef struct sl_attach_s sl_attach_t;

/* What a fed line produced. */
typedef enum {
  SL_ATTACH_OK = 0,    /* the chunk ran; the text is its output (print()s, then the results) */
  SL_ATTACH_MORE = 1,  /* the chunk is incomplete: feed the next line */
  SL_ATTACH_ERROR = 2  /* it did not compile or it raised; the text is the message with a traceback */
} sl_attach_status_t;

/* Opens session number id on gw: a new Lua state capped at mem_limit bytes (0 =
 * SL_ATTACH_MEM_DEFAULT), JIT off, budget instructions per chunk (0 =
 * SL_ATTACH_BUDGET), with the sluice modules, inspect and the admin helpers
 * loaded as globals.  Returns 0 with *out (the caller owns it and closes it
 * with sl_attach_close), or SL_ENOMEM / SL_EINVAL with the reason in err. */
int sl_attach_open(sl_attach_t **out, sl_gateway_t *gw, unsigned id, size_t mem_limit, uint64_t budget, char *err,
                   size_t errlen);

/* Feeds one line (n bytes, without its newline).  Runs the chunk gathered
 * so far when it is complete.  Returns the status; *text and *len get the
 * reply text (not NUL-terminated, may be empty), which the session owns and
 * which stays valid until the next call.  Never raises and never stalls:
 * errors, memory exhaustion and the budget all come back as SL_ATTACH_ERROR. */
sl_attach_status_t sl_attach_feed(sl_attach_t *s, const char *line, size_t n, const char **text, size_t *len);

/* A line describing the session (id, JIT, budget, memory cap, helpers) into
 * buf; returns buf. */
const char *sl_attach_banner(const sl_attach_t *s, char *buf, size_t cap);

/* The session's number (1, 2, ... in opening order), for logs. */
unsigned sl_attach_id(const sl_attach_t *s);

/* Closes the Lua state and frees the session (NULL is fine). */
void sl_attach_close(sl_attach_t *s);

#endif
