/* reply.c: error replies (see reply.h). */
#include "runtime/stream/reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/upstream/oai.h"

void sl_reply_error(sl_http_req_t *req, int status, const char *type, const char *code, const char *extra_headers,
                    const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  char body[4096];
  size_t n = sl_oai_encode_error(body, sizeof(body), msg, strlen(msg), type, code);
  if (n == (size_t)-1) n = 0;
  sl_http_respond(req, status, "application/json", body, n, extra_headers);
}
