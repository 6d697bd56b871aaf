#!/usr/bin/env python3
"""bench/otlp_sink.py: an OTLP/HTTP receiver that takes every export and keeps
nothing, for bench/run's sluice-obs column (tracing on).  It prints
"otlp sink listening on 127.0.0.1:PORT", answers each POST with 200 and {},
and on SIGTERM prints how many exports, spans and bytes it took, so a run
shows that tracing was really exporting while it was measured."""
import json
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

stats = {"exports": 0, "spans": 0, "bytes": 0}


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        stats["exports"] += 1
        stats["bytes"] += n
        try:
            doc = json.loads(body)
            for rs in doc.get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    stats["spans"] += len(ss.get("spans", []))
        except ValueError:
            pass
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Sink)

    def stop(*_):
        print("otlp sink: %(exports)d exports, %(spans)d spans, %(bytes)d bytes" % stats, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("otlp sink listening on 127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
