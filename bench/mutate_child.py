"""One mutant's run, in its own process: ``bench/mutate.py`` starts this script with
PYTHONPATH pointing at a copy of ``protocol/`` and ``fuzz/`` in which one file is mutated
(and of ``tlbfuzz/``, whose symlinks point to them).

    python bench/mutate_child.py PLAN_JSON

It runs the plan's stages in order (``explore``: breadth-first search; ``ci``: the fuzzer's
``ci`` profile; ``corpus``: the shipped corpus replayed) and writes one JSON object per
line to its standard output:
``{"event": "start", "protocol": FILE}`` first, then a ``violation`` event (stage, variant,
property, config, schedule) for each property a stage breaks, a ``corpus`` event for each
corpus file whose replay fails, a ``stage`` event when a stage
ends (after a ``coverage`` event, the lines it ran, if the plan asks), and ``done`` -- or
``crash`` (the exception and where it was raised) if the model raised. It never decides
what counts as a kill: the parent replays each violation on the unmutated model, and stops
this process at the first that does not break there too.
Everything else the run prints goes to standard error.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from tlbfuzz.protocol import Action, Config, Violation

    TraceFunction = Callable[[FrameType, str, object], Any]


def _emit(out: IO[str], event: dict[str, Any]) -> None:
    out.write(json.dumps(event) + "\n")
    out.flush()


def _violation(
    out: IO[str], stage: str, variant: str, prop: str, config: Config, schedule: list[str]
) -> None:
    event = {
        "event": "violation",
        "stage": stage,
        "variant": variant,
        "prop": prop,
        "config": config.to_dict(),
        "schedule": schedule,
    }
    _emit(out, event)


def explore(out: IO[str], stage: dict[str, Any]) -> None:
    """Breadth-first search of the stage's configuration; every property's shortest
    violation is reported (the parent stops this process at the first that kills)."""
    from tlbfuzz.protocol import DEFAULT_PROPERTIES, VARIANTS, Budget, Config, World
    from tlbfuzz.protocol.search import bfs

    per_cpu = tuple(
        sorted((int(c), Budget.only(**b)) for c, b in stage.get("cpu_budget", {}).items())
    )
    config = Config(
        budget=Budget.only(**stage["budget"]), cpu_budget=per_cpu, reuse=False, **stage["config"]
    )
    variant = VARIANTS[stage["variant"]]
    left_out = frozenset(stage.get("no", ()))

    def found(path: list[Action], v: Violation) -> bool:
        _violation(out, stage["name"], variant.name, v.prop, config, [str(a) for a in path])
        return True

    res = bfs(
        World.initial(variant, config),
        DEFAULT_PROPERTIES,
        stage["depth"],
        stage["max_states"],
        allowed=(lambda a: a.op not in left_out) if left_out else None,
        on_violation=found,
    )
    if res.violation is None and not res.exhausted:  # stopped at the cap: undecided
        _emit(out, {"event": "cut", "stage": stage["name"], "states": res.states})


def ci(out: IO[str], stage: dict[str, Any]) -> None:
    """The fuzzer's ``ci`` profile on the stage's variant, but for ``skip_props``."""
    from tlbfuzz.fuzz.runner import Finding, Outcome, fuzz_variant
    from tlbfuzz.protocol import DEFAULT_PROPERTIES, VARIANTS

    variant = VARIANTS[stage["variant"]]
    skip = set(stage.get("skip_props", ()))

    def outcome(o: Outcome) -> None:
        if isinstance(o, Finding):
            _violation(
                out, stage["name"], variant.name, o.prop, o.config, [str(a) for a in o.schedule]
            )

    props = [p for p in DEFAULT_PROPERTIES if p not in skip]
    fuzz_variant(variant, props, profile="ci", seed=stage["seed"], on_outcome=outcome)


class Lines:
    """Line coverage of a few files, by ``sys.settrace`` (local tracing only inside them,
    so the rest of the run pays one call per function call)."""

    def __init__(self, root: str, files: list[str]) -> None:
        self.files = {os.path.join(root, f): f for f in files}
        self.lines: dict[str, set[int]] = {f: set() for f in files}

    def _global(self, frame: FrameType, event: str, arg: object) -> TraceFunction | None:
        name = self.files.get(frame.f_code.co_filename)
        if name is None:
            return None
        seen = self.lines[name]
        seen.add(frame.f_lineno)

        def local(frame: FrameType, event: str, arg: object) -> TraceFunction:
            if event == "line":
                seen.add(frame.f_lineno)
            return local

        return local

    def start(self) -> None:
        sys.settrace(self._global)

    def take(self) -> dict[str, list[int]]:
        """The lines run since the last ``take()``."""
        out = {f: sorted(n) for f, n in self.lines.items()}
        for n in self.lines.values():
            n.clear()
        return out

    def stop(self) -> None:
        sys.settrace(None)


def corpus(out: IO[str], stage: dict[str, Any]) -> None:
    """Replay the shipped corpus (what pytest replays): each finding must still break its
    property on its variant, each ``holds`` schedule must hold, every step must be enabled."""
    from pathlib import Path

    from tlbfuzz.fuzz.corpus import iter_files, load, replay

    root = Path(stage["dir"])
    for path in iter_files([root]):
        r = replay(load(path))
        if not r.ok:
            rel = str(path.relative_to(root))
            _emit(
                out,
                {
                    "event": "corpus",
                    "stage": stage["name"],
                    "file": rel,
                    "message": r.message.replace(f"{root}/", ""),
                },
            )


def run(plan: dict[str, Any], out: IO[str]) -> None:
    import tlbfuzz.protocol

    _emit(out, {"event": "start", "protocol": tlbfuzz.protocol.__file__})
    lines = None
    if plan.get("coverage"):
        # the folder holding protocol/ as imported: tlbfuzz/, whose path the code's frames name
        root = os.path.dirname(os.path.dirname(tlbfuzz.protocol.__file__))
        lines = Lines(root, plan["coverage"])
        lines.start()
    for stage in plan["stages"]:
        t0 = time.perf_counter()
        if stage["kind"] == "explore":
            explore(out, stage)
        elif stage["kind"] == "ci":
            ci(out, stage)
        elif stage["kind"] == "corpus":
            corpus(out, stage)
        else:
            raise ValueError(f"unknown stage kind {stage['kind']!r}")
        seconds = round(time.perf_counter() - t0, 3)
        if lines is not None:
            _emit(out, {"event": "coverage", "stage": stage["name"], "lines": lines.take()})
        _emit(out, {"event": "stage", "stage": stage["name"], "seconds": seconds})
    if lines is not None:
        lines.stop()
    _emit(out, {"event": "done"})


def main() -> int:
    plan = json.loads(sys.argv[1])
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # anything else written to fd 1 (a stray print) goes to stderr
    sys.stdout = sys.stderr
    try:
        run(plan, out)
    except Exception as e:
        tb = traceback.extract_tb(e.__traceback__)
        root = os.environ.get("PYTHONPATH", "")
        # real paths: a frame in tlbfuzz/protocol/tlb.py is reported as protocol/tlb.py, the
        # mutant's file
        root = os.path.realpath(root) if root else ""
        inside = [f for f in tb if root and os.path.realpath(f.filename).startswith(root)]
        last = (inside or tb)[-1] if (inside or tb) else None
        file = os.path.realpath(last.filename) if last else ""
        where = f"{os.path.relpath(file, root or '.')}:{last.lineno}" if last else ""
        traceback.print_exc()
        _emit(out, {"event": "crash", "error": f"{type(e).__name__}: {e}"[:300], "where": where})
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
