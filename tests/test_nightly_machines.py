"""One unittest TestCase per (variant, property), each the Hypothesis state machine under the
nightly profile, so that pytest's Hypothesis options apply (``--hypothesis-seed``, and the
profile's example database under .hypothesis/nightly)::

    python -m pytest -m nightly tests/test_nightly_machines.py -k "rfc_async_posted and lost"

A failure is Hypothesis's report of the failing machine run; ``tlbfuzz fuzz`` prints the same
finding minimised, as a diagram.
"""

from __future__ import annotations

import pytest

from tlbfuzz.fuzz.machine import machine_for
from tlbfuzz.fuzz.profiles import PROFILES
from tlbfuzz.protocol import PROPERTIES, VARIANTS

CASES: dict[str, type] = {}
for _variant in VARIANTS.values():
    for _prop in PROPERTIES:
        _machine = machine_for(_variant, (_prop,))
        _case = _machine.TestCase
        _case.settings = PROFILES["nightly"]
        _name = "Test_" + _machine.__name__.removeprefix("TlbMachine_")
        CASES[_name] = pytest.mark.nightly(_case)
globals().update(CASES)
del _case, _machine  # else pytest collects the last case twice


def test_there_is_one_nightly_case_per_variant_and_property() -> None:
    assert len(CASES) == len(VARIANTS) * len(PROPERTIES)
    assert "Test_rfc_async_posted__no_lost_write" in CASES
