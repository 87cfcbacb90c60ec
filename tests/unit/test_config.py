"""`Settings`: defaults in one place, every field from EDGE_QWEN_*, flags over both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.config import DEFAULT_PARALLEL, Settings, parse_duration
from edge.errors import UsageError
from tests.support.repo import REPO_ROOT

# A valid value for every field, as a person would write it in the environment, and what
# it becomes. A new field without a row here fails the first test below.
FROM_ENV: dict[str, tuple[str, Any]] = {
    "home": ("/srv/models", Path("/srv/models")),
    "repo": ("me/Qwen3-0.6B-ft", "me/Qwen3-0.6B-ft"),
    "quant": ("Q4_K_M", "Q4_K_M"),
    "model": ("qwen3-0.6b-q4_k_m", "qwen3-0.6b-q4_k_m"),
    "ctx": ("4096", 4096),
    "threads": ("3", 3),
    "kv": ("Q8_0", "q8_0"),
    "flash_attn": ("true", True),
    "gpu_layers": ("0", 0),
    "parallel": ("8", 8),
    "cache_ram": ("512", 512),
    "cache_disk": ("512", 512),
    "host": ("0.0.0.0", "0.0.0.0"),
    "port": ("9000", 9000),
    "lan": ("1", True),
    "api_key": ("k", "k"),
    "no_auth": ("yes", True),
    "max_queue": ("0", 0),
    "reasoning_format": ("inline", "inline"),
    "cors_origins": ("http://a.lan, http://b.lan", ("http://a.lan", "http://b.lan")),
    "max_body_bytes": ("1024", 1024),
    "body_timeout_s": ("2.5", 2.5),
    "idle": ("10m", 600.0),
    "supervise": ("true", True),
    "advertise": ("1", True),
    "header_timeout_s": ("0.5", 0.5),
    "history": ("off", False),
    "route_strategy": ("latency", "latency"),
    "replica_keys": ("k1,k2", ("k1", "k2")),
    "router_venv": ("/opt/litellm", Path("/opt/litellm")),
    "discover": ("true", True),
    "discover_wait": ("1.5", 1.5),
}


def test_every_field_has_an_environment_variable() -> None:
    assert set(FROM_ENV) == set(Settings.model_fields)


@pytest.mark.parametrize("field", sorted(FROM_ENV))
def test_each_variable_sets_its_field(field: str) -> None:
    raw, value = FROM_ENV[field]
    settings = Settings.load({Settings.env_name(field): raw})
    assert getattr(settings, field) == value
    assert getattr(Settings(), field) != value  # the row tests a change, not the default


def test_flags_win_over_the_environment_and_none_means_not_given() -> None:
    env = {"EDGE_QWEN_CTX": "4096", "EDGE_QWEN_PORT": "9000", "EDGE_QWEN_LAN": "1"}
    settings = Settings.load(env, ctx=2048, port=None, lan=None)
    assert (settings.ctx, settings.port, settings.lan) == (2048, 9000, True)
    assert Settings.load({"EDGE_QWEN_CTX": ""}).ctx is None  # an empty variable is unset


def test_defaults_live_here() -> None:
    s = Settings()
    assert (s.ctx, s.kv, s.parallel, s.port, s.max_queue, s.reasoning_format) == (
        None,
        None,
        None,
        8000,
        16,
        "separate",
    )
    assert DEFAULT_PARALLEL == 4
    assert s.models_dir == s.home / "models"


@pytest.mark.parametrize(
    ("env", "flags", "message"),
    [
        ({"EDGE_QWEN_KV": "q4"}, {}, "Invalid EDGE_QWEN_KV"),
        ({"EDGE_QWEN_PORT": "http"}, {}, "Invalid EDGE_QWEN_PORT"),
        ({"EDGE_QWEN_PARALLEL": "0"}, {}, "Invalid EDGE_QWEN_PARALLEL"),
        ({"EDGE_QWEN_CTX": "4096"}, {"ctx": 8}, "Invalid --ctx"),
        ({}, {"reasoning_format": "xml"}, "Invalid --reasoning-format"),
        ({}, {"idle": "soon"}, "Invalid --idle"),
        ({"EDGE_QWEN_IDLE": "5 minutes"}, {}, "Invalid EDGE_QWEN_IDLE"),
    ],
)
def test_a_bad_value_names_where_it_came_from(
    env: dict[str, str], flags: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        Settings.load(env, **flags)
    assert caught.value.hint


def test_settings_are_frozen_and_doctor_never_shows_the_key() -> None:
    s = Settings(api_key="secret")
    with pytest.raises(ValueError):
        s.ctx = 5  # type: ignore[misc]
    assert s.shown()["api_key"] == "(set)" and "secret" not in str(s.shown())
    routed = Settings(replica_keys=("rk1", "rk2"))
    assert routed.shown()["replica_keys"] == ["(set)", "(set)"]


def test_the_readme_lists_every_variable() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    missing = [f for f in Settings.model_fields if f"`{Settings.env_name(f)}`" not in readme]
    assert missing == []


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (30, 30.0),
        ("30", 30.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("0", 0.0),
        (0, 0.0),
        ("-1", -1.0),
        ("-5m", -300.0),
        ("never", -1.0),
        (float("inf"), -1.0),
    ],
)
def test_durations_are_read_as_ollama_spells_keep_alive(given: Any, seconds: float) -> None:
    assert parse_duration(given) == seconds


@pytest.mark.parametrize(
    "given", ["", "soon", "5 m", "1m30", "m", "--5m", True, "5d", "nan", float("nan")]
)
def test_anything_else_is_not_a_duration(given: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(given)
