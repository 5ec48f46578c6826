"""Aggregates of run scores across tasks and their stratified bootstrap intervals, as rliable computes
them (Agarwal et al., 2021, "Deep Reinforcement Learning at the Edge of the Statistical Precipice",
arXiv:2108.13264; ``rliable.metrics`` and ``rliable.library``).

A *score set* is one 1-D array of run scores per task; tasks may have different numbers of runs
(rliable's ``[runs × tasks]`` matrix is the case where they are all equal). Every statistic takes
the per-task arrays with the runs on the last axis, so the same function gives the point estimate
(shape ``(n_t,)``) and all bootstrap replicates at once (shape ``(reps, n_t)``):

    IQM          25% trimmed mean of all runs of all tasks pooled (= rliable.metrics.aggregate_iqm)
    mean, median of the per-task means (= aggregate_mean, aggregate_median: each task weighs 1)
    P(X > Y)     per task, Mann-Whitney's U / (m n) = P(x > y) + ½ P(x = y) over all run pairs,
                 then the mean over tasks (= rliable.metrics.probability_of_improvement)
    profile(τ)   fraction of all runs with score > τ (= rliable.library.score_distributions)

Intervals: percentile intervals of the statistic over ``reps`` stratified resamples, each drawing
every task's runs with replacement within that task (the tasks themselves are fixed: the question is
what other seeds would have given on these tasks). This is rliable's ``StratifiedBootstrap`` (and,
for P(X > Y), ``StratifiedIndependentBootstrap``: each score set resampled independently), written
here because rliable's ``library`` cannot run beside pandas ≥ 3 (rliable 1.2.0 needs ``arch < 8``,
whose releases do not import under pandas 3; ``arch`` 8 dropped the ``random_state`` argument
rliable passes). The draws are rliable's, in its order: with ``np.random.seed(seed)`` before each
of rliable's calls, a rectangular score set gives the same interval to the last bit
(``tests/test_analysis_aggregate.py``). Statistics are vectorised over the replicates (no Python
loop per resample).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

LEVEL = 0.95
REPS = 2000  # as the table's paired bootstrap (and rliable's performance profiles)
SEED = 0  # a table is a function of its records

ScoreSet = Sequence[np.ndarray]  # one array of run scores per task


# ---------------------------------------------------------------- statistics (runs on the last axis)
def _matrix(parts: ScoreSet) -> tuple[np.ndarray, np.ndarray]:
    """The per-task arrays as rliable's ``[runs × tasks]`` matrix (``(..., max runs, tasks)``, 0
    where a task has no such run) and each task's run count."""
    parts = [np.asarray(p, dtype=float) for p in parts]
    counts = np.array([p.shape[-1] for p in parts])
    matrix = np.zeros((*parts[0].shape[:-1], counts.max(), len(parts)))
    for t, p in enumerate(parts):
        matrix[..., :counts[t], t] = p
    return matrix, counts


def pool(parts: ScoreSet) -> np.ndarray:
    """All runs of all tasks on one axis, run-major as rliable ravels its matrix (run 0 of every
    task, then run 1, ...; a task out of runs is skipped), so sums over the pool add in rliable's
    order and agree with it to the last bit."""
    matrix, counts = _matrix(parts)
    has_run = (np.arange(counts.max())[:, None] < counts[None, :]).ravel()
    return matrix.reshape(*matrix.shape[:-2], -1)[..., has_run]


def iqm(parts: ScoreSet) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% of all runs pooled over tasks (scipy's
    ``trim_mean(…, 0.25)``: ``int(0.25 N)`` runs cut from each end)."""
    from scipy.stats import trim_mean

    return trim_mean(pool(parts), 0.25, axis=-1)


def _task_means(parts: ScoreSet) -> np.ndarray:
    matrix, counts = _matrix(parts)  # summed down the runs axis, as rliable's np.mean(scores, axis=0)
    return matrix.sum(axis=-2) / counts


def mean_of_tasks(parts: ScoreSet) -> np.ndarray:
    """The mean over tasks of each task's mean score."""
    return np.mean(_task_means(parts), axis=-1)


def median_of_tasks(parts: ScoreSet) -> np.ndarray:
    """The median over tasks of each task's mean score."""
    return np.median(_task_means(parts), axis=-1)


def probability_of_improvement(x: ScoreSet, y: ScoreSet) -> np.ndarray:
    """P(X > Y): per task, the probability that a run of X scores above a run of Y, ties counting ½
    (the Mann-Whitney U of X over Y divided by m n), averaged over tasks."""
    per_task = []
    for xt, yt in zip(x, y):
        a, b = np.asarray(xt)[..., :, None], np.asarray(yt)[..., None, :]
        per_task.append(np.mean((a > b) + 0.5 * (a == b), axis=(-2, -1)))
    return np.mean(np.stack(per_task, axis=-1), axis=-1)


def score_distribution(parts: ScoreSet, taus) -> np.ndarray:
    """Performance profile: for each threshold τ, the fraction of all runs (tasks pooled) scoring
    above τ; shape ``(..., len(taus))``."""
    return np.mean(pool(parts)[..., :, None] > np.asarray(taus, dtype=float), axis=-2)


# ---------------------------------------------------------------- stratified bootstrap
def _resample(rs: np.random.RandomState, sets: Sequence[ScoreSet], reps: int) -> list[list[np.ndarray]]:
    """``reps`` stratified resamples of each score set: per replicate, for each set in turn, a
    ``[max runs × tasks]`` matrix of run indices drawn uniformly below each task's run count (what
    rliable draws with ``np.random.choice(n_runs, (n_runs, n_tasks))``), of which each task keeps
    the rows it has runs for. Returns per set the per-task arrays of shape ``(reps, n_t)``."""
    shapes, highs = [], []
    for parts in sets:
        counts = np.array([len(p) for p in parts])
        shapes.append((counts.max(), len(parts)))
        highs.append(np.broadcast_to(counts, shapes[-1]).ravel())
    draws = rs.randint(0, np.concatenate(highs), size=(reps, sum(h.size for h in highs)))
    out, start = [], 0
    for parts, shape in zip(sets, shapes):
        idx = draws[:, start:start + shape[0] * shape[1]].reshape(reps, *shape)
        start += shape[0] * shape[1]
        out.append([np.asarray(p, dtype=float)[idx[:, :len(p), t]] for t, p in enumerate(parts)])
    return out


def interval(statistic: Callable[..., np.ndarray], *sets: ScoreSet, reps: int = REPS, level: float = LEVEL,
             seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point estimate, lower, upper) of ``statistic(*sets)``: the ``level`` percentile interval
    over ``reps`` stratified resamples (``np.percentile``, linear interpolation, as ``arch``'s
    ``conf_int(method="percentile")`` that rliable calls). Every task of every set needs a run."""
    if any(len(p) == 0 for parts in sets for p in parts):
        raise ValueError("every task needs at least one run")
    point = np.asarray(statistic(*[[np.asarray(p, dtype=float) for p in parts] for parts in sets]))
    boot = np.asarray(statistic(*_resample(np.random.RandomState(seed), sets, reps)))
    alpha = (1 - level) / 2
    lo, hi = np.percentile(boot, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return point, lo, hi
