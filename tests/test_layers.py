"""
The package's shape: each module imports only from its own layer or the layers below, and
no other module's private names; the imports (module-level or inside functions) form no
cycle; no module is over 600 lines, no function over 60, and every module says what it
exports (``__all__``). docs/design.md draws the layers; :data:`LAYERS` is that drawing,
bottom first.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "helpers"

#: The layers, bottom first: each a list of module paths (dotted, under drgn_ss); a
#: subpackage's name stands for every module in it.
LAYERS: list[list[str]] = [
    ["kernel", "build_fast"],  # build_fast: the C part's build step, imported by setuptools only
    ["tables"],
    ["sockets"],
    ["tasks"],
    ["owners", "namespaces"],
    ["holders", "kernel_users", "containers"],  # who holds a socket, past its processes
    ["report"],  # what is wrong: the triage report's findings
    ["selection", "traffic", "fleet"],  # fleet: what the monitoring agents ingest
    ["output"],
    ["commands"],
]

#: The longest a module and a function may be, in lines.
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60

#: Functions allowed past MAX_FUNCTION_LINES, and why.
LONG_FUNCTIONS = {
    # ss's tcp_show_info() (misc/ss.c), read against it line by line: one field a line, in
    # ss's order, as one piece so that the two read side by side.
    "output.tcpinfo.tcp_info_text": "ss.c's tcp_show_info, line by line",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _layer(module: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in layer):
            return i
    return None


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in it."""
    out = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
                names = [stem] + [f"{stem}.{a.name}" for a in node.names]
                names = ["drgn_ss." + n if n else "drgn_ss" for n in names]
            elif node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.startswith("drgn_ss."):
                target = name[len("drgn_ss."):]
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    out.add(target)
    return out


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in _modules() if m and _layer(m) is None and not m.startswith("_")]
    assert not unplaced, f"modules on no layer (add them to LAYERS): {unplaced}"


def test_imports_go_down() -> None:
    modules = _modules()
    upward = []
    for module, path in modules.items():
        mine = _layer(module)
        for target in _imports(module, path, set(modules)):
            theirs = _layer(target)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    assert not upward, "\n".join(upward)


def test_imports_form_no_cycle() -> None:
    modules = _modules()
    graph = {m: _imports(m, p, set(modules)) for m, p in modules.items()}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path + [m, n]
            if n not in state:
                cycle = visit(n, path + [m])
                if cycle:
                    return cycle
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m, [])
            assert cycle is None, " -> ".join(cycle[cycle.index(cycle[-1]):])


def test_modules_and_functions_are_short() -> None:
    long = []
    for module, path in _modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{module}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1 if node.end_lineno else 0
                if lines > MAX_FUNCTION_LINES and f"{module}.{node.name}" not in LONG_FUNCTIONS:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, "\n".join(long)


def test_public_functions_and_classes_say_what_they_are() -> None:
    missing = []
    for module, path in _modules().items():
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")
                    and not ast.get_docstring(node)):
                missing.append(f"{module}.{node.name}")
    assert not missing, f"public functions and classes without a docstring: {missing}"


def test_public_modules_say_what_they_export() -> None:
    missing = []
    for module, path in _modules().items():
        if not module or module.rpartition(".")[2].startswith("_") or path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        if not any(isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                      for t in n.targets) for n in tree.body):
            missing.append(module)
    assert not missing, f"modules without __all__: {missing}"


def test_no_module_takes_anothers_private_names() -> None:
    """A name with a leading underscore stays in its module: what another needs is public."""
    taken = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("drgn_ss"):
                taken += [f"{module} imports {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and a.name not in ("_fast", "__version__")]
    assert not taken, "\n".join(taken)


def test_no_module_is_named_after_a_stdlib_module() -> None:
    """``select``, ``types``...: a reader (and a relative import) takes them for the stdlib's."""
    named = [m for m in _modules() if m and m.rpartition(".")[2] in sys.stdlib_module_names]
    assert not named, named
