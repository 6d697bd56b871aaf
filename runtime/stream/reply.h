/* reply.h: answering a client with an error in OpenAI's shape. */
#ifndef SL_REPLY_H
#define SL_REPLY_H

#include "runtime/http/http_server.h"

/* Writes an OpenAI-shaped error reply {"error":{"message","type","code"}}
 * with the given status (and extra header lines, may be NULL). */
void sl_reply_error(sl_http_req_t *req, int status, const char *type, const char *code, const char *extra_headers,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

#endif
