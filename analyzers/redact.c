/* redact.c: the secret-class scanner of analyzers/redact.h.
 *
 * Each class is a small hand-written state machine over bytes, and all of
 * them advance together, one byte at a time, so where the text was split
 * never matters.  The byte table of a set holds, per byte value, the
 * character sets it belongs to, the candidates it can start ("start" bits:
 * 's' for openai_key, 'b'/'B' for bearer, 'A' for aws_access_key_id, '@'
 * for email), and the starts it allows at the next byte ("ok" bits: a byte
 * outside KEY allows an 's', one that is no letter or digit allows 'b' and
 * 'A', a local-part byte other than '.' allows '@').  A left boundary is
 * thus one AND of the byte's start bits with the previous byte's ok bits.
 * While no machine is running and no byte starts anything, skim() reads
 * the bytes with one table load each and nothing else.  Most starts are
 * false (words beginning with 's' or 'b'), so a start byte whose next byte,
 * when it is in the same chunk, cannot be the second byte of that class
 * ("second" bits) is passed over too.  Where skim() stops, run_after()
 * finds where the current email run began by looking back (at most 65
 * bytes), and the byte that stopped it goes through step(), which steps
 * every machine.  Token-sized chunks use skim_short() instead, which keeps
 * the run start as it goes: cheaper over a few bytes than a look back.
 *
 * Email is the one class whose match begins before the byte that reveals
 * it: the local part is the run of local-part bytes before the '@'.  The
 * stream therefore always knows where the current run began, or that it
 * began with '.' (run_start, kept by step(), skim_short() and
 * run_after()), and an '@' after a run of 1..64 bytes starts a domain
 * scan.  The scan follows the labels, remembers the end of the longest
 * valid address so far, and stops, reporting it, at the first byte after
 * which no longer valid address is possible (mail_can_grow() decides that
 * exactly from the label state and the bytes left under 254).  Exactness
 * matters twice: the scan never stops early (it would cut an address), and
 * a scan that runs on only while it can grow keeps the holdback minimal.
 *
 * Holdback is the distance back to the earliest candidate start over all
 * machines.  Every machine drops a candidate the moment no continuation
 * could complete it, so each start counted is one a continuation would
 * turn into a match, and none shorter is safe.
 */
#include "analyzers/redact.h"

#include <string.h>

/* Start bits: the candidate a byte may begin. */
#define SB_KEY 0x1u    /* 's' */
#define SB_BEARER 0x2u /* 'b' or 'B' */
#define SB_AWS 0x4u    /* 'A' */
#define SB_AT 0x8u     /* '@' */
#define SB_ALL 0xFu
/* The same bits shifted by OK_SHIFT: the starts allowed right after it. */
#define OK_SHIFT 4
/* Character sets. */
#define F_KEY (1u << 8)    /* [A-Za-z0-9_-] */
#define F_TOK (1u << 9)    /* [A-Za-z0-9._~+/-] */
#define F_ALNUM (1u << 10) /* [A-Za-z0-9] */
#define F_UPNUM (1u << 11) /* [A-Z0-9] */
#define F_LOCAL (1u << 12) /* email local-part bytes */
#define F_LABEL (1u << 13) /* [A-Za-z0-9-] */
#define F_ALPHA (1u << 14) /* [A-Za-z] */
#define F_DOT (1u << 15)   /* '.' */
/* The start bits shifted by SECOND_SHIFT: the candidates this byte can be
 * the second byte of ('k'; 'e' or 'E'; the second letters of the AWS
 * prefixes).  '@' needs none: it is the last byte of what it starts. */
#define SECOND_SHIFT 16

#define KEY_MAX 256
#define KEY_MIN_BODY 20
#define TOK_MAX 512
#define TOK_MIN 16
#define AWS_LEN 20
#define LOCAL_MAX 64
#define LABEL_MAX 63
#define MAIL_MAX 254

/* Chunks this short (what is left of them) are skimmed by skim_short(). */
#define SHORT_CHUNK 16

/* run_start when the current run of local-part bytes began with '.'. */
#define RUN_BAD UINT64_MAX

/* key_phase */
enum { KEY_IDLE, KEY_S, KEY_SK, KEY_BODY, KEY_CONT };
/* tok_phase: bits */
#define TOK_RUN 1u  /* in the TOK run */
#define TOK_PAD 2u  /* in the '=' run (a valid token before it) */
#define TOK_CONT 4u /* in the TOK run, a piece continuing an over-long token */
/* word: 1..6 bytes of "bearer" matched, WORD_SPACES after one space or more */
#define WORD_SPACES 7
/* mail */
#define MAIL_ON 1u    /* a domain scan is running */
#define MAIL_ALPHA 2u /* the current label is letters only so far */
#define MAIL_DASH 4u  /* the current label ends with '-' */
#define MAIL_DOT 8u   /* a whole label and '.' came before this one */

static const char aws_prefixes[10][5] = {"AKIA", "ASIA", "ABIA", "ACCA", "AGPA",
                                         "AIDA", "AROA", "ANPA", "ANVA", "APKA"};

static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static int is_digit(int c) { return c >= '0' && c <= '9'; }

int sl_rx_set_init(sl_rx_set_t *set, unsigned classes) {
  if (set == NULL || classes == 0 || (classes & ~(unsigned)SL_RX_ALL) != 0) return SL_AN_EINVAL;
  set->classes = classes;
  for (int c = 0; c < 256; c++) {
    int alpha = is_alpha(c), alnum = alpha || is_digit(c);
    int key = alnum || c == '_' || c == '-';
    int tok = alnum || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '-';
    int local = alnum || (c != 0 && c < 128 && strchr(".!#$%&'*+/=?^_`{|}~-", c) != NULL);
    uint32_t f = 0;
    if (key) f |= F_KEY;
    if (tok) f |= F_TOK;
    if (alnum) f |= F_ALNUM;
    if ((c >= 'A' && c <= 'Z') || is_digit(c)) f |= F_UPNUM;
    if (alnum || c == '-') f |= F_LABEL;
    if (alpha) f |= F_ALPHA;
    if (c == '.') f |= F_DOT;
    uint32_t start = 0, ok = 0;
    if (classes & SL_RX_OPENAI_KEY) {
      if (c == 's') start |= SB_KEY;
      if (!key) ok |= SB_KEY;
    }
    if (classes & SL_RX_BEARER) {
      if (c == 'b' || c == 'B') start |= SB_BEARER;
      if (!alnum) ok |= SB_BEARER;
    }
    if (classes & SL_RX_AWS_KEY_ID) {
      if (c == 'A') start |= SB_AWS;
      if (!alnum) ok |= SB_AWS;
    }
    if (classes & SL_RX_EMAIL) {
      /* Without email the run bookkeeping sees no local-part byte and
       * stays idle. */
      if (local) f |= F_LOCAL;
      if (c == '@') start |= SB_AT;
      if (local && c != '.') ok |= SB_AT;
    }
    /* Read only against start bits, which are there for enabled classes
     * only. */
    uint32_t second = 0;
    if (c == 'k') second |= SB_KEY;
    if (c == 'e' || c == 'E') second |= SB_BEARER;
    for (int k = 0; k < 10; k++)
      if (c == aws_prefixes[k][1]) second |= SB_AWS;
    set->tab[c] = f | start | ok << OK_SHIFT | second << SECOND_SHIFT;
  }
  return 0;
}

static const struct {
  const char *name;
  unsigned cls;
  size_t max;
} class_info[] = {
    {"openai_key", SL_RX_OPENAI_KEY, KEY_MAX},
    {"bearer", SL_RX_BEARER, TOK_MAX},
    {"aws_access_key_id", SL_RX_AWS_KEY_ID, AWS_LEN},
    {"email", SL_RX_EMAIL, MAIL_MAX},
};
#define NCLASSES (sizeof class_info / sizeof class_info[0])

int sl_rx_class_parse(const char *name, size_t len, unsigned *cls) {
  if (name == NULL || cls == NULL) return SL_AN_EINVAL;
  for (size_t i = 0; i < NCLASSES; i++) {
    if (strlen(class_info[i].name) == len && memcmp(class_info[i].name, name, len) == 0) {
      *cls = class_info[i].cls;
      return 0;
    }
  }
  return SL_AN_ENOTFOUND;
}

const char *sl_rx_class_name(unsigned cls) {
  for (size_t i = 0; i < NCLASSES; i++)
    if (class_info[i].cls == cls) return class_info[i].name;
  return NULL;
}

size_t sl_rx_class_max_len(unsigned cls) {
  for (size_t i = 0; i < NCLASSES; i++)
    if (class_info[i].cls == cls) return class_info[i].max;
  return 0;
}

size_t sl_rx_max_holdback(const sl_rx_set_t *set) {
  if (set == NULL) return 0;
  size_t m = 0;
  /* A key or token piece is cut (and stops being held) when it reaches its
   * maximum, so it holds one byte less; an AWS candidate of 20 waits for
   * the byte after it; a running domain scan can grow, so it is under 254
   * (a bare run of local-part bytes holds at most 64). */
  if ((set->classes & SL_RX_OPENAI_KEY) && m < KEY_MAX - 1) m = KEY_MAX - 1;
  if ((set->classes & SL_RX_BEARER) && m < TOK_MAX - 1) m = TOK_MAX - 1;
  if ((set->classes & SL_RX_AWS_KEY_ID) && m < AWS_LEN) m = AWS_LEN;
  if ((set->classes & SL_RX_EMAIL) && m < MAIL_MAX - 1) m = MAIL_MAX - 1;
  return m;
}

void sl_rx_stream_init(sl_rx_stream_t *st, const sl_rx_set_t *set) {
  if (st == NULL) return;
  memset(st, 0, sizeof *st);
  st->set = set;
  /* The start of the stream is a boundary for every class, but no local
   * part ends there. */
  st->ok = SB_KEY | SB_BEARER | SB_AWS;
}

static void put(sl_rx_match_t *out, unsigned *n, uint64_t start, uint64_t end, uint32_t cls) {
  out[*n].start = start;
  out[*n].end = end;
  out[*n].cls = cls;
  (*n)++;
}

/* Whether some prefix of an AWS key id starts with the len bytes in pre
 * followed by c. */
static int aws_prefix_ok(const uint8_t *pre, unsigned len, unsigned c) {
  for (int k = 0; k < 10; k++)
    if (memcmp(aws_prefixes[k], pre, len) == 0 && (unsigned char)aws_prefixes[k][len] == c)
      return 1;
  return 0;
}

/* Whether bytes can follow the domain scanned so far to give a valid
 * address longer than the best one (any valid address after the current
 * byte is longer), within rem more bytes.  Either the current label grows
 * into the last one (it is letters only, under 63 bytes and not the first
 * label: one more letter always gives a valid address, even after a
 * one-letter label), or it is closed with '.' and a two-letter label
 * follows (three bytes; four when a trailing '-' must first be followed by
 * a letter or digit, which needs room under 63).  At the start of a label:
 * two letters after a '.', or a label, '.' and two letters right after the
 * '@'. */
static int mail_can_grow(const sl_rx_stream_t *st, uint64_t rem) {
  unsigned m = st->label_len, fl = st->mail;
  if (m == 0) return rem >= ((fl & MAIL_DOT) ? 2u : 4u);
  if ((fl & MAIL_ALPHA) && (fl & MAIL_DOT) && m < LABEL_MAX && rem >= 1) return 1;
  if (fl & MAIL_DASH) return m < LABEL_MAX && rem >= 4;
  return rem >= 3;
}

/* One byte of the domain scan.  Returns 0 while it goes on, 1 when it has
 * ended (the caller reports mail_best if there is one). */
static int mail_step(sl_rx_stream_t *st, uint32_t f, unsigned c, uint64_t pos) {
  uint64_t total = pos + 1 - st->mail_start;
  if (total > MAIL_MAX) return 1;
  if (c == '.') {
    if (st->label_len == 0 || (st->mail & MAIL_DASH)) return 1;
    st->label_len = 0;
    st->mail = (uint8_t)(MAIL_ON | MAIL_ALPHA | MAIL_DOT);
  } else if (f & F_LABEL) {
    if (st->label_len == 0 && c == '-') return 1;
    if (++st->label_len > LABEL_MAX) return 1;
    uint8_t fl = st->mail & (uint8_t)~MAIL_DASH;
    if (!(f & F_ALPHA)) fl &= (uint8_t)~MAIL_ALPHA;
    if (c == '-') fl |= MAIL_DASH;
    st->mail = fl;
    if ((fl & MAIL_DOT) && (fl & MAIL_ALPHA) && st->label_len >= 2) st->mail_best = pos + 1;
  } else {
    return 1;
  }
  return !mail_can_grow(st, MAIL_MAX - total);
}

/* Adds one byte to the token piece at tok_start; cuts the piece when it
 * reaches TOK_MAX and goes on with a continuing one. */
static void tok_grow(sl_rx_stream_t *st, uint64_t pos, sl_rx_match_t *out, unsigned *n) {
  if (pos + 1 - st->tok_start == TOK_MAX) {
    put(out, n, st->tok_start, pos + 1, SL_RX_BEARER);
    st->tok_start = pos + 1;
    st->tok_phase |= TOK_CONT;
  }
}

/* The full per-byte step of every class, for byte c (flags f) at stream
 * offset pos; the matches that become final go to out (at most one per
 * class).  Returns how many.  Kept out of line: it runs for few bytes, and
 * inlined it made every feed save and restore registers it needs. */
__attribute__((noinline)) static unsigned step(sl_rx_stream_t *st, uint32_t f, unsigned c,
                                                uint64_t pos, sl_rx_match_t *out) {
  unsigned n = 0;
  uint32_t starts = f & st->ok & SB_ALL;

  /* openai_key.  Only the phase before this byte is stepped; a start at
   * this byte is checked after, so a candidate that just ended can never
   * hide one that begins (though the boundary rule rules that out here). */
  switch (st->key_phase) {
    case KEY_S: st->key_phase = c == 'k' ? KEY_SK : KEY_IDLE; break;
    case KEY_SK: st->key_phase = c == '-' ? KEY_BODY : KEY_IDLE; break;
    case KEY_BODY:
    case KEY_CONT:
      if (f & F_KEY) {
        if (pos + 1 - st->key_start == KEY_MAX) {
          put(out, &n, st->key_start, pos + 1, SL_RX_OPENAI_KEY);
          st->key_start = pos + 1;
          st->key_phase = KEY_CONT;
        }
      } else {
        uint64_t len = pos - st->key_start;
        if (st->key_phase == KEY_BODY ? len >= 3 + KEY_MIN_BODY : len > 0)
          put(out, &n, st->key_start, pos, SL_RX_OPENAI_KEY);
        st->key_phase = KEY_IDLE;
      }
      break;
    default: break;
  }
  if (st->key_phase == KEY_IDLE && (starts & SB_KEY)) {
    st->key_phase = KEY_S;
    st->key_start = pos;
  }

  /* bearer: the token first (it may end at this byte), then the word,
   * which may start a token here.  A token cannot be running when the word
   * does: the space after "bearer" ended it. */
  if (st->tok_phase) {
    uint64_t len = pos - st->tok_start;
    int cont = (st->tok_phase & TOK_CONT) != 0;
    if ((st->tok_phase & TOK_RUN) && (f & F_TOK)) {
      tok_grow(st, pos, out, &n);
    } else if (c == '=' && (cont || (st->tok_phase & TOK_PAD) || len >= TOK_MIN)) {
      /* Padding follows a valid token or continues a piece: either way
       * the piece is reported as soon as it is not empty. */
      st->tok_phase = TOK_PAD;
      tok_grow(st, pos, out, &n);
    } else {
      if (cont || (st->tok_phase & TOK_PAD) ? len > 0 : len >= TOK_MIN)
        put(out, &n, st->tok_start, pos, SL_RX_BEARER);
      st->tok_phase = 0;
    }
  }
  unsigned w = st->word;
  if (w >= 1 && w <= 5) {
    /* c | 0x20 folds ASCII upper case and maps no other byte to a lower
     * case letter. */
    w = (c | 0x20) == (unsigned char)"bearer"[w] ? w + 1 : 0;
  } else if (w == 6 || w == WORD_SPACES) {
    if (c == ' ') {
      w = WORD_SPACES;
    } else {
      if (w == WORD_SPACES && (f & F_TOK)) {
        st->tok_phase = TOK_RUN;
        st->tok_start = pos;
      }
      w = 0;
    }
  }
  if (w == 0 && (starts & SB_BEARER)) w = 1;
  st->word = (uint8_t)w;

  /* aws_access_key_id: a candidate lives while it is an alphanumeric run
   * of at most 20 with a possible prefix, and is whole at the byte after. */
  if (st->aws_len) {
    unsigned len = st->aws_len;
    if (f & F_ALNUM) {
      if (len < AWS_LEN && (f & F_UPNUM) &&
          (len >= 4 || aws_prefix_ok(st->aws_prefix, len, c))) {
        if (len < 4) st->aws_prefix[len] = (uint8_t)c;
        st->aws_len = (uint8_t)(len + 1);
      } else {
        st->aws_len = 0;
      }
    } else {
      if (len == AWS_LEN) put(out, &n, st->aws_start, pos, SL_RX_AWS_KEY_ID);
      st->aws_len = 0;
    }
  }
  if (st->aws_len == 0 && (starts & SB_AWS)) {
    st->aws_len = 1;
    st->aws_prefix[0] = 'A';
    st->aws_start = pos;
  }

  /* email: the running scan first ('@' ends it), then a new one. */
  if ((st->mail & MAIL_ON) && mail_step(st, f, c, pos)) {
    if (st->mail_best) put(out, &n, st->mail_start, st->mail_best, SL_RX_EMAIL);
    st->mail = 0;
  }
  if ((starts & SB_AT) && st->run_start != RUN_BAD && pos - st->run_start <= LOCAL_MAX) {
    st->mail = MAIL_ON | MAIL_ALPHA;
    st->mail_start = st->run_start;
    st->mail_best = 0;
    st->label_len = 0;
  }
  if (!(f & F_LOCAL))
    st->run_start = pos + 1;
  else if ((f & F_DOT) && st->run_start == pos)
    st->run_start = RUN_BAD;

  st->ok = (f >> OK_SHIFT) & SB_ALL;
  st->busy = (uint32_t)st->key_phase | st->word | st->tok_phase | st->aws_len | st->mail;
  return n;
}

/* Runs over p[i..len) while no class has a candidate and no byte starts
 * one that its next byte lets live, keeping only the starts the last byte
 * allows (*ok); returns the index of the first byte that needs step(), or
 * len.  No value is carried from byte to byte but ok, which the next byte
 * reads only to decide whether to stop, so the loop runs at the speed of
 * its table loads. */
static size_t skim(const uint32_t *tab, const unsigned char *p, size_t i, size_t len,
                   uint32_t *ok_io) {
  uint32_t ok = *ok_io;
  for (; i < len; i++) {
    uint32_t f = tab[p[i]], starts = f & ok & SB_ALL;
    if (starts) {
      /* Most starts are words that begin with 's', 'b' or a capital 'A':
       * when the next byte is at hand and cannot be the second byte of
       * any of them, the candidates would end at once, and the byte is
       * passed over like any other. */
      if (i + 1 == len || (starts & (SB_AT | tab[p[i + 1]] >> SECOND_SHIFT))) break;
    }
    ok = (f >> OK_SHIFT) & SB_ALL;
  }
  *ok_io = ok;
  return i;
}

/* skim() for short chunks (a token or two), which also keeps the start of
 * the email run (*rs_io) as it goes, with a mask rather than a branch:
 * over a few bytes that costs less than run_after()'s look back, whose
 * length no branch predictor can guess. */
static size_t skim_short(const uint32_t *tab, const unsigned char *p, size_t i, size_t len,
                         uint64_t base, uint32_t *ok_io, uint64_t *rs_io) {
  uint32_t ok = *ok_io;
  uint64_t rs = *rs_io;
  for (; i < len; i++) {
    uint32_t f = tab[p[i]], starts = f & ok & SB_ALL;
    if (starts && (i + 1 == len || (starts & (SB_AT | tab[p[i + 1]] >> SECOND_SHIFT)))) break;
    uint64_t pos = base + i, keep = (uint64_t)0 - ((f & F_LOCAL) != 0);
    rs = (rs & keep) | ((pos + 1) & ~keep);
    /* A '.' that begins a run spoils it; rs == pos at every word's first
     * byte, so this too is a mask (RUN_BAD is all ones). */
    rs |= (uint64_t)0 - ((uint64_t)((f & F_DOT) != 0) & (rs == pos));
    ok = (f >> OK_SHIFT) & SB_ALL;
  }
  *ok_io = ok;
  *rs_io = rs;
  return i;
}

/* The email run after skim() went over p[i0..j): where the run of
 * local-part bytes that ends at j began, given rs, where it began as of
 * i0.  Looking back from j stops at the first other byte or after 65
 * bytes, since a run longer than 64 is no local part however it goes on;
 * such a run is given a start 65 bytes back, which keeps it too long. */
static uint64_t run_after(const uint32_t *tab, const unsigned char *p, size_t i0, size_t j,
                          uint64_t base, uint64_t rs) {
  size_t lim = j - i0 > LOCAL_MAX + 1 ? j - (LOCAL_MAX + 1) : i0, q = j;
  while (q > lim && (tab[p[q - 1]] & F_LOCAL)) q--;
  if (q == lim && lim > i0) return base + lim;
  if (q == i0) {
    /* Local bytes all the way back: the run goes on from before i0, or
     * begins at i0 (rs == i0), where a '.' spoils it. */
    if (q < j && rs == base + i0 && (tab[p[i0]] & F_DOT)) return RUN_BAD;
    return rs;
  }
  return q < j && (tab[p[q]] & F_DOT) ? RUN_BAD : base + q;
}

int sl_rx_feed(sl_rx_stream_t *st, const void *buf, size_t len, sl_rx_match_t *out, size_t cap,
               size_t *nout, size_t *consumed) {
  if (st == NULL || st->set == NULL || st->finished || nout == NULL || consumed == NULL)
    return SL_AN_EINVAL;
  if ((buf == NULL && len != 0) || (out == NULL && cap != 0)) return SL_AN_EINVAL;
  const uint32_t *tab = st->set->tab;
  const unsigned char *p = buf;
  uint64_t base = st->offset;
  size_t i = 0, n = 0;
  int rc = 0;
  while (i < len) {
    if (st->busy == 0) {
      if (len - i <= SHORT_CHUNK) {
        i = skim_short(tab, p, i, len, base, &st->ok, &st->run_start);
      } else {
        size_t i0 = i;
        i = skim(tab, p, i, len, &st->ok);
        if (i > i0) st->run_start = run_after(tab, p, i0, i, base, st->run_start);
      }
      if (i == len) break;
    }
    /* Close to the end of out, step a copy so a byte whose matches do not
     * fit can be left unconsumed. */
    sl_rx_match_t tmp[SL_RX_MAX_MATCHES];
    int tight = n + SL_RX_MAX_MATCHES > cap;
    sl_rx_stream_t save;
    if (tight) save = *st;
    unsigned k = step(st, tab[p[i]], p[i], base + i, tight ? tmp : out + n);
    if (tight) {
      if (n + k > cap) {
        *st = save;
        if (i == 0) rc = SL_AN_ETOOBIG;
        break;
      }
      if (k) memcpy(out + n, tmp, k * sizeof *tmp);
    }
    n += k;
    i++;
  }
  st->offset = base + i;
  *nout = n;
  *consumed = i;
  return rc;
}

size_t sl_rx_holdback(const sl_rx_stream_t *st) {
  if (st == NULL || st->set == NULL || st->finished) return 0;
  uint64_t fed = st->offset, from = fed;
  if (st->key_phase != KEY_IDLE && st->key_start < from) from = st->key_start;
  if (st->tok_phase && st->tok_start < from) from = st->tok_start;
  if (st->aws_len && st->aws_start < from) from = st->aws_start;
  if ((st->mail & MAIL_ON) && st->mail_start < from) from = st->mail_start;
  /* A run of local-part bytes is a local part to come if an '@' can still
   * follow it within 64 bytes: under 64, or 64 not ending with '.' (the ok
   * bit for '@' says the last byte was a local-part byte other than '.'). */
  uint64_t rs = st->run_start;
  if (rs != RUN_BAD && rs < fed &&
      (fed - rs < LOCAL_MAX || (fed - rs == LOCAL_MAX && (st->ok & SB_AT))) && rs < from)
    from = rs;
  return (size_t)(fed - from);
}

int sl_rx_finish(sl_rx_stream_t *st, sl_rx_match_t *out, size_t cap, size_t *nout) {
  if (st == NULL || st->set == NULL || st->finished || nout == NULL) return SL_AN_EINVAL;
  if (out == NULL && cap != 0) return SL_AN_EINVAL;
  sl_rx_match_t tmp[SL_RX_MAX_MATCHES];
  unsigned n = 0;
  uint64_t fed = st->offset;
  if (st->key_phase == KEY_BODY ? fed - st->key_start >= 3 + KEY_MIN_BODY
                                : st->key_phase == KEY_CONT && fed > st->key_start)
    put(tmp, &n, st->key_start, fed, SL_RX_OPENAI_KEY);
  if (st->tok_phase) {
    uint64_t len = fed - st->tok_start;
    if ((st->tok_phase & (TOK_CONT | TOK_PAD)) ? len > 0 : len >= TOK_MIN)
      put(tmp, &n, st->tok_start, fed, SL_RX_BEARER);
  }
  if (st->aws_len == AWS_LEN) put(tmp, &n, st->aws_start, fed, SL_RX_AWS_KEY_ID);
  if ((st->mail & MAIL_ON) && st->mail_best)
    put(tmp, &n, st->mail_start, st->mail_best, SL_RX_EMAIL);
  if (n > cap) return SL_AN_ETOOBIG;
  if (n) memcpy(out, tmp, n * sizeof *tmp);
  *nout = n;
  st->finished = 1;
  return 0;
}
