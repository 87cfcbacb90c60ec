"""The web page's files as the server ships them: the vendored libraries are the pinned,
checked bytes with their licences, every file the page loads is served (and packaged),
the caching is right, and the whole stays within its size budget."""

from __future__ import annotations

import gzip
import hashlib
import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

from edge.server.web import ASSET_HEADERS, PAGE_HEADERS, site, static_answer

STATIC = Path(__file__).resolve().parents[2] / "edge" / "server" / "static"
# What a phone downloads on its first visit, gzipped (as served): the page, our scripts
# and styles, marked, DOMPurify and highlight.js with 15 languages. Measured at 78.5 KB
# when set; the budget leaves room for small changes, not for another library.
BUDGET_GZIPPED = 100_000


def vendored() -> dict[str, str]:
    """vendor/README.md's table: file → sha256."""
    table = (STATIC / "vendor" / "README.md").read_text(encoding="utf-8")
    return dict(re.findall(r"^\| (\S+) \|.*\| ([0-9a-f]{64}) \|$", table, re.M))


def test_vendored_files_are_the_pinned_bytes() -> None:
    pinned = vendored()
    on_disk = {p.name for p in (STATIC / "vendor").glob("*.js")}
    assert set(pinned) == on_disk and len(pinned) == 18
    for name, digest in pinned.items():
        assert hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest() == digest, name
    for licence in ("marked", "dompurify", "highlight.js"):
        text = (STATIC / "vendor" / f"LICENSE-{licence}.txt").read_text(encoding="utf-8")
        assert "Copyright" in text or "Apache License" in text, licence


def test_every_import_and_reference_is_served() -> None:
    """A module that imports a file the server does not serve breaks the whole page."""
    s = site()
    base = f"/assets/{s.version}/"
    page = gzip.decompress(s.page.gzipped).decode()
    referenced = re.findall(r'(?:src|href)="assets/[0-9a-f]{12}/([^"]+)"', page)
    assert referenced == ["app.css", "app.js"]
    for name in ("app.js", "api.js", "markdown.js", "store.js"):
        source = (STATIC / name).read_text(encoding="utf-8")
        referenced += re.findall(r'^import [^"]*"\./([^"]+)";', source, re.M)
    assert "vendor/marked.esm.js" in referenced and "vendor/hljs-python.min.js" in referenced
    for name in referenced:
        assert base + name in s.assets, name


def test_assets_are_cached_for_good_under_a_content_version() -> None:
    s = site()
    for path, asset in s.assets.items():
        assert path.startswith(f"/assets/{s.version}/")
        served = static_answer(path, "gzip")
        assert served is not None and served.status == 200
        assert served.headers["cache-control"] == ASSET_HEADERS["cache-control"]
        assert "immutable" in served.headers["cache-control"]
        assert served.headers["content-encoding"] == "gzip"
        assert gzip.decompress(served.body) == asset.plain
        plain = static_answer(path, "")
        assert plain is not None and plain.body == asset.plain
        assert "content-encoding" not in plain.headers
        suffix = path.rsplit(".", 1)[1]
        assert plain.headers["content-type"].startswith(
            {"js": "text/javascript", "css": "text/css"}[suffix]
        )
    page = static_answer("/", "")
    assert page is not None and page.headers == {
        "content-type": "text/html; charset=utf-8",
        "vary": "accept-encoding",
        **PAGE_HEADERS,
    }
    assert static_answer("/health") is None and static_answer("/v1/models") is None
    favicon = static_answer("/favicon.ico")  # asked by browsers: answered, even asleep
    assert favicon is not None and favicon.status == 404


def test_the_version_is_a_hash_of_every_asset(monkeypatch: pytest.MonkeyPatch) -> None:
    """A changed file must change every asset URL, or browsers keep the old one forever."""
    before = site().version
    real = Path.read_bytes

    def edited(self: Path) -> bytes:
        data = real(self)
        return data + b"\n// edited" if self.name == "store.js" else data

    site.cache_clear()
    monkeypatch.setattr(Path, "read_bytes", edited)
    try:
        after = site()
        assert after.version != before
        assert f"assets/{after.version}/app.js" in after.page.plain.decode()
    finally:
        monkeypatch.undo()
        site.cache_clear()
    assert site().version == before


def test_the_page_and_its_assets_stay_within_the_budget() -> None:
    s = site()
    total = len(s.page.gzipped) + sum(len(a.gzipped) for a in s.assets.values())
    assert total <= BUDGET_GZIPPED, f"{total} bytes gzipped, budget {BUDGET_GZIPPED}"


def test_a_wheel_ships_every_file_of_the_page() -> None:
    pyproject = (STATIC.parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    line = re.search(r'^"edge\.server" = \[(.*)\]$', pyproject, re.M)  # (no tomllib on 3.10)
    assert line is not None
    patterns = re.findall(r'"([^"]+)"', line.group(1))
    for path in STATIC.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            name = path.relative_to(STATIC.parent).as_posix()
            assert any(fnmatch(name, p) and name.count("/") == p.count("/") for p in patterns), name
