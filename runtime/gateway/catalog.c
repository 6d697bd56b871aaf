/* catalog.c: the model catalog's digests (see catalog.h).  Uses OpenSSL's
 * libcrypto for SHA-256. */
#include "runtime/gateway/catalog.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"

/* The SHA-256 of the file at path as 64 hex digits into hex.  Returns 0, or
 * an errno value (the file could not be read), or -1 (libcrypto failed). */
static int sl__file_sha256(const char *path, char hex[65]) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return errno;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  size_t cap = 1 << 20;
  unsigned char *buf = sl_malloc(cap);
  int rc = md == NULL || buf == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ? -1 : 0;
  size_t n;
  while (rc == 0 && (n = fread(buf, 1, cap, f)) > 0)
    if (EVP_DigestUpdate(md, buf, n) != 1) rc = -1;
  if (rc == 0 && ferror(f)) rc = EIO;
  unsigned char out[32];
  unsigned int len = 0;
  if (rc == 0 && (EVP_DigestFinal_ex(md, out, &len) != 1 || len != 32)) rc = -1;
  if (rc == 0) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
      hex[2 * i] = digits[out[i] >> 4];
      hex[2 * i + 1] = digits[out[i] & 15];
    }
    hex[64] = '\0';
  }
  sl_free(buf);
  EVP_MD_CTX_free(md);
  fclose(f);
  return rc;
}

int sl_catalog_verify(const sl_config_t *cfg, char *err, size_t errlen) {
  for (int i = 0; i < cfg->ncatalog; i++) {
    const sl_catalog_entry_t *e = &cfg->catalog[i];
    char got[65];
    int rc = sl__file_sha256(e->path, got);
    if (rc > 0) {
      snprintf(err, errlen, "catalog: model %s: cannot read %s: %s", e->name, e->path, strerror(rc));
      return SL_EINVAL;
    }
    if (rc < 0) {
      snprintf(err, errlen, "catalog: model %s: SHA-256 of %s failed in libcrypto", e->name, e->path);
      return SL_EINVAL;
    }
    if (strcmp(got, e->sha256) != 0) {
      snprintf(err, errlen,
               "catalog: model %s: %s has SHA-256 %s but the catalog says %s; the file is damaged or not the one "
               "named (refusing to start)",
               e->name, e->path, got, e->sha256);
      return SL_EINVAL;
    }
  }
  return 0;
}

const sl_catalog_entry_t *sl_catalog_find(const sl_config_t *cfg, const char *name) {
  for (int i = 0; i < cfg->ncatalog; i++)
    if (strcmp(cfg->catalog[i].name, name) == 0) return &cfg->catalog[i];
  return NULL;
}
