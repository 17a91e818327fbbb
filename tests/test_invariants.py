"""The invariants a kernel engineer would state, each shown to catch the broken model it is
for (the survivors of a mutation run: a lazy flag left set, a uaccess in the wrong mm, a PTE
left pointing at a freed frame)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from tlbfuzz.protocol import VARIANTS, BudgetKind, Path, Step, Variant, World, hw
from tlbfuzz.protocol.mm import free_page, present_pte
from tlbfuzz.protocol.paths import VA
from tlbfuzz.protocol.properties import PTES_MAP_OWN_FRAMES, UACCESS_IN_CURRENT_MM, USER_NEVER_LAZY

if TYPE_CHECKING:
    from tlbfuzz.protocol.world import World as WorldT

LAZY_ROUND_TRIP = [
    "cpu0 enter_lazy_tlb next=kthread",
    "cpu0 switch_mm_irqs_off__leave_lazy next=A",
    "cpu0 switch_mm_irqs_off__lazy_tlb_gen_check",
    "cpu0 finish_task_switch",
]


def test_leaving_lazy_mode_clears_is_lazy() -> None:
    w = World.initial(VARIANTS["linux-current"]).run(LAZY_ROUND_TRIP)
    assert w.violations([USER_NEVER_LAZY]) == []


@attrs.frozen
class KeepsLazyFlag(Variant):
    """switch_mm_irqs_off() for prev == next without ``is_lazy = false``."""

    def path_steps(self, path: Path) -> tuple[Step, ...]:
        steps = super().path_steps(path)
        if path.name != "leave_lazy":
            return steps
        return (Step(steps[0].name, lambda w, cpu: None), *steps[1:])


def test_a_cpu_back_in_user_mode_with_is_lazy_set_is_caught() -> None:
    v = KeepsLazyFlag(**attrs.asdict(VARIANTS["linux-current"], recurse=False))
    w = World.initial(v).run(LAZY_ROUND_TRIP)
    (found,) = w.violations([USER_NEVER_LAZY])
    assert "cpu0 runs a task of mm A with is_lazy set" in found.message


def test_a_kernel_uaccess_in_another_mm_is_caught() -> None:
    w = World.initial(VARIANTS["linux-current"])
    w.run(["cpu0 enter_lazy_tlb next=kthread"])  # loaded_mm A, current->mm NULL
    hw.access(w, 0, 0x1000, write=False, who="IPI callback read_user_func")
    (found,) = w.violations([UACCESS_IN_CURRENT_MM])
    assert "current->mm is NULL (kthread)" in found.message
    user = World.initial(VARIANTS["linux-current"])
    hw.access(user, 0, 0x1000, write=False, who="kernel copy_from_user")
    assert user.violations([UACCESS_IN_CURRENT_MM]) == []


def _free_mapped(w: WorldT, cpu: int) -> None:
    """Frees the page but leaves its PTE present (the mutant: a zap that forgot the PTE)."""
    pte = w.mms[w.cpus[cpu].task].ptes[w.cpus[cpu].locals.va]
    free_page(w, pte.pfn, by=f"cpu{cpu} free_mapped")


def test_a_present_pte_to_a_freed_frame_is_caught() -> None:
    path = Path(
        "free_mapped",
        BudgetKind("free_mapped"),
        VA,
        present_pte,
        (Step("free_mapped", _free_mapped),),
        from_user=True,
    )
    v = attrs.evolve(VARIANTS["linux-current"], name="free-mapped", extra_paths=(path,))
    w = World.initial(v).run(["cpu0 free_mapped va=0x1000"])
    (found,) = w.violations([PTES_MAP_OWN_FRAMES])
    assert "mm A PTE 0x1000 is present and maps pfn 1, which is free v1" in found.message
    assert World.initial(v).violations([PTES_MAP_OWN_FRAMES]) == []
