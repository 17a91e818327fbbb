"""assert_holds(): the one call users put in their own pytest suites."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlbfuzz.fuzz.check import assert_holds, variant_ref
from tlbfuzz.fuzz.corpus import load, replay
from tlbfuzz.protocol import VARIANTS

ROOT = Path(__file__).resolve().parent.parent


def test_assert_holds_passes_when_every_property_holds(tmp_path: Path) -> None:
    ref = str(ROOT / "examples" / "my_variant.py") + ":CAUGHT_UP_5_2"
    assert_holds(ref, ["tlb_gen_soundness"], max_examples=100, corpus=tmp_path, narrow_states=0)
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.slow
def test_assert_holds_fails_with_the_mail_schedule_and_a_replay_command(tmp_path: Path) -> None:
    with pytest.raises(AssertionError) as info:
        assert_holds(
            VARIANTS["lazy-skip-freed-tables"],
            ["no_walk_of_freed_page_table"],
            max_examples=2000,
            corpus=tmp_path,
        )
    text = str(info.value)
    assert "no_walk_of_freed_page_table breaks in 9 steps" in text
    assert "    CPU0" in text
    assert max(len(line) for line in text.splitlines()) <= 72
    (saved,) = tmp_path.rglob("*.json")
    assert f"tlbfuzz replay {saved}".split()[-1][-20:] in text.replace("\\\n", "")
    assert replay(load(saved)).ok


def test_a_users_variant_is_named_by_its_file() -> None:
    from examples import my_variant

    assert variant_ref(VARIANTS["rfc-async"]) == "rfc-async"
    ref = variant_ref(my_variant.CAUGHT_UP_5_2)
    assert ref is not None
    assert ref.endswith("examples/my_variant.py:CAUGHT_UP_5_2")
