"""analysis.pairing_gain: the paired-t and Welch interval widths of each comparison, against scipy on
the runs' own summary values."""

import json

import numpy as np
import pytest
from scipy import stats

from analysis.pairing_gain import gain_rows, main
from analysis.synthetic import write_synthetic_sweep


def _values(sweep, metric):
    out = {}
    for summary in sorted((sweep / "runs").glob("*/summary.json")):
        meta = json.loads((summary.parent / "meta.json").read_text())
        kl = meta["swept"]["algorithm.kl.coef"]
        out.setdefault(float(kl), {})[meta["seed"]] = json.loads(summary.read_text())[metric]
    return out


def test_widths_equal_scipy_intervals(tmp_path, capsys):
    sweep = write_synthetic_sweep(tmp_path / "s", axes={"algorithm.kl.coef": [0.0, 0.1]}, seeds=range(4))
    _, rows = gain_rows(str(sweep), 0.02, ["final_reward"])
    ((cell, metric, test, _boot, w_t, w_u, ratio, seeds),) = rows
    vals = _values(sweep, "final_reward")
    seeds_ = sorted(vals[0.0])
    a, b = np.array([vals[0.1][s] for s in seeds_]), np.array([vals[0.0][s] for s in seeds_])
    lo, hi = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert w_t == pytest.approx(hi - lo, rel=1e-9)
    lo, hi = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert w_u == pytest.approx(hi - lo, rel=1e-9)
    assert ratio == pytest.approx(w_t / w_u) and cell == "algorithm.kl.coef=0.1" and test.startswith("paired-t")
    assert seeds is None or seeds >= 2
    assert main([str(sweep), "--metrics", "final_reward"]) == 0
    assert "Median width ratio, paired t / Welch t interval" in capsys.readouterr().out
