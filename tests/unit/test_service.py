"""`edge-qwen service`: the files rendered from settings (systemd's pair and launchd's
plist, both on any OS), and install, status and uninstall on files under tmp_path, never
asking a real service manager (--no-start, --no-stop). The server on systemd's socket:
tests/live/test_service_socket.py."""

from __future__ import annotations

import os
import plistlib
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from edge.cli import app
from edge.config import Settings
from edge.errors import EdgeError, UsageError
from edge.server.lifecycle import inherited_socket
from edge.service import install, launch_of, status, uninstall
from edge.service.launchd import Launchd
from edge.service.systemd import Systemd
from edge.service.units import (
    PLIST,
    SERVICE_UNIT,
    SOCKET_UNIT,
    Launch,
    launchd_plist,
    listen_address,
    systemd_units,
)

PYTHON = "/opt/edge qwen/bin/python"  # a space: ExecStart must quote it
needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze (systemd) is not installed"
)


def executable(folder: Path) -> str:
    """A program at a path with a space (quoted in ExecStart=), which systemd-analyze,
    checking that ExecStart= can run, accepts."""
    program = folder / "edge qwen" / "python"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return str(program)


def lines(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def test_the_service_unit_runs_serve_with_the_settings_in_its_environment(tmp_path: Path) -> None:
    home = tmp_path / "a 100% home"  # a space and a systemd specifier
    cfg = Settings(home=home, model="/m/q.gguf", ctx=4096, kv="q8_0", cors_origins=("http://a",))
    units = systemd_units(launch_of(cfg, PYTHON))
    service = units[SERVICE_UNIT]
    assert lines(service, "ExecStart") == [f'"{PYTHON}" -m edge.cli serve']
    assert lines(service, "Environment") == [
        "EDGE_QWEN_CORS_ORIGINS=http://a",
        "EDGE_QWEN_CTX=4096",
        f'"EDGE_QWEN_HOME={str(home).replace("%", "%%")}"',
        "EDGE_QWEN_KV=q8_0",
        "EDGE_QWEN_MODEL=/m/q.gguf",
    ]
    assert lines(service, "Restart") == ["on-failure"]  # exit 0 (idle, SIGTERM) is a stop
    assert lines(units[SOCKET_UNIT], "ListenStream") == ["127.0.0.1:8000"]


def test_what_is_written_reads_back_as_the_same_settings(tmp_path: Path) -> None:
    odd = Settings(home=tmp_path / 'say "hi" \\ $HOME %h', cors_origins=("http://a b",))
    python = executable(tmp_path)
    launch = launch_of(odd, python, pythonpath="/src")
    manager = Systemd(tmp_path / "units")
    install(manager, launch, start=False)
    found = manager.installed()
    assert found == ([python, "-m", "edge.cli", "serve"], launch.env, "127.0.0.1:8000")
    assert Settings.load(environ=found[1]) == odd
    assert found[1]["PYTHONPATH"] == "/src"


def test_lan_listens_on_every_ipv4_interface_and_the_key_stays_out() -> None:
    lan = Settings(lan=True, port=9000)
    text = "".join(systemd_units(launch_of(lan, PYTHON)).values())
    assert lines(text, "ListenStream") == ["0.0.0.0:9000"]
    assert "EDGE_QWEN_LAN=true" in text and "KEY" not in text
    with pytest.raises(UsageError, match="readable by every user") as refused:
        launch_of(Settings(lan=True, api_key="s3cret"), PYTHON)
    assert "s3cret" not in str(refused.value)
    keyed = launch_of(Settings(lan=True, replica_keys=("k1",)), PYTHON)  # route's, not serve's
    assert not any("REPLICA" in name for name in keyed.env)


@pytest.mark.parametrize(
    ("options", "listen"),
    [
        (dict(host="::1"), "[::1]:8000"),
        (dict(host="localhost", port=81), "127.0.0.1:81"),
        (dict(host="0.0.0.0", no_auth=True), "0.0.0.0:8000"),
        (dict(host="192.168.1.5", lan=True), "192.168.1.5:8000"),
    ],
)
def test_the_socket_listens_where_serve_would_bind(options: dict, listen: str) -> None:
    assert listen_address(Settings(**options)) == listen


@pytest.mark.parametrize(
    ("options", "why"),
    [
        (dict(port=0), "fixed port"),
        (dict(host="box.lan"), "not one"),  # ListenStream= takes an IP address
        (dict(host="0.0.0.0"), "API key is required"),  # serve would refuse at every start
    ],
)
def test_what_the_service_could_not_run_with_is_refused(options: dict, why: str) -> None:
    with pytest.raises(UsageError, match=why):
        listen_address(Settings(**options))


def test_the_plist_runs_the_same_command_at_login_and_keeps_it_alive(tmp_path: Path) -> None:
    launch = launch_of(Settings(home=tmp_path / "home", lan=True), PYTHON)
    log = tmp_path / "home" / "logs" / "serve.log"
    job = plistlib.loads(launchd_plist(launch, log))
    assert job["Label"] == "dev.edge-qwen.serve"
    assert job["ProgramArguments"] == [PYTHON, "-m", "edge.cli", "serve"]
    assert job["EnvironmentVariables"] == launch.env
    assert job["EnvironmentVariables"]["EDGE_QWEN_LAN"] == "true"
    assert job["RunAtLoad"] is True and job["KeepAlive"] is True
    assert job["StandardOutPath"] == job["StandardErrorPath"] == str(log)
    agent = Launchd(tmp_path / "agents", log, uid=501)
    assert install(agent, launch, start=False).files == [tmp_path / "agents" / PLIST]
    assert log.parent.is_dir()  # launchd would not start a job whose log it cannot open
    assert agent.installed() == (list(launch.argv), launch.env, "(bound by the server itself)")
    (tmp_path / "broken.plist").write_bytes(plistlib.dumps({"Label": "dev.edge-qwen.serve"}))
    verdict = agent.verify([tmp_path / "broken.plist"])
    assert verdict is not None and not verdict.ok and "ProgramArguments" in verdict.output


@needs_analyze
def test_systemd_analyze_accepts_the_written_units(tmp_path: Path) -> None:
    launch = launch_of(Settings(home=tmp_path, lan=True), executable(tmp_path))
    manager = Systemd(tmp_path / "units")
    outcome = install(manager, launch, start=False)
    verdict = manager.verify(outcome.files)
    assert verdict is not None and verdict.ok and verdict.output == "", verdict


@needs_analyze
def test_units_that_systemd_would_refuse_are_not_written(tmp_path: Path) -> None:
    manager = Systemd(tmp_path / "units")
    launch = launch_of(Settings(home=tmp_path), str(tmp_path / "no-such-python"))
    with pytest.raises(EdgeError, match="did not pass") as failed:
        install(manager, launch, start=False)
    assert "no-such-python" in failed.value.message
    assert not (tmp_path / "units").exists()


def test_uninstall_of_nothing_is_no_error_and_removes_the_enable_links(tmp_path: Path) -> None:
    manager = Systemd(tmp_path / "units")
    assert uninstall(manager, stop=False).files == [] and status(manager) is None
    install(manager, Launch((executable(tmp_path),), {}, "127.0.0.1:1"), start=False)
    wants = tmp_path / "units" / "sockets.target.wants"
    wants.mkdir()
    (wants / SOCKET_UNIT).symlink_to(tmp_path / "units" / SOCKET_UNIT)
    outcome = uninstall(manager, stop=False)
    assert sorted(p.name for p in outcome.files) == [SERVICE_UNIT, SOCKET_UNIT, SOCKET_UNIT]
    assert list((tmp_path / "units").rglob("*")) == [wants]
    assert outcome.todo[0] == f"systemctl --user stop {SERVICE_UNIT} {SOCKET_UNIT}"


def test_systemd_passes_a_socket_only_to_the_pid_it_names() -> None:
    for pid, fds in ((str(os.getpid() + 1), "1"), (str(os.getpid()), "0"), ("", "")):
        environ = {"LISTEN_PID": pid, "LISTEN_FDS": fds, "LISTEN_FDNAMES": "x", "PATH": "/bin"}
        assert inherited_socket(environ) is None
        assert environ == {"PATH": "/bin"}  # gone either way: no child inherits them


# --- the commands, in process, on files under tmp_path ------------------------------------


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME, XDG_CONFIG_HOME and EDGE_QWEN_HOME under tmp_path, no other EDGE_QWEN_*."""
    for name in [n for n in os.environ if n.startswith("EDGE_QWEN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("EDGE_QWEN_HOME", str(tmp_path / "edge"))
    (tmp_path / "m.gguf").write_bytes(b"")  # a .gguf path is taken as it is: enough here
    return tmp_path


def edge_qwen(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_dry_run_prints_both_managers_files_and_writes_nothing(user_home: Path) -> None:
    model = str(user_home / "m.gguf")
    before = sorted(user_home.rglob("*"))
    for manager in ("systemd", "launchd"):
        shown = edge_qwen(
            "service", "install", "-m", model, "--lan", "--dry-run", "--manager", manager
        )
        assert shown.exit_code == 0, shown.output
        assert (
            f"EDGE_QWEN_MODEL={model}" in shown.stdout
            or f"<string>{model}</string>" in shown.stdout
        )
    assert (
        "ListenStream=0.0.0.0:8000" in edge_qwen("service", "install", "--lan", "--dry-run").stdout
    )
    assert sorted(user_home.rglob("*")) == before  # not even the --lan key


def test_install_status_uninstall(user_home: Path) -> None:
    model = str(user_home / "m.gguf")
    done = edge_qwen("service", "install", "-m", model, "--lan", "--ctx", "4096", "--no-start")
    assert done.exit_code == 0, done.output
    units = user_home / "config" / "systemd" / "user"
    assert f"wrote {units / SOCKET_UNIT}" in done.stdout
    assert "systemctl --user enable --now edge-qwen.socket" in done.stdout  # what to run
    key_file = user_home / "edge" / "api_key"
    assert (key_file.stat().st_mode & 0o777) == 0o600 and f"cat {key_file}" in done.stdout
    key = key_file.read_text().strip()
    assert key not in (units / SERVICE_UNIT).read_text()
    # Someone wrote a key into the unit by hand: status shows that one is set, not what.
    with (units / SERVICE_UNIT).open("a") as unit:
        unit.write("[Service]\nEnvironment=EDGE_QWEN_API_KEY=hand-made\n")
    shown = edge_qwen("service", "status")
    assert shown.exit_code == 0, shown.output
    for expected in ("EDGE_QWEN_CTX=4096", "EDGE_QWEN_API_KEY=(set)", "listens on: 0.0.0.0:8000"):
        assert expected in shown.stdout
    assert "hand-made" not in shown.stdout and key not in shown.stdout
    assert "journalctl --user -u edge-qwen.service -f" in shown.stdout
    gone = edge_qwen("service", "uninstall", "--no-stop")
    assert gone.exit_code == 0 and f"removed {units / SERVICE_UNIT}" in gone.stdout
    assert not list(units.iterdir()) and key_file.exists()  # the key is the server's
    again = edge_qwen("service", "uninstall", "--no-stop")
    assert again.exit_code == 0 and "nothing to remove" in again.stdout


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (["--ctx", "10"], {}, "Invalid --ctx"),
        ([], {"EDGE_QWEN_KV": "q4"}, "Invalid EDGE_QWEN_KV"),
        (["--api-key", "s3cret"], {}, "readable by every user"),
        ([], {"EDGE_QWEN_API_KEY": "s3cret"}, "readable by every user"),
        (["--host", "0.0.0.0"], {}, "API key is required"),
        (["-m", "/no/such.gguf"], {}, "does not exist"),
        (["--manager", "upstart"], {}, "Unknown --manager"),
    ],
)
def test_bad_settings_fail_at_install_not_at_boot(
    user_home: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict, said: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    model = ["-m", str(user_home / "m.gguf")] if "-m" not in args else []
    failed = edge_qwen("service", "install", *model, *args, "--no-start")
    assert failed.exit_code in (1, 2) and said in failed.stderr, failed.output
    assert "s3cret" not in failed.output
    assert not (user_home / "config").exists()
