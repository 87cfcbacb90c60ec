"""The reference: upstream llama.cpp's llama-bench and llama-server, built from the very
source the installed llama-cpp-python vendors (its PyPI sdist carries vendor/llama.cpp),
so every comparison is like for like. Built once into a cache folder and reused; measured,
never committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.errors import ReferenceBuildError

TARGETS = ("llama-bench", "llama-server")


@dataclass(frozen=True)
class Reference:
    """Paths of the built reference binaries."""

    version: str  # the llama-cpp-python release whose vendored llama.cpp was built
    bin_dir: Path

    @property
    def llama_bench(self) -> Path:
        return self.bin_dir / "llama-bench"

    @property
    def llama_server(self) -> Path:
        return self.bin_dir / "llama-server"


def default_cache() -> Path:
    """`$EDGE_QWEN_REFERENCE_DIR`, else `$XDG_CACHE_HOME/edge-qwen/reference` (not the model
    home, so tests that point EDGE_QWEN_HOME at a temp folder still reuse one build)."""
    env = os.environ.get("EDGE_QWEN_REFERENCE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-qwen" / "reference"


def installed_version() -> str:
    """The installed llama-cpp-python release."""
    from edge.engine import llama_cpp_version

    return llama_cpp_version()


def find(cache: Path | None = None) -> Reference | None:
    """The cached build for the installed llama-cpp-python, or None."""
    version = installed_version()
    ref = Reference(version, (cache or default_cache()) / f"llama-cpp-python-{version}" / "bin")
    ok = all(os.access(ref.bin_dir / t, os.X_OK) for t in TARGETS)
    return ref if ok else None


def ensure(
    cache: Path | None = None,
    log: Callable[[str], None] = print,  # noqa: T201
) -> Reference:
    """The cached build, building it first when missing (minutes, once)."""
    found = find(cache)
    if found is not None:
        return found
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise ReferenceBuildError(
                f"Building the llama.cpp reference needs {tool}, which is not on PATH.",
                "Install cmake and a C++ compiler, or run the benchmark with --no-reference.",
            )
    return build(cache or default_cache(), log)


def build(cache: Path, log: Callable[[str], None]) -> Reference:
    """Fetch the sdist, build llama-bench and llama-server, and move bin/ into place last,
    so an interrupted build is never mistaken for a finished one."""
    version = installed_version()
    dest = cache / f"llama-cpp-python-{version}"
    dest.mkdir(parents=True, exist_ok=True)
    log(f"Building the reference llama.cpp (llama-cpp-python {version}'s vendored source)…")
    with tempfile.TemporaryDirectory(dir=dest, prefix=".build-") as tmp:
        work = Path(tmp)
        src = _fetch_source(version, work)
        build_dir = work / "build"
        _run(
            [
                "cmake",
                "-S",
                str(src),
                "-B",
                str(build_dir),
                "-DCMAKE_BUILD_TYPE=Release",
                "-DLLAMA_CURL=OFF",
                "-DLLAMA_BUILD_TESTS=OFF",
                "-DLLAMA_BUILD_EXAMPLES=OFF",
                "-DLLAMA_BUILD_SERVER=ON",
                "-DBUILD_SHARED_LIBS=OFF",
            ]
        )
        _run(
            [
                "cmake",
                "--build",
                str(build_dir),
                "--config",
                "Release",
                "-j",
                str(os.cpu_count() or 1),
                "--target",
                *TARGETS,
            ]
        )
        staged = work / "bin"
        staged.mkdir()
        for t in TARGETS:
            shutil.copy2(build_dir / "bin" / t, staged / t)
        shutil.rmtree(dest / "bin", ignore_errors=True)
        staged.rename(dest / "bin")
    found = find(cache)
    if found is None:
        raise ReferenceBuildError(f"The reference build in {dest} left no binaries.", None)
    return found


def _fetch_source(version: str, work: Path) -> Path:
    """vendor/llama.cpp out of the llama-cpp-python sdist from the package registry."""
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            str(work),
            f"llama-cpp-python=={version}",
        ]
    )
    archives = list(work.glob("llama_cpp_python-*.tar.gz"))
    if not archives:
        raise ReferenceBuildError(
            f"pip fetched no llama-cpp-python {version} sdist.", "Is the package index reachable?"
        )
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    with tarfile.open(archives[0]) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        # The "data" filter refuses links and paths out of `work` (Python 3.10.12+).
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(work, members=members, **safe)  # type: ignore[arg-type]
    return work / prefix


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ReferenceBuildError(
            f"`{' '.join(argv[:3])} …` failed (exit {proc.returncode}):\n{tail}",
            "Run the benchmark with --no-reference to measure edge-qwen alone.",
        )
