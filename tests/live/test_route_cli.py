"""`edge-qwen route` as a person runs it: what it refuses, a real run and stop. Its checks
and its config, without processes: tests/unit/test_route_cli.py."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import openai

from tests.support.cli import assert_clean_failure, route, run_cli, serve
from tests.support.live_server import free_port


def test_route_refuses_what_it_cannot_route(cli_env: dict[str, str]) -> None:
    assert_clean_failure(run_cli(["route", "localhost"], cli_env), 2, "not a replica address")
    dead = f"http://127.0.0.1:{free_port()}"
    refused = run_cli(["route", dead], cli_env)
    assert_clean_failure(refused, 2, "No replica answered", "cannot be reached", dead)
    lan = run_cli(["route", "--lan", dead], cli_env)
    assert_clean_failure(lan, 2, "a key is required", "--api-key")


def test_route_serves_hides_the_keys_and_stops_on_sigterm(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str], router_venv: Path
) -> None:
    env = {**cli_env, "EDGE_QWEN_ROUTER_VENV": str(router_venv)}
    model = ["-m", str(gguf_of("scripted", "Q8_0"))]
    with serve([*model, "--api-key", "replica-secret"], cli_env) as (replica, _):
        unkeyed = run_cli(["route", replica], env)
        assert_clean_failure(unkeyed, 2, "refused the key", "--replica-key")
        env["EDGE_QWEN_REPLICA_KEYS"] = "replica-secret"
        with route([replica, "--api-key", "router-secret"], env) as (url, proc):
            assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), url
            client = openai.OpenAI(base_url=url, api_key="router-secret", max_retries=0)
            reply = client.chat.completions.create(
                model="qwen3", messages=[{"role": "user", "content": "Hi"}]
            )
            assert reply.choices[0].message.content == "Hello world"
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    for secret in ("replica-secret", "router-secret"):
        assert secret not in out + err
        for config in (Path(cli_env["EDGE_QWEN_HOME"]) / "router").glob("*.yaml"):
            assert secret not in config.read_text()
