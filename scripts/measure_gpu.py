"""The fit planner against a real GPU: the plan it makes, the VRAM llama.cpp then takes,
and decode speed and time to first token with that plan.

    python scripts/measure_gpu.py [--quant Q4_K_M] [--ctx 4096] [--prompt 512] [--tokens 256]

Uses the benchmark's synthetic 0.6b-shaped model (built on first use, as `edge-qwen bench`
does). VRAM used is the drop in the GPU's free memory (llama.cpp's own device query) from
before loading to its lowest point after a generation, so it includes the CUDA pool and
cuBLAS's workspace, which the plan counts as headroom, not as its prediction. Prints JSON;
exits 2 on a build or machine without GPU offload.
"""

from __future__ import annotations

import argparse
import json
import sys

from edge.config import Settings
from edge.engine import SamplingParams, ThinkingControl, open_engine
from edge.engine.plan import MiB, make_plan, read_model_info


def gpu_free() -> int:
    from edge.engine.gpu import best_gpu, offload_devices

    gpu = best_gpu(offload_devices())
    return gpu.free_bytes if gpu else 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quant", default="Q4_K_M")
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--prompt", type=int, default=512, help="prompt tokens for TTFT")
    ap.add_argument("--tokens", type=int, default=256, help="tokens to decode")
    args = ap.parse_args()

    from edge.engine.gpu import supports_gpu_offload

    if not supports_gpu_offload() or gpu_free() == 0:
        print("This llama.cpp build or machine has no GPU offload.", file=sys.stderr)
        return 2
    from edge.bench.models import bench_model

    path = bench_model(Settings().home / "bench", args.quant, lambda s: print(s, file=sys.stderr))
    info = read_model_info(path)
    plan = make_plan(info, Settings(ctx=args.ctx))
    print(plan.describe(info), file=sys.stderr)
    before = gpu_free()
    engine = open_engine(path, plan, info, lambda s: print(s, file=sys.stderr))
    loaded = gpu_free()
    words = " ".join(f"w{i}" for i in range(args.prompt))
    prompt = engine.tokenize(f"<|im_start|>user\n{words}")[: args.prompt]
    params = SamplingParams(temperature=0, max_tokens=args.tokens)
    finishes = []
    for _ in range(3):  # the first round warms up CUDA's kernels and graphs
        engine.forget()
        events = list(engine.generate(prompt, params, thinking=ThinkingControl(loop_guard=False)))
        finishes.append(events[-1])
    lowest = min(loaded, gpu_free())
    engine.close()
    best = max(finishes[1:], key=lambda f: f.decode_tps)
    print(
        json.dumps(
            {
                "model": path.name,
                "plan": plan.describe(info),
                "n_gpu_layers": engine.plan.n_gpu_layers,
                "predicted_vram_mib": round(engine.plan.vram_bytes / MiB),
                "headroom_mib": round(plan.budget.vram_headroom / MiB),
                "used_after_load_mib": round((before - loaded) / MiB),
                "used_peak_mib": round((before - lowest) / MiB),
                "ttft_s": round(min(f.ttft for f in finishes[1:]), 4),
                "decode_tps": round(best.decode_tps, 1),
                "completion_tokens": best.usage.completion_tokens,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
