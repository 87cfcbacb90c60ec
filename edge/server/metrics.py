"""Prometheus metrics in the text exposition format, kept by hand: a handful of series."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter

from edge.engine import ShelfUse

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ITL_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)


class Histogram:
    """Cumulative buckets, count and sum, as Prometheus expects."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{le="{le}"}} {running}')
        out += [f"{name}_sum {self.total:.6f}", f"{name}_count {running}"]
        return out


# The API a path belongs to, for the `api` label: a fixed set, so a client probing
# arbitrary paths cannot grow the series without bound.
APIS = (
    ("/v1/chat/completions", "chat_completions"),
    ("/v1/completions", "completions"),
    ("/v1/responses", "responses"),
    ("/v1/messages/count_tokens", "count_tokens"),
    ("/v1/messages", "messages"),
    ("/v1/models", "models"),
    ("/api/chat", "ollama_chat"),
    ("/api/generate", "ollama_generate"),
    ("/api", "ollama"),  # the rest of Ollama's API: version, tags, show, ps, pull
    ("/health", "health"),
    ("/metrics", "metrics"),
)


def api_of(path: str) -> str:
    """The `api` label of a request path ("other" for anything else, "page" for /)."""
    if path == "/":
        return "page"
    for prefix, name in APIS:
        if path == prefix or path.startswith(prefix + "/"):
            return name
    return "other"


class Metrics:
    """Counters and histograms shared by the worker thread and the event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()  # (api, status)
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        # The model's life (runtime.py), counted on the event loop.
        self.loads = 0  # the first load, wakes and reloads after a fault
        self.load_seconds = 0.0
        self.sleeps = 0
        self.restarts = 0  # reloads after the engine failed

    def request(self, path: str, status: int) -> None:
        """One answered request, counted by its API and status."""
        with self._lock:
            self.requests[(api_of(path), str(status))] += 1

    def generation(self, prompt_tokens: int, ttft: float | None, gaps: list[float]) -> None:
        """One finished (or cancelled) generation: its prompt, first token and token gaps."""
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.generated_tokens += len(gaps) + (1 if ttft is not None else 0)
            if ttft is not None:
                self.ttft.observe(ttft)
            for gap in gaps:
                self.itl.observe(gap)

    def render(
        self, waiting: int, in_flight: int, shelf: ShelfUse | None = None, loaded: bool = True
    ) -> str:
        """The /metrics page."""
        with self._lock:
            lines = ["# TYPE edge_requests_total counter"]
            lines += [
                f'edge_requests_total{{api="{api}",status="{status}"}} {n}'
                for (api, status), n in sorted(self.requests.items())
            ]
            lines += self._counter("edge_prompt_tokens_total", self.prompt_tokens)
            lines += self._counter("edge_generated_tokens_total", self.generated_tokens)
            lines += ["# TYPE edge_time_to_first_token_seconds histogram"]
            lines += self.ttft.lines("edge_time_to_first_token_seconds")
            lines += ["# TYPE edge_inter_token_seconds histogram"]
            lines += self.itl.lines("edge_inter_token_seconds")
            lines += self._gauge("edge_queue_depth", waiting)
            lines += self._gauge("edge_in_flight", in_flight)
            shelf = shelf or ShelfUse()  # finished conversations' KV in RAM (engine.shelf)
            lines += self._gauge("edge_shelf_sequences", shelf.sequences)
            lines += self._gauge("edge_shelf_bytes", shelf.bytes)
            lines += self._gauge("edge_shelf_peak_bytes", shelf.peak_bytes)
            lines += self._gauge("edge_shelf_cap_bytes", shelf.cap_bytes)
            # the disk tier (engine.diskcache): long prompts kept across restarts and sleep
            lines += self._gauge("edge_prompt_cache_disk_files", shelf.disk_sequences)
            lines += self._gauge("edge_prompt_cache_disk_bytes", shelf.disk_bytes)
            lines += self._gauge("edge_prompt_cache_disk_cap_bytes", shelf.disk_cap_bytes)
            lines += self._counter("edge_prompt_cache_disk_hits_total", shelf.disk_hits)
            lines += self._gauge("edge_model_loaded", int(loaded))
            lines += self._counter("edge_model_loads_total", self.loads)
            lines += self._counter("edge_model_load_seconds_total", self.load_seconds)
            lines += self._counter("edge_model_sleeps_total", self.sleeps)
            lines += self._counter("edge_engine_restarts_total", self.restarts)
        return "\n".join(lines) + "\n"

    @staticmethod
    def _gauge(name: str, value: int) -> list[str]:
        return [f"# TYPE {name} gauge", f"{name} {value}"]

    @staticmethod
    def _counter(name: str, value: float) -> list[str]:
        return [f"# TYPE {name} counter", f"{name} {value}"]
