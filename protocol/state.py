"""The model's state: explicit data that mirrors the kernel structures it abstracts.

Hot, frequently replaced records (``Pte``, ``TlbEntry``, ``Frame``, ``Csd``...) are
``NamedTuple``s: they are immutable, hashable and about twice as cheap to build as frozen attrs
classes (``bench/bench_model.py`` is what decided it). Containers that change in place (``Cpu``,
``Mm``, and ``World``) are slotted ``attrs`` classes whose ``copy()`` and ``snapshot()`` are
derived from their fields (``Snapshotted``, ``derive``): every field is in the snapshot unless it
is declared not to be state, because a field left out would make the explorer's visited set
unsound (``tests/test_state.py``).

Identifiers are plain ints, as in the kernel: CPU numbers, mm ids (``1`` is mm A, ``2`` is mm B),
ASID slots, page frame numbers (pfn) and virtual addresses (page aligned, ``0x1000`` upwards).
"""

from __future__ import annotations

import collections
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Final,
    NamedTuple,
    Self,
    SupportsIndex,
    TypeVar,
    overload,
)

import attrs

from tlbfuzz.protocol.tso import Store, newest

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence

# --- sentinels (kernel names) -------------------------------------------------------------
INIT_MM: Final = 0
"""``&init_mm``: the kernel's own page tables; no user address is mapped through it."""
LOADED_MM_SWITCHING: Final = -1
"""``cpu_tlbstate.loaded_mm`` while ``switch_mm_irqs_off()`` is changing CR3."""
KTHREAD: Final = 0
"""``current->mm == NULL``: a kernel thread (it borrows the previous mm lazily)."""
TLB_FLUSH_ALL: Final = -1
"""``flush_tlb_info.end`` for a full flush."""
NO_PFN: Final = -1

PAGE_SIZE: Final = 0x1000

MM_NAMES: Final = {INIT_MM: "init_mm", LOADED_MM_SWITCHING: "LOADED_MM_SWITCHING"}


def mm_name(mm: int) -> str:
    """``1`` -> ``A``, ``2`` -> ``B``; sentinels by their kernel names."""
    return MM_NAMES.get(mm) or chr(ord("A") + mm - 1)


# --- frame ownership ----------------------------------------------------------------------
FREE: Final = 0
ANON: Final = 1  # an anonymous user page of (mm, va): freed when unmapped
FILE: Final = 2  # a page-cache page mapped at (mm, va): survives unmap, written back
PGTABLE: Final = 3  # the page-table (PTE) page of mm, pointed to by its PMD entry
DEVICE: Final = 4  # reassigned to a device (memory hotplug): Jann Horn's #MC case
REUSED: Final = 5  # reallocated to another mm

FRAME_KINDS: Final = {
    FREE: "free",
    ANON: "anon",
    FILE: "file",
    PGTABLE: "pgtable",
    DEVICE: "device",
    REUSED: "reused",
}


class Frame(NamedTuple):
    """A physical page. ``version`` is bumped on every free and every reallocation."""

    kind: int
    mm: int
    va: int
    version: int
    modified: bool = False
    """Written since writeback last saved it (file pages): memory differs from disk."""
    page_dirty: bool = False
    """``PG_dirty`` of the page-cache page (file pages)."""
    mapped: bool = False
    """The rmap: ``page_mapped()``, some PTE maps this page (its one (mm, va) here). Cleared by
    ``page_remove_rmap()`` when a zap drops the mapping (5.2: at once; mainline: after the
    flush for a dirty file page, ``tlb_flush_rmaps()``)."""
    copied: int = 0
    """Ghost state for no_write_lost_to_copy: 0 while no copy of this page is taken; from the
    first copy (a COW fault, a migration) on, 1 plus the writes that landed here since,
    counted up to ``COPY_MARK_MAX``. Each copier remembers the value at its copy
    (``Locals.copy_mark``): a higher one when it maps the copy is a write the copy lacks."""

    def describe(self) -> str:
        where = f" of mm {mm_name(self.mm)}" if self.kind in (ANON, FILE, PGTABLE, REUSED) else ""
        at = f" at {self.va:#x}" if self.kind in (ANON, FILE) else ""
        return f"{FRAME_KINDS[self.kind]}{where}{at} v{self.version}"


# Frame.copied
COPIED: Final = 1
"""The first copy of a page is taken (no write since)."""
COPY_MARK_MAX: Final = 3
"""Writes after a copy are counted up to here, which keeps the state space finite and tells
every copier apart for up to two copies of one page in flight (their marks are at most 2)."""


class Pte(NamedTuple):
    """A page-table entry. ``seq`` counts software changes (not the hardware's A/D updates)."""

    present: bool
    writable: bool
    accessed: bool
    dirty: bool
    pfn: int
    seq: int
    protnone: bool = False
    """x86 ``_PAGE_PROTNONE`` (NUMA hinting): not present to the hardware, but the kernel's
    ``pte_present()`` is true and ``pfn`` still names the page."""
    soft_dirty: bool = False
    """x86 ``_PAGE_SOFT_DIRTY`` (``_PAGE_BIT_SOFTW3``): a software bit the hardware never
    sets; ``pte_mkdirty()`` sets it with D on a write fault, clear_refs clears it."""
    uffd_wp: bool = False
    """x86 ``_PAGE_UFFD_WP`` (or the swap entry's ``_PAGE_SWP_UFFD_WP``): userfaultfd
    write-protected; a write fault goes to the monitor (``handle_userfault()``)."""
    migration: bool = False
    """A migration entry (a non-present swap entry, ``is_migration_entry()``): ``pfn`` names
    the page being migrated, ``writable`` says whether the entry is a writable one and
    ``dirty`` carries the old PTE's D (``make_writable_migration_entry()``...)."""

    @property
    def mapped(self) -> bool:
        """The kernel's ``pte_present()``: present, or PROT_NONE."""
        return self.present or self.protnone


class TlbEntry(NamedTuple):
    """What the TLB caches for one (ASID, va): SDM 4.10.2.2 (frame, R/W, dirty)."""

    pfn: int
    frame_version: int
    writable: bool
    dirty: bool
    pte_seq: int


class PwcEntry(NamedTuple):
    """A paging-structure-cache entry: the PMD entry pointing at mm's page-table page."""

    mm: int
    pfn: int
    frame_version: int


@attrs.frozen
class FlushTlbInfo:
    """``struct flush_tlb_info`` (arch/x86/include/asm/tlbflush.h)."""

    mm: int
    start: int
    end: int  # exclusive; TLB_FLUSH_ALL for a full flush
    new_tlb_gen: int
    freed_tables: bool
    initiating_cpu: int

    def describe(self) -> str:
        rng = "ALL" if self.end == TLB_FLUSH_ALL else f"{self.start:#x}-{self.end:#x}"
        ft = " freed_tables" if self.freed_tables else ""
        return f"mm={mm_name(self.mm)} {rng} new_tlb_gen={self.new_tlb_gen}{ft}"


# what a returned syscall promised about a va (Mm.retired)
REMOVED: Final = 1  # madvise(MADV_DONTNEED), munmap: no translation older than this remains
WRPROTECTED: Final = 2  # mprotect(PROT_READ): no writable translation older than this remains


# csd functions
FLUSH_TLB_FUNC: Final = "flush_tlb_func"
READ_USER_FUNC: Final = "read_user_func"
"""The review's "other smp_call_function IPI that is doing user-access" (Peter's P-c)."""

# csd kinds: which per-CPU csd a sender uses (cfd_data for many, csd_data for single)
CSD_MANY: Final = 0
CSD_SINGLE: Final = 1


class CsdKey(NamedTuple):
    sender: int
    target: int
    kind: int


class Csd(NamedTuple):
    """``struct __call_single_data`` as queued on a target's ``call_single_queue``.

    ``info`` is the inline copy (RFC patch 10) or ``None`` when only a pointer to the sender's
    per-CPU ``flush_tlb_info`` is passed. ``asked`` is ghost state, not kernel state: the request
    as the sender made it, so request_integrity can compare it with what the receiver used.
    """

    locked: bool
    func: str
    sync: bool
    asked: FlushTlbInfo | None = None
    info: FlushTlbInfo | None = None
    va: int = 0


class IrqItem(NamedTuple):
    """One csd taken off the queue by ``flush_smp_call_function_queue()``."""

    key: CsdKey
    func: str
    sync: bool
    asked: FlushTlbInfo | None
    info: FlushTlbInfo | None  # the inline copy, taken to the handler's stack at dequeue
    va: int
    unlocked: bool


class Locals(NamedTuple):
    """The locals of the kernel path a CPU is executing (its "stack frame")."""

    mm: int = 0
    va: int = 0
    end: int = 0
    freed_tables: bool = False
    targets: int = 0  # cpumask of CPUs the flush was sent to
    sync: bool = True
    pfns: tuple[int, ...] = ()
    next_task: int = 0
    next_tlb_gen: int = 0
    new_asid: int = 0
    need_flush: bool = False
    target: int = -1  # smp_call_function_single()'s target CPU; -1: none
    # struct mmu_gather (include/asm-generic/tlb.h), and the locks the path holds:
    cleared: bool = False  # the gather recorded a PTE change (cleared_ptes; 5.2: tlb->end != 0)
    changed: bool = False  # the path changed a PTE (kept after a forced flush resets the gather)
    pending: bool = False  # this path's inc_tlb_flush_pending() still owes its dec
    fullmm: bool = False  # tlb->fullmm: flush everything (a nested flush forces it)
    force_flush: bool = False  # zap_pte_range()'s force_flush: flush before the PTL is dropped
    tables: tuple[int, ...] = ()  # page-table pages batched by tlb_remove_table()
    rmaps: tuple[int, ...] = ()  # dirty file pages whose rmap waits for the flush (delay_rmap)
    ptl: bool = False  # holds the page-table lock of mm's PTE table
    mmap_lock: int = 0  # holds mm's mmap_lock: 0 no, 1 for read, 2 for write
    # a software page walker (GUP-fast): the PMD it read, until it has read the PTE
    table: int = NO_PFN  # the page-table page the PMD pointed at
    table_version: int = 0  # that frame's version when the PMD was read
    # reclaim's batched flush (mm/rmap.c, current->tlb_ubc), and flush_tlb_batched_pending()
    ubc: int = 0  # tlb_ubc.arch.cpumask: the CPUs the deferred flush must reach
    ubc_gen: int = 0  # the tlb_gen arch_tlbbatch_add_mm() bumped to (the flush's new_tlb_gen)
    batched_flush: bool = False  # flush_tlb_batched_pending() found a batch: flush_tlb_mm()
    prot_numa: bool = False  # change_protection(..., MM_CP_PROT_NUMA): NUMA hinting
    orig_seq: int = -1  # a fault's ``vmf->orig_pte``: the PTE (its seq) it found; -1: none
    copy_mark: int = 0  # the page's Frame.copied when this path took its copy
    wrote: tuple[tuple[int, int], ...] = ()  # (va, PTE seq) of the PTEs clear_refs cleaned
    new_va: int = 0  # mremap's new address (the old one is ``va``)
    page: int = NO_PFN  # the page whose lock the path holds (Path.locks_page)
    uffd_wp: bool = False  # change_protection(..., MM_CP_UFFD_WP): userfaultfd write-protect


def for_each_cpu(mask: int) -> list[int]:
    out = []
    cpu = 0
    while mask:
        if mask & 1:
            out.append(cpu)
        mask >>= 1
        cpu += 1
    return out


def cpumask_str(mask: int) -> str:
    return "{" + ",".join(f"cpu{c}" for c in for_each_cpu(mask)) + "}"


# --- records that change in place: copy() and snapshot() derived from their fields -----------


def _items(d: dict[Any, Any]) -> tuple[tuple[Any, Any], ...]:
    if len(d) < 2:  # most are: a sort would only cost the call
        return tuple(d.items())
    return tuple(sorted(d.items()))


def _perm_mask(mask: int, perm: Sequence[int]) -> int:
    out = 0
    for cpu, new in enumerate(perm):
        if mask >> cpu & 1:
            out |= 1 << new
    return out


def _perm_info(info: FlushTlbInfo | None, perm: Sequence[int]) -> FlushTlbInfo | None:
    if info is None:
        return None
    return attrs.evolve(info, initiating_cpu=perm[info.initiating_cpu])


def _perm_key(key: CsdKey, perm: Sequence[int]) -> CsdKey:
    return key._replace(sender=perm[key.sender], target=perm[key.target])


def _perm_queue(queue: tuple[CsdKey, ...], perm: Sequence[int]) -> tuple[CsdKey, ...]:
    return tuple(_perm_key(k, perm) for k in queue)


def _perm_locals(lv: Locals, perm: Sequence[int]) -> Locals:
    target = perm[lv.target] if lv.target >= 0 else -1
    return lv._replace(
        targets=_perm_mask(lv.targets, perm), target=target, ubc=_perm_mask(lv.ubc, perm)
    )


def _perm_irq(irq: tuple[IrqItem, ...] | None, perm: Sequence[int]) -> tuple[IrqItem, ...] | None:
    if irq is None:
        return None
    return tuple(
        it._replace(
            key=_perm_key(it.key, perm),
            asked=_perm_info(it.asked, perm),
            info=_perm_info(it.info, perm),
        )
        for it in irq
    )


def _perm_buffer(buffer: tuple[Store, ...], perm: Sequence[int]) -> tuple[Store, ...]:
    """A csd location names its sender and target CPUs."""
    return tuple(
        st._replace(loc=("csd", _perm_key(st.loc[1], perm)))
        if isinstance(st.loc, tuple) and st.loc[0] == "csd"
        else st
        for st in buffer
    )


def perm_csds(
    csds: tuple[tuple[CsdKey, Csd], ...], perm: Sequence[int]
) -> tuple[tuple[CsdKey, Csd], ...]:
    return tuple(
        sorted(
            (
                _perm_key(k, perm),
                v._replace(asked=_perm_info(v.asked, perm), info=_perm_info(v.info, perm)),
            )
            for k, v in csds
        )
    )


def perm_rcu(rcu: tuple[tuple[int, int], ...], perm: Sequence[int]) -> tuple[tuple[int, int], ...]:
    return tuple((pfn, _perm_mask(mask, perm)) for pfn, mask in rcu)


# Field metadata: how a field is copied, frozen for the snapshot, and renamed with CPUs.
MUTABLE: Final = {"copy": dict, "freeze": _items}
"""A dict field: copied by ``copy()``, frozen to sorted items by ``snapshot()``."""
PARTS: Final = {"parts": True}
"""A ``Shared`` list of records (a world's CPUs, its mms): each record is a part of the state
that a copy shares until it changes, and that the explorer's key snapshots on its own."""
NOT_STATE: Final = {"snapshot": False}
"""Not model state (the variant, the configuration, tables derived from them): left out of
the snapshot, shared by ``copy()``."""
CACHE: Final = NOT_STATE
"""Computed from the state and kept until the state changes (whoever changes it resets the
field): left out of the snapshot, shared by a copy, whose state is the same until it changes."""


def names_cpus(perm: Callable[[Any, Sequence[int]], Any], **more: Any) -> dict[str, Any]:
    """Metadata of a field whose value names CPUs: ``perm(snapshot value, perm)`` renames
    them, for the explorer's symmetry reduction (``tlbfuzz.protocol.search.permuted_snapshot``)."""
    return {"perm": perm, **more}


class Snapshotted:
    """``copy()`` and ``snapshot()`` derived from the attrs fields of the class (``derive``).

    A field's metadata says how (``MUTABLE``, ``NOT_STATE``, ``CACHE``, ``names_cpus``):
    ``copy`` (a copier, for a field changed in place), ``freeze`` (a hashable form, for the
    snapshot), ``perm`` (how renaming CPUs changes the frozen value) and ``snapshot: False``
    (not state). Every other field is in the snapshot, a named tuple
    of them all, so a new field cannot be left out of the explorer's visited set unnoticed
    (``tests/test_state.py`` changes every field in turn and watches the snapshot)."""

    __slots__ = ()
    Snapshot: ClassVar[Any]
    perms: ClassVar[tuple[tuple[str, Callable[[Any, Sequence[int]], Any]], ...]]
    parts: ClassVar[tuple[str, ...]]
    """The fields that are ``Shared`` lists of records (``PARTS`` metadata), in field order."""
    rest_perms: ClassVar[tuple[tuple[int, Callable[[Any, Sequence[int]], Any]], ...]]
    """``perms`` for ``rest()``: (position in ``rest()``, renaming function)."""

    def copy(self) -> Self:
        """An independent copy: the fields changed in place are copied (``copy`` metadata),
        the rest shared (immutable values, and what is not state)."""
        raise NotImplementedError  # replaced by derive(): generated for the record's fields

    def snapshot(self) -> tuple[Any, ...]:
        """A named tuple of every state field (its fields by name: ``snapshot().cpus``)."""
        raise NotImplementedError  # replaced by derive(): generated for the record's fields

    def rest(self) -> tuple[Any, ...]:
        """The snapshot's fields other than ``parts``, in field order: with a snapshot of each
        record of each part, all of the state (the explorer's collapsed key)."""
        raise NotImplementedError  # replaced by derive(): generated for the record's fields


_S = TypeVar("_S", bound=Snapshotted)


_ALL: Final = slice(None)


class Shared(list[_S]):
    """The CPUs or the mms of a world: a list of records that a world shares with its copies
    until one of them changes a record (copy-on-write).

    ``World.copy()`` copies the list, not the records (``share()``); the first time either world
    takes a record out of the list (``w.cpus[i]``, or iterating), it gets its own copy of it, so
    code that changes a record it took out of the list can never change another world. ``owned``
    is a bit per record: set, this list's record is its own (``-1``: all of them). The explorer
    reads ``owned`` after a step to snapshot only the records the step took out; the rest are
    its parent's (``tlbfuzz.protocol.search.bfs``).

    Reading without taking ownership, ``peek(i)`` and ``each()``, is for code that only reads
    (the properties, the windows, the enabled actions): a record read that way must not be
    changed. Ownership is per record, not per field: over-taking costs a copy, never soundness."""

    __slots__ = ("owned",)
    owned: int

    @classmethod
    def of(cls, records: Iterable[_S]) -> Shared[_S]:
        """A list that owns every one of ``records``."""
        new = cls(records)
        new.owned = -1
        return new

    if TYPE_CHECKING:

        def peek(self, i: int) -> _S: ...

        def each(self) -> Iterator[_S]: ...

    else:
        peek = list.__getitem__
        each = list.__iter__

    def share(self) -> Shared[_S]:
        """The copy for ``World.copy()``: both lists hold the same records, and neither owns
        any of them any more."""
        self.owned = 0
        new = Shared(list.__getitem__(self, _ALL))  # from a plain list: __iter__ takes all
        new.owned = 0
        return new

    @overload
    def __getitem__(self, i: SupportsIndex, /) -> _S: ...

    @overload
    def __getitem__(self, i: slice, /) -> list[_S]: ...

    def __getitem__(self, i: SupportsIndex | slice, /) -> _S | list[_S]:
        try:
            if self.owned >> i & 1:  # type: ignore[operator]  # a slice or -i: below
                return list.__getitem__(self, i)
        except (TypeError, ValueError):
            self._own_all()
            return list.__getitem__(self, i)
        return self._own(i)  # type: ignore[arg-type]  # an int: the shift took it

    def _own(self, i: int) -> _S:
        r: _S = list.__getitem__(self, i).copy()
        list.__setitem__(self, i, r)
        self.owned |= 1 << i
        return r

    def _own_all(self) -> None:
        if self.owned != -1:
            for i in range(len(self)):
                if not self.owned >> i & 1:
                    self._own(i)
            self.owned = -1

    def __iter__(self) -> Iterator[_S]:
        self._own_all()
        return list.__iter__(self)

    def __setitem__(self, i: Any, value: Any) -> None:
        self._own_all()
        list.__setitem__(self, i, value)


def derive(cls: type[_S]) -> type[_S]:
    """Attach what ``Snapshotted`` needs, from ``attrs.fields(cls)`` (after ``attrs.define``).

    ``copy()`` and ``snapshot()`` are generated as straight-line code over the fields, as attrs
    generates ``__init__``: the explorer calls both on every state it reaches, and a loop over
    the fields cost it twice as much (``bench/bench_explore.py``)."""
    fields = attrs.fields(cls)  # type: ignore[arg-type]  # an attrs class, by contract
    names = tuple(f.name for f in fields)
    state = tuple(i for i, f in enumerate(fields) if f.metadata.get("snapshot", True))
    snapshot_type = collections.namedtuple(  # type: ignore[misc]  # one per record class
        cls.__name__ + "Snapshot", [names[i] for i in state]
    )
    cls.Snapshot = snapshot_type
    cls.perms = tuple((f.name, f.metadata["perm"]) for f in fields if f.metadata.get("perm"))
    scope: dict[str, Any] = {"cls": cls, "snap": tuple.__new__, "Snapshot": snapshot_type}
    copied = []
    for i, f in enumerate(fields):
        if "copy" in f.metadata:
            scope[f"copy_{i}"] = f.metadata["copy"]
            copied.append(f"copy_{i}(self.{f.name})")
        else:
            copied.append(f"self.{f.name}")
    frozen = []
    for i in state:
        f = fields[i]
        if f.metadata.get("freeze") is _items:  # inline: the most common freezer
            d = f"self.{f.name}"
            frozen.append(f"(tuple(sorted({d}.items())) if len({d}) > 1 else tuple({d}.items()))")
        elif "freeze" in f.metadata:
            scope[f"freeze_{i}"] = f.metadata["freeze"]
            frozen.append(f"freeze_{i}(self.{f.name})")
        else:
            frozen.append(f"self.{f.name}")
    cls.parts = tuple(names[i] for i in state if fields[i].metadata.get("parts"))
    rest_names = [names[i] for i in state if not fields[i].metadata.get("parts")]
    cls.rest_perms = tuple((rest_names.index(n), fn) for n, fn in cls.perms if n in rest_names)
    rest = [v for i, v in zip(state, frozen, strict=True) if not fields[i].metadata.get("parts")]
    # Attribute names are the record's own field names (identifiers checked by attrs).
    exec(
        f"def copy(self):\n    return cls({', '.join(copied)})\n"
        f"def snapshot(self):\n    return snap(Snapshot, ({', '.join(frozen)},))\n"
        f"def rest(self):\n    return ({''.join(v + ', ' for v in rest)})\n",
        scope,
    )
    cls.copy = scope["copy"]  # type: ignore[method-assign]
    cls.snapshot = scope["snapshot"]  # type: ignore[method-assign]
    cls.rest = scope["rest"]  # type: ignore[method-assign]
    return cls


@derive
@attrs.define(slots=True)
class Mm(Snapshotted):
    """``struct mm_struct`` with ``mm->context`` and a one-PMD page table."""

    ctx_id: int
    tlb_gen: int
    cpumask: int = attrs.field(metadata=names_cpus(_perm_mask))
    pgtable_pfn: int  # what the PMD entry points at; NO_PFN once free_pgtables() cleared it
    ptes: dict[int, Pte] = attrs.field(metadata=MUTABLE)
    vma_writable: dict[int, bool] = attrs.field(
        metadata=MUTABLE
    )  # va -> VM_WRITE; a va with no vma is absent
    write_protected: frozenset[int]  # vas whose mprotect(PROT_READ) flush has returned
    flush_log: tuple[tuple[int, int, int], ...]
    """(new_tlb_gen, va, pte seq) per PTE change a flush request covered: tlb_gen_soundness."""
    tlb_flush_pending: int
    """``mm->tlb_flush_pending``: ``inc_tlb_flush_pending()`` when a gather begins,
    ``dec_tlb_flush_pending()`` after its flush; ``mm_tlb_flush_nested()`` is ``> 1``."""
    retired: dict[int, tuple[int, int]] = attrs.field(metadata=MUTABLE)
    """Ghost state: va -> (pte seq, REMOVED or WRPROTECTED) that a returned madvise, munmap or
    mprotect promised; no access may go through a translation older than that seq."""
    soft_dirty_clean: dict[int, int] = attrs.field(factory=dict, metadata=MUTABLE)
    """Ghost state for no_lost_soft_dirty: va -> the PTE seq a returned clear_refs left
    (write-protected, soft-dirty clear); a write through an older translation that leaves
    the PTE clean is one pagemap never shows."""
    tlb_flush_batched: bool = False
    """``mm->tlb_flush_batched``: reclaim cleared a PTE of this mm and deferred its flush
    (set_tlb_ubc_flush_pending()); flush_tlb_batched_pending() flushes and clears it. 5.2 has a
    bool; mainline a pending/flushed generation pair cleared by cmpxchg, which differs only
    when a reclaimer adds while another path flushes, and both hold the one PTE table's PTL."""


@derive
@attrs.define(slots=True)
class Cpu(Snapshotted):
    """One CPU: ``current``, ``cpu_tlbstate``, CR3, TLB, paging-structure cache, csd queue and
    the kernel path (program counter and locals) it is executing."""

    task: int  # current->mm: an mm id, or KTHREAD
    loaded_mm: int
    loaded_mm_asid: int
    is_lazy: bool
    ctxs: tuple[tuple[int, int], ...]  # per ASID slot: (ctx_id, tlb_gen)
    next_asid: int
    cr3_mm: int
    cr3_asid: int
    irqs_on: bool
    tlb: dict[tuple[int, int], TlbEntry] = attrs.field(metadata=MUTABLE)  # (asid, va) -> entry
    pwc: dict[int, PwcEntry] = attrs.field(metadata=MUTABLE)  # asid -> cached PMD entry
    queue: tuple[CsdKey, ...] = attrs.field(
        metadata=names_cpus(_perm_queue)
    )  # call_single_queue, oldest first
    ipi_pending: bool
    async_func_in_progress: str
    flush_tlb_info: FlushTlbInfo | None = attrs.field(metadata=names_cpus(_perm_info))
    """The per-CPU info (5.2 and today pass a pointer)."""
    path: str  # kernel path in progress ("" in user mode or idle)
    pc: int
    locals: Locals = attrs.field(metadata=names_cpus(_perm_locals))
    irq: tuple[IrqItem, ...] | None = attrs.field(metadata=names_cpus(_perm_irq))
    """The batch of flush_smp_call_function_queue(), if in it."""
    budget: tuple[int, ...]
    """Paths this CPU may still start, per budget kind (in the order of the world's kinds)."""
    store_buffer: tuple[Store, ...] = attrs.field(default=(), metadata=names_cpus(_perm_buffer))
    """x86-TSO (``Config.memory_model == "tso"``): this CPU's plain stores not yet in memory,
    oldest first, as (location, value) (``tlbfuzz.protocol.hw.plain_store``: a per-CPU
    variable's name, ``("tlb_gen", mm)`` or ``("csd", CsdKey)``); always empty under SC."""

    def own(self, var: Hashable) -> int | None:
        """This CPU's newest buffered store to ``var`` (x86-TSO store forwarding,
        ``protocol.tso.newest``), if any."""
        hit = newest((self.store_buffer,), 0, var)
        return None if hit is None else hit.value

    def own_is_lazy(self) -> bool:
        """``is_lazy`` as this CPU reads it: its newest buffered store (TSO), else memory."""
        v = self.own("is_lazy") if self.store_buffer else None
        return self.is_lazy if v is None else bool(v)

    def own_loaded_mm(self) -> int:
        """``this_cpu_read(cpu_tlbstate.loaded_mm)`` on this CPU: buffered store, else memory;
        other CPUs (``should_flush_tlb()``) read the field itself."""
        v = self.own("loaded_mm") if self.store_buffer else None
        return self.loaded_mm if v is None else v

    @property
    def user_mode(self) -> bool:
        return not self.path and self.irq is None and self.task != KTHREAD

    @property
    def mode(self) -> str:
        if self.irq is not None:
            return "irq"
        if self.path:
            return "kernel"
        return "user" if self.task != KTHREAD else "kthread"


class Violation(NamedTuple):
    """A broken property: which one, and why, in kernel words with the values involved."""

    prop: str
    message: str

    def __str__(self) -> str:
        return f"{self.prop}: {self.message}"
