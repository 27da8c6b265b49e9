#!/usr/bin/env python3
"""A small OpenAI-compatible backend for tests: no model, the real request and response schema.

Serves GET /v1/models, POST /v1/chat/completions (also with "stream": true, as server-sent
events), /v1/completions and /v1/embeddings. The answer text is "echo: <last user text>";
`usage` counts one token per whitespace-separated word of the prompt and of the answer.

    fake_openai.py --port 0 [--cert C --key K] [--require-key KEY] [--fail-after N]

Prints "listening <port>" on stdout once ready. `--cert/--key` serve HTTPS. `--require-key`
answers 401 without `Authorization: Bearer KEY`. `--status N` answers every completion with
HTTP status N (a backend that is down or broken). `--break-stream` ends every streamed answer
after its first piece, without `[DONE]` (a backend that dies mid-answer). Chat and
completions stream when asked (`"stream": true`), with `usage` in the last chunk. Standard
library only.
"""

import argparse
import json
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
MODEL = "fake-1"


def words(s):
    return len(str(s).split())


def last_user_text(body):
    if "messages" in body:
        users = [m.get("content", "") for m in body["messages"] if m.get("role") == "user"]
        return users[-1] if users else ""
    p = body.get("prompt", body.get("input", ""))
    return p if isinstance(p, str) else " ".join(map(str, p))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):  # quiet
        pass

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        if not ARGS.require_key:
            return True
        if self.headers.get("authorization") == "Bearer " + ARGS.require_key:
            return True
        self.send_json(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
        return False

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models" and self.authorized():
            self.send_json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "test"}]})
        elif self.path.rstrip("/") != "/v1/models":
            self.send_json(404, {"error": {"message": "no such route"}})

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            return self.send_json(400, {"error": {"message": "not JSON"}})
        if not self.authorized():
            return
        if ARGS.status:
            return self.send_json(ARGS.status, {"error": {"message": "backend failure"}})
        text = "echo: " + last_user_text(body)
        prompt_tokens = words(last_user_text(body))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": words(text),
                 "total_tokens": prompt_tokens + words(text)}
        now = int(time.time())
        path = self.path.rstrip("/")
        if path == "/v1/chat/completions":
            if body.get("stream"):
                return self.stream(text, usage, now)
            self.send_json(200, {
                "id": "chatcmpl-1", "object": "chat.completion", "created": now, "model": body.get("model", MODEL),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage})
        elif path == "/v1/completions":
            if body.get("stream"):
                return self.stream(text, usage, now, field="text")
            self.send_json(200, {
                "id": "cmpl-1", "object": "text_completion", "created": now, "model": body.get("model", MODEL),
                "choices": [{"index": 0, "text": text, "finish_reason": "stop"}], "usage": usage})
        elif path == "/v1/embeddings":
            u = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
            self.send_json(200, {"object": "list", "model": body.get("model", MODEL),
                                 "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25, 0.125]}],
                                 "usage": u})
        else:
            self.send_json(404, {"error": {"message": "no such route"}})

    def chunk(self, data):
        """One HTTP/1.1 chunk (as real servers stream: the body is not ended by a close)."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def stream(self, text, usage, now, field="delta"):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        kind = "chat.completion.chunk" if field == "delta" else "text_completion"
        for i, w in enumerate(text.split(" ")):
            piece = (" " if i else "") + w
            choice = {"index": 0, "finish_reason": None}
            choice.update({"delta": {"content": piece}} if field == "delta" else {"text": piece})
            event = {"id": "cmpl-1", "object": kind, "created": now, "model": MODEL, "choices": [choice]}
            self.chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
            if ARGS.break_stream:
                # The backend dies: the body ends cleanly, but without [DONE].
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                self.close_connection = True
                return
        end = {"index": 0, "finish_reason": "stop"}
        end.update({"delta": {}} if field == "delta" else {"text": ""})
        last = {"id": "cmpl-1", "object": kind, "created": now, "model": MODEL, "choices": [end], "usage": usage}
        self.chunk(b"data: " + json.dumps(last).encode() + b"\n\ndata: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--require-key")
    ap.add_argument("--status", type=int, default=0)
    ap.add_argument("--break-stream", action="store_true")
    ARGS = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    if ARGS.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(ARGS.cert, ARGS.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("listening", srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
