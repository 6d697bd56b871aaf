/* replay.c: `sluice replay`, a recorded stream run again through a
 * pipeline and the guards, offline (see replay.h).
 *
 * The transcript's events go through the same code the relay runs
 * (stream/guarded.c over guard/guard.c, the pipeline through
 * lua/pipeline.c), in the same order and at the same points: each chunk
 * event is judged as the relay judges it, the pipeline's timer batches are
 * replayed where the recording has them ("tick" lines; a transcript
 * recorded without a pipeline has none, so its batches fall due on the
 * recorded clock), and the end is the recorded end.  So, with the recorded
 * pipeline and guards, the verdicts are the live run's, and the command
 * says whether they match.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/base/alloc.h"
#include "runtime/base/config.h"
#include "runtime/base/errors.h"
#include "runtime/cli/replay.h"
#include "runtime/guard/guard.h"
#include "runtime/lua/pipeline.h"
#include "runtime/lua/ttldict.h"
#include "runtime/stream/guarded.h"
#include "runtime/upstream/oai.h"

typedef struct {
  FILE *out;
  double t;                 /* ms of the line being replayed */
  char verdicts[64][384];   /* what was replayed, as "kind name action: detail" */
  int nverdicts;
  int actions;
} sl__replay_t;

static void sl__usage(FILE *f) {
  fprintf(f,
          "usage: sluice replay FILE [--pipeline FILE|none] [--guards FILE] [--timing fast|original]\n"
          "  Runs a recorded transcript (transcripts.dir/<id>.ndjson) through a pipeline and the\n"
          "  guards, offline, and prints every action and verdict.  By default the recorded\n"
          "  pipeline and guards are used and the verdicts are compared with the recording.\n"
          "  --pipeline FILE   try this pipeline instead (none: no pipeline)\n"
          "  --guards FILE     a guards object, or a config file: the recorded pool's guards\n"
          "                    (with the recorded tenant's added) are taken from it\n"
          "  --timing original sleep between events as recorded (default: as fast as possible)\n");
}

static void sl__record(sl__replay_t *rp, const sl_guard_verdict_t *v) {
  fprintf(rp->out, "%10.3f ms  verdict  %s %s %s: %s\n", rp->t, sl_guard_kind_name(v->kind), v->name,
          sl_guard_action_name(v->action), v->detail);
  if (rp->nverdicts < 64)
    snprintf(rp->verdicts[rp->nverdicts++], sizeof(rp->verdicts[0]), "%s %s %s: %s", sl_guard_kind_name(v->kind),
             v->name, sl_guard_action_name(v->action), v->detail);
}

static void sl__on_action(void *ud, const char *phase, const sl_pact_t *a, const char *err) {
  sl__replay_t *rp = ud;
  rp->actions++;
  if (a == NULL) {
    fprintf(rp->out, "%10.3f ms  action   %s failed: %s\n", rp->t, phase, err);
    return;
  }
  fprintf(rp->out, "%10.3f ms  action   %s %s", rp->t, phase, sl_pact_name(a->kind));
  if (a->kind == SL_PACT_REPLACE)
    fprintf(rp->out, " [%llu, %llu)", (unsigned long long)a->start, (unsigned long long)a->stop);
  if (a->kind == SL_PACT_HOLD) fprintf(rp->out, " %llu", (unsigned long long)a->start);
  if (a->kind != SL_PACT_HOLD && a->text != NULL)
    fprintf(rp->out, " \"%.*s\"", (int)(a->len < 200 ? a->len : 200), a->text);
  fputc('\n', rp->out);
}

/* The guard's notes since the last look, as the relay tells them
 * (stream/relay.c: sl__guard_notes). */
static void sl__notes(sl__replay_t *rp, sl_guarded_t *gd, uint64_t *notes, uint64_t *masks) {
  sl_guard_t *g = &gd->g;
  if (g->annotations != *notes) {
    *notes = g->annotations;
    sl__record(rp, &g->note);
  }
  if (g->redactions != *masks) {
    uint64_t k = g->redactions - *masks;
    *masks = g->redactions;
    sl_guard_verdict_t v = {.kind = SL_GUARD_REDACT, .action = SL_GACT_REPLACE};
    snprintf(v.name, sizeof(v.name), "redaction");
    snprintf(v.detail, sizeof(v.detail), "%llu range%s masked", (unsigned long long)k, k == 1 ? "" : "s");
    sl__record(rp, &v);
  }
}

/* The guards object to replay with: --guards (a guards object, or a
 * config whose pool `pool` and tenant `tenant` give it), else the
 * recorded one.  Returns a new tree or NULL with err set. */
static cJSON *sl__guards(const char *file, const cJSON *recorded, const char *pool, const char *tenant, char *err,
                         size_t errlen) {
  if (file == NULL) return recorded ? cJSON_Duplicate(recorded, 1) : cJSON_CreateObject();
  size_t len;
  char *text;
  int rc = sl_read_file(file, 64u << 20, &text, &len);
  if (rc < 0) {
    snprintf(err, errlen, "%s: %s", file, rc == SL_ETOOBIG ? "larger than 64 MiB" : strerror(errno));
    return NULL;
  }
  cJSON *doc = cJSON_Parse(text);
  sl_free(text);
  if (!cJSON_IsObject(doc)) {
    cJSON_Delete(doc);
    snprintf(err, errlen, "%s: not a JSON object", file);
    return NULL;
  }
  const cJSON *pools = cJSON_GetObjectItemCaseSensitive(doc, "pools");
  if (pools == NULL) return doc; /* a guards object */
  const cJSON *pg = NULL, *tg = NULL, *it;
  cJSON_ArrayForEach(it, pools) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
    if (cJSON_IsString(n) && pool && strcmp(n->valuestring, pool) == 0) pg = cJSON_GetObjectItemCaseSensitive(it, "guards");
  }
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(doc, "tenants")) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
    if (cJSON_IsString(n) && tenant && strcmp(n->valuestring, tenant) == 0) tg = cJSON_GetObjectItemCaseSensitive(it, "guards");
  }
  cJSON *m = sl_guards_merge(pg, tg);
  cJSON_Delete(doc);
  return m;
}

int sl_replay_main(int argc, char **argv) {
  const char *file = NULL, *pipe_file = NULL, *guards_file = NULL;
  int original = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--pipeline") == 0 && i + 1 < argc) pipe_file = argv[++i];
    else if (strcmp(argv[i], "--guards") == 0 && i + 1 < argc) guards_file = argv[++i];
    else if (strcmp(argv[i], "--timing") == 0 && i + 1 < argc) {
      const char *m = argv[++i];
      if (strcmp(m, "original") == 0) original = 1;
      else if (strcmp(m, "fast") != 0) {
        fprintf(stderr, "sluice replay: --timing takes fast or original, not '%s'\n", m);
        return 2;
      }
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      sl__usage(stdout);
      return 0;
    } else if (argv[i][0] != '-' && file == NULL) file = argv[i];
    else {
      fprintf(stderr, "sluice replay: unknown argument '%s'\n", argv[i]);
      sl__usage(stderr);
      return 2;
    }
  }
  if (file == NULL) {
    sl__usage(stderr);
    return 2;
  }
  size_t len;
  char *text;
  int rrc = sl_read_file(file, 1u << 30, &text, &len);
  if (rrc < 0) {
    fprintf(stderr, "sluice replay: %s: %s\n", file, rrc == SL_ETOOBIG ? "larger than 1 GiB" : strerror(errno));
    return 1;
  }
  /* Every line is a JSON object: parse them all first, so a damaged file
   * is refused before anything runs, naming the line. */
  int cap = 1024, n = 0;
  cJSON **lines = sl_malloc((size_t)cap * sizeof(*lines));
  int lineno = 0, bad = 0;
  for (char *p = text; *p && !bad;) {
    char *nl = strchr(p, '\n');
    if (nl) *nl = '\0';
    lineno++;
    if (*p) {
      cJSON *o = cJSON_Parse(p);
      const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
      if (!cJSON_IsString(type)) {
        fprintf(stderr, "sluice replay: %s:%d: not a transcript line (a JSON object with \"type\")\n", file, lineno);
        cJSON_Delete(o);
        bad = 1;
        break;
      }
      if (n == cap) {
        cap *= 2;
        lines = sl_realloc(lines, (size_t)cap * sizeof(*lines));
      }
      lines[n++] = o;
    }
    if (!nl) break;
    p = nl + 1;
  }
  sl_free(text);
  int rc = bad ? 1 : 0;
  const cJSON *req = n > 0 ? lines[0] : NULL;
  if (rc == 0 && (req == NULL || strcmp(cJSON_GetObjectItemCaseSensitive(req, "type")->valuestring, "request") != 0)) {
    fprintf(stderr, "sluice replay: %s:1: the first line must be the request\n", file);
    rc = 1;
  }
  sl__replay_t rp = {.out = stdout};
  sl_ttldict_t *dict = NULL;
  sl_pipeline_t *pipe = NULL;
  sl_pipe_actions_t *acts = sl_malloc(sizeof(*acts));
  sl_guarded_t gd;
  sl_guardset_t *set = NULL;
  int gd_init = 0, handle = 0, stream = 0, overrides = pipe_file != NULL || guards_file != NULL;
  char err[1024];
  const char *tenant = NULL, *stops[SL_GUARD_MAX_CLIENT_STOPS];
  size_t stop_lens[SL_GUARD_MAX_CLIENT_STOPS];
  int nstops = 0;
  size_t flush_bytes = 256;
  uint64_t flush_ms = 20;
  if (rc == 0) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req, "tenant");
    tenant = cJSON_IsString(v) ? v->valuestring : NULL;
    stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "stream"));
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(req, "stops")) {
      if (cJSON_IsString(it) && nstops < SL_GUARD_MAX_CLIENT_STOPS) {
        stops[nstops] = it->valuestring;
        stop_lens[nstops++] = strlen(it->valuestring);
      }
    }
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(req, "flush_bytes"))) flush_bytes = (size_t)v->valuedouble;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(req, "flush_ms"))) flush_ms = (uint64_t)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(req, "pipeline");
    const char *pf = pipe_file ? (strcmp(pipe_file, "none") == 0 ? NULL : pipe_file)
                               : (cJSON_IsString(v) ? v->valuestring : NULL);
    if (pf != NULL) {
      sl_ttldict_new(NULL, &dict);
      sl_pipeline_limits_t lim = {0, 0, 0, NULL, dict};
      if (sl_pipeline_new(tenant ? tenant : "replay", pf, &lim, &pipe, err, sizeof(err)) < 0) {
        fprintf(stderr, "sluice replay: pipeline: %s\n", err);
        rc = 1;
      } else {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(req, "model");
        handle = sl_pipeline_begin(pipe, cJSON_IsString(id) ? id->valuestring : "replay",
                                   cJSON_IsString(model) ? model->valuestring : "");
      }
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "id");
    fprintf(rp.out, "replay of %s: request %s, tenant %s, %d lines, pipeline %s\n", file,
            cJSON_IsString(id) ? id->valuestring : "?", tenant ? tenant : "(none)", n,
            pipe ? sl_pipeline_file(pipe) : "(none)");
  }
  int has_ticks = 0;
  for (int i = 0; i < n; i++)
    if (strcmp(cJSON_GetObjectItemCaseSensitive(lines[i], "type")->valuestring, "tick") == 0) has_ticks = 1;
  uint64_t notes = 0, masks = 0;
  int first_token = 0, fired = 0, ended = 0, recorded = 0, same = 1;
  char recorded_v[64][384];
  double last_t = 0;
  for (int i = 1; i < n && rc == 0; i++) {
    const cJSON *o = lines[i];
    const char *type = cJSON_GetObjectItemCaseSensitive(o, "type")->valuestring;
    const cJSON *tv = cJSON_GetObjectItemCaseSensitive(o, "t");
    double t = cJSON_IsNumber(tv) ? tv->valuedouble : last_t;
    if (strcmp(type, "verdict") == 0) { /* the recording's, for the comparison */
      const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "kind"), *nm = cJSON_GetObjectItemCaseSensitive(o, "name");
      const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "action"), *d = cJSON_GetObjectItemCaseSensitive(o, "detail");
      if (recorded < 64 && cJSON_IsString(k) && cJSON_IsString(nm) && cJSON_IsString(a) && cJSON_IsString(d))
        snprintf(recorded_v[recorded++], sizeof(recorded_v[0]), "%s %s %s: %s", k->valuestring, nm->valuestring,
                 a->valuestring, d->valuestring);
      continue;
    }
    if (strcmp(type, "action") == 0) continue;
    if (original && t > last_t) usleep((useconds_t)((t - last_t) * 1000));
    last_t = t;
    rp.t = t;
    if (fired || ended) continue;
    /* The clock the pipeline's batches fall due on: the recording's. */
    uint64_t now = (uint64_t)t + 1;
    if (strcmp(type, "attempt") == 0) {
      const cJSON *pool = cJSON_GetObjectItemCaseSensitive(o, "pool");
      cJSON *tree = sl__guards(guards_file, cJSON_GetObjectItemCaseSensitive(o, "guards"),
                               cJSON_IsString(pool) ? pool->valuestring : NULL, tenant, err, sizeof(err));
      if (tree == NULL) {
        fprintf(stderr, "sluice replay: guards: %s\n", err);
        rc = 1;
        break;
      }
      if (gd_init) sl_guarded_free(&gd);
      sl_guardset_free(set);
      set = NULL;
      int brc = sl_guardset_build(tree, "guards", NULL, &set, err, sizeof(err));
      if (brc == 0 && set == NULL) { /* a null guards object: the client's stop only */
        cJSON *none = cJSON_CreateObject();
        brc = sl_guardset_build(none, "guards", NULL, &set, err, sizeof(err));
        cJSON_Delete(none);
      }
      cJSON_Delete(tree);
      if (brc < 0 || sl_guarded_init(&gd, set, stops, stop_lens, nstops, err, sizeof(err)) < 0) {
        fprintf(stderr, "sluice replay: guards: %s\n", err);
        rc = 1;
        break;
      }
      gd_init = 1;
      gd.whole = 1; /* nothing is sent: the text and its masks are kept */
      (void)stream;
      if (pipe) sl_guarded_pipe(&gd, pipe, handle, "replay", flush_bytes, flush_ms, acts);
      gd.on_action = sl__on_action;
      gd.action_ud = &rp;
      continue;
    }
    if (!gd_init) continue;
    gd.now_ms = now;
    if (strcmp(type, "tick") == 0 || (!has_ticks && sl_guarded_pipe_due(&gd) != 0 && sl_guarded_pipe_due(&gd) <= now)) {
      /* The recording says a batch fell due here (the live clock is the
       * loop's, in whole ms: it is not recomputed), or, without ticks, the
       * recorded clock says so. */
      if (sl_guarded_pipe_due(&gd) != 0) gd.now_ms = sl_guarded_pipe_due(&gd);
      fired = sl_guarded_pipe_tick(&gd, NULL) == 1;
      gd.now_ms = now;
      sl__notes(&rp, &gd, &notes, &masks);
      if (fired) {
        sl__record(&rp, &gd.g.verdict);
        continue;
      }
      if (strcmp(type, "tick") == 0) continue;
    }
    if (strcmp(type, "end") == 0) {
      ended = 1;
      continue;
    }
    if (strcmp(type, "event") != 0) continue;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(o, "data");
    if (!cJSON_IsString(data)) continue;
    const char *d = data->valuestring;
    size_t dn = strlen(d);
    if (strcmp(d, "[DONE]") == 0) {
      ended = 1;
      fired = sl_guarded_flush(&gd, NULL) == 1;
      sl__notes(&rp, &gd, &notes, &masks);
      if (fired) sl__record(&rp, &gd.g.verdict);
      continue;
    }
    sl_event_t ev;
    if (sl_oai_scan(d, dn, &ev) < 0 || ev.kind != SL_EV_CHUNK || ev.n_choices == 0) continue;
    /* As the relay: a token is text, a tool-call fragment, reasoning or a
     * finish; a role-only chunk before the first token is not judged. */
    int has_content = (ev.has_text && ev.text.n > 0) || ev.n_tool_calls > 0 || (ev.has_reasoning && ev.reasoning.n > 0);
    int token = has_content || ev.finish != SL_FINISH_NONE;
    if (!token && !first_token) continue;
    first_token = 1;
    fired = sl_guarded_judge(&gd, &ev, has_content);
    if (fired) {
      sl__record(&rp, &gd.g.verdict);
      continue;
    }
    sl__notes(&rp, &gd, &notes, &masks);
  }
  if (rc == 0) {
    if (recorded != rp.nverdicts) same = 0;
    for (int i = 0; same && i < recorded; i++)
      if (strcmp(recorded_v[i], rp.verdicts[i]) != 0) same = 0;
    fprintf(rp.out, "%d verdict(s), %d action(s); the recording had %d verdict(s): %s\n", rp.nverdicts, rp.actions,
            recorded, same ? "the same" : overrides ? "different (expected: a pipeline or guards were given)"
                                                    : "DIFFERENT");
    if (!same && !overrides) rc = 3;
  }
  if (gd_init) sl_guarded_free(&gd);
  sl_guardset_free(set);
  if (pipe) {
    sl_pipeline_finish(pipe, handle);
    sl_pipeline_free(pipe);
  }
  sl_ttldict_free(dict);
  sl_free(acts);
  for (int i = 0; i < n; i++) cJSON_Delete(lines[i]);
  sl_free(lines);
  return rc;
}
