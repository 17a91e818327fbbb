"""The size of a model instance: CPUs, mms, pages and each CPU's budget of kernel paths.

Budgets keep every run finite: a CPU starts at most ``budget.count(kind)`` paths of a kind. The
budget *kinds* are not listed here: each kernel path's record names the kind it spends
(``tlbfuzz.protocol.paths.BudgetKind``), so a new path, built in or from a user's variant file,
brings its kind with it. Hardware events (TLB fills, evictions, user accesses) and NMIs are not
budgeted: they add no state that a TLB fill could not add, so the state space stays finite
without a budget. (An NMI budget made the fuzzer spend NMIs before the window they are meant
to hit.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from tlbfuzz.protocol.paths import BudgetKind


def _counts(counts: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    for k, n in counts.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"budget {k}={n!r}: want a whole number >= 0")
    return tuple(sorted(counts.items()))


@attrs.frozen(init=False)
class Budget:
    """How many kernel paths of each kind one CPU may start.

    ``Budget(madvise=2)``: two madvises, every other kind its default (``BudgetKind.default``).
    ``Budget.only(madvise=1)``: one madvise and nothing else (the explorer's ``--budget``).
    """

    counts: tuple[tuple[str, int], ...]
    rest: int | None
    """The count of every kind not named; None: each kind's own default."""

    def __init__(self, rest: int | None = None, **counts: int) -> None:
        if rest is not None and (not isinstance(rest, int) or rest < 0):
            raise ValueError(f"budget rest={rest!r}: want a whole number >= 0")
        self.__attrs_init__(_counts(counts), rest)

    @classmethod
    def only(cls, **counts: int) -> Budget:
        return cls(rest=0, **counts)

    def named(self) -> dict[str, int]:
        return dict(self.counts)

    def count(self, kind: BudgetKind) -> int:
        for k, n in self.counts:
            if k == kind.name:
                return n
        return kind.default if self.rest is None else self.rest

    def resolved(self, kinds: Iterable[BudgetKind]) -> Budget:
        """Every kind of ``kinds`` named, with the count this budget gives it."""
        return Budget.only(**{k.name: self.count(k) for k in kinds})

    def to_dict(self) -> dict[str, int | None]:
        d: dict[str, int | None] = dict(self.counts)
        if self.rest != 0:
            d["rest"] = self.rest
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Budget:
        """The inverse of ``to_dict``. A saved budget names every kind its run had, so a kind
        it does not name (one added to the model since) counts 0: the run replays as it was."""
        d = dict(d)
        rest = d.pop("rest", 0)
        return cls(rest=rest, **d)


@attrs.frozen
class Config:
    """A model instance. Every CPU starts running a user thread of mm A with an empty TLB.

    Each mm maps ``anon_pages`` anonymous pages then ``file_pages`` shared file pages, from
    ``0x1000`` upwards, all under one PMD entry (one page-table page per mm).
    """

    cpus: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    mms: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    anon_pages: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    file_pages: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    asids: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    """TLB_NR_DYN_ASIDS (6 in the kernel); as many as mms keeps every mm's slot."""
    tlb_single_page_flush_ceiling: int = attrs.field(default=33, validator=attrs.validators.ge(1))
    """Ranges of more pages than this become full flushes (33 in the kernel)."""
    budget: Budget = Budget()
    """Every CPU's budget..."""
    cpu_budget: tuple[tuple[int, Budget], ...] = ()
    """...except for the kinds these name, per CPU: ``((1, Budget.only(switch=2)),)`` lets
    CPU1 switch twice whatever the others do."""
    reuse: bool = True
    """Enable ``alloc_page``: a freed frame is reallocated to another mm or a device."""
    memory_model: str = attrs.field(default="sc", validator=attrs.validators.in_(("sc", "tso")))
    """``sc``: every store is seen by every CPU at once. ``tso``: x86-TSO, plain stores to
    the variables ``tlbfuzz.protocol.hw.plain_store`` names wait in a per-CPU store buffer
    (``tlbfuzz.protocol.tso``) until drained, fenced or overtaken by a locked or serialising
    instruction."""
    store_buffer: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    """Under TSO: entries per store buffer (a modelling bound; a store into a full buffer
    first drains the oldest entry)."""

    @property
    def pages(self) -> int:
        return self.anon_pages + self.file_pages

    def vas(self) -> tuple[int, ...]:
        return tuple(0x1000 * (i + 1) for i in range(self.pages))

    def spare_va(self) -> int:
        """The address past the mapped pages, in the same page table, that no vma maps at
        first: where mremap moves a page (``Path.moves``, ``Kernel.vas``)."""
        return 0x1000 * (self.pages + 1)

    def is_file_va(self, va: int) -> bool:
        return va // 0x1000 > self.anon_pages

    def pfn_of(self, mm_id: int, va: int) -> int:
        """The frame ``World.initial`` gives (mm, va): each mm's page-table page, then its
        pages in address order. Frames never move; only their owner changes."""
        return (mm_id - 1) * (self.pages + 1) + va // 0x1000

    def budget_of(self, cpu: int, kind: BudgetKind) -> int:
        for c, b in self.cpu_budget:
            if c == cpu and kind.name in b.named():
                return b.named()[kind.name]
        return self.budget.count(kind)

    def resolved(self, kinds: tuple[BudgetKind, ...]) -> Config:
        """The same instance with every budget kind of ``kinds`` named: what a saved run
        records, so that it replays the same whatever the defaults become."""
        return attrs.evolve(
            self,
            budget=self.budget.resolved(kinds),
            cpu_budget=tuple(
                (c, Budget.only(**{k: n for k, n in b.counts if any(k == x.name for x in kinds)}))
                for c, b in self.cpu_budget
            ),
        )

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            f.name: getattr(self, f.name)
            for f in attrs.fields(Config)
            if f.name not in ("budget", "cpu_budget")
        }
        d["budget"] = self.budget.to_dict()
        if self.cpu_budget:
            d["cpu_budget"] = {str(c): b.to_dict() for c, b in self.cpu_budget}
        # the order of the format's first version: budget before reuse
        d["reuse"] = d.pop("reuse")
        if self.memory_model == "sc":  # the default, as every file before TSO was
            del d["memory_model"], d["store_buffer"]
        else:
            d["memory_model"] = d.pop("memory_model")
            d["store_buffer"] = d.pop("store_buffer")
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Config:
        d = dict(d)
        b = d.pop("budget", None)
        budget = Budget.from_dict(b) if isinstance(b, dict) else Budget()
        per = d.pop("cpu_budget", None) or {}
        if not isinstance(per, dict):
            raise ValueError("cpu_budget must map CPU numbers to budgets")
        cpu_budget = tuple(sorted((int(c), Budget.from_dict(v)) for c, v in per.items()))
        return cls(budget=budget, cpu_budget=cpu_budget, **d)


def parse_budgets(
    specs: Iterable[str], kinds: Iterable[str], most: int = 8
) -> tuple[Budget, dict[int, Budget]]:
    """The explorer's and the fuzzer's ``--budget``: each spec ``KIND=N,...`` (every CPU) or
    ``cpuI:KIND=N,...`` (CPU I only), N from 0 to ``most``. Kinds no spec names count 0.
    Raises ValueError with what is wrong."""
    known = tuple(kinds)
    plain: dict[str, int] = {}
    per: dict[int, dict[str, int]] = {}
    for spec in specs:
        target = plain
        head, sep, counts = spec.partition(":")
        if sep:
            if not (head.startswith("cpu") and head[3:].isascii() and head[3:].isdigit()):
                raise ValueError(f"bad --budget {spec[:40]!r}: want cpuN:KIND=N")
            target = per.setdefault(int(head[3:][:6]), {})
        else:
            counts = spec
        for part in counts.split(","):
            kind, eq, n = part.strip().partition("=")
            if not eq or kind not in known:
                raise ValueError(
                    f"bad --budget {part[:40]!r} (want KIND=N with KIND in {', '.join(known)})"
                )
            if not (n.isascii() and n.isdigit() and len(n) <= 3 and int(n) <= most):
                raise ValueError(f"bad --budget {part[:40]!r} (N must be a whole number 0-{most})")
            if kind in target:
                raise ValueError(f"bad --budget: {kind} given twice")
            target[kind] = int(n)
    return Budget.only(**plain), {c: Budget.only(**b) for c, b in sorted(per.items())}
