"""Fast tests of the server (and the chat) over the FakeEngine at the engine's seam, in
process: no model, no uvicorn. Part of the fast loop."""
