"""`edge-qwen route`: its checks before anything starts, its config, a real run and stop."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest

from edge.route.litellm import plan_router
from edge.route.replicas import Replica, ReplicaError, check_replicas, normalize
from tests.support.cli import EDGE_QWEN, assert_clean_failure, run_cli, serve, start
from tests.support.live_server import free_port

# -- the plan, without processes (the fast loop)


def test_addresses_are_checked_before_anything_is_asked() -> None:
    assert normalize("http://h:8000/v1/") == "http://h:8000"
    for bad in ("h:8000", "ftp://h", "http://h:x", "http://h:8000/api"):
        with pytest.raises(ReplicaError):
            normalize(bad)
    with pytest.raises(ReplicaError, match="2 replica keys for 3"):
        check_replicas(["http://a:1", "http://b:1", "http://c:1"], ["k1", "k2"])
    with pytest.raises(ReplicaError, match="twice"):
        check_replicas(["http://a:1", "http://a:1/v1"], [])
    with pytest.raises(ReplicaError, match="cannot be reached"):
        check_replicas([f"http://127.0.0.1:{free_port()}"], [])


def test_the_config_holds_no_secret_and_every_replica_as_one_model() -> None:
    replicas = [Replica("http://a:1", "m-Q8_0", "ka"), Replica("http://b:1", "m-Q4_K_M")]
    plan = plan_router(replicas, name=None, strategy="latency", key="router-key")
    text = json.dumps(plan.config)
    assert "ka" not in text.replace("os.environ", "") and "router-key" not in text
    assert plan.secrets == {"EDGE_QWEN_REPLICA_KEY_0": "ka", "LITELLM_MASTER_KEY": "router-key"}
    models = plan.config["model_list"]
    assert {m["model_name"] for m in models} == {"qwen3"}
    assert [m["litellm_params"]["api_base"] for m in models] == ["http://a:1/v1", "http://b:1/v1"]
    assert all(m["model_info"]["health_check_max_tokens"] == 1 for m in models)
    settings = plan.config["router_settings"]
    assert settings["routing_strategy"] == "latency-based-routing"
    assert settings["model_group_alias"] == {"m-Q8_0": "qwen3", "m-Q4_K_M": "qwen3"}
    assert settings["num_retries"] >= 2 and settings["cooldown_time"] > 0
    open_plan = plan_router(replicas[1:], name="x", strategy="least-busy", key=None)
    assert open_plan.config["general_settings"]["dangerously_permit_weak_or_unset_master_key"]


# -- the command as a person runs it


def test_route_refuses_what_it_cannot_route(cli_env: dict[str, str]) -> None:
    assert_clean_failure(run_cli(["route", "localhost"], cli_env), 2, "not a replica address")
    dead = f"http://127.0.0.1:{free_port()}"
    assert_clean_failure(run_cli(["route", dead], cli_env), 2, "cannot be reached", dead)
    lan = run_cli(["route", "--lan", dead], cli_env)
    assert_clean_failure(lan, 2, "a key is required", "--api-key")


@contextmanager
def route(args: list[str], env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    proc = start([*EDGE_QWEN, "route", "--port", str(free_port()), *args], env)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip(), proc  # the address, once it is ready
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


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
