"""Install, uninstall and describe the service, whichever manager runs it.

Files are checked before they are put in place (systemd-analyze, or the plist read
back), so a failed install leaves an older one as it was. Starting needs the manager to
answer (`systemctl --user` has no user manager in most containers); when it does not,
the outcome says which commands to run.
"""

from __future__ import annotations

import os
import site
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from edge.errors import EdgeError, UsageError
from edge.fileio import atomic_output
from edge.service.launchd import Launchd, agent_folder
from edge.service.run import Ran, run_all, shown
from edge.service.systemd import Systemd, user_unit_folder
from edge.service.units import Launch

Kind = Literal["systemd", "launchd"]


class Manager(Protocol):
    """What install, uninstall and status need of a service manager."""

    name: str

    def files(self, launch: Launch) -> dict[Path, bytes]: ...
    def paths(self) -> list[Path]: ...
    def folders(self) -> list[Path]: ...
    def verify(self, paths: list[Path]) -> Ran | None: ...
    def reachable(self) -> Ran: ...
    def start(self) -> Ran: ...
    def start_commands(self) -> list[list[str]]: ...
    def stop_commands(self) -> list[list[str]]: ...
    def after_removal(self) -> list[list[str]]: ...
    def leftovers(self) -> list[Path]: ...
    def state(self) -> str: ...
    def logs(self) -> str: ...
    def installed(self) -> tuple[list[str], dict[str, str], str] | None: ...


def default_kind(platform: str) -> Kind:
    """launchd on macOS, systemd elsewhere that has it."""
    if platform == "darwin":
        return "launchd"
    if platform.startswith("linux"):
        return "systemd"
    raise UsageError(
        f"edge-qwen service knows systemd and launchd, not {platform}'s service manager.",
        "Start `edge-qwen serve` with your system's own tools.",
    )


def manager_for(
    kind: Kind, edge_home: Path, user_home: Path, environ: Mapping[str, str]
) -> Manager:
    """The manager of `kind`, its files under `user_home` (or $XDG_CONFIG_HOME)."""
    if kind == "launchd":
        return Launchd(agent_folder(user_home), edge_home / "logs" / "serve.log", os.getuid())
    return Systemd(user_unit_folder(environ, user_home))


def this_python() -> tuple[str, str | None]:
    """The interpreter running now (the service then runs this very install), and the
    folder to put on its PYTHONPATH when it would not find `edge` by itself.

    The path is made absolute but its links are kept: a virtual environment's python is
    a link whose own place is what selects the environment. An edge/ that is not in a
    site-packages folder is a source checkout (an editable install, or none), and
    putting its folder first makes the service run that checkout whatever the folder it
    starts in.
    """
    if not sys.executable:
        raise UsageError("Cannot tell which Python runs edge-qwen (sys.executable is empty).")
    python = os.path.abspath(sys.executable)
    package_parent = Path(__file__).resolve().parents[2]
    sites = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages()]}
    return python, None if package_parent in sites else str(package_parent)


@dataclass
class Outcome:
    """What install or uninstall did, and what a person still has to run."""

    files: list[Path]
    told: bool = False  # the manager started (install) or stopped (uninstall) the service
    why_not: str | None = None  # why the manager was not told
    todo: list[str] = field(default_factory=list)


def install(manager: Manager, launch: Launch, *, start: bool) -> Outcome:
    """Check the files, put them in place, and start the service when asked and able."""
    files = manager.files(launch)
    _check(manager, files)
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            tmp.write_bytes(data)
            tmp.chmod(0o644)
    for folder in manager.folders():
        folder.mkdir(parents=True, exist_ok=True)
    todo = [shown(argv) for argv in manager.start_commands()]
    if not start:
        return Outcome(list(files), why_not="--no-start", todo=todo)
    reach = manager.reachable()
    if not reach.ok:
        return Outcome(list(files), why_not=_first_line(reach.output), todo=todo)
    ran = manager.start()
    if not ran.ok:
        raise EdgeError(f"The files are written, but starting failed: {ran.output}", _then(todo))
    return Outcome(list(files), told=True)


def _check(manager: Manager, files: dict[Path, bytes]) -> None:
    """Verify the files under their own names in a private folder, before they replace
    anything."""
    with tempfile.TemporaryDirectory(prefix="edge-qwen-service-") as staging:
        staged = []
        for path, data in files.items():
            staged.append(Path(staging) / path.name)
            staged[-1].write_bytes(data)
        verdict = manager.verify(staged)
    if verdict is not None and not verdict.ok:
        raise EdgeError(
            f"The service files did not pass their check: {verdict.output.replace(staging, '…')}",
            "Nothing was written; an older install, if any, is as it was.",
        )


def uninstall(manager: Manager, *, stop: bool) -> Outcome:
    """Stop the service when asked and the manager answers, then remove its files and the
    links `enable` made (which is all `disable` would do); none there is no error."""
    present = [p for p in (*manager.paths(), *manager.leftovers()) if p.exists() or p.is_symlink()]
    if not present:
        return Outcome([])
    commands = manager.stop_commands()
    told: bool = False
    why_not: str | None = "--no-stop"
    if stop:
        reach = manager.reachable()
        ran = run_all(commands) if reach.ok else reach
        told, why_not = ran.ok, None if ran.ok else _first_line(ran.output)
    for path in present:
        path.unlink(missing_ok=True)
    if told:
        run_all(manager.after_removal())
        return Outcome(present, True)
    # Both still work with the files gone: the manager stops what it has loaded.
    todo = [shown(argv) for argv in (*commands, *manager.after_removal())]
    return Outcome(present, False, why_not, todo)


@dataclass
class Status:
    """The installed service as its files and its manager describe it."""

    manager: str
    files: list[Path]
    argv: list[str]
    env: dict[str, str]
    listen: str
    state: str
    logs: str


def status(manager: Manager) -> Status | None:
    """What is installed (None: nothing), and whether the manager runs it."""
    found = manager.installed()
    if found is None:
        return None
    argv, env, listen = found
    reach = manager.reachable()
    state = manager.state() if reach.ok else f"unknown ({_first_line(reach.output)})"
    files = [p for p in manager.paths() if p.exists()]
    return Status(manager.name, files, argv, env, listen, state, manager.logs())


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no answer"


def _then(todo: list[str]) -> str:
    return "Once the cause is fixed, run: " + "; ".join(todo)
