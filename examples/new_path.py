"""A kernel path of your own, in a variant file: linux-current plus a hypothetical driver
unmap that frees the page in the same step that clears its PTE, before its flush has reached
the other CPUs. Nothing in protocol/ is edited: the path is a record
(``tlbfuzz.protocol.paths``) with one step function of its own, followed by the kernel's own
flush.

    tlbfuzz explore -v examples/new_path.py:VARIANT -p no_use_after_free
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from tlbfuzz.protocol import VARIANTS, BudgetKind, Path, Step
from tlbfuzz.protocol.mm import free_page, present_pte
from tlbfuzz.protocol.paths import FLUSH_TLB_MM_RANGE, VA
from tlbfuzz.protocol.state import NO_PFN, PAGE_SIZE

if TYPE_CHECKING:
    from tlbfuzz.protocol import World


def zap_and_free(w: World, cpu: int) -> None:
    """Clear the PTE of ``va`` and free its page at once: the bug is freeing before the flush
    (mmu_gather's rule is "1) unhook page 2) TLB invalidate page 3) free page")."""
    c = w.cpus[cpu]
    va = c.locals.va
    ptes = w.mms[c.task].ptes
    pte = ptes[va]
    ptes[va] = pte._replace(present=False, writable=False, pfn=NO_PFN, seq=pte.seq + 1)
    c.locals = c.locals._replace(mm=c.task, end=va + PAGE_SIZE)  # what the flush covers
    free_page(w, pte.pfn, by=f"cpu{cpu} zap_and_free")


FREE_BEFORE_FLUSH = Path(
    "free_before_flush",
    BudgetKind("free_before_flush"),
    VA,
    present_pte,
    (Step("zap_and_free", zap_and_free, c="zap_and_free()"), FLUSH_TLB_MM_RANGE),
    from_user=True,
    summary="a driver's unmap that frees the page before flushing",
)

VARIANT = attrs.evolve(
    VARIANTS["linux-current"],
    name="free-before-flush",
    summary="linux-current plus a path that frees a page before its flush reaches other CPUs",
    kernel_ref="examples/new_path.py (hypothetical driver)",
    extra_paths=(FREE_BEFORE_FLUSH,),
)
