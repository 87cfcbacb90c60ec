"""Time and peak memory of each pipeline step on a synthetic Qwen3 checkpoint.

    python scripts/measure_pipeline.py [--shape 0.6b] [--work DIR] [--quants Q8_0 Q4_K_M]

Each step runs as its own `edge-qwen` process (as a user runs it), so its peak RSS is
the process's own; wall time is measured around it. Prints a Markdown table and writes
the raw figures as JSON next to the outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# A fresh wrapper per step: RUSAGE_CHILDREN's peak is a maximum over all children a
# process ever waited for, so only a new parent isolates one step's peak.
_WRAPPER = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def run_step(name: str, argv: list[str]) -> dict[str, float | str]:
    """Run one command in its own process tree; return wall seconds and its peak RSS."""
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *argv], check=True, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    peak_kib = int(out.stdout.strip())  # Linux reports KiB
    return {"step": name, "seconds": round(wall, 2), "peak_rss_mib": round(peak_kib / 1024, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", default="0.6b", choices=["0.6b", "tiny"])
    parser.add_argument(
        "--work", type=Path, default=None, help="scratch folder (default: a temp dir)"
    )
    parser.add_argument("--quants", nargs="+", default=["Q8_0", "Q4_K_M"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="edge-measure-"))
    work.mkdir(parents=True, exist_ok=True)
    ckpt, base = work / f"qwen3-{args.shape}", work / f"qwen3-{args.shape}-bf16.gguf"
    cli = [sys.executable, "-m", "edge.cli"]
    rows = [
        run_step(
            "make synthetic checkpoint",
            [
                sys.executable,
                str(ROOT / "scripts/make_synthetic_qwen3.py"),
                str(ckpt),
                "--shape",
                args.shape,
            ],
        ),
        run_step("convert → BF16 GGUF", [*cli, "convert", str(ckpt), "-o", str(base), "--force"]),
    ]
    for q in args.quants:
        out = work / f"qwen3-{args.shape}-{q}.gguf"
        row = run_step(
            f"quantize → {q}",
            [
                *cli,
                "quantize",
                str(base),
                "-t",
                q,
                "-o",
                str(out),
                "--force",
                "--threads",
                str(args.threads),
            ],
        )
        row["output_mib"] = round(out.stat().st_size / 2**20, 1)
        rows.append(row)
    sizes = {
        "checkpoint_mib": round((ckpt / "model.safetensors").stat().st_size / 2**20, 1),
        "bf16_gguf_mib": round(base.stat().st_size / 2**20, 1),
    }
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "shape": args.shape,
        "rows": rows,
        **sizes,
    }
    (work / "measure_pipeline.json").write_text(json.dumps(report, indent=2))
    print(f"shape {args.shape} on {report['machine']}; checkpoint {sizes['checkpoint_mib']} MiB")
    print("| step | seconds | peak RSS MiB | output MiB |\n|---|---|---|---|")
    for r in rows:
        out_mib = r.get("output_mib", sizes["bf16_gguf_mib"] if "convert" in str(r["step"]) else "")
        print(f"| {r['step']} | {r['seconds']} | {r['peak_rss_mib']} | {out_mib} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
