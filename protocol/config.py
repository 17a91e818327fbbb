"""The size of a model instance: CPUs, mms, pages and each CPU's budget of kernel paths.

Budgets keep every run finite: a CPU starts at most ``budget.munmap`` munmaps, and so on.
Hardware events (TLB fills, evictions, user accesses) and NMIs are not budgeted: they add no
state that a TLB fill could not add, so the state space stays finite without a budget. (An NMI
budget made the fuzzer spend NMIs before the window they are meant to hit.)
"""

from __future__ import annotations

from typing import Final

import attrs

BUDGET_KINDS: Final = (
    "munmap",
    "madvise",
    "mprotect",
    "writeback",
    "switch",
    "ipi",
    "irqs_off",
)
"""One counter per kind of path a CPU can start; their order is the order of ``Budget``."""


@attrs.frozen
class Budget:
    """How many of each kernel path one CPU may start."""

    munmap: int = 1
    madvise: int = 1
    mprotect: int = 1
    writeback: int = 1
    switch: int = 2
    ipi: int = 1
    irqs_off: int = 1

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, k) for k in BUDGET_KINDS)


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
    reuse: bool = True
    """Enable ``alloc_page``: a freed frame is reallocated to another mm or a device."""

    @property
    def pages(self) -> int:
        return self.anon_pages + self.file_pages

    def vas(self) -> tuple[int, ...]:
        return tuple(0x1000 * (i + 1) for i in range(self.pages))

    def is_file_va(self, va: int) -> bool:
        return va // 0x1000 > self.anon_pages

    def to_dict(self) -> dict[str, object]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Config:
        d = dict(d)
        b = d.pop("budget", None)
        budget = Budget(**b) if isinstance(b, dict) else Budget()
        return cls(budget=budget, **d)  # type: ignore[arg-type]
