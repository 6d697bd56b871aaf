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
 * `version` (string), `schema` (table) and `place` (function).  Operator
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
#include "runtime/lua/place_ffi.h"
#include "runtime/lua/ttldict.h"

typedef struct lua_State lua_State;

typedef struct {
  size_t bytes;     /* allocated now */
  size_t peak;      /* most ever allocated */
  size_t limit;     /* 0 = no cap; past it allocations fail (Lua raises "not enough memory") */
} sl_lua_mem_t;

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

typedef struct sl_generation_s {
  uint64_t id;            /* 1, 2, ... in build order */
  int refs;               /* the gateway's (while current) + one per stream */
  lua_State *L;           /* the policy state */
  sl_lua_mem_t mem;       /* its allocator's accounting */
  sl_lua_host_t host;     /* its memory cap, instruction budgets, counters and dictionary */
  int place_ref;          /* registry ref of the place() wrapper, or LUA_NOREF */
  char policy_path[512];  /* the placement policy file */
  char policy_name[64];   /* its `name` */
  char policy_version[32];/* its `version` */
  int narrate_ref;        /* registry ref of the narration batch runner, or LUA_NOREF */
  char narration_path[512];/* the narration policy file ("" = none) */
  int place_stops;        /* consecutive place() calls stopped by the budget */
  int narrate_stops;      /* the same for narration batches */
  int place_suspended;    /* place() is suspended (SL_BUDGET_SUSPEND_AFTER reached) */
  int narrate_suspended;  /* narration is suspended */
  sl_ttldict_t *dict_slot;/* the dictionary sluice.dict uses now: host.dict, or a trial's scratch one
                             (the Lua side holds this slot's address and reads it on every call) */
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
 * generation's life.  Returns 0 with *out (refs 1), or SL_EINVAL with
 * "file:line: message" (or what is missing, or the budget that stopped the
 * load) in err; nothing is left allocated then. */
int sl_generation_build(const char *policy_path, const char *config_json, uint64_t id, const sl_lua_host_t *lim,
                        sl_generation_t **out, char *err, size_t errlen);

/* Loads the narration policy at path into g (same state): the module must
 * return {name, version, schema, narrate}.  Returns 0, or SL_EINVAL with
 * "file:line: message" in err (g is unchanged then). */
int sl_generation_load_narration(sl_generation_t *g, const char *path, char *err, size_t errlen);

/* Runs the narration policy over the batch nar is narrating (see
 * narrate.h) under the generation's budget.  Returns 0, or SL_EINVAL with the Lua
 * error (or the budget that stopped it, with file and line; and, the call
 * that suspends narration, a note saying so) in err; SL_ECANCELED at once
 * while narration is suspended. */
int sl_generation_narrate(sl_generation_t *g, sl_narrator_t *nar, char *err, size_t errlen);

/* Reference counting: the last release closes the state and frees it. */
sl_generation_t *sl_generation_acquire(sl_generation_t *g);
void sl_generation_release(sl_generation_t *g);

/* Calls the policy's place() over ctx (handed to the Lua side as a pointer
 * it casts to the FFI type) under the generation's budget, for
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

#endif
