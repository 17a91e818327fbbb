"""One call for users' own pytest suites: fuzz a variant and fail with the schedule.

.. code-block:: python

    from tlbfuzz.fuzz.check import assert_holds

    def test_my_patch_keeps_tlb_gen_sound() -> None:
        assert_holds("examples/my_variant.py:CAUGHT_UP_5_2", ["tlb_gen_soundness"])

On a violation it saves the schedule to the corpus and raises ``AssertionError`` with the
schedule in the mail format and the command that replays it.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tlbfuzz.fuzz.canon import canonical
from tlbfuzz.fuzz.changes import said_nothing_of, whose, whose_lines
from tlbfuzz.fuzz.corpus import Entry, save
from tlbfuzz.fuzz.mail import render_mail
from tlbfuzz.fuzz.runner import Finding, Held, fuzz_variant
from tlbfuzz.fuzz.user import cli_variant, replay_command
from tlbfuzz.protocol import DEFAULT_PROPERTIES, VARIANTS, Variant

if TYPE_CHECKING:
    from collections.abc import Sequence


def variant_ref(variant: Variant) -> str | None:
    """How a corpus file names ``variant``: its built-in name, or ``file.py:NAME`` of a loaded
    module that holds it; None if neither."""
    if VARIANTS.get(variant.name) is variant:
        return variant.name
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file or not file.endswith(".py"):
            continue
        for attr, value in list(vars(module).items()):
            if value is variant:
                path = Path(file)
                with contextlib.suppress(ValueError):  # relative where it can be
                    path = path.relative_to(Path.cwd())
                return f"{path}:{attr}"
    return None


def assert_holds(
    variant: Variant | str,
    properties: Sequence[str] | None = None,
    profile: str = "ci",
    max_examples: int | None = None,
    seed: int | None = None,
    cpus: int | None = None,
    corpus: Path | str = "findings",
    memory_model: str = "sc",
    narrow_states: int | None = None,
) -> None:
    """Fuzz ``variant`` (a Variant, a built-in name or ``file.py:NAME``) against
    ``properties`` (default: the default set) with the named profile, under ``memory_model``
    (``"tso"``: x86-TSO store buffers). Passes if every property held; otherwise saves each
    finding under ``corpus`` (default ``findings/``, as ``tlbfuzz fuzz``; one file per race)
    and fails with all of them. A property no example checked fails too, and so does a
    variant whose changed decisions the search never reached, or, under sc, a barrier it
    changes (``tlbfuzz.fuzz.changes``): a miss must not pass. A patch (a variant with changed
    decisions) the fuzzer holds also gets the narrowed search (``tlbfuzz.fuzz.narrow``), up to
    ``narrow_states`` unique states (default: the profile's; 0: none)."""
    __tracebackhide__ = True
    ref = variant if isinstance(variant, str) else variant_ref(variant)
    v = cli_variant(variant) if isinstance(variant, str) else variant
    outcomes = fuzz_variant(
        v,
        list(properties or DEFAULT_PROPERTIES),
        profile=profile,
        seed=seed,
        max_examples=max_examples,
        cpus=cpus,
        shape={"memory_model": memory_model} if memory_model != "sc" else None,
        narrow_states=narrow_states,
    )
    texts = []
    unchecked = [o.prop for o in outcomes if not isinstance(o, Finding) and o.examples == 0]
    if unchecked or len(outcomes) < len(properties or DEFAULT_PROPERTIES):
        raise AssertionError(f"{v.name}: not checked: {', '.join(unchecked) or 'some'}")
    for o in outcomes:
        if not isinstance(o, Finding):
            continue
        replay_cmd = None
        if ref is not None:
            config, schedule = canonical(v, o.config, o.schedule, o.prop)
            entry = Entry(
                v,
                ref,
                config,
                o.prop,
                "violates",
                tuple(schedule),
                {"by": f"assert_holds(profile={profile!r})", "seed": seed},
                o.violation.message,
            )
            path, _ = save(entry, Path(corpus))
            replay_cmd = replay_command(ref, path)
        bases = whose(v, o.config, o.schedule, o.prop)
        texts.append(
            render_mail(
                v,
                o.config,
                o.schedule,
                o.prop,
                o.violation,
                replay_cmd,
                paragraphs=whose_lines(o.prop, bases, o.schedule) + o.paragraphs(),
            )
        )
    if texts:
        raise AssertionError(f"{v.name} breaks what it must hold:\n\n" + "\n\n".join(texts))
    held = [said_nothing_of(o.changes) for o in outcomes if isinstance(o, Held) and o.changes]
    blind = sorted({n for b, _ in held for n in b})
    if blind:  # first, as the summary says it: reached or not, under sc it says nothing
        raise AssertionError(
            f"{v.name}: held, but under sc no answer of "
            + ", ".join(f"{n}()" for n in blind)
            + " changes a step (barriers: fuzz with memory_model='tso')"
        )
    missed = sorted({n for _, m in held for n in m})
    if missed:
        raise AssertionError(
            f"{v.name}: held, but the search never reached what the variant changes: "
            + ", ".join(f"{n}()" for n in missed)
            + " (the held properties say nothing about it)"
        )
