"""mm/mempolicy.c: NUMA hinting, change_prot_numa() of one page.

The scheduler's task_numa_work() (kernel/sched/fair.c) makes a task's anonymous PTEs PROT_NONE
so that the next access faults and tells where the page is used: under ``mmap_read_lock``
(so it runs alongside madvise, reclaim and the rest), change_prot_numa() ->
change_protection(..., MM_CP_PROT_NUMA) -> change_pte_range(), the same PTL section as
mprotect's (``tlbfuzz.protocol.mm.change_pte_range`` with ``prot_numa``): ``if
(pte_protnone(oldpte)) continue;`` else the entry becomes PROT_NONE, not present to the
hardware, and the flush of that change is deferred to the end: mainline ``tlb_gather_mmu()``
... ``tlb_finish_mmu()`` in change_prot_numa(); 5.2 change_protection_range():
``inc_tlb_flush_pending(mm); ... if (pages) flush_tlb_range(vma, start, end);
dec_tlb_flush_pending(mm);``.

Until that flush, a CPU may still cache the old present translation of a PROT_NONE entry.
Whoever takes such an entry away must not decide "nothing to flush" from the PTE alone: x86
``pte_accessible()`` counts a PROT_NONE entry as accessible while ``mm->tlb_flush_pending``
is raised (20841405940e, v3.13), and reclaim asks it (``tlbfuzz.protocol.vmscan``).

Sources: mainline mm/mempolicy.c change_prot_numa() and mm/mprotect.c change_pte_range() as
summarised in ``../shared/mm-layer.md`` sections 4a-4b; 5.2's change_protection_range() as in
``tlbfuzz.protocol.mm.mprotect``. Left out: the NUMA hinting fault (do_numa_page(), which
makes the entry present again and may migrate the page), file pages, the scan's rate limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from tlbfuzz.protocol.mm import (
    FINISH_FLUSH,
    NESTED,
    change_pte_range,
    dec_tlb_flush_pending,
    mmap_lock_writer,
    mprotect_uses_gather,
    ptl_section,
    tlb_gather_mmu,
)
from tlbfuzz.protocol.paths import VA, BudgetKind, Path, Step, register
from tlbfuzz.protocol.state import ANON, PAGE_SIZE

if TYPE_CHECKING:
    from tlbfuzz.protocol.state import Locals
    from tlbfuzz.protocol.world import World


def change_prot_numa(w: World, cpu: int) -> None:
    """``mmap_read_lock`` (held from the start), then the deferred flush opens: mainline
    ``tlb_gather_mmu()``, 5.2 ``inc_tlb_flush_pending(mm)``. The PTE change is the next step."""
    c = w.cpus[cpu]
    mm_id, va = c.task, c.locals.va
    tlb_gather_mmu(w, cpu, mm_id, va, va + PAGE_SIZE)
    c.locals = c.locals._replace(prot_numa=True)


def change_prot_numa_done(w: World, cpu: int) -> None:
    """change_prot_numa() returns: the flush is done, ``dec_tlb_flush_pending()`` (5.2 after
    ``if (pages) flush_tlb_range()``). NUMA hinting promises nothing to user space."""
    dec_tlb_flush_pending(w, cpu)


def _numa_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """task_numa_work() scans current->mm: an anonymous page mapped present at ``va`` (the
    scan skips others), and ``mmap_read_lock()`` would not sleep (no writer)."""
    mm_id = w.cpus.peek(cpu).task
    pte = w.mms.peek(mm_id).ptes.get(lv.va)
    if pte is None or not pte.present or w.frames[pte.pfn].kind != ANON:
        return False
    return mmap_lock_writer(w, mm_id) < 0


NUMA = register(
    Path(
        "numa",
        # Asked for by name (--budget numa=1), like reclaim: its race needs a reclaim.
        BudgetKind("numa", default=0, fuzz_max=0),
        VA,
        _numa_may_start,
        (
            Step("change_prot_numa", change_prot_numa, c="change_prot_numa()"),
            *ptl_section("change_pte_range", change_pte_range),
            attrs.evolve(NESTED, skip=mprotect_uses_gather),
            FINISH_FLUSH,
        ),
        returns=change_prot_numa_done,
        holds=(("mmap_lock", 1),),
        from_user=True,
        summary="NUMA hinting (task_numa_work): one anonymous PTE made PROT_NONE, flush deferred",
    )
)
