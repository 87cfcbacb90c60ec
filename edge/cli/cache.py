"""`edge-qwen cache ls|clear`: the prompt cache kept on disk (edge.engine.diskcache)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from edge.cli.app import app, guarded, human, say, settings

cache_app = typer.Typer(
    name="cache",
    help="The prompt cache on disk: long prompts' KV kept across restarts and sleep.",
    no_args_is_help=True,
)
app.add_typer(cache_app)

ModelFileOpt = Annotated[
    Path | None,
    typer.Option("--model", "-m", help="Clear only this .gguf file's prompts (default: all)"),
]


def _root() -> Path:
    return settings().home / "prompt-cache"


def _ago(t: float) -> str:
    s = max(0.0, time.time() - t)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.0f} {unit} ago"
    return "just now"


@cache_app.command("ls")
@guarded
def ls() -> None:
    """List the prompts kept on disk: tokens, size, KV type, model and last use."""
    from edge.engine.diskcache import inventory
    from edge.engine.plan import disk_bytes

    cfg = settings()
    root = cfg.home / "prompt-cache"
    found = inventory(root)
    total = sum(p.size for p in found)
    cap = disk_bytes(cfg)
    say(f"{root}: {len(found)} prompts, {human(total)} of {human(cap)}")
    for p in found:
        model = Path(p.model_file).name if p.model_file else f"model {p.model[:12]}"
        typer.echo(
            f"{p.tokens:>8,} tokens  {human(p.size):>10}  {_ago(p.used):>12}  {p.kv:<6}  {model}"
        )


@cache_app.command("clear")
@guarded
def clear_cmd(model: ModelFileOpt = None) -> None:
    """Delete the prompts kept on disk (a running server keeps what is in its RAM)."""
    from edge.engine.diskcache import clear, fingerprint
    from edge.errors import UsageError

    root = _root()
    sha = None
    if model is not None:
        if not model.is_file():
            raise UsageError(
                f"No such model file: {model}", "Pass the .gguf path `cache ls` shows."
            )
        root.mkdir(parents=True, exist_ok=True)
        sha = fingerprint(model, root / "models.json")
    files, n = clear(root, sha)
    say(f"deleted {files} prompt cache files ({human(n)}) from {root}")
