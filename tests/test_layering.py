"""protocol/ is pure and deterministic: it imports no hypothesis, random, time or I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FORBIDDEN = {
    "hypothesis",
    "random",
    "time",
    "os",
    "io",
    "pathlib",
    "json",
    "subprocess",
    "sys",
    "socket",
    "datetime",
    "secrets",
    "threading",
    "fuzz",
}
PROTOCOL = Path(__file__).resolve().parent.parent / "protocol"


def top_level(module: str) -> str:
    """The package a module belongs to: its first name, or its second under ``tlbfuzz`` (so
    ``tlbfuzz.fuzz.cli`` is ``fuzz``, which protocol/ must not import)."""
    names = module.split(".")
    return names[1] if names[0] == "tlbfuzz" and len(names) > 1 else names[0]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(top_level(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(top_level(node.module))
    return out


@pytest.mark.parametrize(
    "path", sorted(PROTOCOL.rglob("*.py")), ids=lambda p: str(p.relative_to(PROTOCOL))
)
def test_protocol_module_imports_nothing_impure(path: Path) -> None:
    bad = imported_modules(path) & FORBIDDEN
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_scan_sees_imports() -> None:
    """The check above must be able to fail: it finds an import in a sample."""
    sample = PROTOCOL.parent / "tests" / "test_layering.py"
    assert "ast" in imported_modules(sample)
    assert "pathlib" in imported_modules(sample)
    assert "fuzz" in imported_modules(PROTOCOL.parent / "fuzz" / "cli.py")


def _calls_outside(tree: ast.AST, names: set[str], allowed: str) -> list[str]:
    """The calls of ``names`` in ``tree``, except those inside the function ``allowed``."""
    out: list[str] = []

    def visit(node: ast.AST, inside: bool) -> None:
        if isinstance(node, ast.FunctionDef) and node.name == allowed:
            inside = True
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in names
            and not inside
        ):
            out.append(f"{node.func.id}() at line {node.lineno}")
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return out


# state.derive() generates copy() and snapshot() from a record's attrs field names (as attrs
# generates __init__): the one exec in protocol/, on text made of our own identifiers only.
GENERATOR = "derive"


def test_no_open_or_print_calls_in_protocol() -> None:
    for path in PROTOCOL.rglob("*.py"):
        allowed = GENERATOR if path.name == "state.py" else ""
        bad = _calls_outside(
            ast.parse(path.read_text()), {"open", "print", "input", "exec", "eval"}, allowed
        )
        assert not bad, f"{path.name}: {bad}"


def test_the_call_scan_sees_an_exec_outside_the_generator() -> None:
    """The check above must be able to fail: an exec() anywhere but in derive() is found."""
    tree = ast.parse("def derive():\n    exec('x')\ndef other():\n    exec('y')\n")
    assert _calls_outside(tree, {"exec"}, GENERATOR) == ["exec() at line 4"]
