"""Defaults against defaults alone: `edge-qwen bench`'s user-ground scenarios for one model.

    python scripts/measure_defaults.py MODEL.gguf --threads 2 --out DIR [--rounds 3]

Every server started as its README says (model, threads, context 8192), then the fresh
stream, the cache occupancy sweep (0, 1, 2, 4 conversations of ~1,536 tokens), the
6-turn chat, 4 clients at once and the depth sweep, as `edge.bench.defaults` measures
them inside the full benchmark; fewer rounds (`--rounds`, default 3 fresh streams and 2
probes a step) and two depths (1,024 and 3,584), so one model takes about 12 minutes on
2 cores instead of the full run's hour for every model. Prints the Markdown section the
full benchmark writes (ratios to llama-server in the same run) and keeps the raw
figures in DIR/defaults.json. To compare two versions of edge-qwen, run it from each
checkout (PYTHONPATH=CHECKOUT): each run has its own llama-server beside it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from edge.bench import defaults, defaults_report, reference
from edge.bench.servers import ServerSettings
from edge.engine.plan import read_model_info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model", type=Path)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ctx", type=int, default=8192)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    z = replace(
        defaults.FULL,
        fresh_rounds=args.rounds,
        probe_rounds=max(1, args.rounds - 1),
        depths=(1024, 3584),
        deep=3584,
        turn_repeats=max(1, args.rounds - 1),
    )
    ref = reference.ensure(None, print)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = ServerSettings(args.model, args.threads, args.ctx, False)  # flash: each its own
    got = defaults.measure(settings, z, args.out, ref.llama_server, print)
    info = read_model_info(args.model)
    got["kv_bytes"] = int(info.kv_bytes_per_token("f16") * args.ctx)
    (args.out / "defaults.json").write_text(json.dumps(got, indent=1), encoding="utf-8")
    model = {
        "quant": info.file_type,
        "file_bytes": args.model.stat().st_size,
        "defaults": defaults_report.summarize(got),
    }
    print(defaults_report.section([model], f" — {args.model.name}, {args.threads} threads"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
