"""scripts/sizing.py: the replica-sizing model reproduces bench's points and behaves."""

from __future__ import annotations

from tests.support.repo import load_script

sizing = load_script("sizing")


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
