"""What `grpolab tune` prints: a line per trial as it ends (number, state, values, params), then every
trial best first; and `grpolab table` on a tune dir rounds the tuned values as it rounds the means."""

from __future__ import annotations

import re

import optuna
import pytest

from sweeps.tune import run_study
from sweeps.tune_launch import trials_table
from tests.conftest import fast_overrides


def _by_number(ctx_number: int, x: float):
    if ctx_number == 1:
        raise optuna.TrialPruned("pruned at step 3")
    if ctx_number == 2:
        raise RuntimeError("boom")
    return x


def test_each_trial_is_one_line_as_it_ends_and_the_table_lists_all_best_first(tmp_path):
    lines: list[str] = []
    study = run_study([], {"x": "float:0:1"}, n_trials=5, seeds=[0], storage=f"sqlite:///{tmp_path}/s.db",
                      study_name="lines", launch_fn=lambda o, seed, ctx: _by_number(ctx.trial_number,
                                                                                     ctx.params["x"]),
                      log=lines.append, objectives=("score",), sampler_seed=3)
    trials = study.get_trials()
    assert len(lines) == len(trials) == 5
    state_word = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}
    for line, t in zip(lines, trials):  # one worker: trials end in the order they were asked
        assert line.startswith(f"trial {t.number} {state_word[t.state.name]}: "), line
        assert line.endswith(f"x={t.params['x']:.4g}"), line
    assert f"score={trials[0].value:.4g}" in lines[0]
    assert "pruned at step 3" in lines[1] and "RuntimeError: boom" in lines[2]

    table = trials_table(study, ["score"]).splitlines()
    assert table[0].split() == ["trial", "state", "score", "x"]
    order = [int(row.split()[0]) for row in table[1:]]
    complete = sorted((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: -t.value)
    assert order[:len(complete)] == [t.number for t in complete]  # maximize: highest first
    assert sorted(order[len(complete):]) == [1, 2]  # pruned and failed after them
    assert all(len(v) <= 7 for row in table[1:] for v in row.split()[2:] if v[0].isdigit())  # rounded


@pytest.mark.timeout(600)
def test_grpolab_tune_prints_its_trials_and_table_rounds_the_tuned_values(tmp_path, capsys):
    from sweeps.cli import main
    from sweeps.tune import open_storage

    overrides = [*fast_overrides(tmp_path, steps=2), '++tune.space={algorithm.kl.coef: "float:1e-4:1e-1:log"}',
                 "tune.n_trials=2", "sweep.seeds=[0]", "tune.study_name=tiny"]
    assert main(["tune", *overrides]) == 0
    out = capsys.readouterr().out.splitlines()
    root = tmp_path / "out" / "tune" / "tiny"
    study = optuna.load_study(study_name="tiny", storage=open_storage(f"sqlite:///{root}/optuna.db"))
    trials = study.get_trials()
    for t in trials:
        line = next(line for line in out if line.startswith(f"trial {t.number} "))
        assert line.startswith(f"trial {t.number} complete: final_eval_accuracy={t.value:.4g}  "), line
        assert line.endswith(f"algorithm.kl.coef={t.params['algorithm.kl.coef']:.4g}"), line
    head = next(i for i, line in enumerate(out) if line.split()[:3] == ["trial", "state", "final_eval_accuracy"])
    listed = [int(line.split()[0]) for line in out[head + 1:head + 1 + len(trials)]]
    assert listed == [t.number for t in sorted(trials, key=lambda t: -t.value)]  # stable: ties keep trial order
    assert any(line.startswith("  best trial ") for line in out)

    assert main(["table", str(root)]) == 0
    table = capsys.readouterr().out
    for t in trials:
        kl = t.params["algorithm.kl.coef"]
        assert f"| {float(f'{kl:.3g}')} |" in table, table  # --digits 3: three significant digits
        assert repr(kl) not in table or len(repr(kl)) <= 6
    assert not re.search(r"\d\.\d{8,}", table), table
