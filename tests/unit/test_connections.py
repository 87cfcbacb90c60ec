"""`raise_file_limit`, over a stand-in for the `resource` module: up to the hard limit,
capped, never lowered, silent where the system refuses. (The connections themselves, on a
real uvicorn: tests/seam/test_connections.py.)"""

from __future__ import annotations

import sys
import types

import pytest

from edge.server.connections import FILE_LIMIT_CAP, raise_file_limit

INFINITY = -1


def fake_resource(soft: int, hard: int, refuse_over: int | None = None) -> types.ModuleType:
    """A `resource` module whose open-file limits are (soft, hard); setrlimit refuses a
    soft limit over `refuse_over` (as macOS does over OPEN_MAX), and always when it is 0."""
    module = types.ModuleType("resource")
    limits = {"now": (soft, hard)}

    def setrlimit(which: int, wanted: tuple[int, int]) -> None:
        assert which == module.RLIMIT_NOFILE and wanted[1] == hard  # the hard one untouched
        if refuse_over is not None and wanted[0] > refuse_over:
            raise ValueError("not allowed to raise maximum limit")
        limits["now"] = wanted

    module.RLIMIT_NOFILE = 7  # type: ignore[attr-defined]
    module.RLIM_INFINITY = INFINITY  # type: ignore[attr-defined]
    module.getrlimit = lambda which: limits["now"]  # type: ignore[attr-defined]
    module.setrlimit = setrlimit  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize(
    ("soft", "hard", "refuse_over", "raised"),
    [
        (1024, 524288, None, FILE_LIMIT_CAP),  # a Linux desktop (systemd): up to the cap
        (1024, 4096, None, 4096),  # up to the hard limit
        (1024, INFINITY, None, FILE_LIMIT_CAP),
        (256, INFINITY, 10240, 10240),  # macOS: the cap refused, OPEN_MAX taken
        (1024, 524288, 0, 1024),  # refused outright: left as it was, no error
        (100_000, 200_000, None, 100_000),  # already over the cap: never lowered
    ],
    ids=["linux", "hard", "unlimited", "macos", "refused", "higher"],
)
def test_the_soft_limit_is_raised_where_allowed(
    monkeypatch: pytest.MonkeyPatch, soft: int, hard: int, refuse_over: int | None, raised: int
) -> None:
    resource = fake_resource(soft, hard, refuse_over)
    monkeypatch.setitem(sys.modules, "resource", resource)
    assert raise_file_limit() == raised
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (raised, hard)


def test_no_limit_no_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "resource", fake_resource(INFINITY, INFINITY))
    assert raise_file_limit() is None
    monkeypatch.setitem(sys.modules, "resource", None)  # Windows: no such module
    assert raise_file_limit() is None
