"""The package's layout: parts import only the parts below them, no import circles, no
module reaching into another's underscore names, and the names modules had before 0.2
still import."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aae_anomaly"
# lowest first: each part may import only the parts before it (README.md, "Layout")
PARTS = (
    "errors", "_version", "_moved", "plugin_system", "io", "engine", "scoring",
    "estimators", "plotting", "dask", "cli", "__init__", "__main__",
)


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path) -> list[tuple[str, str]]:
    """(module, imported name) for every ``from ... import`` of this package in ``path``,
    function-level imports included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] == "aae_anomaly":
                found += [(module, alias.name) for alias in node.names]
    return found


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def test_each_part_imports_only_the_parts_below_it():
    wrong = []
    for name, path in modules().items():
        for module, imported in imports(name, path):
            target = module if f"{module}.{imported}" not in modules() else f"{module}.{imported}"
            if PARTS.index(part(target)) > PARTS.index(part(name)):
                wrong.append(f"{name} imports {target}")
    assert not wrong


def test_no_import_circle():
    known = modules()
    graph = {name: set() for name in known}
    for name, path in known.items():
        for module, imported in imports(name, path):
            target = f"{module}.{imported}"
            graph[name].add(target if target in known else module)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node] & known.keys()):
            # a package's __init__ re-exporting its own modules is not a circle
            if nxt == "aae_anomaly" or (node.startswith(nxt + ".") and nxt != node):
                continue
            if state.get(nxt) == 1:
                pytest.fail("import circle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for name in sorted(known):
        if name not in state:
            visit(name, [])


def test_no_module_imports_another_modules_underscore_names():
    private = [
        f"{name} imports {imported} from {module}"
        for name, path in modules().items()
        for module, imported in imports(name, path)
        if imported.startswith("_") and not imported.startswith("__") and module != name
    ]
    assert not private


@pytest.mark.parametrize(
    "old, new",
    [
        ("aae_anomaly.estimator", "aae_anomaly.estimators.detector"),
        ("aae_anomaly.family", "aae_anomaly.estimators.family"),
        ("aae_anomaly.priors", "aae_anomaly.plugin_system.priors"),
        ("aae_anomaly.plugins", "aae_anomaly.plugin_system.manager"),
        ("aae_anomaly.neighbors", "aae_anomaly.scoring.neighbors"),
        ("aae_anomaly.modelfile", "aae_anomaly.io.modelfile"),
    ],
)
def test_modules_still_import_under_their_names_before_0_2(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)
    # the module keeps its own spec, which its relative imports resolve against (an old
    # name's spec made each of them warn "__package__ != __spec__.parent")
    assert importlib.import_module(old).__spec__.name == new


def test_the_documented_names_import_from_the_package():
    import aae_anomaly

    for name in aae_anomaly.__all__:
        assert getattr(aae_anomaly, name) is not None
    from aae_anomaly.priors import Prior  # what plugins written for 0.1 import

    assert Prior is aae_anomaly.Prior
