"""linux-current as Linux 5.6 to 5.10 had clear_refs: since 0758cd830494 ("asm-generic/tlb:
avoid potential double flush") tlb_finish_mmu() skipped the flush of a gather that batched no
page, and clear_refs_write() batches none, so ``echo 4 > /proc/pid/clear_refs`` returned with
the soft-dirty PTEs read-only in memory but still writable in the TLBs. 912efa17e512 ("mm:
proc: Invalidate TLB after clearing soft-dirty page state", v5.11) flushes explicitly. A
write through the stale entry does not fault, so the soft-dirty bit stays clear and
/proc/pid/pagemap never shows the write.

One decision moved (the flush before clear_refs returns); nothing in protocol/ edited.

    tlbfuzz explore -v examples/before_912efa17e512.py:VARIANT \\
        --budget cpu0:clear_refs=1 -p no_lost_soft_dirty
"""

from __future__ import annotations

import attrs

from tlbfuzz.protocol import VARIANTS, Site, Variant


@attrs.frozen
class BeforeClearRefsFlush(Variant):
    def clear_refs_flushes(self, at: Site) -> bool:
        return False  # tlb_finish_mmu(): "if (!tlb->end) return;" -- nothing was batched


VARIANT = BeforeClearRefsFlush(
    **{
        **attrs.asdict(VARIANTS["linux-current"], recurse=False),
        "name": "before-912efa17e512",
        "summary": "linux-current whose clear_refs returns without flushing the TLBs",
        "kernel_ref": "Linux 5.10 fs/proc/task_mmu.c: clear_refs_write() (before 912efa17e512)",
    }
)
