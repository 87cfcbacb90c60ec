"""pull = download → convert → quantize → store; `ensure_model`, the one way to get a GGUF.

Every step writes inside a store staging folder; the model appears under its name only
when all steps finished and the manifest is written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.config import Settings
from edge.errors import InvalidModelError, NotFoundError
from edge.model.convert import Progress, convert
from edge.model.gguf_meta import qwen3_header
from edge.model.quantize import UNQUANTIZED, quant_type, quantize, type_name
from edge.model.store import MODEL_FILE, Entry, Manifest, ModelStore, check_name, model_name

Report = Callable[[str], None]


@dataclass(frozen=True)
class PullResult:
    """The stored model and whether this call created, replaced or found it."""

    entry: Entry
    status: str  # "created" | "updated" | "unchanged"


@dataclass(frozen=True)
class PullOptions:
    """What to pull and how; `quant` None means the settings' default (or, for a GGUF, as is)."""

    source: str
    quant: str | None = None
    revision: str | None = None
    gguf: bool = False
    name: str | None = None
    force: bool = False
    threads: int = 0


def _quiet(_: str) -> None:
    pass


def _looks_like_path(source: str) -> bool:
    # A hub id is `name` or `org/name`; anything else the user typed was meant as a path.
    return (
        source.startswith((".", "/", "~"))
        or source.count("/") > 1
        or source.lower().endswith(".gguf")
    )


def pull(
    opts: PullOptions,
    settings: Settings,
    *,
    report: Report = _quiet,
    progress: Progress | None = None,
) -> PullResult:
    """Get `opts.source` (hub repo, HF folder or GGUF file) into the store as one model."""
    if opts.name is not None:
        check_name(opts.name)  # before anything is downloaded or built
    store = ModelStore(settings.models_dir)
    local = Path(opts.source).expanduser()
    if local.is_file():
        return _import_gguf(local, opts, store, report)
    if local.is_dir():
        return _import_folder(local, opts, settings, store, report, progress)
    if _looks_like_path(opts.source):
        raise NotFoundError(
            f"{opts.source} does not exist.",
            "Give a hub repo id (org/name), a folder or a .gguf file.",
        )
    if opts.gguf:
        return _pull_gguf_repo(opts, settings, store, report)
    return _pull_checkpoint(opts, settings, store, report, progress)


def _pull_checkpoint(
    opts: PullOptions,
    settings: Settings,
    store: ModelStore,
    report: Report,
    progress: Progress | None,
) -> PullResult:
    from edge.model import hub

    q = quant_type(opts.quant or settings.quant)  # fail on a bad type before downloading
    name = check_name(opts.name or model_name(opts.source, q.name))
    report(f"Downloading {opts.source}@{opts.revision or 'main'} from {hub.endpoint()}")
    snap = hub.download_checkpoint(opts.source, opts.revision)
    source = {"kind": "hub", "repo": opts.source, "revision": snap.revision, "commit": snap.commit}
    make = _from_checkpoint(snap.path, q.name, source, opts, report, progress)
    return _produce(store, name, q.name, source, opts, make, report)


def _import_folder(
    folder: Path,
    opts: PullOptions,
    settings: Settings,
    store: ModelStore,
    report: Report,
    progress: Progress | None,
) -> PullResult:
    q = quant_type(opts.quant or settings.quant)
    name = opts.name or model_name(folder.resolve().name, q.name)
    source = {"kind": "folder", "path": str(folder.resolve()), "commit": folder_fingerprint(folder)}
    make = _from_checkpoint(folder, q.name, source, opts, report, progress)
    return _produce(store, name, q.name, source, opts, make, report)


def _from_checkpoint(
    folder: Path,
    quant: str,
    source: dict[str, str],
    opts: PullOptions,
    report: Report,
    progress: Progress | None,
) -> Callable[[Path], None]:
    """The build step for an HF folder: convert (lossless), then quantize unless unquantized."""

    def make(out: Path) -> None:
        title = _display_name(source)
        if quant in UNQUANTIZED:
            report(f"Converting to GGUF ({quant})")
            convert(folder, out, outtype=quant.lower(), name=title, progress=progress)
            return
        report("Converting to GGUF")
        base = convert(folder, out.with_name("base.gguf"), name=title, progress=progress)
        report(f"Quantizing to {quant}")
        quantize(base, out, quant, threads=opts.threads)
        base.unlink()

    return make


def _pull_gguf_repo(
    opts: PullOptions, settings: Settings, store: ModelStore, report: Report
) -> PullResult:
    from edge.model import hub

    q = quant_type(opts.quant or settings.quant)
    name = check_name(opts.name or model_name(opts.source, q.name))
    report(f"Downloading the {q.name} GGUF of {opts.source} from {hub.endpoint()}")
    snap = hub.download_gguf(opts.source, q.name, opts.revision)
    source = {
        "kind": "hub-gguf",
        "repo": opts.source,
        "revision": snap.revision,
        "commit": snap.commit,
    }
    blob = snap.path.resolve()
    return _produce(store, name, q.name, source, opts, _copier(blob), report)


def _import_gguf(path: Path, opts: PullOptions, store: ModelStore, report: Report) -> PullResult:
    have = type_name(qwen3_header(path).metadata.get("general.file_type"))
    want = quant_type(opts.quant).name if opts.quant else have
    stem = path.stem.removesuffix(f"-{have}").removesuffix(f"-{have.lower()}")
    name = opts.name or model_name(stem, want)
    source = {"kind": "gguf", "path": str(path.resolve()), "commit": folder_fingerprint(path)}
    if want == have:
        return _produce(store, name, want, source, opts, _copier(path), report)

    def make(out: Path) -> None:
        report(f"Quantizing {path.name} ({have}) to {want}")
        quantize(path, out, want, threads=opts.threads)

    return _produce(store, name, want, source, opts, make, report)


def _produce(
    store: ModelStore,
    name: str,
    quant: str,
    source: dict[str, str],
    opts: PullOptions,
    make: Callable[[Path], None],
    report: Report = _quiet,
) -> PullResult:
    """Build a model with `make(out_path)` in a staging folder and commit it, unless stored already.

    A stored copy of the same source that turns out damaged is rebuilt, so the pull
    command that the damage error suggests repairs it.
    """
    existing = store.find(name)
    if existing and not opts.force and _same(existing, source, quant):
        try:
            return PullResult(store.ensure_intact(existing), "unchanged")
        except InvalidModelError as exc:
            report(f"{exc.message} Building it again.")
    with store.staging() as tmp:
        make(tmp / MODEL_FILE)
        manifest = Manifest(name=name, quant=quant, sha256="", size=0, source=source)
        entry = store.commit(tmp, manifest, replace=existing is not None)
    return PullResult(entry, "updated" if existing else "created")


def _same(entry: Entry, source: dict[str, str], quant: str) -> bool:
    return entry.manifest.quant == quant and entry.manifest.source.get("commit") == source.get(
        "commit"
    )


def _display_name(source: dict[str, str]) -> str:
    where = source.get("repo") or source.get("path") or "model"
    return where.rstrip("/").rsplit("/", 1)[-1]


def _copier(src: Path) -> Callable[[Path], None]:
    return lambda out: _link_or_copy(src, out)


def _link_or_copy(src: Path, dst: Path) -> None:
    # A hard link costs no space and survives the HF cache being cleaned; copy across disks.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def folder_fingerprint(path: Path) -> str:
    """A cheap identity for a local source: names, sizes and mtimes of its files."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        st = p.stat()
        h.update(
            f"{p.relative_to(path) if path.is_dir() else p.name}"
            f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode()
        )
    return "local-" + h.hexdigest()[:40]


def default_name(settings: Settings) -> str:
    """The store name a plain `edge-qwen pull` creates, and what loads when no model is named."""
    return model_name(settings.repo, quant_type(settings.quant).name)


def has_default_model(settings: Settings) -> bool:
    """Whether the default model is stored (checked before offering to pull it)."""
    return ModelStore(settings.models_dir).find(default_name(settings)) is not None


def ensure_model(spec: str | None, settings: Settings, *, report: Report = _quiet) -> Path:
    """The GGUF to load for `--model`: a store name, a .gguf path, or an HF folder (imported)."""
    store = ModelStore(settings.models_dir)
    if spec is None:
        spec = default_name(settings)
        if store.find(spec) is None:
            raise NotFoundError(
                f"No model pulled yet (looked for '{spec}' in {store.root}).",
                "Run `edge-qwen pull` to download Qwen3-0.6B, or pass --model PATH.gguf.",
            )
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        return pull(PullOptions(str(path)), settings, report=report).entry.path
    if _looks_like_path(spec) or os.sep in spec:
        raise NotFoundError(
            f"{spec} does not exist.", "Check the path, or give a name from `edge-qwen models`."
        )
    # Every load of a stored model goes through here (chat, run, serve, doctor): a damaged
    # file fails with a clear message instead of crashing llama.cpp or generating garbage.
    return store.ensure_intact(store.get(spec)).path
