"""Which tests are slow, said where the reason is defined: at the fixture.

A fixture whose work is slow (it builds or loads a model, `gguf_of(...)` included, or
starts a server on one, a process or a browser), or that exists for tests that start a
process (the CLI's environment), is defined with `slow_fixture` in place of
`pytest.fixture` (same arguments). This module is a pytest plugin, registered by
tests/conftest.py: at collection, every test that uses such a fixture, directly or through
other fixtures, is marked `slow`, so the fast loop (`-m "not slow"`) leaves it out. A
fixture that only passes a slow one on needs no declaration: its users use the slow one.

It is the definition that is slow, not the name: a fixture of the same name elsewhere
that overrides a slow one is judged by its own declaration. A fixture asked for by name
while the test runs (`request.getfixturevalue`) is not seen at collection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pytest

SLOW_FIXTURES: dict[Callable[..., object], str] = {}
"""The function behind every slow fixture defined so far, and its fixture's name."""


def slow_fixture(function: Callable[..., object] | None = None, /, **options: Any) -> Any:
    """`pytest.fixture`, for a fixture whose users are slow tests (see the module)."""

    def declare(function: Callable[..., object]) -> Any:
        SLOW_FIXTURES[function] = options.get("name") or function.__name__
        return pytest.fixture(function, **options)

    return declare if function is None else declare(function)


def _in_use(
    name: str, definitions: Sequence[pytest.FixtureDef[Any]]
) -> Iterator[Callable[..., object]]:
    """The functions a test runs for fixture `name`: the last definition visible to it, and
    the one before as well while a definition asks for its own name (an override using it)."""
    for definition in reversed(definitions):
        yield getattr(definition.func, "__func__", definition.func)  # a method's function
        if name not in definition.argnames:
            return


def uses_slow_fixture(item: pytest.Item) -> bool:
    """Whether the test uses a slow fixture: `item.fixturenames` is the closure of the
    fixtures it asks for, and pytest has resolved each name to its definitions."""
    info = getattr(item, "_fixtureinfo", None)  # collected functions have it, other items not
    if info is None:
        return False
    names: Iterable[str] = getattr(item, "fixturenames", ())
    return any(
        function in SLOW_FIXTURES
        for name in names
        for function in _in_use(name, info.name2fixturedefs.get(name, ()))
    )


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if uses_slow_fixture(item):
            item.add_marker(pytest.mark.slow)
