"""``grpolab sweep --until-resolved --max-seeds N``: bad input refused in one line before anything runs, and
(slow) the rounds on a tiny real sweep: which cells get more seeds, the caption, re-running continues."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from tests.cli_helpers import grpolab, tree
from tests.conftest import fast_overrides


@pytest.mark.parametrize("argv, says", [
    (["sweep", "--max-seeds", "4", "variant=grpo,ar"], "--max-seeds 4: only with --until-resolved"),
    (["sweep", "--seed-step", "2", "variant=grpo,ar"], "--seed-step 2: only with --until-resolved"),
    (["sweep", "--until-resolved", "variant=grpo,ar"], "--until-resolved needs --max-seeds N"),
    (["sweep", "--until-resolved", "--max-seeds", "0", "variant=grpo,ar"], "--max-seeds 0: must be an integer >= 1"),
    (["sweep", "--until-resolved", "--max-seeds", "4", "--seed-step", "x", "variant=grpo,ar"],
     "--seed-step x: must be an integer >= 1"),
    (["sweep", "--until-resolved", "--max-seeds", "4", "--metric", "accuracy", "variant=grpo,ar"],
     "--metric accuracy: not a run metric; valid: final_eval_accuracy"),
    (["sweep", "--until-resolved", "--max-seeds", "4", "--append", "variant=grpo,ar"], "--append: not with"),
    (["sweep", "--until-resolved", "--max-seeds", "4", "--detach", "launcher=slurm", "variant=grpo,ar"],
     "--detach: not with"),
    (["sweep", "--until-resolved", "--max-seeds", "1", "variant=grpo,ar", "seed=0,1"],
     "--max-seeds 1: fewer than the 2 seeds declared (0,1); give at least 2"),
    (["sweep", "--until-resolved", "--max-seeds", "4", "seed=0,1"], "the grid has one cell, so there is no "
                                                                    "comparison with a baseline"),
    (["tune", "--until-resolved", "--max-seeds", "4"], "grpolab tune: --until-resolved is an option of grpolab sweep"),
])
def test_bad_input_is_refused_in_one_line_before_anything_runs(tmp_path, monkeypatch, capsys, argv, says):
    monkeypatch.chdir(tmp_path)
    rc, out, err = grpolab(capsys, *argv, f"paths.output_root={tmp_path}/out")
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and says in err, err
    assert not (tmp_path / "out").exists()


def test_dry_run_states_the_looks_and_writes_nothing(tmp_path, capsys):
    rc, out, err = grpolab(capsys, "sweep", "--dry-run", "--until-resolved", "--max-seeds", "7", "variant=grpo,ar",
                           "seed=0,1", f"paths.output_root={tmp_path}/out")
    assert rc == 0, err
    assert "at most 4 rounds (seeds per cell 2, 4, 6, 7); each look tests at α/4" in out
    assert "round 1 would run 4 of its 4 runs (2 cells)" in out
    assert not (tmp_path / "out").exists()


def test_a_sweep_dir_of_another_plan_is_refused_and_gets_no_design(tmp_path, capsys):
    from analysis.synthetic import write_synthetic_sweep

    other = write_synthetic_sweep(tmp_path / "out" / "sweeps" / "other", axes={"variant": ["grpo", "ar"]},
                                  seeds=range(2), steps=2, eval_every=1, sweep_id="other")
    before = tree(other)
    rc, out, err = grpolab(capsys, "sweep", "--until-resolved", "--max-seeds", "4", "variant=grpo,ar", "seed=0,1",
                           f"paths.output_root={tmp_path}/out", "sweep.id=other")
    assert rc == 2 and "belongs to another plan" in err, err
    assert tree(other) == {**before, **{k: v for k, v in tree(other).items() if k.startswith(".")}}  # lock file only


# ---------------------------------------------------------------- a real sweep (slow)
# Response length is the metric: max_new_tokens=1 makes it 1 in every run (a Δ of ≈ −6 tokens that 3
# seeds resolve), while kl.coef=0.001 changes nothing in 3 steps from a warm start (Δ = 0 in every seed:
# no test, never resolved). So the rounds are known: round 2 adds seeds 3,4 to the kl cell and the baseline.
AXES = ["rollout.max_new_tokens=8,1", "algorithm.kl.coef=0,0.001", "seed=0,1,2"]
FLAGS = ["--until-resolved", "--max-seeds", "5", "--metric", "final_response_length"]


def _records(sweep):
    out = {}
    for run in sorted((sweep / "runs").iterdir()):
        meta = json.loads((run / "meta.json").read_text())
        summary = json.loads((run / "summary.json").read_text())
        cell = (meta["swept"]["rollout.max_new_tokens"], meta["swept"]["algorithm.kl.coef"])
        out.setdefault(cell, {})[meta["seed"]] = summary
    return out


def _open_after_look_1(records):
    """Independently of analysis.*: scipy's paired t on seeds 0-2, statsmodels' Holm at α / L (L = 2)."""
    base = records[(8, 0.0)]
    cells = [c for c in records if c != (8, 0.0)]
    p = []
    for c in cells:
        d = np.array([records[c][s]["final_response_length"] - base[s]["final_response_length"] for s in range(3)])
        p.append(stats.ttest_rel(d, np.zeros(3)).pvalue if d.std() > 0 else 1.0)
    rejected = multipletests(p, alpha=0.05 / 2, method="holm")[0]
    return {c for c, r in zip(cells, rejected) if not r}


@pytest.mark.slow
def test_rounds_add_seeds_to_unresolved_cells_and_a_rerun_continues(tmp_path, capsys):
    argv = ["sweep", *FLAGS, *fast_overrides(tmp_path), *AXES, "sweep.id=ad"]
    rc, out, err = grpolab(capsys, *argv)
    assert rc == 0, err
    sweep = tmp_path / "out" / "sweeps" / "ad"
    records = _records(sweep)
    assert _open_after_look_1(records) == {(8, 0.001)}
    assert {c: sorted(s) for c, s in records.items()} == {
        (8, 0.0): [0, 1, 2, 3, 4], (8, 0.001): [0, 1, 2, 3, 4], (1, 0.0): [0, 1, 2], (1, 0.001): [0, 1, 2]}
    assert ("round 2: 1 of 3 comparisons unresolved; adding seeds 3,4 to cells "
            "rollout.max_new_tokens=8,algorithm.kl.coef=0.001 and the baseline") in err
    assert "round 2: 1 of 3 comparisons unresolved at --max-seeds 5" in err
    table = (sweep / "table.md").read_text()
    assert "under the adaptive-seeding rule" in table and "2 of at most 2 looks, at 3, 5 seeds" in table
    plan = json.loads((sweep / "sweep.json").read_text())
    assert len(plan["runs"]) == 16 and [h["kind"] for h in plan["history"]] == ["new", "append"]
    order = {r["name"]: i for i, r in enumerate(plan["runs"])}  # run_meta.plan_index: its place in sweep.json
    assert all(json.loads((sweep / "runs" / n / "meta.json").read_text())["plan_index"] == i for n, i in order.items())
    looks = json.loads((sweep / "adaptive.json").read_text())["looks_done"]
    assert [lk["seeds"] for lk in looks] == [[0, 1, 2], [0, 1, 2, 3, 4]]

    # the same command again: every round replayed from the records, nothing run twice
    before = tree(sweep / "runs")
    rc, out, err = grpolab(capsys, *argv)
    assert rc == 0, err
    assert "round 1: 12 runs (0 to run" in out and "round 2: 10 runs (0 to run" in out
    assert tree(sweep / "runs") == before
    assert len(json.loads((sweep / "sweep.json").read_text())["runs"]) == 16

    # as if stopped in round 2 before the baseline's seed 4 started: the re-run runs exactly that one
    base_s4 = next(r for r in (sweep / "runs").iterdir()
                   if r.name.endswith("_s4") and r.name.split("_s")[0] == next(
                       p["name"] for p in plan["runs"] if p["swept"]["rollout.max_new_tokens"] == 8
                       and p["swept"]["algorithm.kl.coef"] == 0.0).split("_s")[0])
    shutil.rmtree(base_s4)
    rc, out, err = grpolab(capsys, *argv)
    assert rc == 0, err
    assert "round 1: 12 runs (0 to run" in out and "round 2: 10 runs (1 to run" in out
    assert sum(1 for _ in (sweep / "runs").iterdir()) == 16

    # another design for this sweep dir is refused, in one line
    rc, out, err = grpolab(capsys, *[a if a != "5" else "6" for a in argv])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "another design (--metric final_response_length, " \
        "--max-seeds 5, --seed-step 3" in err
