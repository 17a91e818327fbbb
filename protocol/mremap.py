"""mm/mremap.c: mremap() moving an anonymous page to another address.

mremap(old, PAGE_SIZE, PAGE_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, new) under
``mmap_write_lock()``: move_vma() makes the new vma (``copy_vma()``), move_page_tables() moves
the PTEs, and ``do_munmap()`` of the old range removes the old vma. move_ptes(), the part that
races with the flush (5.4-era trees for 5.2, and mainline, the same order)::

    old_pte = pte_offset_map_lock(mm, old_pmd, old_addr, &old_ptl);
    new_ptl = pte_lockptr(mm, new_pmd);
    if (new_ptl != old_ptl) spin_lock_nested(new_ptl, SINGLE_DEPTH_NESTING);
    flush_tlb_batched_pending(vma->vm_mm);
    for (...) {
        if (pte_none(*old_pte)) continue;
        pte = ptep_get_and_clear(mm, old_addr, old_pte);
        /* If we are remapping a valid PTE, make sure to flush TLB before we drop the PTL
         * for the PTE. NOTE! Both old and new PTL matter: the old one for racing with
         * page_mkclean(), the new one to make sure the physical page stays valid until the
         * TLB entry for the old mapping has been flushed. */
        if (pte_present(pte)) force_flush = true;
        pte = move_pte(pte, new_vma->vm_page_prot, old_addr, new_addr);
        pte = move_soft_dirty_pte(pte);
        set_pte_at(mm, new_addr, new_pte, pte);
    }
    if (force_flush) flush_tlb_range(vma, old_end - len, old_end);
    if (new_ptl != old_ptl) spin_unlock(new_ptl);
    pte_unmap_unlock(old_pte - 1, old_ptl);

The flush under the PTL is eb66ae030829 ("mremap: properly flush TLB before releasing the
page", v4.19, CVE-2018-18281); before it move_page_tables() flushed after move_ptes() had
dropped both locks (``need_flush``), and an rmap walker that took the new PTL in between could
unmap and free the page while another CPU still cached its old address
(``Variant.move_ptes_flush_before_unlock``).

The model's mm has one page table, so the old and the new PTL are one lock, and the page's
rmap address (``Frame.va``) becomes the new address with the move, as ``page_address_in_vma()``
computes it from the new vma. The new address is ``Config.spare_va()`` or an address an earlier
mremap left (``Kernel.vas``): the lowest one no vma maps, as ``get_unmapped_area()`` would
give. ``need_rmap_locks`` is taken to be false (the new vma after the old in the anon_vma
tree, the usual case), so rmap walkers (reclaim, migration) are held off only by the PTL.

Left out: file mappings (the page cache keys a page by its offset, which the model's file
pages tie to their address), moves of non-present entries, PMD moves (``move_normal_pmd()``),
growing and shrinking, MREMAP_DONTUNMAP, uffd remap events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlbfuzz.protocol.mm import mmap_locked, ptl_not_held, ptl_section, retire
from tlbfuzz.protocol.paths import FLUSH_TLB_MM_RANGE, VA, BudgetKind, Inline, Path, Step, register
from tlbfuzz.protocol.state import ANON, NO_PFN, PAGE_SIZE, REMOVED, Pte

if TYPE_CHECKING:
    from tlbfuzz.protocol.state import Locals
    from tlbfuzz.protocol.world import World


def unmapped_va(w: World, mm_id: int) -> int:
    """``get_unmapped_area()``: the lowest address of the instance no vma of ``mm_id`` maps."""
    vma = w.mms[mm_id].vma_writable
    for va in w.kernel.vas:
        if va not in vma:
            return va
    return 0


def mremap(w: World, cpu: int) -> None:
    """``mmap_write_lock()`` (held from the start: ``Path.holds``), then move_vma():
    ``copy_vma()`` makes the vma at the new address, writable as the old one. The old vma
    stays until ``do_munmap()`` after the move (``mremap_done``).

    One step: the new vma is read only by start guards (under mmap_lock in the kernel)."""
    c = w.cpus[cpu]
    lv = c.locals
    mm = w.mms[c.task]
    new = unmapped_va(w, c.task)
    mm.vma_writable[new] = mm.vma_writable[lv.va]
    c.locals = lv._replace(mm=c.task, end=lv.va + PAGE_SIZE, new_va=new)


def move_ptes(w: World, cpu: int) -> None:
    """Under both PTLs (one lock here), after flush_tlb_batched_pending(): the old PTE is
    cleared (``ptep_get_and_clear()``) and set at the new address with soft-dirty
    (``move_soft_dirty_pte()``); the page's rmap address follows. ``force_flush`` if it was
    present; the flush of the old range then runs before the unlock, or after it
    (``Variant.move_ptes_flush_before_unlock``).

    One step: a PTL section (``tlbfuzz.protocol.mm.zap_pte_range`` says why)."""
    c = w.cpus[cpu]
    lv = c.locals
    mm = w.mms[lv.mm]
    pte = mm.ptes.get(lv.va)
    force = False
    if pte is not None and (pte.mapped or pte.migration):
        mm.ptes[lv.va] = Pte(False, False, False, False, NO_PFN, pte.seq + 1)
        before = mm.ptes.get(lv.new_va)
        seq = before.seq + 1 if before is not None else 0
        mm.ptes[lv.new_va] = pte._replace(seq=seq, soft_dirty=True)
        w.frames[pte.pfn] = w.frames[pte.pfn]._replace(va=lv.new_va)
        # clear_refs' promise was about the old PTE; the moved one is soft-dirty, so pagemap
        # shows a write through the old address's cached entry at the new one
        mm.soft_dirty_clean.pop(lv.va, None)
        force = pte.mapped  # pte_present(): PROT_NONE too
    at = w.site(cpu)
    keep = force and w.variant.move_ptes_flush_before_unlock(at)
    # flush_tlb_range(): with freed_tables since 3ef938c35035
    ft = w.variant.flush_tlb_range_frees_tables(at)
    c.locals = lv._replace(cleared=force, ptl=keep, freed_tables=ft)


def move_ptes__pte_unmap_unlock(w: World, cpu: int) -> None:
    """After the flush: ``spin_unlock(new_ptl); pte_unmap_unlock(old_pte - 1, old_ptl);``"""
    c = w.cpus[cpu]
    c.locals = c.locals._replace(ptl=False)


def nothing_moved(w: World, cpu: int) -> bool:
    """A skip: no present PTE was moved (``force_flush`` false), so no flush."""
    return not w.cpus[cpu].locals.cleared


def mremap_done(w: World, cpu: int) -> None:
    """``do_munmap()`` of the old range: its vma goes (the zap finds no PTE and the gather
    flushes nothing), ``mmap_write_unlock()``, mremap() returns. Ghost: like munmap, no
    translation of the old address from before may be used any more."""
    c = w.cpus[cpu]
    lv = c.locals
    mm = w.mms[lv.mm]
    mm.vma_writable.pop(lv.va, None)
    mm.write_protected = mm.write_protected - {lv.va}
    retire(w, cpu, REMOVED)


def _mremap_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """current->mm maps an anonymous page at ``va`` (present or PROT_NONE), an address is
    free to move it to, and ``mmap_write_lock()`` would not sleep."""
    mm_id = w.cpus.peek(cpu).task
    mm = w.mms.peek(mm_id)
    pte = mm.ptes.get(lv.va)
    return (
        lv.va in mm.vma_writable
        and pte is not None
        and pte.mapped
        and w.frames[pte.pfn].kind == ANON
        and unmapped_va(w, mm_id) != 0
        and not mmap_locked(w, mm_id)
    )


MREMAP = register(
    Path(
        "mremap",
        # Asked for by name (--budget mremap=1): its race needs an rmap walker elsewhere.
        BudgetKind("mremap", default=0, fuzz_max=0),
        VA,
        _mremap_may_start,
        (
            Step("mremap", mremap, c="mmap_write_lock()"),
            *ptl_section("move_ptes", move_ptes),
            Inline("flush_tlb_mm_range", FLUSH_TLB_MM_RANGE.expand, skip=nothing_moved),
            Step(
                "move_ptes__pte_unmap_unlock",
                move_ptes__pte_unmap_unlock,
                skip=ptl_not_held,
                c="pte_unmap_unlock()",
            ),
        ),
        returns=mremap_done,
        from_user=True,
        holds=(("mmap_lock", 2),),
        moves=True,
        summary="mremap() of one anonymous page to a free address: move_ptes() under the PTL, "
        "the flush of the old address, the old vma unmapped",
    )
)
