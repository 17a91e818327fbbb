"""Litmus tests as data, run through the explorer (``tlbfuzz.protocol.search.bfs``) on two memory
models over the same programs: sequential consistency (stores go straight to memory) and
x86-TSO (the store buffers of ``tlbfuzz.protocol.tso``).

A test is per-CPU programs of x86 instructions (``St``: ``MOV [x] <- v``; ``Ld``:
``MOV reg <- [x]``; ``Mfence``; the LOCK'd ``Xchg`` and ``Xadd``) and an ``exists`` condition
over final registers and memory. A ``LitmusWorld`` is the state of one run: each CPU's program
counter and registers, the store buffers and memory. Its actions are "CPU i executes its next
instruction" (``cpu0 store``, ``cpu1 load``, ...) and "CPU i drains its oldest buffered store"
(``cpu0 drain``). A state is final when every program has finished and every buffer is
drained, as a litmus test is run: its final values are read once every thread has finished
and its writes have reached memory. ``violations()`` reports the ``exists`` condition in a
final state that satisfies it (a ``Reached``), so ``bfs`` finding one means the outcome is
reachable: allowed. Exhausting the state space without finding one means forbidden.

The tests and their verdicts for x86-TSO are the papers' (S. Owens, S. Sarkar, P. Sewell,
"A Better x86 Memory Model: x86-TSO", TPHOLs 2009; P. Sewell et al., "x86-TSO: A Rigorous and
Usable Programmer's Model for x86 Multiprocessors", CACM 53(7), 2010: "the CACM paper"), which
go through Intel's examples (Intel SDM vol. 3A, 8.2.3) and AMD's, and add their own; each
test's ``source`` says where its program and verdict come from. The SC verdicts follow from
the definition of SC (one interleaving of the program steps): each outcome here needs a cycle
of program order and communication, which no interleaving has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple, Protocol, TypeAlias, cast

import attrs

from tlbfuzz.protocol import tso
from tlbfuzz.protocol.actions import Action
from tlbfuzz.protocol.search.bfs import bfs
from tlbfuzz.protocol.state import NOT_STATE, Snapshotted, derive
from tlbfuzz.protocol.world import ActionNotEnabled

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from tlbfuzz.protocol.state import Violation
    from tlbfuzz.protocol.world import World

ALLOWED: Final = "allowed"
FORBIDDEN: Final = "forbidden"
UNKNOWN: Final = "unknown"
"""Not reached, but the search stopped before exhausting the states: no verdict."""
EXISTS: Final = "exists"
"""The one "property" of a litmus world: its ``exists`` condition holds in a final state."""


# --- instructions ---------------------------------------------------------------------------


class St(NamedTuple):
    """``MOV [loc] <- value``: a store."""

    loc: str
    value: int

    def __str__(self) -> str:
        return f"MOV [{self.loc}] <- {self.value}"


class Ld(NamedTuple):
    """``MOV reg <- [loc]``: a load."""

    reg: str
    loc: str

    def __str__(self) -> str:
        return f"MOV {self.reg.upper()} <- [{self.loc}]"


class Mfence(NamedTuple):
    """``MFENCE``: enabled only when the CPU's store buffer is empty."""

    def __str__(self) -> str:
        return "MFENCE"


class Xchg(NamedTuple):
    """``XCHG [loc], reg`` with ``reg`` holding ``value`` (implicitly LOCK'd): memory gets
    ``value``, ``reg`` gets the old contents. Enabled only when the buffer is empty."""

    loc: str
    value: int
    reg: str

    def __str__(self) -> str:
        return f"XCHG [{self.loc}] <- {self.value}, {self.reg.upper()} <- old"


class Xadd(NamedTuple):
    """``LOCK XADD [loc], reg`` with ``reg`` holding ``value``: memory gets old + ``value``,
    ``reg`` gets the old contents. Enabled only when the buffer is empty."""

    loc: str
    value: int
    reg: str

    def __str__(self) -> str:
        return f"LOCK XADD [{self.loc}] += {self.value}, {self.reg.upper()} <- old"


Instruction: TypeAlias = St | Ld | Mfence | Xchg | Xadd

OPS: Final[dict[type, str]] = {
    St: "store",
    Ld: "load",
    Mfence: "mfence",
    Xchg: "xchg",
    Xadd: "xadd",
}
"""The action name of executing each kind of instruction (``cpu0 store``)."""
DRAIN: Final = "drain"


# --- conditions -----------------------------------------------------------------------------


class Reg(NamedTuple):
    """``cpu:reg=value`` in a final state."""

    cpu: int
    reg: str
    value: int

    def __str__(self) -> str:
        return f"{self.cpu}:{self.reg}={self.value}"


class Mem(NamedTuple):
    """``loc=value`` in final memory."""

    loc: str
    value: int

    def __str__(self) -> str:
        return f"{self.loc}={self.value}"


Condition: TypeAlias = Reg | Mem


@attrs.frozen
class LitmusTest:
    """A litmus test: programs, the outcome asked about, and its verdicts."""

    name: str
    programs: tuple[tuple[Instruction, ...], ...]
    exists: tuple[Condition, ...]
    paper: str
    """The x86-TSO verdict of the source (``ALLOWED`` or ``FORBIDDEN``)."""
    source: str
    """Where the program and the x86-TSO verdict come from."""
    sc: str = FORBIDDEN
    """The SC verdict (from the definition of SC)."""

    @property
    def outcome(self) -> str:
        """The ``exists`` condition, herd style: ``0:eax=0 /\\ 1:ebx=0``."""
        return " /\\ ".join(str(c) for c in self.exists)

    @property
    def max_stores(self) -> int:
        """The most stores a CPU's buffer can hold in this test (its stores between fences and
        LOCK'd instructions): a bound at least this large loses no TSO execution."""
        most = 0
        for prog in self.programs:
            run = 0
            for ins in prog:
                if isinstance(ins, St):
                    run += 1
                    most = max(most, run)
                elif not isinstance(ins, Ld):
                    run = 0  # MFENCE and LOCK'd instructions wait for an empty buffer
        return most

    def listing(self) -> list[str]:
        """The programs side by side, one line per instruction slot."""
        cols = [[f"P{i}", *(str(ins) for ins in p)] for i, p in enumerate(self.programs)]
        width = [max(len(s) for s in c) for c in cols]
        rows = max(len(c) for c in cols)
        return [
            " | ".join(
                (c[r] if r < len(c) else "").ljust(w) for c, w in zip(cols, width, strict=True)
            ).rstrip()
            for r in range(rows)
        ]


# --- memory models --------------------------------------------------------------------------


class Machine(Protocol):
    """A memory model over ``tso.Buffers`` and ``tso.Memory``: which steps are enabled and
    what they do. ``Sc`` and ``Tso``; tests subclass ``Tso`` to break it on purpose."""

    @property
    def name(self) -> str: ...

    def can_store(self, buffers: tso.Buffers, cpu: int) -> bool: ...

    def store(
        self, buffers: tso.Buffers, memory: tso.Memory, cpu: int, loc: str, value: int
    ) -> tuple[tso.Buffers, tso.Memory]: ...

    def load(self, buffers: tso.Buffers, memory: tso.Memory, cpu: int, loc: str) -> int: ...

    def can_fence(self, buffers: tso.Buffers, cpu: int) -> bool: ...

    def can_lock(self, buffers: tso.Buffers, cpu: int) -> bool: ...

    def rmw(
        self,
        buffers: tso.Buffers,
        memory: tso.Memory,
        cpu: int,
        loc: str,
        update: Callable[[int], int],
    ) -> tuple[int, tso.Buffers, tso.Memory]:
        """A LOCK'd read-modify-write: the old value, and the buffers and memory after."""
        ...

    def pending(self, buffers: tso.Buffers) -> tuple[int, ...]: ...

    def drain(
        self, buffers: tso.Buffers, memory: tso.Memory, cpu: int
    ) -> tuple[tso.Buffers, tso.Memory]: ...

    def fence(
        self, buffers: tso.Buffers, memory: tso.Memory, cpu: int
    ) -> tuple[tso.Buffers, tso.Memory]:
        """An enabled MFENCE: what it does to the buffers and memory (nothing, in the papers'
        machine, where it is enabled only on an empty buffer)."""
        ...


@attrs.frozen
class Sc:
    """Sequential consistency: a store writes memory at once, a load reads memory, a fence and
    a LOCK'd instruction are always enabled; there is never anything to drain."""

    name: str = "SC"

    def can_store(self, buffers: tso.Buffers, cpu: int) -> bool:
        return True

    def store(
        self, buffers: tso.Buffers, memory: tso.Memory, cpu: int, loc: str, value: int
    ) -> tuple[tso.Buffers, tso.Memory]:
        return buffers, tso.write(memory, loc, value)

    def load(self, buffers: tso.Buffers, memory: tso.Memory, cpu: int, loc: str) -> int:
        return tso.read(memory, loc)

    def can_fence(self, buffers: tso.Buffers, cpu: int) -> bool:
        return True

    def can_lock(self, buffers: tso.Buffers, cpu: int) -> bool:
        return True

    def rmw(
        self,
        buffers: tso.Buffers,
        memory: tso.Memory,
        cpu: int,
        loc: str,
        update: Callable[[int], int],
    ) -> tuple[int, tso.Buffers, tso.Memory]:
        old = tso.read(memory, loc)
        return old, buffers, tso.write(memory, loc, update(old))

    def pending(self, buffers: tso.Buffers) -> tuple[int, ...]:
        return ()

    def fence(
        self, buffers: tso.Buffers, memory: tso.Memory, cpu: int
    ) -> tuple[tso.Buffers, tso.Memory]:
        return buffers, memory

    def drain(
        self, buffers: tso.Buffers, memory: tso.Memory, cpu: int
    ) -> tuple[tso.Buffers, tso.Memory]:
        raise tso.TsoError("SC has no store buffers")


@attrs.frozen
class Tso:
    """x86-TSO with ``bound`` store-buffer entries per CPU: ``tlbfuzz.protocol.tso``."""

    bound: int = tso.DEFAULT_BOUND
    name: str = "TSO"

    def can_store(self, buffers: tso.Buffers, cpu: int) -> bool:
        return tso.can_store(buffers, cpu, self.bound)

    def store(
        self, buffers: tso.Buffers, memory: tso.Memory, cpu: int, loc: str, value: int
    ) -> tuple[tso.Buffers, tso.Memory]:
        return tso.store(buffers, cpu, loc, value, self.bound), memory

    def load(self, buffers: tso.Buffers, memory: tso.Memory, cpu: int, loc: str) -> int:
        return tso.load(buffers, memory, cpu, loc)

    def can_fence(self, buffers: tso.Buffers, cpu: int) -> bool:
        return tso.can_fence(buffers, cpu)

    def can_lock(self, buffers: tso.Buffers, cpu: int) -> bool:
        return tso.can_lock(buffers, cpu)

    def rmw(
        self,
        buffers: tso.Buffers,
        memory: tso.Memory,
        cpu: int,
        loc: str,
        update: Callable[[int], int],
    ) -> tuple[int, tso.Buffers, tso.Memory]:
        old, memory = tso.locked_rmw(buffers, memory, cpu, loc, update)
        return old, buffers, memory

    def pending(self, buffers: tso.Buffers) -> tuple[int, ...]:
        return tso.pending(buffers)

    def drain(
        self, buffers: tso.Buffers, memory: tso.Memory, cpu: int
    ) -> tuple[tso.Buffers, tso.Memory]:
        return tso.drain(buffers, memory, cpu)

    def fence(
        self, buffers: tso.Buffers, memory: tso.Memory, cpu: int
    ) -> tuple[tso.Buffers, tso.Memory]:
        return buffers, memory


@attrs.frozen
class TsoDrainAtFence(Tso):
    """x86-TSO as the kernel model runs it: an MFENCE or a LOCK'd instruction is always
    enabled and drains its CPU's buffer first (``tso.drain_all``), instead of waiting for the
    buffer to be empty. It must reach exactly the paper's outcomes (``tests/test_litmus.py``)."""

    name: str = "TSO, drain at fence"

    def can_fence(self, buffers: tso.Buffers, cpu: int) -> bool:
        return True

    def can_lock(self, buffers: tso.Buffers, cpu: int) -> bool:
        return True

    def fence(
        self, buffers: tso.Buffers, memory: tso.Memory, cpu: int
    ) -> tuple[tso.Buffers, tso.Memory]:
        return tso.drain_all(buffers, memory, cpu)

    def rmw(
        self,
        buffers: tso.Buffers,
        memory: tso.Memory,
        cpu: int,
        loc: str,
        update: Callable[[int], int],
    ) -> tuple[int, tso.Buffers, tso.Memory]:
        buffers, memory = tso.drain_all(buffers, memory, cpu)
        return super().rmw(buffers, memory, cpu, loc, update)


# --- the state of one run -------------------------------------------------------------------


class Reached(NamedTuple):
    """The ``exists`` condition holds in a final state: what ``violations()`` reports (the
    same shape as ``tlbfuzz.protocol.state.Violation``, which ``bfs`` reads: ``prop`` and
    ``message``; not a kernel property, so not one of ``tlbfuzz.protocol.properties``)."""

    prop: str
    message: str

    def __str__(self) -> str:
        return f"{self.prop}: {self.message}"


Regs: TypeAlias = tuple[tuple[str, int], ...]
"""One CPU's registers: (name, value) sorted by name; absent: 0."""


def _set_reg(regs: Regs, name: str, value: int) -> Regs:
    return tuple(sorted((*(r for r in regs if r[0] != name), (name, value))))


def _get_reg(regs: Regs, name: str) -> int:
    for k, v in regs:
        if k == name:
            return v
    return 0


@derive
@attrs.define(slots=True)
class LitmusWorld(Snapshotted):
    """One run of a litmus test on a memory model. Every state field is an immutable tuple,
    so ``copy()`` shares them and ``snapshot()`` is a tuple of them (``derive``)."""

    test: LitmusTest = attrs.field(metadata=NOT_STATE)
    machine: Machine = attrs.field(metadata=NOT_STATE)
    pcs: tuple[int, ...]
    regs: tuple[Regs, ...]
    buffers: tso.Buffers
    memory: tso.Memory

    @classmethod
    def initial(cls, test: LitmusTest, machine: Machine) -> LitmusWorld:
        n = len(test.programs)
        return cls(test, machine, (0,) * n, ((),) * n, tso.empty(n), ())

    def next_instruction(self, cpu: int) -> Instruction | None:
        prog = self.test.programs[cpu]
        pc = self.pcs[cpu]
        return prog[pc] if pc < len(prog) else None

    def _can_execute(self, cpu: int, ins: Instruction) -> bool:
        if isinstance(ins, St):
            return self.machine.can_store(self.buffers, cpu)
        if isinstance(ins, Ld):
            return True
        if isinstance(ins, Mfence):
            return self.machine.can_fence(self.buffers, cpu)
        return self.machine.can_lock(self.buffers, cpu)

    def enabled_actions(self) -> list[Action]:
        """Each CPU's next instruction if enabled, then each CPU's drain, in CPU order."""
        out = []
        for cpu in range(len(self.pcs)):
            ins = self.next_instruction(cpu)
            if ins is not None and self._can_execute(cpu, ins):
                out.append(Action(cpu, OPS[type(ins)]))
        out.extend(Action(cpu, DRAIN) for cpu in self.machine.pending(self.buffers))
        return out

    def apply(self, action: Action) -> None:
        if action not in self.enabled_actions():
            raise ActionNotEnabled(f"{action} is not enabled")
        self.apply_enabled(action)

    def apply_enabled(self, action: Action) -> None:
        """``apply()`` of an action from ``enabled_actions()``, unchecked (the explorer's)."""
        cpu = action.cpu
        if action.op == DRAIN:
            self.buffers, self.memory = self.machine.drain(self.buffers, self.memory, cpu)
            return
        ins = self.next_instruction(cpu)
        regs = self.regs[cpu]
        if isinstance(ins, St):
            self.buffers, self.memory = self.machine.store(
                self.buffers, self.memory, cpu, ins.loc, ins.value
            )
        elif isinstance(ins, Ld):
            value = self.machine.load(self.buffers, self.memory, cpu, ins.loc)
            regs = _set_reg(regs, ins.reg, value)
        elif isinstance(ins, Xchg):
            old, self.buffers, self.memory = self.machine.rmw(
                self.buffers, self.memory, cpu, ins.loc, lambda _: ins.value
            )
            regs = _set_reg(regs, ins.reg, old)
        elif isinstance(ins, Xadd):
            old, self.buffers, self.memory = self.machine.rmw(
                self.buffers, self.memory, cpu, ins.loc, lambda v: v + ins.value
            )
            regs = _set_reg(regs, ins.reg, old)
        else:  # Mfence: nothing to do once enabled, in the papers' machine
            self.buffers, self.memory = self.machine.fence(self.buffers, self.memory, cpu)
        self.regs = self.regs[:cpu] + (regs,) + self.regs[cpu + 1 :]
        self.pcs = self.pcs[:cpu] + (self.pcs[cpu] + 1,) + self.pcs[cpu + 1 :]

    def final(self) -> bool:
        """Every program has finished and every store has reached memory."""
        done = all(pc == len(p) for pc, p in zip(self.pcs, self.test.programs, strict=True))
        return done and tso.drained(self.buffers)

    def holds(self, cond: Condition) -> bool:
        if isinstance(cond, Reg):
            return _get_reg(self.regs[cond.cpu], cond.reg) == cond.value
        return tso.read(self.memory, cond.loc) == cond.value

    def state_text(self) -> str:
        """Registers and memory, herd style: ``0:eax=1; 0:ebx=0; x=1``."""
        regs = [f"{cpu}:{k}={v}" for cpu, rs in enumerate(self.regs) for k, v in rs]
        return "; ".join(regs + [f"{k}={v}" for k, v in self.memory]) or "all zero"

    def violations(self, props: Iterable[str] | None = None) -> list[Reached]:
        """``Reached`` if this is a final state where the test's ``exists`` holds."""
        if props is not None and EXISTS not in props:
            return []
        if not self.final() or not all(self.holds(c) for c in self.test.exists):
            return []
        return [Reached(EXISTS, f"{self.test.outcome} in final state {self.state_text()}")]


# --- running a test -------------------------------------------------------------------------


@attrs.frozen
class LitmusResult:
    """The exhaustive search of one test on one memory model."""

    test: LitmusTest
    model: str
    allowed: bool
    witness: tuple[Action, ...] | None
    """A shortest schedule reaching the outcome, if allowed."""
    states: int
    exhausted: bool
    """Every reachable state was explored (so a forbidden verdict is a proof)."""

    @property
    def verdict(self) -> str:
        """``ALLOWED``, ``FORBIDDEN``, or ``UNKNOWN`` if not found and not exhausted."""
        if self.allowed:
            return ALLOWED
        return FORBIDDEN if self.exhausted else UNKNOWN


def explore(test: LitmusTest, machine: Machine) -> LitmusResult:
    """Search every state of ``test`` on ``machine`` with ``bfs``; the outcome is allowed if
    some final state satisfies ``exists``. The search goes on after the first witness, so the
    state count is that of the whole space and ``exhausted`` says it was all explored."""
    start = LitmusWorld.initial(test, machine)
    # Each instruction executes once and buffers at most one store, drained once: no run is
    # longer than twice the instructions, so the search ends by exhausting the states.
    longest = 2 * sum(len(p) for p in test.programs)
    witnesses: list[list[Action]] = []

    def found(path: list[Action], _: Violation) -> bool:
        witnesses.append(path)
        return True  # keep going: count the whole state space

    # bfs is annotated for the kernel World but uses only the methods LitmusWorld has:
    # enabled_actions(), copy(), apply(), violations() and snapshot(); its violations are
    # read as (prop, message), which Reached is.
    r = bfs(cast("World", start), (EXISTS,), max_depth=longest + 1, on_violation=found)
    witness = tuple(witnesses[0]) if witnesses else None
    return LitmusResult(test, machine.name, bool(witnesses), witness, r.states, r.exhausted)


@attrs.frozen
class Row:
    """One test on both models, compared with the expected verdicts."""

    test: LitmusTest
    sc: LitmusResult
    tso: LitmusResult

    @property
    def agrees(self) -> bool:
        return self.sc.verdict == self.test.sc and self.tso.verdict == self.test.paper


def run_all(bound: int = tso.DEFAULT_BOUND, tests: Iterable[LitmusTest] | None = None) -> list[Row]:
    """Every test (default ``TESTS``) on SC and on x86-TSO with ``bound`` buffer entries."""
    return [
        Row(t, explore(t, Sc()), explore(t, Tso(bound)))
        for t in (TESTS if tests is None else tests)
    ]


# --- the tests ------------------------------------------------------------------------------

_CACM: Final = "Sewell et al., CACM 2010"

TESTS: Final[tuple[LitmusTest, ...]] = (
    LitmusTest(
        "SB",
        ((St("x", 1), Ld("eax", "y")), (St("y", 1), Ld("ebx", "x"))),
        (Reg(0, "eax", 0), Reg(1, "ebx", 0)),
        ALLOWED,
        f"{_CACM}: SB, the example of its section 1 (Intel's Example 8-3), which x86-TSO "
        "permits: each load can run while the CPU's own store is still buffered",
    ),
    LitmusTest(
        "SB+mfences",
        ((St("x", 1), Mfence(), Ld("eax", "y")), (St("y", 1), Mfence(), Ld("ebx", "x"))),
        (Reg(0, "eax", 0), Reg(1, "ebx", 0)),
        FORBIDDEN,
        "AMD's test amd5 as the papers name it: SB with an MFENCE between store and load, "
        "forbidden (program and verdict as transcribed in foreverbell/x86-litmus "
        "tests/amd5.rs, which runs the CACM paper's tests)",
    ),
    LitmusTest(
        "MP",
        ((St("x", 1), St("y", 1)), (Ld("eax", "y"), Ld("ebx", "x"))),
        (Reg(1, "eax", 1), Reg(1, "ebx", 0)),
        FORBIDDEN,
        f"{_CACM}, on Intel's Example 8-1 (stores are not reordered with other stores): "
        "forbidden because Proc 0's store buffer is FIFO",
    ),
    LitmusTest(
        "LB",
        ((Ld("eax", "x"), St("y", 1)), (Ld("ebx", "y"), St("x", 1))),
        (Reg(0, "eax", 1), Reg(1, "ebx", 1)),
        FORBIDDEN,
        f"{_CACM}, on Intel's Example 8-2 (stores are not reordered with older loads): "
        "forbidden because reads are never delayed",
    ),
    LitmusTest(
        "IRIW",
        (
            (St("x", 1),),
            (St("y", 1),),
            (Ld("eax", "x"), Ld("ebx", "y")),
            (Ld("ecx", "y"), Ld("edx", "x")),
        ),
        (Reg(2, "eax", 1), Reg(2, "ebx", 0), Reg(3, "ecx", 1), Reg(3, "edx", 0)),
        FORBIDDEN,
        f"{_CACM}: IRIW, the independent reads of independent writes (Intel's Example 8-7, "
        "stores are seen in a consistent order by other processors): forbidden, there is "
        "one shared memory (as transcribed in foreverbell/x86-litmus tests/iriw.rs)",
    ),
    LitmusTest(
        "2+2W",
        ((St("x", 2), St("y", 1)), (St("y", 2), St("x", 1))),
        (Mem("x", 2), Mem("y", 2)),
        FORBIDDEN,
        "not one of the papers' named tests: the program is herdtools7's "
        "catalogue/x86/tests/2+2W.litmus; forbidden by x86-TSO since each FIFO buffer writes "
        "memory in program order (herdtools7's x86tso.cat: po between writes is in ghb)",
    ),
    LitmusTest(
        "n6",
        ((St("x", 1), Ld("eax", "x"), Ld("ebx", "y")), (St("y", 2), St("x", 2))),
        (Reg(0, "eax", 1), Reg(0, "ebx", 0), Mem("x", 1)),
        ALLOWED,
        f"{_CACM}, test n6: allowed, Proc 0 reads its own store to x from its buffer before "
        "the store reaches memory, after Proc 1's store to x (program and verdict as "
        "transcribed in foreverbell/x86-litmus tests/n6.rs, which runs the CACM paper's tests)",
    ),
    LitmusTest(
        "SB+xchgs",
        ((Xchg("x", 1, "eax"), Ld("ebx", "y")), (Xchg("y", 1, "ecx"), Ld("edx", "x"))),
        (Reg(0, "ebx", 0), Reg(1, "edx", 0)),
        FORBIDDEN,
        "Intel SDM vol. 3A 8.2.3.9, its first example (Example 8-9 in the editions the papers "
        "discuss; loads are not reordered with locks): SB with XCHG for the stores, "
        "forbidden; foreverbell/x86-litmus tests/ex9.rs transcribes it as forbidden",
    ),
)
BY_NAME: Final = {t.name: t for t in TESTS}
