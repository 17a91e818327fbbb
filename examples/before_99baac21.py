"""linux-5.2 as it was before 99baac21e458 ("mm: fix MADV_[FREE|DONTNEED] TLB flush miss
problem", v4.13): tlb_finish_mmu() does not force a flush when another gather of the same mm
is pending. A madvise that finds its PTE already cleared by another thread then returns
without a flush, although that thread's flush has not reached every CPU yet.

One decision moved (a counter read, ``mm_tlb_flush_nested()``); nothing in protocol/ edited.

    tlbfuzz explore -v examples/before_99baac21.py:VARIANT --budget madvise=1 \\
        -p no_stale_access_after_return
"""

from __future__ import annotations

import attrs

from tlbfuzz.protocol import VARIANTS, Site, Variant


@attrs.frozen
class BeforeNestedCheck(Variant):
    def tlb_finish_mmu_forces_flush_when_nested(self, at: Site) -> bool:
        return False  # no "if (mm_tlb_flush_nested(tlb->mm))" in tlb_finish_mmu()


VARIANT = BeforeNestedCheck(
    **{
        **attrs.asdict(VARIANTS["linux-5.2"], recurse=False),
        "name": "before-99baac21",
        "summary": "linux-5.2 without the forced flush of a nested mmu_gather",
        "kernel_ref": "Linux 4.12 mm/memory.c: tlb_finish_mmu() (before 99baac21e458)",
    }
)
