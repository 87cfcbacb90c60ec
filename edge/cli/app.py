"""The `edge-qwen` command. Each command is a thin verb: parse flags, call core code, print.

Heavy modules (llama_cpp, huggingface_hub, numpy) are imported inside the commands so
`edge-qwen --help` stays instant. Results go to stdout, progress and errors to stderr.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edge.engine.plan import DEFAULT_PARALLEL
from edge.errors import EdgeError, UsageError

if TYPE_CHECKING:
    from edge.config import Settings

app = typer.Typer(
    name="edge-qwen",
    help="Run Qwen3-0.6B locally through llama.cpp: pull, convert, quantize, manage models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def command(fn: Callable[..., None]) -> Callable[..., None]:
    """Register a command whose domain errors print as message + hint, never a traceback."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except EdgeError as exc:
            _say(f"error: {exc.message}")
            if exc.hint:
                _say(f"hint: {exc.hint}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _say("interrupted: nothing half-written was kept")
            raise typer.Exit(130) from None

    app.command()(run)
    return fn


def _settings() -> Settings:
    from edge.config import Settings

    return Settings()


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class _Bar:
    """A byte progress bar (tqdm, as huggingface-hub's own) for convert steps."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc="convert",
                leave=False,
            )
        self._bar.update(done - self._bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@command
def pull(
    repo: Annotated[
        str | None,
        typer.Argument(help="Hub repo id (default Qwen/Qwen3-0.6B), an HF folder or a .gguf file"),
    ] = None,
    quant: Annotated[
        str | None, typer.Option("--quant", "-q", help="Q8_0 (default), Q4_K_M, Q6_K, F16, …")
    ] = None,
    revision: Annotated[
        str | None, typer.Option(help="Branch, tag or commit (default main)")
    ] = None,
    gguf: Annotated[
        bool, typer.Option("--gguf", help="Fetch a ready GGUF repo's file instead of converting")
    ] = False,
    name: Annotated[
        str | None, typer.Option(help="Store name (default: repo-quant, e.g. qwen3-0.6b-q8_0)")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even if the same model is stored")
    ] = False,
    threads: Annotated[int, typer.Option(help="Quantizer threads (0 = all cores)")] = 0,
) -> None:
    """Download Qwen3 from the Hugging Face hub (or HF_ENDPOINT), convert, quantize and store it.

    Downloads resume after an interruption; HF_TOKEN and HF_HUB_OFFLINE are honoured.
    """
    from edge.model.pipeline import PullOptions
    from edge.model.pipeline import pull as run_pull

    settings = _settings()
    opts = PullOptions(repo or settings.repo, quant, revision, gguf, name, force, threads)
    bar = _Bar()
    try:
        result = run_pull(opts, settings, report=_say, progress=bar)
    finally:
        bar.close()
    entry = result.entry
    verb = {"created": "Stored", "updated": "Updated", "unchanged": "Already up to date:"}[
        result.status
    ]
    _say(f"{verb} {entry.name} ({entry.manifest.quant}, {_human(entry.manifest.size)})")
    typer.echo(entry.path)


@command
def convert(
    hf_dir: Annotated[
        Path,
        typer.Argument(help="Hugging Face Qwen3 folder (config.json, *.safetensors, tokenizer)"),
    ],
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="Output GGUF (default ./<folder>-<type>.gguf)"),
    ] = None,
    outtype: Annotated[
        str | None, typer.Option(help="f32, f16 or bf16 (default: the checkpoint's own)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists")] = False,
) -> None:
    """Convert a Qwen3 safetensors checkpoint to a GGUF file."""
    from edge.model.convert import convert as run_convert

    if outtype is not None:
        outtype = outtype.lower()
    target = out or Path.cwd() / f"{hf_dir.resolve().name}-{outtype or 'auto'}.gguf"
    bar = _Bar()
    try:
        path = run_convert(hf_dir, target, outtype=outtype, overwrite=force, progress=bar)
    finally:
        bar.close()
    _say(f"Wrote {path} ({_human(path.stat().st_size)})")
    typer.echo(path)


@command
def quantize(
    src: Annotated[Path, typer.Argument(help="Input GGUF (F32, F16 or BF16)")],
    qtype: Annotated[str, typer.Option("--type", "-t", help="Q4_K_M, Q5_K_M, Q6_K, Q8_0, F16, …")],
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Output GGUF (default beside the input)")
    ] = None,
    threads: Annotated[int, typer.Option(help="Threads (0 = all cores)")] = 0,
    allow_requantize: Annotated[
        bool,
        typer.Option("--allow-requantize", help="Accept an already quantized input (loses more)"),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists")] = False,
) -> None:
    """Quantize a GGUF file with llama.cpp's own quantizer."""
    from edge.model.quantize import quant_type
    from edge.model.quantize import quantize as run_quantize

    q = quant_type(qtype)
    target = out or src.with_name(f"{_strip_type(src.stem)}-{q.name}.gguf")
    _say(f"Quantizing {src.name} to {q.name}")
    path = run_quantize(
        src, target, q.name, threads=threads, allow_requantize=allow_requantize, overwrite=force
    )
    _say(f"Wrote {path} ({_human(path.stat().st_size)})")
    typer.echo(path)


def _strip_type(stem: str) -> str:
    for suffix in ("-f32", "-f16", "-bf16", "-auto"):
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)]
    return stem


@command
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
    path: Annotated[bool, typer.Option("--path", help="Print the store folder and exit")] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-hash every model against its manifest")
    ] = False,
) -> None:
    """List the models in the local store (EDGE_QWEN_HOME, default ~/.cache/edge-qwen)."""
    from dataclasses import asdict

    from edge.model.store import ModelStore

    store = ModelStore(_settings().models_dir)
    if path:
        typer.echo(store.root)
        return
    entries = store.entries()
    if verify:
        for entry in entries:
            store.verify(entry)
    if as_json:
        rows = [{**asdict(e.manifest), "path": str(e.path)} for e in entries]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not entries:
        _say(f"No models in {store.root} yet. Get one with `edge-qwen pull`.")
        return
    _print_table(entries)


def _print_table(entries: list[Any]) -> None:
    rows = [("NAME", "QUANT", "SIZE", "SOURCE", "CREATED")]
    for e in entries:
        src = e.manifest.source
        origin = src.get("repo") or src.get("path", "?")
        commit = src.get("commit", "")
        if src.get("kind", "").startswith("hub") and commit:
            origin += f"@{commit[:8]}"
        rows.append((e.name, e.manifest.quant, _human(e.manifest.size), origin, e.manifest.created))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@command
def rm(
    name: Annotated[str, typer.Argument(help="Store name, as `edge-qwen models` shows it")],
) -> None:
    """Remove a model from the store (the raw download stays in the Hugging Face cache)."""
    from edge.model.store import ModelStore

    entry = ModelStore(_settings().models_dir).remove(name)
    _say(f"Removed {entry.name} ({_human(entry.manifest.size)} freed)")


ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Store name, .gguf path or HF folder (default: the pulled Q8_0)"
    ),
]
CtxOpt = Annotated[
    int | None, typer.Option("--ctx", help="Context length in tokens (default 8192)")
]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", help="CPU threads (default: physical cores)")
]
KvOpt = Annotated[str | None, typer.Option("--kv", help="KV-cache type: f16 (default), q8_0, f32")]
GpuOpt = Annotated[
    int | None,
    typer.Option("--gpu-layers", help="Layers to offload (default: all that fit; 0 = CPU only)"),
]
FlashOpt = Annotated[
    bool | None,
    typer.Option("--flash-attn/--no-flash-attn", help="Flash attention (default: by the plan)"),
]
ThinkOpt = Annotated[bool, typer.Option("--think/--no-think", help="Qwen3 thinking mode")]
SystemOpt = Annotated[str | None, typer.Option("--system", "-s", help="System prompt")]
BudgetOpt = Annotated[int | None, typer.Option("--thinking-budget", help="Cap on thinking tokens")]
LoopOpt = Annotated[
    bool, typer.Option("--loop-guard/--no-loop-guard", help="Stop runaway repetition")
]
TempOpt = Annotated[
    float | None, typer.Option("--temperature", "-t", help="Default 0.6 thinking, 0.7 not")
]
MaxOpt = Annotated[int | None, typer.Option("--max-tokens", "-n", help="Cap on generated tokens")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Sampling seed, for repeatable output")]


def _open_conversation(model: str | None, ctx: int | None, threads: int | None, kv: str | None,
                       flash: bool | None, gpu: int | None, think: bool, system: str | None) -> Any:  # fmt: skip
    """Resolve, plan and load the model; print the plan line; return a Conversation."""
    from edge.chat.conversation import Conversation
    from edge.chat.template import ChatTemplate
    from edge.engine import open_engine
    from edge.engine.plan import make_plan, read_model_info
    from edge.model.pipeline import ensure_model

    settings = _settings()
    path = ensure_model(model, settings, report=_say)
    info = read_model_info(path)
    plan = make_plan(info, n_ctx=ctx, threads=threads or settings.threads, kv_type=kv,
                     flash_attn=flash, n_gpu_layers=gpu)  # fmt: skip
    _say(plan.describe(info))
    engine = open_engine(path, plan, info, _say)
    return Conversation(
        engine, ChatTemplate.from_gguf(path), info.name, system=system, thinking=think
    )


def _read_prompt(prompt: str | None) -> str:
    if prompt not in (None, "-"):
        return str(prompt)
    if prompt is None and sys.stdin.isatty():
        raise UsageError("No prompt given.", "Pass PROMPT, or pipe text in (use - to read stdin).")
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"Standard input is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}).",
            "Convert it first, e.g. with iconv -t UTF-8.",
        ) from None


@command
def run(
    prompt: Annotated[
        str | None, typer.Argument(help="The prompt; - or a pipe reads stdin")
    ] = None,
    model: ModelOpt = None,
    think: ThinkOpt = True,
    system: SystemOpt = None,
    show_thinking: Annotated[
        bool, typer.Option("--show-thinking/--hide-thinking", help="Thinking on stderr (dimmed)")
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object at the end")
    ] = False,
    thinking_budget: BudgetOpt = None,
    loop_guard: LoopOpt = True,
    temperature: TempOpt = None,
    max_tokens: MaxOpt = None,
    seed: SeedOpt = None,
    ctx: CtxOpt = None,
    threads: ThreadsOpt = None,
    kv: KvOpt = None,
    flash_attn: FlashOpt = None,
    gpu_layers: GpuOpt = None,
) -> None:
    """Answer one prompt: the answer streams to stdout, thinking to stderr.

    Exit codes: 0 answered, 3 cut off by --max-tokens or the context, 1 error, 2 usage, 130 Ctrl-C.
    """
    from edge.chat.conversation import TurnOptions
    from edge.cli.repl import run_once

    text = _read_prompt(prompt)
    conv = _open_conversation(model, ctx, threads, kv, flash_attn, gpu_layers, think, system)
    opts = TurnOptions(temperature=temperature, max_tokens=max_tokens, seed=seed,
                       thinking_budget=thinking_budget, loop_guard=loop_guard)  # fmt: skip
    try:
        finish = run_once(conv, text, opts, show_thinking=show_thinking, as_json=as_json)
    finally:
        conv.engine.close()  # the scheduler ends its step before the model is freed
    if finish.reason != "stop":
        raise typer.Exit(3)


@command
def chat(
    model: ModelOpt = None,
    think: ThinkOpt = True,
    system: SystemOpt = None,
    show_thinking: Annotated[
        bool, typer.Option("--show-thinking/--hide-thinking", help="Show thinking")
    ] = True,
    thinking_budget: BudgetOpt = None,
    loop_guard: LoopOpt = True,
    temperature: TempOpt = None,
    max_tokens: MaxOpt = None,
    seed: SeedOpt = None,
    ctx: CtxOpt = None,
    threads: ThreadsOpt = None,
    kv: KvOpt = None,
    flash_attn: FlashOpt = None,
    gpu_layers: GpuOpt = None,
) -> None:
    """Chat in the terminal: answers stream as they are made, thinking shown dimmed.

    Follow-up turns reuse the model's memory of the conversation, so only the new
    message is read. /help lists the commands; Ctrl-C stops an answer, Ctrl-D leaves.
    """
    from edge.chat.conversation import TurnOptions
    from edge.cli.repl import ChatLoop

    conv = _open_conversation(model, ctx, threads, kv, flash_attn, gpu_layers, think, system)
    opts = TurnOptions(temperature=temperature, max_tokens=max_tokens, seed=seed,
                       thinking_budget=thinking_budget, loop_guard=loop_guard)  # fmt: skip
    try:
        ChatLoop(conv, opts, show_thinking=show_thinking).run()
    finally:
        conv.engine.close()


@command
def serve(
    model: ModelOpt = None,
    host: Annotated[
        str, typer.Option(help="Address to bind (default loopback only)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    lan: Annotated[
        bool, typer.Option("--lan", help="Serve the home LAN: all interfaces, API key on")
    ] = False,
    api_key: Annotated[
        str | None, typer.Option(help="Require this Bearer key (or EDGE_QWEN_API_KEY)")
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve off loopback without a key (unsafe)")
    ] = False,
    max_queue: Annotated[int, typer.Option(help="Requests that may wait; more get 429")] = 16,
    parallel: Annotated[
        int, typer.Option(help="Requests decoded together in one batch (the rest wait)")
    ] = DEFAULT_PARALLEL,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="Allow this browser origin (repeatable)")
    ] = None,
    reasoning_format: Annotated[
        str, typer.Option(help="separate (reasoning_content), inline (<think> in content), hidden")
    ] = "separate",
    ctx: CtxOpt = None,
    threads: ThreadsOpt = None,
    kv: KvOpt = None,
    flash_attn: FlashOpt = None,
    gpu_layers: GpuOpt = None,
) -> None:
    """Serve an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models).

    Binds 127.0.0.1:8000. --lan binds every interface and turns on an API key (generated
    and stored on first use). Point any OpenAI client at http://HOST:PORT/v1.
    """
    import signal
    import socket

    import uvicorn

    from edge.chat.template import ChatTemplate
    from edge.engine import Engine, open_engine
    from edge.engine.plan import make_plan, read_model_info
    from edge.model.pipeline import ensure_model
    from edge.server import ServerOptions, create_app
    from edge.server.lan import addresses, server_key

    settings = _settings()
    if reasoning_format not in ("separate", "inline", "hidden"):
        raise UsageError(
            f"Unknown reasoning format '{reasoning_format}'.", "Use separate, inline or hidden."
        )
    bind = "0.0.0.0" if lan and host == "127.0.0.1" else host
    key = server_key(
        bind, api_key or settings.api_key, lan=lan, no_auth=no_auth, home=settings.home, say=_say
    )
    path = ensure_model(model, settings, report=_say)
    info = read_model_info(path)
    plan = make_plan(info, n_ctx=ctx, threads=threads or settings.threads, kv_type=kv,
                     flash_attn=flash_attn, n_gpu_layers=gpu_layers, parallel=parallel)  # fmt: skip
    _say(plan.describe(info))
    model_id = path.parent.name if path.name == "model.gguf" else path.stem
    options = ServerOptions(api_key=key, max_queue=max_queue, reasoning_format=reasoning_format,
                            cors_origins=tuple(cor for cor in cors_origin or ()))  # fmt: skip
    servers: list[uvicorn.Server] = []

    def failed(reason: str) -> None:  # no model, no server: a supervisor can restart it
        servers[0].should_exit = True

    def load() -> tuple[Engine, ChatTemplate]:
        template = ChatTemplate.from_gguf(path)  # first: it is quick, and fails fast
        return open_engine(path, plan, info, _say), template

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # On the event loop, before uvicorn waits for open responses: running streams
            # end now with a finish reason, queued and new requests get 503.
            api.state.runtime.drain()
            await super().shutdown(sockets)

    api = create_app(model_id, load, options, on_failed=failed)
    # The bound is for responses drain() cannot end (a client that stopped reading).
    config = uvicorn.Config(api, host=bind, port=port, log_level="warning",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)  # fmt: skip
    servers.append(Server(config))
    # uvicorn re-raises SIGTERM once it has shut down; asked to stop, we exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    for address in addresses(bind):
        _say(
            f"Serving {model_id} at http://{address}:{port}/v1 (web chat: http://{address}:{port}/)"
        )
    servers[0].run()
    if api.state.runtime.failed:  # stopped because the model could not be loaded
        raise EdgeError(api.state.runtime.failed)


GRACEFUL_SHUTDOWN_S = 5  # seconds


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


@command
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="A smaller run (minutes) that still makes every figure")
    ] = False,
    quant: Annotated[
        list[str] | None,
        typer.Option(
            help="Quantization of the synthetic model (repeatable; default Q4_K_M, Q8_0 for "
            "0.6b, Q4_K_M for gpu-proxy)"
        ),
    ] = None,
    shape: Annotated[
        list[str] | None,
        typer.Option(
            help="Shape of the synthetic model (repeatable; default 0.6b and gpu-proxy, the "
            "GPU-regime proxy: a ~5 ms token on 1 thread, --threads does not apply)"
        ),
    ] = None,
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Benchmark this GGUF instead")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for results.json, plots, summary.md")] = Path(
        "bench-results"
    ),
    markdown: Annotated[
        Path | None, typer.Option(help="Also put the tables into this Markdown file")
    ] = None,
    reference: Annotated[
        bool,
        typer.Option(
            "--reference/--no-reference", help="Compare with upstream llama.cpp (built once)"
        ),
    ] = True,
    ctx: Annotated[int, typer.Option(help="Context every contender is given")] = 4096,
    threads: ThreadsOpt = None,
    flash_attn: FlashOpt = None,
) -> None:
    """Measure edge-qwen beside upstream llama-bench, llama-server and llama-cpp-python.

    Same model, threads, context and flash-attention setting for every contender; writes
    every raw number to OUT/results.json with PNG plots and a Markdown summary, one
    section per shape.
    """
    try:
        import httpx  # noqa: F401
        import matplotlib  # noqa: F401
        import sse_starlette  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"The benchmark needs {exc.name}, which is not installed.",
            'pip install "edge-qwen[bench]"',
        ) from None
    from edge.bench.run import BenchOptions, run

    if model is not None and not model.is_file():
        raise UsageError(f"No GGUF file at {model}.", "Give the path of a .gguf file.")
    settings = _settings()
    opts = BenchOptions(out=out, quick=quick, quants=tuple(quant or ()),
                        shapes=tuple(shape or ()), model=model,
                        threads=threads or settings.threads, ctx=ctx, flash_attn=flash_attn,
                        reference=reference, markdown=markdown, cache=settings.home / "bench")  # fmt: skip
    run(opts, _say)
    typer.echo((out / "summary.md").read_text(encoding="utf-8"))


@command
def doctor(
    model: ModelOpt = None,
    ctx: CtxOpt = None,
    kv: KvOpt = None,
    gpu_layers: GpuOpt = None,
    parallel: Annotated[
        int | None, typer.Option("--parallel", help="Plan for the server's N sequences")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
) -> None:
    """Check the llama.cpp build, GPUs, memory and model store; show the plan the engine
    would use, with its arithmetic.

    Exits 1 when something needed to chat is missing (e.g. no model pulled yet, or the
    model does not fit in the memory that is free).
    """
    from edge.engine.doctor import render, report

    wishes = {"n_ctx": ctx, "kv_type": kv, "n_gpu_layers": gpu_layers, "parallel": parallel}
    data, problems, warnings = report(_settings(), model, wishes)
    if as_json:
        typer.echo(json.dumps({**data, "problems": problems, "warnings": warnings}, indent=2))
    else:
        for line in render(data):
            typer.echo(line)
        for w in warnings:
            _say(f"warning: {w}")
        for p in problems:
            _say(f"problem: {p}")
    if problems:
        raise typer.Exit(1)


def main() -> None:
    """Console entry point."""
    app()
