"""Chat as text: no llama.cpp here, only what turns messages into a prompt and tokens' text
back into an answer.

Public face:
- `template.ChatTemplate`: the GGUF's own Jinja template, rendered as transformers does;
  Qwen's sampling defaults and the /think switches.
- `reasoning`: the streaming `<think>` splitter.
- `tools`: Qwen3's `<tool_call>` parser.
- `conversation.Conversation`: multi-turn chat over any engine at the seam, reusing the
  KV cache between turns (the CLI's chat and run).
"""
