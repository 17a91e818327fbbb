"""mm/memory.c: the write fault that copies a page (copy-on-write).

A write to a present, read-only PTE of a writable private mapping faults into do_wp_page(),
entered under the PTL (handle_pte_fault() took it and checked ``pte_same()`` against
``vmf->orig_pte``). Either the page is reused (the PTE becomes writable: a permission
upgrade, no flush; the model does that inside the user's write, ``tlbfuzz.protocol.hw``), or
it is copied, wp_page_copy()::

    pte_unmap_unlock(vmf->pte, vmf->ptl);
    new_page = alloc_page_vma(...); cow_user_page(new_page, old_page, vmf);   /* outside */
    vmf->pte = pte_offset_map_lock(mm, vmf->pmd, vmf->address, &vmf->ptl);
    if (likely(pte_same(*vmf->pte, vmf->orig_pte))) {
            entry = maybe_mkwrite(pte_mkdirty(mk_pte(new_page, vma->vm_page_prot)), vma);
            ptep_clear_flush_notify(vma, vmf->address, vmf->pte);
            page_add_new_anon_rmap(new_page, vma, vmf->address, false);
            set_pte_at_notify(mm, vmf->address, vmf->pte, entry);
            page_remove_rmap(old_page, false);
    }
    pte_unmap_unlock(vmf->pte, vmf->ptl);
    ... put_page(old_page);

(5.2, 5.4-era mm/memory.c; mainline wp_page_copy() the same order with folios and a plain
``ptep_clear_flush()``: ``../shared/mm-layer.md`` section 8.) The clear, flush, set order
under the PTL means no CPU can hold the new translation while another still holds the old.

What makes the copy safe is earlier: the copy reads the old page outside any lock, so no CPU
may still write it through a writable translation from before the PTE became read-only.
Whoever write-protects an anonymous PTE under ``mmap_read_lock()`` and defers its flush opens
that window (uffd-wp, 6ce64428d621; clear_refs before 29a951dfb3c3:
``tlbfuzz.protocol.task_mmu``).

Which way the fault goes is ``Variant.do_wp_page_copies``: 5.2 reuses a page only this mm
maps (``reuse_swap_page()``, page_mapcount() == 1), which is every anonymous page here.
09854ba94c6a ("mm: do_wp_page() simplification", v5.9) made the fault copy whenever the page
has another reference (``page_count() != 1``: an LRU batch, the swap cache, a GUP pin), and
``linux-current`` takes that branch: it is the 5.9 to 5.18 fault. Since 6c287605fd56 (v5.19)
mainline reuses a page marked PageAnonExclusive whatever its count, and copies only a page
shared with another mm (fork, KSM), which the model does not have; the copy keeps the
ordering question of that case (a writable translation still cached while the page is
copied) on the model's one mm. Left out: the fault's own mmap_lock retry, KSM, THP, the uffd-wp
marker (``handle_userfault()``), the mmu notifiers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlbfuzz.protocol import hw
from tlbfuzz.protocol.hw import write_protected_pte
from tlbfuzz.protocol.migrate import lost_to_copy, report_lost_copy, take_copy
from tlbfuzz.protocol.mm import (
    alloc_user_page,
    free_page,
    mmap_lock_writer,
    ptl_free,
    ptl_not_held,
)
from tlbfuzz.protocol.paths import FLUSH_TLB_MM_RANGE, VA, BudgetKind, Inline, Path, Step, register
from tlbfuzz.protocol.state import ANON, NO_PFN, PAGE_SIZE, Pte
from tlbfuzz.protocol.vmscan import mapped_page

if TYPE_CHECKING:
    from tlbfuzz.protocol.state import Locals
    from tlbfuzz.protocol.world import World


def _wp_pte(w: World, mm_id: int, va: int) -> Pte | None:
    """The PTE if a write to ``va`` would enter do_wp_page() for an anonymous page."""
    pte = write_protected_pte(w.mms[mm_id], va)
    if pte is None:
        return None
    pfn = mapped_page(w, mm_id, va)
    return pte if pfn != NO_PFN and w.frames[pfn].kind == ANON else None


def do_wp_page(w: World, cpu: int) -> None:
    """handle_pte_fault() under the PTL: ``if (!pte_same(*vmf->pte, entry))`` the fault is
    done (another thread fixed it); else do_wp_page(): reuse the page (writable, dirty,
    soft-dirty: ``wp_page_reuse()``) or remember ``vmf->orig_pte`` and drop the PTL to copy.

    One step: a PTL section."""
    c = w.cpus[cpu]
    lv = c.locals
    mm_id = c.task
    c.locals = lv = lv._replace(mm=mm_id, end=lv.va + PAGE_SIZE)
    pte = _wp_pte(w, mm_id, lv.va)
    if pte is None:
        return  # spurious by now: the retried write finds what it needs, or faults again
    if not w.variant.do_wp_page_copies(w.site(cpu)):
        # wp_page_reuse(), as a user write's fault does it (a locked page: the write waits)
        hw.do_wp_page(w, cpu, lv.va)
        return
    c.locals = lv._replace(orig_seq=pte.seq, pfns=(pte.pfn,))


def no_copy(w: World, cpu: int) -> bool:
    """A skip: the fault reused the page, found nothing to do, or gave up the copy."""
    return w.cpus.peek(cpu).locals.orig_seq < 0


def wp_page_copy__cow_user_page(w: World, cpu: int) -> None:
    """``alloc_page_vma()``, then cow_user_page() (mainline ``__wp_page_copy_user()``) reads
    the old page: from now on a write to it is not in the copy. No free frame: VM_FAULT_OOM."""
    c = w.cpus[cpu]
    lv = c.locals
    old = lv.pfns[0]
    new = alloc_user_page(w, lv.mm, lv.va)
    if new == NO_PFN:
        c.locals = lv._replace(orig_seq=-1, pfns=())
        return
    c.locals = lv._replace(pfns=(old, new))
    if w.frames[old].kind == ANON:  # zapped and freed meanwhile: pte_same() will fail
        take_copy(w, cpu, old)


def wp_page_copy(w: World, cpu: int) -> None:
    """``pte_offset_map_lock()``; ``if (likely(pte_same(*vmf->pte, vmf->orig_pte)))``
    ``ptep_clear_flush()``: the PTE is cleared here, its flush (``flush_tlb_page()``) runs in
    the steps after, under the PTL. Not the same PTE: drop the copy, unlock."""
    c = w.cpus[cpu]
    lv = c.locals
    mm = w.mms[lv.mm]
    pte = mm.ptes.get(lv.va)
    if pte is None or pte.seq != lv.orig_seq:
        free_page(w, lv.pfns[1], by=f"cpu{cpu} wp_page_copy")
        c.locals = lv._replace(orig_seq=-1, pfns=())
        return
    mm.ptes[lv.va] = Pte(False, False, False, False, NO_PFN, pte.seq + 1)
    c.locals = lv._replace(ptl=True, cleared=True)


def wp_page_copy__set_pte_at(w: World, cpu: int) -> None:
    """After the flush: ``page_add_new_anon_rmap(new)``; ``set_pte_at_notify()`` of a
    writable, dirty (so soft-dirty) PTE to the copy; ``page_remove_rmap(old)``; unlock."""
    c = w.cpus[cpu]
    lv = c.locals
    mm = w.mms[lv.mm]
    old, new = lv.pfns
    seq = mm.ptes[lv.va].seq
    mm.ptes[lv.va] = Pte(True, True, True, True, new, seq + 1, soft_dirty=True)
    w.frames[new] = w.frames[new]._replace(mapped=True)
    w.frames[old] = w.frames[old]._replace(mapped=False)
    if lost_to_copy(w, cpu, old):
        report_lost_copy(w, f"cpu{cpu} wp_page_copy()", lv.mm, lv.va, old, new)
    c.locals = lv._replace(ptl=False, pfns=(old,))


def wp_page_copy__put_page(w: World, cpu: int) -> None:
    """``put_page(old_page)``: the old page's last reference (the one that made the fault
    copy is taken to be gone by now) frees it."""
    lv = w.cpus[cpu].locals
    free_page(w, lv.pfns[0], by=f"cpu{cpu} wp_page_copy")


def _wp_fault_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """User code writes ``va`` and faults: no translation on this CPU lets the write through
    (a cached W=1 D=1 entry would), the PTE is read-only in a writable vma (do_wp_page()),
    and ``mmap_read_lock()`` (mainline: the per-VMA lock) would not sleep."""
    c = w.cpus.peek(cpu)
    e = c.tlb.get((c.cr3_asid, lv.va))
    if e is not None and e.writable and e.dirty:
        return False
    return _wp_pte(w, c.task, lv.va) is not None and mmap_lock_writer(w, c.task) < 0


WP_FAULT = register(
    Path(
        "wp_fault",
        # Asked for by name (--budget wp_fault=1): its race needs a write-protect and a writer.
        BudgetKind("wp_fault", default=0, fuzz_max=0),
        VA,
        _wp_fault_may_start,
        (
            Step("do_wp_page", do_wp_page, guard=ptl_free, c="do_wp_page()"),
            Step(
                "wp_page_copy__cow_user_page",
                wp_page_copy__cow_user_page,
                skip=no_copy,
                c="cow_user_page()",
            ),
            Step(
                "wp_page_copy", wp_page_copy, guard=ptl_free, skip=no_copy, c="ptep_clear_flush()"
            ),
            Inline("flush_tlb_mm_range", FLUSH_TLB_MM_RANGE.expand, skip=ptl_not_held),
            Step(
                "wp_page_copy__set_pte_at",
                wp_page_copy__set_pte_at,
                skip=ptl_not_held,
                c="set_pte_at_notify()",
            ),
            Step("wp_page_copy__put_page", wp_page_copy__put_page, skip=no_copy, c="put_page()"),
        ),
        holds=(("mmap_lock", 1),),
        from_user=True,
        allocates=True,
        summary="a write fault on a read-only anonymous PTE: reuse, or copy the page (COW)",
    )
)
