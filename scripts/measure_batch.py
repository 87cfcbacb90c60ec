"""The batching engine in-process: step time and throughput per slot count, and whether
greedy output decoded in a batch equals the same request decoded alone.

    python scripts/measure_batch.py [MODEL.gguf] [--slots 1 2 4 8] [--tokens 64]

Default model: the benchmark's synthetic Q4_K_M (run `edge-qwen bench --quick` once
first). Prints two Markdown tables. No HTTP: this is the engine's own cost.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from edge.config import Settings
from edge.engine import Engine, SamplingParams, ThinkingControl, TokenEvent
from edge.engine.plan import make_plan, physical_cores, read_model_info

NO_GUARD = ThinkingControl(loop_guard=False)


def prompt(engine: Engine, i: int) -> list[int]:
    return engine.tokenize(
        f"<|im_start|>user\n({i}) Tell me story number {i}.<|im_end|>\n<|im_start|>assistant\n"
    )


def tokens(engine: Engine, p: list[int], n: int) -> list[int]:
    params = SamplingParams(temperature=0, max_tokens=n)
    events = engine.generate(p, params, thinking=NO_GUARD)
    return [e.token for e in events if isinstance(e, TokenEvent) and e.token is not None]


def together(engine: Engine, prompts: list[list[int]], n: int) -> tuple[list[list[int]], float]:
    out: list[list[int]] = [[] for _ in prompts]

    def one(i: int) -> None:
        out[i] = tokens(engine, prompts[i], n)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(prompts))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return out, time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "model",
        type=Path,
        nargs="?",
        default=Settings().home / "bench" / "qwen3-0.6b-seed0-Q4_K_M.gguf",
    )
    ap.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--ctx", type=int, default=4096)
    args = ap.parse_args()
    info = read_model_info(args.model)
    print(
        f"{args.model.name}, {physical_cores()} threads, ctx {args.ctx}, "
        f"{args.tokens} tokens each\n"
    )
    print(
        "| slots | steps | ms per step | aggregate tok/s | equal to alone |\n|---|---|---|---|---|"
    )
    for n in args.slots:
        plan = make_plan(info, Settings(ctx=args.ctx, parallel=n))
        engine = Engine(args.model, plan, info)
        try:
            prompts = [prompt(engine, i) for i in range(n)]
            alone = [tokens(engine, p, args.tokens) for p in prompts]
        finally:
            engine.close()
        engine = Engine(args.model, plan, info)  # nothing cached: it reads every prompt
        try:
            got, wall = together(engine, prompts, args.tokens)
        finally:
            engine.close()
        steps = args.tokens + 1  # one step reads the prompts, then one per token
        same = sum(a == b for a, b in zip(alone, got, strict=True))
        print(
            f"| {n} | {steps} | {wall / steps * 1000:.1f} | {sum(map(len, got)) / wall:.1f} "
            f"| {same} of {n} |"
        )
    twins(args.model, info, args.ctx, args.tokens)
    return 0


def twins(model: Path, info: object, ctx: int, n: int) -> None:
    """Two copies of one prompt decoded together: if they part, the cause is arithmetic
    (where a row sits in the batch), not sequences mixed up."""
    engine = Engine(model, make_plan(info, Settings(ctx=ctx, parallel=2)), info)  # type: ignore[arg-type]
    try:
        p = prompt(engine, 0)
        (a, b), _ = together(engine, [p, p], n)
    finally:
        engine.close()
    part = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
    where = "never" if part is None else f"at token {part}"
    print(f"\nTwo copies of one prompt decoded together part {where} (of {n}).")


if __name__ == "__main__":
    sys.exit(main())
