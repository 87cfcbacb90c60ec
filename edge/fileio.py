"""Writing outputs safely: check space first, write under a temporary name, rename on success."""

from __future__ import annotations

import errno
import glob
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.errors import DiskFullError


def ensure_free_space(folder: Path, needed: int) -> None:
    """Fail before writing anything when the disk clearly cannot hold the output."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DiskFullError(
            f"Not enough disk space in {folder}: "
            f"{needed / 2**20:.0f} MiB needed, {free / 2**20:.0f} MiB free.",
            "Free some space or set EDGE_QWEN_HOME to a larger disk.",
        )


def disk_error(exc: OSError, target: Path) -> Exception:
    """Turn out-of-space and file-size-limit errors into a DiskFullError; keep others."""
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return DiskFullError(
            f"Ran out of disk space writing {target} ({os.strerror(exc.errno)}); nothing was kept.",
            "Free some space or set EDGE_QWEN_HOME to a larger disk, then run the command again.",
        )
    return exc


def pid_alive(pid: int) -> bool:
    """Whether process `pid` still runs (ours counts; one we may not signal counts too)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_partials(out: Path) -> list[Path]:
    """Delete `out`'s temporary files left by processes that were killed (kill -9, power loss)."""
    removed = []
    for tmp in out.parent.glob(f".{glob.escape(out.name)}.*.partial"):
        pid = tmp.name[len(out.name) + 2 : -len(".partial")]
        if pid.isdigit() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextmanager
def atomic_output(out: Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside `out`; rename it to `out` only if the block succeeds.

    Whatever happens otherwise (an exception, a full disk) the temporary file is removed,
    so `out` is either absent or complete. A killed process cannot clean up: its
    temporary file is removed by the next write of the same `out`.
    """
    if out.parent.is_dir():
        sweep_partials(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, out)
    except OSError as exc:
        raise disk_error(exc, out) from None
    finally:
        tmp.unlink(missing_ok=True)
