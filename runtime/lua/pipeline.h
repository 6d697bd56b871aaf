/* pipeline.h: a tenant's pipeline, a sandboxed Lua module that acts on the
 * tenant's streams.
 *
 * A pipeline is a Lua file returning a table with optional phases:
 *
 *   on_request(ctx, req)      the client's request as a Lua table (decoded
 *                             JSON); the phase may change it in place (or
 *                             return a new table), deny it, add guards
 *   on_chunk(ctx, text)       a batch of the stream's text (never one call
 *                             per token): ctx.channel ("content" or
 *                             "reasoning") and ctx.offset (the byte offset of
 *                             text's first byte in that channel) say where;
 *                             ctx.final is true on the channel's last batch
 *   on_verdict(ctx, v)        a guard fired: v.kind, v.name, v.action, v.detail
 *   on_end(ctx, s)            the stream ended: s.reason, s.prompt_tokens,
 *                             s.completion_tokens, s.duration_ms, s.cut
 *
 * ctx is one table per stream, kept across its calls (the pipeline may
 * store its own fields in it); sluice sets ctx.id, ctx.tenant and ctx.model.
 * Actions are C functions of the global table `sluice` (listed with
 * sl_pact_kind_t); a call's actions are returned to C in order.  Text goes
 * in as Lua strings; no cdata and no userdata ever reaches a pipeline.
 *
 * Each pipeline has its own lua_State: its own accounted allocator with a
 * memory cap, the JIT off, every call through the budget runner
 * (lua_budget.h), text-only loading, and an allow-list environment (see
 * docs/tenants.md for the list).  A budget kill or a memory error cannot be
 * caught by the pipeline (pcall, xpcall and coroutines re-raise them), and
 * string patterns run in sluice's own matcher, which counts its steps.
 * The dictionary functions (sluice.dict) prefix every key with the
 * tenant's namespace, so one tenant cannot read or change another's keys,
 * nor the limit counters sluice keeps for tenants.
 *
 * Used by: the gateway (builds each tenant's pipeline with a generation),
 * the stream layer (calls the phases), the replay command.
 */
#ifndef SL_PIPELINE_H
#define SL_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "runtime/base/counters.h"
#include "runtime/lua/ttldict.h"

typedef struct sl_pipeline_s sl_pipeline_t;

/* Defaults of sl_pipeline_limits_t (config: "pipelines"). */
#define SL_PIPE_MEM_DEFAULT (16u * 1024 * 1024)  /* bytes per pipeline state */
#define SL_PIPE_BUDGET_DEFAULT 200000u           /* VM instructions per phase call */
#define SL_PIPE_LOAD_BUDGET_DEFAULT 5000000u     /* VM instructions to load the file */
#define SL_PIPE_SUBJECT_MAX (64u * 1024)         /* longest string a pattern function takes */
#define SL_PIPE_MATCH_STEPS 1000000u             /* matcher steps per pattern call */
#define SL_PIPE_STRING_MAX (1024u * 1024)        /* longest string string.rep / string.format make */

typedef struct {
  size_t mem_limit;        /* 0 = SL_PIPE_MEM_DEFAULT */
  uint64_t budget;         /* 0 = SL_PIPE_BUDGET_DEFAULT */
  uint64_t load_budget;    /* 0 = SL_PIPE_LOAD_BUDGET_DEFAULT */
  sl_counters_t *counters; /* lua_budget_exceeded is counted here (NULL = nowhere) */
  sl_ttldict_t *dict;      /* what sluice.dict reaches, under the tenant's namespace (NULL: no sluice.dict) */
} sl_pipeline_limits_t;

/* Phases a pipeline defines (sl_pipeline_phases). */
enum {
  SL_PIPE_ON_REQUEST = 1,
  SL_PIPE_ON_CHUNK = 2,
  SL_PIPE_ON_VERDICT = 4,
  SL_PIPE_ON_END = 8,
};

/* Actions a phase can take, each a function of the table `sluice`:
 *   sluice.deny(status, reason)       on_request only: refuse with status
 *                                     (400..499) and the reason
 *   sluice.cancel(reason)             end the stream with an error event
 *   sluice.replace(start, stop, text) replace bytes [start, stop) of the
 *                                     current channel (0-based offsets from
 *                                     the channel's start; only bytes not yet
 *                                     released: at or after ctx.offset minus
 *                                     what the last call held)
 *   sluice.hold(n)                    keep the last n bytes of the channel's
 *                                     text not yet sent (this batch's, and
 *                                     what the last call held) back until
 *                                     the next on_chunk
 *   sluice.add_stop(s)                on_request: one more stop string
 *   sluice.add_redact(s)              on_request: one more literal to mask
 *   sluice.annotate(text)             a note on the stream (counted, shown)
 *   sluice.narrate(text)              one narration line
 * Arguments are checked when the function is called (a wrong type or an
 * action not allowed in the phase raises, naming the function and the
 * phase).  Also: sluice.now_ms(), sluice.dict.get/set/incr/delete(key, ...)
 * (strings and numbers; the tenant's namespace) and sluice.json_encode /
 * sluice.json_decode (strings only, under the memory cap). */
typedef enum {
  SL_PACT_DENY = 0,
  SL_PACT_CANCEL,
  SL_PACT_REPLACE,
  SL_PACT_HOLD,
  SL_PACT_ADD_STOP,
  SL_PACT_ADD_REDACT,
  SL_PACT_ANNOTATE,
  SL_PACT_NARRATE,
  SL_PACT__COUNT
} sl_pact_kind_t;

typedef struct {
  sl_pact_kind_t kind;
  int status;              /* deny: the HTTP status */
  uint64_t start, stop;    /* replace: the range; hold: start = n */
  const char *text;        /* reason, replacement, string or note (NUL-terminated; may contain NULs,
                              len is its length); in the actions' arena */
  size_t len;
} sl_pact_t;

#define SL_PIPE_MAX_ACTIONS 64    /* actions one call may take; past it the call fails */
#define SL_PIPE_ACTION_BYTES 65536 /* bytes of action text one call may hold; past it the call fails */

/* A call's actions, in the order the phase took them.  Filled by each
 * phase call (emptied first); the texts live in arena until the next call
 * with the same sl_pipe_actions_t. */
typedef struct {
  sl_pact_t a[SL_PIPE_MAX_ACTIONS];
  int n;
  char arena[SL_PIPE_ACTION_BYTES];
  size_t used;
} sl_pipe_actions_t;

/* Loads the pipeline file at path for tenant `tenant` into a new sandboxed
 * state.  The file must return a table; every phase it defines must be a
 * function (keys that are not phases are refused, naming the key, so a
 * typo such as "on_chunks" is not silently ignored).  Returns 0 with *out,
 * or SL_EINVAL / SL_ENOMEM / SL_ETIMEDOUT with "file:line: message" (or
 * what is wrong) in err. */
int sl_pipeline_new(const char *tenant, const char *path, const sl_pipeline_limits_t *lim, sl_pipeline_t **out,
                    char *err, size_t errlen);
void sl_pipeline_free(sl_pipeline_t *p);

/* SL_PIPE_ON_* bits of the phases the pipeline defines. */
unsigned sl_pipeline_phases(const sl_pipeline_t *p);

/* The file it was loaded from, and its state's memory now and at peak. */
const char *sl_pipeline_file(const sl_pipeline_t *p);
void sl_pipeline_memory(const sl_pipeline_t *p, size_t *bytes, size_t *peak);

/* Starts one stream: makes its ctx table {id, tenant, model}.  Returns a
 * handle (> 0) for the calls below, or SL_ENOMEM. */
int sl_pipeline_begin(sl_pipeline_t *p, const char *request_id, const char *model);

/* Ends the stream: its ctx table is dropped.  Safe with handle <= 0. */
void sl_pipeline_finish(sl_pipeline_t *p, int handle);

/* The phase calls.  Each runs under the budget for request_id (the
 * watchdog names it), fills acts, and returns 0; or fails with the reason
 * in err and acts empty:
 *   SL_EINVAL   the phase raised, returned something unusable, or took a
 *               bad action ("file:line: message")
 *   SL_ETIMEDOUT the instruction budget (or the matcher's step budget)
 *               stopped it
 *   SL_ENOMEM   it ran out of memory under its cap
 * A phase the pipeline does not define answers 0 with no actions. */

/* *req is the parsed request.  When the phase changed it (in place or by
 * returning a table), *req is replaced by the table encoded back to JSON
 * (the old tree is freed); *changed says so. */
int sl_pipeline_on_request(sl_pipeline_t *p, int handle, const char *request_id, cJSON **req, int *changed,
                           sl_pipe_actions_t *acts, char *err, size_t errlen);

/* ch: 0 content, 1 reasoning.  offset: the channel offset of text[0]. */
int sl_pipeline_on_chunk(sl_pipeline_t *p, int handle, const char *request_id, int ch, uint64_t offset,
                         const char *text, size_t n, sl_pipe_actions_t *acts, char *err, size_t errlen);

/* The same for the channel's last batch (ctx.final is true; text may be
 * empty, when the pipeline held bytes and nothing came after them): what
 * it holds now is let through whatever it asks. */
int sl_pipeline_on_last_chunk(sl_pipeline_t *p, int handle, const char *request_id, int ch, uint64_t offset,
                              const char *text, size_t n, sl_pipe_actions_t *acts, char *err, size_t errlen);

int sl_pipeline_on_verdict(sl_pipeline_t *p, int handle, const char *request_id, const char *kind,
                           const char *name, const char *action, const char *detail, sl_pipe_actions_t *acts,
                           char *err, size_t errlen);

typedef struct {
  const char *reason;        /* the stream's end reason ("complete", "client_cancel", "guard_stop", ...) */
  int64_t prompt_tokens;
  int64_t completion_tokens;
  double duration_ms;
  int cut;                   /* the stream did not end on the engine's own finish */
} sl_pipe_summary_t;

int sl_pipeline_on_end(sl_pipeline_t *p, int handle, const char *request_id, const sl_pipe_summary_t *s,
                       sl_pipe_actions_t *acts, char *err, size_t errlen);

/* Static name of an action ("deny", "cancel", "replace", ...). */
const char *sl_pact_name(sl_pact_kind_t k);

#endif
