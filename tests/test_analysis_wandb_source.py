"""Records from the W&B API (analysis/wandb_source.py) take the same code path as records on disk:
the same records frame, tables, figures and report as ``DirSource`` on the same sweep.

No W&B server can run here, so the API is ``OfflineWandbApi``, a test double of ``wandb.Api``
that serves runs decoded from the REAL offline run files (``.wandb`` transaction logs) that a real
small sweep with ``tracker=wandb`` wrote, as the server would after ``wandb sync``. It mimics only
the part of the API that ``WandbSource`` uses, and ``test_the_double_uses_only_the_real_api``
checks that part against the installed wandb, so the double cannot drift from it.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from analysis.records import DirSource
from analysis.sources import open_source
from analysis.wandb_source import WandbSource, parse_url
from trainer.tracking import read_offline_run, read_wandb_records

SWEEP_ID = "wbsrc"
PROJECT = "someone/grpolab"  # the tracker's default project; offline runs have no entity
TABLE_METRICS = ["warmstart_eval_accuracy", "final_eval_accuracy", "best_eval_accuracy", "final_reward",
                 "final_pass@k", "mean:train/reward", "max:eval/accuracy", "train/kl"]


# ---------------------------------------------------------------- the test double
def _key(item) -> list[str]:
    return [item.key] if item.key else list(item.nested_key)


class OfflineRun:
    """Test double of ``wandb.apis.public.Run``: one W&B run (all attempts of one run id)."""

    def __init__(self, files: list[Path]):
        first = read_offline_run(files[0])
        last = read_offline_run(files[-1])
        self.id = first["run_id"]
        self.group, self.job_type, self.tags = last["group"], last["job_type"], last["tags"]
        self.config = last["config"]
        self.summary: dict = {}
        self._history: list[dict] = []
        self._project, self.name, self.entity, self.state = None, None, "", "running"
        for path in files:  # attempts in order: the server appends history, summary updates win
            for rec in read_wandb_records(path):
                kind = rec.WhichOneof("record_type")
                if kind == "run":
                    self._project, self.name, self.entity = rec.run.project, rec.run.display_name, rec.run.entity
                    self.state = "running"
                elif kind == "history":  # W&B's own _step, _runtime, _timestamp included, as the API returns
                    self._history.append({"/".join(_key(i)): json.loads(i.value_json) for i in rec.history.item})
                elif kind == "summary":
                    for item in rec.summary.update:
                        *parents, leaf = _key(item)
                        node = self.summary
                        for p in parents:
                            node = node.setdefault(p, {})
                        node[leaf] = json.loads(item.value_json)
                    for item in rec.summary.remove:
                        self.summary.pop(_key(item)[0], None)
                elif kind == "preempting":
                    self.state = "preempting"
                elif kind == "exit":
                    self.state = "finished" if rec.exit.exit_code == 0 else "failed"

    @property
    def path(self) -> list[str]:
        return [self.entity, self._project, self.id]

    def scan_history(self, keys=None, page_size=1_000, min_step=0, max_step=None, use_cache=True):
        assert keys is None, "the double serves whole rows only"
        return iter([dict(r) for r in self._history
                     if r["_step"] >= min_step and (max_step is None or r["_step"] < max_step)])

    def history(self, samples=500, keys=None, x_axis="_step", pandas=True, stream="default"):
        rows = [dict(r) for r in self._history][:samples]
        return pd.DataFrame.from_records(rows) if pandas else rows


class OfflineWandbApi:
    """Test double of ``wandb.Api`` over the offline run files below ``root``."""

    def __init__(self, root):
        by_id: dict[str, list[Path]] = {}
        for path in sorted(Path(root).rglob("offline-run-*/run-*.wandb")):  # dir names start with the time
            by_id.setdefault(read_offline_run(path)["run_id"], []).append(path)
        self._runs = [OfflineRun(files) for files in by_id.values()]
        self.calls: list[dict] = []

    def runs(self, path=None, filters=None, order="+created_at", per_page=50, include_sweeps=False, lazy=True):
        self.calls.append({"path": path, "filters": filters, "lazy": lazy})
        project = path.split("/")[-1]
        fields = {"group": "group", "jobType": "job_type", "state": "state"}
        unknown = set(filters or {}) - set(fields)
        if unknown:
            raise NotImplementedError(f"the double filters only on {sorted(fields)}, not {sorted(unknown)}")
        return [r for r in self._runs if r._project == project
                and all(getattr(r, fields[k]) == v for k, v in (filters or {}).items())]


def test_the_double_uses_only_the_real_api():
    """Every public attribute of the double exists on the real ``wandb.apis.public.Run`` (a class
    attribute, or a field of the run fragment served through ``Attrs.__getattr__``: group, jobType,
    tags), and every method's parameters are the real method's, with the same defaults."""
    import wandb
    from wandb.apis.attrs import Attrs
    from wandb.apis.public import runs as real_runs

    Run = wandb.apis.public.Run
    # served in both the listing (lazy) and the full fragment
    fragment_fields = ({line.strip() for line in real_runs.LIGHTWEIGHT_RUN_FRAGMENT.splitlines()}
                       & {line.strip() for line in real_runs.RUN_FRAGMENT.splitlines()})
    for name in [n for n in dir(OfflineRun) if not n.startswith("_")] + ["id", "name", "entity", "state", "config",
                                                                            "summary", "group", "job_type", "tags"]:
        assert hasattr(Run, name) or Attrs.snake_to_camel(None, name) in fragment_fields, name
    for double, real in ((OfflineWandbApi.runs, wandb.Api.runs), (OfflineRun.scan_history, Run.scan_history),
                         (OfflineRun.history, Run.history)):
        real_params = inspect.signature(real).parameters
        for name, p in inspect.signature(double).parameters.items():
            assert name in real_params, (double.__qualname__, name)
            assert p.default == real_params[name].default, (double.__qualname__, name)


# ---------------------------------------------------------------- sources from arguments
def test_urls_and_dirs_pick_their_source(tmp_path):
    assert parse_url("wandb://ent/proj/kl-sweep") == ("ent/proj", "kl-sweep")
    assert parse_url("wandb://proj/kl-sweep") == ("proj", "kl-sweep")
    for bad in ("wandb://kl-sweep", "wandb://a/b/c/d", "wandb://ent//kl"):
        with pytest.raises(ValueError, match="wandb://ENTITY/PROJECT/SWEEP_ID"):
            parse_url(bad)
    src = open_source("wandb://ent/proj/kl-sweep")
    assert isinstance(src, WandbSource)
    assert (src.project, src.sweep_id, src.name) == ("ent/proj", "kl-sweep", "kl-sweep")
    assert src._api is None  # wandb.Api() is created on first use, not before
    assert isinstance(open_source(str(tmp_path)), DirSource)
    with pytest.raises(ValueError, match="sweep dir does not exist"):
        open_source(str(tmp_path / "nope"))


def test_an_empty_group_says_where_it_looked(tmp_path):
    from analysis.table import build_table

    with pytest.raises(ValueError, match="no runs found in wandb://x/grpolab/none"):
        build_table(WandbSource("x/grpolab", "none", api=OfflineWandbApi(tmp_path)))


# ---------------------------------------------------------------- a real small sweep, both ways
@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """2 cells × 2 seeds of the real tiny trainer with ``tracker=wandb`` (offline), in process:
    the run records and, written live by the trainer's tracker hook, the offline W&B runs."""
    import os

    from sweeps.plan import make_plan
    from sweeps.plan_owner import claim
    from tests.conftest import fast_overrides
    from trainer.run import run_training

    os.environ.setdefault("WANDB_SILENT", "true")
    tmp = tmp_path_factory.mktemp("wbsrc")
    plan = make_plan([*fast_overrides(tmp, steps=2), "tracker=wandb", "tracker.mode=offline",
                      "algorithm.kl.coef=0.05,0.0", "seed=0,1", f"sweep.id={SWEEP_ID}"])
    claim(plan, ["pytest"])
    for run in plan.runs:
        summary = run_training(run.cfg, plan.sweep_dir / "runs" / run.name, plan.meta_for(run), log=lambda *a: None)
        assert summary.status == "completed", summary.error
    return plan.sweep_dir


@pytest.fixture
def sources(sweep):
    return DirSource(sweep), WandbSource(PROJECT, SWEEP_ID, api=OfflineWandbApi(sweep))


@pytest.mark.slow
def test_records_frame_is_the_same_from_wandb_as_from_disk(sources):
    disk, wb = sources
    a, b = disk.runs(), wb.runs()
    assert len(a) == 4 and set(a.columns) == set(b.columns)
    assert b["run_dir"].tolist() == [f"{PROJECT}/{SWEEP_ID}-{r}" for r in a["run_id"]]  # the W&B run path
    pd.testing.assert_frame_equal(a.drop(columns="run_dir"), b[a.columns].drop(columns="run_dir"))
    assert b.attrs["swept_keys"] == a.attrs["swept_keys"] == ["algorithm.kl.coef"]
    assert set(b.attrs["metric_keys"]) == set(a.attrs["metric_keys"])
    assert wb.api.calls == [{"path": PROJECT, "filters": {"group": SWEEP_ID}, "lazy": False}]
    for d, w in zip(a["run_dir"], b["run_dir"]):
        h_disk, h_wb = disk.history(d), wb.history(w)
        assert h_wb.columns[0] == "step" and not any(c.startswith("_") for c in h_wb.columns)
        logged = [c for c in h_disk.columns if h_disk[c].notna().any()]  # W&B never gets a null
        assert sorted(h_wb.columns) == sorted(logged)
        pd.testing.assert_frame_equal(h_disk[logged], h_wb[logged], check_dtype=False)
        cfg = wb.config(w)
        assert "run_meta" not in cfg and cfg["algorithm"] == disk.config(d)["algorithm"]
    with_plan = WandbSource(PROJECT, SWEEP_ID, api=OfflineWandbApi(disk.root), plan=disk.plan).runs()
    assert {k: v for k, v in with_plan.attrs.items() if k != "metric_keys"} == \
        {k: v for k, v in a.attrs.items() if k != "metric_keys"}
    assert a.attrs["value_order"] == {"algorithm.kl.coef": [0.05, 0.0]}  # the plan's order, not sorted
    # without plan=: each run's run_meta.plan_index rebuilds the plan's order and its first (baseline) cell
    assert b.attrs["value_order"] == a.attrs["value_order"] and b.attrs["plan_first"] == a.attrs["plan_first"]


class _NoPerPromptOutcomes:
    """A source with the three RunSource methods only: what W&B gives (no ``evals.jsonl``)."""

    def __init__(self, source):
        self.name, self.plan = source.name, source.plan
        self.runs, self.history, self.config = source.runs, source.history, source.config


@pytest.mark.slow
def test_table_from_wandb_equals_table_from_disk(sources):
    """Same rows, means, CIs, Δ and p, from summary keys and from history-derived metrics. W&B holds
    no per-prompt outcomes, so its Δ pairs by seed only: equal to the disk table read the same way,
    and differing from the disk table's (prompt-paired) only in Δ's interval and the caption."""
    from analysis.table import build_table

    disk, wb = sources
    for layout in ({}, {"cols": ["algorithm.kl.coef"], "rows": []}):
        t_disk, t_wb, t_seed = (build_table(s, TABLE_METRICS, **layout) for s in (disk, wb, _NoPerPromptOutcomes(disk)))
        pd.testing.assert_frame_equal(t_seed.summary, t_wb.summary)
        assert t_wb.summary.attrs == t_seed.summary.attrs
        assert (t_wb.summary.n_runs == 2).all() and t_wb.summary["final_eval_accuracy/ci"].notna().all()
        for fmt in ("md", "csv", "latex"):
            assert t_wb.render(fmt) == t_seed.render(fmt)
        assert set(t_disk.summary["final_eval_accuracy/pairing"]) == {"", "seed×prompt"}
        assert set(t_wb.summary["final_eval_accuracy/pairing"]) == {"", "seed"}
        interval = [c for c in t_disk.summary.columns if c.endswith(("/delta_lo", "/delta_hi", "/pairing", "/prompts"))]
        pd.testing.assert_frame_equal(t_disk.summary.drop(columns=interval), t_wb.summary.drop(columns=interval))


@pytest.mark.slow
def test_figures_and_report_from_wandb_equal_those_from_disk(sources):
    import matplotlib.pyplot as plt

    from analysis.plots import sweep_figures
    from analysis.report import render_report
    from analysis.table import build_table

    disk, wb = sources
    f_disk, f_wb = sweep_figures(disk), sweep_figures(wb)
    assert list(f_wb) == list(f_disk) and "eval_accuracy" in f_wb
    for name in f_disk:
        (t1, a), (t2, b) = f_disk[name], f_wb[name]
        assert t1 == t2
        for ax1, ax2 in zip(a.axes, b.axes, strict=True):
            lines1, lines2 = ax1.get_lines(), ax2.get_lines()
            assert len(lines1) == len(lines2)
            for l1, l2 in zip(lines1, lines2):
                assert l1.get_label() == l2.get_label()
                assert (l1.get_xydata() == l2.get_xydata()).all(), name
            for c1, c2 in zip(ax1.collections, ax2.collections, strict=True):  # the seed bands
                assert all((p1.vertices == p2.vertices).all() for p1, p2 in zip(c1.get_paths(), c2.get_paths()))
        plt.close(a)
        plt.close(b)
    seed_paired = _NoPerPromptOutcomes(disk)  # W&B has no per-prompt outcomes (test above)
    html_wb, html_disk = render_report(wb), render_report(seed_paired)
    assert build_table(seed_paired).render("html").partition("</table>")[0] in html_wb
    assert f"grpolab sweep report: {SWEEP_ID}" in html_wb and "completed: 4" in html_wb
    body = [re.sub(r'<dl class="meta">.*?</dl>', "", h, flags=re.S) for h in (html_wb, html_disk)]
    # where a run lives differs by source (a dir; ENTITY/PROJECT/RUN): the runs' directories and the
    # example run the eval-schedule warning names
    body = [re.sub(r"<td><code>[^<]*</code></td></tr>|\(e\.g\. [^)]*\)", "", h) for h in body]
    assert body[0] == body[1]  # tables, every plot's PNG, config differences, run ids, statuses, wall times


@pytest.mark.slow
def test_grpolab_table_plot_report_take_a_wandb_url(sources, tmp_path, monkeypatch, capsys):
    """The CLI picks the source from the argument; ``wandb.Api`` is the double (no server here)."""
    import wandb

    from sweeps.cli import main

    disk, _ = sources
    monkeypatch.setattr(wandb, "Api", lambda: OfflineWandbApi(disk.root))
    monkeypatch.chdir(tmp_path)
    url = f"wandb://{PROJECT}/{SWEEP_ID}"
    args = ["--metrics", "final_eval_accuracy,final_pass@k"]
    assert main(["table", str(disk.root), *args]) == 0
    from_disk = capsys.readouterr().out
    assert main(["table", url, *args]) == 0
    # the same table, less the noise split, which needs the per-prompt outcomes W&B does not hold
    assert "Noise in final eval accuracy" in from_disk
    assert capsys.readouterr().out == re.sub(r" Noise in final eval accuracy: [^\n]*", "", from_disk)
    assert main(["table", url, "--format", "all"]) == 0
    assert {p.name for p in (tmp_path / SWEEP_ID).iterdir()} == {"table.md", "table.tex", "table.csv"}
    assert main(["plot", url, "--metrics", "eval/accuracy"]) == 0
    assert (tmp_path / SWEEP_ID / "plots" / "eval_accuracy.png").stat().st_size > 0
    assert main(["report", url, "--out", str(tmp_path / "r.html")]) == 0
    assert "grpolab sweep report" in (tmp_path / "r.html").read_text()
    assert main(["table", "wandb://only-one-part"]) == 2
    assert "wandb://ENTITY/PROJECT/SWEEP_ID" in capsys.readouterr().err
