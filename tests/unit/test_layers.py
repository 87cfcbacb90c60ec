"""Who may import whom: the layout's rules, read from the source.

Every `import` in edge/, at module level or inside a function, relative or absolute, is
read with `ast`. The layers, bottom up: config/errors/fileio, model, engine, chat, server
and bench, cli. llama-cpp-python stays behind the engine, with two exceptions that say
why. Inside the server, each API has a folder of its own that no other imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.repo import REPO_ROOT

EDGE = REPO_ROOT / "edge"

# Modules outside edge/engine/ allowed to import llama_cpp, and why.
EXCEPTIONS = {
    "edge/model/quantize.py": "llama.cpp's quantizer is one C call with no engine around it",
    "edge/bench/raw.py": "measures llama-cpp-python's own Llama as a contender",
}

# What each package may import from edge/ (prefixes of dotted names); anything else from
# edge/ is a layering mistake. The shared bottom: config, errors, fileio.
BASE = ("edge.config", "edge.errors", "edge.fileio", "edge.__version__")
MAY_IMPORT = {
    # The pipeline knows files, not the engine. The quantizer borrows the engine's capture
    # of llama.cpp's log, which has no state of the engine's in it.
    "edge.model": (*BASE, "edge.model", "edge.engine.llama_log"),
    # The engine reads GGUF headers (plan, chat template) and finds models (doctor).
    "edge.engine": (*BASE, "edge.model", "edge.engine"),
    # Pure text over the engine's public face (the seam), never its internals.
    "edge.chat": (*BASE, "edge.model.gguf_meta", "edge.engine", "edge.chat"),
    "edge.server": (*BASE, "edge.engine", "edge.chat", "edge.server"),
    "edge.bench": (*BASE, "edge.model", "edge.engine", "edge.bench"),
    # The router runs LiteLLM as a process and speaks HTTP to the replicas: no engine.
    "edge.route": (*BASE, "edge.route"),
    # Service files and their managers: settings in, files and systemctl out. The
    # server's half of socket activation lives in the server, which imports no layer above.
    "edge.service": (*BASE, "edge.service"),
    "edge.cli": (
        *BASE,
        "edge.model",
        "edge.engine",
        "edge.chat",
        "edge.server",
        "edge.bench",
        "edge.route",
        "edge.service",
        "edge.cli",
    ),
}
# The engine's own files, each importing only those before it: llama.h access, token
# choice, the scheduler, opening with fallbacks to smaller plans.
ENGINE_ORDER = (
    "edge.engine.llama",
    "edge.engine.sampling",
    "edge.engine.scheduler",
    "edge.engine.fallback",
)
# The engine's internals: only the engine itself (and tests) import these directly.
ENGINE_INTERNALS = (*ENGINE_ORDER, "edge.engine.text")


def imported(path: Path, module: str | None = None) -> set[str]:
    """The full dotted name of every module `path` imports, plus `module.name` for each
    `from module import name`, so a submodule imported that way is seen too. Relative
    imports are resolved against `module`, the file's own dotted name (by default read
    from its place under edge/), so `from ..chat_completions import answer` counts."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module
            if node.level:
                own = (module or module_name(path)).split(".")
                package = own if path.name == "__init__.py" else own[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            if base and base != "edge":  # `from edge import __version__` names the module
                names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(EDGE.parent).with_suffix("").parts)


def sources() -> list[Path]:
    return sorted(EDGE.rglob("*.py"))


def package_of(path: Path) -> str | None:
    """`edge.model` for edge/model/hub.py; None for the shared bottom modules."""
    parts = path.relative_to(EDGE.parent).parts
    return f"edge.{parts[1]}" if len(parts) > 2 else None


def starts(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_only_the_engine_imports_llama_cpp() -> None:
    offenders = []
    for path in sources():
        rel = path.relative_to(EDGE.parent).as_posix()
        if rel.startswith("edge/engine/") or rel in EXCEPTIONS:
            continue
        if any(starts(name, ("llama_cpp",)) for name in imported(path)):
            offenders.append(rel)
    assert offenders == [], f"import llama_cpp only inside edge/engine/: {offenders}"


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_each_layer_imports_only_what_lies_below_it(package: str) -> None:
    wrong = {}
    for path in sources():
        if package_of(path) != package:
            continue
        ours = {n for n in imported(path) if starts(n, ("edge",))}
        # `from edge.engine import X` also yields "edge.engine.X"; the module is what counts.
        bad = sorted(n for n in ours if not starts(n, MAY_IMPORT[package]))
        if bad:
            wrong[module_name(path)] = bad
    assert wrong == {}


def test_every_package_has_a_row() -> None:
    # A package missing from MAY_IMPORT would go unchecked by the test above.
    packages = {package_of(path) for path in sources()} - {None}
    assert packages <= set(MAY_IMPORT), packages - set(MAY_IMPORT)


def test_the_bottom_imports_no_layer() -> None:
    for path in sources():
        if package_of(path) is None and path.name != "__init__.py":
            ours = {n for n in imported(path) if starts(n, ("edge",))}
            assert all(starts(n, BASE) for n in ours), (path.name, ours)


def test_engine_internals_stay_inside_the_engine() -> None:
    outside = {
        module_name(path): sorted(n for n in imported(path) if starts(n, ENGINE_INTERNALS))
        for path in sources()
        if package_of(path) != "edge.engine"
    }
    assert {k: v for k, v in outside.items() if v} == {}


def test_the_engine_files_import_one_way() -> None:
    # No file imports one after it, nor the package (whose __init__ imports them all), so
    # there is no cycle.
    files = {name: EDGE.parent / f"{name.replace('.', '/')}.py" for name in ENGINE_ORDER}
    for i, (name, path) in enumerate(files.items()):
        later = [n for n in imported(path) if n == "edge.engine" or starts(n, ENGINE_ORDER[i:])]
        assert later == [], (name, later)
    assert {"edge.engine.llama", "edge.engine.sampling"} <= imported(files["edge.engine.scheduler"])


def test_imports_are_absolute() -> None:
    # One import style: `from edge.server.wire import Lenient`, never `from ..wire import`,
    # so a module's imports read the same wherever it moves. (The rules above resolve
    # relative imports too, so none could slip past them.)
    relative = [
        module_name(path)
        for path in sources()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert relative == []


def test_nothing_imports_the_cli() -> None:
    into_cli = [
        module_name(path)
        for path in sources()
        if package_of(path) != "edge.cli" and any(starts(n, ("edge.cli",)) for n in imported(path))
    ]
    assert into_cli == []


def test_the_walk_sees_what_it_seeks(tmp_path: Path) -> None:
    # The tests above would pass on an empty tree; show that the walk finds imports,
    # including those inside functions, and that every exception still needs its import.
    assert "llama_cpp" in {n.split(".")[0] for n in imported(EDGE / "engine" / "llama.py")}
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from llama_cpp.llama_grammar import x\n", encoding="utf-8")
    assert imported(lazy) == {"llama_cpp.llama_grammar", "llama_cpp.llama_grammar.x"}
    for rel in EXCEPTIONS:
        assert any(n.startswith("llama_cpp") for n in imported(EDGE.parent / rel)), rel
    assert "edge.errors" in imported(EDGE / "engine" / "scheduler.py")
    assert any(starts(n, ("edge.engine",)) for n in imported(EDGE / "server" / "worker.py"))
    assert package_of(EDGE / "model" / "hub.py") == "edge.model"
    assert package_of(EDGE / "config.py") is None
    assert not starts("edge.engineer", ("edge.engine",))


# --- the server: a room per API ---------------------------------------------------------

SERVER = EDGE / "server"


def api_folders() -> list[str]:
    """The server's API folders (each a package): anthropic, chat_completions, ..."""
    return sorted(p.parent.name for p in SERVER.glob("*/__init__.py"))


def test_no_api_folder_imports_another() -> None:
    apis = api_folders()
    crossing = {}
    for api in apis:
        others = tuple(f"edge.server.{other}" for other in apis if other != api)
        for path in sorted((SERVER / api).glob("*.py")):
            bad = sorted(n for n in imported(path) if starts(n, others))
            if bad:
                crossing[module_name(path)] = bad
    assert crossing == {}


def test_the_shared_server_modules_import_no_api() -> None:
    # What every API uses (prompt, usage, wire, sse, worker, errors, ...) belongs to none of
    # them; only app.py, which wires the routes, names the API folders.
    apis = tuple(f"edge.server.{api}" for api in api_folders())
    owned = {
        module_name(path): sorted(n for n in imported(path) if starts(n, apis))
        for path in sorted(SERVER.glob("*.py"))
        if path.name != "app.py"
    }
    assert {k: v for k, v in owned.items() if v} == {}


def test_every_api_folder_has_the_same_roles() -> None:
    # route.py (I/O, framing), request.py and answer.py (pure translation), schema.py (the
    # wire models); a folder may add its own (responses/store.py).
    for api in api_folders():
        roles = {p.stem for p in (SERVER / api).glob("*.py")}
        assert {"__init__", "route", "request", "answer", "schema"} <= roles, api


def test_the_room_rules_see_what_they_seek(tmp_path: Path) -> None:
    # The rules above would pass with no folders or with relative imports unseen.
    assert {"anthropic", "chat_completions", "completions", "responses"} <= set(api_folders())
    route = SERVER / "chat_completions" / "route.py"
    assert "edge.server.chat_completions.answer" in imported(route)
    sneaky = tmp_path / "request.py"
    sneaky.write_text(
        "from ..anthropic import answer\nfrom . import schema\nfrom .. import sse\n",
        encoding="utf-8",
    )
    assert imported(sneaky, "edge.server.responses.request") == {
        "edge.server.anthropic",
        "edge.server.anthropic.answer",
        "edge.server.responses",
        "edge.server.responses.schema",
        "edge.server",
        "edge.server.sse",
    }
    init = tmp_path / "__init__.py"
    init.write_text("from .route import install\n", encoding="utf-8")
    assert "edge.server.responses.route.install" in imported(init, "edge.server.responses")
