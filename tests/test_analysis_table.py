"""Tests for analysis.records / analysis.table on synthetic run records.

Expected statistics are recomputed from the raw numbers with the stdlib
``statistics`` module so the test does not share pandas' code path.
"""
from __future__ import annotations

import json
import math
import random
import statistics
import warnings

import pytest

from analysis.records import load_metrics, load_records
from analysis.table import main, markdown_table, render_table, summarize

KL, CLIP = "algorithm.kl.coef", "algorithm.clip.high"
KL_VALUES, CLIP_VALUES, SEEDS = [0.0, 0.001], [0.2, 0.28], [1, 2, 3]
METRICS = ["final_eval_accuracy", "final_reward"]


def write_run(sweep, name, swept, seed, summary=None, metrics=None, raw_summary=None, raw_meta=None):
    """Write one run dir in the trainer's record format; raw_* override with literal text."""
    run = sweep / "runs" / name
    run.mkdir(parents=True)
    meta = {
        "run_id": name, "sweep_id": "s1", "cell_id": json.dumps(swept, sort_keys=True),
        "config_hash": "h-" + json.dumps(swept, sort_keys=True), "seed": seed,
        "swept": {**swept, "seed": seed}, "variant": "base", "code_version": {"git": "abc"},
        "created": "2026-01-01T00:00:00",
    }
    (run / "meta.json").write_text(raw_meta if raw_meta is not None else json.dumps(meta))
    if raw_summary is not None:
        (run / "summary.json").write_text(raw_summary)
    elif summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))
    if metrics is not None:
        (run / "metrics.jsonl").write_text(metrics)
    return run


def completed_summary(rng, **extra):
    return {
        "status": "completed", "steps_completed": 100, "wall_time_s": rng.uniform(100, 200),
        "warmstart_eval_accuracy": 0.3, "final_eval_accuracy": round(rng.uniform(0.4, 0.8), 4),
        "best_eval_accuracy": 0.9, "final_reward": round(rng.uniform(-1, 1), 4),
        "final_response_length": 250.0, "error": None, **extra,
    }


@pytest.fixture
def sweep(tmp_path):
    """2 swept keys x 2 values x 3 seeds, plus a failed run and a truncated run.

    Returns (sweep_dir, raw) with raw[(kl, clip)][metric] = list of completed values.
    """
    rng = random.Random(0)
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text(json.dumps({"sweep_id": "s1"}))
    raw = {}
    for kl in KL_VALUES:
        for clip in CLIP_VALUES:
            for seed in SEEDS:
                summ = completed_summary(rng)
                write_run(sweep_dir, f"kl{kl}_clip{clip}_s{seed}", {KL: kl, CLIP: clip}, seed, summ)
                cell = raw.setdefault((kl, clip), {m: [] for m in METRICS})
                for m in METRICS:
                    cell[m].append(summ[m])
    failed = completed_summary(rng, status="failed", final_eval_accuracy=0.0, error={"step": 7, "cause": "OOM"})
    write_run(sweep_dir, "failed_run", {KL: 0.0, CLIP: 0.2}, 4, failed)
    lines = [json.dumps({"step": s, "train/reward": s / 10, "train/loss": 1 - s / 10}) for s in range(3)]
    write_run(sweep_dir, "truncated_run", {KL: 0.001, CLIP: 0.28}, 5,
              raw_summary='{"status": "completed", "final_eval_acc',
              metrics="\n".join(lines) + '\n{"step": 3, "train/rew')
    return sweep_dir, raw


def load_quiet(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_records(path)


def test_load_records_columns_statuses_and_warning(sweep):
    sweep_dir, _ = sweep
    with pytest.warns(UserWarning, match="truncated_run.summary.json"):
        df = load_records(sweep_dir)
    assert len(df) == 14
    assert df.attrs["swept_keys"] == [KL, CLIP]  # first-seen order
    for col in ["run_dir", "run_id", "cell_id", "config_hash", "seed", "status", "label", KL, CLIP,
                "steps_completed", "wall_time_s", *METRICS]:
        assert col in df.columns
    assert "error" not in df.columns and "seed" not in df.attrs["swept_keys"]
    assert set(df["label"].dropna()) == {"base"}  # a version-1 record's typed label ("variant") is read as its label
    status = df.set_index("run_id")["status"]
    assert status["failed_run"] == "failed" and status["truncated_run"] == "missing"
    assert (status == "completed").sum() == 12
    assert math.isnan(df.set_index("run_id").loc["truncated_run", "final_eval_accuracy"])


def test_summarize_matches_hand_computed_stats(sweep):
    sweep_dir, raw = sweep
    df = load_quiet(sweep_dir)
    summ = summarize(df, METRICS, [KL, CLIP])
    assert list(zip(summ[KL], summ[CLIP])) == [(k, c) for k in KL_VALUES for c in CLIP_VALUES]
    for _, row in summ.iterrows():
        cell = raw[(row[KL], row[CLIP])]
        for m in METRICS:
            assert row[f"{m}/mean"] == pytest.approx(statistics.mean(cell[m]), abs=1e-12)
            assert row[f"{m}/std"] == pytest.approx(statistics.stdev(cell[m]), abs=1e-12)
            assert row[f"{m}/n"] == 3
        assert row["n_runs"] == 3
    assert summ.attrs["excluded"] == {"failed": 1, "missing": 1}


def test_failed_runs_excluded_and_counted_in_footer(sweep):
    sweep_dir, raw = sweep
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        md = render_table(sweep_dir, metrics=["final_eval_accuracy"], rows=[KL, CLIP])
    cell = raw[(0.0, 0.2)]["final_eval_accuracy"]  # the baseline cell: no Δ
    half = 4.30265 * statistics.stdev(cell) / math.sqrt(3)  # t_{0.975, 2} from a t table
    row = next(line for line in md.splitlines() if line.startswith("| 0 | 0.2 |"))
    assert row.replace("**", "") == f"| 0 | 0.2 | {statistics.mean(cell):.3f} ± {half:.3f} | 3 |"
    assert md.splitlines()[-1] == "2 runs were not completed (failed: 1, missing: 1) and excluded."


def test_markdown_shape(sweep):
    sweep_dir, _ = sweep
    df = load_quiet(sweep_dir)
    md = markdown_table(summarize(df, METRICS, [KL, CLIP]), METRICS, [KL, CLIP], digits=2)
    lines = md.splitlines()
    assert lines[0] == f"| {KL} | {CLIP} | final eval accuracy | final reward | n |"  # readable metric names
    assert lines[1] == "|---|---|---:|---:|---:|"
    table_rows = lines[2:6]
    assert len(table_rows) == 4 and lines[6] == ""
    for line in table_rows:
        cells = line.strip("|").split("|")
        assert len(cells) == 5 and line.count(" ± ") == 2 and cells[-1].strip() == "3"
    assert "| 0.001 | 0.28 |" in table_rows[3]


def test_nan_swept_key_and_n1_and_min_n(tmp_path):
    rng = random.Random(1)
    vals = {}
    for i, (extra, seed) in enumerate([({"lr": 2}, 1), ({"lr": 2}, 2), ({"lr": 10}, 1), ({}, 1), ({}, 2)]):
        summ = completed_summary(rng)
        if i == 1:
            del summ["final_reward"]  # lr=2 cell: final_reward only in one run
        write_run(tmp_path, f"r{i}", {"variant.name": "a", **extra}, seed, summ)
        vals.setdefault(extra.get("lr", "—"), []).append(summ["final_eval_accuracy"])
    df = load_records(tmp_path)
    assert df.attrs["swept_keys"] == ["variant.name", "lr"]
    summ = summarize(df, METRICS)
    assert list(summ["lr"]) == [2, 10, "—"]  # numeric order, NaN group last
    nan_row = summ.iloc[2]
    assert nan_row["final_eval_accuracy/mean"] == pytest.approx(statistics.mean(vals["—"]))
    assert nan_row["final_eval_accuracy/n"] == 2
    assert math.isnan(summ.iloc[1]["final_eval_accuracy/std"])
    md = render_table(tmp_path, metrics=METRICS, rows=["lr"]).splitlines()
    assert md[2].startswith("| 2 |") and md[2].endswith("| 1 |")  # min n over metrics
    assert md[3].startswith("| 10 |") and "± — (" in md[3] and md[3].endswith("| 1 |")  # n=1: no CI
    assert md[4].startswith("| — |") and md[4].endswith("| 2 |")
    assert md[5] == "" and md[6].startswith("Mean ± 95% CI") and len(md) == 7  # nothing excluded: no footer


def test_bad_keys_metrics_and_empty_dir(sweep, tmp_path):
    sweep_dir, _ = sweep
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"'nope'.*algorithm\.kl\.coef, algorithm\.clip\.high"):
            render_table(sweep_dir, rows=["nope"])
        with pytest.raises(ValueError, match=r"unknown metric 'acc'.*final_eval_accuracy"):
            render_table(sweep_dir, metrics=["acc"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"no runs.*{empty.name}"):
        render_table(empty)


def test_corrupt_meta_counts_as_missing(tmp_path):
    write_run(tmp_path, "bad", {"x": 1}, 1, raw_meta="{not json")
    write_run(tmp_path, "good", {"x": 1}, 1, completed_summary(random.Random(2)))
    with pytest.warns(UserWarning, match="bad.meta.json"):
        df = load_records(tmp_path)
    assert sorted(df["status"]) == ["completed", "missing"]


def test_load_metrics_skips_corrupt_lines(sweep):
    sweep_dir, _ = sweep
    run = sweep_dir / "runs" / "truncated_run"
    m = load_metrics(run)
    assert list(m["step"]) == [0, 1, 2]
    assert m["train/reward"].tolist() == pytest.approx([0.0, 0.1, 0.2])
    (run / "metrics.jsonl").write_text('{"step": 0, "eval/accuracy": 0.5}\ngarbage\n{"step": 1}\n')
    m = load_metrics(run)
    assert list(m["step"]) == [0, 1] and math.isnan(m["eval/accuracy"][1])
    assert load_metrics(sweep_dir / "runs" / "failed_run").empty


def test_main_exit_codes(sweep, tmp_path, capsys):
    sweep_dir, _ = sweep
    out = tmp_path / "table.md"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([str(sweep_dir), "--metrics", "final_eval_accuracy,final_reward",
                     "--rows", KL, "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert printed == out.read_text() and printed.startswith(f"| {KL} |")
        rows = [line for line in printed.splitlines()[2:] if line.startswith("| ")]
        assert [r.split(" |")[0] for r in rows] == ["| 0", "| 0.001"]  # pooled over clip
        assert all(r.endswith("| 6 |") for r in rows)
        assert main([str(sweep_dir), "--rows", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main([str(tmp_path / "does-not-exist")]) == 2


def test_thousand_records_load_and_render(tmp_path):
    rng = random.Random(3)
    for i in range(1000):
        swept = {KL: [0.0, 0.001, 0.01, 0.1][i % 4], CLIP: [0.2, 0.28][(i // 4) % 2]}
        write_run(tmp_path, f"r{i:04d}", swept, i // 8, completed_summary(rng))
    md = render_table(tmp_path)
    assert len(load_records(tmp_path)) == 1000
    lines = md.splitlines()
    assert lines[10] == "" and all(line.endswith("| 125 |") for line in lines[2:10])


def test_a_metric_one_variant_never_logs_leaves_its_row_n_alone(tmp_path):
    """Lopti logs stage fractions, GRPO does not: GRPO's row shows "—" there and keeps n = 2."""
    import json as _json

    from analysis.table import main

    sweep_dir = tmp_path / "sweep"
    rng = random.Random(1)
    for variant in ("grpo", "lopti"):
        for seed in (0, 1):
            rows = [{"step": 1, "train/reward": 0.5}]
            if variant == "lopti":
                rows[0]["train/stage_low_token_frac"] = 0.2
            write_run(sweep_dir, f"{variant}_s{seed}", {"variant": variant}, seed, summary=completed_summary(rng),
                      metrics="".join(_json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "t.md"
    metrics = "final_eval_accuracy,mean:train/stage_low_token_frac"
    assert main([str(sweep_dir), "--metrics", metrics, "--out", str(out)]) == 0
    table = out.read_text()
    grpo_row = next(line for line in table.splitlines() if line.startswith("| grpo"))
    assert "—" in grpo_row and grpo_row.rstrip().endswith("| 2 |")


def test_bold_follows_each_metrics_declared_direction(tmp_path):
    """Bold marks a cell significantly better than the baseline, better in the direction the run
    record declares (trainer.run_record), also for a derived metric (that of the key it aggregates).
    Against baseline "b", cell "a" is higher and cell "c" lower on every metric at every one of 4
    seeds, by nearly the same amount (paired t p < 1e-4, significant after Holm; exactly constant
    differences would leave no variance to test against), so the bold goes to "a" where higher is
    better, to "c" where lower is, and nowhere otherwise; never to the baseline."""
    import json as _json

    rng = random.Random(4)
    for cell, level, k in (("a", 2.0, 0.01), ("b", 1.0, 0.0), ("c", 0.5, 0.005)):
        for seed in (0, 1, 2, 3):
            j = k * seed  # the cell's difference from the baseline varies a little from seed to seed
            rows = [{"step": s, "train/kl": level + s + j, "train/reward": level + s + j, "train/entropy": level,
                     "eval/pass@4": level / 4 + j, "diag/lld_lazy_frac": level / 4 + j} for s in (1, 2)]
            summary = completed_summary(rng, warmstart_eval_accuracy=level + seed,
                                        final_eval_accuracy=level + seed + j, wall_time_s=100 * level + seed + j)
            write_run(tmp_path, f"{cell}_s{seed}", {"x": cell}, seed, summary,
                      metrics="".join(_json.dumps(r) + "\n" for r in rows))
    expected = {  # metric: the cell in bold (None: no better direction, nothing bold)
        "final_eval_accuracy": "a", "wall_time_s": "c", "warmstart_eval_accuracy": None,
        "mean:train/kl": "c", "max:train/reward": "a", "final_pass@k": "a",
        "mean:diag/lld_lazy_frac": "c", "mean:train/entropy": None,
    }
    md = render_table(tmp_path, metrics=list(expected), rows=["x"], baseline={"x": "b"}).splitlines()
    body = {line.split(" | ")[0]: line.split(" | ")[1:-1] for line in md[2:5]}
    for j, (metric, best) in enumerate(expected.items()):
        bold = [cell for cell in ("a", "b", "c") if body[f"| {cell}"][j].startswith("**")]
        assert bold == ([best] if best else []), metric
    assert md[6].endswith("Bold: significantly better than the baseline after the correction (higher is better; "
                          "lower for wall time (s), mean of train/kl, mean of diag/lld_lazy_frac); none marked for "
                          "warm-start eval accuracy, mean of train/entropy.")
    only_none = render_table(tmp_path, metrics=["final_response_length"], rows=["x"], baseline=False)
    assert "**" not in only_none and "Nothing is bold: no metric here has a better direction." in only_none


def test_rounded_swept_values_never_show_two_cells_under_one_label():
    from analysis.render import distinct_digits, fmt_key

    assert fmt_key(0.00034664415306594665, 3) == "0.000347"
    close = [0.1, 0.10004]  # distinct cells that three significant digits would merge
    d = distinct_digits([close], 3)
    assert len({fmt_key(v, d) for v in close}) == 2 and fmt_key(0.1, d) == "0.1"
    assert all(fmt_key(v, d - 1) == "0.1" for v in close)  # the fewest digits that separate them
    assert distinct_digits([[0.5, 0.25], ["grpo", "nthr"], [[1, 2], [3]]], 3) == 3  # nothing to widen
    assert distinct_digits([[1.0, 1.0 + 1e-17]], 3) == 3  # the same float: one cell


def test_a_table_keeps_close_swept_values_apart(tmp_path):
    rng = random.Random(1)
    for i, kl in enumerate([0.1, 0.10004]):
        for seed in (1, 2):
            write_run(tmp_path / "s", f"r{i}_{seed}", {KL: kl}, seed, completed_summary(rng))
    table = render_table(tmp_path / "s", ["final_eval_accuracy"], [KL], digits=3)
    labels = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| 0.1")]
    assert labels == ["0.1", "0.10004"], table


def test_two_seeds_that_agree_exactly_are_not_a_finding(tmp_path):
    """The demo's case: a cell whose two seeds both differ from the baseline by exactly -0.010 (integer
    token counts make such ties common). With no spread there is nothing to test against: no star."""
    rng = random.Random(2)
    for cell, shift in (("base", 0.0), ("other", -0.010)):
        for seed, length in ((0, 2.894), (1, 2.5)):
            write_run(tmp_path, f"{cell}_{seed}", {"x": cell}, seed,
                      completed_summary(rng, final_response_length=length + shift, wall_time_s=100.0 + seed))
    table = render_table(tmp_path, ["final_response_length"], ["x"], baseline={"x": "base"})
    other = next(line for line in table.splitlines() if line.startswith("| other"))
    assert "-0.010" in other and "*" not in other, table
