/* harness.h: the end-to-end harness: real sluice processes on loopback.
 *
 * Every e2e program is run by ctest as `e2e_x <path to sluice>`.  It includes
 * test.h, then this header, calls e2e_init(argc, argv, watchdog_s) first, runs
 * its tests with E2E_RUN, and returns SL_TEST_EXIT().  Each test starts the
 * processes it needs and stops them itself (asserting a clean exit).  The harness:
 *  - starts `sluice serve --config <tmpfile> --listen 127.0.0.1:0` and
 *    `sluice sim-engine --listen 127.0.0.1:0 ...` with fork/exec, stdout and
 *    stderr going to a log file in a private temp directory, and waits for
 *    the "listening on" line to learn the port (and, for serve, the ports of
 *    the in-process simulated engines from their "simulated engine on" lines);
 *  - stops them with SIGTERM and checks exit status 0 and a clean log (no
 *    "handles still open", no AddressSanitizer, UBSan or LeakSanitizer
 *    report); kills them with SIGKILL on failure paths, after every test
 *    (E2E_RUN), at exit, on a fatal signal and when the watchdog fires, and
 *    asks the kernel to kill them if the test program dies (PDEATHSIG), so
 *    no process outlives the program;
 *  - speaks HTTP through tests/netutil.h, reads SSE responses into an
 *    e2e_sse_t that classifies every event, and reads /health counters and a
 *    simulated engine's /sim/stats with cJSON.
 * Only loopback addresses are used.  Every wait is bounded; times are
 * milliseconds.  Helpers return 0 (or a value) on success and a negative
 * number on failure after printing why on stderr, so a test can ASSERT on
 * them and the log says what went wrong.
 */
#ifndef SL_E2E_HARNESS_H
#define SL_E2E_HARNESS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "netutil.h"

#define E2E_MAX_SIMS 16

/* The bound for waiting on an event (a log line, a counter, a stream's
 * end): generous, since the sanitizer build on a loaded 2-core machine is
 * slow.  A wait that reaches it is a failure, never a timing assertion. */
#define E2E_WAIT_MS 30000

/* One child process. */
typedef struct {
  pid_t pid;                   /* > 0 while running; -pid once reaped */
  int port;                    /* the port it serves HTTP on */
  int sim_ports[E2E_MAX_SIMS]; /* serve: ports of its in-process simulated engines, in log order */
  int nsims;
  int status;                  /* wait status once reaped */
  char name[32];               /* "sluice" or "sim-engine", for messages */
  char log_path[512];          /* stdout + stderr */
  char cfg_path[512];          /* serve: the config file written for it */
} e2e_proc_t;

/* Reads argv[1] (the sluice binary), makes the temp directory, installs the
 * exit/signal cleanup and a watchdog that kills everything and fails the
 * program after watchdog_s seconds.  Exits with status 2 on misuse. */
void e2e_init(int argc, char **argv, unsigned watchdog_s);

/* The sluice binary under test. */
const char *e2e_binary(void);

/* The private temp directory (kept after a failure, removed otherwise). */
const char *e2e_tmpdir(void);

/* Starts `sluice serve` with config_json written to a temp file, listening
 * on 127.0.0.1:0, plus extra arguments (NULL-terminated list, may be NULL).
 * Waits (up to 15 s) for its listening line.  Returns 0, or -1 after
 * printing the log (the process is then killed). */
int e2e_serve_start(e2e_proc_t *p, const char *config_json, const char *const *extra_args);

/* Only spawns `sluice serve` with config_json (no wait for listening), for
 * a start that is expected to fail: use e2e_wait_exit then.  Returns 0 or -1. */
int e2e_serve_spawn(e2e_proc_t *p, const char *config_json, const char *const *extra_args);

/* Starts `sluice sim-engine --listen 127.0.0.1:0` plus args (NULL-terminated,
 * may be NULL).  Returns 0 or -1 as above. */
int e2e_sim_start(e2e_proc_t *p, const char *const *args);

/* Starts any other program as a tracked child, killed on every failure
 * path like sluice's processes: argv[0] is its path (exec'd as is), argv is
 * NULL-terminated (at most 63 entries), name names it in messages, stdout
 * and stderr go to its log file.  Waits up to timeout_ms for a log line
 * containing marker and reads the port after the last ':' that follows the
 * marker on that line into p->port (so a marker ending in "http://" fits
 * "listening on http://127.0.0.1:PORT").  Returns 0, or -1 after printing
 * the log (the process is then killed). */
int e2e_proc_start(e2e_proc_t *p, const char *name, const char *const *argv, const char *marker, int timeout_ms);

/* SIGTERM, then waits up to 20 s for the exit.  Returns 0 if it exited with
 * status 0 and its log is clean (see e2e_log_check); otherwise prints why and
 * the log's tail and returns -1 (a process that does not exit is killed). */
int e2e_stop(e2e_proc_t *p);

/* SIGKILL and reap.  Returns 0 if the log holds no sanitizer report, else -1. */
int e2e_kill(e2e_proc_t *p);

/* Stops p with SIGSTOP and waits (up to timeout_ms) until the kernel reports
 * it stopped, so that nothing it would do can happen before the caller's
 * next step: a paused engine holds a request at exactly the point the test
 * chose, however fast or slow anything runs.  Returns 0, or -1 (after
 * printing why) if it is not running or did not stop in time.
 * e2e_stop resumes a paused process before it waits for its exit. */
int e2e_pause(e2e_proc_t *p, int timeout_ms);

/* Lets a paused process run again (SIGCONT).  Returns 0, or -1 if it is not
 * running. */
int e2e_resume(e2e_proc_t *p);

/* Waits up to timeout_ms for the process to exit on its own.  Returns 0 once
 * reaped (p->status set), -1 on timeout. */
int e2e_wait_exit(e2e_proc_t *p, int timeout_ms);

/* 0 if the log has none of: "handles still open", "ERROR: AddressSanitizer",
 * "runtime error:", "LeakSanitizer"; else prints the line and returns -1. */
int e2e_log_check(const e2e_proc_t *p);

/* The whole log as a NUL-terminated malloc'd string (caller frees), or NULL. */
char *e2e_log_text(const e2e_proc_t *p);

/* A whole file as a malloc'd NUL-terminated string, or NULL. */
char *e2e_read_file(const char *path);

/* Runs `sluice SUBCMD ARGS` with script on its stdin; stdout and stderr come
 * back as malloc'd strings (free them; NULL if it did not run).  Returns the
 * exit status, or -1 if it did not run or its stderr has a sanitizer report. */
int e2e_run_cli(const char *subcmd, const char *args, const char *script, char **out, char **err);

/* Sends one admin command line (e.g. "reload") to the daemon's unix admin
 * socket at sock and copies the first reply line into out (NUL-terminated;
 * up to 30 s).  Returns 0 if the reply starts with "ok", 1 for any other
 * reply, -1 if the socket cannot be reached. */
int e2e_admin(const char *sock, const char *cmd, char *out, size_t cap);

/* Waits up to timeout_ms for a log line containing needle.  Returns 1 if
 * found (and copies that line into line[cap] when line is not NULL), else 0. */
int e2e_log_wait(const e2e_proc_t *p, const char *needle, int timeout_ms, char *line, size_t cap);

/* How many times needle occurs in the log so far, or -1 if it cannot be read. */
int e2e_log_count(const e2e_proc_t *p, const char *needle);
/* The count once it reaches min, or the count at the deadline. A process
 * writes its log after it answers, so a test waits for the line. */
int e2e_wait_log_count(const e2e_proc_t *p, const char *needle, int min, int timeout_ms);

/* Prints the last `lines` lines of the log on stderr. */
void e2e_log_dump(const e2e_proc_t *p, int lines);

/* Called by E2E_RUN after each test: kills whatever the test left running
 * (printing their logs first when the test failed). */
void e2e_after_test(const char *name, int failed, int64_t elapsed_ms);

/* Runs one test function with SL_RUN (include test.h before this header),
 * then cleans up after it and prints how long it took. */
#define E2E_RUN(fn)                                                     \
  do {                                                                  \
    int64_t e2e__t0 = nu_now_ms();                                      \
    SL_RUN(fn);                                                         \
    e2e_after_test(#fn, sl__test_cur_failed, nu_now_ms() - e2e__t0);    \
  } while (0)

/* ---- HTTP ---- */

/* A buffered connection to 127.0.0.1:port (heap; free with e2e_conn_close),
 * or NULL.  rcvbuf > 0 sets SO_RCVBUF before connecting (a slow reader).
 * Requests go out with nu_send_request (netutil.h). */
nu_conn_t *e2e_conn_open(int port, int rcvbuf);
void e2e_conn_close(nu_conn_t *c);

/* One request on a new connection; the whole response goes into *out (free
 * with nu_resp_free).  Returns the status, or -1 (out is then empty). */
int e2e_http(int port, const char *method, const char *path, const char *headers, const char *body,
             nu_resp_t *out, int timeout_ms);

/* The same on an open connection (keep-alive). */
int e2e_http_on(nu_conn_t *c, const char *method, const char *path, const char *headers, const char *body,
                nu_resp_t *out, int timeout_ms);

/* GET path and parse the JSON body.  Returns the document (cJSON_Delete it)
 * or NULL; *status (may be NULL) gets the HTTP status or -1. */
cJSON *e2e_get_json(int port, const char *path, int *status);

/* A counter from GET /health ("counters" object), or -1. */
int64_t e2e_counter(int port, const char *name);

/* A top-level number from GET /health (e.g. "stream_pin_bound_bytes"), or -1. */
int64_t e2e_health_num(int port, const char *name);

/* A tenant's number in /health's "tenants" array (name, field), or -1. */
int64_t e2e_tenant_num(int port, const char *tenant, const char *name);

/* A field of a simulated engine's GET /sim/stats, or -1. */
int64_t e2e_sim_stat(int sim_port, const char *name);

/* POST /sim/control with body.  Returns the status or -1. */
int e2e_sim_control(int sim_port, const char *body);

/* Polls GET /ready every 20 ms until it answers want_status.  Returns 0, or
 * -1 after timeout_ms. */
int e2e_wait_ready(int port, int want_status, int timeout_ms);

/* Polls GET /health until it lists exactly n endpoints (over all pools), each
 * ready and out of cooldown.  Returns 1 when so, 0 after timeout_ms. */
int e2e_wait_endpoints_ready(int port, int n, int timeout_ms);

/* Polls until the /health counter (or /sim/stats field) is >= min.  Returns
 * the last value read when it got there, or -1 after timeout_ms. */
int64_t e2e_wait_counter(int port, const char *name, int64_t min, int timeout_ms);
int64_t e2e_wait_sim_stat(int sim_port, const char *name, int64_t min, int timeout_ms);

/* Checks an OpenAI-shaped error body {"error":{"message":string,"type":
 * string,"code":string|null,...}} and, when mention is not NULL, that the
 * message or the code contains it.  Returns 1 if so, else 0 (printing why). */
int e2e_is_error_body(const char *body, const char *mention);

/* ---- SSE ---- */

/* Event kinds, one letter each in e2e_sse_t.kinds. */
enum {
  E2E_EV_ROLE = 'R',    /* chat chunk with only the role (content "" or absent) */
  E2E_EV_CONTENT = 'C', /* a chunk with non-empty content (chat delta.content or completion text) */
  E2E_EV_FINISH = 'F',  /* a chunk with a finish_reason and no content */
  E2E_EV_USAGE = 'U',   /* choices:[] with a usage object */
  E2E_EV_ERROR = 'E',   /* {"error":{...}} */
  E2E_EV_DONE = 'D',    /* [DONE] */
  E2E_EV_OTHER = 'O',   /* valid JSON of none of the shapes above */
  E2E_EV_BAD = 'B'      /* a payload that is not JSON */
};

/* An SSE response read incrementally: raw bytes are de-chunked (when the
 * response is chunked), split into lines and events, and every data payload
 * is parsed with cJSON and classified. */
typedef struct {
  /* settings (set after e2e_sse_init) */
  const char *expect_object; /* "chat.completion.chunk" or "text_completion": others count in wrong_object */
  long stop_after_content;   /* e2e_sse_read returns 1 once this many content chunks came (0: never) */
  /* framing */
  int chunked;               /* Transfer-Encoding: chunked */
  int cstate;
  size_t crem;
  char cline[64];
  size_t cllen;
  int framing_errors;        /* malformed chunked framing */
  int body_ended;            /* the terminating chunk arrived (the body ended as framed) */
  int eof;                   /* the connection closed (or was reset) */
  size_t body_bytes;         /* de-chunked body bytes seen */
  /* lines and events */
  char *line;
  size_t line_len, line_cap;
  char *data;
  size_t data_len, data_cap;
  int has_data;
  /* results */
  long nevents;              /* data events dispatched */
  char *kinds;               /* one E2E_EV_* letter per data event, NUL-terminated */
  size_t kinds_cap;
  long nrole, ncontent, nfinish, nusage, nerror, ndone, nother, nbad;
  long ncomments;            /* ':' lines */
  long comments_before_data; /* ':' lines before the first data event */
  long event_lines;          /* "event:" lines (never allowed on /v1) */
  long other_lines;          /* lines that are neither data, comment, event nor blank */
  long data_after_done;      /* data events after [DONE] */
  long wrong_object;         /* chunks whose "object" is not expect_object */
  char *content;             /* concatenated content, NUL-terminated */
  size_t content_len, content_cap;
  char finish_reason[32];    /* of the last finish chunk */
  int64_t usage_completion_tokens; /* from the usage chunk, or -1 */
  char error_message[512], error_type[64], error_code[64]; /* of the last error event */
  int error_shape_ok;        /* the last error event had string message and type, and a code */
  int read_rc;               /* e2e_stream: what e2e_sse_read returned */
} e2e_sse_t;

void e2e_sse_init(e2e_sse_t *s, const char *expect_object);
void e2e_sse_free(e2e_sse_t *s);

/* Feeds raw response-body bytes (still chunked when s->chunked).  Returns
 * the bytes consumed: less than n only once the body ended. */
size_t e2e_sse_feed(e2e_sse_t *s, const char *p, size_t n);

/* Reads from c (after the response head) until the body ends (returns 0),
 * stop_after_content is reached (1), the connection closes first (-1), or
 * timeout_ms passes (-2). */
int e2e_sse_read(nu_conn_t *c, e2e_sse_t *s, int timeout_ms);

/* One read of at most max bytes (buffered bytes first), waiting up to
 * timeout_ms.  Returns the bytes fed, 0 at EOF or body end, -2 on timeout. */
long e2e_sse_read_some(nu_conn_t *c, e2e_sse_t *s, size_t max, int timeout_ms);

/* Reads from c (after the response head) until s has seen at least n ':'
 * comment lines (heartbeats).  Returns 0 then, -1 if the body or the
 * connection ended first, -2 after timeout_ms. */
int e2e_sse_read_comments(nu_conn_t *c, e2e_sse_t *s, long n, int timeout_ms);

/* Sends POST path on the open connection c and reads the response head into
 * *head; initialises s for the body (s->chunked from the head).  Returns the
 * status, or -1. */
int e2e_sse_start(nu_conn_t *c, const char *path, const char *headers, const char *body, nu_resp_t *head,
                  e2e_sse_t *s, const char *expect_object, int timeout_ms);

/* The same on a new connection: returns it (e2e_conn_close it), or NULL. */
nu_conn_t *e2e_sse_open(int port, const char *path, const char *headers, const char *body, nu_resp_t *head,
                        e2e_sse_t *s, const char *expect_object, int timeout_ms);

/* One whole request on a new connection: a text/event-stream answer is read
 * into s to its end (s->read_rc holds e2e_sse_read's result); any other
 * answer's body goes into head->body (free with nu_resp_free).  s is always
 * initialised (free it with e2e_sse_free).  Returns the status, or -1. */
int e2e_stream(int port, const char *path, const char *headers, const char *body, nu_resp_t *head,
               e2e_sse_t *s, const char *expect_object, int timeout_ms);

/* 1 if s->kinds equals the expected sequence: role (when role), n content
 * chunks, a finish chunk, a usage chunk (when usage), [DONE]; else 0 after
 * printing the first difference. */
int e2e_sse_kinds_are(const e2e_sse_t *s, int role, long n, int usage);

/* 1 if kinds is exactly `want` (a short string such as "RCCCCCE"), else 0
 * after printing both. */
int e2e_sse_kinds_eq(const e2e_sse_t *s, const char *want);

/* A chat request body: {"model":model,"messages":[...],"stream":stream
 * <extra>} where extra is more members starting with ',' (or NULL).
 * Returns buf. */
char *e2e_chat_body(char *buf, size_t cap, const char *model, int stream, const char *extra);

/* The same for /v1/completions with a "prompt". */
char *e2e_completion_body(char *buf, size_t cap, const char *model, int stream, const char *extra);

#endif
