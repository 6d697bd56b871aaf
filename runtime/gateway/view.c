/* view.c: the instance view (see view.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include "runtime/gateway/view.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/base/alloc.h"
#include "runtime/base/errors.h"
#include "runtime/base/prom_parse.h"
#include "runtime/gateway/gateway.h"
#include "runtime/gateway/metrics.h"

const char *const sl_view_max_families[] = {
    "sluice_build_info",
    "sluice_uptime_seconds",
    "sluice_generation",
    "sluice_stream_memory_budget_bytes",
    "sluice_stream_pinned_bytes_peak",
    "sluice_endpoint_ready",
    NULL,
};

/* ---- the shared layout ---- */

#define SL__MAGIC 0x316b7765697676ull /* "vviewk1" */
#define SL__VERSION 1u
#define SL__HEAD_SIZE 4096u

/* One copy of a publication; its seq is odd while a writer is in it. */
typedef struct {
  _Atomic uint64_t seq;
  uint64_t published_ns;          /* CLOCK_MONOTONIC, the same clock in every process */
  int64_t pid;
  int64_t streams_in_flight;
  int64_t task_port;              /* its private loopback port for another worker's task requests (0: none) */
  uint64_t text_len;              /* bytes in text (0 when the render was too long) */
  uint64_t text_size;             /* the render's length (> SL_VIEW_TEXT_MAX: not published) */
  uint64_t counters[SL_C__COUNT];
  char text[SL_VIEW_TEXT_MAX];
} sl__copy_t;

/* A worker's slot (or the retired one): two copies, cur the one to read. */
typedef struct {
  _Atomic uint32_t cur;
  _Atomic uint32_t used; /* 1 once published, 0 again when retired */
  uint8_t pad[56];
  sl__copy_t copy[2];
} sl__slot_t;

typedef struct {
  uint64_t magic;
  uint32_t version, ncounters;
  int32_t nworkers, pad;
  uint64_t text_max, slot_size;
  _Atomic uint64_t retire_seq; /* odd while a retirement moves totals */
  _Atomic uint64_t retired;    /* workers retired so far */
  _Atomic uint64_t lost;       /* streams they had in flight when they died */
} sl__head_t;

struct sl_view_s {
  void *map;
  size_t size;
  int worker;   /* 1..N */
  int nworkers; /* N */
  int task_port; /* what this worker publishes as its task port */
};

static size_t sl__view_size(int nworkers) { return SL__HEAD_SIZE + (size_t)(nworkers + 1) * sizeof(sl__slot_t); }

static sl__head_t *sl__head(void *map) { return map; }

static sl__slot_t *sl__slot(void *map, int i) {
  return (sl__slot_t *)((char *)map + SL__HEAD_SIZE + (size_t)i * sizeof(sl__slot_t));
}

static uint64_t sl__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int sl_view_create(int nworkers, int *fd, char *err, size_t errlen) {
  if (nworkers < 1 || nworkers > SL_VIEW_MAX_WORKERS) {
    snprintf(err, errlen, "workers: %d is outside 1..%d", nworkers, SL_VIEW_MAX_WORKERS);
    return SL_EINVAL;
  }
  int f = memfd_create("sluice-view", MFD_CLOEXEC);
  if (f < 0) {
    int e = errno;
    snprintf(err, errlen, "memfd_create: %s", strerror(e));
    return -e;
  }
  size_t size = sl__view_size(nworkers);
  /* ftruncate leaves the file sparse: a slot costs memory only as far as
   * its publications reach. */
  if (ftruncate(f, (off_t)size) < 0) {
    int e = errno;
    snprintf(err, errlen, "ftruncate(%zu): %s", size, strerror(e));
    close(f);
    return -e;
  }
  void *map = mmap(NULL, SL__HEAD_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
  if (map == MAP_FAILED) {
    int e = errno;
    snprintf(err, errlen, "mmap: %s", strerror(e));
    close(f);
    return -e;
  }
  sl__head_t *h = map;
  h->version = SL__VERSION;
  h->ncounters = SL_C__COUNT;
  h->nworkers = nworkers;
  h->text_max = SL_VIEW_TEXT_MAX;
  h->slot_size = sizeof(sl__slot_t);
  atomic_store(&h->retire_seq, 0);
  atomic_store(&h->retired, 0);
  atomic_store(&h->lost, 0);
  h->magic = SL__MAGIC;
  munmap(map, SL__HEAD_SIZE);
  *fd = f;
  return 0;
}

/* Maps the view in fd and checks that this binary lays it out the same. */
static int sl__map(int fd, void **map, size_t *size, int *nworkers, char *err, size_t errlen) {
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0 || (size_t)st.st_size < SL__HEAD_SIZE) {
    snprintf(err, errlen, "view fd %d is not a view", fd);
    return SL_EINVAL;
  }
  void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    int e = errno;
    snprintf(err, errlen, "mmap of the view: %s", strerror(e));
    return -e;
  }
  const sl__head_t *h = m;
  if (h->magic != SL__MAGIC || h->version != SL__VERSION || h->ncounters != SL_C__COUNT ||
      h->text_max != SL_VIEW_TEXT_MAX || h->slot_size != sizeof(sl__slot_t) || h->nworkers < 1 ||
      h->nworkers > SL_VIEW_MAX_WORKERS || sl__view_size(h->nworkers) != (size_t)st.st_size) {
    snprintf(err, errlen, "view fd %d was made by another build of sluice (layout differs)", fd);
    munmap(m, (size_t)st.st_size);
    return SL_EINVAL;
  }
  *map = m;
  *size = (size_t)st.st_size;
  *nworkers = h->nworkers;
  return 0;
}

/* ---- publishing and reading a slot ---- */

/* Writes a publication into the copy readers are not reading, then makes
 * it current.  The odd sequence is set whatever a writer that died left. */
static void sl__write(sl__slot_t *s, const uint64_t *counters, int64_t pid, int64_t in_flight, int64_t task_port,
                      uint64_t ns, const char *text, size_t len, size_t size) {
  uint32_t next = (atomic_load_explicit(&s->cur, memory_order_relaxed) ^ 1u) & 1u;
  sl__copy_t *c = &s->copy[next];
  uint64_t odd = (atomic_load_explicit(&c->seq, memory_order_relaxed) + 1) | 1u;
  atomic_store_explicit(&c->seq, odd, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  c->published_ns = ns;
  c->pid = pid;
  c->streams_in_flight = in_flight;
  c->task_port = task_port;
  c->text_len = len;
  c->text_size = size;
  if (counters) memcpy(c->counters, counters, sizeof(c->counters));
  else memset(c->counters, 0, sizeof(c->counters));
  if (len > 0) memcpy(c->text, text, len);
  atomic_store_explicit(&c->seq, odd + 1, memory_order_release);
  atomic_store_explicit(&s->cur, next, memory_order_release);
}

/* A slot as read: a consistent copy of its current publication. */
typedef struct {
  int used;
  uint64_t published_ns;
  int64_t pid, streams_in_flight, task_port;
  uint64_t text_size;
  uint64_t counters[SL_C__COUNT];
  char *text; /* owned, grown as needed */
  size_t text_len, text_cap;
} sl__snap_t;

/* Copies slot s into o (the text too when want_text).  Returns 0, or
 * SL_EAGAIN when the writer kept changing it under every try. */
static int sl__read(const sl__slot_t *s, sl__snap_t *o, int want_text) {
  for (int t = 0; t < SL_VIEW_READ_TRIES; t++) {
    if (t > 0) sched_yield();
    o->used = (int)atomic_load_explicit(&s->used, memory_order_acquire);
    o->text_len = 0;
    if (!o->used) return 0;
    const sl__copy_t *c = &s->copy[atomic_load_explicit(&s->cur, memory_order_acquire) & 1u];
    uint64_t s1 = atomic_load_explicit(&c->seq, memory_order_acquire);
    if (s1 & 1u) continue;
    o->published_ns = c->published_ns;
    o->pid = c->pid;
    o->streams_in_flight = c->streams_in_flight;
    o->task_port = c->task_port;
    o->text_size = c->text_size;
    memcpy(o->counters, c->counters, sizeof(o->counters));
    size_t n = c->text_len;
    if (n > SL_VIEW_TEXT_MAX) n = SL_VIEW_TEXT_MAX; /* a torn length is caught below; it must not overrun first */
    if (want_text) {
      if (o->text_cap < n + 1) {
        o->text_cap = n + 1;
        o->text = sl_realloc(o->text, o->text_cap);
      }
      memcpy(o->text, c->text, n);
      o->text[n] = '\0';
    }
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&c->seq, memory_order_relaxed) == s1) {
      o->text_len = want_text ? n : 0;
      return 0;
    }
  }
  return SL_EAGAIN;
}

/* Reads slots 0..n (the retired one and every worker's but skip's) into
 * snaps[], as of one moment between retirements; failed[i] is 1 for a slot
 * that could not be read.  Returns 0 or SL_EAGAIN. */
static int sl__gather(void *map, int n, int skip, int want_text, sl__snap_t *snaps, int *failed) {
  sl__head_t *h = sl__head(map);
  for (int t = 0; t < SL_VIEW_READ_TRIES; t++) {
    if (t > 0) sched_yield();
    uint64_t r1 = atomic_load_explicit(&h->retire_seq, memory_order_acquire);
    if (r1 & 1u) continue;
    for (int i = 0; i <= n; i++) {
      failed[i] = 0;
      if (i == skip) {
        snaps[i].used = 0;
        continue;
      }
      failed[i] = sl__read(sl__slot(map, i), &snaps[i], want_text) < 0;
      if (failed[i]) snaps[i].used = 0;
    }
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&h->retire_seq, memory_order_relaxed) == r1) return 0;
  }
  return SL_EAGAIN;
}

static void sl__snaps_free(sl__snap_t *snaps, int n) {
  for (int i = 0; i < n; i++) sl_free(snaps[i].text);
  sl_free(snaps);
}

/* ---- the worker's side ---- */

int sl_view_attach(int fd, int worker, sl_view_t **out, char *err, size_t errlen) {
  void *map;
  size_t size;
  int n;
  int rc = sl__map(fd, &map, &size, &n, err, errlen);
  if (rc < 0) return rc;
  if (worker < 1 || worker > n) {
    snprintf(err, errlen, "worker %d is outside 1..%d, the view's workers", worker, n);
    munmap(map, size);
    return SL_EINVAL;
  }
  sl_view_t *v = sl_calloc(1, sizeof(*v));
  v->map = map;
  v->size = size;
  v->worker = worker;
  v->nworkers = n;
  *out = v;
  return 0;
}

void sl_view_detach(sl_view_t *v) {
  if (v == NULL) return;
  munmap(v->map, v->size);
  sl_free(v);
}

int sl_view_nworkers(const sl_view_t *v) { return v->nworkers; }

void sl_view_set_task_port(sl_view_t *v, int port) { v->task_port = port; }

int sl_view_publish(sl_view_t *v, const sl_counters_t *c, int streams_in_flight, const char *text, size_t len) {
  sl__slot_t *s = sl__slot(v->map, v->worker);
  size_t kept = len <= SL_VIEW_TEXT_MAX ? len : 0;
  sl__write(s, c->v, (int64_t)getpid(), streams_in_flight, v->task_port, sl__now_ns(), text, kept, len);
  atomic_store_explicit(&s->used, 1, memory_order_release);
  return 0;
}

void sl_view_publish_gateway(sl_gateway_t *gw, char **text, size_t *len) {
  if (gw->view == NULL && text == NULL) return;
  size_t n;
  char *t = sl_metrics_render(gw, &n);
  if (gw->view != NULL) sl_view_publish(gw->view, &gw->counters, gw->streams.n, t, n);
  if (text == NULL) {
    sl_free(t);
    return;
  }
  *text = t;
  *len = n;
}

int sl_view_instance(sl_view_t *v, sl_counters_t *sum, sl_view_worker_t *w, int cap) {
  int n = v->nworkers;
  sl__snap_t *snaps = sl_calloc((size_t)n + 1, sizeof(*snaps));
  int *failed = sl_calloc((size_t)n + 1, sizeof(*failed));
  int rc = sl__gather(v->map, n, -1, 0, snaps, failed);
  memset(sum, 0, sizeof(*sum));
  uint64_t now = sl__now_ns();
  int k = 0;
  for (int i = 0; i <= n; i++) {
    const sl__snap_t *s = &snaps[i];
    if (s->used)
      for (int c = 0; c < SL_C__COUNT; c++) {
        if (c == SL_C_STREAM_PINNED_PEAK) sl_counter_max(sum, c, s->counters[c]);
        else sum->v[c] += s->counters[c];
      }
    if (i == 0 || k >= cap) continue;
    sl_view_worker_t *o = &w[k++];
    memset(o, 0, sizeof(*o));
    o->worker = i;
    o->published = s->used;
    if (!s->used) continue;
    o->pid = (int)s->pid;
    o->age_ms = now > s->published_ns ? (double)(now - s->published_ns) / 1e6 : 0;
    o->up = o->age_ms < (double)SL_VIEW_UP_PERIODS * SL_VIEW_PERIOD_MS;
    o->streams_in_flight = (int)s->streams_in_flight;
    o->task_port = (int)s->task_port;
  }
  sl__snaps_free(snaps, n + 1);
  sl_free(failed);
  return rc < 0 ? rc : k;
}

void sl_view_losses(const sl_view_t *v, uint64_t *restarts, uint64_t *lost) {
  const sl__head_t *h = sl__head(v->map);
  *restarts = atomic_load_explicit(&h->retired, memory_order_relaxed);
  *lost = atomic_load_explicit(&h->lost, memory_order_relaxed);
}

/* ---- the merge ---- */

/* A growing output text. */
typedef struct {
  char *p;
  size_t n, cap;
} sl__buf_t;

static void sl__put(sl__buf_t *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    while (b->n + n + 1 > b->cap) b->cap = b->cap ? b->cap * 2 : 65536;
    b->p = sl_realloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void sl__puts(sl__buf_t *b, const char *s) { sl__put(b, s, strlen(s)); }

/* A value the way the exposition writes it: integers exactly, else
 * round-trip precision; NaN and the infinities by name. */
static void sl__put_value(sl__buf_t *b, double v) {
  char tmp[40];
  if (isnan(v)) snprintf(tmp, sizeof(tmp), "NaN");
  else if (isinf(v)) snprintf(tmp, sizeof(tmp), "%cInf", v > 0 ? '+' : '-');
  else if (fabs(v) < 9.007199254740992e15 && v == (double)(int64_t)v) snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
  else snprintf(tmp, sizeof(tmp), "%.17g", v);
  sl__puts(b, tmp);
}

/* A family of the merged output. */
typedef struct {
  const char *name, *help, *type; /* inside some parse's text */
  int max;                        /* merged with max, not sum */
  int first, last;                /* its samples, a list through sl__msample_t.next */
} sl__mfam_t;

/* A sample of the merged output: the first sample seen with its key
 * (name and label set), and the value so far. */
typedef struct {
  const sl_prom_t *p;
  int s;
  double v;
  int next;     /* the family's next sample, or -1 */
  uint64_t hash;
} sl__msample_t;

static uint64_t sl__fnv(uint64_t h, const char *s) {
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return (h ^ 0xff) * 1099511628211ull;
}

/* A key's hash, the same whatever order its labels come in. */
static uint64_t sl__key_hash(const sl_prom_t *p, const sl_prom_sample_t *s) {
  uint64_t h = sl__fnv(1469598103934665603ull, s->name), l = 0;
  for (int i = 0; i < s->nlabels; i++) {
    const sl_prom_label_t *lb = &p->labels[s->label0 + i];
    l += sl__fnv(sl__fnv(1469598103934665603ull, lb->name), lb->value);
  }
  return h ^ (l * 0x9e3779b97f4a7c15ull);
}

static int sl__same_key(const sl_prom_t *pa, const sl_prom_sample_t *a, const sl_prom_t *pb,
                        const sl_prom_sample_t *b) {
  if (a->nlabels != b->nlabels || strcmp(a->name, b->name) != 0) return 0;
  for (int i = 0; i < a->nlabels; i++) {
    const sl_prom_label_t *la = &pa->labels[a->label0 + i];
    const char *vb = sl_prom_label(pb, b, la->name);
    if (vb == NULL || strcmp(vb, la->value) != 0) return 0;
  }
  return 1;
}

static int sl__is_max_family(const char *name) {
  for (int i = 0; sl_view_max_families[i]; i++)
    if (strcmp(sl_view_max_families[i], name) == 0) return 1;
  return 0;
}

/* A label value, escaped as the format asks. */
static void sl__put_label_value(sl__buf_t *b, const char *v) {
  for (const char *q = v;; q++) {
    if (*q != '\0' && *q != '\\' && *q != '"' && *q != '\n') continue;
    sl__put(b, v, (size_t)(q - v));
    if (*q == '\0') return;
    sl__puts(b, *q == '\\' ? "\\\\" : *q == '"' ? "\\\"" : "\\n");
    v = q + 1;
  }
}

static void sl__put_sample(sl__buf_t *b, const sl_prom_t *p, const sl_prom_sample_t *s, double v) {
  sl__puts(b, s->name);
  if (s->nlabels > 0) {
    sl__puts(b, "{");
    for (int i = 0; i < s->nlabels; i++) {
      const sl_prom_label_t *lb = &p->labels[s->label0 + i];
      if (i > 0) sl__puts(b, ",");
      sl__puts(b, lb->name);
      sl__puts(b, "=\"");
      sl__put_label_value(b, lb->value);
      sl__puts(b, "\"");
    }
    sl__puts(b, "}");
  }
  sl__puts(b, " ");
  sl__put_value(b, v);
  sl__puts(b, "\n");
}

/* The merge state: families in output order, samples, and a hash table
 * of sample indices (open addressing, a power of two). */
typedef struct {
  sl__mfam_t *fam;
  int nfam, fam_cap;
  sl__msample_t *smp;
  int nsmp;
  int *table;
  size_t mask;
} sl__merge_t;

static int sl__fam_of(sl__merge_t *m, const sl_prom_family_t *f) {
  const char *name = f ? f->name : "";
  for (int i = 0; i < m->nfam; i++)
    if (strcmp(m->fam[i].name, name) == 0) {
      if (f && m->fam[i].help == NULL) m->fam[i].help = f->help;
      if (f && m->fam[i].type == NULL) m->fam[i].type = f->type;
      return i;
    }
  if (m->nfam == m->fam_cap) {
    m->fam_cap = m->fam_cap ? m->fam_cap * 2 : 128;
    m->fam = sl_realloc(m->fam, (size_t)m->fam_cap * sizeof(*m->fam));
  }
  m->fam[m->nfam] = (sl__mfam_t){name, f ? f->help : NULL, f ? f->type : NULL, sl__is_max_family(name), -1, -1};
  return m->nfam++;
}

static void sl__add(sl__merge_t *m, const sl_prom_t *p, int si, int fam) {
  const sl_prom_sample_t *s = &p->s[si];
  uint64_t h = sl__key_hash(p, s);
  size_t at = (size_t)h & m->mask;
  for (;; at = (at + 1) & m->mask) {
    int k = m->table[at];
    if (k < 0) break;
    sl__msample_t *e = &m->smp[k];
    if (e->hash == h && sl__same_key(e->p, &e->p->s[e->s], p, s)) {
      if (!m->fam[fam].max) e->v += s->value;
      else if (s->value > e->v || isnan(e->v)) e->v = s->value;
      return;
    }
  }
  int k = m->nsmp++;
  m->smp[k] = (sl__msample_t){p, si, s->value, -1, h};
  m->table[at] = k;
  sl__mfam_t *f = &m->fam[fam];
  if (f->last < 0) f->first = k;
  else m->smp[f->last].next = k;
  f->last = k;
}

static int sl__totals_type(const char *type) {
  return type != NULL && (strcmp(type, "counter") == 0 || strcmp(type, "histogram") == 0);
}

/* Merges texts[0..n) into b (see sl_view_merge).  names[i] (may be NULL)
 * names text i in the comment about a text that does not parse. */
static void sl__merge_into(sl__buf_t *b, const char *const *texts, const size_t *lens, int n, int totals_only,
                           const char *const *names) {
  sl_prom_t *ps = sl_calloc((size_t)(n > 0 ? n : 1), sizeof(*ps));
  int *ok = sl_calloc((size_t)(n > 0 ? n : 1), sizeof(*ok));
  size_t total = 0;
  for (int i = 0; i < n; i++) {
    char err[160];
    if (lens[i] == 0) continue;
    if (sl_prom_parse(texts[i], lens[i], &ps[i], err, sizeof(err)) < 0) {
      char line[320];
      snprintf(line, sizeof(line), "# sluice view: %s does not parse (%s); its series are left out\n",
               names && names[i] ? names[i] : "a worker's exposition", err);
      sl__puts(b, line);
      continue;
    }
    ok[i] = 1;
    total += (size_t)ps[i].n;
  }
  sl__merge_t m;
  memset(&m, 0, sizeof(m));
  size_t tsize = 64;
  while (tsize < total * 2) tsize *= 2;
  m.mask = tsize - 1;
  m.table = sl_malloc(tsize * sizeof(*m.table));
  memset(m.table, 0xff, tsize * sizeof(*m.table));
  m.smp = sl_malloc((total > 0 ? total : 1) * sizeof(*m.smp));
  for (int i = 0; i < n; i++) {
    if (!ok[i]) continue;
    const sl_prom_t *p = &ps[i];
    /* Each of this text's families, once, as the merged family it joins
     * (-1: left out). */
    int *map = sl_malloc((size_t)(p->nfam + 1) * sizeof(*map));
    for (int f = -1; f < p->nfam; f++) {
      const sl_prom_family_t *pf = f >= 0 ? &p->fam[f] : NULL;
      map[f + 1] = totals_only && !sl__totals_type(pf ? pf->type : NULL) ? -1 : -2;
    }
    for (int s = 0; s < p->n; s++) {
      int f = p->s[s].family;
      if (map[f + 1] == -1) continue;
      if (map[f + 1] == -2) map[f + 1] = sl__fam_of(&m, f >= 0 ? &p->fam[f] : NULL);
      sl__add(&m, p, s, map[f + 1]);
    }
    sl_free(map);
  }
  for (int f = 0; f < m.nfam; f++) {
    const sl__mfam_t *mf = &m.fam[f];
    if (mf->name[0] && mf->help) {
      sl__puts(b, "# HELP ");
      sl__puts(b, mf->name);
      sl__puts(b, " ");
      sl__puts(b, mf->help);
      sl__puts(b, "\n");
    }
    if (mf->name[0] && mf->type) {
      sl__puts(b, "# TYPE ");
      sl__puts(b, mf->name);
      sl__puts(b, " ");
      sl__puts(b, mf->type);
      sl__puts(b, "\n");
    }
    for (int k = mf->first; k >= 0; k = m.smp[k].next) sl__put_sample(b, m.smp[k].p, &m.smp[k].p->s[m.smp[k].s], m.smp[k].v);
  }
  sl_free(m.fam);
  sl_free(m.smp);
  sl_free(m.table);
  for (int i = 0; i < n; i++) sl_prom_free(&ps[i]);
  sl_free(ps);
  sl_free(ok);
}

char *sl_view_merge(const char *const *texts, const size_t *lens, int n, int totals_only, size_t *len) {
  sl__buf_t b = {NULL, 0, 0};
  sl__put(&b, "", 0);
  sl__merge_into(&b, texts, lens, n, totals_only, NULL);
  *len = b.n;
  return b.p;
}

char *sl_view_metrics(sl_view_t *v, const char *own, size_t ownlen, size_t *len) {
  int n = v->nworkers;
  sl__snap_t *snaps = sl_calloc((size_t)n + 1, sizeof(*snaps));
  int *failed = sl_calloc((size_t)n + 1, sizeof(*failed));
  int rc = sl__gather(v->map, n, v->worker, 1, snaps, failed);
  sl__buf_t b = {NULL, 0, 0};
  char line[640];
  snprintf(line, sizeof(line), "# sluice view: the instance's %d worker(s), answered by worker %d\n", n, v->worker);
  sl__puts(&b, line);
  if (rc < 0) sl__puts(&b, "# sluice view: a retirement kept moving totals; this answer may count a dead worker's twice or not at all\n");
  /* Texts: the answering worker's first (it gives the order), then the
   * other workers', then the retired slot's. */
  const char **texts = sl_calloc((size_t)n + 2, sizeof(*texts));
  size_t *lens = sl_calloc((size_t)n + 2, sizeof(*lens));
  char(*names)[48] = sl_calloc((size_t)n + 2, sizeof(*names));
  const char **namep = sl_calloc((size_t)n + 2, sizeof(*namep));
  int k = 0;
  texts[k] = own;
  lens[k] = ownlen;
  snprintf(names[k], sizeof(names[k]), "worker %d's exposition", v->worker);
  namep[k] = names[k];
  k++;
  for (int j = 1; j <= n + 1; j++) {
    int i = j <= n ? j : 0; /* the retired slot last */
    const sl__snap_t *s = &snaps[i];
    if (i == v->worker) continue;
    if (failed[i]) {
      snprintf(line, sizeof(line), "# sluice view: %s%d's slot kept changing while read; its series are left out\n",
               i ? "worker " : "retired slot ", i);
      sl__puts(&b, line);
      continue;
    }
    if (!s->used) continue;
    if (s->text_size > SL_VIEW_TEXT_MAX) {
      snprintf(line, sizeof(line),
               "# sluice view: %s%d's exposition (%llu bytes) is over the view's %u-byte slot; its series are left "
               "out\n",
               i ? "worker " : "retired slot ", i, (unsigned long long)s->text_size, SL_VIEW_TEXT_MAX);
      sl__puts(&b, line);
      continue;
    }
    texts[k] = s->text;
    lens[k] = s->text_len;
    if (i > 0) snprintf(names[k], sizeof(names[k]), "worker %d's exposition", i);
    else snprintf(names[k], sizeof(names[k]), "the retired slot's exposition");
    namep[k] = names[k];
    k++;
  }
  sl__merge_into(&b, texts, lens, k, 0, namep);
  /* The instance's own series. */
  snprintf(line, sizeof(line),
           "# HELP sluice_workers Worker processes the instance runs (workers: N)\n# TYPE sluice_workers gauge\n"
           "sluice_workers %d\n",
           n);
  sl__puts(&b, line);
  snprintf(line, sizeof(line),
           "# HELP sluice_worker_up 1 when the worker published its state within the last %d ms\n"
           "# TYPE sluice_worker_up gauge\n",
           SL_VIEW_UP_PERIODS * SL_VIEW_PERIOD_MS);
  sl__puts(&b, line);
  const sl__head_t *h = sl__head(v->map);
  snprintf(line, sizeof(line),
           "# HELP sluice_worker_restarts_total Workers that died and were replaced by the supervisor\n"
           "# TYPE sluice_worker_restarts_total counter\nsluice_worker_restarts_total %llu\n"
           "# HELP sluice_worker_streams_lost_total Streams in flight on workers when they died\n"
           "# TYPE sluice_worker_streams_lost_total counter\nsluice_worker_streams_lost_total %llu\n",
           (unsigned long long)atomic_load_explicit(&h->retired, memory_order_relaxed),
           (unsigned long long)atomic_load_explicit(&h->lost, memory_order_relaxed));
  sl__puts(&b, line);
  uint64_t now = sl__now_ns();
  for (int i = 1; i <= n; i++) {
    const sl__snap_t *s = &snaps[i];
    int up = i == v->worker ||
             (s->used && now - s->published_ns < (uint64_t)SL_VIEW_UP_PERIODS * SL_VIEW_PERIOD_MS * 1000000ull);
    snprintf(line, sizeof(line), "sluice_worker_up{worker=\"%d\"} %d\n", i, up);
    sl__puts(&b, line);
  }
  sl_free(texts);
  sl_free(lens);
  sl_free(names);
  sl_free(namep);
  sl__snaps_free(snaps, n + 1);
  sl_free(failed);
  *len = b.n;
  return b.p;
}

/* ---- the supervisor's: retiring a dead worker ---- */

int sl_view_retire(int fd, int worker, uint64_t *streams_lost) {
  if (streams_lost) *streams_lost = 0;
  void *map;
  size_t size;
  int n;
  char err[160];
  int rc = sl__map(fd, &map, &size, &n, err, sizeof(err));
  if (rc < 0) return rc;
  if (worker < 1 || worker > n) {
    munmap(map, size);
    return SL_EINVAL;
  }
  sl__head_t *h = sl__head(map);
  sl__slot_t *dead = sl__slot(map, worker), *ret = sl__slot(map, 0);
  sl__snap_t d, r;
  memset(&d, 0, sizeof(d));
  memset(&r, 0, sizeof(r));
  /* The dead worker writes no more and the supervisor is the retired
   * slot's only writer: these reads succeed at once. */
  rc = sl__read(dead, &d, 1);
  if (rc == 0) rc = sl__read(ret, &r, 1);
  if (rc < 0 || !d.used) {
    sl_free(d.text);
    sl_free(r.text);
    munmap(map, size);
    return rc;
  }
  if (streams_lost) *streams_lost = d.counters[SL_C_STREAMS_ACTIVE];
  uint64_t sum[SL_C__COUNT];
  for (int c = 0; c < SL_C__COUNT; c++)
    sum[c] = (r.used ? r.counters[c] : 0) + (strcmp(sl_counter_kind(c), "total") == 0 ? d.counters[c] : 0);
  const char *texts[2] = {r.used ? r.text : "", d.text_size <= SL_VIEW_TEXT_MAX ? d.text : ""};
  size_t lens[2] = {r.used ? r.text_len : 0, d.text_size <= SL_VIEW_TEXT_MAX ? d.text_len : 0};
  size_t mlen;
  char *merged = sl_view_merge(texts, lens, 2, 1, &mlen);
  /* Readers see the totals in the dead worker's slot or in the retired one,
   * never in both or neither: the header's sequence is odd meanwhile. */
  uint64_t seq = atomic_load_explicit(&h->retire_seq, memory_order_relaxed);
  atomic_store_explicit(&h->retire_seq, (seq + 1) | 1u, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  sl__write(ret, sum, 0, 0, 0, sl__now_ns(), merged, mlen <= SL_VIEW_TEXT_MAX ? mlen : 0, mlen);
  atomic_store_explicit(&ret->used, 1, memory_order_release);
  atomic_store_explicit(&dead->used, 0, memory_order_release);
  sl__write(dead, NULL, 0, 0, 0, 0, NULL, 0, 0);
  sl__write(dead, NULL, 0, 0, 0, 0, NULL, 0, 0);
  atomic_fetch_add_explicit(&h->retired, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->lost, d.counters[SL_C_STREAMS_ACTIVE], memory_order_relaxed);
  atomic_store_explicit(&h->retire_seq, ((seq + 1) | 1u) + 1, memory_order_release);
  sl_free(merged);
  sl_free(d.text);
  sl_free(r.text);
  munmap(map, size);
  return 0;
}
