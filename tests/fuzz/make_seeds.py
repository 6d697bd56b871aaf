#!/usr/bin/env python3
"""Writes tests/fuzz/corpus/upstream/: fuzz_upstream's seeds, made from the
decoder fixtures (tests/fixtures/<adapter>/*.txt) as whole HTTP responses,
chunked and with Content-Length, plus an error and a 429 answer per
adapter.  Byte 0 of a seed picks the adapter (fuzz_upstream.c's order),
byte 1 how the response is cut into reads.  Rerun after adding fixtures:

    python3 tests/fuzz/make_seeds.py
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
OUT = os.path.join(HERE, "corpus", "upstream")
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
    for stem, data in seeds.items():
        with open(os.path.join(OUT, stem), "wb") as f:
            f.write(data)
    print("make_seeds: %d seeds in %s" % (len(seeds), os.path.relpath(OUT)))


if __name__ == "__main__":
    main()
