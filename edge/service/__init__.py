"""`edge-qwen serve` as a service the system starts: systemd user units on Linux (socket
activation: systemd listens, and starts the server on the first connection), a launchd
agent on macOS.

`units.py` turns settings into what the service runs and its files (pure); `systemd.py`
and `launchd.py` are the two managers; `manage.py` installs, uninstalls and describes,
whichever manager it is given. The server's half of socket activation is in
edge/server/lifecycle.py (this package imports nothing above the bottom layer).
"""

from edge.service.manage import (
    Kind,
    Manager,
    Outcome,
    Status,
    default_kind,
    install,
    manager_for,
    status,
    this_python,
    uninstall,
)
from edge.service.units import SECRET_FIELDS, Launch, launch_of

__all__ = [
    "SECRET_FIELDS",
    "Kind",
    "Launch",
    "Manager",
    "Outcome",
    "Status",
    "default_kind",
    "install",
    "launch_of",
    "manager_for",
    "status",
    "this_python",
    "uninstall",
]
