"""Symmetry reduction: states equal up to renaming CPUs are one state to the explorer. Each
state record declares which of its fields name CPUs (``tlbfuzz.protocol.state.names_cpus``), so
renaming follows the fields by name.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from tlbfuzz.protocol.paths import CPU_ARGS
from tlbfuzz.protocol.state import Cpu, Mm

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from tlbfuzz.protocol.actions import Action
    from tlbfuzz.protocol.world import World


def permuted_snapshot(w: World, perm: Sequence[int]) -> tuple[object, ...]:
    """The snapshot of ``w`` with CPU ``i`` renamed ``perm[i]`` everywhere a CPU is named: the
    order of CPUs, and every field that its record declares as naming CPUs (``names_cpus`` in
    ``tlbfuzz.protocol.state``: cpumasks, csd senders and targets, queued csds, IRQ batches, the
    initiating CPU of flush_tlb_info...). Violation messages are left as they are (a search
    stops at the first one)."""
    snap: Any = w.snapshot()
    cpus: list[object] = [None] * len(w.cpus)
    for i, c in enumerate(snap.cpus):
        cpus[perm[i]] = renamed(c, Cpu.perms, perm)
    mms = tuple(renamed(m, Mm.perms, perm) for m in snap.mms)
    return renamed(snap._replace(cpus=tuple(cpus), mms=mms), type(w).perms, perm)  # type: ignore[no-any-return]


def renamed(snap: Any, perms: Iterable[tuple[str, Any]], perm: Sequence[int]) -> Any:
    """A record's snapshot with CPU ``i`` renamed ``perm[i]`` in the fields ``perms`` names
    (its class's ``perms``: each field's renaming function)."""
    return snap._replace(**{name: fn(getattr(snap, name), perm) for name, fn in perms})


def rename_cpus(schedule: Sequence[Action], perm: Sequence[int]) -> list[Action]:
    """``schedule`` with CPU ``i`` renamed ``perm[i]``, in every action and every argument
    naming a CPU (``tlbfuzz.protocol.paths.CPU_ARGS``)."""
    from tlbfuzz.protocol.actions import Action

    out = []
    for a in schedule:
        args = tuple((k, perm[v] if k in CPU_ARGS else v) for k, v in a.args)
        out.append(Action(perm[a.cpu] if a.cpu >= 0 else a.cpu, a.op, args))
    return out


def symmetric_fingerprint(w: World) -> int:
    """A visited-set key that is the same for states equal up to renaming CPUs (sound: every
    CPU starts identical and no step treats one CPU differently): the least hash over all
    renamings. A hash, not the state: 8 bytes a state, at a collision risk of about n^2/2^64."""
    n = len(w.cpus)
    return min(hash(permuted_snapshot(w, perm)) for perm in itertools.permutations(range(n)))
