#!/usr/bin/env python3
"""Writes the harnesses' seeds into tests/fuzz/corpus/<name>/:

  upstream  the decoder fixtures (tests/fixtures/<adapter>/*.txt) as whole
            HTTP responses, chunked and with Content-Length, plus an error
            and a 429 answer per adapter.  Byte 0 of a seed picks the
            adapter (fuzz_upstream.c's order), byte 1 how the response is
            cut into reads.
  sse       the fixtures' bodies (SSE, or NDJSON for Ollama) with byte 0
            the mode and join-buffer cap, byte 1 the cuts (fuzz_sse.c).
  oai       the fixtures' SSE data payloads, error bodies and request
            bodies (fuzz_oai.c: the whole input is the payload).
  http      client requests: GET, Content-Length and chunked bodies,
            trailers, pipelining, Expect: 100-continue, malformed ones;
            byte 0 the limits, byte 1 the cuts (fuzz_http.c).
  config    the compiled-in default configuration (runtime/base/config.c)
            and every JSON configuration in README.md and docs/*.md.
  ltl       formulas using every operator (fuzz_ltl.c).

Rerun after adding fixtures:

    python3 tests/fuzz/make_seeds.py
"""
import ast
import glob
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
ROOT = os.path.join(HERE, "..", "..")
CORPUS = os.path.join(HERE, "corpus")
OUT = os.path.join(CORPUS, "upstream")
ADAPTERS = ["openai", "vllm", "llamacpp", "tgi", "ollama"]


def fixture(path):
    head, body = {}, open(path, "rb").read()
    while body.startswith(b"#"):
        line, body = body.split(b"\n", 1)
        key, _, val = line[2:].decode().partition(": ")
        head[key] = val
    return head, body[1:]  # the blank line after the header


def chunked(body, size):
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def response(status, ctype, body, chunk=None, extra=b""):
    head = b"HTTP/1.1 %d X\r\nContent-Type: %s\r\n" % (status, ctype.encode()) + extra
    if chunk:
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, chunk)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {}
    for kind in sorted(os.listdir(FIXTURES)):
        for name in sorted(os.listdir(os.path.join(FIXTURES, kind))):
            head, body = fixture(os.path.join(FIXTURES, kind, name))
            a = ADAPTERS.index(head.get("adapter", kind))
            ctype = head.get("content-type", "text/event-stream")
            stem = "%s-%s" % (kind, name.rsplit(".", 1)[0])
            seeds[stem + "-length"] = bytes([a, 7]) + response(200, ctype, body)
            seeds[stem + "-chunked"] = bytes([a, 91]) + response(200, ctype, body, chunk=37)
    # An OpenAI chat stream with every part the scan reads: role, text,
    # reasoning, a tool call in two fragments, finish, usage, [DONE].
    oai = b"".join(b"data: " + e + b"\n\n" for e in [
        b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}',
        b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"reasoning":"hm","content":"Hi \\u00e9\\n"},"logprobs":null,"finish_reason":null}]}',
        b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"f","arguments":"{\\"a\\""}}]},"finish_reason":null}]}',
        b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls","token_ids":[5,6]}]}',
        b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}',
        b"[DONE]"])
    seeds["openai-chat-length"] = bytes([0, 11]) + response(200, "text/event-stream", oai)
    seeds["openai-chat-chunked"] = bytes([0, 13]) + response(200, "text/event-stream; charset=utf-8", oai, chunk=29)
    for a, kind in enumerate(ADAPTERS):
        err = b'{"error":{"message":"overloaded","type":"server_error","code":503}}'
        seeds[kind + "-500"] = bytes([a, 3]) + response(500, "application/json", err)
        seeds[kind + "-429"] = bytes([a, 5]) + response(429, "application/json", err,
                                                         extra=b"Retry-After: 2\r\nretry-after-ms: 1500\r\n")
    write("upstream", seeds)
    write("sse", sse_seeds())
    write("oai", oai_seeds())
    write("http", http_seeds())
    write("config", config_seeds())
    write("ltl", ltl_seeds())


def write(name, seeds):
    out = os.path.join(CORPUS, name)
    os.makedirs(out, exist_ok=True)
    for stem, data in seeds.items():
        with open(os.path.join(out, stem), "wb") as f:
            f.write(data)
    print("make_seeds: %d seeds in %s" % (len(seeds), os.path.relpath(out)))


def fixtures():
    for kind in sorted(os.listdir(FIXTURES)):
        for name in sorted(os.listdir(os.path.join(FIXTURES, kind))):
            head, body = fixture(os.path.join(FIXTURES, kind, name))
            yield "%s-%s" % (kind, name.rsplit(".", 1)[0]), head, body


def sse_seeds():
    seeds = {}
    for stem, head, body in fixtures():
        ndjson = "ndjson" in head.get("content-type", "")
        seeds[stem] = bytes([int(ndjson), 17]) + body
        # A join buffer of 24 bytes: most events are past it.
        seeds[stem + "-cap24"] = bytes([int(ndjson) | 24 << 1, 3]) + body
    seeds["crlf-bom-comments"] = bytes([0, 5]) + (
        b"\xef\xbb\xbf: hello\r\nevent: delta\r\ndata: a\r\ndata:b\r\rid: 1\nretry: 5\n\n"
        b"data\n\nevent: error\ndata: {\"x\":1}\n\n: ping\n\ndata: tail")
    seeds["ndjson-crlf"] = bytes([1, 9]) + b'{"a":1}\r\n\r\n{"b":2}\r{"c":3}\n{"open"'
    return seeds


def oai_seeds():
    seeds = {}
    for stem, head, body in fixtures():
        if "ndjson" in head.get("content-type", ""):
            lines = body.split(b"\n")
        else:
            lines = [l[5:].strip() for l in body.split(b"\n") if l.startswith(b"data:")]
        for i, line in enumerate(l for l in lines if l.strip()):
            if i < 4:
                seeds["%s-%d" % (stem, i)] = line
    seeds["done"] = b" [DONE] "
    seeds["error-object"] = b'{"error":{"message":"bad \\u00e9","type":"invalid_request_error","code":400}}'
    seeds["error-flat"] = b'{"object":"error","message":"m","type":"t","code":404}'
    seeds["usage"] = b'{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}'
    seeds["tools"] = (b'{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t","type":"function",'
                      b'"function":{"name":"f","arguments":"{\\"a\\":1}"}}]},"finish_reason":"tool_calls",'
                      b'"token_ids":[1,2,3],"logprobs":{"content":[]}}]}')
    seeds["req-chat"] = (b'{"model":"m","stream":true,"messages":[{"role":"system","content":"be brief"},'
                         b'{"role":"user","content":[{"type":"text","text":"hi \\ud83d\\ude00"},'
                         b'{"type":"image_url","image_url":{"url":"x"}}]}],"max_tokens":5}')
    seeds["req-completion"] = b'{"model":"m","prompt":["a","b",[1,2,3]],"stream_options":{"include_usage":true}}'
    seeds["req-duplicate"] = b'{"model":"m","messages":[{"role":"user","content":"a","content":"b"}]}'
    seeds["req-lone-surrogate"] = b'{"model":"m","prompt":"\\ud800x"}'
    seeds["req-nul"] = b'{"model":"m","prompt":"a\\u0000b"}'
    seeds["req-bad-utf8"] = b'{"model":"m","prompt":"\xc0\xaf \xed\xa0\x80"}'
    return seeds


def http_seeds():
    body = b'{"model":"sim-small","messages":[{"role":"user","content":"hi"}]}'
    post = b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    reqs = {
        "get": b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
        "get-1.0": b"GET /a?b=c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "post-length": post + b"Content-Length: %d\r\n\r\n" % len(body) + body,
        "post-chunked": post + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, 20),
        "post-trailers": post + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, 64)[:-2]
                         + b"X-Trailer: 1\r\nX-Other:  two \r\n\r\n",
        "chunk-ext": post + b"Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n",
        "pipelined": b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n" + post + b"Content-Length: 2\r\n\r\n{}"
                     + b"GET /c HTTP/1.1\r\nConnection: close\r\n\r\nGET /d HTTP/1.1\r\n\r\n",
        "expect": post + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
        "both-lengths": post + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
        "folded": b"GET / HTTP/1.1\r\nX-A: one\r\n two\r\nX-Empty:\r\n\r\n",
        "lf-only": b"GET / HTTP/1.1\nHost: x\n\n",
        "garbage": b"\x00\xffPOST\r\n\r\n",
    }
    seeds = {}
    for name, req in reqs.items():
        seeds[name] = bytes([0, 41]) + req
        # Small limits: 128 header bytes, 32 body bytes.
        seeds[name + "-small"] = bytes([0x24, 7]) + req
    return seeds


def config_seeds():
    seeds = {}
    src = open(os.path.join(ROOT, "runtime", "base", "config.c")).read()
    m = re.search(r"sl__default_config\[\] =(.*?);\n", src, re.S)
    seeds["default"] = "".join(ast.literal_eval(s) for s in re.findall(r'"(?:[^"\\]|\\.)*"', m.group(1))).encode()
    docs = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))) + [os.path.join(ROOT, "README.md")]
    for path in docs:
        for i, m in enumerate(re.finditer(r"```json\n(.*?)```", open(path).read(), re.S)):
            try:
                doc = json.loads(m.group(1))
            except ValueError:
                continue
            if isinstance(doc, dict) and ("pools" in doc or "listen" in doc):
                seeds["%s-%d" % (os.path.basename(path).rsplit(".", 1)[0], i)] = m.group(1).encode()
    return seeds


def ltl_seeds():
    formulas = [
        "G (request -> F response)",
        "a U b",
        "!(p && X q) || N r",
        "G F p && F G q",
        "(a R b) -> Xw c",
        "true && !false",
        "F (done && X !token) || G !error",
        "((a || b) U (c && d)) R e",
    ]
    return {"f%d" % i: f.encode() for i, f in enumerate(formulas)}


if __name__ == "__main__":
    main()
