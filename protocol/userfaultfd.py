"""mm/userfaultfd.c: ``ioctl(UFFDIO_WRITEPROTECT)`` write-protecting one page.

userfaultfd write-protect (v5.7; not in 5.2) lets a monitor catch writes: once the ioctl has
returned, a write to the page faults and ``handle_userfault()`` hands it to the monitor
(live snapshots, dirty tracking). mwriteprotect_range() takes ``mmap_read_lock()`` and calls
uffd_wp_range() (mainline, read through the search tool; ``../shared/mm-layer.md`` section 8
marks the body unverified)::

    tlb_gather_mmu(&tlb, dst_vma->vm_mm);
    ret = change_protection(&tlb, dst_vma, start, start + len, mm_cp_flags);  /* UFFD_WP */
    tlb_finish_mmu(&tlb);

change_pte_range() with MM_CP_UFFD_WP makes each present PTE read-only and marks it
(``pte_mkuffd_wp()``, x86 ``_PAGE_UFFD_WP``), a migration entry readable and marked; a flush
is recorded only if ``pte_needs_flush()`` (RW went 1 -> 0), and tlb_finish_mmu() flushes. It is
mprotect's deferred flush under a *read* lock, so two threads may write-protect one page at
once: the second finds it protected already, records nothing, and must not return before the
first one's flush -- ``mm_tlb_flush_nested()`` in tlb_finish_mmu() (99baac21e458) forces it
to flush (``Variant.tlb_finish_mmu_forces_flush_when_nested``; MECHANISMS).

The model's page is write-protected once and stays so: the unprotect (MM_CP_UFFD_WP_RESOLVE,
and the 6ce64428d621 race between a protect, an unprotect and a COW fault), the monitor
itself, markers on none PTEs (UFFD_FEATURE_WP_UNPOPULATED), file and hugetlb pages and the
``mmap_changing`` retry are left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlbfuzz.protocol.mm import (
    FINISH_FLUSH,
    NESTED,
    change_pte_range,
    dec_tlb_flush_pending,
    mmap_lock_writer,
    ptl_section,
    retire,
    tlb_gather_mmu,
)
from tlbfuzz.protocol.paths import VA, BudgetKind, Path, Step, register
from tlbfuzz.protocol.state import ANON, PAGE_SIZE, WRPROTECTED

if TYPE_CHECKING:
    from tlbfuzz.protocol.state import Locals
    from tlbfuzz.protocol.world import World


def mwriteprotect_range(w: World, cpu: int) -> None:
    """``mmap_read_lock()`` (held from the start), then uffd_wp_range(): ``tlb_gather_mmu()``
    (``inc_tlb_flush_pending``). The PTE change is the next step (``change_pte_range``)."""
    c = w.cpus[cpu]
    mm_id, va = c.task, c.locals.va
    tlb_gather_mmu(w, cpu, mm_id, va, va + PAGE_SIZE)
    c.locals = c.locals._replace(uffd_wp=True)


def mwriteprotect_range_done(w: World, cpu: int) -> None:
    """tlb_finish_mmu() has flushed and run ``dec_tlb_flush_pending()``; the ioctl returns.
    Ghost: from now on no write may go through a writable translation from before (the
    monitor would miss it)."""
    dec_tlb_flush_pending(w, cpu)
    retire(w, cpu, WRPROTECTED)


def _uffd_wp_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """The kernel has UFFDIO_WRITEPROTECT (``Variant.has_uffd_wp``), an anonymous page is
    mapped at ``va`` (present or PROT_NONE: the vma is registered with UFFDIO_REGISTER_MODE_WP
    and populated), and ``mmap_read_lock()`` would not sleep (no writer)."""
    if not w.variant.has_uffd_wp(w.site(cpu)):
        return False
    mm_id = w.cpus.peek(cpu).task
    mm = w.mms.peek(mm_id)
    pte = mm.ptes.get(lv.va)
    if lv.va not in mm.vma_writable or pte is None or not pte.mapped:
        return False
    return w.frames[pte.pfn].kind == ANON and mmap_lock_writer(w, mm_id) < 0


UFFD_WP = register(
    Path(
        "uffd_wp",
        # Asked for by name (--budget uffd_wp=1): its race needs a writer on another CPU.
        BudgetKind("uffd_wp", default=0, fuzz_max=0),
        VA,
        _uffd_wp_may_start,
        (
            Step("mwriteprotect_range", mwriteprotect_range, c="tlb_gather_mmu()"),
            *ptl_section("change_pte_range", change_pte_range),
            NESTED,
            FINISH_FLUSH,
        ),
        returns=mwriteprotect_range_done,
        holds=(("mmap_lock", 1),),
        from_user=True,
        summary="UFFDIO_WRITEPROTECT of one anonymous page: read-only and marked under the "
        "PTL, the flush deferred to tlb_finish_mmu()",
    )
)
