"""The world: every CPU, mm, frame and csd, and the one way to change them, ``apply(action)``.

``World.enabled_actions()`` lists, in a canonical order, every action the model allows now; all
nondeterminism (which CPU moves, when an IPI is taken, NMIs, speculative fills, evictions, frame
reuse) is a choice among them made from outside. Per CPU the order is: the next step of the
kernel code it is running (IRQ handler, else path), taking a pending IPI, hardware events, an
NMI, then starting a new kernel path; the page allocator's reuse of free frames comes last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

import attrs

from protocol import hw, mm, smp, tlb
from protocol.actions import GLOBAL, Action
from protocol.config import BUDGET_KINDS, Config
from protocol.properties import PROPERTIES
from protocol.state import (
    ANON,
    CSD_MANY,
    CSD_SINGLE,
    FILE,
    FREE,
    INIT_MM,
    KTHREAD,
    NO_PFN,
    PGTABLE,
    Cpu,
    Csd,
    CsdKey,
    Frame,
    Locals,
    Mm,
    Pte,
    Violation,
)

if TYPE_CHECKING:
    from protocol.variants import Variant

StepFn = Callable[["World", int], None]


class ActionNotEnabled(ValueError):
    """``apply()`` was given an action the model does not allow in this state."""


# Every step of every kernel path: what it does, and (for steps that spin) when it may run.
STEPS: Final[dict[str, StepFn]] = {
    "munmap": mm.munmap,
    "madvise_dontneed": mm.madvise_dontneed,
    "mprotect": mm.mprotect,
    "tlb_finish_mmu": mm.tlb_finish_mmu,
    "clear_page_dirty_for_io": mm.clear_page_dirty_for_io,
    "page_mkclean_one__set_pte_at": mm.page_mkclean_one__set_pte_at,
    "writepage": mm.writepage,
    "local_irq_disable": mm.local_irq_disable,
    "copy_from_user": mm.copy_from_user,
    "local_irq_enable": mm.local_irq_enable,
    "smp_call_function_single": smp.smp_call_function_single,
    "flush_tlb_mm_range__inc_mm_tlb_gen": tlb.flush_tlb_mm_range__inc_mm_tlb_gen,
    "flush_tlb_mm_range__flush_tlb_func_local": tlb.flush_tlb_mm_range__flush_tlb_func_local,
    "native_flush_tlb_others__send_ipis": smp.send_ipis,
    "native_flush_tlb_multi__send_ipis": smp.send_ipis,
    "smp_call_function_many__csd_lock_wait": lambda w, cpu: None,
    "switch_mm_irqs_off__loaded_mm_switching": tlb.switch_mm_irqs_off__loaded_mm_switching,
    "switch_mm_irqs_off__cpumask_set_cpu": tlb.switch_mm_irqs_off__cpumask_set_cpu,
    "switch_mm_irqs_off__choose_new_asid": tlb.switch_mm_irqs_off__choose_new_asid,
    "switch_mm_irqs_off__load_new_mm_cr3": tlb.switch_mm_irqs_off__load_new_mm_cr3,
    "finish_task_switch": tlb.finish_task_switch,
    "switch_mm_irqs_off__leave_lazy": tlb.switch_mm_irqs_off__leave_lazy,
    "switch_mm_irqs_off__lazy_tlb_gen_check": tlb.switch_mm_irqs_off__lazy_tlb_gen_check,
    "enter_lazy_tlb": tlb.enter_lazy_tlb,
}

GUARDS: Final[dict[str, Callable[[World, int], bool]]] = {
    "native_flush_tlb_others__send_ipis": smp.send_ipis_enabled,
    "native_flush_tlb_multi__send_ipis": smp.send_ipis_enabled,
    "smp_call_function_many__csd_lock_wait": smp.csd_lock_wait_enabled,
    "smp_call_function_single": smp.smp_call_function_single_enabled,
}

SKIPS: Final[dict[str, Callable[[World, int], bool]]] = {
    "smp_call_function_many__csd_lock_wait": smp.csd_lock_wait_skipped,
}
"""Steps not taken, decided from the path's locals when the step before them ends."""

STATE_CHECKS: Final = tuple(
    (name, p.check) for name, p in sorted(PROPERTIES.items()) if p.check is not None
)
"""The state properties, in a fixed order, resolved once rather than on every call."""

FINISH: Final[dict[str, StepFn]] = {"mprotect": mm.mprotect_done}
"""What a path does when it returns (after its last step), by path name."""

BUDGET_OF: Final = {k: i for i, k in enumerate(BUDGET_KINDS)}
START_BUDGET: Final = {
    "munmap": BUDGET_OF["munmap"],
    "madvise_dontneed": BUDGET_OF["madvise"],
    "mprotect": BUDGET_OF["mprotect"],
    "clear_page_dirty_for_io": BUDGET_OF["writeback"],
    "local_irq_disable": BUDGET_OF["irqs_off"],
    "smp_call_function_single": BUDGET_OF["ipi"],
    "enter_lazy_tlb": BUDGET_OF["switch"],
    "switch_mm_irqs_off__leave_lazy": BUDGET_OF["switch"],
    "switch_mm_irqs_off__loaded_mm_switching": BUDGET_OF["switch"],
    "switch_mm_irqs_off__cpumask_set_cpu": BUDGET_OF["switch"],
}

ARG_TO_LOCAL: Final = {"va": "va", "mm": "mm", "target": "target", "next": "next_task"}

IRQ_OPS: Final = frozenset({"csd_unlock", "flush_tlb_func", "read_user_func"})
HW_OPS: Final = frozenset({"tlb_evict", "pwc_evict", "tlb_fill", "user_read", "user_write"})


def build_paths(v: Variant) -> dict[str, tuple[str, ...]]:
    """Every kernel path of variant ``v``, keyed by its first step (the op that starts it)."""
    flush = v.flush_steps()
    switch = v.switch_steps()
    return {
        "munmap": ("munmap", *flush, "tlb_finish_mmu"),
        "madvise_dontneed": ("madvise_dontneed", *flush, "tlb_finish_mmu"),
        "mprotect": ("mprotect", *flush),
        "clear_page_dirty_for_io": (
            "clear_page_dirty_for_io",
            *flush,
            "page_mkclean_one__set_pte_at",
            "writepage",
        ),
        "local_irq_disable": ("local_irq_disable", "copy_from_user", "local_irq_enable"),
        "smp_call_function_single": ("smp_call_function_single",),
        switch[0]: switch,
        "switch_mm_irqs_off__leave_lazy": (
            "switch_mm_irqs_off__leave_lazy",
            "switch_mm_irqs_off__lazy_tlb_gen_check",
            "finish_task_switch",
        ),
        "enter_lazy_tlb": ("enter_lazy_tlb",),
    }


class ActionTable:
    """Every Action this variant and configuration can enable, built once and shared by all
    copies of a world: enabled_actions() then only selects, never constructs, and apply()'s
    membership test compares by identity (measured: construction and hashing were half of the
    model's time)."""

    def __init__(self, variant: Variant, config: Config, paths: dict[str, tuple[str, ...]]):
        vas = config.vas()
        n = config.cpus
        mms = range(1, config.mms + 1)
        steps = {op for path in paths.values() for op in path}
        steps |= {"flush_smp_call_function_queue", "csd_unlock", *sorted(IRQ_OPS)}
        self.step = [{op: Action(c, op) for op in sorted(steps)} for c in range(n)]
        self.evict = [
            {
                (asid, va): Action(c, "tlb_evict", (("asid", asid), ("va", va)))
                for asid in range(config.asids)
                for va in vas
            }
            for c in range(n)
        ]
        self.pwc_evict = [
            {asid: Action(c, "pwc_evict", (("asid", asid),)) for asid in range(config.asids)}
            for c in range(n)
        ]

        def per_va(op: str) -> list[list[tuple[int, Action]]]:
            return [[(va, Action(c, op, (("va", va),))) for va in vas] for c in range(n)]

        self.fill = per_va("tlb_fill")
        self.read = per_va("user_read")
        self.write = per_va("user_write")
        self.nmi = [[a for _, a in row] for row in per_va("nmi")]
        self.madvise = per_va("madvise_dontneed")
        self.mprotect = per_va("mprotect")
        self.irqs_off = per_va("local_irq_disable")
        self.munmap = [Action(c, "munmap") for c in range(n)]
        self.writeback = [
            [
                (m, va, Action(c, "clear_page_dirty_for_io", (("mm", m), ("va", va))))
                for m in mms
                for va in vas
            ]
            for c in range(n)
        ]
        self.smp_call = [
            [
                Action(c, "smp_call_function_single", (("target", t), ("va", va)))
                for t in range(n)
                if t != c
                for va in vas
            ]
            for c in range(n)
        ]
        self.lazy = [Action(c, "enter_lazy_tlb", (("next", KTHREAD),)) for c in range(n)]
        first = variant.switch_steps()[0]
        self.switch = [{m: Action(c, first, (("next", m),)) for m in mms} for c in range(n)]
        self.leave_lazy = [
            {m: Action(c, "switch_mm_irqs_off__leave_lazy", (("next", m),)) for m in mms}
            for c in range(n)
        ]
        self.alloc: dict[int, list[Action]] = {}

    def alloc_for(self, pfn: int, mms: int) -> list[Action]:
        acts = self.alloc.get(pfn)
        if acts is None:
            acts = self.alloc[pfn] = [
                Action(GLOBAL, "alloc_page", (("pfn", pfn), ("to", to))) for to in range(mms + 1)
            ]
        return acts


@attrs.define(slots=True)
class World:
    """The whole model state, plus the variant and configuration it runs under."""

    variant: Variant
    config: Config
    cpus: list[Cpu]
    mms: list[Mm]  # index = mm id; mms[0] is init_mm (no user mappings)
    frames: list[Frame]
    csds: dict[CsdKey, Csd]
    found: tuple[Violation, ...] = ()
    paths: dict[str, tuple[str, ...]] = attrs.field(factory=dict, eq=False, repr=False)
    table: ActionTable | None = attrs.field(default=None, eq=False, repr=False)
    _enabled: list[Action] | None = attrs.field(default=None, eq=False, repr=False)
    _by_lane: list[tuple[list[Action], ...]] | None = attrs.field(
        default=None, eq=False, repr=False
    )

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def initial(cls, variant: Variant, config: Config | None = None) -> World:
        """Every CPU runs a user thread of mm A with an empty TLB; each mm maps its pages."""
        config = config or Config()
        frames: list[Frame] = []
        mms = [Mm(0, 0, 0, NO_PFN, {}, {}, frozenset(), ())]
        for mm_id in range(1, config.mms + 1):
            pt = len(frames)
            frames.append(Frame(PGTABLE, mm_id, 0, 0))
            ptes: dict[int, Pte] = {}
            vma: dict[int, bool] = {}
            for va in config.vas():
                pfn = len(frames)
                file = config.is_file_va(va)
                frames.append(Frame(FILE if file else ANON, mm_id, va, 0))
                # Shared file mappings start read-only for dirty tracking (write-notify): the
                # first write faults and marks the page dirty.
                ptes[va] = Pte(True, not file, False, False, pfn, 0)
                vma[va] = True
            all_cpus = (1 << config.cpus) - 1 if mm_id == 1 else 0
            mms.append(Mm(mm_id, 0, all_cpus, pt, ptes, vma, frozenset(), ()))
        ctxs = ((1, 0),) + ((0, 0),) * (config.asids - 1)
        budget = config.budget.as_tuple()
        cpus = [
            Cpu(
                task=1,
                loaded_mm=1,
                loaded_mm_asid=0,
                is_lazy=False,
                ctxs=ctxs,
                next_asid=1 % config.asids,
                cr3_mm=1,
                cr3_asid=0,
                irqs_on=True,
                tlb={},
                pwc={},
                queue=(),
                ipi_pending=False,
                async_func_in_progress="",
                flush_tlb_info=None,
                path="",
                pc=0,
                locals=Locals(),
                irq=None,
                budget=budget,
            )
            for _ in range(config.cpus)
        ]
        csds = {
            CsdKey(s, t, kind): Csd(locked=False, func="", sync=True)
            for s in range(config.cpus)
            for t in range(config.cpus)
            if s != t
            for kind in (CSD_MANY, CSD_SINGLE)
        }
        paths = build_paths(variant)
        table = ActionTable(variant, config, paths)
        return cls(variant, config, cpus, mms, frames, csds, paths=paths, table=table)

    def copy(self) -> World:
        """An independent copy: applying actions to one never changes the other."""
        return World(
            self.variant,
            self.config,
            [c.copy() for c in self.cpus],
            [m.copy() for m in self.mms],
            list(self.frames),
            dict(self.csds),
            self.found,
            self.paths,
            self.table,
        )

    def snapshot(self) -> tuple[object, ...]:
        """A hashable value covering every field of the state (not the variant or config)."""
        return (
            tuple(c.snapshot() for c in self.cpus),
            tuple(m.snapshot() for m in self.mms),
            tuple(self.frames),
            tuple(sorted(self.csds.items())),
            self.found,
        )

    # --- properties -------------------------------------------------------------------------
    def report(self, prop: str, message: str) -> None:
        """Record a broken event property (called by the step that breaks it)."""
        v = Violation(prop, message)
        if v not in self.found:
            self.found += (v,)

    def violations(self, props: Iterable[str] | None = None) -> list[Violation]:
        """Every broken property of ``props`` (default: all) in this state."""
        wanted = (
            PROPERTIES if props is None else props if isinstance(props, tuple) else tuple(props)
        )
        out = [v for v in self.found if v.prop in wanted]
        for name, check in STATE_CHECKS:
            if name in wanted:
                v = check(self)
                if v is not None:
                    out.append(v)
        return out

    # --- what may happen next ---------------------------------------------------------------
    def next_step(self, cpu: int) -> str:
        """The op of the next step of the kernel code ``cpu`` runs, or ""."""
        c = self.cpus[cpu]
        if c.irq is not None:
            op, _ = smp.next_irq_op(self, cpu)
            return op
        if c.path:
            return self.paths[c.path][c.pc]
        return ""

    def is_blocked(self, cpu: int) -> bool:
        """Spinning in csd_lock()/csd_lock_wait() (and not inside an IRQ handler)."""
        c = self.cpus[cpu]
        if c.irq is not None or not c.path:
            return False
        guard = GUARDS.get(self.paths[c.path][c.pc])
        return guard is not None and not guard(self, cpu)

    def progress_possible(self) -> bool:
        """Some CPU can run a kernel step or take an IPI."""
        for cpu, c in enumerate(self.cpus):
            if c.irq is not None or (c.ipi_pending and c.irqs_on):
                return True
            if c.path and not self.is_blocked(cpu):
                return True
        return False

    def enabled_actions(self) -> list[Action]:
        """Every action allowed now, in canonical order (see the module docstring)."""
        if self._enabled is None:
            self._enabled = [a for lane in self.enabled_by_lane() for cat in lane for a in cat]
        return self._enabled

    def enabled_by_lane(self) -> list[tuple[list[Action], ...]]:
        """The enabled actions grouped per lane (each CPU, then the page allocator) and per
        category: (kernel progress, hardware, NMI, new kernel path) for a CPU, and
        (frame reuse,) for the allocator. Concatenated, this is ``enabled_actions()``."""
        if self._by_lane is None:
            self._by_lane = self._compute_enabled()
        return self._by_lane

    def _compute_enabled(self) -> list[tuple[list[Action], ...]]:
        t = self.table
        assert t is not None
        lanes: list[tuple[list[Action], ...]] = []
        frames = self.frames
        for cpu, c in enumerate(self.cpus):
            step = t.step[cpu]
            # 1. the kernel code this CPU runs, or an interrupt
            progress: list[Action] = []
            if c.irq is not None:
                progress.append(step[smp.next_irq_op(self, cpu)[0]])
            else:
                if c.path:
                    op = self.paths[c.path][c.pc]
                    guard = GUARDS.get(op)
                    if guard is None or guard(self, cpu):
                        progress.append(step[op])
                if c.ipi_pending and c.irqs_on:
                    progress.append(step["flush_smp_call_function_queue"])
            # 2. hardware
            tlb = c.tlb
            evict = t.evict[cpu]
            hardware = [evict[k] for k in sorted(tlb)]
            if c.pwc:
                pwc_evict = t.pwc_evict[cpu]
                hardware.extend(pwc_evict[asid] for asid in sorted(c.pwc))
            if c.cr3_mm > INIT_MM:
                hardware.extend(a for va, a in t.fill[cpu] if hw.tlb_fill_enabled(self, c, va))
            if c.user_mode:
                ptes = self.mms[c.task].ptes
                asid = c.cr3_asid
                for (va, r), (_, wr) in zip(t.read[cpu], t.write[cpu], strict=True):
                    pte = ptes.get(va)
                    if (asid, va) in tlb or (pte is not None and pte.present):
                        hardware.append(r)
                        hardware.append(wr)
            # 3. NMI, then 4. new kernel paths
            starts = self._starts(cpu, c) if not c.path and c.irq is None else []
            lanes.append((progress, hardware, t.nmi[cpu], starts))
        # 5. the page allocator
        reuse: list[Action] = []
        if self.config.reuse:
            for pfn, f in enumerate(frames):
                if f.kind == FREE:
                    reuse.extend(t.alloc_for(pfn, self.config.mms))
        lanes.append((reuse,))
        return lanes

    def _starts(self, cpu: int, c: Cpu) -> list[Action]:
        t = self.table
        assert t is not None
        out: list[Action] = []
        b = c.budget
        if c.user_mode:
            mm_ = self.mms[c.task]
            ptes = mm_.ptes
            if b[START_BUDGET["munmap"]] > 0 and mm_.pgtable_pfn != NO_PFN:
                out.append(t.munmap[cpu])
            can_madvise = b[START_BUDGET["madvise_dontneed"]] > 0
            can_mprotect = b[START_BUDGET["mprotect"]] > 0
            can_irqs_off = b[START_BUDGET["local_irq_disable"]] > 0
            for (va, mad), (_, mpr), (_, irq) in zip(
                t.madvise[cpu], t.mprotect[cpu], t.irqs_off[cpu], strict=True
            ):
                pte = ptes.get(va)
                present = pte is not None and pte.present
                if present and can_madvise:
                    out.append(mad)
                if present and can_mprotect and mm_.vma_writable.get(va):
                    out.append(mpr)
                if can_irqs_off and (present or (c.cr3_asid, va) in c.tlb):
                    out.append(irq)
        if b[START_BUDGET["clear_page_dirty_for_io"]] > 0:
            for mm_id, va, a in t.writeback[cpu]:
                pte = self.mms[mm_id].ptes.get(va)
                if (
                    pte is not None
                    and pte.present
                    and (pte.dirty or pte.writable)
                    and self.frames[pte.pfn].kind == FILE
                    and self.frames[pte.pfn].page_dirty
                    and not mm.page_locked(self, pte.pfn)  # lock_page() would sleep
                ):
                    out.append(a)
        if b[START_BUDGET["smp_call_function_single"]] > 0:
            out.extend(t.smp_call[cpu])
        if b[START_BUDGET["enter_lazy_tlb"]] > 0:
            if c.task != KTHREAD:
                out.append(t.lazy[cpu])
            for nxt, a in t.switch[cpu].items():
                if nxt == c.task:
                    continue
                if c.task == KTHREAD and c.is_lazy and nxt == c.loaded_mm:
                    out.append(t.leave_lazy[cpu][nxt])
                else:
                    out.append(a)
        return out

    # --- doing it -------------------------------------------------------------------------
    def is_enabled(self, action: Action) -> bool:
        return action in self.enabled_actions()  # interned: compared by identity first

    def apply(self, action: Action) -> None:
        """Take one step. Raises ActionNotEnabled if the model does not allow it now."""
        if not self.is_enabled(action):
            raise ActionNotEnabled(f"{action} is not enabled")
        self._enabled = None
        self._by_lane = None
        op, cpu = action.op, action.cpu
        if cpu == GLOBAL:
            mm.alloc_page(self, action.arg("pfn"), action.arg("to"))
            return
        c = self.cpus[cpu]
        if op in IRQ_OPS:
            if op == "csd_unlock":
                smp.csd_unlock(self, cpu)
            else:
                smp.run_csd_func(self, cpu)
        elif op == "flush_smp_call_function_queue":
            smp.flush_smp_call_function_queue(self, cpu)
        elif op in HW_OPS:
            self._hardware(cpu, action)
        elif op == "nmi":
            mm.nmi(self, cpu, action.arg("va"))
        elif c.path:
            self._run_step(cpu, op)
        else:
            self._start(cpu, action)

    def _hardware(self, cpu: int, action: Action) -> None:
        c = self.cpus[cpu]
        op = action.op
        if op == "tlb_evict":
            del c.tlb[(action.arg("asid"), action.arg("va"))]
        elif op == "pwc_evict":
            del c.pwc[action.arg("asid")]
        elif op == "tlb_fill":
            hw.tlb_fill(self, cpu, action.arg("va"))
        else:
            hw.access(self, cpu, action.arg("va"), write=op == "user_write", who="user")

    def _start(self, cpu: int, action: Action) -> None:
        c = self.cpus[cpu]
        op = action.op
        c.budget = _spend(c.budget, START_BUDGET[op])
        fields = {ARG_TO_LOCAL[k]: v for k, v in action.args}
        c.locals = Locals(**fields)  # type: ignore[arg-type]
        c.path = op
        c.pc = 0
        if op in (self.variant.switch_steps()[0], "switch_mm_irqs_off__leave_lazy"):
            c.irqs_on = False  # schedule(): context_switch() runs with IRQs disabled
        self._run_step(cpu, op)

    def _run_step(self, cpu: int, op: str) -> None:
        c = self.cpus[cpu]
        STEPS[op](self, cpu)
        steps = self.paths[c.path]
        pc = c.pc + 1
        while pc < len(steps) and (skip := SKIPS.get(steps[pc])) is not None and skip(self, cpu):
            pc += 1
        if pc < len(steps):
            c.pc = pc
            return
        finish = FINISH.get(c.path)
        if finish is not None:
            finish(self, cpu)
        c.path = ""
        c.pc = 0
        c.locals = Locals()

    # --- convenience ------------------------------------------------------------------------
    def run(self, actions: Iterable[Action | str]) -> World:
        """Apply a schedule (actions or their text) in order; returns self."""
        from protocol.actions import parse

        for a in actions:
            self.apply(parse(a) if isinstance(a, str) else a)
        return self


def _spend(budget: tuple[int, ...], i: int) -> tuple[int, ...]:
    return budget[:i] + (budget[i] - 1,) + budget[i + 1 :]


__all__ = ["ActionNotEnabled", "ActionTable", "World", "build_paths"]
