"""Adaptive seeding without inflating the false-positive rate: a group-sequential rule for the table.

``grpolab sweep --until-resolved --max-seeds N`` looks at the table after each round of seeds and
adds seeds only to the cells whose Δ vs the baseline is not yet significant. Testing every look at
the full α would mark a null difference far more often than α (each look is another chance). The
rule (Bonferroni over the planned looks, Holm within a look):

    L       = 1 + ceil((N − n₀) / K)     planned looks: n₀ declared seeds, K added per round, N at most
    n_l     = min(n₀ + (l − 1) K, N)     seeds at look l: the same seed list for every cell (seed i is
                                         seed i of every cell), so each look's test is a fixed-n test
    look l: Holm's step-down at level α / L over the comparisons not declared before l; a comparison
            that got no seeds at look l (stopped) counts with p = 1
    a comparison declared at some look stays declared; one still open at look L stays unresolved

Why it holds the family-wise error rate at α (any dependence between comparisons and looks): let T
be the true nulls. Before the first false declaration every declared comparison is a false null,
so at that look all of T are still in the family and Holm's first rejection of one of T needs
min_{j∈T} p_{j,l} < α / (L |T|), where p_{j,l} is the test on the first n_l seeds of cell j and the
baseline, a fixed-n p-value. By the union bound over T and over the L looks,
P(any false declaration) ≤ Σ_l |T| · α / (L |T|) = α. It is conservative (Jennison & Turnbull,
2000, "Group Sequential Methods with Applications to Clinical Trials", ch. 2 and 15: Bonferroni
boundaries are valid but wider than Pocock's or O'Brien–Fleming's, whose constants assume normal
statistics with known variance; the paired t over a few seeds is far from that). Comparisons of
other metrics, and of a table laid out other than the sweep's own, are tested once, on all their
seeds, with Holm at α / L: each such comparison's shared seeds are those of one of the L looks (two
cells that stopped at looks a and b share the seeds of look min(a, b)), so the same union bound holds;
a layout that pools cells (fewer row/column keys than the sweep swept) is not covered (the caption says so).

The sweep records its design and looks in ``<sweep>/adaptive.json`` (:class:`AdaptiveDesign`), so
``grpolab table`` applies the same rule later. ``adjusted_p`` gives the table's p_adj: the smallest
α at which the rule declares the comparison (``*`` < 0.05, ``**`` < 0.01 as elsewhere).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ADAPTIVE_FILE = "adaptive.json"
ALPHA = 0.05


@dataclass
class AdaptiveDesign:
    """What ``--until-resolved`` planned (fixed before the first look) and the looks it has made."""

    metric: str
    declared: list[int]  # seeds of the first look
    max_seeds: int
    step: int
    alpha: float = ALPHA
    baseline: dict = field(default_factory=dict)  # the baseline cell's swept values
    looks_done: list[dict] = field(default_factory=list)  # per look: seeds, unresolved cells

    @property
    def looks(self) -> int:
        """L, the planned maximum number of looks."""
        return 1 + math.ceil(max(0, self.max_seeds - len(self.declared)) / self.step)

    def seeds_at(self, look: int) -> list[int]:
        """The seeds every open cell (and the baseline) has at look ``look`` (1-based)."""
        n0 = len(self.declared)
        extra = self.max_seeds - n0
        start = max(self.declared) + 1 if self.declared else 0
        added = [start + i for i in range(max(0, min((look - 1) * self.step, extra)))]
        return list(self.declared) + added

    def same_plan(self, other: "AdaptiveDesign") -> bool:
        return (self.metric, list(self.declared), self.max_seeds, self.step, self.alpha) == \
            (other.metric, list(other.declared), other.max_seeds, other.step, other.alpha)

    def to_json(self) -> dict:
        return {"version": 1, "rule": "bonferroni-over-looks+holm", **asdict(self), "planned_looks": self.looks}

    @classmethod
    def from_json(cls, data) -> "AdaptiveDesign | None":
        try:
            return cls(str(data["metric"]), [int(s) for s in data["declared"]], int(data["max_seeds"]),
                       int(data["step"]), float(data.get("alpha", ALPHA)), dict(data.get("baseline") or {}),
                       list(data.get("looks_done") or []))
        except (KeyError, TypeError, ValueError):
            return None


def read_design(sweep_dir) -> AdaptiveDesign | None:
    """The sweep's ``adaptive.json``; None when the sweep was not adaptive (or the file is unreadable)."""
    path = Path(sweep_dir) / ADAPTIVE_FILE
    try:
        return AdaptiveDesign.from_json(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- the rule
def sequential_rejections(p, looks: int, alpha: float = ALPHA) -> np.ndarray:
    """Look at which each comparison is declared (1-based; 0 = never), under the rule above.

    ``p``: [..., looks made, comparisons] p-values, NaN where a comparison was not tested at that look
    (it counts as p = 1 while still open). Vectorised over leading axes (the simulation study)."""
    p = np.asarray(p, dtype=float)
    *lead, n_looks, m = p.shape
    declared_at = np.zeros((*lead, m), dtype=int)
    level = alpha / looks
    for look in range(n_looks):
        open_ = declared_at == 0
        q = np.where(np.isfinite(p[..., look, :]), p[..., look, :], 1.0)
        q = np.where(open_, q, np.inf)  # declared before: out of the family, sorted last
        size = open_.sum(-1, keepdims=True)  # family size at this look
        order = np.argsort(q, axis=-1, kind="stable")
        ranked = np.take_along_axis(q, order, -1)
        thresholds = level / np.maximum(size - np.arange(m), 1)  # Holm: α_l / (m_l − i), i = 0, 1, ...
        passed = np.cumprod(ranked < thresholds, axis=-1).astype(bool)  # step-down: stop at the first fail
        rejected = np.empty_like(passed)
        np.put_along_axis(rejected, order, passed, -1)
        declared_at = np.where(open_ & rejected, look + 1, declared_at)
    return declared_at


def adjusted_p(p, looks: int, tol: float = 1e-10) -> np.ndarray:
    """Per comparison, the smallest α at which the rule declares it (1 when none ≤ 1 does), by bisection
    (the rule is monotone in α: a larger α declares more, earlier, leaving smaller families)."""
    p = np.asarray(p, dtype=float)
    m = p.shape[-1]
    out = np.ones(m)
    for j in range(m):
        if not sequential_rejections(p, looks, 1.0)[j]:
            continue
        lo, hi = 0.0, 1.0
        while hi - lo > tol:
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if sequential_rejections(p, looks, mid)[j] else (mid, hi)
        out[j] = hi
    return out


def naive_rejections(p, alpha: float = ALPHA) -> np.ndarray:
    """Peeking at full α: Holm at α at every look, declared once declared (the negative control)."""
    return sequential_rejections(p, 1, alpha)


def caption(design: AdaptiveDesign, own_layout: bool, pooled: bool = False) -> str:
    """The caption's account of the marks of an adaptive sweep's table."""
    done, n_looks = len(design.looks_done), design.looks
    seeds = [len(design.seeds_at(k)) for k in range(1, n_looks + 1)]
    text = (f"* p < 0.05, ** p < 0.01 two-sided under the adaptive-seeding rule: seeds were added to unresolved "
            f"cells in rounds ({done} of at most {n_looks} looks, at {', '.join(map(str, seeds))} seeds), each "
            f"look testing at α/{n_looks} with Holm's step-down correction over the comparisons still open "
            f"(Bonferroni over looks; family-wise error rate ≤ α; conservative)")
    if own_layout:
        return text + f"; {design.metric} decided the rounds, the other metrics are tested once at α/{n_looks}"
    text += f"; this layout is not the sweep's own, so every comparison is tested once at α/{n_looks}"
    return text + (" (its cells pool cells that stopped at different looks: the bound is not proven for them; "
                   "exploratory)" if pooled else "")


# ---------------------------------------------------------------- the table
def _rows_of(frame: pd.DataFrame, keys: list):
    return [dict(zip(keys, row)) for row in frame[keys].itertuples(index=False, name=None)]


def _matches(cell: dict, values: dict) -> bool:
    from analysis.cells import same_value

    return all(same_value(values.get(k), v) for k, v in cell.items())


def look_p_values(summary: pd.DataFrame, df: pd.DataFrame, design: AdaptiveDesign, keys: list, test: str,
                  prompts: dict | None, looks_made: int) -> np.ndarray:
    """p [looks, rows of ``summary``] of design.metric vs the baseline: at look l, the table's test on
    the runs with seeds of look l; NaN where a cell got no new completed seed at that look."""
    from analysis.summary import summarize

    cells = _rows_of(summary, keys)
    done = df[df["status"] == "completed"]
    seeds_of = [set(done.loc[[_matches(c, r) for r in _rows_of(done, keys)], "seed"]) if len(done) else set()
                for c in cells]
    out = np.full((looks_made, len(cells)), np.nan)
    for look in range(1, looks_made + 1):
        at = design.seeds_at(look)
        new = set(at) - (set(design.seeds_at(look - 1)) if look > 1 else set())
        sub = df[df["seed"].isin(at)]
        sub.attrs.update(df.attrs)
        s = summarize(sub, [design.metric], keys, baseline=design.baseline or None, test=test, correction="none",
                      prompts=prompts, n_boot=0)
        for row, p in zip(_rows_of(s, keys), s[f"{design.metric}/p"]):
            i = next((i for i, c in enumerate(cells) if _matches(c, row)), None)
            if i is not None and seeds_of[i] & new:
                out[look - 1, i] = p
    return out


def apply_rule(summary: pd.DataFrame, df: pd.DataFrame, design: AdaptiveDesign, test: str,
               prompts: dict | None) -> pd.DataFrame:
    """``summary`` with its ``p_adj`` replaced by the adaptive rule's and ``attrs["sequential"]`` set:
    the sweep's own layout (its cells, its baseline) gets the rule over the recorded looks on
    design.metric; every other comparison is tested once with Holm at α / L."""
    a = summary.attrs
    keys, metrics, n_looks = list(a["group_keys"]), list(a["metrics"]), design.looks
    base = a.get("baseline") or {}
    own = (design.metric in metrics and set(keys) == set(design.baseline) and bool(base)
           and _matches(design.baseline, base))
    summary = summary.copy()
    summary.attrs.update(a)
    once = [(i, m) for m in metrics for i in range(len(summary))
            if np.isfinite(summary.at[i, f"{m}/p"]) and not (own and m == design.metric)]
    if own:
        p = look_p_values(summary, df, design, keys, test, prompts, max(1, len(design.looks_done)))
        col = f"{design.metric}/p_adj"
        summary[col] = np.nan
        tested = [i for i in range(p.shape[1]) if np.isfinite(p[:, i]).any()]
        for i, value in zip(tested, adjusted_p(p[:, tested], n_looks)):
            summary.at[i, col] = float(value)
    if once:
        from analysis.multiplicity import adjust

        adj = np.minimum(1.0, n_looks * adjust([summary.at[i, f"{m}/p"] for i, m in once], "holm"))
        for (i, m), value in zip(once, adj):
            summary.at[i, f"{m}/p_adj"] = float(value)
    summary.attrs["sequential"] = caption(design, own, pooled=set(keys) != set(design.baseline))
    return summary


def for_source(source, summary: pd.DataFrame, df: pd.DataFrame, test: str, correction: str,
               prompts: dict | None) -> pd.DataFrame:
    """The table's summary under the adaptive rule when ``source`` is an adaptive sweep's dir (its
    ``adaptive.json``) and the correction is Holm's; unchanged otherwise (with ``--correction bh`` or
    ``none`` the caption says the looks are ignored)."""
    root = getattr(source, "root", None)
    design = read_design(root) if root is not None else None
    if design is None or not summary.attrs.get("baseline"):
        return summary
    if correction != "holm":
        summary.attrs["sequential_ignored"] = True
        return summary
    return apply_rule(summary, df, design, test, prompts)


def decide(sweep_dir, design: AdaptiveDesign, looks_made: int, test: str = "auto") -> list[dict]:
    """The cells (swept values) whose comparison with the baseline on design.metric is still open
    after ``looks_made`` looks of the sweep in ``sweep_dir``: what the next round adds seeds to."""
    from analysis.history import add_history_metrics
    from analysis.outcomes import prompt_outcomes
    from analysis.records import DirSource
    from analysis.summary import summarize

    source = DirSource(sweep_dir)
    df = source.runs()
    keys = list(df.attrs["swept_keys"])
    if design.metric not in df.columns:
        if not (df["status"] == "completed").any():
            return [c for c in _rows_of(df.drop_duplicates(keys), keys) if not _matches(design.baseline, c)]
        df = add_history_metrics(df, [design.metric], source)
    prompts = prompt_outcomes(source, df, [design.metric])
    summary = summarize(df, [design.metric], keys, baseline=design.baseline, correction="none", prompts=prompts,
                        n_boot=0, test=test)
    p = look_p_values(summary, df, design, keys, test, prompts, looks_made)
    declared = sequential_rejections(np.where(np.isfinite(p), p, np.nan), design.looks, design.alpha)
    planned = _rows_of(df.drop_duplicates(keys), keys)
    found = _rows_of(summary, keys)
    out = []
    for cell in planned:
        if _matches(design.baseline, cell):
            continue
        i = next((i for i, c in enumerate(found) if _matches(c, cell)), None)
        if i is None or declared[i] == 0:
            out.append(cell)
    return out
