/* alloc.c: mimalloc (or libc malloc under the sanitizers) behind sl_malloc. */
#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <uv.h>

#ifdef SL_USE_LIBC_MALLOC
#define SL_RAW_MALLOC(n) malloc(n)
#define SL_RAW_CALLOC(c, n) calloc(c, n)
#define SL_RAW_REALLOC(p, n) realloc(p, n)
#define SL_RAW_FREE(p) free(p)
#else
#include <mimalloc.h>
#define SL_RAW_MALLOC(n) mi_malloc(n)
#define SL_RAW_CALLOC(c, n) mi_calloc(c, n)
#define SL_RAW_REALLOC(p, n) mi_realloc(p, n)
#define SL_RAW_FREE(p) mi_free(p)
#endif

static void sl__oom(size_t n) {
  fprintf(stderr, "sluice: out of memory allocating %zu bytes\n", n);
  abort();
}

void *sl_try_malloc(size_t n) { return SL_RAW_MALLOC(n ? n : 1); }

void *sl_malloc(size_t n) {
  void *p = SL_RAW_MALLOC(n ? n : 1);
  if (p == NULL) sl__oom(n);
  return p;
}

void *sl_calloc(size_t count, size_t n) {
  void *p = SL_RAW_CALLOC(count ? count : 1, n ? n : 1);
  if (p == NULL) sl__oom(count * n);
  return p;
}

void *sl_realloc(void *p, size_t n) {
  void *q = SL_RAW_REALLOC(p, n ? n : 1);
  if (q == NULL) sl__oom(n);
  return q;
}

void *sl_try_realloc(void *p, size_t n) { return SL_RAW_REALLOC(p, n ? n : 1); }

void sl_free(void *p) { SL_RAW_FREE(p); }

char *sl_strndup(const char *s, size_t n) {
  char *d = sl_malloc(n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

/* libuv's allocator contract allows malloc(0) to return NULL, but its own
 * code treats NULL as failure; keep the raw functions so libuv sees true
 * exhaustion instead of an abort inside a callback it can still handle. */
static void *sl__uv_malloc(size_t n) { return SL_RAW_MALLOC(n); }
static void *sl__uv_realloc(void *p, size_t n) { return SL_RAW_REALLOC(p, n); }
static void *sl__uv_calloc(size_t c, size_t n) { return SL_RAW_CALLOC(c, n); }
static void sl__uv_free(void *p) { SL_RAW_FREE(p); }

static pthread_once_t sl__alloc_once = PTHREAD_ONCE_INIT;
static int sl__alloc_rc;

static void sl__alloc_install(void) {
  sl__alloc_rc = uv_replace_allocator(sl__uv_malloc, sl__uv_realloc, sl__uv_calloc, sl__uv_free);
}

int sl_alloc_init(void) {
  pthread_once(&sl__alloc_once, sl__alloc_install);
  return sl__alloc_rc;
}

int sl_read_file(const char *path, size_t max, char **out, size_t *len) {
  *out = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (f == NULL) return SL_ENOTFOUND;
  size_t cap = 65536, n = 0, r;
  char *buf = sl_malloc(cap + 1);
  while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n > max) break;
    if (n == cap) {
      cap *= 2;
      buf = sl_realloc(buf, cap + 1);
    }
  }
  int bad = ferror(f);
  fclose(f);
  if (bad || n > max) {
    sl_free(buf);
    return bad ? SL_ENOTFOUND : SL_ETOOBIG;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}
