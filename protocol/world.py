"""The world: every CPU, mm, frame and csd, and the one way to change them, ``apply(action)``.

``World.enabled_actions()`` lists, in a canonical order, every action the model allows now; all
nondeterminism (which CPU moves, when an IPI is taken, NMIs, speculative fills, evictions, frame
reuse) is a choice among them made from outside. Per CPU the order is: the next step of the
kernel code it is running (IRQ handler, else path), taking a pending IPI, hardware events, an
NMI, then starting a new kernel path; the page allocator's reuse of free frames comes last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

import attrs

from tlbfuzz.protocol import hw, mm, smp
from tlbfuzz.protocol.actions import GLOBAL, Action
from tlbfuzz.protocol.config import Config
from tlbfuzz.protocol.paths import ARG_TO_LOCAL, Path, Site, StartGuard, Step, always, budget_kinds
from tlbfuzz.protocol.properties import PROPERTIES
from tlbfuzz.protocol.state import (
    ANON,
    CACHE,
    CSD_MANY,
    CSD_SINGLE,
    FILE,
    FREE,
    INIT_MM,
    MUTABLE,
    NO_PFN,
    NOT_STATE,
    PARTS,
    PGTABLE,
    Cpu,
    Csd,
    CsdKey,
    Frame,
    Locals,
    Mm,
    Pte,
    Shared,
    Snapshotted,
    Violation,
    derive,
    names_cpus,
    perm_csds,
    perm_rcu,
)
from tlbfuzz.protocol.variants import Variant

if TYPE_CHECKING:
    from collections.abc import Iterable


class ActionNotEnabled(ValueError):
    """``apply()`` was given an action the model does not allow in this state."""


STATE_CHECKS: Final = tuple(
    (name, p.check) for name, p in sorted(PROPERTIES.items()) if p.check is not None
)
"""The state properties, in a fixed order, resolved once rather than on every call."""

IRQ_OPS: Final = frozenset({"csd_unlock", "flush_tlb_func", "read_user_func"})
HW_OPS: Final = frozenset(
    {"tlb_evict", "pwc_evict", "tlb_fill", "user_read", "user_write", "store_buffer_drain"}
)


class Start(NamedTuple):
    """One way a CPU may start a path: the path (and its index in ``Kernel.gates``), its
    budget slot, its locals, its start guard (None: ``always``), the action."""

    path: Path
    path_index: int
    budget: int
    locals: Locals
    guard: StartGuard | None
    action: Action


class Kernel:
    """A variant's kernel paths made concrete for one configuration: the paths and their
    steps, the budget kinds, and every Action that can ever be enabled. Built once by
    ``World.initial`` and shared by every copy: enabled_actions() then only selects, never
    constructs, and apply()'s membership test compares by identity (measured: construction and
    hashing were half of the model's time)."""

    def __init__(self, variant: Variant, config: Config) -> None:
        self.paths = dict(variant.paths())
        self.steps = {name: variant.path_steps(p) for name, p in self.paths.items()}
        self.kinds = budget_kinds(self.paths)
        slot = {k.name: i for i, k in enumerate(self.kinds)}
        by_name: dict[str, Step] = {}
        for path, steps in self.steps.items():
            if not steps:
                raise ValueError(f"kernel path {path!r} has no steps")
            for st in steps:
                if by_name.setdefault(st.name, st).run != st.run:
                    raise ValueError(f"two different steps are named {st.name!r}")
        self.may_start = None if type(variant).may_start is Variant.may_start else variant.may_start
        self.gates = [(slot[p.budget.name], p.from_user) for p in self.paths.values()]
        moving = {p.budget for p in self.paths.values() if p.moves}
        spare = any(config.budget_of(c, k) for c in range(config.cpus) for k in moving)
        self.vas: tuple[int, ...] = config.vas() + ((config.spare_va(),) if spare else ())
        """The user addresses of this instance: the mapped pages, and the spare address a
        path that ``moves`` pages may move one to (none without such a start in the budgets,
        so every other question keeps its state space)."""
        """Per path: its budget slot, and whether only a user task may start it."""
        n = config.cpus
        ops = sorted({*by_name, "flush_smp_call_function_queue", *IRQ_OPS})
        self.step = [{op: Action(c, op) for op in ops} for c in range(n)]
        self.starts: list[list[Start]] = []
        self.start_of: dict[Action, Start] = {}
        for cpu in range(n):
            row = []
            for index, (name, p) in enumerate(self.paths.items()):
                first = self.steps[name][0].name
                for values in p.args.values(config, cpu, self.vas):
                    args = tuple(zip(p.args.names, values, strict=True))
                    given = {ARG_TO_LOCAL[k]: v for k, v in args} | dict(p.holds)
                    lv = Locals()._replace(**given)  # type: ignore[arg-type]
                    guard = None if p.may_start is always else p.may_start
                    start = Start(
                        p, index, slot[p.budget.name], lv, guard, Action(cpu, first, args)
                    )
                    row.append(((p.args.rank, values, index), start))
            row.sort(key=lambda r: r[0])  # by argument domain, then value, then path
            self.starts.append([s for _, s in row])
            for _, s in row:
                if self.start_of.setdefault(s.action, s) is not s:
                    raise ValueError(f"two kernel paths start with the same action {s.action}")

        vas = self.vas
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
        self.drain = [Action(c, "store_buffer_drain") for c in range(n)]
        self.alloc: dict[int, list[Action]] = {}
        self.rcu_actions: dict[int, Action] = {}

    @classmethod
    def of(cls, variant: Variant, config: Config) -> Kernel:
        """The kernel of ``variant`` in ``config``, built once (a walker or the fuzzer starts
        thousands of worlds of the same instance; building it was a quarter of their time)."""
        key = (variant, config)
        k = _KERNELS.get(key)
        if k is None:
            if len(_KERNELS) >= 64:
                _KERNELS.clear()
            k = _KERNELS[key] = cls(variant, config)
        return k

    def rcu_free(self, pfn: int) -> Action:
        act = self.rcu_actions.get(pfn)
        if act is None:
            act = self.rcu_actions[pfn] = Action(GLOBAL, "tlb_remove_table_rcu", (("pfn", pfn),))
        return act

    def alloc_for(self, pfn: int, mms: int) -> list[Action]:
        acts = self.alloc.get(pfn)
        if acts is None:
            acts = self.alloc[pfn] = [
                Action(GLOBAL, "alloc_page", (("pfn", pfn), ("to", to))) for to in range(mms + 1)
            ]
        return acts


_KERNELS: dict[tuple[Variant, Config], Kernel] = {}


def _cpus_snapshot(cpus: Shared[Cpu]) -> tuple[object, ...]:
    return tuple(map(Cpu.snapshot, cpus.each()))


def _mms_snapshot(mms: Shared[Mm]) -> tuple[object, ...]:
    return tuple(map(Mm.snapshot, mms.each()))


@derive
@attrs.define(slots=True)
class World(Snapshotted):
    """The whole model state, plus the variant and configuration it runs under."""

    variant: Variant = attrs.field(eq=False, repr=False, metadata=NOT_STATE)
    config: Config = attrs.field(eq=False, repr=False, metadata=NOT_STATE)
    cpus: Shared[Cpu] = attrs.field(
        metadata={"copy": Shared.share, "freeze": _cpus_snapshot, **PARTS}
    )
    """Shared with copies until changed (``Shared``): take a CPU out (``w.cpus[i]``) to change
    it; ``w.cpus.peek(i)`` only to read it."""
    mms: Shared[Mm] = attrs.field(metadata={"copy": Shared.share, "freeze": _mms_snapshot, **PARTS})
    """Index = mm id; mms[0] is init_mm (no user mappings). Shared like ``cpus``."""
    frames: list[Frame] = attrs.field(metadata={"copy": list, "freeze": tuple})
    csds: dict[CsdKey, Csd] = attrs.field(metadata={**MUTABLE, "perm": perm_csds})
    rcu: tuple[tuple[int, int], ...] = attrs.field(metadata=names_cpus(perm_rcu))
    """Page-table pages waiting for an RCU grace period (``tlb_remove_table()``): (pfn, the
    CPUs that were in an IRQs-off section at ``call_rcu()`` and have not left it since)."""
    found: tuple[Violation, ...]
    kernel: Kernel = attrs.field(eq=False, repr=False, metadata=NOT_STATE)
    _enabled: list[Action] | None = attrs.field(default=None, eq=False, repr=False, metadata=CACHE)
    _by_lane: list[tuple[list[Action], ...]] | None = attrs.field(
        default=None, eq=False, repr=False, metadata=CACHE
    )

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def initial(cls, variant: Variant, config: Config | None = None) -> World:
        """Every CPU runs a user thread of mm A with an empty TLB; each mm maps its pages.
        ``config.budget`` is resolved against the variant's budget kinds: the world's config
        names every kind, so a run saved from it replays the same."""
        config = config or Config()
        kernel = Kernel.of(variant, config)
        config = config.resolved(kernel.kinds)
        frames: list[Frame] = []
        mms = [Mm(0, 0, 0, NO_PFN, {}, {}, frozenset(), (), 0, {})]
        for mm_id in range(1, config.mms + 1):
            pt = config.pfn_of(mm_id, 0)
            frames.append(Frame(PGTABLE, mm_id, 0, 0))
            ptes: dict[int, Pte] = {}
            vma: dict[int, bool] = {}
            for va in config.vas():
                pfn = config.pfn_of(mm_id, va)
                assert pfn == len(frames)
                file = config.is_file_va(va)
                frames.append(Frame(FILE if file else ANON, mm_id, va, 0, mapped=True))
                # Shared file mappings start read-only for dirty tracking (write-notify): the
                # first write faults and marks the page dirty.
                # An anonymous page was first touched by a write fault: soft-dirty.
                ptes[va] = Pte(True, not file, False, False, pfn, 0, soft_dirty=not file)
                vma[va] = True
            all_cpus = (1 << config.cpus) - 1 if mm_id == 1 else 0
            mms.append(Mm(mm_id, 0, all_cpus, pt, ptes, vma, frozenset(), (), 0, {}))
        # Spare free frames for the paths that allocate, never used before (version 0: the
        # allocator's reuse event leaves them alone, nothing can have cached them).
        allocating = {p.budget.name for p in kernel.paths.values() if p.allocates}
        spare = sum(
            config.budget_of(cpu, k)
            for cpu in range(config.cpus)
            for k in kernel.kinds
            if k.name in allocating
        )
        frames.extend(Frame(FREE, 0, 0, 0) for _ in range(spare))
        ctxs = ((1, 0),) + ((0, 0),) * (config.asids - 1)
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
                budget=tuple(config.budget_of(cpu, k) for k in kernel.kinds),
            )
            for cpu in range(config.cpus)
        ]
        csds = {
            CsdKey(s, t, kind): Csd(locked=False, func="", sync=True)
            for s in range(config.cpus)
            for t in range(config.cpus)
            if s != t
            for kind in (CSD_MANY, CSD_SINGLE)
        }
        return cls(variant, config, Shared.of(cpus), Shared.of(mms), frames, csds, (), (), kernel)

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

    # --- where each CPU is ------------------------------------------------------------------
    def site(self, cpu: int) -> Site:
        """The path ``cpu`` runs and the step it is at (its next step), for the variant's
        decision methods; an IRQ handler or an NMI runs on top of whatever this says."""
        c = self.cpus.peek(cpu)
        if not c.path:
            return Site("", "")
        return Site(c.path, self.kernel.steps[c.path][c.pc].name)

    def next_step(self, cpu: int) -> str:
        """The op of the next step of the kernel code ``cpu`` runs, or ""."""
        c = self.cpus.peek(cpu)
        if c.irq is not None:
            op, _ = smp.next_irq_op(self, cpu)
            return op
        if c.path:
            return self.kernel.steps[c.path][c.pc].name
        return ""

    def is_blocked(self, cpu: int) -> bool:
        """Spinning in csd_lock()/csd_lock_wait() (and not inside an IRQ handler)."""
        c = self.cpus.peek(cpu)
        if c.irq is not None or not c.path:
            return False
        guard = self.kernel.steps[c.path][c.pc].guard
        return guard is not None and not guard(self, cpu)

    def progress_possible(self) -> bool:
        """Some CPU can run a kernel step or take an IPI."""
        for cpu, c in enumerate(self.cpus.each()):
            if c.irq is not None or (c.ipi_pending and c.irqs_on):
                return True
            if c.path and not self.is_blocked(cpu):
                return True
        return False

    # --- what may happen next ---------------------------------------------------------------
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
        k = self.kernel
        lanes: list[tuple[list[Action], ...]] = []
        frames = self.frames
        for cpu, c in enumerate(self.cpus.each()):
            step = k.step[cpu]
            # 1. the kernel code this CPU runs, or an interrupt
            progress: list[Action] = []
            if c.irq is not None:
                progress.append(step[smp.next_irq_op(self, cpu)[0]])
            else:
                if c.path:
                    st = k.steps[c.path][c.pc]
                    if st.guard is None or st.guard(self, cpu):
                        progress.append(step[st.name])
                if c.ipi_pending and c.irqs_on:
                    progress.append(step["flush_smp_call_function_queue"])
            # 2. hardware
            tlb = c.tlb
            evict = k.evict[cpu]
            hardware = [evict[key] for key in sorted(tlb)]
            if c.store_buffer:  # x86-TSO: the oldest buffered store may reach memory now
                hardware.append(k.drain[cpu])
            if c.pwc:
                pwc_evict = k.pwc_evict[cpu]
                hardware.extend(pwc_evict[asid] for asid in sorted(c.pwc))
            if c.cr3_mm > INIT_MM:
                hardware.extend(a for va, a in k.fill[cpu] if hw.tlb_fill_enabled(self, c, va))
            if c.user_mode:
                ptes = self.mms.peek(c.task).ptes
                asid = c.cr3_asid
                for (va, r), (_, wr) in zip(k.read[cpu], k.write[cpu], strict=True):
                    pte = ptes.get(va)
                    if (asid, va) in tlb or (pte is not None and pte.present):
                        hardware.append(r)
                        hardware.append(wr)
            # 3. NMI, then 4. new kernel paths
            starts = self._starts(cpu, c) if not c.path and c.irq is None else []
            lanes.append((progress, hardware, k.nmi[cpu], starts))
        # 5. the page allocator
        reuse: list[Action] = []
        for pfn, waiting in self.rcu:
            if not waiting:
                reuse.append(k.rcu_free(pfn))
        if self.config.reuse:
            for pfn, f in enumerate(frames):
                if f.kind == FREE and f.version:  # freed once; not a spare frame
                    reuse.extend(k.alloc_for(pfn, self.config.mms))
        lanes.append((reuse,))
        return lanes

    def _starts(self, cpu: int, c: Cpu) -> list[Action]:
        """The paths ``cpu`` may start: budget left, a user task for a syscall, and the
        start guard (``Variant.may_start``, by default the path record's)."""
        budget = c.budget
        user = c.user_mode
        k = self.kernel
        open_ = [budget[slot] > 0 and (user or not from_user) for slot, from_user in k.gates]
        out = []
        if k.may_start is not None:  # the variant decides
            decide = k.may_start
            for path, index, _, lv, _, action in k.starts[cpu]:
                if open_[index] and decide(self, cpu, path, lv):
                    out.append(action)
            return out
        for _, index, _, lv, guard, action in k.starts[cpu]:
            if open_[index] and (guard is None or guard(self, cpu, lv)):
                out.append(action)
        return out

    # --- doing it -------------------------------------------------------------------------
    def is_enabled(self, action: Action) -> bool:
        return action in self.enabled_actions()  # interned: compared by identity first

    def apply(self, action: Action) -> None:
        """Take one step. Raises ActionNotEnabled if the model does not allow it now."""
        if not self.is_enabled(action):
            raise ActionNotEnabled(f"{action} is not enabled")
        self.apply_enabled(action)

    def apply_enabled(self, action: Action) -> None:
        """``apply()`` of an action taken from this state's ``enabled_actions()`` (or
        ``enabled_by_lane()``), as a search or a walk takes them: the same step without asking
        whether it is enabled (a scan of the list that cost the explorer a tenth of its time).
        An action from anywhere else goes through ``apply()``."""
        self._enabled = None
        self._by_lane = None
        op, cpu = action.op, action.cpu
        if cpu == GLOBAL:
            if op == "alloc_page":
                mm.alloc_page(self, action.arg("pfn"), action.arg("to"))
            else:
                mm.tlb_remove_table_rcu(self, action.arg("pfn"))
                mm.rcu_quiescent(self)
            return
        c = self.cpus.peek(cpu)
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
            self._run_step(cpu)
        else:
            self._start(cpu, self.kernel.start_of[action])
        if self.rcu:
            mm.rcu_quiescent(self)

    def _hardware(self, cpu: int, action: Action) -> None:
        op = action.op
        if op == "tlb_evict":
            del self.cpus[cpu].tlb[(action.arg("asid"), action.arg("va"))]
        elif op == "store_buffer_drain":
            hw.store_buffer_drain(self, cpu)
        elif op == "pwc_evict":
            del self.cpus[cpu].pwc[action.arg("asid")]
        elif op == "tlb_fill":
            hw.tlb_fill(self, cpu, action.arg("va"))
        else:
            hw.access(self, cpu, action.arg("va"), write=op == "user_write", who="user")

    def _start(self, cpu: int, start: Start) -> None:
        """Enter the path: spend the budget, take its arguments, then its first step like any
        other: it runs now, or the CPU spins on its guard (``csd_lock()`` of a csd in use)."""
        c = self.cpus[cpu]
        i = start.budget
        c.budget = c.budget[:i] + (c.budget[i] - 1,) + c.budget[i + 1 :]
        c.locals = start.locals
        if start.path.locks_page is not None:  # lock_page() as it starts
            c.locals = c.locals._replace(page=start.path.locks_page(self, cpu, c.locals))
        c.path = start.path.name
        c.pc = 0
        if start.path.irqs_off:
            c.irqs_on = False
        guard = self.kernel.steps[c.path][0].guard
        if guard is None or guard(self, cpu):
            self._run_step(cpu)

    def _run_step(self, cpu: int) -> None:
        c = self.cpus[cpu]
        steps = self.kernel.steps[c.path]
        steps[c.pc].run(self, cpu)
        pc = c.pc + 1
        while pc < len(steps) and (skip := steps[pc].skip) is not None and skip(self, cpu):
            pc += 1
        if pc < len(steps):
            c.pc = pc
            return
        returns = self.kernel.paths[c.path].returns
        if returns is not None:
            returns(self, cpu)
        c.path = ""
        c.pc = 0
        c.locals = Locals()

    # --- convenience ------------------------------------------------------------------------
    def run(self, actions: Iterable[Action | str]) -> World:
        """Apply a schedule (actions or their text) in order; returns self."""
        from tlbfuzz.protocol.actions import parse

        for a in actions:
            self.apply(parse(a) if isinstance(a, str) else a)
        return self


__all__ = ["ActionNotEnabled", "Kernel", "World"]
