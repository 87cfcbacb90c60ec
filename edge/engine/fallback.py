"""Opening the engine when memory may have run short since the plan was made: each
out-of-memory at load (another program took the VRAM or RAM) falls back to a smaller
plan, said aloud, until one fits or none is left.

Built on the scheduler (`edge.engine.scheduler`, whose `Engine` loads the model) and the
planner (`edge.engine.plan`, which makes a plan smaller). Of the engine's files, only its
public face (`edge/engine/__init__.py`) imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edge.engine.plan import ModelInfo, Plan, detect_budget, smaller
from edge.engine.scheduler import Engine
from edge.errors import OutOfMemoryError

MAX_LOAD_TRIES = 6


def open_engine(path: Path, plan: Plan, info: ModelInfo, say: Callable[[str], None]) -> Engine:
    """Load with `plan`; when llama.cpp runs out of memory (another program took the VRAM
    or RAM since the plan was made), re-plan smaller and try again, saying so each time."""
    for _ in range(MAX_LOAD_TRIES):
        try:
            return Engine(path, plan, info)
        except OutOfMemoryError as exc:
            nxt = smaller(info, plan, detect_budget(plan.n_gpu_layers > 0))
            if nxt is None:
                raise
            say(f"{exc.message}. Retrying: {nxt.describe(info)}")
            plan = nxt
    raise OutOfMemoryError(
        f"{info.name} did not fit in {MAX_LOAD_TRIES} tries.", "Pass a smaller --ctx."
    )
