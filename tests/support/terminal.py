"""`edge-qwen` in a real pseudo-terminal (pexpect), as a person at a keyboard runs it."""

from __future__ import annotations

import signal
import sys

import pexpect

from tests.support.repo import REPO_ROOT

PROMPT = ">>> "
TIMEOUT = 60


def default_sigint() -> None:
    """In the child: Ctrl-C as a terminal user has it. A test run started in the background
    (`cmd &` in a script) ignores SIGINT, and children would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn_edge(
    args: list[str], env: dict[str, str], *, term: str = "dumb", timeout: float = TIMEOUT
) -> pexpect.spawn:
    """`edge-qwen ARGS` in a real pseudo-terminal of 40×200, without colours unless `env`
    sets NO_COLOR to the empty string."""
    return pexpect.spawn(
        sys.executable,
        ["-m", "edge.cli", *args],
        env={"NO_COLOR": "1", **env, "TERM": term},  # NO_COLOR="" in env: colours on
        cwd=str(REPO_ROOT),
        encoding="utf-8",
        timeout=timeout,
        dimensions=(40, 200),
        preexec_fn=default_sigint,
    )
