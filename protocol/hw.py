"""The processor: TLB, paging-structure cache, page walks and accesses (Intel SDM Vol. 3A ch. 4).

What the hardware may do, and the model lets it do at any step:

- fill the TLB (and the paging-structure cache) speculatively from any present PTE of the mm
  in CR3, in any mode: user, kernel, inside an IRQ handler, while lazy (SDM 4.10.2.3);
- evict any TLB or paging-structure-cache entry ("may invalidate any TLB entry at any time");
- read through an existing entry without walking (a TLB hit);
- write through a cached entry with D=1 without touching the PTE; a write through a cached entry
  with D=0 walks "just like a TLB miss" and faults if the PTE is no longer present or writable
  (Dave Hansen, 4e0ed5a5-0e5e-3481-e646-3f032f17ac60@intel.com);
- set A on every walk that caches an entry and D on a write, never on INVLPG or eviction.

Under ``Config.memory_model == "tso"`` each CPU also has an x86-TSO store buffer for the per-CPU
variables of the handshakes (the end of this module); under SC (the default) it stays empty.

Left out: global pages, PTI's user PCIDs, large pages, memory types.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlbfuzz.protocol import tso
from tlbfuzz.protocol.properties import (
    NMI_UACCESS_SAFETY,
    NO_LOST_SOFT_DIRTY,
    NO_STALE_ACCESS_AFTER_RETURN,
    NO_USE_AFTER_FREE,
    NO_WALK_OF_FREED_PAGE_TABLE,
    NO_WRITE_AFTER_WRITE_PROTECT,
    UACCESS_IN_CURRENT_MM,
)
from tlbfuzz.protocol.state import (
    COPY_MARK_MAX,
    FILE,
    INIT_MM,
    NO_PFN,
    REMOVED,
    Cpu,
    Frame,
    Mm,
    Pte,
    PwcEntry,
    TlbEntry,
    mm_name,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from tlbfuzz.protocol.world import World


def walk(w: World, cpu: int, va: int, write: bool, who: str) -> TlbEntry | None:
    """A page walk for ``va`` in the mm and PCID of CR3; fills the TLB and paging-structure
    cache on success, sets A (and D for a write). Returns None on a would-be fault.

    A walk that starts from a cached PMD entry whose page-table page has been freed reads
    whatever that page holds now: no_walk_of_freed_page_table, and no translation results.
    """
    c = w.cpus.peek(cpu)  # taken (w.cpus[cpu]) only once the walk fills
    mm_id = c.cr3_mm
    if mm_id <= INIT_MM:
        return None
    mm = w.mms.peek(mm_id)  # taken only to set A/D
    asid = c.cr3_asid
    pwc = c.pwc.get(asid)
    if pwc is not None:
        frame = w.frames[pwc.pfn]
        if frame.version != pwc.frame_version:
            w.report(
                NO_WALK_OF_FREED_PAGE_TABLE,
                f"cpu{cpu} {who} walks {va:#x} of mm {mm_name(mm_id)} through its "
                f"paging-structure cache: PMD -> pfn {pwc.pfn} v{pwc.frame_version}, but that "
                f"page-table page is now {frame.describe()}",
            )
            return None
    else:
        if mm.pgtable_pfn == NO_PFN:
            return None
        pt = w.frames[mm.pgtable_pfn]
        c = w.cpus[cpu]
        c.pwc[asid] = PwcEntry(mm_id, mm.pgtable_pfn, pt.version)
    pte = mm.ptes.get(va)
    if pte is None or not pte.present:
        return None
    if write and not pte.writable:
        return None
    if not pte.accessed or (write and not pte.dirty):
        pte = pte._replace(accessed=True, dirty=pte.dirty or write)
        w.mms[mm_id].ptes[va] = pte
    entry = TlbEntry(pte.pfn, w.frames[pte.pfn].version, pte.writable, pte.dirty, pte.seq)
    w.cpus[cpu].tlb[(asid, va)] = entry
    return entry


def tlb_fill(w: World, cpu: int, va: int) -> None:
    """A speculative fill (or prefetch): a read walk whose result nobody uses yet."""
    walk(w, cpu, va, write=False, who="speculative walk")


def tlb_fill_enabled(w: World, c: Cpu, va: int) -> bool:
    if c.cr3_mm <= INIT_MM or (c.cr3_asid, va) in c.tlb:
        return False
    pwc = c.pwc.get(c.cr3_asid)
    if pwc is not None and w.frames[pwc.pfn].version != pwc.frame_version:
        return True  # the walk reads a freed page-table page: worth exploring
    mm = w.mms.peek(c.cr3_mm)
    if mm.pgtable_pfn == NO_PFN:
        return False
    pte = mm.ptes.get(va)
    return pte is not None and pte.present


def use_entry(w: World, cpu: int, va: int, e: TlbEntry, write: bool, who: str) -> None:
    """An architectural access through translation ``e``."""
    c = w.cpus.peek(cpu)
    retired = w.mms.peek(c.cr3_mm).retired.get(va)
    if retired is not None and e.pte_seq < retired[0] and (write or retired[1] == REMOVED):
        what = "removed" if retired[1] == REMOVED else "write-protected"
        w.report(
            NO_STALE_ACCESS_AFTER_RETURN,
            f"cpu{cpu} {who} {'writes' if write else 'reads'} {va:#x} of mm "
            f"{mm_name(c.cr3_mm)} through a translation (PTE seq {e.pte_seq}) that a returned "
            f"syscall {what} (PTE seq {retired[0]})",
        )
    frame = w.frames[e.pfn]
    if frame.version != e.frame_version:
        w.report(
            NO_USE_AFTER_FREE,
            f"cpu{cpu} {who} {'writes' if write else 'reads'} {va:#x} through a stale TLB entry "
            f"-> pfn {e.pfn} v{e.frame_version}, but pfn {e.pfn} is now {frame.describe()} "
            f"(cpu{cpu} loaded_mm={mm_name(c.loaded_mm)} "
            f"async_func_in_progress={c.async_func_in_progress or 'NULL'})",
        )
        if who.startswith("NMI"):
            w.report(
                NMI_UACCESS_SAFETY,
                f"cpu{cpu} copy_from_user_nmi({va:#x}) passed nmi_uaccess_okay() but used a "
                f"stale TLB entry -> pfn {e.pfn} v{e.frame_version}; pfn {e.pfn} is now "
                f"{frame.describe()}",
            )
        return
    if write:
        _written(w, cpu, va, e, frame, who)


def _written(w: World, cpu: int, va: int, e: TlbEntry, frame: Frame, who: str) -> None:
    """What a store through ``e`` changes besides memory: a file page's contents now differ
    from disk; a page already copied (COW, migration) has a write its copy lacks; and a write
    that a returned clear_refs should have made fault leaves its PTE without soft-dirty."""
    if frame.copied and frame.copied < COPY_MARK_MAX:
        frame = frame._replace(copied=frame.copied + 1)
        w.frames[e.pfn] = frame
    if frame.kind == FILE:
        w.frames[e.pfn] = frame._replace(modified=True)
    mm_id = w.cpus.peek(cpu).cr3_mm
    mm = w.mms.peek(mm_id)
    if mm.soft_dirty_clean:
        clean = mm.soft_dirty_clean.get(va)
        pte = mm.ptes.get(va)
        if (
            clean is not None
            and not (pte is not None and pte.soft_dirty)
            and not _clear_refs_in_flight(w, mm_id, va)
        ):
            how = (
                f"through a cached writable entry (PTE seq {e.pte_seq}) from before it"
                if e.pte_seq < clean
                else f"through a writable PTE (seq {e.pte_seq}) that is not soft-dirty"
            )
            w.report(
                NO_LOST_SOFT_DIRTY,
                f"cpu{cpu} {who} writes {va:#x} of mm {mm_name(mm_id)} after clear_refs "
                f"returned (it cleaned PTE seq {clean}), {how}: no fault, "
                f"so the PTE stays soft-dirty=0 and /proc/pid/pagemap never shows the write",
            )


def _clear_refs_in_flight(w: World, mm_id: int, va: int) -> bool:
    """Another clear_refs of the mm has cleaned ``va`` and not returned (its locals still
    list what it cleaned, ``Locals.wrote``): a write now may count as one before it."""
    return any(
        c.locals.mm == mm_id and any(v == va for v, _ in c.locals.wrote) for c in w.cpus.each()
    )


def access(w: World, cpu: int, va: int, write: bool, who: str) -> str:
    """A load or store to user address ``va`` in CR3's address space, by user code or by a
    kernel uaccess. Returns what happened, for the trace."""
    c = w.cpus.peek(cpu)  # a hit changes nothing of the CPU
    if who != "user" and c.own_loaded_mm() != c.task:
        w.report(
            UACCESS_IN_CURRENT_MM,
            f"cpu{cpu} {who} reads {va:#x} while loaded_mm={mm_name(c.loaded_mm)} but "
            f"current->mm is {mm_name(c.task) if c.task else 'NULL (kthread)'}",
        )
    if c.cr3_mm <= INIT_MM:
        return "fault (no user mapping in CR3)"
    key = (c.cr3_asid, va)
    e = c.tlb.get(key)
    if e is not None:
        if not write:
            use_entry(w, cpu, va, e, write, who)
            return f"TLB hit pfn {e.pfn}"
        if e.writable and e.dirty:
            mm = w.mms.peek(c.cr3_mm)
            if va in mm.write_protected:
                w.report(
                    NO_WRITE_AFTER_WRITE_PROTECT,
                    f"cpu{cpu} {who} writes {va:#x} of mm {mm_name(c.cr3_mm)} through a cached "
                    f"writable entry (pfn {e.pfn}) after mprotect(PROT_READ)'s flush returned",
                )
            use_entry(w, cpu, va, e, write, who)
            return f"TLB hit W=1 D=1 pfn {e.pfn}: no walk"
        # W=0: #PF, which invalidates the entry; W=1 D=0: walk like a TLB miss.
        del w.cpus[cpu].tlb[key]
    e = walk(w, cpu, va, write, who)
    if e is not None:
        use_entry(w, cpu, va, e, write, who)
        return f"walk, fill pfn {e.pfn}{' D=1' if write else ''}"
    if write and who == "user" and do_wp_page(w, cpu, va):  # retried after the fix-up
        e = walk(w, cpu, va, write, who)
        assert e is not None
        use_entry(w, cpu, va, e, write, who)
        return f"#PF wp: page made writable and dirty, fill pfn {e.pfn}"
    return "fault"


def write_protected_pte(mm: Mm, va: int) -> Pte | None:
    """The PTE of ``va`` if a write to it enters do_wp_page(): present and read-only in a
    writable vma (else the write succeeds, or is a SIGSEGV or another fault), and not
    userfaultfd write-protected: then ``if (userfaultfd_pte_wp(vma, ptep_get(vmf->pte)))
    return handle_userfault(vmf, VM_UFFD_WP);`` and the write waits for the monitor."""
    pte = mm.ptes.get(va)
    if pte is None or not pte.present or pte.writable or not mm.vma_writable.get(va, False):
        return None
    return None if pte.uffd_wp else pte


def do_wp_page(w: World, cpu: int, va: int) -> bool:
    """A write fault on a present read-only PTE of a writable mapping that reuses the page: a
    shared file page is marked dirty (``wp_page_shared``/``page_mkwrite``), an anonymous page
    this mm alone maps is reused (``wp_page_reuse()``); the PTE becomes writable, dirty and
    soft-dirty, under the PTL. (The fault that copies the page is a path of its own,
    ``tlbfuzz.protocol.memory``.)
    A permission upgrade needs no flush. Returns False for a SIGSEGV, or when the fault would
    sleep (mmap_lock held for write, the page locked) or spin (the PTL held): the write is
    retried later."""
    from tlbfuzz.protocol.mm import mmap_lock_writer, page_locked, ptl_held

    c = w.cpus[cpu]
    if mmap_lock_writer(w, c.cr3_mm) >= 0 or ptl_held(w, c.cr3_mm, cpu):
        return False
    mm = w.mms[c.cr3_mm]
    pte = write_protected_pte(mm, va)
    if pte is None:
        return False
    if page_locked(w, pte.pfn):
        return False  # wp_page_shared() sleeps in lock_page(): the write is retried later
    frame = w.frames[pte.pfn]
    if frame.kind == FILE:
        w.frames[pte.pfn] = frame._replace(page_dirty=True)
    # wp_page_reuse() / wp_page_shared(): maybe_mkwrite(pte_mkdirty(entry)), and x86
    # pte_mkdirty() sets _PAGE_SOFT_DIRTY with _PAGE_DIRTY
    mm.ptes[va] = pte._replace(
        writable=True, dirty=True, accessed=True, soft_dirty=True, seq=pte.seq + 1
    )
    return True


def flush_tlb_one_user(c: Cpu, va: int) -> None:
    """INVLPG: the entry for ``va`` in the current PCID and all paging-structure-cache entries
    of the current PCID (SDM 4.10.4.1)."""
    c.tlb.pop((c.cr3_asid, va), None)
    c.pwc.pop(c.cr3_asid, None)


def flush_tlb_local(c: Cpu) -> None:
    """MOV to CR3 without NOFLUSH: every entry of the current PCID, and its paging-structure
    caches."""
    asid = c.cr3_asid
    for key in [k for k in c.tlb if k[0] == asid]:
        del c.tlb[key]
    c.pwc.pop(asid, None)


# --- x86-TSO: the store buffer of the per-CPU variables the handshakes use ------------------
#
# Under ``Config.memory_model == "tso"`` a plain store (``this_cpu_write()``, ``WRITE_ONCE()``)
# of one of these per-CPU variables enters the CPU's FIFO store buffer; the CPU itself reads
# its newest buffered value (``Cpu.own``), every other CPU reads memory (the ``Cpu`` field).
# A drain (``store_buffer_drain``, an action of its own) moves the oldest store to memory; a
# locked instruction (``atomic64_inc_return()``, ``cpumask_set_cpu()``: ``lock`` prefixed), a
# serialising one (a CR3 write) or ``smp_mb()`` (``mfence`` or a locked add) drains the whole
# buffer first (``fence``). The x86-TSO machine (Owens, Sarkar, Sewell 2009) lets such an
# instruction run only on an empty buffer, the scheduler draining first; draining at the
# instruction reaches the same executions, because every drain is also an action the
# scheduler may take earlier. Under SC the buffer is always empty and each store is a write.
#
# Buffered:
# - ``is_lazy`` and ``loaded_mm`` (each written by a CPU for itself with this_cpu_write() and
#   read remotely by the flusher: 5.2's lazy check, today's should_flush_tlb());
# - a csd's ``CSD_FLAG_LOCK`` cleared by ``csd_unlock()``: ``smp_store_release(&csd->node.u_flags,
#   0)``, a plain MOV on x86 (release costs only a compiler barrier), so the waiting sender
#   sees it when the receiver's buffer drains (location ``("csd", CsdKey)``);
# - ``mm->context.tlb_gen`` only where a variant makes its increment a plain one
#   (``Variant.inc_mm_tlb_gen_is_locked``; both kernels use atomic64_inc_return(), lock xadd).
# Never buffered, because every store to them is a locked RMW: ``mm_cpumask`` bits
# (cpumask_set_cpu/clear_cpu), ``tlb_flush_pending`` (atomic_inc/dec), the call_single_queue
# heads (llist_add() is a cmpxchg loop, llist_del_all() an xchg: both drain the buffer, see
# smp.py), and csd_lock()'s store (it is followed by llist_add() in the same step).
# PTEs are not buffered, a choice: every PTE store that removes or downgrades a translation is
# ``ptep_get_and_clear()`` (xchg on SMP, locked) or a store under the PTL followed by a locked
# ``inc_mm_tlb_gen()`` before any flush is sent; a plain ``set_pte_at()`` under the PTL can be
# read by a PTL holder only after the unlock store behind it in the same FIFO buffer has
# drained, so only lockless readers (the hardware walker, GUP-fast) could see it late, and they
# would see the cleared entry a moment longer: no translation, a subset of what SC allows.
# The hardware walker reads memory, not its own CPU's buffer (SDM 3A 4.10.2.3 promises
# nothing more; not reading it gives the walker the most freedom).

_WRITE: dict[str, Callable[[Cpu, int], None]] = {  # the per-CPU variables a store may buffer
    "is_lazy": lambda c, v: setattr(c, "is_lazy", bool(v)),
    "loaded_mm": lambda c, v: setattr(c, "loaded_mm", v),
}


def _memory(w: World, cpu: int, loc: Hashable) -> int:
    """What memory holds at ``loc`` (what every other CPU reads)."""
    if isinstance(loc, str):
        return int(getattr(w.cpus.peek(cpu), loc))
    assert isinstance(loc, tuple)
    kind, key = loc
    if kind == "tlb_gen":
        return int(w.mms.peek(key).tlb_gen)
    return int(w.csds[key].locked)


def _write(w: World, cpu: int, loc: Hashable, value: int) -> None:
    """A store reaches memory."""
    if isinstance(loc, str):
        _WRITE[loc](w.cpus[cpu], value)
        return
    assert isinstance(loc, tuple)
    kind, key = loc
    if kind == "tlb_gen":
        w.mms[key].tlb_gen = value
    else:
        w.csds[key] = w.csds[key]._replace(locked=bool(value))


def plain_store(w: World, cpu: int, loc: Hashable, value: int) -> None:
    """A plain store (``this_cpu_write()``, ``WRITE_ONCE()``, ``smp_store_release()``) of
    ``loc``: a per-CPU variable's name, ``("tlb_gen", mm)`` or ``("csd", CsdKey)``. Into the
    store buffer (TSO; a full buffer first drains its oldest store), or into memory (SC). The
    buffer is ``protocol.tso``'s, the machine the litmus tests check (one CPU's buffer of
    ``tso.Buffers``)."""
    c = w.cpus[cpu]
    if w.config.memory_model != "tso":
        _write(w, cpu, loc, value)
        return
    own = c.own(loc)
    if (_memory(w, cpu, loc) if own is None else own) == value:
        # The value this CPU already reads: in memory, or on its way there in FIFO order.
        # Buffering it again changes no read of any CPU, only fills the bounded buffer, which
        # would force drains the hardware does not need (the model stores is_lazy = false in
        # both orders' steps, and loaded_mm = LOADED_MM_SWITCHING twice in today's order).
        return
    bound = w.config.store_buffer
    if not tso.can_store((c.store_buffer,), 0, bound):
        store_buffer_drain(w, cpu)
    (c.store_buffer,) = tso.store((c.store_buffer,), 0, loc, value, bound)


def read_tlb_gen(w: World, cpu: int, mm_id: int) -> int:
    """``atomic64_read(&mm->context.tlb_gen)`` on ``cpu``: its own buffered store (only a
    variant with a plain increment buffers one), else memory."""
    c = w.cpus.peek(cpu)
    if c.store_buffer:
        own = c.own(("tlb_gen", mm_id))
        if own is not None:
            return own
    return w.mms.peek(mm_id).tlb_gen


def store_buffer_drain(w: World, cpu: int) -> None:
    """The oldest store of ``cpu``'s buffer reaches memory: other CPUs see it from now on."""
    c = w.cpus[cpu]
    (c.store_buffer,), oldest = tso.drain_oldest((c.store_buffer,), 0)
    _write(w, cpu, oldest.loc, oldest.value)


def fence(w: World, cpu: int) -> None:
    """A locked or serialising instruction, or ``smp_mb()``: the whole buffer drains first."""
    while w.cpus.peek(cpu).store_buffer:
        store_buffer_drain(w, cpu)
