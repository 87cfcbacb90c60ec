"""`edge-qwen serve --supervise`: the server in a child process that exits when its model
sleeps (so nothing of a GPU outlives it), the parent answering probes meanwhile and
handing the next request to a new child; a child that dies is replaced the same way.
Forced on here (it is the default only with a GPU build)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx

from tests.support.cli import serve

WAIT = 60.0
BODY = {"max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]}


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def wait_children(pid: int, count: int) -> list[int]:
    deadline = time.monotonic() + WAIT
    while len(found := children(pid)) != count:
        assert time.monotonic() < deadline, f"{found} are running, not {count}"
        time.sleep(0.05)
    return found


def test_the_server_process_exits_asleep_and_the_next_request_starts_it(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    model = str(gguf_of("scripted", "Q8_0"))
    args = ["--model", model, "--supervise", "--idle", "1s", "--api-key", "k"]
    key = {"Authorization": "Bearer k"}
    with serve(args, cli_env) as (url, proc):
        first = httpx.post(f"{url}/v1/chat/completions", json=BODY, headers=key, timeout=WAIT)
        assert first.is_success
        wait_children(proc.pid, 0)  # asleep: the serving process is gone
        # The parent answers the probes, and the model list with the key, without a child.
        assert httpx.get(f"{url}/health", timeout=WAIT).json() == {"status": "asleep"}
        assert "edge_model_loaded 0" in httpx.get(f"{url}/metrics", timeout=WAIT).text
        listed = httpx.get(f"{url}/v1/models", headers=key, timeout=WAIT).json()
        assert [m["id"] for m in listed["data"]] == ["scripted-Q8_0"]
        assert httpx.get(f"{url}/v1/models", timeout=WAIT).status_code == 401
        assert children(proc.pid) == []
        # A request that needs the model is handed to a new child, which answers it.
        woken = httpx.post(f"{url}/v1/chat/completions", json=BODY, headers=key, timeout=WAIT)
        assert woken.is_success and woken.json()["choices"] == first.json()["choices"]
        assert int(woken.headers["edge-qwen-load-ms"]) > 0
        # A child that dies (as a CUDA error aborts it) is replaced by the next request.
        (child,) = wait_children(proc.pid, 1)
        os.kill(child, signal.SIGKILL)
        wait_children(proc.pid, 0)
        again = httpx.post(f"{url}/v1/chat/completions", json=BODY, headers=key, timeout=WAIT)
        assert again.is_success and again.json()["choices"] == first.json()["choices"]
        (child,) = wait_children(proc.pid, 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT) == 0
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text()
    out = proc.stderr.read() if proc.stderr else ""
    assert "The server process died (signal 9)" in out


def test_a_model_that_cannot_load_stops_the_supervisor_with_the_childs_error(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    from tests.support.cli import EDGE_QWEN, start

    proc = start([*EDGE_QWEN, "serve", "--model", str(bad), "--supervise", "--port", "0"], cli_env)
    out, err = proc.communicate(timeout=WAIT)
    # The child said why and ended with it; the supervisor did not start it again.
    assert proc.returncode not in (0, None) and err.count("not a readable GGUF") == 1, err
    assert "Supervising" in err


def test_requests_that_end_each_child_are_all_answered(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    """`keep_alive: 0` ends the child after each answer; back to back on one keep-alive
    connection, the next request comes while it exits: it must be answered (by the
    model still loaded, or by the next child), never refused. A request without the key
    is refused by the parent and starts nothing."""
    model = str(gguf_of("scripted", "Q8_0"))
    args = ["--model", model, "--supervise", "--idle", "0", "--api-key", "k"]
    key = {"Authorization": "Bearer k"}
    with serve(args, cli_env) as (url, proc), httpx.Client(headers=key, timeout=WAIT) as client:
        for _ in range(4):
            r = client.post(f"{url}/v1/chat/completions", json={**BODY, "keep_alive": 0})
            assert r.status_code == 200, r.text
        wait_children(proc.pid, 0)
        keyless = httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=WAIT)
        assert keyless.status_code == 401 and children(proc.pid) == []
