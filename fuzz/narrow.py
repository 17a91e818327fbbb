"""The narrowed questions around a patch: after the fuzzer holds, a breadth-first search of
the small models a reviewer would write by hand.

Some races are too long for random schedules (without the lazy ``smp_mb()``, a store left in
CPU1's buffer across CPU0's whole flush: 14 steps), yet the explorer answers them in seconds
once the question is narrowed: one CPU runs the path that asks the patch's decision, the
other one other path, and nothing else may start (``examples/lazy_no_smp_mb.py``'s
command). The probe (``tlbfuzz.fuzz.changes.asking_kinds``) already knows which kinds of path
ask each changed decision, so the narrowing is mechanical:

- an *asker*: a kind whose paths reach a changed decision, alone or helped;
- on the other CPU nothing, or one *partner*: a kind the fuzzer draws (``fuzz_max``), an
  asker, or a kind that helps one;
- each with its default count, at least one (a context switch's is two: away and back);
- in small shapes first (one mm with one page; two mms, for a kind that switches mm), then
  the run's shape; the run's own fields (``--mms 1``, ``--memory-model tso``) hold in all of
  them, plus what a kind needs to start (``BudgetKind.shape``: a question whose kind the
  shape rules out is not asked).

The questions are searched side by side, each breadth-first (``Levels``: a level at a time,
none searched twice), until each is searched whole, every property is broken, or the state
budget is spent. The next level searched is always the smallest one due (the question with
the fewest states waiting): models grow at very different rates, and a race deep in a slow
one costs fewer states than a shallow level of a fast one. A race found is therefore the
shortest in its model, not always among the questions searched together, and a held says
how deep every question was searched and which were searched whole (a proof for that model,
not for the patch). Without ``LOADED_MM_SWITCHING`` (``examples/my_variant.py``) the race is
19 steps deep in the two-mm model of a madvise against a switch, and the mprotect model
beside it grows faster: a level at a time in turn, the ``ci`` budget ran out some levels
short of it, and the smallest level first reaches it (the README's narrowed-search
paragraph gives both runs; ``tests/test_narrow.py`` finds it at the ``ci`` budget).

A decision every flush asks (``should_flush_tlb()``) has a dozen askers and some 380
questions over the five shapes: side by side, the ``ci`` budget took them only a few steps
deep in the smallest shape and never reached the others (the README's narrowed-search
paragraph gives the run). So the questions come in groups (``search_shapes``): first those
in whose model a few deterministic walks see the change answered otherwise than the base
answers it (``tlbfuzz.fuzz.changes.Otherwise``), then the others; in each, those whose
paths the fuzzer ran (drawn, or steered to) before the rest; each group in every shape.
A race of the patch's own answers some changed decision otherwise on its way (else the base
runs the same schedule), and without ``LOADED_MM_SWITCHING`` in ``should_flush_tlb()`` that
happens only against a CPU switching between two mms: the one-mm models, where it never
does, used to take the whole ``ci`` budget first.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Final

import attrs

from tlbfuzz.fuzz.mail import prose
from tlbfuzz.protocol import Budget, Config, World, budget_kinds
from tlbfuzz.protocol.paths import shape_for
from tlbfuzz.protocol.search import Collapse, Levels

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

    from tlbfuzz.fuzz.changes import Otherwise, Reach
    from tlbfuzz.protocol import Action, Variant, Violation
    from tlbfuzz.protocol.search import SearchResult

NARROW_STATES: Final[dict[str, int]] = {"dev": 30_000, "ci": 60_000, "nightly": 300_000}
"""Per profile, the unique states the narrowed search may spend on a patch the
fuzzer held (``tlbfuzz fuzz --narrow-states`` overrides it). Memory grows with it (every
model's last level is held at once), hence nightly's bound, on machines running many
workers. What ``ci``'s budget finds: the README's narrowed-search table, with its command."""

SHAPE_FIELDS: Final = ("mms", "anon_pages", "file_pages", "memory_model")
"""The Config fields of a run's shape (``tlbfuzz fuzz --mms`` and the like)."""

SMALL: Final = (
    {"mms": 1, "anon_pages": 1, "file_pages": 0},
    {"mms": 1, "anon_pages": 0, "file_pages": 1},
)
"""The small models asked first, where the run leaves a field to its default: one mm with one
anonymous page, then one mm with one file page. In the default model (two mms, a page of each
kind) the models grow so fast that the ci budget reaches depth 4 or 5, while the mm layer's
races are found in the small ones (the README's narrowed-search table)."""

TWO_MMS: Final = (
    {"mms": 2, "anon_pages": 1, "file_pages": 0},
    {"mms": 2, "anon_pages": 0, "file_pages": 1},
)
"""Then the same pages in two mms, for the questions with a kind that switches mm
(``switching_kinds``) and only for them: in one mm a context switch can only go lazy and
back, and a race in ``switch_mm_irqs_off()``'s window between two mms is out of reach.
Without should_flush_tlb()'s ``LOADED_MM_SWITCHING`` case (fea4e317f9e7's fix, reverted:
``examples/my_variant.py:SKIP_SWITCHING_CPUS``) the race, a flush against a CPU switching
away and back, is in the first of these (``tests/test_narrow.py``)."""

MAX_DEPTH = 60
"""Deeper than any race the corpus holds (20 steps); the state budget ends a search first."""


@attrs.frozen
class Question:
    """One narrowed model: ``asker`` on CPU 1, ``partner`` (or nothing) on CPU 0."""

    asker: str
    partner: str | None
    config: Config

    def budget_words(self) -> tuple[str, ...]:
        """The question as ``tlbfuzz explore --budget`` words (``cpu1:switch=2``)."""
        return tuple(
            f"cpu{c}:{k}={n}" for c, b in sorted(self.config.cpu_budget) for k, n in b.counts if n
        )

    def __str__(self) -> str:
        """The budget words, then the model's shape where it is not the default one, as
        ``explore``'s options (``cpu1:switch=2 (--mms 1 --file-pages 0)``)."""
        default = Config()
        shape = [
            f"--{f.replace('_', '-')} {getattr(self.config, f)}"
            for f in SHAPE_FIELDS
            if getattr(self.config, f) != getattr(default, f)
        ]
        return " ".join(self.budget_words()) + (f" ({' '.join(shape)})" if shape else "")


def _count(kind: str, v: Variant) -> int:
    return next(max(k.default, 1) for k in budget_kinds(v.paths()) if k.name == kind)


def shapes(run: Mapping[str, Any] | None = None) -> list[tuple[dict[str, Any], bool]]:
    """The shapes asked, smallest first, each with whether only questions with a kind that
    switches mm are asked in it: each of ``SMALL`` with the run's own fields over it, then
    each of ``TWO_MMS`` (only those), then the run's shape. A shape equal to one before it
    is asked once (for every question if either was), and one whose mm maps no page not at
    all."""
    run = dict(run or {})
    out: list[tuple[dict[str, Any], bool]] = []
    seen: list[Config] = []
    asked = [
        *(({**small, **run}, False) for small in SMALL),
        *(({**two, **run}, True) for two in TWO_MMS),
        (run, False),
    ]
    for shape, switching in asked:
        model = attrs.evolve(Config(), **{k: v for k, v in shape.items() if k in SHAPE_FIELDS})
        if not model.anon_pages + model.file_pages:
            continue
        if model in seen:  # asked once, for every question if either asks every one
            i = seen.index(model)
            if out[i][1] and not switching:
                out[i] = (shape, False)
            continue
        seen.append(model)
        out.append((shape, switching))
    return out


def switching_kinds(v: Variant) -> frozenset[str]:
    """The kinds with a path that switches to a task of another mm: its ``next`` argument
    (the task ``context_switch()`` goes to, ``Locals.next_task``) has a value in a model of
    two mms that it has not in one (``NEXT_MM``). A path of your own that switches mm takes
    its task as ``next`` too, or its models are asked in one mm only."""
    one, two = Config(mms=1), Config(mms=2)
    return frozenset(
        p.budget.name
        for p in v.paths().values()
        if "next" in p.args.names
        and len(p.args.values(two, 0, (0,))) > len(p.args.values(one, 0, (0,)))
    )


def questions(
    v: Variant, reach: Mapping[str, Reach], shape: Mapping[str, Any] | None = None
) -> tuple[Question, ...]:
    """The narrowed questions for ``v``, in the order of its kinds (``budget_kinds``): per
    asker, nothing on the other CPU first, then each partner. A pair asked once (``madvise``
    against ``switch`` is ``switch`` against ``madvise`` with the CPUs renamed)."""
    kinds = budget_kinds(v.paths())
    askers = set().union(*(r.kinds for r in reach.values()))
    helpers = set().union(*(r.helped for r in reach.values()))
    partners = [k.name for k in kinds if k.fuzz_max or k.name in askers | helpers]
    run = dict(shape or {})
    out: list[Question] = []
    asked: set[frozenset[str]] = set()
    for a in (k for k in kinds if k.name in askers):
        for b in (None, *partners):
            pair = frozenset({a.name} if b is None else {a.name, b})
            if b is not None and len(pair) == 2 and pair in asked:
                continue
            asked.add(pair)
            config = _config(v, a.name, b, run)
            if config is not None:
                out.append(Question(a.name, b, config))
    return tuple(out)


def _config(v: Variant, asker: str, partner: str | None, run: Mapping[str, Any]) -> Config | None:
    """Two CPUs, ``asker`` on CPU 1 and ``partner`` on CPU 0, in the run's shape and what each
    kind needs; None where they disagree, or where the mm would map no page."""
    shape = shape_for((k for k in budget_kinds(v.paths()) if k.name in (asker, partner)), run)
    if shape is None or shape.get("anon_pages", 1) + shape.get("file_pages", 1) == 0:
        return None
    per_cpu = [(1, Budget.only(**{asker: _count(asker, v)}))]
    if partner is not None:
        per_cpu.insert(0, (0, Budget.only(**{partner: _count(partner, v)})))
    shape.pop("cpus", None)
    return Config(cpus=2, budget=Budget.only(), cpu_budget=tuple(per_cpu), reuse=False, **shape)


@attrs.frozen
class Broken:
    """A property the narrowed search broke: in which question, and the shortest schedule."""

    question: Question
    schedule: list[Action]
    violation: Violation


@attrs.frozen
class Narrowed:
    """What the narrowed search reached."""

    questions: tuple[Question, ...]
    depths: tuple[int, ...]
    """Per question, the depth it was searched completely to (every schedule of up to that
    many steps); 0 for a question the state budget never reached."""
    exhausted: tuple[int, ...]
    """The questions (indexes) whose every reachable state was searched: a proof for them."""
    states: int
    """Unique states, summed over the questions (the cost)."""
    cut: bool
    """Some question was neither searched whole nor done with every property: the state
    budget (or ``MAX_DEPTH``) ended the search."""
    found: dict[str, Broken] = attrs.field(factory=dict)
    two_mms: tuple[int, ...] = ()
    """The questions (indexes) asked in two mms because they have a context switch
    (``TWO_MMS``): a held names them when the budget never reached them."""
    differed: tuple[int, ...] | None = None
    """The questions (indexes) in whose model a walk saw the change answered otherwise
    (``tlbfuzz.fuzz.changes.Otherwise.differs``), asked first; None where nobody looked."""
    quiet: tuple[int, ...] | None = None
    """The questions (indexes) searched (to their depth, or whole) in which no step answered
    the change otherwise (``Otherwise.count``); one searched whole is the base's model.
    None where nobody counted."""

    @property
    def unfinished(self) -> tuple[int, ...]:
        """The depths of the questions not searched whole."""
        return tuple(d for i, d in enumerate(self.depths) if i not in self.exhausted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "questions": [str(q) for q in self.questions],
            "depths": {
                str(q): d
                for i, (q, d) in enumerate(zip(self.questions, self.depths, strict=True))
                if i not in self.exhausted
            },
            "exhausted": [str(self.questions[i]) for i in self.exhausted],
            "states": self.states,
            "cut": self.cut,
            "found": {p: str(b.question) for p, b in self.found.items()},
            "two_mms": [str(self.questions[i]) for i in self.two_mms],
        } | {
            name: [str(self.questions[i]) for i in got]
            for name, got in (("differed", self.differed), ("quiet", self.quiet))
            if got is not None
        }


def search(
    v: Variant,
    qs: Sequence[Question],
    props: Sequence[str],
    max_states: int,
    max_depth: int = MAX_DEPTH,
    otherwise: Otherwise | None = None,
) -> Narrowed:
    """Every question of ``qs`` searched breadth-first (``Levels``: a level at a time, none
    twice), the smallest level due first (the fewest states waiting; on a tie, the first
    question), until every question is exhausted or searched to ``max_depth`` (a question
    that reaches it is retired, the others go on), ``props`` are all broken, or
    ``max_states`` unique states (summed over the questions) are spent. Per
    property, the first question to break it, and its shortest schedule there (not always
    the shortest of all the questions: the module's docstring says why). Deterministic.
    With ``otherwise`` (``v`` instrumented), the models run its variant, and the questions
    where no step answered the change otherwise are ``quiet``."""
    left = list(props)
    runs = v if otherwise is None else otherwise.variant
    answered = [0] * len(qs)
    found: dict[str, Broken] = {}

    def on(i: int) -> Callable[[list[Action], Violation], bool]:
        def keep(schedule: list[Action], violation: Violation) -> bool:
            if violation.prop in left and violation.prop not in found:
                found[violation.prop] = Broken(qs[i], schedule, violation)
            return True

        return keep

    searches = [
        Levels(
            World.initial(runs, q.config), left, key=Collapse(symmetric=True), on_violation=on(i)
        )
        for i, q in enumerate(qs)
    ]

    def level(i: int, budget: int) -> SearchResult | None:
        if otherwise is None:
            return searches[i].next_level(budget)
        before = otherwise.count()
        try:
            return searches[i].next_level(budget)
        finally:
            answered[i] += otherwise.count() - before

    def done(cut: bool) -> Narrowed:
        n = _narrowed(qs, searches, exhausted, cut, found)
        if otherwise is None:
            return n
        quiet = tuple(i for i, s in enumerate(searches) if s.depth and not answered[i])
        return attrs.evolve(n, quiet=quiet)

    live = list(range(len(qs)))
    exhausted: list[int] = []
    capped = False
    while live and left:
        i = min(live, key=lambda j: len(searches[j].frontier))  # the smallest next level
        if searches[i].depth >= max_depth:
            live.remove(i)
            capped = True
            continue
        others = sum(s.states for j, s in enumerate(searches) if j != i)
        r = level(i, max(max_states - others, 1))
        if r is not None and not r.complete:  # the budget ran out inside this level
            return done(True)
        if r is not None:
            live.remove(i)
            exhausted.append(i)
        left[:] = [p for p in left if p not in found]
    return done(capped and bool(left))


def _narrowed(
    qs: Sequence[Question],
    searches: Sequence[Levels],
    exhausted: list[int],
    cut: bool,
    found: dict[str, Broken],
) -> Narrowed:
    states = sum(s.states for s in searches)
    depths = tuple(s.depth for s in searches)
    return Narrowed(tuple(qs), depths, tuple(sorted(exhausted)), states, cut, found)


def search_shapes(
    v: Variant,
    reach: Mapping[str, Reach],
    run: Mapping[str, Any] | None,
    props: Sequence[str],
    max_states: int,
    ran: Collection[str] | None = None,
    otherwise: Otherwise | None = None,
) -> Narrowed:
    """``search`` over groups of questions in turn, on the properties still held, with what
    is left of ``max_states``. With ``otherwise`` (``tlbfuzz.fuzz.changes.Otherwise``: ``v``
    instrumented), the questions in whose model a walk saw the change answered otherwise
    come first, and each model's search counts the steps that did (``search``); then,
    of each of those two groups, the questions whose kinds are all in ``ran`` (the kinds the
    fuzzer ran: ``ran_kinds``) before the others (one group of all, where ``ran`` is None).
    Each group is asked in each of ``shapes(run)``, the small ones first (in the two-mm ones
    only the questions with a kind that switches mm). The groups make one answer, each
    question with the depth it reached (0 for a group the budget never reached); a property
    broken in one group is not asked again, and a model asked in one shape is not asked
    again in another (with ``--mms 1``, khugepaged's ``anon_pages=0`` makes its models of
    the run's shape those of the file-page shape)."""
    qs: list[Question] = []
    exhausted: list[int] = []
    depths: list[int] = []
    two_mms: list[int] = []
    differed: list[int] = []
    quiet: list[int] = []
    found: dict[str, Broken] = {}
    states = 0
    cut = False
    models: set[Config] = set()  # a kind's own shape can make a model of two shapes one
    switches = switching_kinds(v)

    def group(q: Question) -> tuple[bool, bool]:
        """(no walk saw the change answered otherwise, a kind the fuzzer never ran)."""
        other = otherwise is not None and not otherwise.differs(q.config)
        never_ran = ran is not None and not (q.asker in ran and (q.partner or q.asker) in ran)
        return other, never_ran

    for g in ((False, False), (False, True), (True, False), (True, True)):
        for shape, switching in shapes(run):
            left = [p for p in props if p not in found]
            if not left:  # every property broken: no walks for models never asked
                break
            asked = [
                q
                for q in questions(v, reach, shape)
                if q.config not in models
                and (not switching or bool({q.asker, q.partner} & switches))
                and group(q) == g
            ]
            models.update(q.config for q in asked)
            if not asked:
                continue
            if switching:  # the questions are in qs from here on, searched or not
                two_mms += range(len(qs), len(qs) + len(asked))
            if otherwise is not None and not g[0]:
                differed += range(len(qs), len(qs) + len(asked))
            if states >= max_states:
                qs += asked
                depths += [0] * len(asked)
                cut = True
                continue
            n = search(v, asked, left, max_states - states, otherwise=otherwise)
            exhausted += [len(qs) + i for i in n.exhausted]
            quiet += [len(qs) + i for i in n.quiet or ()]
            qs += asked
            depths += n.depths
            states += n.states
            found.update({p: b for p, b in n.found.items() if p not in found})
            cut = cut or n.cut
    return Narrowed(
        tuple(qs),
        tuple(depths),
        tuple(exhausted),
        states,
        cut,
        found,
        tuple(two_mms),
        None if otherwise is None else tuple(differed),
        None if otherwise is None else tuple(quiet),
    )


def ran_kinds(v: Variant, steered: Iterable[str] = ()) -> frozenset[str]:
    """The kinds of path the fuzzer ran on ``v``: those it draws (``fuzz_max``), and those it
    was steered to (``tlbfuzz.fuzz.changes.steered_kinds``)."""
    return frozenset(k.name for k in budget_kinds(v.paths()) if k.fuzz_max) | set(steered)


def how_far(questions: int, whole: int, depths: Iterable[int]) -> str:
    """How far ``questions`` models were searched, ``whole`` of them in every reachable state
    and the others to ``depths``: "35 in every reachable state, 75 to 6 steps, 252 not
    searched"."""
    if whole == questions:
        return "every reachable state of every one"
    by = collections.Counter(depths)
    parts = [f"{whole} in every reachable state"] if whole else []
    parts += [f"{n} to {d} steps" for d, n in sorted(by.items(), reverse=True) if d]
    parts += [f"{by[0]} not searched"] if by[0] else []
    return ", ".join(parts)


@attrs.frozen
class BaseInModel:
    """What ``prop`` does on ``base`` in the narrowed model (``question``) where the patch
    broke it: a proof that the race is the patch's own (``holds``, every reachable state
    searched), no race of up to ``depth`` steps (``cut``), or the base's race too
    (``breaks``, in ``length`` steps)."""

    base: str
    question: str
    prop: str
    verdict: str
    states: int
    depth: int
    length: int = 0

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def lines(self) -> list[str]:
        said = f"In the narrowed model {self.question}, {self.base} "
        if self.verdict == "holds":
            said += (
                f"holds {self.prop} in every reachable state ({self.states:,} states): in this"
                " model the race is the patch's own."
            )
        elif self.verdict == "breaks":
            said += (
                f"breaks {self.prop} too, in {self.length} steps: the base has a race here of"
                " its own."
            )
        else:
            said += (
                f"holds {self.prop} in every schedule of up to {self.depth} steps"
                f" ({self.states:,} states, where the budget ran out)."
            )
        return prose(said, 72, "", "  ")


def base_in_model(
    base: Variant, question: Question, props: Sequence[str], max_states: int
) -> dict[str, BaseInModel]:
    """Each of ``props`` on ``base`` in ``question``'s model, in one breadth-first search of at
    most ``max_states`` unique states (``tlbfuzz.fuzz.changes.whose`` replays one schedule on
    the base; this searches the whole model the patch broke). The patch often breaks two
    properties in one model (a write after mprotect returned breaks two), and the base's
    search is as long as the patch's: one search answers them all, each as a search of that
    property alone would (a broken one with the states and depth where it broke)."""
    at: dict[str, tuple[int, int]] = {}  # per property broken: its length, states seen then

    def keep(schedule: list[Action], violation: Violation) -> bool:
        at.setdefault(violation.prop, (len(schedule), levels.states))
        return len(at) < len(props)

    levels = Levels(World.initial(base, question.config), props, None, Collapse(True), keep)
    r = None
    while r is None and levels.depth < MAX_DEPTH:
        r = levels.next_level(max_states)
    r = r or levels.result()
    out: dict[str, BaseInModel] = {}
    for prop in props:
        if prop in at:  # as a search of this property alone stops: at its first violation
            length, states = at[prop]
            out[prop] = BaseInModel(
                base.name, str(question), prop, "breaks", states, length, length
            )
        else:
            verdict = "holds" if r.exhausted else "cut"
            out[prop] = BaseInModel(base.name, str(question), prop, verdict, r.states, r.depth)
    return out
