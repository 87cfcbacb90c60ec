'''Fast tests of the chat's input layer: """ blocks, the history file, /set and /show,
and the session at the engine seam (a FakeEngine records what each turn asked for).'''

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.chat.conversation import Conversation, TurnOptions
from edge.chat.reasoning import Delta
from edge.cli import history as history_module
from edge.cli.chatloop import ChatLoop, is_command, trimmed
from edge.cli.history import HistoryFile
from edge.cli.knobs import set_knob, show_knobs
from edge.cli.lineinput import fenced, open_block
from edge.cli.markdown import BOLD, RESET
from edge.engine import Finish
from edge.errors import EngineFailedError, UsageError
from tests.support.fake_engine import FakeEngine
from tests.support.seam import qwen_template


@pytest.mark.parametrize(
    ("text", "still_open", "message"),
    [
        ('"""', True, None),
        ('"""\nfirst', True, None),
        ('"""\nfirst\nlast"""', False, "first\nlast"),
        ('"""one line"""', False, "one line"),
        ('  """\n  indented\n"""  ', False, "  indented"),
        ('"""\n\n"""', False, ""),
        ('""""', True, None),
        ('say """ in the middle', False, None),
        ('"""hi""" he said', False, None),  # closed on its first line: not a block
        ('"""a""" b """c"""', False, None),
        ('"""Doc."""\nimport os\n', False, None),  # a pasted module: sent as it is
        ('"""Doc."""\nx = 1\ny = """s"""', False, None),
        ('"""\nDoc.\n"""\nimport os', False, None),
        ('"""\nDoc.\n"""\ns = """x"""', False, None),  # a block, then more after it
        ("plain", False, None),
    ],
)
def test_fenced_blocks(text: str, still_open: bool, message: str | None) -> None:
    assert open_block(text) is still_open
    assert fenced(text) == message


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("  hello  ", "hello"),
        ('"""\n/set temperature 2\n"""', "/set temperature 2"),  # a block is a message
        ("\n    def f():\n        pass\n\n", "    def f():\n        pass"),
    ],
)
def test_what_is_sent(text: str, sent: str) -> None:
    inside = fenced(text)
    assert (trimmed(text) if inside is None else inside) == sent


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("/show", True),
        ("/think", True),
        ("/think what is 2+2?", False),  # Qwen's soft switch starting a message
        ("/usr/bin/env is\nwhat?", False),  # a pasted block is a message
        ("hello /show", False),
    ],
)
def test_what_is_a_command(text: str, command: bool) -> None:
    assert is_command(text) is command


def test_history_file_is_private_bounded_and_forgiving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "home" / "chat_history"
    history = HistoryFile(path)
    history.add("first")
    history.add("two\nlines")
    history.add("two\nlines")  # sent again: kept once
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert HistoryFile(path).entries() == ["first", "two\nlines"]

    path.chmod(0o644)  # made by something else: the next write makes it private again
    with path.open("a") as f:
        f.write("not json\n42\n")  # damage is skipped, never deleted
    history.add("third")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert HistoryFile(path).entries() == ["first", "two\nlines", "third"]
    assert "not json" in path.read_text()

    history.add("x" * (history_module.MAX_ENTRY_BYTES + 1))  # a pasted file: sent, not kept
    history.recording = False
    history.add("said while off")
    assert HistoryFile(path).entries()[-1] == "third"

    monkeypatch.setattr(history_module, "MAX_BYTES", 4096)
    history.recording = True
    for i in range(500):
        history.add(f"message {i:03}")
    kept = HistoryFile(path).entries()
    assert path.stat().st_size <= 4096 and kept[-1] == "message 499"
    assert kept == [f"message {i:03}" for i in range(500 - len(kept), 500)]  # the newest
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    history.clear()
    assert not path.exists() and HistoryFile(path).entries() == []


def test_history_that_cannot_be_written_turns_itself_off(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    history = HistoryFile(blocked / "chat_history")  # its folder is a file
    history.add("hello")
    assert history.recording is False
    assert history.failure.startswith("history off:")  # the reader shows it after the prompt
    with pytest.raises(UsageError, match="could not be removed"):
        HistoryFile(tmp_path).clear()  # a folder where the file should be


def test_a_trim_follows_a_symlink_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_module, "MAX_BYTES", 512)
    real = tmp_path / "dotfiles" / "history"
    real.parent.mkdir()
    link = tmp_path / "chat_history"
    link.symlink_to(real)
    history = HistoryFile(link)
    for i in range(100):
        history.add(f"message {i:03}")
    assert link.is_symlink() and real.stat().st_size <= 512
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert HistoryFile(link).entries()[-1] == "message 099"
    # no temporary file left; the lock sits beside the real file
    assert sorted(p.name for p in real.parent.iterdir()) == [".history.lock", "history"]
    assert stat.S_IMODE((real.parent / ".history.lock").stat().st_mode) == 0o600


def test_what_another_session_appends_during_a_trim_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    monkeypatch.setattr(history_module, "MAX_BYTES", 512)
    path = tmp_path / "chat_history"
    mine, theirs = HistoryFile(path), HistoryFile(path)
    appended = threading.Event()
    other = threading.Thread(target=lambda: (theirs.add("theirs, mid-trim"), appended.set()))
    read_entries = HistoryFile.entries

    def entries_then_the_other_session_writes(self: HistoryFile) -> list[str]:
        read = read_entries(self)
        if self is mine and other.ident is None:  # the first trim, after it has read
            other.start()
            # Without the lock their line lands in the file this trim is about to
            # replace; with it, they wait (this times out) and append to the new one.
            appended.wait(timeout=0.5)
        return read

    monkeypatch.setattr(HistoryFile, "entries", entries_then_the_other_session_writes)
    for i in range(40):  # until the first trim, and no more: a second would drop theirs
        mine.add(f"mine {i:02d} ........")
        if other.ident is not None:
            break
    other.join(timeout=10)
    assert other.ident is not None and not other.is_alive()
    assert "theirs, mid-trim" in read_entries(HistoryFile(path))


def test_history_loads_at_most_max_entries(tmp_path: Path) -> None:
    path = tmp_path / "h"
    path.write_text("".join(json.dumps(f"m{i}") + "\n" for i in range(1500)))
    entries = HistoryFile(path).entries()
    assert len(entries) == history_module.MAX_ENTRIES and entries[-1] == "m1499"
    backend = HistoryFile(path).backend()
    assert next(iter(backend.load_history_strings())) == "m1499"  # newest first


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("temperature 0.2", "temperature", 0.2),
        ("temp 0", "temperature", 0.0),
        ("parameter temperature 1.5", "temperature", 1.5),  # Ollama's spelling
        ("top_p 1", "top_p", 1.0),
        ("top-k 0", "top_k", 0),
        ("min_p 0.05", "min_p", 0.05),
        ("max_tokens 64", "max_tokens", 64),
        ("num_predict 8", "max_tokens", 8),
        ("thinking_budget 0", "thinking_budget", 0),
        ("seed 4294967294", "seed", 4294967294),
        ("loop_guard default", "loop_guard", True),
        ("loop_guard off", "loop_guard", False),
        ("max_tokens default", "max_tokens", None),
        ("temperature DEFAULT", "temperature", None),
    ],
)
def test_set_accepts(line: str, field: str, value: object) -> None:
    opts, said = set_knob(TurnOptions(temperature=0.9, max_tokens=5), line)
    assert getattr(opts, field) == value
    assert field in said


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("temperature 2.5", "temperature takes 0 to 2, not '2.5'"),
        ("temperature hot", "temperature takes 0 to 2"),
        ("temperature nan", "temperature takes 0 to 2"),
        ("top_p nan", "top_p takes above 0, up to 1"),
        ("top_p 0", "top_p takes above 0, up to 1"),
        ("top_k 1.5", "top_k takes 0 (all) or more"),
        ("max_tokens 0", "max_tokens takes 1 or more"),
        ("loop_guard maybe", "loop_guard takes on or off"),
        ("seed -1", "seed takes 0 to 4294967294"),  # llama.cpp's "random seed"
        ("seed 4294967295", "seed takes 0 to 4294967294"),
        ("top_k 9999999999", "top_k takes 0 (all) or more"),
        ("colour blue", "/set knows no 'colour'"),
        ("temperature", "Usage: /set NAME VALUE"),
        ("", "Usage: /set NAME VALUE"),
    ],
)
def test_set_refuses_with_what_it_accepts(line: str, says: str) -> None:
    with pytest.raises(UsageError, match=re.escape(says)) as caught:
        set_knob(TurnOptions(), line)
    assert caught.value.hint


def test_show_says_where_each_value_comes_from() -> None:
    rows = show_knobs(TurnOptions(temperature=0.1, seed=7), thinking=False)
    assert "  temperature     0.1     (set)" in rows
    assert "  top_p           0.8     (Qwen's default, thinking off)" in rows
    assert "  seed            7       (set)" in rows
    assert "  max_tokens      none    (no limit)" in rows
    assert "  loop_guard      on" in rows


class Script:
    """A Reader that types the given lines, then Ctrl-D."""

    history = None

    def __init__(self, *lines: str) -> None:
        self._lines: Iterator[str] = iter(lines)

    def read(self) -> str:
        try:
            return next(self._lines)
        except StopIteration:
            raise EOFError from None


def session(engine: FakeEngine, *lines: str, opts: TurnOptions | None = None) -> ChatLoop:
    for _ in range(sum(not is_command(line) for line in lines)):
        engine.enqueue(["<think>\nhm\n</think>\n\n", "Hello"])
    conv = Conversation(engine, qwen_template(), "fake")
    loop = ChatLoop(conv, opts or TurnOptions(), Script(*lines), show_thinking=True)
    loop.run()
    return loop


def test_set_changes_what_the_engine_receives(capsys: pytest.CaptureFixture[str]) -> None:
    engine = FakeEngine()
    session(
        engine,
        "before",
        "/set temperature 0.25",
        "/set top_p 0.5",
        "/set top-k 7",
        "/set min_p 0.1",
        "/set max_tokens 12",
        "/set thinking_budget 3",
        "/set seed 42",
        "/set loop_guard off",
        "/set temperature 9",  # refused: the session goes on with 0.25
        "after",
        "/set temperature default",
        "/no_think",
        "last",
        opts=TurnOptions(max_tokens=99),
    )
    first, second, third = engine.jobs
    assert (first.params.temperature, first.params.top_k, first.params.max_tokens) == (
        0.6,
        20,
        99,
    )
    p = second.params
    assert (p.temperature, p.top_p, p.top_k, p.min_p, p.max_tokens, p.seed) == (
        0.25,
        0.5,
        7,
        0.1,
        12,
        42,
    )
    assert second.thinking.budget == 3 and second.thinking.loop_guard is False
    assert third.params.temperature == 0.7 and third.params.seed == 42  # thinking off default
    err = capsys.readouterr().err
    assert "error: temperature takes 0 to 2, not '9'." in err


def test_ollamas_set_think_spellings(capsys: pytest.CaptureFixture[str]) -> None:
    engine = FakeEngine()
    loop = session(engine, "/set nothink", "off", "/set think", "on", "/set think off", "x")
    off, on, off_again = engine.jobs
    # Qwen's defaults for each mode: 0.7 without thinking, 0.6 with it
    assert [j.params.temperature for j in (off, on, off_again)] == [0.7, 0.6, 0.7]
    assert loop.conv.thinking is False
    session(FakeEngine(), "/set think maybe", "/set nothink now")
    err = capsys.readouterr().err
    assert "error: /set think takes on or off, not 'maybe'." in err
    assert "error: /set knows no 'nothink'." in err  # a knob's usage, not a silent switch


def test_show_and_copy_at_the_seam(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    session(FakeEngine(), "/copy", "Hi", "/set seed 5", "/show", "/copy", "/history off")
    err = capsys.readouterr().err
    assert "error: There is no answer to copy yet." in err
    assert "context    " in err and "of 4096 tokens used" in err
    assert "history    off" in err and "  seed            5       (set)" in err
    assert "error: No clipboard reachable here" in err and "/save FILE" in err
    assert "error: No history is kept in this session." in err


def test_copy_hands_the_answer_to_the_clipboard_tool(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = tmp_path / "clipboard"
    tool = tmp_path / "xclip"
    tool.write_text(f"#!/bin/sh\ncat > {got}\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    session(FakeEngine(), "Hi", "/copy")
    assert got.read_text() == "Hello"  # the answer, without its thinking
    assert "copied the last answer (5 characters, xclip)" in capsys.readouterr().err


class Failing(Conversation):
    """A conversation whose answer breaks off with an engine error half way."""

    def send(self, text: str, opts: TurnOptions | None = None) -> Iterator[Delta | Finish]:
        yield Delta("answer", "**bold start")
        raise EngineFailedError("the engine stopped")


def test_an_error_mid_answer_turns_the_colours_off(capsys: pytest.CaptureFixture[str]) -> None:
    conv = Failing(FakeEngine(), qwen_template(), "fake")
    ChatLoop(conv, TurnOptions(), Script("Hi", "/stats"), show_thinking=True, markdown=True).run()
    out, err = capsys.readouterr()
    assert out == f"{RESET}{BOLD}**bold start{RESET}"
    assert "error: the engine stopped" in err and "no answer yet" in err
