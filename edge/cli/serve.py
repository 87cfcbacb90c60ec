"""`edge-qwen serve`: the OpenAI-compatible API on the loopback or the home LAN."""

from __future__ import annotations

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
CorsOpt = Annotated[list[str] | None, typer.Option(help="Allow this browser origin (repeatable)")]
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
    max_queue: QueueOpt = None,
    parallel: ParallelOpt = None,
    cache_ram: CacheRamOpt = None,
    cors_origin: CorsOpt = None,
    reasoning_format: ReasoningOpt = None,
    ctx: CtxOpt = None,
    threads: ThreadsOpt = None,
    kv: KvOpt = None,
    flash_attn: FlashOpt = None,
    gpu_layers: GpuOpt = None,
) -> None:
    """Serve an OpenAI-compatible API (/v1/chat/completions, /v1/responses, /v1/completions,
    /v1/models).

    Binds 127.0.0.1:8000. --lan binds every interface and turns on an API key (generated
    and stored on first use). Point any OpenAI client at http://HOST:PORT/v1. Every option
    can also be set as EDGE_QWEN_<OPTION>, e.g. EDGE_QWEN_CTX=4096.
    """
    from edge.chat.template import ChatTemplate
    from edge.cli.puller import make_puller
    from edge.config import DEFAULT_PARALLEL
    from edge.engine import Engine, open_engine
    from edge.server import create_app
    from edge.server.lan import server_key
    from edge.server.lifecycle import serve_forever

    cfg = settings(
        model=model,
        host=host,
        port=port,
        lan=lan,
        api_key=api_key,
        no_auth=no_auth,
        max_queue=max_queue,
        parallel=parallel,
        cache_ram=cache_ram,
        reasoning_format=reasoning_format,
        cors_origins=tuple(cors_origin) if cors_origin else None,
        ctx=ctx,
        threads=threads,
        kv=kv,
        flash_attn=flash_attn,
        gpu_layers=gpu_layers,
    )
    cfg = cfg.model_copy(update={"parallel": cfg.parallel or DEFAULT_PARALLEL})
    bind = "0.0.0.0" if cfg.lan and cfg.host == "127.0.0.1" else cfg.host
    key = server_key(bind, cfg.api_key, lan=cfg.lan, no_auth=cfg.no_auth, home=cfg.home, say=say)
    path, info, plan = plan_model(cfg)
    model_id = path.parent.name if path.name == "model.gguf" else path.stem
    served = cfg.model_copy(update={"api_key": key})  # the key in force, maybe generated

    def load() -> tuple[Engine, ChatTemplate]:
        template = ChatTemplate.from_gguf(path)  # first: it is quick, and fails fast
        return open_engine(path, plan, info, say), template

    def make_app(on_failed: Any) -> Any:
        # /api/pull fetches into the store; the server keeps serving the model it loaded.
        return create_app(model_id, load, served, on_failed=on_failed, pull=make_puller(cfg, say))

    serve_forever(make_app, bind, cfg.port, model_id, say, header_timeout_s=cfg.header_timeout_s)
