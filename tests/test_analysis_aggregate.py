"""Aggregates across tasks (``analysis.aggregate_stats``, ``analysis.aggregate``, ``grpolab aggregate``):
hand-computed IQM and probability of improvement, rliable's own values and intervals on the same
score matrices (same draws, so equal to rounding), the stratification, and the command on a
synthetic two-task sweep."""
from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from analysis import aggregate_stats as ag
from analysis.synthetic import write_synthetic_sweep
from tests.cli_helpers import grpolab
from tests.rliable_reference import inputs as reference_inputs

ROOT = Path(__file__).resolve().parents[1]
ATOL = 1e-12  # float summation order only: the draws and the percentile rule are rliable's


def columns(matrix) -> list[np.ndarray]:
    """rliable's ``[runs × tasks]`` matrix as the per-task arrays ``aggregate_stats`` takes."""
    return [matrix[:, t] for t in range(matrix.shape[1])]


@pytest.fixture(scope="module")
def rliable_library_values():
    """rliable.library's intervals on ``tests.rliable_reference.inputs()``, computed in a subprocess
    (that module says why: arch's numba must not enter this process)."""
    pytest.importorskip("rliable")
    out = subprocess.run([sys.executable, "-m", "tests.rliable_reference"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    if out.returncode == 3:
        pytest.skip(out.stderr.strip())
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# ---------------------------------------------------------------- hand-computed
def test_iqm_of_eight_scores_is_the_mean_of_the_middle_four():
    parts = [np.array([1.0, 9.0, 2.0, 8.0]), np.array([3.0, 7.0, 100.0, -50.0])]
    assert ag.iqm(parts) == (2 + 3 + 7 + 8) / 4  # sorted: -50 1 | 2 3 7 8 | 9 100
    assert ag.mean_of_tasks(parts) == (5.0 + 15.0) / 2
    assert ag.median_of_tasks([np.array([1.0]), np.array([2.0, 4.0]), np.array([10.0])]) == 3.0


def test_probability_of_improvement_counts_pairs_with_ties_as_half():
    x = [np.array([1.0, 2.0, 3.0]), np.array([5.0])]
    y = [np.array([2.0, 2.0]), np.array([1.0, 5.0])]
    # task 0: (1,2) ×2 → 0, (2,2) ×2 → ½ each, (3,2) ×2 → 1 each: 3 / 6; task 1: 5 > 1, 5 = 5: 1.5 / 2
    assert ag.probability_of_improvement(x, y) == pytest.approx((3 / 6 + 1.5 / 2) / 2, abs=1e-15)
    u = [scipy.stats.mannwhitneyu(a, b, alternative="greater").statistic / (len(a) * len(b)) for a, b in zip(x, y)]
    assert ag.probability_of_improvement(x, y) == pytest.approx(np.mean(u), abs=1e-15)
    assert ag.probability_of_improvement(y, y) == 0.5


def test_score_distribution_is_the_fraction_of_all_runs_above_each_threshold():
    parts = [np.array([0.1, 0.5]), np.array([0.9])]
    assert ag.score_distribution(parts, [0.0, 0.1, 0.5, 0.9]).tolist() == [1.0, 2 / 3, 1 / 3, 0.0]


def test_a_stratified_resample_keeps_each_task_s_runs_in_that_task():
    """Task 0 scores all 0 (3 runs), task 1 all 1 (5 runs): resampling within tasks keeps the mean of
    task means at 0.5 and the pooled IQM at its value in every resample; pooled resampling would not."""
    parts = [np.zeros(3), np.ones(5)]
    point, lo, hi = ag.interval(ag.mean_of_tasks, parts, reps=500)
    assert point == lo == hi == 0.5
    point, lo, hi = ag.interval(ag.iqm, parts, reps=500)
    assert point == lo == hi == 0.75  # pooled 0 0 0 1 1 1 1 1: middle four are 0 1 1 1
    pooled = np.concatenate(parts)
    rs = np.random.RandomState(0)
    naive = [np.mean(pooled[rs.randint(0, 8, 8)]) for _ in range(200)]
    assert np.std(naive) > 0.05  # the negative control: unstratified resamples move


def test_an_interval_covers_the_truth_about_as_often_as_it_says():
    """Simulation with a known truth: 2 tasks, normal scores with means 0 and 1, 10 runs each; the
    95% interval of the mean of task means should cover 0.5 in about 95% of 300 experiments
    (percentile bootstrap at n = 10 runs per task is a little narrow: ≥ 0.88)."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(300):
        parts = [rng.normal(0.0, 1.0, 10), rng.normal(1.0, 1.0, 10)]
        _, lo, hi = ag.interval(ag.mean_of_tasks, parts, reps=400)
        hits += lo <= 0.5 <= hi
    assert 0.88 <= hits / 300 <= 0.99


# ---------------------------------------------------------------- against rliable
@pytest.mark.parametrize("shape", [(5, 3), (8, 2), (3, 4)])
def test_point_values_equal_rliable_s_metrics(shape):
    metrics = pytest.importorskip("rliable.metrics")
    rng = np.random.default_rng(sum(shape))
    x, y = rng.random(shape), rng.random((shape[0] + 2, shape[1]))
    x[0] = y[0, :]  # ties across the two score sets
    assert ag.iqm(columns(x)) == metrics.aggregate_iqm(x)
    assert ag.mean_of_tasks(columns(x)) == metrics.aggregate_mean(x)
    assert ag.median_of_tasks(columns(x)) == metrics.aggregate_median(x)
    assert abs(ag.probability_of_improvement(columns(x), columns(y)) -
               metrics.probability_of_improvement(x, y)) < ATOL


def test_intervals_equal_rliable_s_with_the_same_seed(rliable_library_values):
    data, theirs = reference_inputs(), rliable_library_values["intervals"]
    x, y = data["x"], data["y"]
    for name, ours in [("iqm", ag.iqm), ("mean", ag.mean_of_tasks), ("median", ag.median_of_tasks)]:
        got = ag.interval(ours, columns(x), reps=400, seed=11)
        np.testing.assert_allclose([got[0], got[1], got[2]], theirs[name], rtol=0, atol=ATOL)
    got = ag.interval(ag.probability_of_improvement, columns(x), columns(y), reps=300, seed=11)
    np.testing.assert_allclose(got, theirs["poi"], rtol=0, atol=ATOL)
    assert theirs["poi"][2] - theirs["poi"][1] > 0.1  # an interval that could have disagreed


def test_performance_profile_and_its_band_equal_rliable_s(rliable_library_values):
    data = reference_inputs()
    frac, lo, hi = ag.interval(lambda s: ag.score_distribution(s, data["taus"]), columns(data["profile_x"]),
                               reps=300, seed=5)
    band = np.array(rliable_library_values["profile"])
    np.testing.assert_allclose(np.stack([frac, lo, hi]), band, rtol=0, atol=ATOL)
    assert (band[2] - band[1]).max() > 0.2


def test_this_process_never_loads_arch_or_numba():
    """vLLM's kernel-override scan breaks on llvmlite objects in sys.modules (tests.rliable_reference)."""
    assert not {"arch", "numba", "llvmlite"} & set(sys.modules)


# ---------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """variant ∈ {grpo, ar} × task ∈ {arithmetic, knights_knaves} × 4 seeds, 4 steps."""
    return write_synthetic_sweep(tmp_path_factory.mktemp("agg") / "tasks",
                                 axes={"variant": ["grpo", "ar"], "task": ["arithmetic", "knights_knaves"]},
                                 seeds=range(4), steps=4, eval_every=2, sweep_id="tasks")


def _scores(sweep, metric="final_eval_accuracy"):
    """{variant: {task: [scores]}} read straight from the run records."""
    out: dict = {}
    for run in sorted((sweep / "runs").iterdir()):
        swept = json.loads((run / "meta.json").read_text())["swept"]
        summary = json.loads((run / "summary.json").read_text())
        if summary["status"] == "completed":
            out.setdefault(swept["variant"], {}).setdefault(swept["task"], []).append(summary[metric])
    return out


def test_aggregate_command_prints_the_table_and_writes_the_profile(sweep, tmp_path, capsys):
    rc, out, err = grpolab(capsys, "aggregate", str(sweep), "--over", "task", "--plot", str(tmp_path / "p"),
                           "--format", "csv", "--reps", "500")
    assert rc == 0, err
    table = pd.read_csv(StringIO(out)).set_index("variant")
    scores = _scores(sweep)
    tasks = ["arithmetic", "knights_knaves"]
    for variant in ("grpo", "ar"):
        pooled = [s for t in tasks for s in scores[variant][t]]
        assert table.loc[variant, "iqm"] == pytest.approx(scipy.stats.trim_mean(pooled, 0.25), abs=1e-12)
        assert table.loc[variant, "mean"] == pytest.approx(np.mean([np.mean(scores[variant][t]) for t in tasks]))
        assert table.loc[variant, "iqm_lo"] <= table.loc[variant, "iqm"] <= table.loc[variant, "iqm_hi"]
        assert (table.loc[variant, "tasks"], table.loc[variant, "runs"]) == (2, 8)
    u = [scipy.stats.mannwhitneyu(scores["ar"][t], scores["grpo"][t]).statistic / 16 for t in tasks]
    assert table.loc["ar", "poi"] == pytest.approx(np.mean(u))
    assert table.loc["grpo", "baseline"] and np.isnan(table.loc["grpo", "poi"])
    paths = [tmp_path / "p" / f"performance_profile_final_eval_accuracy{s}" for s in (".png", ".pdf", ".svg")]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert matplotlib.image.imread(paths[0]).shape[:2] == (500, 900)


def test_markdown_and_latex_name_what_was_resampled(sweep, capsys):
    rc, out, _ = grpolab(capsys, "aggregate", str(sweep), "--over", "task", "--reps", "200")
    assert rc == 0
    head = out.splitlines()[0]
    assert head.startswith("| variant | IQM [95% CI] | mean [95% CI] | median [95% CI] | P(> baseline) [95% CI]")
    assert "| grpo |" in out and "| baseline |" in out
    assert "stratified bootstrap" in out and "arXiv:2108.13264" in out and "variant=grpo" in out
    rc, out, _ = grpolab(capsys, "aggregate", str(sweep), "--over", "task", "--reps", "200", "--format", "latex",
                         "--baseline", "variant=ar")
    assert rc == 0 and "\\toprule" in out and "variant=ar" in out and "P($>$ baseline)" in out
    rc, out, _ = grpolab(capsys, "aggregate", str(sweep), "--over", "task", "--reps", "200", "--baseline", "none")
    assert rc == 0 and "baseline" not in out
    assert out.splitlines()[0] == "| variant | IQM [95% CI] | mean [95% CI] | median [95% CI] | tasks | runs |"


def test_lower_is_better_metric_asks_for_a_lower_score(sweep, capsys):
    rc, out, err = grpolab(capsys, "aggregate", str(sweep), "--over", "task", "--metric", "wall_time_s",
                           "--format", "csv", "--reps", "200")
    assert rc == 0, err
    table = pd.read_csv(StringIO(out)).set_index("variant")
    scores = _scores(sweep, "wall_time_s")
    tasks = ["arithmetic", "knights_knaves"]
    u = [scipy.stats.mannwhitneyu(scores["grpo"][t], scores["ar"][t]).statistic / 16 for t in tasks]
    assert table.loc["ar", "poi"] == pytest.approx(np.mean(u))  # P(ar < grpo) = P(grpo > ar)


def test_a_cell_missing_a_task_is_listed_not_aggregated(tmp_path, capsys):
    sweep = write_synthetic_sweep(tmp_path / "s", axes={"variant": ["grpo", "ar"], "task": ["a", "b"]},
                                  seeds=range(3), steps=2, eval_every=1)
    for run in (sweep / "runs").iterdir():
        swept = json.loads((run / "meta.json").read_text())["swept"]
        if swept["variant"] == "ar" and (swept["task"] == "b" or swept["seed"] == 0):
            summary = json.loads((run / "summary.json").read_text())
            (run / "summary.json").write_text(json.dumps({**summary, "status": "failed"}))
    rc, out, _ = grpolab(capsys, "aggregate", str(sweep), "--over", "task", "--reps", "200")
    assert rc == 0
    assert "| ar | — | — | — | — | 1 | 2 |" in out
    assert "variant=ar: no completed run on task = b; not aggregated." in out
    assert "4 runs not completed (failed: 4) and excluded." in out
    assert "Runs per task differ" not in out  # the aggregated cells have 3 runs on each task


def test_unequal_runs_per_task_are_resampled_at_their_own_count_and_noted(tmp_path, capsys):
    sweep = write_synthetic_sweep(tmp_path / "s", axes={"variant": ["grpo", "ar"], "task": ["a", "b"]},
                                  seeds=range(4), steps=2, eval_every=1)
    for run in (sweep / "runs").iterdir():
        swept = json.loads((run / "meta.json").read_text())["swept"]
        if swept["variant"] == "ar" and swept["task"] == "a" and swept["seed"] < 2:
            summary = json.loads((run / "summary.json").read_text())
            (run / "summary.json").write_text(json.dumps({**summary, "status": "failed"}))
    rc, out, _ = grpolab(capsys, "aggregate", str(sweep), "--over", "task", "--reps", "200", "--format", "csv")
    assert rc == 0
    table = pd.read_csv(StringIO(out)).set_index("variant")
    assert table.loc["ar", "runs_per_task"] == "2,4" and table.loc["ar", "runs"] == 6
    scores = _scores(sweep)
    assert table.loc["ar", "mean"] == pytest.approx((np.mean(scores["ar"]["a"]) + np.mean(scores["ar"]["b"])) / 2)
    assert table.loc["ar", "iqm"] == pytest.approx(scipy.stats.trim_mean(scores["ar"]["a"] + scores["ar"]["b"], 0.25))
    rc, out, _ = grpolab(capsys, "aggregate", str(sweep), "--over", "task", "--reps", "200")
    assert "Runs per task differ in some cells: the IQM weighs each run, the mean and median each task." in out


@pytest.mark.parametrize("argv,line", [
    ([], "error: --over: missing; give the swept key whose values are the tasks, one of: variant, task"),
    (["--over", "tasks"], "error: --over 'tasks': not a swept key of this sweep; swept keys: variant, task"),
    (["--over", "seed"], "error: --over 'seed': not a swept key of this sweep; swept keys: variant, task"),
    (["--over", "task", "--rows", "task"], "error: --rows task: is the --over key"),
    (["--over", "task", "--rows", "kl"], "error: --rows 'kl': not a swept key; swept keys: variant, task"),
    (["--over", "task", "--metric", "bogus"], "error: --metric 'bogus': unknown; available metrics: "),
    (["--over", "task", "--baseline", "variant=ppo"], "error: baseline variant=ppo matches no cell; valid values "
                                                      "of variant: grpo, ar"),
    (["--over", "task", "--reps", "5"], "argument --reps: '5': must be an integer from 100 to 1000000"),
])
def test_bad_input_is_refused_in_one_line(sweep, argv, line, capsys):
    rc, out, err = grpolab(capsys, "aggregate", str(sweep), *argv)
    assert rc == 2 and not out and "Traceback" not in err
    assert line in err.strip().splitlines()[-1]
    assert err.count("error") == 1


def test_one_task_only_is_refused(tmp_path, capsys):
    sweep = write_synthetic_sweep(tmp_path / "one", axes={"variant": ["grpo", "ar"], "task": ["arithmetic"]},
                                  seeds=range(2), steps=2, eval_every=1)
    rc, out, err = grpolab(capsys, "aggregate", str(sweep), "--over", "task")
    assert rc == 2 and not out
    assert err == ("error: --over task: aggregates across tasks need ≥ 2 values; task has 1 with completed runs of "
                   "final_eval_accuracy (arithmetic)\n")


def test_the_table_command_does_not_import_rliable_or_the_aggregates():
    code = ("import sys, analysis.table; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('rliable', 'arch', 'seaborn') or m.startswith('analysis.aggregate')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
