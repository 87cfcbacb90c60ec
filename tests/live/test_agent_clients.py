"""Agent CLIs on their own default settings against `edge-qwen serve --ctx 40960` (issue 27):
Qwen Code CLI, opencode and OpenAI Codex CLI, at pinned versions, each run by
scripts/agent_clients.py in a loopback-only network namespace with only the base URL (and
a dummy key or model name where it insists) configured, on the scripted model.

The live suite is opt-in: EDGE_QWEN_AGENT_CLIENTS=1 (it installs the clients from npm the
first time, about 900 MB, and takes about five minutes on two cores). The recording
proxy the script puts in front of the server is tested here on every fast run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.repo import load_script
from tests.support.slow import slow_fixture

agents = load_script("agent_clients")

live = pytest.mark.skipif(
    os.environ.get("EDGE_QWEN_AGENT_CLIENTS") != "1",
    reason="live agent CLIs are opt-in: set EDGE_QWEN_AGENT_CLIENTS=1 (installs Qwen Code, "
    "opencode and Codex from npm once; about five minutes)",
)


def missing_tools() -> str | None:
    """Why the live suite cannot run here, or None."""
    for tool in ("node", "npm", "git"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH (the agent CLIs need Node.js 20+, npm and git)"
    try:
        agents.unshare_command()
    except SystemExit as refused:
        return f"no loopback-only network namespace here: {refused}"
    return None


@slow_fixture(scope="module")
def results(
    gguf_of: Callable[[str, str], Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, bool], Any]:
    """Every case of the script, run once: (client, attached) -> its Result."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("agent-clients")
    runs = agents.run_isolated(gguf_of("scripted", "Q8_0"), timeout=240, out=out)
    for run in runs:
        print(agents.summary(run))
    return {(r.client, r.attached): r for r in runs}


@live
@pytest.mark.parametrize(
    "case", agents.CASES, ids=[name + ("-attached" if a else "") for name, a in agents.CASES]
)
def test_the_client_gets_its_answer_on_its_defaults(
    results: dict[tuple[str, bool], Any], case: tuple[str, bool]
) -> None:
    run = results[case]
    assert run.exit_code == 0 and run.answered, agents.summary(run)
    assert run.requests and all(e.status == 200 for e in run.requests), agents.summary(run)


@live
def test_what_failed_before_the_fixes_is_what_they_sent(
    results: dict[tuple[str, bool], Any],
) -> None:
    """The requests that were refused before: budgets over the context's room (Qwen Code's
    32768, opencode's 32000 with a file) and Codex's hosted web_search tool."""

    def over_the_room(run: Any) -> bool:
        return any(
            e.prompt_tokens is not None
            and e.prompt_tokens + max(e.budget.values(), default=0) > agents.CTX
            for e in run.requests
        )

    assert over_the_room(results["qwen-code", False])
    assert over_the_room(results["opencode", True])
    codex = results["codex", False].requests
    assert any("web_search" in e.tools for e in codex)
    assert all(e.path == "/v1/responses" and e.left_out == "web_search" for e in codex)


# --- the recording proxy, fast -----------------------------------------------------------


@live
def test_the_ai_sdk_shows_the_thinking(results: dict[tuple[str, bool], Any]) -> None:
    # It reads a reasoning item's summary only (OpenAI's models give nothing else): folded
    # and streamed, it must show Qwen3's thinking beside the answer.
    run = results["ai-sdk", False]
    lines = run.stdout.strip().splitlines()
    assert lines == [
        "generateText: Hello world | thinking: Let me think",
        "streamText: Hello world | thinking: Let me think",
    ], agents.summary(run)
    assert all(e.path == "/v1/responses" for e in run.requests)
