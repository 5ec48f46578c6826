"""How one update pass is laid out: its stages, the rows each stage needs, and each rank's
micro-batches. Pure functions of the config and index tensors (the trainer only loops over them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from trainer import distributed, registry


@dataclass(frozen=True)
class Stage:
    """One pass over the update batch: which tokens learn, and which define the normalizer."""

    name: str
    active: Optional[torch.Tensor]  # [B,T] bool, None = every response token
    denom: torch.Tensor  # [B,T] mask whose counts normalize the loss
    mask_all_terms: bool = True  # the KL and entropy terms too act only on the active tokens
    refresh_old_logp: bool = False  # recompute π_old (the ratios' base) before this stage


def stages(cfg, old_logp: torch.Tensor, loss_mask: torch.Tensor) -> list[Stage]:
    """The enabled ``StagePlan``'s stages (Lopti's two), or one stage over every token."""
    plan = registry.one(cfg, registry.StagePlan)
    if plan is None:
        return [Stage("all", None, loss_mask)]
    return plan.role.stages(old_logp, loss_mask, registry.section_of(cfg, plan))


def live_rows(cfg, mb: torch.Tensor, stage: Stage) -> torch.Tensor:
    """Rows of ``mb`` that can contribute to this stage's loss. A row without active tokens adds
    exactly zero loss and gradient when every term is masked to the stage, so it is skipped (the
    normalizer is the mini-batch's, already fixed). A loss that needs whole groups keeps every row, and
    so does ``batching.normalizer=micro_batch`` (a skipped row would change its micro-batch's counts).
    Always at least one row, so each mini-batch still makes its optimizer step."""
    if stage.active is None or not stage.mask_all_terms or registry.needs(cfg).whole_groups or per_micro(cfg):
        return mb
    live = mb[stage.active[mb].any(-1)]
    return live if live.numel() else mb[:1]


def micro_batches(cfg, rows: torch.Tensor, rank: int, world: int,
                  lengths: Optional[torch.Tensor] = None) -> list[tuple[torch.Tensor, float]]:
    """(indices, weight) of this rank's micro-batches of a mini-batch's rows.

    One process: consecutive chunks of ``micro_batch_size``. N ranks (every rank holds the whole
    rollout batch): rank r takes its contiguous shard, cut into the same number of micro-batches
    on every rank, since ZeRO runs collectives per backward; a rank short of rows makes a
    zero-weight pass on one row. The loss normalizer stays the whole mini-batch's, so the
    gradients summed over ranks equal the single-process gradient. (A loss that needs whole groups
    runs in one process: validation and ``trainer.run_start.start_ranks`` refuse more.)

    With ``batching.sort_micro_batches`` and ``lengths`` (a per-row sort key over the whole batch),
    the rows (this rank's, with several ranks) are ordered by length before cutting, so each
    micro-batch holds rows of similar length and its forward skips their common padding
    (``trainer.logprobs.completion_logprobs``). Exact: a mini-batch's gradient is a sum over its
    rows, whatever the micro-batches; only the float summation order changes. Not when the loss
    needs whole groups per micro-batch.
    """
    size = cfg.batching.micro_batch_size
    sort = (cfg.batching.sort_micro_batches and lengths is not None and not registry.needs(cfg).whole_groups
            and not per_micro(cfg))
    if world == 1:
        return [(m, 1.0) for m in _by_length(rows, lengths, sort).split(size)]
    n = max(1, math.ceil(math.ceil(rows.numel() / world) / size))
    local = _by_length(distributed.shard(rows, rank, world), lengths, sort)
    real = [(m, 1.0) for m in local.tensor_split(min(n, local.numel()))] if local.numel() else []
    return real + [(rows[:1], 0.0)] * (n - len(real))


def per_micro(cfg) -> bool:
    """``batching.normalizer=micro_batch``: each micro-batch normalized by its own counts (the reference
    codes' accumulation), so which rows share a micro-batch is part of the math."""
    return getattr(cfg.batching.normalizer, "value", cfg.batching.normalizer) == "micro_batch"


def _by_length(rows: torch.Tensor, lengths: Optional[torch.Tensor], sort: bool) -> torch.Tensor:
    if not sort or rows.numel() < 2:
        return rows
    return rows[torch.sort(lengths[rows], stable=True).indices]


def row_lengths(attention_mask: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """A sort key per row: completion length first (the logits' width), then prompt length."""
    completion = attention_mask[:, prompt_len:].sum(-1)
    prompt = attention_mask[:, :prompt_len].sum(-1)
    return completion * (prompt_len + 1) + prompt
