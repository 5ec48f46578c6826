"""How one update pass is laid out: Lopti's stages, the rows each stage needs, and each rank's
micro-batches. Pure functions of the config and index tensors (the trainer only loops over them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from trainer import distributed
from trainer.config import Config, DFPOTransform, LoptiDenominator, LoptiOrder
from trainer.token_weights import lopti_masks


@dataclass(frozen=True)
class Stage:
    """One pass over the update batch: which tokens learn, and which define the normalizer."""

    name: str
    active: Optional[torch.Tensor]  # [B,T] bool, None = every response token
    denom: torch.Tensor  # [B,T] mask whose counts normalize the loss


def stages(cfg: Config, old_logp: torch.Tensor, loss_mask: torch.Tensor) -> list[Stage]:
    """One stage normally; Lopti's two (low-probability tokens first, by default)."""
    lo = cfg.algorithm.lopti
    if not lo.enabled:
        return [Stage("all", None, loss_mask)]
    low, high = lopti_masks(old_logp, loss_mask, lo.eta)
    sets = [("low", low), ("high", high)]
    if lo.order == LoptiOrder.high_first:
        sets.reverse()
    by_stage = lo.denominator == LoptiDenominator.stage_tokens
    return [Stage(name, m, m.float() if by_stage else loss_mask) for name, m in sets]


def live_rows(cfg: Config, mb: torch.Tensor, stage: Stage) -> torch.Tensor:
    """Rows of ``mb`` that can contribute to this stage's loss. A row without active tokens adds
    exactly zero loss and gradient when every term is masked to the stage, so it is skipped (the
    normalizer is the mini-batch's, already fixed). DFPO keeps every row: its transform needs
    whole groups. Always at least one row, so each mini-batch still makes its optimizer step."""
    alg = cfg.algorithm
    if stage.active is None or not alg.lopti.mask_kl or alg.dfpo.transform != DFPOTransform.none:
        return mb
    live = mb[stage.active[mb].any(-1)]
    return live if live.numel() else mb[:1]


def micro_batches(cfg: Config, rows: torch.Tensor, rank: int, world: int,
                  lengths: Optional[torch.Tensor] = None) -> list[tuple[torch.Tensor, float]]:
    """(indices, weight) of this rank's micro-batches of a mini-batch's rows.

    One process: consecutive chunks of ``micro_batch_size``. N ranks (every rank holds the whole
    rollout batch): rank r takes its contiguous shard, cut into the same number of micro-batches
    on every rank, since ZeRO runs collectives per backward; a rank short of rows makes a
    zero-weight pass on one row. The loss normalizer stays the whole mini-batch's, so the
    gradients summed over ranks equal the single-process gradient.

    With ``batching.sort_micro_batches`` and ``lengths`` (a per-row sort key over the whole batch),
    the rows (this rank's, with several ranks) are ordered by length before cutting, so each
    micro-batch holds rows of similar length and its forward skips their common padding
    (``trainer.logprobs.completion_logprobs``). Exact: a mini-batch's gradient is a sum over its
    rows, whatever the micro-batches; only the float summation order changes. Not with DFPO (its
    transform needs whole groups per micro-batch).
    """
    size = cfg.batching.micro_batch_size
    sort = cfg.batching.sort_micro_batches and lengths is not None and cfg.algorithm.dfpo.transform == DFPOTransform.none
    if world == 1:
        return [(m, 1.0) for m in _by_length(rows, lengths, sort).split(size)]
    if cfg.algorithm.dfpo.transform != DFPOTransform.none:
        raise ValueError("algorithm.dfpo.transform: DFPO needs whole groups per micro-batch, which "
                         "sharding a mini-batch over ranks breaks; run DFPO in one process per cell")
    n = max(1, math.ceil(math.ceil(rows.numel() / world) / size))
    local = _by_length(distributed.shard(rows, rank, world), lengths, sort)
    real = [(m, 1.0) for m in local.tensor_split(min(n, local.numel()))] if local.numel() else []
    return real + [(rows[:1], 0.0)] * (n - len(real))


def _by_length(rows: torch.Tensor, lengths: Optional[torch.Tensor], sort: bool) -> torch.Tensor:
    if not sort or rows.numel() < 2:
        return rows
    return rows[torch.sort(lengths[rows], stable=True).indices]


def row_lengths(attention_mask: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """A sort key per row: completion length first (the logits' width), then prompt length."""
    completion = attention_mask[:, prompt_len:].sum(-1)
    prompt = attention_mask[:, :prompt_len].sum(-1)
    return completion * (prompt_len + 1) + prompt
