/* counters.c: counter names and the JSON view. */
#include "runtime/base/counters.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const sl__counter_names[SL_C__COUNT] = {
#define SL__COUNTER_NAME(id, name, kind) name,
    SL_COUNTERS(SL__COUNTER_NAME)
#undef SL__COUNTER_NAME
};

static const char *const sl__counter_kinds[SL_C__COUNT] = {
#define SL__COUNTER_KIND(id, name, kind) kind,
    SL_COUNTERS(SL__COUNTER_KIND)
#undef SL__COUNTER_KIND
};

const char *sl_counter_name(sl_counter_id_t id) {
  return (unsigned)id < SL_C__COUNT ? sl__counter_names[id] : NULL;
}

const char *sl_counter_kind(sl_counter_id_t id) {
  return (unsigned)id < SL_C__COUNT ? sl__counter_kinds[id] : NULL;
}

size_t sl_counters_json(const sl_counters_t *c, char *buf, size_t cap) {
  size_t n = 0;
  int w = snprintf(buf, cap, "{");
  n += (size_t)w;
  for (int i = 0; i < SL_C__COUNT; i++) {
    w = snprintf(n < cap ? buf + n : NULL, n < cap ? cap - n : 0, "%s\"%s\":%" PRIu64,
                 i ? "," : "", sl__counter_names[i], c->v[i]);
    n += (size_t)w;
  }
  w = snprintf(n < cap ? buf + n : NULL, n < cap ? cap - n : 0, "}");
  n += (size_t)w;
  return n;
}

void sl_counters_reset(sl_counters_t *c) { memset(c, 0, sizeof(*c)); }
