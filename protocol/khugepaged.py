"""mm/khugepaged.c: a file THP collapse retracting the page table that mapped the small pages.

When khugepaged (or MADV_COLLAPSE) has collapsed a file range into a huge page, collapse_file()
has unmapped the small pages (mainline: ``try_to_unmap(folio, TTU_IGNORE_MLOCK |
TTU_BATCH_FLUSH)`` then ``try_to_unmap_flush()``) and retract_page_tables() takes the now
empty page table out of each mm that maps the range, so the next fault maps the huge page
with one PMD. Mainline (read through the search tool in linux-next mm/khugepaged.c and
mm/pgtable-generic.c; without mmap_lock since Hugh Dickins' 2023 rework)::

    pml = pmd_lock(mm, pmd);
    ptl = pte_lockptr(mm, pmd); if (ptl != pml) spin_lock_nested(ptl, ...);
    if (likely(file_backed_vma_is_retractable(vma))) {
            pgt_pmd = pmdp_collapse_flush(vma, addr, pmd);
            pmdp_get_lockless_sync();          /* empty on x86-64 */
            success = true;
    }
    if (ptl != pml) spin_unlock(ptl);
    spin_unlock(pml);
    ...
    if (success) { mm_dec_nr_ptes(mm); ...; pte_free_defer(mm, pmd_pgtable(pgt_pmd)); }

pmdp_collapse_flush() (generic, x86 has no own): ``pmd = pmdp_huge_get_and_clear(mm, address,
pmdp); /* collapse entails shooting down ptes not pmd */ flush_tlb_range(vma, address, address
+ HPAGE_PMD_SIZE);`` -- and x86 ``flush_tlb_range()`` passed ``freed_tables = false``
until 3ef938c35035 ("x86/mm: Fix flush_tlb_range() when used for zapping normal PMDs", Jann
Horn, 2025; ``Variant.flush_tlb_range_frees_tables``), so the flush skipped lazy CPUs, whose
paging-structure caches may still hold the PMD when the table is freed.
``pte_free_defer()`` (generic) is ``call_rcu(..., pte_free_now)``. 5.2 (5.4-era trees):
``if (down_write_trylock(&mm->mmap_sem)) { ptl = pmd_lock(); _pmd = pmdp_collapse_flush();
spin_unlock(ptl); up_write(); mm_dec_nr_ptes(mm); pte_free(mm, pmd_pgtable(_pmd)); }``: the
table is freed at once (``Variant.retract_frees_table_by_rcu``,
``Variant.retract_takes_mmap_write_lock``).

The model's mm has one page table, which also maps its anonymous pages: khugepaged retracts
only the table of a vma without an anon_vma, so here only a table that maps no anonymous page
(``--anon-pages 0``, or after they were zapped). The flush covers HPAGE_PMD_SIZE, 512 pages:
over the ceiling, a full flush where it is sent. Left out: the huge page itself (the model's
file page stands for its subpage, and stays in the page cache), the copy into it and the
refault through a PMD, anonymous collapse (collapse_huge_page()), uffd-wp vmas, and 5.2's
unmap by ``unmap_mapping_pages()`` instead of the batched ``try_to_unmap()`` (both leave the
page unmapped and flushed before the table goes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlbfuzz.protocol.mm import (
    call_rcu_free_tables,
    file_page,
    free_page,
    mmap_locked,
    page_cache_page,
    page_locked,
    ptl_free,
    ptl_not_held,
)
from tlbfuzz.protocol.paths import (
    FLUSH_TLB_MM_RANGE,
    MM_VA,
    BudgetKind,
    Inline,
    Path,
    Step,
    register,
)
from tlbfuzz.protocol.state import ANON, NO_PFN
from tlbfuzz.protocol.vmscan import batch_flush_steps, nothing_batched, try_to_unmap_one

if TYPE_CHECKING:
    from tlbfuzz.protocol.state import Locals
    from tlbfuzz.protocol.world import World

HPAGE_PMD_SIZE = 0x200000
"""The range one PMD maps (512 pages): the model's page table covers the start of it."""


def collapse_file(w: World, cpu: int) -> None:
    """``lock_page()`` (held from the start), then ``try_to_unmap(folio, TTU_BATCH_FLUSH)``:
    under the PTL the small page's PTE is cleared and its flush batched (as reclaim's,
    ``tlbfuzz.protocol.vmscan.try_to_unmap_one``); ``try_to_unmap_flush()`` follows."""
    try_to_unmap_one(w, cpu)


def _retractable(w: World, mm_id: int) -> bool:
    """``file_backed_vma_is_retractable()`` and "the page table must remain empty": the mm
    still has its table, and no PTE in it maps a page (an anonymous one means an anon_vma)."""
    mm = w.mms[mm_id]
    return mm.pgtable_pfn != NO_PFN and not any(p.mapped or p.migration for p in mm.ptes.values())


def retract_page_tables(w: World, cpu: int) -> None:
    """``pmd_lock()``, the PTL (5.2: ``down_write_trylock(&mm->mmap_sem)`` first, and no
    retraction if it fails), then pmdp_collapse_flush(): the PMD is cleared here; its
    ``flush_tlb_range()`` of HPAGE_PMD_SIZE runs in the steps after, under the locks.

    One step: a PTL section; the PMD clear is read by the walks the PTL section's reduction
    already orders (``tlbfuzz.protocol.mm.unmap_vmas``)."""
    c = w.cpus[cpu]
    lv = c.locals
    v = w.variant
    at = w.site(cpu)
    if not _retractable(w, lv.mm):
        return
    mmap_lock = 0
    if v.retract_takes_mmap_write_lock(at):
        if mmap_locked(w, lv.mm):
            return  # down_write_trylock() failed: khugepaged tries again later
        mmap_lock = 2
    mm = w.mms[lv.mm]
    pt = mm.pgtable_pfn
    mm.pgtable_pfn = NO_PFN  # pmdp_huge_get_and_clear()
    c.locals = lv._replace(
        va=0,
        end=HPAGE_PMD_SIZE,
        cleared=True,
        freed_tables=v.flush_tlb_range_frees_tables(at),
        tables=(pt,),
        ptl=True,
        mmap_lock=mmap_lock,
    )


def retract_page_tables__unlock(w: World, cpu: int) -> None:
    """``spin_unlock(ptl); spin_unlock(pml);`` (5.2: and ``up_write(&mm->mmap_sem)``)."""
    c = w.cpus[cpu]
    c.locals = c.locals._replace(ptl=False, mmap_lock=0)


def pte_free_defer(w: World, cpu: int) -> None:
    """``mm_dec_nr_ptes(mm)``, then mainline ``pte_free_defer()``: the table is freed by an
    RCU callback, once every CPU that has IRQs disabled now has enabled them (a GUP-fast walk
    in progress). 5.2 ``pte_free()``: freed now."""
    c = w.cpus[cpu]
    lv = c.locals
    if w.variant.retract_frees_table_by_rcu(w.site(cpu)):
        call_rcu_free_tables(w, lv.tables)
    else:
        for pt in lv.tables:
            free_page(w, pt, by=f"cpu{cpu} retract_page_tables")
    c.locals = lv._replace(tables=())


def nothing_retracted(w: World, cpu: int) -> bool:
    """A skip: the table was not retracted (not empty, or the trylock failed)."""
    return not w.cpus[cpu].locals.tables


def _collapse_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """khugepaged picks a page-cache page of a file the mm maps, whose lock it gets, in a
    range whose page table maps no anonymous page (no anon_vma)."""
    pfn = file_page(w, lv.mm, lv.va)
    if pfn == NO_PFN or page_locked(w, pfn):
        return False
    mm = w.mms.peek(lv.mm)
    if mm.pgtable_pfn == NO_PFN:
        return False
    return not any(p.mapped and w.frames[p.pfn].kind == ANON for p in mm.ptes.values())


COLLAPSE = register(
    Path(
        "collapse",
        # Asked for by name (--budget collapse=1): its question needs a lazy CPU or a walker.
        BudgetKind("collapse", default=0, fuzz_max=0, shape=(("anon_pages", 0),)),
        MM_VA,
        _collapse_may_start,
        (
            Step("collapse_file", collapse_file, guard=ptl_free, c="try_to_unmap()"),
            Inline("try_to_unmap_flush", batch_flush_steps, skip=nothing_batched),
            Step(
                "retract_page_tables",
                retract_page_tables,
                guard=ptl_free,
                c="pmdp_collapse_flush()",
            ),
            Inline("flush_tlb_mm_range", FLUSH_TLB_MM_RANGE.expand, skip=ptl_not_held),
            Step(
                "retract_page_tables__unlock",
                retract_page_tables__unlock,
                skip=ptl_not_held,
                c="spin_unlock(pml)",
            ),
            Step("pte_free_defer", pte_free_defer, skip=nothing_retracted, c="pte_free_defer()"),
        ),
        locks_page=page_cache_page,
        summary="khugepaged's file collapse: the small page unmapped (batched flush), then "
        "the empty page table retracted: PMD cleared, flushed, the table freed",
    )
)
