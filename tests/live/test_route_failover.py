"""Failover through `edge-qwen route` (scripts/failover.py) at CI size, on loopback.

Three replicas of the looping model, 30 concurrent streams of 24 tokens, replica-0
killed with SIGKILL half a second into them, restarted afterwards. About a minute and a
half on 2 cores, most of it LiteLLM's start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.support.repo import load_script


def test_a_killed_replica_is_stepped_around_and_rejoins(
    gguf_of: Callable[[str, str], Path], router_venv: Path, tmp_path: Path
) -> None:
    failover = load_script("failover")
    report = failover.run_failover(
        gguf_of("looping", "Q8_0"),
        requests=30,
        tokens=24,
        router_venv=str(router_venv),
        work=tmp_path,
    )
    print(report.to_markdown())
    assert report.requests == 30 and report.answered + report.failed == 30
    # Only streams the killed replica had already started answering may fail: a request
    # still queued there has sent nothing yet (the first chunk waits for the first
    # token), so the router sends it to another replica. None fails elsewhere.
    assert report.failed_elsewhere == 0
    # Nor does the router run out of retries on one: it may draw the dead replica again
    # (LiteLLM does not cool a replica down for a connection error), but not eight times.
    assert report.failed_unrouted == 0
    assert report.failed == report.failed_on_killed
    # So at most the streams in the killed replica's slots fail, never one queued there.
    # (When the first chunk went out at once, 3 to 13 queued requests failed as well.) The
    # client's own view, "no chunk yet at the kill", cannot tell the two apart: LiteLLM
    # holds a stream's first chunk a moment, longer on a busy machine, so it is reported
    # (failed_before_a_chunk), not asserted.
    assert report.failed <= failover.SLOTS, report.to_markdown()
    assert report.answered >= 30 - report.by_replica.get("replica-0", 0)
    # After the kill every request succeeds, on the two replicas left.
    assert report.after_kill_answered == report.after_kill_requests == 10
    assert "replica-0" not in report.after_kill_by_replica
    # Restarted, it gets traffic again once its cooldown is over.
    assert report.rejoin_s is not None
