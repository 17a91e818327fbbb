"""A fuzzing campaign: a work list of (variant, properties, seed) items, run by N worker
processes, split across machines by shards, sharing Hypothesis's example database, bounded by a
time budget, and resumable from that database.

The work list. Round ``r`` holds one item per variant, numbered ``r * len(variants) + v``. An
item runs ``tlbfuzz.fuzz.runner.fuzz_variant`` on the variant's properties that no earlier item
broke. Round 0 uses the campaign's seed (None: Hypothesis's own randomness, as a plain run
always did); later rounds, which only a ``time_budget`` asks for, use ``seed + r``. Shard
``I/N`` takes the items whose number is ``I - 1`` modulo ``N``, so N machines split one
campaign without talking.

One item per variant rather than per property: one machine checks every property at each step
for about the cost of checking one (Hypothesis is most of the time: ``bench/bench_machine.py``),
so splitting properties into items would multiply the work.

Workers. Each is a process (spawned, so it also works under pytest) with a pipe to the parent;
the parent hands an item to an idle worker and waits on every pipe and process at once. A
worker saves each finding to the corpus itself, the moment it has one, before telling the
parent: a worker killed mid-run loses nothing already saved (the corpus write is atomic, and
Hypothesis saved the failing example to its database before that). The parent then marks the
item lost, starts a new worker and goes on.

Resume. With a database (``--database``, or the nightly profile's own), the parent records
each finished item under a key derived from the campaign's parameters, through the database's
public ``save``/``fetch``/``delete``. A campaign started again with the same parameters takes the
items recorded there as done (their results included in the table) and runs the rest; a
campaign whose finite work list is complete deletes the record, so the next run starts afresh.
A time-budgeted campaign never completes its (unbounded) list, so the next run goes on from the
next round: a nightly campaign continues night after night.

Windows. A held record carries the counts of the reachability windows its runs passed through
(``Record.windows``); they travel with the record, from worker to parent and into the database,
and ``tlbfuzz.fuzz.results.merge`` adds them up over rounds, workers, resumed sessions and shards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from tlbfuzz.fuzz.profiles import ENGINES
from tlbfuzz.fuzz.results import Record, judge_changes, merge
from tlbfuzz.protocol import VARIANTS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from hypothesis.database import ExampleDatabase

    from tlbfuzz.fuzz.runner import Outcome
    from tlbfuzz.protocol import Config, Variant

STATE_PREFIX: Final = b"tlbfuzz-campaign:"


class CampaignError(Exception):
    """Bad campaign parameters (a one-line usage error)."""


@attrs.frozen
class Plan:
    """Everything that defines a campaign's work, and how its output looks."""

    refs: tuple[str, ...]
    props: tuple[str, ...]
    profile: str = "dev"
    seed: int | None = None
    max_examples: int | None = None
    cpus: int | None = None
    seconds: float | None = None  # per item: keep fuzzing a variant this long
    corpus: str = "corpus"
    database: str | None = None
    shard: tuple[int, int] = (1, 1)
    fmt: str = "mail"
    budget: tuple[str, ...] = ()
    """``--budget`` specs (``tlbfuzz fuzz --budget``), made a ``Config`` per variant where the
    item runs: a user variant is resolved again in its worker, from its ``file.py:NAME``."""
    shape: tuple[tuple[str, Any], ...] = ()
    """``--memory-model``, ``--mms``, ``--anon-pages``, ``--file-pages``: Config fields every
    run of the campaign has, drawn budgets or not."""
    narrow_states: int | None = None
    """``--narrow-states``: the narrowed search's budget for a patch (None: the profile's)."""

    def key(self) -> bytes:
        """The campaign's identity in the database: what decides its work items and results,
        not how many workers run them, for how long, or how findings are printed."""
        ident = [
            self.refs,
            self.props,
            self.profile,
            self.seed,
            self.max_examples,
            self.cpus,
            self.seconds,
            self.shard,
            str(Path(self.corpus).resolve()),
            self.budget,
            *([dict(self.shape)] if self.shape else []),  # older campaigns keep their key
            *([{"narrow_states": self.narrow_states}] if self.narrow_states is not None else []),
            # the swarm's results are not the machine's: a ci campaign the machine ran
            # before ci became the swarm is not resumed (machine campaigns keep their key)
            *(["swarm"] if ENGINES[self.profile] == "swarm" else []),
        ]
        return STATE_PREFIX + hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:24].encode()


@attrs.frozen
class Item:
    index: int
    ref: str
    props: tuple[str, ...]
    seed: int | None
    round: int


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` with 1 <= I <= N."""
    i, sep, n = text.partition("/")
    if not sep or not i.isdigit() or not n.isdigit() or not 1 <= int(i) <= int(n):
        raise CampaignError(f"bad --shard {text!r} (want I/N with 1 <= I <= N, e.g. 2/4)")
    return int(i), int(n)


def open_database(spec: str | None, profile: str) -> ExampleDatabase | None:
    """``redis://HOST:PORT/DB`` (needs ``tlbfuzz[redis]``), a directory, or None: the profile's
    own database (the nightly profile has one; dev and ci have none)."""
    if spec is None:
        from tlbfuzz.fuzz.profiles import PROFILES

        db: ExampleDatabase | None = PROFILES[profile].database
        return db
    if spec.startswith(("redis://", "rediss://", "unix://")):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError:
            raise CampaignError(
                "--database redis://... needs the redis client: pip install 'tlbfuzz[redis]'"
            ) from None
        try:
            client = redis.Redis.from_url(spec)
            client.ping()
        except (ValueError, redis.RedisError) as e:
            raise CampaignError(f"--database {spec}: {e}") from None
        return RedisExampleDatabase(client)
    from hypothesis.database import DirectoryBasedExampleDatabase

    path = Path(spec)
    if path.exists() and not path.is_dir():
        raise CampaignError(f"--database {spec}: not a directory")
    return DirectoryBasedExampleDatabase(path)


# --- one work item, in whichever process runs it ----------------------------------------------


def _records(plan: Plan, item: Item, o: Outcome, path: Path | None, created: bool) -> list[Record]:
    from tlbfuzz.fuzz.runner import Finding

    if not isinstance(o, Finding) and (o.examples == 0 or o.steps == 0):
        return [  # nothing ran: not a verdict
            Record(
                item.ref,
                o.prop,
                "incomplete",
                seed=item.seed,
                seconds=o.seconds,
                message="not checked (no example ran)",
                ok=False,
                extra={"cell": "unchecked"},
            )
        ]
    if isinstance(o, Finding):
        return [
            Record(
                item.ref,
                o.prop,
                "violates",
                length=len(o.schedule),
                schedule_file=str(path),
                seed=item.seed,
                examples=o.examples,
                steps=o.steps,
                seconds=o.seconds,
                message=o.violation.message,
                ok=False,
                new=created,
                extra={
                    "found_length": o.found_length,
                    "cpus": o.config.cpus,
                    **({"narrowed": o.narrowed} if o.narrowed else {}),
                },
            )
        ]
    held = Record(
        item.ref,
        o.prop,
        "holds",
        seed=item.seed,
        examples=o.examples,
        steps=o.steps,
        seconds=o.seconds,
        windows=dict(o.windows) or None,  # a Held without counts: not measured
        changes=o.changes,
        extra=(
            {"never_drawn": list(o.never_drawn), "budget_fixed": o.budget_fixed}
            if o.never_drawn
            else {}
        ),
    )
    return [judge_changes(held)]


def run_item(
    plan: Plan,
    item: Item,
    emit: Callable[[str, Any], None],
    on_progress: Callable[[int, int], None] | None = None,
    variant: Variant | None = None,
) -> list[Record]:
    """Fuzz one item. Each finding is made canonical (one race, one file: ``tlbfuzz.fuzz.canon``),
    printed (``emit("show", text)``), then saved, then reported (``emit("finding", (record,
    line, error))``: ``error`` is the one line saying why it could not be saved, or None).
    ``variant``: the item's variant, already resolved (in the parent); else resolved here from
    its ref, a built-in name or a ``file.py:NAME`` the user passed with ``-v``. A user
    variant's code failing is ``emit("error", message)`` and ``error`` records."""
    from hypothesis import settings as Settings

    from tlbfuzz.fuzz.canon import canonical
    from tlbfuzz.fuzz.changes import whose, whose_lines
    from tlbfuzz.fuzz.corpus import CorpusError, Entry, save, target
    from tlbfuzz.fuzz.mail import render_as
    from tlbfuzz.fuzz.profiles import PROFILES
    from tlbfuzz.fuzz.runner import Finding, fuzz_variant
    from tlbfuzz.fuzz.user import UserVariantError, cli_variant, replay_command
    from tlbfuzz.protocol import World
    from tlbfuzz.protocol.search import first_violation

    try:
        v = cli_variant(item.ref) if variant is None else variant
        config = _config(v, plan) if plan.budget else None
        shape = dict(plan.shape)
    except UserVariantError as e:
        emit("error", str(e))
        return _errors(item, str(e))
    settings = PROFILES[plan.profile]
    if plan.database is not None:
        settings = Settings(settings, database=open_database(plan.database, plan.profile))
    out: list[Record] = []
    corpus = Path(plan.corpus)

    def on_outcome(o: Outcome) -> None:
        if not isinstance(o, Finding):
            out.extend(_records(plan, item, o, None, False))
            return
        config, schedule = canonical(o.variant, o.config, o.schedule, o.prop)
        hit = first_violation(World.initial(o.variant, config), schedule, [o.prop])
        violation = o.violation if hit is None else hit[1]  # the canonical schedule's words
        o = attrs.evolve(o, config=config, schedule=schedule, violation=violation)
        entry = Entry(
            o.variant,
            item.ref,
            config,
            o.prop,
            "violates",
            tuple(schedule),
            {
                "by": f"tlbfuzz fuzz --profile {plan.profile}",
                "seed": item.seed,
                "when": _stamp(),
                "examples": o.examples,
                "hypothesis_length": o.found_length,
            },
            violation.message,
        )
        path = target(entry, corpus)
        bases = whose(o.variant, config, schedule, o.prop)
        emit(
            "show",
            render_as(
                plan.fmt,
                o.variant,
                config,
                schedule,
                o.prop,
                violation,
                replay_cmd=replay_command(item.ref, path),
                paragraphs=whose_lines(o.prop, bases, schedule) + o.paragraphs(),
            ),
        )
        error = None
        created = False
        try:
            path, created = save(entry, corpus)
        except CorpusError as e:
            error = f"could not save the finding above: {e}"
        if o.narrowed:
            line = (
                f"(found by the narrowed search in the model {o.narrowed}, after the fuzzer's"
                f" {o.examples} examples held, {o.seconds:.1f}s in all; "
                f"{'NOT saved' if error else 'saved' if created else 'already in the corpus'})\n"
            )
        elif error is None:
            line = (
                f"(found after {o.examples} examples in {o.seconds:.1f}s, "
                f"{o.found_length} steps before minimising; "
                f"{'saved' if created else 'already in the corpus'})\n"
            )
        else:
            line = f"(found after {o.examples} examples in {o.seconds:.1f}s; NOT saved)\n"
        rec = _records(plan, item, o, path if error is None else None, created)[0]
        if error is not None:
            rec.extra["not_saved"] = error
        if bases:
            rec.extra["on_bases"] = {b.base: b.to_dict() for b in bases}
        if o.narrowed_base is not None:
            rec.extra["narrowed_base"] = o.narrowed_base.to_dict()
        out.append(rec)
        emit("finding", (rec.to_dict(), line, error))

    try:
        fuzz_variant(
            v,
            list(item.props),
            profile=plan.profile,
            seed=item.seed,
            max_examples=plan.max_examples,
            cpus=plan.cpus,
            on_outcome=on_outcome,
            seconds=plan.seconds,
            settings=settings,
            on_progress=on_progress,
            config=config,
            shape=shape,
            narrow_states=plan.narrow_states,
        )
    except UserVariantError as e:  # the user's code failed: say where; its cells are errors
        emit("error", str(e))
        done = {r.property for r in out}
        return out + [r for r in _errors(item, str(e)) if r.property not in done]
    return out


def _errors(item: Item, message: str) -> list[Record]:
    return [
        Record(item.ref, p, "error", seed=item.seed, message=message, ok=False) for p in item.props
    ]


def _config(v: Variant, plan: Plan) -> Config:
    from tlbfuzz.fuzz.cli import _config as config_of

    return config_of(v, plan.cpus or 2, plan.budget, dict(plan.shape))


def _stamp() -> str:
    from tlbfuzz.fuzz.results import stamp

    return stamp()


def _worker(conn: Connection, plan: Plan) -> None:
    """A worker process: items in, ("finding", ...) and ("done", ...) messages out."""
    # The modules the command's own process has loaded: Hypothesis draws constants from the
    # loaded modules' source, so a derandomized (ci) item gives the same examples here as there.
    import tlbfuzz.fuzz.cli  # noqa: F401

    try:
        while True:
            item = conn.recv()
            if item is None:
                return
            last = [0.0]

            def progress(examples: int, steps: int, last: list[float] = last) -> None:
                if time.perf_counter() - last[0] >= 1.0:  # for a cut at the time budget
                    last[0] = time.perf_counter()
                    conn.send(("progress", (examples, steps)))

            recs = run_item(plan, item, lambda kind, payload: conn.send((kind, payload)), progress)
            conn.send(("done", (item.index, [r.to_dict() for r in recs])))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        return


# --- the campaign -----------------------------------------------------------------------------


@attrs.define
class Campaign:
    """Runs a plan; prints findings as they come and returns every record, merged."""

    plan: Plan
    workers: int = 1
    time_budget: float | None = None
    out: Callable[[str], None] = print
    err: Callable[[str], None] = lambda s: print(s, file=sys.stderr)
    progress: bool = False
    records: list[Record] = attrs.field(factory=list)
    broken: dict[str, set[str]] = attrs.field(factory=dict)
    done: set[int] = attrs.field(factory=set)
    resumed: int = 0
    lost: list[Item] = attrs.field(factory=list)
    interrupted: bool = False
    complete: bool = False
    variants: dict[str, Variant] = attrs.field(factory=dict)
    """Variants resolved already, by ref: items run in this process use them."""
    unsaved: int = 0
    errors: int = 0
    _db: ExampleDatabase | None = None
    _deadline: float | None = None

    # work list ---------------------------------------------------------------------------
    def items(self) -> Iterator[Item]:
        """This shard's items in order, skipping done ones and variants with nothing left;
        endless with a time budget (the caller stops at the deadline)."""
        refs, (i, n) = self.plan.refs, self.plan.shard
        rounds = range(sys.maxsize) if self.time_budget is not None else range(1)
        for r in rounds:
            for v, ref in enumerate(refs):
                index = r * len(refs) + v
                if index % n != i - 1 or index in self.done:
                    continue
                props = tuple(p for p in self.plan.props if p not in self.broken.get(ref, ()))
                if not props:
                    continue
                seed = self.plan.seed if r == 0 else (self.plan.seed or 0) + r
                yield Item(index, ref, props, seed, r)
            if all(set(self.plan.props) <= self.broken.get(ref, set()) for ref in refs):
                return

    def _time_left(self) -> bool:
        return self._deadline is None or time.perf_counter() < self._deadline

    # results -----------------------------------------------------------------------------
    def _message(self, kind: str, payload: Any) -> None:
        """What ``run_item`` emits, in this process or from a worker."""
        if kind == "show":  # a finding, printed before it is saved
            self.out(payload)
        elif kind == "finding":
            self._finding(*payload)
        elif kind == "error":  # a user variant's code failed: where, in one line
            self.errors += 1
            self.err(f"tlbfuzz: {payload}")

    def _finding(self, rec: dict[str, Any], line: str, error: str | None) -> None:
        """A finding, once its save was tried: kept even if its item is lost; a failed save
        is said in one line (the finding is on screen) and counted."""
        self.out(line)
        if error is not None:
            self.unsaved += 1
            self.err(f"tlbfuzz: {error}")
        r = Record.from_dict(rec)
        self.records.append(r)
        assert r.variant is not None and r.property is not None
        self.broken.setdefault(r.variant, set()).add(r.property)

    def _done(self, item: Item, recs: list[Record]) -> None:
        self.records.extend(r for r in recs if r.verdict != "violates")  # those came already
        self.done.add(item.index)
        for r in recs:  # an error is not tried again in later rounds either
            if r.verdict in ("violates", "error") and r.variant and r.property:
                self.broken.setdefault(r.variant, set()).add(r.property)
        no_verdict = any(r.verdict in ("error", "incomplete") for r in recs)
        if self._db is not None and not no_verdict:  # a resumed run tries those again
            value = {"index": item.index, "records": [r.to_dict() for r in recs]}
            self._db.save(self.plan.key(), json.dumps(value, sort_keys=True).encode())
        if self.progress:
            held = sum(r.verdict == "holds" for r in recs)
            self.err(f"  {item.ref} (round {item.round}): done, {held} held")

    def _cut(self, item: Item, tried: tuple[int, int], seconds: float) -> None:
        """An item stopped by the time budget: what it tried so far held (or it would have
        said); recorded for the table, not as done, so a resumed campaign runs it again. Its
        windows are not known (a worker reports them when its item is done): none recorded."""
        examples, steps = tried
        for p in item.props:
            if p not in self.broken.get(item.ref, set()):
                r = Record(item.ref, p, "holds", seed=item.seed, examples=examples, steps=steps)
                r.seconds = seconds
                r.extra = {"cut_by_time_budget": True}
                if item.ref not in VARIANTS:  # a user's variant: its changes go uncounted
                    r.extra["changes_unmeasured"] = True
                self.records.append(judge_changes(r))
        if self.progress:
            self.err(f"  {item.ref} (round {item.round}): stopped by the time budget")

    def _resume(self) -> None:
        assert self._db is not None
        for raw in self._db.fetch(self.plan.key()):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                value = json.loads(raw)
                recs = [Record.from_dict(d) for d in value["records"]]
                index = int(value["index"])
                if index in self.done:
                    continue
                self.done.add(index)
                self.records.extend(recs)
                for r in recs:
                    if r.verdict == "violates" and r.variant and r.property:
                        self.broken.setdefault(r.variant, set()).add(r.property)
                self.resumed += 1
        if self.resumed:
            self.err(f"resuming: {self.resumed} work item(s) already done in the database")

    def _forget(self) -> None:
        """The finite work list is complete: the next run with these parameters starts anew."""
        assert self._db is not None
        key = self.plan.key()
        for raw in list(self._db.fetch(key)):
            self._db.delete(key, raw)

    # running -----------------------------------------------------------------------------
    def run(self) -> list[Record]:
        """Run the work list; returns the merged records (one per variant and property)."""
        self._db = open_database(self.plan.database, self.plan.profile)
        if self._db is not None:
            self._resume()
        if self.time_budget is not None:
            self._deadline = time.perf_counter() + self.time_budget
        try:
            # a time budget needs processes: the parent stops them at the deadline
            if self.time_budget is None and (self.workers <= 1 or self._single_item()):
                self._run_here()
            else:
                self._run_workers()
        except KeyboardInterrupt:
            self.interrupted = True
        if self.time_budget is None and not self.interrupted and not self.lost:
            self.complete = True
            if self._db is not None:
                self._forget()
        return self.result()

    def result(self) -> list[Record]:
        """One record per (variant, property) of this shard, in the plan's order; those with
        no result (a lost item, an interruption, a spent budget) are ``incomplete``."""
        merged = {(r.variant, r.property): r for r in merge(self.records)}
        out = []
        for ref in self.plan.refs:
            if not self._mine(ref):
                continue
            for p in self.plan.props:
                r = merged.get((ref, p))
                if r is None and self.interrupted:
                    r = Record(ref, p, "incomplete", ok=False, message="interrupted")
                    r.extra = {"cell": "interrupted"}
                out.append(r or Record(ref, p, "incomplete", ok=False, message="no result"))
        return out

    def _mine(self, ref: str) -> bool:
        i, n = self.plan.shard
        return any(
            k % n == i - 1 for k in range(len(self.plan.refs)) if self.plan.refs[k] == ref
        ) or (self.time_budget is not None)

    def _single_item(self) -> bool:
        if self.time_budget is not None:
            return False
        it = self.items()
        first = next(it, None)
        return first is None or next(it, None) is None

    def _run_here(self) -> None:
        for item in self.items():
            if not self._time_left():
                return
            if self.progress:
                self.err(f"fuzzing {item.ref} ({self.plan.profile})...")
            recs = run_item(
                self.plan,
                item,
                self._message,
                on_progress=self._progress_line(item) if self.progress else None,
                variant=self.variants.get(item.ref),
            )
            if self.progress:
                print("\r\033[K", end="", file=sys.stderr, flush=True)
            self._done(item, recs)

    def _progress_line(self, item: Item) -> Callable[[int, int], None]:
        t0 = time.perf_counter()
        last = [0.0]

        def show(examples: int, steps: int) -> None:
            now = time.perf_counter()
            if now - last[0] < 0.5:
                return
            last[0] = now
            rate = steps / max(now - t0, 1e-9)
            print(
                f"\r  {item.ref}: {examples} examples, {steps} steps, {rate:,.0f} steps/s",
                end="",
                file=sys.stderr,
                flush=True,
            )

        return show

    def _run_workers(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        todo = self.items()
        pool: dict[int, tuple[BaseProcess, Connection]] = {}
        busy: dict[int, Item] = {}
        tried: dict[int, tuple[int, int]] = {}  # per busy worker: (examples, steps) so far
        t_item: dict[int, float] = {}
        next_id = 0
        exhausted = False

        def start() -> None:
            nonlocal next_id
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(child, self.plan), daemon=True)
            p.start()
            child.close()
            pool[next_id] = (p, parent)
            next_id += 1

        def feed(wid: int) -> None:
            nonlocal exhausted
            item = None if exhausted or not self._time_left() else next(todo, None)
            if item is None:
                exhausted = True
                pool[wid][1].send(None)
                return
            busy[wid] = item
            tried[wid] = (0, 0)
            t_item[wid] = time.perf_counter()
            pool[wid][1].send(item)

        for _ in range(self.workers):
            start()
        try:
            for wid in list(pool):
                feed(wid)
            while busy:
                waitables: dict[object, int] = {}
                for w in busy:
                    waitables[pool[w][1]] = w
                    waitables[pool[w][0].sentinel] = w
                left = None if self._deadline is None else self._deadline - time.perf_counter()
                if left is not None and left <= 0:
                    for wid in list(busy):
                        self._cut(busy.pop(wid), tried[wid], time.perf_counter() - t_item[wid])
                        pool[wid][0].terminate()
                    break
                ready = multiprocessing.connection.wait(list(waitables), left)  # type: ignore[arg-type]
                for obj in ready:
                    wid = waitables[obj]
                    if wid not in busy:
                        continue
                    proc, conn = pool[wid]
                    try:  # what it sent before it ended, then its end
                        while wid in busy and conn.poll():
                            kind, payload = conn.recv()
                            if kind in ("show", "finding", "error"):
                                self._message(kind, payload)
                            elif kind == "progress":
                                tried[wid] = payload
                            else:  # done
                                _, recs = payload
                                self._done(busy.pop(wid), [Record.from_dict(d) for d in recs])
                                feed(wid)
                    except (EOFError, OSError):
                        pass
                    if wid in busy and not proc.is_alive():
                        item = busy.pop(wid)
                        proc.join(1)
                        self.lost.append(item)
                        self.err(
                            f"tlbfuzz: worker {proc.pid} died (exit {proc.exitcode}) while "
                            f"fuzzing {item.ref}; its saved findings are kept"
                        )
                        conn.close()
                        del pool[wid]
                        if not exhausted and self._time_left():
                            start()
                            feed(next_id - 1)
        finally:
            for _proc, conn in pool.values():
                with contextlib.suppress(OSError, BrokenPipeError):
                    conn.send(None)
            for proc, _ in pool.values():
                proc.join(5)
                if proc.is_alive():
                    proc.terminate()


def default_workers() -> int:
    """The machine's cores, as this process may use them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1
