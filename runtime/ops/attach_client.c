/* attach_client.c: `sluice attach` (see attach_client.h). */
#include "runtime/ops/attach_client.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct {
  int fd;
  char buf[65536];        /* bytes read from the socket, not yet consumed */
  size_t start, end;
} sl__conn_t;

/* Fills the buffer when it is empty.  Returns 0, or -1 at EOF or error. */
static int sl__fill(sl__conn_t *c) {
  if (c->start < c->end) return 0;
  for (;;) {
    ssize_t n = read(c->fd, c->buf, sizeof(c->buf));
    if (n > 0) {
      c->start = 0;
      c->end = (size_t)n;
      return 0;
    }
    if (n < 0 && errno == EINTR) continue;
    return -1;
  }
}

/* Reads one frame header "<status> <length>\n".  Returns 0 with status
 * and *len, 1 when the line is not a frame (then it is in status: an
 * "error: ..." line), or -1 at EOF. */
static int sl__read_head(sl__conn_t *c, char *status, size_t cap, size_t *len) {
  char line[1024];
  size_t n = 0;
  for (;;) {
    if (sl__fill(c) < 0) return -1;
    char ch = c->buf[c->start++];
    if (ch == '\n') break;
    if (n + 1 < sizeof(line)) line[n++] = ch;
  }
  line[n] = '\0';
  char word[16];
  size_t l;
  if (sscanf(line, "%15s %zu", word, &l) == 2 &&
      (strcmp(word, "ok") == 0 || strcmp(word, "more") == 0 || strcmp(word, "error") == 0)) {
    snprintf(status, cap, "%s", word);
    *len = l;
    return 0;
  }
  snprintf(status, cap, "%s", line);
  return 1;
}

/* Copies the next len bytes of the connection to f (NULL: discard).
 * Returns 0 or -1 at EOF. */
static int sl__copy_text(sl__conn_t *c, size_t len, FILE *f) {
  while (len > 0) {
    if (sl__fill(c) < 0) return -1;
    size_t n = c->end - c->start;
    if (n > len) n = len;
    if (f) fwrite(c->buf + c->start, 1, n, f);
    c->start += n;
    len -= n;
  }
  return 0;
}

static int sl__send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void sl__attach_usage(FILE *f) {
  fprintf(f,
          "usage: sluice attach [-e CHUNK]... [--worker I] [SOCKET]\n"
          "  A Lua prompt inside the running daemon, over its admin socket (the\n"
          "  argument, else $SLUICE_ADMIN_SOCKET, else %s).  Reads stdin (a\n"
          "  script may be piped in) or runs the -e chunks; help() lists the helpers.\n"
          "  --worker I  with \"workers\" > 1: worker I's socket, SOCKET.I (SOCKET itself is\n"
          "              the supervisor's, which has no Lua: attaching there shows its status)\n",
          SL_ATTACH_DEFAULT_SOCKET);
}

/* The client's state across lines. */
typedef struct {
  sl__conn_t conn;
  int interactive;
  int more;               /* the last line left the chunk incomplete */
  int failures;
} sl__client_t;

/* Sends one line and handles its frame.  Returns 0, or -1 when the
 * connection is gone. */
static int sl__one_line(sl__client_t *cl, const char *line, size_t n) {
  sl__conn_t *c = &cl->conn;
  if (sl__send_all(c->fd, line, n) < 0 || sl__send_all(c->fd, "\n", 1) < 0) return -1;
  char status[1024];
  size_t len = 0;
  int rc = sl__read_head(c, status, sizeof(status), &len);
  if (rc < 0) return -1;
  if (rc > 0) { /* not a frame: the daemon answered with a plain line */
    fprintf(stderr, "%s\n", status);
    cl->failures++;
    return 0;
  }
  cl->more = strcmp(status, "more") == 0;
  if (strcmp(status, "error") == 0) {
    fflush(stdout);
    if (sl__copy_text(c, len, stderr) < 0) return -1;
    fputc('\n', stderr);
    fflush(stderr);
    cl->failures++;
  } else {
    if (sl__copy_text(c, len, stdout) < 0) return -1;
    if (len > 0) fputc('\n', stdout);
    fflush(stdout);
  }
  return 0;
}

/* The socket is a supervisor's (runtime/cli/supervise.h): it has no Lua.
 * Shows its status and says how to reach a worker.  Returns 0, or 2 when
 * chunks were given (they could not run) or the status is not had. */
static int sl__supervisor_status(const char *path, const char *refusal, int nchunks);

int sl_attach_client_main(int argc, char **argv) {
  const char *path = NULL;
  const char *chunks[64];
  int nchunks = 0, worker = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      sl__attach_usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "-e") == 0 && i + 1 < argc) {
      if (nchunks == (int)(sizeof(chunks) / sizeof(chunks[0]))) {
        fprintf(stderr, "sluice attach: too many -e chunks\n");
        return 2;
      }
      chunks[nchunks++] = argv[++i];
    } else if (strcmp(argv[i], "--worker") == 0 && i + 1 < argc) {
      char *end;
      long w = strtol(argv[++i], &end, 10);
      if (*end != '\0' || w < 1 || w > 64) {
        fprintf(stderr, "sluice attach: --worker: expected a worker number from 1 to 64\n");
        return 2;
      }
      worker = (int)w;
    } else if (argv[i][0] != '-' && path == NULL) {
      path = argv[i];
    } else {
      fprintf(stderr, "sluice attach: unknown or incomplete option '%s'\n", argv[i]);
      sl__attach_usage(stderr);
      return 2;
    }
  }
  if (path == NULL) path = getenv("SLUICE_ADMIN_SOCKET");
  if (path == NULL || path[0] == '\0') path = SL_ATTACH_DEFAULT_SOCKET;
  char wpath[sizeof(((struct sockaddr_un *)0)->sun_path) + 16];
  if (worker > 0) {
    snprintf(wpath, sizeof(wpath), "%s.%d", path, worker);
    path = wpath;
  }
  signal(SIGPIPE, SIG_IGN);

  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(addr.sun_path)) {
    fprintf(stderr, "sluice attach: socket path too long: %s\n", path);
    return 2;
  }
  memcpy(addr.sun_path, path, strlen(path) + 1);
  static sl__client_t cl; /* the 64 KiB read buffer stays off the stack */
  memset(&cl, 0, sizeof(cl));
  cl.conn.fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (cl.conn.fd < 0 || connect(cl.conn.fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
    fprintf(stderr, "sluice attach: cannot connect to %s: %s\n", path, strerror(errno));
    if (cl.conn.fd >= 0) close(cl.conn.fd);
    return 2;
  }
  cl.interactive = nchunks == 0 && isatty(0);

  /* `lua`: the answer is a frame with the banner, or an error line. */
  char status[1024];
  size_t len = 0;
  int rc = sl__send_all(cl.conn.fd, "lua\n", 4) < 0 ? -1 : sl__read_head(&cl.conn, status, sizeof(status), &len);
  if (rc == 1 && strncmp(status, "error: supervisor", 17) == 0) {
    close(cl.conn.fd);
    return sl__supervisor_status(path, status, nchunks);
  }
  if (rc != 0 || strcmp(status, "ok") != 0) {
    fprintf(stderr, "sluice attach: %s: %s\n", path, rc < 0 ? "the daemon closed the connection" : status);
    close(cl.conn.fd);
    return 2;
  }
  if (sl__copy_text(&cl.conn, len, cl.interactive ? stdout : NULL) < 0) {
    fprintf(stderr, "sluice attach: %s: the daemon closed the connection\n", path);
    close(cl.conn.fd);
    return 2;
  }
  if (cl.interactive) fputc('\n', stdout);

  int gone = 0;
  if (nchunks > 0) {
    /* Each -e chunk is sent a line at a time, like typed input. */
    for (int i = 0; i < nchunks && !gone; i++) {
      const char *p = chunks[i];
      for (;;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (sl__one_line(&cl, p, n) < 0) {
          gone = 1;
          break;
        }
        if (nl == NULL) break;
        p = nl + 1;
      }
    }
  } else {
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
      if (cl.interactive) {
        fputs(cl.more ? "    ..> " : "sluice> ", stdout);
        fflush(stdout);
      }
      ssize_t n = getline(&line, &cap, stdin);
      if (n < 0) break;
      while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
      if (sl__one_line(&cl, line, (size_t)n) < 0) {
        gone = 1;
        break;
      }
    }
    free(line);
    if (cl.interactive && !gone) fputc('\n', stdout);
  }
  close(cl.conn.fd);
  if (gone) {
    fprintf(stderr, "sluice attach: the daemon closed the connection\n");
    return 2;
  }
  if (cl.more) {
    fprintf(stderr, "sluice attach: incomplete chunk at the end of input\n");
    cl.failures++;
  }
  return cl.failures && !cl.interactive ? 1 : 0;
}

static int sl__supervisor_status(const char *path, const char *refusal, int nchunks) {
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
  static sl__conn_t c; /* the 64 KiB read buffer stays off the stack */
  memset(&c, 0, sizeof(c));
  c.fd = socket(AF_UNIX, SOCK_STREAM, 0);
  int ok = c.fd >= 0 && connect(c.fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
           sl__send_all(c.fd, "status\n", 7) == 0;
  /* The status is one line; sl__read_head hands back a line that is not a
   * frame as it is (up to 1 KiB), so it is read here byte by byte. */
  size_t n = 0;
  char *line = NULL;
  if (ok) {
    size_t cap = 4096;
    line = malloc(cap);
    for (;;) {
      if (line == NULL || sl__fill(&c) < 0) {
        ok = 0;
        break;
      }
      char ch = c.buf[c.start++];
      if (ch == '\n') break;
      if (n + 1 >= cap) {
        char *bigger = realloc(line, cap * 2);
        if (bigger == NULL) {
          ok = 0;
          break;
        }
        line = bigger;
        cap *= 2;
      }
      line[n++] = ch;
    }
  }
  if (c.fd >= 0) close(c.fd);
  if (ok) {
    fwrite(line, 1, n, stdout);
    fputc('\n', stdout);
    fflush(stdout);
  }
  free(line);
  fprintf(stderr,
          "sluice attach: %s is the supervisor's socket: it has no Lua prompt (%s).\n"
          "  For worker I's Lua prompt: sluice attach --worker I %s\n",
          path, refusal + 7, path);
  return ok && nchunks == 0 ? 0 : 2;
}
