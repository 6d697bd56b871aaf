/* redis.c: the Redis client of redis.h, driven on sluice's own loop.
 *
 * A connection (sl__rconn_t) is one libuv stream, a uv_pipe_t or a
 * uv_tcp_t, with a hiredis reader and a FIFO of the commands written on it
 * and not yet answered.  It lives from one connect attempt to its close: a
 * reconnect makes a new one, so a handle being closed is never reused and a
 * connection's memory is freed only in its close callback (once a pending
 * getaddrinfo has called back too).
 *
 * The command connection goes RESOLVING (a host name only) -> CONNECTING ->
 * SETUP (SELECT db, SCRIPT LOAD of every script, PING, all pipelined) -> UP.
 * The PING is there so that a server that accepts but never answers (a
 * stopped process: the kernel still completes the connect) does not count as
 * up.  The subscriber connection is made when the command connection comes
 * up and subscriptions exist, sends one SUBSCRIBE naming every channel, and
 * is closed whenever the command connection goes down; when it breaks alone
 * it is remade with its own backoff.
 *
 * One timer serves every deadline: commands are queued with now + timeout_ms
 * and the loop time never goes back, so each FIFO's head has its earliest
 * deadline and the timer only has to watch the two heads (and a connect's
 * own deadline).  Commands carry their callbacks; internal ones (setup,
 * reloads, subscriptions) carry none and are dropped silently when their
 * connection breaks.
 *
 * Reentrancy: user callbacks run from read, timer and close paths, and may
 * call sl_redis_command or sl_redis_close.  Nothing is freed on those paths
 * but the command being answered; the client and its connections are freed
 * only in close callbacks, so after each user callback the code re-checks
 * whether its connection is closing and stops if so.
 *
 * Uses hiredis (formatter, reader), libuv, OpenSSL's SHA-1 (a script's id
 * is known before it is loaded) and runtime/base (alloc, errors).
 */
#include "runtime/shared/redis.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"

/* What a queued command is. */
enum {
  SL__RC_USER,    /* sl_redis_command: the caller's callback */
  SL__RC_EVALSHA, /* sl_redis_evalsha: as USER, retried once on NOSCRIPT */
  SL__RC_SELECT,  /* setup: an error reply breaks the connection */
  SL__RC_SETUP,   /* setup: SCRIPT LOAD or PING; the last answer makes it up */
  SL__RC_LOAD,    /* SCRIPT LOAD while up; the answer is dropped */
  SL__RC_SUB      /* one channel of a SUBSCRIBE; the confirmation pops it */
};

enum { SL__RS_RESOLVING, SL__RS_CONNECTING, SL__RS_SETUP, SL__RS_UP, SL__RS_CLOSING };

/* Read buffer of a connection; the reader copies what it is fed. */
#define SL__RBUF 16384
/* EVALSHA argument vectors up to this size are built on the stack. */
#define SL__STACK_ARGS 16

typedef struct sl__rcmd_s sl__rcmd_t;
struct sl__rcmd_s {
  sl__rcmd_t *next;
  int kind;          /* SL__RC_* */
  int retried;       /* EVALSHA: the NOSCRIPT retry was made */
  int script;        /* EVALSHA: the script's id */
  uint64_t deadline; /* loop time (ms) by which the answer must arrive */
  sl_redis_cb cb;    /* USER, EVALSHA: may be NULL */
  void *ud;
  char *fmt;         /* EVALSHA: the formatted command, kept for the retry (hiredis') */
  size_t fmtlen;
};

/* One write: the request and its own copy of the bytes. */
typedef struct {
  uv_write_t req;
  char data[];
} sl__rwrite_t;

typedef struct sl__rconn_s sl__rconn_t;
struct sl__rconn_s {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  uv_connect_t connect_req;
  uv_getaddrinfo_t gai;
  sl_redis_t *r;
  redisReader *reader;
  int sub;                   /* the subscriber connection */
  int state;                 /* SL__RS_* */
  int resolving;             /* getaddrinfo in flight: gai is in use */
  int handle_open;           /* h not yet closed */
  int setup_left;            /* setup answers still awaited */
  uint64_t connect_deadline; /* while RESOLVING or CONNECTING */
  const char *defer_why;     /* a write failed at once: break from the timer */
  sl__rcmd_t *head, *tail;   /* written, not yet answered, oldest first */
  char rbuf[SL__RBUF];
};

typedef struct {
  char *src;
  size_t len;
  char sha[41];
} sl__script_t;

typedef struct {
  char *channel;
  size_t len;
  sl_redis_message_cb cb;
  void *ud;
} sl__sub_t;

struct sl_redis_s {
  uv_loop_t *loop;
  uv_timer_t deadline_timer;  /* the oldest command's deadline, a connect's */
  uv_timer_t reconnect_timer; /* next connect of the command connection */
  uv_timer_t sub_timer;       /* next connect of the subscriber connection */
  int nhandles;               /* timers and connections not yet closed */
  sl_redis_state_cb on_state;
  void *ud;
  uint64_t timeout_ms, base_ms, max_ms;
  uint64_t backoff_ms, sub_backoff_ms; /* the next reconnect delays */
  int is_unix;
  int numeric;                /* host is an IP literal, already in addr */
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  char host[256];
  char port[8];
  struct sockaddr_storage addr;
  int db;
  sl__rconn_t *cmd, *sub;     /* current connections, NULL while none */
  int up;
  int reported;               /* last state told to on_state: -1 none yet */
  int closing;
  void (*done)(void *ud);
  void *done_ud;
  sl__script_t *scripts;
  int nscripts, capscripts;
  sl__sub_t *subs;
  int nsubs, capsubs;
  int pending;                /* USER and EVALSHA commands awaiting answers */
  sl_redis_stats_t st;
};

static void sl__conn_fail(sl__rconn_t *c, const char *why, int cancel);
static void sl__connect(sl_redis_t *r, int sub);

/* ---- small helpers ---- */

static void sl__seterr(char *err, size_t errlen, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
}

static void sl__cmd_free(sl__rcmd_t *n) {
  if (n->fmt) redisFreeCommand(n->fmt);
  sl_free(n);
}

static sl__rcmd_t *sl__cmd_new(int kind, sl_redis_cb cb, void *ud) {
  sl__rcmd_t *n = sl_try_malloc(sizeof(*n));
  if (!n) return NULL;
  memset(n, 0, sizeof(*n));
  n->kind = kind;
  n->cb = cb;
  n->ud = ud;
  return n;
}

static int sl__is_user(const sl__rcmd_t *n) { return n->kind == SL__RC_USER || n->kind == SL__RC_EVALSHA; }

static uint64_t sl__conn_due(const sl__rconn_t *c) {
  if (!c) return UINT64_MAX;
  if (c->state == SL__RS_RESOLVING || c->state == SL__RS_CONNECTING) return c->connect_deadline;
  if (c->state == SL__RS_CLOSING || !c->head) return UINT64_MAX;
  return c->head->deadline;
}

static void sl__on_deadline(uv_timer_t *t);

/* Starts the deadline timer for the earliest deadline (or stops it). */
static void sl__arm(sl_redis_t *r) {
  if (r->closing) return;
  uint64_t due = sl__conn_due(r->cmd), d2 = sl__conn_due(r->sub);
  if (d2 < due) due = d2;
  if ((r->cmd && r->cmd->defer_why) || (r->sub && r->sub->defer_why)) due = 0;
  if (due == UINT64_MAX) {
    uv_timer_stop(&r->deadline_timer);
    return;
  }
  uint64_t now = uv_now(r->loop);
  uv_timer_start(&r->deadline_timer, sl__on_deadline, due > now ? due - now : 0, 0);
}

/* ---- writing ---- */

static void sl__on_write(uv_write_t *req, int status) {
  sl__rconn_t *c = req->handle->data;
  sl_free(req); /* the first member of its sl__rwrite_t */
  if (status < 0 && c->state != SL__RS_CLOSING) {
    char why[96];
    snprintf(why, sizeof(why), "write: %s", uv_strerror(status));
    sl__conn_fail(c, why, 0);
  }
}

/* Writes len bytes of buf (copied) on c and queues n for the answer with a
 * fresh deadline.  Returns 0 (n now belongs to c), or SL_ENOMEM with
 * nothing queued.  A write that fails at once breaks c from the timer, so
 * no callback runs inside the caller's call. */
static int sl__send(sl__rconn_t *c, sl__rcmd_t *n, const char *buf, size_t len) {
  sl_redis_t *r = c->r;
  sl__rwrite_t *w = sl_try_malloc(sizeof(*w) + len);
  if (!w) return SL_ENOMEM;
  memcpy(w->data, buf, len);
  n->next = NULL;
  n->deadline = uv_now(r->loop) + r->timeout_ms;
  if (c->tail) c->tail->next = n; else c->head = n;
  c->tail = n;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
  int rc = uv_write(&w->req, &c->h.stream, &b, 1, sl__on_write);
  if (rc < 0) {
    sl_free(w);
    if (!c->defer_why) c->defer_why = "write failed";
    sl__arm(r);
  } else if (!uv_is_active((uv_handle_t *)&r->deadline_timer)) {
    sl__arm(r);
  }
  return 0;
}

/* Formats argv and sends it as an internal command of kind. */
static int sl__send_internal(sl__rconn_t *c, int kind, int argc, const char **argv, const size_t *lens) {
  char *buf = NULL;
  int len = redisFormatCommandArgv(&buf, argc, argv, lens);
  if (len < 0) return SL_ENOMEM;
  sl__rcmd_t *n = sl__cmd_new(kind, NULL, NULL);
  int rc = n ? sl__send(c, n, buf, (size_t)len) : SL_ENOMEM;
  if (rc != 0) sl_free(n);
  redisFreeCommand(buf);
  return rc;
}

static int sl__send_script_load(sl__rconn_t *c, int kind, const sl__script_t *s) {
  const char *argv[3] = {"SCRIPT", "LOAD", s->src};
  size_t lens[3] = {6, 4, s->len};
  return sl__send_internal(c, kind, 3, argv, lens);
}

/* ---- failing commands and connections ---- */

/* Calls back every user command of list with reply NULL: SL_ECANCELED when
 * canceled or closing, SL_ETIMEDOUT past its deadline, else SL_EUPSTREAM.
 * The list is already detached, so a callback that closes the client does
 * not see it: the rest then get SL_ECANCELED from here. */
static void sl__fail_list(sl_redis_t *r, sl__rcmd_t *list, int cancel) {
  uint64_t now = uv_now(r->loop);
  while (list) {
    sl__rcmd_t *n = list;
    list = n->next;
    if (!sl__is_user(n)) {
      sl__cmd_free(n);
      continue;
    }
    int status;
    if (cancel || r->closing) {
      status = SL_ECANCELED;
      r->st.failed++;
    } else if (n->deadline <= now) {
      status = SL_ETIMEDOUT;
      r->st.timeouts++;
    } else {
      status = SL_EUPSTREAM;
      r->st.failed++;
    }
    r->pending--;
    sl_redis_cb cb = n->cb;
    void *ud = n->ud;
    sl__cmd_free(n);
    if (cb) cb(r, NULL, status, ud);
  }
}

static void sl__maybe_finish(sl_redis_t *r) {
  if (!r->closing || r->nhandles > 0) return;
  for (int i = 0; i < r->nscripts; i++) sl_free(r->scripts[i].src);
  for (int i = 0; i < r->nsubs; i++) sl_free(r->subs[i].channel);
  sl_free(r->scripts);
  sl_free(r->subs);
  void (*done)(void *) = r->done;
  void *ud = r->done_ud;
  sl_free(r);
  if (done) done(ud);
}

static void sl__conn_maybe_free(sl__rconn_t *c) {
  if (c->handle_open || c->resolving) return;
  sl_redis_t *r = c->r;
  while (c->head) {
    sl__rcmd_t *n = c->head;
    c->head = n->next;
    sl__cmd_free(n);
  }
  redisReaderFree(c->reader);
  sl_free(c);
  r->nhandles--;
  sl__maybe_finish(r);
}

static void sl__on_conn_closed(uv_handle_t *h) {
  sl__rconn_t *c = h->data;
  c->handle_open = 0;
  sl__conn_maybe_free(c);
}

static void sl__on_reconnect(uv_timer_t *t) {
  sl_redis_t *r = t->data;
  if (!r->cmd && !r->closing) sl__connect(r, 0);
}

static void sl__on_sub_reconnect(uv_timer_t *t) {
  sl_redis_t *r = t->data;
  if (r->up && !r->sub && r->nsubs > 0 && !r->closing) sl__connect(r, 1);
}

static void sl__schedule(sl_redis_t *r, int sub) {
  uint64_t *delay = sub ? &r->sub_backoff_ms : &r->backoff_ms;
  uv_timer_start(sub ? &r->sub_timer : &r->reconnect_timer, sub ? sl__on_sub_reconnect : sl__on_reconnect,
                 *delay, 0);
  *delay = *delay * 2 > r->max_ms ? r->max_ms : *delay * 2;
}

/* Breaks c: closes it, takes it off the client, fails its commands (cancel:
 * with SL_ECANCELED), and for the command connection goes down, tells
 * on_state (once per outage) and schedules the reconnect. */
static void sl__conn_fail(sl__rconn_t *c, const char *why, int cancel) {
  sl_redis_t *r = c->r;
  if (c->state == SL__RS_CLOSING) return;
  c->state = SL__RS_CLOSING;
  sl__rcmd_t *list = c->head;
  c->head = c->tail = NULL;
  if (c->resolving) uv_cancel((uv_req_t *)&c->gai); /* it still calls back */
  uv_close(&c->h.handle, sl__on_conn_closed);
  int report = 0;
  char reason[sizeof(r->st.last_error)];
  snprintf(reason, sizeof(reason), "%s", why);
  if (c == r->cmd) {
    r->cmd = NULL;
    int was_up = r->up;
    r->up = 0;
    if (!r->closing) {
      memcpy(r->st.last_error, reason, sizeof(reason));
      if (was_up) r->st.outages++;
      report = r->reported != 0;
      r->reported = 0;
      sl__schedule(r, 0);
      /* The subscriber connection is made and remade with this one. */
      uv_timer_stop(&r->sub_timer);
      if (r->sub) sl__conn_fail(r->sub, why, 0);
    }
  } else if (c == r->sub) {
    r->sub = NULL;
    if (!r->closing && r->up) sl__schedule(r, 1);
  }
  sl__fail_list(r, list, cancel);
  if (report && r->on_state && !r->closing) r->on_state(r, 0, reason, r->ud);
}

static void sl__on_deadline(uv_timer_t *t) {
  sl_redis_t *r = t->data;
  uint64_t now = uv_now(r->loop);
  for (int i = 0; i < 2 && !r->closing; i++) {
    sl__rconn_t *c = i == 0 ? r->cmd : r->sub;
    if (!c) continue;
    char why[96];
    if (c->defer_why) {
      sl__conn_fail(c, c->defer_why, 0);
    } else if (sl__conn_due(c) <= now) {
      const char *what = c->state == SL__RS_RESOLVING || c->state == SL__RS_CONNECTING ? "connect"
                         : c->state == SL__RS_SETUP ? "connection setup"
                         : "command";
      snprintf(why, sizeof(why), "%s timed out after %llu ms", what, (unsigned long long)r->timeout_ms);
      sl__conn_fail(c, why, 0);
    }
  }
  sl__arm(r);
}

/* ---- replies ---- */

static void sl__conn_up(sl__rconn_t *c) {
  sl_redis_t *r = c->r;
  c->state = SL__RS_UP;
  r->up = 1;
  r->reported = 1;
  r->backoff_ms = r->base_ms;
  r->st.connects++;
  if (r->nsubs > 0 && !r->sub) {
    uv_timer_stop(&r->sub_timer);
    r->sub_backoff_ms = r->base_ms;
    sl__connect(r, 1);
  }
  if (r->on_state) r->on_state(r, 1, "connected", r->ud);
}

/* A NOSCRIPT answer to n: loads its script and sends n again behind the
 * load.  Returns 0, or nonzero when it could not (the answer then goes to
 * the caller as it is). */
static int sl__retry_evalsha(sl__rconn_t *c, sl__rcmd_t *n) {
  sl_redis_t *r = c->r;
  if (sl__send_script_load(c, SL__RC_LOAD, &r->scripts[n->script]) != 0) return -1;
  n->retried = 1;
  return sl__send(c, n, n->fmt, n->fmtlen);
}

static void sl__cmd_reply(sl__rconn_t *c, redisReply *reply) {
  sl_redis_t *r = c->r;
  sl__rcmd_t *n = c->head;
  if (!n) {
    sl__conn_fail(c, "protocol error: a reply to no command", 0);
    return;
  }
  c->head = n->next;
  if (!c->head) c->tail = NULL;
  int is_error = reply->type == REDIS_REPLY_ERROR;
  switch (n->kind) {
  case SL__RC_SELECT:
    sl__cmd_free(n);
    if (is_error) {
      char why[160];
      snprintf(why, sizeof(why), "SELECT %d: %.*s", r->db, (int)(reply->len > 120 ? 120 : reply->len), reply->str);
      sl__conn_fail(c, why, 0);
      return;
    }
    if (--c->setup_left == 0) sl__conn_up(c);
    return;
  case SL__RC_SETUP:
    /* A script that does not compile is not loaded; its EVALSHA answers
     * NOSCRIPT (after the retry) rather than keep the client down. */
    sl__cmd_free(n);
    if (--c->setup_left == 0) sl__conn_up(c);
    return;
  case SL__RC_LOAD:
  case SL__RC_SUB:
    sl__cmd_free(n);
    return;
  case SL__RC_EVALSHA:
    if (is_error && !n->retried && reply->len >= 8 && memcmp(reply->str, "NOSCRIPT", 8) == 0 &&
        sl__retry_evalsha(c, n) == 0)
      return;
    break;
  default:
    break;
  }
  r->pending--;
  r->st.replies++;
  if (is_error) r->st.error_replies++;
  sl_redis_cb cb = n->cb;
  void *ud = n->ud;
  sl__cmd_free(n);
  if (cb) cb(r, reply, 0, ud);
}

static int sl__str_is(const redisReply *e, const char *s) {
  size_t n = strlen(s);
  return e->type == REDIS_REPLY_STRING && e->len == n && memcmp(e->str, s, n) == 0;
}

static void sl__sub_reply(sl__rconn_t *c, redisReply *reply) {
  sl_redis_t *r = c->r;
  if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 && sl__str_is(reply->element[0], "message") &&
      reply->element[1]->type == REDIS_REPLY_STRING && reply->element[2]->type == REDIS_REPLY_STRING) {
    const redisReply *ch = reply->element[1], *msg = reply->element[2];
    /* By index: a callback may subscribe (growing the array) or close. */
    for (int i = 0; i < r->nsubs; i++) {
      sl__sub_t *s = &r->subs[i];
      if (s->len != ch->len || memcmp(s->channel, ch->str, ch->len) != 0) continue;
      r->st.messages++;
      s->cb(r, ch->str, msg->str, msg->len, s->ud);
      if (c->state == SL__RS_CLOSING) return;
    }
    return;
  }
  /* A subscribe confirmation (or an error in its place). */
  sl__rcmd_t *n = c->head;
  if (!n) return;
  c->head = n->next;
  if (!c->head) c->tail = NULL;
  sl__cmd_free(n);
  r->sub_backoff_ms = r->base_ms;
}

static void sl__on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  sl__rconn_t *c = h->data;
  *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void sl__on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sl__rconn_t *c = s->data;
  char why[192];
  if (nread == 0 || c->state == SL__RS_CLOSING) return;
  if (nread < 0) {
    if (nread == UV_EOF)
      snprintf(why, sizeof(why), "connection closed by the server");
    else
      snprintf(why, sizeof(why), "read: %s", uv_strerror((int)nread));
    sl__conn_fail(c, why, 0);
    return;
  }
  if (redisReaderFeed(c->reader, buf->base, (size_t)nread) != REDIS_OK) {
    sl__conn_fail(c, "protocol error: the reader refused input", 0);
    return;
  }
  for (;;) {
    void *reply = NULL;
    if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
      snprintf(why, sizeof(why), "protocol error: %s", c->reader->errstr);
      sl__conn_fail(c, why, 0);
      return;
    }
    if (!reply) return;
    if (c->sub)
      sl__sub_reply(c, reply);
    else
      sl__cmd_reply(c, reply);
    freeReplyObject(reply);
    if (c->state == SL__RS_CLOSING) return;
  }
}

/* ---- connecting ---- */

/* The subscriber connection's one SUBSCRIBE, naming every channel. */
static int sl__send_subscribe_all(sl__rconn_t *c) {
  sl_redis_t *r = c->r;
  int argc = r->nsubs + 1;
  const char **argv = sl_try_malloc(sizeof(*argv) * (size_t)argc);
  size_t *lens = sl_try_malloc(sizeof(*lens) * (size_t)argc);
  char *buf = NULL;
  int len = -1, rc = SL_ENOMEM;
  if (argv && lens) {
    argv[0] = "SUBSCRIBE";
    lens[0] = 9;
    for (int i = 0; i < r->nsubs; i++) {
      argv[i + 1] = r->subs[i].channel;
      lens[i + 1] = r->subs[i].len;
    }
    len = redisFormatCommandArgv(&buf, argc, argv, lens);
  }
  sl_free(argv);
  sl_free(lens);
  if (len < 0) return SL_ENOMEM;
  /* One confirmation per channel: all but the last node carry no bytes. */
  for (int i = 0; i < r->nsubs; i++) {
    sl__rcmd_t *n = sl__cmd_new(SL__RC_SUB, NULL, NULL);
    if (!n) break;
    if (i < r->nsubs - 1) {
      n->deadline = uv_now(r->loop) + r->timeout_ms;
      if (c->tail) c->tail->next = n; else c->head = n;
      c->tail = n;
      continue;
    }
    rc = sl__send(c, n, buf, (size_t)len);
    if (rc != 0) sl_free(n);
  }
  redisFreeCommand(buf);
  return rc;
}

static void sl__on_connect(uv_connect_t *req, int status) {
  sl__rconn_t *c = req->data;
  sl_redis_t *r = c->r;
  if (c->state == SL__RS_CLOSING) return; /* canceled by the close */
  if (status < 0) {
    char why[96];
    snprintf(why, sizeof(why), "connect: %s", uv_strerror(status));
    sl__conn_fail(c, why, 0);
    return;
  }
  int rc = uv_read_start(&c->h.stream, sl__on_alloc, sl__on_read);
  if (rc < 0) {
    char why[96];
    snprintf(why, sizeof(why), "read: %s", uv_strerror(rc));
    sl__conn_fail(c, why, 0);
    return;
  }
  if (c->sub) {
    c->state = SL__RS_UP;
    if (sl__send_subscribe_all(c) != 0) sl__conn_fail(c, "out of memory", 0);
    return;
  }
  c->state = SL__RS_SETUP;
  c->setup_left = 0;
  rc = 0;
  if (r->db != 0) {
    char dbs[16];
    int dl = snprintf(dbs, sizeof(dbs), "%d", r->db);
    const char *argv[2] = {"SELECT", dbs};
    size_t lens[2] = {6, (size_t)dl};
    rc = sl__send_internal(c, SL__RC_SELECT, 2, argv, lens);
    c->setup_left += rc == 0;
  }
  for (int i = 0; i < r->nscripts && rc == 0; i++) {
    rc = sl__send_script_load(c, SL__RC_SETUP, &r->scripts[i]);
    c->setup_left += rc == 0;
  }
  if (rc == 0) {
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};
    rc = sl__send_internal(c, SL__RC_SETUP, 1, argv, lens);
    c->setup_left += rc == 0;
  }
  if (rc != 0) sl__conn_fail(c, "out of memory", 0);
}

static void sl__tcp_connect(sl__rconn_t *c, const struct sockaddr *addr) {
  c->state = SL__RS_CONNECTING;
  uv_tcp_nodelay(&c->h.tcp, 1);
  int rc = uv_tcp_connect(&c->connect_req, &c->h.tcp, addr, sl__on_connect);
  if (rc < 0) {
    char why[96];
    snprintf(why, sizeof(why), "connect: %s", uv_strerror(rc));
    sl__conn_fail(c, why, 0);
  }
}

static void sl__on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  sl__rconn_t *c = req->data;
  c->resolving = 0;
  if (c->state == SL__RS_CLOSING) {
    if (res) uv_freeaddrinfo(res);
    sl__conn_maybe_free(c);
    return;
  }
  if (status < 0 || !res) {
    char why[sizeof(c->r->host) + 64];
    snprintf(why, sizeof(why), "resolve %s: %s", c->r->host, uv_strerror(status < 0 ? status : UV_EAI_NONAME));
    if (res) uv_freeaddrinfo(res);
    sl__conn_fail(c, why, 0);
    return;
  }
  /* One address is tried per attempt: the first IPv4 one if there is any,
   * since a Redis bound to 127.0.0.1 alone is the common case and
   * "localhost" often resolves to ::1 first. */
  const struct addrinfo *ai = res;
  for (const struct addrinfo *p = res; p; p = p->ai_next)
    if (p->ai_family == AF_INET) {
      ai = p;
      break;
    }
  sl__tcp_connect(c, ai->ai_addr);
  uv_freeaddrinfo(res);
}

/* Starts a connection: the command one (sub 0) or the subscriber. */
static void sl__connect(sl_redis_t *r, int sub) {
  sl__rconn_t *c = sl_try_malloc(sizeof(*c));
  redisReader *reader = c ? redisReaderCreate() : NULL;
  if (!reader) {
    sl_free(c);
    if (!sub) snprintf(r->st.last_error, sizeof(r->st.last_error), "out of memory");
    sl__schedule(r, sub);
    return;
  }
  memset(c, 0, offsetof(sl__rconn_t, rbuf));
  c->r = r;
  c->reader = reader;
  c->sub = sub;
  if (r->is_unix)
    uv_pipe_init(r->loop, &c->h.pipe, 0);
  else
    uv_tcp_init(r->loop, &c->h.tcp);
  c->h.handle.data = c;
  c->connect_req.data = c;
  c->gai.data = c;
  c->handle_open = 1;
  r->nhandles++;
  c->connect_deadline = uv_now(r->loop) + r->timeout_ms;
  if (sub) r->sub = c; else r->cmd = c;
  if (r->is_unix) {
    c->state = SL__RS_CONNECTING;
    uv_pipe_connect(&c->connect_req, &c->h.pipe, r->path, sl__on_connect);
  } else if (r->numeric) {
    sl__tcp_connect(c, (const struct sockaddr *)&r->addr);
  } else {
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->state = SL__RS_RESOLVING;
    c->resolving = 1;
    int rc = uv_getaddrinfo(r->loop, &c->gai, sl__on_resolved, r->host, r->port, &hints);
    if (rc < 0) {
      char why[sizeof(r->host) + 64];
      c->resolving = 0;
      snprintf(why, sizeof(why), "resolve %s: %s", r->host, uv_strerror(rc));
      sl__conn_fail(c, why, 0);
      return;
    }
  }
  if (c->state != SL__RS_CLOSING) sl__arm(r);
}

/* ---- the URL ---- */

/* Parses digits [s, e) into *v (at most max).  Returns 0 or -1. */
static int sl__parse_uint(const char *s, const char *e, long max, long *v) {
  if (s == e) return -1;
  long x = 0;
  for (const char *p = s; p < e; p++) {
    if (*p < '0' || *p > '9') return -1;
    x = x * 10 + (*p - '0');
    if (x > max) return -1;
  }
  *v = x;
  return 0;
}

static int sl__parse_url(sl_redis_t *r, const char *url, char *err, size_t errlen) {
  if (!url || !*url) {
    sl__seterr(err, errlen, "redis url: missing (want unix:/path or redis://host:port[/db])");
    return SL_EINVAL;
  }
  if (strncmp(url, "unix:", 5) == 0) {
    const char *p = url + 5;
    if (*p == '\0') {
      sl__seterr(err, errlen, "redis url: unix: needs a socket path");
      return SL_EINVAL;
    }
    if (strlen(p) >= sizeof(r->path)) {
      sl__seterr(err, errlen, "redis url: unix socket path too long");
      return SL_EINVAL;
    }
    r->is_unix = 1;
    snprintf(r->path, sizeof(r->path), "%s", p);
    return 0;
  }
  if (strncmp(url, "redis://", 8) != 0) {
    sl__seterr(err, errlen, "redis url: must start with unix: or redis://");
    return SL_EINVAL;
  }
  const char *p = url + 8, *hs, *he;
  if (strchr(p, '@')) {
    sl__seterr(err, errlen, "redis url: credentials are not supported");
    return SL_EINVAL;
  }
  if (*p == '[') {
    hs = p + 1;
    he = strchr(hs, ']');
    if (!he) {
      sl__seterr(err, errlen, "redis url: unterminated [ in host");
      return SL_EINVAL;
    }
    p = he + 1;
  } else {
    hs = p;
    while (*p && *p != ':' && *p != '/') p++;
    he = p;
  }
  if (he == hs) {
    sl__seterr(err, errlen, "redis url: missing host");
    return SL_EINVAL;
  }
  if ((size_t)(he - hs) >= sizeof(r->host)) {
    sl__seterr(err, errlen, "redis url: host too long");
    return SL_EINVAL;
  }
  memcpy(r->host, hs, (size_t)(he - hs));
  r->host[he - hs] = '\0';
  long port = 6379, db = 0;
  if (*p == ':') {
    const char *ps = ++p;
    while (*p && *p != '/') p++;
    if (sl__parse_uint(ps, p, 65535, &port) != 0 || port == 0) {
      sl__seterr(err, errlen, "redis url: port must be a number from 1 to 65535");
      return SL_EINVAL;
    }
  }
  if (*p == '/') {
    const char *ds = ++p;
    p += strlen(p);
    if (ds != p && sl__parse_uint(ds, p, 1000000, &db) != 0) {
      sl__seterr(err, errlen, "redis url: database must be a non-negative number");
      return SL_EINVAL;
    }
  } else if (*p) {
    sl__seterr(err, errlen, "redis url: unexpected text after the host");
    return SL_EINVAL;
  }
  snprintf(r->port, sizeof(r->port), "%ld", port);
  r->db = (int)db;
  memset(&r->addr, 0, sizeof(r->addr));
  struct sockaddr_in *a4 = (struct sockaddr_in *)&r->addr;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&r->addr;
  if (inet_pton(AF_INET, r->host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    r->numeric = 1;
  } else if (inet_pton(AF_INET6, r->host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    r->numeric = 1;
  }
  return 0;
}

/* ---- the interface ---- */

int sl_redis_open(sl_redis_t **out, uv_loop_t *loop, const sl_redis_options_t *opt, char *err, size_t errlen) {
  if (!out || !loop || !opt) {
    sl__seterr(err, errlen, "redis: missing argument");
    return SL_EINVAL;
  }
  sl_redis_t *r = sl_try_malloc(sizeof(*r));
  if (!r) {
    sl__seterr(err, errlen, "redis: out of memory");
    return SL_ENOMEM;
  }
  memset(r, 0, sizeof(*r));
  int rc = sl__parse_url(r, opt->url, err, errlen);
  if (rc != 0) {
    sl_free(r);
    return rc;
  }
  r->loop = loop;
  r->on_state = opt->on_state;
  r->ud = opt->ud;
  r->timeout_ms = opt->timeout_ms ? opt->timeout_ms : 100;
  r->base_ms = opt->reconnect_base_ms ? opt->reconnect_base_ms : 50;
  r->max_ms = opt->reconnect_max_ms ? opt->reconnect_max_ms : 2000;
  /* Deadlines are now + timeout and delays double: keep both far from
   * wrapping (a year is longer than anyone waits). */
  const uint64_t year = 365ull * 24 * 3600 * 1000;
  if (r->timeout_ms > year) r->timeout_ms = year;
  if (r->base_ms > year) r->base_ms = year;
  if (r->max_ms > year) r->max_ms = year;
  if (r->max_ms < r->base_ms) r->max_ms = r->base_ms;
  r->backoff_ms = r->sub_backoff_ms = r->base_ms;
  r->reported = -1;
  uv_timer_init(loop, &r->deadline_timer);
  uv_timer_init(loop, &r->reconnect_timer);
  uv_timer_init(loop, &r->sub_timer);
  r->deadline_timer.data = r->reconnect_timer.data = r->sub_timer.data = r;
  r->nhandles = 3;
  /* The first connect starts from the loop, so that nothing (not even
   * on_state) is called back before open has returned. */
  uv_timer_start(&r->reconnect_timer, sl__on_reconnect, 0, 0);
  *out = r;
  return 0;
}

static void sl__on_timer_closed(uv_handle_t *h) {
  sl_redis_t *r = h->data;
  r->nhandles--;
  sl__maybe_finish(r);
}

void sl_redis_close(sl_redis_t *r, void (*done)(void *ud), void *ud) {
  if (!r || r->closing) return;
  r->closing = 1;
  r->up = 0;
  r->done = done;
  r->done_ud = ud;
  uv_close((uv_handle_t *)&r->deadline_timer, sl__on_timer_closed);
  uv_close((uv_handle_t *)&r->reconnect_timer, sl__on_timer_closed);
  uv_close((uv_handle_t *)&r->sub_timer, sl__on_timer_closed);
  if (r->sub) sl__conn_fail(r->sub, "closing", 1);
  if (r->cmd) sl__conn_fail(r->cmd, "closing", 1);
}

int sl_redis_up(const sl_redis_t *r) { return r->up; }

void sl_redis_stats(const sl_redis_t *r, sl_redis_stats_t *out) {
  *out = r->st;
  out->up = r->up;
  out->pending = r->pending;
}

int sl_redis_command(sl_redis_t *r, sl_redis_cb cb, void *ud, int argc, const char *const *argv,
                     const size_t *argvlen) {
  if (!r || argc < 1 || !argv) return SL_EINVAL;
  if (r->closing || !r->up) {
    r->st.refused_down++;
    return SL_EAGAIN;
  }
  char *buf = NULL;
  int len = redisFormatCommandArgv(&buf, argc, (const char **)argv, argvlen);
  if (len < 0) return SL_ENOMEM;
  sl__rcmd_t *n = sl__cmd_new(SL__RC_USER, cb, ud);
  int rc = n ? sl__send(r->cmd, n, buf, (size_t)len) : SL_ENOMEM;
  redisFreeCommand(buf);
  if (rc != 0) {
    sl_free(n);
    return rc;
  }
  r->pending++;
  r->st.commands++;
  return 0;
}

int sl_redis_script(sl_redis_t *r, const char *source, int *id) {
  if (!r || !source || !id) return SL_EINVAL;
  if (r->nscripts == r->capscripts) {
    int cap = r->capscripts ? r->capscripts * 2 : 4;
    sl__script_t *s = sl_try_realloc(r->scripts, sizeof(*s) * (size_t)cap);
    if (!s) return SL_ENOMEM;
    r->scripts = s;
    r->capscripts = cap;
  }
  sl__script_t *s = &r->scripts[r->nscripts];
  s->len = strlen(source);
  s->src = sl_try_malloc(s->len + 1);
  if (!s->src) return SL_ENOMEM;
  memcpy(s->src, source, s->len + 1);
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)s->src, s->len, md);
  for (int i = 0; i < SHA_DIGEST_LENGTH; i++) snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
  *id = r->nscripts++;
  /* Already connected: load it now.  During setup it counts toward up; a
   * load that cannot be sent now is made by the NOSCRIPT retry. */
  sl__rconn_t *c = r->cmd;
  if (c && (c->state == SL__RS_SETUP || c->state == SL__RS_UP)) {
    int setup = c->state == SL__RS_SETUP;
    if (sl__send_script_load(c, setup ? SL__RC_SETUP : SL__RC_LOAD, s) == 0 && setup) c->setup_left++;
  }
  return 0;
}

int sl_redis_evalsha(sl_redis_t *r, int id, int nkeys, int argc, const char *const *argv, const size_t *argvlen,
                     sl_redis_cb cb, void *ud) {
  if (!r || id < 0 || id >= r->nscripts || nkeys < 0 || argc < 0 || nkeys > argc || (argc > 0 && !argv))
    return SL_EINVAL;
  if (r->closing || !r->up) {
    r->st.refused_down++;
    return SL_EAGAIN;
  }
  const char *sargv[SL__STACK_ARGS];
  size_t slens[SL__STACK_ARGS];
  int n = argc + 3;
  const char **av = sargv;
  size_t *al = slens;
  if (n > SL__STACK_ARGS) {
    av = sl_try_malloc(sizeof(*av) * (size_t)n);
    al = sl_try_malloc(sizeof(*al) * (size_t)n);
    if (!av || !al) {
      sl_free(av);
      sl_free(al);
      return SL_ENOMEM;
    }
  }
  char nk[16];
  av[0] = "EVALSHA";
  al[0] = 7;
  av[1] = r->scripts[id].sha;
  al[1] = 40;
  al[2] = (size_t)snprintf(nk, sizeof(nk), "%d", nkeys);
  av[2] = nk;
  for (int i = 0; i < argc; i++) {
    av[i + 3] = argv[i];
    al[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
  }
  char *buf = NULL;
  int len = redisFormatCommandArgv(&buf, n, av, al);
  if (av != sargv) {
    sl_free(av);
    sl_free(al);
  }
  if (len < 0) return SL_ENOMEM;
  sl__rcmd_t *c = sl__cmd_new(SL__RC_EVALSHA, cb, ud);
  if (!c) {
    redisFreeCommand(buf);
    return SL_ENOMEM;
  }
  c->script = id;
  c->fmt = buf;
  c->fmtlen = (size_t)len;
  int rc = sl__send(r->cmd, c, buf, (size_t)len);
  if (rc != 0) {
    sl__cmd_free(c);
    return rc;
  }
  r->pending++;
  r->st.commands++;
  return 0;
}

int sl_redis_subscribe(sl_redis_t *r, const char *channel, sl_redis_message_cb cb, void *ud) {
  if (!r || !channel || !cb) return SL_EINVAL;
  if (r->nsubs == r->capsubs) {
    int cap = r->capsubs ? r->capsubs * 2 : 4;
    sl__sub_t *s = sl_try_realloc(r->subs, sizeof(*s) * (size_t)cap);
    if (!s) return SL_ENOMEM;
    r->subs = s;
    r->capsubs = cap;
  }
  sl__sub_t *s = &r->subs[r->nsubs];
  s->len = strlen(channel);
  s->channel = sl_try_malloc(s->len + 1);
  if (!s->channel) return SL_ENOMEM;
  memcpy(s->channel, channel, s->len + 1);
  s->cb = cb;
  s->ud = ud;
  r->nsubs++;
  if (r->closing) return 0;
  sl__rconn_t *c = r->sub;
  if (c && c->state == SL__RS_UP) {
    const char *argv[2] = {"SUBSCRIBE", s->channel};
    size_t lens[2] = {9, s->len};
    /* Not sent: the subscriber connection is remade without it otherwise,
     * so break it and let the reconnect subscribe to everything. */
    if (sl__send_internal(c, SL__RC_SUB, 2, argv, lens) != 0) sl__conn_fail(c, "out of memory", 0);
  } else if (!c && r->up && !uv_is_active((uv_handle_t *)&r->sub_timer)) {
    sl__connect(r, 1);
  }
  return 0;
}
