/* redis_server.h: a real redis-server for the unit tests, started as a
 * child on a unix socket with persistence off.
 *
 *   rs_t rs;
 *   rs_need();                       exits 77 without redis-server (1 under CI=true)
 *   rs_start(&rs, "/tmp/x/r.sock", 0) the server (port 0: unix socket only;
 *                                    rs_free_port() for a TCP port too)
 *   ... rs_kill / rs_start again (same socket), rs_pause / rs_resume ...
 *   rs_stop(&rs);
 *
 * rs_start returns once the socket accepts a connection (bounded wait).
 * Header-only (static functions), for test programs only.
 */
#ifndef SL_TEST_REDIS_SERVER_H
#define SL_TEST_REDIS_SERVER_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  pid_t pid;         /* > 0 while running */
  char sock[108];    /* its unix socket */
  int port;          /* its TCP port (0: none) */
} rs_t;

static char rs__bin[512];

/* Finds redis-server, or exits: 77 (skipped), or 1 under CI=true. */
static inline void rs_need(void) {
  FILE *f = popen("command -v redis-server", "r");
  if (f != NULL) {
    if (fgets(rs__bin, sizeof(rs__bin), f) == NULL) rs__bin[0] = '\0';
    pclose(f);
  }
  rs__bin[strcspn(rs__bin, "\n")] = '\0';
  if (rs__bin[0] == '/') return;
  fprintf(stderr, "redis-server is not installed (scripts/setup --real-engine installs it)\n");
  const char *ci = getenv("CI");
  if (ci != NULL && strcmp(ci, "true") == 0) {
    fprintf(stderr, "CI=true: the Redis tests must run in CI, so this is a failure\n");
    exit(1);
  }
  exit(77);
}

/* A free TCP port on 127.0.0.1 (-1 when none). */
static inline int rs_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return ntohs(a.sin_port);
}

static inline int rs__tcp_connectable(int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  if (fd >= 0) close(fd);
  return ok;
}

static inline int rs__connectable(const char *path) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  close(fd);
  return ok;
}

/* Starts redis-server on unix socket `sock` (and TCP `port` when > 0).
 * Returns 0 once it accepts connections, -1 when it did not within 30 s. */
static inline int rs_start(rs_t *rs, const char *sock, int port) {
  memset(rs, 0, sizeof(*rs));
  snprintf(rs->sock, sizeof(rs->sock), "%s", sock);
  rs->port = port;
  unlink(sock);
  char portbuf[16];
  snprintf(portbuf, sizeof(portbuf), "%d", port);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int nul = open("/dev/null", O_RDWR);
    if (nul >= 0) {
      dup2(nul, 0);
      dup2(nul, 1);
    }
    execl(rs__bin, rs__bin, "--port", portbuf, "--bind", "127.0.0.1", "--unixsocket", sock, "--unixsocketperm",
          "700", "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", (char *)NULL);
    _exit(127);
  }
  rs->pid = pid;
  for (int i = 0; i < 3000; i++) {
    if (rs__connectable(sock) && (port <= 0 || rs__tcp_connectable(port))) return 0;
    if (waitpid(pid, NULL, WNOHANG) == pid) {
      rs->pid = 0;
      return -1;
    }
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
  }
  return -1;
}

/* SIGKILL and reap: the server is gone at once, as in a crash. */
static inline void rs_kill(rs_t *rs) {
  if (rs->pid <= 0) return;
  kill(rs->pid, SIGCONT);
  kill(rs->pid, SIGKILL);
  waitpid(rs->pid, NULL, 0);
  rs->pid = 0;
}

/* SIGSTOP / SIGCONT: a server that stops answering, then answers again.
 * Each returns once the kernel says the server has stopped (continued). */
static inline int rs_pause(rs_t *rs) {
  int ws;
  if (rs->pid <= 0 || kill(rs->pid, SIGSTOP) != 0) return -1;
  return waitpid(rs->pid, &ws, WUNTRACED) == rs->pid ? 0 : -1;
}

static inline int rs_resume(rs_t *rs) {
  int ws;
  if (rs->pid <= 0 || kill(rs->pid, SIGCONT) != 0) return -1;
  return waitpid(rs->pid, &ws, WCONTINUED) == rs->pid ? 0 : -1;
}

static inline void rs_stop(rs_t *rs) {
  if (rs->pid <= 0) return;
  kill(rs->pid, SIGCONT);
  kill(rs->pid, SIGTERM);
  waitpid(rs->pid, NULL, 0);
  rs->pid = 0;
  unlink(rs->sock);
}

#endif
