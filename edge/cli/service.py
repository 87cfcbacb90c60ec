"""`edge-qwen service install|uninstall|status`: `serve`, started by the system."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from edge.cli.app import (
    CtxOpt,
    FlashOpt,
    GpuOpt,
    KvOpt,
    ModelOpt,
    ThreadsOpt,
    app,
    guarded,
    say,
    settings,
)
from edge.cli.serve import (
    AdvertiseOpt,
    CacheDiskOpt,
    CacheRamOpt,
    CorsOpt,
    HostOpt,
    IdleOpt,
    KeyOpt,
    LanOpt,
    NoAuthOpt,
    ParallelOpt,
    PortOpt,
    QueueOpt,
    ReasoningOpt,
    SuperviseOpt,
    serve_settings,
)

if TYPE_CHECKING:
    from pathlib import Path

    from edge.config import Settings
    from edge.service import Launch, Manager, Outcome, Status

service_app = typer.Typer(
    name="service",
    help="Start `edge-qwen serve` with the system: systemd (Linux) or launchd (macOS).",
    no_args_is_help=True,
)
app.add_typer(service_app)

ManagerOpt = Annotated[
    str | None,
    typer.Option("--manager", help="systemd or launchd (default: this system's)"),
]
NoStartOpt = Annotated[bool, typer.Option("--no-start", help="Only write the files; start nothing")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the files that would be written; write nothing")
]
NoStopOpt = Annotated[bool, typer.Option("--no-stop", help="Only remove the files; stop nothing")]


@service_app.command("install")
@guarded
def install(
    model: ModelOpt = None,
    host: HostOpt = None,
    port: PortOpt = None,
    lan: LanOpt = None,
    api_key: KeyOpt = None,
    no_auth: NoAuthOpt = None,
    advertise: AdvertiseOpt = None,
    max_queue: QueueOpt = None,
    parallel: ParallelOpt = None,
    cache_ram: CacheRamOpt = None,
    cache_disk: CacheDiskOpt = None,
    cors_origin: CorsOpt = None,
    reasoning_format: ReasoningOpt = None,
    idle: IdleOpt = None,
    supervise: SuperviseOpt = None,
    ctx: CtxOpt = None,
    threads: ThreadsOpt = None,
    kv: KvOpt = None,
    flash_attn: FlashOpt = None,
    gpu_layers: GpuOpt = None,
    manager: ManagerOpt = None,
    no_start: NoStartOpt = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Install `edge-qwen serve`, with serve's options, as a service, and start it.

    Linux: systemd user units in ~/.config/systemd/user. systemd listens on the address
    and starts the server on the first connection. macOS: a launchd agent in
    ~/Library/LaunchAgents, started at login. The options go into the unit as EDGE_QWEN_*
    variables; an API key never does: --lan uses the key stored (mode 0600) under the
    edge-qwen home.
    """
    from edge.service import install as install_files
    from edge.service import launch_of, this_python

    cfg = serve_settings(
        model=model,
        host=host,
        port=port,
        lan=lan,
        api_key=api_key,
        no_auth=no_auth,
        advertise=advertise,
        max_queue=max_queue,
        parallel=parallel,
        cache_ram=cache_ram,
        cache_disk=cache_disk,
        reasoning_format=reasoning_format,
        idle=idle,
        supervise=supervise,
        cors_origin=cors_origin,
        ctx=ctx,
        threads=threads,
        kv=kv,
        flash_attn=flash_attn,
        gpu_layers=gpu_layers,
    )
    cfg = _pinned(cfg, check_model=not dry_run)
    launch = launch_of(cfg, *this_python())
    chosen = _manager(manager, cfg)
    if dry_run:
        for path, data in chosen.files(launch).items():
            typer.echo(f"# {path}\n{data.decode()}")
        say("--dry-run: nothing was written")
        return
    key_file = _lan_key(cfg)
    outcome = install_files(chosen, launch, start=not no_start)
    _report_install(outcome, chosen, launch)
    if key_file is not None:
        typer.echo(f"API key: clients need the one in {key_file} (read it: cat {key_file})")


@service_app.command("uninstall")
@guarded
def uninstall(manager: ManagerOpt = None, no_stop: NoStopOpt = False) -> None:
    """Stop the service and remove its files. Nothing installed is not an error.

    The model store and the stored API key stay.
    """
    from edge.service import uninstall as remove

    chosen = _manager(manager, settings())
    outcome = remove(chosen, stop=not no_stop)
    if not outcome.files:
        typer.echo(f"No edge-qwen service is installed ({chosen.name}); nothing to remove.")
        return
    for path in outcome.files:
        typer.echo(f"removed {path}")
    if not outcome.told:
        _todo(outcome, f"Not stopped ({outcome.why_not}). If it still runs, run:")


@service_app.command("status")
@guarded
def status(manager: ManagerOpt = None) -> None:
    """What is installed where, with which settings, whether it runs, and its logs."""
    from edge.service import status as describe

    cfg = settings()
    chosen = _manager(manager, cfg)
    found = describe(chosen)
    if found is None:
        typer.echo(f"No edge-qwen service is installed ({chosen.name}).")
        typer.echo("Install one: edge-qwen service install [serve options]")
        return
    _report_status(found)


def _pinned(cfg: Settings, *, check_model: bool) -> Settings:
    """Paths made absolute (the service starts in another folder), and the model checked
    now rather than at every start: a missing one fails here, an HF folder is imported
    here, once. A service never pulls: with no model pulled, this says so."""
    from pathlib import Path

    from edge.model.pipeline import ensure_model

    model = cfg.model
    if model and Path(model).expanduser().exists():
        model = str(Path(model).expanduser().absolute())
    cfg = cfg.model_copy(update={"home": cfg.home.expanduser().absolute(), "model": model})
    if check_model:
        ensure_model(cfg.model, cfg, report=say)
    return cfg


def _manager(kind: str | None, cfg: Settings) -> Manager:
    import os
    import sys
    from pathlib import Path

    from edge.errors import UsageError
    from edge.service import default_kind, manager_for

    if kind not in (None, "systemd", "launchd"):
        raise UsageError(f"Unknown --manager {kind}.", "Choose one of: systemd, launchd.")
    chosen = kind or default_kind(sys.platform)
    return manager_for(chosen, cfg.home, Path.home(), os.environ)  # type: ignore[arg-type]


def _lan_key(cfg: Settings) -> Path | None:
    """With --lan, the key the service will require, made now if there is none yet (and
    shown that once, as `serve --lan` does); the file's path, or None without a key."""
    from edge.server.lan import server_key
    from edge.service.units import bind_host

    key = server_key(bind_host(cfg), None, lan=cfg.lan, no_auth=cfg.no_auth, home=cfg.home, say=say)
    return None if key is None else cfg.home / "api_key"


def _report_install(outcome: Outcome, chosen: Manager, launch: Launch) -> None:
    from edge.server.lan import addresses

    for path in outcome.files:
        typer.echo(f"wrote {path}")
    host, _, port = launch.listen.rpartition(":")
    urls = ", ".join(f"http://{a}:{port}/v1" for a in addresses(host.strip("[]")))
    if outcome.told:
        typer.echo(f"started: {urls}")
        typer.echo(f"logs: {chosen.logs()}")
        if "systemd" in chosen.name:
            typer.echo(
                "It runs while you are logged in; to keep it up after you log out "
                "(a home server): loginctl enable-linger $USER"
            )
    else:
        _todo(outcome, f"Not started ({outcome.why_not}). To serve {urls}, run:")


def _todo(outcome: Outcome, headline: str) -> None:
    typer.echo(headline)
    for command in outcome.todo:
        typer.echo(f"  {command}")


def _report_status(found: Status) -> None:
    import shlex

    typer.echo(f"installed: {found.manager}")
    for path in found.files:
        typer.echo(f"  {path}")
    typer.echo(f"listens on: {found.listen}")
    typer.echo(f"runs: {shlex.join(found.argv)}")
    typer.echo("settings:")
    for name, value in sorted(found.env.items()):
        secret = any(word in name for word in ("KEY", "TOKEN", "SECRET", "PASSWORD"))
        typer.echo(f"  {name}={'(set)' if secret else value}")
    home = found.env.get("EDGE_QWEN_HOME")
    if found.env.get("EDGE_QWEN_LAN") == "true" and home:
        typer.echo(f"API key: the one in {home}/api_key (read it: cat {home}/api_key)")
    typer.echo(f"state: {found.state}")
    typer.echo(f"logs: {found.logs}")
