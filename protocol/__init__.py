"""A pure, deterministic model of x86 Linux TLB shootdown and its 2019 async-flush variants.

Public surface::

    from protocol import VARIANTS, PROPERTIES, Config, World
    w = World.initial(VARIANTS["rfc-async-posted"], Config(cpus=2))
    acts = w.enabled_actions()   # deterministic, canonical order
    w.apply(acts[0])             # ActionNotEnabled if the action is not enabled
    w.snapshot(); w.copy(); w.violations()
    str(action)                  # kernel vocabulary; parse(str(action)) == action

This package imports no hypothesis, random, time or I/O: all nondeterminism is an action
chosen from outside (tests/test_layering.py enforces it).
"""

from protocol.actions import GLOBAL, Action, ParseError, parse
from protocol.config import BUDGET_KINDS, Budget, Config
from protocol.properties import DEFAULT_PROPERTIES, PROPERTIES, Property
from protocol.state import Violation
from protocol.variants import VARIANTS, Variant
from protocol.world import ActionNotEnabled, World

__all__ = [
    "BUDGET_KINDS",
    "DEFAULT_PROPERTIES",
    "GLOBAL",
    "PROPERTIES",
    "VARIANTS",
    "Action",
    "ActionNotEnabled",
    "Budget",
    "Config",
    "ParseError",
    "Property",
    "Variant",
    "Violation",
    "World",
    "parse",
]
