"""The eval protocol: optimistic (best-of-evals) metrics are marked, the area under the eval curve,
and the split of the seed-to-seed variance of the final eval accuracy into eval sampling and training
(checked against a simulation whose two parts are known)."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from analysis.history import aggregate, parse_metric
from analysis.protocol import noise_note, noise_split, run_eval_variance, selection_note, selects_on_eval
from analysis.synthetic import write_synthetic_sweep
from analysis.table import main as table_main


def test_auc_is_the_trapezoid_area_over_the_step_span():
    hist = pd.DataFrame({"step": [0, 2, 4, 5], "eval/accuracy": [0.2, 0.4, 0.4, 1.0]})
    # (0.2+0.4)/2·2 + (0.4+0.4)/2·2 + (0.4+1.0)/2·1 = 2.1 over 5 steps
    assert aggregate(hist, "auc", "eval/accuracy") == pytest.approx(0.42)
    assert aggregate(hist.iloc[:1], "auc", "eval/accuracy") == pytest.approx(0.2)  # one eval: its value
    # a resumed run's repeated step counts once (the last logged), rows without the key are skipped
    hist2 = pd.DataFrame({"step": [0, 1, 2, 2, 4], "eval/accuracy": [0.0, None, 0.5, 1.0, 1.0]})
    assert aggregate(hist2, "auc", "eval/accuracy") == pytest.approx((0.5 * 2 + 1.0 * 2) / 4)
    assert parse_metric("auc:eval/accuracy") == ("auc", "eval/accuracy")


@pytest.mark.parametrize("metric, selects", [
    ("best_eval_accuracy", True), ("best_pass@k", True), ("max:eval/accuracy", True), ("min:eval/accuracy", True),
    ("final_eval_accuracy", False), ("auc:eval/accuracy", False), ("max:train/reward", False),
    ("final_pass@k", False), ("mean:eval/accuracy", False),
])
def test_which_metrics_select_on_the_eval_set(metric, selects):
    assert selects_on_eval(metric) is selects


def test_selection_note_names_only_the_optimistic_metrics():
    assert selection_note(["final_eval_accuracy", "final_reward"]) == ""
    note = selection_note(["final_eval_accuracy", "best_eval_accuracy"])
    assert note.startswith("best eval accuracy: ") and "optimistic" in note  # named as the table shows it
    assert selection_note(["best_eval_accuracy"], {"best_eval_accuracy": "Best"}).startswith("Best: ")


def test_run_eval_variance_hand_computed():
    # c(n−c) = 0, 4, 0 with n = 4: 4 / (16 · 3) / 3² ; one draw per prompt: not estimable
    assert run_eval_variance([0, 2, 4], 4) == pytest.approx(4 / 48 / 9)
    assert math.isnan(run_eval_variance([0, 1], 1))


def test_run_eval_variance_is_unbiased_for_the_binomial_variance_of_the_mean():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 40)
    n = 4
    truth = float(np.mean(p * (1 - p) / n) / len(p))
    c = rng.binomial(n, p, size=(20000, len(p)))
    est = np.array([run_eval_variance(row, n) for row in c[:4000]])
    assert est.mean() == pytest.approx(truth, rel=0.03)
    assert np.var(c.mean(1) / n, ddof=1) == pytest.approx(truth, rel=0.05)  # what it estimates


class FakeSource:
    """Only what noise_split reads: per-run eval rows and configs (a duck-typed RunSource)."""

    def __init__(self, rows, configs):
        self.rows, self.configs = rows, configs

    def evals(self, run_dir):
        return self.rows[run_dir]

    def config(self, run_dir):
        return self.configs[run_dir]


def _simulated(cells=4, seeds=6, prompts=64, eval_n=4, sigma_seed=0.4, rng=None, eval_temperature=None):
    """Runs whose true accuracy varies by seed (logit noise σ_seed) and whose eval draws are binomial."""
    rng = rng or np.random.default_rng(1)
    b = rng.normal(0, 1.0, prompts)
    records, rows, configs, true_eval = [], {}, {}, []
    for k in range(cells):
        p_runs = []
        for s in range(seeds):
            p = 1 / (1 + np.exp(-(b + rng.normal(0, sigma_seed))))
            name = f"c{k}_s{s}"
            c = (rng.binomial(eval_n, p) if eval_temperature != 0 else np.round(p * eval_n)).tolist()
            rows[name] = [SimpleNamespace(step=10, eval_n=eval_n, correct=c, prompt_ids=list(range(prompts)))]
            configs[name] = {"rollout": {"eval_temperature": eval_temperature}}
            records.append({"run_dir": name, "status": "completed", "cell": k, "seed": s})
            p_runs.append(p)
        true_eval.append(np.mean([np.mean(p * (1 - p) / eval_n) / prompts for p in p_runs]))
    return pd.DataFrame(records), FakeSource(rows, configs), float(np.mean(true_eval))


def test_noise_split_recovers_the_known_eval_share():
    """Over many simulated sweeps the pooled eval variance matches its truth; without training noise it
    is all of the seed-to-seed variance, with a large one a small part."""
    rng = np.random.default_rng(2)
    est, truth = [], []
    for _ in range(60):
        df, source, true_eval = _simulated(rng=rng)
        split = noise_split(source, df, ["cell"])
        est.append(split["v_eval"])
        truth.append(true_eval)
        assert split["cells"] == 4 and split["eval_n"] == [4]
    assert np.mean(est) == pytest.approx(np.mean(truth), rel=0.03)
    # with σ_seed = 0 all spread is eval sampling: the eval part is the whole variance (pooled over
    # sweeps: one sweep's ratio of two noisy estimates scatters around it)
    splits = [noise_split(*reversed(_simulated(sigma_seed=0.0, rng=rng)[:2]), ["cell"]) for _ in range(40)]
    pooled = np.mean([x["v_eval"] for x in splits]) / np.mean([x["v_total"] for x in splits])
    assert pooled == pytest.approx(1, abs=0.06)
    # with a large seed effect the eval part is small
    df, source, _ = _simulated(sigma_seed=1.5, rng=rng)
    assert noise_split(source, df, ["cell"])["share"] < 0.2


def test_noise_notes_greedy_single_draw_and_no_data():
    df, source, _ = _simulated(eval_n=1, eval_temperature=0.0)
    split = noise_split(source, df, ["cell"])
    assert split["v_eval"] == 0 and "none of it is eval sampling" in noise_note(split)
    df, source, _ = _simulated(eval_n=1)
    assert "cannot be estimated" in noise_note(noise_split(source, df, ["cell"]))
    df, source, _ = _simulated(seeds=1)
    assert noise_split(source, df, ["cell"]) is None and noise_note(None) == ""
    df, source, _ = _simulated()
    note = noise_note(noise_split(source, df, ["cell"]))
    assert note.startswith("Noise in final eval accuracy: seed-to-seed SD") and "% of it eval sampling" in note


def test_the_table_marks_best_of_evals_and_offers_the_auc(tmp_path, capsys):
    sweep = write_synthetic_sweep(tmp_path / "s", axes={"algorithm.kl.coef": [0.0, 0.1]}, seeds=range(2))
    assert table_main([str(sweep), "--metrics", "final_eval_accuracy,best_eval_accuracy,auc:eval/accuracy"]) == 0
    out = capsys.readouterr().out
    assert "best eval accuracy: the best of each run's evals" in out and "auc of eval/accuracy" in out.splitlines()[0]
    assert table_main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "best eval accuracy" not in out  # not a default metric: the default is the final eval
