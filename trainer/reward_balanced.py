"""Reward-balanced (RB) buffering across rollout steps (cancellation paper §4.2, App. B).

The paper: "we accumulate rollouts in a buffer and trigger gradient updates only when the
collected batch meets the target reward composition", selecting an update batch B with

    min(N+, N−) / |B| ≥ ρ        (ρ = batching.reward_balanced.min_frac; the formula is stripped
                                  from the text, this is the reconstruction of cancellation.md §4.2)

where N± count the positive / negative rollouts of B. Two pieces:

* ``select_balanced``: a pure function choosing whole units (groups or single rollouts) that
  satisfy the constraint, exactly (it finds a selection whenever one exists), oldest first.
* ``RewardBalancedBuffer``: per-step payloads + per-response metadata, the staleness / zero-
  advantage / leftover policies of ``RewardBalancedConfig``, and ``state_dict`` for checkpoints.

Decisions on what the paper leaves open (cancellation.md §4.2 "Questions"), each a config knob:
  1. sign: ``count_by=reward`` → positive iff reward ≥ correct_threshold, else negative;
     ``count_by=advantage`` → positive iff A > 0, negative iff A < 0 (|A| ≤ zero_tol is neither).
  2. zero-advantage groups (every |A| ≤ zero_tol: all-correct / all-wrong):
     ``count`` → counted by their reward sign (either count_by); ``exclude`` → kept and selectable,
     they count in |B| but in neither N+ nor N− (so they dilute the ratio, as they dilute the
     token-mean normalizer); ``drop`` → removed in ``add`` before buffering (reported as discarded).
  3. unit: ``group`` (default; keeps Σ_i A_i = 0 inside every selected group) or ``rollout``.
  4. scope: the constraint holds for the whole update batch (not per mini-batch).
  5. leftovers: ``carry`` keeps unselected rollouts (until older than max_staleness);
     ``discard`` drops them after an update. When no balanced update exists nothing is discarded
     (the buffer keeps accumulating: "defer updates until both reward signs are sufficiently
     represented"). Advantages are the ones computed at sampling time, within the original group;
     old log-probs are the behaviour policy's (whatever the payload carries).
  6. size: ``fixed`` → exactly update_size responses (prompts_per_step·n); ``variable`` → the
     largest balanced selection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from trainer.config import RBCountBy, RBLeftover, RBUnit, RBUpdateSize, RBZeroAdvGroups, RewardBalancedConfig

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
    uniq, _, inverse = _first_appearance(unit_ids)
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


def _first_appearance(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
    if not 0.0 < min_frac <= 0.5:
        raise ValueError(f"batching.reward_balanced.min_frac={min_frac}: must be in (0, 0.5]")
    pos, neg = pos.bool(), neg.bool()
    if not pos.shape == neg.shape == unit_ids.shape or pos.dim() != 1:
        raise ValueError(f"select_balanced: pos, neg, unit_ids must share one shape [B], got "
                         f"{tuple(pos.shape)}, {tuple(neg.shape)}, {tuple(unit_ids.shape)}")
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


# ------------------------------------------------------------------ buffer
_ROW_FIELDS = ("entry", "local", "uid", "step", "pos", "neg", "zero_adv")


class RewardBalancedBuffer:
    """Rollouts kept across steps until a reward-balanced update batch can be chosen.

    Payloads are whatever the trainer batches (a ``ScoredBatch``): they need ``select(idx)``
    returning the sub-payload of those rows, and are stacked by ``concat(list_of_payloads)``
    (default ``trainer.scored_batch.concat_scored``). If the stacked payload has
    ``with_group_ids(ids)``, it is called with group ids unique across steps (0..k−1 in order of
    first appearance), so groups of different steps that shared a step-local id never merge.
    One update per ``pop_update`` call; calling it again at the same step (carry) can give another.
    """

    def __init__(
        self,
        cfg: RewardBalancedConfig,
        update_size: int,
        correct_threshold: float = 1.0,
        *,
        concat: Optional[Callable[[list[Any]], Any]] = None,
        zero_tol: float = 1e-6,
        seed: int = 0,
    ):
        if update_size < 1:
            raise ValueError(f"reward-balanced update_size={update_size}: must be >= 1 (rollout.prompts_per_step·rollout.n)")
        if not 0.0 < cfg.min_frac <= 0.5:
            raise ValueError(f"batching.reward_balanced.min_frac={cfg.min_frac}: must be in (0, 0.5]")
        self.cfg = cfg
        self.update_size = update_size
        self.correct_threshold = correct_threshold
        self.zero_tol = zero_tol
        self.seed = seed
        if concat is None:
            from trainer.scored_batch import concat_scored as concat
        self.concat = concat
        self.last_group_ids: Optional[torch.Tensor] = None  # unique group ids of the last update
        self._reset()

    def _reset(self) -> None:
        self.payloads: dict[int, Any] = {}
        self.rows = {k: torch.zeros(0, dtype=torch.bool if k in ("pos", "neg", "zero_adv") else torch.long)
                     for k in _ROW_FIELDS}
        self.next_uid = 0
        self.next_entry = 0
        self.pending_zero_adv_dropped = 0

    def __len__(self) -> int:
        return int(self.rows["uid"].numel())

    # ------------------------------------------------------------ classification
    def classify(self, group_ids, rewards, advantages) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pos, neg, zero_adv) per response under count_by / zero_adv_groups (module docstring)."""
        _, inv = torch.unique(group_ids, return_inverse=True)
        amax = torch.zeros(int(inv.max()) + 1 if inv.numel() else 0, dtype=advantages.dtype)
        amax = amax.scatter_reduce(0, inv, advantages.abs(), reduce="amax")
        zero_adv = amax[inv] <= self.zero_tol
        correct = rewards >= self.correct_threshold
        if self.cfg.count_by == RBCountBy.reward:
            pos, neg = correct.clone(), ~correct
        else:
            pos, neg = advantages > self.zero_tol, advantages < -self.zero_tol
        if self.cfg.zero_adv_groups == RBZeroAdvGroups.exclude:
            pos, neg = pos & ~zero_adv, neg & ~zero_adv
        else:  # count (drop never reaches the buffer): by their reward sign
            pos = torch.where(zero_adv, correct, pos)
            neg = torch.where(zero_adv, ~correct, neg)
        return pos, neg, zero_adv

    # ------------------------------------------------------------ API
    def add(self, step: int, payload: Any, group_ids: torch.Tensor, rewards: torch.Tensor, advantages: torch.Tensor) -> None:
        """Buffer one step's scored batch. ``advantages`` are per response [B] (sequence level)."""
        n = group_ids.numel()
        if rewards.shape != (n,) or advantages.shape != (n,):
            raise ValueError(f"RewardBalancedBuffer.add: group_ids, rewards, advantages must be [B]; got "
                             f"{tuple(group_ids.shape)}, {tuple(rewards.shape)}, {tuple(advantages.shape)}")
        if n == 0:
            return
        pos, neg, zero_adv = self.classify(group_ids, rewards.float(), advantages.float())
        keep = torch.ones(n, dtype=torch.bool)
        if self.cfg.zero_adv_groups == RBZeroAdvGroups.drop:
            keep = ~zero_adv
            self.pending_zero_adv_dropped += int(zero_adv.sum())
        if not keep.any():
            return
        local = torch.nonzero(keep).flatten()
        _, _, group_rank = _first_appearance(group_ids[local])
        entry = self.next_entry
        self.next_entry += 1
        self.payloads[entry] = payload
        new = {
            "entry": torch.full((local.numel(),), entry, dtype=torch.long),
            "local": local,
            "uid": group_rank + self.next_uid,
            "step": torch.full((local.numel(),), int(step), dtype=torch.long),
            "pos": pos[local], "neg": neg[local], "zero_adv": zero_adv[local],
        }
        self.next_uid += int(group_rank.max()) + 1
        self.rows = {k: torch.cat([self.rows[k], new[k]]) for k in _ROW_FIELDS}

    def pop_update(self, step: int, generator: Optional[torch.Generator] = None) -> tuple[Optional[Any], dict[str, float]]:
        """Drop stale rows, try a balanced selection, apply the leftover policy.

        Returns (payload of the update batch or None, stats). Ties between units of one step are
        broken by ``generator`` (default: seeded from (seed, step), so resuming is reproducible).
        """
        cfg = self.cfg
        if generator is None:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(step))
        stale = (int(step) - self.rows["step"]) > cfg.max_staleness
        n_stale = int(stale.sum())
        self._keep(~stale)
        rows = self.rows
        stats = {
            "buffer_size": float(len(self)),
            "buffer_pos": float(rows["pos"].sum()),
            "buffer_neg": float(rows["neg"].sum()),
            "discarded_stale": float(n_stale),
            "discarded_zero_adv": float(self.pending_zero_adv_dropped),
        }
        self.pending_zero_adv_dropped = 0
        units = rows["uid"] if cfg.unit == RBUnit.group else torch.arange(len(self))
        target = self.update_size if cfg.update_size == RBUpdateSize.fixed else None
        idx = select_balanced(rows["pos"], rows["neg"], units, cfg.min_frac, target, generator, steps=rows["step"])
        out, n_left = None, 0
        self.last_group_ids = None
        if idx is None:
            stats.update(updated=0.0, selected=0.0, n_pos=0.0, n_neg=0.0, balance=0.0,
                         mixed_group_frac=0.0, staleness_mean=0.0)
        else:
            out = self._gather(idx)
            n_pos, n_neg = int(rows["pos"][idx].sum()), int(rows["neg"][idx].sum())
            uids, first = torch.unique(rows["uid"][idx], return_inverse=True)
            mixed = torch.zeros(uids.numel(), dtype=torch.bool).scatter_(0, first, ~rows["zero_adv"][idx])
            stats.update(
                updated=1.0, selected=float(idx.numel()), n_pos=float(n_pos), n_neg=float(n_neg),
                balance=min(n_pos, n_neg) / idx.numel(),
                mixed_group_frac=float(mixed.float().mean()),
                staleness_mean=float((int(step) - rows["step"][idx]).float().mean()),
            )
            keep = torch.ones(len(self), dtype=torch.bool)
            keep[idx] = False
            if cfg.leftover == RBLeftover.discard:
                n_left = int(keep.sum())
                keep[:] = False
            self._keep(keep)
        stats["discarded_leftover"] = float(n_left)
        stats["discarded"] = stats["discarded_stale"] + stats["discarded_zero_adv"] + stats["discarded_leftover"]
        stats["buffer_left"] = float(len(self))
        return out, stats

    # ------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (payloads as they are: torch.save pickles them)."""
        return {
            "rows": {k: v.clone() for k, v in self.rows.items()},
            "payloads": dict(self.payloads),
            "next_uid": self.next_uid,
            "next_entry": self.next_entry,
            "pending_zero_adv_dropped": self.pending_zero_adv_dropped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"rows", "payloads", "next_uid", "next_entry", "pending_zero_adv_dropped"} - set(state)
        if missing:
            raise ValueError(f"RewardBalancedBuffer.load_state_dict: missing keys {sorted(missing)}")
        self.rows = {k: state["rows"][k].clone() for k in _ROW_FIELDS}
        self.payloads = dict(state["payloads"])
        self.next_uid = int(state["next_uid"])
        self.next_entry = int(state["next_entry"])
        self.pending_zero_adv_dropped = int(state["pending_zero_adv_dropped"])

    # ------------------------------------------------------------ internals
    def _keep(self, mask: torch.Tensor) -> None:
        self.rows = {k: v[mask] for k, v in self.rows.items()}
        live = set(self.rows["entry"].tolist())
        self.payloads = {e: p for e, p in self.payloads.items() if e in live}

    def _gather(self, idx: torch.Tensor) -> Any:
        """The selected rows' payload, stacked oldest entry first, with buffer-unique group ids."""
        entry, local, uid = self.rows["entry"][idx], self.rows["local"][idx], self.rows["uid"][idx]
        order = torch.argsort(entry * (int(local.max()) + 1) + local)
        entry, local, uid = entry[order], local[order], uid[order]
        parts = [self.payloads[e].select(local[entry == e]) for e in torch.unique(entry).tolist()]
        out = self.concat(parts)
        _, _, dense = _first_appearance(uid)
        self.last_group_ids = dense
        if hasattr(out, "with_group_ids"):
            out = out.with_group_ids(dense)
        return out
