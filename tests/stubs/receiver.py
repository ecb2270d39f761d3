"""A loopback chat service for alert tests: Apprise's `json://` posts land here. Knobs: answer 500,
or hang (hold each request until released or `hang_seconds` pass)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson


class Receiver:
    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.attempts = 0
        self.mode = "ok"  # ok | fail | hang
        self.release = threading.Event()
        self.hang_seconds = 30.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.attempts += 1
                    mode = receiver.mode
                if mode == "hang":
                    receiver.release.wait(receiver.hang_seconds)
                    return  # no answer at all
                if mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.messages.append(orjson.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self._server.server_address[1]}/alerts"

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.messages)

    def titles(self) -> list[str]:
        return [m.get("title", "") for m in self.received()]

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
