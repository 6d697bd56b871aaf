/* e2e_browser.c: the admin web view's page in a headless Chromium.
 *
 * sluice serves a pool of two in-process engines whose tokens come every
 * 100 ms, with admin_http and a token; the test holds three long streams
 * open, starts Debian's chromium (headless, --remote-debugging-port=0) as a
 * tracked child, and runs tests/web/browser_test.mjs with node, which drives
 * the page over the DevTools protocol: the page loads with no console
 * error, lists the three streams with the right counts, changes as tokens
 * flow, is photographed, and its Drain button takes an endpoint out.  Then
 * the test checks through the gateway itself that the endpoint drains:
 * /health says so and the next request goes to the other endpoint.
 *
 * The screenshot is kept as an artifact: $SL_ARTIFACT_DIR/web-view.png
 * (the build tree's tests/artifacts/, set by CMake), its path printed.
 * chromium or node missing: exit 77 (skipped), except under CI=true, where
 * that is a failure.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "e2e/harness.h"

#define CHAT "/v1/chat/completions"
#define CHUNK "chat.completion.chunk"
#define TOKEN "e2e-browser-token-0123456789"
#define SKIP_CODE 77
#define NSTREAMS 3

static char chromium[512], node[512];

/* The first of names found on PATH (or the env override), into out. */
static int find_tool(const char *env, const char *const *names, char *out, size_t cap) {
  const char *e = getenv(env);
  if (e && *e && access(e, X_OK) == 0) {
    snprintf(out, cap, "%s", e);
    return 1;
  }
  const char *path = getenv("PATH");
  if (path == NULL) path = "/usr/bin:/bin";
  for (const char *const *n = names; *n; n++) {
    for (const char *p = path; p && *p;) {
      const char *colon = strchr(p, ':');
      size_t len = colon ? (size_t)(colon - p) : strlen(p);
      snprintf(out, cap, "%.*s/%s", (int)len, p, *n);
      if (access(out, X_OK) == 0) return 1;
      p = colon ? colon + 1 : NULL;
    }
  }
  return 0;
}

static void skip_or_fail(const char *why) {
  const char *ci = getenv("CI");
  if (ci != NULL && strcmp(ci, "true") == 0) {
    fprintf(stderr, "e2e_browser: %s\nCI=true: the browser test must run in CI, so this is a failure\n", why);
    exit(1);
  }
  printf("SKIP: e2e_browser: %s\n", why);
  exit(SKIP_CODE);
}

static int admin_port(const e2e_proc_t *p) {
  char line[512];
  if (!e2e_log_wait(p, "admin web view on http://", E2E_WAIT_MS, line, sizeof(line))) return -1;
  const char *at = strstr(line, "http://");
  const char *colon = at ? strchr(at + 7, ':') : NULL;
  return colon ? atoi(colon + 1) : -1;
}

static int64_t ep_num(int port, const char *name, const char *field) {
  int status;
  cJSON *h = e2e_get_json(port, "/health", &status);
  int64_t v = -1;
  const cJSON *p, *e;
  cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(h, "pools")) {
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "endpoints")) {
      const cJSON *a = cJSON_GetObjectItemCaseSensitive(e, "address");
      if (!cJSON_IsString(a) || strcmp(a->valuestring, name) != 0) continue;
      const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, field);
      v = cJSON_IsBool(f) ? cJSON_IsTrue(f) : cJSON_IsNumber(f) ? (int64_t)f->valuedouble : -1;
    }
  }
  cJSON_Delete(h);
  return v;
}

/* Copies a file; returns 0 or -1. */
static int copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb");
  if (in == NULL) return -1;
  FILE *out = fopen(to, "wb");
  if (out == NULL) {
    fclose(in);
    return -1;
  }
  char buf[65536];
  size_t n;
  int rc = 0;
  while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
    if (fwrite(buf, 1, n, out) != n) rc = -1;
  fclose(in);
  if (fclose(out) != 0) rc = -1;
  return rc;
}

static void test_page_in_chromium(void) {
  e2e_proc_t sl, chrome, drv;
  const char *cfg =
      "{\"admin_http\":{\"listen\":\"127.0.0.1:0\",\"token\":\"" TOKEN "\"},\"heartbeat_ms\":100,"
      "\"upstream\":{\"idle_timeout_ms\":3600000},"
      "\"pools\":[{\"name\":\"p\",\"models\":[\"m1\"],"
      "\"endpoints\":[{\"sim\":{\"ttft_ms\":5,\"itl_ms\":100,\"itl_jitter\":0}},"
      "{\"sim\":{\"ttft_ms\":5,\"itl_ms\":100,\"itl_jitter\":0}}]}]}";
  ASSERT_EQ(e2e_serve_start(&sl, cfg, NULL), 0);
  ASSERT_EQ(e2e_wait_ready(sl.port, 200, E2E_WAIT_MS), 0);
  ASSERT(e2e_wait_endpoints_ready(sl.port, 2, E2E_WAIT_MS));
  int port = admin_port(&sl);
  ASSERT_GT(port, 0);
  /* Some finished streams first, so the chart has figures. */
  char body[512];
  for (int i = 0; i < 4; i++) {
    e2e_sse_t s;
    nu_resp_t r;
    ASSERT_EQ(e2e_stream(sl.port, CHAT, "x-sim-tokens: 6\r\nx-sim-itl-ms: 10\r\n",
                         e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &r, &s, CHUNK, E2E_WAIT_MS),
              200);
    nu_resp_free(&r);
    e2e_sse_free(&s);
  }
  /* Three long streams (a token every 100 ms for minutes), each read to
   * its first token so that every one is placed and flowing. */
  nu_conn_t *held[NSTREAMS];
  e2e_sse_t hs[NSTREAMS];
  for (int i = 0; i < NSTREAMS; i++) {
    nu_resp_t head;
    held[i] = e2e_sse_open(sl.port, CHAT, "x-sim-tokens: 3000\r\n", e2e_chat_body(body, sizeof(body), "m1", 1, NULL),
                           &head, &hs[i], CHUNK, E2E_WAIT_MS);
    ASSERT_NOT_NULL(held[i]);
    ASSERT_EQ(head.status, 200);
    nu_resp_free(&head);
    hs[i].stop_after_content = 1;
    ASSERT_EQ(e2e_sse_read(held[i], &hs[i], E2E_WAIT_MS), 1);
  }
  /* The endpoint to drain: one that serves a held stream. */
  int status;
  cJSON *st = e2e_get_json(port, "/api/state?token=" TOKEN, &status);
  ASSERT_EQ(status, 200);
  const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(st, "streams"), 0);
  ASSERT_NOT_NULL(first);
  char drain[64], other[64] = "";
  snprintf(drain, sizeof(drain), "%s", cJSON_GetObjectItemCaseSensitive(first, "endpoint")->valuestring);
  const cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(st, "pools"), 0),
                                                          "endpoints")) {
    const char *n = cJSON_GetObjectItemCaseSensitive(e, "name")->valuestring;
    if (strcmp(n, drain) != 0) snprintf(other, sizeof(other), "%s", n);
  }
  cJSON_Delete(st);
  ASSERT(other[0] != '\0');
  ASSERT_EQ(ep_num(sl.port, drain, "draining"), 0);

  /* Chromium, tracked like sluice (killed on every failure path). */
  char profile[600], shot[600], remote[64];
  snprintf(profile, sizeof(profile), "--user-data-dir=%s/chromium-profile", e2e_tmpdir());
  snprintf(shot, sizeof(shot), "%s/web-view.png", e2e_tmpdir());
  snprintf(remote, sizeof(remote), "--remote-debugging-port=0");
  const char *const cargv[] = {chromium,
                               "--headless=new",
                               "--no-sandbox", /* the suite may run as root */
                               "--disable-gpu",
                               "--disable-dev-shm-usage",
                               "--no-first-run",
                               "--no-default-browser-check",
                               "--disable-extensions",
                               "--disable-background-networking",
                               "--disable-component-update",
                               "--disable-sync",
                               "--hide-scrollbars",
                               "--window-size=1400,1000",
                               remote,
                               profile,
                               "about:blank",
                               NULL};
  ASSERT_EQ(e2e_proc_start(&chrome, "chromium", cargv, "DevTools listening on ws://", 60000), 0);
  ASSERT_GT(chrome.port, 0);

  char script[600], cdp[16], url[128], nstreams[8];
  snprintf(script, sizeof(script), "%s/web/browser_test.mjs", SL_TEST_SOURCE_DIR);
  snprintf(cdp, sizeof(cdp), "%d", chrome.port);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/?token=%s", port, TOKEN);
  snprintf(nstreams, sizeof(nstreams), "%d", NSTREAMS);
  const char *const dargv[] = {node,   script, "--cdp-port", cdp,   "--url", url, "--streams",
                               nstreams, "--drain", drain, "--shot", shot, NULL};
  ASSERT_EQ(e2e_proc_start(&drv, "browser_test", dargv, "browser_test: connected to ws://", 60000), 0);
  int exited = e2e_wait_exit(&drv, 240000);
  char *out = e2e_log_text(&drv);
  printf("---- browser_test.mjs ----\n%s---- end ----\n", out ? out : "(no output)\n");
  free(out);
  ASSERT_EQ(exited, 0);
  ASSERT(WIFEXITED(drv.status));
  ASSERT_EQ(WEXITSTATUS(drv.status), 0);
  if (e2e_wait_exit(&chrome, 10000) < 0) ASSERT_EQ(e2e_kill(&chrome), 0);

  /* The drain reached the gateway: /health says so, and placement avoids
   * the endpoint while its stream goes on. */
  ASSERT_EQ(ep_num(sl.port, drain, "draining"), 1);
  ASSERT_EQ(ep_num(sl.port, other, "draining"), 0);
  int64_t d0 = ep_num(sl.port, drain, "requests"), o0 = ep_num(sl.port, other, "requests");
  for (int i = 0; i < 3; i++) {
    e2e_sse_t s;
    nu_resp_t r;
    ASSERT_EQ(e2e_stream(sl.port, CHAT, "x-sim-tokens: 3\r\nx-sim-itl-ms: 1\r\n",
                         e2e_chat_body(body, sizeof(body), "m1", 1, NULL), &r, &s, CHUNK, E2E_WAIT_MS),
              200);
    nu_resp_free(&r);
    e2e_sse_free(&s);
  }
  ASSERT_EQ(ep_num(sl.port, drain, "requests"), d0);
  ASSERT_EQ(ep_num(sl.port, other, "requests"), o0 + 3);
  ASSERT_GE(ep_num(sl.port, drain, "streams"), 1);

  /* The screenshot, kept. */
  struct stat sb;
  ASSERT_EQ(stat(shot, &sb), 0);
  ASSERT_GT(sb.st_size, 1000);
  const char *adir = getenv("SL_ARTIFACT_DIR");
  if (adir && *adir) {
    char kept[700];
    mkdir(adir, 0755);
    snprintf(kept, sizeof(kept), "%s/web-view.png", adir);
    ASSERT_EQ(copy_file(shot, kept), 0);
    printf("screenshot: %s\n", kept);
  } else {
    printf("screenshot: %s (removed with the temp directory; set SL_ARTIFACT_DIR to keep it)\n", shot);
  }

  for (int i = 0; i < NSTREAMS; i++) {
    e2e_conn_close(held[i]);
    e2e_sse_free(&hs[i]);
  }
  ASSERT_GE(e2e_wait_counter(sl.port, "client_cancels", NSTREAMS, E2E_WAIT_MS), NSTREAMS);
  ASSERT_GE(e2e_counter(sl.port, "admin_http_requests"), 3);
  ASSERT_EQ(e2e_stop(&sl), 0);
}

int main(int argc, char **argv) {
  e2e_init(argc, argv, 600);
  static const char *const chromes[] = {"chromium", "chromium-browser", NULL};
  static const char *const nodes[] = {"node", "nodejs", NULL};
  if (!find_tool("SL_CHROMIUM", chromes, chromium, sizeof(chromium)))
    skip_or_fail("chromium is not installed (scripts/setup --real-engine installs Debian's chromium)");
  if (!find_tool("SL_NODE", nodes, node, sizeof(node)))
    skip_or_fail("node is not installed (scripts/setup --real-engine installs Debian's nodejs)");
  E2E_RUN(test_page_in_chromium);
  return SL_TEST_EXIT();
}
