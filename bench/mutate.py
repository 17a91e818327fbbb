"""The mutation score of the properties: how many small edits of the kernel model's logic the
explorer and the ``ci`` fuzzer notice.

    python -m bench.mutate                      # the default sample: 120 mutants, seed 0
    python -m bench.mutate --sample 10 --jobs 1 --json mutate.json
    python -m bench.mutate --list [--sample 0]  # the sample's mutants (0: all), with ids
    python -m bench.mutate --only ID [--only ID]... [--kinds explore,corpus]
    python -m bench.mutate --report mutate.json  # its report again, with today's equivalents
    python -m bench.mutate --report mutate.json --merge rerun.json --json merged.json

Mutants (``bench/mutants.py``: operators, what is left out and why) are enumerated from
``protocol/{hw,mm,smp,tlb,variants}.py`` in a fixed order, and ``--sample`` of them drawn with
``random.Random(--seed)``: the same sample for the same source. Each runs in its own process
(``bench/mutate_child.py``) on a copy of ``protocol/`` and ``fuzz/`` in a temporary folder
with the one file mutated, imported through a copy of ``tlbfuzz/`` whose relative symlinks
point to them; the working tree is never written.

A mutant is killed when a stage breaks a default property on ``linux-current`` or
``linux-5.2`` with a schedule that does not break it on the unmutated model (each violation is
replayed there; the mutant may also have enabled a step the real model never allows), or when
the model raises (``crash``) or a stage runs past its limit (``timeout``: three times the
unmutated model's time for that stage, plus 30 s; ``--timeout`` fixes it). The stages, cheapest
first, stop at the first kill:

1. ``explore``: exhaustive breadth-first search of small configurations (``STAGES``), each of
   which both variants hold in every reachable state;
2. ``ci``: the fuzzer's ``ci`` profile (derandomized) on each variant. linux-5.2 breaks
   properties in the ``ci`` profile unmutated (the 2019 switch_mm_irqs_off() window); the
   first run (the unmutated model, "baseline") finds which, and the mutants' ``ci`` runs leave
   those properties out there (linux-current's run still checks them);
3. ``corpus``: the shipped corpus replayed, as pytest does. A mutant that only this stage
   kills still counts as a survivor in the score (the issue's definition), and the report
   gives a second figure with these kills.

Before the sample, the unmutated model runs the whole plan under line tracing: it must
survive (otherwise the plan, not the mutants, is wrong, and the run stops), its stage times
set the limits, and a stage that never ran a mutant's lines is skipped for that mutant
(``reached``): it would run exactly as unmutated. A mutant skipped everywhere is
``unreached`` (the RFC variants' asynchronous paths, which neither kernel runs).

The score is killed / (sampled - equivalent): a survivor is equivalent when
``bench/mutants-equivalent.json`` maps its id to a reason; the report lists the other
survivors as unexplained. The last line is the summary to paste into the README.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from bench.mutants import (
    MODULES,
    REPO,
    Mutant,
    enumerate_mutants,
    identity,
    sample,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

CHILD: Final = Path(__file__).resolve().parent / "mutate_child.py"
EQUIVALENT_FILE: Final = Path(__file__).resolve().parent / "mutants-equivalent.json"
COPIED: Final = ("protocol", "fuzz", "tlbfuzz")
"""Copied per mutant, symlinks as symlinks: ``tlbfuzz/protocol`` -> ``../protocol`` then
points to the copy, so ``tlbfuzz.protocol`` is the mutated model."""
VARIANTS: Final = ("linux-current", "linux-5.2")
DEPTH: Final = 200
MAX_STATES: Final = 300_000
"""A stage's cap on unique states. Every stage is exhaustive unmutated well under it (the
largest has 56,538), but a mutant may enlarge the space: at 60,000 the two-switch stage cut
off a mutant whose violation lies at 72,421 states, which then "survived". The stage's time
limit bounds the cost."""
BASELINE_LIMIT: Final = 3600.0
"""Seconds a stage may take on the unmutated model (its time sets the mutants' limits)."""
STAGE_SLACK: Final = 30.0


def _explore(
    variant: str,
    budget: dict[str, int],
    cpu_budget: dict[int, dict[str, int]] | None = None,
    no: tuple[str, ...] = (),
    **config: int | str,
) -> dict[str, Any]:
    parts = [f"{k}={n}" for k, n in budget.items()]
    for cpu, b in (cpu_budget or {}).items():
        parts += [f"cpu{cpu}:{k}={n}" for k, n in b.items()]
    label = ",".join(parts)
    for k, n in config.items():
        label += f" {k}={n}"
    if no:
        label += f" no={','.join(no)}"
    return {
        "kind": "explore",
        "name": f"explore {variant} {label}",
        "variant": variant,
        "budget": budget,
        "cpu_budget": {str(c): b for c, b in (cpu_budget or {}).items()},
        "config": config,
        "no": list(no),
        "depth": DEPTH,
        "max_states": MAX_STATES,
    }


QUIET: Final = ("nmi", "tlb_evict", "pwc_evict", "enter_lazy_tlb")
"""Actions a stage may leave out (``no``): NMIs, cache evictions and a CPU going lazy, which
multiply a space without being part of the race it is there for."""

STAGES: Final[tuple[dict[str, Any], ...]] = (
    # one page per mm: a few hundred states each, under a second
    *(_explore(v, {"madvise": 1}, file_pages=0) for v in VARIANTS),
    *(_explore(v, {"mprotect": 1}, file_pages=0) for v in VARIANTS),
    *(_explore(v, {"writeback": 1}, anon_pages=0) for v in VARIANTS),
    # both pages (a range flush, a page-table page): 2,593 and 4,321 states
    *(_explore(v, {"munmap": 1}) for v in VARIANTS),
    # two flushes of one mm in flight (tlb_gen gaps, full flushes): 6,185 and 15,577 states
    *(_explore(v, {"madvise": 1, "mprotect": 1}, file_pages=0) for v in VARIANTS),
    # context switches (lazy TLB, ASIDs, mm_cpumask): linux-current only, since linux-5.2
    # breaks the 2019 switch window with a switch in the budget; 9,813 and 14,285 states
    _explore("linux-current", {"munmap": 1}, {1: {"switch": 1}}, file_pages=0),
    _explore("linux-current", {"madvise": 1}, {1: {"switch": 1}}, file_pages=0),
    # a madvise of either page on cpu0 alone, both pages mapped (a dirty file page's forced
    # flush with the anonymous PTE still present): 8,883 and 6,699 states
    *(_explore(v, {}, {0: {"madvise": 1}}) for v in VARIANTS),
    # both CPUs switch, cpu1 also unmaps (one CPU switching into an mm the other runs, whose
    # mm_cpumask bit is already set): linux-current only, 56,538 states
    _explore("linux-current", {}, {0: {"switch": 1}, 1: {"switch": 1, "munmap": 1}}, file_pages=0),
    # truncation against a zap of the same file page (gather_holds(): the page cache's
    # reference goes, the gather's keeps the page until its flush): 15,568 and 9,496 states
    *(_explore(v, {}, {0: {"madvise": 1}, 1: {"truncate": 1}}, anon_pages=0) for v in VARIANTS),
    # and against munmap, whose free_pgtables() takes the vma out of i_mmap before its gather
    # flushes: truncation then opens no gather and must wait for munmap's: 10,192 and 5,996
    *(_explore(v, {}, {0: {"munmap": 1}, 1: {"truncate": 1}}, anon_pages=0) for v in VARIANTS),
    # x86-TSO (the store buffers of is_lazy, loaded_mm and the csd lock): the lazy-TLB
    # handshake of tests/test_tso.py, which both kernels hold, 2,282 and 3,062 states. Without
    # it no stage ran a line of a store buffer (the first run on today's model: its literal
    # mutants "survived" only because a changed literal always runs the ci stage)
    *(
        _explore(
            v, {}, {0: {"madvise": 1}, 1: {"switch": 2}}, mms=1, file_pages=0, memory_model="tso"
        )
        for v in VARIANTS
    ),
    # x86-TSO with a switch to the other mm (the fences around mm_cpumask), linux-current
    # only (linux-5.2 breaks its 2019 switch window there): 11,878 states
    _explore(
        "linux-current", {}, {0: {"madvise": 1}, 1: {"switch": 1}}, file_pages=0, memory_model="tso"
    ),
    # NUMA hinting against reclaim (20841405940e: a PROT_NONE entry whose flush is pending is
    # still accessible, pte_accessible(); reclaim must flush it): 7 steps from a lost flush to
    # a use-after-free. 5,950 and 2,818 states
    *(_explore(v, {}, {0: {"numa": 1}, 1: {"reclaim": 1}}, file_pages=0) for v in VARIANTS),
    # x86-TSO, cpu1 switching to mm B and back to A while cpu0's madvise flushes A, with the
    # hardware's noise and lazy switches left out (the window 83b0177a6c48's ``else smp_mb()``
    # closes is 20 steps deep; tests/test_tso.py). linux-5.2 holds this space too once its
    # switch-window NMI is left out: 4,280 and 2,902 states
    *(
        _explore(
            v,
            {},
            {0: {"madvise": 1}, 1: {"switch": 2}},
            no=QUIET,
            mms=2,
            file_pages=0,
            memory_model="tso",
        )
        for v in VARIANTS
    ),
    *({"kind": "ci", "name": f"ci {v}", "variant": v, "seed": 0} for v in VARIANTS),
    {"kind": "corpus", "name": "corpus", "dir": str(REPO / "corpus")},
)
"""The default plan. Every explore stage is exhaustive (under ``MAX_STATES``) for both
variants unmutated. Each CPU gets the budget; ``cpuN:`` entries replace it for that CPU."""

KILLED: Final = ("explore", "ci", "crash", "timeout")
"""Killed as issue #12 defines it: a default property broken on linux-current or linux-5.2,
or the model raising or hanging."""
CORPUS: Final = "corpus"
"""Survived those, but the shipped corpus no longer replays: a finding of a broken variant
is gone, a step is no longer enabled, or a schedule that held breaks. Counted apart: it
measures the model's fidelity (can it still show the known bugs?), not the properties."""
LITERALS: Final = ("bool_const", "int_plus_one", "int_minus_one")
"""Operators that change a literal: Hypothesis mixes the literals of local modules into its
draws, so such a mutant's ``ci`` runs differ even where its code never runs."""


def reached(m: Mutant, coverage: Mapping[str, Sequence[int]]) -> bool:
    """Whether the unmutated model ran any line of the mutant's edit (``coverage``: the
    baseline's lines in one stage). The stages are deterministic (breadth-first search; the
    derandomized ``ci`` profile), so in a stage that never ran its lines the mutant runs
    exactly as the unmutated model does, and that stage is skipped -- but for a changed
    literal, which changes the ``ci`` stream."""
    if m.operator in LITERALS:
        return True
    ran = coverage.get(m.file, ())
    return any(m.line <= n <= m.end_line for n in ran)


@dataclass
class Result:
    """What happened to one mutant."""

    mutant: Mutant
    status: str
    """``explore``, ``ci`` (killed by that kind of stage), ``crash``, ``timeout``;
    ``survived``, or ``unreached``: not run, since the unmutated model never ran its lines
    in any stage (``reached``) and it would have survived."""
    stage: str = ""
    prop: str = ""
    detail: str = ""
    """The violation's schedule length, or the exception and where it was raised."""
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    """Each stage that finished: its seconds."""
    baseline_broken: dict[str, list[str]] = field(default_factory=dict)
    """Per stage, the properties broken by schedules that break them unmutated too."""
    coverage: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    """The baseline's: per stage, per file of ``MODULES``, the lines that ran."""
    now: str = ""
    """The mutated lines, as run."""
    skipped: list[str] = field(default_factory=list)
    """The stages not run: the unmutated model never ran the mutant's lines there."""
    cut: list[str] = field(default_factory=list)
    """Explore stages that stopped short of the whole space without a violation (at
    ``MAX_STATES``, or at ``DEPTH``): the mutant's space outgrew the stage, so a survivor is
    undecided there, not shown to hold."""

    @property
    def killed(self) -> bool:
        return self.status in KILLED

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mutant"] = self.mutant.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Result:
        return cls(**{**d, "mutant": Mutant(**d["mutant"])})


# --- replay on the unmutated model ---------------------------------------------------------


def breaks_unmutated(event: dict[str, Any]) -> bool:
    """Whether the violation's schedule breaks the same property on the unmutated model
    (this process imports the working tree's ``protocol``). A schedule that does not replay
    there (a step never enabled, an action it cannot parse) does not."""
    from tlbfuzz.protocol import VARIANTS as ALL
    from tlbfuzz.protocol import Config, World, parse
    from tlbfuzz.protocol.search import first_violation

    try:
        config = Config.from_dict(event["config"])
        schedule = [parse(s) for s in event["schedule"]]
        start = World.initial(ALL[event["variant"]], config)
        return first_violation(start, schedule, [event["prop"]]) is not None
    except Exception:
        return False


# --- one mutant ------------------------------------------------------------------------------


class Workspace:
    """A temporary folder holding a pristine copy of the packages, copied per mutant."""

    def __init__(self, root: Path = REPO, keep: bool = False) -> None:
        self.root = root
        self.dir = Path(tempfile.mkdtemp(prefix="tlbfuzz-mutate-"))
        self.keep = keep
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for pkg in COPIED:
            shutil.copytree(root / pkg, self.dir / "base" / pkg, symlinks=True, ignore=ignore)
        self.sources = {f: (self.dir / "base" / f).read_bytes() for f in MODULES}
        self._n = 0
        self._lock = threading.Lock()

    def prepare(self, m: Mutant) -> Path:
        with self._lock:
            self._n += 1
            d = self.dir / f"m{self._n:04d}-{m.id}"
        for pkg in COPIED:
            shutil.copytree(self.dir / "base" / pkg, d / pkg, symlinks=True)
        if m.operator != "identity":
            (d / m.file).write_bytes(m.apply(self.sources[m.file]))
        return d

    def close(self) -> None:
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def run_mutant(
    ws: Workspace,
    m: Mutant,
    stages: Sequence[dict[str, Any]],
    limits: Mapping[str, float],
    on_event: Callable[[dict[str, Any]], None] | None = None,
    coverage: Sequence[str] = (),
) -> Result:
    """Run ``stages`` on mutant ``m`` in a fresh process; stop at its first kill, or when a
    stage runs past its limit (``limits``: seconds per stage name). With ``coverage`` (files
    relative to the copy), the result holds the lines of those files that ran."""
    d = ws.prepare(m)
    env = {
        **os.environ,
        "PYTHONPATH": str(d),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }
    t0 = time.perf_counter()
    stderr = (d / "stderr.txt").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), json.dumps({"stages": list(stages), "coverage": coverage})],
        cwd=d,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )
    names = [s["name"] for s in stages]
    current = [0]  # the index of the stage running
    deadline = [time.monotonic() + limits[names[0]]] if names else [time.monotonic() + 60]
    timed_out = threading.Event()
    finished = threading.Event()

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def watchdog() -> None:
        while not finished.wait(0.25):
            if time.monotonic() > deadline[0]:
                timed_out.set()
                kill()
                return

    threading.Thread(target=watchdog, daemon=True).start()
    result = Result(m, "survived")
    started = done = False
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            ev = json.loads(line)
            if on_event is not None:
                on_event(ev)
            kind = ev["event"]
            if kind == "start":
                if Path(ev["protocol"]).resolve() != (d / "protocol" / "__init__.py").resolve():
                    kill()
                    raise RuntimeError(
                        f"the mutant's process imported {ev['protocol']}, not {d / 'protocol'}"
                    )
                started = True
            elif kind == "violation":
                if breaks_unmutated(ev):
                    result.baseline_broken.setdefault(ev["stage"], []).append(ev["prop"])
                    continue
                result.status = ev["stage"].split()[0]
                result.stage = ev["stage"]
                result.prop = ev["prop"]
                result.detail = f"{len(ev['schedule'])} steps"
                kill()
                break
            elif kind == "corpus":
                result.status = CORPUS
                result.stage = ev["stage"]
                result.detail = ev["message"][:300]
                kill()
                break
            elif kind == "stage":
                result.stages[ev["stage"]] = ev["seconds"]
                current[0] += 1
                if current[0] < len(names):
                    deadline[0] = time.monotonic() + limits[names[current[0]]]
            elif kind == "crash":
                result.status = "crash"
                result.stage = names[current[0]] if current[0] < len(names) else ""
                result.detail = f"{ev['error']} at {ev['where']}"
            elif kind == "coverage":
                result.coverage[ev["stage"]] = ev["lines"]
            elif kind == "cut":
                result.cut.append(ev["stage"])
            elif kind == "done":
                done = True
    finally:
        finished.set()
        proc.stdout.close()
        proc.wait()
        stderr.close()
    result.seconds = round(time.perf_counter() - t0, 2)
    if timed_out.is_set() and result.status == "survived":
        result.status = "timeout"
        result.stage = names[current[0]] if current[0] < len(names) else ""
        result.detail = f"past {limits.get(result.stage, 0):.0f} s"
    elif result.status == "survived" and not done:
        # the process died without a word (killed by the kernel, a crash in C): a crash
        tail = (d / "stderr.txt").read_text(errors="replace").strip().splitlines()[-1:]
        result.status = "crash"
        result.stage = names[current[0]] if current[0] < len(names) else ""
        result.detail = f"exit {proc.returncode}: {' '.join(tail)[:200]}"
        if not started:
            result.detail = "did not start: " + result.detail
    if not ws.keep:
        shutil.rmtree(d, ignore_errors=True)
    return result


# --- a run -----------------------------------------------------------------------------------


@dataclass
class Run:
    total_mutants: int
    sample: int
    seed: int
    jobs: int
    limits: dict[str, float]
    """Seconds each stage may take for a mutant."""
    plan: list[dict[str, Any]]
    baseline: Result
    results: list[Result]
    equivalent: dict[str, dict[str, str]]
    seconds: float

    def counts(self) -> dict[str, int]:
        c = dict.fromkeys((*KILLED, CORPUS, "survived", "unreached"), 0)
        for r in self.results:
            c[r.status] += 1
        return c

    def survivors(self) -> list[Result]:
        return [r for r in self.results if not r.killed]

    def equivalent_survivors(self) -> list[Result]:
        return [r for r in self.survivors() if r.mutant.id in self.equivalent]

    def unexplained(self) -> list[Result]:
        return [r for r in self.survivors() if r.mutant.id not in self.equivalent]

    def killed_marked_equivalent(self) -> list[Result]:
        return [r for r in self.results if r.killed and r.mutant.id in self.equivalent]

    def score(self, corpus: bool = False) -> float:
        """killed / (sampled - equivalent survivors); with ``corpus``, the corpus's kills
        count as kills too."""
        killed = sum(
            r.killed or (corpus and r.status == CORPUS and r.mutant.id not in self.equivalent)
            for r in self.results
        )
        denom = len(self.results) - len(self.equivalent_survivors())
        return killed / denom if denom else 1.0

    def summary(self) -> str:
        c = self.counts()
        killed = sum(c[k] for k in KILLED)
        eq = self.equivalent_survivors()
        kinds = dict.fromkeys(EQUIVALENCE_KINDS, 0)
        for r in eq:
            kinds[self.equivalent[r.mutant.id]["kind"]] += 1
        why = ", ".join(f"{n} {k}" for k, n in kinds.items())
        partial = (
            f"PARTIAL, {len(self.results)} of {self.sample} run: "
            if len(self.results) < self.sample
            else ""
        )
        return (
            f"{partial}mutation score {100 * self.score():.1f}%: {killed} killed of "
            f"{len(self.results) - len(eq)} ({self.sample} sampled of "
            f"{self.total_mutants}, seed {self.seed}; explore {c['explore']}, ci {c['ci']}, "
            f"crash {c['crash']}, timeout {c['timeout']}; {len(eq)} survivors left out: {why}; "
            f"{len(self.unexplained())} survivors not left out, of which the corpus replay "
            f"kills {sum(r.status == CORPUS for r in self.unexplained())}: "
            f"{100 * self.score(corpus=True):.1f}% with it"
            f"{self._cut()}) in {self.seconds:.0f} s"
        )

    def _cut(self) -> str:
        n = sum(bool(r.cut) for r in self.unexplained())
        return f"; {n} of them undecided, a stage stopped short of its whole space" if n else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "score": self.score(),
            "total_mutants": self.total_mutants,
            "sample": self.sample,
            "seed": self.seed,
            "jobs": self.jobs,
            "limits": self.limits,
            "seconds": self.seconds,
            "counts": self.counts(),
            "plan": self.plan,
            "baseline": self.baseline.to_dict(),
            "results": [r.to_dict() for r in self.results],
            "equivalent": self.equivalent,
            "survivors": [
                {**r.mutant.to_dict(), "equivalent": self.equivalent.get(r.mutant.id)}
                for r in self.survivors()
            ],
        }


EQUIVALENCE_KINDS: Final = ("equivalent", "unreached", "correct")
"""Why a survivor is left out of the score. ``equivalent``: it behaves as the model does in
every state either kernel reaches. ``unreached``: linux-current and linux-5.2 never run the
mutated code (the RFC variants' asynchronous paths, a report no correct kernel makes).
``correct``: the mutated model is still a correct kernel on a legal processor: the kernel
only does more (flushes, IPIs, refuses or waits more), or the processor does something the
SDM lets it do; a property that broke on it would be wrong. A survivor that makes the
*model* weaker (the processor stops doing something it may do, the ghost state a property
reads stops being kept) is none of these: it stays in the score, and the corpus stage is
what can see it."""


def load_run(path: Path) -> Run:
    """A run saved by ``--json``, with the equivalent list as it is now."""
    d = json.loads(path.read_text())
    return Run(
        d["total_mutants"],
        d["sample"],
        d["seed"],
        d["jobs"],
        d["limits"],
        d["plan"],
        Result.from_dict(d["baseline"]),
        [Result.from_dict(r) for r in d["results"]],
        load_equivalent(),
        d["seconds"],
    )


def merge(run: Run, rerun: Run) -> Run:
    """``run`` with the kills of ``rerun``: a mutant that ``rerun`` ran again (``--only``,
    under a plan or properties stronger since ``run``) and killed, or that only the corpus
    killed there, takes that result; every other keeps ``run``'s. The plan becomes both
    plans' stages."""
    again = {r.mutant.id: r for r in rerun.results}
    results = []
    for r in run.results:
        n = again.get(r.mutant.id)
        if n is not None and (n.killed or (n.status == CORPUS and not r.killed)):
            r = n  # noqa: PLW2901  # the rerun's result takes this mutant's place
        results.append(r)
    names = {s["name"] for s in run.plan}
    plan = run.plan + [s for s in rerun.plan if s["name"] not in names]
    return Run(
        run.total_mutants,
        run.sample,
        run.seed,
        run.jobs,
        run.limits | rerun.limits,
        plan,
        run.baseline,
        results,
        run.equivalent,
        run.seconds + rerun.seconds,
    )


def load_equivalent(path: Path = EQUIVALENT_FILE) -> dict[str, dict[str, str]]:
    """``{id: {"kind": ..., "reason": ...}}`` from the checked-in file, whose entries also
    say which mutant each was (file, function, operator, code), for a reader and for when
    the code moves."""
    if not path.exists():
        return {}
    raw: dict[str, dict[str, str]] = json.loads(path.read_text())
    return {k: {"kind": v["kind"], "reason": v["reason"]} for k, v in raw.items()}


def _line(r: Result, sources: dict[str, bytes]) -> str:
    m = r.mutant
    tag = {"unreached": "  [unreached]", CORPUS: f"  [corpus: {r.detail}]"}.get(r.status, "")
    if r.status == "survived" and r.skipped:
        tag = f"  [{len(r.skipped)} stages skipped as unreached]"
    if r.status == "survived" and r.cut:
        tag += f"  [UNDECIDED: stopped short of the whole space in {', '.join(r.cut)}]"
    return (
        f"  {m.id}  {m.where}  {m.function}  {m.operator}{tag}\n"
        f"      was: {m.original.replace(chr(10), ' / ')}\n"
        f"      now: {r.now or m.mutated_lines(sources[m.file])}"
    )


def report(run: Run, sources: dict[str, bytes]) -> str:
    out = []
    c = run.counts()
    out.append(
        f"{len(run.results)} of {run.sample} sampled mutants run, of {run.total_mutants} "
        f"(seed {run.seed}), "
        f"--jobs {run.jobs}, {run.seconds:.0f} s"
    )
    out.append(
        f"baseline (unmutated): {run.baseline.status}, {run.baseline.seconds:.0f} s; "
        f"properties broken unmutated: {run.baseline.baseline_broken or 'none'}"
    )
    out.append(
        f"killed: explore {c['explore']}, ci {c['ci']}, crash {c['crash']}, "
        f"timeout {c['timeout']}; then killed by the corpus replay {c[CORPUS]}; survived "
        f"{c['survived']}; unreached {c['unreached']} (not run: the unmutated model never ran "
        f"their lines in this plan)"
    )
    by_stage: dict[str, int] = {}
    for r in run.results:
        if r.killed or r.status == CORPUS:
            by_stage[r.stage] = by_stage.get(r.stage, 0) + 1
    out.append("  kills  baseline s  limit s  stage")
    for s in run.plan:
        n = s["name"]
        skip = f" (leaving out {', '.join(s['skip_props'])})" if s.get("skip_props") else ""
        out.append(
            f"  {by_stage.get(n, 0):5d}  {run.baseline.stages.get(n, 0):10.1f}  "
            f"{run.limits.get(n, 0):7.0f}  {n}{skip}"
        )
    eq = run.equivalent_survivors()
    un = run.unexplained()
    if eq:
        out.append(f"equivalent survivors ({len(eq)}):")
        for r in eq:
            out.append(_line(r, sources))
            e = run.equivalent[r.mutant.id]
            out.append(f"      {e['kind']}: {e['reason']}")
    if un:
        out.append(f"unexplained survivors ({len(un)}):")
        out += [_line(r, sources) for r in un]
    wrong = run.killed_marked_equivalent()
    if wrong:
        out.append(f"killed, yet listed as equivalent ({len(wrong)}): fix {EQUIVALENT_FILE.name}")
        out += [f"  {r.mutant.id}  {r.mutant.where}  {r.status} {r.stage}" for r in wrong]
    out.append(run.summary())
    return "\n".join(out)


def _progress(i: int, n: int, r: Result) -> None:
    m = r.mutant
    what = r.status
    if r.killed or r.status == CORPUS:
        what = f"killed ({r.status}) {r.stage} {r.prop} {r.detail}"
    print(
        f"[{i}/{n}] {m.id} {m.where} {m.operator}: {what.strip()} ({r.seconds:.1f} s)",
        file=sys.stderr,
        flush=True,
    )


def run_sample(
    mutants: Sequence[Mutant],
    total: int,
    seed: int,
    jobs: int,
    timeout: float | None,
    stages: Sequence[dict[str, Any]] = STAGES,
    keep: bool = False,
    on_result: Callable[[Run], None] | None = None,
) -> Run:
    """Run the baseline, then ``mutants``; ``on_result`` gets the run so far after each
    mutant (``--json`` saves it, so that a stopped run still leaves its results)."""
    t0 = time.perf_counter()
    ws = Workspace(keep=keep)
    names = [s["name"] for s in stages]
    try:
        base = run_mutant(
            ws,
            identity(MODULES[0]),
            stages,
            dict.fromkeys(names, BASELINE_LIMIT),
            coverage=MODULES,
        )
        print(f"baseline: {base.status} in {base.seconds:.1f} s {base.stages}", file=sys.stderr)
        if base.status != "survived":
            raise SystemExit(
                f"the unmutated model is {base.status} by {base.stage} ({base.prop} "
                f"{base.detail}): the plan must be one both variants hold"
            )
        plan = [dict(s) for s in stages]
        for s in plan:  # ci: leave out what the unmutated model breaks there
            if s["kind"] == "ci" and s["name"] in base.baseline_broken:
                s["skip_props"] = sorted(set(base.baseline_broken[s["name"]]))
        limits = {
            n: timeout if timeout is not None else 3 * base.stages[n] + STAGE_SLACK for n in names
        }
        results: list[Result | None] = [None] * len(mutants)
        finished = 0
        lock = threading.Lock()

        def one(i: int) -> None:
            nonlocal finished
            m = mutants[i]
            mine = [s for s in plan if reached(m, base.coverage[s["name"]])]
            r = run_mutant(ws, m, mine, limits) if mine else Result(m, "unreached")
            r.skipped = [s["name"] for s in plan if s not in mine]
            r.now = m.mutated_lines(ws.sources[m.file])
            with lock:
                results[i] = r
                finished += 1
                _progress(finished, len(mutants), r)
                if on_result is not None:
                    done = [x for x in results if x is not None]
                    seconds = round(time.perf_counter() - t0, 1)
                    on_result(
                        Run(total, len(mutants), seed, jobs, limits, plan, base, done, {}, seconds)
                    )

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, range(len(mutants))))
    finally:
        ws.close()
    done = [r for r in results if r is not None]
    return Run(
        total,
        len(mutants),
        seed,
        jobs,
        limits,
        plan,
        base,
        done,
        load_equivalent(),
        round(time.perf_counter() - t0, 1),
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.mutate", description=__doc__.split("\n\n")[0] if __doc__ else ""
    )
    ap.add_argument("--sample", type=int, default=120, help="mutants to run (default 120; 0: all)")
    ap.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    ap.add_argument("--jobs", type=int, default=2, help="mutants at once (default 2)")
    ap.add_argument(
        "--timeout",
        type=float,
        help="seconds each stage may take (default: 3 times the unmutated model's, plus 30)",
    )
    ap.add_argument("--only", action="append", default=[], metavar="ID", help="run these ids")
    ap.add_argument("--list", action="store_true", help="list the chosen mutants and exit")
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the full result here")
    ap.add_argument(
        "--kinds",
        default="explore,ci,corpus",
        help="the kinds of stage to run, comma-separated (default: explore,ci,corpus)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    ap.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="print the report of a run saved with --json, with today's equivalent list",
    )
    ap.add_argument(
        "--merge",
        type=Path,
        metavar="JSON",
        help="with --report: a rerun (--only) of some of its mutants; what it killed counts",
    )
    args = ap.parse_args(argv)
    sources = {f: (REPO / f).read_bytes() for f in MODULES}
    if args.report:
        run = load_run(args.report)
        if args.merge:
            run = merge(run, load_run(args.merge))
        print(report(run, sources))
        if args.json:
            args.json.write_text(json.dumps(run.to_dict(), indent=2) + "\n")
        return 0
    everything = enumerate_mutants()
    if args.only:
        ids = {m.id: m for m in everything}
        missing = [i for i in args.only if i not in ids]
        if missing:
            ap.error(f"no such mutant: {', '.join(missing)}")
        chosen = [ids[i] for i in args.only]
    else:
        chosen = sample(everything, args.sample or len(everything), args.seed)
    if args.list:
        for m in chosen:
            now = m.mutated_lines(sources[m.file])[:90]
            print(f"{m.id}  {m.where:<26} {m.function:<44} {m.operator:<14} {now}")
        print(f"{len(chosen)} of {len(everything)} mutants", file=sys.stderr)
        return 0
    kinds = set(args.kinds.split(","))
    if not kinds <= {s["kind"] for s in STAGES}:
        ap.error(f"--kinds: want some of explore, ci, corpus, not {args.kinds!r}")
    stages = [s for s in STAGES if s["kind"] in kinds]

    def save(run: Run) -> None:
        if args.json:
            args.json.write_text(json.dumps(run.to_dict(), indent=2) + "\n")

    run = run_sample(
        chosen, len(everything), args.seed, args.jobs, args.timeout, stages, args.keep, save
    )
    print(report(run, sources))
    if args.json:
        args.json.write_text(json.dumps(run.to_dict(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
