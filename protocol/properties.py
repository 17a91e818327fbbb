"""Safety properties (domain brief, section 5). Each names the condition that must hold.

Two kinds. Event properties are checked by the action that could break them (an access through
a stale entry, a walk, a free) and recorded on the world as it happens. State properties are
predicates over the whole state, checked by ``World.violations()``.

``no_stale_entry_at_free`` is strict: it also forbids *speculative* use of a stale leaf entry
(Peter Zijlstra's point in the review), which no Linux release promises for lazy CPUs, and so
it is not in the default set. It exempts lazy CPUs, like upstream does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

from tlbfuzz.protocol.state import ANON, FILE, KTHREAD, NO_PFN, Violation, mm_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from tlbfuzz.protocol.world import World


# The properties' names, for the code that reports them (a test checks every report names one).
NO_USE_AFTER_FREE: Final = "no_use_after_free"
NO_WALK_OF_FREED_PAGE_TABLE: Final = "no_walk_of_freed_page_table"
NO_WRITE_AFTER_WRITE_PROTECT: Final = "no_write_after_write_protect"
NO_LOST_WRITE: Final = "no_lost_write"
NMI_UACCESS_SAFETY: Final = "nmi_uaccess_safety"
TLB_GEN_SOUNDNESS: Final = "tlb_gen_soundness"
REQUEST_INTEGRITY: Final = "request_integrity"
NO_DEADLOCK: Final = "no_deadlock"
NO_STALE_ENTRY_AT_FREE: Final = "no_stale_entry_at_free"
USER_NEVER_LAZY: Final = "user_never_lazy"
UACCESS_IN_CURRENT_MM: Final = "uaccess_in_current_mm"
PTES_MAP_OWN_FRAMES: Final = "ptes_map_own_frames"
RMAP_MATCHES_PTES: Final = "rmap_matches_ptes"
TLB_FLUSH_PENDING_BALANCED: Final = "tlb_flush_pending_balanced"
TLB_ENTRY_MATCHES_ITS_PTE: Final = "tlb_entry_matches_its_pte"
NO_STALE_ACCESS_AFTER_RETURN: Final = "no_stale_access_after_return"
NO_WRITE_LOST_TO_COPY: Final = "no_write_lost_to_copy"
NO_LOST_SOFT_DIRTY: Final = "no_lost_soft_dirty"


@attrs.frozen
class Property:
    name: str
    summary: str
    default: bool = True
    check: Callable[[World], Violation | None] | None = None
    """For state properties: a predicate over the state. None: checked at events."""


def tlb_gen_soundness(w: World) -> Violation | None:
    """For every CPU and ASID slot holding mm's ctx_id at ``tlb_gen = k``: no TLB entry of that
    slot predates a PTE change whose flush request had ``new_tlb_gen <= k``. This is the
    invariant flush_tlb_func() states: "we've always done all needed flushes to catch up to
    local_tlb_gen"."""
    for cpu, c in enumerate(w.cpus.each()):
        for (asid, va), e in c.tlb.items():
            ctx_id, local_tlb_gen = c.ctxs[asid]
            if ctx_id <= 0:
                continue
            for new_tlb_gen, fva, seq in w.mms.peek(ctx_id).flush_log:
                if fva == va and new_tlb_gen <= local_tlb_gen and e.pte_seq < seq:
                    return Violation(
                        TLB_GEN_SOUNDNESS,
                        f"cpu{cpu} ASID {asid} claims mm {mm_name(ctx_id)} tlb_gen "
                        f"{local_tlb_gen} but still caches {va:#x} -> pfn {e.pfn} from before "
                        f"the PTE change flushed at tlb_gen {new_tlb_gen}",
                    )
    return None


def no_lost_write(w: World) -> Violation | None:
    """A file page whose memory differs from what writeback saved is dirty somewhere: its
    PG_dirty, or the dirty bit of the PTE that maps it. Otherwise the write is lost (Andy
    Lutomirski: "any code doing dirty tracking needs the flush to happen for real before it
    reads the dirty bit")."""
    for pfn, f in enumerate(w.frames):
        if f.kind != FILE or not f.modified or f.page_dirty:
            continue
        pte = w.mms.peek(f.mm).ptes.get(f.va)
        if pte is not None and pte.mapped and pte.pfn == pfn and pte.dirty:
            continue
        return Violation(
            NO_LOST_WRITE,
            f"file page pfn {pfn} ({mm_name(f.mm)} {f.va:#x}) was written after writeback "
            f"saved it, yet it is clean: PG_dirty=0 and its PTE is clean; the write is lost",
        )
    return None


def no_deadlock(w: World) -> Violation | None:
    """Some CPU spins in csd_lock()/csd_lock_wait() and no CPU can make kernel progress."""
    if not any(w.is_blocked(cpu) for cpu in range(len(w.cpus))):
        return None
    if w.progress_possible():
        return None
    stuck = [f"cpu{c}" for c in range(len(w.cpus)) if w.is_blocked(c)]
    return Violation(
        NO_DEADLOCK,
        f"{', '.join(stuck)} spin waiting for csds that no CPU can ever unlock",
    )


def user_never_lazy(w: World) -> Violation | None:
    """A CPU whose current task is a user task is not in lazy TLB mode: ``enter_lazy_tlb()``
    is for kernel threads, and switch_mm_irqs_off() clears ``is_lazy`` before the switch to
    a user task completes."""
    for cpu, c in enumerate(w.cpus.each()):
        if c.task != KTHREAD and c.own_is_lazy():
            return Violation(
                USER_NEVER_LAZY,
                f"cpu{cpu} runs a task of mm {mm_name(c.task)} with is_lazy set "
                f"(loaded_mm={mm_name(c.loaded_mm)})",
            )
    return None


def ptes_map_own_frames(w: World) -> Violation | None:
    """Every present PTE of an mm maps a page of that mm at that address: never a free frame,
    a page-table page, or a frame reallocated to someone else; and it lives in a page table
    the PMD still points at (free_pgtables() and khugepaged's retract_page_tables() free only
    a table whose PTEs are gone)."""
    for mm_id, mm in enumerate(w.mms.each()):
        for va, pte in mm.ptes.items():
            if not pte.mapped:  # present, or PROT_NONE: the kernel's pte_present()
                continue
            if mm.pgtable_pfn == NO_PFN:
                return Violation(
                    PTES_MAP_OWN_FRAMES,
                    f"mm {mm_name(mm_id)} PTE {va:#x} is present (pfn {pte.pfn}) in a page "
                    f"table that was freed: the PMD is clear",
                )
            f = w.frames[pte.pfn]
            if f.kind not in (ANON, FILE) or f.mm != mm_id or f.va != va:
                return Violation(
                    PTES_MAP_OWN_FRAMES,
                    f"mm {mm_name(mm_id)} PTE {va:#x} is present and maps pfn {pte.pfn}, "
                    f"which is {f.describe()}",
                )
    return None


def rmap_matches_ptes(w: World) -> Violation | None:
    """``page_mapped()`` (the rmap, ``Frame.mapped``) of a user page is true exactly when a
    PTE maps it (present or PROT_NONE; a migration entry does not count), except for a page a
    kernel path is working on (in its locals: a gather's pages and delayed rmaps, the page it
    locked or copies): page_remove_rmap() follows the PTE change in the same PTL section, or
    (mainline's delayed rmap, ``tlb_flush_rmaps()``; a COW fault's ``page_remove_rmap(old)``)
    after the flush that the path then owes. Mainline mm/rmap.c, page_remove_rmap() and
    folio_add_*_rmap(); 5.2 the same, without the delayed rmap."""
    busy: set[int] = set()
    for c in w.cpus.each():
        if c.path:
            lv = c.locals
            busy.update(lv.pfns, lv.rmaps)
            busy.add(lv.page)
    mapped = {pte.pfn for mm in w.mms.each() for pte in mm.ptes.values() if pte.mapped}
    for pfn, f in enumerate(w.frames):
        if f.kind not in (ANON, FILE) or pfn in busy or f.mapped == (pfn in mapped):
            continue
        if f.mapped:
            why = "page_mapped() is true but no PTE maps it: its page_remove_rmap() was lost"
        else:
            why = "a PTE maps it but page_mapped() is false: rmap walkers will not find it"
        return Violation(
            RMAP_MATCHES_PTES, f"pfn {pfn} ({f.describe()}): {why}, and no kernel path holds it"
        )
    return None


def tlb_flush_pending_balanced(w: World) -> Violation | None:
    """``mm->tlb_flush_pending`` counts the gathers of the mm that are open: each path's
    ``inc_tlb_flush_pending()`` (``tlb_gather_mmu()``) has its one
    ``dec_tlb_flush_pending()`` before the path returns (``Locals.pending``: it owes the dec).
    A lost dec makes mm_tlb_flush_nested() true forever; a doubled one hides a flush in
    flight from the checks that read the count (include/linux/mm_types.h, mainline and 5.2:
    inc_tlb_flush_pending(), dec_tlb_flush_pending(), mm_tlb_flush_pending())."""
    owed = [0] * len(w.mms)
    for c in w.cpus.each():
        if c.locals.pending:
            owed[c.locals.mm] += 1
    for mm_id, mm in enumerate(w.mms.each()):
        if mm.tlb_flush_pending != owed[mm_id]:
            return Violation(
                TLB_FLUSH_PENDING_BALANCED,
                f"mm {mm_name(mm_id)} tlb_flush_pending is {mm.tlb_flush_pending}, but "
                f"{owed[mm_id]} gather(s) of it are open",
            )
    return None


def tlb_entry_matches_its_pte(w: World) -> Violation | None:
    """A TLB entry filled from the PTE's current version (``TlbEntry.pte_seq`` equal to
    ``Pte.seq``) agrees with it: the PTE is present, maps the same page, and grants at least
    the entry's write permission and dirtiness. Every software change of a PTE bumps its seq
    (``set_pte_at()``, ``ptep_modify_prot_commit()``...), and the hardware only sets A and
    D, so an entry of the current version is what a walk would fill now. An entry whose page
    no longer belongs to the slot's mm at that address is stale by construction and left to
    the other properties (a broken variant may keep one)."""
    for cpu, c in enumerate(w.cpus.each()):
        for (asid, va), e in c.tlb.items():
            mm_id = c.ctxs[asid][0]
            pte = w.mms.peek(mm_id).ptes.get(va) if mm_id else None
            if pte is None or pte.seq != e.pte_seq:
                continue
            f = w.frames[e.pfn]
            if f.version != e.frame_version or f.mm != mm_id or f.va != va:
                continue
            if (
                not pte.present
                or pte.pfn != e.pfn
                or (e.writable and not pte.writable)
                or (e.dirty and not pte.dirty)
            ):
                return Violation(
                    TLB_ENTRY_MATCHES_ITS_PTE,
                    f"cpu{cpu} caches {va:#x} of mm {mm_name(mm_id)} as pfn {e.pfn} "
                    f"W={int(e.writable)} D={int(e.dirty)} from PTE seq {e.pte_seq}, but that PTE "
                    f"(seq {pte.seq}) is P={int(pte.present)} pfn {pte.pfn} W={int(pte.writable)} "
                    f"D={int(pte.dirty)}: a PTE change that kept its seq",
                )
    return None


PROPERTIES: Final[dict[str, Property]] = {
    p.name: p
    for p in (
        Property(
            NO_USE_AFTER_FREE,
            "no access (user, uaccess, NMI, IPI callback) goes through a TLB entry to a frame "
            "that has been freed or reused since the entry was filled",
        ),
        Property(
            NO_WALK_OF_FREED_PAGE_TABLE,
            "a page-table page is freed only when no CPU that can walk its mm caches a pointer "
            "to it, and no walk ever reads a freed one",
        ),
        Property(
            NO_WRITE_AFTER_WRITE_PROTECT,
            "once mprotect(PROT_READ)'s flush has returned, no write uses a writable entry",
        ),
        Property(
            NO_LOST_WRITE,
            "a file page written after writeback saved it is still dirty (PG_dirty or PTE D)",
            check=no_lost_write,
        ),
        Property(
            NMI_UACCESS_SAFETY,
            "an NMI uaccess that nmi_uaccess_okay() allows uses current->mm's page tables and "
            "no stale translation",
        ),
        Property(
            TLB_GEN_SOUNDNESS,
            "a CPU whose ASID slot claims tlb_gen k holds no entry that a flush at <= k retired",
            check=tlb_gen_soundness,
        ),
        Property(
            REQUEST_INTEGRITY,
            "a remote flush_tlb_func() acts on exactly the flush_tlb_info it was sent",
        ),
        Property(
            NO_DEADLOCK,
            "no CPU spins forever in csd_lock()/csd_lock_wait()",
            check=no_deadlock,
        ),
        Property(
            USER_NEVER_LAZY,
            "a CPU running a user task is never in lazy TLB mode",
            check=user_never_lazy,
        ),
        Property(
            UACCESS_IN_CURRENT_MM,
            "a kernel uaccess (syscall, IPI callback, NMI) happens only while loaded_mm is "
            "current->mm",
        ),
        Property(
            PTES_MAP_OWN_FRAMES,
            "a present PTE maps a page of its own mm and address, never a free or reused frame",
            check=ptes_map_own_frames,
        ),
        Property(
            RMAP_MATCHES_PTES,
            "page_mapped() of a user page no kernel path is working on is true exactly when "
            "a PTE maps it",
            check=rmap_matches_ptes,
        ),
        Property(
            TLB_FLUSH_PENDING_BALANCED,
            "mm->tlb_flush_pending counts the mm's open gathers: every inc has its one dec",
            check=tlb_flush_pending_balanced,
        ),
        Property(
            TLB_ENTRY_MATCHES_ITS_PTE,
            "a TLB entry of a PTE's current version maps what the PTE maps, with no more "
            "write permission or dirtiness",
            check=tlb_entry_matches_its_pte,
        ),
        Property(
            NO_STALE_ACCESS_AFTER_RETURN,
            "once madvise(MADV_DONTNEED) or munmap has returned, no access goes through a "
            "translation of the PTE it removed; once mprotect(PROT_READ) has returned, no "
            "write goes through a writable one (whoever changed the PTE)",
        ),
        Property(
            NO_WRITE_LOST_TO_COPY,
            "a page that a COW fault or a migration copies is not written after its copy was "
            "taken, before the PTE moves to the copy (the write would be lost)",
        ),
        Property(
            NO_LOST_SOFT_DIRTY,
            "once clear_refs (soft-dirty) has returned, every write to a page it cleaned "
            "leaves the PTE soft-dirty: none goes through a writable translation that "
            "skipped the fault (a stale entry, a PTE made writable without the bit)",
        ),
        Property(
            NO_STALE_ENTRY_AT_FREE,
            "strict: when a user page is freed, no running (non-lazy) CPU still caches a "
            "translation to it, so not even speculation can touch it",
            default=False,
        ),
    )
}

DEFAULT_PROPERTIES: Final = tuple(n for n, p in PROPERTIES.items() if p.default)
