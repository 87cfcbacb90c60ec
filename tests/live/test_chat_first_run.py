"""`edge-qwen chat` on a machine with no model pulled: ask once, pull, then chat.

Real processes in a real pseudo-terminal (or with pipes, as scripts run it) against the
local hub stand-in; the pull is the real download, converter and quantizer.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest

from tests.support.cli import assert_clean_failure, run_cli
from tests.support.hubstandin import HubStandIn
from tests.support.pull import REPO, link_tree, partial_size, stored, weight_gets
from tests.support.repo import REPO_ROOT
from tests.support.terminal import PROMPT, spawn_edge

QUESTION = re.compile(
    r"No model pulled yet; asking the hub how big Qwen/Qwen3-0\.6B is…\r\n"
    r"Download Qwen/Qwen3-0\.6B and store it as Q8_0 "
    r"\(download ([\d.]+) MiB, stored about ([\d.]+) MiB\)\? \[Y/n\] "
)
TIMEOUT = 120  # a pull of the scripted checkpoint: download, convert, quantize
HEADER_READ = 1_000_000  # the size estimate reads the safetensors header, never more


@pytest.fixture
def hub(tmp_path: Path, scripted_dir: Path) -> Iterator[HubStandIn]:
    """The stand-in serving the scripted checkpoint as Qwen/Qwen3-0.6B (as in test_pull)."""
    root = tmp_path / "hub"
    link_tree(scripted_dir, root / REPO)
    with HubStandIn(root) as server:
        yield server


@pytest.fixture
def env(cli_env: dict[str, str], hub: HubStandIn) -> dict[str, str]:
    """A fresh home and HF cache (nothing pulled) with the stand-in as HF_ENDPOINT."""
    return {**cli_env, "HF_ENDPOINT": hub.url}


def spawn_chat(env: dict[str, str], *args: str) -> pexpect.spawn:
    """`edge-qwen chat` with no --model, in a pty as a person starts it."""
    return spawn_edge(["chat", "--ctx", "2048", *args], env, timeout=TIMEOUT)


def finish(child: pexpect.spawn) -> int:
    """Wait for the process to end; its exit status."""
    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus if child.exitstatus is not None else -1)


def downloaded_nothing(env: dict[str, str], hub: HubStandIn) -> bool:
    """No weights fetched (at most their header read) and nothing in the cache or store."""
    for rng in weight_gets(hub):
        if rng is None or int(rng.removeprefix("bytes=").split("-")[1] or 0) > HEADER_READ:
            return False
    blobs = list(Path(env["HF_HOME"]).glob("hub/models--*/blobs/*"))
    return blobs == [] and stored(env) == []


def test_yes_at_the_question_pulls_then_chats(env: dict[str, str]) -> None:
    child = spawn_chat(env)
    child.expect(QUESTION)
    estimate = float(child.match.group(2))
    child.sendline("y")
    child.expect_exact(PROMPT)
    assert "Stored qwen3-0.6b-q8_0 (Q8_0" in str(child.before)
    child.sendline("Hi")
    child.expect_exact(PROMPT)
    assert "Hello world" in str(child.before)
    child.sendline("/exit")
    assert finish(child) == 0
    [entry] = stored(env)
    assert entry["name"] == "qwen3-0.6b-q8_0"
    size = int(entry["size"])  # type: ignore[call-overload]
    assert 0.85 < estimate * 2**20 / size < 1.15, (estimate, size)  # "about" means close


@pytest.mark.parametrize("refuse", ["n", "no", "ctrl-d", "ctrl-c"])
def test_refusing_downloads_nothing_and_says_what_to_run(
    env: dict[str, str], hub: HubStandIn, refuse: str
) -> None:
    child = spawn_chat(env)
    child.expect(QUESTION)
    if refuse == "ctrl-d":
        child.sendeof()
    elif refuse == "ctrl-c":
        child.sendintr()
    else:
        child.sendline(refuse)
    child.expect(pexpect.EOF)
    shown = str(child.before)
    assert finish(child) == 1
    assert "Traceback" not in shown
    assert "edge-qwen pull" in shown and "--model PATH.gguf" in shown
    assert downloaded_nothing(env, hub), weight_gets(hub)


def test_without_a_terminal_fails_and_names_the_commands(
    env: dict[str, str], hub: HubStandIn
) -> None:
    proc = run_cli(["chat"], env)
    assert_clean_failure(
        proc, 1, "No model pulled yet", "`edge-qwen pull`", "`edge-qwen chat --yes`"
    )
    assert weight_gets(hub) == [] and downloaded_nothing(env, hub)


def chat_piped(env: dict[str, str], text: str) -> subprocess.CompletedProcess[str]:
    """`edge-qwen chat --yes` as a script runs it: the conversation piped in."""
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "chat", "--yes", "--ctx", "2048"],
        input=text,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=REPO_ROOT,
    )


def test_yes_flag_pulls_without_asking(env: dict[str, str]) -> None:
    proc = chat_piped(env, "Hi\n")
    assert proc.returncode == 0, proc.stderr
    assert "[Y/n]" not in proc.stderr
    assert "Stored qwen3-0.6b-q8_0" in proc.stderr
    assert "Hello world" in proc.stdout
    assert [e["name"] for e in stored(env)] == ["qwen3-0.6b-q8_0"]


def wait_draining(child: pexpect.spawn, done: Callable[[], bool], what: str) -> None:
    """Wait for `done()`, reading the pty meanwhile so progress bars never block the child."""
    deadline = time.monotonic() + TIMEOUT
    while not done():
        assert child.isalive(), f"chat ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        try:
            child.read_nonblocking(65536, timeout=0.05)
        except pexpect.TIMEOUT:
            pass


def test_interrupted_first_pull_resumes_on_the_next_chat(
    env: dict[str, str], hub: HubStandIn
) -> None:
    hub.rate = 8 * 2**20  # ~10 s for the weights: time to interrupt half way
    child = spawn_chat(env, "--yes")
    wait_draining(child, lambda: partial_size(env) >= 10 * 2**20, "a partial download")
    child.sendintr()
    child.expect(pexpect.EOF)
    shown = str(child.before)
    assert finish(child) == 130
    assert "Traceback" not in shown and "edge-qwen chat --yes" in shown
    partial = partial_size(env)
    assert partial > 0 and stored(env) == []

    hub.rate = None
    hub.clear_requests()
    proc = chat_piped(env, "Hi\n")
    assert proc.returncode == 0, proc.stderr
    assert "Hello world" in proc.stdout
    ranges = [r for r in weight_gets(hub) if r and not r.startswith("bytes=0-")]
    assert ranges, weight_gets(hub)
    start = int(ranges[-1].removeprefix("bytes=").split("-")[0])
    assert start >= partial  # continued, not restarted
    assert partial_size(env) == 0
    assert [e["name"] for e in stored(env)] == ["qwen3-0.6b-q8_0"]


def test_unreachable_hub_still_asks_and_the_pull_says_why(cli_env: dict[str, str]) -> None:
    child = spawn_chat({**cli_env, "HF_ENDPOINT": "http://127.0.0.1:9"})
    child.expect_exact("(size unknown: the hub did not answer)? [Y/n] ")
    child.sendline("")  # Enter agrees
    child.expect(pexpect.EOF)
    shown = str(child.before)
    assert finish(child) == 1
    assert "Could not reach http://127.0.0.1:9" in shown and "Traceback" not in shown


def test_the_stored_estimate_leaves_out_a_tied_lm_head(
    env: dict[str, str], hub: HubStandIn
) -> None:
    child = spawn_chat(env)
    child.expect(QUESTION)
    untied = float(child.match.group(2))
    child.sendline("n")
    assert finish(child) == 1
    # Qwen3-0.6B ties its output to the embeddings yet ships lm_head.weight: not stored.
    config = hub.root / REPO / "config.json"
    tied = {**json.loads(config.read_text()), "tie_word_embeddings": True}
    config.unlink()  # a hard link to the session's checkpoint: replace, never edit
    config.write_text(json.dumps(tied))
    child = spawn_chat(env)
    child.expect(QUESTION)
    estimate = float(child.match.group(2))
    child.sendline("y")
    child.expect_exact(PROMPT)
    child.sendline("/exit")
    assert finish(child) == 0
    size = int(stored(env)[0]["size"])  # type: ignore[call-overload]
    assert estimate < untied and 0.85 < estimate * 2**20 / size < 1.15, (estimate, size)
