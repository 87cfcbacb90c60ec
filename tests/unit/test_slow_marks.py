"""The slow mark, declared where a slow fixture is defined (tests/support/slow.py): every
test that uses such a fixture, directly or through other fixtures, is slow, and no other.

Each test collects a small suite of its own in a temporary folder (pytester) and looks at
what the collection hook did to the collected items; nothing runs a model.
"""

from __future__ import annotations

import pytest

# The shared fixtures that build a model, install something, or serve tests that start
# processes (tests/conftest.py).
SHARED_SLOW = {
    "tiny_dir",
    "scripted_dir",
    "looping_dir",
    "tooling_dir",
    "gguf_of",
    "cli_env",
    "bench_home",
    "model_06b",
    "hostile_gguf",
    "router_venv",
}


@pytest.fixture
def pytester(pytester: pytest.Pytester) -> pytest.Pytester:
    """A folder for a suite of its own, configured as this one is (pyproject.toml)."""
    pytester.makeini(
        """
        [pytest]
        addopts = --strict-markers
        asyncio_default_fixture_loop_scope = session
        markers = slow: as in pyproject.toml
        """
    )
    return pytester


def slow_and_fast(pytester: pytest.Pytester) -> tuple[set[str], set[str]]:
    """The names of the tests collected in `pytester`'s folder, slow ones and the others."""
    items, _ = pytester.inline_genitems()
    slow = {item.name for item in items if item.get_closest_marker("slow")}
    return slow, {item.name for item in items} - slow


def test_the_shared_fixtures_that_build_or_start_something_are_declared_slow(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest('pytest_plugins = ["tests.conftest"]')
    uses = [f"def test_{name}({name}): pass" for name in sorted(SHARED_SLOW)]
    pytester.makepyfile("\n".join([*uses, "def test_greedy(greedy): pass"]))
    slow, fast = slow_and_fast(pytester)
    assert slow == {f"test_{name}" for name in SHARED_SLOW}
    assert fast == {"test_greedy"}  # a fixture that loads a model only when called


def test_a_slow_fixture_marks_its_users_directly_or_through_other_fixtures(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        import pytest

        from tests.support.slow import slow_fixture

        pytest_plugins = ["tests.support.slow"]


        @slow_fixture(scope="session")
        def built():
            return "a model"


        @pytest.fixture
        def served(built):
            return built


        @pytest.fixture
        def plain():
            return 1
        """
    )
    pytester.makepyfile(
        test_uses="""
        def test_direct(built): pass
        def test_through_another(served): pass
        def test_plain(plain): pass
        """,
        test_overrides="""
        import pytest

        @pytest.fixture
        def built():  # the same name, another definition: not a slow one
            return "nothing built"

        def test_overridden(built): pass
        """,
        test_extends="""
        import pytest

        @pytest.fixture
        def built(built):  # an override that uses the slow one
            return built + " and more"

        def test_extended(built): pass
        """,
    )
    slow, fast = slow_and_fast(pytester)
    assert slow == {"test_direct", "test_through_another", "test_extended"}
    assert fast == {"test_plain", "test_overridden"}

    result = pytester.inline_run("-m", "not slow")  # the fast loop runs the fast ones only
    passed, skipped, failed = result.listoutcomes()
    assert sorted(r.head_line for r in passed) == sorted(fast) and not skipped and not failed
