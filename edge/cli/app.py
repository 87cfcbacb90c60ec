"""The typer app and what every verb shares: error printing, settings, option types.

Each command is a thin verb: read `Settings` (defaults → EDGE_QWEN_* → its flags), call
core code, print. Heavy modules (llama_cpp, huggingface_hub, numpy) are imported inside
the commands so `edge-qwen --help` stays instant. Results go to stdout, progress and
errors to stderr.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edge.errors import EdgeError

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
    app.command()(guarded(fn))
    return fn


def guarded(fn: Callable[..., None]) -> Callable[..., None]:
    """`fn` with its domain errors printed as message + hint and a non-zero exit, for a
    command of a group (`edge-qwen service install`) as for a top-level one."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except EdgeError as exc:
            say(f"error: {exc.message}")
            if exc.hint:
                say(f"hint: {exc.hint}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            say("interrupted: nothing half-written was kept")
            raise typer.Exit(130) from None

    return run


def settings(**flags: Any) -> Settings:
    """The settings for this run: defaults, EDGE_QWEN_* variables, then the flags given."""
    from edge.config import Settings

    return Settings.load(**flags)


def say(message: str, *, nl: bool = True) -> None:
    """Progress, notes, questions and errors: stderr, so stdout carries only results."""
    typer.echo(message, err=True, nl=nl)


def human(n: float) -> str:
    """Bytes for a person: 604.3 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# Options shared by the verbs that load a model. Each defaults to None ("not given"), so
# its EDGE_QWEN_* variable or the default in edge/config.py applies.
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


def main() -> None:
    """Console entry point."""
    app()


def plan_model(cfg: Settings) -> tuple[Any, Any, Any]:
    """Find (or pull) `cfg.model` and plan its loading; say the plan's one line.
    Returns the GGUF's path, its header info and the plan."""
    from edge.engine.plan import make_plan, read_model_info
    from edge.model.pipeline import ensure_model

    path = ensure_model(cfg.model, cfg, report=say)
    info = read_model_info(path)
    plan = make_plan(info, cfg)
    say(plan.describe(info))
    return path, info, plan
