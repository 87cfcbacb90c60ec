"""The test suite. A package so that every helper imports one way, as
`from tests.support.<module> import <name>`, from any folder of tests (pytest puts the
repository's root on sys.path for a package rooted there). Layout: tests/conftest.py."""
