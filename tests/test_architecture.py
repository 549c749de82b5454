"""The shape of the package: which parts of hf-vq may import which, read from the source with `ast`.

Every import counts, deferred (function-level) ones included: a cycle hidden inside a function still ties the two
modules together for a reader and breaks as soon as someone hoists the import.
"""

import ast
from pathlib import Path

import pytest

import hf_vq

PACKAGE_DIR = Path(hf_vq.__file__).resolve().parent
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_files() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """hf_vq modules `path` imports, resolved to the deepest module that exists (`from .x import y` is `x.y` when
    `y` is a submodule, else `x`)."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                root = ".".join(base + ([node.module] if node.module else []))
            else:
                root = node.module or ""
            names = [f"{root}.{alias.name}" for alias in node.names] + [root]
        else:
            continue
        for name in names:
            if not name.startswith("hf_vq"):
                continue
            while name not in known and "." in name:
                name = name.rpartition(".")[0]
            if name in known and name != this:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = library_files()
    known = {module_name(path) for path in files}
    return {module_name(path): imported_modules(path, known) for path in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer_of(module: str) -> str:
    """`hf_vq.modeling.x` -> `hf_vq.modeling`; top-level modules are their own layer."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_relative_absolute_and_deferred_imports():
    graph = import_graph()
    assert "hf_vq.modeling.quantizer_base" in graph["hf_vq.modeling.quantizer_vq"]  # relative, module level
    assert "hf_vq.modeling" in graph["hf_vq"]  # package __init__
    assert graph["hf_vq.cli"], "cli imports its commands inside functions: deferred imports must count"


def test_no_import_cycle_between_modules():
    """No two hf_vq modules import each other, directly or through others (package `__init__`s included, except
    that a package's `__init__` importing its own submodules is how packages work)."""
    graph = import_graph()
    # A submodule is always imported after its package __init__; the __init__ re-exporting the submodule's names
    # is not a cycle for a reader, so edges from a module to its own package roots are dropped.
    trimmed = {
        module: {target for target in targets if not module.startswith(target + ".")}
        for module, targets in graph.items()
    }
    assert find_cycle(trimmed) is None, f"import cycle: {' -> '.join(find_cycle(trimmed))}"


def test_no_import_cycle_between_subpackages():
    layers: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        if module == "hf_vq":  # the package root re-exports the public API of every layer
            continue
        layers.setdefault(layer_of(module), set()).update(
            layer_of(target) for target in targets if layer_of(target) != layer_of(module)
        )
    cycle = find_cycle(layers)
    assert cycle is None, f"subpackages import each other: {' -> '.join(cycle)}"
    assert "hf_vq" not in set().union(*layers.values()), "nothing inside hf_vq imports the package root"


def test_modeling_imports_nothing_else_of_hf_vq():
    """`hf_vq/modeling` ships as remote code: it must load where only transformers is installed."""
    outside = {
        module: sorted(t for t in targets if not t.startswith("hf_vq.modeling"))
        for module, targets in import_graph().items()
        if module.startswith("hf_vq.modeling")
    }
    assert not any(outside.values()), {m: t for m, t in outside.items() if t}


@pytest.mark.parametrize("path", library_files(), ids=lambda path: str(path.relative_to(PACKAGE_DIR)))
def test_library_files_read_in_one_sitting(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE_DIR)} has {lines} lines (at most {MAX_LINES})"


def test_test_modules_share_code_only_through_helpers():
    """Test modules never import each other: what two of them need lives in tests/helpers/ (one home per role)."""
    tests_dir = Path(__file__).resolve().parent
    offenders = {}
    for path in sorted(tests_dir.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            offenders.setdefault(path.name, []).extend(n for n in names if n.split(".")[0].startswith("test_"))
    assert not any(offenders.values()), {name: found for name, found in offenders.items() if found}
