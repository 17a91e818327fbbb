"""Kernel paths as records: everything about a path is derived from its record, a variant file
adds or reorders paths without touching protocol/, and the command line narrows a question per
CPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import pytest

from examples.new_path import VARIANT as NEW_PATH
from tlbfuzz.fuzz.cli import main
from tlbfuzz.fuzz.machine import background_kinds, path_kinds
from tlbfuzz.protocol import (
    BUDGET_KINDS,
    PATHS,
    VARIANTS,
    Budget,
    Config,
    Path,
    Step,
    Variant,
    World,
)
from tlbfuzz.protocol.mm import TLB_FINISH_MMU
from tlbfuzz.protocol.paths import FLUSH_TLB_MM_RANGE, Inline, budget_kinds
from tlbfuzz.protocol.search import bfs

if TYPE_CHECKING:
    from tlbfuzz.protocol import Site


def test_budget_kinds_and_focus_kinds_come_from_the_records() -> None:
    assert tuple(dict.fromkeys(p.budget.name for p in PATHS.values())) == BUDGET_KINDS
    current = VARIANTS["linux-current"]
    assert path_kinds(current) == (
        "munmap",
        "madvise",
        "mprotect",
        "writeback",
        "irqs_off_uaccess",
        "truncate",
        "enter_lazy_tlb",
        "context_switch",
    )
    # a kind the fuzzer draws only when asked (fuzz_max 0) is in focus once a budget names it
    asked = Config(cpu_budget=((1, Budget.only(gup_fast=1)),))
    assert path_kinds(current, asked)[-1] == "gup_fast"
    assert background_kinds(current) == ("smp_call_function_single",)
    # a variant's own path brings its own kinds
    assert "free_before_flush" in path_kinds(NEW_PATH)
    assert [k.name for k in budget_kinds(NEW_PATH.paths())][-1] == "free_before_flush"


def test_every_path_starts_with_an_action_named_after_its_first_step() -> None:
    w = World.initial(VARIANTS["linux-5.2"])
    for cpu_starts in w.kernel.starts:
        for s in cpu_starts:
            assert s.action.op == w.kernel.steps[s.path.name][0].name


@pytest.mark.slow
def test_a_variant_file_adds_a_path_and_the_explorer_finds_its_use_after_free() -> None:
    config = Config(budget=Budget.only(free_before_flush=1), reuse=False)
    r = bfs(World.initial(NEW_PATH, config), ["no_use_after_free"], 10)
    assert r.schedule is not None
    assert len(r.schedule) == 3
    assert r.schedule[1].op == "zap_and_free"
    # the kernel's own madvise, in the same place, holds as deep as the explorer looks here
    same = Config(budget=Budget.only(madvise=1), reuse=False)
    held = bfs(World.initial(NEW_PATH, same), ["no_use_after_free"], 7)
    assert held.schedule is None and held.depth == 7


def test_the_new_path_example_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["explore", "-v", "examples/new_path.py:VARIANT", "-p", "no_use_after_free"]
    code = main([*argv, "--format", "wide"])  # the model's own names (mail prints C)
    out = capsys.readouterr().out
    assert code == 1
    assert "zap_and_free va=0x1000" in out
    assert "shortest schedule breaking no_use_after_free: 3 steps" in out


@attrs.frozen
class FreeBeforeFlushInMadvise(Variant):
    """madvise frees its pages before flushing; every other path keeps the kernel's order."""

    def path_steps(self, path: Path) -> tuple[Step, ...]:
        steps = super().path_steps(path)
        if path.name != "madvise":
            return steps
        rest = [s for s in steps[2:] if s is not TLB_FINISH_MMU]
        return (*steps[:2], TLB_FINISH_MMU, *rest)


REORDERED = FreeBeforeFlushInMadvise(
    **{**attrs.asdict(VARIANTS["linux-current"], recurse=False), "name": "madvise-frees-first"}
)


def test_reordering_one_paths_steps_leaves_the_others_alone() -> None:
    k = World.initial(REORDERED).kernel
    assert [s.name for s in k.steps["madvise"]][:3] == [
        "madvise_dontneed",
        "zap_pte_range",
        "tlb_finish_mmu",
    ]
    assert k.steps["munmap"] == World.initial(VARIANTS["linux-current"]).kernel.steps["munmap"]
    bad = bfs(
        World.initial(REORDERED, Config(budget=Budget.only(madvise=1), reuse=False)),
        ["no_use_after_free"],
        10,
    )
    assert bad.schedule is not None  # freed before the flush: a stale entry uses it


@attrs.frozen
class AsksWhere(Variant):
    """Records which path and step ask flush_is_sync()."""

    def flush_is_sync(self, at: Site, info: object) -> bool:
        ASKED.append((at.path, at.step))
        return True


ASKED: list[tuple[str, str]] = []


def test_decisions_are_told_which_path_and_step_ask() -> None:
    v = AsksWhere(**{**attrs.asdict(VARIANTS["linux-5.2"], recurse=False), "name": "asks"})
    ASKED.clear()
    World.initial(v).run(
        [
            "cpu0 mprotect va=0x1000",
            "cpu0 change_pte_range",
            "cpu0 flush_tlb_mm_range__inc_mm_tlb_gen",
            "cpu0 flush_tlb_mm_range__flush_tlb_func_local",
            "cpu0 native_flush_tlb_others__send_ipis",
        ]
    )
    assert ASKED == [("mprotect", "native_flush_tlb_others__send_ipis")]


def test_one_flush_order_per_path() -> None:
    """flush_steps(path) is asked per path: a variant may reorder madvise's flush alone."""

    @attrs.frozen
    class ConcurrentMadviseOnly(Variant):
        def flush_steps(self, path: str) -> tuple[Step, ...]:
            concurrent = attrs.evolve(self, concurrent_flush=True)
            if path == "madvise":
                return Variant.flush_steps(concurrent, path)
            return super().flush_steps(path)

    v = ConcurrentMadviseOnly(**attrs.asdict(VARIANTS["linux-5.2"], recurse=False))
    k = World.initial(v).kernel
    assert k.steps["madvise"][3].name == "native_flush_tlb_multi__send_ipis"
    assert k.steps["munmap"][3].name == "flush_tlb_mm_range__flush_tlb_func_local"
    assert any(
        isinstance(s, Inline) and s.expand is FLUSH_TLB_MM_RANGE.expand
        for s in PATHS["madvise"].steps
    )


@pytest.mark.slow
def test_per_cpu_budgets_ask_a_narrow_question(capsys: pytest.CaptureFixture[str]) -> None:
    """CPU1 switches twice while CPU0 runs one madvise, from the command line."""
    argv = ["explore", "-v", "linux-current", "--budget", "cpu0:madvise=1"]
    argv += ["--budget", "cpu1:switch=2", "--no", "nmi,pwc_evict", "--depth", "6"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "no violation up to depth 6" in out
    w = World.initial(
        VARIANTS["linux-current"],
        Config(
            budget=Budget.only(),
            cpu_budget=((0, Budget.only(madvise=1)), (1, Budget.only(switch=2))),
        ),
    )
    kinds = [k.name for k in w.kernel.kinds]
    assert dict(zip(kinds, w.cpus[0].budget, strict=True))["madvise"] == 1
    assert dict(zip(kinds, w.cpus[1].budget, strict=True))["switch"] == 2
    assert sum(w.cpus[0].budget) == 1
    assert sum(w.cpus[1].budget) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budget", "cpu9:madvise=1"], "names cpu9, but there are 2 CPUs"),
        (["--budget", "cpuX:madvise=1"], "want cpuN:KIND=N"),
        (["--budget", "nosuch=1"], "want KIND=N with KIND in"),
        (["--no", "tlb_flush"], "bad --no 'tlb_flush'"),
    ],
)
def test_bad_narrowing_is_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explore", "-v", "linux-current", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_saved_config_names_every_budget_kind() -> None:
    """The world resolves its budget against the variant's kinds, so what a run saves replays
    the same whatever the defaults become; a kind added since counts 0 on reload."""
    w = World.initial(NEW_PATH, Config())
    saved = w.config.to_dict()
    budget = saved["budget"]
    assert isinstance(budget, dict)
    assert set(budget) == {k.name for k in w.kernel.kinds}
    again = Config.from_dict(saved)
    assert World.initial(NEW_PATH, again).cpus[0].budget == w.cpus[0].budget
    old = Config.from_dict({"budget": {"madvise": 1}})
    assert World.initial(NEW_PATH, old).cpus[0].budget == (0, 1, *(0,) * (len(w.kernel.kinds) - 2))


def test_the_readme_lists_every_decision_method_of_variant() -> None:
    """The README's table of decision methods is the reader's map of what a variant file can
    move: every public method of ``Variant`` is in it, and nothing that is not one."""
    import inspect
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme.split("| where | decision methods |", 1)[1].split("\n\n", 1)[0]
    cells = [row.rsplit("|", 2)[1] for row in table.splitlines() if row.startswith("| ")]
    listed = {m for cell in cells for m in re.findall(r"`(\w+)(?:\([^`]*\))?`", cell)}
    methods = {
        name
        for name, _ in inspect.getmembers(Variant, inspect.isfunction)
        if not name.startswith("_")
    }
    assert methods - listed == set(), "decision methods missing from the README's table"
    assert listed - methods == set(), "the README's table names methods Variant lacks"
