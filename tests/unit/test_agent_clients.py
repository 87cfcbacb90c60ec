"""scripts/agent_clients.py's own parts, fast: the recording proxy the agent CLIs talk
through, and the message when no loopback-only network namespace can be made. The CLIs
themselves run in tests/live/test_agent_clients.py (opt-in)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.repo import load_script

agents = load_script("agent_clients")


class _Upstream(BaseHTTPRequestHandler):
    """A server that streams two SSE events for stream requests and refuses the rest."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not body.get("stream"):
            error = json.dumps({"error": {"message": "max_tokens is too large"}}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Edge-Qwen-Tools-Left-Out", "web_search")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in (b'data: {"delta": "Hi"}\n\n', b'data: {"usage": {"input_tokens": 12}}\n\n'):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Any]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    recorder = agents.RecordingProxy(upstream.server_address[1], tmp_path)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    yield recorder
    for server in (recorder, upstream):
        server.shutdown()
        server.server_close()


def test_the_proxy_relays_streams_and_records_what_was_asked(proxy: Any) -> None:
    tools = [{"type": "function", "name": "exec"}, {"type": "web_search"}]
    body = {"model": "m", "stream": True, "max_output_tokens": 99, "tools": tools}
    with httpx.Client(base_url=proxy.url) as client:
        streamed = client.post("/v1/responses", json=body)
        refused = client.post("/v1/chat/completions", json={"max_tokens": 32768})
    assert streamed.status_code == 200
    assert streamed.text == 'data: {"delta": "Hi"}\n\ndata: {"usage": {"input_tokens": 12}}\n\n'
    assert streamed.headers["edge-qwen-tools-left-out"] == "web_search"
    assert refused.status_code == 400 and "too large" in refused.text
    first, second = proxy.exchanges
    assert (first.path, first.status, first.stream, first.budget) == (
        "/v1/responses",
        200,
        True,
        {"max_output_tokens": 99},
    )
    assert (first.tools, first.left_out, first.prompt_tokens) == (
        ["function:exec", "web_search"],
        "web_search",
        12,
    )
    assert (second.status, second.stream, second.error) == (400, False, "max_tokens is too large")
    assert agents.describe(second) == (
        "POST /v1/chat/completions -> 400, no stream, max_tokens=32768, "
        "error: max_tokens is too large"
    )


def test_without_a_namespace_the_script_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents.shutil, "which", lambda _: None)
    with pytest.raises(SystemExit, match="unshare"):
        agents.unshare_command()
