#!/usr/bin/env python3
"""Sample upstream: answers every request with a JSON echo of what it received.

The e2e tests and the demo read `headers` to prove what the filter forwarded (and stripped).
"""
import argparse
import hashlib
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle and delayed ACKs add ~40 ms.
    disable_nagle_algorithm = True

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        seen = {"method": self.command, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}
        if length:
            # What arrived, so a test can tell a body held by the filter from one lost or cut.
            seen["body_sha256"] = hashlib.sha256(self.rfile.read(min(length, 1 << 20))).hexdigest()
        body = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

    def log_message(self, *args):  # quiet: Envoy's access log is the record
        pass


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=10001)
    a = p.parse_args()
    ThreadingHTTPServer(("127.0.0.1", a.port), Echo).serve_forever()
