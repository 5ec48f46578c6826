"""Choosing a reward-balanced update batch: which whole units (groups or single rollouts) to take so
that min(N+, N−)/|B| ≥ ρ (cancellation paper, arXiv 2605.08666, Sec. 4; docs/algorithms.md §5.6).

``select_balanced`` is exact: it finds a selection whenever one exists, preferring the oldest
units. A pure function of index tensors; ``trainer.variants.reward_balanced`` keeps the buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

_EPS = 1e-9  # ρ·|B| is compared as ceil(ρ·|B| − _EPS) so 0.3·10 does not become 4


def required_per_sign(min_frac: float, size: int) -> int:
    """The smallest count a satisfying N± ≥ ρ·|B| for |B| = size."""
    return max(0, math.ceil(min_frac * size - _EPS))


# ------------------------------------------------------------------ selection
@dataclass
class _Units:
    """Per-unit totals, in preference order (oldest first)."""

    members: list[torch.Tensor]  # rollout indices of each unit
    size: list[int]
    pos: list[int]
    neg: list[int]


def _units(pos, neg, unit_ids, steps, generator) -> _Units:
    uniq, _, inverse = first_appearance(unit_ids)
    n_units = uniq.numel()
    size = torch.bincount(inverse, minlength=n_units)
    p = torch.bincount(inverse, weights=pos.double(), minlength=n_units).long()
    q = torch.bincount(inverse, weights=neg.double(), minlength=n_units).long()
    if steps is None:
        order = torch.arange(n_units)  # inverse is already in first-appearance order
    else:
        unit_step = torch.full((n_units,), torch.iinfo(torch.long).max, dtype=torch.long)
        unit_step = unit_step.scatter_reduce(0, inverse, steps.long(), reduce="amin")
        # ties within a step are broken at random, so no prompt position is favoured
        order = torch.randperm(n_units, generator=generator)
        order = order[torch.sort(unit_step[order], stable=True).indices]
    by_unit = torch.argsort(inverse, stable=True).split(size.tolist())
    members = [by_unit[u] for u in order.tolist()]
    return _Units(members, size[order].tolist(), p[order].tolist(), q[order].tolist())


def first_appearance(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unique ids in order of first appearance, their first index, and each element's unit index."""
    uniq, inv = torch.unique(ids, return_inverse=True)
    first = torch.full((uniq.numel(),), ids.numel(), dtype=torch.long).scatter_reduce(
        0, inv, torch.arange(ids.numel()), reduce="amin"
    )
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(first.numel())
    return uniq[torch.argsort(first)], torch.sort(first).values, rank[inv]


class _SizeOneOracle:
    """Feasibility of completing a selection from units i.. when every unit is one rollout:
    take the needed positives and negatives, fill the rest with anything."""

    def __init__(self, u: _Units):
        k = len(u.size)
        self.cp, self.cn, self.ct = [0] * (k + 1), [0] * (k + 1), [0] * (k + 1)
        for i in range(k - 1, -1, -1):
            self.cp[i] = self.cp[i + 1] + u.pos[i]
            self.cn[i] = self.cn[i + 1] + u.neg[i]
            self.ct[i] = self.ct[i + 1] + 1

    def __call__(self, i: int, t: int, need_p: int, need_n: int) -> bool:
        need_p, need_n = max(need_p, 0), max(need_n, 0)
        return need_p <= self.cp[i] and need_n <= self.cn[i] and need_p + need_n <= t <= self.ct[i]

    def largest(self, min_frac: float) -> int:
        for t in range(self.ct[0], 0, -1):
            a = required_per_sign(min_frac, t)
            if self(0, t, a, a):
                return t
        return 0


def _reach(size: int, p: int, n: int, table: torch.Tensor, cap: int) -> torch.Tensor:
    """One knapsack step on R[t][q] = max min(N−, cap) over subsets of total size t with N+ ≥ q
    (−1: none): either skip the unit or take it (the rest then needs N+ ≥ q − p)."""
    out = table.clone()
    if size < table.shape[0]:
        cols = (torch.arange(table.shape[1]) - p).clamp(min=0)
        src = table[: table.shape[0] - size][:, cols]
        took = torch.where(src >= 0, (src + n).clamp(max=cap), torch.full_like(src, -1))
        out[size:] = torch.maximum(out[size:], took)
    return out


def _empty_table(t_max: int, cap: int) -> torch.Tensor:
    table = torch.full((t_max + 1, cap + 1), -1, dtype=torch.int32)
    table[0, 0] = 0
    return table


class _KnapsackOracle:
    """Exact feasibility for units of any size: suffix tables R_i over units i.. (see ``_reach``),
    sizes measured in multiples of their gcd. O(units · size/gcd · ρ·size) time and memory."""

    def __init__(self, u: _Units, target: int, cap: int, unit: int):
        self.unit = unit
        t_max = target // unit
        tables = [_empty_table(t_max, cap)]
        for s, p, n in zip(reversed(u.size), reversed(u.pos), reversed(u.neg)):
            tables.append(_reach(s // unit, p, n, tables[-1], cap))
        self.tables = tables[::-1]
        self.cap = cap

    def __call__(self, i: int, t: int, need_p: int, need_n: int) -> bool:
        if t < 0 or t % self.unit:
            return False
        table = self.tables[i]
        t //= self.unit
        return t < table.shape[0] and int(table[t, min(max(need_p, 0), self.cap)]) >= max(need_n, 0)


def _largest_feasible(u: _Units, min_frac: float, unit: int) -> int:
    """The largest |B| (a multiple of ``unit``) with a selection meeting min(N+,N−) ≥ ρ|B|."""
    total = sum(u.size)
    cap = required_per_sign(min_frac, total)
    table = _empty_table(total // unit, cap)
    for s, p, n in zip(u.size, u.pos, u.neg):
        table = _reach(s // unit, p, n, table, cap)
    for t in range(total // unit, 0, -1):
        a = required_per_sign(min_frac, t * unit)
        if int(table[t, a]) >= a:
            return t * unit
    return 0


def select_balanced(
    pos: torch.Tensor,
    neg: torch.Tensor,
    unit_ids: torch.Tensor,
    min_frac: float,
    target_size: Optional[int],
    generator: Optional[torch.Generator] = None,
    *,
    steps: Optional[torch.Tensor] = None,
) -> Optional[torch.Tensor]:
    """Indices (ascending) of whole units forming an update batch B with min(N+,N−)/|B| ≥ ρ.

    pos, neg: [B] bool, never both true; a rollout with neither still counts in |B| (an excluded
        zero-advantage rollout). unit_ids: [B] long, the rollouts sharing an id are taken together.
    min_frac: ρ ∈ (0, 0.5]. The check is N± ≥ ⌈ρ|B|⌉ (with a 1e-9 tolerance on ρ|B|).
    target_size: |B| exactly (fixed update size), or None for the largest feasible |B|.
    steps: [B] sampling step per rollout, optional. Preference among feasible selections of that
        size is FIFO: units are ranked oldest first — by step, ties in a random order drawn from
        ``generator`` — or, without ``steps``, by first appearance; the selection taken is the
        lexicographically greatest in that ranking (the oldest unit is in it whenever some
        feasible selection contains it, then the next, …).
    Returns None when no selection exists (or the buffer is empty).

    Exact: a greedy walk down the ranking keeps a unit iff the rest can still be completed,
    which an oracle decides exactly (counts for single-rollout units, a 2-D knapsack table
    otherwise), so a selection is found whenever one exists.
    """
    if not 0.0 < min_frac <= 0.5:  # the function's domain (the config refuses other values earlier)
        raise ValueError(
            f"select_balanced: min_frac={min_frac} (batching.reward_balanced.min_frac) must be in (0, 0.5]"
        )
    pos, neg = pos.bool(), neg.bool()
    if not pos.shape == neg.shape == unit_ids.shape or pos.dim() != 1:
        raise ValueError(
            f"select_balanced: pos, neg, unit_ids must share one shape [B], got "
            f"{tuple(pos.shape)}, {tuple(neg.shape)}, {tuple(unit_ids.shape)}"
        )
    if steps is not None and steps.shape != pos.shape:
        raise ValueError(f"select_balanced: steps must be [B] like pos, got {tuple(steps.shape)}")
    if (pos & neg).any():
        raise ValueError("select_balanced: a rollout cannot be both positive and negative")
    if pos.numel() == 0 or (target_size is not None and target_size <= 0):
        return None
    u = _units(pos, neg, unit_ids, steps, generator)
    unit = math.gcd(*u.size)
    if target_size is None:
        everything = required_per_sign(min_frac, pos.numel())
        if int(pos.sum()) >= everything and int(neg.sum()) >= everything:
            return torch.arange(pos.numel())  # the whole buffer is balanced: nothing to choose
        target = _SizeOneOracle(u).largest(min_frac) if max(u.size) == 1 else _largest_feasible(u, min_frac, unit)
        if target == 0:
            return None
    else:
        target = target_size
        if target > sum(u.size) or target % unit:
            return None
    need = required_per_sign(min_frac, target)
    oracle = _SizeOneOracle(u) if max(u.size) == 1 else _KnapsackOracle(u, target, need, unit)
    if not oracle(0, target, need, need):
        return None
    chosen, t, need_p, need_n = [], target, need, need
    for i, (s, p, n) in enumerate(zip(u.size, u.pos, u.neg)):
        if t == 0:
            break
        if s <= t and oracle(i + 1, t - s, need_p - p, need_n - n):
            chosen.append(u.members[i])
            t, need_p, need_n = t - s, need_p - p, need_n - n
    assert t == 0 and need_p <= 0 and need_n <= 0, "select_balanced: oracle and greedy disagree"
    return torch.sort(torch.cat(chosen)).values
