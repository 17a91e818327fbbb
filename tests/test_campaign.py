"""Campaigns: shards split the work list, N workers give the table one process gives, a time
budget runs further rounds, a stopped campaign resumes from its database, and killing a worker
loses nothing it saved."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest
from hypothesis.database import DirectoryBasedExampleDatabase

from tests import procs
from tlbfuzz.fuzz.campaign import Campaign, CampaignError, Plan, parse_shard
from tlbfuzz.fuzz.cli import main
from tlbfuzz.fuzz.corpus import load, replay
from tlbfuzz.protocol import VARIANTS

REFS = tuple(VARIANTS)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 12])
def test_shards_split_the_work_list_exactly(n: int) -> None:
    def indices(i: int, budget: float | None) -> list[int]:
        c = Campaign(Plan(REFS, ("no_deadlock",), shard=(i, n)), time_budget=budget)
        return [item.index for item in itertools.islice(c.items(), 40)]

    for budget in (None, 60.0):
        parts = [indices(i, budget) for i in range(1, n + 1)]
        every = sorted(k for part in parts for k in part)
        assert len(every) == len(set(every)), "two shards share an item"
        if budget is None:
            assert every == list(range(len(REFS)))
        else:
            assert every[: 40 * n // 2] == list(range(40 * n // 2))


def test_later_rounds_get_new_seeds_and_skip_broken_properties() -> None:
    c = Campaign(Plan(REFS[:2], ("no_deadlock", "no_use_after_free"), seed=7), time_budget=1.0)
    c.broken[REFS[0]] = {"no_use_after_free"}
    items = list(itertools.islice(c.items(), 4))
    assert [i.seed for i in items] == [7, 7, 8, 8]
    assert items[0].props == ("no_deadlock",)
    assert items[1].props == ("no_deadlock", "no_use_after_free")


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_bad_shard_is_a_usage_error(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CampaignError):
        parse_shard(text)
    assert main(["fuzz", "--shard", text]) == 2
    err = capsys.readouterr().err
    assert "bad --shard" in err
    assert err.count("\n") == 1


def test_bad_database_and_workers_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    assert main(["fuzz", "--database", str(tmp_path / "file")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert main(["fuzz", "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


CI_ARGS = ("--profile", "ci", "-p", "no_walk_of_freed_page_table", "-p", "no_deadlock")


@pytest.mark.slow
def test_two_workers_give_the_table_one_process_gives(tmp_path: Path) -> None:
    """The ci profile is derandomized, so the same items give the same verdicts and lengths
    whichever process runs them."""
    common = ["fuzz", "-v", "lazy-skip-freed-tables", "-v", "linux-current", *CI_ARGS[:4]]
    common += ["--max-examples", "300"]
    tables = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}.json"
        r = procs.run(
            *common, "--workers", workers, "--corpus", str(tmp_path / workers), "--json", str(out)
        )
        assert r.returncode == 1, r.stderr
        tables.append(
            {k: (v["verdict"], v["length"], v["examples"]) for k, v in procs.results(out).items()}
        )
        assert json.loads(out.read_text())["workers"] == int(workers)
    assert tables[0] == tables[1]
    assert tables[0][("lazy-skip-freed-tables", "no_walk_of_freed_page_table")][0] == "violates"


@pytest.mark.slow
def test_a_time_budget_runs_more_rounds_than_one(tmp_path: Path) -> None:
    argv = ["fuzz", "-v", "linux-current", "-p", "no_deadlock", "--max-examples", "20"]
    argv += ["--seed", "3", "--workers", "1", "--corpus", str(tmp_path)]
    t0 = time.perf_counter()
    one = procs.run(*argv, "--json", str(tmp_path / "one.json"))
    # three times what one round took here, so that a loaded machine (the tests run on every
    # core) still fits a second round: a fixed 4 s fitted only part of one under load
    budget = f"{3 * (time.perf_counter() - t0):.1f}"
    more = procs.run(*argv, "--time-budget", budget, "--json", str(tmp_path / "more.json"))
    assert one.returncode == more.returncode == 0, more.stderr
    key = ("linux-current", "no_deadlock")
    ex_one = procs.results(tmp_path / "one.json")[key]["examples"]
    ex_more = procs.results(tmp_path / "more.json")[key]["examples"]
    assert ex_more > ex_one


@pytest.mark.slow
def test_a_stopped_campaign_resumes_from_its_database(tmp_path: Path) -> None:
    refs = ("linux-current", "linux-concurrent", "linux-5.2")
    db, corpus = tmp_path / "db", tmp_path / "corpus"
    argv = [arg for ref in refs for arg in ("-v", ref)]
    argv += ["-p", "no_deadlock", "--profile", "ci", "--max-examples", "400", "--workers", "1"]
    argv += ["--database", str(db), "--corpus", str(corpus)]
    plan = Plan(refs, ("no_deadlock",), profile="ci", max_examples=400, corpus=str(corpus))
    state = DirectoryBasedExampleDatabase(db)

    first = procs.start("fuzz", *argv)
    try:
        procs.wait_for(lambda: len(list(state.fetch(plan.key()))) >= 1, 120, "one item done")
    finally:
        first.kill()
        first.communicate()
    done_before = len(list(state.fetch(plan.key())))
    assert 1 <= done_before < len(refs), "stopped too late to test resuming"

    out = tmp_path / "r.json"
    again = procs.run("fuzz", *argv, "--json", str(out))
    assert again.returncode == 0, again.stderr
    assert f"resuming: {done_before} work item(s)" in again.stderr
    doc = json.loads(out.read_text())
    assert (doc["resumed"], doc["complete"]) == (done_before, True)
    assert {r["variant"] for r in doc["results"] if r["verdict"] == "holds"} == set(refs)
    assert not list(state.fetch(plan.key())), "a complete campaign forgets its progress"


@pytest.mark.slow
def test_killing_the_workers_keeps_every_saved_finding(tmp_path: Path) -> None:
    db, corpus, out = tmp_path / "db", tmp_path / "corpus", tmp_path / "k.json"
    argv = ["fuzz", "-v", "lazy-skip-freed-tables", "-v", "linux-current", *CI_ARGS]
    argv += ["--max-examples", "5000", "--workers", "2", "--database", str(db)]
    p = procs.start(*argv, "--corpus", str(corpus), "--json", str(out))
    try:
        procs.wait_for(lambda: bool(procs.saved(corpus)), 120, "a saved finding")
        workers = procs.workers_of(p.pid)
        assert workers
        procs.kill(workers)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert "died" in err
    assert p.returncode in (1, 3)
    assert json.loads(out.read_text())["complete"] is False
    (path,) = procs.saved(corpus)
    assert replay(load(path)).ok

    # and Hypothesis's database kept the failing example: found again at once elsewhere (its
    # key is the machine's: the same variant and property set as the killed run)
    again = tmp_path / "again.json"
    argv = ["fuzz", "-v", "lazy-skip-freed-tables", *CI_ARGS, "--max-examples", "300"]
    argv += ["--database", str(db), "--corpus", str(tmp_path / "c2"), "--json", str(again)]
    r = procs.run(*argv)
    assert r.returncode == 1, r.stderr
    rec = procs.results(again)[("lazy-skip-freed-tables", "no_walk_of_freed_page_table")]
    assert rec["examples"] <= 5
    assert Path(rec["schedule_file"]).name == path.name


def test_budget_reaches_fuzz_variant_through_the_plan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``--budget`` (the lead's ``_config``) travels in the Plan, as specs, and becomes the
    ``config`` of every item's ``fuzz_variant``; it is part of the campaign's identity."""
    import tlbfuzz.fuzz.runner
    from tlbfuzz.fuzz.cli import _config
    from tlbfuzz.protocol import VARIANTS

    seen: list[object] = []

    def fake(variant: object, props: list[str], **kwargs: object) -> list[object]:
        seen.append(kwargs["config"])
        return []

    monkeypatch.setattr(tlbfuzz.fuzz.runner, "fuzz_variant", fake)
    budget = ["--budget", "madvise=1", "--budget", "cpu1:switch=2"]
    argv = ["fuzz", "-v", "linux-current", "-p", "no_deadlock", *budget, "--workers", "1"]
    assert main([*argv, "--corpus", str(tmp_path)]) == 0
    want = _config(VARIANTS["linux-current"], 2, ["madvise=1", "cpu1:switch=2"])
    assert seen == [want]
    assert want.cpu_budget and not want.reuse
    plain = Plan(("linux-current",), ("no_deadlock",))
    assert Plan(("linux-current",), ("no_deadlock",), budget=("madvise=1",)).key() != plain.key()


def test_a_campaigns_key_names_the_swarm_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ci campaign saved by the rule machine (before ci ran the swarm) is not resumed as
    the swarm's; a dev campaign keeps the key it always had."""
    import tlbfuzz.fuzz.profiles

    ci = Plan(("linux-current",), ("no_deadlock",), profile="ci")
    dev = Plan(("linux-current",), ("no_deadlock",), profile="dev")
    swarm_key, dev_key = ci.key(), dev.key()
    monkeypatch.setitem(tlbfuzz.fuzz.profiles.ENGINES, "ci", "machine")
    assert ci.key() != swarm_key
    assert dev.key() == dev_key
