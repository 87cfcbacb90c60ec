'''`edge-qwen chat` on a terminal that draws (xterm), as prompt_toolkit reads it: pasted
blocks, """ blocks, Alt-Enter, history across sessions, Ctrl-R, /set on the real engine,
Ctrl-C and Ctrl-D. Keys go in as a terminal sends them, escape codes included.

prompt_toolkit redraws the prompt with escape codes, so a turn is framed by its bracketed
paste switches instead: `ESC[?2004l` when a message is taken, `ESC[?2004h` when the next
prompt is up. The test reads what was shown in between with the escape codes removed.
'''

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest

from tests.support.repo import REPO_ROOT
from tests.support.slow import slow_fixture
from tests.support.terminal import spawn_edge

MARKDOWN_SCRIPT = [
    ["\n", "<think>", "Let", " me", " think", "</think>", "\n\n", "#", " Title", ".\n", "Some"]
    + [" **", "bold", "**", " and", " `", "code", "`.", "<|im_end|>"]
]
READY, TAKEN = "\x1b[?2004h", "\x1b[?2004l"
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
ALT_ENTER, UP, CTRL_R = "\x1b\r", "\x1b[A", "\x12"
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
TIMEOUT = 60


def spawn_tty(gguf: Path, env: dict[str, str], *args: str) -> pexpect.spawn:
    """A chat on an xterm, which reads with prompt_toolkit; waits for the first prompt."""
    child = spawn_edge(
        ["chat", "-m", str(gguf), "--ctx", "2048", *args],
        # No cursor-position requests: pexpect is a terminal that would never answer them.
        {**env, "PROMPT_TOOLKIT_NO_CPR": "1"},
        term="xterm-256color",
    )
    child.expect_exact(READY)
    return child


@slow_fixture(scope="module")
def markdown_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scripted model that answers "# Title.\nSome **bold** and `code`." (F16: no quantize)."""
    from edge.model.convert import convert
    from edge.model.synthetic import write_checkpoint

    folder = tmp_path_factory.mktemp("ckpt")
    checkpoint = write_checkpoint(folder / "Qwen3-markdown", shape="tiny", script=MARKDOWN_SCRIPT)
    return convert(checkpoint, folder / "markdown-f16.gguf", outtype="f16")


def turn(child: pexpect.spawn, keys: str) -> str:
    """Type `keys` (ending in Enter); what was shown until the next prompt, escapes removed."""
    child.send(keys)
    child.expect_exact(TAKEN)
    child.expect_exact(READY)
    return ESCAPES.sub("", str(child.before))


def leave(child: pexpect.spawn) -> None:
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def user_messages(child: pexpect.spawn, path: Path) -> list[str]:
    assert "saved to" in turn(child, f"/save {path}\r")
    return [m["content"] for m in json.loads(path.read_text())["messages"] if m["role"] == "user"]


def test_pasted_and_multiline_messages_are_one_message_each(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str], tmp_path: Path
) -> None:
    child = spawn_tty(gguf_of("scripted", "Q8_0"), cli_env)
    shown = turn(child, f"{PASTE_START}first line\nsecond line\r\nthird{PASTE_END}\r")
    assert shown.count("Hello world") == 1 and shown.count("tok/s") == 1  # one answer
    shown = turn(child, '"""\rone\r\rtwo"""\r')  # Enter inside the block adds lines
    assert shown.count("Hello world") == 1
    assert turn(child, f"alpha{ALT_ENTER}beta\r").count("Hello world") == 1
    assert turn(child, '"""all on one line"""\r').count("Hello world") == 1
    module = '"""A module\'s docstring."""\nimport os\n'  # pasted code: not a """ block
    assert turn(child, f"{PASTE_START}{module}{PASTE_END}\r").count("Hello world") == 1
    assert user_messages(child, tmp_path / "c.json") == [
        "first line\nsecond line\nthird",
        "one\n\ntwo",
        "alpha\nbeta",
        "all on one line",
        module.rstrip(),
    ]
    leave(child)


def test_history_is_recalled_in_the_next_session(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str], tmp_path: Path
) -> None:
    gguf = gguf_of("scripted", "Q8_0")
    child = spawn_tty(gguf, cli_env)
    turn(child, "the first question\r")
    turn(child, f"two{ALT_ENTER}lines\r")
    assert "history off" in turn(child, "/history off\r")
    turn(child, "a secret\r")
    leave(child)
    path = Path(cli_env["EDGE_QWEN_HOME"]) / "chat_history"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert kept == ["the first question", "two\nlines", "/history off"]

    child = spawn_tty(gguf, cli_env)
    turn(child, f"{UP}{UP}\r")  # past /history off, a two-line message, sent again whole
    turn(child, f"{CTRL_R}first\r\r")  # Ctrl-R finds the older one; Enter takes, Enter sends
    assert user_messages(child, tmp_path / "c.json") == ["two\nlines", "the first question"]
    leave(child)

    off = {**cli_env, "EDGE_QWEN_HISTORY": "off"}
    path.unlink()
    child = spawn_tty(gguf, off)
    turn(child, "not kept\r")
    assert "history    off" in turn(child, "/show\r")
    leave(child)
    assert not path.exists()


def test_set_changes_what_the_model_does(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    child = spawn_tty(gguf_of("scripted", "Q8_0"), cli_env)
    assert "max_tokens = 3" in turn(child, "/set max_tokens 3\r")
    shown = turn(child, "Hi\r")
    assert "3 tokens (3 thinking)" in shown and "ended: length" in shown
    turn(child, "/set max_tokens default\r")
    assert "thinking_budget = 2" in turn(child, "/set thinking_budget 2\r")
    shown = turn(child, "Hi\r")
    assert "Hello world" in shown and "thinking budget of 2 tokens reached" in shown
    assert "takes 0 to 2" in turn(child, "/set temperature 3\r")
    shown = turn(child, "/show\r")
    assert "  thinking_budget 2       (set)" in shown
    assert "  temperature     0.6     (Qwen's default, thinking on)" in shown
    leave(child)


def test_seed_and_temperature_reach_the_sampler(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    """A random model at a high temperature: the same seed says the same, another does not."""
    child = spawn_tty(gguf_of("tiny", "Q8_0"), cli_env, "--no-think")
    turn(child, "/set temperature 1.5\r")
    turn(child, "/set max_tokens 12\r")

    def answer(seed: int) -> str:
        turn(child, f"/set seed {seed}\r")
        turn(child, "/reset\r")
        shown = turn(child, "Hi\r")
        return shown[: shown.index("12 tokens")]

    first, again, other = answer(7), answer(7), answer(8)
    assert first == again and first != other
    leave(child)


def test_ctrl_c_and_ctrl_d(gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]) -> None:
    child = spawn_tty(gguf_of("looping", "Q8_0"), cli_env, "--no-loop-guard")
    child.send("Hi\r")
    child.expect_exact("Let meLet meLet me")  # a runaway answer is streaming
    child.sendintr()
    child.expect_exact("[stopped]")
    child.expect_exact(READY)
    child.send("half typed")
    child.sendintr()  # drops the half-typed message, stays
    assert "stopped" not in turn(child, "/stats\r")  # sent alone: the stats, not a message
    child.sendintr()  # at an empty prompt: leaves
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    child = spawn_tty(gguf_of("looping", "Q8_0"), cli_env)
    leave(child)


def test_a_pipe_keeps_input_line_by_line_with_blocks(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str], tmp_path: Path
) -> None:
    saved = tmp_path / "c.json"
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "chat", "-m", str(gguf_of("scripted", "Q8_0"))],
        input=f'Hi\n"""\n    line one\nline two\n"""\n/save {saved}\n"""\nunclosed\n',
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Hello world") == 3  # the unclosed block at the end is sent
    users = [m["content"] for m in json.loads(saved.read_text())["messages"][::2]]
    assert users == ["Hi", "    line one\nline two"]  # a block keeps its indent
    assert not (Path(cli_env["EDGE_QWEN_HOME"]) / "chat_history").exists()  # typed, not piped


def test_markdown_is_coloured_on_a_terminal_and_raw_otherwise(
    markdown_gguf: Path, cli_env: dict[str, str]
) -> None:
    answer = "# Title.\nSome **bold** and `code`."
    bold, code, off = "\x1b[1m", "\x1b[36m", "\x1b[0m"
    colour = {**cli_env, "NO_COLOR": ""}  # set but empty: colours stay on (no-color.org)
    child = spawn_edge(
        ["chat", "-m", str(markdown_gguf), "--ctx", "2048"],
        {**colour, "PROMPT_TOOLKIT_NO_CPR": "1"},
        term="xterm-256color",
    )
    child.expect_exact(READY)
    child.send("Hi\r")
    child.expect_exact(TAKEN)
    child.expect_exact(READY)
    shown = str(child.before).replace("\r\n", "\n")
    assert (
        f"{off}{bold}# Title.{off}\nSome {off}{bold}**bold**{off} and {off}{code}`code`{off}."
        in (shown)
    )
    assert "\x1b[2mLet\x1b[0m\x1b[2m me" in shown  # the thinking stays dimmed
    assert f"Let me think\n{answer}\n" in re.sub(r"\x1b\[[0-9;]*m", "", shown)  # and apart
    leave(child)

    for args, env in ((["--raw"], colour), ([], cli_env)):  # --raw, then NO_COLOR=1
        child = spawn_tty(markdown_gguf, env, *args)
        child.send("Hi\r")
        child.expect_exact(TAKEN)
        child.expect_exact(READY)
        assert f"{answer}\n" in str(child.before).replace("\r\n", "\n")  # not a code in it
        leave(child)
