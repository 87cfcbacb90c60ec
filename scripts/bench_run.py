"""Decode speed of `edge-qwen run` beside llama-cpp-python's plain `Llama.create_completion`.

    python scripts/bench_run.py MODEL.gguf [--tokens 128] [--rounds 3] [--threads N]

Both run in fresh processes on the same file with the same settings (threads, context,
flash attention as edge-qwen's plan picks it, f16 KV), greedy, on the same prompt tokens; rounds alternate between
them. Decode tokens/s is wall-clock, first token to last, as a user would see it.
Use a --bench-safe synthetic model so greedy decoding never stops early.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

QUESTION = "Write a long story about a lighthouse keeper and a storm."

# Plain llama-cpp-python, given the same settings edge-qwen's plan chose.
PLAIN = r"""
import json, sys, time
from llama_cpp import Llama
path, prompt, n, threads, ctx, fa = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
llm = Llama(path, n_ctx=ctx, n_threads=threads, n_threads_batch=threads, flash_attn=fa, verbose=False)
n_prompt = len(llm.tokenize(prompt.encode(), add_bos=False, special=True))
start = time.perf_counter(); first = None
for _ in llm.create_completion(prompt, max_tokens=n, temperature=0, stream=True):
    first = first or time.perf_counter()
end = time.perf_counter()
gen = llm.n_tokens - n_prompt
print(json.dumps({"tokens": gen, "ttft_s": first - start, "decode_tps": (gen - 1) / (end - first)}))
"""


def edge_run(model: Path, tokens: int, threads: int, ctx: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", QUESTION, "-m", str(model), "--json", "--no-think",
         "--temperature", "0", "--max-tokens", str(tokens), "--no-loop-guard",
         "--threads", str(threads), "--ctx", str(ctx)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    data = json.loads(out.stdout)
    return {"tokens": data["usage"]["completion_tokens"], "ttft_s": data["timings"]["ttft_s"],
            "decode_tps": data["timings"]["decode_tps"]}  # fmt: skip


def plain_run(
    model: Path, prompt: str, tokens: int, threads: int, ctx: int, fa: bool
) -> dict[str, float]:
    argv = [
        sys.executable,
        "-c",
        PLAIN,
        str(model),
        prompt,
        str(tokens),
        str(threads),
        str(ctx),
        str(int(fa)),
    ]
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def main() -> int:
    from edge.chat import ChatTemplate
    from edge.plan import make_plan, physical_cores, read_model_info

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model", type=Path)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=physical_cores())
    ap.add_argument("--ctx", type=int, default=8192)
    args = ap.parse_args()

    fa = make_plan(read_model_info(args.model), n_ctx=args.ctx, threads=args.threads).flash_attn
    prompt = ChatTemplate.from_gguf(args.model).render(
        [{"role": "user", "content": QUESTION}], enable_thinking=False
    )
    results: dict[str, list[dict[str, float]]] = {
        "edge-qwen run": [],
        "Llama.create_completion": [],
    }
    for _ in range(args.rounds):
        results["edge-qwen run"].append(edge_run(args.model, args.tokens, args.threads, args.ctx))
        results["Llama.create_completion"].append(
            plain_run(args.model, prompt, args.tokens, args.threads, args.ctx, fa)
        )

    print(
        f"{args.model.name}, {args.threads} threads, ctx {args.ctx}, flash attn {fa}, "
        f"{args.tokens} tokens, {args.rounds} rounds"
    )
    print(
        "| contender | decode tok/s (median) | min–max | TTFT ms (median) | tokens |\n|---|---|---|---|---|"
    )
    for name, rows in results.items():
        tps = [r["decode_tps"] for r in rows]
        print(f"| {name} | {statistics.median(tps):.2f} | {min(tps):.2f}–{max(tps):.2f} "
              f"| {statistics.median(r['ttft_s'] for r in rows) * 1000:.0f} | {rows[0]['tokens']} |")  # fmt: skip
    ours = statistics.median(r["decode_tps"] for r in results["edge-qwen run"])
    theirs = statistics.median(r["decode_tps"] for r in results["Llama.create_completion"])
    print(f"\nedge-qwen / llama-cpp-python decode speed: {ours / theirs:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
