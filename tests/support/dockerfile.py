"""Dockerfile.cuda read as Docker reads it: its logical instructions and its HEALTHCHECK."""

from __future__ import annotations

import json
from dataclasses import dataclass

from tests.support.repo import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile.cuda"
RUN_TIMEOUT = 30.0  # seconds for a command a test runs from it (a RUN line, hadolint, the check)


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # the rest of the logical line, continuations joined
    stage: int  # index of the FROM it belongs to; -1 before the first FROM


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical instructions, as Docker's parser reads them: a trailing backslash continues
    the line; comment lines (also inside a continuation) and blank lines are dropped."""
    out: list[Instruction] = []
    stage, pending = -1, ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, " ".join(args.split()), stage))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def read_instructions() -> list[Instruction]:
    """Dockerfile.cuda's logical instructions."""
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) argument; Docker would silently treat anything else as shell."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(a, str) for a in value), args
    return value


@dataclass(frozen=True)
class Healthcheck:
    options: dict[str, str]
    argv: list[str]


def healthcheck_of(instructions: list[Instruction]) -> Healthcheck:
    """The one HEALTHCHECK: its --options and its exec-form command."""
    (check,) = [i for i in instructions if i.keyword == "HEALTHCHECK"]
    options_text, sep, command = check.args.partition(" CMD ")
    assert sep, f"HEALTHCHECK without CMD: {check.args}"
    options = dict(opt.removeprefix("--").split("=", 1) for opt in options_text.split())
    return Healthcheck(options, exec_form(command))
