/* alloc.h: the one allocator interface of sluice.
 *
 * Everything in runtime/ allocates through sl_malloc/sl_free.  In a normal
 * build they are mimalloc; in the sanitizer build (SL_USE_LIBC_MALLOC) they
 * are libc malloc, so AddressSanitizer sees every allocation.  sl_alloc_init()
 * hands the same functions to libuv (uv_replace_allocator) and must run
 * before any other libuv call.  sl_malloc aborts on exhaustion; sl_try_malloc
 * returns NULL instead, for paths that answer "out of memory" themselves.
 */
#ifndef SL_ALLOC_H
#define SL_ALLOC_H

#include <stddef.h>

/* Installs the allocator into libuv.  Returns 0, or a negative libuv code if
 * libuv refused (it does once any allocation happened through it). */
int sl_alloc_init(void);

void *sl_malloc(size_t n);              /* never NULL; aborts when exhausted */
void *sl_try_malloc(size_t n);          /* NULL when exhausted */
void *sl_calloc(size_t count, size_t n);/* zeroed; aborts when exhausted */
void *sl_realloc(void *p, size_t n);    /* aborts when exhausted */
void *sl_try_realloc(void *p, size_t n);/* NULL when exhausted (p is then unchanged) */
void sl_free(void *p);                  /* NULL is fine */
char *sl_strndup(const char *s, size_t n); /* NUL-terminated copy */

/* Reads the file at path whole into *out (sl_malloc'd, NUL-terminated after
 * its *len bytes).  Returns 0; SL_ENOTFOUND when it cannot be opened or read
 * (errno says why); SL_ETOOBIG when it holds more than max bytes.  Nothing
 * is left allocated on failure. */
int sl_read_file(const char *path, size_t max, char **out, size_t *len);

#endif
