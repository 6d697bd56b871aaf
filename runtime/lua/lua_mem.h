/* lua_mem.h: the accounted allocator every sluice Lua state is made with.
 *
 * It counts the bytes a state holds and its peak, refuses growth past an
 * optional cap (Lua then raises "not enough memory"), and notes a refusal
 * so an owner can tell a memory kill from an ordinary error (the tenant
 * sandbox, pipeline.c, re-raises it through pcall).  Used by:
 * generation.c (policy states, the REPL's, sluice check's) and pipeline.c.
 */
#ifndef SL_LUA_MEM_H
#define SL_LUA_MEM_H

#include <stddef.h>

typedef struct {
  size_t bytes;     /* allocated now */
  size_t peak;      /* most ever allocated */
  size_t limit;     /* 0 = no cap; past it allocations fail (Lua raises "not enough memory") */
  int refused;      /* set when an allocation that grows was refused (the owner clears it) */
} sl_lua_mem_t;

/* The accounted allocator (a lua_Alloc over an sl_lua_mem_t), for states
 * made with lua_newstate(sl_lua_alloc, mem). */
void *sl_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

#endif
