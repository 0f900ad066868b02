#!/usr/bin/env python3
"""A fake OpenAI-compatible model provider for the real OpenClaw gateway (stdlib only;
after ../shared/notes/openclaw-gateway.md §6).

Usage: fake_model.py PORT REQUEST_LOG [REPLY]

Listens on 127.0.0.1:PORT and answers every `POST .../chat/completions` with REPLY (default
"Hello from the fake model."), streamed as server-sent events when the request asks for a
stream (the gateway always does) and as one JSON body otherwise. Every POST is appended to
REQUEST_LOG as one JSON line `{"t", "path", "body"}` before it is answered, so a test can
count the completions a turn cost. Prints "listening on 127.0.0.1:PORT" once bound.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "fake-model"
USAGE = {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    reply = "Hello from the fake model."
    request_log = "fake-model-requests.jsonl"
    log_lock = threading.Lock()

    def log_message(self, format: str, *args) -> None:
        sys.stderr.write("fake-model: " + (format % args) + "\n")

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            model = {"id": MODEL, "object": "model", "created": 0, "owned_by": "fake"}
            return self._json(200, {"object": "list", "data": [model]})
        return self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = None
        with self.log_lock, open(self.request_log, "a") as log:
            log.write(json.dumps({"t": time.time(), "path": self.path, "body": body}) + "\n")
        if not self.path.rstrip("/").endswith("/chat/completions") or not isinstance(body, dict):
            return self._json(404, {"error": {"message": "not found"}})
        completion = {
            "id": "chatcmpl-" + uuid.uuid4().hex[:12],
            "created": int(time.time()),
            "model": body.get("model") or MODEL,
        }
        if not body.get("stream"):
            message = {"role": "assistant", "content": self.reply}
            choice = {"index": 0, "finish_reason": "stop", "message": message}
            return self._json(
                200,
                {**completion, "object": "chat.completion", "choices": [choice], "usage": USAGE},
            )
        self._stream(
            {**completion, "object": "chat.completion.chunk"},
            usage=bool((body.get("stream_options") or {}).get("include_usage")),
        )

    def _stream(self, base: dict, *, usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()

        def event(choices: list, **extra) -> None:
            data = json.dumps({**base, "choices": choices, **extra})
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()

        def delta(content: dict, finish: str | None = None) -> list:
            return [{"index": 0, "delta": content, "finish_reason": finish}]

        half = len(self.reply) // 2
        event(delta({"role": "assistant", "content": ""}))
        for part in (self.reply[:half], self.reply[half:]):
            event(delta({"content": part}))
        event(delta({}, "stop"))
        if usage:
            event([], usage=USAGE)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main(argv: list[str]) -> None:
    if len(argv) not in (3, 4):
        sys.exit("usage: fake_model.py PORT REQUEST_LOG [REPLY]")
    Handler.request_log = argv[2]
    if len(argv) == 4:
        Handler.reply = argv[3]
    server = ThreadingHTTPServer(("127.0.0.1", int(argv[1])), Handler)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
