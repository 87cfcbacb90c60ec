"""scripts/sizing.py: the replica-sizing model reproduces bench's points and behaves."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from conftest import REPO_ROOT


def _sizing() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sizing", REPO_ROOT / "scripts" / "sizing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sizing"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


sizing = _sizing()


def test_the_model_reproduces_the_measured_ttft_under_concurrency() -> None:
    # TTFT at 2, 4 and 8 clients is not an input (only 1-client TTFT and tok/s are).
    for clients, simulated, measured in sizing.check():
        assert abs(simulated - measured) / measured < 0.25, (clients, simulated, measured)


def test_more_users_need_more_replicas_and_the_answer_meets_its_target() -> None:
    rep = sizing.Replica(sizing.BENCH_AGG, sizing.BENCH_TTFT1_S)
    few = sizing.replicas_needed(rep, 4, think=20.0, answer=100, target=1.0, seconds=120.0)
    many = sizing.replicas_needed(rep, 16, think=20.0, answer=100, target=1.0, seconds=120.0)
    assert few[-1][2] <= 1.0 and many[-1][2] <= 1.0
    assert many[-1][0] > few[-1][0]
    assert [r[2] for r in many] == sorted((r[2] for r in many), reverse=True)
