"""The store's verbs: pull, convert, quantize, models, rm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edge.cli.app import command, human, say, settings

if TYPE_CHECKING:
    from edge.config import Settings
    from edge.model.pipeline import PullOptions
    from edge.model.store import Entry


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

    cfg = settings()
    entry = pull_with_progress(
        PullOptions(repo or cfg.repo, quant, revision, gguf, name, force, threads), cfg
    )
    typer.echo(entry.path)


def pull_with_progress(opts: PullOptions, cfg: Settings) -> Entry:
    """Run the pull pipeline with progress bars and the closing line `edge-qwen pull` says.

    Shared with chat's first run, so both download the same way and resume each other.
    """
    from edge.model.pipeline import pull as run_pull

    bar = _Bar()
    try:
        result = run_pull(opts, cfg, report=say, progress=bar)
    finally:
        bar.close()
    entry = result.entry
    verb = {"created": "Stored", "updated": "Updated", "unchanged": "Already up to date:"}[
        result.status
    ]
    say(f"{verb} {entry.name} ({entry.manifest.quant}, {human(entry.manifest.size)})")
    return entry


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
    say(f"Wrote {path} ({human(path.stat().st_size)})")
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
    say(f"Quantizing {src.name} to {q.name}")
    path = run_quantize(
        src, target, q.name, threads=threads, allow_requantize=allow_requantize, overwrite=force
    )
    say(f"Wrote {path} ({human(path.stat().st_size)})")
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

    store = ModelStore(settings().models_dir)
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
        say(f"No models in {store.root} yet. Get one with `edge-qwen pull`.")
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
        rows.append((e.name, e.manifest.quant, human(e.manifest.size), origin, e.manifest.created))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@command
def rm(
    name: Annotated[str, typer.Argument(help="Store name, as `edge-qwen models` shows it")],
) -> None:
    """Remove a model from the store (the raw download stays in the Hugging Face cache)."""
    from edge.model.store import ModelStore

    entry = ModelStore(settings().models_dir).remove(name)
    say(f"Removed {entry.name} ({human(entry.manifest.size)} freed)")
