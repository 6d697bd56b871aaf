/* upstream.c: engine connections, keep-alive pool and health checks.
 *
 * A connection is CONNECTING, BUSY (one request in flight), IDLE (on its
 * endpoint's list, still read so that a close by the engine is noticed) or
 * CLOSING.  Reads go into the tail of the current pool chunk, or a fresh one
 * when little is left, so consecutive small token writes share a chunk and
 * the relay can reference them without copying.
 *
 * An https:// endpoint's connection speaks TLS through two memory BIOs:
 * ciphertext read from the socket goes into a per-connection buffer and on
 * into the SSL's input BIO; the SSL's output BIO is drained into uv_writes.
 * The handshake runs on those reads and writes before the request is sent
 * (under the connect timeout), and decrypted bytes land in the same pool
 * chunks as plaintext reads, so the decoder and the relay see no
 * difference.  Pausing stops the reads and the decryption both; plaintext
 * the SSL still holds is drained on resume.
 */
#include "runtime/upstream/upstream.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/counters.h"
#include "runtime/base/errors.h"
#include "runtime/base/narrate.h"
#include "runtime/upstream/upstream_decoder.h"

enum { SL_UPC_CONNECTING, SL_UPC_BUSY, SL_UPC_FINISHING, SL_UPC_IDLE, SL_UPC_CLOSING };

/* Reads go to a chunk's tail only while at least this much is left. */
#define SL_UP_MIN_TAIL 2048
/* Ciphertext read buffer of a TLS connection: one TLS record and then some. */
#define SL_UP_TLS_RBUF (17 * 1024)

struct sl_upconn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;          /* connect timeout, or idle keep-alive timeout */
  uv_connect_t connect_req;
  uv_write_t write_req;
  sl_upstream_ctx_t *ctx;
  sl_endpoint_t *ep;
  sl_upconn_t *prev, *next;  /* endpoint's idle list */
  int state;
  int handles;               /* open handles */
  int reused;                /* this request runs on a kept-alive connection */
  int got_bytes;             /* a response byte arrived for this request */
  int reading;
  int paused;
  int writing;               /* request bytes not yet written */
  char *reqbuf;
  sl_chunk_t *rchunk;        /* chunk reads land in */
  sl_pin_account_t *acct;    /* charged for reads of this request */
  sl_up_handler_t h;
  void *ud;
  sl_chunk_t *jchunk;        /* SSE join buffer: a pool chunk, passed on with joined events */
  sl_updec_t dec;
  SSL *ssl;                  /* https:// only: the session, reading rbio and writing wbio */
  BIO *rbio, *wbio;          /* ciphertext from the socket / to the socket */
  char *cbuf;                /* ciphertext reads land here (SL_UP_TLS_RBUF) */
  int handshaking;           /* TLS handshake not done: the request waits */
  char msg[512];
};

/* One flush of TLS output: the request and handshake records. */
typedef struct {
  uv_write_t req;
  sl_upconn_t *c;
  char data[];
} sl__tlsw_t;

static void sl__upc_close(sl_upconn_t *c);
static void sl__upc_finish(sl_upconn_t *c, sl_up_result_t result, const char *why);
static void sl__maybe_closed(sl_upstream_ctx_t *ctx);

void sl_upstream_init(sl_upstream_ctx_t *ctx, uv_loop_t *loop, sl_registry_t *reg, sl_chunk_pool_t *chunks) {
  ctx->loop = loop;
  ctx->reg = reg;
  ctx->chunks = chunks;
  ctx->nopen = 0;
  ctx->closing = 0;
  ctx->close_cb = NULL;
  ctx->close_ud = NULL;
  ctx->health_open = 0;
  reg->upstream = ctx;
}

int sl_upstream_open_connections(const sl_upstream_ctx_t *ctx) { return ctx->nopen; }

/* ---- life of a connection ---- */

static void sl__idle_remove(sl_upconn_t *c) {
  sl_endpoint_t *ep = c->ep;
  if (c->prev) c->prev->next = c->next; else if (ep->idle == c) ep->idle = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  ep->nidle--;
}

static void sl__upc_handle_closed(uv_handle_t *h) {
  sl_upconn_t *c = h->data;
  if (--c->handles > 0) return;
  if (c->rchunk) sl_chunk_unref(c->rchunk);
  if (c->jchunk) sl_chunk_unref(c->jchunk);
  if (c->ssl) SSL_free(c->ssl); /* and its BIOs */
  sl_free(c->cbuf);
  sl_free(c->reqbuf);
  sl_upstream_ctx_t *ctx = c->ctx;
  sl_free(c);
  ctx->nopen--;
  sl__maybe_closed(ctx);
}

static void sl__upc_close(sl_upconn_t *c) {
  if (c->state == SL_UPC_CLOSING) return;
  if (c->state == SL_UPC_IDLE) sl__idle_remove(c);
  c->state = SL_UPC_CLOSING;
  c->h.on_event = NULL;
  c->h.on_read_end = NULL;
  c->h.on_end = NULL;
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, sl__upc_handle_closed);
  uv_close((uv_handle_t *)&c->tcp, sl__upc_handle_closed);
}

static void sl__on_idle_timer(uv_timer_t *t) {
  sl_upconn_t *c = t->data;
  sl__upc_close(c);
}

static void sl__upc_to_idle(sl_upconn_t *c) {
  sl_endpoint_t *ep = c->ep;
  const sl_config_t *cfg = c->ctx->reg->cfg;
  if (c->ctx->closing || ep->nidle >= cfg->keepalive_per_endpoint) {
    sl__upc_close(c);
    return;
  }
  if (c->rchunk) {
    /* Idle connections hold no chunk; the next request starts fresh. */
    sl_chunk_unref(c->rchunk);
    c->rchunk = NULL;
  }
  if (c->jchunk) {
    sl_chunk_unref(c->jchunk);
    c->jchunk = NULL;
    c->dec.sse.buf = NULL; /* acquired again by the next join */
  }
  c->acct = NULL;
  c->state = SL_UPC_IDLE;
  c->h.on_event = NULL;
  c->h.on_read_end = NULL;
  c->h.on_end = NULL;
  c->ud = NULL;
  c->next = ep->idle;
  c->prev = NULL;
  if (ep->idle) ep->idle->prev = c;
  ep->idle = c;
  ep->nidle++;
  if (c->paused || !c->reading) sl_upstream_resume(c);
  c->paused = 0;
  uv_timer_start(&c->timer, sl__on_idle_timer, cfg->upstream_keepalive_ms, 0);
}

/* Ends the request in progress: exactly one on_end, then reuse or close. */
static void sl__upc_finish(sl_upconn_t *c, sl_up_result_t result, const char *why) {
  if (c->state != SL_UPC_BUSY && c->state != SL_UPC_CONNECTING) return;
  sl_up_handler_t h = c->h;
  void *ud = c->ud;
  c->h.on_event = NULL;
  c->h.on_read_end = NULL;
  c->h.on_end = NULL;
  int reuse = result == SL_UP_OK && c->dec.message_done && c->dec.keep_alive && !c->writing;
  if (result == SL_UP_OK && c->dec.status >= 300) result = SL_UP_STATUS;
  sl_up_end_t end;
  memset(&end, 0, sizeof(end));
  end.result = result;
  end.status = c->dec.status;
  /* In the adapter's framing: SSE, or NDJSON for an NDJSON adapter. */
  end.is_sse = c->dec.adapter->framing == SL_FRAMING_NDJSON ? c->dec.is_ndjson : c->dec.is_sse;
  end.saw_done = c->dec.saw_done;
  end.body = c->dec.body;
  end.body_len = c->dec.body_len;
  /* Set once a final response's headers arrived (upstream_decoder.h); a
   * request that got none has no wish to report. */
  end.retry_after_ms = c->dec.headers_done ? c->dec.retry_after_ms : -1;
  end.message = why;
  /* The connection is no longer the caller's while it is told, so a retry
   * started from on_end cannot be handed this connection while it still
   * holds this response. */
  c->state = SL_UPC_FINISHING;
  if (h.on_end) h.on_end(ud, &end);
  if (c->state != SL_UPC_FINISHING) return; /* closed meanwhile */
  if (reuse)
    sl__upc_to_idle(c);
  else
    sl__upc_close(c);
}

/* ---- reading ---- */

/* The SSE join buffer (sse.h's acquire), asked for when an event must be
 * joined across reads.  It is space in a pool chunk charged to the
 * request's account, so a joined event goes to the client from there,
 * pinned like a read chunk, with no second copy.  Joined events are packed
 * one after another (jchunk->len is the end of the last one handed on);
 * while none is held any more the chunk starts over, and when the rest of
 * it is too small a fresh chunk takes over, with the bytes joined so far
 * copied (or moved to the front when nothing else is in the chunk). */
static char *sl__upc_joinbuf(void *ud, const char *keep, size_t keep_len, size_t need, size_t *got) {
  sl_upconn_t *c = ud;
  sl_chunk_t *j = c->jchunk;
  if (j != NULL && j->refcnt == 1) j->len = 0; /* nothing joined earlier is held */
  if (keep != NULL && j != NULL && j->refcnt == 1 && need <= j->cap) {
    memmove(j->data, keep, keep_len);
  } else if (j == NULL || keep != NULL || j->cap - j->len < need) {
    sl_chunk_t *fresh = sl_chunk_get(c->ctx->chunks);
    if (c->acct) sl_chunk_charge(fresh, c->acct);
    if (keep_len > 0) memcpy(fresh->data, keep, keep_len);
    if (j != NULL) sl_chunk_unref(j);
    c->jchunk = j = fresh;
  }
  *got = j->cap - j->len;
  return (char *)j->data + j->len;
}

static void sl__upc_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  sl_upconn_t *c = h->data;
  (void)suggested;
  sl_chunk_t *ch = c->rchunk;
  if (ch == NULL || ch->cap - ch->len < SL_UP_MIN_TAIL) {
    if (ch) sl_chunk_unref(ch);
    ch = sl_chunk_get(c->ctx->chunks);
    if (c->acct) sl_chunk_charge(ch, c->acct);
    c->rchunk = ch;
  }
  buf->base = (char *)ch->data + ch->len;
  buf->len = ch->cap - ch->len;
}

static int sl__upc_event(void *ud, const sl_event_t *ev) {
  sl_upconn_t *c = ud;
  if (c->h.on_event == NULL) return 1;
  sl_chunk_t *ch = c->rchunk;
  if (!ev->raw_in_input) {
    /* Joined: the event's bytes end the chunk's used part. */
    ch = c->jchunk;
    const char *base = (const char *)ch->data;
    if (ev->raw.p >= base && ev->raw.p + ev->raw.n <= base + ch->cap)
      ch->len = (uint32_t)(ev->raw.p + ev->raw.n - base);
  }
  return c->h.on_event(c->ud, ev, ch);
}

/* The engine closed (or reset) the connection of a request in flight. */
static void sl__upc_eof(sl_upconn_t *c, ssize_t nread) {
  if (!c->got_bytes && c->reused) {
    sl__upc_finish(c, SL_UP_STALE, "kept-alive connection closed by the engine before the response");
    return;
  }
  if (sl_updec_eof(&c->dec) == 0 && c->dec.message_done) {
    c->dec.keep_alive = 0;
    sl__upc_finish(c, SL_UP_OK, "complete");
    return;
  }
  snprintf(c->msg, sizeof(c->msg), "engine closed the connection before the response ended (%s)",
           nread == UV_EOF ? "EOF" : uv_strerror((int)nread));
  sl__upc_finish(c, SL_UP_RESET, c->msg);
}

/* nread response bytes were put at the end of rchunk's used part: decode
 * them and hand on their events. */
static void sl__upc_deliver(sl_upconn_t *c, ssize_t nread) {
  c->got_bytes = 1;
  sl_chunk_t *ch = c->rchunk;
  const char *start = (const char *)ch->data + ch->len;
  ch->len += (uint32_t)nread;
  sl_counter_add(c->ep->reg->counters, SL_C_BYTES_FROM_UPSTREAM, (uint64_t)nread);
  /* Hold the chunk while events reference it, even if a callback aborts. */
  sl_chunk_ref(ch);
  int rc = sl_updec_feed(&c->dec, start, (size_t)nread, sl__upc_event, c);
  /* The read's events were all delivered: the caller sends them (in one
   * write) before the chunks are looked at below. */
  if (c->state == SL_UPC_BUSY && rc != SL_ECANCELED && c->h.on_read_end != NULL) c->h.on_read_end(c->ud);
  sl_chunk_unref(ch);
  if (c->rchunk != NULL && c->rchunk->refcnt == 1) {
    /* No write holds these bytes (the client took them at once): give the
     * chunk back, so a stream between tokens pins no memory; the next read
     * takes a recycled one. */
    sl_chunk_unref(c->rchunk);
    c->rchunk = NULL;
  }
  if (c->jchunk != NULL && c->dec.sse.buf == NULL && c->jchunk->refcnt == 1) {
    /* Likewise the join chunk, when no event is being joined in it. */
    sl_chunk_unref(c->jchunk);
    c->jchunk = NULL;
  }
  if (c->state != SL_UPC_BUSY) return; /* aborted from a callback */
  if (rc == SL_ECANCELED) return;     /* the caller stopped us and will abort */
  if (rc < 0) {
    snprintf(c->msg, sizeof(c->msg), "malformed response from the engine: %s", c->dec.errmsg);
    sl__upc_finish(c, SL_UP_PROTOCOL, c->msg);
    return;
  }
  if (c->dec.message_done) sl__upc_finish(c, SL_UP_OK, "complete");
}

static void sl__upc_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sl_upconn_t *c = s->data;
  (void)buf;
  if (nread == 0) return;
  if (c->state == SL_UPC_IDLE) {
    /* An idle connection that reads anything (EOF included) is done. */
    sl__upc_close(c);
    return;
  }
  if (c->state != SL_UPC_BUSY) return;
  if (nread < 0) {
    sl__upc_eof(c, nread);
    return;
  }
  sl__upc_deliver(c, nread);
}

/* ---- TLS ---- */

static void sl__tls_written(uv_write_t *w, int status) {
  sl__tlsw_t *tw = w->data;
  sl_upconn_t *c = tw->c;
  sl_free(tw);
  c->writing--;
  if (status < 0 && status != UV_ECANCELED && c->state == SL_UPC_BUSY) {
    snprintf(c->msg, sizeof(c->msg), "writing to the engine failed: %s", uv_strerror(status));
    sl__upc_finish(c, c->handshaking ? SL_UP_CONNECT : c->reused && !c->got_bytes ? SL_UP_STALE : SL_UP_RESET,
                   c->msg);
  }
}

/* Sends whatever the SSL wrote to its output BIO.  Returns 0 or a libuv
 * error.  Only the handshake, the request and rare TLS control records go
 * here: never a per-token path. */
static int sl__tls_flush(sl_upconn_t *c) {
  size_t n;
  while ((n = BIO_ctrl_pending(c->wbio)) > 0) {
    sl__tlsw_t *tw = sl_malloc(sizeof(*tw) + n);
    int got = BIO_read(c->wbio, tw->data, (int)n);
    if (got <= 0) {
      sl_free(tw);
      return UV_EIO;
    }
    tw->c = c;
    tw->req.data = tw;
    uv_buf_t b = uv_buf_init(tw->data, (unsigned)got);
    int rc = uv_write(&tw->req, (uv_stream_t *)&c->tcp, &b, 1, sl__tls_written);
    if (rc < 0) {
      sl_free(tw);
      return rc;
    }
    c->writing++;
  }
  return 0;
}

/* Says why a TLS call failed, into c->msg: the certificate's verdict when
 * it was refused, else OpenSSL's reason. */
static const char *sl__tls_why(sl_upconn_t *c, const char *during) {
  long vr = SSL_get_verify_result(c->ssl);
  unsigned long e = ERR_peek_last_error();
  if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH) {
    snprintf(c->msg, sizeof(c->msg), "TLS: host name mismatch: the certificate of %.200s is not for \"%.200s\"",
             c->ep->name, c->ep->tls_name);
  } else if (vr != X509_V_OK && c->ep->tls_verify) {
    snprintf(c->msg, sizeof(c->msg), "TLS: certificate verify failed: %s (%s)", X509_verify_cert_error_string(vr),
             c->ep->name);
  } else if (e != 0) {
    const char *reason = ERR_reason_error_string(e);
    int plain = ERR_GET_LIB(e) == ERR_LIB_SSL &&
                (ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER || ERR_GET_REASON(e) == SSL_R_PACKET_LENGTH_TOO_LONG);
    snprintf(c->msg, sizeof(c->msg), "TLS: %s with %s failed: %s%s", during, c->ep->name,
             reason ? reason : "unknown error", plain ? " (the engine does not speak TLS on this port?)" : "");
  } else {
    snprintf(c->msg, sizeof(c->msg), "TLS: %s with %s failed", during, c->ep->name);
  }
  ERR_clear_error();
  sl_counter_inc(c->ep->reg->counters, SL_C_ERR_UPSTREAM_TLS);
  return c->msg;
}

static void sl__tls_pump(sl_upconn_t *c);
static void sl__upc_send(sl_upconn_t *c);

/* Drives the handshake; once done, sends the request and reads on. */
static void sl__tls_handshake(sl_upconn_t *c) {
  ERR_clear_error();
  int r = SSL_do_handshake(c->ssl);
  int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
  int frc = sl__tls_flush(c);
  if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ) {
    sl__upc_finish(c, SL_UP_CONNECT, sl__tls_why(c, "handshake"));
    return;
  }
  if (frc < 0) {
    snprintf(c->msg, sizeof(c->msg), "TLS: handshake with %s failed: %s", c->ep->name, uv_strerror(frc));
    sl__upc_finish(c, SL_UP_CONNECT, c->msg);
    return;
  }
  if (r != 1) return; /* waits for the engine's next records */
  c->handshaking = 0;
  uv_timer_stop(&c->timer); /* the connect timeout covered the handshake */
  sl__upc_send(c);
  if (c->state == SL_UPC_BUSY) sl__tls_pump(c);
}

/* Decrypts what the SSL holds into pool chunks and decodes it, until it
 * wants more ciphertext, the request ends or the caller pauses. */
static void sl__tls_pump(sl_upconn_t *c) {
  while (c->state == SL_UPC_BUSY && !c->paused) {
    sl_chunk_t *ch = c->rchunk;
    if (ch == NULL || ch->cap - ch->len < SL_UP_MIN_TAIL) {
      if (ch) sl_chunk_unref(ch);
      ch = sl_chunk_get(c->ctx->chunks);
      if (c->acct) sl_chunk_charge(ch, c->acct);
      c->rchunk = ch;
    }
    ERR_clear_error();
    int n = SSL_read(c->ssl, (char *)ch->data + ch->len, (int)(ch->cap - ch->len));
    if (n > 0) {
      sl__upc_deliver(c, n);
      continue;
    }
    int err = SSL_get_error(c->ssl, n);
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_ZERO_RETURN) { /* close_notify: the engine closed */
      sl__upc_eof(c, UV_EOF);
      return;
    }
    sl__upc_finish(c, c->reused && !c->got_bytes ? SL_UP_STALE : SL_UP_RESET, sl__tls_why(c, "reading"));
    return;
  }
  if (c->state == SL_UPC_BUSY && sl__tls_flush(c) < 0) {
    snprintf(c->msg, sizeof(c->msg), "TLS: writing to %s failed", c->ep->name);
    sl__upc_finish(c, SL_UP_RESET, c->msg);
    return;
  }
  if (c->rchunk != NULL && c->rchunk->len == 0 && c->rchunk->refcnt == 1) {
    /* Nothing came: hold no chunk between tokens. */
    sl_chunk_unref(c->rchunk);
    c->rchunk = NULL;
  }
}

static void sl__tls_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  sl_upconn_t *c = h->data;
  (void)suggested;
  buf->base = c->cbuf;
  buf->len = SL_UP_TLS_RBUF;
}

static void sl__tls_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sl_upconn_t *c = s->data;
  (void)buf;
  if (nread == 0) return;
  if (nread > 0 && BIO_write(c->rbio, c->cbuf, (int)nread) != (int)nread) nread = UV_ENOMEM;
  if (c->state == SL_UPC_IDLE) {
    /* TLS records that carry no data (a session ticket sent late) leave
     * an idle connection idle; anything else ends it. */
    char one;
    ERR_clear_error();
    int r = nread < 0 ? -1 : SSL_read(c->ssl, &one, 1);
    if (nread < 0 || r > 0 || SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_READ) {
      ERR_clear_error();
      sl__upc_close(c);
    }
    return;
  }
  if (c->state != SL_UPC_BUSY) return;
  if (nread < 0) {
    if (c->handshaking) {
      snprintf(c->msg, sizeof(c->msg), "TLS: %s closed the connection during the handshake (%s)%s", c->ep->name,
               nread == UV_EOF ? "EOF" : uv_strerror((int)nread),
               nread == UV_EOF ? ": does it speak TLS on this port?" : "");
      sl_counter_inc(c->ep->reg->counters, SL_C_ERR_UPSTREAM_TLS);
      sl__upc_finish(c, SL_UP_CONNECT, c->msg);
      return;
    }
    sl__upc_eof(c, nread);
    return;
  }
  if (c->handshaking)
    sl__tls_handshake(c);
  else
    sl__tls_pump(c);
}

/* A new TLS session toward ep: SNI (a host name only, never an address),
 * and the name its certificate must carry when verification is on. */
static int sl__tls_start(sl_upconn_t *c) {
  sl_endpoint_t *ep = c->ep;
  c->ssl = SSL_new(ep->tls);
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
    BIO_free(c->rbio);
    BIO_free(c->wbio);
    c->rbio = c->wbio = NULL;
    return SL_ENOMEM;
  }
  BIO_set_mem_eof_return(c->rbio, -1); /* empty means "wait", not EOF */
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  SSL_set_connect_state(c->ssl);
  unsigned char addr[16];
  int is_ip = inet_pton(AF_INET, ep->tls_name, addr) == 1 || inet_pton(AF_INET6, ep->tls_name, addr) == 1;
  if (!is_ip) SSL_set_tlsext_host_name(c->ssl, ep->tls_name);
  if (ep->tls_verify) {
    if (is_ip)
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), ep->tls_name);
    else
      SSL_set1_host(c->ssl, ep->tls_name);
  }
  c->cbuf = sl_malloc(SL_UP_TLS_RBUF);
  c->handshaking = 1;
  return 0;
}

/* ---- writing the request ---- */

static void sl__upc_written(uv_write_t *w, int status) {
  sl_upconn_t *c = w->data;
  c->writing = 0;
  sl_free(c->reqbuf);
  c->reqbuf = NULL;
  if (status < 0 && c->state == SL_UPC_BUSY) {
    if (status == UV_ECANCELED) return;
    snprintf(c->msg, sizeof(c->msg), "writing the request failed: %s", uv_strerror(status));
    sl__upc_finish(c, c->reused && !c->got_bytes ? SL_UP_STALE : SL_UP_RESET, c->msg);
  }
}

static void sl__upc_send(sl_upconn_t *c) {
  if (c->ssl) {
    if (c->handshaking) return; /* sent when the handshake is done */
    size_t len = strlen(c->reqbuf);
    ERR_clear_error();
    int n = SSL_write(c->ssl, c->reqbuf, (int)len);
    sl_free(c->reqbuf);
    c->reqbuf = NULL;
    int rc = n == (int)len ? sl__tls_flush(c) : UV_EIO;
    if (rc < 0) {
      if (n != (int)len) sl__tls_why(c, "writing the request");
      else snprintf(c->msg, sizeof(c->msg), "writing the request failed: %s", uv_strerror(rc));
      sl__upc_finish(c, c->reused ? SL_UP_STALE : SL_UP_RESET, c->msg);
    }
    return;
  }
  uv_buf_t b = uv_buf_init(c->reqbuf, (unsigned)strlen(c->reqbuf));
  c->write_req.data = c;
  c->writing = 1;
  int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, sl__upc_written);
  if (rc < 0) {
    c->writing = 0;
    snprintf(c->msg, sizeof(c->msg), "writing the request failed: %s", uv_strerror(rc));
    sl__upc_finish(c, c->reused ? SL_UP_STALE : SL_UP_RESET, c->msg);
  }
}

static void sl__on_connect_timeout(uv_timer_t *t) {
  sl_upconn_t *c = t->data;
  if (c->state == SL_UPC_BUSY && c->handshaking) {
    snprintf(c->msg, sizeof(c->msg), "TLS: handshake with %s timed out", c->ep->name);
    sl_counter_inc(c->ep->reg->counters, SL_C_ERR_UPSTREAM_TLS);
    sl__upc_finish(c, SL_UP_CONNECT, c->msg);
    return;
  }
  if (c->state != SL_UPC_CONNECTING) return;
  snprintf(c->msg, sizeof(c->msg), "connect to %s timed out", c->ep->name);
  sl__upc_finish(c, SL_UP_CONNECT, c->msg);
}

static void sl__on_connected(uv_connect_t *req, int status) {
  sl_upconn_t *c = req->data;
  if (c->state != SL_UPC_CONNECTING) return; /* timed out or aborted meanwhile */
  if (!c->ssl) uv_timer_stop(&c->timer); /* TLS: it bounds the handshake too */
  if (status < 0) {
    uv_timer_stop(&c->timer);
    snprintf(c->msg, sizeof(c->msg), "connect to %s failed: %s", c->ep->name, uv_strerror(status));
    sl__upc_finish(c, SL_UP_CONNECT, c->msg);
    return;
  }
  c->state = SL_UPC_BUSY;
  uv_tcp_nodelay(&c->tcp, 1);
  if (c->ssl) {
    if (uv_read_start((uv_stream_t *)&c->tcp, sl__tls_alloc, sl__tls_read) == 0) c->reading = 1;
    sl__tls_handshake(c);
    return;
  }
  if (uv_read_start((uv_stream_t *)&c->tcp, sl__upc_alloc, sl__upc_read) == 0) c->reading = 1;
  sl__upc_send(c);
}

static char *sl__build_request(sl_endpoint_t *ep, const char *method, const char *path, const char *headers,
                               const char *body, size_t body_len) {
  const char *key = ep->pool->cfg->api_key;
  size_t cap = 512 + strlen(path) + strlen(ep->base) + strlen(ep->host) + (headers ? strlen(headers) : 0) +
               (key ? strlen(key) : 0) + body_len;
  char *out = sl_malloc(cap);
  int n = snprintf(out, cap,
                   "%s %s%s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: sluice/%s\r\n%s%s%s%s"
                   "Content-Length: %zu\r\n\r\n",
                   method, ep->base, path, ep->host, ep->port, SL_VERSION, key ? "Authorization: Bearer " : "",
                   key ? key : "", key ? "\r\n" : "", headers ? headers : "", body_len);
  if (n < 0 || (size_t)n + body_len + 1 > cap) {
    sl_free(out);
    return NULL;
  }
  if (body_len) memcpy(out + n, body, body_len);
  out[n + body_len] = '\0';
  return out;
}

int sl_upstream_request(sl_upstream_ctx_t *ctx, sl_endpoint_t *ep, const char *method, const char *path,
                        const char *headers, const char *body, size_t body_len, const sl_up_handler_t *h,
                        void *ud, sl_pin_account_t *acct, sl_upconn_t **out) {
  if (ctx->closing) return UV_ECANCELED;
  if (body_len > 0 && memchr(body, '\0', body_len) != NULL) return SL_EINVAL; /* sent as a C string */
  char *req = sl__build_request(ep, method, path, headers, body, body_len);
  if (req == NULL) return SL_EINVAL;
  sl_upconn_t *c = ep->idle;
  if (c != NULL) {
    sl__idle_remove(c);
    uv_timer_stop(&c->timer);
    c->state = SL_UPC_BUSY;
    c->reused = 1;
    sl_counter_inc(ctx->reg->counters, SL_C_UPSTREAM_REUSES);
  } else {
    c = sl_calloc(1, sizeof(*c));
    c->ctx = ctx;
    c->ep = ep;
    /* The join buffer is allocated only if an event ever spans reads. */
    sl_updec_init(&c->dec, NULL, ctx->reg->cfg->max_event_bytes);
    sl_sse_set_acquire(&c->dec.sse, sl__upc_joinbuf, c);
    uv_tcp_init(ctx->loop, &c->tcp);
    uv_timer_init(ctx->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles = 2;
    ctx->nopen++;
    c->state = SL_UPC_CONNECTING;
    if (ep->tls != NULL && sl__tls_start(c) < 0) {
      sl_free(req);
      sl__upc_close(c);
      return SL_ENOMEM;
    }
    c->connect_req.data = c;
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&ep->addr, sl__on_connected);
    if (rc < 0) {
      sl_free(req);
      sl__upc_close(c);
      return rc;
    }
    uv_timer_start(&c->timer, sl__on_connect_timeout, ctx->reg->cfg->connect_timeout_ms, 0);
    sl_counter_inc(ctx->reg->counters, SL_C_UPSTREAM_CONNECTS);
  }
  sl_updec_reset(&c->dec);
  /* The response is framed and scanned by the endpoint's pool's adapter. */
  sl_updec_set_adapter(&c->dec, ep->pool->adapter);
  c->got_bytes = 0;
  c->paused = 0;
  c->reqbuf = req;
  c->h = *h;
  c->ud = ud;
  c->acct = acct;
  if (c->rchunk && acct) sl_chunk_charge(c->rchunk, acct);
  *out = c;
  if (c->state == SL_UPC_BUSY) sl__upc_send(c);
  return 0;
}

void sl_upstream_pause(sl_upconn_t *c) {
  if (c->state != SL_UPC_BUSY || c->paused) return;
  c->paused = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

static void sl__on_tls_drain(uv_timer_t *t) {
  sl_upconn_t *c = t->data;
  if (c->state == SL_UPC_BUSY && !c->handshaking) sl__tls_pump(c);
}

void sl_upstream_resume(sl_upconn_t *c) {
  if (c->state == SL_UPC_CLOSING || c->state == SL_UPC_CONNECTING) return;
  c->paused = 0;
  if (c->ssl) {
    if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, sl__tls_alloc, sl__tls_read) == 0) c->reading = 1;
    /* Plaintext decrypted, or ciphertext read, before the pause gets no
     * read event of its own: drain it from the loop, not from inside the
     * caller's call.  (The timer is free while a request is in flight.) */
    if (c->state == SL_UPC_BUSY && !c->handshaking && (SSL_pending(c->ssl) > 0 || BIO_ctrl_pending(c->rbio) > 0))
      uv_timer_start(&c->timer, sl__on_tls_drain, 0, 0);
    return;
  }
  if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, sl__upc_alloc, sl__upc_read) == 0) c->reading = 1;
}

void sl_upstream_abort(sl_upconn_t *c) {
  if (c->state == SL_UPC_CLOSING) return;
  if (c->state == SL_UPC_IDLE) return; /* already handed back: nothing to cancel */
  sl__upc_close(c);
}

/* ---- health checks ---- */

static void sl__health_schedule(sl_endpoint_t *ep, uint64_t ms);

static void sl__health_end(void *ud, const sl_up_end_t *end) {
  sl_endpoint_t *ep = ud;
  ep->health_conn = NULL;
  int ok = end->result == SL_UP_OK && end->status >= 200 && end->status < 300;
  /* A probe decides readiness only; the request backoff is left alone
   * (see sl_endpoint_probe). */
  if (ok) {
    ep->health_why[0] = '\0';
    ep->starting = 0;
    if (sl_endpoint_probe(ep, 1)) sl_narrate_push(ep->reg->nar, SL_NAR_READY, NULL, ep->name, NULL, NULL, 0, 0, 0, 0);
  } else if (ep->starting || ep->down) {
    /* A managed engine loading its model (llama.cpp answers 503 "Loading
     * model", or the port is not open yet) is starting, not failing: asked
     * again soon, and its start timeout (gateway/engines.c) bounds the
     * wait.  No cooldown either way: probes never touch it. */
    sl_endpoint_probe(ep, 0);
    sl__health_schedule(ep, ep->down ? ep->reg->cfg->health_interval_ms : SL_PROBE_STARTING_MS);
    return;
  } else {
    char why[sizeof(ep->health_why)];
    if (end->result == SL_UP_OK || end->result == SL_UP_STATUS)
      snprintf(why, sizeof(why), "HTTP %d", end->status);
    else
      snprintf(why, sizeof(why), "%s", end->message ? end->message : "request failed");
    /* Told when it stops being ready, and when the cause changes: an
     * endpoint that never got ready (a refused TLS certificate) says why
     * once, not every interval. */
    int changed = sl_endpoint_probe(ep, 0);
    if (changed || strcmp(why, ep->health_why) != 0)
      sl_narrate_push(ep->reg->nar, SL_NAR_NOT_READY, NULL, ep->name, NULL, why, 0, 0, 0, 0);
    snprintf(ep->health_why, sizeof(ep->health_why), "%s", why);
  }
  sl__health_schedule(ep, ep->reg->cfg->health_interval_ms);
}

static int sl__health_event(void *ud, const sl_event_t *ev, sl_chunk_t *chunk) {
  (void)ud;
  (void)ev;
  (void)chunk;
  return 0;
}

static void sl__on_health_timer(uv_timer_t *t) {
  sl_endpoint_t *ep = t->data;
  const sl_config_t *cfg = ep->reg->cfg;
  sl_upstream_ctx_t *ctx = ep->reg->upstream;
  if (ctx->closing) return;
  if (ep->health_conn != NULL) {
    /* The previous check is still waiting: that is a failed check. */
    sl_upstream_abort(ep->health_conn);
    ep->health_conn = NULL;
    sl_endpoint_probe(ep, 0);
    sl__health_schedule(ep, ep->starting ? SL_PROBE_STARTING_MS : cfg->health_interval_ms);
    return;
  }
  if (ep->port == 0) { /* an in-process engine not listening yet */
    sl__health_schedule(ep, 50);
    return;
  }
  if (ep->down) { /* a managed engine with no process: nothing to ask (sl_upstream_probe_soon wakes it) */
    sl_endpoint_probe(ep, 0);
    sl__health_schedule(ep, cfg->health_interval_ms);
    return;
  }
  static const sl_up_handler_t h = {.on_event = sl__health_event, .on_end = sl__health_end};
  sl_upconn_t *c;
  /* health.path when the operator set one, else the adapter's own. */
  const char *path = cfg->health_path[0] ? cfg->health_path : ep->pool->adapter->health_path;
  if (sl_upstream_request(ctx, ep, "GET", path, NULL, NULL, 0, &h, ep, NULL, &c) < 0) {
    sl_endpoint_probe(ep, 0);
    sl__health_schedule(ep, cfg->health_interval_ms);
    return;
  }
  ep->health_conn = c;
  /* The same timer now bounds the check; on_end re-arms it for the next. */
  uv_timer_start(&ep->health_timer, sl__on_health_timer, cfg->health_timeout_ms, 0);
}

static void sl__health_schedule(sl_endpoint_t *ep, uint64_t ms) {
  const sl_upstream_ctx_t *ctx = ep->reg->upstream;
  if (ctx == NULL || ctx->closing || !ep->health_timer_open) return;
  uv_timer_start(&ep->health_timer, sl__on_health_timer, ms, 0);
}

void sl_upstream_probe_soon(sl_endpoint_t *ep, uint64_t ms) {
  if (ep->health_conn != NULL) { /* asked of a process that is gone: its answer means nothing now */
    sl_upstream_abort(ep->health_conn);
    ep->health_conn = NULL;
  }
  sl__health_schedule(ep, ms);
}

void sl_upstream_start_health(sl_upstream_ctx_t *ctx) {
  for (int i = 0; i < ctx->reg->neps; i++) {
    sl_endpoint_t *ep = &ctx->reg->eps[i];
    uv_timer_init(ctx->loop, &ep->health_timer);
    ep->health_timer.data = ep;
    ep->health_timer_open = 1;
    ctx->health_open++;
    sl__health_schedule(ep, 0);
  }
}

static void sl__health_timer_closed(uv_handle_t *h) {
  sl_endpoint_t *ep = h->data;
  sl_upstream_ctx_t *ctx = ep->reg->upstream;
  ctx->health_open--;
  sl__maybe_closed(ctx);
}

static void sl__maybe_closed(sl_upstream_ctx_t *ctx) {
  if (!ctx->closing || ctx->nopen > 0 || ctx->health_open > 0) return;
  void (*cb)(void *) = ctx->close_cb;
  ctx->close_cb = NULL;
  if (cb) cb(ctx->close_ud);
}

void sl_upstream_close(sl_upstream_ctx_t *ctx, void (*cb)(void *), void *ud) {
  ctx->closing = 1;
  ctx->close_cb = cb;
  ctx->close_ud = ud;
  for (int i = 0; i < ctx->reg->neps; i++) {
    sl_endpoint_t *ep = &ctx->reg->eps[i];
    if (ep->health_conn) {
      sl_upstream_abort(ep->health_conn);
      ep->health_conn = NULL;
    }
    while (ep->idle) sl__upc_close(ep->idle);
    if (ep->health_timer_open) {
      ep->health_timer_open = 0;
      uv_close((uv_handle_t *)&ep->health_timer, sl__health_timer_closed);
    }
  }
  sl__maybe_closed(ctx);
}
