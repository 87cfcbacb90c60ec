"""What a service runs, and its files: systemd's socket and service units, launchd's plist.

Pure: settings in, text out. The settings travel as `EDGE_QWEN_<FIELD>` variables, the
way `serve` reads them anyway, so the unit holds no second copy of the option parsing.
The API key never goes in: unit files and plists are readable by every user (and
`systemctl show` prints Environment= to anyone), so `--lan` makes the server read the key
it keeps with mode 0600 under the edge-qwen home instead.
"""

from __future__ import annotations

import ipaddress
import plistlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config import Settings
from edge.errors import UsageError

NAME = "edge-qwen"
SOCKET_UNIT = f"{NAME}.socket"
SERVICE_UNIT = f"{NAME}.service"
LABEL = "dev.edge-qwen.serve"  # launchd's reverse-DNS job label
PLIST = f"{LABEL}.plist"
SECRET_FIELDS = ("api_key", "replica_keys")
# A word systemd reads as it is; anything else is quoted (see _quoted).
_PLAIN = re.compile(r"[A-Za-z0-9_./:,=+@-]+")


@dataclass(frozen=True)
class Launch:
    """What the service runs: the command, its environment, and the address it serves."""

    argv: tuple[str, ...]
    env: dict[str, str]
    listen: str  # systemd's ListenStream=: IP:PORT, [IPv6]:PORT


def launch_of(cfg: Settings, python: str, pythonpath: str | None = None) -> Launch:
    """The service for `cfg`: `python -m edge.cli serve` (the interpreter running now, so
    the service runs this very install) with the settings in its environment.

    `pythonpath` is for a source checkout that the interpreter cannot import on its own.
    Refuses, at install rather than at boot, whatever the service could not run with.
    """
    if cfg.api_key:
        raise UsageError(
            "The API key cannot go into the service: its files are readable by every user.",
            f"Use --lan: the server then requires the key stored (mode 0600) in "
            f"{cfg.home / 'api_key'}; write your own key there to choose it. "
            "Unset EDGE_QWEN_API_KEY if it is set.",
        )
    env = environment(cfg)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return Launch((python, "-m", "edge.cli", "serve"), env, listen_address(cfg))


def environment(cfg: Settings) -> dict[str, str]:
    """EDGE_QWEN_HOME, and `EDGE_QWEN_<FIELD>` for every other setting that differs from
    its default, secrets left out; checked by reading it back as `serve` will."""
    defaults = Settings(home=cfg.home)
    env = {Settings.env_name("home"): str(cfg.home)}
    for field in Settings.model_fields:
        value = getattr(cfg, field)
        if field in SECRET_FIELDS or field == "home" or value == getattr(defaults, field):
            continue
        env[Settings.env_name(field)] = _env_value(value)
    back = Settings.load(environ=env)  # a UsageError naming the variable, if any
    kept = cfg.model_copy(update={name: getattr(back, name) for name in SECRET_FIELDS})
    if back != kept:
        raise UsageError(
            "These settings do not survive being written as EDGE_QWEN_* variables.",
            "Report this as a bug, with the options given.",
        )
    return env


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def listen_address(cfg: Settings) -> str:
    """Where `serve` with these settings would bind, as systemd's ListenStream= says it.

    --lan is 0.0.0.0, as `serve --lan` binds: IPv4 only, not [::] with BindIPv6Only=both,
    because on many home networks a global IPv6 address is reachable from the internet, which the
    LAN's NAT would otherwise keep out.
    """
    if cfg.port == 0:
        raise UsageError("A service needs a fixed port; 0 means any.", "Pass --port N.")
    host = bind_host(cfg)
    try:
        address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        raise UsageError(
            f"systemd listens on an IP address, and {host} is not one.",
            "Pass --host with an IP address, e.g. 127.0.0.1 or 0.0.0.0.",
        ) from None
    if not (address.is_loopback or cfg.lan or cfg.no_auth):
        raise UsageError(  # serve would refuse at every start; say it now
            f"Binding {host} exposes the server to the network, so an API key is required.",
            "Use --lan (a key stored under the edge-qwen home), or --no-auth.",
        )
    return f"[{address}]:{cfg.port}" if address.version == 6 else f"{address}:{cfg.port}"


def bind_host(cfg: Settings) -> str:
    """The address `serve` binds for `cfg`, as edge/cli/serve.py chooses it."""
    return "0.0.0.0" if cfg.lan and cfg.host == "127.0.0.1" else cfg.host


def systemd_units(launch: Launch) -> dict[str, str]:
    """The socket unit and the service it starts, by file name."""
    socket = f"""\
[Unit]
Description=edge-qwen: the socket for Qwen3's OpenAI-compatible API

[Socket]
ListenStream={launch.listen}

[Install]
WantedBy=sockets.target
"""
    env = "".join(f"Environment={_quoted(f'{k}={v}')}\n" for k, v in sorted(launch.env.items()))
    command = " ".join(_quoted(arg, exec_line=True) for arg in launch.argv)
    service = f"""\
[Unit]
Description=edge-qwen: Qwen3's OpenAI-compatible API (started by {SOCKET_UNIT})
Requires={SOCKET_UNIT}
After={SOCKET_UNIT}
# A server that keeps failing (a deleted model, say) stops being restarted, not loops.
StartLimitIntervalSec=120
StartLimitBurst=5

[Service]
Type=simple
ExecStart={command}
{env}# Status 0 is a clean stop (SIGTERM, or leaving when idle): the socket stays, and the
# next connection starts the server again. Only a failure restarts it at once.
Restart=on-failure
RestartSec=5

[Install]
Also={SOCKET_UNIT}
"""
    return {SOCKET_UNIT: socket, SERVICE_UNIT: service}


def _quoted(word: str, exec_line: bool = False) -> str:
    """`word` as systemd reads it back: specifiers (%) doubled, and in ExecStart= also
    variables ($); double quotes around anything but a plain word."""
    if any(ord(c) < 32 or c == "\x7f" for c in word):
        raise UsageError(f"A service setting holds a control character: {word!r}.")
    text = word.replace("%", "%%")
    if exec_line:
        text = text.replace("$", "$$")
    if _PLAIN.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def launchd_plist(launch: Launch, log: Path) -> bytes:
    """The launchd agent: started at login and kept alive, its output in `log`.

    No socket activation here: launchd passes sockets only through
    launch_activate_socket(), a C call Python has no binding for, so the server binds
    its own address from the settings.
    """
    job = {
        "Label": LABEL,
        "ProgramArguments": list(launch.argv),
        "EnvironmentVariables": dict(sorted(launch.env.items())),
        "RunAtLoad": True,
        "KeepAlive": True,  # no socket to wake it, so it must stay up to be reachable
        "StandardOutPath": str(log),
        "StandardErrorPath": str(log),
    }
    return plistlib.dumps(job)
