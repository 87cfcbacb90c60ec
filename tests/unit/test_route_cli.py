"""`edge-qwen route`'s plan, without processes: the replica addresses it checks before
anything starts, and the LiteLLM config it writes. The command as a person runs it:
tests/live/test_route_cli.py."""

from __future__ import annotations

import json

import pytest

from edge.route.litellm import plan_router
from edge.route.replicas import Replica, ReplicaError, check_replicas, normalize
from tests.support.live_server import free_port
from tests.support.replica import stand_in_replica


def test_addresses_are_checked_before_anything_is_asked() -> None:
    assert normalize("http://h:8000/v1/") == "http://h:8000"
    for bad in ("h:8000", "ftp://h", "http://h:x", "http://h:8000/api"):
        with pytest.raises(ReplicaError):
            normalize(bad)
    with pytest.raises(ReplicaError, match="2 replica keys for 3"):
        check_replicas(["http://a:1", "http://b:1", "http://c:1"], ["k1", "k2"])
    with pytest.raises(ReplicaError, match="twice"):
        check_replicas(["http://a:1", "http://a:1/v1"], [])
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    with pytest.raises(ReplicaError, match="No replica answered.*cannot be reached"):
        check_replicas(dead, [])


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


def test_a_replica_down_at_start_is_a_deployment_named_after_one_that_answers() -> None:
    replicas = [Replica("http://a:1", None, down="cannot be reached"), Replica("http://b:1", "m")]
    plan = plan_router(replicas, name=None, strategy="simple-shuffle", key=None)
    models = plan.config["model_list"]
    assert [m["litellm_params"]["api_base"] for m in models] == ["http://a:1/v1", "http://b:1/v1"]
    # edge-qwen serve answers whatever model a request names, so the sleeper's is a label.
    assert [m["litellm_params"]["model"] for m in models] == ["openai/m", "openai/m"]
    assert plan.config["router_settings"]["model_group_alias"] == {"m": "qwen3"}


def test_the_router_starts_with_one_replica_answering_and_keeps_the_sleepers() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with stand_in_replica(model="m") as up, stand_in_replica(health=503) as loading:
        replicas = check_replicas([dead, up, loading], [])
    assert [r.model for r in replicas] == [None, "m", None]
    assert replicas[0].down and replicas[0].down.startswith("cannot be reached")
    assert replicas[2].down == "not ready: /health answered 503"


def test_a_refused_key_is_a_mistake_not_sleep() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with stand_in_replica(models=401) as keyed, pytest.raises(ReplicaError, match="refused"):
        check_replicas([dead, keyed], ["wrong"])
