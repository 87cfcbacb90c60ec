"""What log-probabilities cost a token: decode speed with none, 1 and 20 alternatives.

    python scripts/measure_logprobs.py MODEL.gguf [--tokens 64] [--repeats 5] [--threads 1]

One engine, one slot, greedy answers of a fixed length to the same prompt (the KV prefix
is forgotten before each run). The three settings take turns, so machine drift hits them
alike. Prints a Markdown table of median decode time per token and the added cost.
On the GPU-proxy model (a few ms a token on one core) this is the GPU regime's ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from edge.config import Settings
from edge.engine import Engine, Finish, Job, Run, SamplingParams, ThinkingControl
from edge.engine.plan import make_plan, read_model_info

PROMPT = "<|im_start|>user\nTell me about tomatoes.<|im_end|>\n<|im_start|>assistant\n"
SETTINGS = {"off": None, "logprobs, 1 alternative": 1, "logprobs, 20 alternatives": 20}


def per_token_ms(engine: Engine, prompt: list[int], tokens: int, top: int | None) -> float:
    """Milliseconds per generated token after the first, for one run."""
    engine.forget()
    params = SamplingParams(temperature=0, max_tokens=tokens, logprobs=top)
    job = Job(prompt, params, ThinkingControl(loop_guard=False))
    finish = [e for e in Run(engine, job) if isinstance(e, Finish)][0]
    n = finish.usage.completion_tokens - 1
    return (finish.total - finish.ttft) / n * 1000 if n > 0 else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model", type=Path)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    info = read_model_info(args.model)
    plan = make_plan(info, Settings(ctx=1024, threads=args.threads, parallel=1))
    engine = Engine(args.model, plan, info)
    try:
        prompt = engine.tokenize(PROMPT)
        per_token_ms(engine, prompt, 8, None)  # warm up
        times: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for _ in range(args.repeats):
            for name, top in SETTINGS.items():
                times[name].append(per_token_ms(engine, prompt, args.tokens, top))
    finally:
        engine.close()
    base = statistics.median(times["off"])
    print(
        f"{info.name}, {args.threads} thread(s), {args.tokens} tokens, {args.repeats} runs each\n"
    )
    print("| setting | ms / token (median) | added per token |")
    print("|---|---:|---:|")
    for name, values in times.items():
        ms = statistics.median(values)
        print(f"| {name} | {ms:.3f} | {ms - base:+.3f} ms ({(ms / base - 1) * 100:+.1f}%) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
