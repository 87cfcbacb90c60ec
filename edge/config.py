"""`Settings`: the one options type for the store, loading and serving.

Defaults live here and nowhere else. `Settings.load(**flags)` builds it the way every
command does: the defaults, then `EDGE_QWEN_<FIELD>` from the environment, then the
flags that were given. It is built once, at the edge (the CLI), and passed down; core
code takes it as an argument and never reads the environment itself. `Settings(...)`
with keywords reads no environment, which is what tests and library callers want.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge.errors import UsageError

DEFAULT_REPO = "Qwen/Qwen3-0.6B"
DEFAULT_QUANT = "Q8_0"
ENV_PREFIX = "EDGE_QWEN_"
# The server's batching engine decodes this many sequences together; 4 is llama-server's
# own default. Its KV cache is unified (the sequences share the context's cells), so a
# slot costs no KV memory, only its share of each step. chat and run use one.
DEFAULT_PARALLEL = 4
MAX_PARALLEL = 64

QWEN3_SAMPLING: dict[bool, dict[str, float]] = {
    True: dict(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0),
    False: dict(temperature=0.7, top_p=0.8, top_k=20, min_p=0.0),
}
"""Qwen's recommended sampling for Qwen3, keyed by whether thinking is on: the default of
every request that does not say (the engine's `SamplingParams` start from "not")."""

KvType = Literal["f16", "q8_0", "f32"]
RouteStrategy = Literal["least-busy", "simple-shuffle", "latency"]
ReasoningFormat = Literal["separate", "inline", "hidden"]


def default_home() -> Path:
    """The store folder: $EDGE_QWEN_HOME, else $XDG_CACHE_HOME/edge-qwen, else
    ~/.cache/edge-qwen (so that a Settings made in code finds the same home as the CLI)."""
    if own := os.environ.get("EDGE_QWEN_HOME"):
        return Path(own)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "edge-qwen"


class Settings(BaseModel):
    """Everything a person can configure. None means "chosen for you": by the planner
    (context, threads, KV type, flash attention, GPU layers, cache RAM) or by the command
    (parallel: 1 for chat and run, `DEFAULT_PARALLEL` for serve)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # -- the store and pull
    home: Path = Field(default_factory=default_home, description="Model store folder")
    repo: str = Field(default=DEFAULT_REPO, description="Hugging Face repo that pull fetches")
    quant: str = Field(default=DEFAULT_QUANT, description="Quantization type that pull makes")
    # -- loading (the planner's input)
    model: str | None = Field(default=None, description="Store name, .gguf path or HF folder")
    ctx: int | None = Field(default=None, ge=64, description="Context length in tokens")
    threads: int | None = Field(default=None, ge=1, description="CPU threads")
    kv: KvType | None = Field(default=None, description="KV-cache type: f16, q8_0 or f32")
    flash_attn: bool | None = Field(default=None, description="Flash attention")
    gpu_layers: int | None = Field(
        default=None, ge=0, description="Layers on the GPU (0: CPU only)"
    )
    parallel: int | None = Field(
        default=None, ge=1, le=MAX_PARALLEL, description="Sequences decoded together"
    )
    cache_ram: int | None = Field(
        default=None,
        ge=0,
        description="MiB of RAM that keeps finished conversations' KV for reuse (0: none)",
    )
    cache_disk: int | None = Field(
        default=None,
        ge=0,
        description="MiB of disk that keeps long prompts' KV across restarts and sleep (0: none)",
    )
    # -- serving
    host: str = Field(default="127.0.0.1", description="Address the server binds")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the server binds")
    lan: bool = Field(default=False, description="Serve every interface with an API key")
    api_key: str | None = Field(default=None, description="Bearer key the server requires")
    no_auth: bool = Field(default=False, description="Serve off loopback without a key (unsafe)")
    max_queue: int = Field(default=16, ge=0, description="Requests that may wait; more get 429")
    reasoning_format: ReasoningFormat = Field(default="separate", description="Where thinking goes")
    cors_origins: tuple[str, ...] = Field(
        default=(), description="Browser origins allowed (comma-separated)"
    )
    idle: float | None = Field(
        default=None,
        description="How long an unused model stays loaded before it sleeps: seconds or a"
        " duration (30s, 5m, 1h); 0 at once, negative or never: it stays",
    )
    supervise: bool | None = Field(
        default=None,
        description="Serve from a child process that exits when the model sleeps (default:"
        " with a GPU build)",
    )
    max_body_bytes: int = Field(default=8 * 2**20, ge=1, description="Largest request body")
    body_timeout_s: float = Field(default=60.0, gt=0, description="Seconds a request body may take")
    advertise: bool = Field(
        default=False, description="Announce the server on the LAN over mDNS (needs --lan)"
    )
    # A client writes its request line and headers at once; 10 s still covers a phone on a
    # weak link losing that write three times (TCP's retries after 1, 2 and 4 s), and with
    # it a stalled client holds its socket 10 s, not forever (server/connections.py).
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds a client may take to send a request's headers"
    )
    # -- chat
    history: bool = Field(
        default=True, description="Keep what is typed in chat for the next session"
    )
    # -- routing (edge-qwen route: several servers behind LiteLLM's proxy)
    route_strategy: RouteStrategy = Field(
        default="simple-shuffle", description="How the router picks a replica"
    )
    replica_keys: tuple[str, ...] = Field(
        default=(), description="The replicas' keys: one for all, or one per replica"
    )
    router_venv: Path | None = Field(
        default=None, description="LiteLLM's virtual environment (default: under home)"
    )
    discover: bool = Field(
        default=False, description="Add the servers announced on the LAN (mDNS) to the replicas"
    )
    discover_wait: float = Field(
        default=3.0, gt=0, le=60, description="Seconds to listen for announced servers"
    )

    @field_validator("kv", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("idle", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("cors_origins", "replica_keys", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: a comma-separated list
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def models_dir(self) -> Path:
        """Where finished models live, one folder each."""
        return self.home / "models"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **flags: Any) -> Settings:
        """Defaults, then `EDGE_QWEN_*` variables, then the flags given (None: not given).

        A bad value is a UsageError that names the variable or flag it came from.
        """
        environ = os.environ if environ is None else environ
        env = {
            name: environ[cls.env_name(name)]
            for name in cls.model_fields
            if environ.get(cls.env_name(name), "") != ""
        }
        given = {name: value for name, value in flags.items() if value is not None}
        try:
            return cls(**{**env, **given})
        except ValidationError as exc:
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "?"
            source = f"--{name.replace('_', '-')}" if name in given else cls.env_name(name)
            raise UsageError(
                f"Invalid {source}: {first['msg']}.", _hint(cls.model_fields.get(name))
            ) from None

    @staticmethod
    def env_name(field: str) -> str:
        """`ctx` → `EDGE_QWEN_CTX`."""
        return ENV_PREFIX + field.upper()

    def shown(self) -> dict[str, Any]:
        """JSON-ready values for doctor, with the API key masked."""
        data = self.model_dump(mode="json")
        if data["api_key"]:
            data["api_key"] = "(set)"
        data["replica_keys"] = ["(set)" for _ in data["replica_keys"]]
        return data


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: Any) -> float:
    """Seconds from a number (seconds) or a duration as Ollama's keep_alive spells it (Go's:
    `30s`, `5m`, `1h30m`, `-1`); "never" or "forever" is -1. Negative means "for ever".
    Raises ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a text such as 5m")
    if isinstance(value, int | float):
        if math.isnan(value):
            raise ValueError("a duration is a number of seconds, not NaN")
        return -1.0 if math.isinf(value) else float(value)
    text = str(value).strip().lower()
    if text in ("never", "forever", "inf", "infinity"):
        return -1.0
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        return parse_duration(number)  # NaN is refused there
    sign = -1.0 if text.startswith("-") else 1.0
    body = text[1:] if text[:1] in ("+", "-") else text
    parts = _PART.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise ValueError(f"{value!r} is not a duration: use seconds or e.g. 30s, 5m, 1h30m")
    return sign * sum(float(n) * _UNITS[u] for n, u in parts)


def _hint(field: Any) -> str | None:
    if field is None:
        return None
    choices = getattr(field.annotation, "__args__", ())
    literals = [a for c in choices for a in getattr(c, "__args__", ()) if isinstance(a, str)]
    if literals:
        return f"Choose one of: {', '.join(literals)}."
    return f"{field.description}." if field.description else None
