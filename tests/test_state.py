"""The state records' derived copy() and snapshot(): every field of every record is in the
snapshot and copy() is independent, so a field added tomorrow cannot make the explorer's visited
set unsound unnoticed; and every property name the model reports is a known property."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import attrs
import pytest

from tlbfuzz.protocol import PROPERTIES, VARIANTS, World, properties
from tlbfuzz.protocol.state import MUTABLE, Cpu, Mm, Shared, Snapshotted, derive

# A state with every container non-empty: TLB and paging-structure caches filled, a csd queued,
# an IRQ batch in progress, a flush in flight.
BUSY = (
    "cpu1 user_write va=0x1000",
    "cpu0 madvise_dontneed va=0x1000",
    "cpu0 zap_pte_range",
    "cpu0 tlb_finish_mmu__mm_tlb_flush_nested",
    "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
    "cpu0 native_flush_tlb_multi__send_ipis",
    "cpu1 flush_smp_call_function_queue",
)


def busy_world() -> World:
    return World.initial(VARIANTS["rfc-async"]).run(BUSY)


def perturb(value: Any) -> Any:
    """A different value the snapshot must tell apart from ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, dict):
        d = dict(value)
        if d:
            key = next(iter(d))
            d[key] = perturb(d[key])  # a value, not a key: a keys-only freeze must show
        else:
            d[0] = 0
        return d
    if isinstance(value, Shared):  # a world's CPUs or mms: still a Shared list
        return Shared.of(list(value)[:-1])
    if isinstance(value, list):
        return value[:-1] if value else [0]
    if isinstance(value, frozenset):
        return value | {-1}
    fields = getattr(value, "_fields", ())
    if isinstance(value, tuple) and fields:  # a NamedTuple record
        return value._replace(**{fields[0]: perturb(getattr(value, fields[0]))})  # type: ignore[attr-defined]
    if isinstance(value, tuple):
        return (*value, None)
    return object()  # None, or a frozen record: any other object differs


def fields_missing_from_snapshot(record: Snapshotted) -> list[str]:
    """The state fields of ``record`` whose change leaves its snapshot unchanged."""
    base = record.snapshot()
    missed = []
    for f in attrs.fields(type(record)):  # type: ignore[arg-type]
        if not f.metadata.get("snapshot", True):
            continue
        other = record.copy()
        setattr(other, f.name, perturb(getattr(other, f.name)))
        if other.snapshot() == base:
            missed.append(f.name)
    return missed


def mutate_in_place(obj: Any) -> None:
    """Change every container reachable from ``obj`` in place."""
    if isinstance(obj, dict):
        obj[-12345] = None
    elif isinstance(obj, list):
        for x in obj:
            mutate_in_place(x)
        obj.append(None)
    elif attrs.has(type(obj)):
        for f in attrs.fields(type(obj)):
            if f.metadata.get("snapshot", True):
                mutate_in_place(getattr(obj, f.name))


def records() -> list[tuple[str, Snapshotted]]:
    w = busy_world()
    return [("World", w), ("Cpu", w.cpus[1]), ("Mm", w.mms[1])]


@pytest.mark.parametrize(("name", "record"), records(), ids=lambda x: str(x)[:5])
def test_every_state_field_is_in_the_snapshot(name: str, record: Snapshotted) -> None:
    assert fields_missing_from_snapshot(record) == []


@pytest.mark.parametrize(("name", "record"), records(), ids=lambda x: str(x)[:5])
def test_a_copy_shares_nothing_that_changes(name: str, record: Snapshotted) -> None:
    before = record.snapshot()
    twin = record.copy()
    assert twin.snapshot() == before
    mutate_in_place(twin)
    assert record.snapshot() == before


def test_the_world_leaves_out_only_what_is_not_state() -> None:
    """Marking a state field ``not_state`` would hide it from the explorer: the world's
    exceptions are the variant, the configuration, the derived kernel tables and caches."""
    hidden = {f.name for f in attrs.fields(World) if not f.metadata.get("snapshot", True)}
    assert hidden == {"variant", "config", "kernel", "_enabled", "_by_lane"}
    for cls in (Cpu, Mm):
        assert all(f.metadata.get("snapshot", True) for f in attrs.fields(cls))


def test_the_coverage_check_catches_a_field_left_out() -> None:
    """The check itself can fail: a record whose snapshot loses a field (here a lossy freeze
    of a dict to its keys) is reported, field by name."""

    @derive
    @attrs.define(slots=True)
    class Lossy(Snapshotted):
        count: int
        table: dict[int, int] = attrs.field(
            metadata={"copy": dict, "freeze": lambda d: tuple(sorted(d))}
        )
        kept: dict[int, int] = attrs.field(metadata=MUTABLE)

    assert fields_missing_from_snapshot(Lossy(1, {1: 2, 3: 4}, {5: 6})) == ["table"]


def test_the_copy_check_catches_a_shared_container() -> None:
    @derive
    @attrs.define(slots=True)
    class Leaky(Snapshotted):
        table: dict[int, int] = attrs.field(metadata={"freeze": lambda d: tuple(d.items())})

    r = Leaky({1: 2})
    twin = r.copy()
    mutate_in_place(twin)
    assert r.snapshot() != Leaky({1: 2}).snapshot()  # the original moved with its copy


def test_snapshot_fields_are_named() -> None:
    snap: Any = busy_world().snapshot()
    assert snap.cpus[1].tlb  # by name, not position
    assert snap.mms[1].cpumask == 0b11


# --- property names ---------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent / "protocol"


def reported_names() -> list[tuple[str, int, str]]:
    """(file, line, name) of the first argument of every ``report(...)`` and
    ``Violation(...)`` call in protocol/: a constant from tlbfuzz.protocol.properties."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name not in ("report", "Violation"):
                continue
            arg = node.args[0]
            label = arg.id if isinstance(arg, ast.Name) else ast.dump(arg)
            out.append((path.name, node.lineno, label))
    return out


def test_every_reported_property_name_is_a_known_property() -> None:
    found = reported_names()
    assert len(found) >= 9  # the scan sees the model's reports
    for file, line, label in found:
        if file == "world.py" and label in ("prop", "v"):
            continue  # World.report(prop, ...) itself, and Violation(prop, ...) in it
        value = getattr(properties, label, None)
        assert value in PROPERTIES, f"{file}:{line} reports {label}, not a property constant"
