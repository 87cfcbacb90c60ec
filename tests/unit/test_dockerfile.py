"""Dockerfile.cuda without a Docker engine, read without running anything: its invariants.

The image itself is never built here (that needs Docker and a CUDA toolkit); what can be
checked outside it is checked: the stages, the CUDA build arguments, the non-root user, the
volume, the build context that .dockerignore leaves, and the health check's bounds. Run
things against it (hadolint, the health check against real servers):
tests/live/test_dockerfile.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.support.dockerfile import (
    RUN_TIMEOUT,
    Instruction,
    exec_form,
    healthcheck_of,
    read_instructions,
)
from tests.support.repo import REPO_ROOT

DOCKERIGNORE = REPO_ROOT / ".dockerignore"
VENV = "/opt/edge-qwen"
IMAGE_PORT = 8000


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    """Every ARG's default value (names are unique in this file)."""
    defaults = {}
    for ins in instructions:
        if ins.keyword == "ARG":
            name, _, value = ins.args.partition("=")
            defaults[name] = value.strip('"')
    return defaults


def expand(text: str, variables: dict[str, str]) -> str:
    """`${NAME}` and `$NAME` replaced by their defaults, as `docker build` with no --build-arg."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: variables.get(m.group(1) or m.group(2), m.group(0)),
        text,
    )


def seconds(duration: str) -> float:
    """A Docker duration such as 30s, 15m, 1h30m."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return read_instructions()


def stage_of(instructions: list[Instruction], n: int) -> list[Instruction]:
    return [i for i in instructions if i.stage == n]


def test_devel_stage_builds_and_runtime_stage_runs(instructions: list[Instruction]) -> None:
    defaults = arg_defaults(instructions)
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) == 2
    build_image, _, build_name = expand(froms[0].args, defaults).partition(" AS ")
    run_image = expand(froms[1].args, defaults).split(" AS ")[0]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-devel-ubuntu\d+\.\d+", build_image)
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu\d+\.\d+", run_image)
    # The same CUDA release and Ubuntu (hence the same python3) on both sides.
    assert build_image.replace("-devel-", "-runtime-") == run_image
    copies = [i.args for i in stage_of(instructions, 1) if i.keyword == "COPY"]
    # A venv is not relocatable: it must land where the build stage made it.
    assert f"--from={build_name.strip()} {VENV} {VENV}" in copies
    assert any(f"python3 -m venv {VENV}" in i.args for i in stage_of(instructions, 0))


def test_cuda_build_arguments(instructions: list[Instruction]) -> None:
    defaults = arg_defaults(instructions)
    runs = [expand(i.args, defaults) for i in stage_of(instructions, 0) if i.keyword == "RUN"]
    (build,) = [run for run in runs if "CMAKE_ARGS=" in run]
    cmake_args = re.search(r'CMAKE_ARGS="([^"]*)"', build)
    assert cmake_args, build
    flags = dict(f.removeprefix("-D").split("=", 1) for f in cmake_args.group(1).split())
    assert flags["GGML_CUDA"].lower() == "on"
    assert {"75", "86", "89"} <= set(flags["CMAKE_CUDA_ARCHITECTURES"].split(";"))
    assert flags["GGML_NATIVE"].upper() == "OFF"  # runs on other CPUs than the builder's
    assert "--no-binary llama-cpp-python" in build  # compiled here, never a CPU wheel


def test_llama_cpp_python_version_comes_from_the_pin(instructions: list[Instruction]) -> None:
    """The build runs this shell command on pyproject.toml; it must yield the pinned version."""
    (build,) = [i.args for i in instructions if i.keyword == "RUN" and "CMAKE_ARGS=" in i.args]
    command = re.search(r'version="\$\((.*?)\)" &&', build)
    assert command, build
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no POSIX shell to run the version extraction")
    out = subprocess.run(
        [sh, "-c", command.group(1)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=True,
    )
    pin = re.search(r'"llama-cpp-python==([0-9.]+)"', (REPO_ROOT / "pyproject.toml").read_text())
    assert pin and out.stdout.strip() == pin.group(1)


def test_runtime_stage_serves_as_a_user_with_a_volume(instructions: list[Instruction]) -> None:
    final = stage_of(instructions, 1)
    keywords = [i.keyword for i in final]
    assert keywords.count("CMD") == 1 and "ENTRYPOINT" not in keywords
    cmd_at = keywords.index("CMD")
    users = [i.args for i in final[:cmd_at] if i.keyword == "USER"]
    assert users, "no USER before CMD: the server would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert exec_form(final[cmd_at].args)[:3] == ["edge-qwen", "serve", "--lan"]
    assert any(i.keyword == "EXPOSE" and str(IMAGE_PORT) in i.args.split() for i in final)
    (volume,) = [exec_form(i.args) for i in final if i.keyword == "VOLUME"]
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    for name in ("EDGE_QWEN_HOME", "HF_HOME"):  # the store, the key and downloads persist
        value = re.search(rf"\b{name}=(\S+)", env)
        assert value and any(value.group(1).startswith(v + "/") for v in volume), name
    assert f"PATH={VENV}/bin:" in env


def test_healthcheck_asks_health_within_bounds(instructions: list[Instruction]) -> None:
    check = healthcheck_of(instructions)
    command = " ".join(check.argv)
    assert "'http://127.0.0.1:%s/health'" in command
    assert f"os.environ.get('EDGE_QWEN_PORT', '{IMAGE_PORT}')" in command
    assert seconds(check.options["start-period"]) >= 60  # loading takes seconds; leave room
    # The command's own HTTP timeout ends it before Docker gives up on it.
    http_timeout = re.search(r"timeout=(\d+(?:\.\d+)?)\)", " ".join(check.argv))
    assert http_timeout and float(http_timeout.group(1)) < seconds(check.options["timeout"])


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders wins;
    `!` re-includes; `*` and `?` stay within a folder, `**` spans folders."""

    def regex(pattern: str) -> re.Pattern[str]:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out, i = out + pattern[i : end + 1], end + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)

    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        body = body.strip().strip("/")
        if any(regex(body).fullmatch(c) for c in candidates):
            excluded = not negated
    return excluded


def test_dockerignore_sends_only_what_the_build_copies(instructions: list[Instruction]) -> None:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    sources = [
        src
        for i in instructions
        if i.keyword == "COPY" and "--from=" not in i.args
        for src in i.args.split()[:-1]
    ]
    assert sources
    for src in sources:
        assert (REPO_ROOT / src).exists(), src
        assert not dockerignore_excludes(patterns, src.rstrip("/")), src
    for kept in ("edge/cli.py", "edge/server/static/index.html"):
        assert not dockerignore_excludes(patterns, kept), kept
    for dropped in (
        ".git/HEAD",
        ".venv/bin/python",
        ".venv-ci/bin/python",
        "cuda-build/build.log",
        "benchmarks/logs/run.log",
        "bench-results/results.json",
        "tests/conftest.py",
        "model.gguf",
        "edge/model.gguf",
        "edge/__pycache__/cli.cpython-311.pyc",
        "edge_qwen.egg-info/PKG-INFO",
        ".cache/x",
        ".mypy_cache/x",
    ):
        assert dockerignore_excludes(patterns, dropped), dropped
