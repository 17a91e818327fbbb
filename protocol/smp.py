"""kernel/smp.c: csds, call_single_queue, IPIs and flush_smp_call_function_queue().

Sender: ``csd_lock(csd)`` (spin while a previous use of the same csd is locked), fill in
func/info, ``llist_add()`` to the target's queue and send an IPI only if the queue was empty.
A waiting sender spins in ``csd_lock_wait()`` with IRQs on, so it still takes IPIs.

Receiver (IRQs off): ``llist_del_all()`` then, in FIFO order, SYNC: ``func(info);
csd_unlock(csd);`` and ASYNC: ``csd_unlock(csd); func(info);``. ``csd_unlock()`` is a release
store, so everything the handler did before it is visible to a waiter that sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tlbfuzz.protocol import hw
from tlbfuzz.protocol.paths import TARGET_VA, BudgetKind, Path, Step, always, register
from tlbfuzz.protocol.properties import REQUEST_INTEGRITY
from tlbfuzz.protocol.state import (
    CSD_MANY,
    CSD_SINGLE,
    FLUSH_TLB_FUNC,
    READ_USER_FUNC,
    Csd,
    CsdKey,
    FlushTlbInfo,
    IrqItem,
    for_each_cpu,
)
from tlbfuzz.protocol.tlb import flush_tlb_func

if TYPE_CHECKING:
    from tlbfuzz.protocol.world import World


def _queue_csd(w: World, key: CsdKey, csd: Csd) -> None:
    """``llist_add(&csd->node.llist, &per_cpu(call_single_queue, cpu))`` and, if that list was
    empty, ``send_call_function_single_ipi(cpu)``. ``llist_add()`` is a cmpxchg loop: a locked
    RMW, so the sender's store buffer drains first (x86-TSO)."""
    hw.fence(w, key.sender)
    w.csds[key] = csd
    t = w.cpus[key.target]
    if not t.queue:
        t.ipi_pending = True
    t.queue += (key,)


def flush_targets(w: World, cpu: int, info: FlushTlbInfo) -> list[int]:
    """The CPUs of mm_cpumask(mm) but this one that the variant decides to IPI; for the
    request ``arch_tlbbatch_flush()`` built (the batch's generation), those of the batch's
    cpumask. Any later flush of the path (khugepaged's, after ``try_to_unmap_flush()``,
    which ends with ``cpumask_clear(&batch->cpumask)``) goes to mm_cpumask again."""
    lv = w.cpus[cpu].locals
    batch = lv.ubc if lv.ubc and info.new_tlb_gen == lv.ubc_gen else 0
    mask = (batch or w.mms[info.mm].cpumask) & ~(1 << cpu)
    at = w.site(cpu)
    return [t for t in for_each_cpu(mask) if w.variant.should_flush_tlb(at, w, t, info)]


def send_ipis_enabled(w: World, cpu: int) -> bool:
    """csd_lock() spins while the csd of a previous (asynchronous) request is still locked."""
    info = w.cpus.peek(cpu).flush_tlb_info
    assert info is not None
    return all(not w.csds[CsdKey(cpu, t, CSD_MANY)].locked for t in flush_targets(w, cpu, info))


def send_ipis(w: World, cpu: int) -> None:
    """native_flush_tlb_others() / native_flush_tlb_multi(): evaluate the lazy rule against
    each remote CPU's state *now*, queue a csd on each target and IPI it."""
    c = w.cpus[cpu]
    info = c.flush_tlb_info
    assert info is not None
    v = w.variant
    at = w.site(cpu)
    sync = v.flush_is_sync(at, info)
    inline = v.csd_info_inline(at, info)
    targets = 0
    for t in flush_targets(w, cpu, info):
        key = CsdKey(cpu, t, CSD_MANY)
        _queue_csd(
            w,
            key,
            Csd(
                locked=True,
                func=FLUSH_TLB_FUNC,
                sync=sync,
                asked=info,
                info=info if inline else None,
            ),
        )
        targets |= 1 << t
    c.locals = c.locals._replace(targets=targets, sync=sync)


def csd_lock_wait(w: World, cpu: int) -> None:
    """Every target has unlocked its csd: the initiator returns from smp_call_function_many()."""


def csd_lock_wait_enabled(w: World, cpu: int) -> bool:
    """``csd_lock_wait()`` on each target's csd: smp_cond_load_acquire(!CSD_FLAG_LOCK)."""
    return all(
        not w.csds[CsdKey(cpu, t, CSD_MANY)].locked
        for t in for_each_cpu(w.cpus.peek(cpu).locals.targets)
    )


def csd_lock_wait_skipped(w: World, cpu: int) -> bool:
    """No wait when nothing was sent, or for an ASYNC csd of a variant that does not wait."""
    lv = w.cpus.peek(cpu).locals
    return lv.targets == 0 or not w.variant.initiator_waits(w.site(cpu), lv.sync)


def smp_call_function_single_enabled(w: World, cpu: int) -> bool:
    """``csd_lock(csd)``: this CPU's single-call csd for that target must be free."""
    return not w.csds[CsdKey(cpu, w.cpus.peek(cpu).locals.target, CSD_SINGLE)].locked


def smp_call_function_single(w: World, cpu: int) -> None:
    """``smp_call_function_single(target, read_user_func, va, wait=0)``: the review's "other
    smp_call_function IPI" whose callback reads user memory of the interrupted task."""
    lv = w.cpus[cpu].locals
    key = CsdKey(cpu, lv.target, CSD_SINGLE)
    _queue_csd(w, key, Csd(locked=True, func=READ_USER_FUNC, sync=False, va=lv.va))


# --- the receiver ---------------------------------------------------------------------------


def flush_smp_call_function_queue(w: World, cpu: int) -> None:
    """The call-function IPI arrives (IRQs on): enter the handler with IRQs off and
    ``llist_del_all()`` the queue. An inline flush_tlb_info is copied to the handler's stack
    here (RFC patch 10: "memcpy the inlined info to its stack before running")."""
    c = w.cpus[cpu]
    hw.fence(w, cpu)  # llist_del_all(): xchg, a locked RMW
    items = tuple(
        IrqItem(key, csd.func, csd.sync, csd.asked, csd.info, csd.va, unlocked=False)
        for key, csd in ((k, w.csds[k]) for k in c.queue)
    )
    c.queue = ()
    c.ipi_pending = False
    c.irqs_on = False
    c.irq = w.variant.batch_order(items)


def next_irq_op(w: World, cpu: int) -> tuple[str, int]:
    """The handler's next step: (op, index of the batch item it works on)."""
    items = w.cpus[cpu].irq
    assert items
    if w.variant.unlock_async_csds_first(w, cpu):
        for i, it in enumerate(items):
            if not it.sync and not it.unlocked:
                return "csd_unlock", i
    head = items[0]
    if not head.sync and not head.unlocked:
        return "csd_unlock", 0
    return head.func, 0


def csd_unlock(w: World, cpu: int) -> None:
    """ASYNC: ``csd_unlock(csd)`` before ``func(info)``. With the RFC, also
    ``async_func_in_progress = csd->func`` first, so nmi_uaccess_okay() can refuse."""
    c = w.cpus[cpu]
    items = c.irq
    assert items is not None
    _, i = next_irq_op(w, cpu)
    it = items[i]
    _csd_unlock(w, cpu, it.key)
    c.irq = items[:i] + (it._replace(unlocked=True),) + items[i + 1 :]
    if it.func == FLUSH_TLB_FUNC:
        c.async_func_in_progress = FLUSH_TLB_FUNC


def run_csd_func(w: World, cpu: int) -> None:
    """``func(info)`` for the head of the batch, then for SYNC ``csd_unlock(csd)``; when the
    batch is done, return from the interrupt (IRQs on again)."""
    c = w.cpus[cpu]
    items = c.irq
    assert items
    it = items[0]
    if it.func == FLUSH_TLB_FUNC:
        # The receiver reads the request through its stack copy, or through the pointer to
        # the initiator's per-CPU flush_tlb_info, which the initiator may have reused since.
        info = it.info if it.info is not None else w.cpus[it.key.sender].flush_tlb_info
        assert info is not None and it.asked is not None
        if info != it.asked:
            w.report(
                REQUEST_INTEGRITY,
                f"cpu{cpu} flush_tlb_func() for cpu{it.key.sender}'s request "
                f"[{it.asked.describe()}] read [{info.describe()}] through the pointer to "
                f"cpu{it.key.sender}'s per-CPU flush_tlb_info, already reused",
            )
        flush_tlb_func(w, cpu, info)
    elif c.task != 0 and c.own_loaded_mm() == c.task:
        hw.access(w, cpu, it.va, write=False, who=f"IPI callback {READ_USER_FUNC}")
    if it.sync:
        _csd_unlock(w, cpu, it.key)
    rest = items[1:]
    if not any(i.unlocked and i.func == FLUSH_TLB_FUNC for i in rest):
        c.async_func_in_progress = ""
    if rest:
        c.irq = rest
    else:
        c.irq = None
        c.irqs_on = True
        hw.fence(w, cpu)  # IRET is serialising (SDM 3A, "Serializing Instructions")


def _csd_unlock(w: World, cpu: int, key: CsdKey) -> None:
    """``csd_unlock(csd)``: ``smp_store_release(&csd->node.u_flags, 0)``, a plain store on x86
    that may wait in ``cpu``'s store buffer under TSO; the sender's ``csd_lock_wait()`` and
    ``csd_lock()`` read memory (``Variant.csd_unlock_fences``: a full barrier first)."""
    if w.variant.csd_unlock_fences(w.site(cpu)):
        hw.fence(w, cpu)
    hw.plain_store(w, cpu, ("csd", key), 0)


# --- the steps and paths -------------------------------------------------------------------

NATIVE_FLUSH_TLB_OTHERS = Step(
    "native_flush_tlb_others__send_ipis",
    send_ipis,
    guard=send_ipis_enabled,
    c="native_flush_tlb_others()",
)
"""5.2: ``flush_tlb_others()`` after the local flush; csd_lock() spins on a csd in use."""
NATIVE_FLUSH_TLB_MULTI = Step(
    "native_flush_tlb_multi__send_ipis",
    send_ipis,
    guard=send_ipis_enabled,
    c="native_flush_tlb_multi()",
)
"""Since 5.13: ``native_flush_tlb_multi()`` before the local flush."""
CSD_LOCK_WAIT = Step(
    "smp_call_function_many__csd_lock_wait",
    csd_lock_wait,
    guard=csd_lock_wait_enabled,
    skip=csd_lock_wait_skipped,
    c="csd_lock_wait()",
)

SMP_CALL_FUNCTION_SINGLE = register(
    Path(
        "smp_call_function_single",
        BudgetKind("ipi"),
        TARGET_VA,
        always,
        (
            Step(
                "smp_call_function_single",
                smp_call_function_single,
                guard=smp_call_function_single_enabled,
            ),
        ),
        background=True,
        summary="another subsystem's cross-call whose callback reads user memory",
    )
)
