"""linux-current with x86 flush_tlb_range() as it was before 3ef938c35035 ("x86/mm: Fix
flush_tlb_range() when used for zapping normal PMDs", Jann Horn, 2025, CVE-2025-22045): the
flush said it freed no page table. khugepaged's pmdp_collapse_flush() uses it to take a whole
page table out of an mm, and a flush without ``freed_tables`` skips lazy CPUs, whose
paging-structure caches keep the old PMD; the table is then freed (after an RCU grace period
today, at once on 5.2) while a lazy CPU can still walk it speculatively.

One decision moved (freed_tables of flush_tlb_range()); nothing in protocol/ edited.

    tlbfuzz explore -v examples/before_3ef938c35035.py:VARIANT --mms 1 --anon-pages 0 \\
        --budget cpu0:collapse=1 --budget cpu1:switch=2 -p no_walk_of_freed_page_table
"""

from __future__ import annotations

import attrs

from tlbfuzz.protocol import VARIANTS, Site, Variant


@attrs.frozen
class BeforeFlushRangeFreesTables(Variant):
    def flush_tlb_range_frees_tables(self, at: Site) -> bool:
        return False  # flush_tlb_mm_range(..., PAGE_SHIFT, false)


VARIANT = BeforeFlushRangeFreesTables(
    **{
        **attrs.asdict(VARIANTS["linux-current"], recurse=False),
        "name": "before-3ef938c35035",
        "summary": "linux-current whose flush_tlb_range() says no page table is freed",
        "kernel_ref": "Linux 6.14 arch/x86/include/asm/tlbflush.h: flush_tlb_range()",
    }
)
