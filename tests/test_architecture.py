"""The code's shape, checked: no import circle in app/ or training/, the web framework only
in the web layer, serving never imports training, and decode workers free of the web stack."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import jpeg_bytes

REPO = Path(__file__).resolve().parent.parent
WEB = ("fastapi", "starlette", "uvicorn", "python_multipart")
# The web layer: the only modules that may import the framework, the schemas or the routes.
WEB_LAYER = ("app.main", "app.deps", "app.http_errors", "app.security", "app.upload",
             "app.server", "app.schemas", "app.routes", "app.access")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str, modules: frozenset[str] = frozenset()) -> set[str]:
    """Every module `path` imports, at module level or inside functions. `from package
    import submodule` counts as the submodule when `modules` knows it, else as the
    package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = {f"{base}.{alias.name}" for alias in node.names}
            found.update(names & modules if names <= modules else names | {base})
    return found


def import_graph() -> dict[str, set[str]]:
    """Our module -> our modules it imports (a `from package import name` counts as the
    package, or as the submodule where `name` is one)."""
    paths = {_module_name(p): p for top in ("app", "training")
             for p in (REPO / top).rglob("*.py")}
    modules = frozenset(paths)
    graph = {}
    for name, path in paths.items():
        graph[name] = {target for target in _imports(path, name, modules) if target in paths
                       and target != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_app_or_training():
    assert _cycle(import_graph()) is None


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _is_web(name: str) -> bool:
    return name.startswith(WEB_LAYER)


def test_nothing_below_the_routes_imports_the_web_framework():
    paths = {_module_name(p): p for p in (REPO / "app").rglob("*.py")}
    graph = import_graph()
    for name, path in paths.items():
        if _is_web(name) or name in ("app", "app.__main__", "app.cli"):
            continue
        direct = {m.split(".")[0] for m in _imports(path, name)}
        assert not direct & set(WEB), f"{name} imports {direct & set(WEB)}"
        web = {m for m in _reachable(graph, name) if _is_web(m)}
        assert not web, f"{name} reaches the web layer through {sorted(web)}"


def test_serving_never_imports_training():
    graph = import_graph()
    for name in graph:
        if name.startswith("app"):
            assert not any(m.startswith("training") for m in _reachable(graph, name)), name


@pytest.mark.slow
def test_a_decode_worker_holds_no_web_framework_and_no_tensorflow():
    from app.services.decode_pool import DecodePool
    from app.services.film import FilmJob
    from tests.dicom_helpers import dicom_bytes
    from tests.helpers import xray_like

    pool = DecodePool(1, timeout=30)
    try:  # decode first, so that whatever decoding imports is in
        for data in (jpeg_bytes(), dicom_bytes(xray_like(64, 64))):
            pool.prepare(FilmJob(data, (64, 64), 3, None, 60_000_000))
        modules = set(pool.worker_modules())
    finally:
        pool.close()
    assert "app.services.film" in modules and "pydicom" in modules  # the probe is real
    for heavy in (*WEB, "app.schemas", "tensorflow", "keras"):
        assert heavy not in modules
