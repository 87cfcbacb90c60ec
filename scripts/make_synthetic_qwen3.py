"""Write a synthetic Qwen3 checkpoint (real tokenizer, seeded weights) for tests and benchmarks.

Usage: python scripts/make_synthetic_qwen3.py OUT_DIR [--shape tiny|0.6b] [--seed N]
       [--scripted] [--bench-safe]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    from edge.errors import EdgeError
    from edge.model import synthetic
except ModuleNotFoundError:  # run from a checkout where edge-qwen is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from edge.errors import EdgeError
    from edge.model import synthetic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write (created if missing)")
    parser.add_argument("--shape", choices=sorted(synthetic.SHAPES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scripted", action="store_true", help="greedy output follows DEFAULT_SCRIPT"
    )
    parser.add_argument(
        "--bench-safe", action="store_true", help="zero byte-fragment and special-token rows"
    )
    args = parser.parse_args(argv)
    try:
        out = synthetic.write_checkpoint(
            args.out_dir,
            shape=args.shape,
            seed=args.seed,
            script=args.scripted,
            bench_safe=args.bench_safe,
        )
    except (ValueError, EdgeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    recipe = json.loads((out / "config.json").read_text())[synthetic.SYNTHETIC_KEY]
    print(f"wrote {out} ({size / 1e6:.1f} MB; shape {args.shape}, seed {args.seed})")
    if args.bench_safe:
        print(f"bench-safe: zeroed {recipe['zeroed_rows']} embedding rows")
    if args.scripted:
        print("scripted: greedy output follows", json.dumps(recipe["script"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
