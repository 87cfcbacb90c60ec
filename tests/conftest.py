"""The test suite's layout, and the fixtures every folder shares.

Tests live in a folder by how they run, and in a file named by what they test:

- tests/unit/: pure logic, no model, no fake engine, no CLI process (fast)
- tests/seam/: the server and the chat over the FakeEngine, in process (fast)
- tests/live/: models built and run by llama.cpp, the CLI and servers as processes, real
  uvicorn, real clients and browsers (slow: tests/live/conftest.py marks the folder)

The fast loop is `python -m pytest -m "not slow"` (under a minute), that is tests/unit/ and
tests/seam/. A fixture that builds a model, or that exists for tests running the CLI as a
process, is defined with `slow_fixture` (tests/support/slow.py): every test that uses it,
directly or through another fixture, is marked slow, and tests/support/layout.py stops a
run that finds such a test in a fast folder, or a test outside the three.

Here: synthetic checkpoints built once per session, isolated homes, the CLI's environment.
Plain helpers and constants are in tests/support/ (imported as
`from tests.support.<module> import <name>`), never in a conftest or a test module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from edge.model.convert import convert
from edge.model.quantize import quantize
from edge.model.synthetic import write_checkpoint
from tests.support.scripted import HOSTILE_SCRIPT, LOOPING_SCRIPT, TOOL_SCRIPT
from tests.support.slow import slow_fixture

# The slow marks and the layout's check (tests/support/), and pytester for the tests of them.
pytest_plugins = ["pytester", "tests.support.slow", "tests.support.layout"]


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test's default home is a temporary folder, never the user's: engines write
    their prompt cache there (edge.engine.diskcache). Tests that need a home of their own
    set EDGE_QWEN_HOME themselves."""
    home = tmp_path_factory.mktemp("default-home")
    old = os.environ.get("EDGE_QWEN_HOME")
    os.environ["EDGE_QWEN_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("EDGE_QWEN_HOME", None)
    else:
        os.environ["EDGE_QWEN_HOME"] = old


@slow_fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight tiny Qwen3 checkpoint (seed 0) with the real tokenizer."""
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "Qwen3-tiny", shape="tiny", seed=0)


@slow_fixture(scope="session")
def scripted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scripted tiny checkpoint: greedy output known in advance (DEFAULT_SCRIPT)."""
    return write_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "Qwen3-scripted", shape="tiny", script=True
    )


@slow_fixture(scope="session")
def looping_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scripted checkpoint that repeats itself forever (for the loop guard and Ctrl-C)."""
    folder = tmp_path_factory.mktemp("ckpt") / "Qwen3-looping"
    return write_checkpoint(folder, shape="tiny", script=LOOPING_SCRIPT)


@slow_fixture(scope="session")
def tooling_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scripted checkpoint that answers with `<tool_call>{"name":"get_time","arguments":{}}`."""
    folder = tmp_path_factory.mktemp("ckpt") / "Qwen3-tooling"
    return write_checkpoint(folder, shape="tiny", script=TOOL_SCRIPT)


@slow_fixture(scope="session")
def gguf_of(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_dir: Path,
    scripted_dir: Path,
    looping_dir: Path,
    tooling_dir: Path,
) -> Callable[[str, str], Path]:
    """`gguf_of("tiny"|"scripted"|"looping"|"tooling", TYPE)`: a checkpoint converted once."""
    folders = {
        "tiny": tiny_dir,
        "scripted": scripted_dir,
        "looping": looping_dir,
        "tooling": tooling_dir,
    }
    out_dir = tmp_path_factory.mktemp("gguf")
    cache: dict[tuple[str, str], Path] = {}

    def make(which: str, qtype: str) -> Path:
        key = (which, qtype.upper())
        if key not in cache:
            out = out_dir / f"{which}-{qtype.upper()}.gguf"
            if qtype.upper() in ("F32", "F16", "BF16"):
                convert(folders[which], out, outtype=qtype.lower())
            else:
                quantize(make(which, "BF16"), out, qtype)
            cache[key] = out
        return cache[key]

    return make


@slow_fixture  # its users run the CLI as a process
def cli_env(tmp_path: Path) -> dict[str, str]:
    """An environment with its own model store and HF cache, and no hub credentials."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "EDGE_QWEN_", "HUGGINGFACE", "PROMPT_TOOLKIT_"))
    }
    env.update(
        EDGE_QWEN_HOME=str(tmp_path / "home"),
        HF_HOME=str(tmp_path / "hf"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def greedy() -> Iterator[Callable[..., str]]:
    """`greedy(gguf, prompt_text, max_tokens)`: llama.cpp greedy decoding, text out."""
    loaded: list[object] = []

    def run(path: Path, prompt: str, max_tokens: int = 32) -> str:
        from llama_cpp import Llama

        llm = Llama(str(path), n_ctx=512, n_threads=2, verbose=False)
        loaded.append(llm)
        tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        llm.eval(tokens)
        out = b""
        for _ in range(max_tokens):
            # The last position's logits, straight from llama.cpp (Llama.scores is only
            # filled with logits_all=True, which costs n_ctx x vocab floats).
            last = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
            tok = int(last.argmax())
            out += llm.detokenize([tok], special=True)
            if tok in (151643, 151645):  # <|endoftext|>, <|im_end|>
                break
            llm.eval([tok])
        return out.decode("utf-8", errors="replace")

    yield run
    for llm in loaded:
        llm.close()  # type: ignore[attr-defined]


@slow_fixture(scope="session")
def bench_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An EDGE_QWEN_HOME for the benchmark's synthetic 0.6b models (built once, minutes)."""
    return tmp_path_factory.mktemp("bench-home")


@slow_fixture(scope="session")
def model_06b(bench_home: Path) -> Path:
    """The 0.6b-shaped synthetic model, Q4_K_M: the size the memory figures are about.
    Shared with the benchmark smoke test, which finds it in the same cache."""
    from edge.bench.models import bench_model

    return bench_model(bench_home / "bench", "Q4_K_M", lambda _: None)


@slow_fixture(scope="session")
def hostile_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scripted F16 GGUF that thinks HOSTILE_THINKING and answers HOSTILE_ANSWER."""
    folder = write_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "Qwen3-hostile", shape="tiny", script=HOSTILE_SCRIPT
    )
    out = tmp_path_factory.mktemp("gguf") / "hostile-F16.gguf"
    convert(folder, out, outtype="f16")
    return out


@slow_fixture(scope="session")
def router_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LiteLLM's pinned proxy in its own virtual environment, as `edge-qwen route` installs
    it: once per session, or the one at $EDGE_QWEN_TEST_ROUTER_VENV (a local cache)."""
    from edge.route.litellm import ensure_router

    given = os.environ.get("EDGE_QWEN_TEST_ROUTER_VENV")
    venv = Path(given) if given else tmp_path_factory.mktemp("router") / "venv"
    ensure_router(venv, print)
    return venv
