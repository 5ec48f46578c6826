"""Power and seeds: for each comparison of an ablation table (cell × metric vs the baseline), the
smallest difference the present seeds can detect, the power they have for a difference Δ that
matters, and the seeds that Δ needs.

The table's test decides the model (``analysis.summary``; Colas et al., 2018, "How many random
seeds?", arXiv:1806.08295; Miller, 2024, "Adding error bars to evals", arXiv:2411.00640):

    paired (t or sign flip): d_s = cell − baseline within seed s, s = SD(d_s) over the n shared seeds
        power = TTestPower: one-sample t on d_s, effect size Δ / s, n seeds, n − 1 dof (noncentral t)
    Welch (unpaired):        s_p² = ((n₁ − 1) s₁² + (n₂ − 1) s₂²) / (n₁ + n₂ − 2)
        power = TTestIndPower: two-sample t, effect size Δ / s_p, n₁ and n₂ runs (planned: equal seeds)

both two-sided at the planning level α′ = α / m over the m comparisons the table corrects (the
Bonferroni level, which is Holm's first step: Holm rejects everything Bonferroni rejects, and BH
everything Holm does, so the figures are conservative for either; α′ = α for ``--correction none``).

    power at n   = ttest_power(Δ / s, n, α′)             (statsmodels; TTestPower.power returns it)
    MDE          = s · the effect whose power at n is 1 − β (Brent's root of the same function)
    seeds needed = the smallest integer n ≥ 2 with power(Δ / s, n, α′) ≥ 1 − β

The power function is statsmodels' (``statsmodels.stats.power.ttest_power``, the function behind
``TTestPower`` and ``TTestIndPower``); written here are the root and integer searches on it (not
``solve_power``, which returns wrong roots where scipy's noncentral t fails), the upper-tail fallback
for those NaNs (``t_power``) and the sign-flip floor. The exact sign-flip test cannot give p below
2 / 2^n, so it needs 2 / 2^n < α′ before any effect is detectable; above that floor it is planned as
the paired t (its large-sample equivalent). ``tests/test_analysis_power.py`` checks the predicted power
against the simulated rejection rate of the table's own pipeline (``analysis.simulate``), and the
figures against ``solve_power`` where that is right, against the normal approximation and against a
Monte-Carlo t-test where statsmodels' power is NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import optimize, special
from statsmodels.stats.power import ttest_power

from analysis import render
from analysis.cells import same_value

NA = render.NA

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 100_000  # beyond this the seeds needed are shown as "> 100000"
NEEDS_SEEDS = "needs ≥ 2 seeds to estimate the spread"
NO_TEST_AT_N = "fewer than 2 seeds: no test at the present n"
NO_SPREAD = "no spread: the differences do not vary over the seeds (give --sd to plan)"


def planning_alpha(alpha: float, comparisons: int, correction: str = "holm") -> float:
    """The per-comparison level the planner uses: ``alpha / comparisons`` (Bonferroni; Holm's first
    step, conservative for Holm and BH), ``alpha`` without a correction or with one comparison."""
    return alpha if correction == "none" or comparisons <= 1 else alpha / comparisons


def sign_flip_min_seeds(alpha: float) -> int:
    """The fewest seeds whose exact sign-flip test can reject at ``alpha``: smallest p = 2 / 2^n < alpha."""
    n = 1
    while 2 / 2 ** n >= alpha:
        n += 1
    return n


@dataclass
class Plan:
    """The planner's figures for one comparison; NaN / None where ``missing`` says what is lacking."""

    mde: float = math.nan  # minimum detectable |Δ| at the present n (inf: the test cannot reject at n)
    power: float = math.nan  # power at the present n for the planned Δ
    seeds: int | None = None  # seeds per cell the planned Δ needs (None: unknown; MAX_SEEDS + 1: more)
    missing: str = ""
    note: str = ""


def t_power(es: float, nobs: float, alpha: float, df: float) -> float:
    """Two-sided power of a t-test at standardized effect ``es`` (noncentrality es·√nobs, ``df`` degrees
    of freedom): statsmodels' ``ttest_power`` (what ``TTestPower.power`` and ``TTestIndPower.power``
    return). Where it is NaN (scipy's noncentral-t cdf fails far in the lower tail, where that tail
    is below 1e-14: e.g. n = 3, α = 0.0005, effect 5.5) the upper tail alone, 1 − F_nct(t_{1−α/2})."""
    p = float(ttest_power(es, nobs, alpha, df=df))
    if math.isfinite(p):
        return p
    return float(1 - special.nctdtr(df, es * math.sqrt(nobs), special.stdtrit(df, 1 - alpha / 2)))


def _z(q: float) -> float:
    return float(special.ndtri(q))


def _min_effect(power_at, alpha: float, target: float, nobs: float) -> float:
    """The standardized effect whose power is ``target``: the root of ``power_at`` (rising in the effect)
    by Brent's method, bracketed from the normal approximation (z_{1−α/2} + z_target) / √nobs. Not
    statsmodels' ``solve_power``: where its power is NaN it returns a wrong root instead of failing."""
    if target <= alpha:  # the null itself rejects that often
        return 0.0
    hi = 2 * (_z(1 - alpha / 2) + _z(target)) / math.sqrt(nobs)
    while power_at(hi) < target:
        hi *= 2
    return float(optimize.brentq(lambda es: power_at(es) - target, 0.0, hi, xtol=1e-10))


def _smallest_n(power_at, target: float, es: float, alpha: float, floor: int, per_group: float = 1.0) -> int:
    """The smallest integer n ≥ ``floor`` with ``power_at(n) ≥ target`` (power rises with n), searched
    from the normal approximation n ≈ per_group·((z_{1−α/2} + z_target) / es)² + z²_{1−α/2}/2 (the t's
    extra seeds): checked at the integers, then widened and bisected where it is off."""
    if power_at(floor) >= target:
        return floor
    guess = per_group * ((_z(1 - alpha / 2) + _z(target)) / es) ** 2 + _z(1 - alpha / 2) ** 2 / 2
    lo, hi = floor, min(MAX_SEEDS, max(floor + 1, math.ceil(guess)))
    while power_at(hi) < target:
        if hi >= MAX_SEEDS:
            return MAX_SEEDS + 1
        lo, hi = hi, min(MAX_SEEDS, 2 * hi)
    if hi - 1 > lo and power_at(hi - 1) < target:  # the guess, rounded up: the usual case
        return hi
    while hi - lo > 1:  # power_at(lo) < target ≤ power_at(hi)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power_at(mid) >= target else (mid, hi)
    return hi


def plan_paired(sd: float, n: int, delta: float | None, alpha: float, power: float = POWER,
                min_seeds: int = 2) -> Plan:
    """Paired t on the per-seed differences (SD ``sd`` over ``n`` seeds) at the level ``alpha``
    (already corrected). ``min_seeds``: the test's floor (``sign_flip_min_seeds`` for the sign flip)."""
    out = Plan()
    if not math.isfinite(sd):
        out.missing = NEEDS_SEEDS
        return out
    if sd <= 0:
        out.missing = NO_SPREAD
        return out
    if n < 2:
        out.note = NO_TEST_AT_N
    elif n < min_seeds:
        out.mde, out.power = math.inf, 0.0
        out.note = f"the exact sign flip needs ≥ {min_seeds} seeds to reach α′"
    else:
        out.mde = sd * _min_effect(lambda es: t_power(es, n, alpha, n - 1), alpha, power, n)
        if delta is not None:
            out.power = t_power(delta / sd, n, alpha, n - 1)
    if delta is not None:
        es = delta / sd
        out.seeds = _smallest_n(lambda k: t_power(es, k, alpha, k - 1), power, es, alpha, max(2, min_seeds))
    return out


def pooled_sd(sd_a: float, n_a: int, sd_b: float, n_b: int) -> float:
    """The pooled two-sample SD (what TTestIndPower's effect size divides by)."""
    return math.sqrt(((n_a - 1) * sd_a ** 2 + (n_b - 1) * sd_b ** 2) / (n_a + n_b - 2))


def two_sample_power(es: float, n_a: float, n_b: float, alpha: float) -> float:
    """``TTestIndPower().power(es, nobs1=n_a, ratio=n_b / n_a, alpha)``: the pooled two-sample t, via
    ``t_power`` with nobs = 1 / (1/n_a + 1/n_b) and n_a + n_b − 2 degrees of freedom."""
    return t_power(es, 1 / (1 / n_a + 1 / n_b), alpha, n_a + n_b - 2)


def plan_unpaired(sd_cell: float, n_cell: int, sd_base: float, n_base: int, delta: float | None, alpha: float,
                  power: float = POWER) -> Plan:
    """Two-sample t (the Welch rows, planned with the pooled SD) at the level ``alpha``; the seeds
    needed are per cell with every cell run on as many seeds."""
    out = Plan()
    if not (math.isfinite(sd_cell) and math.isfinite(sd_base)):
        out.missing = NEEDS_SEEDS + " of each cell"
        return out
    if sd_cell <= 0 and sd_base <= 0:
        out.missing = NO_SPREAD
        return out
    if n_cell >= 2 and n_base >= 2:
        sd = pooled_sd(sd_cell, n_cell, sd_base, n_base)
        out.mde = sd * _min_effect(lambda es: two_sample_power(es, n_cell, n_base, alpha), alpha, power,
                                   1 / (1 / n_cell + 1 / n_base))
        if delta is not None:
            out.power = two_sample_power(delta / sd, n_cell, n_base, alpha)
    else:
        out.note = NO_TEST_AT_N
    if delta is not None:
        es = delta / math.sqrt((sd_cell ** 2 + sd_base ** 2) / 2)  # equal seeds per cell: the pooled SD
        out.seeds = _smallest_n(lambda k: two_sample_power(es, k, k, alpha), power, es, alpha, 2, per_group=2.0)
    return out


def sd_interval(n: int, level: float = 0.95) -> tuple[float, float]:
    """Where the true SD lies relative to an SD estimated from ``n`` normal values: the ``level``
    χ² interval factors (√((n−1)/χ²_{hi}), √((n−1)/χ²_{lo})), n − 1 dof."""
    from scipy.stats import chi2

    dof = n - 1
    return (math.sqrt(dof / chi2.ppf((1 + level) / 2, dof)), math.sqrt(dof / chi2.ppf((1 - level) / 2, dof)))


# ---------------------------------------------------------------- a table's comparisons
TEST_NAME = {"paired-t": "paired t", "sign-flip": "sign flip", "welch": "Welch"}


@dataclass
class PlanRow:
    """One comparison of the table (a cell × metric vs the baseline) and its plan. Paired rows:
    ``n`` shared seeds, ``sd`` of the per-seed differences; Welch rows: ``n`` / ``n_base`` runs, ``sd`` /
    ``sd_base`` the cells' SDs. ``sd_given``: ``sd`` is ``--sd``, not estimated."""

    cell: dict
    metric: str
    test: str
    pairing: str
    n: int
    n_base: int
    sd: float
    sd_base: float
    delta_observed: float
    delta: float | None
    plan: Plan
    sd_given: bool = False

    @property
    def paired(self) -> bool:
        return self.test != "welch"


@dataclass
class PowerTable:
    rows: list
    keys: list
    baseline: dict
    alpha: float
    alpha_planning: float
    comparisons: int
    correction: str
    power: float
    comparisons_given: bool = False


def _for(metric: str, values: dict | None):
    """A per-metric option (``--delta``, ``--sd``): {metric or None (every metric): value}."""
    if not values:
        return None
    return values.get(metric, values.get(None))


def plan_table(summary, deltas: dict | None = None, power: float = POWER, alpha: float = ALPHA,
               sds: dict | None = None, comparisons: int | None = None) -> PowerTable:
    """The plan of every comparison of ``summary`` (``analysis.summary.summarize``; its ``test`` and
    ``correction`` decide each row's model and the planning level). ``deltas`` / ``sds``: {metric or
    None: value}. ``comparisons``: the family size m (default: the table's comparisons with a spread,
    those ``grpolab table`` corrects over once every cell has ≥ 2 seeds)."""
    a = summary.attrs
    keys, metrics, base = a["group_keys"], a["metrics"], a.get("baseline")
    if not base:
        raise ValueError("power needs a baseline cell to compare with (not --baseline none)")
    is_base = [all(same_value(r[k], base[k]) for k in keys) for _, r in summary.iterrows()]
    base_row = summary[is_base].iloc[0]
    pending = []
    for (_, r), skip in zip(summary.iterrows(), is_base):
        if skip:
            continue
        for m in metrics:
            test = r[f"{m}/test"]
            if not test:  # no runs with this metric in the cell or the baseline
                continue
            given = _for(m, sds)
            if test == "welch" and given and a.get("test") == "auto":
                # Welch only for want of 2 shared seeds: the table pairs once the cells share them
                test, n = "paired-t", min(1, int(r[f"{m}/n"]), int(base_row[f"{m}/n"]))
                pending.append((r, m, test, "seed", n, n, float(given), float(given), True))
                continue
            if test == "welch":
                n, n_base = int(r[f"{m}/n"]), int(base_row[f"{m}/n"])
                sd, sd_base = (given, given) if given else (r[f"{m}/std"], base_row[f"{m}/std"])
            else:
                n = n_base = int(r[f"{m}/pairs"])
                sd = sd_base = given if given else r[f"{m}/sd_diff"]
            pending.append((r, m, test, r[f"{m}/pairing"], n, n_base, float(sd), float(sd_base), bool(given)))
    spread = [p for p in pending if not (p[6] == 0 and p[7] == 0)]
    m_family = comparisons or max(1, len(spread))
    level = planning_alpha(alpha, m_family, a.get("correction", "holm"))
    floor = sign_flip_min_seeds(level)
    rows = []
    for r, m, test, pairing, n, n_base, sd, sd_base, given in pending:
        delta = _for(m, deltas)
        plan = plan_unpaired(sd, n, sd_base, n_base, delta, level, power) if test == "welch" else \
            plan_paired(sd, n, delta, level, power, floor if test == "sign-flip" else 2)
        rows.append(PlanRow({k: r[k] for k in keys}, m, test, pairing, n, n_base, sd, sd_base,
                            float(r[f"{m}/delta"]), delta, plan, given))
    return PowerTable(rows, keys, base, alpha, level, m_family, a.get("correction", "holm"), power,
                      comparisons is not None)


# ---------------------------------------------------------------- rendering

