"""A stand-in for an `edge-qwen serve` replica as the router's checks see it: a stdlib HTTP
server in a thread answering /health and /v1/models with fixed statuses. No model, no
process: fast enough for tests/unit."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def stand_in_replica(
    health: int = 200, models: int = 200, model: str = "stand-in"
) -> Iterator[str]:
    """Its base URL (http://127.0.0.1:PORT) while it runs."""
    answers = {"/health": (health, {"status": "ok"}), "/v1/models": (models, _listing(model))}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            status, body = answers.get(self.path, (404, {}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet: the test's output is the assertions'

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _listing(model: str) -> dict[str, object]:
    return {"object": "list", "data": [{"id": model, "object": "model"}]}
