"""LiteLLM's proxy as the router: its own virtual environment, its config, its process.

LiteLLM is pinned and installed apart from edge-qwen: installing `litellm[proxy]` into
our environment would downgrade rich, websockets and python-dateutil, which the server's
stack (and a user's other tools) depend on. A virtual environment of its own, made once
under the edge-qwen home, keeps both sides whole.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import EdgeError
from edge.route.replicas import Replica

# Pinned: the pass-through of reasoning_content, usage and tool calls is tested against
# this release (tests/live/test_route_passthrough.py); a newer one is a deliberate upgrade.
# (1.110.x's [proxy] extra needs a litellm-proxy wheel that PyPI does not carry yet.)
LITELLM_VERSION = "1.108.7"
STRATEGIES = {
    "least-busy": "least-busy",
    "simple-shuffle": "simple-shuffle",
    "latency": "latency-based-routing",
}
DEFAULT_NAME = "qwen3"
# Per request, each retry to a replica drawn at random among those not cooling down, with
# no pause while any is left. LiteLLM does not cool a replica down for a connection error
# (a stream cut before its first chunk), and the failure handler that does cool it down
# for a refused connection ran seconds late on 2 busy cores; meanwhile every retry may
# draw the dead replica again, at odds 1/N. With 3 retries a request queued there was
# lost at odds (1/3)^3 over three replicas: 2 failover runs in 10 lost one
# (scripts/failover.py). With 8 the odds are 1 in 6,561 over three replicas, 1 in 256
# over two. An overloaded replica answers a retry with a 429 at once (its queue is
# bounded) and is cooled down by that handler, so the extra retries cost it little.
RETRIES = 8
ALLOWED_FAILS = 0  # a replica that fails (timeout, 429, 5xx) cools down at once...
COOLDOWN_S = 5  # ...for this long, then gets traffic again
HEALTH_CHECK_INTERVAL_S = 15
READY_TIMEOUT_S = 120.0  # LiteLLM's proxy takes ~10-25 s to import on a small machine
STOP_TIMEOUT_S = 15.0
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
# No .env files from the working folder, no cost-map download (the proxy may be offline),
# no admin UI (nothing to log in to without a database), no telemetry.
QUIET_ENV = {
    "LITELLM_MODE": "PRODUCTION",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "DISABLE_ADMIN_UI": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
}


class RouterError(EdgeError):
    """LiteLLM could not be installed or started, or stopped on its own."""


@dataclass(frozen=True)
class RouterPlan:
    """What the router will run: its config (no secrets in it) and the environment
    variables that carry the secrets to it."""

    name: str
    config: dict[str, Any]
    secrets: dict[str, str] = field(repr=False)


def plan_router(
    replicas: list[Replica], *, name: str | None, strategy: str, key: str | None
) -> RouterPlan:
    """LiteLLM's config: every replica a deployment of one public model name.

    The name is `name`, else "qwen3"; the name the replicas serve under is an alias of it,
    so a client written against one `edge-qwen serve` works unchanged. Keys are referenced
    as `os.environ/VAR`, so the file on disk holds none. A replica that was down at start
    is a deployment too, named after the first answering replica's model: edge-qwen serve
    answers whatever `model` a request names (it serves one), so the name only labels it.
    """
    public = name or DEFAULT_NAME
    known = [r.model for r in replicas if r.model]
    aliases = {m: public for m in known if m != public}
    stand_in = known[0] if known else public
    secrets: dict[str, str] = {}
    deployments = []
    for i, replica in enumerate(replicas):
        key_ref = "none"  # the OpenAI client needs some key; an open replica ignores it
        if replica.key:
            secrets[f"EDGE_QWEN_REPLICA_KEY_{i}"] = replica.key
            key_ref = f"os.environ/EDGE_QWEN_REPLICA_KEY_{i}"
        deployments.append(_deployment(public, i, replica.model or stand_in, replica, key_ref))
    general: dict[str, Any] = {
        "background_health_checks": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
    }
    if key:
        secrets[MASTER_KEY_ENV] = key
        general["master_key"] = f"os.environ/{MASTER_KEY_ENV}"
    else:  # LiteLLM refuses to start open; the CLI allows no key only on loopback, as serve
        general["dangerously_permit_weak_or_unset_master_key"] = True
    config = {
        "model_list": deployments,
        "router_settings": {
            "routing_strategy": STRATEGIES[strategy],
            "num_retries": RETRIES,
            "allowed_fails": ALLOWED_FAILS,
            "cooldown_time": COOLDOWN_S,
            "model_group_alias": aliases,
            "fallbacks": [{public: [public]}],
        },
        # Our fields (reasoning_content, chat_template_kwargs, …) go through untouched.
        "litellm_settings": {"drop_params": False, "num_retries": RETRIES},
        "general_settings": general,
    }
    return RouterPlan(public, config, secrets)


def _deployment(public: str, i: int, model: str, replica: Replica, key_ref: str) -> dict[str, Any]:
    return {
        "model_name": public,
        "litellm_params": {
            "model": f"openai/{model}",
            "api_base": f"{replica.url}/v1",
            "api_key": key_ref,
        },
        # What an edge-qwen replica can do: LiteLLM refuses a Messages request with
        # `thinking`, or tools, for a model it does not know to support them.
        "model_info": {
            "id": f"replica-{i}",
            "mode": "chat",
            "supports_reasoning": True,
            "supports_function_calling": True,
            "supports_response_schema": True,
            # LiteLLM's background health check is a real completion: one token is enough.
            "health_check_max_tokens": 1,
        },
    }


def router_venv(home: Path, configured: Path | None) -> Path:
    """Where LiteLLM lives: the configured folder, else one per pinned version under home."""
    return configured or home / "router" / f"litellm-{LITELLM_VERSION}"


def ensure_router(venv: Path, say: Callable[[str], None]) -> Path:
    """The `litellm` executable of the pinned release, installed into `venv` if missing."""
    exe = venv / ("Scripts" if sys.platform == "win32" else "bin") / "litellm"
    if exe.is_file() and _installed(venv):
        return exe
    say(f"Installing LiteLLM {LITELLM_VERSION} into {venv} (once; a minute or two)")
    python = exe.parent / "python"
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise RouterError(
                f"Installing LiteLLM failed ({' '.join(step[-3:])}): {tail}",
                "Check that PyPI is reachable, or install litellm[proxy]=="
                f"{LITELLM_VERSION} into a venv yourself and set EDGE_QWEN_ROUTER_VENV to it.",
            )
    return exe


def _installed(venv: Path) -> bool:
    pattern = f"lib/python*/site-packages/litellm-{LITELLM_VERSION}.dist-info"
    return any(venv.glob(pattern)) or any(
        venv.glob(f"Lib/site-packages/litellm-{LITELLM_VERSION}.dist-info")
    )


def write_config(plan: RouterPlan, path: Path) -> None:
    """The config as JSON (a subset of YAML, which LiteLLM reads), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(plan.config, f, indent=1)


def launch(
    exe: Path, plan: RouterPlan, config: Path, *, host: str, port: int, environ: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """Write the config and start LiteLLM's proxy; its output goes to our stderr (stdout
    carries only the address)."""
    write_config(plan, config)
    env = {**environ, **QUIET_ENV, **plan.secrets}
    command = [str(exe), "--config", str(config), "--host", host, "--port", str(port)]
    return subprocess.Popen(command, env=env, stdout=sys.stderr, stderr=sys.stderr)


def run_router(
    exe: Path,
    plan: RouterPlan,
    config: Path,
    *,
    host: str,
    port: int,
    environ: Mapping[str, str],
    on_ready: Callable[[], None],
) -> None:
    """Run LiteLLM's proxy in the foreground until it stops, SIGTERM or Ctrl-C.

    SIGTERM is passed on to the proxy, which finishes; we then return (exit 0).
    """
    proc = launch(exe, plan, config, host=host, port=port, environ=environ)
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        wait_ready(proc, f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}")
        on_ready()
        code = proc.wait()
        raise RouterError(f"The router stopped on its own (exit code {code}).", None)
    except SystemExit:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        _terminate(proc)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def wait_ready(proc: subprocess.Popen[bytes], base: str, limit: float = READY_TIMEOUT_S) -> None:
    """Until the proxy at `base` answers its liveness probe; RouterError if it exits or
    `limit` seconds pass."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RouterError(
                f"The router exited while starting (exit code {proc.returncode}).",
                "Its output above says why.",
            )
        try:
            with urllib.request.urlopen(f"{base}/health/liveliness", timeout=2):  # noqa: S310
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)
    raise RouterError(
        f"The router did not answer within {limit:.0f} s.", "Its output above says why."
    )


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
