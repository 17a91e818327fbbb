"""Search over the model, by role, all pure and free of Hypothesis: breadth-first search
(``bfs``), making a violating schedule small (``reduce``: replay, ddmin, minimise, fewest CPUs),
symmetry reduction (``symmetry``) and random walks with the randomness passed in (``walk``)."""

from tlbfuzz.protocol.search.bfs import Collapse, Levels, SearchResult, bfs
from tlbfuzz.protocol.search.reduce import (
    Replayed,
    ddmin,
    drop_cpu,
    fewer_cpus,
    first_violation,
    minimise,
    replayed,
)
from tlbfuzz.protocol.search.symmetry import permuted_snapshot, rename_cpus, symmetric_fingerprint

__all__ = [
    "Collapse",
    "Levels",
    "Replayed",
    "SearchResult",
    "bfs",
    "ddmin",
    "drop_cpu",
    "fewer_cpus",
    "first_violation",
    "minimise",
    "permuted_snapshot",
    "rename_cpus",
    "replayed",
    "symmetric_fingerprint",
]
