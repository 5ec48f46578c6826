"""The report's config differences per cell, its run list, the captions under tables and figures,
and ``--label`` across the report."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from analysis.records import DirSource, load_records
from analysis.report import main, render_report
from analysis.run_configs import cell_config, config_differences, flatten
from analysis.synthetic import write_synthetic_sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """grpo / ar / lopti × 2 seeds; ar and lopti switch on their own config blocks, and one lopti
    run failed (its status and wall time in the run list)."""
    root = write_synthetic_sweep(tmp_path_factory.mktemp("sections") / "s", axes={"variant": ["grpo", "ar", "lopti"]},
                                 seeds=range(2), steps=4, eval_every=2)
    for run in sorted((root / "runs").iterdir()):
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        variant = cfg["variant"]
        cfg["algorithm"] = {"ar": {"enabled": variant == "ar"}, "lopti": {"enabled": variant == "lopti", "eta": 0.3},
                            "lr": 1e-6}
        cfg["paths"] = {"run_dir": str(run)}  # per run by design: never a "difference"
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    failed = sorted((root / "runs").glob("*_s1"))[-1]
    summary = json.loads((failed / "summary.json").read_text())
    (failed / "summary.json").write_text(json.dumps({**summary, "status": "failed", "wall_time_s": 7.0}))
    return root


def test_cell_config_keeps_what_the_cells_runs_share():
    class Source:
        configs = {"a": {"seed": 1, "x": {"y": 2, "z": 3}, "paths": {"out": "a"}},
                   "b": {"seed": 2, "x": {"y": 2, "z": 4}}}

        def config(self, run_dir):
            return self.configs[run_dir]

    assert flatten(Source.configs["a"]) == {"seed": 1, "x.y": 2, "x.z": 3, "paths.out": "a"}
    assert cell_config(Source(), ["a", "b"]) == {"x.y": "2"}  # seeds, paths and x.z (differs) left out
    assert config_differences({"x.y": "2", "k": "1"}, {"x.y": "3"}) == {"k": ("—", "1"), "x.y": ("3", "2")}


def test_report_lists_each_cells_config_difference(sweep):
    html = render_report(DirSource(sweep))
    section = html[html.index("<h2>Cells"):html.index("<h2>Plots")]
    rows = dict(re.findall(r"<tr><th>variant=(\w+)</th><td class=\"cfg\">(.*?)</td></tr>", section))
    assert rows["grpo"] == "<i>baseline</i>"
    assert rows["ar"] == ("<code>algorithm.ar.enabled</code>: False → <b>True</b><br>"
                          "<code>variant</code>: grpo → <b>ar</b>")
    assert "<code>algorithm.lopti.enabled</code>: False → <b>True</b>" in rows["lopti"]
    assert "seed" not in section and "paths" not in section and "algorithm.lr" not in section


def test_report_lists_every_run(sweep):
    html = render_report(DirSource(sweep))
    runs = html[html.index("<h2>Runs</h2>"):]
    listed = re.findall(r"<tr(?: class=\"notdone\")?><td>([^<]+)</td><td>(\w+)</td><td>([^<]+)</td>"
                        r"<td><code>([^<]+)</code></td></tr>", runs)
    df = load_records(sweep)
    assert [r[0] for r in listed] == list(df["run_id"]) and len(listed) == 6
    failed = [r for r in listed if r[1] == "failed"]
    assert len(failed) == 1 and failed[0][2] == "7 s" and failed[0][3] == f"runs/{failed[0][0]}"
    assert runs.count('class="notdone"') == 1 and "<details open>" in runs


def test_captions_under_each_table_and_figure(sweep):
    html = render_report(DirSource(sweep))
    first = html[html.index("<h2>Ablation table"):html.index("<h2>pass@k")]
    assert first.index("</table>") < first.index("<b>Table 1.</b>") < first.index('<p class="notes">')
    assert "<b>Table 1.</b> Final metrics per cell (variant): mean ± 95% CI over seeds, and the difference " \
           "from the baseline cell variant=grpo." in first
    figures = re.findall(r"<figure>(.*?)</figure>", html, flags=re.S)
    assert len(figures) == 7
    for i, fig in enumerate(figures, start=1):
        assert fig.startswith('<img src="data:image/png;base64,') and f"<figcaption><b>Figure {i}.</b>" in fig
    assert "the baseline cell (variant=grpo) is black and thicker" in figures[0]


def test_report_labels_and_refusal(sweep, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main([str(sweep), "--out", str(out), "--label", "variant=method,final_eval_accuracy=Accuracy",
                 "--label", "eval/accuracy=Eval accuracy"]) == 0
    html = out.read_text()
    assert "<th>method</th>" in html and "<th>Accuracy</th>" in html and "<tr><th>method=ar</th>" in html
    assert "<b>Figure 1.</b> Eval accuracy: per cell" in html
    capsys.readouterr()
    assert main([str(sweep), "--out", str(out), "--label", "nope=X"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --label nope=X: unknown key 'nope'; valid: variant, warmstart_eval_accuracy, ")
    assert "eval/accuracy" in err and len(err.splitlines()) == 1


def test_report_dry_run_checks_labels(sweep, capsys):
    assert main([str(sweep), "--dry-run", "--label", "eval/accuracy=Accuracy"]) == 0
    assert capsys.readouterr().out.startswith("dry run: grpolab report would read the 6 run records")
    assert main([str(sweep), "--dry-run", "--label", "nope=X"]) == 2
    assert capsys.readouterr().err.startswith("error: --label nope=X: unknown key 'nope'; valid: variant, ")
