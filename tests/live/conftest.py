"""Every test in tests/live/ is slow: it runs the real thing (models built and run by
llama.cpp, the CLI and servers as processes, real uvicorn, real clients and browsers), so
the fast loop (`-m "not slow"`) leaves the whole folder out. A test here that needs no
model and no process belongs in tests/unit/ or tests/seam/."""

from __future__ import annotations

from pathlib import Path

import pytest

LIVE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(LIVE):
            item.add_marker(pytest.mark.slow)
