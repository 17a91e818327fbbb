"""The model's contract: determinism, independent copies, complete snapshots, actions that
round-trip through their text, and clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlbfuzz.protocol import (
    PROPERTIES,
    VARIANTS,
    Action,
    ActionNotEnabled,
    Config,
    ParseError,
    World,
    parse,
)


def walk(world: World, choices: list[int]) -> list[tuple[object, ...]]:
    """Follow choice indices into the enabled actions; return the snapshots."""
    snaps = [world.snapshot()]
    for i in choices:
        acts = world.enabled_actions()
        if not acts:  # a terminal state: every budget spent, nothing left to fill or touch
            break
        world.apply(acts[i % len(acts)])
        snaps.append(world.snapshot())
    return snaps


variants = st.sampled_from(sorted(VARIANTS))
choice_lists = st.lists(st.integers(0, 200), max_size=40)


@settings(max_examples=60, deadline=None)
@given(variants, choice_lists)
def test_same_actions_same_snapshots(name: str, choices: list[int]) -> None:
    a = walk(World.initial(VARIANTS[name], Config()), choices)
    b = walk(World.initial(VARIANTS[name], Config()), choices)
    assert a == b


@settings(max_examples=60, deadline=None)
@given(variants, choice_lists, choice_lists)
def test_copies_are_independent(name: str, prefix: list[int], suffix: list[int]) -> None:
    w = World.initial(VARIANTS[name], Config())
    walk(w, prefix)
    before = w.snapshot()
    c = w.copy()
    assert c.snapshot() == before
    walk(c, suffix)
    assert w.snapshot() == before  # the original did not move
    d = w.copy()
    assert walk(d, suffix)[-1] == c.snapshot()  # and the copy behaves like the original


@settings(max_examples=60, deadline=None)
@given(variants, choice_lists)
def test_enabled_actions_round_trip_through_text(name: str, choices: list[int]) -> None:
    w = World.initial(VARIANTS[name], Config(cpus=3))
    walk(w, choices)
    for a in w.enabled_actions():
        assert parse(str(a)) == a


@settings(max_examples=60, deadline=None)
@given(variants, choice_lists)
def test_a_copy_has_the_same_future(name: str, choices: list[int]) -> None:
    """A copy steps exactly like its original, action by action (the explorer relies on it)."""
    w = World.initial(VARIANTS[name], Config())
    walk(w, choices)
    c = w.copy()
    for a in w.enabled_actions():
        x, y = w.copy(), c.copy()
        x.apply(a)
        y.apply(a)
        assert x.snapshot() == y.snapshot()
        assert x.enabled_actions() == y.enabled_actions()


def test_enabled_actions_are_deterministic_and_canonical() -> None:
    w = World.initial(VARIANTS["linux-5.2"], Config())
    first = w.enabled_actions()
    assert [str(a) for a in first] == [
        str(a) for a in World.initial(VARIANTS["linux-5.2"], Config()).enabled_actions()
    ]
    assert len(set(first)) == len(first)


def test_apply_refuses_an_action_that_is_not_enabled() -> None:
    w = World.initial(VARIANTS["linux-5.2"], Config())
    with pytest.raises(ActionNotEnabled, match="cpu0 tlb_finish_mmu is not enabled"):
        w.apply(Action(0, "tlb_finish_mmu"))
    with pytest.raises(ActionNotEnabled):
        w.apply(parse("cpu7 user_read va=0x1000"))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "empty action"),
        ("cpuX user_read", "bad CPU"),
        ("cpu0", "no operation"),
        ("cpu0 user_read va", "want name=value"),
        ("cpu0 user_read va=zz", "bad value"),
        ("cpu0 switch next=kthreadd", "bad value"),
        ("cpu0 user-read", "bad operation"),
    ],
)
def test_parse_errors_say_what_is_wrong(line: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse(line)


def test_initial_state_is_clean_for_every_variant() -> None:
    for v in VARIANTS.values():
        w = World.initial(v, Config(cpus=3))
        assert w.violations() == []
        assert w.enabled_actions()


def test_every_property_has_a_summary() -> None:
    for name, p in PROPERTIES.items():
        assert p.name == name and p.summary


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="cpus"):
        Config(cpus=0)
    assert Config.from_dict(Config(cpus=3).to_dict()) == Config(cpus=3)


def test_parse_refuses_an_overlong_value() -> None:
    with pytest.raises(ParseError, match="longer than 20 characters"):
        parse("cpu0 user_read va=0x" + "1" * 5000)
