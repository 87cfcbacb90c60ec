"""Faults in the pull pipeline: kill -9 at each stage, a disk that fills up, a damaged model.

Each test drives the real `edge-qwen` process (huggingface-hub against the local hub
stand-in, the real converter, llama.cpp's quantizer and loader) and then checks the
promise of the store: it lists only whole, verified models, leftovers of dead processes
are swept, and the next run succeeds.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge import fileio
from edge.config import Settings
from edge.errors import DiskFullError, InvalidModelError, NotFoundError
from edge.model import store as store_module
from edge.model.pipeline import ensure_model
from edge.model.quantize import quantize
from edge.model.store import MANIFEST, MODEL_FILE, STAMP, Manifest, ModelStore
from tests.support.cli import assert_clean_failure, run_cli
from tests.support.hubstandin import HubStandIn
from tests.support.pull import partial_size
from tests.support.repo import REPO_ROOT
from tests.support.slow import slow_fixture

REPO = "Qwen/Qwen3-0.6B"
NAME = "qwen3-0.6b-q8_0"
WAIT_LIMIT = 90.0  # seconds any one wait for a pipeline stage may take
POLL = 0.005
RACY = 0.15  # seconds: past the store's "changed too recently to trust" window


@pytest.fixture
def hub(tmp_path: Path, scripted_dir: Path) -> Iterator[HubStandIn]:
    root = tmp_path / "hub"
    shutil.copytree(scripted_dir, root / REPO, copy_function=os.link)
    with HubStandIn(root) as server:
        yield server


@pytest.fixture
def env(cli_env: dict[str, str], hub: HubStandIn) -> dict[str, str]:
    return {**cli_env, "HF_ENDPOINT": hub.url}


def models_dir(env: dict[str, str]) -> Path:
    return Path(env["EDGE_QWEN_HOME"]) / "models"


def verified_models(env: dict[str, str]) -> list[str]:
    """`edge-qwen models --verify --json`: re-hashes every model; its names."""
    proc = run_cli(["models", "--verify", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    return [row["name"] for row in json.loads(proc.stdout)]


def leftovers(env: dict[str, str]) -> list[str]:
    """Hidden folders and temporary files anywhere in the store (the lock file aside)."""
    root = models_dir(env)
    if not root.is_dir():
        return []
    hidden = [p for p in root.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    partial = [p for p in root.rglob("*.partial")]
    return sorted(str(p.relative_to(root)) for p in {*hidden, *partial})


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `edge-qwen ARGS`; its output goes to a file, so a full pipe never stalls it."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edge.cli", *args],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def kill_when(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, log: Path
) -> None:
    """SIGKILL `proc` as soon as `ready()`; fail if it ends first or WAIT_LIMIT passes."""
    deadline = time.monotonic() + WAIT_LIMIT
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(
                f"edge-qwen ended (rc {proc.returncode}) before {what}:\n{log.read_text()}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(timeout=30)
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()}")
        time.sleep(POLL)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def limited(limit: int) -> Callable[[], None]:
    """preexec_fn: a file-size limit, so writes past it fail with EFBIG as on a full disk.

    Python ignores SIGXFSZ, so the write returns the error instead of killing the process.
    """

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def run_limited(
    args: list[str], env: dict[str, str], limit: int
) -> subprocess.CompletedProcess[str]:
    return run_cli(args, env, 300, preexec_fn=limited(limit))


def staged(env: dict[str, str], pattern: str) -> list[Path]:
    return list(models_dir(env).glob(f".staging-*/{pattern}"))


# What each stage leaves on disk while it runs: the killer waits for it.
STAGES: dict[str, Callable[[dict[str, str]], bool]] = {
    "download": lambda env: partial_size(env) >= 4 * 2**20,
    "convert": lambda env: bool(staged(env, ".base.gguf.*.partial")),
    "quantize": lambda env: bool(staged(env, ".model.gguf.*.partial")),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_kill_9_mid_stage_leaves_no_half_model_and_the_rerun_succeeds(
    stage: str, env: dict[str, str], hub: HubStandIn, tmp_path: Path
) -> None:
    if stage == "download":
        hub.rate = 8 * 2**20  # the 159 MB weights take ~20 s: time to kill mid-transfer
    log = tmp_path / "pull.log"
    proc = start(["pull", REPO, "--threads", "1"], env, log)
    kill_when(proc, lambda: STAGES[stage](env), f"the {stage} stage", log)

    # It really died inside that stage: the stage's output is half-written, nothing later exists.
    if stage == "download":
        partial = partial_size(env)
        assert 0 < partial < (hub.root / REPO / "model.safetensors").stat().st_size
        assert leftovers(env) == []  # the store is not touched before the download ends
    elif stage == "convert":
        assert staged(env, ".base.gguf.*.partial") and not staged(env, "base.gguf")
        assert not staged(env, MODEL_FILE)
    else:
        assert staged(env, "base.gguf") and staged(env, ".model.gguf.*.partial")
        assert not staged(env, MODEL_FILE)
        assert leftovers(env)  # the dead process's staging folder is still there...
    assert verified_models(env) == []  # ...but never listed as a model

    hub.rate = None
    hub.clear_requests()
    again = run_cli(["pull", REPO], env)
    assert again.returncode == 0, again.stderr
    assert f"Stored {NAME}" in again.stderr
    assert leftovers(env) == []  # the dead process's staging folder was swept
    assert verified_models(env) == [NAME]
    gets = [r.range for r in hub.requests if r.method == "GET" and r.path.endswith(".safetensors")]
    if stage == "download":  # resumed from the partial file, not from byte 0
        assert gets and gets[-1] and int(gets[-1].removeprefix("bytes=").split("-")[0]) >= partial
        assert partial_size(env) == 0
    else:
        assert gets == []  # the download was complete and is not fetched again


def test_kill_9_during_convert_command_leaves_a_partial_that_the_next_run_removes(
    cli_env: dict[str, str], scripted_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "model-f32.gguf"
    out.parent.mkdir()
    log = tmp_path / "convert.log"
    proc = start(["convert", str(scripted_dir), "-o", str(out), "--outtype", "f32"], cli_env, log)
    partials = lambda: list(out.parent.glob(".model-f32.gguf.*.partial"))  # noqa: E731
    kill_when(proc, lambda: bool(partials()), "the converter's temporary file", log)
    assert partials() and not out.exists()  # killed mid-write: only the temporary file

    again = run_cli(["convert", str(scripted_dir), "-o", str(out), "--outtype", "f32"], cli_env)
    assert again.returncode == 0, again.stderr
    assert out.is_file() and partials() == []  # the dead process's temporary file was removed


def test_a_disk_that_fills_up_at_each_stage(
    env: dict[str, str], hub: HubStandIn, gguf_of: Callable[[str, str], Path], tmp_path: Path
) -> None:
    # Download: the 159 MB weights cannot be written under a 20 MiB file-size limit.
    proc = run_limited(["pull", REPO], env, 20 * 2**20)
    assert_clean_failure(proc, 1, "Ran out of disk space downloading", "it resumes")
    assert verified_models(env) == [] and leftovers(env) == []
    partial = partial_size(env)
    assert 0 < partial <= 20 * 2**20
    hub.clear_requests()
    assert run_cli(["pull", REPO], env).returncode == 0  # no limit: resumes and finishes
    first = [r.range for r in hub.requests if r.method == "GET" and r.path.endswith(".safetensors")]
    assert first and first[0] == f"bytes={partial}-"

    # Convert: the BF16 intermediate (~159 MB) does not fit under 64 MiB.
    proc = run_limited(["pull", REPO, "--quant", "Q4_0"], env, 64 * 2**20)
    assert_clean_failure(proc, 1, "Ran out of disk space writing", "nothing was kept")
    assert verified_models(env) == [NAME] and leftovers(env) == []

    # Quantize: an F32 GGUF (~310 MB, read only) into Q4_0 (~45 MB) under 16 MiB; llama.cpp
    # reports the failed write only as an iostream error, which must still read as disk full.
    f32 = tmp_path / "Qwen3-scripted-F32.gguf"
    os.link(gguf_of("scripted", "F32"), f32)
    proc = run_limited(["pull", str(f32), "--quant", "Q4_0"], env, 16 * 2**20)
    assert_clean_failure(proc, 1, "Ran out of disk space writing", "nothing was kept")
    assert "Quantizing" in proc.stderr and "iostream" not in proc.stderr
    assert verified_models(env) == [NAME] and leftovers(env) == []

    # The same commands without the limit succeed.
    assert run_cli(["pull", REPO, "--quant", "Q4_0"], env).returncode == 0
    assert run_cli(["pull", str(f32), "--quant", "Q4_0"], env).returncode == 0
    assert verified_models(env) == ["qwen3-0.6b-q4_0", NAME, "qwen3-scripted-q4_0"]
    assert leftovers(env) == []


def _edge_qwen(hint_command: str) -> list[str]:
    """The `edge-qwen …` command a hint suggests, as argv for this interpreter."""
    argv = shlex.split(hint_command)
    assert argv[0] == "edge-qwen", hint_command
    return argv[1:]


def test_a_damaged_model_is_refused_at_load_and_repaired_by_the_suggested_pull(
    cli_env: dict[str, str], scripted_dir: Path
) -> None:
    assert run_cli(["pull", str(scripted_dir)], cli_env).returncode == 0
    name = "qwen3-scripted-q8_0"
    gguf = models_dir(cli_env) / name / MODEL_FILE
    ok = run_cli(["run", "Hi", "-m", name, "--no-think"], cli_env)
    assert ok.returncode == 0 and ok.stdout == "Hello world\n", ok.stderr

    # Flip bytes in the tensor data, keep the size and put the mtime back: only the
    # checksum can tell, and a silently wrong model must not be served.
    st = gguf.stat()
    with gguf.open("r+b") as f:
        f.seek(st.st_size // 2)
        block = f.read(4096)
        f.seek(st.st_size // 2)
        f.write(bytes(b ^ 0xFF for b in block))
    os.utime(gguf, ns=(st.st_atime_ns, st.st_mtime_ns))

    bad = run_cli(["run", "Hi", "-m", name, "--no-think"], cli_env)
    assert_clean_failure(bad, 1, f"Model '{name}' is damaged", "sha256", "edge-qwen pull")
    assert bad.stdout == ""  # nothing generated from the damaged file
    assert_clean_failure(run_cli(["models", "--verify"], cli_env), 1, "is damaged")

    hint = next(line for line in bad.stderr.splitlines() if line.startswith("hint: "))
    repull = hint.split("`")[1]  # "Pull it again with `edge-qwen pull …`"
    fixed = run_cli(_edge_qwen(repull), cli_env)
    assert fixed.returncode == 0, fixed.stderr
    assert "is damaged" in fixed.stderr and f"Updated {name}" in fixed.stderr
    again = run_cli(["run", "Hi", "-m", name, "--no-think"], cli_env)
    assert again.returncode == 0 and again.stdout == "Hello world\n", again.stderr
    assert verified_models(cli_env) == [name] and leftovers(cli_env) == []


@slow_fixture
def stored_copy(tmp_path: Path, gguf_of: Callable[[str, str], Path]) -> tuple[Settings, Path]:
    """A store holding a real Q8_0 GGUF under `m-q8_0`, committed as a pull commits."""
    settings = Settings(home=tmp_path / "home")
    store = ModelStore(settings.models_dir)
    with store.staging() as tmp:
        shutil.copyfile(gguf_of("scripted", "Q8_0"), tmp / MODEL_FILE)
        time.sleep(RACY)  # a pull's own convert/quantize take longer than this
        entry = store.commit(tmp, Manifest("m-q8_0", "Q8_0", "", 0, {"kind": "test"}))
    return settings, entry.path


def test_loads_hash_only_when_the_file_changed(
    stored_copy: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, gguf = stored_copy
    hashed: list[Path] = []
    real_sha256 = store_module.sha256_file

    def counting(path: Path, chunk: int = 8 * 2**20) -> str:
        hashed.append(path)
        return real_sha256(path, chunk)

    monkeypatch.setattr(store_module, "sha256_file", counting)
    assert ensure_model("m-q8_0", settings) == gguf
    assert ensure_model("m-q8_0", settings) == gguf
    assert hashed == []  # verified at commit; an unchanged file is not read again

    os.utime(gguf, ns=(time.time_ns(), time.time_ns()))  # touched, not changed
    time.sleep(RACY)
    assert ensure_model("m-q8_0", settings) == gguf
    assert ensure_model("m-q8_0", settings) == gguf
    assert hashed == [gguf]  # one full check, then trusted again

    time.sleep(RACY)  # a change right after a check is seen however coarse the clock
    st = gguf.stat()
    with gguf.open("r+b") as f:
        f.seek(st.st_size - 1)
        last = f.read(1)
        f.seek(st.st_size - 1)
        f.write(bytes([last[0] ^ 1]))
    os.utime(gguf, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime; ctime moved
    with pytest.raises(InvalidModelError, match="sha256"):
        ensure_model("m-q8_0", settings)


def test_a_truncated_model_is_caught_from_its_size_alone(
    stored_copy: tuple[Settings, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, gguf = stored_copy
    (gguf.parent / STAMP).unlink()  # even with no record of a verification

    def no_hashing(path: Path, chunk: int = 0) -> str:
        raise AssertionError("a size mismatch needs no hashing")

    monkeypatch.setattr(store_module, "sha256_file", no_hashing)
    size = gguf.stat().st_size
    os.truncate(gguf, size // 3)
    with pytest.raises(InvalidModelError) as err:
        ensure_model("m-q8_0", settings)
    assert f"is {size // 3} bytes, its manifest says {size}" in err.value.message
    assert err.value.hint and "edge-qwen rm m-q8_0" in err.value.hint
    gguf.unlink()
    with pytest.raises(InvalidModelError, match="missing"):
        ensure_model("m-q8_0", settings)


BAD_NAMES = ["../x", "../../etc/passwd", "/etc/passwd", "a/b", "..", "m\n", "x\0y", "Upper"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_rm_rejects_names_that_are_not_store_names(bad: str, cli_env: dict[str, str]) -> None:
    home = Path(cli_env["EDGE_QWEN_HOME"])
    (home / "models").mkdir(parents=True)
    (home / "x").mkdir()
    (home / "x" / MANIFEST).write_text("{}")  # what `rm ../x` would reach
    if "\0" in bad:  # no process argument can hold a NUL: the store API must refuse it
        with pytest.raises(Exception, match="not a valid model name"):
            ModelStore(home / "models").remove(bad)
    else:
        assert_clean_failure(run_cli(["rm", bad], cli_env), 2, "not a valid model name")
    assert (home / "x" / MANIFEST).is_file()
    assert sorted(p.name for p in home.iterdir()) == ["models", "x"]


def test_pull_checks_the_name_before_downloading(env: dict[str, str], hub: HubStandIn) -> None:
    hub.clear_requests()
    proc = run_cli(["pull", REPO, "--name", "../escaped"], env)
    assert_clean_failure(proc, 2, "'../escaped' is not a valid model name")
    assert [r for r in hub.requests if r.path.endswith(".safetensors")] == []
    home = Path(env["EDGE_QWEN_HOME"])
    assert not (home / "escaped").exists() and not (home.parent / "escaped").exists()


def test_a_manifest_cannot_point_outside_its_folder(stored_copy: tuple[Settings, Path]) -> None:
    settings, gguf = stored_copy
    outside = settings.home / "outside.gguf"
    shutil.copyfile(gguf, outside)
    manifest = json.loads((gguf.parent / MANIFEST).read_text())
    (gguf.parent / MANIFEST).write_text(json.dumps({**manifest, "file": "../../outside.gguf"}))
    with pytest.raises(NotFoundError, match="No model named 'm-q8_0'"):
        ensure_model("m-q8_0", settings)
    assert ModelStore(settings.models_dir).entries() == []


@pytest.mark.parametrize("spec", ["Upper", "m\n", "name with spaces"])
def test_model_option_rejects_bad_store_names(spec: str, cli_env: dict[str, str]) -> None:
    assert_clean_failure(run_cli(["run", "Hi", "-m", spec], cli_env), 2, "not a valid model name")


def test_quantize_space_check_counts_the_input_precision(
    gguf_of: Callable[[str, str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F32 → Q8_0 writes ~86 MiB; 200 MiB free is plenty (it asked for 228 MiB, as if BF16)."""
    src = gguf_of("scripted", "F32")
    real_usage = fileio.shutil.disk_usage

    def usage(path: object) -> object:
        return real_usage(path)._replace(free=200 * 2**20)  # type: ignore[arg-type]

    monkeypatch.setattr(fileio.shutil, "disk_usage", usage)
    out = quantize(src, tmp_path / "q8.gguf", "Q8_0")
    assert 80 * 2**20 < out.stat().st_size < 100 * 2**20
    with pytest.raises(DiskFullError, match="MiB needed, 200 MiB free"):
        quantize(src, tmp_path / "f16.gguf", "F16")  # ~155 MiB + margin: refused up front
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q8.gguf"]


def test_a_replace_killed_between_its_renames_keeps_the_old_model(
    stored_copy: tuple[Settings, Path],
) -> None:
    """`commit(replace=True)` moves the old model to trash, then the new one into place.

    A kill -9 between the two renames cannot be timed from outside, so the state it
    leaves is made by hand: the dead process's trash and staging folders, no model.
    """
    settings, gguf = stored_copy
    root = settings.models_dir
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)  # that process has exited
    os.replace(gguf.parent, root / f".trash-m-q8_0-{pid}")
    (root / f".staging-{pid}-1").mkdir()
    (root / f".trash-gone-{pid}").mkdir()  # an `rm` killed while deleting: nothing to restore
    (root / f".trash-gone-{pid}" / MANIFEST).write_text(
        (root / f".trash-m-q8_0-{pid}" / MANIFEST).read_text()
    )
    store = ModelStore(root)
    assert store.entries() == []
    store.sweep()
    assert sorted(p.name for p in root.iterdir()) == [".lock", "m-q8_0"]
    assert ensure_model("m-q8_0", settings) == gguf
