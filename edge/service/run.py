"""Running the service managers' own tools (systemctl, systemd-analyze, launchctl), each
call bounded, a missing tool or a hung one an answer rather than an exception."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

# systemctl waits on the bus, launchctl on launchd; neither may hang `edge-qwen service`.
TIMEOUT_S = 30


@dataclass(frozen=True)
class Ran:
    """How a command went: whether it succeeded, and what it said (stdout and stderr)."""

    ok: bool
    output: str


def run(argv: list[str], env: Mapping[str, str] | None = None) -> Ran:
    """Run `argv` to its end (at most TIMEOUT_S), its output captured."""
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False
        )
    except FileNotFoundError:
        return Ran(False, f"{argv[0]} is not installed")
    except subprocess.TimeoutExpired:
        return Ran(False, f"`{shown(argv)}` did not finish in {TIMEOUT_S} s")
    return Ran(proc.returncode == 0, (proc.stdout + proc.stderr).strip())


def shown(argv: list[str]) -> str:
    """A command as a person would paste it into a shell."""
    return shlex.join(argv)


def run_all(commands: list[list[str]]) -> Ran:
    """Run each command in turn, stopping at the first that fails (its answer is returned)."""
    for argv in commands:
        ran = run(argv)
        if not ran.ok:
            return Ran(False, f"`{shown(argv)}` failed: {ran.output}")
    return Ran(True, "")
