/* guard.c: one stream's guards (see guard.h).
 *
 * Feeding text costs, per byte, one table load per automaton that looks at
 * the channel (stop, literals, patterns) plus the class scanner; a token
 * step costs the loop detector's O(max_period) and one table lookup per
 * open LTL monitor.  Nothing here allocates after sl_guard_init except the
 * mask list, which grows when a secret is found (not per token).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/guard/guard.h"

#define SL__NONE UINT64_MAX

static void sl__loop_flush(sl_guard_t *g);

uint32_t sl_guard_hash(const char *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 16777619u;
  return h;
}

int sl_guard_init(sl_guard_t *g, const sl_guardset_t *set, const char *const *stops, const size_t *lens,
                  int n, char *err, size_t errlen) {
  memset(g, 0, sizeof(*g));
  g->set = set;
  g->stop_at = SL__NONE;
  if (set == NULL) return 0;
  g->budget = set->budget;
  if (!set->client_stop) n = 0;
  if (n > SL_GUARD_MAX_CLIENT_STOPS) {
    snprintf(err, errlen, "'stop' may hold at most %d strings", SL_GUARD_MAX_CLIENT_STOPS);
    return SL_EINVAL;
  }
  for (int i = 0; i < n; i++)
    if (lens[i] == 0 || lens[i] > SL_GUARD_MAX_STOP_LEN) {
      snprintf(err, errlen, "'stop[%d]' must be 1 to %d bytes", i, SL_GUARD_MAX_STOP_LEN);
      return SL_EINVAL;
    }
  if (n == 0) {
    g->stop_ac = set->stop_ac;
  } else {
    const char *pats[SL_GUARD_MAX_STOPS + SL_GUARD_MAX_CLIENT_STOPS];
    size_t plens[SL_GUARD_MAX_STOPS + SL_GUARD_MAX_CLIENT_STOPS];
    int np = 0;
    for (int i = 0; i < set->nstops; i++) {
      pats[np] = set->stops[i];
      plens[np++] = set->stop_lens[i];
    }
    for (int i = 0; i < n; i++) {
      pats[np] = stops[i];
      plens[np++] = lens[i];
    }
    size_t size = sl_ac_size(pats, plens, (size_t)np, 0);
    void *mem = size ? sl_malloc(size) : NULL;
    if (mem == NULL || sl_ac_build(mem, size, pats, plens, (size_t)np, 0, &g->stop_ac) != 0) {
      sl_free(mem);
      snprintf(err, errlen, "'stop' cannot be compiled");
      return SL_EINVAL;
    }
    g->own_stop_ac = 1;
  }
  if (g->stop_ac) sl_ac_stream_init(&g->stop, g->stop_ac);
  for (int c = 0; c < SL_CH__COUNT; c++) {
    if (set->redact_ac) sl_ac_stream_init(&g->ch[c].redact, set->redact_ac);
    if (set->rx) sl_rx_stream_init(&g->ch[c].rx, set->rx);
    if (set->pat_ac) sl_ac_stream_init(&g->ch[c].pat, set->pat_ac);
  }
  /* The loop detector is made when the stream has min_length tokens (no
   * loop can be found before): a short answer never pays for it. */
  for (int i = 0; i < set->nltl; i++) sl_ltl_monitor_init(&g->mon[i], set->ltl[i].f);
  return 0;
}

void sl_guard_free(sl_guard_t *g) {
  if (g->own_stop_ac) sl_free(g->stop_ac);
  g->stop_ac = NULL;
  g->own_stop_ac = 0;
  sl_free(g->loops_mem);
  g->loops_mem = NULL;
  g->loops = NULL;
  for (int c = 0; c < SL_CH__COUNT; c++) {
    for (int i = 0; i < g->ch[c].nmasks; i++) sl_free(g->ch[c].masks[i].with);
    sl_free(g->ch[c].masks);
    g->ch[c].masks = NULL;
    g->ch[c].nmasks = g->ch[c].capmasks = 0;
  }
}

int sl_guard_wants_text(const sl_guard_t *g) {
  return g->set != NULL && (g->stop_ac != NULL || g->set->redact_ac != NULL || g->set->rx != NULL ||
                            g->set->pat_ac != NULL);
}

/* ---- verdicts ---- */

/* A guard fired with action a.  Terminal actions end the stream: the first
 * one wins.  Annotations are counted and kept as the last note. */
static int sl__fire(sl_guard_t *g, sl_guard_kind_t k, sl_guard_action_t a, const char *name, const char *fmt,
                    ...) __attribute__((format(printf, 5, 6)));
static int sl__fire(sl_guard_t *g, sl_guard_kind_t k, sl_guard_action_t a, const char *name, const char *fmt,
                    ...) {
  sl_guard_verdict_t v = {.kind = k, .action = a};
  snprintf(v.name, sizeof(v.name), "%s", name);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v.detail, sizeof(v.detail), fmt, ap);
  va_end(ap);
  if (a == SL_GACT_ANNOTATE || a == SL_GACT_REPLACE) {
    g->note = v;
    g->annotations++;
    return g->fired;
  }
  if (!g->fired) {
    g->fired = 1;
    g->verdict = v;
  }
  return 1;
}

int sl_guard_fire(sl_guard_t *g, sl_guard_kind_t kind, sl_guard_action_t action, const char *name,
                  const char *detail) {
  return sl__fire(g, kind, action, name, "%s", detail);
}

/* ---- masks ---- */

/* Whether the kept range m and the new range [s, e) become one: masks
 * that touch merge (one mask shows for both); a replacement merges only
 * with what it overlaps. */
static int sl__joins(const sl_guard_range_t *m, uint64_t s, uint64_t e, int with) {
  if (with || m->with) return m->start < e && m->end > s;
  return m->start <= e && m->end >= s;
}

/* Adds [s, e) shown as with[0..wlen) (with NULL: the set's mask; owned
 * from here).  Returns 0, or SL_EINVAL when a replacement overlaps an
 * earlier one (nothing changes then). */
static int sl__add_range(sl_guard_t *g, int ch, uint64_t s, uint64_t e, char *with, size_t wlen) {
  sl_guard_chan_t *c = &g->ch[ch];
  /* Kept sorted by start: matches of different kinds (a literal inside a
   * class match) arrive in no set order. */
  int i = 0, j;
  while (i < c->nmasks && (c->masks[i].end < s || (c->masks[i].end == s && !sl__joins(&c->masks[i], s, e, with != NULL))))
    i++;
  int secret = with == NULL;
  for (j = i; j < c->nmasks && sl__joins(&c->masks[j], s, e, with != NULL); j++) {
    if (with != NULL && c->masks[j].with != NULL) {
      sl_free(with);
      return SL_EINVAL;
    }
    if (c->masks[j].with == NULL) secret = 1;
  }
  for (j = i; j < c->nmasks && sl__joins(&c->masks[j], s, e, with != NULL); j++) {
    if (c->masks[j].start < s) s = c->masks[j].start;
    if (c->masks[j].end > e) e = c->masks[j].end;
    sl_free(c->masks[j].with); /* a replacement under a secret's mask */
  }
  if (secret) { /* a secret's mask wins over a replacement */
    sl_free(with);
    with = NULL;
    wlen = 0;
  }
  if (j == i) {
    if (c->nmasks == c->capmasks) {
      c->capmasks = c->capmasks ? 2 * c->capmasks : 8;
      c->masks = sl_realloc(c->masks, (size_t)c->capmasks * sizeof(*c->masks));
    }
    memmove(c->masks + i + 1, c->masks + i, (size_t)(c->nmasks - i) * sizeof(*c->masks));
    c->nmasks++;
  } else {
    memmove(c->masks + i + 1, c->masks + j, (size_t)(c->nmasks - j) * sizeof(*c->masks));
    c->nmasks -= j - i - 1;
  }
  c->masks[i] = (sl_guard_range_t){s, e, with, wlen};
  return 0;
}

static void sl__add_mask(sl_guard_t *g, int ch, uint64_t s, uint64_t e) {
  sl__add_range(g, ch, s, e, NULL, 0);
  g->redactions++;
}

int sl_guard_replace(sl_guard_t *g, int ch, uint64_t start, uint64_t end, const char *with, size_t n) {
  if (ch < 0 || ch >= SL_CH__COUNT || start >= end) return SL_EINVAL;
  char *w = sl_malloc(n ? n : 1);
  if (w == NULL) return SL_ENOMEM;
  if (n) memcpy(w, with, n);
  return sl__add_range(g, ch, start, end, w, n);
}

void sl_guard_cap_budget(sl_guard_t *g, int64_t n) {
  if (n > 0 && (g->budget == 0 || n < g->budget)) g->budget = n;
}

static int sl__redacted(sl_guard_t *g, int ch, uint64_t s, uint64_t e, const char *what) {
  const sl_guardset_t *set = g->set;
  if (set->redact_action == SL_GACT_REPLACE) {
    sl__add_mask(g, ch, s, e);
    return 0;
  }
  int was = g->fired;
  int rc = sl__fire(g, SL_GUARD_REDACT, set->redact_action, "redaction", "%s at %s offset %llu, %llu bytes",
                    what, ch == SL_CH_CONTENT ? "content" : ch == SL_CH_REASONING ? "reasoning" : "tool-call",
                    (unsigned long long)s, (unsigned long long)(e - s));
  if (!was && g->fired) {
    g->verdict.ch = ch;
    g->verdict.at = s;
  }
  return rc;
}

int sl_guard_masked(const sl_guard_t *g, int ch, uint64_t a, uint64_t b) {
  const sl_guard_chan_t *c = &g->ch[ch];
  for (int i = 0; i < c->nmasks; i++)
    if (c->masks[i].start < b && c->masks[i].end > a) return 1;
  return 0;
}

void sl_guard_forget(sl_guard_t *g, int ch, uint64_t upto) {
  sl_guard_chan_t *c = &g->ch[ch];
  int k = 0;
  while (k < c->nmasks && c->masks[k].end <= upto) k++;
  if (k == 0) return;
  for (int i = 0; i < k; i++) sl_free(c->masks[i].with);
  memmove(c->masks, c->masks + k, (size_t)(c->nmasks - k) * sizeof(*c->masks));
  c->nmasks -= k;
}

size_t sl_guard_render(const sl_guard_t *g, int ch, uint64_t at, const char *text, size_t n, char *out,
                       size_t cap, int *masked) {
  const sl_guard_chan_t *c = &g->ch[ch];
  size_t w = 0;
  uint64_t pos = at, end = at + n;
  int touched = 0;
  for (int i = 0; i < c->nmasks && pos < end; i++) {
    const sl_guard_range_t *m = &c->masks[i];
    if (m->end <= pos) continue;
    if (m->start >= end) break;
    touched = 1;
    if (m->start > pos) {
      size_t k = (size_t)(m->start - pos);
      if (w + k > cap) return (size_t)-1;
      memcpy(out + w, text + (pos - at), k);
      w += k;
      pos = m->start;
    }
    if (m->start >= at) { /* the mask stands where its range starts */
      const char *mk = m->with ? m->with : g->set->mask;
      size_t ml = m->with ? m->wlen : g->set->mask_len;
      if (w + ml > cap) return (size_t)-1;
      memcpy(out + w, mk, ml);
      w += ml;
    }
    pos = m->end < end ? m->end : end;
  }
  if (pos < end) {
    size_t k = (size_t)(end - pos);
    if (w + k > cap) return (size_t)-1;
    memcpy(out + w, text + (pos - at), k);
    w += k;
  }
  if (masked) *masked = touched;
  return w;
}

/* ---- feeding text ---- */

int sl_guard_feed(sl_guard_t *g, int ch, const char *text, size_t n) {
  const sl_guardset_t *set = g->set;
  if (set == NULL || g->fired) return g->fired;
  sl_guard_chan_t *c = &g->ch[ch];
  sl_ac_match_t m[16];
  size_t nm, used;
  if (ch == SL_CH_CONTENT && g->stop_ac && g->stop_at == SL__NONE) {
    sl_ac_stream_t *st = &g->stop;
    for (size_t off = 0; off < n && g->stop_at == SL__NONE; off += used) {
      if (sl_ac_feed(st, text + off, n - off, m, 16, &nm, &used) != 0) break;
      if (nm > 0) {
        /* The earliest-ending stop is where the engine would have stopped. */
        g->stop_at = m[0].end - m[0].len;
        if (set->stop_action == SL_GACT_ANNOTATE) {
          sl__fire(g, SL_GUARD_STOP, SL_GACT_ANNOTATE, "stop", "stop sequence at content offset %llu",
                   (unsigned long long)g->stop_at);
          g->stop_at = SL__NONE;
        } else {
          sl__fire(g, SL_GUARD_STOP, set->stop_action, "stop", "stop sequence at content offset %llu",
                   (unsigned long long)g->stop_at);
          g->verdict.at = g->stop_at;
        }
      }
    }
  }
  if (set->redact_ac && ch != SL_CH_TOOL) {
    for (size_t off = 0; off < n; off += used) {
      if (sl_ac_feed(&c->redact, text + off, n - off, m, 16, &nm, &used) != 0) break;
      for (size_t i = 0; i < nm; i++) sl__redacted(g, ch, m[i].end - m[i].len, m[i].end, "literal");
    }
  }
  if (set->rx && ch != SL_CH_TOOL) {
    sl_rx_match_t r[SL_RX_MAX_MATCHES];
    for (size_t off = 0; off < n; off += used) {
      if (sl_rx_feed(&c->rx, text + off, n - off, r, SL_RX_MAX_MATCHES, &nm, &used) != 0) break;
      for (size_t i = 0; i < nm; i++) sl__redacted(g, ch, r[i].start, r[i].end, sl_rx_class_name(r[i].cls));
    }
  }
  if (set->pat_ac) {
    for (size_t off = 0; off < n; off += used) {
      if (sl_ac_feed(&c->pat, text + off, n - off, m, 16, &nm, &used) != 0) break;
      for (size_t i = 0; i < nm; i++)
        g->pat_hits_ltl[set->pat_ltl[m[i].pattern]] |= (uint64_t)1 << set->pat_bit[m[i].pattern];
    }
  }
  c->fed += n;
  return g->fired;
}

uint64_t sl_guard_final(const sl_guard_t *g, int ch) {
  const sl_guardset_t *set = g->set;
  const sl_guard_chan_t *c = &g->ch[ch];
  if (set == NULL || g->text_ended) return c->fed;
  size_t hold = 0, h;
  if (ch == SL_CH_CONTENT && g->stop_ac && (h = sl_ac_holdback(&g->stop)) > hold) hold = h;
  if (set->redact_action != SL_GACT_ANNOTATE) {
    if (set->redact_ac && (h = sl_ac_holdback(&c->redact)) > hold) hold = h;
    if (set->rx && (h = sl_rx_holdback(&c->rx)) > hold) hold = h;
  }
  return c->fed - (hold < c->fed ? hold : c->fed);
}

int sl_guard_end_text(sl_guard_t *g) {
  const sl_guardset_t *set = g->set;
  if (set == NULL || g->text_ended) return g->fired;
  g->text_ended = 1;
  if (set->rx && !g->fired) {
    for (int ch = 0; ch < SL_CH__COUNT; ch++) {
      sl_rx_match_t r[SL_RX_MAX_MATCHES];
      size_t nm = 0;
      if (sl_rx_finish(&g->ch[ch].rx, r, SL_RX_MAX_MATCHES, &nm) != 0) continue;
      for (size_t i = 0; i < nm; i++) sl__redacted(g, ch, r[i].start, r[i].end, sl_rx_class_name(r[i].cls));
    }
  }
  if (set->loop_on && g->lbn > 0 && !g->fired) sl__loop_flush(g);
  /* A property the finished trace violates (F tool_call never came). */
  for (int i = 0; i < set->nltl && !g->fired; i++) {
    if (g->ltl_done[i]) continue;
    g->ltl_done[i] = 1;
    if (sl_ltl_monitor_final(&g->mon[i]) == SL_LTL_VIOLATED) {
      char name[80];
      snprintf(name, sizeof(name), "ltl:%s", set->ltl[i].name);
      sl__fire(g, SL_GUARD_LTL, set->ltl[i].action, name, "%s violated at the end of the stream",
               set->ltl[i].formula);
    }
  }
  return g->fired;
}

/* ---- token steps ---- */

/* Pushes the buffered tokens into the loop detector; a loop found fires. */
static void sl__loop_flush(sl_guard_t *g) {
  const sl_guardset_t *set = g->set;
  if (g->loops == NULL) {
    uint32_t need = set->loop_cfg.min_length;
    if (need > SL_GUARD_LOOP_BUF - SL_GUARD_LOOP_IDS) need = SL_GUARD_LOOP_BUF - SL_GUARD_LOOP_IDS;
    if ((uint32_t)g->lbn < need) return; /* too few tokens for any loop: keep them */
    g->loops_mem = sl_malloc(set->loop_size);
    if (sl_loops_init(g->loops_mem, set->loop_size, &set->loop_cfg, &g->loops) != 0) {
      sl_free(g->loops_mem); /* cannot happen: the set checked these settings */
      g->loops_mem = NULL;
      g->lbn = 0;
      return;
    }
  }
  sl_loop_t lp;
  int found = 0;
  for (int i = 0; i < g->lbn && !found; i++)
    if (sl_loops_push(g->loops, g->lbuf[i], &lp) == 0 && lp.state == SL_LOOPS_NEW) found = 1;
  g->lbn = 0;
  if (found && !g->fired)
    sl__fire(g, SL_GUARD_LOOP, g->set->loop_action, "loop", "period %u from token %llu, %u repeats, %u edits",
             lp.period, (unsigned long long)lp.start, lp.repeats, lp.max_dist);
}

static void sl__ltl_step(sl_guard_t *g, int i, uint64_t ev, const char *why) {
  const sl_guard_ltl_t *m = &g->set->ltl[i];
  sl_ltl_verdict_t v = sl_ltl_monitor_step(&g->mon[i], ev);
  if (v == SL_LTL_OPEN) return;
  g->ltl_done[i] = 1;
  if (v == SL_LTL_VIOLATED) {
    char name[80];
    snprintf(name, sizeof(name), "ltl:%s", m->name);
    sl__fire(g, SL_GUARD_LTL, m->action, name, "%s violated at step %llu%s", m->formula,
             (unsigned long long)g->mon[i].steps, why);
  }
}

int sl_guard_step(sl_guard_t *g, unsigned what, const int32_t *ids, int n, uint32_t text_hash) {
  const sl_guardset_t *set = g->set;
  if (set == NULL || g->fired) return g->fired;
  g->gap_stepped = 0;
  int token = (what & (SL_GSTEP_TEXT | SL_GSTEP_REASONING | SL_GSTEP_TOOL)) != 0;
  if (token) g->tokens++;
  if (token && set->loop_on) {
    /* Tokens are pushed in batches: with many streams the detector's
     * state is cold at every token, and a batch pays for that once. */
    if (n > 0) {
      for (int i = 0; i < n; i++) {
        if (g->lbn == SL_GUARD_LOOP_BUF) sl__loop_flush(g);
        g->lbuf[g->lbn++] = (uint32_t)ids[i];
      }
    } else {
      if (g->lbn == SL_GUARD_LOOP_BUF) sl__loop_flush(g);
      g->lbuf[g->lbn++] = text_hash;
    }
    if (g->lbn >= set->loop_batch || (what & SL_GSTEP_FINISH)) sl__loop_flush(g);
  }
  for (int i = 0; i < set->nltl && !g->fired; i++) {
    if (g->ltl_done[i]) continue;
    const sl_guard_ltl_t *m = &set->ltl[i];
    uint64_t ev = g->pat_hits_ltl[i];
    if ((what & SL_GSTEP_TEXT) && m->p_text >= 0) ev |= (uint64_t)1 << m->p_text;
    if ((what & SL_GSTEP_REASONING) && m->p_reasoning >= 0) ev |= (uint64_t)1 << m->p_reasoning;
    if ((what & SL_GSTEP_TOOL) && m->p_tool >= 0) ev |= (uint64_t)1 << m->p_tool;
    if ((what & SL_GSTEP_FINISH) && m->p_finish >= 0) ev |= (uint64_t)1 << m->p_finish;
    g->pat_hits_ltl[i] = 0;
    sl__ltl_step(g, i, ev, "");
  }
  if (!g->fired && g->budget > 0 && g->tokens >= g->budget && !(what & SL_GSTEP_FINISH))
    sl__fire(g, SL_GUARD_BUDGET, set->budget > 0 ? set->budget_action : SL_GACT_END, "budget",
             "%lld completion tokens reached", (long long)g->budget);
  return g->fired;
}

int sl_guard_tick(sl_guard_t *g, uint64_t idle_ms, int first) {
  const sl_guardset_t *set = g->set;
  if (set == NULL || g->fired) return g->fired;
  for (int i = 0; i < set->nltl && !g->fired; i++) {
    if (g->ltl_done[i] || (g->gap_stepped & (1u << i))) continue;
    const sl_guard_ltl_t *m = &set->ltl[i];
    if (first && m->gap_ms && idle_ms >= m->gap_ms) {
      g->gap_stepped |= 1u << i;
      char why[64];
      snprintf(why, sizeof(why), " (no token for %llu ms)", (unsigned long long)idle_ms);
      sl__ltl_step(g, i, (uint64_t)1 << m->p_gap, why);
    } else if (!first && m->ttft_ms && idle_ms >= m->ttft_ms) {
      g->gap_stepped |= 1u << i;
      char why[64];
      snprintf(why, sizeof(why), " (no first token after %llu ms)", (unsigned long long)idle_ms);
      sl__ltl_step(g, i, (uint64_t)1 << m->p_ttft, why);
    }
  }
  return g->fired;
}

uint64_t sl_guard_tick_ms(const sl_guard_t *g, int first) {
  const sl_guardset_t *set = g->set;
  uint64_t t = 0;
  if (set == NULL || g->fired) return 0;
  for (int i = 0; i < set->nltl; i++) {
    if (g->ltl_done[i] || (g->gap_stepped & (1u << i))) continue;
    uint64_t v = first ? set->ltl[i].gap_ms : set->ltl[i].ttft_ms;
    if (v && (t == 0 || v < t)) t = v;
  }
  return t;
}
