/* lua_mem.c: the accounted allocator (see lua_mem.h). */
#include "runtime/base/alloc.h"
#include "runtime/lua/lua_mem.h"

void *sl_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  sl_lua_mem_t *m = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    if (ptr) {
      m->bytes -= old;
      sl_free(ptr);
    }
    return NULL;
  }
  if (m->limit && nsize > old && m->bytes + (nsize - old) > m->limit) {
    m->refused = 1;
    return NULL;
  }
  void *p = sl_try_realloc(ptr, nsize);
  if (p == NULL) {
    if (nsize > old) m->refused = 1;
    return NULL;
  }
  m->bytes = m->bytes - old + nsize;
  if (m->bytes > m->peak) m->peak = m->bytes;
  return p;
}
