"""The chat's history file: what was sent, kept for the next session's Up and Ctrl-R.

One JSON string a line (a multi-line message stays one entry), mode 0600, in the store's
folder. It is bounded: past MAX_BYTES it is rewritten with the newest entries that fill
half of that (at most MAX_ENTRIES), and a message over MAX_ENTRY_BYTES (a pasted file) is
sent but not kept. Two chats may share the file: each write holds a lock on a file beside
it (`.NAME.lock`), so a trim never drops what another session appended meanwhile.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from edge.errors import UsageError

if TYPE_CHECKING:
    from prompt_toolkit.history import History

MAX_ENTRIES = 1000
MAX_BYTES = 1 << 20
MAX_ENTRY_BYTES = 64 << 10


class HistoryFile:
    """Messages sent, in a file only its owner can read.

    `recording` is what /history on|off switches: off, nothing more is written and what
    the file holds stays. Lines that do not parse are skipped when read, and dropped only
    when the file is trimmed. A write that fails turns recording off and leaves a line in
    `failure` for the reader to show: the chat goes on.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.recording = True
        self.failure = ""
        self._last: str | None = None  # the same message sent again is kept once

    def entries(self) -> list[str]:
        """What the file holds, oldest first, at most MAX_ENTRIES."""
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:  # none yet, or unreadable: a session without the past
            return []
        return [e for e in map(_parse, lines) if e is not None][-MAX_ENTRIES:]

    def add(self, text: str) -> None:
        """Append one message (if recording and not huge); trim past the bound."""
        data = (json.dumps(text, ensure_ascii=False) + "\n").encode("utf-8")
        if not self.recording or len(data) > MAX_ENTRY_BYTES or text == self._last:
            return
        self._last = text
        try:
            with self._lock():
                if self._append(data) > MAX_BYTES:
                    self._trim()
        except OSError as exc:  # a full disk or a read-only home must not end the chat
            self.recording = False
            self.failure = f"history off: {self.path} could not be written ({exc})"

    def clear(self) -> None:
        """Delete the file; a UsageError when it cannot be deleted."""
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise UsageError(f"{self.path} could not be removed ({exc}).") from None

    def _lock(self) -> FileLock:
        """The history's lock, held for one write and its trim (the store's FileLock, so
        it works wherever the store's does). A file of its own: the trim replaces the
        history file, and a lock on the replaced file would guard nothing."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        target = self.path.resolve()
        return FileLock(target.parent / f".{target.name}.lock", mode=0o600)

    def _append(self, data: bytes) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)  # also a file made before, or under another umask
            os.write(fd, data)
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def _trim(self) -> None:
        keep: list[str] = []
        total = 0
        for entry in reversed(self.entries()):  # newest first, up to half the byte bound
            total += len(json.dumps(entry, ensure_ascii=False).encode("utf-8")) + 1
            if total > MAX_BYTES // 2:
                break
            keep.append(entry)
        # Written beside the real file (a symlinked one is followed) under a unique name,
        # then moved over it: a reader never sees half a file.
        target = self.path.resolve()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:  # mkstemp made it 0600
                out.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in reversed(keep))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def backend(self) -> History:
        """This file as prompt_toolkit's history: loaded once, each send appended."""
        from prompt_toolkit.history import History

        owner = self

        class _Backend(History):
            def load_history_strings(self) -> Iterable[str]:
                return list(reversed(owner.entries()))  # prompt_toolkit wants newest first

            def store_string(self, string: str) -> None:
                owner.add(string)

        return _Backend()


def _parse(line: str) -> str | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, str) else None
