"""A launchd agent on macOS: the plist in ~/Library/LaunchAgents and `launchctl`."""

from __future__ import annotations

import plistlib
from pathlib import Path

from edge.service.run import Ran, run, run_all
from edge.service.units import LABEL, PLIST, Launch, launchd_plist

# What a job's plist must hold for launchd to run it as the service.
REQUIRED = ("Label", "ProgramArguments", "EnvironmentVariables", "RunAtLoad", "KeepAlive")


def agent_folder(home: Path) -> Path:
    """Where a user's launchd agents live."""
    return home / "Library" / "LaunchAgents"


class Launchd:
    """One agent, started at login and kept alive; its output in `log`."""

    name = "launchd (user agent)"

    def __init__(self, folder: Path, log: Path, uid: int) -> None:
        self.folder = folder
        self.log = log
        self.domain = f"gui/{uid}"

    def files(self, launch: Launch) -> dict[Path, bytes]:
        """What install writes."""
        return {self.folder / PLIST: launchd_plist(launch, self.log)}

    def paths(self) -> list[Path]:
        """Every file install may have written."""
        return [self.folder / PLIST]

    def folders(self) -> list[Path]:
        """The log's folder, which launchd does not create (the job would not start)."""
        return [self.log.parent]

    def verify(self, paths: list[Path]) -> Ran | None:
        """The plist read back: well-formed, with every key the job needs."""
        for path in paths:
            try:
                job = plistlib.loads(path.read_bytes())
            except (plistlib.InvalidFileException, ValueError) as exc:
                return Ran(False, f"{path}: not a readable plist ({exc})")
            missing = [key for key in REQUIRED if key not in job]
            if missing or job.get("Label") != LABEL:
                return Ran(False, f"{path}: missing {', '.join(missing) or 'our Label'}")
        return Ran(True, "")

    def reachable(self) -> Ran:
        """Whether launchctl answers for this user's GUI session."""
        return run(["launchctl", "print", self.domain])

    def start_commands(self) -> list[list[str]]:
        """Load the agent, which starts the server (RunAtLoad)."""
        return [["launchctl", "bootstrap", self.domain, str(self.folder / PLIST)]]

    def start(self) -> Ran:
        """Unload an older install's agent (there may be none: not an error), load this one."""
        run(self.stop_commands()[0])
        return run_all(self.start_commands())

    def stop_commands(self) -> list[list[str]]:
        """Before the file goes: unload the agent, which stops the server."""
        return [["launchctl", "bootout", f"{self.domain}/{LABEL}"]]

    def after_removal(self) -> list[list[str]]:
        return []

    def leftovers(self) -> list[Path]:
        return []

    def state(self) -> str:
        """launchd's word for the job: running, waiting, or not loaded."""
        ran = run(["launchctl", "print", f"{self.domain}/{LABEL}"])
        if not ran.ok:
            return f"not loaded ({ran.output.splitlines()[-1] if ran.output else 'no answer'})"
        lines = [line.strip() for line in ran.output.splitlines()]
        states = [line.split("=", 1)[1].strip() for line in lines if line.startswith("state =")]
        return states[0] if states else "loaded"

    def logs(self) -> str:
        """How to read the server's output."""
        return f"tail -f {self.log}"

    def installed(self) -> tuple[list[str], dict[str, str], str] | None:
        """The installed agent's command, environment and address (from its settings)."""
        path = self.folder / PLIST
        if not path.is_file():
            return None
        job = plistlib.loads(path.read_bytes())
        env = dict(job.get("EnvironmentVariables", {}))
        return list(job.get("ProgramArguments", [])), env, "(bound by the server itself)"
