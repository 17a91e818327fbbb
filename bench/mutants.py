"""Mutants of the kernel model's source: enumeration by AST, stable ids, sampling, applying.

A mutant is one small edit of one function of ``MODULES``, kept as a byte splice of the file
(``start``, ``end``, ``replacement``) so that applying it leaves every other byte, comment and
line of the file as it was. Its id hashes the file, the function, the operator and the
*unparsed* original and mutated code (plus an occurrence count for exact repeats inside one
function), never a line number: an entry of ``bench/mutants-equivalent.json`` keeps naming the
same mutant when code above it moves.

Operators (``OPERATORS``): negate a condition (``if``/``while``/conditional expression/
comprehension filter), swap a comparison operator (boundary ``<``/``<=`` and direction
``<``/``>``; ``==``/``!=``, ``in``/``not in``, ``is``/``is not``), flip a boolean constant,
delete a statement (assignment, augmented assignment, call) in favour of ``pass``, swap
``and``/``or``, move an integer constant by one either way, and swap two adjacent statements
of one block (the order of a step's writes is what this domain is about).

What is not mutated, and why:

- anything outside function bodies (the step/path records, module constants, variant
  definitions) and the docstrings, annotations and imports inside them;
- ``assert`` statements: they are the model's own WARN_ON_ONCE checks, so a mutant of one
  either fails at once (a crash, which tells nothing about the properties) or never fires
  (equivalent by construction);
- f-strings: they only word a violation's message or a trace line;
- ``EXCLUDED_FUNCTIONS``: plumbing that makes no kernel decision, and printing helpers;
- ``MESSAGE_ONLY_NAMES``: locals that only build a message (in ``free_page``);
- a swap of two simple statements that provably commute (``commute``): neither writes a
  name or attribute the other reads or writes, and neither calls anything but a known pure
  function. The model checks properties between steps, never inside one, so such a swap is
  equivalent by construction and would only pad the survivors.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import itertools
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

REPO: Final = Path(__file__).resolve().parent.parent

MODULES: Final = (
    "protocol/hw.py",
    "protocol/mm.py",
    "protocol/smp.py",
    "protocol/tlb.py",
    "protocol/variants.py",
)
"""The kernel logic: the processor, mm/, kernel/smp.c, arch/x86/mm/tlb.c and the variants'
decision methods. (state.py, world.py, paths.py and properties.py are the model's machinery
and its oracle: mutating the oracle would test nothing.)"""

EXCLUDED_FUNCTIONS: Final[dict[tuple[str, str], str]] = {
    ("protocol/variants.py", "Variant.paths"): "plumbing: the registry of paths, no decision",
    ("protocol/variants.py", "Variant.path_steps"): "plumbing: forwards to paths.expand()",
    ("protocol/variants.py", "Variant.may_start"): "plumbing: forwards to the path's guard",
}
"""(module, function) -> why it is left out."""

EXCLUDED_NAMES: Final = frozenset({"__repr__", "__str__", "describe"})
"""Printing helpers, wherever they are."""

MESSAGE_ONLY_NAMES: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("protocol/mm.py", "free_page"): frozenset({"lazy", "state", "afip"}),
}
"""Locals that only word a violation's message: statements that write only these, and
conditions that read only these, are not mutated."""

OPERATORS: Final = (
    "negate_cond",
    "swap_cmp",
    "bool_const",
    "del_stmt",
    "and_or",
    "int_plus_one",
    "int_minus_one",
    "swap_stmts",
)

PURE_CALLS: Final = frozenset(
    {"_replace", "get", "len", "range", "tuple", "sorted", "enumerate", "any", "all", "frozenset"}
)
"""Calls that neither write state nor depend on order (for ``commute``)."""

_CMP_SWAPS: Final[dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]]] = {
    ast.Lt: (ast.LtE, ast.Gt),
    ast.LtE: (ast.Lt, ast.GtE),
    ast.Gt: (ast.GtE, ast.Lt),
    ast.GtE: (ast.Gt, ast.LtE),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
}


@dataclass(frozen=True)
class Mutant:
    """One edit of one file: bytes ``start:end`` of ``file`` become ``replacement``."""

    id: str
    file: str
    function: str
    operator: str
    line: int
    col: int
    end_line: int
    original: str
    """The code replaced, unparsed (formatting-free); two statements for a swap."""
    mutated: str
    """What replaces it, unparsed."""
    start: int
    end: int
    replacement: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def apply(self, source: bytes) -> bytes:
        return source[: self.start] + self.replacement.encode() + source[self.end :]

    def mutated_lines(self, source: bytes) -> str:
        """The mutated file's lines that hold the edit, stripped and joined by `` / ``."""
        new = self.apply(source)
        first = new.rfind(b"\n", 0, self.start) + 1
        last = new.find(b"\n", self.start + len(self.replacement.encode()))
        text = new[first : len(new) if last < 0 else last].decode()
        return " / ".join(s.strip() for s in text.splitlines() if s.strip())

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


IDENTITY: Final = "identity"


def identity(file: str) -> Mutant:
    """The "mutant" that changes nothing: the harness must not kill it."""
    return Mutant("identity", file, "", IDENTITY, 0, 0, 0, "", "", 0, 0, "")


# --- enumeration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Site:
    function: str
    operator: str
    line: int
    col: int
    end_line: int
    original: str
    mutated: str
    start: int
    end: int
    replacement: str


class _Offsets:
    """Byte offsets of (line, col) positions; ast's col_offset counts UTF-8 bytes."""

    def __init__(self, source: bytes) -> None:
        self.source = source
        self.starts = [0]
        for i, b in enumerate(source):
            if b == 0x0A:
                self.starts.append(i + 1)

    def span(self, node: ast.expr | ast.stmt) -> tuple[int, int]:
        assert node.end_lineno is not None and node.end_col_offset is not None
        start = self.starts[node.lineno - 1] + node.col_offset
        return start, self.starts[node.end_lineno - 1] + node.end_col_offset

    def text(self, node: ast.expr | ast.stmt) -> str:
        a, b = self.span(node)
        return self.source[a:b].decode()


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


_Function = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(tree: ast.Module) -> Iterator[tuple[str, _Function]]:
    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, _Function]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                yield prefix + child.name, child
                yield from visit(child, f"{prefix}{child.name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")

    yield from visit(tree, "")


def _names(node: ast.AST) -> set[str]:
    """Every variable and attribute name that ``node`` mentions."""
    out: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
    return out


def _written(target: ast.expr) -> set[str]:
    """What an assignment to ``target`` writes: a variable, or an attribute's name (the
    attribute of *any* object of that name, so aliases cannot hide a conflict)."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, ast.Attribute):
        return {target.attr}
    if isinstance(target, ast.Subscript):
        return _written(target.value)
    if isinstance(target, ast.Tuple | ast.List):
        return set().union(*(_written(e) for e in target.elts))
    if isinstance(target, ast.Starred):
        return _written(target.value)
    return {"<unknown>"}


def _writes(stmt: ast.stmt) -> set[str] | None:
    """The names a simple statement writes, or None if it is not simple or calls something
    that is not known to be pure."""
    for n in ast.walk(stmt):
        if isinstance(n, ast.Call):
            f = n.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name not in PURE_CALLS:
                return None
        elif isinstance(n, ast.NamedExpr | ast.Lambda | ast.Await | ast.Yield | ast.YieldFrom):
            return None
    if isinstance(stmt, ast.Assign):
        return set().union(*(_written(t) for t in stmt.targets))
    if isinstance(stmt, ast.AugAssign | ast.AnnAssign):
        return _written(stmt.target)
    if isinstance(stmt, ast.Expr):
        return set()
    return None


def commute(a: ast.stmt, b: ast.stmt) -> bool:
    """Whether swapping ``a; b`` into ``b; a`` cannot change anything: both are simple, call
    only pure functions, and neither writes what the other reads or writes."""
    wa, wb = _writes(a), _writes(b)
    if wa is None or wb is None:
        return False
    return not (wa & _names(b)) and not (wb & _names(a))


class _Walker:
    def __init__(self, file: str, source: bytes, function: str, fn: ast.AST) -> None:
        self.offsets = _Offsets(source)
        self.function = function
        self.message_only = MESSAGE_ONLY_NAMES.get((file, function), frozenset())
        self.sites: list[_Site] = []
        self.fn = fn

    def add(
        self, op: str, node: ast.expr | ast.stmt, original: str, mutated: str, text: str
    ) -> None:
        start, end = self.offsets.span(node)
        self.sites.append(
            _Site(
                self.function,
                op,
                node.lineno,
                node.col_offset,
                node.end_lineno or node.lineno,
                original,
                mutated,
                start,
                end,
                text,
            )
        )

    def message_stmt(self, stmt: ast.stmt) -> bool:
        if not self.message_only:
            return False
        if isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            return all(isinstance(t, ast.Name) and t.id in self.message_only for t in targets)
        if isinstance(stmt, ast.If):
            return _names(stmt.test) <= self.message_only and all(
                self.message_stmt(s) for s in stmt.body + stmt.orelse
            )
        return False

    # statements -----------------------------------------------------------------------
    def block(self, stmts: Sequence[ast.stmt], top: bool = False) -> None:
        body = [s for i, s in enumerate(stmts) if not (top and i == 0 and _is_docstring(s))]
        for s in body:
            self.stmt(s)
        for a, b in itertools.pairwise(body):
            if any(self.skipped(x) or self.message_stmt(x) for x in (a, b)) or commute(a, b):
                continue
            (sa, ea), (sb, eb) = self.offsets.span(a), self.offsets.span(b)
            src = self.offsets.source
            between = src[ea:sb].decode()
            text = src[sb:eb].decode() + between + src[sa:ea].decode()
            original = ast.unparse(a) + "\n" + ast.unparse(b)
            mutated = ast.unparse(b) + "\n" + ast.unparse(a)
            self.sites.append(
                _Site(
                    self.function,
                    "swap_stmts",
                    a.lineno,
                    a.col_offset,
                    b.end_lineno or b.lineno,
                    original,
                    mutated,
                    sa,
                    eb,
                    text,
                )
            )

    @staticmethod
    def skipped(s: ast.stmt) -> bool:
        return isinstance(
            s,
            ast.Assert
            | ast.Import
            | ast.ImportFrom
            | ast.FunctionDef
            | ast.AsyncFunctionDef
            | ast.ClassDef
            | ast.Pass,
        )

    def stmt(self, s: ast.stmt) -> None:
        if self.skipped(s) or self.message_stmt(s):
            return
        if (
            isinstance(s, ast.Assign | ast.AugAssign)
            or (isinstance(s, ast.AnnAssign) and s.value is not None)
            or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Call))
        ):
            self.add("del_stmt", s, ast.unparse(s), "pass", "pass")
        if isinstance(s, ast.If | ast.While):
            self.negate(s.test)
        # expressions of this statement (not of the blocks inside it)
        for name, value in ast.iter_fields(s):
            if name in ("body", "orelse", "finalbody", "handlers", "annotation", "returns"):
                continue
            if name == "targets" or (name == "target" and not isinstance(s, ast.For)):
                for t in value if isinstance(value, list) else [value]:
                    self.target(t)
                continue
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, ast.expr):
                    self.expr(v)
        for name in ("body", "orelse", "finalbody"):
            sub = getattr(s, name, None)
            if sub:
                self.block(sub)
        for h in getattr(s, "handlers", []):
            self.block(h.body)

    def target(self, t: ast.expr) -> None:
        """Only the expressions inside an assignment target (subscripts), not the target."""
        if isinstance(t, ast.Subscript):
            self.expr(t.value)
            self.expr(t.slice)
        elif isinstance(t, ast.Attribute):
            self.expr(t.value)
        elif isinstance(t, ast.Tuple | ast.List):
            for e in t.elts:
                self.target(e)

    # expressions ----------------------------------------------------------------------
    def negate(self, test: ast.expr) -> None:
        if _names(test) and _names(test) <= self.message_only:
            return
        t = self.offsets.text(test)
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            inner = self.offsets.text(test.operand)
            self.add(
                "negate_cond", test, ast.unparse(test), ast.unparse(test.operand), f"({inner})"
            )
        else:
            neg = ast.UnaryOp(ast.Not(), test)
            self.add("negate_cond", test, ast.unparse(test), ast.unparse(neg), f"(not ({t}))")

    def expr(self, e: ast.expr) -> None:
        if isinstance(e, ast.JoinedStr):
            return  # a message or a trace line
        if isinstance(e, ast.Lambda):
            self.expr(e.body)
            return
        if isinstance(e, ast.IfExp):
            self.negate(e.test)
        elif isinstance(e, ast.Compare):
            for i, op in enumerate(e.ops):
                for new in _CMP_SWAPS.get(type(op), ()):
                    ops = list(e.ops)
                    ops[i] = new()
                    m = ast.Compare(e.left, ops, e.comparators)
                    self.add("swap_cmp", e, ast.unparse(e), ast.unparse(m), f"({ast.unparse(m)})")
        elif isinstance(e, ast.BoolOp):
            flipped = ast.BoolOp(ast.Or() if isinstance(e.op, ast.And) else ast.And(), e.values)
            self.add("and_or", e, ast.unparse(e), ast.unparse(flipped), f"({ast.unparse(flipped)})")
        elif isinstance(e, ast.Constant):
            if isinstance(e.value, bool):
                self.add("bool_const", e, repr(e.value), repr(not e.value), repr(not e.value))
            elif isinstance(e.value, int):
                for name, d in (("int_plus_one", 1), ("int_minus_one", -1)):
                    n = e.value + d
                    self.add(name, e, repr(e.value), repr(n), f"({n})" if n < 0 else repr(n))
        elif isinstance(e, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            for gen in e.generators:
                for cond in gen.ifs:
                    self.negate(cond)
        for child in ast.iter_child_nodes(e):
            if isinstance(child, ast.expr):
                self.expr(child)
            elif isinstance(child, ast.comprehension):
                self.expr(child.iter)
                for cond in child.ifs:
                    self.expr(cond)
            elif isinstance(child, ast.keyword):
                self.expr(child.value)


def _mutant_id(file: str, site: _Site, occurrence: int) -> str:
    key = "\0".join(
        (file, site.function, site.operator, site.original, site.mutated, str(occurrence))
    )
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def enumerate_source(file: str, source: bytes) -> list[Mutant]:
    """Every mutant of ``source`` (the text of ``file``, a path relative to the repository),
    sorted by position, operator and id."""
    tree = ast.parse(source)
    sites: list[_Site] = []
    for qualname, fn in _functions(tree):
        name = qualname.rsplit(".", 1)[-1]
        if (file, qualname) in EXCLUDED_FUNCTIONS or name in EXCLUDED_NAMES:
            continue
        w = _Walker(file, source, qualname, fn)
        w.block(fn.body, top=True)
        sites += w.sites
    sites.sort(key=lambda s: (s.line, s.col, s.operator, s.mutated, s.start, s.end))
    seen: dict[tuple[str, str, str, str], int] = {}
    out = []
    for s in sites:
        k = (s.function, s.operator, s.original, s.mutated)
        n = seen[k] = seen.get(k, -1) + 1
        out.append(
            Mutant(
                _mutant_id(file, s, n),
                file,
                s.function,
                s.operator,
                s.line,
                s.col,
                s.end_line,
                s.original,
                s.mutated,
                s.start,
                s.end,
                s.replacement,
            )
        )
    return out


def enumerate_mutants(root: Path = REPO, modules: Sequence[str] = MODULES) -> list[Mutant]:
    """Every mutant of ``modules`` under ``root``, in a fixed order: (file, line, col,
    operator, id)."""
    out: list[Mutant] = []
    for f in modules:
        out += enumerate_source(f, (root / f).read_bytes())
    out.sort(key=lambda m: (m.file, m.line, m.col, m.operator, m.id))
    return out


def sample(mutants: Sequence[Mutant], n: int, seed: int) -> list[Mutant]:
    """``n`` of ``mutants`` (all if fewer), drawn by ``random.Random(seed)`` from the fixed
    order, then put back in that order."""
    if n >= len(mutants):
        return list(mutants)
    index = {m.id: i for i, m in enumerate(mutants)}
    picked = random.Random(seed).sample(list(mutants), n)
    return sorted(picked, key=lambda m: index[m.id])


def check_applies(m: Mutant, source: bytes) -> None:
    """The mutated file still parses, and differs from the original in its AST. Only the
    top-level statement that holds the edit is parsed again: the statements around it are
    unchanged, and a module is its statements, so the file parses if that one does, and the
    ASTs (positions left out) differ if its ASTs differ."""
    grow = len(m.replacement.encode()) - (m.end - m.start)
    holds = [(a, b, d) for a, b, d in _top_level(source) if a <= m.start and m.end <= b]
    if holds:
        (start, end, dump), *_ = holds
        new = m.apply(source)[start : end + grow]
    else:  # not inside one statement: the whole file
        new, dump = m.apply(source), ast.dump(ast.parse(source))
    if ast.dump(ast.parse(new)) == dump:
        raise ValueError(f"mutant {m.id} ({m.where} {m.operator}) changes nothing")


@functools.cache
def _top_level(source: bytes) -> tuple[tuple[int, int, str], ...]:
    """A module's top-level statements: the bytes each spans (its decorators and whole
    lines), and the AST of those bytes parsed alone."""
    offsets = list(
        itertools.accumulate((len(x) for x in source.splitlines(keepends=True)), initial=0)
    )
    out = []
    for node in ast.parse(source).body:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])
        assert node.end_lineno is not None
        start, end = offsets[first - 1], offsets[node.end_lineno]
        out.append((start, end, ast.dump(ast.parse(source[start:end]))))
    return tuple(out)
