"""The one hard rule of the layout: llama-cpp-python stays behind the engine.

Every `import` in edge/, at module level or inside a function, is read from the source;
only the engine package may name llama_cpp, with two exceptions that say why.
"""

from __future__ import annotations

import ast
from pathlib import Path

EDGE = Path(__file__).resolve().parent.parent / "edge"

# Modules outside edge/engine/ allowed to import llama_cpp, and why.
EXCEPTIONS = {
    "edge/quantize.py": "llama.cpp's quantizer is one C call with no engine around it",
    "edge/bench/raw.py": "measures llama-cpp-python's own Llama as a contender",
}


def imported_modules(path: Path, depth: int = 1) -> set[str]:
    """The first `depth` parts of the name of every module `path` imports (absolute imports
    only): `llama_cpp` for depth 1, `edge.server` for depth 2."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(".".join(alias.name.split(".")[:depth]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(".".join(node.module.split(".")[:depth]))
    return names


def test_only_the_engine_imports_llama_cpp() -> None:
    offenders = []
    for path in sorted(EDGE.rglob("*.py")):
        rel = path.relative_to(EDGE.parent).as_posix()
        if rel.startswith("edge/engine/") or rel in EXCEPTIONS:
            continue
        if "llama_cpp" in imported_modules(path):
            offenders.append(rel)
    assert offenders == [], f"import llama_cpp only inside edge/engine/: {offenders}"


def test_the_engine_does_import_it_and_the_walk_sees_function_level_imports(
    tmp_path: Path,
) -> None:
    # The test above would pass on an empty tree; show that the walk finds what it seeks.
    assert "llama_cpp" in imported_modules(EDGE / "engine" / "core.py")
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from llama_cpp.llama_grammar import x\n", encoding="utf-8")
    assert imported_modules(lazy) == {"llama_cpp"}
    for rel in EXCEPTIONS:
        assert "llama_cpp" in imported_modules(EDGE.parent / rel), f"{rel} no longer needs it"


# What the engine layer must not reach up into: it serves all of them.
ABOVE_THE_ENGINE = {"edge.server", "edge.cli", "edge.bench", "edge.repl", "edge.conversation"}


def test_the_engine_imports_nothing_above_it_and_nothing_imports_the_cli() -> None:
    upward = {
        path.relative_to(EDGE.parent).as_posix(): sorted(
            imported_modules(path, depth=2) & ABOVE_THE_ENGINE
        )
        for path in sorted((EDGE / "engine").rglob("*.py"))
    }
    assert {k: v for k, v in upward.items() if v} == {}
    into_cli = [
        path.relative_to(EDGE.parent).as_posix()
        for path in sorted(EDGE.rglob("*.py"))
        if path.name != "cli.py" and "edge.cli" in imported_modules(path, depth=2)
    ]
    assert into_cli == []
    # The walk sees two-part names, or the checks above would pass on anything.
    assert "edge.errors" in imported_modules(EDGE / "engine" / "core.py", depth=2)
    assert "edge.engine" in imported_modules(EDGE / "server" / "worker.py", depth=2)
