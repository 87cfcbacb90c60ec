"""Screenshots of the web chat for README.md: desktop and phone, light and dark.

    python scripts/screenshots_webpage.py            # writes docs/webpage-*.png

Builds the tiny scripted synthetic model (as the tests do), starts a real
`edge-qwen serve` on it, and drives Debian's Chromium with Playwright. One conversation
is asked live (the scripted model thinks "Let me think" and answers "Hello world"); the
one on show holds a Markdown answer written here, since a synthetic model's answers
mean nothing: it is put in the browser's own store, from which the page renders it
exactly as it renders a streamed answer (markdown.js). Needs the test extra and chromium.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

DOCS = Path(__file__).resolve().parents[1] / "docs"
SIZES = {"desktop": {"width": 1100, "height": 720}, "phone": {"width": 360, "height": 740}}
QUESTION = "How do I count the words in a file, in Python and in the shell?"
ANSWER = """## Two ways

**Python** reads the file and splits on whitespace:

```python
from pathlib import Path

def count_words(path: str) -> int:
    return len(Path(path).read_text().split())
```

**The shell** has `wc` for it:

```bash
wc -w notes.txt
```

| Way | Counts | Good for |
|---|---|---|
| `split()` | words | one file, in a program |
| `wc -w` | words | many files, at a prompt |

See the [Python docs](https://docs.python.org/3/library/pathlib.html) for more.
"""
REASONING = "The user wants two ways: Python's str.split and the shell's wc -w."
SEED = """async (conv) => {
  const db = await new Promise((ok, no) => {
    const r = indexedDB.open("edge-qwen", 1);
    r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error);
  });
  await new Promise((ok, no) => {
    const tx = db.transaction("conversations", "readwrite");
    tx.objectStore("conversations").put(conv);
    tx.oncomplete = ok; tx.onerror = () => no(tx.error);
  });
  localStorage.setItem("edge-qwen-open", conv.id);
}"""


def build_model(folder: Path) -> Path:
    from edge.model.convert import convert
    from edge.model.synthetic import write_checkpoint

    checkpoint = write_checkpoint(folder / "Qwen3-scripted", shape="tiny", script=True)
    gguf = folder / "scripted-F16.gguf"
    convert(checkpoint, gguf, outtype="f16")
    return gguf


def serve(gguf: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "edge.cli", "serve", "--model", str(gguf), "--port", str(port)]
    server = subprocess.Popen(cmd)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not start")


def shoot(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    now = int(time.time() * 1000)
    shown = {
        "id": "shown",
        "title": "Counting words",
        "created": now,
        "updated": now + 1,
        "system": "",
        "temperature": None,
        "thinking": True,
        "messages": [
            {"role": "user", "content": QUESTION},
            {
                "role": "assistant",
                "content": ANSWER,
                "reasoning": REASONING,
                "thoughtMs": 1400,
                "stats": {"tokens": 212, "firstMs": 180, "tps": 48.3},
            },
        ],
    }
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
        for scheme in ("light", "dark"):
            for size, viewport in SIZES.items():
                context = browser.new_context(
                    viewport=viewport, color_scheme=scheme, device_scale_factor=1
                )
                page = context.new_page()
                page.goto(url + "/")
                page.fill("#input", "Hi")
                page.press("#input", "Enter")
                page.wait_for_selector(".msg.assistant .stats", timeout=30_000)
                page.evaluate(SEED, shown)
                page.reload()
                page.wait_for_selector(".msg.assistant .stats", timeout=30_000)
                page.locator(".msg.user").first.scroll_into_view_if_needed()
                path = out / f"webpage-{size}-{scheme}.png"
                page.screenshot(path=str(path))
                print(f"{path} ({path.stat().st_size // 1024} KB)")
                context.close()
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DOCS, help="folder for the PNGs")
    ap.add_argument("--port", type=int, default=8765)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = serve(build_model(Path(tmp)), args.port)
        try:
            shoot(f"http://127.0.0.1:{args.port}", args.out)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
