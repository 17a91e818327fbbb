"""Actions: one atomic step of the model, named in kernel vocabulary.

``str(action)`` is the schedule line a human reads and a corpus file stores, and
``parse(str(action)) == action``::

    cpu0 madvise_dontneed va=0x1000
    cpu0 flush_tlb_mm_range__inc_mm_tlb_gen
    cpu1 flush_smp_call_function_queue
    cpu1 tlb_fill va=0x1000
    alloc_page pfn=3 to=device

A kernel path is started by an action named after its first step (with the path's arguments)
and continued by actions named after its later steps (no arguments: the CPU's program counter
says where it is). Hardware events and NMIs are single actions.
"""

from __future__ import annotations

from typing import Final, Protocol

import attrs

from tlbfuzz.protocol.state import KTHREAD, mm_name

GLOBAL: Final = -1
"""The ``cpu`` of an action no CPU performs (the page allocator's reuse of a free frame)."""


class _Printer(Protocol):
    def text(self, s: str) -> None: ...


class ParseError(ValueError):
    """A schedule line that is not an action."""


def _fmt(name: str, value: int) -> str:
    if name == "va":
        return f"{value:#x}"
    if name == "mm":
        return mm_name(value)
    if name == "next":
        return "kthread" if value == KTHREAD else mm_name(value)
    if name == "to":
        return "device" if value == 0 else mm_name(value)
    if name == "target":
        return f"cpu{value}"
    return str(value)


MAX_VALUE_TEXT: Final = 20
"""The longest argument value a schedule line may hold (a 64-bit number in decimal)."""


def _parse_value(name: str, text: str) -> int:
    if len(text) > MAX_VALUE_TEXT:
        raise ParseError(f"value of {name} is longer than {MAX_VALUE_TEXT} characters")
    try:
        if name == "va":
            return int(text, 16)
        if name in ("mm", "next", "to"):
            if text == "kthread" and name == "next":
                return KTHREAD
            if text == "device" and name == "to":
                return 0
            if len(text) == 1 and text.isalpha() and text.isupper():
                return ord(text) - ord("A") + 1
            raise ValueError(text)
        if name == "target":
            if not text.startswith("cpu"):
                raise ValueError(text)
            return int(text[3:])
        return int(text)
    except ValueError:
        raise ParseError(f"bad value {text!r} for {name}") from None


@attrs.frozen(cache_hash=True, repr=False)
class Action:
    """One step: which CPU (or GLOBAL), which operation, and its arguments."""

    cpu: int
    op: str
    args: tuple[tuple[str, int], ...] = ()

    def arg(self, name: str) -> int:
        for k, v in self.args:
            if k == name:
                return v
        raise KeyError(f"{self} has no argument {name!r}")

    def __repr__(self) -> str:
        # Executable, so that Hypothesis prints a failing run as code one can paste.
        return f"parse({str(self)!r})"

    def _repr_pretty_(self, p: _Printer, cycle: bool) -> None:
        """The hook of the IPython-style pretty printer Hypothesis uses for its reports."""
        p.text(repr(self))

    def __str__(self) -> str:
        head = f"cpu{self.cpu} {self.op}" if self.cpu != GLOBAL else self.op
        if not self.args:
            return head
        return head + " " + " ".join(f"{k}={_fmt(k, v)}" for k, v in self.args)


def parse(line: str) -> Action:
    """The inverse of ``str(action)``. Raises ParseError with the reason."""
    words = line.split()
    if not words:
        raise ParseError("empty action")
    cpu = GLOBAL
    if words[0].startswith("cpu"):
        try:
            cpu = int(words[0][3:])
        except ValueError:
            raise ParseError(f"bad CPU {words[0]!r}") from None
        words = words[1:]
        if not words:
            raise ParseError(f"no operation after {line.split(maxsplit=1)[0]!r}")
    op, rest = words[0], words[1:]
    if not op.replace("_", "").isalnum():
        raise ParseError(f"bad operation {op!r}")
    args = []
    for w in rest:
        name, sep, value = w.partition("=")
        if not sep or not name:
            raise ParseError(f"bad argument {w!r} (want name=value)")
        args.append((name, _parse_value(name, value)))
    return Action(cpu, op, tuple(args))
