"""x86-TSO store buffers: the abstract machine of Owens, Sarkar and Sewell, as pure functions
over immutable values, for the litmus tests (``tlbfuzz.protocol.litmus``) and the kernel model.

The machine is the papers' abstract machine (S. Owens, S. Sarkar, P. Sewell, "A Better x86
Memory Model: x86-TSO", TPHOLs 2009; P. Sewell, S. Sarkar, S. Owens, F. Zappa Nardelli,
M. O. Myreen, "x86-TSO: A Rigorous and Usable Programmer's Model for x86 Multiprocessors",
CACM 53(7), 2010; "the CACM paper" below): hardware threads, each with a FIFO store buffer,
a global lock, and one shared memory.

* each CPU (the papers' hardware thread) has a FIFO store buffer; a store enters the tail of
  the buffer (``store``);
* a load reads the CPU's own newest buffered store to that location, and memory only if there
  is none (``load``, ``newest``): the machine's two read transitions, from the buffer and from
  memory ("reads must check the local store buffer", CACM paper, on Intel's Example 8-4);
* the oldest store of a buffer reaches memory as a step of its own, chosen from outside like
  every nondeterministic choice of this model (``drain_oldest``): the machine's silent
  transition that dequeues the oldest write of a buffer. Drains of different CPUs are
  independent of each other (they commute unless they write the same location);
* ``MFENCE`` can execute only when the CPU's buffer is empty (``can_fence``): the scheduler
  has to drain first. LOCK'd instructions (locked read-modify-write, ``XCHG``) likewise
  (``can_lock``). Serialising instructions (``CPUID``, ``IRET``, a CR3 write) drain the
  buffer as well (Intel SDM vol. 3A, "Serializing Instructions"): model them as ``MFENCE``.

LOCK'd instructions. The paper's machine has a global lock: a LOCK'd instruction takes it,
reads, writes into its buffer, and may release it only when its buffer is empty; while it is
held no other CPU may read memory or drain ("not blocked"). Here a LOCK'd instruction is one
atomic step enabled only when the CPU's buffer is empty, reading and writing memory directly.
It reaches the same outcomes: under the lock nobody else reads memory or drains, so the stores
drained inside the lock could as well have drained just before it, and a store buffered inside
it is drained before the release. No lock state is needed.

Modelling bound: a buffer holds at most ``bound`` stores (``DEFAULT_BOUND``: 2), and a store is
not enabled while the CPU's buffer is full, so the scheduler drains first. Real buffers are
larger (dozens of entries) and the paper's are unbounded; a bounded machine has a subset of
the paper's executions, and all of them for a program with at most ``bound`` stores per CPU
between its start, fences and LOCK'd instructions (these empty the buffer, so it never holds
more). A "forbidden" found with a smaller bound only says so for the bounded machine.

Representation: a buffer is a tuple of ``Store(loc, value)``, oldest first; ``Buffers`` is a
tuple of them, one per CPU. Locations are any hashable values with a deterministic ``repr``
(the litmus tests use ``"x"``; the kernel model would use ``("tlb_gen", mm)`` or
``("loaded_mm", cpu)``); values are ints (bools are ints). ``Memory``, for the litmus tests, is
a tuple of ``(location, value)`` pairs in a canonical order; in the kernel model memory is the
world's own fields and only the buffers are new. Everything is immutable and hashable, so a
snapshot holds it as it is.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Final, NamedTuple, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

DEFAULT_BOUND: Final = 2
"""Store-buffer entries per CPU (a modelling bound; the issue asks for two, configurable)."""

Loc: TypeAlias = Hashable
"""A memory location: any hashable value whose ``repr`` is deterministic."""


class Store(NamedTuple):
    """A buffered store: ``MOV [loc] <- value`` not yet visible to the other CPUs."""

    loc: Loc
    value: int


Buffer: TypeAlias = tuple[Store, ...]
"""One CPU's store buffer, oldest store first."""
Buffers: TypeAlias = tuple[Buffer, ...]
"""The store buffers of all CPUs, indexed by CPU number."""
Memory: TypeAlias = tuple[tuple[Loc, int], ...]
"""Shared memory as (location, value) pairs in canonical order (``write``); absent: 0."""


class TsoError(ValueError):
    """A step the machine does not allow in this state (a full buffer, an empty drain)."""


# --- store buffers --------------------------------------------------------------------------


def empty(cpus: int) -> Buffers:
    """The buffers of ``cpus`` CPUs, all empty."""
    return ((),) * cpus


def can_store(buffers: Buffers, cpu: int, bound: int = DEFAULT_BOUND) -> bool:
    """A store of ``cpu`` is enabled: its buffer has room (the modelling bound)."""
    return len(buffers[cpu]) < bound


def store(buffers: Buffers, cpu: int, loc: Loc, value: int, bound: int = DEFAULT_BOUND) -> Buffers:
    """``MOV [loc] <- value`` on ``cpu``: the store enters the tail of its buffer (a write is
    always possible in the papers' machine; here only below the bound). Raises ``TsoError``
    when the buffer is full."""
    if not can_store(buffers, cpu, bound):
        raise TsoError(f"cpu{cpu}'s store buffer is full ({bound} entries): drain first")
    return buffers[:cpu] + (buffers[cpu] + (Store(loc, value),),) + buffers[cpu + 1 :]


def newest(buffers: Buffers, cpu: int, loc: Loc) -> Store | None:
    """The newest store to ``loc`` in ``cpu``'s own buffer, if any: what a load of ``loc`` by
    ``cpu`` reads (store forwarding: the machine's read from the store buffer)."""
    for s in reversed(buffers[cpu]):
        if s.loc == loc:
            return s
    return None


def load(buffers: Buffers, memory: Memory, cpu: int, loc: Loc) -> int:
    """``MOV reg <- [loc]`` on ``cpu``: its own newest buffered store to ``loc``, otherwise
    memory. The kernel model does the same with ``newest()`` and its own fields::

        hit = tso.newest(w.buffers, cpu, ("tlb_gen", mm))
        gen = hit.value if hit is not None else w.mms[mm].tlb_gen
    """
    hit = newest(buffers, cpu, loc)
    return hit.value if hit is not None else read(memory, loc)


def pending(buffers: Buffers) -> tuple[int, ...]:
    """The CPUs with a store to drain, in CPU order: one drain action each."""
    return tuple(cpu for cpu, b in enumerate(buffers) if b)


def drain_oldest(buffers: Buffers, cpu: int) -> tuple[Buffers, Store]:
    """Take the oldest store off ``cpu``'s buffer (FIFO): the caller writes it to memory,
    ``write(memory, *s)`` here or the world's own field in the kernel model (the machine's
    silent dequeue transition). Raises ``TsoError`` if it is empty."""
    b = buffers[cpu]
    if not b:
        raise TsoError(f"cpu{cpu}'s store buffer is empty: nothing to drain")
    return buffers[:cpu] + (b[1:],) + buffers[cpu + 1 :], b[0]


def drain(buffers: Buffers, memory: Memory, cpu: int) -> tuple[Buffers, Memory]:
    """``drain_oldest`` and the write of that store to ``memory``."""
    rest, s = drain_oldest(buffers, cpu)
    return rest, write(memory, s.loc, s.value)


def can_fence(buffers: Buffers, cpu: int) -> bool:
    """``MFENCE`` (and a serialising instruction) of ``cpu`` is enabled: its buffer is empty,
    as the papers' machine requires of an MFENCE."""
    return not buffers[cpu]


can_lock: Final[Callable[[Buffers, int], bool]] = can_fence
"""A LOCK'd instruction of ``cpu`` (locked RMW, ``XCHG``) is enabled: its buffer is empty,
then it reads and writes memory in one atomic step (see the module docstring)."""


def locked_rmw(
    buffers: Buffers, memory: Memory, cpu: int, loc: Loc, update: Callable[[int], int]
) -> tuple[int, Memory]:
    """A LOCK'd read-modify-write of ``loc`` by ``cpu`` (``XCHG``, ``LOCK XADD``,
    ``LOCK CMPXCHG``): one atomic step on memory, enabled only when ``cpu``'s buffer is empty
    (``can_lock``; see the module docstring). Returns the old value and the new memory.
    Raises ``TsoError`` if the buffer is not empty."""
    if not can_lock(buffers, cpu):
        raise TsoError(f"cpu{cpu}'s store buffer is not empty: drain before a LOCK'd instruction")
    old = read(memory, loc)
    return old, write(memory, loc, update(old))


def drain_all(buffers: Buffers, memory: Memory, cpu: int) -> tuple[Buffers, Memory]:
    """Every store of ``cpu``'s buffer reaches memory, oldest first: what the kernel model does
    at a fence, a locked or a serialising instruction instead of waiting for an empty buffer
    (the same executions: each drain is also an action the scheduler could take just before;
    ``protocol.litmus.TsoDrainAtFence`` checks it against the paper's verdicts)."""
    while buffers[cpu]:
        buffers, memory = drain(buffers, memory, cpu)
    return buffers, memory


def drained(buffers: Buffers) -> bool:
    """Every buffer is empty: every store has reached memory."""
    return not any(buffers)


def permute(
    buffers: Buffers, perm: Sequence[int], rename: Callable[[Store], Store] | None = None
) -> Buffers:
    """The buffers with CPU ``c``'s buffer moved to ``perm[c]``, for the explorer's symmetry
    reduction; ``rename`` renames the CPUs a store names (a location such as
    ``("loaded_mm", cpu)``, or a value that is a cpumask)."""
    out: list[Buffer] = [()] * len(buffers)
    for cpu, b in enumerate(buffers):
        out[perm[cpu]] = tuple(rename(s) for s in b) if rename is not None else b
    return tuple(out)


# --- memory (for the litmus tests) -----------------------------------------------------------


def read(memory: Memory, loc: Loc) -> int:
    """The value of ``loc`` in ``memory``; 0 if never written (memory starts zeroed, as in
    the litmus tests)."""
    for k, v in memory:
        if k == loc:
            return v
    return 0


def write(memory: Memory, loc: Loc, value: int) -> Memory:
    """``memory`` with ``loc`` holding ``value``. Canonical: pairs sorted by the location's
    ``repr`` and no pair holding 0, so equal contents are equal tuples whatever the order of
    the writes (the explorer's visited set relies on it)."""
    rest = tuple(p for p in memory if p[0] != loc)
    if value == 0:
        return rest
    return tuple(sorted((*rest, (loc, value)), key=lambda p: repr(p[0])))
