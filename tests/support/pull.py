"""What `edge-qwen pull` tests share: the repo they pull, how a checkpoint is published in
the hub stand-in's root, and what the store and the stand-in saw afterwards."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.support.cli import run_cli
from tests.support.hubstandin import HubStandIn

REPO = "Qwen/Qwen3-0.6B"


def link_tree(src: Path, dst: Path) -> Path:
    """Publish a checkpoint folder in the stand-in's root without copying its bytes."""
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def stored(env: dict[str, str]) -> list[dict[str, object]]:
    """`edge-qwen models --json`: the models the store lists."""
    proc = run_cli(["models", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def weight_gets(server: HubStandIn) -> list[str | None]:
    """The Range headers of every GET of the weights file (None: a whole-file GET)."""
    return [
        r.range
        for r in server.requests
        if r.method == "GET" and r.path.endswith("model.safetensors")
    ]


def partial_size(env: dict[str, str]) -> int:
    """The bytes of the weights downloaded so far into the HF cache (an unfinished blob)."""
    blobs = Path(env["HF_HOME"]).glob("hub/models--Qwen--Qwen3-0.6B/blobs/*.edge-partial")
    return max((p.stat().st_size for p in blobs), default=0)
