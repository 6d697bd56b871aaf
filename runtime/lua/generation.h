/* generation.h: one compiled set of Lua policies, refcounted.
 *
 * A generation owns a lua_State with its own accounted allocator (bytes in
 * use, peak, and an optional cap), the loaded placement policy, and a
 * refcount.  The gateway holds the current generation; every stream takes a
 * reference when it is admitted and drops it when it ends, so a reload
 * (which builds and validates a complete new generation and then swaps one
 * pointer) never changes the policy a stream started with, and an old
 * generation is freed after its last stream.  A generation that fails to
 * build is discarded whole and the old one stays.
 *
 * Policy files are Lua modules returning a table with `name` (string),
 * `version` (string), `schema` (table) and the phase's function (`place`,
 * `narrate`).  Each phase is described by data (sl_phase_desc_t): one
 * loader binds them all, one call path runs them all.  Operator
 * policies are trusted (they may use the FFI), but no policy may stop the
 * daemon: every call into the state (loading, place(), narration) goes
 * through the budget runner (lua_budget.h), so the state runs with the JIT
 * off.  Errors carry "file:line: message" as Lua reports them.
 */
#ifndef SL_GENERATION_H
#define SL_GENERATION_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/base/counters.h"
#include "runtime/base/narrate.h"
#include "runtime/lua/lua_mem.h"
#include "runtime/lua/pipeline.h"
#include "runtime/lua/limit_ffi.h"
#include "runtime/lua/place_ffi.h"
#include "runtime/lua/ttldict.h"

typedef struct lua_State lua_State;



/* What a generation's state may use, and what of its owner it reaches. */
typedef struct {
  size_t mem_limit;       /* bytes the state may hold (0 = no cap) */
  uint64_t budget;        /* VM instructions per phase call (0 = SL_BUDGET_DEFAULT) */
  uint64_t load_budget;   /* VM instructions to load and configure a module (0 = SL_BUDGET_LOAD_DEFAULT) */
  sl_counters_t *counters;/* generations_live/_freed, lua_budget_exceeded, placement_policy_errors (NULL = none) */
  sl_ttldict_t *dict;     /* the dictionary sluice.dict reaches through the module "sluice.host"
                             (NULL: dict.lua makes a private one) */
} sl_lua_host_t;

/* A phase whose calls run out of budget this many times in a row is
 * suspended for the rest of its generation: its calls fail at once (the
 * phase's fallback serves), so a policy that loops on every input does not
 * cost a full budget per request until someone reloads a fix. */
#define SL_BUDGET_SUSPEND_AFTER 8

/* The Lua phases.  Each is described by data (sl_phase_desc_t, the table
 * sl_phase_table), loaded by one loader (lua/sluice/phases.lua, through
 * sl_generation_load) and called through one call path
 * (sl_generation_call, under the budget runner).  Adding a phase is one
 * enum value, one descriptor and one Lua wrapper module. */
typedef enum {
  SL_PHASE_PLACEMENT = 0, /* place(ctx): the candidate for an attempt (sl_generation_place) */
  SL_PHASE_NARRATION = 1, /* narrate(ev) over a batch of key events (sl_generation_narrate) */
  SL_PHASE_LIMIT = 2,     /* limit(s): an endpoint's next concurrency limit (sl_generation_limit) */
  SL_PHASE_SLOW_CLIENT = 3, /* slow_client(c): keep or cancel a stream its client holds back
                               (sl_generation_slow_client; optional in a limit rule) */
  SL_PHASE__COUNT
} sl_phase_t;

/* Slots a generation has: the built-in phases and room for a table that
 * adds its own (sl__generation_build). */
#define SL_PHASE_MAX 8

/* One phase, described. */
typedef struct {
  const char *name;     /* "placement": names the phase to the budget runner, the watchdog and in messages */
  const char *source;   /* which policy file defines it: sl_generation_load(g, source, ...) binds it */
  const char *entry;    /* the function the policy module defines for it ("place") */
  const char *wrapper;  /* the Lua module whose bind() checks the module and adapts arguments and answers
                           ("sluice.placement"); NULL = sluice.phases' plain bind */
  int optional;         /* 1: a module without `entry` leaves the phase off (skipped); 0: the wrapper refuses it */
  int suspend_after;    /* budget stops in a row that suspend the phase for its generation */
  const char *fallback; /* what serves while the phase is off or suspended (named in the suspension note) */
} sl_phase_desc_t;

/* The built-in phases, indexed by sl_phase_t. */
extern const sl_phase_desc_t sl_phase_table[SL_PHASE__COUNT];

/* A generation's state of one phase. */
typedef struct {
  int ref;              /* registry ref of the bound function, or LUA_NOREF (phase off) */
  int stops;            /* consecutive calls stopped by the budget */
  int suspended;        /* calls fail at once (suspend_after reached) */
  char file[512];       /* the policy file the function came from ("" = none) */
  char name[64];        /* that module's `name` */
  char version[32];     /* its `version` */
} sl_phase_slot_t;

typedef struct sl_generation_s {
  uint64_t id;            /* 1, 2, ... in build order */
  int refs;               /* the gateway's (while current) + one per stream */
  lua_State *L;           /* the policy state */
  sl_lua_mem_t mem;       /* its allocator's accounting */
  sl_lua_host_t host;     /* its memory cap, instruction budgets, counters and dictionary */
  const sl_phase_desc_t *phases; /* its phase table (sl_phase_table unless built by sl__generation_build) */
  int nphases;            /* entries in it */
  int loader_ref;         /* registry ref of sluice.phases' load() */
  sl_phase_slot_t phase[SL_PHASE_MAX]; /* the phases' slots, indexed like the table */
  sl_ttldict_t *dict_slot;/* the dictionary sluice.dict uses now: host.dict, or a trial's scratch one
                             (the Lua side holds this slot's address and reads it on every call) */
  sl_pipeline_t **pipes;  /* each tenant's pipeline, by tenant index (NULL: that tenant has none); each in
                             its own sandboxed state, loaded with the generation and freed with it, so a
                             stream keeps the pipeline it started with (sl_malloc'd array; owned) */
  int npipes;
} sl_generation_t;

/* Where Lua modules and shipped policies are found: $SLUICE_LUA_DIR and
 * $SLUICE_POLICY_DIR when set, else the source tree's lua/ and policies/. */
const char *sl_lua_dir(void);
const char *sl_policy_dir(void);

/* Resolves a policy name ("least_loaded" -> <policy dir>/placement/
 * least_loaded.lua) or returns a path unchanged (anything with '/' or
 * ending in ".lua").  Writes into out; returns 0 or SL_ETOOBIG. */
int sl_policy_resolve(const char *name_or_path, char *out, size_t cap);

/* The same for a narration policy: a bare name is <policy dir>/<name>.lua. */
int sl_narration_resolve(const char *name_or_path, char *out, size_t cap);
/* The same for a limit rule: a bare name is <policy dir>/limits/<name>.lua. */
int sl_limits_resolve(const char *name_or_path, char *out, size_t cap);

/* A new Lua state with the accounted allocator, the standard libraries, the
 * JIT on, and package.path covering the sluice modules and policies.
 * Returns NULL (with err set) if the state cannot be made. */
lua_State *sl_lua_new_state(sl_lua_mem_t *mem, char *err, size_t errlen);

/* Hands L the owner's dictionary: package.loaded["sluice.host"] becomes
 * {dict_slot = <light userdata: dict_slot>}, and lua/sluice/dict.lua reads
 * the dictionary from *dict_slot on every call (so a trial can point it at
 * a scratch dictionary).  The slot must outlive L. */
void sl_lua_set_host(lua_State *L, sl_ttldict_t **dict_slot);

/* Builds a generation that loads and validates the placement policy at
 * path, configures it with config_json (a JSON object checked against the
 * policy's schema; NULL for the defaults), its state capped and budgeted by
 * lim (NULL = no memory cap, default budgets; loading runs under
 * lim->load_budget); lim->counters and lim->dict are kept for the
 * generation's life.  The same as sl_generation_new and then
 * sl_generation_load(g, "placement", policy_path, config_json).  Returns 0
 * with *out (refs 1), or SL_EINVAL with "file:line: message" (or what is
 * missing, or the budget that stopped the load) in err; nothing is left
 * allocated then. */
int sl_generation_build(const char *policy_path, const char *config_json, uint64_t id, const sl_lua_host_t *lim,
                        sl_generation_t **out, char *err, size_t errlen);

/* A generation with the built-in phases and none of them loaded yet: a
 * fenced state (JIT off), the host's dictionary, the loader.  Returns 0 with
 * *out (refs 1), or SL_ENOMEM / SL_EINVAL with the reason in err. */
int sl_generation_new(uint64_t id, const sl_lua_host_t *lim, sl_generation_t **out, char *err, size_t errlen);

/* The same over another phase table (at most SL_PHASE_MAX entries; the
 * built-in ones first, in their order, when sl_generation_place and
 * sl_generation_narrate are to be used).  The table must outlive the
 * generation.  For tests and hosts that add phases. */
int sl__generation_new(const sl_phase_desc_t *table, int n, uint64_t id, const sl_lua_host_t *lim,
                       sl_generation_t **out, char *err, size_t errlen);

/* The one loader: runs the policy file at path (under the load budget) and
 * binds every phase of g's table whose source is `source`, through each
 * phase's wrapper (lua/sluice/phases.lua); config_json (NULL = none) is
 * handed to the wrappers.  An optional phase the module does not define is
 * skipped and stays off.  A phase bound before is replaced, with its stop
 * count and suspension cleared.  Returns 0, or SL_EINVAL with "file:line:
 * message" (or what is wrong, or the budget that stopped the load) in err;
 * g is unchanged then. */
int sl_generation_load(sl_generation_t *g, const char *source, const char *path, const char *config_json,
                       char *err, size_t errlen);

/* Loads the narration policy at path into g (same state): the module must
 * return {name, version, schema, narrate}.  sl_generation_load(g,
 * "narration", path, NULL, ...). */
int sl_generation_load_narration(sl_generation_t *g, const char *path, char *err, size_t errlen);

/* The one call path: calls phase `phase` of g with arg (a light userdata to
 * the Lua side) under the generation's budget, for request request_id
 * (NULL = none; named to the watchdog with the phase and the file).  On 0,
 * *answer (when not NULL) is the integer the phase answered (0 when none)
 * and text holds its text ("" when none).  Otherwise text holds the error:
 * SL_EINVAL when the phase raised (Lua's "file:line: message") or is not
 * loaded ("no <phase> policy"); SL_ETIMEDOUT when the budget stopped it
 * (the budget and where; on the stop that suspends the phase, "; N stops in
 * a row: the policy is suspended for generation G (<fallback> until a
 * reload)" follows); SL_ECANCELED at once while the phase is suspended.
 * Never calls back into C beyond the FFI. */
int sl_generation_call(sl_generation_t *g, int phase, void *arg, const char *request_id, int64_t *answer,
                       char *text, size_t textlen);

/* 1 if g has phase `phase` loaded and not suspended, else 0. */
int sl_generation_phase_ready(const sl_generation_t *g, int phase);

/* Runs the narration policy over the batch nar is narrating (see
 * narrate.h) under the generation's budget (sl_generation_call).  Returns
 * 0, or SL_EINVAL with the Lua error (or the budget that stopped it, with
 * file and line; and, the call that suspends narration, a note saying so)
 * in err; SL_ECANCELED at once while narration is suspended. */
int sl_generation_narrate(sl_generation_t *g, sl_narrator_t *nar, char *err, size_t errlen);

/* Reference counting: the last release closes the state and frees it. */
sl_generation_t *sl_generation_acquire(sl_generation_t *g);
void sl_generation_release(sl_generation_t *g);

/* Calls the policy's place() over ctx (handed to the Lua side as a pointer
 * it casts to the FFI type) under the generation's budget
 * (sl_generation_call), for
 * request request_id (NULL = none; named to the watchdog).  Returns 0 with
 * *index (0-based, in [0, ctx->n)) and the policy's reason in reason; or
 * SL_EINVAL when the policy raised or returned something unusable, or
 * SL_ETIMEDOUT when the budget stopped it, with the error (Lua's
 * "file:line: message", or the budget and where it stopped; and, on the
 * stop that suspends the policy, a note saying so) in reason; or
 * SL_ECANCELED at once while the policy is suspended (see
 * SL_BUDGET_SUSPEND_AFTER).
 * Never calls back into C beyond the FFI. */
int sl_generation_place(sl_generation_t *g, const sl_ffi_place_ctx_t *ctx, const char *request_id, int *index,
                        char *reason, size_t reasonlen);

/* Calls the limit rule's limit(s) (loaded with sl_generation_load(g,
 * "limits", path, config_json), which binds SL_PHASE_LIMIT and, when the
 * rule defines it, SL_PHASE_SLOW_CLIENT) over one endpoint's snapshot under
 * the generation's budget.  Returns 0 with *limit (the rule's answer, not
 * yet clamped: C keeps it in [s->min, s->max]) and the rule's reason; or
 * SL_EINVAL (raised, or an answer that is not a finite number), SL_ETIMEDOUT
 * or SL_ECANCELED as sl_generation_call, with the error in reason.  The
 * wrapper (lua/sluice/limits.lua) keeps one state table per endpoint id for
 * the rule, for the generation's life. */
int sl_generation_limit(sl_generation_t *g, const sl_ffi_limit_stats_t *s, int64_t *limit, char *reason,
                        size_t reasonlen);
/* Asks the rule's slow_client(c) about a stream its client holds back.
 * Returns 0 with *cancel (1: cancel it, 0: keep it) and the reason; or an
 * error as sl_generation_limit (SL_EINVAL "no slow_client policy" when the
 * rule has none: the caller keeps the stream). */
int sl_generation_slow_client(sl_generation_t *g, const sl_ffi_slow_client_t *c, int *cancel, char *reason,
                              size_t reasonlen);
#endif
