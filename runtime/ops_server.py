"""The operators' HTTP server on `METRICS_ADDRESS`: `/metrics` (Prometheus text format),
`/healthz` (200 or 503 with a one-line reason) and `/status` (the live monitors, JSON).

It runs on its own threads and reads only what the actors published to `runtime.metrics.Metrics`:
a scrape, a probe or a status never asks an actor and never reaches the exchange.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from runtime.metrics import Metrics

log = logging.getLogger(__name__)


class OpsServer:
    def __init__(self, address: tuple[str, int], metrics: Metrics):
        """Binds at once: raises OSError (e.g. the address is already in use)."""
        self.metrics = metrics
        handler = type("Handler", (_Handler,), {"metrics": metrics})
        self._server = ThreadingHTTPServer(address, handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops-server", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> OpsServer:
        self._thread.start()
        host, port = self.address
        log.info("Operations server on http://%s:%d (/metrics, /healthz, /status)", host, port)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    metrics: Metrics
    server_version = "tpsl-guardian"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            healthy, reason = self.metrics.health()
            self._send(200 if healthy else 503, (reason + "\n").encode(), "text/plain; charset=utf-8")
        elif path == "/status":
            self._send(200, orjson.dumps(self.metrics.status()), "application/json")
        else:
            self._send(404, b"not found: try /metrics, /healthz or /status\n", "text/plain; charset=utf-8")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass
