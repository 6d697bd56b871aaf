/* adapter.c: the table of engine adapters by name (see adapter.h).
 *
 * One entry per adapter unit.  A new adapter is a unit adapter_<name>.c
 * defining its const sl_adapter_t and a line here; nothing else in sluice
 * names an engine. */
#include "runtime/upstream/adapter.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"

static const sl_adapter_t *const sl__adapters[] = {
    &sl_adapter_openai, &sl_adapter_vllm, &sl_adapter_llamacpp, &sl_adapter_tgi, &sl_adapter_ollama,
};

#define SL__NADAPTERS (sizeof(sl__adapters) / sizeof(sl__adapters[0]))

const sl_adapter_t *sl_adapter_find(const char *name) {
  if (name == NULL) return NULL;
  for (size_t i = 0; i < SL__NADAPTERS; i++)
    if (strcmp(sl__adapters[i]->name, name) == 0) return sl__adapters[i];
  return NULL;
}

const char *sl_adapter_names(char *buf, size_t cap) {
  size_t n = 0;
  if (cap == 0) return buf;
  buf[0] = '\0';
  for (size_t i = 0; i < SL__NADAPTERS && n < cap; i++) {
    int w = snprintf(buf + n, cap - n, "%s\"%s\"", i ? ", " : "", sl__adapters[i]->name);
    if (w < 0) break;
    n += (size_t)w;
  }
  return buf;
}

int sl_adapter_check_config(const sl_config_t *cfg, char *err, size_t errlen) {
  for (int i = 0; i < cfg->npools; i++) {
    const char *name = cfg->pools[i].adapter;
    if (sl_adapter_find(name) != NULL) continue;
    char names[256];
    snprintf(err, errlen, "pools[%d].adapter: \"%s\" is not supported (supported: %s)", i, name ? name : "",
             sl_adapter_names(names, sizeof(names)));
    return SL_EINVAL;
  }
  return 0;
}

void sl_engine_req_free(sl_engine_req_t *r) {
  sl_free(r->headers);
  sl_free(r->body);
  memset(r, 0, sizeof(*r));
}
