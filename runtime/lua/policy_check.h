/* policy_check.h: a generation is tried on sample inputs before it serves.
 *
 * Loading a policy proves little: a place() that loops forever, raises on a
 * retry or returns an index out of range only shows at the first request.
 * Before a generation becomes current (at start, on every reload) and in
 * `sluice check`, each phase runs over sample inputs under the generation's
 * budget: place() over contexts of 1, 2, 3, 8 and 64 candidates (fresh and
 * loaded endpoints, retries with tried ones, with and without a session),
 * and the narration policy over one event of every kind.  A phase that
 * raises, returns something unusable or runs past its budget refuses the
 * generation with the sample named.  A policy that misbehaves only on inputs
 * the samples do not cover is still bounded at run time by the budget.
 *
 * Uses generation.h (building, place, narrate) and narrate.h (trial runs).
 */
#ifndef SL_POLICY_CHECK_H
#define SL_POLICY_CHECK_H

#include <stdint.h>
#include <stdio.h>

#include "runtime/lua/generation.h"

/* Runs g's place() over every sample context.  Returns 0, or < 0 with
 * "placement sample N (what it was): the error" in err.  When say is not
 * NULL, one line per sample tells the choice. */
int sl_policy_check_placement(sl_generation_t *g, FILE *say, char *err, size_t errlen);

/* Runs g's narration policy (if it has one) over one sample event of every
 * kind as one batch, on a narrator of its own that redacts secrets (a
 * NULL-ended list, may be NULL).  Returns 0 (also when g has no narration
 * policy), or < 0 with the error in err.  When say is not NULL the
 * sentences go there. */
int sl_policy_check_narration(sl_generation_t *g, const char *const *secrets, FILE *say, char *err, size_t errlen);

/* Builds a generation from a placement policy (path, with its config JSON
 * or NULL) and an optional narration policy (path or NULL), then checks
 * both phases on the samples.  Returns 0 with *out (refs 1), or < 0 with
 * the error in err and nothing allocated. */
int sl_policy_build_checked(const char *placement_path, const char *placement_config, const char *narration_path,
                            uint64_t id, const sl_lua_host_t *lim, const char *const *secrets, FILE *say,
                            sl_generation_t **out, char *err, size_t errlen);

#endif
