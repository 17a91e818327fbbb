"""User variants: ``file.py:NAME`` typed on the command line, never named by a corpus file alone.

A variant file is code, so only a file the user typed runs: ``-v file.py:NAME`` (fuzz,
explore) or ``--variants file.py`` (replay, show). A corpus file that names ``file.py:NAME``
resolves only against the files passed that way (matched by file name and NAME); otherwise it
is an error, and nothing is imported.

Errors in the user's code are the user's errors, reported in one line with the file and line:
at import (any exception, also ``SystemExit`` and ``KeyboardInterrupt`` raised by the file),
in a switch of the wrong type, and at run time (a decision method that raises or returns the
wrong type) through a checked copy of the variant whose decision methods are wrapped.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import itertools
import os
import shlex
import stat
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from tlbfuzz.protocol import VARIANTS, Config, Step, Variant, World

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from types import TracebackType

MAX_SOURCE_BYTES: Final = 1 << 20
"""A variant file larger than 1 MiB is refused (examples/my_variant.py is 1.7 KB)."""


class UserVariantError(BaseException):
    """The user's variant code failed: one line with its file and line.

    A BaseException, not an Exception, on purpose: Hypothesis treats an Exception raised
    inside a test as a failure to shrink and report; this is not a finding, so it must leave
    the run at once, as KeyboardInterrupt does.
    """


@attrs.frozen
class UserVariant:
    variant: Variant
    file: Path  # as the user typed it
    attr: str


def _shown(path: Path) -> str:
    return str(path)


def _line_in(tb: TracebackType | None, file: Path, default: int) -> int:
    """The deepest line of ``tb`` in ``file`` (the user's own line), else ``default``."""
    want = os.path.realpath(file)
    line = default
    for frame, lineno in traceback.walk_tb(tb):
        if os.path.realpath(frame.f_code.co_filename) == want:
            line = lineno
    return line


def _check_source(path: Path, shown: str) -> None:
    try:
        st = os.stat(path)
    except OSError as e:
        raise UserVariantError(f"variant file {shown}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserVariantError(f"variant file {shown}: not a regular file")
    if st.st_size > MAX_SOURCE_BYTES:
        raise UserVariantError(f"variant file {shown}: larger than 1 MiB")
    if path.suffix != ".py":
        raise UserVariantError(f"variant file {shown}: not a .py file")


_IMPORTED: dict[str, tuple[dict[str, Any], str]] = {}


def _import(file: Path) -> tuple[dict[str, Any], str]:
    """Run the user's file once per process; its globals and its source text."""
    shown = _shown(file)
    _check_source(file, shown)
    real = os.path.realpath(file)
    if real not in _IMPORTED:
        _IMPORTED[real] = _run_file(Path(real), shown)
    return _IMPORTED[real]


def _run_file(path: Path, shown: str) -> tuple[dict[str, Any], str]:
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    name = f"tlbfuzz_user_variant_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserVariantError(f"variant file {shown}: cannot load as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        raise UserVariantError(f"{shown}:{e.lineno}: syntax error: {e.msg}") from None
    except BaseException as e:  # the user's file may raise anything, even exit
        sys.modules.pop(name, None)
        line = _line_in(e.__traceback__, path, 1)
        what = f"{type(e).__name__}: {_one_line(e)}" if str(e) else type(e).__name__
        raise UserVariantError(f"{shown}:{line}: raised {what} on import") from None
    try:
        source = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        source = ""
    return vars(module), source


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _assignment_line(source: str, attr: str) -> int:
    """The line of the top-level statement that binds ``attr`` (1 if not found)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return 1
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        elif isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == attr:
            return node.lineno
        for t in targets:
            if isinstance(t, ast.Name) and t.id == attr:
                return node.lineno
    return 1


def _switch_errors(v: Variant) -> Iterable[str]:
    """Switches of the wrong type: each field of Variant must keep its default's type."""
    for f in attrs.fields(Variant):
        value = getattr(v, f.name)
        if isinstance(f.default, bool) and not isinstance(value, bool):
            yield f"switch {f.name} must be True or False, not {value!r}"[:200]
        elif f.type in ("str", str) and not isinstance(value, str):
            yield f"field {f.name} must be a string, not {value!r}"[:200]


def _return_error(annotation: object, result: object, args: tuple[object, ...]) -> str | None:
    """Why ``result`` does not fit the decision method's declared return type, if it does not."""
    if annotation in ("bool", bool):
        return None if isinstance(result, bool) else "want True or False"
    if annotation == "tuple[Step, ...]":
        ok = isinstance(result, tuple) and all(isinstance(s, Step) for s in result) and result
        return None if ok else "want a non-empty tuple of tlbfuzz.protocol.Step"
    if isinstance(annotation, str) and annotation.startswith("tuple["):
        if not isinstance(result, tuple):
            return "want a tuple"
        given = args[0] if args and isinstance(args[0], tuple) else None
        if given is not None and sorted(map(repr, result)) != sorted(map(repr, given)):
            return "want the same items, reordered"
    return None


def _decision_methods() -> list[str]:
    return [
        name
        for name, member in inspect.getmembers(Variant, inspect.isfunction)
        if not name.startswith("_")
    ]


def _wrap(method_name: str, original: Callable[..., Any], shown: str, ref: str) -> Any:
    code = getattr(original, "__code__", None)
    file = Path(code.co_filename) if code is not None else None
    def_line = code.co_firstlineno if code is not None else 1
    annotation = getattr(Variant, method_name).__annotations__.get("return")

    def checked(self: Variant, *args: object) -> object:
        try:
            result = original(self, *args)
        except (Exception, SystemExit, GeneratorExit) as e:
            line = _line_in(e.__traceback__, file, def_line) if file else def_line
            raise UserVariantError(
                f"{shown}:{line}: {method_name}() of {ref} raised "
                f"{type(e).__name__}: {_one_line(e)}"
            ) from None
        why = _return_error(annotation, result, args)
        if why is not None:
            got = repr(result)
            got = got if len(got) <= 60 else got[:57] + "..."
            raise UserVariantError(
                f"{shown}:{def_line}: {method_name}() of {ref} returned {got} "
                f"({type(result).__name__}); {why}"
            )
        return result

    checked.__name__ = method_name
    return checked


def checked_variant(v: Variant, file: Path, ref: str) -> Variant:
    """A copy of ``v`` whose overridden decision methods report the user's errors."""
    shown = _shown(file)
    cls = type(v)
    wrappers: dict[str, object] = {}
    for name in _decision_methods():
        mine = getattr(cls, name, None)
        if mine is not None and mine is not getattr(Variant, name):
            wrappers[name] = _wrap(name, mine, shown, ref)
    return with_methods(v, wrappers) if wrappers else v


def with_methods(v: Variant, methods: dict[str, object]) -> Variant:
    """A copy of ``v`` whose class is a subclass of its own with ``methods`` (and
    ``__slots__``) in it: the same switches, the same name, some methods wrapped."""
    cls = type(v)
    sub = type(cls.__name__, (cls,), {"__slots__": (), **methods})
    new: Variant = object.__new__(sub)
    for f in attrs.fields(cls):
        object.__setattr__(new, f.name, getattr(v, f.name))
    for k, value in getattr(v, "__dict__", {}).items():
        object.__setattr__(new, k, value)
    return new


def _probe(v: Variant, ref: str, shown: str, line: int) -> None:
    """Run the variant a little (deterministic walks), so that a method that always fails
    fails before any fuzzing, not minutes into it."""
    try:
        for cpus in (2, 3):
            w0 = World.initial(v, Config(cpus=cpus))
            for walk in range(4):
                w = w0.copy()
                for i in range(60):
                    acts = w.enabled_actions()
                    if not acts:
                        break
                    w.apply(acts[(i * 7919 + walk * 104729) % len(acts)])
                    w.violations()
    except UserVariantError:
        raise
    except Exception as e:  # the model choked on what a method returned
        raise UserVariantError(
            f"{shown}:{line}: {ref} breaks the model: {type(e).__name__}: {_one_line(e)}"
        ) from None


def load_user_variant(file: Path, attr: str, ref: str | None = None) -> UserVariant:
    """``attr`` of the user's ``file``, checked. Runs the file (the user typed its name)."""
    shown = _shown(file)
    ref = ref or f"{file}:{attr}"
    namespace, source = _import(file)
    if attr not in namespace:
        names = sorted(k for k, val in namespace.items() if isinstance(val, Variant))
        hint = f" (it has: {', '.join(names)})" if names else " (it defines no Variant)"
        raise UserVariantError(f"variant file {shown} has no {attr!r}{hint}")
    v = namespace[attr]
    line = _assignment_line(source, attr)
    if not isinstance(v, Variant):
        raise UserVariantError(f"{shown}:{line}: {attr} is not a tlbfuzz.protocol.Variant")
    for why in _switch_errors(v):
        raise UserVariantError(f"{shown}:{line}: {attr}: {why}")
    checked = checked_variant(v, file, ref)
    _probe(checked, ref, shown, line)
    return UserVariant(checked, file, attr)


def variants_in(file: Path) -> dict[str, UserVariant]:
    """Every module-level Variant of the user's ``file`` (``--variants FILE``)."""
    namespace, _ = _import(file)
    names = [k for k, val in namespace.items() if isinstance(val, Variant) and k.isidentifier()]
    return {k: load_user_variant(file, k) for k in names}


def split_ref(ref: str) -> tuple[str, str] | None:
    """``path.py:NAME`` as (path, NAME), or None if ``ref`` is not of that form."""
    file, sep, attr = ref.rpartition(":")
    if not sep or not file or not attr.isidentifier():
        return None
    return file, attr


def replay_command(ref: str | None, path: object, on: str | None = None) -> str:
    """The command that replays a corpus file of the variant ``ref`` (on the variant ``on``,
    if given: ``replay --on``). A corpus file never loads code, so a user variant's file
    (``file.py:NAME``) goes with ``--variants``."""
    files = [
        shlex.quote(parts[0])
        for r in (ref, on)
        if r is not None and r not in VARIANTS and (parts := split_ref(r)) is not None
    ]
    words = ["tlbfuzz", "replay", *(f"--variants {f}" for f in dict.fromkeys(files))]
    if on is not None:
        words.append(f"--on {shlex.quote(on)}")
    return " ".join([*words, shlex.quote(str(path))])


def user_variant(ref: str) -> UserVariant | None:
    """``ref`` as the user's variant it names (``path.py:NAME``: runs that file), or None for
    a built-in name."""
    if ref in VARIANTS:
        return None
    parts = split_ref(ref)
    if parts is None:
        known = ", ".join(VARIANTS)
        raise UserVariantError(f"unknown variant {ref!r} (built-in: {known}; or file.py:NAME)")
    return load_user_variant(Path(parts[0]), parts[1], ref)


def cli_variant(ref: str) -> Variant:
    """A variant the user typed: a built-in name or ``path.py:NAME`` (runs that file)."""
    uv = user_variant(ref)
    return VARIANTS[ref] if uv is None else uv.variant


@attrs.define
class Registry:
    """User variants passed on the command line, by (file name, NAME): what a corpus file's
    ``file.py:NAME`` may resolve to."""

    by_key: dict[tuple[str, str], list[UserVariant]] = attrs.Factory(dict)

    def add_file(self, file: Path) -> None:
        found = variants_in(file)
        if not found:
            raise UserVariantError(f"variant file {file} defines no tlbfuzz.protocol.Variant")
        for uv in found.values():
            self.add(uv)

    def add(self, uv: UserVariant) -> None:
        entries = self.by_key.setdefault((uv.file.name, uv.attr), [])
        if all(os.path.realpath(e.file) != os.path.realpath(uv.file) for e in entries):
            entries.append(uv)

    def files(self) -> list[str]:
        seen = dict.fromkeys(
            str(uv.file) for uv in itertools.chain.from_iterable(self.by_key.values())
        )
        return list(seen)

    def resolve(self, ref: str) -> Variant:
        """A corpus file's variant: built-in, or one of the files passed. Never imports."""
        if ref in VARIANTS:
            return VARIANTS[ref]
        parts = split_ref(ref)
        if parts is None:
            known = ", ".join(VARIANTS)
            raise LookupError(f"unknown variant {ref!r} (built-in: {known}; or file.py:NAME)")
        file, attr = parts
        found = self.by_key.get((Path(file).name, attr), [])
        if len(found) == 1:
            return found[0].variant
        if len(found) > 1:
            raise LookupError(
                f"variant {ref!r} is ambiguous: {attr} is in "
                + " and ".join(str(uv.file) for uv in found)
            )
        passed = self.files()
        where = f" (passed: {', '.join(passed)})" if passed else ""
        raise LookupError(
            f"variant {ref!r} is a user variant: pass its file with --variants "
            f"{Path(file).name}{where}; a corpus file never loads code"
        )


__all__ = [
    "Registry",
    "UserVariant",
    "UserVariantError",
    "checked_variant",
    "cli_variant",
    "load_user_variant",
    "replay_command",
    "split_ref",
    "user_variant",
    "variants_in",
]
