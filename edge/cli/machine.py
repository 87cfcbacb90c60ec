"""The machine's verbs: `bench` measures, `doctor` checks and shows the plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edge.cli.app import (
    CtxOpt,
    FlashOpt,
    GpuOpt,
    KvOpt,
    ModelOpt,
    ThreadsOpt,
    command,
    say,
    settings,
)
from edge.errors import UsageError

QuickOpt = Annotated[
    bool, typer.Option("--quick", help="A smaller run (minutes) that still makes every figure")
]
QuantsOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Quantization of the synthetic model (repeatable; default Q4_K_M, Q8_0 for "
        "0.6b, Q4_K_M for gpu-proxy)"
    ),
]
ShapesOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Shape of the synthetic model (repeatable; default 0.6b and gpu-proxy, the "
        "GPU-regime proxy: a ~5 ms token on 1 thread, --threads does not apply)"
    ),
]
GgufOpt = Annotated[Path | None, typer.Option("--model", "-m", help="Benchmark this GGUF instead")]
OutOpt = Annotated[Path, typer.Option(help="Folder for results.json, plots, summary.md")]
MarkdownOpt = Annotated[
    Path | None, typer.Option(help="Also put the tables into this Markdown file")
]
ReferenceOpt = Annotated[
    bool,
    typer.Option("--reference/--no-reference", help="Compare with upstream llama.cpp (built once)"),
]
BenchCtxOpt = Annotated[int, typer.Option(help="Context every contender is given")]


@command
def bench(
    quick: QuickOpt = False,
    quant: QuantsOpt = None,
    shape: ShapesOpt = None,
    model: GgufOpt = None,
    out: OutOpt = Path("bench-results"),
    markdown: MarkdownOpt = None,
    reference: ReferenceOpt = True,
    ctx: BenchCtxOpt = 4096,
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
    cfg = settings(threads=threads)
    opts = BenchOptions(
        out=out,
        quick=quick,
        quants=tuple(quant or ()),
        shapes=tuple(shape or ()),
        model=model,
        threads=cfg.threads,
        ctx=ctx,
        flash_attn=flash_attn,
        reference=reference,
        markdown=markdown,
        cache=cfg.home / "bench",
    )
    run(opts, say)
    typer.echo((out / "summary.md").read_text(encoding="utf-8"))


@command
def doctor(
    model: ModelOpt = None,
    ctx: CtxOpt = None,
    threads: ThreadsOpt = None,
    kv: KvOpt = None,
    flash_attn: FlashOpt = None,
    gpu_layers: GpuOpt = None,
    parallel: Annotated[
        int | None, typer.Option("--parallel", help="Plan for the server's N sequences")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
) -> None:
    """Check the llama.cpp build, GPUs, memory and model store; show the settings and the
    plan the engine would use, with its arithmetic.

    Exits 1 when something needed to chat is missing (e.g. no model pulled yet, or the
    model does not fit in the memory that is free).
    """
    from edge.engine.doctor import render, report

    cfg = settings(
        model=model,
        ctx=ctx,
        threads=threads,
        kv=kv,
        flash_attn=flash_attn,
        gpu_layers=gpu_layers,
        parallel=parallel,
    )
    data, problems, warnings = report(cfg)
    if as_json:
        typer.echo(json.dumps({**data, "problems": problems, "warnings": warnings}, indent=2))
    else:
        for line in render(data):
            typer.echo(line)
        for w in warnings:
            say(f"warning: {w}")
        for p in problems:
            say(f"problem: {p}")
    if problems:
        raise typer.Exit(1)
