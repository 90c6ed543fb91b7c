"""The rules of ARCHITECTURE.md that a machine can check: no import cycles, and the core never imports the CLI."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imported(node: ast.AST, package: str) -> list[str]:
    """mmv modules an import statement names (relative imports resolved against `package`)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "mmv"]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
        if base.split(".")[0] != "mmv":
            return []
        # `from mmv.x import y` imports mmv.x.y when y is a module, else mmv.x
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    return []


def all_imports(path: Path) -> set[str]:
    """Every mmv module the file imports anywhere, lazily inside functions included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    return {m for node in ast.walk(ast.parse(path.read_text())) for m in imported(node, package)}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_module_import_graph_has_no_cycle():
    """Lazy imports inside functions count too: a cycle through them is still two modules that need each other."""
    graph = {name: {m for m in all_imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.startswith("mmv.cli")))
def test_the_core_never_imports_the_cli(name):
    assert not {m for m in all_imports(MODULES[name]) if m == "mmv.cli" or m.startswith("mmv.cli.")}


# Command lines quoted as a whole in a core message: they name a command to run, not one command's option.
COMMAND_HINTS = {
    ("mmv.loading.resolve", " is neither a file, a folder nor a download name (`mmv download --list`)"),
    ("mmv.train.saves", " --resume` writes them again"),
    ("mmv.train.saves", " --out "),
    ("mmv.convert.transformers_model", "`mmv convert --with-vision DIR`"),
}
FLAG = re.compile(r"(?<![\w-])--([a-z]|$)")  # `--vision`, or `--` before an f-string field: `f"--{name}"`


def flag_spellings(path: Path) -> list[tuple[int, str]]:
    """The string pieces of every `MmvError(...)` call in the file that spell a command-line flag."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "MmvError":
            for part in ast.walk(node):
                if isinstance(part, ast.Constant) and isinstance(part.value, str) and FLAG.search(part.value):
                    found.append((part.lineno, part.value))
    return found


def allowed(name: str, text: str) -> bool:
    return any(name == module and hint in text for module, hint in COMMAND_HINTS)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not n.startswith("mmv.cli")))
def test_core_errors_name_settings_not_flags(name):
    """A flag belongs to one command (`--vision` in chat is `--with-vision` in convert) and means nothing from Python:
    the core names the setting with `option=`, the CLI appends its own flag (mmv.errors)."""
    spelled = [(line, text) for line, text in flag_spellings(MODULES[name]) if not allowed(name, text)]
    assert not spelled, spelled


def test_the_flag_finder_finds_flags_and_only_flags(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        'raise MmvError("pass --vision DIR")\n'
        'raise MmvError(f"--{name} must be at least 1")\n'
        'raise errors.MmvError("unknown " f"--outtype {x}")\n'
        'raise MmvError("a run-id, an en-dash -- and pip install \'mmv[qlora]\'", option="qlora")\n'
        'print("--vision is fine outside an error")\n'
    )
    assert [line for line, _ in flag_spellings(probe)] == [1, 2, 3]
