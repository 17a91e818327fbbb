"""linux-current as it was before 3ea277194daa ("mm, mprotect: flush TLB if potentially racing
with a parallel reclaim leaving stale TLB entries", v4.12): change_pte_range() and
zap_pte_range() do not call flush_tlb_batched_pending(). Reclaim clears a PTE and defers its
flush to the batch; an mprotect(PROT_READ) on another CPU finds the PTE already clear, changes
nothing, flushes nothing and returns, while the batch has not reached the CPU that still
caches the writable entry.

One decision moved (a flush under the PTL); nothing in protocol/ edited.

    tlbfuzz explore -v examples/before_3ea277194daa.py:VARIANT \\
        --budget cpu0:reclaim=1 --budget cpu1:mprotect=1 -p no_write_after_write_protect
"""

from __future__ import annotations

import attrs

from tlbfuzz.protocol import VARIANTS, Site, Variant


@attrs.frozen
class BeforeBatchedPendingFlush(Variant):
    def flush_tlb_batched_pending(self, at: Site) -> bool:
        return False  # no "flush_tlb_batched_pending(vma->vm_mm);" after taking the PTL


VARIANT = BeforeBatchedPendingFlush(
    **{
        **attrs.asdict(VARIANTS["linux-current"], recurse=False),
        "name": "before-3ea277194daa",
        "summary": "linux-current without flush_tlb_batched_pending() in the PTL sections",
        "kernel_ref": "Linux 4.11 mm/mprotect.c: change_pte_range() (before 3ea277194daa)",
    }
)
