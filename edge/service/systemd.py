"""A systemd user service: the socket and service units, `systemctl --user`, and
`systemd-analyze --user verify` on what was written."""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from edge.service.run import Ran, run, run_all
from edge.service.units import SERVICE_UNIT, SOCKET_UNIT, Launch, systemd_units

SYSTEMCTL = ["systemctl", "--user"]


def user_unit_folder(environ: Mapping[str, str], home: Path) -> Path:
    """Where systemd looks for a user's own units: $XDG_CONFIG_HOME/systemd/user."""
    config = environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    return Path(config) / "systemd" / "user"


class Systemd:
    """The unit pair in `folder`: systemd listens, and starts the server on the first
    connection, handing it the socket."""

    name = "systemd (user units)"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def files(self, launch: Launch) -> dict[Path, bytes]:
        """What install writes."""
        return {self.folder / n: t.encode() for n, t in systemd_units(launch).items()}

    def paths(self) -> list[Path]:
        """Every file install may have written."""
        return [self.folder / SOCKET_UNIT, self.folder / SERVICE_UNIT]

    def folders(self) -> list[Path]:
        """Folders install makes beside the files: none (journald keeps the logs)."""
        return []

    def verify(self, paths: list[Path]) -> Ran | None:
        """systemd-analyze's verdict on the written units; None where it is absent."""
        if shutil.which("systemd-analyze") is None:
            return None
        env = dict(os.environ)
        # --user verify wants a runtime folder, which a session without a user manager
        # (a container, ssh without a login session) lacks; any private folder will do.
        with tempfile.TemporaryDirectory() as runtime:
            if not Path(env.get("XDG_RUNTIME_DIR") or "/nonexistent").is_dir():
                env["XDG_RUNTIME_DIR"] = runtime
            argv = ["systemd-analyze", "--user", "verify", *map(str, paths)]
            return run(argv, env)

    def reachable(self) -> Ran:
        """Whether `systemctl --user` talks to a user manager (not so in most containers)."""
        return run([*SYSTEMCTL, "show-environment"])

    def start_commands(self) -> list[list[str]]:
        """Load the units, stop an older install's server, listen with the new settings."""
        return [
            [*SYSTEMCTL, "daemon-reload"],
            [*SYSTEMCTL, "stop", SERVICE_UNIT, SOCKET_UNIT],
            [*SYSTEMCTL, "enable", "--now", SOCKET_UNIT],
        ]

    def start(self) -> Ran:
        """Run the start commands."""
        return run_all(self.start_commands())

    def stop_commands(self) -> list[list[str]]:
        """Stop both units; this works from what systemd has loaded, files gone or not."""
        return [[*SYSTEMCTL, "stop", SERVICE_UNIT, SOCKET_UNIT]]

    def after_removal(self) -> list[list[str]]:
        """After the files went: forget them."""
        return [[*SYSTEMCTL, "daemon-reload"]]

    def leftovers(self) -> list[Path]:
        """Links that `enable` made (sockets.target.wants/…), which uninstall removes even
        when no manager is reachable to `disable`."""
        names = (SOCKET_UNIT, SERVICE_UNIT)
        return [p for p in self.folder.glob("*.wants/*") if p.name in names and p.is_symlink()]

    def state(self) -> str:
        """What systemd says of both units, e.g. "socket active, service inactive"."""
        ran = run([*SYSTEMCTL, "is-active", SOCKET_UNIT, SERVICE_UNIT])
        states = ran.output.splitlines()
        if len(states) != 2:
            return f"unknown ({ran.output or 'no answer'})"
        return f"socket {states[0]}, service {states[1]}"

    def logs(self) -> str:
        """How to read the server's output."""
        return f"journalctl --user -u {SERVICE_UNIT} -f"

    def installed(self) -> tuple[list[str], dict[str, str], str] | None:
        """The installed service's command, environment and address, or None."""
        service, socket = self.folder / SERVICE_UNIT, self.folder / SOCKET_UNIT
        if not service.is_file():
            return None
        argv: list[str] = []
        env: dict[str, str] = {}
        for key, value in _settings(service):
            if key == "ExecStart":
                argv = [w.replace("$$", "$") for w in _words(value)]
            elif key == "Environment":
                env.update(w.partition("=")[::2] for w in _words(value))
        listen = dict(_settings(socket)).get("ListenStream", "?") if socket.is_file() else "?"
        return argv, env, listen


def _settings(unit: Path) -> list[tuple[str, str]]:
    """A unit file's Key=value lines (sections and comments skipped)."""
    pairs = []
    for line in unit.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";", "[")):
            pairs.append((key.strip(), value.strip()))
    return pairs


def _words(value: str) -> list[str]:
    """A value split as systemd does for what units.py writes (its double quotes and
    backslashes are a shell's), with doubled % undone."""
    return [w.replace("%%", "%") for w in shlex.split(value)]
