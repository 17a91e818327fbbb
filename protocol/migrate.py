"""mm/migrate.c and mm/rmap.c: migration of one anonymous page to a new frame.

migrate_pages() moves a page's contents to a new page and every mapping with them: lock the
page; unmap it, leaving a *migration entry* in each PTE (a non-present swap entry that
makes a faulting thread wait in ``migration_entry_wait()``); flush; copy the contents to the
new page; ``remove_migration_ptes()``: under each PTL, a PTE to the new page takes the
entry's place; free the old page. The kernel's order is the one that makes the copy safe:
no CPU may write the old page after the copy is taken, so every translation of it is
flushed first.

- 5.2 (``unmap_and_move()`` -> ``__unmap_and_move()``: ``try_to_unmap(page,
  TTU_MIGRATION|TTU_IGNORE_MLOCK|TTU_IGNORE_ACCESS)``, then ``move_to_new_page()``;
  5.4-era mm/migrate.c and mm/rmap.c read through the search tool): try_to_unmap_one()
  without TTU_BATCH_FLUSH, so ``pteval = ptep_clear_flush(vma, address, pvmw.pte);``: a
  synchronous flush (IPIs, waiting) under the PTL, then ``set_pte_at()`` of the migration
  entry.
- mainline (migrate_pages_batch(), 7e12beb8ca2a "migrate_pages: batch flushing TLB", v6.3
  or v6.4): ``try_to_migrate(src, TTU_BATCH_FLUSH)`` defers the flush as reclaim does
  (``should_defer_flush()``, ``set_tlb_ubc_flush_pending()``, ``tlbfuzz.protocol.vmscan``),
  and ``try_to_unmap_flush()`` runs once for the batch, before migrate_folio_move() copies.
  ``../shared/mm-layer.md`` section 9.

Modelled steps: the unmap (one PTL section; on 5.2 the flush follows under the PTL, then the
unlock), the batched flush (mainline), the copy (``Variant.migrate_flush_before_copy`` orders
it against the batched flush), remove_migration_ptes() (a PTL section) and the free. The
migration entry is written in the step that clears the PTE: between ptep_clear_flush() and
set_pte_at() the PTL is held, and a lockless reader (a page walk, GUP-fast) finds no
present entry either way. Who meets a migration entry: a fault waits (the access is retried
later), zap_pte_range() clears it (the page stays with the migration, which then finds no
entry to restore and frees both pages), mprotect makes it a readable one. Left out: file
and huge pages, several mappings of one page, migration failure other than -ENOMEM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlbfuzz.protocol.mm import (
    alloc_user_page,
    free_page,
    page_locked,
    pte_accessible,
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
    skipping,
)
from tlbfuzz.protocol.properties import NO_WRITE_LOST_TO_COPY
from tlbfuzz.protocol.state import (
    ANON,
    COPIED,
    NO_PFN,
    PAGE_SIZE,
    mm_name,
)
from tlbfuzz.protocol.vmscan import (
    batch_flush_steps,
    mapped_page,
    nothing_batched,
    page_at,
    rmap_address,
    set_tlb_ubc_flush_pending,
)

if TYPE_CHECKING:
    from tlbfuzz.protocol.state import Locals
    from tlbfuzz.protocol.variants import Variant
    from tlbfuzz.protocol.world import World


def try_to_migrate_one(w: World, cpu: int) -> None:
    """Under the PTL: the PTE becomes a migration entry (writable or readable as the PTE was,
    carrying D and soft-dirty) and the rmap goes; then the flush is deferred to the batch
    (mainline, another CPU in mm_cpumask) or done now by ptep_clear_flush(), still under the
    PTL (the steps after this one)."""
    c = w.cpus[cpu]
    lv = c.locals
    mm = w.mms[lv.mm]
    pfn = lv.page
    va = rmap_address(w, lv.mm, pfn)
    if va == 0:
        return  # zapped since the page was isolated: nothing to migrate
    c.locals = lv = lv._replace(va=va)
    pte = mm.ptes[lv.va]
    # the swap entry keeps D, soft-dirty and uffd-wp: _replace() carries every other field
    mm.ptes[lv.va] = pte._replace(
        present=False,
        writable=pte.writable and pte.present,  # pte_write(): a PROT_NONE entry has no RW bit
        accessed=False,
        pfn=pfn,
        seq=pte.seq + 1,
        protnone=False,
        migration=True,
    )
    w.frames[pfn] = w.frames[pfn]._replace(mapped=False)
    c.locals = lv._replace(pfns=(pfn,), end=lv.va + PAGE_SIZE)
    accessible = pte_accessible(w, cpu, lv.mm, pte)
    at = w.site(cpu)
    v = w.variant
    if v.migrate_batches_flush(at) and v.reclaim_defers_flush(at, w, cpu, lv.mm):
        set_tlb_ubc_flush_pending(w, cpu, pte, accessible)
    elif accessible:
        # ptep_clear_flush(): ``if (pte_accessible(mm, pte)) flush_tlb_page(vma, address);``
        c.locals = c.locals._replace(ptl=True, cleared=True)


def try_to_migrate_one__unlock(w: World, cpu: int) -> None:
    """After ptep_clear_flush()'s flush: ``page_vma_mapped_walk_done()`` drops the PTL."""
    c = w.cpus[cpu]
    c.locals = c.locals._replace(ptl=False)


def migrate_folio_move__copy(w: World, cpu: int) -> None:
    """The new page (``get_new_page()``, 5.2; ``get_new_folio()``) gets the old one's contents
    (5.2 ``migrate_page_copy()``, mainline ``folio_migrate_copy()``). No free frame: -ENOMEM,
    and the old page is mapped back."""
    c = w.cpus[cpu]
    lv = c.locals
    if not lv.pfns:
        return
    old = lv.pfns[0]
    new = alloc_user_page(w, lv.mm, lv.va)
    if new == NO_PFN:
        return
    c.locals = lv._replace(pfns=(old, new), page=new)  # the new page is locked too
    take_copy(w, cpu, old)


def remove_migration_ptes(w: World, cpu: int) -> None:
    """remove_migration_pte() under the PTL: if the migration entry is still there, a PTE to
    the new page (the old one after -ENOMEM) replaces it: writable if the entry was, old,
    dirty and soft-dirty as the entry says; ``page_add_anon_rmap()``. No flush: the entry
    was not present. Then the locals keep the pages to free."""
    c = w.cpus[cpu]
    lv = c.locals
    if not lv.pfns:
        return
    old = lv.pfns[0]
    new = lv.pfns[-1]
    mm = w.mms[lv.mm]
    va = w.frames[old].va  # the rmap walk of the old page: where its entry is now
    pte = mm.ptes.get(va)
    if pte is None or not pte.migration or pte.pfn != old:
        return  # zapped meanwhile: no entry to restore, both pages are freed
    mm.ptes[va] = pte._replace(
        present=True,
        writable=pte.writable and not pte.uffd_wp,  # pte_swp_uffd_wp(): pte_mkuffd_wp(), RO
        accessed=False,
        pfn=new,
        seq=pte.seq + 1,
        migration=False,
    )
    w.frames[new] = w.frames[new]._replace(mapped=True, va=va)
    if new != old and lost_to_copy(w, cpu, old):
        report_lost_copy(w, f"cpu{cpu} remove_migration_ptes()", lv.mm, va, old, new)
    c.locals = lv._replace(pfns=(old,) if new != old else ())


def take_copy(w: World, cpu: int, old: int) -> None:
    """The copy of ``old`` is taken: its ghost count starts (``Frame.copied``) and this path
    remembers where it stood."""
    f = w.frames[old]
    mark = max(f.copied, COPIED)
    w.frames[old] = f._replace(copied=mark)
    c = w.cpus[cpu]
    c.locals = c.locals._replace(copy_mark=mark)


def lost_to_copy(w: World, cpu: int, old: int) -> bool:
    """A write landed in ``old`` after this path took its copy."""
    return w.frames[old].copied > w.cpus[cpu].locals.copy_mark


def report_lost_copy(w: World, by: str, mm_id: int, va: int, old: int, new: int) -> None:
    """A PTE moved from ``old`` to its copy ``new`` after a write landed in ``old``."""
    w.report(
        NO_WRITE_LOST_TO_COPY,
        f"{by} maps {va:#x} of mm {mm_name(mm_id)} to pfn {new}, the copy of pfn {old}, but "
        f"pfn {old} was written after the copy was taken: the new page lacks that write",
    )


def migrate_folio_done(w: World, cpu: int) -> None:
    """The old page is freed (``putback``/``folio_put()``), and the new one too if no entry
    was left to restore; ``unlock_page()``."""
    lv = w.cpus[cpu].locals
    for pfn in lv.pfns:
        free_page(w, pfn, by=f"cpu{cpu} migrate_pages")


def _migrate_may_start(w: World, cpu: int, lv: Locals) -> bool:
    """Compaction or NUMA balancing isolates an anonymous page some PTE maps (present or
    PROT_NONE) and gets its lock (``trylock_page()``)."""
    pfn = mapped_page(w, lv.mm, lv.va)
    return pfn != NO_PFN and w.frames[pfn].kind == ANON and not page_locked(w, pfn)


COPY = Step("migrate_folio_move__copy", migrate_folio_move__copy, c="folio_migrate_copy()")


def move_steps(variant: Variant, path: str) -> tuple[Step, ...]:
    """``try_to_unmap_flush()`` (only if the unmap deferred a flush) and the copy, in the
    order ``Variant.migrate_flush_before_copy`` decides."""
    flush = tuple(skipping(s, nothing_batched) for s in batch_flush_steps(variant, path))
    if variant.migrate_flush_before_copy(path):
        return (*flush, COPY)
    return (COPY, *flush)


MIGRATE = register(
    Path(
        "migrate",
        # Asked for by name (--budget migrate=1): its race needs a writer on another CPU.
        BudgetKind("migrate", default=0, fuzz_max=0),
        MM_VA,
        _migrate_may_start,
        (
            Step(
                "try_to_migrate_one",
                try_to_migrate_one,
                guard=ptl_free,
                c="try_to_migrate_one()",
            ),
            Inline("flush_tlb_mm_range", FLUSH_TLB_MM_RANGE.expand, skip=ptl_not_held),
            Step(
                "try_to_migrate_one__unlock",
                try_to_migrate_one__unlock,
                skip=ptl_not_held,
                c="page_vma_mapped_walk_done()",
            ),
            Inline("migrate_pages_batch", move_steps),
            Step(
                "remove_migration_ptes",
                remove_migration_ptes,
                guard=ptl_free,
                c="remove_migration_pte()",
            ),
            Step("migrate_folio_done", migrate_folio_done, c="folio_put()"),
        ),
        locks_page=page_at,
        allocates=True,
        summary="migration of one anonymous page: migration entry, flush, copy, remap, free",
    )
)
