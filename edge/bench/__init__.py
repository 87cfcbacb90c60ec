"""Benchmarks side by side with upstream llama.cpp (`edge-qwen bench`)."""

from __future__ import annotations

from edge.errors import EdgeError


class BenchError(EdgeError):
    """A contender failed to start or answer during a benchmark."""
