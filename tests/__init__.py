"""The test suite. A package so that every helper imports one way, as
`from tests.support.<module> import <name>`, from any folder of tests (pytest puts the
repository's root on sys.path for a package rooted there). Layout: tests/conftest.py."""

import pytest

# The helpers' asserts explain their failures as a test's own do (pytest rewrites test
# modules and conftests by itself; other modules only when named before they are imported).
pytest.register_assert_rewrite("tests.support")
