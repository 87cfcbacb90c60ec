"""Memory running out at load: a smaller plan is tried and named, never a crash; a model
that cannot load at all stops the server instead of leaving it up without one.

The shortage is real: `ulimit -v` caps the address space, so llama.cpp's own allocation of
the KV cache fails exactly as it does when another program has taken the memory.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from tests.support.cli import EDGE_QWEN, start
from tests.support.live_server import WAIT, free_port, wait_ready
from tests.support.repo import REPO_ROOT

# 3 GB of address space: a 32,768-token cache (3.5 GiB) cannot be allocated, 8,192 (896 MiB)
# can, next to the 0.6b Q4_K_M weights (373 MiB) and the Python process.
LIMIT_KIB = 3_000_000


def limited(args: list[str]) -> list[str]:
    """The CLI under an address-space limit."""
    # One malloc arena per thread reserves 64 MiB of address space each; two keep the
    # process's own share small and steady, so the limit bites on llama.cpp's buffers.
    return [
        "bash",
        "-c",
        f'ulimit -v {LIMIT_KIB} && MALLOC_ARENA_MAX=2 exec "$@"',
        "limited",
        sys.executable,
        "-m",
        "edge.cli",
        *args,
    ]


def test_run_retries_with_a_smaller_context_and_says_so(
    model_06b: Path, cli_env: dict[str, str]
) -> None:
    args = ["run", "-m", str(model_06b), "--ctx", "32768", "-n", "4", "--no-think", "Hi"]
    proc = subprocess.run(
        limited(args), env=cli_env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 3, proc.stderr  # 3: cut off by -n 4, i.e. it answered
    assert proc.stdout.strip()
    assert "ran out of memory loading" in proc.stderr and "failed to allocate" in proc.stderr
    assert "Retrying:" in proc.stderr and "out of memory at load, so context" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_comes_up_with_a_smaller_plan(model_06b: Path, cli_env: dict[str, str]) -> None:
    port = free_port()
    args = ["serve", "-m", str(model_06b), "--ctx", "32768", "--port", str(port)]
    proc = start(limited(args), cli_env)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(url, alive=lambda: proc.poll() is None)
        except AssertionError:
            proc.kill()
            raise AssertionError(proc.communicate(timeout=WAIT)[1]) from None
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        reply = client.chat.completions.create(
            model="qwen3", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert reply.usage is not None and reply.usage.completion_tokens == 4
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=WAIT)
    assert "ran out of memory loading" in err and "Retrying:" in err, err


def test_serve_stops_when_the_model_cannot_load(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str], tmp_path: Path
) -> None:
    # Header intact, tensor data cut short: the plan reads fine, llama.cpp's load fails.
    data = gguf_of("scripted", "Q8_0").read_bytes()
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(data[: len(data) * 2 // 3])
    port = free_port()
    proc = start([*EDGE_QWEN, "serve", "-m", str(broken), "--port", str(port)], cli_env)
    try:
        _, err = proc.communicate(timeout=WAIT)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "error: The model failed to load" in err and "damaged" in err
    with pytest.raises(httpx.TransportError):  # nothing is left listening
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
