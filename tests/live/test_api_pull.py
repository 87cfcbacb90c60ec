"""Ollama's /api/pull on `edge-qwen serve`, end to end: the official `ollama` client pulls
an `hf.co/…` name from a local stand-in of the hub (HF_ENDPOINT), the server runs the real
pipeline (download, convert, quantize) and streams Ollama's progress lines, and the model
lands in the store while the served model keeps answering."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import ollama
import pytest

from tests.support.cli import serve
from tests.support.hubstandin import HubStandIn
from tests.support.pull import link_tree, stored
from tests.support.slow import slow_fixture

STANDIN = "me/Qwen3-standin"


@slow_fixture
def hub(tmp_path: Path, scripted_dir: Path) -> Iterator[HubStandIn]:
    """The stand-in hub, publishing the scripted tiny checkpoint as STANDIN."""
    root = tmp_path / "hub"
    link_tree(scripted_dir, root / STANDIN)
    with HubStandIn(root) as server:
        yield server


def test_api_pull_streams_progress_and_stores_the_model(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str], hub: HubStandIn
) -> None:
    env = {**cli_env, "HF_ENDPOINT": hub.url}
    with serve(["-m", str(gguf_of("scripted", "Q8_0"))], env) as (url, _):
        client = ollama.Client(host=url)
        lines = list(client.pull(f"hf.co/{STANDIN}", stream=True))
        statuses = [line.status for line in lines]
        assert statuses[0] == "pulling manifest" and statuses[-1] == "success", statuses
        assert any(s and s.startswith("downloading") for s in statuses), statuses
        bars = [line for line in lines if line.total]
        assert bars and bars[-1].completed == bars[-1].total, bars
        assert bars[0].digest and bars[0].digest.startswith("sha256:")
        [entry] = stored(env)
        assert entry["name"] == "qwen3-standin-q8_0" and entry["quant"] == "Q8_0"
        assert entry["source"]["repo"] == STANDIN  # type: ignore[index]

        hub.clear_requests()  # pulled again: in the store, so success at once
        assert client.pull(f"hf.co/{STANDIN}").status == "success"
        assert hub.requests == []

        # A repo the hub does not have fails mid-stream; the store keeps only whole models.
        with pytest.raises(ollama.ResponseError):
            list(client.pull("hf.co/me/missing", stream=True))
        with pytest.raises(ollama.ResponseError) as other:
            client.pull("llama3.2")
        assert other.value.status_code == 404
        assert [e["name"] for e in stored(env)] == ["qwen3-standin-q8_0"]
        # The server still serves the model it loaded.
        assert [m.model for m in client.list().models] == ["scripted-Q8_0:latest"]
        reply = client.chat("qwen3:0.6b", [{"role": "user", "content": "Hi"}], think=False)
        assert reply.message.content
