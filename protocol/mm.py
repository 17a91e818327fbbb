"""mm/: the kernel paths that change PTEs and then need a TLB flush, and the events around them.

Each path changes page tables in its first step (under the PTL and mmap_lock, which the model
takes as atomic), then runs the variant's flush_tlb_mm_range() steps, then does what must wait
for the flush (free pages, install the clean PTE, write the page back). The mmu_gather order of
include/asm-generic/tlb.h: "1) unhook page 2) TLB invalidate page 3) free page".

The paths' records are at the end of the module (``protocol.paths`` says what a record holds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocol import hw
from protocol.paths import FLUSH_TLB_MM_RANGE, MM_VA, NO_ARGS, VA, BudgetKind, Path, Step, register
from protocol.properties import (
    NMI_UACCESS_SAFETY,
    NO_STALE_ENTRY_AT_FREE,
    NO_WALK_OF_FREED_PAGE_TABLE,
)
from protocol.state import (
    ANON,
    DEVICE,
    FILE,
    FREE,
    NO_PFN,
    PAGE_SIZE,
    PGTABLE,
    REUSED,
    Frame,
    Locals,
    Pte,
    mm_name,
)

if TYPE_CHECKING:
    from protocol.world import World


def zap_pte(w: World, mm_id: int, va: int) -> int:
    """zap_pte_range() for one PTE: ``ptent = ptep_get_and_clear_full(...)``; a dirty file
    PTE dirties its page (``set_page_dirty()``). Returns the anon pfn to free, or NO_PFN."""
    mm = w.mms[mm_id]
    pte = mm.ptes.get(va)
    if pte is None or not pte.present:
        return NO_PFN
    frame = w.frames[pte.pfn]
    if frame.kind == FILE and pte.dirty:
        w.frames[pte.pfn] = frame._replace(page_dirty=True)
    mm.ptes[va] = Pte(False, False, False, False, NO_PFN, pte.seq + 1)
    return pte.pfn if frame.kind == ANON else NO_PFN


def munmap(w: World, cpu: int) -> None:
    """munmap() of the whole mapping of current->mm: unmap_region() zaps every PTE and
    free_pgtables() clears the PMD entry; the page-table page joins the gather
    (``tlb->freed_tables = 1``). The PTE page and the anon pages are freed after the flush."""
    c = w.cpus[cpu]
    mm_id = c.task
    mm = w.mms[mm_id]
    vas = w.config.vas()
    pfns = [pfn for va in vas if (pfn := zap_pte(w, mm_id, va)) != NO_PFN]
    for va in vas:
        mm.vma_writable.pop(va, None)
    mm.write_protected = frozenset()
    if mm.pgtable_pfn != NO_PFN:
        pfns.append(mm.pgtable_pfn)
        mm.pgtable_pfn = NO_PFN
    c.locals = c.locals._replace(
        mm=mm_id, va=vas[0], end=vas[-1] + PAGE_SIZE, freed_tables=True, pfns=tuple(pfns)
    )


def madvise_dontneed(w: World, cpu: int) -> None:
    """madvise(MADV_DONTNEED) of one page: zap_page_range(); the vma and page table stay."""
    c = w.cpus[cpu]
    mm_id, va = c.task, c.locals.va
    pfn = zap_pte(w, mm_id, va)
    c.locals = c.locals._replace(
        mm=mm_id, end=va + PAGE_SIZE, freed_tables=False, pfns=(pfn,) if pfn != NO_PFN else ()
    )


def mprotect(w: World, cpu: int) -> None:
    """mprotect(PROT_READ) of one page: change_pte_range() clears the PTE's write bit."""
    c = w.cpus[cpu]
    mm_id, va = c.task, c.locals.va
    mm = w.mms[mm_id]
    mm.vma_writable[va] = False
    pte = mm.ptes[va]
    mm.ptes[va] = pte._replace(writable=False, seq=pte.seq + 1)
    c.locals = c.locals._replace(mm=mm_id, end=va + PAGE_SIZE, freed_tables=False)


def mprotect_done(w: World, cpu: int) -> None:
    """mprotect() returns: from now on no write may go through a writable translation."""
    lv = w.cpus[cpu].locals
    mm = w.mms[lv.mm]
    if not mm.vma_writable.get(lv.va, True):
        mm.write_protected = mm.write_protected | {lv.va}


def tlb_finish_mmu(w: World, cpu: int) -> None:
    """tlb_finish_mmu() -> tlb_flush_mmu_free(): free the gathered pages and page tables."""
    for pfn in w.cpus[cpu].locals.pfns:
        free_page(w, pfn, by=f"cpu{cpu} tlb_finish_mmu")


def free_page(w: World, pfn: int, by: str) -> None:
    """Give a frame back to the page allocator (its version changes), checking the strict
    properties at this instant: no running CPU may still translate to it."""
    frame = w.frames[pfn]
    for cpu, c in enumerate(w.cpus):
        if frame.kind == PGTABLE:
            # no_walk_of_freed_page_table, at free time: a CPU whose CR3 can walk the mm
            # (running or lazy) still caches the PMD entry -> any speculative walk reads it.
            pwc = c.pwc.get(c.cr3_asid)
            if (
                c.cr3_mm == frame.mm
                and pwc is not None
                and pwc.pfn == pfn
                and pwc.frame_version == frame.version
            ):
                lazy = " (lazy)" if c.is_lazy else ""
                w.report(
                    NO_WALK_OF_FREED_PAGE_TABLE,
                    f"{by} frees page-table page pfn {pfn} of mm {mm_name(frame.mm)} while "
                    f"cpu{cpu}{lazy} has CR3 = mm {mm_name(frame.mm)} and its paging-structure "
                    f"cache still points at pfn {pfn}: a speculative walk reads the freed page",
                )
        elif c.loaded_mm == frame.mm and not c.is_lazy:
            e = c.tlb.get((c.cr3_asid, frame.va))
            if e is not None and e.pfn == pfn and e.frame_version == frame.version:
                afip = c.async_func_in_progress
                state = f"{c.mode}, loaded_mm={mm_name(c.loaded_mm)}"
                if afip:
                    state += f", async_func_in_progress={afip}"
                w.report(
                    NO_STALE_ENTRY_AT_FREE,
                    f"{by} frees pfn {pfn} ({frame.describe()}) while cpu{cpu} ({state}) "
                    f"still caches {frame.va:#x} -> pfn {pfn}: speculation can use it",
                )
    w.frames[pfn] = Frame(FREE, 0, 0, frame.version + 1)


def alloc_page(w: World, pfn: int, to: int) -> None:
    """The page allocator hands a free frame to another mm (``to`` = its id), or to a device
    (``to`` = 0, memory hotplug: Jann Horn's #MC concern). Its version changes again."""
    frame = w.frames[pfn]
    assert frame.kind == FREE
    w.frames[pfn] = Frame(REUSED if to else DEVICE, to, 0, frame.version + 1)


# --- writeback: clear_page_dirty_for_io() -> page_mkclean() -> writepage -------------------


def page_locked(w: World, pfn: int) -> bool:
    """PG_locked: writeback holds the page lock from before clear_page_dirty_for_io() until
    writepage has run (``lock_page(); clear_page_dirty_for_io(); ->writepage(); unlock``).
    Derived from the CPUs' paths rather than stored, so it cannot go stale."""
    return any(c.path == WRITEBACK.name and c.locals.pfns[:1] == (pfn,) for c in w.cpus)


def clear_page_dirty_for_io(w: World, cpu: int) -> None:
    """clear_page_dirty_for_io() -> page_mkclean_one(): ``if (!pte_dirty(*pte) &&
    !pte_write(*pte)) continue; entry = ptep_clear_flush(vma, address, pte);`` -- this step is
    the ``ptep_get_and_clear()``; the flush follows. page_mkclean() returning 1 makes the
    caller ``set_page_dirty()``: done here, before the flush, with the same outcome."""
    c = w.cpus[cpu]
    lv = c.locals
    mm = w.mms[lv.mm]
    pte = mm.ptes[lv.va]
    assert pte.present and (pte.dirty or pte.writable)
    w.frames[pte.pfn] = w.frames[pte.pfn]._replace(page_dirty=True)
    mm.ptes[lv.va] = Pte(False, False, False, False, NO_PFN, pte.seq + 1)
    c.locals = lv._replace(end=lv.va + PAGE_SIZE, freed_tables=False, pfns=(pte.pfn,))


def page_mkclean_one__set_pte_at(w: World, cpu: int) -> None:
    """``entry = pte_wrprotect(entry); entry = pte_mkclean(entry); set_pte_at(...)``"""
    lv = w.cpus[cpu].locals
    mm = w.mms[lv.mm]
    pte = mm.ptes[lv.va]
    mm.ptes[lv.va] = Pte(True, False, True, False, lv.pfns[0], pte.seq + 1)


def writepage(w: World, cpu: int) -> None:
    """``TestClearPageDirty(page)``, then ->writepage() saves the page's contents to disk."""
    lv = w.cpus[cpu].locals
    pfn = lv.pfns[0]
    w.frames[pfn] = w.frames[pfn]._replace(page_dirty=False, modified=False)


# --- kernel code that touches user memory -----------------------------------------------------


def local_irq_disable(w: World, cpu: int) -> None:
    """A syscall section with IRQs disabled that reads user memory (e.g. a
    ``__copy_from_user_inatomic()`` under ``local_irq_save()``): IPIs wait until it ends."""
    w.cpus[cpu].irqs_on = False


def copy_from_user(w: World, cpu: int) -> None:
    hw.access(w, cpu, w.cpus[cpu].locals.va, write=False, who="kernel copy_from_user")


def local_irq_enable(w: World, cpu: int) -> None:
    w.cpus[cpu].irqs_on = True


def nmi(w: World, cpu: int, va: int) -> None:
    """An NMI (perf) whose handler does ``copy_from_user_nmi(va)``: ``if
    (!nmi_uaccess_okay()) return 0;`` then a uaccess in current->mm through the TLB. NMIs
    arrive at any time, also inside an IRQ handler or with IRQs off."""
    c = w.cpus[cpu]
    if not w.variant.nmi_uaccess_okay(w, cpu):
        return
    if c.cr3_mm != c.task:
        w.report(
            NMI_UACCESS_SAFETY,
            f"cpu{cpu} copy_from_user_nmi({va:#x}) passed nmi_uaccess_okay() while CR3 holds "
            f"mm {mm_name(c.cr3_mm)} but current->mm is {mm_name(c.task)}",
        )
        return
    hw.access(w, cpu, va, write=False, who="NMI copy_from_user_nmi")


# --- the paths ------------------------------------------------------------------------------


def present_pte(w: World, cpu: int, lv: Locals) -> bool:
    """A start guard: current->mm maps ``va`` (its PTE is present)."""
    pte = w.mms[w.cpus[cpu].task].ptes.get(lv.va)
    return pte is not None and pte.present


def _munmap_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """The mapping still exists (its page table has not been freed)."""
    return w.mms[w.cpus[cpu].task].pgtable_pfn != NO_PFN


def _mprotect_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """A present PTE of a writable vma: mprotect(PROT_READ) has something to change."""
    return present_pte(w, cpu, lv) and bool(w.mms[w.cpus[cpu].task].vma_writable.get(lv.va))


def _uaccess_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """The address is mapped, or this CPU still caches a translation for it."""
    c = w.cpus[cpu]
    return present_pte(w, cpu, lv) or (c.cr3_asid, lv.va) in c.tlb


def _writeback_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """A dirty page-cache page, mapped writable or dirty, whose lock is free (lock_page()
    would sleep)."""
    pte = w.mms[lv.mm].ptes.get(lv.va)
    if pte is None or not pte.present or not (pte.dirty or pte.writable):
        return False
    frame = w.frames[pte.pfn]
    return frame.kind == FILE and frame.page_dirty and not page_locked(w, pte.pfn)


TLB_FINISH_MMU = Step("tlb_finish_mmu", tlb_finish_mmu)

MUNMAP = register(
    Path(
        "munmap",
        BudgetKind("munmap"),
        NO_ARGS,
        _munmap_may_start,
        (Step("munmap", munmap, c="unmap_region()"), FLUSH_TLB_MM_RANGE, TLB_FINISH_MMU),
        from_user=True,
        summary="munmap() of current->mm's whole mapping; page tables freed (freed_tables)",
    )
)
MADVISE = register(
    Path(
        "madvise",
        BudgetKind("madvise"),
        VA,
        present_pte,
        (
            Step("madvise_dontneed", madvise_dontneed, c="zap_page_range()"),
            FLUSH_TLB_MM_RANGE,
            TLB_FINISH_MMU,
        ),
        from_user=True,
        summary="madvise(MADV_DONTNEED) of one present page",
    )
)
MPROTECT = register(
    Path(
        "mprotect",
        BudgetKind("mprotect"),
        VA,
        _mprotect_may_start,
        (Step("mprotect", mprotect, c="change_pte_range()"), FLUSH_TLB_MM_RANGE),
        returns=mprotect_done,
        from_user=True,
        summary="mprotect(PROT_READ) of one present writable page",
    )
)
WRITEBACK = register(
    Path(
        "writeback",
        BudgetKind("writeback"),
        MM_VA,
        _writeback_may_start,
        (
            Step("clear_page_dirty_for_io", clear_page_dirty_for_io, c="ptep_clear_flush()"),
            FLUSH_TLB_MM_RANGE,
            Step("page_mkclean_one__set_pte_at", page_mkclean_one__set_pte_at, c="set_pte_at()"),
            Step("writepage", writepage, c="->writepage()"),
        ),
        summary="writeback of one dirty file page: clear_page_dirty_for_io() -> page_mkclean()",
    )
)
IRQS_OFF_UACCESS = register(
    Path(
        "irqs_off_uaccess",
        BudgetKind("irqs_off"),
        VA,
        _uaccess_may_start,
        (
            Step("local_irq_disable", local_irq_disable),
            Step("copy_from_user", copy_from_user, c="copy_from_user()"),
            Step("local_irq_enable", local_irq_enable),
        ),
        from_user=True,
        summary="a syscall that reads user memory with IRQs disabled",
    )
)
