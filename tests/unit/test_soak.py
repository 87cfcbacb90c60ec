"""The soak test's verdict (scripts/soak.py) on made-up readings: a leak, a 5xx and a
runaway stream are each caught. The soak itself, on a real server: tests/live/test_soak.py."""

from __future__ import annotations

from tests.support.repo import load_script

soak = load_script("soak")


def test_the_checks_can_fail() -> None:
    """The verdict is not a rubber stamp: a leak, a 5xx and a runaway stream are caught."""
    probe = soak.Probe(rss_kib=100_000, hwm_kib=100_000, fds=16, threads=12)
    grown = soak.Probe(rss_kib=106_000, hwm_kib=106_000, fds=17, threads=17)
    outcomes = [soak.Outcome("chat", 200, None), soak.Outcome("chat", 500, "HTTP 500")]
    metrics = {
        'edge_requests_total{api="chat_completions",status="500"}': 1.0,
        "edge_generated_tokens_total": 1e6,
    }
    report = soak._report(
        outcomes, metrics, probe, grown, [], 1.0, concurrency=1, parallel=1, mark=1
    )
    text = " ".join(report.problems)
    for needle in ("5xx", "bad requests", "RSS grew", "fds grew", "threads grew", "went on"):
        assert needle in text, (needle, text)
    assert "FAIL" in report.to_markdown()
