"""`edge-qwen chat` in a real pseudo-terminal and `edge-qwen run` with pipes, as people use them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest

from tests.support.cli import assert_clean_failure, run_cli
from tests.support.repo import REPO_ROOT
from tests.support.terminal import PROMPT, default_sigint, spawn_edge


def spawn_chat(gguf: Path, env: dict[str, str], *args: str) -> pexpect.spawn:
    """A chat on a dumb terminal, which reads with input(); waits for the first prompt."""
    child = spawn_edge(["chat", "-m", str(gguf), "--ctx", "2048", *args], env)
    child.expect_exact(PROMPT)
    return child


def ask(child: pexpect.spawn, text: str) -> str:
    """Send a line, wait for the next prompt, return what was shown in between."""
    child.sendline(text)
    child.expect_exact(PROMPT)
    return str(child.before).replace("\r\n", "\n")


def test_chat_streams_thinking_apart_and_switches(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str], tmp_path: Path
) -> None:
    child = spawn_chat(gguf_of("scripted", "Q8_0"), cli_env)
    shown = ask(child, "Hi")
    assert "Let me think\n" in shown and "Hello world" in shown
    assert shown.index("Let me think") < shown.index("Hello world")  # thinking first, apart
    assert "8 tokens (5 thinking)" in shown  # the stats line
    assert "thinking off" in ask(child, "/no_think")
    shown = ask(child, "Hi again")
    assert "Hello world" in shown and "Let me think" not in shown
    assert "reused" in shown  # the follow-up turn read only what was new

    saved = tmp_path / "chat.json"
    assert "saved to" in ask(child, f"/save {saved}")
    assert "conversation cleared" in ask(child, "/reset")
    assert "loaded" in ask(child, f"/load {saved}") and "(4 messages)" in child.before
    assert "Unknown command /nope" in ask(child, "/nope")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    data = json.loads(saved.read_text())
    assert [m["role"] for m in data["messages"]] == ["user", "assistant", "user", "assistant"]
    assert data["messages"][1]["reasoning_content"] == "Let me think"
    assert data["messages"][3]["content"] == "Hello world"


def test_ctrl_c_stops_the_answer_and_keeps_the_session(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str], tmp_path: Path
) -> None:
    child = spawn_chat(gguf_of("looping", "Q8_0"), cli_env, "--no-loop-guard")
    child.sendline("Hi")
    child.expect_exact("Let meLet meLet me")  # a runaway answer is streaming
    child.sendintr()
    child.expect_exact("[stopped]")
    child.expect_exact(PROMPT)
    saved = tmp_path / "partial.json"
    ask(child, f"/save {saved}")
    partial = json.loads(saved.read_text())["messages"][-1]
    assert partial["role"] == "assistant" and partial["reasoning_content"].startswith("Let me")
    child.sendintr()  # Ctrl-C at an empty prompt leaves
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_d_leaves(gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]) -> None:
    child = spawn_chat(gguf_of("scripted", "Q8_0"), cli_env)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def run_piped(
    args: list[str], env: dict[str, str], stdin: bytes
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", *args],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=120,
        cwd=REPO_ROOT,
    )


def test_run_pipes_answer_to_stdout_and_thinking_to_stderr(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    model = ["-m", str(gguf_of("scripted", "Q8_0"))]
    proc = run_piped([*model, "-"], cli_env, b"Hi\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"Hello world\n"
    assert b"Let me think" in proc.stderr
    hidden = run_piped([*model, "--hide-thinking"], cli_env, b"Hi")
    assert hidden.stdout == b"Hello world\n" and b"Let me think" not in hidden.stderr
    off = run_cli(["run", "Hi", *model, "--no-think"], cli_env)
    assert off.stdout == "Hello world\n" and "Let me think" not in off.stderr


def test_run_json_is_exact(gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]) -> None:
    proc = run_cli(["run", "Hi", "-m", str(gguf_of("scripted", "Q8_0")), "--json"], cli_env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    timings = out.pop("timings")
    assert (
        set(timings) == {"ttft_s", "total_s", "decode_tps"}
        and timings["ttft_s"] <= timings["total_s"]
    )
    assert out == {
        "model": "Qwen3-scripted",
        "reasoning": "Let me think",
        "answer": "Hello world",
        "finish_reason": "stop",
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 8,
            "total_tokens": 17,
            "reasoning_tokens": 5,
            "cached_tokens": 0,
        },
        "notes": [],
    }


def test_run_exit_codes_and_bad_input(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str], tmp_path: Path
) -> None:
    model = ["-m", str(gguf_of("scripted", "Q8_0"))]
    cut = run_cli(["run", "Hi", *model, "--max-tokens", "3"], cli_env)
    assert cut.returncode == 3  # cut short: the answer is incomplete
    bad = run_piped([*model, "-"], cli_env, b"caf\xe9 \xff")
    assert bad.returncode == 2 and b"not valid UTF-8 (byte 0xe9 at offset 3)" in bad.stderr
    assert_clean_failure(run_cli(["run", "   ", *model], cli_env), 2, "empty")
    huge = run_piped([*model, "--ctx", "2048", "-"], cli_env, ("word " * 200_000).encode())  # 1 MB
    assert (
        huge.returncode == 2
        and b"context holds 2048" in huge.stderr
        and b"Traceback" not in huge.stderr
    )
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(gguf_of("scripted", "Q8_0").read_bytes()[: 2**20])
    assert_clean_failure(run_cli(["run", "Hi", "-m", str(broken)], cli_env), 1, "broken.gguf")
    assert_clean_failure(
        run_cli(["run", "Hi"], cli_env), 1, "No model pulled yet", "edge-qwen pull"
    )
    assert_clean_failure(run_cli(["run", "Hi", "-m", "nope.gguf"], cli_env), 1, "does not exist")


@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_run_interrupted_exits_130(
    sig: signal.Signals, gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "run",
            "Hi",
            "-m",
            str(gguf_of("looping", "Q8_0")),
            "--no-loop-guard",
            "--ctx",
            "4096",
        ],
        env=cli_env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=default_sigint,
    )
    assert proc.stderr is not None
    proc.stderr.readline()  # the plan line: the model is loaded and generating
    proc.stderr.read1(32)  # thinking has started to stream
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode == 130
