"""Agent CLIs on their own default settings against `edge-qwen serve --ctx 40960` (issue 27):
Qwen Code CLI, opencode and OpenAI Codex CLI, at pinned versions, each run by
scripts/agent_clients.py in a loopback-only network namespace with only the base URL (and
a dummy key or model name where it insists) configured, on the scripted model.

The live suite is opt-in: EDGE_QWEN_AGENT_CLIENTS=1 (it installs the clients from npm the
first time, about 900 MB, and takes about five minutes on two cores). The recording
proxy the script puts in front of the server is tested here on every fast run.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import load_script

agents = load_script("agent_clients")

live = pytest.mark.skipif(
    os.environ.get("EDGE_QWEN_AGENT_CLIENTS") != "1",
    reason="live agent CLIs are opt-in: set EDGE_QWEN_AGENT_CLIENTS=1 (installs Qwen Code, "
    "opencode and Codex from npm once; about five minutes)",
)


def missing_tools() -> str | None:
    """Why the live suite cannot run here, or None."""
    for tool in ("node", "npm", "git"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (the agent CLIs need Node.js 20+, npm and git)"
    try:
        agents.unshare_command()
    except SystemExit as refused:
        return f"no loopback-only network namespace here: {refused}"
    return None


@pytest.fixture(scope="module")
def results(
    gguf_of: Callable[[str, str], Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, bool], Any]:
    """Every case of the script, run once: (client, attached) -> its Result."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("agent-clients")
    runs = agents.run_isolated(gguf_of("scripted", "Q8_0"), timeout=240, out=out)
    for run in runs:
        print(agents.summary(run))
    return {(r.client, r.attached): r for r in runs}


@pytest.mark.slow
@live
@pytest.mark.parametrize(
    "case", agents.CASES, ids=[name + ("-attached" if a else "") for name, a in agents.CASES]
)
def test_the_client_gets_its_answer_on_its_defaults(
    results: dict[tuple[str, bool], Any], case: tuple[str, bool]
) -> None:
    run = results[case]
    assert run.exit_code == 0 and run.answered, agents.summary(run)
    assert run.requests and all(e.status == 200 for e in run.requests), agents.summary(run)


@pytest.mark.slow
@live
def test_what_failed_before_the_fixes_is_what_they_sent(
    results: dict[tuple[str, bool], Any],
) -> None:
    """The requests that were refused before: budgets over the context's room (Qwen Code's
    32768, opencode's 32000 with a file) and Codex's hosted web_search tool."""

    def over_the_room(run: Any) -> bool:
        return any(
            e.prompt_tokens is not None
            and e.prompt_tokens + max(e.budget.values(), default=0) > agents.CTX
            for e in run.requests
        )

    assert over_the_room(results["qwen-code", False])
    assert over_the_room(results["opencode", True])
    codex = results["codex", False].requests
    assert any("web_search" in e.tools for e in codex)
    assert all(e.path == "/v1/responses" and e.left_out == "web_search" for e in codex)


# --- the recording proxy, fast -----------------------------------------------------------


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
