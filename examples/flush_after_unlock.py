"""linux-current with zap_pte_range()'s forced flush moved after the page-table lock is dropped
(and so, as tlb_flush_rmaps() must run under that lock, the rmap removed before the flush).
Writeback's page_mkclean() no longer waits for the flush: it finds the page unmapped, cleans
it, and a write through another CPU's stale writable entry is lost.

One decision moved (a flush against a lock release); nothing in protocol/ edited.

    tlbfuzz explore -v examples/flush_after_unlock.py:VARIANT \\
        --budget madvise=1,writeback=1 -p no_lost_write
"""

from __future__ import annotations

import attrs

from tlbfuzz.protocol import VARIANTS, Site, Variant


@attrs.frozen
class FlushAfterUnlock(Variant):
    def zap_flush_before_unlock(self, at: Site) -> bool:
        return False  # pte_unmap_unlock(start_pte, ptl); then tlb_flush_mmu_tlbonly(tlb);


VARIANT = FlushAfterUnlock(
    **{
        **attrs.asdict(VARIANTS["linux-current"], recurse=False),
        "name": "flush-after-unlock",
        "summary": "linux-current whose zap_pte_range() flushes after dropping the PTL",
        "kernel_ref": "mm/memory.c: zap_pte_range(), forced flush moved after the unlock",
    }
)
