/* accesslog.c: the stream-end line (see accesslog.h). */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <time.h>

#include "runtime/stream/accesslog.h"

void sl_access_log(FILE *log, int json, sl_narrator_t *nar, const sl_access_entry_t *e) {
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  char ts[32];
  strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
  char error[512], placement[256];
  sl_log_redact(nar, e->error, error, sizeof(error));
  sl_log_redact(nar, e->placement, placement, sizeof(placement));
  if (json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "ts", ts);
    cJSON_AddStringToObject(o, "event", "stream_end");
    cJSON_AddStringToObject(o, "request_id", e->request_id);
    cJSON_AddStringToObject(o, "pool", e->pool);
    cJSON_AddStringToObject(o, "endpoint", e->endpoint);
    cJSON_AddStringToObject(o, "model", e->model);
    cJSON_AddBoolToObject(o, "stream", e->stream);
    if (e->ttft_ms >= 0) cJSON_AddNumberToObject(o, "ttft_ms", e->ttft_ms); else cJSON_AddNullToObject(o, "ttft_ms");
    cJSON_AddNumberToObject(o, "tokens", (double)e->tokens);
    cJSON_AddNumberToObject(o, "tokens_written", (double)e->tokens_written);
    if (e->has_usage) {
      cJSON_AddNumberToObject(o, "prompt_tokens", (double)e->prompt_tokens);
      cJSON_AddNumberToObject(o, "completion_tokens", (double)e->completion_tokens);
    }
    cJSON_AddNumberToObject(o, "duration_ms", e->duration_ms);
    cJSON_AddStringToObject(o, "end", e->end);
    cJSON_AddNumberToObject(o, "attempts", e->attempts);
    if (e->generation) cJSON_AddNumberToObject(o, "generation", (double)e->generation);
    if (placement[0]) cJSON_AddStringToObject(o, "placement", placement);
    cJSON_AddNumberToObject(o, "pinned_chunks_peak", e->pinned_chunks_peak);
    if (e->guard && e->guard[0]) cJSON_AddStringToObject(o, "guard", e->guard);
    if (error[0]) cJSON_AddStringToObject(o, "error", error);
    char *line = cJSON_PrintUnformatted(o);
    fprintf(log, "%s\n", line);
    cJSON_free(line);
    cJSON_Delete(o);
  } else {
    char ttfts[32];
    if (e->ttft_ms >= 0) snprintf(ttfts, sizeof(ttfts), "%.1fms", e->ttft_ms); else snprintf(ttfts, sizeof(ttfts), "-");
    fprintf(log,
            "%s stream %s pool=%s endpoint=%s model=%s ttft=%s tokens=%" PRIu64 " tokens_written=%" PRIu64
            " duration=%.1fms end=%s attempts=%d gen=%" PRIu64 " placement=\"%s\"%s%s%s%s%s\n",
            ts, e->request_id, e->pool, e->endpoint, e->model, ttfts, e->tokens, e->tokens_written,
            e->duration_ms, e->end, e->attempts, e->generation, placement,
            e->guard && e->guard[0] ? " guard=" : "", e->guard ? e->guard : "", error[0] ? " error=\"" : "",
            error, error[0] ? "\"" : "");
  }
  fflush(log);
}
