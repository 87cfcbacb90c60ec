"""`edge-qwen pull` end to end against a local stand-in of the hub (HF_ENDPOINT on 127.0.0.1).

The real huggingface-hub client, the real converter and llama.cpp's quantizer run in a
separate process exactly as a user starts them; only the hub's address is local.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cli import EDGE_QWEN, assert_clean_failure, run_cli, start
from tests.support.hubstandin import HubStandIn
from tests.support.pull import REPO, link_tree, partial_size, stored, weight_gets
from tests.support.repo import REPO_ROOT

SCRIPT_PROMPT = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
WAIT_LIMIT = 90.0


@pytest.fixture
def hub_root(tmp_path: Path, scripted_dir: Path) -> Path:
    root = tmp_path / "hub"
    link_tree(scripted_dir, root / REPO)
    return root


@pytest.fixture
def hub(hub_root: Path) -> Iterator[HubStandIn]:
    with HubStandIn(hub_root) as server:
        yield server


@pytest.fixture
def env(cli_env: dict[str, str], hub: HubStandIn) -> dict[str, str]:
    return {**cli_env, "HF_ENDPOINT": hub.url}


def store_leftovers(env: dict[str, str]) -> list[str]:
    models = Path(env["EDGE_QWEN_HOME"]) / "models"
    return (
        sorted(p.name for p in models.iterdir() if p.name.startswith(".") and p.name != ".lock")
        if models.is_dir()
        else []
    )


def test_pull_downloads_converts_quantizes_and_stores(
    env: dict[str, str], hub: HubStandIn, greedy
) -> None:  # type: ignore[no-untyped-def]
    proc = run_cli(["pull", REPO], env)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip())
    assert path.name == "model.gguf" and path.parent.name == "qwen3-0.6b-q8_0"
    assert "Stored qwen3-0.6b-q8_0 (Q8_0" in proc.stderr
    [entry] = stored(env)
    with urllib.request.urlopen(f"{hub.url}/api/models/{REPO}/revision/main", timeout=30) as resp:
        sha = json.load(resp)["sha"]
    assert entry["source"] == {"kind": "hub", "repo": REPO, "revision": "main", "commit": sha}
    assert entry["quant"] == "Q8_0" and entry["size"] == path.stat().st_size
    # The whole pipeline preserved the scripted model's behaviour.
    assert greedy(path, SCRIPT_PROMPT) == "<think>Let me think</think>\n\nHello world<|im_end|>"

    hub.clear_requests()
    again = run_cli(["pull", REPO], env)
    assert again.returncode == 0, again.stderr
    assert "Already up to date: qwen3-0.6b-q8_0" in again.stderr
    assert weight_gets(hub) == []  # nothing large fetched twice
    assert store_leftovers(env) == []


def test_pull_by_revision_and_quant(
    env: dict[str, str], hub_root: Path, scripted_dir: Path
) -> None:
    link_tree(scripted_dir, hub_root / f"{REPO}@v1.0")
    proc = run_cli(["pull", REPO, "--revision", "v1.0", "--quant", "q4_k_m"], env)
    assert proc.returncode == 0, proc.stderr
    [entry] = stored(env)
    assert entry["name"] == "qwen3-0.6b-q4_k_m" and entry["quant"] == "Q4_K_M"
    assert entry["source"]["revision"] == "v1.0"  # type: ignore[index]
    table = run_cli(["models"], env).stdout
    assert re.search(
        r"qwen3-0\.6b-q4_k_m\s+Q4_K_M\s+[\d.]+ MiB\s+Qwen/Qwen3-0\.6B@[0-9a-f]{8}", table
    ), table


def _wait_for(predicate: Callable[[], bool], what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(
                f"pull ended (rc {proc.returncode}) before {what}: "
                f"{proc.stderr.read() if proc.stderr else ''}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _start_pull(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return start([*EDGE_QWEN, "pull", REPO, *args], env)


def test_killed_download_resumes_and_stores_nothing_half_done(
    env: dict[str, str], hub: HubStandIn
) -> None:
    hub.rate = 8 * 2**20  # ~10 s for the 81 MB weights: time to kill it half way
    proc = _start_pull(env)
    _wait_for(lambda: partial_size(env) >= 10 * 2**20, "a partial download on disk", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    partial = partial_size(env)
    assert partial > 0
    assert stored(env) == []  # a killed pull leaves no model

    hub.rate = None
    done = run_cli(["pull", REPO], env)
    assert done.returncode == 0, done.stderr
    ranges = [r for r in weight_gets(hub) if r]
    assert ranges, weight_gets(hub)
    assert (
        int(ranges[-1].removeprefix("bytes=").split("-")[0]) >= partial
    )  # continued, not restarted
    assert [e["name"] for e in stored(env)] == ["qwen3-0.6b-q8_0"]
    assert partial_size(env) == 0 and store_leftovers(env) == []


def test_killed_build_leaves_no_model_and_is_swept(env: dict[str, str]) -> None:
    proc = _start_pull(env, "--quant", "Q5_K_M")
    home = Path(env["EDGE_QWEN_HOME"]) / "models"
    # base.gguf appears once conversion finished: the process is then quantizing.
    _wait_for(lambda: any(home.glob(".staging-*/base.gguf")), "the quantize step", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert store_leftovers(env) != []  # the dead process's staging folder...
    assert stored(env) == []  # ...is never listed as a model
    done = run_cli(["pull", REPO, "--quant", "Q5_K_M"], env)
    assert done.returncode == 0, done.stderr
    assert store_leftovers(env) == []  # swept by the next write
    assert [e["name"] for e in stored(env)] == ["qwen3-0.6b-q5_k_m"]


def test_offline_uses_the_cache_and_fails_clearly_without_it(
    env: dict[str, str], hub: HubStandIn
) -> None:
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    assert_clean_failure(
        run_cli(["pull", REPO], offline), 1, "HF_HUB_OFFLINE is set", "not in the local cache"
    )
    assert stored(env) == []
    assert run_cli(["pull", REPO], env).returncode == 0
    hub.clear_requests()
    again = run_cli(["pull", REPO, "--quant", "Q4_0"], offline)
    assert again.returncode == 0, again.stderr
    assert hub.requests == []
    assert {e["name"] for e in stored(env)} == {"qwen3-0.6b-q8_0", "qwen3-0.6b-q4_0"}


def test_hub_errors_are_one_clear_sentence(env: dict[str, str], hub: HubStandIn) -> None:
    assert_clean_failure(
        run_cli(["pull", "Qwen/Nope-9B"], env), 1, "Repository 'Qwen/Nope-9B' was not found"
    )
    assert_clean_failure(
        run_cli(["pull", REPO, "--revision", "v9"], env), 1, "Revision 'v9' does not exist"
    )
    hub.clear_requests()
    assert_clean_failure(
        run_cli(["pull", REPO, "--quant", "Q9_K"], env), 2, "Unknown quantization type"
    )
    assert [
        r for r in hub.requests if "agent-harness" not in r.path
    ] == []  # rejected before any download
    assert_clean_failure(run_cli(["pull", "./no/such/folder"], env), 1, "does not exist")
    closed = {**env, "HF_ENDPOINT": "http://127.0.0.1:9"}
    assert_clean_failure(run_cli(["pull", REPO], closed), 1, "Could not reach http://127.0.0.1:9")
    assert stored(env) == [] and store_leftovers(env) == []


def test_gated_repo_needs_hf_token(hub_root: Path, cli_env: dict[str, str]) -> None:
    with HubStandIn(hub_root, token="hf_secret") as gated:
        env = {**cli_env, "HF_ENDPOINT": gated.url}
        assert_clean_failure(run_cli(["pull", REPO], env), 1, "is gated", "HF_TOKEN")
        proc = run_cli(["pull", REPO], {**env, "HF_TOKEN": "hf_secret"})
        assert proc.returncode == 0, proc.stderr
        assert "hf_secret" not in proc.stderr + proc.stdout


def test_bad_checkpoints_on_the_hub(
    env: dict[str, str], hub_root: Path, scripted_dir: Path
) -> None:
    llama = hub_root / "meta" / "Llama-tiny"
    shutil.copytree(scripted_dir, llama)
    cfg = json.loads((llama / "config.json").read_text())
    (llama / "config.json").write_text(
        json.dumps({**cfg, "model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    )
    assert_clean_failure(run_cli(["pull", "meta/Llama-tiny"], env), 1, "'llama' model, not Qwen3")

    cut = hub_root / "Qwen" / "Qwen3-cut"
    shutil.copytree(scripted_dir, cut)
    with (cut / "model.safetensors").open("r+b") as f:
        f.truncate(10 * 2**20)
    assert_clean_failure(run_cli(["pull", "Qwen/Qwen3-cut"], env), 1, "truncated")
    assert stored(env) == [] and store_leftovers(env) == []


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_full_disk_keeps_the_store_whole(env: dict[str, str]) -> None:
    assert run_cli(["pull", REPO], env).returncode == 0
    # An F32 conversion (~160 MiB) cannot be written under a 100 MiB file-size limit:
    # the write fails with EFBIG, as it would with ENOSPC on a full disk.
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "pull", REPO, "--quant", "F32"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(100 * 2**20),
    )
    assert_clean_failure(proc, 1, "Ran out of disk space", "nothing was kept")
    assert [e["name"] for e in stored(env)] == ["qwen3-0.6b-q8_0"]
    assert store_leftovers(env) == []


def test_full_disk_during_download(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "pull", REPO],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(20 * 2**20),
    )
    assert_clean_failure(proc, 1, "disk space")
    assert stored(env) == []


def test_local_folder_and_gguf_sources(
    env: dict[str, str], scripted_dir: Path, gguf_of, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    proc = run_cli(["pull", str(scripted_dir), "--quant", "Q4_0"], env)
    assert proc.returncode == 0, proc.stderr
    src = tmp_path / "My-Qwen3-Q8_0.gguf"
    shutil.copyfile(gguf_of("scripted", "Q8_0"), src)
    proc = run_cli(["pull", str(src)], env)
    assert proc.returncode == 0, proc.stderr
    by_name = {e["name"]: e for e in stored(env)}
    assert set(by_name) == {"qwen3-scripted-q4_0", "my-qwen3-q8_0"}
    assert by_name["my-qwen3-q8_0"]["quant"] == "Q8_0"
    assert by_name["qwen3-scripted-q4_0"]["source"]["kind"] == "folder"  # type: ignore[index]


def test_gguf_repo(env: dict[str, str], hub_root: Path, gguf_of) -> None:  # type: ignore[no-untyped-def]
    repo = hub_root / "Qwen" / "Qwen3-0.6B-GGUF"
    repo.mkdir(parents=True)
    os.link(gguf_of("scripted", "Q8_0"), repo / "Qwen3-0.6B-Q8_0.gguf")
    (repo / "README.md").write_text("GGUF files\n")
    proc = run_cli(["pull", "Qwen/Qwen3-0.6B-GGUF", "--gguf"], env)
    assert proc.returncode == 0, proc.stderr
    [entry] = stored(env)
    assert entry["name"] == "qwen3-0.6b-q8_0" and entry["source"]["kind"] == "hub-gguf"  # type: ignore[index]
    missing = run_cli(["pull", "Qwen/Qwen3-0.6B-GGUF", "--gguf", "-q", "Q4_K_M"], env)
    assert_clean_failure(missing, 1, "no GGUF file(s) for Q4_K_M", "Qwen3-0.6B-Q8_0.gguf")


def test_rm(env: dict[str, str]) -> None:
    assert run_cli(["pull", REPO], env).returncode == 0
    assert_clean_failure(
        run_cli(["rm", "nope"], env), 1, "No model named 'nope'", "qwen3-0.6b-q8_0"
    )
    assert_clean_failure(run_cli(["rm", "../models"], env), 2, "not a valid model name")
    proc = run_cli(["rm", "qwen3-0.6b-q8_0"], env)
    assert proc.returncode == 0 and "Removed qwen3-0.6b-q8_0" in proc.stderr
    assert stored(env) == [] and store_leftovers(env) == []
