"""Kernel paths as records: one declaration per path, next to the step functions that run it.

A *path* is a piece of kernel code a CPU runs from start to return: a syscall (madvise, munmap),
a context switch, writeback of one page, a cross-call. Its record says everything the model
needs to run it, in one place:

- its name and the budget kind it spends (``Config.budget`` bounds how often a CPU starts it);
- its arguments (``VA``: one user address; ``MM_VA``: a page of any mm; ``TARGET_VA``: another
  CPU and an address; ``NEXT_MM``/``NEXT_KTHREAD``: the task switched to), and ``may_start``,
  the guard on them (``always`` if any arguments do);
- its steps, each a ``Step`` (the function that runs it, and the guard it spins on, if any),
  with ``Inline`` placeholders for the code a variant decides (``flush_tlb_mm_range()``'s steps,
  ``switch_mm_irqs_off()``'s order): ``Variant.path_steps()`` expands them;
- what it does when it returns (``returns``).

A step runs as one atomic action named after it (``cpu1 flush_tlb_mm_range__inc_mm_tlb_gen``);
the first step also starts the path, with the path's arguments (``cpu1 madvise_dontneed
va=0x1000``). Starting is a step like any other: if the first step's guard does not hold, the CPU
enters the path and spins there (``csd_lock()`` of a csd still in use).

Everything else is derived from the records: the budget kinds (``budget_kinds()``), the
``ActionTable`` rows, the fuzzer's focus kinds and the explorer's ``--budget`` names. A module
declares a path with ``register(Path(...))``; a variant file adds its own through
``Variant.extra_paths`` (``examples/new_path.py``).

This module imports nothing of the model's state, so every kernel module can import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import attrs

from tlbfuzz.protocol.state import KTHREAD, Locals

if TYPE_CHECKING:
    from tlbfuzz.protocol.config import Config
    from tlbfuzz.protocol.variants import Variant
    from tlbfuzz.protocol.world import World

StepFn = Callable[["World", int], None]
"""A step: ``fn(w, cpu)`` changes the world as one atomic action of ``cpu``."""
Guard = Callable[["World", int], bool]
"""``guard(w, cpu)``: may the step run now? (False: the CPU spins on it.)"""
StartGuard = Callable[["World", int, Locals], bool]
"""``may_start(w, cpu, locals)``: may ``cpu`` start the path with these arguments now?"""
PagePicker = Callable[["World", int, Locals], int]
"""``page(w, cpu, locals)``: the page a path locks as it starts (NO_PFN: none)."""


@attrs.frozen
class Step:
    """One atomic step of kernel code.

    ``name`` is the action's op: the kernel function, with ``__`` and the part of it this step
    is when the function is split (``flush_tlb_mm_range__inc_mm_tlb_gen``), so that it greps
    into the kernel source. ``c`` is how a reviewer writes it in a mail (``inc_mm_tlb_gen()``).
    """

    name: str
    run: StepFn
    guard: Guard | None = None
    """Spin here while this is False (``csd_lock()``, ``csd_lock_wait()``)."""
    skip: Guard | None = None
    """Decided when the step before ends: True leaves this step out (no wait when no IPI was
    sent)."""
    c: str = attrs.field(
        default=attrs.Factory(lambda self: f"{self.name.rpartition('__')[2]}()", takes_self=True)
    )


@attrs.frozen
class Inline:
    """A run of steps that a variant decides: ``expand(variant, path_name)``. With ``skip``,
    the whole run is left out when it holds as the step before ends (a flush with nothing to
    flush)."""

    name: str
    expand: Callable[[Variant, str], tuple[Step, ...]]
    skip: Guard | None = None


@attrs.frozen
class BudgetKind:
    """A kind of budget: how many paths of this kind each CPU may start."""

    name: str
    default: int = 1
    """Per CPU, when a Config names no count for this kind."""
    fuzz_max: int = 2
    """The fuzzer draws 1..fuzz_max per CPU; 0: it draws none unless ``--budget`` asks."""
    shape: tuple[tuple[str, int], ...] = ()
    """Config fields without which no path of this kind can start (``(("anon_pages", 0),)``:
    khugepaged retracts only a page table that maps no anonymous page)."""


class ArgDomain(NamedTuple):
    """Which argument values a path may start with, on ``cpu`` in ``config``, whose user
    addresses are ``vas`` (``Kernel.vas``: the mapped pages, and a spare address if a path
    ``moves`` pages).

    ``rank`` orders the starts a CPU may take: by domain, then by value, then by path
    (so the madvise, mprotect and uaccess of one address stand together)."""

    names: tuple[str, ...]
    values: Callable[[Config, int, tuple[int, ...]], Sequence[tuple[int, ...]]]
    rank: int


NO_ARGS: Final = ArgDomain((), lambda config, cpu, vas: [()], 0)
VA: Final = ArgDomain(("va",), lambda config, cpu, vas: [(va,) for va in vas], 1)
MM_VA: Final = ArgDomain(
    ("mm", "va"),
    lambda config, cpu, vas: [(m, va) for m in range(1, config.mms + 1) for va in vas],
    2,
)
TARGET_VA: Final = ArgDomain(
    ("target", "va"),
    lambda config, cpu, vas: [(t, va) for t in range(config.cpus) if t != cpu for va in vas],
    3,
)
CPU_ARGS: Final = frozenset({"target"})
"""Action arguments whose value is a CPU number (renamed with the CPUs by symmetry, dropped
with a CPU by ``drop_cpu``)."""
NEXT_KTHREAD: Final = ArgDomain(("next",), lambda config, cpu, vas: [(KTHREAD,)], 4)
"""A context switch to a kernel thread (``next=kthread``)."""
NEXT_MM: Final = ArgDomain(
    ("next",), lambda config, cpu, vas: [(m,) for m in range(1, config.mms + 1)], 4
)
"""A context switch to a user task of an mm (``next=B``); same rank as ``NEXT_KTHREAD``, so
a CPU's switches are listed by the task they go to."""

FLUSH_TLB_MM_RANGE: Final = Inline(
    "flush_tlb_mm_range", lambda variant, path: variant.flush_steps(path)
)
"""The flush a path makes after changing PTEs: ``Variant.flush_steps(path)`` decides its steps."""
SWITCH_MM_IRQS_OFF: Final = Inline(
    "switch_mm_irqs_off", lambda variant, path: variant.switch_steps(path)
)
"""``switch_mm_irqs_off()`` (prev != next) and ``finish_task_switch()``: their order is
``Variant.switch_steps(path)``."""

ARG_TO_LOCAL: Final = {"va": "va", "mm": "mm", "target": "target", "next": "next_task"}
"""Where a path's arguments land in its locals."""


@attrs.frozen
class Path:
    """A kernel path (see the module docstring)."""

    name: str
    budget: BudgetKind
    args: ArgDomain
    may_start: StartGuard
    steps: tuple[Step | Inline, ...]
    returns: StepFn | None = None
    """What the path does once its last step has run (mprotect's promise takes effect)."""
    from_user: bool = False
    """A syscall: only a CPU running a user task may start it."""
    irqs_off: bool = False
    """Runs with IRQs disabled from its first step (``context_switch()``)."""
    focus: str = ""
    """The fuzzer's name for this kind of path (default: the name); paths that share one are
    drawn together (a context switch either switches mm or leaves lazy mode)."""
    holds: tuple[tuple[str, int], ...] = ()
    """Locals the path has from its start, before its first step can spin: the locks it
    takes first (``(("mmap_lock", 2),)``: ``mmap_write_lock()`` before the PTL)."""
    locks_page: PagePicker | None = None
    """The page whose lock (PG_locked) the path holds from its start to its return
    (writeback, reclaim, migration): ``lock_page()`` elsewhere waits for it. It is kept in
    ``Locals.page`` from the start, so the path follows the page and not its address (the
    rmap finds a page mremap moved at its new address)."""
    allocates: bool = False
    """Allocates a new page (a COW copy, a migration target): the world starts with one spare
    free frame per start of it the budgets allow (``World.initial``)."""
    moves: bool = False
    """Moves a PTE to an address no vma maps (mremap): if the budgets allow a start of it,
    the address space has one spare address past the mapped pages (``Kernel.vas``). One is
    enough: a move holds ``mmap_write_lock()`` and leaves its old address unmapped."""
    background: bool = False
    """Traffic from elsewhere (another subsystem's cross-call), not a path under study: the
    fuzzer turns it on with a coin, like NMIs."""
    summary: str = ""

    @property
    def focus_kind(self) -> str:
        return self.focus or self.name


PATHS: Final[dict[str, Path]] = {}
"""Every built-in kernel path, by name, in the order the modules declare them."""


def register(path: Path) -> Path:
    """Declare a built-in path (called at import by the module of the kernel file it models)."""
    if path.name in PATHS:
        raise ValueError(f"kernel path {path.name!r} is declared twice")
    PATHS[path.name] = path
    return path


def budget_kinds(paths: Mapping[str, Path]) -> tuple[BudgetKind, ...]:
    """The budget kinds of ``paths``, in the order they first appear."""
    out: dict[str, BudgetKind] = {}
    for p in paths.values():
        known = out.setdefault(p.budget.name, p.budget)
        if known != p.budget:
            raise ValueError(f"budget kind {p.budget.name!r} is declared twice, differently")
    return tuple(out.values())


def shape_for(
    kinds: Iterable[BudgetKind], shape: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """``shape`` (Config fields) with the fields each of ``kinds`` needs to start
    (``BudgetKind.shape``) added; None where a kind's field disagrees with ``shape`` or
    with another kind's."""
    out = dict(shape or {})
    for k in kinds:
        for field, n in k.shape:
            if out.setdefault(field, n) != n:
                return None
    return out


def expand(variant: Variant, path: Path, steps: tuple[Step | Inline, ...]) -> tuple[Step, ...]:
    """``steps`` with every ``Inline`` replaced by what ``variant`` decides for ``path``."""
    out: list[Step] = []
    for s in steps:
        if isinstance(s, Inline):
            run = s.expand(variant, path.name)
            if s.skip is not None:
                run = tuple(skipping(st, s.skip) for st in run)
            out.extend(run)
        else:
            out.append(s)
    return tuple(out)


def skipping(step: Step, skip: Guard) -> Step:
    """``step``, also skipped when ``skip`` holds (its own skip still applies)."""
    own = step.skip
    return attrs.evolve(step, skip=skip if own is None else EitherSkip(skip, own))


@attrs.frozen
class EitherSkip:
    """A step's skip: the run's or its own (compared by value, so that two kernels built
    from the same records have equal steps)."""

    run: Guard
    own: Guard

    def __call__(self, w: World, cpu: int) -> bool:
        return self.run(w, cpu) or self.own(w, cpu)


class Site(NamedTuple):
    """Where a decision is asked: the path a CPU runs and the step it is in (``""`` for
    both outside any path, e.g. an NMI or the IPI handler)."""

    path: str
    step: str


def always(w: World, cpu: int, lv: Locals) -> bool:
    """A start guard that allows every argument."""
    return True


__all__ = [
    "CPU_ARGS",
    "FLUSH_TLB_MM_RANGE",
    "MM_VA",
    "NEXT_KTHREAD",
    "NEXT_MM",
    "NO_ARGS",
    "PATHS",
    "SWITCH_MM_IRQS_OFF",
    "TARGET_VA",
    "VA",
    "ArgDomain",
    "BudgetKind",
    "Guard",
    "Inline",
    "PagePicker",
    "Path",
    "Site",
    "Step",
    "StepFn",
    "always",
    "budget_kinds",
    "expand",
    "register",
    "skipping",
]
