/* ttldict.h: the TTL dictionary, a C-owned key/value store with expiry.
 *
 * State that must outlive a Lua reload (session affinity, learned
 * estimates, counters a policy keeps) lives here, not in Lua tables.  Keys
 * and values are byte strings (binary safe, lengths explicit); numbers are
 * stored as decimal text so sl_ttldict_incr can work on them and a later
 * Redis backend stores the same bytes.  Every entry has an optional TTL in
 * milliseconds: an expired entry is gone for every reader at once (lazy
 * expiry on access) and its memory comes back when an access finds it or
 * when the loop calls sl_ttldict_sweep.
 *
 * Callers see one front object (sl_ttldict_t) over one backend interface
 * (sl_ttldict_backend_t, a struct of function pointers).  The default
 * backend is an in-process hash table with a memory bound; a Redis backend
 * plugs in behind the same interface without touching callers.  The front
 * checks arguments and reads the clock, so a backend sees only valid calls
 * and an explicit `now`.
 *
 * Memory bound (in-process backend): every entry is charged its allocation
 * (header + key + value capacity) and the bucket array is charged too.  A
 * write that would pass max_bytes first reclaims expired entries; if it
 * still does not fit it fails with SL_ETOOBIG and changes nothing.  Live
 * entries are never evicted to make room: what a policy stored (an
 * affinity, a quota counter) does not vanish behind its back, and a full
 * dictionary is a visible error rather than silently wrong routing.
 *
 * Time: milliseconds from a caller-supplied clock (default: uv_hrtime() /
 * 1e6; tests may freeze a dictionary's clock with
 * sl_ffi_dict_set_clock_for_tests).  Single-threaded: one dictionary belongs
 * to one loop.  Worker processes do not share the in-process backend; they
 * share entries only through a replicator (below).
 *
 * Replication (sl_ttldict_set_repl): a hook on the front, not a backend.
 * The in-process table stays the only store every read sees; a replicator
 * (runtime/shared/shdict.h, over Redis) is told of each successful local
 * change and of each get that missed, and changes the local store from
 * what other instances wrote through the sl_ttldict_apply_* functions,
 * which never call the hook.  A get never waits on the replicator: the hook
 * runs after the local answer is settled and must return at once.
 *
 * Keys that start with "t:" are never replicated: they are the tenants'
 * local limit windows (runtime/tenant/tenant.c), per instance by design
 * (each instance enforces its share), so the front never shows them to the
 * hook, neither their writes nor their misses.
 *
 * A gateway owns one dictionary and hands it to the Lua states it builds
 * (generation.h: the module "sluice.host"); the sl_ffi_dict_* functions are
 * how lua/sluice/dict.lua reaches it.  They never call back into Lua and
 * never allocate on get.
 */
#ifndef SL_TTLDICT_H
#define SL_TTLDICT_H

#include <stddef.h>
#include <stdint.h>

#define SL_TTLDICT_MAX_KEY 65535                        /* longest key, bytes */
#define SL_TTLDICT_DEFAULT_MAX_BYTES (64u * 1024 * 1024) /* default memory bound */
#define SL_TTLDICT_NX 1u                                /* set flag: only if absent (add) */

typedef struct sl_ttldict_s sl_ttldict_t;

/* A clock: milliseconds on a monotonic scale. */
typedef uint64_t (*sl_ttldict_clock_fn)(void *data);

/* The backend interface.  `self` is the backend's state; `now_ms` comes from
 * the front's clock.  Arguments are already checked (non-empty key no longer
 * than SL_TTLDICT_MAX_KEY, ttl_ms >= 0, 0 = no expiry).  Every function
 * returns 0 or a negative SL_E* code and changes nothing when it fails. */
typedef struct sl_ttldict_backend_s {
  const char *name;  /* "memory"; shown in logs */
  /* Copies the value into buf when it fits in cap and returns 0; when it
   * does not, copies nothing and returns SL_ETOOBIG.  *vlen is the value's
   * length either way.  SL_ENOTFOUND when absent or expired.  No allocation. */
  int (*get)(void *self, const char *key, size_t klen, uint64_t now_ms, char *buf, size_t cap,
             size_t *vlen);
  /* Stores the value with the TTL, replacing value and TTL of a live entry,
   * or with SL_TTLDICT_NX only when no live entry exists.  *stored is 1 when
   * it stored, 0 when NX found a live entry.  SL_ETOOBIG when it does not
   * fit the memory bound, SL_ENOMEM when allocation fails. */
  int (*set)(void *self, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms,
             unsigned flags, uint64_t now_ms, int *stored);
  /* Adds `by` to the decimal integer stored at key and writes the sum to
   * *out; the entry keeps its TTL.  When absent: with init, stores init+by
   * with ttl_ms; without, SL_ENOTFOUND.  SL_EPARSE when the value is not a
   * decimal integer, SL_EINVAL when the sum overflows int64. */
  int (*incr)(void *self, const char *key, size_t klen, int64_t by, const int64_t *init, int64_t ttl_ms,
              uint64_t now_ms, int64_t *out);
  /* Removes a live entry; SL_ENOTFOUND when absent or expired. */
  int (*del)(void *self, const char *key, size_t klen, uint64_t now_ms);
  /* Remaining lifetime in ms (0 = never expires); SL_ENOTFOUND when absent. */
  int (*ttl)(void *self, const char *key, size_t klen, uint64_t now_ms, int64_t *remaining_ms);
  /* Entries stored (including expired ones not reclaimed yet) and bytes charged. */
  int (*count)(void *self, size_t *entries, size_t *bytes);
  /* Removes every entry. */
  int (*flush)(void *self);
  /* Examines up to max_entries entries (0 = all), resuming where the last
   * sweep stopped, frees the expired ones and returns how many it freed. */
  size_t (*sweep)(void *self, uint64_t now_ms, size_t max_entries);
  /* Frees the backend's state and everything in it. */
  void (*destroy)(void *self);
} sl_ttldict_backend_t;

/* Options of sl_ttldict_new; zeroed means every default. */
typedef struct {
  size_t max_bytes;                    /* in-process bound (0 = SL_TTLDICT_DEFAULT_MAX_BYTES) */
  sl_ttldict_clock_fn clock;           /* NULL = uv_hrtime() / 1e6 */
  void *clock_data;                    /* passed to clock */
  const sl_ttldict_backend_t *backend; /* NULL = the in-process hash table */
  void *backend_state;                 /* backend's state; the dictionary owns it from then on */
} sl_ttldict_options_t;

/* The in-process hash table backend. */
extern const sl_ttldict_backend_t sl_ttldict_memory_backend;

/* Makes the state of an in-process backend bounded to max_bytes (0 =
 * default).  Returns 0, or SL_ENOMEM; the caller owns *state until it hands
 * it to sl_ttldict_new (or frees it with the backend's destroy). */
int sl_ttldict_memory_new(size_t max_bytes, void **state);

/* Makes a dictionary (opts may be NULL).  Returns 0 and the dictionary in
 * *out, or SL_ENOMEM / SL_EINVAL (a backend without state); on failure a
 * given backend_state is destroyed, so ownership always passes.  Free it
 * with sl_ttldict_free. */
int sl_ttldict_new(const sl_ttldict_options_t *opts, sl_ttldict_t **out);

/* Destroys the backend and frees the dictionary.  NULL is fine. */
void sl_ttldict_free(sl_ttldict_t *d);

/* The dictionary's current time in ms. */
uint64_t sl_ttldict_now(const sl_ttldict_t *d);

/* Copies the value of key into buf (capacity cap; buf may be NULL when cap
 * is 0) and sets *vlen to its length.  Returns 0 when it was copied,
 * SL_ETOOBIG when it is longer than cap (nothing copied; *vlen tells the
 * size to retry with), SL_ENOTFOUND when absent or expired, SL_EINVAL for
 * an empty key.  Never allocates. */
int sl_ttldict_get(sl_ttldict_t *d, const char *key, size_t klen, char *buf, size_t cap, size_t *vlen);

/* Stores val under key with ttl_ms (0 = no expiry), replacing any value and
 * TTL.  Returns 0, SL_EINVAL (empty key, negative ttl), SL_ETOOBIG (key
 * longer than SL_TTLDICT_MAX_KEY, or no room within the memory bound:
 * nothing changed), SL_ENOMEM.  The bytes are copied. */
int sl_ttldict_set(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms);

/* Like sl_ttldict_set, only when key has no live entry.  *added (may be
 * NULL) is 1 when it stored, 0 when a live entry was there (returns 0). */
int sl_ttldict_add(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms,
                   int *added);

/* Adds by to the decimal integer at key; the sum goes to *out (may be
 * NULL).  An existing entry keeps its TTL.  An absent key is created as
 * *init + by with ttl_ms when init is not NULL, else SL_ENOTFOUND.
 * SL_EPARSE when the stored value is not a decimal integer ("-?[0-9]+"),
 * SL_EINVAL on int64 overflow, SL_ETOOBIG / SL_ENOMEM as for set. */
int sl_ttldict_incr(sl_ttldict_t *d, const char *key, size_t klen, int64_t by, const int64_t *init, int64_t ttl_ms,
                    int64_t *out);

/* Removes key.  Returns 0, or SL_ENOTFOUND when it had no live entry. */
int sl_ttldict_delete(sl_ttldict_t *d, const char *key, size_t klen);

/* Remaining lifetime of key in ms, 0 when it never expires.  Returns 0, or
 * SL_ENOTFOUND. */
int sl_ttldict_ttl(sl_ttldict_t *d, const char *key, size_t klen, int64_t *remaining_ms);

/* Entries stored (expired ones count until reclaimed) and bytes charged
 * against the bound; either pointer may be NULL.  Returns 0. */
int sl_ttldict_count(sl_ttldict_t *d, size_t *entries, size_t *bytes);

/* Removes every entry.  Returns 0. */
int sl_ttldict_flush(sl_ttldict_t *d);

/* Reclaims expired entries, examining at most max_entries (0 = all) from
 * where the previous sweep stopped, so a loop timer spreads the work.
 * Returns the number freed. */
size_t sl_ttldict_sweep(sl_ttldict_t *d, uint64_t now_ms, size_t max_entries);

/* ---- Replication. ---- */

/* What a write hook is told of (op of sl_ttldict_repl_t.on_write). */
#define SL_TTLDICT_OP_SET 1    /* sl_ttldict_set stored val with ttl_ms */
#define SL_TTLDICT_OP_ADD 2    /* sl_ttldict_add stored val with ttl_ms (only when it added) */
#define SL_TTLDICT_OP_INCR 3   /* sl_ttldict_incr: val is the sum in decimal, incr_by what was added */
#define SL_TTLDICT_OP_DELETE 4 /* sl_ttldict_delete, whether or not a live entry was there */
#define SL_TTLDICT_OP_FLUSH 5  /* sl_ttldict_flush (no key: key NULL, klen 0) */

/* Keys with this prefix are never shown to the hook (tenants' windows). */
#define SL_TTLDICT_LOCAL_PREFIX "t:"

/* A replication hook.  Both functions run on the dictionary's loop, inside
 * the call that caused them, after the local store has changed (or the get
 * has missed); they must not call back into the dictionary's write
 * functions (the apply functions are fine), must not block and must not
 * raise.  The pointers passed are borrowed for the call only. */
typedef struct {
  /* A successful local change.  op is SL_TTLDICT_OP_*; val/vlen the value
   * stored (SET, ADD), the sum in decimal (INCR), or NULL/0 (DELETE,
   * FLUSH); ttl_ms the TTL given (SET, ADD; 0 = none), or for INCR the
   * entry's remaining lifetime after the increment (0 = none); incr_by the
   * increment (INCR), else 0. */
  void (*on_write)(void *ud, int op, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms,
                   int64_t incr_by);
  /* sl_ttldict_get found no live entry for key.  May be NULL. */
  void (*on_miss)(void *ud, const char *key, size_t klen);
} sl_ttldict_repl_t;

/* Installs the replication hook (copied; NULL removes it) with ud passed to
 * its functions.  Without a hook every function behaves as before.  Returns
 * 0, or SL_EINVAL when repl has no on_write. */
int sl_ttldict_set_repl(sl_ttldict_t *d, const sl_ttldict_repl_t *repl, void *ud);

/* Changes from elsewhere (another instance, through the replicator): the
 * same contracts as sl_ttldict_set, sl_ttldict_add and sl_ttldict_delete,
 * but the hook is not called. */
int sl_ttldict_apply_set(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms);
int sl_ttldict_apply_add(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms,
                         int *added);
int sl_ttldict_apply_delete(sl_ttldict_t *d, const char *key, size_t klen);

/* ---- Through the FFI (lua/sluice/dict.lua): the same contracts as the
 * functions above, on dictionary d.  Nothing here calls into Lua. ---- */
int sl_ffi_dict_get(sl_ttldict_t *d, const char *key, size_t klen, char *buf, size_t cap, size_t *vlen);
int sl_ffi_dict_set(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms);
int sl_ffi_dict_add(sl_ttldict_t *d, const char *key, size_t klen, const char *val, size_t vlen, int64_t ttl_ms,
                    int *added);
/* has_init 0: an absent key is SL_ENOTFOUND; else it starts from init. */
int sl_ffi_dict_incr(sl_ttldict_t *d, const char *key, size_t klen, int64_t by, int has_init, int64_t init,
                     int64_t ttl_ms, int64_t *out);
int sl_ffi_dict_delete(sl_ttldict_t *d, const char *key, size_t klen);
int sl_ffi_dict_ttl(sl_ttldict_t *d, const char *key, size_t klen, int64_t *remaining_ms);
int sl_ffi_dict_count(sl_ttldict_t *d, size_t *entries, size_t *bytes);
int sl_ffi_dict_flush(sl_ttldict_t *d);
int sl_ffi_dict_sweep(sl_ttldict_t *d, size_t max_entries, size_t *reclaimed);
/* Freezes d's clock at now_ms (tests drive expiry with it); a negative
 * value goes back to d's clock. */
int sl_ffi_dict_set_clock_for_tests(sl_ttldict_t *d, int64_t now_ms);

#endif
