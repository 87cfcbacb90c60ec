"""Every figure of BENCHMARKS.md, side by side with upstream llama.cpp, in one run.

    python scripts/bench.py [--quick] [--out benchmarks] [--markdown BENCHMARKS.md] ...

The same as `edge-qwen bench` (see `edge-qwen bench --help` for every option); the code
lives in edge/bench/ so the installed command and this script cannot drift apart.
"""

from __future__ import annotations

import sys

from edge.cli import app

if __name__ == "__main__":
    sys.exit(app(["bench", *sys.argv[1:]]))
