"""A pure, deterministic model of x86 Linux TLB shootdown and its 2019 async-flush variants.

Public surface::

    from tlbfuzz.protocol import VARIANTS, PROPERTIES, Config, World
    w = World.initial(VARIANTS["rfc-async-posted"], Config(cpus=2))
    acts = w.enabled_actions()   # deterministic, canonical order
    w.apply(acts[0])             # ActionNotEnabled if the action is not enabled
    w.snapshot(); w.copy(); w.violations()
    str(action)                  # kernel vocabulary; parse(str(action)) == action

Kernel paths are records (``tlbfuzz.protocol.paths``), declared by the module of the kernel
file each models; importing this package declares them in a fixed order: mm/, then
arch/x86/mm/tlb.c, then kernel/smp.c, then mm/gup.c, mm/vmscan.c, mm/mempolicy.c,
mm/migrate.c, mm/memory.c, fs/proc/task_mmu.c, mm/mremap.c, mm/khugepaged.c and
mm/userfaultfd.c. ``PATHS`` maps their names to them.

This package imports no hypothesis, random, time or I/O: all nondeterminism is an action
chosen from outside (tests/test_layering.py enforces it).
"""

# in this order: it is the order of PATHS
from tlbfuzz.protocol import mm, tlb, smp, gup, vmscan, mempolicy, migrate, memory  # noqa: I001
from tlbfuzz.protocol import task_mmu, mremap, khugepaged, userfaultfd
from tlbfuzz.protocol.actions import GLOBAL, Action, ParseError, parse
from tlbfuzz.protocol.config import Budget, Config, parse_budgets
from tlbfuzz.protocol.paths import PATHS, BudgetKind, Inline, Path, Site, Step, budget_kinds
from tlbfuzz.protocol.properties import DEFAULT_PROPERTIES, PROPERTIES, Property
from tlbfuzz.protocol.state import Violation
from tlbfuzz.protocol.variants import BASE_OF, TSO_ONLY, VARIANTS, Variant
from tlbfuzz.protocol.world import ActionNotEnabled, World

BUDGET_KINDS = tuple(k.name for k in budget_kinds(PATHS))
"""The budget kinds of the built-in paths (a variant's own paths may add more)."""

__all__ = [
    "BASE_OF",
    "BUDGET_KINDS",
    "DEFAULT_PROPERTIES",
    "GLOBAL",
    "PATHS",
    "PROPERTIES",
    "TSO_ONLY",
    "VARIANTS",
    "Action",
    "ActionNotEnabled",
    "Budget",
    "BudgetKind",
    "Config",
    "Inline",
    "ParseError",
    "Path",
    "Property",
    "Site",
    "Step",
    "Variant",
    "Violation",
    "World",
    "budget_kinds",
    "gup",
    "khugepaged",
    "memory",
    "mempolicy",
    "migrate",
    "mm",
    "mremap",
    "parse",
    "parse_budgets",
    "smp",
    "task_mmu",
    "tlb",
    "userfaultfd",
    "vmscan",
]
