"""What tests share besides fixtures, one module per concern; a test imports it as
`from tests.support.<module> import <name>`, never from another test module.

- repo: the repository's root, and scripts/NAME.py as a module
- cli: `edge-qwen` as a process (run, serve) and how a failure must read
- terminal: `edge-qwen` in a pseudo-terminal (pexpect)
- live_server: a real uvicorn around the real engine, in a thread; ports, readiness
- prompts: the requests many tests send (one user message, one tool)
- seam: the app over a FakeEngine in process, through httpx's ASGI transport; SSE parsing
- fake_engine: the FakeEngine itself (edge.engine.seam.EngineAPI, checked by mypy)
- scripted: what the scripted checkpoints of tests/conftest.py say
- plan: Qwen3-0.6B's sizes as a plan reads them (ModelInfo), GiB
- hubstandin: a local stand-in for the Hugging Face Hub (also a script: see its docstring)
- pull: checking what `edge-qwen pull` left in a home and asked of the stand-in
- corpus: a multilingual tokenizer corpus
- checkpoints: Qwen3-0.6B's config.json and size, a checkpoint loaded into transformers
- dockerfile: Dockerfile.cuda parsed as Docker reads it
- slow: `slow_fixture`, and the plugin that marks the tests using one slow
- layout: the plugin that holds every test to its folder (unit/, seam/, live/)
"""
