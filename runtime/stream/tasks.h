/* tasks.h: the native task API's store: tasks that outlive their client,
 * their event encoder and their bounded rings (docs/operations.md, "Task
 * API").
 *
 * A task is a chat request the relay runs for a sink request
 * (http_server.h) instead of a client: the relay writes the OpenAI stream
 * it would send a client, once per upstream read, and the task's encoder
 * turns that batch into sluice's own events, `started`, `token`,
 * `metrics`, `end` and `error`, each with an `id:` (the task's sequence
 * number from 1), an `event:` and one `data:` JSON line.  The events go
 * into the task's ring, pool chunks (chunk_pool.h: counted in the stream
 * memory budget) that hold the newest events, and from there, with no
 * copy, to the attached client if there is one.
 *
 * The ring never drops an event no client was handed: it evicts only
 * events already written to a client's connection, oldest first, while it
 * holds more than tasks.ring_bytes.  While no client is attached and the
 * ring holds tasks.ring_bytes or more, the sink says "over the high
 * watermark" and the relay stops reading the engine (the same pause as a
 * slow client); a client that attaches and reads resumes it.  So the ring
 * passes its bound by at most one upstream read's events.
 *
 * A task without a client is kept tasks.grace_ms (from its submission,
 * from its client's leaving, or from its end): a running task is then
 * cancelled (counted as expired) and freed, a finished one freed.  One
 * client at a time: a second GET takes the task over, ending the first
 * client's response.
 *
 * Uses http (sink requests, streamed writes), upstream (the OpenAI scan)
 * and base (chunks, counters); lives on the loop's thread.
 */
#ifndef SL_TASKS_H
#define SL_TASKS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "runtime/base/chunk_pool.h"
#include "runtime/base/config.h"
#include "runtime/base/counters.h"
#include "runtime/http/http_server.h"

typedef struct sl_task_s sl_task_t;

/* The tasks of one loop (the gateway owns one). */
typedef struct sl_tasks_s {
  uv_loop_t *loop;
  sl_chunk_pool_t *chunks;   /* where the rings' chunks come from */
  sl_counters_t *counters;   /* may be NULL */
  uint64_t grace_ms;         /* tasks.grace_ms */
  size_t ring_bytes;         /* tasks.ring_bytes */
  uint64_t metrics_tokens;   /* tasks.metrics_tokens: a metrics event every this many tokens (0: none) */
  int max;                   /* tasks.max: live tasks at most */
  int worker;                /* the worker index in ids (0: standalone) */
  uint64_t base;             /* task numbers begin after this one (the Unix time in us at init) */
  uint64_t issued;           /* the last task number issued (ids task-<worker>-<base+1..issued>) */
  sl_task_t *head;           /* live tasks (doubly linked) */
  int n;                     /* live tasks */
  int closing;
  int pending;               /* timers still closing */
  void (*close_cb)(void *ud);
  void *close_ud;
} sl_tasks_t;

/* What /health shows. */
typedef struct {
  int live;                  /* tasks kept (running or finished) */
  int running;               /* of those, still running */
  int detached;              /* of those, with no client attached */
  int paused;                /* running, detached, and holding the engine back (ring full) */
  size_t ring_bytes;         /* bytes of events held in all rings */
  size_t ring_memory;        /* bytes of the chunks the rings hold */
} sl_tasks_stats_t;

/* Sets ts up from cfg (tasks.*). */
void sl_tasks_init(sl_tasks_t *ts, uv_loop_t *loop, sl_chunk_pool_t *chunks, sl_counters_t *counters,
                   const sl_config_t *cfg, int worker);

/* Makes a new task for request src (whose headers the relay will read:
 * they are lent to the sink request until sl_task_started) and appends its
 * `started` event.  model and request_id are copied.  Returns 0 with *out
 * set, or SL_ETOOBIG when tasks.max tasks are live or the store is
 * closing (nothing made). */
int sl_task_create(sl_tasks_t *ts, const sl_http_req_t *src, const char *model, const char *request_id,
                   sl_task_t **out);

/* The sink request to hand the relay (sl_relay_start): the task owns it. */
sl_http_req_t *sl_task_req(sl_task_t *t);

/* The relay has started (it read the headers it needed): the lent
 * headers are dropped. */
void sl_task_started(sl_task_t *t);

/* The task's id ("task-<worker>-<n>"). */
const char *sl_task_id(const sl_task_t *t);

/* Splits an id into its worker and number.  Returns 0, or SL_EINVAL for a
 * string that is not a task id. */
int sl_task_parse_id(const char *id, int *worker, uint64_t *n);

/* Finds a live task by id: the task, or NULL with *gone 1 when this store
 * issued the id (the task was freed since), 0 when it did not. */
sl_task_t *sl_tasks_find(sl_tasks_t *ts, const char *id, int *gone);

/* Attaches client (a GET whose response has not begun) and answers it:
 * a text/event-stream of the events after last_event_id (NULL: from the
 * first), then the live ones.  extra_headers go on the response.  Answers
 * 400 itself for a Last-Event-ID that is not a number or lies past the
 * last event, and a stream of one `error` event (code "evicted", no id)
 * when the event after it was evicted.  A client already attached is
 * taken over: its response ends.  Returns 0. */
int sl_task_attach(sl_task_t *t, sl_http_req_t *client, const char *last_event_id, const char *extra_headers);

/* Cancels a running task: the relay is told as a client that left (the
 * engine request is cancelled) and the task ends with an `error` event,
 * code "cancelled".  Returns 0, or SL_EINVAL when it was finished already. */
int sl_task_cancel(sl_task_t *t);

/* The task's state as a JSON object's members: writes
 * "\"status\":...,\"events\":...,..." into buf (NUL-ended).  Returns the
 * length. */
size_t sl_task_describe(const sl_task_t *t, char *buf, size_t cap);

/* Adds up every task's figures. */
void sl_tasks_stats(const sl_tasks_t *ts, sl_tasks_stats_t *out);

/* Ends every task (running ones are cancelled, clients' responses cut)
 * and frees them; cb(ud) runs once their timers are closed. */
void sl_tasks_close(sl_tasks_t *ts, void (*cb)(void *ud), void *ud);

#endif
