/* guarded.c: holding, releasing and rewriting a guarded stream's events
 * (see guarded.h). */
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/stream/guarded.h"
#include "runtime/upstream/oai.h"

#define SL__NONE UINT64_MAX
/* Raw text per re-encoded chunk: escaped (at most 6 bytes a byte) it fits
 * SL_OUT_ENCODE_MAX with the chunk's frame. */
#define SL__PIECE 1024

int sl_guarded_init(sl_guarded_t *gd, const sl_guardset_t *set, const char *const *stops, const size_t *lens,
                    int n, char *err, size_t errlen) {
  memset(gd, 0, sizeof(*gd));
  int rc = sl_guard_init(&gd->g, set, stops, lens, n, err, errlen);
  gd->text = sl_guard_wants_text(&gd->g);
  /* A set with nothing to do per token (a pool without guards, a client
   * without stop strings) costs nothing per event. */
  gd->active = set != NULL && (gd->text || set->loop_on || set->nltl > 0 || set->budget > 0);
  return rc;
}

static void sl__drop(sl_guarded_t *gd) {
  gd->qn = 0;
  gd->qh = 0;
  gd->hlen = 0;
}

void sl_guarded_free(sl_guarded_t *gd) {
  sl__drop(gd);
  sl_guard_free(&gd->g);
  for (int c = 0; c < SL_CH__COUNT; c++) sl_free(gd->tb[c]);
  sl_free(gd->rbuf);
  sl_free(gd->hbuf);
  memset(gd, 0, sizeof(*gd));
}

sl_finish_t sl_guarded_finish(const sl_guard_verdict_t *v) {
  switch (v->kind) {
    case SL_GUARD_STOP: return SL_FINISH_STOP;
    case SL_GUARD_BUDGET: return SL_FINISH_LENGTH;
    default: return SL_FINISH_CONTENT_FILTER;
  }
}

/* ---- judging ---- */

/* Unescapes span s onto the end of channel ch's text and feeds it. */
static void sl__feed(sl_guarded_t *gd, int ch, const sl_span_t *s) {
  if (s->n == 0) return;
  uint64_t fed = gd->g.ch[ch].fed;
  size_t used = (size_t)(fed - gd->tbase[ch]);
  if (used + s->n > gd->tcap[ch]) {
    size_t cap = gd->tcap[ch] ? gd->tcap[ch] : 1024;
    while (used + s->n > cap) cap *= 2;
    gd->tb[ch] = sl_realloc(gd->tb[ch], cap);
    gd->tcap[ch] = cap;
  }
  size_t w = sl_json_unescape(gd->tb[ch] + used, gd->tcap[ch] - used, s->p, s->n);
  if (w == (size_t)-1) return; /* the scan accepted it; cannot happen */
  sl_guard_feed(&gd->g, ch, gd->tb[ch] + used, w);
}

/* ---- the pipeline ---- */

void sl_guarded_pipe(sl_guarded_t *gd, sl_pipeline_t *p, int handle, const char *request_id, size_t flush_bytes,
                     uint64_t flush_ms, sl_pipe_actions_t *acts) {
  if (p == NULL || !(sl_pipeline_phases(p) & SL_PIPE_ON_CHUNK)) return;
  gd->pipe = p;
  gd->pipe_h = handle;
  gd->rid = request_id;
  gd->acts = acts;
  gd->flush_bytes = flush_bytes ? flush_bytes : 1;
  gd->flush_ms = flush_ms;
  gd->text = 1;
  gd->active = 1;
}

/* Bytes on_chunk has not seen. */
static uint64_t sl__pending(const sl_guarded_t *gd) {
  return (gd->g.ch[SL_CH_CONTENT].fed - gd->pseen[0]) + (gd->g.ch[SL_CH_REASONING].fed - gd->pseen[1]);
}

/* Drops channel ch's text before `to` without forgetting its masks (a
 * whole answer keeps them until it is rendered). */
static void sl__keep_from(sl_guarded_t *gd, int ch, uint64_t to) {
  if (to <= gd->tbase[ch]) return;
  uint64_t fed = gd->g.ch[ch].fed;
  size_t drop = (size_t)(to - gd->tbase[ch]), keep = (size_t)(fed - to);
  if (keep > 0) memmove(gd->tb[ch], gd->tb[ch] + drop, keep);
  gd->tbase[ch] = to;
}

/* The pipeline failed or misbehaved: the stream ends with an error event
 * naming it (the pipeline cannot be trusted with the rest). */
static void sl__pipe_failed(sl_guarded_t *gd, const char *phase, const char *why) {
  char detail[160];
  snprintf(detail, sizeof(detail), "%s failed: %s", phase, why);
  if (gd->on_action) gd->on_action(gd->action_ud, phase, NULL, why);
  sl_guard_fire(&gd->g, SL_GUARD_PIPELINE, SL_GACT_CANCEL, "pipeline", detail);
}

/* Where channel ch's text not yet sent begins: what the pipeline has not
 * let through, or what a full hold queue forced out past it.  (A whole
 * answer keeps its text in the assembly and drops it here once seen.) */
static uint64_t sl__unsent(const sl_guarded_t *gd, int ch) {
  uint64_t lo = gd->pfinal[ch == SL_CH_CONTENT ? 0 : 1];
  if (!gd->whole && lo < gd->tbase[ch]) lo = gd->tbase[ch];
  return lo;
}

/* Applies one on_chunk call's actions on channel ch, whose new text was
 * [from, to).  Returns 0, or -1 after failing the stream. */
static int sl__pipe_apply(sl_guarded_t *gd, int ch, uint64_t from, uint64_t to, uint64_t *hold) {
  const sl_pipe_actions_t *acts = gd->acts;
  char why[200];
  for (int i = 0; i < acts->n; i++) {
    const sl_pact_t *a = &acts->a[i];
    if (gd->on_action) gd->on_action(gd->action_ud, "on_chunk", a, NULL);
    switch (a->kind) {
      case SL_PACT_CANCEL:
        sl_guard_fire(&gd->g, SL_GUARD_PIPELINE, SL_GACT_CANCEL, "pipeline", a->text);
        return 0;
      case SL_PACT_ANNOTATE: sl_guard_fire(&gd->g, SL_GUARD_PIPELINE, SL_GACT_ANNOTATE, "pipeline", a->text); break;
      case SL_PACT_HOLD: {
        /* Bytes not yet let through may stay back: the batch's, and what
         * the last call held. */
        uint64_t lo = sl__unsent(gd, ch);
        *hold = a->start < to - lo ? a->start : to - lo;
        break;
      }
      case SL_PACT_REPLACE: {
        /* Only text the client has not been sent: from what was released
         * (tbase) to what was fed. */
        uint64_t lo = sl__unsent(gd, ch);
        if (a->start < lo || a->stop > to || a->start >= a->stop) {
          snprintf(why, sizeof(why), "sluice.replace(%llu, %llu): outside the text not yet sent [%llu, %llu)",
                   (unsigned long long)a->start, (unsigned long long)a->stop, (unsigned long long)lo,
                   (unsigned long long)to);
          sl__pipe_failed(gd, "on_chunk", why);
          return -1;
        }
        int rc = sl_guard_replace(&gd->g, ch, a->start, a->stop, a->text, a->len);
        if (rc < 0) {
          snprintf(why, sizeof(why), "sluice.replace(%llu, %llu): overlaps an earlier replacement",
                   (unsigned long long)a->start, (unsigned long long)a->stop);
          sl__pipe_failed(gd, "on_chunk", why);
          return -1;
        }
        break;
      }
      default: break; /* narrate: told through on_action above */
    }
  }
  return 0;
}

/* Calls on_chunk on each channel's text it has not seen.  end: the text
 * ended (nothing is held back after this). */
static int sl__pipe_flush(sl_guarded_t *gd, int end) {
  static const int chans[2] = {SL_CH_CONTENT, SL_CH_REASONING};
  for (int k = 0; k < 2 && !gd->g.fired; k++) {
    int ch = chans[k];
    uint64_t from = gd->pseen[k], to = gd->g.ch[ch].fed, hold = 0;
    if (from < gd->tbase[ch]) from = gd->tbase[ch]; /* a full hold queue forced text out unseen */
    /* At the end, a channel whose held bytes got no later batch gets an
     * empty last one (ctx.final), so the pipeline judges them. */
    if (to > from || (end && to > 0 && gd->pfinal[k] < to)) {
      char err[256];
      gd->pcalls++;
      const char *t = gd->tb[ch] + (from - gd->tbase[ch]);
      int rc = end ? sl_pipeline_on_last_chunk(gd->pipe, gd->pipe_h, gd->rid, k, from, t, (size_t)(to - from),
                                               gd->acts, err, sizeof(err))
                   : sl_pipeline_on_chunk(gd->pipe, gd->pipe_h, gd->rid, k, from, t, (size_t)(to - from), gd->acts,
                                          err, sizeof(err));
      gd->pseen[k] = to;
      if (rc < 0) {
        sl__pipe_failed(gd, "on_chunk", err);
        break;
      }
      if (sl__pipe_apply(gd, ch, from, to, &hold) < 0) break;
    }
    uint64_t fin = end ? to : to - hold;
    if (fin > gd->pfinal[k]) gd->pfinal[k] = fin;
  }
  gd->pwait_ms = 0;
  return gd->g.fired;
}

uint64_t sl_guarded_pipe_due(const sl_guarded_t *gd) {
  if (gd->pipe == NULL || gd->pwait_ms == 0 || gd->g.fired) return 0;
  return gd->pwait_ms + gd->flush_ms;
}

static int sl__release(sl_guarded_t *gd, sl_output_t *o);

int sl_guarded_pipe_tick(sl_guarded_t *gd, sl_output_t *o) {
  uint64_t due = sl_guarded_pipe_due(gd);
  if (due == 0 || gd->now_ms < due) return 0;
  if (sl__pipe_flush(gd, 0)) return 1;
  return o != NULL ? sl__release(gd, o) : 0;
}

/* Bytes of channel ch that are final: the guard's, and what the pipeline
 * let through. */
static uint64_t sl__final(const sl_guarded_t *gd, int ch) {
  uint64_t f = sl_guard_final(&gd->g, ch);
  if (gd->pipe != NULL) {
    uint64_t p = gd->pfinal[ch == SL_CH_CONTENT ? 0 : 1];
    if (p < f) f = p;
  }
  return f;
}

int sl_guarded_judge(sl_guarded_t *gd, const sl_event_t *ev, int token) {
  sl_guard_t *g = &gd->g;
  if (!gd->active) return 0;
  gd->c0 = g->ch[SL_CH_CONTENT].fed;
  gd->r0 = g->ch[SL_CH_REASONING].fed;
  if (gd->text) {
    if (ev->has_text) sl__feed(gd, SL_CH_CONTENT, &ev->text);
    if (ev->has_reasoning) sl__feed(gd, SL_CH_REASONING, &ev->reasoning);
    for (int i = 0; i < ev->n_tool_calls; i++)
      if (ev->tool_calls[i].has_arguments) sl__feed(gd, SL_CH_TOOL, &ev->tool_calls[i].arguments);
    gd->tbase[SL_CH_TOOL] = g->ch[SL_CH_TOOL].fed; /* tool-call text is judged, not held */
  }
  gd->c1 = g->ch[SL_CH_CONTENT].fed;
  gd->r1 = g->ch[SL_CH_REASONING].fed;
  if (token || ev->finish != SL_FINISH_NONE) {
    unsigned what = 0;
    if (ev->has_text && ev->text.n > 0) what |= SL_GSTEP_TEXT;
    if (ev->has_reasoning && ev->reasoning.n > 0) what |= SL_GSTEP_REASONING;
    if (ev->n_tool_calls > 0) what |= SL_GSTEP_TOOL;
    if (ev->finish != SL_FINISH_NONE) what |= SL_GSTEP_FINISH;
    uint32_t h = 0; /* the loop guard's token when the engine gives no ids */
    if (g->set->loop_on && !ev->has_token_ids) {
      const sl_span_t *t = (what & SL_GSTEP_TEXT) ? &ev->text
                           : (what & SL_GSTEP_REASONING) || ev->n_tool_calls == 0 ? &ev->reasoning
                                                                                  : &ev->tool_calls[0].arguments;
      h = sl_guard_hash(t->p, t->n);
    }
    sl_guard_step(g, what, ev->has_token_ids ? ev->token_ids : NULL, ev->has_token_ids ? ev->n_token_ids : 0, h);
  }
  if (gd->pipe != NULL && !g->fired) {
    int end = ev->finish != SL_FINISH_NONE;
    if (gd->pwait_ms == 0 && sl__pending(gd) > 0) gd->pwait_ms = gd->now_ms ? gd->now_ms : 1;
    if (end || sl__pending(gd) >= gd->flush_bytes) sl__pipe_flush(gd, end);
  }
  if (ev->finish != SL_FINISH_NONE) sl_guard_end_text(g);
  if (gd->whole) { /* the assembly keeps the text; the masks stay */
    sl__keep_from(gd, SL_CH_CONTENT, gd->pipe ? gd->pseen[0] : gd->c1);
    sl__keep_from(gd, SL_CH_REASONING, gd->pipe ? gd->pseen[1] : gd->r1);
  }
  return g->fired;
}

/* ---- releasing ---- */

/* Moves channel ch's text start to `to` (text before it went out). */
static void sl__advance(sl_guarded_t *gd, int ch, uint64_t to) {
  if (to <= gd->tbase[ch]) return;
  uint64_t fed = gd->g.ch[ch].fed;
  size_t drop = (size_t)(to - gd->tbase[ch]), keep = (size_t)(fed - to);
  if (keep > 0) memmove(gd->tb[ch], gd->tb[ch] + drop, keep);
  gd->tbase[ch] = to;
  sl_guard_forget(&gd->g, ch, to);
}

/* Channel ch's text [a, b) as the client may see it (masked) into
 * gd->rbuf; returns its length. */
static size_t sl__render(sl_guarded_t *gd, int ch, uint64_t a, uint64_t b) {
  const char *src = gd->tb[ch] + (a - gd->tbase[ch]);
  size_t n = (size_t)(b - a), r;
  while ((r = sl_guard_render(&gd->g, ch, a, src, n, gd->rbuf, gd->rcap, NULL)) == (size_t)-1) {
    gd->rcap = gd->rcap ? 2 * gd->rcap : 2 * n + 256;
    gd->rbuf = sl_realloc(gd->rbuf, gd->rcap);
  }
  return r;
}

/* Sends gd->rbuf[0..n) as content (or reasoning) in chunks of at most
 * SL__PIECE bytes cut between UTF-8 characters, each escaped on its own;
 * the last carries finish and tokens when `last`.  *role goes with the
 * first chunk sent. */
static int sl__send_text(sl_guarded_t *gd, sl_output_t *o, int reasoning, size_t n, const char **role, int last,
                         sl_finish_t finish, uint64_t tokens) {
  char esc[6 * SL__PIECE];
  size_t off = 0;
  do {
    size_t k = n - off < SL__PIECE ? n - off : SL__PIECE;
    if (off + k < n) {
      size_t c = k;
      while (c > 0 && ((unsigned char)gd->rbuf[off + c] & 0xC0) == 0x80) c--;
      if (c > 0) k = c;
    }
    size_t e = sl_json_escape(esc, sizeof(esc), gd->rbuf + off, k);
    int end = last && off + k == n;
    int rc = sl_output_delta(o, *role, reasoning ? NULL : esc, reasoning ? 0 : e, reasoning ? esc : NULL,
                             reasoning ? e : 0, end ? finish : SL_FINISH_NONE, end ? tokens : 0);
    if (rc < 0) return rc;
    *role = NULL;
    off += k;
  } while (off < n);
  return 0;
}

/* Re-encodes entry e with its reasoning and its content [e->c0, cend). */
static int sl__rewrite(sl_guarded_t *gd, sl_output_t *o, const sl_gheld_t *e, uint64_t cend, sl_finish_t finish) {
  const char *role = e->role ? "assistant" : NULL;
  size_t rlen = e->r1 > e->r0 ? sl__render(gd, SL_CH_REASONING, e->r0, e->r1) : 0;
  size_t clen = rlen == 0 && cend > e->c0 ? sl__render(gd, SL_CH_CONTENT, e->c0, cend) : 0;
  if (rlen == 0 && clen == 0 && role == NULL && finish == SL_FINISH_NONE) {
    /* Nothing left to say (its text was all masked): its tokens go out
     * with the next event. */
    gd->carry += e->tokens;
    return 0;
  }
  gd->rewritten++;
  uint64_t tokens = e->tokens + gd->carry;
  gd->carry = 0;
  if (rlen > 0) { /* reasoning first, as engines send it before the answer */
    int rc = sl__send_text(gd, o, 1, rlen, &role, cend <= e->c0, finish, tokens);
    if (rc < 0 || cend <= e->c0) return rc;
    clen = sl__render(gd, SL_CH_CONTENT, e->c0, cend);
  }
  return sl__send_text(gd, o, 0, clen, &role, 1, finish, tokens);
}

/* Sends the oldest held entry, cut at content offset cut (SL__NONE: whole). */
static int sl__release_head(sl_guarded_t *gd, sl_output_t *o, uint64_t cut) {
  sl_gheld_t *e = &gd->q[gd->qh];
  int rc;
  int whole = cut >= e->c1;
  if (e->raw && whole && !sl_guard_masked(&gd->g, SL_CH_CONTENT, e->c0, e->c1) &&
      !sl_guard_masked(&gd->g, SL_CH_REASONING, e->r0, e->r1))
  {
    /* Copied into the output stage's scratch chunk for the write. */
    rc = sl_output_event(o, gd->hbuf + e->off, e->n, NULL, e->tokens + gd->carry);
    gd->carry = 0;
  } else
    rc = sl__rewrite(gd, o, e, whole ? e->c1 : cut, whole ? e->finish : SL_FINISH_NONE);
  e->raw = 0;
  gd->qh = (gd->qh + 1) % SL_GQ;
  gd->qn--;
  sl__advance(gd, SL_CH_CONTENT, e->c1);
  sl__advance(gd, SL_CH_REASONING, e->r1);
  return rc;
}

/* Releases held entries while their text is final (and before limit). */
/* Moves the held bytes still needed to the start of hbuf. */
static void sl__compact(sl_guarded_t *gd) {
  if (gd->qn == 0) {
    gd->hlen = 0;
    return;
  }
  size_t from = gd->hlen;
  for (int i = 0; i < gd->qn; i++) {
    const sl_gheld_t *e = &gd->q[(gd->qh + i) % SL_GQ];
    if (e->raw && e->off < from) from = e->off;
  }
  if (from == 0) return;
  memmove(gd->hbuf, gd->hbuf + from, gd->hlen - from);
  gd->hlen -= from;
  for (int i = 0; i < gd->qn; i++) {
    sl_gheld_t *e = &gd->q[(gd->qh + i) % SL_GQ];
    if (e->raw) e->off -= from;
  }
}

static int sl__release(sl_guarded_t *gd, sl_output_t *o) {
  uint64_t fc = sl__final(gd, SL_CH_CONTENT), fr = sl__final(gd, SL_CH_REASONING);
  int rc = 0;
  while (gd->qn > 0 && rc == 0) {
    const sl_gheld_t *e = &gd->q[gd->qh];
    if (e->c1 > fc || e->r1 > fr) break;
    rc = sl__release_head(gd, o, SL__NONE);
  }
  sl__compact(gd);
  return rc;
}

/* Queues a copy of the current event's bytes, with the ranges from the
 * last judge.  A full queue merges two neighbours that carry text only into
 * one to be re-encoded. */
static int sl__queue(sl_guarded_t *gd, sl_output_t *o, const sl_event_t *ev, const char *p, size_t n,
                     uint64_t tokens) {
  if (gd->qn == SL_GQ) {
    /* Merge the oldest two entries that carry nothing but text (a tool
     * call is never merged away). */
    int k = 0;
    while (k + 1 < gd->qn && (gd->q[(gd->qh + k) % SL_GQ].tools || gd->q[(gd->qh + k + 1) % SL_GQ].tools)) k++;
    if (k + 1 < gd->qn) {
      sl_gheld_t *a = &gd->q[(gd->qh + k) % SL_GQ], *b = &gd->q[(gd->qh + k + 1) % SL_GQ];
      b->raw = 0;
      b->c0 = a->c0;
      b->r0 = a->r0;
      b->tokens += a->tokens;
      b->role |= a->role;
      for (int i = k; i > 0; i--) gd->q[(gd->qh + i) % SL_GQ] = gd->q[(gd->qh + i - 1) % SL_GQ];
      gd->qh = (gd->qh + 1) % SL_GQ;
      gd->qn--;
    }
  }
  if (gd->qn == SL_GQ) {
    /* No two neighbours without a tool call (engines do not interleave
     * tool calls and text like that): the oldest goes out as it is. */
    gd->forced++;
    int rc = sl__release_head(gd, o, SL__NONE);
    if (rc < 0) return rc;
  }
  if (gd->hlen + n > gd->hcap) {
    size_t cap = gd->hcap ? gd->hcap : 1024;
    while (gd->hlen + n > cap) cap *= 2;
    gd->hbuf = sl_realloc(gd->hbuf, cap);
    gd->hcap = cap;
  }
  memcpy(gd->hbuf + gd->hlen, p, n);
  sl_gheld_t *e = &gd->q[(gd->qh + gd->qn) % SL_GQ];
  *e = (sl_gheld_t){.off = gd->hlen, .n = n, .raw = 1, .tokens = tokens, .c0 = gd->c0, .c1 = gd->c1,
                    .r0 = gd->r0, .r1 = gd->r1, .role = ev->has_role, .finish = ev->finish,
                    .tools = ev->n_tool_calls > 0};
  gd->hlen += n;
  gd->qn++;
  return 0;
}

int sl_guarded_relay(sl_guarded_t *gd, sl_output_t *o, const sl_event_t *ev, const char *p, size_t n,
                     sl_chunk_t *pin, uint64_t tokens) {
  if (gd->qn == 0 && gd->c1 <= sl__final(gd, SL_CH_CONTENT) && gd->r1 <= sl__final(gd, SL_CH_REASONING) &&
      !sl_guard_masked(&gd->g, SL_CH_CONTENT, gd->c0, gd->c1) &&
      !sl_guard_masked(&gd->g, SL_CH_REASONING, gd->r0, gd->r1)) {
    /* Nothing held and nothing suspect: the engine's bytes, at once. */
    sl__advance(gd, SL_CH_CONTENT, gd->c1);
    sl__advance(gd, SL_CH_REASONING, gd->r1);
    return sl_output_event(o, p, n, pin, tokens);
  }
  int rc = sl__queue(gd, o, ev, p, n, tokens);
  return rc < 0 ? rc : sl__release(gd, o);
}

int sl_guarded_flush(sl_guarded_t *gd, sl_output_t *o) {
  if (gd->g.set == NULL) return 0;
  if (gd->pipe != NULL && !gd->g.fired && sl__pipe_flush(gd, 1)) return 1;
  if (sl_guard_end_text(&gd->g)) return 1;
  return sl__release(gd, o);
}

int sl_guarded_settle(sl_guarded_t *gd, sl_output_t *o, const sl_event_t *ev, const char *p, size_t n,
                      sl_chunk_t *pin, uint64_t tokens) {
  const sl_guard_verdict_t *v = &gd->g.verdict;
  int rc = 0;
  if (v->action == SL_GACT_END) {
    sl_guard_end_text(&gd->g); /* complete the masks of what goes out */
    uint64_t cut = SL__NONE;
    int with_current = 0;
    if (v->kind == SL_GUARD_STOP) {
      cut = gd->g.stop_at;
      with_current = 1;
    } else if (v->kind == SL_GUARD_BUDGET) {
      with_current = 1;
    } else if (v->kind == SL_GUARD_REDACT) {
      /* Nothing at or after the secret's start goes out. */
      if (v->ch == SL_CH_CONTENT) cut = v->at;
    }
    if (with_current && ev != NULL) rc = sl__queue(gd, o, ev, p, n, tokens);
    (void)pin; /* held events are copies: the chunk is not kept */
    while (gd->qn > 0 && rc == 0) {
      const sl_gheld_t *e = &gd->q[gd->qh];
      if (v->kind == SL_GUARD_REDACT && v->ch == SL_CH_REASONING && e->r1 > v->at) break;
      if (cut != SL__NONE && e->c0 >= cut) break;
      rc = sl__release_head(gd, o, cut);
    }
    /* The engine's finish is replaced by the guard's. */
  }
  sl__drop(gd);
  return rc;
}

char *sl_guarded_whole_text(sl_guarded_t *gd, const char *text, size_t len, size_t *out_len) {
  sl_guard_t *g = &gd->g;
  if (g->fired && g->verdict.kind == SL_GUARD_STOP && g->stop_at < len) len = (size_t)g->stop_at;
  if (g->fired && g->verdict.kind == SL_GUARD_REDACT && g->verdict.ch == SL_CH_CONTENT && g->verdict.at < len)
    len = (size_t)g->verdict.at;
  size_t cap = len + 64;
  char *out = sl_malloc(cap + 1);
  for (;;) {
    size_t w = sl_guard_render(g, SL_CH_CONTENT, 0, text, len, out, cap, NULL);
    if (w != (size_t)-1) {
      out[w] = '\0';
      *out_len = w;
      return out;
    }
    cap *= 2;
    out = sl_realloc(out, cap + 1);
  }
}
