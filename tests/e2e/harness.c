/* harness.c: processes, HTTP helpers and the SSE reader of the end-to-end
 * suite (see harness.h).
 *
 * Children are tracked in one static table (pid and log path), not through
 * the callers' e2e_proc_t, so a test that returns early on a failed assert
 * still has its processes killed by e2e_after_test, and the exit and signal
 * handlers can kill everything with only async-signal-safe calls.
 */
#include "e2e/harness.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define E2E_MAX_KIDS 64
#define E2E_START_TIMEOUT_MS 15000
#define E2E_STOP_TIMEOUT_MS 20000

typedef struct {
  pid_t pid;
  char log_path[512];
  char name[32];
} e2e__kid_t;

static e2e__kid_t e2e__kids[E2E_MAX_KIDS];
static const char *e2e__bin;
static char e2e__dir[256];
static int e2e__nfiles;
static int e2e__any_failure;

static char e2e__proc_state(pid_t pid);

/* ---- the child table ---- */

static void e2e__kid_add(pid_t pid, const char *log, const char *name) {
  for (int i = 0; i < E2E_MAX_KIDS; i++) {
    if (e2e__kids[i].pid == 0) {
      e2e__kids[i].pid = pid;
      snprintf(e2e__kids[i].log_path, sizeof(e2e__kids[i].log_path), "%s", log);
      snprintf(e2e__kids[i].name, sizeof(e2e__kids[i].name), "%s", name);
      return;
    }
  }
  /* Cannot happen with the suite's sizes; never lose track of a process. */
  fprintf(stderr, "e2e: child table full; killing pid %d\n", (int)pid);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

static void e2e__kid_remove(pid_t pid) {
  for (int i = 0; i < E2E_MAX_KIDS; i++)
    if (e2e__kids[i].pid == pid) e2e__kids[i].pid = 0;
}

/* Async-signal-safe: SIGKILL every child and reap it. */
static void e2e__kill_all(void) {
  for (int i = 0; i < E2E_MAX_KIDS; i++) {
    pid_t pid = e2e__kids[i].pid;
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      e2e__kids[i].pid = 0;
    }
  }
}

static void e2e__on_fatal(int sig) {
  static const char msg[] = "e2e: fatal signal or watchdog; killing every child process\n";
  ssize_t w = write(2, msg, sizeof(msg) - 1);
  (void)w;
  e2e__kill_all();
  _exit(sig == SIGALRM ? 3 : 128 + sig);
}

static void e2e__remove_dir(void) {
  if (e2e__dir[0] == '\0') return;
  if (e2e__any_failure || getenv("E2E_KEEP_LOGS") != NULL) {
    fprintf(stderr, "e2e: logs and configs kept in %s\n", e2e__dir);
    return;
  }
  char cmd[300];
  /* Only files the harness made live there; a shell-free removal. */
  for (int i = 0; i <= e2e__nfiles; i++) {
    snprintf(cmd, sizeof(cmd), "%s/proc-%d.log", e2e__dir, i);
    unlink(cmd);
    snprintf(cmd, sizeof(cmd), "%s/config-%d.json", e2e__dir, i);
    unlink(cmd);
  }
  rmdir(e2e__dir);
}

static void e2e__at_exit(void) {
  e2e__kill_all();
  e2e__remove_dir();
}

void e2e_init(int argc, char **argv, unsigned watchdog_s) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s <path to the sluice binary>\n", argv[0]);
    exit(2);
  }
  e2e__bin = argv[1];
  if (access(e2e__bin, X_OK) != 0) {
    fprintf(stderr, "e2e: %s is not an executable: %s\n", e2e__bin, strerror(errno));
    exit(2);
  }
  const char *tmp = getenv("TMPDIR");
  snprintf(e2e__dir, sizeof(e2e__dir), "%s/sluice-e2e-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(e2e__dir) == NULL) {
    fprintf(stderr, "e2e: mkdtemp: %s\n", strerror(errno));
    exit(2);
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = e2e__on_fatal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGALRM, &sa, NULL);
  atexit(e2e__at_exit);
  alarm((unsigned)nu_scale_ms((int)watchdog_s));
  setvbuf(stdout, NULL, _IOLBF, 0);
}

const char *e2e_binary(void) { return e2e__bin; }
const char *e2e_tmpdir(void) { return e2e__dir; }

/* ---- logs ---- */

char *e2e_read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  size_t cap = 8192, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap *= 2;
      buf = realloc(buf, cap);
    }
    size_t n = fread(buf + len, 1, cap - len - 1, f);
    if (n == 0) break;
    len += n;
  }
  fclose(f);
  buf[len] = '\0';
  return buf;
}

char *e2e_log_text(const e2e_proc_t *p) { return e2e_read_file(p->log_path); }

int e2e_run_cli(const char *subcmd, const char *args, const char *script, char **out, char **err) {
  static int k;
  char in_path[600], out_path[600], err_path[600], cmd[2600];
  k++;
  *out = *err = NULL;
  snprintf(in_path, sizeof(in_path), "%s/%s-%d.in", e2e_tmpdir(), subcmd, k);
  snprintf(out_path, sizeof(out_path), "%s/%s-%d.out", e2e_tmpdir(), subcmd, k);
  snprintf(err_path, sizeof(err_path), "%s/%s-%d.err", e2e_tmpdir(), subcmd, k);
  FILE *f = fopen(in_path, "w");
  if (f == NULL) return -1;
  fputs(script, f);
  fclose(f);
  snprintf(cmd, sizeof(cmd), "timeout 60 %s %s %s < %s > %s 2> %s", e2e_binary(), subcmd, args, in_path, out_path,
           err_path);
  int st = system(cmd);
  *out = e2e_read_file(out_path);
  *err = e2e_read_file(err_path);
  if (*out == NULL || *err == NULL || !WIFEXITED(st)) {
    fprintf(stderr, "`%s` did not run (status %d)\n", cmd, st);
    return -1;
  }
  static const char *bad[] = {"ERROR: AddressSanitizer", "LeakSanitizer", "runtime error:"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (strstr(*err, bad[i])) {
      fprintf(stderr, "sluice %s: sanitizer report:\n%s\n", subcmd, *err);
      return -1;
    }
  return WEXITSTATUS(st);
}

/* Copies the line of text that contains at into line[cap]. */
static void e2e__line_at(const char *text, const char *at, char *line, size_t cap) {
  const char *b = at;
  while (b > text && b[-1] != '\n') b--;
  const char *e = strchr(at, '\n');
  size_t n = e ? (size_t)(e - b) : strlen(b);
  if (n >= cap) n = cap - 1;
  memcpy(line, b, n);
  line[n] = '\0';
}

int e2e_log_check(const e2e_proc_t *p) {
  static const char *const bad[] = {"handles still open", "ERROR: AddressSanitizer", "runtime error:",
                                    "LeakSanitizer", NULL};
  char *text = e2e_log_text(p);
  if (text == NULL) {
    fprintf(stderr, "e2e: %s: cannot read log %s\n", p->name, p->log_path);
    return -1;
  }
  int rc = 0;
  for (const char *const *b = bad; *b; b++) {
    const char *at = strstr(text, *b);
    if (at != NULL) {
      char line[512];
      e2e__line_at(text, at, line, sizeof(line));
      fprintf(stderr, "e2e: %s log has \"%s\": %s\n", p->name, *b, line);
      rc = -1;
    }
  }
  free(text);
  return rc;
}

int e2e_log_wait(const e2e_proc_t *p, const char *needle, int timeout_ms, char *line, size_t cap) {
  int64_t deadline = nu_now_ms() + nu_scale_ms(timeout_ms);
  for (;;) {
    char *text = e2e_log_text(p);
    const char *at = text ? strstr(text, needle) : NULL;
    if (at != NULL) {
      if (line != NULL) e2e__line_at(text, at, line, cap);
      free(text);
      return 1;
    }
    free(text);
    if (nu_now_ms() >= deadline) return 0;
    usleep(10 * 1000);
  }
}

int e2e_log_count(const e2e_proc_t *p, const char *needle) {
  char *text = e2e_log_text(p);
  if (text == NULL) return -1;
  int n = 0;
  for (const char *at = text; (at = strstr(at, needle)) != NULL; at += strlen(needle)) n++;
  free(text);
  return n;
}

int e2e_wait_log_count(const e2e_proc_t *p, const char *needle, int min, int timeout_ms) {
  int64_t deadline = nu_now_ms() + nu_scale_ms(timeout_ms);
  for (;;) {
    int n = e2e_log_count(p, needle);
    if (n >= min || nu_now_ms() >= deadline) return n;
    usleep(10 * 1000);
  }
}

static void e2e__dump_path(const char *name, pid_t pid, const char *path, int lines) {
  e2e_proc_t tmp;
  memset(&tmp, 0, sizeof(tmp));
  snprintf(tmp.log_path, sizeof(tmp.log_path), "%s", path);
  char *text = e2e_log_text(&tmp);
  if (text == NULL) return;
  size_t len = strlen(text);
  const char *start = text + len;
  int seen = 0;
  while (start > text && seen <= lines) {
    start--;
    if (*start == '\n') seen++;
  }
  if (start > text) start++;
  fprintf(stderr, "---- last lines of %s (pid %d) log %s ----\n%s%s---- end of log ----\n", name,
          (int)(pid < 0 ? -pid : pid), path,
          start, len && text[len - 1] != '\n' ? "\n" : "");
  free(text);
}

void e2e_log_dump(const e2e_proc_t *p, int lines) { e2e__dump_path(p->name, p->pid, p->log_path, lines); }

/* ---- processes ---- */

static int e2e__write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (f == NULL) return -1;
  size_t n = strlen(text);
  int rc = fwrite(text, 1, n, f) == n ? 0 : -1;
  if (fclose(f) != 0) rc = -1;
  return rc;
}

/* SL_TEST_WRAPPER: words run before the sluice binary, split at spaces
 * ("valgrind --error-exitcode=1 ..."); scripts/valgrind sets it.  Other
 * programs (node, llama-server) run as they are. */
#define E2E_MAX_WRAP 32
static char *e2e__wrap[E2E_MAX_WRAP];
static int e2e__nwrap = -1;

static void e2e__wrapper_init(void) {
  e2e__nwrap = 0;
  const char *w = getenv("SL_TEST_WRAPPER");
  if (w == NULL || *w == '\0') return;
  char *copy = strdup(w), *save = NULL;
  for (char *t = strtok_r(copy, " ", &save); t != NULL && e2e__nwrap < E2E_MAX_WRAP - 1; t = strtok_r(NULL, " ", &save))
    e2e__wrap[e2e__nwrap++] = t;
}

/* Forks and execs argv with stdout and stderr appended to log_path. */
static pid_t e2e__spawn(char *const *argv_in, const char *log_path) {
  if (e2e__nwrap < 0) e2e__wrapper_init();
  char *wrapped[256];
  char *const *argv = argv_in;
  if (e2e__nwrap > 0 && strcmp(argv_in[0], e2e__bin) == 0) {
    int n = 0;
    for (int i = 0; i < e2e__nwrap; i++) wrapped[n++] = e2e__wrap[i];
    for (int i = 0; argv_in[i] != NULL && n < 255; i++) wrapped[n++] = argv_in[i];
    wrapped[n] = NULL;
    argv = wrapped;
  }
  int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    fprintf(stderr, "e2e: open %s: %s\n", log_path, strerror(errno));
    return -1;
  }
  pid_t parent = getpid();
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    fprintf(stderr, "e2e: fork: %s\n", strerror(errno));
    close(fd);
    return -1;
  }
  if (pid == 0) {
    /* Only async-signal-safe calls until exec. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0) dup2(nul, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    /* The child must not hold the test's sockets: a test that closes its
     * end expects the peer to see the close. */
    close_range(3, ~0U, 0);
    signal(SIGPIPE, SIG_DFL);
    /* A wrapper is found on PATH, like a shell would ("valgrind"). */
    if (argv != argv_in) execvp(argv[0], argv);
    else execv(argv[0], argv);
    static const char msg[] = "e2e: exec failed\n";
    ssize_t w = write(2, msg, sizeof(msg) - 1);
    (void)w;
    _exit(127);
  }
  close(fd);
  return pid;
}

/* Reaps p if it has exited; returns 1 if it is gone. */
static int e2e__reap(e2e_proc_t *p, int block) {
  if (p->pid <= 0) return 1;
  int st;
  pid_t r;
  do r = waitpid(p->pid, &st, block ? 0 : WNOHANG); while (r < 0 && errno == EINTR);
  if (r == p->pid || (r < 0 && errno == ECHILD)) {
    p->status = r == p->pid ? st : 0;
    e2e__kid_remove(p->pid);
    p->pid = -p->pid; /* keep the number for messages, mark as gone */
    return 1;
  }
  return 0;
}

int e2e_wait_exit(e2e_proc_t *p, int timeout_ms) {
  int64_t deadline = nu_now_ms() + nu_scale_ms(timeout_ms);
  for (;;) {
    if (e2e__reap(p, 0)) return 0;
    if (nu_now_ms() >= deadline) return -1;
    usleep(5 * 1000);
  }
}

static void e2e__describe_status(const e2e_proc_t *p) {
  if (WIFEXITED(p->status))
    fprintf(stderr, "e2e: %s (pid %d) exited with status %d\n", p->name, (int)-p->pid, WEXITSTATUS(p->status));
  else if (WIFSIGNALED(p->status))
    fprintf(stderr, "e2e: %s (pid %d) was killed by signal %d\n", p->name, (int)-p->pid, WTERMSIG(p->status));
}

int e2e_kill(e2e_proc_t *p) {
  if (p->pid > 0) {
    kill(p->pid, SIGKILL);
    e2e__reap(p, 1);
  }
  return e2e_log_check(p);
}

int e2e_stop(e2e_proc_t *p) {
  if (p->pid <= 0) {
    fprintf(stderr, "e2e: %s is not running\n", p->name);
    return -1;
  }
  /* A process a test left paused would never act on the SIGTERM: resume it
   * first.  Only then, and only if it is stopped: a SIGCONT arriving while
   * an exiting sanitizer build runs LeakSanitizer discards the SIGSTOP its
   * tracer waits for, and the process spins for ever. */
  char state = e2e__proc_state(p->pid);
  if (state == 'T' || state == 't') kill(p->pid, SIGCONT);
  kill(p->pid, SIGTERM);
  if (e2e_wait_exit(p, E2E_STOP_TIMEOUT_MS) < 0) {
    fprintf(stderr, "e2e: %s (pid %d) did not exit within %d ms of SIGTERM; killing it\n", p->name, (int)p->pid,
            E2E_STOP_TIMEOUT_MS);
    e2e_log_dump(p, 40);
    e2e_kill(p);
    e2e__any_failure = 1;
    return -1;
  }
  int ok = WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0;
  if (!ok) e2e__describe_status(p);
  if (e2e_log_check(p) < 0) ok = 0;
  if (!ok) {
    e2e_log_dump(p, 60);
    e2e__any_failure = 1;
  }
  return ok ? 0 : -1;
}

/* The scheduler state letter of pid from /proc/PID/stat ('T' when stopped),
 * or 0.  The state follows the command name, which is in parentheses and
 * may itself hold spaces or parentheses: it is the field after the last
 * ')'. */
static char e2e__proc_state(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *rp = strrchr(buf, ')');
  return rp && rp[1] == ' ' ? rp[2] : 0;
}

int e2e_pause(e2e_proc_t *p, int timeout_ms) {
  if (p->pid <= 0 || kill(p->pid, SIGSTOP) != 0) {
    fprintf(stderr, "e2e: cannot pause %s: not running\n", p->name);
    return -1;
  }
  int64_t deadline = nu_now_ms() + nu_scale_ms(timeout_ms);
  for (;;) {
    char st = e2e__proc_state(p->pid);
    if (st == 'T' || st == 't') return 0;
    if (nu_now_ms() >= deadline) {
      fprintf(stderr, "e2e: %s (pid %d) not stopped after %d ms (state '%c')\n", p->name, (int)p->pid, timeout_ms,
              st ? st : '?');
      return -1;
    }
    usleep(1000);
  }
}

int e2e_resume(e2e_proc_t *p) {
  if (p->pid <= 0 || kill(p->pid, SIGCONT) != 0) {
    fprintf(stderr, "e2e: cannot resume %s: not running\n", p->name);
    return -1;
  }
  return 0;
}

/* Parses the port after the last ':' of s (up to a space or the end). */
static int e2e__port_after_colon(const char *s) {
  const char *end = s;
  while (*end && *end != ' ' && *end != '\n' && *end != '\r') end++;
  const char *c = end;
  while (c > s && c[-1] != ':') c--;
  if (c == s) return -1;
  int port = atoi(c);
  return port > 0 && port < 65536 ? port : -1;
}

/* Waits for the listening line; fills p->port (and sim ports for serve). */
static int e2e__wait_listening(e2e_proc_t *p, const char *marker, int timeout_ms) {
  int64_t deadline = nu_now_ms() + nu_scale_ms(timeout_ms);
  for (;;) {
    char *text = e2e_log_text(p);
    const char *at = text ? strstr(text, marker) : NULL;
    if (at != NULL) {
      p->port = e2e__port_after_colon(at + strlen(marker));
      p->nsims = 0;
      const char *s = text;
      static const char sim_marker[] = "simulated engine on http://";
      while ((s = strstr(s, sim_marker)) != NULL && p->nsims < E2E_MAX_SIMS) {
        s += sizeof(sim_marker) - 1;
        p->sim_ports[p->nsims++] = e2e__port_after_colon(s);
      }
      free(text);
      if (p->port <= 0) {
        fprintf(stderr, "e2e: %s: cannot parse the port in its listening line\n", p->name);
        return -1;
      }
      return 0;
    }
    free(text);
    if (e2e__reap(p, 0)) {
      fprintf(stderr, "e2e: %s exited before listening\n", p->name);
      e2e__describe_status(p);
      return -1;
    }
    if (nu_now_ms() >= deadline) {
      fprintf(stderr, "e2e: %s did not print \"%s\" within %d ms\n", p->name, marker, timeout_ms);
      return -1;
    }
    usleep(5 * 1000);
  }
}

static int e2e__spawn_named(e2e_proc_t *p, const char *name, char *const *argv) {
  int id = e2e__nfiles++;
  snprintf(p->name, sizeof(p->name), "%s#%d", name, id);
  snprintf(p->log_path, sizeof(p->log_path), "%s/proc-%d.log", e2e__dir, id);
  p->pid = e2e__spawn(argv, p->log_path);
  if (p->pid < 0) return -1;
  e2e__kid_add(p->pid, p->log_path, p->name);
  return 0;
}

static int e2e__start(e2e_proc_t *p, const char *name, char *const *argv, const char *marker, int timeout_ms) {
  if (e2e__spawn_named(p, name, argv) < 0) return -1;
  if (e2e__wait_listening(p, marker, timeout_ms) < 0) {
    e2e_log_dump(p, 60);
    e2e_kill(p);
    e2e__any_failure = 1;
    return -1;
  }
  return 0;
}

/* Writes the config and builds the serve command line into argv[32]. */
static int e2e__serve_argv(e2e_proc_t *p, const char *config_json, const char *const *extra_args, char **argv) {
  memset(p, 0, sizeof(*p));
  snprintf(p->cfg_path, sizeof(p->cfg_path), "%s/config-%d.json", e2e__dir, e2e__nfiles);
  if (e2e__write_file(p->cfg_path, config_json) < 0) {
    fprintf(stderr, "e2e: cannot write %s\n", p->cfg_path);
    return -1;
  }
  int n = 0;
  argv[n++] = (char *)e2e__bin;
  argv[n++] = "serve";
  argv[n++] = "--config";
  argv[n++] = p->cfg_path;
  argv[n++] = "--listen";
  argv[n++] = "127.0.0.1:0";
  for (int i = 0; extra_args && extra_args[i] && n < 31; i++) argv[n++] = (char *)extra_args[i];
  argv[n] = NULL;
  return 0;
}

int e2e_serve_start(e2e_proc_t *p, const char *config_json, const char *const *extra_args) {
  char *argv[32];
  if (e2e__serve_argv(p, config_json, extra_args, argv) < 0) return -1;
  /* "sluice <version> listening on http://127.0.0.1:PORT" */
  return e2e__start(p, "sluice", argv, " listening on http://", E2E_START_TIMEOUT_MS);
}

int e2e_serve_spawn(e2e_proc_t *p, const char *config_json, const char *const *extra_args) {
  char *argv[32];
  if (e2e__serve_argv(p, config_json, extra_args, argv) < 0) return -1;
  return e2e__spawn_named(p, "sluice", argv);
}

int e2e_sim_start(e2e_proc_t *p, const char *const *args) {
  memset(p, 0, sizeof(*p));
  char *argv[64];
  int n = 0;
  argv[n++] = (char *)e2e__bin;
  argv[n++] = "sim-engine";
  argv[n++] = "--listen";
  argv[n++] = "127.0.0.1:0";
  for (int i = 0; args && args[i] && n < 63; i++) argv[n++] = (char *)args[i];
  argv[n] = NULL;
  /* "sim-engine listening on HOST:PORT" */
  return e2e__start(p, "sim-engine", argv, "sim-engine listening on ", E2E_START_TIMEOUT_MS);
}

int e2e_proc_start(e2e_proc_t *p, const char *name, const char *const *argv, const char *marker, int timeout_ms) {
  memset(p, 0, sizeof(*p));
  char *args[64];
  int n = 0;
  for (; argv[n] != NULL && n < 63; n++) args[n] = (char *)argv[n];
  args[n] = NULL;
  return e2e__start(p, name, args, marker, timeout_ms);
}

void e2e_after_test(const char *name, int failed, int64_t elapsed_ms) {
  if (failed) e2e__any_failure = 1;
  for (int i = 0; i < E2E_MAX_KIDS; i++) {
    if (e2e__kids[i].pid <= 0) continue;
    if (failed) e2e__dump_path(e2e__kids[i].name, e2e__kids[i].pid, e2e__kids[i].log_path, 40);
    else fprintf(stderr, "e2e: %s left %s (pid %d) running; killing it\n", name, e2e__kids[i].name,
                 (int)e2e__kids[i].pid);
    kill(e2e__kids[i].pid, SIGKILL);
    waitpid(e2e__kids[i].pid, NULL, 0);
    e2e__kids[i].pid = 0;
  }
  fprintf(stderr, "     %s took %lld ms\n", name, (long long)elapsed_ms);
}

/* ---- HTTP ---- */

nu_conn_t *e2e_conn_open(int port, int rcvbuf) {
  int fd = nu_connect_rcvbuf(port, rcvbuf);
  if (fd < 0) return NULL;
  nu_conn_t *c = calloc(1, sizeof(*c));
  nu_conn_init(c, fd);
  return c;
}

void e2e_conn_close(nu_conn_t *c) {
  if (c == NULL) return;
  if (c->fd >= 0) close(c->fd);
  free(c);
}

int e2e_http_on(nu_conn_t *c, const char *method, const char *path, const char *headers, const char *body,
                nu_resp_t *out, int timeout_ms) {
  memset(out, 0, sizeof(*out));
  if (nu_send_request(c->fd, method, path, headers, body) < 0) return -1;
  int rc = nu_read_response(c, out, timeout_ms);
  if (rc < 0 || out->status == 0) {
    nu_resp_free(out);
    return -1;
  }
  return out->status;
}

int e2e_http(int port, const char *method, const char *path, const char *headers, const char *body,
             nu_resp_t *out, int timeout_ms) {
  memset(out, 0, sizeof(*out));
  nu_conn_t *c = e2e_conn_open(port, 0);
  if (c == NULL) return -1;
  int rc = e2e_http_on(c, method, path, headers, body, out, timeout_ms);
  e2e_conn_close(c);
  return rc;
}

cJSON *e2e_get_json(int port, const char *path, int *status) {
  nu_resp_t r;
  int st = e2e_http(port, "GET", path, NULL, NULL, &r, 5000);
  if (status) *status = st;
  if (st < 0) return NULL;
  cJSON *doc = cJSON_ParseWithLength(r.body, r.body_len);
  nu_resp_free(&r);
  return doc;
}

static int64_t e2e__num(const cJSON *o, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

int64_t e2e_counter(int port, const char *name) {
  cJSON *h = e2e_get_json(port, "/health", NULL);
  int64_t v = h ? e2e__num(cJSON_GetObjectItemCaseSensitive(h, "counters"), name) : -1;
  cJSON_Delete(h);
  return v;
}

int64_t e2e_health_num(int port, const char *name) {
  cJSON *h = e2e_get_json(port, "/health", NULL);
  int64_t v = h ? e2e__num(h, name) : -1;
  cJSON_Delete(h);
  return v;
}

int64_t e2e_tenant_num(int port, const char *tenant, const char *name) {
  cJSON *h = e2e_get_json(port, "/health", NULL);
  int64_t v = -1;
  const cJSON *t;
  cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(h, "tenants")) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(t, "name");
    if (cJSON_IsString(n) && strcmp(n->valuestring, tenant) == 0) v = e2e__num(t, name);
  }
  cJSON_Delete(h);
  return v;
}

int64_t e2e_sim_stat(int sim_port, const char *name) {
  cJSON *s = e2e_get_json(sim_port, "/sim/stats", NULL);
  int64_t v = s ? e2e__num(s, name) : -1;
  cJSON_Delete(s);
  return v;
}

int e2e_sim_control(int sim_port, const char *body) {
  nu_resp_t r;
  int st = e2e_http(sim_port, "POST", "/sim/control", NULL, body, &r, 5000);
  nu_resp_free(&r);
  return st;
}

int e2e_wait_ready(int port, int want_status, int timeout_ms) {
  int64_t deadline = nu_now_ms() + nu_scale_ms(timeout_ms);
  int last = -1;
  for (;;) {
    nu_resp_t r;
    last = e2e_http(port, "GET", "/ready", NULL, NULL, &r, 2000);
    nu_resp_free(&r);
    if (last == want_status) return 0;
    if (nu_now_ms() >= deadline) break;
    usleep(20 * 1000);
  }
  fprintf(stderr, "e2e: GET /ready on port %d still answers %d after %d ms (want %d)\n", port, last, timeout_ms,
          want_status);
  return -1;
}

/* Endpoints listed in /health, and how many are ready with no cooldown. */
static int e2e__endpoints(int port, int *ready) {
  cJSON *h = e2e_get_json(port, "/health", NULL);
  int n = 0;
  *ready = 0;
  const cJSON *pool, *e;
  cJSON_ArrayForEach(pool, cJSON_GetObjectItemCaseSensitive(h, "pools")) {
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(pool, "endpoints")) {
      n++;
      if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "ready")) &&
          cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "cooldown_ms")) == 0)
        (*ready)++;
    }
  }
  cJSON_Delete(h);
  return n;
}

int e2e_wait_endpoints_ready(int port, int n, int timeout_ms) {
  int64_t deadline = nu_now_ms() + nu_scale_ms(timeout_ms);
  int total, ready;
  for (;;) {
    total = e2e__endpoints(port, &ready);
    if (total == n && ready == n) return 1;
    if (nu_now_ms() >= deadline) break;
    usleep(10 * 1000);
  }
  fprintf(stderr, "e2e: /health lists %d endpoints, %d ready and out of cooldown, after %d ms (want %d)\n", total,
          ready, timeout_ms, n);
  return 0;
}

static int64_t e2e__wait_num(int port, const char *name, int64_t min, int timeout_ms, int sim) {
  int64_t deadline = nu_now_ms() + nu_scale_ms(timeout_ms);
  int64_t v;
  for (;;) {
    v = sim ? e2e_sim_stat(port, name) : e2e_counter(port, name);
    if (v >= min) return v;
    if (nu_now_ms() >= deadline) break;
    usleep(10 * 1000);
  }
  fprintf(stderr, "e2e: %s %s is %lld after %d ms (want >= %lld)\n", sim ? "sim stat" : "counter", name,
          (long long)v, timeout_ms, (long long)min);
  return -1;
}

int64_t e2e_wait_counter(int port, const char *name, int64_t min, int timeout_ms) {
  return e2e__wait_num(port, name, min, timeout_ms, 0);
}

int64_t e2e_wait_sim_stat(int sim_port, const char *name, int64_t min, int timeout_ms) {
  return e2e__wait_num(sim_port, name, min, timeout_ms, 1);
}

int e2e_is_error_body(const char *body, const char *mention) {
  cJSON *doc = body ? cJSON_Parse(body) : NULL;
  const cJSON *err = cJSON_GetObjectItemCaseSensitive(doc, "error");
  const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(err, "type");
  const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
  int ok = cJSON_IsObject(err) && cJSON_IsString(msg) && msg->valuestring[0] && cJSON_IsString(type) &&
           (cJSON_IsString(code) || cJSON_IsNull(code));
  if (!ok) {
    fprintf(stderr, "e2e: not an OpenAI-shaped error body: %.400s\n", body ? body : "(none)");
  } else if (mention != NULL && strstr(msg->valuestring, mention) == NULL &&
             !(cJSON_IsString(code) && strstr(code->valuestring, mention) != NULL)) {
    fprintf(stderr, "e2e: error body does not mention \"%s\": %.400s\n", mention, body);
    ok = 0;
  }
  cJSON_Delete(doc);
  return ok;
}

/* ---- SSE ---- */

enum { E2E_CS_SIZE, E2E_CS_DATA, E2E_CS_DATA_END, E2E_CS_TRAILER, E2E_CS_DONE };

void e2e_sse_init(e2e_sse_t *s, const char *expect_object) {
  memset(s, 0, sizeof(*s));
  s->expect_object = expect_object;
  s->usage_completion_tokens = -1;
  s->kinds_cap = 64;
  s->kinds = calloc(1, s->kinds_cap);
  s->content_cap = 256;
  s->content = calloc(1, s->content_cap);
}

void e2e_sse_free(e2e_sse_t *s) {
  free(s->line);
  free(s->data);
  free(s->kinds);
  free(s->content);
  s->line = s->data = s->kinds = s->content = NULL;
}

static void e2e__grow(char **p, size_t *cap, size_t need) {
  if (need <= *cap) return;
  size_t c = *cap ? *cap : 64;
  while (c < need) c *= 2;
  *p = realloc(*p, c);
  *cap = c;
}

static void e2e__copy_str(char *dst, size_t cap, const cJSON *v) {
  if (cJSON_IsString(v)) snprintf(dst, cap, "%s", v->valuestring);
  else dst[0] = '\0';
}

static char e2e__classify(e2e_sse_t *s, const char *payload) {
  if (strcmp(payload, "[DONE]") == 0) {
    s->ndone++;
    return E2E_EV_DONE;
  }
  cJSON *doc = cJSON_Parse(payload);
  if (doc == NULL || !cJSON_IsObject(doc)) {
    cJSON_Delete(doc);
    s->nbad++;
    fprintf(stderr, "e2e: SSE data is not a JSON object: %.200s\n", payload);
    return E2E_EV_BAD;
  }
  char kind = E2E_EV_OTHER;
  const cJSON *err = cJSON_GetObjectItemCaseSensitive(doc, "error");
  if (err != NULL) {
    s->nerror++;
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(err, "type");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
    e2e__copy_str(s->error_message, sizeof(s->error_message), msg);
    e2e__copy_str(s->error_type, sizeof(s->error_type), type);
    e2e__copy_str(s->error_code, sizeof(s->error_code), code);
    s->error_shape_ok = cJSON_IsObject(err) && cJSON_IsString(msg) && cJSON_IsString(type) &&
                        (cJSON_IsString(code) || cJSON_IsNull(code));
    cJSON_Delete(doc);
    return E2E_EV_ERROR;
  }
  const cJSON *obj = cJSON_GetObjectItemCaseSensitive(doc, "object");
  if (s->expect_object != NULL && !(cJSON_IsString(obj) && strcmp(obj->valuestring, s->expect_object) == 0)) {
    if (s->wrong_object++ == 0) fprintf(stderr, "e2e: chunk with an unexpected object: %.200s\n", payload);
  }
  const cJSON *choices = cJSON_GetObjectItemCaseSensitive(doc, "choices");
  const cJSON *usage = cJSON_GetObjectItemCaseSensitive(doc, "usage");
  if (cJSON_IsArray(choices) && cJSON_GetArraySize(choices) == 0) {
    if (cJSON_IsObject(usage)) {
      kind = E2E_EV_USAGE;
      s->nusage++;
      s->usage_completion_tokens = e2e__num(usage, "completion_tokens");
    }
  } else if (cJSON_IsArray(choices)) {
    const cJSON *c0 = cJSON_GetArrayItem(choices, 0);
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(c0, "delta");
    const cJSON *text = delta ? cJSON_GetObjectItemCaseSensitive(delta, "content")
                              : cJSON_GetObjectItemCaseSensitive(c0, "text");
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(delta, "role");
    const cJSON *fin = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
    if (cJSON_IsString(text) && text->valuestring[0] != '\0') {
      kind = E2E_EV_CONTENT;
      s->ncontent++;
      size_t n = strlen(text->valuestring);
      e2e__grow(&s->content, &s->content_cap, s->content_len + n + 1);
      memcpy(s->content + s->content_len, text->valuestring, n + 1);
      s->content_len += n;
    } else if (cJSON_IsString(fin)) {
      kind = E2E_EV_FINISH;
      s->nfinish++;
      e2e__copy_str(s->finish_reason, sizeof(s->finish_reason), fin);
    } else if (cJSON_IsString(role)) {
      kind = E2E_EV_ROLE;
      s->nrole++;
    }
  }
  if (kind == E2E_EV_OTHER) s->nother++;
  cJSON_Delete(doc);
  return kind;
}

static void e2e__dispatch(e2e_sse_t *s) {
  if (!s->has_data) return;
  s->has_data = 0;
  e2e__grow(&s->data, &s->data_cap, s->data_len + 1);
  s->data[s->data_len] = '\0';
  s->data_len = 0;
  if (s->ndone > 0) s->data_after_done++;
  char kind = e2e__classify(s, s->data);
  e2e__grow(&s->kinds, &s->kinds_cap, (size_t)s->nevents + 2);
  s->kinds[s->nevents++] = kind;
  s->kinds[s->nevents] = '\0';
}

static void e2e__line(e2e_sse_t *s, const char *l, size_t n) {
  if (n > 0 && l[n - 1] == '\r') n--;
  if (n == 0) {
    e2e__dispatch(s);
    return;
  }
  if (l[0] == ':') {
    s->ncomments++;
    if (s->nevents == 0 && !s->has_data) s->comments_before_data++;
    return;
  }
  if (n >= 5 && memcmp(l, "data:", 5) == 0) {
    const char *v = l + 5;
    size_t vn = n - 5;
    if (vn > 0 && *v == ' ') {
      v++;
      vn--;
    }
    e2e__grow(&s->data, &s->data_cap, s->data_len + vn + 2);
    if (s->has_data) s->data[s->data_len++] = '\n';
    memcpy(s->data + s->data_len, v, vn);
    s->data_len += vn;
    s->has_data = 1;
    return;
  }
  if (n >= 6 && memcmp(l, "event:", 6) == 0) {
    s->event_lines++;
    return;
  }
  s->other_lines++;
  fprintf(stderr, "e2e: unexpected SSE line: %.*s\n", (int)(n > 200 ? 200 : n), l);
}

/* De-chunked body bytes: split into lines. */
static void e2e__body(e2e_sse_t *s, const char *p, size_t n) {
  s->body_bytes += n;
  while (n > 0) {
    const char *nl = memchr(p, '\n', n);
    size_t take = nl ? (size_t)(nl - p) : n;
    if (s->line_len == 0 && nl != NULL) {
      e2e__line(s, p, take); /* the common case: a whole line in the buffer */
    } else {
      e2e__grow(&s->line, &s->line_cap, s->line_len + take + 1);
      memcpy(s->line + s->line_len, p, take);
      s->line_len += take;
      if (nl != NULL) {
        e2e__line(s, s->line, s->line_len);
        s->line_len = 0;
      }
    }
    if (nl == NULL) return;
    p += take + 1;
    n -= take + 1;
  }
}

size_t e2e_sse_feed(e2e_sse_t *s, const char *p, size_t n) {
  if (!s->chunked) {
    e2e__body(s, p, n);
    return n;
  }
  size_t i = 0;
  while (i < n && s->cstate != E2E_CS_DONE) {
    switch (s->cstate) {
      case E2E_CS_SIZE:
      case E2E_CS_TRAILER: {
        char ch = p[i++];
        if (ch != '\n') {
          if (s->cllen + 1 < sizeof(s->cline)) s->cline[s->cllen++] = ch;
          break;
        }
        if (s->cllen > 0 && s->cline[s->cllen - 1] == '\r') s->cllen--;
        s->cline[s->cllen] = '\0';
        size_t len = s->cllen;
        s->cllen = 0;
        if (s->cstate == E2E_CS_TRAILER) {
          if (len == 0) {
            s->cstate = E2E_CS_DONE;
            s->body_ended = 1;
          }
          break;
        }
        char *end;
        unsigned long sz = strtoul(s->cline, &end, 16);
        if (end == s->cline) {
          s->framing_errors++;
          fprintf(stderr, "e2e: bad chunk size line: %s\n", s->cline);
        }
        if (sz == 0) {
          s->cstate = E2E_CS_TRAILER;
        } else {
          s->crem = sz;
          s->cstate = E2E_CS_DATA;
        }
        break;
      }
      case E2E_CS_DATA: {
        size_t take = n - i < s->crem ? n - i : s->crem;
        e2e__body(s, p + i, take);
        i += take;
        s->crem -= take;
        if (s->crem == 0) s->cstate = E2E_CS_DATA_END;
        break;
      }
      case E2E_CS_DATA_END: {
        char ch = p[i++];
        if (ch == '\n') {
          s->cstate = E2E_CS_SIZE;
        } else if (ch != '\r') {
          s->framing_errors++;
        }
        break;
      }
    }
  }
  return i;
}

int e2e_sse_read(nu_conn_t *c, e2e_sse_t *s, int timeout_ms) {
  int64_t deadline = nu_now_ms() + nu_scale_ms(timeout_ms);
  for (;;) {
    if (s->body_ended) return 0;
    if (s->stop_after_content > 0 && s->ncontent >= s->stop_after_content) return 1;
    if (c->start < c->end) {
      c->start += e2e_sse_feed(s, c->buf + c->start, c->end - c->start);
      continue;
    }
    int r = nu_fill(c, deadline);
    if (r == 0 || r == -1) {
      s->eof = 1;
      return -1;
    }
    if (r < 0) return -2;
  }
}

int e2e_sse_read_comments(nu_conn_t *c, e2e_sse_t *s, long n, int timeout_ms) {
  int64_t deadline = nu_now_ms() + nu_scale_ms(timeout_ms);
  for (;;) {
    if (s->ncomments >= n) return 0;
    if (s->body_ended) return -1;
    if (c->start < c->end) {
      c->start += e2e_sse_feed(s, c->buf + c->start, c->end - c->start);
      continue;
    }
    int r = nu_fill(c, deadline);
    if (r == 0 || r == -1) {
      s->eof = 1;
      return -1;
    }
    if (r < 0) return -2;
  }
}

long e2e_sse_read_some(nu_conn_t *c, e2e_sse_t *s, size_t max, int timeout_ms) {
  if (s->body_ended) return 0;
  if (c->start < c->end) {
    size_t n = c->end - c->start;
    if (n > max) n = max;
    size_t used = e2e_sse_feed(s, c->buf + c->start, n);
    c->start += used;
    return (long)used;
  }
  char tmp[65536];
  if (max > sizeof(tmp)) max = sizeof(tmp);
  ssize_t n = nu_recv(c->fd, tmp, max, nu_scale_ms(timeout_ms));
  if (n == -2) return -2;
  if (n <= 0) {
    s->eof = 1;
    return 0;
  }
  size_t used = e2e_sse_feed(s, tmp, (size_t)n);
  if (used < (size_t)n) {
    /* Bytes past the end of the body belong to the next response. */
    memcpy(c->buf, tmp + used, (size_t)n - used);
    c->start = 0;
    c->end = (size_t)n - used;
  }
  return (long)n;
}

int e2e_sse_start(nu_conn_t *c, const char *path, const char *headers, const char *body, nu_resp_t *head,
                  e2e_sse_t *s, const char *expect_object, int timeout_ms) {
  memset(head, 0, sizeof(*head));
  e2e_sse_init(s, expect_object);
  if (nu_send_request(c->fd, "POST", path, headers, body) < 0 || nu_read_head(c, head, timeout_ms) < 0) {
    fprintf(stderr, "e2e: no response head for POST %s\n", path);
    return -1;
  }
  s->chunked = head->chunked;
  return head->status;
}

nu_conn_t *e2e_sse_open(int port, const char *path, const char *headers, const char *body, nu_resp_t *head,
                        e2e_sse_t *s, const char *expect_object, int timeout_ms) {
  nu_conn_t *c = e2e_conn_open(port, 0);
  if (c == NULL) {
    memset(head, 0, sizeof(*head));
    e2e_sse_init(s, expect_object);
    fprintf(stderr, "e2e: cannot connect to port %d\n", port);
    return NULL;
  }
  if (e2e_sse_start(c, path, headers, body, head, s, expect_object, timeout_ms) < 0) {
    e2e_conn_close(c);
    return NULL;
  }
  return c;
}

int e2e_stream(int port, const char *path, const char *headers, const char *body, nu_resp_t *head,
               e2e_sse_t *s, const char *expect_object, int timeout_ms) {
  nu_conn_t *c = e2e_sse_open(port, path, headers, body, head, s, expect_object, timeout_ms);
  if (c == NULL) return -1;
  const char *ct = nu_header(head, "content-type");
  if (ct != NULL && strncmp(ct, "text/event-stream", 17) == 0) {
    s->read_rc = e2e_sse_read(c, s, timeout_ms);
  } else if (nu_read_body(c, head, timeout_ms, NULL, NULL) < 0) {
    fprintf(stderr, "e2e: the %d answer's body did not complete\n", head->status);
  }
  e2e_conn_close(c);
  return head->status;
}

int e2e_sse_kinds_are(const e2e_sse_t *s, int role, long n, int usage) {
  size_t len = (size_t)n + 4;
  char *want = malloc(len + 1);
  size_t k = 0;
  if (role) want[k++] = E2E_EV_ROLE;
  for (long i = 0; i < n; i++) want[k++] = E2E_EV_CONTENT;
  want[k++] = E2E_EV_FINISH;
  if (usage) want[k++] = E2E_EV_USAGE;
  want[k++] = E2E_EV_DONE;
  want[k] = '\0';
  const char *got = s->kinds ? s->kinds : "";
  size_t i = 0;
  while (want[i] && want[i] == got[i]) i++;
  int ok = want[i] == '\0' && got[i] == '\0';
  if (!ok)
    fprintf(stderr,
            "e2e: SSE events differ at event %zu: want '%c', got '%c' (%ld events, %ld content; "
            "want %zu events; around: \"%.40s\")\n",
            i, want[i] ? want[i] : '$', got[i] ? got[i] : '$', s->nevents, s->ncontent, k,
            got + (i > 10 ? i - 10 : 0));
  free(want);
  return ok;
}

int e2e_sse_kinds_eq(const e2e_sse_t *s, const char *want) {
  const char *got = s->kinds ? s->kinds : "";
  if (strcmp(got, want) == 0) return 1;
  fprintf(stderr, "e2e: SSE events: want \"%s\", got \"%.200s\"\n", want, got);
  return 0;
}

char *e2e_chat_body(char *buf, size_t cap, const char *model, int stream, const char *extra) {
  snprintf(buf, cap,
           "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"Say something.\"}],"
           "\"stream\":%s%s}",
           model, stream ? "true" : "false", extra ? extra : "");
  return buf;
}

char *e2e_completion_body(char *buf, size_t cap, const char *model, int stream, const char *extra) {
  snprintf(buf, cap, "{\"model\":\"%s\",\"prompt\":\"Once upon a time\",\"stream\":%s%s}", model,
           stream ? "true" : "false", extra ? extra : "");
  return buf;
}

int e2e_admin(const char *sock, const char *cmd, char *out, size_t cap) {
  out[0] = '\0';
  struct sockaddr_un a;
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  if (strlen(sock) >= sizeof(a.sun_path)) return -1;
  memcpy(a.sun_path, sock, strlen(sock) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
    if (fd >= 0) close(fd);
    fprintf(stderr, "e2e_admin: cannot reach %s\n", sock);
    return -1;
  }
  char line[512];
  snprintf(line, sizeof(line), "%s\n", cmd);
  nu_send_str(fd, line);
  size_t n = 0;
  int64_t deadline = nu_now_ms() + 30000;
  while (n + 1 < cap && nu_now_ms() < deadline) {
    ssize_t r = nu_recv(fd, out + n, cap - 1 - n, 200);
    if (r > 0) {
      n += (size_t)r;
      if (memchr(out, '\n', n)) break;
    } else if (r == 0 || r == -1) {
      break;
    }
  }
  out[n] = '\0';
  close(fd);
  return strncmp(out, "ok", 2) == 0 ? 0 : 1;
}
