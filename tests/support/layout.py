"""The layout of tests/, held at collection (a pytest plugin, registered by tests/conftest.py).

Every test lives in one of three folders, by how it runs:

- tests/unit/: pure logic, no model, no fake engine, no CLI process; fast
- tests/seam/: the server (and the chat) over the FakeEngine, in process; fast
- tests/live/: the real thing (llama.cpp, processes, uvicorn, real clients); slow

The fast loop, `-m "not slow"`, is therefore tests/unit/ and tests/seam/. A test in one
of those that uses a slow fixture (tests/support/slow.py) would silently leave the fast
loop, and one outside the three folders would belong nowhere: either stops the run here,
with the test's name and where it goes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

FAST_FOLDERS = ("unit", "seam")
SLOW_FOLDERS = ("live",)


def misplaced(item: pytest.Item, tests: Path) -> str | None:
    """Why the layout has no room for `item` where it is (`tests`: the tests/ folder), or
    None where it fits."""
    if not item.path.is_relative_to(tests):
        return None  # not one of ours (a pytester run's own files, say)
    folder = item.path.relative_to(tests).parts[0]  # for a file right in tests/, its name
    if folder in FAST_FOLDERS and item.get_closest_marker("slow"):
        return f"is slow (a slow fixture) in tests/{folder}/, the fast loop: move it to tests/live/"
    if folder not in FAST_FOLDERS + SLOW_FOLDERS:
        return "is outside tests/unit/, tests/seam/ and tests/live/: put it where it runs"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """After the slow marks (they come first), before `-m` deselects by them."""
    tests = config.rootpath / "tests"
    problems = [f"{item.nodeid} {why}" for item in items if (why := misplaced(item, tests))]
    if problems:
        raise pytest.UsageError(
            "tests out of place (tests/support/layout.py):\n" + "\n".join(problems)
        )
