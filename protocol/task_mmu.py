"""fs/proc/task_mmu.c: ``echo 4 > /proc/pid/clear_refs``, clearing the soft-dirty bits.

Soft-dirty tracking (Documentation/admin-guide/mm/soft-dirty.rst): clear_refs clears the
soft-dirty bit of every PTE and write-protects it, so that the next write faults and the
fault sets the bit again (x86 ``pte_mkdirty()`` sets ``_PAGE_SOFT_DIRTY`` with
``_PAGE_DIRTY``; the hardware sets only D). /proc/pid/pagemap then reports which pages were
written since. clear_soft_dirty(), under the PTL of each table, for a present PTE: ``old =
ptep_modify_prot_start(); ptent = pte_wrprotect(old); ptent = pte_clear_soft_dirty(ptent);
ptep_modify_prot_commit();`` -- "The soft-dirty tracker uses #PF-s to catch writes to pages,
so write-protect the pte as well." No flush per PTE: one flush of the whole mm at the end,
and until it has run a CPU may still write through a cached writable translation without a
fault, which no soft-dirty bit records.

- 5.2 clear_refs_write(): ``down_read(&mm->mmap_sem)`` (with a brief write lock to clear
  VM_SOFTDIRTY), ``tlb_gather_mmu(&tlb, mm, 0, -1)`` (fullmm), the walk, then
  ``tlb_finish_mmu(&tlb, 0, -1)``: a full flush, ``tlb_flush_pending`` raised meanwhile.
- mainline: ``mmap_write_lock(mm)`` (29a951dfb3c3, "mm: fix clear_refs_write locking",
  v5.11: "Turning page table entries read-only requires the mmap_sem held for writing"),
  ``inc_tlb_flush_pending(mm)``, the walk, ``flush_tlb_mm(mm)``, ``dec_tlb_flush_pending(mm)``
  (912efa17e512, "mm: proc: Invalidate TLB after clearing soft-dirty page state", v5.11:
  since 0758cd830494 tlb_finish_mmu() elided the flush, as no page was batched).

``../shared/mm-layer.md`` section 10 (the mainline flush and the 5.2 locking there are marked
unverified; the commits above say the same). Left out: the other clear_refs modes, swap
entries (migration entries are in), VM_SOFTDIRTY, pinned pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlbfuzz.protocol.mm import (
    dec_tlb_flush_pending,
    mmap_lock_writer,
    mmap_locked,
    ptl_free,
    tlb_gather_mmu,
)
from tlbfuzz.protocol.paths import (
    FLUSH_TLB_MM_RANGE,
    NO_ARGS,
    BudgetKind,
    Inline,
    Path,
    Step,
    register,
)
from tlbfuzz.protocol.state import PAGE_SIZE

if TYPE_CHECKING:
    from tlbfuzz.protocol.state import Locals
    from tlbfuzz.protocol.world import World


def clear_refs_write(w: World, cpu: int) -> None:
    """The mmap_lock (``Variant.clear_refs_takes_mmap_write_lock``; its availability is the
    start guard), then 5.2 ``tlb_gather_mmu(&tlb, mm, 0, -1)`` / mainline
    ``inc_tlb_flush_pending(mm)``: ``tlb_flush_pending`` is raised and the flush at the end
    is of the whole mm (``flush_tlb_mm()``: freed_tables set; 5.2's fullmm gather: not)."""
    c = w.cpus[cpu]
    v = w.variant
    at = w.site(cpu)
    vas = w.kernel.vas
    tlb_gather_mmu(w, cpu, c.task, vas[0], vas[-1] + PAGE_SIZE)
    c.locals = c.locals._replace(
        mmap_lock=2 if v.clear_refs_takes_mmap_write_lock(at) else 1,
        fullmm=True,
        cleared=True,
        freed_tables=not v.clear_refs_uses_gather(at),
    )


def clear_refs_pte_range(w: World, cpu: int) -> None:
    """clear_refs_pte_range() -> clear_soft_dirty() on every PTE, in one PTL section: ``if
    (pte_present(ptent))`` (PROT_NONE too) read-only and soft-dirty clear; ``else if
    (is_swap_pte(ptent))`` (a migration entry here) ``pte_swp_clear_soft_dirty()`` only: the
    entry is not write-protected (mainline and 5.2 alike)."""
    c = w.cpus[cpu]
    lv = c.locals
    mm = w.mms[lv.mm]
    wrote = []
    for va in range(lv.va, lv.end, PAGE_SIZE):
        pte = mm.ptes.get(va)
        if pte is not None and pte.mapped:
            mm.ptes[va] = pte._replace(writable=False, soft_dirty=False, seq=pte.seq + 1)
            wrote.append((va, pte.seq + 1))
        elif pte is not None and pte.migration:
            mm.ptes[va] = pte._replace(soft_dirty=False, seq=pte.seq + 1)
            wrote.append((va, pte.seq + 1))
    c.locals = lv._replace(wrote=tuple(wrote))


def no_flush(w: World, cpu: int) -> bool:
    """A skip: the variant's clear_refs does not flush (``Variant.clear_refs_flushes``)."""
    return not w.variant.clear_refs_flushes(w.site(cpu))


def clear_refs_done(w: World, cpu: int) -> None:
    """``dec_tlb_flush_pending(mm)`` (5.2: in tlb_finish_mmu()), the mmap_lock dropped, the
    syscall returns. Ghost: every PTE it cleaned that nobody has changed since is now
    tracked, and a write to it must make it soft-dirty (no_lost_soft_dirty). A PTE changed
    since (a fault made it writable again, another clear_refs still in flight cleaned it
    again) promises nothing: a write there may count as one before that change."""
    dec_tlb_flush_pending(w, cpu)
    lv = w.cpus[cpu].locals
    mm = w.mms[lv.mm]
    for va, seq in lv.wrote:
        pte = mm.ptes.get(va)
        if pte is not None and pte.seq == seq:
            mm.soft_dirty_clean[va] = seq


def _clear_refs_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """current->mm has a mapping, and its mmap_lock is free for the variant's mode."""
    mm_id = w.cpus.peek(cpu).task
    if not w.mms.peek(mm_id).vma_writable:
        return False
    if w.variant.clear_refs_takes_mmap_write_lock(w.site(cpu)):
        return not mmap_locked(w, mm_id)
    return mmap_lock_writer(w, mm_id) < 0


CLEAR_REFS = register(
    Path(
        "clear_refs",
        # Asked for by name (--budget clear_refs=1): its races need a writer on another CPU.
        BudgetKind("clear_refs", default=0, fuzz_max=0),
        NO_ARGS,
        _clear_refs_may_start,
        (
            Step("clear_refs_write", clear_refs_write, c="inc_tlb_flush_pending()"),
            Step(
                "clear_refs_pte_range",
                clear_refs_pte_range,
                guard=ptl_free,
                c="clear_soft_dirty()",
            ),
            Inline("flush_tlb_mm_range", FLUSH_TLB_MM_RANGE.expand, skip=no_flush),
        ),
        returns=clear_refs_done,
        from_user=True,
        summary="clear_refs (soft-dirty) of current->mm: write-protect and clean every PTE, "
        "one flush at the end",
    )
)
