"""mm/vmscan.c and mm/rmap.c: reclaim of one page, with the batched TLB flush.

shrink_page_list() (5.2; mainline shrink_folio_list()) takes the page lock, unmaps the page
from every mm with ``try_to_unmap(page, TTU_BATCH_FLUSH)``, and frees it at the end of the
batch, after ``try_to_unmap_flush()``. try_to_unmap_one(), under the PTL of each mapping::

    if (should_defer_flush(mm, flags)) {       /* another CPU is in mm_cpumask */
        pteval = ptep_get_and_clear(mm, address, pvmw.pte);
        set_tlb_ubc_flush_pending(mm, pte_dirty(pteval));
    } else {
        pteval = ptep_clear_flush(vma, address, pvmw.pte);
    }
    if (pte_dirty(pteval)) set_page_dirty(page);
    ... page_remove_rmap(subpage, PageHuge(page)); put_page(page);

set_tlb_ubc_flush_pending(): ``arch_tlbbatch_add_mm(&tlb_ubc->arch, mm)``, which on x86 is
``inc_mm_tlb_gen(mm); cpumask_or(&batch->cpumask, &batch->cpumask, mm_cpumask(mm));`` (read
in arch/x86/include/asm/tlbflush.h of 5.x and 6.x trees through the search tool: the tlb_gen
bump is at add time on 5.2 too; ``../shared/mm-layer.md`` section 6 says 5.2 had only the
cpumask_or, marked unverified, and is wrong there), ``tlb_ubc->flush_required = true;
barrier(); mm->tlb_flush_batched = true;``. try_to_unmap_flush() -> arch_tlbbatch_flush():
flush the batch's cpumask with a full flush (the local CPU first on 5.2, the remotes first
since flush_tlb_multi(); the same orders as flush_tlb_mm_range(), ``Variant.flush_steps``),
then clear it. Mainline: mm/rmap.c set_tlb_ubc_flush_pending(mm, pteval, start, end) the
same, with a pending/flushed generation pair for ``tlb_flush_batched``.

The window this opens, and what closes it: a PTE is clear but some CPU may still cache it
until the batch is flushed. A syscall that now finds the PTE clear changes nothing and would
return; so change_pte_range(), zap_pte_range() and move_ptes() call
``flush_tlb_batched_pending(mm)`` right after taking the PTL (``tlbfuzz.protocol.mm``).

Modelled as three pieces, each one atomic step or the flush's own steps: the unmap (one PTL
section; without a deferral its ``ptep_clear_flush()`` needs no IPI, since no other CPU is in
mm_cpumask: a CPU that joins later reads the new tlb_gen after setting its bit), the batched
flush, and the free. The flush request carries the mm of the one page (the model's batch holds
one) and the generation the add bumped to, where the kernel sends a NULL-mm full flush with no
generation; for that mm's entries the two are the same (a CPU whose ASID slot is behind that
generation flushes, now or at its next switch to the mm). Left out: swap-out and pageout of a
dirty page (a dirty page-cache page stays, dirty, for writeback; an anonymous page is freed,
its contents in swap), huge pages, MADV_FREE, and the ``try_to_unmap_flush_dirty()`` before IO.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlbfuzz.protocol.mm import free_page, page_locked, pte_accessible, ptl_free
from tlbfuzz.protocol.paths import MM_VA, BudgetKind, Inline, Path, Step, register
from tlbfuzz.protocol.state import FILE, NO_PFN, PAGE_SIZE, TLB_FLUSH_ALL, FlushTlbInfo, Pte
from tlbfuzz.protocol.tlb import INC_MM_TLB_GEN, flush_tlb_func, inc_mm_tlb_gen

if TYPE_CHECKING:
    from tlbfuzz.protocol.state import Locals
    from tlbfuzz.protocol.variants import Variant
    from tlbfuzz.protocol.world import World


def mapped_page(w: World, mm_id: int, va: int) -> int:
    """The page (anonymous or page cache) that ``va`` of ``mm_id`` maps, if the PTE maps it
    (present, or PROT_NONE: the kernel's ``pte_present()``)."""
    pte = w.mms[mm_id].ptes.get(va)
    if pte is None or not pte.mapped:
        return NO_PFN
    f = w.frames[pte.pfn]
    return pte.pfn if (f.mm, f.va) == (mm_id, va) else NO_PFN


def rmap_address(w: World, mm_id: int, pfn: int) -> int:
    """page_vma_mapped_walk(): the address at which ``mm_id`` maps the page now (its rmap
    address, ``Frame.va``, which follows an mremap), or 0 if no PTE there maps it."""
    if pfn == NO_PFN:
        return 0
    f = w.frames[pfn]
    return f.va if f.mm == mm_id and mapped_page(w, mm_id, f.va) == pfn else 0


def page_at(w: World, cpu: int, lv: Locals) -> int:
    """``trylock_page()`` of the page the LRU hands over: the one at the locals' (mm, va)."""
    return mapped_page(w, lv.mm, lv.va)


def try_to_unmap_one(w: World, cpu: int) -> None:
    """``trylock_page()`` (held by the path from its start), then, under the PTL of the
    address the rmap finds the page at, clear the PTE, remove the rmap, and either defer the
    flush to the batch or flush now.

    One step: the PTL section of try_to_unmap_one(); the page lock is taken before it (a right
    mover), and without a deferral no other CPU is in mm_cpumask to wait for."""
    c = w.cpus[cpu]
    lv = c.locals
    mm = w.mms[lv.mm]
    pfn = lv.page
    va = rmap_address(w, lv.mm, pfn)
    if va == 0:
        return  # zapped since the page was picked: nothing to unmap
    c.locals = lv = lv._replace(va=va)
    pte = mm.ptes[lv.va]
    mm.ptes[lv.va] = Pte(False, False, False, False, NO_PFN, pte.seq + 1)
    frame = w.frames[pfn]._replace(mapped=False)
    if pte.dirty and frame.kind == FILE:
        frame = frame._replace(page_dirty=True)  # set_page_dirty(page)
    w.frames[pfn] = frame
    c.locals = lv._replace(pfns=(pfn,))
    accessible = pte_accessible(w, cpu, lv.mm, pte)
    if w.variant.reclaim_defers_flush(w.site(cpu), w, cpu, lv.mm):
        set_tlb_ubc_flush_pending(w, cpu, pte, accessible)
        return
    if not accessible:
        return  # ptep_clear_flush(): "if (pte_accessible(mm, pte)) flush_tlb_page(...)"
    # ptep_clear_flush() -> flush_tlb_mm_range(): no other CPU to IPI, flush this one
    gen = inc_mm_tlb_gen(w, cpu, lv.mm)
    mm.flush_log += ((gen, lv.va, pte.seq + 1),)
    info = FlushTlbInfo(lv.mm, lv.va, lv.va + PAGE_SIZE, gen, False, cpu)
    if c.own_loaded_mm() == lv.mm:
        flush_tlb_func(w, cpu, info)


def set_tlb_ubc_flush_pending(w: World, cpu: int, pte: Pte, accessible: bool) -> None:
    """The deferral, after ``ptep_get_and_clear()`` of ``pte`` at the locals' (mm, va): mainline
    first ``if (!pte_accessible(mm, pteval)) return;``; then ``arch_tlbbatch_add_mm()``:
    ``inc_mm_tlb_gen(mm); cpumask_or(batch, mm_cpumask(mm))``; ``barrier();
    mm->tlb_flush_batched = true``."""
    c = w.cpus[cpu]
    lv = c.locals
    if not accessible and w.variant.set_tlb_ubc_flush_pending_checks_accessible(w.site(cpu)):
        return
    mm = w.mms[lv.mm]
    gen = inc_mm_tlb_gen(w, cpu, lv.mm)
    mm.flush_log += ((gen, lv.va, pte.seq + 1),)
    c.locals = lv._replace(ubc=lv.ubc | mm.cpumask, ubc_gen=gen)
    mm.tlb_flush_batched = True


def arch_tlbbatch_flush(w: World, cpu: int) -> None:
    """try_to_unmap_flush() -> ``arch_tlbbatch_flush(&tlb_ubc->arch)``: the request the batch's
    CPUs will handle, a full flush (its local and remote parts are the steps after this)."""
    c = w.cpus[cpu]
    lv = c.locals
    c.flush_tlb_info = FlushTlbInfo(lv.mm, 0, TLB_FLUSH_ALL, lv.ubc_gen, False, cpu)


def nothing_batched(w: World, cpu: int) -> bool:
    """A skip: ``if (!tlb_ubc->flush_required) return;``"""
    return w.cpus[cpu].locals.ubc == 0


def free_unref_page_list(w: World, cpu: int) -> None:
    """The end of shrink_page_list(): after try_to_unmap_flush(), a clean page leaves the page
    cache (or an anonymous page goes to swap) and is freed; unlock_page(). A dirty page-cache
    page stays, for writeback."""
    lv = w.cpus[cpu].locals
    for pfn in lv.pfns:
        f = w.frames[pfn]
        if not (f.kind == FILE and f.page_dirty):
            free_page(w, pfn, by=f"cpu{cpu} shrink_page_list")


def _reclaim_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """The LRU hands reclaim a mapped page whose lock it gets (``trylock_page()``)."""
    pfn = mapped_page(w, lv.mm, lv.va)
    return pfn != NO_PFN and not page_locked(w, pfn)


def batch_flush_steps(variant: Variant, path: str) -> tuple[Step, ...]:
    """flush_tlb_mm_range()'s steps in the variant's order, with the request taken from the
    batch instead of a new ``inc_mm_tlb_gen()`` (the add bumped tlb_gen already)."""
    return tuple(BATCH_INFO if s is INC_MM_TLB_GEN else s for s in variant.flush_steps(path))


BATCH_INFO = Step("arch_tlbbatch_flush", arch_tlbbatch_flush, c="arch_tlbbatch_flush()")
RECLAIM = register(
    Path(
        "reclaim",
        # Asked for by name (--budget reclaim=1): its races need a syscall on another CPU.
        BudgetKind("reclaim", default=0, fuzz_max=0),
        MM_VA,
        _reclaim_may_start,
        (
            Step("try_to_unmap_one", try_to_unmap_one, guard=ptl_free, c="try_to_unmap_one()"),
            Inline("try_to_unmap_flush", batch_flush_steps, skip=nothing_batched),
            Step("free_unref_page_list", free_unref_page_list, c="free_unref_page_list()"),
        ),
        locks_page=page_at,
        summary="reclaim of one mapped page: try_to_unmap() with TTU_BATCH_FLUSH, the batched "
        "flush, the free",
    )
)
