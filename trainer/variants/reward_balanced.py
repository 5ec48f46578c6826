"""Reward-balanced (RB) buffering across rollout steps (cancellation paper, arXiv 2605.08666,
Sec. 4 and App. B; docs/algorithms.md §5.5-§5.8).

"We accumulate rollouts in a buffer and trigger gradient updates only when the collected batch
meets the target reward composition": an update batch B is released when min(N+, N−)/|B| ≥ ρ
(``batching.reward_balanced.min_frac``), N± counting its positive / negative rollouts. The
selection itself is ``trainer.balanced_selection.select_balanced``; this module keeps the buffer:
per-step payloads and per-response metadata, the staleness / zero-advantage / leftover policies,
and ``state_dict`` for checkpoints. What the paper leaves open, each a knob of
``RewardBalancedConfig``, is listed in docs/algorithms.md §5.8: the sign (``count_by``), groups
whose advantages are all zero (``zero_adv_groups``), the unit (``group`` keeps Σ_i A_i = 0 in every
selected group, or ``rollout``), the scope (the whole update batch), leftovers (``carry`` until
older than ``max_staleness``, or ``discard``) and the size (``fixed`` or ``variable``). When no
balanced update exists nothing is discarded: the buffer keeps accumulating. Advantages are those of
sampling time, within the original group; old log-probs are the behaviour policy's.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Optional

import torch

from trainer.balanced_selection import first_appearance, select_balanced
from trainer.knobs import knob
from trainer.registry import Feature, Needs, UpdateBuffer, needs, register_feature
from trainer.scored_batch import concat_scored
from trainer.tasks.base import correct_threshold


class RBUnit(str, Enum):
    group = "group"
    rollout = "rollout"


class RBCountBy(str, Enum):
    reward = "reward"  # positive = correct (task reward ≥ task.correct_threshold)
    advantage = "advantage"  # positive = A > 0


class RBZeroAdvGroups(str, Enum):
    count = "count"  # kept in the buffer and counted (as their reward sign)
    exclude = "exclude"  # kept in the update batch, not counted towards N+/N−
    drop = "drop"  # removed before buffering


class RBLeftover(str, Enum):
    carry = "carry"
    discard = "discard"


class RBUpdateSize(str, Enum):
    fixed = "fixed"  # an update batch of rollout.prompts_per_step·rollout.n responses
    variable = "variable"  # the largest balanced selection the buffer allows


@dataclass
class RewardBalancedConfig:
    enabled: bool = knob(False, "Buffer rollouts across steps; update only on a batch with min(N+,N−)/|B| ≥ min_frac.")
    min_frac: float = knob(0.25, "ρ: minimum fraction of each sign in an update batch.", gt=0.0, le=0.5)
    unit: RBUnit = knob(RBUnit.group, "Select whole groups (keeps Σ A = 0 per group) or single rollouts.")
    count_by: RBCountBy = knob(RBCountBy.reward, "What makes a rollout positive or negative.")
    zero_adv_groups: RBZeroAdvGroups = knob(
        RBZeroAdvGroups.exclude, "All-correct/all-wrong groups: count, exclude or drop."
    )
    leftover: RBLeftover = knob(RBLeftover.carry, "Rollouts not selected: carry to the next step or discard.")
    max_staleness: int = knob(2, "Drop buffered rollouts sampled more than this many steps ago.", ge=0)
    update_size: RBUpdateSize = knob(RBUpdateSize.fixed, "Update batch size: fixed (one rollout batch) or variable.")


_ROW_FIELDS = ("entry", "local", "uid", "step", "pos", "neg", "zero_adv")


class RewardBalancedBuffer:
    """Rollouts kept across steps until a reward-balanced update batch can be chosen.

    Payloads are whatever the trainer batches (a ``ScoredBatch``): they need ``select(idx)``
    returning the sub-payload of those rows, and are stacked by ``concat(list_of_payloads)``
    (default ``trainer.scored_batch.concat_scored``). If the stacked payload has
    ``with_group_ids(ids)`` (returning the payload with those ids), it is called with group ids unique
    across steps (0..k−1 in order of first appearance), so groups of different steps that shared a
    step-local id never merge. ``seed`` (the run's) seeds the tie-breaks between units of one step.
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
        self.cfg = cfg
        self.update_size = update_size
        self.correct_threshold = correct_threshold
        self.zero_tol = zero_tol
        self.seed = seed
        self.concat = concat or concat_scored
        self.last_group_ids: Optional[torch.Tensor] = None  # unique group ids of the last update
        self._reset()

    def _reset(self) -> None:
        self.payloads: dict[int, Any] = {}
        self.rows = {
            k: torch.zeros(0, dtype=torch.bool if k in ("pos", "neg", "zero_adv") else torch.long) for k in _ROW_FIELDS
        }
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
    def add(
        self, step: int, payload: Any, group_ids: torch.Tensor, rewards: torch.Tensor, advantages: torch.Tensor
    ) -> None:
        """Buffer one step's scored batch. ``advantages`` are per response [B] (sequence level)."""
        n = group_ids.numel()
        if rewards.shape != (n,) or advantages.shape != (n,):
            raise ValueError(
                f"RewardBalancedBuffer.add: group_ids, rewards, advantages must be [B]; got "
                f"{tuple(group_ids.shape)}, {tuple(rewards.shape)}, {tuple(advantages.shape)}"
            )
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
        _, _, group_rank = first_appearance(group_ids[local])
        entry = self.next_entry
        self.next_entry += 1
        self.payloads[entry] = payload
        new = {
            "entry": torch.full((local.numel(),), entry, dtype=torch.long),
            "local": local,
            "uid": group_rank + self.next_uid,
            "step": torch.full((local.numel(),), int(step), dtype=torch.long),
            "pos": pos[local],
            "neg": neg[local],
            "zero_adv": zero_adv[local],
        }
        self.next_uid += int(group_rank.max()) + 1
        self.rows = {k: torch.cat([self.rows[k], new[k]]) for k in _ROW_FIELDS}

    def pop_update(
        self, step: int, generator: Optional[torch.Generator] = None
    ) -> tuple[Optional[Any], dict[str, float]]:
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
            stats.update(
                updated=0.0, selected=0.0, n_pos=0.0, n_neg=0.0, balance=0.0, mixed_group_frac=0.0, staleness_mean=0.0
            )
        else:
            out = self._gather(idx)
            n_pos, n_neg = int(rows["pos"][idx].sum()), int(rows["neg"][idx].sum())
            uids, first = torch.unique(rows["uid"][idx], return_inverse=True)
            mixed = torch.zeros(uids.numel(), dtype=torch.bool).scatter_(0, first, ~rows["zero_adv"][idx])
            stats.update(
                updated=1.0,
                selected=float(idx.numel()),
                n_pos=float(n_pos),
                n_neg=float(n_neg),
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
        _, _, dense = first_appearance(uid)
        self.last_group_ids = dense
        if hasattr(out, "with_group_ids"):
            out = out.with_group_ids(dense)
        return out


class RewardBalancedUpdates:
    """The trainer's view of the buffer (an ``UpdateBuffer``): add a scored batch, pop an update batch."""

    def __init__(self, cfg):
        r = cfg.rollout
        self.buffer = RewardBalancedBuffer(
            cfg.batching.reward_balanced,
            update_size=r.prompts_per_step * r.n,
            correct_threshold=correct_threshold(cfg.task),
            seed=cfg.seed,
        )

    def add(self, step: int, scored) -> None:
        self.buffer.add(step, scored, scored.group_ids, scored.rewards, scored.seq_advantages)

    def pop(self, step: int):
        out, stats = self.buffer.pop_update(step)
        return out, {f"rb/{k}": float(v) for k, v in stats.items()}

    def state_dict(self) -> dict:
        return self.buffer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(state)


def _check(cfg) -> list[str]:
    rb = cfg.batching.reward_balanced
    if rb.unit != RBUnit.rollout:
        return []
    if cfg.batching.mode == "query_preserved":
        return [
            "batching.reward_balanced.unit=rollout: selecting single rollouts splits groups, "
            "which batching.mode=query_preserved forbids; use unit=group"
        ]
    if needs(cfg).whole_groups:
        return [
            f"batching.reward_balanced.unit=rollout: algorithm.loss={cfg.algorithm.loss} needs whole groups; "
            "use unit=group"
        ]
    return []


register_feature(
    Feature(
        "reward_balanced",
        RewardBalancedConfig,
        UpdateBuffer(RewardBalancedUpdates),
        "Reward-balanced buffering (cancellation paper Sec. 4).",
        parent="batching",
        needs=Needs(off_policy=True),
        check=_check,
        short="rb",
    )
)
