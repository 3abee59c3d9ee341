"""The package's layers, read from its source: no import cycle, and each
layer imports only the layers below it (uringio/__init__.py says which)."""

import ast
import pathlib

import pytest

from conftest import PACKAGE_DIR, REPO

PACKAGE = pathlib.Path(PACKAGE_DIR)   # the checkout's, or the installed wheel's

# Lower first. A module may import its own layer's modules and those of
# lower ones; aio, models and protocols stand side by side and import
# one another not at all.
LAYERS = {
    "uringio._version": 0, "uringio.errors": 0,
    "uringio._core": 1,
    "uringio.net": 2,
    "uringio.aio": 3, "uringio.models": 3, "uringio.protocols": 3, "uringio.trio": 3,
    "uringio.asgi": 4,   # the asyncio loop (aio) in the multi model's workers (models)
    "uringio.cli": 5,
    "uringio": 6,   # the package itself, __main__, and the old paths it keeps
}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_imports(tree: ast.AST) -> set[ast.AST]:
    """The import nodes under ``if TYPE_CHECKING:``: annotations only."""
    nodes: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            nodes.update(n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return nodes


def imports_of(name: str, path: pathlib.Path, known: set[str],
               type_checking: bool = True) -> set[str]:
    """The package's modules ``name`` imports, anywhere in the file (an
    import inside a function is a dependency all the same); without those
    under ``if TYPE_CHECKING:`` unless ``type_checking``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text())
    skipped = set() if type_checking else _type_checking_imports(tree)
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from pkg import mod" imports the module pkg.mod, not all of pkg.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def layer_of(name: str) -> tuple[str, int]:
    best = max((key for key in LAYERS if name == key or name.startswith(key + ".")), key=len)
    return best, LAYERS[best]


def graph(type_checking: bool = True) -> dict[str, set[str]]:
    """Each module's imports of the package's modules. The layer rules count
    the imports made for annotations too; an import cycle is one that runs
    (a send stream and its loop name each other's types, and that is no
    cycle)."""
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known, type_checking) for name, path in mods.items()}


def test_the_graph_is_read_from_real_imports():
    edges = graph()
    assert "uringio._core.loop" in edges["uringio._core.uring.loop"]
    assert "uringio._core.uring.loop" in edges["uringio._core.backend"]
    assert "uringio.net.connection" in edges["uringio.protocols.http"]


def test_no_module_imports_itself_through_others():
    edges = graph(type_checking=False)
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for dep in sorted(edges[name]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name)


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for name, deps in graph().items():
        home, level = layer_of(name)
        for dep in deps:
            dep_home, dep_level = layer_of(dep)
            if dep_home != home and dep_level >= level:
                wrong.append(f"{name} imports {dep}")
    assert not wrong, wrong


# The engine's two backends side by side (uringio/_core/__init__.py).
BACKEND_PACKAGES = ("uringio._core.uring", "uringio._core.epoll")
ONLY_A_COMPLETION_BACKEND_HAS = {"ring", "ops", "buffers"}


def _backend_of(name: str) -> str | None:
    return next((b for b in BACKEND_PACKAGES if name == b or name.startswith(b + ".")), None)


def test_neither_backend_imports_the_other():
    wrong = [f"{name} imports {dep}" for name, deps in graph().items() for dep in deps
             if _backend_of(name) and _backend_of(dep) and _backend_of(name) != _backend_of(dep)]
    assert not wrong, wrong


def test_one_module_imports_both_backends():
    both = sorted(name for name, deps in graph().items()
                  if {_backend_of(dep) for dep in deps} >= set(BACKEND_PACKAGES))
    assert both == ["uringio._core.backend"]


def test_the_backends_name_the_same_concepts_alike():
    uring, epoll = ({p.stem for p in (PACKAGE / "_core" / side).glob("*.py")} - {"__init__"}
                    for side in ("uring", "epoll"))
    assert {"loop", "send_stream", "files", "relay"} <= epoll
    assert uring - epoll == ONLY_A_COMPLETION_BACKEND_HAS and epoll <= uring


def test_the_layer_table_in_the_design_doc_is_this_one():
    """docs/design.md's table of layers names the same packages at the same
    levels as LAYERS."""
    doc = pathlib.Path(REPO, "docs", "design.md").read_text()
    table = doc.split("## Layers", 1)[1].split("```")[1]
    rows = [line.split()[:2] for line in table.splitlines() if line[:1].isdigit()]
    assert {package: int(level) for level, package in rows} == {
        name: level for name, level in LAYERS.items() if name != "uringio._version"}


def test_every_package_is_in_the_distribution():
    """pyproject.toml lists the packages the wheel and sdist carry: each
    folder of the package with an __init__.py is one (dist.sh refuses a
    wheel without one, but only at release)."""
    import tomllib
    with open(pathlib.Path(REPO, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    found = {module_name(init) for init in PACKAGE.rglob("__init__.py")}
    assert found == listed
