"""The code's shape, checked by folder: only `app/web/` imports the web stack, nothing outside it
but the entry points reaches it, only `app/archive/` imports Ray and pyarrow and nothing but
the entry points reaches it (serving never imports them), no import circle in app/ or
training/, serving never imports training, app/'s top level stays small, and decode workers
are free of the web stack, TensorFlow and Keras."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.builders.images import jpeg_bytes

REPO = Path(__file__).resolve().parent.parent
WEB = ("fastapi", "starlette", "uvicorn", "python_multipart", "multipart")
# The HTTP door: the one package that may import the web stack.
WEB_PACKAGE = "app.web"
# The entry points: they compose the doors, so they may import app.web (never the web stack
# itself: `serve` lives in app/web/server.py).
ENTRY_POINTS = ("app.__main__", "app.cli")
# Archive scoring (issue 29): the one package that may import Ray Data and pyarrow (the
# `archive` extra, which serving neither installs nor imports).
ARCHIVE = ("ray", "pyarrow")
ARCHIVE_PACKAGE = "app.archive"
# What app/'s top level holds: the entry points, the one settings class, the error
# vocabulary, logging, memory and metrics (issue 26); everything else lives in a package.
MAX_TOP_LEVEL_MODULES = 8


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
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


def _sources(root: Path, tops: tuple[str, ...] = ("app", "training")) -> dict[str, Path]:
    return {_module_name(p, root): p for top in tops for p in (root / top).rglob("*.py")}


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """Our module -> our modules it imports (a `from package import name` counts as the
    package, or as the submodule where `name` is one)."""
    paths = _sources(root)
    modules = frozenset(paths)
    return {name: {target for target in _imports(path, name, modules)
                   if target in paths and target != name}
            for name, path in paths.items()}


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


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _in_web(name: str) -> bool:
    return name == WEB_PACKAGE or name.startswith(WEB_PACKAGE + ".")


def web_violations(root: Path = REPO) -> list[str]:
    """Each module of app/ outside app/web/ that imports the web stack, or (the entry points
    apart) reaches app/web/ through our own imports, with what it imports."""
    paths = _sources(root, ("app",))
    graph = import_graph(root)
    found = []
    for name, path in sorted(paths.items()):
        if _in_web(name):
            continue
        direct = {m.split(".")[0] for m in _imports(path, name)} & set(WEB)
        if direct:
            found.append(f"{name} imports {sorted(direct)}")
        if name not in ENTRY_POINTS:
            web = sorted(m for m in _reachable(graph, name) if _in_web(m))
            if web:
                found.append(f"{name} reaches the web package through {web}")
    return found


def archive_violations(root: Path = REPO) -> list[str]:
    """Each module of app/ outside app/archive/ that imports Ray or pyarrow, or (the entry
    points apart) reaches app/archive/ through our own imports."""
    paths = _sources(root, ("app",))
    graph = import_graph(root)
    inside = lambda name: name == ARCHIVE_PACKAGE or name.startswith(ARCHIVE_PACKAGE + ".")  # noqa: E731
    found = []
    for name, path in sorted(paths.items()):
        if inside(name):
            continue
        direct = {m.split(".")[0] for m in _imports(path, name)} & set(ARCHIVE)
        if direct:
            found.append(f"{name} imports {sorted(direct)}")
        if name not in ENTRY_POINTS:
            reached = sorted(m for m in _reachable(graph, name) if inside(m))
            if reached:
                found.append(f"{name} reaches the archive package through {reached}")
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_app_or_training():
    assert _cycle(import_graph()) is None


def test_only_the_web_package_imports_the_web_stack():
    assert web_violations() == []


@pytest.mark.parametrize("source", ["import fastapi\n", "from starlette.types import Scope\n",
                                    "def f():\n    import uvicorn\n",
                                    "from app.web.deps import settings_of\n"])
def test_the_web_rule_catches_a_module_outside_the_web_package(tmp_path, source):
    """The rule above fails when it is broken: a service that imports the web stack (or the
    web package), even inside a function."""
    for package in ("app", "app/services", "app/web"):
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "app/web/deps.py").write_text("import fastapi\n")
    (tmp_path / "app/services/leaky.py").write_text(source)
    assert [line for line in web_violations(tmp_path) if line.startswith("app.services.leaky")]
    (tmp_path / "app/services/leaky.py").write_text("import numpy\n")
    assert web_violations(tmp_path) == []


def test_only_the_archive_package_imports_ray_and_pyarrow():
    assert (REPO / "app/archive/engine.py").is_file()  # the rule has something to guard
    assert archive_violations() == []


@pytest.mark.parametrize("source", ["import ray\n", "from pyarrow import parquet\n",
                                    "def f():\n    import ray.data\n",
                                    "from app.archive.run import status\n"])
def test_the_archive_rule_catches_a_module_outside_the_archive_package(tmp_path, source):
    """A service (or the web package: serving) that imports Ray or pyarrow, or the archive
    package, even inside a function, breaks the rule."""
    for package in ("app", "app/services", "app/archive"):
        (tmp_path / package).mkdir(exist_ok=True)
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "app/archive/run.py").write_text("import ray\n")
    (tmp_path / "app/services/leaky.py").write_text(source)
    assert [line for line in archive_violations(tmp_path)
            if line.startswith("app.services.leaky")]
    (tmp_path / "app/services/leaky.py").write_text("import numpy\n")
    assert archive_violations(tmp_path) == []


def test_serving_never_imports_training():
    graph = import_graph()
    for name in graph:
        if name.startswith("app"):
            assert not any(m.startswith("training") for m in _reachable(graph, name)), name


def test_the_top_level_of_app_holds_only_entry_points_settings_errors_logs_memory_metrics():
    modules = sorted(p.name for p in (REPO / "app").glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


@pytest.mark.slow
def test_a_decode_worker_holds_no_web_framework_and_no_tensorflow():
    from app.services.decode_pool import DecodePool
    from app.services.film import FilmJob
    from tests.builders.dicom import dicom_bytes
    from tests.builders.images import xray_like
    from tests.services.pool_probe import worker_modules

    pool = DecodePool(1, timeout=30)
    try:  # decode first, so that whatever decoding imports is in
        for data in (jpeg_bytes(), dicom_bytes(xray_like(64, 64))):
            pool.prepare(FilmJob(data, (64, 64), 3, None, 60_000_000))
        modules = set(worker_modules(pool))
    finally:
        pool.close()
    assert "app.services.film" in modules and "pydicom" in modules  # the probe is real
    for heavy in (*WEB, "app.web", "app.web.schemas", "tensorflow", "keras"):
        assert heavy not in modules
