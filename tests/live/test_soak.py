"""The soak test (scripts/soak.py) at CI size: one real `edge-qwen serve`, mixed requests.

300 requests take about a minute on 2 cores. EDGE_QWEN_SOAK_LONG=1 also runs the full
1,000-request soak (a few minutes). The verdict's checks on made-up readings:
tests/unit/test_soak.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.repo import load_script

soak = load_script("soak")


def check(report: Any, requests: int) -> None:  # a soak.Report
    print(report.to_markdown())
    assert report.requests == requests
    assert set(report.kinds) == set(soak.KINDS)  # every kind of request was sent
    assert report.client_statuses == {"200": requests}, report.bad[:5]
    assert not any(s.startswith("5") for s in report.server_statuses), report.server_statuses
    assert report.bad == []
    assert report.rss_growth < soak.RSS_GROWTH_LIMIT
    # Measured once the server is idle and every client connection is closed, so nothing
    # legitimate differs between the two readings: any growth is a leak.
    assert all(fds <= report.at_mark.fds for _, _, fds, _ in report.trace)
    assert report.at_end.fds <= report.at_mark.fds
    # AnyIO's worker threads come and go with load (see soak.THREAD_SLACK); a leak grows.
    assert all(t <= report.at_mark.threads + soak.THREAD_SLACK for *_, t in report.trace)
    assert 0 < report.generated_tokens <= report.max_possible_tokens  # drops were cancelled
    assert report.problems == []


def test_soak_mixed_requests_leak_nothing(gguf_of: Callable[[str, str], Path]) -> None:
    report = soak.run_soak(gguf_of("looping", "Q8_0"), requests=300, concurrency=6, parallel=4)
    check(report, 300)


@pytest.mark.skipif(
    os.environ.get("EDGE_QWEN_SOAK_LONG") != "1", reason="the long soak: EDGE_QWEN_SOAK_LONG=1"
)
def test_soak_long(gguf_of: Callable[[str, str], Path]) -> None:
    report = soak.run_soak(gguf_of("looping", "Q8_0"), requests=1000, concurrency=6, parallel=4)
    check(report, 1000)
