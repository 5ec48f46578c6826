"""Single-update probes: one plain gradient step on one scored batch, from a fixed θ, and what it
did to every sampled token's probability. First-order claims of the papers (LLD's Δ(x), token
flips, quartile-only updates) are claims about −∇L, so each probe reports its own check:

    predicted = ∇L(θ)·Δθ = −lr ‖∇L‖²        (SGD, Δθ = −lr ∇L)
    actual    = L(θ + Δθ) − L(θ)
    ratio     = actual / predicted           (1 = the step is in the first-order regime)

A ratio far from 1 means the statistics measure the step's overshoot, not the gradient's
direction; ``choose_lr`` picks the step on a grid so the ratio is near 1, and the report states it.
The loss is the trainer's own (``GRPOTrainer.micro_loss``: the config's surrogate, aggregation and
token advantages), restricted to ``active`` tokens the way the reference code's
``mask_prob_interval`` does it: advantages outside are 0, the normalizer stays every token.

Per-token gradients (``token_grad_norms``) are real parameter gradients, one backward per token,
of ln π(y_t) (tempered, as the loss sees it) with respect to every trainable parameter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from trainer.logprobs import completion_logprobs
from trainer.objectives import Normalizer
from trainer.scored_batch import ScoredBatch
from trainer.update_plan import Stage

RATIO_BAND = (0.8, 1.25)  # "near 1": the first-order estimate within 25% of the actual change
LR_GRID = tuple(10.0 ** (-k / 4) for k in range(0, 29))  # 1, 0.562, 0.316, … 1e-7


@dataclass
class Update:
    """One probe step: its lr, the loss before and after, the first-order check, the gradient's
    norm, and the log-probs [B,T] of every sampled token after the step."""

    lr: float
    loss_before: float
    loss_after: float
    predicted: float
    grad_norm: float
    new_logp: torch.Tensor

    @property
    def ratio(self) -> float:
        return (self.loss_after - self.loss_before) / self.predicted if self.predicted else math.nan


def _params(policy) -> list[torch.nn.Parameter]:
    return [p for p in policy.parameters() if p.requires_grad]


def _loss(trainer, sb: ScoredBatch, stage: Stage, grad: bool) -> float:
    """The mini-batch loss over the whole batch (exact accumulation over micro-batches)."""
    norm = Normalizer.of(stage.denom, trainer._max_len())
    total = 0.0
    with torch.set_grad_enabled(grad):
        for idx in torch.arange(sb.size).split(trainer.cfg.batching.micro_batch_size):
            loss, _ = trainer.micro_loss(sb, idx, norm, stage)
            if grad:
                loss.backward()
            total += float(loss.detach())
    return total


def stage_of(sb: ScoredBatch, active: Optional[torch.Tensor]) -> Stage:
    """Only ``active`` tokens learn; every token counts in the normalizer (the reference code's
    interval masks)."""
    return Stage("probe", None if active is None else active & sb.loss_mask.bool(), sb.loss_mask)


def gradient(trainer, sb: ScoredBatch, active: Optional[torch.Tensor] = None) -> tuple[float, list[torch.Tensor]]:
    """(loss, ∇L) at the present θ, the parameters' .grad left clean."""
    policy = trainer.policy
    policy.eval()  # deterministic forward: no dropout in a probe
    params = _params(policy)
    for p in params:
        p.grad = None
    loss = _loss(trainer, sb, stage_of(sb, active), grad=True)
    grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    for p in params:
        p.grad = None
    return loss, grads


def sgd_update(trainer, sb: ScoredBatch, lr: float, active: Optional[torch.Tensor] = None,
               grads: Optional[tuple[float, list[torch.Tensor]]] = None) -> Update:
    """θ ← θ − lr ∇L, measure, and put θ back exactly."""
    policy = trainer.policy
    params = _params(policy)
    loss0, g = grads if grads is not None else gradient(trainer, sb, active)
    g2 = float(sum((x.double() ** 2).sum() for x in g))
    saved = [p.detach().clone() for p in params]
    try:
        with torch.no_grad():
            for p, x in zip(params, g):
                p.add_(x, alpha=-lr)
        loss1 = _loss(trainer, sb, stage_of(sb, active), grad=False)
        new_logp = trainer._forward(policy, sb.rollout)
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
    return Update(lr, loss0, loss1, -lr * g2, math.sqrt(g2), new_logp)


def choose_lr(trainer, sb: ScoredBatch, band=RATIO_BAND, grid=LR_GRID) -> Update:
    """The full update at the largest lr of ``grid`` whose first-order ratio lies in ``band``
    (the smallest lr of the grid when none does; its ratio is reported either way)."""
    grads = gradient(trainer, sb)
    best = None
    for lr in grid:
        best = sgd_update(trainer, sb, lr, grads=grads)
        if band[0] <= best.ratio <= band[1]:
            return best
    return best


def token_grad_norms(trainer, sb: ScoredBatch, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """‖∇_θ ln π(y_{row, col})‖ over every trainable parameter, one backward per token (the
    sequence's forward shared by its tokens). ``rows`` / ``cols`` index [B,T] response tokens."""
    policy = trainer.policy
    policy.eval()
    params = _params(policy)
    b = sb.rollout
    out = torch.empty(rows.numel(), dtype=torch.float64)
    for r in rows.unique().tolist():
        at = (rows == r).nonzero().flatten()
        with torch.enable_grad():
            logp = completion_logprobs(policy, b.input_ids[r:r + 1], b.attention_mask[r:r + 1], b.prompt_len,
                                       trainer.cfg.rollout.temperature).logp[0]
            for k, i in enumerate(at.tolist()):
                g = torch.autograd.grad(logp[cols[i]], params, retain_graph=k < at.numel() - 1, allow_unused=True)
                out[i] = math.sqrt(sum(float((x.double() ** 2).sum()) for x in g if x is not None))
    return out


def sample_tokens(mask: torch.Tensor, prob: torch.Tensor, edges, per_bin: int, generator: torch.Generator):
    """(rows, cols, bin) of up to ``per_bin`` response tokens drawn uniformly from each fixed π bin
    [e_{k−1}, e_k) (the last closed at 1)."""
    which = torch.bucketize(prob, torch.tensor(list(edges), dtype=prob.dtype), right=True)
    picks = []
    for k in range(len(edges) + 1):
        idx = ((which == k) & mask.bool()).nonzero()
        if len(idx):
            take = idx[torch.randperm(len(idx), generator=generator)[:per_bin]]
            picks.append(torch.cat([take, torch.full((len(take), 1), k)], 1))
    got = torch.cat(picks) if picks else torch.empty(0, 3, dtype=torch.long)
    return got[:, 0], got[:, 1], got[:, 2]
