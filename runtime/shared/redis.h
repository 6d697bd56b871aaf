/* redis.h: a Redis client on sluice's own loop.
 *
 * hiredis 0.14 (Debian's libhiredis-dev) gives the two pieces that are
 * hard to get right, the command formatter (redisFormatCommandArgv) and the
 * reply reader (redisReader); this file drives them over a libuv stream
 * (uv_pipe_t for "unix:/path", uv_tcp_t for "redis://host:port[/db]"), so
 * every read, write, timer and reconnect runs on the gateway's loop and
 * nothing ever blocks it.
 *
 * Commands are pipelined on one connection and answered in order (a FIFO
 * of callbacks).  Every command has a deadline (timeout_ms from when it was
 * queued): 0.14 has no async timeouts, so a loop timer checks the oldest
 * one; when it passes, the connection is treated as broken.  A broken
 * connection (timeout, reset, protocol error, EOF) fails every pending
 * command with its status, goes down (on_state says why), and reconnects
 * with exponential backoff (reconnect_base_ms doubling to
 * reconnect_max_ms).  While down, a command fails at once with SL_EAGAIN
 * and its callback is not called: callers apply their fail mode then and
 * there, nothing queues behind an outage.
 *
 * Scripts are registered once (sl_redis_script) and loaded with SCRIPT
 * LOAD on every connect, before the connection counts as up;
 * sl_redis_evalsha runs one by its SHA-1, and a NOSCRIPT error (a Redis
 * restarted or flushed under us) reloads it and retries once.
 *
 * A subscription (sl_redis_subscribe) uses a second connection in
 * subscriber mode, made and remade with the first; messages arrive on the
 * loop in order.
 *
 * Single-threaded: one client belongs to one loop.
 */
#ifndef SL_REDIS_H
#define SL_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

typedef struct sl_redis_s sl_redis_t;

/* A command's answer.  status 0: reply is Redis's answer (which may be an
 * error reply, REDIS_REPLY_ERROR); else reply is NULL and status says why:
 * SL_ETIMEDOUT (its deadline passed), SL_EUPSTREAM (the connection broke), or
 * SL_ECANCELED (the client is closing).  reply is valid only during the
 * call. */
typedef void (*sl_redis_cb)(sl_redis_t *r, const redisReply *reply, int status, void *ud);

/* The connection went up (up 1) or down (up 0; why says what happened,
 * e.g. "connect: connection refused", "command timed out after 100 ms"). */
typedef void (*sl_redis_state_cb)(sl_redis_t *r, int up, const char *why, void *ud);

/* A message on a subscribed channel. */
typedef void (*sl_redis_message_cb)(sl_redis_t *r, const char *channel, const char *msg, size_t len, void *ud);

typedef struct {
  const char *url;              /* "unix:/path/redis.sock" or "redis://host:port[/db]" */
  uint64_t timeout_ms;          /* a command's deadline, and the connect's (default 100) */
  uint64_t reconnect_base_ms;   /* first reconnect delay (default 50) */
  uint64_t reconnect_max_ms;    /* longest reconnect delay (default 2000) */
  sl_redis_state_cb on_state;   /* may be NULL */
  void *ud;                     /* passed to on_state */
} sl_redis_options_t;

/* Counts since sl_redis_open. */
typedef struct {
  uint64_t commands;            /* sent */
  uint64_t replies;             /* answered (error replies included) */
  uint64_t error_replies;       /* REDIS_REPLY_ERROR answers */
  uint64_t timeouts;            /* commands failed by their deadline */
  uint64_t failed;              /* commands failed by a broken connection or close */
  uint64_t refused_down;        /* commands refused at once while down (SL_EAGAIN) */
  uint64_t connects;            /* connections that came up */
  uint64_t outages;             /* times it went down after being up */
  uint64_t messages;            /* subscription messages delivered */
  int up;                       /* 1 when the command connection is up */
  int pending;                  /* commands awaiting their answer */
  char last_error[160];         /* why it last went down ("" if never) */
} sl_redis_stats_t;

/* Checks the options (a URL it cannot parse is SL_EINVAL with err saying
 * why) and starts connecting; returns 0 with *out at once (not yet up).
 * SL_ENOMEM when allocation fails. */
int sl_redis_open(sl_redis_t **out, uv_loop_t *loop, const sl_redis_options_t *opt, char *err, size_t errlen);

/* Fails every pending command with SL_ECANCELED, closes the connections and
 * timers, and when the last handle has closed frees r and calls done (may
 * be NULL).  r must not be used after this call. */
void sl_redis_close(sl_redis_t *r, void (*done)(void *ud), void *ud);

/* 1 when the command connection is up (connected and its scripts loaded). */
int sl_redis_up(const sl_redis_t *r);

void sl_redis_stats(const sl_redis_t *r, sl_redis_stats_t *out);

/* Sends one command (argv with explicit lengths, binary safe).  Returns 0
 * (cb will be called exactly once), SL_EAGAIN while down (cb is not
 * called), SL_ENOMEM. */
int sl_redis_command(sl_redis_t *r, sl_redis_cb cb, void *ud, int argc, const char *const *argv,
                     const size_t *argvlen);

/* Registers a Lua script (copied); its id goes to *id.  Loaded on every
 * connect (the connection is up only once every script is loaded).
 * Register before the connection comes up, or it is loaded at once when up.
 * Returns 0 or SL_ENOMEM. */
int sl_redis_script(sl_redis_t *r, const char *source, int *id);

/* EVALSHA of script id with nkeys keys then the other args (argv holds
 * keys then args; argc counts both).  NOSCRIPT reloads the script and
 * retries once.  Returns as sl_redis_command. */
int sl_redis_evalsha(sl_redis_t *r, int id, int nkeys, int argc, const char *const *argv, const size_t *argvlen,
                     sl_redis_cb cb, void *ud);

/* Subscribes to channel on the subscriber connection (made on first use,
 * remade and resubscribed after every reconnect).  Returns 0 or
 * SL_ENOMEM. */
int sl_redis_subscribe(sl_redis_t *r, const char *channel, sl_redis_message_cb cb, void *ud);

#endif
