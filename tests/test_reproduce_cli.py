"""``grpolab reproduce``: refused input is one line before anything runs; ``all --quick`` end to end
(slow): every paper's report, whose verdicts follow from its numbers by the stated rule."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reproduce.claims import verdict_of
from reproduce.verdict import VERDICTS

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ("lopti", "nthr", "cancellation", "dfpo")
TOKEN = "hf_" + "q" * 30  # a secret-looking value handed to the jobs' environment: written nowhere


def _grpolab(*args, cwd=ROOT, timeout=1800):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_an_unknown_paper_is_one_line(tmp_path):
    out = _grpolab("reproduce", "lopty", f"paths.output_root={tmp_path}")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["grpolab reproduce: paper 'lopty': valid: cancellation, dfpo, lopti, "
                                               "nthr, all"]
    assert not any(tmp_path.iterdir())


def test_a_bad_override_is_refused_before_anything_runs(tmp_path):
    out = _grpolab("reproduce", "nthr", "--quick", f"paths.output_root={tmp_path}", "train.stepz=3")
    assert out.returncode == 2
    assert out.stderr.startswith("config error: train.stepz") and "Traceback" not in out.stderr
    assert not any(tmp_path.iterdir())  # no sweep dir, no report dir


def test_dry_run_lists_every_sweep_and_the_probe_and_writes_nothing(tmp_path):
    out = _grpolab("reproduce", "all", "--quick", "--dry-run", f"paths.output_root={tmp_path}")
    assert out.returncode == 0, out.stderr
    for paper in PAPERS:
        assert f"dry run: grpolab reproduce {paper} would write {tmp_path}/reproduce/{paper}-quick/" in out.stdout
    assert "reproduce-dfpo-quick-g4" in out.stdout and out.stdout.count("probe: 3 batches") == 3
    assert not (tmp_path / "reproduce").exists()


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory, kk_cache):
    out_root = tmp_path_factory.mktemp("repro")
    out = _grpolab("reproduce", "all", "--quick", f"paths.output_root={out_root}", f"paths.cache_dir={kk_cache}",
                   f"+launcher.env.HF_TOKEN={TOKEN}")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out_root, out


@pytest.mark.slow
@pytest.mark.parametrize("paper", PAPERS)
def test_quick_reports_verdicts_that_follow_from_their_numbers(quick_all, paper):
    out_root, out = quick_all
    report = out_root / "reproduce" / f"{paper}-quick"
    data = json.loads((report / "claims.json").read_text())
    rows = data["claims"]
    assert rows and data["meta"]["quick"] is True
    for row in rows:
        assert row["verdict"] in VERDICTS and row["quick"] is True
        assert verdict_of(row) == row["verdict"], row  # the stated rule, applied to the stored numbers
        if row["kind"] == "accuracy":  # 2 seeds: an accuracy claim needs 5
            assert row["verdict"] == "inconclusive" and row["n"] < row["rule"]["min_n"]
    md = (report / "report.md").read_text()
    for row in rows:
        assert f"`{row['id']}`" in md and f"**{row['verdict']} (quick)**" in md
    html = (report / "report.html").read_text()
    assert html.count("<img src='data:image/png;base64,") >= 1
    figures = re.findall(r"^!\[[^\]]*\]\(([^)\s]+)\)", md, flags=re.M)
    assert figures and all((report / f).is_file() for f in figures), figures
    assert f"{report / 'report.md'}" in out.stdout


@pytest.mark.slow
def test_probe_statistics_are_in_the_first_order_regime(quick_all):
    """Each probe's step was chosen so the loss change matches its first-order estimate (ratio in
    [0.8, 1.25]); a report whose probes overshoot would measure the overshoot."""
    out_root, _ = quick_all
    for paper in ("lopti", "nthr", "cancellation"):
        probe = json.loads((out_root / "reproduce" / f"{paper}-quick" / "probe.json").read_text())["result"]
        for b in probe["batches"]:
            first = b["ratio"]["full" if paper == "lopti" else "grpo"]
            assert 0.8 <= first <= 1.25, (paper, b["seed"], first)


@pytest.mark.slow
def test_a_second_invocation_runs_nothing_again(quick_all, kk_cache):
    out_root, _ = quick_all
    out = _grpolab("reproduce", "nthr", "--quick", f"paths.output_root={out_root}", f"paths.cache_dir={kk_cache}",
                   f"+launcher.env.HF_TOKEN={TOKEN}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(0 to run, 4 already completed)" in out.stdout
    assert "probe reused from" in out.stdout + out.stderr


@pytest.mark.slow
def test_a_secret_in_an_override_is_written_nowhere(quick_all):
    out_root, out = quick_all
    assert TOKEN not in out.stdout + out.stderr
    leaked = [p for p in out_root.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert not leaked, leaked
    report = (out_root / "reproduce" / "nthr-quick" / "report.md").read_text()
    assert "launcher.env.HF_TOKEN=<redacted>" in report  # the rerun command says a value was set


@pytest.mark.slow
def test_all_writes_one_summary_with_every_paper(quick_all):
    out_root, _ = quick_all
    text = (out_root / "reproduce" / "summary-quick.md").read_text()
    assert text.count("| claim |") == len(PAPERS)
    for paper in PAPERS:
        assert f"reproduce/{paper}-quick/report.md" in text
