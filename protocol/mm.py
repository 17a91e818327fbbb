"""mm/: the kernel paths that change PTEs and then need a TLB flush, and the machinery around
them: mmap_lock, the page-table lock (PTL), the mmu_gather, ``mm->tlb_flush_pending``, the rmap
and RCU table freeing.

The mmu_gather order of include/asm-generic/tlb.h: "1) unhook page 2) TLB invalidate page 3) free
page". A zapping path (madvise, munmap, truncation) runs: take its locks and
``tlb_gather_mmu()`` (``inc_tlb_flush_pending``); then, a step of its own (another CPU's gather
may open, zap and check ``mm_tlb_flush_nested()`` in between), zap_pte_range() under the PTL; a
forced flush before the unlock if a dirty file page was zapped; ``mm_tlb_flush_nested()``; the
flush unless the gather is empty; free the pages, hand page tables to RCU,
``dec_tlb_flush_pending``.

Sources: mainline = ColinIanKing/linux-next (mm/mmu_gather.c @064b3573, mm/memory.c @042acf45,
include/asm-generic/tlb.h @6eebd301, mm/madvise.c, mm/mprotect.c, mm/rmap.c); 5.2 = 5.4-era
trees (OrderLab/orbit-kernel mm/memory.c) and the v5.2-rc mm/mmu_gather.c; the details, and
what could not be verified, are in docs/mm-slice-plan.md.

Atomic steps. A step may do several things at once only where Lipton's reduction allows it:
lock acquires move right, releases move left, and at most one access in the step races with
a step of another CPU that could not be moved before or after it. Each merged step says why in
its docstring. Locks held (mmap_lock, PTL, page lock) are derived from the CPUs' paths and
locals, never stored, so they cannot go stale. A new path that reads two things one of these
steps writes (the PTE and ``tlb_flush_pending`` in one step, say) must re-check the merges.

Left out: two vmas per mm (so munmap and madvise of one mapping never overlap on 5.2), THP and
PMD locks, MADV_FREE, fullmm gathers (exit), mainline's PT_RECLAIM table freeing in madvise,
faults that map a page again after a zap (and the NUMA hinting fault).

The paths' records are at the end of the module (``tlbfuzz.protocol.paths`` says what a record
holds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from tlbfuzz.protocol import hw
from tlbfuzz.protocol.paths import (
    FLUSH_TLB_MM_RANGE,
    MM_VA,
    NO_ARGS,
    VA,
    BudgetKind,
    Inline,
    Path,
    Step,
    StepFn,
    register,
)
from tlbfuzz.protocol.properties import (
    NMI_UACCESS_SAFETY,
    NO_STALE_ENTRY_AT_FREE,
    NO_WALK_OF_FREED_PAGE_TABLE,
)
from tlbfuzz.protocol.state import (
    ANON,
    DEVICE,
    FILE,
    FREE,
    NO_PFN,
    PAGE_SIZE,
    PGTABLE,
    REMOVED,
    REUSED,
    WRPROTECTED,
    Cpu,
    Frame,
    Locals,
    Pte,
    mm_name,
)

if TYPE_CHECKING:
    from tlbfuzz.protocol.world import World


def mmap_lock_writer(w: World, mm_id: int) -> int:
    """The CPU holding ``mm->mmap_lock`` for write, or -1. Derived from the CPUs' paths (their
    ``locals.mmap_lock``), never stored, so it cannot go stale."""
    for cpu, c in enumerate(w.cpus.each()):
        if c.locals.mmap_lock == 2 and _lock_mm(c) == mm_id:
            return cpu
    return -1


def _lock_mm(c: Cpu) -> int:
    """The mm whose locks ``c``'s path holds: its locals' mm, or current->mm for a syscall
    spinning in its first step (its locals get the mm when that step runs)."""
    return c.locals.mm or c.task


def mmap_locked(w: World, mm_id: int) -> bool:
    """Some CPU holds ``mm->mmap_lock`` (for read or write)."""
    return any(c.locals.mmap_lock and _lock_mm(c) == mm_id for c in w.cpus.each())


def ptl_held(w: World, mm_id: int, cpu: int) -> bool:
    """Another CPU than ``cpu`` holds the PTL of mm's one PTE table (``pte_lockptr()``)."""
    return any(
        c.locals.ptl and c.locals.mm == mm_id
        for other, c in enumerate(w.cpus.each())
        if other != cpu
    )


def ptl_free(w: World, cpu: int) -> bool:
    """A step's guard: ``spin_lock(ptl)`` of the mm in ``cpu``'s locals (or, for a syscall's
    first step, current->mm's) can be taken now."""
    return not ptl_held(w, _lock_mm(w.cpus.peek(cpu)), cpu)


def zap_pte_range(w: World, cpu: int) -> None:
    """mm/memory.c: zap_pte_range() over the locals' range (``va`` to ``end``), in one hold of
    the PTL: ``start_pte = pte_offset_map_lock(mm, pmd, addr, &ptl);`` then per PTE ``if
    (pte_none(ptent)) continue; ptent = ptep_get_and_clear_full(...); tlb_remove_tlb_entry(tlb,
    pte, addr);`` (the gather records the range); a dirty file PTE does ``set_page_dirty(page)``
    and forces a flush before the unlock (5.2: ``force_flush = 1``; mainline: ``if
    (tlb_delay_rmap(tlb)) { delay_rmap = true; *force_flush = true; }``); the rmap goes at once
    (5.2 ``page_remove_rmap()``; mainline for anon pages) or after the flush (mainline, dirty
    file pages: ``tlb_flush_rmaps()``); anon pages join the gather's batch. Then
    ``pte_unmap_unlock(start_pte, ptl)``, unless a forced flush must come first
    (``Variant.zap_flush_before_unlock``).

    One step: taking the PTL is a right mover, dropping it a left mover, and between them only
    this CPU touches the PTEs under it; a speculative walk reads the PTE either before or after
    (Lipton's reduction)."""
    c = w.cpus[cpu]
    lv = c.locals
    v = w.variant
    at = w.site(cpu)
    mm = w.mms[lv.mm]
    recorded = False
    force = False
    pfns = list(lv.pfns)
    rmaps = list(lv.rmaps)
    for va in range(lv.va, lv.end, PAGE_SIZE):
        pte = mm.ptes.get(va)
        if pte is None or not (pte.mapped or pte.migration):  # pte_none()
            continue  # (a PROT_NONE entry is pte_present() and zapped too)
        mm.ptes[va] = Pte(False, False, False, False, NO_PFN, pte.seq + 1)
        if pte.migration:
            # a non-present entry: ``pte_clear_not_present_full()``, nothing to flush; the
            # migration holds the page and finds no entry to restore (remove_migration_ptes())
            continue
        recorded = True
        frame = w.frames[pte.pfn]
        if frame.kind == FILE and pte.dirty:
            frame = frame._replace(page_dirty=True)
            force = True
            if v.zap_delays_rmap(at):
                rmaps.append(pte.pfn)
            else:
                frame = frame._replace(mapped=False)
        else:
            frame = frame._replace(mapped=False)
        w.frames[pte.pfn] = frame
        pfns.append(pte.pfn)  # __tlb_remove_page(): the gather holds a reference until the flush
    keep_ptl = force and v.zap_flush_before_unlock(at)
    c.locals = lv._replace(
        cleared=lv.cleared or recorded,
        changed=lv.changed or recorded,
        force_flush=force,
        pfns=tuple(pfns),
        rmaps=tuple(rmaps),
        ptl=keep_ptl,
    )
    if not keep_ptl:
        _tlb_flush_rmaps(w, cpu)


def _batched_pending_first(w: World, cpu: int) -> bool:
    """``pte_offset_map_lock()``, then ``flush_tlb_batched_pending(mm)`` (mm/rmap.c, 5.2 and
    mainline; added to change_pte_range(), zap_pte_range() and move_ptes() by 3ea277194daa,
    "mm, mprotect: flush TLB if potentially racing with a parallel reclaim leaving stale TLB
    entries", v4.12): if reclaim cleared a PTE of this mm and has not flushed yet
    (``mm->tlb_flush_batched``), ``flush_tlb_mm(mm)`` now, under the PTL, before this path
    looks at its PTEs (it may find one already clear, change nothing and return). True: the
    flush comes first, as the steps after this one (``Variant.flush_tlb_batched_pending``)."""
    c = w.cpus[cpu]
    lv = c.locals
    if w.mms[lv.mm].tlb_flush_batched and w.variant.flush_tlb_batched_pending(w.site(cpu)):
        c.locals = lv._replace(ptl=True, batched_flush=True)
        return True
    return False


def _batched_flushed(w: World, cpu: int) -> None:
    """After ``flush_tlb_mm()``: 5.2 ``barrier(); mm->tlb_flush_batched = false;`` (mainline:
    cmpxchg the flushed generation up to the pending one read); the PTL is still held, and
    the PTE changes follow in the same step."""
    c = w.cpus[cpu]
    w.mms[c.locals.mm].tlb_flush_batched = False
    c.locals = c.locals._replace(batched_flush=False, ptl=False)


def no_batched_flush(w: World, cpu: int) -> bool:
    """A skip: flush_tlb_batched_pending() found nothing to flush (the PTE changes ran in the
    step that took the PTL)."""
    return not w.cpus.peek(cpu).locals.batched_flush


def _tlb_flush_rmaps(w: World, cpu: int) -> None:
    """mainline ``tlb_flush_rmaps(tlb, vma)``: the rmaps that waited for the flush go now."""
    lv = w.cpus[cpu].locals
    for pfn in lv.rmaps:
        w.frames[pfn] = w.frames[pfn]._replace(mapped=False)
    w.cpus[cpu].locals = lv._replace(rmaps=())


def zap_pte_range__pte_unmap_unlock(w: World, cpu: int) -> None:
    """After the forced flush: ``tlb_flush_rmaps(tlb, vma); pte_unmap_unlock(start_pte, ptl);
    if (force_flush) tlb_flush_mmu(tlb);`` (the flush is done, so the gathered pages are
    freed now); munmap then goes on to free_pgtables()."""
    _tlb_flush_rmaps(w, cpu)
    c = w.cpus[cpu]
    c.locals = c.locals._replace(ptl=False)
    _after_forced_flush(w, cpu)


def _after_forced_flush(w: World, cpu: int) -> None:
    """``tlb_flush_mmu()`` after a forced flush: its range was reset by
    ``tlb_flush_mmu_tlbonly()`` and the batch is freed."""
    c = w.cpus[cpu]
    lv = c.locals
    if not lv.force_flush or lv.ptl:
        return
    release_pages(w, cpu, lv.pfns, by=f"cpu{cpu} tlb_flush_mmu")
    c.locals = lv._replace(force_flush=False, cleared=False, pfns=())
    if c.path == MUNMAP.name:  # unmap_vmas() is done: free_pgtables()
        free_pgtables(w, cpu)


def release_pages(w: World, cpu: int, pfns: tuple[int, ...], by: str) -> None:
    """``tlb_flush_mmu_free()``: the gather drops its references. An anon page (and 5.2's
    page-table page) is freed; a page-cache page keeps the page cache's reference, unless
    truncation has dropped that already (its free waits for the last gather: ``gather_holds``)."""
    for pfn in pfns:
        if w.frames[pfn].kind != FILE:
            free_page(w, pfn, by=by)


def gather_holds(w: World, pfn: int) -> bool:
    """Some CPU's mmu_gather still holds a reference to the page (zapped, not yet flushed)."""
    return any(pfn in c.locals.pfns and c.path != WRITEBACK.name for c in w.cpus)


def free_pgtables(w: World, cpu: int) -> None:
    """free_pgtables(): ``pmd_clear()`` then ``pte_free_tlb()``: the gather records
    ``freed_tables`` and the range, and the PTE page is batched: into the page batch (5.2 on
    bare metal: ``paravirt_tlb_remove_table()`` is ``tlb_remove_page()``) or the table batch
    freed after an RCU grace period (``tlb_remove_table()``; ``Variant.frees_tables_by_rcu``)."""
    c = w.cpus[cpu]
    lv = c.locals
    mm = w.mms[lv.mm]
    if mm.pgtable_pfn == NO_PFN:
        return
    pt = mm.pgtable_pfn
    mm.pgtable_pfn = NO_PFN
    if w.variant.frees_tables_by_rcu(w.site(cpu)):
        c.locals = lv._replace(freed_tables=True, tables=lv.tables + (pt,))
    else:
        c.locals = lv._replace(freed_tables=True, pfns=lv.pfns + (pt,))


def tlb_gather_mmu(w: World, cpu: int, mm_id: int, va: int, end: int) -> None:
    """``tlb_gather_mmu()``: an empty gather for ``va``..``end`` of ``mm_id``, then
    ``inc_tlb_flush_pending(tlb->mm)`` (an atomic_inc)."""
    c = w.cpus[cpu]
    c.locals = c.locals._replace(mm=mm_id, va=va, end=end, cleared=False, pending=True)
    w.mms[mm_id].tlb_flush_pending += 1


def dec_tlb_flush_pending(w: World, cpu: int) -> None:
    """``dec_tlb_flush_pending(mm)``, once per gather, wherever the variant puts it."""
    c = w.cpus[cpu]
    if c.locals.pending:
        w.mms[c.locals.mm].tlb_flush_pending -= 1
        c.locals = c.locals._replace(pending=False)


def tlb_finish_mmu__mm_tlb_flush_nested(w: World, cpu: int) -> None:
    """tlb_finish_mmu(): ``if (mm_tlb_flush_nested(tlb->mm)) { tlb->fullmm = 1;
    __tlb_reset_range(tlb); tlb->freed_tables = 1; }`` -- another thread batches changes to
    this mm under a shared lock and may have cleared PTEs this one found clear, so flush
    everything (99baac21e458; 5.2-rc's range form: ``nested_flush_is_full``)."""
    _after_forced_flush(w, cpu)
    c = w.cpus[cpu]
    lv = c.locals
    v = w.variant
    at = w.site(cpu)
    if not lv.pending:
        return  # no gather was opened (truncation found no vma)
    if w.mms[lv.mm].tlb_flush_pending > 1 and v.tlb_finish_mmu_forces_flush_when_nested(at):
        if v.nested_flush_is_full(at):
            c.locals = lv._replace(fullmm=True, freed_tables=True, cleared=True)
        else:  # 5.2-rc's __tlb_reset_range() also forgot freed_tables (7a30df49 fixed that)
            c.locals = lv._replace(cleared=True, freed_tables=False, fullmm=False)
    if not v.dec_tlb_flush_pending_after_flush(at):
        dec_tlb_flush_pending(w, cpu)


def gather_is_empty(w: World, cpu: int) -> bool:
    """``tlb_flush_mmu_tlbonly()``'s early return: 5.2 ``if (!tlb->end) return;``, mainline
    ``if (!(tlb->freed_tables || tlb->cleared_ptes || ...)) return;`` -- the same for every
    gather modelled here: nothing was recorded and nothing forced."""
    lv = w.cpus.peek(cpu).locals
    return not (lv.cleared or lv.freed_tables or lv.fullmm)


def no_forced_flush(w: World, cpu: int) -> bool:
    """The forced flush of zap_pte_range() is skipped: nothing dirty forced it."""
    return not w.cpus.peek(cpu).locals.force_flush


def tlb_finish_mmu(w: World, cpu: int) -> None:
    """tlb_finish_mmu() after the flush: ``tlb_flush_mmu_free()`` frees the gathered pages
    (and 5.2's page-table page) and hands the table batch to RCU (``tlb_table_flush()`` ->
    ``call_rcu()``), then ``dec_tlb_flush_pending(tlb->mm)``; the syscall then drops mmap_lock.

    One step: the free writes frames and the dec writes the counter; no other step reads
    both, so each other step moves before or after them."""
    c = w.cpus[cpu]
    lv = c.locals
    release_pages(w, cpu, lv.pfns, by=f"cpu{cpu} tlb_finish_mmu")
    call_rcu_free_tables(w, lv.tables)
    c.locals = c.locals._replace(pfns=(), tables=())
    dec_tlb_flush_pending(w, cpu)
    c.locals = c.locals._replace(mmap_lock=0)


def call_rcu_free_tables(w: World, tables: tuple[int, ...]) -> None:
    """``call_rcu()`` for page-table pages (``tlb_remove_table()``'s batch, ``pte_free_defer()``):
    each is freed once every CPU that has IRQs disabled now has enabled them."""
    if not tables:
        return
    irqs_off = 0
    for other, o in enumerate(w.cpus):
        if not o.irqs_on:
            irqs_off |= 1 << other
    w.rcu += tuple((pt, irqs_off) for pt in tables)


def tlb_remove_table_rcu(w: World, pfn: int) -> None:
    """The RCU callback of ``tlb_remove_table()``: a grace period has passed since the table
    was batched (every CPU that had IRQs disabled then has enabled them since), so no
    software walker with IRQs off (GUP-fast) can still hold a pointer into it."""
    w.rcu = tuple(cb for cb in w.rcu if cb[0] != pfn)
    free_page(w, pfn, by="RCU callback tlb_remove_table_rcu()")


def rcu_quiescent(w: World) -> None:
    """A CPU seen with IRQs enabled has left every IRQs-off section it was in: clear it from
    the grace periods that wait for it (RCU-sched; x86's GUP-fast relies on it)."""
    on = 0
    for cpu, c in enumerate(w.cpus):
        if c.irqs_on and c.irq is None:
            on |= 1 << cpu
    if on and any(mask & on for _, mask in w.rcu):
        w.rcu = tuple((pfn, mask & ~on) for pfn, mask in w.rcu)


def retire(w: World, cpu: int, kind: int) -> None:
    """Ghost: the syscall returns; its promise covers every PTE of its range as it is now."""
    lv = w.cpus[cpu].locals
    mm = w.mms[lv.mm]
    for va in range(lv.va, lv.end, PAGE_SIZE):
        pte = mm.ptes.get(va)
        if pte is not None:
            mm.retired[va] = (pte.seq, kind)


# --- munmap, madvise, mprotect ---------------------------------------------------------------


def munmap(w: World, cpu: int) -> None:
    """munmap() of the whole mapping of current->mm (mm/mmap.c, 5.2: __do_munmap(); mainline:
    do_vmi_align_munmap()): ``mmap_write_lock``; detach the vma; ``downgrade_write`` (4.20's
    dd2283f2605e: zap with mmap_lock held for read); unmap_region(): ``tlb_gather_mmu()``
    (``inc_tlb_flush_pending``). The zap is the next step (``unmap_vmas``).

    One step: the write lock is taken and downgraded before anything is shared; the vma
    detach is read only by start guards (under mmap_lock in the kernel), and the
    ``tlb_flush_pending`` increment is the one racing access."""
    c = w.cpus[cpu]
    mm_id = c.task
    mm = w.mms[mm_id]
    vas = w.kernel.vas
    for va in vas:
        mm.vma_writable.pop(va, None)
    mm.write_protected = frozenset()
    c.locals = c.locals._replace(mmap_lock=1)  # downgrade_write()
    tlb_gather_mmu(w, cpu, mm_id, vas[0], vas[-1] + PAGE_SIZE)


def unmap_vmas(w: World, cpu: int) -> None:
    """unmap_region() -> unmap_vmas() -> zap_pte_range() over every page; then
    free_pgtables() (after a forced flush, in the unlock step). One step: the zap is a PTL
    section (see zap_pte_range), and ``pmd_clear()`` of the one page table is read only by
    the walks that the PTL section's reduction already orders."""
    zap_pte_range(w, cpu)
    if not w.cpus[cpu].locals.force_flush:
        free_pgtables(w, cpu)


def munmap_done(w: World, cpu: int) -> None:
    """munmap() returns: no translation of the mapping may be used any more."""
    retire(w, cpu, REMOVED)


def madvise_dontneed(w: World, cpu: int) -> None:
    """madvise(MADV_DONTNEED) of one page (mm/madvise.c): ``mmap_read_lock`` (mainline: the
    per-VMA read lock, exclusive with mprotect's ``vma_start_write`` as here), then
    ``tlb_gather_mmu()`` (5.2: inside zap_page_range(); mainline: madvise_init_tlb()), which
    is ``inc_tlb_flush_pending``. zap_pte_range() is the next step: another thread's gather
    may open, zap and check ``mm_tlb_flush_nested()`` in between (99baac21e458's case)."""
    c = w.cpus[cpu]
    mm_id, va = c.task, c.locals.va
    tlb_gather_mmu(w, cpu, mm_id, va, va + PAGE_SIZE)


def madvise_done(w: World, cpu: int) -> None:
    """madvise() returns: no translation of the page it zapped may be used any more (the
    promise covers a PTE another thread cleared, too: Mel Gorman's case in 99baac21e458)."""
    retire(w, cpu, REMOVED)


def mprotect(w: World, cpu: int) -> None:
    """mprotect(PROT_READ) of one page (mm/mprotect.c): ``mmap_write_lock``, the vma loses
    VM_WRITE, then change_protection(): mainline gathers (``tlb_gather_mmu()`` in
    do_mprotect_pkey(), so ``inc_tlb_flush_pending``); 5.2 ``inc_tlb_flush_pending(mm)`` in
    change_protection_range(). The PTE change is the next step (``change_pte_range``)."""
    c = w.cpus[cpu]
    mm_id, va = c.task, c.locals.va
    w.mms[mm_id].vma_writable[va] = False
    tlb_gather_mmu(w, cpu, mm_id, va, va + PAGE_SIZE)
    at = w.site(cpu)
    if not w.variant.mprotect_uses_gather(at):  # 5.2: flush_tlb_range() at the end
        c.locals = c.locals._replace(freed_tables=w.variant.flush_tlb_range_frees_tables(at))


def change_pte_range(w: World, cpu: int) -> None:
    """change_pte_range() under the PTL: ``ptent = ptep_modify_prot_start(); ptent =
    pte_modify(ptent, newprot); ptep_modify_prot_commit()``; what it records
    (``Variant.mprotect_records_pte``) decides the flush. One step: a PTL section."""
    c = w.cpus[cpu]
    va = c.locals.va
    mm = w.mms[c.locals.mm]
    pte = mm.ptes.get(va)
    if pte is None:
        return  # a vma with no PTE yet (mremap moved a vma whose page was gone): pte_none()
    if c.locals.prot_numa:
        # ``if (prot_numa) { ... if (pte_protnone(oldpte)) continue; ...}``, then the new
        # entry is PROT_NONE, and pte_needs_flush(present -> not present) records it
        if pte.present:
            mm.ptes[va] = pte._replace(present=False, protnone=True, seq=pte.seq + 1)
            c.locals = c.locals._replace(cleared=True)
        return
    uffd = c.locals.uffd_wp or pte.uffd_wp  # uffd-wp sets it, and pte_modify() keeps it
    if pte.migration:
        # ``if (is_writable_migration_entry(entry)) { entry = make_readable_migration_entry(
        # swp_offset(entry)); ... set_pte_at(...) }``: no flush, the entry is not present;
        # uffd-wp marks it (``pte_swp_mkuffd_wp()``)
        if pte.writable or uffd != pte.uffd_wp:
            mm.ptes[va] = pte._replace(writable=False, uffd_wp=uffd, seq=pte.seq + 1)
        return
    if pte.mapped:  # pte_modify() with the vma's new protection: present, read-only
        mm.ptes[va] = pte._replace(
            present=True, protnone=False, writable=False, uffd_wp=uffd, seq=pte.seq + 1
        )
        if w.variant.mprotect_records_pte(w.site(cpu), pte):
            c.locals = c.locals._replace(cleared=True)


def mprotect_done(w: World, cpu: int) -> None:
    """mprotect() returns: mainline's tlb_finish_mmu() has flushed and run
    ``dec_tlb_flush_pending()`` (5.2: ``dec_tlb_flush_pending(mm)`` after ``if (pages)
    flush_tlb_range()``); ``mmap_write_unlock``. From now on no write may go through a writable
    translation."""
    c = w.cpus[cpu]
    lv = c.locals
    mm = w.mms[lv.mm]
    dec_tlb_flush_pending(w, cpu)
    if not mm.vma_writable.get(lv.va, True):
        mm.write_protected = mm.write_protected | {lv.va}
    retire(w, cpu, WRPROTECTED)


def mprotect_uses_gather(w: World, cpu: int) -> bool:
    """A skip: 5.2's change_protection_range() has no mmu_gather, so no nested check."""
    return not w.variant.mprotect_uses_gather(w.site(cpu))


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
                lazy = " (lazy)" if c.own_is_lazy() else ""
                w.report(
                    NO_WALK_OF_FREED_PAGE_TABLE,
                    f"{by} frees page-table page pfn {pfn} of mm {mm_name(frame.mm)} while "
                    f"cpu{cpu}{lazy} has CR3 = mm {mm_name(frame.mm)} and its paging-structure "
                    f"cache still points at pfn {pfn}: a speculative walk reads the freed page",
                )
            # ... and no software walker (GUP-fast, tlbfuzz.protocol.gup) is between its PMD read
            # and its PTE read of this table: it would read the PTE out of a freed page.
            lv = c.locals
            if lv.table == pfn and lv.table_version == frame.version:
                w.report(
                    NO_WALK_OF_FREED_PAGE_TABLE,
                    f"{by} frees page-table page pfn {pfn} of mm {mm_name(frame.mm)} while "
                    f"cpu{cpu}'s GUP-fast (IRQs {'off' if not c.irqs_on else 'on'}) has read "
                    f"the PMD pointing at it and not yet the PTE of {lv.va:#x}",
                )
        elif c.own_loaded_mm() == frame.mm and not c.own_is_lazy():
            # at any address: after mremap a CPU may cache the page's old one
            cached = min(
                (
                    va
                    for (asid, va), e in c.tlb.items()
                    if asid == c.cr3_asid and e.pfn == pfn and e.frame_version == frame.version
                ),
                default=None,
            )
            if cached is not None:
                afip = c.async_func_in_progress
                state = f"{c.mode}, loaded_mm={mm_name(c.loaded_mm)}"
                if afip:
                    state += f", async_func_in_progress={afip}"
                w.report(
                    NO_STALE_ENTRY_AT_FREE,
                    f"{by} frees pfn {pfn} ({frame.describe()}) while cpu{cpu} ({state}) "
                    f"still caches {cached:#x} -> pfn {pfn}: speculation can use it",
                )
    w.frames[pfn] = Frame(FREE, 0, 0, frame.version + 1)


def ptl_not_held(w: World, cpu: int) -> bool:
    """A skip: the step before dropped the PTL (or never took it), so the flush that a
    ``ptep_clear_flush()`` makes under it, and the steps up to its unlock, do not run."""
    return not w.cpus.peek(cpu).locals.ptl


def alloc_user_page(w: World, mm_id: int, va: int) -> int:
    """``alloc_page_vma()`` for a new anonymous page of (mm, va) (a COW copy, a migration
    target): the lowest free frame, or NO_PFN if none is free (-ENOMEM)."""
    for pfn, f in enumerate(w.frames):
        if f.kind == FREE:
            w.frames[pfn] = Frame(ANON, mm_id, va, f.version + 1)
            return pfn
    return NO_PFN


def alloc_page(w: World, pfn: int, to: int) -> None:
    """The page allocator hands a free frame to another mm (``to`` = its id), or to a device
    (``to`` = 0, memory hotplug: Jann Horn's #MC concern). Its version changes again."""
    frame = w.frames[pfn]
    assert frame.kind == FREE
    w.frames[pfn] = Frame(REUSED if to else DEVICE, to, 0, frame.version + 1)


# --- writeback: clear_page_dirty_for_io() -> page_mkclean() -> writepage -------------------


def file_page(w: World, mm_id: int, va: int) -> int:
    """The page-cache page that (mm, va) maps (mapped or not), or NO_PFN once truncated (a
    start guard asks this of every (mm, va) whenever the enabled actions are computed: one
    lookup, not a scan of the frames)."""
    if va > w.config.pages * PAGE_SIZE:
        return NO_PFN  # the spare address (Kernel.vas): no file page has that offset
    pfn = w.config.pfn_of(mm_id, va)
    f = w.frames[pfn]
    return pfn if f.kind == FILE and f.mm == mm_id and f.va == va else NO_PFN


def page_locked(w: World, pfn: int) -> bool:
    """PG_locked: writeback holds the page lock from before clear_page_dirty_for_io() until
    writepage has run (``lock_page(); clear_page_dirty_for_io(); ->writepage(); unlock``),
    reclaim from ``trylock_page()`` to the free (paths with ``locks_page``: the page is in
    their ``Locals.page``). Derived from the CPUs' paths rather than stored, so it cannot go
    stale."""
    return pfn != NO_PFN and any(c.path and c.locals.page == pfn for c in w.cpus.each())


def _mkclean_walks(w: World, cpu: int) -> bool:
    """page_mkclean(): ``if (!page_mapped(page)) return 0;`` -- otherwise the rmap walk takes
    the PTL (``Variant.page_mkclean_checks_mapped``)."""
    lv = w.cpus[cpu].locals
    pfn = file_page(w, lv.mm, lv.va)
    return not w.variant.page_mkclean_checks_mapped(w.site(cpu)) or w.frames[pfn].mapped


def _writeback_guard(w: World, cpu: int) -> bool:
    """The rmap walk spins on the PTL (``map_pte()`` with PVMW_SYNC); an unmapped page takes
    no lock."""
    return not _mkclean_walks(w, cpu) or ptl_free(w, cpu)


def clear_page_dirty_for_io(w: World, cpu: int) -> None:
    """``lock_page()``, then clear_page_dirty_for_io() -> page_mkclean(): if the page is mapped,
    page_mkclean_one() under the PTL: ``if (!pte_dirty(*pte) && !pte_write(*pte)) continue;
    entry = ptep_clear_flush(vma, address, pte);`` -- this step is the
    ``ptep_get_and_clear()``; the flush follows, still under the PTL. page_mkclean() returning
    1 makes the caller ``set_page_dirty()``: done here, with the same outcome.

    One step: the page_mapped() read and the PTL section race only with a zap, which clears
    the PTE and the rmap together; either order ends as it does in the kernel."""
    c = w.cpus[cpu]
    lv = c.locals
    pfn = file_page(w, lv.mm, lv.va)
    c.locals = lv = lv._replace(pfns=(pfn,), end=lv.va + PAGE_SIZE, cleared=False)
    if not _mkclean_walks(w, cpu):
        return
    mm = w.mms[lv.mm]
    pte = mm.ptes.get(lv.va)
    if pte is None or not pte.mapped or pte.pfn != pfn or not (pte.dirty or pte.writable):
        return
    w.frames[pfn] = w.frames[pfn]._replace(page_dirty=True)
    mm.ptes[lv.va] = Pte(False, False, False, False, NO_PFN, pte.seq + 1)
    c.locals = lv._replace(cleared=True, ptl=True)


def nothing_cleaned(w: World, cpu: int) -> bool:
    """A skip: page_mkclean_one() found nothing to clean, so no flush and no set_pte_at()."""
    return not w.cpus[cpu].locals.cleared


def page_mkclean_one__set_pte_at(w: World, cpu: int) -> None:
    """``entry = pte_wrprotect(entry); entry = pte_mkclean(entry); set_pte_at(...)``, then
    ``page_vma_mapped_walk_done()`` drops the PTL."""
    c = w.cpus[cpu]
    lv = c.locals
    mm = w.mms[lv.mm]
    pte = mm.ptes[lv.va]
    mm.ptes[lv.va] = Pte(True, False, True, False, lv.pfns[0], pte.seq + 1)
    c.locals = lv._replace(ptl=False)


def pte_accessible(w: World, cpu: int, mm_id: int, pte: Pte) -> bool:
    """x86 ``pte_accessible(mm, pte)``: a present entry, or a PROT_NONE one whose change's
    flush may not have happened yet (``Variant.pte_accessible_checks_flush_pending``)."""
    if pte.present:
        return True
    return (
        pte.protnone
        and w.mms[mm_id].tlb_flush_pending > 0
        and w.variant.pte_accessible_checks_flush_pending(w.site(cpu))
    )


def writepage(w: World, cpu: int) -> None:
    """``TestClearPageDirty(page)``, then ->writepage() saves the page's contents to disk."""
    lv = w.cpus[cpu].locals
    pfn = lv.pfns[0]
    w.frames[pfn] = w.frames[pfn]._replace(page_dirty=False, modified=False)


# --- truncation: truncate_pagecache() -------------------------------------------------------


def unmap_mapping_range(w: World, cpu: int) -> None:
    """truncate_pagecache() -> unmap_mapping_range(): under ``i_mmap_lock_read(mapping)``, for
    each vma mapping the page (the rmap of the file, not of the page: it runs whether or not
    the page is mapped) zap_page_range_single(): ``tlb_gather_mmu()`` here, zap_pte_range()
    in the next step, then ``tlb_finish_mmu()``. No mmap_lock: truncation races with every
    syscall of the mm."""
    c = w.cpus[cpu]
    lv = c.locals
    if not in_i_mmap(w, lv.mm):
        return  # munmap's unlink_file_vma() took the vma out of i_mmap: nothing to zap
    tlb_gather_mmu(w, cpu, lv.mm, lv.va, lv.va + PAGE_SIZE)


def in_i_mmap(w: World, mm_id: int) -> bool:
    """The file's ``mapping->i_mmap`` still holds the mm's vma: munmap takes it out of the mm
    first (detach, under mmap_lock) but out of i_mmap only in free_pgtables()
    (``unlink_file_vma()``), after its zap; the model's one page table is freed there too, so
    the vma is in i_mmap exactly while the page table is."""
    return w.mms[mm_id].pgtable_pfn != NO_PFN


def no_gather(w: World, cpu: int) -> bool:
    """A skip: truncation found no vma, so it opened no gather and zaps nothing."""
    return not w.cpus.peek(cpu).locals.pending


def truncate_inode_pages(w: World, cpu: int) -> None:
    """truncate_inode_pages(): ``lock_page()``, ``delete_from_page_cache()``, unlock: the page
    cache drops its reference and the page is freed."""
    lv = w.cpus[cpu].locals
    pfn = file_page(w, lv.mm, lv.va)
    if pfn != NO_PFN:
        free_page(w, pfn, by=f"cpu{cpu} truncate_inode_pages")


def _truncate_guard(w: World, cpu: int) -> bool:
    """``lock_page()`` sleeps while writeback holds the page lock; and the free waits for the
    last reference: a gather that zapped the page holds one until its flush (the kernel frees
    the page at that gather's ``tlb_flush_mmu_free()``; here truncation frees it then)."""
    lv = w.cpus[cpu].locals
    pfn = file_page(w, lv.mm, lv.va)
    return pfn == NO_PFN or not (page_locked(w, pfn) or gather_holds(w, pfn))


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
    arrive at any time, also inside an IRQ handler or with IRQs off. The handler's IRET is
    serialising (SDM 3A, "Serializing Instructions"): the store buffer drains (x86-TSO)."""
    _copy_from_user_nmi(w, cpu, va)
    hw.fence(w, cpu)


def _copy_from_user_nmi(w: World, cpu: int, va: int) -> None:
    c = w.cpus.peek(cpu)
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
    """current->mm maps ``va`` (its PTE is present)."""
    pte = w.mms.peek(w.cpus.peek(cpu).task).ptes.get(lv.va)
    return pte is not None and pte.present


def _madvise_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """A vma maps ``va`` (present PTE or not: a PTE already clear finds nothing to change), and
    ``mmap_read_lock()`` would not sleep (no writer)."""
    mm_id = w.cpus.peek(cpu).task
    return lv.va in w.mms.peek(mm_id).vma_writable and mmap_lock_writer(w, mm_id) < 0


def _munmap_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """The mapping still exists, and ``mmap_write_lock()`` would not sleep."""
    mm_id = w.cpus.peek(cpu).task
    return bool(w.mms.peek(mm_id).vma_writable) and not mmap_locked(w, mm_id)


def _mprotect_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """A vma maps ``va`` (writable or already read-only, PTE present or not), and
    ``mmap_write_lock()`` would not sleep."""
    mm_id = w.cpus.peek(cpu).task
    return lv.va in w.mms.peek(mm_id).vma_writable and not mmap_locked(w, mm_id)


def _uaccess_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """The address is mapped, or this CPU still caches a translation for it."""
    c = w.cpus.peek(cpu)
    return present_pte(w, cpu, lv) or (c.cr3_asid, lv.va) in c.tlb


def _writeback_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """A dirty page-cache page (mapped or not: writeback finds it by the page cache, and the
    rmap walk finds its mappings) whose lock is free (lock_page() would sleep)."""
    pfn = file_page(w, lv.mm, lv.va)
    return pfn != NO_PFN and w.frames[pfn].page_dirty and not page_locked(w, pfn)


def page_cache_page(w: World, cpu: int, lv: Locals) -> int:
    """``lock_page()`` of the page-cache page at the locals' (mm, offset) (writeback,
    khugepaged: ``Path.locks_page``)."""
    return file_page(w, lv.mm, lv.va)


def _truncate_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """The file still has this page in its page cache."""
    return file_page(w, lv.mm, lv.va) != NO_PFN


BATCHED_FLUSH = Inline("flush_tlb_mm_range", FLUSH_TLB_MM_RANGE.expand, skip=no_batched_flush)
"""flush_tlb_batched_pending()'s ``flush_tlb_mm(mm)``, under the PTL (only after a batch)."""


@attrs.frozen
class LockThenChange:
    """The step that takes the PTL: flush a batch reclaim left first
    (``_batched_pending_first``: the steps after), or run ``change`` now. Compared by value,
    so that two paths' sections of one function are the same step."""

    change: StepFn

    def __call__(self, w: World, cpu: int) -> None:
        if not _batched_pending_first(w, cpu):
            self.change(w, cpu)


@attrs.frozen
class ChangeAfterBatchedFlush:
    """The PTE changes, after flush_tlb_batched_pending()'s flush, still under the PTL."""

    change: StepFn

    def __call__(self, w: World, cpu: int) -> None:
        _batched_flushed(w, cpu)
        self.change(w, cpu)


def ptl_section(name: str, change: StepFn) -> tuple[Step | Inline, ...]:
    """A PTE-changing PTL section of the kernel function ``name`` (``change`` makes its PTE
    changes): take the PTL and change the PTEs in one step, unless
    flush_tlb_batched_pending() must flush first (then the flush, then the changes)."""
    return (
        Step(name, LockThenChange(change), guard=ptl_free, c=f"{name}()"),
        BATCHED_FLUSH,
        Step(
            f"{name}__ptes", ChangeAfterBatchedFlush(change), skip=no_batched_flush, c=f"{name}()"
        ),
    )


ZAP_PTE_RANGE = ptl_section("zap_pte_range", zap_pte_range)
"""zap_pte_range() under the PTL, after ``tlb_gather_mmu()``."""
FORCED_FLUSH = Inline("flush_tlb_mm_range", FLUSH_TLB_MM_RANGE.expand, skip=no_forced_flush)
"""zap_pte_range()'s ``if (force_flush) tlb_flush_mmu_tlbonly(tlb);`` (inside the PTL unless
``Variant.zap_flush_before_unlock`` moves it)."""
PTE_UNMAP_UNLOCK = Step(
    "zap_pte_range__pte_unmap_unlock",
    zap_pte_range__pte_unmap_unlock,
    skip=lambda w, cpu: not w.cpus.peek(cpu).locals.ptl,
    c="pte_unmap_unlock()",
)
NESTED = Step(
    "tlb_finish_mmu__mm_tlb_flush_nested",
    tlb_finish_mmu__mm_tlb_flush_nested,
    c="mm_tlb_flush_nested()",
)
FINISH_FLUSH = Inline("flush_tlb_mm_range", FLUSH_TLB_MM_RANGE.expand, skip=gather_is_empty)
"""tlb_finish_mmu() -> tlb_flush_mmu() -> tlb_flush_mmu_tlbonly() -> x86 tlb_flush() ->
flush_tlb_mm_range(), unless the gather is empty."""
TLB_FINISH_MMU = Step("tlb_finish_mmu", tlb_finish_mmu)
ZAP_THEN_FINISH = (FORCED_FLUSH, PTE_UNMAP_UNLOCK, NESTED, FINISH_FLUSH, TLB_FINISH_MMU)
"""The mmu_gather's end, as every zapping path has it: the forced flush and unlock of
zap_pte_range(), then tlb_finish_mmu() (nested check, flush, free, dec)."""

MUNMAP = register(
    Path(
        "munmap",
        BudgetKind("munmap"),
        NO_ARGS,
        _munmap_may_start,
        (
            Step("munmap", munmap, c="tlb_gather_mmu()"),
            *ptl_section("unmap_vmas", unmap_vmas),
            *ZAP_THEN_FINISH,
        ),
        returns=munmap_done,
        holds=(("mmap_lock", 2),),
        from_user=True,
        summary="munmap() of current->mm's whole mapping; page tables freed (freed_tables)",
    )
)
MADVISE = register(
    Path(
        "madvise",
        BudgetKind("madvise"),
        VA,
        _madvise_may_start,
        (
            Step("madvise_dontneed", madvise_dontneed, c="tlb_gather_mmu()"),
            *ZAP_PTE_RANGE,
            *ZAP_THEN_FINISH,
        ),
        returns=madvise_done,
        holds=(("mmap_lock", 1),),
        from_user=True,
        summary="madvise(MADV_DONTNEED) of one page (present or already zapped)",
    )
)
MPROTECT = register(
    Path(
        "mprotect",
        BudgetKind("mprotect"),
        VA,
        _mprotect_may_start,
        (
            Step("mprotect", mprotect, c="inc_tlb_flush_pending()"),
            *ptl_section("change_pte_range", change_pte_range),
            attrs.evolve(NESTED, skip=mprotect_uses_gather),
            FINISH_FLUSH,
        ),
        returns=mprotect_done,
        holds=(("mmap_lock", 2),),
        from_user=True,
        summary="mprotect(PROT_READ) of one page (writable, read-only or not present)",
    )
)
WRITEBACK = register(
    Path(
        "writeback",
        BudgetKind("writeback"),
        MM_VA,
        _writeback_may_start,
        (
            Step(
                "clear_page_dirty_for_io",
                clear_page_dirty_for_io,
                guard=_writeback_guard,
                c="ptep_clear_flush()",
            ),
            Inline("flush_tlb_mm_range", FLUSH_TLB_MM_RANGE.expand, skip=nothing_cleaned),
            Step(
                "page_mkclean_one__set_pte_at",
                page_mkclean_one__set_pte_at,
                skip=nothing_cleaned,
                c="set_pte_at()",
            ),
            Step("writepage", writepage, c="->writepage()"),
        ),
        locks_page=page_cache_page,
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
TRUNCATE = register(
    Path(
        "truncate",
        BudgetKind("truncate", default=0),
        MM_VA,
        _truncate_may_start,
        (
            Step("unmap_mapping_range", unmap_mapping_range, c="tlb_gather_mmu()"),
            attrs.evolve(ZAP_PTE_RANGE[0], skip=no_gather),
            *ZAP_PTE_RANGE[1:],
            *ZAP_THEN_FINISH,
            Step(
                "truncate_inode_pages",
                truncate_inode_pages,
                guard=_truncate_guard,
                c="delete_from_page_cache()",
            ),
        ),
        summary="truncate_pagecache() of one file page: unmap every mapping, then free it",
    )
)
