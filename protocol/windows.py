"""Reachability windows ("sometimes" properties, next to the "always" ones in properties.py).

A property that holds says something only if the search reached the states where it could have
broken. Each window names such a state: a CPU still caches a translation that a PTE change has
retired while the flush is in flight; a flush csd still waits on its target after the initiator
returned; loaded_mm and CR3 disagree (the switch window an NMI can land in); a flush csd queued
behind another cross-call; a freed page-table page still in a paging-structure cache; and, in
the mm layer, two gathers of one mm open at once, a syscall that found nothing to change, a
page the rmap no longer finds still cached, a page table waiting for RCU; and, scoped to the
paths that open them (``Window.kinds``), a page being moved to a copy still cached elsewhere,
a PTE clear_refs cleaned still cached writable, a page mremap moved still cached at its old
address, and a page table khugepaged retracted still in a paging-structure cache; and, under
x86-TSO only (``Window.memory_model``), a store still in one CPU's store buffer while another
CPU runs kernel code. A search
counts the states it visits in each window, and a "held" is reported with them: a window never
reached means the search never looked where that property could break.

Each predicate reads the state only, like the state properties, and is cheap: it is asked of
every state the explorer visits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

from tlbfuzz.protocol.state import CSD_MANY, FILE, FLUSH_TLB_FUNC, PGTABLE, READ_USER_FUNC

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from tlbfuzz.protocol.world import World


@attrs.frozen
class Window:
    name: str
    summary: str
    reached: Callable[[World], bool]
    kinds: frozenset[str] = frozenset()
    """The budget kinds whose paths open this window; empty: any search can reach it. A
    search whose budgets give none of them leaves the window out of its report: it was not
    asked, which is not the same as never reached."""
    memory_model: str | None = None
    """The memory model the window needs (``"tso"``: store buffers); None: any. A search
    under another model leaves it out of its report, as for ``kinds``."""


def active_kinds(w: World) -> frozenset[str]:
    """The budget kinds some CPU of ``w`` may still start (its world's budgets)."""
    return frozenset(
        k.name for i, k in enumerate(w.kernel.kinds) if any(c.budget[i] for c in w.cpus.each())
    )


def windows_of(w: World) -> tuple[str, ...]:
    """The windows a search from ``w`` can be asked about: every general one, each one scoped
    to path kinds (``Window.kinds``) one of which ``w``'s budgets allow, and each one scoped to
    a memory model (``Window.memory_model``) if ``w``'s is that one."""
    active = active_kinds(w)
    model = w.config.memory_model
    return tuple(
        name
        for name, win in WINDOWS.items()
        if (not win.kinds or win.kinds & active) and win.memory_model in (None, model)
    )


def _flush_in_flight(w: World) -> bool:
    """Some CPU is inside a kernel path, or some flush csd is queued or being handled."""
    if any(c.path for c in w.cpus.each()):
        return True
    return any(csd.locked and csd.func == FLUSH_TLB_FUNC for csd in w.csds.values())


def stale_entry_during_flush(w: World) -> bool:
    """A CPU caches a translation that a PTE change has retired (the entry predates the PTE's
    current contents), while a flush is still in flight."""
    for c in w.cpus.each():
        for (asid, va), e in c.tlb.items():
            ctx_id = c.ctxs[asid][0] if 0 <= asid < len(c.ctxs) else 0
            if ctx_id <= 0:
                continue
            pte = w.mms.peek(ctx_id).ptes.get(va)
            if pte is not None and pte.seq > e.pte_seq and _flush_in_flight(w):
                return True
    return False


def flush_ipi_pending_after_return(w: World) -> bool:
    """A flush csd is still locked on its target while its sender has returned from the
    flush (the asynchronous window of the 2019 RFC)."""
    return any(
        key.kind == CSD_MANY
        and csd.locked
        and csd.func == FLUSH_TLB_FUNC
        and not w.cpus.peek(key.sender).path
        for key, csd in w.csds.items()
    )


def loaded_mm_cr3_disagree(w: World) -> bool:
    """``cpu_tlbstate.loaded_mm`` and CR3 name different mms (switch_mm_irqs_off() between
    its two writes): the window nmi_uaccess_okay() must refuse."""
    return any(c.own_loaded_mm() != c.cr3_mm for c in w.cpus.each())


def flush_csd_behind_cross_call(w: World) -> bool:
    """A flush csd waits behind another subsystem's cross-call on one CPU, queued or in the
    batch its IPI handler took (Peter Zijlstra's question in the review)."""
    for c in w.cpus.each():
        funcs = [w.csds[k].func for k in c.queue]
        if c.irq is not None:
            funcs = [it.func for it in c.irq] + funcs
        if READ_USER_FUNC in funcs and FLUSH_TLB_FUNC in funcs[funcs.index(READ_USER_FUNC) :]:
            return True
    return False


def freed_table_still_cached(w: World) -> bool:
    """A page-table page was freed while a CPU's paging-structure cache still points at it."""
    for c in w.cpus.each():
        for pwc in c.pwc.values():
            if w.frames[pwc.pfn].version != pwc.frame_version:
                return True
    return False


def nested_gathers(w: World) -> bool:
    """Two gathers of one mm are open at once (``tlb_flush_pending > 1``): the case
    ``mm_tlb_flush_nested()`` exists for."""
    return any(mm.tlb_flush_pending > 1 for mm in w.mms.each())


def syscall_found_nothing(w: World) -> bool:
    """A madvise, munmap, mprotect or UFFDIO_WRITEPROTECT is past its PTE changes without
    having recorded one (its PTEs were already changed by someone else) and has not
    returned."""
    for c in w.cpus.each():
        # pc 0 opens the gather, pc 1 changes the PTEs under the PTL (unless reclaim's batch
        # is flushed first: then they come after that flush)
        if c.path in ("madvise", "munmap", "mprotect", "uffd_wp") and c.pc > 1:
            lv = c.locals
            if not (lv.changed or lv.freed_tables or lv.fullmm or lv.batched_flush):
                return True
    return False


def unmapped_page_still_cached(w: World) -> bool:
    """A file page the rmap no longer finds (``page_mapped()`` is false) is still reachable
    through some CPU's TLB: the window writeback's page_mkclean() cannot see."""
    for c in w.cpus.each():
        for e in c.tlb.values():
            f = w.frames[e.pfn]
            if f.kind == FILE and not f.mapped and f.version == e.frame_version:
                return True
    return False


def page_in_move_still_cached(w: World) -> bool:
    """A page that a COW fault or a migration is moving to a new page (the path holds it,
    ``Path.allocates``) is still reachable through another CPU's TLB: a write there before
    the copy is taken is kept, after it is lost (no_write_lost_to_copy)."""
    paths = w.kernel.paths
    for cpu, c in enumerate(w.cpus.each()):
        if not (c.path and c.locals.pfns and paths[c.path].allocates):
            continue
        old = c.locals.pfns[0]
        version = w.frames[old].version
        for other, o in enumerate(w.cpus.each()):
            if other != cpu and any(
                e.pfn == old and e.frame_version == version for e in o.tlb.values()
            ):
                return True
    return False


def clean_pte_still_writable(w: World) -> bool:
    """A present PTE that is read-only and not soft-dirty (what clear_refs leaves) is still
    cached writable, from before, by some CPU: a write there sets no soft-dirty bit."""
    for c in w.cpus.each():
        for (asid, va), e in c.tlb.items():
            if not e.writable:
                continue
            ctx_id = c.ctxs[asid][0] if 0 <= asid < len(c.ctxs) else 0
            if ctx_id <= 0:
                continue
            pte = w.mms.peek(ctx_id).ptes.get(va)
            if (
                pte is not None
                and pte.present
                and not pte.writable
                and not pte.soft_dirty
                and pte.seq > e.pte_seq
            ):
                return True
    return False


def old_address_still_cached(w: World) -> bool:
    """A CPU caches a page of an mm at an address other than the one the page is now at
    (mremap moved it): one frame reachable at two addresses, until the old one is flushed."""
    for c in w.cpus.each():
        for (asid, va), e in c.tlb.items():
            f = w.frames[e.pfn]
            if f.version != e.frame_version or f.va == va:
                continue
            ctx_id = c.ctxs[asid][0] if 0 <= asid < len(c.ctxs) else 0
            if ctx_id > 0 and f.mm == ctx_id:
                return True
    return False


def retracted_table_still_cached(w: World) -> bool:
    """A page table no PMD points to any more (khugepaged retracted it) and not yet freed is
    still in the paging-structure cache of a CPU whose CR3 can walk its mm (running or lazy)."""
    for c in w.cpus.each():
        pwc = c.pwc.get(c.cr3_asid)
        if pwc is None or c.cr3_mm <= 0:
            continue
        f = w.frames[pwc.pfn]
        if (
            f.version == pwc.frame_version
            and f.kind == PGTABLE
            and w.mms.peek(f.mm).pgtable_pfn != pwc.pfn
        ):
            return True
    return False


def store_buffered_while_another_cpu_runs_kernel_code(w: World) -> bool:
    """A store waits in one CPU's store buffer (x86-TSO) while another CPU runs kernel code (a
    path or an IPI handler): the reordering every barrier of the lazy-TLB handshake is there
    to stop (the flusher reading ``is_lazy`` or ``loaded_mm`` while the switching CPU's store
    has not landed)."""
    cpus = list(w.cpus.each())
    buffered = [i for i, c in enumerate(cpus) if c.store_buffer]
    if not buffered:
        return False
    return any((c.path or c.irq is not None) and buffered != [j] for j, c in enumerate(cpus))


def table_awaiting_grace_period(w: World) -> bool:
    """A page-table page waits for an RCU grace period (``tlb_remove_table()``)."""
    return bool(w.rcu)


WINDOWS: Final[dict[str, Window]] = {
    win.name: win
    for win in (
        Window(
            "stale_entry_during_flush",
            "a CPU caches a translation a PTE change retired, while the flush is in flight",
            stale_entry_during_flush,
        ),
        Window(
            "flush_ipi_pending_after_return",
            "a flush csd is still locked on its target after the initiator returned",
            flush_ipi_pending_after_return,
        ),
        Window(
            "loaded_mm_cr3_disagree",
            "loaded_mm and CR3 name different mms (where an NMI must not touch user memory)",
            loaded_mm_cr3_disagree,
        ),
        Window(
            "flush_csd_behind_cross_call",
            "a flush csd waits behind another subsystem's cross-call on one CPU",
            flush_csd_behind_cross_call,
        ),
        Window(
            "freed_table_still_cached",
            "a freed page-table page is still in a CPU's paging-structure cache",
            freed_table_still_cached,
        ),
        Window(
            "nested_gathers",
            "two gathers of one mm are open at once (tlb_flush_pending > 1)",
            nested_gathers,
        ),
        Window(
            "syscall_found_nothing",
            "a madvise, munmap or mprotect found its PTEs already changed and has not returned",
            syscall_found_nothing,
        ),
        Window(
            "unmapped_page_still_cached",
            "a file page the rmap no longer finds is still cached in a TLB",
            unmapped_page_still_cached,
        ),
        Window(
            "table_awaiting_grace_period",
            "a page-table page waits for an RCU grace period before it is freed",
            table_awaiting_grace_period,
        ),
        Window(
            "store_buffered_during_kernel_path",
            "a store waits in one CPU's store buffer while another CPU runs kernel code",
            store_buffered_while_another_cpu_runs_kernel_code,
            memory_model="tso",
        ),
        Window(
            "page_in_move_still_cached",
            "a page a COW fault or a migration is moving to a copy is still cached elsewhere",
            page_in_move_still_cached,
            frozenset({"migrate", "wp_fault"}),
        ),
        Window(
            "clean_pte_still_writable",
            "a PTE clear_refs left read-only and clean is still cached writable by a CPU",
            clean_pte_still_writable,
            frozenset({"clear_refs"}),
        ),
        Window(
            "old_address_still_cached",
            "a page mremap moved is still cached at its old address by a CPU",
            old_address_still_cached,
            frozenset({"mremap"}),
        ),
        Window(
            "retracted_table_still_cached",
            "a page table khugepaged took out of its mm is still cached by a CPU that can walk it",
            retracted_table_still_cached,
            frozenset({"collapse"}),
        ),
    )
}
"""Every window, by name."""


def reached(w: World, names: Iterable[str] | None = None) -> list[str]:
    """The windows ``w`` is in, of ``names`` (default: all)."""
    if names is None:
        return [name for name, win in WINDOWS.items() if win.reached(w)]
    return [name for name in names if WINDOWS[name].reached(w)]


__all__ = ["WINDOWS", "Window", "active_kinds", "reached", "windows_of"]
