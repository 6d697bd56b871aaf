/* top.h: `sluice top`, a live view of a running daemon from its /metrics.
 *
 * It scrapes GET /metrics over plain HTTP with a small blocking client (a
 * command-line tool waits for one answer at a time; no loop is needed),
 * reads it with prom_text.h and draws a frame: the daemon's version and
 * uptime, streams in flight, requests queued, tokens per second in and out
 * (counter deltas over the daemon's own uptime between two scrapes), the
 * event loop's lag p99; per pool its queue and requests by outcome, per
 * endpoint readiness, streams, limit, and TTFT and inter-token percentiles;
 * guard firings by kind and rejections by reason.  Percentiles are over
 * what was observed between the last two scrapes where anything was, else
 * over everything since the daemon started (marked).  A figure that cannot
 * be computed is "-", never 0.
 */
#ifndef SL_CLI_TOP_H
#define SL_CLI_TOP_H

#include <stddef.h>
#include <stdio.h>

#include "runtime/cli/prom_text.h"

/* How a frame is drawn. */
typedef struct {
  const char *url;   /* what is scraped, shown in the header */
  int interval_ms;   /* the refresh interval, shown in the header */
  int width;         /* columns: long lists wrap before this */
} sl_top_view_t;

/* Writes one frame for scrape now to f; prev is the scrape before it (or
 * NULL), which rates and window percentiles need.  Plain text, no escape
 * codes; every line ends in '\n'. */
void sl_top_render(FILE *f, const sl_prom_t *now, const sl_prom_t *prev, const sl_top_view_t *v);

/* Writes the frame shown while the daemon cannot be scraped: the URL, why
 * (why), and that it keeps trying (attempt counts the failures in a row). */
void sl_top_render_down(FILE *f, const sl_top_view_t *v, const char *why, int attempt);

/* GETs url ("http://HOST[:PORT][/PATH]"; the path defaults to /metrics)
 * and waits at most timeout_ms for the whole answer.  Returns 0 with the
 * body in *body (sl_malloc'd, NUL-terminated after its *len bytes; the
 * caller frees it with sl_free); or a negative SL_E* code with the reason
 * in err[errcap] (bad URL, cannot connect, timeout, status not 200,
 * malformed answer), nothing then allocated. */
int sl_top_fetch(const char *url, int timeout_ms, char **body, size_t *len, char *err, size_t errcap);

/* `sluice top [--url URL] [--interval-ms MS] [--once]` (argv[0] is "top").
 * Returns the exit status: 0 done (q, Ctrl-C, SIGTERM, or --once printed its
 * frame), 1 --once could not scrape, 2 usage. */
int sl_top_main(int argc, char **argv);

#endif
