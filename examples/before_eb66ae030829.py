"""linux-5.2 with mremap as Linux 4.18 had it: move_ptes() moved the PTEs and dropped both
page-table locks, and move_page_tables() flushed the old range only afterwards
(``need_flush``). In between, an rmap walker that takes the new PTE's lock (Jann Horn's
ftruncate(); here a migration, whose ``ptep_clear_flush()`` flushes only the new address)
unmaps the page and frees it while a CPU still caches the old address: CVE-2018-18281,
fixed by eb66ae030829 ("mremap: properly flush TLB before releasing the page", v4.19).

One decision moved (the flush before the unlock); nothing in protocol/ edited.

    tlbfuzz explore -v examples/before_eb66ae030829.py:VARIANT --mms 1 --file-pages 0 \\
        --budget cpu0:mremap=1 --budget cpu1:migrate=1 -p no_use_after_free
"""

from __future__ import annotations

import attrs

from tlbfuzz.protocol import VARIANTS, Site, Variant


@attrs.frozen
class BeforeMremapFlushUnderPtl(Variant):
    def move_ptes_flush_before_unlock(self, at: Site) -> bool:
        return False  # 4.18 move_page_tables(): "if (need_flush) flush_tlb_range(...)"


VARIANT = BeforeMremapFlushUnderPtl(
    **{
        **attrs.asdict(VARIANTS["linux-5.2"], recurse=False),
        "name": "before-eb66ae030829",
        "summary": "linux-5.2 whose mremap flushes the old address after dropping the PTL",
        "kernel_ref": "Linux 4.18 mm/mremap.c: move_ptes(), move_page_tables()",
    }
)
