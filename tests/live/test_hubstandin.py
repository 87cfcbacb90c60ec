"""The hub stand-in works with the real huggingface_hub client.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, at import,
so every client call runs in a fresh subprocess that inherits the environment
set here with monkeypatch.  That is also the honest test: the client runs
exactly as `edge-qwen pull` would, and can be killed with SIGKILL.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import select
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.hubstandin import HubStandIn, RequestRecord
from tests.support.repo import REPO_ROOT

PYTHON = sys.executable
STANDIN = REPO_ROOT / "tests" / "support" / "hubstandin.py"  # run as a script
CLIENT_TIMEOUT = 60  # seconds; a healthy client call takes about one
MiB = 1024 * 1024
# huggingface_hub writes a download to disk in 10 MiB chunks (DOWNLOAD_CHUNK_SIZE) and keeps the
# rest in memory, so a half-downloaded file only shows up on disk once more than 10 MiB arrived.
BIG_FILE_SIZE = 16 * MiB
BIG_RATE = 6 * MiB  # 10 MiB land on disk after 1.7 s, the rest 1 s later: time to see and kill

# Runs a list of huggingface_hub calls and prints one JSON result per call.
CLIENT = r"""
import json, sys
import huggingface_hub

results = []
for call in json.loads(sys.argv[1]):
    try:
        value = getattr(huggingface_hub, call["fn"])(*call["args"], **call["kwargs"])
        results.append({"ok": value})
    except Exception as e:
        response = getattr(e, "response", None)
        results.append({
            "error": type(e).__name__,
            "mro": [c.__name__ for c in type(e).__mro__],
            "status": getattr(response, "status_code", None),
            "message": str(e),
        })
print(json.dumps(results))
"""

# Resumable download of one file into PART, the way a caller of the public http_get can do it.
RESUMING_CLIENT = r"""
import os, sys
from huggingface_hub import hf_hub_url
from huggingface_hub.file_download import get_hf_file_metadata, http_get

repo_id, filename, part = sys.argv[1:4]
meta = get_hf_file_metadata(hf_hub_url(repo_id, filename))
done = os.path.getsize(part) if os.path.exists(part) else 0
with open(part, "ab") as f:
    http_get(meta.location, f, resume_size=done, expected_size=meta.size)
"""

# Settings from the developer's shell that would point the client elsewhere.
INHERITED_HF_VARS = (
    "HF_ENDPOINT",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_STORED_TOKENS_PATH",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HUGGINGFACE_CO_STAGING",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN",
)

T = TypeVar("T")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def call(fn: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """One huggingface_hub call for run_client."""
    return {"fn": fn, "args": list(args), "kwargs": kwargs}


def run_client(*calls: dict[str, Any]) -> list[dict[str, Any]]:
    """Run huggingface_hub calls in a subprocess with the current environment."""
    proc = subprocess.run(
        [PYTHON, "-c", CLIENT, json.dumps(list(calls))],
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
        env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ok(result: dict[str, Any]) -> Any:
    """The value of a successful call, or a failure showing the error."""
    assert "ok" in result, f"expected success, got {result}"
    return result["ok"]


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` every 10 ms until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.01)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def tree(folder: Path | str) -> dict[str, bytes]:
    """Relative path -> content of every file below ``folder`` (following snapshot symlinks)."""
    folder = Path(folder)
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def file_requests(hub: HubStandIn, method: str, filename: str) -> list[RequestRecord]:
    """Requests for one file's /resolve/ URL."""
    return [
        r
        for r in hub.requests
        if r.method == method and "/resolve/" in r.path and r.path.endswith(filename)
    ]


def repo_requests(hub: HubStandIn) -> list[RequestRecord]:
    """Requests about repos, leaving out the client's once-a-day agent registry fetch."""
    return [r for r in hub.requests if r.path != "/api/agent-harnesses"]


def raw_request(
    hub: HubStandIn, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict, bytes]:
    """A raw request to the stand-in: status, headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", int(hub.url.rsplit(":", 1)[1]), timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def hf_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A client environment of its own: empty HF_HOME, no token, online, no proxy for 127.0.0.1."""
    for var in INHERITED_HF_VARS:
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return home


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """acme/tiny at main (several files, one in a folder) and at tag v1; acme/big (16 MiB)."""
    rng = random.Random(1234)
    root = tmp_path / "repos"
    tiny = root / "acme" / "tiny"
    write(tiny / "config.json", b'{"hidden_size": 64, "num_hidden_layers": 2}\n')
    write(tiny / "tokenizer.json", json.dumps({"vocab": {f"t{i}": i for i in range(500)}}).encode())
    write(tiny / "README.md", b"# tiny\n")
    write(tiny / "weights" / "model.safetensors", rng.randbytes(300_000))
    v1 = root / "acme" / "tiny@v1"
    write(v1 / "config.json", b'{"hidden_size": 32}\n')
    write(v1 / "weights" / "model.safetensors", rng.randbytes(1000))
    write(root / "acme" / "big" / "weights.bin", rng.randbytes(BIG_FILE_SIZE))
    return root


@pytest.fixture
def hub(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    with HubStandIn(root) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def main_sha(hub: HubStandIn, repo_id: str, revision: str = "main") -> str:
    with urllib.request.urlopen(
        f"{hub.url}/api/models/{repo_id}/revision/{revision}", timeout=10
    ) as resp:
        return json.load(resp)["sha"]


# ---------------------------------------------------------------------------
# The protocol, seen without the client
# ---------------------------------------------------------------------------


def test_head_and_ranges_follow_http(hub: HubStandIn, root: Path) -> None:
    content = (root / "acme/tiny/weights/model.safetensors").read_bytes()
    path = "/acme/tiny/resolve/main/weights/model.safetensors"

    status, headers, body = raw_request(hub, "HEAD", path)
    assert (status, body) == (200, b"")
    assert headers["ETag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    assert headers["Content-Length"] == str(len(content))
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["X-Repo-Commit"] == main_sha(hub, "acme/tiny")
    assert not any(h.lower().startswith("x-xet") for h in headers)

    status, headers, body = raw_request(hub, "GET", path, {"Range": "bytes=1000-"})
    assert (status, body) == (206, content[1000:])
    assert headers["Content-Range"] == f"bytes 1000-{len(content) - 1}/{len(content)}"
    status, _, body = raw_request(hub, "GET", path, {"Range": "bytes=-10"})
    assert (status, body) == (206, content[-10:])
    status, headers, _ = raw_request(hub, "GET", path, {"Range": f"bytes={len(content)}-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{len(content)}")

    assert [(r.method, r.range, r.status) for r in hub.requests] == [
        ("HEAD", None, 200),
        ("GET", None, 200),  # main_sha's model info
        ("GET", "bytes=1000-", 206),
        ("GET", "bytes=-10", 206),
        ("GET", f"bytes={len(content)}-", 416),
    ]


def test_rate_limits_file_bodies(root: Path) -> None:
    with HubStandIn(root, rate=1_000_000) as hub:
        start = time.monotonic()
        status, _, body = raw_request(
            hub, "GET", "/acme/tiny/resolve/main/weights/model.safetensors"
        )
        elapsed = time.monotonic() - start
    assert (status, len(body)) == (200, 300_000)
    assert 0.25 < elapsed < 5  # 300 kB at 1 MB/s


def test_command_line_form_prints_url_and_serves(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = subprocess.Popen(
        [PYTHON, str(STANDIN), "--root", str(root), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "the stand-in printed no URL within 15 s"
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        monkeypatch.setenv("HF_ENDPOINT", url)
        (result,) = run_client(call("hf_hub_download", "acme/tiny", "config.json"))
        assert Path(ok(result)).read_bytes() == (root / "acme/tiny/config.json").read_bytes()
    finally:
        proc.kill()
        proc.wait(timeout=10)


# ---------------------------------------------------------------------------
# Downloads with the real client
# ---------------------------------------------------------------------------


def test_snapshot_download_is_byte_equal(hub: HubStandIn, root: Path) -> None:
    (result,) = run_client(call("snapshot_download", "acme/tiny"))
    snapshot = Path(ok(result))
    assert snapshot.name == main_sha(hub, "acme/tiny")
    assert tree(snapshot) == tree(root / "acme/tiny")

    # The flow: model info, recursive tree at the commit, then HEAD + GET per file, by sha.
    seen = [(r.method, r.path.split("?")[0], r.status) for r in repo_requests(hub)]
    sha = snapshot.name
    assert seen[0] == ("GET", "/api/models/acme/tiny/revision/main", 200)
    assert seen[1] == ("GET", f"/api/models/acme/tiny/tree/{sha}", 200)
    for name in tree(root / "acme/tiny"):
        assert ("HEAD", f"/acme/tiny/resolve/{sha}/{name}", 200) in seen
        assert ("GET", f"/acme/tiny/resolve/{sha}/{name}", 200) in seen


def test_revision_by_branch_and_by_sha(hub: HubStandIn, root: Path, tmp_path: Path) -> None:
    v1_sha = main_sha(hub, "acme/tiny", "v1")
    assert v1_sha != main_sha(hub, "acme/tiny")
    by_branch, by_sha, one_file = run_client(
        call("snapshot_download", "acme/tiny", revision="v1"),
        # A cache of its own, so the sha is really asked of the server.
        call(
            "snapshot_download",
            "acme/tiny",
            revision=v1_sha,
            cache_dir=str(tmp_path / "other-cache"),
        ),
        call(
            "hf_hub_download",
            "acme/tiny",
            "config.json",
            revision=v1_sha,
            cache_dir=str(tmp_path / "third"),
        ),
    )
    assert Path(ok(by_branch)).name == Path(ok(by_sha)).name == v1_sha
    assert tree(ok(by_branch)) == tree(ok(by_sha)) == tree(root / "acme/tiny@v1")
    assert Path(ok(one_file)).read_bytes() == b'{"hidden_size": 32}\n'
    # Asked by sha, the client skips model info and goes straight to the tree.
    assert any(r.path.startswith(f"/api/models/acme/tiny/tree/{v1_sha}") for r in hub.requests)


# (what is asked, the exception huggingface_hub raises, the X-Error-Code behind it)
ERROR_CASES = {
    "missing-repo": (
        ("acme/missing", "config.json", "main"),
        "RepositoryNotFoundError",
        "RepoNotFound",
    ),
    "missing-revision": (
        ("acme/tiny", "config.json", "nope"),
        "RevisionNotFoundError",
        "RevisionNotFound",
    ),
    "missing-file": (
        ("acme/tiny", "missing.bin", "main"),
        "RemoteEntryNotFoundError",
        "EntryNotFound",
    ),
}


@pytest.mark.parametrize(
    ("fn", "case"),
    [("snapshot_download", case) for case in ERROR_CASES if case != "missing-file"]
    + [("hf_hub_download", case) for case in ERROR_CASES],
)
def test_errors_map_to_client_exceptions(hub: HubStandIn, fn: str, case: str) -> None:
    (repo_id, filename, revision), error, code = ERROR_CASES[case]
    args = [repo_id] if fn == "snapshot_download" else [repo_id, filename]
    (result,) = run_client(call(fn, *args, revision=revision))
    assert result.get("error") == error, result
    if error == "RemoteEntryNotFoundError":
        assert "EntryNotFoundError" in result["mro"]  # what callers usually catch
    # Anonymous callers get 401 for a missing repo, as on the hub.
    assert result["status"] == (401 if code == "RepoNotFound" else 404)
    _, headers, _ = raw_request(hub, "HEAD", f"/{repo_id}/resolve/{revision}/{filename}")
    assert headers["X-Error-Code"] == code


def test_token_is_required_when_set(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with HubStandIn(root, token="s3cret") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        snapshot, one_file = run_client(
            call("snapshot_download", "acme/tiny"),
            call("hf_hub_download", "acme/tiny", "config.json"),
        )
        for result in (snapshot, one_file):
            assert result.get("error") == "GatedRepoError", result
            assert "RepositoryNotFoundError" in result["mro"] and result["status"] == 401

        monkeypatch.setenv("HF_TOKEN", "wrong")
        (result,) = run_client(call("snapshot_download", "acme/tiny"))
        assert (result.get("error"), result["status"]) == ("HfHubHTTPError", 401), result
        assert "Invalid credentials" in result["message"]

        monkeypatch.setenv("HF_TOKEN", "s3cret")
        (result,) = run_client(call("snapshot_download", "acme/tiny"))
        assert tree(ok(result)) == tree(root / "acme/tiny")


def test_offline_mode_uses_the_cache_only(
    hub: HubStandIn, root: Path, hf_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (online,) = run_client(call("snapshot_download", "acme/tiny"))
    hub.clear_requests()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot, one_file = run_client(
        call("snapshot_download", "acme/tiny"), call("hf_hub_download", "acme/tiny", "config.json")
    )
    assert ok(snapshot) == ok(online)
    assert Path(ok(one_file)).read_bytes() == (root / "acme/tiny/config.json").read_bytes()
    assert hub.requests == []

    monkeypatch.setenv("HF_HOME", str(hf_env.parent / "empty-home"))
    snapshot, one_file = run_client(
        call("snapshot_download", "acme/tiny"), call("hf_hub_download", "acme/tiny", "config.json")
    )
    for result in (snapshot, one_file):
        assert result.get("error") == "LocalEntryNotFoundError", result
    assert "HF_HUB_OFFLINE" in snapshot["message"]
    assert hub.requests == []


# ---------------------------------------------------------------------------
# Interrupted downloads
# ---------------------------------------------------------------------------


def partial_file(folder: Path, pattern: str, total: int) -> Path | None:
    """A file matching ``pattern`` below ``folder`` holding some bytes but not all of them."""
    for path in folder.rglob(pattern) if folder.exists() else []:
        try:
            if 0 < path.stat().st_size < total:
                return path
        except FileNotFoundError:  # renamed into place between listing and stat
            continue
    return None


def test_dropped_connection_resumes_with_range(
    root: Path, monkeypatch: pytest.MonkeyPatch, hf_env: Path
) -> None:
    """A connection cut mid-body makes the client retry in-process with Range from what it wrote."""
    with HubStandIn(root, drop_after=12 * MiB) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        (result,) = run_client(call("snapshot_download", "acme/big"))
        gets = file_requests(hub, "GET", "weights.bin")
    assert tree(ok(result)) == tree(root / "acme/big")
    # 10 MiB had reached the disk when the connection dropped at 12 MiB.
    assert [(r.range, r.status) for r in gets] == [(None, 200), (f"bytes={10 * MiB}-", 206)]


def test_resume_after_kill_sends_range(
    root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Kill -9 a throttled download half way, rerun it, and it asks only for the missing bytes."""
    part = tmp_path / "weights.bin.part"
    argv = [PYTHON, "-c", RESUMING_CLIENT, "acme/big", "weights.bin", str(part)]
    with HubStandIn(root, rate=BIG_RATE) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        proc = subprocess.Popen(argv, env=dict(os.environ), stderr=subprocess.DEVNULL)
        try:
            wait_for(
                lambda: partial_file(tmp_path, part.name, BIG_FILE_SIZE), 20, "a partial download"
            )
        finally:
            proc.kill()
            proc.wait(timeout=10)
        done = part.stat().st_size
        assert 0 < done < BIG_FILE_SIZE

        hub.rate = None
        subprocess.run(argv, env=dict(os.environ), timeout=CLIENT_TIMEOUT, check=True)
        gets = file_requests(hub, "GET", "weights.bin")
    assert part.read_bytes() == (root / "acme/big/weights.bin").read_bytes()
    assert [(r.range, r.status) for r in gets] == [(None, 200), (f"bytes={done}-", 206)]


def test_killed_snapshot_download_restarts_from_zero(
    root: Path, monkeypatch: pytest.MonkeyPatch, hf_env: Path
) -> None:
    """After a kill -9, snapshot_download completes the file, but huggingface_hub 2.x restarts it.

    Each attempt writes to its own ``blobs/<etag>.<random>.incomplete`` file (huggingface_hub
    PR #4228), so a new process never finds the old partial file and sends no Range: the
    reason edge-qwen's pull fetches large files itself (edge.model.hub.fetch_blob).
    """
    blobs = hf_env / "hub" / "models--acme--big" / "blobs"
    with HubStandIn(root, rate=BIG_RATE) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        argv = [PYTHON, "-c", CLIENT, json.dumps([call("snapshot_download", "acme/big")])]
        proc = subprocess.Popen(
            argv, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            left = wait_for(
                lambda: partial_file(blobs, "*.incomplete", BIG_FILE_SIZE), 20, "a partial blob"
            )
        finally:
            proc.kill()
            proc.wait(timeout=10)
        assert left.exists()  # SIGKILL leaves the partial blob behind

        hub.rate = None
        hub.clear_requests()
        (result,) = run_client(call("snapshot_download", "acme/big"))
        gets = file_requests(hub, "GET", "weights.bin")
    assert tree(ok(result)) == tree(root / "acme/big")
    # 2.x sends [(None, 200)] here: a whole new download. Not asserted, so that a client
    # that learns to resume does not fail CI; edge.model.hub.fetch_blob resumes either way.
    assert gets and gets[-1].status in (200, 206)
