/* shdict.h: the TTL dictionary replicated through Redis.
 *
 * Several sluice instances (and worker processes) behind one load balancer
 * share session affinity and learned estimates, which live in each one's
 * TTL dictionary (runtime/lua/ttldict.h).  sl_shdict_attach hooks one
 * dictionary to Redis through its replication hook; the in-process table
 * stays the store every read sees.  Reads on the placement path never wait
 * on Redis: a miss serves local state (the caller gets "not found" at once)
 * and fills asynchronously.
 *
 * What goes where.  Every key k of the dictionary lives in Redis as
 * "<prefix>d:<k>" (a string, with PX when it has a TTL), and every change
 * is published on the channel "<prefix>dict".  Each write is one EVALSHA of
 * a script that writes and publishes atomically (one round trip):
 *   set     SET (PX ttl), then publish the value and TTL;
 *   add     SET NX (PX ttl); when Redis already had a live value, the
 *           script publishes that value instead (and the add counts as a
 *           conflict), so every instance, the adder included, converges on
 *           the first writer;
 *   incr    INCRBY when the key exists in Redis, else SET of the local sum
 *           with the entry's remaining TTL (so the TTL is set only when the
 *           key is created); publishes the resulting value and its PTTL, so
 *           counters (learning's clock) converge on Redis's sum;
 *   delete  DEL, then publish the delete (whether or not Redis had it).
 * flush clears the local store only; sweep and expiry are local (each
 * store keeps the TTLs).  Keys starting with "t:" never reach Redis (the
 * dictionary's hook does not show them; ttldict.h).
 *
 * A message on the channel is text up to the first "\n", then bytes:
 *   "SL1 <op> <instance> <ttl_ms> <klen>\n<key><value>"
 * op one of 's' (set), 'a' (add that won), 'i' (incr result), 'd'
 * (delete; no value); instance 16 lowercase hex digits, the writer's id;
 * ttl_ms the TTL to store with, in decimal (0 = none); klen the key's
 * length in decimal; the value is every byte after the key (binary safe).
 * Every attached dictionary applies every message in the order Redis
 * published them, its own included (counted apart): two instances writing
 * one key at once then end on the same value, the last one Redis executed,
 * which ignoring one's own echo would not guarantee (a remote message
 * executed earlier can arrive after one's own later write).
 *
 * A get that misses (a key this instance never saw, or one it lost)
 * queues a fetch of the value and its PTTL (one script), sent on the next
 * loop turn, never from inside the get; the reply is stored only if the
 * key is still absent locally and no message about it arrived meanwhile.
 * At most one fetch per key is in flight, at most max_fills overall (the
 * same small set, fixed at attach: the miss path never allocates), and a
 * key Redis did not have is not fetched again for negative_ms.
 *
 * Redis down (the client refuses commands with SL_EAGAIN): writes stay
 * local and are counted (writes_local); nothing queues.  After a
 * reconnect nothing is replayed: a write made during an outage stays local
 * to its instance until that key is written again (or expires), and
 * messages published while an instance's subscriber was down are lost to
 * it (it refills on a miss).  The same holds for writes refused because
 * max_pending_writes were awaiting their answer, or because the value was
 * longer than max_value.
 *
 * Uses runtime/lua/ttldict (the hook and the apply functions) and
 * runtime/shared/redis (commands, scripts, the subscription).
 * Single-threaded: one replicator belongs to its dictionary's loop.
 */
#ifndef SL_SHDICT_H
#define SL_SHDICT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "runtime/lua/ttldict.h"
#include "runtime/shared/redis.h"

#define SL_SHDICT_DEFAULT_PREFIX "sluice:" /* prefix when NULL is given */
#define SL_SHDICT_MAX_FILLS 4096           /* the largest max_fills allowed */

typedef struct sl_shdict_s sl_shdict_t;

/* Options of sl_shdict_attach; zeroed means every default. */
typedef struct {
  uint32_t max_fills;          /* fetches in flight at once, = the set that remembers missed keys (0 = 64) */
  uint32_t max_fill_key;       /* longest key a miss fetches, bytes (0 = 256); longer keys are never filled */
  uint64_t negative_ms;        /* a key Redis lacked is not fetched again for this long (0 = 1000) */
  uint32_t max_pending_writes; /* writes awaiting Redis's answer; beyond this a write stays local (0 = 1024) */
  size_t max_value;            /* longest value replicated (0 = 1 MiB); a longer one stays local */
} sl_shdict_options_t;

/* Counts since sl_shdict_attach. */
typedef struct {
  uint64_t writes_sent;    /* set / add / incr / delete scripts sent */
  uint64_t writes_local;   /* writes kept local: Redis down, max_pending_writes reached, value too long */
  uint64_t write_failures; /* sent writes that failed: error reply, timeout, broken connection, no memory */
  uint64_t conflicts;      /* adds that found a live value in Redis (that value is applied instead) */
  uint64_t fills;          /* fetches sent for misses */
  uint64_t fills_applied;  /* fetches whose value was stored locally */
  uint64_t fills_empty;    /* fetches that found nothing in Redis */
  uint64_t fills_skipped;  /* misses not fetched: one in flight or recently empty, set full, key too long, Redis down */
  uint64_t fill_failures;  /* fetches that failed (error reply, timeout, broken connection) */
  uint64_t remote_applied; /* other instances' changes applied locally */
  uint64_t own_applied;    /* this instance's own changes applied back in Redis's order */
  uint64_t apply_failures; /* messages not applied: malformed, or refused by the local store (full) */
  uint32_t pending;        /* commands awaiting Redis's answer */
} sl_shdict_stats_t;

/* Replicates dictionary d through client r on loop (d's and r's loop):
 * registers the five scripts with r, subscribes to "<prefix>dict" and
 * installs d's replication hook (replacing any).  prefix (copied; NULL =
 * SL_SHDICT_DEFAULT_PREFIX) names the keys and the channel, so instances
 * sharing state must use the same one; instance_id tells this
 * dictionary's messages apart (0 = a random one; every process needs its
 * own).  r may still be connecting.  Returns 0 with *out, or SL_EINVAL
 * (NULL d, r or loop, a prefix longer than 200 bytes, max_fills above
 * SL_SHDICT_MAX_FILLS) or SL_ENOMEM, and then changes nothing on d (a
 * script or subscription registered with r before the failure stays
 * registered there, unused).  d and r stay the caller's; both must outlive
 * the replicator until sl_shdict_detach. */
int sl_shdict_attach(sl_shdict_t **out, uv_loop_t *loop, sl_ttldict_t *d, sl_redis_t *r, const char *prefix,
                     uint64_t instance_id, const sl_shdict_options_t *opt);

/* Removes the hook from d (d is plain local again; it may be freed right
 * after), drops queued fetches and ignores every later answer and message.
 * The memory is freed once the commands in flight have answered and the
 * timer has closed, on the loop.  r has no unsubscribe, so call this on the
 * same loop turn just before sl_redis_close(r, ...) (which answers what is
 * in flight), or after sl_redis_close's done callback ran; never leave r
 * open across a loop turn after it.  NULL is fine. */
void sl_shdict_detach(sl_shdict_t *s);

/* Copies the counts into *out. */
void sl_shdict_stats(const sl_shdict_t *s, sl_shdict_stats_t *out);

/* This replicator's instance id (the one given, or the random one). */
uint64_t sl_shdict_instance_id(const sl_shdict_t *s);

#endif
