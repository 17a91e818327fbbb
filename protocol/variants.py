"""Protocol variants: the kernels and patches the model can run, as named switches.

A variant is a frozen record of switches plus the methods that make each kernel decision. The
model calls a method at the spot where the kernel makes that decision (``should_flush_tlb()``
in ``native_flush_tlb_multi()``, ``nmi_uaccess_okay()`` in ``copy_from_user_nmi()``...), and
every method's docstring quotes the kernel condition it stands for. Methods asked from inside
a kernel path get the ``Site`` (path and step) that asks; the others can ask ``w.site(cpu)``.

A user models a patch of their own without editing ``protocol/``: change switches with
``attrs.evolve``; or subclass and override the one method the patch changes
(``examples/my_variant.py``); or add a kernel path of their own, or reorder one path's steps
(``extra_paths``, ``path_steps``: ``examples/new_path.py``). The switches stay the simple way
in: each method's default reads the switch that names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

from tlbfuzz.protocol.paths import PATHS, Path, Site, Step, expand
from tlbfuzz.protocol.smp import CSD_LOCK_WAIT, NATIVE_FLUSH_TLB_MULTI, NATIVE_FLUSH_TLB_OTHERS
from tlbfuzz.protocol.state import FLUSH_TLB_FUNC, LOADED_MM_SWITCHING, TLB_FLUSH_ALL
from tlbfuzz.protocol.tlb import (
    CHOOSE_NEW_ASID,
    CPUMASK_SET_CPU,
    FINISH_TASK_SWITCH,
    FLUSH_TLB_FUNC_LOCAL,
    INC_MM_TLB_GEN,
    LOAD_NEW_MM_CR3,
    LOADED_MM_SWITCHING_STEP,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tlbfuzz.protocol.state import FlushTlbInfo, IrqItem, Locals, Pte
    from tlbfuzz.protocol.world import World

# The steps of flush_tlb_mm_range() in the two orders the kernel has had.
FLUSH_STEPS_LOCAL_FIRST: Final = (
    INC_MM_TLB_GEN,
    FLUSH_TLB_FUNC_LOCAL,
    NATIVE_FLUSH_TLB_OTHERS,
    CSD_LOCK_WAIT,
)
"""5.2: ``inc_mm_tlb_gen()``, local flush with IRQs off, then ``flush_tlb_others()``."""

FLUSH_STEPS_CONCURRENT: Final = (
    INC_MM_TLB_GEN,
    NATIVE_FLUSH_TLB_MULTI,
    FLUSH_TLB_FUNC_LOCAL,
    CSD_LOCK_WAIT,
)
"""Since 2021 (4ce94eabac16): queue csds and send IPIs, flush locally while remotes run, wait."""

SWITCH_STEPS_5_2: Final = (CPUMASK_SET_CPU, CHOOSE_NEW_ASID, LOAD_NEW_MM_CR3, FINISH_TASK_SWITCH)
"""4.19-5.x order: clear prev's cpumask bit, set next's, read tlb_gen, LOADED_MM_SWITCHING, CR3."""

SWITCH_STEPS_CURRENT: Final = (
    LOADED_MM_SWITCHING_STEP,
    CPUMASK_SET_CPU,
    CHOOSE_NEW_ASID,
    LOAD_NEW_MM_CR3,
    FINISH_TASK_SWITCH,
)
"""Today: LOADED_MM_SWITCHING first, set next's cpumask bit (prev's is trimmed lazily), read
tlb_gen, CR3."""


@attrs.frozen
class Variant:
    """A TLB-shootdown protocol. Each switch names the kernel decision point it changes."""

    name: str
    summary: str
    kernel_ref: str
    """Which kernel version or patch this models."""

    concurrent_flush: bool = False
    """flush_tlb_mm_range(): send IPIs before the local flush (``native_flush_tlb_multi``, 2021)."""
    async_flush: bool = False
    """RFC v2 11/12: user-mapping flushes queue ASYNC csds (``wait = 0``)."""
    async_freed_tables: bool = False
    """...also when page tables are freed (the RFC kept those synchronous)."""
    wait_for_csd_unlock: bool = True
    """An async flush still waits until each target has unlocked its csd (the RFC as its author
    described it); ``False`` is the RFC as posted: return right after sending the IPIs."""
    inline_info: bool = False
    """RFC v2 10/12: the csd carries a copy of flush_tlb_info; otherwise a pointer to the
    initiator's per-CPU flush_tlb_info (5.2 and today)."""
    nmi_checks_async_flush: bool = False
    """RFC v2 11/12: nmi_uaccess_okay() is false while flush_tlb_func runs asynchronously."""
    batch_ack: bool = False
    """The receiver unlocks every ASYNC csd of its batch before running any of them."""
    sync_csds_first: bool = False
    """__flush_smp_call_function_queue() runs SYNC csds before ASYNC ones (2020, 52103be07d8b)."""
    ipi_lazy_if_freed_tables: bool = True
    """native_flush_tlb_others(): freed_tables IPIs lazy CPUs too (Rik van Riel, 2018)."""
    should_flush_loaded_mm_only: bool = False
    """Today's should_flush_tlb(): skip CPUs whose loaded_mm is another mm (lazy mm_cpumask)."""
    clear_cpumask_on_switch: bool = True
    """5.2's switch_mm_irqs_off(): the 5.2 step order, and prev's mm_cpumask bit cleared at
    the switch (and by switch_to_init_mm()); today the order differs and flush_tlb_func()
    trims the bit. Five decisions read it: ``switch_steps``, ``switch_clears_prev_cpumask``,
    ``switch_to_init_mm_clears_cpumask``, ``switch_sets_cpumask_only_if_clear`` and
    ``flush_tlb_func_trims_cpumask`` (``tlbfuzz.fuzz.changes`` reads which from the source)."""
    skip_caught_up_flush: bool = False
    """Today's flush_tlb_func(): ``if (f->new_tlb_gen <= local_tlb_gen) return;``."""
    partial_flush_needs_next_gen: bool = True
    """flush_tlb_func(): a partial flush only if ``new_tlb_gen == local_tlb_gen + 1``."""
    delay_rmap: bool = False
    """mainline zap_pte_range(): a dirty file page keeps its rmap until the forced flush is
    done (``tlb_flush_rmaps()``; 5df397dec7c4, v6.2); 5.2 ``page_remove_rmap()`` at once."""
    mprotect_gather: bool = False
    """mainline mprotect: an mmu_gather that records only what needs a flush
    (``pte_needs_flush()``; v6.0); 5.2: ``inc_tlb_flush_pending``, ``if (pages) flush``."""
    rcu_table_free: bool = False
    """x86 frees page tables through ``tlb_remove_table()`` and RCU (a37259732a7d,
    v6.15; before, only paravirt guests did); 5.2 on bare metal uses the page batch."""
    uffd_wp: bool = False
    """The kernel has userfaultfd write-protect (``UFFDIO_WRITEPROTECT``, v5.7)."""
    flush_range_frees_tables: bool = False
    """x86 ``flush_tlb_range()`` passes ``freed_tables = true`` (3ef938c35035, 2025)."""
    pte_free_defer: bool = False
    """khugepaged's retract_page_tables() takes no mmap_lock and frees the table with
    ``pte_free_defer()`` (RCU; Hugh Dickins' 2023 rework); 5.2 trylocks mmap_sem and
    ``pte_free()``s it at once."""
    batch_checks_accessible: bool = False
    """mainline set_tlb_ubc_flush_pending(): ``if (!pte_accessible(mm, pteval)) return;``
    (4d4b6d66db63, v5.19); 5.2 batches every deferred flush."""
    migrate_batch_flush: bool = False
    """mainline migrate_pages_batch(): ``try_to_migrate(src, TTU_BATCH_FLUSH)`` and one
    ``try_to_unmap_flush()`` before the copies (7e12beb8ca2a, v6.3/6.4); 5.2 try_to_unmap_one()
    flushes each PTE with ``ptep_clear_flush()``."""
    cow_on_extra_ref: bool = False
    """do_wp_page() copies unless the page's only reference is this mapping (09854ba94c6a,
    v5.9 to v5.18; since 6c287605fd56, v5.19, an exclusive anonymous page is reused again);
    5.2 reuses a page only this mm maps (``reuse_swap_page()``)."""
    clear_refs_write_lock: bool = False
    """mainline clear_refs_write(): ``mmap_write_lock()`` and an explicit ``flush_tlb_mm()``
    (29a951dfb3c3 and 912efa17e512, v5.11); 5.2: ``mmap_sem`` for read and a fullmm gather."""
    extra_paths: tuple[Path, ...] = ()
    """Kernel paths of the variant's own, next to the built-in ones (``examples/new_path.py``)."""

    # ---- which kernel paths exist, how they start, and their steps -----------------------
    def paths(self) -> Mapping[str, Path]:
        """Every kernel path a CPU may run: the built-in ones and ``extra_paths``."""
        return {**PATHS, **{p.name: p for p in self.extra_paths}}

    def path_steps(self, path: Path) -> tuple[Step, ...]:
        """The steps of ``path``: its record's, with the runs a variant decides
        (``flush_steps``, ``switch_steps``) filled in. Override to reorder one path."""
        return expand(self, path, path.steps)

    def may_start(self, w: World, cpu: int, path: Path, lv: Locals) -> bool:
        """Whether ``cpu`` may start ``path`` with arguments ``lv`` now (its budget allowing):
        the record's guard, e.g. madvise only on a present PTE."""
        return path.may_start(w, cpu, lv)

    def flush_steps(self, path: str) -> tuple[Step, ...]:
        """The steps of flush_tlb_mm_range() when ``path`` flushes."""
        return FLUSH_STEPS_CONCURRENT if self.concurrent_flush else FLUSH_STEPS_LOCAL_FIRST

    def switch_steps(self, path: str) -> tuple[Step, ...]:
        """The steps of switch_mm_irqs_off() (prev != next) and finish_task_switch()."""
        return SWITCH_STEPS_5_2 if self.clear_cpumask_on_switch else SWITCH_STEPS_CURRENT

    # ---- the initiator: flush_tlb_mm_range() -> native_flush_tlb_multi() -----------------
    def flush_is_sync(self, at: Site, info: FlushTlbInfo) -> bool:
        """native_flush_tlb_multi(): ``wait`` argument of the csd (SYNC or ASYNC)."""
        if not self.async_flush:
            return True
        return info.freed_tables and not self.async_freed_tables

    def initiator_waits(self, at: Site, sync: bool) -> bool:
        """smp_call_function_many(): whether the initiator spins in csd_lock_wait()."""
        return sync or self.wait_for_csd_unlock

    def should_flush_tlb(self, at: Site, w: World, cpu: int, info: FlushTlbInfo) -> bool:
        """Whether the initiator IPIs ``cpu``, read racily from the remote's cpu_tlbstate.

        5.2: ``if (info->freed_tables) smp_call_function_many(...); else
        on_each_cpu_cond_mask(tlb_is_not_lazy, ...)``. Today's should_flush_tlb() also
        skips CPUs that have another mm loaded (they left mm_cpumask lazily).
        """
        c = w.cpus.peek(cpu)
        if info.freed_tables and self.ipi_lazy_if_freed_tables:
            return True
        if c.is_lazy:
            return False
        if not self.should_flush_loaded_mm_only:
            return True
        return c.loaded_mm in (LOADED_MM_SWITCHING, info.mm)

    def csd_info_inline(self, at: Site, info: FlushTlbInfo) -> bool:
        """RFC v2 10/12: the csd carries a copy of ``*info`` (else a pointer to the
        initiator's per-CPU ``flush_tlb_info``, which its next flush overwrites)."""
        return self.inline_info

    # ---- the receiver: flush_smp_call_function_queue() -------------------------------------
    def batch_order(self, items: tuple[IrqItem, ...]) -> tuple[IrqItem, ...]:
        """The order in which flush_smp_call_function_queue() handles a dequeued batch."""
        if self.sync_csds_first:
            return tuple(i for i in items if i.sync) + tuple(i for i in items if not i.sync)
        return items

    def unlock_async_csds_first(self, w: World, cpu: int) -> bool:
        """Whether the receiver unlocks every ASYNC csd of its batch before running any."""
        return self.batch_ack

    # ---- flush_tlb_func() ------------------------------------------------------------------
    def flush_tlb_func_trims_cpumask(self, w: World, cpu: int, f: FlushTlbInfo) -> bool:
        """``if (f->mm && f->mm != loaded_mm) { cpumask_clear_cpu(cpu, mm_cpumask(f->mm));
        ...; return; }``: today a CPU leaves the mm's cpumask when a flush finds it gone."""
        return not self.clear_cpumask_on_switch

    def flush_is_caught_up(self, w: World, cpu: int, f: FlushTlbInfo, local_tlb_gen: int) -> bool:
        """``if (f->new_tlb_gen <= local_tlb_gen) return;`` (today's flush_tlb_func())."""
        return self.skip_caught_up_flush and f.new_tlb_gen <= local_tlb_gen

    def partial_flush(
        self, w: World, cpu: int, f: FlushTlbInfo, local_tlb_gen: int, mm_tlb_gen: int
    ) -> bool:
        """``if (f->end != TLB_FLUSH_ALL && f->new_tlb_gen == local_tlb_gen + 1 &&
        f->new_tlb_gen == mm_tlb_gen)``: flush only the range, else everything."""
        partial = f.end != TLB_FLUSH_ALL and f.new_tlb_gen == mm_tlb_gen
        if self.partial_flush_needs_next_gen:
            partial = partial and f.new_tlb_gen == local_tlb_gen + 1
        return partial

    # ---- switch_mm_irqs_off() --------------------------------------------------------------
    def switch_clears_prev_cpumask(self, w: World, cpu: int) -> bool:
        """5.2: ``if (real_prev != &init_mm) cpumask_clear_cpu(cpu, mm_cpumask(real_prev));``
        ("Stop remote flushes for the previous mm")."""
        return self.clear_cpumask_on_switch

    def switch_to_init_mm_clears_cpumask(self, w: World, cpu: int) -> bool:
        """A lazy CPU's flush_tlb_func() switches to init_mm; in 5.2 that switch also leaves
        prev's mm_cpumask."""
        return self.clear_cpumask_on_switch

    # ---- mm/: the mmu_gather, the PTL, tlb_flush_pending, the rmap -----------------------
    def zap_flush_before_unlock(self, at: Site) -> bool:
        """zap_pte_range(): ``/* Do the actual TLB flush before dropping ptl */ if
        (force_flush) tlb_flush_mmu_tlbonly(tlb); pte_unmap_unlock(start_pte, ptl);`` -- an
        rmap walker (page_mkclean) that waits for the PTL then sees the flush done."""
        return True

    def zap_delays_rmap(self, at: Site) -> bool:
        """mainline: ``if (tlb_delay_rmap(tlb)) { delay_rmap = true; *force_flush = true; }``
        ... ``if (!delay_rmap) folio_remove_rmap_ptes(...)``; the rest in
        ``tlb_flush_rmaps()`` after the flush. 5.2: ``page_remove_rmap(page, false)`` in the
        loop, before the flush."""
        return self.delay_rmap

    def tlb_finish_mmu_forces_flush_when_nested(self, at: Site) -> bool:
        """tlb_finish_mmu(): ``if (mm_tlb_flush_nested(tlb->mm))`` forces a flush even of an
        empty gather (99baac21e458, v4.13: "mm: fix MADV_[FREE|DONTNEED] TLB flush miss
        problem")."""
        return True

    def nested_flush_is_full(self, at: Site) -> bool:
        """The forced flush: ``tlb->fullmm = 1; __tlb_reset_range(tlb); tlb->freed_tables =
        1;`` (7a30df49f63a, in v5.2); 5.2-rc's ``__tlb_reset_range(tlb);
        __tlb_adjust_range(tlb, start, end - start);`` flushed only the call's range and lost
        ``freed_tables``."""
        return True

    def dec_tlb_flush_pending_after_flush(self, at: Site) -> bool:
        """tlb_finish_mmu(): ``tlb_flush_mmu(tlb); ... dec_tlb_flush_pending(tlb->mm);`` -- the
        count drops only after the flush, so a caller that finds nothing to change still sees
        the flush in flight (mm_tlb_flush_nested())."""
        return True

    def mprotect_uses_gather(self, at: Site) -> bool:
        """mainline do_mprotect_pkey(): ``tlb_gather_mmu(&tlb, current->mm)`` ...
        ``tlb_finish_mmu(&tlb)`` (nested check included); 5.2 change_protection_range():
        ``inc_tlb_flush_pending(mm); ... if (pages) flush_tlb_range(vma, start, end);
        dec_tlb_flush_pending(mm);``."""
        return self.mprotect_gather

    def mprotect_records_pte(self, at: Site, old: Pte) -> bool:
        """Whether change_pte_range()'s change of a present PTE ``old`` to read-only asks for a
        flush: mainline ``if (pte_needs_flush(oldpte, ptent)) tlb_flush_pte_range(...)`` (x86:
        ``if (!(pte_flags(oldpte) & _PAGE_PRESENT)) return false;``, so not for a PROT_NONE
        entry, and otherwise only if RW goes 1 -> 0 here); 5.2 ``pages++`` for every
        ``pte_present()`` entry, PROT_NONE too."""
        return old.present and old.writable if self.mprotect_gather else True

    def frees_tables_by_rcu(self, at: Site) -> bool:
        """x86 ``___pte_free_tlb()``: mainline ``tlb_remove_ptdesc()`` -> ``tlb_remove_table()``
        (freed by ``call_rcu()`` after the flush); 5.2 bare metal
        ``paravirt_tlb_remove_table()`` = ``tlb_remove_page()`` (freed right after the flush)."""
        return self.rcu_table_free

    def page_mkclean_checks_mapped(self, at: Site) -> bool:
        """page_mkclean() / folio_mkclean(): ``if (!page_mapped(page)) return 0;`` -- no rmap
        walk, and so no PTL, for a page no PTE maps."""
        return True

    def switch_sets_cpumask_only_if_clear(self, at: Site) -> bool:
        """switch_mm_irqs_off(), prev != next: today ``if (next != &init_mm &&
        !cpumask_test_cpu(cpu, mm_cpumask(next))) cpumask_set_cpu(cpu, mm_cpumask(next));``
        (209954cbc7d0, "x86/mm/tlb: Update mm_cpumask lazily": the bit is often still set);
        5.2 always ``cpumask_set_cpu()``, a locked RMW and so a full barrier."""
        return not self.clear_cpumask_on_switch

    def smp_mb_if_cpumask_already_set(self, at: Site) -> bool:
        """The ``else smp_mb();`` of 83b0177a6c48 ("x86/mm: Fix SMP ordering in
        switch_mm_irqs_off()", 2025, reported by Stephen Dolan): "Rely on the smp_mb() implied
        by cpumask_set_cpu()'s atomic operation, or explicitly provide one. Such that:
        smp_store_release(loaded_mm, SWITCHING); smp_mb(); atomic64_read(tlb_gen) against
        atomic64_inc_return(tlb_gen); this_cpu_read(loaded_mm) ... This way switch_mm() must
        see the new tlb_gen or flush_tlb_mm_range() must see the new loaded_mm, or both."
        (Only asked when ``switch_sets_cpumask_only_if_clear`` found the bit set.)"""
        return True

    def smp_mb_before_lazy_tlb_gen_read(self, at: Site) -> bool:
        """switch_mm_irqs_off(), a lazy CPU back on its mm (5.2 and mainline): after
        ``this_cpu_write(cpu_tlbstate_shared.is_lazy, false)``, "Read the tlb_gen to check
        whether a flush is needed. If the TLB is up to date, just use it. The barrier
        synchronizes with the tlb_gen increment in the TLB shootdown code." ``smp_mb();
        next_tlb_gen = atomic64_read(&next->context.tlb_gen);`` Under TSO without it the
        is_lazy store can wait in the store buffer past the read (the store-buffer pattern
        against the flusher's ``inc_mm_tlb_gen()``, then its read of ``is_lazy``)."""
        return True

    def flush_tlb_batched_pending(self, at: Site) -> bool:
        """Whether the PTL section at ``at`` (change_pte_range(), zap_pte_range(), unmap_vmas())
        calls ``flush_tlb_batched_pending(mm)`` right after taking the PTL: 3ea277194daa
        (v4.12; 5.2 and mainline): "a parallel reclaim [...] leaving stale TLB entries" must be
        flushed before mprotect or munmap may find a PTE already clear and return."""
        return True

    def reclaim_defers_flush(self, at: Site, w: World, cpu: int, mm: int) -> bool:
        """try_to_unmap_one(): ``should_defer_flush(mm, flags)``: TTU_BATCH_FLUSH (reclaim
        passes it) and x86 ``arch_tlbbatch_should_defer()``: another CPU is in mm_cpumask
        (``cpumask_any_but(mm_cpumask(mm), get_cpu()) < nr_cpu_ids``)."""
        return bool(w.mms.peek(mm).cpumask & ~(1 << cpu))

    def pte_accessible_checks_flush_pending(self, at: Site) -> bool:
        """arch/x86/include/asm/pgtable.h pte_accessible(): ``if (pte_flags(a) &
        _PAGE_PRESENT) return true; if ((pte_flags(a) & _PAGE_PROTNONE) &&
        atomic_read(&mm->tlb_flush_pending)) return true; return false;`` -- a PROT_NONE
        entry may still be cached while the flush of the change that made it is pending
        (20841405940e, "mm: fix TLB flush race between migration, and
        change_protection_range", v3.13; 5.2 and mainline)."""
        return True

    def set_tlb_ubc_flush_pending_checks_accessible(self, at: Site) -> bool:
        """mm/rmap.c set_tlb_ubc_flush_pending(): mainline returns early ``if
        (!pte_accessible(mm, pteval))`` (4d4b6d66db63, v5.19); 5.2 batches every deferred
        flush (``batch_checks_accessible``)."""
        return self.batch_checks_accessible

    def migrate_batches_flush(self, at: Site) -> bool:
        """try_to_migrate_one(): whether the flush of a cleared PTE may be deferred to the
        batch (``should_defer_flush(mm, flags)`` with TTU_BATCH_FLUSH: mainline since
        7e12beb8ca2a, v6.3/6.4) or is done at once, under the PTL (5.2: ``ptep_clear_flush()``).
        A deferral also needs another CPU in mm_cpumask (``reclaim_defers_flush``)."""
        return self.migrate_batch_flush

    def migrate_flush_before_copy(self, path: str) -> bool:
        """migrate_pages_batch(): ``try_to_unmap_flush()`` after every page is unmapped and
        before migrate_folio_move() copies any (mainline; on 5.2 the flush is inside the
        unmap, ``migrate_batches_flush``, and this orders an empty batch). False copies
        first: a CPU still caching a writable translation can write the old page after the
        copy was taken."""
        return True

    def has_uffd_wp(self, at: Site) -> bool:
        """``ioctl(UFFDIO_WRITEPROTECT)`` exists (since v5.7; 5.2 has none: its userfaultfd
        knows missing pages only)."""
        return self.uffd_wp

    def move_ptes_flush_before_unlock(self, at: Site) -> bool:
        """mremap's move_ptes(): ``if (force_flush) flush_tlb_range(vma, old_end - len,
        old_end);`` before ``pte_unmap_unlock()`` (eb66ae030829, v4.19; 5.2 and mainline), so
        an rmap walker that waits for the PTL finds the old address flushed. False: before
        v4.19, move_page_tables() flushed after the locks were dropped (CVE-2018-18281)."""
        return True

    def flush_tlb_range_frees_tables(self, at: Site) -> bool:
        """x86 ``flush_tlb_range(vma, start, end)``: ``flush_tlb_mm_range(..., PAGE_SHIFT,
        true)`` since 3ef938c35035 ("x86/mm: Fix flush_tlb_range() when used for zapping
        normal PMDs", Jann Horn, 2025, CVE-2025-22045; stable back to 5.4): the generic
        pmdp_collapse_flush() zaps a PMD that points to a page table with it, and a flush
        without ``freed_tables`` skips lazy CPUs, whose paging-structure caches keep the
        PMD. 5.2: ``false``. Asked by its callers here: pmdp_collapse_flush() and
        move_ptes()."""
        return self.flush_range_frees_tables

    def retract_takes_mmap_write_lock(self, at: Site) -> bool:
        """5.2 retract_page_tables(): ``if (down_write_trylock(&vma->vm_mm->mmap_sem))``
        around the PMD clear and flush; mainline: only ``i_mmap_lock_read()`` (the model's
        rmap needs none)."""
        return not self.pte_free_defer

    def retract_frees_table_by_rcu(self, at: Site) -> bool:
        """retract_page_tables() frees the retracted table with mainline ``pte_free_defer()``
        (``call_rcu()``) or 5.2 ``pte_free()`` (at once, after the flush)."""
        return self.pte_free_defer

    def do_wp_page_copies(self, at: Site) -> bool:
        """do_wp_page() on an anonymous page only this mm maps: from 09854ba94c6a (v5.9) to
        v5.18 the fault copies when the page has any other reference (``page_count() !=
        1``), which ``linux-current`` takes to be the case, standing for mainline's copy of
        a page shared with another mm (since 6c287605fd56, v5.19, an exclusive page is
        reused: ``PageAnonExclusive()``); 5.2 reuses it (``reuse_swap_page()``:
        ``page_mapcount() == 1``)."""
        return self.cow_on_extra_ref

    def clear_refs_takes_mmap_write_lock(self, at: Site) -> bool:
        """clear_refs_write() for CLEAR_REFS_SOFT_DIRTY: mainline ``mmap_write_lock(mm)``
        (29a951dfb3c3, v5.11: "Turning page table entries read-only requires the mmap_sem
        held for writing"), so no fault runs while PTEs are read-only and not yet flushed;
        5.2 ``down_read(&mm->mmap_sem)``."""
        return self.clear_refs_write_lock

    def clear_refs_uses_gather(self, at: Site) -> bool:
        """5.2 clear_refs_write(): ``tlb_gather_mmu(&tlb, mm, 0, -1)`` ...
        ``tlb_finish_mmu()`` (a fullmm flush without freed_tables); mainline
        ``inc_tlb_flush_pending()`` ... ``flush_tlb_mm()`` (freed_tables set: lazy CPUs are
        sent the IPI too) ... ``dec_tlb_flush_pending()`` (912efa17e512)."""
        return not self.clear_refs_write_lock

    def clear_refs_flushes(self, at: Site) -> bool:
        """Whether clear_refs flushes the mm before it returns (5.2's fullmm gather does;
        mainline ``flush_tlb_mm()``). False: 5.6 to 5.10, where tlb_finish_mmu() skipped the
        flush of a gather that batched no page (0758cd830494, fixed by 912efa17e512)."""
        return True

    def inc_mm_tlb_gen_is_locked(self, at: Site) -> bool:
        """arch/x86/include/asm/tlbflush.h inc_mm_tlb_gen(): "Bump the generation count. This
        also serves as a full barrier that synchronizes with switch_mm(): callers are required
        to order their read of mm_cpumask after their writes to the paging structures."
        ``return atomic64_inc_return(&mm->context.tlb_gen);`` (lock xadd; 5.2 and mainline).
        False: a plain read and store (under TSO the store waits in the buffer while the
        flusher reads ``loaded_mm``/``is_lazy``, and two flushers can lose an increment)."""
        return True

    def csd_unlock_fences(self, at: Site) -> bool:
        """kernel/smp.c csd_unlock(): ``smp_store_release(&csd->node.u_flags, 0)`` (5.2:
        ``&csd->flags``), a plain store on x86 that may wait in the receiver's store buffer
        (False, both kernels). True: a full barrier before it, as pre-4.x kernels had
        (``smp_mb(); csd->flags &= ~CSD_FLAG_LOCK``)."""
        return False

    def gup_fast_disables_irqs(self, at: Site) -> bool:
        """mm/gup.c gup_fast(): ``local_irq_save(flags)`` around the lockless walk: "With
        interrupts disabled, we block page table pages from being freed from under us ... We
        do not adopt an rcu_read_lock() here as we also want to block IPIs that come from THPs
        splitting." (mainline; 5.2's get_user_pages_fast() the same)."""
        return True

    # ---- NMIs ------------------------------------------------------------------------------
    def nmi_uaccess_okay(self, w: World, cpu: int) -> bool:
        """``loaded_mm == current->mm`` (so not LOADED_MM_SWITCHING); with RFC 11 also no
        asynchronous flush_tlb_func() dequeued but not yet finished on this CPU."""
        c = w.cpus.peek(cpu)
        if c.own_loaded_mm() != c.task:
            return False
        return not (self.nmi_checks_async_flush and c.async_func_in_progress == FLUSH_TLB_FUNC)


LINUX_5_2: Final = Variant(
    name="linux-5.2",
    summary="local flush, then IPIs to non-lazy CPUs (all CPUs if tables are freed), wait for all",
    kernel_ref="Linux 5.2 arch/x86/mm/tlb.c, kernel/smp.c",
)

LINUX_CONCURRENT: Final = attrs.evolve(
    LINUX_5_2,
    name="linux-concurrent",
    summary="IPIs first, local flush while remotes run, then wait for all",
    kernel_ref="Linux 5.13 (4ce94eabac16 'x86/mm/tlb: Flush remote and local TLBs concurrently')",
    concurrent_flush=True,
    sync_csds_first=True,
)

LINUX_CURRENT: Final = attrs.evolve(
    LINUX_CONCURRENT,
    name="linux-current",
    summary="native_flush_tlb_multi with should_flush_tlb(), lazy mm_cpumask, caught-up check",
    kernel_ref="Linux 6.15+ arch/x86/mm/tlb.c without INVLPGB (native_flush_tlb_multi)",
    should_flush_loaded_mm_only=True,
    clear_cpumask_on_switch=False,
    skip_caught_up_flush=True,
    delay_rmap=True,
    mprotect_gather=True,
    rcu_table_free=True,
    flush_range_frees_tables=True,
    pte_free_defer=True,
    uffd_wp=True,
    batch_checks_accessible=True,
    migrate_batch_flush=True,
    cow_on_extra_ref=True,
    clear_refs_write_lock=True,
)

RFC_ASYNC_POSTED: Final = attrs.evolve(
    LINUX_CONCURRENT,
    name="rfc-async-posted",
    summary="RFC v2 11/12 as posted: async inline flush, initiator does not wait at all",
    kernel_ref="[RFC PATCH v2 11/12] x86/mm/tlb: Use async and inline messages for flushing "
    "(20190531063645.4697-12-namit@vmware.com), code as posted",
    sync_csds_first=False,
    async_flush=True,
    wait_for_csd_unlock=False,
    inline_info=True,
    nmi_checks_async_flush=True,
)

RFC_ASYNC: Final = attrs.evolve(
    RFC_ASYNC_POSTED,
    name="rfc-async",
    summary="RFC v2 11/12 as intended: wait for csd unlock; sync for freed tables; NMI check",
    kernel_ref="RFC v2 11/12 as described by its author "
    "(5F153080-D7A7-4054-AB4A-AEDD5F82E0B9@vmware.com)",
    wait_for_csd_unlock=True,
)

RFC_ASYNC_NO_NMI_CHECK: Final = attrs.evolve(
    RFC_ASYNC,
    name="rfc-async-no-nmi-check",
    summary="rfc-async without the nmi_uaccess_okay() change",
    kernel_ref="RFC v2 11/12 minus its nmi_uaccess_okay() hunk",
    nmi_checks_async_flush=False,
)

RFC_ASYNC_BATCH_ACK: Final = attrs.evolve(
    RFC_ASYNC,
    name="rfc-async-batch-ack",
    summary="rfc-async whose receiver unlocks all async csds of a batch before running any",
    kernel_ref="hypothetical receiver for Peter Zijlstra's question "
    "(20190531105758.GO2623@hirez.programming.kicks-ass.net)",
    batch_ack=True,
)

RFC_ASYNC_FREED_TABLES: Final = attrs.evolve(
    RFC_ASYNC,
    name="rfc-async-freed-tables",
    summary="rfc-async that is async also when page tables are freed",
    kernel_ref="RFC v2 11/12 without its freed_tables exception",
    async_freed_tables=True,
)

RFC_ASYNC_POINTER_INFO: Final = attrs.evolve(
    RFC_ASYNC,
    name="rfc-async-pointer-info",
    summary="rfc-async passing a pointer to the per-CPU flush_tlb_info instead of a copy",
    kernel_ref="RFC v2 11/12 without patch 10's inlined csd data",
    inline_info=False,
)

LAZY_SKIP_FREED_TABLES: Final = attrs.evolve(
    LINUX_5_2,
    name="lazy-skip-freed-tables",
    summary="linux-5.2 that skips lazy CPUs even when page tables are freed",
    kernel_ref="before 'x86/mm/tlb: Leave lazy TLB mode at page table free time' "
    "(20180716190337.26133-3-riel@surriel.com)",
    ipi_lazy_if_freed_tables=False,
)

FLUSH_NO_GEN_CHECK: Final = attrs.evolve(
    LINUX_5_2,
    name="flush-no-gen-check",
    summary="linux-5.2 whose flush_tlb_func() does a partial flush without the +1 check",
    kernel_ref="buggy: flush_tlb_func() without 'f->new_tlb_gen == local_tlb_gen + 1'",
    partial_flush_needs_next_gen=False,
)

VARIANTS: Final[dict[str, Variant]] = {
    v.name: v
    for v in (
        LINUX_5_2,
        LINUX_CONCURRENT,
        LINUX_CURRENT,
        RFC_ASYNC_POSTED,
        RFC_ASYNC,
        RFC_ASYNC_NO_NMI_CHECK,
        RFC_ASYNC_BATCH_ACK,
        RFC_ASYNC_FREED_TABLES,
        RFC_ASYNC_POINTER_INFO,
        LAZY_SKIP_FREED_TABLES,
        FLUSH_NO_GEN_CHECK,
    )
}

BASE_OF: Final[dict[str, str]] = {
    "linux-concurrent": "linux-5.2",
    "linux-current": "linux-concurrent",
    "rfc-async-posted": "linux-concurrent",
    "rfc-async": "rfc-async-posted",
    "rfc-async-no-nmi-check": "rfc-async",
    "rfc-async-batch-ack": "rfc-async",
    "rfc-async-freed-tables": "rfc-async",
    "rfc-async-pointer-info": "rfc-async",
    "lazy-skip-freed-tables": "linux-5.2",
    "flush-no-gen-check": "linux-5.2",
}
"""Each built-in variant made from another (the ``attrs.evolve`` above): the variant it
changes. A finding on it is replayed there, and further back while it breaks there too, so a
reader learns whose race it is (``tlbfuzz.fuzz.changes.whose``). A variant of your own is
measured against the nearest built-in one instead (``changes_of``)."""

TSO_ONLY: Final = frozenset(
    {
        "switch_sets_cpumask_only_if_clear",
        "smp_mb_if_cpumask_already_set",
        "smp_mb_before_lazy_tlb_gen_read",
        "inc_mm_tlb_gen_is_locked",
        "csd_unlock_fences",
    }
)
"""The decisions whose answers change nothing under ``memory_model="sc"``: a fence, or a
locked RMW instead of a plain read and store (``cpumask_set_cpu()`` of a bit already set is
one), differs from a plain access only where a store can wait in a store buffer (x86-TSO,
``protocol/tso.py``). A variant that changes only these and is fuzzed under sc cannot break
(``tlbfuzz.fuzz.changes.summary`` says so)."""
