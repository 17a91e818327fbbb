"""A corpus file as a pytest test one can paste: ``tlbfuzz show --format python FILE``.

The counterpart of the program Hypothesis prints for a failing state machine: the world built
with ``World.initial(...)``, then one ``w.apply(parse(...))`` per step with the CPU's view of it
as a comment, then the verdict the file expects.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import attrs

from tlbfuzz.fuzz.mail import c_text
from tlbfuzz.protocol import VARIANTS, Budget, Config

if TYPE_CHECKING:
    from tlbfuzz.fuzz.corpus import Entry


LINE = 100
"""ruff's line length in this project, and a common one elsewhere."""


def function_name(e: Entry) -> str:
    raw = f"test_{e.variant.name}_{e.prop}_{len(e.schedule)}"
    return re.sub(r"\W", "_", raw)


def _call(obj: Config | Budget) -> str:
    """An attrs record as a constructor call naming only the fields off their defaults; a
    budget as ``Budget(rest=0, madvise=1, ...)`` (its kinds are keywords)."""
    if isinstance(obj, Budget):
        rest = [] if obj.rest is None else [f"rest={obj.rest}"]
        return f"Budget({', '.join([*rest, *(f'{k}={n}' for k, n in obj.counts)])})"
    parts = []
    for f in attrs.fields(type(obj)):
        value = getattr(obj, f.name)
        if value != f.default:
            parts.append(f"{f.name}={_value(value)}")
    return f"{type(obj).__name__}({', '.join(parts)})"


def _value(value: object) -> str:
    if isinstance(value, Budget):
        return _call(value)
    if isinstance(value, tuple):  # cpu_budget: ((cpu, Budget), ...)
        items = [_value(v) for v in value]
        return f"({', '.join(items)}{',' if len(items) == 1 else ''})"
    return repr(value)


def render_python(e: Entry) -> str:
    """Source of one test function (with its imports) that replays ``e`` and asserts what
    the file expects."""
    names = ["Budget", "Config", "World", "parse"]
    if "Budget(" not in _call(e.config):
        names.remove("Budget")
    if e.variant_ref in VARIANTS:
        imports = [f"from tlbfuzz.protocol import {', '.join(['VARIANTS', *names])}"]
        variant = f'VARIANTS["{e.variant_ref}"]'
    else:
        imports = [
            "from tlbfuzz.fuzz.user import cli_variant",
            f"from tlbfuzz.protocol import {', '.join(names)}",
        ]
        variant = f"cli_variant({json.dumps(e.variant_ref)})"
    verb = "breaks" if e.expect == "violates" else "holds over"
    lines = [
        *imports,
        "",
        "",
        f"def {function_name(e)}() -> None:",
        f'    """{e.variant.name}: {e.prop} {verb} this schedule."""',
    ]
    if e.path is not None:
        lines.append(f"    # tlbfuzz show --format python {e.path}")
    lines += [f"    w = World.initial({variant}, {_call(e.config)})"]
    for a in e.schedule:
        who = "alloc" if a.cpu < 0 else f"CPU{a.cpu}"
        code, note = f"    w.apply(parse({json.dumps(str(a))}))", f"# {who}: {c_text(a)}"
        line = f"{code}  {note}"
        lines += [line] if len(line) <= LINE else [f"    {note}", code]
    check = "assert w.violations" if e.expect == "violates" else "assert not w.violations"
    lines.append(f'    {check}(["{e.prop}"])')
    return "\n".join(lines) + "\n"
