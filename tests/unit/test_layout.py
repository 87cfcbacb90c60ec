"""The layout's check (tests/support/layout.py): a slow test in a fast folder, or a test
outside the three folders, stops the run and is named; a suite laid out right runs.

Each test lays out a small suite of its own under a temporary tests/ (pytester)."""

from __future__ import annotations

import pytest

CONFTEST = """
import pytest

from tests.support.slow import slow_fixture

pytest_plugins = ["tests.support.slow", "tests.support.layout"]


@slow_fixture
def built():
    return "a model"
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A folder with this suite's configuration and a slow fixture, `built`."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = session\nmarkers = slow\n")
    pytester.makeconftest(CONFTEST)
    return pytester


def write(pytester: pytest.Pytester, path: str, source: str) -> None:
    """A file of the suite at `path`, its folders made."""
    target = pytester.path / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source, encoding="utf-8")


def test_a_suite_laid_out_right_runs(suite: pytest.Pytester) -> None:
    write(suite, "tests/unit/test_pure.py", "def test_pure(): pass\n")
    write(suite, "tests/seam/test_fake.py", "def test_fake(): pass\n")
    write(suite, "tests/live/test_real.py", "def test_real(built): pass\n")
    suite.runpytest("-m", "not slow").assert_outcomes(passed=2, deselected=1)


def test_a_slow_test_in_a_fast_folder_stops_the_run(suite: pytest.Pytester) -> None:
    write(suite, "tests/unit/test_pure.py", "def test_pure(): pass\n")
    write(suite, "tests/seam/test_fake.py", "def test_builds(built): pass\n")
    result = suite.runpytest("-m", "not slow")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*tests/seam/test_fake.py::test_builds is slow*tests/live/*"])
    assert "test_pure" not in result.stderr.str()


def test_a_test_outside_the_three_folders_stops_the_run(suite: pytest.Pytester) -> None:
    write(suite, "tests/test_loose.py", "def test_loose(): pass\n")
    result = suite.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*tests/test_loose.py::test_loose is outside tests/unit/*"])
