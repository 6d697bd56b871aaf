/* guarded.c: holding, releasing and rewriting a guarded stream's events
 * (see guarded.h). */
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
  if (ev->finish != SL_FINISH_NONE) sl_guard_end_text(g);
  if (gd->whole) { /* the assembly keeps the text; the masks stay */
    gd->tbase[SL_CH_CONTENT] = gd->c1;
    gd->tbase[SL_CH_REASONING] = gd->r1;
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
  uint64_t fc = sl_guard_final(&gd->g, SL_CH_CONTENT), fr = sl_guard_final(&gd->g, SL_CH_REASONING);
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
  if (gd->qn == 0 && gd->c1 <= sl_guard_final(&gd->g, SL_CH_CONTENT) &&
      gd->r1 <= sl_guard_final(&gd->g, SL_CH_REASONING) &&
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
