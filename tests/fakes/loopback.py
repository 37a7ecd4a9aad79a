"""What every loopback fake of a web service shares: a real HTTP server on 127.0.0.1, on a port of its own.

A fake subclasses ``LoopbackServer`` and answers in ``handle(method, target, headers)`` with a status, a body
(a dict or list is sent as JSON) and extra headers.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case


class LoopbackServer:
    """Start, stop and the base URL; ``with Fake() as server:`` runs it for the block."""

    thread_name = "loopback-server"
    json_content_type = "application/json"
    _httpd: _HTTPServer | None = None

    def handle(self, method: str, target: str, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def start(self) -> Self:
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=self.thread_name,
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start the server first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: LoopbackServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that timed out and left: expected
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_GET(self) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake = self.server.fake
        status, body, extra = fake.handle(self.command, self.path, headers)
        if isinstance(body, dict | list):
            payload, content_type = json.dumps(body).encode(), fake.json_content_type
        else:
            payload = body if isinstance(body, bytes) else str(body).encode()
            content_type = "text/html" if payload.lstrip().startswith(b"<") else "text/plain"
        self.send_response(status)
        for name, value in {"Content-Type": content_type, **extra}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass
