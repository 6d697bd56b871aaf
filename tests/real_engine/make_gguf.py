#!/usr/bin/env python3
"""make_gguf.py: writes a small random-weight LLaMA model as a GGUF file.

The real-engine e2e test (tests/e2e/e2e_real_engine.c) needs a model that
llama.cpp's server loads and runs, and no model ships in Debian.  llama.cpp
serves any valid GGUF file, so this writes one with the Python standard
library only: GGUF version 3 (layout as in ggml's docs/gguf.md), architecture
`llama`, every tensor F32, a SentencePiece-style vocabulary (`<unk>`, `<s>`,
`</s>`, the 256 byte tokens `<0xNN>`, words with the `▁` prefix, single
characters) and a ChatML chat template.  The weights are random but
deterministic: the same arguments give the same bytes.

Like a trained model, it never writes control characters (other than tab
and newline), `<unk>` or `<s>`: a NUL in a JSON string, for one, would read
as the end of the string to a C client.  Dimension 0 of the residual stream
is a constant (every embedding has it, no layer writes it), so the output
weight a token has in that dimension is a bias on its logit; the tokens that
must not come out get a large negative one.  Bytes 0x80-0xFF stay possible,
so a stream can hold a token that ends inside a UTF-8 sequence (llama.cpp
then sends U+FFFD): an edge case worth keeping.

    make_gguf.py --out FILE [--embd 256] [--layers 4] [--seed 1] ...
    make_gguf.py --cache DIR [size arguments]   # prints the path of a cached model

With --cache the file is named after every argument that shapes it
(DIR/random-llama-e256-l4-...-g1.gguf) and written only when missing; the
path is printed on stdout either way.  Files are written to a temporary name
and renamed, so a concurrent or interrupted run never leaves half a model.
Exits 2 with a message on bad arguments, 1 when the file cannot be written.
"""
import argparse
import array
import os
import random
import struct
import sys
import tempfile

# Bump when the output for the same arguments changes, so cached models of
# the previous generator are not reused.
GENERATOR_VERSION = 2

# GGUF metadata value types (ggml docs/gguf.md).
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
GGML_TYPE_F32 = 0
ALIGNMENT = 32

# llama.cpp token types.
TOK_NORMAL, TOK_UNKNOWN, TOK_CONTROL, TOK_BYTE = 1, 2, 3, 6

# The constant of dimension 0 in every embedding, and the logit bias (times
# that dimension after the final norm) of the tokens that must not come out.
BIAS_DIM_VALUE = 4.0
BANNED_WEIGHT = -20.0
# <unk>, <s>, and the byte tokens (id 3 + byte) of control characters other
# than tab and newline.
BANNED_IDS = [0, 1] + [3 + b for b in list(range(0x00, 0x09)) + list(range(0x0B, 0x20)) + [0x7F]]

WORDS = """the of and to in is was for that on with as by at from it his an
were are which this be or has had not but first one their its new after who
they have her she two been other when there all during into school time may
years more most only over city some world would where later up such used many
can state about national out known university united then made team system
stream token engine model server request reply client pool slot cancel reader
writer buffer window socket queue water river bridge gate channel flow sluice
hello world good morning thanks please yes no maybe always never again""".split()

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def vocabulary(size):
    """Returns (tokens, scores, types) with exactly `size` entries."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TOK_UNKNOWN, TOK_CONTROL, TOK_CONTROL]
    tokens += ["<0x%02X>" % b for b in range(256)]
    types += [TOK_BYTE] * 256
    pieces = []
    seen = set(tokens)

    def add(piece):
        if piece not in seen:
            seen.add(piece)
            pieces.append(piece)

    add("\u2581")
    for ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?;:'\"()-":
        add(ch)
    for w in WORDS:
        add("\u2581" + w)
        add(w)
    # Past the word list, pronounceable pseudo-words fill the vocabulary.
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    n = 0
    while len(tokens) + len(pieces) < size:
        a, b, c = n % 14, (n // 14) % 5, (n // 70) % 14
        d = n // 980
        syl = consonants[a] + vowels[b] + consonants[c] + (vowels[d % 5] * (1 + d // 5) if d else "")
        add("\u2581" + syl)
        n += 1
    pieces = pieces[: max(0, size - len(tokens))]
    scores = [0.0] * len(tokens)
    # SentencePiece merges the highest-scoring pieces first: longer pieces
    # score higher, so words win over their letters.
    scores += [-1000.0 + 10.0 * len(p) - i * 1e-3 for i, p in enumerate(pieces)]
    types += [TOK_NORMAL] * len(pieces)
    tokens += pieces
    if len(tokens) != size:
        raise ValueError("vocabulary size %d is below the %d fixed tokens" % (size, len(tokens)))
    return tokens, scores, types


class Writer:
    """Appends GGUF-encoded values to a bytearray (little-endian throughout)."""

    def __init__(self):
        self.buf = bytearray()

    def u32(self, v):
        self.buf += struct.pack("<I", v)

    def u64(self, v):
        self.buf += struct.pack("<Q", v)

    def string(self, s):
        b = s.encode("utf-8")
        self.u64(len(b))
        self.buf += b

    def kv(self, key, vtype, value):
        self.string(key)
        self.u32(vtype)
        self.value(vtype, value)

    def value(self, vtype, value):
        if vtype == T_UINT32:
            self.u32(value)
        elif vtype == T_INT32:
            self.buf += struct.pack("<i", value)
        elif vtype == T_FLOAT32:
            self.buf += struct.pack("<f", value)
        elif vtype == T_BOOL:
            self.buf += struct.pack("<B", 1 if value else 0)
        elif vtype == T_STRING:
            self.string(value)
        else:
            raise ValueError("unsupported type %d" % vtype)

    def kv_array(self, key, etype, values):
        self.string(key)
        self.u32(T_ARRAY)
        self.u32(etype)
        self.u64(len(values))
        if etype == T_FLOAT32:
            self.buf += struct.pack("<%df" % len(values), *values)
        elif etype == T_INT32:
            self.buf += struct.pack("<%di" % len(values), *values)
        else:
            for v in values:
                self.value(etype, v)


def tensors(a):
    """The model's tensors in file order: (name, dims with ne0 first, scale);
    scale 0 means all ones (the norm weights)."""
    e, ff, v = a.embd, a.ff, a.vocab
    out = [("token_embd.weight", (e, v), 1.0)]
    # Uniform weights in (-s, s) with s = 2/sqrt(fan_in): activations keep a
    # unit-ish scale through the layers and the logits spread enough that
    # sampling is varied but not flat.
    se, sf = 2.0 / e ** 0.5, 2.0 / ff ** 0.5
    for i in range(a.layers):
        p = "blk.%d." % i
        out += [
            (p + "attn_norm.weight", (e,), 0),
            (p + "attn_q.weight", (e, e), se),
            (p + "attn_k.weight", (e, e), se),
            (p + "attn_v.weight", (e, e), se),
            (p + "attn_output.weight", (e, e), se),
            (p + "ffn_norm.weight", (e,), 0),
            (p + "ffn_gate.weight", (e, ff), se),
            (p + "ffn_up.weight", (e, ff), se),
            (p + "ffn_down.weight", (ff, e), sf),
        ]
    out += [("output_norm.weight", (e,), 0), ("output.weight", (e, v), se)]
    return out


def tensor_data(rnd, name, dims, scale):
    n = 1
    for d in dims:
        n *= d
    if scale == 0:
        data = array.array("f", [1.0]) * n
    else:
        # One random byte per weight through a 256-entry table: fast enough
        # in pure Python for models of a hundred megabytes.
        table = [(b - 127.5) / 127.5 * scale for b in range(256)]
        data = array.array("f", map(table.__getitem__, rnd.randbytes(n)))
    # The bias dimension (see the module comment).  A row is dims[0] long
    # and row r is output r (token r for the embedding and output tensors).
    row = dims[0]
    if name == "token_embd.weight":
        for t in range(dims[1]):
            data[t * row] = BIAS_DIM_VALUE
    elif name.endswith("attn_output.weight") or name.endswith("ffn_down.weight"):
        for i in range(row):
            data[i] = 0.0
    elif name == "output.weight":
        for t in range(dims[1]):
            data[t * row] = 0.0
        for t in BANNED_IDS:
            if t < dims[1]:
                data[t * row] = BANNED_WEIGHT
    if sys.byteorder != "little":
        data.byteswap()
    return data


def write_model(a, path):
    rnd = random.Random(a.seed)
    tokens, scores, types = vocabulary(a.vocab)
    head_dim = a.embd // a.heads
    w = Writer()
    kvs = Writer()
    nkv = 0

    def kv(key, vtype, value):
        nonlocal nkv
        kvs.kv(key, vtype, value)
        nkv += 1

    def kv_array(key, etype, values):
        nonlocal nkv
        kvs.kv_array(key, etype, values)
        nkv += 1

    kv("general.architecture", T_STRING, "llama")
    kv("general.name", T_STRING, "sluice random llama e%d l%d seed %d" % (a.embd, a.layers, a.seed))
    kv("general.alignment", T_UINT32, ALIGNMENT)
    kv("general.file_type", T_UINT32, 0)  # all F32
    kv("llama.context_length", T_UINT32, a.ctx)
    kv("llama.embedding_length", T_UINT32, a.embd)
    kv("llama.block_count", T_UINT32, a.layers)
    kv("llama.feed_forward_length", T_UINT32, a.ff)
    kv("llama.attention.head_count", T_UINT32, a.heads)
    kv("llama.attention.head_count_kv", T_UINT32, a.heads)
    kv("llama.rope.dimension_count", T_UINT32, head_dim)
    kv("llama.rope.freq_base", T_FLOAT32, 10000.0)
    kv("llama.attention.layer_norm_rms_epsilon", T_FLOAT32, 1e-5)
    kv("llama.vocab_size", T_UINT32, a.vocab)
    kv("tokenizer.ggml.model", T_STRING, "llama")
    kv_array("tokenizer.ggml.tokens", T_STRING, tokens)
    kv_array("tokenizer.ggml.scores", T_FLOAT32, scores)
    kv_array("tokenizer.ggml.token_type", T_INT32, types)
    kv("tokenizer.ggml.unknown_token_id", T_UINT32, 0)
    kv("tokenizer.ggml.bos_token_id", T_UINT32, 1)
    kv("tokenizer.ggml.eos_token_id", T_UINT32, 2)
    kv("tokenizer.ggml.add_bos_token", T_BOOL, True)
    kv("tokenizer.ggml.add_eos_token", T_BOOL, False)
    kv("tokenizer.chat_template", T_STRING, CHAT_TEMPLATE)

    specs = tensors(a)
    w.buf += b"GGUF"
    w.u32(3)
    w.u64(len(specs))
    w.u64(nkv)
    w.buf += kvs.buf
    offset = 0
    for name, dims, _ in specs:
        w.string(name)
        w.u32(len(dims))
        for d in dims:
            w.u64(d)
        w.u32(GGML_TYPE_F32)
        w.u64(offset)
        size = 4
        for d in dims:
            size *= d
        offset += (size + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT

    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".make_gguf-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(w.buf)
            f.write(b"\0" * (-len(w.buf) % ALIGNMENT))
            for name, dims, scale in specs:
                data = tensor_data(rnd, name, dims, scale)
                data.tofile(f)
                f.write(b"\0" * (-len(data) * 4 % ALIGNMENT))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    p = argparse.ArgumentParser(description="Write a random-weight LLaMA GGUF model (F32).")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", help="the file to write")
    g.add_argument("--cache", metavar="DIR", help="write DIR/<name from the arguments>.gguf if missing; print its path")
    p.add_argument("--embd", type=int, default=256, help="embedding length (default 256)")
    p.add_argument("--layers", type=int, default=4, help="blocks (default 4)")
    p.add_argument("--heads", type=int, default=0, help="attention heads (default: embd/64, at least 1)")
    p.add_argument("--ff", type=int, default=0, help="feed-forward length (default: 8/3 embd, a multiple of 32)")
    p.add_argument("--vocab", type=int, default=1024, help="vocabulary size (default 1024, at least 259)")
    p.add_argument("--ctx", type=int, default=8192, help="training context length written in the file (default 8192)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    a = p.parse_args()
    if a.heads <= 0:
        a.heads = max(1, a.embd // 64)
    if a.ff <= 0:
        a.ff = (a.embd * 8 // 3 + 31) // 32 * 32
    if a.embd <= 0 or a.embd % 2 or a.layers <= 0 or a.embd % a.heads or (a.embd // a.heads) % 2:
        p.error("--embd must be even and divisible by --heads into an even head size; --layers > 0")
    if a.vocab < 259 or a.ctx <= 0:
        p.error("--vocab must be at least 259 and --ctx positive")
    path = a.out
    if a.cache:
        name = "random-llama-e%d-l%d-h%d-f%d-v%d-c%d-s%d-g%d.gguf" % (
            a.embd, a.layers, a.heads, a.ff, a.vocab, a.ctx, a.seed, GENERATOR_VERSION)
        path = os.path.join(a.cache, name)
        if os.path.isfile(path):
            print(path)
            return 0
    try:
        write_model(a, path)
    except OSError as e:
        print("make_gguf.py: cannot write %s: %s" % (path, e), file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
