/* catalog.h: the model catalog (docs/engines.md, "Local engines").
 *
 * The configuration's "catalog" names model files in one folder with their
 * SHA-256 digests.  sl_catalog_verify reads every file at start and refuses
 * one whose digest differs (or that cannot be read), naming it, so a
 * truncated download or a swapped file never reaches an engine.  Managed
 * engines name a catalog model for their command line ("{model_path}"), and
 * GET /v1/models lists every catalog model with whether an engine serving
 * it is ready.
 */
#ifndef SL_CATALOG_H
#define SL_CATALOG_H

#include <stddef.h>

#include "runtime/base/config.h"

/* Reads and hashes every catalog file.  Returns 0, or SL_EINVAL with err
 * naming the model, its file and what is wrong. */
int sl_catalog_verify(const sl_config_t *cfg, char *err, size_t errlen);

/* The catalog entry of model name, or NULL. */
const sl_catalog_entry_t *sl_catalog_find(const sl_config_t *cfg, const char *name);

#endif
