"""Decode speed of a fresh stream with finished conversations cached, and at depth.

    python scripts/measure_cache_tax.py MODEL.gguf [--threads 2] [--ctx 8192]
        [--cached 0,1,4] [--length 1500] [--depths 0,1000,3500] [--tokens 64]

The server's engine as `edge-qwen serve` opens it (4 slots, the plan's flash attention,
the shelf at its default cap): first N conversations of LENGTH prompt tokens each run to
the end (a few tokens each), so the server has them cached; then a fresh prompt streams
TOKENS tokens. Decode tok/s is timed from the first token to the last. Prints one line
per case and, at the end, JSON. Add --cache-ram 0 to see the engine with no shelf.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.config import DEFAULT_PARALLEL, Settings
from edge.engine import Engine, Finish, SamplingParams, ThinkingControl, TokenEvent
from edge.engine.plan import make_plan, read_model_info

NO_GUARD = ThinkingControl(loop_guard=False)
BANNED = {151645: -100.0, 151643: -100.0}  # <|im_end|>, <|endoftext|>: answers run on


def prompt_of(engine: Engine, tag: str, n: int) -> list[int]:
    """A varied prompt of exactly `n` tokens that starts with its own tag."""
    words = " ".join(f"{tag}-{k} river stone lantern" for k in range(n))
    return engine.tokenize(words)[:n]


def decode_tps(engine: Engine, prompt: list[int], tokens: int) -> tuple[float, float]:
    """(decode tok/s, TTFT s) of one greedy stream."""
    params = SamplingParams(temperature=0, max_tokens=tokens + 1, logit_bias=BANNED)
    stamps, ttft = [], 0.0
    for e in engine.generate(prompt, params, thinking=NO_GUARD):
        if isinstance(e, TokenEvent) and e.token is not None:
            stamps.append(e.elapsed)
        elif isinstance(e, Finish):
            ttft = e.ttft
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), ttft


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", type=Path)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--ctx", type=int, default=8192)
    ap.add_argument("--cached", default="0,1,4")
    ap.add_argument("--length", type=int, default=1500)
    ap.add_argument("--depths", default="0,1000,3500")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--cache-ram", type=int, default=None)
    ap.add_argument("--flash-attn", action=argparse.BooleanOptionalAction, default=None)
    args = ap.parse_args()
    info = read_model_info(args.model)
    wishes = {"cache_ram": args.cache_ram} if args.cache_ram is not None else {}
    settings = Settings(
        ctx=args.ctx,
        threads=args.threads,
        parallel=DEFAULT_PARALLEL,
        flash_attn=args.flash_attn,
        **wishes,
    )
    plan = make_plan(info, settings)
    print(plan.describe(info))
    engine = Engine(args.model, plan, info)
    out: dict[str, dict[str, float]] = {}
    try:
        decode_tps(engine, prompt_of(engine, "warm", 16), 4)
        for n in (int(x) for x in args.cached.split(",")):
            engine.forget()
            for i in range(n):
                decode_tps(engine, prompt_of(engine, f"c{n}-{i}", args.length), 2)
            tps, ttft = decode_tps(engine, prompt_of(engine, f"fresh{n}", 32), args.tokens)
            out[f"cached {n} x {args.length}"] = {"decode_tps": tps, "ttft_s": ttft}
            print(f"{n} cached x {args.length}: {tps:.1f} tok/s, TTFT {ttft * 1000:.0f} ms")
        for depth in (int(x) for x in args.depths.split(",")):
            engine.forget()
            tps, ttft = decode_tps(
                engine, prompt_of(engine, f"d{depth}", max(8, depth)), args.tokens
            )
            out[f"depth {depth}"] = {"decode_tps": tps, "ttft_s": ttft}
            print(f"depth {depth}: {tps:.1f} tok/s, TTFT {ttft * 1000:.0f} ms")
    finally:
        engine.close()
    print(json.dumps({"plan": plan.describe(info), "results": out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
