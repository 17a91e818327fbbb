"""mm/gup.c: GUP-fast, the lockless software page-table walker, against page-table freeing.

``get_user_pages_fast()`` walks current->mm's page tables without mmap_lock or the PTL. What
keeps the page-table page it walks from being freed under it is that it walks with IRQs
disabled (mainline ``gup_fast()``; 5.2 ``get_user_pages_fast()`` -> ``gup_pgd_range()``)::

    local_irq_save(flags);      /* "With interrupts disabled, we block page table pages
                                    from being freed from under us." */
    pmd = pmdp_get_lockless(pmdp);          /* one level up, read once */
    pte = ptep_get_lockless(ptep);          /* through the table the PMD points at */
    ... try_grab_folio_fast(); recheck pmd and pte; ...
    local_irq_restore(flags);

and that a page-table page is freed only after something an IRQs-off section holds off:
include/asm-generic/tlb.h / mm/mmu_gather.c, "Semi RCU freeing of the page directories":
"Architectures that use IPIs to flush TLBs will then automagically DTRT, since we unlink the
page, flush TLBs, free the page. Since the disabling of IRQs delays the completion of the TLB
flush we can never observe an already freed page." That is 5.2 on bare metal (the flush with
``freed_tables`` IPIs every CPU of the mm, lazy ones too, and waits). With
``MMU_GATHER_RCU_TABLE_FREE`` (x86 mainline) the table is freed by ``call_rcu()`` after a grace
period, and an IRQs-off section holds the grace period off (``tlbfuzz.protocol.mm.rcu_quiescent``).

Sources: mainline mm/gup.c ``gup_fast()`` and ``gup_fast_pte_range()`` as summarised in
``../shared/mm-layer.md`` section 11 (read there from the linux-next mirror); 5.2's
``gup_pgd_range()`` walks the same way with IRQs disabled and rechecks only the PTE
(unverified against a 5.2 tree).

The walk is three steps: ``local_irq_save()`` with the PMD read (IRQs off is CPU-local, so it
moves right into the read), the PTE read through the table the PMD pointed at, and
``local_irq_restore()``. Left out: the folio reference and the recheck of the PMD and PTE after
it (they protect the *page* from a concurrent zap, which needs page refcounts the model does
not have; the *table* is protected only by the IRQs-off section, whatever the recheck finds),
the FOLL_PIN ``write_protect_seq``, huge pages, and the slow-path fallback.

The property is ``no_walk_of_freed_page_table`` (invariant I2 of ``../shared/domain.md``): when a
page-table page is freed, no GUP-fast walk has read a PMD pointing at it and not yet read the
PTE (``tlbfuzz.protocol.mm.free_page``), and a PTE read through a freed table is reported too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlbfuzz.protocol.paths import VA, BudgetKind, Path, Step, always, register
from tlbfuzz.protocol.properties import NO_WALK_OF_FREED_PAGE_TABLE
from tlbfuzz.protocol.state import NO_PFN, PGTABLE, mm_name

if TYPE_CHECKING:
    from tlbfuzz.protocol.world import World


def gup_fast_pmd(w: World, cpu: int) -> None:
    """``local_irq_save()`` (if the variant keeps it: ``Variant.gup_fast_disables_irqs``),
    then ``pmdp_get_lockless(pmdp)``: the page-table page this walk will read the PTE from,
    or none (``pmd_none()``: the walk ends and GUP falls back to the slow path)."""
    c = w.cpus[cpu]
    if w.variant.gup_fast_disables_irqs(w.site(cpu)):
        c.irqs_on = False
    mm = w.mms[c.task]
    pt = mm.pgtable_pfn
    if pt == NO_PFN:
        return
    c.locals = c.locals._replace(table=pt, table_version=w.frames[pt].version)


def no_table(w: World, cpu: int) -> bool:
    """``pmd_none(pmd)``: nothing to walk."""
    return w.cpus.peek(cpu).locals.table == NO_PFN


def gup_fast_pte(w: World, cpu: int) -> None:
    """``ptep_get_lockless(ptep)``: read the PTE out of the page-table page the PMD pointed
    at. If that page has been freed (its version moved), the walk reads a free page, or one
    reused for something else."""
    c = w.cpus[cpu]
    lv = c.locals
    frame = w.frames[lv.table]
    if frame.version != lv.table_version or frame.kind != PGTABLE:
        w.report(
            NO_WALK_OF_FREED_PAGE_TABLE,
            f"cpu{cpu} GUP-fast reads the PTE of {lv.va:#x} (mm {mm_name(c.task)}) from "
            f"page-table page pfn {lv.table} v{lv.table_version}, which is now "
            f"{frame.describe()}",
        )
    c.locals = lv._replace(table=NO_PFN, table_version=0)


def gup_fast_irq_restore(w: World, cpu: int) -> None:
    """``local_irq_restore(flags)``: IPIs and the RCU grace period may go on."""
    w.cpus[cpu].irqs_on = True


GUP_FAST = register(
    Path(
        "gup_fast",
        # The fuzzer leaves it out unless asked (--budget gup_fast=1): its race needs a
        # munmap on another CPU, which the explorer pairs it with in the whole space.
        BudgetKind("gup_fast", default=0, fuzz_max=0),
        VA,
        always,
        (
            Step("gup_fast", gup_fast_pmd, c="pmdp_get_lockless()"),
            Step("gup_fast_pte_range", gup_fast_pte, skip=no_table, c="ptep_get_lockless()"),
            Step("local_irq_restore", gup_fast_irq_restore, c="local_irq_restore()"),
        ),
        from_user=True,
        summary="get_user_pages_fast() of one address: an IRQs-off walk, PMD then PTE",
    )
)
