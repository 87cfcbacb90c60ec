"""`edge-qwen serve` as a user starts it: a real process, its safety defaults on a LAN."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import openai

from tests.support.cli import assert_clean_failure, run_cli, serve
from tests.support.live_server import free_port

WAIT = 60.0


def test_serve_answers_the_openai_sdk(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    with serve(["-m", str(gguf_of("scripted", "Q8_0"))], cli_env) as (url, _):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        reply = client.chat.completions.create(
            model="qwen3", messages=[{"role": "user", "content": "Hi"}]
        )
        assert reply.choices[0].message.content == "Hello world"
        assert reply.model == "scripted-Q8_0"


def test_lan_generates_a_private_key_and_requires_it(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    args = ["-m", str(gguf_of("scripted", "Q8_0")), "--lan"]
    with serve(args, cli_env) as (url, proc):
        key_file = Path(cli_env["EDGE_QWEN_HOME"]) / "api_key"
        key = key_file.read_text().strip()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key) >= 32
        assert httpx.get(f"{url}/v1/models", timeout=WAIT).status_code == 401
        ok = httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=WAIT)
        assert ok.status_code == 200
        proc.terminate()
        _, err = proc.communicate(timeout=WAIT)
    assert err.count(key) == 1  # printed once, at creation
    with serve(args, cli_env) as (_, proc):  # the stored key is reused, not printed again
        proc.terminate()
        _, err = proc.communicate(timeout=WAIT)
    assert key not in err and key_file.read_text().strip() == key


def test_off_loopback_needs_a_key_or_an_explicit_no_auth(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    model = ["-m", str(gguf_of("scripted", "Q8_0"))]
    refused = run_cli(["serve", *model, "--host", "0.0.0.0", "--port", str(free_port())], cli_env)
    assert_clean_failure(refused, 2, "an API key is required", "--no-auth")
    with serve([*model, "--host", "0.0.0.0", "--no-auth"], cli_env) as (url, proc):
        assert httpx.get(f"{url}/v1/models", timeout=WAIT).status_code == 200
        proc.terminate()
        _, err = proc.communicate(timeout=WAIT)
    assert "WITHOUT an API key" in err


def test_every_setting_can_come_from_the_environment_and_a_flag_wins(
    gguf_of: Callable[[str, str], Path], cli_env: dict[str, str]
) -> None:
    # A Docker user changes the server with -e, never by overriding CMD.
    env = {
        **cli_env,
        "EDGE_QWEN_MODEL": str(gguf_of("scripted", "Q8_0")),
        "EDGE_QWEN_CTX": "1024",
        "EDGE_QWEN_PARALLEL": "2",
        "EDGE_QWEN_API_KEY": "s3cret",
        "EDGE_QWEN_REASONING_FORMAT": "hidden",
    }
    with serve(["--ctx", "2048"], env, port_in_env=True) as (url, proc):
        assert httpx.get(f"{url}/v1/models", timeout=WAIT).status_code == 401
        ok = httpx.get(f"{url}/v1/models", headers={"authorization": "Bearer s3cret"}, timeout=WAIT)
        assert ok.status_code == 200
        proc.terminate()
        _, err = proc.communicate(timeout=WAIT)
    assert "ctx 2048" in err and "shared by 2 sequences" in err, err  # --ctx over EDGE_QWEN_CTX


def test_a_bad_setting_in_the_environment_is_named(cli_env: dict[str, str]) -> None:
    bad = run_cli(["serve", "--port", str(free_port())], {**cli_env, "EDGE_QWEN_KV": "q4"})
    assert_clean_failure(bad, 2, "Invalid EDGE_QWEN_KV", "f16, q8_0, f32")
    bad = run_cli(["doctor", "--ctx", "10"], cli_env)
    assert_clean_failure(bad, 2, "Invalid --ctx")
