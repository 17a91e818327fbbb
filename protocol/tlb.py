"""arch/x86/mm/tlb.c: flush_tlb_func(), switch_mm_irqs_off() and flush_tlb_mm_range(), split
into one step per shared-memory access so that the explorer sees every interleaving.

The three generations of flush_tlb_func() keep their kernel names (tlb.c's comment):

- ``mm_tlb_gen``: ``mm->context.tlb_gen``, the latest generation requested for the mm;
- ``local_tlb_gen``: ``cpu_tlbstate.ctxs[loaded_mm_asid].tlb_gen``, what this CPU caught up to;
- ``new_tlb_gen``: ``f->new_tlb_gen``, the generation the request being handled was made at.

Simplifications: no PTI (user PCIDs), no INVLPGB/global ASIDs, no IBPB, no trim_cpumask
timer; ``&init_mm`` uses the kernel PCID and no dynamic ASID slot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlbfuzz.protocol import hw
from tlbfuzz.protocol.paths import (
    NEXT_KTHREAD,
    NEXT_MM,
    SWITCH_MM_IRQS_OFF,
    BudgetKind,
    Path,
    Step,
    register,
)
from tlbfuzz.protocol.properties import TLB_GEN_SOUNDNESS
from tlbfuzz.protocol.state import (
    INIT_MM,
    KTHREAD,
    LOADED_MM_SWITCHING,
    PAGE_SIZE,
    TLB_FLUSH_ALL,
    FlushTlbInfo,
    Locals,
    mm_name,
)

if TYPE_CHECKING:
    from tlbfuzz.protocol.world import World


def flush_tlb_func(w: World, cpu: int, f: FlushTlbInfo) -> None:
    """flush_tlb_func() (5.2: flush_tlb_func_common() behind the _local/_remote wrappers)."""
    c = w.cpus[cpu]
    v = w.variant
    loaded_mm = c.own_loaded_mm()
    if f.mm != loaded_mm:
        # 5.2 flush_tlb_func_remote(): "if (f->mm && f->mm != loaded_mm) return;"
        # Today the CPU also leaves the mm's cpumask here (mm_cpumask is trimmed lazily).
        if v.flush_tlb_func_trims_cpumask(w, cpu, f):
            w.mms[f.mm].cpumask &= ~(1 << cpu)
        return
    if c.own_is_lazy():
        # "We're in lazy mode. We need to at least flush our paging-structure cache to avoid
        # speculatively reading garbage into our TLB. Since switching to init_mm is barely
        # slower than a minimal flush, just switch to init_mm."
        switch_to_init_mm(w, cpu)
        return
    asid = c.loaded_mm_asid
    local_tlb_gen = c.ctxs[asid][1]
    if v.flush_is_caught_up(w, cpu, f, local_tlb_gen):
        return  # "The TLB is already up to date in respect to f->new_tlb_gen."
    mm_tlb_gen = hw.read_tlb_gen(w, cpu, loaded_mm)
    if local_tlb_gen == mm_tlb_gen:
        return  # "There's nothing to do: we're already up to date."
    if local_tlb_gen > mm_tlb_gen or f.new_tlb_gen > mm_tlb_gen:
        # Only a variant whose tlb_gen increment is not atomic gets here (two flushers lost
        # an increment, or memory went back): the kernel's WARN_ON_ONCE()s.
        w.report(
            TLB_GEN_SOUNDNESS,
            f"cpu{cpu} flush_tlb_func(): WARN_ON_ONCE(local_tlb_gen {local_tlb_gen} > "
            f"mm_tlb_gen {mm_tlb_gen}) or WARN_ON_ONCE(f->new_tlb_gen {f.new_tlb_gen} > "
            f"mm_tlb_gen): mm {mm_name(loaded_mm)}'s tlb_gen went back",
        )
        return
    # "If we get to this point, we know that our TLB is out of date. [...] Partial TLB flushes
    # are not all that much cheaper than full TLB flushes, so it seems unlikely that it would
    # be a performance win to do a partial flush if that won't bring our TLB fully up to
    # date. [...] if f->new_tlb_gen == 3, then we know that the flush needed to bring us up
    # to date for tlb_gen 3 is the partial flush we're processing."
    if v.partial_flush(w, cpu, f, local_tlb_gen, mm_tlb_gen):
        for va in range(f.start, f.end, PAGE_SIZE):
            hw.flush_tlb_one_user(c, va)
    else:
        hw.flush_tlb_local(c)
    c.ctxs = _set_ctx(c.ctxs, asid, (c.ctxs[asid][0], mm_tlb_gen))


def _set_ctx(
    ctxs: tuple[tuple[int, int], ...], asid: int, ctx: tuple[int, int]
) -> tuple[tuple[int, int], ...]:
    return ctxs[:asid] + (ctx,) + ctxs[asid + 1 :]


def switch_to_init_mm(w: World, cpu: int) -> None:
    """switch_mm_irqs_off(NULL, &init_mm, NULL) from a lazy CPU: CR3 now holds only kernel
    mappings, so nothing of the user mm can be walked. 5.2 also leaves prev's mm_cpumask."""
    c = w.cpus[cpu]
    prev = c.own_loaded_mm()
    if prev > INIT_MM and w.variant.switch_to_init_mm_clears_cpumask(w, cpu):
        hw.fence(w, cpu)  # cpumask_clear_cpu(): a locked RMW
        w.mms[prev].cpumask &= ~(1 << cpu)
    hw.plain_store(w, cpu, "is_lazy", False)
    hw.fence(w, cpu)  # the CR3 write below is serialising
    c.cr3_mm = INIT_MM
    c.cr3_asid = -1
    hw.plain_store(w, cpu, "loaded_mm", INIT_MM)
    c.loaded_mm_asid = -1


def choose_new_asid(w: World, cpu: int, next_mm: int, next_tlb_gen: int) -> tuple[int, bool]:
    """choose_new_asid(): reuse the slot that holds next's ctx_id, flushing only if that slot
    lags behind ``next_tlb_gen``; otherwise take the next slot round robin, with a flush."""
    c = w.cpus[cpu]
    ctx_id = w.mms[next_mm].ctx_id
    for asid, (slot_ctx_id, slot_tlb_gen) in enumerate(c.ctxs):
        if slot_ctx_id == ctx_id:
            return asid, slot_tlb_gen < next_tlb_gen
    asid = c.next_asid
    c.next_asid = (asid + 1) % len(c.ctxs)
    return asid, True


# --- switch_mm_irqs_off(), prev != next --------------------------------------------------


def switch_mm_irqs_off__loaded_mm_switching(w: World, cpu: int) -> None:
    """Today: ``if (was_lazy) is_lazy = false;`` then "Indicate that CR3 is about to change.
    nmi_uaccess_okay() and others are sensitive to the window in which CR3 is not
    current->mm": ``loaded_mm = LOADED_MM_SWITCHING``."""
    hw.plain_store(w, cpu, "is_lazy", False)
    hw.plain_store(w, cpu, "loaded_mm", LOADED_MM_SWITCHING)


def switch_mm_irqs_off__cpumask_set_cpu(w: World, cpu: int) -> None:
    """ "Start remote flushes and then read tlb_gen": ``cpumask_set_cpu(cpu,
    mm_cpumask(next))`` (a locked RMW: a full barrier). 5.2 first writes ``is_lazy = false``
    (today's order did that in the step before) and "Stop remote flushes for the previous mm":
    ``cpumask_clear_cpu(cpu, mm_cpumask(real_prev))``, while CR3 still points at prev's page
    tables (``Variant.switch_clears_prev_cpumask``)."""
    c = w.cpus[cpu]
    v = w.variant
    at = w.site(cpu)
    nxt = c.locals.next_task
    hw.plain_store(w, cpu, "is_lazy", False)
    prev = c.cr3_mm
    if prev > INIT_MM and v.switch_clears_prev_cpumask(w, cpu):
        hw.fence(w, cpu)  # cpumask_clear_cpu(): lock btr
        w.mms[prev].cpumask &= ~(1 << cpu)
    mask = w.mms[nxt].cpumask
    if not (mask >> cpu & 1 and v.switch_sets_cpumask_only_if_clear(at)):
        hw.fence(w, cpu)  # cpumask_set_cpu(): lock bts, a full barrier
        w.mms[nxt].cpumask = mask | 1 << cpu
    elif v.smp_mb_if_cpumask_already_set(at):
        hw.fence(w, cpu)  # "else smp_mb();"


def switch_mm_irqs_off__choose_new_asid(w: World, cpu: int) -> None:
    """``next_tlb_gen = atomic64_read(&next->context.tlb_gen); choose_new_asid(...)``; 5.2 then
    writes ``loaded_mm = LOADED_MM_SWITCHING`` ("Let nmi_uaccess_okay() know that we're
    changing CR3"), which today's order wrote first: the same value either way."""
    c = w.cpus[cpu]
    nxt = c.locals.next_task
    next_tlb_gen = hw.read_tlb_gen(w, cpu, nxt)
    new_asid, need_flush = choose_new_asid(w, cpu, nxt, next_tlb_gen)
    c.locals = c.locals._replace(
        next_tlb_gen=next_tlb_gen, new_asid=new_asid, need_flush=need_flush
    )
    hw.plain_store(w, cpu, "loaded_mm", LOADED_MM_SWITCHING)


def switch_mm_irqs_off__load_new_mm_cr3(w: World, cpu: int) -> None:
    """``if (need_flush) { ctxs[new_asid] = {next->ctx_id, next_tlb_gen};
    load_new_mm_cr3(next->pgd, new_asid, true); } else load_new_mm_cr3(..., false);``
    "Make sure we write CR3 before loaded_mm": ``loaded_mm = next``."""
    c = w.cpus[cpu]
    lv = c.locals
    nxt = lv.next_task
    hw.fence(w, cpu)  # a CR3 write is serialising (SDM 3A, "Serializing Instructions")
    c.cr3_mm = nxt
    c.cr3_asid = lv.new_asid
    if lv.need_flush:
        c.ctxs = _set_ctx(c.ctxs, lv.new_asid, (w.mms[nxt].ctx_id, lv.next_tlb_gen))
        hw.flush_tlb_local(c)
    hw.plain_store(w, cpu, "loaded_mm", nxt)
    c.loaded_mm_asid = lv.new_asid


def finish_task_switch(w: World, cpu: int) -> None:
    """switch_to() has run: ``current`` is the next task; IRQs are enabled again."""
    c = w.cpus[cpu]
    c.task = c.locals.next_task
    c.irqs_on = True


# --- switch_mm_irqs_off(), prev == next: a lazy CPU returns to the mm it kept ------------


def switch_mm_irqs_off__leave_lazy(w: World, cpu: int) -> None:
    """``if (was_lazy) this_cpu_write(cpu_tlbstate_shared.is_lazy, false);`` (a plain store:
    under TSO it waits in the store buffer)."""
    hw.plain_store(w, cpu, "is_lazy", False)


def switch_mm_irqs_off__lazy_tlb_gen_check(w: World, cpu: int) -> None:
    """ "Read the tlb_gen to check whether a flush is needed. If the TLB is up to date, just
    use it. The barrier synchronizes with the tlb_gen increment in the TLB shootdown code."
    ``smp_mb(); next_tlb_gen = ...; if (ctxs[prev_asid].tlb_gen == next_tlb_gen) return;``
    otherwise reload CR3 with a flush ("TLB contents went out of date while we were in lazy
    mode")."""
    c = w.cpus[cpu]
    if w.variant.smp_mb_before_lazy_tlb_gen_read(w.site(cpu)):
        hw.fence(w, cpu)
    asid = c.loaded_mm_asid
    next_tlb_gen = hw.read_tlb_gen(w, cpu, c.own_loaded_mm())
    if c.ctxs[asid][1] != next_tlb_gen:
        c.ctxs = _set_ctx(c.ctxs, asid, (c.ctxs[asid][0], next_tlb_gen))
        hw.flush_tlb_local(c)


def enter_lazy_tlb(w: World, cpu: int) -> None:
    """context_switch() to a kernel thread: ``enter_lazy_tlb()`` keeps CR3 and mm_cpumask
    (``if (this_cpu_read(cpu_tlbstate.loaded_mm) == &init_mm) return;
    this_cpu_write(cpu_tlbstate_shared.is_lazy, true);``), then switch_to() the kthread."""
    c = w.cpus[cpu]
    if c.own_loaded_mm() != INIT_MM:
        hw.plain_store(w, cpu, "is_lazy", True)
    c.task = KTHREAD


# --- flush_tlb_mm_range() -----------------------------------------------------------------


def inc_mm_tlb_gen(w: World, cpu: int, mm_id: int) -> int:
    """``inc_mm_tlb_gen(mm)``: ``atomic64_inc_return(&mm->context.tlb_gen)``, a locked RMW
    (``Variant.inc_mm_tlb_gen_is_locked``; else a plain read and store, buffered under TSO).
    Returns the new generation."""
    if w.variant.inc_mm_tlb_gen_is_locked(w.site(cpu)):
        hw.fence(w, cpu)  # lock xadd
        w.mms[mm_id].tlb_gen += 1
        return w.mms[mm_id].tlb_gen
    new_tlb_gen = hw.read_tlb_gen(w, cpu, mm_id) + 1
    hw.plain_store(w, cpu, ("tlb_gen", mm_id), new_tlb_gen)
    return new_tlb_gen


def flush_tlb_mm_range__inc_mm_tlb_gen(w: World, cpu: int) -> None:
    """``new_tlb_gen = inc_mm_tlb_gen(mm)`` (atomic64_inc_return: a full barrier that orders
    the PTE writes before the reads of mm_cpumask and of remote cpu_tlbstate), then
    ``info = get_flush_tlb_info(mm, start, end, stride_shift, freed_tables, new_tlb_gen)``:
    the per-CPU flush_tlb_info. Ranges above tlb_single_page_flush_ceiling become full."""
    c = w.cpus[cpu]
    lv = c.locals
    mm = w.mms[lv.mm]
    new_tlb_gen = inc_mm_tlb_gen(w, cpu, lv.mm)
    start, end = lv.va, lv.end
    full = lv.fullmm or lv.batched_flush  # flush_tlb_batched_pending(): flush_tlb_mm()
    if full or (end - start) // PAGE_SIZE > w.config.tlb_single_page_flush_ceiling:
        # x86 tlb_flush(): "if (tlb->fullmm || tlb->need_flush_all) { start = 0UL; end =
        # TLB_FLUSH_ALL; }"
        start, end = 0, TLB_FLUSH_ALL
    # flush_tlb_mm(mm) is flush_tlb_mm_range(mm, 0UL, TLB_FLUSH_ALL, 0UL, true): freed_tables
    freed_tables = lv.freed_tables or lv.batched_flush
    c.flush_tlb_info = FlushTlbInfo(lv.mm, start, end, new_tlb_gen, freed_tables, cpu)
    # Ghost state for tlb_gen_soundness: which PTE contents this generation retires.
    lo, hi = (0, 1 << 62) if full else (lv.va, lv.end)
    mm.flush_log += tuple(
        (new_tlb_gen, va, pte.seq) for va, pte in sorted(mm.ptes.items()) if lo <= va < hi
    )


def flush_tlb_mm_range__flush_tlb_func_local(w: World, cpu: int) -> None:
    """``if (mm == this_cpu_read(cpu_tlbstate.loaded_mm)) { local_irq_disable();
    flush_tlb_func(info); local_irq_enable(); }``"""
    c = w.cpus[cpu]
    info = c.flush_tlb_info
    assert info is not None
    if c.own_loaded_mm() == info.mm:
        flush_tlb_func(w, cpu, info)


# --- the steps and paths -------------------------------------------------------------------

INC_MM_TLB_GEN = Step(
    "flush_tlb_mm_range__inc_mm_tlb_gen", flush_tlb_mm_range__inc_mm_tlb_gen, c="inc_mm_tlb_gen()"
)
FLUSH_TLB_FUNC_LOCAL = Step(
    "flush_tlb_mm_range__flush_tlb_func_local",
    flush_tlb_mm_range__flush_tlb_func_local,
    c="flush_tlb_func_local()",
)
LOADED_MM_SWITCHING_STEP = Step(
    "switch_mm_irqs_off__loaded_mm_switching",
    switch_mm_irqs_off__loaded_mm_switching,
    c="loaded_mm = LOADED_MM_SWITCHING",
)
CPUMASK_SET_CPU = Step(
    "switch_mm_irqs_off__cpumask_set_cpu",
    switch_mm_irqs_off__cpumask_set_cpu,
    c="cpumask_set_cpu(cpu, mm_cpumask(next))",
)
CHOOSE_NEW_ASID = Step("switch_mm_irqs_off__choose_new_asid", switch_mm_irqs_off__choose_new_asid)
LOAD_NEW_MM_CR3 = Step("switch_mm_irqs_off__load_new_mm_cr3", switch_mm_irqs_off__load_new_mm_cr3)
FINISH_TASK_SWITCH = Step("finish_task_switch", finish_task_switch)

SWITCH = BudgetKind("switch", default=2, fuzz_max=3)
"""Context switches: to another mm, to a kernel thread (lazy), back from lazy."""


def _enter_lazy_may_start(w: World, cpu: int, lv: Locals) -> bool:
    return w.cpus.peek(cpu).task != KTHREAD


def _leaves_lazy(w: World, cpu: int, nxt: int) -> bool:
    """A lazy kernel thread switching to a task of the mm it kept loaded: prev == next."""
    c = w.cpus[cpu]
    return c.task == KTHREAD and c.own_is_lazy() and nxt == c.own_loaded_mm()


def _switch_mm_may_start(w: World, cpu: int, lv: Locals) -> bool:
    nxt = lv.next_task
    return nxt != w.cpus.peek(cpu).task and not _leaves_lazy(w, cpu, nxt)


ENTER_LAZY_TLB = register(
    Path(
        "enter_lazy_tlb",
        SWITCH,
        NEXT_KTHREAD,
        _enter_lazy_may_start,
        (Step("enter_lazy_tlb", enter_lazy_tlb),),
        summary="context_switch() to a kernel thread: the mm stays loaded, lazily",
    )
)
SWITCH_MM = register(
    Path(
        "switch_mm",
        SWITCH,
        NEXT_MM,
        _switch_mm_may_start,
        (SWITCH_MM_IRQS_OFF,),
        irqs_off=True,  # schedule(): context_switch() runs with IRQs disabled
        focus="context_switch",
        summary="context_switch() to a task of another mm: switch_mm_irqs_off(), prev != next",
    )
)
LEAVE_LAZY = register(
    Path(
        "leave_lazy",
        SWITCH,
        NEXT_MM,
        lambda w, cpu, lv: _leaves_lazy(w, cpu, lv.next_task),
        (
            Step("switch_mm_irqs_off__leave_lazy", switch_mm_irqs_off__leave_lazy),
            Step(
                "switch_mm_irqs_off__lazy_tlb_gen_check",
                switch_mm_irqs_off__lazy_tlb_gen_check,
                c="next_tlb_gen = atomic64_read()",  # after smp_mb() (a decision)
            ),
            FINISH_TASK_SWITCH,
        ),
        irqs_off=True,
        focus="context_switch",
        summary="a lazy CPU switches back to a task of the mm it kept: prev == next",
    )
)
