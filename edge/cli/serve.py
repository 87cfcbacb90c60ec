"""`edge-qwen serve`: the OpenAI-compatible API on the loopback or the home LAN."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from edge.cli.app import (
    CtxOpt,
    FlashOpt,
    GpuOpt,
    KvOpt,
    ModelOpt,
    ThreadsOpt,
    command,
    plan_model,
    say,
    settings,
)

HostOpt = Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1)")]
PortOpt = Annotated[int | None, typer.Option(help="Port (default 8000)")]
LanOpt = Annotated[
    bool | None, typer.Option("--lan", help="Serve the home LAN: all interfaces, API key on")
]
KeyOpt = Annotated[str | None, typer.Option(help="Require this Bearer key")]
NoAuthOpt = Annotated[
    bool | None, typer.Option("--no-auth", help="Serve off loopback without a key (unsafe)")
]
AdvertiseOpt = Annotated[
    bool | None,
    typer.Option("--advertise", help="Announce the server on the LAN over mDNS (with --lan)"),
]
QueueOpt = Annotated[
    int | None, typer.Option(help="Requests that may wait; more get 429 (default 16)")
]
ParallelOpt = Annotated[
    int | None, typer.Option(help="Requests decoded together in one batch (default 4)")
]
CacheRamOpt = Annotated[
    int | None,
    typer.Option(
        help="MiB of RAM that keeps finished conversations' KV for reuse (default: an eighth"
        " of free RAM, at most 2048; 0: none)",
    ),
]
CacheDiskOpt = Annotated[
    int | None,
    typer.Option(
        help="MiB of disk that keeps long prompts' KV across restarts and sleep (default: a"
        " tenth of free disk, at most 8192; 0: none)",
    ),
]
CorsOpt = Annotated[list[str] | None, typer.Option(help="Allow this browser origin (repeatable)")]
IdleOpt = Annotated[
    str | None,
    typer.Option(
        help="Free the model after this long unused (30s, 5m, 1h; 0: at once; never); the next"
        " request loads it again (default: 5m with a GPU, 30m on CPU)",
    ),
]
SuperviseOpt = Annotated[
    bool | None,
    typer.Option(
        "--supervise/--no-supervise",
        help="Serve from a child process that exits when the model sleeps, so nothing of"
        " the GPU stays (a crash is restarted by the next request); default: with a GPU",
    ),
]
ReasoningOpt = Annotated[
    str | None,
    typer.Option(help="separate (reasoning_content, default), inline (<think>), hidden"),
]


@command
def serve(
    model: ModelOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    lan: LanOpt = None,
    api_key: KeyOpt = None,
    no_auth: NoAuthOpt = None,
    advertise: AdvertiseOpt = None,
    max_queue: QueueOpt = None,
    parallel: ParallelOpt = None,
    cache_ram: CacheRamOpt = None,
    cache_disk: CacheDiskOpt = None,
    cors_origin: CorsOpt = None,
    reasoning_format: ReasoningOpt = None,
    idle: IdleOpt = None,
    supervise: SuperviseOpt = None,
    ctx: CtxOpt = None,
    threads: ThreadsOpt = None,
    kv: KvOpt = None,
    flash_attn: FlashOpt = None,
    gpu_layers: GpuOpt = None,
) -> None:
    """Serve an OpenAI-compatible API (/v1/chat/completions, /v1/responses, /v1/completions,
    /v1/models).

    Binds 127.0.0.1:8000. --lan binds every interface and turns on an API key (generated
    and stored on first use); --advertise announces it over mDNS (route --discover).
    Point any OpenAI client at http://HOST:PORT/v1. An unused model is freed after --idle
    and loaded again by the next request. Every option can also be set as
    EDGE_QWEN_<OPTION>, e.g. EDGE_QWEN_CTX=4096.
    """
    from edge.chat.template import ChatTemplate
    from edge.cli.puller import make_puller
    from edge.config import DEFAULT_PARALLEL
    from edge.engine import Engine, open_engine
    from edge.server import create_app
    from edge.server.advertise import advertised, announcement, check_reachable
    from edge.server.lan import server_key
    from edge.server.lifecycle import serve_forever
    from edge.server.runtime import default_idle_s

    cfg = serve_settings(
        model=model,
        host=host,
        port=port,
        lan=lan,
        api_key=api_key,
        no_auth=no_auth,
        advertise=advertise,
        max_queue=max_queue,
        parallel=parallel,
        cache_ram=cache_ram,
        cache_disk=cache_disk,
        reasoning_format=reasoning_format,
        idle=idle,
        supervise=supervise,
        cors_origin=cors_origin,
        ctx=ctx,
        threads=threads,
        kv=kv,
        flash_attn=flash_attn,
        gpu_layers=gpu_layers,
    )
    cfg = cfg.model_copy(update={"parallel": cfg.parallel or DEFAULT_PARALLEL})
    bind = "0.0.0.0" if cfg.lan and cfg.host == "127.0.0.1" else cfg.host
    check_reachable(cfg, bind)  # before a model is read: --advertise needs a LAN address
    key = server_key(bind, cfg.api_key, lan=cfg.lan, no_auth=cfg.no_auth, home=cfg.home, say=say)
    if _supervising(cfg):  # before planning: that would open a CUDA context here
        _serve_supervised(cfg, bind, key)
        return
    path, info, plan = plan_model(cfg)
    model_id = _served_name(path)
    if cfg.idle is None:
        cfg = cfg.model_copy(update={"idle": default_idle_s(plan.n_gpu_layers, plan.gpu)})
    say(_idle_line(cfg.idle))
    served = cfg.model_copy(update={"api_key": key})  # the key in force, maybe generated
    lan_name = announcement(served, model_id, bind)  # None without --advertise

    def load() -> tuple[Engine, ChatTemplate]:
        template = ChatTemplate.from_gguf(path)  # first: it is quick, and fails fast
        return open_engine(path, plan, info, say), template

    def make_app(on_failed: Any) -> Any:
        # /api/pull fetches into the store; the server keeps serving the model it loaded.
        return create_app(model_id, load, served, on_failed=on_failed, pull=make_puller(cfg, say))

    if _supervised():  # the Supervisor announces it, asleep or not
        lan_name = None
    with advertised(lan_name, say):  # withdrawn however the server stops
        serve_forever(
            make_app, bind, cfg.port, model_id, say, header_timeout_s=cfg.header_timeout_s
        )


def serve_settings(cors_origin: list[str] | None = None, **flags: Any) -> Any:
    """The Settings of serve's options (also `service install`'s, which takes the same):
    flags as the command line gives them, None where not given."""
    return settings(cors_origins=tuple(cors_origin) if cors_origin else None, **flags)


def _supervised() -> bool:
    """This serve is a Supervisor's child (it passes the hand-over socket's number)."""
    import os

    from edge.server.supervise import HANDOFF_ENV

    return HANDOFF_ENV in os.environ


def _supervising(cfg: Any) -> bool:
    """Whether this serve should be a Supervisor: asked, or by default with a GPU build
    that may offload (where sleeping in-process would keep the CUDA context), never
    when the model is kept loaded for ever, nor in the Supervisor's own child."""
    if _supervised() or os.environ.get("LISTEN_FDS") or (cfg.idle is not None and cfg.idle < 0):
        return False
    if cfg.supervise is not None:
        return bool(cfg.supervise)
    if cfg.gpu_layers == 0:
        return False
    from edge.engine.gpu import backends  # names only: no device is opened

    return any(b.upper().startswith(DISCRETE) for b in backends())


DISCRETE = ("CUDA", "ROCM", "HIP", "VULKAN", "SYCL", "MUSA")


def _serve_supervised(cfg: Any, bind: str, key: str | None) -> None:
    """Run this same command as the Supervisor's child (see edge/server/supervise.py)."""
    import sys

    from edge.model.pipeline import ensure_model
    from edge.server.advertise import advertised, announcement
    from edge.server.supervise import Probes, supervise

    path = ensure_model(cfg.model, cfg, report=say)  # pulled here once, not by each child
    model_id = _served_name(path)
    say(
        "Supervising: the server runs in a child process that exits when the model sleeps;"
        " the next request starts it again."
    )
    given = sys.argv[sys.argv.index("serve") + 1 :] if "serve" in sys.argv else []
    argv = [sys.executable, "-m", "edge.cli", "serve", *given, "--model", str(path)]
    served = cfg.model_copy(update={"api_key": key})
    with advertised(announcement(served, model_id, bind), say):
        supervise(argv, bind, cfg.port, Probes(model_id, key), say)


def _served_name(path: Any) -> str:
    """The model's name in the API: its store folder's, or the GGUF file's stem."""
    from edge.model.store import MODEL_FILE

    return str(path.parent.name if path.name == MODEL_FILE else path.stem)


def _idle_line(seconds: float | None) -> str:
    """What serve says about sleeping, e.g. "Frees the model after 5m unused; …"."""
    if seconds is None or seconds < 0:
        return "Keeps the model loaded while it runs (--idle never)."
    if seconds >= 60 and seconds % 60 == 0:
        after = f"{seconds / 60:g}m"
    else:
        after = f"{seconds:g}s"
    return f"Frees the model after {after} unused; the next request loads it again (--idle)."
